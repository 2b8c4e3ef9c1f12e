//! `vdd`: the vd host daemon (see the library documentation).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vdd::config::Config;

/// Moves the vCPU threads of I/O-heavy VMs onto the host-driver cores, and back.
#[derive(Parser, Debug)]
#[command(name = "vdd", version, about)]
struct Cli {
    /// Configuration file (TOML; every key has a default, see vdd.example.toml). Without it,
    /// /etc/vdd/vdd.toml if present, else the defaults.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Check a configuration file (and resolve the driver cores on this host), then exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Log level, overriding [daemon] log_level.
    #[arg(long)]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(f) = &cli.check_config {
        return match Config::load(f) {
            Ok(c) => {
                println!("{}: valid", f.display());
                match vdd::daemon::resolve_driver_cores(&c) {
                    Ok((cores, from)) => println!(
                        "driver cores on this host: {} ({from})",
                        vdd::cpus::format(&cores)
                    ),
                    Err(e) => println!("warning: on this host: {e:#}"),
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vdd: {e}");
                ExitCode::from(1)
            }
        };
    }
    let default = PathBuf::from("/etc/vdd/vdd.toml");
    let (cfg, file) = match &cli.config {
        Some(f) => (Config::load(f), Some(f.clone())),
        None if default.exists() => (Config::load(&default), Some(default)),
        None => (Ok(Config::default()), None),
    };
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vdd: {e}");
            return ExitCode::from(1);
        }
    };
    let level = cli.log_level.as_deref().unwrap_or(&cfg.daemon.log_level);
    let level: tracing::Level = match level.parse() {
        Ok(l) => l,
        Err(_) => {
            eprintln!("vdd: log level {level:?}: one of error, warn, info, debug, trace");
            return ExitCode::from(1);
        }
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    if file.is_none() {
        tracing::info!("no configuration file: using the defaults (see vdd.example.toml)");
    }
    match vdd::daemon::run(cfg, file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}
