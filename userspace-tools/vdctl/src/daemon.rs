//! `vdctl vm|policy|daemon`: talks to vdd over its control socket.

use anyhow::{Context, Result};
use std::path::Path;
use vdd::control;
use vdd::protocol::{FocusView, PolicyView, Request, StatusView, VmDetail, VmState, VmView};

fn ask(sock: &Path, req: Request) -> Result<serde_json::Value> {
    Ok(control::request(sock, &req)?)
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn state_name(s: &VmState) -> &'static str {
    match s {
        VmState::Normal => "normal",
        VmState::Placed => "placed",
        VmState::Pinned => "pinned",
        VmState::Waiting => "waiting",
    }
}

fn rate(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{x:.0}"))
}

fn tids(v: &[u32]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    }
}

/// `vdctl vm list`.
pub fn vm_list(sock: &Path, json: bool) -> Result<()> {
    let v = ask(sock, Request::VmList)?;
    if json {
        return print_json(&v);
    }
    let vms: Vec<VmView> = serde_json::from_value(v).context("vdd's vm list")?;
    println!(
        "{:<8} {:<16} {:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}  VCPU-THREADS",
        "PID", "NAME", "STATE", "RATE/s", "IO/s", "MMIO/s", "EVTCHN/s", "OTHER/s", "FOR"
    );
    for m in &vms {
        let r = m.rates;
        println!(
            "{:<8} {:<16} {:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7.0}s  {}",
            m.pid,
            m.name.as_deref().unwrap_or("-"),
            state_name(&m.state),
            rate(r.map(|r| r.total)),
            rate(r.map(|r| r.io_exits)),
            rate(r.map(|r| r.mmio_exits)),
            rate(r.map(|r| r.evtchn_requests)),
            rate(r.map(|r| r.other_exits)),
            m.state_secs,
            tids(&m.vcpus)
        );
    }
    if vms.is_empty() {
        println!("(no VMs: none in KVM's debugfs nor in vd_evtchn; `vdctl daemon status` shows which sources are up)");
    }
    Ok(())
}

/// `vdctl vm show PID`.
pub fn vm_show(sock: &Path, pid: u32, json: bool) -> Result<()> {
    let v = ask(sock, Request::VmShow { pid })?;
    if json {
        return print_json(&v);
    }
    let d: VmDetail = serde_json::from_value(v).context("vdd's vm show")?;
    let m = &d.vm;
    let kv = |k: &str, v: String| println!("{k:<14} {v}");
    kv("pid", m.pid.to_string());
    kv(
        "state",
        format!("{} for {:.0}s", state_name(&m.state), m.state_secs),
    );
    match m.rates {
        Some(r) => kv("io rate", r.to_string()),
        None => kv("io rate", "- (measured from the second sample)".into()),
    }
    if let Some(c) = m.cooling_secs {
        kv("cooling", format!("{c:.1}s under threshold - hysteresis"));
    }
    kv("last change", m.last_change.clone());
    println!();
    println!(
        "{:<8} {:<10} {:>10} {:<8} {:<10} {:>10}",
        "TID", "AFFINITY", "SLICE_NS", "MANAGED", "ORIG_AFF", "ORIG_SLICE"
    );
    for t in &d.threads {
        println!(
            "{:<8} {:<10} {:>10} {:<8} {:<10} {:>10}",
            t.tid,
            t.affinity.as_deref().unwrap_or("(gone)"),
            t.slice_ns.map_or("-".into(), |s| s.to_string()),
            if t.managed { "yes" } else { "no" },
            t.orig_affinity.as_deref().unwrap_or("-"),
            t.orig_slice_ns.map_or("-".into(), |s| s.to_string())
        );
    }
    Ok(())
}

fn print_policy(v: serde_json::Value, json: bool) -> Result<()> {
    if json {
        return print_json(&v);
    }
    let p: PolicyView = serde_json::from_value(v).context("vdd's policy")?;
    let pv = serde_json::to_value(&p.policy)?;
    println!("{:<26} VALUE", "KEY");
    if let serde_json::Value::Object(m) = pv {
        for k in vdd::config::POLICY_KEYS {
            if let Some(v) = m.get(*k) {
                println!("{k:<26} {v}");
            }
        }
    }
    println!(
        "\n(not settable at runtime) driver_cores = {:?}, state_file = {}",
        p.config.host.driver_cores,
        p.config.daemon.state_file.display()
    );
    Ok(())
}

/// `vdctl policy get`.
pub fn policy_get(sock: &Path, json: bool) -> Result<()> {
    print_policy(ask(sock, Request::PolicyGet)?, json)
}

/// `vdctl policy set KEY VALUE`.
pub fn policy_set(sock: &Path, key: String, value: String, json: bool) -> Result<()> {
    print_policy(ask(sock, Request::PolicySet { key, value })?, json)
}

/// `vdctl daemon status`.
pub fn status(sock: &Path, json: bool) -> Result<()> {
    let v = ask(sock, Request::Status)?;
    if json {
        return print_json(&v);
    }
    let s: StatusView = serde_json::from_value(v).context("vdd's status")?;
    let kv = |k: &str, v: String| println!("{k:<18} {v}");
    kv("pid", s.pid.to_string());
    kv("version", s.version.clone());
    kv(
        "config",
        s.config_file.clone().unwrap_or_else(|| "(defaults)".into()),
    );
    kv(
        "uptime",
        format!("{:.0}s ({} samples)", s.uptime_secs, s.ticks),
    );
    kv(
        "driver cores",
        format!("{} ({})", s.driver_cores, s.driver_cores_from),
    );
    kv("slice", s.slice_mode.clone());
    for (k, v) in &s.sources {
        kv(&format!("source {k}"), v.clone());
    }
    kv(
        "vms",
        format!(
            "{} seen, {} placed, {} threads managed",
            s.vms, s.placed_vms, s.managed_threads
        ),
    );
    kv(
        "actions",
        format!(
            "{} placements, {} restores",
            s.placements_total, s.restores_total
        ),
    );
    kv("sriov", format!(
        "{}; {} reassignment(s), {} failed (rolled back), {} rollback failure(s), {} skipped (no [[vm]]){}",
        if s.sriov.state.is_empty() { "-" } else { &s.sriov.state },
        s.sriov.reassignments_total,
        s.sriov.failures_total,
        s.sriov.rollback_failures_total,
        s.sriov.skipped_total,
        s.sriov.last.as_ref().map_or(String::new(), |l| format!("; last: {l}"))
    ));
    if let Some(m) = &s.sriov.last_move {
        kv(
            "last move",
            format!(
                "{} VM {} -> VM {}: {:.0} ms (connect {:.0}, lease {:.0}, unplug {:.0}, standby {:.0}, MAC {:.0}, plug {:.0})",
                m.vf, m.from_vm, m.to_vm, m.total_ms, m.connect_ms, m.lease_ms, m.unplug_ms,
                m.standby_ms, m.mac_ms, m.plug_ms
            ),
        );
    }
    let holders: Vec<String> = s
        .sriov
        .vfs
        .iter()
        .filter_map(|v| {
            v.vm_id
                .map(|vm| format!("{} VM {vm}{}", v.vf, if v.idle { " (idle)" } else { "" }))
        })
        .collect();
    if !holders.is_empty() {
        kv("vf holders", holders.join(", "));
    }
    kv(
        "input",
        format!(
            "{}; focus {}; {} change(s) through vdd",
            if s.input.state.is_empty() {
                "-"
            } else {
                &s.input.state
            },
            s.input.focused.map_or("none".into(), |v| format!("VM {v}")),
            s.input.focus_changes_total
        ),
    );
    if !s.input.vms.is_empty() {
        kv(
            "input queues",
            s.input
                .vms
                .iter()
                .map(|v| {
                    format!(
                        "VM {} depth {} (max {}, dropped {})",
                        v.vm_id, v.queue_depth, v.max_depth, v.dropped
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    kv("state file", s.state_file.clone());
    kv("socket", s.socket.clone());
    kv(
        "metrics",
        if s.metrics.is_empty() {
            "off".into()
        } else {
            s.metrics.clone()
        },
    );
    Ok(())
}

/// `vdctl focus VM_ID` (and `vdctl input focus`): through vdd when it runs (it records the
/// focused VM), else straight to vd_input_irq.
pub fn focus(sock: &Path, vm_id: u32, json: bool) -> Result<()> {
    match control::request(sock, &Request::Focus { vm_id }) {
        Ok(v) => {
            if json {
                return print_json(&v);
            }
            let f: FocusView = serde_json::from_value(v).context("vdd's focus answer")?;
            match (f.vm_id, f.previous) {
                (0, p) => {
                    println!("focus cleared by vdd (was VM {p}): routed devices deliver to no VM")
                }
                (v, 0) => println!("focus on VM {v} from the next frame on (through vdd)"),
                (v, p) => {
                    println!("focus on VM {v} from the next frame on (through vdd; was VM {p})")
                }
            }
            Ok(())
        }
        Err(control::ClientError::NotRunning(_)) => {
            eprintln!(
                "vdctl: vdd is not running on {}: setting the focus directly on the module",
                sock.display()
            );
            crate::input::focus(vm_id, json)
        }
        Err(e) => Err(e.into()),
    }
}
