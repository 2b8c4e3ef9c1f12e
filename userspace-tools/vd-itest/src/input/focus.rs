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
            loop {
                a.drain()?;
                b.drain()?;
                let n = (a.got.len() + b.got.len()) / 5;
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
        for f in &fr {
            let t = f
                .iter()
                .find(|e| e.ty == EV_REL && e.code == REL_X)
                .map(|e| e.value as usize);
            match t {
                Some(t) if t >= 1 && triples(f) == tagged_frame(t - 1) => tags.push(t - 1),
                _ => bail!("VM {name}: a split or foreign frame: {:?}", triples(f)),
            }
        }
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
        "both VMs got frames ({} / {})",
        a.got.len() / 5,
        b.got.len() / 5
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
    check!(keys == frames_total, "all {keys} key events delivered");
    Ok(())
}
