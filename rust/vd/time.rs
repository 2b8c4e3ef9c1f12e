// SPDX-License-Identifier: GPL-2.0
//! The monotonic clock.

use kernel::bindings;

/// Monotonic clock in nanoseconds.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: `ktime_get` has no preconditions (process or interrupt context).
    unsafe { bindings::ktime_get() as u64 }
}

/// Monotonic clock in milliseconds.
#[allow(dead_code, reason = "vd_input_irq stamps events in nanoseconds only")]
pub(crate) fn now_ms() -> u64 {
    now_ns() / 1_000_000
}
