//! `vd-itest input-mt` (multitouch slots across a full queue) and `input-unload` (rmmod while a former vCPU thread lives).

use super::fixtures::*;

/// `input-mt`: a two-finger multitouch device (type B slots) moves both fingers 400 times
/// while the vCPU is stopped; the queue has to coalesce the 2,800 events into its 1,024 slots.
/// After SIGCONT a consumer that follows ABS_MT_SLOT must see every position in the slot of
/// the finger that made it, the last position of each finger, and both contacts ending.
pub fn multitouch() -> Result<()> {
    check!(
        ncpus() >= 2,
        "{} CPUs: the vCPU child gets one of its own",
        ncpus()
    );
    let adm = Input::open()?;
    let pid = std::process::id();
    let name = format!("vd-itest mt {pid}");
    let mt = Uinput::new(&name, &format!("vd-itest/mt{pid}/input0"), Kind::Multitouch)?;
    let _route = Route::add(&adm, vdi_match::NAME, true, &name)?;
    let vm = 7000 + pid % 1000;
    let mut a = Sink::new(vm, 4096)?;
    adm.focus(vm)?;
    pin(0);
    let child = VcpuChild::spawn(&a.dev, Some(1))?;
    let (_, ok) = a.stats_until(Duration::from_secs(5), |s| s.vcpus == 1)?;
    check!(ok, "vCPU child registered");
    child.stop()?;
    let (_, ok) = a.stats_until(Duration::from_secs(5), |s| s.running == 0)?;
    check!(ok, "vCPU child stopped: the VM is not running");
    let s0 = a.stats()?;
    // Finger 0 moves along 1000.., finger 1 along 20000..: a value tells whose it is.
    const MOVES: i32 = 400;
    let down = [
        (EV_ABS, ABS_MT_SLOT, 0),
        (EV_ABS, ABS_MT_TRACKING_ID, 1),
        (EV_ABS, ABS_MT_POSITION_X, 999),
        (EV_ABS, ABS_MT_POSITION_Y, 999),
        (EV_ABS, ABS_MT_SLOT, 1),
        (EV_ABS, ABS_MT_TRACKING_ID, 2),
        (EV_ABS, ABS_MT_POSITION_X, 19999),
        (EV_ABS, ABS_MT_POSITION_Y, 19999),
        (EV_SYN, SYN_REPORT, 0),
    ];
    mt.emit(&down)?;
    let mut moves = vec![];
    for i in 0..MOVES {
        moves.extend([
            (EV_ABS, ABS_MT_SLOT, 0),
            (EV_ABS, ABS_MT_POSITION_X, 1000 + i),
            (EV_ABS, ABS_MT_POSITION_Y, 1000 + i),
            (EV_ABS, ABS_MT_SLOT, 1),
            (EV_ABS, ABS_MT_POSITION_X, 20000 + i),
            (EV_ABS, ABS_MT_POSITION_Y, 20000 + i),
            (EV_SYN, SYN_REPORT, 0),
        ]);
    }
    emit_chunks(&mt, &moves, 700)?;
    let up = [
        (EV_ABS, ABS_MT_SLOT, 0),
        (EV_ABS, ABS_MT_TRACKING_ID, -1),
        (EV_ABS, ABS_MT_SLOT, 1),
        (EV_ABS, ABS_MT_TRACKING_ID, -1),
        (EV_SYN, SYN_REPORT, 0),
    ];
    mt.emit(&up)?;
    let s1 = a.stats()?;
    check!(
        a.available()? == 0 && s1.queued > s0.queued,
        "stopped: {} events queued, none in the ring",
        s1.queued - s0.queued
    );
    check!(
        s1.coalesced > s0.coalesced && s1.dropped == s0.dropped,
        "the queue coalesced {} events, dropped none",
        s1.coalesced - s0.coalesced
    );
    child.cont()?;
    let lifted = |g: &[RingEvent]| {
        g.iter()
            .filter(|e| e.ev.ty == EV_ABS && e.ev.code == ABS_MT_TRACKING_ID && e.ev.value == -1)
            .count()
            >= 2
    };
    check!(
        a.wait(T, lifted)?,
        "SIGCONT: the queue was flushed up to both contacts ending ({} events)",
        a.got.len()
    );
    let evs = evs_of(&a.take());
    let (_, open) = frames(&evs);
    check!(
        open.is_empty()
            && !evs
                .iter()
                .any(|e| e.ty == EV_SYN && e.code == vd_sys::input::SYN_DROPPED),
        "whole frames, no SYN_DROPPED"
    );
    // Replay as a type-B consumer does: values go to the slot last selected (slot 0 at first).
    let mut slot = 0;
    let mut xs: [Vec<i32>; 2] = [vec![], vec![]];
    let mut ids: [Vec<i32>; 2] = [vec![], vec![]];
    for e in &evs {
        match (e.ty, e.code) {
            (EV_ABS, ABS_MT_SLOT) => slot = e.value,
            (EV_ABS, ABS_MT_POSITION_X) | (EV_ABS, ABS_MT_TRACKING_ID) => {
                let Some(k) = usize::try_from(slot).ok().filter(|&k| k < 2) else {
                    bail!("a value for slot {slot}, which the device does not have");
                };
                if e.code == ABS_MT_POSITION_X {
                    xs[k].push(e.value)
                } else {
                    ids[k].push(e.value)
                }
            }
            _ => {}
        }
    }
    println!(
        "info: delivered {} events; slot 0 x: {} values, slot 1 x: {} values",
        evs.len(),
        xs[0].len(),
        xs[1].len()
    );
    let own = |k: usize, x: i32| {
        if k == 0 {
            (999..1000 + MOVES).contains(&x)
        } else {
            (19999..20000 + MOVES).contains(&x)
        }
    };
    for k in 0..2 {
        let bad: Vec<i32> = xs[k].iter().copied().filter(|&x| !own(k, x)).collect();
        check!(
            bad.is_empty(),
            "slot {k}: every ABS_MT_POSITION_X is finger {k}'s ({} values, foreign: {:?})",
            xs[k].len(),
            &bad[..bad.len().min(8)]
        );
        check!(
            xs[k].windows(2).all(|w| w[0] < w[1]),
            "slot {k}: positions in order"
        );
        let last = if k == 0 { 999 + MOVES } else { 19999 + MOVES };
        check!(
            xs[k].last() == Some(&last),
            "slot {k}: the finger's last position {last} arrived (got {:?})",
            xs[k].last()
        );
        check!(
            ids[k] == [k as i32 + 1, -1],
            "slot {k}: its contact began and ended ({:?})",
            ids[k]
        );
    }
    Ok(())
}

/// `input-unload`: a VMM registers a vCPU thread and closes its file while the thread lives
/// on. The thread's hook (a preempt notifier into the module's code) pins the module: rmmod is
/// refused at once with EWOULDBLOCK (what `delete_module` answers for a module in use) while
/// the thread lives, and succeeds once it is gone (retried until then, bounded). Leaves the
/// module unloaded.
pub fn unload() -> Result<()> {
    fn delete_module() -> Result<(), Errno> {
        // SAFETY: `delete_module(name, flags)` reads a NUL-terminated name.
        let r = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_delete_module,
                c"vd_input_irq".as_ptr(),
                nix::libc::O_NONBLOCK,
            )
        };
        Errno::result(r).map(drop)
    }
    fn refcnt() -> String {
        std::fs::read_to_string("/sys/module/vd_input_irq/refcnt")
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
    let vm = 7500 + std::process::id() % 400;
    let Sink { dev, map, .. } = Sink::new(vm, 64)?;
    let dev = std::sync::Arc::new(dev);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (reg_tx, reg_rx) = std::sync::mpsc::channel::<Result<(), Errno>>();
    let d = dev.clone();
    let t = std::thread::spawn(move || {
        let reg = d.vcpu_register();
        // Let go of the device before reporting: the main thread takes the last reference as
        // soon as it hears back (dropping after the send raced with that: one soak run in ten
        // found "the device is still shared").
        drop(d);
        let _ = reg_tx.send(reg);
        // Lives on, asleep, until told to go.
        let _ = rx.recv();
    });
    let reg = reg_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| anyhow!("the vCPU thread never registered"))?;
    check!(
        reg.is_ok(),
        "a thread registered as the VM's vCPU ({})",
        errno_of(reg)
    );
    // The VMM closes the device: the last reference to the file goes.
    drop(map);
    let Ok(dev) = std::sync::Arc::try_unwrap(dev) else {
        bail!("the device is still shared")
    };
    drop(dev);
    println!(
        "info: module refcnt with the file closed and the vCPU thread alive: {}",
        refcnt()
    );
    let t0 = Instant::now();
    let r = delete_module();
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    check!(
        r == Err(Errno::EWOULDBLOCK),
        "rmmod while the former vCPU thread lives: {} after {ms:.1} ms (want EWOULDBLOCK)",
        errno_of(r)
    );
    check!(
        std::path::Path::new("/sys/module/vd_input_irq").exists(),
        "the module is still loaded"
    );
    tx.send(()).map_err(|_| anyhow!("vCPU thread gone early"))?;
    t.join().map_err(|_| anyhow!("vCPU thread panicked"))?;
    // The thread is gone; the module frees its hook once it is off every CPU.
    let t0 = Instant::now();
    let mut tries = 0;
    let last = loop {
        tries += 1;
        match delete_module() {
            Ok(()) => break Ok(()),
            Err(Errno::EWOULDBLOCK) if t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => break Err(e),
        }
    };
    check!(
        last.is_ok(),
        "rmmod after the thread exited: {} ({tries} tries in {:.0} ms)",
        errno_of(last),
        t0.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
