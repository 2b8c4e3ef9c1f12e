//! The vd kernel/user ABI, shared by the kernel modules and every userspace tool.
//!
//! One file per device ([`evtchn`], [`sriov`], [`input`]) and the pieces they share ([`abi`]:
//! ioctl encoding, `VD_IOC_VERSION`, the driver names). The kernel modules include by path the
//! shared file and their own device's; userspace uses this crate normally, so the two sides
//! compile the same text and cannot drift. Everything is also re-exported at the crate root
//! (`vd_uapi::VDE_IOC_CREATE`).
#![no_std]

pub mod abi;
pub mod evtchn;
pub mod input;
pub mod sriov;

pub use abi::*;
pub use evtchn::*;
pub use input::*;
pub use sriov::*;
