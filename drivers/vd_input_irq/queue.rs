// SPDX-License-Identifier: GPL-2.0
//! The per-VM input queue that holds events while none of the VM's vCPUs runs. Pure logic: a
//! fixed-capacity FIFO of evdev events that, when full, shrinks itself without losing meaning:
//!
//! - key and button events (`EV_KEY`) and every non-motion event are never coalesced;
//! - adjacent complete frames that carry only motion (`EV_REL`, `EV_ABS`) are merged into one:
//!   relative motion is summed per axis, absolute axes keep the newest value;
//! - multitouch frames (`ABS_MT_*`, whose values belong to the slot the last `ABS_MT_SLOT`
//!   selected) merge only with a frame of the same shape: the same events in the same order,
//!   the same slots selected, no `ABS_MT_TRACKING_ID` (a contact starting or ending) in either;
//!   they merge position by position, so every value stays with its slot;
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
/// `ABS_MT_SLOT`: the first multitouch axis.
pub(crate) const ABS_MT_SLOT: u16 = 0x2f;
/// `ABS_MT_TRACKING_ID`.
pub(crate) const ABS_MT_TRACKING_ID: u16 = 0x39;
/// `ABS_MT_TOOL_Y`: the last multitouch axis.
pub(crate) const ABS_MT_TOOL_Y: u16 = 0x3d;

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
    const fn is_mt(&self) -> bool {
        self.ty == EV_ABS && self.code >= ABS_MT_SLOT && self.code <= ABS_MT_TOOL_Y
    }
    /// Whether `self` and `o` are the same event of a frame's shape: same type and code, and
    /// for `ABS_MT_SLOT` the same slot.
    const fn same_place(&self, o: &Event) -> bool {
        let slot = self.ty == EV_ABS && self.code == ABS_MT_SLOT;
        self.ty == o.ty && self.code == o.code && (!slot || self.value == o.value)
    }
}

/// What a complete frame allows when merging.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Merge {
    /// Motion without multitouch axes: merge by (type, code).
    Axes,
    /// Multitouch motion without contacts starting or ending: merge with a frame of the same
    /// shape, position by position.
    Shape,
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
        Self {
            buf: [Event {
                ty: 0,
                code: 0,
                value: 0,
                time_ns: 0,
            }; N],
            head: 0,
            len: 0,
            stats: QueueStats {
                queued: 0,
                coalesced: 0,
                dropped: 0,
                max_depth: 0,
            },
        }
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
            self.push_raw(Event {
                ty: EV_SYN,
                code: SYN_DROPPED,
                value: 0,
                time_ns: e.time_ns,
            });
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
        // Logical start of the last frame written and how it merges, if it is motion-only and
        // complete.
        let mut mergeable: Option<(usize, Merge)> = None;
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
            let kind = if !motion_only {
                None
            } else if !(r..end).any(|i| self.at(i).is_mt()) {
                Some(Merge::Axes)
            } else if (r..end).any(|i| {
                let e = self.at(i);
                e.ty == EV_ABS && e.code == ABS_MT_TRACKING_ID
            }) {
                None
            } else {
                Some(Merge::Shape)
            };
            let merge_into = match (kind, mergeable) {
                (Some(Merge::Axes), Some((start, Merge::Axes))) => Some((start, Merge::Axes)),
                // w - 1 is the SYN_REPORT of the frame at `start`.
                (Some(Merge::Shape), Some((start, Merge::Shape)))
                    if w - 1 - start == end - r
                        && (0..end - r).all(|k| self.at(start + k).same_place(&self.at(r + k))) =>
                {
                    Some((start, Merge::Shape))
                }
                _ => None,
            };
            match merge_into {
                Some((start, Merge::Axes)) => {
                    // Merge into the frame at `start`, by (type, code).
                    let mut fend = w - 1;
                    for i in r..end {
                        let e = self.at(i);
                        match (start..fend)
                            .find(|&j| self.at(j).ty == e.ty && self.at(j).code == e.code)
                        {
                            Some(j) => {
                                let mut m = self.at(j);
                                m.value = if e.ty == EV_REL {
                                    m.value.saturating_add(e.value)
                                } else {
                                    e.value
                                };
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
                Some((start, Merge::Shape)) => {
                    // Same shape: position by position, so each value stays with its slot.
                    for k in 0..end - r {
                        let e = self.at(r + k);
                        let mut m = self.at(start + k);
                        m.value = if e.ty == EV_REL {
                            m.value.saturating_add(e.value)
                        } else {
                            e.value
                        };
                        self.set(start + k, m);
                        self.stats.coalesced += 1;
                    }
                    let syn = self.at(end);
                    self.set(w - 1, syn);
                    self.stats.coalesced += 1; // the SYN_REPORT absorbed
                }
                None => {
                    let start = w;
                    for i in r..=end {
                        let e = self.at(i);
                        self.set(w, e);
                        w += 1;
                    }
                    mergeable = kind.map(|k| (start, k));
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
        Event {
            ty,
            code,
            value,
            time_ns: 0,
        }
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
        assert_eq!(
            got.iter().filter(|e| e.0 == EV_ABS).last().map(|e| e.2),
            Some(400)
        );
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
        assert_eq!(
            got.iter()
                .filter(|e| e.0 == EV_REL)
                .map(|e| e.2)
                .sum::<i32>(),
            sum
        );
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

    /// Replays a delivered stream the way a multitouch consumer does: the slot each
    /// `ABS_MT_POSITION_X` value lands in.
    fn slot_xs<const N: usize>(q: &mut EventQueue<N>) -> KVec<(i32, i32)> {
        let mut slot = 0;
        let mut v = KVec::new();
        while let Some(e) = q.pop() {
            if e.ty == EV_ABS && e.code == ABS_MT_SLOT {
                slot = e.value;
            } else if e.ty == EV_ABS && e.code == ABS_MT_POSITION_X {
                v.push((slot, e.value), GFP_KERNEL).unwrap();
            }
        }
        v
    }
    const ABS_MT_POSITION_X: u16 = 0x35;
    const ABS_MT_POSITION_Y: u16 = 0x36;

    #[test]
    fn multitouch_values_stay_in_their_slots() {
        let mut q = EventQueue::<16>::new();
        // Two fingers: slot 0 moves along x 100.., slot 1 along x 900..; 10 frames of 7.
        for i in 0..10 {
            q.push(ev(EV_ABS, ABS_MT_SLOT, 0));
            q.push(ev(EV_ABS, ABS_MT_POSITION_X, 100 + i));
            q.push(ev(EV_ABS, ABS_MT_POSITION_Y, 100 + i));
            q.push(ev(EV_ABS, ABS_MT_SLOT, 1));
            q.push(ev(EV_ABS, ABS_MT_POSITION_X, 900 + i));
            q.push(ev(EV_ABS, ABS_MT_POSITION_Y, 900 + i));
            q.push(syn());
        }
        assert!(q.stats().coalesced > 0);
        assert_eq!(q.stats().dropped, 0);
        let xs = slot_xs(&mut q);
        assert!(xs
            .iter()
            .all(|&(slot, x)| (slot == 0 && x < 900) || (slot == 1 && x >= 900)));
        // The newest position of each finger survives.
        assert_eq!(xs.iter().filter(|e| e.0 == 0).last(), Some(&(0, 109)));
        assert_eq!(xs.iter().filter(|e| e.0 == 1).last(), Some(&(1, 909)));
    }

    #[test]
    fn multitouch_frames_of_another_shape_or_with_contacts_do_not_merge() {
        let mut q = EventQueue::<8>::new();
        // Slot 1 then slot 0: another shape than slot 0 then slot 1.
        q.push(ev(EV_ABS, ABS_MT_SLOT, 0));
        q.push(ev(EV_ABS, ABS_MT_POSITION_X, 1));
        q.push(syn());
        q.push(ev(EV_ABS, ABS_MT_SLOT, 1));
        q.push(ev(EV_ABS, ABS_MT_POSITION_X, 2));
        q.push(syn());
        assert_eq!(q.compact(), 0);
        let mut q = EventQueue::<8>::new();
        // A contact ending is never merged away.
        q.push(ev(EV_ABS, ABS_MT_TRACKING_ID, 5));
        q.push(syn());
        q.push(ev(EV_ABS, ABS_MT_TRACKING_ID, -1));
        q.push(syn());
        assert_eq!(q.compact(), 0);
        // Multitouch and plain axes do not merge with each other either.
        let mut q = EventQueue::<8>::new();
        q.push(ev(EV_ABS, 0, 1));
        q.push(syn());
        q.push(ev(EV_ABS, ABS_MT_POSITION_X, 2));
        q.push(syn());
        assert_eq!(q.compact(), 0);
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
