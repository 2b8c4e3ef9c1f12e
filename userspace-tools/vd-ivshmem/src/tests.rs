//! The server against a fake QEMU: a client that reads the setup exactly as QEMU's
//! `ivshmem_recv_setup` and `process_msg` do and checks every message and descriptor, with the
//! fake provider standing in for `/dev/vd_evtchn`.

use crate::proto::{self, Received};
use crate::provider::{ChannelGeometry, FakeProvider};
use crate::server::{Config, Error, Event, Server};
use crate::testutil::{eventfd_count, TmpDir};
use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Upper bound of every wait (the machine is slow and shared; nothing waits this long when
/// the test passes).
const WAIT: Duration = Duration::from_secs(30);

fn geometry() -> ChannelGeometry {
    ChannelGeometry::new(64, 64, 1).unwrap()
}

#[derive(Default)]
struct Events {
    list: Mutex<Vec<Event>>,
    cv: Condvar,
}

impl Events {
    fn push(&self, e: &Event) {
        self.list.lock().unwrap().push(e.clone());
        self.cv.notify_all();
    }
    /// Waits for the n-th event (0-based) that `want` accepts.
    fn wait(&self, want: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + WAIT;
        let mut l = self.list.lock().unwrap();
        loop {
            if let Some(e) = l.iter().find(|e| want(e)) {
                return e.clone();
            }
            let now = Instant::now();
            assert!(now < deadline, "no such event; events: {:#?}", *l);
            l = self.cv.wait_timeout(l, deadline - now).unwrap().0;
        }
    }
    fn all(&self) -> Vec<Event> {
        self.list.lock().unwrap().clone()
    }
}

struct Running {
    _dir: TmpDir,
    socket: PathBuf,
    image: PathBuf,
    fake: FakeProvider,
    events: Arc<Events>,
    stop: OwnedFd,
    thread: Option<JoinHandle<Result<(), Error>>>,
}

fn config(dir: &Path) -> Config {
    Config {
        socket: dir.join("vd.sock"),
        image: dir.join("disk.img"),
        geometry: geometry(),
        lock_wait: Duration::from_millis(100),
        mode: 0o600,
        gid: None,
    }
}

fn make_image(p: &Path) {
    std::fs::File::create(p).unwrap().set_len(1 << 20).unwrap();
}

fn start_with(dir: TmpDir, cfg: Config, fake: FakeProvider) -> Running {
    if !cfg.image.exists() {
        make_image(&cfg.image);
    }
    let mut server = Server::bind(cfg.clone(), fake.clone()).unwrap();
    let events = Arc::new(Events::default());
    let stop: OwnedFd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
        .unwrap()
        .into();
    let stop2 = stop.try_clone().unwrap();
    let ev = events.clone();
    let thread = std::thread::spawn(move || server.run(stop2.as_fd(), &mut |e| ev.push(e)));
    events.wait(|e| matches!(e, Event::Listening { .. }));
    Running {
        _dir: dir,
        socket: cfg.socket,
        image: cfg.image,
        fake,
        events,
        stop,
        thread: Some(thread),
    }
}

fn start(name: &str) -> Running {
    let d = TmpDir::new(name);
    let cfg = config(&d);
    start_with(d, cfg, FakeProvider::default())
}

impl Running {
    fn stop(mut self) -> Vec<Event> {
        nix::unistd::write(&self.stop, &1u64.to_ne_bytes()).unwrap();
        let t = self.thread.take().unwrap();
        t.join().unwrap().unwrap();
        self.events.all()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = nix::unistd::write(&self.stop, &1u64.to_ne_bytes());
            let _ = t.join();
        }
    }
}

/// What a QEMU holds after its setup.
struct Qemu {
    sock: UnixStream,
    id: u16,
    shm: OwnedFd,
    /// Peer 0's vector 0: the doorbell's ioeventfd.
    kick: OwnedFd,
    /// Its own vector 0: the MSI-X irqfd.
    call: OwnedFd,
}

fn recv(s: &UnixStream) -> Received {
    match proto::recv(s.as_fd()) {
        Ok(Some(m)) => m,
        Ok(None) => panic!("server closed the connection during the setup"),
        Err(e) => panic!("recv: {e}"),
    }
}

fn fd_target(fd: BorrowedFd<'_>) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn assert_eventfd(fd: BorrowedFd<'_>) {
    assert_eq!(fd_target(fd), "anon_inode:[eventfd]");
}

/// Connects and reads the setup as QEMU 10.0 does, checking each message.
fn qemu(socket: &Path) -> Qemu {
    let s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    // ivshmem_recv_setup: the version, without a descriptor.
    let m = recv(&s);
    assert_eq!((m.value, m.fds.len()), (proto::PROTOCOL_VERSION, 0));
    // The id, without a descriptor, 0..=65535.
    let m = recv(&s);
    assert!(m.fds.is_empty(), "id message with a descriptor");
    let id = u16::try_from(m.value).expect("id out of QEMU's range");
    // The shared memory: -1 with exactly one descriptor.
    let mut m = recv(&s);
    assert_eq!((m.value, m.fds.len()), (-1, 1));
    let shm = m.fds.pop().unwrap();
    // Peer 0 (the host): one descriptor for vector 0.
    let mut m = recv(&s);
    assert_eq!((m.value, m.fds.len()), (0, 1));
    let kick = m.fds.pop().unwrap();
    // Its own id: one descriptor for vector 0.
    let mut m = recv(&s);
    assert_eq!((m.value, m.fds.len()), (i64::from(id), 1));
    let call = m.fds.pop().unwrap();
    // Nothing more (QEMU would take another peer message for a connection notice).
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let e = (&s).read(&mut b).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    Qemu {
        sock: s,
        id,
        shm,
        kick,
        call,
    }
}

/// Connects and expects a refusal: a single negative version, then the end.
fn refused(socket: &Path) -> i64 {
    let s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let m = recv(&s);
    assert!(m.fds.is_empty());
    assert!(
        m.value < 0,
        "a refusal is a negative version, got {}",
        m.value
    );
    assert!(
        proto::recv(s.as_fd()).unwrap().is_none(),
        "more after the refusal"
    );
    m.value
}

fn signal(fd: BorrowedFd<'_>) {
    assert_eq!(nix::unistd::write(fd, &1u64.to_ne_bytes()).unwrap(), 8);
}

#[test]
fn a_client_gets_shared_memory_and_working_eventfds() {
    let r = start("setup");
    let q = qemu(&r.socket);
    assert_eq!(q.id, 1);
    let ev = r.events.wait(|e| matches!(e, Event::Client { .. }));
    let g = geometry();
    assert_eq!(
        ev,
        Event::Client {
            client: 1,
            channel: 0,
            key: Some(0),
            image: r.image.clone(),
            size: 1 << 20,
            shm_size: g.shm_size(),
            data_off: g.data_off(),
        }
    );

    // Shared memory: what QEMU's process_msg_shmem sees (fstat size: a power of two, at least
    // a page; QEMU asserts the power of two when it registers BAR2).
    let st = nix::sys::stat::fstat(q.shm.as_raw_fd()).unwrap();
    let size = st.st_size as u64;
    assert!(size.is_power_of_two() && size >= 4096, "size {size}");
    assert_eq!(size, g.shm_size());
    assert!(size >= g.data_off() + u64::from(g.data_size));
    // The provider's file: a write through the client's descriptor is seen through it.
    let st = r.fake.state();
    let ch = &st.channels[0];
    assert!(ch.orphaned && !ch.destroyed);
    let off = (size - 8) as i64;
    nix::sys::uio::pwrite(&q.shm, b"vd-ring!", off).unwrap();
    let mut b = [0u8; 8];
    nix::sys::uio::pread(&ch.shm, &mut b, off).unwrap();
    assert_eq!(&b, b"vd-ring!");

    // The two eventfds are eventfds, and distinct. (Counters are read from /proc: reading an
    // eventfd would consume it, or block.)
    assert_eventfd(q.kick.as_fd());
    assert_eventfd(q.call.as_fd());
    // The guest's doorbell (QEMU's ioeventfd signals the kick eventfd) reaches the provider's
    // kick (what the kernel backend waits on) and not the call eventfd.
    signal(q.kick.as_fd());
    assert_eq!(eventfd_count(ch.kick.as_fd()), 1);
    assert_eq!(eventfd_count(ch.call.as_fd()), 0);
    // The backend's interrupt (the provider's call) reaches the client's own vector 0.
    signal(ch.call.as_fd());
    assert_eq!(eventfd_count(q.call.as_fd()), 1);
    assert_eq!(eventfd_count(q.kick.as_fd()), 1);
    drop(st);

    // The server keeps the connection open and sends nothing more; stopping it closes the
    // connection and leaves the channel to its guest.
    let events = r.stop();
    assert_eq!(events.last(), Some(&Event::Stopped { clients: 1 }));
    assert!(proto::recv(q.sock.as_fd()).unwrap().is_none());
}

#[test]
fn stopping_leaves_channels_and_removes_the_socket_file() {
    let r = start("stop");
    let _q = qemu(&r.socket);
    let fake = r.fake.clone();
    let socket = r.socket.clone();
    r.stop();
    assert!(!socket.exists(), "socket file left behind");
    let st = fake.state();
    assert!(st.channels[0].orphaned && !st.channels[0].destroyed);
}

#[test]
fn a_second_client_gets_id_2_and_its_own_channel() {
    let r = start("two");
    let a = qemu(&r.socket);
    let b = qemu(&r.socket);
    assert_eq!((a.id, b.id), (1, 2));
    r.events.wait(|e| {
        matches!(
            e,
            Event::Client {
                client: 2,
                channel: 1,
                ..
            }
        )
    });
    let st = r.fake.state();
    assert_eq!(st.channels.len(), 2);
    // Separate eventfds.
    signal(b.kick.as_fd());
    assert_eq!(eventfd_count(st.channels[1].kick.as_fd()), 1);
    assert_eq!(eventfd_count(st.channels[0].kick.as_fd()), 0);
    assert_eq!(eventfd_count(a.kick.as_fd()), 0);
    drop(st);
    // The first QEMU exits: the server notices; the next client gets a fresh id.
    drop(a);
    r.events.wait(|e| *e == Event::Left { client: 1 });
    let c = qemu(&r.socket);
    assert_eq!(c.id, 3);
    assert_eq!(r.stop().last(), Some(&Event::Stopped { clients: 2 }));
}

#[test]
fn a_client_that_leaves_early_does_not_stop_the_server() {
    let r = start("early");
    // Connects and hangs up before reading anything.
    drop(UnixStream::connect(&r.socket).unwrap());
    // It either got its channel (the sends fit the socket buffer before the hang-up) and then
    // left, or was dropped during the setup.
    r.events.wait(|e| {
        matches!(
            e,
            Event::Left { client: 1 } | Event::Refused { client: 1, .. }
        )
    });
    // A half-read setup, then a hang-up.
    {
        let s = UnixStream::connect(&r.socket).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        assert_eq!(recv(&s).value, 0);
    }
    r.events.wait(|e| {
        matches!(
            e,
            Event::Left { client: 2 } | Event::Refused { client: 2, .. }
        )
    });
    let q = qemu(&r.socket);
    assert_eq!(q.id, 3);
    r.events
        .wait(|e| matches!(e, Event::Client { client: 3, .. }));
    r.stop();
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let d = TmpDir::new("stale");
    let cfg = config(&d);
    // What a killed server leaves: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&cfg.socket).unwrap());
    assert!(std::fs::symlink_metadata(&cfg.socket)
        .unwrap()
        .file_type()
        .is_socket());
    let r = start_with(d, cfg, FakeProvider::default());
    assert_eq!(qemu(&r.socket).id, 1);
    r.stop();
}

#[test]
fn a_busy_socket_is_refused_with_what_to_do() {
    let r = start("busy");
    let mut cfg = config(r.socket.parent().unwrap());
    cfg.image = r.image.clone();
    let e = match Server::bind(cfg, FakeProvider::default()) {
        Ok(_) => panic!("a second server bound a busy path"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        e,
        format!(
            "socket path busy: another vd-ivshmem-server listens on {} (it holds {}.lock); stop \
             it or pick another path",
            r.socket.display(),
            r.socket.display()
        )
    );
    // The first server still serves, and made no channel for the attempt.
    assert_eq!(qemu(&r.socket).id, 1);
    assert_eq!(r.fake.state().channels.len(), 1);
    r.stop();
}

#[test]
fn a_provider_failure_refuses_the_client_with_its_errno_and_serving_goes_on() {
    let r = start("fail");
    r.fake.state().fail_create = Some(Errno::ENOMEM);
    assert_eq!(refused(&r.socket), -(Errno::ENOMEM as i64));
    let ev = r.events.wait(|e| matches!(e, Event::Refused { .. }));
    let Event::Refused {
        client,
        errno,
        error,
    } = ev
    else {
        unreachable!()
    };
    assert_eq!((client, errno), (1, Errno::ENOMEM as i32));
    assert!(
        error.contains("VDE_IOC_CREATE_SHM") && error.contains("--data-mib"),
        "{error}"
    );
    // Orphaning fails: the channel is destroyed, not leaked.
    r.fake.state().fail_orphan = Some(Errno::ENOTTY);
    assert_eq!(refused(&r.socket), -(Errno::ENOTTY as i64));
    {
        let st = r.fake.state();
        assert!(st.channels[0].destroyed && !st.channels[0].orphaned);
    }
    assert_eq!(qemu(&r.socket).id, 3);
    r.stop();
}

#[test]
fn a_second_guest_on_an_image_in_use_is_refused_until_the_first_channel_ends() {
    let d = TmpDir::new("lock");
    let cfg = config(&d);
    let fake = FakeProvider::default();
    fake.state().hold_image = true;
    let r = start_with(d, cfg, fake);
    let a = qemu(&r.socket);
    // The first guest's channel holds the image (as the kernel backend does) even after its
    // QEMU's socket is gone and the server let go of its copy.
    drop(a);
    r.events.wait(|e| *e == Event::Left { client: 1 });
    assert_eq!(refused(&r.socket), -(Errno::EBUSY as i64));
    let ev = r
        .events
        .wait(|e| matches!(e, Event::Refused { client: 2, .. }));
    assert!(format!("{ev:?}").contains("stop that VM first"), "{ev:?}");
    // The channel ends (the kernel drops the image): the next guest gets the disk.
    r.fake.state().channels[0].image = None;
    assert_eq!(qemu(&r.socket).id, 3);
    r.stop();
}

#[test]
fn a_missing_image_fails_at_startup_with_what_to_do() {
    let d = TmpDir::new("noimg");
    let cfg = config(&d);
    let e = match Server::bind(cfg.clone(), FakeProvider::default()) {
        Ok(_) => panic!("started without an image"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("disk.img") && e.contains("truncate -s"), "{e}");
    // Nothing was bound.
    assert!(!cfg.socket.exists());
}

#[test]
fn events_serialize_as_one_json_object_each() {
    let e = Event::Client {
        client: 1,
        channel: 7,
        key: Some(42),
        image: "/var/lib/vd/a.img".into(),
        size: 4096,
        shm_size: 16 << 20,
        data_off: 12288,
    };
    assert_eq!(
        serde_json::to_string(&e).unwrap(),
        r#"{"event":"client","client":1,"channel":7,"key":42,"image":"/var/lib/vd/a.img","size":4096,"shm_size":16777216,"data_off":12288}"#
    );
    let e = Event::Refused {
        client: 2,
        errno: 16,
        error: "x".into(),
    };
    assert_eq!(
        serde_json::to_string(&e).unwrap(),
        r#"{"event":"refused","client":2,"errno":16,"error":"x"}"#
    );
    assert!(e.message().contains("version -16"));
}
