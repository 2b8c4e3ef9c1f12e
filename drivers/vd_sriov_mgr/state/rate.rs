// SPDX-License-Identifier: GPL-2.0
//! Per-VF transmit rate limits, kept by the PF's network driver (`ndo_set_vf_rate`): the target
//! is looked up under [`STATE`], the driver called without it.

use super::{BdfFmt, STATE};
use crate::uapi::*;
use crate::vd::netdev::{NetDev, VfRate};
use kernel::prelude::*;

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
