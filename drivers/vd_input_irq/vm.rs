// SPDX-License-Identifier: GPL-2.0
//! A VM's input sink: its event ring (shared with the guest), the queue that holds events while
//! the VM cannot take an interrupt, and the notification eventfd.

use crate::queue::{Event, EventQueue, QueueStats, EV_SYN};
use crate::ring::{
    Geometry, HostRing, HostRingState, RingMem, OFF_DATA_LEN, OFF_DATA_OFF, OFF_DEV_KIND,
    OFF_DOORBELL, OFF_REQ_EVENT, OFF_RSP_CONS,
};
use crate::uapi::{VdiEvent, VdiStats, VDI_DELAY_BUCKETS, VDI_ENTRY_SIZE, VDI_QUEUE_EVENTS};
use crate::vd::eventfd::EventFd;
use crate::vd::eventfd::KickHandler;
use crate::vd::preempt::{SchedWatch, ThreadState};
use crate::vd::shmem::SharedPages;
use crate::vd::time::now_ns;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use kernel::fs::File;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::SpinLockIrq;

/// Queue capacity in events.
pub(crate) const QUEUE_N: usize = VDI_QUEUE_EVENTS as usize;
/// `req_event` half the index space away from `rsp_cons`: no kick wanted.
const NO_KICK: u32 = 0x8000_0000;
const _: () = assert!(VDI_ENTRY_SIZE as usize >= crate::ring::RSP_HDR + size_of::<VdiEvent>());

/// Counters of a sink, protected with the rest of [`SinkInner`].
#[derive(Default)]
struct Counters {
    delivered_immediately: u64,
    queued: u64,
    flushed: u64,
    irqs: u64,
    delay_hist: [u64; VDI_DELAY_BUCKETS],
}

/// The fields protected by [`VmSink::inner`]: touched from the input event path (atomic, with
/// interrupts off), the scheduler's schedule-in notifier and ioctls.
struct SinkInner {
    /// Producer side of the event ring (responses only; indices kept privately).
    ring: HostRing,
    /// Events waiting for the VM to be deliverable (or for ring room).
    queue: KBox<EventQueue<QUEUE_N>>,
    /// Signalled after publishing events the guest asked to be told about.
    call: Option<EventFd>,
    /// Response id of the next event.
    seq: u64,
    counters: Counters,
}

/// One VM's sink.
#[pin_data]
pub(crate) struct VmSink {
    /// The VM's id (host-unique, non-zero).
    pub(crate) vm_id: u32,
    /// The event ring's pages.
    pub(crate) mem: SharedPages,
    #[pin]
    inner: SpinLockIrq<SinkInner>,
    /// Registered vCPU threads.
    pub(crate) vcpus: AtomicU32,
    /// Registered vCPU threads that can take an interrupt now (running, or halted waiting
    /// for one).
    live: AtomicU32,
    /// The VMM said the VM is paused.
    paused: AtomicBool,
}

fn bucket(delay_ns: u64) -> usize {
    let mut limit = 10_000u64;
    let mut b = 0;
    while b < VDI_DELAY_BUCKETS - 1 && delay_ns >= limit {
        limit *= 10;
        b += 1;
    }
    b
}

impl VmSink {
    /// A sink with an `entries`-slot event ring in the module's own pages.
    pub(crate) fn new(
        vm_id: u32,
        entries: u32,
        call: Option<EventFd>,
    ) -> Result<impl PinInit<Self, Error>> {
        let geo = Self::geometry(vm_id, entries)?;
        let mem = SharedPages::new(geo.total_bytes())?;
        crate::ring::init_ring(&mem, geo, 1);
        Self::with_ring(vm_id, geo, mem, call)
    }

    /// A sink whose event ring lives in a new shmem file (for `ivshmem-doorbell`): its
    /// geometry line says `dev_kind::INPUT` and carries `doorbell` for the guest. Returns the
    /// file and its size (a power of two) with the sink.
    pub(crate) fn new_shm(
        vm_id: u32,
        entries: u32,
        call: Option<EventFd>,
        doorbell: u32,
    ) -> Result<(impl PinInit<Self, Error>, ARef<File>, usize)> {
        let geo = Self::geometry(vm_id, entries)?;
        let page = kernel::page::PAGE_SIZE;
        // The data area holds the capabilities block (`vd-ring/src/caps.rs`), left zero: the
        // server that hands the file to QEMU fills it in.
        let caps_off = geo.total_bytes().next_multiple_of(64);
        let used = (caps_off + crate::vd::caps::CAPS_LEN).div_ceil(page) * page;
        let size = used.checked_next_power_of_two().ok_or(EINVAL)?;
        let (mem, file) = SharedPages::new_shmem(c"vd_input", used, size)?;
        // The geometry line's extra fields, before `init_ring` publishes the magic. (Ring and
        // block are at most a few hundred KiB: `entries <= 4096`.)
        mem.store_u32(OFF_DATA_OFF, caps_off as u32);
        mem.store_u32(OFF_DATA_LEN, crate::vd::caps::CAPS_LEN as u32);
        mem.store_u32(OFF_DEV_KIND, crate::ring::dev_kind::INPUT);
        mem.store_u32(OFF_DOORBELL, doorbell);
        crate::ring::init_ring(&mem, geo, 1);
        Ok((Self::with_ring(vm_id, geo, mem, call)?, file, size))
    }

    fn geometry(vm_id: u32, entries: u32) -> Result<Geometry> {
        if vm_id == 0 || !(8..=4096).contains(&entries) {
            return Err(EINVAL);
        }
        Geometry::new(entries, VDI_ENTRY_SIZE).map_err(|_| EINVAL)
    }

    /// The sink over an initialised ring.
    fn with_ring(
        vm_id: u32,
        geo: Geometry,
        mem: SharedPages,
        call: Option<EventFd>,
    ) -> Result<impl PinInit<Self, Error>> {
        // No kick wanted until events wait for room.
        mem.store_u32(OFF_REQ_EVENT, NO_KICK);
        // In place: the queue is larger than a kernel stack frame may be.
        let queue = KBox::init(pin_init::init_zeroed(), GFP_KERNEL)?;
        let inner = SinkInner {
            ring: HostRing::new(geo, HostRingState::default()),
            queue,
            call,
            seq: 0,
            counters: Counters::default(),
        };
        Ok(try_pin_init!(Self {
            vm_id,
            mem,
            inner <- kernel::new_spinlock_irq!(inner),
            vcpus: AtomicU32::new(0),
            live: AtomicU32::new(0),
            paused: AtomicBool::new(false),
        }))
    }

    /// Whether events go to the ring now: not paused, and a vCPU can take the interrupt (or
    /// no vCPU thread registered at all).
    pub(crate) fn deliverable(&self) -> bool {
        !self.paused.load(Relaxed) && (self.vcpus.load(Relaxed) == 0 || self.live.load(Relaxed) > 0)
    }

    /// Replaces the notification eventfd.
    pub(crate) fn set_call(&self, call: Option<EventFd>) {
        let old = core::mem::replace(&mut self.inner.lock().call, call);
        drop(old);
    }

    /// The VMM paused (`false`) or resumed (`true`) the VM.
    pub(crate) fn set_running(&self, running: bool) {
        self.paused.store(!running, Relaxed);
        if running {
            self.flush();
        }
    }

    /// A vCPU thread registered (it is running: it made the call).
    pub(crate) fn vcpu_added(&self) {
        self.vcpus.fetch_add(1, Relaxed);
        self.live.fetch_add(1, Relaxed);
        self.flush();
    }

    /// A vCPU thread unregistered, last seen in `state` (one that `Exited` was already
    /// taken off the counts).
    pub(crate) fn vcpu_removed(&self, state: ThreadState) {
        if state == ThreadState::Exited {
            return;
        }
        if state.deliverable() {
            self.live.fetch_sub(1, Relaxed);
        }
        self.vcpus.fetch_sub(1, Relaxed);
        self.flush();
    }

    /// Writes one event into the ring (not yet published). `false` when the ring is full or
    /// failed.
    fn write_one(&self, g: &mut SinkInner, e: &Event, now: u64) -> bool {
        let ev = VdiEvent {
            time_ns: e.time_ns,
            ty: e.ty,
            code: e.code,
            value: e.value,
        };
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&ev.time_ns.to_le_bytes());
        b[8..10].copy_from_slice(&ev.ty.to_le_bytes());
        b[10..12].copy_from_slice(&ev.code.to_le_bytes());
        b[12..16].copy_from_slice(&ev.value.to_le_bytes());
        match g.ring.push_response(&self.mem, g.seq, 0, &b) {
            Ok(()) => {
                g.seq = g.seq.wrapping_add(1);
                g.counters.delay_hist[bucket(now.saturating_sub(e.time_ns))] += 1;
                true
            }
            Err(crate::ring::RingError::Full) => false,
            Err(e) => {
                crate::vd_warn_ratelimited!(
                    "vd_input: vm {}: event ring failed ({}); events stay queued\n",
                    self.vm_id,
                    e.name()
                );
                false
            }
        }
    }

    /// Publishes what was written and signals the guest if it asked.
    fn publish(&self, g: &mut SinkInner) {
        let (n, notify) = g.ring.publish(&self.mem);
        if n > 0 && notify {
            if let Some(c) = &g.call {
                c.signal();
                g.counters.irqs += 1;
            }
        }
    }

    fn flush_locked(&self, g: &mut SinkInner) {
        let now = now_ns();
        // Two passes at most: the second only if the guest freed room while we armed the kick.
        for _ in 0..2 {
            let mut moved = 0u64;
            while let Some(e) = g.queue.front() {
                if !self.write_one(g, &e, now) {
                    break;
                }
                g.queue.pop();
                moved += 1;
            }
            if moved > 0 {
                g.counters.flushed += moved;
                self.publish(g);
            }
            if g.queue.len() == 0 {
                self.mem.store_u32(
                    OFF_REQ_EVENT,
                    self.mem.load_u32(OFF_RSP_CONS).wrapping_add(NO_KICK),
                );
                return;
            }
            // The ring is full: ask the guest to kick at its next consumption, then make sure it
            // did not consume meanwhile (it reads `req_event` after moving `rsp_cons`).
            let cons = self.mem.load_acquire_u32(OFF_RSP_CONS);
            self.mem.store_u32(OFF_REQ_EVENT, cons);
            self.mem.fence();
            if self.mem.load_acquire_u32(OFF_RSP_CONS) == cons {
                return;
            }
        }
    }

    /// Moves queued events into the ring if the VM can take them now.
    pub(crate) fn flush(&self) {
        if !self.deliverable() {
            return;
        }
        let mut g = self.inner.lock();
        self.flush_locked(&mut g);
    }

    /// One event from a routed device (any context, interrupts may be off).
    pub(crate) fn deliver(&self, e: Event) {
        let mut g = self.inner.lock();
        // Read under the lock: every change to deliverable (schedule-in, resume, a vCPU added or
        // gone) is followed by a `flush`, which takes this lock after the change. Either that
        // flush comes after us and moves what we queue, or we see its change here.
        let deliverable = self.deliverable();
        if deliverable && g.queue.len() == 0 {
            if self.write_one(&mut g, &e, now_ns()) {
                g.counters.delivered_immediately += 1;
                // Publish at frame ends (and for events outside frames): one interrupt per frame.
                if e.ty == EV_SYN {
                    self.publish(&mut g);
                }
                return;
            }
        }
        g.queue.push(e);
        g.counters.queued += 1;
        if deliverable {
            self.flush_locked(&mut g);
        }
        // The ring filled mid-frame: what was written of the frame is visible now, not only
        // at the next flush.
        self.publish(&mut g);
    }

    /// Fills `s` with this sink's counters.
    pub(crate) fn stats_into(&self, s: &mut VdiStats) {
        s.running = self.deliverable() as u32;
        s.vcpus = self.vcpus.load(Relaxed);
        let g = self.inner.lock();
        let q: QueueStats = g.queue.stats();
        s.queue_depth = g.queue.len() as u32;
        s.delivered_immediately = g.counters.delivered_immediately;
        s.queued = g.counters.queued;
        s.flushed = g.counters.flushed;
        s.coalesced = q.coalesced;
        s.dropped = q.dropped;
        s.max_depth = q.max_depth as u64;
        s.irqs = g.counters.irqs;
        s.delay_hist = g.counters.delay_hist;
    }
}

/// The guest's doorbell: its kick eventfd fires after it consumed events while more waited.
#[pin_data]
pub(crate) struct Doorbell {
    pub(crate) sink: kernel::sync::Arc<VmSink>,
}

impl KickHandler for Doorbell {
    fn handle(&self, _kicks: u64) -> bool {
        self.sink.flush();
        false
    }
}

impl SchedWatch for VmSink {
    fn changed(&self, from: ThreadState, to: ThreadState) {
        if to == ThreadState::Exited {
            // The thread died registered (its VMM did not unregister it). It no longer counts;
            // with no vCPU left the VM is deliverable again. The runqueue lock is held here:
            // `exited` flushes, right after this switch.
            if from.deliverable() {
                self.live.fetch_sub(1, Relaxed);
            }
            self.vcpus.fetch_sub(1, Relaxed);
            return;
        }
        match (from.deliverable(), to.deliverable()) {
            (true, false) => {
                self.live.fetch_sub(1, Relaxed);
            }
            (false, true) => {
                let was = self.live.fetch_add(1, Relaxed);
                // Schedule-in (the only way back to deliverable): no runqueue lock is held here,
                // so the flush may signal the eventfd.
                if was == 0 && to == ThreadState::Running {
                    self.flush();
                }
            }
            _ => {}
        }
    }

    fn exited(&self) {
        // A vCPU thread died registered: if that made the VM deliverable (it was the last one
        // that was stopped or preempted), what waited goes to the ring now.
        self.flush();
    }
}
