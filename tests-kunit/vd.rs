// SPDX-License-Identifier: GPL-2.0
//! The shared code the vd_kunit suites use, each file included by path and nothing more, so the
//! compiler reports what is left unused: the ring and the ABI (shared with userspace, whole by
//! nature: only the shared ABI part and this module's device) and the pieces of `rust/vd/`
//! (the kernel-side edges, where the project's `unsafe` lives). A piece names what it needs
//! as a sibling here (`super::ring`, `super::uapi`, `super::shmem`).
//! The suites test a part of each piece: dead code is allowed on those includes.

#[allow(dead_code, unreachable_pub, reason = "shared with userspace")]
#[path = "../userspace-tools/vd-uapi/src/abi.rs"]
pub(crate) mod abi;
#[allow(dead_code, reason = "the suites test a part of each piece")]
#[path = "../rust/vd/hops.rs"]
pub(crate) mod hops;
#[allow(dead_code, reason = "the suites test a part of each piece")]
#[path = "../rust/vd/ratelimit.rs"]
pub(crate) mod ratelimit;
#[allow(dead_code, unreachable_pub, reason = "shared with userspace")]
#[path = "../userspace-tools/vd-ring/src/ring.rs"]
pub(crate) mod ring;
#[allow(dead_code, reason = "the suites test a part of each piece")]
#[path = "../rust/vd/shmem.rs"]
pub(crate) mod shmem;

pub(crate) use abi as uapi;
