// SPDX-License-Identifier: GPL-2.0
//! Routing: which input devices follow the focus, which VM has the focus, and the input handler
//! that feeds routed devices' events to the focused VM, a whole frame at a time.

use crate::queue::{Event, EV_ABS, EV_KEY, EV_REL, EV_SYN, SYN_REPORT};
use crate::uapi::{vdi_match, VdiDevice, VdiRoute};
use crate::vd::input::{DevInfo, HandleRef, InputOps};
use crate::vd::preempt::Graveyard;
use crate::vd::time::now_ns;
use crate::vm::VmSink;
use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex, SpinLockIrq};

/// The letter keys: KEY_Q..KEY_P, KEY_A..KEY_L, KEY_Z..KEY_M (evdev codes follow the layout).
const LETTER_KEYS: [core::ops::RangeInclusive<u16>; 3] = [16..=25, 30..=38, 44..=50];
const REL_X: u16 = 0;
const REL_Y: u16 = 1;
const ABS_X: u16 = 0;
const ABS_Y: u16 = 1;

/// What a device offers, for capability routes.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Caps {
    pub(crate) keyboard: bool,
    pub(crate) mouse: bool,
    pub(crate) tablet: bool,
}

/// A route's pattern as a byte string (up to the first NUL).
fn pattern(r: &VdiRoute) -> &[u8] {
    let n = r
        .pattern
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(r.pattern.len());
    &r.pattern[..n]
}

/// Whether route `r` selects a device named `name` at `phys` with `caps`. Pure: KUnit-tested.
pub(crate) fn matches(r: &VdiRoute, name: &[u8], phys: &[u8], caps: Caps) -> bool {
    match r.kind {
        vdi_match::NAME => {
            let p = pattern(r);
            !p.is_empty() && name.windows(p.len()).any(|w| w == p)
        }
        vdi_match::PHYS => !pattern(r).is_empty() && pattern(r) == phys,
        vdi_match::KEYBOARD => caps.keyboard,
        vdi_match::MOUSE => caps.mouse,
        vdi_match::TABLET => caps.tablet,
        _ => false,
    }
}

/// Whether two routes select the same devices (a route's identity; `grab` is a setting of it).
pub(crate) fn same_selection(a: &VdiRoute, b: &VdiRoute) -> bool {
    a.kind == b.kind && pattern(a) == pattern(b)
}

/// Checks a route from userspace: a known kind, a NUL-terminated pattern (non-empty for names
/// and paths), `grab` 0 or 1.
pub(crate) fn validate(r: &VdiRoute) -> Result {
    if !r.pattern.contains(&0) {
        return Err(EINVAL);
    }
    match r.kind {
        vdi_match::NAME | vdi_match::PHYS if pattern(r).is_empty() => Err(EINVAL),
        vdi_match::NAME
        | vdi_match::PHYS
        | vdi_match::KEYBOARD
        | vdi_match::MOUSE
        | vdi_match::TABLET
            if r.grab <= 1 =>
        {
            Ok(())
        }
        _ => Err(EINVAL),
    }
}

fn fixed64(s: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    let n = s.len().min(63);
    out[..n].copy_from_slice(&s[..n]);
    out
}

/// One input device the handler is connected to.
#[pin_data]
pub(crate) struct DevState {
    name: [u8; 64],
    phys: [u8; 64],
    caps: Caps,
    /// A route selects it: its events go to the focused VM.
    routed: AtomicBool,
    grabbed: AtomicBool,
    events: AtomicU64,
    /// Where the device's frames go and which keys it holds there. Taken in the event path
    /// (interrupts off).
    #[pin]
    latch: SpinLockIrq<Latch>,
}

/// Key codes `0..=KEY_MAX` (`KEY_MAX` = 0x2ff).
const KEY_CODES: usize = 0x300;

/// The keys a device holds down in one VM: pressed there and not released since. Pure: KUnit.
#[derive(Default)]
pub(crate) struct HeldKeys([u64; KEY_CODES / 64]);

impl HeldKeys {
    /// Notes a key event sent to the VM (`value` 1 press, 0 release, 2 autorepeat).
    pub(crate) fn note(&mut self, code: u16, value: i32) {
        let (w, b) = (usize::from(code) / 64, code % 64);
        let Some(word) = self.0.get_mut(w) else {
            return;
        };
        match value {
            0 => *word &= !(1u64 << b),
            1 => *word |= 1u64 << b,
            _ => {}
        }
    }

    /// Empties the set, calling `f` with each held key in ascending order.
    pub(crate) fn release_all(&mut self, mut f: impl FnMut(u16)) {
        for (w, word) in self.0.iter_mut().enumerate() {
            while *word != 0 {
                let b = word.trailing_zeros();
                *word &= !(1u64 << b);
                // `w < KEY_CODES / 64` and `b < 64`: the code is below KEY_CODES.
                f((w * 64) as u16 + b as u16);
            }
        }
    }
}

/// A device's routing state (behind [`DevState::latch`]).
#[derive(Default)]
struct Latch {
    /// The VM the current frame goes to, latched at the frame's first event and dropped at its
    /// SYN_REPORT, so a focus change never splits a frame.
    frame: Option<Arc<VmSink>>,
    /// The VM the device's last frame went to, and the keys held down there. When a frame
    /// goes elsewhere (the focus moved, or went nowhere), those keys are released in that VM
    /// first, in a frame of their own: a key pressed before a switch never sticks in the VM
    /// left behind (its physical release goes to the new focus, whose input core ignores the
    /// release of a key it never saw pressed).
    last: Option<Arc<VmSink>>,
    /// Empty while `last` is `None`: keys are noted only in a latched `frame`, which is `last`,
    /// and whatever clears `last` empties it.
    held: HeldKeys,
}

impl Latch {
    /// Latches the target of a new frame (`to`), releasing the keys held in the previous one
    /// if that was another VM.
    fn start_frame(&mut self, to: Option<Arc<VmSink>>) {
        let same = match (&self.last, &to) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            if let Some(old) = self.last.take() {
                let mut any = false;
                let now = now_ns();
                self.held.release_all(|code| {
                    any = true;
                    old.deliver(Event {
                        ty: EV_KEY,
                        code,
                        value: 0,
                        time_ns: now,
                    });
                });
                if any {
                    old.deliver(Event {
                        ty: EV_SYN,
                        code: SYN_REPORT,
                        value: 0,
                        time_ns: now,
                    });
                }
            }
            // `held` is empty now: emptied by `release_all`, or already empty without a `last`.
            self.last = to.clone();
        }
        self.frame = to;
    }
}

impl DevState {
    fn name(&self) -> &[u8] {
        let n = self.name.iter().position(|&b| b == 0).unwrap_or(64);
        &self.name[..n]
    }
    fn phys(&self) -> &[u8] {
        let n = self.phys.iter().position(|&b| b == 0).unwrap_or(64);
        &self.phys[..n]
    }
}

/// The fields protected by [`Router::ctl`]: read by the event path (atomic, interrupts off)
/// and changed by ioctls.
pub(crate) struct Ctl {
    /// VM id with the focus (0: none).
    pub(crate) focus: u32,
    /// Every VM sink on the host.
    pub(crate) vms: KVec<Arc<VmSink>>,
    /// Routes set by the administrator.
    pub(crate) routes: KVec<VdiRoute>,
}

impl Ctl {
    /// The sink of VM `id`.
    pub(crate) fn vm(&self, id: u32) -> Option<Arc<VmSink>> {
        self.vms.iter().find(|v| v.vm_id == id).cloned()
    }
}

/// A connected device and its handle.
struct DevEntry {
    dev: Arc<DevState>,
    handle: HandleRef,
}

/// The fields protected by [`Router::devices`] (process context only).
struct Devices {
    list: KVec<DevEntry>,
}

/// The module's router, for the input handler callbacks and the files (set once, by
/// [`publish`] from module init).
static ROUTER: AtomicPtr<Router> = AtomicPtr::new(core::ptr::null_mut());

/// Makes `r` the host-wide router answered by [`router`].
///
/// # Safety
///
/// Called once, before the input handler and the misc device are registered; `r` is pinned and
/// outlives both registrations (the only callers of [`router`]; files pin the module).
pub(crate) unsafe fn publish(r: &Router) {
    let p: *const Router = r;
    ROUTER.store(p.cast_mut(), Release);
}

/// The host-wide router.
pub(crate) fn router() -> &'static Router {
    // SAFETY: `ROUTER` was set by `publish`, before the input handler and the misc device were
    // registered, to a router that outlives both (its safety contract); they are the only
    // callers.
    unsafe { &*ROUTER.load(Acquire) }
}

/// Host-wide input state.
#[pin_data]
pub(crate) struct Router {
    #[pin]
    pub(crate) ctl: SpinLockIrq<Ctl>,
    /// Connected devices; held while grabbing or releasing, and by `disconnect` while removing
    /// one, so a handle is never used after its device went.
    #[pin]
    devices: Mutex<Devices>,
    /// vCPU thread hooks: made and retired here; a hook whose file closed while its thread
    /// lives on waits here until the thread is gone (see `rust/vd/preempt.rs`).
    #[pin]
    pub(crate) hooks: Graveyard<VmSink>,
}

impl Router {
    pub(crate) fn new(module: &'static ThisModule) -> impl PinInit<Self> {
        pin_init!(Self {
            ctl <- kernel::new_spinlock_irq!(Ctl { focus: 0, vms: KVec::new(), routes: KVec::new() }),
            devices <- kernel::new_mutex!(Devices { list: KVec::new() }),
            hooks <- Graveyard::new(module),
        })
    }

    fn routed_by(&self, d: &DevState) -> Option<bool> {
        let ctl = self.ctl.lock();
        let mut grab = None;
        for r in ctl.routes.iter() {
            if matches(r, d.name(), d.phys(), d.caps) {
                grab = Some(grab.unwrap_or(false) || r.grab == 1);
            }
        }
        grab
    }

    /// Re-evaluates every device against the routes: routes, grabs and releases.
    pub(crate) fn apply_routes(&self) {
        let devs = self.devices.lock();
        for e in devs.list.iter() {
            let want = self.routed_by(&e.dev);
            e.dev.routed.store(want.is_some(), Relaxed);
            let grab = want == Some(true);
            if grab != e.dev.grabbed.load(Relaxed) {
                // SAFETY: `e` is in the list, and `disconnect` removes it under this same lock
                // before the handle goes; we are in process context.
                let ok = unsafe {
                    if grab {
                        e.handle.grab().is_ok()
                    } else {
                        e.handle.release();
                        true
                    }
                };
                if ok {
                    e.dev.grabbed.store(grab, Relaxed);
                }
            }
        }
    }

    /// The `index`-th device.
    pub(crate) fn device(&self, index: u32) -> Option<VdiDevice> {
        let devs = self.devices.lock();
        let e = devs.list.get(index as usize)?;
        // The VM its current frame goes to, or else the one its next frame would go to.
        let latched = e.dev.latch.lock().frame.as_ref().map(|v| v.vm_id);
        let routed = e.dev.routed.load(Relaxed);
        let vm_id = latched.unwrap_or_else(|| if routed { self.ctl.lock().focus } else { 0 });
        Some(VdiDevice {
            index,
            routed: routed as u32,
            grabbed: e.dev.grabbed.load(Relaxed) as u32,
            vm_id,
            events: e.dev.events.load(Relaxed),
            name: e.dev.name,
            phys: e.dev.phys,
        })
    }

    /// Drops every device's latched frame target and held keys that are `vm`'s (the VM is
    /// going away: nothing is released in it).
    pub(crate) fn forget_vm(&self, vm: &Arc<VmSink>) {
        let devs = self.devices.lock();
        for e in devs.list.iter() {
            let mut l = e.dev.latch.lock();
            if l.frame.as_ref().is_some_and(|v| Arc::ptr_eq(v, vm)) {
                l.frame = None;
            }
            if l.last.as_ref().is_some_and(|v| Arc::ptr_eq(v, vm)) {
                l.last = None;
                l.held = HeldKeys::default();
            }
        }
    }
}

/// The input handler's side of the router (the router itself lives in the module).
pub(crate) struct Ops;

impl InputOps for Ops {
    type Dev = Arc<DevState>;

    fn connect(&self, info: &DevInfo<'_>) -> Result<Arc<DevState>> {
        let caps = Caps {
            keyboard: info.has_ev(EV_KEY)
                && LETTER_KEYS
                    .iter()
                    .all(|r| r.clone().all(|k| info.has_key(k))),
            mouse: info.has_ev(EV_REL) && info.has_rel(REL_X) && info.has_rel(REL_Y),
            tablet: info.has_ev(EV_ABS) && info.has_abs(ABS_X) && info.has_abs(ABS_Y),
        };
        Arc::pin_init(
            try_pin_init!(DevState {
                name: fixed64(info.name().to_bytes()),
                phys: fixed64(info.phys().to_bytes()),
                caps,
                routed: AtomicBool::new(false),
                grabbed: AtomicBool::new(false),
                events: AtomicU64::new(0),
                latch <- kernel::new_spinlock_irq!(Latch::default()),
            }),
            GFP_KERNEL,
        )
    }

    fn opened(&self, dev: &Arc<DevState>, handle: HandleRef) {
        let r = router();
        {
            let mut devs = r.devices.lock();
            if devs
                .list
                .push(
                    DevEntry {
                        dev: dev.clone(),
                        handle,
                    },
                    GFP_KERNEL,
                )
                .is_err()
            {
                crate::vd_warn_ratelimited!("vd_input: out of memory: device not routable\n");
                return;
            }
        }
        r.apply_routes();
    }

    fn event(&self, dev: &Arc<DevState>, ty: u16, code: u16, value: i32) {
        if !dev.routed.load(Relaxed) {
            return;
        }
        dev.events.fetch_add(1, Relaxed);
        let e = Event {
            ty,
            code,
            value,
            time_ns: now_ns(),
        };
        let mut latch = dev.latch.lock();
        if latch.frame.is_none() {
            let to = {
                let ctl = router().ctl.lock();
                ctl.vm(ctl.focus)
            };
            latch.start_frame(to);
        }
        if let Some(vm) = latch.frame.as_ref() {
            vm.deliver(e);
            if ty == EV_KEY {
                latch.held.note(code, value);
            }
        }
        if ty == EV_SYN && code == SYN_REPORT {
            latch.frame = None;
        }
    }

    fn disconnect(&self, dev: &Arc<DevState>) {
        let r = router();
        let mut devs = r.devices.lock();
        if let Some(i) = devs.list.iter().position(|e| Arc::ptr_eq(&e.dev, dev)) {
            let _ = devs.list.remove(i);
        }
        drop(devs);
        // A frame cut off by the unplug ends here: the VM got what was sent. (The input core
        // released the device's held keys through `event` before disconnecting it.)
        *dev.latch.lock() = Latch::default();
    }
}

#[kernel::prelude::kunit_tests(vd_input_route)]
mod tests {
    use super::*;

    fn route(kind: u32, p: &[u8]) -> VdiRoute {
        let mut r = VdiRoute {
            kind,
            grab: 0,
            pattern: [0; 64],
        };
        r.pattern[..p.len()].copy_from_slice(p);
        r
    }

    #[test]
    fn name_routes_match_substrings_only() {
        let none = Caps::default();
        assert!(matches(
            &route(vdi_match::NAME, b"vd test kbd"),
            b"vd test kbd 1",
            b"",
            none
        ));
        assert!(matches(
            &route(vdi_match::NAME, b"kbd"),
            b"vd test kbd",
            b"",
            none
        ));
        assert!(!matches(
            &route(vdi_match::NAME, b"mouse"),
            b"vd test kbd",
            b"",
            none
        ));
        // An empty pattern matches nothing.
        assert!(!matches(
            &route(vdi_match::NAME, b""),
            b"anything",
            b"",
            none
        ));
    }

    #[test]
    fn phys_routes_match_exactly() {
        let none = Caps::default();
        assert!(matches(
            &route(vdi_match::PHYS, b"usb-1/input0"),
            b"x",
            b"usb-1/input0",
            none
        ));
        assert!(!matches(
            &route(vdi_match::PHYS, b"usb-1"),
            b"x",
            b"usb-1/input0",
            none
        ));
    }

    #[test]
    fn capability_routes() {
        let kbd = Caps {
            keyboard: true,
            ..Default::default()
        };
        let mouse = Caps {
            mouse: true,
            ..Default::default()
        };
        assert!(matches(&route(vdi_match::KEYBOARD, b""), b"", b"", kbd));
        assert!(!matches(&route(vdi_match::KEYBOARD, b""), b"", b"", mouse));
        assert!(matches(&route(vdi_match::MOUSE, b""), b"", b"", mouse));
        assert!(!matches(&route(vdi_match::TABLET, b""), b"", b"", mouse));
        assert!(!matches(&route(99, b"x"), b"x", b"x", kbd));
    }

    #[test]
    fn validation_refuses_bad_routes() {
        assert!(validate(&route(vdi_match::NAME, b"")).is_err());
        assert!(validate(&route(vdi_match::NAME, b"k")).is_ok());
        assert!(validate(&route(0, b"k")).is_err());
        let mut r = route(vdi_match::MOUSE, b"");
        r.grab = 2;
        assert!(validate(&r).is_err());
        // A pattern without its NUL is refused.
        let mut r = route(vdi_match::NAME, b"k");
        r.pattern = [b'k'; 64];
        assert!(validate(&r).is_err());
    }

    #[test]
    fn held_keys_are_released_once_in_order() {
        let mut h = HeldKeys::default();
        h.note(30, 1);
        h.note(2, 1);
        h.note(0x2ff, 1); // KEY_MAX
        h.note(48, 1);
        h.note(48, 0); // released: not held
        h.note(30, 2); // autorepeat: still held, once
        h.note(0x300, 1); // past KEY_MAX: ignored
        let mut got = KVec::new();
        h.release_all(|c| {
            let _ = got.push(c, GFP_KERNEL);
        });
        assert_eq!(&got[..], &[2, 30, 0x2ff]);
        let mut again = 0;
        h.release_all(|_| again += 1);
        assert_eq!(again, 0);
    }

    #[test]
    fn route_identity_ignores_grab() {
        let a = route(vdi_match::NAME, b"kbd");
        let mut b = route(vdi_match::NAME, b"kbd");
        b.grab = 1;
        b.pattern[10] = b'x'; // after the NUL: not part of the pattern
        assert!(same_selection(&a, &b));
        assert!(!same_selection(&a, &route(vdi_match::NAME, b"kb")));
        assert!(!same_selection(&a, &route(vdi_match::PHYS, b"kbd")));
    }
}
