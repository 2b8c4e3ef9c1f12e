// SPDX-License-Identifier: GPL-2.0
//! The host drivers that serve a channel's requests in the kernel.
//!
//! - echo: the response carries the request payload (tests, latency floor);
//! - null: status 0, no payload (a counting sink);
//! - block: a host file or block device, read and written at explicit offsets, as the loop
//!   driver does. Chosen as the real host-driver path because it is what a virtual desktop's disk
//!   is on a KVM host (an image file), it runs in the test VM without extra hardware, and every
//!   request is checked against the device size, so a guest cannot reach outside its disk;
//! - user: the kernel only forwards kicks to a process that serves the ring itself.

use crate::ring::{op, BlkDaReq, BlkReq, Request, BLK_F_ALL, BLK_F_FUA, BLK_REQ_HDR, BLK_SECTOR};
use crate::uapi::vde_backend;
use crate::vd::backing::BackingFile;
use crate::vd::eventfd::EventFd;
use crate::vd::knob::BoolKnob;
use crate::vd::shmem::SharedPages;
use core::fmt;
use core::sync::atomic::Ordering::Relaxed;
use kernel::prelude::*;

/// A channel's data area as the backend sees it: where it is in the channel's pages, from the
/// channel's private geometry (never from the ring memory the guest writes).
pub(crate) struct DataArea<'a> {
    /// The channel's pages.
    pub(crate) mem: &'a SharedPages,
    /// Offset of the area in `mem`.
    pub(crate) off: usize,
    /// Bytes of the area (0: none).
    pub(crate) len: usize,
}

/// What served a request produced: a status (0 or -errno) and `len` bytes of response payload.
pub(crate) struct Served {
    pub(crate) status: i32,
    pub(crate) len: usize,
    /// The request made the image stable (`BLK_FLUSH`, or a FUA write): an fsync that succeeded.
    pub(crate) synced: bool,
}

impl Served {
    const fn ok(len: usize) -> Self {
        Self {
            status: 0,
            len,
            synced: false,
        }
    }
    fn err(e: Error) -> Self {
        Self {
            status: e.to_errno(),
            len: 0,
            synced: false,
        }
    }
}

/// A channel's backend: what serves its requests (the ABI's `vde_backend`; the ring's host side
/// that it reads them through is `ring::HostRing`).
pub(crate) enum Backend {
    /// Nobody serves; requests wait.
    None,
    /// Echo.
    Echo,
    /// Counting sink.
    Null,
    /// File-backed block device.
    Block(BackingFile),
    /// Served by a process; the eventfd tells it about kicks.
    User(EventFd),
}

impl Backend {
    /// The `vde_backend` value.
    pub(crate) fn kind(&self) -> u32 {
        match self {
            Self::None => vde_backend::NONE,
            Self::Echo => vde_backend::ECHO,
            Self::Null => vde_backend::NULL,
            Self::Block(_) => vde_backend::BLOCK,
            Self::User(_) => vde_backend::USER,
        }
    }

    /// Builds the backend `kind` with argument `fd`.
    pub(crate) fn from_attach(kind: u32, fd: i32) -> Result<Self> {
        Ok(match kind {
            vde_backend::NONE => Self::None,
            vde_backend::ECHO => Self::Echo,
            vde_backend::NULL => Self::Null,
            vde_backend::BLOCK => Self::Block(BackingFile::from_fd(fd)?),
            vde_backend::USER => Self::User(EventFd::from_fd(fd)?),
            _ => return Err(EINVAL),
        })
    }

    /// Serves one request whose payload (already copied out of the ring) is `payload`; writes
    /// the response payload into `rsp` (which holds a slot's payload). `da` is the channel's data
    /// area.
    pub(crate) fn serve(
        &self,
        req: &Request,
        payload: &[u8],
        rsp: &mut [u8],
        da: &DataArea<'_>,
    ) -> Served {
        match (self, req.op) {
            (Self::Echo, op::ECHO) => match rsp.get_mut(..payload.len()) {
                Some(dst) => {
                    dst.copy_from_slice(payload);
                    Served::ok(payload.len())
                }
                None => Served::err(EINVAL),
            },
            (Self::Null, _) => Served::ok(0),
            (Self::Block(f), _) => block(f, req.op, payload, rsp, da),
            _ => Served::err(EOPNOTSUPP),
        }
    }
}

/// Decoded block request header.
struct BlkHdr {
    pos: u64,
    len: usize,
}

/// Decodes and checks the [`BlkReq`] at the start of `payload` against the disk size and the
/// room for the data (`max_len`).
fn blk_hdr(payload: &[u8], size: u64, max_len: usize) -> Result<BlkHdr> {
    let h = BlkReq::from_bytes(payload).ok_or(EINVAL)?;
    if h.reserved != 0 {
        return Err(EINVAL);
    }
    let len = usize::try_from(h.len).map_err(|_| EINVAL)?;
    let pos = h.pos().ok_or(EINVAL)?;
    let end = pos.checked_add(u64::from(h.len)).ok_or(EINVAL)?;
    if len > max_len || end > size {
        return Err(EINVAL);
    }
    Ok(BlkHdr { pos, len })
}

/// A checked [`BlkDaReq`]: the data at `area_off..area_off + len` of the channel's pages goes
/// to or comes from byte `pos` of the disk.
struct DaHdr {
    pos: u64,
    len: usize,
    area_off: usize,
    fua: bool,
}

/// Decodes and checks a [`BlkDaReq`] payload: known flags only, `len` a non-zero multiple of
/// the sector size, the data inside the data area `da` (its private length), the sectors inside
/// a disk of `size` bytes. Any violation is `EINVAL` for this request.
fn blk_da_hdr(payload: &[u8], size: u64, da: &DataArea<'_>) -> Result<DaHdr> {
    let h = BlkDaReq::from_bytes(payload).ok_or(EINVAL)?;
    if h.flags & !BLK_F_ALL != 0 || h.len == 0 || u64::from(h.len) % BLK_SECTOR != 0 {
        return Err(EINVAL);
    }
    let area_len = u64::try_from(da.len).map_err(|_| EINVAL)?;
    let range = h.data_range(area_len).ok_or(EINVAL)?;
    let pos = h.pos().ok_or(EINVAL)?;
    let end = pos.checked_add(u64::from(h.len)).ok_or(EINVAL)?;
    if end > size {
        return Err(EINVAL);
    }
    let start = usize::try_from(range.start).map_err(|_| EINVAL)?;
    Ok(DaHdr {
        pos,
        len: usize::try_from(h.len).map_err(|_| EINVAL)?,
        area_off: da.off.checked_add(start).ok_or(EINVAL)?,
        fua: h.flags & BLK_F_FUA != 0,
    })
}

fn block(f: &BackingFile, opc: u16, payload: &[u8], rsp: &mut [u8], da: &DataArea<'_>) -> Served {
    stall_point();
    let size = f.size();
    let mut synced = false;
    let r = match opc {
        op::BLK_GET_SIZE => match rsp.get_mut(..8) {
            Some(dst) => {
                dst.copy_from_slice(&size.to_le_bytes());
                Ok(8)
            }
            None => Err(EINVAL),
        },
        op::BLK_READ => blk_hdr(payload, size, rsp.len()).and_then(|h| {
            let dst = rsp.get_mut(..h.len).ok_or(EINVAL)?;
            f.read_at(dst, h.pos).map(|()| h.len)
        }),
        op::BLK_WRITE => blk_hdr(payload, size, payload.len().saturating_sub(BLK_REQ_HDR))
            .and_then(|h| {
                let end = BLK_REQ_HDR.checked_add(h.len).ok_or(EINVAL)?;
                let src = payload.get(BLK_REQ_HDR..end).ok_or(EINVAL)?;
                f.write_at(src, h.pos).map(|()| 0)
            }),
        op::BLK_FLUSH => f.sync().map(|()| {
            synced = true;
            0
        }),
        // A read has nothing to make stable: FUA is accepted and means nothing there.
        op::BLK_READ_DA => blk_da_hdr(payload, size, da)
            .and_then(|h| da.mem.file_io(f, h.area_off, h.len, h.pos, true))
            .map(|()| 0),
        op::BLK_WRITE_DA => blk_da_hdr(payload, size, da)
            .and_then(|h| {
                da.mem.file_io(f, h.area_off, h.len, h.pos, false)?;
                if h.fua {
                    f.sync_range(h.pos, h.len as u64)?;
                    synced = true;
                }
                Ok(())
            })
            .map(|()| 0),
        _ => Err(EOPNOTSUPP),
    };
    match r {
        Ok(len) => Served {
            synced,
            ..Served::ok(len)
        },
        Err(e) => Served::err(e),
    }
}

#[kernel::prelude::kunit_tests(vd_evtchn_block_da)]
mod tests {
    use super::*;
    use crate::ring::BLK_DA_REQ_LEN;

    fn req(sector: u64, len: u32, flags: u32, data_off: u64) -> [u8; BLK_DA_REQ_LEN] {
        BlkDaReq {
            sector,
            len,
            flags,
            data_off,
        }
        .to_bytes()
    }

    /// Data-area requests are checked against the private area length and the disk size; every
    /// bad field is EINVAL, overflow included.
    #[test]
    fn data_area_requests_are_checked() {
        let mem = SharedPages::new(3 * 4096).unwrap();
        let da = DataArea {
            mem: &mem,
            off: 4096,
            len: 8192,
        };
        let size = 1 << 20;
        let ok = blk_da_hdr(&req(2, 4096, BLK_F_FUA, 4096), size, &da).unwrap();
        assert_eq!(
            (ok.pos, ok.len, ok.area_off, ok.fua),
            (1024, 4096, 8192, true)
        );
        let ok = blk_da_hdr(&req(2047, 512, 0, 0), size, &da).unwrap();
        assert_eq!((ok.pos, ok.area_off, ok.fua), (2047 * 512, 4096, false));
        let bad: [[u8; BLK_DA_REQ_LEN]; 9] = [
            req(0, 0, 0, 0),
            req(0, 100, 0, 0),
            req(0, 512, 2, 0),
            req(0, 512, 0, 8192),
            req(0, 4096, 0, 8192 - 512),
            req(0, 512, 0, u64::MAX - 10),
            req(2048, 512, 0, 0),
            req(u64::MAX / 256, 512, 0, 0),
            req(2047, 1024, 0, 0),
        ];
        for b in bad.iter() {
            assert!(blk_da_hdr(b, size, &da).is_err());
        }
        assert!(blk_da_hdr(&req(0, 512, 0, 0)[..23], size, &da).is_err());
        let none = DataArea {
            mem: &mem,
            off: 0,
            len: 0,
        };
        assert!(blk_da_hdr(&req(0, 512, 0, 0), size, &none).is_err());
    }
}

/// Test hook (debugfs `stall_block_io`, root only): while it is set (`1`), block-backend
/// requests wait before their I/O (at most [`STALL_MAX_MS`]), with the channel's lock held, as
/// a slow disk would make them. Reading it gives `<set> <handlers waiting now>`. Lets a test
/// block a backend in I/O deterministically (the test VM has no slow block device).
pub(crate) struct StallKnob;

/// Whether block I/O stalls.
static STALL: BoolKnob = BoolKnob::new();
/// Handlers waiting in [`stall_point`] now.
static STALLED: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
/// The longest a request waits for the knob.
pub(crate) const STALL_MAX_MS: u32 = 30_000;

impl fmt::Debug for StallKnob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {}", u8::from(STALL.get()), STALLED.load(Relaxed))
    }
}

impl kernel::debugfs::Reader for StallKnob {
    fn read_from_slice(&self, reader: &mut kernel::uaccess::UserSliceReader) -> Result {
        STALL.write_from(reader)
    }
}

/// Where the block backend waits while [`StallKnob`] is set.
pub(crate) fn stall_point() {
    if !STALL.get() {
        return;
    }
    STALLED.fetch_add(1, Relaxed);
    let mut waited = 0;
    while STALL.get() && waited < STALL_MAX_MS {
        kernel::time::delay::fsleep(kernel::time::Delta::from_millis(10));
        waited += 10;
    }
    STALLED.fetch_sub(1, Relaxed);
}
