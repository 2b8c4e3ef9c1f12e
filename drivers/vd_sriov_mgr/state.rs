// SPDX-License-Identifier: GPL-2.0
//! The manager: VF inventory, leases, usage and policy state of the host, behind one lock,
//! [`STATE`] (its fields: [`Inner`]). This file holds the lock, what it protects, the helpers
//! every part uses, and module init and exit; each concept that works on it has its own file:
//!
//! - `inventory.rs`: the PCI notifier: VFs come and go, PF drivers leave and come back (leases
//!   revoked);
//! - `moves.rs`: leases and their driver moves (igbvf <-> vfio-pci), release, the open files;
//! - `queries.rs`: `VDS_IOC_VF`, `VDS_IOC_PF`;
//! - `rate.rs`: per-VF transmit rate limits through the PF driver (no lock held across the call);
//! - `reassign.rs`: the reassignment policy: parameters, waiting VMs, candidates, the swap;
//! - `sampler.rs`: the usage sampler (netdev counters, the PF's mirror of a passed-through VF's
//!   statistics, or `VDS_IOC_SAMPLE`) and its debugfs file.
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

mod inventory;
mod moves;
mod queries;
mod rate;
mod reassign;
mod sampler;

pub(crate) use inventory::{on_pci, start};
pub(crate) use moves::{add_client, lease, release, remove_client, undo_lease};
pub(crate) use queries::{pf_info, vf_info};
pub(crate) use rate::{rate_get, rate_set};
pub(crate) use reassign::{candidate, policy_get, policy_set, swap, wait};
pub(crate) use sampler::{sample, SamplerStats};

use crate::client::Client;
use crate::lease::{LeaseError, LeaseTable, MAX_VFS};
use crate::mirror::Mirror;
use crate::policy::Params;
use crate::uapi::*;
use crate::usage::Usage;
use crate::vd::netdev::Counters;
use crate::vd::pci::{PciDev, NAME_LEN};
use crate::vd::time::now_ns;
use crate::vd::workqueue::{cancel_delayed_work_sync, OwnedQueue};
use kernel::prelude::*;
use kernel::sync::Arc;
use sampler::Sampler;

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
    /// Last counters (netdev, PF mirror totals since the lease began, or pushed total in
    /// `rx_bytes`).
    counters: Counters,
    /// Counters come from `VDS_IOC_SAMPLE`.
    pushed: bool,
    /// The PF's mirror of the VF's statistics while it is passed through and nothing is pushed
    /// (a reading since the lease began: the counters come from there).
    mirror: Mirror,
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
    fn find_dev(&self, dev: &PciDev) -> Option<usize> {
        self.vfs.iter().position(|v| v.dev.same(dev))
    }
    fn find_bdf(&self, bdf: u32) -> Option<usize> {
        self.vfs.iter().position(|v| v.bdf == bdf)
    }
    fn free_slot(&self) -> Option<usize> {
        (0..MAX_VFS).find(|s| !self.vfs.iter().any(|v| v.slot == *s))
    }
}

/// Initialises the lock and the workqueue; called once from module init.
pub(crate) fn init() -> Result {
    // SAFETY: called exactly once, from module init, before any other use of `STATE`.
    unsafe { STATE.init() };
    let q = OwnedQueue::new(c"vd_sriov")?;
    let s = Sampler::new()?;
    let mut g = STATE.lock();
    g.queue = Some(q);
    g.sampler = Some(s);
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
