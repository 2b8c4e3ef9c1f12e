//! `evtchn`: a real KVM guest drives a vd_evtchn channel end to end.
//!
//! The VMM creates a channel on `/dev/vd_evtchn`, maps its ring and hands the mapping to the guest
//! as a second memory slot, registers the kick eventfd with `KVM_IOEVENTFD` and the call eventfd
//! with `KVM_IRQFD` (GSI [`IRQ_LINE`] on the in-kernel 8259), binds both to the channel and
//! attaches the in-kernel echo backend. The guest ([`crate::ringguest`]) then sends its requests,
//! takes its interrupts and checks every response without one exit to this process until it is
//! done.
//!
//! [`ServePath::Vmm`] is the comparison: the same guest, the same ring, but the doorbell is a
//! plain port whose `out` exits to this process (`KVM_EXIT_IO`), which serves the requests with
//! the same `vd-ring` backend code and raises the interrupt through the same irqfd: the path of a
//! device emulated in the VMM's userspace.
//!
//! With [`Opts::samples`] the guest records a TSC delta per batch (the first `samples` batches) and
//! the report gives their median in ns. With [`Opts::probe`] the run is a long-running latency
//! probe: the guest keeps sampling into a ring (`param::SAMPLE_WRAP`) and a thread of this process
//! prints, every period, the median round trip of the batches done since its previous line,
//! while the vCPU thread runs undisturbed (its thread, affinity and slice stay those of a VM's
//! vCPU, for `vdd` to place); after `duration` it tells the guest to finish (`param::N = 0`).

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use kvm_ioctls::{IoEventAddress, NoDatamatch, VcpuExit};
use serde::Serialize;
use vd_ring::{mem::RawMem, op, Geometry, HostRing, HostRingState, RingMem};
use vd_sys::evtchn::Domain;
use vd_testkit::stats::median;
use vd_uapi::{vde_backend, vde_state};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::guest::Guest;
use crate::ringguest::{self as rg, param, result, IRQ_LINE, MAX_SAMPLES, RING_GPA, SAMPLES_GPA};

/// Doorbell port.
pub const KICK_PORT: u16 = 0x600;
/// "Done" port: always an exit to the VMM.
pub const DONE_PORT: u16 = 0x604;

/// Who serves the guest's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ServePath {
    /// vd_evtchn: ioeventfd -> in-kernel echo backend -> irqfd.
    Kernel,
    /// KVM_EXIT_IO to this process, served here, interrupt through irqfd.
    Vmm,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Opts {
    pub path: ServePath,
    pub requests: u32,
    pub batch: u32,
    pub entries: u32,
    pub entry_size: u32,
    /// Publish this bogus `req_prod` instead of requests.
    pub hostile: Option<u32>,
    /// Keep per-batch latency samples.
    pub samples: u32,
    /// Give up (exit 2) after this long.
    pub timeout: Duration,
    /// Run as a long-running latency probe (one line per period on stdout).
    pub probe: Option<Probe>,
}

/// The long-running latency probe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probe {
    /// One line per period.
    pub period: Duration,
    /// Tell the guest to finish after this long (None: at `requests`, or when killed).
    pub duration: Option<Duration>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            path: ServePath::Kernel,
            requests: 1000,
            batch: 16,
            entries: 64,
            entry_size: 64,
            hostile: None,
            samples: 0,
            timeout: Duration::from_secs(120),
            probe: None,
        }
    }
}

/// The channel's counters as the module reports them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChanCounters {
    pub state: &'static str,
    pub requests: u64,
    pub responses: u64,
    pub kicks: u64,
    pub wakeups: u64,
    pub irqs: u64,
    pub irqs_suppressed: u64,
    pub errors: u64,
}

/// Outcome of one guest run; serialises to the `--json` line.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub test: &'static str,
    pub path: Option<ServePath>,
    pub requests: u32,
    pub batch: u32,
    pub entries: u32,
    pub hostile: bool,
    /// Responses the guest checked and found right.
    pub ok: u32,
    /// Responses the guest found wrong.
    pub bad: u32,
    /// Interrupts the guest took.
    pub guest_irqs: u32,
    /// Doorbells the guest rang.
    pub guest_kicks: u32,
    /// Doorbells EVENT_IDX let it skip.
    pub guest_kicks_suppressed: u32,
    /// The guest saw STATUS_FAILED in the ring.
    pub guest_saw_failed: bool,
    /// Exits to this process (VMM path: one per doorbell; kernel path: only the final one).
    pub exits_to_vmm: u64,
    pub channel: ChanCounters,
    pub wall_ms: f64,
    #[serde(skip)]
    pub samples: Vec<u32>,
    /// Median of `samples` in ns (with `samples` or `probe`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_ns: Option<f64>,
    /// TSC rate used to convert the samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsc_hz: Option<f64>,
    pub pass: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    /// Report for a run that could not complete at all.
    pub fn failed(err: &anyhow::Error) -> Self {
        Self {
            test: "kvm_evtchn",
            error: Some(format!("{err:#}")),
            ..Default::default()
        }
    }

    fn judge(&mut self, o: &Opts) {
        self.pass = if o.hostile.is_some() {
            // The guest must have been told, and the module must say so too.
            self.guest_saw_failed && self.channel.state == "failed" && self.channel.errors >= 1
        } else {
            let n = o.requests;
            let batches = n.div_ceil(o.batch.max(1)) as u64;
            let counted = match o.path {
                ServePath::Kernel => {
                    self.channel.requests == n as u64
                        && self.channel.responses == n as u64
                        && self.exits_to_vmm == 1
                        // Each batch's responses are published once, and that publish either
                        // interrupts the guest or is suppressed (EVENT_IDX). A publish may be
                        // suppressed rightly: the guest also polls `rsp_prod` before it halts,
                        // so between the module's store of `rsp_prod` and its load of
                        // `rsp_event` the guest can see the answer, fill the next batch and move
                        // `rsp_event` past this publish (one soak run in six counted 299
                        // interrupts + 1 suppressed for 300 ping-pongs); it asks for the next
                        // batch's interrupt, and no answer waits. Asserted: no publish lost or
                        // doubled; the guest finishing is the liveness check.
                        && self.channel.irqs >= 1
                        && self.channel.irqs.saturating_add(self.channel.irqs_suppressed)
                            == batches
                }
                ServePath::Vmm => self.exits_to_vmm == u64::from(self.guest_kicks) + 1,
            };
            // Every response exactly once and right. One interrupt is asked for per batch (the
            // module's count is exact); the guest takes at least one and at most that many: an
            // edge-triggered line merges an interrupt still pending with the next batch's, and
            // the last may be in flight when the guest reports done.
            let irqs = u64::from(self.guest_irqs);
            self.ok == n
                && self.bad == 0
                && !self.guest_saw_failed
                && irqs >= 1
                && irqs <= batches
                && counted
        };
    }

    pub fn human_line(&self) -> String {
        if let Some(e) = &self.error {
            return format!("evtchn: result=FAIL: {e}");
        }
        let median = match self.median_ns {
            Some(m) => format!(
                " median round trip {m:.0} ns over {} batches",
                self.samples.len()
            ),
            None => String::new(),
        };
        format!(
            "evtchn[{:?}{}]: {} requests in batches of {} on {} entries: ok={} bad={} guest irqs={} kicks={} (suppressed {}) exits_to_vmm={} channel: {} ({} requests, {} kicks, {} irqs, {} errors) {:.1} ms{median} result={}",
            self.path.unwrap_or(ServePath::Kernel),
            if self.hostile { ", hostile" } else { "" },
            self.requests,
            self.batch,
            self.entries,
            self.ok,
            self.bad,
            self.guest_irqs,
            self.guest_kicks,
            self.guest_kicks_suppressed,
            self.exits_to_vmm,
            self.channel.state,
            self.channel.requests,
            self.channel.kicks,
            self.channel.irqs,
            self.channel.errors,
            self.wall_ms,
            if self.pass { "PASS" } else { "FAIL" }
        )
    }
}

/// Ends the process if the guest has not finished by `timeout` (a guest stuck in `hlt` waiting
/// for an interrupt that never comes would otherwise block `KVM_RUN` forever). Dropping the
/// returned guard disarms it.
pub(crate) fn watchdog(timeout: Duration) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
            eprintln!("vd-testvmm: the guest did not finish within {timeout:?}: its interrupt never came or the host stopped serving");
            std::process::exit(2);
        }
    });
    tx
}

/// Runs one guest against one channel.
pub fn run(kvm_path: &str, o: &Opts) -> Result<Report> {
    let geo = Geometry::new(o.entries, o.entry_size)
        .map_err(|e| anyhow::anyhow!("ring geometry {}x{}: {e:?}", o.entries, o.entry_size))?;
    ensure!(geo.total_bytes() <= rg::RING_MAX, "a {}x{} ring is {} bytes; the real-mode test guest addresses at most {} (use fewer or smaller entries)", o.entries, o.entry_size, geo.total_bytes(), rg::RING_MAX);
    ensure!(
        o.batch >= 1 && o.batch <= o.entries,
        "batch {} must be in 1..={} (the ring's entries)",
        o.batch,
        o.entries
    );
    ensure!(
        o.samples <= rg::MAX_SAMPLES,
        "at most {} samples",
        rg::MAX_SAMPLES
    );
    if let Some(p) = o.probe {
        ensure!(
            o.hostile.is_none(),
            "a hostile guest cannot be a latency probe"
        );
        ensure!(
            p.period >= Duration::from_millis(10),
            "probe period {:?}: at least 10 ms",
            p.period
        );
    }
    // Measured before the guest exists, so the 200 ms it takes is not spent beside it.
    let hz = (o.samples > 0 || o.probe.is_some()).then(vd_testkit::tsc::tsc_hz);
    let _watchdog = watchdog(o.timeout);

    // Declaration order is drop order reversed: the vCPU and VM go before the ring mapping they
    // use, and the mapping before the domain that owns the channel.
    let dom = Domain::open().context("open /dev/vd_evtchn: is vd_evtchn loaded?")?;
    let c = dom
        .create(o.entries, o.entry_size)
        .context("VDE_IOC_CREATE")?;
    let map = dom.map_ring(&c).context("mmap the channel's ring")?;
    let kick = EventFd::new(EFD_NONBLOCK).context("eventfd")?;
    let call = EventFd::new(EFD_NONBLOCK).context("eventfd")?;

    let guest = Guest::with_kvm_path(kvm_path, rg::MEM_SIZE)?;
    let vm = guest.vm();
    vm.create_irq_chip().context("KVM_CREATE_IRQCHIP")?;
    // SAFETY: `map` is the live ring mapping, declared before `guest`, so it outlives the VM.
    unsafe { guest.add_slot(1, RING_GPA, map.as_ptr(), map.len()) }?;
    vm.register_irqfd(&call, u32::from(IRQ_LINE))
        .context("KVM_IRQFD")?;
    if o.path == ServePath::Kernel {
        vm.register_ioevent(
            &kick,
            &IoEventAddress::Pio(u64::from(KICK_PORT)),
            NoDatamatch,
        )
        .context("KVM_IOEVENTFD")?;
        dom.bind(c.id, Some(kick.as_raw_fd()), Some(call.as_raw_fd()))
            .context("VDE_IOC_BIND")?;
        dom.attach(c.id, vde_backend::ECHO, None)
            .context("VDE_IOC_ATTACH echo")?;
    }

    let program = rg::program();
    let params = [
        (param::N, o.requests),
        (param::BATCH, o.batch),
        (param::KICK_PORT, u32::from(KICK_PORT)),
        (param::DONE_PORT, u32::from(DONE_PORT)),
        (param::MASK, o.entries - 1),
        (param::ENTRY_SIZE, o.entry_size),
        (param::REQ_ARRAY, geo.req_array() as u32),
        (param::RSP_ARRAY, geo.rsp_array() as u32),
        (param::PIC_MASK, u32::from(!(1u8 << IRQ_LINE))),
        (param::HOSTILE, o.hostile.unwrap_or(0)),
        (
            param::SAMPLES,
            if o.probe.is_some() {
                MAX_SAMPLES
            } else {
                o.samples
            },
        ),
        (param::SAMPLE_WRAP, u32::from(o.probe.is_some())),
    ];
    rg::load(&guest, program, &params)?;
    guest.write(result::OK, &[0; (result::END - result::OK) as usize])?;

    let mut vcpu = guest.create_real_mode_vcpu(0, rg::CODE_GPA)?;
    let ring = map.mem();
    let mut backend = HostRing::new(geo, HostRingState::default());
    let mut buf = vec![0u8; geo.max_payload()];
    let mem = guest.mem_host_addr() as usize;
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let t0 = Instant::now();
    // The probe's reporter reads guest memory while the vCPU runs: a scoped thread, told to stop
    // (and joined) before the guest can be dropped.
    let exits = std::thread::scope(|s| {
        if let (Some(p), Some(hz)) = (o.probe, hz) {
            s.spawn(move || probe_reporter(mem, p, hz, stop_rx));
        }
        let mut exits = 0u64;
        let r = (|| {
            loop {
                let exit = match vcpu.run() {
                    Ok(e) => e,
                    // A signal that does not end the process (SIGSTOP/SIGCONT, as vdd's tests use
                    // to stop a VM's I/O): KVM_RUN returns EINTR; a VMM just enters again.
                    Err(e)
                        if e.downcast_ref::<kvm_ioctls::Error>()
                            .is_some_and(|k| k.errno() == nix::libc::EINTR) =>
                    {
                        continue
                    }
                    Err(e) => return Err(e),
                };
                exits += 1;
                let what = match exit {
                    VcpuExit::IoOut(DONE_PORT, _) => return Ok(exits),
                    VcpuExit::IoOut(KICK_PORT, _) if o.path == ServePath::Vmm => {
                        serve_in_vmm(&ring, &mut backend, &mut buf, &call)?;
                        continue;
                    }
                    other => format!("{other:?}"),
                };
                // The exit borrowed the vCPU; it is released now, so its state can be read.
                let dump = off_the_rails(&guest, vcpu.fd(), program, &params, &ring);
                bail!("unexpected vCPU exit {what} after {exits} exits: the guest program went off the rails; {dump}");
            }
        })();
        drop(stop_tx);
        r
    })?;
    let wall = t0.elapsed();

    let mut r = Report {
        test: "kvm_evtchn",
        path: Some(o.path),
        requests: o.requests,
        batch: o.batch,
        entries: o.entries,
        hostile: o.hostile.is_some(),
        ok: guest.read_u32(result::OK)?,
        bad: guest.read_u32(result::BAD)?,
        guest_irqs: guest.read_u32(result::IRQS)?,
        guest_kicks: guest.read_u32(result::KICKS)?,
        guest_kicks_suppressed: guest.read_u32(result::SUPPRESSED)?,
        guest_saw_failed: guest.read_u32(result::FAILED)? != 0,
        exits_to_vmm: exits,
        wall_ms: wall.as_secs_f64() * 1e3,
        ..Default::default()
    };
    let n = guest.read_u32(result::NSAMPLES)?.min(if o.probe.is_some() {
        MAX_SAMPLES
    } else {
        o.samples
    });
    let mut raw = vec![0u8; n as usize * 4];
    guest.read(rg::SAMPLES_GPA, &mut raw)?;
    r.samples = raw
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if let Some(hz) = hz {
        r.tsc_hz = Some(hz);
        if !r.samples.is_empty() {
            let mut c: Vec<u64> = r.samples.iter().map(|&s| u64::from(s)).collect();
            r.median_ns = Some(median(&mut c) as f64 * 1e9 / hz);
        }
    }
    let s = dom.stats(c.id).context("VDE_IOC_STATS")?;
    r.channel = ChanCounters {
        state: match s.state {
            vde_state::FAILED => "failed",
            vde_state::ACTIVE => "active",
            _ => "idle",
        },
        requests: s.counters.requests,
        responses: s.counters.responses,
        kicks: s.counters.kicks,
        wakeups: s.counters.wakeups,
        irqs: s.counters.irqs,
        irqs_suppressed: s.counters.irqs_suppressed,
        errors: s.counters.errors,
    };
    if o.probe.is_some() {
        // The probe ends when told to (or at `requests`): judge what the guest actually sent.
        let sent = r.ok + r.bad;
        r.requests = sent;
        r.judge(&Opts {
            requests: sent,
            ..o.clone()
        });
    } else {
        r.judge(o);
    }
    Ok(r)
}

/// What the guest looked like when it left its program: its registers, whether the program, its
/// interrupt vector and its parameters in guest memory are still what was loaded, the bytes at
/// CS:IP and the ring's indices. Tells a corrupted guest (memory changed under it) from one whose
/// CPU state went wrong (memory intact, registers not).
fn off_the_rails(
    guest: &Guest,
    vcpu: &kvm_ioctls::VcpuFd,
    program: rg::Program,
    params: &[(u64, u32)],
    ring: &RawMem,
) -> String {
    let mut out = Vec::new();
    match (vcpu.get_regs(), vcpu.get_sregs()) {
        (Ok(r), Ok(s)) => {
            out.push(format!(
                "regs: rip={:#x} rsp={:#x} rflags={:#x} rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} rbp={:#x}",
                r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp
            ));
            out.push(format!(
                "sregs: cs={:#x}/{:#x} ds={:#x}/{:#x} es={:#x}/{:#x} ss={:#x}/{:#x} cr0={:#x} efer={:#x}",
                s.cs.selector, s.cs.base, s.ds.selector, s.ds.base, s.es.selector, s.es.base, s.ss.selector, s.ss.base, s.cr0, s.efer
            ));
            let ip = s.cs.base.wrapping_add(r.rip);
            let mut at = [0u8; 16];
            match guest.read(ip, &mut at) {
                Ok(()) => out.push(format!("bytes at CS:IP {ip:#x}: {at:02x?}")),
                Err(_) => out.push(format!("CS:IP {ip:#x} is outside guest RAM")),
            }
            // Which instruction of the program IP is at (the program's own range).
            let code = u64::from(rg::CODE_GPA);
            if (code..code + program.0.len() as u64).contains(&ip) {
                out.push(format!(
                    "IP is at program offset {:#x} of {:#x}",
                    ip - code,
                    program.0.len()
                ));
            } else {
                out.push(format!(
                    "IP is outside the program [{code:#x}, {:#x})",
                    code + program.0.len() as u64
                ));
            }
        }
        (r, s) => out.push(format!("registers unreadable: {:?} {:?}", r.err(), s.err())),
    }
    let mut now = vec![0u8; program.0.len()];
    match guest.read(u64::from(rg::CODE_GPA), &mut now) {
        Ok(()) => match now.iter().zip(program.0).position(|(a, b)| a != b) {
            None => out.push(format!("program: intact ({} bytes)", now.len())),
            Some(i) => out.push(format!(
                "program: CHANGED, {} of {} bytes differ, first at offset {i:#x}",
                now.iter().zip(program.0).filter(|(a, b)| a != b).count(),
                now.len()
            )),
        },
        Err(e) => out.push(format!("program unreadable: {e}")),
    }
    let vec_gpa = u64::from(rg::VECTOR_BASE + IRQ_LINE) * 4;
    let want = u32::from(rg::CODE_GPA + program.1);
    match guest.read_u32(vec_gpa) {
        Ok(v) if v == want => out.push("interrupt vector: intact".into()),
        Ok(v) => out.push(format!(
            "interrupt vector: CHANGED to {v:#x} (loaded {want:#x})"
        )),
        Err(e) => out.push(format!("interrupt vector unreadable: {e}")),
    }
    let changed: Vec<String> = params
        .iter()
        .filter_map(|&(gpa, v)| match guest.read_u32(gpa) {
            // The probe reporter sets N to 0 to end a timed run.
            Ok(now) if now == v || (gpa == param::N && now == 0) => None,
            Ok(now) => Some(format!("{gpa:#x}: {now:#x} (loaded {v:#x})")),
            Err(e) => Some(format!("{gpa:#x}: {e}")),
        })
        .collect();
    out.push(if changed.is_empty() {
        "parameters: intact".into()
    } else {
        format!("parameters CHANGED: {}", changed.join(", "))
    });
    let idx = |off: usize| ring.load_u32(off);
    out.push(format!(
        "ring: req_prod={} rsp_prod={} rsp_cons={} req_event={} rsp_event={}; guest ok={} bad={} irqs={}",
        idx(vd_ring::OFF_REQ_PROD),
        idx(vd_ring::OFF_RSP_PROD),
        idx(vd_ring::OFF_RSP_CONS),
        idx(vd_ring::OFF_REQ_EVENT),
        idx(vd_ring::OFF_RSP_EVENT),
        guest.read_u32(result::OK).unwrap_or(0),
        guest.read_u32(result::BAD).unwrap_or(0),
        guest.read_u32(result::IRQS).unwrap_or(0),
    ));
    out.join("; ")
}

/// The probe's reporter: every period, the median (and 90th percentile) round trip of the batches
/// the guest finished since the previous line, from the guest's sample ring.
fn probe_reporter(mem: usize, p: Probe, hz: f64, stop: std::sync::mpsc::Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    // SAFETY: `mem` is the host address of the live guest RAM (MEM_SIZE bytes), which outlives
    // this thread (scoped, joined before the guest is dropped); every offset used is an aligned
    // u32 inside it. The guest writes these words concurrently: volatile, word-sized accesses.
    let rd = |gpa: u64| -> u32 {
        unsafe { std::ptr::read_volatile((mem + gpa as usize) as *const u32) }
    };
    let t0 = Instant::now();
    let (mut last_n, mut last_t) = (rd(result::NSAMPLES), t0);
    let mut stopping = false;
    loop {
        match stop.recv_timeout(p.period) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let now = Instant::now();
        let n = rd(result::NSAMPLES);
        let new = n.wrapping_sub(last_n);
        // At most half the ring: the slots read are not being rewritten meanwhile.
        let take = new.min(MAX_SAMPLES / 2);
        let mut c: Vec<u64> = (0..take)
            .map(|i| {
                u64::from(rd(SAMPLES_GPA
                    + 4 * u64::from(
                        n.wrapping_sub(take).wrapping_add(i) & (MAX_SAMPLES - 1),
                    )))
            })
            .collect();
        let dt = (now - last_t).as_secs_f64();
        let t = (now - t0).as_secs_f64();
        if c.is_empty() {
            println!("probe t={t:.2}s round_trips=0 rate=0/s (no batch finished in {dt:.2}s)");
        } else {
            let med = median(&mut c) as f64 * 1e9 / hz;
            let p90 = c[c.len() * 9 / 10] as f64 * 1e9 / hz;
            println!(
                "probe t={t:.2}s round_trips={new} rate={:.0}/s median_ns={med:.0} p90_ns={p90:.0}",
                f64::from(new) / dt
            );
        }
        (last_n, last_t) = (n, now);
        if let Some(d) = p.duration {
            if !stopping && now - t0 >= d {
                // SAFETY: as for `rd`; the guest reads N at the top of every batch.
                unsafe { std::ptr::write_volatile((mem + param::N as usize) as *mut u32, 0) };
                stopping = true;
            }
        }
    }
}

/// The emulated-device path: serve every queued request here, as a VMM's device model would,
/// then interrupt the guest through the irqfd if it asked.
fn serve_in_vmm(ring: &RawMem, be: &mut HostRing, buf: &mut [u8], call: &EventFd) -> Result<()> {
    loop {
        while let Some(req) = be
            .pop_request(ring, buf)
            .map_err(|e| anyhow::anyhow!("guest broke the ring: {e:?}"))?
        {
            let len = req.len as usize;
            let (status, body): (i32, &[u8]) = if req.op == op::ECHO {
                (0, &buf[..len])
            } else {
                (-95, &[])
            };
            let body = body.to_vec();
            be.push_response(ring, req.id, status, &body)
                .map_err(|e| anyhow::anyhow!("push response: {e:?}"))?;
        }
        let (_, notify) = be.publish(ring);
        if notify {
            call.write(1).context("write call eventfd")?;
        }
        if !be
            .enable_kicks(ring)
            .map_err(|e| anyhow::anyhow!("guest broke the ring: {e:?}"))?
        {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good(path: ServePath) -> (Opts, Report) {
        let o = Opts {
            path,
            requests: 100,
            batch: 10,
            ..Default::default()
        };
        let r = Report {
            ok: 100,
            guest_irqs: 10,
            guest_kicks: 10,
            exits_to_vmm: if path == ServePath::Kernel { 1 } else { 11 },
            channel: ChanCounters {
                state: "active",
                requests: 100,
                responses: 100,
                irqs: 10,
                ..Default::default()
            },
            ..Default::default()
        };
        (o, r)
    }

    #[test]
    fn judge_accepts_a_clean_run_on_both_paths() {
        for p in [ServePath::Kernel, ServePath::Vmm] {
            let (o, mut r) = good(p);
            r.judge(&o);
            assert!(r.pass, "{p:?}");
        }
    }

    #[test]
    fn judge_rejects_loss_duplicates_and_extra_exits() {
        let (o, base) = good(ServePath::Kernel);
        let cases: [fn(&mut Report); 8] = [
            |r| r.guest_irqs = 0,
            |r| r.channel.irqs = 9,
            |r| r.ok = 99,
            |r| r.bad = 1,
            |r| r.channel.responses = 101,
            |r| r.exits_to_vmm = 2,
            |r| r.guest_irqs = 11,
            |r| r.guest_saw_failed = true,
        ];
        for (i, f) in cases.iter().enumerate() {
            let mut r = base.clone();
            f(&mut r);
            r.judge(&o);
            assert!(!r.pass, "case {i} passed");
        }
    }

    #[test]
    fn judge_hostile_needs_both_sides_to_agree() {
        let o = Opts {
            hostile: Some(0x7fff_0000),
            ..Default::default()
        };
        let mut r = Report {
            guest_saw_failed: true,
            channel: ChanCounters {
                state: "failed",
                errors: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        r.judge(&o);
        assert!(r.pass);
        r.channel.state = "active";
        r.judge(&o);
        assert!(!r.pass);
    }

    #[test]
    fn probe_options_are_checked_before_touching_kvm() {
        let p = Probe {
            period: Duration::from_millis(500),
            duration: None,
        };
        let o = Opts {
            probe: Some(p),
            hostile: Some(5),
            ..Default::default()
        };
        assert!(format!("{:#}", run("/nonexistent/dev/kvm", &o).unwrap_err()).contains("probe"));
        let o = Opts {
            probe: Some(Probe {
                period: Duration::from_millis(1),
                ..p
            }),
            ..Default::default()
        };
        assert!(
            format!("{:#}", run("/nonexistent/dev/kvm", &o).unwrap_err())
                .contains("at least 10 ms")
        );
    }

    #[test]
    fn median_is_reported_only_when_sampled() {
        let (_, mut r) = good(ServePath::Kernel);
        assert!(!r.human_line().contains("median"));
        assert!(!serde_json::to_string(&r).unwrap().contains("median_ns"));
        r.samples = vec![1, 2, 3];
        r.median_ns = Some(1234.4);
        assert!(
            r.human_line()
                .contains("median round trip 1234 ns over 3 batches"),
            "{}",
            r.human_line()
        );
        assert!(serde_json::to_string(&r)
            .unwrap()
            .contains("\"median_ns\":1234.4"));
    }

    #[test]
    fn oversized_ring_is_refused_before_touching_kvm() {
        let o = Opts {
            entries: 4096,
            entry_size: 64,
            ..Default::default()
        };
        let e = run("/nonexistent/dev/kvm", &o).unwrap_err();
        assert!(format!("{e:#}").contains("real-mode test guest"), "{e:#}");
    }
}
