// SPDX-License-Identifier: GPL-2.0
//! vd ABI, version [`VD_ABI_VERSION`]: the one definition of every ioctl number, `#[repr(C)]`
//! struct and constant that crosses the kernel/user boundary.
//!
//! Included by path into the kernel modules and used as the `vd-uapi` crate by userspace. It is
//! `core`-only and holds no logic beyond `const fn` ioctl encoding, so it compiles the same way in
//! both worlds. Every struct has its size and field offsets asserted at compile time; a change of
//! layout must bump [`VD_ABI_VERSION`].

use core::mem::{offset_of, size_of};

/// ABI version answered by every vd device through [`VD_IOC_VERSION`].
pub const VD_ABI_VERSION: u32 = 1;

/// ioctl type byte of every vd device (unused in `Documentation/userspace-api/ioctl/ioctl-number.rst`).
pub const VD_IOC_MAGIC: u32 = 0xB7;

// ioctl number encoding of `include/uapi/asm-generic/ioctl.h` (x86, arm64, riscv).
const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
/// `_IOC_NONE`.
pub const IOC_NONE: u32 = 0;
/// `_IOC_WRITE`: userspace writes, the kernel reads.
pub const IOC_WRITE: u32 = 1;
/// `_IOC_READ`: the kernel writes, userspace reads.
pub const IOC_READ: u32 = 2;

/// `_IOC(dir, VD_IOC_MAGIC, nr, size)`.
pub const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    // A struct too large for the 14-bit size field is a compile-time error where this is const.
    assert!(size < (1 << IOC_SIZEBITS));
    (dir << IOC_DIRSHIFT)
        | (VD_IOC_MAGIC << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}
/// `_IO(VD_IOC_MAGIC, nr)`.
pub const fn io(nr: u32) -> u32 {
    ioc(IOC_NONE, nr, 0)
}
/// `_IOR(VD_IOC_MAGIC, nr, T)`.
pub const fn ior<T>(nr: u32) -> u32 {
    ioc(IOC_READ, nr, size_of::<T>())
}
/// `_IOW(VD_IOC_MAGIC, nr, T)`.
pub const fn iow<T>(nr: u32) -> u32 {
    ioc(IOC_WRITE, nr, size_of::<T>())
}
/// `_IOWR(VD_IOC_MAGIC, nr, T)`.
pub const fn iowr<T>(nr: u32) -> u32 {
    ioc(IOC_READ | IOC_WRITE, nr, size_of::<T>())
}
/// `_IOC_SIZE(cmd)`.
pub const fn ioc_size(cmd: u32) -> usize {
    ((cmd >> IOC_SIZESHIFT) & ((1 << IOC_SIZEBITS) - 1)) as usize
}

// ---------------------------------------------------------------------------------------------
// Common to every vd device.

/// Which vd driver answered [`VD_IOC_VERSION`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VdDriver {
    /// `/dev/vd_evtchn`.
    Evtchn = 1,
    /// `/dev/vd_sriov`.
    Sriov = 2,
    /// `/dev/vd_input`.
    Input = 3,
}

impl VdDriver {
    /// Decodes [`VdVersion::driver`].
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Evtchn),
            2 => Some(Self::Sriov),
            3 => Some(Self::Input),
            _ => None,
        }
    }
    /// The misc device node of this driver, under `/dev`.
    pub const fn dev_name(self) -> &'static str {
        match self {
            Self::Evtchn => "vd_evtchn",
            Self::Sriov => "vd_sriov",
            Self::Input => "vd_input",
        }
    }
    /// The kernel module that registers it.
    pub const fn module_name(self) -> &'static str {
        match self {
            Self::Evtchn => "vd_evtchn",
            Self::Sriov => "vd_sriov_mgr",
            Self::Input => "vd_input_irq",
        }
    }
    /// All drivers, in [`VdDriver`] order.
    pub const ALL: [VdDriver; 3] = [Self::Evtchn, Self::Sriov, Self::Input];
}

/// Answer of [`VD_IOC_VERSION`]: who answered, with which ABI, and how busy it is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdVersion {
    /// [`VD_ABI_VERSION`] of the module.
    pub abi_version: u32,
    /// A [`VdDriver`] value.
    pub driver: u32,
    /// Feature bits of that driver (`VD_*_FEAT_*`).
    pub features: u64,
    /// Files open on the device now (domains, lease holders, routed VMs).
    pub open_files: u32,
    /// Driver objects alive now (channels, leases, routes).
    pub objects: u32,
    /// Module version, NUL-padded ASCII (e.g. `0.1.0`).
    pub module_version: [u8; 16],
}
const _: () = {
    assert!(size_of::<VdVersion>() == 40);
    assert!(offset_of!(VdVersion, abi_version) == 0);
    assert!(offset_of!(VdVersion, driver) == 4);
    assert!(offset_of!(VdVersion, features) == 8);
    assert!(offset_of!(VdVersion, open_files) == 16);
    assert!(offset_of!(VdVersion, objects) == 20);
    assert!(offset_of!(VdVersion, module_version) == 24);
};

/// `VD_IOC_VERSION`: `_IOR(0xB7, 0x00, struct vd_version)`, answered by every vd device.
pub const VD_IOC_VERSION: u32 = ior::<VdVersion>(0x00);

/// Copies `s` into a NUL-padded fixed field, truncating; usable in `const` context.
pub const fn fixed_str<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < b.len() && i < N - 1 {
        out[i] = b[i];
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// vd_evtchn: `/dev/vd_evtchn`, one open file per domain (VM). The ring layout is `vd-ring`.

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

/// `VDE_IOC_STATS`: counters of channel `id`, or of the whole domain with `id = VDE_ALL`.
/// Counters saturate at `u64::MAX` (a kick eventfd can be written with any count); they are
/// read without waiting for a channel's backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdeStats {
    /// In: channel id or [`VDE_ALL`].
    pub id: u32,
    /// Out: a `vde_state` value (domain: channels in FAILED state).
    pub state: u32,
    /// Out: a `vde_backend` value (domain: number of channels).
    pub backend: u32,
    /// Out: ring entries (domain: 0).
    pub entries: u32,
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
    /// Response batches published without an interrupt because the guest did not ask for one.
    pub irqs_suppressed: u64,
    /// Ring protocol errors (the channel is FAILED after the first).
    pub errors: u64,
    /// Requests answered with an error status (bad op, I/O error).
    pub req_errors: u64,
}
const _: () = {
    assert!(size_of::<VdeStats>() == 96);
    assert!(offset_of!(VdeStats, requests) == 16);
    assert!(offset_of!(VdeStats, req_errors) == 88);
};
/// [`VdeStats::id`] for the domain totals.
pub const VDE_ALL: u32 = u32::MAX;

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
/// `_IOWR(0xB7, 0x14, struct vde_stats)`.
pub const VDE_IOC_STATS: u32 = iowr::<VdeStats>(0x14);
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
    /// Out: thread-group id of the process that owns the domain (the VMM).
    pub domain_pid: u32,
    /// In: must be 0. Out: `VDE_LIST_*` bits.
    pub flags: u32,
    /// Out: the channel's counters; `stats.id` is the channel id in its domain.
    pub stats: VdeStats,
}
const _: () = {
    assert!(size_of::<VdeListEntry>() == 112);
    assert!(offset_of!(VdeListEntry, domain_pid) == 8);
    assert!(offset_of!(VdeListEntry, stats) == 16);
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

// ---------------------------------------------------------------------------------------------
// vd_sriov_mgr: `/dev/vd_sriov`. ioctl numbers 0x20..=0x2f.

/// Feature bit: VF leases with the move to vfio-pci done by the kernel.
pub const VDS_FEAT_LEASE: u64 = 1 << 0;
/// Feature bit: VFs/PFs appearing and disappearing are noticed (PCI bus notifier).
pub const VDS_FEAT_HOTPLUG: u64 = 1 << 1;
/// Feature bit: usage accounting (netdev counters and pushed samples, sliding window).
pub const VDS_FEAT_USAGE: u64 = 1 << 2;
/// Feature bit: reassignment policy (candidates, waiters, atomic swap).
pub const VDS_FEAT_POLICY: u64 = 1 << 3;
/// Feature bit: events readable and pollable on every open file.
pub const VDS_FEAT_EVENTS: u64 = 1 << 4;
/// Feature bit: per-VF transmit rate limits through the PF driver (`VDS_IOC_RATE_*`).
pub const VDS_FEAT_RATE: u64 = 1 << 5;

/// "Any VF" in [`VdsLease::bdf`].
pub const VDS_ANY: u32 = u32::MAX;
/// Bytes of the NUL-padded name fields.
pub const VDS_NAME_LEN: usize = 16;

/// Where a VF is, in [`VdsVf::phase`].
pub mod vds_phase {
    /// On the host: its normal driver (igbvf) or none.
    pub const HOST: u32 = 0;
    /// Being moved to vfio-pci for a new lease.
    pub const TO_GUEST: u32 = 1;
    /// Leased: on vfio-pci (or kept on the host for a `KEEP_HOST` lease).
    pub const LEASED: u32 = 2;
    /// Released: being moved back to its host driver.
    pub const TO_HOST: u32 = 3;
}

/// Bits of [`VdsVf::flags`].
pub mod vds_vf {
    /// A netdev is attached (the VF is on a network driver on this host).
    pub const NETDEV: u32 = 1 << 0;
    /// The lease keeps the VF on its host driver (netdev-mode lease; no passthrough).
    pub const KEEP_HOST: u32 = 1 << 1;
    /// `rate_bps` is valid: the usage history covers the policy window.
    pub const HAS_RATE: u32 = 1 << 2;
    /// The holder is a reassignment candidate (under threshold for the window).
    pub const IDLE: u32 = 1 << 3;
    /// `PCI_DEV_FLAGS_ASSIGNED` is set (the PF driver refuses to disable SR-IOV).
    pub const ASSIGNED: u32 = 1 << 4;
    /// Counters come from samples pushed with `VDS_IOC_SAMPLE` (else from the netdev).
    pub const PUSHED: u32 = 1 << 5;
}

/// `VDS_IOC_PF`: the `index`-th SR-IOV physical function (`ENOENT` past the end).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdsPf {
    /// In: position in the list.
    pub index: u32,
    /// `domain << 16 | bus << 8 | devfn`.
    pub bdf: u32,
    /// TotalVFs.
    pub total_vfs: u32,
    /// VFs enabled now.
    pub num_vfs: u32,
    /// Bound driver, NUL-padded (empty: none).
    pub driver: [u8; VDS_NAME_LEN],
    /// PCI name (`0000:01:00.0`), NUL-padded.
    pub name: [u8; VDS_NAME_LEN],
}
const _: () = {
    assert!(size_of::<VdsPf>() == 48);
    assert!(offset_of!(VdsPf, driver) == 16);
    assert!(offset_of!(VdsPf, name) == 32);
};

/// `VDS_IOC_VF`: the `index`-th VF of all PFs (`ENOENT` past the end).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdsVf {
    /// In: position in the list.
    pub index: u32,
    /// The VF's `domain << 16 | bus << 8 | devfn`.
    pub bdf: u32,
    /// Its PF's.
    pub pf_bdf: u32,
    /// VF number on the PF.
    pub vf_index: u32,
    /// A `vds_phase` value.
    pub phase: u32,
    /// `vds_vf` bits.
    pub flags: u32,
    /// Thread-group id of the process that opened the lease's file (0: not leased).
    pub owner_pid: u32,
    /// Must be 0.
    pub reserved: u32,
    /// VM id of the lease (0: not leased).
    pub vm_id: u64,
    /// Milliseconds since the lease began (0: not leased).
    pub held_ms: u64,
    /// Bytes received (netdev counters while on the host, else pushed samples).
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes per second over the policy window (valid with `vds_vf::HAS_RATE`).
    pub rate_bps: u64,
    /// MAC address (bytes 0..6; last seen on the netdev), zero-padded.
    pub mac: [u8; 8],
    /// Bound driver, NUL-padded.
    pub driver: [u8; VDS_NAME_LEN],
    /// Netdev name, NUL-padded (empty: none).
    pub netdev: [u8; VDS_NAME_LEN],
    /// PCI name (`0000:01:10.0`), NUL-padded.
    pub name: [u8; VDS_NAME_LEN],
}
const _: () = {
    assert!(size_of::<VdsVf>() == 144);
    assert!(offset_of!(VdsVf, vm_id) == 32);
    assert!(offset_of!(VdsVf, rate_bps) == 80);
    assert!(offset_of!(VdsVf, mac) == 88);
    assert!(offset_of!(VdsVf, driver) == 96);
    assert!(offset_of!(VdsVf, name) == 128);
};

/// [`VdsLease::flags`]: keep the VF on its host driver (netdev-mode lease: the VF's netdev is
/// handed to a container or a vhost backend, not to vfio-pci).
pub const VDS_LEASE_KEEP_HOST: u32 = 1 << 0;

/// `VDS_IOC_LEASE` (in/out) and `VDS_IOC_RELEASE` (in): a VF for a VM. The lease belongs to the
/// file that took it and ends when that file is closed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdsLease {
    /// The VF (`VDS_ANY` on lease: any free VF; out: the one leased).
    pub bdf: u32,
    /// `VDS_LEASE_*` bits.
    pub flags: u32,
    /// The VM (nonzero).
    pub vm_id: u64,
}
const _: () = assert!(size_of::<VdsLease>() == 16);

/// `VDS_IOC_SAMPLE`: the lease holder reports the VF's cumulative traffic while the VF is passed
/// through (the host cannot see it then).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdsSample {
    /// The VF.
    pub bdf: u32,
    /// Must be 0.
    pub flags: u32,
    /// Cumulative bytes (rx + tx) since the lease began, as the VMM counts them.
    pub bytes: u64,
}
const _: () = assert!(size_of::<VdsSample>() == 16);

/// `VDS_IOC_POLICY_GET` / `VDS_IOC_POLICY_SET`: reassignment parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdsPolicy {
    /// A holder whose window average falls under this (bytes/s) becomes a candidate.
    pub threshold_bps: u64,
    /// A candidate stops being one only above `threshold_bps + hysteresis_bps`.
    pub hysteresis_bps: u64,
    /// Sliding window (ms), 100..=600000.
    pub window_ms: u32,
    /// No holder is a candidate before holding its VF this long (ms).
    pub min_hold_ms: u32,
    /// How often host netdev counters are sampled (ms), 50..=10000.
    pub sample_ms: u32,
    /// Must be 0.
    pub flags: u32,
}
const _: () = {
    assert!(size_of::<VdsPolicy>() == 32);
    assert!(offset_of!(VdsPolicy, window_ms) == 16);
};

/// [`VdsWait::flags`]: stop waiting.
pub const VDS_WAIT_CANCEL: u32 = 1 << 0;

/// `VDS_IOC_WAIT`: VM `vm_id` wants a VF (a waiter, owned by this file).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdsWait {
    /// The VM (nonzero; must hold no VF).
    pub vm_id: u64,
    /// `VDS_WAIT_*` bits.
    pub flags: u32,
    /// Must be 0.
    pub reserved: u32,
}
const _: () = assert!(size_of::<VdsWait>() == 16);

/// [`VdsSwap::flags`]: swap even if the holder is not a candidate (operator override).
pub const VDS_SWAP_FORCE: u32 = 1 << 0;

/// `VDS_IOC_SWAP`: atomically moves the lease of VF `bdf` from `from_vm` to the waiter `to_vm`
/// (the lease then belongs to the waiter's file). The VF stays where it is (vfio-pci); the
/// daemon unplugs it from the old VMM and plugs it into the new one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdsSwap {
    /// The VF.
    pub bdf: u32,
    /// `VDS_SWAP_*` bits.
    pub flags: u32,
    /// Current holder.
    pub from_vm: u64,
    /// Waiter that gets it.
    pub to_vm: u64,
}
const _: () = assert!(size_of::<VdsSwap>() == 24);

/// Kinds of [`VdsCandidate`].
pub mod vds_cand {
    /// A holder under threshold for the window.
    pub const HOLDER: u32 = 1;
    /// A VM waiting for a VF.
    pub const WAITER: u32 = 2;
}

/// `VDS_IOC_CANDIDATE`: the `index`-th candidate, idle holders first (best to reclaim first),
/// then waiters (longest waiting first); pairing holder `i` with waiter `i` is the policy's
/// proposal. `ENOENT` past the end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdsCandidate {
    /// In: position.
    pub index: u32,
    /// A `vds_cand` value.
    pub kind: u32,
    /// The VF (holders), else 0.
    pub bdf: u32,
    /// Must be 0.
    pub reserved: u32,
    /// The VM.
    pub vm_id: u64,
    /// Window rate (holders), bytes/s.
    pub rate_bps: u64,
    /// Holding (holders) or waiting (waiters) for this long, ms.
    pub age_ms: u64,
}
const _: () = assert!(size_of::<VdsCandidate>() == 40);

/// Kinds of [`VdsEvent`].
pub mod vds_event {
    /// A VF appeared.
    pub const VF_ADDED: u32 = 1;
    /// A VF disappeared (not leased).
    pub const VF_REMOVED: u32 = 2;
    /// A VF was leased to `vm_id`.
    pub const LEASED: u32 = 3;
    /// `vm_id` released its VF (explicitly or because its file closed); it goes back to the host.
    pub const RELEASED: u32 = 4;
    /// A released VF is back on its host driver (`err`: the move's error, 0 on success).
    pub const RETURNED: u32 = 5;
    /// A leased VF disappeared (hot-unplug, SR-IOV disabled): `vm_id` lost it.
    pub const REVOKED: u32 = 6;
    /// `vm_id`'s usage fell under threshold for the window: a reassignment candidate.
    pub const CANDIDATE: u32 = 7;
    /// The VF moved from `other_vm` to `vm_id` (`VDS_IOC_SWAP`).
    pub const SWAPPED: u32 = 8;
    /// Moving a VF for a lease failed and was rolled back (`err`).
    pub const MOVE_FAILED: u32 = 9;
    /// Events were lost: the reader's queue overflowed (`other_vm`: how many).
    pub const LOST: u32 = 10;
    /// `vm_id` is waiting for a VF.
    pub const WAITING: u32 = 11;
    /// `vm_id`'s usage rose above threshold + hysteresis: no longer a candidate.
    pub const BUSY: u32 = 12;
}

/// One event, as `read(2)` returns them (whole records only) on `/dev/vd_sriov`. A record that
/// could not be copied to the reader's buffer (`EFAULT`, or a short count of whole records
/// before it) stays queued and is returned by the next read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdsEvent {
    /// Sequence number (host-wide, from 1).
    pub seq: u64,
    /// A `vds_event` value.
    pub kind: u32,
    /// The VF, or 0.
    pub bdf: u32,
    /// The VM concerned, or 0.
    pub vm_id: u64,
    /// The other VM (`SWAPPED`: the previous holder), or a count (`LOST`).
    pub other_vm: u64,
    /// Monotonic time, ns.
    pub time_ns: u64,
    /// Negative errno for failures, else 0.
    pub err: i32,
    /// Must be 0.
    pub reserved: u32,
}
const _: () = {
    assert!(size_of::<VdsEvent>() == 48);
    assert!(offset_of!(VdsEvent, time_ns) == 32);
    assert!(offset_of!(VdsEvent, err) == 40);
};

/// `_IOWR(0xB7, 0x20, struct vds_pf)`.
pub const VDS_IOC_PF: u32 = iowr::<VdsPf>(0x20);
/// `_IOWR(0xB7, 0x21, struct vds_vf)`.
pub const VDS_IOC_VF: u32 = iowr::<VdsVf>(0x21);
/// `_IOWR(0xB7, 0x22, struct vds_lease)`: CAP_NET_ADMIN. If the result cannot be copied back
/// (`EFAULT`) the lease is undone (a `LEASED` then a `RELEASED` event).
pub const VDS_IOC_LEASE: u32 = iowr::<VdsLease>(0x22);
/// `_IOW(0xB7, 0x23, struct vds_lease)`: CAP_NET_ADMIN; only the file that took the lease, for
/// the VM it was taken for. `flags` must be 0 and `vm_id` nonzero (`EINVAL`); `ENODEV` no such
/// VF; `ENOENT` the VF is not leased, or this file holds it for another VM; `EPERM` another file
/// holds it; `EBUSY` it is being moved.
pub const VDS_IOC_RELEASE: u32 = iow::<VdsLease>(0x23);
/// `_IOW(0xB7, 0x24, struct vds_sample)`: only the file that holds the lease.
pub const VDS_IOC_SAMPLE: u32 = iow::<VdsSample>(0x24);
/// `_IOR(0xB7, 0x25, struct vds_policy)`.
pub const VDS_IOC_POLICY_GET: u32 = ior::<VdsPolicy>(0x25);
/// `_IOW(0xB7, 0x26, struct vds_policy)`: CAP_NET_ADMIN.
pub const VDS_IOC_POLICY_SET: u32 = iow::<VdsPolicy>(0x26);
/// `_IOW(0xB7, 0x27, struct vds_wait)`: CAP_NET_ADMIN.
pub const VDS_IOC_WAIT: u32 = iow::<VdsWait>(0x27);
/// `_IOW(0xB7, 0x28, struct vds_swap)`: CAP_NET_ADMIN.
pub const VDS_IOC_SWAP: u32 = iow::<VdsSwap>(0x28);
/// `_IOWR(0xB7, 0x29, struct vds_candidate)`.
pub const VDS_IOC_CANDIDATE: u32 = iowr::<VdsCandidate>(0x29);

/// `VDS_IOC_RATE_SET` (in) / `VDS_IOC_RATE_GET` (in: `bdf`; out: the limits): a VF's transmit
/// rate limits, kept by its PF's driver (`ndo_set_vf_rate` / `ndo_get_vf_config` under RTNL, what
/// `ip link set <pf> vf N max_tx_rate X min_tx_rate Y` does). `EOPNOTSUPP`: the PF driver has no
/// per-VF rates (or the PF has no netdev); the driver's own errors otherwise (igb: `EINVAL` for
/// a nonzero minimum, a maximum over the link speed, or the PF link down).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdsRate {
    /// The VF.
    pub bdf: u32,
    /// Must be 0.
    pub flags: u32,
    /// Maximum transmit rate, Mbit/s (0: unlimited).
    pub max_tx_mbps: u32,
    /// Guaranteed minimum transmit rate, Mbit/s (0: none).
    pub min_tx_mbps: u32,
}
const _: () = {
    assert!(size_of::<VdsRate>() == 16);
    assert!(offset_of!(VdsRate, max_tx_mbps) == 8);
    assert!(offset_of!(VdsRate, min_tx_mbps) == 12);
};
/// `_IOW(0xB7, 0x2a, struct vds_rate)`: CAP_NET_ADMIN.
pub const VDS_IOC_RATE_SET: u32 = iow::<VdsRate>(0x2a);
/// `_IOWR(0xB7, 0x2b, struct vds_rate)`.
pub const VDS_IOC_RATE_GET: u32 = iowr::<VdsRate>(0x2b);

// ---------------------------------------------------------------------------------------------
// vd_input_irq: `/dev/vd_input`. ioctl numbers 0x30..=0x3f.
//
// Roles: a VMM opens the device and makes its file a VM sink (`VDI_IOC_VM_CREATE`): events for
// that VM go into a vd ring (mmap offset 0; only the response half is used: the module is the
// producer, one [`VdiEvent`] per response payload, the response id a sequence number) and the
// call eventfd (register it with `KVM_IRQFD`) is signalled when the guest asked (rsp_event). The
// VMM's vCPU threads register themselves (`VDI_IOC_VCPU_REGISTER`, made from the vCPU thread);
// while none of them is on a CPU, or the VMM said the VM is paused, events wait in a bounded
// per-VM queue and are flushed, in order, the moment a vCPU thread is scheduled in again. An
// administrator (CAP_SYS_ADMIN) routes input devices (`VDI_IOC_ROUTE`) and moves the focus
// between VMs (`VDI_IOC_FOCUS`); a frame (events up to SYN_REPORT) never splits between VMs.

/// Feature bit: routing and focus.
pub const VDI_FEAT_ROUTE: u64 = 1 << 0;
/// Feature bit: delivery that follows vCPU scheduling (preempt notifiers).
pub const VDI_FEAT_SCHED: u64 = 1 << 1;
/// Feature bit: grabbing routed devices away from the host.
pub const VDI_FEAT_GRAB: u64 = 1 << 2;

/// Ring slot size of the event ring: a response header and one [`VdiEvent`].
pub const VDI_ENTRY_SIZE: u32 = 32;
/// Per-VM queue capacity (events held while the VM is not running).
pub const VDI_QUEUE_EVENTS: u32 = 1024;

/// One input event as the guest receives it (a response payload in the event ring).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdiEvent {
    /// When the host saw it, `CLOCK_MONOTONIC` ns.
    pub time_ns: u64,
    /// evdev type (`EV_KEY`, `EV_REL`, ...).
    pub ty: u16,
    /// evdev code.
    pub code: u16,
    /// evdev value.
    pub value: i32,
}
const _: () = {
    assert!(size_of::<VdiEvent>() == 16);
    assert!(offset_of!(VdiEvent, ty) == 8);
    assert!(offset_of!(VdiEvent, value) == 12);
};

/// `VDI_IOC_VM_CREATE`: make this file the sink of VM `vm_id`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdiVmCreate {
    /// The VM's id, unique on the host (the daemon's name for it); not 0.
    pub vm_id: u32,
    /// Event ring entries: a power of two, 8..=4096.
    pub entries: u32,
    /// Eventfd to signal (registered with `KVM_IRQFD`), or -1 for none yet.
    pub call_fd: i32,
    /// Must be 0.
    pub flags: u32,
    /// Out: bytes to `mmap` at offset 0 (the event ring).
    pub mmap_size: u64,
}
const _: () = assert!(size_of::<VdiVmCreate>() == 24);

/// [`VdiRoute::kind`]: how `pattern` selects input devices.
pub mod vdi_match {
    /// `pattern` is a substring of the device name.
    pub const NAME: u32 = 1;
    /// `pattern` equals the device's phys path.
    pub const PHYS: u32 = 2;
    /// Every keyboard (EV_KEY with KEY_A..KEY_Z).
    pub const KEYBOARD: u32 = 3;
    /// Every relative pointer (EV_REL with REL_X and REL_Y).
    pub const MOUSE: u32 = 4;
    /// Every absolute pointer (EV_ABS with ABS_X and ABS_Y).
    pub const TABLET: u32 = 5;
}

/// `VDI_IOC_ROUTE` / `VDI_IOC_UNROUTE`: input devices that follow the focus.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VdiRoute {
    /// A `vdi_match` value.
    pub kind: u32,
    /// 1: grab matching devices (the host's other handlers stop seeing them).
    pub grab: u32,
    /// NUL-terminated pattern for `NAME` and `PHYS`.
    pub pattern: [u8; 64],
}
impl Default for VdiRoute {
    fn default() -> Self {
        Self {
            kind: 0,
            grab: 0,
            pattern: [0; 64],
        }
    }
}
const _: () = assert!(size_of::<VdiRoute>() == 72);

/// Buckets of [`VdiStats::delay_hist`]: delivery delay below 10 us, 100 us, 1 ms, 10 ms,
/// 100 ms, 1 s, and above.
pub const VDI_DELAY_BUCKETS: usize = 7;

/// `VDI_IOC_STATS`: counters of VM `vm_id` (0: this file's VM).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdiStats {
    /// In: VM id, or 0 for this file's own VM.
    pub vm_id: u32,
    /// Out: 1 when a vCPU thread of the VM is on a CPU and the VMM did not pause it.
    pub running: u32,
    /// Out: vCPU threads registered.
    pub vcpus: u32,
    /// Out: events in the queue now.
    pub queue_depth: u32,
    /// Events delivered at once (the VM was running).
    pub delivered_immediately: u64,
    /// Events that waited in the queue.
    pub queued: u64,
    /// Events flushed from the queue into the ring.
    pub flushed: u64,
    /// Motion events merged into others while queued.
    pub coalesced: u64,
    /// Events lost to a SYN_DROPPED (queue and ring both full).
    pub dropped: u64,
    /// Deepest the queue has been.
    pub max_depth: u64,
    /// Interrupts sent (call eventfd signals).
    pub irqs: u64,
    /// Host-event-to-ring delay histogram (see [`VDI_DELAY_BUCKETS`]).
    pub delay_hist: [u64; VDI_DELAY_BUCKETS],
    /// Pad to 8 bytes.
    pub _pad: u64,
}
const _: () = {
    assert!(size_of::<VdiStats>() == 136);
    assert!(offset_of!(VdiStats, delivered_immediately) == 16);
    assert!(offset_of!(VdiStats, delay_hist) == 72);
};

/// `VDI_IOC_LIST_DEVICES`: the `index`-th input device the module sees (`ENOENT` past the end).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VdiDevice {
    /// In: position.
    pub index: u32,
    /// Out: 1 if a route matches it.
    pub routed: u32,
    /// Out: 1 if grabbed.
    pub grabbed: u32,
    /// Out: VM its current frame goes to (0: none).
    pub vm_id: u32,
    /// Out: events seen from it.
    pub events: u64,
    /// Out: name, NUL-padded.
    pub name: [u8; 64],
    /// Out: phys path, NUL-padded.
    pub phys: [u8; 64],
}
impl Default for VdiDevice {
    fn default() -> Self {
        Self {
            index: 0,
            routed: 0,
            grabbed: 0,
            vm_id: 0,
            events: 0,
            name: [0; 64],
            phys: [0; 64],
        }
    }
}
const _: () = assert!(size_of::<VdiDevice>() == 152);

/// `_IOWR(0xB7, 0x30, struct vdi_vm_create)`.
pub const VDI_IOC_VM_CREATE: u32 = iowr::<VdiVmCreate>(0x30);
/// `_IO(0xB7, 0x31)`: the calling thread is a vCPU thread of this file's VM.
pub const VDI_IOC_VCPU_REGISTER: u32 = io(0x31);
/// `_IO(0xB7, 0x32)`: the calling thread is no longer one.
pub const VDI_IOC_VCPU_UNREGISTER: u32 = io(0x32);
/// `_IOW(0xB7, 0x33, u32)`: the VMM paused (0) or resumed (1) the VM.
pub const VDI_IOC_SET_RUNNING: u32 = iow::<u32>(0x33);
/// `_IOW(0xB7, 0x34, struct vdi_route)`.
pub const VDI_IOC_ROUTE: u32 = iow::<VdiRoute>(0x34);
/// `_IOW(0xB7, 0x35, struct vdi_route)`.
pub const VDI_IOC_UNROUTE: u32 = iow::<VdiRoute>(0x35);
/// `_IOW(0xB7, 0x36, u32)`: routed devices deliver to VM `vm_id` from the next frame on.
pub const VDI_IOC_FOCUS: u32 = iow::<u32>(0x36);
/// `_IOWR(0xB7, 0x37, struct vdi_stats)`.
pub const VDI_IOC_STATS: u32 = iowr::<VdiStats>(0x37);
/// `_IOWR(0xB7, 0x38, struct vdi_device)`.
pub const VDI_IOC_LIST_DEVICES: u32 = iowr::<VdiDevice>(0x38);
/// `_IOW(0xB7, 0x39, i32)`: (re)bind the call eventfd (-1 unbinds).
pub const VDI_IOC_BIND: u32 = iow::<i32>(0x39);
/// `_IOW(0xB7, 0x3a, i32)`: bind the guest's doorbell eventfd (registered with
/// `KVM_IOEVENTFD`; -1 unbinds). The module waits on it in the kernel and moves queued events
/// into the ring when it fires. It asks for a kick only while events wait for ring room: through
/// the ring's `req_event`, EVENT_IDX style on `rsp_cons` (after consuming from `old` to `new`,
/// the guest kicks iff `need_event(req_event, new, old)`).
pub const VDI_IOC_BIND_KICK: u32 = iow::<i32>(0x3a);
