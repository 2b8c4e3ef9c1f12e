// SPDX-License-Identifier: GPL-2.0
//! The usage sampler: a delayed work item on the module's workqueue that reads the netdev
//! counters of the VFs on the host and, for passed-through VFs of an igb 82576/i350 PF, the PF's
//! mirror of their statistics (`crate::mirror`), then runs the policy
//! ([`super::reassign::evaluate`]). A holder that pushes its own count (`VDS_IOC_SAMPLE`) takes
//! precedence over both. It runs while a VF is leased; debugfs `vd_sriov/sampler` shows whether
//! it is going, how many passes it ran, and each passed-through VF's last raw mirror reading.

use super::reassign::evaluate;
use super::{BdfFmt, Inner, STATE};
use crate::client::Client;
use crate::mirror::{self, Raw};
use crate::policy;
use crate::uapi::*;
use crate::vd::barregs::BarRegs;
use crate::vd::netdev::Counters;
use crate::vd::pci::PciDev;
use crate::vd::time::now_ms;
use crate::vd_warn_ratelimited;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::workqueue::{impl_has_delayed_work, new_delayed_work, DelayedWork, WorkItem};

/// Sampling passes run since the module was loaded (wraps), for debugfs.
static TICKS: AtomicU64 = AtomicU64::new(0);
/// Mirror of [`Inner::sampling`], for debugfs.
static SAMPLING: AtomicBool = AtomicBool::new(false);
/// Readings of a PF's mirror registers since the module was loaded (wraps), for debugfs.
static MIRROR_READS: AtomicU64 = AtomicU64::new(0);

/// The usage sampler: a delayed work item that runs every `sample_ms` while at least one VF is
/// leased, stops when none is, and is queued again by the next lease.
#[pin_data]
pub(crate) struct Sampler {
    #[pin]
    work: DelayedWork<Sampler>,
}

impl Sampler {
    /// The work item, not queued yet (the first lease queues it).
    pub(super) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Sampler { work <- new_delayed_work!("vd_sriov_sampler") }),
            GFP_KERNEL,
        )
    }
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

impl Inner {
    /// Queues the sampler unless it is going already; after a lease was taken. Under the lock.
    pub(super) fn arm_sampler(&mut self) {
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
    if !v.pushed && v.mirror.raw().is_some() {
        // The holder's count replaces the PF's mirror: the history holds one source only.
        v.usage.reset();
        v.mirror.reset();
    }
    v.pushed = true;
    v.usage.push(now_ms(), s.bytes, gap);
    v.counters = Counters {
        rx_bytes: s.bytes,
        ..Default::default()
    };
    Ok(())
}

/// Reads the PF's mirror of the statistics of VF `vf` (VF number `n` on its PF), if its PF is
/// an igb 82576/i350 in D0. The PF's BAR0 is mapped for the read only, without taking the
/// region igb owns; the registers have no read side effects. Sleeps (`ioremap`).
fn read_mirror(vf: &PciDev, n: u32) -> Option<Raw> {
    let pf = vf.physfn()?;
    let (vendor, device) = pf.ids();
    if !mirror::supported(vendor, device) || !pf.in_d0() {
        return None;
    }
    let regs = match BarRegs::map(&pf, mirror::BAR, mirror::block(n)?, mirror::BLOCK_LEN) {
        Ok(r) => r,
        Err(e) => {
            vd_warn_ratelimited!(
                "vd_sriov: PF {} of VF {}: mirror statistics not mapped: {:?}\n",
                BdfFmt(pf.bdf()),
                BdfFmt(vf.bdf()),
                e
            );
            return None;
        }
    };
    let r = Raw {
        rx_packets: regs.read32(mirror::GPRC)?,
        tx_packets: regs.read32(mirror::GPTC)?,
        rx_bytes: regs.read32(mirror::GORC)?,
        tx_bytes: regs.read32(mirror::GOTC)?,
    };
    MIRROR_READS.fetch_add(1, Ordering::Relaxed);
    (!r.all_ones()).then_some(r)
}

/// One sampling pass: netdev counters of the VFs on the host, the PF's mirror of the
/// passed-through ones, then the policy.
fn tick() {
    let mut devs = KVec::new();
    // Passed-through VFs whose holder pushes nothing: (device, VF number).
    let mut passed = KVec::new();
    {
        let g = STATE.lock();
        for v in g.vfs.iter() {
            if v.pushed {
                continue;
            }
            let queued =
                if v.phase == vds_phase::HOST || (v.phase == vds_phase::LEASED && v.keep_host) {
                    devs.push(v.dev.clone(), GFP_KERNEL)
                } else if v.phase == vds_phase::LEASED && !v.pf_going {
                    passed.push((v.dev.clone(), v.vf_index), GFP_KERNEL)
                } else {
                    Ok(())
                };
            if queued.is_err() {
                break;
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
    // (device, raw mirror reading), read without the lock.
    let mut mirrored = KVec::new();
    for (d, n) in passed.into_iter() {
        if let Some(r) = read_mirror(&d, n) {
            if mirrored.push((d, r), GFP_KERNEL).is_err() {
                break;
            }
        }
    }
    let now = now_ms();
    let mut g = STATE.lock();
    let gap = g.policy.sample_ms;
    for (d, r) in mirrored.iter() {
        if let Some(i) = g.find_dev(d) {
            let v = &mut g.vfs[i];
            // Still passed through, and the holder did not start pushing meanwhile. A lease that
            // began meanwhile (swap) takes this reading as its baseline.
            if v.pushed || v.phase != vds_phase::LEASED || v.keep_host {
                continue;
            }
            v.counters = v.mirror.update(*r);
            let bytes = v.mirror.bytes();
            v.usage.push(now, bytes, gap);
        }
    }
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
        writeln!(f, "ticks {}", TICKS.load(Ordering::Relaxed))?;
        writeln!(f, "mirror_reads {}", MIRROR_READS.load(Ordering::Relaxed))?;
        // One line per VF counted from its PF's mirror: the last raw registers, then the totals
        // since its lease began.
        let g = STATE.lock();
        for v in g.vfs.iter() {
            if let Some(r) = v.mirror.raw() {
                // `fmt!`: `BdfFmt` is a `kernel::fmt::Display`.
                f.write_fmt(fmt!(
                    "mirror {} vf {} gorc {} gotc {} gprc {} gptc {} rx_bytes {} tx_bytes {}\n",
                    BdfFmt(v.bdf),
                    v.vf_index,
                    r.rx_bytes,
                    r.tx_bytes,
                    r.rx_packets,
                    r.tx_packets,
                    v.counters.rx_bytes,
                    v.counters.tx_bytes
                ))?;
            }
        }
        Ok(())
    }
}
