// SPDX-License-Identifier: GPL-2.0
//! The manager: VF inventory, leases, usage and policy state of the host, behind one lock.
//!
//! Driver moves (igbvf <-> vfio-pci) sleep and may wait for other subsystems, so they never run
//! under the lock: a VF being moved is marked (`TO_GUEST`, `TO_HOST`) so that nobody else
//! touches it, the move runs unlocked, and the result is committed under the lock again, after
//! checking that the VF is still the same device (it may have been removed meanwhile: the PCI
//! notifier then already revoked its lease). Moves back to the host always run on the module's
//! own workqueue: vfio-pci's `remove` waits until its user closes the device, and a crashing
//! VMM may close our file before its VFIO file, so the file's release path must never wait
//! for it.
//!
//! Lock order: `STATE` -> a client's event queue. The PCI notifier takes `STATE` only briefly
//! and never while the driver core waits on us.

use crate::client::Client;
use crate::lease::{LeaseError, LeaseTable, MAX_VFS};
use crate::policy::{self, Change, Params};
use crate::uapi::*;
use crate::usage::Usage;
use crate::vd::netdev::{Counters, NetDev, VfRate};
use crate::vd::pci::{PciDev, PciEvent, NAME_LEN};
use crate::vd::time::{now_ms, now_ns};
use crate::vd::workqueue::{cancel_delayed_work_sync, OwnedQueue};
use crate::vd_warn_ratelimited;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::workqueue::{impl_has_delayed_work, new_delayed_work, DelayedWork, WorkItem};

/// The driver a leased VF is moved to.
const PASSTHROUGH_DRIVER: &CStr = c"vfio-pci";

/// One VF the manager knows.
pub(crate) struct Vf {
    dev: PciDev,
    /// Slot in the lease table, stable while the VF exists.
    slot: usize,
    bdf: u32,
    pf_bdf: u32,
    vf_index: u32,
    /// A `vds_phase` value.
    phase: u32,
    /// The lease keeps the VF on its host driver.
    keep_host: bool,
    /// Opener pid of the lease's file.
    owner_pid: u32,
    /// Last MAC seen on the VF's netdev.
    mac: [u8; 6],
    /// Last counters (netdev, or pushed total in `rx_bytes`).
    counters: Counters,
    /// Counters come from `VDS_IOC_SAMPLE`.
    pushed: bool,
    usage: Usage,
    leased_at_ms: u64,
    /// A reassignment candidate.
    idle: bool,
    /// Last window rate.
    rate: Option<u64>,
    /// The PF's driver is being unbound: no new lease until a driver is bound to the PF again.
    pf_going: bool,
}

struct WaitingVm {
    vm_id: u64,
    owner: u64,
    pid: u32,
    since_ms: u64,
}

/// The fields protected by [`STATE`].
pub(crate) struct Inner {
    /// Known VFs (boxed: a usage history is a kilobyte).
    vfs: KVec<KBox<Vf>>,
    /// Who holds what; indexed by [`Vf::slot`].
    table: LeaseTable,
    /// VMs waiting for a VF.
    waiters: KVec<WaitingVm>,
    /// Open files, for events.
    clients: KVec<Arc<Client>>,
    policy: Params,
    /// Last event sequence number.
    seq: u64,
    /// Set at module exit: no new VFs, no new work.
    stopping: bool,
    /// Runs the moves back to the host and the sampler. Taken out (and drained) at exit.
    queue: Option<OwnedQueue>,
    /// The usage sampler's work item. Taken out (and cancelled) at exit.
    sampler: Option<Arc<Sampler>>,
    /// The sampler is queued or running and queues itself again while something is leased.
    sampling: bool,
}

/// Sampling passes run since the module was loaded (wraps), for debugfs.
pub(crate) static TICKS: AtomicU64 = AtomicU64::new(0);
/// Mirror of [`Inner::sampling`], for debugfs.
pub(crate) static SAMPLING: AtomicBool = AtomicBool::new(false);

/// The usage sampler: a delayed work item that runs every `sample_ms` while at least one VF is
/// leased, stops when none is, and is queued again by the next lease.
#[pin_data]
pub(crate) struct Sampler {
    #[pin]
    work: DelayedWork<Sampler>,
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self> for Sampler { self.work }
}

impl WorkItem for Sampler {
    type Pointer = Arc<Sampler>;

    fn run(this: Arc<Sampler>) {
        sampler_run(this);
    }
}

kernel::sync::global_lock! {
    // SAFETY: initialised by `init` from the module initialiser, before the device or the PCI
    // notifier can call in.
    unsafe(uninit) static STATE: Mutex<Inner> = Inner {
        vfs: KVec::new(),
        table: LeaseTable::new(),
        waiters: KVec::new(),
        clients: KVec::new(),
        policy: Params::DEFAULT,
        seq: 0,
        stopping: false,
        queue: None,
        sampler: None,
        sampling: false,
    };
}

fn lease_errno(e: LeaseError) -> Error {
    match e {
        LeaseError::NoSuchVf => ENODEV,
        LeaseError::Busy => EBUSY,
        LeaseError::VmHasVf => EEXIST,
        LeaseError::NotOwner => EPERM,
        LeaseError::NotLeased => ENOENT,
    }
}

fn name_is(n: &[u8; NAME_LEN], want: &CStr) -> bool {
    let w = want.to_bytes();
    n.len() > w.len() && &n[..w.len()] == w && n[w.len()] == 0
}

/// Queues an event on every client; `seq` is [`Inner::seq`] (a split borrow of [`Inner`]).
fn emit_to(
    clients: &[Arc<Client>],
    seq: &mut u64,
    kind: u32,
    bdf: u32,
    vm_id: u64,
    other_vm: u64,
    err: i32,
) {
    *seq = seq.wrapping_add(1);
    let ev = VdsEvent {
        seq: *seq,
        kind,
        bdf,
        vm_id,
        other_vm,
        time_ns: now_ns(),
        err,
        reserved: 0,
    };
    for c in clients.iter() {
        c.push(ev);
    }
}

impl Inner {
    fn emit(&mut self, kind: u32, bdf: u32, vm_id: u64, other_vm: u64, err: i32) {
        emit_to(
            &self.clients,
            &mut self.seq,
            kind,
            bdf,
            vm_id,
            other_vm,
            err,
        );
    }
    /// Queues the sampler unless it is going already; after a lease was taken. Under the lock.
    fn arm_sampler(&mut self) {
        if self.sampling || self.stopping {
            return;
        }
        let (Some(q), Some(s)) = (&self.queue, &self.sampler) else {
            return;
        };
        let delay = kernel::time::msecs_to_jiffies(self.policy.sample_ms as u32);
        if q.queue().enqueue_delayed(s.clone(), delay).is_ok() {
            self.sampling = true;
            SAMPLING.store(true, Ordering::Relaxed);
        }
    }
    fn find_dev(&self, dev: &PciDev) -> Option<usize> {
        self.vfs.iter().position(|v| v.dev.same(dev))
    }
    fn find_bdf(&self, bdf: u32) -> Option<usize> {
        self.vfs.iter().position(|v| v.bdf == bdf)
    }
    fn free_slot(&self) -> Option<usize> {
        (0..MAX_VFS).find(|s| !self.vfs.iter().any(|v| v.slot == *s))
    }
    /// Starts moving VF `i` back to the host after its lease ended. Under the lock.
    fn start_return(&mut self, i: usize) {
        let v = &mut self.vfs[i];
        v.idle = false;
        v.rate = None;
        v.usage.reset();
        v.pushed = false;
        v.owner_pid = 0;
        if v.keep_host {
            v.keep_host = false;
            v.phase = vds_phase::HOST;
            v.dev.set_assigned(false);
            let bdf = v.bdf;
            self.emit(vds_event::RETURNED, bdf, 0, 0, 0);
            return;
        }
        v.phase = vds_phase::TO_HOST;
        let dev = v.dev.clone();
        let spawned = match &self.queue {
            Some(q) => q
                .queue()
                .try_spawn(GFP_KERNEL, move || finish_return(dev))
                .is_ok(),
            None => false,
        };
        if !spawned {
            // Out of memory (or exiting): the VF stays marked; module exit moves it back.
            vd_warn_ratelimited!("vd_sriov: could not queue the return of a VF to the host\n");
        }
    }
}

/// Initialises the lock and the workqueue; called once from module init.
pub(crate) fn init() -> Result {
    // SAFETY: called exactly once, from module init, before any other use of `STATE`.
    unsafe { STATE.init() };
    let q = OwnedQueue::new(c"vd_sriov")?;
    let s = Arc::pin_init(
        pin_init!(Sampler { work <- new_delayed_work!("vd_sriov_sampler") }),
        GFP_KERNEL,
    )?;
    let mut g = STATE.lock();
    g.queue = Some(q);
    g.sampler = Some(s);
    Ok(())
}

/// Takes every VF present now; after the PCI notifier is registered. The sampler starts with
/// the first lease.
pub(crate) fn start() -> Result {
    for d in PciDev::all()?.iter() {
        if d.is_vf() {
            add_vf(d);
        }
    }
    Ok(())
}

/// Module exit: stops the sampler, waits for moves in flight, and gives every VF still marked
/// back to its host driver. No file is open any more (each holds a module reference).
pub(crate) fn shutdown() {
    let s = {
        let mut g = STATE.lock();
        g.stopping = true;
        g.sampler.take()
    };
    // A run in progress sees `stopping` and does not queue itself again; a queued one is
    // cancelled. Without the lock: a run takes it.
    if let Some(s) = s {
        cancel_delayed_work_sync(&s);
    }
    let q = STATE.lock().queue.take();
    // Drains the workqueue: returns in flight finish.
    drop(q);
    let vfs = core::mem::replace(&mut STATE.lock().vfs, KVec::new());
    for v in vfs.iter() {
        if v.phase != vds_phase::HOST {
            if !v.keep_host {
                if let Err(e) = v.dev.rebind(None) {
                    pr_warn!(
                        "vd_sriov: VF {:x} not returned to its driver at exit: {:?}\n",
                        v.bdf,
                        e
                    );
                }
            }
            v.dev.set_assigned(false);
        }
    }
    let mut g = STATE.lock();
    g.waiters = KVec::new();
    g.clients = KVec::new();
    drop(g);
    drop(vfs);
}

/// The PCI notifier's handler.
pub(crate) fn on_pci(ev: PciEvent, dev: &PciDev) {
    if !dev.is_vf() {
        if dev.total_vfs() > 0 {
            match ev {
                PciEvent::Unbinding | PciEvent::Removed => pf_going(dev),
                PciEvent::Bound => pf_back(dev),
                PciEvent::Added | PciEvent::Unbound => {}
            }
        }
        return;
    }
    match ev {
        PciEvent::Added => add_vf(dev),
        PciEvent::Removed => remove_vf(dev),
        PciEvent::Unbound => driver_lost(dev),
        PciEvent::Bound | PciEvent::Unbinding => {}
    }
}

/// The driver of SR-IOV PF `pf` is about to be unbound (sysfs unbind, the PF's `remove`, rmmod,
/// hot-unplug; or the PF is being deleted). The PF driver's `remove` disables SR-IOV only if no
/// VF is marked assigned (igb: `pci_vfs_assigned`, else "VFs will not be deallocated"); VFs left
/// enabled by a driver that is gone are orphans, and the PCI core finds them still enabled when
/// it frees the PF (`BUG_ON(num_VFs)` in `sriov_release`). So before `remove` runs, every lease
/// on the PF's VFs is revoked and every mark cleared, and no VF of the PF is leased again until
/// a driver is bound to the PF again. A lease being moved (`TO_GUEST`) loses its table entry
/// here; `lease` sees that when it commits and sends the VF back.
///
/// Runs under the PF's device lock: takes `STATE` only, never waits for a driver.
fn pf_going(pf: &PciDev) {
    let pf_bdf = pf.bdf();
    let mut g = STATE.lock();
    for i in 0..g.vfs.len() {
        if g.vfs[i].pf_bdf != pf_bdf {
            continue;
        }
        let slot = g.vfs[i].slot;
        let lease = g.table.lease_of(slot);
        if let Some(l) = lease {
            let _ = g.table.release(slot, l.owner);
        }
        let v = &mut g.vfs[i];
        v.pf_going = true;
        v.dev.set_assigned(false);
        let Some(l) = lease else { continue };
        if v.phase == vds_phase::LEASED {
            v.phase = vds_phase::HOST;
            // Back to normal matching, should the VF outlive its PF's driver.
            v.dev.clear_override();
        }
        v.keep_host = false;
        v.owner_pid = 0;
        v.idle = false;
        v.rate = None;
        v.usage.reset();
        let bdf = v.bdf;
        pr_info!(
            "vd_sriov: PF {} is losing its driver: lease of VF {} by VM {} revoked\n",
            BdfFmt(pf_bdf),
            BdfFmt(bdf),
            l.vm_id
        );
        g.emit(vds_event::REVOKED, bdf, l.vm_id, 0, 0);
    }
}

/// A driver was bound to PF `pf`: its VFs (those that survived, if any) may be leased again.
fn pf_back(pf: &PciDev) {
    let pf_bdf = pf.bdf();
    for v in STATE.lock().vfs.iter_mut().filter(|v| v.pf_bdf == pf_bdf) {
        v.pf_going = false;
    }
}

/// A driver left a VF. If we did not do it (the VF is `LEASED`, not being moved by us), the
/// lease holder lost the VF: an admin unbound it, or the device is being stopped for removal
/// (hot-unplug stops VFs before their PF). The lease is revoked and the assigned mark cleared
/// at once: the PF driver, stopped next, must be allowed to disable SR-IOV, or the PCI core
/// would find VFs still enabled when it frees the PF.
fn driver_lost(dev: &PciDev) {
    let mut g = STATE.lock();
    let Some(i) = g.find_dev(dev) else { return };
    if g.vfs[i].phase != vds_phase::LEASED {
        return;
    }
    let slot = g.vfs[i].slot;
    let Some(l) = g.table.lease_of(slot) else {
        return;
    };
    let _ = g.table.release(slot, l.owner);
    let v = &mut g.vfs[i];
    v.phase = vds_phase::HOST;
    v.keep_host = false;
    v.owner_pid = 0;
    v.idle = false;
    v.rate = None;
    v.usage.reset();
    v.dev.set_assigned(false);
    let bdf = v.bdf;
    pr_info!(
        "vd_sriov: leased VF {} lost its driver: lease of VM {} revoked\n",
        BdfFmt(bdf),
        l.vm_id
    );
    g.emit(vds_event::REVOKED, bdf, l.vm_id, 0, 0);
    drop(g);
    // Back to normal matching for whoever binds it next.
    dev.clear_override();
}

fn add_vf(dev: &PciDev) {
    let Some(pf) = dev.physfn() else { return };
    let (bdf, pf_bdf, vf_index) = (dev.bdf(), pf.bdf(), dev.vf_id().unwrap_or(u32::MAX));
    let mac = dev.netdev().map(|n| n.mac()).unwrap_or([0; 6]);
    let mut g = STATE.lock();
    if g.stopping || g.find_dev(dev).is_some() {
        return;
    }
    let Some(slot) = g.free_slot() else {
        vd_warn_ratelimited!(
            "vd_sriov: more than {} VFs, {:x} not managed\n",
            MAX_VFS,
            bdf
        );
        return;
    };
    let v = KBox::new(
        Vf {
            dev: dev.clone(),
            slot,
            bdf,
            pf_bdf,
            vf_index,
            phase: vds_phase::HOST,
            keep_host: false,
            owner_pid: 0,
            mac,
            counters: Counters::default(),
            pushed: false,
            usage: Usage::new(),
            leased_at_ms: 0,
            idle: false,
            rate: None,
            pf_going: false,
        },
        GFP_KERNEL,
    );
    let Ok(v) = v else { return };
    if g.table.add_vf(slot).is_err() || g.vfs.push(v, GFP_KERNEL).is_err() {
        g.table.remove_vf(slot);
        return;
    }
    g.emit(vds_event::VF_ADDED, bdf, 0, 0, 0);
}

fn remove_vf(dev: &PciDev) {
    let gone = {
        let mut g = STATE.lock();
        let Some(i) = g.find_dev(dev) else { return };
        let v = g.vfs.remove(i);
        let Ok(v) = v else { return };
        match g.table.remove_vf(v.slot) {
            Some(l) => {
                pr_info!(
                    "vd_sriov: leased VF {} removed: lease of VM {} revoked\n",
                    BdfFmt(v.bdf),
                    l.vm_id
                );
                g.emit(vds_event::REVOKED, v.bdf, l.vm_id, 0, 0)
            }
            None => g.emit(vds_event::VF_REMOVED, v.bdf, 0, 0, 0),
        }
        v
    };
    // The device is going away: whatever we marked on it no longer matters to anyone.
    gone.dev.set_assigned(false);
    drop(gone);
}

/// Work item: moves a released VF back to its host driver and commits.
fn finish_return(dev: PciDev) {
    let r = dev.rebind(None);
    let err = match &r {
        Ok(_) => 0,
        Err(e) => {
            vd_warn_ratelimited!(
                "vd_sriov: VF {} not returned to its host driver: {:?}\n",
                BdfFmt(dev.bdf()),
                e
            );
            e.to_errno()
        }
    };
    let mut g = STATE.lock();
    let Some(i) = g.find_dev(&dev) else { return };
    if g.vfs[i].phase != vds_phase::TO_HOST {
        return;
    }
    let v = &mut g.vfs[i];
    v.phase = vds_phase::HOST;
    v.dev.set_assigned(false);
    let bdf = v.bdf;
    g.emit(vds_event::RETURNED, bdf, 0, 0, err);
}

/// `VDS_IOC_LEASE`.
pub(crate) fn lease(client: &Client, req: &mut VdsLease) -> Result {
    if req.vm_id == 0 || req.flags & !VDS_LEASE_KEEP_HOST != 0 {
        return Err(EINVAL);
    }
    let keep_host = req.flags & VDS_LEASE_KEEP_HOST != 0;
    let (dev, bdf) = {
        let mut g = STATE.lock();
        let i = if req.bdf == VDS_ANY {
            let g = &*g;
            g.vfs
                .iter()
                .position(|v| {
                    v.phase == vds_phase::HOST && !v.pf_going && g.table.lease_of(v.slot).is_none()
                })
                .ok_or(EBUSY)?
        } else {
            g.find_bdf(req.bdf).ok_or(ENODEV)?
        };
        if g.vfs[i].phase != vds_phase::HOST {
            return Err(EBUSY);
        }
        // Its PF's driver is going: the VF is about to disappear.
        if g.vfs[i].pf_going {
            return Err(ENODEV);
        }
        // A VF on vfio-pci that we did not put there is in someone else's hands.
        let mut drv = [0u8; NAME_LEN];
        g.vfs[i].dev.driver_into(&mut drv);
        if name_is(&drv, PASSTHROUGH_DRIVER) {
            return Err(EBUSY);
        }
        let slot = g.vfs[i].slot;
        g.table
            .lease(slot, req.vm_id, client.id)
            .map_err(lease_errno)?;
        g.arm_sampler();
        g.waiters.retain(|w| w.vm_id != req.vm_id);
        let v = &mut g.vfs[i];
        v.phase = if keep_host {
            vds_phase::LEASED
        } else {
            vds_phase::TO_GUEST
        };
        v.keep_host = keep_host;
        v.owner_pid = client.pid;
        v.leased_at_ms = now_ms();
        v.usage.reset();
        v.pushed = false;
        v.idle = false;
        v.rate = None;
        // Before the move: the PF driver refuses to disable SR-IOV from now on.
        v.dev.set_assigned(true);
        let (dev, bdf) = (v.dev.clone(), v.bdf);
        if keep_host {
            g.emit(vds_event::LEASED, bdf, req.vm_id, 0, 0);
            req.bdf = bdf;
            return Ok(());
        }
        (dev, bdf)
    };
    let moved = match dev.rebind(Some(PASSTHROUGH_DRIVER)) {
        Ok(n) if name_is(&n, PASSTHROUGH_DRIVER) => Ok(()),
        // No matching driver bound: vfio-pci refused the device (no IOMMU group and no-IOMMU
        // mode off) or is not available.
        Ok(_) => Err(ENXIO),
        Err(e) => Err(e),
    };
    if let Err(e) = moved {
        // Roll back: the VF goes back to its host driver, the lease is undone.
        let back = dev.rebind(None);
        vd_warn_ratelimited!(
            "vd_sriov: VF {} did not bind to vfio-pci ({:?}; no IOMMU? \
             try vfio.enable_unsafe_noiommu_mode=1); rolled back ({})\n",
            BdfFmt(bdf),
            e,
            if back.is_ok() { "ok" } else { "failed" }
        );
        let mut g = STATE.lock();
        if let Some(i) = g.find_dev(&dev) {
            let slot = g.vfs[i].slot;
            let _ = g.table.release(slot, client.id);
            let v = &mut g.vfs[i];
            v.phase = vds_phase::HOST;
            v.owner_pid = 0;
            v.dev.set_assigned(false);
            g.emit(vds_event::MOVE_FAILED, bdf, req.vm_id, 0, e.to_errno());
        }
        return Err(e);
    }
    let mut g = STATE.lock();
    let Some(i) = g.find_dev(&dev) else {
        // Removed while moving: the notifier revoked the lease already.
        return Err(ENODEV);
    };
    let slot = g.vfs[i].slot;
    if !g
        .table
        .lease_of(slot)
        .is_some_and(|l| l.owner == client.id && l.vm_id == req.vm_id)
    {
        // Revoked while moving (its PF's driver is going; the REVOKED event is out): back to the
        // host.
        pr_info!(
            "vd_sriov: VF {} revoked while moving to vfio-pci: sent back\n",
            BdfFmt(bdf)
        );
        g.start_return(i);
        return Err(ENODEV);
    }
    g.vfs[i].phase = vds_phase::LEASED;
    g.emit(vds_event::LEASED, bdf, req.vm_id, 0, 0);
    req.bdf = bdf;
    Ok(())
}

/// `VDS_IOC_RELEASE`: `flags` must be 0 and `vm_id` the VM the lease was taken for. `EINVAL`
/// for flags or VM id 0; `ENODEV` unknown VF; `ENOENT` the VF is not leased, or is leased by
/// this file for another VM; `EPERM` leased by another file; `EBUSY` being moved.
pub(crate) fn release(client: &Client, req: &VdsLease) -> Result {
    if req.flags != 0 || req.vm_id == 0 {
        return Err(EINVAL);
    }
    let mut g = STATE.lock();
    let i = g.find_bdf(req.bdf).ok_or(ENODEV)?;
    if g.vfs[i].phase != vds_phase::LEASED {
        return Err(if g.vfs[i].phase == vds_phase::HOST {
            ENOENT
        } else {
            EBUSY
        });
    }
    let slot = g.vfs[i].slot;
    match g.table.lease_of(slot) {
        None => return Err(ENOENT),
        Some(l) if l.owner != client.id => return Err(EPERM),
        Some(l) if l.vm_id != req.vm_id => return Err(ENOENT),
        Some(_) => {}
    }
    let l = g.table.release(slot, client.id).map_err(lease_errno)?;
    g.emit(vds_event::RELEASED, req.bdf, l.vm_id, 0, 0);
    g.start_return(i);
    Ok(())
}

/// Ends the lease `l` that [`lease`] just took for `client`, whose result could not be copied
/// back to the caller. If it ended otherwise meanwhile (revoked), nothing is left to do.
pub(crate) fn undo_lease(client: &Client, l: &VdsLease) {
    let req = VdsLease {
        bdf: l.bdf,
        flags: 0,
        vm_id: l.vm_id,
    };
    if let Err(e) = release(client, &req) {
        pr_info!(
            "vd_sriov: lease of VF {} for VM {} not undone: {:?}\n",
            BdfFmt(l.bdf),
            l.vm_id,
            e
        );
    }
}

/// A client opened the device.
pub(crate) fn add_client(c: Arc<Client>) -> Result {
    STATE.lock().clients.push(c, GFP_KERNEL)?;
    Ok(())
}

/// A client's file is released: all its leases and waiters end.
pub(crate) fn remove_client(c: &Arc<Client>) {
    let mut g = STATE.lock();
    g.clients.retain(|x| !Arc::ptr_eq(x, c));
    if g.clients.is_empty() {
        g.clients = KVec::new();
    }
    g.waiters.retain(|w| w.owner != c.id);
    if g.waiters.is_empty() {
        g.waiters = KVec::new();
    }
    let mut ended = KVec::new();
    let mut lost = 0;
    g.table.release_owner(c.id, |slot, l| {
        if ended.push((slot, l.vm_id), GFP_KERNEL).is_err() {
            lost += 1;
        }
    });
    if lost > 0 {
        // Out of memory: those leases are gone from the table, but their VFs stay marked until
        // module exit moves them back.
        pr_warn!(
            "vd_sriov: {} released VFs not returned (out of memory)\n",
            lost
        );
    }
    for &(slot, vm) in ended.iter() {
        if let Some(i) = g.vfs.iter().position(|v| v.slot == slot) {
            let bdf = g.vfs[i].bdf;
            g.emit(vds_event::RELEASED, bdf, vm, 0, 0);
            g.start_return(i);
        }
    }
}

/// `VDS_IOC_VF`: the `index`-th VF.
pub(crate) fn vf_info(index: u32) -> Result<VdsVf> {
    let now = now_ms();
    let (mut out, dev) = {
        let g = STATE.lock();
        let v = g.vfs.get(index as usize).ok_or(ENOENT)?;
        let lease = g.table.lease_of(v.slot);
        let mut flags = 0;
        if v.keep_host {
            flags |= vds_vf::KEEP_HOST;
        }
        if v.rate.is_some() {
            flags |= vds_vf::HAS_RATE;
        }
        if v.idle {
            flags |= vds_vf::IDLE;
        }
        if v.pushed {
            flags |= vds_vf::PUSHED;
        }
        let mut mac = [0u8; 8];
        mac[..6].copy_from_slice(&v.mac);
        let out = VdsVf {
            index,
            bdf: v.bdf,
            pf_bdf: v.pf_bdf,
            vf_index: v.vf_index,
            phase: v.phase,
            flags,
            owner_pid: if lease.is_some() { v.owner_pid } else { 0 },
            reserved: 0,
            vm_id: lease.map(|l| l.vm_id).unwrap_or(0),
            held_ms: if lease.is_some() {
                now.saturating_sub(v.leased_at_ms)
            } else {
                0
            },
            rx_bytes: v.counters.rx_bytes,
            tx_bytes: v.counters.tx_bytes,
            rx_packets: v.counters.rx_packets,
            tx_packets: v.counters.tx_packets,
            rate_bps: v.rate.unwrap_or(0),
            mac,
            ..Default::default()
        };
        (out, v.dev.clone())
    };
    // Live facts, read without the lock.
    dev.name_into(&mut out.name);
    dev.driver_into(&mut out.driver);
    if dev.assigned() {
        out.flags |= vds_vf::ASSIGNED;
    }
    if let Some(nd) = dev.netdev() {
        out.flags |= vds_vf::NETDEV;
        out.netdev = nd.name();
        out.mac[..6].copy_from_slice(&nd.mac());
        if out.flags & vds_vf::PUSHED == 0 {
            let c = nd.counters();
            (out.rx_bytes, out.tx_bytes, out.rx_packets, out.tx_packets) =
                (c.rx_bytes, c.tx_bytes, c.rx_packets, c.tx_packets);
        }
    }
    Ok(out)
}

/// `VDS_IOC_PF`: the `index`-th SR-IOV PF present now (rescanned on every call).
pub(crate) fn pf_info(index: u32) -> Result<VdsPf> {
    let all = PciDev::all()?;
    let pf = all
        .iter()
        .filter(|d| !d.is_vf() && d.total_vfs() > 0)
        .nth(index as usize)
        .ok_or(ENOENT)?;
    let mut out = VdsPf {
        index,
        bdf: pf.bdf(),
        total_vfs: pf.total_vfs(),
        num_vfs: pf.num_vfs(),
        ..Default::default()
    };
    pf.name_into(&mut out.name);
    pf.driver_into(&mut out.driver);
    Ok(out)
}

/// `VDS_IOC_SAMPLE`: the holder's own count while the VF is passed through.
pub(crate) fn sample(client: &Client, s: &VdsSample) -> Result {
    if s.flags != 0 {
        return Err(EINVAL);
    }
    let mut g = STATE.lock();
    let i = g.find_bdf(s.bdf).ok_or(ENODEV)?;
    let slot = g.vfs[i].slot;
    match g.table.lease_of(slot) {
        Some(l) if l.owner == client.id => {}
        Some(_) => return Err(EPERM),
        None => return Err(ENOENT),
    }
    let gap = g.policy.sample_ms;
    let v = &mut g.vfs[i];
    v.pushed = true;
    v.usage.push(now_ms(), s.bytes, gap);
    v.counters = Counters {
        rx_bytes: s.bytes,
        ..Default::default()
    };
    Ok(())
}

/// The PF's netdev and the VF number of VF `bdf`, for a rate call (made without the lock).
fn rate_target(bdf: u32) -> Result<(NetDev, u32)> {
    let (dev, vf_index) = {
        let g = STATE.lock();
        let v = &g.vfs[g.find_bdf(bdf).ok_or(ENODEV)?];
        (v.dev.clone(), v.vf_index)
    };
    let pf = dev.physfn().ok_or(ENODEV)?;
    // A PF without a network driver has no per-VF rates to set.
    let nd = pf.netdev().ok_or(EOPNOTSUPP)?;
    Ok((nd, vf_index))
}

/// `VDS_IOC_RATE_GET`: the VF's transmit rate limits as its PF driver keeps them.
pub(crate) fn rate_get(r: &VdsRate) -> Result<VdsRate> {
    if r.flags != 0 {
        return Err(EINVAL);
    }
    let (nd, vf) = rate_target(r.bdf)?;
    let got = nd.vf_rate(vf)?;
    Ok(VdsRate {
        bdf: r.bdf,
        flags: 0,
        max_tx_mbps: got.max_mbps,
        min_tx_mbps: got.min_mbps,
    })
}

/// `VDS_IOC_RATE_SET`: sets the VF's transmit rate limits through its PF driver.
pub(crate) fn rate_set(r: &VdsRate) -> Result {
    if r.flags != 0 {
        return Err(EINVAL);
    }
    let (nd, vf) = rate_target(r.bdf)?;
    let got = nd.set_vf_rate(
        vf,
        VfRate {
            min_mbps: r.min_tx_mbps,
            max_mbps: r.max_tx_mbps,
        },
    )?;
    pr_info!(
        "vd_sriov: VF {} transmit rate limit {} Mbit/s (min {})\n",
        BdfFmt(r.bdf),
        got.max_mbps,
        got.min_mbps
    );
    Ok(())
}

/// `VDS_IOC_POLICY_GET`.
pub(crate) fn policy_get() -> VdsPolicy {
    STATE.lock().policy.to_abi()
}

/// `VDS_IOC_POLICY_SET`.
pub(crate) fn policy_set(p: &VdsPolicy) -> Result {
    let p = Params::from_abi(p)?;
    let mut g = STATE.lock();
    g.policy = p;
    evaluate(&mut g);
    Ok(())
}

/// `VDS_IOC_WAIT`.
pub(crate) fn wait(client: &Client, w: &VdsWait) -> Result {
    if w.vm_id == 0 || w.flags & !VDS_WAIT_CANCEL != 0 || w.reserved != 0 {
        return Err(EINVAL);
    }
    let mut g = STATE.lock();
    if w.flags & VDS_WAIT_CANCEL != 0 {
        let before = g.waiters.len();
        g.waiters
            .retain(|x| !(x.vm_id == w.vm_id && x.owner == client.id));
        return if g.waiters.len() == before {
            Err(ENOENT)
        } else {
            Ok(())
        };
    }
    if g.table.holder_of(w.vm_id).is_some() || g.waiters.iter().any(|x| x.vm_id == w.vm_id) {
        return Err(EEXIST);
    }
    g.waiters.push(
        WaitingVm {
            vm_id: w.vm_id,
            owner: client.id,
            pid: client.pid,
            since_ms: now_ms(),
        },
        GFP_KERNEL,
    )?;
    g.emit(vds_event::WAITING, 0, w.vm_id, 0, 0);
    Ok(())
}

/// `VDS_IOC_SWAP`: the lease of `bdf` moves from `from_vm` to the waiter `to_vm`, atomically.
pub(crate) fn swap(s: &VdsSwap) -> Result {
    if s.flags & !VDS_SWAP_FORCE != 0 || s.from_vm == 0 || s.to_vm == 0 {
        return Err(EINVAL);
    }
    let mut g = STATE.lock();
    let i = g.find_bdf(s.bdf).ok_or(ENODEV)?;
    let slot = g.vfs[i].slot;
    let l = g.table.lease_of(slot).ok_or(ENOENT)?;
    if l.vm_id != s.from_vm {
        return Err(ESRCH);
    }
    if g.vfs[i].phase != vds_phase::LEASED {
        return Err(EBUSY);
    }
    let wi = g
        .waiters
        .iter()
        .position(|w| w.vm_id == s.to_vm)
        .ok_or(ENOENT)?;
    if s.flags & VDS_SWAP_FORCE == 0 && !g.vfs[i].idle {
        return Err(EAGAIN);
    }
    let w = g.waiters.remove(wi).map_err(|_| ENOENT)?;
    g.table.release(slot, l.owner).map_err(lease_errno)?;
    if let Err(e) = g.table.lease(slot, w.vm_id, w.owner) {
        // Cannot happen (the slot was just freed and a waiter holds no VF); restore the old lease.
        let _ = g.table.lease(slot, l.vm_id, l.owner);
        return Err(lease_errno(e));
    }
    let v = &mut g.vfs[i];
    v.owner_pid = w.pid;
    v.leased_at_ms = now_ms();
    v.usage.reset();
    v.pushed = false;
    v.idle = false;
    v.rate = None;
    let bdf = v.bdf;
    g.emit(vds_event::SWAPPED, bdf, s.to_vm, s.from_vm, 0);
    Ok(())
}

/// `VDS_IOC_CANDIDATE`: idle holders (most reclaimable first), then waiters (longest first).
pub(crate) fn candidate(index: u32) -> Result<VdsCandidate> {
    let now = now_ms();
    let g = STATE.lock();
    let holders = policy::idle_holders(&g.table, |slot| {
        g.vfs
            .iter()
            .find(|v| v.slot == slot && v.idle)
            .map(|v| (v.rate.unwrap_or(0), now.saturating_sub(v.leased_at_ms)))
    })?;
    let i = index as usize;
    if let Some(h) = holders.get(i) {
        let bdf = g
            .vfs
            .iter()
            .find(|v| v.slot == h.slot)
            .map(|v| v.bdf)
            .unwrap_or(0);
        return Ok(VdsCandidate {
            index,
            kind: vds_cand::HOLDER,
            bdf,
            reserved: 0,
            vm_id: h.vm_id,
            rate_bps: h.rate,
            age_ms: h.held_ms,
        });
    }
    let mut ws = KVec::with_capacity(g.waiters.len(), GFP_KERNEL)?;
    for w in g.waiters.iter() {
        ws.push(
            policy::Waiter {
                vm_id: w.vm_id,
                waited_ms: now.saturating_sub(w.since_ms),
            },
            GFP_KERNEL,
        )?;
    }
    policy::order_waiters(&mut ws);
    let w = i
        .checked_sub(holders.len())
        .and_then(|i| ws.get(i))
        .ok_or(ENOENT)?;
    Ok(VdsCandidate {
        index,
        kind: vds_cand::WAITER,
        bdf: 0,
        reserved: 0,
        vm_id: w.vm_id,
        rate_bps: 0,
        age_ms: w.waited_ms,
    })
}

/// Feeds every holder's window rate to the policy; emits every candidate change (no cap: a
/// reader's queue that overflows reports a `LOST` count). Under the lock.
fn evaluate(g: &mut Inner) {
    let now = now_ms();
    let Inner {
        vfs,
        table,
        clients,
        seq,
        policy: p,
        ..
    } = g;
    for v in vfs.iter_mut() {
        let Some(l) = table.lease_of(v.slot) else {
            continue;
        };
        if v.phase != vds_phase::LEASED {
            continue;
        }
        v.rate = v.usage.rate(now, p.window_ms);
        let (idle, ch) = policy::step(p, v.idle, now.saturating_sub(v.leased_at_ms), v.rate);
        v.idle = idle;
        let kind = match ch {
            Change::None => continue,
            Change::BecameIdle => vds_event::CANDIDATE,
            Change::BecameBusy => vds_event::BUSY,
        };
        emit_to(clients, seq, kind, v.bdf, l.vm_id, 0, 0);
    }
}

/// One sampling pass: netdev counters of the VFs on the host, then the policy.
fn tick() {
    let mut devs = KVec::new();
    {
        let g = STATE.lock();
        for v in g.vfs.iter() {
            if !v.pushed
                && (v.phase == vds_phase::HOST || (v.phase == vds_phase::LEASED && v.keep_host))
            {
                if devs.push(v.dev.clone(), GFP_KERNEL).is_err() {
                    break;
                }
            }
        }
    }
    // (device, counters, mac), read without the lock.
    let mut seen = KVec::new();
    for d in devs.into_iter() {
        if let Some(nd) = d.netdev() {
            let (c, mac) = (nd.counters(), nd.mac());
            if seen.push((d, c, mac), GFP_KERNEL).is_err() {
                break;
            }
        }
    }
    let now = now_ms();
    let mut g = STATE.lock();
    let gap = g.policy.sample_ms;
    for (d, c, mac) in seen.iter() {
        if let Some(i) = g.find_dev(d) {
            let v = &mut g.vfs[i];
            if v.pushed {
                continue;
            }
            v.counters = *c;
            v.mac = *mac;
            v.usage
                .push(now, c.rx_bytes.saturating_add(c.tx_bytes), gap);
        }
    }
    evaluate(&mut g);
}

/// The sampler's work function: one pass, then queued again after `sample_ms` while a VF is
/// leased and the module is not exiting; otherwise it stops until the next lease.
fn sampler_run(this: Arc<Sampler>) {
    tick();
    TICKS.fetch_add(1, Ordering::Relaxed);
    let mut g = STATE.lock();
    if policy::keep_sampling(g.stopping, g.table.counts().1) {
        let delay = kernel::time::msecs_to_jiffies(g.policy.sample_ms as u32);
        if let Some(q) = &g.queue {
            // Fails only if queued already (by `arm_sampler` racing this run): one is enough.
            let _ = q.queue().enqueue_delayed(this, delay);
            return;
        }
    }
    g.sampling = false;
    SAMPLING.store(false, Ordering::Relaxed);
}

/// debugfs `vd_sriov/sampler`: whether the sampler is going and how many passes it ran.
pub(crate) struct SamplerStats;

impl core::fmt::Debug for SamplerStats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(f, "sampling {}", u8::from(SAMPLING.load(Ordering::Relaxed)))?;
        writeln!(f, "ticks {}", TICKS.load(Ordering::Relaxed))
    }
}

/// `DDDD:BB:DD.F` of a packed bdf, for logs.
pub(crate) struct BdfFmt(pub(crate) u32);

impl kernel::fmt::Display for BdfFmt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            b >> 16,
            (b >> 8) & 0xff,
            (b >> 3) & 0x1f,
            b & 7
        )
    }
}
