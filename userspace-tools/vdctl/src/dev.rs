//! Opening the vd devices and calling their ioctls.

use anyhow::{Context, Result};
use std::fs::File;
use std::path::Path;
use vd_uapi::{VdDriver, VdVersion};

/// Opens `/dev/<name>` (or a test path), read-write.
pub fn open(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| {
            format!(
                "open {}: is the module loaded (insmod) and are you root?",
                path.display()
            )
        })
}

/// `VD_IOC_VERSION` on an open vd device.
pub fn version(f: &File) -> nix::Result<VdVersion> {
    vd_sys::version(f)
}

/// Device node of a driver.
pub fn node(d: VdDriver) -> std::path::PathBuf {
    Path::new("/dev").join(d.dev_name())
}

/// Text of a NUL-padded fixed field.
pub fn fixed_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faulty_fd_is_ebadf() {
        // Like rust-vmm's faulty-fd tests: a handle on a closed descriptor.
        use std::os::fd::FromRawFd;
        // SAFETY: fd -2 is never valid; ioctl on it fails with EBADF and we forget the File.
        let f = unsafe { File::from_raw_fd(-2) };
        assert_eq!(version(&f).unwrap_err(), nix::errno::Errno::EBADF);
        std::mem::forget(f);
    }

    #[test]
    fn wrong_device_is_enotty() {
        let f = File::open("/dev/null").unwrap();
        assert_eq!(version(&f).unwrap_err(), nix::errno::Errno::ENOTTY);
    }

    #[test]
    fn open_error_says_what_to_do() {
        let e = open(Path::new("/nonexistent/vd_evtchn")).unwrap_err();
        assert!(format!("{e:#}").contains("is the module loaded"));
    }

    #[test]
    fn fixed_str_stops_at_nul() {
        assert_eq!(fixed_str(b"0.1.0\0\0\0"), "0.1.0");
        assert_eq!(fixed_str(b"abc"), "abc");
    }
}
