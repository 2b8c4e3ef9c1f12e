//! What a VMM does with a leased VF: opens it through VFIO in its IOMMU group (type1 container,
//! rust-vmm's `vfio-ioctls`), reads its config space and maps memory for DMA through the IOMMU.
//! Proves a lease hands over a VF that passthrough can really use, not only a driver change.

use anyhow::{bail, Context, Result};
use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
use std::ffi::c_void;
use std::io::Write;
use std::num::NonZeroUsize;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;
use vfio_bindings::bindings::vfio::VFIO_PCI_CONFIG_REGION_INDEX;
use vfio_ioctls::{VfioContainer, VfioDevice};

/// An anonymous mapping, unmapped on drop.
struct Anon {
    ptr: NonNull<c_void>,
    len: usize,
}

impl Anon {
    fn new(len: NonZeroUsize) -> Result<Self> {
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .with_context(|| format!("mmap {len} bytes"))?;
        Ok(Anon {
            ptr,
            len: len.get(),
        })
    }
}

impl Drop for Anon {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are the mapping made in `new`, unmapped only here.
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}

/// The VF's IOMMU group number, from sysfs.
pub fn iommu_group(vf: &str) -> Result<u32> {
    let link = std::fs::read_link(format!("/sys/bus/pci/devices/{vf}/iommu_group"))
        .with_context(|| format!("{vf} has no IOMMU group (no IOMMU, or vfio no-IOMMU mode)"))?;
    let n = link.file_name().and_then(|s| s.to_str()).unwrap_or("");
    n.parse()
        .with_context(|| format!("IOMMU group link of {vf}: {}", link.display()))
}

/// Opens `vf` as a VMM would, checks what it reads and maps, keeps it open `hold_ms`.
pub fn open(vf: &str, hold_ms: u64) -> Result<()> {
    let group = iommu_group(vf)?;
    let container = Arc::new(VfioContainer::new(None).context("open /dev/vfio/vfio")?);
    let dev = VfioDevice::new(
        Path::new(&format!("/sys/bus/pci/devices/{vf}")),
        container.clone(),
        false,
    )
    .with_context(|| {
        format!("VFIO device {vf} in group {group} (is it on vfio-pci, is the group viable?)")
    })?;
    let mut id = [0u8; 4];
    dev.region_read(VFIO_PCI_CONFIG_REGION_INDEX, &mut id, 0);
    let (vendor, device) = (
        u16::from_le_bytes([id[0], id[1]]),
        u16::from_le_bytes([id[2], id[3]]),
    );
    // An SR-IOV VF reads 0xffff as its vendor and device ID in hardware; vfio-pci fills in the
    // real ones from the PF's SR-IOV capability.
    if vendor != 0x8086 {
        bail!("config space of {vf} through VFIO: vendor {vendor:04x}, expected 8086");
    }
    // DMA: 2 MiB of this process's memory mapped at IOVA 1 GiB through the IOMMU, then unmapped.
    let buf = Anon::new(NonZeroUsize::new(2 << 20).context("size")?)?;
    // SAFETY: `buf` is a mapping of this function that no Rust reference points into; it is
    // unmapped from the IOMMU below, before `buf` is dropped (munmap).
    unsafe { container.vfio_dma_map(1 << 30, buf.len, buf.ptr.as_ptr().cast()) }
        .context("VFIO_IOMMU_MAP_DMA (type1)")?;
    container
        .vfio_dma_unmap(1 << 30, buf.len)
        .context("VFIO_IOMMU_UNMAP_DMA")?;
    println!("VFIO-OPEN {vf} group {group} id {vendor:04x}:{device:04x} dma-map ok");
    std::io::stdout().flush()?;
    std::thread::sleep(Duration::from_millis(hold_ms));
    drop(dev);
    println!("VFIO-CLOSED {vf}");
    Ok(())
}
