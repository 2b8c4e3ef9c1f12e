//! `make bench` (issue 13): host uinput write -> event read by a process in a stock QEMU guest,
//! vd_input_irq (vd-ivshmem-server --input, vd_front's evdev device) versus QEMU's `input-linux`
//! + `virtio-keyboard-pci` (what users run today), both in the same guest, rounds alternated.
//!
//! The clock problem: the host and the guest have different clocks, so the guest answers through
//! memory both can see. A third PCI device, `ivshmem-plain` on a host shm file, is mapped by the
//! guest's reader (`input-echo`, from `/sys/bus/pci/devices/.../resource2`) and by the host
//! (`input-latency`). For each key event a device delivers, the reader stores into that device's
//! 64-byte slot: the evdev timestamp of the event (guest `CLOCK_MONOTONIC`: when the guest's
//! driver reported it to the guest's input core), the time its `read` returned (same clock), then
//! a count. The host writes a key press to one uinput device and spins on that slot's count:
//! host time from the write to the count seen is the latency (the echo itself is one store that
//! a spinning reader sees in well under a microsecond). The guest's two stamps split it into
//! hops on one clock each:
//!
//! - `to-guest`: host write -> the guest's input core (the host side: uinput, vd_input_irq's
//!   handler + ring + eventfd -> KVM irqfd -> the vCPU woken -> vd_front's interrupt handler; or
//!   QEMU's main loop reading evdev -> virtqueue -> irqfd -> virtio-input's handler);
//! - `in-guest`: the guest's input core -> the reader's `read` returning (evdev, the guest's
//!   scheduler), the same code for both paths.
//!
//! Per path: median, p90, p99 over every round, and per block (three blocks of `rounds`) the
//! median, so the run says itself whether its blocks agree within 20%.

use super::fixtures::*;
use std::os::fd::AsFd;
use std::path::PathBuf;

/// Bytes per device slot in the echo memory (a cache line each: no false sharing).
const SLOT: usize = 64;
/// The end key: the reader exits after its release arrived from every device.
const KEY_END: u16 = 88; // KEY_F12
/// The key the rounds press and release.
const KEY_ROUND: u16 = 30; // KEY_A
/// Longest wait for one echo: beyond it the event counts as lost and the benchmark fails.
const LOST: Duration = Duration::from_secs(3);
/// Echo memory size (the `ivshmem-plain` BAR: a power of two).
pub const ECHO_BYTES: usize = 4096;

/// A shared mapping of the echo memory (a file: the host's shm file, or the guest's BAR file).
struct Echo {
    ptr: std::ptr::NonNull<std::ffi::c_void>,
}

impl Echo {
    fn map(path: &std::path::Path, create: bool) -> Result<Self> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
            .with_context(|| format!("open {}", path.display()))?;
        if create {
            f.set_len(ECHO_BYTES as u64)?;
        }
        let len = std::num::NonZeroUsize::new(ECHO_BYTES).ok_or_else(|| anyhow!("size"))?;
        // SAFETY: a fresh shared mapping of a file we opened read-write; nothing else in this
        // process maps that range. Unmapped in `Drop`.
        let ptr = unsafe {
            nix::sys::mman::mmap(
                None,
                len,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_SHARED,
                f.as_fd(),
                0,
            )
        }
        .with_context(|| format!("mmap {}", path.display()))?;
        Ok(Self { ptr })
    }

    fn word(&self, slot: usize, i: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(slot * SLOT + (i + 1) * 8 <= ECHO_BYTES);
        // SAFETY: in bounds (asserted), 8-byte aligned (a page-aligned mapping), and the mapping
        // lives as long as `self`; the memory is shared with another VM/process, so it is only
        // ever accessed atomically.
        unsafe {
            &*(self.ptr.as_ptr().cast::<u8>().add(slot * SLOT + i * 8)
                as *const std::sync::atomic::AtomicU64)
        }
    }

    /// Slot `slot`: (count, evdev time, read time).
    fn load(&self, slot: usize) -> (u64, u64, u64) {
        let n = self.word(slot, 0).load(Ordering::Acquire);
        (
            n,
            self.word(slot, 1).load(Ordering::Relaxed),
            self.word(slot, 2).load(Ordering::Relaxed),
        )
    }

    fn store(&self, slot: usize, n: u64, ev_ns: u64, read_ns: u64) {
        self.word(slot, 1).store(ev_ns, Ordering::Relaxed);
        self.word(slot, 2).store(read_ns, Ordering::Relaxed);
        self.word(slot, 0).store(n, Ordering::Release);
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr, ECHO_BYTES) };
    }
}

/// `input-echo` (runs in the guest): reads the evdev `devices` (slot i = devices[i]) and echoes
/// every key event into the echo memory at `shm`, until KEY_END was released on every device.
pub fn echo(shm: &std::path::Path, devices: &[std::path::PathBuf]) -> Result<()> {
    let mem = Echo::map(shm, false)?;
    let mut evs = Vec::new();
    for d in devices {
        let e = Evdev::open(d, true)?;
        // EVIOCSCLOCKID: evdev timestamps on CLOCK_MONOTONIC (the clock `now_ns` reads).
        let clk: nix::libc::c_int = nix::libc::CLOCK_MONOTONIC;
        // SAFETY: EVIOCSCLOCKID takes a pointer to an int, valid for the call.
        let r = unsafe {
            nix::libc::ioctl(
                e.file.as_raw_fd(),
                nix::request_code_write!(b'E', 0xa0, size_of::<nix::libc::c_int>()) as _,
                &clk,
            )
        };
        Errno::result(r).with_context(|| format!("EVIOCSCLOCKID {}", d.display()))?;
        evs.push(e);
    }
    let mut counts = vec![0u64; devices.len()];
    let mut ended = vec![false; devices.len()];
    println!("ECHO ready: {} device(s)", devices.len());
    let mut buf = [0u8; INPUT_EVENT_SIZE * 64];
    while !ended.iter().all(|&e| e) {
        let mut fds: Vec<_> = evs
            .iter()
            .map(|e| nix::poll::PollFd::new(e.file.as_fd(), nix::poll::PollFlags::POLLIN))
            .collect();
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        for (i, e) in evs.iter_mut().enumerate() {
            if !ready[i] {
                continue;
            }
            use std::io::Read;
            let n = match e.file.read(&mut buf) {
                Ok(n) => n,
                Err(x) if x.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(x) => return Err(x.into()),
            };
            let read_ns = now_ns();
            for (sec, usec, ty, code, value) in decode(&buf[..n]) {
                if ty != EV_KEY {
                    continue;
                }
                counts[i] += 1;
                let ev_ns = (sec as u64) * 1_000_000_000 + (usec as u64) * 1000;
                mem.store(i, counts[i], ev_ns, read_ns);
                if code == KEY_END && value == 0 {
                    ended[i] = true;
                }
            }
        }
    }
    println!("ECHO done: {counts:?} key events");
    Ok(())
}

/// Where the host and guest paths stand for one round.
struct Round {
    total_ns: u64,
    in_guest_ns: u64,
}

/// `input-latency` (the host side). Creates two uinput keyboards: "vd-lat vd" routed to VM `vm`
/// (focused) and "vd-lat virtio", whose node goes to `nodes` (`VIRTIO_KBD=...`) for QEMU's
/// `input-linux`. After `go` exists (the guest's reader is up), `blocks` blocks of `rounds`
/// rounds, each round one key press per path (the order alternating), each timed from the write
/// to the echo. Then the end key on both devices.
#[derive(clap::Args)]
pub struct LatencyArgs {
    /// The VM id the guest's vd-ivshmem-server --input serves.
    #[arg(long)]
    vm: u32,
    /// Where to write the virtio path's evdev node (`VIRTIO_KBD=...`).
    #[arg(long)]
    nodes: PathBuf,
    /// Starts when this file exists (the guest's reader is up).
    #[arg(long)]
    go: PathBuf,
    /// The echo memory: the host file behind the guest's ivshmem-plain device.
    #[arg(long)]
    shm: PathBuf,
    /// Rounds per block (one key press per path each).
    #[arg(long, default_value_t = 200)]
    rounds: usize,
    /// Blocks (each block's median is printed: do they agree?).
    #[arg(long, default_value_t = 3)]
    blocks: usize,
    /// The guest's QEMU pid (a file, read once `go` exists): its threads go on every CPU but
    /// the last, this process on the last.
    #[arg(long)]
    qemu_pid_file: Option<PathBuf>,
    /// One JSON object.
    #[arg(long)]
    json: bool,
}

pub fn latency(a: LatencyArgs) -> Result<()> {
    let LatencyArgs {
        vm,
        nodes,
        go,
        shm,
        rounds,
        blocks,
        qemu_pid_file,
        json,
    } = a;
    let adm = Input::open().context("open /dev/vd_input: is vd_input_irq loaded?")?;
    let pid = std::process::id();
    let kvd = Uinput::new(
        &format!("vd-lat vd {pid}"),
        "vd-lat/vd/input0",
        Kind::KeyboardMouse,
    )?;
    let kvi = Uinput::new(
        &format!("vd-lat virtio {pid}"),
        "vd-lat/virtio/input0",
        Kind::KeyboardMouse,
    )?;
    let _route = Route::add(&adm, vdi_match::NAME, true, &kvd.name)?;
    let mem = Echo::map(&shm, true)?;
    std::fs::write(
        nodes,
        format!("VIRTIO_KBD={}\n", kvi.event_node()?.display()),
    )?;
    let t = Instant::now();
    while !go.exists() {
        if t.elapsed() > Duration::from_secs(300) {
            bail!(
                "{} never appeared (the guest's reader did not start)",
                go.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check!(
        adm.stats(vm).is_ok_and(|s| s.vcpus >= 1),
        "VM {vm} has a followed vCPU thread"
    );
    // One layout for every round: this thread (the writer that spins on the echo) on the last
    // CPU, every thread of the guest's QEMU (vCPU, main loop) on the others, so neither path
    // wins by where the scheduler happened to put a thread.
    if let (Some(f), n @ 2..) = (qemu_pid_file, ncpus()) {
        let q: u32 = std::fs::read_to_string(f)?
            .trim()
            .parse()
            .context("QEMU's pid")?;
        pin(n - 1);
        for t in std::fs::read_dir(format!("/proc/{q}/task"))?.flatten() {
            if let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
                set_affinity(tid, 0..n - 1)
                    .with_context(|| format!("sched_setaffinity QEMU thread {tid}"))?;
            }
        }
    }
    adm.focus(vm).context("VDI_IOC_FOCUS")?;
    let devs = [&kvd, &kvi];
    let names = ["vd", "virtio"];
    // One key event through path `p`; returns the round's times.
    let press = |p: usize, down: bool| -> Result<Round> {
        let (n0, _, _) = mem.load(p);
        let t0 = Instant::now();
        devs[p].emit(&[
            (EV_KEY, KEY_ROUND, i32::from(down)),
            (EV_SYN, SYN_REPORT, 0),
        ])?;
        loop {
            let (n, ev, rd) = mem.load(p);
            if n != n0 {
                let total_ns = t0.elapsed().as_nanos() as u64;
                if n != n0 + 1 {
                    bail!("{}: {} key events echoed for one sent", names[p], n - n0);
                }
                return Ok(Round {
                    total_ns,
                    in_guest_ns: rd.saturating_sub(ev),
                });
            }
            if t0.elapsed() > LOST {
                bail!(
                    "{}: a key event never reached the guest's reader within {LOST:?} (lost)",
                    names[p]
                );
            }
            std::hint::spin_loop();
        }
    };
    // Warm-up (page faults, first interrupts), not counted.
    for _ in 0..10 {
        for p in 0..2 {
            press(p, true)?;
            press(p, false)?;
        }
    }
    let mut all: [Vec<Round>; 2] = [Vec::new(), Vec::new()];
    let mut block_medians: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..blocks {
        let mut blk: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        for i in 0..rounds {
            for k in 0..2 {
                let p = (i + k) % 2;
                let r = press(p, true)?;
                press(p, false)?;
                blk[p].push(r.total_ns);
                all[p].push(r);
            }
        }
        for p in 0..2 {
            block_medians[p].push(median(&mut blk[p]));
        }
    }
    for d in devs {
        d.emit(&[(EV_KEY, KEY_END, 1), (EV_SYN, SYN_REPORT, 0)])?;
        d.emit(&[(EV_KEY, KEY_END, 0), (EV_SYN, SYN_REPORT, 0)])?;
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    let mut out = serde_json::Map::new();
    let mut med = [0u64; 2];
    for p in 0..2 {
        let mut tot: Vec<u64> = all[p].iter().map(|r| r.total_ns).collect();
        let mut ing: Vec<u64> = all[p].iter().map(|r| r.in_guest_ns).collect();
        let mut tog: Vec<u64> = all[p]
            .iter()
            .map(|r| r.total_ns.saturating_sub(r.in_guest_ns))
            .collect();
        let (m, p90, p99) = (median(&mut tot), pct(&mut tot, 0.9), pct(&mut tot, 0.99));
        med[p] = m;
        let bm = &block_medians[p];
        let spread = bm.iter().max().copied().unwrap_or(0) as f64
            / bm.iter().min().copied().unwrap_or(1).max(1) as f64;
        let (tg, ig) = (median(&mut tog), median(&mut ing));
        if json {
            out.insert(
                names[p].into(),
                serde_json::json!({
                    "rounds": tot.len(), "median_us": us(m), "p90_us": us(p90), "p99_us": us(p99),
                    "to_guest_median_us": us(tg), "in_guest_median_us": us(ig),
                    "block_medians_us": bm.iter().map(|&x| us(x)).collect::<Vec<_>>(),
                    "block_spread": spread,
                }),
            );
        } else {
            println!(
                "LAT {:<7} rounds {:>5}  median {:>8.1} us  p90 {:>8.1} us  p99 {:>8.1} us  \
                 (to-guest {:>7.1} us, in-guest {:>7.1} us)  blocks {} (max/min {:.2})",
                names[p],
                tot.len(),
                us(m),
                us(p90),
                us(p99),
                us(tg),
                us(ig),
                bm.iter()
                    .map(|&x| format!("{:.1}", us(x)))
                    .collect::<Vec<_>>()
                    .join("/"),
                spread
            );
        }
    }
    let ratio = med[0] as f64 / med[1].max(1) as f64;
    if json {
        out.insert("ratio_vd_over_virtio".into(), ratio.into());
        println!("{}", serde_json::Value::Object(out));
    } else {
        println!("LAT ratio vd/virtio (medians) {ratio:.2}");
    }
    Ok(())
}
