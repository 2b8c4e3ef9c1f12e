// SPDX-License-Identifier: GPL-2.0
//! What the vd test programs (`vd-itest`, `vd-testvmm`, the QEMU tests of `vd-ivshmem`) share:
//! the uinput test hardware, the sample statistics their reports print, the TSC their latencies
//! are measured with, and a qtest client for a stock QEMU. One definition each.

pub mod qtest;
pub mod stats;
pub mod tsc;
pub mod uinput;
