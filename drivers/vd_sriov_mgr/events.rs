// SPDX-License-Identifier: GPL-2.0
//! A bounded queue of events for one reader. Pure logic, tested by KUnit. When it is full the
//! oldest events stay and new ones are counted as lost; the reader gets one `LOST` record with
//! the count before the events that follow the gap.

use crate::uapi::{vds_event, VdsEvent};

/// Events kept per open file.
pub(crate) const CAPACITY: usize = 128;

/// The queue.
pub(crate) struct EventQueue {
    buf: [VdsEvent; CAPACITY],
    head: usize,
    len: usize,
    lost: u64,
}

impl EventQueue {
    /// Empty.
    pub(crate) fn new() -> Self {
        Self {
            buf: [VdsEvent::default(); CAPACITY],
            head: 0,
            len: 0,
            lost: 0,
        }
    }
    /// Appends `ev`, or counts it lost if full.
    pub(crate) fn push(&mut self, ev: VdsEvent) {
        if self.len == CAPACITY {
            self.lost = self.lost.saturating_add(1);
            return;
        }
        self.buf[(self.head + self.len) % CAPACITY] = ev;
        self.len += 1;
    }
    /// Puts `evs`, records taken by [`EventQueue::pop`] that could not be handed to the reader,
    /// back at the front in their order, so that the next read returns them again. A `LOST`
    /// record goes back into the lost count. If events were queued meanwhile and the queue is
    /// full, the newest queued ones make room and are counted lost, as a push would have done.
    pub(crate) fn unread(&mut self, evs: &[VdsEvent]) {
        for ev in evs.iter().rev() {
            if ev.kind == vds_event::LOST {
                self.lost = self.lost.saturating_add(ev.other_vm);
                continue;
            }
            if self.len == CAPACITY {
                self.len -= 1;
                self.lost = self.lost.saturating_add(1);
            }
            self.head = (self.head + CAPACITY - 1) % CAPACITY;
            self.buf[self.head] = *ev;
            self.len += 1;
        }
    }
    /// Whether a read would return something.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0 && self.lost == 0
    }
    /// The next record: queued events first, then a `LOST` record if events were dropped.
    pub(crate) fn pop(&mut self) -> Option<VdsEvent> {
        if self.len > 0 {
            let ev = self.buf[self.head];
            self.head = (self.head + 1) % CAPACITY;
            self.len -= 1;
            return Some(ev);
        }
        if self.lost > 0 {
            let n = core::mem::take(&mut self.lost);
            return Some(VdsEvent {
                kind: vds_event::LOST,
                other_vm: n,
                ..Default::default()
            });
        }
        None
    }
}

#[kernel::prelude::kunit_tests(vd_sriov_events)]
mod tests {
    use super::*;
    use kernel::prelude::*;

    #[test]
    fn fifo_then_lost_count() {
        let mut q = KBox::new(EventQueue::new(), GFP_KERNEL).unwrap();
        assert!(q.is_empty());
        for i in 0..CAPACITY as u64 + 5 {
            q.push(VdsEvent {
                seq: i + 1,
                ..Default::default()
            });
        }
        for i in 0..CAPACITY as u64 {
            assert_eq!(q.pop().map(|e| e.seq), Some(i + 1));
        }
        let lost = q.pop().unwrap();
        assert_eq!((lost.kind, lost.other_vm), (vds_event::LOST, 5));
        assert!(q.pop().is_none());
        assert!(q.is_empty());
    }

    #[test]
    fn unread_events_come_back_first() {
        let mut q = KBox::new(EventQueue::new(), GFP_KERNEL).unwrap();
        for i in 1..=3u64 {
            q.push(VdsEvent {
                seq: i,
                ..Default::default()
            });
        }
        let a = q.pop().unwrap();
        let b = q.pop().unwrap();
        q.push(VdsEvent {
            seq: 4,
            ..Default::default()
        });
        // The copy to the reader failed: both go back, before 3 and 4.
        q.unread(&[a, b]);
        for i in 1..=4u64 {
            assert_eq!(q.pop().map(|e| e.seq), Some(i));
        }
        assert!(q.pop().is_none());
    }

    #[test]
    fn unread_into_a_full_queue_counts_the_newest_lost() {
        let mut q = KBox::new(EventQueue::new(), GFP_KERNEL).unwrap();
        for i in 0..CAPACITY as u64 + 2 {
            q.push(VdsEvent {
                seq: i + 1,
                ..Default::default()
            });
        }
        let first = q.pop().unwrap();
        q.push(VdsEvent {
            seq: 1000,
            ..Default::default()
        });
        // Full again (127 old + seq 1000); the first one goes back, seq 1000 makes room.
        q.unread(&[first]);
        for i in 0..CAPACITY as u64 {
            assert_eq!(q.pop().map(|e| e.seq), Some(i + 1));
        }
        let lost = q.pop().unwrap();
        assert_eq!((lost.kind, lost.other_vm), (vds_event::LOST, 3));
        // A LOST record that could not be copied goes back into the count.
        q.unread(&[lost]);
        q.push(VdsEvent {
            seq: 7,
            ..Default::default()
        });
        assert_eq!(q.pop().map(|e| e.seq), Some(7));
        let lost = q.pop().unwrap();
        assert_eq!((lost.kind, lost.other_vm), (vds_event::LOST, 3));
        assert!(q.is_empty());
    }

    #[test]
    fn a_full_tick_of_changes_is_never_dropped_silently() {
        // 256 VFs changing state at once: what does not fit is reported as a count.
        let mut q = KBox::new(EventQueue::new(), GFP_KERNEL).unwrap();
        for i in 0..crate::lease::MAX_VFS as u64 {
            q.push(VdsEvent {
                seq: i + 1,
                kind: vds_event::CANDIDATE,
                ..Default::default()
            });
        }
        let mut n = 0u64;
        let mut lost = 0;
        while let Some(e) = q.pop() {
            if e.kind == vds_event::LOST {
                lost += e.other_vm;
            } else {
                n += 1;
            }
        }
        assert_eq!(n + lost, crate::lease::MAX_VFS as u64);
    }
}
