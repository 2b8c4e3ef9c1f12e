//! `vd-itest input-attach`: a stock QEMU process as the VM's vCPU owner. Its vCPU threads
//! (`CPU n/TCG`) are followed by TID (`VDI_IOC_VCPU_ATTACH`), without any help from QEMU:
//! waiting (`-S`) they take events at once; SIGSTOPped, a 10,000-event burst waits in the queue
//! and SIGCONT flushes it in order; QEMU killed with events queued: they are flushed, its threads
//! stop counting and every hook goes (the module's reference count drops to 0).

use super::fixtures::*;
use std::process::{Child, Command, Stdio};

const VCPUS: usize = 2;

/// A stock QEMU, no guest, its vCPUs never started (`-S`): they wait on a condition variable.
/// `debug-threads=on` names its vCPU threads `CPU n/TCG` (what libvirt always passes).
struct Qemu {
    child: Child,
    pid: u32,
}

impl Qemu {
    fn spawn() -> Result<Self> {
        let child = Command::new("qemu-system-x86_64")
            .args([
                "-accel",
                "tcg,thread=multi",
                "-display",
                "none",
                "-nodefaults",
                "-smp",
                &VCPUS.to_string(),
                "-m",
                "64",
                "-S",
                "-name",
                "vd-itest-attach,debug-threads=on",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("start qemu-system-x86_64")?;
        let pid = child.id();
        Ok(Self { child, pid })
    }

    /// State letters of the given threads (`?` for one that is gone).
    fn states(&self, tids: &[u32]) -> String {
        tids.iter()
            .map(|t| {
                std::fs::read_to_string(format!("/proc/{}/task/{t}/stat", self.pid))
                    .ok()
                    .and_then(|s| {
                        s.rsplit_once(')')
                            .and_then(|(_, r)| r.trim_start().chars().next())
                    })
                    .unwrap_or('?')
            })
            .collect()
    }

    /// Waits until every thread of `tids` is in state `st`.
    fn wait_states(&self, tids: &[u32], st: char) -> Result<()> {
        let t = Instant::now();
        loop {
            let s = self.states(tids);
            if s.chars().all(|c| c == st) {
                return Ok(());
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("QEMU vCPU threads {tids:?}: states {s}, want all {st}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn signal(&self, s: Signal) -> Result<()> {
        kill(Pid::from_raw(self.pid as i32), s)?;
        Ok(())
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn res(r: i32) -> Result<(), Errno> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// ATTACH or DETACH with explicit flags (the wrappers always pass 0).
fn raw(dev: &Input, cmd: u32, tid: u32, flags: u32) -> Result<(), Errno> {
    let a = VdiVcpuAttach { tid, flags };
    // SAFETY: `_IOW` of one `VdiVcpuAttach`, which lives across the call.
    res(unsafe { nix::libc::ioctl(dev.file().as_raw_fd(), cmd as _, &a) })
}

fn is(r: Result<(), Errno>, e: Errno) -> bool {
    r == Err(e)
}

/// A child with uid/gid 65534 makes its own VM on an fd opened before it dropped privileges,
/// and attaches `tid` (a root thread). Its errno, or `None` when it succeeded.
fn unprivileged_attach(tid: u32, vm: u32) -> Result<Option<Errno>> {
    let dev = Input::open()?;
    // SAFETY: the child only makes system calls and exits with `_exit`.
    match unsafe { fork() }? {
        ForkResult::Child => {
            // SAFETY: plain system calls.
            let code = unsafe {
                if nix::libc::setgroups(0, std::ptr::null()) != 0
                    || nix::libc::setresgid(65534, 65534, 65534) != 0
                    || nix::libc::setresuid(65534, 65534, 65534) != 0
                {
                    254
                } else if dev.vm_create(vm, 64, None).is_err() {
                    253
                } else {
                    match dev.vcpu_attach(tid) {
                        Ok(()) => 0,
                        Err(e) => (e as i32).clamp(1, 252),
                    }
                }
            };
            // SAFETY: leaving the child without running destructors.
            unsafe { nix::libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None)? {
            nix::sys::wait::WaitStatus::Exited(_, 254) => bail!("dropping privileges failed"),
            nix::sys::wait::WaitStatus::Exited(_, 253) => {
                bail!("VDI_IOC_VM_CREATE as uid 65534 failed")
            }
            nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(None),
            nix::sys::wait::WaitStatus::Exited(_, c) => Ok(Some(Errno::from_raw(c))),
            s => bail!("unprivileged child: {s:?}"),
        },
    }
}

fn refcnt() -> Option<u64> {
    std::fs::read_to_string("/sys/module/vd_input_irq/refcnt")
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub fn attach() -> Result<()> {
    let vm = 3000 + std::process::id() % 1000;
    let me = nix::unistd::gettid().as_raw() as u32;
    {
        let d = Input::open()?;
        check!(
            is(d.vcpu_attach(me), Errno::ENOENT),
            "ATTACH without VM_CREATE: ENOENT ({})",
            errno_of(d.vcpu_attach(me))
        );
        check!(
            is(d.vcpu_detach(me), Errno::ENOENT),
            "DETACH without VM_CREATE: ENOENT ({})",
            errno_of(d.vcpu_detach(me))
        );
    }
    {
        // A thread that registered itself on this file is followed already.
        let b = Sink::new(vm + 1000, 64)?;
        b.dev.vcpu_register().context("VDI_IOC_VCPU_REGISTER")?;
        check!(
            is(b.dev.vcpu_attach(me), Errno::EEXIST),
            "ATTACH of a thread that did VCPU_REGISTER on this file: EEXIST ({})",
            errno_of(b.dev.vcpu_attach(me))
        );
        b.dev.vcpu_unregister().context("VDI_IOC_VCPU_UNREGISTER")?;
    }

    let adm = Input::open()?;
    let kb = kbd("attach")?;
    let route = Route::add(&adm, vdi_match::NAME, true, &kb.name)?;
    let mut a = Sink::new(vm, 4096)?;
    adm.focus(vm)?;

    let q = Qemu::spawn()?;
    let t = Instant::now();
    let tids = loop {
        let v: Vec<u32> = vd_sys::qemu::vcpu_threads(q.pid)
            .with_context(|| format!("QEMU {} is gone", q.pid))?
            .iter()
            .map(|t| t.tid)
            .collect();
        if v.len() == VCPUS {
            break v;
        }
        if t.elapsed() > Duration::from_secs(20) {
            bail!("QEMU {}: vCPU threads {v:?}, want {VCPUS}", q.pid);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    println!("info: QEMU {} vCPU threads {tids:?}", q.pid);
    for &t in &tids {
        a.dev
            .vcpu_attach(t)
            .with_context(|| format!("VDI_IOC_VCPU_ATTACH {t}"))?;
    }
    let (s, ok) = a.stats_until(Duration::from_secs(10), |s| s.vcpus == VCPUS as u32)?;
    check!(
        ok,
        "ATTACH of QEMU's {VCPUS} vCPU threads: they hooked themselves (vcpus {})",
        s.vcpus
    );

    // Errnos.
    check!(
        is(a.dev.vcpu_attach(tids[0]), Errno::EEXIST),
        "second ATTACH of the same thread: EEXIST ({})",
        errno_of(a.dev.vcpu_attach(tids[0]))
    );
    check!(
        is(raw(&a.dev, VDI_IOC_VCPU_ATTACH, tids[0], 1), Errno::EINVAL),
        "ATTACH with flags 1: EINVAL ({})",
        errno_of(raw(&a.dev, VDI_IOC_VCPU_ATTACH, tids[0], 1))
    );
    check!(
        is(
            raw(&a.dev, VDI_IOC_VCPU_ATTACH, me, 0x8000_0000),
            Errno::EINVAL
        ),
        "ATTACH with flags 0x80000000: EINVAL ({})",
        errno_of(raw(&a.dev, VDI_IOC_VCPU_ATTACH, me, 0x8000_0000))
    );
    check!(
        is(a.dev.vcpu_attach(2), Errno::EINVAL),
        "ATTACH of kthreadd (tid 2, a kernel thread): EINVAL ({})",
        errno_of(a.dev.vcpu_attach(2))
    );
    let dead = {
        let h = std::thread::spawn(|| nix::unistd::gettid().as_raw() as u32);
        h.join().map_err(|_| anyhow!("thread panicked"))?
    };
    // A joined thread's tid is free (pids are not reused this soon on an idle test VM; if it
    // were, the answer would not be ESRCH and the check names what it got).
    check!(
        is(a.dev.vcpu_attach(dead), Errno::ESRCH),
        "ATTACH of an exited thread ({dead}): ESRCH ({})",
        errno_of(a.dev.vcpu_attach(dead))
    );
    check!(
        is(a.dev.vcpu_attach(0x3fff_fff0), Errno::ESRCH),
        "ATTACH of a tid that never existed: ESRCH ({})",
        errno_of(a.dev.vcpu_attach(0x3fff_fff0))
    );
    check!(
        is(a.dev.vcpu_detach(me), Errno::ENOENT),
        "DETACH of a thread that is not followed: ENOENT ({})",
        errno_of(a.dev.vcpu_detach(me))
    );
    check!(
        is(raw(&a.dev, VDI_IOC_VCPU_DETACH, tids[0], 1), Errno::EINVAL),
        "DETACH with flags 1: EINVAL ({})",
        errno_of(raw(&a.dev, VDI_IOC_VCPU_DETACH, tids[0], 1))
    );
    // SAFETY: plain system call.
    if unsafe { nix::libc::geteuid() } == 0 {
        let e = unprivileged_attach(tids[0], vm + 2000)?;
        check!(
            e == Some(Errno::EPERM),
            "uid 65534 attaching root's QEMU vCPU thread: EPERM ({})",
            e.map_or("succeeded".to_owned(), |e| e.to_string())
        );
    } else {
        println!("info: not root: the EPERM check needs a root-owned QEMU");
    }
    check!(
        a.stats()?.vcpus == VCPUS as u32,
        "the refused calls changed nothing (vcpus {VCPUS})"
    );

    // Waiting (halted by choice): every frame is in the ring when write() returns.
    q.wait_states(&tids, 'S')?;
    let s0 = a.stats()?;
    let mut at_once = 0;
    let mut sent = vec![];
    for i in 0..50 {
        let fr = if i % 5 == 0 {
            key_frame(i / 10, (i / 5) % 2 == 0).to_vec()
        } else {
            motion_frame(2, -1)
        };
        kb.emit(&fr)?;
        sent.extend(&fr);
        if a.available()? as usize + a.got.len() == sent.len() {
            at_once += 1;
        }
    }
    let s1 = a.stats()?;
    check!(
        at_once == 50,
        "QEMU waiting (-S): {at_once}/50 frames were in the ring when write() returned"
    );
    check!(
        s1.delivered_immediately - s0.delivered_immediately == sent.len() as u64
            && s1.queued == s0.queued,
        "stats: all {} events delivered immediately (+{}), none queued (+{})",
        sent.len(),
        s1.delivered_immediately - s0.delivered_immediately,
        s1.queued - s0.queued
    );
    a.wait_n(sent.len(), T)?;
    check!(
        triples(&evs_of(&a.take())) == sent,
        "waiting: {} events in order",
        sent.len()
    );

    // SIGSTOP of the whole QEMU process: the burst waits in the queue.
    q.signal(Signal::SIGSTOP)?;
    q.wait_states(&tids, 'T')?;
    let (s, ok) = a.stats_until(Duration::from_secs(5), |s| s.running == 0)?;
    check!(
        ok,
        "SIGSTOP of QEMU: every vCPU thread stopped, the VM is not running (running {})",
        s.running
    );
    let s0 = a.stats()?;
    let b = sched_burst()?;
    emit_chunks(&kb, &b, 600)?;
    check!(
        a.available()? == 0,
        "burst of {} events while QEMU is stopped: nothing in the ring",
        b.len()
    );
    let s1 = a.stats()?;
    check!(
        s1.queued - s0.queued == b.len() as u64 && s1.dropped == s0.dropped,
        "stats: queued +{} (all {}), dropped +{}",
        s1.queued - s0.queued,
        b.len(),
        s1.dropped - s0.dropped
    );
    q.signal(Signal::SIGCONT)?;
    let keys = b.iter().filter(|e| e.0 == EV_KEY).count();
    let flushed = a.wait(T, |g| {
        g.iter().filter(|e| e.ev.ty == EV_KEY).count() >= keys
            && g.last().is_some_and(|e| e.ev.ty == EV_SYN)
    })?;
    check!(
        flushed,
        "SIGCONT: the queue was flushed ({} events)",
        a.got.len()
    );
    let (s2, ok) = a.stats_until(Duration::from_secs(5), |s| s.queue_depth == 0)?;
    check!(ok, "stats: nothing left queued");
    let got = evs_of(&a.got);
    verify_coalesced(&b, &got).map_err(|e| anyhow!("burst after SIGCONT: {e}"))?;
    let want = Summary::of(&as_events(&b));
    println!(
        "ok: all {keys} key events in order, REL sums X {} Y {} exact, every frame whole",
        want.rel[0], want.rel[1]
    );
    check!(
        seq_contiguous(&a.got),
        "sequence numbers contiguous across the flush"
    );
    check!(
        s2.flushed - s1.flushed == got.len() as u64
            && s2.queued - s0.queued - (s2.coalesced - s0.coalesced) == got.len() as u64,
        "stats: flushed +{} = queued - coalesced = events delivered",
        s2.flushed - s1.flushed
    );
    a.take();

    // DETACH: the thread stops counting; it is no longer followed.
    a.dev
        .vcpu_detach(tids[1])
        .with_context(|| format!("VDI_IOC_VCPU_DETACH {}", tids[1]))?;
    let (s, ok) = a.stats_until(Duration::from_secs(5), |s| s.vcpus == VCPUS as u32 - 1)?;
    check!(ok, "DETACH of vCPU thread {}: vcpus {}", tids[1], s.vcpus);
    check!(
        is(a.dev.vcpu_detach(tids[1]), Errno::ENOENT),
        "second DETACH of it: ENOENT ({})",
        errno_of(a.dev.vcpu_detach(tids[1]))
    );

    // QEMU killed while stopped with events queued: they are flushed, in order.
    q.signal(Signal::SIGSTOP)?;
    q.wait_states(&tids, 'T')?;
    a.stats_until(Duration::from_secs(5), |s| s.running == 0)?;
    let last: Vec<Ev> = (0..20)
        .flat_map(|i| {
            if i % 2 == 0 {
                key_frame(i / 4, (i / 2) % 2 == 0).to_vec()
            } else {
                motion_frame(1, 2)
            }
        })
        .collect();
    kb.emit(&last)?;
    let s = a.stats()?;
    check!(
        a.available()? == 0 && s.queue_depth as usize == last.len(),
        "QEMU stopped again: {} events queued, none in the ring",
        s.queue_depth
    );
    drop(q);
    let ok = a.wait_n(last.len(), Duration::from_secs(10))?;
    let got = triples(&evs_of(&a.take()));
    check!(
        ok && got == last,
        "QEMU SIGKILLed: the queued events are delivered in order ({} of {})",
        got.len(),
        last.len()
    );
    let (s, ok) = a.stats_until(Duration::from_secs(10), |s| {
        s.vcpus == 0 && s.queue_depth == 0
    })?;
    check!(
        ok,
        "QEMU's threads are gone from the VM (vcpus {}, queue depth {})",
        s.vcpus,
        s.queue_depth
    );

    drop(a);
    route.remove()?;
    drop(adm);
    let t = Instant::now();
    while refcnt() != Some(0) {
        if t.elapsed() > Duration::from_secs(10) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    check!(
        refcnt() == Some(0),
        "files closed, QEMU gone: vd_input_irq refcnt {:?} (no hook left)",
        refcnt()
    );
    Ok(())
}
