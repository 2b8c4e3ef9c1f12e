//! `vdctl`: the operator's tool for the vd modules and daemon.

mod dev;
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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Status => status::run(cli.json),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vdctl: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
