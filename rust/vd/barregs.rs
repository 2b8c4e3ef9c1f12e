// SPDX-License-Identifier: GPL-2.0
//! [`BarRegs`]: a read-only, uncached kernel mapping (`ioremap`) of a few registers of a PCI
//! memory BAR whose region another driver owns, for reading side-effect-free registers of that
//! device (the SR-IOV manager reads an igb PF's per-VF statistics while igb drives the PF).
//!
//! The region is not requested (its driver holds it) and nothing is ever written: the mapping
//! only offers 32-bit `readl`s of registers the caller knows to have no read side effects.
//! Short-lived by design: map, read a few registers, drop. A mapping kept for long could outlive
//! the device's removal and read whatever device is given its addresses next; a short one leaves
//! only the moment of a read, and a removed device reads as all-ones (which callers check). The
//! mapping holds a reference to the device structure, not to its BAR assignment.

use super::pci::PciDev;
use core::ptr::NonNull;
use kernel::bindings;
use kernel::ffi::c_void;
use kernel::prelude::*;

/// An uncached mapping of `[off, off + len)` of a memory BAR of a PCI device.
///
/// # Invariants
///
/// `ptr` is the start of a live `ioremap` mapping of `len > 0` bytes of device memory inside a
/// memory BAR of `_dev`, made by [`Self::map`] and unmapped only in `Drop`.
pub(crate) struct BarRegs {
    ptr: NonNull<c_void>,
    len: usize,
    /// Keeps the device structure alive as long as the mapping.
    _dev: PciDev,
}

// SAFETY: the mapping is device memory reachable from any CPU; it is only read with `readl`,
// and `iounmap` may run on any thread.
unsafe impl Send for BarRegs {}
// SAFETY: `&self` methods are `readl`s of the mapping, which may run concurrently.
unsafe impl Sync for BarRegs {}

impl BarRegs {
    /// Maps `[off, off + len)` of memory BAR `bar` of `dev`. `EINVAL` if that is not inside an
    /// assigned memory BAR (see [`PciDev::mem_bar_range`]), `ENOMEM` if the mapping fails.
    /// Sleeps (process context).
    pub(crate) fn map(dev: &PciDev, bar: u32, off: u64, len: usize) -> Result<Self> {
        let phys = dev.mem_bar_range(bar, off, u64::try_from(len)?)?;
        // SAFETY: `[phys, phys + len)` lies inside a memory BAR of `dev` (checked just above):
        // device registers, never RAM. `ioremap` maps it uncached, the memory type the BAR's
        // driver maps it with, so no conflicting attributes are created; the mapping is only
        // ever read.
        let p = unsafe { bindings::ioremap(phys, len as _) };
        let ptr = NonNull::new(p).ok_or(ENOMEM)?;
        // INVARIANT: a live mapping of `len > 0` bytes inside a memory BAR of `dev`.
        Ok(Self {
            ptr,
            len,
            _dev: dev.clone(),
        })
    }

    /// The 32-bit register at byte `at` of the mapping, or `None` if `at` is not 4-byte aligned
    /// or the register is not entirely inside the mapping.
    pub(crate) fn read32(&self, at: usize) -> Option<u32> {
        if at % 4 != 0 || at.checked_add(4)? > self.len {
            return None;
        }
        // SAFETY: `at + 4 <= len`: an aligned register inside the live mapping (invariant);
        // `readl` is the MMIO read accessor, and the caller's registers have no read side
        // effects.
        Some(unsafe { bindings::readl(self.ptr.as_ptr().cast::<u8>().add(at).cast::<c_void>()) })
    }
}

impl Drop for BarRegs {
    fn drop(&mut self) {
        // SAFETY: `ptr` is our live mapping (invariant), not used after this.
        unsafe { bindings::iounmap(self.ptr.as_ptr()) };
    }
}
