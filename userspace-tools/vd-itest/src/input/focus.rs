//! `vd-itest input-focus`: focus switches under load never split a frame or lose an event.

use super::fixtures::*;

pub fn focus(frames_total: usize) -> Result<()> {
    let adm = Input::open()?;
    let kb = kbd("focus")?;
    let _route = Route::add(&adm, vdi_match::NAME, true, &kb.name)?;
    let base = 3000 + (std::process::id() % 1000) * 2;
    let mut a = Sink::new(base, 4096)?;
    let mut b = Sink::new(base + 1, 4096)?;
    adm.focus(base)?;
    let written = AtomicU64::new(0);
    let seen = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    // The overlap is made, not hoped for: the switcher (this thread) switches the focus on
    // every turn of its loop, concurrently with the writer's writes, and the writer, after each
    // write of 1..7 frames, waits until the switcher has switched at least once since that
    // write began. So at least one switch falls into or right after every write, however the
    // two threads are scheduled.
    let switches = AtomicU64::new(0);
    let mut batches = 0u64;
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let w = s.spawn(|| -> Result<u64> {
            let mut i = 0;
            let mut batches = 0u64;
            while i < frames_total {
                // Keep well inside the rings: the consumer (the main thread) drains both.
                while written
                    .load(Ordering::Relaxed)
                    .saturating_sub(seen.load(Ordering::Relaxed))
                    > 300
                {
                    if done.load(Ordering::Relaxed) {
                        return Ok(batches);
                    }
                    std::thread::yield_now();
                }
                let before = switches.load(Ordering::Acquire);
                let n = (frames_total - i).min(1 + i % 7);
                let evs: Vec<Ev> = (i..i + n).flat_map(tagged_frame).collect();
                kb.emit(&evs)?;
                i += n;
                written.store(i as u64, Ordering::Relaxed);
                batches += 1;
                while switches.load(Ordering::Acquire) == before {
                    if done.load(Ordering::Relaxed) {
                        return Ok(batches);
                    }
                    std::thread::yield_now();
                }
            }
            Ok(batches)
        });
        let mut writer_done = Instant::now();
        let mut to_b = true;
        let r = (|| -> Result<()> {
            // Tagged frames arrived (one REL_X each; the module's key releases on focus
            // switches are frames of their own), counted as they come.
            let (mut n, mut seen_a, mut seen_b) = (0, 0, 0);
            let tagged = |evs: &[RingEvent]| {
                evs.iter()
                    .filter(|e| e.ev.ty == EV_REL && e.ev.code == REL_X)
                    .count()
            };
            loop {
                a.drain()?;
                b.drain()?;
                n += tagged(&a.got[seen_a..]) + tagged(&b.got[seen_b..]);
                (seen_a, seen_b) = (a.got.len(), b.got.len());
                seen.store(n as u64, Ordering::Relaxed);
                if n >= frames_total {
                    return Ok(());
                }
                if !w.is_finished() {
                    writer_done = Instant::now();
                } else if writer_done.elapsed() > Duration::from_secs(5) {
                    bail!("only {n} of {frames_total} frames arrived, 5 s after the last write");
                }
                adm.focus(if to_b { base + 1 } else { base })?;
                to_b = !to_b;
                switches.fetch_add(1, Ordering::Release);
                std::thread::yield_now();
            }
        })();
        done.store(true, Ordering::Relaxed);
        let wr = w.join().map_err(|_| anyhow!("writer panicked"))?;
        r?;
        batches = wr?;
        Ok(())
    })?;
    let switches = switches.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    check!(
        switches >= batches && batches >= (frames_total / 7) as u64,
        "{switches} focus switches while {frames_total} frames ({} events) were written in {batches} writes in {secs:.2} s: at least one switch per write",
        frames_total * 5
    );
    let mut all = vec![];
    for (name, sk) in [("A", &a), ("B", &b)] {
        let evs = evs_of(&sk.got);
        let (fr, open) = frames(&evs);
        check!(
            open.is_empty(),
            "VM {name}: the stream ends on a SYN_REPORT"
        );
        let mut tags = vec![];
        // Keys held down in this VM, from what it got: a key pressed before a focus switch is
        // released in the VM left behind, in a frame of its own, when the device's next frame
        // goes elsewhere.
        let mut held = std::collections::BTreeSet::new();
        let mut released = 0;
        for f in &fr {
            let t = f
                .iter()
                .find(|e| e.ty == EV_REL && e.code == REL_X)
                .map(|e| e.value as usize);
            match (t, &triples(f)[..]) {
                (Some(t), tf) if t >= 1 && tf == tagged_frame(t - 1) => {
                    let (_, code, v) = tf[0];
                    if v == 1 {
                        held.insert(code);
                    } else {
                        held.remove(&code);
                    }
                    tags.push(t - 1)
                }
                (None, &[(EV_KEY, code, 0), (EV_SYN, SYN_REPORT, 0)]) if held.remove(&code) => {
                    released += 1
                }
                _ => bail!("VM {name}: a split or foreign frame: {:?}", triples(f)),
            }
        }
        check!(
            held.is_empty(),
            "VM {name}: no key left held ({released} released by the module on focus switches)"
        );
        check!(
            tags.windows(2).all(|w| w[0] < w[1]),
            "VM {name}: {} whole frames, in order",
            tags.len()
        );
        check!(
            seq_contiguous(&sk.got),
            "VM {name}: ring sequence contiguous"
        );
        let st = sk.stats()?;
        check!(
            st.delivered_immediately == evs.len() as u64 && st.dropped == 0,
            "VM {name}: stats delivered_immediately {} = events received",
            st.delivered_immediately
        );
        all.extend(tags);
    }
    check!(
        !a.got.is_empty() && !b.got.is_empty(),
        "both VMs got frames ({} / {} events)",
        a.got.len(),
        b.got.len()
    );
    all.sort_unstable();
    check!(
        all == (0..frames_total).collect::<Vec<_>>(),
        "every frame went to exactly one VM: nothing lost, nothing duplicated"
    );
    let keys: usize = [&a, &b]
        .iter()
        .map(|s| s.got.iter().filter(|e| e.ev.ty == EV_KEY).count())
        .sum();
    check!(
        keys >= frames_total,
        "all key events delivered ({keys}: {frames_total} written, the rest released on switches)"
    );
    Ok(())
}

/// `input-focus-guests` (issue 13, `8b-guest-input-focus`): the focus switched between two real
/// guests (VMs `a` and `b`, each a stock QEMU served by `vd-ivshmem-server --input`) while a
/// routed uinput keyboard writes `frames_total` tagged frames (a key, `REL_X t`, `REL_Y -t`,
/// `REL_WHEEL`: keys are never coalesced, so each frame reaches a guest whole or not at all). The
/// overlap is made as in [`focus`]: the writer, after each write of 1..7 frames, waits until the
/// switcher has switched since that write began. The guests read their evdev nodes and print
/// what they got (scripts/guest-input.sh, `vd.input_tags=1`); this prints what they must add up
/// to (`FOCUS frames=N tagsum=S tagsq=Q`), after the end marker (KEY_F12 pressed and released)
/// was sent to each guest in turn. `frames_total` stays under the 8,192 events a guest's evdev
/// client holds, so a slow guest reader cannot lose any; the writer keeps each VM's queue under
/// half of the module's (see the loop).
pub fn focus_guests(va: u32, vb: u32, frames_total: usize) -> Result<()> {
    let adm = Input::open().context("open /dev/vd_input: is vd_input_irq loaded?")?;
    let kb = kbd("focus-guests")?;
    let _route = Route::add(&adm, vdi_match::NAME, true, &kb.name)?;
    for vm in [va, vb] {
        let t = Instant::now();
        while !adm.stats(vm).is_ok_and(|s| s.vcpus >= 1) {
            if t.elapsed() > T {
                bail!("VM {vm} has no followed vCPU thread after {T:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let s0 = [adm.stats(va)?, adm.stats(vb)?];
    adm.focus(va)?;
    const QUEUE_HALF: u32 = 512;
    let switches = AtomicU64::new(0);
    let throttled = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let batches = std::thread::scope(|s| -> Result<u64> {
        let w = s.spawn(|| -> Result<u64> {
            let (mut i, mut batches) = (0, 0u64);
            while i < frames_total {
                // Key frames never coalesce, so what waits for a guest whose vCPU does not run
                // is bounded by the module's 1,024-event queue (beyond it: SYN_DROPPED, as
                // evdev does). The writer keeps under half of it, as a typist would by far; the
                // guests' vCPUs still lose the CPU to the writer and the switcher all along.
                let t = Instant::now();
                while [va, vb]
                    .iter()
                    .any(|&vm| adm.stats(vm).map_or(true, |s| s.queue_depth > QUEUE_HALF))
                {
                    if t.elapsed() > T {
                        bail!("a VM's queue stayed over {QUEUE_HALF} events for {T:?}");
                    }
                    throttled.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
                let before = switches.load(Ordering::Acquire);
                let n = (frames_total - i).min(1 + i % 7);
                let evs: Vec<Ev> = (i..i + n).flat_map(tagged_frame).collect();
                kb.emit(&evs)?;
                i += n;
                batches += 1;
                while switches.load(Ordering::Acquire) == before {
                    if done.load(Ordering::Relaxed) {
                        return Ok(batches); // the switcher failed: its error is reported
                    }
                    std::thread::yield_now();
                }
            }
            Ok(batches)
        });
        let mut to_b = true;
        let r = (|| -> Result<()> {
            while !w.is_finished() {
                adm.focus(if to_b { vb } else { va })?;
                to_b = !to_b;
                switches.fetch_add(1, Ordering::Release);
                std::thread::yield_now();
            }
            Ok(())
        })();
        done.store(true, Ordering::Relaxed);
        let b = w.join().map_err(|_| anyhow!("writer panicked"))?;
        r?;
        b
    })?;
    let switches = switches.load(Ordering::Relaxed);
    println!(
        "{switches} focus switches while {frames_total} frames were written in {batches} writes \
         in {:.2} s (the writer waited {} ms for a queue over {QUEUE_HALF} events)",
        start.elapsed().as_secs_f64(),
        throttled.load(Ordering::Relaxed)
    );
    check!(
        switches >= batches,
        "at least one focus switch per write ({switches} switches, {batches} writes)"
    );
    // The end marker, to each guest in turn (a frame of its own, after every tagged frame).
    for vm in [va, vb] {
        adm.focus(vm)?;
        for down in [1, 0] {
            kb.emit(&[(EV_KEY, 88, down), (EV_SYN, SYN_REPORT, 0)])?;
        }
    }
    for (vm, s0) in [va, vb].into_iter().zip(s0) {
        let s = adm.stats(vm)?;
        println!(
            "VM {vm}: {} events at once, {} queued (vCPU not running), coalesced {}, dropped {}",
            s.delivered_immediately - s0.delivered_immediately,
            s.queued - s0.queued,
            s.coalesced - s0.coalesced,
            s.dropped - s0.dropped
        );
        check!(
            s.dropped == s0.dropped,
            "VM {vm}: nothing dropped by the module"
        );
    }
    let n = frames_total as u64;
    let (sum, sq) = (0..n).fold((0u64, 0u64), |(s, q), i| (s + i + 1, q + (i + 1) * (i + 1)));
    println!("FOCUS frames={n} tagsum={sum} tagsq={sq}");
    Ok(())
}
