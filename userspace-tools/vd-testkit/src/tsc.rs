// SPDX-License-Identifier: GPL-2.0
//! The TSC: the one clock of the latencies the benchmarks compare (vd-testvmm's guest rows are
//! TSC deltas taken by the guest program, its host rows [`rdtsc`]; `vd-itest hops` lines up a
//! guest's and its host's stamps of the same requests).

use std::time::{Duration, Instant};

/// The host CPU's time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` has no memory effects; every x86_64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The TSC rate, from a 200 ms wall-clock window.
pub fn tsc_hz() -> f64 {
    let (c0, t0) = (rdtsc(), Instant::now());
    std::thread::sleep(Duration::from_millis(200));
    let (c1, t1) = (rdtsc(), Instant::now());
    (c1.wrapping_sub(c0)) as f64 / (t1 - t0).as_secs_f64()
}
