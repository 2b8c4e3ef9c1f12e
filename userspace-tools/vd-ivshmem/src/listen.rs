//! The listening socket: one server per path, a stale socket file replaced, a live one never.
//!
//! `PATH.lock` (kept: removing a lock file races) is `flock`ed for the server's life: a second
//! vd-ivshmem-server on the same path is refused without connecting to the first (which would
//! make it set up a channel for nothing). A socket file without a lock holder is probed with a
//! non-blocking connect: refused = stale (removed), answered = another program listens there.

use nix::errno::Errno;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// Why the socket cannot be bound.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another vd-ivshmem-server holds the path.
    #[error(
        "socket path busy: another vd-ivshmem-server listens on {p} (it holds {l}); stop it or \
         pick another path",
        p = .0.display(), l = .1.display()
    )]
    Busy(PathBuf, PathBuf),
    /// Some other program listens there.
    #[error(
        "socket path busy: another process listens on {p} (it answers connections); stop it or \
         pick another path",
        p = .0.display()
    )]
    Answered(PathBuf),
    /// The path is something else.
    #[error("{p} exists and is not a socket: remove it or pick another path", p = .0.display())]
    NotSocket(PathBuf),
    /// A system call failed.
    #[error("socket {p}: {w}: {e}{hint}", p = .0.display(), w = .1, e = .2, hint = io_hint(.2))]
    Io(PathBuf, &'static str, std::io::Error),
}

fn io_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => " (the server needs write access to the directory)",
        _ => "",
    }
}

/// The bound socket. Dropping it removes the socket file if it is still this one.
#[derive(Debug)]
pub struct Listener {
    /// The listening socket (non-blocking, close-on-exec).
    pub sock: UnixListener,
    path: PathBuf,
    id: (u64, u64),
    _lock: File,
}

impl Listener {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// `PATH.lock` next to the socket.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Whether something listens on `path`: `Ok(false)` for no listener (a stale file). A
/// non-blocking connect, so a listener whose backlog is full cannot hang the probe.
fn answers(path: &Path) -> Result<bool, Errno> {
    use nix::libc;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: `sockaddr_un` is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return Err(Errno::ENAMETOOLONG);
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = Errno::result(unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `addr` is a valid `sockaddr_un` of the size passed, alive during the call.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    match Errno::result(r) {
        // Accepted, or its backlog is full: a listener either way.
        Ok(_) | Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS) => Ok(true),
        Err(Errno::ECONNREFUSED) | Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Binds `path` (creating its directory), mode `mode`, group `gid` if given.
pub fn bind(path: &Path, mode: u32, gid: Option<u32>) -> Result<Listener, ListenError> {
    let io = |what, e| ListenError::Io(path.to_owned(), what, e);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io("creating its directory", e))?;
    }
    let lp = lock_path(path);
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open(&lp)
        .map_err(|e| io("opening its lock file", e))?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    let r = unsafe { nix::libc::flock(lock.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) };
    match Errno::result(r) {
        Ok(_) => {}
        Err(Errno::EWOULDBLOCK) => return Err(ListenError::Busy(path.to_owned(), lp)),
        Err(e) => return Err(io("locking its lock file", e.into())),
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => return Err(ListenError::NotSocket(path.to_owned())),
        Ok(_) => match answers(path) {
            Ok(true) => return Err(ListenError::Answered(path.to_owned())),
            Ok(false) => match std::fs::remove_file(path) {
                Ok(()) => tracing::info!("{}: removed a stale socket file", path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("removing the stale socket file", e)),
            },
            Err(e) => return Err(io("probing the existing socket", e.into())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("stat", e)),
    }
    let sock = UnixListener::bind(path).map_err(|e| io("bind", e))?;
    let m = std::fs::symlink_metadata(path).map_err(|e| io("stat", e))?;
    if let Some(g) = gid {
        std::os::unix::fs::lchown(path, None, Some(g)).map_err(|e| io("chgrp", e))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io("chmod", e))?;
    sock.set_nonblocking(true)
        .map_err(|e| io("set_nonblocking", e))?;
    Ok(Listener {
        sock,
        path: path.to_owned(),
        id: (m.dev(), m.ino()),
        _lock: lock,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TmpDir;
    use std::os::unix::net::UnixStream;

    #[test]
    fn binds_with_mode_and_removes_its_file_on_drop() {
        let d = TmpDir::new("listen-ok");
        let p = d.join("sub/vd.sock");
        let l = bind(&p, 0o660, None).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert!(m.file_type().is_socket());
        assert_eq!(m.permissions().mode() & 0o777, 0o660);
        UnixStream::connect(&p).unwrap();
        drop(l);
        assert!(!p.exists());
        assert!(lock_path(&p).exists());
    }

    #[test]
    fn a_stale_socket_file_is_replaced() {
        let d = TmpDir::new("listen-stale");
        let p = d.join("vd.sock");
        // A socket file nobody listens on: what a killed server leaves.
        drop(UnixListener::bind(&p).unwrap());
        assert!(p.exists());
        let l = bind(&p, 0o600, None).unwrap();
        UnixStream::connect(&p).unwrap();
        drop(l);
    }

    #[test]
    fn a_second_server_on_the_path_is_refused_and_the_first_keeps_it() {
        let d = TmpDir::new("listen-busy");
        let p = d.join("vd.sock");
        let l = bind(&p, 0o600, None).unwrap();
        let e = bind(&p, 0o600, None).unwrap_err();
        assert!(matches!(e, ListenError::Busy(..)), "{e}");
        let s = e.to_string();
        assert!(
            s.contains("socket path busy: another vd-ivshmem-server listens on")
                && s.contains("stop it or pick another path"),
            "{s}"
        );
        // The first server's socket is intact.
        UnixStream::connect(&p).unwrap();
        drop(l);
    }

    #[test]
    fn another_program_listening_is_never_removed() {
        let d = TmpDir::new("listen-other");
        let p = d.join("vd.sock");
        let other = UnixListener::bind(&p).unwrap();
        let e = bind(&p, 0o600, None).unwrap_err();
        assert!(matches!(e, ListenError::Answered(_)), "{e}");
        assert!(e.to_string().contains("another process listens on"), "{e}");
        // Still the other program's socket.
        UnixStream::connect(&p).unwrap();
        other.accept().unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_left_alone() {
        let d = TmpDir::new("listen-file");
        let p = d.join("vd.sock");
        std::fs::write(&p, b"data").unwrap();
        let e = bind(&p, 0o600, None).unwrap_err();
        assert!(matches!(e, ListenError::NotSocket(_)), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"data");
    }
}
