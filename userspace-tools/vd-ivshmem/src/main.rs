//! `vd-ivshmem-server`: gives stock QEMU guests (`ivshmem-doorbell`) a vd_evtchn disk, or
//! (`--input VM`) a vd_input_irq input device.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::AsFd;
use vd_ivshmem::{
    ChannelGeometry, ChannelProvider, Config, Event, FakeProvider, KernelProvider, Server,
};

/// Serves one VM disk to QEMU's ivshmem-doorbell device through vd_evtchn.
///
/// QEMU: -chardev socket,path=SOCKET,id=vd0 -device ivshmem-doorbell,chardev=vd0,vectors=1
/// (start this server first: QEMU reads the setup while it creates the device and never
/// reconnects). Each QEMU that connects gets its own channel on the image; the channel belongs
/// to the guest: stopping, killing or restarting this server leaves running guests' disks
/// working. SIGTERM/SIGINT stop it.
///
/// With `--input VM` (instead of `--image`) the device is VM's input instead: a vd_input_irq
/// event ring in the shared memory, which the guest's vd_front makes an evdev device; host input
/// devices reach it with `vdctl input route` and `vdctl input focus VM`. The server follows the
/// QEMU's vCPU threads for the module and holds the VM while QEMU is connected.
#[derive(Parser, Debug)]
#[command(name = "vd-ivshmem-server", version, about, long_about)]
struct Cli {
    /// UNIX socket to listen on (a stale socket file is replaced; a live one is an error).
    #[arg(long)]
    socket: PathBuf,
    /// Disk image: a regular file or a block device, opened read-write and locked while a
    /// guest uses it.
    #[arg(long, required_unless_present = "input", conflicts_with = "input")]
    image: Option<PathBuf>,
    /// Serve VM's input (a VM id, not 0) instead of a disk.
    #[arg(long, value_name = "VM")]
    input: Option<u32>,
    /// Input event ring entries (a power of two, 8..=4096).
    #[arg(long, default_value_t = 256)]
    input_entries: u32,
    /// The vd_input_irq device (`--input`).
    #[arg(long, default_value = vd_sys::input::DEVICE)]
    input_device: PathBuf,
    /// Ring slots per direction (a power of two, 1..=4096).
    #[arg(long, default_value_t = 64)]
    entries: u32,
    /// Bytes per ring slot (a power of two, 32..=4096).
    #[arg(long, default_value_t = 64)]
    slot: u32,
    /// MiB of data area in the shared memory (1..=64; the guest's queue depth is this / 128 KiB).
    #[arg(long, default_value_t = 8)]
    data_mib: u32,
    /// One JSON object per event on stdout (logs stay on stderr).
    #[arg(long)]
    json: bool,
    /// The vd_evtchn device.
    #[arg(long, default_value = vd_sys::evtchn::DEVICE)]
    device: PathBuf,
    /// Socket file mode (octal): QEMU's user needs write access.
    #[arg(long, default_value = "0600", value_parser = parse_mode)]
    mode: u32,
    /// Socket file group (name or number), e.g. the group QEMU runs as.
    #[arg(long)]
    group: Option<String>,
    /// Seconds a new QEMU waits for the image while a previous guest's channel on it ends.
    #[arg(long, default_value_t = 10)]
    lock_wait: u64,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, default_value = "info")]
    log_level: tracing::Level,
    /// Tests of this binary only: channels are memfds and eventfds nothing serves (a guest would
    /// get a disk that never answers).
    #[arg(long, hide = true)]
    test_fake_channels: bool,
}

/// Logs an event (a warning if `bad`), and prints it as one JSON line with `--json`.
fn report<E: serde::Serialize>(json: bool, e: &E, message: &str, bad: bool) {
    if json {
        // A closed stdout must not stop the server (println! would panic).
        use std::io::Write;
        match serde_json::to_string(e) {
            Ok(s) => {
                let _ = writeln!(std::io::stdout().lock(), "{s}");
            }
            Err(err) => tracing::error!("event to JSON: {err}"),
        }
    }
    if bad {
        tracing::warn!("{message}");
    } else if json {
        tracing::debug!("{message}");
    } else {
        tracing::info!("{message}");
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s.trim_start_matches("0o"), 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("{s:?}: an octal mode such as 0600 or 0660")),
    }
}

fn parse_group(s: &str) -> Result<u32, String> {
    if let Ok(n) = s.parse() {
        return Ok(n);
    }
    let groups = std::fs::read_to_string("/etc/group").map_err(|e| format!("/etc/group: {e}"))?;
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid = f.nth(1)?;
            (name == s).then(|| gid.parse().ok()).flatten()
        })
        .next()
        .ok_or_else(|| format!("--group {s}: no such group in /etc/group"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_max_level(cli.log_level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let geometry =
        ChannelGeometry::new(cli.entries, cli.slot, cli.data_mib).map_err(anyhow::Error::msg)?;
    let gid = cli
        .group
        .as_deref()
        .map(parse_group)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    // SIGTERM and SIGINT arrive on a signalfd the server polls: blocked before anything else.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block()?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    let Some(image) = cli.image.clone() else {
        let vm_id = cli.input.unwrap_or(0);
        let cfg = vd_ivshmem::input::InputConfig {
            socket: cli.socket.clone(),
            mode: cli.mode,
            gid,
            vm_id,
            entries: cli.input_entries,
            device: cli.input_device.clone(),
        };
        let mut server = vd_ivshmem::input::InputServer::bind(cfg)?;
        let json = cli.json;
        let mut ready = false;
        server.run(sfd.as_fd(), &mut |e| {
            let bad = matches!(e, vd_ivshmem::input::InputEvent::Refused { .. });
            report(json, e, &e.message(), bad);
            if !ready {
                ready = true;
                if let Err(err) = sd_notify::notify(
                    false,
                    &[
                        sd_notify::NotifyState::Ready,
                        sd_notify::NotifyState::Status("listening"),
                    ],
                ) {
                    tracing::warn!("NOTIFY_SOCKET: {err}");
                }
            }
        })?;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        return Ok(());
    };
    let cfg = Config {
        socket: cli.socket.clone(),
        image,
        geometry,
        lock_wait: Duration::from_secs(cli.lock_wait),
        mode: cli.mode,
        gid,
    };
    if cli.test_fake_channels {
        tracing::warn!("--test-fake-channels: nothing serves the channels (tests only)");
        serve(Server::bind(cfg, FakeProvider::default())?, &sfd, cli.json)
    } else {
        let provider = KernelProvider::open(&cli.device)?;
        serve(Server::bind(cfg, provider)?, &sfd, cli.json)
    }
}

/// Runs the server until SIGTERM/SIGINT, logging each event (and printing it as JSON).
fn serve<P: ChannelProvider>(
    mut server: Server<P>,
    sfd: &SignalFd,
    json: bool,
) -> anyhow::Result<()> {
    let mut ready = false;
    server.run(sfd.as_fd(), &mut |e: &Event| {
        report(json, e, &e.message(), matches!(e, Event::Refused { .. }));
        if !ready {
            ready = true;
            if let Err(err) = sd_notify::notify(
                false,
                &[
                    sd_notify::NotifyState::Ready,
                    sd_notify::NotifyState::Status("listening"),
                ],
            ) {
                tracing::warn!("NOTIFY_SOCKET: {err}");
            }
        }
    })?;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    Ok(())
}
