// SPDX-License-Identifier: GPL-2.0
//! The per-VM input queue that holds events while none of the VM's vCPUs runs. Pure logic: a
//! fixed-capacity FIFO of evdev events that, when full, shrinks itself without losing meaning:
//!
//! - key and button events (`EV_KEY`) and every non-motion event are never coalesced;
//! - adjacent complete frames that carry only motion (`EV_REL`, `EV_ABS`) are merged into one:
//!   relative motion is summed per axis, absolute axes keep the newest value;
//! - `SYN_REPORT` framing stays intact: a merged frame ends with one `SYN_REPORT`;
//! - when nothing can be merged the queue is flushed and replaced by one `SYN_DROPPED`, as
//!   evdev does, and the drop is counted.

/// `EV_SYN`.
pub(crate) const EV_SYN: u16 = 0x00;
/// `EV_KEY`.
pub(crate) const EV_KEY: u16 = 0x01;
/// `EV_REL`.
pub(crate) const EV_REL: u16 = 0x02;
/// `EV_ABS`.
pub(crate) const EV_ABS: u16 = 0x03;
/// `SYN_REPORT`.
pub(crate) const SYN_REPORT: u16 = 0;
/// `SYN_DROPPED`.
pub(crate) const SYN_DROPPED: u16 = 3;

/// One input event as the guest receives it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, kernel::prelude::Zeroable)]
pub(crate) struct Event {
    pub(crate) ty: u16,
    pub(crate) code: u16,
    pub(crate) value: i32,
    /// When the host saw it (ns, monotonic): the delivery-delay histogram's start.
    pub(crate) time_ns: u64,
}

impl Event {
    const fn is_report(&self) -> bool {
        self.ty == EV_SYN && self.code == SYN_REPORT
    }
    const fn is_motion(&self) -> bool {
        self.ty == EV_REL || self.ty == EV_ABS
    }
}

/// Counters of what the queue did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, kernel::prelude::Zeroable)]
pub(crate) struct QueueStats {
    pub(crate) queued: u64,
    pub(crate) coalesced: u64,
    pub(crate) dropped: u64,
    pub(crate) max_depth: u32,
}

/// FIFO of at most `N` events.
///
/// # Invariants
///
/// `len <= N`; logical event `i` (`0 <= i < len`) is at `buf[(head + i) % N]`.
///
/// All zeroes is an empty queue (`Zeroable`): large queues are initialised in place with
/// `init_zeroed()` rather than built on the (small) kernel stack.
#[derive(kernel::prelude::Zeroable)]
pub(crate) struct EventQueue<const N: usize> {
    buf: [Event; N],
    head: usize,
    len: usize,
    stats: QueueStats,
}

impl<const N: usize> EventQueue<N> {
    /// An empty queue.
    pub(crate) const fn new() -> Self {
        Self { buf: [Event { ty: 0, code: 0, value: 0, time_ns: 0 }; N], head: 0, len: 0, stats: QueueStats { queued: 0, coalesced: 0, dropped: 0, max_depth: 0 } }
    }
    /// Events queued now.
    pub(crate) const fn len(&self) -> usize {
        self.len
    }
    /// What the queue did so far.
    pub(crate) const fn stats(&self) -> QueueStats {
        self.stats
    }
    fn at(&self, i: usize) -> Event {
        self.buf[(self.head + i) % N]
    }
    fn set(&mut self, i: usize, e: Event) {
        self.buf[(self.head + i) % N] = e;
    }

    /// Queues `e`, merging motion frames or flushing to `SYN_DROPPED` when full.
    pub(crate) fn push(&mut self, e: Event) {
        if self.len == N {
            self.compact();
        }
        if self.len == N {
            // Nothing merged: evdev's answer. The partial frame is lost with the rest; the guest
            // resynchronises its state on SYN_DROPPED.
            self.stats.dropped += self.len as u64;
            self.len = 0;
            self.push_raw(Event { ty: EV_SYN, code: SYN_DROPPED, value: 0, time_ns: e.time_ns });
        }
        self.push_raw(e);
        self.stats.queued += 1;
    }

    fn push_raw(&mut self, e: Event) {
        let i = self.len;
        self.len += 1;
        self.set(i, e);
        self.stats.max_depth = self.stats.max_depth.max(self.len as u32);
    }

    /// Oldest event, left in the queue.
    pub(crate) fn front(&self) -> Option<Event> {
        (self.len > 0).then(|| self.at(0))
    }

    /// Oldest event.
    pub(crate) fn pop(&mut self) -> Option<Event> {
        if self.len == 0 {
            return None;
        }
        let e = self.at(0);
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(e)
    }

    /// Merges every run of adjacent, complete, motion-only frames into one frame, in place.
    /// Returns the number of events freed.
    pub(crate) fn compact(&mut self) -> usize {
        let (mut r, mut w) = (0, 0);
        // Logical start of the last frame written, if it is motion-only and complete.
        let mut mergeable: Option<usize> = None;
        while r < self.len {
            // Find the frame [r, end]: up to and including its SYN_REPORT.
            let mut end = r;
            while end < self.len && !self.at(end).is_report() {
                end += 1;
            }
            if end == self.len {
                // Open frame at the tail: copy as is.
                while r < self.len {
                    let e = self.at(r);
                    self.set(w, e);
                    r += 1;
                    w += 1;
                }
                break;
            }
            let motion_only = (r..end).all(|i| self.at(i).is_motion());
            match (motion_only, mergeable) {
                (true, Some(start)) => {
                    // w - 1 is the SYN_REPORT of the frame at `start`: merge into it.
                    let mut fend = w - 1;
                    for i in r..end {
                        let e = self.at(i);
                        match (start..fend).find(|&j| self.at(j).ty == e.ty && self.at(j).code == e.code) {
                            Some(j) => {
                                let mut m = self.at(j);
                                m.value = if e.ty == EV_REL { m.value.saturating_add(e.value) } else { e.value };
                                self.set(j, m);
                            }
                            None => {
                                // New axis: it takes the SYN's place; the SYN moves one on (w <= r).
                                self.set(fend, e);
                                fend += 1;
                            }
                        }
                        self.stats.coalesced += 1;
                    }
                    let syn = self.at(end);
                    self.set(fend, syn);
                    w = fend + 1;
                    self.stats.coalesced += 1; // the SYN_REPORT absorbed
                }
                _ => {
                    let start = w;
                    for i in r..=end {
                        let e = self.at(i);
                        self.set(w, e);
                        w += 1;
                    }
                    mergeable = if motion_only { Some(start) } else { None };
                }
            }
            r = end + 1;
        }
        let freed = self.len - w;
        self.len = w;
        freed
    }
}

#[kernel::prelude::kunit_tests(vd_input_queue)]
mod tests {
    use super::*;
    use kernel::prelude::*;

    fn ev(ty: u16, code: u16, value: i32) -> Event {
        Event { ty, code, value, time_ns: 0 }
    }
    fn syn() -> Event {
        ev(EV_SYN, SYN_REPORT, 0)
    }
    fn drain<const N: usize>(q: &mut EventQueue<N>) -> KVec<(u16, u16, i32)> {
        let mut v = KVec::new();
        while let Some(e) = q.pop() {
            v.push((e.ty, e.code, e.value), GFP_KERNEL).unwrap();
        }
        v
    }

    #[test]
    fn fifo_order_below_capacity() {
        let mut q = EventQueue::<8>::new();
        for i in 0..6 {
            q.push(ev(EV_KEY, 30 + i, 1));
        }
        let got = drain(&mut q);
        assert_eq!(got.len(), 6);
        for (i, g) in got.iter().enumerate() {
            assert_eq!(*g, (EV_KEY, 30 + i as u16, 1));
        }
        assert_eq!(q.stats().coalesced, 0);
    }

    #[test]
    fn motion_frames_coalesce_with_sums_and_newest_abs() {
        let mut q = EventQueue::<6>::new();
        // Three frames of REL_X/REL_Y/ABS_X... each 3 events; capacity 6 forces merging.
        for i in 1..=4 {
            q.push(ev(EV_REL, 0, i));
            q.push(ev(EV_ABS, 0, 100 * i));
            q.push(syn());
        }
        let got = drain(&mut q);
        // One merged frame: REL_X sum 1+2+3 (+4 after the second merge), ABS newest, one SYN.
        let rel: i32 = got.iter().filter(|e| e.0 == EV_REL).map(|e| e.2).sum();
        assert_eq!(rel, 10);
        assert_eq!(got.iter().filter(|e| e.0 == EV_ABS).last().map(|e| e.2), Some(400));
        assert_eq!(got.last(), Some(&(EV_SYN, SYN_REPORT, 0)));
        assert!(got.iter().all(|e| !(e.0 == EV_SYN && e.1 == SYN_DROPPED)));
        assert!(q.stats().coalesced > 0);
    }

    #[test]
    fn keys_are_never_merged_and_keep_order() {
        // 80 events into 24 slots: the motion between key frames folds into one frame each.
        let mut q = EventQueue::<24>::new();
        let mut sum = 0;
        for i in 0..40 {
            if i % 10 == 0 {
                q.push(ev(EV_KEY, 272, 1));
                q.push(syn());
            } else {
                q.push(ev(EV_REL, 1, 2));
                q.push(syn());
                sum += 2;
            }
        }
        let got = drain(&mut q);
        let keys = got.iter().filter(|e| e.0 == EV_KEY).count();
        assert_eq!(keys, 4);
        assert_eq!(got.iter().filter(|e| e.0 == EV_REL).map(|e| e.2).sum::<i32>(), sum);
        // Every frame still ends with a SYN_REPORT.
        assert_eq!(got.last(), Some(&(EV_SYN, SYN_REPORT, 0)));
        assert_eq!(q.stats().dropped, 0);
    }

    #[test]
    fn unmergeable_overflow_gives_syn_dropped() {
        let mut q = EventQueue::<4>::new();
        for i in 0..5 {
            q.push(ev(EV_KEY, 30, i % 2));
        }
        let got = drain(&mut q);
        assert_eq!(got[0], (EV_SYN, SYN_DROPPED, 0));
        assert_eq!(got[1], (EV_KEY, 30, 0));
        assert_eq!(q.stats().dropped, 4);
    }

    #[test]
    fn open_frame_is_not_merged() {
        let mut q = EventQueue::<4>::new();
        q.push(ev(EV_REL, 0, 1));
        q.push(syn());
        q.push(ev(EV_REL, 0, 1));
        q.push(ev(EV_REL, 1, 1));
        assert_eq!(q.compact(), 0);
        assert_eq!(q.len(), 4);
    }
}
