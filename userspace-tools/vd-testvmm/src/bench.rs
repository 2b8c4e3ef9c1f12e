//! `bench`: round-trip latency and batching throughput of vd_evtchn from inside a real KVM guest,
//! against the two userspace paths it replaces, measured in one run.
//!
//! - `vd_evtchn`: guest doorbell -> ioeventfd -> in-kernel echo backend -> irqfd -> guest.
//! - `vmm-exit`: guest doorbell -> `KVM_EXIT_IO` -> this process serves it -> irqfd -> guest
//!   (the path of a device emulated in the VMM's userspace).
//! - `eventfd-threads`: two threads of this process ping-pong over two eventfds (the shape of a
//!   userspace backend woken by eventfds, as with vhost-user), no guest involved.
//!
//! One clock for every row: the guest's latencies are TSC deltas the guest takes around each
//! batch, and the eventfd ping-pong is timed with `rdtsc` on this host thread too (KVM gives the
//! guest the host's TSC plus an offset, at the same rate), so every ratio divides TSC cycles by
//! TSC cycles; the rows are shown in ns with the one TSC rate measured here. Under software
//! emulation only the ratios mean anything.

use anyhow::{ensure, Context, Result};
use serde::Serialize;
use vmm_sys_util::eventfd::EventFd;

use crate::evtchn::{self, Opts, ServePath};
use vd_testkit::stats::median;
use vd_testkit::tsc::{rdtsc, tsc_hz};

/// One latency row.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub path: &'static str,
    pub samples: usize,
    /// Median in TSC cycles: what the ratios divide.
    pub median_cycles: u64,
    /// The same at the one TSC rate of the run.
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

/// Median round trip of two threads over two eventfds, in TSC cycles (the clock of the guest rows).
pub fn eventfd_pingpong(rounds: usize) -> Result<(usize, u64)> {
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
    let mut cycles = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = rdtsc();
        ping.write(1)?;
        pong.read()?;
        cycles.push(rdtsc().wrapping_sub(t));
    }
    echo.join()
        .map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    Ok((cycles.len(), median(&mut cycles)))
}

/// Median guest round trip in TSC cycles (the guest's own `rdtsc` deltas).
fn guest_latency(kvm: &str, path: ServePath, n: u32) -> Result<(usize, u64)> {
    let o = Opts {
        path,
        requests: n,
        batch: 1,
        samples: n,
        ..Default::default()
    };
    let r = evtchn::run(kvm, &o)?;
    ensure!(r.pass, "{path:?} latency run failed: {}", r.human_line());
    let mut c: Vec<u64> = r.samples.iter().map(|&s| u64::from(s)).collect();
    Ok((c.len(), median(&mut c)))
}

/// TSC cycles to ns at `hz`.
fn ns(cycles: u64, hz: f64) -> f64 {
    cycles as f64 * 1e9 / hz
}

/// Runs every measurement.
pub fn run(kvm: &str, rounds: u32) -> Result<BenchReport> {
    let hz = tsc_hz();
    let (n1, evt) = guest_latency(kvm, ServePath::Kernel, rounds)?;
    let (n2, vmm) = guest_latency(kvm, ServePath::Vmm, rounds)?;
    let (n3, efd) = eventfd_pingpong(rounds as usize)?;
    ensure!(evt > 0, "vd_evtchn latency: a median of 0 TSC cycles");
    let mut throughput = Vec::new();
    for entries in [64u32, 128, 256, 512] {
        let requests = entries * 16;
        let o = Opts {
            path: ServePath::Kernel,
            requests,
            batch: entries,
            entries,
            entry_size: 32,
            samples: 16,
            ..Default::default()
        };
        let r = evtchn::run(kvm, &o)?;
        ensure!(
            r.pass,
            "throughput run at {entries} entries failed: {}",
            r.human_line()
        );
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
            Latency {
                path: "vd_evtchn (ioeventfd -> kernel echo -> irqfd)",
                samples: n1,
                median_cycles: evt,
                median_ns: ns(evt, hz),
            },
            Latency {
                path: "vmm-exit (KVM_EXIT_IO -> VMM echo -> irqfd)",
                samples: n2,
                median_cycles: vmm,
                median_ns: ns(vmm, hz),
            },
            Latency {
                path: "eventfd-threads (userspace, no guest)",
                samples: n3,
                median_cycles: efd,
                median_ns: ns(efd, hz),
            },
        ],
        // Cycles over cycles: one clock.
        vmm_exit_over_evtchn: vmm as f64 / evt as f64,
        eventfd_threads_over_evtchn: efd as f64 / evt as f64,
        throughput,
    })
}

impl BenchReport {
    /// Aligned human-readable table.
    pub fn human(&self) -> String {
        let mut s = format!(
            "round trip, median over one boot, every row timed by the TSC (TSC {:.0} MHz)\n",
            self.tsc_hz / 1e6
        );
        for l in &self.latency {
            s += &format!(
                "  {:<48} {:>8} samples  {:>12} cycles {:>12.0} ns\n",
                l.path, l.samples, l.median_cycles, l.median_ns
            );
        }
        s += &format!(
            "  ratio vmm-exit / vd_evtchn        {:>6.2}x\n",
            self.vmm_exit_over_evtchn
        );
        s += &format!(
            "  ratio eventfd-threads / vd_evtchn {:>6.2}x\n",
            self.eventfd_threads_over_evtchn
        );
        s += "batching (guest fills the ring, one publish per batch)\n";
        s += &format!(
            "  {:>8} {:>9} {:>14} {:>14} {:>18}\n",
            "entries", "requests", "requests/s", "notifications", "req/notification"
        );
        for t in &self.throughput {
            s += &format!(
                "  {:>8} {:>9} {:>14.0} {:>14} {:>18.1}\n",
                t.entries,
                t.requests,
                t.requests_per_s,
                t.notifications,
                t.requests_per_notification
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
        let (n, cycles) = eventfd_pingpong(50).expect("pingpong");
        assert_eq!(n, 50);
        assert!(cycles > 0);
    }

    #[test]
    fn tsc_rate_is_plausible() {
        let hz = tsc_hz();
        assert!(hz > 1e7 && hz < 1e11, "{hz}");
    }
}
