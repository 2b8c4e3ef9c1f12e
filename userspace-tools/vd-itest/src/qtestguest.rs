//! `vd-itest qtest-guest`: a vd disk's guest without a guest OS. A stock QEMU with an
//! `ivshmem-doorbell` device on a `vd-ivshmem-server` socket runs under qtest (`-qtest stdio`,
//! no CPU running); this program plays the guest driver through qtest: programs the device's
//! BARs (BAR0 registers, BAR2 the channel's shared memory), checks the vd geometry line,
//! connects, and moves block I/O through the ring (vd-ring's `GuestRing` over qtest memory
//! accesses): pattern writes into the data area, `BLK_WRITE_DA`, the doorbell (QEMU's ioeventfd:
//! the channel's kick eventfd), `BLK_READ_DA` of the same sectors, comparison. Responses are
//! polled (no MSI-X). The channel, the kick/call eventfds and the teardown when QEMU dies are the
//! real ones, without the emulator's nested SVM.
//!
//! `--requests N`: N verified requests, then QEMU quits normally (SIGTERM, exit 0).
//! `--pause-file PATH` (with `--requests`): after the I/O, QEMU's pid is written to PATH and
//! QEMU stays up until PATH is removed, so a test can look at the live channel (its `kick_pid`
//! must be QEMU: QEMU's own thread signals the ioeventfd under qtest, there is no KVM).
//! `--kill-after N`: verified I/O until N requests were published, then batches of writes until
//! one finds requests published and not all answered: then QEMU gets SIGKILL (mid-I/O).

use crate::check;
use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::Signal;
use std::cell::RefCell;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vd_ring::{
    dev_kind, op, BlkDaReq, GuestRing, RingMem, BLK_F_FUA, FRONT_CONNECTED, OFF_DATA_LEN,
    OFF_DATA_OFF, OFF_DEV_KIND, OFF_DOORBELL, OFF_FRONT_STATE, OFF_RSP_PROD,
};
use vd_testkit::qtest::Qtest;

#[derive(clap::Args)]
pub struct Args {
    /// The vd-ivshmem-server's socket.
    #[arg(long)]
    socket: PathBuf,
    /// The QEMU binary.
    #[arg(long, default_value = "/usr/bin/qemu-system-x86_64")]
    qemu: PathBuf,
    /// Verified requests (writes and reads), then a normal quit.
    #[arg(
        long,
        conflicts_with = "kill_after",
        required_unless_present = "kill_after"
    )]
    requests: Option<u64>,
    /// Verified I/O until this many requests were published, then SIGKILL with requests in
    /// flight.
    #[arg(long)]
    kill_after: Option<u64>,
    /// Bytes per request (KiB, a multiple of 4).
    #[arg(long, default_value_t = 16)]
    chunk_kib: u32,
    /// Requests per batch.
    #[arg(long, default_value_t = 8)]
    batch: u32,
    /// Seed of the data patterns (and of the sectors used).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The disk's expected size in bytes (checked against the host's answer).
    #[arg(long)]
    disk_bytes: Option<u64>,
    /// After the verified I/O (`--requests`), write QEMU's pid to this file (atomically: a
    /// temporary file renamed) and keep QEMU running until the file is removed (at most
    /// `PAUSE_MAX`), then quit as usual.
    #[arg(long, requires = "requests")]
    pause_file: Option<PathBuf>,
}

/// Upper bound of QEMU's life, and of every wait.
const LIMIT: Duration = Duration::from_secs(120);
const WAIT: Duration = Duration::from_secs(20);
/// Longest `--pause-file` pause (within [`LIMIT`]).
const PAUSE_MAX: Duration = Duration::from_secs(60);
/// The ivshmem device's slot on bus 0.
const SLOT: u32 = 4;
/// BAR0 (256 bytes of registers) in q35's 32-bit PCI hole.
pub(crate) const BAR0: u64 = 0xe000_0000;
/// BAR2 (the shared memory, a 64-bit BAR): above 4 GiB, aligned for any size up to this.
const BAR2: u64 = 0x10_0000_0000;
/// BAR0 registers.
const IVPOSITION: u64 = 8;
pub(crate) const DOORBELL: u64 = 12;
/// The size query's request id (above every data request's).
const SIZE_ID: u64 = 1 << 40;
/// Largest request of the kill batches.
const KILL_CHUNK: usize = 128 << 10;
/// Attempts at catching requests in flight before giving up.
const KILL_TRIES: u32 = 50;

/// vd-ring's memory accessors over qtest commands on BAR2. The trait's accessors cannot fail:
/// the first failure (QEMU gone, a bad answer) is kept, accesses after it do nothing and read 0,
/// and [`Self::error`] hands it out.
pub(crate) struct QtestMem {
    q: RefCell<Qtest>,
    base: u64,
    size: usize,
    err: RefCell<Option<anyhow::Error>>,
}

impl QtestMem {
    /// The qtest connection.
    pub(crate) fn q(&self) -> std::cell::RefMut<'_, Qtest> {
        self.q.borrow_mut()
    }
    /// Gives the qtest connection back (QEMU's process).
    pub(crate) fn into_qtest(self) -> Qtest {
        self.q.into_inner()
    }
    fn run<T: Default>(&self, f: impl FnOnce(&mut Qtest) -> Result<T>) -> T {
        if self.err.borrow().is_some() {
            return T::default();
        }
        match f(&mut self.q.borrow_mut()) {
            Ok(v) => v,
            Err(e) => {
                *self.err.borrow_mut() = Some(e);
                T::default()
            }
        }
    }
    fn addr(&self, off: usize) -> u64 {
        self.base + off as u64
    }
    /// The first failed access, if any.
    pub(crate) fn error(&self) -> Result<()> {
        match self.err.borrow_mut().take() {
            Some(e) => Err(e.context("qtest access to the shared memory")),
            None => Ok(()),
        }
    }
}

impl RingMem for QtestMem {
    fn size(&self) -> usize {
        self.size
    }
    fn load_u32(&self, off: usize) -> u32 {
        self.run(|q| q.readl(self.addr(off)))
    }
    // qtest commands run one at a time in QEMU's main loop, each to completion: every access
    // is ordered after the ones before it.
    fn load_acquire_u32(&self, off: usize) -> u32 {
        self.load_u32(off)
    }
    fn store_u32(&self, off: usize, v: u32) {
        self.run(|q| q.writel(self.addr(off), v))
    }
    fn store_release_u32(&self, off: usize, v: u32) {
        self.store_u32(off, v)
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        self.run(|q| q.read(self.addr(off), dst))
    }
    fn write(&self, off: usize, src: &[u8]) {
        self.run(|q| q.write(self.addr(off), src))
    }
}

/// The data pattern of a sector: 64-bit words of splitmix64 over (seed, sector, word).
fn pattern(seed: u64, sector: u64, buf: &mut [u8]) {
    for (i, w) in buf.chunks_exact_mut(8).enumerate() {
        let mut z = seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(sector.wrapping_mul(512).wrapping_add(i as u64 * 8));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        w.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
}

/// The guest: the device programmed, the ring attached.
struct Guest {
    mem: QtestMem,
    fe: GuestRing,
    doorbell: u32,
    /// Offset of the data area in BAR2, and its length.
    data_off: usize,
    data_len: usize,
    /// Requests published so far (data requests and the size query).
    published: u64,
    answered: u64,
}

impl Guest {
    fn q(&self) -> std::cell::RefMut<'_, Qtest> {
        self.mem.q.borrow_mut()
    }

    fn kick(&mut self) -> Result<()> {
        let db = self.doorbell;
        self.q().writel(BAR0 + DOORBELL, db)
    }

    /// Publishes what was pushed and rings the doorbell (always: the first kick of a fresh
    /// channel must not depend on `req_event`, and a doorbell too many costs nothing here).
    fn publish(&mut self, n: u32) -> Result<()> {
        self.fe.publish(&self.mem);
        self.mem.error()?;
        self.published += u64::from(n);
        self.kick()
    }

    /// Requests published and not answered yet, as the ring says (`req_prod - rsp_prod`; the
    /// producer index is ours: `published` requests so far).
    fn in_flight(&mut self) -> Result<u32> {
        let r = self.mem.load_u32(OFF_RSP_PROD);
        self.mem.error()?;
        Ok((self.published as u32).wrapping_sub(r))
    }

    /// Waits for `ids` to be answered (in any order); the statuses and response payloads by id.
    fn wait(&mut self, ids: &[u64]) -> Result<Vec<(i32, Vec<u8>)>> {
        let mut out = vec![None; ids.len()];
        let mut left = ids.len();
        let mut buf = vec![0u8; self.fe.geometry().max_payload()];
        let deadline = Instant::now() + WAIT;
        while left > 0 {
            let r = self.fe.pop_response(&self.mem, &mut buf);
            self.mem.error()?;
            match r.map_err(|e| anyhow::anyhow!("the host's response ring: {e:?}"))? {
                Some(rsp) => {
                    let i = ids
                        .iter()
                        .position(|&id| id == rsp.id)
                        .with_context(|| format!("a response with unknown id {}", rsp.id))?;
                    ensure!(out[i].is_none(), "two responses to request {}", rsp.id);
                    let len = (rsp.len as usize).min(buf.len());
                    out[i] = Some((rsp.status, buf[..len].to_vec()));
                    left -= 1;
                    self.answered += 1;
                }
                None => {
                    if self.fe.backend_failed(&self.mem) {
                        bail!("the host marked the ring failed");
                    }
                    if Instant::now() > deadline {
                        bail!("{left} of {} requests unanswered after {WAIT:?}", ids.len());
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Pushes one data-area block request.
    fn push_da(&mut self, id: u64, opc: u16, req: BlkDaReq) -> Result<()> {
        self.fe
            .push_request(&self.mem, id, opc, &req.to_bytes())
            .map_err(|e| anyhow::anyhow!("push_request: {e:?}"))?;
        self.mem.error()
    }
}

/// Starts QEMU with an `ivshmem-doorbell` device on `socket` and programs its BARs: BAR2 (the
/// shared memory) as [`QtestMem`].
pub(crate) fn map_device(qemu: &std::path::Path, socket: &std::path::Path) -> Result<QtestMem> {
    let mut cmd = Qtest::command(qemu);
    cmd.arg("-chardev")
        .arg(format!("socket,path={},id=vd0", socket.display()))
        .args([
            "-device",
            &format!("ivshmem-doorbell,chardev=vd0,vectors=1,addr={SLOT:#x}.0"),
        ]);
    let mut q = Qtest::spawn(cmd, LIMIT)?;
    println!("QEMU pid {} (qtest)", q.pid());
    let id = q.cfg_read(SLOT, 0)?;
    check!(
        id == 0x1110_1af4,
        "the ivshmem device at slot {SLOT} ({id:#x})"
    );
    // BAR2's size: all ones written, the size mask read back (64-bit BAR, registers 0x18/0x1c).
    q.cfg_write(SLOT, 0x18, !0)?;
    q.cfg_write(SLOT, 0x1c, !0)?;
    let lo = q.cfg_read(SLOT, 0x18)?;
    let hi = q.cfg_read(SLOT, 0x1c)?;
    ensure!(lo & 0x6 == 0x4, "BAR2 is not a 64-bit memory BAR ({lo:#x})");
    let mask = (u64::from(hi) << 32) | u64::from(lo & !0xf);
    let size = (!mask).wrapping_add(1);
    check!(
        size.is_power_of_two() && (4096..=BAR2).contains(&size),
        "BAR2 (the shared memory) is {size} bytes"
    );
    q.cfg_write(SLOT, 0x10, BAR0 as u32)?;
    q.cfg_write(SLOT, 0x18, BAR2 as u32)?;
    q.cfg_write(SLOT, 0x1c, (BAR2 >> 32) as u32)?;
    q.cfg_write(SLOT, 0x04, 0x2)?; // memory space on
    let pos = q.readl(BAR0 + IVPOSITION)?;
    println!("IVPosition (the id the server gave): {pos}");
    Ok(QtestMem {
        q: RefCell::new(q),
        base: BAR2,
        size: size as usize,
        err: RefCell::new(None),
    })
}

/// Starts QEMU and programs the device: the guest, attached to the ring.
fn setup(a: &Args) -> Result<Guest> {
    let mem = map_device(&a.qemu, &a.socket)?;
    let size = mem.size as u64;
    let fe = GuestRing::attach(&mem);
    mem.error()?;
    let fe = fe.map_err(|e| anyhow::anyhow!("the vd geometry line: {e:?}"))?;
    let geo = fe.geometry();
    let data_off = mem.load_u32(OFF_DATA_OFF) as usize;
    let data_len = mem.load_u32(OFF_DATA_LEN) as usize;
    let kind = mem.load_u32(OFF_DEV_KIND);
    let doorbell = mem.load_u32(OFF_DOORBELL);
    mem.error()?;
    check!(
        kind == dev_kind::BLOCK,
        "the geometry line: a vd ring of {} x {} bytes for a disk (kind {kind})",
        geo.entries(),
        geo.entry_size()
    );
    check!(
        data_off >= geo.total_bytes()
            && data_len > 0
            && data_off
                .checked_add(data_len)
                .is_some_and(|e| e <= size as usize),
        "the data area ({data_len} bytes at {data_off:#x}) is inside BAR2 after the ring"
    );
    ensure!(
        doorbell == 0,
        "doorbell value {doorbell:#x}: expected peer 0, vector 0"
    );
    let mut g = Guest {
        mem,
        fe,
        doorbell,
        data_off,
        data_len,
        published: 0,
        answered: 0,
    };
    // Connected, as vd_front says it once its interrupt is live; responses are polled here.
    g.fe.disable_irq(&g.mem);
    g.mem.store_release_u32(OFF_FRONT_STATE, FRONT_CONNECTED);
    g.mem.error()?;
    Ok(g)
}

/// The disk's size, from `BLK_GET_SIZE`.
fn disk_size(g: &mut Guest) -> Result<u64> {
    g.fe.push_request(&g.mem, SIZE_ID, op::BLK_GET_SIZE, &[])
        .map_err(|e| anyhow::anyhow!("push_request: {e:?}"))?;
    g.publish(1)?;
    let r = g.wait(&[SIZE_ID])?;
    let (st, p) = &r[0];
    ensure!(*st == 0, "BLK_GET_SIZE answered {st}");
    let b: [u8; 8] = p
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .context("BLK_GET_SIZE: a short answer")?;
    Ok(u64::from_le_bytes(b))
}

/// `--pause-file`: publishes QEMU's pid in `path` and waits until `path` is removed.
fn pause(path: &std::path::Path, qemu: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{qemu}\n")).with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    println!("paused: QEMU pid {qemu} in {}", path.display());
    let t = Instant::now();
    while path.exists() {
        ensure!(
            t.elapsed() < PAUSE_MAX,
            "{} was not removed within {PAUSE_MAX:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Runs the guest; see the module's documentation.
pub fn run(a: Args) -> Result<()> {
    let t0 = Instant::now();
    let chunk = a.chunk_kib as usize * 1024;
    ensure!(
        chunk > 0 && chunk.is_multiple_of(4096),
        "--chunk-kib: a multiple of 4"
    );
    let mut g = setup(&a)?;
    let batch = a.batch.min(g.fe.geometry().entries()) as usize;
    ensure!(batch > 0, "--batch 0");
    ensure!(
        batch * chunk <= g.data_len,
        "{batch} requests of {chunk} bytes do not fit the {} byte data area",
        g.data_len
    );
    let size = disk_size(&mut g)?;
    match a.disk_bytes {
        Some(want) => check!(size == want, "the disk's size is {size} bytes"),
        None => println!("the disk's size is {size} bytes"),
    }
    let slots = size / chunk as u64;
    ensure!(slots >= batch as u64, "a disk of {size} bytes is too small");
    let sect = chunk as u64 / 512;
    let limit = a.requests.or(a.kill_after).unwrap_or(0);
    let mut next_id = 0u64;
    let mut buf = vec![0u8; chunk];
    let mut rbuf = vec![0u8; chunk];
    let mut verified = 0u64;
    // Verified batches: writes of patterns, reads of the same sectors, comparison.
    let mut b = 0u64;
    while verified < limit {
        // Distinct chunks of the disk per batch, spread over it.
        let sectors: Vec<u64> = (0..batch as u64)
            .map(|i| ((a.seed.wrapping_mul(7919) + b * batch as u64 + i) % slots) * sect)
            .collect();
        let seed = a.seed ^ (b << 20);
        let mut ids = Vec::with_capacity(batch);
        for (i, &s) in sectors.iter().enumerate() {
            for (k, c) in buf.chunks_exact_mut(512).enumerate() {
                pattern(seed, s + k as u64, c);
            }
            let doff = i * chunk;
            g.mem.write(g.data_off + doff, &buf);
            let req = BlkDaReq {
                sector: s,
                len: chunk as u32,
                flags: if i % 2 == 1 { BLK_F_FUA } else { 0 },
                data_off: doff as u64,
            };
            g.push_da(next_id, op::BLK_WRITE_DA, req)?;
            ids.push(next_id);
            next_id += 1;
        }
        g.publish(batch as u32)?;
        for (i, (st, _)) in g.wait(&ids)?.iter().enumerate() {
            ensure!(*st == 0, "write of sector {} answered {st}", sectors[i]);
        }
        // The data area is overwritten before the reads: what is compared comes from the disk.
        g.q()
            .memset(BAR2 + g.data_off as u64, (batch * chunk) as u64, 0xa5)?;
        ids.clear();
        for (i, &s) in sectors.iter().enumerate() {
            let req = BlkDaReq {
                sector: s,
                len: chunk as u32,
                flags: 0,
                data_off: (i * chunk) as u64,
            };
            g.push_da(next_id, op::BLK_READ_DA, req)?;
            ids.push(next_id);
            next_id += 1;
        }
        g.publish(batch as u32)?;
        for (i, (st, _)) in g.wait(&ids)?.iter().enumerate() {
            ensure!(*st == 0, "read of sector {} answered {st}", sectors[i]);
        }
        for (i, &s) in sectors.iter().enumerate() {
            g.mem.read(g.data_off + i * chunk, &mut rbuf);
            g.mem.error()?;
            for (k, c) in buf.chunks_exact_mut(512).enumerate() {
                pattern(seed, s + k as u64, c);
            }
            if rbuf != buf {
                let at = rbuf.iter().zip(&buf).position(|(x, y)| x != y).unwrap_or(0);
                bail!(
                    "sector {}: read back differs from what was written (byte {at} of {chunk})",
                    s
                );
            }
        }
        verified += 2 * batch as u64;
        b += 1;
    }
    println!(
        "ok: {verified} requests verified ({b} batches of {batch} writes and {batch} reads of \
         {chunk} bytes, half of the writes FUA)"
    );
    if a.requests.is_some() {
        if let Some(p) = &a.pause_file {
            pause(p, g.q().pid())?;
        }
        let mut q = g.mem.q.into_inner();
        q.signal(Signal::SIGTERM)?;
        let st = q.wait()?;
        check!(st.success(), "QEMU quits normally after the I/O ({st})");
        println!("qtest-guest: done in {:.1}s", t0.elapsed().as_secs_f64());
        return Ok(());
    }
    // The kill: batches of writes of whatever the data area holds (not verified: QEMU dies
    // under them), until one is caught with requests published and not all answered. As many
    // requests as the ring takes, as large as the data area allows (at most `KILL_CHUNK`): the
    // host's work per batch grows, the qtest commands per batch do not.
    let n = (g.fe.free_slots(&g.mem) as usize).clamp(1, g.data_len / 4096);
    let kchunk = (g.data_len / n / 4096 * 4096).min(KILL_CHUNK);
    let kslots = size / kchunk as u64;
    ensure!(kslots > 0, "a disk of {size} bytes is too small");
    for t in 1..=KILL_TRIES {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let req = BlkDaReq {
                sector: (i as u64 % kslots) * (kchunk as u64 / 512),
                len: kchunk as u32,
                flags: 0,
                data_off: (i * kchunk) as u64,
            };
            g.push_da(next_id, op::BLK_WRITE_DA, req)?;
            ids.push(next_id);
            next_id += 1;
        }
        g.publish(n as u32)?;
        let inflight = g.in_flight()?;
        if inflight > 0 {
            let published = g.published;
            let mut q = g.mem.q.into_inner();
            q.signal(Signal::SIGKILL)?;
            let st = q.wait()?;
            check!(
                st.signal() == Some(Signal::SIGKILL as i32),
                "QEMU killed by SIGKILL with {inflight} of {published} published requests \
                 unanswered (batches of {n} writes of {kchunk} bytes, try {t}, {:.1}s after its \
                 start)",
                t0.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        for (st, _) in g.wait(&ids)? {
            ensure!(st == 0, "a write of the kill batch answered {st}");
        }
    }
    bail!("the host answered every batch of {n} writes before it could be looked at ({KILL_TRIES} tries)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::mman::{mmap, MapFlags, ProtFlags};
    use std::num::NonZeroUsize;
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    use vd_ivshmem::provider::{Channel, ProviderError};
    use vd_ivshmem::testutil::TmpDir;
    use vd_ivshmem::{ChannelGeometry, ChannelProvider, Config, Event, FakeProvider, Server};
    use vd_ring::mem::RawMem;
    use vd_ring::{Geometry, HostRing, HostRingState};

    /// The fake provider's channels, made into rings the way the kernel makes them (geometry
    /// line with the data area, kind and doorbell) and served by a thread playing the block
    /// backend on a disk in memory, a little slowly (1 ms a request, so that a batch is seen in
    /// flight).
    struct RingProvider {
        fake: FakeProvider,
        stop: Arc<AtomicBool>,
        threads: mpsc::Sender<std::thread::JoinHandle<()>>,
    }

    const DISK: usize = 1 << 20;

    fn serve(mem: RawMem, geo: Geometry, data_off: usize, kick: OwnedFd, stop: Arc<AtomicBool>) {
        let mut disk = vec![0u8; DISK];
        let mut be = HostRing::new(geo, HostRingState::default());
        let mut payload = vec![0u8; geo.max_payload()];
        let mut buf = vec![0u8; DISK];
        while !stop.load(Ordering::Relaxed) {
            let mut fds = [nix::poll::PollFd::new(
                kick.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut fds, 10u16).unwrap_or(0) > 0 {
                let mut v = [0u8; 8];
                let _ = nix::unistd::read(kick.as_raw_fd(), &mut v);
            }
            while let Ok(Some(r)) = be.pop_request(&mem, &mut payload) {
                std::thread::sleep(Duration::from_millis(1));
                let (st, out) = match r.op {
                    op::BLK_GET_SIZE => (0, (DISK as u64).to_le_bytes().to_vec()),
                    op::BLK_WRITE_DA | op::BLK_READ_DA => {
                        let q = BlkDaReq::from_bytes(&payload).unwrap();
                        let pos = q.pos().unwrap() as usize;
                        let len = q.len as usize;
                        let d = data_off + q.data_off as usize;
                        if r.op == op::BLK_WRITE_DA {
                            mem.read(d, &mut buf[..len]);
                            disk[pos..pos + len].copy_from_slice(&buf[..len]);
                        } else {
                            mem.write(d, &disk[pos..pos + len]);
                        }
                        (0, Vec::new())
                    }
                    _ => (-22, Vec::new()),
                };
                be.push_response(&mem, r.id, st, &out).unwrap();
                be.publish(&mem);
            }
        }
    }

    impl ChannelProvider for RingProvider {
        fn create(
            &mut self,
            geo: &ChannelGeometry,
            image: std::os::fd::BorrowedFd<'_>,
        ) -> Result<Channel, ProviderError> {
            let ch = self.fake.create(geo, image)?;
            let len = NonZeroUsize::new(ch.size as usize).unwrap();
            let rw = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
            // SAFETY: a fresh shared mapping of the channel's memfd, never unmapped (the test
            // process ends first); only accessed through `RawMem`.
            let p = unsafe { mmap(None, len, rw, MapFlags::MAP_SHARED, &ch.shm, 0) }.unwrap();
            // SAFETY: the mapping is page aligned and `len` bytes long, and stays mapped.
            let mem = unsafe { RawMem::new(p.as_ptr().cast(), len.get()) };
            let g = Geometry::new(geo.entries, geo.slot).unwrap();
            vd_ring::init_ring(&mem, g, 0);
            mem.store_u32(OFF_DATA_OFF, ch.data_off as u32);
            mem.store_u32(OFF_DATA_LEN, geo.data_size);
            mem.store_u32(OFF_DEV_KIND, dev_kind::BLOCK);
            mem.store_u32(OFF_DOORBELL, 0);
            let kick = ch.kick.try_clone().unwrap();
            let (stop, off) = (self.stop.clone(), ch.data_off as usize);
            let t = std::thread::spawn(move || serve(mem, g, off, kick, stop));
            self.threads.send(t).unwrap();
            Ok(ch)
        }
        fn orphan(&mut self, ch: &Channel) -> Result<(), ProviderError> {
            self.fake.orphan(ch)
        }
        fn destroy(&mut self, ch: &Channel) {
            self.fake.destroy(ch)
        }
    }

    /// Runs `qtest-guest` with `extra` arguments against a server with the ring provider.
    fn guest(name: &str, extra: &[&str]) -> Result<()> {
        let qemu = std::env::var("VD_QEMU").unwrap_or("/usr/bin/qemu-system-x86_64".into());
        let dir = TmpDir::new(name);
        let image = dir.join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(DISK as u64)
            .unwrap();
        let cfg = Config {
            socket: dir.join("vd.sock"),
            image,
            geometry: ChannelGeometry::new(64, 64, 1).unwrap(),
            lock_wait: Duration::from_millis(100),
            mode: 0o600,
            gid: None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, threads) = mpsc::channel();
        let provider = RingProvider {
            fake: FakeProvider::default(),
            stop: stop.clone(),
            threads: tx,
        };
        let mut server = Server::bind(cfg.clone(), provider).unwrap();
        let sstop: OwnedFd = nix::sys::eventfd::EventFd::new().unwrap().into();
        let sstop2 = sstop.try_clone().unwrap();
        let st = std::thread::spawn(move || {
            server
                .run(sstop2.as_fd(), &mut |e: &Event| eprintln!("server: {e:?}"))
                .unwrap()
        });
        let mut argv = vec!["qtest-guest", "--socket"];
        let sock = cfg.socket.to_str().unwrap().to_string();
        argv.push(&sock);
        argv.extend(["--qemu", &qemu]);
        argv.extend(extra);
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: Args,
        }
        let r = run(<Cli as clap::Parser>::try_parse_from(&argv).unwrap().a);
        nix::unistd::write(&sstop, &1u64.to_ne_bytes()).unwrap();
        st.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        for t in threads.try_iter() {
            t.join().unwrap();
        }
        r
    }

    #[test]
    fn verified_io_then_a_normal_quit() {
        guest(
            "qtest-clean",
            &["--requests", "32", "--disk-bytes", "1048576"],
        )
        .unwrap();
    }

    #[test]
    fn pause_file_holds_qemu_until_removed() {
        let dir = TmpDir::new("qtest-pause-file");
        let pf = dir.join("paused");
        let pf2 = pf.clone();
        let watcher = std::thread::spawn(move || {
            let t = Instant::now();
            while !pf2.exists() && t.elapsed() < LIMIT {
                std::thread::sleep(Duration::from_millis(10));
            }
            let pid: u32 = std::fs::read_to_string(&pf2)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            // QEMU is up while the file exists.
            let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
            std::fs::remove_file(&pf2).unwrap();
            alive
        });
        let p = pf.to_str().unwrap().to_string();
        guest("qtest-pause", &["--requests", "8", "--pause-file", &p]).unwrap();
        assert!(watcher.join().unwrap(), "QEMU ran while paused");
    }

    #[test]
    fn verified_io_then_sigkill_with_requests_in_flight() {
        guest("qtest-kill", &["--kill-after", "16", "--seed", "3"]).unwrap();
    }

    #[test]
    fn a_disk_of_another_size_fails() {
        let e = guest("qtest-size", &["--requests", "1", "--disk-bytes", "512"]).unwrap_err();
        assert!(format!("{e:#}").contains("size"), "{e:#}");
    }

    #[test]
    fn patterns_differ_by_seed_sector_and_offset() {
        let mut a = [0u8; 512];
        let mut b = [0u8; 512];
        pattern(1, 8, &mut a);
        pattern(1, 8, &mut b);
        assert_eq!(a, b);
        pattern(2, 8, &mut b);
        assert_ne!(a, b);
        pattern(1, 9, &mut b);
        assert_ne!(a, b);
        assert_ne!(a[..8], a[8..16]);
    }
}
