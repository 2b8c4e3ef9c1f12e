// SPDX-License-Identifier: GPL-2.0
//! The kernel's input handler API (`struct input_handler`, `struct input_handle`) behind safe
//! types: [`InputHandler`] registers a handler that is offered every input device; the driver's
//! [`InputOps`] decides which to connect to, gets each event, and is told when a device goes.
//!
//! Contexts (from `drivers/input/input.c`): `connect` and `disconnect` run in process context
//! with the input core's mutex held; `event` runs in atomic context, under the device's
//! `event_lock` with interrupts off, possibly from the device's interrupt handler.

use core::ffi::{c_int, c_uint, c_void, CStr};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::bindings;
use kernel::ffi::c_char;
use kernel::prelude::*;
use kernel::types::Opaque;

/// What an input handler does with devices.
pub(crate) trait InputOps: Send + Sync + 'static {
    /// Per-device state.
    type Dev: Send + Sync + 'static;
    /// A device appeared: `Ok` connects to it with that state, `Err` leaves it alone.
    fn connect(&self, info: &DevInfo<'_>) -> Result<Self::Dev>;
    /// The device is connected and open. `handle` stays valid until [`Self::disconnect`] for
    /// the same device returns.
    fn opened(&self, dev: &Self::Dev, handle: HandleRef);
    /// One event (atomic context: no sleeping, no mutexes).
    fn event(&self, dev: &Self::Dev, ty: u16, code: u16, value: i32);
    /// The device is going away; after this returns its handle is invalid and no more events
    /// arrive for it.
    fn disconnect(&self, dev: &Self::Dev);
}

/// What `connect` may look at of a device.
pub(crate) struct DevInfo<'a> {
    dev: &'a bindings::input_dev,
}

/// The string at `p`, or an empty one for a null `p`.
///
/// # Safety
///
/// A non-null `p` points to a NUL-terminated string that stays valid and unchanged for `'a`.
unsafe fn cstr_or_empty<'a>(p: *const c_char) -> &'a CStr {
    if p.is_null() {
        return c"";
    }
    // SAFETY: per the function's contract.
    unsafe { CStr::from_ptr(p.cast()) }
}

fn test_bit(bits: &[usize], n: usize) -> bool {
    let w = usize::BITS as usize;
    bits.get(n / w)
        .is_some_and(|word| (word >> (n % w)) & 1 != 0)
}

impl DevInfo<'_> {
    /// Device name (may be empty); borrowed from `self`, so it cannot outlive the `connect`
    /// call that lent the device.
    pub(crate) fn name(&self) -> &CStr {
        // SAFETY: `DevInfo` only exists during `connect`, which the input core runs with the
        // device registered and its mutex held; `name` is set before registration and not
        // changed while the device is registered. The result borrows `self`.
        unsafe { cstr_or_empty(self.dev.name) }
    }
    /// Physical path (may be empty); borrowed from `self` like [`Self::name`].
    pub(crate) fn phys(&self) -> &CStr {
        // SAFETY: as for `name`; `phys` is set before registration too.
        unsafe { cstr_or_empty(self.dev.phys) }
    }
    /// Whether the device reports event type `ty`.
    pub(crate) fn has_ev(&self, ty: u16) -> bool {
        test_bit(&self.dev.evbit, ty as usize)
    }
    /// Whether the device has key/button `code`.
    pub(crate) fn has_key(&self, code: u16) -> bool {
        test_bit(&self.dev.keybit, code as usize)
    }
    /// Whether the device has relative axis `code`.
    pub(crate) fn has_rel(&self, code: u16) -> bool {
        test_bit(&self.dev.relbit, code as usize)
    }
    /// Whether the device has absolute axis `code`.
    pub(crate) fn has_abs(&self, code: u16) -> bool {
        test_bit(&self.dev.absbit, code as usize)
    }
}

/// A connected device's handle, for grabbing it.
///
/// # Invariants
///
/// Points to a registered, open `input_handle` until the owning handler's `disconnect` for it
/// returns (the [`InputOps::opened`] contract); users must not call its methods after that.
#[derive(Clone, Copy)]
pub(crate) struct HandleRef(NonNull<bindings::input_handle>);

// SAFETY: an input handle may be grabbed or released from any process context.
unsafe impl Send for HandleRef {}
// SAFETY: as above; the methods take `&self` and the input core locks internally.
unsafe impl Sync for HandleRef {}

impl HandleRef {
    /// Grabs the device: other handlers stop seeing its events.
    ///
    /// # Safety
    ///
    /// The device's `disconnect` has not returned yet, and the caller may sleep.
    pub(crate) unsafe fn grab(&self) -> Result {
        // SAFETY: the handle is live (caller's guarantee).
        kernel::error::to_result(unsafe { bindings::input_grab_device(self.0.as_ptr()) })
    }
    /// Releases a grab (no-op if not grabbed by this handle).
    ///
    /// # Safety
    ///
    /// As for [`Self::grab`].
    pub(crate) unsafe fn release(&self) {
        // SAFETY: the handle is live (caller's guarantee).
        unsafe { bindings::input_release_device(self.0.as_ptr()) }
    }
}

/// A connection: the C handle and the driver's state, in one allocation that lives from a
/// successful `connect` to `disconnect`.
#[repr(C)]
struct Conn<D> {
    handle: Opaque<bindings::input_handle>,
    dev: D,
}

/// A registered input handler.
///
/// # Invariants
///
/// While `registered` is set, `raw` is registered with the input core, its `id_table` points to
/// `ids` and its callbacks are this type's; both live (pinned) until `PinnedDrop` unregisters.
#[pin_data(PinnedDrop)]
pub(crate) struct InputHandler<T: InputOps> {
    #[pin]
    raw: Opaque<bindings::input_handler>,
    #[pin]
    ids: Opaque<[bindings::input_device_id; 2]>,
    registered: AtomicBool,
    /// The driver's operations and state.
    pub(crate) ops: T,
}

// SAFETY: the C structures are only written before registration and by the input core under its
// own locks; `ops` is `Send + Sync`.
unsafe impl<T: InputOps> Send for InputHandler<T> {}
// SAFETY: as above.
unsafe impl<T: InputOps> Sync for InputHandler<T> {}

impl<T: InputOps> InputHandler<T> {
    /// Registers a handler named `name` that is offered every input device.
    pub(crate) fn new(name: &'static CStr, ops: T) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            raw: Opaque::zeroed(),
            // Every device (all of them report EV_SYN), as evdev matches, and the terminator:
            // `input_match_device` stops at the first entry without match flags.
            ids <- Opaque::ffi_init(|p: *mut [bindings::input_device_id; 2]| {
                // SAFETY: `p` is valid for writes of the whole array (being initialised).
                unsafe {
                    core::ptr::write_bytes(p, 0, 1);
                    (*p)[0].flags = bindings::INPUT_DEVICE_ID_MATCH_EVBIT as _;
                    (*p)[0].evbit[0] = 1 << bindings::EV_SYN;
                }
            }),
            registered: AtomicBool::new(false),
            ops,
        })
        .pin_chain(move |this| {
            let raw = this.raw.get();
            // SAFETY: `raw` is pinned, zeroed, and not registered yet: we are its only user.
            // `name` is 'static; `ids` lives as long as `raw`.
            let r = unsafe {
                (*raw).name = name.as_ptr().cast();
                (*raw).event = Some(Self::event_cb);
                (*raw).connect = Some(Self::connect_cb);
                (*raw).disconnect = Some(Self::disconnect_cb);
                (*raw).id_table = this.ids.get().cast();
                bindings::input_register_handler(raw)
            };
            kernel::error::to_result(r)?;
            // INVARIANT: registered just now.
            this.registered.store(true, Ordering::Release);
            Ok(())
        })
    }

    /// # Safety
    ///
    /// `handler` is the `raw` field of a live `InputHandler<T>`.
    unsafe fn from_raw<'a>(handler: *mut bindings::input_handler) -> &'a Self {
        // SAFETY: per the function's contract; `Opaque` is `repr(transparent)`.
        unsafe {
            &*kernel::container_of!(handler.cast::<Opaque<bindings::input_handler>>(), Self, raw)
        }
    }

    unsafe extern "C" fn connect_cb(
        handler: *mut bindings::input_handler,
        dev: *mut bindings::input_dev,
        _id: *const bindings::input_device_id,
    ) -> c_int {
        // SAFETY: the input core calls this with our registered handler and a live device.
        let (me, devref) = unsafe { (Self::from_raw(handler), &*dev) };
        let state = match me.ops.connect(&DevInfo { dev: devref }) {
            Ok(s) => s,
            Err(e) => return e.to_errno(),
        };
        let conn = match KBox::new(
            Conn {
                handle: Opaque::zeroed(),
                dev: state,
            },
            GFP_KERNEL,
        ) {
            Ok(c) => c,
            Err(_) => return ENOMEM.to_errno(),
        };
        let p = KBox::into_raw(conn);
        // SAFETY: `p` is a fresh, exclusively owned allocation; its handle is filled in before it
        // is registered. On failure it is unregistered (if it was) and freed here; on success it
        // is freed in `disconnect_cb`.
        unsafe {
            let h = (*p).handle.get();
            (*h).dev = dev;
            (*h).handler = handler;
            (*h).name = c"vd_input".as_ptr().cast();
            (*h).private = p.cast::<c_void>();
            let r = bindings::input_register_handle(h);
            if r != 0 {
                drop(KBox::from_raw(p));
                return r;
            }
            let r = bindings::input_open_device(h);
            if r != 0 {
                bindings::input_unregister_handle(h);
                drop(KBox::from_raw(p));
                return r;
            }
            // INVARIANT (HandleRef): open and registered until `disconnect_cb`.
            me.ops
                .opened(&(*p).dev, HandleRef(NonNull::new_unchecked(h)));
        }
        0
    }

    unsafe extern "C" fn disconnect_cb(handle: *mut bindings::input_handle) {
        // SAFETY: `handle` is one we registered in `connect_cb`; `private` is its `Conn`.
        unsafe {
            let me = Self::from_raw((*handle).handler);
            let p = (*handle).private.cast::<Conn<T::Dev>>();
            me.ops.disconnect(&(*p).dev);
            bindings::input_close_device(handle);
            bindings::input_unregister_handle(handle);
            drop(KBox::from_raw(p));
        }
    }

    unsafe extern "C" fn event_cb(
        handle: *mut bindings::input_handle,
        ty: c_uint,
        code: c_uint,
        value: c_int,
    ) {
        // SAFETY: events only arrive on handles between `connect_cb` and `disconnect_cb`, whose
        // `private` is the live `Conn`.
        unsafe {
            let me = Self::from_raw((*handle).handler);
            let p = (*handle).private.cast::<Conn<T::Dev>>();
            me.ops.event(&(*p).dev, ty as u16, code as u16, value);
        }
    }
}

#[pinned_drop]
impl<T: InputOps> PinnedDrop for InputHandler<T> {
    fn drop(self: Pin<&mut Self>) {
        if self.registered.load(Ordering::Acquire) {
            // SAFETY: registered (invariant); this disconnects every handle first.
            unsafe { bindings::input_unregister_handler(self.raw.get()) };
        }
    }
}
