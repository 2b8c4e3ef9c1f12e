//! `vd-itest input-switch-cost`: what following vCPU threads costs the host's context switches.
//!
//! vd_input_irq follows a thread with a preempt notifier (the hook KVM puts on its own vCPU
//! threads). Once any thread has one, every context switch on the host tests a static key and
//! walks the switching threads' (usually empty) notifier lists. Two threads ping-pong through
//! pipes on one CPU (each round trip is two context switches), in three configurations
//! alternated in one run: no hook anywhere (`off`), a hook on an unrelated sleeping thread
//! (`unrelated`: the cost every other thread of the host pays), and hooks on the two
//! ping-pong threads themselves (`followed`: what a followed vCPU thread pays per switch).

use super::fixtures::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;

/// Round trips per sample.
const TRIPS: usize = 5000;

/// One sample: ns per context switch of `TRIPS` round trips between this thread and a partner
/// on the same CPU. With `follow`, both threads register themselves as vCPUs of `dev`'s VM for
/// the sample.
fn sample(dev: &Input, follow: bool) -> Result<f64> {
    let (mut a, mut b) = UnixStream::pair()?;
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    std::thread::scope(|s| -> Result<f64> {
        let partner = s.spawn(move || -> Result<()> {
            pin(0);
            if follow {
                let r = dev
                    .vcpu_register()
                    .map_err(|e| format!("VCPU_REGISTER: {e}"));
                let bad = r.is_err();
                let _ = ready_tx.send(r);
                if bad {
                    return Ok(());
                }
            } else {
                let _ = ready_tx.send(Ok(()));
            }
            let mut buf = [0u8; 1];
            for _ in 0..TRIPS {
                b.read_exact(&mut buf)?;
                b.write_all(&buf)?;
            }
            if follow {
                dev.vcpu_unregister().context("VCPU_UNREGISTER")?;
            }
            Ok(())
        });
        pin(0);
        ready_rx
            .recv()
            .context("partner thread")?
            .map_err(|e| anyhow!(e))?;
        if follow {
            dev.vcpu_register().context("VCPU_REGISTER")?;
        }
        let mut buf = [0u8; 1];
        let t = Instant::now();
        for _ in 0..TRIPS {
            a.write_all(&buf)?;
            a.read_exact(&mut buf)?;
        }
        let ns = t.elapsed().as_nanos() as f64 / (2 * TRIPS) as f64;
        if follow {
            dev.vcpu_unregister().context("VCPU_UNREGISTER")?;
        }
        partner
            .join()
            .map_err(|_| anyhow!("partner thread panicked"))??;
        Ok(ns)
    })
}

/// `input-switch-cost`: medians of `samples` samples per configuration, alternated.
pub fn switch_cost(samples: usize, json: bool) -> Result<()> {
    let vm = 6000 + std::process::id() % 1000;
    let sink = Sink::new(vm, 64)?;
    let mut off = vec![];
    let mut unrelated = vec![];
    let mut followed = vec![];
    for _ in 0..samples.max(1) {
        off.push(sample(&sink.dev, false)?);
        // An unrelated thread with a hook: it registers itself and sleeps until told.
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (reg_tx, reg_rx) = mpsc::channel::<Result<(), String>>();
        let dev = &sink.dev;
        std::thread::scope(|s| -> Result<()> {
            let sleeper = s.spawn(move || {
                let r = dev
                    .vcpu_register()
                    .map_err(|e| format!("VCPU_REGISTER: {e}"));
                let ok = r.is_ok();
                let _ = reg_tx.send(r);
                if ok {
                    let _ = go_rx.recv();
                    let _ = dev.vcpu_unregister();
                }
            });
            reg_rx
                .recv()
                .context("sleeper thread")?
                .map_err(|e| anyhow!(e))?;
            let (st, ok) = sink.stats_until(T, |s| s.vcpus == 1)?;
            if !ok {
                bail!("the sleeping thread is not followed (vcpus {})", st.vcpus);
            }
            let r = sample(&sink.dev, false);
            let _ = go_tx.send(());
            sleeper.join().map_err(|_| anyhow!("sleeper panicked"))?;
            unrelated.push(r?);
            Ok(())
        })?;
        let (st, ok) = sink.stats_until(T, |s| s.vcpus == 0)?;
        if !ok {
            bail!("the sleeping thread is still followed (vcpus {})", st.vcpus);
        }
        followed.push(sample(&sink.dev, true)?);
    }
    let (m_off, m_unr, m_fol) = (
        median(&mut off),
        median(&mut unrelated),
        median(&mut followed),
    );
    if json {
        println!(
            "{}",
            serde_json::json!({
                "samples": samples, "trips": TRIPS,
                "ns_per_switch": {"off": m_off, "unrelated": m_unr, "followed": m_fol},
                "ratio_unrelated_off": m_unr / m_off, "ratio_followed_off": m_fol / m_off,
            })
        );
    } else {
        println!(
            "context switch (pipe ping-pong on one CPU, {samples} alternated samples of {TRIPS} round trips, medians):"
        );
        println!("  no hook anywhere:                {m_off:8.0} ns/switch");
        println!(
            "  hook on an unrelated thread:     {m_unr:8.0} ns/switch  ({:.3}x)",
            m_unr / m_off
        );
        println!(
            "  both threads followed (vCPUs):   {m_fol:8.0} ns/switch  ({:.3}x)",
            m_fol / m_off
        );
    }
    Ok(())
}
