// SPDX-License-Identifier: GPL-2.0
//! One event channel: a ring shared with the guest, its notification eventfds and the backend
//! that serves it.

use crate::backend::{Backend, DataArea};
use crate::ring::{self, Geometry, HostRing, HostRingState, RingError, RingMem};
use crate::uapi::{vde_state, VdeCounters, VdeState, VdeStats};
use crate::vd::eventfd::{EventFd, KickHandler, KickWaiter, WorkQueue};
use crate::vd::hops::{tsc, HopTrace};
use crate::vd::shmem::SharedPages;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};

/// Hop-by-hop stamps of every channel's requests (debugfs `vd_evtchn/hops`, `make bench`): a
/// served request is `[channel key, request id, kick, handler start, response pushed]` and an
/// interrupt `[channel key, u64::MAX, call eventfd signalled, 0, 0]` (TSC values; the kick is
/// the last one before the handler ran, taken in the kicker's context).
pub(crate) static HOPS: HopTrace<5, 8192> = HopTrace::new();

/// A channel as the domain holds it: the channel inside its kick waiter.
pub(crate) type ChannelRef = kernel::sync::Arc<KickWaiter<Channel>>;

/// Counters, updated lock-free by the handler and read by `VDE_IOC_STATS`.
#[derive(Default)]
pub(crate) struct ChanStats {
    requests: AtomicU64,
    responses: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    kicks: AtomicU64,
    wakeups: AtomicU64,
    irqs: AtomicU64,
    irqs_suppressed: AtomicU64,
    errors: AtomicU64,
    req_errors: AtomicU64,
    /// Requests that made the image stable (flushes, FUA writes): debugfs only (not in the ABI).
    syncs: AtomicU64,
}

impl ChanStats {
    /// The ABI counters now (each read on its own: a snapshot of independent counters).
    pub(crate) fn counters(&self) -> VdeCounters {
        VdeCounters {
            requests: self.requests.load(Relaxed),
            responses: self.responses.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            kicks: self.kicks.load(Relaxed),
            wakeups: self.wakeups.load(Relaxed),
            irqs: self.irqs.load(Relaxed),
            irqs_suppressed: self.irqs_suppressed.load(Relaxed),
            errors: self.errors.load(Relaxed),
            req_errors: self.req_errors.load(Relaxed),
        }
    }
}

/// Adds `n` to `c`, saturating at `u64::MAX` (for counts a process chooses, such as kicks).
fn add_saturating(c: &AtomicU64, n: u64) {
    let _ = c.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_add(n)));
}

/// The fields protected by [`Channel::st`].
pub(crate) struct ChanState {
    /// The host side of the ring protocol (private indices).
    ring: HostRing,
    /// Who serves the requests.
    driver: Backend,
    /// Where interrupts go (`KVM_IRQFD`).
    call: Option<EventFd>,
    /// Generation published in the ring header.
    generation: u32,
    /// Request payload copied out of the ring.
    req_buf: KVec<u8>,
    /// Response payload built by the backend.
    rsp_buf: KVec<u8>,
}

/// An event channel.
#[pin_data]
pub(crate) struct Channel {
    /// Index in the domain's table.
    pub(crate) id: u32,
    /// Host-wide list key (`VDE_IOC_LIST` cursor order): unique, never reused.
    pub(crate) key: u64,
    /// Owning domain's id, for log lines.
    domain: u64,
    /// Geometry, fixed at creation; the copy in ring memory is never trusted.
    pub(crate) geo: Geometry,
    /// The ring pages (and the data area after them, for a shmem channel).
    pub(crate) mem: SharedPages,
    /// Offset of the data area in `mem` (0 with `data_len` 0: none). Private: the copy in the
    /// geometry line is for the guest and never read back.
    pub(crate) data_off: usize,
    /// Bytes of the data area.
    pub(crate) data_len: usize,
    /// Whether the channel belongs to its guest (`VDE_IOC_ORPHAN`): out of its domain, torn
    /// down when its kick eventfd hangs up.
    orphan: AtomicBool,
    /// Called with [`Channel::key`] when the kick eventfd hangs up (nobody can kick any more),
    /// from the kick work item: the orphan set's, which tears an orphan down. The channel knows
    /// nothing more of the set.
    on_hang_up: fn(u64),
    /// Ring indices, backend, call eventfd and buffers. Taken by the handler (the domain's
    /// workqueue, across backend I/O) and by the ioctls that change them; never by statistics,
    /// which read the atomics below; never in atomic context.
    #[pin]
    st: Mutex<ChanState>,
    /// Counters.
    pub(crate) stats: ChanStats,
    /// Whether the ring failed (mirrors `st.ring.failure()`, written under `st`).
    failed: AtomicBool,
    /// The backend's `vde_backend` kind (mirrors `st.driver`, written under `st`).
    backend: AtomicU32,
    /// TSC of the last kick, while [`HOPS`] is on.
    kick_tsc: AtomicU64,
}

impl Channel {
    /// A new channel with a freshly initialised ring in `mem` (at least the ring's size).
    /// Its memory (ring pages, buffers) is charged to the caller's memory cgroup. Kicks are
    /// served on `wq`. `data` is the data area (offset and length in `mem`; `(0, 0)`: none).
    /// `on_hang_up` is called with `key` when the kick eventfd hangs up.
    pub(crate) fn new(
        id: u32,
        key: u64,
        domain: u64,
        geo: Geometry,
        mem: SharedPages,
        data: (usize, usize),
        wq: Arc<WorkQueue>,
        on_hang_up: fn(u64),
    ) -> Result<impl PinInit<KickWaiter<Self>, Error>> {
        if mem.len() < geo.total_bytes() {
            return Err(EINVAL);
        }
        ring::init_ring(&mem, geo, 1);
        let max = geo.max_payload();
        let req_buf = KVec::from_elem(0u8, max, GFP_KERNEL_ACCOUNT)?;
        let rsp_buf = KVec::from_elem(0u8, max, GFP_KERNEL_ACCOUNT)?;
        let st = ChanState {
            ring: HostRing::new(geo, HostRingState::default()),
            driver: Backend::None,
            call: None,
            generation: 1,
            req_buf,
            rsp_buf,
        };
        let none = crate::uapi::vde_backend::NONE;
        let (data_off, data_len) = data;
        Ok(KickWaiter::new_on(
            try_pin_init!(Self {
                id,
                key,
                domain,
                geo,
                mem,
                data_off,
                data_len,
                orphan: AtomicBool::new(false),
                on_hang_up,
                st <- kernel::new_mutex!(st),
                stats: ChanStats::default(),
                failed: AtomicBool::new(false),
                backend: AtomicU32::new(none),
                kick_tsc: AtomicU64::new(0),
            }),
            Some(wq),
        ))
    }

    /// Whether the channel belongs to its guest.
    pub(crate) fn is_orphan(&self) -> bool {
        self.orphan.load(Relaxed)
    }

    /// Marks the channel as its guest's (called once, by the orphan set).
    pub(crate) fn set_orphan(&self) {
        self.orphan.store(true, Relaxed);
    }

    /// The frontend's state word (`OFF_FRONT_STATE`), as the guest last wrote it: for listings
    /// only, never acted on.
    pub(crate) fn front_state(&self) -> u32 {
        self.mem.load_u32(ring::OFF_FRONT_STATE)
    }

    /// Sets (or with `None`, clears) the call eventfd.
    pub(crate) fn set_call(&self, call: Option<EventFd>) {
        self.st.lock().call = call;
    }

    /// Replaces the backend. Leaving a `user` backend, the kernel continues from the indices
    /// that process published in the ring's backend line (it served the ring; the kernel's own
    /// indices never moved), as `VDE_IOC_RESTORE` would; they are validated like any other.
    pub(crate) fn set_driver(&self, d: Backend) {
        let mut st = self.st.lock();
        if matches!(st.driver, Backend::User(_)) && !matches!(d, Backend::User(_)) {
            let s = HostRingState {
                req_cons: self.mem.load_u32(ring::OFF_REQ_CONS),
                rsp_prod: self.mem.load_u32(ring::OFF_RSP_PROD),
            };
            st.ring = HostRing::new(self.geo, s);
        }
        self.backend.store(d.kind(), Relaxed);
        st.driver = d;
    }

    /// Userspace backend published responses: interrupt the guest if it asked.
    pub(crate) fn notify_from_user(&self) -> Result {
        let st = self.st.lock();
        if !matches!(st.driver, Backend::User(_)) {
            return Err(EINVAL);
        }
        // The process runs the same `vd-ring` backend code and calls this only when its
        // `publish` said the guest asked for an interrupt.
        match &st.call {
            Some(call) => {
                call.signal();
                self.stats.irqs.fetch_add(1, Relaxed);
                Ok(())
            }
            None => Err(ENOTCONN),
        }
    }

    /// Fills `out` with this channel's counters and state. Lock-free: never waits for the
    /// handler (which may be in backend I/O).
    pub(crate) fn stats_into(&self, out: &mut VdeStats) {
        let backend = self.backend.load(Relaxed);
        out.state = if self.failed() {
            vde_state::FAILED
        } else if backend == crate::uapi::vde_backend::NONE {
            vde_state::IDLE
        } else {
            vde_state::ACTIVE
        };
        out.backend = backend;
        out.entries = self.geo.entries();
        out.counters.saturating_add(&self.stats.counters());
    }

    /// Requests that made the image stable so far (debugfs).
    pub(crate) fn syncs(&self) -> u64 {
        self.stats.syncs.load(Relaxed)
    }

    /// Whether the ring was failed.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Relaxed)
    }

    /// `VDE_IOC_SAVE`. `EOPNOTSUPP` while a `user` backend serves the ring: that process keeps
    /// the backend's indices (the kernel's were never advanced), so it saves them itself.
    pub(crate) fn save(&self) -> Result<VdeState> {
        let st = self.st.lock();
        if matches!(st.driver, Backend::User(_)) {
            return Err(EOPNOTSUPP);
        }
        let s = st.ring.state();
        Ok(VdeState {
            id: self.id,
            entries: self.geo.entries(),
            entry_size: self.geo.entry_size(),
            generation: st.generation,
            req_cons: s.req_cons,
            rsp_prod: s.rsp_prod,
            backend: st.driver.kind(),
            flags: 0,
        })
    }

    /// `VDE_IOC_RESTORE`: continue from saved indices over ring bytes the VMM copied back into
    /// this channel's pages. The geometry must match; the ring header must be a vd ring with the
    /// same geometry.
    pub(crate) fn restore(&self, s: &VdeState) -> Result {
        if s.entries != self.geo.entries() || s.entry_size != self.geo.entry_size() || s.flags != 0
        {
            return Err(EINVAL);
        }
        if self.mem.load_u32(ring::OFF_MAGIC) != ring::RING_MAGIC
            || self.mem.load_u32(ring::OFF_ENTRIES) != self.geo.entries()
            || self.mem.load_u32(ring::OFF_ENTRY_SIZE) != self.geo.entry_size()
        {
            return Err(EPROTO);
        }
        let mut st = self.st.lock();
        st.ring = HostRing::new(
            self.geo,
            HostRingState {
                req_cons: s.req_cons,
                rsp_prod: s.rsp_prod,
            },
        );
        st.generation = s.generation.wrapping_add(1);
        self.failed.store(false, Relaxed);
        // The backend line is ours: republish it as saved, and clear a stale FAILED bit.
        self.mem.store_u32(ring::OFF_REQ_CONS, s.req_cons);
        self.mem.store_u32(ring::OFF_STATUS, 0);
        self.mem.store_u32(ring::OFF_GENERATION, st.generation);
        self.mem.store_release_u32(ring::OFF_RSP_PROD, s.rsp_prod);
        Ok(())
    }

    /// The ring just failed (the backend already wrote `STATUS_FAILED` into it): count it, log it,
    /// and interrupt the guest once so a frontend waiting for responses sees the status instead
    /// of waiting forever.
    fn fail_log(&self, st: &ChanState, e: RingError) {
        // Visible to statistics before the guest (and its VMM) can hear about it.
        self.failed.store(st.ring.failure().is_some(), Relaxed);
        let call = st.call.as_ref();
        self.stats.errors.fetch_add(1, Relaxed);
        if let Some(call) = call {
            call.signal();
            self.stats.irqs.fetch_add(1, Relaxed);
        }
        crate::vd_warn_ratelimited!(
            "domain {} channel {}: ring failed ({}); channel stopped\n",
            self.domain,
            self.id,
            e.name()
        );
    }

    /// Serves up to one ring's worth of requests, publishes the responses, interrupts the guest
    /// if it asked, and re-arms kicks. Returns `true` when requests are still waiting (the budget
    /// ran out, or more arrived while serving): the caller queues the work again instead of
    /// looping here, so a busy guest shares the workqueue fairly (as vhost's weight limit does).
    fn serve(&self) -> bool {
        let mut guard = self.st.lock();
        let more = self.serve_locked(&mut guard);
        self.failed.store(guard.ring.failure().is_some(), Relaxed);
        more
    }

    /// [`Self::serve`] with the state locked.
    fn serve_locked(&self, st: &mut ChanState) -> bool {
        if st.ring.failure().is_some() {
            return false;
        }
        if let Backend::User(efd) = &st.driver {
            efd.signal();
            return false;
        }
        if matches!(st.driver, Backend::None) {
            return false;
        }
        let hops = HOPS.on();
        let (kick, work) = if hops {
            (self.kick_tsc.load(Relaxed), tsc())
        } else {
            (0, 0)
        };
        let mut budget = self.geo.entries();
        while budget > 0 {
            let req = match st.ring.pop_request(&self.mem, &mut st.req_buf) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    self.fail_log(st, e);
                    return false;
                }
            };
            budget -= 1;
            // `pop_request` checked the length against the slot (which `req_buf` holds).
            let Some(payload) = st.req_buf.get(..req.len as usize) else {
                return false;
            };
            self.stats.requests.fetch_add(1, Relaxed);
            self.stats.bytes_in.fetch_add(req.len as u64, Relaxed);
            let da = DataArea {
                mem: &self.mem,
                off: self.data_off,
                len: self.data_len,
            };
            let served = st.driver.serve(&req, payload, &mut st.rsp_buf, &da);
            let (status, len) = (served.status, served.len);
            if status != 0 {
                self.stats.req_errors.fetch_add(1, Relaxed);
            }
            if served.synced {
                self.stats.syncs.fetch_add(1, Relaxed);
            }
            let rsp = st.rsp_buf.get(..len).unwrap_or(&[]);
            if let Err(e) = st.ring.push_response(&self.mem, req.id, status, rsp) {
                // pop_request reserved the slot; only the guest can have taken it.
                self.fail_log(st, e);
                return false;
            }
            self.stats.bytes_out.fetch_add(len as u64, Relaxed);
            if hops {
                HOPS.record([self.key, req.id, kick, work, tsc()]);
            }
        }
        let (n, notify) = st.ring.publish(&self.mem);
        if n > 0 {
            self.stats.responses.fetch_add(n as u64, Relaxed);
            match (&st.call, notify) {
                (Some(call), true) => {
                    call.signal();
                    if hops {
                        HOPS.record([self.key, u64::MAX, tsc(), 0, 0]);
                    }
                    self.stats.irqs.fetch_add(1, Relaxed);
                }
                _ => {
                    self.stats.irqs_suppressed.fetch_add(1, Relaxed);
                }
            }
        }
        if budget == 0 {
            return true;
        }
        match st.ring.enable_kicks(&self.mem) {
            Ok(more) => more,
            Err(e) => {
                self.fail_log(st, e);
                false
            }
        }
    }
}

impl KickHandler for Channel {
    fn kicked(&self) {
        if HOPS.on() {
            self.kick_tsc.store(tsc(), Relaxed);
        }
    }

    fn handle(&self, kicks: u64) -> bool {
        add_saturating(&self.stats.kicks, kicks);
        self.stats.wakeups.fetch_add(1, Relaxed);
        self.serve()
    }

    fn hung_up(&self) {
        // Nobody can kick any more. An orphan is torn down now (by the orphan set's own work
        // item); a channel its domain still holds goes with its domain or `VDE_IOC_DESTROY`.
        (self.on_hang_up)(self.key);
    }
}
