//! vd_input_irq checks: uinput devices are the "hardware", this process is the VMM (a VM sink
//! per open file, the event ring read through its own mapping, the call eventfd as the guest's
//! interrupt), and a forked child that registered itself as the VM's vCPU thread is what gets
//! SIGSTOPped (a signal stop affects a whole thread group, so the vCPU "thread" is a process
//! sharing the sink's file).

use crate::check;
use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vd_ring::Geometry;
use vd_sys::evtchn::RingMap;
use vd_sys::input::{frames, route_spec, EventReader, Input, RingEvent, Summary};
use vd_testkit::stats::{median, percentile as pct};
use vd_testkit::uinput::*;
use vd_uapi::*;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const T: Duration = Duration::from_secs(20);

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
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: nix::libc::cpu_set_t = std::mem::zeroed();
        nix::libc::CPU_SET(cpu, &mut set);
        nix::libc::sched_setaffinity(0, size_of::<nix::libc::cpu_set_t>(), &set);
    }
}

fn ncpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Waits up to `ms` for `fd` to be readable.
fn poll_in(fd: i32, ms: i32) -> Result<bool> {
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

fn evs_of(v: &[RingEvent]) -> Vec<VdiEvent> {
    v.iter().map(|e| e.ev).collect()
}

fn triples(v: &[VdiEvent]) -> Vec<Ev> {
    v.iter().map(|e| (e.ty, e.code, e.value)).collect()
}

fn as_events(v: &[Ev]) -> Vec<VdiEvent> {
    v.iter()
        .map(|&(ty, code, value)| VdiEvent {
            time_ns: 0,
            ty,
            code,
            value,
        })
        .collect()
}

fn errno_of<T>(r: Result<T, Errno>) -> String {
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
}

impl Sink {
    pub fn new(vm_id: u32, entries: u32) -> Result<Self> {
        let dev = Input::open().context("open /dev/vd_input: is vd_input_irq loaded?")?;
        let call = EventFd::new(EFD_NONBLOCK)?;
        let create = dev
            .vm_create(vm_id, entries, Some(call.as_raw_fd()))
            .with_context(|| format!("VDI_IOC_VM_CREATE vm {vm_id}"))?;
        let map = dev.map_ring(&create).context("mmap the event ring")?;
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
    r: VdiRoute,
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
    fn fork_vcpu(
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
fn kbd(what: &str) -> Result<Uinput> {
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
fn emit_chunks(dev: &Uinput, evs: &[Ev], chunk: usize) -> Result<()> {
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
fn seq_contiguous(v: &[RingEvent]) -> bool {
    v.windows(2).all(|w| w[1].seq == w[0].seq.wrapping_add(1))
}

fn unprivileged_route_errno(adm: &Input) -> Result<Option<Errno>> {
    // SAFETY: plain system call.
    if unsafe { nix::libc::geteuid() } != 0 {
        return Ok(None);
    }
    let r = route_spec(vdi_match::NAME, false, "vd-itest nobody")?;
    // SAFETY: the child only makes system calls and exits with `_exit`.
    match unsafe { fork() }? {
        ForkResult::Child => {
            // SAFETY: plain system call.
            let code = if unsafe { nix::libc::setresuid(65534, 65534, 65534) } != 0 {
                254
            } else {
                match adm.route(&r) {
                    Ok(()) => {
                        let _ = adm.unroute(&r);
                        0
                    }
                    Err(e) => (e as i32).clamp(1, 253),
                }
            };
            // SAFETY: leaving the child without running destructors.
            unsafe { nix::libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None)? {
            nix::sys::wait::WaitStatus::Exited(_, 254) => bail!("setresuid(nobody) failed"),
            nix::sys::wait::WaitStatus::Exited(_, c) => Ok(Some(Errno::from_raw(c))),
            s => bail!("unprivileged child: {s:?}"),
        },
    }
}

// ---------------------------------------------------------------------------------------------

pub fn basic() -> Result<()> {
    let adm = Input::open().context("open /dev/vd_input: is vd_input_irq loaded?")?;
    let v = adm.version().context("VD_IOC_VERSION")?;
    check!(
        v.driver == VdDriver::Input as u32 && v.abi_version == VD_ABI_VERSION,
        "VD_IOC_VERSION: driver input, ABI {} (features {:#x})",
        v.abi_version,
        v.features
    );
    check!(
        v.features & (VDI_FEAT_ROUTE | VDI_FEAT_SCHED) == VDI_FEAT_ROUTE | VDI_FEAT_SCHED,
        "features: ROUTE and SCHED"
    );

    // Argument checks, before anything exists.
    let f = Input::open()?;
    let base = 1000 + (std::process::id() % 1000) * 10;
    check!(
        f.vm_create(0, 64, None).is_err(),
        "VM_CREATE with vm_id 0 refused ({})",
        errno_of(f.vm_create(0, 64, None))
    );
    for n in [6u32, 4, 0, 8192] {
        check!(
            f.vm_create(base, n, None).err() == Some(Errno::EINVAL),
            "VM_CREATE with {n} entries: EINVAL"
        );
    }
    let st = std::fs::File::open("/proc/self/stat")?;
    check!(
        f.vm_create(base, 64, Some(st.as_raw_fd())).is_err(),
        "call fd that is no eventfd refused ({})",
        errno_of(f.vm_create(base, 64, Some(st.as_raw_fd())))
    );
    check!(
        f.vm_create(base, 64, Some(99_999)).err() == Some(Errno::EBADF),
        "call fd not open: EBADF"
    );
    check!(
        f.vcpu_register().is_err(),
        "VCPU_REGISTER before VM_CREATE refused ({})",
        errno_of(f.vcpu_register())
    );
    check!(
        f.set_running(false).is_err(),
        "SET_RUNNING on a file that is no VM refused ({})",
        errno_of(f.set_running(false))
    );
    check!(
        f.stats(0).is_err(),
        "STATS(0) on a file that is no VM refused ({})",
        errno_of(f.stats(0))
    );
    check!(
        adm.stats(999_999).err() == Some(Errno::ENOENT),
        "STATS of an unknown VM: ENOENT"
    );
    let bad = VdiRoute {
        kind: 99,
        grab: 0,
        pattern: [0; 64],
    };
    check!(
        adm.route(&bad).err() == Some(Errno::EINVAL),
        "ROUTE with an unknown match kind: EINVAL"
    );
    let mut unterminated = route_spec(vdi_match::NAME, false, "x")?;
    unterminated.pattern = [b'x'; 64];
    match adm.route(&unterminated) {
        Err(e) => println!("ok: ROUTE with a pattern that is not NUL-terminated refused ({e})"),
        Ok(()) => {
            println!("info: ROUTE with a 64-byte pattern without NUL was accepted");
            check!(
                adm.unroute(&unterminated).is_ok(),
                "and it can be removed again"
            );
        }
    }
    check!(
        adm.route(&route_spec(vdi_match::KEYBOARD, false, "")?)
            .is_ok()
            && adm
                .unroute(&route_spec(vdi_match::KEYBOARD, false, "")?)
                .is_ok(),
        "ROUTE/UNROUTE every keyboard"
    );
    check!(
        adm.unroute(&route_spec(
            vdi_match::NAME,
            false,
            "vd-itest never routed"
        )?)
        .is_err(),
        "UNROUTE of a route that does not exist refused"
    );
    if let Some(e) = unprivileged_route_errno(&adm)? {
        check!(
            e == Errno::EPERM,
            "ROUTE without CAP_SYS_ADMIN: EPERM (got {e})"
        );
    }

    // The hardware, routed by name and grabbed.
    let kb = kbd("basic")?;
    let find = |name: &str| -> Result<Option<VdiDevice>> {
        Ok(adm
            .devices()?
            .into_iter()
            .find(|d| vd_sys::input::fixed_str(&d.name) == name))
    };
    let d = find(&kb.name)?.ok_or_else(|| {
        let names: Vec<String> = adm
            .devices()
            .unwrap_or_default()
            .iter()
            .map(|d| vd_sys::input::fixed_str(&d.name))
            .collect();
        anyhow!(
            "LIST_DEVICES does not show {:?}; it shows {names:?}",
            kb.name
        )
    })?;
    check!(
        vd_sys::input::fixed_str(&d.phys) == kb.phys && d.routed == 0,
        "LIST_DEVICES shows the uinput device with its phys, not routed"
    );
    let route = Route::add(&adm, vdi_match::NAME, true, &kb.name)?;
    check!(
        adm.route(&route.r).err() == Some(Errno::EEXIST),
        "the same route twice: EEXIST"
    );
    let d = find(&kb.name)?.unwrap_or(d);
    check!(
        d.routed == 1 && d.grabbed == 1,
        "after ROUTE by name with grab: routed and grabbed (routed {}, grabbed {})",
        d.routed,
        d.grabbed
    );

    let vm = base + 1;
    let mut a = Sink::new(vm, 256)?;
    let geo = Geometry::new(256, VDI_ENTRY_SIZE).map_err(|e| anyhow!("{e:?}"))?;
    check!(
        a.create.mmap_size == geo.total_bytes() as u64,
        "VM_CREATE 256 entries: mmap_size {} = ring of 256 x 32",
        a.create.mmap_size
    );
    check!(
        a.dev.vm_create(vm + 50, 64, None).is_err(),
        "a second VM_CREATE on the same file refused ({})",
        errno_of(a.dev.vm_create(vm + 50, 64, None))
    );
    let f2 = Input::open()?;
    check!(
        f2.vm_create(vm, 64, None).err() == Some(Errno::EEXIST),
        "VM_CREATE with a vm_id in use: EEXIST"
    );
    drop(f2);
    // A result that cannot be copied back (the argument is in a read-only page): the VM is not
    // made, its id stays free, and the file can try again.
    {
        let f3 = Input::open()?;
        let id = vm + 60;
        let c = VdiVmCreate {
            vm_id: id,
            entries: 64,
            call_fd: -1,
            flags: 0,
            mmap_size: 0,
        };
        // SAFETY: a fresh anonymous private page, written through the pointer while writable,
        // then made read-only; unmapped below.
        let page = unsafe {
            let p = nix::libc::mmap(
                std::ptr::null_mut(),
                4096,
                nix::libc::PROT_READ | nix::libc::PROT_WRITE,
                nix::libc::MAP_PRIVATE | nix::libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == nix::libc::MAP_FAILED {
                bail!("mmap: {}", Errno::last());
            }
            p.cast::<VdiVmCreate>().write(c);
            nix::libc::mprotect(p, 4096, nix::libc::PROT_READ);
            p
        };
        // SAFETY: readable for a `VdiVmCreate`; not writable, so the kernel cannot write.
        let r = unsafe { f3.vm_create_at(page.cast()) };
        // SAFETY: mapped above, no reference into it remains.
        unsafe { nix::libc::munmap(page, 4096) };
        check!(
            r == Err(Errno::EFAULT),
            "VM_CREATE whose result cannot be copied back: EFAULT ({})",
            errno_of(r)
        );
        check!(
            adm.stats(id).err() == Some(Errno::ENOENT),
            "and the VM does not exist (STATS: {})",
            errno_of(adm.stats(id))
        );
        let f4 = Input::open()?;
        check!(
            f4.vm_create(id, 64, None).is_ok(),
            "its id is free: VM_CREATE of it on another file succeeds"
        );
        drop(f4);
        check!(
            f3.vm_create(id, 64, None).is_ok(),
            "the same file can create a VM again"
        );
        let f5 = Input::open()?;
        let mut bad = VdiVmCreate {
            vm_id: id + 1,
            entries: 64,
            call_fd: -1,
            flags: 1 << 31,
            mmap_size: 0,
        };
        // SAFETY: a valid, writable `VdiVmCreate` we own.
        let r = unsafe { f5.vm_create_at(&mut bad) };
        check!(
            r == Err(Errno::EINVAL),
            "VM_CREATE with an unknown flag bit: EINVAL ({})",
            errno_of(r)
        );
    }
    let s = a.stats()?;
    check!(
        s.vm_id == vm && s.running == 1 && s.vcpus == 0 && s.queue_depth == 0,
        "a VM without vCPU threads counts as running (running {}, vcpus {})",
        s.running,
        s.vcpus
    );
    adm.focus(vm).context("VDI_IOC_FOCUS")?;

    // Frames: keys, buttons and motion, one write each.
    let mut sent: Vec<Ev> = vec![];
    let mut frames_sent: Vec<Vec<Ev>> = vec![];
    for i in 0..20 {
        frames_sent.push(key_frame(i / 2, i % 2 == 0).to_vec());
        frames_sent.push(motion_frame(i as i32 + 1, -(i as i32) - 2));
    }
    frames_sent.push(vec![
        (EV_KEY, BTN_LEFT, 1),
        (EV_REL, REL_X, 5),
        (EV_SYN, SYN_REPORT, 0),
    ]);
    frames_sent.push(vec![
        (EV_KEY, BTN_LEFT, 0),
        (EV_REL, REL_WHEEL, -1),
        (EV_SYN, SYN_REPORT, 0),
    ]);
    let m = a.map.mem();
    a.rd.enable_irq(&m);
    let t0 = now_ns();
    let mut at_once = 0;
    for fr in &frames_sent {
        kb.emit(fr)?;
        sent.extend(fr);
        // No vCPU registered: delivery happens in this thread's write().
        if a.available()? as usize + a.got.len() == sent.len() {
            at_once += 1;
        }
        if a.available()? > 128 {
            a.drain()?;
        }
    }
    let t1 = now_ns();
    a.wait_n(sent.len(), T)?;
    let got = a.take();
    check!(
        at_once == frames_sent.len(),
        "{at_once}/{} frames were in the ring when write() returned",
        frames_sent.len()
    );
    check!(
        triples(&evs_of(&got)) == sent,
        "{} events arrived in order with type/code/value intact ({} received)",
        sent.len(),
        got.len()
    );
    check!(
        seq_contiguous(&got),
        "response ids are a contiguous sequence ({}..={})",
        got.first().map_or(0, |e| e.seq),
        got.last().map_or(0, |e| e.seq)
    );
    check!(
        got.iter().all(|e| e.ev.time_ns >= t0 && e.ev.time_ns <= t1)
            && got.windows(2).all(|w| w[0].ev.time_ns <= w[1].ev.time_ns),
        "time_ns is CLOCK_MONOTONIC of the write, non-decreasing"
    );
    let got_evs = evs_of(&got);
    let (fr, open) = frames(&got_evs);
    check!(
        fr.len() == frames_sent.len() && open.is_empty(),
        "{} frames, each closed by SYN_REPORT",
        fr.len()
    );
    let s = a.stats()?;
    check!(
        s.delivered_immediately == sent.len() as u64
            && s.queued == 0
            && s.flushed == 0
            && s.dropped == 0,
        "stats: delivered_immediately {} = events sent, nothing queued",
        s.delivered_immediately
    );
    check!(
        s.irqs >= 1,
        "stats: {} interrupts (call eventfd signals)",
        s.irqs
    );
    check!(
        a.kicks == 0,
        "no doorbell asked while the ring had room ({} kicks)",
        a.kicks
    );
    let hist: u64 = s.delay_hist.iter().sum();
    check!(
        hist > 0,
        "delay histogram counts deliveries ({:?}, total {hist})",
        s.delay_hist
    );
    let d = find(&kb.name)?.ok_or_else(|| anyhow!("device gone"))?;
    // Between frames a routed device names the VM its next frame goes to: the focus.
    check!(
        d.events >= sent.len() as u64 && d.vm_id == a.create.vm_id,
        "LIST_DEVICES: {} events seen, next frame to the focused VM {}",
        d.events,
        d.vm_id
    );

    // Grabbed: the host's evdev reader sees nothing; ungrabbed it does.
    let node = kb.event_node()?;
    let mut host = Evdev::open(&node, true)?;
    kb.emit(&motion_frame(3, 3))?;
    std::thread::sleep(Duration::from_millis(50));
    check!(
        host.read()?.is_empty(),
        "grabbed: the host's reader of {} sees nothing",
        node.display()
    );
    check!(a.wait_n(3, T)?, "grabbed: the VM got the frame");
    a.take();
    route.remove()?;
    let route = Route::add(&adm, vdi_match::NAME, false, &kb.name)?;
    let d = find(&kb.name)?.ok_or_else(|| anyhow!("device gone"))?;
    check!(
        d.routed == 1 && d.grabbed == 0,
        "re-routed without grab: routed, not grabbed"
    );
    kb.emit(&motion_frame(4, 4))?;
    check!(a.wait_n(3, T)?, "not grabbed: the VM got the frame");
    std::thread::sleep(Duration::from_millis(20));
    let h = host.read()?;
    check!(
        h.iter()
            .any(|&(t, c, v)| t == EV_REL && c == REL_X && v == 4),
        "not grabbed: the host's reader sees it too"
    );
    a.take();

    // Unrouted: the device is the host's again.
    route.remove()?;
    check!(
        find(&kb.name)?.is_some_and(|d| d.routed == 0),
        "UNROUTE: the device is not routed any more"
    );
    kb.emit(&motion_frame(5, 5))?;
    std::thread::sleep(Duration::from_millis(50));
    a.drain()?;
    check!(a.got.is_empty(), "unrouted: the VM gets nothing");
    check!(
        host.read()?
            .iter()
            .any(|&(t, c, v)| t == EV_REL && c == REL_X && v == 5),
        "unrouted: the host gets it"
    );

    // By phys path, by capability.
    let route = Route::add(&adm, vdi_match::PHYS, true, &kb.phys)?;
    kb.emit(&motion_frame(6, 6))?;
    check!(
        a.wait_n(3, T)? && a.take()[0].ev.value == 6,
        "ROUTE by phys {:?}: delivered",
        kb.phys
    );
    route.remove()?;
    let route = Route::add(&adm, vdi_match::KEYBOARD, false, "")?;
    check!(
        find(&kb.name)?.is_some_and(|d| d.routed == 1),
        "ROUTE every keyboard: the uinput keyboard is routed"
    );
    kb.emit(&key_frame(3, true))?;
    kb.emit(&key_frame(3, false))?;
    check!(
        a.wait_n(4, T)?
            && triples(&evs_of(&a.take())) == [key_frame(3, true), key_frame(3, false)].concat(),
        "ROUTE every keyboard: key frames delivered"
    );
    route.remove()?;
    let route = Route::add(&adm, vdi_match::MOUSE, false, "")?;
    check!(
        find(&kb.name)?.is_some_and(|d| d.routed == 1),
        "ROUTE every mouse: the uinput keyboard+mouse is routed"
    );
    route.remove()?;
    let pid = std::process::id();
    let tab = Uinput::new(
        &format!("vd-itest tablet {pid}"),
        &format!("vd-itest/tablet{pid}/input0"),
        Kind::Tablet,
    )?;
    let route = Route::add(&adm, vdi_match::TABLET, true, "")?;
    check!(
        find(&tab.name)?.is_some_and(|d| d.routed == 1)
            && find(&kb.name)?.is_some_and(|d| d.routed == 0),
        "ROUTE every tablet: the uinput tablet is routed, the mouse is not"
    );
    let abs = [
        (EV_KEY, BTN_TOUCH, 1),
        (EV_ABS, ABS_X, 1000),
        (EV_ABS, ABS_Y, 2000),
        (EV_SYN, SYN_REPORT, 0),
    ];
    tab.emit(&abs)?;
    check!(
        a.wait_n(4, T)? && triples(&evs_of(&a.take())) == abs,
        "tablet frame delivered (ABS_X 1000, ABS_Y 2000, BTN_TOUCH)"
    );
    route.remove()?;
    drop(tab);

    // Rebinding the call eventfd.
    let _route = Route::add(&adm, vdi_match::NAME, true, &kb.name)?;
    let call2 = EventFd::new(EFD_NONBLOCK)?;
    a.dev
        .bind(Some(call2.as_raw_fd()))
        .context("VDI_IOC_BIND")?;
    let _ = a.call.read();
    let m = a.map.mem();
    a.rd.enable_irq(&m);
    kb.emit(&motion_frame(7, 7))?;
    check!(
        poll_in(call2.as_raw_fd(), 2000)? && call2.read().is_ok() && a.call.read().is_err(),
        "BIND: the new call eventfd is signalled, the old one not"
    );
    a.wait_n(3, T)?;
    a.take();
    a.dev.bind(None)?;
    let irqs = a.stats()?.irqs;
    a.rd.enable_irq(&m);
    kb.emit(&motion_frame(8, 8))?;
    check!(
        a.wait_n(3, T)? && call2.read().is_err(),
        "BIND -1: events still arrive, no eventfd is signalled (irqs {} -> {})",
        irqs,
        a.stats()?.irqs
    );
    a.take();
    a.dev.bind(Some(a.call.as_raw_fd()))?;

    // Focus on a second VM, then close it while it has the focus.
    let mut b = Sink::new(vm + 1, 64)?;
    adm.focus(vm + 1)?;
    kb.emit(&motion_frame(9, 9))?;
    check!(
        b.wait_n(3, T)?,
        "FOCUS VM {}: it gets the next frame",
        vm + 1
    );
    a.drain()?;
    check!(
        a.got.is_empty(),
        "the previous VM gets nothing after the focus moved"
    );
    drop(b);
    kb.emit(&motion_frame(10, 10))?;
    kb.emit(&key_frame(0, true))?;
    kb.emit(&key_frame(0, false))?;
    check!(
        adm.stats(vm + 1).err() == Some(Errno::ENOENT),
        "closing a VM's file removes it (STATS: ENOENT), even while it has the focus"
    );
    check!(a.stats()?.vm_id == vm, "the other VM is unaffected");
    // A full ring: what does not fit waits in the queue, in order.
    let mut c = Sink::new(vm + 2, 8)?;
    adm.focus(vm + 2)?;
    let fr: Vec<Ev> = (0..5).flat_map(|i| motion_frame(i + 1, 1)).collect();
    kb.emit(&fr)?;
    let s = c.stats()?;
    let n0 = c.available()? as usize;
    check!(
        n0 <= 8 && s.queue_depth >= 7 && n0 + s.queue_depth as usize <= 15,
        "ring of 8 entries: {n0} events visible in it, {} queued (of 15)",
        s.queue_depth
    );
    c.drain()?;
    check!(
        c.kicks >= 1,
        "the module asked for a kick when the consumer freed room ({} kicks)",
        c.kicks
    );
    // Every doorbell moves what fits; the consumer keeps draining (and kicking) until all is in.
    check!(
        c.wait_n(15, T)?,
        "after the doorbell the queued events arrived without new input ({} of 15, queue depth {})",
        c.got.len(),
        c.stats()?.queue_depth
    );
    check!(
        triples(&evs_of(&c.got)) == fr,
        "all 15 in order, whole frames"
    );
    let more = motion_frame(9, 9);
    kb.emit(&more)?;
    c.drain()?;
    let want = [fr.clone(), more].concat();
    let got = triples(&evs_of(&c.got));
    check!(
        got.len() > n0 && got[..] == want[..got.len()],
        "the next input flushes the queue first: {} events in order so far",
        got.len()
    );
    check!(c.stats()?.dropped == 0, "nothing dropped");
    drop(c);
    let fr = adm.focus(999_999);
    println!("info: FOCUS on a VM that does not exist: {}", errno_of(fr));
    adm.focus(vm)?;
    kb.emit(&motion_frame(11, 11))?;
    check!(
        a.wait_n(3, T)? && a.take()[0].ev.value == 11,
        "focus back: delivered again"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------

pub fn sched() -> Result<()> {
    let cpus = ncpus();
    check!(cpus >= 2, "{cpus} CPUs: the vCPU child gets one of its own");
    let adm = Input::open()?;
    let kb = kbd("sched")?;
    let _route = Route::add(&adm, vdi_match::NAME, true, &kb.name)?;
    let vm = 2000 + std::process::id() % 1000;
    let mut a = Sink::new(vm, 4096)?;
    adm.focus(vm)?;
    pin(0);
    let mut child = VcpuChild::spawn_halted(&a.dev, Some(1))?;
    let (s, ok) = a.stats_until(Duration::from_secs(5), |s| s.vcpus == 1 && s.running == 1)?;
    check!(
        ok,
        "vCPU child {} registered and running (vcpus {}, running {})",
        child.pid,
        s.vcpus,
        s.running
    );
    let frames50 = |base: usize| -> Vec<Vec<Ev>> {
        (0..50)
            .map(|i| {
                if i % 5 == 0 {
                    key_frame(base + i / 10, (i / 5) % 2 == 0).to_vec()
                } else {
                    motion_frame(2, -1)
                }
            })
            .collect()
    };

    // Halted (asleep in the kernel waiting for an interrupt, as a vCPU in the guest's hlt): it
    // can take an interrupt and the host scheduler cannot preempt a sleeping thread, so every
    // frame is in the ring when write() returns: exact counts.
    let t = Instant::now();
    while child.state() != 'S' {
        if t.elapsed() > Duration::from_secs(5) {
            bail!("vCPU child never went to sleep (state {})", child.state());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let s0 = a.stats()?;
    let mut at_once = 0;
    let mut sent = vec![];
    for fr in frames50(0) {
        kb.emit(&fr)?;
        sent.extend(&fr);
        if a.available()? as usize + a.got.len() == sent.len() {
            at_once += 1;
        }
    }
    let s1 = a.stats()?;
    check!(at_once == 50, "vCPU halted waiting for an interrupt: {at_once}/50 frames were in the ring when write() returned");
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
        "halted: {} events in order",
        sent.len()
    );

    // On a CPU (spinning): the host scheduler may still preempt it at any moment (under
    // emulation it does), and a preempted vCPU rightly queues. What holds whatever the
    // scheduler does: every event arrives, in order, each either delivered at once or queued
    // and flushed at the next schedule-in, and nothing stays queued.
    child.wake()?;
    let t = Instant::now();
    while child.state() != 'R' {
        if t.elapsed() > Duration::from_secs(5) {
            bail!("vCPU child never ran (state {})", child.state());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let s0 = a.stats()?;
    let mut at_once = 0;
    let mut sent = vec![];
    for fr in frames50(0) {
        kb.emit(&fr)?;
        sent.extend(&fr);
        if a.available()? as usize + a.got.len() == sent.len() {
            at_once += 1;
        }
    }
    a.wait_n(sent.len(), T)?;
    check!(
        triples(&evs_of(&a.got)) == sent,
        "running: {} events in order ({at_once}/50 frames in the ring when write() returned)",
        sent.len()
    );
    let (s1, ok) = a.stats_until(Duration::from_secs(5), |s| s.queue_depth == 0)?;
    let (imm, queued, flushed) = (
        s1.delivered_immediately - s0.delivered_immediately,
        s1.queued - s0.queued,
        s1.flushed - s0.flushed,
    );
    println!("info: running: delivered_immediately +{imm}, queued +{queued}, flushed +{flushed}");
    check!(ok && imm + flushed == sent.len() as u64 && queued == flushed && s1.coalesced == s0.coalesced, "stats: every event delivered at once or queued and flushed ({imm} + {flushed} = {}), nothing left queued", sent.len());
    a.take();

    // Stopped: the burst waits in the queue.
    child.stop()?;
    let (s, ok) = a.stats_until(Duration::from_secs(5), |s| s.running == 0)?;
    check!(
        ok,
        "SIGSTOP of the vCPU child: the VM is not running (running {})",
        s.running
    );
    let s0 = a.stats()?;
    let b = sched_burst()?;
    let tw = Instant::now();
    emit_chunks(&kb, &b, 600)?;
    let write_ms = tw.elapsed().as_secs_f64() * 1e3;
    std::thread::sleep(Duration::from_millis(100));
    check!(
        a.available()? == 0,
        "burst of {} events while stopped: nothing in the ring (written in {write_ms:.1} ms)",
        b.len()
    );
    let s1 = a.stats()?;
    check!(
        s1.queued - s0.queued == b.len() as u64,
        "stats: queued +{} (all {})",
        s1.queued - s0.queued,
        b.len()
    );
    check!(
        s1.queue_depth > 0 && s1.queue_depth <= VDI_QUEUE_EVENTS,
        "stats: queue depth {} of {}",
        s1.queue_depth,
        VDI_QUEUE_EVENTS
    );
    check!(
        s1.coalesced > s0.coalesced && s1.dropped == s0.dropped,
        "stats: coalesced +{}, dropped +{}",
        s1.coalesced - s0.coalesced,
        s1.dropped - s0.dropped
    );
    check!(
        s1.max_depth <= u64::from(VDI_QUEUE_EVENTS) && s1.max_depth >= u64::from(s1.queue_depth),
        "stats: max depth {}",
        s1.max_depth
    );

    // SIGCONT: flushed in order, before anything newer.
    let tc = Instant::now();
    child.cont()?;
    let keys = b.iter().filter(|e| e.0 == EV_KEY).count();
    let flushed = a.wait(T, |g| {
        g.iter().filter(|e| e.ev.ty == EV_KEY).count() >= keys
            && g.last().is_some_and(|e| e.ev.ty == EV_SYN)
    })?;
    let flush_ms = tc.elapsed().as_secs_f64() * 1e3;
    let (s2, _) = a.stats_until(Duration::from_secs(5), |s| {
        s.queue_depth == 0 && s.running == 1
    })?;
    check!(
        flushed,
        "SIGCONT: the queue was flushed ({} events in {flush_ms:.1} ms)",
        a.got.len()
    );
    let got = evs_of(&a.got);
    verify_coalesced(&b, &got).map_err(|e| anyhow!("burst after SIGCONT: {e}"))?;
    let want = Summary::of(&as_events(&b));
    println!("ok: all {keys} key events in order, REL sums X {} Y {} exact, every frame whole, no SYN_DROPPED", want.rel[0], want.rel[1]);
    check!(
        seq_contiguous(&a.got),
        "sequence numbers contiguous across the flush"
    );
    check!(
        s2.flushed - s1.flushed == got.len() as u64,
        "stats: flushed +{} = events delivered",
        s2.flushed - s1.flushed
    );
    check!(
        s2.queued - s0.queued - (s2.coalesced - s0.coalesced) == s2.flushed - s1.flushed,
        "stats: queued - coalesced = flushed ({} - {} = {})",
        s2.queued - s0.queued,
        s2.coalesced - s0.coalesced,
        s2.flushed - s1.flushed
    );
    check!(
        s2.queue_depth == 0 && s2.running == 1,
        "stats: queue empty, running again"
    );
    check!(
        s2.delay_hist.iter().sum::<u64>() > 0,
        "delay histogram after the flush: {:?}",
        s2.delay_hist
    );
    a.take();

    // Newer events never overtake the queue.
    child.stop()?;
    a.stats_until(Duration::from_secs(5), |s| s.running == 0)?;
    let small: Vec<Ev> = (0..40)
        .flat_map(|i| {
            if i % 4 == 0 {
                key_frame(20 + i / 8, (i / 4) % 2 == 0).to_vec()
            } else {
                motion_frame(1, 1)
            }
        })
        .collect();
    kb.emit(&small)?;
    child.cont()?;
    let marker = [
        (EV_KEY, KEYS[25], 1),
        (EV_SYN, SYN_REPORT, 0),
        (EV_KEY, KEYS[25], 0),
        (EV_SYN, SYN_REPORT, 0),
    ];
    kb.emit(&marker)?;
    a.wait(T, |g| {
        g.iter()
            .filter(|e| e.ev.ty == EV_KEY && e.ev.code == KEYS[25])
            .count()
            >= 2
    })?;
    let got = triples(&evs_of(&a.take()));
    check!(
        got.len() >= 4 && got[got.len() - 4..] == marker && got[..got.len() - 4] == small[..],
        "a frame written right after SIGCONT arrives after the whole queue ({} events)",
        got.len()
    );

    // Explicit pause.
    a.dev.set_running(false).context("VDI_IOC_SET_RUNNING 0")?;
    check!(
        a.stats()?.running == 0,
        "SET_RUNNING 0: not running although the vCPU is on a CPU"
    );
    let pause: Vec<Ev> = (0..30)
        .flat_map(|i| {
            if i % 3 == 0 {
                key_frame(i / 6, (i / 3) % 2 == 0).to_vec()
            } else {
                motion_frame(-1, 3)
            }
        })
        .collect();
    kb.emit(&pause)?;
    std::thread::sleep(Duration::from_millis(100));
    let s = a.stats()?;
    check!(
        a.available()? == 0 && s.queue_depth as usize == pause.len(),
        "paused: {} events wait in the queue, none in the ring",
        s.queue_depth
    );
    let tr = Instant::now();
    a.dev.set_running(true).context("VDI_IOC_SET_RUNNING 1")?;
    let at_return = a.available()?;
    check!(a.wait_n(pause.len(), T)?, "SET_RUNNING 1: the queue is flushed ({at_return} events already there when the ioctl returned, all after {:.1} ms)", tr.elapsed().as_secs_f64() * 1e3);
    check!(
        triples(&evs_of(&a.take())) == pause,
        "flushed in order, nothing coalesced (below capacity)"
    );
    // A pause holds across a SIGSTOP/SIGCONT of the vCPU.
    a.dev.set_running(false)?;
    child.stop()?;
    child.cont()?;
    std::thread::sleep(Duration::from_millis(50));
    kb.emit(&motion_frame(4, 4))?;
    std::thread::sleep(Duration::from_millis(50));
    check!(
        a.available()? == 0 && a.stats()?.running == 0,
        "paused VM stays paused when its vCPU is scheduled in again"
    );
    a.dev.set_running(true)?;
    check!(a.wait_n(3, T)?, "resumed: delivered");
    a.take();
    check!(
        a.dev.vcpu_unregister().is_err(),
        "VCPU_UNREGISTER from a thread that is not a vCPU refused ({})",
        errno_of(a.dev.vcpu_unregister())
    );

    // A second vCPU thread that unregisters and exits: the VM is as before.
    let mut c2 = VcpuChild::spawn_timed(&a.dev, None, Duration::from_millis(300))?;
    let (s, ok) = a.stats_until(Duration::from_secs(5), |s| s.vcpus == 2)?;
    check!(ok, "a second vCPU thread registered (vcpus {})", s.vcpus);
    let (s, ok) = a.stats_until(Duration::from_secs(10), |s| s.vcpus == 1)?;
    check!(
        ok,
        "VCPU_UNREGISTER from that thread before it exits: vcpus {}",
        s.vcpus
    );
    check!(c2.wait_exit()? == 0, "it unregistered cleanly");
    kb.emit(&motion_frame(2, 2))?;
    check!(
        a.wait_n(3, T)? && a.stats()?.running == 1,
        "delivery goes on with the first vCPU"
    );
    a.take();

    // The vCPU thread dies while stopped with events queued: no vCPU left, so the VM counts as
    // running again and gets its events.
    child.stop()?;
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
    check!(
        a.stats()?.queue_depth > 0,
        "stopped again: {} events queued",
        a.stats()?.queue_depth
    );
    child.kill()?;
    // Waits on the ring and the call eventfd only: no ioctl that could move the queue.
    let ok = a.wait_n(last.len(), Duration::from_secs(5))?;
    let got = triples(&evs_of(&a.take()));
    check!(ok && got == last, "the events queued for the dead vCPU are delivered in order, by the module itself ({} of {})", got.len(), last.len());
    // Its last context switch takes it off the counts (it may still be exiting now); STATS has
    // no side effect, so waiting on it changes nothing.
    let (s, ok) = a.stats_until(Duration::from_secs(5), |s| {
        s.vcpus == 0 && s.queue_depth == 0
    })?;
    check!(
        ok,
        "vCPU child killed: its registration is gone (vcpus {}, queue depth {})",
        s.vcpus,
        s.queue_depth
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------

pub fn focus(frames_total: usize) -> Result<()> {
    let adm = Input::open()?;
    let kb = kbd("focus")?;
    let _route = Route::add(&adm, vdi_match::NAME, true, &kb.name)?;
    let base = 3000 + (std::process::id() % 1000) * 2;
    let mut a = Sink::new(base, 4096)?;
    let mut b = Sink::new(base + 1, 4096)?;
    adm.focus(base)?;
    let written = AtomicU64::new(0);
    let seen = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    // The overlap is made, not hoped for: the switcher (this thread) switches the focus on
    // every turn of its loop, concurrently with the writer's writes, and the writer, after each
    // write of 1..7 frames, waits until the switcher has switched at least once since that
    // write began. So at least one switch falls into or right after every write, however the
    // two threads are scheduled.
    let switches = AtomicU64::new(0);
    let mut batches = 0u64;
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let w = s.spawn(|| -> Result<u64> {
            let mut i = 0;
            let mut batches = 0u64;
            while i < frames_total {
                // Keep well inside the rings: the consumer (the main thread) drains both.
                while written
                    .load(Ordering::Relaxed)
                    .saturating_sub(seen.load(Ordering::Relaxed))
                    > 300
                {
                    if done.load(Ordering::Relaxed) {
                        return Ok(batches);
                    }
                    std::thread::yield_now();
                }
                let before = switches.load(Ordering::Acquire);
                let n = (frames_total - i).min(1 + i % 7);
                let evs: Vec<Ev> = (i..i + n).flat_map(tagged_frame).collect();
                kb.emit(&evs)?;
                i += n;
                written.store(i as u64, Ordering::Relaxed);
                batches += 1;
                while switches.load(Ordering::Acquire) == before {
                    if done.load(Ordering::Relaxed) {
                        return Ok(batches);
                    }
                    std::thread::yield_now();
                }
            }
            Ok(batches)
        });
        let mut writer_done = Instant::now();
        let mut to_b = true;
        let r = (|| -> Result<()> {
            loop {
                a.drain()?;
                b.drain()?;
                let n = (a.got.len() + b.got.len()) / 5;
                seen.store(n as u64, Ordering::Relaxed);
                if n >= frames_total {
                    return Ok(());
                }
                if !w.is_finished() {
                    writer_done = Instant::now();
                } else if writer_done.elapsed() > Duration::from_secs(5) {
                    bail!("only {n} of {frames_total} frames arrived, 5 s after the last write");
                }
                adm.focus(if to_b { base + 1 } else { base })?;
                to_b = !to_b;
                switches.fetch_add(1, Ordering::Release);
                std::thread::yield_now();
            }
        })();
        done.store(true, Ordering::Relaxed);
        let wr = w.join().map_err(|_| anyhow!("writer panicked"))?;
        r?;
        batches = wr?;
        Ok(())
    })?;
    let switches = switches.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    check!(
        switches >= batches && batches >= (frames_total / 7) as u64,
        "{switches} focus switches while {frames_total} frames ({} events) were written in {batches} writes in {secs:.2} s: at least one switch per write",
        frames_total * 5
    );
    let mut all = vec![];
    for (name, sk) in [("A", &a), ("B", &b)] {
        let evs = evs_of(&sk.got);
        let (fr, open) = frames(&evs);
        check!(
            open.is_empty(),
            "VM {name}: the stream ends on a SYN_REPORT"
        );
        let mut tags = vec![];
        for f in &fr {
            let t = f
                .iter()
                .find(|e| e.ty == EV_REL && e.code == REL_X)
                .map(|e| e.value as usize);
            match t {
                Some(t) if t >= 1 && triples(f) == tagged_frame(t - 1) => tags.push(t - 1),
                _ => bail!("VM {name}: a split or foreign frame: {:?}", triples(f)),
            }
        }
        check!(
            tags.windows(2).all(|w| w[0] < w[1]),
            "VM {name}: {} whole frames, in order",
            tags.len()
        );
        check!(
            seq_contiguous(&sk.got),
            "VM {name}: ring sequence contiguous"
        );
        let st = sk.stats()?;
        check!(
            st.delivered_immediately == evs.len() as u64 && st.dropped == 0,
            "VM {name}: stats delivered_immediately {} = events received",
            st.delivered_immediately
        );
        all.extend(tags);
    }
    check!(
        !a.got.is_empty() && !b.got.is_empty(),
        "both VMs got frames ({} / {})",
        a.got.len() / 5,
        b.got.len() / 5
    );
    all.sort_unstable();
    check!(
        all == (0..frames_total).collect::<Vec<_>>(),
        "every frame went to exactly one VM: nothing lost, nothing duplicated"
    );
    let keys: usize = [&a, &b]
        .iter()
        .map(|s| s.got.iter().filter(|e| e.ev.ty == EV_KEY).count())
        .sum();
    check!(keys == frames_total, "all {keys} key events delivered");
    Ok(())
}

// ---------------------------------------------------------------------------------------------

pub fn unplug() -> Result<()> {
    let adm = Input::open()?;
    let pid = std::process::id();
    let name = format!("vd-itest unplug {pid}");
    let _route = Route::add(&adm, vdi_match::NAME, true, &name)?;
    let vm = 4000 + pid % 1000;
    let mut a = Sink::new(vm, 4096)?;
    adm.focus(vm)?;
    let listed = |adm: &Input| -> Result<Vec<VdiDevice>> {
        Ok(adm
            .devices()?
            .into_iter()
            .filter(|d| vd_sys::input::fixed_str(&d.name) == name)
            .collect())
    };
    let new_dev = |i: usize| {
        Uinput::new(
            &name,
            &format!("vd-itest/unplug{pid}/input{i}"),
            Kind::KeyboardMouse,
        )
    };

    let mut d1 = new_dev(1)?;
    let l = listed(&adm)?;
    check!(
        l.len() == 1 && l[0].routed == 1,
        "a device that appears after the route is routed"
    );
    let fr: Vec<Ev> = (0..10).flat_map(tagged_frame).collect();
    d1.emit(&fr)?;
    check!(a.wait_n(fr.len(), T)?, "10 frames delivered");
    a.take();

    // Unplug with a key held and a frame open.
    d1.emit(&[
        (EV_KEY, KEYS[0], 1),
        (EV_SYN, SYN_REPORT, 0),
        (EV_KEY, KEYS[1], 1),
        (EV_REL, REL_X, 3),
    ])?;
    d1.destroy()?;
    check!(
        listed(&adm)?.is_empty(),
        "UI_DEV_DESTROY while routed: the device is gone from LIST_DEVICES"
    );
    check!(
        adm.version().is_ok() && a.stats().is_ok(),
        "the module still answers"
    );
    std::thread::sleep(Duration::from_millis(50));
    a.drain()?;
    let evs = evs_of(&a.take());
    let (_, open) = frames(&evs);
    check!(
        open.is_empty(),
        "the VM's stream ends on a frame boundary ({} events after the unplug)",
        evs.len()
    );
    let mut held = std::collections::BTreeMap::new();
    for e in &evs {
        if e.ty == EV_KEY {
            held.insert(e.code, e.value);
        }
    }
    println!("info: events the VM got at the unplug: {:?}", triples(&evs));
    check!(
        held.values().all(|&v| v == 0),
        "no key left pressed in the VM after the unplug (last states {held:?})"
    );

    // Unplug under load, from another thread.
    let d2 = new_dev(2)?;
    let stop = AtomicBool::new(false);
    let seen = AtomicU64::new(0);
    let dropped0 = a.stats()?.dropped;
    let sent = std::thread::scope(|s| -> Result<usize> {
        let w = s.spawn(|| -> usize {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                // Paced to the consumer: a full ring and queue would end in SYN_DROPPED.
                if i as u64 > seen.load(Ordering::Relaxed) + 300 {
                    std::thread::yield_now();
                    continue;
                }
                if d2.emit(&tagged_frame(i)).is_err() {
                    break;
                }
                i += 1;
            }
            i
        });
        let t = Instant::now();
        let mut n = 0;
        while t.elapsed() < Duration::from_millis(200) {
            n += a.drain()?;
            seen.store(n as u64 / 5, Ordering::Relaxed);
            std::thread::yield_now();
        }
        // Destroy through the same file the writer writes: uinput serialises the two.
        d2.destroy_shared()?;
        std::thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Relaxed);
        w.join().map_err(|_| anyhow!("writer panicked"))
    })?;
    drop(d2);
    std::thread::sleep(Duration::from_millis(50));
    a.drain()?;
    let evs = evs_of(&a.take());
    let (fr, open) = frames(&evs);
    let whole = fr
        .iter()
        .filter(|f| f.len() == 5 && f.iter().any(|e| e.ty == EV_REL && e.code == REL_X))
        .count();
    check!(open.is_empty() && whole == sent, "unplug under load: all {sent} frames written arrived whole ({whole}), the stream ends on a frame boundary");
    check!(a.stats()?.dropped == dropped0, "nothing dropped");

    // Plug again: the route still applies.
    let d3 = new_dev(3)?;
    let l = listed(&adm)?;
    check!(
        l.len() == 1 && l[0].routed == 1 && l[0].grabbed == 1,
        "re-plugged device with the same name: routed and grabbed again"
    );
    d3.emit(&fr_for(0..10))?;
    check!(
        a.wait_n(50, T)? && triples(&evs_of(&a.take())) == fr_for(0..10),
        "the VM gets the new device's events"
    );
    drop(d3);

    // Many plugs and unplugs, closing the uinput file without UI_DEV_DESTROY.
    // Four frames per device: its key presses and releases balance (a release on a new device
    // of a key pressed on an old one would be dropped by the input core).
    for i in 0..20 {
        let mut d = new_dev(10 + i)?;
        d.emit(&fr_for(i * 4..i * 4 + 4))?;
        d.close();
    }
    let tagged = |g: &[RingEvent]| {
        g.iter()
            .filter(|e| e.ev.ty == EV_REL && e.ev.code == REL_X)
            .count()
    };
    a.wait(T, |g| tagged(g) >= 80)?;
    std::thread::sleep(Duration::from_millis(20));
    a.drain()?;
    let evs = evs_of(&a.take());
    let (fr, open) = frames(&evs);
    let (ours, released): (Vec<&[VdiEvent]>, Vec<&[VdiEvent]>) =
        fr.iter().partition(|f| f.iter().any(|e| e.ty == EV_REL));
    let ours: Vec<Ev> = ours.iter().flat_map(|f| triples(f)).collect();
    if ours != fr_for(0..80) {
        let want = fr_for(0..80);
        let i = ours
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(want.len()));
        bail!(
            "20 plug/unplug cycles: {} events of tagged frames, want {}; first difference at {i}: got {:?} want {:?}",
            ours.len(),
            want.len(),
            &ours[i.saturating_sub(2)..(i + 5).min(ours.len())],
            &want[i.saturating_sub(2)..(i + 5).min(want.len())]
        );
    }
    check!(open.is_empty() && released.is_empty(), "20 plug/unplug cycles (file closed, no destroy): all 80 frames arrived whole, in order, nothing else");
    check!(listed(&adm)?.is_empty(), "no device left in LIST_DEVICES");
    let s = a.stats()?;
    check!(
        s.dropped == 0 && s.running == 1,
        "VM sink fine: dropped {}, running {}",
        s.dropped,
        s.running
    );
    let d4 = new_dev(99)?;
    d4.emit(&fr_for(100..105))?;
    check!(a.wait_n(25, T)?, "and still works with a new device");
    Ok(())
}

fn fr_for(r: std::ops::Range<usize>) -> Vec<Ev> {
    r.flat_map(tagged_frame).collect()
}

// ---------------------------------------------------------------------------------------------

/// `input-hw`: the test hardware alone (no vd module needed): a uinput keyboard+mouse whose
/// events a reader of its evdev node sees. With `hold`, the device stays until killed (for the
/// vdctl tests).
pub fn hw(name: &str, hold: bool) -> Result<()> {
    let kb = Uinput::new(name, "vd-itest/hw/input0", Kind::KeyboardMouse)?;
    let node = kb.event_node()?;
    check!(
        node.exists(),
        "uinput device {:?} ({}) has {}",
        kb.name,
        kb.sysname,
        node.display()
    );
    let mut host = Evdev::open(&node, true)?;
    let sent = [
        motion_frame(3, -4),
        key_frame(1, true).to_vec(),
        key_frame(1, false).to_vec(),
    ]
    .concat();
    kb.emit(&sent)?;
    let mut got = vec![];
    let t = Instant::now();
    while got.len() < sent.len() && t.elapsed() < Duration::from_secs(5) {
        got.extend(host.read()?);
        std::thread::sleep(Duration::from_millis(5));
    }
    check!(
        got == sent,
        "evdev reader sees the frames written to uinput ({} events)",
        got.len()
    );
    if hold {
        println!("ready");
        use std::io::Write;
        std::io::stdout().flush()?;
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// `input-mt`: a two-finger multitouch device (type B slots) moves both fingers 400 times
/// while the vCPU is stopped; the queue has to coalesce the 2,800 events into its 1,024 slots.
/// After SIGCONT a consumer that follows ABS_MT_SLOT must see every position in the slot of
/// the finger that made it, the last position of each finger, and both contacts ending.
pub fn multitouch() -> Result<()> {
    check!(
        ncpus() >= 2,
        "{} CPUs: the vCPU child gets one of its own",
        ncpus()
    );
    let adm = Input::open()?;
    let pid = std::process::id();
    let name = format!("vd-itest mt {pid}");
    let mt = Uinput::new(&name, &format!("vd-itest/mt{pid}/input0"), Kind::Multitouch)?;
    let _route = Route::add(&adm, vdi_match::NAME, true, &name)?;
    let vm = 7000 + pid % 1000;
    let mut a = Sink::new(vm, 4096)?;
    adm.focus(vm)?;
    pin(0);
    let child = VcpuChild::spawn(&a.dev, Some(1))?;
    let (_, ok) = a.stats_until(Duration::from_secs(5), |s| s.vcpus == 1)?;
    check!(ok, "vCPU child registered");
    child.stop()?;
    let (_, ok) = a.stats_until(Duration::from_secs(5), |s| s.running == 0)?;
    check!(ok, "vCPU child stopped: the VM is not running");
    let s0 = a.stats()?;
    // Finger 0 moves along 1000.., finger 1 along 20000..: a value tells whose it is.
    const MOVES: i32 = 400;
    let down = [
        (EV_ABS, ABS_MT_SLOT, 0),
        (EV_ABS, ABS_MT_TRACKING_ID, 1),
        (EV_ABS, ABS_MT_POSITION_X, 999),
        (EV_ABS, ABS_MT_POSITION_Y, 999),
        (EV_ABS, ABS_MT_SLOT, 1),
        (EV_ABS, ABS_MT_TRACKING_ID, 2),
        (EV_ABS, ABS_MT_POSITION_X, 19999),
        (EV_ABS, ABS_MT_POSITION_Y, 19999),
        (EV_SYN, SYN_REPORT, 0),
    ];
    mt.emit(&down)?;
    let mut moves = vec![];
    for i in 0..MOVES {
        moves.extend([
            (EV_ABS, ABS_MT_SLOT, 0),
            (EV_ABS, ABS_MT_POSITION_X, 1000 + i),
            (EV_ABS, ABS_MT_POSITION_Y, 1000 + i),
            (EV_ABS, ABS_MT_SLOT, 1),
            (EV_ABS, ABS_MT_POSITION_X, 20000 + i),
            (EV_ABS, ABS_MT_POSITION_Y, 20000 + i),
            (EV_SYN, SYN_REPORT, 0),
        ]);
    }
    emit_chunks(&mt, &moves, 700)?;
    let up = [
        (EV_ABS, ABS_MT_SLOT, 0),
        (EV_ABS, ABS_MT_TRACKING_ID, -1),
        (EV_ABS, ABS_MT_SLOT, 1),
        (EV_ABS, ABS_MT_TRACKING_ID, -1),
        (EV_SYN, SYN_REPORT, 0),
    ];
    mt.emit(&up)?;
    let s1 = a.stats()?;
    check!(
        a.available()? == 0 && s1.queued > s0.queued,
        "stopped: {} events queued, none in the ring",
        s1.queued - s0.queued
    );
    check!(
        s1.coalesced > s0.coalesced && s1.dropped == s0.dropped,
        "the queue coalesced {} events, dropped none",
        s1.coalesced - s0.coalesced
    );
    child.cont()?;
    let lifted = |g: &[RingEvent]| {
        g.iter()
            .filter(|e| e.ev.ty == EV_ABS && e.ev.code == ABS_MT_TRACKING_ID && e.ev.value == -1)
            .count()
            >= 2
    };
    check!(
        a.wait(T, lifted)?,
        "SIGCONT: the queue was flushed up to both contacts ending ({} events)",
        a.got.len()
    );
    let evs = evs_of(&a.take());
    let (_, open) = frames(&evs);
    check!(
        open.is_empty()
            && !evs
                .iter()
                .any(|e| e.ty == EV_SYN && e.code == vd_sys::input::SYN_DROPPED),
        "whole frames, no SYN_DROPPED"
    );
    // Replay as a type-B consumer does: values go to the slot last selected (slot 0 at first).
    let mut slot = 0;
    let mut xs: [Vec<i32>; 2] = [vec![], vec![]];
    let mut ids: [Vec<i32>; 2] = [vec![], vec![]];
    for e in &evs {
        match (e.ty, e.code) {
            (EV_ABS, ABS_MT_SLOT) => slot = e.value,
            (EV_ABS, ABS_MT_POSITION_X) | (EV_ABS, ABS_MT_TRACKING_ID) => {
                let Some(k) = usize::try_from(slot).ok().filter(|&k| k < 2) else {
                    bail!("a value for slot {slot}, which the device does not have");
                };
                if e.code == ABS_MT_POSITION_X {
                    xs[k].push(e.value)
                } else {
                    ids[k].push(e.value)
                }
            }
            _ => {}
        }
    }
    println!(
        "info: delivered {} events; slot 0 x: {} values, slot 1 x: {} values",
        evs.len(),
        xs[0].len(),
        xs[1].len()
    );
    let own = |k: usize, x: i32| {
        if k == 0 {
            (999..1000 + MOVES).contains(&x)
        } else {
            (19999..20000 + MOVES).contains(&x)
        }
    };
    for k in 0..2 {
        let bad: Vec<i32> = xs[k].iter().copied().filter(|&x| !own(k, x)).collect();
        check!(
            bad.is_empty(),
            "slot {k}: every ABS_MT_POSITION_X is finger {k}'s ({} values, foreign: {:?})",
            xs[k].len(),
            &bad[..bad.len().min(8)]
        );
        check!(
            xs[k].windows(2).all(|w| w[0] < w[1]),
            "slot {k}: positions in order"
        );
        let last = if k == 0 { 999 + MOVES } else { 19999 + MOVES };
        check!(
            xs[k].last() == Some(&last),
            "slot {k}: the finger's last position {last} arrived (got {:?})",
            xs[k].last()
        );
        check!(
            ids[k] == [k as i32 + 1, -1],
            "slot {k}: its contact began and ended ({:?})",
            ids[k]
        );
    }
    Ok(())
}

/// `input-unload`: a VMM registers a vCPU thread and closes its file while the thread lives
/// on. The thread's hook (a preempt notifier into the module's code) pins the module: rmmod is
/// refused at once with EWOULDBLOCK (what `delete_module` answers for a module in use) while
/// the thread lives, and succeeds once it is gone (retried until then, bounded). Leaves the
/// module unloaded.
pub fn unload() -> Result<()> {
    fn delete_module() -> Result<(), Errno> {
        // SAFETY: `delete_module(name, flags)` reads a NUL-terminated name.
        let r = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_delete_module,
                c"vd_input_irq".as_ptr(),
                nix::libc::O_NONBLOCK,
            )
        };
        Errno::result(r).map(drop)
    }
    fn refcnt() -> String {
        std::fs::read_to_string("/sys/module/vd_input_irq/refcnt")
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
    let vm = 7500 + std::process::id() % 400;
    let Sink { dev, map, .. } = Sink::new(vm, 64)?;
    let dev = std::sync::Arc::new(dev);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (reg_tx, reg_rx) = std::sync::mpsc::channel::<Result<(), Errno>>();
    let d = dev.clone();
    let t = std::thread::spawn(move || {
        let reg = d.vcpu_register();
        // Let go of the device before reporting: the main thread takes the last reference as
        // soon as it hears back (dropping after the send raced with that: one soak run in ten
        // found "the device is still shared").
        drop(d);
        let _ = reg_tx.send(reg);
        // Lives on, asleep, until told to go.
        let _ = rx.recv();
    });
    let reg = reg_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| anyhow!("the vCPU thread never registered"))?;
    check!(
        reg.is_ok(),
        "a thread registered as the VM's vCPU ({})",
        errno_of(reg)
    );
    // The VMM closes the device: the last reference to the file goes.
    drop(map);
    let Ok(dev) = std::sync::Arc::try_unwrap(dev) else {
        bail!("the device is still shared")
    };
    drop(dev);
    println!(
        "info: module refcnt with the file closed and the vCPU thread alive: {}",
        refcnt()
    );
    let t0 = Instant::now();
    let r = delete_module();
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    check!(
        r == Err(Errno::EWOULDBLOCK),
        "rmmod while the former vCPU thread lives: {} after {ms:.1} ms (want EWOULDBLOCK)",
        errno_of(r)
    );
    check!(
        std::path::Path::new("/sys/module/vd_input_irq").exists(),
        "the module is still loaded"
    );
    tx.send(()).map_err(|_| anyhow!("vCPU thread gone early"))?;
    t.join().map_err(|_| anyhow!("vCPU thread panicked"))?;
    // The thread is gone; the module frees its hook once it is off every CPU.
    let t0 = Instant::now();
    let mut tries = 0;
    let last = loop {
        tries += 1;
        match delete_module() {
            Ok(()) => break Ok(()),
            Err(Errno::EWOULDBLOCK) if t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => break Err(e),
        }
    };
    check!(
        last.is_ok(),
        "rmmod after the thread exited: {} ({tries} tries in {:.0} ms)",
        errno_of(last),
        t0.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// A stand-in VMM to be killed by the kill test: a VM sink with a stopped vCPU child and the
/// 10,000-event burst queued, then it sleeps.
pub fn hold(name: &str, vm: u32) -> Result<()> {
    let adm = Input::open()?;
    match adm.route(&route_spec(vdi_match::NAME, true, name)?) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => bail!("VDI_IOC_ROUTE: {e}"),
    }
    let kb = Uinput::new(name, "vd-itest/hold/input0", Kind::KeyboardMouse)?;
    let a = Sink::new(vm, 1024)?;
    adm.focus(vm)?;
    let child = VcpuChild::spawn(&a.dev, if ncpus() > 1 { Some(1) } else { None })?;
    a.stats_until(Duration::from_secs(5), |s| s.vcpus == 1)?;
    child.stop()?;
    a.stats_until(Duration::from_secs(5), |s| s.running == 0)?;
    emit_chunks(&kb, &sched_burst()?, 600)?;
    let s = a.stats()?;
    println!(
        "queued depth={} queued_total={} vm={} child={}",
        s.queue_depth, s.queued, vm, child.pid
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------------------------------------

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
    for polling in [false, true] {
        let seen = AtomicU64::new(0);
        let done = EventFd::new(EFD_NONBLOCK)?;
        let seen_at = (0..=rounds).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        let stamp = (0..=rounds).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        let write_at = std::thread::scope(|s| -> Result<Vec<u64>> {
            let sink = &mut a;
            let (seen, done, seen_at, stamp) = (&seen, &done, &seen_at, &stamp);
            let c = s.spawn(move || -> Result<()> {
                let mut out = vec![];
                let m = sink.map.mem();
                if polling {
                    sink.rd.disable_irq(&m);
                }
                loop {
                    out.clear();
                    sink.rd.drain(&m, &mut out).map_err(|e| anyhow!("{e:?}"))?;
                    let t = now_ns();
                    for e in &out {
                        if e.ev.ty == EV_REL && e.ev.code == REL_X && e.ev.value > 0 {
                            let i = (e.ev.value as usize).min(rounds);
                            seen_at[i].store(t, Ordering::Relaxed);
                            stamp[i].store(e.ev.time_ns, Ordering::Relaxed);
                            seen.store(i as u64, Ordering::Release);
                            done.write(1)?;
                            if i >= rounds {
                                return Ok(());
                            }
                        }
                    }
                    if polling {
                        std::hint::spin_loop();
                    } else if !sink.rd.enable_irq(&m) && poll_in(sink.call.as_raw_fd(), 1000)? {
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
