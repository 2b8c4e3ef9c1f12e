// SPDX-License-Identifier: GPL-2.0
//! The host-wide list of domains, for `VDE_IOC_LIST` and debugfs (each file otherwise only sees
//! its own channels).

use crate::channel::ChannelRef;
use crate::domain::DomainCore;
use core::fmt;
use kernel::prelude::*;
use kernel::sync::Arc;

kernel::sync::global_lock! {
    // SAFETY: initialised by `init` from the module initialiser, before any file can be opened.
    unsafe(uninit) static DOMAINS: Mutex<KVec<Arc<DomainCore>>> = KVec::new();
}

/// Initialises the registry's lock; called once, from module init.
pub(crate) fn init() {
    // SAFETY: called exactly once, from module init, before any other use of `DOMAINS`.
    unsafe { DOMAINS.init() };
}

/// Adds a domain.
pub(crate) fn register(d: Arc<DomainCore>) -> Result {
    DOMAINS.lock().push(d, GFP_KERNEL)?;
    Ok(())
}

/// Removes a domain. When the list becomes empty its buffer is freed, so an unloaded module
/// leaves nothing allocated behind.
pub(crate) fn unregister(d: &Arc<DomainCore>) {
    let mut l = DOMAINS.lock();
    if let Some(i) = l.iter().position(|x| Arc::ptr_eq(x, d)) {
        let _ = l.remove(i);
    }
    if l.is_empty() {
        *l = KVec::new();
    }
}

/// The `index`-th channel on the host, with its domain's pid. The registry lock is dropped before
/// the channel is looked at.
pub(crate) fn nth_channel(index: u32) -> Option<(u32, ChannelRef)> {
    let doms: KVec<Arc<DomainCore>> = {
        let l = DOMAINS.lock();
        let mut v = KVec::with_capacity(l.len(), GFP_KERNEL).ok()?;
        for d in l.iter() {
            v.push(d.clone(), GFP_KERNEL).ok()?;
        }
        v
    };
    let mut left = index as usize;
    for d in doms.iter() {
        let chans = d.channels();
        if left < chans.len() {
            return chans.into_iter().nth(left).map(|c| (d.pid, c));
        }
        left -= chans.len();
    }
    None
}

/// `/sys/kernel/debug/vd_evtchn/channels`: one line per channel on the host.
pub(crate) struct Listing;

impl fmt::Debug for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "domain channel state backend entries requests responses bytes_in bytes_out kicks wakeups irqs irqs_suppressed errors req_errors")?;
        let mut i = 0;
        while let Some((pid, ch)) = nth_channel(i) {
            let mut s = crate::uapi::VdeStats::default();
            ch.data.stats_into(&mut s);
            writeln!(
                f,
                "{} {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
                pid, ch.data.id, s.state, s.backend, s.entries, s.requests, s.responses, s.bytes_in, s.bytes_out,
                s.kicks, s.wakeups, s.irqs, s.irqs_suppressed, s.errors, s.req_errors
            )?;
            i += 1;
        }
        Ok(())
    }
}
