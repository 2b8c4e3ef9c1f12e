// SPDX-License-Identifier: GPL-2.0
//! Eventfds as KVM uses them, from the kernel side:
//!
//! - [`EventFd`]: a reference to an eventfd context to *signal* (the "call" eventfd the VMM
//!   registered with `KVM_IRQFD`: signalling it injects the guest interrupt).
//! - [`KickWaiter`]: waits on an eventfd *in the kernel*, the way KVM's irqfd and vhost do (a wait
//!   queue entry on the eventfd, added through `vfs_poll`), and runs [`KickHandler::handle`] in
//!   a workqueue after each batch of kicks (the "kick" eventfd the VMM registered with
//!   `KVM_IOEVENTFD`). The hop to process context is required: eventfds may not be signalled from
//!   inside an eventfd wake-up, and backends may sleep. It also reports the eventfd's hang-up
//!   (`EPOLLHUP` from its release: the last file reference is gone, nobody can kick any more)
//!   through [`KickHandler::hung_up`], from the same work item; we hold only the context, so the
//!   hang-up is the kickers' (the VMM's) doing alone.
//!
//!   The wake-up runs synchronously in the context of whoever signals the eventfd (KVM's
//!   `ioeventfd_write` calls `eventfd_signal` from the vCPU thread inside `KVM_RUN`; a
//!   `write(2)` wakes the queue from the writer), so the waiter also records which process
//!   kicks ([`KickWaiter::kicker`]): the VMM that really drives the channel, whoever set it up.

use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};
use kernel::types::Opaque;

/// A counted reference to an eventfd context.
///
/// # Invariants
///
/// `ctx` is a valid eventfd context on which this value holds one reference.
pub(crate) struct EventFd {
    ctx: NonNull<bindings::eventfd_ctx>,
}

// SAFETY: eventfd contexts are reference counted and internally locked; any thread may signal or
// put them.
unsafe impl Send for EventFd {}
// SAFETY: as above; `signal` only takes `&self`.
unsafe impl Sync for EventFd {}

impl EventFd {
    /// Takes a reference to the eventfd behind file descriptor `fd` of the calling process.
    /// `EBADF` if `fd` is not open, `EINVAL` if it is not an eventfd.
    pub(crate) fn from_fd(fd: i32) -> Result<Self> {
        // SAFETY: `eventfd_ctx_fdget` accepts any integer and returns a referenced context or an
        // ERR_PTR.
        let p = unsafe { bindings::eventfd_ctx_fdget(fd) };
        let p = kernel::error::from_err_ptr(p)?;
        // INVARIANT: a non-error return carries one reference.
        NonNull::new(p).map(|ctx| Self { ctx }).ok_or(EINVAL)
    }
    /// Adds 1 to the counter and wakes its waiters (KVM's irqfd injects the interrupt).
    pub(crate) fn signal(&self) {
        // SAFETY: `ctx` is valid (type invariant). Callers are never inside an eventfd wake-up:
        // they run in process context (ioctls, workqueues).
        unsafe { bindings::eventfd_signal_mask(self.ctx.as_ptr(), 0) };
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: we own one reference (type invariant).
        unsafe { bindings::eventfd_ctx_put(self.ctx.as_ptr()) };
    }
}

/// A workqueue of our own (`alloc_workqueue`), destroyed when the last reference goes: a
/// domain's kick handlers run on it, so one VM's slow backend I/O never holds up another's
/// (vhost's worker per device).
///
/// # Invariants
///
/// `wq` was returned by `alloc_workqueue` and is destroyed only by `Drop`.
pub(crate) struct WorkQueue {
    wq: NonNull<bindings::workqueue_struct>,
}

// SAFETY: workqueues are internally synchronised; any thread may queue work or destroy one.
unsafe impl Send for WorkQueue {}
// SAFETY: as above; queueing only takes `&self`.
unsafe impl Sync for WorkQueue {}

#[allow(
    dead_code,
    reason = "vd_evtchn runs each domain's waiters on its own queue; \
                              vd_input_irq uses the system's (`KickWaiter::new`)"
)]
impl WorkQueue {
    /// An unbound, high-priority workqueue named `vd_evtchn/<id>`.
    pub(crate) fn new(id: u32) -> Result<Arc<Self>> {
        let flags = bindings::wq_flags_WQ_UNBOUND | bindings::wq_flags_WQ_HIGHPRI;
        // SAFETY: the format is a NUL-terminated string with one `%u`, matched by `id`.
        let wq = unsafe {
            bindings::alloc_workqueue_noprof(c"vd_evtchn/%u".as_ptr().cast(), flags, 0, id)
        };
        // INVARIANT: non-null means allocated.
        let wq = NonNull::new(wq).ok_or(ENOMEM)?;
        Ok(Arc::new(Self { wq }, GFP_KERNEL)?)
    }

    /// An unbound workqueue named `name`.
    pub(crate) fn named(name: &'static CStr) -> Result<Arc<Self>> {
        // SAFETY: "%s" with one NUL-terminated string argument that lives forever.
        let wq = unsafe {
            bindings::alloc_workqueue_noprof(
                c"%s".as_ptr().cast(),
                bindings::wq_flags_WQ_UNBOUND,
                0,
                kernel::str::CStrExt::as_char_ptr(name),
            )
        };
        // INVARIANT: non-null means allocated.
        let wq = NonNull::new(wq).ok_or(ENOMEM)?;
        Ok(Arc::new(Self { wq }, GFP_KERNEL)?)
    }

    /// The queue, for `kernel::workqueue` work items.
    pub(crate) fn queue(&self) -> &kernel::workqueue::Queue {
        // SAFETY: the workqueue lives until `self` is dropped (type invariant), which outlives
        // the borrow.
        unsafe { kernel::workqueue::Queue::from_raw(self.wq.as_ptr()) }
    }
}

impl Drop for WorkQueue {
    fn drop(&mut self) {
        // SAFETY: `wq` is ours (type invariant). The last reference goes with the last `KickWaiter`
        // using it, whose drop cancelled its work first, and never from a work item of this
        // queue (work functions hold no reference).
        unsafe { bindings::destroy_workqueue(self.wq.as_ptr()) };
    }
}

/// `EPOLLIN` (a `__force` cast in C, so bindgen does not export it).
const EPOLLIN: u32 = 0x0001;
/// `EPOLLHUP`: `eventfd_release` wakes the queue with it when the last file reference goes.
const EPOLLHUP: u32 = 0x0010;

/// Work done after kicks.
pub(crate) trait KickHandler: Sync + Send {
    /// Runs in process context (the `KickWaiter`'s workqueue) after `kicks` kicks arrived
    /// (kicks that arrive while it is queued are batched into one call). Never runs concurrently
    /// with itself for the same [`KickWaiter`]. Returns `true` to be called again soon (work left
    /// over after a bounded pass), without a kick. Also called (with whatever kicks are pending,
    /// maybe 0) in the work item that reports a hang-up, before [`Self::hung_up`].
    fn handle(&self, kicks: u64) -> bool;

    /// A kick arrived: called from the eventfd's wake-up, in atomic context under its queue
    /// lock and in the context of whoever signalled it (a vCPU thread in `KVM_RUN` for a KVM
    /// ioeventfd), before the work item is queued. Must not sleep; keep it to a few stores.
    fn kicked(&self) {}

    /// The attached eventfd hung up: its last file reference was closed (the VMM that kicked
    /// through it is gone; nobody can kick any more). Runs once per hang-up, in the same work
    /// item as [`Self::handle`] (process context, never concurrently with it). Must not detach
    /// or drop the [`KickWaiter`] itself (that waits for this very work item): hand the teardown
    /// to another work item.
    fn hung_up(&self) {}
}

/// `data` plus an in-kernel waiter on a kick eventfd that calls `data.handle()` from a work item.
///
/// # Invariants
///
/// - `work` was initialised by `init_work_with_key` with [`Self::run`] as its function.
/// - While `src` holds `Some(ctx)`, `wait` is on `ctx`'s wait queue with [`Self::wake`] as its
///   function, and `ctx` is referenced by us.
#[pin_data(PinnedDrop)]
pub(crate) struct KickWaiter<T: KickHandler> {
    #[pin]
    work: Opaque<bindings::work_struct>,
    #[pin]
    wait: Opaque<bindings::wait_queue_entry>,
    #[pin]
    pt: Opaque<bindings::poll_table_struct>,
    /// The attached kick eventfd. The lock serialises attach/detach (process context only).
    #[pin]
    src: Mutex<Option<EventFd>>,
    /// The attached context, for `wake` (which may not take `src`'s mutex).
    ctx: AtomicPtr<bindings::eventfd_ctx>,
    /// Kicks counted by the wake-up and not yet handed to `handle`.
    pending: AtomicU64,
    /// How often `vfs_poll` called [`Self::poll_queue`] during the current `attach`: only the
    /// first call queues `wait`; any other count than one fails the attach.
    queue_calls: AtomicU32,
    /// The queue head the first [`Self::poll_queue`] call added `wait` to (for undoing it).
    wqh: AtomicPtr<bindings::wait_queue_head>,
    /// The attached eventfd hung up (sticky until the next attach).
    hung: AtomicBool,
    /// A hang-up not yet handed to [`KickHandler::hung_up`].
    hup_pending: AtomicBool,
    /// Thread-group id (initial PID namespace) of the process that signalled the last kick; 0
    /// before the first. Written by [`Self::wake`] only when it changes (one load per kick on
    /// the hot path), read lock-free by listings; informational, never acted on.
    kicker: AtomicU32,
    /// The attachment is final ([`Self::seal`]): `attach` and `unbind` refuse with `EINVAL`.
    /// Written under `src`'s lock.
    sealed: AtomicBool,
    /// Where `work` runs: this queue, or the system's high-priority queue if `None`.
    wq: Option<Arc<WorkQueue>>,
    /// The handler's data.
    #[pin]
    pub(crate) data: T,
}

impl<T: KickHandler + 'static> KickWaiter<T> {
    /// A detached waiter around `data`, run on the system's high-priority workqueue.
    #[allow(
        dead_code,
        reason = "vd_input_irq's; vd_evtchn passes its own queue (`new_on`)"
    )]
    pub(crate) fn new(data: impl PinInit<T, Error>) -> impl PinInit<Self, Error> {
        Self::new_on(data, None)
    }

    /// A detached waiter around `data`, run on `wq` (the system's high-priority queue if
    /// `None`).
    pub(crate) fn new_on(
        data: impl PinInit<T, Error>,
        wq: Option<Arc<WorkQueue>>,
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            // SAFETY: `work` is initialised in place before use and never moves (pinned).
            work <- Opaque::ffi_init(|slot: *mut bindings::work_struct| unsafe {
                bindings::init_work_with_key(
                    slot,
                    Some(Self::run),
                    false,
                    kernel::str::CStrExt::as_char_ptr(c"vd_kick"),
                    kernel::static_lock_class!().as_ptr(),
                )
            }),
            wait: Opaque::uninit(),
            pt: Opaque::uninit(),
            src <- kernel::new_mutex!(None),
            ctx: AtomicPtr::new(core::ptr::null_mut()),
            pending: AtomicU64::new(0),
            queue_calls: AtomicU32::new(0),
            wqh: AtomicPtr::new(core::ptr::null_mut()),
            hung: AtomicBool::new(false),
            hup_pending: AtomicBool::new(false),
            kicker: AtomicU32::new(0),
            sealed: AtomicBool::new(false),
            wq,
            data <- data,
        })
    }

    /// Starts waiting on the eventfd `fd` (replacing any previous one). Kicks already pending on
    /// it are handled right away. `EBADF` if `fd` is not open, `EINVAL` if it is not an eventfd
    /// (or its poll does not put our wait entry on exactly one queue).
    ///
    /// The file is looked up once: the eventfd context and the queue `vfs_poll` adds us to both
    /// come from that one file, as in KVM's irqfd. (Looking the number up twice let another
    /// thread `dup2` a pipe onto `fd` in between, and our entry went on the pipe's queues.)
    ///
    /// `self` is pinned: a `KickWaiter` only exists through its pin initialiser and is `!Unpin`.
    pub(crate) fn attach(&self, fd: i32) -> Result {
        let fd = u32::try_from(fd).map_err(|_| EBADF)?;
        // SAFETY: `fget` accepts any fd number and returns a referenced file or null.
        let file = NonNull::new(unsafe { bindings::fget(fd) }).ok_or(EBADF)?;
        let r = self.attach_file(file);
        // SAFETY: drops the reference `fget` took; `attach_file` kept what it needs (a context
        // reference, which keeps the wait queue head alive).
        unsafe { bindings::fput(file.as_ptr()) };
        r
    }

    /// [`Self::attach`] on a file the caller holds a reference to.
    fn attach_file(&self, file: NonNull<bindings::file>) -> Result {
        // SAFETY: `file` is valid (the caller holds a reference). `eventfd_ctx_fileget` returns
        // a referenced context of this very file, or ERR_PTR(-EINVAL) if it is not an eventfd.
        let p = unsafe { bindings::eventfd_ctx_fileget(file.as_ptr()) };
        let p = kernel::error::from_err_ptr(p)?;
        // INVARIANT: a non-error return carries one reference.
        let efd = NonNull::new(p).map(|ctx| EventFd { ctx }).ok_or(EINVAL)?;
        let mut src = self.src.lock();
        if self.sealed.load(Ordering::Relaxed) {
            return Err(EINVAL);
        }
        self.detach_locked(&mut src);
        // Not on any queue and no work running (`detach_locked`): a new eventfd, no hang-up.
        self.hung.store(false, Ordering::Relaxed);
        self.hup_pending.store(false, Ordering::Relaxed);
        self.ctx.store(efd.ctx.as_ptr(), Ordering::Release);
        self.queue_calls.store(0, Ordering::Relaxed);
        self.wqh.store(core::ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: `wait` and `pt` are pinned fields that live as long as `self`; they are
        // initialised here before anyone else can see them (not attached: `src` is `None` and
        // we hold its lock, and `detach_locked` cancelled the work). `file` is valid and is the
        // eventfd whose context `efd` holds. `vfs_poll` calls `poll_queue` synchronously; that
        // adds `wait` to one wait queue at most (the first call only); `detach_locked` (also
        // from `PinnedDrop`) removes it before `self` goes away.
        let mask = unsafe {
            bindings::init_waitqueue_func_entry(self.wait.get(), Some(Self::wake));
            bindings::init_poll_funcptr(self.pt.get(), Some(Self::poll_queue));
            bindings::vfs_poll(file.as_ptr(), self.pt.get())
        };
        let calls = self.queue_calls.load(Ordering::Relaxed);
        if calls != 1 {
            // Not queued, or a poll that asked to queue us twice (a pipe does): never leave
            // the one entry on two queues. Undo what the first call added.
            let wqh = self.wqh.load(Ordering::Relaxed);
            if !wqh.is_null() {
                // SAFETY: `poll_queue` put `wait` on `wqh`, the queue head of `file`, which our
                // reference keeps alive; this takes it off under that queue's lock.
                unsafe { bindings::remove_wait_queue(wqh, self.wait.get()) };
            }
            self.ctx.store(core::ptr::null_mut(), Ordering::Release);
            // A wake-up that ran while we were queued may have queued the work.
            // SAFETY: `work` is initialised (invariant).
            unsafe { bindings::cancel_work_sync(self.work.get()) };
            self.pending.store(0, Ordering::Relaxed);
            return Err(EINVAL);
        }
        // INVARIANT: `wait` is on `efd`'s queue now (an eventfd's poll queues on its context's
        // queue head), and we keep the reference in `src`.
        *src = Some(efd);
        if mask & EPOLLIN != 0 {
            // Kicks arrived before we were waiting: serve them now; the next wake-up (or
            // detach) consumes the counter.
            self.kick_now();
        }
        Ok(())
    }

    /// Stops waiting; waits for a running handler to finish and cancels a queued one.
    pub(crate) fn detach(&self) {
        let mut src = self.src.lock();
        self.detach_locked(&mut src);
    }

    /// Stops waiting, as [`Self::detach`], unless the attachment is sealed (`EINVAL` then).
    #[allow(
        dead_code,
        reason = "vd_evtchn's `VDE_IOC_UNBIND`; vd_input_irq never rebinds"
    )]
    pub(crate) fn unbind(&self) -> Result {
        let mut src = self.src.lock();
        if self.sealed.load(Ordering::Relaxed) {
            return Err(EINVAL);
        }
        self.detach_locked(&mut src);
        Ok(())
    }

    /// Makes the current attachment final: later [`Self::attach`] and [`Self::unbind`] calls
    /// fail with `EINVAL`; only [`Self::detach`] (teardown) and drop end it. `EINVAL` if no
    /// eventfd is attached.
    #[allow(
        dead_code,
        reason = "vd_evtchn's `VDE_IOC_ORPHAN`; vd_input_irq never rebinds"
    )]
    pub(crate) fn seal(&self) -> Result {
        let src = self.src.lock();
        if src.is_none() {
            return Err(EINVAL);
        }
        self.sealed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the attached eventfd hung up (its last file reference was closed).
    #[allow(
        dead_code,
        reason = "vd_evtchn's orphaned channels; vd_input_irq ignores hang-ups"
    )]
    pub(crate) fn hung_up(&self) -> bool {
        self.hung.load(Ordering::Acquire)
    }

    /// Thread-group id (initial PID namespace) of the process that signalled the last kick
    /// through the eventfd, 0 if none did yet: the process whose thread wrote the eventfd, or
    /// whose vCPU thread took the guest's doorbell write for a `KVM_IOEVENTFD`. Kernel threads
    /// are not recorded. [`Self::kick_now`] is no kick.
    #[allow(
        dead_code,
        reason = "vd_evtchn's `VDE_IOC_LIST`; vd_input_irq does not list its kickers"
    )]
    pub(crate) fn kicker(&self) -> u32 {
        self.kicker.load(Ordering::Relaxed)
    }

    /// Runs the handler now, in the caller's context, as if kicked (used after attaching a
    /// backend, so requests queued before are served).
    pub(crate) fn kick_now(&self) {
        let wq = match &self.wq {
            Some(q) => q.wq.as_ptr(),
            // SAFETY: reading the address of the system workqueue, set up at boot.
            None => unsafe { bindings::system_highpri_wq },
        };
        // SAFETY: `work` is initialised (invariant); queueing an already queued work is a no-op;
        // `wq` is live (ours is referenced by `self.wq`).
        unsafe {
            bindings::queue_work_on(
                bindings::wq_misc_consts_WORK_CPU_UNBOUND as i32,
                wq,
                self.work.get(),
            )
        };
    }

    fn detach_locked(&self, src: &mut Option<EventFd>) {
        if let Some(efd) = src.take() {
            let mut cnt = 0u64;
            // SAFETY: `wait` is on `efd.ctx`'s queue (invariant); this takes it off under the
            // queue's lock, so no `wake` runs or will run on it afterwards.
            unsafe {
                bindings::eventfd_ctx_remove_wait_queue(efd.ctx.as_ptr(), self.wait.get(), &mut cnt)
            };
            self.ctx.store(core::ptr::null_mut(), Ordering::Release);
            drop(efd);
        }
        // SAFETY: `work` is initialised (invariant). Waits for a running `run` to return and
        // removes a queued one, also one that `run` re-queued itself; with `wait` off the queue
        // nothing else queues it again except `kick_now`, which callers do not race with detach.
        unsafe { bindings::cancel_work_sync(self.work.get()) };
    }

    /// `poll_queue_proc`: called by `vfs_poll` with the file's wait queue head(s). Queues `wait`
    /// on the first head only: one entry can be on one queue; `attach` fails a second call.
    unsafe extern "C" fn poll_queue(
        _file: *mut bindings::file,
        wqh: *mut bindings::wait_queue_head,
        pt: *mut bindings::poll_table_struct,
    ) {
        // SAFETY: `pt` is the `pt` field of a live `KickWaiter<T>` (only `attach` passes it).
        let me = unsafe { &*(pt.byte_sub(core::mem::offset_of!(Self, pt)) as *const Self) };
        if me.queue_calls.fetch_add(1, Ordering::Relaxed) != 0 {
            return;
        }
        me.wqh.store(wqh, Ordering::Relaxed);
        // SAFETY: `wqh` is the polled file's live wait queue head; `wait` was initialised by
        // `attach` and is on no queue (first call).
        unsafe { bindings::add_wait_queue(wqh, me.wait.get()) };
    }

    /// Wake-up function of `wait`: runs in atomic context under the eventfd's queue lock.
    unsafe extern "C" fn wake(
        wait: *mut bindings::wait_queue_entry,
        _mode: u32,
        _sync: i32,
        key: *mut c_void,
    ) -> i32 {
        // SAFETY: `wait` is the `wait` field of a live `KickWaiter<T>`: it is only on a queue
        // between `attach` and `detach_locked`, and `PinnedDrop` detaches.
        let me = unsafe { &*(wait.byte_sub(core::mem::offset_of!(Self, wait)) as *const Self) };
        let flags = key as usize as u32;
        if flags & EPOLLIN != 0 {
            let mut cnt = 0u64;
            // `ctx` is set before `wait` is queued and cleared only after it is dequeued, so it
            // is the eventfd whose queue lock we run under.
            let ctx = me.ctx.load(Ordering::Acquire);
            if !ctx.is_null() {
                // SAFETY: `ctx` is live and referenced while `wait` is queued; we hold its
                // queue lock, as `eventfd_ctx_do_read` requires. Reading resets the counter.
                unsafe { bindings::eventfd_ctx_do_read(ctx, &mut cnt) };
            }
            me.pending.fetch_add(cnt.max(1), Ordering::Relaxed);
            me.note_kicker();
            me.data.kicked();
            me.kick_now();
        }
        if flags & EPOLLHUP != 0 {
            // The eventfd's last file reference is being released: no kick can come any more.
            // Only flags and a work item here (atomic context, under the queue's lock); the
            // handler hears about it in process context.
            me.hung.store(true, Ordering::Release);
            me.hup_pending.store(true, Ordering::Release);
            me.kick_now();
        }
        0
    }

    /// Records the signalling process as [`Self::kicker`]: called from [`Self::wake`], which
    /// runs in the signaller's context (`eventfd_signal` and `eventfd_write` call the wake-up
    /// functions synchronously, under the queue's spinlock: atomic context, nothing here sleeps).
    fn note_kicker(&self) {
        let cur = kernel::current!();
        // SAFETY: `current` is a live task while it runs this code. `flags` is an aligned word
        // written whole (mostly by the task itself); a volatile read yields one such value, and
        // the bit tested, `PF_KTHREAD`, only ever changes in the task itself (a kernel thread
        // exec'ing init), so not while it runs this.
        let flags = unsafe { core::ptr::read_volatile(&raw const (*cur.as_ptr()).flags) };
        if flags & bindings::PF_KTHREAD != 0 {
            // A kernel thread (a kworker completing AIO, say) is no VMM: keep the last one.
            return;
        }
        // `tgid` is the thread group's id in the initial namespace, immutable once the task
        // runs. Pids are positive `i32`s; anything else is not recorded.
        let Ok(tgid) = u32::try_from(cur.tgid()) else {
            return;
        };
        // Stored only on a change: the common case (the same VMM kicking again) is one load.
        if self.kicker.load(Ordering::Relaxed) != tgid {
            self.kicker.store(tgid, Ordering::Relaxed);
        }
    }

    /// Work function: hands the batched kicks to the handler.
    unsafe extern "C" fn run(work: *mut bindings::work_struct) {
        // SAFETY: `work` is the `work` field of a live `KickWaiter<T>`: `PinnedDrop` cancels it
        // (waiting for this function) before the memory goes away.
        let me = unsafe { &*(work.byte_sub(core::mem::offset_of!(Self, work)) as *const Self) };
        let kicks = me.pending.swap(0, Ordering::Relaxed);
        let more = me.data.handle(kicks);
        if me.hup_pending.swap(false, Ordering::AcqRel) {
            me.data.hung_up();
        }
        if more {
            // Re-queueing from the work function itself is allowed; `cancel_work_sync` in
            // detach/drop handles a self-requeueing work.
            me.kick_now();
        }
    }
}

// SAFETY: the C fields are only touched through the kernel's own synchronisation (the eventfd's
// queue lock, the workqueue, `src`'s mutex); the rest are atomics and `T: Send + Sync`.
unsafe impl<T: KickHandler> Send for KickWaiter<T> {}
// SAFETY: as above.
unsafe impl<T: KickHandler> Sync for KickWaiter<T> {}

#[pinned_drop]
impl<T: KickHandler> PinnedDrop for KickWaiter<T> {
    fn drop(self: Pin<&mut Self>) {
        let mut src = self.src.lock();
        if let Some(efd) = src.take() {
            let mut cnt = 0u64;
            // SAFETY: as in `detach_locked`.
            unsafe {
                bindings::eventfd_ctx_remove_wait_queue(efd.ctx.as_ptr(), self.wait.get(), &mut cnt)
            };
        }
        drop(src);
        // SAFETY: `work` is initialised; wait for / cancel any run before the memory is freed.
        unsafe { bindings::cancel_work_sync(self.work.get()) };
    }
}
