//! `vd-itest input-unplug`: a device unplugged while routed; VMMs killed with events queued.

use super::fixtures::*;

pub fn unplug() -> Result<()> {
    let adm = Input::open()?;
    let pid = std::process::id();
    let name = format!("vd-itest unplug {pid}");
    let _route = Route::add(&adm, vdi_match::NAME, true, &name)?;
    let vm = 4000 + pid % 1000;
    let mut a = Sink::new(vm, 4096)?;
    adm.focus(vm)?;
    let listed = |adm: &Input| -> Result<Vec<VdiDevice>> {
        Ok(adm
            .devices()?
            .into_iter()
            .filter(|d| vd_sys::input::fixed_str(&d.name) == name)
            .collect())
    };
    let new_dev = |i: usize| {
        Uinput::new(
            &name,
            &format!("vd-itest/unplug{pid}/input{i}"),
            Kind::KeyboardMouse,
        )
    };

    let mut d1 = new_dev(1)?;
    let l = listed(&adm)?;
    check!(
        l.len() == 1 && l[0].routed == 1,
        "a device that appears after the route is routed"
    );
    let fr: Vec<Ev> = (0..10).flat_map(tagged_frame).collect();
    d1.emit(&fr)?;
    check!(a.wait_n(fr.len(), T)?, "10 frames delivered");
    a.take();

    // Unplug with a key held and a frame open.
    d1.emit(&[
        (EV_KEY, KEYS[0], 1),
        (EV_SYN, SYN_REPORT, 0),
        (EV_KEY, KEYS[1], 1),
        (EV_REL, REL_X, 3),
    ])?;
    d1.destroy()?;
    check!(
        listed(&adm)?.is_empty(),
        "UI_DEV_DESTROY while routed: the device is gone from LIST_DEVICES"
    );
    check!(
        adm.version().is_ok() && a.stats().is_ok(),
        "the module still answers"
    );
    std::thread::sleep(Duration::from_millis(50));
    a.drain()?;
    let evs = evs_of(&a.take());
    let (_, open) = frames(&evs);
    check!(
        open.is_empty(),
        "the VM's stream ends on a frame boundary ({} events after the unplug)",
        evs.len()
    );
    let mut held = std::collections::BTreeMap::new();
    for e in &evs {
        if e.ty == EV_KEY {
            held.insert(e.code, e.value);
        }
    }
    println!("info: events the VM got at the unplug: {:?}", triples(&evs));
    check!(
        held.values().all(|&v| v == 0),
        "no key left pressed in the VM after the unplug (last states {held:?})"
    );

    // Unplug under load, from another thread.
    let d2 = new_dev(2)?;
    let stop = AtomicBool::new(false);
    let seen = AtomicU64::new(0);
    let dropped0 = a.stats()?.dropped;
    let sent = std::thread::scope(|s| -> Result<usize> {
        let w = s.spawn(|| -> usize {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                // Paced to the consumer: a full ring and queue would end in SYN_DROPPED.
                if i as u64 > seen.load(Ordering::Relaxed) + 300 {
                    std::thread::yield_now();
                    continue;
                }
                if d2.emit(&tagged_frame(i)).is_err() {
                    break;
                }
                i += 1;
            }
            i
        });
        let t = Instant::now();
        let mut n = 0;
        while t.elapsed() < Duration::from_millis(200) {
            n += a.drain()?;
            seen.store(n as u64 / 5, Ordering::Relaxed);
            std::thread::yield_now();
        }
        // Destroy through the same file the writer writes: uinput serialises the two.
        d2.destroy_shared()?;
        std::thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Relaxed);
        w.join().map_err(|_| anyhow!("writer panicked"))
    })?;
    drop(d2);
    std::thread::sleep(Duration::from_millis(50));
    a.drain()?;
    let evs = evs_of(&a.take());
    let (fr, open) = frames(&evs);
    let whole = fr
        .iter()
        .filter(|f| f.len() == 5 && f.iter().any(|e| e.ty == EV_REL && e.code == REL_X))
        .count();
    check!(open.is_empty() && whole == sent, "unplug under load: all {sent} frames written arrived whole ({whole}), the stream ends on a frame boundary");
    check!(a.stats()?.dropped == dropped0, "nothing dropped");

    // Plug again: the route still applies.
    let d3 = new_dev(3)?;
    let l = listed(&adm)?;
    check!(
        l.len() == 1 && l[0].routed == 1 && l[0].grabbed == 1,
        "re-plugged device with the same name: routed and grabbed again"
    );
    d3.emit(&fr_for(0..10))?;
    check!(
        a.wait_n(50, T)? && triples(&evs_of(&a.take())) == fr_for(0..10),
        "the VM gets the new device's events"
    );
    drop(d3);

    // Many plugs and unplugs, closing the uinput file without UI_DEV_DESTROY.
    // Four frames per device: its key presses and releases balance (a release on a new device
    // of a key pressed on an old one would be dropped by the input core).
    for i in 0..20 {
        let mut d = new_dev(10 + i)?;
        d.emit(&fr_for(i * 4..i * 4 + 4))?;
        d.close();
    }
    let tagged = |g: &[RingEvent]| {
        g.iter()
            .filter(|e| e.ev.ty == EV_REL && e.ev.code == REL_X)
            .count()
    };
    a.wait(T, |g| tagged(g) >= 80)?;
    std::thread::sleep(Duration::from_millis(20));
    a.drain()?;
    let evs = evs_of(&a.take());
    let (fr, open) = frames(&evs);
    let (ours, released): (Vec<&[VdiEvent]>, Vec<&[VdiEvent]>) =
        fr.iter().partition(|f| f.iter().any(|e| e.ty == EV_REL));
    let ours: Vec<Ev> = ours.iter().flat_map(|f| triples(f)).collect();
    if ours != fr_for(0..80) {
        let want = fr_for(0..80);
        let i = ours
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(want.len()));
        bail!(
            "20 plug/unplug cycles: {} events of tagged frames, want {}; first difference at {i}: got {:?} want {:?}",
            ours.len(),
            want.len(),
            &ours[i.saturating_sub(2)..(i + 5).min(ours.len())],
            &want[i.saturating_sub(2)..(i + 5).min(want.len())]
        );
    }
    check!(open.is_empty() && released.is_empty(), "20 plug/unplug cycles (file closed, no destroy): all 80 frames arrived whole, in order, nothing else");
    check!(listed(&adm)?.is_empty(), "no device left in LIST_DEVICES");
    let s = a.stats()?;
    check!(
        s.dropped == 0 && s.running == 1,
        "VM sink fine: dropped {}, running {}",
        s.dropped,
        s.running
    );
    let d4 = new_dev(99)?;
    d4.emit(&fr_for(100..105))?;
    check!(a.wait_n(25, T)?, "and still works with a new device");
    Ok(())
}

fn fr_for(r: std::ops::Range<usize>) -> Vec<Ev> {
    r.flat_map(tagged_frame).collect()
}
