//! `vdctl sriov list|numvfs|lease|release|policy|events|rate`: SR-IOV VFs on this host.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vd_sys::sriov::{bdf_name, event_name, parse_bdf, phase_name, Manager};
use vd_uapi::*;

fn open() -> Result<Manager> {
    Manager::open().context("open /dev/vd_sriov: is vd_sriov_mgr loaded (insmod vd_sriov_mgr.ko)?")
}

fn fixed(b: &[u8]) -> String {
    crate::dev::fixed_str(b)
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct PfRow {
    pub pf: String,
    pub driver: String,
    pub total_vfs: u32,
    pub num_vfs: u32,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct VfRow {
    pub vf: String,
    pub pf: String,
    pub vf_index: u32,
    pub phase: &'static str,
    pub driver: String,
    pub netdev: String,
    pub mac: String,
    pub vm_id: Option<u64>,
    pub owner_pid: Option<u32>,
    pub held_ms: u64,
    pub keep_host: bool,
    pub assigned: bool,
    pub idle: bool,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rate_bps: Option<u64>,
    pub counters_pushed: bool,
    /// Where the counters come from: `netdev` (the VF's host netdev), `pushed` (the holder's
    /// `VDS_IOC_SAMPLE`), `pf-mirror` (the PF's mirror of a passed-through VF's statistics,
    /// since the lease began) or `none`.
    pub source: &'static str,
}

/// Where a VF's counters come from (see [`VfRow::source`]).
pub fn counter_source(flags: u32) -> &'static str {
    if flags & vds_vf::PUSHED != 0 {
        "pushed"
    } else if flags & vds_vf::PF_MIRROR != 0 {
        "pf-mirror"
    } else if flags & vds_vf::NETDEV != 0 {
        "netdev"
    } else {
        "none"
    }
}

impl From<&VdsPf> for PfRow {
    fn from(p: &VdsPf) -> Self {
        Self {
            pf: bdf_name(p.bdf),
            driver: fixed(&p.driver),
            total_vfs: p.total_vfs,
            num_vfs: p.num_vfs,
        }
    }
}

pub fn mac_str(m: &[u8]) -> String {
    m[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl From<&VdsVf> for VfRow {
    fn from(v: &VdsVf) -> Self {
        let leased = v.vm_id != 0;
        Self {
            vf: bdf_name(v.bdf),
            pf: bdf_name(v.pf_bdf),
            vf_index: v.vf_index,
            phase: phase_name(v.phase),
            driver: fixed(&v.driver),
            netdev: fixed(&v.netdev),
            mac: mac_str(&v.mac),
            vm_id: leased.then_some(v.vm_id),
            owner_pid: leased.then_some(v.owner_pid),
            held_ms: v.held_ms,
            keep_host: v.flags & vds_vf::KEEP_HOST != 0,
            assigned: v.flags & vds_vf::ASSIGNED != 0,
            idle: v.flags & vds_vf::IDLE != 0,
            rx_bytes: v.rx_bytes,
            tx_bytes: v.tx_bytes,
            rx_packets: v.rx_packets,
            tx_packets: v.tx_packets,
            rate_bps: (v.flags & vds_vf::HAS_RATE != 0).then_some(v.rate_bps),
            counters_pushed: v.flags & vds_vf::PUSHED != 0,
            source: counter_source(v.flags),
        }
    }
}

#[derive(Serialize, Debug)]
struct Listing {
    pfs: Vec<PfRow>,
    vfs: Vec<VfRow>,
}

pub fn list(json: bool) -> Result<()> {
    let m = open()?;
    let pfs: Vec<PfRow> = m
        .pfs()
        .context("VDS_IOC_PF")?
        .iter()
        .map(PfRow::from)
        .collect();
    let vfs: Vec<VfRow> = m
        .vfs()
        .context("VDS_IOC_VF")?
        .iter()
        .map(VfRow::from)
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&Listing { pfs, vfs })?);
        return Ok(());
    }
    println!("{:<13} {:<10} {:>5} {:>4}", "PF", "DRIVER", "TOTAL", "VFS");
    for p in &pfs {
        println!(
            "{:<13} {:<10} {:>5} {:>4}",
            p.pf, p.driver, p.total_vfs, p.num_vfs
        );
    }
    println!();
    println!(
        "{:<13} {:>3} {:<8} {:<9} {:<8} {:<17} {:>6} {:>7} {:<9} {:>12} {:>12} {:>10}",
        "VF",
        "IDX",
        "PHASE",
        "DRIVER",
        "NETDEV",
        "MAC",
        "VM",
        "PID",
        "SOURCE",
        "RX_BYTES",
        "TX_BYTES",
        "RATE_B/S"
    );
    for v in &vfs {
        println!(
            "{:<13} {:>3} {:<8} {:<9} {:<8} {:<17} {:>6} {:>7} {:<9} {:>12} {:>12} {:>10}{}",
            v.vf,
            v.vf_index,
            v.phase,
            if v.driver.is_empty() { "-" } else { &v.driver },
            if v.netdev.is_empty() { "-" } else { &v.netdev },
            v.mac,
            v.vm_id.map_or("-".into(), |x| x.to_string()),
            v.owner_pid.map_or("-".into(), |x| x.to_string()),
            v.source,
            v.rx_bytes,
            v.tx_bytes,
            v.rate_bps.map_or("-".into(), |x| x.to_string()),
            if v.idle { "  idle" } else { "" }
        );
    }
    if vfs.is_empty() {
        println!("(no VFs: `vdctl sriov numvfs <pf> <n>` creates them)");
    }
    Ok(())
}

/// The PF named, or the only one.
fn pick_pf(m: &Manager, pf: Option<&str>) -> Result<VdsPf> {
    let pfs = m.pfs()?;
    match pf {
        Some(s) => {
            let b = parse_bdf(s).with_context(|| format!("bad PCI address {s}"))?;
            pfs.into_iter()
                .find(|p| p.bdf == b)
                .with_context(|| format!("{s} is not an SR-IOV PF"))
        }
        None if pfs.len() == 1 => Ok(pfs[0]),
        None => bail!("{} SR-IOV PFs: name one", pfs.len()),
    }
}

/// Sets the VF count through the PF's `sriov_numvfs` (the PF driver's `sriov_configure`).
pub fn numvfs(pf: Option<&str>, n: u32, json: bool) -> Result<()> {
    let m = open()?;
    let p = pick_pf(&m, pf)?;
    anyhow::ensure!(
        n <= p.total_vfs,
        "{} has at most {} VFs",
        bdf_name(p.bdf),
        p.total_vfs
    );
    let path = format!("/sys/bus/pci/devices/{}/sriov_numvfs", bdf_name(p.bdf));
    std::fs::write(&path, format!("{n}\n")).with_context(|| {
        format!("write {n} to {path} (changing a nonzero count needs 0 first; the PF driver refuses to disable VFs that are leased)")
    })?;
    let after = pick_pf(&m, Some(&bdf_name(p.bdf)))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&PfRow::from(&after))?);
    } else {
        println!("{}: {} VFs", bdf_name(after.bdf), after.num_vfs);
    }
    Ok(())
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn catch_stop_signals() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let sa = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { sigaction(s, &sa) }?;
    }
    Ok(())
}

/// Waits up to `t` for an event of `kind` on `bdf` in `m`'s queue.
fn wait_event(m: &Manager, kind: u32, bdf: u32, t: Duration) -> Result<Option<VdsEvent>> {
    let end = Instant::now() + t;
    while Instant::now() < end {
        if !m.poll_readable(end.saturating_duration_since(Instant::now()))? {
            continue;
        }
        for e in m.read_events()? {
            if e.kind == kind && e.bdf == bdf {
                return Ok(Some(e));
            }
        }
    }
    Ok(None)
}

/// Takes a lease and holds it (the lease lives as long as this process's file) until `hold`
/// elapses or SIGTERM/SIGINT; then releases it and waits for the VF to be back on the host.
pub fn lease(vf: &str, vm: u64, keep_host: bool, hold: Option<f64>, json: bool) -> Result<()> {
    catch_stop_signals()?;
    let m = open()?;
    let want = if vf == "any" {
        VDS_ANY
    } else {
        parse_bdf(vf).with_context(|| format!("bad PCI address {vf}"))?
    };
    let got = m
        .lease(want, vm, if keep_host { VDS_LEASE_KEEP_HOST } else { 0 })
        .with_context(|| format!("lease {vf} for VM {vm} (EPERM: needs CAP_NET_ADMIN; EBUSY: taken; EEXIST: VM has one; ENXIO: vfio-pci refused it)"))?;
    let row = m.vfs()?.iter().find(|v| v.bdf == got).map(VfRow::from);
    if json {
        println!("{}", serde_json::to_string(&row)?);
    } else {
        println!(
            "leased {} to VM {vm} (driver {})",
            bdf_name(got),
            row.as_ref().map_or("?".into(), |r| r.driver.clone())
        );
    }
    let end = hold.map(|s| Instant::now() + Duration::from_secs_f64(s));
    while !STOP.load(Ordering::SeqCst) && end.is_none_or(|e| Instant::now() < e) {
        std::thread::sleep(Duration::from_millis(50));
    }
    match m.release(got, vm) {
        Ok(()) => {}
        // Revoked (the VF disappeared) or swapped away meanwhile: nothing left to release.
        Err(
            e @ (nix::errno::Errno::ENODEV | nix::errno::Errno::EPERM | nix::errno::Errno::ENOENT),
        ) => {
            println!("lease on {} already ended ({e})", bdf_name(got));
            return Ok(());
        }
        Err(e) => return Err(e).context("VDS_IOC_RELEASE"),
    }
    match wait_event(&m, vds_event::RETURNED, got, Duration::from_secs(30))? {
        Some(e) if e.err == 0 => println!("released {}: back on the host", bdf_name(got)),
        Some(e) => bail!(
            "released {}, but moving it back failed: errno {}",
            bdf_name(got),
            -e.err
        ),
        None => bail!(
            "released {}, not back on the host after 30 s",
            bdf_name(got)
        ),
    }
    Ok(())
}

/// Sets VF `vf`'s MAC address through its PF driver.
pub fn mac(vf: &str, mac: &str, json: bool) -> Result<()> {
    parse_bdf(vf).with_context(|| format!("bad PCI address {vf} (DDDD:BB:DD.F)"))?;
    let m = vd_sys::vfmac::parse_mac(mac)
        .with_context(|| format!("bad MAC address {mac} (aa:bb:cc:dd:ee:ff)"))?;
    let p = vd_sys::vfmac::set_vf_mac(vf, m).with_context(|| {
        format!("setting {vf}'s MAC through its PF driver (needs CAP_NET_ADMIN; a multicast or zero address is refused)")
    })?;
    let mac = vd_sys::vfmac::mac_string(&m);
    if json {
        println!(
            "{}",
            serde_json::json!({"vf": vf, "mac": mac, "pf": p.pf, "pf_netdev": p.pf_netdev, "vf_index": p.vf_index})
        );
    } else {
        println!(
            "{vf} (VF {} of {} {}): MAC {mac}",
            p.vf_index, p.pf, p.pf_netdev
        );
    }
    Ok(())
}

/// Moves `vf`'s lease from VM `from` to the waiting VM `to` (VDS_IOC_SWAP).
pub fn swap(vf: &str, from: u64, to: u64, force: bool, json: bool) -> Result<()> {
    let m = open()?;
    let b = parse_bdf(vf).with_context(|| format!("bad PCI address {vf} (DDDD:BB:DD.F)"))?;
    m.swap(b, from, to, force).map_err(|e| {
        let hint = vd_sys::sriov::swap_errno_hint(e);
        let force_hint = if e == nix::errno::Errno::EAGAIN && !force {
            "; --force moves it anyway"
        } else {
            ""
        };
        anyhow::anyhow!(
            "moving {vf}'s lease from VM {from} to VM {to}: {e}{}{hint}{force_hint} (`vdctl sriov list` shows leases; VM {to} must be waiting for a VF)",
            if hint.is_empty() { "" } else { ": " }
        )
    })?;
    if json {
        println!(
            "{}",
            serde_json::json!({"vf": vf, "from_vm": from, "to_vm": to, "forced": force})
        );
    } else {
        println!("{vf}: lease moved from VM {from} to VM {to}");
    }
    Ok(())
}

/// Ends the lease on `vf` held by a `vdctl sriov lease` process (asks it to release). Leases of
/// other processes (VMMs) end only when they release them or close the device.
pub fn release(vf: &str, json: bool) -> Result<()> {
    let m = open()?;
    let b = parse_bdf(vf).with_context(|| format!("bad PCI address {vf}"))?;
    let v = m
        .vfs()?
        .into_iter()
        .find(|v| v.bdf == b)
        .with_context(|| format!("no VF {vf}"))?;
    anyhow::ensure!(v.vm_id != 0, "{vf} is not leased");
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", v.owner_pid)).unwrap_or_default();
    if comm.trim() != "vdctl" {
        bail!(
            "{vf} is leased to VM {} by pid {} ({}): a lease belongs to its holder's open file and ends when the holder releases it or exits",
            v.vm_id,
            v.owner_pid,
            comm.trim()
        );
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(v.owner_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if let Some(now) = m.vfs()?.iter().find(|x| x.bdf == b) {
            if now.vm_id == 0 && now.phase == vds_phase::HOST {
                if json {
                    println!("{}", serde_json::to_string(&VfRow::from(now))?);
                } else {
                    println!(
                        "released {vf} (was VM {}), driver {}",
                        v.vm_id,
                        fixed(&now.driver)
                    );
                }
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "{vf} still leased 30 s after asking pid {} to release it",
        v.owner_pid
    )
}

#[derive(Serialize, Debug)]
struct PolicyOut {
    threshold_bps: u64,
    hysteresis_bps: u64,
    window_ms: u32,
    min_hold_ms: u32,
    sample_ms: u32,
    candidates: Vec<CandRow>,
}

#[derive(Serialize, Debug)]
struct CandRow {
    kind: &'static str,
    vf: Option<String>,
    vm_id: u64,
    rate_bps: Option<u64>,
    age_ms: u64,
}

/// Policy settings; each `Some` changes one.
#[derive(Debug, Default)]
pub struct PolicyChange {
    pub threshold: Option<u64>,
    pub hysteresis: Option<u64>,
    pub window_ms: Option<u32>,
    pub min_hold_ms: Option<u32>,
    pub sample_ms: Option<u32>,
}

pub fn policy(c: PolicyChange, json: bool) -> Result<()> {
    let m = open()?;
    let mut p = m.policy()?;
    let changing = c.threshold.is_some()
        || c.hysteresis.is_some()
        || c.window_ms.is_some()
        || c.min_hold_ms.is_some()
        || c.sample_ms.is_some();
    if changing {
        p.threshold_bps = c.threshold.unwrap_or(p.threshold_bps);
        p.hysteresis_bps = c.hysteresis.unwrap_or(p.hysteresis_bps);
        p.window_ms = c.window_ms.unwrap_or(p.window_ms);
        p.min_hold_ms = c.min_hold_ms.unwrap_or(p.min_hold_ms);
        p.sample_ms = c.sample_ms.unwrap_or(p.sample_ms);
        m.set_policy(&p).context("VDS_IOC_POLICY_SET (EPERM: needs CAP_NET_ADMIN; EINVAL: window 100..600000 ms and at most 62 sample periods, sample 50..10000 ms)")?;
        p = m.policy()?;
    }
    let candidates = m
        .candidates()?
        .iter()
        .map(|c| CandRow {
            kind: if c.kind == vds_cand::HOLDER {
                "idle-holder"
            } else {
                "waiter"
            },
            vf: (c.kind == vds_cand::HOLDER).then(|| bdf_name(c.bdf)),
            vm_id: c.vm_id,
            rate_bps: (c.kind == vds_cand::HOLDER).then_some(c.rate_bps),
            age_ms: c.age_ms,
        })
        .collect();
    let out = PolicyOut {
        threshold_bps: p.threshold_bps,
        hysteresis_bps: p.hysteresis_bps,
        window_ms: p.window_ms,
        min_hold_ms: p.min_hold_ms,
        sample_ms: p.sample_ms,
        candidates,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("threshold {} B/s, hysteresis {} B/s, window {} ms, minimum hold {} ms, sampling every {} ms", out.threshold_bps, out.hysteresis_bps, out.window_ms, out.min_hold_ms, out.sample_ms);
        for c in &out.candidates {
            println!(
                "  {:<11} vm {:<6} vf {:<13} rate {:>8} B/s  age {} ms",
                c.kind,
                c.vm_id,
                c.vf.as_deref().unwrap_or("-"),
                c.rate_bps.map_or("-".into(), |r| r.to_string()),
                c.age_ms
            );
        }
    }
    Ok(())
}

#[derive(Serialize, Debug, PartialEq)]
pub struct RateRow {
    pub vf: String,
    pub max_tx_mbps: u32,
    pub min_tx_mbps: u32,
}

impl From<&VdsRate> for RateRow {
    fn from(r: &VdsRate) -> Self {
        Self {
            vf: bdf_name(r.bdf),
            max_tx_mbps: r.max_tx_mbps,
            min_tx_mbps: r.min_tx_mbps,
        }
    }
}

/// Shows VF `vf`'s transmit rate limits; with `mbps`, sets them first (and shows what the PF
/// driver kept).
pub fn rate(vf: &str, mbps: Option<u32>, min: u32, json: bool) -> Result<()> {
    let m = open()?;
    let b = parse_bdf(vf).with_context(|| format!("bad PCI address {vf}"))?;
    if let Some(max) = mbps {
        m.set_rate(b, max, min).map_err(|e| {
            let why = match e {
                nix::errno::Errno::EOPNOTSUPP => "the PF driver does not support per-VF rate limits (no ndo_set_vf_rate, or no PF netdev)",
                nix::errno::Errno::EINVAL => "refused by the PF driver (igb: the PF link must be up, the rate at most its link speed, no minimum)",
                nix::errno::Errno::EPERM => "needs CAP_NET_ADMIN",
                nix::errno::Errno::ENODEV => "no such VF (or its PF is going away)",
                _ => "",
            };
            anyhow::anyhow!("set the rate of {vf} to {max} Mbit/s: {e}{}{why}", if why.is_empty() { "" } else { ": " })
        })?;
    }
    let r = m.rate(b).map_err(|e| {
        let why = if e == nix::errno::Errno::EOPNOTSUPP {
            ": the PF driver does not report per-VF rates"
        } else {
            ""
        };
        anyhow::anyhow!("read the rate of {vf}: {e}{why}")
    })?;
    let row = RateRow::from(&r);
    if json {
        println!("{}", serde_json::to_string(&row)?);
    } else if row.max_tx_mbps == 0 {
        println!(
            "{}: no transmit rate limit (min {} Mbit/s)",
            row.vf, row.min_tx_mbps
        );
    } else {
        println!(
            "{}: max_tx_rate {} Mbit/s, min_tx_rate {} Mbit/s",
            row.vf, row.max_tx_mbps, row.min_tx_mbps
        );
    }
    Ok(())
}

#[derive(Serialize, Debug, PartialEq)]
pub struct EventRow {
    pub seq: u64,
    pub kind: &'static str,
    pub vf: Option<String>,
    pub vm_id: u64,
    pub other: u64,
    pub time_ns: u64,
    pub err: i32,
}

impl From<&VdsEvent> for EventRow {
    fn from(e: &VdsEvent) -> Self {
        Self {
            seq: e.seq,
            kind: event_name(e.kind),
            vf: (e.bdf != 0).then(|| bdf_name(e.bdf)),
            vm_id: e.vm_id,
            other: e.other_vm,
            time_ns: e.time_ns,
            err: e.err,
        }
    }
}

/// Prints events as they come (one JSON object per line with --json), until `count` events or
/// `timeout` seconds.
pub fn events(count: Option<u64>, timeout: Option<f64>, json: bool) -> Result<()> {
    catch_stop_signals()?;
    let m = open()?;
    let end = timeout.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut n = 0;
    while count.is_none_or(|c| n < c) && !STOP.load(Ordering::SeqCst) {
        let left = end.map_or(Duration::from_millis(200), |e| {
            e.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200))
        });
        if end.is_some_and(|e| Instant::now() >= e) {
            break;
        }
        if !m.poll_readable(left)? {
            continue;
        }
        for e in m.read_events()? {
            let r = EventRow::from(&e);
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{:>6} {:<11} vf {:<13} vm {:<6} other {:<6} err {}",
                    r.seq,
                    r.kind,
                    r.vf.as_deref().unwrap_or("-"),
                    r.vm_id,
                    r.other,
                    r.err
                );
            }
            n += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_decode_the_abi() {
        let mut v = VdsVf {
            bdf: 0x0182,
            pf_bdf: 0x0100,
            vf_index: 2,
            phase: vds_phase::LEASED,
            vm_id: 7,
            owner_pid: 42,
            flags: vds_vf::HAS_RATE | vds_vf::IDLE,
            rate_bps: 12,
            ..Default::default()
        };
        v.driver[..8].copy_from_slice(b"vfio-pci");
        v.mac[..6].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        let r = VfRow::from(&v);
        assert_eq!(
            (r.vf.as_str(), r.pf.as_str(), r.phase, r.driver.as_str()),
            ("0000:01:10.2", "0000:01:00.0", "leased", "vfio-pci")
        );
        assert_eq!(
            (r.vm_id, r.owner_pid, r.rate_bps, r.idle),
            (Some(7), Some(42), Some(12), true)
        );
        assert_eq!(r.mac, "52:54:00:12:34:56");
        let free = VfRow::from(&VdsVf::default());
        assert_eq!((free.vm_id, free.rate_bps), (None, None));
    }

    #[test]
    fn counter_sources() {
        assert_eq!(VfRow::from(&VdsVf::default()).source, "none");
        let src = |flags| counter_source(flags);
        assert_eq!(src(vds_vf::NETDEV), "netdev");
        assert_eq!(src(vds_vf::PF_MIRROR), "pf-mirror");
        // Pushed samples take precedence (the module never sets both, but a netdev may exist).
        assert_eq!(src(vds_vf::PUSHED | vds_vf::NETDEV), "pushed");
        assert_eq!(src(vds_vf::PUSHED | vds_vf::PF_MIRROR), "pushed");
    }

    #[test]
    fn rate_rows() {
        let r = RateRow::from(&VdsRate {
            bdf: 0x0181,
            flags: 0,
            max_tx_mbps: 100,
            min_tx_mbps: 0,
        });
        assert_eq!(
            (r.vf.as_str(), r.max_tx_mbps, r.min_tx_mbps),
            ("0000:01:10.1", 100, 0)
        );
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"vf":"0000:01:10.1","max_tx_mbps":100,"min_tx_mbps":0}"#
        );
    }

    #[test]
    fn event_rows() {
        let e = EventRow::from(&VdsEvent {
            seq: 3,
            kind: vds_event::SWAPPED,
            bdf: 0x0180,
            vm_id: 2,
            other_vm: 1,
            ..Default::default()
        });
        assert_eq!(
            (e.kind, e.vf.as_deref(), e.other),
            ("swapped", Some("0000:01:10.0"), 1)
        );
        assert_eq!(
            EventRow::from(&VdsEvent {
                kind: vds_event::WAITING,
                ..Default::default()
            })
            .vf,
            None
        );
    }
}
