// SPDX-License-Identifier: GPL-2.0
//! Leases and their driver moves: `VDS_IOC_LEASE` marks the VF under [`STATE`], moves it to
//! vfio-pci without the lock and commits under it again; the end of a lease (release, the
//! holder's file closed) starts the move back to the host driver, which always runs on the
//! module's workqueue (see the parent module). Also the list of open files, for events.

use super::{lease_errno, name_is, BdfFmt, Inner, PASSTHROUGH_DRIVER, STATE};
use crate::client::Client;
use crate::uapi::*;
use crate::vd::pci::{PciDev, NAME_LEN};
use crate::vd::time::now_ms;
use crate::vd_warn_ratelimited;
use kernel::prelude::*;
use kernel::sync::Arc;

impl Inner {
    /// Starts moving VF `i` back to the host after its lease ended. Under the lock.
    fn start_return(&mut self, i: usize) {
        let v = &mut self.vfs[i];
        v.idle = false;
        v.rate = None;
        v.usage.reset();
        v.mirror.reset();
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
        v.mirror.reset();
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
