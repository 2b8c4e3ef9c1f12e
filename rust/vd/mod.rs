// SPDX-License-Identifier: GPL-2.0
//! Kernel-side code shared by the vd modules, included by path (`#[path] mod vd;`) into each
//! module crate. The `unsafe` edges of the project live here, each behind a small safe type;
//! the drivers themselves stay in safe Rust. Every module that includes this also includes the
//! ABI as `crate::uapi` and the ring as `crate::ring`.

pub(crate) mod backing;
pub(crate) mod common;
pub(crate) mod eventfd;
pub(crate) mod input;
pub(crate) mod kfile;
pub(crate) mod memremap;
pub(crate) mod modref;
pub(crate) mod msix;
pub(crate) mod netdev;
pub(crate) mod pci;
pub(crate) mod preempt;
pub(crate) mod ratelimit;
pub(crate) mod shmem;

/// Version of the vd modules, answered in `VD_IOC_VERSION`.
pub(crate) const VERSION: &str = "0.1.0";
