// SPDX-License-Identifier: GPL-2.0
//! vd_input_irq: input interrupts that follow the VM's vCPU scheduling.
//!
//! `/dev/vd_input`: a VMM makes its open file a VM's sink (`VDI_IOC_VM_CREATE`), maps the event
//! ring (a vd ring whose responses carry one `VdiEvent` each), and registers its vCPU threads
//! (`VDI_IOC_VCPU_REGISTER`, from each vCPU thread). The administrator routes input devices
//! (`VDI_IOC_ROUTE`) and gives one VM the focus (`VDI_IOC_FOCUS`). Events of routed devices
//! go to the focused VM a whole frame at a time:
//!
//! - into its ring at once, with an interrupt through the call eventfd (`KVM_IRQFD`) when the
//!   guest asked, while a vCPU thread is on a CPU or halted waiting for an interrupt;
//! - into a bounded per-VM queue while every vCPU thread is preempted or stopped, or the VMM
//!   paused the VM; flushed in order the moment a vCPU thread is scheduled in again. When the
//!   queue is full motion frames are merged (relative axes summed, absolute ones newest); key
//!   events are never merged; only when nothing can be merged does the VM get a SYN_DROPPED.
//!
//! Scheduling is followed with preempt notifiers (`rust/vd/preempt.rs`); devices with the input
//! handler API (`rust/vd/input.rs`). Everything a VM owns dies with its file.

mod vd;
use vd::{ring, uapi};

mod queue;
mod route;
mod vm;

use kernel::{
    fs::{file::FileDescriptorReservation, File},
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    mm::virt::VmaNew,
    prelude::*,
    sync::{aref::ARef, Arc, Mutex},
    task::Task,
};
use route::{router, Router};
use uapi::*;
use vd::common::{read, reply_version, unsafe_impl_pod, write, OpenCount, OpenGuard};
use vd::cred::{opener_capable, CAP_SYS_ADMIN};
use vd::eventfd::EventFd;
use vd::eventfd::KickWaiter;
use vd::input::InputHandler;
use vd::preempt::ThreadHook;
use vd::task::AsThread;
use vm::{Doorbell, VmSink};

module! {
    type: VdInputModule,
    name: "vd_input_irq",
    authors: ["vd project"],
    description: "vd input interrupts that follow the VM's vCPU scheduling",
    license: "GPL",
}

/// Files open on `/dev/vd_input`.
static OPEN: OpenCount = OpenCount::new();

/// Most vCPU threads per VM; most routes on the host.
const MAX_VCPUS: usize = 64;
const MAX_ROUTES: usize = 32;

const FEATURES: u64 =
    VDI_FEAT_ROUTE | VDI_FEAT_SCHED | VDI_FEAT_GRAB | VDI_FEAT_ATTACH | VDI_FEAT_SHM;

/// Field order is drop order: the device first (no new files; open files pin the module), then
/// the input handler (disconnects every device), then the router.
#[pin_data(PinnedDrop)]
struct VdInputModule {
    #[pin]
    _miscdev: MiscDeviceRegistration<VmFile>,
    #[pin]
    _handler: InputHandler<route::Ops>,
    #[pin]
    router: Router,
}

impl kernel::InPlaceModule for VdInputModule {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            router <- Router::new(module).pin_chain(|r| {
                // SAFETY: `r` is the module's pinned `router` field, dropped after the input
                // handler and the misc device are unregistered (field order below).
                unsafe { route::publish(&r) };
                Ok(())
            }),
            _handler <- InputHandler::new(c"vd_input", route::Ops),
            _miscdev <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"vd_input" }),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for VdInputModule {
    fn drop(self: Pin<&mut Self>) {
        // No file is open and no vCPU thread hook lives: each holds a module reference, so the
        // module cannot get here before the last one is freed. Stop the reaper (it may be the
        // one that dropped that last reference, and is still returning through this module).
        self.router.hooks.shutdown();
    }
}

// SAFETY: `#[repr(C)]` structs of integers and byte arrays with no padding
// (sizes asserted in the ABI), so every byte is initialised and every bit pattern is valid.
unsafe_impl_pod!(
    VdiVmCreate,
    VdiVmCreateShm,
    VdiRoute,
    VdiStats,
    VdiDevice,
    VdiVcpuAttach
);

/// Routes and focus need CAP_SYS_ADMIN of the process that opened the file (the drivers' one
/// privilege model: `rust/vd/cred.rs`).
fn admin(file: &File) -> Result {
    if opener_capable(file, CAP_SYS_ADMIN) {
        Ok(())
    } else {
        Err(EPERM)
    }
}

/// The fields protected by [`VmFile::inner`] (process context only).
struct FileInner {
    /// This file's VM, once created.
    sink: Option<Arc<VmSink>>,
    /// The guest's doorbell, once bound.
    doorbell: Option<Arc<KickWaiter<Doorbell>>>,
    /// Its followed vCPU threads (registered themselves, or attached and hooked).
    hooks: KVec<ThreadHook<VmSink>>,
    /// Threads attached by TID that have not hooked themselves yet (their task work is queued).
    asked: KVec<ARef<Task>>,
}

/// One open file: a VMM (VM sink) or an administrator.
#[pin_data(PinnedDrop)]
struct VmFile {
    #[pin]
    inner: Mutex<FileInner>,
    _open: OpenGuard,
}

impl VmFile {
    fn sink(&self) -> Result<Arc<VmSink>> {
        self.inner.lock().sink.clone().ok_or(ENOENT)
    }

    fn create(&self, c: &mut VdiVmCreate) -> Result {
        if c.flags != 0 {
            return Err(EINVAL);
        }
        self.has_no_vm()?;
        let call = Self::call_fd(c.call_fd)?;
        let sink = Arc::pin_init(VmSink::new(c.vm_id, c.entries, call)?, GFP_KERNEL)?;
        c.mmap_size = sink.mem.len() as u64;
        self.install(sink)
    }

    /// `VDI_IOC_VM_CREATE_SHM`: as [`Self::create`], the ring in a new shmem file (returned).
    fn create_shm(&self, c: &mut VdiVmCreateShm) -> Result<ARef<File>> {
        if c.flags != 0 {
            return Err(EINVAL);
        }
        self.has_no_vm()?;
        let call = Self::call_fd(c.call_fd)?;
        let (init, file, size) = VmSink::new_shm(c.vm_id, c.entries, call, c.doorbell)?;
        let sink = Arc::pin_init(init, GFP_KERNEL)?;
        c.size = size as u64;
        self.install(sink)?;
        Ok(file)
    }

    /// `EEXIST` when this file is a VM already (checked before the arguments; [`Self::install`]
    /// checks again under the lock).
    fn has_no_vm(&self) -> Result {
        if self.inner.lock().sink.is_some() {
            return Err(EEXIST);
        }
        Ok(())
    }

    fn call_fd(fd: i32) -> Result<Option<EventFd>> {
        Ok(if fd >= 0 {
            Some(EventFd::from_fd(fd)?)
        } else {
            None
        })
    }

    /// Makes `sink` this file's VM and lists it on the host (`EEXIST`: the file has a VM, or
    /// the id is taken).
    fn install(&self, sink: Arc<VmSink>) -> Result {
        let mut inner = self.inner.lock();
        if inner.sink.is_some() {
            return Err(EEXIST);
        }
        {
            let mut ctl = router().ctl.lock();
            if ctl.vm(sink.vm_id).is_some() {
                return Err(EEXIST);
            }
            ctl.vms.push(sink.clone(), GFP_ATOMIC)?;
        }
        inner.sink = Some(sink);
        Ok(())
    }

    /// Undoes [`Self::create`] whose result could not be copied back, unless the VM is in use
    /// already (another thread of the caller registered a vCPU or a doorbell on it meanwhile).
    fn uncreate(&self) {
        let sink = {
            let mut inner = self.inner.lock();
            if !inner.hooks.is_empty() || !inner.asked.is_empty() || inner.doorbell.is_some() {
                return;
            }
            inner.sink.take()
        };
        if let Some(sink) = sink {
            remove_vm(router(), &sink);
        }
    }

    fn vcpu_register(&self) -> Result {
        let mut inner = self.inner.lock();
        let sink = inner.sink.clone().ok_or(ENOENT)?;
        if inner.hooks.iter().any(|h| h.is_current()) {
            return Err(EEXIST);
        }
        if inner.hooks.len() + inner.asked.len() >= MAX_VCPUS {
            return Err(ENOSPC);
        }
        Self::hook_current(&mut inner, &sink)
    }

    /// Follows the calling thread as a vCPU of `sink` (not followed yet, room checked).
    fn hook_current(inner: &mut FileInner, sink: &Arc<VmSink>) -> Result {
        inner.hooks.reserve(1, GFP_KERNEL)?;
        let hook = router().hooks.register_current(sink.clone())?;
        // Cannot fail (reserved above); if it did, the hook would be retired, not dropped.
        if let Err(e) = inner.hooks.push_within_capacity(hook) {
            if let Err(h) = router().hooks.unregister_current(e.0) {
                router().hooks.bury(h);
            }
            return Err(ENOMEM);
        }
        sink.vcpu_added();
        Ok(())
    }

    /// `VDI_IOC_VCPU_ATTACH`: asks thread `tid` to hook itself (see [`Attach`]).
    fn vcpu_attach(&self, file: &File, a: &VdiVcpuAttach) -> Result {
        if a.flags != 0 {
            return Err(EINVAL);
        }
        let mut inner = self.inner.lock();
        let sink = inner.sink.clone().ok_or(ENOENT)?;
        let task = vd::task::user_thread(a.tid)?;
        if !vd::task::may_ptrace(&task) {
            crate::vd_warn_ratelimited!(
                "vd_input: vm {}: may not attach thread {}: no ptrace access\n",
                sink.vm_id,
                a.tid
            );
            return Err(EPERM);
        }
        let followed = inner.hooks.iter().any(|h| h.is_task(&task))
            || inner
                .asked
                .iter()
                .any(|t| core::ptr::eq(t.as_ptr(), task.as_ptr()));
        if followed {
            return Err(EEXIST);
        }
        if inner.hooks.len() + inner.asked.len() >= MAX_VCPUS {
            return Err(ENOSPC);
        }
        inner.asked.push(task.clone(), GFP_KERNEL)?;
        let work = Attach {
            vm: core::ptr::from_ref(self),
            sink,
            task: task.clone(),
            file: ARef::from(file),
        };
        if let Err((e, work)) = vd::task::run_as(&task, work) {
            inner
                .asked
                .retain(|t| !core::ptr::eq(t.as_ptr(), task.as_ptr()));
            drop(inner);
            drop(work);
            return Err(e);
        }
        Ok(())
    }

    /// `VDI_IOC_VCPU_DETACH`: stops following thread `tid` (attached, asked, or registered).
    fn vcpu_detach(&self, a: &VdiVcpuAttach) -> Result {
        if a.flags != 0 {
            return Err(EINVAL);
        }
        let mut inner = self.inner.lock();
        let sink = inner.sink.clone().ok_or(ENOENT)?;
        let task = vd::task::user_thread(a.tid).map_err(|_| ENOENT)?;
        let asked = inner.asked.len();
        inner
            .asked
            .retain(|t| !core::ptr::eq(t.as_ptr(), task.as_ptr()));
        if inner.asked.len() != asked {
            // Its task work finds it no longer asked and does nothing.
            return Ok(());
        }
        let i = inner
            .hooks
            .iter()
            .position(|h| h.is_task(&task))
            .ok_or(ENOENT)?;
        let hook = inner.hooks.remove(i)?;
        let state = hook.state();
        if let Err(h) = router().hooks.unregister_current(hook) {
            // Another thread: its hook is retired (it no longer calls the sink) and freed with
            // the thread. It holds a module reference meanwhile.
            router().hooks.bury(h);
        }
        sink.vcpu_removed(state);
        Ok(())
    }

    fn vcpu_unregister(&self) -> Result {
        let mut inner = self.inner.lock();
        let sink = inner.sink.clone().ok_or(ENOENT)?;
        let i = inner
            .hooks
            .iter()
            .position(|h| h.is_current())
            .ok_or(ENOENT)?;
        let hook = inner.hooks.remove(i)?;
        let state = hook.state();
        if let Err(h) = router().hooks.unregister_current(hook) {
            // Not reachable: `is_current` held above and we are still on this thread.
            router().hooks.bury(h);
        }
        sink.vcpu_removed(state);
        Ok(())
    }

    fn bind_kick(&self, fd: i32) -> Result {
        let mut inner = self.inner.lock();
        let sink = inner.sink.clone().ok_or(ENOENT)?;
        if let Some(d) = inner.doorbell.take() {
            d.detach();
        }
        if fd >= 0 {
            let d = Arc::pin_init(
                KickWaiter::new(try_pin_init!(Doorbell { sink })),
                GFP_KERNEL,
            )?;
            d.attach(fd)?;
            inner.doorbell = Some(d);
        }
        Ok(())
    }

    fn route(&self, file: &File, r: &VdiRoute, add: bool) -> Result {
        admin(file)?;
        route::validate(r)?;
        {
            let mut ctl = router().ctl.lock();
            let pos = ctl.routes.iter().position(|x| route::same_selection(x, r));
            match (add, pos) {
                // Same devices, same grab: nothing to do; another grab: changes the setting.
                (true, Some(i)) if ctl.routes[i].grab == r.grab => return Err(EEXIST),
                (true, Some(i)) => ctl.routes[i].grab = r.grab,
                (true, None) if ctl.routes.len() >= MAX_ROUTES => return Err(ENOSPC),
                (true, None) => ctl.routes.push(*r, GFP_ATOMIC)?,
                (false, Some(i)) => {
                    let _ = ctl.routes.remove(i);
                }
                (false, None) => return Err(ENOENT),
            }
        }
        router().apply_routes();
        Ok(())
    }

    fn focus(&self, file: &File, vm_id: u32) -> Result {
        admin(file)?;
        let mut ctl = router().ctl.lock();
        if vm_id != 0 && ctl.vm(vm_id).is_none() {
            return Err(ENOENT);
        }
        ctl.focus = vm_id;
        Ok(())
    }

    fn stats(&self, s: &mut VdiStats) -> Result {
        let id = s.vm_id;
        let sink = if id == 0 {
            self.sink()?
        } else {
            router().ctl.lock().vm(id).ok_or(ENOENT)?
        };
        // Reading the counters changes nothing (no flush here: what waits is delivered by the
        // module's own events, never because somebody looked).
        *s = VdiStats {
            vm_id: sink.vm_id,
            ..Default::default()
        };
        sink.stats_into(s);
        Ok(())
    }
}

/// A thread attached by TID, hooking itself: runs as that thread (a task work).
struct Attach {
    /// The file's `VmFile`, valid while `file` is referenced (it is freed by the file's release).
    vm: *const VmFile,
    /// The VM it was attached to (the file's VM could only change by being closed).
    sink: Arc<VmSink>,
    task: ARef<Task>,
    file: ARef<File>,
}

// SAFETY: `vm` is only dereferenced while `file` keeps the `VmFile` alive, and `VmFile` is
// `Sync` (a mutex and an atomic counter guard); the other fields are `Send`.
unsafe impl Send for Attach {}

impl AsThread for Attach {
    fn run(self) {
        // SAFETY: `file` is referenced, so its release (which frees the `VmFile`) has not run.
        let vm = unsafe { &*self.vm };
        let mut inner = vm.inner.lock();
        let asked = inner.asked.len();
        inner
            .asked
            .retain(|t| !core::ptr::eq(t.as_ptr(), self.task.as_ptr()));
        if inner.asked.len() == asked {
            // Detached before it ran.
            return;
        }
        let same_vm = inner
            .sink
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, &self.sink));
        // SAFETY: reading the current task's own flags.
        let exiting = unsafe { (*Task::current_raw()).flags } & kernel::bindings::PF_EXITING != 0;
        if !same_vm || exiting || inner.hooks.iter().any(|h| h.is_current()) {
            return;
        }
        if let Err(e) = VmFile::hook_current(&mut inner, &self.sink) {
            crate::vd_warn_ratelimited!(
                "vd_input: vm {}: thread {} could not hook itself ({:?})\n",
                self.sink.vm_id,
                self.task.pid(),
                e
            );
        }
    }

    fn module_file(&self) -> &ARef<File> {
        &self.file
    }
}

/// Takes a VM off the host: its id is free again, the focus leaves it, no frame goes to it.
fn remove_vm(r: &Router, sink: &Arc<VmSink>) {
    {
        let mut ctl = r.ctl.lock();
        if let Some(i) = ctl.vms.iter().position(|v| Arc::ptr_eq(v, sink)) {
            let _ = ctl.vms.remove(i);
        }
        if ctl.focus == sink.vm_id {
            ctl.focus = 0;
        }
        if ctl.vms.is_empty() {
            ctl.vms = KVec::new();
        }
    }
    r.forget_vm(sink);
}

#[pinned_drop]
impl PinnedDrop for VmFile {
    fn drop(self: Pin<&mut Self>) {
        let (sink, hooks, doorbell) = {
            let mut inner = self.inner.lock();
            // No task work is left (each holds a reference to this file): `asked` is empty.
            (
                inner.sink.take(),
                core::mem::take(&mut inner.hooks),
                inner.doorbell.take(),
            )
        };
        if let Some(d) = doorbell {
            d.detach();
        }
        let r = router();
        for h in hooks.into_iter() {
            if let Err(h) = r.hooks.unregister_current(h) {
                // Another thread's hook: it can only leave that thread's list by itself or with
                // the thread; it stops calling the sink and is freed once the thread is gone.
                r.hooks.bury(h);
            }
        }
        if let Some(sink) = sink {
            remove_vm(r, &sink);
        }
        r.hooks.reap();
    }
}

#[vtable]
impl MiscDevice for VmFile {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        KBox::try_pin_init(
            try_pin_init!(VmFile {
                inner <- kernel::new_mutex!(FileInner {
                    sink: None,
                    doorbell: None,
                    hooks: KVec::new(),
                    asked: KVec::new(),
                }),
                _open: OPEN.enter(),
            }),
            GFP_KERNEL,
        )
    }

    fn mmap(me: Pin<&VmFile>, _file: &File, vma: &VmaNew) -> Result {
        if vd::shmem::vma_pgoff(vma) != 0 {
            return Err(EINVAL);
        }
        me.sink()?.mem.map(vma, 0, true)
    }

    fn ioctl(me: Pin<&VmFile>, file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            VD_IOC_VERSION => {
                let vms = router().ctl.lock().vms.len() as u32;
                return reply_version(arg, VdDriver::Input, FEATURES, OPEN.get(), vms);
            }
            VDI_IOC_VM_CREATE => {
                let mut c: VdiVmCreate = read(arg)?;
                me.create(&mut c)?;
                if let Err(e) = write(arg, &c) {
                    // The caller cannot learn the result: the VM is not made.
                    me.uncreate();
                    return Err(e);
                }
            }
            VDI_IOC_VM_CREATE_SHM => {
                let mut c: VdiVmCreateShm = read(arg)?;
                // Reserved first: once the answer is copied out, installing cannot fail.
                let fd = FileDescriptorReservation::get_unused_fd_flags(
                    kernel::fs::file::flags::O_CLOEXEC,
                )?;
                c.fd = i32::try_from(fd.reserved_fd()).map_err(|_| EMFILE)?;
                let shm = me.create_shm(&mut c)?;
                if let Err(e) = write(arg, &c) {
                    // The caller cannot learn the fd: the VM is not made.
                    me.uncreate();
                    return Err(e);
                }
                fd.fd_install(shm);
            }
            VDI_IOC_VCPU_REGISTER => me.vcpu_register()?,
            VDI_IOC_VCPU_UNREGISTER => me.vcpu_unregister()?,
            VDI_IOC_VCPU_ATTACH => me.vcpu_attach(file, &read::<VdiVcpuAttach>(arg)?)?,
            VDI_IOC_VCPU_DETACH => me.vcpu_detach(&read::<VdiVcpuAttach>(arg)?)?,
            VDI_IOC_SET_RUNNING => match read::<u32>(arg)? {
                v @ (0 | 1) => me.sink()?.set_running(v == 1),
                _ => return Err(EINVAL),
            },
            VDI_IOC_BIND => {
                let fd = read::<i32>(arg)?;
                let call = if fd >= 0 {
                    Some(EventFd::from_fd(fd)?)
                } else {
                    None
                };
                me.sink()?.set_call(call);
            }
            VDI_IOC_BIND_KICK => me.bind_kick(read::<i32>(arg)?)?,
            VDI_IOC_ROUTE => me.route(file, &read::<VdiRoute>(arg)?, true)?,
            VDI_IOC_UNROUTE => me.route(file, &read::<VdiRoute>(arg)?, false)?,
            VDI_IOC_FOCUS => me.focus(file, read::<u32>(arg)?)?,
            VDI_IOC_STATS => {
                let mut s: VdiStats = read(arg)?;
                me.stats(&mut s)?;
                write(arg, &s)?;
            }
            VDI_IOC_LIST_DEVICES => {
                let d: VdiDevice = read(arg)?;
                write(arg, &router().device(d.index).ok_or(ENOENT)?)?;
            }
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}
