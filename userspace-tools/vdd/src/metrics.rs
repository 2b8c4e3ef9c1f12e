//! OpenMetrics text exposition (built with the `prometheus-client` crate) over HTTP/1.0, on a
//! loopback TCP port or a UNIX socket (`curl --unix-socket /run/vdd/metrics.sock
//! http://x/metrics`). Any path answers.
//!
//! Series: per VM I/O rate and placement state, VF holders and rates (SR-IOV policy), input
//! focus and per-VM input queue depths (vd_input_irq), the daemon's counters. Counters are
//! registered without their `_total` suffix: the encoder adds it to the sample (OpenMetrics), so
//! the samples keep their names (`vdd_placements_total`) and the family's `# TYPE` line names the
//! family (`# TYPE vdd_placements counter`).
//!
//! The HTTP side stays ours: `prometheus-client` only encodes, and a one-page HTTP/1.0 answer on
//! a TCP port or a UNIX socket does not need an HTTP server crate.

use std::io::{self, Read, Write};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::warn;

use crate::config::MetricsAddr;
use crate::protocol::{StatusView, VmState, VmView};

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// A gauge's value from a count (saturating: a gauge is an i64).
fn int(x: impl TryInto<i64>) -> i64 {
    x.try_into().unwrap_or(i64::MAX)
}

/// Registers families on one registry, per snapshot.
struct Page(Registry);

impl Page {
    fn gauge(&mut self, name: &str, help: &str, v: i64) {
        let g = Gauge::<i64>::default();
        g.set(v);
        self.0.register(name, help, g);
    }
    fn counter(&mut self, name: &str, help: &str, v: u64) {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        self.0.register(name, help, c);
    }
    fn gauges(&mut self, name: &str, help: &str, rows: impl IntoIterator<Item = (Labels, i64)>) {
        let f = Family::<Labels, Gauge>::default();
        for (l, v) in rows {
            f.get_or_create(&l).set(v);
        }
        self.0.register(name, help, f);
    }
    fn float_gauges(
        &mut self,
        name: &str,
        help: &str,
        rows: impl IntoIterator<Item = (Labels, f64)>,
    ) {
        let f = Family::<Labels, FloatGauge>::default();
        for (l, v) in rows {
            f.get_or_create(&l).set(v);
        }
        self.0.register(name, help, f);
    }
    fn counters(&mut self, name: &str, help: &str, rows: impl IntoIterator<Item = (Labels, u64)>) {
        let f = Family::<Labels, Counter>::default();
        for (l, v) in rows {
            f.get_or_create(&l).inc_by(v);
        }
        self.0.register(name, help, f);
    }
}

/// The page for one snapshot.
pub fn render(vms: &[VmView], st: &StatusView) -> String {
    let mut p = Page(Registry::default());
    let pid = |v: &VmView| ("pid", v.pid.to_string());
    p.float_gauges(
        "vdd_vm_io_rate",
        "The policy's I/O rate over the window (io_exits + mmio_exits + vd_evtchn requests + other_exits_weight x other exits), per second.",
        vms.iter()
            .filter_map(|v| v.rates.map(|r| (vec![pid(v)], r.total))),
    );
    p.float_gauges(
        "vdd_vm_io_source_rate",
        "I/O requests per second by source.",
        vms.iter()
            .filter_map(|v| v.rates.map(|r| (v, r)))
            .flat_map(|(v, r)| {
                [
                    ("io_exits", r.io_exits),
                    ("mmio_exits", r.mmio_exits),
                    ("evtchn", r.evtchn_requests),
                    ("other_exits", r.other_exits),
                ]
                .map(|(s, x)| (vec![pid(v), ("source", s.to_owned())], x))
            }),
    );
    p.gauges(
        "vdd_vm_state",
        "1 for the VM's placement state (normal, placed, pinned, waiting).",
        vms.iter().flat_map(|v| {
            [
                (VmState::Normal, "normal"),
                (VmState::Placed, "placed"),
                (VmState::Pinned, "pinned"),
                (VmState::Waiting, "waiting"),
            ]
            .map(|(s, name)| {
                (
                    vec![pid(v), ("state", name.to_owned())],
                    i64::from(v.state == s),
                )
            })
        }),
    );
    p.gauges(
        "vdd_vm_vcpu_threads",
        "vCPU threads found for the VM.",
        vms.iter().map(|v| (vec![pid(v)], int(v.vcpus.len()))),
    );
    p.gauge("vdd_vms", "VMs seen.", int(st.vms));
    p.gauge(
        "vdd_placed_vms",
        "VMs on the driver cores.",
        int(st.placed_vms),
    );
    p.gauge(
        "vdd_managed_threads",
        "Threads whose affinity/slice vdd changed.",
        int(st.managed_threads),
    );
    p.counter(
        "vdd_placements",
        "VMs placed on the driver cores.",
        st.placements_total,
    );
    p.counter("vdd_restores", "VMs restored.", st.restores_total);
    p.counter("vdd_ticks", "Sampling rounds.", st.ticks);
    let sr = &st.sriov;
    p.gauge(
        "vdd_sriov_up",
        "1 when the SR-IOV policy has vd_sriov_mgr's device open.",
        i64::from(sr.state == "ok"),
    );
    p.gauges(
        "vdd_sriov_vf_holder",
        "1 for each VF and the VM holding its lease (vm=\"0\": free).",
        sr.vfs.iter().map(|v| {
            (
                vec![
                    ("vf", v.vf.to_string()),
                    ("vm", v.vm_id.unwrap_or(0).to_string()),
                ],
                1,
            )
        }),
    );
    p.gauges(
        "vdd_sriov_vf_rate_bps",
        "VF traffic over the module's window, bytes/s (leased VFs with a full window).",
        sr.vfs
            .iter()
            .filter_map(|v| v.rate_bps.map(|r| (vec![("vf", v.vf.to_string())], int(r)))),
    );
    p.gauges(
        "vdd_sriov_vf_idle",
        "1 when the VF's holder is a reassignment candidate.",
        sr.vfs
            .iter()
            .map(|v| (vec![("vf", v.vf.to_string())], i64::from(v.idle))),
    );
    p.counter(
        "vdd_sriov_reassignments",
        "VF reassignments carried out (swap, unplug, plug).",
        sr.reassignments_total,
    );
    p.counter(
        "vdd_sriov_reassign_failures",
        "Reassignments that failed after the swap and were rolled back.",
        sr.failures_total,
    );
    p.counter(
        "vdd_sriov_rollback_failures",
        "Rollbacks that failed.",
        sr.rollback_failures_total,
    );
    p.counter(
        "vdd_sriov_skipped",
        "Proposals left alone: a VM without a [[vm]] entry.",
        sr.skipped_total,
    );
    let inp = &st.input;
    p.gauge(
        "vdd_input_focused_vm",
        "The VM vdd gave the input focus to (0: none).",
        int(inp.focused.unwrap_or(0)),
    );
    p.counter(
        "vdd_input_focus_changes",
        "Focus changes made through vdd.",
        inp.focus_changes_total,
    );
    let vm = |id: u32| vec![("vm", id.to_string())];
    p.gauges(
        "vdd_input_queue_depth",
        "Input events waiting in the VM's queue (VDI_IOC_STATS).",
        inp.vms.iter().map(|v| (vm(v.vm_id), int(v.queue_depth))),
    );
    p.gauges(
        "vdd_input_queue_max_depth",
        "Deepest the VM's input queue has been.",
        inp.vms.iter().map(|v| (vm(v.vm_id), int(v.max_depth))),
    );
    p.counters(
        "vdd_input_dropped",
        "Input events the VM lost to overflow.",
        inp.vms.iter().map(|v| (vm(v.vm_id), v.dropped)),
    );
    p.gauges(
        "vdd_source_up",
        "1 when the counter source is readable.",
        st.sources
            .iter()
            .map(|(s, v)| (vec![("source", s.to_string())], i64::from(v == "ok"))),
    );
    let mut o = String::new();
    // Writing to a String cannot fail; an encoding error would leave a partial page.
    if let Err(e) = encode(&mut o, &p.0) {
        warn!("metrics: encoding: {e}");
    }
    o
}

/// Produces the current page.
pub type PageFn = Arc<dyn Fn() -> String + Send + Sync>;

fn answer<S: Read + Write>(mut s: S, page: &PageFn) {
    // Read (and ignore) the request head; a client that sends nothing still gets the page.
    let mut buf = [0u8; 2048];
    let mut got = Vec::new();
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.windows(4).any(|w| w == b"\r\n\r\n")
            || got.windows(2).any(|w| w == b"\n\n")
            || got.len() > 16384
        {
            break;
        }
    }
    let body = page();
    let _ = write!(
        s,
        "HTTP/1.0 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Starts the endpoint (nothing for [`MetricsAddr::None`]).
pub fn spawn(addr: &MetricsAddr, page: PageFn) -> io::Result<()> {
    let t = Some(Duration::from_secs(2));
    match addr {
        MetricsAddr::None => Ok(()),
        MetricsAddr::Tcp(a) => {
            let l = std::net::TcpListener::bind(a)?;
            std::thread::Builder::new()
                .name("vdd-metrics".into())
                .spawn(move || {
                    for c in l.incoming().flatten() {
                        let _ = c.set_read_timeout(t);
                        let _ = c.set_write_timeout(t);
                        answer(c, &page);
                    }
                })?;
            Ok(())
        }
        MetricsAddr::Unix(p) => {
            let l = crate::control::bind(p)?;
            std::thread::Builder::new()
                .name("vdd-metrics".into())
                .spawn(move || {
                    for c in l.incoming() {
                        match c {
                            Ok(c) => {
                                let _ = c.set_read_timeout(t);
                                let _ = c.set_write_timeout(t);
                                answer(c, &page);
                            }
                            Err(e) => {
                                warn!("metrics: accept: {e}");
                                std::thread::sleep(Duration::from_millis(100));
                            }
                        }
                    }
                })?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Rates;
    use crate::protocol::{InputVmView, VfView};

    /// Every sample name the hand-written exposition had (the VM tests and the README read them),
    /// with a value, in a page that parses as OpenMetrics families.
    #[test]
    fn names_and_values_kept() {
        let vms = [VmView {
            pid: 7,
            name: None,
            state: VmState::Waiting,
            vcpus: vec![8, 9],
            rates: Some(Rates {
                total: 1.5,
                io_exits: 1.0,
                mmio_exits: 0.0,
                evtchn_requests: 0.5,
                other_exits: 0.0,
            }),
            state_secs: 0.0,
            cooling_secs: None,
            last_change: String::new(),
        }];
        let mut st = StatusView {
            vms: 1,
            placed_vms: 0,
            managed_threads: 2,
            placements_total: 3,
            restores_total: 4,
            ticks: 5,
            ..Default::default()
        };
        st.sources.insert("kvm".into(), "ok".into());
        st.sriov.state = "ok".into();
        st.sriov.vfs = vec![VfView {
            vf: "0000:01:10.0".into(),
            vm_id: Some(2),
            rate_bps: Some(u64::MAX),
            idle: true,
            configured: true,
        }];
        st.sriov.reassignments_total = 6;
        st.sriov.skipped_total = 7;
        st.input.focused = Some(6201);
        st.input.focus_changes_total = 8;
        st.input.vms = vec![InputVmView {
            vm_id: 6201,
            running: true,
            queue_depth: 9,
            max_depth: 10,
            queued: 0,
            dropped: 11,
        }];
        let page = render(&vms, &st);
        for line in [
            "vdd_vm_io_rate{pid=\"7\"} 1.5",
            "vdd_vm_io_source_rate{pid=\"7\",source=\"evtchn\"} 0.5",
            "vdd_vm_state{pid=\"7\",state=\"waiting\"} 1",
            "vdd_vm_state{pid=\"7\",state=\"placed\"} 0",
            "vdd_vm_vcpu_threads{pid=\"7\"} 2",
            "vdd_vms 1",
            "vdd_placed_vms 0",
            "vdd_managed_threads 2",
            "vdd_placements_total 3",
            "vdd_restores_total 4",
            "vdd_ticks_total 5",
            "vdd_sriov_up 1",
            "vdd_sriov_vf_holder{vf=\"0000:01:10.0\",vm=\"2\"} 1",
            // A gauge is an i64: a rate beyond it saturates.
            "vdd_sriov_vf_rate_bps{vf=\"0000:01:10.0\"} 9223372036854775807",
            "vdd_sriov_vf_idle{vf=\"0000:01:10.0\"} 1",
            "vdd_sriov_reassignments_total 6",
            "vdd_sriov_reassign_failures_total 0",
            "vdd_sriov_rollback_failures_total 0",
            "vdd_sriov_skipped_total 7",
            "vdd_input_focused_vm 6201",
            "vdd_input_focus_changes_total 8",
            "vdd_input_queue_depth{vm=\"6201\"} 9",
            "vdd_input_queue_max_depth{vm=\"6201\"} 10",
            "vdd_input_dropped_total{vm=\"6201\"} 11",
            "vdd_source_up{source=\"kvm\"} 1",
        ] {
            assert!(
                page.lines().any(|l| l == line),
                "missing {line:?} in\n{page}"
            );
        }
        assert!(page.contains("# TYPE vdd_input_dropped counter\n"));
        assert!(page.contains("# TYPE vdd_vm_io_rate gauge\n"));
        assert!(page.ends_with("# EOF\n"));
    }
}
