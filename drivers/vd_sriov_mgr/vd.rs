// SPDX-License-Identifier: GPL-2.0
//! The shared code vd_sriov_mgr uses, each file included by path and nothing more, so the
//! compiler reports what is left unused: the ring and the ABI (shared with userspace, whole by
//! nature: only the shared ABI part and this module's device) and the pieces of `rust/vd/`
//! (the kernel-side edges, where the project's `unsafe` lives). A piece names what it needs
//! as a sibling here (`super::ring`, `super::uapi`, `super::shmem`).

#[allow(dead_code, unreachable_pub, reason = "shared with userspace")]
#[path = "../../userspace-tools/vd-uapi/src/abi.rs"]
pub(crate) mod abi;
#[allow(dead_code, unreachable_pub, reason = "shared with userspace")]
#[path = "../../userspace-tools/vd-uapi/src/sriov.rs"]
pub(crate) mod abi_sriov;
#[path = "../../rust/vd/barregs.rs"]
pub(crate) mod barregs;
#[path = "../../rust/vd/common.rs"]
pub(crate) mod common;
#[path = "../../rust/vd/cred.rs"]
pub(crate) mod cred;
#[path = "../../rust/vd/kfile.rs"]
pub(crate) mod kfile;
#[path = "../../rust/vd/netdev.rs"]
pub(crate) mod netdev;
#[path = "../../rust/vd/pci.rs"]
pub(crate) mod pci;
#[path = "../../rust/vd/ratelimit.rs"]
pub(crate) mod ratelimit;
#[path = "../../rust/vd/time.rs"]
pub(crate) mod time;
#[path = "../../rust/vd/workqueue.rs"]
pub(crate) mod workqueue;

/// The ABI this module answers: the shared part and its device's.
pub(crate) mod uapi {
    pub(crate) use super::abi::*;
    pub(crate) use super::abi_sriov::*;
}
