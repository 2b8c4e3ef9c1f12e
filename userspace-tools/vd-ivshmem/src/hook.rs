//! `vd-libvirt-hook`: libvirt's `qemu` hook for vd disks.
//!
//! libvirt runs `/etc/libvirt/hooks/qemu DOMAIN OPERATION SUB_OPERATION EXTRA` (and, since
//! libvirt 6.5, every executable in `/etc/libvirt/hooks/qemu.d/`) with the domain's XML on
//! stdin. Install this binary as one of those. On `prepare begin`, before QEMU starts, it starts
//! the server of each vd disk of the domain (`libvirt.rs`: an `ivshmem-doorbell` shmem whose
//! server socket is in `/run/vd-ivshmem`): it checks `/etc/vd/ivshmem/NAME.env`, runs `systemctl
//! start vd-ivshmem@NAME.service` (a `Type=notify` unit: `start` returns once the socket
//! listens) and checks the socket. Any failure exits 1 with the reason on stderr: libvirt shows
//! it and does not start the domain (QEMU would otherwise fail with a bare "Failed to connect").
//! Every other operation does nothing: a server serves every boot of its guest and outlives
//! it, and stopping one is the operator's decision.
//!
//! A hook gets no options; the environment overrides the defaults (tests, other layouts):
//! `VD_IVSHMEM_RUN_DIR` (`/run/vd-ivshmem`), `VD_IVSHMEM_CONF_DIR` (`/etc/vd/ivshmem`),
//! `VD_SYSTEMCTL` (`systemctl`).

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use vd_ivshmem::libvirt::{vd_disks, VdDisk};

fn env_or(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// Starts the server of `disk` and checks that it listens.
fn start(disk: &VdDisk, conf_dir: &Path, systemctl: &Path) -> Result<()> {
    let env = conf_dir.join(format!("{}.env", disk.name));
    let conf = std::fs::read_to_string(&env).with_context(|| {
        format!(
            "{} is missing: create it with IMAGE=<the disk image or block device> (see \
             vd-ivshmem@.service)",
            env.display()
        )
    })?;
    if !conf.lines().any(|l| l.trim_start().starts_with("IMAGE=")) {
        bail!(
            "{} has no IMAGE= line (the disk image is required)",
            env.display()
        );
    }
    let unit = format!("vd-ivshmem@{}.service", disk.name);
    let st = Command::new(systemctl)
        .args(["start", &unit])
        .status()
        .with_context(|| format!("run {} start {unit}", systemctl.display()))?;
    if !st.success() {
        bail!("`systemctl start {unit}` failed ({st}): see `journalctl -u {unit}`");
    }
    match std::fs::metadata(&disk.socket) {
        Ok(m) if m.file_type().is_socket() => Ok(()),
        _ => bail!(
            "{unit} started but {} is not a listening socket: is SOCKET= in {} another path?",
            disk.socket.display(),
            env.display()
        ),
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [domain, op, sub, ..] = args.as_slice() else {
        bail!("usage: vd-libvirt-hook DOMAIN OPERATION SUB_OPERATION [EXTRA] (libvirt's qemu hook; the domain XML on stdin)");
    };
    if (op.as_str(), sub.as_str()) != ("prepare", "begin") {
        return Ok(());
    }
    let mut xml = String::new();
    std::io::stdin()
        .read_to_string(&mut xml)
        .context("read the domain XML from stdin")?;
    let run_dir = env_or("VD_IVSHMEM_RUN_DIR", "/run/vd-ivshmem");
    let conf_dir = env_or("VD_IVSHMEM_CONF_DIR", "/etc/vd/ivshmem");
    let systemctl = env_or("VD_SYSTEMCTL", "systemctl");
    let disks = vd_disks(&xml, &run_dir).with_context(|| format!("domain {domain}"))?;
    for d in &disks {
        start(d, &conf_dir, &systemctl)
            .with_context(|| format!("domain {domain}: vd disk {}", d.name))?;
        eprintln!(
            "vd-libvirt-hook: domain {domain}: vd disk {} served on {}",
            d.name,
            d.socket.display()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vd-libvirt-hook: {e:#}");
            ExitCode::FAILURE
        }
    }
}
