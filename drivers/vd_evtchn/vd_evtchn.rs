// SPDX-License-Identifier: GPL-2.0
//! vd_evtchn: shared-memory I/O event channels between KVM guests and in-kernel host drivers.
//!
//! `/dev/vd_evtchn`: each open file is one domain (one VM's VMM). A VMM:
//!
//! 1. `VDE_IOC_CREATE` a channel (ring geometry) and `mmap` its ring at the returned offset,
//!    then hands those pages to the guest as guest memory (`KVM_SET_USER_MEMORY_REGION`);
//! 2. `VDE_IOC_BIND` a kick eventfd (registered with `KVM_IOEVENTFD`: the guest's doorbell) and a
//!    call eventfd (registered with `KVM_IRQFD`: the guest's interrupt);
//! 3. `VDE_IOC_ATTACH` a backend (echo, null, block, user).
//!
//! For a VMM that takes guest memory as a file (stock QEMU's `ivshmem-doorbell`),
//! `VDE_IOC_CREATE_SHM` makes the channel in a shmem file (ring, then a data area for block
//! data) and returns the file; `VDE_IOC_ORPHAN` then hands the channel to its guest: it leaves
//! the domain and lives until its kick eventfd is closed everywhere (`orphan.rs`).
//!
//! From then on a guest request goes: ring slot -> doorbell write -> ioeventfd -> this module's
//! wait-queue entry on the kick eventfd -> work item -> backend -> response slot -> call eventfd
//! -> irqfd -> guest interrupt, with no exit to the VMM's userspace. Channels die with the file.
//!
//! debugfs (root only): `vd_evtchn/channels` (every channel's counters), `stall_block_io` (a
//! test hook: block I/O waits while set) and `hops` (TSC stamps of each request's hops while on,
//! for `make bench`: `channel.rs`'s `HOPS`).
//!
//! Userspace side: `userspace-tools/vd-ring` (ring), `vd-uapi` (ioctls), `vd-testvmm` (a VMM
//! that drives a real KVM guest through it), `vdctl evtchn`.

mod vd;
use vd::{ring, uapi};

mod backend;
mod channel;
mod domain;
mod orphan;
mod registry;
mod ring_tests;

use domain::DomainFile;
use kernel::{
    fs::{file::FileDescriptorReservation, File},
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    mm::virt::VmaNew,
    prelude::*,
};
use uapi::*;
use vd::common::{read, reply_version, unsafe_impl_pod, write, OpenCount};

module! {
    type: VdEvtchnModule,
    name: "vd_evtchn",
    authors: ["vd project"],
    description: "vd shared-memory I/O event channels between KVM guests and host drivers",
    license: "GPL",
}

/// Files open on `/dev/vd_evtchn`.
static OPEN: OpenCount = OpenCount::new();

const FEATURES: u64 = VDE_FEAT_ECHO
    | VDE_FEAT_NULL
    | VDE_FEAT_BLOCK
    | VDE_FEAT_USER
    | VDE_FEAT_SAVE_RESTORE
    | VDE_FEAT_SHM;

/// Module exit's last step: the orphan set's workqueue goes (no orphan is left: each held a
/// module reference; a reap that already dropped its reference may still be returning).
struct OrphanExit;

impl Drop for OrphanExit {
    fn drop(&mut self) {
        orphan::exit();
    }
}

/// Fields drop in order: the device goes first (no new files), debugfs, then the orphan set.
#[pin_data]
struct VdEvtchnModule {
    #[pin]
    _miscdev: MiscDeviceRegistration<DomainFile>,
    #[pin]
    _listing: kernel::debugfs::File<registry::Listing>,
    #[pin]
    _stall: kernel::debugfs::File<backend::StallKnob>,
    #[pin]
    _hops: kernel::debugfs::File<&'static vd::hops::HopTrace<5, 8192>>,
    _debugfs: kernel::debugfs::Dir,
    _orphans: OrphanExit,
}

impl kernel::InPlaceModule for VdEvtchnModule {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        registry::init();
        let orphans = orphan::init(module);
        let dir = kernel::debugfs::Dir::new(c"vd_evtchn");
        try_pin_init!(Self {
            _orphans: {
                orphans?;
                OrphanExit
            },
            _miscdev <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"vd_evtchn" }),
            _listing <- dir.read_only_file(c"channels", registry::Listing),
            _stall <- dir.read_write_file(c"stall_block_io", backend::StallKnob),
            _hops <- dir.read_write_file(c"hops", &channel::HOPS),
            _debugfs: dir,
        })
    }
}

// SAFETY: `#[repr(C)]` structs of integers with no padding (sizes asserted in
// the ABI), so every byte is initialised and every bit pattern is a valid value.
unsafe_impl_pod!(
    VdeCreate,
    VdeCreateShm,
    VdeBind,
    VdeAttach,
    VdeStats,
    VdeTotals,
    VdeState,
    VdeListEntry
);

#[vtable]
impl MiscDevice for DomainFile {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(DomainFile::new(OPEN.enter())?, GFP_KERNEL)?)
    }

    fn mmap(me: &DomainFile, _file: &File, vma: &VmaNew) -> Result {
        me.mmap(vma)
    }

    fn ioctl(me: &DomainFile, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            VD_IOC_VERSION => {
                let channels = registry::count();
                return reply_version(arg, VdDriver::Evtchn, FEATURES, OPEN.get(), channels);
            }
            VDE_IOC_CREATE => {
                let mut c: VdeCreate = read(arg)?;
                let ch = me.create(&mut c)?;
                if let Err(e) = write(arg, &c) {
                    // The caller cannot learn the id: the channel must not outlive this call.
                    me.destroy_exact(c.id, &ch);
                    return Err(e);
                }
            }
            VDE_IOC_CREATE_SHM => {
                let mut c: VdeCreateShm = read(arg)?;
                // Reserved first: once the answer is copied out, installing cannot fail.
                let fd = FileDescriptorReservation::get_unused_fd_flags(
                    kernel::fs::file::flags::O_CLOEXEC,
                )?;
                let fd_num = i32::try_from(fd.reserved_fd()).map_err(|_| EMFILE)?;
                let (ch, file) = me.create_shm(&mut c)?;
                c.fd = fd_num;
                if let Err(e) = write(arg, &c) {
                    // The caller cannot learn the id nor the fd: undo the channel; the
                    // reservation and the file reference go on return.
                    me.destroy_exact(c.id, &ch);
                    return Err(e);
                }
                fd.fd_install(file);
            }
            VDE_IOC_ORPHAN => me.orphan(read::<u32>(arg)?)?,
            VDE_IOC_DESTROY => me.destroy(read::<u32>(arg)?)?,
            VDE_IOC_BIND => me.bind(&read::<VdeBind>(arg)?)?,
            VDE_IOC_ATTACH => me.attach(&read::<VdeAttach>(arg)?)?,
            VDE_IOC_STATS => match read::<VdeStats>(arg)?.id {
                VDE_ALL => write(arg, &me.totals())?,
                id => write(arg, &me.stats(id)?)?,
            },
            VDE_IOC_NOTIFY => me.channel(read::<u32>(arg)?)?.data.notify_from_user()?,
            VDE_IOC_KICK => me.channel(read::<u32>(arg)?)?.kick_now(),
            VDE_IOC_SAVE => {
                let s: VdeState = read(arg)?;
                write(arg, &me.channel(s.id)?.data.save()?)?;
            }
            VDE_IOC_LIST => {
                let mut e: VdeListEntry = read(arg)?;
                if e.flags != 0 || e.reserved != 0 {
                    return Err(EINVAL);
                }
                let (key, pid, ch) = registry::next_from(e.cursor).ok_or(ENOENT)?;
                e.cursor = key;
                e.domain_pid = pid;
                e.kick_pid = ch.kicker();
                e.flags = if ch.data.is_orphan() {
                    VDE_LIST_ORPHAN
                } else {
                    0
                };
                e.stats = VdeStats {
                    id: ch.data.id,
                    ..Default::default()
                };
                ch.data.stats_into(&mut e.stats);
                write(arg, &e)?;
            }
            VDE_IOC_RESTORE => {
                let s: VdeState = read(arg)?;
                me.channel(s.id)?.data.restore(&s)?;
            }
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}
