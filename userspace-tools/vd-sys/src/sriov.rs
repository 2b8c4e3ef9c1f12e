//! `/dev/vd_sriov`: SR-IOV VF inventory, leases, usage samples, reassignment and events. A lease
//! belongs to the [`Manager`] (the open file) that took it and ends when it is dropped.

use crate::ioctl_ptr;
use nix::errno::Errno;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;
use vd_uapi::*;

/// Default device node.
pub const DEVICE: &str = "/dev/vd_sriov";

/// An open `/dev/vd_sriov`.
#[derive(Debug)]
pub struct Manager {
    file: File,
}

/// `DDDD:BB:DD.F` of a packed bdf.
pub fn bdf_name(b: u32) -> String {
    format!(
        "{:04x}:{:02x}:{:02x}.{}",
        b >> 16,
        (b >> 8) & 0xff,
        (b >> 3) & 0x1f,
        b & 7
    )
}

/// Parses `DDDD:BB:DD.F` or `BB:DD.F`.
pub fn parse_bdf(s: &str) -> Option<u32> {
    let parts: Vec<&str> = s.split(':').collect();
    let (dom, bus, df) = match parts.as_slice() {
        [d, b, df] => (u32::from_str_radix(d, 16).ok()?, *b, *df),
        [b, df] => (0, *b, *df),
        _ => return None,
    };
    let bus = u32::from_str_radix(bus, 16).ok()?;
    let (dev, f) = df.split_once('.')?;
    let (dev, f) = (u32::from_str_radix(dev, 16).ok()?, f.parse::<u32>().ok()?);
    (dom <= 0xffff && bus <= 0xff && dev < 32 && f < 8)
        .then_some(dom << 16 | bus << 8 | dev << 3 | f)
}

impl Manager {
    /// Opens [`DEVICE`].
    pub fn open() -> std::io::Result<Self> {
        Self::open_path(Path::new(DEVICE))
    }
    /// Opens a vd_sriov device node.
    pub fn open_path(p: &Path) -> std::io::Result<Self> {
        Ok(Self {
            file: OpenOptions::new().read(true).write(true).open(p)?,
        })
    }
    /// Opens it non-blocking (reads answer `EAGAIN` instead of waiting).
    pub fn open_nonblocking() -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        Ok(Self {
            file: OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(DEVICE)?,
        })
    }
    /// Wraps an already open file (tests use a faulty one).
    pub fn from_file(file: File) -> Self {
        Self { file }
    }
    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }
    /// `VD_IOC_VERSION`.
    pub fn version(&self) -> Result<VdVersion, Errno> {
        crate::version(&self.file)
    }
    /// `VDS_IOC_PF`.
    pub fn pf(&self, index: u32) -> Result<VdsPf, Errno> {
        let mut p = VdsPf {
            index,
            ..Default::default()
        };
        // SAFETY: `_IOWR` of one `VdsPf`.
        unsafe { ioctl_ptr(&self.file, VDS_IOC_PF, &mut p) }?;
        Ok(p)
    }
    /// `VDS_IOC_VF`.
    pub fn vf(&self, index: u32) -> Result<VdsVf, Errno> {
        let mut v = VdsVf {
            index,
            ..Default::default()
        };
        // SAFETY: `_IOWR` of one `VdsVf`.
        unsafe { ioctl_ptr(&self.file, VDS_IOC_VF, &mut v) }?;
        Ok(v)
    }
    /// Every SR-IOV PF.
    pub fn pfs(&self) -> Result<Vec<VdsPf>, Errno> {
        collect(|i| self.pf(i))
    }
    /// Every VF.
    pub fn vfs(&self) -> Result<Vec<VdsVf>, Errno> {
        collect(|i| self.vf(i))
    }
    /// `VDS_IOC_LEASE`: `bdf` (or [`VDS_ANY`]) for VM `vm_id`; returns the VF leased.
    pub fn lease(&self, bdf: u32, vm_id: u64, flags: u32) -> Result<u32, Errno> {
        let mut l = VdsLease { bdf, flags, vm_id };
        // SAFETY: `_IOWR` of one `VdsLease`.
        unsafe { ioctl_ptr(&self.file, VDS_IOC_LEASE, &mut l) }?;
        Ok(l.bdf)
    }
    /// `VDS_IOC_RELEASE` of the lease of `bdf` for VM `vm_id` (the VM it was taken for:
    /// `ENOENT` if this file holds no lease of `bdf` for that VM, `EPERM` if another file does).
    pub fn release(&self, bdf: u32, vm_id: u64) -> Result<(), Errno> {
        self.release_lease(&VdsLease {
            bdf,
            flags: 0,
            vm_id,
        })
    }
    /// `VDS_IOC_RELEASE` with every field as given (flags must be 0: `EINVAL`).
    pub fn release_lease(&self, l: &VdsLease) -> Result<(), Errno> {
        let mut l = *l;
        // SAFETY: `_IOW` of one `VdsLease`.
        unsafe { ioctl_ptr(&self.file, VDS_IOC_RELEASE, &mut l) }.map(drop)
    }
    /// `VDS_IOC_SAMPLE`: cumulative bytes of a passed-through VF.
    pub fn sample(&self, bdf: u32, bytes: u64) -> Result<(), Errno> {
        let mut s = VdsSample {
            bdf,
            flags: 0,
            bytes,
        };
        // SAFETY: `_IOW` of one `VdsSample`.
        unsafe { ioctl_ptr(&self.file, VDS_IOC_SAMPLE, &mut s) }.map(drop)
    }
    /// `VDS_IOC_POLICY_GET`.
    pub fn policy(&self) -> Result<VdsPolicy, Errno> {
        let mut p = VdsPolicy::default();
        // SAFETY: `_IOR` of one `VdsPolicy`.
        unsafe { ioctl_ptr(&self.file, VDS_IOC_POLICY_GET, &mut p) }?;
        Ok(p)
    }
    /// `VDS_IOC_POLICY_SET`.
    pub fn set_policy(&self, p: &VdsPolicy) -> Result<(), Errno> {
        let mut p = *p;
        // SAFETY: `_IOW` of one `VdsPolicy`.
        unsafe { ioctl_ptr(&self.file, VDS_IOC_POLICY_SET, &mut p) }.map(drop)
    }
    /// `VDS_IOC_WAIT` (`cancel`: stop waiting).
    pub fn wait_for_vf(&self, vm_id: u64, cancel: bool) -> Result<(), Errno> {
        let mut w = VdsWait {
            vm_id,
            flags: if cancel { VDS_WAIT_CANCEL } else { 0 },
            reserved: 0,
        };
        // SAFETY: `_IOW` of one `VdsWait`.
        unsafe { ioctl_ptr(&self.file, VDS_IOC_WAIT, &mut w) }.map(drop)
    }
    /// `VDS_IOC_SWAP` (see [`swap_errno_hint`] for what its errors mean).
    pub fn swap(&self, bdf: u32, from_vm: u64, to_vm: u64, force: bool) -> Result<(), Errno> {
        let mut s = VdsSwap {
            bdf,
            flags: if force { VDS_SWAP_FORCE } else { 0 },
            from_vm,
            to_vm,
        };
        // SAFETY: `_IOW` of one `VdsSwap`.
        unsafe { ioctl_ptr(&self.file, VDS_IOC_SWAP, &mut s) }.map(drop)
    }
    /// `VDS_IOC_CANDIDATE`.
    pub fn candidate(&self, index: u32) -> Result<VdsCandidate, Errno> {
        let mut c = VdsCandidate {
            index,
            ..Default::default()
        };
        // SAFETY: `_IOWR` of one `VdsCandidate`.
        unsafe { ioctl_ptr(&self.file, VDS_IOC_CANDIDATE, &mut c) }?;
        Ok(c)
    }
    /// `VDS_IOC_RATE_GET`: VF `bdf`'s transmit rate limits, as its PF driver keeps them.
    pub fn rate(&self, bdf: u32) -> Result<VdsRate, Errno> {
        let mut r = VdsRate {
            bdf,
            ..Default::default()
        };
        // SAFETY: `_IOWR` of one `VdsRate`.
        unsafe { ioctl_ptr(&self.file, VDS_IOC_RATE_GET, &mut r) }?;
        Ok(r)
    }
    /// `VDS_IOC_RATE_SET`: VF `bdf`'s maximum (and guaranteed minimum) transmit rate, Mbit/s;
    /// 0 lifts the limit. `EOPNOTSUPP` if the PF driver has no per-VF rates.
    pub fn set_rate(&self, bdf: u32, max_tx_mbps: u32, min_tx_mbps: u32) -> Result<(), Errno> {
        let mut r = VdsRate {
            bdf,
            flags: 0,
            max_tx_mbps,
            min_tx_mbps,
        };
        // SAFETY: `_IOW` of one `VdsRate`.
        unsafe { ioctl_ptr(&self.file, VDS_IOC_RATE_SET, &mut r) }.map(drop)
    }
    /// Idle holders then waiters.
    pub fn candidates(&self) -> Result<Vec<VdsCandidate>, Errno> {
        collect(|i| self.candidate(i))
    }
    /// Reads the events queued now (or waits for the first one, on a blocking file).
    pub fn read_events(&self) -> Result<Vec<VdsEvent>, Errno> {
        const N: usize = 16;
        let mut buf = [0u8; N * std::mem::size_of::<VdsEvent>()];
        let n = (&self.file)
            .read(&mut buf)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO)))?;
        Ok(buf[..n]
            .chunks_exact(std::mem::size_of::<VdsEvent>())
            // SAFETY: `VdsEvent` is plain old data (`#[repr(C)]` integers), any bytes are valid;
            // `read_unaligned` copes with the buffer's alignment.
            .map(|c| unsafe { std::ptr::read_unaligned(c.as_ptr() as *const VdsEvent) })
            .collect())
    }
    /// Waits up to `timeout` for events to be readable (`poll`).
    pub fn poll_readable(&self, timeout: Duration) -> Result<bool, Errno> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        let n = poll(&mut fds, ms)?;
        Ok(n > 0
            && fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN)))
    }
}

fn collect<T>(mut f: impl FnMut(u32) -> Result<T, Errno>) -> Result<Vec<T>, Errno> {
    let mut v = vec![];
    for i in 0.. {
        match f(i) {
            Ok(x) => v.push(x),
            Err(Errno::ENOENT) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(v)
}

/// Name of a `vds_event` kind.
pub fn event_name(k: u32) -> &'static str {
    match k {
        vds_event::VF_ADDED => "vf-added",
        vds_event::VF_REMOVED => "vf-removed",
        vds_event::LEASED => "leased",
        vds_event::RELEASED => "released",
        vds_event::RETURNED => "returned",
        vds_event::REVOKED => "revoked",
        vds_event::CANDIDATE => "candidate",
        vds_event::SWAPPED => "swapped",
        vds_event::MOVE_FAILED => "move-failed",
        vds_event::LOST => "lost",
        vds_event::WAITING => "waiting",
        vds_event::BUSY => "busy",
        _ => "?",
    }
}

/// Name of a `vds_phase`.
pub fn phase_name(p: u32) -> &'static str {
    match p {
        vds_phase::HOST => "host",
        vds_phase::TO_GUEST => "to-guest",
        vds_phase::LEASED => "leased",
        vds_phase::TO_HOST => "to-host",
        _ => "?",
    }
}

/// What an error of `VDS_IOC_SWAP` means, in words ("" for one without a specific meaning).
pub fn swap_errno_hint(e: Errno) -> &'static str {
    match e {
        Errno::EAGAIN => "the holder is no longer idle (busy again)",
        Errno::ENOENT => "the waiter stopped waiting or the VF is no longer leased",
        Errno::ESRCH => "the VF is no longer held by that VM",
        Errno::EBUSY => "the VF is moving",
        Errno::ENODEV => "the VF is gone",
        Errno::EPERM => "the caller lacks CAP_NET_ADMIN",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    #[test]
    fn every_ioctl_reports_ebadf_on_a_faulty_fd() {
        // SAFETY: fd -2 is never valid; every call fails with EBADF; forgotten below.
        let m = Manager::from_file(unsafe { File::from_raw_fd(-2) });
        assert_eq!(m.version().unwrap_err(), Errno::EBADF);
        assert_eq!(m.pfs().unwrap_err(), Errno::EBADF);
        assert_eq!(m.vfs().unwrap_err(), Errno::EBADF);
        assert_eq!(m.lease(VDS_ANY, 1, 0).unwrap_err(), Errno::EBADF);
        assert_eq!(m.release(0, 1).unwrap_err(), Errno::EBADF);
        assert_eq!(m.sample(0, 0).unwrap_err(), Errno::EBADF);
        assert_eq!(m.policy().unwrap_err(), Errno::EBADF);
        assert_eq!(
            m.set_policy(&VdsPolicy::default()).unwrap_err(),
            Errno::EBADF
        );
        assert_eq!(m.wait_for_vf(1, false).unwrap_err(), Errno::EBADF);
        assert_eq!(m.swap(0, 1, 2, false).unwrap_err(), Errno::EBADF);
        assert_eq!(m.candidates().unwrap_err(), Errno::EBADF);
        assert_eq!(m.read_events().unwrap_err(), Errno::EBADF);
        assert_eq!(m.rate(0).unwrap_err(), Errno::EBADF);
        assert_eq!(m.set_rate(0, 100, 0).unwrap_err(), Errno::EBADF);
        std::mem::forget(m);
    }

    #[test]
    fn a_non_vd_device_answers_enotty() {
        let m = Manager::from_file(File::open("/dev/null").unwrap());
        assert_eq!(m.vfs().unwrap_err(), Errno::ENOTTY);
        assert_eq!(m.lease(VDS_ANY, 1, 0).unwrap_err(), Errno::ENOTTY);
        assert_eq!(m.set_rate(0, 100, 0).unwrap_err(), Errno::ENOTTY);
    }

    #[test]
    fn bdf_round_trip() {
        let b = parse_bdf("0000:01:10.2").unwrap();
        assert_eq!(b, 0x0182);
        assert_eq!(bdf_name(b), "0000:01:10.2");
        assert_eq!(parse_bdf("01:00.0"), Some(0x100));
        assert_eq!(parse_bdf("0000:01:20.0"), None);
        assert_eq!(parse_bdf("x"), None);
    }
}
