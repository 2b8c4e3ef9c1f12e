// SPDX-License-Identifier: GPL-2.0
//! The shared code vd_evtchn uses, each file included by path and nothing more, so the
//! compiler reports what is left unused: the ring and the ABI (shared with userspace, whole by
//! nature: only the shared ABI part and this module's device) and the pieces of `rust/vd/`
//! (the kernel-side edges, where the project's `unsafe` lives). A piece names what it needs
//! as a sibling here (`super::ring`, `super::uapi`, `super::shmem`).

#[allow(dead_code, unreachable_pub, reason = "shared with userspace")]
#[path = "../../userspace-tools/vd-uapi/src/abi.rs"]
pub(crate) mod abi;
#[allow(dead_code, unreachable_pub, reason = "shared with userspace")]
#[path = "../../userspace-tools/vd-uapi/src/evtchn.rs"]
pub(crate) mod abi_evtchn;
#[path = "../../rust/vd/backing.rs"]
pub(crate) mod backing;
#[path = "../../rust/vd/common.rs"]
pub(crate) mod common;
#[path = "../../rust/vd/eventfd.rs"]
pub(crate) mod eventfd;
#[path = "../../rust/vd/hops.rs"]
pub(crate) mod hops;
#[path = "../../rust/vd/knob.rs"]
pub(crate) mod knob;
#[path = "../../rust/vd/modref.rs"]
pub(crate) mod modref;
#[path = "../../rust/vd/ratelimit.rs"]
pub(crate) mod ratelimit;
#[allow(dead_code, unreachable_pub, reason = "shared with userspace")]
#[path = "../../userspace-tools/vd-ring/src/ring.rs"]
pub(crate) mod ring;
#[path = "../../rust/vd/shmem.rs"]
pub(crate) mod shmem;

/// The ABI this module answers: the shared part and its device's.
pub(crate) mod uapi {
    pub(crate) use super::abi::*;
    pub(crate) use super::abi_evtchn::*;
}
