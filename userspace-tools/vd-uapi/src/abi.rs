// SPDX-License-Identifier: GPL-2.0
//! vd ABI, version [`VD_ABI_VERSION`]: what every vd device shares (ioctl number encoding,
//! `VD_IOC_VERSION` and the driver names). Each device's ioctls, structs and constants are in
//! its own file next to this one (`evtchn.rs`, `sriov.rs`, `input.rs`), which uses this one as
//! `super::abi`.
//!
//! Included by path into the kernel modules (each module takes this file and its own device's)
//! and used as the `vd-uapi` crate by userspace. It is `core`-only and holds no logic beyond
//! `const fn` ioctl encoding, so it compiles the same way in both worlds. Every struct has its
//! size and field offsets asserted at compile time; a change of layout must bump
//! [`VD_ABI_VERSION`].

use core::mem::{offset_of, size_of};

/// ABI version answered by every vd device through [`VD_IOC_VERSION`].
pub const VD_ABI_VERSION: u32 = 1;

/// ioctl type byte of every vd device (unused in `Documentation/userspace-api/ioctl/ioctl-number.rst`).
pub const VD_IOC_MAGIC: u32 = 0xB7;

// ioctl number encoding of `include/uapi/asm-generic/ioctl.h` (x86, arm64, riscv).
const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
/// `_IOC_NONE`.
pub const IOC_NONE: u32 = 0;
/// `_IOC_WRITE`: userspace writes, the kernel reads.
pub const IOC_WRITE: u32 = 1;
/// `_IOC_READ`: the kernel writes, userspace reads.
pub const IOC_READ: u32 = 2;

/// `_IOC(dir, VD_IOC_MAGIC, nr, size)`.
pub const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    // A struct too large for the 14-bit size field is a compile-time error where this is const.
    assert!(size < (1 << IOC_SIZEBITS));
    (dir << IOC_DIRSHIFT)
        | (VD_IOC_MAGIC << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}
/// `_IO(VD_IOC_MAGIC, nr)`.
pub const fn io(nr: u32) -> u32 {
    ioc(IOC_NONE, nr, 0)
}
/// `_IOR(VD_IOC_MAGIC, nr, T)`.
pub const fn ior<T>(nr: u32) -> u32 {
    ioc(IOC_READ, nr, size_of::<T>())
}
/// `_IOW(VD_IOC_MAGIC, nr, T)`.
pub const fn iow<T>(nr: u32) -> u32 {
    ioc(IOC_WRITE, nr, size_of::<T>())
}
/// `_IOWR(VD_IOC_MAGIC, nr, T)`.
pub const fn iowr<T>(nr: u32) -> u32 {
    ioc(IOC_READ | IOC_WRITE, nr, size_of::<T>())
}
/// `_IOC_SIZE(cmd)`.
pub const fn ioc_size(cmd: u32) -> usize {
    ((cmd >> IOC_SIZESHIFT) & ((1 << IOC_SIZEBITS) - 1)) as usize
}

// Common to every vd device.

/// Which vd driver answered [`VD_IOC_VERSION`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VdDriver {
    /// `/dev/vd_evtchn`.
    Evtchn = 1,
    /// `/dev/vd_sriov`.
    Sriov = 2,
    /// `/dev/vd_input`.
    Input = 3,
}

impl VdDriver {
    /// Decodes [`VdVersion::driver`].
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Evtchn),
            2 => Some(Self::Sriov),
            3 => Some(Self::Input),
            _ => None,
        }
    }
    /// The misc device node of this driver, under `/dev`.
    pub const fn dev_name(self) -> &'static str {
        match self {
            Self::Evtchn => "vd_evtchn",
            Self::Sriov => "vd_sriov",
            Self::Input => "vd_input",
        }
    }
    /// The kernel module that registers it.
    pub const fn module_name(self) -> &'static str {
        match self {
            Self::Evtchn => "vd_evtchn",
            Self::Sriov => "vd_sriov_mgr",
            Self::Input => "vd_input_irq",
        }
    }
    /// All drivers, in [`VdDriver`] order.
    pub const ALL: [VdDriver; 3] = [Self::Evtchn, Self::Sriov, Self::Input];
}

/// Answer of [`VD_IOC_VERSION`]: who answered, with which ABI, and how busy it is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdVersion {
    /// [`VD_ABI_VERSION`] of the module.
    pub abi_version: u32,
    /// A [`VdDriver`] value.
    pub driver: u32,
    /// Feature bits of that driver (`VD_*_FEAT_*`).
    pub features: u64,
    /// Files open on the device now (domains, lease holders, routed VMs).
    pub open_files: u32,
    /// Driver objects alive now (channels, leases, routes).
    pub objects: u32,
    /// Module version, NUL-padded ASCII (e.g. `0.1.0`).
    pub module_version: [u8; 16],
}
const _: () = {
    assert!(size_of::<VdVersion>() == 40);
    assert!(offset_of!(VdVersion, abi_version) == 0);
    assert!(offset_of!(VdVersion, driver) == 4);
    assert!(offset_of!(VdVersion, features) == 8);
    assert!(offset_of!(VdVersion, open_files) == 16);
    assert!(offset_of!(VdVersion, objects) == 20);
    assert!(offset_of!(VdVersion, module_version) == 24);
};

/// `VD_IOC_VERSION`: `_IOR(0xB7, 0x00, struct vd_version)`, answered by every vd device.
pub const VD_IOC_VERSION: u32 = ior::<VdVersion>(0x00);

/// Copies `s` into a NUL-padded fixed field, truncating; usable in `const` context.
pub const fn fixed_str<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < b.len() && i < N - 1 {
        out[i] = b[i];
        i += 1;
    }
    out
}
