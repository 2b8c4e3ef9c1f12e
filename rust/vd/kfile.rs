// SPDX-License-Identifier: GPL-2.0
//! File-side helpers: the non-blocking flag of a read. (Capability checks against a file's
//! opener: `cred.rs`.)

use kernel::bindings;
use kernel::fs::Kiocb;
use kernel::types::ForeignOwnable;

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
