// SPDX-License-Identifier: GPL-2.0
//! [`BackingFile`]: a host file (regular file or block device node) that a kernel backend reads
//! and writes at explicit offsets, as the loop driver and vhost-scsi's fileio backend do.

use super::shmem::SharedPages;
use core::ptr::NonNull;
use kernel::bindings;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;

/// Pages moved per file call by [`SharedPages::file_io`] (128 KiB: a guest driver's chunk).
const RW_BATCH: usize = 32;

/// A referenced `struct file` opened for reading and writing.
///
/// # Invariants
///
/// `file` is a valid file on which we hold one reference, opened with `FMODE_READ` and
/// `FMODE_WRITE`.
pub(crate) struct BackingFile {
    file: NonNull<bindings::file>,
}

// SAFETY: a referenced file may be used and released from any thread; reads and writes at
// explicit offsets do not touch `f_pos`.
unsafe impl Send for BackingFile {}
// SAFETY: as above.
unsafe impl Sync for BackingFile {}

impl BackingFile {
    /// Takes a reference to the file behind `fd` of the calling process. `EBADF` if not open,
    /// `EINVAL` unless a regular file or a block device (an eventfd, a socket, a pipe or a vd
    /// device file could hold a reference back to the file that holds us: a cycle never freed),
    /// `EACCES` unless open read-write.
    pub(crate) fn from_fd(fd: i32) -> Result<Self> {
        if fd < 0 {
            return Err(EBADF);
        }
        // SAFETY: `fget` accepts any fd number and returns a referenced file or null.
        let file = NonNull::new(unsafe { bindings::fget(fd as u32) }).ok_or(EBADF)?;
        // SAFETY: `file` is valid (we hold a reference); `f_inode` is set for its lifetime.
        let (imode, iflags) = unsafe {
            let inode = (*file.as_ptr()).f_inode;
            (u32::from((*inode).i_mode), (*inode).i_flags)
        };
        let kind = imode & bindings::S_IFMT;
        // Anonymous inodes (eventfd, epoll, ...) report S_IFREG: refuse them by their flag.
        if (kind != bindings::S_IFREG && kind != bindings::S_IFBLK)
            || iflags & bindings::S_ANON_INODE != 0
        {
            // SAFETY: drop the reference we took.
            unsafe { bindings::fput(file.as_ptr()) };
            return Err(EINVAL);
        }
        // SAFETY: `file` is valid (we hold a reference).
        let mode = unsafe { (*file.as_ptr()).f_mode };
        // FMODE_READ | FMODE_WRITE (`__force` casts in C, so bindgen does not export them).
        let need = 0x1 | 0x2;
        if mode & need != need {
            // SAFETY: drop the reference we took.
            unsafe { bindings::fput(file.as_ptr()) };
            return Err(EACCES);
        }
        // INVARIANT: referenced, a regular file or block device, and read-write (checked).
        Ok(Self { file })
    }

    /// Size in bytes (of the file, or of the block device behind the node).
    pub(crate) fn size(&self) -> u64 {
        // SAFETY: `file` is valid; `f_mapping->host` is the inode whose size a block device
        // node reports (for a regular file it is the file's own inode).
        unsafe {
            let host = (*(*self.file.as_ptr()).f_mapping).host;
            u64::try_from((*host).i_size).unwrap_or(0)
        }
    }

    /// Reads `buf.len()` bytes at `pos`; short reads are an error (`EIO`).
    pub(crate) fn read_at(&self, buf: &mut [u8], pos: u64) -> Result {
        let mut p = i64::try_from(pos).map_err(|_| EINVAL)?;
        // SAFETY: `file` is valid; `buf` is a writable kernel buffer of `buf.len()` bytes.
        let n = unsafe {
            bindings::kernel_read(
                self.file.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut p,
            )
        };
        match usize::try_from(n) {
            Ok(n) if n == buf.len() => Ok(()),
            Ok(_) => Err(EIO),
            Err(_) => Err(Error::from_errno(n as i32)),
        }
    }

    /// Writes `buf` at `pos`; short writes are an error (`EIO`).
    pub(crate) fn write_at(&self, buf: &[u8], pos: u64) -> Result {
        let mut p = i64::try_from(pos).map_err(|_| EINVAL)?;
        // SAFETY: `file` is valid; `buf` is a readable kernel buffer of `buf.len()` bytes.
        let n = unsafe {
            bindings::kernel_write(self.file.as_ptr(), buf.as_ptr().cast(), buf.len(), &mut p)
        };
        match usize::try_from(n) {
            Ok(n) if n == buf.len() => Ok(()),
            Ok(_) => Err(EIO),
            Err(_) => Err(Error::from_errno(n as i32)),
        }
    }

    /// Reads into (`to_pages`) or writes from the pages `bv` describe, at `pos`, all of them in
    /// one call (`vfs_iter_read`/`vfs_iter_write` over a `bio_vec` iterator, as the loop driver
    /// does); short transfers are an error (`EIO`).
    ///
    /// # Safety
    ///
    /// Every entry of `bv` describes a range inside one page that the caller holds a reference
    /// on for the duration of the call (other parties may write the pages concurrently: the
    /// file's copy routines only `memcpy` them).
    pub(crate) unsafe fn rw_pages(
        &self,
        bv: &[bindings::bio_vec],
        pos: u64,
        to_pages: bool,
    ) -> Result {
        let len: usize = bv.iter().map(|b| b.bv_len as usize).sum();
        let mut p = i64::try_from(pos).map_err(|_| EINVAL)?;
        let mut it = core::mem::MaybeUninit::<bindings::iov_iter>::zeroed();
        let dir = if to_pages {
            bindings::ITER_DEST
        } else {
            bindings::ITER_SOURCE
        };
        // SAFETY: `iov_iter_bvec` initialises the whole iterator over `bv`, which outlives it
        // (it lives until the end of this function); the pages are held by the caller. `file`
        // is valid and was checked to be open read-write; the file's read/write copies into or
        // out of the pages through the iterator.
        let n = unsafe {
            bindings::iov_iter_bvec(it.as_mut_ptr(), dir, bv.as_ptr(), bv.len() as _, len);
            if to_pages {
                bindings::vfs_iter_read(self.file.as_ptr(), it.as_mut_ptr(), &mut p, 0)
            } else {
                bindings::vfs_iter_write(self.file.as_ptr(), it.as_mut_ptr(), &mut p, 0)
            }
        };
        match usize::try_from(n) {
            Ok(n) if n == len => Ok(()),
            Ok(_) => Err(EIO),
            Err(_) => Err(Error::from_errno(n as i32)),
        }
    }

    /// Makes bytes `[pos, pos + len)` stable (`vfs_fsync_range` with `datasync`: the data and
    /// the metadata needed to read it back, as a FUA write needs).
    pub(crate) fn sync_range(&self, pos: u64, len: u64) -> Result {
        if len == 0 {
            return Ok(());
        }
        let start = i64::try_from(pos).map_err(|_| EINVAL)?;
        let last = pos
            .checked_add(len - 1)
            .and_then(|e| i64::try_from(e).ok())
            .ok_or(EINVAL)?;
        // SAFETY: `file` is valid; the range is inclusive and non-negative.
        let r = unsafe { bindings::vfs_fsync_range(self.file.as_ptr(), start, last, 1) };
        if r < 0 {
            Err(Error::from_errno(r))
        } else {
            Ok(())
        }
    }

    /// `fsync`.
    pub(crate) fn sync(&self) -> Result {
        // SAFETY: `file` is valid.
        let r = unsafe { bindings::vfs_fsync(self.file.as_ptr(), 0) };
        if r < 0 {
            Err(Error::from_errno(r))
        } else {
            Ok(())
        }
    }
}

impl Drop for BackingFile {
    fn drop(&mut self) {
        // SAFETY: we own one reference (type invariant).
        unsafe { bindings::fput(self.file.as_ptr()) };
    }
}

/// Block I/O between a backing file and a shared data area (`VDE_IOC_CREATE_SHM` channels).
impl SharedPages {
    /// Moves `len` bytes between the area at `off` and `file` at `pos` (into the area with
    /// `to_pages`: a block read into a data area; else a block write from it), in batches of up
    /// to [`RW_BATCH`] pages per file call. `EINVAL` if the range is not inside the area. The
    /// other party may write the same bytes meanwhile: it gets what it raced for.
    pub(crate) fn file_io(
        &self,
        file: &BackingFile,
        off: usize,
        len: usize,
        pos: u64,
        to_pages: bool,
    ) -> Result {
        let end = off.checked_add(len).ok_or(EINVAL)?;
        if end > self.len() {
            return Err(EINVAL);
        }
        let empty = bindings::bio_vec {
            bv_page: core::ptr::null_mut(),
            bv_len: 0,
            bv_offset: 0,
        };
        let mut bv = [empty; RW_BATCH];
        let mut at = off;
        while at < end {
            let start = at;
            let mut n = 0;
            while n < RW_BATCH && at < end {
                let in_pg = at % PAGE_SIZE;
                let take = (PAGE_SIZE - in_pg).min(end - at);
                bv[n] = bindings::bio_vec {
                    bv_page: self.page_ptr(at / PAGE_SIZE).ok_or(EINVAL)?,
                    bv_len: take as u32,
                    bv_offset: in_pg as u32,
                };
                n += 1;
                at += take;
            }
            let p = pos.checked_add((start - off) as u64).ok_or(EINVAL)?;
            // SAFETY: each entry is a range inside one page held by `self` (the pages live as
            // long as `self`, which outlives the call).
            unsafe { file.rw_pages(&bv[..n], p, to_pages) }?;
        }
        Ok(())
    }
}
