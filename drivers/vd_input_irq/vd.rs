// SPDX-License-Identifier: GPL-2.0
//! The shared code vd_input_irq uses, each file included by path and nothing more, so the
//! compiler reports what is left unused: the ring and the ABI (shared with userspace, whole by
//! nature: only the shared ABI part and this module's device) and the pieces of `rust/vd/`
//! (the kernel-side edges, where the project's `unsafe` lives). A piece names what it needs
//! as a sibling here (`super::ring`, `super::uapi`, `super::shmem`).

#[allow(dead_code, unreachable_pub, reason = "shared with userspace")]
#[path = "../../userspace-tools/vd-uapi/src/abi.rs"]
pub(crate) mod abi;
#[allow(dead_code, unreachable_pub, reason = "shared with userspace")]
#[path = "../../userspace-tools/vd-uapi/src/input.rs"]
pub(crate) mod abi_input;
#[allow(dead_code, unreachable_pub, reason = "shared with userspace")]
#[path = "../../userspace-tools/vd-ring/src/caps.rs"]
pub(crate) mod caps;
#[path = "../../rust/vd/common.rs"]
pub(crate) mod common;
#[path = "../../rust/vd/cred.rs"]
pub(crate) mod cred;
#[path = "../../rust/vd/eventfd.rs"]
pub(crate) mod eventfd;
#[path = "../../rust/vd/input.rs"]
pub(crate) mod input;
#[path = "../../rust/vd/preempt.rs"]
pub(crate) mod preempt;
#[path = "../../rust/vd/ratelimit.rs"]
pub(crate) mod ratelimit;
#[allow(dead_code, unreachable_pub, reason = "shared with userspace")]
#[path = "../../userspace-tools/vd-ring/src/ring.rs"]
pub(crate) mod ring;
#[path = "../../rust/vd/shmem.rs"]
pub(crate) mod shmem;
#[path = "../../rust/vd/task.rs"]
pub(crate) mod task;
#[path = "../../rust/vd/time.rs"]
pub(crate) mod time;

/// The ABI this module answers: the shared part and its device's.
pub(crate) mod uapi {
    pub(crate) use super::abi::*;
    pub(crate) use super::abi_input::*;
}
