//! The whole daemon on this host against a fake KVM debugfs tree whose "vCPU thread" is a real
//! child process: real sched_setaffinity / sched_setattr, a real state file, a simulated crash
//! (the daemon dropped without shutdown) and restart.

mod common;

use std::time::Duration;

use vdd::config::Config;
use vdd::cpus;
use vdd::daemon::Daemon;
use vdd::host::{self, RealHost};
use vdd::placer::{Host, StateFile};

fn aff(tid: u32) -> String {
    cpus::format(&RealHost.affinity(tid).unwrap())
}

#[test]
fn place_crash_restart_cool_down_and_shutdown() {
    let online = host::online_cpus().unwrap();
    // Placement moves a thread between CPUs 0 and 1: on a machine without them this test cannot
    // check anything, and a check that did not run must not count as passed.
    assert!(
        online.len() >= 2 && online.contains(&1),
        "this test needs CPUs 0 and 1 online (have {})",
        cpus::format(&online)
    );
    let d = common::tmpdir("daemon");
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let pid = child.id();
    // The child inherits our affinity; give it every online CPU (a cpuset may refuse: then it
    // counts as pinned and we let vdd manage pinned VMs).
    let mut h = RealHost;
    let _ = h.set_affinity(pid, &online);
    let orig = aff(pid);
    let orig_slice = h.slice(pid).unwrap();
    let vm = d.join(format!("kvm/{pid}-7"));
    std::fs::create_dir_all(vm.join("vcpu0")).unwrap();
    std::fs::write(vm.join("vcpu0/pid"), format!("{pid}\n")).unwrap();
    let set_io = |n: u64| std::fs::write(vm.join("io_exits"), format!("{n}\n")).unwrap();
    set_io(0);

    let mut cfg = Config::default();
    cfg.policy.interval_ms = 50;
    cfg.policy.window_ms = 100;
    cfg.policy.threshold = 1000.0;
    cfg.policy.hysteresis = 100.0;
    cfg.policy.hold_ms = 200;
    cfg.policy.slice_us = 700;
    cfg.policy.max_vms_on_driver_cores = 1;
    cfg.policy.manage_pinned = orig != cpus::format(&online);
    cfg.host.driver_cores = "1".into();
    cfg.host.kvm_debugfs = d.join("kvm");
    cfg.host.evtchn_device = d.join("no-evtchn");
    cfg.daemon.state_file = d.join("run/state.json");
    cfg.daemon.socket = d.join("run/vdd.sock");
    let slice_on = host::probe_slice(700_000) == host::SliceMode::EevdfSlice;

    let status = |dm: &Daemon| dm.shared().lock().unwrap().status.clone();
    let mut io = 0u64;
    let mut hot_tick = |dm: &mut Daemon, hot: bool| {
        std::thread::sleep(Duration::from_millis(50));
        if hot {
            io += 500; // 500 per 50 ms = 10000/s
        }
        set_io(io);
        dm.tick();
    };

    let mut dm = Daemon::start(cfg.clone(), None).unwrap();
    dm.tick();
    assert_eq!(aff(pid), orig, "one sample: nothing yet");
    hot_tick(&mut dm, true);
    assert_eq!(
        aff(pid),
        "1",
        "placed on the driver core at the second sample"
    );
    if slice_on {
        assert_eq!(h.slice(pid).unwrap(), Some(700_000), "EEVDF slice set");
    }
    assert_eq!(status(&dm).placements_total, 1);
    assert!(status(&dm).sources["vd_evtchn"].contains("is vd_evtchn loaded"));
    assert_eq!(status(&dm).sources["kvm_debugfs"], "ok");

    // kill -9: no shutdown, the kernel keeps the placement, the state file keeps the originals.
    drop(dm);
    let st: StateFile =
        serde_json::from_str(&std::fs::read_to_string(&cfg.daemon.state_file).unwrap()).unwrap();
    assert_eq!(st.threads.len(), 1);
    assert_eq!(st.threads[0].orig_affinity, orig);
    assert_eq!(aff(pid), "1");

    let mut dm = Daemon::start(cfg.clone(), None).unwrap();
    for _ in 0..4 {
        hot_tick(&mut dm, true);
    }
    assert_eq!(status(&dm).placements_total, 0, "adopted, not placed again");
    assert_eq!(aff(pid), "1");
    let st: StateFile =
        serde_json::from_str(&std::fs::read_to_string(&cfg.daemon.state_file).unwrap()).unwrap();
    assert_eq!(
        st.threads[0].orig_affinity, orig,
        "the original is still the real one"
    );

    // Cool down: restored after hold (200 ms) once the window (100 ms) is cool.
    let mut n = 0;
    while aff(pid) == "1" && n < 40 {
        hot_tick(&mut dm, false);
        n += 1;
    }
    assert_eq!(aff(pid), orig, "restored after cooling down");
    assert!(n >= 4, "not before hold: restored after {n} ticks");
    assert_eq!(h.slice(pid).unwrap(), orig_slice, "slice restored");
    assert_eq!(status(&dm).restores_total, 1);

    // Hot again, then a clean shutdown restores.
    hot_tick(&mut dm, true);
    hot_tick(&mut dm, true);
    hot_tick(&mut dm, true);
    assert_eq!(aff(pid), "1");
    dm.shutdown();
    assert_eq!(aff(pid), orig);
    assert_eq!(h.slice(pid).unwrap(), orig_slice);
    let st: StateFile =
        serde_json::from_str(&std::fs::read_to_string(&cfg.daemon.state_file).unwrap()).unwrap();
    assert!(st.threads.is_empty());

    // Placed again, then the VM exits: it is forgotten, nothing fails.
    let mut dm = Daemon::start(cfg.clone(), None).unwrap();
    dm.tick();
    hot_tick(&mut dm, true);
    assert_eq!(aff(pid), "1");
    child.kill().unwrap();
    child.wait().unwrap();
    hot_tick(&mut dm, true);
    assert_eq!(status(&dm).vms, 0);
    assert_eq!(status(&dm).managed_threads, 0);
}
