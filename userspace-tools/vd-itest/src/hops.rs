// SPDX-License-Identifier: GPL-2.0
//! `vd-itest hops`: where a vd disk request's time goes, hop by hop (make bench,
//! `97-bench-guest-hops`).
//!
//! Two traces of TSC stamps (`rust/vd/hops.rs`) of the same requests:
//! - the guest's (vd_front's debugfs `hops`): `id published irq ended`;
//! - the host's (vd_evtchn's debugfs `hops`): `key id kick handler pushed` per request and
//!   `key 18446744073709551615 signalled 0 0` per interrupt sent.
//!
//! The guest's TSC is the host's scaled by KVM's ratio plus KVM's offset (the guest vCPU's
//! debugfs `tsc-offset` and `tsc-scaling-ratio`), so guest stamps convert to the host's clock
//! exactly and the two traces line up: a guest request is paired with the host record of the
//! same id whose handler ran between its publication and its end. Hops of a pair, in order:
//!
//! 1. doorbell: published (guest) -> the kick reached vd_evtchn's wait-queue entry (host, in the
//!    kicking vCPU thread): the guest's MMIO write, its exit, KVM's ioeventfd;
//! 2. wake-up: kick -> the channel's work item runs (host);
//! 3. backend: handler start -> response pushed (host: the request copied out, the file I/O);
//! 4. signal: pushed -> call eventfd signalled (publish, the irqfd's MSI route fired);
//! 5. interrupt: signalled -> vd_front's interrupt handler runs (guest);
//! 6. completion: handler -> request ended (guest: data copied out, blk-mq completion).

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use vd_testkit::stats::percentile;

/// `vd-itest hops` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// vd_evtchn's trace (a copy of /sys/kernel/debug/vd_evtchn/hops).
    #[arg(long)]
    host: PathBuf,
    /// vd_front's trace from the guest (its `hops ...` header line and the records after it;
    /// other lines before the header are skipped).
    #[arg(long)]
    guest: PathBuf,
    /// KVM's `tsc-offset` of the guest's vCPU (signed).
    #[arg(long, allow_hyphen_values = true)]
    tsc_offset: i64,
    /// KVM's `tsc-scaling-ratio` of the guest's vCPU (absent: no scaling).
    #[arg(long)]
    tsc_ratio: Option<u64>,
    /// Fraction bits of the ratio (32 on AMD SVM, 48 on Intel VMX).
    #[arg(long, default_value_t = 32)]
    ratio_frac_bits: u32,
    /// TSC ticks per second of the host (default: measured here for 200 ms).
    #[arg(long)]
    hz: Option<f64>,
    /// Fail when fewer requests pair up.
    #[arg(long, default_value_t = 100)]
    min_pairs: usize,
    /// One JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// The id vd_evtchn writes into an interrupt record.
const IRQ_ID: u64 = u64::MAX;

/// A host request record.
#[derive(Clone, Copy, Debug, PartialEq)]
struct HostReq {
    key: u64,
    id: u64,
    kick: u64,
    work: u64,
    pushed: u64,
}

/// A guest request record, in host TSC.
#[derive(Clone, Copy, Debug, PartialEq)]
struct GuestReq {
    id: u64,
    published: u64,
    irq: u64,
    ended: u64,
}

/// The hops of one request, in TSC ticks.
const HOPS: [&str; 6] = [
    "doorbell: guest publish -> host kick (MMIO exit, KVM ioeventfd)",
    "wake-up: kick -> vd_evtchn's work item runs",
    "backend: request copied, file I/O, response pushed",
    "signal: publish -> call eventfd signalled (irqfd)",
    "interrupt: signalled -> vd_front's handler (MSI-X into the guest)",
    "completion: handler -> request ended (guest)",
];

/// Parses a trace: skips lines until `hops N D`, then reads N records of `w` numbers each.
fn parse(text: &str, w: usize) -> Result<(Vec<Vec<u64>>, u64)> {
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
    let header = lines
        .by_ref()
        .find(|l| l.starts_with("hops "))
        .context("no `hops N D` header line")?;
    let mut h = header.split_whitespace().skip(1);
    let n: usize = h.next().context("header: no count")?.parse()?;
    let dropped: u64 = h.next().context("header: no drop count")?.parse()?;
    let mut recs = Vec::with_capacity(n);
    for l in lines.take(n) {
        let r = l
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<Vec<u64>, _>>()
            .with_context(|| format!("record {l:?}"))?;
        ensure!(r.len() == w, "record {l:?}: {} stamps, not {w}", r.len());
        recs.push(r);
    }
    ensure!(
        recs.len() == n,
        "{} records, the header says {n}",
        recs.len()
    );
    Ok((recs, dropped))
}

/// Host TSC of guest TSC `g`: KVM runs the guest at `g = (h * ratio >> frac) + offset`.
fn to_host(g: u64, offset: i64, ratio: Option<u64>, frac: u32) -> Option<u64> {
    let scaled = i128::from(g) - i128::from(offset);
    let h = match ratio {
        None => scaled,
        Some(0) => return None,
        Some(r) => (scaled << frac) / i128::from(r),
    };
    u64::try_from(h).ok()
}

/// Pairs each guest request with its host record and returns the hops of each pair (TSC
/// ticks) and the number of guest requests whose stamps contradict each other.
fn pair(
    host: &[HostReq],
    irqs: &HashMap<u64, Vec<u64>>,
    guest: &[GuestReq],
) -> (Vec<[u64; 6]>, usize) {
    let mut by_id: HashMap<u64, Vec<&HostReq>> = HashMap::new();
    for r in host {
        by_id.entry(r.id).or_default().push(r);
    }
    for v in by_id.values_mut() {
        v.sort_by_key(|r| r.work);
    }
    let (mut out, mut bad) = (Vec::new(), 0);
    for g in guest.iter().filter(|g| g.irq != 0) {
        let Some(cands) = by_id.get(&g.id) else {
            continue;
        };
        let i = cands.partition_point(|r| r.work < g.published);
        let Some(h) = cands.get(i).filter(|h| h.pushed <= g.irq) else {
            continue;
        };
        let Some(sig) = irqs.get(&h.key).and_then(|v| {
            let j = v.partition_point(|&t| t < h.pushed);
            v.get(j).copied()
        }) else {
            continue;
        };
        let t = [g.published, h.kick, h.work, h.pushed, sig, g.irq, g.ended];
        if t.windows(2).all(|w| w[0] <= w[1]) {
            out.push([
                t[1] - t[0],
                t[2] - t[1],
                t[3] - t[2],
                t[4] - t[3],
                t[5] - t[4],
                t[6] - t[5],
            ]);
        } else {
            bad += 1;
        }
    }
    (out, bad)
}

#[derive(Serialize)]
struct HopRow {
    hop: &'static str,
    median_ns: f64,
    p90_ns: f64,
    share_of_median_total: f64,
}

#[derive(Serialize)]
struct Report {
    guest_records: usize,
    host_requests: usize,
    pairs: usize,
    contradictory: usize,
    tsc_hz: f64,
    total_median_ns: f64,
    total_p90_ns: f64,
    /// Every hop but the backend's: the channel's own round trip (what an echo would take).
    transport_median_ns: f64,
    hops: Vec<HopRow>,
}

pub fn run(a: Args) -> Result<()> {
    let host_text =
        std::fs::read_to_string(&a.host).with_context(|| format!("read {}", a.host.display()))?;
    let guest_text =
        std::fs::read_to_string(&a.guest).with_context(|| format!("read {}", a.guest.display()))?;
    let (hrecs, hdrop) = parse(&host_text, 5).context("host trace")?;
    let (grecs, gdrop) = parse(&guest_text, 4).context("guest trace")?;
    ensure!(
        hdrop == 0 && gdrop == 0,
        "a trace overflowed (host dropped {hdrop}, guest {gdrop}): trace fewer requests"
    );
    let mut host = Vec::new();
    let mut irqs: HashMap<u64, Vec<u64>> = HashMap::new();
    for r in &hrecs {
        if r[1] == IRQ_ID {
            irqs.entry(r[0]).or_default().push(r[2]);
        } else {
            host.push(HostReq {
                key: r[0],
                id: r[1],
                kick: r[2],
                work: r[3],
                pushed: r[4],
            });
        }
    }
    for v in irqs.values_mut() {
        v.sort_unstable();
    }
    let conv = |t: u64| to_host(t, a.tsc_offset, a.tsc_ratio, a.ratio_frac_bits);
    let guest: Vec<GuestReq> = grecs
        .iter()
        .filter_map(|r| {
            Some(GuestReq {
                id: r[0],
                published: conv(r[1])?,
                irq: if r[2] == 0 { 0 } else { conv(r[2])? },
                ended: conv(r[3])?,
            })
        })
        .collect();
    let (pairs, bad) = pair(&host, &irqs, &guest);
    if pairs.len() < a.min_pairs {
        bail!(
            "only {} of {} guest requests paired with the host's {} ({} contradictory): wrong \
             tsc-offset, or the traces cover different requests",
            pairs.len(),
            guest.len(),
            host.len(),
            bad
        );
    }
    let hz = a.hz.unwrap_or_else(vd_testkit::tsc::tsc_hz);
    let ns = |ticks: u64| ticks as f64 * 1e9 / hz;
    let mut totals: Vec<u64> = pairs.iter().map(|p| p.iter().sum()).collect();
    let total_median = ns(percentile(&mut totals, 0.5));
    let total_p90 = ns(percentile(&mut totals, 0.9));
    let mut transport: Vec<u64> = pairs.iter().map(|p| p.iter().sum::<u64>() - p[2]).collect();
    let transport_median = ns(percentile(&mut transport, 0.5));
    let hops = HOPS
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let mut v: Vec<u64> = pairs.iter().map(|p| p[k]).collect();
            let median_ns = ns(percentile(&mut v, 0.5));
            HopRow {
                hop: name,
                median_ns,
                p90_ns: ns(percentile(&mut v, 0.9)),
                share_of_median_total: median_ns / total_median,
            }
        })
        .collect();
    let rep = Report {
        guest_records: guest.len(),
        host_requests: host.len(),
        pairs: pairs.len(),
        contradictory: bad,
        tsc_hz: hz,
        total_median_ns: total_median,
        total_p90_ns: total_p90,
        transport_median_ns: transport_median,
        hops,
    };
    if a.json {
        println!("{}", serde_json::to_string(&rep)?);
        return Ok(());
    }
    println!(
        "hops: {} requests paired (guest {}, host {}, contradictory {}), TSC {:.0} MHz",
        rep.pairs,
        rep.guest_records,
        rep.host_requests,
        rep.contradictory,
        hz / 1e6
    );
    println!(
        "{:<68} {:>10} {:>10} {:>6}",
        "hop", "median us", "p90 us", "share"
    );
    for h in &rep.hops {
        println!(
            "{:<68} {:>10.1} {:>10.1} {:>5.0}%",
            h.hop,
            h.median_ns / 1e3,
            h.p90_ns / 1e3,
            h.share_of_median_total * 100.0
        );
    }
    println!(
        "{:<68} {:>10.1} {:>10.1}",
        "guest publish -> request ended (sum of the hops)",
        total_median / 1e3,
        total_p90 / 1e3
    );
    println!(
        "{:<68} {:>10.1}",
        "transport: every hop but the backend (an echo's round trip)",
        transport_median / 1e3
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_parse_after_their_header_and_check_widths() {
        let (r, d) = parse("boot noise\nhops 2 0\n1 2 3 4\n5 6 7 8\nmore\n", 4).unwrap();
        assert_eq!((r, d), (vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]], 0));
        assert!(parse("hops 1 0\n1 2 3\n", 4).is_err());
        assert!(parse("hops 2 0\n1 2 3 4\n", 4).is_err());
        assert!(parse("1 2 3 4\n", 4).is_err());
    }

    #[test]
    fn guest_stamps_convert_with_kvm_offset_and_ratio() {
        assert_eq!(to_host(1_000, 400, None, 32), Some(600));
        assert_eq!(to_host(1_000, -400, None, 32), Some(1_400));
        assert_eq!(to_host(100, 400, None, 32), None);
        // Ratio 2.0 with 32 fraction bits: the guest's TSC runs twice as fast.
        assert_eq!(to_host(2_400, 400, Some(2 << 32), 32), Some(1_000));
        assert_eq!(to_host(1_000, 0, Some(1 << 32), 32), Some(1_000));
    }

    #[test]
    fn requests_pair_by_id_and_time_and_split_into_hops() {
        let host = [
            // An earlier request with the same id, before the guest's stamps.
            HostReq {
                key: 7,
                id: 3,
                kick: 5,
                work: 6,
                pushed: 8,
            },
            HostReq {
                key: 7,
                id: 3,
                kick: 110,
                work: 120,
                pushed: 150,
            },
            HostReq {
                key: 7,
                id: 4,
                kick: 310,
                work: 320,
                pushed: 330,
            },
        ];
        let irqs = HashMap::from([(7, vec![9, 160, 335])]);
        let guest = [
            GuestReq {
                id: 3,
                published: 100,
                irq: 200,
                ended: 230,
            },
            // Consumed without an interrupt (watchdog): not paired.
            GuestReq {
                id: 4,
                published: 300,
                irq: 0,
                ended: 400,
            },
            // No host record: not paired.
            GuestReq {
                id: 9,
                published: 500,
                irq: 510,
                ended: 520,
            },
        ];
        let (p, bad) = pair(&host, &irqs, &guest);
        assert_eq!(p, vec![[10, 10, 30, 10, 40, 30]]);
        assert_eq!(bad, 0);
        // A kick stamp older than the publication (a stale stamp) is contradictory.
        let host = [HostReq {
            key: 7,
            id: 3,
            kick: 50,
            work: 120,
            pushed: 150,
        }];
        let (p, bad) = pair(&host, &irqs, &guest[..1]);
        assert!(p.is_empty());
        assert_eq!(bad, 1);
    }
}
