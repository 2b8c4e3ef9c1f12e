//! `vdctl input list|route|unroute|focus|stats`: the input devices vd_input_irq sees, which of
//! them follow the focus, which VM has it, and the per-VM delivery counters.
//!
//! Routes and focus are host-wide state of the module (not tied to the file that set them), so
//! each command is one-shot.

use anyhow::{anyhow, Result};
use nix::errno::Errno;
use serde::Serialize;
use vd_sys::input::{fixed_str, route_spec, Input};
use vd_uapi::{vdi_match, VdiDevice, VdiStats, VDI_DELAY_BUCKETS};

/// Which devices a route selects (exactly one of the flags, as clap enforces).
#[derive(clap::Args, Debug, Clone, Default)]
#[group(required = true, multiple = false)]
pub struct Match {
    /// Devices whose name contains this text.
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,
    /// The device with exactly this phys path (see `vdctl input list`).
    #[arg(long, value_name = "PATH")]
    pub phys: Option<String>,
    /// Every keyboard.
    #[arg(long)]
    pub keyboard: bool,
    /// Every relative pointer (mouse, touchpad in relative mode).
    #[arg(long)]
    pub mouse: bool,
    /// Every absolute pointer (tablet, touchscreen).
    #[arg(long)]
    pub tablet: bool,
}

impl Match {
    /// `(vdi_match kind, pattern)`.
    pub fn kind(&self) -> (u32, &str) {
        if let Some(n) = &self.name {
            (vdi_match::NAME, n)
        } else if let Some(p) = &self.phys {
            (vdi_match::PHYS, p)
        } else if self.keyboard {
            (vdi_match::KEYBOARD, "")
        } else if self.mouse {
            (vdi_match::MOUSE, "")
        } else {
            (vdi_match::TABLET, "")
        }
    }
    /// How a person would write it.
    pub fn describe(&self) -> String {
        match self.kind() {
            (vdi_match::NAME, p) => format!("name contains {p:?}"),
            (vdi_match::PHYS, p) => format!("phys = {p:?}"),
            (k, _) => format!("every {}", kind_name(k)),
        }
    }
}

pub fn kind_name(k: u32) -> &'static str {
    match k {
        vdi_match::NAME => "name",
        vdi_match::PHYS => "phys",
        vdi_match::KEYBOARD => "keyboard",
        vdi_match::MOUSE => "mouse",
        vdi_match::TABLET => "tablet",
        _ => "?",
    }
}

/// An error of `op` on /dev/vd_input, with what to do about it.
pub fn explain(op: &str, e: Errno) -> anyhow::Error {
    let hint = match e {
        Errno::ENOENT | Errno::ENODEV | Errno::ENXIO if op == "open" => {
            "is vd_input_irq loaded? (insmod vd_input_irq.ko, or modprobe vd_input_irq)"
        }
        Errno::EACCES if op == "open" => "no permission on /dev/vd_input: run as root",
        Errno::EPERM | Errno::EACCES => "needs CAP_SYS_ADMIN: run as root",
        Errno::ENOTTY => "the loaded vd_input_irq does not know this ioctl: an older module? (vdctl status)",
        Errno::ENOENT if op == "VDI_IOC_STATS" || op == "VDI_IOC_FOCUS" => "no VM with that id (a VMM creates it with VDI_IOC_VM_CREATE)",
        Errno::ENOENT if op == "VDI_IOC_UNROUTE" => "no such route (see `vdctl input list`; --name/--phys take the exact pattern the route was added with)",
        Errno::EEXIST if op == "VDI_IOC_ROUTE" => "this route exists already",
        Errno::EINVAL if op == "VDI_IOC_ROUTE" || op == "VDI_IOC_UNROUTE" => "bad pattern: 1..63 bytes, no NUL",
        Errno::EBUSY if op == "VDI_IOC_ROUTE" => "a matching device is grabbed by another client (EVIOCGRAB)",
        _ => "",
    };
    if hint.is_empty() {
        anyhow!("{op}: {e}")
    } else {
        anyhow!("{op}: {e}: {hint}")
    }
}

fn open() -> Result<Input> {
    Input::open().map_err(|e| explain("open", Errno::from_raw(e.raw_os_error().unwrap_or(0))))
}

/// One row of `vdctl input list`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub index: u32,
    pub name: String,
    pub phys: String,
    pub routed: bool,
    pub grabbed: bool,
    /// VM its current frame goes to (0: none).
    pub vm_id: u32,
    pub events: u64,
}

impl From<&VdiDevice> for DeviceRow {
    fn from(d: &VdiDevice) -> Self {
        Self {
            index: d.index,
            name: fixed_str(&d.name),
            phys: fixed_str(&d.phys),
            routed: d.routed != 0,
            grabbed: d.grabbed != 0,
            vm_id: d.vm_id,
            events: d.events,
        }
    }
}

/// A table with columns sized to their widest cell; `right[i]` right-aligns column `i`
/// (numbers). No trailing spaces.
pub fn table(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(w.len()) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = w[i].saturating_sub(c.chars().count());
            if right.get(i).copied().unwrap_or(false) {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn yn(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn vm(v: u32) -> String {
    if v == 0 {
        "-".to_owned()
    } else {
        v.to_string()
    }
}

pub fn device_table(rows: &[DeviceRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.index.to_string(),
                r.name.clone(),
                if r.phys.is_empty() {
                    "-".to_owned()
                } else {
                    r.phys.clone()
                },
                yn(r.routed),
                yn(r.grabbed),
                vm(r.vm_id),
                r.events.to_string(),
            ]
        })
        .collect();
    table(
        &["IDX", "NAME", "PHYS", "ROUTED", "GRAB", "VM", "EVENTS"],
        &[true, false, false, false, false, true, true],
        &cells,
    )
}

pub fn list(json: bool) -> Result<()> {
    let d = open()?;
    let rows: Vec<DeviceRow> = d
        .devices()
        .map_err(|e| explain("VDI_IOC_LIST_DEVICES", e))?
        .iter()
        .map(DeviceRow::from)
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("(no input devices)");
    } else {
        print!("{}", device_table(&rows));
    }
    Ok(())
}

/// What `route`/`unroute`/`focus` did, for `--json`.
#[derive(Serialize, Debug)]
struct Done {
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grab: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vm_id: Option<u32>,
    /// Devices the module routes now (all routes).
    routed_devices: Vec<DeviceRow>,
}

fn routed_now(d: &Input) -> Vec<DeviceRow> {
    d.devices()
        .unwrap_or_default()
        .iter()
        .map(DeviceRow::from)
        .filter(|r| r.routed)
        .collect()
}

pub fn route(m: &Match, grab: bool, add: bool, json: bool) -> Result<()> {
    let (kind, pat) = m.kind();
    let spec = route_spec(kind, grab, pat)
        .map_err(|_| anyhow!("bad pattern {pat:?}: 1..63 bytes, no NUL"))?;
    let d = open()?;
    let mut grab = grab;
    if add {
        d.route(&spec).map_err(|e| explain("VDI_IOC_ROUTE", e))?;
    } else {
        // A route is removed with the grab flag it was added with; without --grab try both.
        match d.unroute(&spec) {
            Err(Errno::ENOENT) if !grab => {
                d.unroute(&route_spec(kind, true, pat).map_err(|_| anyhow!("bad pattern"))?)
                    .map_err(|e| explain("VDI_IOC_UNROUTE", e))?;
                grab = true;
            }
            r => r.map_err(|e| explain("VDI_IOC_UNROUTE", e))?,
        }
    }
    let routed = routed_now(&d);
    if json {
        let done = Done {
            action: if add { "route" } else { "unroute" },
            kind: Some(kind_name(kind)),
            pattern: (!pat.is_empty()).then(|| pat.to_owned()),
            grab: Some(grab),
            vm_id: None,
            routed_devices: routed,
        };
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        let g = if grab { " (grabbed from the host)" } else { "" };
        println!(
            "{} {}{g}; {} device(s) routed now",
            if add { "routed" } else { "unrouted" },
            m.describe(),
            routed.len()
        );
        if !routed.is_empty() {
            print!("{}", device_table(&routed));
        }
    }
    Ok(())
}

pub fn focus(vm_id: u32, json: bool) -> Result<()> {
    let d = open()?;
    d.focus(vm_id).map_err(|e| explain("VDI_IOC_FOCUS", e))?;
    let routed = routed_now(&d);
    if json {
        let done = Done {
            action: "focus",
            kind: None,
            pattern: None,
            grab: None,
            vm_id: Some(vm_id),
            routed_devices: routed,
        };
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else if vm_id == 0 {
        println!("focus cleared: routed devices deliver to no VM");
    } else {
        println!(
            "focus on VM {vm_id} from the next frame on ({} routed device(s))",
            routed.len()
        );
        if routed.is_empty() {
            println!("note: no device is routed; see `vdctl input route --help`");
        }
    }
    Ok(())
}

/// Upper bounds of the delay histogram's buckets.
pub const DELAY_BUCKETS: [&str; VDI_DELAY_BUCKETS] =
    ["<10us", "<100us", "<1ms", "<10ms", "<100ms", "<1s", ">=1s"];

/// `vdctl input stats` of one VM.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct StatsRow {
    pub vm_id: u32,
    pub running: bool,
    pub vcpus: u32,
    pub queue_depth: u32,
    pub delivered_immediately: u64,
    pub queued: u64,
    pub flushed: u64,
    pub coalesced: u64,
    pub dropped: u64,
    pub max_depth: u64,
    pub irqs: u64,
    /// Host-event-to-ring delay, in bucket order.
    pub delay_hist: Vec<Bucket>,
}

/// One bucket of the delay histogram.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Bucket {
    pub delay: &'static str,
    pub events: u64,
}

impl From<&VdiStats> for StatsRow {
    fn from(s: &VdiStats) -> Self {
        Self {
            vm_id: s.vm_id,
            running: s.running != 0,
            vcpus: s.vcpus,
            queue_depth: s.queue_depth,
            delivered_immediately: s.delivered_immediately,
            queued: s.queued,
            flushed: s.flushed,
            coalesced: s.coalesced,
            dropped: s.dropped,
            max_depth: s.max_depth,
            irqs: s.irqs,
            delay_hist: DELAY_BUCKETS
                .iter()
                .zip(s.delay_hist)
                .map(|(l, n)| Bucket {
                    delay: l,
                    events: n,
                })
                .collect(),
        }
    }
}

pub fn stats_table(rows: &[StatsRow]) -> String {
    let mut head = vec![
        "VM",
        "RUN",
        "VCPUS",
        "DEPTH",
        "IMMEDIATE",
        "QUEUED",
        "FLUSHED",
        "COALESCED",
        "DROPPED",
        "MAXDEPTH",
        "IRQS",
    ];
    head.extend(DELAY_BUCKETS);
    let mut right = vec![true; head.len()];
    right[1] = false;
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![
                r.vm_id.to_string(),
                yn(r.running),
                r.vcpus.to_string(),
                r.queue_depth.to_string(),
                r.delivered_immediately.to_string(),
                r.queued.to_string(),
                r.flushed.to_string(),
                r.coalesced.to_string(),
                r.dropped.to_string(),
                r.max_depth.to_string(),
                r.irqs.to_string(),
            ];
            c.extend(r.delay_hist.iter().map(|b| b.events.to_string()));
            c
        })
        .collect();
    table(&head, &right, &cells)
}

/// VMs to show without an explicit id: those routed devices are delivering a frame to right now
/// (the module has no list of VMs, and a device names its VM only while a frame is open).
pub fn default_vms(devs: &[DeviceRow]) -> Vec<u32> {
    let mut v: Vec<u32> = devs
        .iter()
        .filter(|d| d.vm_id != 0)
        .map(|d| d.vm_id)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

pub fn stats(vm_id: Option<u32>, json: bool) -> Result<()> {
    let d = open()?;
    let ids = match vm_id {
        Some(0) => anyhow::bail!("VM ids start at 1"),
        Some(id) => vec![id],
        None => {
            let devs: Vec<DeviceRow> = d
                .devices()
                .map_err(|e| explain("VDI_IOC_LIST_DEVICES", e))?
                .iter()
                .map(DeviceRow::from)
                .collect();
            let v = default_vms(&devs);
            // The module lists devices, not VMs; a routed device names the VM its events go to
            // (the focus).
            anyhow::ensure!(
                !v.is_empty(),
                "name a VM: vdctl input stats VM_ID (the module offers no list of VMs)"
            );
            v
        }
    };
    let mut rows = vec![];
    for id in ids {
        let s = d
            .stats(id)
            .map_err(|e| explain("VDI_IOC_STATS", e))
            .map_err(|e| e.context(format!("VM {id}")))?;
        rows.push(StatsRow::from(&VdiStats { vm_id: id, ..s }));
    }
    if json {
        if vm_id.is_some() {
            println!("{}", serde_json::to_string_pretty(&rows[0])?);
        } else {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
    } else {
        print!("{}", stats_table(&rows));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(i: u32, name: &str, vm: u32, routed: bool) -> DeviceRow {
        DeviceRow {
            index: i,
            name: name.into(),
            phys: String::new(),
            routed,
            grabbed: false,
            vm_id: vm,
            events: 12345,
        }
    }

    #[test]
    fn table_aligns_columns_without_trailing_space() {
        let t = table(
            &["A", "NAME", "N"],
            &[true, false, true],
            &[
                vec!["1".into(), "x".into(), "100".into()],
                vec!["22".into(), "long name".into(), "3".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], " A  NAME         N");
        assert_eq!(lines[1], " 1  x          100");
        assert_eq!(lines[2], "22  long name    3");
        assert!(t.lines().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn device_table_shows_dashes_for_none() {
        let t = device_table(&[
            dev(0, "AT keyboard", 0, false),
            dev(1, "vd-itest kbd", 7, true),
        ]);
        let l: Vec<&str> = t.lines().collect();
        assert!(l[0].starts_with("IDX  NAME"));
        assert!(l[1].contains("AT keyboard   -     no "));
        assert!(l[2].ends_with("yes     no     7   12345"), "{:?}", l[2]);
    }

    #[test]
    fn stats_rows_label_the_histogram() {
        let mut s = VdiStats {
            vm_id: 3,
            running: 1,
            queued: 9,
            ..Default::default()
        };
        s.delay_hist[0] = 5;
        s.delay_hist[6] = 1;
        let r = StatsRow::from(&s);
        assert_eq!(
            r.delay_hist[0],
            Bucket {
                delay: "<10us",
                events: 5
            }
        );
        assert_eq!(
            r.delay_hist[6],
            Bucket {
                delay: ">=1s",
                events: 1
            }
        );
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["queued"], 9);
        assert_eq!(j["running"], true);
        assert_eq!(j["delay_hist"][6]["delay"], ">=1s");
        let t = stats_table(&[r]);
        assert!(t.lines().next().unwrap().ends_with("<1s  >=1s"));
        assert!(t.lines().nth(1).unwrap().starts_with(" 3  yes"));
    }

    #[test]
    fn match_kinds() {
        let m = Match {
            name: Some("kbd".into()),
            ..Default::default()
        };
        assert_eq!(m.kind(), (vdi_match::NAME, "kbd"));
        assert_eq!(m.describe(), "name contains \"kbd\"");
        let m = Match {
            tablet: true,
            ..Default::default()
        };
        assert_eq!(m.kind(), (vdi_match::TABLET, ""));
        assert_eq!(m.describe(), "every tablet");
    }

    #[test]
    fn errors_say_what_to_do() {
        assert!(format!("{}", explain("open", Errno::ENOENT)).contains("insmod vd_input_irq.ko"));
        assert!(format!("{}", explain("VDI_IOC_ROUTE", Errno::EPERM)).contains("run as root"));
        assert!(
            format!("{}", explain("VDI_IOC_STATS", Errno::ENOENT)).contains("no VM with that id")
        );
        assert_eq!(
            format!("{}", explain("VDI_IOC_FOCUS", Errno::EIO)),
            "VDI_IOC_FOCUS: EIO: I/O error"
        );
    }

    #[test]
    fn default_vms_are_the_focus_targets() {
        assert_eq!(
            default_vms(&[
                dev(0, "a", 0, false),
                dev(1, "b", 7, true),
                dev(2, "c", 3, true),
                dev(3, "d", 7, true)
            ]),
            vec![3, 7]
        );
    }
}
