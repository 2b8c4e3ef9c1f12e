//! `vdctl`: the operator's tool for the vd modules and daemon.

mod daemon;
mod dev;
mod evtchn;
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
    /// VMs as the vdd daemon sees them.
    #[command(subcommand)]
    Vm(VmCmd),
    /// vdd's placement policy.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// The vdd daemon itself.
    #[command(subcommand)]
    Daemon(DaemonCmd),
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
        self.socket.clone().or_else(|| std::env::var_os("VDD_SOCKET").map(Into::into)).unwrap_or_else(|| "/run/vdd/vdd.sock".into())
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
        /// interval_ms, window_ms, threshold, hysteresis, hold_ms, slice_us, max_vms_on_driver_cores, manage_pinned.
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

fn main() -> std::process::ExitCode {
    // Die quietly on a closed pipe (`vdctl ... | head`), like other Unix tools, instead of
    // panicking in println!.
    // SAFETY: setting a signal's disposition to the default has no preconditions.
    let _ = unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) };
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Status => status::run(cli.json),
        Cmd::Evtchn(c) => match c {
            EvtchnCmd::List => evtchn::list(cli.json),
            EvtchnCmd::Stats { pid } => evtchn::stats(pid, cli.json),
            EvtchnCmd::Watch { interval, count } => {
                evtchn::watch(std::time::Duration::from_secs_f64(interval.max(0.05)), count, cli.json)
            }
        }
        .map(|()| std::process::ExitCode::SUCCESS),
        Cmd::Vm(VmCmd::List(s)) => daemon::vm_list(&s.path(), cli.json).map(|()| std::process::ExitCode::SUCCESS),
        Cmd::Vm(VmCmd::Show { pid, sock }) => daemon::vm_show(&sock.path(), pid, cli.json).map(|()| std::process::ExitCode::SUCCESS),
        Cmd::Policy(PolicyCmd::Get(s)) => daemon::policy_get(&s.path(), cli.json).map(|()| std::process::ExitCode::SUCCESS),
        Cmd::Policy(PolicyCmd::Set { key, value, sock }) => {
            daemon::policy_set(&sock.path(), key, value, cli.json).map(|()| std::process::ExitCode::SUCCESS)
        }
        Cmd::Daemon(DaemonCmd::Status(s)) => daemon::status(&s.path(), cli.json).map(|()| std::process::ExitCode::SUCCESS),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vdctl: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
