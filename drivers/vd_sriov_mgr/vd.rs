// SPDX-License-Identifier: GPL-2.0
//! The shared code vd_sriov_mgr uses, each file included by path and nothing more, so the compiler
//! reports what is left unused: the ring and the ABI (shared with userspace, whole by nature)
//! and the pieces of `rust/vd/` (the kernel-side edges, where the project's `unsafe` lives).
//! A piece names its dependencies as siblings here (`super::ring`, `super::uapi`, ...).

#[path = "../../rust/vd/common.rs"]
pub(crate) mod common;
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
#[allow(
    dead_code,
    unreachable_pub,
    reason = "the ABI is shared with userspace"
)]
#[path = "../../userspace-tools/vd-uapi/src/uapi.rs"]
pub(crate) mod uapi;
#[path = "../../rust/vd/workqueue.rs"]
pub(crate) mod workqueue;
