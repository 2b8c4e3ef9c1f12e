// SPDX-License-Identifier: GPL-2.0
//! An input device a driver registers (`struct input_dev`, the producer side of the input core)
//! behind safe types: [`InputDevBuilder`] allocates one and sets its name, physical path, id,
//! parent and capabilities, [`InputDevBuilder::register`] makes it an [`InputDev`] that reports
//! events and is unregistered when dropped.
//!
//! Contexts (from `drivers/input/input.c`): allocation, registration and unregistration sleep
//! (process context); [`InputDev::report`] may be called from any context, hard interrupts
//! included (`input_event` takes the device's `event_lock` with interrupts saved). Events of a
//! type or code the device did not declare are dropped by the input core, so any value may be
//! passed.

use core::ffi::CStr;
use core::ptr::NonNull;
use kernel::bindings;
use kernel::prelude::*;

/// `EV_SYN`.
pub(crate) const EV_SYN: u16 = bindings::EV_SYN as u16;
/// `SYN_REPORT`.
pub(crate) const SYN_REPORT: u16 = bindings::SYN_REPORT as u16;

/// An allocated, not yet registered input device.
///
/// # Invariants
///
/// `dev` comes from `input_allocate_device`, is not registered and is owned by this value
/// (freed with `input_free_device` in `Drop` unless [`Self::register`] consumed it). `phys` is
/// NUL-terminated and, if `dev->phys` is set, `dev->phys` points into it.
pub(crate) struct InputDevBuilder {
    dev: NonNull<bindings::input_dev>,
    phys: KVec<u8>,
}

impl InputDevBuilder {
    /// Allocates a device named `name` (`'static`: the input core keeps the pointer) with the
    /// physical path `phys` (copied), child of `parent` in sysfs.
    pub(crate) fn new(
        name: &'static CStr,
        phys: &CStr,
        parent: &kernel::device::Device,
    ) -> Result<Self> {
        let bytes = phys.to_bytes_with_nul();
        let mut buf = KVec::with_capacity(bytes.len(), GFP_KERNEL)?;
        buf.extend_from_slice(bytes, GFP_KERNEL)?;
        // SAFETY: no preconditions; returns a zeroed, initialised device or null.
        let dev = NonNull::new(unsafe { bindings::input_allocate_device() }).ok_or(ENOMEM)?;
        let parent = core::ptr::from_ref(parent)
            .cast::<bindings::device>()
            .cast_mut();
        // SAFETY: `dev` is a fresh device nobody else sees yet. `name` is 'static; `buf`'s heap
        // buffer does not move when the `KVec` does and lives as long as the device is ours or
        // registered (see `InputDev`). `parent` is a live device (a `&Device`, `Device` is a
        // transparent `struct device`) that outlives the registration: drivers unregister in
        // their unbind, before the parent goes.
        unsafe {
            (*dev.as_ptr()).name = name.as_ptr().cast();
            (*dev.as_ptr()).phys = buf.as_ptr().cast();
            (*dev.as_ptr()).dev.parent = parent;
        }
        // INVARIANT: allocated above, not registered; `phys` points into `buf`.
        Ok(Self { dev, phys: buf })
    }

    /// Sets the device's id (`bustype` one of the `BUS_*` constants).
    pub(crate) fn id(self, bustype: u16, vendor: u16, product: u16, version: u16) -> Self {
        // SAFETY: the device is ours and unregistered (invariant): nothing reads it concurrently.
        unsafe {
            (*self.dev.as_ptr()).id = bindings::input_id {
                bustype,
                vendor,
                product,
                version,
            };
        }
        self
    }

    /// Sets `hint_events_per_packet`: the input core sizes its per-frame buffer from it
    /// (`n + 2` events) and evdev each reader's queue (`8 * n` events, rounded up to a power of
    /// two): a device that receives bursts larger than its readers drain between two
    /// interrupts needs a large one.
    pub(crate) fn events_per_packet(self, n: u32) -> Self {
        // SAFETY: the device is ours and unregistered (invariant).
        unsafe { (*self.dev.as_ptr()).hint_events_per_packet = n };
        self
    }

    /// Declares that the device reports event `ty`/`code` (`input_set_capability`; an unknown
    /// type is refused by the input core with a log line, nothing else).
    pub(crate) fn capability(self, ty: u32, code: u32) -> Self {
        // SAFETY: the device is ours and unregistered (invariant).
        unsafe { bindings::input_set_capability(self.dev.as_ptr(), ty, code) };
        self
    }

    /// Declares absolute axis `axis` with its range, fuzz and flat (`input_set_abs_params`, which
    /// also sets the `EV_ABS` capability).
    pub(crate) fn abs_params(self, axis: u32, min: i32, max: i32, fuzz: i32, flat: i32) -> Self {
        if axis <= bindings::ABS_MAX {
            // SAFETY: the device is ours and unregistered (invariant); the axis is at most
            // `ABS_MAX` (the input core allocates absinfo for `ABS_CNT` axes).
            unsafe {
                bindings::input_set_abs_params(self.dev.as_ptr(), axis, min, max, fuzz, flat)
            };
        }
        self
    }

    /// Registers the device with the input core: handlers (evdev) connect to it.
    pub(crate) fn register(self) -> Result<InputDev> {
        let me = core::mem::ManuallyDrop::new(self);
        let dev = me.dev;
        // SAFETY: `me` is not dropped, so its `phys` is moved out exactly once here and the
        // device is not freed by the builder's `Drop`.
        let phys = unsafe { core::ptr::read(&me.phys) };
        // SAFETY: the device is allocated and set up (invariant); name and phys live as long as
        // it is registered (they move into the `InputDev`).
        let r = unsafe { bindings::input_register_device(dev.as_ptr()) };
        if let Err(e) = kernel::error::to_result(r) {
            // SAFETY: registration failed, so the device is still ours, unregistered.
            unsafe { bindings::input_free_device(dev.as_ptr()) };
            drop(phys);
            return Err(e);
        }
        // INVARIANT: registered just now; `phys` is the buffer `dev->phys` points into.
        Ok(InputDev { dev, _phys: phys })
    }
}

impl Drop for InputDevBuilder {
    fn drop(&mut self) {
        // SAFETY: allocated and never registered (invariant).
        unsafe { bindings::input_free_device(self.dev.as_ptr()) };
    }
}

/// A registered input device; dropping it unregisters it (`input_unregister_device`, which
/// sleeps: drop it in process context).
///
/// # Invariants
///
/// `dev` is registered with the input core, and this value holds the reference registration
/// took; `dev->name` is 'static and `dev->phys` points into `_phys`.
pub(crate) struct InputDev {
    dev: NonNull<bindings::input_dev>,
    /// The physical path `dev->phys` points to; freed after the unregistration.
    _phys: KVec<u8>,
}

// SAFETY: an input device may be used and unregistered from any thread; `input_event` locks
// internally.
unsafe impl Send for InputDev {}
// SAFETY: the only `&self` method is `report`, which may run concurrently on any CPU.
unsafe impl Sync for InputDev {}

impl InputDev {
    /// Reports one event (`input_event`); any context. Undeclared types and codes are dropped by
    /// the input core.
    pub(crate) fn report(&self, ty: u16, code: u16, value: i32) {
        // SAFETY: the device is registered (invariant); `input_event` ignores types above
        // `EV_MAX` and codes outside the declared bitmaps.
        unsafe { bindings::input_event(self.dev.as_ptr(), ty.into(), code.into(), value) };
    }

    /// Ends a frame (`input_sync`: `EV_SYN`/`SYN_REPORT`).
    #[allow(
        dead_code,
        reason = "vd_front reports the host's own SYN_REPORT events"
    )]
    pub(crate) fn sync(&self) {
        self.report(EV_SYN, SYN_REPORT, 0);
    }
}

impl Drop for InputDev {
    fn drop(&mut self) {
        // SAFETY: registered (invariant); unregistering drops the registration's reference, and
        // nothing uses `dev` afterwards. The input core reads `phys` no more once this returned
        // (the sysfs files and uevents are gone), so `_phys` is freed after it.
        unsafe { bindings::input_unregister_device(self.dev.as_ptr()) };
    }
}
