//! Helpers for the vdd VM tests (`scripts/vmtests/5x-vdd-*.sh`): fake QEMUs (QMP peers) standing
//! in for the VMMs, a VM waiting for a VF, and frames on a VF's netdev.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use vd_sys::sriov::{bdf_name, event_name, Manager};
use vdd::fakeqmp::{self, FakeOpts, Journal};

/// Serves one fake QMP peer per `NAME=SOCKET` until killed; every command goes, as one JSON line
/// `{"vm": NAME, "execute": ..., "arguments": ...}`, to `log` (one file: the order across VMs).
pub fn fake_qmp(vms: &[String], log: &str, fail_device_add: &[String]) -> Result<()> {
    let j = Journal::with_file(std::path::Path::new(log)).with_context(|| format!("log {log}"))?;
    for v in vms {
        let (name, sock) = v
            .split_once('=')
            .with_context(|| format!("{v:?}: expected NAME=SOCKET"))?;
        let _ = std::fs::remove_file(sock);
        let opts = FakeOpts {
            fail_device_add: fail_device_add.iter().any(|n| n == name),
            ..Default::default()
        };
        fakeqmp::spawn(std::path::Path::new(sock), name, j.clone(), opts)
            .with_context(|| format!("bind {sock}"))?;
    }
    println!("ready: {} fake QMP peer(s), log {log}", vms.len());
    std::io::stdout().flush()?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// VM `vm` waits for a VF (`VDS_IOC_WAIT` on its own file, as a VMM would) and holds whatever
/// it gets until killed, printing `WAITING` and then every event that concerns it.
pub fn waiter(vm: u64) -> Result<()> {
    let m = Manager::open()?;
    m.wait_for_vf(vm, false)
        .with_context(|| format!("VDS_IOC_WAIT for VM {vm}"))?;
    println!("WAITING vm {vm}");
    std::io::stdout().flush()?;
    loop {
        match m.read_events() {
            Ok(evs) => {
                for e in evs.iter().filter(|e| e.vm_id == vm || e.other_vm == vm) {
                    println!(
                        "EVENT {} {} vm {} other {}",
                        event_name(e.kind),
                        bdf_name(e.bdf),
                        e.vm_id,
                        e.other_vm
                    );
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => bail!("read events: {e}"),
        }
        std::io::stdout().flush()?;
    }
}

/// Sends Ethernet frames (local experimental ethertype, broadcast) out of `ifname` at about
/// `rate` bytes/s for `secs` seconds; prints the bytes sent.
pub fn send_frames(ifname: &str, rate: u64, secs: f64) -> Result<()> {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let t0 = Instant::now();
    let sent = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_secs_f64(secs));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        crate::sriov::send_frames(ifname, rate, &stop)
    })?;
    println!(
        "sent {sent} bytes on {ifname} in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
