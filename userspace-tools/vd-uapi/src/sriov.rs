// SPDX-License-Identifier: GPL-2.0
//! vd_sriov_mgr: `/dev/vd_sriov`. ioctl numbers 0x20..=0x2f.
//!
//! The shared pieces (ioctl encoding, `VD_IOC_VERSION`) are `abi.rs`.

use super::abi::*;
use core::mem::{offset_of, size_of};

/// Feature bit: VF leases with the move to vfio-pci done by the kernel.
pub const VDS_FEAT_LEASE: u64 = 1 << 0;
/// Feature bit: VFs/PFs appearing and disappearing are noticed (PCI bus notifier).
pub const VDS_FEAT_HOTPLUG: u64 = 1 << 1;
/// Feature bit: usage accounting (netdev counters, pushed samples and, for passed-through VFs of
/// igb 82576/i350 PFs, the PF's mirror of the VF's statistics; sliding window).
pub const VDS_FEAT_USAGE: u64 = 1 << 2;
/// Feature bit: reassignment policy (candidates, waiters, atomic swap).
pub const VDS_FEAT_POLICY: u64 = 1 << 3;
/// Feature bit: events readable and pollable on every open file.
pub const VDS_FEAT_EVENTS: u64 = 1 << 4;
/// Feature bit: per-VF transmit rate limits through the PF driver (`VDS_IOC_RATE_*`).
pub const VDS_FEAT_RATE: u64 = 1 << 5;
/// Feature bit: passed-through VFs of igb 82576/i350 PFs are counted from the PF's mirror of
/// their statistics when their holder pushes nothing (`vds_vf::PF_MIRROR`).
pub const VDS_FEAT_PF_MIRROR: u64 = 1 << 6;

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
    /// Counters come from the PF's mirror of the VF's statistics (a passed-through VF of an igb
    /// 82576/i350 PF whose holder pushes nothing): totals since the lease began.
    pub const PF_MIRROR: u32 = 1 << 6;
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
    /// Bytes received (netdev counters while on the host, else pushed samples, else the PF's
    /// mirror since the lease began: see `vds_vf::PF_MIRROR`).
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
