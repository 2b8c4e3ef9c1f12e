// SPDX-License-Identifier: GPL-2.0
//! Hop-by-hop timestamps for `make bench`: where a request's time goes between a guest's
//! driver and the host's backend.
//!
//! A [`HopTrace`] is a fixed array of records of `W` stamps, filled in order while it is on
//! and never wrapped (a benchmark turns it on, runs a bounded number of requests and reads it
//! back). Stamps are TSC values: the only clock a nested guest and its host share (the guest's
//! TSC is the host's plus KVM's per-vCPU offset, which KVM's debugfs shows as
//! `vcpuN/tsc-offset`), so a benchmark can line up the guest's and the host's records of the
//! same request.
//!
//! Its debugfs file (root only): writing `1` empties the trace and turns it on, `0` turns it
//! off; reading gives `hops <records> <dropped>` and then one record per line, its stamps in
//! decimal separated by spaces.
//!
//! Recording takes no lock (a slot is claimed with one atomic add; its stamps are relaxed
//! stores): a reader may see a record whose stamps are still being written, which a benchmark
//! avoids by reading after its requests completed. Off, it costs one relaxed load.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use kernel::prelude::*;
use kernel::uaccess::UserSliceReader;

/// The CPU's time-stamp counter.
pub(crate) fn tsc() -> u64 {
    // SAFETY: RDTSC only reads the counter into registers: no memory is touched, and CR4.TSD
    // restricts it only at CPL 3 (this is kernel code).
    #[allow(unused_unsafe, reason = "`_rdtsc` is an `unsafe fn` in older cores")]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// Records of `W` stamps, at most `CAP` of them per run.
pub(crate) struct HopTrace<const W: usize, const CAP: usize> {
    on: AtomicBool,
    /// Slots claimed since the trace was emptied (may exceed `CAP`: the excess was dropped).
    next: AtomicUsize,
    recs: [[AtomicU64; W]; CAP],
}

impl<const W: usize, const CAP: usize> HopTrace<W, CAP> {
    /// An empty trace, off.
    pub(crate) const fn new() -> Self {
        Self {
            on: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            recs: [const { [const { AtomicU64::new(0) }; W] }; CAP],
        }
    }

    /// Whether records are kept (callers take their stamps only then).
    pub(crate) fn on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// Keeps one record (nothing when off or full).
    pub(crate) fn record(&self, stamps: [u64; W]) {
        if !self.on() {
            return;
        }
        let i = self.next.fetch_add(1, Relaxed);
        if let Some(rec) = self.recs.get(i) {
            for (slot, v) in rec.iter().zip(stamps) {
                slot.store(v, Relaxed);
            }
        }
    }

    /// Empties the trace and turns it on, or turns it off.
    pub(crate) fn set(&self, on: bool) {
        if on {
            self.on.store(false, Relaxed);
            self.next.store(0, Relaxed);
        }
        self.on.store(on, Relaxed);
    }

    /// Handles a debugfs write: `1` (empty and start) or `0` (stop), then anything (a newline);
    /// at most 8 bytes. Anything else is `EINVAL`.
    pub(crate) fn write_from(&self, reader: &mut UserSliceReader) -> Result {
        let mut buf = [0u8; 8];
        let b = buf.get_mut(..reader.len()).ok_or(EINVAL)?;
        reader.read_slice(b)?;
        match b.first() {
            Some(b'0') => self.set(false),
            Some(b'1') => self.set(true),
            _ => return Err(EINVAL),
        }
        Ok(())
    }
}

impl<const W: usize, const CAP: usize> fmt::Debug for HopTrace<W, CAP> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let claimed = self.next.load(Relaxed);
        let n = claimed.min(CAP);
        writeln!(f, "hops {} {}", n, claimed - n)?;
        for rec in self.recs.iter().take(n) {
            for (k, s) in rec.iter().enumerate() {
                let sep = if k + 1 == W { "\n" } else { " " };
                write!(f, "{}{}", s.load(Relaxed), sep)?;
            }
        }
        Ok(())
    }
}

/// The debugfs file of a `static` trace.
impl<const W: usize, const CAP: usize> kernel::debugfs::Reader for &'static HopTrace<W, CAP> {
    fn read_from_slice(&self, reader: &mut UserSliceReader) -> Result {
        self.write_from(reader)
    }
}
