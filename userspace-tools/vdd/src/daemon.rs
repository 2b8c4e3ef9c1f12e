//! The daemon: sampling loop, actions, shared state for the control socket and metrics,
//! startup reconciliation and shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tracing::{debug, error, info, warn};

use crate::config::{Config, PolicyConfig};
use crate::control::Handler;
use crate::cpus::{self, CpuList};
use crate::host::{self, RealHost, SliceMode};
use crate::input::{InputError, InputHandle, RealInput};
use crate::placer::{Host, Placer, ThreadRecord};
use crate::policy::{Action, Placement, Policy, VmSample};
use crate::protocol::{
    FocusView, InputView, PolicyView, Request, Response, SriovView, StatusView, ThreadView,
    VmDetail, VmState, VmView,
};
use crate::sources::{self, Evtchn, KvmDebugfs, VmmNames};

/// What the control socket and the metrics endpoint read, refreshed every tick.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// The running `[policy]`: `policy set` writes here, the loop picks it up at its next tick.
    pub policy: PolicyConfig,
    pub config: Config,
    pub vms: Vec<VmView>,
    pub status: StatusView,
    pub records: Vec<ThreadRecord>,
    /// The SR-IOV policy's view, written by its thread.
    pub sriov: Arc<Mutex<SriovView>>,
    /// The input focus and queues.
    pub input: InputView,
    /// vd_input_irq (the real device, or a fake in tests; none: focus requests fail).
    pub input_ctl: InputHandle,
    /// VMs given the focus since vdd started (their queues are read).
    pub input_known: BTreeSet<u32>,
}

impl Shared {
    /// The status with the SR-IOV and input views as they are now.
    pub fn status_now(&self) -> StatusView {
        let mut st = self.status.clone();
        st.sriov = self.sriov.lock().unwrap_or_else(|p| p.into_inner()).clone();
        st.input = self.input.clone();
        st
    }
}

/// Answers control requests from the shared state.
pub struct SharedHandler(pub Arc<Mutex<Shared>>);

impl SharedHandler {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Handler for SharedHandler {
    fn handle(&self, req: Request) -> Response {
        let mut s = self.lock();
        match req {
            Request::VmList => Response::ok(&s.vms),
            Request::VmShow { pid } => {
                let Some(vm) = s.vms.iter().find(|v| v.pid == pid).cloned() else {
                    return Response::err(format!(
                        "no VM with pid {pid}: `vdctl vm list` shows the VMs vdd sees (KVM debugfs and vd_evtchn)"
                    ));
                };
                let h = RealHost;
                let mut tids: BTreeSet<u32> = vm.vcpus.iter().copied().collect();
                tids.extend(s.records.iter().filter(|r| r.pid == pid).map(|r| r.tid));
                let threads = tids
                    .into_iter()
                    .map(|tid| {
                        let rec = s.records.iter().find(|r| r.tid == tid);
                        ThreadView {
                            tid,
                            affinity: h.affinity(tid).ok().map(|c| cpus::format(&c)),
                            slice_ns: h.slice(tid).ok().flatten(),
                            managed: rec.is_some(),
                            orig_affinity: rec.map(|r| r.orig_affinity.clone()),
                            orig_slice_ns: rec.and_then(|r| r.orig_slice_ns),
                        }
                    })
                    .collect();
                Response::ok(&VmDetail { vm, threads })
            }
            Request::PolicyGet => Response::ok(&PolicyView {
                policy: s.policy.clone(),
                config: s.config.clone(),
            }),
            Request::PolicySet { key, value } => match s.policy.set(&key, &value) {
                Ok(()) => Response::ok(&PolicyView {
                    policy: s.policy.clone(),
                    config: s.config.clone(),
                }),
                Err(e) => Response::err(format!("policy set {key} {value}: {e}")),
            },
            Request::Status => Response::ok(&s.status_now()),
            Request::Focus { vm_id } => {
                let Some(ctl) = s.input_ctl.0.clone() else {
                    return Response::err("focus: vdd has no input device (vd_input_irq)");
                };
                match ctl.focus(vm_id) {
                    Ok(()) => {
                        let previous = s.input.focused.unwrap_or(0);
                        s.input.focused = (vm_id != 0).then_some(vm_id);
                        s.input.focus_changes_total += 1;
                        s.input.state = "ok".into();
                        if vm_id != 0 {
                            s.input_known.insert(vm_id);
                        }
                        info!(
                            vm_id,
                            previous, "input focus: VM {previous} -> VM {vm_id} (VDI_IOC_FOCUS)"
                        );
                        Response::ok(&FocusView { vm_id, previous })
                    }
                    Err(e) => {
                        if matches!(e, InputError::Open(..)) {
                            s.input.state = e.to_string();
                        }
                        warn!(vm_id, "input focus on VM {vm_id} failed: {e}");
                        Response::err(format!("focus VM {vm_id}: {e}"))
                    }
                }
            }
        }
    }
}

/// Which sources are up, logged on every change.
#[derive(Default)]
struct SourceStates(BTreeMap<&'static str, String>);

impl SourceStates {
    fn set(&mut self, name: &'static str, r: &Result<(), String>) {
        self.set_at(name, r, tracing::Level::WARN)
    }

    /// For optional parts (a module that may simply not be used on this host): the "disabled"
    /// line at `level`.
    fn set_at(&mut self, name: &'static str, r: &Result<(), String>, level: tracing::Level) {
        let new = match r {
            Ok(()) => "ok".to_string(),
            Err(e) => e.clone(),
        };
        if self.0.get(name) != Some(&new) {
            match r {
                Ok(()) => info!("source {name}: up"),
                Err(e) if level == tracing::Level::WARN => {
                    warn!("source {name}: disabled: {e}; retrying every interval")
                }
                Err(e) => info!("source {name}: disabled: {e}; retrying every interval"),
            }
            self.0.insert(name, new);
        }
    }
}

/// The running daemon.
pub struct Daemon {
    cfg: Config,
    config_file: Option<PathBuf>,
    policy: Policy,
    placer: Placer<RealHost>,
    slice_mode: SliceMode,
    driver_from: String,
    online: CpuList,
    kvm: KvmDebugfs,
    evtchn: Evtchn,
    sources: SourceStates,
    shared: Arc<Mutex<Shared>>,
    t0: Instant,
    ticks: u64,
    placements: u64,
    restores: u64,
    no_pid_files_logged: bool,
    /// VM names from their VMMs' command lines, read once per process.
    names: VmmNames,
}

/// The driver cores: configured, or from the device IRQs.
pub fn resolve_driver_cores(cfg: &Config) -> Result<(CpuList, String)> {
    let online = host::online_cpus().context("reading /sys/devices/system/cpu/online")?;
    let (cores, from) = if cfg.host.driver_cores.trim() == "auto" {
        let (c, irqs) =
            host::driver_cores_from_irqs(std::path::Path::new("/proc"), &cfg.host.irq_match)
                .context("reading /proc/interrupts")?;
        if c.is_empty() {
            bail!(
                "driver_cores = \"auto\" found no IRQ matching {:?} in /proc/interrupts; set [host] driver_cores to a CPU list",
                cfg.host.irq_match
            );
        }
        (c, format!("IRQ affinities: {}", irqs.join(", ")))
    } else {
        (
            cpus::parse(&cfg.host.driver_cores).map_err(anyhow::Error::msg)?,
            "config".to_string(),
        )
    };
    let off: CpuList = cores.difference(&online).copied().collect();
    if !off.is_empty() {
        bail!(
            "driver cores {} include CPUs that are not online ({}); online: {}",
            cpus::format(&cores),
            cpus::format(&off),
            cpus::format(&online)
        );
    }
    if cores == online {
        warn!(
            "the driver cores {} are every online CPU: placement cannot move anything",
            cpus::format(&cores)
        );
    }
    Ok((cores, from))
}

impl Daemon {
    /// Resolves the host facts, loads the state file and adopts the VMs it lists.
    pub fn start(cfg: Config, config_file: Option<PathBuf>) -> Result<Self> {
        let (driver, driver_from) = resolve_driver_cores(&cfg)?;
        let online = host::online_cpus()?;
        let slice_ns = cfg.policy.slice_us * 1000;
        let slice_mode = host::probe_slice(slice_ns);
        let base = host::base_slice_ns(&cfg.host.sched_debugfs);
        info!(
            "driver cores {} ({driver_from}); online CPUs {}; slice: {slice_mode}; base slice {}",
            cpus::format(&driver),
            cpus::format(&online),
            base.map_or(
                "unknown (sched debugfs not mounted: slices found will be restored to the default)"
                    .into(),
                |b| format!("{b} ns")
            )
        );
        let eff_slice = if slice_mode == SliceMode::EevdfSlice {
            slice_ns
        } else {
            0
        };
        if let Some(dir) = cfg.daemon.state_file.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut placer = Placer::new(
            RealHost,
            driver,
            eff_slice,
            base,
            Some(cfg.daemon.state_file.clone()),
        );
        let adopted = placer.load().with_context(|| {
            format!("loading {} (move it away to start without it: vdd will then not restore what the previous run changed)", cfg.daemon.state_file.display())
        })?;
        let mut policy = Policy::new(cfg.policy.clone());
        for &pid in &adopted {
            let n = placer.records().filter(|r| r.pid == pid).count();
            info!(pid, threads = n, "restart: VM {pid} has {n} thread(s) on the driver cores from the previous run; adopted, not placed again");
            policy.adopt(pid, Duration::ZERO);
        }
        let shared = Arc::new(Mutex::new(Shared {
            policy: cfg.policy.clone(),
            config: cfg.clone(),
            input_ctl: InputHandle(Some(Arc::new(RealInput(cfg.input.device.clone())))),
            ..Default::default()
        }));
        Ok(Self {
            kvm: KvmDebugfs {
                dir: cfg.host.kvm_debugfs.clone(),
            },
            evtchn: Evtchn::new(cfg.host.evtchn_device.clone()),
            cfg,
            config_file,
            policy,
            placer,
            slice_mode,
            driver_from,
            online,
            sources: SourceStates::default(),
            shared,
            t0: Instant::now(),
            ticks: 0,
            placements: 0,
            restores: 0,
            no_pid_files_logged: false,
            names: VmmNames::default(),
        })
    }

    pub fn shared(&self) -> Arc<Mutex<Shared>> {
        self.shared.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The running policy (picked up from `policy set`).
    fn sync_policy(&mut self) {
        let p = self.lock().policy.clone();
        if &p != self.policy.config() {
            info!(?p, "policy changed at runtime");
            if p.slice_us != self.policy.config().slice_us {
                if self.slice_mode == SliceMode::EevdfSlice
                    || p.slice_us == 0
                    || self.slice_mode == SliceMode::Off
                {
                    self.slice_mode = host::probe_slice(p.slice_us * 1000);
                }
                let ns = if self.slice_mode == SliceMode::EevdfSlice {
                    p.slice_us * 1000
                } else {
                    0
                };
                self.placer.set_slice_ns(ns);
            }
            self.policy.set_config(p);
        }
    }

    /// The VMs on the host now.
    fn sample(&mut self) -> Vec<VmSample> {
        let kvm = self.kvm.scan();
        self.sources
            .set("kvm_debugfs", &kvm.as_ref().map(drop).map_err(Clone::clone));
        let ev = self.evtchn.scan();
        self.sources
            .set("vd_evtchn", &ev.as_ref().map(drop).map_err(Clone::clone));
        let kvm = kvm.unwrap_or_default();
        let ev = ev.unwrap_or_default();
        let pids: BTreeSet<u32> = kvm.keys().chain(ev.keys()).copied().collect();
        let mut out = vec![];
        for pid in pids {
            let k = kvm.get(&pid);
            let vcpus = match k {
                Some(k) if !k.no_vcpu_pid_files => k.vcpu_tids.clone(),
                _ => {
                    if k.is_some() && !self.no_pid_files_logged {
                        warn!("KVM debugfs has no vcpuN/pid files: using every thread of the VMM as its vCPU threads");
                        self.no_pid_files_logged = true;
                    }
                    match host::threads_of(pid) {
                        Ok(t) => t,
                        Err(_) => continue, // the process is gone
                    }
                }
            };
            // Only VMs whose process still exists (a debugfs dir can outlive it for a moment).
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let hand_pinned = vcpus
                .iter()
                .filter(|t| !self.placer.manages(**t))
                .any(|&t| self.placer.host.affinity(t).is_ok_and(|a| a != self.online));
            out.push(VmSample {
                pid,
                counters: sources::merge(k, ev.get(&pid).copied()),
                vcpus,
                hand_pinned,
            });
        }
        out
    }

    /// One sampling round.
    pub fn tick(&mut self) {
        self.sync_policy();
        let samples = self.sample();
        let now = self.t0.elapsed();
        let actions = self.policy.tick(now, &samples);
        let round = self.ticks;
        for v in self.policy.vms() {
            if let Some(r) = &v.rates {
                debug!(
                    pid = v.pid,
                    round, "round {round}: VM {} I/O rate {r}", v.pid
                );
            }
        }
        let driver = cpus::format(self.placer.driver_cores());
        for a in actions {
            match a {
                Action::Place { pid, vcpus, why } => {
                    let o = self.placer.place(pid, &vcpus);
                    if o.moved.is_empty() && o.already.is_empty() {
                        let err = if o.failed.is_empty() {
                            "every vCPU thread exited".to_string()
                        } else {
                            o.failed
                                .iter()
                                .map(|(t, e)| format!("tid {t}: {e}"))
                                .collect::<Vec<_>>()
                                .join("; ")
                        };
                        error!(pid, "could not place VM {pid} on driver cores {driver}: {err}; retrying after hold_ms");
                        self.policy.placement_failed(pid, now, &err);
                        continue;
                    }
                    self.placements += 1;
                    info!(
                        pid,
                        "placed VM {pid} on driver cores {driver} in round {round}: {why}; vCPU threads moved {:?}{}{}{}",
                        o.moved,
                        if self.placer_slice_on() { format!(", slice {} us", self.policy.config().slice_us) } else { String::new() },
                        if o.vanished.is_empty() { String::new() } else { format!(", exited meanwhile {:?}", o.vanished) },
                        if o.failed.is_empty() { String::new() } else { format!(", FAILED {:?}", o.failed) },
                    );
                }
                Action::Restore { pid, cause, why } => {
                    let o = self.placer.restore_pid(pid);
                    self.restores += 1;
                    info!(
                        pid,
                        ?cause,
                        "restored VM {pid}: {why}; threads restored {:?}{}{}{}",
                        o.restored,
                        if o.vanished.is_empty() {
                            String::new()
                        } else {
                            format!(", exited {:?}", o.vanished)
                        },
                        if o.left_alone.is_empty() {
                            String::new()
                        } else {
                            format!(
                                ", changed by someone else and left as is {:?}",
                                o.left_alone
                            )
                        },
                        if o.failed.is_empty() {
                            String::new()
                        } else {
                            format!(", FAILED (kept for retry) {:?}", o.failed)
                        },
                    );
                }
            }
        }
        // Placed VMs: vCPU threads that appeared since (new vCPUs) follow; no-op otherwise.
        let placed: Vec<(u32, Vec<u32>)> = self
            .policy
            .vms()
            .filter(|v| v.placement == Placement::Placed)
            .map(|v| (v.pid, v.vcpus.clone()))
            .collect();
        for (pid, vcpus) in placed {
            let o = self.placer.place(pid, &vcpus);
            if !o.moved.is_empty() {
                info!(
                    pid,
                    "VM {pid} is placed: its new vCPU threads {:?} follow to the driver cores",
                    o.moved
                );
            }
        }
        // Records of VMs the policy no longer has as placed (restore failed earlier): retry.
        let placed_now: BTreeSet<u32> = self
            .policy
            .vms()
            .filter(|v| v.placement == Placement::Placed)
            .map(|v| v.pid)
            .collect();
        for pid in self
            .placer
            .placed_pids()
            .difference(&placed_now)
            .copied()
            .collect::<Vec<_>>()
        {
            let o = self.placer.restore_pid(pid);
            debug!(pid, ?o, "restored leftover records");
        }
        let exited = self.placer.forget_exited();
        if !exited.is_empty() {
            debug!(?exited, "records of exited threads dropped");
        }
        self.input_tick();
        self.ticks += 1;
        self.publish(now);
    }

    /// The input queues of the VMs vdd knows (`VDI_IOC_STATS`).
    fn input_tick(&mut self) {
        let (ctl, mut known, focused) = {
            let s = self.lock();
            (
                s.input_ctl.0.clone(),
                s.input_known.clone(),
                s.input.focused,
            )
        };
        let Some(ctl) = ctl else { return };
        known.extend(self.cfg.vms.iter().filter_map(|v| u32::try_from(v.id).ok()));
        known.extend(focused);
        let r = crate::input::collect_stats(&*ctl, &known);
        self.sources.set_at(
            "vd_input",
            &r.as_ref().map(drop).map_err(|e| e.to_string()),
            tracing::Level::INFO,
        );
        let mut s = self.lock();
        match r {
            Ok(v) => {
                s.input.vms = v;
                s.input.state = "ok".into();
            }
            Err(e) => {
                s.input.vms.clear();
                s.input.state = e.to_string();
            }
        }
    }

    fn placer_slice_on(&self) -> bool {
        self.slice_mode == SliceMode::EevdfSlice && self.policy.config().slice_us > 0
    }

    fn publish(&mut self, now: Duration) {
        let live: BTreeSet<u32> = self.policy.vms().map(|v| v.pid).collect();
        self.names.retain(|pid| live.contains(&pid));
        let names = &mut self.names;
        let cfg = self.policy.config();
        let vms: Vec<VmView> = self
            .policy
            .vms()
            .map(|v| {
                let managed = !v.hand_pinned || cfg.manage_pinned;
                let state = match v.placement {
                    Placement::Placed => VmState::Placed,
                    Placement::Normal if !managed => VmState::Pinned,
                    Placement::Normal
                        if v.rates.is_some_and(|r| r.total >= cfg.threshold)
                            && cfg.max_vms_on_driver_cores > 0 =>
                    {
                        VmState::Waiting
                    }
                    Placement::Normal => VmState::Normal,
                };
                VmView {
                    pid: v.pid,
                    name: names.get(v.pid),
                    state,
                    vcpus: v.vcpus.clone(),
                    rates: v.rates,
                    state_secs: now.saturating_sub(v.since).as_secs_f64(),
                    cooling_secs: v.cool_since.map(|c| now.saturating_sub(c).as_secs_f64()),
                    last_change: v.last_change.clone(),
                }
            })
            .collect();
        let records: Vec<ThreadRecord> = self.placer.records().cloned().collect();
        let status = StatusView {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            config_file: self.config_file.as_ref().map(|p| p.display().to_string()),
            uptime_secs: now.as_secs_f64(),
            ticks: self.ticks,
            driver_cores: cpus::format(self.placer.driver_cores()),
            driver_cores_from: self.driver_from.clone(),
            slice_mode: self.slice_mode.to_string(),
            sources: self
                .sources
                .0
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            vms: vms.len(),
            placed_vms: vms.iter().filter(|v| v.state == VmState::Placed).count(),
            managed_threads: records.len(),
            placements_total: self.placements,
            restores_total: self.restores,
            state_file: self.cfg.daemon.state_file.display().to_string(),
            socket: self.cfg.daemon.socket.display().to_string(),
            metrics: self.cfg.daemon.metrics.clone(),
            ..Default::default()
        };
        let mut s = self.lock();
        s.vms = vms;
        s.records = records;
        s.status = status;
    }

    /// Restores everything vdd changed (SIGTERM/SIGINT).
    pub fn shutdown(&mut self) {
        let n = self.placer.records().count();
        let o = self.placer.restore_all();
        info!(
            "shutdown: restored {} of {n} thread(s) vdd had changed{}{}{}",
            o.restored.len(),
            if o.vanished.is_empty() {
                String::new()
            } else {
                format!("; exited {:?}", o.vanished)
            },
            if o.left_alone.is_empty() {
                String::new()
            } else {
                format!("; changed by someone else, left as is {:?}", o.left_alone)
            },
            if o.failed.is_empty() {
                String::new()
            } else {
                format!(
                    "; FAILED {:?} (kept in the state file for the next start)",
                    o.failed
                )
            },
        );
    }

    /// Seconds to the next tick.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.lock().policy.interval_ms)
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Runs until SIGTERM/SIGINT: binds the sockets, notifies readiness, samples every interval,
/// restores everything on the way out.
pub fn run(cfg: Config, config_file: Option<PathBuf>) -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let sa = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { sigaction(s, &sa) }.context("sigaction")?;
    }
    let mut d = Daemon::start(cfg.clone(), config_file)?;
    let listener = crate::control::bind(&cfg.daemon.socket)
        .with_context(|| format!("control socket {}", cfg.daemon.socket.display()))?;
    crate::control::spawn_server(listener, Arc::new(SharedHandler(d.shared())))?;
    let maddr = cfg.metrics_addr().map_err(anyhow::Error::msg)?;
    let sh = d.shared();
    crate::metrics::spawn(
        &maddr,
        Arc::new(move || {
            let s = sh.lock().unwrap_or_else(|p| p.into_inner());
            crate::metrics::render(&s.vms, &s.status_now())
        }),
    )
    .with_context(|| format!("metrics endpoint {:?}", cfg.daemon.metrics))?;
    let input_vms = crate::inputvms::InputVms::start(&cfg)?;
    let sriov_view = d.lock().sriov.clone();
    let sriov_thread = crate::sriov::spawn(cfg.clone(), sriov_view, &STOP)
        .context("starting the SR-IOV thread")?;
    d.tick();
    info!(
        "vdd ready: control socket {}, metrics {}, state file {}, every {} ms",
        cfg.daemon.socket.display(),
        if cfg.daemon.metrics.is_empty() {
            "off"
        } else {
            &cfg.daemon.metrics
        },
        cfg.daemon.state_file.display(),
        d.interval().as_millis()
    );
    match crate::notify::ready("watching VMs") {
        Ok(true) => info!("readiness sent to NOTIFY_SOCKET"),
        Ok(false) => {}
        Err(e) => warn!("NOTIFY_SOCKET: {e}"),
    }
    let mut next = Instant::now() + d.interval();
    while !STOP.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= next {
            d.tick();
            next += d.interval();
            if next < Instant::now() {
                next = Instant::now() + d.interval(); // overran: no catch-up burst
            }
            continue;
        }
        std::thread::sleep((next - now).min(Duration::from_millis(50)));
    }
    info!("signal received: restoring and exiting");
    let _ = crate::notify::stopping();
    d.shutdown();
    input_vms.stop();
    if sriov_thread.join().is_err() {
        error!("the SR-IOV thread panicked");
    }
    let _ = std::fs::remove_file(&cfg.daemon.socket);
    if let crate::config::MetricsAddr::Unix(p) = maddr {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}
