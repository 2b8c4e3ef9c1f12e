//! The vd kernel/user ABI, shared by the kernel modules and every userspace tool.
//!
//! The kernel modules include [`uapi.rs`](uapi) by path (`#[path = ...] mod uapi;`), userspace
//! uses this crate normally, so the two sides compile the same text and cannot drift.
#![no_std]

#[path = "uapi.rs"]
mod uapi;
pub use uapi::*;
