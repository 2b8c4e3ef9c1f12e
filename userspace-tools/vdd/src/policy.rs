//! The placement policy: pure, driven by a clock and counters handed in by the caller, so the
//! daemon runs it on the real clock and the tests on a simulated one.
//!
//! Each [`Policy::tick`] takes one sample of every VM on the host (cumulative I/O counters and the
//! vCPU thread ids) and returns the [`Action`]s to take:
//! - a VM whose I/O rate over the sliding window is at or above `threshold` is placed on the driver
//!   cores, highest rate first, while fewer than `max_vms_on_driver_cores` VMs are there; a waiting
//!   VM whose rate beats the slowest placed VM's by more than `hysteresis` takes its slot;
//! - a placed VM whose rate stays under `threshold - hysteresis` for `hold_ms` is restored;
//! - a placed VM that disappears is restored (whatever threads of it are left);
//! - VMs whose vCPU threads were pinned by hand when first seen are left alone unless
//!   `manage_pinned` is set.
//!
//! Every action carries the numbers that caused it, for the log.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::config::PolicyConfig;

/// Cumulative I/O counters of one VM, as read from the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// KVM `io_exits` (port I/O exits), all vCPUs.
    pub io_exits: u64,
    /// KVM `mmio_exits`, all vCPUs.
    pub mmio_exits: u64,
    /// vd_evtchn requests consumed, all channels the VM's process kicks (`sources::io_owner`).
    pub evtchn_requests: u64,
    /// KVM's other VM exits: `exits` less halts, host interrupts, `io_exits` and `mmio_exits`.
    /// A guest whose I/O the kernel serves (virtio with ioeventfd: the doorbell is a fast MMIO
    /// exit that no other statistic counts) shows only here, beside its timer and APIC exits.
    #[serde(default)]
    pub other_exits: u64,
}

/// Per-second rates over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// The policy's measure: io_exits + mmio_exits + evtchn_requests + `other_exits_weight` x
    /// other_exits.
    pub total: f64,
    pub io_exits: f64,
    pub mmio_exits: f64,
    pub evtchn_requests: f64,
    #[serde(default)]
    pub other_exits: f64,
}

impl std::fmt::Display for Rates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0}/s (io_exits {:.0}/s, mmio_exits {:.0}/s, evtchn {:.0}/s, other exits {:.0}/s)",
            self.total, self.io_exits, self.mmio_exits, self.evtchn_requests, self.other_exits
        )
    }
}

/// One VM as seen in one sampling round.
#[derive(Debug, Clone, PartialEq)]
pub struct VmSample {
    /// The VMM's process id (the VM's identity).
    pub pid: u32,
    pub counters: Counters,
    /// vCPU thread ids.
    pub vcpus: Vec<u32>,
    /// Some vCPU thread (not placed by us) has an affinity other than the online CPUs.
    pub hand_pinned: bool,
}

/// Where a VM is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Where the scheduler and the operator put it.
    Normal,
    /// Its vCPU threads are on the driver cores (our doing).
    Placed,
}

/// Why a VM is being restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreCause {
    Cooled,
    Gone,
    Displaced,
    NotManaged,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Move these vCPU threads to the driver cores and shorten their slice.
    Place {
        pid: u32,
        vcpus: Vec<u32>,
        why: String,
    },
    /// Put every thread of this VM we changed back as it was.
    Restore {
        pid: u32,
        cause: RestoreCause,
        why: String,
    },
}

impl Action {
    pub fn pid(&self) -> u32 {
        match self {
            Action::Place { pid, .. } | Action::Restore { pid, .. } => *pid,
        }
    }
}

/// The policy's view of one VM.
#[derive(Debug, Clone)]
pub struct Vm {
    pub pid: u32,
    pub vcpus: Vec<u32>,
    pub placement: Placement,
    /// Pinned by hand when first seen with vCPU threads.
    pub hand_pinned: bool,
    pinned_known: bool,
    /// When the VM entered its placement.
    pub since: Duration,
    /// When its rate went under `threshold - hysteresis` (placed VMs only).
    pub cool_since: Option<Duration>,
    /// No placement attempt before this time (after a failed one).
    pub backoff_until: Option<Duration>,
    /// Rates over the window; `None` until two samples.
    pub rates: Option<Rates>,
    /// The last state change and the numbers behind it.
    pub last_change: String,
    /// Cumulative counters corrected for decreases (a destroyed channel takes its counts along).
    acc: Counters,
    last_raw: Option<Counters>,
    window: VecDeque<(Duration, Counters)>,
}

impl Vm {
    fn new(pid: u32, now: Duration) -> Self {
        Self {
            pid,
            vcpus: vec![],
            placement: Placement::Normal,
            hand_pinned: false,
            pinned_known: false,
            since: now,
            cool_since: None,
            backoff_until: None,
            rates: None,
            last_change: "first seen".into(),
            acc: Counters::default(),
            last_raw: None,
            window: VecDeque::new(),
        }
    }

    fn observe(&mut self, now: Duration, raw: Counters, window: Duration, other_weight: f64) {
        if let Some(prev) = self.last_raw {
            self.acc.io_exits += raw.io_exits.saturating_sub(prev.io_exits);
            self.acc.mmio_exits += raw.mmio_exits.saturating_sub(prev.mmio_exits);
            self.acc.evtchn_requests += raw.evtchn_requests.saturating_sub(prev.evtchn_requests);
            self.acc.other_exits += raw.other_exits.saturating_sub(prev.other_exits);
        }
        self.last_raw = Some(raw);
        self.window.push_back((now, self.acc));
        let start = now.saturating_sub(window);
        while self.window.len() > 2 && self.window[1].0 <= start {
            self.window.pop_front();
        }
        // The oldest kept sample is at most one sample older than the window start: the rate
        // covers the window (or all we have of it).
        self.rates = match (self.window.front(), self.window.back()) {
            (Some(&(t0, c0)), Some(&(t1, c1))) if t1 > t0 => {
                let dt = (t1 - t0).as_secs_f64();
                let r = |a: u64, b: u64| (b - a) as f64 / dt;
                let io = r(c0.io_exits, c1.io_exits);
                let mmio = r(c0.mmio_exits, c1.mmio_exits);
                let ev = r(c0.evtchn_requests, c1.evtchn_requests);
                let other = r(c0.other_exits, c1.other_exits);
                Some(Rates {
                    total: io + mmio + ev + other_weight * other,
                    io_exits: io,
                    mmio_exits: mmio,
                    evtchn_requests: ev,
                    other_exits: other,
                })
            }
            _ => None,
        };
    }

    /// Rate used for ranking: unmeasured VMs rank at 0, except placed ones, which keep their slot
    /// until measured.
    fn rank(&self, cfg: &PolicyConfig) -> f64 {
        match (self.rates, self.placement) {
            (Some(r), _) => r.total,
            (None, Placement::Placed) => cfg.threshold,
            (None, Placement::Normal) => 0.0,
        }
    }

    fn managed(&self, cfg: &PolicyConfig) -> bool {
        !self.hand_pinned || cfg.manage_pinned
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The policy state machine.
#[derive(Debug, Clone)]
pub struct Policy {
    cfg: PolicyConfig,
    vms: BTreeMap<u32, Vm>,
}

impl Policy {
    pub fn new(cfg: PolicyConfig) -> Self {
        Self {
            cfg,
            vms: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    /// New thresholds take effect at the next tick.
    pub fn set_config(&mut self, cfg: PolicyConfig) {
        self.cfg = cfg;
    }

    /// Every VM known, by pid.
    pub fn vms(&self) -> impl Iterator<Item = &Vm> {
        self.vms.values()
    }

    pub fn vm(&self, pid: u32) -> Option<&Vm> {
        self.vms.get(&pid)
    }

    /// After a restart: this VM's threads are on the driver cores already (from the state file).
    /// It is taken as placed, not placed again, and restored by the usual rules.
    pub fn adopt(&mut self, pid: u32, now: Duration) {
        let vm = self.vms.entry(pid).or_insert_with(|| Vm::new(pid, now));
        vm.placement = Placement::Placed;
        vm.pinned_known = true;
        vm.hand_pinned = false;
        vm.since = now;
        vm.last_change = "adopted from the state file after a restart".into();
    }

    /// Placing failed (no thread could be moved): back to normal, no new attempt for `hold_ms`.
    pub fn placement_failed(&mut self, pid: u32, now: Duration, err: &str) {
        if let Some(vm) = self.vms.get_mut(&pid) {
            vm.placement = Placement::Normal;
            vm.since = now;
            vm.cool_since = None;
            vm.backoff_until =
                Some(now + Duration::from_millis(self.cfg.hold_ms.max(self.cfg.interval_ms)));
            vm.last_change = format!("placement failed: {err}");
        }
    }

    /// One sampling round. `samples` holds every VM present now; VMs missing from it are gone.
    pub fn tick(&mut self, now: Duration, samples: &[VmSample]) -> Vec<Action> {
        let cfg = self.cfg.clone();
        let window = Duration::from_millis(cfg.window_ms);
        let hold = Duration::from_millis(cfg.hold_ms);
        let low = cfg.threshold - cfg.hysteresis;
        let mut actions = vec![];

        for s in samples {
            let vm = self.vms.entry(s.pid).or_insert_with(|| Vm::new(s.pid, now));
            vm.observe(now, s.counters, window, cfg.other_exits_weight);
            vm.vcpus = s.vcpus.clone();
            if !vm.pinned_known && !s.vcpus.is_empty() {
                vm.pinned_known = true;
                vm.hand_pinned = s.hand_pinned;
            }
        }

        // Gone.
        let present: std::collections::BTreeSet<u32> = samples.iter().map(|s| s.pid).collect();
        let gone: Vec<u32> = self
            .vms
            .keys()
            .copied()
            .filter(|p| !present.contains(p))
            .collect();
        for pid in gone {
            if let Some(vm) = self.vms.remove(&pid) {
                if vm.placement == Placement::Placed {
                    actions.push(Action::Restore {
                        pid,
                        cause: RestoreCause::Gone,
                        why: format!(
                            "VM exited after {} on the driver cores",
                            secs(now.saturating_sub(vm.since))
                        ),
                    });
                }
            }
        }

        // Placed VMs: cooled down, or no longer ours to manage.
        for vm in self
            .vms
            .values_mut()
            .filter(|v| v.placement == Placement::Placed)
        {
            if !vm.managed(&cfg) {
                let why = "its vCPU threads were pinned by hand and manage_pinned is now false"
                    .to_string();
                Self::to_normal(vm, now, &why);
                actions.push(Action::Restore {
                    pid: vm.pid,
                    cause: RestoreCause::NotManaged,
                    why,
                });
                continue;
            }
            let Some(r) = vm.rates else { continue };
            if r.total < low {
                let since = *vm.cool_since.get_or_insert(now);
                if now.saturating_sub(since) >= hold {
                    let why = format!(
                        "I/O rate {r} < {low:.0}/s (threshold {:.0} - hysteresis {:.0}) for {} (hold {})",
                        cfg.threshold,
                        cfg.hysteresis,
                        secs(now - since),
                        secs(hold)
                    );
                    Self::to_normal(vm, now, &why);
                    actions.push(Action::Restore {
                        pid: vm.pid,
                        cause: RestoreCause::Cooled,
                        why,
                    });
                }
            } else {
                vm.cool_since = None;
            }
        }

        // Too many placed (the cap was lowered at runtime): the slowest go back.
        let max = cfg.max_vms_on_driver_cores as usize;
        let mut placed = self.placed_by_rank(&cfg);
        while placed.len() > max {
            let (pid, rank) = placed.remove(0);
            let why = format!("max_vms_on_driver_cores is {max} and its rate {rank:.0}/s is the lowest of the placed VMs");
            if let Some(vm) = self.vms.get_mut(&pid) {
                Self::to_normal(vm, now, &why);
            }
            actions.push(Action::Restore {
                pid,
                cause: RestoreCause::Displaced,
                why,
            });
        }

        // Candidates, hottest first.
        let mut cands: Vec<(u32, Rates)> = self
            .vms
            .values()
            .filter(|v| v.placement == Placement::Normal && v.managed(&cfg) && !v.vcpus.is_empty())
            .filter(|v| v.backoff_until.is_none_or(|t| now >= t))
            .filter_map(|v| {
                v.rates
                    .filter(|r| r.total >= cfg.threshold)
                    .map(|r| (v.pid, r))
            })
            .collect();
        cands.sort_by(|a, b| b.1.total.total_cmp(&a.1.total).then(a.0.cmp(&b.0)));
        for (pid, r) in cands {
            let mut placed = self.placed_by_rank(&cfg);
            let why = if placed.len() < max {
                format!(
                    "I/O rate {r} >= threshold {:.0}/s; {} of {max} driver-core slots in use",
                    cfg.threshold,
                    placed.len()
                )
            } else if let Some(&(victim, vrate)) = placed
                .first()
                .filter(|(_, vr)| r.total > vr + cfg.hysteresis)
            {
                let why = format!(
                    "VM {pid} needs the slot: its rate {:.0}/s beats this VM's {vrate:.0}/s by more than hysteresis {:.0}",
                    r.total, cfg.hysteresis
                );
                if let Some(vm) = self.vms.get_mut(&victim) {
                    Self::to_normal(vm, now, &why);
                }
                actions.push(Action::Restore {
                    pid: victim,
                    cause: RestoreCause::Displaced,
                    why,
                });
                placed.remove(0);
                format!("I/O rate {r} >= threshold {:.0}/s; took the slot of VM {victim} ({vrate:.0}/s)", cfg.threshold)
            } else {
                continue;
            };
            let vm = self
                .vms
                .get_mut(&pid)
                .expect("candidate comes from self.vms");
            vm.placement = Placement::Placed;
            vm.since = now;
            vm.cool_since = None;
            vm.backoff_until = None;
            vm.last_change = why.clone();
            actions.push(Action::Place {
                pid,
                vcpus: vm.vcpus.clone(),
                why,
            });
        }
        actions
    }

    /// Placed VMs as (pid, rank), slowest first.
    fn placed_by_rank(&self, cfg: &PolicyConfig) -> Vec<(u32, f64)> {
        let mut v: Vec<(u32, f64)> = self
            .vms
            .values()
            .filter(|v| v.placement == Placement::Placed)
            .map(|v| (v.pid, v.rank(cfg)))
            .collect();
        v.sort_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
        v
    }

    fn to_normal(vm: &mut Vm, now: Duration, why: &str) {
        vm.placement = Placement::Normal;
        vm.since = now;
        vm.cool_since = None;
        vm.last_change = why.to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated host: VMs with a steady I/O rate each, a clock that advances by `interval`.
    struct Sim {
        p: Policy,
        now: Duration,
        vms: BTreeMap<u32, (f64, Counters, Vec<u32>, bool)>,
        log: Vec<(Duration, Action)>,
    }

    impl Sim {
        fn new(cfg: PolicyConfig) -> Self {
            Self {
                p: Policy::new(cfg),
                now: Duration::ZERO,
                vms: BTreeMap::new(),
                log: vec![],
            }
        }
        fn cfg() -> PolicyConfig {
            PolicyConfig {
                interval_ms: 500,
                window_ms: 1000,
                threshold: 1000.0,
                hysteresis: 200.0,
                hold_ms: 2000,
                max_vms_on_driver_cores: 1,
                ..Default::default()
            }
        }
        fn vm(&mut self, pid: u32, rate: f64) {
            let e =
                self.vms
                    .entry(pid)
                    .or_insert((0.0, Counters::default(), vec![pid * 10], false));
            e.0 = rate;
        }
        fn pinned(&mut self, pid: u32, rate: f64) {
            self.vm(pid, rate);
            self.vms.get_mut(&pid).unwrap().3 = true;
        }
        /// Advances one interval, the VMs doing their I/O meanwhile, and ticks.
        fn step(&mut self) -> Vec<Action> {
            let dt = Duration::from_millis(self.p.config().interval_ms);
            if self.now > Duration::ZERO || !self.log.is_empty() {
                for (rate, c, _, _) in self.vms.values_mut() {
                    // Split like a real guest might: port I/O and event-channel requests.
                    let n = (*rate * dt.as_secs_f64()).round() as u64;
                    c.io_exits += n / 2;
                    c.evtchn_requests += n - n / 2;
                }
            }
            self.now += dt;
            let samples: Vec<VmSample> = self
                .vms
                .iter()
                .map(|(&pid, (_, c, v, pinned))| VmSample {
                    pid,
                    counters: *c,
                    vcpus: v.clone(),
                    hand_pinned: *pinned,
                })
                .collect();
            let a = self.p.tick(self.now, &samples);
            self.log.extend(a.iter().map(|a| (self.now, a.clone())));
            a
        }
        fn steps(&mut self, n: usize) -> Vec<Action> {
            (0..n).flat_map(|_| self.step()).collect()
        }
        fn state(&self, pid: u32) -> Placement {
            self.p.vm(pid).unwrap().placement
        }
    }

    fn places(a: &[Action]) -> Vec<u32> {
        a.iter()
            .filter(|a| matches!(a, Action::Place { .. }))
            .map(Action::pid)
            .collect()
    }
    fn restores(a: &[Action]) -> Vec<(u32, RestoreCause)> {
        a.iter()
            .filter_map(|a| match a {
                Action::Restore { pid, cause, .. } => Some((*pid, *cause)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn hot_vm_is_placed_within_two_periods_and_not_twice() {
        let mut s = Sim::new(Sim::cfg());
        s.vm(1, 5000.0);
        assert!(s.step().is_empty(), "one sample gives no rate yet");
        let a = s.step();
        assert_eq!(places(&a), vec![1], "placed at the second sample");
        match &a[0] {
            Action::Place { vcpus, why, .. } => {
                assert_eq!(vcpus, &vec![10]);
                assert!(
                    why.contains("5000/s") && why.contains(">= threshold 1000/s"),
                    "{why}"
                );
            }
            a => panic!("{a:?}"),
        }
        assert!(s.steps(10).is_empty(), "a placed VM is not placed again");
        assert_eq!(s.state(1), Placement::Placed);
    }

    #[test]
    fn below_threshold_is_left_alone_and_exact_threshold_places() {
        let mut s = Sim::new(Sim::cfg());
        s.vm(1, 990.0);
        s.vm(2, 1000.0);
        let a = s.steps(6);
        assert_eq!(places(&a), vec![2]);
        assert_eq!(s.state(1), Placement::Normal);
    }

    #[test]
    fn hysteresis_and_hold_time() {
        let mut s = Sim::new(Sim::cfg());
        s.vm(1, 5000.0);
        s.steps(2);
        assert_eq!(s.state(1), Placement::Placed);
        // Under the threshold but inside the hysteresis band: stays, however long.
        s.vm(1, 900.0);
        assert!(s.steps(20).is_empty());
        assert_eq!(s.state(1), Placement::Placed);
        // Under threshold - hysteresis: restored only once hold (2 s) has passed.
        s.vm(1, 100.0);
        let t_cool = s.now;
        let mut restored_at = None;
        for _ in 0..20 {
            let a = s.step();
            if !a.is_empty() {
                assert_eq!(restores(&a), vec![(1, RestoreCause::Cooled)]);
                if let Action::Restore { why, .. } = &a[0] {
                    assert!(
                        why.contains("< 800/s") && why.contains("hold 2.0s"),
                        "{why}"
                    );
                }
                restored_at = Some(s.now);
                break;
            }
        }
        let dt = restored_at.expect("restored") - t_cool;
        // The window (1 s) must first fall under 800/s, then hold 2 s.
        assert!(
            dt >= Duration::from_millis(2000) && dt <= Duration::from_millis(3500),
            "{dt:?}"
        );
        assert_eq!(s.state(1), Placement::Normal);
    }

    #[test]
    fn a_short_dip_does_not_restore() {
        let mut s = Sim::new(Sim::cfg());
        s.vm(1, 5000.0);
        s.steps(2);
        s.vm(1, 0.0);
        assert!(s.steps(3).is_empty(), "1.5 s cool < hold 2 s");
        s.vm(1, 5000.0);
        assert!(s.steps(3).is_empty());
        s.vm(1, 0.0);
        assert!(s.steps(3).is_empty(), "the hold clock restarted");
        assert_eq!(s.state(1), Placement::Placed);
    }

    #[test]
    fn many_vms_compete_highest_rate_first() {
        let mut cfg = Sim::cfg();
        cfg.max_vms_on_driver_cores = 2;
        let mut s = Sim::new(cfg);
        s.vm(1, 2000.0);
        s.vm(2, 9000.0);
        s.vm(3, 5000.0);
        s.vm(4, 3000.0);
        let a = s.steps(2);
        assert_eq!(places(&a), vec![2, 3], "the two hottest, hottest first");
        assert!(
            s.steps(5).is_empty(),
            "the others wait: 3000 does not beat 5000"
        );
        // VM 1 becomes the hottest: it takes the slot of the slowest placed VM (3).
        s.vm(1, 20000.0);
        let a = s.steps(2);
        assert_eq!(restores(&a), vec![(3, RestoreCause::Displaced)]);
        assert_eq!(places(&a), vec![1]);
        // Within hysteresis no swapping back and forth.
        s.vm(4, 5100.0);
        s.vm(3, 5150.0);
        assert!(
            s.steps(10).is_empty(),
            "5150 does not beat the slowest placed (9000)"
        );
        // The cap lowered at runtime: the slowest placed goes.
        let mut cfg = s.p.config().clone();
        cfg.max_vms_on_driver_cores = 1;
        s.p.set_config(cfg);
        let a = s.step();
        assert_eq!(restores(&a), vec![(2, RestoreCause::Displaced)]);
        assert_eq!(
            s.p.vms()
                .filter(|v| v.placement == Placement::Placed)
                .count(),
            1
        );
        // 0 disables placement.
        let mut cfg = s.p.config().clone();
        cfg.max_vms_on_driver_cores = 0;
        s.p.set_config(cfg);
        assert_eq!(restores(&s.step()), vec![(1, RestoreCause::Displaced)]);
        assert!(s.steps(5).is_empty());
    }

    #[test]
    fn hand_pinned_vms_are_left_alone_unless_configured() {
        let mut s = Sim::new(Sim::cfg());
        s.pinned(1, 50000.0);
        assert!(s.steps(6).is_empty());
        assert!(s.p.vm(1).unwrap().hand_pinned);
        let mut cfg = s.p.config().clone();
        cfg.manage_pinned = true;
        s.p.set_config(cfg.clone());
        assert_eq!(places(&s.step()), vec![1]);
        cfg.manage_pinned = false;
        s.p.set_config(cfg);
        assert_eq!(restores(&s.step()), vec![(1, RestoreCause::NotManaged)]);
    }

    #[test]
    fn pinned_is_judged_once_when_vcpus_first_appear() {
        let mut s = Sim::new(Sim::cfg());
        s.vm(1, 5000.0);
        s.vms.get_mut(&1).unwrap().2.clear(); // no vCPU has run yet
        s.vms.get_mut(&1).unwrap().3 = false;
        assert!(s.steps(3).is_empty(), "no vCPU thread: nothing to place");
        s.vms.get_mut(&1).unwrap().2.push(10);
        assert_eq!(places(&s.step()), vec![1]);
        // After placement our own affinity must not make it look hand-pinned.
        s.vms.get_mut(&1).unwrap().3 = true;
        assert!(s.steps(5).is_empty());
        assert!(!s.p.vm(1).unwrap().hand_pinned);
    }

    #[test]
    fn vm_exiting_while_placed_or_mid_migration() {
        let mut cfg = Sim::cfg();
        cfg.max_vms_on_driver_cores = 2;
        let mut s = Sim::new(cfg);
        s.vm(1, 5000.0);
        s.steps(1);
        s.vm(2, 4000.0);
        let a = s.step();
        assert_eq!(places(&a), vec![1]);
        // VM 1 exits right after the Place action (its threads may be half moved).
        s.vms.remove(&1);
        let a = s.step();
        assert_eq!(restores(&a), vec![(1, RestoreCause::Gone)]);
        assert_eq!(places(&a), vec![2]);
        assert!(s.p.vm(1).is_none());
        // A normal VM exiting needs nothing.
        s.vm(3, 10.0);
        s.steps(2);
        s.vms.remove(&3);
        assert!(s.step().is_empty());
        // The same pid coming back is a new VM.
        s.vm(1, 5000.0);
        assert!(s.step().is_empty(), "a new VM: one sample, no rate yet");
        assert_eq!(places(&s.step()), vec![1]);
    }

    #[test]
    fn failed_placement_backs_off_for_hold() {
        let mut s = Sim::new(Sim::cfg());
        s.vm(1, 5000.0);
        assert_eq!(places(&s.steps(2)), vec![1]);
        s.p.placement_failed(1, s.now, "EINVAL");
        assert_eq!(s.state(1), Placement::Normal);
        assert!(s.steps(3).is_empty(), "no retry within hold (2 s)");
        assert_eq!(places(&s.steps(2)), vec![1], "retried after hold");
    }

    #[test]
    fn adopted_vm_is_not_placed_again_and_cools_normally() {
        let mut cfg = Sim::cfg();
        cfg.max_vms_on_driver_cores = 2;
        let mut s = Sim::new(cfg);
        s.vm(1, 5000.0);
        s.vm(2, 10.0);
        s.p.adopt(1, Duration::ZERO);
        s.p.adopt(2, Duration::ZERO);
        assert!(
            places(&s.steps(6)).is_empty(),
            "adopted VMs are placed already"
        );
        assert_eq!(s.state(1), Placement::Placed);
        // The cooled one goes back after hold, the hot one stays.
        let a = s.steps(6);
        assert_eq!(restores(&a), vec![]);
        assert_eq!(
            s.state(2),
            Placement::Normal,
            "restored during the first steps: {:?}",
            s.log
        );
        assert!(s.log.iter().any(|(_, a)| matches!(
            a,
            Action::Restore {
                pid: 2,
                cause: RestoreCause::Cooled,
                ..
            }
        )));
        // An adopted VM that is not running any more is restored as gone.
        let mut s = Sim::new(Sim::cfg());
        s.p.adopt(7, Duration::ZERO);
        assert_eq!(restores(&s.step()), vec![(7, RestoreCause::Gone)]);
    }

    #[test]
    fn other_exits_count_only_with_their_weight() {
        let smp = |n: u64| VmSample {
            pid: 1,
            counters: Counters {
                io_exits: n,
                other_exits: 10 * n,
                ..Default::default()
            },
            vcpus: vec![1],
            hand_pinned: false,
        };
        for (w, want) in [(0.0, 100.0), (1.0, 1100.0), (0.5, 600.0)] {
            let mut cfg = Sim::cfg();
            cfg.other_exits_weight = w;
            let mut p = Policy::new(cfg);
            p.tick(Duration::from_millis(0), &[smp(0)]);
            p.tick(Duration::from_millis(1000), &[smp(100)]);
            let r = p.vm(1).unwrap().rates.unwrap();
            assert_eq!((r.io_exits, r.other_exits), (100.0, 1000.0));
            assert_eq!(r.total, want, "weight {w}");
        }
    }

    #[test]
    fn counter_decrease_is_not_a_negative_or_huge_rate() {
        let mut p = Policy::new(Sim::cfg());
        let smp = |ev: u64| VmSample {
            pid: 1,
            counters: Counters {
                io_exits: 0,
                mmio_exits: 0,
                evtchn_requests: ev,
                other_exits: 0,
            },
            vcpus: vec![1],
            hand_pinned: false,
        };
        p.tick(Duration::from_millis(500), &[smp(100_000)]);
        p.tick(Duration::from_millis(1000), &[smp(100)]); // a channel was destroyed
        let r = p.vm(1).unwrap().rates.unwrap();
        assert_eq!(r.total, 0.0);
        p.tick(Duration::from_millis(1500), &[smp(600)]);
        let r = p.vm(1).unwrap().rates.unwrap();
        assert!((r.total - 500.0).abs() < 1e-6, "{r:?}"); // 500 over the 1 s window
    }
}
