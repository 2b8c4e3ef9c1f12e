//! Helpers for the tests.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;

/// A test's scratch directory, removed when dropped (also when the test fails).
pub struct TmpDir(PathBuf);

impl TmpDir {
    /// `{temp}/vd-ivshmem-{pid}-{name}-{n}`, empty. Short: socket paths have 108 bytes.
    pub fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "vd-ivshmem-{}-{name}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        if let Err(e) = std::fs::create_dir_all(&d) {
            panic!("{}: {e}", d.display());
        }
        Self(d)
    }
}

impl std::ops::Deref for TmpDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The counter of an eventfd, from `/proc/self/fdinfo` (reading the eventfd would consume it,
/// or block).
pub fn eventfd_count(fd: BorrowedFd<'_>) -> u64 {
    let p = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    s.lines()
        .find_map(|l| l.strip_prefix("eventfd-count:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or_else(|| panic!("{p}: not an eventfd: {s}"))
}

/// Kills process `pid` after `after` unless the returned sender is used (or dropped) first: a
/// hung child fails its test instead of hanging it.
pub fn watchdog(pid: u32, after: std::time::Duration) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(after) {
            eprintln!("process {pid} still running after {after:?}: killed");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    tx
}
