//! The SR-IOV policy: vd_sriov_mgr's reassignment proposals turned into VMM actions.
//!
//! The module decides *who* is idle (a holder whose VF traffic stayed under its threshold for the
//! window, after `min_hold_ms`, with hysteresis) and *who* waits; it proposes pairs (idle holder
//! `i` with waiter `i`, `VDS_IOC_CANDIDATE`) and emits `candidate`/`waiting` events. vdd never
//! overrides that (its swaps are never forced), it carries a proposal out when both VMs have a
//! `[[vm]]` entry (their QMP socket), in this order:
//!
//! 0. connect to both QEMUs (nothing moves if one does not answer);
//! 1. `VDS_IOC_SWAP` (the module refuses with `EAGAIN` if the holder became busy meanwhile);
//! 2. `device_del` of the VF on the old holder's QEMU, waiting for `DEVICE_DELETED`;
//! 3. `set_link up` of the old holder's standby virtio-net NIC (net_failover: the guest's traffic
//!    falls back to it);
//! 4. `device_add vfio-pci,host=VF,id=...,failover_pair_id=NIC` on the new holder's QEMU.
//!
//! A failed step is rolled back in reverse: the VF is plugged back into the old holder (after a
//! failed 3 or 4) and the lease goes back to it: vdd's own file waits for the old VM and swaps
//! the lease back (forced, since the module's idle verdict is about the old holder), then waits
//! for the new VM again, so the module's view is as before; the lease and the wait then belong
//! to vdd's open file (they end if vdd stops; logged). The same VF/holder/waiter is not tried
//! again for `retry_ms`.
//!
//! `revoked` (a leased VF disappeared) is passed on: `device_del` on the holder's QEMU and
//! `set_link up` of its standby NIC.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use tracing::{debug, error, info, warn};
use vd_sys::sriov::{bdf_name, event_name, Manager};
use vd_sys::vfmac::mac_string;
use vd_uapi::{vds_cand, vds_event, vds_phase, vds_vf, VdsCandidate, VdsEvent, VdsPolicy, VdsVf};

use crate::config::{Config, VmConfig};
use crate::protocol::{MoveTiming, SriovView, VfView};
use crate::vmm::{Qmp, VfDevice, Vmm, VmmError};

/// What the policy needs of vd_sriov_mgr (a fake in tests).
pub trait SriovDev: Send {
    /// Events queued now, waiting up to `timeout` for the first.
    fn events(&mut self, timeout: Duration) -> Result<Vec<VdsEvent>, Errno>;
    fn candidates(&mut self) -> Result<Vec<VdsCandidate>, Errno>;
    fn swap(&mut self, bdf: u32, from_vm: u64, to_vm: u64, force: bool) -> Result<(), Errno>;
    /// `VDS_IOC_WAIT` for `vm_id`, owned by vdd's file.
    fn wait_for_vf(&mut self, vm_id: u64) -> Result<(), Errno>;
    fn vfs(&mut self) -> Result<Vec<VdsVf>, Errno>;
    fn policy(&mut self) -> Result<VdsPolicy, Errno>;
    /// Sets VF `vf`'s MAC through its PF's driver (rtnetlink, not the module).
    fn set_vf_mac(&mut self, vf: &str, mac: [u8; 6]) -> std::io::Result<()>;
}

impl SriovDev for Manager {
    fn events(&mut self, timeout: Duration) -> Result<Vec<VdsEvent>, Errno> {
        if !self.poll_readable(timeout)? {
            return Ok(vec![]);
        }
        match self.read_events() {
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => Ok(vec![]),
            r => r,
        }
    }
    fn candidates(&mut self) -> Result<Vec<VdsCandidate>, Errno> {
        Manager::candidates(self)
    }
    fn swap(&mut self, bdf: u32, from_vm: u64, to_vm: u64, force: bool) -> Result<(), Errno> {
        Manager::swap(self, bdf, from_vm, to_vm, force)
    }
    fn wait_for_vf(&mut self, vm_id: u64) -> Result<(), Errno> {
        Manager::wait_for_vf(self, vm_id, false)
    }
    fn vfs(&mut self) -> Result<Vec<VdsVf>, Errno> {
        Manager::vfs(self)
    }
    fn set_vf_mac(&mut self, vf: &str, mac: [u8; 6]) -> std::io::Result<()> {
        vd_sys::vfmac::set_vf_mac(vf, mac).map(drop)
    }
    fn policy(&mut self) -> Result<VdsPolicy, Errno> {
        Manager::policy(self)
    }
}

/// Opens a VM's VMM (a QMP connection; fakes in tests).
pub trait Connector: Send {
    fn connect(&mut self, vm: &VmConfig) -> Result<Box<dyn Vmm>, VmmError>;
}

/// QEMU over QMP.
pub struct QmpConnector;

impl Connector for QmpConnector {
    fn connect(&mut self, vm: &VmConfig) -> Result<Box<dyn Vmm>, VmmError> {
        Ok(Box::new(Qmp::connect(&vm.qmp)?))
    }
}

/// What became of one proposal.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Swapped, unplugged, plugged.
    Moved,
    /// Left alone (a VM without `[[vm]]`, or a retry too soon): nothing was done.
    Skipped(String),
    /// Not swapped (a VMM did not answer, or the module refused the swap): nothing moved.
    NotSwapped(String),
    /// A step after the swap failed; everything was put back.
    RolledBack(String),
    /// A step failed and putting it back failed too: the operator must look.
    RollbackFailed(String),
}

/// The policy's state machine over a device and a VMM connector.
pub struct Reassigner<D: SriovDev, C: Connector> {
    pub dev: D,
    pub conn: C,
    vms: BTreeMap<u64, VmConfig>,
    /// Carry proposals out (`[sriov] enabled`); else only report.
    act: bool,
    unplug_timeout: Duration,
    retry: Duration,
    backoff: BTreeMap<(u32, u64, u64), Instant>,
    skip_logged: BTreeSet<(u32, u64, u64)>,
    /// Leases (VF, VM) vdd's own file took over in a rollback.
    pub held: BTreeSet<(u32, u64)>,
    pub view: SriovView,
}

impl<D: SriovDev, C: Connector> Reassigner<D, C> {
    pub fn new(dev: D, conn: C, cfg: &Config) -> Self {
        Self {
            dev,
            conn,
            vms: cfg.vms.iter().map(|v| (v.id, v.clone())).collect(),
            act: cfg.sriov.enabled,
            unplug_timeout: Duration::from_millis(cfg.sriov.unplug_timeout_ms),
            retry: Duration::from_millis(cfg.sriov.retry_ms),
            backoff: BTreeMap::new(),
            skip_logged: BTreeSet::new(),
            held: BTreeSet::new(),
            view: SriovView {
                state: "ok".into(),
                ..Default::default()
            },
        }
    }

    /// Logs the events, passes revocations on, and looks at the proposals when one may be new.
    pub fn handle_events(&mut self, evs: &[VdsEvent]) -> Vec<Outcome> {
        let mut consider = false;
        for e in evs {
            let vf = if e.bdf != 0 {
                bdf_name(e.bdf)
            } else {
                "-".into()
            };
            match e.kind {
                vds_event::CANDIDATE => {
                    info!(vm = e.vm_id, vf = %vf, "SR-IOV event: VM {} is a reassignment candidate on {vf} (its traffic stayed under the module's threshold for the window)", e.vm_id);
                    consider = true;
                }
                vds_event::WAITING => {
                    info!(vm = e.vm_id, "SR-IOV event: VM {} waits for a VF", e.vm_id);
                    consider = true;
                }
                vds_event::LOST => {
                    warn!(
                        "SR-IOV event: {} event(s) lost (queue overflow); re-reading the proposals",
                        e.other_vm
                    );
                    consider = true;
                }
                vds_event::REVOKED => {
                    warn!(vm = e.vm_id, vf = %vf, "SR-IOV event: VF {vf} of VM {} disappeared (revoked)", e.vm_id);
                    self.revoked(e);
                }
                vds_event::SWAPPED => {
                    info!(vm = e.vm_id, vf = %vf, "SR-IOV event: {vf} moved from VM {} to VM {}", e.other_vm, e.vm_id)
                }
                vds_event::MOVE_FAILED | vds_event::RETURNED if e.err != 0 => {
                    warn!(vm = e.vm_id, vf = %vf, "SR-IOV event: {} {vf} VM {}: errno {}", event_name(e.kind), e.vm_id, -e.err)
                }
                k => {
                    info!(vm = e.vm_id, vf = %vf, "SR-IOV event: {} {vf} VM {}", event_name(k), e.vm_id)
                }
            }
        }
        if consider {
            self.consider()
        } else {
            vec![]
        }
    }

    /// Carries out the module's current proposals (idle holder i with waiter i).
    pub fn consider(&mut self) -> Vec<Outcome> {
        let c = match self.dev.candidates() {
            Ok(c) => c,
            Err(e) => {
                warn!("SR-IOV: VDS_IOC_CANDIDATE: {e}");
                return vec![];
            }
        };
        let holders: Vec<VdsCandidate> = c
            .iter()
            .filter(|c| c.kind == vds_cand::HOLDER)
            .copied()
            .collect();
        let waiters: Vec<VdsCandidate> = c
            .iter()
            .filter(|c| c.kind == vds_cand::WAITER)
            .copied()
            .collect();
        if !self.act {
            if !holders.is_empty() && !waiters.is_empty() {
                debug!(
                    "SR-IOV: {} proposal(s), not acting ([sriov] enabled = false)",
                    holders.len().min(waiters.len())
                );
            }
            return vec![];
        }
        holders
            .iter()
            .zip(waiters.iter())
            .map(|(h, w)| self.reassign(h, w))
            .collect()
    }

    fn note(&mut self, s: String) {
        self.view.last = Some(s);
    }

    /// One proposal: VF `h.bdf` from holder `h.vm_id` to waiter `w.vm_id`.
    pub fn reassign(&mut self, h: &VdsCandidate, w: &VdsCandidate) -> Outcome {
        let (bdf, from, to) = (h.bdf, h.vm_id, w.vm_id);
        let vf = bdf_name(bdf);
        let key = (bdf, from, to);
        if let Some(t) = self.backoff.get(&key) {
            if t.elapsed() < self.retry {
                debug!(
                    "SR-IOV: {vf} VM {from} -> VM {to} failed {:?} ago; next try after retry_ms",
                    t.elapsed()
                );
                return Outcome::Skipped("retry later".into());
            }
            self.backoff.remove(&key);
        }
        let (old, new) = match (self.vms.get(&from), self.vms.get(&to)) {
            (Some(o), Some(n)) => (o.clone(), n.clone()),
            (o, n) => {
                let missing: Vec<String> = [(o.is_none(), from), (n.is_none(), to)]
                    .iter()
                    .filter(|(m, _)| *m)
                    .map(|(_, id)| format!("VM {id}"))
                    .collect();
                let why = format!(
                    "{} ha{} no [[vm]] entry (QMP socket) in vdd's config",
                    missing.join(" and "),
                    if missing.len() == 1 { "s" } else { "ve" }
                );
                if self.skip_logged.insert(key) {
                    // A warning when the config names one of the two (likely an omission); when it
                    // names neither, these VMs are simply not vdd's to move.
                    if o.is_some() || n.is_some() {
                        warn!(vf = %vf, from, to, "SR-IOV: not reassigning {vf} from VM {from} (idle, {} B/s) to waiting VM {to}: {why}; the lease stays with VM {from}", h.rate_bps);
                    } else {
                        info!(vf = %vf, from, to, "SR-IOV: not reassigning {vf} from VM {from} (idle, {} B/s) to waiting VM {to}: {why}; the lease stays with VM {from}", h.rate_bps);
                    }
                    self.view.skipped_total += 1;
                }
                return Outcome::Skipped(why);
            }
        };
        let t0 = Instant::now();
        let decided = std::time::SystemTime::now();
        // Each step's end, for `last_move`.
        let mut marks = [t0; 6];
        // 0. Both VMMs answer before anything moves.
        let mut old_vmm = match self.conn.connect(&old) {
            Ok(v) => v,
            Err(e) => {
                return self.not_swapped(key, format!("VM {from}'s QMP {}: {e}", old.qmp.display()))
            }
        };
        let mut new_vmm = match self.conn.connect(&new) {
            Ok(v) => v,
            Err(e) => {
                return self.not_swapped(key, format!("VM {to}'s QMP {}: {e}", new.qmp.display()))
            }
        };
        marks[0] = Instant::now();
        // 1. The lease (never forced: the module's idle verdict stands).
        if let Err(e) = self.dev.swap(bdf, from, to, false) {
            let why = format!(
                "VDS_IOC_SWAP {vf} VM {from} -> VM {to}: {e} ({})",
                vd_sys::sriov::swap_errno_hint(e)
            );
            if e == Errno::EAGAIN || e == Errno::ENOENT || e == Errno::ESRCH {
                info!("SR-IOV: not reassigning: {why}");
                return Outcome::NotSwapped(why);
            }
            return self.not_swapped(key, why);
        }
        self.held.remove(&(bdf, from));
        info!(
            vf = %vf, from, to,
            "SR-IOV: step 1/4: lease of {vf} swapped from VM {from} (idle: {} B/s, held {} ms) to VM {to} (waited {} ms)",
            h.rate_bps, h.age_ms, w.age_ms
        );
        marks[1] = Instant::now();
        // 2. Out of the old holder.
        if let Err(e) = old_vmm.detach_vf(&old.vf_device, self.unplug_timeout) {
            error!(vf = %vf, "SR-IOV: step 2/4 failed: device_del {} on VM {from} ({}): {e}; rolling back", old.vf_device, old.qmp.display());
            if matches!(e, VmmError::Timeout(..)) {
                warn!("SR-IOV: VM {from}'s guest did not release {vf}: QEMU may still remove it later (device_del stays pending)");
            }
            return self.rollback(key, &old, None, format!("device_del on VM {from}: {e}"));
        }
        info!(vf = %vf, "SR-IOV: step 2/4: device_del {} done on VM {from} (DEVICE_DELETED)", old.vf_device);
        marks[2] = Instant::now();
        // 3. The old holder's guest falls back to its standby NIC.
        if let Some(nic) = &old.standby_nic {
            if let Err(e) = old_vmm.set_link(nic, true) {
                error!(vf = %vf, "SR-IOV: step 3/4 failed: set_link {nic} up on VM {from}: {e}; rolling back");
                return self.rollback(
                    key,
                    &old,
                    Some(&mut *old_vmm),
                    format!("set_link {nic} up on VM {from}: {e}"),
                );
            }
            info!("SR-IOV: step 3/4: set_link {nic} up on VM {from} (its guest falls back to the standby NIC)");
            // The switch in front of the VMs still sends VM {from}'s frames to the VF: QEMU
            // announces the guest's MAC on the standby NIC (best effort: the guest's own next
            // frame teaches the switch too).
            match old_vmm.announce(nic) {
                Ok(()) => info!("SR-IOV: step 3/4: announce-self on {nic} of VM {from}"),
                Err(e) => warn!("SR-IOV: step 3/4: announce-self on {nic} of VM {from}: {e} (the switch learns the new path from the guest's next frame)"),
            }
        } else {
            info!("SR-IOV: step 3/4: VM {from} has no standby_nic configured: no link to bring up");
        }
        marks[3] = Instant::now();
        // 4. Into the new holder, with the MAC of its standby NIC (net_failover pairs by MAC).
        match self.give_standby_mac(&mut *new_vmm, &new, &vf) {
            Ok(Some(m)) => info!(
                "SR-IOV: step 4/4: {vf}'s MAC is now {} (VM {to}'s {})",
                mac_string(&m),
                new.standby_nic.as_deref().unwrap_or_default()
            ),
            Ok(None) => {}
            Err(why) => {
                error!(vf = %vf, "SR-IOV: step 4/4 failed: {why}; rolling back");
                return self.rollback(key, &old, Some(&mut *old_vmm), why);
            }
        }
        marks[4] = Instant::now();
        let d = vf_device(&new, &vf);
        if let Err(e) = new_vmm.attach_vf(&d) {
            error!(vf = %vf, "SR-IOV: step 4/4 failed: device_add vfio-pci host={vf} id={} on VM {to} ({}): {e}; rolling back", d.id, new.qmp.display());
            return self.rollback(
                key,
                &old,
                Some(&mut *old_vmm),
                format!("device_add on VM {to}: {e}"),
            );
        }
        info!(
            vf = %vf, from, to,
            "SR-IOV: step 4/4: device_add vfio-pci host={vf} id={}{} on VM {to}; reassignment of {vf} from VM {from} to VM {to} done in {} ms",
            d.id,
            d.failover_pair_id.as_ref().map_or(String::new(), |p| format!(" failover_pair_id={p}")),
            t0.elapsed().as_millis()
        );
        marks[5] = Instant::now();
        let ms = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64() * 1e3;
        self.view.last_move = Some(MoveTiming {
            vf: vf.clone(),
            from_vm: from,
            to_vm: to,
            decided_unix_us: decided
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            connect_ms: ms(t0, marks[0]),
            lease_ms: ms(marks[0], marks[1]),
            unplug_ms: ms(marks[1], marks[2]),
            standby_ms: ms(marks[2], marks[3]),
            mac_ms: ms(marks[3], marks[4]),
            plug_ms: ms(marks[4], marks[5]),
            total_ms: ms(t0, marks[5]),
        });
        self.view.reassignments_total += 1;
        self.skip_logged.remove(&key);
        self.note(format!(
            "{vf}: VM {from} -> VM {to} in {} ms",
            t0.elapsed().as_millis()
        ));
        Outcome::Moved
    }

    fn not_swapped(&mut self, key: (u32, u64, u64), why: String) -> Outcome {
        let (bdf, from, to) = key;
        warn!("SR-IOV: not reassigning {} from VM {from} to VM {to}: {why}; nothing moved; next try in {} ms", bdf_name(bdf), self.retry.as_millis());
        self.backoff.insert(key, Instant::now());
        Outcome::NotSwapped(why)
    }

    /// Puts the VF back into the old holder (when it was unplugged: `replug`) and the lease back.
    fn rollback(
        &mut self,
        key: (u32, u64, u64),
        old: &VmConfig,
        replug: Option<&mut dyn Vmm>,
        why: String,
    ) -> Outcome {
        let (bdf, from, to) = key;
        let vf = bdf_name(bdf);
        self.view.failures_total += 1;
        self.backoff.insert(key, Instant::now());
        let mut bad = vec![];
        if let Some(v) = replug {
            let d = vf_device(old, &vf);
            // The VF may carry the new holder's MAC by now: the old holder's again.
            if let Err(e) = self.give_standby_mac(v, old, &vf) {
                error!("SR-IOV: rollback: {vf}'s MAC back to VM {from}'s: {e}");
                bad.push(format!("MAC back to VM {from}'s: {e}"));
            }
            match v.attach_vf(&d) {
                Ok(()) => info!(
                    "SR-IOV: rollback: {vf} plugged back into VM {from} (device_add id={})",
                    d.id
                ),
                Err(e) => {
                    error!("SR-IOV: rollback: device_add {vf} back into VM {from} failed: {e}");
                    bad.push(format!("replug into VM {from}: {e}"));
                }
            }
        }
        match self.dev.wait_for_vf(from) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => warn!("SR-IOV: rollback: VDS_IOC_WAIT for VM {from}: {e}"),
        }
        match self.dev.swap(bdf, to, from, true) {
            Ok(()) => {
                self.held.insert((bdf, from));
                info!("SR-IOV: rollback: lease of {vf} back with VM {from} (held by vdd's open file on its behalf: it ends if vdd stops)");
                match self.dev.wait_for_vf(to) {
                    Ok(()) => {
                        info!("SR-IOV: rollback: VM {to} waits for a VF again (through vdd's file)")
                    }
                    Err(e) => {
                        warn!("SR-IOV: rollback: VDS_IOC_WAIT for VM {to}: {e}: it no longer waits")
                    }
                }
            }
            Err(e) => {
                error!("SR-IOV: rollback: VDS_IOC_SWAP {vf} back from VM {to} to VM {from}: {e}; the module says VM {to} holds it");
                bad.push(format!("lease back to VM {from}: {e}"));
            }
        }
        if bad.is_empty() {
            warn!("SR-IOV: reassignment of {vf} from VM {from} to VM {to} failed ({why}) and was rolled back; next try in {} ms", self.retry.as_millis());
            self.note(format!(
                "{vf}: VM {from} -> VM {to} failed ({why}), rolled back"
            ));
            Outcome::RolledBack(why)
        } else {
            self.view.rollback_failures_total += 1;
            error!("SR-IOV: reassignment of {vf} from VM {from} to VM {to} failed ({why}) and the rollback failed too ({}): check `vdctl sriov list` and the VMs", bad.join("; "));
            self.note(format!(
                "{vf}: VM {from} -> VM {to} failed ({why}); ROLLBACK FAILED ({})",
                bad.join("; ")
            ));
            Outcome::RollbackFailed(format!("{why}; {}", bad.join("; ")))
        }
    }

    /// A leased VF disappeared: unplug it from its holder's QEMU, bring the standby NIC up.
    fn revoked(&mut self, e: &VdsEvent) {
        if !self.act {
            return;
        }
        let Some(vm) = self.vms.get(&e.vm_id).cloned() else {
            warn!(
                "SR-IOV: VM {} lost {} but has no [[vm]] entry: nothing to tell its VMM",
                e.vm_id,
                bdf_name(e.bdf)
            );
            return;
        };
        let r = self.conn.connect(&vm).and_then(|mut v| {
            v.detach_vf(&vm.vf_device, self.unplug_timeout)?;
            if let Some(n) = &vm.standby_nic {
                v.set_link(n, true)?;
            }
            Ok(())
        });
        match r {
            Ok(()) => info!(
                "SR-IOV: VM {}: removed device {} of the vanished VF{}",
                e.vm_id,
                vm.vf_device,
                vm.standby_nic
                    .as_ref()
                    .map_or(String::new(), |n| format!(", {n} up"))
            ),
            Err(err) => warn!(
                "SR-IOV: VM {}: removing device {} of the vanished VF: {err}",
                e.vm_id, vm.vf_device
            ),
        }
    }

    /// Gives VF `vf` the MAC of `vm`'s standby NIC, read from its QEMU (net_failover in the guest
    /// pairs the two by MAC). `Ok(None)`: `vm` has no standby NIC, nothing to set.
    fn give_standby_mac(
        &mut self,
        v: &mut dyn Vmm,
        vm: &VmConfig,
        vf: &str,
    ) -> Result<Option<[u8; 6]>, String> {
        let Some(nic) = &vm.standby_nic else {
            return Ok(None);
        };
        let m = v
            .nic_mac(nic)
            .map_err(|e| format!("qom-get {nic}.mac on VM {}: {e}", vm.id))?;
        self.dev
            .set_vf_mac(vf, m)
            .map_err(|e| format!("setting {vf}'s MAC to {}: {e}", mac_string(&m)))?;
        Ok(Some(m))
    }

    /// Makes the configured VMs' QEMUs agree with the module's leases: what a vdd killed in the
    /// middle of a reassignment left behind (the lease moves at step 1; the VF may still be in
    /// the old holder's QEMU, or in none). For every passed-through VF leased to a VM: it is
    /// unplugged from any other configured VM's QEMU that still has it (whose standby NIC then
    /// comes up and is announced), and plugged into its holder's QEMU if that has no VF device
    /// (with the holder's standby MAC). A QEMU that does not answer is left out; a VF another
    /// guest does not release is not plugged anywhere else (logged). Returns what it did.
    pub fn reconcile(&mut self) -> Vec<String> {
        let mut done = vec![];
        if !self.act {
            return done;
        }
        let vfs = match self.dev.vfs() {
            Ok(v) => v,
            Err(e) => {
                warn!("SR-IOV: recovery: VDS_IOC_VF: {e}");
                return done;
            }
        };
        let leased: Vec<(String, u64)> = vfs
            .iter()
            .filter(|v| {
                v.vm_id != 0 && v.phase == vds_phase::LEASED && v.flags & vds_vf::KEEP_HOST == 0
            })
            .map(|v| (bdf_name(v.bdf), v.vm_id))
            .collect();
        if leased.is_empty() {
            return done;
        }
        // What each configured VM's QEMU has plugged in as its VF device.
        let mut vmms: BTreeMap<u64, Box<dyn Vmm>> = BTreeMap::new();
        let mut has: BTreeMap<u64, Option<String>> = BTreeMap::new();
        for (id, vm) in &self.vms {
            match self.conn.connect(vm) {
                Ok(mut v) => match v.vf_host(&vm.vf_device) {
                    Ok(h) => {
                        has.insert(*id, h);
                        vmms.insert(*id, v);
                    }
                    Err(e) => warn!(
                        "SR-IOV: recovery: VM {id}: qom-get {}.host: {e}",
                        vm.vf_device
                    ),
                },
                Err(e) => info!(
                    "SR-IOV: recovery: VM {id}'s QMP {} does not answer ({e}): left out",
                    vm.qmp.display()
                ),
            }
        }
        for (vf, holder) in leased {
            let mut blocked = false;
            for (id, h) in has.iter_mut() {
                if *id == holder || h.as_deref() != Some(vf.as_str()) {
                    continue;
                }
                let (Some(vm), Some(v)) = (self.vms.get(id), vmms.get_mut(id)) else {
                    continue;
                };
                warn!("SR-IOV: recovery: {vf} is leased to VM {holder} but still in VM {id}'s QEMU (an interrupted reassignment): device_del {}", vm.vf_device);
                match v.detach_vf(&vm.vf_device, self.unplug_timeout) {
                    Ok(()) => {
                        *h = None;
                        if let Some(n) = &vm.standby_nic {
                            if let Err(e) = v.set_link(n, true).and_then(|()| v.announce(n)) {
                                warn!("SR-IOV: recovery: VM {id}'s {n} up and announced: {e}");
                            }
                        }
                        info!("SR-IOV: recovery: {vf} removed from VM {id}");
                        done.push(format!("{vf} removed from VM {id}"));
                    }
                    Err(e) => {
                        error!("SR-IOV: recovery: VM {id}'s guest did not release {vf} ({e}): it is not plugged into VM {holder}, which holds its lease; check the VMs");
                        blocked = true;
                    }
                }
            }
            if blocked {
                continue;
            }
            let Some(hv) = self.vms.get(&holder).cloned() else {
                continue;
            };
            match has.get(&holder) {
                None => continue,                      // its QEMU did not answer (logged above)
                Some(Some(h)) if *h == vf => continue, // where it belongs
                Some(Some(other)) => {
                    warn!("SR-IOV: recovery: VM {holder} holds the lease of {vf} but its QEMU has {other} as {}: left alone", hv.vf_device);
                    continue;
                }
                Some(None) => {}
            }
            let Some(v) = vmms.get_mut(&holder) else {
                continue;
            };
            if let Err(e) = self.give_standby_mac(&mut **v, &hv, &vf) {
                error!("SR-IOV: recovery: {vf}'s MAC for VM {holder}: {e}: not plugged");
                continue;
            }
            let d = vf_device(&hv, &vf);
            match v.attach_vf(&d) {
                Ok(()) => {
                    info!("SR-IOV: recovery: {vf} plugged into VM {holder}, which holds its lease (device_add id={})", d.id);
                    done.push(format!("{vf} plugged into VM {holder}"));
                    has.insert(holder, Some(vf));
                }
                Err(e) => error!("SR-IOV: recovery: device_add {vf} into VM {holder}: {e}"),
            }
        }
        done
    }

    /// Re-reads the VFs and the module's policy into [`Self::view`].
    pub fn refresh(&mut self) -> Result<(), Errno> {
        let vfs = self.dev.vfs()?;
        self.view.vfs = vfs
            .iter()
            .map(|v| VfView {
                vf: bdf_name(v.bdf),
                vm_id: (v.vm_id != 0).then_some(v.vm_id),
                rate_bps: (v.flags & vds_vf::HAS_RATE != 0).then_some(v.rate_bps),
                idle: v.flags & vds_vf::IDLE != 0,
                configured: self.vms.contains_key(&v.vm_id),
            })
            .collect();
        if let Ok(p) = self.dev.policy() {
            self.view.module_policy = Some([
                p.threshold_bps,
                p.hysteresis_bps,
                p.window_ms as u64,
                p.min_hold_ms as u64,
            ]);
        }
        Ok(())
    }
}

/// VF `vf` as `vm`'s QEMU gets it (`device_add vfio-pci`).
fn vf_device(vm: &VmConfig, vf: &str) -> VfDevice {
    VfDevice {
        id: vm.vf_device.clone(),
        host: vf.to_owned(),
        failover_pair_id: vm.standby_nic.clone(),
        bus: vm.vf_bus.clone(),
    }
}

/// Runs the policy on its own thread until `stop`: opens the device (retrying every 5 s, one log
/// line while it is missing), reacts to events at once, re-reads VFs and proposals every second,
/// and publishes its view into `out`.
pub fn spawn(
    cfg: Config,
    out: Arc<Mutex<SriovView>>,
    stop: &'static AtomicBool,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("vdd-sriov".into()).spawn(move || {
        let dev = cfg.sriov.device.clone();
        let publish = |v: &SriovView| *out.lock().unwrap_or_else(|p| p.into_inner()) = v.clone();
        let mut last_err: Option<String> = None;
        let mut totals = SriovView::default();
        while !stop.load(Ordering::SeqCst) {
            let m = match Manager::open_path(&dev) {
                Ok(m) => m,
                Err(e) => {
                    let why = if e.kind() == std::io::ErrorKind::NotFound {
                        format!("disabled: {}: no such device (vd_sriov_mgr is not loaded)", dev.display())
                    } else {
                        format!("disabled: {}: {e}", dev.display())
                    };
                    if last_err.as_deref() != Some(why.as_str()) {
                        info!("SR-IOV policy {why}; the rest of vdd runs, the device is retried every 5 s");
                        totals.state = why.clone();
                        totals.vfs.clear();
                        publish(&totals);
                        last_err = Some(why);
                    }
                    for _ in 0..50 {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    continue;
                }
            };
            last_err = None;
            let mut r = Reassigner::new(m, QmpConnector, &cfg);
            // Keep the counters across a reopen.
            r.view = SriovView { state: "ok".into(), ..totals.clone() };
            let _ = r.refresh();
            info!(
                "SR-IOV policy up on {}: {} VF(s); module policy {}; {} VMM(s) configured ([[vm]]: {}){}",
                dev.display(),
                r.view.vfs.len(),
                r.view.module_policy.map_or("?".into(), |p| format!("threshold {} B/s, hysteresis {} B/s, window {} ms, min hold {} ms", p[0], p[1], p[2], p[3])),
                cfg.vms.len(),
                cfg.vms.iter().map(|v| format!("VM {} {}", v.id, v.qmp.display())).collect::<Vec<_>>().join(", "),
                if cfg.sriov.enabled { "" } else { "; [sriov] enabled = false: reporting only" }
            );
            // What a vdd killed mid-reassignment left half done, then proposals pending from
            // before this start (crash-safe: the module keeps both the leases and the proposals).
            let fixed = r.reconcile();
            if fixed.is_empty() {
                info!("SR-IOV: recovery: every VF is where its lease is (nothing to finish)");
            } else {
                info!("SR-IOV: recovery done: {}", fixed.join("; "));
            }
            r.consider();
            publish(&r.view);
            let mut last_scan = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                match r.dev.events(Duration::from_millis(200)) {
                    Ok(evs) => {
                        if !evs.is_empty() {
                            r.handle_events(&evs);
                            let _ = r.refresh();
                            publish(&r.view);
                        }
                    }
                    Err(e) => {
                        warn!("SR-IOV: reading events on {}: {e}; reopening", dev.display());
                        break;
                    }
                }
                if last_scan.elapsed() >= Duration::from_secs(1) {
                    last_scan = Instant::now();
                    r.consider();
                    if let Err(e) = r.refresh() {
                        warn!("SR-IOV: VDS_IOC_VF: {e}");
                    }
                    publish(&r.view);
                }
            }
            totals = r.view.clone();
            publish(&totals);
            if !r.held.is_empty() {
                warn!(
                    "SR-IOV: closing {}: the lease(s) vdd held after a rollback end now: {}",
                    dev.display(),
                    r.held.iter().map(|(b, vm)| format!("{} of VM {vm}", bdf_name(*b))).collect::<Vec<_>>().join(", ")
                );
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakeqmp::{self, FakeOpts, Journal};
    use crate::placer::tests::tmpdir;
    use std::collections::VecDeque;

    /// The module as the policy sees it: a lease table, waiters (owned by "vdd" or a VMM),
    /// candidates computed from an `idle` set, and scripted events. Every swap is marked in the
    /// shared journal.
    struct FakeDev {
        j: Journal,
        leases: BTreeMap<u32, u64>,
        idle: BTreeSet<u32>,
        waiters: Vec<u64>,
        queue: VecDeque<VdsEvent>,
        swaps: Vec<(u32, u64, u64, bool)>,
    }

    impl FakeDev {
        fn new(j: Journal) -> Self {
            Self {
                j,
                leases: BTreeMap::new(),
                idle: BTreeSet::new(),
                waiters: vec![],
                queue: VecDeque::new(),
                swaps: vec![],
            }
        }
    }

    impl SriovDev for FakeDev {
        fn events(&mut self, _t: Duration) -> Result<Vec<VdsEvent>, Errno> {
            Ok(self.queue.drain(..).collect())
        }
        fn candidates(&mut self) -> Result<Vec<VdsCandidate>, Errno> {
            let mut c: Vec<VdsCandidate> = self
                .idle
                .iter()
                .filter_map(|b| {
                    self.leases.get(b).map(|vm| VdsCandidate {
                        kind: vds_cand::HOLDER,
                        bdf: *b,
                        vm_id: *vm,
                        rate_bps: 10,
                        age_ms: 9000,
                        ..Default::default()
                    })
                })
                .collect();
            c.extend(self.waiters.iter().map(|w| VdsCandidate {
                kind: vds_cand::WAITER,
                vm_id: *w,
                age_ms: 3000,
                ..Default::default()
            }));
            Ok(c)
        }
        fn swap(&mut self, bdf: u32, from: u64, to: u64, force: bool) -> Result<(), Errno> {
            self.swaps.push((bdf, from, to, force));
            if self.leases.get(&bdf) != Some(&from) {
                return Err(Errno::ESRCH);
            }
            let wi = self
                .waiters
                .iter()
                .position(|w| *w == to)
                .ok_or(Errno::ENOENT)?;
            if !force && !self.idle.contains(&bdf) {
                return Err(Errno::EAGAIN);
            }
            self.waiters.remove(wi);
            self.leases.insert(bdf, to);
            self.idle.remove(&bdf);
            self.j.mark(&format!(
                "swap {} {from}->{to}{}",
                bdf_name(bdf),
                if force { " force" } else { "" }
            ));
            Ok(())
        }
        fn wait_for_vf(&mut self, vm: u64) -> Result<(), Errno> {
            if self.leases.values().any(|v| *v == vm) || self.waiters.contains(&vm) {
                return Err(Errno::EEXIST);
            }
            self.waiters.push(vm);
            Ok(())
        }
        fn vfs(&mut self) -> Result<Vec<VdsVf>, Errno> {
            Ok(self
                .leases
                .iter()
                .map(|(b, vm)| VdsVf {
                    bdf: *b,
                    vm_id: *vm,
                    phase: vds_phase::LEASED,
                    flags: if self.idle.contains(b) {
                        vds_vf::IDLE
                    } else {
                        0
                    },
                    ..Default::default()
                })
                .collect())
        }
        fn set_vf_mac(&mut self, vf: &str, mac: [u8; 6]) -> std::io::Result<()> {
            self.j.mark(&format!("vf_mac {vf} {}", mac_string(&mac)));
            Ok(())
        }
        fn policy(&mut self) -> Result<VdsPolicy, Errno> {
            Ok(VdsPolicy {
                threshold_bps: 20000,
                hysteresis_bps: 10000,
                window_ms: 1000,
                min_hold_ms: 500,
                sample_ms: 100,
                flags: 0,
            })
        }
    }

    const VF: u32 = 0x0182; // 0000:01:10.2

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs `f` with the log lines (of this thread) captured.
    fn logs<T>(f: impl FnOnce() -> T) -> (T, String) {
        let c = Capture::default();
        let c2 = c.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || c2.clone())
            .with_ansi(false)
            .finish();
        let t = tracing::subscriber::with_default(sub, f);
        let text = String::from_utf8(c.0.lock().unwrap().clone()).unwrap();
        (t, text)
    }

    struct Setup {
        j: Journal,
        cfg: Config,
        _dir: crate::placer::tests::TmpDir,
    }

    /// Fake QEMUs for VM 1 and VM 2 (options per VM), a config naming them (and VM 3 not).
    fn setup(opts1: FakeOpts, opts2: FakeOpts) -> Setup {
        let d = tmpdir("sriov");
        let j = Journal::new();
        let mut cfg = Config::default();
        cfg.sriov.unplug_timeout_ms = 500;
        cfg.sriov.retry_ms = 60_000;
        for (id, o) in [(1u64, opts1), (2, opts2)] {
            let p = d.join(format!("vm{id}.qmp"));
            fakeqmp::spawn(&p, &format!("vm{id}"), j.clone(), o).unwrap();
            cfg.vms.push(VmConfig {
                id,
                qmp: p,
                vf_device: format!("vf-of-{id}"),
                standby_nic: Some(format!("net{id}")),
                vf_bus: Some(format!("rp{id}")),
            });
        }
        cfg.validate().unwrap();
        Setup { j, cfg, _dir: d }
    }

    fn proposal(dev: &mut FakeDev, holder: u64, waiter: u64) {
        dev.leases.insert(VF, holder);
        dev.idle.insert(VF);
        dev.waiters.push(waiter);
        dev.queue.push_back(VdsEvent {
            seq: 1,
            kind: vds_event::CANDIDATE,
            bdf: VF,
            vm_id: holder,
            ..Default::default()
        });
    }

    #[test]
    fn candidate_event_swaps_then_unplugs_then_plugs() {
        let s = setup(FakeOpts::default(), FakeOpts::default());
        let mut dev = FakeDev::new(s.j.clone());
        proposal(&mut dev, 1, 2);
        let mut r = Reassigner::new(dev, QmpConnector, &s.cfg);
        let evs = r.dev.events(Duration::ZERO).unwrap();
        let out = r.handle_events(&evs);
        assert_eq!(out, vec![Outcome::Moved]);
        assert_eq!(
            s.j.commands(),
            [
                "- swap 0000:01:10.2 1->2",
                "vm1 device_del",
                "vm1 set_link",
                "vm1 announce-self",
                "vm2 qom-get",
                "- vf_mac 0000:01:10.2 52:54:00:76:64:01",
                "vm2 device_add"
            ],
            "order: swap, unplug from the old holder, its standby link up and announced, the VF \
             gets the new holder's standby MAC, plug into the new one"
        );
        let e = s.j.entries();
        let get = |vm: &str, cmd: &str| {
            e.iter()
                .find(|v| v["vm"] == vm && v["execute"] == cmd)
                .unwrap()["arguments"]
                .clone()
        };
        assert_eq!(
            get("vm1", "device_del"),
            serde_json::json!({"id": "vf-of-1"})
        );
        assert_eq!(
            get("vm1", "set_link"),
            serde_json::json!({"name": "net1", "up": true})
        );
        assert_eq!(
            get("vm2", "device_add"),
            serde_json::json!({"driver": "vfio-pci", "host": "0000:01:10.2", "id": "vf-of-2", "bus": "rp2", "failover_pair_id": "net2"})
        );
        assert_eq!(
            get("vm2", "qom-get"),
            serde_json::json!({"path": "/machine/peripheral/net2", "property": "mac"})
        );
        assert_eq!(
            get("vm1", "announce-self")["interfaces"],
            serde_json::json!(["net1"])
        );
        assert_eq!(r.dev.leases[&VF], 2);
        assert_eq!(r.dev.swaps, [(VF, 1, 2, false)], "the swap is never forced");
        assert_eq!(r.view.reassignments_total, 1);
        let m = r.view.last_move.clone().expect("a completed move is timed");
        assert_eq!((m.vf.as_str(), m.from_vm, m.to_vm), ("0000:01:10.2", 1, 2));
        let steps = m.connect_ms + m.lease_ms + m.unplug_ms + m.standby_ms + m.mac_ms + m.plug_ms;
        assert!((steps - m.total_ms).abs() < 0.01, "the steps add up: {m:?}");
        assert!(
            m.decided_unix_us > 1_600_000_000_000_000,
            "wall clock: {m:?}"
        );
        r.refresh().unwrap();
        assert_eq!(r.view.vfs[0].vm_id, Some(2));
        assert!(r.view.vfs[0].configured);
        assert_eq!(r.view.module_policy, Some([20000, 10000, 1000, 500]));
    }

    #[test]
    fn restart_finishes_an_interrupted_reassignment() {
        // vdd was killed after the swap (step 1): VM 2 holds the lease, the VF is still in VM 1.
        let o1 = FakeOpts::default();
        o1.devices
            .lock()
            .unwrap()
            .insert("vf-of-1".into(), bdf_name(VF));
        let o2 = FakeOpts::default();
        let devs2 = o2.devices.clone();
        let s = setup(o1, o2);
        let mut dev = FakeDev::new(s.j.clone());
        dev.leases.insert(VF, 2);
        let mut r = Reassigner::new(dev, QmpConnector, &s.cfg);
        let done = r.reconcile();
        assert_eq!(
            done,
            [
                "0000:01:10.2 removed from VM 1",
                "0000:01:10.2 plugged into VM 2"
            ]
        );
        assert_eq!(
            s.j.commands(),
            [
                "vm1 qom-get",
                "vm2 qom-get",
                "vm1 device_del",
                "vm1 set_link",
                "vm1 announce-self",
                "vm2 qom-get",
                "- vf_mac 0000:01:10.2 52:54:00:76:64:01",
                "vm2 device_add"
            ]
        );
        assert_eq!(devs2.lock().unwrap().get("vf-of-2"), Some(&bdf_name(VF)));
        // Run again: everything is where the leases say, nothing is sent but the queries.
        let n = s.j.commands().len();
        assert!(r.reconcile().is_empty());
        assert_eq!(&s.j.commands()[n..], ["vm1 qom-get", "vm2 qom-get"]);
    }

    #[test]
    fn restart_does_not_plug_a_vf_another_guest_keeps() {
        let o1 = FakeOpts {
            stuck: vec!["vf-of-1".into()],
            ..Default::default()
        };
        o1.devices
            .lock()
            .unwrap()
            .insert("vf-of-1".into(), bdf_name(VF));
        let s = setup(o1, FakeOpts::default());
        let mut dev = FakeDev::new(s.j.clone());
        dev.leases.insert(VF, 2);
        let mut r = Reassigner::new(dev, QmpConnector, &s.cfg);
        let (done, log) = logs(|| r.reconcile());
        assert!(done.is_empty());
        assert_eq!(
            s.j.commands(),
            ["vm1 qom-get", "vm2 qom-get", "vm1 device_del"]
        );
        assert!(
            log.contains("VM 1's guest did not release 0000:01:10.2"),
            "{log}"
        );
    }

    #[test]
    fn device_add_failure_rolls_everything_back() {
        let s = setup(
            FakeOpts::default(),
            FakeOpts {
                fail_device_add: true,
                ..Default::default()
            },
        );
        let mut dev = FakeDev::new(s.j.clone());
        proposal(&mut dev, 1, 2);
        let mut r = Reassigner::new(dev, QmpConnector, &s.cfg);
        let evs = r.dev.events(Duration::ZERO).unwrap();
        let out = r.handle_events(&evs);
        assert!(
            matches!(&out[..], [Outcome::RolledBack(w)] if w.contains("device_add on VM 2")),
            "{out:?}"
        );
        assert_eq!(
            s.j.commands(),
            [
                "- swap 0000:01:10.2 1->2",
                "vm1 device_del",
                "vm1 set_link",
                "vm1 announce-self",
                "vm2 qom-get",
                "- vf_mac 0000:01:10.2 52:54:00:76:64:01",
                "vm2 device_add",
                "vm1 qom-get",
                "- vf_mac 0000:01:10.2 52:54:00:76:64:01",
                "vm1 device_add",
                "- swap 0000:01:10.2 2->1 force"
            ],
            "after the failed plug: the VF goes back into VM 1 with VM 1's MAC, then the lease"
        );
        let back =
            s.j.entries()
                .into_iter()
                .rfind(|v| v["vm"] == "vm1" && v["execute"] == "device_add")
                .unwrap();
        assert_eq!(back["arguments"]["id"], "vf-of-1");
        assert_eq!(back["arguments"]["failover_pair_id"], "net1");
        assert_eq!(r.dev.leases[&VF], 1, "the lease is back with VM 1");
        assert_eq!(r.dev.waiters, [2], "VM 2 waits again");
        assert_eq!(
            (
                r.view.failures_total,
                r.view.rollback_failures_total,
                r.view.reassignments_total
            ),
            (1, 0, 0)
        );
        // The same proposal is not retried before retry_ms.
        r.dev.idle.insert(VF);
        assert_eq!(r.consider(), [Outcome::Skipped("retry later".into())]);
        assert_eq!(s.j.commands().len(), 11, "nothing more was sent");
    }

    #[test]
    fn stuck_unplug_rolls_the_lease_back_without_touching_the_new_vm() {
        let s = setup(
            FakeOpts {
                stuck: vec!["vf-of-1".into()],
                ..Default::default()
            },
            FakeOpts::default(),
        );
        let mut dev = FakeDev::new(s.j.clone());
        proposal(&mut dev, 1, 2);
        let mut r = Reassigner::new(dev, QmpConnector, &s.cfg);
        let out = r.consider();
        assert!(
            matches!(&out[..], [Outcome::RolledBack(w)] if w.contains("device_del")),
            "{out:?}"
        );
        assert_eq!(
            s.j.commands(),
            [
                "- swap 0000:01:10.2 1->2",
                "vm1 device_del",
                "- swap 0000:01:10.2 2->1 force"
            ]
        );
        assert_eq!(r.dev.leases[&VF], 1);
    }

    #[test]
    fn set_link_failure_replugs_and_rolls_back() {
        let s = setup(
            FakeOpts {
                fail_set_link: true,
                ..Default::default()
            },
            FakeOpts::default(),
        );
        let mut dev = FakeDev::new(s.j.clone());
        proposal(&mut dev, 1, 2);
        let mut r = Reassigner::new(dev, QmpConnector, &s.cfg);
        let out = r.consider();
        assert!(matches!(&out[..], [Outcome::RolledBack(_)]), "{out:?}");
        assert_eq!(
            s.j.commands(),
            [
                "- swap 0000:01:10.2 1->2",
                "vm1 device_del",
                "vm1 set_link",
                "vm1 qom-get",
                "- vf_mac 0000:01:10.2 52:54:00:76:64:01",
                "vm1 device_add",
                "- swap 0000:01:10.2 2->1 force"
            ]
        );
    }

    #[test]
    fn vm_without_qmp_config_is_skipped() {
        let s = setup(FakeOpts::default(), FakeOpts::default());
        let mut dev = FakeDev::new(s.j.clone());
        proposal(&mut dev, 1, 3); // VM 3 has no [[vm]]
        let mut r = Reassigner::new(dev, QmpConnector, &s.cfg);
        let evs = r.dev.events(Duration::ZERO).unwrap();
        let (out, log) = logs(|| r.handle_events(&evs));
        assert!(
            matches!(&out[..], [Outcome::Skipped(w)] if w.contains("VM 3 has no [[vm]] entry")),
            "{out:?}"
        );
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("not reassigning"))
            .collect();
        assert_eq!(lines.len(), 1, "{log}");
        assert!(
            lines[0].contains("WARN")
                && lines[0].contains("VM 3 has no [[vm]] entry")
                && lines[0].contains("stays with VM 1"),
            "{log}"
        );
        assert!(r.dev.swaps.is_empty(), "no swap");
        assert!(s.j.commands().is_empty(), "no QMP command");
        assert_eq!(r.view.skipped_total, 1);
        // Logged (and counted) once, not at every look.
        let (_, log) = logs(|| r.consider());
        assert!(!log.contains("not reassigning"), "{log}");
        assert_eq!(r.view.skipped_total, 1);
        assert_eq!(r.dev.leases[&VF], 1);
    }

    #[test]
    fn unreachable_vmm_means_no_swap() {
        let mut s = setup(FakeOpts::default(), FakeOpts::default());
        s.cfg.vms[1].qmp = s._dir.join("nobody.qmp");
        let mut dev = FakeDev::new(s.j.clone());
        proposal(&mut dev, 1, 2);
        let mut r = Reassigner::new(dev, QmpConnector, &s.cfg);
        let out = r.consider();
        assert!(
            matches!(&out[..], [Outcome::NotSwapped(w)] if w.contains("VM 2's QMP")),
            "{out:?}"
        );
        assert!(r.dev.swaps.is_empty());
        assert!(s.j.commands().is_empty());
    }

    #[test]
    fn busy_holder_is_not_forced() {
        let s = setup(FakeOpts::default(), FakeOpts::default());
        let mut dev = FakeDev::new(s.j.clone());
        proposal(&mut dev, 1, 2);
        let mut r = Reassigner::new(dev, QmpConnector, &s.cfg);
        // The holder became busy between the proposal and the swap: the module says EAGAIN.
        let h = r.dev.candidates().unwrap();
        r.dev.idle.clear();
        let out = r.reassign(&h[0], &h[1]);
        assert!(
            matches!(&out, Outcome::NotSwapped(w) if w.contains("EAGAIN")),
            "{out:?}"
        );
        assert_eq!(r.dev.leases[&VF], 1);
        assert!(s.j.commands().is_empty(), "no VMM touched");
    }

    #[test]
    fn disabled_policy_only_reports() {
        let mut s = setup(FakeOpts::default(), FakeOpts::default());
        s.cfg.sriov.enabled = false;
        let mut dev = FakeDev::new(s.j.clone());
        proposal(&mut dev, 1, 2);
        let mut r = Reassigner::new(dev, QmpConnector, &s.cfg);
        assert!(r.consider().is_empty());
        assert!(r.dev.swaps.is_empty());
    }

    #[test]
    fn revoked_vf_is_unplugged_and_the_link_comes_up() {
        let s = setup(FakeOpts::default(), FakeOpts::default());
        let dev = FakeDev::new(s.j.clone());
        let mut r = Reassigner::new(dev, QmpConnector, &s.cfg);
        r.handle_events(&[VdsEvent {
            kind: vds_event::REVOKED,
            bdf: VF,
            vm_id: 2,
            ..Default::default()
        }]);
        assert_eq!(s.j.commands(), ["vm2 device_del", "vm2 set_link"]);
    }

    #[test]
    fn missing_module_disables_the_policy_with_a_state_line() {
        static STOP: AtomicBool = AtomicBool::new(false);
        let mut cfg = Config::default();
        cfg.sriov.device = tmpdir("nosriov").join("vd_sriov");
        let out = Arc::new(Mutex::new(SriovView::default()));
        let h = spawn(cfg, out.clone(), &STOP).unwrap();
        let t = Instant::now();
        while out.lock().unwrap().state.is_empty() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let st = out.lock().unwrap().state.clone();
        assert!(
            st.starts_with("disabled:") && st.contains("vd_sriov_mgr is not loaded"),
            "{st}"
        );
        STOP.store(true, Ordering::SeqCst);
        h.join().unwrap();
    }
}
