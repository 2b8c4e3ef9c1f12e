// SPDX-License-Identifier: GPL-2.0
//! [`ThreadHook`]: follows one thread's scheduling with a preempt notifier (the mechanism KVM
//! uses for its vCPU threads), and tells a [`SchedWatch`] whether the thread can take an
//! interrupt now.
//!
//! A preempt notifier lives on its thread's own list and can only be removed *by that thread*
//! (`preempt_notifier_unregister` works on `current`). So a hook is removed by the thread itself
//! ([`ThreadHook::unregister_current`]); a hook whose owner goes away first (its VMM closed the
//! device while the thread lives on, or the thread is exiting) is *retired*: it stops calling
//! its watcher and is freed once the thread is dead and off every CPU, which is after its last
//! context switch, so the notifier is never walked after it is freed.
//!
//! Hooks are made and retired through a [`Graveyard`]: it reserves a retirement slot for every
//! live hook when the hook is made, so retiring never allocates and never fails, and its delayed
//! work frees retired hooks once their threads are gone. Every live hook holds a reference on
//! the module that made it (its notifier calls into that module's text): while one lives,
//! `rmmod` answers `EBUSY`.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::{Arc, Mutex};
use kernel::task::Task;
use kernel::types::Opaque;
use kernel::ThisModule;

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
    /// The thread died while registered (after `changed(_, Exited)`): what could not be done
    /// under the runqueue lock may be done now.
    ///
    /// Context: hard interrupt (an `irq_work` raised by the final schedule-out): spinlocks may
    /// be taken and eventfds signalled, no sleeping.
    fn exited(&self);
}

/// The hook's allocation.
///
/// # Invariants
///
/// While `registered`, `notifier` is on `task`'s preempt-notifier list with `ops` as its ops,
/// and `preempt_notifier_inc` was called once for it. `__module_get(module)` was called once
/// for this allocation; [`free`] is the only place that drops it, after the allocation is gone.
#[pin_data]
struct Inner<T: SchedWatch> {
    #[pin]
    notifier: Opaque<bindings::preempt_notifier>,
    #[pin]
    ops: Opaque<bindings::preempt_ops>,
    /// Raised by the thread's final schedule-out to call [`SchedWatch::exited`].
    #[pin]
    exit_work: Opaque<bindings::irq_work>,
    task: ARef<Task>,
    registered: AtomicBool,
    /// Set when retired: the callbacks stop calling `watch`.
    dead: AtomicBool,
    state: AtomicU8,
    watch: Arc<T>,
    module: *mut bindings::module,
}

/// Frees a hook's allocation that no notifier list holds any more, then drops its module
/// reference.
fn free<T: SchedWatch>(inner: Pin<KBox<Inner<T>>>) {
    // SAFETY: `exit_work` was initialised at registration; waiting for a queued or running
    // `irq_work` is allowed in process context, where every caller of `free` runs.
    unsafe { bindings::irq_work_sync(inner.exit_work.get()) };
    let module = inner.module;
    drop(inner);
    // SAFETY: balances the `__module_get` of `register_current` (type invariant). The caller
    // runs in module code but holds another reference or is waited for by the module's exit (a
    // file's ioctl or release: the open file pins the module; the graveyard's work: the exit
    // cancels it synchronously), so the module text outlives the return.
    unsafe { bindings::module_put(module) };
}

/// A preempt notifier on one thread. Made by [`Graveyard::register_current`]; removed by
/// [`Graveyard::unregister_current`] or [`Graveyard::bury`].
pub(crate) struct ThreadHook<T: SchedWatch>(Option<Pin<KBox<Inner<T>>>>);

// SAFETY: the C notifier is only walked by its thread's scheduler and changed by that thread
// (register/unregister on `current`); everything else in `Inner` is atomics, a task reference,
// a module pointer only passed to `module_put`, and an `Arc` of a `Send + Sync` watcher.
unsafe impl<T: SchedWatch> Send for ThreadHook<T> {}
// SAFETY: as above; `&self` methods only read atomics.
unsafe impl<T: SchedWatch> Sync for ThreadHook<T> {}

/// `smp_load_acquire` of a `u8` field.
///
/// # Safety
///
/// `p` is valid and aligned for the duration of the call, and every concurrent write to it is
/// an atomic one (`WRITE_ONCE`, `smp_store_release`).
unsafe fn load_acquire_u8(p: *const u8) -> u8 {
    // SAFETY: per the contract.
    unsafe { core::sync::atomic::AtomicU8::from_ptr(p.cast_mut()) }.load(Ordering::Acquire)
}

impl<T: SchedWatch> ThreadHook<T> {
    /// Starts following the calling thread. The watcher sees it `Running` from now on.
    fn register_current(watch: Arc<T>, module: &'static ThisModule) -> Result<Self> {
        let task: ARef<Task> = ARef::from(&**kernel::current!());
        let inner = KBox::pin_init(
            try_pin_init!(Inner {
                notifier: Opaque::zeroed(),
                ops: Opaque::zeroed(),
                exit_work: Opaque::zeroed(),
                task,
                registered: AtomicBool::new(false),
                dead: AtomicBool::new(false),
                state: AtomicU8::new(ThreadState::Running as u8),
                watch,
                module: module.as_ptr(),
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: `ops`, `notifier` and `exit_work` are pinned in `inner`, which outlives the
        // registration (it is freed only after `unregister_current` or a reap says the list no
        // longer holds it, and after `irq_work_sync`). A zeroed `irq_work` with its `func` set
        // is what `init_irq_work` makes. We register on `current`, the task we recorded. The
        // module is live (its code is running us) and gets one more reference for this hook.
        unsafe {
            (*inner.exit_work.get()).func = Some(Self::exit_cb);
            let ops = inner.ops.get();
            (*ops).sched_in = Some(Self::sched_in_cb);
            (*ops).sched_out = Some(Self::sched_out_cb);
            bindings::__module_get(inner.module);
            bindings::preempt_notifier_init(inner.notifier.get(), ops);
            bindings::preempt_notifier_inc();
            bindings::preempt_notifier_register(inner.notifier.get());
        }
        // INVARIANT: registered on `task` just now, one module reference taken.
        inner.registered.store(true, Ordering::Release);
        Ok(Self(Some(inner)))
    }

    /// Whether the hook is on the calling thread.
    pub(crate) fn is_current(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|i| core::ptr::eq(i.task.as_ptr(), Task::current_raw()))
    }

    /// Whether the hook is on `task`.
    pub(crate) fn is_task(&self, task: &Task) -> bool {
        self.0
            .as_ref()
            .is_some_and(|i| core::ptr::eq(i.task.as_ptr(), task.as_ptr()))
    }

    /// The thread's state as last seen.
    pub(crate) fn state(&self) -> ThreadState {
        self.0.as_ref().map_or(ThreadState::Descheduled, |i| {
            ThreadState::from_u8(i.state.load(Ordering::Acquire))
        })
    }

    /// Removes the hook; only on its own thread (otherwise the hook comes back as `Err`).
    fn unregister_current(mut self) -> core::result::Result<(), Self> {
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
            free(inner);
        }
        Ok(())
    }

    /// Stops calling the watcher (the hook stays on its thread until it is reaped).
    fn retire(&self) {
        if let Some(i) = &self.0 {
            i.dead.store(true, Ordering::Release);
        }
    }

    /// Whether the thread can no longer walk the notifier: it is dead and off every CPU (its
    /// final context switch is done).
    fn thread_gone(&self) -> bool {
        let Some(inner) = &self.0 else { return true };
        let t = inner.task.as_ptr();
        // SAFETY: we hold a reference on the task, so its `task_struct` is valid. `__state`
        // becomes TASK_DEAD before the final switch and never changes back; `on_cpu` is
        // cleared with `smp_store_release` by `finish_task` after that switch, and this acquire
        // load pairs with it: once it reads 0, the switch (and its notifier walk) is complete.
        unsafe {
            let state = core::ptr::read_volatile(&raw const (*t).__state);
            state == bindings::TASK_DEAD && load_acquire_u8(&raw const (*t).on_cpu) == 0
        }
    }

    /// Frees a retired hook whose thread is gone ([`Self::thread_gone`]).
    fn reap(mut self) {
        if let Some(inner) = self.0.take() {
            inner.dead.store(true, Ordering::Release);
            // The list died with the task; the static key count is ours to drop.
            // SAFETY: balances the `preempt_notifier_inc` of `register_current`.
            unsafe { bindings::preempt_notifier_dec() };
            inner.registered.store(false, Ordering::Release);
            free(inner);
        }
    }

    /// # Safety
    ///
    /// `n` is the `notifier` of a live, registered `Inner<T>`.
    unsafe fn inner<'a>(n: *mut bindings::preempt_notifier) -> &'a Inner<T> {
        let n = n.cast::<Opaque<bindings::preempt_notifier>>();
        // SAFETY: per the contract; `Opaque` is `repr(transparent)`.
        unsafe { &*kernel::container_of!(n, Inner<T>, notifier) }
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

    unsafe extern "C" fn sched_out_cb(
        n: *mut bindings::preempt_notifier,
        _next: *mut bindings::task_struct,
    ) {
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
        } else if state == bindings::TASK_RUNNING
            || state & (bindings::__TASK_STOPPED | bindings::__TASK_TRACED) != 0
        {
            ThreadState::Descheduled
        } else {
            ThreadState::Blocked
        };
        Self::set(inner, to);
        if to == ThreadState::Exited && !inner.dead.load(Ordering::Acquire) {
            // The runqueue lock is held: no wake-ups here. An `irq_work` is what the scheduler
            // itself uses from this context.
            // SAFETY: `exit_work` is initialised and pinned; `free` syncs it before the
            // allocation goes, and no reap frees the hook before this switch completes.
            unsafe { bindings::irq_work_queue(inner.exit_work.get()) };
        }
    }

    unsafe extern "C" fn exit_cb(w: *mut bindings::irq_work) {
        let w = w.cast::<Opaque<bindings::irq_work>>();
        // SAFETY: `w` is the `exit_work` of a live `Inner<T>`: `free` waits for it to finish
        // (`irq_work_sync`) before freeing the allocation.
        let inner = unsafe { &*kernel::container_of!(w, Inner<T>, exit_work) };
        if !inner.dead.load(Ordering::Acquire) {
            inner.watch.exited();
        }
    }
}

impl<T: SchedWatch> Drop for ThreadHook<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            if inner.registered.load(Ordering::Acquire) {
                // Not reachable through the `Graveyard` API (every hook is unregistered, reaped
                // or buried, and burying cannot fail). Should one get here, it is still on a
                // thread's list: freeing it would leave a dangling notifier. It is leaked with
                // its module reference, so the module cannot be unloaded under it either.
                inner.dead.store(true, Ordering::Release);
                crate::vd_warn_ratelimited!("preempt hook dropped while registered; leaking it\n");
                core::mem::forget(inner);
            }
        }
    }
}

/// The fields protected by [`Graveyard::inner`].
///
/// # Invariants
///
/// `hooks.capacity() >= live`: every live hook has a slot in `hooks`, so burying never
/// allocates.
struct GraveInner<T: SchedWatch> {
    /// Retired hooks whose threads may still run.
    hooks: KVec<ThreadHook<T>>,
    /// Hooks alive anywhere (made by [`Graveyard::register_current`] and not freed yet), the
    /// buried ones included.
    live: usize,
}

/// Makes thread hooks, keeps the retired ones and frees them once their threads are gone.
///
/// # Invariants
///
/// `work` is an initialised `delayed_work` whose function is [`Self::work_cb`]; it is cancelled
/// synchronously before `self` goes away.
#[pin_data(PinnedDrop)]
pub(crate) struct Graveyard<T: SchedWatch> {
    #[pin]
    inner: Mutex<GraveInner<T>>,
    #[pin]
    work: Opaque<bindings::delayed_work>,
    /// Set by [`Self::shutdown`]: the work does not arm itself again.
    stopping: AtomicBool,
    module: &'static ThisModule,
}

// SAFETY: the `delayed_work` is used through the workqueue API only, which may be called from any
// thread; the rest is a mutex, an atomic and a module reference.
unsafe impl<T: SchedWatch> Send for Graveyard<T> {}
// SAFETY: as above.
unsafe impl<T: SchedWatch> Sync for Graveyard<T> {}

/// How long the reaper waits between looks at the retired hooks' threads.
const REAP_PERIOD_MS: u32 = 50;

impl<T: SchedWatch> Graveyard<T> {
    /// An empty graveyard whose hooks pin `module`.
    pub(crate) fn new(module: &'static ThisModule) -> impl PinInit<Self> {
        pin_init!(Self {
            // INVARIANT: empty, nothing live.
            inner <- kernel::new_mutex!(GraveInner { hooks: KVec::new(), live: 0 }),
            work <- Opaque::ffi_init(|slot: *mut bindings::delayed_work| {
                // SAFETY: `slot` is valid for writes; this is `INIT_DELAYED_WORK`, as the
                // kernel crate's `DelayedWork::new` does it, with our own work function.
                unsafe {
                    bindings::init_work_with_key(
                        &raw mut (*slot).work,
                        Some(Self::work_cb),
                        false,
                        c"vd_graveyard".as_ptr().cast(),
                        kernel::static_lock_class!().as_ptr(),
                    );
                    bindings::timer_init_key(
                        &raw mut (*slot).timer,
                        Some(bindings::delayed_work_timer_fn),
                        bindings::TIMER_IRQSAFE,
                        c"vd_graveyard_timer".as_ptr().cast(),
                        kernel::static_lock_class!().as_ptr(),
                    );
                }
            }),
            stopping: AtomicBool::new(false),
            module,
        })
    }

    /// Starts following the calling thread with a new hook (see [`ThreadHook`]); reserves its
    /// retirement slot first.
    pub(crate) fn register_current(&self, watch: Arc<T>) -> Result<ThreadHook<T>> {
        let mut g = self.inner.lock();
        let want = g.live.checked_add(1).ok_or(ENOMEM)?;
        let len = g.hooks.len();
        if g.hooks.capacity() < want {
            g.hooks.reserve(want - len, GFP_KERNEL)?;
        }
        let hook = ThreadHook::register_current(watch, self.module)?;
        // INVARIANT: capacity >= live + 1, checked or reserved above.
        g.live = want;
        Ok(hook)
    }

    /// Removes a hook from its own thread; the hook comes back as `Err` on another thread.
    pub(crate) fn unregister_current(
        &self,
        h: ThreadHook<T>,
    ) -> core::result::Result<(), ThreadHook<T>> {
        h.unregister_current()?;
        let mut g = self.inner.lock();
        // INVARIANT: one hook fewer; the capacity stays.
        g.live = g.live.saturating_sub(1);
        Ok(())
    }

    /// Retires a hook whose owner goes away while its thread may live on: it stops calling its
    /// watcher and is freed once the thread is gone. Never allocates.
    pub(crate) fn bury(&self, h: ThreadHook<T>) {
        h.retire();
        {
            let mut g = self.inner.lock();
            // Cannot fail: this hook is counted in `live` but not in `hooks`, and
            // `capacity >= live` (invariant). Were it to fail, dropping it leaks the hook with
            // its module reference (see `ThreadHook::drop`): never a dangling notifier.
            if let Err(e) = g.hooks.push_within_capacity(h) {
                drop(e);
            }
        }
        self.reap();
    }

    /// Frees the retired hooks whose threads are gone; arms the reaper while any is left.
    pub(crate) fn reap(&self) {
        let left = {
            let mut g = self.inner.lock();
            let mut i = 0;
            let mut freed = 0usize;
            while i < g.hooks.len() {
                if g.hooks[i].thread_gone() {
                    if let Ok(h) = g.hooks.remove(i) {
                        h.reap();
                        freed += 1;
                    }
                } else {
                    i += 1;
                }
            }
            // INVARIANT: `freed` hooks left both `hooks` and `live`.
            g.live = g.live.saturating_sub(freed);
            !g.hooks.is_empty()
        };
        if left && !self.stopping.load(Ordering::Acquire) {
            let delay = kernel::time::msecs_to_jiffies(REAP_PERIOD_MS);
            // SAFETY: `work` is initialised (invariant) and lives until `shutdown` cancelled it;
            // `system_wq` is set up before any module loads.
            unsafe {
                bindings::queue_delayed_work_on(
                    bindings::wq_misc_consts_WORK_CPU_UNBOUND as core::ffi::c_int,
                    bindings::system_wq,
                    self.work.get(),
                    delay,
                )
            };
        }
    }

    /// Stops the reaper and waits for a running one (module exit).
    pub(crate) fn shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        // SAFETY: `work` is initialised (invariant); we are in process context.
        unsafe { bindings::cancel_delayed_work_sync(self.work.get()) };
    }

    unsafe extern "C" fn work_cb(w: *mut bindings::work_struct) {
        // `work` is the first field of the `repr(C)` `delayed_work`.
        let w = w.cast::<Opaque<bindings::delayed_work>>();
        // SAFETY: `w` is the `work` of a live `Graveyard<T>`: it is cancelled synchronously
        // before the graveyard goes (invariant).
        let me = unsafe { &*kernel::container_of!(w, Self, work) };
        me.reap();
    }
}

#[pinned_drop]
impl<T: SchedWatch> PinnedDrop for Graveyard<T> {
    fn drop(self: Pin<&mut Self>) {
        self.shutdown();
    }
}
