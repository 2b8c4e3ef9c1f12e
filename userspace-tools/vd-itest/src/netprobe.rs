//! A UDP echo stream for a guest's network path across a VF switch (issue 14, net_failover).
//!
//! `udp-echo` runs in the guest: it sends every datagram back to its sender and exits on a
//! datagram `STOP`. `udp-probe` runs in the test VM: it sends a numbered datagram every
//! `interval`, counts the echoes, and measures the longest silence (the longest time between two
//! echoes arriving, and from the last one to the end) and the longest run of lost datagrams. Its
//! status file (rewritten every 50 ms, then a final one) lets a test wait for "echoes are coming
//! back" without timing anything itself; the final report is one JSON object on stdout.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};
use serde::Serialize;

/// Guest side: echoes datagrams until one says `STOP`; prints how many it echoed.
pub fn echo(port: u16) -> Result<()> {
    let s = UdpSocket::bind(("0.0.0.0", port)).with_context(|| format!("bind UDP port {port}"))?;
    println!("ECHO listening on UDP port {port}");
    let mut buf = [0u8; 2048];
    let mut n: u64 = 0;
    loop {
        let (len, from) = s.recv_from(&mut buf).context("recv_from")?;
        if &buf[..len] == b"STOP" {
            // Acknowledge, so the stopper knows this side is done.
            let _ = s.send_to(b"STOPPED", from);
            println!("ECHO stopped: {n} datagrams echoed");
            return Ok(());
        }
        // A full socket buffer on a path that is switching must not end the echo.
        if s.send_to(&buf[..len], from).is_ok() {
            n += 1;
        }
    }
}

/// Host side: tells the echo at `to` to stop (and waits up to `secs` for its acknowledgement).
pub fn stop(to: SocketAddr, secs: f64) -> Result<()> {
    let s = UdpSocket::bind(("0.0.0.0", 0)).context("bind")?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let t0 = Instant::now();
    let mut buf = [0u8; 16];
    while t0.elapsed().as_secs_f64() < secs {
        s.send_to(b"STOP", to).context("send STOP")?;
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            if &buf[..n] == b"STOPPED" {
                println!("ok: the echo at {to} stopped");
                return Ok(());
            }
        }
    }
    bail!("the echo at {to} did not acknowledge STOP within {secs} s")
}

/// What the probe saw.
#[derive(Debug, Default, Clone, Serialize)]
struct Report {
    to: String,
    interval_us: u64,
    sent: u64,
    received: u64,
    lost: u64,
    /// Echoes of a sequence number seen before (must stay 0).
    duplicates: u64,
    /// Longest time without an echo, from the first echo on (ms).
    max_silence_ms: f64,
    /// When the longest silence began, in seconds since the probe started.
    max_silence_at_s: f64,
    /// Longest run of consecutive sequence numbers never echoed.
    max_lost_run: u64,
    rtt_p50_us: u64,
    rtt_p99_us: u64,
    secs: f64,
}

struct State {
    t0: Instant,
    sent: u64,
    /// Echo seen, per sequence number.
    seen: Vec<bool>,
    duplicates: u64,
    rtts: Vec<u64>,
    last: Option<Instant>,
    max_silence: Duration,
    max_silence_at: Duration,
}

impl State {
    fn report(&self, to: SocketAddr, interval: Duration, end: Instant) -> Report {
        let received = self.seen.iter().filter(|s| **s).count() as u64;
        // A silence still going on at the end counts too.
        let (mut ms, mut at) = (self.max_silence, self.max_silence_at);
        if let Some(l) = self.last {
            let tail = end.saturating_duration_since(l);
            if tail > ms {
                (ms, at) = (tail, l - self.t0);
            }
        }
        let (mut run, mut max_run) = (0u64, 0u64);
        // Datagrams sent in the last 100 ms may still be on their way: not counted as lost.
        let settled = self.seen.len().saturating_sub(
            (Duration::from_millis(100).as_micros() / interval.as_micros().max(1)) as usize,
        );
        for s in &self.seen[..settled] {
            run = if *s { 0 } else { run + 1 };
            max_run = max_run.max(run);
        }
        let lost = self.seen[..settled].iter().filter(|s| !**s).count() as u64;
        let mut r = self.rtts.clone();
        r.sort_unstable();
        let pct = |p: usize| {
            r.get(r.len().saturating_sub(1) * p / 100)
                .copied()
                .unwrap_or(0)
        };
        Report {
            to: to.to_string(),
            interval_us: interval.as_micros() as u64,
            sent: self.sent,
            received,
            lost,
            duplicates: self.duplicates,
            max_silence_ms: ms.as_secs_f64() * 1e3,
            max_silence_at_s: at.as_secs_f64(),
            max_lost_run: max_run,
            rtt_p50_us: pct(50),
            rtt_p99_us: pct(99),
            secs: end.duration_since(self.t0).as_secs_f64(),
        }
    }
}

fn write_status(path: &Path, r: &Report, done: bool) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let line = format!(
        "sent {} received {} lost {} max_silence_ms {:.1} done {}\n",
        r.sent, r.received, r.lost, r.max_silence_ms, done as u8
    );
    fs::write(&tmp, line)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// Sends to `to` every `interval` until SIGTERM/SIGINT or `secs` (0: no limit); prints the
/// report as JSON. Exit status 0 unless a socket call failed.
pub fn probe(to: SocketAddr, interval: Duration, secs: f64, status: &Path) -> Result<()> {
    let s = UdpSocket::bind(("0.0.0.0", 0)).context("bind")?;
    s.set_read_timeout(Some(Duration::from_millis(20)))?;
    let stop = Arc::new(AtomicBool::new(false));
    // SIGTERM/SIGINT are taken by a thread of their own (blocked here first, so every thread
    // spawned below inherits the mask and none is interrupted by them).
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block().context("block SIGTERM/SIGINT")?;
    let stop3 = stop.clone();
    std::thread::spawn(move || {
        if mask.wait().is_ok() {
            stop3.store(true, Ordering::Relaxed);
        }
    });
    let st = Arc::new(Mutex::new(State {
        t0: Instant::now(),
        sent: 0,
        seen: Vec::new(),
        duplicates: 0,
        rtts: Vec::new(),
        last: None,
        max_silence: Duration::ZERO,
        max_silence_at: Duration::ZERO,
    }));
    let rx = s.try_clone()?;
    let (st2, stop2) = (st.clone(), stop.clone());
    let receiver = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while !stop2.load(Ordering::Relaxed) {
            let Ok(n) = rx.recv(&mut buf) else { continue };
            let now = Instant::now();
            if n < 16 {
                continue;
            }
            let seq = u64::from_le_bytes(buf[..8].try_into().unwrap_or_default());
            let sent_us = u64::from_le_bytes(buf[8..16].try_into().unwrap_or_default());
            let Ok(mut g) = st2.lock() else { return };
            let Some(slot) = g.seen.get_mut(seq as usize) else {
                continue;
            };
            if *slot {
                g.duplicates += 1;
                continue;
            }
            *slot = true;
            let at_us = now.duration_since(g.t0).as_micros() as u64;
            g.rtts.push(at_us.saturating_sub(sent_us));
            if let Some(l) = g.last {
                let gap = now.duration_since(l);
                if gap > g.max_silence {
                    g.max_silence = gap;
                    g.max_silence_at = l - g.t0;
                }
            }
            g.last = Some(now);
        }
    });
    let t0 = st.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.t0;
    let mut next = t0;
    let mut last_status = t0;
    while !stop.load(Ordering::Relaxed) && (secs <= 0.0 || t0.elapsed().as_secs_f64() < secs) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        next += interval;
        let seq = {
            let mut g = st.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            g.seen.push(false);
            g.sent += 1;
            g.sent - 1
        };
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&seq.to_le_bytes());
        d[8..].copy_from_slice(&(t0.elapsed().as_micros() as u64).to_le_bytes());
        // No route or neighbour yet (ARP), or a full queue while the path switches: counted as
        // lost by the receiver side, not an error.
        let _ = s.send_to(&d, to);
        if last_status.elapsed() >= Duration::from_millis(50) {
            last_status = Instant::now();
            let r = st.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.report(
                to,
                interval,
                last_status,
            );
            write_status(status, &r, false)?;
        }
    }
    // The silence at the end is measured to the last send; echoes still in flight get 200 ms.
    let end = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let _ = receiver.join();
    let r = st
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .report(to, interval, end);
    write_status(status, &r, true)?;
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn read_counter(path: &Path) -> Result<u64> {
    let t = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    t.trim()
        .parse()
        .with_context(|| format!("{}: not a counter: {t:?}", path.display()))
}

/// Benchmarks: the wall-clock time at which the counter in `path` first reaches its starting
/// value + `delta` (e.g. a VF's first frames through the PF after a move).
pub fn counter_rise(path: &Path, delta: u64, secs: f64) -> Result<()> {
    let from = read_counter(path)?;
    let start = unix_us();
    println!("START {start}");
    use std::io::Write;
    std::io::stdout().flush()?;
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs {
        let v = read_counter(path)?;
        if v >= from.saturating_add(delta) {
            let rise = unix_us();
            println!(
                "{}",
                serde_json::json!({"start_unix_us": start, "rise_unix_us": rise, "from": from, "to": v})
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    bail!(
        "{} stayed under {} + {delta} for {secs} s",
        path.display(),
        from
    )
}
