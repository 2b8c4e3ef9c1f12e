// SPDX-License-Identifier: GPL-2.0
//! [`ThreadHook`]: follows one thread's scheduling with a preempt notifier (the mechanism KVM
//! uses for its vCPU threads), and tells a [`SchedWatch`] whether the thread can take an
//! interrupt now.
//!
//! A preempt notifier lives on its thread's own list and can only be removed *by that thread*
//! (`preempt_notifier_unregister` works on `current`). So a hook is removed by the thread itself
//! ([`ThreadHook::unregister_current`]); a hook whose owner goes away first (its VMM closed the
//! device while the thread lives on, or the thread is exiting) is *retired*: it stops calling
//! its watcher and is freed once the thread is dead and off every CPU ([`ThreadHook::reap`]),
//! which is after its last context switch, so the notifier is never walked after it is freed.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::Arc;
use kernel::task::Task;
use kernel::types::Opaque;

/// Where a watched thread is, as far as delivering an interrupt to it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ThreadState {
    /// On a CPU.
    Running = 0,
    /// Asleep by its own choice (a vCPU halted in the guest waits for an interrupt): an
    /// interrupt wakes it, so deliver.
    Blocked = 1,
    /// Runnable but not on a CPU (the host scheduler preempted it), or stopped (SIGSTOP,
    /// ptrace): it cannot take an interrupt now.
    Descheduled = 2,
    /// Gone: this was its last context switch (it exited without unregistering).
    Exited = 3,
}

impl ThreadState {
    const fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Running,
            1 => Self::Blocked,
            2 => Self::Descheduled,
            _ => Self::Exited,
        }
    }
    /// Whether an interrupt sent now is taken without waiting for the host scheduler.
    pub(crate) const fn deliverable(self) -> bool {
        matches!(self, Self::Running | Self::Blocked)
    }
}

/// Told about a watched thread's state changes.
pub(crate) trait SchedWatch: Send + Sync + 'static {
    /// The thread went from `from` to `to`.
    ///
    /// Context: the notifier's. For `to == Running` (schedule-in) preemption is off and no
    /// runqueue lock is held: spinlocks may be taken and eventfds signalled. For the other
    /// states (schedule-out) the runqueue lock is held with interrupts off: only atomics.
    fn changed(&self, from: ThreadState, to: ThreadState);
}

/// The hook's allocation.
///
/// # Invariants
///
/// While `registered`, `notifier` is on `task`'s preempt-notifier list with `ops` as its ops,
/// and `preempt_notifier_inc` was called once for it.
#[pin_data]
struct Inner<T: SchedWatch> {
    #[pin]
    notifier: Opaque<bindings::preempt_notifier>,
    #[pin]
    ops: Opaque<bindings::preempt_ops>,
    task: ARef<Task>,
    registered: AtomicBool,
    /// Set when retired: the callbacks stop calling `watch`.
    dead: AtomicBool,
    state: AtomicU8,
    watch: Arc<T>,
}

/// A preempt notifier on one thread.
pub(crate) struct ThreadHook<T: SchedWatch>(Option<Pin<KBox<Inner<T>>>>);

// SAFETY: the C notifier is only walked by its thread's scheduler and changed by that thread
// (register/unregister on `current`); everything else in `Inner` is atomics, a task reference
// and an `Arc` of a `Send + Sync` watcher.
unsafe impl<T: SchedWatch> Send for ThreadHook<T> {}
// SAFETY: as above; `&self` methods only read atomics.
unsafe impl<T: SchedWatch> Sync for ThreadHook<T> {}

impl<T: SchedWatch> ThreadHook<T> {
    /// Starts following the calling thread. The watcher sees it `Running` from now on.
    pub(crate) fn register_current(watch: Arc<T>) -> Result<Self> {
        let task: ARef<Task> = ARef::from(&**kernel::current!());
        let inner = KBox::pin_init(
            try_pin_init!(Inner {
                notifier: Opaque::zeroed(),
                ops: Opaque::zeroed(),
                task,
                registered: AtomicBool::new(false),
                dead: AtomicBool::new(false),
                state: AtomicU8::new(ThreadState::Running as u8),
                watch,
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: `ops` and `notifier` are pinned in `inner`, which outlives the registration
        // (it is freed only after `unregister_current` or `reap` says the list no longer holds
        // it). We register on `current`, the task we recorded.
        unsafe {
            let ops = inner.ops.get();
            (*ops).sched_in = Some(Self::sched_in_cb);
            (*ops).sched_out = Some(Self::sched_out_cb);
            bindings::preempt_notifier_init(inner.notifier.get(), ops);
            bindings::preempt_notifier_inc();
            bindings::preempt_notifier_register(inner.notifier.get());
        }
        // INVARIANT: registered on `task` just now.
        inner.registered.store(true, Ordering::Release);
        Ok(Self(Some(inner)))
    }

    /// Whether the hook is on the calling thread.
    pub(crate) fn is_current(&self) -> bool {
        self.0.as_ref().is_some_and(|i| core::ptr::eq(i.task.as_ptr(), Task::current_raw()))
    }

    /// The thread's state as last seen.
    pub(crate) fn state(&self) -> ThreadState {
        self.0.as_ref().map_or(ThreadState::Descheduled, |i| ThreadState::from_u8(i.state.load(Ordering::Relaxed)))
    }

    /// Removes the hook; only on its own thread (otherwise the hook comes back as `Err`).
    pub(crate) fn unregister_current(mut self) -> core::result::Result<(), Self> {
        if !self.is_current() {
            return Err(self);
        }
        if let Some(inner) = self.0.take() {
            // SAFETY: registered on `current` (invariant and the check above).
            unsafe {
                bindings::preempt_notifier_unregister(inner.notifier.get());
                bindings::preempt_notifier_dec();
            }
            inner.registered.store(false, Ordering::Release);
            drop(inner);
        }
        Ok(())
    }

    /// Stops calling the watcher (the hook stays on its thread until [`Self::reap`] frees it).
    pub(crate) fn retire(&self) {
        if let Some(i) = &self.0 {
            i.dead.store(true, Ordering::Release);
        }
    }

    /// Frees a retired hook if its thread can no longer walk the notifier: the thread is dead
    /// and off every CPU (its final context switch is done). Otherwise gives it back.
    pub(crate) fn reap(mut self) -> core::result::Result<(), Self> {
        let Some(inner) = &self.0 else { return Ok(()) };
        let t = inner.task.as_ptr();
        // SAFETY: we hold a reference on the task, so its `task_struct` is valid; the fields
        // are read racily on purpose: `__state` becomes TASK_DEAD before the final switch and
        // `on_cpu` drops to 0 only after it (`finish_task`), and neither changes back.
        let done = unsafe {
            let state = core::ptr::read_volatile(&raw const (*t).__state);
            let on_cpu = core::ptr::read_volatile(&raw const (*t).on_cpu);
            state == bindings::TASK_DEAD && on_cpu == 0
        };
        if !done {
            return Err(self);
        }
        if let Some(inner) = self.0.take() {
            inner.dead.store(true, Ordering::Release);
            // The list died with the task; the static key count is ours to drop.
            // SAFETY: balances the `preempt_notifier_inc` of `register_current`.
            unsafe { bindings::preempt_notifier_dec() };
            inner.registered.store(false, Ordering::Release);
            drop(inner);
        }
        Ok(())
    }

    /// # Safety
    ///
    /// `n` is the `notifier` of a live, registered `Inner<T>`.
    unsafe fn inner<'a>(n: *mut bindings::preempt_notifier) -> &'a Inner<T> {
        // SAFETY: per the contract; `Opaque` is `repr(transparent)`.
        unsafe { &*kernel::container_of!(n.cast::<Opaque<bindings::preempt_notifier>>(), Inner<T>, notifier) }
    }

    fn set(inner: &Inner<T>, to: ThreadState) {
        let from = ThreadState::from_u8(inner.state.swap(to as u8, Ordering::AcqRel));
        if from != to && !inner.dead.load(Ordering::Acquire) {
            inner.watch.changed(from, to);
        }
    }

    unsafe extern "C" fn sched_in_cb(n: *mut bindings::preempt_notifier, _cpu: core::ffi::c_int) {
        // SAFETY: the scheduler only walks notifiers on the task's list, which are live.
        let inner = unsafe { Self::inner(n) };
        Self::set(inner, ThreadState::Running);
    }

    unsafe extern "C" fn sched_out_cb(n: *mut bindings::preempt_notifier, _next: *mut bindings::task_struct) {
        // SAFETY: as above; the task going out is `current` (our task).
        let inner = unsafe { Self::inner(n) };
        let t = inner.task.as_ptr();
        // A preempted task is still TASK_RUNNING; a stopped or traced one has the stop bits; any
        // other state is a sleep it chose (e.g. KVM's halt wait), which an interrupt ends.
        // (`on_rq` would not do: EEVDF's delayed dequeue keeps sleepers on the runqueue.)
        // SAFETY: `t` is current and valid; its `__state` is stable while it switches out.
        let state = unsafe { core::ptr::read_volatile(&raw const (*t).__state) };
        let to = if state == bindings::TASK_DEAD {
            ThreadState::Exited
        } else if state == bindings::TASK_RUNNING || state & (bindings::__TASK_STOPPED | bindings::__TASK_TRACED) != 0 {
            ThreadState::Descheduled
        } else {
            ThreadState::Blocked
        };
        Self::set(inner, to);
    }
}

impl<T: SchedWatch> Drop for ThreadHook<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            if inner.registered.load(Ordering::Acquire) {
                // Still on a live thread's list and nobody retired it properly: freeing it would
                // leave a dangling notifier. Keep it forever (a leak, never a use-after-free).
                inner.dead.store(true, Ordering::Release);
                crate::vd_warn_ratelimited!("preempt hook dropped while registered; leaking it\n");
                core::mem::forget(inner);
            }
        }
    }
}
