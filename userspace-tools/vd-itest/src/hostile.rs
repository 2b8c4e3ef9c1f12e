//! `vd-itest hostile`: every ioctl (and mmap, read, write) of the three vd devices driven with
//! hostile arguments from a seeded PRNG: boundary values, wrong fd types, freed ids, released
//! leases, bad pointers (NULL, below `mmap_min_addr`, kernel, non-canonical, read-only pages for
//! write-backs, structs cut short by an unmapped page), random command numbers, concurrent close
//! from another thread, `dup2` over an fd while the kernel looks it up, fork and use from the
//! child, mmap at odd offsets and sizes, garbage written into mapped rings.
//!
//! Every failed call's errno must be in [`RULES`], the table that `docs/ioctl-errors.md`
//! documents; calls whose outcome is known exactly (unknown flag bits, freed ids, faulting
//! pointers, wrong fd types, unknown commands) must fail with exactly that errno. A few semantic
//! checks follow the hardening issue: a creation whose result cannot be copied back leaves no
//! object behind; a failed `read` of `/dev/vd_sriov` keeps the event; `VDE_IOC_SAVE` of a `user`
//! channel is refused or reports the indices in the ring.
//!
//! Replay: the seed is printed first; `--seed S --iters N` repeats a run call for call (timing of
//! the race ops aside). `--trace FILE` writes each call before it is made, so a run that the
//! kernel kills still says what it did last. `--exclude a,b` skips ops by name (see [`OPS`]), to
//! get past a known kernel bug and see the rest.

#![allow(
    unused_must_use,
    reason = "calls are judged inside `call`; most callers need no result"
)]

use anyhow::{bail, Result};
use nix::libc;
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::time::{Duration, Instant};
use vd_ring::{Geometry, OFF_REQ_CONS, OFF_RSP_PROD};
use vd_uapi::*;

/// Arguments of `vd-itest hostile`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// PRNG seed (default: from the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Run this long (seconds).
    #[arg(long, default_value_t = 30.0)]
    secs: f64,
    /// Stop after this many iterations instead (replay).
    #[arg(long)]
    iters: Option<u64>,
    /// Ops to skip, comma-separated: huge-kicks, attach-cycle, dup2-race, close-race, fork,
    /// vcpu-thread, lease-vfio, rate, route, or a family: evtchn, sriov, input, unknown-cmd,
    /// wrong-target, bad-pointer, read-write, churn.
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<String>,
    /// Append each call to this file before making it.
    #[arg(long)]
    trace: Option<String>,
    /// Print each call.
    #[arg(long)]
    verbose: bool,
}

/// Op names `--exclude` knows (the others are always on).
const OPS: &[&str] = &[
    "huge-kicks", // writes up to 2^64-2 into kick eventfds (counter overflow, issue 11 item 8)
    "attach-cycle", // vd_evtchn files as a block backend (reference cycles, item 9)
    "dup2-race",  // dup2 over a kick fd while BIND / BIND_KICK looks it up (item 1)
    "close-race", // closing a device file from another thread during ioctls
    "fork",       // fork and use the inherited files in the child
    "vcpu-thread", // a thread registers as vCPU and exits registered (item 2)
    "lease-vfio", // leases that move a VF to vfio-pci (slow under TCG)
    "rate",       // VDS_IOC_RATE_SET on real VFs (reset to unlimited at the end)
    "route",      // routes and focus (host-wide; removed at the end)
];

// ---------------------------------------------------------------------------------------------
// The errno table (docs/ioctl-errors.md).

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Dev {
    Evt,
    Srv,
    Inp,
}

impl Dev {
    fn path(self) -> &'static str {
        match self {
            Dev::Evt => "/dev/vd_evtchn",
            Dev::Srv => "/dev/vd_sriov",
            Dev::Inp => "/dev/vd_input",
        }
    }
    fn short(self) -> &'static str {
        match self {
            Dev::Evt => "evt",
            Dev::Srv => "srv",
            Dev::Inp => "inp",
        }
    }
}

/// What a checked call was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Call {
    Ioctl(u32),
    Mmap,
    Read,
    Write,
    /// A command that is not one of the device's.
    Unknown,
}

use libc::{
    EACCES, EAGAIN, EBADF, EBUSY, EEXIST, EFAULT, EINTR, EINVAL, EIO, EMFILE, ENODEV, ENOENT,
    ENOMEM, ENOSPC, ENOTCONN, ENOTTY, ENXIO, EOPNOTSUPP, EOVERFLOW, EPERM, EPROTO, ESRCH,
};

/// One row of the table: the errnos `call` on `dev` may fail with.
struct Rule {
    dev: Dev,
    call: Call,
    name: &'static str,
    errnos: &'static [i32],
}

const fn r(dev: Dev, call: Call, name: &'static str, errnos: &'static [i32]) -> Rule {
    Rule {
        dev,
        call,
        name,
        errnos,
    }
}
const fn io(cmd: u32) -> Call {
    Call::Ioctl(cmd)
}

/// Mirrors docs/ioctl-errors.md: the documented (intended) errnos of every call. `EBADF` for a
/// closed device fd and `ENOTTY` for foreign files are added by the ops that make those calls.
static RULES: &[Rule] = &[
    // /dev/vd_evtchn
    r(Dev::Evt, io(VD_IOC_VERSION), "VD_IOC_VERSION", &[EFAULT]),
    r(
        Dev::Evt,
        io(VDE_IOC_CREATE),
        "VDE_IOC_CREATE",
        &[EFAULT, EINVAL, ENOSPC, ENOMEM],
    ),
    r(
        Dev::Evt,
        io(VDE_IOC_CREATE_SHM),
        "VDE_IOC_CREATE_SHM",
        &[EFAULT, EINVAL, EMFILE, ENOSPC, ENOMEM],
    ),
    r(
        Dev::Evt,
        io(VDE_IOC_ORPHAN),
        "VDE_IOC_ORPHAN",
        &[EFAULT, ENOENT, EINVAL],
    ),
    r(
        Dev::Evt,
        io(VDE_IOC_DESTROY),
        "VDE_IOC_DESTROY",
        &[EFAULT, ENOENT],
    ),
    r(
        Dev::Evt,
        io(VDE_IOC_BIND),
        "VDE_IOC_BIND",
        &[EFAULT, EINVAL, ENOENT, EBADF],
    ),
    r(
        Dev::Evt,
        io(VDE_IOC_ATTACH),
        "VDE_IOC_ATTACH",
        &[EFAULT, EINVAL, ENOENT, EBADF, EACCES],
    ),
    r(
        Dev::Evt,
        io(VDE_IOC_STATS),
        "VDE_IOC_STATS",
        &[EFAULT, ENOENT],
    ),
    r(
        Dev::Evt,
        io(VDE_IOC_NOTIFY),
        "VDE_IOC_NOTIFY",
        &[EFAULT, ENOENT, EINVAL, ENOTCONN],
    ),
    r(
        Dev::Evt,
        io(VDE_IOC_KICK),
        "VDE_IOC_KICK",
        &[EFAULT, ENOENT],
    ),
    r(
        Dev::Evt,
        io(VDE_IOC_SAVE),
        "VDE_IOC_SAVE",
        &[EFAULT, ENOENT, EOPNOTSUPP],
    ),
    r(
        Dev::Evt,
        io(VDE_IOC_RESTORE),
        "VDE_IOC_RESTORE",
        &[EFAULT, ENOENT, EINVAL, EPROTO],
    ),
    r(
        Dev::Evt,
        io(VDE_IOC_LIST),
        "VDE_IOC_LIST",
        &[EFAULT, EINVAL, ENOENT],
    ),
    r(
        Dev::Evt,
        Call::Mmap,
        "mmap",
        &[ENOENT, EINVAL, ENOMEM, EACCES, EPERM, EOVERFLOW],
    ),
    r(Dev::Evt, Call::Read, "read", &[EINVAL]),
    r(Dev::Evt, Call::Write, "write", &[EINVAL]),
    r(Dev::Evt, Call::Unknown, "unknown ioctl", &[ENOTTY]),
    // /dev/vd_sriov
    r(Dev::Srv, io(VD_IOC_VERSION), "VD_IOC_VERSION", &[EFAULT]),
    r(
        Dev::Srv,
        io(VDS_IOC_PF),
        "VDS_IOC_PF",
        &[EFAULT, ENOENT, ENOMEM],
    ),
    r(Dev::Srv, io(VDS_IOC_VF), "VDS_IOC_VF", &[EFAULT, ENOENT]),
    r(
        Dev::Srv,
        io(VDS_IOC_LEASE),
        "VDS_IOC_LEASE",
        &[
            EPERM, EFAULT, EINVAL, ENODEV, EBUSY, EEXIST, ENXIO, ENOMEM, EIO,
        ],
    ),
    r(
        Dev::Srv,
        io(VDS_IOC_RELEASE),
        "VDS_IOC_RELEASE",
        &[EPERM, EFAULT, EINVAL, ENODEV, ENOENT, EBUSY],
    ),
    r(
        Dev::Srv,
        io(VDS_IOC_SAMPLE),
        "VDS_IOC_SAMPLE",
        &[EFAULT, EINVAL, ENODEV, EPERM, ENOENT],
    ),
    r(
        Dev::Srv,
        io(VDS_IOC_POLICY_GET),
        "VDS_IOC_POLICY_GET",
        &[EFAULT],
    ),
    r(
        Dev::Srv,
        io(VDS_IOC_POLICY_SET),
        "VDS_IOC_POLICY_SET",
        &[EPERM, EFAULT, EINVAL],
    ),
    r(
        Dev::Srv,
        io(VDS_IOC_WAIT),
        "VDS_IOC_WAIT",
        &[EPERM, EFAULT, EINVAL, ENOENT, EEXIST, ENOMEM],
    ),
    r(
        Dev::Srv,
        io(VDS_IOC_SWAP),
        "VDS_IOC_SWAP",
        &[EPERM, EFAULT, EINVAL, ENODEV, ENOENT, ESRCH, EBUSY, EAGAIN],
    ),
    r(
        Dev::Srv,
        io(VDS_IOC_CANDIDATE),
        "VDS_IOC_CANDIDATE",
        &[EFAULT, ENOENT, ENOMEM],
    ),
    r(
        Dev::Srv,
        io(VDS_IOC_RATE_SET),
        "VDS_IOC_RATE_SET",
        &[EPERM, EFAULT, EINVAL, ENODEV, EOPNOTSUPP, EIO],
    ),
    r(
        Dev::Srv,
        io(VDS_IOC_RATE_GET),
        "VDS_IOC_RATE_GET",
        &[EFAULT, EINVAL, ENODEV, EOPNOTSUPP],
    ),
    r(Dev::Srv, Call::Mmap, "mmap", &[ENODEV]),
    r(
        Dev::Srv,
        Call::Read,
        "read",
        &[EINVAL, EAGAIN, EFAULT, EINTR],
    ),
    r(Dev::Srv, Call::Write, "write", &[EINVAL]),
    r(Dev::Srv, Call::Unknown, "unknown ioctl", &[ENOTTY]),
    // /dev/vd_input
    r(Dev::Inp, io(VD_IOC_VERSION), "VD_IOC_VERSION", &[EFAULT]),
    r(
        Dev::Inp,
        io(VDI_IOC_VM_CREATE),
        "VDI_IOC_VM_CREATE",
        &[EFAULT, EINVAL, EEXIST, EBADF, ENOMEM],
    ),
    r(
        Dev::Inp,
        io(VDI_IOC_VCPU_REGISTER),
        "VDI_IOC_VCPU_REGISTER",
        &[ENOENT, EEXIST, ENOSPC, ENOMEM],
    ),
    r(
        Dev::Inp,
        io(VDI_IOC_VCPU_UNREGISTER),
        "VDI_IOC_VCPU_UNREGISTER",
        &[ENOENT],
    ),
    r(
        Dev::Inp,
        io(VDI_IOC_VCPU_ATTACH),
        "VDI_IOC_VCPU_ATTACH",
        &[EFAULT, EINVAL, ENOENT, ESRCH, EPERM, EEXIST, ENOSPC, ENOMEM],
    ),
    r(
        Dev::Inp,
        io(VDI_IOC_VCPU_DETACH),
        "VDI_IOC_VCPU_DETACH",
        &[EFAULT, EINVAL, ENOENT],
    ),
    r(
        Dev::Inp,
        io(VDI_IOC_SET_RUNNING),
        "VDI_IOC_SET_RUNNING",
        &[EFAULT, EINVAL, ENOENT],
    ),
    r(
        Dev::Inp,
        io(VDI_IOC_BIND),
        "VDI_IOC_BIND",
        &[EFAULT, EBADF, EINVAL, ENOENT],
    ),
    r(
        Dev::Inp,
        io(VDI_IOC_BIND_KICK),
        "VDI_IOC_BIND_KICK",
        &[EFAULT, ENOENT, EBADF, EINVAL, ENOMEM],
    ),
    r(
        Dev::Inp,
        io(VDI_IOC_ROUTE),
        "VDI_IOC_ROUTE",
        &[EPERM, EFAULT, EINVAL, EEXIST, ENOSPC, ENOMEM],
    ),
    r(
        Dev::Inp,
        io(VDI_IOC_UNROUTE),
        "VDI_IOC_UNROUTE",
        &[EPERM, EFAULT, EINVAL, ENOENT],
    ),
    r(
        Dev::Inp,
        io(VDI_IOC_FOCUS),
        "VDI_IOC_FOCUS",
        &[EPERM, EFAULT, ENOENT],
    ),
    r(
        Dev::Inp,
        io(VDI_IOC_STATS),
        "VDI_IOC_STATS",
        &[EFAULT, ENOENT],
    ),
    r(
        Dev::Inp,
        io(VDI_IOC_LIST_DEVICES),
        "VDI_IOC_LIST_DEVICES",
        &[EFAULT, ENOENT],
    ),
    r(
        Dev::Inp,
        Call::Mmap,
        "mmap",
        &[EINVAL, ENOENT, ENOMEM, EACCES, EPERM, EOVERFLOW],
    ),
    r(Dev::Inp, Call::Read, "read", &[EINVAL]),
    r(Dev::Inp, Call::Write, "write", &[EINVAL]),
    r(Dev::Inp, Call::Unknown, "unknown ioctl", &[ENOTTY]),
];

fn rule(dev: Dev, call: Call) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.dev == dev && r.call == call)
}

/// The ioctl commands of `dev` (those with a row in [`RULES`]).
fn cmds(dev: Dev) -> Vec<u32> {
    RULES
        .iter()
        .filter_map(|r| match (r.dev == dev, r.call) {
            (true, Call::Ioctl(c)) => Some(c),
            _ => None,
        })
        .collect()
}

fn call_name(dev: Dev, call: Call) -> String {
    match rule(dev, call) {
        Some(r) => r.name.to_string(),
        None => format!("{call:?}"),
    }
}

fn ename(e: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(e))
}

fn names(es: &[i32]) -> String {
    es.iter().map(|&e| ename(e)).collect::<Vec<_>>().join("|")
}

// ---------------------------------------------------------------------------------------------
// PRNG, values, pointers, fds.

/// SplitMix64: small, seedable, good enough to pick ops.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn u32v(&mut self) -> u32 {
        if self.chance(75) {
            self.pick(U32S)
        } else {
            self.next() as u32
        }
    }
    fn u64v(&mut self) -> u64 {
        if self.chance(75) {
            self.pick(U64S)
        } else {
            self.next()
        }
    }
    fn pow2(&mut self, lo: u32, hi: u32) -> u32 {
        1u32 << (lo + self.below((hi - lo + 1) as u64) as u32)
    }
    /// Flags: mostly 0, else some unknown bits (`known` are the valid ones).
    fn flags(&mut self, known: u32) -> u32 {
        match self.below(10) {
            0 => {
                self.pick(&[1u32, 2, 4, 0x8000_0000, u32::MAX]) & !known
                    | (known & self.next() as u32)
            }
            1 => (self.next() as u32 | 0x100) & !known,
            _ => known & self.next() as u32,
        }
    }
}

const U32S: &[u32] = &[
    0,
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    15,
    16,
    31,
    32,
    33,
    63,
    64,
    100,
    255,
    256,
    257,
    1023,
    1024,
    4095,
    4096,
    4097,
    8192,
    1 << 16,
    1 << 20,
    1 << 24,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];
const U64S: &[u64] = &[
    0,
    1,
    2,
    255,
    256,
    4096,
    1 << 31,
    1 << 32,
    1 << 63,
    (1 << 63) - 1,
    u64::MAX - 1,
    u64::MAX,
];

/// Where an ioctl argument goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ptr {
    /// Readable and writable.
    Good,
    /// Faults: NULL, below `mmap_min_addr`, kernel, non-canonical, wrapping.
    Bad(usize),
    /// The struct's last bytes lie in an unmapped page.
    Short,
    /// A read-only page: the kernel can read the argument but not write the result back.
    ReadOnly,
}

const BAD_PTRS: &[usize] = &[
    0,
    8,
    0xff0,
    0x1000,
    0xffff_8880_0000_0000,
    0xffff_ffff_8100_0000,
    0x0000_8000_0000_0000,
    0xdead_0000_0000_0000,
    usize::MAX - 7,
];

/// Four pages: two read-write, one unmapped (`PROT_NONE`), one read-only.
struct Arena {
    base: usize,
}

const PAGE: usize = 4096;

impl Arena {
    fn new() -> Result<Self> {
        // SAFETY: a fresh anonymous mapping; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4 * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            bail!("mmap arena: {}", std::io::Error::last_os_error());
        }
        let base = p as usize;
        // SAFETY: pages of our own mapping.
        unsafe {
            libc::mprotect((base + 2 * PAGE) as *mut _, PAGE, libc::PROT_NONE);
            libc::mprotect((base + 3 * PAGE) as *mut _, PAGE, libc::PROT_READ);
        }
        Ok(Self { base })
    }
    /// Puts `bytes` where `p` says and returns the address to pass.
    fn put(&self, bytes: &[u8], p: Ptr) -> usize {
        match p {
            Ptr::Good => {
                // SAFETY: page 0..2 are ours and read-write; arguments are at most a page.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        self.base as *mut u8,
                        bytes.len().min(PAGE),
                    )
                };
                self.base
            }
            Ptr::Bad(a) => a,
            Ptr::Short => {
                // The first len-1 bytes at the end of page 1, the last one in page 2 (unmapped).
                let keep = bytes.len().saturating_sub(1);
                let a = self.base + 2 * PAGE - keep;
                // SAFETY: `a..a+keep` is inside page 1.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), a as *mut u8, keep) };
                a
            }
            Ptr::ReadOnly => {
                let a = self.base + 3 * PAGE;
                // SAFETY: our page; made writable for the copy and read-only again.
                unsafe {
                    libc::mprotect(a as *mut _, PAGE, libc::PROT_READ | libc::PROT_WRITE);
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        a as *mut u8,
                        bytes.len().min(PAGE),
                    );
                    libc::mprotect(a as *mut _, PAGE, libc::PROT_READ);
                }
                a
            }
        }
    }
    /// Reads a `T` back from the good slot.
    fn get<T: Copy>(&self) -> T {
        // SAFETY: page 0 is ours; `T` is a plain-old-data ABI struct (every bit pattern valid).
        unsafe { std::ptr::read_unaligned(self.base as *const T) }
    }
    /// A read buffer of `len` bytes (at most 8 KiB) in the read-write pages.
    fn buf(&self) -> usize {
        self.base
    }
}

fn bytes_of<T: Copy>(t: &T) -> Vec<u8> {
    // SAFETY: ABI structs are `#[repr(C)]` without padding (layout asserted in vd-uapi).
    unsafe { std::slice::from_raw_parts(t as *const T as *const u8, std::mem::size_of::<T>()) }
        .to_vec()
}

/// Kinds of fds passed as arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fk {
    Eventfd,
    Pipe,
    Socket,
    RegRw,
    RegRo,
    /// A vd device file (also the file the call is made on).
    Dev(Dev),
    /// A number that is not open.
    Closed,
    /// Negative: "none" where the ABI allows -1.
    Neg,
}

/// The errno `EventFd::from_fd` (`eventfd_ctx_fdget`) answers for an fd of kind `k` (>= 0).
fn efd_err(k: Fk) -> Option<i32> {
    match k {
        Fk::Eventfd => None,
        Fk::Closed | Fk::Neg => Some(EBADF),
        _ => Some(EINVAL),
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn close(fd: i32) {
    // SAFETY: closing an fd we own (or one that is not open: EBADF, ignored).
    unsafe { libc::close(fd) };
}

/// File descriptors open in this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Orphaned channels listed host-wide (`VDE_IOC_LIST` with `VDE_LIST_ORPHAN`): their creators'
/// pids; `None` if the listing failed.
fn orphans_listed() -> Option<Vec<u32>> {
    let fd = open_dev(Dev::Evt);
    if fd < 0 {
        return None;
    }
    let mut pids = vec![];
    let mut cursor = 0u64;
    let ok = loop {
        let mut e = VdeListEntry {
            cursor,
            ..Default::default()
        };
        // SAFETY: `_IOWR` of one `VdeListEntry` on the stack.
        let r = unsafe { libc::ioctl(fd, VDE_IOC_LIST as _, &raw mut e) };
        if r < 0 {
            break errno() == ENOENT;
        }
        if e.flags & VDE_LIST_ORPHAN != 0 {
            pids.push(e.domain_pid);
        }
        match e.cursor.checked_add(1) {
            Some(c) => cursor = c,
            None => break true,
        }
    };
    close(fd);
    ok.then_some(pids)
}

fn new_eventfd(sem: bool) -> i32 {
    let fl = libc::EFD_NONBLOCK | libc::EFD_CLOEXEC | if sem { libc::EFD_SEMAPHORE } else { 0 };
    // SAFETY: plain syscall.
    unsafe { libc::eventfd(0, fl) }
}

fn open_dev(d: Dev) -> i32 {
    let p = std::ffi::CString::new(d.path()).unwrap_or_default();
    let fl = libc::O_RDWR | libc::O_CLOEXEC | if d == Dev::Srv { libc::O_NONBLOCK } else { 0 };
    // SAFETY: a NUL-terminated path.
    unsafe { libc::open(p.as_ptr(), fl) }
}

// ---------------------------------------------------------------------------------------------
// The model: what the fuzzer created, so that it knows which ids are live or freed.

#[derive(Default, Clone)]
struct Chan {
    backend: u32,
    /// Ring mapping (address, length), if mapped whole.
    map: Option<(usize, usize)>,
    /// Bound kick eventfd.
    kick: Option<i32>,
    entries: u32,
    entry_size: u32,
    /// Pages the device maps for this channel when that is not the ring's size (a
    /// `VDE_IOC_CREATE_SHM` channel: its file's size); 0: the ring's.
    map_pages: usize,
}

struct EvtFile {
    fd: i32,
    chans: BTreeMap<u32, Chan>,
    freed: Vec<u32>,
}

struct SrvFile {
    fd: i32,
    /// (bdf, vm_id) leased through this file.
    leases: Vec<(u32, u64)>,
    /// (bdf, vm_id) released.
    released: Vec<(u32, u64)>,
    waits: Vec<u64>,
}

struct InpFile {
    fd: i32,
    vm: Option<u32>,
    /// The main thread is registered as a vCPU of it.
    vcpu: bool,
}

/// Argument fds of every kind.
struct Others {
    eventfds: Vec<i32>,
    pipes: Vec<i32>,
    socks: Vec<i32>,
    reg_rw: i32,
    reg_ro: i32,
}

/// Numbers never opened (closed at start).
const CLOSED_FDS: &[i32] = &[1000, 1001, 1013, 1023, 4095, 65535, i32::MAX];
const NEG_FDS: &[i32] = &[-1, -2, -100, i32::MIN];

/// VM ids the fuzzer uses (others never exist: `NO_VM`).
const INP_VM_BASE: u32 = 0x7e00_0000;
const NO_VM: u32 = 0x7dff_fff1;

struct Fuzz {
    rng: Rng,
    seed: u64,
    iter: u64,
    excl: Vec<String>,
    trace: Option<std::fs::File>,
    verbose: bool,
    recent: VecDeque<String>,
    violations: Vec<String>,
    nviol: u64,
    /// Violations by kind (device, call, reason).
    kinds: BTreeMap<String, u64>,
    counts: BTreeMap<(Dev, Call), BTreeMap<String, u64>>,
    arena: Arena,
    evt: Vec<EvtFile>,
    srv: Vec<SrvFile>,
    inp: Vec<InpFile>,
    oth: Others,
    vfs: Vec<u32>,
    routes: Vec<VdiRoute>,
    policy0: Option<VdsPolicy>,
    rated: Vec<u32>,
    maps: Vec<(usize, usize)>,
    in_child: bool,
    ops_run: BTreeMap<&'static str, u64>,
}

type Res = std::result::Result<i64, i32>;

/// What a call must do beyond failing with a documented errno.
enum Expect {
    Any,
    /// Must fail, with one of these, because of `why`.
    Fail(Vec<i32>, String),
}

fn fail(e: i32, why: impl Into<String>) -> Expect {
    Expect::Fail(vec![e], why.into())
}

impl Fuzz {
    fn on(&self, op: &str) -> bool {
        !self.excl.iter().any(|x| x == op)
    }

    fn note(&mut self, line: String) {
        if let Some(t) = &mut self.trace {
            let _ = t.write_all(format!("{} {}\n", self.iter, line).as_bytes());
        }
        if self.verbose {
            println!("{} {}", self.iter, line);
        }
        if self.recent.len() >= 24 {
            self.recent.pop_front();
        }
        self.recent.push_back(format!("{} {}", self.iter, line));
    }

    /// Records a semantic violation, grouped in the summary by its issue item if it names one.
    fn violation(&mut self, msg: String) {
        let kind = match msg.find("issue 11 item") {
            Some(at) => {
                let head: Vec<&str> = msg.split_whitespace().take(2).collect();
                format!(
                    "{} ... ({})",
                    head.join(" "),
                    msg[at..].trim_end_matches(')')
                )
            }
            None => msg.clone(),
        };
        self.violation_kind(msg, kind);
    }

    /// Records a violation; `kind` groups it in the summary (the first 20 are printed in full).
    fn violation_kind(&mut self, msg: String, kind: String) {
        self.nviol += 1;
        *self.kinds.entry(kind).or_default() += 1;
        let full = format!(
            "VIOLATION (seed {} iter {}{}): {}",
            self.seed,
            self.iter,
            if self.in_child {
                ", in a forked child"
            } else {
                ""
            },
            msg
        );
        if self.violations.len() < 20 {
            let mut s = full.clone();
            s.push_str("\n    last calls:");
            for l in self
                .recent
                .iter()
                .rev()
                .take(6)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                s.push_str("\n      ");
                s.push_str(l);
            }
            println!("{s}");
            self.violations.push(s);
        }
    }

    fn count(&mut self, dev: Dev, call: Call, r: &Res) {
        let k = match r {
            Ok(_) => "ok".to_string(),
            Err(e) => ename(*e),
        };
        *self
            .counts
            .entry((dev, call))
            .or_default()
            .entry(k)
            .or_default() += 1;
    }

    /// Checks `r` of `call` on `dev` against the table (plus `extra`) and `exp`.
    fn judge(&mut self, dev: Dev, call: Call, desc: &str, r: Res, exp: &Expect, extra: &[i32]) {
        self.count(dev, call, &r);
        let name = call_name(dev, call);
        let allowed: Vec<i32> = rule(dev, call)
            .map(|r| r.errnos.to_vec())
            .unwrap_or_default();
        match (&r, exp) {
            (Ok(_), Expect::Fail(es, why)) => self.violation_kind(
                format!(
                    "{} {name} {desc}: succeeded, expected {} ({why})",
                    dev.short(),
                    names(es)
                ),
                format!(
                    "{} {name}: succeeded, expected {} ({why})",
                    dev.short(),
                    names(es)
                ),
            ),
            (Err(e), Expect::Fail(es, why)) if !es.contains(e) => self.violation_kind(
                format!(
                    "{} {name} {desc}: {}, expected {} ({why})",
                    dev.short(),
                    ename(*e),
                    names(es)
                ),
                format!(
                    "{} {name}: {}, expected {} ({why})",
                    dev.short(),
                    ename(*e),
                    names(es)
                ),
            ),
            (Err(e), _) if !allowed.contains(e) && !extra.contains(e) => self.violation_kind(
                format!(
                    "{} {name} {desc}: {} is not documented (documented: {})",
                    dev.short(),
                    ename(*e),
                    names(&allowed)
                ),
                format!("{} {name}: {} is not documented", dev.short(), ename(*e)),
            ),
            _ => {}
        }
    }

    /// `ioctl(fd, cmd, arg)`, traced.
    fn raw_ioctl(&mut self, dev: Dev, fd: i32, cmd: u32, arg: usize, desc: &str) -> Res {
        self.note(format!(
            "{} fd{fd} ioctl {} {desc} arg={arg:#x}",
            dev.short(),
            cmd_label(cmd)
        ));
        // SAFETY: the kernel validates `arg`; it points into our arena or is meant to fault.
        let r = unsafe { libc::ioctl(fd, cmd as _, arg) };
        if r < 0 {
            Err(errno())
        } else {
            Ok(r as i64)
        }
    }

    /// An ioctl with `bytes` as its argument at `p`, judged.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call with its argument and what it must do"
    )]
    fn call(
        &mut self,
        dev: Dev,
        fd: i32,
        cmd: u32,
        bytes: &[u8],
        p: Ptr,
        desc: &str,
        exp: Expect,
    ) -> Res {
        let arg = if ioc_size(cmd) == 0 && bytes.is_empty() {
            0
        } else {
            self.arena.put(bytes, p)
        };
        let r = self.raw_ioctl(dev, fd, cmd, arg, desc);
        self.judge(dev, Call::Ioctl(cmd), desc, r, &exp, &[]);
        r
    }

    fn ptr(&mut self) -> Ptr {
        match self.rng.below(40) {
            0 => Ptr::Bad(self.rng.pick(BAD_PTRS)),
            1 => Ptr::Short,
            2 => Ptr::ReadOnly,
            _ => Ptr::Good,
        }
    }

    /// A fd argument and its kind. `own` is the file the call is made on.
    fn arg_fd(&mut self, own: (Dev, i32), good: u64) -> (i32, Fk) {
        if self.rng.chance(good) {
            let fd = self.rng.pick(&self.oth.eventfds.clone());
            return (fd, Fk::Eventfd);
        }
        match self.rng.below(9) {
            0 => (self.rng.pick(&self.oth.pipes.clone()), Fk::Pipe),
            1 => (self.rng.pick(&self.oth.socks.clone()), Fk::Socket),
            2 => (self.oth.reg_rw, Fk::RegRw),
            3 => (self.oth.reg_ro, Fk::RegRo),
            4 => (own.1, Fk::Dev(own.0)),
            5 => {
                let d = self.rng.pick(&[Dev::Evt, Dev::Srv, Dev::Inp]);
                match self.any_fd(d) {
                    Some(fd) => (fd, Fk::Dev(d)),
                    None => (own.1, Fk::Dev(own.0)),
                }
            }
            6 => (self.rng.pick(CLOSED_FDS), Fk::Closed),
            7 => (self.rng.pick(NEG_FDS), Fk::Neg),
            _ => (self.rng.pick(&self.oth.eventfds.clone()), Fk::Eventfd),
        }
    }

    fn any_fd(&mut self, d: Dev) -> Option<i32> {
        let fds: Vec<i32> = match d {
            Dev::Evt => self.evt.iter().map(|f| f.fd).collect(),
            Dev::Srv => self.srv.iter().map(|f| f.fd).collect(),
            Dev::Inp => self.inp.iter().map(|f| f.fd).collect(),
        };
        if fds.is_empty() {
            None
        } else {
            Some(self.rng.pick(&fds))
        }
    }

    fn objects(&mut self, dev: Dev, fd: i32) -> Option<u32> {
        let r = self.raw_ioctl(dev, fd, VD_IOC_VERSION, self.arena.buf(), "(objects)");
        r.ok().map(|_| self.arena.get::<VdVersion>().objects)
    }

    // -----------------------------------------------------------------------------------------
    // vd_evtchn

    fn evt_file(&mut self) -> Option<usize> {
        if self.evt.is_empty() || (self.evt.len() < 4 && self.rng.chance(3)) {
            let fd = open_dev(Dev::Evt);
            if fd < 0 {
                self.violation(format!("open {}: {}", Dev::Evt.path(), ename(errno())));
                return None;
            }
            self.evt.push(EvtFile {
                fd,
                chans: BTreeMap::new(),
                freed: vec![],
            });
        }
        Some(self.rng.below(self.evt.len() as u64) as usize)
    }

    /// A channel id: live (and whether), freed, or a boundary value.
    fn evt_id(&mut self, i: usize) -> (u32, bool) {
        let f = &self.evt[i];
        let live: Vec<u32> = f.chans.keys().copied().collect();
        let freed: Vec<u32> = f
            .freed
            .iter()
            .copied()
            .filter(|id| !f.chans.contains_key(id))
            .collect();
        match self.rng.below(10) {
            0..=5 if !live.is_empty() => (self.rng.pick(&live), true),
            6 | 7 if !freed.is_empty() => (self.rng.pick(&freed), false),
            _ => {
                let id = self.rng.pick(&[
                    256u32,
                    257,
                    1000,
                    0xffff,
                    0x7fff_ffff,
                    0x8000_0000,
                    VDE_ALL - 1,
                    VDE_ALL,
                ]);
                (id, self.evt[i].chans.contains_key(&id))
            }
        }
    }

    /// Re-reads which channels a domain has (after a fork child or an unexpected success).
    fn evt_resync(&mut self, i: usize) {
        let fd = self.evt[i].fd;
        for id in 0..VDE_MAX_CHANNELS {
            let s = VdeStats {
                id,
                ..Default::default()
            };
            let a = self.arena.put(&bytes_of(&s), Ptr::Good);
            let r = self.raw_ioctl(Dev::Evt, fd, VDE_IOC_STATS, a, "(resync)");
            let st: VdeStats = self.arena.get();
            let f = &mut self.evt[i];
            match r {
                Ok(_) => {
                    let c = f.chans.entry(id).or_default();
                    c.backend = st.backend;
                    c.entries = st.entries;
                    // STATS does not say the slot size, and a forked child may have destroyed
                    // this id and created it again with another geometry on the shared file:
                    // the geometry is unknown from here on (a stale one made "mmap beyond the
                    // ring" expect EINVAL for a larger ring: seen once in a CI run).
                    c.entry_size = 0;
                    c.map_pages = 0;
                }
                Err(_) => {
                    if f.chans.remove(&id).is_some() {
                        f.freed.push(id);
                    }
                }
            }
        }
    }

    fn evt_op(&mut self) {
        let Some(i) = self.evt_file() else { return };
        let fd = self.evt[i].fd;
        let p = self.ptr();
        match self.rng.below(21) {
            0 | 1 => self.evt_create(i, p),
            19 => self.evt_create_shm(i, p),
            20 => self.evt_orphan(i, p),
            2 => {
                let (id, live) = self.evt_id(i);
                let exp = if live || !matches!(p, Ptr::Good | Ptr::ReadOnly) {
                    Expect::Any
                } else {
                    fail(ENOENT, "no such channel")
                };
                let r = self.call(
                    Dev::Evt,
                    fd,
                    VDE_IOC_DESTROY,
                    &id.to_ne_bytes(),
                    p,
                    &format!("id={id}"),
                    exp,
                );
                if r.is_ok() {
                    let f = &mut self.evt[i];
                    f.chans.remove(&id);
                    f.freed.push(id);
                }
            }
            3 | 4 => self.evt_bind(i, p),
            5 | 6 => self.evt_attach(i, p),
            7 => {
                let (id, live) = if self.rng.chance(30) {
                    (VDE_ALL, true)
                } else {
                    self.evt_id(i)
                };
                let live = live || id == VDE_ALL;
                let s = VdeStats {
                    id,
                    ..Default::default()
                };
                let exp = if live || p != Ptr::Good {
                    Expect::Any
                } else {
                    fail(ENOENT, "no such channel")
                };
                self.call(
                    Dev::Evt,
                    fd,
                    VDE_IOC_STATS,
                    &bytes_of(&s),
                    p,
                    &format!("id={id:#x}"),
                    exp,
                );
            }
            8 => {
                let (id, live) = self.evt_id(i);
                let exp = match (p, live, self.evt[i].chans.get(&id).map(|c| c.backend)) {
                    (Ptr::Good | Ptr::ReadOnly, false, _) => fail(ENOENT, "no such channel"),
                    (Ptr::Good | Ptr::ReadOnly, true, Some(b)) if b != vde_backend::USER => {
                        fail(EINVAL, "backend is not user")
                    }
                    _ => Expect::Any,
                };
                self.call(
                    Dev::Evt,
                    fd,
                    VDE_IOC_NOTIFY,
                    &id.to_ne_bytes(),
                    p,
                    &format!("id={id}"),
                    exp,
                );
            }
            9 => {
                let (id, live) = self.evt_id(i);
                let exp = if live || !matches!(p, Ptr::Good | Ptr::ReadOnly) {
                    Expect::Any
                } else {
                    fail(ENOENT, "no such channel")
                };
                self.call(
                    Dev::Evt,
                    fd,
                    VDE_IOC_KICK,
                    &id.to_ne_bytes(),
                    p,
                    &format!("id={id}"),
                    exp,
                );
            }
            10 => self.evt_save(i, p),
            11 => self.evt_restore(i, p),
            12 => {
                let flags = if self.rng.below(4) == 0 {
                    self.rng.u32v()
                } else {
                    0
                };
                let reserved = if self.rng.below(4) == 0 {
                    self.rng.u32v()
                } else {
                    0
                };
                let e = VdeListEntry {
                    cursor: self.rng.u64v(),
                    flags,
                    // Out only: any value in.
                    kick_pid: self.rng.u32v(),
                    reserved,
                    ..Default::default()
                };
                let desc = format!(
                    "cursor={} flags={flags:#x} reserved={reserved:#x}",
                    e.cursor
                );
                let exp = match p {
                    Ptr::Good | Ptr::ReadOnly if flags != 0 => fail(EINVAL, "unknown flag bits"),
                    Ptr::Good | Ptr::ReadOnly if reserved != 0 => fail(EINVAL, "reserved not 0"),
                    _ => Expect::Any,
                };
                self.call(Dev::Evt, fd, VDE_IOC_LIST, &bytes_of(&e), p, &desc, exp);
            }
            13 => {
                self.call(Dev::Evt, fd, VD_IOC_VERSION, &[0u8; 40], p, "", Expect::Any);
            }
            14 | 15 => self.evt_mmap(i),
            16 => self.evt_ring_garbage(i),
            17 => self.evt_kick_value(i),
            _ => self.evt_user_serve(i),
        }
    }

    fn evt_create(&mut self, i: usize, p: Ptr) {
        let fd = self.evt[i].fd;
        let live_total: usize = self.evt.iter().map(|f| f.chans.len()).sum();
        let (entries, entry_size) = match self.rng.below(8) {
            0 => (self.rng.u32v(), self.rng.u32v()),
            1 => (self.rng.pow2(0, 13), self.rng.pow2(3, 13)),
            2 => (4096, 256),
            _ => (self.rng.pow2(0, 8), self.rng.pow2(5, 8)),
        };
        let flags = self.rng.flags(0);
        let c = VdeCreate {
            entries,
            entry_size,
            flags,
            id: self.rng.u32v(),
            ..Default::default()
        };
        let geo_ok = Geometry::new(entries, entry_size).is_ok();
        if geo_ok
            && flags == 0
            && (live_total > 48
                || entries as u64 * entry_size as u64 > (1 << 18) && self.rng.chance(70))
        {
            return; // bounded memory
        }
        let exp = match p {
            Ptr::Bad(_) | Ptr::Short => fail(EFAULT, "argument not readable"),
            _ if flags != 0 => fail(EINVAL, "unknown flag bits"),
            _ if !geo_ok => fail(EINVAL, "bad geometry"),
            _ => Expect::Any,
        };
        let before = if p == Ptr::ReadOnly {
            self.objects(Dev::Evt, fd)
        } else {
            None
        };
        let desc = format!("entries={entries} entry_size={entry_size} flags={flags:#x}");
        let r = self.call(Dev::Evt, fd, VDE_IOC_CREATE, &bytes_of(&c), p, &desc, exp);
        match r {
            Ok(_) if p == Ptr::Good => {
                let out: VdeCreate = self.arena.get();
                let f = &mut self.evt[i];
                f.chans.insert(
                    out.id,
                    Chan {
                        entries,
                        entry_size,
                        ..Default::default()
                    },
                );
            }
            Err(e) if e == EFAULT && p == Ptr::ReadOnly => {
                let after = self.objects(Dev::Evt, fd);
                if before.is_some() && after != before {
                    self.violation(format!(
                        "evt VDE_IOC_CREATE {desc}: EFAULT on the write-back left a channel behind (objects {before:?} -> {after:?}; issue 11 item 10)"
                    ));
                }
                self.evt_resync(i);
            }
            _ => {}
        }
    }

    /// `VDE_IOC_CREATE_SHM`: as `VDE_IOC_CREATE`, plus the data area, device kind and the fd.
    /// A write-back that faults leaves no channel and no fd.
    fn evt_create_shm(&mut self, i: usize, p: Ptr) {
        let fd = self.evt[i].fd;
        let live_total: usize = self.evt.iter().map(|f| f.chans.len()).sum();
        let (entries, entry_size) = match self.rng.below(6) {
            0 => (self.rng.u32v(), self.rng.u32v()),
            1 => (self.rng.pow2(0, 13), self.rng.pow2(3, 13)),
            _ => (self.rng.pow2(0, 6), self.rng.pow2(5, 7)),
        };
        let data_size = match self.rng.below(8) {
            0 => self.rng.u32v(),
            1 => self.rng.pick(&[4095u32, 4097, VDE_MAX_DATA + 4096, !4095]),
            2 => 0,
            _ => 4096 * (1 + self.rng.below(64) as u32),
        };
        let dev_kind = if self.rng.chance(10) {
            self.rng.u32v()
        } else {
            self.rng.below(2) as u32
        };
        let flags = self.rng.flags(0);
        let c = VdeCreateShm {
            entries,
            entry_size,
            data_size,
            dev_kind,
            doorbell: self.rng.u32v(),
            flags,
            id: self.rng.u32v(),
            fd: self.rng.u32v() as i32,
            ..Default::default()
        };
        let geo = Geometry::new(entries, entry_size).ok();
        let data_ok = data_size % 4096 == 0 && data_size <= VDE_MAX_DATA;
        let all_ok = geo.is_some() && data_ok && dev_kind <= 1 && flags == 0;
        if all_ok && (live_total > 48 || data_size > (1 << 18)) {
            return; // bounded memory
        }
        let exp = match p {
            Ptr::Bad(_) | Ptr::Short => fail(EFAULT, "argument not readable"),
            _ if flags != 0 => fail(EINVAL, "unknown flag bits"),
            _ if geo.is_none() => fail(EINVAL, "bad geometry"),
            _ if !data_ok => fail(EINVAL, "bad data size"),
            _ if dev_kind > 1 => fail(EINVAL, "unknown device kind"),
            _ => Expect::Any,
        };
        let before = if p == Ptr::ReadOnly {
            Some((self.objects(Dev::Evt, fd), open_fds()))
        } else {
            None
        };
        let desc = format!(
            "entries={entries} entry_size={entry_size} data_size={data_size:#x} \
             dev_kind={dev_kind} flags={flags:#x}"
        );
        let r = self.call(
            Dev::Evt,
            fd,
            VDE_IOC_CREATE_SHM,
            &bytes_of(&c),
            p,
            &desc,
            exp,
        );
        match r {
            Ok(_) => {
                let out: VdeCreateShm = self.arena.get();
                if p == Ptr::Good {
                    let ring = geo.map_or(0, |g| g.total_bytes());
                    let want = (ring + data_size as usize).next_power_of_two();
                    if out.size != want as u64 || out.data_off != ring as u64 || out.fd < 0 {
                        self.violation(format!(
                            "evt VDE_IOC_CREATE_SHM {desc}: answered size {} data_off {} fd {}, want size {want} data_off {ring}",
                            out.size, out.data_off, out.fd
                        ));
                    }
                    self.evt[i].chans.insert(
                        out.id,
                        Chan {
                            entries,
                            entry_size,
                            map_pages: out.size as usize / PAGE,
                            ..Default::default()
                        },
                    );
                }
                if out.fd >= 0 && p == Ptr::Good {
                    close(out.fd);
                }
            }
            Err(e) if e == EFAULT && p == Ptr::ReadOnly => {
                let after = (self.objects(Dev::Evt, fd), open_fds());
                if let Some(b) = before {
                    if b.0.is_some() && after != b {
                        self.violation(format!(
                            "evt VDE_IOC_CREATE_SHM {desc}: EFAULT on the write-back left something behind ((objects, fds) {b:?} -> {after:?})"
                        ));
                    }
                }
                self.evt_resync(i);
            }
            _ => {}
        }
    }

    /// `VDE_IOC_ORPHAN`: the id leaves the domain; the channel lives until its kick eventfd is
    /// closed (the argument eventfds live until the end of the run: then every orphan must go).
    fn evt_orphan(&mut self, i: usize, p: Ptr) {
        let fd = self.evt[i].fd;
        let (id, live) = self.evt_id(i);
        let exp = match p {
            Ptr::Bad(_) | Ptr::Short => fail(EFAULT, "argument not readable"),
            _ if !live => fail(ENOENT, "no such channel"),
            _ => Expect::Any,
        };
        let r = self.call(
            Dev::Evt,
            fd,
            VDE_IOC_ORPHAN,
            &id.to_ne_bytes(),
            p,
            &format!("id={id}"),
            exp,
        );
        if r.is_ok() {
            let f = &mut self.evt[i];
            f.chans.remove(&id);
            f.freed.push(id);
        }
    }

    fn evt_bind(&mut self, i: usize, p: Ptr) {
        let fd = self.evt[i].fd;
        let (id, live) = self.evt_id(i);
        let (kick_fd, kk) = if self.rng.chance(20) {
            (-1, Fk::Neg)
        } else {
            self.arg_fd((Dev::Evt, fd), 60)
        };
        let (call_fd, ck) = if self.rng.chance(40) {
            (-1, Fk::Neg)
        } else {
            self.arg_fd((Dev::Evt, fd), 60)
        };
        let flags = self.rng.flags(0);
        let b = VdeBind {
            id,
            kick_fd,
            call_fd,
            flags,
        };
        let exp = match p {
            Ptr::Bad(_) | Ptr::Short => fail(EFAULT, "argument not readable"),
            _ if flags != 0 => fail(EINVAL, "unknown flag bits"),
            _ if !live => fail(ENOENT, "no such channel"),
            _ => match (call_fd >= 0)
                .then(|| efd_err(ck))
                .flatten()
                .or((kick_fd >= 0).then(|| efd_err(kk)).flatten())
            {
                Some(e) => fail(e, format!("call fd {ck:?} / kick fd {kk:?}")),
                None => Expect::Any,
            },
        };
        let r = self.call(
            Dev::Evt,
            fd,
            VDE_IOC_BIND,
            &bytes_of(&b),
            p,
            &format!("id={id} kick={kick_fd}({kk:?}) call={call_fd}({ck:?}) flags={flags:#x}"),
            exp,
        );
        if r.is_ok() {
            if let Some(c) = self.evt[i].chans.get_mut(&id) {
                c.kick = (kick_fd >= 0).then_some(kick_fd);
            }
        }
    }

    fn evt_attach(&mut self, i: usize, p: Ptr) {
        let fd = self.evt[i].fd;
        let (id, live) = self.evt_id(i);
        let backend = match self.rng.below(10) {
            0 => self.rng.u32v(),
            1 => 5,
            b => [
                vde_backend::ECHO,
                vde_backend::NULL,
                vde_backend::NONE,
                vde_backend::BLOCK,
                vde_backend::USER,
                vde_backend::ECHO,
                vde_backend::BLOCK,
                vde_backend::USER,
            ][(b - 2) as usize],
        };
        let (mut afd, mut k) = match backend {
            vde_backend::BLOCK if self.rng.chance(40) => (self.oth.reg_rw, Fk::RegRw),
            _ => self.arg_fd((Dev::Evt, fd), 50),
        };
        if backend == vde_backend::BLOCK && k == Fk::Dev(Dev::Evt) && !self.on("attach-cycle") {
            (afd, k) = (self.oth.reg_ro, Fk::RegRo);
        }
        let flags = self.rng.flags(0);
        let a = VdeAttach {
            id,
            backend,
            fd: afd,
            flags,
        };
        let exp = match p {
            Ptr::Bad(_) | Ptr::Short => fail(EFAULT, "argument not readable"),
            _ if flags != 0 => fail(EINVAL, "unknown flag bits"),
            _ if !live => fail(ENOENT, "no such channel"),
            _ => match (backend, k) {
                (b, _) if b > vde_backend::USER => fail(EINVAL, "unknown backend"),
                (vde_backend::BLOCK, Fk::Closed | Fk::Neg) => fail(EBADF, "block fd not open"),
                (vde_backend::BLOCK, Fk::RegRo) => fail(EACCES, "block file not open read-write"),
                (vde_backend::BLOCK, Fk::RegRw) => Expect::Any,
                (vde_backend::BLOCK, k) => {
                    fail(EINVAL, format!("block backend on a {k:?}, not a regular file or block device (issue 11 item 9)"))
                }
                (vde_backend::USER, k) => match efd_err(k) {
                    Some(e) => fail(e, format!("user backend fd {k:?}")),
                    None => Expect::Any,
                },
                _ => Expect::Any,
            },
        };
        let r = self.call(
            Dev::Evt,
            fd,
            VDE_IOC_ATTACH,
            &bytes_of(&a),
            p,
            &format!("id={id} backend={backend} fd={afd}({k:?}) flags={flags:#x}"),
            exp,
        );
        if r.is_ok() {
            if let Some(c) = self.evt[i].chans.get_mut(&id) {
                c.backend = backend;
            }
        }
    }

    fn evt_save(&mut self, i: usize, p: Ptr) {
        let fd = self.evt[i].fd;
        let (id, live) = self.evt_id(i);
        let s = VdeState {
            id,
            flags: 0,
            ..Default::default()
        };
        let exp = match p {
            Ptr::Bad(_) | Ptr::Short => fail(EFAULT, "argument not readable"),
            _ if !live => fail(ENOENT, "no such channel"),
            _ => Expect::Any,
        };
        let r = self.call(
            Dev::Evt,
            fd,
            VDE_IOC_SAVE,
            &bytes_of(&s),
            p,
            &format!("id={id}"),
            exp,
        );
        if r.is_ok() && p == Ptr::Good {
            let out: VdeState = self.arena.get();
            if let Some(c) = self.evt[i].chans.get(&id) {
                if let (vde_backend::USER, Some((addr, _))) = (c.backend, c.map) {
                    // SAFETY: a live shared mapping of the ring's first page (header).
                    let (rc, rp) = unsafe {
                        (
                            std::ptr::read_volatile((addr + OFF_REQ_CONS) as *const u32),
                            std::ptr::read_volatile((addr + OFF_RSP_PROD) as *const u32),
                        )
                    };
                    if (out.req_cons, out.rsp_prod) != (rc, rp) {
                        self.violation(format!(
                            "evt VDE_IOC_SAVE id={id} (user backend): saved req_cons/rsp_prod {}/{} but the ring's are {rc}/{rp}: neither refused nor right (issue 11 item 7)",
                            out.req_cons, out.rsp_prod
                        ));
                    }
                }
            }
        }
    }

    fn evt_restore(&mut self, i: usize, p: Ptr) {
        let fd = self.evt[i].fd;
        let (id, live) = self.evt_id(i);
        let c = self.evt[i].chans.get(&id).cloned().unwrap_or_default();
        let mut s = VdeState {
            id,
            entries: c.entries,
            entry_size: c.entry_size,
            generation: self.rng.u32v(),
            req_cons: self.rng.u32v(),
            rsp_prod: self.rng.u32v(),
            backend: self.rng.u32v(),
            flags: 0,
        };
        let geo_match = c.entry_size != 0 && !self.rng.chance(20);
        if !geo_match {
            s.entries = self.rng.u32v();
            s.entry_size = self.rng.u32v();
        }
        s.flags = self.rng.flags(0);
        let bad_geo = s.entries != c.entries || s.entry_size != c.entry_size;
        let exp = match p {
            Ptr::Bad(_) | Ptr::Short => fail(EFAULT, "argument not readable"),
            _ if !live => fail(ENOENT, "no such channel"),
            _ if c.entry_size != 0 && (bad_geo || s.flags != 0) => {
                fail(EINVAL, "geometry mismatch or unknown flag bits")
            }
            _ => Expect::Any,
        };
        let desc = format!(
            "id={id} {}x{} flags={:#x} req_cons={} rsp_prod={}",
            s.entries, s.entry_size, s.flags, s.req_cons, s.rsp_prod
        );
        self.call(Dev::Evt, fd, VDE_IOC_RESTORE, &bytes_of(&s), p, &desc, exp);
    }

    fn evt_mmap(&mut self, i: usize) {
        let fd = self.evt[i].fd;
        let (id, live) = self.evt_id(i);
        let c = self.evt[i].chans.get(&id).cloned().unwrap_or_default();
        let ring_pages = if c.entry_size != 0 {
            Geometry::new(c.entries, c.entry_size)
                .map(|g| g.total_bytes() / PAGE)
                .unwrap_or(0)
        } else {
            0
        };
        // What the device maps: the ring, or a shmem channel's whole file.
        let limit = if c.map_pages != 0 && ring_pages != 0 {
            c.map_pages
        } else {
            ring_pages
        };
        let first = match self.rng.below(4) {
            0 => self.rng.below(ring_pages as u64 + 2) as usize,
            1 => self.rng.pick(&[1usize, 600, 1023, 1024]),
            _ => 0,
        };
        let npages = match self.rng.below(4) {
            0 => self.rng.pick(&[1usize, 2, 3, 513, 1024, 1025]),
            1 => ring_pages.saturating_sub(first).max(1) + 1,
            _ => ring_pages.saturating_sub(first).max(1),
        };
        let shared = !self.rng.chance(10);
        let prot = match self.rng.below(10) {
            0 => libc::PROT_READ,
            1 => libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            2 => libc::PROT_NONE,
            _ => libc::PROT_READ | libc::PROT_WRITE,
        };
        let odd = self.rng.chance(5);
        let off = id as u64 * VDE_MMAP_STRIDE + (first * PAGE) as u64 + if odd { 100 } else { 0 };
        let len = npages * PAGE;
        let desc = format!(
            "id={id} first_page={first} pages={npages} shared={shared} prot={prot} off={off:#x}"
        );
        let exp = if odd {
            fail(EINVAL, "offset not page aligned")
        } else if prot & libc::PROT_EXEC != 0 {
            Expect::Fail(vec![EINVAL, EPERM, ENOENT], "PROT_EXEC".into())
        } else if first * PAGE >= VDE_MMAP_STRIDE as usize {
            Expect::Any // the offset names a later channel
        } else if !live {
            fail(ENOENT, "no such channel")
        } else if ring_pages == 0 {
            Expect::Any // geometry unknown (found by a resync)
        } else if first + npages > limit {
            fail(EINVAL, "beyond the ring (or the shm channel's file)")
        } else if !shared {
            fail(EINVAL, "not MAP_SHARED")
        } else {
            Expect::Any
        };
        let r = self.mmap(Dev::Evt, fd, len, prot, shared, off, &desc, exp);
        if let Ok(a) = r {
            let a = a as usize;
            self.maps.push((a, len));
            if first == 0 && npages == ring_pages && prot & libc::PROT_WRITE != 0 {
                if let Some(c) = self.evt[i].chans.get_mut(&id) {
                    c.map = Some((a, len));
                    return;
                }
            }
            if prot & libc::PROT_READ != 0 {
                // SAFETY: a readable mapping of `len` bytes that we just made.
                let _ = unsafe { std::ptr::read_volatile((a + len - 4) as *const u32) };
            }
        }
        if self.maps.len() > 24 {
            let (a, l) = self
                .maps
                .remove(self.rng.below(self.maps.len() as u64) as usize);
            self.unmap(a, l);
        }
    }

    fn unmap(&mut self, a: usize, l: usize) {
        for f in self.evt.iter_mut() {
            for c in f.chans.values_mut() {
                if c.map == Some((a, l)) {
                    c.map = None;
                }
            }
        }
        self.note(format!("munmap {a:#x} {l}"));
        // SAFETY: a mapping we made and no longer reference.
        unsafe { libc::munmap(a as *mut _, l) };
    }

    #[allow(clippy::too_many_arguments)]
    fn mmap(
        &mut self,
        dev: Dev,
        fd: i32,
        len: usize,
        prot: i32,
        shared: bool,
        off: u64,
        desc: &str,
        exp: Expect,
    ) -> Res {
        self.note(format!("{} fd{fd} mmap len={len} {desc}", dev.short()));
        let fl = if shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        // SAFETY: a new mapping chosen by the kernel; nothing of ours is replaced.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, fl, fd, off as libc::off_t) };
        let r = if p == libc::MAP_FAILED {
            Err(errno())
        } else {
            Ok(p as i64)
        };
        self.judge(dev, Call::Mmap, desc, r, &exp, &[]);
        r
    }

    /// Garbage in a mapped ring (the guest's and the backend's fields alike), then a kick.
    fn evt_ring_garbage(&mut self, i: usize) {
        let fd = self.evt[i].fd;
        let mapped: Vec<(u32, (usize, usize))> = self.evt[i]
            .chans
            .iter()
            .filter_map(|(id, c)| c.map.map(|m| (*id, m)))
            .collect();
        if mapped.is_empty() {
            return;
        }
        let (id, (a, l)) = self.rng.pick(&mapped);
        let n = 1 + self.rng.below(6);
        for _ in 0..n {
            let off = if self.rng.chance(60) {
                self.rng
                    .pick(&[64usize, 68, 72, 128, 132, 136, 140, 0, 8, 12, 24])
            } else {
                (self.rng.below(l as u64 / 4) * 4) as usize
            };
            let v = self.rng.u32v();
            // SAFETY: `off + 4 <= l` inside our live shared mapping; the kernel reads it as
            // hostile guest memory.
            unsafe { std::ptr::write_volatile((a + off.min(l - 4)) as *mut u32, v) };
        }
        self.note(format!("evt ring garbage id={id} ({n} words)"));
        let exp = Expect::Any;
        self.call(
            Dev::Evt,
            fd,
            VDE_IOC_KICK,
            &id.to_ne_bytes(),
            Ptr::Good,
            &format!("id={id} (after garbage)"),
            exp,
        );
    }

    /// Writes a (possibly huge) count into a channel's kick eventfd: the module adds it to
    /// the channel's kick counter.
    fn evt_kick_value(&mut self, i: usize) {
        let kicks: Vec<i32> = self.evt[i].chans.values().filter_map(|c| c.kick).collect();
        let efd = if kicks.is_empty() {
            self.rng.pick(&self.oth.eventfds.clone())
        } else {
            self.rng.pick(&kicks)
        };
        let v: u64 = if self.on("huge-kicks") && self.rng.chance(50) {
            self.rng.pick(&[u64::MAX - 1, 1 << 63, (1 << 63) + 12345])
        } else {
            self.rng.pick(&[1u64, 2, 1000, 1 << 32])
        };
        self.note(format!("write eventfd {efd} value {v:#x}"));
        // SAFETY: writing 8 bytes from a local to an fd we own.
        unsafe { libc::write(efd, &v as *const u64 as *const _, 8) };
        let fd = self.evt[i].fd;
        if self.rng.chance(50) {
            let s = VdeStats {
                id: VDE_ALL,
                ..Default::default()
            };
            self.call(
                Dev::Evt,
                fd,
                VDE_IOC_STATS,
                &bytes_of(&s),
                Ptr::Good,
                "id=VDE_ALL (after kick values)",
                Expect::Any,
            );
        }
    }

    /// Acts as a `user` backend that served requests: moves the ring's backend indices.
    fn evt_user_serve(&mut self, i: usize) {
        let users: Vec<(u32, (usize, usize))> = self.evt[i]
            .chans
            .iter()
            .filter(|(_, c)| c.backend == vde_backend::USER)
            .filter_map(|(id, c)| c.map.map(|m| (*id, m)))
            .collect();
        if users.is_empty() {
            return self.evt_attach(i, Ptr::Good);
        }
        let (id, (a, _)) = self.rng.pick(&users);
        let (rc, rp) = (self.rng.below(1000) as u32, self.rng.below(1000) as u32);
        self.note(format!(
            "evt user backend id={id} sets req_cons={rc} rsp_prod={rp}"
        ));
        // SAFETY: the ring header of a live shared mapping.
        unsafe {
            std::ptr::write_volatile((a + OFF_REQ_CONS) as *mut u32, rc);
            std::ptr::write_volatile((a + OFF_RSP_PROD) as *mut u32, rp);
        }
        self.evt_save(i, Ptr::Good);
    }

    // -----------------------------------------------------------------------------------------
    // vd_sriov_mgr

    fn srv_file(&mut self) -> Option<usize> {
        if self.srv.is_empty() || (self.srv.len() < 3 && self.rng.chance(3)) {
            let fd = open_dev(Dev::Srv);
            if fd < 0 {
                self.violation(format!("open {}: {}", Dev::Srv.path(), ename(errno())));
                return None;
            }
            self.srv.push(SrvFile {
                fd,
                leases: vec![],
                released: vec![],
                waits: vec![],
            });
        }
        Some(self.rng.below(self.srv.len() as u64) as usize)
    }

    fn vf_table(&mut self, fd: i32) -> Vec<VdsVf> {
        let mut out = vec![];
        for index in 0..64 {
            let v = VdsVf {
                index,
                ..Default::default()
            };
            let a = self.arena.put(&bytes_of(&v), Ptr::Good);
            if self
                .raw_ioctl(Dev::Srv, fd, VDS_IOC_VF, a, "(table)")
                .is_err()
            {
                break;
            }
            out.push(self.arena.get());
        }
        out
    }

    /// Whether VF `bdf` is leased to `vm` now.
    fn leased_to(&mut self, fd: i32, bdf: u32, vm: u64) -> bool {
        self.vf_table(fd)
            .iter()
            .any(|v| v.bdf == bdf && v.vm_id == vm && v.phase == vds_phase::LEASED)
    }

    fn bdf(&mut self) -> (u32, bool) {
        if !self.vfs.is_empty() && self.rng.chance(80) {
            (self.rng.pick(&self.vfs.clone()), true)
        } else {
            let b = self
                .rng
                .pick(&[0u32, 1, 0x0000_ff00, 0x00ff_ffff, 0x7fff_ffff]);
            (b, self.vfs.contains(&b))
        }
    }

    fn srv_vm(&mut self) -> u64 {
        self.rng
            .pick(&[1u64, 2, 3, 4, 5, 6, 0xf00d, 1 << 40, u64::MAX, 0])
    }

    fn srv_op(&mut self) {
        let Some(i) = self.srv_file() else { return };
        let fd = self.srv[i].fd;
        let p = self.ptr();
        let efault = matches!(p, Ptr::Bad(_) | Ptr::Short);
        match self.rng.below(16) {
            0 => {
                let index = if self.rng.chance(50) {
                    0
                } else {
                    self.rng.u32v()
                };
                let exp = if efault {
                    fail(EFAULT, "argument not readable")
                } else if index >= 16 && p == Ptr::Good {
                    fail(ENOENT, "past the end")
                } else {
                    Expect::Any
                };
                self.call(
                    Dev::Srv,
                    fd,
                    VDS_IOC_PF,
                    &bytes_of(&VdsPf {
                        index,
                        ..Default::default()
                    }),
                    p,
                    &format!("index={index}"),
                    exp,
                );
            }
            1 => {
                let index = if self.rng.chance(50) {
                    self.rng.below(8) as u32
                } else {
                    self.rng.u32v()
                };
                let exp = if efault {
                    fail(EFAULT, "argument not readable")
                } else if index >= 256 && p == Ptr::Good {
                    fail(ENOENT, "past the end")
                } else {
                    Expect::Any
                };
                self.call(
                    Dev::Srv,
                    fd,
                    VDS_IOC_VF,
                    &bytes_of(&VdsVf {
                        index,
                        ..Default::default()
                    }),
                    p,
                    &format!("index={index}"),
                    exp,
                );
            }
            2 | 3 => self.srv_lease(i, p),
            4 | 5 => self.srv_release(i, p),
            6 => {
                let (bdf, is_vf) = self.leased_bdf(i);
                let flags = self.rng.flags(0);
                let s = VdsSample {
                    bdf,
                    flags,
                    bytes: self.rng.u64v(),
                };
                let exp = if efault {
                    fail(EFAULT, "argument not readable")
                } else if flags != 0 {
                    fail(EINVAL, "unknown flag bits")
                } else if !is_vf {
                    fail(ENODEV, "no such VF")
                } else {
                    Expect::Any
                };
                self.call(
                    Dev::Srv,
                    fd,
                    VDS_IOC_SAMPLE,
                    &bytes_of(&s),
                    p,
                    &format!("bdf={bdf:#x} flags={flags:#x} bytes={}", s.bytes),
                    exp,
                );
            }
            7 => {
                let exp = if efault || p == Ptr::ReadOnly {
                    fail(EFAULT, "result not writable")
                } else {
                    Expect::Any
                };
                self.call(Dev::Srv, fd, VDS_IOC_POLICY_GET, &[0u8; 32], p, "", exp);
            }
            8 => self.srv_policy_set(fd, p),
            9 => self.srv_wait(i, p),
            10 => self.srv_swap(i, p),
            11 => {
                let index = self.rng.u32v();
                let exp = if efault {
                    fail(EFAULT, "argument not readable")
                } else {
                    Expect::Any
                };
                self.call(
                    Dev::Srv,
                    fd,
                    VDS_IOC_CANDIDATE,
                    &bytes_of(&VdsCandidate {
                        index,
                        ..Default::default()
                    }),
                    p,
                    &format!("index={index}"),
                    exp,
                );
            }
            12 => self.srv_rate(fd, p),
            13 => self.srv_read(i),
            14 => {
                let exp = if efault || p == Ptr::ReadOnly {
                    fail(EFAULT, "result not writable")
                } else {
                    Expect::Any
                };
                self.call(Dev::Srv, fd, VD_IOC_VERSION, &[0u8; 40], p, "", exp);
            }
            _ => {
                let len = self.rng.pick(&[PAGE, 2 * PAGE]);
                self.mmap(
                    Dev::Srv,
                    fd,
                    len,
                    libc::PROT_READ,
                    true,
                    0,
                    "",
                    fail(ENODEV, "no mmap"),
                );
            }
        }
    }

    fn leased_bdf(&mut self, i: usize) -> (u32, bool) {
        if !self.srv[i].leases.is_empty() && self.rng.chance(60) {
            let (b, _) = self.rng.pick(&self.srv[i].leases.clone());
            (b, true)
        } else {
            self.bdf()
        }
    }

    fn srv_lease(&mut self, i: usize, p: Ptr) {
        let fd = self.srv[i].fd;
        let (bdf, is_vf) = if self.rng.chance(40) {
            (VDS_ANY, true)
        } else {
            self.bdf()
        };
        let vm = self.srv_vm();
        let mut flags = self.rng.flags(VDS_LEASE_KEEP_HOST);
        if flags == 0 && !(self.on("lease-vfio") && self.rng.chance(15)) {
            flags = VDS_LEASE_KEEP_HOST;
        }
        let l = VdsLease {
            bdf,
            flags,
            vm_id: vm,
        };
        let exp = match p {
            Ptr::Bad(_) | Ptr::Short => fail(EFAULT, "argument not readable"),
            _ if vm == 0 => fail(EINVAL, "vm_id 0"),
            _ if flags & !VDS_LEASE_KEEP_HOST != 0 => fail(EINVAL, "unknown flag bits"),
            _ if !is_vf => fail(ENODEV, "no such VF"),
            _ => Expect::Any,
        };
        let desc = format!("bdf={bdf:#x} vm={vm:#x} flags={flags:#x}");
        let r = self.call(Dev::Srv, fd, VDS_IOC_LEASE, &bytes_of(&l), p, &desc, exp);
        match r {
            Ok(_) if p == Ptr::Good => {
                let out: VdsLease = self.arena.get();
                self.srv[i].leases.push((out.bdf, vm));
            }
            Ok(_) => {}
            Err(e) if e == EFAULT && p == Ptr::ReadOnly => {
                let t = self.vf_table(fd);
                if let Some(v) = t.iter().find(|v| {
                    v.vm_id == vm && v.phase != vds_phase::HOST && v.owner_pid == std::process::id()
                }) {
                    let held_by_model = self
                        .srv
                        .iter()
                        .any(|f| f.leases.iter().any(|&(_, m)| m == vm));
                    if !held_by_model {
                        self.violation(format!(
                            "srv VDS_IOC_LEASE {desc}: EFAULT on the write-back left VF {:#x} leased to vm {vm:#x} (issue 11 item 10)",
                            v.bdf
                        ));
                        self.srv[i].leases.push((v.bdf, vm));
                    }
                }
            }
            Err(_) => {}
        }
    }

    fn srv_release(&mut self, i: usize, p: Ptr) {
        let fd = self.srv[i].fd;
        let efault = matches!(p, Ptr::Bad(_) | Ptr::Short);
        let mine = self.srv[i].leases.clone();
        let theirs: Vec<(usize, u32, u64)> = self
            .srv
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(j, f)| f.leases.iter().map(move |&(b, v)| (j, b, v)))
            .collect();
        let kind = self.rng.below(10);
        let (bdf, vm, flags, exp, desc): (u32, u64, u32, Expect, String) = match kind {
            0..=3 if !mine.is_empty() => {
                let (b, v) = self.rng.pick(&mine);
                let flags = if self.rng.chance(30) {
                    self.rng.flags(0) | 0x10
                } else {
                    0
                };
                let wrong_vm = self.rng.chance(30);
                let vm = if wrong_vm { v ^ 0x5a5a_0000 } else { v };
                let exp = if efault {
                    fail(EFAULT, "argument not readable")
                } else if (flags != 0 || wrong_vm) && self.leased_to(fd, b, v) {
                    if flags != 0 && wrong_vm {
                        Expect::Fail(
                            vec![EINVAL, ENOENT],
                            "unknown flag bits and a wrong vm_id (issue 11 item 11)".into(),
                        )
                    } else if flags != 0 {
                        fail(EINVAL, "unknown flag bits (issue 11 item 11)")
                    } else {
                        fail(ENOENT, "vm_id is not the lease's (issue 11 item 11)")
                    }
                } else {
                    Expect::Any
                };
                (
                    b,
                    vm,
                    flags,
                    exp,
                    format!("bdf={b:#x} vm={vm:#x} flags={flags:#x} (own lease vm {v:#x})"),
                )
            }
            4 if !theirs.is_empty() => {
                let (_, b, v) = self.rng.pick(&theirs);
                let exp = if efault {
                    fail(EFAULT, "argument not readable")
                } else if self.leased_to(fd, b, v) {
                    fail(EPERM, "another file's lease")
                } else {
                    Expect::Any
                };
                (
                    b,
                    v,
                    0,
                    exp,
                    format!("bdf={b:#x} vm={v:#x} (another file's lease)"),
                )
            }
            5 | 6 if !self.srv[i].released.is_empty() => {
                let (b, v) = self.rng.pick(&self.srv[i].released.clone());
                let exp = if efault {
                    fail(EFAULT, "argument not readable")
                } else {
                    Expect::Any
                };
                (b, v, 0, exp, format!("bdf={b:#x} vm={v:#x} (released)"))
            }
            _ => {
                let (b, is_vf) = self.bdf();
                let vm = self.srv_vm();
                let exp = if efault {
                    fail(EFAULT, "argument not readable")
                } else if !is_vf && b != VDS_ANY {
                    // The flags check may come first (EINVAL) once unknown flags are refused.
                    Expect::Fail(vec![ENODEV, EINVAL], "no such VF".into())
                } else {
                    Expect::Any
                };
                (b, vm, 0, exp, format!("bdf={b:#x} vm={vm:#x}"))
            }
        };
        let l = VdsLease {
            bdf,
            flags,
            vm_id: vm,
        };
        let r = self.call(Dev::Srv, fd, VDS_IOC_RELEASE, &bytes_of(&l), p, &desc, exp);
        if r.is_ok() {
            // The kernel released whatever this file held on `bdf`.
            let f = &mut self.srv[i];
            let gone: Vec<(u32, u64)> = f
                .leases
                .iter()
                .copied()
                .filter(|&(b, _)| b == bdf)
                .collect();
            f.leases.retain(|&(b, _)| b != bdf);
            f.released.extend(gone);
        }
    }

    fn srv_policy_set(&mut self, fd: i32, p: Ptr) {
        let cur = self.policy0.unwrap_or_default();
        let mut q = cur;
        match self.rng.below(6) {
            0 => q.window_ms = self.rng.u32v(),
            1 => q.sample_ms = self.rng.u32v(),
            2 => q.min_hold_ms = self.rng.u32v(),
            3 => {
                q.threshold_bps = self.rng.u64v();
                q.hysteresis_bps = self.rng.u64v();
            }
            4 => q.flags = self.rng.flags(0) | 1,
            _ => {}
        }
        let obviously_bad = q.flags != 0
            || !(100..=600_000).contains(&q.window_ms)
            || !(50..=10_000).contains(&q.sample_ms)
            || q.min_hold_ms > 86_400_000;
        let exp = match p {
            Ptr::Bad(_) | Ptr::Short => fail(EFAULT, "argument not readable"),
            _ if obviously_bad => fail(EINVAL, "out-of-range policy or unknown flag bits"),
            _ => Expect::Any,
        };
        let desc = format!(
            "window={} sample={} hold={} flags={:#x}",
            q.window_ms, q.sample_ms, q.min_hold_ms, q.flags
        );
        self.call(
            Dev::Srv,
            fd,
            VDS_IOC_POLICY_SET,
            &bytes_of(&q),
            p,
            &desc,
            exp,
        );
    }

    fn srv_wait(&mut self, i: usize, p: Ptr) {
        let fd = self.srv[i].fd;
        let vm = if self.rng.chance(70) {
            self.rng.pick(&[0x77u64, 0x78, 0x79, 0])
        } else {
            self.srv_vm()
        };
        let flags = if self.rng.chance(30) {
            VDS_WAIT_CANCEL
        } else {
            self.rng.flags(VDS_WAIT_CANCEL)
        };
        let reserved = if self.rng.chance(10) {
            self.rng.u32v() | 1
        } else {
            0
        };
        let w = VdsWait {
            vm_id: vm,
            flags,
            reserved,
        };
        let exp = match p {
            Ptr::Bad(_) | Ptr::Short => fail(EFAULT, "argument not readable"),
            _ if vm == 0 || flags & !VDS_WAIT_CANCEL != 0 || reserved != 0 => {
                fail(EINVAL, "vm 0, unknown flag bits or reserved")
            }
            _ => Expect::Any,
        };
        let r = self.call(
            Dev::Srv,
            fd,
            VDS_IOC_WAIT,
            &bytes_of(&w),
            p,
            &format!("vm={vm:#x} flags={flags:#x} reserved={reserved}"),
            exp,
        );
        if r.is_ok() {
            let f = &mut self.srv[i];
            if flags & VDS_WAIT_CANCEL != 0 {
                f.waits.retain(|&x| x != vm);
            } else {
                f.waits.push(vm);
            }
        }
    }

    fn srv_swap(&mut self, i: usize, p: Ptr) {
        let fd = self.srv[i].fd;
        let leases: Vec<(usize, u32, u64)> = self
            .srv
            .iter()
            .enumerate()
            .flat_map(|(j, f)| f.leases.iter().map(move |&(b, v)| (j, b, v)))
            .collect();
        let waits: Vec<(usize, u64)> = self
            .srv
            .iter()
            .enumerate()
            .flat_map(|(j, f)| f.waits.iter().map(move |&v| (j, v)))
            .collect();
        let (bdf, from) = if !leases.is_empty() && self.rng.chance(70) {
            let (_, b, v) = self.rng.pick(&leases);
            (b, if self.rng.chance(20) { v + 1 } else { v })
        } else {
            (self.bdf().0, self.srv_vm())
        };
        let to = if !waits.is_empty() && self.rng.chance(70) {
            self.rng.pick(&waits).1
        } else {
            self.srv_vm()
        };
        let flags = if self.rng.chance(50) {
            VDS_SWAP_FORCE
        } else {
            self.rng.flags(VDS_SWAP_FORCE)
        };
        let s = VdsSwap {
            bdf,
            flags,
            from_vm: from,
            to_vm: to,
        };
        let exp = match p {
            Ptr::Bad(_) | Ptr::Short => fail(EFAULT, "argument not readable"),
            _ if flags & !VDS_SWAP_FORCE != 0 || from == 0 || to == 0 => {
                fail(EINVAL, "unknown flag bits or vm 0")
            }
            _ => Expect::Any,
        };
        let r = self.call(
            Dev::Srv,
            fd,
            VDS_IOC_SWAP,
            &bytes_of(&s),
            p,
            &format!("bdf={bdf:#x} from={from:#x} to={to:#x} flags={flags:#x}"),
            exp,
        );
        if r.is_ok() {
            for f in self.srv.iter_mut() {
                f.leases.retain(|&(b, _)| b != bdf);
            }
            if let Some(&(j, _)) = waits.iter().find(|&&(_, v)| v == to) {
                self.srv[j].waits.retain(|&v| v != to);
                self.srv[j].leases.push((bdf, to));
            }
        }
    }

    fn srv_rate(&mut self, fd: i32, p: Ptr) {
        let (bdf, is_vf) = self.bdf();
        let efault = matches!(p, Ptr::Bad(_) | Ptr::Short);
        if self.on("rate") && self.rng.chance(50) {
            let flags = self.rng.flags(0);
            let (max, min) = match self.rng.below(4) {
                0 => (self.rng.u32v(), self.rng.u32v()),
                1 => (0, 0),
                _ => (self.rng.pick(&[10u32, 100, 500]), 0),
            };
            let rt = VdsRate {
                bdf,
                flags,
                max_tx_mbps: max,
                min_tx_mbps: min,
            };
            let exp = if efault {
                fail(EFAULT, "argument not readable")
            } else if flags != 0 {
                fail(EINVAL, "unknown flag bits")
            } else if !is_vf {
                fail(ENODEV, "no such VF")
            } else {
                Expect::Any
            };
            let r = self.call(
                Dev::Srv,
                fd,
                VDS_IOC_RATE_SET,
                &bytes_of(&rt),
                p,
                &format!("bdf={bdf:#x} max={max} min={min} flags={flags:#x}"),
                exp,
            );
            if r.is_ok() && !self.rated.contains(&bdf) {
                self.rated.push(bdf);
            }
        } else {
            let rt = VdsRate {
                bdf,
                ..Default::default()
            };
            let exp = if efault {
                fail(EFAULT, "argument not readable")
            } else if !is_vf {
                fail(ENODEV, "no such VF")
            } else {
                Expect::Any
            };
            self.call(
                Dev::Srv,
                fd,
                VDS_IOC_RATE_GET,
                &bytes_of(&rt),
                p,
                &format!("bdf={bdf:#x}"),
                exp,
            );
        }
    }

    fn poll_in(&mut self, fd: i32) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n == 1 && pfd.revents & libc::POLLIN != 0
    }

    fn read_call(
        &mut self,
        dev: Dev,
        fd: i32,
        addr: usize,
        len: usize,
        desc: &str,
        exp: Expect,
    ) -> Res {
        self.note(format!(
            "{} fd{fd} read len={len} {desc} buf={addr:#x}",
            dev.short()
        ));
        // SAFETY: `addr` is in our arena (or meant to fault); the kernel checks it.
        let n = unsafe { libc::read(fd, addr as *mut _, len) };
        let r = if n < 0 { Err(errno()) } else { Ok(n as i64) };
        self.judge(dev, Call::Read, desc, r, &exp, &[]);
        r
    }

    fn srv_read(&mut self, i: usize) {
        let fd = self.srv[i].fd;
        let rec = std::mem::size_of::<VdsEvent>();
        if self.rng.chance(50) && self.poll_in(fd) {
            // An event is waiting: a read into a buffer that faults must leave it there.
            let (addr, what) = if self.rng.chance(50) {
                (0usize, "NULL")
            } else {
                (self.arena.put(&[], Ptr::ReadOnly), "read-only page")
            };
            let r = self.read_call(
                Dev::Srv,
                fd,
                addr,
                rec,
                &format!("into {what}"),
                fail(EFAULT, "buffer not writable"),
            );
            if r.is_err() && !self.poll_in(fd) {
                self.violation(format!(
                    "srv read into a {what} failed ({}) and the event it would have returned is gone (issue 11 item 12)",
                    r.err().map(ename).unwrap_or_default()
                ));
            }
            return;
        }
        let len = self
            .rng
            .pick(&[1usize, 8, rec - 1, rec, rec + 1, 2 * rec, 4096, 0]);
        let exp = if (1..rec).contains(&len) {
            fail(EINVAL, "shorter than one record")
        } else {
            Expect::Any
        };
        self.read_call(Dev::Srv, fd, self.arena.buf(), len, "", exp);
    }

    // -----------------------------------------------------------------------------------------
    // vd_input_irq

    fn inp_file(&mut self) -> Option<usize> {
        if self.inp.is_empty() || (self.inp.len() < 4 && self.rng.chance(3)) {
            let fd = open_dev(Dev::Inp);
            if fd < 0 {
                self.violation(format!("open {}: {}", Dev::Inp.path(), ename(errno())));
                return None;
            }
            self.inp.push(InpFile {
                fd,
                vm: None,
                vcpu: false,
            });
        }
        Some(self.rng.below(self.inp.len() as u64) as usize)
    }

    fn inp_vm_id(&mut self) -> u32 {
        match self.rng.below(10) {
            0 => 0,
            1 => self.rng.u32v(),
            2 => NO_VM,
            _ => INP_VM_BASE + self.rng.below(6) as u32,
        }
    }

    fn inp_exists(&self, vm: u32) -> bool {
        self.inp.iter().any(|f| f.vm == Some(vm))
    }

    fn inp_resync(&mut self, i: usize) {
        let fd = self.inp[i].fd;
        let s = VdiStats::default();
        let a = self.arena.put(&bytes_of(&s), Ptr::Good);
        let r = self.raw_ioctl(Dev::Inp, fd, VDI_IOC_STATS, a, "(resync)");
        let st: VdiStats = self.arena.get();
        self.inp[i].vm = r.ok().map(|_| st.vm_id);
    }

    fn inp_op(&mut self) {
        let Some(i) = self.inp_file() else { return };
        let fd = self.inp[i].fd;
        let p = self.ptr();
        let efault = matches!(p, Ptr::Bad(_) | Ptr::Short);
        let has_vm = self.inp[i].vm.is_some();
        match self.rng.below(16) {
            0 | 1 => self.inp_create(i, p),
            2 => {
                let exp = if !has_vm {
                    fail(ENOENT, "no VM on this file")
                } else if self.inp[i].vcpu {
                    fail(EEXIST, "this thread is registered")
                } else {
                    Expect::Any
                };
                if self
                    .call(Dev::Inp, fd, VDI_IOC_VCPU_REGISTER, &[], Ptr::Good, "", exp)
                    .is_ok()
                {
                    self.inp[i].vcpu = true;
                }
            }
            3 => {
                let exp = if !has_vm || !self.inp[i].vcpu {
                    fail(ENOENT, "not registered")
                } else {
                    Expect::Any
                };
                if self
                    .call(
                        Dev::Inp,
                        fd,
                        VDI_IOC_VCPU_UNREGISTER,
                        &[],
                        Ptr::Good,
                        "",
                        exp,
                    )
                    .is_ok()
                {
                    self.inp[i].vcpu = false;
                }
            }
            4 => {
                let v = self.rng.pick(&[0u32, 1, 1, 2, u32::MAX]);
                let exp = if efault {
                    fail(EFAULT, "argument not readable")
                } else if v > 1 {
                    fail(EINVAL, "not 0 or 1")
                } else if !has_vm {
                    fail(ENOENT, "no VM on this file")
                } else {
                    Expect::Any
                };
                self.call(
                    Dev::Inp,
                    fd,
                    VDI_IOC_SET_RUNNING,
                    &v.to_ne_bytes(),
                    p,
                    &format!("{v}"),
                    exp,
                );
            }
            5 => {
                let (cfd, k) = self.arg_fd((Dev::Inp, fd), 50);
                let exp = if efault {
                    fail(EFAULT, "argument not readable")
                } else if let Some(e) = (cfd >= 0).then(|| efd_err(k)).flatten() {
                    fail(e, format!("call fd {k:?}"))
                } else if !has_vm {
                    fail(ENOENT, "no VM on this file")
                } else {
                    Expect::Any
                };
                self.call(
                    Dev::Inp,
                    fd,
                    VDI_IOC_BIND,
                    &cfd.to_ne_bytes(),
                    p,
                    &format!("fd={cfd}({k:?})"),
                    exp,
                );
            }
            6 => {
                let (kfd, k) = self.arg_fd((Dev::Inp, fd), 50);
                let exp = if efault {
                    fail(EFAULT, "argument not readable")
                } else if !has_vm {
                    fail(ENOENT, "no VM on this file")
                } else if let Some(e) = (kfd >= 0).then(|| efd_err(k)).flatten() {
                    fail(e, format!("kick fd {k:?}"))
                } else {
                    Expect::Any
                };
                self.call(
                    Dev::Inp,
                    fd,
                    VDI_IOC_BIND_KICK,
                    &kfd.to_ne_bytes(),
                    p,
                    &format!("fd={kfd}({k:?})"),
                    exp,
                );
            }
            7 | 8 if self.on("route") => self.inp_route(fd, p),
            9 if self.on("route") => {
                let vm = if self.rng.chance(30) {
                    0
                } else {
                    self.inp_vm_id()
                };
                let exp = if efault {
                    fail(EFAULT, "argument not readable")
                } else if vm == NO_VM {
                    fail(ENOENT, "no such VM")
                } else {
                    Expect::Any
                };
                self.call(
                    Dev::Inp,
                    fd,
                    VDI_IOC_FOCUS,
                    &vm.to_ne_bytes(),
                    p,
                    &format!("vm={vm:#x}"),
                    exp,
                );
            }
            10 => {
                let vm = if self.rng.chance(50) {
                    0
                } else {
                    self.inp_vm_id()
                };
                let exp = if efault {
                    fail(EFAULT, "argument not readable")
                } else if p == Ptr::Good && ((vm == 0 && !has_vm) || vm == NO_VM) {
                    fail(ENOENT, "no such VM")
                } else {
                    Expect::Any
                };
                self.call(
                    Dev::Inp,
                    fd,
                    VDI_IOC_STATS,
                    &bytes_of(&VdiStats {
                        vm_id: vm,
                        ..Default::default()
                    }),
                    p,
                    &format!("vm={vm:#x}"),
                    exp,
                );
            }
            11 => {
                let index = self.rng.u32v();
                let exp = if efault {
                    fail(EFAULT, "argument not readable")
                } else if index >= 4096 && p == Ptr::Good {
                    fail(ENOENT, "past the end")
                } else {
                    Expect::Any
                };
                let d = VdiDevice {
                    index,
                    routed: 0,
                    grabbed: 0,
                    vm_id: 0,
                    events: 0,
                    name: [0; 64],
                    phys: [0; 64],
                };
                self.call(
                    Dev::Inp,
                    fd,
                    VDI_IOC_LIST_DEVICES,
                    &bytes_of(&d),
                    p,
                    &format!("index={index}"),
                    exp,
                );
            }
            12 => self.inp_mmap(i),
            14 => self.inp_attach(fd, p, has_vm),
            13 => {
                let exp = if efault || p == Ptr::ReadOnly {
                    fail(EFAULT, "result not writable")
                } else {
                    Expect::Any
                };
                self.call(Dev::Inp, fd, VD_IOC_VERSION, &[0u8; 40], p, "", exp);
            }
            _ => {
                if self.on("vcpu-thread") && has_vm {
                    self.inp_vcpu_thread(fd);
                }
            }
        }
    }

    /// `VDI_IOC_VCPU_ATTACH` / `VDI_IOC_VCPU_DETACH` of threads that cannot be followed: tid 0,
    /// kthreadd (2, a kernel thread) and tids above any `pid_max` (never existed). A thread
    /// that can be followed is never named: a hook on init or on this process would outlive
    /// the run (the module could not unload), and input-attach covers the success path.
    fn inp_attach(&mut self, fd: i32, p: Ptr, has_vm: bool) {
        let efault = matches!(p, Ptr::Bad(_) | Ptr::Short);
        let detach = self.rng.chance(40);
        let tid = match self.rng.below(4) {
            0 => 0,
            1 => 2,
            2 => u32::MAX,
            _ => self.rng.u32v() | 0x4000_0000,
        };
        let flags = if self.rng.chance(25) {
            self.rng.u32v() | 1
        } else {
            0
        };
        let exp = if efault {
            fail(EFAULT, "argument not readable")
        } else if flags != 0 {
            fail(EINVAL, "unknown flags")
        } else if !has_vm {
            fail(ENOENT, "no VM on this file")
        } else if detach {
            fail(ENOENT, "thread not followed")
        } else if tid == 2 {
            fail(EINVAL, "a kernel thread")
        } else {
            fail(ESRCH, "no such thread")
        };
        let a = VdiVcpuAttach { tid, flags };
        let (cmd, what) = if detach {
            (VDI_IOC_VCPU_DETACH, "detach")
        } else {
            (VDI_IOC_VCPU_ATTACH, "attach")
        };
        self.call(
            Dev::Inp,
            fd,
            cmd,
            &bytes_of(&a),
            p,
            &format!("{what} tid={tid} flags={flags:#x}"),
            exp,
        );
    }

    fn inp_create(&mut self, i: usize, p: Ptr) {
        let fd = self.inp[i].fd;
        let vm = match self.inp_vm_id() {
            NO_VM => INP_VM_BASE,
            v => v,
        };
        let entries = if self.rng.chance(70) {
            self.rng.pow2(3, 8)
        } else {
            self.rng.u32v()
        };
        let (cfd, k) = if self.rng.chance(40) {
            (-1, Fk::Neg)
        } else {
            self.arg_fd((Dev::Inp, fd), 60)
        };
        let flags = self.rng.flags(0);
        // A sink whose creation cannot be reported back must not stay (issue 11 item 10).
        let p = if self.inp[i].vm.is_none() && p == Ptr::Good && self.rng.chance(10) {
            Ptr::ReadOnly
        } else {
            p
        };
        let c = VdiVmCreate {
            vm_id: vm,
            entries,
            call_fd: cfd,
            flags,
            mmap_size: self.rng.u64v(),
        };
        let bad_geo = !(entries.is_power_of_two() && (8..=4096).contains(&entries));
        let exp = match p {
            Ptr::Bad(_) | Ptr::Short => fail(EFAULT, "argument not readable"),
            _ if flags != 0 => fail(EINVAL, "unknown flag bits"),
            _ if self.inp[i].vm.is_some() => fail(EEXIST, "this file has a VM"),
            _ => match (cfd >= 0).then(|| efd_err(k)).flatten() {
                Some(e) => fail(e, format!("call fd {k:?}")),
                None if vm == 0 || bad_geo => fail(EINVAL, "vm_id 0 or bad entries"),
                None if self.inp_exists(vm) => fail(EEXIST, "vm_id in use"),
                None => Expect::Any,
            },
        };
        let before = if p == Ptr::ReadOnly {
            self.objects(Dev::Inp, fd)
        } else {
            None
        };
        let desc = format!("vm={vm:#x} entries={entries} call={cfd}({k:?}) flags={flags:#x}");
        let r = self.call(
            Dev::Inp,
            fd,
            VDI_IOC_VM_CREATE,
            &bytes_of(&c),
            p,
            &desc,
            exp,
        );
        match r {
            Ok(_) => self.inp[i].vm = Some(vm),
            Err(e) if e == EFAULT && p == Ptr::ReadOnly => {
                let after = self.objects(Dev::Inp, fd);
                if before.is_some() && after != before {
                    self.violation(format!(
                        "inp VDI_IOC_VM_CREATE {desc}: EFAULT on the write-back left the VM sink behind (objects {before:?} -> {after:?}; issue 11 item 10)"
                    ));
                }
                self.inp_resync(i);
            }
            Err(_) => {}
        }
    }

    fn inp_route(&mut self, fd: i32, p: Ptr) {
        let add = self.rng.chance(60);
        let mut r = VdiRoute {
            kind: self.rng.pick(&[1u32, 1, 1, 2, 3, 4, 5, 0, 6, 0xffff_ffff]),
            grab: self.rng.pick(&[0u32, 0, 1, 2]),
            pattern: [0; 64],
        };
        match self.rng.below(6) {
            0 => {}
            1 => r.pattern = [b'x'; 64],
            _ => {
                let s = format!("vd-fuzz-{}", self.rng.below(4));
                r.pattern[..s.len()].copy_from_slice(s.as_bytes());
            }
        }
        if !add && !self.routes.is_empty() && self.rng.chance(60) {
            r = self.rng.pick(&self.routes.clone());
        }
        let has_nul = r.pattern.contains(&0);
        let empty = r.pattern[0] == 0;
        let bad = !has_nul
            || !(1..=5).contains(&r.kind)
            || r.grab > 1
            || ((r.kind == 1 || r.kind == 2) && empty);
        let exp = match p {
            Ptr::Bad(_) | Ptr::Short => fail(EFAULT, "argument not readable"),
            _ if bad => fail(EINVAL, "bad route"),
            _ => Expect::Any,
        };
        let cmd = if add { VDI_IOC_ROUTE } else { VDI_IOC_UNROUTE };
        let pat = String::from_utf8_lossy(
            &r.pattern[..r.pattern.iter().position(|&b| b == 0).unwrap_or(64)],
        )
        .to_string();
        let res = self.call(
            Dev::Inp,
            fd,
            cmd,
            &bytes_of(&r),
            p,
            &format!("kind={} grab={} pattern={pat:?}", r.kind, r.grab),
            exp,
        );
        if res.is_ok() {
            let same = |a: &VdiRoute| a.kind == r.kind && a.pattern == r.pattern;
            self.routes.retain(|x| !same(x));
            if add {
                self.routes.push(r);
            }
        }
    }

    fn inp_mmap(&mut self, i: usize) {
        let fd = self.inp[i].fd;
        let pgoff = if self.rng.chance(80) {
            0
        } else {
            self.rng.pick(&[1u64, 2, 1024])
        };
        let npages = self.rng.pick(&[1usize, 2, 3, 5, 9, 64, 1024]);
        let shared = !self.rng.chance(10);
        let exp = if pgoff != 0 {
            fail(EINVAL, "offset not 0")
        } else if self.inp[i].vm.is_none() {
            fail(ENOENT, "no VM on this file")
        } else if !shared {
            Expect::Fail(vec![EINVAL], "not MAP_SHARED".into())
        } else {
            Expect::Any
        };
        let desc = format!("pgoff={pgoff} pages={npages} shared={shared}");
        let r = self.mmap(
            Dev::Inp,
            fd,
            npages * PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            shared,
            pgoff * PAGE as u64,
            &desc,
            exp,
        );
        if let Ok(a) = r {
            let a = a as usize;
            // The guest's side of the event ring: consumer index and event index, garbage.
            for off in [64usize, 68, 72, 136] {
                let v = self.rng.u32v();
                // SAFETY: inside the first page of our fresh shared mapping.
                unsafe { std::ptr::write_volatile((a + off) as *mut u32, v) };
            }
            self.maps.push((a, npages * PAGE));
        }
    }

    /// A thread registers itself as a vCPU of the file's VM and exits without unregistering.
    fn inp_vcpu_thread(&mut self, fd: i32) {
        self.note(format!("inp fd{fd} vCPU thread registers and exits"));
        let unreg = self.rng.chance(30);
        let r = std::thread::spawn(move || {
            // SAFETY: `_IO` command, no argument.
            let r = unsafe { libc::ioctl(fd, VDI_IOC_VCPU_REGISTER as _, 0) };
            let e = if r < 0 { errno() } else { 0 };
            if r == 0 && unreg {
                // SAFETY: as above.
                unsafe { libc::ioctl(fd, VDI_IOC_VCPU_UNREGISTER as _, 0) };
            }
            e
        })
        .join()
        .unwrap_or(0);
        let res = if r == 0 { Ok(0) } else { Err(r) };
        self.judge(
            Dev::Inp,
            Call::Ioctl(VDI_IOC_VCPU_REGISTER),
            "(from a short-lived thread)",
            res,
            &Expect::Any,
            &[],
        );
    }

    // -----------------------------------------------------------------------------------------
    // Cross-device ops.

    fn dev_fd(&mut self, d: Dev) -> Option<i32> {
        match d {
            Dev::Evt => self.evt_file().map(|i| self.evt[i].fd),
            Dev::Srv => self.srv_file().map(|i| self.srv[i].fd),
            Dev::Inp => self.inp_file().map(|i| self.inp[i].fd),
        }
    }

    /// A command that is not one of `d`'s: another device's, a right number with the wrong size
    /// or direction, or a random one of a type the VFS does not handle itself.
    fn foreign_cmd(&mut self, d: Dev) -> u32 {
        let mine = cmds(d);
        loop {
            let c = match self.rng.below(4) {
                0 => {
                    let other = self.rng.pick(&[Dev::Evt, Dev::Srv, Dev::Inp]);
                    self.rng.pick(&cmds(other))
                }
                1 => {
                    let c = self.rng.pick(&mine);
                    let dir = (c >> 30) ^ (1 + self.rng.below(3) as u32);
                    (c & 0x3fff_ffff) | (dir << 30)
                }
                2 => {
                    let c = self.rng.pick(&mine);
                    let size = self.rng.below(1 << 14) as u32;
                    (c & !(0x3fff << 16)) | (size << 16)
                }
                _ => {
                    let ty = self
                        .rng
                        .pick(&[0xB7u32, 0xB7, 0xAE, b'Q' as u32, b'z' as u32, 0xB6]);
                    (self.rng.below(4) as u32) << 30
                        | (self.rng.below(200) as u32) << 16
                        | ty << 8
                        | self.rng.below(256) as u32
                }
            };
            if !mine.contains(&c) {
                return c;
            }
        }
    }

    fn op_unknown_cmd(&mut self) {
        let d = self.rng.pick(&[Dev::Evt, Dev::Srv, Dev::Inp]);
        let Some(fd) = self.dev_fd(d) else { return };
        let cmd = self.foreign_cmd(d);
        let p = self.ptr();
        let arg = self.arena.put(&[0u8; 256], p);
        let r = self.raw_ioctl(d, fd, cmd, arg, "(not this device's)");
        self.judge(
            d,
            Call::Unknown,
            &format!("cmd={cmd:#x}"),
            r,
            &fail(ENOTTY, "not one of the device's commands"),
            &[],
        );
    }

    /// A vd command on a file that is not a vd device, a closed fd or a negative one.
    fn op_wrong_target(&mut self) {
        let d = self.rng.pick(&[Dev::Evt, Dev::Srv, Dev::Inp]);
        let cmd = self.rng.pick(&cmds(d));
        let (fd, k) = match self.rng.below(6) {
            0 => (self.rng.pick(&self.oth.pipes.clone()), Fk::Pipe),
            1 => (self.rng.pick(&self.oth.socks.clone()), Fk::Socket),
            2 => (self.rng.pick(&self.oth.eventfds.clone()), Fk::Eventfd),
            3 => (self.oth.reg_rw, Fk::RegRw),
            4 => (self.rng.pick(CLOSED_FDS), Fk::Closed),
            _ => (self.rng.pick(NEG_FDS), Fk::Neg),
        };
        let arg = self.arena.put(&[0u8; 256], Ptr::Good);
        let r = self.raw_ioctl(d, fd, cmd, arg, &format!("on a {k:?}"));
        let want = if matches!(k, Fk::Closed | Fk::Neg) {
            EBADF
        } else {
            ENOTTY
        };
        self.count(d, Call::Unknown, &r);
        if r != Err(want) {
            self.violation(format!(
                "{} {} on fd {fd} ({k:?}): {r:?}, expected {}",
                d.short(),
                cmd_label(cmd),
                ename(want)
            ));
        }
    }

    /// Any pointer-taking command of a device with a pointer that faults or a struct cut short.
    fn op_bad_pointer(&mut self) {
        let d = self.rng.pick(&[Dev::Evt, Dev::Srv, Dev::Inp]);
        let Some(fd) = self.dev_fd(d) else { return };
        let cmd = self.rng.pick(&cmds(d));
        if ioc_size(cmd) == 0 {
            return;
        }
        let p = if self.rng.chance(30) {
            Ptr::Short
        } else {
            Ptr::Bad(self.rng.pick(BAD_PTRS))
        };
        let bytes = vec![0u8; ioc_size(cmd)];
        self.call(
            d,
            fd,
            cmd,
            &bytes,
            p,
            &format!("pointer {p:?}"),
            fail(EFAULT, "argument not accessible"),
        );
    }

    fn op_read_write(&mut self) {
        let d = self.rng.pick(&[Dev::Evt, Dev::Inp, Dev::Srv]);
        let Some(fd) = self.dev_fd(d) else { return };
        if d == Dev::Srv && self.rng.chance(70) {
            let i = self.srv.iter().position(|f| f.fd == fd).unwrap_or(0);
            return self.srv_read(i);
        }
        let len = self.rng.pick(&[1usize, 16, 4096]);
        if d != Dev::Srv && self.rng.chance(50) {
            self.read_call(d, fd, self.arena.buf(), len, "", fail(EINVAL, "no read"));
        } else {
            self.note(format!("{} fd{fd} write len={len}", d.short()));
            // SAFETY: our arena, `len` <= 8 KiB.
            let n = unsafe { libc::write(fd, self.arena.buf() as *const _, len) };
            let r = if n < 0 { Err(errno()) } else { Ok(n as i64) };
            self.judge(d, Call::Write, "", r, &fail(EINVAL, "no write"), &[]);
        }
    }

    /// A fresh file with objects on it, closed by another thread while this one keeps calling.
    fn op_close_race(&mut self) {
        let d = self.rng.pick(&[Dev::Evt, Dev::Srv, Dev::Inp]);
        let fd = open_dev(d);
        if fd < 0 {
            return;
        }
        self.note(format!("{} fd{fd} close race: setting up", d.short()));
        let efd = self.rng.pick(&self.oth.eventfds.clone());
        let bdf = self.vfs.first().copied().unwrap_or(0);
        // Set-up, unchecked beyond the table.
        match d {
            Dev::Evt => {
                for _ in 0..2 {
                    let c = VdeCreate {
                        entries: 16,
                        entry_size: 64,
                        ..Default::default()
                    };
                    let a = self.arena.put(&bytes_of(&c), Ptr::Good);
                    if self
                        .raw_ioctl(d, fd, VDE_IOC_CREATE, a, "(close race)")
                        .is_ok()
                    {
                        let id = self.arena.get::<VdeCreate>().id;
                        let b = VdeBind {
                            id,
                            kick_fd: efd,
                            call_fd: efd,
                            flags: 0,
                        };
                        let a = self.arena.put(&bytes_of(&b), Ptr::Good);
                        let _ = self.raw_ioctl(d, fd, VDE_IOC_BIND, a, "(close race)");
                        let at = VdeAttach {
                            id,
                            backend: vde_backend::ECHO,
                            fd: -1,
                            flags: 0,
                        };
                        let a = self.arena.put(&bytes_of(&at), Ptr::Good);
                        let _ = self.raw_ioctl(d, fd, VDE_IOC_ATTACH, a, "(close race)");
                    }
                }
            }
            Dev::Srv => {
                let l = VdsLease {
                    bdf: VDS_ANY,
                    flags: VDS_LEASE_KEEP_HOST,
                    vm_id: 0x00c1_05e0 + self.rng.below(8),
                };
                let a = self.arena.put(&bytes_of(&l), Ptr::Good);
                let _ = self.raw_ioctl(d, fd, VDS_IOC_LEASE, a, "(close race)");
            }
            Dev::Inp => {
                let c = VdiVmCreate {
                    vm_id: INP_VM_BASE + 0x100 + self.rng.below(16) as u32,
                    entries: 64,
                    call_fd: efd,
                    flags: 0,
                    mmap_size: 0,
                };
                let a = self.arena.put(&bytes_of(&c), Ptr::Good);
                if self
                    .raw_ioctl(d, fd, VDI_IOC_VM_CREATE, a, "(close race)")
                    .is_ok()
                {
                    let _ = self.raw_ioctl(d, fd, VDI_IOC_VCPU_REGISTER, 0, "(close race)");
                }
            }
        }
        let delay = Duration::from_micros(self.rng.below(2000));
        self.note(format!(
            "{} fd{fd} closed by another thread after {delay:?}",
            d.short()
        ));
        let t = std::thread::spawn(move || {
            std::thread::sleep(delay);
            close(fd);
        });
        let cmds = match d {
            Dev::Evt => vec![
                VDE_IOC_STATS,
                VDE_IOC_KICK,
                VDE_IOC_BIND,
                VDE_IOC_DESTROY,
                VDE_IOC_SAVE,
                VDE_IOC_CREATE,
            ],
            Dev::Srv => vec![VDS_IOC_RELEASE, VDS_IOC_SAMPLE, VDS_IOC_VF, VDS_IOC_LEASE],
            Dev::Inp => vec![
                VDI_IOC_STATS,
                VDI_IOC_BIND_KICK,
                VDI_IOC_SET_RUNNING,
                VDI_IOC_VCPU_UNREGISTER,
                VDI_IOC_VCPU_REGISTER,
            ],
        };
        for _ in 0..400 {
            let cmd = self.rng.pick(&cmds);
            let bytes: Vec<u8> = match cmd {
                VDE_IOC_STATS => bytes_of(&VdeStats {
                    id: self.rng.below(3) as u32,
                    ..Default::default()
                }),
                VDE_IOC_BIND => bytes_of(&VdeBind {
                    id: self.rng.below(3) as u32,
                    kick_fd: efd,
                    call_fd: -1,
                    flags: 0,
                }),
                VDE_IOC_SAVE => bytes_of(&VdeState {
                    id: 1,
                    ..Default::default()
                }),
                VDE_IOC_CREATE => bytes_of(&VdeCreate {
                    entries: 8,
                    entry_size: 32,
                    ..Default::default()
                }),
                VDS_IOC_RELEASE | VDS_IOC_LEASE => bytes_of(&VdsLease {
                    bdf,
                    flags: VDS_LEASE_KEEP_HOST,
                    vm_id: 0x00c1_05e0,
                }),
                VDS_IOC_SAMPLE => bytes_of(&VdsSample {
                    bdf,
                    flags: 0,
                    bytes: 1,
                }),
                VDS_IOC_VF => bytes_of(&VdsVf::default()),
                VDI_IOC_STATS => bytes_of(&VdiStats::default()),
                VDI_IOC_BIND_KICK => efd.to_ne_bytes().to_vec(),
                VDI_IOC_SET_RUNNING => (self.rng.below(2) as u32).to_ne_bytes().to_vec(),
                VDI_IOC_VCPU_REGISTER | VDI_IOC_VCPU_UNREGISTER => vec![],
                _ => 0u32.to_ne_bytes().to_vec(),
            };
            let arg = if bytes.is_empty() {
                0
            } else {
                self.arena.put(&bytes, Ptr::Good)
            };
            let r = self.raw_ioctl(d, fd, cmd, arg, "(racing close)");
            self.judge(
                d,
                Call::Ioctl(cmd),
                "(racing close)",
                r,
                &Expect::Any,
                &[EBADF],
            );
            if r == Err(EBADF) {
                break;
            }
        }
        let _ = t.join();
    }

    /// `dup2` of a pipe and back over the kick fd number while BIND / BIND_KICK looks it up.
    fn op_dup2_race(&mut self) {
        let use_inp = self.rng.chance(40);
        let efd = new_eventfd(false);
        let mut pfd = [0i32; 2];
        // SAFETY: `pfd` has room for two fds.
        if efd < 0
            || unsafe { libc::pipe2(pfd.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0
        {
            close(efd);
            return;
        }
        // SAFETY: plain syscall on our fd.
        let num = unsafe { libc::dup(efd) };
        let (dev, fd, id) = if use_inp {
            let Some(i) = self.inp.iter().position(|f| f.vm.is_some()) else {
                for x in [efd, num, pfd[0], pfd[1]] {
                    close(x);
                }
                return;
            };
            (Dev::Inp, self.inp[i].fd, 0)
        } else {
            let Some(i) = self.evt_file() else {
                for x in [efd, num, pfd[0], pfd[1]] {
                    close(x);
                }
                return;
            };
            let Some(&id) = self.evt[i].chans.keys().next() else {
                for x in [efd, num, pfd[0], pfd[1]] {
                    close(x);
                }
                return;
            };
            (Dev::Evt, self.evt[i].fd, id)
        };
        self.note(format!(
            "{} fd{fd} dup2 race on fd {num} (eventfd {efd}, pipe {})",
            dev.short(),
            pfd[0]
        ));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        let (p0, e0) = (pfd[0], efd);
        let t = std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: replacing our own fd number `num` with our pipe or eventfd.
                unsafe {
                    libc::dup2(p0, num);
                    libc::dup2(e0, num);
                }
            }
        });
        for _ in 0..300 {
            let (cmd, bytes) = if dev == Dev::Inp {
                (VDI_IOC_BIND_KICK, num.to_ne_bytes().to_vec())
            } else {
                (
                    VDE_IOC_BIND,
                    bytes_of(&VdeBind {
                        id,
                        kick_fd: num,
                        call_fd: -1,
                        flags: 0,
                    }),
                )
            };
            let a = self.arena.put(&bytes, Ptr::Good);
            // SAFETY: our arena.
            let r = unsafe { libc::ioctl(fd, cmd as _, a) };
            let r = if r < 0 { Err(errno()) } else { Ok(0) };
            self.judge(dev, Call::Ioctl(cmd), "(dup2 race)", r, &Expect::Any, &[]);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = t.join();
        // Unbind, so the model's kick fds stay the fuzzer's own.
        let (cmd, bytes) = if dev == Dev::Inp {
            (VDI_IOC_BIND_KICK, (-1i32).to_ne_bytes().to_vec())
        } else {
            (
                VDE_IOC_BIND,
                bytes_of(&VdeBind {
                    id,
                    kick_fd: -1,
                    call_fd: -1,
                    flags: 0,
                }),
            )
        };
        let a = self.arena.put(&bytes, Ptr::Good);
        let _ = self.raw_ioctl(dev, fd, cmd, a, "(after dup2 race)");
        if dev == Dev::Evt {
            for f in self.evt.iter_mut().filter(|f| f.fd == fd) {
                if let Some(c) = f.chans.get_mut(&id) {
                    c.kick = None;
                }
            }
        }
        for x in [efd, num, pfd[0], pfd[1]] {
            close(x);
        }
    }

    /// Forks; the child makes random calls on the inherited files and exits (a vCPU thread
    /// that dies registered, a domain shared by two processes, a lease file's holder gone).
    fn op_fork(&mut self) {
        let seed = self.rng.next();
        let _ = std::io::stdout().flush();
        self.note("fork".into());
        // SAFETY: single-threaded here (every helper thread is joined); the child only makes
        // syscalls and allocates, then `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            self.in_child = true;
            self.rng = Rng(seed);
            self.violations.clear();
            self.kinds.clear();
            self.nviol = 0;
            // Ring mappings are VM_DONTCOPY: gone in the child.
            for f in self.evt.iter_mut() {
                for c in f.chans.values_mut() {
                    c.map = None;
                }
            }
            self.maps.clear();
            for f in self.inp.iter_mut() {
                f.vcpu = false;
            }
            let n = 10 + self.rng.below(40);
            for _ in 0..n {
                self.step();
            }
            if self.rng.chance(50) {
                if let Some(f) = self.inp.iter().find(|f| f.vm.is_some()) {
                    // SAFETY: `_IO` command; this (child) thread dies registered.
                    unsafe { libc::ioctl(f.fd, VDI_IOC_VCPU_REGISTER as _, 0) };
                }
            }
            for (k, n) in &self.kinds {
                println!("  child {}: {n} x {k}", std::process::id());
            }
            let _ = std::io::stdout().flush();
            // SAFETY: ends the child without running the parent's destructors twice.
            unsafe { libc::_exit(if self.nviol > 0 { 3 } else { 0 }) };
        }
        if pid < 0 {
            return;
        }
        let mut st = 0;
        // SAFETY: waiting for our child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        if libc::WIFSIGNALED(st) {
            self.violation(format!(
                "forked child {pid} died by signal {}",
                libc::WTERMSIG(st)
            ));
        } else if libc::WEXITSTATUS(st) == 3 {
            self.violation_kind(
                format!(
                    "forked child {pid} (seed {seed:#x}) reported violations (printed above it)"
                ),
                "a forked child reported violations (printed above)".into(),
            );
        }
        for i in 0..self.evt.len() {
            self.evt_resync(i);
        }
        for i in 0..self.inp.len() {
            self.inp_resync(i);
        }
        let t = self
            .srv
            .first()
            .map(|f| f.fd)
            .map(|fd| self.vf_table(fd))
            .unwrap_or_default();
        // A lease still in the table after the child ran is not necessarily this file's any
        // more: the child (sharing every file) may have released it and leased the same VF for
        // the same VM through another file. The VF table does not say which file owns a lease,
        // so no lease is "ours" for strict expectations after a fork (a stale one made a
        // wrong-vm_id release expect ENOENT where the kernel rightly said EPERM); they stay
        // usable as released ones (any answer accepted).
        for f in self.srv.iter_mut() {
            let held: Vec<(u32, u64)> = f.leases.drain(..).collect();
            f.released.extend(
                held.into_iter()
                    .filter(|&(b, v)| t.iter().any(|x| x.bdf == b && x.vm_id == v)),
            );
        }
    }

    /// Closes a device file (its objects die with it) now and then.
    fn op_churn(&mut self) {
        let d = self.rng.pick(&[Dev::Evt, Dev::Srv, Dev::Inp]);
        let fd = match d {
            Dev::Evt if self.evt.len() > 1 => {
                self.evt
                    .remove(self.rng.below(self.evt.len() as u64) as usize)
                    .fd
            }
            Dev::Srv if self.srv.len() > 1 => {
                self.srv
                    .remove(self.rng.below(self.srv.len() as u64) as usize)
                    .fd
            }
            Dev::Inp if self.inp.len() > 1 => {
                self.inp
                    .remove(self.rng.below(self.inp.len() as u64) as usize)
                    .fd
            }
            _ => return,
        };
        self.note(format!("{} close fd{fd}", d.short()));
        close(fd);
    }

    fn step(&mut self) {
        self.iter += 1;
        let roll = self.rng.below(1000);
        let op: &'static str = match roll {
            0..=279 => "evtchn",
            280..=449 => "sriov",
            450..=699 => "input",
            700..=759 => "unknown-cmd",
            760..=809 => "wrong-target",
            810..=889 => "bad-pointer",
            890..=929 => "read-write",
            930..=949 => "close-race",
            950..=964 => "dup2-race",
            965..=974 => "fork",
            _ => "churn",
        };
        if !self.on(op) || (self.in_child && matches!(op, "fork" | "close-race" | "dup2-race")) {
            return;
        }
        *self.ops_run.entry(op).or_default() += 1;
        match op {
            "evtchn" => self.evt_op(),
            "sriov" => self.srv_op(),
            "input" => self.inp_op(),
            "unknown-cmd" => self.op_unknown_cmd(),
            "wrong-target" => self.op_wrong_target(),
            "bad-pointer" => self.op_bad_pointer(),
            "read-write" => self.op_read_write(),
            "close-race" => self.op_close_race(),
            "dup2-race" => self.op_dup2_race(),
            "fork" => self.op_fork(),
            _ => self.op_churn(),
        }
    }

    /// Undoes what is host-wide: routes, focus, policy, rate limits; closes everything.
    fn cleanup(&mut self) {
        if let Some(fd) = self.inp.first().map(|f| f.fd) {
            for r in std::mem::take(&mut self.routes) {
                let a = self.arena.put(&bytes_of(&r), Ptr::Good);
                let _ = self.raw_ioctl(Dev::Inp, fd, VDI_IOC_UNROUTE, a, "(cleanup)");
            }
            let a = self.arena.put(&0u32.to_ne_bytes(), Ptr::Good);
            let _ = self.raw_ioctl(Dev::Inp, fd, VDI_IOC_FOCUS, a, "(cleanup)");
        }
        if let (Some(fd), Some(p)) = (self.srv.first().map(|f| f.fd), self.policy0) {
            let a = self.arena.put(&bytes_of(&p), Ptr::Good);
            let _ = self.raw_ioctl(Dev::Srv, fd, VDS_IOC_POLICY_SET, a, "(cleanup)");
            for bdf in std::mem::take(&mut self.rated) {
                let rt = VdsRate {
                    bdf,
                    ..Default::default()
                };
                let a = self.arena.put(&bytes_of(&rt), Ptr::Good);
                let _ = self.raw_ioctl(Dev::Srv, fd, VDS_IOC_RATE_SET, a, "(cleanup)");
            }
        }
        for (a, l) in std::mem::take(&mut self.maps) {
            self.unmap(a, l);
        }
        for fd in self
            .evt
            .drain(..)
            .map(|f| f.fd)
            .chain(self.srv.drain(..).map(|f| f.fd))
            .chain(self.inp.drain(..).map(|f| f.fd))
        {
            close(fd);
        }
    }
}

/// `NAME` of a known command, else its number.
fn cmd_label(cmd: u32) -> String {
    for r in RULES {
        if r.call == Call::Ioctl(cmd) {
            return r.name.to_string();
        }
    }
    format!("{cmd:#010x}")
}

/// `vd-itest hostile`.
pub fn run(a: Args) -> Result<()> {
    for x in &a.exclude {
        if !OPS.contains(&x.as_str())
            && ![
                "evtchn",
                "sriov",
                "input",
                "unknown-cmd",
                "wrong-target",
                "bad-pointer",
                "read-write",
                "churn",
            ]
            .contains(&x.as_str())
        {
            bail!("--exclude: unknown op {x:?} (known: {})", OPS.join(", "));
        }
    }
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ std::process::id() as u64
    });
    println!(
        "hostile: seed {seed} ({}){}",
        match a.iters {
            Some(n) => format!("{n} iterations"),
            None => format!("{} s", a.secs),
        },
        if a.exclude.is_empty() {
            String::new()
        } else {
            format!(", excluding {}", a.exclude.join(","))
        }
    );
    for &fd in CLOSED_FDS {
        close(fd);
    }
    let reg = "/tmp/vd-hostile.img";
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(reg)?;
    f.set_len(1 << 20)?;
    let reg_rw = std::os::fd::IntoRawFd::into_raw_fd(f);
    let reg_ro = std::os::fd::IntoRawFd::into_raw_fd(std::fs::File::open(reg)?);
    let mut oth = Others {
        eventfds: vec![],
        pipes: vec![],
        socks: vec![],
        reg_rw,
        reg_ro,
    };
    for k in 0..6 {
        oth.eventfds.push(new_eventfd(k == 5));
    }
    for _ in 0..2 {
        let mut p = [0i32; 2];
        let mut s = [0i32; 2];
        // SAFETY: room for two fds each.
        unsafe {
            libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK);
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                s.as_mut_ptr(),
            );
        }
        oth.pipes.extend(p);
        oth.socks.extend(s);
    }
    if oth
        .eventfds
        .iter()
        .chain(&oth.pipes)
        .chain(&oth.socks)
        .any(|&fd| fd < 0)
    {
        bail!("could not make the argument fds");
    }
    let trace = match &a.trace {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
        None => None,
    };
    let mut z = Fuzz {
        rng: Rng(seed),
        seed,
        iter: 0,
        excl: a.exclude.clone(),
        trace,
        verbose: a.verbose,
        recent: VecDeque::new(),
        violations: vec![],
        nviol: 0,
        kinds: BTreeMap::new(),
        counts: BTreeMap::new(),
        arena: Arena::new()?,
        evt: vec![],
        srv: vec![],
        inp: vec![],
        oth,
        vfs: vec![],
        routes: vec![],
        policy0: None,
        rated: vec![],
        maps: vec![],
        in_child: false,
        ops_run: BTreeMap::new(),
    };
    // What is there: the VFs and the policy to restore.
    if let Some(i) = z.srv_file() {
        let fd = z.srv[i].fd;
        z.vfs = z.vf_table(fd).iter().map(|v| v.bdf).collect();
        let a0 = z.arena.buf();
        if z.raw_ioctl(Dev::Srv, fd, VDS_IOC_POLICY_GET, a0, "(start)")
            .is_ok()
        {
            z.policy0 = Some(z.arena.get());
        }
    }
    println!("hostile: VFs {:x?}", z.vfs);
    let t0 = Instant::now();
    let dl = Duration::from_secs_f64(a.secs);
    loop {
        match a.iters {
            Some(n) if z.iter >= n => break,
            None if t0.elapsed() >= dl => break,
            _ => {}
        }
        z.step();
    }
    z.cleanup();
    // Every orphan's kick eventfd was one of the fuzzer's: with them closed, every orphan must
    // go (and not pin vd_evtchn for the unload that follows the run).
    for fd in z
        .oth
        .eventfds
        .iter()
        .chain(&z.oth.pipes)
        .chain(&z.oth.socks)
        .copied()
        .chain([z.oth.reg_rw, z.oth.reg_ro])
        .collect::<Vec<_>>()
    {
        close(fd);
    }
    let t1 = Instant::now();
    let mut left = orphans_listed();
    while left.as_ref().is_some_and(|l| !l.is_empty()) && t1.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
        left = orphans_listed();
    }
    match left {
        Some(l) if l.is_empty() => {}
        Some(l) => z.violation(format!(
            "evt VDE_IOC_ORPHAN: {} orphans (creators {l:?}) still listed 10 s after every kick eventfd was closed",
            l.len()
        )),
        None => {} // vd_evtchn not loaded (excluded ops): nothing to check
    }
    let calls: u64 = z.counts.values().flat_map(|m| m.values()).sum();
    println!(
        "hostile: {} iterations, {calls} checked calls in {:.1} s",
        z.iter,
        t0.elapsed().as_secs_f64()
    );
    println!("hostile: ops {:?}", z.ops_run);
    for ((d, c), m) in &z.counts {
        let parts: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!(
            "  {} {}: {}",
            d.short(),
            call_name(*d, *c),
            parts.join(", ")
        );
    }
    for r in RULES {
        if !z.counts.contains_key(&(r.dev, r.call)) {
            println!("  {} {}: never called", r.dev.short(), r.name);
        }
    }
    if z.nviol > 0 {
        println!("hostile: {} violations, by kind:", z.nviol);
        for (k, n) in &z.kinds {
            println!("  {n:6} x {k}");
        }
        bail!(
            "{} violations (seed {seed}; replay: vd-itest hostile --seed {seed} --iters {}{})",
            z.nviol,
            z.iter,
            if a.exclude.is_empty() {
                String::new()
            } else {
                format!(" --exclude {}", a.exclude.join(","))
            }
        );
    }
    println!("ok: {} iterations, every failed call's errno documented, no semantic violation (seed {seed})", z.iter);
    Ok(())
}
