// SPDX-License-Identifier: GPL-2.0
//! A client: one open file of `/dev/vd_sriov`. Its leases and waiters are recorded in the
//! manager under its id and end when the file is released; it reads events from its own queue.

use crate::events::EventQueue;
use crate::uapi::VdsEvent;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::prelude::*;
use kernel::sync::poll::PollCondVar;
use kernel::sync::{Arc, Mutex};

/// Client ids, never reused while the module is loaded (0 is never an id).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Most records returned by one `read`.
pub(crate) const READ_BATCH: usize = 16;

/// One open file's lease-table client (the `ClientFile` holds it; events and waiters hold
/// clones).
#[pin_data]
pub(crate) struct Client {
    /// Owner id in the lease table.
    pub(crate) id: u64,
    /// Thread-group id of the opener.
    pub(crate) pid: u32,
    /// The fields protected by this lock: the client's pending events.
    #[pin]
    queue: Mutex<KBox<EventQueue>>,
    /// Signalled when an event is queued; `poll` waits on it.
    #[pin]
    readable: PollCondVar,
}

impl Client {
    /// A new client for the calling process.
    pub(crate) fn new() -> Result<Arc<Self>> {
        let q = KBox::new(EventQueue::new(), GFP_KERNEL)?;
        Arc::pin_init(
            try_pin_init!(Self {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                pid: kernel::current!().tgid() as u32,
                queue <- kernel::new_mutex!(q),
                readable <- kernel::sync::poll::PollCondVar::new(
                    c"vd_sriov_events",
                    kernel::static_lock_class!()
                ),
            }),
            GFP_KERNEL,
        )
    }

    /// Queues `ev` and wakes readers and pollers.
    pub(crate) fn push(&self, ev: VdsEvent) {
        self.queue.lock().push(ev);
        self.readable.notify_all();
    }

    /// Whether a read would return at once.
    pub(crate) fn readable(&self) -> bool {
        !self.queue.lock().is_empty()
    }

    /// The poll condition variable.
    pub(crate) fn cond(&self) -> &PollCondVar {
        &self.readable
    }

    /// Puts back records taken by [`Client::take`] that the reader did not get (the copy to
    /// its buffer faulted), in front of the queue: an event survives a failed read.
    pub(crate) fn unread(&self, evs: &[VdsEvent]) {
        if evs.is_empty() {
            return;
        }
        self.queue.lock().unread(evs);
        self.readable.notify_all();
    }

    /// Takes up to `max` records into `out`, waiting for the first one unless `nonblock`.
    /// `EAGAIN` if none and `nonblock`; `ERESTARTSYS` if a signal arrives while waiting.
    pub(crate) fn take(
        &self,
        out: &mut [VdsEvent; READ_BATCH],
        max: usize,
        nonblock: bool,
    ) -> Result<usize> {
        let mut q = self.queue.lock();
        while q.is_empty() {
            if nonblock {
                return Err(EAGAIN);
            }
            if self.readable.wait_interruptible(&mut q) {
                return Err(ERESTARTSYS);
            }
        }
        let mut n = 0;
        while n < max.min(READ_BATCH) {
            match q.pop() {
                Some(ev) => {
                    out[n] = ev;
                    n += 1;
                }
                None => break,
            }
        }
        Ok(n)
    }
}
