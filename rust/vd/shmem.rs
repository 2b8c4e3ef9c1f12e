// SPDX-License-Identifier: GPL-2.0
//! [`SharedPages`]: zeroed kernel pages that a process maps (and hands to its guest as guest
//! memory) while the kernel reads and writes them through [`RingMem`]. The kernel's view is the
//! pages' direct-map addresses: always mapped, usable in atomic context, valid as long as the
//! pages live, and the pages live as long as the `SharedPages` *and* any VMA that maps them
//! (`vm_insert_page` takes a page reference per mapping).

use crate::ring::{RingMem, RING_PAGE};
use core::sync::atomic::{AtomicU32, Ordering};
use kernel::mm::virt::VmaNew;
use kernel::page::{Page, PAGE_SIZE};
use kernel::prelude::*;

const _: () = assert!(PAGE_SIZE == RING_PAGE);

/// A set of zeroed pages shared with userspace and guests.
///
/// # Invariants
///
/// `addrs[i]` is the direct-map address of `pages[i]`, valid for `PAGE_SIZE` bytes while
/// `pages[i]` is owned here.
pub(crate) struct SharedPages {
    pages: KVec<Page>,
    addrs: KVec<usize>,
}

impl SharedPages {
    /// Allocates `bytes` (a multiple of the page size) of zeroed pages.
    pub(crate) fn new(bytes: usize) -> Result<Self> {
        if bytes == 0 || bytes % PAGE_SIZE != 0 {
            return Err(EINVAL);
        }
        let n = bytes / PAGE_SIZE;
        let mut pages = KVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
        let mut addrs = KVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..n {
            let page = Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?;
            // SAFETY: `page` is a valid page we own; `page_address` of a non-highmem page (the
            // only kind on 64-bit) is its direct-map address.
            let addr = unsafe { kernel::bindings::page_address(page.as_ptr()) } as usize;
            if addr == 0 {
                return Err(ENOMEM);
            }
            addrs.push(addr, GFP_KERNEL)?;
            pages.push(page, GFP_KERNEL)?;
        }
        // INVARIANT: each address was taken from the page pushed at the same index.
        Ok(Self { pages, addrs })
    }

    /// Bytes shared.
    pub(crate) fn len(&self) -> usize {
        self.pages.len() * PAGE_SIZE
    }

    /// Maps pages `[pgoff, pgoff + vma pages)` into `vma`. The mapping must be shared and must not
    /// outgrow the area; `writable` false refuses (and forbids later) write access.
    pub(crate) fn map(&self, vma: &VmaNew, pgoff: usize, writable: bool) -> Result {
        let len = vma.end() - vma.start();
        let npages = len / PAGE_SIZE;
        if pgoff.checked_add(npages).is_none_or(|end| end > self.pages.len()) {
            return Err(EINVAL);
        }
        if (vma.flags() & kernel::mm::virt::flags::SHARED) == 0 {
            return Err(EINVAL);
        }
        if !writable {
            if vma.writable() {
                return Err(EPERM);
            }
            vma.try_clear_maywrite()?;
        }
        vma.try_clear_mayexec()?;
        vma.set_dontcopy();
        vma.set_dontexpand();
        let mixed = vma.set_mixedmap();
        for i in 0..npages {
            mixed.vm_insert_page(vma.start() + i * PAGE_SIZE, &self.pages[pgoff + i])?;
        }
        Ok(())
    }

    /// The kernel address of byte `off`, if `len` bytes from there stay inside one page.
    fn at(&self, off: usize, len: usize) -> Option<usize> {
        let (pg, in_pg) = (off / PAGE_SIZE, off % PAGE_SIZE);
        if in_pg + len > PAGE_SIZE {
            return None;
        }
        self.addrs.get(pg).map(|a| a + in_pg)
    }

    fn word(&self, off: usize) -> Option<&AtomicU32> {
        if off % 4 != 0 {
            return None;
        }
        let a = self.at(off, 4)?;
        // SAFETY: `a` is 4-aligned and inside a page owned by `self` (type invariant), which lives
        // as long as the returned reference; the page is only accessed atomically or by byte copies.
        Some(unsafe { AtomicU32::from_ptr(a as *mut u32) })
    }

    /// Byte copy across page boundaries: `f(kernel address, range in the buffer)` per piece.
    fn pieces(&self, mut off: usize, total: usize, mut f: impl FnMut(usize, core::ops::Range<usize>)) {
        if off.checked_add(total).is_none_or(|end| end > self.len()) {
            return;
        }
        let mut done = 0;
        while done < total {
            let n = (PAGE_SIZE - off % PAGE_SIZE).min(total - done);
            if let Some(a) = self.at(off, n) {
                f(a, done..done + n);
            }
            done += n;
            off += n;
        }
    }
}

impl RingMem for SharedPages {
    fn size(&self) -> usize {
        self.len()
    }
    fn load_u32(&self, off: usize) -> u32 {
        self.word(off).map_or(0, |w| w.load(Ordering::Relaxed))
    }
    fn load_acquire_u32(&self, off: usize) -> u32 {
        self.word(off).map_or(0, |w| w.load(Ordering::Acquire))
    }
    fn store_u32(&self, off: usize, v: u32) {
        if let Some(w) = self.word(off) {
            w.store(v, Ordering::Relaxed)
        }
    }
    fn store_release_u32(&self, off: usize, v: u32) {
        if let Some(w) = self.word(off) {
            w.store(v, Ordering::Release)
        }
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        self.pieces(off, dst.len(), |a, r| {
            // SAFETY: `a..a+r.len()` lies in one owned page (`pieces`/`at`); `dst[r]` is a
            // distinct kernel buffer. The copy is a snapshot that callers decode once.
            unsafe { core::ptr::copy_nonoverlapping(a as *const u8, dst[r.clone()].as_mut_ptr(), r.len()) }
        })
    }
    fn write(&self, off: usize, src: &[u8]) {
        self.pieces(off, src.len(), |a, r| {
            // SAFETY: as in `read`, with the roles of the buffers swapped.
            unsafe { core::ptr::copy_nonoverlapping(src[r.clone()].as_ptr(), a as *mut u8, r.len()) }
        })
    }
}

/// The page offset (`vm_pgoff`) the process asked to map.
pub(crate) fn vma_pgoff(vma: &VmaNew) -> usize {
    // SAFETY: `vma` is a valid VMA under construction that the mmap path owns; `vm_pgoff` is
    // set before `mmap` is called and not changed during it.
    unsafe { (*vma.as_ptr()).vm_pgoff as usize }
}
