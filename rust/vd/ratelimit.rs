// SPDX-License-Identifier: GPL-2.0
//! A lock-free rate limit for log lines caused by guests or unprivileged callers: at most
//! `burst` lines per `interval`, like the kernel's `DEFINE_RATELIMIT_STATE`, plus a count of the
//! lines suppressed so that nothing hides silently.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Rate-limit state; a `static` per call site.
pub(crate) struct RateLimit {
    interval_ms: u64,
    burst: u32,
    /// Start of the current window, in ms of the monotonic clock.
    window_start: AtomicU64,
    /// Lines printed in the current window.
    printed: AtomicU32,
    /// Lines suppressed since boot.
    suppressed: AtomicU64,
}

impl RateLimit {
    /// At most `burst` lines every `interval_ms` milliseconds.
    pub(crate) const fn new(interval_ms: u64, burst: u32) -> Self {
        Self {
            interval_ms,
            burst,
            window_start: AtomicU64::new(0),
            printed: AtomicU32::new(0),
            suppressed: AtomicU64::new(0),
        }
    }
    /// Whether a line may be printed now.
    pub(crate) fn allow(&self) -> bool {
        // SAFETY: `ktime_get_mono_fast_ns` has no preconditions and is safe in any context.
        let now = unsafe { kernel::bindings::ktime_get_mono_fast_ns() } / 1_000_000;
        let start = self.window_start.load(Ordering::Relaxed);
        if now.wrapping_sub(start) >= self.interval_ms
            && self
                .window_start
                .compare_exchange(start, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.printed.store(0, Ordering::Relaxed);
        }
        if self.printed.fetch_add(1, Ordering::Relaxed) < self.burst {
            true
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
    /// Lines suppressed so far.
    #[allow(
        dead_code,
        reason = "read by the KUnit suite (vd_kunit); the drivers only log"
    )]
    pub(crate) fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

/// `pr_warn!` through a per-call-site [`RateLimit`] (5 lines per 5 s).
#[macro_export]
macro_rules! vd_warn_ratelimited {
    ($($arg:tt)*) => {{
        static RL: $crate::vd::ratelimit::RateLimit =
            $crate::vd::ratelimit::RateLimit::new(5000, 5);
        if RL.allow() {
            kernel::pr_warn!($($arg)*);
        }
    }};
}
