// SPDX-License-Identifier: GPL-2.0
//! The host-wide list of channels, for `VDE_IOC_LIST` and debugfs (each file otherwise only sees
//! its own channels).
//!
//! Every channel gets a list key when it is created: unique, increasing, never reused. Listing
//! walks the keys with a cursor ("the first channel whose key is at least `cursor`"), so a walk
//! while channels come and go never repeats or skips a channel that lives through it, and each
//! step is one tree lookup.

use crate::channel::ChannelRef;
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNode};

/// A listed channel: its domain's pid and a reference.
struct Listed {
    pid: u32,
    ch: ChannelRef,
}

kernel::sync::global_lock! {
    // SAFETY: initialised by `init` from the module initialiser, before any file can be opened.
    // `None` until the first channel (`RBTree::new` is not `const`).
    unsafe(uninit) static CHANNELS: Mutex<Option<RBTree<u64, Listed>>> = None;
}

/// The next list key (keys start at 1; 0 is a cursor that starts a walk).
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// Channels listed now (answered in `VD_IOC_VERSION`).
static LISTED: AtomicU32 = AtomicU32::new(0);

/// Initialises the registry's lock; called once, from module init.
pub(crate) fn init() {
    // SAFETY: called exactly once, from module init, before any other use of `CHANNELS`.
    unsafe { CHANNELS.init() };
}

/// A fresh list key (a `u64` counter: it does not wrap in practice; if it did, keys would
/// still be unique while fewer than 2^64 channels live).
pub(crate) fn next_key() -> u64 {
    NEXT_KEY.fetch_add(1, Relaxed)
}

/// Lists `ch` (of the domain of process `pid`) under its key.
pub(crate) fn register(pid: u32, ch: &ChannelRef) -> Result {
    let node = RBTreeNode::new(
        ch.data.key,
        Listed {
            pid,
            ch: ch.clone(),
        },
        GFP_KERNEL,
    )?;
    let old = CHANNELS.lock().get_or_insert_with(RBTree::new).insert(node);
    LISTED.fetch_add(1, Relaxed);
    // Keys are unique: nothing was replaced. Dropped after the unlock.
    drop(old);
    Ok(())
}

/// Removes the channel listed under `key`. Its reference is dropped after the lock.
pub(crate) fn unregister(key: u64) {
    let old = CHANNELS.lock().as_mut().and_then(|t| t.remove(&key));
    if old.is_some() {
        LISTED.fetch_sub(1, Relaxed);
    }
    drop(old);
}

/// Channels listed now.
pub(crate) fn count() -> u32 {
    LISTED.load(Relaxed)
}

/// Stops a channel: unlists it, no more kicks or handler runs; the memory goes when the last
/// reference (and the last mapping of its pages) does.
pub(crate) fn teardown(ch: ChannelRef) {
    unregister(ch.data.key);
    ch.detach();
    drop(ch);
}

/// The first listed channel whose key is at least `cursor`: `(key, pid, channel)`.
pub(crate) fn next_from(cursor: u64) -> Option<(u64, u32, ChannelRef)> {
    let l = CHANNELS.lock();
    let c = l.as_ref()?.cursor_lower_bound(&cursor)?;
    let (k, v) = c.current();
    Some((*k, v.pid, v.ch.clone()))
}

/// `/sys/kernel/debug/vd_evtchn/channels`: one line per channel on the host (`domain` is the
/// creator's pid, `kicker` the pid of the process that last kicked it, 0 before any kick).
pub(crate) struct Listing;

impl fmt::Debug for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "domain channel state backend entries requests responses bytes_in bytes_out \
             kicks wakeups irqs irqs_suppressed errors req_errors orphan front syncs kicker"
        )?;
        let mut cursor = 0;
        while let Some((key, pid, ch)) = next_from(cursor) {
            let mut s = crate::uapi::VdeStats::default();
            ch.data.stats_into(&mut s);
            writeln!(
                f,
                "{} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
                pid,
                ch.data.id,
                s.state,
                s.backend,
                s.entries,
                s.counters.requests,
                s.counters.responses,
                s.counters.bytes_in,
                s.counters.bytes_out,
                s.counters.kicks,
                s.counters.wakeups,
                s.counters.irqs,
                s.counters.irqs_suppressed,
                s.counters.errors,
                s.counters.req_errors,
                u32::from(ch.data.is_orphan()),
                ch.data.front_state(),
                ch.data.syncs(),
                ch.kicker()
            )?;
            match key.checked_add(1) {
                Some(c) => cursor = c,
                None => break,
            }
        }
        Ok(())
    }
}
