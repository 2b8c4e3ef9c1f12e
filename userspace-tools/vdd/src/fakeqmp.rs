//! A QMP peer that speaks the protocol as QEMU does, standing in for the VMMs in tests (`cargo
//! test` and `vd-itest fake-qmp` in the test VM): greeting, capabilities negotiation, `return`
//! answers carrying the command's `id`, for `device_del` an asynchronous `DEVICE_DELETED` event
//! after an unrelated one, `STOP`/`RESUME` before the answer to `stop`/`cont`, `query-status`.
//! It accepts one connection after another (vdd connects per action), and records every command
//! it gets, in arrival order, in a [`Journal`] that several peers can share (so a test sees the
//! order across VMMs).
//!
//! Failures on demand: `device_add` of host `0000:99:00.0` (or of anything, with
//! [`FakeOpts::fail_device_add`]) answers a `GenericError` as QEMU does for a missing host device;
//! `device_del` of id `stuck` (or any id in [`FakeOpts::stuck`]) never gets its `DEVICE_DELETED`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The MAC address `qom-get` gives for every NIC.
pub const FAKE_NIC_MAC: &str = "52:54:00:76:64:01";

use serde_json::{json, Value};

/// Commands received, in order, tagged with the peer's name: `{"vm": name, "execute": ..., "arguments": ...}`.
#[derive(Clone, Default)]
pub struct Journal {
    entries: Arc<Mutex<Vec<Value>>>,
    file: Option<Arc<Mutex<std::fs::File>>>,
}

impl Journal {
    pub fn new() -> Self {
        Self::default()
    }
    /// Also appends each entry as one JSON line to `path`.
    pub fn with_file(path: &Path) -> std::io::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            entries: Default::default(),
            file: Some(Arc::new(Mutex::new(f))),
        })
    }
    fn push(&self, v: Value) {
        if let Some(f) = &self.file {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            // One write per line: several peers (threads or processes) may append to one file.
            let _ = f.write_all(format!("{v}\n").as_bytes());
        }
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(v);
    }
    /// Everything so far.
    pub fn entries(&self) -> Vec<Value> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    /// `"vm cmd"` for every command but `qmp_capabilities`, e.g. `"vm1 device_del"`.
    pub fn commands(&self) -> Vec<String> {
        self.entries()
            .iter()
            .filter(|v| v["execute"] != "qmp_capabilities")
            .map(|v| {
                format!(
                    "{} {}",
                    v["vm"].as_str().unwrap_or("?"),
                    v["execute"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }
    /// Marks a point in the order (a test's own step, such as the swap).
    pub fn mark(&self, what: &str) {
        self.push(json!({ "vm": "-", "execute": what }));
    }
}

/// How a fake peer misbehaves.
#[derive(Clone, Debug, Default)]
pub struct FakeOpts {
    /// Every `device_add` fails (GenericError).
    pub fail_device_add: bool,
    /// `device_del` of these ids never completes (no DEVICE_DELETED).
    pub stuck: Vec<String>,
    /// Every `set_link` fails (DeviceNotFound).
    pub fail_set_link: bool,
    /// The VF devices plugged in (id -> host), kept by `device_add`/`device_del` and read by
    /// `qom-get ID host`; shared with the test, which may plug some in first.
    pub devices: Arc<Mutex<BTreeMap<String, String>>>,
}

/// Binds `path` and serves connections on a thread until the process ends.
pub fn spawn(path: &Path, name: &str, journal: Journal, opts: FakeOpts) -> std::io::Result<()> {
    let l = UnixListener::bind(path)?;
    spawn_on(l, name, journal, opts);
    Ok(())
}

/// Serves connections on `l` (one after another) on a thread.
pub fn spawn_on(l: UnixListener, name: &str, journal: Journal, opts: FakeOpts) {
    let name = name.to_string();
    std::thread::spawn(move || {
        for c in l.incoming() {
            match c {
                Ok(c) => serve(c, &name, &journal, &opts),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
}

/// An event as QEMU writes it (with a timestamp).
fn event(name: &str, data: Option<Value>) -> String {
    let mut v = json!({"timestamp": {"seconds": 1, "microseconds": 0}, "event": name});
    if let Some(d) = data {
        v["data"] = d;
    }
    v.to_string()
}

fn serve(s: UnixStream, name: &str, journal: &Journal, opts: &FakeOpts) {
    let Ok(mut w) = s.try_clone() else { return };
    let mut r = BufReader::new(s);
    let greeting = json!({"QMP": {
        "version": {"qemu": {"micro": 0, "minor": 0, "major": 10}, "package": "vd-fake"},
        "capabilities": ["oob"]
    }});
    if writeln!(w, "{greeting}").is_err() {
        return;
    }
    let mut line = String::new();
    let mut negotiated = false;
    let mut running = true;
    while r.read_line(&mut line).unwrap_or(0) > 0 {
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let _ = writeln!(
                    w,
                    "{}",
                    json!({"error": {"class": "GenericError", "desc": format!("JSON parse error, {e}")}})
                );
                line.clear();
                continue;
            }
        };
        line.clear();
        let cmd = v["execute"].as_str().unwrap_or("").to_string();
        let mut rec = json!({ "vm": name, "execute": cmd });
        // The journal leaves out empty arguments (`qapi` sends `"arguments": {}`) and the id.
        if let Some(a) = v
            .get("arguments")
            .filter(|a| a.as_object().is_some_and(|o| !o.is_empty()))
        {
            rec["arguments"] = a.clone();
        }
        journal.push(rec);
        // QEMU echoes the command's id in its answer.
        let id = v.get("id").cloned();
        let answer = |w: &mut UnixStream, mut a: Value| {
            if let Some(id) = &id {
                a["id"] = id.clone();
            }
            writeln!(w, "{a}")
        };
        let err = |w: &mut UnixStream, class: &str, desc: &str| {
            answer(w, json!({"error": {"class": class, "desc": desc}}))
        };
        let ok = |w: &mut UnixStream| answer(w, json!({"return": {}}));
        if !negotiated && cmd != "qmp_capabilities" {
            let _ = err(
                &mut w,
                "CommandNotFound",
                "Expecting capabilities negotiation with 'qmp_capabilities'",
            );
            continue;
        }
        let res = match cmd.as_str() {
            "qmp_capabilities" => {
                negotiated = true;
                ok(&mut w)
            }
            "device_add" if opts.fail_device_add || v["arguments"]["host"] == "0000:99:00.0" => {
                let h = v["arguments"]["host"].as_str().unwrap_or("?");
                err(
                    &mut w,
                    "GenericError",
                    &format!("vfio {h}: no such host device"),
                )
            }
            "set_link" if opts.fail_set_link => {
                let n = v["arguments"]["name"].as_str().unwrap_or("?");
                err(&mut w, "DeviceNotFound", &format!("Device '{n}' not found"))
            }
            "device_del" => {
                let id = v["arguments"]["id"].as_str().unwrap_or("").to_string();
                // An unrelated event first, like QEMU's other chatter.
                let _ = writeln!(
                    w,
                    "{}",
                    event(
                        "NIC_RX_FILTER_CHANGED",
                        Some(
                            json!({"name": "n0", "path": "/machine/peripheral/n0/virtio-backend"})
                        )
                    )
                );
                let r = ok(&mut w);
                if id != "stuck" && !opts.stuck.contains(&id) {
                    opts.devices
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    std::thread::sleep(Duration::from_millis(50));
                    let path = format!("/machine/peripheral/{id}");
                    let _ = writeln!(
                        w,
                        "{}",
                        event("DEVICE_DELETED", Some(json!({"device": id, "path": path})))
                    );
                }
                r
            }
            // As QEMU: the state change's event comes before the command's answer.
            "stop" | "cont" => {
                running = cmd == "cont";
                let _ = writeln!(
                    w,
                    "{}",
                    event(if running { "RESUME" } else { "STOP" }, None)
                );
                ok(&mut w)
            }
            // Every fake NIC has the same address.
            "qom-get" if v["arguments"]["property"] == "mac" => {
                answer(&mut w, json!({"return": FAKE_NIC_MAC}))
            }
            "qom-get" if v["arguments"]["property"] == "host" => {
                let path = v["arguments"]["path"].as_str().unwrap_or("");
                let id = path.rsplit('/').next().unwrap_or("");
                let host = opts
                    .devices
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(id)
                    .cloned();
                match host {
                    Some(h) => answer(&mut w, json!({"return": h})),
                    None => err(
                        &mut w,
                        "DeviceNotFound",
                        &format!("Device '{path}' not found"),
                    ),
                }
            }
            "device_add" => {
                if let (Some(id), Some(h)) = (
                    v["arguments"]["id"].as_str(),
                    v["arguments"]["host"].as_str(),
                ) {
                    opts.devices
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(id.into(), h.into());
                }
                ok(&mut w)
            }
            "query-status" => {
                let status = if running { "running" } else { "paused" };
                answer(
                    &mut w,
                    json!({"return": {"status": status, "running": running}}),
                )
            }
            _ => ok(&mut w),
        };
        if res.is_err() {
            return;
        }
    }
}
