//! `/dev/vd_input`: a VM sink (one open file per VM, made by the VMM) or an administrator's
//! handle (routing, focus, device list, statistics), and the reader of a VM's event ring.
//!
//! The event ring is a vd ring of which only the response half is used: the module produces,
//! one [`VdiEvent`] per response payload, the response id a sequence number. [`EventReader`]
//! consumes it with the ring's memory-ordering contract (acquire `rsp_prod`, release
//! `rsp_cons`, `rsp_event` + full fence to re-arm interrupts).

use crate::evtchn::RingMap;
use crate::ioctl_ptr;
use nix::errno::Errno;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use vd_ring::{
    Geometry, RingError, RingMem, OFF_ENTRIES, OFF_ENTRY_SIZE, OFF_MAGIC, OFF_REQ_ARRAY,
    OFF_RSP_ARRAY, OFF_RSP_CONS, OFF_RSP_EVENT, OFF_RSP_PROD, OFF_STATUS, OFF_VERSION, RING_MAGIC,
    RING_VERSION, RSP_HDR, STATUS_FAILED,
};
use vd_uapi::*;

/// Default device node.
pub const DEVICE: &str = "/dev/vd_input";

/// evdev `EV_SYN`.
pub const EV_SYN: u16 = 0x00;
/// evdev `EV_KEY`.
pub const EV_KEY: u16 = 0x01;
/// evdev `EV_REL`.
pub const EV_REL: u16 = 0x02;
/// evdev `EV_ABS`.
pub const EV_ABS: u16 = 0x03;
/// evdev `EV_MSC`.
pub const EV_MSC: u16 = 0x04;
/// evdev `SYN_REPORT`.
pub const SYN_REPORT: u16 = 0;
/// evdev `SYN_DROPPED`.
pub const SYN_DROPPED: u16 = 3;

device_handle!(
    /// One open `/dev/vd_input`. A VM sink and its queue die when it is closed.
    Input,
    DEVICE
);

impl Input {
    /// `VDI_IOC_VM_CREATE`: this file becomes the sink of VM `vm_id` with an event ring of
    /// `entries` slots; `call` is signalled when the consumer asked for an interrupt.
    pub fn vm_create(
        &self,
        vm_id: u32,
        entries: u32,
        call: Option<RawFd>,
    ) -> Result<VdiVmCreate, Errno> {
        let mut c = VdiVmCreate {
            vm_id,
            entries,
            call_fd: call.unwrap_or(-1),
            flags: 0,
            mmap_size: 0,
        };
        // SAFETY: `_IOWR` of one `VdiVmCreate`.
        unsafe { ioctl_ptr(&self.file, VDI_IOC_VM_CREATE, &mut c) }?;
        Ok(c)
    }
    /// `VDI_IOC_VM_CREATE_SHM`: this file becomes VM `vm_id` with its event ring in a new shmem
    /// file (returned, with its size) for QEMU's `ivshmem-doorbell`.
    pub fn vm_create_shm(
        &self,
        vm_id: u32,
        entries: u32,
        call: Option<RawFd>,
        doorbell: u32,
    ) -> Result<(std::os::fd::OwnedFd, u64), Errno> {
        use std::os::fd::FromRawFd;
        let mut c = VdiVmCreateShm {
            vm_id,
            entries,
            call_fd: call.unwrap_or(-1),
            doorbell,
            ..Default::default()
        };
        // SAFETY: `_IOWR` of one `VdiVmCreateShm`.
        unsafe { ioctl_ptr(&self.file, VDI_IOC_VM_CREATE_SHM, &mut c) }?;
        // SAFETY: on success the kernel installed `fd` for us; nothing else owns it.
        Ok((unsafe { std::os::fd::OwnedFd::from_raw_fd(c.fd) }, c.size))
    }
    /// `VDI_IOC_VM_CREATE` with the argument at `arg` as is (for tests of bad pointers).
    ///
    /// # Safety
    ///
    /// `arg` is readable for a `VdiVmCreate`; if it is also writable, the kernel writes the
    /// result there, so it must not alias memory Rust holds a reference to.
    pub unsafe fn vm_create_at(&self, arg: *mut VdiVmCreate) -> Result<(), Errno> {
        // SAFETY: per the contract; `_IOWR` of one `VdiVmCreate`.
        let r = unsafe { nix::libc::ioctl(self.file.as_raw_fd(), VDI_IOC_VM_CREATE as _, arg) };
        Errno::result(r).map(drop)
    }
    /// `VDI_IOC_VCPU_REGISTER`: the calling thread is a vCPU thread of this file's VM.
    pub fn vcpu_register(&self) -> Result<(), Errno> {
        self.ioctl_none(VDI_IOC_VCPU_REGISTER)
    }
    /// `VDI_IOC_VCPU_UNREGISTER`: the calling thread is no longer one.
    pub fn vcpu_unregister(&self) -> Result<(), Errno> {
        self.ioctl_none(VDI_IOC_VCPU_UNREGISTER)
    }
    /// `VDI_IOC_VCPU_ATTACH`: follow thread `tid` as a vCPU of this file's VM (counted in
    /// `stats().vcpus` once it has hooked itself, at its next return to user mode).
    pub fn vcpu_attach(&self, tid: u32) -> Result<(), Errno> {
        let mut a = VdiVcpuAttach { tid, flags: 0 };
        // SAFETY: `_IOW` of one `VdiVcpuAttach`.
        unsafe { ioctl_ptr(&self.file, VDI_IOC_VCPU_ATTACH, &mut a) }.map(drop)
    }
    /// `VDI_IOC_VCPU_DETACH`: stop following thread `tid`.
    pub fn vcpu_detach(&self, tid: u32) -> Result<(), Errno> {
        let mut a = VdiVcpuAttach { tid, flags: 0 };
        // SAFETY: `_IOW` of one `VdiVcpuAttach`.
        unsafe { ioctl_ptr(&self.file, VDI_IOC_VCPU_DETACH, &mut a) }.map(drop)
    }
    /// `VDI_IOC_SET_RUNNING`: the VMM resumed (`true`) or paused (`false`) the VM.
    pub fn set_running(&self, running: bool) -> Result<(), Errno> {
        let mut v = u32::from(running);
        // SAFETY: `_IOW` of one `u32`.
        unsafe { ioctl_ptr(&self.file, VDI_IOC_SET_RUNNING, &mut v) }.map(drop)
    }
    /// `VDI_IOC_BIND`: (re)binds the call eventfd (`None` unbinds).
    pub fn bind(&self, call: Option<RawFd>) -> Result<(), Errno> {
        let mut fd: i32 = call.unwrap_or(-1);
        // SAFETY: `_IOW` of one `i32`.
        unsafe { ioctl_ptr(&self.file, VDI_IOC_BIND, &mut fd) }.map(drop)
    }
    /// `VDI_IOC_BIND_KICK`: the guest's doorbell eventfd (`None` unbinds).
    pub fn bind_kick(&self, kick: Option<RawFd>) -> Result<(), Errno> {
        let mut fd: i32 = kick.unwrap_or(-1);
        // SAFETY: `_IOW` of one `i32`.
        unsafe { ioctl_ptr(&self.file, VDI_IOC_BIND_KICK, &mut fd) }.map(drop)
    }
    /// `VDI_IOC_ROUTE` (CAP_SYS_ADMIN).
    pub fn route(&self, r: &VdiRoute) -> Result<(), Errno> {
        let mut r = *r;
        // SAFETY: `_IOW` of one `VdiRoute`.
        unsafe { ioctl_ptr(&self.file, VDI_IOC_ROUTE, &mut r) }.map(drop)
    }
    /// `VDI_IOC_UNROUTE` (CAP_SYS_ADMIN).
    pub fn unroute(&self, r: &VdiRoute) -> Result<(), Errno> {
        let mut r = *r;
        // SAFETY: `_IOW` of one `VdiRoute`.
        unsafe { ioctl_ptr(&self.file, VDI_IOC_UNROUTE, &mut r) }.map(drop)
    }
    /// `VDI_IOC_FOCUS` (CAP_SYS_ADMIN): routed devices deliver to `vm_id` from the next frame on.
    pub fn focus(&self, vm_id: u32) -> Result<(), Errno> {
        let mut v = vm_id;
        // SAFETY: `_IOW` of one `u32`.
        unsafe { ioctl_ptr(&self.file, VDI_IOC_FOCUS, &mut v) }.map(drop)
    }
    /// `VDI_IOC_STATS` of VM `vm_id` (0: this file's own VM).
    pub fn stats(&self, vm_id: u32) -> Result<VdiStats, Errno> {
        let mut s = VdiStats {
            vm_id,
            ..Default::default()
        };
        // SAFETY: `_IOWR` of one `VdiStats`.
        unsafe { ioctl_ptr(&self.file, VDI_IOC_STATS, &mut s) }?;
        Ok(s)
    }
    /// `VDI_IOC_LIST_DEVICES`: the `index`-th input device (`ENOENT` past the end).
    pub fn device(&self, index: u32) -> Result<VdiDevice, Errno> {
        let mut d = VdiDevice {
            index,
            ..Default::default()
        };
        // SAFETY: `_IOWR` of one `VdiDevice`.
        unsafe { ioctl_ptr(&self.file, VDI_IOC_LIST_DEVICES, &mut d) }?;
        Ok(d)
    }
    /// Every input device the module sees.
    pub fn devices(&self) -> Result<Vec<VdiDevice>, Errno> {
        let mut v = vec![];
        for i in 0.. {
            match self.device(i) {
                Ok(d) => v.push(d),
                Err(Errno::ENOENT) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(v)
    }
    /// Maps the event ring of a VM sink (offset 0, `mmap_size` bytes), shared and read-write.
    pub fn map_ring(&self, c: &VdiVmCreate) -> Result<RingMap, Errno> {
        RingMap::new(self.file.as_fd(), 0, c.mmap_size as usize)
    }

    fn ioctl_none(&self, cmd: u32) -> Result<(), Errno> {
        // SAFETY: `cmd` is an `_IO` ioctl: no argument is read or written.
        let r = unsafe { nix::libc::ioctl(self.file.as_raw_fd(), cmd as _, 0usize) };
        Errno::result(r).map(drop)
    }
}

/// A [`VdiRoute`] of `kind` (a `vdi_match` value). `pattern` is needed for `NAME` and `PHYS`
/// (at most 63 bytes, no NUL) and must be empty otherwise.
pub fn route_spec(kind: u32, grab: bool, pattern: &str) -> Result<VdiRoute, Errno> {
    let needs_pattern = matches!(kind, vdi_match::NAME | vdi_match::PHYS);
    let known = needs_pattern
        || matches!(
            kind,
            vdi_match::KEYBOARD | vdi_match::MOUSE | vdi_match::TABLET
        );
    let mut r = VdiRoute {
        kind,
        grab: u32::from(grab),
        ..Default::default()
    };
    if !known
        || needs_pattern == pattern.is_empty()
        || pattern.len() >= r.pattern.len()
        || pattern.contains('\0')
    {
        return Err(Errno::EINVAL);
    }
    r.pattern[..pattern.len()].copy_from_slice(pattern.as_bytes());
    Ok(r)
}

/// Text of a NUL-padded fixed field.
pub fn fixed_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Decodes one response payload of the event ring (little-endian [`VdiEvent`]).
pub fn decode_event(p: &[u8; 16]) -> VdiEvent {
    VdiEvent {
        time_ns: u64::from_le_bytes([p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]]),
        ty: u16::from_le_bytes([p[8], p[9]]),
        code: u16::from_le_bytes([p[10], p[11]]),
        value: i32::from_le_bytes([p[12], p[13], p[14], p[15]]),
    }
}

/// Encodes a [`VdiEvent`] as a response payload (tests and tools that play the producer).
pub fn encode_event(e: &VdiEvent) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&e.time_ns.to_le_bytes());
    p[8..10].copy_from_slice(&e.ty.to_le_bytes());
    p[10..12].copy_from_slice(&e.code.to_le_bytes());
    p[12..16].copy_from_slice(&e.value.to_le_bytes());
    p
}

/// One event taken out of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingEvent {
    /// The response id: the module's sequence number.
    pub seq: u64,
    /// The event.
    pub ev: VdiEvent,
}

/// Consumer of a VM's event ring (the guest side of the response half). Validates everything
/// it reads: the module is trusted, but the reader is also what fuzzers and tests point at
/// arbitrary memory.
///
/// `vd_ring::Frontend` cannot be used here: its `responses()` only accepts responses to
/// requests it published itself, and nobody publishes requests on this ring.
#[derive(Debug)]
pub struct EventReader {
    geo: Geometry,
    cons: u32,
}

impl EventReader {
    /// Attaches to an event ring the module initialised: magic, version, geometry and a slot
    /// large enough for a [`VdiEvent`].
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
            || (geo.entry_size() as usize) < RSP_HDR + size_of::<VdiEvent>()
        {
            return Err(RingError::BadHeader);
        }
        Ok(Self {
            geo,
            cons: mem.load_u32(OFF_RSP_CONS),
        })
    }
    /// The ring's geometry.
    pub const fn geometry(&self) -> Geometry {
        self.geo
    }
    /// Events consumed so far (the free-running consumer index).
    pub const fn consumed(&self) -> u32 {
        self.cons
    }
    /// Having consumed from `old` to now, whether to ring the doorbell: the module asked for a
    /// kick (it has events waiting for room) at an index this consumption passed.
    pub fn kick_needed<M: RingMem + ?Sized>(&self, mem: &M, old: u32) -> bool {
        // `rsp_cons` was stored before; the module stores `req_event` then re-reads `rsp_cons`.
        mem.fence();
        vd_ring::need_event(mem.load_u32(vd_ring::OFF_REQ_EVENT), self.cons, old)
    }
    /// Whether the module marked the ring failed.
    pub fn failed<M: RingMem + ?Sized>(&self, mem: &M) -> bool {
        mem.load_acquire_u32(OFF_STATUS) & STATUS_FAILED != 0
    }
    /// Events published and not consumed yet (validated: at most `entries`).
    pub fn available<M: RingMem + ?Sized>(&self, mem: &M) -> Result<u32, RingError> {
        let prod = mem.load_acquire_u32(OFF_RSP_PROD);
        let n = prod.wrapping_sub(self.cons);
        if n > self.geo.entries() {
            return Err(RingError::BadResponseConsumer {
                cons: self.cons,
                prod,
            });
        }
        Ok(n)
    }
    /// Takes the next event out and frees its slot.
    pub fn pop<M: RingMem + ?Sized>(&mut self, mem: &M) -> Result<Option<RingEvent>, RingError> {
        if self.available(mem)? == 0 {
            return Ok(None);
        }
        let ev = self.read_slot(mem)?;
        self.cons = self.cons.wrapping_add(1);
        mem.store_release_u32(OFF_RSP_CONS, self.cons);
        Ok(Some(ev))
    }
    /// Takes every available event out into `out` and frees their slots at once. Returns how
    /// many.
    pub fn drain<M: RingMem + ?Sized>(
        &mut self,
        mem: &M,
        out: &mut Vec<RingEvent>,
    ) -> Result<u32, RingError> {
        let n = self.available(mem)?;
        for _ in 0..n {
            let ev = self.read_slot(mem)?;
            out.push(ev);
            self.cons = self.cons.wrapping_add(1);
        }
        if n > 0 {
            mem.store_release_u32(OFF_RSP_CONS, self.cons);
        }
        Ok(n)
    }
    fn read_slot<M: RingMem + ?Sized>(&self, mem: &M) -> Result<RingEvent, RingError> {
        let slot = self.geo.rsp_slot(self.cons);
        let mut buf = [0u8; RSP_HDR + 16];
        mem.read(slot, &mut buf);
        let seq = u64::from_le_bytes([
            buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7],
        ]);
        let len = u32::from_le_bytes([buf[12], buf[13], buf[14], buf[15]]);
        if len as usize != size_of::<VdiEvent>() {
            return Err(RingError::BadLength { len });
        }
        let mut p = [0u8; 16];
        p.copy_from_slice(&buf[RSP_HDR..]);
        Ok(RingEvent {
            seq,
            ev: decode_event(&p),
        })
    }
    /// Re-arms the interrupt before waiting: asks for one at the next event. Returns `true`
    /// when events arrived meanwhile (do not wait then).
    pub fn enable_irq<M: RingMem + ?Sized>(&mut self, mem: &M) -> bool {
        mem.store_u32(OFF_RSP_EVENT, self.cons);
        mem.fence();
        mem.load_acquire_u32(OFF_RSP_PROD) != self.cons
    }
    /// Turns interrupts off (polling): the event index is parked half a ring behind.
    pub fn disable_irq<M: RingMem + ?Sized>(&mut self, mem: &M) {
        mem.store_u32(OFF_RSP_EVENT, self.cons.wrapping_sub(0x8000_0000));
    }
}

/// Frames of an event stream: runs of events each closed by a `SYN_REPORT`, plus what follows
/// the last one (an open frame, empty when the stream ends on a frame boundary).
pub fn frames(evs: &[VdiEvent]) -> (Vec<&[VdiEvent]>, &[VdiEvent]) {
    let mut out = vec![];
    let mut start = 0;
    for (i, e) in evs.iter().enumerate() {
        if e.ty == EV_SYN && e.code == SYN_REPORT {
            out.push(&evs[start..=i]);
            start = i + 1;
        }
    }
    (out, &evs[start..])
}

/// What a stream of events adds up to: the key events in order, relative motion summed per
/// axis, the newest absolute value per axis, and the framing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// `(code, value)` of every `EV_KEY` event, in order.
    pub keys: Vec<(u16, i32)>,
    /// Sum of `EV_REL` values per code (index = code, up to `REL_MAX` 0x0f).
    pub rel: [i64; 16],
    /// Newest `EV_ABS` value per code (up to `ABS_MAX` 0x3f), `None` if never seen.
    pub abs: Vec<Option<i32>>,
    /// `SYN_REPORT` events.
    pub reports: u64,
    /// `SYN_DROPPED` events.
    pub dropped: u64,
    /// Events in total.
    pub events: u64,
}

impl Summary {
    /// Adds one event.
    pub fn add(&mut self, ty: u16, code: u16, value: i32) {
        if self.abs.is_empty() {
            self.abs = vec![None; 64];
        }
        self.events += 1;
        match ty {
            EV_KEY => self.keys.push((code, value)),
            EV_REL if (code as usize) < self.rel.len() => {
                self.rel[code as usize] += i64::from(value)
            }
            EV_ABS if (code as usize) < 64 => self.abs[code as usize] = Some(value),
            EV_SYN if code == SYN_REPORT => self.reports += 1,
            EV_SYN if code == SYN_DROPPED => self.dropped += 1,
            _ => {}
        }
    }
    /// Summary of a stream.
    pub fn of<'a>(evs: impl IntoIterator<Item = &'a VdiEvent>) -> Self {
        let mut s = Self::default();
        for e in evs {
            s.add(e.ty, e.code, e.value);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::fd::FromRawFd;
    use vd_ring::{init_ring, HostRing, HostRingState};

    /// A ring in a heap buffer.
    struct Buf {
        _v: Vec<u64>,
        mem: vd_ring::mem::RawMem,
    }
    fn ring(entries: u32) -> (Buf, Geometry) {
        let geo = Geometry::new(entries, VDI_ENTRY_SIZE).unwrap();
        let mut v = vec![0u64; geo.total_bytes() / 8];
        // SAFETY: the vector outlives `mem` (both in `Buf`, never reallocated), aligned to 8.
        let mem = unsafe { vd_ring::mem::RawMem::new(v.as_mut_ptr().cast(), geo.total_bytes()) };
        init_ring(&mem, geo, 1);
        (Buf { _v: v, mem }, geo)
    }
    fn ev(ty: u16, code: u16, value: i32) -> VdiEvent {
        VdiEvent {
            time_ns: 7,
            ty,
            code,
            value,
        }
    }

    #[test]
    fn every_ioctl_reports_ebadf_on_a_faulty_fd() {
        // SAFETY: fd -2 is never valid; every ioctl fails with EBADF; forgotten below.
        let d = Input::from_file(unsafe { File::from_raw_fd(-2) });
        assert_eq!(d.version().unwrap_err(), Errno::EBADF);
        assert_eq!(d.vm_create(1, 64, None).unwrap_err(), Errno::EBADF);
        assert_eq!(d.vcpu_register().unwrap_err(), Errno::EBADF);
        assert_eq!(d.vcpu_unregister().unwrap_err(), Errno::EBADF);
        assert_eq!(d.set_running(true).unwrap_err(), Errno::EBADF);
        assert_eq!(d.bind(None).unwrap_err(), Errno::EBADF);
        let r = route_spec(vdi_match::KEYBOARD, false, "").unwrap();
        assert_eq!(d.route(&r).unwrap_err(), Errno::EBADF);
        assert_eq!(d.unroute(&r).unwrap_err(), Errno::EBADF);
        assert_eq!(d.focus(1).unwrap_err(), Errno::EBADF);
        assert_eq!(d.stats(0).unwrap_err(), Errno::EBADF);
        assert_eq!(d.devices().unwrap_err(), Errno::EBADF);
        std::mem::forget(d);
    }

    #[test]
    fn a_non_vd_device_answers_enotty() {
        let d = Input::from_file(File::open("/dev/null").unwrap());
        assert_eq!(d.vm_create(1, 64, None).unwrap_err(), Errno::ENOTTY);
        assert_eq!(d.vcpu_register().unwrap_err(), Errno::ENOTTY);
        assert_eq!(d.devices().unwrap_err(), Errno::ENOTTY);
    }

    #[test]
    fn ioctl_numbers_have_the_documented_sizes() {
        assert_eq!(ioc_size(VDI_IOC_VM_CREATE), 24);
        assert_eq!(ioc_size(VDI_IOC_ROUTE), 72);
        assert_eq!(ioc_size(VDI_IOC_STATS), 136);
        assert_eq!(ioc_size(VDI_IOC_LIST_DEVICES), 152);
        assert_eq!(VDI_IOC_VCPU_REGISTER, 0xB731);
        assert_eq!(VDI_IOC_VCPU_ATTACH, 0x4008_B73B);
        assert_eq!(VDI_IOC_VCPU_DETACH, 0x4008_B73C);
        assert_eq!(VDI_IOC_VM_CREATE_SHM, 0xC020_B73D);
    }

    #[test]
    fn route_specs() {
        let r = route_spec(vdi_match::NAME, true, "vd-itest").unwrap();
        assert_eq!(
            (r.kind, r.grab, fixed_str(&r.pattern).as_str()),
            (vdi_match::NAME, 1, "vd-itest")
        );
        assert_eq!(
            route_spec(vdi_match::NAME, false, ""),
            Err(Errno::EINVAL),
            "NAME needs a pattern"
        );
        assert_eq!(
            route_spec(vdi_match::MOUSE, false, "x"),
            Err(Errno::EINVAL),
            "MOUSE takes none"
        );
        assert_eq!(
            route_spec(vdi_match::PHYS, false, &"p".repeat(64)),
            Err(Errno::EINVAL),
            "too long for the NUL"
        );
        assert!(route_spec(vdi_match::PHYS, false, &"p".repeat(63)).is_ok());
        assert_eq!(
            route_spec(vdi_match::PHYS, false, "a\0b"),
            Err(Errno::EINVAL)
        );
        assert_eq!(route_spec(99, false, ""), Err(Errno::EINVAL));
    }

    #[test]
    fn event_encoding_round_trips() {
        let e = VdiEvent {
            time_ns: 0x0102_0304_0506_0708,
            ty: EV_REL,
            code: 1,
            value: -5,
        };
        let p = encode_event(&e);
        assert_eq!(&p[8..10], &[2, 0]);
        assert_eq!(&p[12..16], &(-5i32).to_le_bytes());
        assert_eq!(decode_event(&p), e);
    }

    #[test]
    fn reader_takes_what_the_backend_produced_in_order_across_wraps() {
        let (b, geo) = ring(8);
        let m = &b.mem;
        let mut be = HostRing::new(geo, HostRingState::default());
        let mut rd = EventReader::attach(m).unwrap();
        assert!(!rd.enable_irq(m));
        let mut seq = 0u64;
        let mut got = vec![];
        for round in 0..10 {
            for i in 0..5 {
                be.push_response(m, seq, 0, &encode_event(&ev(EV_REL, 0, round * 10 + i)))
                    .unwrap();
                seq += 1;
            }
            let (n, notify) = be.publish(m);
            assert_eq!(n, 5);
            assert!(notify, "round {round}: the reader asked for an interrupt");
            if round % 2 == 0 {
                rd.drain(m, &mut got).unwrap();
            } else {
                while let Some(e) = rd.pop(m).unwrap() {
                    got.push(e);
                }
            }
            assert!(!rd.enable_irq(m));
        }
        assert_eq!(got.len(), 50);
        for (i, e) in got.iter().enumerate() {
            assert_eq!(e.seq, i as u64);
            assert_eq!(e.ev.value, (i / 5 * 10 + i % 5) as i32);
        }
    }

    #[test]
    fn a_full_ring_holds_the_producer_back() {
        let (b, geo) = ring(8);
        let m = &b.mem;
        let mut be = HostRing::new(geo, HostRingState::default());
        let mut rd = EventReader::attach(m).unwrap();
        for i in 0..8 {
            be.push_response(m, i, 0, &encode_event(&ev(EV_KEY, 30, 1)))
                .unwrap();
        }
        assert_eq!(
            be.push_response(m, 8, 0, &encode_event(&ev(EV_KEY, 30, 0))),
            Err(RingError::Full)
        );
        be.publish(m);
        assert_eq!(rd.available(m), Ok(8));
        rd.pop(m).unwrap().unwrap();
        be.push_response(m, 8, 0, &encode_event(&ev(EV_KEY, 30, 0)))
            .unwrap();
    }

    #[test]
    fn reader_refuses_garbage() {
        let (b, geo) = ring(8);
        let m = &b.mem;
        let mut rd = EventReader::attach(m).unwrap();
        m.store_u32(OFF_RSP_PROD, 9);
        assert!(matches!(
            rd.available(m),
            Err(RingError::BadResponseConsumer { .. })
        ));
        // A slot whose length is not one event.
        m.store_u32(OFF_RSP_PROD, 1);
        m.write(geo.rsp_slot(0) + 12, &40u32.to_le_bytes());
        assert_eq!(rd.pop(m), Err(RingError::BadLength { len: 40 }));
        m.store_u32(OFF_MAGIC, 0);
        assert_eq!(EventReader::attach(m).unwrap_err(), RingError::BadHeader);
    }

    #[test]
    fn frames_and_summary() {
        let s = [
            ev(EV_KEY, 30, 1),
            ev(EV_SYN, 0, 0),
            ev(EV_REL, 0, 3),
            ev(EV_REL, 1, -2),
            ev(EV_SYN, 0, 0),
            ev(EV_REL, 0, 4),
        ];
        let (f, open) = frames(&s);
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].len(), 3);
        assert_eq!(open.len(), 1);
        let sum = Summary::of(&s);
        assert_eq!(sum.keys, vec![(30, 1)]);
        assert_eq!((sum.rel[0], sum.rel[1]), (7, -2));
        assert_eq!((sum.reports, sum.dropped, sum.events), (2, 0, 6));
        let mut t = Summary::default();
        t.add(EV_ABS, 0, 5);
        t.add(EV_ABS, 0, 9);
        t.add(EV_SYN, SYN_DROPPED, 0);
        assert_eq!((t.abs[0], t.dropped), (Some(9), 1));
    }
}
