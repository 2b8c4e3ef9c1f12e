// SPDX-License-Identifier: GPL-2.0
//! Usage accounting of one VF: a short history of its cumulative traffic counter and the average
//! rate over a sliding window. Pure logic, tested by KUnit.
//!
//! Samples come from the VF's netdev while it is on the host, or are pushed by the lease holder
//! (`VDS_IOC_SAMPLE`) while it is passed through. Stored samples are at least `gap_ms` apart
//! (a faster source replaces the newest sample), so the history spans at least
//! `(SAMPLES - 1) * gap_ms`. A counter that goes backwards (a new netdev after a driver move, a
//! restarted VMM) continues from the last total instead of producing a huge or negative rate.

/// Samples kept per VF.
pub(crate) const SAMPLES: usize = 64;

/// Counter history of one VF.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Usage {
    t_ms: [u64; SAMPLES],
    total: [u64; SAMPLES],
    /// Index of the newest sample (valid if `len > 0`).
    newest: usize,
    len: usize,
    /// Added to raw counter values so totals never go backwards.
    base: u64,
    last_raw: u64,
}

impl Usage {
    /// No history.
    pub(crate) const fn new() -> Self {
        Self {
            t_ms: [0; SAMPLES],
            total: [0; SAMPLES],
            newest: 0,
            len: 0,
            base: 0,
            last_raw: 0,
        }
    }

    /// Forgets the history (new lease, new holder).
    pub(crate) fn reset(&mut self) {
        *self = Self::new();
    }

    fn idx(&self, age: usize) -> usize {
        (self.newest + SAMPLES - age) % SAMPLES
    }

    /// Records the raw cumulative counter `raw` at `t_ms`; stored samples are kept at least
    /// `gap_ms` apart. Samples older than the newest one are ignored.
    pub(crate) fn push(&mut self, t_ms: u64, raw: u64, gap_ms: u64) {
        if self.len > 0 && t_ms < self.t_ms[self.newest] {
            return;
        }
        if self.len > 0 && raw < self.last_raw {
            self.base = self.base.saturating_add(self.last_raw);
        }
        self.last_raw = raw;
        let total = self.base.saturating_add(raw);
        if self.len >= 2 && t_ms.saturating_sub(self.t_ms[self.idx(1)]) < gap_ms {
            // Too close to the previous stored sample: the newest one moves forward instead.
            self.t_ms[self.newest] = t_ms;
            self.total[self.newest] = total;
            return;
        }
        if self.len > 0 {
            self.newest = (self.newest + 1) % SAMPLES;
        }
        self.t_ms[self.newest] = t_ms;
        self.total[self.newest] = total;
        self.len = (self.len + 1).min(SAMPLES);
    }

    /// The newest total.
    pub(crate) fn total(&self) -> u64 {
        if self.len == 0 {
            0
        } else {
            self.total[self.newest]
        }
    }

    /// Average bytes per second over `[now_ms - window_ms, now_ms]`, if the history reaches back
    /// to the start of the window. Time after the newest sample counts as no traffic (a source
    /// that stops reporting is idle, never busy).
    pub(crate) fn rate(&self, now_ms: u64, window_ms: u64) -> Option<u64> {
        if self.len == 0 || window_ms == 0 {
            return None;
        }
        let start = now_ms.checked_sub(window_ms)?;
        // The newest sample at or before the window start.
        let base = (0..self.len)
            .map(|age| self.idx(age))
            .find(|&i| self.t_ms[i] <= start)?;
        let dt = now_ms - self.t_ms[base];
        if dt == 0 {
            return None;
        }
        let bytes = self.total().saturating_sub(self.total[base]);
        // Saturates past 1.8e16 bytes in one window (no 128-bit division in the kernel).
        Some(bytes.saturating_mul(1000) / dt)
    }
}

#[kernel::prelude::kunit_tests(vd_sriov_usage)]
mod tests {
    use super::*;

    #[test]
    fn no_rate_until_the_history_covers_the_window() {
        let mut u = Usage::new();
        u.push(1000, 0, 10);
        assert_eq!(u.rate(1500, 1000), None);
        u.push(1500, 500, 10);
        assert_eq!(u.rate(1500, 1000), None);
        u.push(2000, 1000, 10);
        // Base sample at t=1000 (= now - window): 1000 bytes in 1 s.
        assert_eq!(u.rate(2000, 1000), Some(1000));
    }

    #[test]
    fn the_window_slides() {
        let mut u = Usage::new();
        // 10 s at 100 B/s, then 10 s at 5000 B/s, sampled every 500 ms.
        let mut total = 0;
        for i in 0..=40u64 {
            u.push(i * 500, total, 100);
            if i == 20 {
                assert_eq!(u.rate(10_000, 5000), Some(100));
            }
            total += if i < 20 { 50 } else { 2500 };
        }
        assert_eq!(u.rate(20_000, 5000), Some(5000));
        // Silence after the last sample counts as idle.
        assert_eq!(u.rate(25_000, 5000), Some(0));
    }

    #[test]
    fn a_counter_reset_does_not_make_traffic() {
        let mut u = Usage::new();
        u.push(0, 1_000_000, 10);
        u.push(1000, 1_000_100, 10);
        u.push(2000, 50, 10); // new netdev: counters from 0
        assert_eq!(u.total(), 1_000_150);
        assert_eq!(u.rate(2000, 2000), Some(75));
    }

    #[test]
    fn extreme_counters_saturate() {
        let mut u = Usage::new();
        // A holder pushes the largest count, then restarts from 0 and pushes it again: the total
        // saturates instead of overflowing.
        u.push(0, u64::MAX, 10);
        u.push(1000, 0, 10);
        u.push(2000, u64::MAX, 10);
        assert_eq!(u.total(), u64::MAX);
        assert_eq!(u.rate(2000, 1000), Some(0));
        let mut u = Usage::new();
        u.push(0, 0, 10);
        u.push(1, u64::MAX, 10);
        assert_eq!(u.rate(1, 1), Some(u64::MAX));
        // Windows longer than the time since boot, and the largest times.
        assert_eq!(u.rate(5, u64::MAX), None);
        u.push(u64::MAX, u64::MAX, u64::MAX);
        assert_eq!(u.rate(u64::MAX, u64::MAX), Some(1));
    }

    #[test]
    fn fast_sources_keep_a_long_history() {
        let mut u = Usage::new();
        for i in 0..10_000u64 {
            u.push(i, i, 100); // 1 ms apart, 1 B/ms
        }
        // 64 samples >= 100 ms apart span more than 6 s.
        assert_eq!(u.rate(9_999, 6000), Some(1000));
        // Out-of-order samples are ignored.
        u.push(5, 0, 100);
        assert_eq!(u.total(), 9_999);
    }
}
