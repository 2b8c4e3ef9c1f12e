//! `vd-itest input-feed`: the host side of the real-guest input tests (issue 13). A uinput
//! keyboard+mouse and a uinput tablet are routed to VM `--vm` (a stock QEMU guest served by
//! `vd-ivshmem-server --input`), which gets the focus; once the VM has a followed vCPU thread,
//! a deterministic mix of key, relative and absolute frames goes to it, then the end marker
//! (KEY_F12 pressed and released). With `--stop-pid`, that process (the guest's QEMU) is
//! SIGSTOPped first and every one of its vCPU threads is seen stopped before the 10,000-event
//! burst of the scheduling tests (keys and motion); the module must queue it (checked: nothing
//! delivered meanwhile), and SIGCONT releases it. Motion may be coalesced in the queue, so the
//! `FEEDKEYS` line gives what must survive exactly: keys in order and motion sums.
//!
//! Prints one line in the format of the guest's summary (scripts/guest-input.sh):
//! `FEED events=N keys=K keyhash=H allhash=A relx=X rely=Y absx=AX absy=AY dropped=0`.

use super::fixtures::*;
use vdd::vmm::qmp::{self, RunState};

/// The end marker key (scripts/guest-input.sh waits for its release).
const KEY_F12: u16 = 88;

/// What the guest must see, computed as scripts/guest-input.sh does.
#[derive(Default)]
pub(crate) struct Summary {
    events: u64,
    keys: u64,
    keyhash: u64,
    allhash: u64,
    relx: i64,
    rely: i64,
    absx: i64,
    absy: i64,
}

impl Summary {
    pub(crate) fn add(&mut self, (ty, code, value): Ev) {
        if ty == EV_SYN {
            return;
        }
        let (t, c, v) = (u64::from(ty), u64::from(code), u64::from(value as u32));
        self.events += 1;
        self.allhash = (self.allhash * 31 + t * 65536 + c + v * 3) % (1 << 32);
        match ty {
            EV_KEY => {
                self.keys += 1;
                self.keyhash = (self.keyhash * 31 + c * 4 + v) % (1 << 32);
            }
            EV_REL if code == REL_X => self.relx += i64::from(value),
            EV_REL if code == REL_Y => self.rely += i64::from(value),
            EV_ABS if code == ABS_X => self.absx = i64::from(value),
            EV_ABS if code == ABS_Y => self.absy = i64::from(value),
            _ => {}
        }
    }
    pub(crate) fn line(&self) -> String {
        format!(
            "events={} keys={} keyhash={} allhash={} relx={} rely={} absx={} absy={} dropped=0",
            self.events,
            self.keys,
            self.keyhash,
            self.allhash,
            self.relx,
            self.rely,
            self.absx,
            self.absy
        )
    }
}

/// Frame `i` of the mix: (tablet?, events). Keys press and release the same key (the input
/// core drops a release of a key that is not down); tablet positions differ from frame to frame
/// (it drops an unchanged absolute value).
fn frame(i: usize) -> (bool, Vec<Ev>) {
    match i % 5 {
        0 => {
            let key = 2 + ((i / 10) % 80) as u16;
            (
                false,
                vec![
                    (EV_KEY, key, i32::from((i / 5).is_multiple_of(2))),
                    (EV_SYN, SYN_REPORT, 0),
                ],
            )
        }
        1 | 2 => (false, motion_frame(1 + (i % 3) as i32, -1 - (i % 2) as i32)),
        _ => {
            let (x, y) = (((i * 37) % 32768) as i32, ((i * 91 + 5) % 32768) as i32);
            (
                true,
                vec![
                    (EV_ABS, ABS_X, x),
                    (EV_ABS, ABS_Y, y),
                    (EV_SYN, SYN_REPORT, 0),
                ],
            )
        }
    }
}

/// QMP `query-status` of the QEMU behind `qmp`: its run state.
fn qmp_status(qmp: &mut vdd::vmm::Qmp) -> Result<RunState> {
    let v = qmp
        .execute(&qmp::query_status {})
        .map_err(|e| anyhow!("QMP query-status: {e}"))?;
    Ok(v.status)
}

/// The feeder's uinput keyboard+mouse and tablet.
fn devices() -> Result<(Uinput, Uinput)> {
    let pid = std::process::id();
    let kb = Uinput::new(
        &format!("vd-feed kbd {pid}"),
        "vd-feed/kbd/input0",
        Kind::KeyboardMouse,
    )?;
    let tab = Uinput::new(
        &format!("vd-feed tablet {pid}"),
        "vd-feed/tab/input0",
        Kind::Tablet,
    )?;
    Ok((kb, tab))
}

pub fn feed(
    vm: u32,
    frames: usize,
    stop_pid: Option<u32>,
    qmp_pause: Option<&std::path::Path>,
) -> Result<()> {
    let adm = Input::open().context("open /dev/vd_input: is vd_input_irq loaded?")?;
    let (kb, tab) = devices()?;
    let _rk = Route::add(&adm, vdi_match::NAME, true, &kb.name)?;
    let _rt = Route::add(&adm, vdi_match::NAME, true, &tab.name)?;
    let start = Instant::now();
    let s0 = loop {
        match adm.stats(vm) {
            Ok(s) if s.vcpus >= 1 => break s,
            _ if start.elapsed() > T => bail!(
                "VM {vm} has no followed vCPU thread after {T:?} (is its QEMU connected to \
                 vd-ivshmem-server --input {vm}?)"
            ),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    adm.focus(vm).context("VDI_IOC_FOCUS")?;
    if let Some(p) = stop_pid {
        let n = stop_vcpus(p)?;
        wait_not_running(&adm, vm)?;
        println!("{n} vCPU thread(s) of {p} stopped");
    }
    let mut qmp = match qmp_pause {
        Some(p) => {
            let mut q =
                vdd::vmm::Qmp::connect(p).map_err(|e| anyhow!("QMP {}: {e}", p.display()))?;
            q.execute(&qmp::stop {})
                .map_err(|e| anyhow!("QMP stop: {e}"))?;
            let st = qmp_status(&mut q)?;
            check!(
                matches!(st, RunState::paused),
                "QMP stop: the guest is paused (status {st:?})"
            );
            Some(q)
        }
        None => None,
    };
    let mut sum = Summary::default();
    let mut sent = 0usize;
    if stop_pid.is_some() || qmp.is_some() {
        // The scheduling tests' 10,000-event burst: keys and motion, sized so that fully
        // coalesced it fits the module's queue without a SYN_DROPPED.
        let burst = sched_burst()?;
        emit_chunks(&kb, &burst, 64)?;
        sent += burst.len();
        burst.iter().for_each(|&e| sum.add(e));
    } else {
        for i in 0..frames {
            let (on_tablet, evs) = frame(i);
            if on_tablet { &tab } else { &kb }.emit(&evs)?;
            sent += evs.len();
            evs.iter().for_each(|&e| sum.add(e));
        }
    }
    for down in [1, 0] {
        let end = [(EV_KEY, KEY_F12, down), (EV_SYN, SYN_REPORT, 0)];
        kb.emit(&end)?;
        sent += end.len();
        end.iter().for_each(|&e| sum.add(e));
    }
    if let Some(p) = stop_pid {
        let s1 = adm.stats(vm)?;
        let queued = s1.queued - s0.queued;
        println!(
            "while stopped: {sent} events written, {queued} queued, {} delivered at once, depth {}, \
             coalesced {}, dropped {}",
            s1.delivered_immediately - s0.delivered_immediately,
            s1.queue_depth,
            s1.coalesced,
            s1.dropped
        );
        check!(
            s1.delivered_immediately == s0.delivered_immediately && s1.running == 0,
            "nothing went to the ring while every vCPU thread was stopped"
        );
        kill(Pid::from_raw(p as i32), Signal::SIGCONT)?;
    }
    if let Some(q) = &mut qmp {
        let s1 = adm.stats(vm)?;
        println!(
            "while paused (QMP stop: the vCPU threads wait, asleep by choice, so events go to \
             the ring until it is full, then to the queue): {sent} events written, {} at once, \
             {} queued, depth {}, coalesced {}, dropped {}",
            s1.delivered_immediately - s0.delivered_immediately,
            s1.queued - s0.queued,
            s1.queue_depth,
            s1.coalesced,
            s1.dropped
        );
        q.execute(&qmp::cont {})
            .map_err(|e| anyhow!("QMP cont: {e}"))?;
        let st = qmp_status(q)?;
        check!(
            matches!(st, RunState::running),
            "QMP cont: the guest runs again (status {st:?})"
        );
    }
    println!("FEED {}", sum.line());
    // What survives coalescing (motion frames merged while queued): keys and sums.
    println!(
        "FEEDKEYS keys={} keyhash={} relx={} rely={} dropped=0",
        sum.keys, sum.keyhash, sum.relx, sum.rely
    );
    Ok(())
}

/// Waits until `path` exists (the test script's go for a round).
fn wait_file(path: &std::path::Path, limit: Duration) -> Result<()> {
    let t = Instant::now();
    while !path.exists() {
        if t.elapsed() > limit {
            bail!("{} never appeared", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Every thread of `pid` shows as stopped in /proc.
fn all_stopped(pid: u32) -> bool {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    rd.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
            .is_some_and(|c| c == 'T' || c == 't')
    })
}

/// `input-feed --virtio`: the comparison path (what users run today): the same uinput devices,
/// read by the guest's QEMU through `-object input-linux` and given to the guest as
/// virtio-keyboard/-mouse/-tablet. The devices come first (QEMU opens their evdev nodes when it
/// starts): their nodes go to `nodes` (`KBD=... TAB=...`). Round 1, after `<go>.1` exists: the
/// mixed frames; round 2, after `<go>.2`: QEMU (pid in `pid_file`) SIGSTOPped, every one of its
/// threads seen stopped, the 10,000-event burst, SIGCONT. Prints `FEED`/`FEEDKEYS` per round.
pub fn feed_virtio(
    nodes: &std::path::Path,
    go: &std::path::Path,
    pid_file: &std::path::Path,
    frames: usize,
) -> Result<()> {
    let (kb, tab) = devices()?;
    std::fs::write(
        nodes,
        format!(
            "KBD={}\nTAB={}\n",
            kb.event_node()?.display(),
            tab.event_node()?.display()
        ),
    )?;
    let limit = Duration::from_secs(300);
    let round = |r: u32| go.with_extension(r.to_string());
    let end = |sum: &mut Summary| -> Result<()> {
        for down in [1, 0] {
            let e = [(EV_KEY, KEY_F12, down), (EV_SYN, SYN_REPORT, 0)];
            kb.emit(&e)?;
            e.iter().for_each(|&x| sum.add(x));
        }
        Ok(())
    };
    let report = |r: u32, sum: &Summary| {
        println!("FEED{r} {}", sum.line());
        println!(
            "FEEDKEYS{r} keys={} keyhash={} relx={} rely={} dropped=0",
            sum.keys, sum.keyhash, sum.relx, sum.rely
        );
    };
    wait_file(&round(1), limit)?;
    let mut sum = Summary::default();
    for i in 0..frames {
        let (on_tablet, evs) = frame(i);
        if on_tablet { &tab } else { &kb }.emit(&evs)?;
        evs.iter().for_each(|&e| sum.add(e));
    }
    end(&mut sum)?;
    report(1, &sum);
    wait_file(&round(2), limit)?;
    let qpid: u32 = std::fs::read_to_string(pid_file)?
        .trim()
        .parse()
        .context("QEMU's pid")?;
    kill(Pid::from_raw(qpid as i32), Signal::SIGSTOP)?;
    let t = Instant::now();
    while !all_stopped(qpid) {
        if t.elapsed() > T {
            bail!("QEMU {qpid} never stopped");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut sum = Summary::default();
    let burst = sched_burst()?;
    emit_chunks(&kb, &burst, 64)?;
    burst.iter().for_each(|&e| sum.add(e));
    end(&mut sum)?;
    kill(Pid::from_raw(qpid as i32), Signal::SIGCONT)?;
    report(2, &sum);
    Ok(())
}
