// SPDX-License-Identifier: GPL-2.0
//! vd_sriov_mgr: SR-IOV VF inventory, leases, usage accounting and reassignment mechanism for
//! virtual desktops.
//!
//! `/dev/vd_sriov`: each open file is one client (a VMM or the vd daemon).
//!
//! - Inventory (`VDS_IOC_PF`, `VDS_IOC_VF`, no privilege): SR-IOV PFs and every VF with its PF,
//!   VF number, driver, netdev, MAC and counters. VFs are tracked through a PCI bus notifier, so
//!   VFs created or destroyed through `sriov_numvfs`, hot-unplug or `remove` are noticed at once.
//!   VFs are *created* by writing the PF's `sriov_numvfs` (`vdctl sriov numvfs`): that is the
//!   kernel's own path (the PF driver's `sriov_configure` under the PF's device lock, with the
//!   all-or-nothing and busy checks of `drivers/pci/iov.c`); this module does not duplicate it.
//! - Leases (`VDS_IOC_LEASE`/`RELEASE`, CAP_NET_ADMIN of the opener): a VF for a VM id, owned by
//!   the file; the VF is moved to vfio-pci (driver_override + unbind + probe, from the kernel)
//!   and marked assigned, so the PF driver refuses to disable SR-IOV under it; a failed move is
//!   rolled back. Closing the file (a crashed VMM) ends its leases; VFs go back to their host
//!   driver on the module's workqueue. When the PF's own driver is about to be unbound (sysfs
//!   unbind, `remove`, rmmod, hot-unplug) the leases of its VFs are revoked and the marks
//!   cleared first, so the PF driver disables SR-IOV normally instead of orphaning the VFs.
//! - Rate limits (`VDS_IOC_RATE_SET`/`GET`; setting needs CAP_NET_ADMIN): a VF's transmit rate
//!   through its PF netdev's `ndo_set_vf_rate`, where the PF driver has it (`EOPNOTSUPP` if not).
//! - Usage (netdev counters, `VDS_IOC_SAMPLE`, and for passed-through VFs of igb 82576/i350
//!   PFs the PF's mirror of their statistics: `mirror.rs`) and the reassignment mechanism
//!   (`VDS_IOC_POLICY_*`, `VDS_IOC_WAIT`, `VDS_IOC_CANDIDATE`, `VDS_IOC_SWAP`); the policy itself
//!   is `policy.rs`. The sampler is a delayed work item that runs every `sample_ms` only while a
//!   VF is leased (debugfs `vd_sriov/sampler`: whether it is going, its pass count, the last raw
//!   mirror registers of each passed-through VF).
//! - Events: `read` returns whole `VdsEvent` records; `poll` says when there are some. A record
//!   that cannot be copied to the reader stays queued for the next read.

mod vd;
use vd::uapi;

mod client;
mod events;
mod lease;
mod mirror;
mod policy;
mod state;
mod usage;

use client::{Client, READ_BATCH};
use kernel::{
    fs::{File, Kiocb},
    iov::IovIterDest,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
    sync::{poll::PollTable, Arc},
    transmute::AsBytes,
};
use uapi::*;
use vd::common::{read, reply_version, unsafe_impl_pod, write, OpenCount, OpenGuard};
use vd::cred::{opener_capable, CAP_NET_ADMIN};
use vd::kfile::nonblocking;
use vd::pci::PciNotifier;

module! {
    type: VdSriovModule,
    name: "vd_sriov_mgr",
    authors: ["vd project"],
    description: "vd SR-IOV VF inventory, leases and usage-driven reassignment",
    license: "GPL",
}

/// Files open on `/dev/vd_sriov`.
static OPEN: OpenCount = OpenCount::new();

const FEATURES: u64 = VDS_FEAT_LEASE
    | VDS_FEAT_HOTPLUG
    | VDS_FEAT_USAGE
    | VDS_FEAT_POLICY
    | VDS_FEAT_EVENTS
    | VDS_FEAT_RATE
    | VDS_FEAT_PF_MIRROR;

/// `PinnedDrop` runs first (stops the manager, gives VFs back); then the device goes, then the
/// notifier (which no longer adds anything once the manager is stopping).
/// debugfs (`vd_sriov/sampler`) goes last.
#[pin_data(PinnedDrop)]
struct VdSriovModule {
    #[pin]
    _miscdev: MiscDeviceRegistration<ClientFile>,
    #[pin]
    _notifier: PciNotifier,
    #[pin]
    _sampler_stats: kernel::debugfs::File<state::SamplerStats>,
    _debugfs: kernel::debugfs::Dir,
}

impl kernel::InPlaceModule for VdSriovModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let r = state::init();
        let dir = kernel::debugfs::Dir::new(c"vd_sriov");
        try_pin_init!(Self {
            _notifier <- {
                r?;
                PciNotifier::new(state::on_pci)
            },
            _miscdev <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"vd_sriov" }),
            _sampler_stats <- dir.read_only_file(c"sampler", state::SamplerStats),
            _debugfs: dir,
        })
        .pin_chain(|_| state::start())
    }
}

#[pinned_drop]
impl PinnedDrop for VdSriovModule {
    fn drop(self: Pin<&mut Self>) {
        state::shutdown();
    }
}

// SAFETY: `#[repr(C)]` structs of integers and byte arrays with no padding
// (sizes and offsets asserted in the ABI), so every byte is initialised and every bit pattern
// is a valid value.
unsafe_impl_pod!(
    VdsPf,
    VdsVf,
    VdsLease,
    VdsSample,
    VdsPolicy,
    VdsWait,
    VdsSwap,
    VdsCandidate,
    VdsEvent,
    VdsRate
);

/// One open file of `/dev/vd_sriov`: a lease client (a VMM, vdd, vdctl), its state the shared
/// [`Client`] that the manager's records and event queue refer to. Named like the other
/// drivers' open-file objects (`DomainFile`, `VmFile`).
struct ClientFile {
    client: Arc<Client>,
    _open: OpenGuard,
}

/// Lease and policy changes need CAP_NET_ADMIN of the process that opened the file (the
/// drivers' one privilege model: `rust/vd/cred.rs`).
fn admin(file: &File) -> Result {
    if opener_capable(file, CAP_NET_ADMIN) {
        Ok(())
    } else {
        Err(EPERM)
    }
}

#[vtable]
impl MiscDevice for ClientFile {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        let client = Client::new()?;
        let h = KBox::new(
            ClientFile {
                client: client.clone(),
                _open: OPEN.enter(),
            },
            GFP_KERNEL,
        )?;
        state::add_client(client)?;
        Ok(h)
    }

    fn release(me: KBox<Self>, _file: &File) {
        state::remove_client(&me.client);
    }

    fn read_iter(mut kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let rec = size_of::<VdsEvent>();
        let max = iov.len() / rec;
        if max == 0 {
            return Err(EINVAL);
        }
        let nonblock = nonblocking(&kiocb);
        let me = kiocb.file();
        let mut buf = [VdsEvent::default(); READ_BATCH];
        // Taken off the queue under its lock, copied without it (a fault may sleep), and what was
        // not copied whole goes back to the front: a faulting buffer loses no event.
        let n = me.client.take(&mut buf, max, nonblock)?;
        let mut copied = 0;
        for ev in buf[..n].iter() {
            if iov.copy_to_iter(ev.as_bytes()) < rec {
                break;
            }
            copied += 1;
        }
        me.client.unread(&buf[copied..n]);
        // Whole records only: a partly copied one is returned again by the next read.
        let done = copied * rec;
        let pos = kiocb.ki_pos_mut();
        *pos = pos.saturating_add(done as i64);
        if done == 0 {
            return Err(EFAULT);
        }
        Ok(done)
    }

    fn poll(me: &ClientFile, file: &File, table: &PollTable<'_>) -> u32 {
        table.register_wait(file, me.client.cond());
        if me.client.readable() {
            kernel::bindings::POLLIN | kernel::bindings::POLLRDNORM
        } else {
            0
        }
    }

    fn ioctl(me: &ClientFile, file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let c = &*me.client;
        match cmd {
            VD_IOC_VERSION => return reply_version(arg, VdDriver::Sriov, FEATURES, OPEN.get(), 0),
            VDS_IOC_PF => write(arg, &state::pf_info(read::<VdsPf>(arg)?.index)?)?,
            VDS_IOC_VF => write(arg, &state::vf_info(read::<VdsVf>(arg)?.index)?)?,
            VDS_IOC_LEASE => {
                admin(file)?;
                let mut l: VdsLease = read(arg)?;
                state::lease(c, &mut l)?;
                if let Err(e) = write(arg, &l) {
                    // The caller cannot learn which VF it got: the lease is undone.
                    state::undo_lease(c, &l);
                    return Err(e);
                }
            }
            VDS_IOC_RELEASE => {
                admin(file)?;
                state::release(c, &read(arg)?)?;
            }
            VDS_IOC_SAMPLE => state::sample(c, &read(arg)?)?,
            VDS_IOC_POLICY_GET => write(arg, &state::policy_get())?,
            VDS_IOC_POLICY_SET => {
                admin(file)?;
                state::policy_set(&read(arg)?)?;
            }
            VDS_IOC_WAIT => {
                admin(file)?;
                state::wait(c, &read(arg)?)?;
            }
            VDS_IOC_SWAP => {
                admin(file)?;
                state::swap(&read(arg)?)?;
            }
            VDS_IOC_CANDIDATE => write(arg, &state::candidate(read::<VdsCandidate>(arg)?.index)?)?,
            VDS_IOC_RATE_SET => {
                admin(file)?;
                state::rate_set(&read(arg)?)?;
            }
            VDS_IOC_RATE_GET => write(arg, &state::rate_get(&read(arg)?)?)?,
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}
