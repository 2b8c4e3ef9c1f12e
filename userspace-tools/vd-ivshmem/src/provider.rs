//! Where channels come from: `/dev/vd_evtchn` ([`KernelProvider`]), or, for tests on any
//! machine, a memfd and two eventfds ([`FakeProvider`]).

use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};
use serde::Serialize;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use vd_sys::evtchn::{Domain, ShmRequest};
use vd_uapi::{vde_backend, VDE_FEAT_BLOCK, VDE_FEAT_SHM, VDE_MAX_DATA};

/// Page size of the ring layout.
const PAGE: u64 = 4096;

/// The value a guest writes to BAR0 offset 12 to signal `peer`'s `vector` (QEMU's ioeventfd
/// datamatch).
pub const fn doorbell(peer: u16, vector: u8) -> u32 {
    ((peer as u32) << 16) | vector as u32
}

/// The shape of every channel the server makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelGeometry {
    /// Slots per ring array.
    pub entries: u32,
    /// Bytes per slot.
    pub slot: u32,
    /// Bytes of the data area.
    pub data_size: u32,
}

impl ChannelGeometry {
    /// Checks the command-line values; the error says which and why.
    pub fn new(entries: u32, slot: u32, data_mib: u32) -> Result<Self, String> {
        vd_ring::Geometry::new(entries, slot).map_err(|e| {
            format!(
                "--entries {entries} --slot {slot}: {} (entries: a power of two 1..=4096; \
                 slot: a power of two 32..=4096; entries * slot <= 1 MiB)",
                e.name()
            )
        })?;
        let max = VDE_MAX_DATA >> 20;
        let data_size = match data_mib.checked_mul(1 << 20) {
            Some(d) if (1..=max).contains(&data_mib) => d,
            _ => return Err(format!("--data-mib {data_mib}: between 1 and {max}")),
        };
        Ok(Self {
            entries,
            slot,
            data_size,
        })
    }

    /// What `VDE_IOC_CREATE_SHM` is asked: a block device whose doorbell is the host peer's
    /// vector 0 (`(0 << 16) | 0`).
    pub fn request(&self) -> ShmRequest {
        ShmRequest {
            entries: self.entries,
            entry_size: self.slot,
            data_size: self.data_size,
            dev_kind: vd_ring::dev_kind::BLOCK,
            doorbell: doorbell(crate::proto::HOST_PEER, 0),
        }
    }

    /// Offset of the data area: the ring's bytes, page aligned.
    pub fn data_off(&self) -> u64 {
        let ring = vd_ring::Geometry::new(self.entries, self.slot)
            .map(|g| g.total_bytes() as u64)
            .unwrap_or(PAGE);
        ring.div_ceil(PAGE) * PAGE
    }

    /// Size of the shared-memory file: the next power of two that holds ring and data area
    /// (QEMU maps a power of two as BAR2).
    pub fn shm_size(&self) -> u64 {
        (self.data_off() + u64::from(self.data_size)).next_power_of_two()
    }
}

/// A channel made for one client. Dropping it closes this process's copies of its files.
#[derive(Debug)]
pub struct Channel {
    /// Channel id in the provider's domain.
    pub id: u32,
    /// The shared-memory file (ring at 0, data area at `data_off`).
    pub shm: OwnedFd,
    /// Size of `shm` as the provider reports it.
    pub size: u64,
    /// Offset of the data area in `shm`.
    pub data_off: u64,
    /// The channel's host-wide list key (`VDE_IOC_LIST`'s cursor: unique, never reused), when
    /// known. After the hand-over the channel id is free again, so the key is what names it.
    pub key: Option<u64>,
    /// The eventfd the guest's doorbell signals (QEMU's ioeventfd for peer 0, vector 0).
    pub kick: OwnedFd,
    /// The eventfd that interrupts the guest (QEMU's irqfd of MSI-X vector 0).
    pub call: OwnedFd,
}

/// Which step of making a channel failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Opening `/dev/vd_evtchn`.
    Open,
    /// `VD_IOC_VERSION` / the feature check.
    Version,
    /// `VDE_IOC_CREATE_SHM`.
    CreateShm,
    /// `eventfd(2)`.
    Eventfd,
    /// `VDE_IOC_BIND`.
    Bind,
    /// `VDE_IOC_ATTACH` of the block backend.
    Attach,
    /// `VDE_IOC_ORPHAN`.
    Orphan,
    /// Checking the shared-memory file.
    Shm,
}

/// A failed step with its errno, displayed with what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ProviderError {
    /// The step.
    pub step: Step,
    /// Its errno.
    pub errno: Errno,
    /// Extra context (a path, a size).
    pub detail: String,
}

impl ProviderError {
    /// A failed step.
    pub fn new(step: Step, errno: Errno) -> Self {
        Self {
            step,
            errno,
            detail: String::new(),
        }
    }

    fn hint(&self) -> &'static str {
        use Errno::*;
        match (self.step, self.errno) {
            (Step::Open, ENOENT) => {
                "; load the module (modprobe vd_evtchn, or insmod vd_evtchn.ko) or pass --device"
            }
            (Step::Open, EACCES | EPERM) => "; run the server as root (or give it the device)",
            (Step::Version, ENOTTY) => "; that file is not a vd_evtchn device: check --device",
            (Step::Version, EOPNOTSUPP) => {
                "; the loaded vd_evtchn lacks ivshmem channels (VDE_FEAT_SHM) or the block \
                 backend: load the module built from this tree"
            }
            (Step::CreateShm | Step::Orphan, ENOTTY) => {
                "; the loaded vd_evtchn is too old for ivshmem channels: load the module built \
                 from this tree"
            }
            (Step::CreateShm, EINVAL) => {
                "; the module refused the geometry (--entries/--slot/--data-mib)"
            }
            (Step::CreateShm, ENOMEM) => {
                "; not enough memory for a pinned ring and data area: lower --data-mib"
            }
            (Step::CreateShm | Step::Eventfd, EMFILE | ENFILE) => {
                "; out of file descriptors (raise LimitNOFILE)"
            }
            (Step::Attach, EINVAL | EBADF) => {
                "; the image must be a regular file or a block device opened read-write"
            }
            (Step::Orphan, EINVAL) => "; the channel has no kick eventfd bound (a module bug)",
            (Step::Shm, _) => "; QEMU would refuse or abort on this file (a module bug)",
            _ => "",
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.step {
            Step::Open => "opening the vd_evtchn device",
            Step::Version => "checking the vd_evtchn device",
            Step::CreateShm => "creating the channel (VDE_IOC_CREATE_SHM)",
            Step::Eventfd => "creating an eventfd",
            Step::Bind => "binding the eventfds (VDE_IOC_BIND)",
            Step::Attach => "attaching the block backend (VDE_IOC_ATTACH)",
            Step::Orphan => "handing the channel to the guest (VDE_IOC_ORPHAN)",
            Step::Shm => "checking the shared-memory file",
        };
        write!(f, "{what}")?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        write!(f, ": {}{}", self.errno.desc(), self.hint())
    }
}

/// Makes channels. The server calls, per client: [`Self::create`], then [`Self::orphan`] (or
/// [`Self::destroy`] when it cannot hand the channel over).
pub trait ChannelProvider {
    /// A block channel on `image` with `geo`: shared-memory file, kick and call eventfds bound,
    /// block backend attached. Nothing of it is left behind on error.
    fn create(
        &mut self,
        geo: &ChannelGeometry,
        image: BorrowedFd<'_>,
    ) -> Result<Channel, ProviderError>;
    /// Hands the channel to its guest: it lives on, served, until the last reference to its
    /// kick eventfd is closed (QEMU exited), whatever happens to this process.
    fn orphan(&mut self, ch: &Channel) -> Result<(), ProviderError>;
    /// Ends a channel that was not handed over.
    fn destroy(&mut self, ch: &Channel);
}

fn new_eventfd() -> Result<OwnedFd, ProviderError> {
    EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
        .map(OwnedFd::from)
        .map_err(|e| ProviderError::new(Step::Eventfd, e))
}

/// Channels from `/dev/vd_evtchn`: one domain (open file) for the server's life; every
/// channel leaves it at once ([`ChannelProvider::orphan`]), so the server's exit or death
/// ends none of them.
#[derive(Debug)]
pub struct KernelProvider {
    dom: Domain,
}

impl KernelProvider {
    /// Opens the device and checks it serves ivshmem block channels.
    pub fn open(path: &Path) -> Result<Self, ProviderError> {
        let detail = || path.display().to_string();
        let dom = Domain::open_path(path).map_err(|e| ProviderError {
            detail: detail(),
            ..ProviderError::new(
                Step::Open,
                Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)),
            )
        })?;
        let v = dom.version().map_err(|e| ProviderError {
            detail: detail(),
            ..ProviderError::new(Step::Version, e)
        })?;
        let need = VDE_FEAT_SHM | VDE_FEAT_BLOCK;
        if v.driver != vd_uapi::VdDriver::Evtchn as u32 {
            return Err(ProviderError {
                detail: format!("{}: another vd device (driver {})", detail(), v.driver),
                ..ProviderError::new(Step::Version, Errno::ENOTTY)
            });
        }
        if v.features & need != need {
            return Err(ProviderError {
                detail: format!("{}: features {:#x}", detail(), v.features),
                ..ProviderError::new(Step::Version, Errno::EOPNOTSUPP)
            });
        }
        Ok(Self { dom })
    }
}

impl KernelProvider {
    /// The list key of this domain's channel `id` (a walk over the host's channels).
    fn list_key(&self, id: u32) -> Option<u64> {
        let me = std::process::id();
        let all = self.dom.list_all().ok()?;
        all.iter()
            .find(|e| {
                e.domain_pid == me && e.stats.id == id && e.flags & vd_uapi::VDE_LIST_ORPHAN == 0
            })
            .map(|e| e.cursor)
    }
}

impl ChannelProvider for KernelProvider {
    fn create(
        &mut self,
        geo: &ChannelGeometry,
        image: BorrowedFd<'_>,
    ) -> Result<Channel, ProviderError> {
        let shm = self
            .dom
            .create_shm(&geo.request())
            .map_err(|e| ProviderError::new(Step::CreateShm, e))?;
        let id = shm.info.id;
        let rest = || -> Result<(OwnedFd, OwnedFd), ProviderError> {
            let kick = new_eventfd()?;
            let call = new_eventfd()?;
            self.dom
                .bind(id, Some(kick.as_raw_fd()), Some(call.as_raw_fd()))
                .map_err(|e| ProviderError::new(Step::Bind, e))?;
            self.dom
                .attach(id, vde_backend::BLOCK, Some(image.as_raw_fd()))
                .map_err(|e| ProviderError::new(Step::Attach, e))?;
            Ok((kick, call))
        };
        match rest() {
            Ok((kick, call)) => Ok(Channel {
                id,
                size: shm.info.size,
                data_off: shm.info.data_off,
                key: self.list_key(id),
                shm: shm.file.into(),
                kick,
                call,
            }),
            Err(e) => {
                let _ = self.dom.destroy(id);
                Err(e)
            }
        }
    }

    fn orphan(&mut self, ch: &Channel) -> Result<(), ProviderError> {
        self.dom
            .orphan(ch.id)
            .map_err(|e| ProviderError::new(Step::Orphan, e))
    }

    fn destroy(&mut self, ch: &Channel) {
        let _ = self.dom.destroy(ch.id);
    }
}

/// What the fake provider made, for a test to inspect.
#[derive(Debug)]
pub struct FakeChannel {
    /// Its id.
    pub id: u32,
    /// The provider's copy of the shared-memory file (a memfd).
    pub shm: OwnedFd,
    /// The provider's copy of the kick eventfd (what the kernel would wait on).
    pub kick: OwnedFd,
    /// The provider's copy of the call eventfd (what the kernel would signal).
    pub call: OwnedFd,
    /// The image file, kept as the kernel's block backend keeps it (with `hold_image`).
    pub image: Option<OwnedFd>,
    /// Handed over.
    pub orphaned: bool,
    /// Destroyed.
    pub destroyed: bool,
}

/// The fake provider's state.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Channels made, in order.
    pub channels: Vec<FakeChannel>,
    /// Fail the next `create` with this errno.
    pub fail_create: Option<Errno>,
    /// Fail the next `orphan` with this errno.
    pub fail_orphan: Option<Errno>,
    /// Keep a reference to the image as the kernel does (its lock then outlives the server's
    /// copy, as with a real channel).
    pub hold_image: bool,
}

/// A provider for tests: a memfd sized like the kernel's shmem file and two eventfds; it
/// keeps copies of everything (as the kernel keeps its references) so a test can check what a
/// client received. Clones share the state.
#[derive(Clone, Debug, Default)]
pub struct FakeProvider(Arc<Mutex<FakeState>>);

impl FakeProvider {
    /// The state (poisoning ignored: a test that panicked already failed).
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn dup(fd: BorrowedFd<'_>, step: Step) -> Result<OwnedFd, ProviderError> {
    fd.try_clone_to_owned()
        .map_err(|e| ProviderError::new(step, Errno::from_raw(e.raw_os_error().unwrap_or(0))))
}

impl ChannelProvider for FakeProvider {
    fn create(
        &mut self,
        geo: &ChannelGeometry,
        image: BorrowedFd<'_>,
    ) -> Result<Channel, ProviderError> {
        let mut st = self.state();
        if let Some(e) = st.fail_create.take() {
            return Err(ProviderError::new(Step::CreateShm, e));
        }
        let size = geo.shm_size();
        let shm = nix::sys::memfd::memfd_create(
            c"vd-ivshmem-fake",
            nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
        )
        .map_err(|e| ProviderError::new(Step::CreateShm, e))?;
        let len =
            i64::try_from(size).map_err(|_| ProviderError::new(Step::CreateShm, Errno::EINVAL))?;
        nix::unistd::ftruncate(&shm, len).map_err(|e| ProviderError::new(Step::CreateShm, e))?;
        let (kick, call) = (new_eventfd()?, new_eventfd()?);
        let id = st.channels.len() as u32;
        let ch = Channel {
            id,
            size,
            data_off: geo.data_off(),
            key: Some(u64::from(id)),
            shm: dup(shm.as_fd(), Step::CreateShm)?,
            kick: dup(kick.as_fd(), Step::Eventfd)?,
            call: dup(call.as_fd(), Step::Eventfd)?,
        };
        let image = if st.hold_image {
            Some(dup(image, Step::Attach)?)
        } else {
            None
        };
        st.channels.push(FakeChannel {
            id,
            shm,
            kick,
            call,
            image,
            orphaned: false,
            destroyed: false,
        });
        Ok(ch)
    }

    fn orphan(&mut self, ch: &Channel) -> Result<(), ProviderError> {
        let mut st = self.state();
        if let Some(e) = st.fail_orphan.take() {
            return Err(ProviderError::new(Step::Orphan, e));
        }
        match st.channels.get_mut(ch.id as usize) {
            Some(c) => {
                c.orphaned = true;
                Ok(())
            }
            None => Err(ProviderError::new(Step::Orphan, Errno::ENOENT)),
        }
    }

    fn destroy(&mut self, ch: &Channel) {
        if let Some(c) = self.state().channels.get_mut(ch.id as usize) {
            c.destroyed = true;
            c.image = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_checked_and_sized_as_the_spec_says() {
        let g = ChannelGeometry::new(64, 64, 8).unwrap();
        assert_eq!(g.data_size, 8 << 20);
        // 64 * 64 = 4 KiB per array: header page + two arrays = 12 KiB.
        assert_eq!(g.data_off(), 3 * 4096);
        assert_eq!(g.shm_size(), 16 << 20);
        assert!(g.shm_size().is_power_of_two());
        let r = g.request();
        assert_eq!(
            (r.entries, r.entry_size, r.data_size, r.dev_kind, r.doorbell),
            (64, 64, 8 << 20, vd_ring::dev_kind::BLOCK, 0)
        );
        assert_eq!(doorbell(1, 2), 0x1_0002);
        let e = ChannelGeometry::new(63, 64, 8).unwrap_err();
        assert!(e.contains("--entries 63"), "{e}");
        assert!(ChannelGeometry::new(64, 16, 8).is_err());
        assert!(ChannelGeometry::new(64, 64, 0)
            .unwrap_err()
            .contains("--data-mib 0"));
        assert!(ChannelGeometry::new(64, 64, 65).is_err());
        assert!(ChannelGeometry::new(64, 64, u32::MAX).is_err());
        assert_eq!(
            ChannelGeometry::new(1, 32, 64).unwrap().shm_size(),
            128 << 20
        );
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = ProviderError {
            detail: "/dev/vd_evtchn".into(),
            ..ProviderError::new(Step::Open, Errno::ENOENT)
        };
        let s = e.to_string();
        assert!(
            s.contains("/dev/vd_evtchn") && s.contains("modprobe vd_evtchn"),
            "{s}"
        );
        let s = ProviderError::new(Step::Orphan, Errno::ENOTTY).to_string();
        assert!(s.contains("too old"), "{s}");
    }

    #[test]
    fn a_missing_device_is_reported_with_its_path() {
        let e = KernelProvider::open(Path::new("/nonexistent/vd_evtchn")).unwrap_err();
        assert_eq!((e.step, e.errno), (Step::Open, Errno::ENOENT));
        let e = KernelProvider::open(Path::new("/dev/null")).unwrap_err();
        assert_eq!((e.step, e.errno), (Step::Version, Errno::ENOTTY));
    }
}
