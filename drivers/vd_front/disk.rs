// SPDX-License-Identifier: GPL-2.0
//! One vd disk: the ring frontend over BAR2, the blk-mq queue that feeds it, the interrupt that
//! completes it, and the broken-disk state a misbehaving host puts it in.
//!
//! Request tag `t` is the ring request's `id` and owns data chunk `t` of the data area
//! ([`FrontGeometry::chunk_in_map`]): a write's data is copied there before the request is
//! published, a read's data is copied out after its response. The block layer never has more
//! than `depth <= entries` tags out, so the ring never runs out of slots.
//!
//! The host is not trusted: every response is copied out once and checked (an id that is not a
//! tag in flight, a status that is not 0 or an errno, indices that run ahead, or the host's own
//! `STATUS_FAILED`) and any of these makes the disk *broken*: every request in flight and every
//! later one fails with `EIO`. Requests are ended outside the lock, a few at a time, so a bio
//! completion that submits more I/O never finds the lock held.

use crate::geometry::FrontGeometry;
use crate::ring::{self, op, BlkDaReq, GuestRing, RingError, RingMem, BLK_F_FUA};
use crate::vd::hops::{tsc, HopTrace};
use crate::vd::knob::BoolKnob;
use crate::vd::memremap::Memremap;
use crate::vd::{time::now_ms, workqueue::cancel_delayed_work_sync};
use crate::vd_warn_ratelimited;
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use kernel::block::mq::{self, Command, Operations, Request};
use kernel::io::Io;
use kernel::new_spinlock_irq;
use kernel::pci::DevresBar;
use kernel::prelude::*;
use kernel::sync::{aref::ARef, Arc, ArcBorrow, SpinLockIrq};
use kernel::time::{delay::fsleep, msecs_to_jiffies, Delta};
use kernel::workqueue::{self, impl_has_delayed_work, new_delayed_work, DelayedWork, WorkItem};

/// Bytes of BAR0 (ivshmem's registers).
pub(crate) const BAR0_LEN: usize = 256;
/// BAR0: the doorbell register (32-bit writes of `(peer << 16) | vector`).
const DOORBELL: usize = 12;
/// The ring request id of the probe's size query: above every tag.
const SIZE_ID: u64 = 1 << 32;
/// How long the probe waits for the host to answer the size query.
const SIZE_WAIT_MS: u32 = 5000;
/// Requests ended per round outside the lock.
const BATCH: usize = 16;
/// A request the host has not answered in this long breaks the disk (a dead or stuck host
/// must not hang the guest: blk-mq's own timeout only re-arms without a driver handler).
pub(crate) const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// How often the watchdog looks.
const WATCHDOG_PERIOD_MS: u32 = 1000;

/// The debug knob (`/sys/kernel/debug/vd_front/corrupt`): when set, the next request queued on
/// any vd_front disk corrupts the ring instead of publishing normally (see [`Shared::corrupt`]).
pub(crate) static CORRUPT: BoolKnob = BoolKnob::new();

/// Hop-by-hop stamps of every vd_front disk's requests (debugfs `vd_front/hops`, `make
/// bench`): `[request id, published, interrupt handler entered, request ended]` (TSC values;
/// the interrupt is the one whose handler consumed the response, 0 when the watchdog or the
/// probe did).
pub(crate) static HOPS: HopTrace<4, 8192> = HopTrace::new();

/// The blk-mq operations of a vd disk.
pub(crate) struct VdBlk;

type Rq = ARef<Request<VdBlk>>;

/// The probe's size query.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SizeQuery {
    /// Not asked (or answered and done with).
    Idle,
    /// Asked, or about to be (the state from the start): responses with other ids are left
    /// over from an earlier binding of the ring and ignored.
    Waiting,
    /// Answered: the capacity in bytes.
    Done(u64),
    /// Answered with an error.
    Failed,
}

/// The fields protected by [`Shared::inner`].
struct Inner {
    /// Private ring indices.
    fe: GuestRing,
    /// Requests in flight, indexed by tag.
    inflight: KVec<Option<Rq>>,
    /// When each tag's request was queued (ms, monotonic), for the watchdog.
    queued_ms: KVec<u64>,
    /// When each tag's request was published (TSC), while [`HOPS`] is on.
    published_tsc: KVec<u64>,
    /// The disk is broken: nothing is sent any more, everything fails with `EIO`.
    broken: bool,
    /// The debug knob corrupted the ring: new requests fail, the ones in flight wait for the
    /// host to notice (its `STATUS_FAILED` breaks the disk).
    corrupted: bool,
    size: SizeQuery,
}

/// What one response does.
enum Outcome {
    /// End this request with this result.
    End(Rq, Result),
    /// Nothing to end (the size answer, or a stale response during the probe).
    None,
    /// The host broke the protocol: break the disk (and end this request, if any, with `EIO`).
    Broken(&'static str, Option<Rq>),
}

/// State shared by the queue, the interrupt handler and the driver.
#[pin_data]
pub(crate) struct Shared {
    /// BAR2: the ring and the data area.
    mem: Memremap,
    geo: FrontGeometry,
    /// BAR0, for the doorbell; revoked when the device goes away.
    bar0: DevresBar<BAR0_LEN>,
    /// `N` of `vdbN`, for log lines.
    index: u32,
    /// Lock order: innermost; never held while ending a request or kicking.
    #[pin]
    inner: SpinLockIrq<Inner>,
    /// Mirror of `Inner::broken` for lock-free checks.
    broken: AtomicBool,
    /// Fails requests the host does not answer in time; also picks up responses whose
    /// interrupt was lost.
    #[pin]
    watchdog: DelayedWork<Shared>,
    /// The watchdog must not queue itself again.
    stopping: AtomicBool,
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self> for Shared { self.watchdog }
}

impl WorkItem for Shared {
    type Pointer = Arc<Shared>;

    fn run(this: Arc<Shared>) {
        this.watchdog_pass(now_ms());
        if !this.stopping.load(Relaxed) {
            // Fails only while `stop_watchdog` cancels it: then it must not run again anyway.
            let _ = workqueue::system_power_efficient()
                .enqueue_delayed(this, msecs_to_jiffies(WATCHDOG_PERIOD_MS));
        }
    }
}

/// Whether a request queued at `queued_ms` is late at `now_ms`.
pub(crate) const fn is_late(queued_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(queued_ms) >= REQUEST_TIMEOUT_MS
}

impl Shared {
    /// Attaches the ring frontend to `mem`. `ENODEV` if the ring now says something else than
    /// the geometry the caller validated (the host changed it meanwhile).
    pub(crate) fn new(
        mem: Memremap,
        geo: FrontGeometry,
        bar0: DevresBar<BAR0_LEN>,
        index: u32,
    ) -> Result<Arc<Self>> {
        let fe = GuestRing::attach(&mem).map_err(|_| ENODEV)?;
        if fe.geometry() != geo.ring() {
            return Err(ENODEV);
        }
        let depth = geo.depth() as usize;
        let mut inflight = KVec::with_capacity(depth, GFP_KERNEL)?;
        let mut queued_ms = KVec::with_capacity(depth, GFP_KERNEL)?;
        let mut published_tsc = KVec::with_capacity(depth, GFP_KERNEL)?;
        for _ in 0..depth {
            inflight.push(None, GFP_KERNEL)?;
            queued_ms.push(0, GFP_KERNEL)?;
            published_tsc.push(0, GFP_KERNEL)?;
        }
        Arc::pin_init(
            pin_init!(Self {
                mem,
                geo,
                bar0,
                index,
                inner <- new_spinlock_irq!(Inner {
                    fe,
                    inflight,
                    queued_ms,
                    published_tsc,
                    broken: false,
                    corrupted: false,
                    // Until the size answer: what the interrupt finds before is stale.
                    size: SizeQuery::Waiting,
                }, "vd_front::Shared::inner"),
                broken: AtomicBool::new(false),
                watchdog <- new_delayed_work!("vd_front::Shared::watchdog"),
                stopping: AtomicBool::new(false),
            }),
            GFP_KERNEL,
        )
    }

    /// The geometry the disk runs on.
    pub(crate) fn geometry(&self) -> &FrontGeometry {
        &self.geo
    }

    /// Whether the disk is broken.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Relaxed)
    }

    /// Rings the host's doorbell.
    fn kick(&self) {
        if let Some(bar) = self.bar0.try_access() {
            (&*bar).write32(self.geo.doorbell(), DOORBELL);
        }
    }

    /// Handshake, part one: asks for interrupts from the first response on and tells the host
    /// the frontend is connected (after the caller made the interrupt live).
    pub(crate) fn connect(&self) {
        let mut g = self.inner.lock();
        g.fe.enable_irq(&self.mem);
        self.mem
            .store_release_u32(ring::OFF_FRONT_STATE, ring::FRONT_CONNECTED);
    }

    /// Handshake, part two: asks the host for the disk's size and waits for the answer (from
    /// the interrupt, or found by polling the ring here) for at most 5 s. `ETIMEDOUT` if the
    /// host does not answer, `EIO` if it answers with an error or breaks the ring.
    pub(crate) fn query_size(&self) -> Result<u64> {
        {
            let mut g = self.inner.lock();
            g.fe.push_request(&self.mem, SIZE_ID, op::BLK_GET_SIZE, &[])
                .map_err(|_| EIO)?;
            g.size = SizeQuery::Waiting;
            g.fe.publish(&self.mem);
        }
        // Kick whatever `req_event` says: the first doorbell is cheap, and the index may be
        // left over from an earlier binding.
        self.kick();
        let mut waited = 0;
        loop {
            self.process();
            let state = {
                let mut g = self.inner.lock();
                let s = g.size;
                if !matches!(s, SizeQuery::Waiting) || g.broken {
                    g.size = SizeQuery::Idle;
                }
                (s, g.broken)
            };
            match state {
                (_, true) => return Err(EIO),
                (SizeQuery::Done(bytes), _) => return Ok(bytes),
                (SizeQuery::Failed, _) => return Err(EIO),
                _ => {}
            }
            if waited >= SIZE_WAIT_MS {
                self.inner.lock().size = SizeQuery::Idle;
                return Err(ETIMEDOUT);
            }
            fsleep(Delta::from_millis(10));
            waited += 10;
        }
    }

    /// The debug knob: instead of publishing the request just pushed, writes a huge length into
    /// the next free request slot and moves the shared `req_prod` `entries + 7` ahead, then
    /// kicks. An honest host fails the ring (`STATUS_FAILED`), which breaks this disk; the
    /// request in flight then fails with `EIO`.
    fn corrupt(&self, g: &mut Inner) {
        let geo = self.geo.ring();
        let prod = self.mem.load_u32(ring::OFF_REQ_PROD);
        let bad_prod = prod.wrapping_add(geo.entries()).wrapping_add(7);
        let slot = geo.req_slot(prod);
        self.mem.store_u32(slot + 12, 0xffff_fff0);
        self.mem.store_release_u32(ring::OFF_REQ_PROD, bad_prod);
        g.corrupted = true;
        pr_warn!(
            "vdb{}: debug knob: ring corrupted (req_prod {} -> {}, slot length 0xfffffff0)\n",
            self.index,
            prod,
            bad_prod
        );
    }

    /// Queues `rq` on the ring (tag = id, its data chunk = the tag's).
    fn submit(&self, rq: Rq, is_last: bool) -> Result {
        if self.is_broken() {
            return Err(EIO);
        }
        let tag = rq.tag();
        let off = self.geo.chunk_off(tag).ok_or(EIO)?;
        let in_map = self.geo.chunk_in_map(tag).ok_or(EIO)?;
        let bytes = rq.bytes();
        let (opcode, payload) = match rq.command() {
            cmd @ (Command::Read | Command::Write) => {
                if bytes == 0 || bytes % 512 != 0 || bytes > self.geo.chunk() {
                    vd_warn_ratelimited!("vdb{}: request of {} bytes refused\n", self.index, bytes);
                    return Err(EIO);
                }
                let write = cmd == Command::Write;
                if write {
                    self.mem.copy_from_request(&rq, in_map, bytes as usize)?;
                }
                let req = BlkDaReq {
                    sector: rq.sector(),
                    len: bytes,
                    flags: if write && rq.is_fua() { BLK_F_FUA } else { 0 },
                    data_off: off as u64,
                };
                let opcode = if write {
                    op::BLK_WRITE_DA
                } else {
                    op::BLK_READ_DA
                };
                (opcode, Some(req.to_bytes()))
            }
            Command::Flush => (op::BLK_FLUSH, None),
            Command::Other(_) => return Err(EOPNOTSUPP),
        };
        let payload: &[u8] = match &payload {
            Some(p) => p,
            None => &[],
        };
        let kick = {
            let mut g = self.inner.lock();
            if g.broken || g.corrupted {
                return Err(EIO);
            }
            let slot = g.inflight.get_mut(tag as usize).ok_or(EIO)?;
            if slot.is_some() {
                // The block layer never hands out a tag twice; refuse rather than lose one.
                return Err(EIO);
            }
            g.fe.push_request(&self.mem, u64::from(tag), opcode, payload)
                .map_err(|_| EIO)?;
            if let Some(s) = g.inflight.get_mut(tag as usize) {
                *s = Some(rq);
            }
            if let Some(t) = g.queued_ms.get_mut(tag as usize) {
                *t = now_ms();
            }
            if HOPS.on() {
                if let Some(t) = g.published_tsc.get_mut(tag as usize) {
                    *t = tsc();
                }
            }
            if CORRUPT.take() {
                self.corrupt(&mut g);
                true
            } else if is_last {
                g.fe.publish(&self.mem)
            } else {
                false
            }
        };
        if kick {
            self.kick();
        }
        Ok(())
    }

    /// Publishes what `queue_rq` left unpublished (`is_last` false) and kicks if needed.
    fn commit(&self) {
        let kick = {
            let mut g = self.inner.lock();
            !g.broken && !g.corrupted && g.fe.publish(&self.mem)
        };
        if kick {
            self.kick();
        }
    }

    /// Checks one response (copied out of the ring) and takes its request out of flight.
    fn take(&self, g: &mut Inner, rsp: ring::Response, payload: &[u8; 8]) -> Outcome {
        if g.size == SizeQuery::Waiting {
            if rsp.id == SIZE_ID {
                g.size = if rsp.status == 0 && rsp.len >= 8 {
                    SizeQuery::Done(u64::from_le_bytes(*payload))
                } else {
                    SizeQuery::Failed
                };
            }
            // Anything else is the answer to a request of an earlier binding of this ring.
            return Outcome::None;
        }
        let Some(slot) = usize::try_from(rsp.id)
            .ok()
            .and_then(|t| g.inflight.get_mut(t))
        else {
            return Outcome::Broken("response for an unknown request", None);
        };
        let Some(rq) = slot.take() else {
            return Outcome::Broken("response for a request not in flight", None);
        };
        match rsp.status {
            0 => Outcome::End(rq, Ok(())),
            -4095..=-1 => Outcome::End(rq, Err(EIO)),
            _ => Outcome::Broken("response status is not an errno", Some(rq)),
        }
    }

    /// Marks the disk broken (first time: one log line).
    fn set_broken(&self, g: &mut Inner, why: &str) {
        if !g.broken {
            g.broken = true;
            self.broken.store(true, Relaxed);
            pr_err!(
                "vdb{}: the host broke the ring ({}): all I/O fails with EIO from now on\n",
                self.index,
                why
            );
        }
    }

    /// Ends a request whose response arrived: a read's data is copied out of its chunk first.
    fn finish(&self, rq: Rq, mut res: Result) {
        if res.is_ok() && rq.command() == Command::Read {
            res = match self.geo.chunk_in_map(rq.tag()) {
                Some(off) => self.mem.copy_to_request(&rq, off, rq.bytes() as usize),
                None => Err(EIO),
            };
        }
        if mq::Request::end(rq, res).is_err() {
            // Only we hold a reference to a request in flight: cannot happen.
            vd_warn_ratelimited!("vdb{}: request still referenced, not ended\n", self.index);
        }
    }

    /// Fails every request in flight with `EIO` (the disk is broken or going away).
    pub(crate) fn fail_inflight(&self) {
        loop {
            let mut batch: [Option<Rq>; BATCH] = Default::default();
            let mut n = 0;
            {
                let mut g = self.inner.lock();
                for slot in g.inflight.iter_mut() {
                    if n == BATCH {
                        break;
                    }
                    if let (Some(rq), Some(b)) = (slot.take(), batch.get_mut(n)) {
                        *b = Some(rq);
                        n += 1;
                    }
                }
            }
            if n == 0 {
                return;
            }
            for rq in batch.iter_mut().filter_map(Option::take) {
                if mq::Request::end(rq, Err(EIO)).is_err() {
                    vd_warn_ratelimited!(
                        "vdb{}: request still referenced, not ended\n",
                        self.index
                    );
                }
            }
        }
    }

    /// Breaks the disk on purpose (the device goes away), tells the host the frontend left and
    /// fails what is in flight.
    pub(crate) fn shut_down(&self) {
        {
            let mut g = self.inner.lock();
            if !g.broken {
                g.broken = true;
                self.broken.store(true, Relaxed);
            }
        }
        self.mem.store_release_u32(ring::OFF_FRONT_STATE, 0);
        self.fail_inflight();
    }

    /// Starts the watchdog (once the disk is up).
    pub(crate) fn start_watchdog(self: &Arc<Self>) {
        let _ = workqueue::system_power_efficient()
            .enqueue_delayed(self.clone(), msecs_to_jiffies(WATCHDOG_PERIOD_MS));
    }

    /// Stops the watchdog: when this returns it neither runs nor is queued.
    pub(crate) fn stop_watchdog(self: &Arc<Self>) {
        self.stopping.store(true, Relaxed);
        cancel_delayed_work_sync(self);
    }

    /// One watchdog pass at `now` (ms): breaks the disk if a request is late, then consumes
    /// whatever responses wait (an interrupt may have been lost).
    fn watchdog_pass(&self, now: u64) {
        let late = {
            let mut g = self.inner.lock();
            let late = !g.broken
                && g.inflight
                    .iter()
                    .zip(g.queued_ms.iter())
                    .any(|(rq, t)| rq.is_some() && is_late(*t, now));
            if late {
                self.set_broken(&mut g, "a request got no answer in 30 s");
            }
            late
        };
        if late {
            self.fail_inflight();
        } else {
            self.process();
        }
    }

    /// Consumes the responses the host published (probe, watchdog) and ends their requests,
    /// [`BATCH`] at a time outside the lock.
    pub(crate) fn process(&self) {
        self.process_irq(0);
    }

    /// [`Self::process`] for the interrupt handler entered at TSC `irq` (0: not from an
    /// interrupt, or [`HOPS`] is off).
    fn process_irq(&self, irq: u64) {
        let mut buf = [0u8; 8];
        loop {
            let mut batch: [Option<(Rq, Result, u64)>; BATCH] = Default::default();
            let mut n = 0;
            let mut more = false;
            let mut broken = false;
            {
                let mut g = self.inner.lock();
                if g.broken {
                    broken = true;
                } else {
                    loop {
                        if n == BATCH {
                            more = true;
                            break;
                        }
                        if g.fe.backend_failed(&self.mem) {
                            self.set_broken(&mut g, "host marked the ring failed");
                            broken = true;
                            break;
                        }
                        let r = g.fe.pop_response(&self.mem, &mut buf);
                        match r {
                            Ok(Some(rsp)) => match self.take(&mut g, rsp, &buf) {
                                Outcome::End(rq, res) => {
                                    let published = usize::try_from(rsp.id)
                                        .ok()
                                        .and_then(|t| g.published_tsc.get(t))
                                        .copied()
                                        .unwrap_or(0);
                                    if let Some(b) = batch.get_mut(n) {
                                        *b = Some((rq, res, published));
                                        n += 1;
                                    }
                                }
                                Outcome::None => {}
                                Outcome::Broken(why, rq) => {
                                    vd_warn_ratelimited!(
                                        "vdb{}: response id {} status {}: {}\n",
                                        self.index,
                                        rsp.id,
                                        rsp.status,
                                        why
                                    );
                                    self.set_broken(&mut g, why);
                                    if let (Some(rq), Some(b)) = (rq, batch.get_mut(n)) {
                                        *b = Some((rq, Err(EIO), 0));
                                    }
                                    broken = true;
                                    break;
                                }
                            },
                            Ok(None) => {
                                if !g.fe.enable_irq(&self.mem) {
                                    break;
                                }
                            }
                            Err(e) => {
                                self.set_broken(&mut g, ring_error(e));
                                broken = true;
                                break;
                            }
                        }
                    }
                }
            }
            for (rq, res, published) in batch.iter_mut().filter_map(Option::take) {
                let id = u64::from(rq.tag());
                self.finish(rq, res);
                if HOPS.on() {
                    HOPS.record([id, published, irq, tsc()]);
                }
            }
            if broken {
                self.fail_inflight();
                return;
            }
            if !more {
                return;
            }
        }
    }
}

fn ring_error(e: RingError) -> &'static str {
    match e {
        RingError::BadResponseConsumer { .. } => "response producer index out of range",
        RingError::BadLength { .. } => "response length larger than a slot",
        _ => e.name(),
    }
}

#[vtable]
impl Operations for VdBlk {
    type QueueData = Arc<Shared>;

    fn queue_rq(shared: ArcBorrow<'_, Shared>, rq: Rq, is_last: bool) -> Result {
        shared.submit(rq, is_last)
    }

    fn commit_rqs(shared: ArcBorrow<'_, Shared>) {
        shared.commit();
    }

    fn complete(rq: Rq) {
        // Requests are ended directly (`Request::end`), never through `Request::complete`.
        let _ = mq::Request::end(rq, Err(EIO));
    }
}

/// The interrupt handler: MSI-X vector 0 means "responses may be waiting".
pub(crate) struct IrqHandler {
    pub(crate) shared: Arc<Shared>,
}

impl kernel::irq::Handler for IrqHandler {
    fn handle(&self) -> kernel::irq::IrqReturn {
        self.shared.process_irq(if HOPS.on() { tsc() } else { 0 });
        kernel::irq::IrqReturn::Handled
    }
}

#[kernel::prelude::kunit_tests(vd_front_disk)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_late_after_the_timeout_only() {
        assert!(!is_late(1000, 1000));
        assert!(!is_late(1000, 1000 + REQUEST_TIMEOUT_MS - 1));
        assert!(is_late(1000, 1000 + REQUEST_TIMEOUT_MS));
        // A clock that went backwards (or a stamp from the future) is never late.
        assert!(!is_late(5000, 10));
        assert!(is_late(0, u64::MAX));
    }

    #[test]
    fn the_size_query_id_is_no_tag() {
        // Tags are u32 below the depth (at most 4096): the size query's id never collides.
        assert!(SIZE_ID > u64::from(u32::MAX));
        assert!(SIZE_ID > u64::from(crate::ring::Geometry::MAX_ENTRIES));
    }
}
