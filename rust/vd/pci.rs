// SPDX-License-Identifier: GPL-2.0
//! PCI devices as the SR-IOV manager needs them: counted references to `struct pci_dev`, the
//! SR-IOV facts of a device (PF or VF, VF number, VF counts), moving a device between drivers
//! through the driver core (`driver_override` + unbind + probe, what the `driver_override`,
//! `unbind` and `drivers_probe` sysfs files do), the "assigned to a guest" flag PF drivers
//! consult before disabling SR-IOV, and a PCI bus notifier.
//!
//! Nothing here holds policy. Driver names read back are the names of built-in drivers (igbvf,
//! vfio-pci in the vd kernel) or of loaded modules; they are copied out right away.

use core::ffi::c_void;
use core::ptr::NonNull;
use kernel::bindings;
use kernel::ffi::{c_char, c_int, c_ulong};
use kernel::prelude::*;
use kernel::types::Opaque;

/// `PCI_ANY_ID`.
const PCI_ANY_ID: u32 = !0;

/// A counted reference to a PCI device.
///
/// # Invariants
///
/// `ptr` points to a valid `struct pci_dev` on which this value holds one reference.
pub(crate) struct PciDev {
    ptr: NonNull<bindings::pci_dev>,
}

// SAFETY: `struct pci_dev` is reference counted; a reference may be dropped from any thread and
// the accessors below only read fields that are fixed once the device is added, or go through
// the driver core's own locking.
unsafe impl Send for PciDev {}
// SAFETY: as above; every method takes `&self` and is safe to call concurrently.
unsafe impl Sync for PciDev {}

impl Clone for PciDev {
    fn clone(&self) -> Self {
        // SAFETY: `ptr` is valid and referenced (invariant), so taking another reference is fine.
        unsafe { bindings::pci_dev_get(self.ptr.as_ptr()) };
        // INVARIANT: we took the reference the new value owns.
        Self { ptr: self.ptr }
    }
}

impl Drop for PciDev {
    fn drop(&mut self) {
        // SAFETY: we own one reference (invariant).
        unsafe { bindings::pci_dev_put(self.ptr.as_ptr()) };
    }
}

/// Names are copied into fixed NUL-padded fields of this size (the ABI's name fields).
pub(crate) const NAME_LEN: usize = 16;

fn copy_cstr(p: *const c_char, out: &mut [u8; NAME_LEN]) {
    *out = [0; NAME_LEN];
    if p.is_null() {
        return;
    }
    // SAFETY: callers pass a NUL-terminated string that stays valid for this call (a device or
    // driver name, see the callers).
    let s = unsafe { core::ffi::CStr::from_ptr(p.cast()) }.to_bytes();
    let n = s.len().min(NAME_LEN - 1);
    out[..n].copy_from_slice(&s[..n]);
}

impl PciDev {
    /// Takes a new reference to `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct pci_dev` on which the caller holds a reference (or
    /// that the caller otherwise knows to be alive) for the duration of this call.
    unsafe fn get(ptr: NonNull<bindings::pci_dev>) -> Self {
        // SAFETY: the caller guarantees `ptr` is alive.
        unsafe { bindings::pci_dev_get(ptr.as_ptr()) };
        // INVARIANT: we took a reference.
        Self { ptr }
    }

    fn raw(&self) -> *mut bindings::pci_dev {
        self.ptr.as_ptr()
    }

    fn dev(&self) -> *mut bindings::device {
        // SAFETY: `ptr` is valid (invariant); this only computes a field address.
        unsafe { core::ptr::addr_of_mut!((*self.raw()).dev) }
    }

    /// Every PCI device present now, in bus order.
    pub(crate) fn all() -> Result<KVec<PciDev>> {
        let mut v = KVec::new();
        let mut cur: *mut bindings::pci_dev = core::ptr::null_mut();
        loop {
            // SAFETY: `cur` is null or a device returned by the previous call, whose reference
            // `pci_get_device` consumes; it returns the next device with a reference, or null.
            cur = unsafe { bindings::pci_get_device(PCI_ANY_ID, PCI_ANY_ID, cur) };
            let Some(p) = NonNull::new(cur) else { break };
            // SAFETY: `p` is alive: we hold the reference the iterator returned.
            let d = unsafe { PciDev::get(p) };
            if let Err(e) = v.push(d, GFP_KERNEL) {
                // SAFETY: drop the iterator's reference we still hold on `p`.
                unsafe { bindings::pci_dev_put(p.as_ptr()) };
                return Err(e.into());
            }
        }
        Ok(v)
    }

    /// Whether `self` and `other` are the same device.
    pub(crate) fn same(&self, other: &PciDev) -> bool {
        self.ptr == other.ptr
    }

    /// `domain << 16 | bus << 8 | devfn`, parsed from the device name (`DDDD:BB:DD.F`).
    pub(crate) fn bdf(&self) -> u32 {
        // SAFETY: `ptr` is valid (invariant); `pci_dev_id` reads the bus number and devfn, fixed
        // for the device's life.
        let id = unsafe { bindings::pci_dev_id(self.raw()) } as u32;
        let mut n = [0u8; NAME_LEN];
        self.name_into(&mut n);
        let mut dom = 0u32;
        for &c in n.iter().take_while(|&&c| c != b':') {
            dom = dom.wrapping_mul(16).wrapping_add(match c {
                b'0'..=b'9' => (c - b'0') as u32,
                b'a'..=b'f' => (c - b'a' + 10) as u32,
                _ => 0,
            });
        }
        (dom & 0xffff) << 16 | id
    }

    /// The device name (`0000:01:10.0`), NUL-padded.
    pub(crate) fn name_into(&self, out: &mut [u8; NAME_LEN]) {
        // SAFETY: the device is alive (invariant); its kobject name is set when the device is
        // added and freed only with the device.
        copy_cstr(unsafe { bindings::dev_name(self.dev()) }, out);
    }

    /// Name of the bound driver, empty if none. The value may be stale as soon as it is read.
    pub(crate) fn driver_into(&self, out: &mut [u8; NAME_LEN]) {
        // SAFETY: `ptr` is valid; `driver` is read once, as `dev_driver_string` does.
        let drv = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*self.dev()).driver)) };
        if drv.is_null() {
            *out = [0; NAME_LEN];
            return;
        }
        // SAFETY: `dev_driver_string` may be called without the device lock; it reads the
        // driver pointer once and returns its name (a string of the driver, which lives as long
        // as the driver is registered; see the module doc).
        copy_cstr(unsafe { bindings::dev_driver_string(self.dev()) }, out);
    }

    /// Whether the device is an SR-IOV virtual function.
    pub(crate) fn is_vf(&self) -> bool {
        // SAFETY: `ptr` is valid; `is_virtfn` is set before the device is added and never changes.
        unsafe { (*self.raw()).is_virtfn() != 0 }
    }

    /// The PF of a VF.
    pub(crate) fn physfn(&self) -> Option<PciDev> {
        if !self.is_vf() {
            return None;
        }
        // SAFETY: `ptr` is a valid VF; `pci_physfn` returns its PF, which the VF keeps a reference
        // on for its whole life, so it is alive while we take our own reference.
        let pf = unsafe { bindings::vd_pci_physfn(self.raw()) };
        // SAFETY: see above.
        NonNull::new(pf).map(|p| unsafe { PciDev::get(p) })
    }

    /// The VF number of a VF on its PF.
    pub(crate) fn vf_id(&self) -> Option<u32> {
        if !self.is_vf() {
            return None;
        }
        // SAFETY: `ptr` is a valid VF.
        u32::try_from(unsafe { bindings::pci_iov_vf_id(self.raw()) }).ok()
    }

    /// TotalVFs of a PF (0 if the device has no SR-IOV capability).
    pub(crate) fn total_vfs(&self) -> u32 {
        // SAFETY: `ptr` is valid; returns 0 for devices that are not PFs.
        unsafe { bindings::pci_sriov_get_totalvfs(self.raw()) as u32 }
    }

    /// PCI vendor and device id (read at enumeration, fixed for the device's life).
    pub(crate) fn ids(&self) -> (u16, u16) {
        // SAFETY: `ptr` is valid (invariant); `vendor` and `device` are set before the device is
        // added and never change.
        unsafe { ((*self.raw()).vendor, (*self.raw()).device) }
    }

    /// Whether the device is in D0 (its registers decode). A snapshot: the state may change right
    /// after (no power-state lock is taken).
    pub(crate) fn in_d0(&self) -> bool {
        // SAFETY: `ptr` is valid; a plain read of an int the PCI core updates when it changes the
        // power state (`PCI_D0` is 0).
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*self.raw()).current_state)) == 0 }
    }

    /// The physical address of `[off, off + len)` of BAR `bar`, if `bar` is an assigned memory
    /// BAR and the range lies inside it: `EINVAL` otherwise (an I/O-port, unassigned or too small
    /// BAR, a bad index, an empty range).
    pub(crate) fn mem_bar_range(&self, bar: u32, off: u64, len: u64) -> Result<u64> {
        // `PCI_STD_NUM_BARS`: the six standard BARs.
        if bar >= 6 || len == 0 {
            return Err(EINVAL);
        }
        let i = bar as usize;
        let bar_c = bar as c_int;
        // SAFETY: `ptr` is valid; the resource table has `DEVICE_COUNT_RESOURCE` entries, of
        // which the first six are the standard BARs (`i < 6`); the flags are set when the BAR is
        // assigned.
        let flags = unsafe { (*self.raw()).resource[i].flags } as u64;
        if flags & u64::from(bindings::IORESOURCE_MEM) == 0 {
            return Err(EINVAL);
        }
        // SAFETY: `ptr` is valid, `bar_c` a standard BAR index; the helpers read the resource.
        let (start, size) = unsafe {
            (
                bindings::pci_resource_start(self.raw(), bar_c),
                bindings::pci_resource_len(self.raw(), bar_c),
            )
        };
        let end = off.checked_add(len).ok_or(EINVAL)?;
        if start == 0 || end > size {
            return Err(EINVAL);
        }
        start.checked_add(off).ok_or(EINVAL)
    }

    /// VFs enabled on a PF now.
    pub(crate) fn num_vfs(&self) -> u32 {
        // SAFETY: `ptr` is valid; returns 0 for devices that are not PFs.
        u32::try_from(unsafe { bindings::pci_num_vf(self.raw()) }).unwrap_or(0)
    }

    /// Sets or clears `PCI_DEV_FLAGS_ASSIGNED` (`pci_set_dev_assigned`), which PF drivers
    /// (igb, ixgbe, i40e, ...) check through `pci_vfs_assigned` to refuse disabling SR-IOV while
    /// a VF is in a guest's hands.
    pub(crate) fn set_assigned(&self, on: bool) {
        let f = bindings::pci_dev_flags_PCI_DEV_FLAGS_ASSIGNED as bindings::pci_dev_flags_t;
        // SAFETY: `ptr` is valid. `dev_flags` has no lock in C either: `pci_set_dev_assigned`
        // and its users (xen-pciback, the former KVM device assignment) update it exactly like
        // this; other writers are quirks that run before the device is added.
        unsafe {
            let p = core::ptr::addr_of_mut!((*self.raw()).dev_flags);
            let v = core::ptr::read_volatile(p);
            core::ptr::write_volatile(p, if on { v | f } else { v & !f });
        }
    }

    /// Whether `PCI_DEV_FLAGS_ASSIGNED` is set.
    pub(crate) fn assigned(&self) -> bool {
        let f = bindings::pci_dev_flags_PCI_DEV_FLAGS_ASSIGNED as bindings::pci_dev_flags_t;
        // SAFETY: `ptr` is valid; a plain read of a flag word.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*self.raw()).dev_flags)) & f != 0 }
    }

    /// Moves the device to driver `to` (`Some(c"vfio-pci")`) or back to normal matching
    /// (`None`: the override is cleared and the bus finds the driver, igbvf for an igb VF):
    /// sets `driver_override`, unbinds the current driver and probes again, as writing the
    /// `driver_override`, `driver/unbind` and `drivers_probe` sysfs files does, without racing
    /// udev in between. Returns the name of the driver bound afterwards (empty: none).
    ///
    /// Sleeps; may wait for the current driver's `remove` (vfio-pci waits there until its user
    /// closes the device). Never call it from a file's release path.
    pub(crate) fn rebind(&self, to: Option<&CStr>) -> Result<[u8; NAME_LEN]> {
        // An empty string clears the override (null is refused with EINVAL).
        let n = to.unwrap_or(c"");
        let (s, len) = (n.as_char_ptr(), n.to_bytes().len());
        // SAFETY: `dev` is valid; `s` is a NUL-terminated string of `len` bytes that the callee
        // copies.
        kernel::error::to_result(unsafe {
            bindings::__device_set_driver_override(self.dev(), s, len)
        })?;
        // SAFETY: `dev` is valid and registered or dead; the driver core takes the device lock.
        unsafe { bindings::device_release_driver(self.dev()) };
        // SAFETY: as above. Returns 1 if bound, 0 if no driver matched, <0 on error (-ENODEV
        // once the device is being removed).
        let r = unsafe { bindings::device_attach(self.dev()) };
        if r < 0 {
            return Err(Error::from_errno(r));
        }
        let mut name = [0u8; NAME_LEN];
        self.driver_into(&mut name);
        Ok(name)
    }

    /// Clears `driver_override` (only takes the override's spinlock: callable from a bus
    /// notifier).
    pub(crate) fn clear_override(&self) {
        // SAFETY: `dev` is valid; an empty string clears the override.
        let _ = unsafe { bindings::__device_set_driver_override(self.dev(), c"".as_char_ptr(), 0) };
    }

    /// The network device whose parent is this device (a VF on igbvf), if any.
    pub(crate) fn netdev(&self) -> Option<super::netdev::NetDev> {
        // SAFETY: `dev` is a valid device for the call.
        let nd = unsafe { bindings::vd_netdev_of_device(self.dev()) };
        // SAFETY: the helper returns null or a netdev with a reference held for us.
        NonNull::new(nd).map(|p| unsafe { super::netdev::NetDev::from_held(p) })
    }
}

/// What a [`PciNotifier`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PciEvent {
    /// A device was added to the bus.
    Added,
    /// A device is being removed from the bus.
    Removed,
    /// A driver was bound.
    Bound,
    /// A driver is about to be unbound (its `remove` has not run yet; the device lock is held).
    Unbinding,
    /// A driver was unbound.
    Unbound,
}

/// A PCI bus notifier that calls `f` (in process context, from the driver core, possibly with
/// the PF's device lock held) for every device added, removed, bound, about to be unbound or
/// unbound. `f` runs with the device's lock held for the bind/unbind events: it must not wait
/// for that device's driver.
///
/// # Invariants
///
/// `nb` is registered on the PCI bus from initialisation until drop, with [`Self::call`] as
/// its function.
#[pin_data(PinnedDrop)]
pub(crate) struct PciNotifier {
    #[pin]
    nb: Opaque<bindings::notifier_block>,
    f: fn(PciEvent, &PciDev),
}

// SAFETY: the notifier block is only touched by the notifier chain's own locking; `f` is a plain
// function pointer.
unsafe impl Send for PciNotifier {}
// SAFETY: as above.
unsafe impl Sync for PciNotifier {}

impl PciNotifier {
    /// Registers `f` on the PCI bus.
    pub(crate) fn new(f: fn(PciEvent, &PciDev)) -> impl PinInit<Self, Error> {
        // SAFETY: the closure initialises every field of `Self` in place (`nb` then `f`) and
        // registers `nb` only after `f` is written; on failure nothing is left registered.
        unsafe {
            pin_init::pin_init_from_closure(move |slot: *mut Self| {
                let nb = core::ptr::addr_of_mut!((*slot).nb) as *mut bindings::notifier_block;
                core::ptr::addr_of_mut!((*slot).f).write(f);
                nb.write(bindings::notifier_block {
                    notifier_call: Some(Self::call),
                    next: core::ptr::null_mut(),
                    priority: 0,
                });
                // INVARIANT: registered here; unregistered in `drop`.
                kernel::error::to_result(bindings::bus_register_notifier(
                    &raw const bindings::pci_bus_type,
                    nb,
                ))
            })
        }
    }

    unsafe extern "C" fn call(
        nb: *mut bindings::notifier_block,
        action: c_ulong,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `nb` is the `nb` field of a live `PciNotifier` (only registered ones are called,
        // and drop unregisters, which waits for running callbacks).
        let me = unsafe { &*(nb.byte_sub(core::mem::offset_of!(Self, nb)) as *const Self) };
        let ev = match action as u32 {
            bindings::bus_notifier_event_BUS_NOTIFY_ADD_DEVICE => PciEvent::Added,
            bindings::bus_notifier_event_BUS_NOTIFY_DEL_DEVICE => PciEvent::Removed,
            bindings::bus_notifier_event_BUS_NOTIFY_BOUND_DRIVER => PciEvent::Bound,
            bindings::bus_notifier_event_BUS_NOTIFY_UNBIND_DRIVER => PciEvent::Unbinding,
            bindings::bus_notifier_event_BUS_NOTIFY_UNBOUND_DRIVER => PciEvent::Unbound,
            _ => return bindings::NOTIFY_DONE as c_int,
        };
        let dev = data as *mut bindings::device;
        // SAFETY: the PCI bus notifier passes the `struct device` the event is about, alive for
        // the call.
        if dev.is_null() || !unsafe { bindings::dev_is_pci(dev) } {
            return bindings::NOTIFY_DONE as c_int;
        }
        // SAFETY: a device on the PCI bus is the `dev` field of a `struct pci_dev`.
        let pdev = unsafe { dev.byte_sub(core::mem::offset_of!(bindings::pci_dev, dev)) }
            as *mut bindings::pci_dev;
        let Some(p) = NonNull::new(pdev) else {
            return bindings::NOTIFY_DONE as c_int;
        };
        // SAFETY: the device is alive for the notifier call; we take our own reference.
        let d = unsafe { PciDev::get(p) };
        (me.f)(ev, &d);
        bindings::NOTIFY_OK as c_int
    }
}

#[pinned_drop]
impl PinnedDrop for PciNotifier {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `nb` is registered (invariant); unregistering waits for running callbacks
        // (the chain's rwsem), so none runs after this.
        unsafe {
            bindings::bus_unregister_notifier(&raw const bindings::pci_bus_type, self.nb.get())
        };
    }
}
