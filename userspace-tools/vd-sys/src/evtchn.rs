//! `/dev/vd_evtchn`: a domain (one open file) and its channels.

use crate::ioctl_ptr;
use nix::errno::Errno;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use std::fs::File;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::ptr::NonNull;
use vd_ring::mem::RawMem;
use vd_uapi::*;

/// Default device node.
pub const DEVICE: &str = "/dev/vd_evtchn";

device_handle!(
    /// One domain: an open `/dev/vd_evtchn`. Its channels die when it is dropped.
    Domain,
    DEVICE
);

impl Domain {
    /// `VDE_IOC_CREATE`: a channel with `entries` slots of `entry_size` bytes.
    pub fn create(&self, entries: u32, entry_size: u32) -> Result<VdeCreate, Errno> {
        let mut c = VdeCreate {
            entries,
            entry_size,
            ..Default::default()
        };
        // SAFETY: `_IOWR` of one `VdeCreate`.
        unsafe { ioctl_ptr(&self.file, VDE_IOC_CREATE, &mut c) }?;
        Ok(c)
    }
    /// `VDE_IOC_CREATE_SHM`: a channel in a new shmem file with a `data_size`-byte data area.
    /// The returned [`ShmChannel`] owns the file (close-on-exec).
    pub fn create_shm(&self, req: &ShmRequest) -> Result<ShmChannel, Errno> {
        let mut c = VdeCreateShm {
            entries: req.entries,
            entry_size: req.entry_size,
            data_size: req.data_size,
            dev_kind: req.dev_kind,
            doorbell: req.doorbell,
            ..Default::default()
        };
        // SAFETY: `_IOWR` of one `VdeCreateShm`.
        unsafe { ioctl_ptr(&self.file, VDE_IOC_CREATE_SHM, &mut c) }?;
        // SAFETY: on success the kernel installed `c.fd`, a new descriptor that nothing else
        // in this process owns.
        let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(c.fd) };
        Ok(ShmChannel { info: c, file })
    }
    /// `VDE_IOC_ORPHAN`: hands channel `id` to its guest (it lives until its kick eventfd is
    /// closed everywhere); the id is free in this domain afterwards.
    pub fn orphan(&self, id: u32) -> Result<(), Errno> {
        let mut id = id;
        // SAFETY: `_IOW` of one `u32`.
        unsafe { ioctl_ptr(&self.file, VDE_IOC_ORPHAN, &mut id) }.map(drop)
    }
    /// `VDE_IOC_DESTROY`.
    pub fn destroy(&self, id: u32) -> Result<(), Errno> {
        let mut id = id;
        // SAFETY: `_IOW` of one `u32`.
        unsafe { ioctl_ptr(&self.file, VDE_IOC_DESTROY, &mut id) }.map(drop)
    }
    /// `VDE_IOC_BIND`: kick and call eventfds (`None` unbinds).
    pub fn bind(&self, id: u32, kick: Option<RawFd>, call: Option<RawFd>) -> Result<(), Errno> {
        let mut b = VdeBind {
            id,
            kick_fd: kick.unwrap_or(-1),
            call_fd: call.unwrap_or(-1),
            flags: 0,
        };
        // SAFETY: `_IOW` of one `VdeBind`.
        unsafe { ioctl_ptr(&self.file, VDE_IOC_BIND, &mut b) }.map(drop)
    }
    /// `VDE_IOC_ATTACH`: backend `kind` (a `vde_backend` value) with argument `fd`.
    pub fn attach(&self, id: u32, kind: u32, fd: Option<RawFd>) -> Result<(), Errno> {
        let mut a = VdeAttach {
            id,
            backend: kind,
            fd: fd.unwrap_or(-1),
            flags: 0,
        };
        // SAFETY: `_IOW` of one `VdeAttach`.
        unsafe { ioctl_ptr(&self.file, VDE_IOC_ATTACH, &mut a) }.map(drop)
    }
    /// `VDE_IOC_STATS` of channel `id` (the domain's are [`Self::totals`]).
    pub fn stats(&self, id: u32) -> Result<VdeStats, Errno> {
        let mut s = VdeStats {
            id,
            ..Default::default()
        };
        // SAFETY: `_IOWR` of one `VdeStats`.
        unsafe { ioctl_ptr(&self.file, VDE_IOC_STATS, &mut s) }?;
        Ok(s)
    }
    /// `VDE_IOC_STATS` with [`VDE_ALL`]: the domain's totals.
    pub fn totals(&self) -> Result<VdeTotals, Errno> {
        let mut t = VdeTotals {
            id: VDE_ALL,
            ..Default::default()
        };
        // SAFETY: `_IOWR` of one `VdeTotals` (the size of a `VdeStats`, asserted in vd-uapi).
        unsafe { ioctl_ptr(&self.file, VDE_IOC_STATS, &mut t) }?;
        Ok(t)
    }
    /// `VDE_IOC_NOTIFY`: a userspace backend asks for the guest interrupt.
    pub fn notify(&self, id: u32) -> Result<(), Errno> {
        let mut id = id;
        // SAFETY: `_IOW` of one `u32`.
        unsafe { ioctl_ptr(&self.file, VDE_IOC_NOTIFY, &mut id) }.map(drop)
    }
    /// `VDE_IOC_KICK`: run the backend now.
    pub fn kick(&self, id: u32) -> Result<(), Errno> {
        let mut id = id;
        // SAFETY: `_IOW` of one `u32`.
        unsafe { ioctl_ptr(&self.file, VDE_IOC_KICK, &mut id) }.map(drop)
    }
    /// `VDE_IOC_SAVE`.
    pub fn save(&self, id: u32) -> Result<VdeState, Errno> {
        let mut s = VdeState {
            id,
            ..Default::default()
        };
        // SAFETY: `_IOWR` of one `VdeState`.
        unsafe { ioctl_ptr(&self.file, VDE_IOC_SAVE, &mut s) }?;
        Ok(s)
    }
    /// `VDE_IOC_RESTORE`.
    pub fn restore(&self, s: &VdeState) -> Result<(), Errno> {
        let mut s = *s;
        // SAFETY: `_IOW` of one `VdeState`.
        unsafe { ioctl_ptr(&self.file, VDE_IOC_RESTORE, &mut s) }.map(drop)
    }
    /// `VDE_IOC_LIST`: the first channel of the whole host whose list key is `>= cursor`
    /// (the entry's `cursor` is its key).
    pub fn list(&self, cursor: u64) -> Result<VdeListEntry, Errno> {
        let mut e = VdeListEntry {
            cursor,
            ..Default::default()
        };
        // SAFETY: `_IOWR` of one `VdeListEntry`.
        unsafe { ioctl_ptr(&self.file, VDE_IOC_LIST, &mut e) }?;
        Ok(e)
    }
    /// Every channel on the host, in list-key order (a cursor walk: channels that live through
    /// it appear exactly once).
    pub fn list_all(&self) -> Result<Vec<VdeListEntry>, Errno> {
        let mut v = vec![];
        let mut cursor = 0;
        loop {
            match self.list(cursor) {
                Ok(e) => {
                    v.push(e);
                    match e.cursor.checked_add(1) {
                        Some(c) => cursor = c,
                        None => break,
                    }
                }
                Err(Errno::ENOENT) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(v)
    }
    /// Maps the ring of a created channel, shared and read-write.
    pub fn map_ring(&self, c: &VdeCreate) -> Result<RingMap, Errno> {
        RingMap::new(self.file.as_fd(), c.mmap_offset, c.mmap_size as usize)
    }
}

/// A mapping of a channel's ring in this process.
#[derive(Debug)]
pub struct RingMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is shared memory by design; access goes through `RawMem`'s atomics/copies.
unsafe impl Send for RingMap {}
// SAFETY: as above.
unsafe impl Sync for RingMap {}

impl RingMap {
    /// A shared read-write mapping of `len` bytes of `f` at `offset`: a channel's ring on the
    /// device, or a `VDE_IOC_CREATE_SHM` channel's file.
    pub fn new(f: BorrowedFd<'_>, offset: u64, len: usize) -> Result<Self, Errno> {
        let n = NonZeroUsize::new(len).ok_or(Errno::EINVAL)?;
        // SAFETY: a fresh shared mapping; nothing else in this process aliases it.
        let p = unsafe {
            mmap(
                None,
                n,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                f,
                offset as i64,
            )
        }?;
        Ok(Self { ptr: p.cast(), len })
    }
    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether empty (never: mappings are at least one page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Ring access over the mapping.
    pub fn mem(&self) -> RawMem {
        // SAFETY: page-aligned, `len` bytes, valid until `self` is dropped; the returned value
        // borrows nothing, so callers keep `self` alive while using it (documented).
        unsafe { RawMem::new(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: we own this mapping.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// Raw fd of something that has one (eventfds, files).
pub fn raw<T: AsRawFd>(t: &T) -> RawFd {
    t.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    fn faulty() -> Domain {
        // SAFETY: fd -2 is never valid; every ioctl fails with EBADF; forgotten in `drop_faulty`.
        Domain::from_file(unsafe { File::from_raw_fd(-2) })
    }
    fn drop_faulty(d: Domain) {
        std::mem::forget(d);
    }

    #[test]
    fn every_ioctl_reports_ebadf_on_a_faulty_fd() {
        let d = faulty();
        assert_eq!(d.version().unwrap_err(), Errno::EBADF);
        assert_eq!(d.create(8, 64).unwrap_err(), Errno::EBADF);
        assert_eq!(d.destroy(0).unwrap_err(), Errno::EBADF);
        assert_eq!(d.bind(0, None, None).unwrap_err(), Errno::EBADF);
        assert_eq!(
            d.attach(0, vde_backend::ECHO, None).unwrap_err(),
            Errno::EBADF
        );
        assert_eq!(d.stats(VDE_ALL).unwrap_err(), Errno::EBADF);
        assert_eq!(d.totals().unwrap_err(), Errno::EBADF);
        assert_eq!(d.notify(0).unwrap_err(), Errno::EBADF);
        assert_eq!(d.kick(0).unwrap_err(), Errno::EBADF);
        assert_eq!(d.save(0).unwrap_err(), Errno::EBADF);
        assert_eq!(d.restore(&VdeState::default()).unwrap_err(), Errno::EBADF);
        assert_eq!(d.list_all().unwrap_err(), Errno::EBADF);
        drop_faulty(d);
    }

    #[test]
    fn a_non_vd_device_answers_enotty() {
        let d = Domain::from_file(File::open("/dev/null").unwrap());
        assert_eq!(d.version().unwrap_err(), Errno::ENOTTY);
        assert_eq!(d.create(8, 64).unwrap_err(), Errno::ENOTTY);
    }
}

impl RingMap {
    /// A second view of the same mapping (for a backend thread in the same process). It does not
    /// own the mapping: the original must outlive it.
    pub fn clone_of(m: &RingMap) -> RingView {
        RingView {
            ptr: m.ptr,
            len: m.len,
        }
    }
}

/// A borrowed view of a [`RingMap`].
#[derive(Debug, Clone, Copy)]
pub struct RingView {
    ptr: NonNull<u8>,
    len: usize,
}
// SAFETY: shared memory by design, accessed through atomics/copies.
unsafe impl Send for RingView {}

impl RingView {
    /// Ring access over the view.
    pub fn mem(&self) -> RawMem {
        // SAFETY: the original mapping outlives the view (documented on `clone_of`).
        unsafe { RawMem::new(self.ptr.as_ptr(), self.len) }
    }
}

/// What [`Domain::create_shm`] makes.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShmRequest {
    /// Slots per array.
    pub entries: u32,
    /// Bytes per slot.
    pub entry_size: u32,
    /// Bytes of data area (a multiple of 4096).
    pub data_size: u32,
    /// `vd_ring::dev_kind` value.
    pub dev_kind: u32,
    /// The guest's doorbell value for the backend.
    pub doorbell: u32,
}

/// A channel made by [`Domain::create_shm`]: its geometry and its shmem file.
#[derive(Debug)]
pub struct ShmChannel {
    /// What the kernel answered (`fd` is owned by `file`).
    pub info: VdeCreateShm,
    /// The shmem file holding the ring and the data area.
    pub file: File,
}
