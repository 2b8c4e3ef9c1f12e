//! Safe wrappers of the vd ioctls for userspace (vdctl, vdd, the test VMM, benchmarks): one thin
//! method per ioctl returning `Result<T, Errno>`, in the style of rust-vmm's `kvm-ioctls`.

/// Declares a handle on an open vd device node with what every vd device has: open, wrap an
/// open file, the file, `VD_IOC_VERSION`.
macro_rules! device_handle {
    ($(#[$m:meta])* $name:ident, $path:expr) => {
        $(#[$m])*
        #[derive(Debug)]
        pub struct $name {
            file: std::fs::File,
        }

        impl $name {
            /// Opens the device node.
            pub fn open() -> std::io::Result<Self> {
                Self::open_path(std::path::Path::new($path))
            }
            /// Opens the device node at `p`.
            pub fn open_path(p: &std::path::Path) -> std::io::Result<Self> {
                Ok(Self { file: std::fs::OpenOptions::new().read(true).write(true).open(p)? })
            }
            /// Wraps an already open file (tests use a faulty one).
            pub fn from_file(file: std::fs::File) -> Self {
                Self { file }
            }
            /// The underlying file.
            pub fn file(&self) -> &std::fs::File {
                &self.file
            }
            /// `VD_IOC_VERSION`.
            pub fn version(&self) -> Result<vd_uapi::VdVersion, nix::errno::Errno> {
                crate::version(&self.file)
            }
        }
    };
}

pub mod evdev;
pub mod evtchn;
pub mod input;
pub mod qemu;
pub mod sriov;
pub mod vfmac;

use nix::errno::Errno;
use std::fs::File;
use std::os::fd::AsRawFd;
use vd_uapi::{VdVersion, VD_IOC_VERSION};

/// `ioctl(fd, cmd, arg)` where `arg` points to a `T` the kernel reads and/or writes.
///
/// # Safety
///
/// `cmd` must be an ioctl whose argument is a pointer to exactly one `T`.
pub(crate) unsafe fn ioctl_ptr<T>(f: &File, cmd: u32, arg: &mut T) -> Result<i32, Errno> {
    // SAFETY: the caller guarantees `cmd` takes a `*mut T`; `arg` is valid and exclusive.
    let r = unsafe { nix::libc::ioctl(f.as_raw_fd(), cmd as _, arg as *mut T) };
    Errno::result(r)
}

/// `VD_IOC_VERSION` on any open vd device.
pub fn version(f: &File) -> Result<VdVersion, Errno> {
    let mut v = VdVersion::default();
    // SAFETY: VD_IOC_VERSION is `_IOR` of one `VdVersion`.
    unsafe { ioctl_ptr(f, VD_IOC_VERSION, &mut v) }?;
    Ok(v)
}
