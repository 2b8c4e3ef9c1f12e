// SPDX-License-Identifier: GPL-2.0
//! vd_evtchn: `/dev/vd_evtchn`, one open file per domain (VM). The ring layout is `vd-ring`.
//!
//! The shared pieces (ioctl encoding, `VD_IOC_VERSION`) are `abi.rs`.

use super::abi::*;
use core::mem::{offset_of, size_of};

/// Feature bit: echo backend.
pub const VDE_FEAT_ECHO: u64 = 1 << 0;
/// Feature bit: null (counting sink) backend.
pub const VDE_FEAT_NULL: u64 = 1 << 1;
/// Feature bit: file-backed block backend.
pub const VDE_FEAT_BLOCK: u64 = 1 << 2;
/// Feature bit: userspace backend.
pub const VDE_FEAT_USER: u64 = 1 << 3;
/// Feature bit: save/restore.
pub const VDE_FEAT_SAVE_RESTORE: u64 = 1 << 4;
/// Feature bit: channels in shmem files with a data area (`VDE_IOC_CREATE_SHM`) and channels
/// owned by their guest (`VDE_IOC_ORPHAN`): the stock-QEMU `ivshmem-doorbell` transport.
pub const VDE_FEAT_SHM: u64 = 1 << 5;

/// Most channels per domain.
pub const VDE_MAX_CHANNELS: u32 = 256;
/// `mmap` offset of channel `id` is `id * VDE_MMAP_STRIDE` (bytes); a ring is at most 2 MiB + 4 KiB.
pub const VDE_MMAP_STRIDE: u64 = 4 << 20;

/// `VDE_IOC_CREATE`: in `entries`, `entry_size`, `flags`; out the rest.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdeCreate {
    /// Slots per array: a power of two, 1..=4096.
    pub entries: u32,
    /// Bytes per slot: a power of two, 32..=4096; entries * entry_size <= 1 MiB.
    pub entry_size: u32,
    /// Must be 0.
    pub flags: u32,
    /// Out: the channel id.
    pub id: u32,
    /// Out: `mmap` offset of the ring.
    pub mmap_offset: u64,
    /// Out: bytes to map.
    pub mmap_size: u64,
}
const _: () = {
    assert!(size_of::<VdeCreate>() == 32);
    assert!(offset_of!(VdeCreate, id) == 12);
    assert!(offset_of!(VdeCreate, mmap_offset) == 16);
    assert!(offset_of!(VdeCreate, mmap_size) == 24);
};

/// `VDE_IOC_BIND`: notification eventfds of a channel. `-1` leaves one unbound (unbinds it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdeBind {
    /// Channel id.
    pub id: u32,
    /// Eventfd the VMM registered with `KVM_IOEVENTFD` (the guest's doorbell).
    pub kick_fd: i32,
    /// Eventfd the VMM registered with `KVM_IRQFD` (the guest's interrupt).
    pub call_fd: i32,
    /// Must be 0.
    pub flags: u32,
}
const _: () = assert!(size_of::<VdeBind>() == 16);

/// Backend kinds for [`VdeAttach::backend`].
pub mod vde_backend {
    /// Detach: requests wait in the ring.
    pub const NONE: u32 = 0;
    /// Echo: every request is answered with its own payload.
    pub const ECHO: u32 = 1;
    /// Null: every request is answered with status 0 and no payload (counting sink).
    pub const NULL: u32 = 2;
    /// Block: `fd` is a regular host file or a block device opened read-write; ops `BLK_*`,
    /// payload `vd_ring::BlkReq`.
    pub const BLOCK: u32 = 3;
    /// Userspace: `fd` is an eventfd the kernel signals on kicks; the process serves the ring
    /// through its own mapping and raises the guest interrupt with `VDE_IOC_NOTIFY`.
    pub const USER: u32 = 4;
}

/// `VDE_IOC_ATTACH`: puts a backend on a channel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdeAttach {
    /// Channel id.
    pub id: u32,
    /// A `vde_backend` value.
    pub backend: u32,
    /// Backend argument (see `vde_backend`), else -1.
    pub fd: i32,
    /// Must be 0.
    pub flags: u32,
}
const _: () = assert!(size_of::<VdeAttach>() == 16);

/// Channel state in [`VdeStats::state`].
pub mod vde_state {
    /// Created, no backend.
    pub const IDLE: u32 = 0;
    /// A backend serves it.
    pub const ACTIVE: u32 = 1;
    /// The ring was found broken; nothing is served any more.
    pub const FAILED: u32 = 2;
}

/// The counters of a channel (in [`VdeStats`]) or of a whole domain (in [`VdeTotals`]), in ABI
/// order. Counters saturate at `u64::MAX` (a kick eventfd can be written with any count).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdeCounters {
    /// Requests consumed.
    pub requests: u64,
    /// Responses published.
    pub responses: u64,
    /// Request payload bytes.
    pub bytes_in: u64,
    /// Response payload bytes.
    pub bytes_out: u64,
    /// Kicks received on the kick eventfd (batched kicks each count).
    pub kicks: u64,
    /// Handler runs (one per batch of kicks).
    pub wakeups: u64,
    /// Interrupts sent on the call eventfd.
    pub irqs: u64,
    /// Response batches published without an interrupt: the guest did not ask for one, or no
    /// call eventfd was bound.
    pub irqs_suppressed: u64,
    /// Ring protocol errors (a channel is FAILED after the first).
    pub errors: u64,
    /// Requests answered with an error status (bad op, I/O error).
    pub req_errors: u64,
}
const _: () = {
    assert!(size_of::<VdeCounters>() == 80);
    assert!(offset_of!(VdeCounters, kicks) == 32);
    assert!(offset_of!(VdeCounters, req_errors) == 72);
};

impl VdeCounters {
    /// Adds every counter of `other` into `self`, saturating (sums over channels can exceed
    /// `u64`: a kick counter carries whatever count a process wrote into its kick eventfd).
    pub fn saturating_add(&mut self, other: &VdeCounters) {
        self.requests = self.requests.saturating_add(other.requests);
        self.responses = self.responses.saturating_add(other.responses);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.kicks = self.kicks.saturating_add(other.kicks);
        self.wakeups = self.wakeups.saturating_add(other.wakeups);
        self.irqs = self.irqs.saturating_add(other.irqs);
        self.irqs_suppressed = self.irqs_suppressed.saturating_add(other.irqs_suppressed);
        self.errors = self.errors.saturating_add(other.errors);
        self.req_errors = self.req_errors.saturating_add(other.req_errors);
    }
}

/// `VDE_IOC_STATS`: counters of channel `id`. With `id = VDE_ALL` the kernel writes a
/// [`VdeTotals`] instead (the same size and counters; the three words after `id` mean counts of
/// channels there). Counters are read without waiting for a channel's backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdeStats {
    /// In: channel id (or [`VDE_ALL`]: the answer is a [`VdeTotals`]).
    pub id: u32,
    /// Out: a `vde_state` value.
    pub state: u32,
    /// Out: a `vde_backend` value.
    pub backend: u32,
    /// Out: ring entries.
    pub entries: u32,
    /// Out: the channel's counters.
    pub counters: VdeCounters,
}
const _: () = {
    assert!(size_of::<VdeStats>() == 96);
    assert!(offset_of!(VdeStats, counters) == 16);
    assert!(offset_of!(VdeStats, counters) + offset_of!(VdeCounters, req_errors) == 88);
};
/// [`VdeStats::id`] for the domain totals ([`VdeTotals`]).
pub const VDE_ALL: u32 = u32::MAX;

/// `VDE_IOC_STATS` with `id = VDE_ALL`: the whole domain. Counters are the sums over its
/// channels (saturating), the same [`VdeCounters`] in the same place as in [`VdeStats`]; the
/// words a channel's answer uses for its state, backend and ring size count channels here. Same
/// size as `VdeStats` (the ioctl number is the same); binaries older than this struct read
/// `channels` as `VdeStats::backend` and `failed` as `VdeStats::state`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdeTotals {
    /// In: [`VDE_ALL`].
    pub id: u32,
    /// Out: channels in the `FAILED` state.
    pub failed: u32,
    /// Out: channels in the domain.
    pub channels: u32,
    /// Out: 0.
    pub reserved: u32,
    /// Out: the sums of the channels' counters.
    pub counters: VdeCounters,
}
const _: () = {
    assert!(size_of::<VdeTotals>() == size_of::<VdeStats>());
    assert!(offset_of!(VdeTotals, failed) == offset_of!(VdeStats, state));
    assert!(offset_of!(VdeTotals, channels) == offset_of!(VdeStats, backend));
    assert!(offset_of!(VdeTotals, reserved) == offset_of!(VdeStats, entries));
    assert!(offset_of!(VdeTotals, counters) == offset_of!(VdeStats, counters));
};

/// `VDE_IOC_SAVE` (out) / `VDE_IOC_RESTORE` (in): what a channel needs to continue elsewhere.
/// The ring bytes themselves are guest memory, which the VMM migrates; restore them into the new
/// channel's mapping first, then call `VDE_IOC_RESTORE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdeState {
    /// Channel id.
    pub id: u32,
    /// Ring entries.
    pub entries: u32,
    /// Ring entry size.
    pub entry_size: u32,
    /// Ring generation; restore publishes `generation + 1`.
    pub generation: u32,
    /// Backend's request consumer index.
    pub req_cons: u32,
    /// Backend's response producer index.
    pub rsp_prod: u32,
    /// Backend kind at save time (restore does not re-attach it).
    pub backend: u32,
    /// Must be 0.
    pub flags: u32,
}
const _: () = assert!(size_of::<VdeState>() == 32);

/// `_IOWR(0xB7, 0x10, struct vde_create)`. If the result cannot be copied back (`EFAULT`) the
/// channel is destroyed again: the caller never holds a channel whose id it does not know.
pub const VDE_IOC_CREATE: u32 = iowr::<VdeCreate>(0x10);
/// `_IOW(0xB7, 0x11, u32)`: destroy channel.
pub const VDE_IOC_DESTROY: u32 = iow::<u32>(0x11);
/// `_IOW(0xB7, 0x12, struct vde_bind)`. `EBADF` if an fd is not open, `EINVAL` if it is not an
/// eventfd. The kick fd is looked up once: the file that was checked is the one waited on.
pub const VDE_IOC_BIND: u32 = iow::<VdeBind>(0x12);
/// `_IOW(0xB7, 0x13, struct vde_attach)`. Block backend: `EBADF` if `fd` is not open, `EINVAL`
/// unless it is a regular file or a block device (an eventfd, socket, pipe or vd device file
/// could hold the domain alive in a reference cycle), `EACCES` unless it is open read-write.
pub const VDE_IOC_ATTACH: u32 = iow::<VdeAttach>(0x13);
/// `_IOWR(0xB7, 0x14, struct vde_stats)`; `struct vde_totals` when `id = VDE_ALL`.
pub const VDE_IOC_STATS: u32 = iowr::<VdeStats>(0x14);
const _: () = assert!(VDE_IOC_STATS == iowr::<VdeTotals>(0x14));
/// `_IOW(0xB7, 0x15, u32)`: userspace backend published responses; signal the call eventfd
/// if the guest asked for an interrupt.
pub const VDE_IOC_NOTIFY: u32 = iow::<u32>(0x15);
/// `_IOWR(0xB7, 0x16, struct vde_state)`. `EOPNOTSUPP` while a `user` backend is attached (that
/// process keeps the backend's indices; it saves its own). Attaching another backend after a
/// `user` one continues from the indices that process published in the ring.
pub const VDE_IOC_SAVE: u32 = iowr::<VdeState>(0x16);
/// `_IOW(0xB7, 0x17, struct vde_state)`.
pub const VDE_IOC_RESTORE: u32 = iow::<VdeState>(0x17);
/// `_IOW(0xB7, 0x18, u32)`: run the backend now, as if kicked (polling VMMs, tests).
pub const VDE_IOC_KICK: u32 = iow::<u32>(0x18);

/// `VDE_IOC_LIST`: one channel of all domains on the host, walked by cursor: the channel with
/// the smallest list key `>= cursor` (`ENOENT` when there is none). Keys are unique, increasing
/// in creation order and never reused, so a walk (`cursor` 0, then the returned key + 1) while
/// channels come and go lists every channel that lives through it exactly once.
/// For the daemon and `vdctl evtchn list`: each open file only sees its own channels otherwise.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdeListEntry {
    /// In: where to continue (0 for the start). Out: the returned channel's list key.
    pub cursor: u64,
    /// Out: thread-group id of the process that owns the domain: the channel's creator (the
    /// VMM, or a server such as `vd-ivshmem-server` that made it for a guest: see `kick_pid`).
    pub domain_pid: u32,
    /// In: must be 0. Out: `VDE_LIST_*` bits.
    pub flags: u32,
    /// Out: the channel's counters; `stats.id` is the channel id in its domain.
    pub stats: VdeStats,
    /// Out: thread-group id (in the initial PID namespace) of the process that last kicked the
    /// channel through its kick eventfd: the kick's wake-up runs in the signaller's context, so
    /// for a `KVM_IOEVENTFD` doorbell this is the VMM whose vCPU thread took the guest's write
    /// (QEMU, also when `vd-ivshmem-server` created the channel), for a `write(2)` the writer's
    /// process. The process that does the guest's I/O, where `domain_pid` is only the creator.
    /// 0 until the first kick; kicks by kernel threads leave it as it was (`VDE_IOC_KICK` and
    /// attaching a backend are no kicks). Ignored on input.
    ///
    /// An eventfd signalled from interrupt context (a device's interrupt eventfd bound as a
    /// kick eventfd, which no VMM doorbell is) would name whichever task was interrupted.
    pub kick_pid: u32,
    /// In: must be 0. Out: 0.
    pub reserved: u32,
}
const _: () = {
    assert!(size_of::<VdeListEntry>() == 120);
    assert!(offset_of!(VdeListEntry, domain_pid) == 8);
    assert!(offset_of!(VdeListEntry, stats) == 16);
    assert!(offset_of!(VdeListEntry, kick_pid) == 112);
    assert!(offset_of!(VdeListEntry, reserved) == 116);
};
/// `_IOWR(0xB7, 0x19, struct vde_list_entry)`.
pub const VDE_IOC_LIST: u32 = iowr::<VdeListEntry>(0x19);

/// `VDE_IOC_CREATE_SHM`: makes a channel whose ring and data area live in a new shmem file
/// that the caller gets as an fd, for VMMs that take guest memory as a file (QEMU's
/// `ivshmem-doorbell`, which wants a power-of-two size).
///
/// The file holds the ring at offset 0 (the `vd-ring` layout; the geometry line also records
/// the data area, the device kind and the doorbell value, see `vd_ring::OFF_DATA_OFF`), then
/// `data_size` bytes of data area at a page-aligned offset; its size is the next power of two
/// that holds both. The kernel pins the file's pages while the channel lives; the channel is
/// also mappable through the device at `mmap_offset` like any other.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdeCreateShm {
    /// Slots per array: a power of two, 1..=4096.
    pub entries: u32,
    /// Bytes per slot: a power of two, 32..=4096; entries * entry_size <= 1 MiB.
    pub entry_size: u32,
    /// Bytes of data area: a multiple of 4096, at most `VDE_MAX_DATA` (0: none).
    pub data_size: u32,
    /// Device kind written to the geometry line (`vd_ring::dev_kind`).
    pub dev_kind: u32,
    /// The value the guest writes to kick the backend (ivshmem: `(peer << 16) | vector`),
    /// written to the geometry line for the guest driver; the kernel does not interpret it.
    pub doorbell: u32,
    /// Must be 0.
    pub flags: u32,
    /// Out: the channel id.
    pub id: u32,
    /// Out: the shmem file, open read-write, close-on-exec.
    pub fd: i32,
    /// Out: the file's size (a power of two).
    pub size: u64,
    /// Out: offset of the data area in the file.
    pub data_off: u64,
    /// Out: `mmap` offset of the ring on the device.
    pub mmap_offset: u64,
}
const _: () = {
    assert!(size_of::<VdeCreateShm>() == 56);
    assert!(offset_of!(VdeCreateShm, doorbell) == 16);
    assert!(offset_of!(VdeCreateShm, id) == 24);
    assert!(offset_of!(VdeCreateShm, fd) == 28);
    assert!(offset_of!(VdeCreateShm, size) == 32);
    assert!(offset_of!(VdeCreateShm, data_off) == 40);
    assert!(offset_of!(VdeCreateShm, mmap_offset) == 48);
};
/// Largest data area of a `VDE_IOC_CREATE_SHM` channel: 64 MiB.
pub const VDE_MAX_DATA: u32 = 64 << 20;
/// `_IOWR(0xB7, 0x1a, struct vde_create_shm)`.
pub const VDE_IOC_CREATE_SHM: u32 = iowr::<VdeCreateShm>(0x1a);

/// `_IOW(0xB7, 0x1b, u32)`: hands channel `id` to its guest. The channel leaves the domain
/// (the id is free afterwards) and lives on, served as before, until its kick eventfd is gone
/// (every file reference closed: the VMM exited and nobody else holds it), then it is torn
/// down. The VMM's lifetime decides, not the caller's: a server that set the channel up may
/// exit or restart. Needs a bound kick eventfd (`EINVAL` otherwise). While such a channel
/// lives the module stays loaded (rmmod answers `EWOULDBLOCK`). Listed with `VDE_LIST_ORPHAN`.
pub const VDE_IOC_ORPHAN: u32 = iow::<u32>(0x1b);
/// [`VdeListEntry::flags`] out: the channel belongs to its guest (`VDE_IOC_ORPHAN`).
pub const VDE_LIST_ORPHAN: u32 = 1 << 0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_abi_order() {
        let mut s = VdeStats::default();
        let mut t = VdeTotals::default();
        s.counters.requests = 1;
        s.counters.kicks = 5;
        s.counters.req_errors = 10;
        t.counters.saturating_add(&s.counters);
        assert_eq!(t.counters, s.counters);
        // The same bytes from offset 16 on: a VdeTotals is a VdeStats for old binaries.
        // SAFETY: both are 96-byte `#[repr(C)]` structs of integers without padding.
        let (sb, tb) = unsafe {
            (
                core::slice::from_raw_parts(&s as *const VdeStats as *const u8, 96),
                core::slice::from_raw_parts(&t as *const VdeTotals as *const u8, 96),
            )
        };
        assert_eq!(sb[16..], tb[16..]);
        assert_eq!(u64::from_ne_bytes(sb[16..24].try_into().unwrap()), 1);
        assert_eq!(u64::from_ne_bytes(sb[48..56].try_into().unwrap()), 5);
        assert_eq!(u64::from_ne_bytes(sb[88..96].try_into().unwrap()), 10);
    }

    #[test]
    fn counters_add_saturates_every_field() {
        let mut a = VdeCounters {
            requests: 1,
            kicks: u64::MAX - 1,
            ..Default::default()
        };
        let b = VdeCounters {
            requests: 2,
            responses: 3,
            bytes_in: 4,
            bytes_out: 5,
            kicks: 7,
            wakeups: 6,
            irqs: 8,
            irqs_suppressed: 9,
            errors: 10,
            req_errors: 11,
        };
        a.saturating_add(&b);
        let want = VdeCounters {
            requests: 3,
            kicks: u64::MAX,
            ..b
        };
        assert_eq!(a, want);
    }
}
