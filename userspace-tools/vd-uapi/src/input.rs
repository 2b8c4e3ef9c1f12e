// SPDX-License-Identifier: GPL-2.0
//! vd_input_irq: `/dev/vd_input`. ioctl numbers 0x30..=0x3f.
//!
//! Roles: a VMM opens the device and makes its file a VM sink (`VDI_IOC_VM_CREATE`): events for
//! that VM go into a vd ring (mmap offset 0; only the response half is used: the module is the
//! producer, one [`VdiEvent`] per response payload, the response id a sequence number) and the
//! call eventfd (register it with `KVM_IRQFD`) is signalled when the guest asked (rsp_event). The
//! VMM's vCPU threads register themselves (`VDI_IOC_VCPU_REGISTER`, made from the vCPU thread);
//! while none of them is on a CPU, or the VMM said the VM is paused, events wait in a bounded
//! per-VM queue and are flushed, in order, the moment a vCPU thread is scheduled in again. An
//! administrator (CAP_SYS_ADMIN of the file's opener) routes input devices (`VDI_IOC_ROUTE`)
//! and moves the focus between VMs (`VDI_IOC_FOCUS`); a frame (events up to SYN_REPORT) never
//! splits between VMs.
//!
//! The shared pieces (ioctl encoding, `VD_IOC_VERSION`) are `abi.rs`.

use super::abi::*;
use core::mem::{offset_of, size_of};

/// Feature bit: routing and focus.
pub const VDI_FEAT_ROUTE: u64 = 1 << 0;
/// Feature bit: delivery that follows vCPU scheduling (preempt notifiers).
pub const VDI_FEAT_SCHED: u64 = 1 << 1;
/// Feature bit: grabbing routed devices away from the host.
pub const VDI_FEAT_GRAB: u64 = 1 << 2;
/// Feature bit: following threads the caller names by TID (`VDI_IOC_VCPU_ATTACH`).
pub const VDI_FEAT_ATTACH: u64 = 1 << 3;
/// Feature bit: event rings in shmem files for `ivshmem-doorbell` (`VDI_IOC_VM_CREATE_SHM`).
pub const VDI_FEAT_SHM: u64 = 1 << 4;

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

/// Argument of `VDI_IOC_VM_CREATE_SHM`: a VM sink whose event ring lives in a new shmem file
/// the caller gets as an fd, for QEMU's `ivshmem-doorbell` (the guest's `vd_front` reads it).
/// The file holds the ring at offset 0 (the `vd-ring` layout; the geometry line records
/// `dev_kind::INPUT`, the doorbell value and an empty data area); its size is the next power of
/// two that holds the ring. The ring is also mappable through the device at offset 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdiVmCreateShm {
    /// The VM's id, unique on the host; not 0.
    pub vm_id: u32,
    /// Event ring entries: a power of two, 8..=4096.
    pub entries: u32,
    /// Eventfd to signal (the guest's interrupt), or -1 for none yet.
    pub call_fd: i32,
    /// The value the guest writes to kick the host (ivshmem: `(peer << 16) | vector`), written
    /// to the geometry line for the guest driver; the kernel does not interpret it.
    pub doorbell: u32,
    /// Must be 0.
    pub flags: u32,
    /// Out: the shmem file, open read-write, close-on-exec.
    pub fd: i32,
    /// Out: the file's size (a power of two).
    pub size: u64,
}
const _: () = assert!(size_of::<VdiVmCreateShm>() == 32);
const _: () = assert!(offset_of!(VdiVmCreateShm, fd) == 20);
const _: () = assert!(offset_of!(VdiVmCreateShm, size) == 24);

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
/// `_IOW(0xB7, 0x3b, struct vdi_vcpu_attach)`: follow thread `tid` (a vCPU thread of a VMM that
/// does not register its threads itself, e.g. stock QEMU's `CPU n/KVM`) as this file's VM's
/// vCPU. The caller must be allowed to ptrace it (`PTRACE_MODE_ATTACH_REALCREDS`). The kernel
/// asks the thread to hook itself (a task work with `TWA_SIGNAL`, which makes it leave `KVM_RUN`
/// once): it is followed from its next return to user mode, and counted in `vdi_stats.vcpus`
/// from then on. Errors: `ENOENT` no VM on this file; `EINVAL` unknown flags or a kernel thread;
/// `ESRCH` no such thread in the caller's PID namespace, or it is exiting; `EPERM` the caller may
/// not ptrace it; `EEXIST` already followed (or asked) by this VM; `ENOSPC` 64 threads followed or
/// asked.
pub const VDI_IOC_VCPU_ATTACH: u32 = iow::<VdiVcpuAttach>(0x3b);
/// `_IOW(0xB7, 0x3c, struct vdi_vcpu_attach)`: stop following thread `tid` (attached or
/// registered). Errors: `ENOENT` no VM, or the thread is not followed; `EINVAL` unknown flags.
pub const VDI_IOC_VCPU_DETACH: u32 = iow::<VdiVcpuAttach>(0x3c);
/// `_IOWR(0xB7, 0x3d, struct vdi_vm_create_shm)`: [`VdiVmCreateShm`]. Errors as
/// `VDI_IOC_VM_CREATE`, and `EMFILE` when no fd is free.
pub const VDI_IOC_VM_CREATE_SHM: u32 = iowr::<VdiVmCreateShm>(0x3d);

/// Argument of `VDI_IOC_VCPU_ATTACH` and `VDI_IOC_VCPU_DETACH`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdiVcpuAttach {
    /// Thread id, in the caller's PID namespace.
    pub tid: u32,
    /// Must be 0.
    pub flags: u32,
}
const _: () = assert!(size_of::<VdiVcpuAttach>() == 8);
const _: () = assert!(offset_of!(VdiVcpuAttach, flags) == 4);
