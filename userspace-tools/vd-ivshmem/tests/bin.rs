//! The `vd-ivshmem-server` binary: `--json` events, SIGTERM/SIGINT, a busy socket, bad
//! arguments (with `--test-fake-channels`: no `/dev/vd_evtchn` needed).

use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use vd_ivshmem::proto;
use vd_ivshmem::testutil::{watchdog, TmpDir};

const BIN: &str = env!("CARGO_BIN_EXE_vd-ivshmem-server");
const WAIT: Duration = Duration::from_secs(60);

fn image(dir: &Path) -> PathBuf {
    let p = dir.join("disk.img");
    std::fs::File::create(&p).unwrap().set_len(1 << 20).unwrap();
    p
}

fn command(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--socket")
        .arg(dir.join("vd.sock"))
        .arg("--image")
        .arg(dir.join("disk.img"))
        .args(["--json", "--test-fake-channels"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// The server, killed after `WAIT` at the latest (a hung server fails the test).
struct Running {
    child: Child,
    out: BufReader<ChildStdout>,
    _watchdog: std::sync::mpsc::Sender<()>,
}

impl Running {
    fn start(dir: &Path) -> Self {
        let mut child = command(dir).args(["--data-mib", "1"]).spawn().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let _watchdog = watchdog(child.id(), WAIT);
        let mut r = Self {
            child,
            out,
            _watchdog,
        };
        let e = r.event();
        assert_eq!(e["event"], "listening", "{e}");
        r
    }

    /// The next JSON event line.
    fn event(&mut self) -> Value {
        let mut l = String::new();
        assert!(self.out.read_line(&mut l).unwrap() > 0, "stdout closed");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{l:?}: {e}"))
    }

    fn signal_and_wait(mut self, sig: Signal) -> (Value, bool, String) {
        kill(Pid::from_raw(self.child.id() as i32), sig).unwrap();
        let e = self.event();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let st = self.child.wait().unwrap();
        (e, st.success(), err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a whole setup as QEMU does; the socket stays open.
fn qemu(socket: &Path) -> UnixStream {
    let s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let got: Vec<(i64, usize)> = (0..5)
        .map(|_| {
            let m = proto::recv(s.as_fd()).unwrap().expect("end of setup");
            (m.value, m.fds.len())
        })
        .collect();
    assert_eq!(got, [(0, 0), (1, 0), (-1, 1), (0, 1), (1, 1)]);
    s
}

#[test]
fn json_events_and_a_clean_sigterm_that_leaves_the_guest_alone() {
    let d = TmpDir::new("bin-term");
    image(&d);
    let socket = d.join("vd.sock");
    let mut r = Running::start(&d);
    let q = qemu(&socket);
    let e = r.event();
    assert_eq!(
        (&e["event"], &e["client"], &e["size"], &e["shm_size"]),
        (
            &Value::from("client"),
            &Value::from(1),
            &Value::from(1 << 20),
            &Value::from(2 << 20)
        ),
        "{e}"
    );
    // A second server on the same socket is refused, saying what to do; the first goes on.
    let out = command(&d).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "socket path busy: another vd-ivshmem-server listens on {}",
            socket.display()
        )) && err.contains("stop it or pick another path"),
        "{err}"
    );
    let (e, ok, err) = r.signal_and_wait(Signal::SIGTERM);
    assert_eq!(e["event"], "stopped", "{e}");
    assert_eq!(e["clients"], 1, "{e}");
    assert!(ok, "exit status after SIGTERM; stderr: {err}");
    assert!(!socket.exists(), "socket file left behind");
    // QEMU's connection ends; nothing more was sent.
    q.set_read_timeout(Some(WAIT)).unwrap();
    assert!(proto::recv(q.as_fd()).unwrap().is_none());
}

#[test]
fn sigint_stops_it_too() {
    let d = TmpDir::new("bin-int");
    image(&d);
    let r = Running::start(&d);
    let (e, ok, err) = r.signal_and_wait(Signal::SIGINT);
    assert_eq!(e["event"], "stopped", "{e}");
    assert!(ok, "{err}");
}

#[test]
fn bad_arguments_say_what_to_do() {
    let d = TmpDir::new("bin-args");
    let run = |extra: &[&str]| {
        let out = command(&d).args(extra).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // No image yet.
    let (code, err) = run(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("disk.img") && err.contains("truncate -s"),
        "{err}"
    );
    image(&d);
    let (code, err) = run(&["--data-mib", "65"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--data-mib 65: between 1 and 64"), "{err}");
    let (code, err) = run(&["--entries", "100"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--entries 100"), "{err}");
    let (code, err) = run(&["--mode", "0999"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("octal mode"), "{err}");
    // Without the fake: the device is checked first.
    let out = Command::new(BIN)
        .arg("--socket")
        .arg(d.join("vd.sock"))
        .arg("--image")
        .arg(d.join("disk.img"))
        .args(["--device", "/nonexistent/vd_evtchn"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("modprobe vd_evtchn"), "{err}");
}
