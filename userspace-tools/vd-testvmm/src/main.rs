//! `vd-testvmm`: a tiny rust-vmm based VMM for exercising KVM plumbing in test VMs.

mod asm;
// Shared VM plumbing; not every subcommand uses every helper.
#[allow(dead_code)]
mod guest;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Smoke { json } => cmd_smoke(&cli.kvm, json),
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
