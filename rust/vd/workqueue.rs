// SPDX-License-Identifier: GPL-2.0
//! Workqueues: one owned by a module, and cancelling a delayed work item.

use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::workqueue::{HasDelayedWork, Queue, WorkItem};

/// An unbound workqueue owned by a module: dropping it drains and destroys it, so no work item
/// of the module runs (or is queued) afterwards.
///
/// # Invariants
///
/// `wq` is a workqueue allocated by `alloc_workqueue` and not yet destroyed.
#[allow(
    dead_code,
    reason = "vd_sriov_mgr's sampler queue; vd_front uses the system's"
)]
pub(crate) struct OwnedQueue {
    wq: core::ptr::NonNull<bindings::workqueue_struct>,
}

// SAFETY: workqueues are internally synchronised; any thread may queue work or destroy it.
unsafe impl Send for OwnedQueue {}
// SAFETY: as above.
unsafe impl Sync for OwnedQueue {}

#[allow(dead_code, reason = "as for the type")]
impl OwnedQueue {
    /// An unbound workqueue named `name`.
    pub(crate) fn new(name: &'static CStr) -> Result<Self> {
        // SAFETY: "%s" with one string argument that lives forever; default max_active.
        let wq = unsafe {
            bindings::alloc_workqueue_noprof(
                c"%s".as_char_ptr(),
                bindings::wq_flags_WQ_UNBOUND,
                0,
                name.as_char_ptr(),
            )
        };
        // INVARIANT: a non-null return is a live workqueue we own.
        core::ptr::NonNull::new(wq)
            .map(|wq| Self { wq })
            .ok_or(ENOMEM)
    }
    /// The queue, to enqueue work on.
    pub(crate) fn queue(&self) -> &Queue {
        // SAFETY: the workqueue lives until `self` is dropped (invariant), which outlives the
        // borrow.
        unsafe { Queue::from_raw(self.wq.as_ptr()) }
    }
}

impl Drop for OwnedQueue {
    fn drop(&mut self) {
        // SAFETY: we own the workqueue (invariant); `destroy_workqueue` drains it first.
        unsafe { bindings::destroy_workqueue(self.wq.as_ptr()) };
    }
}

/// Cancels the delayed work item `item` (`cancel_delayed_work_sync`): a queued run will not
/// happen, a run in progress has finished when this returns. The reference that
/// [`Queue::enqueue_delayed`] gave the queue for a run that is cancelled is dropped here.
///
/// The item may be queued again meanwhile only if its own run re-queues it; callers make it stop
/// doing so first.
pub(crate) fn cancel_delayed_work_sync<T>(item: &Arc<T>)
where
    T: WorkItem<Pointer = Arc<T>> + HasDelayedWork<T>,
{
    let ptr = Arc::as_ptr(item).cast_mut();
    // SAFETY: `ptr` points to a live `T` (we hold a reference).
    let work = unsafe { <T as kernel::workqueue::HasWork<T>>::raw_get_work(ptr) };
    // SAFETY: `work` points to the `Work` field of that live `T`.
    let ws = unsafe { kernel::workqueue::Work::raw_get(work) };
    // SAFETY: by `HasDelayedWork`, the `work_struct` is the `work` field of a `delayed_work`.
    let dw = unsafe { kernel::container_of!(ws, bindings::delayed_work, work) };
    // SAFETY: `dw` was initialised by `DelayedWork::new` (the only way to make one) and lives as
    // long as `item`, which outlives the call.
    if unsafe { bindings::cancel_delayed_work_sync(dw) } {
        // SAFETY: the item was queued and will not run now: the reference `enqueue_delayed` took
        // with `Arc::into_raw` of this same pointer is no longer owned by the queue; it is ours
        // to drop.
        drop(unsafe { Arc::from_raw(ptr) });
    }
}
