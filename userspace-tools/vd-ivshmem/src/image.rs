//! The disk image: a regular file or a block device, opened read-write, locked exclusively.
//!
//! The lock is a `flock` on the open file that the kernel's block backend keeps (it holds the
//! same `struct file`), so it lasts as long as the guest's channel, across restarts of this
//! server, and ends when the channel is torn down (QEMU gone). A second guest on the same
//! image is refused instead of both writing it.

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the image is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageKind {
    /// A regular file.
    File,
    /// A block device.
    BlockDevice,
}

/// An image's path, kind and size in bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    /// As given.
    pub path: PathBuf,
    /// Regular file or block device.
    pub kind: ImageKind,
    /// Bytes.
    pub size: u64,
}

/// Why an image cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Open failed.
    #[error("image {path}: {err}{hint}", path = .0.display(), err = .1, hint = open_hint(.1))]
    Open(PathBuf, std::io::Error),
    /// Not a regular file or block device.
    #[error("image {p}: a {k}, not a regular file or a block device: fix --image", p = .0.display(), k = .1)]
    Kind(PathBuf, &'static str),
    /// Zero bytes.
    #[error("image {p}: empty (0 bytes): give the disk a size, e.g. truncate -s 8G {p}", p = .0.display())]
    Empty(PathBuf),
    /// Another holder has the lock.
    #[error(
        "image {p}: in use (locked) after waiting {w:?}: another guest's vd channel (or another \
         vd-ivshmem-server's client) still has it; stop that VM first, or wait until it exits",
        p = .0.display(), w = .1
    )]
    Busy(PathBuf, Duration),
    /// The wait for the lock was interrupted by a stop request.
    #[error("image {p}: stopped while waiting for its lock", p = .0.display())]
    Stopped(PathBuf),
    /// Another system call failed.
    #[error("image {p}: {w}: {e}", p = .0.display(), w = .1, e = .2)]
    Sys(PathBuf, &'static str, Errno),
}

fn open_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => " (create it, e.g. truncate -s 8G FILE, or fix --image)",
        std::io::ErrorKind::PermissionDenied => {
            " (the server needs read-write access: run it as the image's owner or root)"
        }
        std::io::ErrorKind::IsADirectory => {
            " (--image names the disk image itself: a regular file or a block device)"
        }
        _ => "",
    }
}

impl ImageError {
    /// The errno a refused client is told (as a negative protocol version).
    pub fn errno(&self) -> Errno {
        match self {
            Self::Open(_, e) => Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)),
            Self::Kind(..) => Errno::EINVAL,
            Self::Empty(_) => Errno::EINVAL,
            Self::Busy(..) => Errno::EBUSY,
            Self::Stopped(_) => Errno::ECANCELED,
            Self::Sys(_, _, e) => *e,
        }
    }
}

/// Opens `path` read-write (close-on-exec) and checks kind and size.
pub fn open(path: &Path) -> Result<(File, ImageInfo), ImageError> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| ImageError::Open(path.to_owned(), e))?;
    let md = f
        .metadata()
        .map_err(|e| ImageError::Open(path.to_owned(), e))?;
    let ft = md.file_type();
    let (kind, size) = if ft.is_file() {
        (ImageKind::File, md.len())
    } else if ft.is_block_device() {
        let end = f.seek(SeekFrom::End(0));
        let start = f.seek(SeekFrom::Start(0));
        match (end, start) {
            (Ok(n), Ok(_)) => (ImageKind::BlockDevice, n),
            (Err(e), _) | (_, Err(e)) => return Err(ImageError::Open(path.to_owned(), e)),
        }
    } else {
        let what = if ft.is_dir() {
            "directory"
        } else if ft.is_char_device() {
            "character device"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_socket() {
            "socket"
        } else {
            "special file"
        };
        return Err(ImageError::Kind(path.to_owned(), what));
    };
    if size == 0 {
        return Err(ImageError::Empty(path.to_owned()));
    }
    Ok((
        f,
        ImageInfo {
            path: path.to_owned(),
            kind,
            size,
        },
    ))
}

fn try_lock(f: &File) -> Result<bool, Errno> {
    // SAFETY: flock on a descriptor we own; no memory is passed. (nix's `Flock` would unlock on
    // drop, which would also unlock the kernel backend's reference to the same open file.)
    let r = unsafe { nix::libc::flock(f.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) };
    match Errno::result(r) {
        Ok(_) => Ok(true),
        Err(Errno::EWOULDBLOCK) => Ok(false),
        Err(Errno::EINTR) => Ok(false),
        Err(e) => Err(e),
    }
}

/// [`open`], then takes the exclusive lock, waiting up to `wait` for a previous guest's
/// channel to finish its teardown (QEMU restarted: the old channel ends asynchronously).
/// `stop` readable aborts the wait.
pub fn open_locked(
    path: &Path,
    wait: Duration,
    stop: Option<BorrowedFd<'_>>,
) -> Result<(File, ImageInfo), ImageError> {
    let (f, info) = open(path)?;
    let deadline = Instant::now() + wait;
    loop {
        if try_lock(&f).map_err(|e| ImageError::Sys(path.to_owned(), "flock", e))? {
            return Ok((f, info));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ImageError::Busy(path.to_owned(), wait));
        }
        // Nothing signals the lock's release: look again every 20 ms, or stop.
        let step = (deadline - now).min(Duration::from_millis(20));
        let ms = PollTimeout::try_from(step).unwrap_or(PollTimeout::ZERO);
        match stop {
            Some(s) => {
                let mut p = [PollFd::new(s, PollFlags::POLLIN)];
                match poll(&mut p, ms) {
                    Ok(n) if n > 0 => return Err(ImageError::Stopped(path.to_owned())),
                    _ => {}
                }
            }
            None => std::thread::sleep(step),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TmpDir;

    #[test]
    fn a_regular_file_opens_with_its_size() {
        let d = TmpDir::new("img-ok");
        let p = d.join("disk.img");
        File::create(&p).unwrap().set_len(1 << 20).unwrap();
        let (_, i) = open(&p).unwrap();
        assert_eq!((i.kind, i.size), (ImageKind::File, 1 << 20));
    }

    #[test]
    fn bad_images_say_what_to_do() {
        let d = TmpDir::new("img-bad");
        let e = open(&d.join("missing.img")).unwrap_err();
        assert_eq!(e.errno(), Errno::ENOENT);
        assert!(e.to_string().contains("truncate -s"), "{e}");
        let e = open(&d).unwrap_err();
        // A directory does not open read-write.
        assert_eq!(e.errno(), Errno::EISDIR);
        assert!(
            e.to_string().contains("regular file or a block device"),
            "{e}"
        );
        let p = d.join("empty.img");
        File::create(&p).unwrap();
        let e = open(&p).unwrap_err();
        assert!(matches!(e, ImageError::Empty(_)), "{e}");
        assert!(e.to_string().contains("empty"), "{e}");
        let e = open(Path::new("/dev/null")).unwrap_err();
        assert!(matches!(e, ImageError::Kind(_, "character device")), "{e}");
    }

    #[test]
    fn the_lock_lasts_while_another_copy_of_the_open_file_lives() {
        let d = TmpDir::new("img-lock");
        let p = d.join("disk.img");
        File::create(&p).unwrap().set_len(4096).unwrap();
        let (f, _) = open_locked(&p, Duration::ZERO, None).unwrap();
        // The kernel backend's reference: a second descriptor of the same open file.
        let held = f.try_clone().unwrap();
        drop(f);
        let e = open_locked(&p, Duration::from_millis(60), None).unwrap_err();
        assert!(matches!(e, ImageError::Busy(..)), "{e}");
        assert_eq!(e.errno(), Errno::EBUSY);
        assert!(e.to_string().contains("stop that VM"), "{e}");
        drop(held);
        open_locked(&p, Duration::ZERO, None).unwrap();
    }

    #[test]
    fn the_lock_wait_ends_when_the_holder_lets_go() {
        let d = TmpDir::new("img-wait");
        let p = d.join("disk.img");
        File::create(&p).unwrap().set_len(4096).unwrap();
        let (held, _) = open_locked(&p, Duration::ZERO, None).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
        });
        open_locked(&p, Duration::from_secs(30), None).unwrap();
        t.join().unwrap();
    }
}
