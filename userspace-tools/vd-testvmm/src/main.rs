//! `vd-testvmm`: a tiny rust-vmm based VMM for exercising KVM plumbing in test VMs.

mod asm;
mod bench;
mod evtchn;
// Shared VM plumbing; not every subcommand uses every helper.
#[allow(dead_code)]
mod guest;
mod ringguest;
mod smoke;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "vd-testvmm", version, about)]
struct Cli {
    /// KVM device node to open.
    #[arg(long, global = true, default_value = guest::KVM_PATH)]
    kvm: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot a real-mode snippet that does 3 `out`s to an ioeventfd port, then `hlt`.
    Smoke {
        /// Print a single JSON object instead of a human-readable line.
        #[arg(long)]
        json: bool,
    },
    /// A real guest drives a vd_evtchn channel: requests in the ring, kicks through
    /// KVM_IOEVENTFD, answers from the in-kernel echo backend, interrupts through KVM_IRQFD.
    Evtchn {
        /// Who serves: the kernel (vd_evtchn) or this process after a KVM_EXIT_IO.
        #[arg(long, value_enum, default_value_t = evtchn::ServePath::Kernel)]
        path: evtchn::ServePath,
        /// Requests the guest sends.
        #[arg(long, default_value_t = 1000)]
        requests: u32,
        /// Requests per publish (and per interrupt asked for).
        #[arg(long, default_value_t = 16)]
        batch: u32,
        /// Ring entries (power of two).
        #[arg(long, default_value_t = 64)]
        entries: u32,
        /// Bytes per ring slot (power of two, 32..=4096).
        #[arg(long, default_value_t = 64)]
        entry_size: u32,
        /// Hostile guest: publish this req_prod instead of requests.
        #[arg(long)]
        hostile: Option<u32>,
        /// Seconds before giving up on the guest.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// The guest records the round trip of its first N batches (TSC); the report adds their
        /// median in ns (at most 8192).
        #[arg(long, default_value_t = 0)]
        samples: u32,
        /// Long-running latency probe: every MS milliseconds print a `probe ... median_ns=...` line
        /// with the median round trip of the batches finished since the previous line (give a
        /// large --requests; the guest samples every batch into a ring).
        #[arg(long, value_name = "MS")]
        probe_ms: Option<u64>,
        /// With --probe-ms: tell the guest to finish after SECS seconds (the final report then
        /// judges the requests it sent).
        #[arg(long, value_name = "SECS", requires = "probe_ms")]
        duration: Option<u64>,
        /// Print a single JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Round-trip latency (vd_evtchn vs. VMM exit vs. eventfd threads) and batching throughput.
    Bench {
        /// Round trips per latency measurement.
        #[arg(long, default_value_t = 2000)]
        rounds: u32,
        /// Print a single JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Smoke { json } => cmd_smoke(&cli.kvm, json),
        Command::Evtchn { path, requests, batch, entries, entry_size, hostile, timeout, samples, probe_ms, duration, json } => {
            let o = evtchn::Opts {
                path,
                requests,
                batch,
                entries,
                entry_size,
                hostile,
                samples,
                timeout: std::time::Duration::from_secs(timeout),
                probe: probe_ms.map(|ms| evtchn::Probe {
                    period: std::time::Duration::from_millis(ms),
                    duration: duration.map(std::time::Duration::from_secs),
                }),
            };
            let r = evtchn::run(&cli.kvm, &o).unwrap_or_else(|e| evtchn::Report::failed(&e));
            print_report(&r, json, evtchn::Report::human_line, r.pass)
        }
        Command::Bench { rounds, json } => match bench::run(&cli.kvm, rounds) {
            Ok(b) => print_report(&b, json, bench::BenchReport::human, true),
            Err(e) => {
                eprintln!("vd-testvmm bench: error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn print_report<T: serde::Serialize, S: std::fmt::Display>(r: &T, json: bool, human: impl Fn(&T) -> S, pass: bool) -> ExitCode {
    if json {
        match serde_json::to_string(r) {
            Ok(line) => println!("{line}"),
            Err(err) => {
                eprintln!("vd-testvmm: serialise report: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", human(r));
        println!();
    }
    if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn cmd_smoke(kvm_path: &str, json: bool) -> ExitCode {
    let report = match smoke::run(kvm_path) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("vd-testvmm smoke: error: {err:#}");
            smoke::SmokeReport::failed(&err)
        }
    };
    if json {
        match serde_json::to_string(&report) {
            Ok(line) => println!("{line}"),
            Err(err) => {
                eprintln!("vd-testvmm smoke: serialise report: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        println!("{}", report.human_line());
    }
    if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evtchn_samples_and_probe_options() {
        let c = Cli::try_parse_from(["vd-testvmm", "evtchn", "--samples", "100"]).unwrap();
        assert!(matches!(c.command, Command::Evtchn { samples: 100, probe_ms: None, duration: None, .. }));
        let c = Cli::try_parse_from(["vd-testvmm", "evtchn", "--probe-ms", "500", "--duration", "3"]).unwrap();
        assert!(matches!(c.command, Command::Evtchn { samples: 0, probe_ms: Some(500), duration: Some(3), .. }));
        // Without the new options: the old defaults.
        let c = Cli::try_parse_from(["vd-testvmm", "evtchn"]).unwrap();
        assert!(matches!(c.command, Command::Evtchn { requests: 1000, batch: 16, samples: 0, probe_ms: None, .. }));
        assert!(Cli::try_parse_from(["vd-testvmm", "evtchn", "--duration", "3"]).is_err(), "--duration needs --probe-ms");
    }
}
