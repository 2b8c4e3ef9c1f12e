// SPDX-License-Identifier: GPL-2.0
//! Read-only queries: a VF's row (`VDS_IOC_VF`: the state under [`STATE`], live device facts
//! read after it is dropped) and the SR-IOV PFs present (`VDS_IOC_PF`, no lock).

use super::STATE;
use crate::uapi::*;
use crate::vd::pci::PciDev;
use crate::vd::time::now_ms;
use kernel::prelude::*;

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
        } else if v.mirror.raw().is_some() {
            flags |= vds_vf::PF_MIRROR;
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
