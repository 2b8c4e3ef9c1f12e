// SPDX-License-Identifier: GPL-2.0
//! Channels owned by their guest (`VDE_IOC_ORPHAN`): the host-wide set of orphans.
//!
//! A server sets a channel up for a VMM (QEMU's `ivshmem-doorbell`), hands the VMM the kick and
//! call eventfds and the channel's file, and orphans the channel: it leaves the server's domain
//! and is served on as before, for as long as its VMM lives, whatever happens to the server.
//! The module holds only the kick eventfd's *context*, never its file, so the eventfd's release
//! (its last `close` anywhere: the VMM exited) wakes our waiter with `EPOLLHUP`
//! ([`crate::vd::eventfd::KickHandler::hung_up`]); the channel is then torn down here, in a work
//! item of the set's own workqueue (never in the wake-up, never in the channel's own kick work,
//! which the teardown waits for).
//!
//! Each orphan holds a reference on the module: `rmmod` answers `EBUSY` while a guest uses a
//! channel, and works once the VMMs are gone. The reference is dropped by the reaping work item
//! after the teardown; module exit destroys the set's workqueue, which waits for that work item
//! to return, so the module's text outlives it.

use crate::channel::ChannelRef;
use crate::vd::eventfd::WorkQueue;
use crate::vd::modref::ModuleRef;
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNode};
use kernel::sync::Arc;
use kernel::workqueue::{Work, WorkItem};
use kernel::ThisModule;

/// An orphaned channel with the work item that reaps it.
#[pin_data]
pub(crate) struct Orphan {
    ch: ChannelRef,
    #[pin]
    work: Work<Orphan>,
}

kernel::impl_has_work! {
    impl HasWork<Self> for Orphan { self.work }
}

impl WorkItem for Orphan {
    type Pointer = Arc<Orphan>;

    fn run(this: Arc<Orphan>) {
        reap(this);
    }
}

/// An orphan in the set, with its module reference.
struct Entry {
    o: Arc<Orphan>,
    /// Dropped by [`reap`] only (on the set's workqueue, which module exit waits for) or, for
    /// an adoption that did not happen, in the ioctl that prepared it.
    _module: ModuleRef,
}

/// The fields protected by [`ORPHANS`].
struct OrphanSet {
    /// Orphans by list key. `None` until the first one (`RBTree::new` is not `const`).
    tree: Option<RBTree<u64, Entry>>,
    /// Where reaping runs; taken (and destroyed, waiting for a running reap) at module exit.
    wq: Option<Arc<WorkQueue>>,
    /// This module (set at init), for the orphans' references.
    module: Option<&'static ThisModule>,
}

kernel::sync::global_lock! {
    // SAFETY: initialised by `init` from the module initialiser, before any file can be opened.
    unsafe(uninit) static ORPHANS: Mutex<OrphanSet> = OrphanSet {
        tree: None,
        wq: None,
        module: None,
    };
}

/// Initialises the set; called once, from module init.
pub(crate) fn init(module: &'static ThisModule) -> Result {
    // SAFETY: called exactly once, from module init, before any other use of `ORPHANS`.
    unsafe { ORPHANS.init() };
    let wq = WorkQueue::named(c"vd_evtchn_reap")?;
    let mut set = ORPHANS.lock();
    set.wq = Some(wq);
    set.module = Some(module);
    Ok(())
}

/// Module exit: no orphan is left (each held a module reference); destroys the workqueue,
/// which waits for a reap still returning.
pub(crate) fn exit() {
    let wq = ORPHANS.lock().wq.take();
    drop(wq);
}

/// Queues the reaping of `o` (a no-op if it is queued already).
fn queue(set: &OrphanSet, o: &Arc<Orphan>) {
    if let Some(wq) = &set.wq {
        // `Err` means it is queued already: that run reaps it.
        let _ = wq.queue().enqueue(o.clone());
    }
}

/// What [`adopt`] needs, allocated before anything changes so that adopting cannot fail.
pub(crate) struct Prepared {
    o: Arc<Orphan>,
    node: RBTreeNode<u64, Entry>,
}

/// Allocates what adopting `ch` needs (with the orphan's module reference). Called from an
/// ioctl of an open file of this module.
pub(crate) fn prepare(ch: &ChannelRef) -> Result<Prepared> {
    let o = Arc::pin_init(
        pin_init!(Orphan {
            ch: ch.clone(),
            work <- kernel::new_work!("vd_evtchn::orphan"),
        }),
        GFP_KERNEL,
    )?;
    let this = ORPHANS.lock().module.ok_or(ENODEV)?;
    // SAFETY: we run an ioctl of an open file of this module, which pins it. The reference is
    // dropped either in this ioctl (adoption did not happen: the file still pins the module)
    // or by `reap`, on the set's workqueue, which module exit destroys (waiting for it).
    let module = unsafe { ModuleRef::new(this) };
    let entry = Entry {
        o: o.clone(),
        _module: module,
    };
    let node = RBTreeNode::new(ch.data.key, entry, GFP_KERNEL)?;
    Ok(Prepared { o, node })
}

/// Takes the channel of `p` (already out of its domain, its kick eventfd sealed) into the set;
/// reaped at once if its eventfd already hung up.
pub(crate) fn adopt(p: Prepared) {
    let Prepared { o, node } = p;
    o.ch.data.set_orphan();
    let mut set = ORPHANS.lock();
    let old = set.tree.get_or_insert_with(RBTree::new).insert(node);
    // Keys are unique: nothing was replaced.
    drop(old);
    // Checked under the lock, as `hung_up` does: a hang-up before this line is seen here, one
    // after it finds the orphan in the set.
    if o.ch.hung_up() {
        queue(&set, &o);
    }
    drop(set);
}

/// The kick eventfd of the channel listed under `key` hung up: reap it if it is an orphan.
/// Called from the channel's kick work item.
pub(crate) fn hung_up(key: u64) {
    let set = ORPHANS.lock();
    let o = set
        .tree
        .as_ref()
        .and_then(|t| t.get(&key))
        .map(|e| e.o.clone());
    if let Some(o) = o {
        queue(&set, &o);
    }
}

/// Work item: tears the orphan down if it is still in the set (a second run finds it gone),
/// then drops its module reference, last.
fn reap(o: Arc<Orphan>) {
    let key = o.ch.data.key;
    let removed = ORPHANS.lock().tree.as_mut().and_then(|t| t.remove(&key));
    let Some(entry) = removed else {
        return;
    };
    crate::registry::teardown(o.ch.clone());
    drop(o);
    // The module reference goes here, on the set's workqueue, which module exit destroys
    // (waiting for this function to return) before the module's text goes.
    drop(entry);
}
