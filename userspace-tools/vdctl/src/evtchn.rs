//! `vdctl evtchn list|stats|watch`: event channels on this host.

use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use vd_sys::evtchn::Domain;
use vd_uapi::{vde_backend, vde_state, VdeListEntry};

#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct ChannelRow {
    pub domain_pid: u32,
    pub channel: u32,
    pub state: &'static str,
    pub backend: &'static str,
    pub entries: u32,
    pub requests: u64,
    pub responses: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub kicks: u64,
    pub wakeups: u64,
    pub irqs: u64,
    pub irqs_suppressed: u64,
    pub errors: u64,
    pub req_errors: u64,
    /// The channel belongs to its guest (`VDE_IOC_ORPHAN`): it lives until the guest's VMM
    /// closes its kick eventfd; `domain_pid` is the process that created it.
    pub orphan: bool,
    /// The process that last kicked the channel (0: none yet): for a QEMU guest's channel the
    /// guest's QEMU (its vCPU thread takes the doorbell), where `domain_pid` is the server that
    /// created it.
    pub kick_pid: u32,
}

pub fn state_name(s: u32) -> &'static str {
    match s {
        vde_state::IDLE => "idle",
        vde_state::ACTIVE => "active",
        vde_state::FAILED => "failed",
        _ => "?",
    }
}

pub fn backend_name(b: u32) -> &'static str {
    match b {
        vde_backend::NONE => "none",
        vde_backend::ECHO => "echo",
        vde_backend::NULL => "null",
        vde_backend::BLOCK => "block",
        vde_backend::USER => "user",
        _ => "?",
    }
}

impl From<&VdeListEntry> for ChannelRow {
    fn from(e: &VdeListEntry) -> Self {
        let s = &e.stats;
        Self {
            domain_pid: e.domain_pid,
            channel: s.id,
            state: state_name(s.state),
            backend: backend_name(s.backend),
            entries: s.entries,
            requests: s.counters.requests,
            responses: s.counters.responses,
            bytes_in: s.counters.bytes_in,
            bytes_out: s.counters.bytes_out,
            kicks: s.counters.kicks,
            wakeups: s.counters.wakeups,
            irqs: s.counters.irqs,
            irqs_suppressed: s.counters.irqs_suppressed,
            errors: s.counters.errors,
            req_errors: s.counters.req_errors,
            orphan: e.flags & vd_uapi::VDE_LIST_ORPHAN != 0,
            kick_pid: e.kick_pid,
        }
    }
}

/// Per-domain totals.
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct DomainRow {
    pub domain_pid: u32,
    pub channels: u32,
    pub failed: u32,
    pub requests: u64,
    pub responses: u64,
    pub bytes: u64,
    pub kicks: u64,
    pub irqs: u64,
    pub irqs_suppressed: u64,
    pub errors: u64,
}

pub fn totals(rows: &[ChannelRow]) -> Vec<DomainRow> {
    let mut m: BTreeMap<u32, DomainRow> = BTreeMap::new();
    for r in rows {
        let d = m.entry(r.domain_pid).or_insert_with(|| DomainRow {
            domain_pid: r.domain_pid,
            ..Default::default()
        });
        d.channels += 1;
        d.failed += u32::from(r.state == "failed");
        d.requests += r.requests;
        d.responses += r.responses;
        d.bytes += r.bytes_in + r.bytes_out;
        d.kicks += r.kicks;
        d.irqs += r.irqs;
        d.irqs_suppressed += r.irqs_suppressed;
        d.errors += r.errors;
    }
    m.into_values().collect()
}

pub fn read_all() -> Result<Vec<ChannelRow>> {
    let d = Domain::open().context(
        "open /dev/vd_evtchn: is vd_evtchn loaded (insmod vd_evtchn.ko) and are you root?",
    )?;
    let list = d.list_all().context("VDE_IOC_LIST")?;
    let me = std::process::id();
    // Our own (empty) domain has no channels, so nothing of ours shows up.
    Ok(list
        .iter()
        .filter(|e| e.domain_pid != me)
        .map(ChannelRow::from)
        .collect())
}

pub fn list(json: bool) -> Result<()> {
    let rows = read_all()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:>7} {:>3} {:<7} {:<6} {:>7} {:>10} {:>10} {:>8} {:>8} {:>8} {:>6} {:<6} {:>7}",
        "DOMAIN",
        "CH",
        "STATE",
        "BACKND",
        "ENTRIES",
        "REQUESTS",
        "RESPONSES",
        "KICKS",
        "IRQS",
        "SUPPR",
        "ERRORS",
        "OWNER",
        "KICKER"
    );
    for r in &rows {
        println!(
            "{:>7} {:>3} {:<7} {:<6} {:>7} {:>10} {:>10} {:>8} {:>8} {:>8} {:>6} {:<6} {:>7}",
            r.domain_pid,
            r.channel,
            r.state,
            r.backend,
            r.entries,
            r.requests,
            r.responses,
            r.kicks,
            r.irqs,
            r.irqs_suppressed,
            r.errors,
            if r.orphan { "guest" } else { "domain" },
            kicker(r.kick_pid)
        );
    }
    if rows.is_empty() {
        println!("(no channels)");
    }
    Ok(())
}

/// The KICKER column: the pid, `-` before the first kick.
fn kicker(pid: u32) -> String {
    if pid == 0 {
        "-".into()
    } else {
        pid.to_string()
    }
}

pub fn stats(pid: Option<u32>, json: bool) -> Result<()> {
    let mut t = totals(&read_all()?);
    if let Some(p) = pid {
        t.retain(|d| d.domain_pid == p);
        anyhow::ensure!(
            !t.is_empty(),
            "no domain with pid {p}: see `vdctl evtchn list`"
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&t)?);
        return Ok(());
    }
    println!(
        "{:>7} {:>4} {:>6} {:>10} {:>10} {:>12} {:>8} {:>8} {:>8} {:>6}",
        "DOMAIN",
        "CHAN",
        "FAILED",
        "REQUESTS",
        "RESPONSES",
        "BYTES",
        "KICKS",
        "IRQS",
        "SUPPR",
        "ERRORS"
    );
    for d in &t {
        println!(
            "{:>7} {:>4} {:>6} {:>10} {:>10} {:>12} {:>8} {:>8} {:>8} {:>6}",
            d.domain_pid,
            d.channels,
            d.failed,
            d.requests,
            d.responses,
            d.bytes,
            d.kicks,
            d.irqs,
            d.irqs_suppressed,
            d.errors
        );
    }
    Ok(())
}

/// Rates of one domain over one interval.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Rate {
    pub domain_pid: u32,
    pub requests_per_s: f64,
    pub kicks_per_s: f64,
    pub irqs_per_s: f64,
    pub requests_per_kick: f64,
}

pub fn rates(before: &[DomainRow], after: &[DomainRow], secs: f64) -> Vec<Rate> {
    after
        .iter()
        .map(|a| {
            let b = before
                .iter()
                .find(|b| b.domain_pid == a.domain_pid)
                .cloned()
                .unwrap_or_default();
            let req = a.requests.saturating_sub(b.requests) as f64;
            let kicks = a.kicks.saturating_sub(b.kicks) as f64;
            Rate {
                domain_pid: a.domain_pid,
                requests_per_s: req / secs,
                kicks_per_s: kicks / secs,
                irqs_per_s: a.irqs.saturating_sub(b.irqs) as f64 / secs,
                requests_per_kick: if kicks > 0.0 { req / kicks } else { 0.0 },
            }
        })
        .collect()
}

pub fn watch(interval: Duration, count: Option<u64>, json: bool) -> Result<()> {
    let mut prev = totals(&read_all()?);
    let mut t0 = Instant::now();
    let mut n = 0;
    while count.is_none_or(|c| n < c) {
        std::thread::sleep(interval);
        let cur = totals(&read_all()?);
        let secs = t0.elapsed().as_secs_f64();
        t0 = Instant::now();
        let r = rates(&prev, &cur, secs);
        if json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!(
                "{:>7} {:>12} {:>10} {:>10} {:>9}",
                "DOMAIN", "REQ/S", "KICKS/S", "IRQS/S", "REQ/KICK"
            );
            for x in &r {
                println!(
                    "{:>7} {:>12.1} {:>10.1} {:>10.1} {:>9.1}",
                    x.domain_pid,
                    x.requests_per_s,
                    x.kicks_per_s,
                    x.irqs_per_s,
                    x.requests_per_kick
                );
            }
        }
        prev = cur;
        n += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pid: u32, ch: u32, req: u64, kicks: u64, state: &'static str) -> ChannelRow {
        ChannelRow {
            domain_pid: pid,
            channel: ch,
            requests: req,
            kicks,
            state,
            ..Default::default()
        }
    }

    #[test]
    fn totals_group_by_domain() {
        let t = totals(&[
            row(10, 0, 5, 1, "active"),
            row(11, 0, 7, 2, "failed"),
            row(10, 1, 3, 1, "active"),
        ]);
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].domain_pid, t[0].channels, t[0].requests, t[0].kicks),
            (10, 2, 8, 2)
        );
        assert_eq!((t[1].domain_pid, t[1].failed), (11, 1));
    }

    #[test]
    fn rates_over_an_interval() {
        let b = totals(&[row(10, 0, 100, 10, "active")]);
        let a = totals(&[row(10, 0, 300, 20, "active"), row(12, 0, 50, 5, "active")]);
        let r = rates(&b, &a, 2.0);
        assert_eq!(r[0].requests_per_s, 100.0);
        assert_eq!(r[0].requests_per_kick, 20.0);
        assert_eq!(r[1].requests_per_s, 25.0, "a new domain counts from zero");
    }

    #[test]
    fn rows_carry_the_kicker() {
        let e = VdeListEntry {
            domain_pid: 10,
            kick_pid: 20,
            flags: vd_uapi::VDE_LIST_ORPHAN,
            ..Default::default()
        };
        let r = ChannelRow::from(&e);
        assert_eq!((r.domain_pid, r.kick_pid, r.orphan), (10, 20, true));
        let j = serde_json::to_string(&r).unwrap();
        assert!(j.contains("\"kick_pid\":20"), "{j}");
        assert_eq!(kicker(0), "-");
        assert_eq!(kicker(20), "20");
    }

    #[test]
    fn names() {
        assert_eq!(state_name(vde_state::FAILED), "failed");
        assert_eq!(backend_name(vde_backend::BLOCK), "block");
        assert_eq!(backend_name(99), "?");
    }
}
