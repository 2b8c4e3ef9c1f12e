// SPDX-License-Identifier: GPL-2.0
//! One vd input device (SPEC-13): the host's event ring in BAR2 becomes the evdev device
//! "vd-input".
//!
//! The host produces into the response half of the ring: each slot a response header (`id` a
//! sequence number, `status` 0, `len` 16) and one event (`time_ns: u64, ty: u16, code: u16,
//! value: i32`, little-endian). MSI-X vector 0 says "events may be waiting": the handler copies
//! each slot out once, checks it and reports the event with `input_event` in ring order (the
//! host's own `EV_SYN`/`SYN_REPORT` ends each frame), moves `rsp_cons`, rings the doorbell when
//! the host asked for it (`req_event`: it has events waiting for room) and re-arms the
//! interrupt (`rsp_event = rsp_cons`, EVENT_IDX style). Nothing else is ever written.
//!
//! The host is not trusted: a producer index more than `entries` ahead or a slot whose length
//! is not 16 *breaks* the ring: one log line, nothing more is consumed, the input device stays
//! registered and silent until unbind. Types and codes outside the device's capabilities are
//! dropped by the input core. One interrupt consumes at most [`BUDGET`] events; the rest (a host
//! that refills as fast as the guest drains) is left to a work item, so a host cannot keep a
//! guest CPU in its interrupt handler.
//!
//! Capabilities (a fixed superset for now): `EV_KEY` keys 1..=248 and `BTN_LEFT`,
//! `BTN_RIGHT`, `BTN_MIDDLE`, `BTN_SIDE`, `BTN_EXTRA`, `BTN_TOUCH`; `EV_REL` `REL_X`, `REL_Y`,
//! `REL_HWHEEL`, `REL_WHEEL`; `EV_ABS` `ABS_X`, `ABS_Y` in 0..=32767; `EV_MSC` `MSC_SCAN`;
//! `EV_SYN` (set by the input core). No `EV_REP`: the host's device repeats keys itself, if at
//! all. Evdev's queue per reader is deep ([`EVENTS_PER_PACKET`]): the host's bursts arrive
//! faster than a reader runs. `SYN_DROPPED` from the ring is reported like any event, but the
//! input core ignores that code from drivers (only evdev's own overflow makes one).

use crate::disk::BAR0_LEN;
use crate::geometry::{InputGeometry, INPUT_EVENT_LEN, INPUT_SLOT};
use crate::ring::{self, need_event, Geometry, RingMem};
use crate::vd::caps::{InputCaps, CAPS_LEN, KEY_CODES, MSC_CODES, REL_AXES};
use crate::vd::inputdev::{InputDev, InputDevBuilder};
use crate::vd::memremap::Memremap;
use crate::vd_warn_ratelimited;
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use kernel::bindings;
use kernel::io::Io;
use kernel::new_spinlock_irq;
use kernel::pci::DevresBar;
use kernel::prelude::*;
use kernel::sync::{Arc, SpinLockIrq};
use kernel::workqueue::{self, impl_has_delayed_work, new_delayed_work, DelayedWork, WorkItem};

/// BAR0: the doorbell register.
const DOORBELL: usize = 12;
/// Most events one interrupt (or one work run) consumes.
pub(crate) const BUDGET: u32 = 1024;
/// `hint_events_per_packet` of the device: evdev gives each reader a queue of 8 times this many
/// events (8192, 192 KiB). The host delivers in bursts (a whole ring's worth, or its queue after
/// the guest was descheduled) that arrive in interrupt context faster than a reader is
/// scheduled; evdev's default for these capabilities (128 events) overflows into SYN_DROPPED.
const EVENTS_PER_PACKET: u32 = 1024;
/// The evdev device's name.
pub(crate) const NAME: &CStr = c"vd-input";

/// One event as read from a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RingEvent {
    pub(crate) ty: u16,
    pub(crate) code: u16,
    pub(crate) value: i32,
}

/// Why a ring is broken (the log line names it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Broken {
    /// `rsp_prod` is more than `entries` ahead of what the guest consumed.
    Producer { prod: u32, cons: u32 },
    /// A slot's `len` is not 16.
    Length { len: u32 },
}

/// Checks how many events the host published: `prod - cons`, at most `entries`.
pub(crate) const fn available(prod: u32, cons: u32, entries: u32) -> Result<u32, Broken> {
    let n = prod.wrapping_sub(cons);
    if n > entries {
        Err(Broken::Producer { prod, cons })
    } else {
        Ok(n)
    }
}

/// Decodes one slot's bytes (copied out once): the header's `len` must be 16.
pub(crate) fn decode(slot: &[u8; INPUT_SLOT]) -> Result<RingEvent, Broken> {
    let le16 = |o: usize| u16::from_le_bytes([slot[o], slot[o + 1]]);
    let le32 = |o: usize| [slot[o], slot[o + 1], slot[o + 2], slot[o + 3]];
    let len = u32::from_le_bytes(le32(12));
    if len as usize != INPUT_EVENT_LEN {
        return Err(Broken::Length { len });
    }
    let e = ring::RSP_HDR;
    Ok(RingEvent {
        ty: le16(e + 8),
        code: le16(e + 10),
        value: i32::from_le_bytes(le32(e + 12)),
    })
}

/// The fields protected by [`InputShared::inner`].
struct Inner {
    /// Next slot to consume (the guest's private copy of `rsp_cons`).
    cons: u32,
    /// The host broke the ring: nothing is consumed any more.
    broken: bool,
    /// The evdev device; taken (and unregistered) by `unbind`.
    dev: Option<InputDev>,
}

/// What one consumption pass ended with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Drained and re-armed (or broken, or going away): wait for the next interrupt.
    Idle,
    /// The budget ran out with events still waiting.
    More,
}

/// State shared by the interrupt handler, the work item and the driver.
#[pin_data]
pub(crate) struct InputShared {
    /// BAR2: the ring.
    mem: Memremap,
    geo: Geometry,
    doorbell: u32,
    /// BAR0, for the doorbell; revoked when the device goes away.
    bar0: DevresBar<BAR0_LEN>,
    /// Spinlock with interrupts off: taken in the interrupt handler and the work item.
    #[pin]
    inner: SpinLockIrq<Inner>,
    /// Consumes what an interrupt left over (budget exhausted).
    #[pin]
    work: DelayedWork<InputShared>,
    /// Unbind started: the handler and the work do nothing, the work is not queued again.
    stopping: AtomicBool,
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self> for InputShared { self.work }
}

impl WorkItem for InputShared {
    type Pointer = Arc<InputShared>;

    fn run(this: Arc<InputShared>) {
        this.consume();
    }
}

impl InputShared {
    /// Attaches to the ring `geo` describes in `mem` and registers the evdev device (child of
    /// `parent`, physical path `phys`).
    pub(crate) fn new(
        mem: Memremap,
        geo: InputGeometry,
        bar0: DevresBar<BAR0_LEN>,
        parent: &kernel::device::Device,
        phys: &CStr,
    ) -> Result<Arc<Self>> {
        let caps = read_caps(&mem, &geo)?;
        let dev = register(parent, phys, caps.as_deref())?;
        drop(caps);
        let cons = mem.load_u32(ring::OFF_RSP_CONS);
        let doorbell = geo.doorbell();
        let geo = geo.ring();
        Arc::pin_init(
            pin_init!(Self {
                mem,
                geo,
                doorbell,
                bar0,
                inner <- new_spinlock_irq!(Inner {
                    cons,
                    broken: false,
                    dev: Some(dev),
                }, "vd_front::InputShared::inner"),
                work <- new_delayed_work!("vd_front::InputShared::work"),
                stopping: AtomicBool::new(false),
            }),
            GFP_KERNEL,
        )
    }

    /// Asks for an interrupt at the next event (after the caller made the interrupt live) and
    /// consumes what is already there.
    pub(crate) fn start(self: &Arc<Self>) {
        self.consume();
    }

    /// Rings the host's doorbell.
    fn kick(&self) {
        if let Some(bar) = self.bar0.try_access() {
            (&*bar).write32(self.doorbell, DOORBELL);
        }
    }

    /// Marks the ring broken (first time: one log line).
    fn set_broken(&self, g: &mut Inner, why: Broken) {
        if !g.broken {
            g.broken = true;
            match why {
                Broken::Producer { prod, cons } => pr_err!(
                    "vd-input: the host broke the ring (rsp_prod {} is more than {} ahead of \
                     rsp_cons {}): no more input from this device\n",
                    prod,
                    self.geo.entries(),
                    cons
                ),
                Broken::Length { len } => pr_err!(
                    "vd-input: the host broke the ring (event slot length {}, not {}): no more \
                     input from this device\n",
                    len,
                    INPUT_EVENT_LEN
                ),
            }
        } else {
            vd_warn_ratelimited!("vd-input: ring still broken\n");
        }
    }

    /// One pass under the lock: consumes up to [`BUDGET`] events, reports them, frees their
    /// slots, re-arms the interrupt. Returns whether to kick and how it ended.
    fn pass(&self, g: &mut Inner) -> (bool, Pass) {
        let mut kick = false;
        let mut budget = BUDGET;
        let entries = self.geo.entries();
        loop {
            if g.broken || self.stopping.load(Relaxed) {
                return (kick, Pass::Idle);
            }
            let Some(dev) = g.dev.as_ref() else {
                return (kick, Pass::Idle);
            };
            let prod = self.mem.load_acquire_u32(ring::OFF_RSP_PROD);
            let n = match available(prod, g.cons, entries) {
                Ok(n) => n,
                Err(why) => {
                    self.set_broken(g, why);
                    return (kick, Pass::Idle);
                }
            };
            if n == 0 {
                // Re-arm, then look again: an event published meanwhile sent no interrupt.
                self.mem.store_u32(ring::OFF_RSP_EVENT, g.cons);
                self.mem.fence();
                if self.mem.load_acquire_u32(ring::OFF_RSP_PROD) == g.cons {
                    return (kick, Pass::Idle);
                }
                // Counted: a host that flips `rsp_prod` back and forth cannot keep us here.
                budget = budget.saturating_sub(1);
                if budget == 0 {
                    return (kick, Pass::More);
                }
                continue;
            }
            if budget == 0 {
                return (kick, Pass::More);
            }
            let old = g.cons;
            let mut cons = old;
            let mut bad = None;
            for _ in 0..n.min(budget) {
                let mut slot = [0u8; INPUT_SLOT];
                self.mem.read(self.geo.rsp_slot(cons), &mut slot);
                match decode(&slot) {
                    Ok(e) => dev.report(e.ty, e.code, e.value),
                    Err(why) => {
                        bad = Some(why);
                        break;
                    }
                }
                cons = cons.wrapping_add(1);
            }
            budget = budget.saturating_sub(cons.wrapping_sub(old));
            g.cons = cons;
            if cons != old {
                self.mem.store_release_u32(ring::OFF_RSP_CONS, cons);
                // The host stores `req_event`, then re-reads `rsp_cons`: a full fence between
                // our store and our load, so one of the two sees the other.
                self.mem.fence();
                kick |= need_event(self.mem.load_u32(ring::OFF_REQ_EVENT), cons, old);
            }
            if let Some(why) = bad {
                self.set_broken(g, why);
                return (kick, Pass::Idle);
            }
        }
    }

    /// Consumes what the host published (interrupt handler, work item, start).
    pub(crate) fn consume(self: &Arc<Self>) {
        let (kick, pass) = {
            let mut g = self.inner.lock();
            self.pass(&mut g)
        };
        if kick {
            self.kick();
        }
        if pass == Pass::More && !self.stopping.load(Relaxed) {
            // Already queued: that run picks these up too.
            let _ = workqueue::system_power_efficient().enqueue_delayed(self.clone(), 0);
        }
    }

    /// Unbind, part one: from now on the interrupt handler and the work item do nothing and
    /// the work item is not queued again.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Relaxed);
    }

    /// Unbind, part two (after [`Self::stop`] and after the interrupt handler was synchronised
    /// or freed): waits for the work item and unregisters the evdev device.
    pub(crate) fn shut_down(self: &Arc<Self>) {
        self.stopping.store(true, Relaxed);
        crate::vd::workqueue::cancel_delayed_work_sync(self);
        let dev = self.inner.lock().dev.take();
        // Unregistering sleeps: outside the lock.
        drop(dev);
    }
}

/// The evdev device with SPEC-13's capabilities.
/// The host's capabilities block (`vd-ring/src/caps.rs`), copied out of the shared memory once
/// and checked: `None` when the host gave none (or a block that fails the checks, logged: the
/// device then gets the default set).
fn read_caps(mem: &Memremap, geo: &InputGeometry) -> Result<Option<KBox<InputCaps>>> {
    let Some(off) = geo.caps() else {
        return Ok(None);
    };
    let mut b = KBox::new([0u8; CAPS_LEN], GFP_KERNEL)?;
    for (i, w) in b.chunks_exact_mut(4).enumerate() {
        // In the mapping: `validate_input` checked `off + CAPS_LEN <= map_len` (type invariant).
        w.copy_from_slice(&mem.load_u32(off + i * 4).to_le_bytes());
    }
    match InputCaps::decode(&b) {
        Ok(Some(c)) => Ok(Some(KBox::new(c, GFP_KERNEL)?)),
        Ok(None) => Ok(None),
        Err(e) => {
            vd_warn_ratelimited!(
                "vd_front: input: the host's capabilities block is refused ({}): default set\n",
                e.reason()
            );
            Ok(None)
        }
    }
}

/// Registers the evdev device with the host's capabilities, or else the default set (a
/// keyboard, a 5-button mouse with wheels, a tablet 0..32767).
fn register(
    parent: &kernel::device::Device,
    phys: &CStr,
    caps: Option<&InputCaps>,
) -> Result<InputDev> {
    let mut b = InputDevBuilder::new(NAME, phys, parent)?
        .id(bindings::BUS_VIRTUAL as u16, 0x1af4, 0x1110, 1)
        .events_per_packet(EVENTS_PER_PACKET);
    if let Some(c) = caps {
        // Checked by `decode`: only KEY, REL, ABS (no multitouch) and MSC codes, valid ranges.
        for k in (0..KEY_CODES).filter(|&k| c.has_key(k)) {
            b = b.capability(bindings::EV_KEY, k as u32);
        }
        for r in (0..REL_AXES).filter(|r| c.rel & (1 << r) != 0) {
            b = b.capability(bindings::EV_REL, r as u32);
        }
        for (a, x) in c.absinfo.iter().enumerate() {
            if c.abs & (1 << a) != 0 {
                b = b.abs_params(a as u32, x.min, x.max, x.fuzz, x.flat);
            }
        }
        for m in (0..MSC_CODES).filter(|m| c.msc & (1 << m) != 0) {
            b = b.capability(bindings::EV_MSC, m as u32);
        }
        return b.register();
    }
    for key in 1..=248 {
        b = b.capability(bindings::EV_KEY, key);
    }
    for btn in [
        bindings::BTN_LEFT,
        bindings::BTN_RIGHT,
        bindings::BTN_MIDDLE,
        bindings::BTN_SIDE,
        bindings::BTN_EXTRA,
        bindings::BTN_TOUCH,
    ] {
        b = b.capability(bindings::EV_KEY, btn);
    }
    for rel in [
        bindings::REL_X,
        bindings::REL_Y,
        bindings::REL_HWHEEL,
        bindings::REL_WHEEL,
    ] {
        b = b.capability(bindings::EV_REL, rel);
    }
    b.abs_params(bindings::ABS_X, 0, 32767, 0, 0)
        .abs_params(bindings::ABS_Y, 0, 32767, 0, 0)
        .capability(bindings::EV_MSC, bindings::MSC_SCAN)
        .register()
}

/// The interrupt handler: MSI-X vector 0 means "events may be waiting".
pub(crate) struct IrqHandler {
    pub(crate) shared: Arc<InputShared>,
}

impl kernel::irq::Handler for IrqHandler {
    fn handle(&self) -> kernel::irq::IrqReturn {
        self.shared.consume();
        kernel::irq::IrqReturn::Handled
    }
}

#[kernel::prelude::kunit_tests(vd_front_input)]
mod tests {
    use super::*;

    fn slot(len: u32, ty: u16, code: u16, value: i32) -> [u8; INPUT_SLOT] {
        let mut s = [0u8; INPUT_SLOT];
        s[..8].copy_from_slice(&77u64.to_le_bytes());
        s[12..16].copy_from_slice(&len.to_le_bytes());
        s[16..24].copy_from_slice(&123u64.to_le_bytes());
        s[24..26].copy_from_slice(&ty.to_le_bytes());
        s[26..28].copy_from_slice(&code.to_le_bytes());
        s[28..32].copy_from_slice(&value.to_le_bytes());
        s
    }

    #[test]
    fn slots_decode_little_endian_and_need_len_16() {
        assert_eq!(
            decode(&slot(16, 1, 30, 1)),
            Ok(RingEvent {
                ty: 1,
                code: 30,
                value: 1
            })
        );
        assert_eq!(decode(&slot(16, 2, 0, -5)).map(|e| e.value), Ok(-5));
        assert_eq!(decode(&slot(15, 1, 30, 1)), Err(Broken::Length { len: 15 }));
        assert_eq!(
            decode(&slot(u32::MAX, 1, 30, 1)),
            Err(Broken::Length { len: u32::MAX })
        );
    }

    #[test]
    fn the_producer_may_run_at_most_a_ring_ahead() {
        assert_eq!(available(0, 0, 16), Ok(0));
        assert_eq!(available(16, 0, 16), Ok(16));
        assert_eq!(
            available(17, 0, 16),
            Err(Broken::Producer { prod: 17, cons: 0 })
        );
        // Wrapping indices.
        assert_eq!(available(3, u32::MAX - 2, 16), Ok(6));
        // Behind the consumer: a huge distance, broken.
        assert!(available(5, 10, 16).is_err());
    }
}
