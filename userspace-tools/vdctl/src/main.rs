//! `vdctl`: the operator's tool for the vd modules and daemon.

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
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vdctl: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
