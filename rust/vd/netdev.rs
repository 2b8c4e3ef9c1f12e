// SPDX-License-Identifier: GPL-2.0
//! A counted reference to a network device (`dev_hold`/`dev_put`), with the few things the
//! SR-IOV manager reads of a VF's netdev: name, MAC address and traffic counters.

use core::ptr::NonNull;
use kernel::bindings;

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
        Counters { rx_bytes: s.rx_bytes, tx_bytes: s.tx_bytes, rx_packets: s.rx_packets, tx_packets: s.tx_packets }
    }
}

impl Drop for NetDev {
    fn drop(&mut self) {
        // SAFETY: we own one reference (invariant).
        unsafe { bindings::vd_dev_put(self.ptr.as_ptr()) };
    }
}
