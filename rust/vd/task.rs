// SPDX-License-Identifier: GPL-2.0
//! Other threads: finding one by its TID, the ptrace permission check, and running code *as*
//! that thread ([`run_as`], a task work), which is how a hook that only its own thread may
//! install (a preempt notifier) is put on a thread the caller merely names.

use core::ptr::NonNull;
use kernel::bindings;
use kernel::fs::File;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::task::Task;

/// The thread `tid` of the caller's PID namespace, referenced. `ESRCH` when there is none or it
/// is exiting; `EINVAL` for a kernel thread (it never returns to user mode, so a task work would
/// never run there, and it is no vCPU).
pub(crate) fn user_thread(tid: u32) -> Result<ARef<Task>> {
    let nr = i32::try_from(tid).map_err(|_| ESRCH)?;
    if nr <= 0 {
        return Err(ESRCH);
    }
    // SAFETY: `find_vpid` needs the RCU read lock, held across it; `get_pid_task` takes its own
    // reference on the task (or returns NULL) while the `struct pid` is still protected by it.
    let t = unsafe {
        bindings::rcu_read_lock();
        let pid = bindings::find_vpid(nr);
        let t = if pid.is_null() {
            core::ptr::null_mut()
        } else {
            bindings::get_pid_task(pid, bindings::pid_type_PIDTYPE_PID)
        };
        bindings::rcu_read_unlock();
        t
    };
    let t = NonNull::new(t).ok_or(ESRCH)?;
    // SAFETY: `get_pid_task` returned a reference we now own; `Task` is a transparent wrapper of
    // `task_struct`.
    let task: ARef<Task> = unsafe { ARef::from_raw(t.cast()) };
    // SAFETY: `flags` of a referenced task is readable; it changes with atomic-width stores.
    let flags = unsafe { core::ptr::read_volatile(&raw const (*task.as_ptr()).flags) };
    if flags & bindings::PF_KTHREAD != 0 {
        return Err(EINVAL);
    }
    if flags & bindings::PF_EXITING != 0 {
        return Err(ESRCH);
    }
    Ok(task)
}

/// Whether the caller may follow `task`'s scheduling: it has CAP_SYS_PTRACE, or its real uid
/// and gid are the thread's real, effective and saved ids (the credentials part of
/// `PTRACE_MODE_ATTACH_REALCREDS`; `ptrace_may_access` itself is not exported to modules, so
/// the dumpable flag and the LSMs' ptrace hooks are not consulted: a non-dumpable process of the
/// caller's own uid can be followed, which reveals when its thread runs and nothing else).
pub(crate) fn may_ptrace(task: &Task) -> bool {
    // SAFETY: `capable` checks the current task's credentials; no preconditions.
    if unsafe { bindings::capable(bindings::CAP_SYS_PTRACE as i32) } {
        return true;
    }
    // SAFETY: the caller's own `cred` cannot change under it. The target's `real_cred` is read
    // under the RCU read lock, which keeps that `cred` alive while its ids are compared (the
    // ids of a published `cred` never change).
    unsafe {
        let me = (*Task::current_raw()).cred;
        let (uid, gid) = ((*me).uid.val, (*me).gid.val);
        bindings::rcu_read_lock();
        let t = core::ptr::read_volatile(&raw const (*task.as_ptr()).real_cred);
        let ok = !t.is_null()
            && [(*t).uid.val, (*t).euid.val, (*t).suid.val] == [uid; 3]
            && [(*t).gid.val, (*t).egid.val, (*t).sgid.val] == [gid; 3];
        bindings::rcu_read_unlock();
        ok
    }
}

/// Work that runs as another thread.
pub(crate) trait AsThread: Send + Sized + 'static {
    /// Runs on the target thread, in process context, at its next return to user mode (or in
    /// its exit, with `PF_EXITING` set, if it dies first).
    fn run(self);
    /// A reference to an open file of the module that made this work. It keeps the module
    /// loaded until the work has returned: it is dropped after [`AsThread::run`], and a final
    /// `fput` from a thread's task work is itself deferred to a later task work of that thread,
    /// so the file's release (and the module reference the file holds) comes after this
    /// module's code has returned.
    fn module_file(&self) -> &ARef<File>;
}

/// A task work's allocation.
///
/// # Invariants
///
/// `head` is the first field; once queued, only the task work callback touches the allocation.
#[repr(C)]
struct Node<W: AsThread> {
    head: bindings::callback_head,
    work: W,
    file: ARef<File>,
}

/// Asks `task` to run `work` as itself (`TWA_SIGNAL`: a thread in `KVM_RUN` leaves it once, a
/// sleeping one is woken as by a signal that userspace never sees; a stopped thread runs it
/// when continued). The work comes back when `task` is exiting (`ESRCH`) or memory is short.
pub(crate) fn run_as<W: AsThread>(task: &Task, work: W) -> core::result::Result<(), (Error, W)> {
    let slot = match KBox::<Node<W>>::new_uninit(GFP_KERNEL) {
        Ok(s) => s,
        Err(_) => return Err((ENOMEM, work)),
    };
    let file = work.module_file().clone();
    let node = slot.write(Node {
        head: bindings::callback_head {
            next: core::ptr::null_mut(),
            func: Some(callback::<W>),
        },
        work,
        file,
    });
    let raw = KBox::into_raw(node);
    // SAFETY: `raw` is a live allocation whose first field is an initialised `callback_head`
    // (`init_task_work`); `task` is referenced. On success the task work owns it (invariant).
    let r = unsafe {
        bindings::task_work_add(
            task.as_ptr(),
            raw.cast(),
            bindings::task_work_notify_mode_TWA_SIGNAL,
        )
    };
    if r != 0 {
        // SAFETY: not queued: the allocation is ours again.
        let node = unsafe { KBox::from_raw(raw) };
        let Node { work, .. } = KBox::into_inner(node);
        return Err((ESRCH, work));
    }
    Ok(())
}

unsafe extern "C" fn callback<W: AsThread>(head: *mut bindings::callback_head) {
    // SAFETY: `head` is the first field of a `Node<W>` leaked by `run_as` and queued once: the
    // task work runs it once and hands it back to us.
    let node = unsafe { KBox::from_raw(head.cast::<Node<W>>()) };
    let Node { work, file, .. } = KBox::into_inner(node);
    work.run();
    // Last: see `AsThread::module_file`.
    drop(file);
}
