//! Fixtures shared by the input checks: the VM sink, routes, the vCPU stand-in, uinput devices
//! and event helpers. `use super::fixtures::*` also brings the common imports (a prelude).

pub(super) use crate::check;
pub(super) use anyhow::{anyhow, bail, Context, Result};
pub(super) use nix::errno::Errno;
pub(super) use nix::sys::signal::{kill, Signal};
pub(super) use nix::sys::wait::waitpid;
pub(super) use nix::unistd::{fork, ForkResult, Pid};
pub(super) use std::os::fd::{AsRawFd, BorrowedFd};
pub(super) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
pub(super) use std::time::{Duration, Instant};
pub(super) use vd_ring::Geometry;
pub(super) use vd_sys::evtchn::RingMap;
pub(super) use vd_sys::input::{frames, route_spec, EventReader, Input, RingEvent, Summary};
pub(super) use vd_testkit::stats::{median, percentile as pct};
pub(super) use vd_testkit::uinput::*;
pub(super) use vd_uapi::*;
pub(super) use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub(super) const T: Duration = Duration::from_secs(20);

/// `CLOCK_MONOTONIC` in ns (the clock of [`VdiEvent::time_ns`]).
pub fn now_ns() -> u64 {
    let mut ts = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer.
    unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Pins the calling thread to one CPU.
pub(super) fn pin(cpu: usize) {
    let _ = set_affinity(0, cpu..cpu + 1);
}

/// Pins thread `tid` to `cpus`.
pub(super) fn set_affinity(tid: i32, cpus: std::ops::Range<usize>) -> Result<(), Errno> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and sched_setaffinity only touch it.
    let r = unsafe {
        let mut set: nix::libc::cpu_set_t = std::mem::zeroed();
        for c in cpus {
            nix::libc::CPU_SET(c, &mut set);
        }
        nix::libc::sched_setaffinity(tid, size_of::<nix::libc::cpu_set_t>(), &set)
    };
    Errno::result(r).map(drop)
}

pub(super) fn ncpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Waits up to `ms` for `fd` to be readable.
pub(super) fn poll_in(fd: i32, ms: i32) -> Result<bool> {
    // SAFETY: the caller's fd outlives this call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    let t = nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX);
    match nix::poll::poll(&mut fds, t) {
        Ok(n) => Ok(n > 0),
        Err(Errno::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn evs_of(v: &[RingEvent]) -> Vec<VdiEvent> {
    v.iter().map(|e| e.ev).collect()
}

pub(super) fn triples(v: &[VdiEvent]) -> Vec<Ev> {
    v.iter().map(|e| (e.ty, e.code, e.value)).collect()
}

pub(super) fn as_events(v: &[Ev]) -> Vec<VdiEvent> {
    v.iter()
        .map(|&(ty, code, value)| VdiEvent {
            time_ns: 0,
            ty,
            code,
            value,
        })
        .collect()
}

pub(super) fn errno_of<T>(r: Result<T, Errno>) -> String {
    match r {
        Ok(_) => "succeeded".to_owned(),
        Err(e) => format!("{e}"),
    }
}

/// One VM sink: an open `/dev/vd_input` made a VM, its mapped event ring and call eventfd.
pub struct Sink {
    pub dev: Input,
    pub create: VdiVmCreate,
    pub map: RingMap,
    pub rd: EventReader,
    pub call: EventFd,
    /// The doorbell (what a guest's `KVM_IOEVENTFD` write does).
    pub kick: EventFd,
    /// Doorbell rings so far.
    pub kicks: u64,
    /// Everything taken out of the ring so far.
    pub got: Vec<RingEvent>,
    /// The shmem file that holds the ring (`VDI_IOC_VM_CREATE_SHM`), with its size.
    pub shm: Option<(std::os::fd::OwnedFd, u64)>,
}

impl Sink {
    pub fn new(vm_id: u32, entries: u32) -> Result<Self> {
        let (dev, call) = Self::open()?;
        let create = dev
            .vm_create(vm_id, entries, Some(call.as_raw_fd()))
            .with_context(|| format!("VDI_IOC_VM_CREATE vm {vm_id}"))?;
        let map = dev.map_ring(&create).context("mmap the event ring")?;
        Self::with_ring(dev, call, create, map, None)
    }

    /// A sink whose ring lives in a shmem file (`VDI_IOC_VM_CREATE_SHM`), read through the
    /// file's own mapping, as QEMU maps it for the guest.
    pub fn new_shm(vm_id: u32, entries: u32, doorbell: u32) -> Result<Self> {
        use std::os::fd::AsFd;
        let (dev, call) = Self::open()?;
        let (fd, size) = dev
            .vm_create_shm(vm_id, entries, Some(call.as_raw_fd()), doorbell)
            .with_context(|| format!("VDI_IOC_VM_CREATE_SHM vm {vm_id}"))?;
        let map = RingMap::new(fd.as_fd(), 0, size as usize).context("mmap the shmem file")?;
        let create = VdiVmCreate {
            vm_id,
            entries,
            call_fd: call.as_raw_fd(),
            flags: 0,
            mmap_size: size,
        };
        Self::with_ring(dev, call, create, map, Some((fd, size)))
    }

    /// The device and the call eventfd of a new sink.
    fn open() -> Result<(Input, EventFd)> {
        let dev = Input::open().context("open /dev/vd_input: is vd_input_irq loaded?")?;
        Ok((dev, EventFd::new(EFD_NONBLOCK)?))
    }

    /// The sink over its mapped ring: the reader attached, the doorbell bound.
    fn with_ring(
        dev: Input,
        call: EventFd,
        create: VdiVmCreate,
        map: RingMap,
        shm: Option<(std::os::fd::OwnedFd, u64)>,
    ) -> Result<Self> {
        let rd =
            EventReader::attach(&map.mem()).map_err(|e| anyhow!("event ring header: {e:?}"))?;
        let kick = EventFd::new(EFD_NONBLOCK)?;
        dev.bind_kick(Some(kick.as_raw_fd()))
            .context("VDI_IOC_BIND_KICK")?;
        Ok(Self {
            dev,
            create,
            map,
            rd,
            call,
            kick,
            kicks: 0,
            got: vec![],
            shm,
        })
    }
    /// Events in the ring not taken yet.
    pub fn available(&self) -> Result<u32> {
        self.rd
            .available(&self.map.mem())
            .map_err(|e| anyhow!("event ring: {e:?}"))
    }
    /// Takes everything available; returns how many.
    pub fn drain(&mut self) -> Result<usize> {
        let m = self.map.mem();
        let old = self.rd.consumed();
        let n = self
            .rd
            .drain(&m, &mut self.got)
            .map_err(|e| anyhow!("event ring: {e:?}"))? as usize;
        // Freed room while events waited for it: ring the doorbell, as a guest would.
        if n > 0 && self.rd.kick_needed(&m, old) {
            self.kick.write(1)?;
            self.kicks += 1;
        }
        Ok(n)
    }
    /// Takes events until `done(all taken so far)` or `t` passes, sleeping on the call eventfd
    /// in between. Returns whether `done` became true.
    pub fn wait(&mut self, t: Duration, done: impl Fn(&[RingEvent]) -> bool) -> Result<bool> {
        let start = Instant::now();
        loop {
            self.drain()?;
            if done(&self.got) {
                return Ok(true);
            }
            let left = t.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(false);
            }
            let m = self.map.mem();
            if !self.rd.enable_irq(&m)
                && poll_in(self.call.as_raw_fd(), left.as_millis().min(100) as i32)?
            {
                let _ = self.call.read();
            }
        }
    }
    /// Waits until `n` events were taken in total.
    pub fn wait_n(&mut self, n: usize, t: Duration) -> Result<bool> {
        self.wait(t, |g| g.len() >= n)
    }
    /// Own counters.
    pub fn stats(&self) -> Result<VdiStats> {
        self.dev.stats(0).context("VDI_IOC_STATS")
    }
    /// Takes the events collected so far.
    pub fn take(&mut self) -> Vec<RingEvent> {
        std::mem::take(&mut self.got)
    }
    /// Waits until `f(stats)` or `t` passes; returns the last stats and whether it held.
    pub fn stats_until(
        &self,
        t: Duration,
        f: impl Fn(&VdiStats) -> bool,
    ) -> Result<(VdiStats, bool)> {
        let start = Instant::now();
        loop {
            let s = self.stats()?;
            if f(&s) {
                return Ok((s, true));
            }
            if start.elapsed() > t {
                return Ok((s, false));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A route that is removed when dropped (routes are host-wide module state).
pub struct Route<'a> {
    adm: &'a Input,
    pub(super) r: VdiRoute,
}

impl<'a> Route<'a> {
    pub fn add(adm: &'a Input, kind: u32, grab: bool, pattern: &str) -> Result<Self> {
        let r = route_spec(kind, grab, pattern).map_err(|e| anyhow!("route spec: {e}"))?;
        adm.route(&r)
            .with_context(|| format!("VDI_IOC_ROUTE kind {kind} {pattern:?}"))?;
        Ok(Self { adm, r })
    }
    pub fn remove(self) -> Result<()> {
        let r = self.r;
        let adm = self.adm;
        std::mem::forget(self);
        adm.unroute(&r).context("VDI_IOC_UNROUTE")
    }
}

impl Drop for Route<'_> {
    fn drop(&mut self) {
        let _ = self.adm.unroute(&self.r);
    }
}

/// A child process registered as a vCPU thread of a sink's VM. It busy-loops (always runnable,
/// so it is on a CPU unless stopped or preempted) until killed; it dies with this process.
pub struct VcpuChild {
    pub pid: Pid,
    alive: bool,
    /// Write end of the pipe a [`Self::spawn_halted`] child sleeps on.
    go: Option<std::os::fd::OwnedFd>,
}

impl VcpuChild {
    pub fn spawn(dev: &Input, cpu: Option<usize>) -> Result<Self> {
        Self::fork_vcpu(dev, cpu, None, false)
    }
    /// Like [`Self::spawn`], but the child spins for `run`, unregisters, and exits with 0 (or
    /// the errno of VCPU_UNREGISTER).
    pub fn spawn_timed(dev: &Input, cpu: Option<usize>, run: Duration) -> Result<Self> {
        Self::fork_vcpu(dev, cpu, Some(run), false)
    }
    /// Like [`Self::spawn`], but the child first sleeps in `read` of a pipe (a vCPU halted in
    /// the guest, waiting for an interrupt: a state the host scheduler cannot preempt) until
    /// [`Self::wake`], and spins from then on.
    pub fn spawn_halted(dev: &Input, cpu: Option<usize>) -> Result<Self> {
        Self::fork_vcpu(dev, cpu, None, true)
    }
    /// Ends the sleep of a [`Self::spawn_halted`] child: it spins from now on.
    pub fn wake(&mut self) -> Result<()> {
        if let Some(go) = self.go.take() {
            nix::unistd::write(&go, b"g")?;
        }
        Ok(())
    }
    /// A child that registers as a vCPU thread and spins: forever, or for `run` and then
    /// unregisters and exits; with `halted`, it sleeps until told to go first.
    pub(super) fn fork_vcpu(
        dev: &Input,
        cpu: Option<usize>,
        run: Option<Duration>,
        halted: bool,
    ) -> Result<Self> {
        let (gr, gw) = nix::unistd::pipe()?;
        let (r, w) = nix::unistd::pipe()?;
        // SAFETY: the child only makes system calls (prctl, sched_setaffinity, ioctl, write,
        // clock_gettime) and spins; it never returns into Rust code that could touch other
        // threads' state, and leaves with `_exit`.
        match unsafe { fork() }? {
            ForkResult::Child => {
                // SAFETY: plain system calls.
                unsafe {
                    nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
                }
                if let Some(c) = cpu {
                    pin(c);
                }
                let st: u8 = match dev.vcpu_register() {
                    Ok(()) => 0,
                    Err(e) => (e as i32).clamp(1, 255) as u8,
                };
                let _ = nix::unistd::write(&w, &[st]);
                if st != 0 {
                    // SAFETY: leaving the child without running destructors.
                    unsafe { nix::libc::_exit(1) };
                }
                if halted {
                    drop(gw);
                    let mut b = [0u8; 1];
                    while let Err(Errno::EINTR) = nix::unistd::read(gr.as_raw_fd(), &mut b) {}
                }
                let Some(run) = run else {
                    let mut x: u64 = 0;
                    loop {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                };
                let t = Instant::now();
                while t.elapsed() < run {
                    std::hint::spin_loop();
                }
                let code = match dev.vcpu_unregister() {
                    Ok(()) => 0,
                    Err(e) => e as i32,
                };
                // SAFETY: leaving the child without running destructors.
                unsafe { nix::libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(w);
                drop(gr);
                let mut b = [0u8; 1];
                let n = nix::unistd::read(r.as_raw_fd(), &mut b)?;
                let me = Self {
                    pid: child,
                    alive: true,
                    go: Some(gw),
                };
                if n != 1 {
                    bail!("vCPU child died before registering");
                }
                if b[0] != 0 {
                    bail!(
                        "VDI_IOC_VCPU_REGISTER in the vCPU child: {}",
                        Errno::from_raw(i32::from(b[0]))
                    );
                }
                Ok(me)
            }
        }
    }
    /// Reaps a child that exits by itself; its exit code.
    pub fn wait_exit(&mut self) -> Result<i32> {
        self.alive = false;
        match waitpid(self.pid, None)? {
            nix::sys::wait::WaitStatus::Exited(_, c) => Ok(c),
            s => bail!("vCPU child: {s:?}"),
        }
    }
    /// Process state letter from `/proc/<pid>/stat`.
    pub fn state(&self) -> char {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        s.rsplit_once(')')
            .and_then(|(_, r)| r.trim_start().chars().next())
            .unwrap_or('?')
    }
    /// SIGSTOP, and wait until it is stopped.
    pub fn stop(&self) -> Result<()> {
        kill(self.pid, Signal::SIGSTOP)?;
        let start = Instant::now();
        while self.state() != 'T' {
            if start.elapsed() > Duration::from_secs(5) {
                bail!(
                    "vCPU child {} not stopped after 5 s (state {})",
                    self.pid,
                    self.state()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
    pub fn cont(&self) -> Result<()> {
        kill(self.pid, Signal::SIGCONT)?;
        Ok(())
    }
    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Result<()> {
        if self.alive {
            self.alive = false;
            kill(self.pid, Signal::SIGKILL)?;
            waitpid(self.pid, None)?;
        }
        Ok(())
    }
}

impl Drop for VcpuChild {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A keyboard+mouse uinput device with a name unique to this test run.
pub(super) fn kbd(what: &str) -> Result<Uinput> {
    let pid = std::process::id();
    Uinput::new(
        &format!("vd-itest {what} {pid}"),
        &format!("vd-itest/{what}{pid}/input0"),
        Kind::KeyboardMouse,
    )
}

/// The 10,000-event burst of the scheduling tests: 140 key frames (70 press/release pairs)
/// between 3,240 motion frames. Fully coalesced it needs 140 * 2 + 140 * 3 = 700 slots, so it
/// fits the 1024-event queue without a SYN_DROPPED.
pub fn sched_burst() -> Result<Vec<Ev>> {
    burst(10_000, 140)
}

/// Emits `evs` in writes of about `chunk` events.
pub(super) fn emit_chunks(dev: &Uinput, evs: &[Ev], chunk: usize) -> Result<()> {
    for c in evs.chunks(chunk) {
        dev.emit(c)?;
    }
    Ok(())
}

/// What a stream of delivered events must satisfy against what was sent, when motion may have
/// been coalesced: key events equal and in order, relative sums equal, no SYN_DROPPED, every
/// frame closed, every frame either a key frame or motion only.
pub fn verify_coalesced(sent: &[Ev], got: &[VdiEvent]) -> std::result::Result<(), String> {
    let want = Summary::of(&as_events(sent));
    let have = Summary::of(got);
    if have.dropped != 0 {
        return Err(format!("{} SYN_DROPPED", have.dropped));
    }
    if have.keys != want.keys {
        let first = have
            .keys
            .iter()
            .zip(&want.keys)
            .position(|(a, b)| a != b)
            .unwrap_or(have.keys.len().min(want.keys.len()));
        return Err(format!(
            "key events differ: {} delivered, {} sent, first difference at #{first}",
            have.keys.len(),
            want.keys.len()
        ));
    }
    if have.rel != want.rel {
        return Err(format!(
            "REL sums differ: delivered X {} Y {}, sent X {} Y {}",
            have.rel[0], have.rel[1], want.rel[0], want.rel[1]
        ));
    }
    let (fr, open) = frames(got);
    if !open.is_empty() {
        return Err(format!("{} events after the last SYN_REPORT", open.len()));
    }
    for (i, f) in fr.iter().enumerate() {
        let body = &f[..f.len() - 1];
        let keys = body.iter().filter(|e| e.ty == EV_KEY).count();
        let motion = body
            .iter()
            .filter(|e| e.ty == EV_REL || e.ty == EV_ABS)
            .count();
        if body.is_empty() || (keys > 0 && motion > 0) || keys + motion != body.len() {
            return Err(format!(
                "frame {i} is neither a key frame nor motion only: {:?}",
                triples(f)
            ));
        }
    }
    Ok(())
}

/// Sequence numbers of the ring events increase by one.
pub(super) fn seq_contiguous(v: &[RingEvent]) -> bool {
    v.windows(2).all(|w| w[1].seq == w[0].seq.wrapping_add(1))
}

/// The privilege model (`rust/vd/cred.rs`), from a child that dropped to nobody: `adm` (opened
/// by root) still routes; a file the child opens itself gets the returned errno for ROUTE.
/// `None` when this process is not root.
pub(super) fn unprivileged_route_errno(adm: &Input) -> Result<Option<Errno>> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: plain system call.
    if unsafe { nix::libc::geteuid() } != 0 {
        return Ok(None);
    }
    let r = route_spec(vdi_match::NAME, false, "vd-itest nobody")?;
    // The child opens the device itself, as nobody: for those few lines anyone may.
    std::fs::set_permissions(
        vd_sys::input::DEVICE,
        std::fs::Permissions::from_mode(0o666),
    )?;
    // SAFETY: the child only makes system calls and exits with `_exit`.
    let forked = unsafe { fork() };
    let restore = || {
        std::fs::set_permissions(
            vd_sys::input::DEVICE,
            std::fs::Permissions::from_mode(0o600),
        )
    };
    let forked = match forked {
        Ok(f) => f,
        Err(e) => {
            restore()?;
            return Err(e.into());
        }
    };
    match forked {
        ForkResult::Child => {
            // SAFETY: plain system calls.
            let dropped = unsafe {
                nix::libc::setresgid(65534, 65534, 65534) == 0
                    && nix::libc::setresuid(65534, 65534, 65534) == 0
            };
            let code = if !dropped {
                254
            } else {
                // The file root opened still routes (the opener's capability counts)...
                let inherited = adm.route(&r).and_then(|()| adm.unroute(&r));
                match (inherited, Input::open()) {
                    (Err(_), _) => 252,
                    (Ok(()), Err(_)) => 253,
                    // ...the one nobody opens does not.
                    (Ok(()), Ok(own)) => match own.route(&r) {
                        Ok(()) => {
                            let _ = own.unroute(&r);
                            0
                        }
                        Err(e) => (e as i32).clamp(1, 251),
                    },
                }
            };
            // SAFETY: leaving the child without running destructors.
            unsafe { nix::libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            let st = waitpid(child, None);
            restore()?;
            let st = st?;
            match st {
                nix::sys::wait::WaitStatus::Exited(_, 254) => bail!("dropping to nobody failed"),
                nix::sys::wait::WaitStatus::Exited(_, 253) => {
                    bail!("nobody could not open the device")
                }
                nix::sys::wait::WaitStatus::Exited(_, 252) => {
                    bail!("a file opened by root no longer routes once its process dropped privileges")
                }
                nix::sys::wait::WaitStatus::Exited(_, c) => Ok(Some(Errno::from_raw(c))),
                s => bail!("unprivileged child: {s:?}"),
            }
        }
    }
}

/// The state letter of every vCPU thread (`CPU n/...`) of process `pid`.
pub(super) fn vcpu_states(pid: u32) -> Result<Vec<char>> {
    let threads = vd_sys::qemu::vcpu_threads(pid).with_context(|| format!("process {pid}"))?;
    Ok(threads
        .iter()
        .map(|t| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{}/stat", t.tid))
                .ok()
                .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
                .unwrap_or('?')
        })
        .collect())
}

/// SIGSTOPs process `pid` (a QEMU) and waits until every one of its vCPU threads is stopped;
/// returns how many there are.
pub(super) fn stop_vcpus(pid: u32) -> Result<usize> {
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP)?;
    let t = Instant::now();
    loop {
        let st = vcpu_states(pid)?;
        if !st.is_empty() && st.iter().all(|&c| c == 'T' || c == 't') {
            return Ok(st.len());
        }
        if t.elapsed() > T {
            bail!("the vCPU threads of {pid} never all stopped: {st:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the module counts VM `vm` as not running (every followed vCPU thread switched
/// out stopped or preempted): a thread shows `T` in /proc just before its last context switch.
pub(super) fn wait_not_running(adm: &Input, vm: u32) -> Result<()> {
    let t = Instant::now();
    loop {
        let s = adm.stats(vm).context("VDI_IOC_STATS")?;
        if s.running == 0 {
            return Ok(());
        }
        if t.elapsed() > T {
            bail!("VM {vm} still counts as running {T:?} after its vCPU threads stopped");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vd_sys::input::SYN_DROPPED;

    fn ev(ty: u16, code: u16, value: i32) -> VdiEvent {
        VdiEvent {
            time_ns: 0,
            ty,
            code,
            value,
        }
    }

    #[test]
    fn coalesced_stream_accepted_when_sums_and_keys_match() {
        let sent = [
            key_frame(0, true).to_vec(),
            motion_frame(1, -1),
            motion_frame(2, -2),
            key_frame(0, false).to_vec(),
        ]
        .concat();
        let got = [
            ev(EV_KEY, 30, 1),
            ev(EV_SYN, 0, 0),
            ev(EV_REL, 0, 3),
            ev(EV_REL, 1, -3),
            ev(EV_SYN, 0, 0),
            ev(EV_KEY, 30, 0),
            ev(EV_SYN, 0, 0),
        ];
        assert_eq!(verify_coalesced(&sent, &got), Ok(()));
    }

    #[test]
    fn coalesced_stream_rejections() {
        let sent = [
            key_frame(0, true).to_vec(),
            motion_frame(1, -1),
            key_frame(0, false).to_vec(),
        ]
        .concat();
        let lost_key = [
            ev(EV_KEY, 30, 1),
            ev(EV_SYN, 0, 0),
            ev(EV_REL, 0, 1),
            ev(EV_REL, 1, -1),
            ev(EV_SYN, 0, 0),
        ];
        assert!(verify_coalesced(&sent, &lost_key)
            .unwrap_err()
            .contains("key events differ"));
        let bad_sum = [
            ev(EV_KEY, 30, 1),
            ev(EV_SYN, 0, 0),
            ev(EV_REL, 0, 2),
            ev(EV_REL, 1, -1),
            ev(EV_SYN, 0, 0),
            ev(EV_KEY, 30, 0),
            ev(EV_SYN, 0, 0),
        ];
        assert!(verify_coalesced(&sent, &bad_sum)
            .unwrap_err()
            .contains("REL sums"));
        let mixed = [
            ev(EV_KEY, 30, 1),
            ev(EV_REL, 0, 1),
            ev(EV_REL, 1, -1),
            ev(EV_SYN, 0, 0),
            ev(EV_KEY, 30, 0),
            ev(EV_SYN, 0, 0),
        ];
        assert!(verify_coalesced(&sent, &mixed)
            .unwrap_err()
            .contains("neither"));
        let open = [
            ev(EV_KEY, 30, 1),
            ev(EV_SYN, 0, 0),
            ev(EV_REL, 0, 1),
            ev(EV_REL, 1, -1),
            ev(EV_SYN, 0, 0),
            ev(EV_KEY, 30, 0),
        ];
        assert!(verify_coalesced(&sent, &open)
            .unwrap_err()
            .contains("after the last"));
        let dropped = [ev(EV_SYN, SYN_DROPPED, 0)];
        assert!(verify_coalesced(&sent, &dropped)
            .unwrap_err()
            .contains("SYN_DROPPED"));
    }

    #[test]
    fn the_burst_fits_the_queue_once_coalesced() {
        let b = sched_burst().unwrap();
        let keys = b.iter().filter(|e| e.0 == EV_KEY).count();
        // Each key frame (2) followed by one merged motion frame (3).
        assert!(keys * 5 <= VDI_QUEUE_EVENTS as usize);
    }
}
