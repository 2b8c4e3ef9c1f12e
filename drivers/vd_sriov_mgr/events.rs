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
        Self { buf: [VdsEvent::default(); CAPACITY], head: 0, len: 0, lost: 0 }
    }
    /// Appends `ev`, or counts it lost if full.
    pub(crate) fn push(&mut self, ev: VdsEvent) {
        if self.len == CAPACITY {
            self.lost += 1;
            return;
        }
        self.buf[(self.head + self.len) % CAPACITY] = ev;
        self.len += 1;
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
            return Some(VdsEvent { kind: vds_event::LOST, other_vm: n, ..Default::default() });
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
            q.push(VdsEvent { seq: i + 1, ..Default::default() });
        }
        for i in 0..CAPACITY as u64 {
            assert_eq!(q.pop().map(|e| e.seq), Some(i + 1));
        }
        let lost = q.pop().unwrap();
        assert_eq!((lost.kind, lost.other_vm), (vds_event::LOST, 5));
        assert!(q.pop().is_none());
        assert!(q.is_empty());
    }
}
