//! `vd-itest input-bench`: the interrupt path against a userspace forwarder and a polling consumer.

use super::fixtures::*;

/// The writer side of a latency run: `rounds` times, wait `gap` (the consumer goes back to
/// sleep), stamp, write frame `REL_X = i`, and block until the consumer reports round `i`
/// through `done` (blocking, so the writer does not compete for a CPU). Returns the stamps.
#[allow(
    clippy::needless_range_loop,
    reason = "rounds are numbered from 1; index = round"
)]
fn drive(
    kb: &Uinput,
    rounds: usize,
    gap: Duration,
    done: &EventFd,
    seen: &AtomicU64,
) -> Result<Vec<u64>> {
    let mut at = vec![0u64; rounds + 1];
    for i in 1..=rounds {
        std::thread::sleep(gap);
        at[i] = now_ns();
        kb.emit(&[(EV_REL, REL_X, i as i32), (EV_SYN, SYN_REPORT, 0)])?;
        while seen.load(Ordering::Acquire) < i as u64 {
            if !poll_in(done.as_raw_fd(), 5000)? {
                bail!("round {i} never arrived");
            }
            let _ = done.read();
        }
    }
    Ok(at)
}

/// `input-bench`: delivery latency through the module (VM running) vs. a userspace forwarder
/// (evdev read + eventfd write), and queue flush times; one boot, one process.
#[allow(
    clippy::needless_range_loop,
    reason = "rounds are numbered from 1; index = round"
)]
pub fn bench(rounds: usize, json: bool) -> Result<()> {
    let adm = Input::open()?;
    let kb = kbd("bench")?;
    let node = kb.event_node()?;
    let vm = 5000 + std::process::id() % 1000;
    let mut a = Sink::new(vm, 1024)?;
    adm.focus(vm)?;
    let gap = Duration::from_millis(2);

    // A: uinput write -> module -> ring + call eventfd -> the consumer thread wakes (what an
    // irqfd does to a running guest). A2: the same with a consumer that polls the ring (a guest
    // that polls: the module's delivery alone).
    let route = Route::add(&adm, vdi_match::NAME, false, &kb.name)?;
    let mut vd_lat = vec![];
    let mut vd_poll_lat = vec![];
    let mut vd_stamp = vec![];
    // The hops of the interrupt path, per round (ns): write -> the module's stamp of REL_X;
    // that stamp -> its stamp of the frame's SYN_REPORT (where it publishes and signals the
    // call eventfd, in the writer's own context); the signal -> the consumer back from `poll`;
    // `poll` -> the event read from the ring.
    let mut hops: [Vec<f64>; 4] = Default::default();
    for polling in [false, true] {
        let seen = AtomicU64::new(0);
        let done = EventFd::new(EFD_NONBLOCK)?;
        let seen_at = (0..=rounds).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        let stamp = (0..=rounds).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        let syn_stamp = (0..=rounds).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        let woke_at = (0..=rounds).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        let write_at = std::thread::scope(|s| -> Result<Vec<u64>> {
            let sink = &mut a;
            let (seen, done, seen_at, stamp) = (&seen, &done, &seen_at, &stamp);
            let (syn_stamp, woke_at) = (&syn_stamp, &woke_at);
            let c = s.spawn(move || -> Result<()> {
                let mut out = vec![];
                let mut woke = 0u64;
                let m = sink.map.mem();
                if polling {
                    sink.rd.disable_irq(&m);
                }
                loop {
                    out.clear();
                    sink.rd.drain(&m, &mut out).map_err(|e| anyhow!("{e:?}"))?;
                    let t = now_ns();
                    for (k, e) in out.iter().enumerate() {
                        if e.ev.ty == EV_REL && e.ev.code == REL_X && e.ev.value > 0 {
                            let i = (e.ev.value as usize).min(rounds);
                            seen_at[i].store(t, Ordering::Relaxed);
                            stamp[i].store(e.ev.time_ns, Ordering::Relaxed);
                            woke_at[i].store(if woke == 0 { t } else { woke }, Ordering::Relaxed);
                            if let Some(syn) = out.get(k + 1).filter(|x| x.ev.ty == EV_SYN) {
                                syn_stamp[i].store(syn.ev.time_ns, Ordering::Relaxed);
                            }
                            seen.store(i as u64, Ordering::Release);
                            done.write(1)?;
                            if i >= rounds {
                                return Ok(());
                            }
                        }
                    }
                    woke = 0;
                    if polling {
                        std::hint::spin_loop();
                    } else if !sink.rd.enable_irq(&m) && poll_in(sink.call.as_raw_fd(), 1000)? {
                        woke = now_ns();
                        let _ = sink.call.read();
                    }
                }
            });
            let r = drive(&kb, rounds, gap, done, seen);
            c.join().map_err(|_| anyhow!("consumer panicked"))??;
            r
        })?;
        for i in 1..=rounds {
            let lat = seen_at[i]
                .load(Ordering::Relaxed)
                .saturating_sub(write_at[i]) as f64
                / 1e3;
            if polling {
                vd_poll_lat.push(lat);
            } else {
                vd_lat.push(lat);
                vd_stamp.push(
                    seen_at[i]
                        .load(Ordering::Relaxed)
                        .saturating_sub(stamp[i].load(Ordering::Relaxed))
                        as f64
                        / 1e3,
                );
                let at = |v: &[AtomicU64]| v[i].load(Ordering::Relaxed);
                let marks = [
                    write_at[i],
                    at(&stamp),
                    at(&syn_stamp),
                    at(&woke_at),
                    at(&seen_at),
                ];
                if marks.windows(2).all(|w| w[0] <= w[1]) {
                    for (h, w) in hops.iter_mut().zip(marks.windows(2)) {
                        h.push((w[1] - w[0]) as f64 / 1e3);
                    }
                }
            }
        }
    }
    route.remove()?;
    a.drain()?;
    a.take();

    // B: uinput write -> evdev -> forwarder thread read() -> eventfd write -> consumer wakes.
    let efd = EventFd::new(0)?;
    let fwd_val = AtomicU64::new(0);
    let seen = AtomicU64::new(0);
    let done = EventFd::new(EFD_NONBLOCK)?;
    let seen_at = (0..=rounds).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
    let mut ev = Evdev::open(&node, false)?;
    let write_at = std::thread::scope(|s| -> Result<Vec<u64>> {
        let f = s.spawn(|| -> Result<()> {
            let mut cur = 0u64;
            loop {
                for (t, c, v) in ev.read()? {
                    if t == EV_REL && c == REL_X {
                        cur = v as u64;
                    } else if t == EV_SYN && c == SYN_REPORT && cur != 0 {
                        fwd_val.store(cur, Ordering::Release);
                        efd.write(1)?;
                        if cur >= rounds as u64 {
                            return Ok(());
                        }
                    }
                }
            }
        });
        let c = s.spawn(|| -> Result<()> {
            loop {
                efd.read()?;
                let t = now_ns();
                let i = (fwd_val.load(Ordering::Acquire) as usize).min(rounds);
                seen_at[i].store(t, Ordering::Relaxed);
                seen.store(i as u64, Ordering::Release);
                done.write(1)?;
                if i >= rounds {
                    return Ok(());
                }
            }
        });
        let r = drive(&kb, rounds, gap, &done, &seen);
        f.join().map_err(|_| anyhow!("forwarder panicked"))??;
        c.join().map_err(|_| anyhow!("consumer panicked"))??;
        r
    })?;
    let mut fw_lat: Vec<f64> = (1..=rounds)
        .map(|i| {
            seen_at[i]
                .load(Ordering::Relaxed)
                .saturating_sub(write_at[i]) as f64
                / 1e3
        })
        .collect();

    // C: flush of the 10,000-event burst queued while paused (SET_RUNNING 0 -> 1).
    let _route = Route::add(&adm, vdi_match::NAME, true, &kb.name)?;
    let b = sched_burst()?;
    let keys = b.iter().filter(|e| e.0 == EV_KEY).count();
    let all_keys = |g: &[RingEvent]| {
        g.iter().filter(|e| e.ev.ty == EV_KEY).count() >= keys
            && g.last().is_some_and(|e| e.ev.ty == EV_SYN)
    };
    a.dev.set_running(false)?;
    emit_chunks(&kb, &b, 600)?;
    let s0 = a.stats()?;
    let t0 = Instant::now();
    a.dev.set_running(true)?;
    let ioctl_us = t0.elapsed().as_secs_f64() * 1e6;
    let ok = a.wait(T, all_keys)?;
    let pause_flush_us = t0.elapsed().as_secs_f64() * 1e6;
    let s1 = a.stats()?;
    let pause_events = a.got.len();
    verify_coalesced(&b, &evs_of(&a.got)).map_err(|e| anyhow!("pause flush: {e}"))?;
    if !ok {
        bail!("pause flush never completed");
    }
    a.take();

    // D: the same queued behind a SIGSTOPped vCPU, flushed at schedule-in after SIGCONT.
    let sched = if ncpus() > 1 {
        pin(0);
        let child = VcpuChild::spawn(&a.dev, Some(1))?;
        a.stats_until(Duration::from_secs(5), |s| s.vcpus == 1)?;
        child.stop()?;
        a.stats_until(Duration::from_secs(5), |s| s.running == 0)?;
        emit_chunks(&kb, &b, 600)?;
        let depth = a.stats()?.queue_depth;
        let t0 = Instant::now();
        child.cont()?;
        let ok = a.wait(T, all_keys)?;
        let us = t0.elapsed().as_secs_f64() * 1e6;
        verify_coalesced(&b, &evs_of(&a.got)).map_err(|e| anyhow!("schedule-in flush: {e}"))?;
        if !ok {
            bail!("schedule-in flush never completed");
        }
        Some((depth, a.take().len(), us))
    } else {
        None
    };

    let (vd_med, fw_med) = (median(&mut vd_lat), median(&mut fw_lat));
    let r = serde_json::json!({
        "rounds": rounds,
        "latency_us": {
            "vd_input_irq": { "median": vd_med, "p90": pct(&mut vd_lat, 0.9), "min": pct(&mut vd_lat, 0.0) },
            "vd_input_irq_from_kernel_stamp": { "median": median(&mut vd_stamp) },
            "vd_input_irq_hops_median": {
                "rounds": hops[0].len(),
                "write_to_module_stamp": median(&mut hops[0]),
                "stamp_to_frame_end_signal": median(&mut hops[1]),
                "signal_to_consumer_awake": median(&mut hops[2]),
                "awake_to_event_read": median(&mut hops[3]),
            },
            "vd_input_irq_polling_consumer": { "median": median(&mut vd_poll_lat), "p90": pct(&mut vd_poll_lat, 0.9), "min": pct(&mut vd_poll_lat, 0.0) },
            "userspace_forwarder": { "median": fw_med, "p90": pct(&mut fw_lat, 0.9), "min": pct(&mut fw_lat, 0.0) },
            "forwarder_over_vd_ratio": if vd_med > 0.0 { fw_med / vd_med } else { 0.0 },
        },
        "flush": {
            "burst_events": b.len(),
            "paused": { "queue_depth": s0.queue_depth, "events_delivered": pause_events, "flushed_counter": s1.flushed - s0.flushed,
                        "set_running_ioctl_us": ioctl_us, "until_all_visible_us": pause_flush_us },
            "sched_in": sched.map(|(d, n, us)| serde_json::json!({ "queue_depth": d, "events_delivered": n, "sigcont_until_all_visible_us": us })),
        },
    });
    if json {
        println!("{r}");
    } else {
        println!("input delivery latency, uinput write -> consumer sees the event ({rounds} rounds, VM running)");
        println!(
            "  {:<36} {:>10} {:>10} {:>10}",
            "path", "median us", "p90 us", "min us"
        );
        println!(
            "  {:<36} {:>10.1} {:>10.1} {:>10.1}",
            "vd_input_irq (ring + call eventfd)",
            vd_med,
            pct(&mut vd_lat, 0.9),
            pct(&mut vd_lat, 0.0)
        );
        println!(
            "  {:<36} {:>10.1} {:>10.1} {:>10.1}",
            "forwarder (evdev read + eventfd)",
            fw_med,
            pct(&mut fw_lat, 0.9),
            pct(&mut fw_lat, 0.0)
        );
        println!(
            "  {:<36} {:>10.1} {:>10.1} {:>10.1}",
            "vd_input_irq, consumer polls the ring",
            median(&mut vd_poll_lat),
            pct(&mut vd_poll_lat, 0.9),
            pct(&mut vd_poll_lat, 0.0)
        );
        println!(
            "  forwarder / vd_input_irq median ratio: {:.2}",
            if vd_med > 0.0 { fw_med / vd_med } else { 0.0 }
        );
        println!(
            "  (module timestamp -> consumer, median: {:.1} us)",
            median(&mut vd_stamp)
        );
        println!(
            "  vd_input_irq hop by hop (medians over {} rounds, us): write -> module stamp {:.1}; \
             -> frame end (publish + eventfd signal, same context) {:.1}; -> consumer back from \
             poll {:.1}; -> event read from the ring {:.1}",
            hops[0].len(),
            median(&mut hops[0]),
            median(&mut hops[1]),
            median(&mut hops[2]),
            median(&mut hops[3])
        );
        println!(
            "queue flush of a {}-event burst (coalesced to {} queued events)",
            b.len(),
            s0.queue_depth
        );
        println!("  SET_RUNNING 1: ioctl {ioctl_us:.1} us, all {pause_events} events visible after {pause_flush_us:.1} us");
        if let Some((d, n, us)) = sched {
            println!("  SIGCONT of the vCPU: {d} queued, all {n} events visible after {us:.1} us");
        }
    }
    Ok(())
}
