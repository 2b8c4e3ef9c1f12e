//! `vd-itest input-shm`: a VM sink whose event ring lives in a shmem file
//! (`VDI_IOC_VM_CREATE_SHM`), the form QEMU's `ivshmem-doorbell` gives a stock guest: the
//! geometry line a guest driver reads, frames in order through the file's own mapping, the
//! doorbell path when the ring is full, and the argument checks.

use super::fixtures::*;
use vd_ring::{dev_kind, RingMem, OFF_DATA_LEN, OFF_DATA_OFF, OFF_DEV_KIND, OFF_DOORBELL};
use vd_ring::{OFF_ENTRIES, OFF_ENTRY_SIZE, OFF_MAGIC, RING_MAGIC};

pub fn shm() -> Result<()> {
    let adm = Input::open().context("open /dev/vd_input: is vd_input_irq loaded?")?;
    let v = adm.version().context("VD_IOC_VERSION")?;
    check!(
        v.features & VDI_FEAT_SHM != 0,
        "features: SHM ({:#x})",
        v.features
    );
    let base = 7000 + (std::process::id() % 1000) * 4;

    // Argument checks.
    let f = Input::open()?;
    for (what, vm, entries) in [
        ("vm_id 0", 0, 64),
        ("7 entries", base, 7),
        ("8192 entries", base, 8192),
    ] {
        check!(
            f.vm_create_shm(vm, entries, None, 0).err() == Some(Errno::EINVAL),
            "VM_CREATE_SHM with {what}: EINVAL"
        );
    }
    let mut bad = VdiVmCreateShm {
        vm_id: base,
        entries: 64,
        call_fd: -1,
        flags: 1,
        ..Default::default()
    };
    // SAFETY: `_IOWR` of one `VdiVmCreateShm`, a valid local.
    let r = unsafe { nix::libc::ioctl(f.file().as_raw_fd(), VDI_IOC_VM_CREATE_SHM as _, &mut bad) };
    check!(
        r == -1 && Errno::last() == Errno::EINVAL,
        "VM_CREATE_SHM with unknown flags: EINVAL"
    );
    let (fd, size) = f.vm_create_shm(base, 64, None, 0x0001_0000)?;
    check!(
        f.vm_create_shm(base + 1, 64, None, 0).err() == Some(Errno::EEXIST),
        "a second VM on the same file: EEXIST"
    );
    let g = Input::open()?;
    check!(
        g.vm_create_shm(base, 64, None, 0).err() == Some(Errno::EEXIST),
        "the same vm_id on another file: EEXIST"
    );
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    check!(
        st.st_size as u64 == size && size.is_power_of_two() && size >= 4096,
        "the shmem file is {size} bytes, a power of two (st_size {})",
        st.st_size
    );
    drop((f, g, fd));

    // The geometry line a guest driver reads, through the file's own mapping.
    let doorbell = 0x0002_0000;
    let mut a = Sink::new_shm(base + 2, 8, doorbell)?;
    let m = a.map.mem();
    let (entries, esz) = (m.load_u32(OFF_ENTRIES), m.load_u32(OFF_ENTRY_SIZE));
    check!(
        m.load_u32(OFF_MAGIC) == RING_MAGIC
            && m.load_u32(OFF_DEV_KIND) == dev_kind::INPUT
            && m.load_u32(OFF_DOORBELL) == doorbell
            && (entries, esz) == (8, VDI_ENTRY_SIZE)
            && m.load_u32(OFF_DATA_LEN) as usize == vd_ring::caps::CAPS_LEN
            && m.load_u32(OFF_DATA_OFF) % 64 == 0
            && (m.load_u32(OFF_DATA_OFF) + m.load_u32(OFF_DATA_LEN)) as u64
                <= a.shm.as_ref().map_or(0, |s| s.1),
        "geometry line: vd ring magic, dev_kind INPUT, doorbell {doorbell:#x}, 8 x {esz} bytes, \
         a data area for the capabilities block inside the file"
    );
    let caps_off = m.load_u32(OFF_DATA_OFF) as usize;
    let zero = (0..vd_ring::caps::CAPS_LEN / 4).all(|i| m.load_u32(caps_off + i * 4) == 0);
    check!(
        zero,
        "the capabilities block is left zero for the server to fill in"
    );

    // Frames in order, through an 8-slot ring: most of them wait for room in the module's
    // queue and come after the guest's doorbell (this process plays the guest).
    let kb = kbd("shm")?;
    let _route = Route::add(&adm, vdi_match::NAME, true, &kb.name)?;
    adm.focus(base + 2)?;
    let mut sent = vec![];
    for i in 0..100 {
        let fr: Vec<Ev> = if i % 4 == 0 {
            // Press then release the same key (the input core drops a release of a key not down).
            key_frame(i / 8, (i / 4) % 2 == 0).to_vec()
        } else {
            motion_frame(1, 0)
        };
        kb.emit(&fr)?;
        sent.extend(fr);
    }
    let ok = a.wait_n(sent.len(), T)?;
    let got = triples(&evs_of(&a.got));
    if !ok {
        let (s, m) = (a.stats()?, a.map.mem());
        println!(
            "  stuck: queue depth {}, queued {}, flushed {}, at once {}, coalesced {}, dropped {}; \
             rsp_prod {} rsp_cons {} req_event {:#x} rsp_event {}",
            s.queue_depth,
            s.queued,
            s.flushed,
            s.delivered_immediately,
            s.coalesced,
            s.dropped,
            m.load_u32(vd_ring::OFF_RSP_PROD),
            m.load_u32(vd_ring::OFF_RSP_CONS),
            m.load_u32(vd_ring::OFF_REQ_EVENT),
            m.load_u32(vd_ring::OFF_RSP_EVENT)
        );
    }
    check!(
        ok && got == sent,
        "{} of {} events through the shmem ring, in order ({} doorbell rings)",
        got.len(),
        sent.len(),
        a.kicks
    );
    check!(
        a.kicks > 0,
        "the ring filled and the doorbell moved the rest ({} rings)",
        a.kicks
    );
    let s = a.stats()?;
    check!(
        s.dropped == 0 && s.queue_depth == 0,
        "nothing dropped, nothing left queued (dropped {}, depth {})",
        s.dropped,
        s.queue_depth
    );
    Ok(())
}
