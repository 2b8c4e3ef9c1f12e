// SPDX-License-Identifier: GPL-2.0
//! vd_front: the guest side of a vd disk under stock QEMU.
//!
//! QEMU's `ivshmem-doorbell` device (PCI 1af4:1110) carries a vd ring that the host's
//! `vd_evtchn` serves with its `block` backend (`vd-ivshmem-server` sets it up):
//!
//! - BAR0 (256 bytes, mapped uncached): the doorbell at offset 12; writing the geometry line's
//!   doorbell value is a `KVM_IOEVENTFD` that wakes the host module, no exit to QEMU;
//! - BAR1: the MSI-X table; vector 0 is the host's `KVM_IRQFD`: "responses are waiting";
//! - BAR2 (mapped write-back with `memremap`): the ring (geometry line, indices, request and
//!   response slots) and after it the data area.
//!
//! Each such device becomes a blk-mq disk `/dev/vdbN`: reads, writes, flushes and FUA writes go
//! over the ring as `BLK_READ_DA`/`BLK_WRITE_DA`/`BLK_FLUSH` requests whose data sits in the
//! data area, one 128 KiB chunk per block-layer tag (`geometry.rs`, `disk.rs`). The shared
//! memory is treated as hostile: the geometry is read once and validated (a device that is not a
//! vd block ring is refused with `ENODEV`), every response is checked, and a host that breaks the
//! protocol only breaks this disk (I/O fails with `EIO`), never the guest.
//!
//! A request the host does not answer in 30 s breaks the disk as well (a watchdog that runs
//! every second; blk-mq's own timeout has no driver handler in the kernel crate).
//!
//! Probe: enable the device, map the BARs, validate the geometry, attach the ring frontend,
//! register MSI-X vector 0, write `FRONT_CONNECTED`, ask for the size (`BLK_GET_SIZE`, at most
//! 5 s: `ETIMEDOUT` if the host does not answer), add the disk. Unbind: remove the disk (a
//! healthy host gets the final flush), fail what is still in flight, free the vector, unmap.
//!
//! A device whose ring says `dev_kind::INPUT` (the host's `vd_input_irq` event ring, SPEC-13)
//! becomes the evdev input device "vd-input" instead (`input.rs`): MSI-X vector 0 reports the
//! host's events with `input_event`, the doorbell tells the host there is room again. Unbind
//! stops the handler, then unregisters the input device.
//!
//! Debug knob for the hostile-ring test, root only: `/sys/kernel/debug/vd_front/corrupt`.
//! Writing `1` makes the next request queued on a vd_front disk corrupt the ring instead of
//! publishing it: the next request slot's length becomes `0xfffffff0` and the shared `req_prod`
//! jumps `entries + 7` ahead. The host must fail that channel only (`STATUS_FAILED`), which this
//! driver sees as a broken disk: the request and all later ones fail with `EIO`. Reading the
//! file gives `1` while a corruption is pending, `0` otherwise.
//!
//! Benchmark trace, root only: `/sys/kernel/debug/vd_front/hops` keeps TSC stamps of each
//! request (published, interrupt, ended) while on (`rust/vd/hops.rs`); `make bench` lines them
//! up with vd_evtchn's stamps of the same requests on the host.

mod vd;
use vd::ring;

mod disk;
mod geometry;
mod input;

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};
use disk::{IrqHandler, Shared, VdBlk, BAR0_LEN, CORRUPT};
use geometry::{capacity_sectors, validate_kind, FrontKind, GeomLine, InputGeometry, MAX_MAP};
use input::InputShared;
use kernel::block::mq::{gen_disk::GenDisk, gen_disk::GenDiskBuilder, TagSet};
use kernel::device::Core;
use kernel::new_mutex;
use kernel::pci;
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::{Arc, Mutex};
use vd::knob::BoolKnob;
use vd::memremap::Memremap;
use vd::msix::MsixIrq;

/// `N` of the next disk's name `vdbN` (never reused while the module is loaded).
static NEXT_INDEX: AtomicU32 = AtomicU32::new(0);

/// The PCI driver.
struct VdFront;

/// One bound ivshmem device: a disk or an input device.
enum DeviceData<'bound> {
    Block(BlockData<'bound>),
    Input(InputData<'bound>),
}

/// A bound vd input device. Fields drop in order: the interrupt (freed), then the shared state
/// (the input device was unregistered by `unbind`; if not, it goes with the last reference).
struct InputData<'bound> {
    irq: Pin<KBox<MsixIrq<'bound, input::IrqHandler>>>,
    shared: Arc<InputShared>,
}

/// A bound vd disk. Fields drop in order: the disk (if unbind left it), the interrupt,
/// then the shared state with the mappings.
struct BlockData<'bound> {
    /// The disk; taken and removed by `unbind`.
    disk: Pin<KBox<Mutex<Option<Disk>>>>,
    irq: Pin<KBox<MsixIrq<'bound, IrqHandler>>>,
    shared: Arc<Shared>,
}

/// A [`GenDisk`] that may be dropped (`del_gendisk`) from the thread that unbinds the device.
struct Disk {
    _disk: GenDisk<VdBlk>,
}

// SAFETY: a `GenDisk` is an owned `struct gendisk` pointer and an `Arc` of the blk-mq tag set;
// `del_gendisk`/`put_disk` and `blk_mq_free_tag_set` may run on any thread (they take the block
// layer's own locks). The kernel crate marks `GenDisk` `Send` only when `Arc<TagSet>` is, which
// lacks the impls (`TagSet` is a C struct the block layer synchronises itself); the queue data,
// `Arc<Shared>`, is `Send` and `Sync`.
unsafe impl Send for Disk {}

kernel::pci_device_table!(
    PCI_TABLE,
    <VdFront as pci::Driver>::IdInfo,
    [(
        pci::DeviceId::from_id(pci::Vendor::REDHAT_QUMRANET, 0x1110),
        ()
    )]
);

impl VdFront {
    fn setup<'bound>(pdev: &'bound pci::Device<Core<'_>>) -> Result<DeviceData<'bound>> {
        pdev.enable_device_mem()?;
        pdev.set_master();
        let bar0 = pdev
            .iomap_region_sized::<BAR0_LEN>(0, c"vd_front")?
            .into_devres()?;
        let mem = Memremap::new(pdev, 2, MAX_MAP, c"vd_front").inspect_err(|e| {
            dev_err!(pdev, "cannot map BAR2: {:?}\n", e);
        })?;
        let line = GeomLine::read(&mem);
        let geo = match validate_kind(&line, mem.len()) {
            Ok(FrontKind::Block(geo)) => geo,
            Ok(FrontKind::Input(geo)) => return Self::setup_input(pdev, bar0, mem, geo),
            Err(e) => {
                dev_err!(pdev, "not a vd disk: {}\n", e.name());
                return Err(ENODEV);
            }
        };
        let index = NEXT_INDEX.fetch_add(1, Relaxed);
        let shared = Shared::new(mem, geo, bar0, index).inspect_err(|_| {
            dev_err!(pdev, "the ring changed under the probe\n");
        })?;
        let handler = IrqHandler {
            shared: shared.clone(),
        };
        // SAFETY: the registration goes into `DeviceData`, which the driver core drops when the
        // device is unbound; it is never leaked.
        let irq = KBox::pin_init(
            unsafe { MsixIrq::new(pdev, c"vd_front", handler)? },
            GFP_KERNEL,
        )
        .inspect_err(|e| dev_err!(pdev, "no MSI-X vector: {:?}\n", e))?;
        shared.connect();
        let disk = Self::add_disk(pdev, &shared, index).inspect_err(|_| {
            // The host may look at the frontend state: not connected after all.
            shared.shut_down();
        })?;
        // Last: nothing fails after this, so `unbind` always stops it.
        shared.start_watchdog();
        Ok(DeviceData::Block(BlockData { disk, irq, shared }))
    }

    /// The input side: the evdev device, then the interrupt, then the first pass (which arms
    /// it).
    fn setup_input<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        bar0: kernel::pci::DevresBar<BAR0_LEN>,
        mem: Memremap,
        geo: InputGeometry,
    ) -> Result<DeviceData<'bound>> {
        let parent: &kernel::device::Device = pdev.as_ref();
        let phys = CString::try_from_fmt(fmt!("vd/ivshmem-{}", parent.name()))?;
        let shared = InputShared::new(mem, geo, bar0, parent, &phys).inspect_err(|e| {
            dev_err!(pdev, "cannot register the input device: {:?}\n", e);
        })?;
        let handler = input::IrqHandler {
            shared: shared.clone(),
        };
        // SAFETY: the registration goes into `DeviceData`, which the driver core drops when the
        // device is unbound; it is never leaked.
        let irq = KBox::pin_init(
            unsafe { MsixIrq::new(pdev, c"vd_front", handler)? },
            GFP_KERNEL,
        )
        .inspect_err(|e| {
            dev_err!(pdev, "no MSI-X vector: {:?}\n", e);
            shared.stop();
            shared.shut_down();
        })?;
        shared.start();
        dev_info!(
            pdev,
            "{}: input ring {} x {} bytes, doorbell {:#x}\n",
            input::NAME,
            geo.ring().entries(),
            geo.ring().entry_size(),
            geo.doorbell()
        );
        Ok(DeviceData::Input(InputData { irq, shared }))
    }

    /// Handshake, part two, and the disk: the size query, then `vdbN`.
    fn add_disk(
        pdev: &pci::Device<Core<'_>>,
        shared: &Arc<Shared>,
        index: u32,
    ) -> Result<Pin<KBox<Mutex<Option<Disk>>>>> {
        let bytes = shared.query_size().inspect_err(|e| {
            dev_err!(pdev, "the size query failed: {:?}\n", e);
        })?;
        let geo = shared.geometry();
        let tagset = Arc::pin_init(TagSet::new(1, geo.depth(), 1), GFP_KERNEL)?;
        let disk = GenDiskBuilder::new()
            .capacity_sectors(capacity_sectors(bytes))
            .logical_block_size(512)?
            .physical_block_size(4096)?
            .rotational(false)
            .write_cache(true)
            .fua(true)
            .max_hw_sectors(geo.chunk() / 512)
            .build(fmt!("vdb{}", index), tagset, shared.clone())?;
        dev_info!(
            pdev,
            "vdb{}: {} MiB, {} tags of {} KiB, ring {} x {} bytes\n",
            index,
            bytes >> 20,
            geo.depth(),
            geo.chunk() / 1024,
            geo.ring().entries(),
            geo.ring().entry_size()
        );
        KBox::pin_init(new_mutex!(Some(Disk { _disk: disk })), GFP_KERNEL)
    }
}

impl pci::Driver for VdFront {
    type IdInfo = ();
    type Data<'bound> = DeviceData<'bound>;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        Self::setup(pdev)
    }

    fn unbind<'bound>(_pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        let this = match this.get_ref() {
            DeviceData::Block(b) => b,
            DeviceData::Input(i) => {
                // Handler first: once it is quiet, nothing reports into the device any more.
                i.shared.stop();
                i.irq.synchronize();
                i.shared.shut_down();
                return;
            }
        };
        // Removing the disk first lets a healthy host serve the last flush; a broken disk fails
        // it at once.
        // A dead host cannot hang this: the watchdog, still running, fails late requests.
        let disk = this.disk.lock().take();
        drop(disk);
        this.shared.shut_down();
        this.shared.stop_watchdog();
        this.irq.synchronize();
    }
}

/// Fields drop in order: the driver first (every disk goes), debugfs last.
#[pin_data]
struct VdFrontModule {
    #[pin]
    _driver: kernel::driver::Registration<pci::Adapter<VdFront>>,
    #[pin]
    /// The debug knob `corrupt` (see the crate documentation).
    _corrupt: kernel::debugfs::File<&'static BoolKnob>,
    #[pin]
    /// The disks' hop-by-hop stamps `hops` ([`disk::HOPS`]).
    _hops: kernel::debugfs::File<&'static vd::hops::HopTrace<4, 8192>>,
    _debugfs: kernel::debugfs::Dir,
}

impl kernel::InPlaceModule for VdFrontModule {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let dir = kernel::debugfs::Dir::new(c"vd_front");
        try_pin_init!(Self {
            _driver <- kernel::driver::Registration::new(c"vd_front", module),
            _corrupt <- dir.read_write_file(c"corrupt", &CORRUPT),
            _hops <- dir.read_write_file(c"hops", &disk::HOPS),
            _debugfs: dir,
        })
    }
}

module! {
    type: VdFrontModule,
    name: "vd_front",
    authors: ["vd project"],
    description: "vd guest block and input driver over QEMU ivshmem-doorbell (vd ring in BAR2)",
    license: "GPL",
}
