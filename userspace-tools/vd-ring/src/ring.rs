// SPDX-License-Identifier: GPL-2.0
//! The vd ring: one shared-memory area per channel, written by two parties that do not trust
//! each other: the *frontend* (the guest, or whatever produces requests) and the *backend* (the
//! host driver that serves them, in the kernel or in a process).
//!
//! # Layout
//!
//! ```text
//! offset 0      geometry line  (backend writes once at creation, frontend only reads)
//! offset 64     frontend line  req_prod, rsp_cons, rsp_event     (only the frontend writes)
//! offset 128    backend line   rsp_prod, req_cons, req_event, status (only the backend writes)
//! offset 4096   request slots  entries x entry_size
//! rsp_off       response slots entries x entry_size (page aligned)
//! ```
//!
//! Indices are free-running `u32` (they wrap; a slot is `index & (entries - 1)`). Each index has
//! exactly one writer, and the two parties' fields sit on separate cache lines.
//!
//! # Memory-ordering contract
//!
//! - A producer writes slot contents, then publishes its producer index with a *release* store;
//!   the consumer reads the producer index with an *acquire* load before reading the slots.
//! - Before deciding whether to notify, a producer issues a *full* fence between publishing its
//!   index and reading the peer's event index; a consumer re-arming notifications writes its event
//!   index, issues a full fence, then re-reads the producer index (no lost wake-ups).
//! - Notification suppression follows virtio's EVENT_IDX: notify iff the new producer index moved
//!   past the event index the peer asked for ([`need_event`]).
//!
//! # Hostile peers
//!
//! Every value read from the ring is read once into a local, then validated against the geometry
//! the backend keeps privately (it never re-reads geometry from shared memory). A producer index
//! more than `entries` ahead, a consumer index that runs past what was produced, or a length larger
//! than the slot is a [`RingError`]; the backend then stops serving the ring for good
//! ([`HostRing::fail`]).

/// `"VDR1"`: first word of every vd ring.
pub const RING_MAGIC: u32 = 0x5644_5231;
/// Ring layout version.
pub const RING_VERSION: u32 = 1;
/// Page size the layout is built on.
pub const RING_PAGE: usize = 4096;

/// Geometry line: magic.
pub const OFF_MAGIC: usize = 0;
/// Geometry line: layout version.
pub const OFF_VERSION: usize = 4;
/// Geometry line: number of slots in each array.
pub const OFF_ENTRIES: usize = 8;
/// Geometry line: bytes per slot.
pub const OFF_ENTRY_SIZE: usize = 12;
/// Geometry line: offset of the request array.
pub const OFF_REQ_ARRAY: usize = 16;
/// Geometry line: offset of the response array.
pub const OFF_RSP_ARRAY: usize = 20;
/// Geometry line: generation, bumped on every restore of the channel.
pub const OFF_GENERATION: usize = 24;
/// Geometry line: offset of the data area from the ring's start (0: no data area). Channels
/// made by `VDE_IOC_CREATE_SHM` only; the area is page aligned and follows the response slots.
pub const OFF_DATA_OFF: usize = 28;
/// Geometry line: bytes of the data area.
pub const OFF_DATA_LEN: usize = 32;
/// Geometry line: what the channel carries ([`dev_kind`]); 0 for channels without a kind.
pub const OFF_DEV_KIND: usize = 36;
/// Geometry line: the value the frontend writes to its doorbell to kick the backend
/// (ivshmem-doorbell: `(peer << 16) | vector`, written to BAR0 offset 12).
pub const OFF_DOORBELL: usize = 40;
/// Frontend line: request producer index.
pub const OFF_REQ_PROD: usize = 64;
/// Frontend line: response consumer index.
pub const OFF_RSP_CONS: usize = 68;
/// Frontend line: "interrupt me when `rsp_prod` passes this".
pub const OFF_RSP_EVENT: usize = 72;
/// Frontend line: the frontend's state ([`FRONT_CONNECTED`] once its interrupt is set up and
/// it serves responses; 0 before). Informational for the host (listings, diagnostics): the
/// backend never depends on it.
pub const OFF_FRONT_STATE: usize = 76;
/// [`OFF_FRONT_STATE`]: the frontend is connected.
pub const FRONT_CONNECTED: u32 = 1;

/// Device kinds ([`OFF_DEV_KIND`]).
pub mod dev_kind {
    /// No kind given (test and echo channels).
    pub const NONE: u32 = 0;
    /// A disk: ops `BLK_*`, served by the `block` backend.
    pub const BLOCK: u32 = 1;
    /// An input device: the host (vd_input_irq) produces one `VdiEvent` (vd-uapi) per response
    /// payload; the guest consumes responses only and kicks when `req_event` asks.
    pub const INPUT: u32 = 2;
}
/// Backend line: response producer index.
pub const OFF_RSP_PROD: usize = 128;
/// Backend line: request consumer index (frees request slots for the frontend).
pub const OFF_REQ_CONS: usize = 132;
/// Backend line: "kick me when `req_prod` passes this".
pub const OFF_REQ_EVENT: usize = 136;
/// Backend line: [`STATUS_FAILED`] and friends.
pub const OFF_STATUS: usize = 140;

/// Status bit: the backend found the ring broken and stopped serving it.
pub const STATUS_FAILED: u32 = 1 << 0;

/// Bytes of a request slot header: `id: u64, op: u16, flags: u16, len: u32`.
pub const REQ_HDR: usize = 16;
/// Bytes of a response slot header: `id: u64, status: i32, len: u32`.
pub const RSP_HDR: usize = 16;

/// Request opcodes understood by the shipped backends.
pub mod op {
    /// Echo: the response carries the request payload back.
    pub const ECHO: u16 = 1;
    /// Block read: payload one [`BlkReq`](super::BlkReq) (16 bytes); the response carries
    /// `len` bytes of data.
    pub const BLK_READ: u16 = 2;
    /// Block write: payload one [`BlkReq`](super::BlkReq) (16 bytes), then `len` bytes of data
    /// at offset [`BLK_REQ_HDR`](super::BLK_REQ_HDR); the response carries the status only.
    pub const BLK_WRITE: u16 = 3;
    /// Block flush.
    pub const BLK_FLUSH: u16 = 4;
    /// Block size query: response payload is the capacity in bytes as `u64`.
    pub const BLK_GET_SIZE: u16 = 5;
    /// Block read into the data area: payload one [`BlkDaReq`](super::BlkDaReq); the backend
    /// writes `len` bytes at `data_off` of the data area; the response carries the status only.
    pub const BLK_READ_DA: u16 = 6;
    /// Block write from the data area: payload one [`BlkDaReq`](super::BlkDaReq); `len` bytes
    /// at `data_off` of the data area go to the disk (stable first if `BLK_F_FUA`).
    pub const BLK_WRITE_DA: u16 = 7;
}

/// The payload header of a block request ([`op::BLK_READ`], [`op::BLK_WRITE`]): the one
/// definition the kernel's block backend, the tools and guest drivers use. Little-endian on the
/// wire; a write's data follows at offset [`BLK_REQ_HDR`].
///
/// ```text
/// offset 0   sector: u64    first 512-byte sector
/// offset 8   len: u32       bytes to read or write (at most the slot's payload room)
/// offset 12  reserved: u32  must be 0 (else -EINVAL)
/// offset 16  data           (writes only)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkReq {
    /// First sector (512 bytes each).
    pub sector: u64,
    /// Bytes to transfer.
    pub len: u32,
    /// Must be 0.
    pub reserved: u32,
}

/// Bytes of a [`BlkReq`] in a payload; a write's data starts here.
pub const BLK_REQ_HDR: usize = 16;
/// Bytes of a block sector.
pub const BLK_SECTOR: u64 = 512;

const _: () = {
    assert!(core::mem::size_of::<BlkReq>() == BLK_REQ_HDR);
    assert!(core::mem::offset_of!(BlkReq, sector) == 0);
    assert!(core::mem::offset_of!(BlkReq, len) == 8);
    assert!(core::mem::offset_of!(BlkReq, reserved) == 12);
};

impl BlkReq {
    /// The header as it goes into a payload.
    pub fn to_bytes(&self) -> [u8; BLK_REQ_HDR] {
        let mut b = [0u8; BLK_REQ_HDR];
        b[..8].copy_from_slice(&self.sector.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..].copy_from_slice(&self.reserved.to_le_bytes());
        b
    }
    /// Decodes the header at the start of `payload` (`None` if shorter than [`BLK_REQ_HDR`]).
    pub fn from_bytes(payload: &[u8]) -> Option<Self> {
        let h = payload.get(..BLK_REQ_HDR)?;
        let w = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Some(Self {
            sector: u64::from(w(0)) | (u64::from(w(4)) << 32),
            len: w(8),
            reserved: w(12),
        })
    }
    /// Byte offset of the request on the disk, `None` if it overflows.
    pub fn pos(&self) -> Option<u64> {
        self.sector.checked_mul(BLK_SECTOR)
    }
}

/// The payload of [`op::BLK_READ_DA`] and [`op::BLK_WRITE_DA`]: a block request whose data sits
/// in the channel's data area (channels made by `VDE_IOC_CREATE_SHM`), so a request moves up to
/// the guest driver's chunk size without touching the slot size. Little-endian on the wire.
///
/// ```text
/// offset 0   sector: u64    first 512-byte sector
/// offset 8   len: u32       bytes to read or write, a multiple of 512, > 0
/// offset 12  flags: u32     BLK_F_* (unknown bits: -EINVAL)
/// offset 16  data_off: u64  where the data is, from the data area's start; the whole
///                           [data_off, data_off + len) must lie in the data area (-EINVAL)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkDaReq {
    /// First sector (512 bytes each).
    pub sector: u64,
    /// Bytes to transfer.
    pub len: u32,
    /// `BLK_F_*`.
    pub flags: u32,
    /// Offset of the data in the data area.
    pub data_off: u64,
}

/// Bytes of a [`BlkDaReq`] payload.
pub const BLK_DA_REQ_LEN: usize = 24;
/// [`BlkDaReq::flags`]: the write is stable on the host's storage before the response
/// (forced unit access: the backend syncs the written range).
pub const BLK_F_FUA: u32 = 1 << 0;
/// Every [`BlkDaReq::flags`] bit the block backend knows.
pub const BLK_F_ALL: u32 = BLK_F_FUA;

const _: () = {
    assert!(core::mem::size_of::<BlkDaReq>() == BLK_DA_REQ_LEN);
    assert!(core::mem::offset_of!(BlkDaReq, sector) == 0);
    assert!(core::mem::offset_of!(BlkDaReq, len) == 8);
    assert!(core::mem::offset_of!(BlkDaReq, flags) == 12);
    assert!(core::mem::offset_of!(BlkDaReq, data_off) == 16);
};

impl BlkDaReq {
    /// The payload as it goes into a request slot.
    pub fn to_bytes(&self) -> [u8; BLK_DA_REQ_LEN] {
        let mut b = [0u8; BLK_DA_REQ_LEN];
        b[..8].copy_from_slice(&self.sector.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..].copy_from_slice(&self.data_off.to_le_bytes());
        b
    }
    /// Decodes the payload at the start of `payload` (`None` if shorter than
    /// [`BLK_DA_REQ_LEN`]).
    pub fn from_bytes(payload: &[u8]) -> Option<Self> {
        let h = payload.get(..BLK_DA_REQ_LEN)?;
        let w = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Some(Self {
            sector: u64::from(w(0)) | (u64::from(w(4)) << 32),
            len: w(8),
            flags: w(12),
            data_off: u64::from(w(16)) | (u64::from(w(20)) << 32),
        })
    }
    /// Byte offset of the request on the disk, `None` if it overflows.
    pub fn pos(&self) -> Option<u64> {
        self.sector.checked_mul(BLK_SECTOR)
    }
    /// The data's range in a data area of `area_len` bytes, `None` if any part lies outside.
    pub fn data_range(&self, area_len: u64) -> Option<core::ops::Range<u64>> {
        let end = self.data_off.checked_add(u64::from(self.len))?;
        (end <= area_len).then_some(self.data_off..end)
    }
}

/// What is wrong with a ring, or with a request to build one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// Entries not a power of two in 1..=4096, entry size not a power of two in 32..=4096, or an
    /// array larger than [`Geometry::MAX_ARRAY_BYTES`].
    BadGeometry,
    /// The ring area does not start with [`RING_MAGIC`] / [`RING_VERSION`] or its geometry line
    /// is inconsistent.
    BadHeader,
    /// The request producer index is more than `entries` ahead of the consumer.
    BadRequestProducer {
        /// Value read.
        prod: u32,
        /// Consumer index at that time.
        cons: u32,
    },
    /// The response consumer index is ahead of what was produced, or more than `entries` behind.
    BadResponseConsumer {
        /// Value read.
        cons: u32,
        /// Producer index at that time.
        prod: u32,
    },
    /// A slot's length field exceeds the slot.
    BadLength {
        /// Value read.
        len: u32,
    },
    /// The ring was failed earlier and is not served any more.
    Failed,
    /// No free slot (frontend side) or payload too large for a slot (caller bug).
    Full,
}

impl RingError {
    /// Short name for logs and statistics.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::BadGeometry => "bad-geometry",
            Self::BadHeader => "bad-header",
            Self::BadRequestProducer { .. } => "bad-req-prod",
            Self::BadResponseConsumer { .. } => "bad-rsp-cons",
            Self::BadLength { .. } => "bad-length",
            Self::Failed => "failed",
            Self::Full => "full",
        }
    }
}

/// virtio EVENT_IDX rule: having moved a producer index from `old` to `new`, notify the peer iff
/// it asked to be told when the index passes `event`, i.e. iff `old <= event < new` in wrapping
/// arithmetic.
#[inline]
pub const fn need_event(event: u32, new: u32, old: u32) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

const fn is_pow2(x: u32) -> bool {
    x != 0 && x & (x - 1) == 0
}

const fn page_round(x: usize) -> usize {
    (x + RING_PAGE - 1) & !(RING_PAGE - 1)
}

/// Validated ring geometry.
///
/// # Invariants
///
/// `entries` is a power of two in `1..=MAX_ENTRIES`; `entry_size` a power of two in
/// `MIN_ENTRY_SIZE..=MAX_ENTRY_SIZE`; `entries * entry_size <= MAX_ARRAY_BYTES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    entries: u32,
    entry_size: u32,
}

impl Geometry {
    /// Most slots per array.
    pub const MAX_ENTRIES: u32 = 4096;
    /// Smallest slot: a header and 16 bytes of payload.
    pub const MIN_ENTRY_SIZE: u32 = 32;
    /// Largest slot: one page.
    pub const MAX_ENTRY_SIZE: u32 = 4096;
    /// Largest array (1 MiB), so a whole ring is at most 2 MiB + one page.
    pub const MAX_ARRAY_BYTES: usize = 1 << 20;

    /// Validates a geometry.
    pub const fn new(entries: u32, entry_size: u32) -> Result<Self, RingError> {
        if !is_pow2(entries) || entries > Self::MAX_ENTRIES {
            return Err(RingError::BadGeometry);
        }
        if !is_pow2(entry_size)
            || entry_size < Self::MIN_ENTRY_SIZE
            || entry_size > Self::MAX_ENTRY_SIZE
        {
            return Err(RingError::BadGeometry);
        }
        if entries as usize * entry_size as usize > Self::MAX_ARRAY_BYTES {
            return Err(RingError::BadGeometry);
        }
        // INVARIANT: checked above.
        Ok(Self {
            entries,
            entry_size,
        })
    }
    /// Slots per array.
    pub const fn entries(&self) -> u32 {
        self.entries
    }
    /// Bytes per slot.
    pub const fn entry_size(&self) -> u32 {
        self.entry_size
    }
    /// Largest payload of one slot.
    pub const fn max_payload(&self) -> usize {
        self.entry_size as usize - REQ_HDR
    }
    /// Bytes of one array, rounded up to a page.
    pub const fn array_bytes(&self) -> usize {
        page_round(self.entries as usize * self.entry_size as usize)
    }
    /// Offset of the request array.
    pub const fn req_array(&self) -> usize {
        RING_PAGE
    }
    /// Offset of the response array.
    pub const fn rsp_array(&self) -> usize {
        RING_PAGE + self.array_bytes()
    }
    /// Bytes of the whole ring area (a multiple of the page size).
    pub const fn total_bytes(&self) -> usize {
        RING_PAGE + 2 * self.array_bytes()
    }
    /// Offset of the request slot for free-running index `idx`.
    pub const fn req_slot(&self, idx: u32) -> usize {
        self.req_array() + (idx & (self.entries - 1)) as usize * self.entry_size as usize
    }
    /// Offset of the response slot for free-running index `idx`.
    pub const fn rsp_slot(&self, idx: u32) -> usize {
        self.rsp_array() + (idx & (self.entries - 1)) as usize * self.entry_size as usize
    }
}

/// Access to a ring area. Implementations copy to and from memory the peer may change at any
/// moment; callers only pass offsets computed from a trusted [`Geometry`], and implementations
/// must still never touch memory outside the area (they may ignore such an access).
pub trait RingMem {
    /// Bytes in the area.
    fn size(&self) -> usize;
    /// Single-copy-atomic relaxed load (`READ_ONCE`) of an aligned `u32`.
    fn load_u32(&self, off: usize) -> u32;
    /// Acquire load of an aligned `u32`.
    fn load_acquire_u32(&self, off: usize) -> u32;
    /// Relaxed store (`WRITE_ONCE`) of an aligned `u32`.
    fn store_u32(&self, off: usize, v: u32);
    /// Release store of an aligned `u32`.
    fn store_release_u32(&self, off: usize, v: u32);
    /// Copies `dst.len()` bytes out of the area.
    fn read(&self, off: usize, dst: &mut [u8]);
    /// Copies `src` into the area.
    fn write(&self, off: usize, src: &[u8]);
    /// Full memory barrier (`smp_mb`).
    fn fence(&self) {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }
}

/// A request copied out of the ring. Its payload is in the caller's buffer, `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Frontend's cookie, echoed in the response.
    pub id: u64,
    /// Opcode ([`op`]).
    pub op: u16,
    /// Opcode flags.
    pub flags: u16,
    /// Payload bytes, `<= max_payload`.
    pub len: u32,
}

/// A response copied out of the ring. Its payload is in the caller's buffer, `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// The request's cookie.
    pub id: u64,
    /// 0 or a negative errno.
    pub status: i32,
    /// Payload bytes.
    pub len: u32,
}

/// [`HostRing`]'s private indices: what save/restore carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostRingState {
    /// Next request to consume.
    pub req_cons: u32,
    /// Next response slot to fill.
    pub rsp_prod: u32,
}

/// Writes a fresh geometry line and zeroes all indices. Only the backend calls this, before the
/// ring is shared.
pub fn init_ring<M: RingMem + ?Sized>(mem: &M, geo: Geometry, generation: u32) {
    for off in [
        OFF_REQ_PROD,
        OFF_RSP_CONS,
        OFF_RSP_EVENT,
        OFF_RSP_PROD,
        OFF_REQ_CONS,
        OFF_REQ_EVENT,
        OFF_STATUS,
    ] {
        mem.store_u32(off, 0);
    }
    mem.store_u32(OFF_VERSION, RING_VERSION);
    mem.store_u32(OFF_ENTRIES, geo.entries());
    mem.store_u32(OFF_ENTRY_SIZE, geo.entry_size());
    mem.store_u32(OFF_REQ_ARRAY, geo.req_array() as u32);
    mem.store_u32(OFF_RSP_ARRAY, geo.rsp_array() as u32);
    mem.store_u32(OFF_GENERATION, generation);
    mem.store_release_u32(OFF_MAGIC, RING_MAGIC);
}

/// The ring's host side: consumes requests, produces responses. Holds every index privately and
/// treats the ring as hostile. (What serves the requests, a channel's backend, is another
/// thing: vd_evtchn's `Backend`, the ABI's `vde_backend`.)
///
/// # Invariants
///
/// `rsp_prod - rsp_published <= entries`; `unanswered` requests were popped and each holds a
/// response slot; once `failed` is set it stays set.
#[derive(Debug)]
pub struct HostRing {
    geo: Geometry,
    st: HostRingState,
    rsp_published: u32,
    /// Requests popped and not answered yet: each has a response slot reserved.
    unanswered: u32,
    req_cons_published: u32,
    failed: Option<RingError>,
}

impl HostRing {
    /// A backend for a ring whose indices start at `st` (zero for a new ring, a saved state on
    /// restore).
    pub const fn new(geo: Geometry, st: HostRingState) -> Self {
        Self {
            geo,
            st,
            rsp_published: st.rsp_prod,
            unanswered: 0,
            req_cons_published: st.req_cons,
            failed: None,
        }
    }
    /// The ring's geometry.
    pub const fn geometry(&self) -> Geometry {
        self.geo
    }
    /// Indices to save.
    pub const fn state(&self) -> HostRingState {
        self.st
    }
    /// Why the ring was failed, if it was.
    pub const fn failure(&self) -> Option<RingError> {
        self.failed
    }

    /// Marks the ring failed for good and says so in the backend line.
    pub fn fail<M: RingMem + ?Sized>(&mut self, mem: &M, err: RingError) -> RingError {
        if self.failed.is_none() {
            self.failed = Some(err);
            mem.store_release_u32(OFF_STATUS, STATUS_FAILED);
        }
        err
    }

    fn check<M: RingMem + ?Sized>(
        &mut self,
        mem: &M,
        r: Result<u32, RingError>,
    ) -> Result<u32, RingError> {
        r.map_err(|e| self.fail(mem, e))
    }

    /// Requests published by the frontend and not consumed yet (validated).
    pub fn pending<M: RingMem + ?Sized>(&mut self, mem: &M) -> Result<u32, RingError> {
        if self.failed.is_some() {
            return Err(RingError::Failed);
        }
        let prod = mem.load_acquire_u32(OFF_REQ_PROD);
        let n = prod.wrapping_sub(self.st.req_cons);
        let r = if n > self.geo.entries() {
            Err(RingError::BadRequestProducer {
                prod,
                cons: self.st.req_cons,
            })
        } else {
            Ok(n)
        };
        self.check(mem, r)
    }

    /// Free response slots (validated against the frontend's `rsp_cons`).
    fn rsp_room<M: RingMem + ?Sized>(&mut self, mem: &M) -> Result<u32, RingError> {
        let cons = mem.load_acquire_u32(OFF_RSP_CONS);
        // The frontend may only consume what we published.
        let used = self.rsp_published.wrapping_sub(cons);
        let r = if used > self.geo.entries() {
            Err(RingError::BadResponseConsumer {
                cons,
                prod: self.rsp_published,
            })
        } else {
            // Responses produced but not yet published also occupy slots.
            let inflight = self.st.rsp_prod.wrapping_sub(cons);
            Ok(self.geo.entries().saturating_sub(inflight))
        };
        self.check(mem, r)
    }

    /// Copies the next request out of the ring, its payload into `payload` (which must hold
    /// [`Geometry::max_payload`] bytes). `None` when there is no request, or no room for its
    /// response yet (backpressure: the frontend has not consumed responses).
    pub fn pop_request<M: RingMem + ?Sized>(
        &mut self,
        mem: &M,
        payload: &mut [u8],
    ) -> Result<Option<Request>, RingError> {
        if self.pending(mem)? == 0 || self.rsp_room(mem)? <= self.unanswered {
            return Ok(None);
        }
        let slot = self.geo.req_slot(self.st.req_cons);
        let mut hdr = [0u8; REQ_HDR];
        mem.read(slot, &mut hdr);
        // Decoded from the local copy only: the guest may change the slot meanwhile.
        let req = Request {
            id: u64::from_le_bytes([
                hdr[0], hdr[1], hdr[2], hdr[3], hdr[4], hdr[5], hdr[6], hdr[7],
            ]),
            op: u16::from_le_bytes([hdr[8], hdr[9]]),
            flags: u16::from_le_bytes([hdr[10], hdr[11]]),
            len: u32::from_le_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]),
        };
        let len = req.len as usize;
        if len > self.geo.max_payload() {
            return Err(self.fail(mem, RingError::BadLength { len: req.len }));
        }
        let Some(dst) = payload.get_mut(..len) else {
            return Err(RingError::Full);
        };
        mem.read(slot + REQ_HDR, dst);
        self.st.req_cons = self.st.req_cons.wrapping_add(1);
        self.unanswered += 1;
        Ok(Some(req))
    }

    /// Writes a response into the next response slot; it becomes visible at [`Self::publish`].
    /// Only called after [`Self::pop_request`] returned a request, which guaranteed room.
    pub fn push_response<M: RingMem + ?Sized>(
        &mut self,
        mem: &M,
        id: u64,
        status: i32,
        payload: &[u8],
    ) -> Result<(), RingError> {
        if self.failed.is_some() {
            return Err(RingError::Failed);
        }
        if payload.len() > self.geo.max_payload() {
            return Err(RingError::Full);
        }
        let room = self.rsp_room(mem)?;
        if room == 0 {
            if self.unanswered > 0 {
                // `pop_request` reserved this slot: only a frontend that moved `rsp_cons` back
                // since then can have taken it.
                let cons = mem.load_u32(OFF_RSP_CONS);
                return Err(self.fail(
                    mem,
                    RingError::BadResponseConsumer {
                        cons,
                        prod: self.rsp_published,
                    },
                ));
            }
            return Err(RingError::Full);
        }
        self.unanswered = self.unanswered.saturating_sub(1);
        let slot = self.geo.rsp_slot(self.st.rsp_prod);
        let mut hdr = [0u8; RSP_HDR];
        hdr[..8].copy_from_slice(&id.to_le_bytes());
        hdr[8..12].copy_from_slice(&status.to_le_bytes());
        hdr[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        mem.write(slot, &hdr);
        mem.write(slot + RSP_HDR, payload);
        self.st.rsp_prod = self.st.rsp_prod.wrapping_add(1);
        Ok(())
    }

    /// Publishes the responses written and the request slots freed since the last call. Returns
    /// `(published, notify)`: how many responses became visible and whether the frontend asked to
    /// be interrupted for them.
    pub fn publish<M: RingMem + ?Sized>(&mut self, mem: &M) -> (u32, bool) {
        if self.st.req_cons != self.req_cons_published {
            mem.store_release_u32(OFF_REQ_CONS, self.st.req_cons);
            self.req_cons_published = self.st.req_cons;
        }
        let old = self.rsp_published;
        let new = self.st.rsp_prod;
        if old == new || self.failed.is_some() {
            return (0, false);
        }
        mem.store_release_u32(OFF_RSP_PROD, new);
        self.rsp_published = new;
        mem.fence();
        let event = mem.load_u32(OFF_RSP_EVENT);
        (new.wrapping_sub(old), need_event(event, new, old))
    }

    /// Re-arms kicks before the backend sleeps: asks to be kicked when the next request is
    /// published. Returns `true` when a request arrived meanwhile *and* has room for its response:
    /// poll again instead of sleeping. A request without room waits: an honest frontend never
    /// has more than `entries` requests in flight ([`GuestRing::free_slots`]), so only a frontend
    /// that broke that rule stalls, until it kicks again; the backend never spins on it.
    pub fn enable_kicks<M: RingMem + ?Sized>(&mut self, mem: &M) -> Result<bool, RingError> {
        if self.failed.is_some() {
            return Err(RingError::Failed);
        }
        mem.store_u32(OFF_REQ_EVENT, self.st.req_cons);
        mem.fence();
        Ok(self.pending(mem)? != 0 && self.rsp_room(mem)? > self.unanswered)
    }
}

/// The ring's guest side: produces requests, consumes responses. vd_front, the test VMM,
/// benchmarks and fuzzers use it; it validates what the host side wrote just as carefully.
#[derive(Debug)]
pub struct GuestRing {
    geo: Geometry,
    req_prod: u32,
    req_published: u32,
    rsp_cons: u32,
}

impl GuestRing {
    /// Attaches to a ring the backend initialised; checks magic, version and geometry.
    pub fn attach<M: RingMem + ?Sized>(mem: &M) -> Result<Self, RingError> {
        if mem.load_acquire_u32(OFF_MAGIC) != RING_MAGIC
            || mem.load_u32(OFF_VERSION) != RING_VERSION
        {
            return Err(RingError::BadHeader);
        }
        let geo = Geometry::new(mem.load_u32(OFF_ENTRIES), mem.load_u32(OFF_ENTRY_SIZE))
            .map_err(|_| RingError::BadHeader)?;
        if mem.load_u32(OFF_REQ_ARRAY) as usize != geo.req_array()
            || mem.load_u32(OFF_RSP_ARRAY) as usize != geo.rsp_array()
            || geo.total_bytes() > mem.size()
        {
            return Err(RingError::BadHeader);
        }
        let req_prod = mem.load_u32(OFF_REQ_PROD);
        let rsp_cons = mem.load_u32(OFF_RSP_CONS);
        Ok(Self {
            geo,
            req_prod,
            req_published: req_prod,
            rsp_cons,
        })
    }
    /// The ring's geometry.
    pub const fn geometry(&self) -> Geometry {
        self.geo
    }
    /// Whether the backend marked the ring failed.
    pub fn backend_failed<M: RingMem + ?Sized>(&self, mem: &M) -> bool {
        mem.load_acquire_u32(OFF_STATUS) & STATUS_FAILED != 0
    }
    /// Requests that may be pushed now. A request is in flight from its push until its response
    /// is consumed, and at most `entries` are: then every request the backend finds has a
    /// response slot waiting (the backend's request slot is free sooner, at `req_cons`, but using
    /// it would leave the backend with requests it cannot answer).
    pub fn free_slots<M: RingMem + ?Sized>(&self, _mem: &M) -> u32 {
        self.geo
            .entries()
            .saturating_sub(self.req_prod.wrapping_sub(self.rsp_cons))
    }
    /// Writes a request into the next slot; it becomes visible at [`Self::publish`].
    pub fn push_request<M: RingMem + ?Sized>(
        &mut self,
        mem: &M,
        id: u64,
        op: u16,
        payload: &[u8],
    ) -> Result<(), RingError> {
        if payload.len() > self.geo.max_payload() || self.free_slots(mem) == 0 {
            return Err(RingError::Full);
        }
        let slot = self.geo.req_slot(self.req_prod);
        let mut hdr = [0u8; REQ_HDR];
        hdr[..8].copy_from_slice(&id.to_le_bytes());
        hdr[8..10].copy_from_slice(&op.to_le_bytes());
        hdr[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        mem.write(slot, &hdr);
        mem.write(slot + REQ_HDR, payload);
        self.req_prod = self.req_prod.wrapping_add(1);
        Ok(())
    }
    /// Publishes the requests pushed since the last call; returns whether to kick the backend.
    pub fn publish<M: RingMem + ?Sized>(&mut self, mem: &M) -> bool {
        let (old, new) = (self.req_published, self.req_prod);
        if old == new {
            return false;
        }
        mem.store_release_u32(OFF_REQ_PROD, new);
        self.req_published = new;
        mem.fence();
        need_event(mem.load_u32(OFF_REQ_EVENT), new, old)
    }
    /// Responses available (validated).
    pub fn responses<M: RingMem + ?Sized>(&self, mem: &M) -> Result<u32, RingError> {
        let prod = mem.load_acquire_u32(OFF_RSP_PROD);
        let n = prod.wrapping_sub(self.rsp_cons);
        if n > self.geo.entries() || n > self.req_published.wrapping_sub(self.rsp_cons) {
            return Err(RingError::BadResponseConsumer {
                cons: self.rsp_cons,
                prod,
            });
        }
        Ok(n)
    }
    /// Copies the next response out; its payload into `payload`.
    pub fn pop_response<M: RingMem + ?Sized>(
        &mut self,
        mem: &M,
        payload: &mut [u8],
    ) -> Result<Option<Response>, RingError> {
        if self.responses(mem)? == 0 {
            return Ok(None);
        }
        let slot = self.geo.rsp_slot(self.rsp_cons);
        let mut hdr = [0u8; RSP_HDR];
        mem.read(slot, &mut hdr);
        let rsp = Response {
            id: u64::from_le_bytes([
                hdr[0], hdr[1], hdr[2], hdr[3], hdr[4], hdr[5], hdr[6], hdr[7],
            ]),
            status: i32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]),
            len: u32::from_le_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]),
        };
        let len = rsp.len as usize;
        if len > self.geo.max_payload() {
            return Err(RingError::BadLength { len: rsp.len });
        }
        let n = len.min(payload.len());
        mem.read(slot + RSP_HDR, &mut payload[..n]);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        mem.store_release_u32(OFF_RSP_CONS, self.rsp_cons);
        Ok(Some(rsp))
    }
    /// Re-arms interrupts before waiting: asks for an interrupt at the next response. Returns
    /// `true` when responses arrived meanwhile.
    pub fn enable_irq<M: RingMem + ?Sized>(&mut self, mem: &M) -> bool {
        mem.store_u32(OFF_RSP_EVENT, self.rsp_cons);
        mem.fence();
        mem.load_acquire_u32(OFF_RSP_PROD) != self.rsp_cons
    }
    /// Turns interrupts off (polling mode): the event index is parked half a ring behind.
    pub fn disable_irq<M: RingMem + ?Sized>(&mut self, mem: &M) {
        mem.store_u32(OFF_RSP_EVENT, self.rsp_cons.wrapping_sub(0x8000_0000));
    }
}
