// SPDX-License-Identifier: GPL-2.0
//! The VF inventory and the PCI notifier: VFs are taken when they appear (at start and on
//! `Added`) and dropped when removed; a driver that leaves a leased VF, or the driver of a PF
//! going away, revokes the leases it concerns. Every handler takes [`STATE`] briefly and never
//! waits for a driver under it.

use super::{BdfFmt, Vf, STATE};
use crate::lease::MAX_VFS;
use crate::mirror::Mirror;
use crate::uapi::*;
use crate::usage::Usage;
use crate::vd::netdev::Counters;
use crate::vd::pci::{PciDev, PciEvent};
use crate::vd_warn_ratelimited;
use kernel::prelude::*;

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
        v.mirror.reset();
        v.pushed = false;
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
    v.mirror.reset();
    v.pushed = false;
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
            mirror: Mirror::new(),
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
