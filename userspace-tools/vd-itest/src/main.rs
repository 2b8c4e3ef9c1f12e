//! `vd-itest`: integration checks of the vd modules, run inside the test VM by
//! `scripts/vmtests/*.sh`. Each subcommand prints one `ok:` line per check and exits non-zero
//! with the failed check's reason.

mod chan;
mod evtchn;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "vd-itest")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Channel lifecycle, argument validation, echo and null backends, statistics.
    EvtchnBasic,
    /// A ring with garbage indices/lengths fails alone; a second channel keeps working.
    EvtchnHostile,
    /// The block backend against a host file.
    EvtchnBlock {
        /// Backing file (created and sized by the test).
        #[arg(long, default_value = "/tmp/vd-disk.img")]
        file: String,
    },
    /// A userspace backend serving the ring through its own mapping.
    EvtchnUser,
    /// Save a channel with requests in flight, restore it in a new domain, nothing is lost.
    EvtchnRestore,
    /// Echo traffic on several channels until killed (for the VMM-kill test).
    EvtchnStress {
        /// Channels.
        #[arg(long, default_value_t = 4)]
        channels: u32,
    },
    /// Benchmark: echo throughput and requests per notification at ring sizes 64..4096, a
    /// process as the frontend and the in-kernel echo backend.
    EvtchnThroughput {
        /// Requests per ring size.
        #[arg(long, default_value_t = 20000)]
        requests: u64,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    let r = match Cli::parse().cmd {
        Cmd::EvtchnBasic => evtchn::basic(),
        Cmd::EvtchnHostile => evtchn::hostile(),
        Cmd::EvtchnBlock { file } => evtchn::block(&file),
        Cmd::EvtchnUser => evtchn::user(),
        Cmd::EvtchnRestore => evtchn::restore(),
        Cmd::EvtchnStress { channels } => evtchn::stress(channels),
        Cmd::EvtchnThroughput { requests, json } => evtchn::throughput(requests, json),
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            println!("FAIL: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `ok: <what>` when `cond`, else an error naming it.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($what:tt)*) => {{
        if $cond {
            println!("ok: {}", format!($($what)*));
        } else {
            anyhow::bail!("{} (check `{}` failed)", format!($($what)*), stringify!($cond));
        }
    }};
}
