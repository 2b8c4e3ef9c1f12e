// SPDX-License-Identifier: GPL-2.0
//! 0/1 debugfs knobs: a flag a test sets by writing `0` or `1` to a debugfs file (root only) and
//! reads back as `0` or `1`. The driver owns the flag (a `static` [`BoolKnob`]) and hands debugfs
//! a reference to it:
//!
//! ```ignore
//! static CORRUPT: BoolKnob = BoolKnob::new();
//! dir.read_write_file(c"corrupt", &CORRUPT)
//! ```
//!
//! A file that shows more than the flag wraps it in its own type (its own `Debug`) and forwards
//! writes to [`BoolKnob::write_from`].

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use kernel::prelude::*;
use kernel::uaccess::UserSliceReader;

/// A flag set from debugfs by writing `0` or `1`. Lock-free: read from any context.
pub(crate) struct BoolKnob(AtomicBool);

impl BoolKnob {
    /// A knob that is not set.
    pub(crate) const fn new() -> Self {
        Self(AtomicBool::new(false))
    }

    /// Whether the knob is set.
    pub(crate) fn get(&self) -> bool {
        self.0.load(Relaxed)
    }

    /// Clears the knob and returns whether it was set (a one-shot knob: one taker sees `true`).
    #[allow(
        dead_code,
        reason = "vd_front's corrupt knob is one-shot; vd_evtchn's is a level"
    )]
    pub(crate) fn take(&self) -> bool {
        self.0.swap(false, Relaxed)
    }

    /// Sets the knob from a debugfs write: at most 8 bytes whose first is `0` or `1` (what
    /// follows, such as `echo`'s newline, is ignored); anything else is `EINVAL` and leaves the
    /// knob as it was.
    pub(crate) fn write_from(&self, reader: &mut UserSliceReader) -> Result {
        let mut buf = [0u8; 8];
        let n = reader.len();
        let b = buf.get_mut(..n).ok_or(EINVAL)?;
        reader.read_slice(b)?;
        let v = match b.first() {
            Some(b'0') => false,
            Some(b'1') => true,
            _ => return Err(EINVAL),
        };
        self.0.store(v, Relaxed);
        Ok(())
    }
}

/// Reads as `0` or `1` and a newline.
impl fmt::Debug for BoolKnob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", u8::from(self.get()))
    }
}

/// The debugfs file of a `static` knob: writes set it (see [`BoolKnob::write_from`]).
impl kernel::debugfs::Reader for &'static BoolKnob {
    fn read_from_slice(&self, reader: &mut UserSliceReader) -> Result {
        self.write_from(reader)
    }
}
