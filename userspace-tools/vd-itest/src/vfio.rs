//! What a VMM does with a leased VF: opens it through VFIO in its IOMMU group (type1 container,
//! rust-vmm's `vfio-ioctls`), reads its config space and maps memory for DMA through the IOMMU.
//! Proves a lease hands over a VF that passthrough can really use, not only a driver change.
//! [`tx`] goes one step further and drives an igb VF's transmit queue from userspace, as a guest's
//! igbvf would: the traffic of a passed-through VF, without a guest.

use anyhow::{bail, Context, Result};
use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
use std::ffi::c_void;
use std::io::Write;
use std::num::NonZeroUsize;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;
use vfio_bindings::bindings::vfio::{VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX};
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

/// `vf` opened through a new VFIO container, as a VMM opens it: (IOMMU group, container, device).
fn open_device(vf: &str) -> Result<(u32, Arc<VfioContainer>, VfioDevice)> {
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
    Ok((group, container, dev))
}

/// Opens `vf` as a VMM would, checks what it reads and maps, keeps it open `hold_ms`.
pub fn open(vf: &str, hold_ms: u64) -> Result<()> {
    let (group, container, dev) = open_device(vf)?;
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

/// igb VF registers (BAR0, the VF's view: `drivers/net/ethernet/intel/igbvf/regs.h`,
/// `mbx.h`, `vf.h`).
mod reg {
    pub const V2PMAILBOX: u64 = 0x0C40;
    pub const VMBMEM: u64 = 0x0800;
    pub const TDBAL: u64 = 0x3800;
    pub const TDBAH: u64 = 0x3804;
    pub const TDLEN: u64 = 0x3808;
    pub const TDH: u64 = 0x3810;
    pub const TDT: u64 = 0x3818;
    pub const TXDCTL: u64 = 0x3828;
    pub const VFGOTC: u64 = 0x0F34;
    /// `V2PMAILBOX` bits.
    pub const REQ: u32 = 1 << 0;
    pub const ACK: u32 = 1 << 1;
    pub const VFU: u32 = 1 << 2;
    pub const PFSTS: u32 = 1 << 4;
    /// `E1000_VF_RESET`, and the PF's answers to it.
    pub const VF_RESET: u32 = 0x01;
    pub const MSG_ACK: u32 = 0x8000_0000;
    pub const MSG_NACK: u32 = 0x4000_0000;
    pub const TXDCTL_ENABLE: u32 = 0x0200_0000;
    /// Advanced transmit data descriptor: DTYP data, DEXT, EOP, IFCS, RS.
    pub const TXD_DATA: u32 = 0x0030_0000 | 0x2000_0000 | 0x0100_0000 | 0x0200_0000 | 0x0800_0000;
}

/// The VF's BAR0 through VFIO (`pread`/`pwrite` of the region).
struct Bar0<'a>(&'a VfioDevice);

impl Bar0<'_> {
    fn rd(&self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.0.region_read(VFIO_PCI_BAR0_REGION_INDEX, &mut b, off);
        u32::from_le_bytes(b)
    }
    fn wr(&self, off: u64, v: u32) {
        self.0
            .region_write(VFIO_PCI_BAR0_REGION_INDEX, &v.to_le_bytes(), off);
    }
}

/// The VF side of igb's mailbox reset (`E1000_VF_RESET`, what igbvf's `e1000_reset_hw_vf`
/// sends): returns the PF's answer. A status the PF left for the VF's previous driver (a
/// control message sent at a link change, `PFSTS` still set) is cleared first, other PF
/// messages are skipped, and the request is sent again if the PF does not answer it within 2 s (a PF message written to
/// the shared buffer while the request waited replaces it).
fn reset_handshake(bar: &Bar0) -> Result<u32> {
    // Reading the mailbox register clears the stale status bits.
    let _ = bar.rd(reg::V2PMAILBOX);
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        bar.wr(reg::V2PMAILBOX, reg::VFU);
        bar.wr(reg::VMBMEM, reg::VF_RESET);
        bar.wr(reg::V2PMAILBOX, reg::REQ);
        let sent = std::time::Instant::now();
        while sent.elapsed() < Duration::from_secs(2) {
            if bar.rd(reg::V2PMAILBOX) & reg::PFSTS == 0 {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let msg = bar.rd(reg::VMBMEM);
            if msg & 0xffff == reg::VF_RESET && msg & (reg::MSG_ACK | reg::MSG_NACK) != 0 {
                bar.wr(reg::V2PMAILBOX, reg::ACK);
                return Ok(msg);
            }
            // Not acknowledged: igb answers an acknowledgement from a VF that has not completed
            // its reset with a NACK written over the shared buffer (`igb_rcv_ack_from_vf`).
            println!("VFIO-TX skipped a PF message {msg:#x}");
        }
    }
    bail!("the PF did not answer the VF's reset message in 10 s (igb bound to the PF?)")
}

/// Descriptors in the ring (its length must be a multiple of 128 bytes).
const RING: u32 = 8;
/// IOVA of the DMA buffer: the ring, then one frame at +4096.
const IOVA: u64 = 1 << 30;

/// Sends frames from a leased igb VF as a guest's igbvf would, through VFIO: bus mastering on,
/// the mailbox reset handshake with the PF's igb driver (`E1000_VF_RESET`: the PF enables the
/// VF's transmit pool in `VFTE`), then a transmit ring in DMA memory mapped through the IOMMU,
/// filled with 1000-byte broadcast frames at about `bytes_per_s` for `ms` milliseconds. Prints
/// `VFIO-TX frames N bytes B` and the VF's own `VFGOTC` before and after.
pub fn tx(vf: &str, ms: u64, bytes_per_s: u64) -> Result<()> {
    let (_group, container, dev) = open_device(vf)?;
    // Bus mastering (PCI_COMMAND bit 2): the VF's DMA.
    let mut cmd = [0u8; 2];
    dev.region_read(VFIO_PCI_CONFIG_REGION_INDEX, &mut cmd, 4);
    let cmd = u16::from_le_bytes(cmd) | 0x4;
    dev.region_write(VFIO_PCI_CONFIG_REGION_INDEX, &cmd.to_le_bytes(), 4);
    let bar = Bar0(&dev);

    // The reset handshake: the message, then the PF's answer (ACK with a MAC, or NACK without
    // one: either way the PF enabled the VF's queues).
    let answer = reset_handshake(&bar)?;
    println!("VFIO-TX the PF answered the reset message: {answer:#x}");
    std::io::stdout().flush()?;

    let mem = Anon::new(NonZeroUsize::new(2 * 4096).context("size")?)?;
    // SAFETY: `mem` is this function's mapping; no Rust reference points into it (written with
    // raw pointers only); it is unmapped from the IOMMU below, before it is dropped.
    unsafe { container.vfio_dma_map(IOVA, mem.len, mem.ptr.as_ptr().cast()) }
        .context("VFIO_IOMMU_MAP_DMA (type1)")?;
    let base = mem.ptr.as_ptr().cast::<u8>();
    let frame_len = 1000u32;
    let mut frame = vec![0u8; frame_len as usize];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes()); // local experimental ethertype
                                                             // SAFETY: `frame_len` bytes at +4096 lie inside the 8 KiB mapping.
    unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), base.add(4096), frame.len()) };
    let desc = |slot: u32| {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&(IOVA + 4096).to_le_bytes());
        d[8..12].copy_from_slice(&(frame_len | reg::TXD_DATA).to_le_bytes());
        d[12..16].copy_from_slice(&(frame_len << 14).to_le_bytes()); // PAYLEN
                                                                     // SAFETY: slot < RING: 16 bytes inside the first page of the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(d.as_ptr(), base.add(slot as usize * 16), 16);
        }
    };
    bar.wr(reg::TDBAL, IOVA as u32);
    bar.wr(reg::TDBAH, (IOVA >> 32) as u32);
    bar.wr(reg::TDLEN, RING * 16);
    bar.wr(reg::TDH, 0);
    bar.wr(reg::TDT, 0);
    bar.wr(reg::TXDCTL, reg::TXDCTL_ENABLE);
    let gotc0 = bar.rd(reg::VFGOTC);

    let t0 = std::time::Instant::now();
    let (mut frames, mut sent, mut tail) = (0u64, 0u64, 0u32);
    while t0.elapsed() < Duration::from_millis(ms) {
        let due = (t0.elapsed().as_secs_f64() * bytes_per_s as f64) as u64;
        if sent >= due {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        desc(tail);
        tail = (tail + 1) % RING;
        // The write of the tail is a system call (`pwrite`): the descriptor's stores are
        // visible to the device before it.
        bar.wr(reg::TDT, tail);
        let head = bar.rd(reg::TDH);
        if head != tail {
            bail!("the VF's transmit queue did not take frame {frames} (head {head}, tail {tail})");
        }
        frames += 1;
        sent += u64::from(frame_len);
    }
    let gotc1 = bar.rd(reg::VFGOTC);
    bar.wr(reg::TXDCTL, 0);
    container
        .vfio_dma_unmap(IOVA, mem.len)
        .context("VFIO_IOMMU_UNMAP_DMA")?;
    println!("VFIO-TX frames {frames} bytes {sent} vfgotc {gotc0} -> {gotc1}");
    std::io::stdout().flush()?;
    drop(dev);
    Ok(())
}
