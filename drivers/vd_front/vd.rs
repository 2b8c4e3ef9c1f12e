// SPDX-License-Identifier: GPL-2.0
//! The shared code vd_front uses, each file included by path and nothing more, so the
//! compiler reports what is left unused: the ring and the ABI (shared with userspace, whole by
//! nature; vd_front uses no ioctl ABI) and the pieces of `rust/vd/`
//! (the kernel-side edges, where the project's `unsafe` lives). A piece names what it needs
//! as a sibling here (`super::ring`, `super::uapi`, `super::shmem`).

#[allow(dead_code, unreachable_pub, reason = "shared with userspace")]
#[path = "../../userspace-tools/vd-ring/src/caps.rs"]
pub(crate) mod caps;
#[path = "../../rust/vd/hops.rs"]
pub(crate) mod hops;
#[path = "../../rust/vd/inputdev.rs"]
pub(crate) mod inputdev;
#[path = "../../rust/vd/knob.rs"]
pub(crate) mod knob;
#[path = "../../rust/vd/memremap.rs"]
pub(crate) mod memremap;
#[path = "../../rust/vd/msix.rs"]
pub(crate) mod msix;
#[path = "../../rust/vd/ratelimit.rs"]
pub(crate) mod ratelimit;
#[allow(dead_code, unreachable_pub, reason = "shared with userspace")]
#[path = "../../userspace-tools/vd-ring/src/ring.rs"]
pub(crate) mod ring;
#[path = "../../rust/vd/time.rs"]
pub(crate) mod time;
#[path = "../../rust/vd/workqueue.rs"]
pub(crate) mod workqueue;
