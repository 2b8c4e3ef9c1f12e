//! VMM actions for the SR-IOV policy, behind a trait so other VMMs can be added. QEMU's is QMP
//! (JSON over a UNIX socket, `-qmp unix:/run/vm1.qmp,server,wait=off`):
//! - take a VF away: `device_del` of its vfio-pci device, then wait for the `DEVICE_DELETED` event
//!   (the guest must release it; with `virtio-net,failover=on` traffic falls back to the standby
//!   NIC);
//! - give it back: `device_add` of `vfio-pci` with `host=` the VF's PCI address (and
//!   `failover_pair_id` when the guest has a failover pair);
//! - the emulated NIC's link: `set_link`.
//!
//! The SR-IOV policy ([`crate::sriov`]) calls it on vd_sriov_mgr's reassignment proposals.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Why a VMM action failed.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("QMP I/O: {0}")]
    Io(#[from] io::Error),
    #[error("QMP protocol: {0}")]
    Protocol(String),
    #[error("QMP {cmd}: {class}: {desc}")]
    Command {
        cmd: String,
        class: String,
        desc: String,
    },
    #[error("QMP {0}: no DEVICE_DELETED within {1:?} (the guest did not release the device)")]
    Timeout(String, Duration),
}

/// A VF to hand to a guest.
#[derive(Debug, Clone, PartialEq)]
pub struct VfDevice {
    /// QEMU device id.
    pub id: String,
    /// The VF's host PCI address (`0000:01:10.0`).
    pub host: String,
    /// The guest's standby virtio-net device id, for net_failover.
    pub failover_pair_id: Option<String>,
}

/// What the policies ask of a VMM.
pub trait Vmm {
    /// Unplugs a device and waits until the guest released it.
    fn detach_vf(&mut self, id: &str, timeout: Duration) -> Result<(), VmmError>;
    /// Plugs a VF in (vfio-pci).
    fn attach_vf(&mut self, vf: &VfDevice) -> Result<(), VmmError>;
    /// Link state of an emulated NIC (netdev or device id).
    fn set_link(&mut self, name: &str, up: bool) -> Result<(), VmmError>;
}

/// A QMP connection to one QEMU.
pub struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
    /// Events read while waiting for command answers, oldest first.
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connects, reads the greeting and leaves capabilities negotiation mode.
    pub fn connect(path: &Path) -> Result<Self, VmmError> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let w = s.try_clone()?;
        let mut q = Self {
            r: BufReader::new(s),
            w,
            events: vec![],
        };
        let g = q.read()?;
        if g.get("QMP").is_none() {
            return Err(VmmError::Protocol(format!(
                "expected the QMP greeting, got {g}"
            )));
        }
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    fn read(&mut self) -> Result<Value, VmmError> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(VmmError::Protocol("QEMU closed the QMP connection".into()));
        }
        serde_json::from_str(&line).map_err(|e| VmmError::Protocol(format!("{e}: {line:?}")))
    }

    /// Runs one command; events that arrive meanwhile are kept in [`Qmp::events`].
    pub fn execute(&mut self, cmd: &str, args: Value) -> Result<Value, VmmError> {
        let mut req = json!({ "execute": cmd });
        if args.as_object().is_some_and(|o| !o.is_empty()) {
            req["arguments"] = args;
        }
        writeln!(self.w, "{req}")?;
        loop {
            let v = self.read()?;
            if v.get("event").is_some() {
                self.events.push(v);
            } else if let Some(r) = v.get("return") {
                return Ok(r.clone());
            } else if let Some(e) = v.get("error") {
                return Err(VmmError::Command {
                    cmd: cmd.into(),
                    class: e["class"].as_str().unwrap_or("?").into(),
                    desc: e["desc"].as_str().unwrap_or("?").into(),
                });
            } else {
                return Err(VmmError::Protocol(format!(
                    "unexpected answer to {cmd}: {v}"
                )));
            }
        }
    }

    fn take_event(&mut self, name: &str, device: &str) -> bool {
        let pos = self
            .events
            .iter()
            .position(|e| e["event"] == name && e["data"]["device"] == device);
        pos.map(|i| self.events.remove(i)).is_some()
    }
}

impl Vmm for Qmp {
    fn detach_vf(&mut self, id: &str, timeout: Duration) -> Result<(), VmmError> {
        self.execute("device_del", json!({ "id": id }))?;
        let end = Instant::now() + timeout;
        while !self.take_event("DEVICE_DELETED", id) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(VmmError::Timeout(format!("device_del {id}"), timeout));
            }
            self.r.get_ref().set_read_timeout(Some(left))?;
            let v = match self.read() {
                Ok(v) => v,
                Err(VmmError::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
        self.r
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(())
    }

    fn attach_vf(&mut self, vf: &VfDevice) -> Result<(), VmmError> {
        let mut a = json!({ "driver": "vfio-pci", "host": vf.host, "id": vf.id });
        if let Some(p) = &vf.failover_pair_id {
            a["failover_pair_id"] = json!(p);
        }
        self.execute("device_add", a).map(drop)
    }

    fn set_link(&mut self, name: &str, up: bool) -> Result<(), VmmError> {
        self.execute("set_link", json!({ "name": name, "up": up }))
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placer::tests::tmpdir;
    use std::os::unix::net::UnixListener;
    use std::sync::mpsc;

    use crate::fakeqmp::{self, FakeOpts, Journal};

    /// The shared fake peer, with every command it got also sent to `tx`.
    fn fake_qemu(l: UnixListener, tx: mpsc::Sender<Value>) {
        let j = Journal::new();
        fakeqmp::spawn_on(l, "vm", j.clone(), FakeOpts::default());
        std::thread::spawn(move || {
            let mut sent = 0;
            loop {
                let e = j.entries();
                for v in &e[sent..] {
                    let mut v = v.clone();
                    v.as_object_mut().unwrap().remove("vm");
                    if tx.send(v).is_err() {
                        return;
                    }
                }
                sent = e.len();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    }

    #[test]
    fn qmp_against_a_fake_peer() {
        let d = tmpdir("qmp");
        let p = d.join("vm.qmp");
        let l = UnixListener::bind(&p).unwrap();
        let (tx, rx) = mpsc::channel();
        fake_qemu(l, tx);
        let mut q = Qmp::connect(&p).unwrap();
        assert_eq!(rx.recv().unwrap(), json!({"execute": "qmp_capabilities"}));

        q.detach_vf("vf0", Duration::from_secs(5)).unwrap();
        assert_eq!(
            rx.recv().unwrap(),
            json!({"execute": "device_del", "arguments": {"id": "vf0"}})
        );
        assert_eq!(
            q.events.len(),
            1,
            "the unrelated event is kept, DEVICE_DELETED consumed"
        );

        q.set_link("n0", false).unwrap();
        assert_eq!(
            rx.recv().unwrap(),
            json!({"execute": "set_link", "arguments": {"name": "n0", "up": false}})
        );

        let vf = VfDevice {
            id: "vf0".into(),
            host: "0000:01:10.0".into(),
            failover_pair_id: Some("net0".into()),
        };
        q.attach_vf(&vf).unwrap();
        assert_eq!(
            rx.recv().unwrap(),
            json!({"execute": "device_add", "arguments": {"driver": "vfio-pci", "host": "0000:01:10.0", "id": "vf0", "failover_pair_id": "net0"}})
        );

        let e = q
            .attach_vf(&VfDevice {
                id: "vf9".into(),
                host: "0000:99:00.0".into(),
                failover_pair_id: None,
            })
            .unwrap_err();
        assert!(
            matches!(&e, VmmError::Command { class, desc, .. } if class == "GenericError" && desc.contains("no such host device")),
            "{e}"
        );

        let e = q
            .detach_vf("stuck", Duration::from_millis(300))
            .unwrap_err();
        assert!(matches!(e, VmmError::Timeout(..)), "{e}");
        // The connection is still usable after a timeout.
        q.set_link("n0", true).unwrap();
    }

    #[test]
    fn not_a_qmp_peer() {
        let d = tmpdir("notqmp");
        let p = d.join("x.sock");
        let l = UnixListener::bind(&p).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            writeln!(s, r#"{{"hello": 1}}"#).unwrap();
        });
        assert!(matches!(Qmp::connect(&p), Err(VmmError::Protocol(_))));
        assert!(matches!(
            Qmp::connect(&d.join("none")),
            Err(VmmError::Io(_))
        ));
    }
}
