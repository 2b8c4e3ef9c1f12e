//! Prometheus text exposition (format 0.0.4) over HTTP/1.0, on a loopback TCP port or a UNIX
//! socket (`curl --unix-socket /run/vdd/metrics.sock http://x/metrics`). Any path answers.
//!
//! Series: per VM I/O rate and placement state, VF holders and rates (SR-IOV policy), input
//! focus and per-VM input queue depths (vd_input_irq), the daemon's counters.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::config::MetricsAddr;
use crate::protocol::{StatusView, VmState, VmView};

/// The page for one snapshot.
pub fn render(vms: &[VmView], st: &StatusView) -> String {
    let mut o = String::new();
    let fam = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    fam(
        &mut o,
        "vdd_vm_io_rate",
        "gauge",
        "I/O requests per second over the window (io_exits + mmio_exits + vd_evtchn requests).",
    );
    for v in vms {
        if let Some(r) = v.rates {
            let _ = writeln!(o, "vdd_vm_io_rate{{pid=\"{}\"}} {:.3}", v.pid, r.total);
        }
    }
    fam(
        &mut o,
        "vdd_vm_io_source_rate",
        "gauge",
        "I/O requests per second by source.",
    );
    for v in vms {
        if let Some(r) = v.rates {
            for (s, x) in [
                ("io_exits", r.io_exits),
                ("mmio_exits", r.mmio_exits),
                ("evtchn", r.evtchn_requests),
            ] {
                let _ = writeln!(
                    o,
                    "vdd_vm_io_source_rate{{pid=\"{}\",source=\"{s}\"}} {x:.3}",
                    v.pid
                );
            }
        }
    }
    fam(
        &mut o,
        "vdd_vm_state",
        "gauge",
        "1 for the VM's placement state (normal, placed, pinned, waiting).",
    );
    for v in vms {
        for (s, name) in [
            (VmState::Normal, "normal"),
            (VmState::Placed, "placed"),
            (VmState::Pinned, "pinned"),
            (VmState::Waiting, "waiting"),
        ] {
            let _ = writeln!(
                o,
                "vdd_vm_state{{pid=\"{}\",state=\"{name}\"}} {}",
                v.pid,
                u8::from(v.state == s)
            );
        }
    }
    fam(
        &mut o,
        "vdd_vm_vcpu_threads",
        "gauge",
        "vCPU threads found for the VM.",
    );
    for v in vms {
        let _ = writeln!(
            o,
            "vdd_vm_vcpu_threads{{pid=\"{}\"}} {}",
            v.pid,
            v.vcpus.len()
        );
    }
    fam(&mut o, "vdd_vms", "gauge", "VMs seen.");
    let _ = writeln!(o, "vdd_vms {}", st.vms);
    fam(
        &mut o,
        "vdd_placed_vms",
        "gauge",
        "VMs on the driver cores.",
    );
    let _ = writeln!(o, "vdd_placed_vms {}", st.placed_vms);
    fam(
        &mut o,
        "vdd_managed_threads",
        "gauge",
        "Threads whose affinity/slice vdd changed.",
    );
    let _ = writeln!(o, "vdd_managed_threads {}", st.managed_threads);
    fam(
        &mut o,
        "vdd_placements_total",
        "counter",
        "VMs placed on the driver cores.",
    );
    let _ = writeln!(o, "vdd_placements_total {}", st.placements_total);
    fam(&mut o, "vdd_restores_total", "counter", "VMs restored.");
    let _ = writeln!(o, "vdd_restores_total {}", st.restores_total);
    fam(&mut o, "vdd_ticks_total", "counter", "Sampling rounds.");
    let _ = writeln!(o, "vdd_ticks_total {}", st.ticks);
    let sr = &st.sriov;
    fam(
        &mut o,
        "vdd_sriov_up",
        "gauge",
        "1 when the SR-IOV policy has vd_sriov_mgr's device open.",
    );
    let _ = writeln!(o, "vdd_sriov_up {}", u8::from(sr.state == "ok"));
    fam(
        &mut o,
        "vdd_sriov_vf_holder",
        "gauge",
        "1 for each VF and the VM holding its lease (vm=\"0\": free).",
    );
    for v in &sr.vfs {
        let _ = writeln!(
            o,
            "vdd_sriov_vf_holder{{vf=\"{}\",vm=\"{}\"}} 1",
            v.vf,
            v.vm_id.unwrap_or(0)
        );
    }
    fam(
        &mut o,
        "vdd_sriov_vf_rate_bps",
        "gauge",
        "VF traffic over the module's window, bytes/s (leased VFs with a full window).",
    );
    for v in &sr.vfs {
        if let Some(r) = v.rate_bps {
            let _ = writeln!(o, "vdd_sriov_vf_rate_bps{{vf=\"{}\"}} {r}", v.vf);
        }
    }
    fam(
        &mut o,
        "vdd_sriov_vf_idle",
        "gauge",
        "1 when the VF's holder is a reassignment candidate.",
    );
    for v in &sr.vfs {
        let _ = writeln!(
            o,
            "vdd_sriov_vf_idle{{vf=\"{}\"}} {}",
            v.vf,
            u8::from(v.idle)
        );
    }
    for (n, h, x) in [
        (
            "vdd_sriov_reassignments_total",
            "VF reassignments carried out (swap, unplug, plug).",
            sr.reassignments_total,
        ),
        (
            "vdd_sriov_reassign_failures_total",
            "Reassignments that failed after the swap and were rolled back.",
            sr.failures_total,
        ),
        (
            "vdd_sriov_rollback_failures_total",
            "Rollbacks that failed.",
            sr.rollback_failures_total,
        ),
        (
            "vdd_sriov_skipped_total",
            "Proposals left alone: a VM without a [[vm]] entry.",
            sr.skipped_total,
        ),
    ] {
        fam(&mut o, n, "counter", h);
        let _ = writeln!(o, "{n} {x}");
    }
    let inp = &st.input;
    fam(
        &mut o,
        "vdd_input_focused_vm",
        "gauge",
        "The VM vdd gave the input focus to (0: none).",
    );
    let _ = writeln!(o, "vdd_input_focused_vm {}", inp.focused.unwrap_or(0));
    fam(
        &mut o,
        "vdd_input_focus_changes_total",
        "counter",
        "Focus changes made through vdd.",
    );
    let _ = writeln!(
        o,
        "vdd_input_focus_changes_total {}",
        inp.focus_changes_total
    );
    fam(
        &mut o,
        "vdd_input_queue_depth",
        "gauge",
        "Input events waiting in the VM's queue (VDI_IOC_STATS).",
    );
    for v in &inp.vms {
        let _ = writeln!(
            o,
            "vdd_input_queue_depth{{vm=\"{}\"}} {}",
            v.vm_id, v.queue_depth
        );
    }
    fam(
        &mut o,
        "vdd_input_queue_max_depth",
        "gauge",
        "Deepest the VM's input queue has been.",
    );
    for v in &inp.vms {
        let _ = writeln!(
            o,
            "vdd_input_queue_max_depth{{vm=\"{}\"}} {}",
            v.vm_id, v.max_depth
        );
    }
    fam(
        &mut o,
        "vdd_input_dropped_total",
        "counter",
        "Input events the VM lost to overflow.",
    );
    for v in &inp.vms {
        let _ = writeln!(
            o,
            "vdd_input_dropped_total{{vm=\"{}\"}} {}",
            v.vm_id, v.dropped
        );
    }
    fam(
        &mut o,
        "vdd_source_up",
        "gauge",
        "1 when the counter source is readable.",
    );
    for (s, v) in &st.sources {
        let _ = writeln!(o, "vdd_source_up{{source=\"{s}\"}} {}", u8::from(v == "ok"));
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
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
