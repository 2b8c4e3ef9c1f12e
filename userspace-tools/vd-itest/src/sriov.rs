//! vd_sriov_mgr integration checks: concurrent lease race (processes), a lease holder to kill,
//! reassignment driven by real frames sent on a VF's netdev, per-VF rate limits, and the
//! benchmark of VF moves (module vs. sysfs writes from a shell script).

use crate::check;
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vd_sys::sriov::{bdf_name, event_name, parse_bdf, Manager};
use vd_testkit::stats::median;
use vd_uapi::*;

fn bdf(s: &str) -> Result<u32> {
    parse_bdf(s).with_context(|| format!("bad PCI address {s}"))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn vf_of(m: &Manager, b: u32) -> Result<VdsVf> {
    m.vfs()?
        .into_iter()
        .find(|v| v.bdf == b)
        .with_context(|| format!("VF {} not listed", bdf_name(b)))
}

/// Waits until `f(vf)` holds.
fn wait_vf(m: &Manager, b: u32, t: Duration, f: impl Fn(&VdsVf) -> bool) -> Result<VdsVf> {
    let end = Instant::now() + t;
    loop {
        let v = vf_of(m, b)?;
        if f(&v) {
            return Ok(v);
        }
        if Instant::now() > end {
            bail!(
                "VF {} did not reach the expected state in {t:?}: phase {} vm {}",
                bdf_name(b),
                v.phase,
                v.vm_id
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One racer: waits for the start time, leases, reports, holds until its stdin is closed (at
/// most `hold_ms`), exits (the lease ends with the process).
pub fn race_child(vf: &str, vm: u64, go_at_ms: u64, hold_ms: u64) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let m = Manager::open()?;
    let b = bdf(vf)?;
    while unix_ms() < go_at_ms {
        std::hint::spin_loop();
    }
    let r = m.lease(b, vm, 0);
    match r {
        Ok(_) => println!("LEASE ok {vm}"),
        Err(e) => println!("LEASE err {e}"),
    }
    std::io::stdout().flush()?;
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    let t = PollTimeout::try_from(hold_ms.min(i32::MAX as u64) as i32).unwrap_or(PollTimeout::MAX);
    poll(&mut fds, t)?;
    Ok(())
}

/// `procs` processes race for the same VF, `rounds` times: exactly one wins each round, the
/// others get EBUSY, and the list names the winner while it holds (every racer holds until the
/// list was read).
pub fn race(vf: &str, procs: u32, rounds: u32) -> Result<()> {
    use std::io::BufRead;
    let m = Manager::open()?;
    let b = bdf(vf)?;
    let exe = std::env::current_exe()?;
    for round in 0..rounds {
        wait_vf(&m, b, Duration::from_secs(20), |v| {
            v.phase == vds_phase::HOST && v.vm_id == 0
        })?;
        let go = unix_ms() + 300;
        let mut kids = vec![];
        for i in 0..procs {
            let vm = (round as u64 + 1) * 1000 + i as u64;
            kids.push(
                Command::new(&exe)
                    .args([
                        "sriov-race-child",
                        "--vf",
                        vf,
                        "--vm",
                        &vm.to_string(),
                        "--go-at",
                        &go.to_string(),
                        "--hold-ms",
                        "60000",
                    ])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()?,
            );
        }
        // Every racer's verdict; they all hold until their stdin closes.
        let mut wins = vec![];
        let mut busy = 0;
        let mut outs = vec![];
        for k in kids.iter_mut() {
            let mut line = String::new();
            let out = k.stdout.take().context("racer stdout")?;
            std::io::BufReader::new(out).read_line(&mut line)?;
            if let Some(vm) = line.trim().strip_prefix("LEASE ok ") {
                wins.push(vm.parse::<u64>()?);
            } else if line.contains("EBUSY") {
                busy += 1;
            }
            outs.push(line);
        }
        // While the winner holds: the list names it.
        let held = vf_of(&m, b)?;
        for mut k in kids {
            drop(k.stdin.take());
            k.wait()?;
        }
        check!(wins.len() == 1, "round {round}: exactly one of {procs} racing processes leased the VF (winners {wins:?}; {outs:?})");
        check!(
            busy == procs - 1,
            "round {round}: the other {busy} got EBUSY"
        );
        check!(
            held.vm_id == wins[0] && held.phase == vds_phase::LEASED,
            "round {round}: the list showed the winner's VM {} holding it",
            held.vm_id
        );
    }
    let v = wait_vf(&m, b, Duration::from_secs(20), |v| {
        v.phase == vds_phase::HOST && v.vm_id == 0
    })?;
    check!(
        crate::sriov::name(&v.driver) != "vfio-pci",
        "after the races the VF is back on its host driver ({})",
        name(&v.driver)
    );
    Ok(())
}

pub fn name(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Takes a lease and holds it until killed, printing `LEASED <bdf>` and then every event.
pub fn hold(vf: &str, vm: u64, keep_host: bool) -> Result<()> {
    let m = Manager::open()?;
    let want = if vf == "any" { VDS_ANY } else { bdf(vf)? };
    let got = m
        .lease(want, vm, if keep_host { VDS_LEASE_KEEP_HOST } else { 0 })
        .context("lease")?;
    println!("LEASED {}", bdf_name(got));
    std::io::stdout().flush()?;
    loop {
        for e in m.read_events()? {
            println!(
                "EVENT {} {} vm {}",
                event_name(e.kind),
                bdf_name(e.bdf),
                e.vm_id
            );
        }
        std::io::stdout().flush()?;
    }
}

/// Sends Ethernet frames out of `ifname` (AF_PACKET) at about `bytes_per_s` until `stop`.
pub(crate) fn send_frames(
    ifname: &str,
    bytes_per_s: u64,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<u64> {
    use nix::libc;
    let cname = std::ffi::CString::new(ifname)?;
    // SAFETY: plain libc calls with valid arguments; the socket is closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    Errno::result(fd).context("socket(AF_PACKET)")?;
    // SAFETY: `cname` is a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        bail!("no interface {ifname}");
    }
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_ifindex = ifindex as i32;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let mut frame = vec![0u8; 1000];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes()); // local experimental ethertype
    let t0 = Instant::now();
    let mut sent = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let due = (t0.elapsed().as_secs_f64() * bytes_per_s as f64) as u64;
        if sent >= due {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        // SAFETY: `frame` and `sa` are valid for the call.
        let n = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            let e = Errno::last();
            if e == Errno::ENOBUFS || e == Errno::EAGAIN {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            // SAFETY: our fd.
            unsafe { libc::close(fd) };
            bail!("sendto on {ifname}: {e}");
        }
        sent += n as u64;
    }
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    Ok(sent)
}

fn next_event(
    m: &Manager,
    kind: u32,
    t: Duration,
    seen: &mut Vec<VdsEvent>,
) -> Result<Option<VdsEvent>> {
    let end = Instant::now() + t;
    while Instant::now() < end {
        if m.poll_readable(
            end.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100)),
        )? {
            for e in m.read_events()? {
                seen.push(e);
            }
        }
        if let Some(i) = seen.iter().position(|e| e.kind == kind) {
            return Ok(Some(seen.remove(i)));
        }
    }
    Ok(None)
}

/// Reassignment on real traffic: VM 1 holds the VF (netdev lease) while frames go out of its
/// netdev; VM 2 waits. While traffic flows VM 1 is no candidate and a policy swap is refused;
/// The policy the reassignment checks set: 20 kB/s threshold, 1 s window, 0.5 s minimum hold.
const TEST_POLICY: VdsPolicy = VdsPolicy {
    threshold_bps: 20_000,
    hysteresis_bps: 10_000,
    window_ms: 1000,
    min_hold_ms: 500,
    sample_ms: 100,
    flags: 0,
};

/// once traffic stops it becomes one (event), and the daemon's swap moves the lease to VM 2.
pub fn reassign(vf: &str, ifname: &str) -> Result<()> {
    let b = bdf(vf)?;
    let daemon = Manager::open()?;
    let holder = Manager::open()?;
    let waiter = Manager::open()?;
    let pol = TEST_POLICY;
    daemon.set_policy(&pol).context("policy set")?;
    check!(
        daemon.policy()? == pol,
        "policy parameters are visible as set"
    );
    check!(
        daemon.set_policy(&VdsPolicy {
            window_ms: 50,
            ..pol
        }) == Err(Errno::EINVAL),
        "a 50 ms window is refused"
    );

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s2, ifn) = (stop.clone(), ifname.to_string());
    let sender = std::thread::spawn(move || send_frames(&ifn, 200_000, &s2));
    std::thread::sleep(Duration::from_millis(200));
    check!(
        holder.lease(b, 1, VDS_LEASE_KEEP_HOST)? == b,
        "VM 1 leases {vf} (netdev lease)"
    );
    waiter.wait_for_vf(2, false).context("wait")?;
    check!(
        waiter.wait_for_vf(2, false) == Err(Errno::EEXIST),
        "waiting twice is refused"
    );
    check!(
        holder.wait_for_vf(1, false) == Err(Errno::EEXIST),
        "a VM holding a VF cannot wait for one"
    );

    let mut seen = vec![];
    // Traffic for 3 s: never a candidate.
    let early = next_event(
        &daemon,
        vds_event::CANDIDATE,
        Duration::from_secs(3),
        &mut seen,
    )?;
    let v = vf_of(&daemon, b)?;
    check!(early.is_none(), "no candidate event while traffic flows");
    check!(
        v.flags & vds_vf::HAS_RATE != 0 && v.rate_bps > pol.threshold_bps,
        "window rate {} B/s over the threshold (tx_bytes {})",
        v.rate_bps,
        v.tx_bytes
    );
    check!(
        daemon.swap(b, 1, 2, false) == Err(Errno::EAGAIN),
        "a policy swap of a busy holder is refused (EAGAIN)"
    );
    let cands = daemon.candidates()?;
    check!(
        cands.len() == 1 && cands[0].kind == vds_cand::WAITER && cands[0].vm_id == 2,
        "candidates: only the waiter"
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    check!(sent > 400_000, "{sent} bytes of frames sent on {ifname}");
    let t_stop = Instant::now();
    let ev = next_event(
        &daemon,
        vds_event::CANDIDATE,
        Duration::from_secs(10),
        &mut seen,
    )?;
    let ev = ev.context("no candidate event within 10 s of the traffic stopping")?;
    check!(
        ev.bdf == b && ev.vm_id == 1,
        "candidate event for VM 1 on {vf} {} ms after traffic stopped",
        t_stop.elapsed().as_millis()
    );
    let cands = daemon.candidates()?;
    check!(
        cands.len() == 2
            && cands[0].kind == vds_cand::HOLDER
            && cands[0].vm_id == 1
            && cands[0].bdf == b
            && cands[1].vm_id == 2,
        "candidates: idle holder VM 1 (rate {} B/s), then waiter VM 2",
        cands.first().map_or(0, |c| c.rate_bps)
    );
    daemon.swap(b, 1, 2, false).context("swap")?;
    let v = vf_of(&daemon, b)?;
    check!(
        v.vm_id == 2 && v.owner_pid == std::process::id(),
        "after the swap VM 2 holds {vf}"
    );
    let got = next_event(
        &waiter,
        vds_event::SWAPPED,
        Duration::from_secs(2),
        &mut vec![],
    )?;
    check!(
        got.is_some_and(|e| e.vm_id == 2 && e.other_vm == 1),
        "the waiter's file got the swapped event (2 <- 1)"
    );
    check!(
        holder.release(b, 1) == Err(Errno::EPERM),
        "the old holder can no longer release it"
    );
    check!(
        daemon.swap(b, 1, 2, true) == Err(Errno::ESRCH),
        "a second swap from VM 1 is refused"
    );
    drop(holder);
    let v = vf_of(&daemon, b)?;
    check!(
        v.vm_id == 2,
        "closing the old holder's file leaves VM 2's lease alone"
    );
    drop(waiter);
    let v = wait_vf(&daemon, b, Duration::from_secs(10), |v| {
        v.vm_id == 0 && v.phase == vds_phase::HOST
    })?;
    check!(v.vm_id == 0, "closing the new holder's file ends its lease");
    daemon.set_policy(&VdsPolicy {
        threshold_bps: 65536,
        hysteresis_bps: 16384,
        window_ms: 5000,
        min_hold_ms: 5000,
        sample_ms: 250,
        flags: 0,
    })?;
    Ok(())
}

/// The raw mirror registers of VF `b` in debugfs `vd_sriov/sampler` (its `mirror` line:
/// `gorc`, `gotc`), if the sampler read them since the VF's lease began.
fn mirror_raw(b: u32) -> Result<Option<(u64, u64)>> {
    let text = std::fs::read_to_string("/sys/kernel/debug/vd_sriov/sampler")
        .context("read debugfs vd_sriov/sampler")?;
    let name = bdf_name(b);
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 8 && w[0] == "mirror" && w[1] == name {
            let field = |k: &str| -> Result<u64> {
                let i = w.iter().position(|x| *x == k).context("field missing")?;
                w.get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("bad {k} in {line:?}"))
            };
            return Ok(Some((field("gorc")?, field("gotc")?)));
        }
    }
    Ok(None)
}

/// Counting a passed-through VF from its PF's mirror statistics. Frames are sent on the VF's
/// igbvf netdev first (the PF's mirror of its transmit octets, `PVFGOTC`, counts them); then VM 1
/// leases the VF (to vfio-pci) and pushes nothing. The sampler reads the PF's registers: the
/// first reading is the baseline (the raw value includes the frames sent before, the totals
/// start at 0), the VF is listed with the `PF_MIRROR` source, its window rate is 0 (nothing
/// drives a VF without a guest driver), so VM 1 becomes a candidate and a policy swap (no
/// force) hands the VF to the waiting VM 2. The new holder's pushed count then takes
/// precedence over the mirror.
pub fn mirror(vf: &str, ifname: &str) -> Result<()> {
    let b = bdf(vf)?;
    let daemon = Manager::open()?;
    check!(
        daemon.version()?.features & VDS_FEAT_PF_MIRROR != 0,
        "the module advertises VDS_FEAT_PF_MIRROR"
    );
    let pol = TEST_POLICY;
    daemon.set_policy(&pol).context("policy set")?;

    let tx_bytes = || -> Result<u64> {
        let p = format!("/sys/class/net/{ifname}/statistics/tx_bytes");
        let t = std::fs::read_to_string(&p).with_context(|| format!("read {p}"))?;
        t.trim().parse().with_context(|| format!("{p}: {t:?}"))
    };
    let tx0 = tx_bytes()?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s2, ifn) = (stop.clone(), ifname.to_string());
    let sender = std::thread::spawn(move || send_frames(&ifn, 200_000, &s2));
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    check!(
        sent >= 100_000,
        "{sent} bytes of frames sent on {ifname} (igbvf)"
    );
    // Every frame left the VF (igbvf counts completed transmissions) before the lease unbinds it.
    let t = Instant::now();
    while tx_bytes()?.saturating_sub(tx0) < sent {
        if t.elapsed() > Duration::from_secs(10) {
            bail!(
                "{ifname} completed {} of {sent} bytes",
                tx_bytes()?.saturating_sub(tx0)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check!(
        mirror_raw(b)?.is_none(),
        "no mirror reading of {vf} while on igbvf"
    );

    let holder = Manager::open()?;
    let mut seen = vec![];
    check!(
        holder.lease(b, 1, 0)? == b,
        "VM 1 leases {vf} (passthrough)"
    );
    let v = wait_vf(&daemon, b, Duration::from_secs(10), |v| {
        v.flags & vds_vf::PF_MIRROR != 0
    })?;
    check!(
        name(&v.driver) == "vfio-pci" && v.flags & vds_vf::PUSHED == 0,
        "on vfio-pci, nothing pushed: counted from the PF's mirror (flags {:#x})",
        v.flags
    );
    let (gorc, gotc) = mirror_raw(b)?.context("no mirror line in debugfs")?;
    check!(
        gotc >= sent,
        "the PF's raw PVFGOTC of {vf} ({gotc}, PVFGORC {gorc}) includes the {sent} bytes sent \
         on igbvf before the lease"
    );
    let zero = |v: &VdsVf| v.rx_bytes == 0 && v.tx_bytes == 0;
    check!(
        zero(&v),
        "the first reading is the baseline: rx {} tx {} bytes since the lease",
        v.rx_bytes,
        v.tx_bytes
    );

    let waiter = Manager::open()?;
    waiter.wait_for_vf(2, false).context("wait")?;
    let ev = next_event(
        &daemon,
        vds_event::CANDIDATE,
        Duration::from_secs(15),
        &mut seen,
    )?;
    let ev = ev.context("no candidate event within 15 s for the passed-through holder")?;
    check!(
        ev.bdf == b && ev.vm_id == 1,
        "VM 1 is a candidate (no traffic through {vf})"
    );
    let v = vf_of(&daemon, b)?;
    check!(
        v.flags & vds_vf::HAS_RATE != 0 && v.rate_bps == 0 && v.flags & vds_vf::IDLE != 0,
        "window rate {} B/s from the mirror, idle (flags {:#x})",
        v.rate_bps,
        v.flags
    );
    check!(
        zero(&v),
        "still nothing counted: rx {} tx {}",
        v.rx_bytes,
        v.tx_bytes
    );
    daemon
        .swap(b, 1, 2, false)
        .context("policy swap (no force)")?;
    let v = vf_of(&daemon, b)?;
    check!(v.vm_id == 2, "the policy swap handed {vf} to VM 2");
    // The new lease starts from a new baseline, read again by the sampler.
    let v = wait_vf(&daemon, b, Duration::from_secs(10), |v| {
        v.flags & vds_vf::PF_MIRROR != 0
    })?;
    check!(
        zero(&v),
        "VM 2's lease is counted from the mirror again, from 0"
    );

    waiter.sample(b, 5000).context("push")?;
    let v = vf_of(&daemon, b)?;
    check!(
        v.flags & vds_vf::PUSHED != 0 && v.flags & vds_vf::PF_MIRROR == 0 && v.rx_bytes == 5000,
        "a pushed count takes precedence over the mirror (flags {:#x}, rx {})",
        v.flags,
        v.rx_bytes
    );
    let t = Instant::now();
    let tk = sampler_ticks()?;
    while sampler_ticks()? < tk + 3 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let v = vf_of(&daemon, b)?;
    check!(
        v.flags & vds_vf::PUSHED != 0 && v.rx_bytes == 5000 && mirror_raw(b)?.is_none(),
        "and the sampler no longer reads the mirror for it (3 passes later)"
    );
    drop(holder);
    drop(waiter);
    let v = wait_vf(&daemon, b, Duration::from_secs(10), |v| {
        v.vm_id == 0 && v.phase == vds_phase::HOST
    })?;
    check!(
        v.flags & (vds_vf::PF_MIRROR | vds_vf::PUSHED) == 0,
        "released: back on the host, no mirror or pushed source (flags {:#x})",
        v.flags
    );
    daemon.set_policy(&VdsPolicy {
        threshold_bps: 65536,
        hysteresis_bps: 16384,
        window_ms: 5000,
        min_hold_ms: 5000,
        sample_ms: 250,
        flags: 0,
    })?;
    Ok(())
}

/// The sampler's pass count (debugfs `vd_sriov/sampler`, `ticks`).
fn sampler_ticks() -> Result<u64> {
    let text = std::fs::read_to_string("/sys/kernel/debug/vd_sriov/sampler")
        .context("read debugfs vd_sriov/sampler")?;
    text.lines()
        .find_map(|l| l.strip_prefix("ticks ").and_then(|v| v.trim().parse().ok()))
        .context("no ticks line")
}

/// Argument and permission checks that need no traffic.
pub fn basic(vf: &str) -> Result<()> {
    let b = bdf(vf)?;
    let m = Manager::open()?;
    check!(m.lease(b, 0, 0) == Err(Errno::EINVAL), "VM id 0 is refused");
    check!(
        m.lease(b, 5, 0x80) == Err(Errno::EINVAL),
        "unknown lease flags are refused"
    );
    check!(
        m.lease(0x0fff_ffff, 5, 0) == Err(Errno::ENODEV),
        "an unknown VF is ENODEV"
    );
    check!(
        m.release(b, 5) == Err(Errno::ENOENT),
        "releasing a free VF is ENOENT"
    );
    check!(
        m.sample(b, 1) == Err(Errno::ENOENT),
        "samples for a VF nobody holds are refused"
    );
    let got = m.lease(b, 5, 0).context("lease")?;
    check!(got == b, "lease {vf} for VM 5");
    let v = vf_of(&m, b)?;
    check!(
        name(&v.driver) == "vfio-pci" && v.netdev[0] == 0,
        "leased VF is on vfio-pci without a netdev (driver {:?})",
        name(&v.driver)
    );
    check!(
        v.flags & vds_vf::ASSIGNED != 0,
        "leased VF is marked assigned"
    );
    check!(
        m.lease(VDS_ANY, 5, 0) == Err(Errno::EEXIST),
        "a VM holds one VF at most"
    );
    let other = Manager::open()?;
    check!(
        other.lease(b, 6, 0) == Err(Errno::EBUSY),
        "another file cannot lease it (EBUSY)"
    );
    check!(
        other.release(b, 5) == Err(Errno::EPERM),
        "another file cannot release it (EPERM)"
    );
    check!(
        other.sample(b, 1) == Err(Errno::EPERM),
        "another file cannot push its samples"
    );
    for i in 0..5u64 {
        m.sample(b, i * 1000)?;
        std::thread::sleep(Duration::from_millis(60));
    }
    let v = vf_of(&m, b)?;
    check!(
        v.flags & vds_vf::PUSHED != 0 && v.rx_bytes == 4000,
        "pushed samples are the VF's counters while passed through"
    );
    m.release(b, 5).context("release")?;
    let again = m.release(b, 5);
    check!(
        again == Err(Errno::EBUSY) || again == Err(Errno::ENOENT),
        "a second release fails ({again:?})"
    );
    let v = wait_vf(&m, b, Duration::from_secs(10), |v| {
        v.phase == vds_phase::HOST
    })?;
    check!(
        name(&v.driver) != "vfio-pci" && v.flags & vds_vf::ASSIGNED == 0,
        "released VF is back on {} and unmarked",
        name(&v.driver)
    );
    // The events of all that, in order, on a second file.
    let mut kinds = vec![];
    let mut returned_err = None;
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end && !kinds.contains(&vds_event::RETURNED) {
        if other.poll_readable(Duration::from_millis(200))? {
            for e in other.read_events()?.iter().filter(|e| e.bdf == b) {
                kinds.push(e.kind);
                if e.kind == vds_event::RETURNED {
                    returned_err = Some(e.err);
                }
            }
        }
    }
    check!(
        kinds == [vds_event::RELEASED, vds_event::RETURNED],
        "the other file saw released, returned ({kinds:?})"
    );
    check!(
        returned_err == Some(0),
        "the move back reported no error ({returned_err:?})"
    );
    let nb = Manager::open_nonblocking()?;
    check!(
        nb.read_events() == Err(Errno::EAGAIN),
        "a non-blocking read with no events is EAGAIN"
    );
    drop((m, other, nb));
    release_checks(b)?;
    lease_efault(b)?;
    read_fault(b)?;
    Ok(())
}

/// RELEASE refuses flags and a VM id other than the lease's; every ioctl with flags refuses
/// unknown bits. Leaves the VF free and back on the host.
fn release_checks(b: u32) -> Result<()> {
    let m = Manager::open()?;
    m.lease(b, 5, 0).context("lease")?;
    let r = |flags, vm_id| {
        m.release_lease(&VdsLease {
            bdf: b,
            flags,
            vm_id,
        })
    };
    check!(
        r(0x80, 5) == Err(Errno::EINVAL),
        "a release with unknown flag bits is EINVAL"
    );
    check!(
        r(VDS_LEASE_KEEP_HOST, 5) == Err(Errno::EINVAL),
        "a release with a lease flag is EINVAL"
    );
    check!(
        r(0, 0) == Err(Errno::EINVAL),
        "a release for VM 0 is EINVAL"
    );
    check!(
        r(0, 6) == Err(Errno::ENOENT),
        "a release naming the wrong VM is ENOENT"
    );
    check!(
        vf_of(&m, b)?.vm_id == 5,
        "after the refused releases VM 5 still holds {}",
        bdf_name(b)
    );
    unknown_flags(&m, b)?;
    check!(
        m.release(b, 5).is_ok(),
        "the release naming the lease's VM succeeds"
    );
    drop(m);
    wait_vf(&Manager::open()?, b, Duration::from_secs(10), |v| {
        v.phase == vds_phase::HOST
    })?;
    Ok(())
}

/// Raw `ioctl(fd, cmd, arg)`: the errno, or `Ok(())`.
fn raw_ioctl(m: &Manager, cmd: u32, arg: *mut u8) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: the callers pass `arg` pointing at a struct of the size `cmd` encodes, or at memory
    // the kernel is expected to refuse (a fault is an errno, not undefined behaviour here).
    Errno::result(unsafe { nix::libc::ioctl(m.file().as_raw_fd(), cmd as _, arg) }).map(drop)
}

/// Every ioctl with a flags field refuses unknown bits (EINVAL), the VF being leased by `m`.
fn unknown_flags(m: &Manager, b: u32) -> Result<()> {
    let bad = 1u32 << 31;
    let mut s = VdsSample {
        bdf: b,
        flags: bad,
        bytes: 0,
    };
    check!(
        raw_ioctl(m, VDS_IOC_SAMPLE, (&raw mut s).cast()) == Err(Errno::EINVAL),
        "SAMPLE: unknown flags are EINVAL"
    );
    let mut p = VdsPolicy {
        flags: bad,
        ..m.policy()?
    };
    check!(
        raw_ioctl(m, VDS_IOC_POLICY_SET, (&raw mut p).cast()) == Err(Errno::EINVAL),
        "POLICY_SET: unknown flags are EINVAL"
    );
    let mut w = VdsWait {
        vm_id: 99,
        flags: bad,
        reserved: 0,
    };
    check!(
        raw_ioctl(m, VDS_IOC_WAIT, (&raw mut w).cast()) == Err(Errno::EINVAL),
        "WAIT: unknown flags are EINVAL"
    );
    let mut sw = VdsSwap {
        bdf: b,
        flags: bad,
        from_vm: 5,
        to_vm: 99,
    };
    check!(
        raw_ioctl(m, VDS_IOC_SWAP, (&raw mut sw).cast()) == Err(Errno::EINVAL),
        "SWAP: unknown flags are EINVAL"
    );
    let mut r = VdsRate {
        bdf: b,
        flags: bad,
        max_tx_mbps: 0,
        min_tx_mbps: 0,
    };
    check!(
        raw_ioctl(m, VDS_IOC_RATE_SET, (&raw mut r).cast()) == Err(Errno::EINVAL),
        "RATE_SET: unknown flags are EINVAL"
    );
    let mut r = VdsRate {
        bdf: b,
        flags: bad,
        max_tx_mbps: 0,
        min_tx_mbps: 0,
    };
    check!(
        raw_ioctl(m, VDS_IOC_RATE_GET, (&raw mut r).cast()) == Err(Errno::EINVAL),
        "RATE_GET: unknown flags are EINVAL"
    );
    let mut l = VdsLease {
        bdf: VDS_ANY,
        flags: bad,
        vm_id: 98,
    };
    check!(
        raw_ioctl(m, VDS_IOC_LEASE, (&raw mut l).cast()) == Err(Errno::EINVAL),
        "LEASE: unknown flags are EINVAL"
    );
    Ok(())
}

/// `len` bytes of fresh anonymous memory, the last `none` bytes of it inaccessible.
fn mapping(len: usize, none: usize) -> Result<*mut u8> {
    use nix::libc;
    // SAFETY: a fresh private anonymous mapping; nothing else refers to it. Never unmapped (the
    // test process exits soon).
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        bail!("mmap: {}", Errno::last());
    }
    if none > 0 {
        // SAFETY: the tail of the mapping made above.
        Errno::result(unsafe {
            libc::mprotect(p.cast::<u8>().add(len - none).cast(), none, libc::PROT_NONE)
        })?;
    }
    Ok(p.cast())
}

/// A lease whose result cannot be written back (the argument in a read-only page) fails with
/// EFAULT and is undone: the VF is not leased, and another file leases it.
fn lease_efault(b: u32) -> Result<()> {
    use nix::libc;
    const PAGE: usize = 4096;
    let m = Manager::open()?;
    let ro = mapping(PAGE, 0)?;
    // SAFETY: `ro` is a fresh page we own; `VdsLease` fits and `mmap` aligns to a page.
    unsafe {
        ro.cast::<VdsLease>().write(VdsLease {
            bdf: b,
            flags: 0,
            vm_id: 7,
        })
    };
    // SAFETY: our own page.
    Errno::result(unsafe { libc::mprotect(ro.cast(), PAGE, libc::PROT_READ) })?;
    check!(
        raw_ioctl(&m, VDS_IOC_LEASE, ro) == Err(Errno::EFAULT),
        "a lease whose result lands in a read-only page is EFAULT"
    );
    let v = vf_of(&m, b)?;
    let undone = v.vm_id == 0 && v.phase != vds_phase::LEASED;
    // Closed before the check: a lease left behind ends with the file, for the next checks.
    drop(m);
    check!(
        undone,
        "and is undone: {} not leased (vm {} phase {})",
        bdf_name(b),
        v.vm_id,
        v.phase
    );
    let other = Manager::open()?;
    wait_vf(&other, b, Duration::from_secs(10), |v| {
        v.phase == vds_phase::HOST
    })?;
    check!(
        other.lease(b, 8, 0) == Ok(b),
        "another file leases {} afterwards",
        bdf_name(b)
    );
    other.release(b, 8).context("release")?;
    wait_vf(&other, b, Duration::from_secs(10), |v| {
        v.phase == vds_phase::HOST
    })?;
    Ok(())
}

/// Events survive reads into buffers that fault: a read that faults at once is EFAULT and
/// consumes nothing; a read whose second record faults returns the first only; the next read
/// starts with the record that faulted.
fn read_fault(b: u32) -> Result<()> {
    use nix::libc;
    use std::os::fd::AsRawFd;
    const PAGE: usize = 4096;
    let nb = Manager::open_nonblocking()?;
    let m = Manager::open()?;
    m.lease(b, 7, 0).context("lease")?;
    m.release(b, 7).context("release")?;
    wait_vf(&m, b, Duration::from_secs(10), |v| {
        v.phase == vds_phase::HOST
    })?;
    // Events on `nb` now: leased 7, released 7, returned.
    let rec = std::mem::size_of::<VdsEvent>();
    let fd = nb.file().as_raw_fd();
    let bad = mapping(PAGE, PAGE)?;
    // SAFETY: reading into memory the kernel must refuse; nothing of ours is there.
    let r = unsafe { libc::read(fd, bad.cast(), 2 * rec) };
    check!(
        r == -1 && Errno::last() == Errno::EFAULT,
        "a read into an inaccessible buffer is EFAULT ({r})"
    );
    // Two records asked for, the second one straddling into an inaccessible page.
    let two = mapping(2 * PAGE, PAGE)?;
    // SAFETY: `rec` bytes before the inaccessible page are ours; the rest faults in the kernel.
    let r = unsafe { libc::read(fd, two.add(PAGE - rec - rec / 2).cast(), 2 * rec) };
    check!(
        r == rec as isize,
        "a read whose second record faults returns the first one only ({r})"
    );
    // SAFETY: the kernel wrote `rec` bytes there (checked above); unaligned read of plain data.
    let first =
        unsafe { std::ptr::read_unaligned(two.add(PAGE - rec - rec / 2).cast::<VdsEvent>()) };
    check!(
        first.kind == vds_event::LEASED && first.vm_id == 7,
        "the event survived the faulting read (got {} vm {})",
        event_name(first.kind),
        first.vm_id
    );
    let rest = nb.read_events()?;
    let want = [(vds_event::RELEASED, 7), (vds_event::RETURNED, 0)];
    let got: Vec<(u32, u64)> = rest.iter().map(|e| (e.kind, e.vm_id)).collect();
    check!(
        got == want,
        "the record that faulted and the rest follow in order ({got:?})"
    );
    check!(
        rest.windows(2).all(|w| w[1].seq == w[0].seq + 1)
            && rest.first().map(|e| e.seq) == Some(first.seq + 1),
        "with consecutive sequence numbers"
    );
    Ok(())
}

/// Permissions: listing needs none; lease and policy changes need CAP_NET_ADMIN of the process
/// that opened the file. A root-opened file keeps working after its process drops privileges;
/// a file opened without them is refused.
pub fn unpriv(vf: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let b = bdf(vf)?;
    let opened_as_root = Manager::open()?;
    std::fs::set_permissions(
        vd_sys::sriov::DEVICE,
        std::fs::Permissions::from_mode(0o666),
    )?;
    // SAFETY: single-threaded here; the child only makes syscalls and exits.
    let pid = match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            let code = match unpriv_child(b, &opened_as_root) {
                Ok(()) => 0,
                Err(e) => {
                    println!("FAIL: {e:#}");
                    1
                }
            };
            let _ = std::io::stdout().flush();
            std::process::exit(code);
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    let st = nix::sys::wait::waitpid(pid, None)?;
    std::fs::set_permissions(
        vd_sys::sriov::DEVICE,
        std::fs::Permissions::from_mode(0o600),
    )?;
    check!(
        matches!(st, nix::sys::wait::WaitStatus::Exited(_, 0)),
        "unprivileged checks passed ({st:?})"
    );
    wait_vf(&opened_as_root, b, Duration::from_secs(10), |v| {
        v.phase == vds_phase::HOST
    })?;
    Ok(())
}

fn unpriv_child(b: u32, opened_as_root: &Manager) -> Result<()> {
    // SAFETY: plain syscalls (the `user` feature of nix is not enabled in this workspace).
    Errno::result(unsafe { nix::libc::setgid(65534) }).context("setgid")?;
    // SAFETY: as above; dropping root clears the capability sets.
    Errno::result(unsafe { nix::libc::setuid(65534) }).context("setuid")?;
    let m = Manager::open().context("open as nobody")?;
    check!(!m.vfs()?.is_empty(), "nobody can list the VFs");
    check!(
        m.policy().is_ok() && m.candidates().is_ok(),
        "nobody can read the policy and candidates"
    );
    check!(
        m.lease(b, 33, 0) == Err(Errno::EPERM),
        "nobody cannot lease (EPERM)"
    );
    check!(
        m.release(b, 33) == Err(Errno::EPERM),
        "nobody cannot release (EPERM)"
    );
    check!(
        m.set_policy(&m.policy()?) == Err(Errno::EPERM),
        "nobody cannot change the policy"
    );
    check!(
        m.wait_for_vf(33, false) == Err(Errno::EPERM),
        "nobody cannot register a waiter"
    );
    check!(
        m.swap(b, 1, 2, true) == Err(Errno::EPERM),
        "nobody cannot swap"
    );
    check!(
        m.set_rate(b, 10, 0) == Err(Errno::EPERM),
        "nobody cannot set a VF's rate limit"
    );
    check!(m.rate(b).is_ok(), "nobody can read a VF's rate limit");
    check!(
        opened_as_root.lease(b, 34, 0) == Ok(b),
        "a file opened by root still leases after its process dropped privileges"
    );
    check!(opened_as_root.release(b, 34).is_ok(), "and releases");
    Ok(())
}

/// Per-VF transmit rate limits (igb: `ndo_set_vf_rate`, max rate only, the PF link must be up):
/// set, read back, lifted, kept while the VF is leased; the driver's and our own refusals.
pub fn rate(vf: &str) -> Result<()> {
    let b = bdf(vf)?;
    let m = Manager::open()?;
    check!(
        m.version()?.features & VDS_FEAT_RATE != 0,
        "the module advertises VDS_FEAT_RATE"
    );
    let r0 = m.rate(b).context("VDS_IOC_RATE_GET")?;
    check!(
        r0.bdf == b && r0.max_tx_mbps == 0 && r0.min_tx_mbps == 0,
        "{vf} starts without a limit ({r0:?})"
    );
    m.set_rate(b, 100, 0)
        .context("VDS_IOC_RATE_SET 100 Mbit/s (the PF link must be up)")?;
    let r = m.rate(b)?;
    check!(
        r.max_tx_mbps == 100,
        "max_tx_rate 100 Mbit/s set and read back ({} Mbit/s)",
        r.max_tx_mbps
    );
    check!(
        m.set_rate(b, 5, 10) == Err(Errno::EINVAL),
        "a maximum under the minimum is refused (EINVAL)"
    );
    check!(
        m.set_rate(b, 50, 10) == Err(Errno::EINVAL),
        "igb refuses a guaranteed minimum (EINVAL)"
    );
    check!(
        m.set_rate(b, 100_000, 0) == Err(Errno::EINVAL),
        "igb refuses a rate over its link speed (EINVAL)"
    );
    check!(
        m.rate(b)?.max_tx_mbps == 100,
        "refused changes leave the limit as it was"
    );
    check!(
        m.set_rate(0x0fff_ffff, 10, 0) == Err(Errno::ENODEV)
            && m.rate(0x0fff_ffff) == Err(Errno::ENODEV),
        "an unknown VF is ENODEV"
    );
    // A leased (passed-through) VF: the limit is the PF's business, it keeps applying.
    m.lease(b, 77, 0).context("lease")?;
    m.set_rate(b, 250, 0).context("rate of a leased VF")?;
    check!(
        m.rate(b)?.max_tx_mbps == 250,
        "the rate of a leased VF (on vfio-pci) is set and read back"
    );
    m.release(b, 77)?;
    let v = wait_vf(&m, b, Duration::from_secs(10), |v| {
        v.phase == vds_phase::HOST
    })?;
    check!(
        m.rate(b)?.max_tx_mbps == 250,
        "the limit stays with the VF after the lease (back on {})",
        name(&v.driver)
    );
    m.set_rate(b, 0, 0).context("lift the limit")?;
    check!(m.rate(b)?.max_tx_mbps == 0, "rate 0 lifts the limit");
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn sysfs_driver(vf: &str) -> String {
    std::fs::read_link(format!("/sys/bus/pci/devices/{vf}/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// Runs `sh script args...` and times it, failing if the script fails.
fn timed_sh(script: &str, args: &[&str]) -> Result<Duration> {
    let t = Instant::now();
    let st = Command::new("sh")
        .arg(script)
        .args(args)
        .status()
        .context("spawn sh")?;
    let d = t.elapsed();
    anyhow::ensure!(st.success(), "sh {script} {args:?} failed: {st}");
    Ok(d)
}

/// The benchmark: from the decision to the VF usable by its new holder (bound to vfio-pci; bound
/// to igbvf with its netdev back), `repeats` round trips per path, interleaved, medians in ms.
/// Module: `VDS_IOC_LEASE` returns once the VF is on vfio-pci; the way back is `VDS_IOC_RELEASE`
/// until the `RETURNED` event. Shell: `sh SCRIPT VF vfio-pci` and `sh SCRIPT VF ""` (the sysfs
/// writes return once the new driver's probe has run). The cost of starting `sh` itself is
/// measured and shown, since a script pays it on every move too.
pub fn bench(vf: &str, repeats: usize, script: &str) -> Result<()> {
    let b = bdf(vf)?;
    let m = Manager::open()?;
    wait_vf(&m, b, Duration::from_secs(10), |v| {
        v.phase == vds_phase::HOST && v.vm_id == 0
    })?;
    let host_driver = sysfs_driver(vf);
    anyhow::ensure!(
        !host_driver.is_empty() && host_driver != "vfio-pci",
        "{vf} should start on its host driver (on {host_driver:?})"
    );
    let (mut k_to, mut k_back, mut s_to, mut s_back, mut sh0) =
        (vec![], vec![], vec![], vec![], vec![]);
    let noop = "/tmp/vd-noop.sh";
    std::fs::write(noop, ":\n")?;
    for i in 0..repeats {
        // Module path (events of earlier rounds drained first).
        while m.poll_readable(Duration::ZERO)? {
            m.read_events()?;
        }
        let t = Instant::now();
        m.lease(b, 500 + i as u64, 0).context("lease")?;
        k_to.push(ms(t.elapsed()));
        anyhow::ensure!(
            sysfs_driver(vf) == "vfio-pci",
            "after the lease {vf} is on {}",
            sysfs_driver(vf)
        );
        let t = Instant::now();
        m.release(b, 500 + i as u64).context("release")?;
        let mut back = None;
        let end = t + Duration::from_secs(20);
        while back.is_none() && Instant::now() < end {
            if m.poll_readable(Duration::from_millis(100))? {
                back = m
                    .read_events()?
                    .into_iter()
                    .find(|e| e.kind == vds_event::RETURNED && e.bdf == b);
            }
        }
        let e = back.context("no RETURNED event within 20 s")?;
        anyhow::ensure!(e.err == 0, "moving back failed: errno {}", -e.err);
        k_back.push(ms(t.elapsed()));
        anyhow::ensure!(
            sysfs_driver(vf) == host_driver,
            "after the release {vf} is on {}",
            sysfs_driver(vf)
        );
        // Shell path.
        s_to.push(ms(timed_sh(script, &[vf, "vfio-pci"])?));
        anyhow::ensure!(
            sysfs_driver(vf) == "vfio-pci",
            "after the script {vf} is on {}",
            sysfs_driver(vf)
        );
        s_back.push(ms(timed_sh(script, &[vf, ""])?));
        anyhow::ensure!(
            sysfs_driver(vf) == host_driver,
            "after the script back {vf} is on {}",
            sysfs_driver(vf)
        );
        sh0.push(ms(timed_sh(noop, &[])?));
    }
    // The module must not have been confused by moves it did not make.
    let v = vf_of(&m, b)?;
    check!(
        v.phase == vds_phase::HOST && v.vm_id == 0 && v.flags & vds_vf::ASSIGNED == 0,
        "{vf} free and unmarked after {repeats} module and {repeats} script round trips"
    );
    let (kt, kb, st, sb, s0) = (
        median(&mut k_to),
        median(&mut k_back),
        median(&mut s_to),
        median(&mut s_back),
        median(&mut sh0),
    );
    println!("sriov-bench: {repeats} round trips per path, VF {vf} ({host_driver} <-> vfio-pci), medians in ms");
    println!(
        "  {:<32} {:>10} {:>10} {:>10}",
        "path", "to vfio", "to host", "round trip"
    );
    println!(
        "  {:<32} {:>10.2} {:>10.2} {:>10.2}",
        "vd_sriov_mgr (lease/release)",
        kt,
        kb,
        kt + kb
    );
    println!(
        "  {:<32} {:>10.2} {:>10.2} {:>10.2}",
        "shell script (sysfs writes)",
        st,
        sb,
        st + sb
    );
    println!(
        "  {:<32} {:>10.2} {:>10.2} {:>10.2}",
        "  of which starting sh",
        s0,
        s0,
        2.0 * s0
    );
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    println!(
        "  ratio shell / module: to vfio {:.2}, to host {:.2}, round trip {:.2} (without sh start: {:.2})",
        ratio(st, kt),
        ratio(sb, kb),
        ratio(st + sb, kt + kb),
        ratio(st + sb - 2.0 * s0, kt + kb)
    );
    println!(
        "BENCH sriov_move {}",
        serde_json::json!({
            "repeats": repeats,
            "module_ms": { "to_vfio": kt, "to_host": kb },
            "shell_ms": { "to_vfio": st, "to_host": sb, "sh_start": s0 },
            "ratio_round_trip": ratio(st + sb, kt + kb),
        })
    );
    Ok(())
}
