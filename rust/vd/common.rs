// SPDX-License-Identifier: GPL-2.0
//! What every vd device does the same way: `VD_IOC_VERSION`, the open-file count, and copying
//! ioctl arguments (plain `#[repr(C)]` ABI structs) in and out of user memory.

use super::uapi::{fixed_str, VdDriver, VdVersion, VD_ABI_VERSION};
use core::sync::atomic::{AtomicU32, Ordering};
use kernel::prelude::*;
use kernel::transmute::{AsBytes, FromBytes};
use kernel::uaccess::{UserPtr, UserSlice};

/// Version of the vd modules, answered in `VD_IOC_VERSION`.
pub(crate) const VERSION: &str = "0.1.0";

// SAFETY: `VdVersion` is `#[repr(C)]` of integers and a byte array with no padding (its size and
// offsets are asserted in the ABI), so every byte is initialised and any bit pattern is valid.
unsafe impl AsBytes for VdVersion {}
// SAFETY: as above.
unsafe impl FromBytes for VdVersion {}

/// Counts the files open on a device; the count goes down when the guard drops.
pub(crate) struct OpenCount(AtomicU32);

/// One open file counted in an [`OpenCount`].
pub(crate) struct OpenGuard(&'static OpenCount);

impl OpenCount {
    /// A zero count.
    pub(crate) const fn new() -> Self {
        Self(AtomicU32::new(0))
    }
    /// Counts one more open file until the guard drops.
    pub(crate) fn enter(&'static self) -> OpenGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self)
    }
    /// Files open now.
    pub(crate) fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers `VD_IOC_VERSION` into the user buffer at `arg`.
pub(crate) fn reply_version(
    arg: usize,
    driver: VdDriver,
    features: u64,
    open_files: u32,
    objects: u32,
) -> Result<isize> {
    let v = VdVersion {
        abi_version: VD_ABI_VERSION,
        driver: driver as u32,
        features,
        open_files,
        objects,
        module_version: fixed_str(VERSION),
    };
    UserSlice::new(UserPtr::from_addr(arg), size_of::<VdVersion>())
        .writer()
        .write(&v)?;
    Ok(0)
}

/// Copies one `T` in from the user buffer at `arg` (an ioctl argument), once.
pub(crate) fn read<T: FromBytes>(arg: usize) -> Result<T> {
    UserSlice::new(UserPtr::from_addr(arg), size_of::<T>())
        .reader()
        .read::<T>()
}

/// Copies `v` out to the user buffer at `arg` (an ioctl argument).
pub(crate) fn write<T: AsBytes>(arg: usize, v: &T) -> Result {
    UserSlice::new(UserPtr::from_addr(arg), size_of::<T>())
        .writer()
        .write(v)
}

/// `unsafe impl FromBytes` and `AsBytes` for each ABI struct listed, so that [`read`] and
/// [`write`] take them. The caller's `// SAFETY:` comment must say why each type qualifies: a
/// `#[repr(C)]` struct of integers and byte arrays with no padding (sizes and offsets asserted in
/// the ABI), so every byte is initialised and every bit pattern is a valid value.
macro_rules! unsafe_impl_pod {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: the caller's `// SAFETY:` comment (see the macro's documentation).
        unsafe impl kernel::transmute::FromBytes for $t {}
        // SAFETY: as above.
        unsafe impl kernel::transmute::AsBytes for $t {}
    )*};
}
pub(crate) use unsafe_impl_pod;
