//! `bench`: round-trip latency and batching throughput of vd_evtchn from inside a real KVM guest,
//! against the two userspace paths it replaces, measured in one run.
//!
//! - `vd_evtchn`: guest doorbell -> ioeventfd -> in-kernel echo backend -> irqfd -> guest.
//! - `vmm-exit`: guest doorbell -> `KVM_EXIT_IO` -> this process serves it -> irqfd -> guest
//!   (the path of a device emulated in the VMM's userspace).
//! - `eventfd-threads`: two threads of this process ping-pong over two eventfds (the shape of a
//!   userspace backend woken by eventfds, as with vhost-user), no guest involved.
//!
//! Guest latencies are TSC deltas taken by the guest around each batch; they are converted with
//! the TSC rate measured here (the guest's TSC runs at the host's rate). Under software emulation
//! only the ratios mean anything.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde::Serialize;
use vmm_sys_util::eventfd::EventFd;

use crate::evtchn::{self, median, Opts, ServePath};

/// One latency row.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub path: &'static str,
    pub samples: usize,
    pub median_ns: f64,
}

/// One throughput row.
#[derive(Debug, Serialize)]
pub struct Throughput {
    pub entries: u32,
    pub requests: u32,
    pub requests_per_s: f64,
    pub notifications: u32,
    pub requests_per_notification: f64,
}

/// Everything `bench` prints.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub tsc_hz: f64,
    pub latency: Vec<Latency>,
    pub vmm_exit_over_evtchn: f64,
    pub eventfd_threads_over_evtchn: f64,
    pub throughput: Vec<Throughput>,
}

fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` has no memory effects; every x86_64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The TSC rate, from a 200 ms wall-clock window.
pub fn tsc_hz() -> f64 {
    let (c0, t0) = (rdtsc(), Instant::now());
    std::thread::sleep(Duration::from_millis(200));
    let (c1, t1) = (rdtsc(), Instant::now());
    (c1.wrapping_sub(c0)) as f64 / (t1 - t0).as_secs_f64()
}

/// Median round trip of two threads over two eventfds, in ns.
pub fn eventfd_pingpong(rounds: usize) -> Result<(usize, f64)> {
    let ping = EventFd::new(0).context("eventfd")?;
    let pong = EventFd::new(0).context("eventfd")?;
    let (ping2, pong2) = (ping.try_clone()?, pong.try_clone()?);
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        for _ in 0..rounds {
            ping2.read()?;
            pong2.write(1)?;
        }
        Ok(())
    });
    let mut ns = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        ping.write(1)?;
        pong.read()?;
        ns.push(t.elapsed().as_nanos() as u64);
    }
    echo.join().map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    Ok((ns.len(), median(&mut ns) as f64))
}

fn guest_latency(kvm: &str, path: ServePath, n: u32, hz: f64) -> Result<(usize, f64)> {
    let o = Opts { path, requests: n, batch: 1, samples: n, ..Default::default() };
    let r = evtchn::run(kvm, &o)?;
    ensure!(r.pass, "{path:?} latency run failed: {}", r.human_line());
    let mut c: Vec<u64> = r.samples.iter().map(|&s| u64::from(s)).collect();
    Ok((c.len(), median(&mut c) as f64 * 1e9 / hz))
}

/// Runs every measurement.
pub fn run(kvm: &str, rounds: u32) -> Result<BenchReport> {
    let hz = tsc_hz();
    let (n1, evt) = guest_latency(kvm, ServePath::Kernel, rounds, hz)?;
    let (n2, vmm) = guest_latency(kvm, ServePath::Vmm, rounds, hz)?;
    let (n3, efd) = eventfd_pingpong(rounds as usize)?;
    let mut throughput = Vec::new();
    for entries in [64u32, 128, 256, 512] {
        let requests = entries * 16;
        let o = Opts { path: ServePath::Kernel, requests, batch: entries, entries, entry_size: 32, samples: 16, ..Default::default() };
        let r = evtchn::run(kvm, &o)?;
        ensure!(r.pass, "throughput run at {entries} entries failed: {}", r.human_line());
        let cycles: u64 = r.samples.iter().map(|&s| u64::from(s)).sum();
        let notifications = r.guest_kicks + r.guest_irqs;
        throughput.push(Throughput {
            entries,
            requests,
            requests_per_s: f64::from(requests) / (cycles as f64 / hz),
            notifications,
            requests_per_notification: f64::from(requests) / f64::from(notifications.max(1)),
        });
    }
    Ok(BenchReport {
        tsc_hz: hz,
        latency: vec![
            Latency { path: "vd_evtchn (ioeventfd -> kernel echo -> irqfd)", samples: n1, median_ns: evt },
            Latency { path: "vmm-exit (KVM_EXIT_IO -> VMM echo -> irqfd)", samples: n2, median_ns: vmm },
            Latency { path: "eventfd-threads (userspace, no guest)", samples: n3, median_ns: efd },
        ],
        vmm_exit_over_evtchn: vmm / evt,
        eventfd_threads_over_evtchn: efd / evt,
        throughput,
    })
}

impl BenchReport {
    /// Aligned human-readable table.
    pub fn human(&self) -> String {
        let mut s = format!("round trip, median over one boot (TSC {:.0} MHz)\n", self.tsc_hz / 1e6);
        for l in &self.latency {
            s += &format!("  {:<48} {:>8} samples  {:>12.0} ns\n", l.path, l.samples, l.median_ns);
        }
        s += &format!("  ratio vmm-exit / vd_evtchn        {:>6.2}x\n", self.vmm_exit_over_evtchn);
        s += &format!("  ratio eventfd-threads / vd_evtchn {:>6.2}x\n", self.eventfd_threads_over_evtchn);
        s += "batching (guest fills the ring, one publish per batch)\n";
        s += &format!("  {:>8} {:>9} {:>14} {:>14} {:>18}\n", "entries", "requests", "requests/s", "notifications", "req/notification");
        for t in &self.throughput {
            s += &format!(
                "  {:>8} {:>9} {:>14.0} {:>14} {:>18.1}\n",
                t.entries, t.requests, t.requests_per_s, t.notifications, t.requests_per_notification
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_pingpong_measures_something() {
        let (n, ns) = eventfd_pingpong(50).expect("pingpong");
        assert_eq!(n, 50);
        assert!(ns > 0.0);
    }

    #[test]
    fn tsc_rate_is_plausible() {
        let hz = tsc_hz();
        assert!(hz > 1e7 && hz < 1e11, "{hz}");
    }
}
