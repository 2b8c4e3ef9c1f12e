//! The server against the real QEMU (the host's `qemu-system-x86_64`, or `$VD_QEMU`), with the
//! fake provider and QEMU's qtest accelerator (no guest, no KVM): QEMU accepts the setup, its
//! doorbell register signals the kick eventfd, it consumes the call eventfd as its vector 0, and
//! all of that keeps working after the server is gone. Skipped (with a line saying so) when
//! QEMU is not installed.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};
use vd_ivshmem::testutil::{eventfd_count, watchdog, TmpDir};
use vd_ivshmem::{ChannelGeometry, Config, Event, FakeProvider, Server};
use vd_testkit::qtest::Qtest;

/// Upper bound of every wait.
const WAIT: Duration = Duration::from_secs(60);
/// BAR0 (the registers) is placed here, in q35's PCI hole.
const BAR0: u64 = 0xe000_0000;
/// The ivshmem device's slot on bus 0.
const SLOT: u32 = 4;

/// The QEMU binary: `make deps` installs it (the test VM needs it too), so a missing one fails
/// the test rather than skipping it (a skipped check must never count as passed).
fn qemu_bin() -> PathBuf {
    let p = std::env::var_os("VD_QEMU")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/qemu-system-x86_64"));
    assert!(
        p.exists(),
        "no QEMU at {}: run `make deps` (qemu-system-x86) or set VD_QEMU",
        p.display()
    );
    p
}

struct Served {
    fake: FakeProvider,
    stop: OwnedFd,
    thread: Option<std::thread::JoinHandle<()>>,
    events: mpsc::Receiver<Event>,
}

impl Served {
    fn start(dir: &Path) -> (Self, PathBuf) {
        let image = dir.join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let cfg = Config {
            socket: dir.join("vd.sock"),
            image,
            geometry: ChannelGeometry::new(64, 64, 1).unwrap(),
            lock_wait: Duration::from_millis(100),
            mode: 0o600,
            gid: None,
        };
        let fake = FakeProvider::default();
        let mut server = Server::bind(cfg.clone(), fake.clone()).unwrap();
        let stop: OwnedFd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
            .unwrap()
            .into();
        let stop2 = stop.try_clone().unwrap();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            server
                .run(stop2.as_fd(), &mut |e| {
                    let _ = tx.send(e.clone());
                })
                .unwrap();
        });
        let s = Self {
            fake,
            stop,
            thread: Some(thread),
            events: rx,
        };
        (s, cfg.socket)
    }

    fn next_event(&self) -> Event {
        self.events.recv_timeout(WAIT).expect("no event")
    }

    /// Stops the server: its sockets close, as when it is killed.
    fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            nix::unistd::write(&self.stop, &1u64.to_ne_bytes()).unwrap();
            t.join().unwrap();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = nix::unistd::write(&self.stop, &1u64.to_ne_bytes());
            let _ = t.join();
        }
    }
}

/// QEMU under qtest (vd-testkit's client), with the ivshmem device on `socket`.
fn qemu_command(bin: &Path, socket: &Path) -> Command {
    let mut c = Qtest::command(bin);
    c.arg("-chardev")
        .arg(format!("socket,path={},id=vd0", socket.display()))
        .args([
            "-device",
            &format!("ivshmem-doorbell,chardev=vd0,vectors=1,addr={SLOT:#x}.0"),
        ])
        .stderr(Stdio::piped());
    c
}

fn spawn_qemu(bin: &Path, socket: &Path) -> Child {
    qemu_command(bin, socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn start_qemu(bin: &Path, socket: &Path) -> Qtest {
    Qtest::spawn(qemu_command(bin, socket), WAIT).unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn qemu_takes_the_setup_and_keeps_the_device_when_the_server_goes() {
    let bin = qemu_bin();
    let dir = TmpDir::new("qemu-ok");
    let (mut srv, socket) = Served::start(&dir);
    let mut q = start_qemu(&bin, &socket);
    // QEMU read the whole setup while creating the device (it answers qtest only after).
    assert_eq!(
        q.cfg_read(SLOT, 0).unwrap(),
        0x1110_1af4,
        "not the ivshmem device"
    );
    match srv.next_event() {
        Event::Listening { .. } => {}
        e => panic!("{e:?}"),
    }
    match srv.next_event() {
        Event::Client { client: 1, .. } => {}
        e => panic!("{e:?}"),
    }
    q.cfg_write(SLOT, 0x10, BAR0 as u32).unwrap();
    q.cfg_write(SLOT, 0x04, 0x2).unwrap(); // memory space on
                                           // IVPosition: the id the server gave.
    assert_eq!(q.readl(BAR0 + 8).unwrap(), 1);

    let (kick, call) = {
        let st = srv.fake.state();
        let ch = &st.channels[0];
        assert!(ch.orphaned && !ch.destroyed);
        (ch.kick.try_clone().unwrap(), ch.call.try_clone().unwrap())
    };
    let ring = |q: &mut Qtest| {
        // The guest's doorbell write: peer 0, vector 0 -> QEMU's ioeventfd -> the kick.
        let before = eventfd_count(kick.as_fd());
        q.writel(BAR0 + 12, 0).unwrap();
        assert_eq!(eventfd_count(kick.as_fd()), before + 1);
    };
    let interrupt = |q: &mut Qtest| {
        // The backend's interrupt: QEMU consumes the call eventfd as its vector 0 (without
        // KVM it polls it in its main loop; with KVM it is an irqfd).
        assert_eq!(nix::unistd::write(&call, &1u64.to_ne_bytes()).unwrap(), 8);
        wait_for("QEMU to consume the call eventfd", || {
            eventfd_count(call.as_fd()) == 0
        });
        assert!(q.alive());
    };
    ring(&mut q);
    interrupt(&mut q);

    // The server goes (closing QEMU's connection, as a kill does): nothing changes for QEMU.
    srv.stop();
    ring(&mut q);
    interrupt(&mut q);
    ring(&mut q);
    assert!(q.alive());
}

#[test]
fn a_refused_qemu_stops_with_the_errno_instead_of_hanging() {
    let bin = qemu_bin();
    let dir = TmpDir::new("qemu-refused");
    let (srv, socket) = Served::start(&dir);
    srv.fake.state().fail_create = Some(nix::errno::Errno::ENOMEM);
    let mut child = spawn_qemu(&bin, &socket);
    let w = watchdog(child.id(), WAIT);
    drop(child.stdin.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let st = child.wait().unwrap();
    let _ = w.send(());
    assert!(!st.success(), "QEMU started with a refused device: {err}");
    assert!(
        err.contains("server sent version -12, expecting 0"),
        "QEMU said: {err}"
    );
}
