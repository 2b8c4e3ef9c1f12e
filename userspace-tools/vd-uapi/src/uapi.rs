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
    (dir << IOC_DIRSHIFT) | (VD_IOC_MAGIC << IOC_TYPESHIFT) | (nr << IOC_NRSHIFT) | ((size as u32) << IOC_SIZESHIFT)
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
    /// Block: `fd` is a host file or block device opened read-write; ops `BLK_*`.
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

/// `_IOWR(0xB7, 0x10, struct vde_create)`.
pub const VDE_IOC_CREATE: u32 = iowr::<VdeCreate>(0x10);
/// `_IOW(0xB7, 0x11, u32)`: destroy channel.
pub const VDE_IOC_DESTROY: u32 = iow::<u32>(0x11);
/// `_IOW(0xB7, 0x12, struct vde_bind)`.
pub const VDE_IOC_BIND: u32 = iow::<VdeBind>(0x12);
/// `_IOW(0xB7, 0x13, struct vde_attach)`.
pub const VDE_IOC_ATTACH: u32 = iow::<VdeAttach>(0x13);
/// `_IOWR(0xB7, 0x14, struct vde_stats)`.
pub const VDE_IOC_STATS: u32 = iowr::<VdeStats>(0x14);
/// `_IOW(0xB7, 0x15, u32)`: userspace backend published responses; signal the call eventfd
/// if the guest asked for an interrupt.
pub const VDE_IOC_NOTIFY: u32 = iow::<u32>(0x15);
/// `_IOWR(0xB7, 0x16, struct vde_state)`.
pub const VDE_IOC_SAVE: u32 = iowr::<VdeState>(0x16);
/// `_IOW(0xB7, 0x17, struct vde_state)`.
pub const VDE_IOC_RESTORE: u32 = iow::<VdeState>(0x17);
/// `_IOW(0xB7, 0x18, u32)`: run the backend now, as if kicked (polling VMMs, tests).
pub const VDE_IOC_KICK: u32 = iow::<u32>(0x18);

/// `VDE_IOC_LIST`: the `index`-th channel of all domains on the host (`ENOENT` past the end).
/// For the daemon and `vdctl evtchn list`: each open file only sees its own channels otherwise.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdeListEntry {
    /// In: position in the host-wide list.
    pub index: u32,
    /// Out: thread-group id of the process that owns the domain (the VMM).
    pub domain_pid: u32,
    /// Out: the channel's counters; `stats.id` is the channel id in its domain.
    pub stats: VdeStats,
}
const _: () = assert!(size_of::<VdeListEntry>() == 104);
/// `_IOWR(0xB7, 0x19, struct vde_list_entry)`.
pub const VDE_IOC_LIST: u32 = iowr::<VdeListEntry>(0x19);

// ---------------------------------------------------------------------------------------------
// vd_sriov_mgr: `/dev/vd_sriov`. ioctl numbers 0x20..=0x2f.

// ---------------------------------------------------------------------------------------------
// vd_input_irq: `/dev/vd_input`. ioctl numbers 0x30..=0x3f.
