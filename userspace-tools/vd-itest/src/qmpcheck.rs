//! `vd-itest qmp-check`: vdd's QMP client ([`vdd::vmm::Qmp`], on the `qapi` crate's types)
//! against a real QEMU (scripts/vmtests/24-qmp-qemu.sh starts a stock `qemu-system-x86_64 -M
//! none` with a QMP socket): the greeting and capabilities negotiation; errors QEMU answers,
//! typed (`device_del` of an unknown id through vdd's own detach path: `DeviceNotFound`;
//! `device_add vfio-pci` where there is no PCI bus: `GenericError`); `stop`, whose `STOP` event
//! QEMU sends before the command's answer (the client keeps the event and returns the answer);
//! `query-status`; `cont` and its `RESUME`; and, with `--qemu-pid`, a QEMU that does not answer
//! (SIGSTOPped): the command fails after its timeout instead of hanging, and once QEMU runs again
//! its late answer is skipped and the next command gets its own.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use vdd::vmm::{qmp, Qmp, QmpEvent, VfDevice, Vmm, VmmError};

use crate::check;

fn status(q: &mut Qmp) -> Result<qmp::StatusInfo> {
    q.execute(&qmp::query_status {})
        .map_err(|e| anyhow!("query-status: {e}"))
}

fn names(ev: &[QmpEvent]) -> Vec<String> {
    ev.iter().map(QmpEvent::name).collect()
}

/// `stop` or `cont` through QMP.
pub fn vcpus(sock: &Path, action: &str) -> Result<()> {
    let mut q = Qmp::connect(sock).map_err(|e| anyhow!("QMP {}: {e}", sock.display()))?;
    match action {
        "stop" => q.execute(&qmp::stop {}).map(drop),
        "cont" => q.execute(&qmp::cont {}).map(drop),
        _ => return Err(anyhow!("{action}: stop or cont")),
    }
    .map_err(|e| anyhow!("QMP {action}: {e}"))?;
    println!("ok: QMP {action} on {}", sock.display());
    Ok(())
}

pub fn run(sock: &Path, qemu_pid: Option<u32>) -> Result<()> {
    let mut q = Qmp::connect(sock).map_err(|e| anyhow!("QMP {}: {e}", sock.display()))?;
    let v = &q.greeting.version;
    check!(
        v.qemu.major >= 6,
        "greeting and qmp_capabilities: QEMU {}.{}.{} ({:?})",
        v.qemu.major,
        v.qemu.minor,
        v.qemu.micro,
        v.package
    );
    let st = status(&mut q)?;
    check!(
        matches!(st.status, qmp::RunState::running) && st.running,
        "query-status: running ({:?})",
        st.status
    );

    let e = q
        .detach_vf("vd-no-such-device", Duration::from_secs(5))
        .err();
    check!(
        matches!(&e, Some(VmmError::Command { cmd: "device_del", class: qapi::ErrorClass::DeviceNotFound, desc })
            if desc.contains("vd-no-such-device")),
        "device_del of an unknown id: a typed DeviceNotFound error ({e:?})"
    );
    let e = q
        .attach_vf(&VfDevice {
            id: "vd-vf0".into(),
            host: "0000:99:00.0".into(),
            failover_pair_id: None,
            bus: None,
        })
        .err();
    check!(
        matches!(
            &e,
            Some(VmmError::Command {
                cmd: "device_add",
                class: qapi::ErrorClass::GenericError,
                ..
            })
        ),
        "device_add vfio-pci without a PCI bus: a typed GenericError ({e:?})"
    );

    q.events.clear();
    let r = q.execute(&qmp::stop {});
    check!(
        r.is_ok(),
        "stop: its answer is returned although an event came first ({:?})",
        r.err()
    );
    check!(
        matches!(&q.events[..], [QmpEvent::Typed(qmp::Event::STOP { .. })]),
        "stop: the STOP event sent while the command ran was kept, typed ({:?})",
        names(&q.events)
    );
    let st = status(&mut q)?;
    check!(
        matches!(st.status, qmp::RunState::paused) && !st.running,
        "query-status after stop: paused ({:?})",
        st.status
    );
    q.events.clear();
    q.execute(&qmp::cont {}).map_err(|e| anyhow!("cont: {e}"))?;
    let ev = q
        .wait_event(
            |e| matches!(e, QmpEvent::Typed(qmp::Event::RESUME { .. })),
            Duration::from_secs(10),
        )
        .map_err(|e| anyhow!("waiting for RESUME: {e}"))?;
    check!(ev.is_some(), "cont: RESUME");
    let st = status(&mut q)?;
    check!(
        matches!(st.status, qmp::RunState::running),
        "query-status after cont: running ({:?})",
        st.status
    );

    if let Some(pid) = qemu_pid {
        let pid = Pid::from_raw(i32::try_from(pid)?);
        kill(pid, Signal::SIGSTOP)?;
        q.command_timeout = Duration::from_secs(1);
        let t0 = std::time::Instant::now();
        let r = q.execute(&qmp::query_status {});
        let took = t0.elapsed();
        kill(pid, Signal::SIGCONT)?;
        check!(
            matches!(r, Err(VmmError::NoAnswer("query-status", _))) && took < Duration::from_secs(5),
            "a stopped QEMU: query-status fails with NoAnswer after {took:?} instead of hanging ({:?})",
            r.err()
        );
        q.command_timeout = vdd::vmm::COMMAND_TIMEOUT;
        q.events.clear();
        let r = q.execute(&qmp::stop {});
        check!(
            r.is_ok() && matches!(&q.events[..], [QmpEvent::Typed(qmp::Event::STOP { .. })]),
            "QEMU runs again: the late query-status answer is skipped, stop gets its own ({:?}, {:?})",
            r.err(),
            names(&q.events)
        );
        q.execute(&qmp::cont {}).map_err(|e| anyhow!("cont: {e}"))?;
    }
    Ok(())
}
