// SPDX-License-Identifier: GPL-2.0
//! File-side helpers: capability checks against a file's opener, the non-blocking flag of a read.

use kernel::bindings;
use kernel::fs::{File, Kiocb};
use kernel::types::ForeignOwnable;

/// `CAP_NET_ADMIN`.
pub(crate) const CAP_NET_ADMIN: i32 = bindings::CAP_NET_ADMIN as i32;

/// Whether the process that *opened* `file` had capability `cap` in the initial user namespace
/// (`file_ns_capable`, as netlink and tun check their openers: a privileged opener may hand the
/// file to a less privileged helper, never the other way round).
pub(crate) fn opener_capable(file: &File, cap: i32) -> bool {
    // SAFETY: `file` is valid for the call; `init_user_ns` is a static that lives forever and is
    // only read by the callee.
    unsafe { bindings::file_ns_capable(file.as_ptr(), &raw mut bindings::init_user_ns, cap) }
}

/// `IOCB_NOWAIT` (`(__force int) RWF_NOWAIT`: a cast macro bindgen does not export).
const IOCB_NOWAIT: i32 = 0x8;

/// Whether a read through `kiocb` must not block (`O_NONBLOCK` on the file, or `RWF_NOWAIT`).
pub(crate) fn nonblocking<T: ForeignOwnable>(kiocb: &Kiocb<'_, T>) -> bool {
    let k = kiocb.as_raw();
    // SAFETY: `k` is the live kiocb of the current read; its `ki_filp` is the file being read.
    unsafe {
        ((*k).ki_flags & IOCB_NOWAIT) != 0 || ((*(*k).ki_filp).f_flags & bindings::O_NONBLOCK) != 0
    }
}
