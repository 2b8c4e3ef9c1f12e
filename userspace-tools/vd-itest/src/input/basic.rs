//! `vd-itest input-basic`: routing, grab, frames in order, privileges, the ring and its statistics.

use super::fixtures::*;

pub fn basic() -> Result<()> {
    let adm = Input::open().context("open /dev/vd_input: is vd_input_irq loaded?")?;
    let v = adm.version().context("VD_IOC_VERSION")?;
    check!(
        v.driver == VdDriver::Input as u32 && v.abi_version == VD_ABI_VERSION,
        "VD_IOC_VERSION: driver input, ABI {} (features {:#x})",
        v.abi_version,
        v.features
    );
    check!(
        v.features & (VDI_FEAT_ROUTE | VDI_FEAT_SCHED) == VDI_FEAT_ROUTE | VDI_FEAT_SCHED,
        "features: ROUTE and SCHED"
    );

    // Argument checks, before anything exists.
    let f = Input::open()?;
    let base = 1000 + (std::process::id() % 1000) * 10;
    check!(
        f.vm_create(0, 64, None).is_err(),
        "VM_CREATE with vm_id 0 refused ({})",
        errno_of(f.vm_create(0, 64, None))
    );
    for n in [6u32, 4, 0, 8192] {
        check!(
            f.vm_create(base, n, None).err() == Some(Errno::EINVAL),
            "VM_CREATE with {n} entries: EINVAL"
        );
    }
    let st = std::fs::File::open("/proc/self/stat")?;
    check!(
        f.vm_create(base, 64, Some(st.as_raw_fd())).is_err(),
        "call fd that is no eventfd refused ({})",
        errno_of(f.vm_create(base, 64, Some(st.as_raw_fd())))
    );
    check!(
        f.vm_create(base, 64, Some(99_999)).err() == Some(Errno::EBADF),
        "call fd not open: EBADF"
    );
    check!(
        f.vcpu_register().is_err(),
        "VCPU_REGISTER before VM_CREATE refused ({})",
        errno_of(f.vcpu_register())
    );
    check!(
        f.set_running(false).is_err(),
        "SET_RUNNING on a file that is no VM refused ({})",
        errno_of(f.set_running(false))
    );
    check!(
        f.stats(0).is_err(),
        "STATS(0) on a file that is no VM refused ({})",
        errno_of(f.stats(0))
    );
    check!(
        adm.stats(999_999).err() == Some(Errno::ENOENT),
        "STATS of an unknown VM: ENOENT"
    );
    let bad = VdiRoute {
        kind: 99,
        grab: 0,
        pattern: [0; 64],
    };
    check!(
        adm.route(&bad).err() == Some(Errno::EINVAL),
        "ROUTE with an unknown match kind: EINVAL"
    );
    let mut unterminated = route_spec(vdi_match::NAME, false, "x")?;
    unterminated.pattern = [b'x'; 64];
    match adm.route(&unterminated) {
        Err(e) => println!("ok: ROUTE with a pattern that is not NUL-terminated refused ({e})"),
        Ok(()) => {
            println!("info: ROUTE with a 64-byte pattern without NUL was accepted");
            check!(
                adm.unroute(&unterminated).is_ok(),
                "and it can be removed again"
            );
        }
    }
    check!(
        adm.route(&route_spec(vdi_match::KEYBOARD, false, "")?)
            .is_ok()
            && adm
                .unroute(&route_spec(vdi_match::KEYBOARD, false, "")?)
                .is_ok(),
        "ROUTE/UNROUTE every keyboard"
    );
    check!(
        adm.unroute(&route_spec(
            vdi_match::NAME,
            false,
            "vd-itest never routed"
        )?)
        .is_err(),
        "UNROUTE of a route that does not exist refused"
    );
    if let Some(e) = unprivileged_route_errno(&adm)? {
        check!(
            e == Errno::EPERM,
            "ROUTE on a file opened without CAP_SYS_ADMIN: EPERM (got {e}); the file root \
             opened still routes after its process dropped to nobody"
        );
    }

    // The hardware, routed by name and grabbed.
    let kb = kbd("basic")?;
    let find = |name: &str| -> Result<Option<VdiDevice>> {
        Ok(adm
            .devices()?
            .into_iter()
            .find(|d| vd_sys::input::fixed_str(&d.name) == name))
    };
    let d = find(&kb.name)?.ok_or_else(|| {
        let names: Vec<String> = adm
            .devices()
            .unwrap_or_default()
            .iter()
            .map(|d| vd_sys::input::fixed_str(&d.name))
            .collect();
        anyhow!(
            "LIST_DEVICES does not show {:?}; it shows {names:?}",
            kb.name
        )
    })?;
    check!(
        vd_sys::input::fixed_str(&d.phys) == kb.phys && d.routed == 0,
        "LIST_DEVICES shows the uinput device with its phys, not routed"
    );
    let route = Route::add(&adm, vdi_match::NAME, true, &kb.name)?;
    check!(
        adm.route(&route.r).err() == Some(Errno::EEXIST),
        "the same route twice: EEXIST"
    );
    let d = find(&kb.name)?.unwrap_or(d);
    check!(
        d.routed == 1 && d.grabbed == 1,
        "after ROUTE by name with grab: routed and grabbed (routed {}, grabbed {})",
        d.routed,
        d.grabbed
    );

    let vm = base + 1;
    let mut a = Sink::new(vm, 256)?;
    let geo = Geometry::new(256, VDI_ENTRY_SIZE).map_err(|e| anyhow!("{e:?}"))?;
    check!(
        a.create.mmap_size == geo.total_bytes() as u64,
        "VM_CREATE 256 entries: mmap_size {} = ring of 256 x 32",
        a.create.mmap_size
    );
    check!(
        a.dev.vm_create(vm + 50, 64, None).is_err(),
        "a second VM_CREATE on the same file refused ({})",
        errno_of(a.dev.vm_create(vm + 50, 64, None))
    );
    let f2 = Input::open()?;
    check!(
        f2.vm_create(vm, 64, None).err() == Some(Errno::EEXIST),
        "VM_CREATE with a vm_id in use: EEXIST"
    );
    drop(f2);
    // A result that cannot be copied back (the argument is in a read-only page): the VM is not
    // made, its id stays free, and the file can try again.
    {
        let f3 = Input::open()?;
        let id = vm + 60;
        let c = VdiVmCreate {
            vm_id: id,
            entries: 64,
            call_fd: -1,
            flags: 0,
            mmap_size: 0,
        };
        // SAFETY: a fresh anonymous private page, written through the pointer while writable,
        // then made read-only; unmapped below.
        let page = unsafe {
            let p = nix::libc::mmap(
                std::ptr::null_mut(),
                4096,
                nix::libc::PROT_READ | nix::libc::PROT_WRITE,
                nix::libc::MAP_PRIVATE | nix::libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == nix::libc::MAP_FAILED {
                bail!("mmap: {}", Errno::last());
            }
            p.cast::<VdiVmCreate>().write(c);
            nix::libc::mprotect(p, 4096, nix::libc::PROT_READ);
            p
        };
        // SAFETY: readable for a `VdiVmCreate`; not writable, so the kernel cannot write.
        let r = unsafe { f3.vm_create_at(page.cast()) };
        // SAFETY: mapped above, no reference into it remains.
        unsafe { nix::libc::munmap(page, 4096) };
        check!(
            r == Err(Errno::EFAULT),
            "VM_CREATE whose result cannot be copied back: EFAULT ({})",
            errno_of(r)
        );
        check!(
            adm.stats(id).err() == Some(Errno::ENOENT),
            "and the VM does not exist (STATS: {})",
            errno_of(adm.stats(id))
        );
        let f4 = Input::open()?;
        check!(
            f4.vm_create(id, 64, None).is_ok(),
            "its id is free: VM_CREATE of it on another file succeeds"
        );
        drop(f4);
        check!(
            f3.vm_create(id, 64, None).is_ok(),
            "the same file can create a VM again"
        );
        let f5 = Input::open()?;
        let mut bad = VdiVmCreate {
            vm_id: id + 1,
            entries: 64,
            call_fd: -1,
            flags: 1 << 31,
            mmap_size: 0,
        };
        // SAFETY: a valid, writable `VdiVmCreate` we own.
        let r = unsafe { f5.vm_create_at(&mut bad) };
        check!(
            r == Err(Errno::EINVAL),
            "VM_CREATE with an unknown flag bit: EINVAL ({})",
            errno_of(r)
        );
    }
    let s = a.stats()?;
    check!(
        s.vm_id == vm && s.running == 1 && s.vcpus == 0 && s.queue_depth == 0,
        "a VM without vCPU threads counts as running (running {}, vcpus {})",
        s.running,
        s.vcpus
    );
    adm.focus(vm).context("VDI_IOC_FOCUS")?;

    // Frames: keys, buttons and motion, one write each.
    let mut sent: Vec<Ev> = vec![];
    let mut frames_sent: Vec<Vec<Ev>> = vec![];
    for i in 0..20 {
        frames_sent.push(key_frame(i / 2, i % 2 == 0).to_vec());
        frames_sent.push(motion_frame(i as i32 + 1, -(i as i32) - 2));
    }
    frames_sent.push(vec![
        (EV_KEY, BTN_LEFT, 1),
        (EV_REL, REL_X, 5),
        (EV_SYN, SYN_REPORT, 0),
    ]);
    frames_sent.push(vec![
        (EV_KEY, BTN_LEFT, 0),
        (EV_REL, REL_WHEEL, -1),
        (EV_SYN, SYN_REPORT, 0),
    ]);
    let m = a.map.mem();
    a.rd.enable_irq(&m);
    let t0 = now_ns();
    let mut at_once = 0;
    for fr in &frames_sent {
        kb.emit(fr)?;
        sent.extend(fr);
        // No vCPU registered: delivery happens in this thread's write().
        if a.available()? as usize + a.got.len() == sent.len() {
            at_once += 1;
        }
        if a.available()? > 128 {
            a.drain()?;
        }
    }
    let t1 = now_ns();
    a.wait_n(sent.len(), T)?;
    let got = a.take();
    check!(
        at_once == frames_sent.len(),
        "{at_once}/{} frames were in the ring when write() returned",
        frames_sent.len()
    );
    check!(
        triples(&evs_of(&got)) == sent,
        "{} events arrived in order with type/code/value intact ({} received)",
        sent.len(),
        got.len()
    );
    check!(
        seq_contiguous(&got),
        "response ids are a contiguous sequence ({}..={})",
        got.first().map_or(0, |e| e.seq),
        got.last().map_or(0, |e| e.seq)
    );
    check!(
        got.iter().all(|e| e.ev.time_ns >= t0 && e.ev.time_ns <= t1)
            && got.windows(2).all(|w| w[0].ev.time_ns <= w[1].ev.time_ns),
        "time_ns is CLOCK_MONOTONIC of the write, non-decreasing"
    );
    let got_evs = evs_of(&got);
    let (fr, open) = frames(&got_evs);
    check!(
        fr.len() == frames_sent.len() && open.is_empty(),
        "{} frames, each closed by SYN_REPORT",
        fr.len()
    );
    let s = a.stats()?;
    check!(
        s.delivered_immediately == sent.len() as u64
            && s.queued == 0
            && s.flushed == 0
            && s.dropped == 0,
        "stats: delivered_immediately {} = events sent, nothing queued",
        s.delivered_immediately
    );
    check!(
        s.irqs >= 1,
        "stats: {} interrupts (call eventfd signals)",
        s.irqs
    );
    check!(
        a.kicks == 0,
        "no doorbell asked while the ring had room ({} kicks)",
        a.kicks
    );
    let hist: u64 = s.delay_hist.iter().sum();
    check!(
        hist > 0,
        "delay histogram counts deliveries ({:?}, total {hist})",
        s.delay_hist
    );
    let d = find(&kb.name)?.ok_or_else(|| anyhow!("device gone"))?;
    // Between frames a routed device names the VM its next frame goes to: the focus.
    check!(
        d.events >= sent.len() as u64 && d.vm_id == a.create.vm_id,
        "LIST_DEVICES: {} events seen, next frame to the focused VM {}",
        d.events,
        d.vm_id
    );

    // Grabbed: the host's evdev reader sees nothing; ungrabbed it does.
    let node = kb.event_node()?;
    let mut host = Evdev::open(&node, true)?;
    kb.emit(&motion_frame(3, 3))?;
    std::thread::sleep(Duration::from_millis(50));
    check!(
        host.read()?.is_empty(),
        "grabbed: the host's reader of {} sees nothing",
        node.display()
    );
    check!(a.wait_n(3, T)?, "grabbed: the VM got the frame");
    a.take();
    route.remove()?;
    let route = Route::add(&adm, vdi_match::NAME, false, &kb.name)?;
    let d = find(&kb.name)?.ok_or_else(|| anyhow!("device gone"))?;
    check!(
        d.routed == 1 && d.grabbed == 0,
        "re-routed without grab: routed, not grabbed"
    );
    kb.emit(&motion_frame(4, 4))?;
    check!(a.wait_n(3, T)?, "not grabbed: the VM got the frame");
    std::thread::sleep(Duration::from_millis(20));
    let h = host.read()?;
    check!(
        h.iter()
            .any(|&(t, c, v)| t == EV_REL && c == REL_X && v == 4),
        "not grabbed: the host's reader sees it too"
    );
    a.take();

    // Unrouted: the device is the host's again.
    route.remove()?;
    check!(
        find(&kb.name)?.is_some_and(|d| d.routed == 0),
        "UNROUTE: the device is not routed any more"
    );
    kb.emit(&motion_frame(5, 5))?;
    std::thread::sleep(Duration::from_millis(50));
    a.drain()?;
    check!(a.got.is_empty(), "unrouted: the VM gets nothing");
    check!(
        host.read()?
            .iter()
            .any(|&(t, c, v)| t == EV_REL && c == REL_X && v == 5),
        "unrouted: the host gets it"
    );

    // By phys path, by capability.
    let route = Route::add(&adm, vdi_match::PHYS, true, &kb.phys)?;
    kb.emit(&motion_frame(6, 6))?;
    check!(
        a.wait_n(3, T)? && a.take()[0].ev.value == 6,
        "ROUTE by phys {:?}: delivered",
        kb.phys
    );
    route.remove()?;
    let route = Route::add(&adm, vdi_match::KEYBOARD, false, "")?;
    check!(
        find(&kb.name)?.is_some_and(|d| d.routed == 1),
        "ROUTE every keyboard: the uinput keyboard is routed"
    );
    kb.emit(&key_frame(3, true))?;
    kb.emit(&key_frame(3, false))?;
    check!(
        a.wait_n(4, T)?
            && triples(&evs_of(&a.take())) == [key_frame(3, true), key_frame(3, false)].concat(),
        "ROUTE every keyboard: key frames delivered"
    );
    route.remove()?;
    let route = Route::add(&adm, vdi_match::MOUSE, false, "")?;
    check!(
        find(&kb.name)?.is_some_and(|d| d.routed == 1),
        "ROUTE every mouse: the uinput keyboard+mouse is routed"
    );
    route.remove()?;
    let pid = std::process::id();
    let tab = Uinput::new(
        &format!("vd-itest tablet {pid}"),
        &format!("vd-itest/tablet{pid}/input0"),
        Kind::Tablet,
    )?;
    let route = Route::add(&adm, vdi_match::TABLET, true, "")?;
    check!(
        find(&tab.name)?.is_some_and(|d| d.routed == 1)
            && find(&kb.name)?.is_some_and(|d| d.routed == 0),
        "ROUTE every tablet: the uinput tablet is routed, the mouse is not"
    );
    let abs = [
        (EV_KEY, BTN_TOUCH, 1),
        (EV_ABS, ABS_X, 1000),
        (EV_ABS, ABS_Y, 2000),
        (EV_SYN, SYN_REPORT, 0),
    ];
    tab.emit(&abs)?;
    check!(
        a.wait_n(4, T)? && triples(&evs_of(&a.take())) == abs,
        "tablet frame delivered (ABS_X 1000, ABS_Y 2000, BTN_TOUCH)"
    );
    route.remove()?;
    drop(tab);

    // Rebinding the call eventfd.
    let _route = Route::add(&adm, vdi_match::NAME, true, &kb.name)?;
    let call2 = EventFd::new(EFD_NONBLOCK)?;
    a.dev
        .bind(Some(call2.as_raw_fd()))
        .context("VDI_IOC_BIND")?;
    let _ = a.call.read();
    let m = a.map.mem();
    a.rd.enable_irq(&m);
    kb.emit(&motion_frame(7, 7))?;
    check!(
        poll_in(call2.as_raw_fd(), 2000)? && call2.read().is_ok() && a.call.read().is_err(),
        "BIND: the new call eventfd is signalled, the old one not"
    );
    a.wait_n(3, T)?;
    a.take();
    a.dev.bind(None)?;
    let irqs = a.stats()?.irqs;
    a.rd.enable_irq(&m);
    kb.emit(&motion_frame(8, 8))?;
    check!(
        a.wait_n(3, T)? && call2.read().is_err(),
        "BIND -1: events still arrive, no eventfd is signalled (irqs {} -> {})",
        irqs,
        a.stats()?.irqs
    );
    a.take();
    a.dev.bind(Some(a.call.as_raw_fd()))?;

    // Focus on a second VM, then close it while it has the focus.
    let mut b = Sink::new(vm + 1, 64)?;
    adm.focus(vm + 1)?;
    kb.emit(&motion_frame(9, 9))?;
    check!(
        b.wait_n(3, T)?,
        "FOCUS VM {}: it gets the next frame",
        vm + 1
    );
    a.drain()?;
    check!(
        a.got.is_empty(),
        "the previous VM gets nothing after the focus moved"
    );
    drop(b);
    kb.emit(&motion_frame(10, 10))?;
    kb.emit(&key_frame(0, true))?;
    kb.emit(&key_frame(0, false))?;
    check!(
        adm.stats(vm + 1).err() == Some(Errno::ENOENT),
        "closing a VM's file removes it (STATS: ENOENT), even while it has the focus"
    );
    check!(a.stats()?.vm_id == vm, "the other VM is unaffected");
    // A full ring: what does not fit waits in the queue, in order.
    let mut c = Sink::new(vm + 2, 8)?;
    adm.focus(vm + 2)?;
    let fr: Vec<Ev> = (0..5).flat_map(|i| motion_frame(i + 1, 1)).collect();
    kb.emit(&fr)?;
    let s = c.stats()?;
    let n0 = c.available()? as usize;
    check!(
        n0 <= 8 && s.queue_depth >= 7 && n0 + s.queue_depth as usize <= 15,
        "ring of 8 entries: {n0} events visible in it, {} queued (of 15)",
        s.queue_depth
    );
    c.drain()?;
    check!(
        c.kicks >= 1,
        "the module asked for a kick when the consumer freed room ({} kicks)",
        c.kicks
    );
    // Every doorbell moves what fits; the consumer keeps draining (and kicking) until all is in.
    check!(
        c.wait_n(15, T)?,
        "after the doorbell the queued events arrived without new input ({} of 15, queue depth {})",
        c.got.len(),
        c.stats()?.queue_depth
    );
    check!(
        triples(&evs_of(&c.got)) == fr,
        "all 15 in order, whole frames"
    );
    let more = motion_frame(9, 9);
    kb.emit(&more)?;
    c.drain()?;
    let want = [fr.clone(), more].concat();
    let got = triples(&evs_of(&c.got));
    check!(
        got.len() > n0 && got[..] == want[..got.len()],
        "the next input flushes the queue first: {} events in order so far",
        got.len()
    );
    check!(c.stats()?.dropped == 0, "nothing dropped");
    drop(c);
    let fr = adm.focus(999_999);
    println!("info: FOCUS on a VM that does not exist: {}", errno_of(fr));
    adm.focus(vm)?;
    kb.emit(&motion_frame(11, 11))?;
    check!(
        a.wait_n(3, T)? && a.take()[0].ev.value == 11,
        "focus back: delivered again"
    );
    Ok(())
}
