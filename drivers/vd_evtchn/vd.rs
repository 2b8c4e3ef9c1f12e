// SPDX-License-Identifier: GPL-2.0
//! The shared code vd_evtchn uses, each file included by path and nothing more, so the compiler
//! reports what is left unused: the ring and the ABI (shared with userspace, whole by nature)
//! and the pieces of `rust/vd/` (the kernel-side edges, where the project's `unsafe` lives).
//! A piece names its dependencies as siblings here (`super::ring`, `super::uapi`, ...).

#[path = "../../rust/vd/backing.rs"]
pub(crate) mod backing;
#[path = "../../rust/vd/common.rs"]
pub(crate) mod common;
#[path = "../../rust/vd/eventfd.rs"]
pub(crate) mod eventfd;
#[path = "../../rust/vd/modref.rs"]
pub(crate) mod modref;
#[path = "../../rust/vd/ratelimit.rs"]
pub(crate) mod ratelimit;
#[allow(
    dead_code,
    unreachable_pub,
    reason = "the ring is shared with userspace"
)]
#[path = "../../userspace-tools/vd-ring/src/ring.rs"]
pub(crate) mod ring;
#[path = "../../rust/vd/shmem.rs"]
pub(crate) mod shmem;
#[allow(
    dead_code,
    unreachable_pub,
    reason = "the ABI is shared with userspace"
)]
#[path = "../../userspace-tools/vd-uapi/src/uapi.rs"]
pub(crate) mod uapi;
