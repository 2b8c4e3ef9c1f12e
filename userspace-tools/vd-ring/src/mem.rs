//! [`RingMem`](crate::RingMem) over a contiguous mapping in this process (an `mmap` of the
//! channel, a guest-memory region, or a buffer in tests).

use crate::RingMem;
use core::sync::atomic::{AtomicU32, Ordering};

/// A ring area at a fixed address in this address space.
///
/// # Invariants
///
/// `ptr` is 4-byte aligned and valid for reads and writes of `len` bytes for the life of the
/// value; other parties may write it concurrently (only through atomics or byte copies).
#[derive(Debug)]
pub struct RawMem {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: `RawMem` only hands out copies and atomic accesses; the memory is shared by design.
unsafe impl Send for RawMem {}
// SAFETY: as above; every access is a copy or an atomic.
unsafe impl Sync for RawMem {}

impl RawMem {
    /// # Safety
    ///
    /// `ptr` must be 4-byte aligned and valid for reads and writes of `len` bytes for as long as
    /// the returned value lives.
    pub unsafe fn new(ptr: *mut u8, len: usize) -> Self {
        assert!(
            (ptr as usize).is_multiple_of(4),
            "ring memory must be 4-byte aligned"
        );
        // INVARIANT: guaranteed by the caller.
        Self { ptr, len }
    }
    /// Start of the area.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }
    fn word(&self, off: usize) -> Option<&AtomicU32> {
        if !off.is_multiple_of(4) || off.checked_add(4)? > self.len {
            return None;
        }
        // SAFETY: in bounds and aligned (checked); the memory is valid per the invariant, and
        // `AtomicU32` has the layout of `u32`.
        Some(unsafe { AtomicU32::from_ptr(self.ptr.add(off).cast()) })
    }
    fn range(&self, off: usize, n: usize) -> bool {
        off.checked_add(n).is_some_and(|end| end <= self.len)
    }
}

/// The userspace implementation of [`RingMem`]; the kernel's is `SharedPages` (`rust/vd/shmem.rs`),
/// over a list of pages that are not contiguous in the kernel's address space (a word is found
/// through its page, copies are split at page boundaries). The accessors have the same one-line
/// shape in both, but the addressing under them differs: two implementations of one trait, not the
/// same code twice.
impl RingMem for RawMem {
    fn size(&self) -> usize {
        self.len
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
        if self.range(off, dst.len()) {
            // SAFETY: in bounds (checked); a byte copy of memory the peer may change is a
            // snapshot the caller decodes once.
            unsafe {
                core::ptr::copy_nonoverlapping(self.ptr.add(off), dst.as_mut_ptr(), dst.len())
            }
        }
    }
    fn write(&self, off: usize, src: &[u8]) {
        if self.range(off, src.len()) {
            // SAFETY: in bounds (checked); `src` is a distinct local buffer.
            unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(off), src.len()) }
        }
    }
}
