//! `vd-itest input-hold`: keeps a VM sink open for shell tests.

use super::fixtures::*;

/// A stand-in VMM to be killed by the kill test: a VM sink with a stopped vCPU child and the
/// 10,000-event burst queued, then it sleeps.
pub fn hold(name: &str, vm: u32) -> Result<()> {
    let adm = Input::open()?;
    match adm.route(&route_spec(vdi_match::NAME, true, name)?) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => bail!("VDI_IOC_ROUTE: {e}"),
    }
    let kb = Uinput::new(name, "vd-itest/hold/input0", Kind::KeyboardMouse)?;
    let a = Sink::new(vm, 1024)?;
    adm.focus(vm)?;
    let child = VcpuChild::spawn(&a.dev, if ncpus() > 1 { Some(1) } else { None })?;
    a.stats_until(Duration::from_secs(5), |s| s.vcpus == 1)?;
    child.stop()?;
    a.stats_until(Duration::from_secs(5), |s| s.running == 0)?;
    emit_chunks(&kb, &sched_burst()?, 600)?;
    let s = a.stats()?;
    println!(
        "queued depth={} queued_total={} vm={} child={}",
        s.queue_depth, s.queued, vm, child.pid
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
