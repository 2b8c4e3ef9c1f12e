// SPDX-License-Identifier: GPL-2.0
//! [`Memremap`]: a write-back kernel mapping (`memremap(MEMREMAP_WB)`) of a PCI memory BAR whose
//! contents another party writes at any moment (QEMU's ivshmem BAR2: memory shared with the host,
//! which the guest driver does not trust).
//!
//! The mapping is only ever touched through raw pointers: aligned ring words with the kernel's
//! atomics (`READ_ONCE`/`smp_load_acquire` and their store twins), byte ranges with `memcpy`. No
//! Rust reference into the shared memory is ever formed, so a peer that rewrites it concurrently
//! cannot break a reference's guarantees; every value read is a snapshot the caller validates.
//! It is a [`RingMem`] for `vd-ring`'s frontend, and moves block-request data between the
//! mapping and a `blk-mq` request's pages.

use super::ring::RingMem;
use core::ptr::NonNull;
use kernel::bindings;
use kernel::block::mq::{Operations, Request};
use kernel::prelude::*;
use kernel::sync::atomic::{atomic_load, atomic_store, Acquire, Relaxed, Release};
use kernel::sync::barrier::{smp_mb, Full};

/// A write-back mapping of (a prefix of) one memory BAR of a PCI device, with the BAR's region
/// requested for the mapping's lifetime.
///
/// # Invariants
///
/// - `ptr` is the start of a live `memremap` mapping of `len > 0` bytes made by [`Self::new`],
///   page aligned; it is unmapped only in `Drop`.
/// - `pdev` points to a `struct pci_dev` on which this value holds a reference, and region
///   `bar` of it is requested by this value (released in `Drop`).
pub(crate) struct Memremap {
    ptr: NonNull<u8>,
    len: usize,
    pdev: NonNull<bindings::pci_dev>,
    bar: i32,
}

// SAFETY: the mapping is plain memory reachable from any CPU; the pointer is only used through
// raw atomics and copies, and `pci_dev_put`/`pci_release_region` may run on any thread.
unsafe impl Send for Memremap {}
// SAFETY: every `&self` method is a raw atomic access or a copy; concurrent ones are fine (the
// memory is shared with another party anyway).
unsafe impl Sync for Memremap {}

impl Memremap {
    /// Requests memory BAR `bar` of `pdev` (as `name`) and maps its first `max_len` bytes (or
    /// the whole BAR if smaller) write-back. `EINVAL` for an I/O-port, unset or empty BAR,
    /// `EBUSY` if another driver holds the region, `ENOMEM` if the mapping fails.
    pub(crate) fn new(
        pdev: &kernel::pci::Device<kernel::device::Bound>,
        bar: u32,
        max_len: usize,
        name: &'static CStr,
    ) -> Result<Self> {
        let start = pdev.resource_start(bar)?;
        let bar_len = pdev.resource_len(bar)?;
        let len = usize::try_from(bar_len).unwrap_or(usize::MAX).min(max_len);
        if start == 0 || len == 0 {
            return Err(EINVAL);
        }
        let raw = core::ptr::from_ref(pdev)
            .cast::<bindings::pci_dev>()
            .cast_mut();
        let bar_i = i32::try_from(bar)?;
        // SAFETY: `pci::Device` is a transparent wrapper of `struct pci_dev`, so `raw` is the
        // bound device `pdev` refers to; `pci_resource_flags` only reads its resource table.
        let flags = unsafe { (*raw).resource[bar as usize].flags } as u64;
        if flags & u64::from(bindings::IORESOURCE_MEM) == 0 {
            return Err(EINVAL);
        }
        // SAFETY: `raw` is a valid, bound PCI device (see above); `name` lives forever.
        kernel::error::to_result(unsafe {
            bindings::pci_request_region(raw, bar_i, name.as_char_ptr())
        })
        .map_err(|_| EBUSY)?;
        // SAFETY: `[start, start + len)` lies inside the memory BAR whose region we just
        // requested: device memory no other part of this kernel uses as RAM, so mapping it
        // write-back aliases nothing the kernel owns.
        let ptr = unsafe { bindings::memremap(start, len, bindings::MEMREMAP_WB as _) };
        let Some(ptr) = NonNull::new(ptr.cast::<u8>()) else {
            // SAFETY: requested above, not released since.
            unsafe { bindings::pci_release_region(raw, bar_i) };
            return Err(ENOMEM);
        };
        // SAFETY: `raw` is a live device (bound); the reference keeps the struct alive until
        // `Drop` releases the region.
        unsafe { bindings::pci_dev_get(raw) };
        // INVARIANT: a live mapping of `len` bytes, a device reference and the region, each
        // taken above; `memremap` mappings are page aligned.
        Ok(Self {
            ptr,
            len,
            // SAFETY: `raw` came from a reference, so it is not null.
            pdev: unsafe { NonNull::new_unchecked(raw) },
            bar: bar_i,
        })
    }

    /// Bytes mapped.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Start of `[off, off + n)` if that lies inside the mapping.
    fn range(&self, off: usize, n: usize) -> Option<*mut u8> {
        let end = off.checked_add(n)?;
        if end > self.len {
            return None;
        }
        // SAFETY: `off <= len`, so the result stays inside (or one past) the mapping.
        Some(unsafe { self.ptr.as_ptr().add(off) })
    }

    /// An aligned ring word at `off`, if inside the mapping.
    fn word(&self, off: usize) -> Option<*mut u32> {
        if off % 4 != 0 {
            return None;
        }
        self.range(off, 4).map(|p| p.cast::<u32>())
    }

    /// Copies the first `n` bytes of `rq`'s data (a write's payload) to `[off, off + n)` of the
    /// mapping. `EINVAL` if the range is outside the mapping; `EIO` if the request holds fewer
    /// than `n` bytes.
    pub(crate) fn copy_from_request<T: Operations>(
        &self,
        rq: &Request<T>,
        off: usize,
        n: usize,
    ) -> Result {
        let dst = self.range(off, n).ok_or(EINVAL)?;
        // SAFETY: `dst` is valid for `n` bytes of writes (inside the live mapping, invariant);
        // the peer may write it concurrently, which `copy_data_to_raw` allows (memcpy only).
        let done = unsafe { rq.copy_data_to_raw(dst, n) };
        if done == n {
            Ok(())
        } else {
            Err(EIO)
        }
    }

    /// Copies `[off, off + n)` of the mapping into the first `n` bytes of `rq`'s data (a read's
    /// payload). `EINVAL` if the range is outside the mapping; `EIO` if the request holds fewer
    /// than `n` bytes. What the peer writes meanwhile is the data; nothing is re-read.
    pub(crate) fn copy_to_request<T: Operations>(
        &self,
        rq: &Request<T>,
        off: usize,
        n: usize,
    ) -> Result {
        let src = self.range(off, n).ok_or(EINVAL)?;
        // SAFETY: `src` is valid for `n` bytes of reads (inside the live mapping, invariant);
        // `copy_data_from_raw` only memcpy's from it.
        let done = unsafe { rq.copy_data_from_raw(src, n) };
        if done == n {
            Ok(())
        } else {
            Err(EIO)
        }
    }
}

impl Drop for Memremap {
    fn drop(&mut self) {
        // SAFETY: `ptr` is our live mapping (invariant), not used after this.
        unsafe { bindings::memunmap(self.ptr.as_ptr().cast()) };
        // SAFETY: the region was requested by `new` and the device reference is ours
        // (invariant); the reference is dropped last.
        unsafe {
            bindings::pci_release_region(self.pdev.as_ptr(), self.bar);
            bindings::pci_dev_put(self.pdev.as_ptr());
        }
    }
}

impl RingMem for Memremap {
    fn size(&self) -> usize {
        self.len
    }
    fn load_u32(&self, off: usize) -> u32 {
        // SAFETY: `p` is an aligned word inside the live mapping (`word`); the peer's stores
        // to ring words are single-copy atomic (aligned 32-bit), and a torn or garbage value is
        // validated by the caller anyway.
        self.word(off)
            .map_or(0, |p| unsafe { atomic_load(p, Relaxed) })
    }
    fn load_acquire_u32(&self, off: usize) -> u32 {
        // SAFETY: as in `load_u32`.
        self.word(off)
            .map_or(0, |p| unsafe { atomic_load(p, Acquire) })
    }
    fn store_u32(&self, off: usize, v: u32) {
        if let Some(p) = self.word(off) {
            // SAFETY: as in `load_u32`.
            unsafe { atomic_store(p, v, Relaxed) }
        }
    }
    fn store_release_u32(&self, off: usize, v: u32) {
        if let Some(p) = self.word(off) {
            // SAFETY: as in `load_u32`.
            unsafe { atomic_store(p, v, Release) }
        }
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        if let Some(src) = self.range(off, dst.len()) {
            // SAFETY: `src` is valid for `dst.len()` bytes (inside the mapping); `dst` is a
            // distinct kernel buffer. The copy is a snapshot the caller decodes once.
            unsafe { core::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) }
        }
    }
    fn write(&self, off: usize, src: &[u8]) {
        if let Some(dst) = self.range(off, src.len()) {
            // SAFETY: as in `read`, with the roles of the buffers swapped.
            unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) }
        }
    }
    fn fence(&self) {
        smp_mb(Full);
    }
}
