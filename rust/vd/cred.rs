// SPDX-License-Identifier: GPL-2.0
//! Who may do what: the one privilege model of the vd drivers.
//!
//! Privileged operations (vd_sriov_mgr's leases and policy: `CAP_NET_ADMIN`; vd_input_irq's
//! routes and focus: `CAP_SYS_ADMIN`) are checked against the process that *opened* the file, in
//! the initial user namespace (`file_ns_capable`, as netlink and tun check their openers): a
//! privileged opener may hand its file to a less privileged helper, and a file opened without
//! the capability never gains it. Everything else on a file (its own VM, channel or lease state)
//! needs only the file. The one check made against the calling task instead is acting on
//! another task (`VDI_IOC_VCPU_ATTACH`, `rust/vd/task.rs`), which follows ptrace's rule: the
//! caller's own credentials against the target's.

use kernel::bindings;
use kernel::fs::File;

/// `CAP_NET_ADMIN`.
#[allow(dead_code, reason = "vd_sriov_mgr's capability")]
pub(crate) const CAP_NET_ADMIN: i32 = bindings::CAP_NET_ADMIN as i32;
/// `CAP_SYS_ADMIN`.
#[allow(dead_code, reason = "vd_input_irq's capability")]
pub(crate) const CAP_SYS_ADMIN: i32 = bindings::CAP_SYS_ADMIN as i32;

/// Whether the process that opened `file` had capability `cap` in the initial user namespace.
pub(crate) fn opener_capable(file: &File, cap: i32) -> bool {
    // SAFETY: `file` is valid for the call; `init_user_ns` is a static that lives forever and is
    // only read by the callee.
    unsafe { bindings::file_ns_capable(file.as_ptr(), &raw mut bindings::init_user_ns, cap) }
}
