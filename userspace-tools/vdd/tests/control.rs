//! The control protocol over a real UNIX socket, the readiness datagram and the metrics endpoint.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::sync::{Arc, Mutex};

use vdd::control::{self, ClientError};
use vdd::daemon::{Shared, SharedHandler};
use vdd::policy::Rates;
use vdd::protocol::{PolicyView, Request, StatusView, VmDetail, VmState, VmView};

fn shared() -> Arc<Mutex<Shared>> {
    let mut s = Shared::default();
    s.vms.push(VmView {
        pid: std::process::id(),
        name: Some("desk1".into()),
        state: VmState::Placed,
        vcpus: vec![],
        rates: Some(Rates {
            total: 1234.0,
            io_exits: 1000.0,
            mmio_exits: 0.0,
            evtchn_requests: 234.0,
            other_exits: 0.0,
        }),
        state_secs: 2.0,
        cooling_secs: None,
        last_change: "I/O rate 1234/s >= threshold 1000/s".into(),
    });
    s.status = StatusView {
        pid: 42,
        driver_cores: "1".into(),
        vms: 1,
        placed_vms: 1,
        ..Default::default()
    };
    Arc::new(Mutex::new(s))
}

#[test]
fn round_trip_over_a_unix_socket() {
    let d = common::tmpdir("ctl");
    let sock = d.join("run/vdd.sock");
    let sh = shared();
    let l = control::bind(&sock).unwrap();
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600,
        "socket mode 0600"
    );
    control::spawn_server(l, Arc::new(SharedHandler(sh.clone()))).unwrap();

    let list: Vec<VmView> =
        serde_json::from_value(control::request(&sock, &Request::VmList).unwrap()).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, VmState::Placed);
    assert_eq!(
        list[0].name.as_deref(),
        Some("desk1"),
        "the name crosses the socket"
    );
    assert_eq!(list[0].rates.unwrap().total, 1234.0);

    let me = std::process::id();
    let show: VmDetail =
        serde_json::from_value(control::request(&sock, &Request::VmShow { pid: me }).unwrap())
            .unwrap();
    assert_eq!(show.vm.pid, me);
    let e = control::request(&sock, &Request::VmShow { pid: 1 }).unwrap_err();
    assert!(
        matches!(e, ClientError::Daemon(ref m) if m.contains("vdctl vm list")),
        "{e}"
    );

    let p: PolicyView = serde_json::from_value(
        control::request(
            &sock,
            &Request::PolicySet {
                key: "threshold".into(),
                value: "4321".into(),
            },
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(p.policy.threshold, 4321.0);
    assert_eq!(
        sh.lock().unwrap().policy.threshold,
        4321.0,
        "the daemon's running policy changed"
    );
    let e = control::request(
        &sock,
        &Request::PolicySet {
            key: "hysteresis".into(),
            value: "99999".into(),
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("hysteresis"), "{e}");
    assert_eq!(
        sh.lock().unwrap().policy.hysteresis,
        500.0,
        "rejected value not applied"
    );
    let p: PolicyView =
        serde_json::from_value(control::request(&sock, &Request::PolicyGet).unwrap()).unwrap();
    assert_eq!(p.policy.threshold, 4321.0);

    let st: StatusView =
        serde_json::from_value(control::request(&sock, &Request::Status).unwrap()).unwrap();
    assert_eq!(st.pid, 42);

    // Several requests on one connection, and a malformed one.
    let mut c = UnixStream::connect(&sock).unwrap();
    c.write_all(b"{\"cmd\":\"status\"}\nnot json\n{\"cmd\":\"vm_list\"}\n")
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("{\"ok\":true"));
    assert!(lines[1].contains("\"ok\":false") && lines[1].contains("bad request"));
    assert!(lines[2].contains("\"pid\""));

    // A second daemon on the same socket is refused.
    let e = control::bind(&sock).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
}

#[test]
fn a_stale_socket_is_replaced_and_a_missing_one_says_how_to_start_vdd() {
    let d = common::tmpdir("stale");
    let sock = d.join("vdd.sock");
    let e = control::request(&sock, &Request::Status).unwrap_err();
    assert!(matches!(e, ClientError::NotRunning(_)));
    assert!(e.to_string().contains("start it with `vdd --config"), "{e}");
    // A socket file nobody listens on (vdd was killed with -9).
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let e = control::request(&sock, &Request::Status).unwrap_err();
    assert!(matches!(e, ClientError::NotRunning(_)), "{e}");
    let l = control::bind(&sock).unwrap();
    control::spawn_server(l, Arc::new(SharedHandler(shared()))).unwrap();
    assert!(control::request(&sock, &Request::Status).is_ok());
}

#[test]
fn peer_credentials_are_read() {
    let (a, _b) = UnixStream::pair().unwrap();
    assert_eq!(control::peer_uid(&a).unwrap(), unsafe {
        nix::libc::geteuid()
    });
}

#[test]
fn readiness_datagram() {
    let d = common::tmpdir("notify");
    let p = d.join("notify.sock");
    let r = UnixDatagram::bind(&p).unwrap();
    // SAFETY (set_var): this test binary's only test touching NOTIFY_SOCKET.
    unsafe { std::env::set_var("NOTIFY_SOCKET", &p) };
    assert!(vdd::notify::ready("watching VMs").unwrap());
    let mut buf = [0u8; 64];
    let n = r.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1\nSTATUS=watching VMs\n");
    assert!(vdd::notify::stopping().unwrap());
    let n = r.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1\n");
    unsafe { std::env::remove_var("NOTIFY_SOCKET") };
    assert!(!vdd::notify::ready("x").unwrap());
}

#[test]
fn metrics_over_a_unix_socket() {
    let d = common::tmpdir("metrics");
    let p = d.join("m.sock");
    let sh = shared();
    let s2 = sh.clone();
    vdd::metrics::spawn(
        &vdd::config::MetricsAddr::Unix(p.clone()),
        Arc::new(move || {
            let s = s2.lock().unwrap();
            vdd::metrics::render(&s.vms, &s.status)
        }),
    )
    .unwrap();
    let mut c = UnixStream::connect(&p).unwrap();
    c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.0 200 OK\r\n"), "{out}");
    let me = std::process::id();
    assert!(
        out.contains(&format!("vdd_vm_io_rate{{pid=\"{me}\"}} 1234.0")),
        "{out}"
    );
    assert!(
        out.contains(&format!("vdd_vm_state{{pid=\"{me}\",state=\"placed\"}} 1")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "vdd_vm_io_source_rate{{pid=\"{me}\",source=\"evtchn\"}} 234.0"
        )),
        "{out}"
    );
    assert!(
        out.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{out}"
    );
    // OpenMetrics: the family is named without `_total`, its sample with it; `# EOF` ends it.
    assert!(out.contains("# TYPE vdd_placements counter\n"), "{out}");
    assert!(out.contains("\nvdd_placements_total 0\n"), "{out}");
    assert!(out.ends_with("# EOF\n"), "{out}");
}

/// vd_input_irq as vdd sees it: VMs 3 and 5 exist; the focus and the calls are recorded.
struct FakeInput {
    focus: Mutex<Vec<u32>>,
}

impl vdd::input::InputCtl for FakeInput {
    fn focus(&self, vm_id: u32) -> Result<(), vdd::input::InputError> {
        if vm_id != 0 && vm_id != 3 && vm_id != 5 {
            return Err(vdd::input::InputError::Ioctl(
                "VDI_IOC_FOCUS",
                nix::errno::Errno::ENOENT,
            ));
        }
        self.focus.lock().unwrap().push(vm_id);
        Ok(())
    }
    fn stats(&self, vm_id: u32) -> Result<vd_uapi::VdiStats, vdd::input::InputError> {
        match vm_id {
            3 => Ok(vd_uapi::VdiStats {
                vm_id,
                queue_depth: 7,
                max_depth: 12,
                dropped: 1,
                ..Default::default()
            }),
            5 => Ok(vd_uapi::VdiStats {
                vm_id,
                running: 1,
                ..Default::default()
            }),
            _ => Err(vdd::input::InputError::Ioctl(
                "VDI_IOC_STATS",
                nix::errno::Errno::ENOENT,
            )),
        }
    }
    fn device_vms(&self) -> Result<Vec<u32>, vdd::input::InputError> {
        Ok(vec![5])
    }
}

#[test]
fn focus_round_trip_and_input_metrics() {
    use vdd::protocol::FocusView;
    let d = common::tmpdir("focus");
    let sock = d.join("vdd.sock");
    let sh = shared();
    let fake = Arc::new(FakeInput {
        focus: Mutex::new(vec![]),
    });
    sh.lock().unwrap().input_ctl = vdd::input::InputHandle(Some(fake.clone()));
    control::spawn_server(
        control::bind(&sock).unwrap(),
        Arc::new(SharedHandler(sh.clone())),
    )
    .unwrap();

    let f: FocusView =
        serde_json::from_value(control::request(&sock, &Request::Focus { vm_id: 3 }).unwrap())
            .unwrap();
    assert_eq!(
        f,
        FocusView {
            vm_id: 3,
            previous: 0
        }
    );
    let f: FocusView =
        serde_json::from_value(control::request(&sock, &Request::Focus { vm_id: 5 }).unwrap())
            .unwrap();
    assert_eq!(
        f,
        FocusView {
            vm_id: 5,
            previous: 3
        }
    );
    let e = control::request(&sock, &Request::Focus { vm_id: 9 }).unwrap_err();
    assert!(e.to_string().contains("no VM with that id"), "{e}");
    assert_eq!(
        *fake.focus.lock().unwrap(),
        [3, 5],
        "VDI_IOC_FOCUS called by vdd, the failed one not recorded"
    );

    let st: StatusView =
        serde_json::from_value(control::request(&sock, &Request::Status).unwrap()).unwrap();
    assert_eq!(st.input.focused, Some(5));
    assert_eq!(st.input.focus_changes_total, 2);

    // The queues of the known VMs (focused ones and routed devices' VMs).
    let known = sh.lock().unwrap().input_known.clone();
    assert_eq!(known.iter().copied().collect::<Vec<_>>(), [3, 5]);
    let rows = vdd::input::collect_stats(&*fake, &known).unwrap();
    assert_eq!(rows.len(), 2);
    sh.lock().unwrap().input.vms = rows;
    let page = {
        let s = sh.lock().unwrap();
        vdd::metrics::render(&s.vms, &s.status_now())
    };
    assert!(page.contains("vdd_input_focused_vm 5"), "{page}");
    assert!(page.contains("vdd_input_queue_depth{vm=\"3\"} 7"), "{page}");
    assert!(page.contains("vdd_input_queue_depth{vm=\"5\"} 0"), "{page}");
    assert!(
        page.contains("vdd_input_dropped_total{vm=\"3\"} 1"),
        "{page}"
    );
    assert!(page.contains("vdd_input_focus_changes_total 2"), "{page}");
    assert!(page.contains("vdd_sriov_up 0"), "{page}");

    // Clearing the focus.
    let f: FocusView =
        serde_json::from_value(control::request(&sock, &Request::Focus { vm_id: 0 }).unwrap())
            .unwrap();
    assert_eq!(
        f,
        FocusView {
            vm_id: 0,
            previous: 5
        }
    );
    assert_eq!(sh.lock().unwrap().input.focused, None);
    // Without an input device vdd says so.
    sh.lock().unwrap().input_ctl = vdd::input::InputHandle(None);
    let e = control::request(&sock, &Request::Focus { vm_id: 3 }).unwrap_err();
    assert!(e.to_string().contains("no input device"), "{e}");
}

#[test]
fn focus_without_the_module_is_a_clear_error() {
    let d = common::tmpdir("focus-nomod");
    let sock = d.join("vdd.sock");
    let sh = shared();
    sh.lock().unwrap().input_ctl =
        vdd::input::InputHandle(Some(Arc::new(vdd::input::RealInput(d.join("vd_input")))));
    control::spawn_server(
        control::bind(&sock).unwrap(),
        Arc::new(SharedHandler(sh.clone())),
    )
    .unwrap();
    let e = control::request(&sock, &Request::Focus { vm_id: 3 }).unwrap_err();
    assert!(e.to_string().contains("vd_input_irq is not loaded"), "{e}");
    assert!(sh.lock().unwrap().input.state.contains("not loaded"));
}
