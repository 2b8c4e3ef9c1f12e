// SPDX-License-Identifier: GPL-2.0
//! The pure part of the frontend: what the host's geometry line says, whether the guest accepts
//! it (a block ring, [`validate`], or an input event ring, [`validate_input`]; [`validate_kind`]
//! picks by the line's device kind), and how the data area is divided among the block layer's
//! tags. No I/O, no allocation: KUnit tests it below.

use crate::ring::{self, dev_kind, Geometry, RingMem, RING_PAGE};
use crate::vd::caps;

/// The largest request: one data chunk per tag (128 KiB), smaller if the data area is.
pub(crate) const CHUNK_MAX: u32 = 128 * 1024;
/// The smallest chunk the block layer accepts (`max_hw_sectors` of at least a page).
pub(crate) const CHUNK_MIN: u32 = RING_PAGE as u32;
/// Most of BAR2 the driver maps: a vd ring (at most 2 MiB + a page) and a data area (the host
/// makes at most 64 MiB), with room to spare. A geometry reaching beyond is refused.
pub(crate) const MAX_MAP: usize = 256 << 20;
/// Bytes of the ring request a block op carries (`BlkDaReq`) plus the slot header: the
/// smallest usable slot is the next power of two, 64 bytes.
const MIN_SLOT: u32 = 64;
const _: () = assert!(ring::REQ_HDR + ring::BLK_DA_REQ_LEN <= MIN_SLOT as usize);

/// The geometry line as read from shared memory: each field read exactly once, nothing
/// validated yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GeomLine {
    pub(crate) magic: u32,
    pub(crate) version: u32,
    pub(crate) entries: u32,
    pub(crate) entry_size: u32,
    pub(crate) req_array: u32,
    pub(crate) rsp_array: u32,
    pub(crate) data_off: u32,
    pub(crate) data_len: u32,
    pub(crate) dev_kind: u32,
    pub(crate) doorbell: u32,
}

impl GeomLine {
    /// Copies the geometry line out of `mem` (the magic with acquire, as the host publishes it
    /// last).
    pub(crate) fn read<M: RingMem + ?Sized>(mem: &M) -> Self {
        Self {
            magic: mem.load_acquire_u32(ring::OFF_MAGIC),
            version: mem.load_u32(ring::OFF_VERSION),
            entries: mem.load_u32(ring::OFF_ENTRIES),
            entry_size: mem.load_u32(ring::OFF_ENTRY_SIZE),
            req_array: mem.load_u32(ring::OFF_REQ_ARRAY),
            rsp_array: mem.load_u32(ring::OFF_RSP_ARRAY),
            data_off: mem.load_u32(ring::OFF_DATA_OFF),
            data_len: mem.load_u32(ring::OFF_DATA_LEN),
            dev_kind: mem.load_u32(ring::OFF_DEV_KIND),
            doorbell: mem.load_u32(ring::OFF_DOORBELL),
        }
    }
}

/// Why a geometry line is refused (the probe answers `ENODEV` and logs the name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GeomError {
    /// No `VDR1` magic: not a vd ring (another ivshmem user, or the host is not ready).
    Magic,
    /// A ring layout version this driver does not know.
    Version,
    /// Entries or slot size out of range (`vd_ring::Geometry`), or slots too small for a
    /// block request.
    Slots,
    /// The request or response array is not where the vd-ring layout puts it.
    Arrays,
    /// The ring does not fit in the mapped BAR.
    RingTooBig,
    /// The data area is missing, too small, misaligned, overlaps the ring or lies outside the
    /// mapped BAR.
    DataArea,
    /// Neither a block nor an input channel.
    Kind,
}

impl GeomError {
    /// Short name for the log line.
    pub(crate) const fn name(&self) -> &'static str {
        match self {
            Self::Magic => "no vd ring magic",
            Self::Version => "unknown ring version",
            Self::Slots => "bad entries or slot size",
            Self::Arrays => "arrays not at the vd-ring offsets",
            Self::RingTooBig => "ring larger than BAR2",
            Self::DataArea => "bad data area",
            Self::Kind => "device kind is not BLOCK or INPUT",
        }
    }
}

/// A geometry the driver accepted, and the data-area plan derived from it.
///
/// # Invariants
///
/// The ring (`ring.total_bytes()`) and the data area `[data_off, data_off + data_len)` lie in
/// the mapped BAR and do not overlap; `data_off` is page aligned; `CHUNK_MIN <= chunk <=
/// CHUNK_MAX`, `chunk` a multiple of the page size; `1 <= depth <= ring.entries()` and
/// `depth * chunk <= data_len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrontGeometry {
    ring: Geometry,
    data_off: usize,
    data_len: usize,
    chunk: u32,
    depth: u32,
    doorbell: u32,
}

/// The chunk size for a data area of `data_len` bytes: [`CHUNK_MAX`], or the whole area
/// (rounded down to pages) if that is smaller; `None` below one page.
pub(crate) const fn chunk_size(data_len: usize) -> Option<u32> {
    let pages = data_len & !(RING_PAGE - 1);
    if pages < CHUNK_MIN as usize {
        None
    } else if pages >= CHUNK_MAX as usize {
        Some(CHUNK_MAX)
    } else {
        Some(pages as u32)
    }
}

/// The block layer's queue depth: one tag per ring slot and per data chunk, whichever runs out
/// first (0 for a zero `chunk`).
pub(crate) const fn queue_depth(entries: u32, data_len: usize, chunk: u32) -> u32 {
    let chunks = match data_len.checked_div(chunk as usize) {
        Some(c) => c,
        None => 0,
    };
    if chunks < entries as usize {
        chunks as u32
    } else {
        entries
    }
}

/// The disk's capacity in 512-byte sectors for the `bytes` the host reported: whole sectors
/// only, and at most what a byte offset (`loff_t`, `i64`) can address.
pub(crate) const fn capacity_sectors(bytes: u64) -> u64 {
    let sectors = bytes / 512;
    let max = (i64::MAX as u64) >> 9;
    if sectors > max {
        max
    } else {
        sectors
    }
}

/// Validates a geometry line against a mapping of `map_len` bytes of BAR2.
pub(crate) fn validate(g: &GeomLine, map_len: usize) -> Result<FrontGeometry, GeomError> {
    if g.magic != ring::RING_MAGIC {
        return Err(GeomError::Magic);
    }
    if g.version != ring::RING_VERSION {
        return Err(GeomError::Version);
    }
    let geo = Geometry::new(g.entries, g.entry_size).map_err(|_| GeomError::Slots)?;
    if g.entry_size < MIN_SLOT {
        return Err(GeomError::Slots);
    }
    if g.req_array as usize != geo.req_array() || g.rsp_array as usize != geo.rsp_array() {
        return Err(GeomError::Arrays);
    }
    let ring_end = geo.total_bytes();
    if ring_end > map_len {
        return Err(GeomError::RingTooBig);
    }
    let (data_off, data_len) = (g.data_off as usize, g.data_len as usize);
    if data_off < ring_end
        || data_off % RING_PAGE != 0
        || data_off
            .checked_add(data_len)
            .is_none_or(|end| end > map_len)
    {
        return Err(GeomError::DataArea);
    }
    let chunk = chunk_size(data_len).ok_or(GeomError::DataArea)?;
    if g.dev_kind != dev_kind::BLOCK {
        return Err(GeomError::Kind);
    }
    let depth = queue_depth(geo.entries(), data_len, chunk);
    // INVARIANT: checked above: the ring ends at or before `data_off`, the data area ends
    // inside the mapping; `chunk_size` keeps chunk in range and page sized; `data_len >= chunk`
    // (chunk_size succeeded), so `depth >= 1`, and `depth <= data_len / chunk`.
    Ok(FrontGeometry {
        ring: geo,
        data_off,
        data_len,
        chunk,
        depth,
        doorbell: g.doorbell,
    })
}

/// An input event ring the driver accepted (SPEC-13): only the response half is used, each
/// slot a 16-byte response header and one 16-byte event.
///
/// # Invariants
///
/// The ring (`ring.total_bytes()`) lies in the mapped BAR and its slots hold at least
/// [`INPUT_SLOT`] bytes; a capabilities block at `caps` lies in the BAR after the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InputGeometry {
    ring: Geometry,
    doorbell: u32,
    caps: Option<usize>,
}

/// Bytes of an input ring slot that carry something: the response header and one event
/// (`vdi_event`: `time_ns: u64, ty: u16, code: u16, value: i32`).
pub(crate) const INPUT_SLOT: usize = ring::RSP_HDR + INPUT_EVENT_LEN;
/// Bytes of one event in an input ring slot (the response's `len`).
pub(crate) const INPUT_EVENT_LEN: usize = 16;

impl InputGeometry {
    /// The ring's geometry.
    pub(crate) const fn ring(&self) -> Geometry {
        self.ring
    }
    /// The doorbell value (written to BAR0 offset 12).
    pub(crate) const fn doorbell(&self) -> u32 {
        self.doorbell
    }
    /// Where the capabilities block ([`caps::CAPS_LEN`] bytes) is, if the host reserved one.
    pub(crate) const fn caps(&self) -> Option<usize> {
        self.caps
    }
}

/// What a geometry line describes, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrontKind {
    /// A block ring with its data area ([`validate`]).
    Block(FrontGeometry),
    /// An input event ring ([`validate_input`]).
    Input(InputGeometry),
}

/// Validates an input event ring's geometry line against a mapping of `map_len` bytes: magic,
/// version, a valid ring geometry at the vd-ring offsets that fits, slots of at least
/// [`INPUT_SLOT`] bytes, device kind INPUT. The data area is empty or holds the capabilities
/// block (at least [`caps::CAPS_LEN`] bytes, 8-byte aligned, after the ring, inside the BAR).
pub(crate) fn validate_input(g: &GeomLine, map_len: usize) -> Result<InputGeometry, GeomError> {
    if g.magic != ring::RING_MAGIC {
        return Err(GeomError::Magic);
    }
    if g.version != ring::RING_VERSION {
        return Err(GeomError::Version);
    }
    let geo = Geometry::new(g.entries, g.entry_size).map_err(|_| GeomError::Slots)?;
    if (g.entry_size as usize) < INPUT_SLOT {
        return Err(GeomError::Slots);
    }
    if g.req_array as usize != geo.req_array() || g.rsp_array as usize != geo.rsp_array() {
        return Err(GeomError::Arrays);
    }
    if geo.total_bytes() > map_len {
        return Err(GeomError::RingTooBig);
    }
    if g.dev_kind != dev_kind::INPUT {
        return Err(GeomError::Kind);
    }
    let caps = match (g.data_off as usize, g.data_len as usize) {
        (_, 0) => None,
        (off, len)
            if len >= caps::CAPS_LEN
                && off >= geo.total_bytes()
                && off % 8 == 0
                && off
                    .checked_add(caps::CAPS_LEN)
                    .is_some_and(|end| end <= map_len) =>
        {
            Some(off)
        }
        _ => return Err(GeomError::DataArea),
    };
    // INVARIANT: the ring fits the mapping and its slots hold `INPUT_SLOT` bytes; the
    // capabilities block lies after it, inside the mapping (checked).
    Ok(InputGeometry {
        ring: geo,
        doorbell: g.doorbell,
        caps,
    })
}

/// Validates a geometry line as what its device kind says: INPUT rings with [`validate_input`],
/// everything else with [`validate`] (which refuses kinds other than BLOCK).
pub(crate) fn validate_kind(g: &GeomLine, map_len: usize) -> Result<FrontKind, GeomError> {
    if g.magic == ring::RING_MAGIC && g.dev_kind == dev_kind::INPUT {
        validate_input(g, map_len).map(FrontKind::Input)
    } else {
        validate(g, map_len).map(FrontKind::Block)
    }
}

impl FrontGeometry {
    /// The ring's geometry.
    pub(crate) const fn ring(&self) -> Geometry {
        self.ring
    }
    /// Bytes per data chunk, the largest request.
    pub(crate) const fn chunk(&self) -> u32 {
        self.chunk
    }
    /// Tags of the block layer's tag set.
    pub(crate) const fn depth(&self) -> u32 {
        self.depth
    }
    /// Bytes of the data area.
    pub(crate) const fn data_len(&self) -> usize {
        self.data_len
    }
    /// The doorbell value (written to BAR0 offset 12).
    pub(crate) const fn doorbell(&self) -> u32 {
        self.doorbell
    }
    /// Where tag `tag`'s chunk starts, from the data area's start (`BlkDaReq::data_off`);
    /// `None` for a tag the block layer cannot hand out.
    pub(crate) const fn chunk_off(&self, tag: u32) -> Option<usize> {
        if tag < self.depth {
            Some(tag as usize * self.chunk as usize)
        } else {
            None
        }
    }
    /// Where tag `tag`'s chunk starts in the mapping.
    pub(crate) const fn chunk_in_map(&self, tag: u32) -> Option<usize> {
        match self.chunk_off(tag) {
            Some(off) => self.data_off.checked_add(off),
            None => None,
        }
    }
}

#[kernel::prelude::kunit_tests(vd_front_geometry)]
mod tests {
    use super::*;

    /// What `VDE_IOC_CREATE_SHM` writes for `entries` x `esz` slots and `data` bytes of data.
    fn line(entries: u32, esz: u32, data: u32) -> (GeomLine, usize) {
        let geo = Geometry::new(entries, esz).unwrap();
        let off = geo.total_bytes();
        let total = (off + data as usize).next_power_of_two();
        (
            GeomLine {
                magic: ring::RING_MAGIC,
                version: ring::RING_VERSION,
                entries,
                entry_size: esz,
                req_array: geo.req_array() as u32,
                rsp_array: geo.rsp_array() as u32,
                data_off: off as u32,
                data_len: data,
                dev_kind: dev_kind::BLOCK,
                doorbell: 0,
            },
            total,
        )
    }

    #[test]
    fn chunk_size_is_128k_or_the_whole_area() {
        assert_eq!(chunk_size(8 << 20), Some(CHUNK_MAX));
        assert_eq!(chunk_size(128 << 10), Some(CHUNK_MAX));
        assert_eq!(chunk_size(64 << 10), Some(64 << 10));
        assert_eq!(chunk_size(4096 + 100), Some(4096));
        assert_eq!(chunk_size(4095), None);
        assert_eq!(chunk_size(0), None);
    }

    #[test]
    fn capacity_is_whole_sectors_and_addressable() {
        assert_eq!(capacity_sectors(0), 0);
        assert_eq!(capacity_sectors(511), 0);
        assert_eq!(capacity_sectors(64 << 20), 131072);
        assert_eq!(capacity_sectors(u64::MAX), (i64::MAX as u64) >> 9);
    }

    #[test]
    fn queue_depth_is_the_smaller_of_slots_and_chunks() {
        assert_eq!(queue_depth(64, 8 << 20, CHUNK_MAX), 64);
        assert_eq!(queue_depth(256, 8 << 20, CHUNK_MAX), 64);
        assert_eq!(queue_depth(16, 8 << 20, CHUNK_MAX), 16);
        assert_eq!(queue_depth(4096, 64 << 10, 64 << 10), 1);
        // A partial chunk at the end is not handed out.
        assert_eq!(queue_depth(64, (3 << 17) + 4096, CHUNK_MAX), 3);
        assert_eq!(queue_depth(64, 8 << 20, 0), 0);
    }

    #[test]
    fn tags_own_disjoint_chunks_inside_the_data_area() {
        let (g, total) = line(64, 64, 8 << 20);
        let f = validate(&g, total).unwrap();
        assert_eq!(f.depth(), 64);
        assert_eq!(f.chunk_off(0), Some(0));
        assert_eq!(f.chunk_off(1), Some(128 << 10));
        assert_eq!(f.chunk_off(63), Some(63 * (128 << 10)));
        assert_eq!(f.chunk_off(64), None);
        assert_eq!(f.chunk_off(u32::MAX), None);
        assert_eq!(f.chunk_in_map(0), Some(g.data_off as usize));
        for t in 0..f.depth() {
            let end = f.chunk_off(t).unwrap() + f.chunk() as usize;
            assert!(end <= f.data_len());
            assert!(f.chunk_in_map(t).unwrap() + f.chunk() as usize <= total);
        }
        // More slots than chunks: the depth follows the chunks, every tag still fits.
        let (g, total) = line(256, 64, 1 << 20);
        let f = validate(&g, total).unwrap();
        assert_eq!(f.depth(), 8);
        assert_eq!(f.chunk_off(7).unwrap() + f.chunk() as usize, 1 << 20);
    }

    #[test]
    fn validate_accepts_what_the_host_makes() {
        let (g, total) = line(64, 64, 8 << 20);
        let f = validate(&g, total).unwrap();
        assert_eq!(f.ring().entries(), 64);
        assert_eq!(f.chunk(), CHUNK_MAX);
        let (g, total) = line(4096, 256, 64 << 20);
        assert!(validate(&g, total).is_ok());
        let (g, total) = line(1, 4096, 4096);
        let f = validate(&g, total).unwrap();
        assert_eq!((f.depth(), f.chunk()), (1, 4096));
    }

    #[test]
    fn validate_refuses_bad_lines() {
        let (good, total) = line(64, 64, 8 << 20);
        let bad = |f: &dyn Fn(&mut GeomLine)| {
            let mut g = good;
            f(&mut g);
            validate(&g, total)
        };
        assert_eq!(bad(&|g| g.magic = 0), Err(GeomError::Magic));
        assert_eq!(bad(&|g| g.version = 2), Err(GeomError::Version));
        assert_eq!(bad(&|g| g.entries = 0), Err(GeomError::Slots));
        assert_eq!(bad(&|g| g.entries = 48), Err(GeomError::Slots));
        assert_eq!(bad(&|g| g.entries = 8192), Err(GeomError::Slots));
        assert_eq!(bad(&|g| g.entry_size = 32), Err(GeomError::Slots));
        assert_eq!(bad(&|g| g.entry_size = 100), Err(GeomError::Slots));
        assert_eq!(bad(&|g| g.req_array = 0), Err(GeomError::Arrays));
        assert_eq!(bad(&|g| g.rsp_array += 4096), Err(GeomError::Arrays));
        // Data area overlapping the response array, misaligned, outside the BAR, too small,
        // wrapping around.
        assert_eq!(bad(&|g| g.data_off -= 4096), Err(GeomError::DataArea));
        assert_eq!(bad(&|g| g.data_off += 512), Err(GeomError::DataArea));
        assert_eq!(
            bad(&|g| g.data_len = total as u32),
            Err(GeomError::DataArea)
        );
        assert_eq!(bad(&|g| g.data_len = 4095), Err(GeomError::DataArea));
        assert_eq!(bad(&|g| g.data_len = 0), Err(GeomError::DataArea));
        assert_eq!(
            bad(&|g| g.data_off = u32::MAX & !4095),
            Err(GeomError::DataArea)
        );
        assert_eq!(bad(&|g| g.data_len = u32::MAX), Err(GeomError::DataArea));
        assert_eq!(bad(&|g| g.dev_kind = dev_kind::NONE), Err(GeomError::Kind));
        // A ring larger than the mapping.
        let (g, _) = line(4096, 256, 4096);
        assert_eq!(validate(&g, 1 << 20), Err(GeomError::RingTooBig));
    }

    /// What `VDI_IOC_VM_CREATE_SHM` writes: `entries` x 32-byte slots, no data area, kind INPUT.
    fn input_line(entries: u32) -> (GeomLine, usize) {
        let (mut g, _) = line(entries, 32, 0);
        let total = g.data_off as usize;
        g.dev_kind = dev_kind::INPUT;
        g.doorbell = 7;
        (g, total.next_power_of_two())
    }

    #[test]
    fn input_rings_are_accepted_by_kind() {
        let (g, total) = input_line(256);
        let f = validate_input(&g, total).unwrap();
        assert_eq!(
            (f.ring().entries(), f.ring().entry_size(), f.doorbell()),
            (256, 32, 7)
        );
        assert_eq!(validate_kind(&g, total), Ok(FrontKind::Input(f)));
        // A block line still goes to `validate`.
        let (b, btotal) = line(64, 64, 8 << 20);
        assert!(matches!(validate_kind(&b, btotal), Ok(FrontKind::Block(_))));
        let (g, total) = input_line(8);
        assert!(validate_input(&g, total).is_ok());
    }

    #[test]
    fn validate_input_refuses_bad_lines() {
        let (good, total) = input_line(64);
        let bad = |f: &dyn Fn(&mut GeomLine)| {
            let mut g = good;
            f(&mut g);
            validate_input(&g, total)
        };
        assert_eq!(bad(&|g| g.magic = 0), Err(GeomError::Magic));
        assert_eq!(bad(&|g| g.version = 9), Err(GeomError::Version));
        assert_eq!(bad(&|g| g.entries = 0), Err(GeomError::Slots));
        assert_eq!(bad(&|g| g.entries = 100), Err(GeomError::Slots));
        assert_eq!(bad(&|g| g.entry_size = 16), Err(GeomError::Slots));
        assert_eq!(bad(&|g| g.rsp_array = 0), Err(GeomError::Arrays));
        assert_eq!(bad(&|g| g.dev_kind = dev_kind::BLOCK), Err(GeomError::Kind));
        assert_eq!(validate_input(&good, 4096), Err(GeomError::RingTooBig));
        // A capabilities block: after the ring, 8-byte aligned, whole, inside the mapping.
        let (mut c, _) = input_line(64);
        let ring_end = c.data_off as usize;
        c.data_len = caps::CAPS_LEN as u32;
        let size = (ring_end + caps::CAPS_LEN).next_power_of_two();
        assert_eq!(
            validate_input(&c, size).map(|f| f.caps()),
            Ok(Some(ring_end))
        );
        assert_eq!(validate_input(&good, total).map(|f| f.caps()), Ok(None));
        let bad_caps = |f: &dyn Fn(&mut GeomLine)| {
            let mut g = c;
            f(&mut g);
            validate_input(&g, size)
        };
        assert_eq!(bad_caps(&|g| g.data_len -= 1), Err(GeomError::DataArea));
        assert_eq!(bad_caps(&|g| g.data_off -= 8), Err(GeomError::DataArea));
        assert_eq!(bad_caps(&|g| g.data_off += 4), Err(GeomError::DataArea));
        assert_eq!(
            bad_caps(&|g| g.data_off = (size - 8) as u32),
            Err(GeomError::DataArea)
        );
        assert_eq!(
            bad_caps(&|g| g.data_off = u32::MAX & !7),
            Err(GeomError::DataArea)
        );
        // Kind NONE is refused as before (87-guest-bad's `kind` layout).
        let (mut n, _) = line(64, 64, 1 << 20);
        n.dev_kind = dev_kind::NONE;
        assert_eq!(validate_kind(&n, 2 << 20), Err(GeomError::Kind));
    }
}
