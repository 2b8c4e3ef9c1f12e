//! `vdctl`: the operator's tool for the vd modules and daemon.

mod daemon;
mod dev;
mod evtchn;
mod input;
mod sriov;
mod status;

use clap::{Parser, Subcommand};

/// Operate the vd virtual-desktop I/O modules.
#[derive(Parser, Debug)]
#[command(name = "vdctl", version, about)]
struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Which vd modules are loaded, their ABI versions and how busy they are.
    Status,
    /// Event channels (vd_evtchn).
    #[command(subcommand)]
    Evtchn(EvtchnCmd),
    /// Input devices routed to VMs (vd_input_irq).
    #[command(subcommand)]
    Input(InputCmd),
    /// SR-IOV VFs (vd_sriov_mgr): inventory, leases, reassignment policy, events.
    #[command(subcommand)]
    Sriov(SriovCmd),
    /// VMs as the vdd daemon sees them.
    #[command(subcommand)]
    Vm(VmCmd),
    /// vdd's placement policy.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// The vdd daemon itself.
    #[command(subcommand)]
    Daemon(DaemonCmd),
    /// Give the routed input devices to VM_ID (0: to no VM): through vdd when it runs, else
    /// straight to vd_input_irq (same as `vdctl input focus`).
    Focus {
        vm_id: u32,
        #[command(flatten)]
        sock: Sock,
    },
}

/// vdd's control socket (for `vm`, `policy`, `daemon`).
#[derive(clap::Args, Debug)]
struct Sock {
    /// vdd's control socket [default: $VDD_SOCKET, else /run/vdd/vdd.sock].
    #[arg(long)]
    socket: Option<std::path::PathBuf>,
}

impl Sock {
    fn path(&self) -> std::path::PathBuf {
        self.socket
            .clone()
            .or_else(|| std::env::var_os("VDD_SOCKET").map(Into::into))
            .unwrap_or_else(|| "/run/vdd/vdd.sock".into())
    }
}

#[derive(Subcommand, Debug)]
enum VmCmd {
    /// Every VM with its I/O rate and placement.
    List(Sock),
    /// One VM with its vCPU threads (affinity and slice now and before vdd changed them).
    Show {
        /// The VMM's process id.
        pid: u32,
        #[command(flatten)]
        sock: Sock,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyCmd {
    /// The running thresholds and timings.
    Get(Sock),
    /// Change one threshold or timing now (not written to the config file).
    Set {
        /// interval_ms, window_ms, threshold, hysteresis, hold_ms, slice_us, max_vms_on_driver_cores, manage_pinned, other_exits_weight.
        key: String,
        value: String,
        #[command(flatten)]
        sock: Sock,
    },
}

#[derive(Subcommand, Debug)]
enum DaemonCmd {
    /// Sources, driver cores, slice mode, counts.
    Status(Sock),
}

#[derive(Subcommand, Debug)]
enum SriovCmd {
    /// SR-IOV PFs and every VF: driver, netdev, MAC, lease, counters, window rate.
    List,
    /// Set a PF's VF count (writes its sriov_numvfs: the PF driver's sriov_configure).
    Numvfs {
        /// Number of VFs (0 disables; a nonzero count can only be changed through 0).
        n: u32,
        /// The PF (DDDD:BB:DD.F) [default: the only SR-IOV PF].
        #[arg(long)]
        pf: Option<String>,
    },
    /// Lease a VF to a VM and hold it until --for elapses or SIGTERM/SIGINT, then release it.
    Lease {
        /// The VF (DDDD:BB:DD.F) or `any`.
        vf: String,
        /// The VM id.
        #[arg(long)]
        vm: u64,
        /// Keep the VF on its host driver (netdev-mode lease, no vfio-pci).
        #[arg(long)]
        keep_host: bool,
        /// Seconds to hold the lease [default: until a signal].
        #[arg(long = "for")]
        hold: Option<f64>,
    },
    /// End a lease held by a `vdctl sriov lease` process.
    Release {
        /// The VF (DDDD:BB:DD.F).
        vf: String,
    },
    /// Show (or change) the reassignment policy, and the current candidates.
    Policy {
        /// Window-average rate under which a holder is a candidate (bytes/s).
        #[arg(long)]
        threshold: Option<u64>,
        /// A candidate is busy again only above threshold + this (bytes/s).
        #[arg(long)]
        hysteresis: Option<u64>,
        /// Sliding window (ms).
        #[arg(long)]
        window_ms: Option<u32>,
        /// Minimum time a holder keeps its VF before it can be a candidate (ms).
        #[arg(long)]
        min_hold_ms: Option<u32>,
        /// Sampling period of host netdev counters (ms).
        #[arg(long)]
        sample_ms: Option<u32>,
    },
    /// Print events as they happen.
    Events {
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Move a VF's lease from one VM to a VM waiting for a VF (VDS_IOC_SWAP), as vdd's step 1
    /// does; the VF's devices in the VMMs are the caller's business (vdd does both).
    Swap {
        /// The VF (DDDD:BB:DD.F).
        vf: String,
        /// The VM holding it now.
        #[arg(long)]
        from: u64,
        /// The waiting VM that gets it.
        #[arg(long)]
        to: u64,
        /// Even if the module does not find the holder idle.
        #[arg(long)]
        force: bool,
    },
    /// Set a VF's MAC address through its PF driver (rtnetlink IFLA_VF_MAC, as `ip link set PF
    /// vf N mac M`): a VF given to a guest with net_failover must carry its standby NIC's MAC.
    Mac {
        /// The VF (DDDD:BB:DD.F).
        vf: String,
        /// The address (aa:bb:cc:dd:ee:ff).
        mac: String,
    },
    /// Show (or set) a VF's transmit rate limit, kept by its PF driver (ndo_set_vf_rate).
    Rate {
        /// The VF (DDDD:BB:DD.F).
        vf: String,
        /// New maximum transmit rate in Mbit/s (0: unlimited) [default: only show it].
        mbps: Option<u32>,
        /// Guaranteed minimum transmit rate in Mbit/s (igb supports none).
        #[arg(long, default_value_t = 0)]
        min: u32,
    },
}

#[derive(Subcommand, Debug)]
enum EvtchnCmd {
    /// Every channel on the host with its counters.
    List,
    /// Per-domain (per-VM) totals.
    Stats {
        /// Only the domain of this VMM process.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Per-domain rates, refreshed every interval.
    Watch {
        /// Seconds between samples.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many samples.
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum InputCmd {
    /// Every input device the module sees: routed, grabbed, which VM it delivers to.
    List,
    /// Make matching devices (now and future ones) follow the focus.
    Route {
        #[command(flatten)]
        m: input::Match,
        /// Grab them: the host's own handlers (console, evdev readers) stop seeing them.
        #[arg(long)]
        grab: bool,
    },
    /// Remove a route (the same selection it was added with; grabbing or not).
    Unroute {
        #[command(flatten)]
        m: input::Match,
        /// Only the grabbing route of this selection [default: either].
        #[arg(long)]
        grab: bool,
    },
    /// Give routed devices to VM_ID from the next frame on (0: to no VM); through vdd when it runs.
    Focus {
        vm_id: u32,
        #[command(flatten)]
        sock: Sock,
    },
    /// Delivery counters of a VM (its id as the VMM gave it in VDI_IOC_VM_CREATE).
    Stats { vm_id: Option<u32> },
}

fn main() -> std::process::ExitCode {
    // Die quietly on a closed pipe (`vdctl ... | head`), like other Unix tools, instead of
    // panicking in println!.
    // SAFETY: setting a signal's disposition to the default has no preconditions.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let cli = Cli::parse();
    let r =
        match cli.cmd {
            Cmd::Status => status::run(cli.json),
            Cmd::Evtchn(c) => match c {
                EvtchnCmd::List => evtchn::list(cli.json),
                EvtchnCmd::Stats { pid } => evtchn::stats(pid, cli.json),
                EvtchnCmd::Watch { interval, count } => evtchn::watch(
                    std::time::Duration::from_secs_f64(interval.max(0.05)),
                    count,
                    cli.json,
                ),
            }
            .map(|()| std::process::ExitCode::SUCCESS),
            Cmd::Input(c) => match c {
                InputCmd::List => input::list(cli.json),
                InputCmd::Route { m, grab } => input::route(&m, grab, true, cli.json),
                InputCmd::Unroute { m, grab } => input::route(&m, grab, false, cli.json),
                InputCmd::Focus { vm_id, sock } => daemon::focus(&sock.path(), vm_id, cli.json),
                InputCmd::Stats { vm_id } => input::stats(vm_id, cli.json),
            }
            .map(|()| std::process::ExitCode::SUCCESS),
            Cmd::Sriov(c) => match c {
                SriovCmd::List => sriov::list(cli.json),
                SriovCmd::Numvfs { n, pf } => sriov::numvfs(pf.as_deref(), n, cli.json),
                SriovCmd::Lease {
                    vf,
                    vm,
                    keep_host,
                    hold,
                } => sriov::lease(&vf, vm, keep_host, hold, cli.json),
                SriovCmd::Release { vf } => sriov::release(&vf, cli.json),
                SriovCmd::Policy {
                    threshold,
                    hysteresis,
                    window_ms,
                    min_hold_ms,
                    sample_ms,
                } => sriov::policy(
                    sriov::PolicyChange {
                        threshold,
                        hysteresis,
                        window_ms,
                        min_hold_ms,
                        sample_ms,
                    },
                    cli.json,
                ),
                SriovCmd::Events { count, timeout } => sriov::events(count, timeout, cli.json),
                SriovCmd::Swap {
                    vf,
                    from,
                    to,
                    force,
                } => sriov::swap(&vf, from, to, force, cli.json),
                SriovCmd::Mac { vf, mac } => sriov::mac(&vf, &mac, cli.json),
                SriovCmd::Rate { vf, mbps, min } => sriov::rate(&vf, mbps, min, cli.json),
            }
            .map(|()| std::process::ExitCode::SUCCESS),
            Cmd::Vm(VmCmd::List(s)) => {
                daemon::vm_list(&s.path(), cli.json).map(|()| std::process::ExitCode::SUCCESS)
            }
            Cmd::Vm(VmCmd::Show { pid, sock }) => daemon::vm_show(&sock.path(), pid, cli.json)
                .map(|()| std::process::ExitCode::SUCCESS),
            Cmd::Policy(PolicyCmd::Get(s)) => {
                daemon::policy_get(&s.path(), cli.json).map(|()| std::process::ExitCode::SUCCESS)
            }
            Cmd::Policy(PolicyCmd::Set { key, value, sock }) => {
                daemon::policy_set(&sock.path(), key, value, cli.json)
                    .map(|()| std::process::ExitCode::SUCCESS)
            }
            Cmd::Daemon(DaemonCmd::Status(s)) => {
                daemon::status(&s.path(), cli.json).map(|()| std::process::ExitCode::SUCCESS)
            }
            Cmd::Focus { vm_id, sock } => daemon::focus(&sock.path(), vm_id, cli.json)
                .map(|()| std::process::ExitCode::SUCCESS),
        };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vdctl: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
