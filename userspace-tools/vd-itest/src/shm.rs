//! vd_evtchn checks of shmem channels (`VDE_IOC_CREATE_SHM`) and orphans (`VDE_IOC_ORPHAN`):
//! this process is the frontend, through a mapping of the channel's file, as QEMU's
//! `ivshmem-doorbell` hands it to a guest; kicks by writing the kick eventfd (what KVM's
//! ioeventfd does), interrupts by reading the call eventfd (what KVM's irqfd consumes).

use crate::check;
use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::mman::{munmap, MapFlags, ProtFlags};
use std::fs::File;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};
use vd_ring::{
    dev_kind, op, BlkDaReq, GuestRing, RingMem, BLK_F_FUA, OFF_DATA_LEN, OFF_DATA_OFF,
    OFF_DEV_KIND, OFF_DOORBELL,
};
use vd_sys::evtchn::{Domain, RingMap, ShmChannel, ShmRequest};
use vd_uapi::*;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// A shmem channel driven as a guest would: ring and data area through the file mapping.
struct Front {
    map: RingMap,
    fe: GuestRing,
    kick: EventFd,
    call: EventFd,
    data_off: usize,
    data_len: usize,
    next_id: u64,
}

const DATA: u32 = 1 << 20;
const DISK: u64 = 4 << 20;

fn shm_req(data_size: u32) -> ShmRequest {
    ShmRequest {
        entries: 16,
        entry_size: 64,
        data_size,
        dev_kind: dev_kind::BLOCK,
        doorbell: 1 << 16,
    }
}

/// A disk image of `DISK` bytes at `path` (a tmpfs file in the test VM).
fn image(path: &str) -> Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("open {path}"))?;
    f.set_len(DISK)?;
    Ok(f)
}

impl Front {
    /// Maps `ch`'s file, checks its geometry line, binds fresh eventfds and attaches `disk`.
    fn new(d: &Domain, ch: &ShmChannel, disk: Option<&File>) -> Result<Self> {
        let size = ch.file.metadata()?.len() as usize;
        let map = RingMap::new(ch.file.as_fd(), 0, size).context("mmap the shm fd")?;
        let m = map.mem();
        let fe = GuestRing::attach(&m).map_err(|e| anyhow!("ring header: {e:?}"))?;
        let kick = EventFd::new(EFD_NONBLOCK)?;
        let call = EventFd::new(EFD_NONBLOCK)?;
        d.bind(ch.info.id, Some(kick.as_raw_fd()), Some(call.as_raw_fd()))
            .context("VDE_IOC_BIND")?;
        if let Some(f) = disk {
            d.attach(ch.info.id, vde_backend::BLOCK, Some(f.as_raw_fd()))
                .context("VDE_IOC_ATTACH block")?;
        }
        Ok(Self {
            data_off: m.load_u32(OFF_DATA_OFF) as usize,
            data_len: m.load_u32(OFF_DATA_LEN) as usize,
            map,
            fe,
            kick,
            call,
            next_id: 0,
        })
    }

    /// One request, its response `(status, payload)`, waiting at most 20 s.
    fn rt(&mut self, opc: u16, payload: &[u8]) -> Result<(i32, Vec<u8>)> {
        let m = self.map.mem();
        let id = self.next_id;
        self.next_id += 1;
        self.fe
            .push_request(&m, id, opc, payload)
            .map_err(|e| anyhow!("push: {e:?}"))?;
        if self.fe.publish(&m) {
            self.kick.write(1)?;
        }
        let start = Instant::now();
        let mut buf = vec![0u8; self.fe.geometry().max_payload()];
        loop {
            match self.fe.pop_response(&m, &mut buf) {
                Ok(Some(r)) if r.id == id => return Ok((r.status, buf[..r.len as usize].to_vec())),
                Ok(Some(r)) => bail!("response id {} for request {id}", r.id),
                Ok(None) => {}
                Err(e) => bail!("response ring broken: {e:?}"),
            }
            if self.fe.backend_failed(&m) {
                bail!("the backend failed the ring");
            }
            if start.elapsed() > Duration::from_secs(20) {
                bail!("no response to request {id} in 20 s");
            }
            if !self.fe.enable_irq(&m) {
                // SAFETY: `call` owns this fd and outlives the borrow.
                let fd = unsafe { BorrowedFd::borrow_raw(self.call.as_raw_fd()) };
                let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
                if poll(&mut fds, PollTimeout::from(200u16))? > 0 {
                    let _ = self.call.read();
                }
            }
        }
    }

    fn da(&mut self, opc: u16, sector: u64, len: u32, flags: u32, data_off: u64) -> Result<i32> {
        let r = BlkDaReq {
            sector,
            len,
            flags,
            data_off,
        };
        let (st, p) = self.rt(opc, &r.to_bytes())?;
        if !p.is_empty() {
            bail!("a data-area request answered {} payload bytes", p.len());
        }
        Ok(st)
    }

    /// Writes `b` into the data area at `off` (through the file mapping).
    fn put(&self, off: usize, b: &[u8]) {
        self.map.mem().write(self.data_off + off, b)
    }

    /// Reads `n` bytes of the data area at `off`.
    fn get(&self, off: usize, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.map.mem().read(self.data_off + off, &mut b);
        b
    }
}

fn pattern(seed: u64, n: usize) -> Vec<u8> {
    (0..n as u64)
        .map(|i| (i.wrapping_mul(131).wrapping_add(seed * 7 + (i >> 9))) as u8)
        .collect()
}

/// Checks of `VDE_IOC_CREATE_SHM` and the data-area block requests.
pub fn shm(path: &str) -> Result<()> {
    let d = Domain::open().context("open /dev/vd_evtchn")?;
    let v = d.version()?;
    check!(v.features & VDE_FEAT_SHM != 0, "VDE_FEAT_SHM announced");
    let bad = |r: ShmRequest| d.create_shm(&r).map(drop).unwrap_err();
    check!(
        bad(ShmRequest {
            data_size: 4095,
            ..shm_req(DATA)
        }) == Errno::EINVAL,
        "data size not a multiple of 4096: EINVAL"
    );
    check!(
        bad(shm_req(VDE_MAX_DATA + 4096)) == Errno::EINVAL,
        "data size above VDE_MAX_DATA: EINVAL"
    );
    check!(
        bad(ShmRequest {
            entries: 6,
            ..shm_req(DATA)
        }) == Errno::EINVAL,
        "bad ring geometry: EINVAL"
    );
    check!(
        bad(ShmRequest {
            dev_kind: 77,
            ..shm_req(DATA)
        }) == Errno::EINVAL,
        "unknown device kind: EINVAL"
    );
    {
        let mut c = VdeCreateShm {
            entries: 16,
            entry_size: 64,
            flags: 1,
            ..Default::default()
        };
        // SAFETY: `_IOWR` of one `VdeCreateShm` on the stack.
        let r =
            unsafe { nix::libc::ioctl(d.file().as_raw_fd(), VDE_IOC_CREATE_SHM as _, &raw mut c) };
        check!(
            r == -1 && Errno::last() == Errno::EINVAL,
            "unknown flag: EINVAL"
        );
    }
    check!(
        d.totals()?.channels == 0,
        "no channel left by the refused creates"
    );

    let disk = image(path)?;
    let ch = d.create_shm(&shm_req(DATA)).context("VDE_IOC_CREATE_SHM")?;
    let size = ch.file.metadata()?.len();
    check!(
        size.is_power_of_two() && size == ch.info.size,
        "the file's size {size} is a power of two and the one answered"
    );
    check!(
        ch.info.data_off == 4096 + 2 * 4096
            && ch.info.data_off + u64::from(DATA) <= size
            && size < 2 * (ch.info.data_off + u64::from(DATA)),
        "ring then data area in the smallest power of two (data_off {}, size {size})",
        ch.info.data_off
    );
    let fdfl = nix::fcntl::fcntl(ch.file.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD)?;
    let fl = nix::fcntl::fcntl(ch.file.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
    check!(
        fdfl & nix::libc::FD_CLOEXEC != 0 && fl & nix::libc::O_ACCMODE == nix::libc::O_RDWR,
        "the fd is close-on-exec and read-write"
    );
    let mut f = Front::new(&d, &ch, Some(&disk))?;
    let m = f.map.mem();
    check!(
        f.data_off as u64 == ch.info.data_off
            && f.data_len == DATA as usize
            && m.load_u32(OFF_DEV_KIND) == dev_kind::BLOCK
            && m.load_u32(OFF_DOORBELL) == 1 << 16,
        "geometry line: data area, device kind, doorbell"
    );

    let (st, p) = f.rt(op::BLK_GET_SIZE, &[])?;
    check!(
        st == 0 && p == DISK.to_le_bytes(),
        "GET_SIZE through the file mapping"
    );
    // Writes from the data area land in the image; reads into it come from the image.
    // Page-aligned, a 128 KiB chunk, a sector inside a page, a range crossing a page boundary
    // off alignment, and 256 KiB from an unaligned start (65 pages: more than one batch of the
    // kernel's page-vector I/O).
    let syncs0 = debugfs_syncs(ch.info.id)?;
    let reqs = [
        (0u64, 4096u32, 0u64),
        (9, 131072, 65536),
        (8000, 512, 4608),
        (300, 1536, 7680),
        (1000, 262144, 512),
    ];
    for (i, (sector, len, area)) in reqs.into_iter().enumerate() {
        let data = pattern(i as u64 + 1, len as usize);
        f.put(area as usize, &data);
        let flags = if i == 1 { BLK_F_FUA } else { 0 };
        let st = f.da(op::BLK_WRITE_DA, sector, len, flags, area)?;
        let mut back = vec![0u8; len as usize];
        disk.read_exact_at(&mut back, sector * 512)?;
        check!(
            st == 0 && back == data,
            "WRITE_DA {len} bytes at sector {sector} (fua {}) is in the image",
            flags != 0
        );
        let other = pattern(i as u64 + 100, len as usize);
        disk.write_all_at(&other, sector * 512)?;
        let dst = u64::from(DATA) - u64::from(len);
        let st = f.da(op::BLK_READ_DA, sector, len, 0, dst)?;
        check!(
            st == 0 && f.get(dst as usize, len as usize) == other,
            "READ_DA {len} bytes at sector {sector} into the area's end"
        );
    }
    let syncs1 = debugfs_syncs(ch.info.id)?;
    check!(
        syncs1 == syncs0 + 1,
        "the one FUA write synced the image, the plain writes and the reads did not (syncs {syncs0} -> {syncs1})"
    );
    check!(
        f.rt(op::BLK_FLUSH, &[])?.0 == 0,
        "FLUSH answers 0 (an fsync of the image)"
    );
    let syncs2 = debugfs_syncs(ch.info.id)?;
    check!(
        syncs2 == syncs1 + 1,
        "the FLUSH synced the image (syncs {syncs1} -> {syncs2})"
    );

    // The device mapping of the channel is the same memory.
    let dev = RingMap::new(d.file().as_fd(), ch.info.mmap_offset, size as usize)
        .context("mmap the device at mmap_offset, whole file")?;
    let probe = pattern(77, 8192);
    f.put(12288, &probe);
    let mut seen = vec![0u8; 8192];
    dev.mem().read(f.data_off + 12288, &mut seen);
    check!(
        seen == probe,
        "bytes written through the file are seen through the device"
    );
    dev.mem().write(f.data_off + 20480, &probe[..4096]);
    check!(
        f.get(20480, 4096) == probe[..4096],
        "bytes written through the device are seen through the file"
    );
    check!(
        RingMap::new(d.file().as_fd(), ch.info.mmap_offset, size as usize + 4096).err()
            == Some(Errno::EINVAL),
        "a device mapping beyond the file: EINVAL"
    );
    drop(dev);

    // Bad requests fail alone (-EINVAL status), the ring keeps working. The guest may also
    // scribble over the geometry line: the kernel keeps its own copy.
    m.store_u32(OFF_DATA_LEN, u32::MAX);
    m.store_u32(OFF_DATA_OFF, 0);
    let cases: [(&str, u16, BlkDaReq); 8] = [
        ("len 0", op::BLK_WRITE_DA, da(0, 0, 0, 0)),
        (
            "len not a sector multiple",
            op::BLK_WRITE_DA,
            da(0, 1000, 0, 0),
        ),
        ("unknown flag", op::BLK_WRITE_DA, da(0, 512, 2, 0)),
        (
            "data beyond the area",
            op::BLK_READ_DA,
            da(0, 512, 0, u64::from(DATA)),
        ),
        (
            "data crossing the area's end",
            op::BLK_READ_DA,
            da(0, 4096, 0, u64::from(DATA) - 512),
        ),
        (
            "data_off overflowing",
            op::BLK_WRITE_DA,
            da(0, 512, 0, u64::MAX - 100),
        ),
        (
            "sectors beyond the disk",
            op::BLK_READ_DA,
            da(DISK / 512, 512, 0, 0),
        ),
        (
            "sector overflowing",
            op::BLK_WRITE_DA,
            da(u64::MAX / 256, 512, 0, 0),
        ),
    ];
    for (what, opc, r) in cases {
        let (st, _) = f.rt(opc, &r.to_bytes())?;
        check!(
            st == -(Errno::EINVAL as i32),
            "{what}: status -EINVAL ({st})"
        );
    }
    let (st, _) = f.rt(op::BLK_WRITE_DA, &[0u8; 10])?;
    check!(
        st == -(Errno::EINVAL as i32),
        "a short payload: status -EINVAL"
    );
    let s = d.stats(ch.info.id)?;
    check!(
        s.state == vde_state::ACTIVE && s.counters.req_errors == 9,
        "the ring still works: state {} and 9 request errors",
        s.state
    );
    let data = pattern(5, 8192);
    f.put(0, &data);
    check!(
        f.da(op::BLK_WRITE_DA, 100, 8192, 0, 0)? == 0,
        "a good request after the bad ones"
    );
    let mut back = vec![0u8; 8192];
    disk.read_exact_at(&mut back, 100 * 512)?;
    check!(back == data, "and its data is in the image");
    drop(f);
    d.destroy(ch.info.id)?;
    Ok(())
}

/// The `syncs` column (requests that made the image stable) of this process's channel `id` in
/// `/sys/kernel/debug/vd_evtchn/channels`.
fn debugfs_syncs(id: u32) -> Result<u64> {
    let dbg = std::fs::read_to_string("/sys/kernel/debug/vd_evtchn/channels").context("debugfs")?;
    let mut lines = dbg.lines();
    let head: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let col = head
        .iter()
        .position(|c| *c == "syncs")
        .context("no syncs column in debugfs")?;
    let me = std::process::id().to_string();
    let id = id.to_string();
    let row = lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|r| r.first() == Some(&me.as_str()) && r.get(1) == Some(&id.as_str()))
        .with_context(|| format!("channel {id} of pid {me} not in debugfs"))?;
    row.get(col)
        .context("short debugfs line")?
        .parse()
        .context("syncs column")
}

fn da(sector: u64, len: u32, flags: u32, data_off: u64) -> BlkDaReq {
    BlkDaReq {
        sector,
        len,
        flags,
        data_off,
    }
}

/// Polls `cond` every 10 ms for at most 10 s.
fn wait_for(mut cond: impl FnMut() -> Result<bool>) -> Result<bool> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if cond()? {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

fn delete_module() -> Result<(), Errno> {
    // SAFETY: `delete_module(name, flags)` reads a NUL-terminated name.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_delete_module,
            c"vd_evtchn".as_ptr(),
            nix::libc::O_NONBLOCK,
        )
    };
    Errno::result(r).map(drop)
}

/// `VDE_IOC_ORPHAN`: a channel outlives its domain while its kick eventfd lives, keeps serving,
/// pins the module; it goes (and the module unloads) once the last kick reference is closed.
/// Leaves the module unloaded.
pub fn orphan(path: &str) -> Result<()> {
    let disk = image(path)?;
    let me = std::process::id();
    let listed = |d: &Domain| -> Result<Vec<VdeListEntry>> {
        Ok(d.list_all()?
            .into_iter()
            .filter(|e| e.domain_pid == me)
            .collect())
    };
    let d = Domain::open()?;
    check!(
        d.orphan(3).unwrap_err() == Errno::ENOENT,
        "unknown id: ENOENT"
    );
    let unbound = d.create_shm(&shm_req(DATA))?;
    check!(
        d.orphan(unbound.info.id).unwrap_err() == Errno::EINVAL,
        "no kick eventfd bound: EINVAL"
    );
    d.destroy(unbound.info.id)?;

    // A channel whose VMM is already gone (its kick eventfd closed) goes as soon as it is
    // orphaned.
    {
        let early = d.create_shm(&shm_req(DATA))?;
        let fe = Front::new(&d, &early, Some(&disk))?;
        drop(fe);
        d.orphan(early.info.id)?;
        let gone = wait_for(|| Ok(listed(&d)?.is_empty()))?;
        check!(
            gone,
            "orphaned after its kick eventfd was closed: torn down at once"
        );
    }

    let ch = d.create_shm(&shm_req(DATA))?;
    let mut f = Front::new(&d, &ch, Some(&disk))?;
    let id = ch.info.id;
    d.orphan(id).context("VDE_IOC_ORPHAN")?;
    check!(
        d.stats(id).unwrap_err() == Errno::ENOENT && d.bind(id, None, None) == Err(Errno::ENOENT),
        "the id left the domain"
    );
    let l = listed(&d)?;
    check!(
        l.len() == 1 && l[0].flags & VDE_LIST_ORPHAN != 0,
        "LIST shows it as an orphan of this process ({} entries)",
        l.len()
    );
    drop(d);
    drop(ch.file);
    // No file of the module is open now: only the orphan holds it.
    check!(
        delete_module() == Err(Errno::EWOULDBLOCK),
        "rmmod while an orphan lives (no device file open): EWOULDBLOCK (module in use)"
    );
    let data = pattern(9, 65536);
    f.put(0, &data);
    let st = f.da(op::BLK_WRITE_DA, 64, 65536, BLK_F_FUA, 0)?;
    let mut back = vec![0u8; 65536];
    disk.read_exact_at(&mut back, 64 * 512)?;
    check!(
        st == 0 && back == data,
        "served after its domain and its fd were closed"
    );
    let d = Domain::open()?;
    // A second reference to the kick eventfd keeps the channel alive when the first goes.
    let dup = nix::unistd::dup(f.kick.as_raw_fd())?;
    // SAFETY: `dup` returned a new descriptor that only this `File` owns.
    let dup = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(dup) };
    let kick = std::mem::replace(&mut f.kick, EventFd::new(EFD_NONBLOCK)?);
    drop(kick);
    // `f.kick` is now an unrelated eventfd: kick through the duplicate.
    let m = f.map.mem();
    f.put(4096, &data[..4096]);
    let req = da(200, 4096, 0, 4096).to_bytes();
    f.fe.push_request(&m, 999, op::BLK_WRITE_DA, &req)
        .map_err(|e| anyhow!("{e:?}"))?;
    f.fe.publish(&m);
    std::io::Write::write_all(&mut &dup, &1u64.to_ne_bytes())?;
    let mut buf = [0u8; 64];
    let served = wait_for(|| {
        Ok(matches!(f.fe.pop_response(&m, &mut buf), Ok(Some(r)) if r.id == 999 && r.status == 0))
    })?;
    check!(
        served && listed(&d)?.len() == 1,
        "one kick reference closed, another open: still listed and serving"
    );
    drop(dup);
    let gone = wait_for(|| Ok(listed(&d)?.is_empty()))?;
    check!(
        gone,
        "the last kick reference closed: the orphan is gone from LIST"
    );
    drop(d);
    drop(f);
    let unloaded = wait_for(|| Ok(delete_module().is_ok()))?;
    check!(unloaded, "rmmod succeeds once the orphan is gone");
    Ok(())
}

/// `VDE_IOC_CREATE_SHM` whose answer cannot be copied out (read-only argument): EFAULT, and no
/// channel, no file descriptor, nothing listed is left.
pub fn efault() -> Result<()> {
    use nix::sys::mman::mprotect;
    let d = Domain::open()?;
    let before = std::fs::read_dir("/proc/self/fd")?.count();
    let n = NonZeroUsize::new(4096).ok_or_else(|| anyhow!("page size"))?;
    // SAFETY: a fresh anonymous private mapping.
    let p = unsafe {
        nix::sys::mman::mmap_anonymous(
            None,
            n,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE,
        )
    }?;
    let arg = p.as_ptr().cast::<VdeCreateShm>();
    // SAFETY: `arg` points into the writable page just mapped, aligned for `VdeCreateShm`.
    unsafe {
        arg.write(VdeCreateShm {
            entries: 16,
            entry_size: 64,
            data_size: DATA,
            dev_kind: dev_kind::BLOCK,
            ..Default::default()
        })
    };
    // SAFETY: the page stays mapped; only its protection changes.
    unsafe { mprotect(p, 4096, ProtFlags::PROT_READ) }?;
    // SAFETY: `_IOWR` of one `VdeCreateShm` at a readable (not writable) address.
    let r = unsafe { nix::libc::ioctl(d.file().as_raw_fd(), VDE_IOC_CREATE_SHM as _, arg) };
    let e = Errno::last();
    check!(
        r == -1 && e == Errno::EFAULT,
        "create_shm with a read-only result: EFAULT ({r}, {e})"
    );
    let after = std::fs::read_dir("/proc/self/fd")?.count();
    check!(
        after == before,
        "no file descriptor left ({before} before, {after} after)"
    );
    check!(
        d.totals()?.channels == 0 && d.stats(0).unwrap_err() == Errno::ENOENT,
        "no channel left in the domain"
    );
    let me = std::process::id();
    check!(
        !d.list_all()?.iter().any(|e| e.domain_pid == me),
        "VDE_IOC_LIST shows no channel of this domain"
    );
    let ch = d.create_shm(&shm_req(DATA))?;
    check!(ch.info.id == 0, "the next create_shm gets id 0");
    // SAFETY: unmaps the page mapped above; nothing refers to it any more.
    unsafe { munmap(p, 4096) }?;
    Ok(())
}

/// A hostile holder of a channel's file truncates it (and grows it back): only that channel
/// can break. Another channel keeps serving; the truncated one is served from its pinned pages
/// without harm and tears down cleanly.
pub fn truncate(path: &str) -> Result<()> {
    let disk = image(path)?;
    let d = Domain::open()?;
    let victim = d.create_shm(&shm_req(DATA))?;
    let mut vf = Front::new(&d, &victim, Some(&disk))?;
    let other = d.create_shm(&shm_req(DATA))?;
    let mut of = Front::new(&d, &other, Some(&disk))?;
    // Traffic in flight on the victim when its file shrinks: published, then truncated, then
    // kicked.
    vf.put(0, &pattern(3, 4096));
    let m = vf.map.mem();
    vf.fe
        .push_request(&m, 5, op::BLK_WRITE_DA, &da(0, 4096, 0, 0).to_bytes())
        .map_err(|e| anyhow!("{e:?}"))?;
    vf.fe.publish(&m);
    // A device mapping of the victim, faulted in, lives through the truncation: it is a
    // mapping of the file, so shmem unmaps it like any other (pages the device had inserted
    // itself would be "still mapped when deleted": a BUG line the harness's log check fails).
    let dev_before = RingMap::new(d.file().as_fd(), victim.info.mmap_offset, 3 * 4096)?;
    let faulted = dev_before.mem().load_u32(vd_ring::OFF_ENTRIES);
    check!(
        faulted == 16,
        "the victim's ring read through the device before the truncation"
    );
    // The mappings of the truncated file must not be touched any more (SIGBUS).
    let Front {
        map, kick: vkick, ..
    } = vf;
    victim.file.set_len(0).context("ftruncate to 0")?;
    drop(map);
    drop(dev_before);
    vkick.write(1)?;
    d.kick(victim.info.id)?;
    victim.file.set_len(victim.info.size)?;
    d.kick(victim.info.id)?;
    for i in 0..3u64 {
        let data = pattern(40 + i, 4096);
        of.put(0, &data);
        let st = of.da(op::BLK_WRITE_DA, 1000 + i * 8, 4096, 0, 0)?;
        let mut back = vec![0u8; 4096];
        disk.read_exact_at(&mut back, (1000 + i * 8) * 512)?;
        check!(
            st == 0 && back == data,
            "the other channel serves after the victim's file was truncated (round {i})"
        );
    }
    let served = wait_for(|| Ok(d.stats(victim.info.id)?.counters.responses >= 1))?;
    check!(
        served,
        "the victim's request was served from its pinned pages"
    );
    // A device mapping of the victim is a mapping of its (now empty again) file.
    let dev = RingMap::new(d.file().as_fd(), victim.info.mmap_offset, 4096)?;
    check!(
        dev.mem().load_u32(0) == 0,
        "the victim's file is fresh zeroes after the truncation (its old pages stay pinned)"
    );
    drop(dev);
    d.destroy(victim.info.id)?;
    drop(victim);
    check!(
        of.da(op::BLK_READ_DA, 1000, 4096, 0, 8192)? == 0,
        "the other channel still serves after the victim is destroyed"
    );
    Ok(())
}

/// `VDE_IOC_ORPHAN` racing with binds and unbinds of the same channel from another thread: an
/// orphan always keeps a kick eventfd (the binding is sealed in the same step), so closing the
/// eventfds the race used always ends it. Were it left unbound, it would never go (and pin the
/// module).
pub fn orphan_race(rounds: u32) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let me = std::process::id();
    let d = Domain::open()?;
    let mut orphaned = 0;
    for round in 0..rounds {
        let ch = d.create_shm(&shm_req(0))?;
        let id = ch.info.id;
        let k1 = EventFd::new(EFD_NONBLOCK)?;
        let k2 = EventFd::new(EFD_NONBLOCK)?;
        let call = EventFd::new(EFD_NONBLOCK)?;
        d.bind(id, Some(k1.as_raw_fd()), Some(call.as_raw_fd()))?;
        let stop = AtomicBool::new(false);
        let won = std::thread::scope(|s| -> Result<bool> {
            s.spawn(|| {
                let (a, b, c) = (k1.as_raw_fd(), k2.as_raw_fd(), call.as_raw_fd());
                while !stop.load(Ordering::Relaxed) {
                    let _ = d.bind(id, Some(b), Some(c));
                    let _ = d.bind(id, None, Some(c));
                    let _ = d.bind(id, Some(a), Some(c));
                }
            });
            let mut won = false;
            for _ in 0..20_000 {
                match d.orphan(id) {
                    Ok(()) => {
                        won = true;
                        break;
                    }
                    // Unbound at that instant, or a bind in between: try again.
                    Err(Errno::EINVAL) => {}
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        bail!("round {round}: VDE_IOC_ORPHAN: {e}");
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
            Ok(won)
        })?;
        if !won {
            d.destroy(id)?;
            continue;
        }
        orphaned += 1;
        drop((k1, k2, call, ch));
        let gone = wait_for(|| {
            Ok(!d
                .list_all()?
                .iter()
                .any(|e| e.domain_pid == me && e.flags & VDE_LIST_ORPHAN != 0))
        })?;
        check!(
            gone,
            "round {round}: the orphan made during binds went with its eventfds"
        );
    }
    check!(
        orphaned > rounds / 2,
        "{orphaned} of {rounds} rounds orphaned the channel mid-race"
    );
    Ok(())
}
