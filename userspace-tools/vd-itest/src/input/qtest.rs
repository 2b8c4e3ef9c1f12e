//! `vd-itest qtest-input`: a stock QEMU guest's vd input device without a guest OS (issue 13, in
//! `make test`). QEMU runs under qtest with an `ivshmem-doorbell` device on a
//! `vd-ivshmem-server --input VM` socket; this program plays the guest driver through qtest:
//! programs the BARs, checks the geometry line (`dev_kind::INPUT`), and reads the event ring in
//! BAR2 (vd-sys's `EventReader` over qtest accesses), ringing the doorbell (QEMU's ioeventfd:
//! the VM's kick eventfd) when the module asks. Everything on the host is the real thing: the
//! server's VM sink in the shared memory, its attach of QEMU's vCPU thread (`CPU 0/TCG`), the
//! module's queueing while that thread is stopped, the VM's end with QEMU.
//!
//! Round 1: 304 frames while QEMU runs: all in the ring at once, in order. Round 2: QEMU
//! SIGSTOPped (its vCPU thread seen stopped), the 10,000-event burst: nothing reaches the ring
//! (the module's counters, and the ring once QEMU answers again), SIGCONT: every key once and in
//! order, exact motion sums, no SYN_DROPPED. Round 3: QEMU stopped with 200 frames queued and
//! killed (SIGKILL): the VM goes away with it (the server drops the sink when QEMU's socket
//! closes); the caller then checks that the module has no reference left and unloads.

use super::fixtures::*;
use crate::qtestguest::{map_device, QtestMem, BAR0, DOORBELL};
use std::path::PathBuf;
use vd_ring::{dev_kind, RingMem, OFF_DATA_LEN, OFF_DEV_KIND, OFF_DOORBELL, OFF_ENTRY_SIZE};

#[derive(clap::Args)]
pub struct Args {
    /// The `vd-ivshmem-server --input` socket.
    #[arg(long)]
    socket: PathBuf,
    /// The server's VM id.
    #[arg(long)]
    vm: u32,
    /// The QEMU binary.
    #[arg(long, default_value = "/usr/bin/qemu-system-x86_64")]
    qemu: PathBuf,
}

/// The guest side: the ring in BAR2 and what was taken from it.
struct Reader {
    mem: QtestMem,
    rd: EventReader,
    doorbell: u32,
    got: Vec<RingEvent>,
    kicks: u64,
}

impl Reader {
    /// Takes what is in the ring; rings the doorbell when the module asked (a full ring).
    fn drain(&mut self) -> Result<usize> {
        let old = self.rd.consumed();
        let n = self.rd.drain(&self.mem, &mut self.got);
        self.mem.error()?;
        let n = n.map_err(|e| anyhow!("the event ring: {e:?}"))? as usize;
        if n > 0 && self.rd.kick_needed(&self.mem, old) {
            self.mem.q().writel(BAR0 + DOORBELL, self.doorbell)?;
            self.kicks += 1;
        }
        Ok(n)
    }
    /// Drains until `done(everything taken)`, polling (no interrupts under qtest).
    fn until(&mut self, done: impl Fn(&[RingEvent]) -> bool) -> Result<bool> {
        let t = Instant::now();
        loop {
            let n = self.drain()?;
            if done(&self.got) {
                return Ok(true);
            }
            if t.elapsed() > T {
                return Ok(false);
            }
            if n == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

pub fn run(a: Args) -> Result<()> {
    let adm = Input::open().context("open /dev/vd_input: is vd_input_irq loaded?")?;
    let mem = map_device(&a.qemu, &a.socket)?;
    let qpid = mem.q().pid();
    let (kind, esz, dlen, doorbell) = (
        mem.load_u32(OFF_DEV_KIND),
        mem.load_u32(OFF_ENTRY_SIZE),
        mem.load_u32(OFF_DATA_LEN),
        mem.load_u32(OFF_DOORBELL),
    );
    mem.error()?;
    check!(
        kind == dev_kind::INPUT
            && esz == VDI_ENTRY_SIZE
            && dlen as usize == vd_ring::caps::CAPS_LEN
            && doorbell == 0,
        "BAR2's geometry line: an input ring (kind {kind}, {esz}-byte slots, a {dlen}-byte \
         capabilities block, doorbell {doorbell:#x})"
    );
    let mut rd = EventReader::attach(&mem).map_err(|e| anyhow!("event ring header: {e:?}"))?;
    rd.disable_irq(&mem);
    mem.error()?;
    let mut g = Reader {
        mem,
        rd,
        doorbell,
        got: vec![],
        kicks: 0,
    };

    // The server follows QEMU's vCPU thread(s).
    let n_vcpu = vd_sys::qemu::vcpu_threads(qpid)?.len();
    let t = Instant::now();
    let s0 = loop {
        let s = adm
            .stats(a.vm)
            .with_context(|| format!("VDI_IOC_STATS of VM {}", a.vm))?;
        if s.vcpus as usize == n_vcpu && n_vcpu > 0 {
            break s;
        }
        if t.elapsed() > T {
            bail!(
                "VM {}: {} vCPU threads followed, QEMU {qpid} has {n_vcpu}",
                a.vm,
                s.vcpus
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    check!(
        true,
        "VM {}: QEMU {qpid}'s {n_vcpu} vCPU thread(s) followed",
        a.vm
    );
    let kb = kbd("qtest-input")?;
    let _route = Route::add(&adm, vdi_match::NAME, true, &kb.name)?;
    adm.focus(a.vm)?;

    // Round 1: QEMU runs (its vCPU thread waits, asleep by choice): at once, in order.
    let mut sent = vec![];
    // 304 frames: 76 key frames, every key pressed is released (a key left down would make the
    // input core drop a later press of it).
    for i in 0..304 {
        let fr: Vec<Ev> = if i % 4 == 0 {
            key_frame(i / 8, (i / 4) % 2 == 0).to_vec()
        } else {
            motion_frame(1, -1)
        };
        kb.emit(&fr)?;
        sent.extend(fr);
    }
    let ok = g.until(|got| got.len() >= sent.len())?;
    let got = triples(&evs_of(&g.got));
    check!(
        ok && got == sent,
        "round 1: {} of {} events read from BAR2, in order ({} doorbell rings)",
        got.len(),
        sent.len(),
        g.kicks
    );
    let s1 = adm.stats(a.vm)?;
    check!(
        s1.delivered_immediately - s0.delivered_immediately > 0,
        "round 1: events went to the ring at once while QEMU ran ({} at once, {} queued)",
        s1.delivered_immediately - s0.delivered_immediately,
        s1.queued - s0.queued
    );

    // Round 2: QEMU stopped: the burst waits in the module's queue.
    let base = g.got.len();
    stop_vcpus(qpid)?;
    wait_not_running(&adm, a.vm)?;
    let burst = sched_burst()?;
    emit_chunks(&kb, &burst, 64)?;
    let s2 = adm.stats(a.vm)?;
    check!(
        s2.delivered_immediately == s1.delivered_immediately && s2.running == 0,
        "round 2: QEMU's vCPU thread stopped: nothing of the {}-event burst went to the ring \
         ({} queued, depth {}, coalesced {})",
        burst.len(),
        s2.queued - s1.queued,
        s2.queue_depth,
        s2.coalesced
    );
    kill(Pid::from_raw(qpid as i32), Signal::SIGCONT)?;
    let keys = burst.iter().filter(|e| e.0 == EV_KEY).count();
    let ok = g.until(|got| got[base..].iter().filter(|e| e.ev.ty == EV_KEY).count() >= keys)?;
    // What may still come after the last key: the end of the burst's motion.
    let _ = g.until(|got| got.len() > base && adm.stats(a.vm).is_ok_and(|s| s.queue_depth == 0));
    g.drain()?;
    let back = evs_of(&g.got[base..]);
    let verdict = verify_coalesced(&burst, &back);
    check!(
        ok && verdict.is_ok(),
        "round 2: after SIGCONT, {} events ({} keys) read, every key once and in order, exact \
         motion sums, no SYN_DROPPED ({} doorbell rings){}",
        back.len(),
        keys,
        g.kicks,
        verdict.err().map(|e| format!(": {e}")).unwrap_or_default()
    );

    // Round 3: QEMU dies with events queued: the VM goes with it.
    stop_vcpus(qpid)?;
    wait_not_running(&adm, a.vm)?;
    for i in 0..200 {
        kb.emit(&motion_frame(1 + (i % 2), 1))?;
    }
    let s3 = adm.stats(a.vm)?;
    check!(
        s3.queue_depth > 0,
        "round 3: {} events wait for the stopped QEMU",
        s3.queue_depth
    );
    let mut q = g.mem.into_qtest();
    q.signal(Signal::SIGKILL)?;
    let _ = q.wait();
    let t = Instant::now();
    while adm.stats(a.vm).is_ok() {
        if t.elapsed() > T {
            bail!("VM {} still exists {T:?} after its QEMU was killed", a.vm);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    check!(
        true,
        "round 3: QEMU killed with events queued: VM {} is gone",
        a.vm
    );
    Ok(())
}
