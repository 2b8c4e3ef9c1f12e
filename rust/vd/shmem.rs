// SPDX-License-Identifier: GPL-2.0
//! [`SharedPages`]: pages that a process maps (and hands to its guest as guest memory) while the
//! kernel reads and writes them through [`RingMem`]. The kernel's view is the pages'
//! direct-map addresses: always mapped, usable in atomic context, valid as long as the pages
//! live.
//!
//! Two kinds:
//! - zeroed kernel pages ([`SharedPages::new`]); they live as long as the `SharedPages` *and* any
//!   VMA that maps them (`vm_insert_page` takes a page reference per mapping);
//! - the pages of a shmem file the kernel makes ([`SharedPages::new_shmem`]), for VMMs that
//!   take guest memory as a file (QEMU's `ivshmem`). Each page is pinned by a reference held
//!   here, so the kernel's view stays valid whatever a holder of the file does (`ftruncate`,
//!   hole punching: the page leaves the file, not our hands). A mapping through the device is a
//!   mapping of the file itself (its VMA points at the file), so the file's own truncation
//!   unmaps it as for any shmem mapping.

use super::ring::{RingMem, RING_PAGE};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};
use kernel::bindings;
use kernel::fs::File;
use kernel::mm::virt::VmaNew;
use kernel::page::{Page, PAGE_SIZE};
use kernel::prelude::*;
use kernel::sync::aref::ARef;

const _: () = assert!(PAGE_SIZE == RING_PAGE);

/// Pages of a shmem file with one reference held on each, and the file.
///
/// # Invariants
///
/// Every entry of `pages` is a page of `file`'s mapping (at the index equal to its position,
/// when it was looked up) on which we hold one reference; `file_pages` is the file's size in
/// pages when it was made.
struct FilePages {
    pages: KVec<*mut bindings::page>,
    file: ARef<File>,
    file_pages: usize,
}

// SAFETY: the page references and the file reference may be used and dropped from any thread;
// the pages are only accessed through their direct-map addresses, atomically or by copies.
unsafe impl Send for FilePages {}
// SAFETY: as above; nothing here is mutated through `&self`.
unsafe impl Sync for FilePages {}

impl Drop for FilePages {
    fn drop(&mut self) {
        let n = i32::try_from(self.pages.len()).unwrap_or(i32::MAX);
        // SAFETY: every entry is a page we hold one reference on (type invariant);
        // `release_pages` drops one reference of each of the first `n` entries (at most
        // `VDE_MAX_DATA` plus a ring: far below `i32::MAX`), freeing a page whose last
        // reference this was the way `put_page` does.
        unsafe {
            bindings::release_pages(
                bindings::release_pages_arg {
                    pages: self.pages.as_mut_ptr(),
                },
                n,
            )
        };
        // `file` drops after this: `fput`.
    }
}

/// Who owns the pages.
enum Backing {
    /// Kernel pages, freed when the last reference (ours, or a mapping's) goes.
    Own(KVec<Page>),
    /// Pages of a shmem file.
    #[allow(
        dead_code,
        reason = "shmem-file channels are vd_evtchn's (`VDE_IOC_CREATE_SHM`)"
    )]
    File(FilePages),
}

/// A set of pages shared with userspace and guests.
///
/// # Invariants
///
/// `addrs[i]` is the direct-map address of page `i` of `backing`, valid for `PAGE_SIZE` bytes
/// while `backing` holds that page.
pub(crate) struct SharedPages {
    backing: Backing,
    addrs: KVec<usize>,
}

/// The direct-map address of `page`.
///
/// # Safety
///
/// `page` is a valid page the caller holds a reference on.
unsafe fn direct_addr(page: *mut bindings::page) -> Result<usize> {
    // SAFETY: `page` is valid (caller); `page_address` of a non-highmem page (the only kind on
    // 64-bit) is its direct-map address.
    let addr = unsafe { bindings::page_address(page) } as usize;
    if addr == 0 {
        return Err(ENOMEM);
    }
    Ok(addr)
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
            // SAFETY: `page` is a valid page we own.
            let addr = unsafe { direct_addr(page.as_ptr()) }?;
            addrs.push(addr, GFP_KERNEL)?;
            pages.push(page, GFP_KERNEL)?;
        }
        // INVARIANT: each address was taken from the page pushed at the same index.
        Ok(Self {
            backing: Backing::Own(pages),
            addrs,
        })
    }

    /// A new shmem file named `name` of `file_size` bytes (a multiple of the page size), whose
    /// first `bytes` (a multiple of the page size, at most `file_size`) are pinned and shared
    /// here. Returns the pages and a second reference to the file (for a file descriptor).
    /// The file's pages, and the memory of this value, are charged to the caller's memory
    /// cgroup.
    pub(crate) fn new_shmem(
        name: &'static CStr,
        bytes: usize,
        file_size: usize,
    ) -> Result<(Self, ARef<File>)> {
        if bytes == 0 || bytes % PAGE_SIZE != 0 || file_size % PAGE_SIZE != 0 || bytes > file_size {
            return Err(EINVAL);
        }
        let size = i64::try_from(file_size).map_err(|_| EINVAL)?;
        // SAFETY: `name` is a NUL-terminated string that outlives the call (the helper copies
        // it into the dentry); the helper returns a referenced file or an ERR_PTR.
        let f = unsafe { bindings::vd_shmem_file(kernel::str::CStrExt::as_char_ptr(name), size) };
        let f = NonNull::new(kernel::error::from_err_ptr(f)?).ok_or(ENOMEM)?;
        // SAFETY: `f` is a valid file with one reference, which the `ARef` takes over (`File`
        // is a transparent wrapper of `struct file`).
        let file: ARef<File> = unsafe { ARef::from_raw(f.cast()) };
        let n = bytes / PAGE_SIZE;
        // INVARIANT: empty; each page is pushed with the reference `vd_shmem_page` returned.
        let mut fp = FilePages {
            pages: KVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?,
            file: file.clone(),
            file_pages: file_size / PAGE_SIZE,
        };
        let mut addrs = KVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
        for i in 0..n {
            // SAFETY: `fp.file` is a live shmem file; the helper returns page `i` of its mapping
            // (allocated zeroed if needed) with a reference, or an ERR_PTR.
            let p = unsafe { bindings::vd_shmem_page(fp.file.as_ptr(), i as _) };
            let p = kernel::error::from_err_ptr(p)?;
            if p.is_null() {
                return Err(ENOMEM);
            }
            // Room reserved above: cannot fail, and the reference is recorded before anything
            // else can fail (a failure drops `fp`, which releases every recorded page).
            fp.pages.push(p, GFP_KERNEL_ACCOUNT)?;
            // SAFETY: `p` is a valid page we hold a reference on (just recorded).
            addrs.push(unsafe { direct_addr(p) }?, GFP_KERNEL_ACCOUNT)?;
        }
        // INVARIANT: each address was taken from the page pushed at the same index.
        Ok((
            Self {
                backing: Backing::File(fp),
                addrs,
            },
            file,
        ))
    }

    /// Bytes shared.
    pub(crate) fn len(&self) -> usize {
        self.addrs.len() * PAGE_SIZE
    }

    /// Maps pages `[pgoff, pgoff + vma pages)` into `vma`. The mapping must be shared and must not
    /// outgrow the area (for a shmem file: the file's size when it was made); `writable` false
    /// refuses (and forbids later) write access.
    pub(crate) fn map(&self, vma: &VmaNew, pgoff: usize, writable: bool) -> Result {
        let len = vma.end() - vma.start();
        let npages = len / PAGE_SIZE;
        let limit = match &self.backing {
            Backing::Own(p) => p.len(),
            Backing::File(fp) => fp.file_pages,
        };
        if pgoff.checked_add(npages).is_none_or(|end| end > limit) {
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
        match &self.backing {
            Backing::Own(pages) => {
                let mixed = vma.set_mixedmap();
                for i in 0..npages {
                    mixed.vm_insert_page(vma.start() + i * PAGE_SIZE, &pages[pgoff + i])?;
                }
                Ok(())
            }
            Backing::File(fp) => {
                let v = vma.as_ptr();
                // SAFETY: `v` is the VMA under construction that this mmap call owns (the mmap
                // lock is held for writing). As a stacking driver does (dma-buf), the VMA
                // becomes a mapping of the shmem file: `vma_set_file` takes a reference on the
                // file and drops the one on our device file; `vm_pgoff` becomes the file offset
                // (checked against the file's size above); the file's own `mmap_prepare` sets
                // its fault handlers. The file's pages are then mapped, unmapped and truncated
                // by shmem as for any mapping of the file (never `vm_insert_page` of page-cache
                // pages into a VMA the file does not know).
                let r = unsafe {
                    bindings::vma_set_file(v, fp.file.as_ptr());
                    (*v).vm_pgoff = pgoff as _;
                    bindings::compat_vma_mmap(fp.file.as_ptr(), v)
                };
                kernel::error::to_result(r)
            }
        }
    }

    /// The `struct page` of page `i`.
    #[allow(
        dead_code,
        reason = "for `backing.rs` (block I/O on a data area), which vd_evtchn \
                                   includes and the other includers of this file do not"
    )]
    pub(super) fn page_ptr(&self, i: usize) -> Option<*mut bindings::page> {
        match &self.backing {
            Backing::Own(p) => p.get(i).map(Page::as_ptr),
            Backing::File(fp) => fp.pages.get(i).copied(),
        }
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
        // SAFETY: `a` is 4-aligned and inside a page owned by `self` (type invariant), which
        // lives as long as the returned reference; the page is only accessed atomically or by
        // byte copies.
        Some(unsafe { AtomicU32::from_ptr(a as *mut u32) })
    }

    /// Byte copy across page boundaries: `f(kernel address, range in the buffer)` per piece.
    fn pieces(
        &self,
        mut off: usize,
        total: usize,
        mut f: impl FnMut(usize, core::ops::Range<usize>),
    ) {
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

/// The kernel's implementation of [`RingMem`]; `vd-ring`'s `RawMem`
/// (`userspace-tools/vd-ring/src/mem.rs`) is the other, for a process's own contiguous mapping. Not
/// one piece of code twice: the accessors have the same one-line shape, but here the area is a list
/// of pages (direct-map addresses, not contiguous), so a word is found through its page and byte
/// copies are split at page boundaries (`pieces`), while `RawMem` is a single pointer and length.
/// What they share (bounds-checked, never-panicking accessors that ignore what lies outside) is the
/// trait's contract.
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
            unsafe {
                core::ptr::copy_nonoverlapping(a as *const u8, dst[r.clone()].as_mut_ptr(), r.len())
            }
        })
    }
    fn write(&self, off: usize, src: &[u8]) {
        self.pieces(off, src.len(), |a, r| {
            // SAFETY: as in `read`, with the roles of the buffers swapped.
            unsafe {
                core::ptr::copy_nonoverlapping(src[r.clone()].as_ptr(), a as *mut u8, r.len())
            }
        })
    }
}

/// The page offset (`vm_pgoff`) the process asked to map.
pub(crate) fn vma_pgoff(vma: &VmaNew) -> usize {
    // SAFETY: `vma` is a valid VMA under construction that the mmap path owns; `vm_pgoff` is
    // set before `mmap` is called and not changed during it.
    unsafe { (*vma.as_ptr()).vm_pgoff as usize }
}
