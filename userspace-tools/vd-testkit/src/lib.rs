// SPDX-License-Identifier: GPL-2.0
//! What the vd test programs (`vd-itest`, `vd-testvmm`) share: the uinput test hardware and the
//! sample statistics their reports print. One definition each.

pub mod stats;
pub mod uinput;
