// SPDX-License-Identifier: GPL-2.0
//! Reassignment: the policy's parameters, the VMs waiting for a VF, the candidates (idle
//! holders, then waiters) and the swap of a lease from an idle holder to a waiter, all under
//! [`STATE`]; [`evaluate`] feeds the holders' rates to the pure policy (`crate::policy`).

use super::{emit_to, lease_errno, Inner, WaitingVm, STATE};
use crate::client::Client;
use crate::policy::{self, Change, Params};
use crate::uapi::*;
use crate::vd::time::now_ms;
use kernel::prelude::*;

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
    v.mirror.reset();
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
pub(super) fn evaluate(g: &mut Inner) {
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
