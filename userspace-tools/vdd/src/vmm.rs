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
//!
//! The protocol's types come from the `qapi` crate (generated from QEMU's QAPI schema): the
//! greeting ([`qmp::QapiCapabilities`]), every command ([`qmp::device_del`], [`qmp::stop`], ...)
//! with its typed answer, errors with their [`qapi::ErrorClass`], events ([`qmp::Event`]).
//! What stays ours is the framing on the socket (one JSON document per line), because `qapi`'s
//! synchronous client (`qapi::Qmp`) does not serve a daemon: it blocks without a deadline (a QEMU
//! that never answers would hang vdd), it drops a partly read line when a socket read timeout
//! fires (the next answer would then be lost or misread), it panics on a connection closed before
//! the greeting (`read_capabilities` calls `expect`), it cannot wait for an event without sending
//! a command, and it fails on an event newer than its schema. [`Qmp`] reads with a deadline per
//! command and per awaited event, keeps partial lines across timeouts, tags every command with an
//! `id` so that a late answer to a command that timed out is recognised and skipped, and keeps
//! events it has no type for as [`QmpEvent::Other`].

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub use qapi::qmp;
use serde::Deserialize;
use serde_json::Value;

/// How long a command may take to be answered (QEMU answers within milliseconds unless it is
/// stuck; `device_del`'s real completion is the event, waited for separately).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest line accepted from the peer (QEMU's largest answers, e.g. `query-qmp-schema`, are
/// well below): a peer sending more without a newline is not QEMU.
const MAX_LINE: usize = 16 << 20;

/// Why a VMM action failed.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("QMP I/O: {0}")]
    Io(#[from] io::Error),
    #[error("QMP protocol: {0}")]
    Protocol(String),
    /// QEMU answered with an error.
    #[error("QMP {cmd}: {class:?}: {desc}")]
    Command {
        cmd: &'static str,
        class: qapi::ErrorClass,
        desc: String,
    },
    /// QEMU did not answer a command in time.
    #[error("QMP {0}: no answer within {1:?}")]
    NoAnswer(&'static str, Duration),
    #[error("QMP {0}: no DEVICE_DELETED within {1:?} (the guest did not release the device)")]
    Timeout(String, Duration),
}

/// An event QEMU sent.
#[derive(Debug, Clone)]
pub enum QmpEvent {
    /// One the schema knows, typed.
    Typed(qmp::Event),
    /// One the `qapi` schema does not know (a newer QEMU) or could not parse: its name and the
    /// whole message.
    Other { name: String, raw: Value },
}

impl QmpEvent {
    /// The event's name (`"STOP"`, `"DEVICE_DELETED"`, ...).
    pub fn name(&self) -> String {
        match self {
            Self::Typed(e) => serde_json::to_value(e)
                .ok()
                .and_then(|v| v["event"].as_str().map(str::to_owned))
                .unwrap_or_default(),
            Self::Other { name, .. } => name.clone(),
        }
    }

    /// `DEVICE_DELETED` of the device with QEMU id `id`.
    fn is_device_deleted(&self, id: &str) -> bool {
        matches!(self, Self::Typed(qmp::Event::DEVICE_DELETED { data, .. })
            if data.device.as_deref() == Some(id))
    }
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
    /// The bus to plug it into (`None`: QEMU's choice).
    pub bus: Option<String>,
}

/// What the policies ask of a VMM.
pub trait Vmm {
    /// Unplugs a device and waits until the guest released it.
    fn detach_vf(&mut self, id: &str, timeout: Duration) -> Result<(), VmmError>;
    /// Plugs a VF in (vfio-pci).
    fn attach_vf(&mut self, vf: &VfDevice) -> Result<(), VmmError>;
    /// Link state of an emulated NIC (netdev or device id).
    fn set_link(&mut self, name: &str, up: bool) -> Result<(), VmmError>;
    /// The MAC address of an emulated NIC (device id): the address a VF paired with it must have.
    fn nic_mac(&mut self, nic: &str) -> Result<[u8; 6], VmmError>;
    /// The host PCI address of the VF device `id` in this VM (`None`: no such device).
    fn vf_host(&mut self, id: &str) -> Result<Option<String>, VmmError>;
    /// Has the VMM announce the guest's address on an emulated NIC (gratuitous RARPs, as after
    /// a migration), so that the switch in front of it learns that the guest is behind it now.
    fn announce(&mut self, nic: &str) -> Result<(), VmmError>;
}

/// One message from QEMU.
enum Message {
    Event(QmpEvent),
    /// An answer (`return` or `error`), with its `id` if it has one.
    Answer(Value),
}

/// A QMP connection to one QEMU.
pub struct Qmp {
    s: UnixStream,
    /// Bytes read that do not make a whole line yet (kept across read timeouts).
    buf: Vec<u8>,
    /// The id of the next command.
    next_id: u64,
    /// The greeting: QEMU's version and capabilities.
    pub greeting: qmp::QMP,
    /// Events read while waiting for command answers, oldest first.
    pub events: Vec<QmpEvent>,
    /// How long [`Qmp::execute`] waits for an answer.
    pub command_timeout: Duration,
}

impl Qmp {
    /// Connects, reads the greeting and leaves capabilities negotiation mode, each step within
    /// [`COMMAND_TIMEOUT`].
    pub fn connect(path: &Path) -> Result<Self, VmmError> {
        let s = UnixStream::connect(path)?;
        s.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        let mut q = Self {
            s,
            buf: Vec::new(),
            next_id: 1,
            greeting: qmp::QMP {
                version: qmp::VersionInfo {
                    package: String::new(),
                    qemu: qmp::VersionTriple {
                        major: 0,
                        minor: 0,
                        micro: 0,
                    },
                },
                capabilities: vec![],
            },
            events: vec![],
            command_timeout: COMMAND_TIMEOUT,
        };
        let end = Instant::now() + COMMAND_TIMEOUT;
        let line = match q.read_line(end) {
            Ok(Some(l)) => l,
            Ok(None) => return Err(VmmError::NoAnswer("greeting", COMMAND_TIMEOUT)),
            Err(e) => return Err(e),
        };
        let g: qmp::QapiCapabilities = serde_json::from_slice(&line).map_err(|e| {
            VmmError::Protocol(format!(
                "expected the QMP greeting, got {}: {e}",
                String::from_utf8_lossy(&line).trim_end()
            ))
        })?;
        q.greeting = g.QMP;
        q.execute(&qmp::qmp_capabilities { enable: None })?;
        Ok(q)
    }

    /// The next whole line, or `None` when `deadline` passed first.
    fn read_line(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>, VmmError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(Some(self.buf.drain(..=i).collect()));
            }
            if self.buf.len() > MAX_LINE {
                return Err(VmmError::Protocol(format!(
                    "a line longer than {MAX_LINE} bytes"
                )));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.s.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return Err(VmmError::Protocol("QEMU closed the QMP connection".into())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next message, or `None` when `deadline` passed first.
    fn read_message(&mut self, deadline: Instant) -> Result<Option<Message>, VmmError> {
        let Some(line) = self.read_line(deadline)? else {
            return Ok(None);
        };
        let v: Value = serde_json::from_slice(&line).map_err(|e| {
            VmmError::Protocol(format!("{e}: {:?}", String::from_utf8_lossy(&line)))
        })?;
        if let Some(name) = v.get("event").and_then(Value::as_str) {
            let name = name.to_owned();
            return Ok(Some(Message::Event(match qmp::Event::deserialize(&v) {
                Ok(e) => QmpEvent::Typed(e),
                Err(_) => QmpEvent::Other { name, raw: v },
            })));
        }
        if v.get("return").is_some() || v.get("error").is_some() {
            return Ok(Some(Message::Answer(v)));
        }
        Err(VmmError::Protocol(format!(
            "neither an event nor an answer: {v}"
        )))
    }

    /// Runs one command and returns its typed answer; events that arrive meanwhile are kept in
    /// [`Qmp::events`]. Fails with [`VmmError::NoAnswer`] after [`Qmp::command_timeout`] (the
    /// connection stays usable: a late answer is recognised by its id and skipped).
    pub fn execute<C: qapi::Command>(&mut self, cmd: &C) -> Result<C::Ok, VmmError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let req = qapi::Execute::<&C, u64>::with_id(cmd, id);
        let mut line = serde_json::to_vec(&req)
            .map_err(|e| VmmError::Protocol(format!("{}: {e}", C::NAME)))?;
        line.push(b'\n');
        self.s.write_all(&line)?;
        let end = Instant::now() + self.command_timeout;
        loop {
            match self.read_message(end)? {
                None => return Err(VmmError::NoAnswer(C::NAME, self.command_timeout)),
                Some(Message::Event(e)) => self.events.push(e),
                Some(Message::Answer(v)) => {
                    if v.get("id").and_then(Value::as_u64) != Some(id) {
                        // The late answer to a command that timed out.
                        continue;
                    }
                    let bad = |e: &dyn std::fmt::Display| {
                        VmmError::Protocol(format!("unexpected answer to {}: {v}: {e}", C::NAME))
                    };
                    let r = match qmp::QmpMessage::<C::Ok>::deserialize(&v) {
                        Ok(qmp::QmpMessage::Response(r)) => r,
                        Ok(qmp::QmpMessage::Event(_)) => return Err(bad(&"an event")),
                        Err(e) => return Err(bad(&e)),
                    };
                    return r.result().map_err(|e| VmmError::Command {
                        cmd: C::NAME,
                        class: e.class,
                        desc: e.desc,
                    });
                }
            }
        }
    }

    /// Waits until an event for which `want` is true arrives (or was already kept in
    /// [`Qmp::events`]) and takes it out; `None` when `timeout` passed first. Other events are
    /// kept.
    pub fn wait_event(
        &mut self,
        mut want: impl FnMut(&QmpEvent) -> bool,
        timeout: Duration,
    ) -> Result<Option<QmpEvent>, VmmError> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(i) = self.events.iter().position(&mut want) {
                return Ok(Some(self.events.remove(i)));
            }
            match self.read_message(end)? {
                None => return Ok(None),
                Some(Message::Event(e)) => self.events.push(e),
                // A late answer to a command that timed out.
                Some(Message::Answer(_)) => {}
            }
        }
    }
}

impl Vmm for Qmp {
    fn detach_vf(&mut self, id: &str, timeout: Duration) -> Result<(), VmmError> {
        self.execute(&qmp::device_del { id: id.into() })?;
        match self.wait_event(|e| e.is_device_deleted(id), timeout)? {
            Some(_) => Ok(()),
            None => Err(VmmError::Timeout(format!("device_del {id}"), timeout)),
        }
    }

    fn attach_vf(&mut self, vf: &VfDevice) -> Result<(), VmmError> {
        let mut props = vec![("host".to_owned(), Value::from(vf.host.clone()))];
        if let Some(p) = &vf.failover_pair_id {
            props.push(("failover_pair_id".to_owned(), Value::from(p.clone())));
        }
        let cmd = qmp::device_add::new("vfio-pci", Some(vf.id.clone()), vf.bus.clone(), props);
        self.execute(&cmd).map(drop)
    }

    fn set_link(&mut self, name: &str, up: bool) -> Result<(), VmmError> {
        self.execute(&qmp::set_link {
            name: name.into(),
            up,
        })
        .map(drop)
    }

    fn nic_mac(&mut self, nic: &str) -> Result<[u8; 6], VmmError> {
        let v = self.execute(&qmp::qom_get {
            path: format!("/machine/peripheral/{nic}"),
            property: "mac".into(),
        })?;
        v.as_str()
            .and_then(vd_sys::vfmac::parse_mac)
            .ok_or_else(|| VmmError::Protocol(format!("qom-get {nic}.mac: not a MAC address: {v}")))
    }

    fn vf_host(&mut self, id: &str) -> Result<Option<String>, VmmError> {
        let r = self.execute(&qmp::qom_get {
            path: format!("/machine/peripheral/{id}"),
            property: "host".into(),
        });
        match r {
            Ok(v) => v
                .as_str()
                .map(|h| Some(h.to_owned()))
                .ok_or_else(|| VmmError::Protocol(format!("qom-get {id}.host: not a string: {v}"))),
            Err(VmmError::Command {
                class: qapi::ErrorClass::DeviceNotFound,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn announce(&mut self, nic: &str) -> Result<(), VmmError> {
        // QEMU's migration defaults (50 ms, then +100 ms per round, 5 rounds, 550 ms at most).
        self.execute(&qmp::announce_self(qmp::AnnounceParameters {
            id: None,
            interfaces: Some(vec![nic.into()]),
            initial: 50,
            max: 550,
            rounds: 5,
            step: 100,
        }))
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placer::tests::tmpdir;
    use serde_json::json;
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
        assert_eq!(q.greeting.version.qemu.major, 10);

        q.detach_vf("vf0", Duration::from_secs(5)).unwrap();
        assert_eq!(
            rx.recv().unwrap(),
            json!({"execute": "device_del", "arguments": {"id": "vf0"}})
        );
        assert!(
            matches!(
                &q.events[..],
                [QmpEvent::Typed(qmp::Event::NIC_RX_FILTER_CHANGED { data, .. })]
                    if data.name.as_deref() == Some("n0")
            ),
            "the unrelated event is kept, typed; DEVICE_DELETED consumed: {:?}",
            q.events
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
            bus: Some("rp1".into()),
        };
        q.attach_vf(&vf).unwrap();
        assert_eq!(
            rx.recv().unwrap(),
            json!({"execute": "device_add", "arguments": {"driver": "vfio-pci", "host": "0000:01:10.0", "id": "vf0", "bus": "rp1", "failover_pair_id": "net0"}})
        );

        assert_eq!(
            q.nic_mac("net0").unwrap(),
            [0x52, 0x54, 0, 0x76, 0x64, 0x01]
        );
        assert_eq!(
            rx.recv().unwrap(),
            json!({"execute": "qom-get", "arguments": {"path": "/machine/peripheral/net0", "property": "mac"}})
        );
        q.announce("net0").unwrap();
        assert_eq!(
            rx.recv().unwrap(),
            json!({"execute": "announce-self", "arguments": {"interfaces": ["net0"], "initial": 50, "max": 550, "rounds": 5, "step": 100}})
        );

        let e = q
            .attach_vf(&VfDevice {
                id: "vf9".into(),
                host: "0000:99:00.0".into(),
                failover_pair_id: None,
                bus: None,
            })
            .unwrap_err();
        assert!(
            matches!(&e, VmmError::Command { cmd: "device_add", class: qapi::ErrorClass::GenericError, desc }
                if desc.contains("no such host device")),
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
    fn an_event_while_a_command_runs() {
        let d = tmpdir("qmpstop");
        let p = d.join("vm.qmp");
        let (tx, _rx) = mpsc::channel();
        fake_qemu(UnixListener::bind(&p).unwrap(), tx);
        let mut q = Qmp::connect(&p).unwrap();
        q.events.clear();
        q.execute(&qmp::stop {}).unwrap();
        assert!(
            matches!(&q.events[..], [QmpEvent::Typed(qmp::Event::STOP { .. })]),
            "{:?}",
            q.events
        );
        assert_eq!(q.events[0].name(), "STOP");
        let st = q.execute(&qmp::query_status {}).unwrap();
        assert!(matches!(st.status, qmp::RunState::paused) && !st.running);
        q.execute(&qmp::cont {}).unwrap();
        let e = q
            .wait_event(|e| e.name() == "RESUME", Duration::from_secs(5))
            .unwrap();
        assert!(matches!(
            e,
            Some(QmpEvent::Typed(qmp::Event::RESUME { .. }))
        ));
        assert!(q.events.iter().all(|e| e.name() == "STOP"));
    }

    /// What a scripted peer does next.
    enum Step {
        /// Writes this.
        Say(&'static str),
        /// Waits for the client's next command (one line).
        Hear,
        /// Waits until the test says so.
        Wait,
    }
    use Step::*;

    /// A peer that follows `steps` (no timing: it waits for the client or the test).
    fn scripted(p: &Path, steps: Vec<Step>) -> mpsc::Sender<()> {
        let l = UnixListener::bind(p).unwrap();
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut r = std::io::BufReader::new(s.try_clone().unwrap());
            for st in steps {
                let ok = match st {
                    Say(line) => s.write_all(line.as_bytes()).is_ok(),
                    Hear => {
                        use std::io::BufRead;
                        r.read_line(&mut String::new()).unwrap_or(0) > 0
                    }
                    Wait => rx.recv().is_ok(),
                };
                if !ok {
                    return;
                }
            }
            // Keep the connection open until the client is gone.
            let _ = s.read(&mut [0u8; 1]);
        });
        tx
    }

    const GREETING: &str = "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \
                            \"major\": 9}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\n";

    #[test]
    fn no_answer_then_a_late_one() {
        let d = tmpdir("qmplate");
        let p = d.join("vm.qmp");
        scripted(
            &p,
            vec![
                Say(GREETING),
                Hear,
                Say("{\"return\": {}, \"id\": 1}\n"),
                // Command 2 (stop) is answered only once command 3 came (the client gave up on
                // 2); command 3's answer comes in two pieces.
                Hear,
                Hear,
                Say("{\"return\": {}, \"id\": 2}\n"),
                Say("{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"X_NEW\"}\n"),
                Say("{\"return\": {\"status\": \"running\", "),
                Say("\"running\": true}, \"id\": 3}\n"),
            ],
        );
        let mut q = Qmp::connect(&p).unwrap();
        assert_eq!(q.greeting.version.qemu.minor, 2);
        q.command_timeout = Duration::from_millis(200);
        let e = q.execute(&qmp::stop {}).unwrap_err();
        assert!(matches!(e, VmmError::NoAnswer("stop", _)), "{e}");
        q.command_timeout = Duration::from_secs(5);
        let st = q.execute(&qmp::query_status {}).unwrap();
        assert!(st.running, "the late answer to stop (id 2) was skipped");
        assert!(
            matches!(&q.events[..], [QmpEvent::Other { name, .. }] if name == "X_NEW"),
            "an event the schema does not know is kept: {:?}",
            q.events
        );
    }

    #[test]
    fn partial_line_survives_a_wait_timeout() {
        let d = tmpdir("qmppart");
        let p = d.join("vm.qmp");
        let go = scripted(
            &p,
            vec![
                Say(GREETING),
                Hear,
                Say("{\"return\": {}, \"id\": 1}\n"),
                Say("{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": "),
                Wait,
                Say("\"STOP\"}\n"),
            ],
        );
        let mut q = Qmp::connect(&p).unwrap();
        let stop = |e: &QmpEvent| matches!(e, QmpEvent::Typed(qmp::Event::STOP { .. }));
        assert!(q
            .wait_event(stop, Duration::from_millis(100))
            .unwrap()
            .is_none());
        go.send(()).unwrap();
        assert!(q
            .wait_event(stop, Duration::from_secs(5))
            .unwrap()
            .is_some());
    }

    #[test]
    fn peer_closes_before_the_greeting() {
        let d = tmpdir("qmpclose");
        let p = d.join("vm.qmp");
        let l = UnixListener::bind(&p).unwrap();
        std::thread::spawn(move || drop(l.accept().unwrap()));
        let e = Qmp::connect(&p).err().unwrap();
        assert!(
            matches!(&e, VmmError::Protocol(m) if m.contains("closed")),
            "{e}"
        );
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
