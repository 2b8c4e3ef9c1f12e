// SPDX-License-Identifier: GPL-2.0
//! vd_sriov_mgr: SR-IOV VF inventory and leases for virtual desktops.
//!
//! `/dev/vd_sriov`: each open file is one client (a VMM or the vd daemon).

#[allow(dead_code, unreachable_pub, reason = "the ABI is shared with userspace; not every item is used here")]
#[path = "../../userspace-tools/vd-uapi/src/uapi.rs"]
mod uapi;
#[allow(dead_code, unreachable_pub, reason = "the ring is shared; not every item is used here")]
#[path = "../../userspace-tools/vd-ring/src/ring.rs"]
mod ring;
#[allow(dead_code, unreachable_pub, reason = "shared by all vd modules; each uses a part")]
#[path = "../../rust/vd/mod.rs"]
mod vd;

#[allow(dead_code, unreachable_pub, reason = "the device paths that use it come with the full driver")]
mod lease;

use kernel::{
    fs::File,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
};
use uapi::{VdDriver, VD_IOC_VERSION};
use vd::common::{reply_version, OpenCount, OpenGuard};

module! {
    type: VdSriovModule,
    name: "vd_sriov_mgr",
    authors: ["vd project"],
    description: "vd SR-IOV VF inventory and leases for virtual desktops",
    license: "GPL",
}

/// Files open on `/dev/vd_sriov`.
static OPEN: OpenCount = OpenCount::new();

#[pin_data]
struct VdSriovModule {
    #[pin]
    _miscdev: MiscDeviceRegistration<Holder>,
}

impl kernel::InPlaceModule for VdSriovModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self { _miscdev <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"vd_sriov" }) })
    }
}

/// One open file.
struct Holder {
    _open: OpenGuard,
}

#[vtable]
impl MiscDevice for Holder {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        KBox::new(Holder { _open: OPEN.enter() }, GFP_KERNEL).map_err(Into::into)
    }

    fn ioctl(_me: &Holder, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            VD_IOC_VERSION => reply_version(arg, VdDriver::Sriov, 0, OPEN.get(), 0),
            _ => Err(ENOTTY),
        }
    }
}
