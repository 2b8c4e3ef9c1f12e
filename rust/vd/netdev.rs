// SPDX-License-Identifier: GPL-2.0
//! A counted reference to a network device (`dev_hold`/`dev_put`), with the few things the
//! SR-IOV manager reads of a VF's netdev (name, MAC address, traffic counters) and the per-VF
//! transmit rate of a PF's netdev (`ndo_set_vf_rate` / `ndo_get_vf_config` under RTNL, as
//! `ip link set <pf> vf N max_tx_rate X` does).

use core::ptr::NonNull;
use kernel::bindings;
use kernel::error::{code::*, to_result, Result};
use kernel::ffi::c_int;

// `linux/rtnetlink.h` is not among the headers bindgen reads for this kernel build, so the two
// functions are declared here, as in `net/core/rtnetlink.c` (`EXPORT_SYMBOL`). Once the bindings
// include that header, use `bindings::rtnl_lock` / `bindings::rtnl_unlock` instead.
extern "C" {
    fn rtnl_lock();
    fn rtnl_unlock();
}

/// The RTNL mutex, held: netdev configuration (the `ndo_set_vf_*` calls) runs under it, and a
/// registered netdev stays registered while it is held.
///
/// # Invariants
///
/// The current task holds RTNL, taken by [`Rtnl::lock`]; dropping the value releases it.
struct Rtnl(());

impl Rtnl {
    /// Takes RTNL (sleeps; process context, no spinlock held).
    fn lock() -> Self {
        // SAFETY: `rtnl_lock` has no preconditions beyond a sleepable context, which every
        // caller of this module's netdev configuration has (ioctl path).
        unsafe { rtnl_lock() };
        // INVARIANT: taken just above.
        Self(())
    }
}

impl Drop for Rtnl {
    fn drop(&mut self) {
        // SAFETY: held by us (invariant).
        unsafe { rtnl_unlock() };
    }
}

/// The transmit rate limits of a VF, in Mbit/s (0: no limit / no guarantee).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct VfRate {
    pub(crate) min_mbps: u32,
    pub(crate) max_mbps: u32,
}

/// A held network device.
///
/// # Invariants
///
/// `ptr` points to a valid `struct net_device` on which this value holds one `dev_hold`.
pub(crate) struct NetDev {
    ptr: NonNull<bindings::net_device>,
}

// SAFETY: netdev references may be dropped from any thread; the reads below are lock-free reads
// the networking core allows on a held device.
unsafe impl Send for NetDev {}
// SAFETY: as above.
unsafe impl Sync for NetDev {}

/// Traffic counters of a netdev (`struct rtnl_link_stats64`, the part we use).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) rx_bytes: u64,
    pub(crate) tx_bytes: u64,
    pub(crate) rx_packets: u64,
    pub(crate) tx_packets: u64,
}

impl NetDev {
    /// Wraps a device the caller holds a reference on.
    ///
    /// # Safety
    ///
    /// `ptr` must be a valid netdev on which the caller transfers one `dev_hold` to us.
    pub(crate) unsafe fn from_held(ptr: NonNull<bindings::net_device>) -> Self {
        // INVARIANT: the caller hands us its reference.
        Self { ptr }
    }

    /// The interface name, NUL-padded. Read without the rename lock: a rename racing with it
    /// may give a mixed name, which listings tolerate.
    pub(crate) fn name(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        // SAFETY: the device is held (invariant), so `name` is valid memory; byte reads.
        let src = unsafe { core::ptr::addr_of!((*self.ptr.as_ptr()).name) } as *const u8;
        for (i, o) in out.iter_mut().take(15).enumerate() {
            // SAFETY: `i < 16 = IFNAMSIZ`.
            let c = unsafe { core::ptr::read_volatile(src.add(i)) };
            if c == 0 {
                break;
            }
            *o = c;
        }
        out
    }

    /// The first 6 bytes of the hardware address (zero if shorter or absent).
    pub(crate) fn mac(&self) -> [u8; 6] {
        let mut out = [0u8; 6];
        // SAFETY: held device: `addr_len` and `dev_addr` are valid; `dev_addr` points into the
        // device's address list, freed only with the device, and holds `addr_len` bytes.
        unsafe {
            let nd = self.ptr.as_ptr();
            let a = (*nd).dev_addr;
            if !a.is_null() && (*nd).addr_len as usize >= 6 {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = core::ptr::read_volatile(a.add(i));
                }
            }
        }
        out
    }

    /// The device's counters (`dev_get_stats`). Process context.
    pub(crate) fn counters(&self) -> Counters {
        // SAFETY: all-zero bytes are a valid `rtnl_link_stats64` (integers only).
        let mut s: bindings::rtnl_link_stats64 = unsafe { core::mem::zeroed() };
        // SAFETY: held device; `s` is valid storage for the call. `dev_get_stats` needs no lock.
        unsafe { bindings::dev_get_stats(self.ptr.as_ptr(), &mut s) };
        Counters {
            rx_bytes: s.rx_bytes,
            tx_bytes: s.tx_bytes,
            rx_packets: s.rx_packets,
            tx_packets: s.tx_packets,
        }
    }
}

impl NetDev {
    /// The device's ops, if it is still registered. RTNL held (the `_rtnl` witness): a
    /// registered device stays registered, and keeps its ops, until RTNL is released.
    fn ops_registered(&self, _rtnl: &Rtnl) -> Option<&bindings::net_device_ops> {
        let nd = self.ptr.as_ptr();
        // SAFETY: held device (invariant); `reg_state` changes only under RTNL, which we hold.
        if unsafe { (*nd).reg_state } != bindings::netdev_reg_state_NETREG_REGISTERED as u8 {
            return None;
        }
        // SAFETY: a registered device has valid `netdev_ops` (set before registration, static in
        // its driver, which cannot be unloaded while the device is registered).
        unsafe { (*nd).netdev_ops.as_ref() }
    }

    /// Reads VF `vf`'s rate limits of this PF netdev (`ndo_get_vf_config`). `EOPNOTSUPP` if
    /// the driver has no VF configuration; `ENODEV` if the device is being unregistered; the
    /// driver's error otherwise (`EINVAL`: no such VF).
    pub(crate) fn vf_rate(&self, vf: u32) -> Result<VfRate> {
        let vf = c_int::try_from(vf).map_err(|_| EINVAL)?;
        let rtnl = Rtnl::lock();
        let ops = self.ops_registered(&rtnl).ok_or(ENODEV)?;
        let get = ops.ndo_get_vf_config.ok_or(EOPNOTSUPP)?;
        Self::get_config(self.ptr.as_ptr(), get, vf)
    }

    fn get_config(
        nd: *mut bindings::net_device,
        get: unsafe extern "C" fn(
            *mut bindings::net_device,
            c_int,
            *mut bindings::ifla_vf_info,
        ) -> c_int,
        vf: c_int,
    ) -> Result<VfRate> {
        let mut ivi = bindings::ifla_vf_info::default();
        // SAFETY: `nd` is a held, registered device under RTNL (callers), the context
        // `rtnl_fill_vfinfo` calls this in; `ivi` is valid storage for the call.
        to_result(unsafe { get(nd, vf, &mut ivi) })?;
        Ok(VfRate {
            min_mbps: ivi.min_tx_rate,
            max_mbps: ivi.max_tx_rate,
        })
    }

    /// Sets VF `vf`'s transmit rate limits on this PF netdev (`ndo_set_vf_rate`), with the
    /// checks `do_setvfinfo` makes for `IFLA_VF_RATE`: the VF must exist for the driver
    /// (`ndo_get_vf_config`), and a nonzero maximum may not be under the minimum. Returns the
    /// limits read back afterwards. `EOPNOTSUPP` if the driver has no per-VF rates; the
    /// driver's error otherwise (igb: `EINVAL` for a minimum, a maximum over the link speed,
    /// or a link that is down).
    pub(crate) fn set_vf_rate(&self, vf: u32, rate: VfRate) -> Result<VfRate> {
        let vf = c_int::try_from(vf).map_err(|_| EINVAL)?;
        let min = c_int::try_from(rate.min_mbps).map_err(|_| EINVAL)?;
        let max = c_int::try_from(rate.max_mbps).map_err(|_| EINVAL)?;
        if max != 0 && max < min {
            return Err(EINVAL);
        }
        let rtnl = Rtnl::lock();
        let ops = self.ops_registered(&rtnl).ok_or(ENODEV)?;
        let (Some(set), Some(get)) = (ops.ndo_set_vf_rate, ops.ndo_get_vf_config) else {
            return Err(EOPNOTSUPP);
        };
        let nd = self.ptr.as_ptr();
        Self::get_config(nd, get, vf)?;
        // SAFETY: held, registered device under RTNL: the context `rtnl_set_vf_rate` calls it in.
        to_result(unsafe { set(nd, vf, min, max) })?;
        Self::get_config(nd, get, vf)
    }
}

impl Drop for NetDev {
    fn drop(&mut self) {
        // SAFETY: we own one reference (invariant).
        unsafe { bindings::vd_dev_put(self.ptr.as_ptr()) };
    }
}
