//! The vd shared-memory ring, as a crate for userspace (test VMM, benchmarks, fuzzing).
//!
//! The kernel modules include [`ring.rs`](ring) by path, so the host backend that runs in the
//! kernel and the guest frontend used by the tests are the same code.
#![no_std]

#[cfg(test)]
extern crate std;

#[path = "ring.rs"]
mod ring;
pub use ring::*;

#[path = "caps.rs"]
pub mod caps;
pub mod mem;
