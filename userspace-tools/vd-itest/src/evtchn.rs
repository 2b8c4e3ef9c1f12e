//! vd_evtchn checks.

use crate::chan::Chan;
use crate::check;
use anyhow::{Context, Result};
use nix::errno::Errno;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;
use vd_ring::{
    op, BlkReq, HostRing, HostRingState, RingMem, BLK_REQ_HDR, OFF_REQ_PROD, OFF_RSP_CONS,
};
use vd_sys::evtchn::Domain;
use vd_uapi::*;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const T: Duration = Duration::from_secs(20);

pub fn basic() -> Result<()> {
    let d = Domain::open().context("open /dev/vd_evtchn")?;
    check!(
        d.create(6, 64).unwrap_err() == Errno::EINVAL,
        "entries not a power of two: EINVAL"
    );
    check!(
        d.create(8, 16).unwrap_err() == Errno::EINVAL,
        "entry size below 32: EINVAL"
    );
    check!(
        d.create(4096, 4096).unwrap_err() == Errno::EINVAL,
        "16 MiB ring refused: EINVAL"
    );
    check!(
        d.destroy(77).unwrap_err() == Errno::ENOENT,
        "destroy unknown channel: ENOENT"
    );
    check!(
        d.stats(77).unwrap_err() == Errno::ENOENT,
        "stats of unknown channel: ENOENT"
    );
    let c = d.create(64, 64)?;
    check!(
        c.id == 0 && c.mmap_offset == 0 && c.mmap_size == 4096 * 3,
        "create 64x64: id 0, 12 KiB ring"
    );
    check!(
        d.bind(c.id, Some(99_999), None).unwrap_err() == Errno::EBADF,
        "kick fd not open: EBADF"
    );
    let f = std::fs::File::open("/proc/self/stat")?;
    check!(
        d.bind(c.id, Some(f.as_raw_fd()), None).unwrap_err() == Errno::EINVAL,
        "kick fd not an eventfd: EINVAL"
    );
    check!(
        d.attach(c.id, 99, None).unwrap_err() == Errno::EINVAL,
        "unknown backend: EINVAL"
    );
    check!(
        d.attach(c.id, vde_backend::BLOCK, Some(f.as_raw_fd()))
            .unwrap_err()
            == Errno::EACCES,
        "block backend on a read-only file: EACCES"
    );
    d.destroy(c.id)?;

    // Echo through kick/call eventfds.
    let mut ch = Chan::new(&d, 64, 64, vde_backend::ECHO, None)?;
    let r = ch.echo_round_trips(10_000, T)?;
    let s = ch.stats()?;
    check!(
        s.counters.requests == 10_000 && s.counters.responses == 10_000,
        "echo: 10000 requests and responses counted ({} / {})",
        s.counters.requests,
        s.counters.responses
    );
    check!(
        s.counters.bytes_in == 80_000 && s.counters.bytes_out == 80_000,
        "echo: bytes counted"
    );
    check!(
        s.state == vde_state::ACTIVE && s.backend == vde_backend::ECHO && s.counters.errors == 0,
        "echo: active, no errors"
    );
    check!(
        s.counters.kicks >= 1 && s.counters.kicks <= r.kicks,
        "host saw {} kicks for {} sent (suppression: {} publishes)",
        s.counters.kicks,
        r.kicks,
        10_000
    );
    check!(
        s.counters.irqs + s.counters.irqs_suppressed >= 1,
        "irqs {} + suppressed {}",
        s.counters.irqs,
        s.counters.irqs_suppressed
    );
    check!(
        r.kicks < 10_000,
        "batching: {} kicks for 10000 requests",
        r.kicks
    );

    // Null backend: counting sink.
    let mut n = Chan::new(&d, 16, 32, vde_backend::NULL, None)?;
    for i in 0..10u8 {
        n.push(op::ECHO, &[i; 4]);
    }
    n.publish()?;
    let mut got = vec![];
    for _ in 0..100 {
        n.drain(&mut got)?;
        if got.len() == 10 {
            break;
        }
        n.wait_irq(Duration::from_millis(100))?;
    }
    check!(
        got.len() == 10 && got.iter().all(|(_, st, p)| *st == 0 && p.is_empty()),
        "null: 10 empty responses"
    );

    // Unknown op on echo: an error response, not a broken ring.
    ch.push(0x7777, &[]);
    ch.publish()?;
    let mut got = vec![];
    for _ in 0..100 {
        ch.drain(&mut got)?;
        if !got.is_empty() {
            break;
        }
        ch.wait_irq(Duration::from_millis(100))?;
    }
    check!(
        got.len() == 1 && got[0].1 == -(Errno::EOPNOTSUPP as i32),
        "unknown op answered -EOPNOTSUPP"
    );
    check!(
        ch.stats()?.counters.req_errors == 1 && !ch.backend_failed(),
        "counted as a request error; ring still fine"
    );

    let all = d.totals()?;
    check!(
        all.channels == 2
            && all.failed == 0
            && all.reserved == 0
            && all.counters.requests == 10_011,
        "domain totals: 2 channels, none failed, {} requests",
        all.counters.requests
    );
    let list = d.list_all()?;
    let me = std::process::id();
    check!(
        list.iter().filter(|e| e.domain_pid == me).count() == 2,
        "VDE_IOC_LIST shows this domain's 2 channels"
    );
    let dbg = std::fs::read_to_string("/sys/kernel/debug/vd_evtchn/channels").context("debugfs")?;
    check!(
        dbg.lines()
            .filter(|l| l.starts_with(&format!("{me} ")))
            .count()
            == 2,
        "debugfs lists the 2 channels"
    );
    Ok(())
}

pub fn hostile() -> Result<()> {
    let d = Domain::open()?;
    let bad = Chan::new(&d, 8, 64, vde_backend::ECHO, None)?;
    let mut good = Chan::new(&d, 8, 64, vde_backend::ECHO, None)?;
    good.echo_round_trips(100, T)?;

    // Garbage producer index.
    bad.store(OFF_REQ_PROD, 0xdead_beef);
    bad.kick.write(1)?;
    let mut failed = false;
    for _ in 0..200 {
        if bad.stats()?.state == vde_state::FAILED {
            failed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = bad.stats()?;
    check!(
        failed && s.counters.errors == 1,
        "garbage req_prod: channel FAILED with 1 error (state {}, errors {})",
        s.state,
        s.counters.errors
    );
    check!(
        bad.backend_failed(),
        "FAILED bit visible to the guest in the ring"
    );
    check!(
        bad.call.read().ok() == Some(1),
        "the failed ring interrupted its guest exactly once"
    );
    // More kicks on a failed ring are ignored, and nothing is answered.
    bad.kick.write(5)?;
    std::thread::sleep(Duration::from_millis(50));
    check!(
        bad.stats()?.counters.responses == 0 && bad.stats()?.counters.errors == 1,
        "failed ring stays failed and silent"
    );
    good.echo_round_trips(1000, T)?;
    check!(
        good.stats()?.counters.errors == 0,
        "the other channel kept working (1100 round trips)"
    );

    // Garbage length in a slot, garbage response consumer.
    for (what, corrupt) in [("slot length", 0), ("rsp_cons", 1)] {
        let mut b = Chan::new(&d, 8, 64, vde_backend::ECHO, None)?;
        b.push(op::ECHO, &[1, 2, 3]);
        let g = b.fe.geometry();
        if corrupt == 0 {
            b.mem()
                .write(g.req_slot(0) + 12, &0xffff_fff0u32.to_le_bytes());
        } else {
            b.store(OFF_RSP_CONS, 0x4000_0000);
        }
        b.publish()?;
        std::thread::sleep(Duration::from_millis(100));
        let s = b.stats()?;
        check!(
            s.state == vde_state::FAILED && s.counters.errors == 1,
            "garbage {what}: channel FAILED"
        );
        d.destroy(b.id)?;
    }
    let r = good.echo_round_trips(100, T)?;
    let s = good.stats()?;
    check!(
        r.n == 100 && s.counters.errors == 0 && s.state == vde_state::ACTIVE,
        "host still serves the good channel after 3 hostile rings"
    );
    Ok(())
}

pub fn block(path: &str) -> Result<()> {
    const SIZE: u64 = 1 << 20;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.set_len(SIZE)?;
    let d = Domain::open()?;
    let mut ch = Chan::new(&d, 16, 4096, vde_backend::BLOCK, Some(f.as_raw_fd()))?;
    let rt = |ch: &mut Chan, opc: u16, payload: &[u8]| -> Result<(i32, Vec<u8>)> {
        ch.push(opc, payload);
        ch.publish()?;
        let mut got = vec![];
        for _ in 0..500 {
            ch.drain(&mut got)?;
            if !got.is_empty() {
                let (_, st, p) = got.remove(0);
                return Ok((st, p));
            }
            let m = ch.mem();
            if !ch.fe.enable_irq(&m) {
                ch.wait_irq(Duration::from_millis(20))?;
            }
        }
        anyhow::bail!("no response")
    };
    // Requests built from the one definition of the block payload (`vd_ring::BlkReq`).
    let hdr = |sector: u64, len: u32| -> Vec<u8> {
        BlkReq {
            sector,
            len,
            reserved: 0,
        }
        .to_bytes()
        .to_vec()
    };
    let (st, p) = rt(&mut ch, op::BLK_GET_SIZE, &[])?;
    check!(st == 0 && p == SIZE.to_le_bytes(), "GET_SIZE = 1 MiB");
    for sector in [0u64, 7, 2040] {
        let data: Vec<u8> = (0..4000u32)
            .map(|i| (i as u64 * 31 + sector) as u8)
            .collect();
        let mut w = hdr(sector, data.len() as u32);
        w.extend_from_slice(&data);
        let (st, _) = rt(&mut ch, op::BLK_WRITE, &w)?;
        check!(st == 0, "write 4000 bytes at sector {sector}");
        let (st, p) = rt(&mut ch, op::BLK_READ, &hdr(sector, 4000))?;
        check!(st == 0 && p == data, "read back sector {sector} matches");
    }
    let (st, _) = rt(&mut ch, op::BLK_FLUSH, &[])?;
    check!(st == 0, "flush");
    let mut on_disk = vec![0u8; 4000];
    nix::sys::uio::pread(&f, &mut on_disk, 7 * 512)?;
    check!(
        on_disk[..10] == (0..10u64).map(|i| (i * 31 + 7) as u8).collect::<Vec<_>>()[..],
        "the host file holds what the guest wrote"
    );
    let (st, _) = rt(&mut ch, op::BLK_READ, &hdr(2047, 4000))?;
    check!(
        st == -(Errno::EINVAL as i32),
        "read past the end of the disk: -EINVAL"
    );
    let (st, _) = rt(&mut ch, op::BLK_READ, &hdr(u64::MAX / 256, 512))?;
    check!(st == -(Errno::EINVAL as i32), "sector overflow: -EINVAL");
    let mut w = hdr(0, 4000);
    w.extend_from_slice(&[1; 10]);
    let (st, _) = rt(&mut ch, op::BLK_WRITE, &w)?;
    check!(
        st == -(Errno::EINVAL as i32),
        "write whose data is shorter than its length: -EINVAL"
    );
    let (st, _) = rt(
        &mut ch,
        op::BLK_READ,
        &BlkReq {
            sector: 0,
            len: 512,
            reserved: 1,
        }
        .to_bytes(),
    )?;
    check!(
        st == -(Errno::EINVAL as i32),
        "reserved field not 0: -EINVAL"
    );
    let (st, _) = rt(&mut ch, op::BLK_READ, &hdr(0, 512)[..12])?;
    check!(
        st == -(Errno::EINVAL as i32),
        "a 12-byte header (shorter than BlkReq): -EINVAL"
    );
    let data = [0x5au8; 512];
    let mut w = BlkReq {
        sector: 9,
        len: 512,
        reserved: 0,
    }
    .to_bytes()
    .to_vec();
    check!(
        w.len() == BLK_REQ_HDR,
        "the documented header is {BLK_REQ_HDR} bytes; data follows it"
    );
    w.extend_from_slice(&data);
    let (st, _) = rt(&mut ch, op::BLK_WRITE, &w)?;
    let (st2, p) = rt(&mut ch, op::BLK_READ, &hdr(9, 512))?;
    check!(
        st == 0 && st2 == 0 && p == data,
        "a write built from BlkReq with data at offset {BLK_REQ_HDR} is served and reads back"
    );
    check!(
        !ch.backend_failed() && ch.stats()?.counters.req_errors == 5,
        "bad requests are request errors, the ring is fine"
    );
    Ok(())
}

pub fn user() -> Result<()> {
    let d = Domain::open()?;
    let backend_efd = EventFd::new(0)?;
    let mut ch = Chan::new(&d, 32, 64, vde_backend::USER, Some(backend_efd.as_raw_fd()))?;
    // The "host driver in userspace": its own mapping of the same ring, the shared ring code.
    let c2 = vd_sys::evtchn::RingMap::clone_of(&ch.map);
    let geo = ch.fe.geometry();
    let id = ch.id;
    let dref = &d;
    let served = std::thread::scope(|s| -> Result<u64> {
        let h = s.spawn(move || -> Result<u64> {
            let m = c2.mem();
            let mut be = HostRing::new(geo, HostRingState::default());
            let mut buf = vec![0u8; geo.max_payload()];
            let mut n = 0;
            while n < 500 {
                backend_efd.read()?; // wait for a kick forwarded by the kernel
                loop {
                    while let Some(r) = be
                        .pop_request(&m, &mut buf)
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?
                    {
                        be.push_response(&m, r.id, 0, &buf[..r.len as usize])
                            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                        n += 1;
                    }
                    if be.publish(&m).1 {
                        dref.notify(id)?;
                    }
                    if !be.enable_kicks(&m).map_err(|e| anyhow::anyhow!("{e:?}"))? {
                        break;
                    }
                }
            }
            Ok(n)
        });
        ch.echo_round_trips(500, T)?;
        h.join()
            .map_err(|_| anyhow::anyhow!("backend thread panicked"))?
    })?;
    check!(served == 500, "userspace backend served 500 requests");
    let s = ch.stats()?;
    check!(
        s.backend == vde_backend::USER && s.counters.irqs >= 1 && s.counters.kicks >= 1,
        "kernel forwarded {} kicks, sent {} irqs",
        s.counters.kicks,
        s.counters.irqs
    );
    Ok(())
}

pub fn restore() -> Result<()> {
    let d1 = Domain::open()?;
    let mut a = Chan::new(&d1, 16, 64, vde_backend::ECHO, None)?;
    a.echo_round_trips(37, T)?;
    // Detach the backend and queue requests that stay in flight.
    d1.attach(a.id, vde_backend::NONE, None)?;
    for _ in 0..10 {
        let id = a.next_id;
        a.push(op::ECHO, &id.to_le_bytes());
    }
    a.publish()?;
    std::thread::sleep(Duration::from_millis(50));
    let saved = d1.save(a.id)?;
    check!(
        saved.req_cons == 37 && saved.rsp_prod == 37 && saved.generation == 1,
        "saved indices 37/37 with 10 in flight"
    );
    // SAFETY: the mapping is `len` bytes and lives until `a` is dropped below; nothing writes it
    // now (backend detached, this thread is the only frontend).
    let bytes = unsafe { std::slice::from_raw_parts(a.map.as_ptr(), a.map.len()) }.to_vec();

    // "Another host": a new domain, a new channel, the ring bytes copied as guest memory is.
    let d2 = Domain::open()?;
    let c = d2.create(16, 64)?;
    let m2 = d2.map_ring(&c)?;
    // SAFETY: both mappings are `len` bytes; nobody else writes the new one yet.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), m2.as_ptr(), bytes.len()) };
    check!(
        d2.restore(&VdeState {
            id: c.id,
            entry_size: 32,
            ..saved
        })
        .unwrap_err()
            == Errno::EINVAL,
        "restore with other geometry: EINVAL"
    );
    d2.restore(&VdeState { id: c.id, ..saved })?;
    check!(
        m2.mem().load_u32(vd_ring::OFF_GENERATION) == 2,
        "generation bumped to 2"
    );
    drop(a);
    drop(d1);
    let kick = EventFd::new(EFD_NONBLOCK)?;
    let call = EventFd::new(EFD_NONBLOCK)?;
    d2.bind(c.id, Some(kick.as_raw_fd()), Some(call.as_raw_fd()))?;
    d2.attach(c.id, vde_backend::ECHO, None)?;
    // The frontend continues where it was, on the restored ring.
    let mut fe = vd_ring::GuestRing::attach(&m2.mem()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut ids = vec![];
    let mut buf = [0u8; 48];
    for _ in 0..200 {
        while let Some(r) = fe
            .pop_response(&m2.mem(), &mut buf)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
        {
            ids.push(r.id);
        }
        if ids.len() >= 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    check!(
        ids == (37..47).collect::<Vec<_>>(),
        "the 10 in-flight requests were served after restore, in order: {ids:?}"
    );
    Ok(())
}

pub fn stress(channels: u32) -> Result<()> {
    let d = Domain::open()?;
    let mut chans = (0..channels)
        .map(|_| Chan::new(&d, 64, 256, vde_backend::ECHO, None))
        .collect::<Result<Vec<_>>>()?;
    println!("stress: {channels} channels running");
    loop {
        for c in chans.iter_mut() {
            c.echo_round_trips(256, T)?;
        }
    }
}

/// `evtchn-throughput`: requests/s and requests per notification (kicks + interrupts) with the
/// ring kept full, per ring size.
pub fn throughput(requests: u64, json: bool) -> Result<()> {
    let d = Domain::open()?;
    let mut rows = Vec::new();
    for entries in [64u32, 256, 1024, 4096] {
        let mut ch = Chan::new(&d, entries, 32, vde_backend::ECHO, None)?;
        let r = ch.echo_round_trips(requests, Duration::from_secs(300))?;
        let notes = (r.kicks + r.irqs).max(1);
        rows.push(serde_json::json!({
            "entries": entries,
            "requests": r.n,
            "requests_per_s": r.n as f64 / r.elapsed.as_secs_f64(),
            "notifications": r.kicks + r.irqs,
            "requests_per_notification": r.n as f64 / notes as f64,
        }));
        d.destroy(ch.id)?;
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "frontend": "process", "throughput": rows })
        );
    } else {
        println!(
            "batching, process frontend -> in-kernel echo backend ({requests} requests per size)"
        );
        println!(
            "  {:>8} {:>14} {:>14} {:>18}",
            "entries", "requests/s", "notifications", "req/notification"
        );
        for r in &rows {
            println!(
                "  {:>8} {:>14.0} {:>14} {:>18.1}",
                r["entries"],
                r["requests_per_s"].as_f64().unwrap_or(0.0),
                r["notifications"],
                r["requests_per_notification"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

/// `evtchn-case NAME`: the issue-11 regression checks, one per name.
pub fn case(name: &str) -> Result<()> {
    match name {
        "bind-race" => bind_race(),
        "kick-overflow" => kick_overflow(),
        "attach-types" => attach_types(),
        "create-efault" => create_efault(),
        "save-user" => save_user(),
        "stats-blocked" => stats_blocked(),
        "list-churn" => list_churn(),
        "kicker" => kicker(),
        _ => anyhow::bail!("unknown case {name}"),
    }
}

/// Raw `dup2` that keeps racing whatever the result.
fn dup2_raw(from: i32, to: i32) -> i32 {
    // SAFETY: plain fd syscall; `to` is a number this test reserved for the race.
    unsafe { nix::libc::dup2(from, to) }
}

/// Threads `dup2` an eventfd, a pipe's two ends, a socket and a regular file over one fd number
/// while other threads `VDE_IOC_BIND` that number as a channel's kick fd. Every bind either
/// attaches the eventfd (and then works) or fails with EINVAL; the pipe's poll (two wait
/// queues) must never get our wait entry (the kernel log and the debug kernel's lockdep/KASAN
/// catch that).
fn bind_race() -> Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    let d = Domain::open()?;
    let mut ch = Chan::new(&d, 64, 64, vde_backend::ECHO, None)?;
    let efd = EventFd::new(EFD_NONBLOCK)?;
    let (pr, pw) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK)?;
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    let reg = std::fs::File::open("/proc/self/status")?;
    // A FIFO open for reading and writing: its poll waits on two queues.
    let fifo_path = "/tmp/vd-bindrace.fifo";
    let _ = std::fs::remove_file(fifo_path);
    nix::unistd::mkfifo(fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(fifo_path)?;
    let srcs = [
        efd.as_raw_fd(),
        fifo.as_raw_fd(),
        pr.as_raw_fd(),
        pw.as_raw_fd(),
        sock.as_raw_fd(),
        reg.as_raw_fd(),
    ];
    const RACE_FD: i32 = 900;
    check!(
        dup2_raw(efd.as_raw_fd(), RACE_FD) == RACE_FD,
        "fd {RACE_FD} reserved for the race"
    );
    let stop = AtomicBool::new(false);
    let (ok, einval, other) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let id = ch.id;
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    std::thread::scope(|s| {
        for t in 0..2 {
            let stop = &stop;
            s.spawn(move || {
                let mut i = t;
                while !stop.load(Relaxed) {
                    dup2_raw(srcs[i % srcs.len()], RACE_FD);
                    i += 1;
                }
            });
        }
        for t in 0..2 {
            let (stop, ok, einval, other, d) = (&stop, &ok, &einval, &other, &d);
            s.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    // Alternate binding and unbinding, so detach runs on whatever got queued.
                    let kick = if (n + t) % 4 == 3 {
                        None
                    } else {
                        Some(RACE_FD)
                    };
                    match d.bind(id, kick, None) {
                        Ok(()) => ok.fetch_add(1, Relaxed),
                        Err(Errno::EINVAL) => einval.fetch_add(1, Relaxed),
                        Err(_) => other.fetch_add(1, Relaxed),
                    };
                    n += 1;
                }
            });
        }
        // Wake the FIFO's and the pipe's queues all the time: a wait entry wrongly queued there
        // (or on two queues) runs, or corrupts their lists, right away.
        let mut b = [0u8; 64];
        while std::time::Instant::now() < deadline {
            let _ = nix::unistd::write(&fifo, b"x");
            let _ = nix::unistd::read(fifo.as_raw_fd(), &mut b);
            let _ = nix::unistd::write(&pw, b"x");
            let _ = nix::unistd::read(pr.as_raw_fd(), &mut b);
        }
        stop.store(true, Relaxed);
    });
    let (ok, einval, other) = (ok.load(Relaxed), einval.load(Relaxed), other.load(Relaxed));
    println!("bind race: {ok} binds, {einval} EINVAL, {other} other errors");
    check!(
        ok > 0 && einval > 0,
        "both outcomes seen: {ok} binds of the eventfd, {einval} EINVAL"
    );
    check!(other == 0, "no bind failed with another errno ({other})");
    // Wake the pipe and the socket's queues now: an entry left on them would run here.
    nix::unistd::write(&pw, b"x")?;
    check!(
        d.bind(id, Some(pr.as_raw_fd()), None).unwrap_err() == Errno::EINVAL,
        "a pipe as kick fd: EINVAL"
    );
    check!(
        d.bind(id, Some(fifo.as_raw_fd()), None).unwrap_err() == Errno::EINVAL,
        "a FIFO open read-write as kick fd: EINVAL"
    );
    drop(fifo);
    let _ = std::fs::remove_file(fifo_path);
    // SAFETY: closes the raced number, which this test owns.
    unsafe { nix::libc::close(RACE_FD) };
    d.bind(id, Some(ch.kick.as_raw_fd()), Some(ch.call.as_raw_fd()))?;
    let r = ch.echo_round_trips(1000, T)?;
    check!(
        r.n == 1000,
        "the channel still works after the race (1000 round trips)"
    );
    drop(ch);
    drop(d);
    Ok(())
}

/// Two channels whose kick eventfds are written with 2^64-2 (the most an eventfd holds): each
/// counts that many kicks, and the domain total saturates at 2^64-1 instead of overflowing.
fn kick_overflow() -> Result<()> {
    let d = Domain::open()?;
    let big = u64::MAX - 1;
    let chans = [
        Chan::new(&d, 8, 64, vde_backend::NULL, None)?,
        Chan::new(&d, 8, 64, vde_backend::NULL, None)?,
    ];
    for c in &chans {
        c.kick.write(big)?;
    }
    let t0 = std::time::Instant::now();
    for c in &chans {
        while c.stats()?.counters.kicks < big {
            anyhow::ensure!(t0.elapsed() < T, "channel {} never counted the kicks", c.id);
            std::thread::sleep(Duration::from_millis(5));
        }
        check!(
            c.stats()?.counters.kicks == big,
            "channel {}: 2^64-2 kicks counted",
            c.id
        );
    }
    let all = d.totals()?;
    check!(
        all.counters.kicks == u64::MAX && all.channels == 2,
        "VDE_ALL: kicks saturate at 2^64-1 ({})",
        all.counters.kicks
    );
    let me = std::process::id();
    let list = d.list_all()?;
    check!(
        list.iter()
            .filter(|e| e.domain_pid == me)
            .all(|e| e.stats.counters.kicks == big),
        "VDE_IOC_LIST shows each channel's count"
    );
    // More kicks on top saturate the channel's counter too.
    chans[0].kick.write(5)?;
    let t1 = std::time::Instant::now();
    while chans[0].stats()?.counters.kicks == big && t1.elapsed() < T {
        std::thread::sleep(Duration::from_millis(5));
    }
    let k = chans[0].stats()?.counters.kicks;
    check!(
        k == u64::MAX,
        "5 more kicks: the channel's counter saturates at 2^64-1 ({k})"
    );
    Ok(())
}

/// The block backend takes regular files and block devices only: the domain's own file,
/// another domain's file, an eventfd, a socket and a pipe are refused with EINVAL (any of them
/// could hold a reference back to the domain: a cycle never freed).
fn attach_types() -> Result<()> {
    let d = Domain::open()?;
    let other = Domain::open()?;
    let c = d.create(8, 64)?;
    let c2 = other.create(8, 64)?;
    let efd = EventFd::new(0)?;
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    let (pr, pw) = nix::unistd::pipe()?;
    let cases: [(&str, i32); 6] = [
        ("the domain's own file", d.file().as_raw_fd()),
        ("another domain's file", other.file().as_raw_fd()),
        ("an eventfd", efd.as_raw_fd()),
        ("a socket", sock.as_raw_fd()),
        ("a pipe's read end", pr.as_raw_fd()),
        ("a pipe's write end", pw.as_raw_fd()),
    ];
    for (what, fd) in cases {
        let r = d.attach(c.id, vde_backend::BLOCK, Some(fd));
        check!(
            r == Err(Errno::EINVAL),
            "block backend on {what}: EINVAL ({r:?})"
        );
    }
    let r = other.attach(c2.id, vde_backend::BLOCK, Some(d.file().as_raw_fd()));
    check!(
        r == Err(Errno::EINVAL),
        "the other domain backed by the first: EINVAL ({r:?})"
    );
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open("/tmp/vd-attach.img")?;
    f.set_len(4096)?;
    check!(
        d.attach(c.id, vde_backend::BLOCK, Some(f.as_raw_fd()))
            .is_ok(),
        "a regular file opened read-write is accepted"
    );
    Ok(())
}

/// `VDE_IOC_CREATE` whose result cannot be written back (the argument is in a read-only
/// mapping): EFAULT, and no channel is left behind.
fn create_efault() -> Result<()> {
    use nix::sys::mman::{mmap_anonymous, mprotect, MapFlags, ProtFlags};
    let d = Domain::open()?;
    let len = std::num::NonZeroUsize::new(4096).context("page")?;
    // SAFETY: a fresh private anonymous mapping, used only through `p` below.
    let p = unsafe {
        mmap_anonymous(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE,
        )
    }?;
    let arg = p.as_ptr().cast::<VdeCreate>();
    // SAFETY: `arg` points into the writable page just mapped, aligned for `VdeCreate`.
    unsafe {
        arg.write(VdeCreate {
            entries: 8,
            entry_size: 64,
            ..Default::default()
        })
    };
    // SAFETY: the page stays mapped; only its protection changes.
    unsafe { mprotect(p, 4096, ProtFlags::PROT_READ) }?;
    // SAFETY: `_IOWR` of one `VdeCreate` at a readable (not writable) address.
    let r = unsafe { nix::libc::ioctl(d.file().as_raw_fd(), VDE_IOC_CREATE as _, arg) };
    let e = Errno::last();
    check!(
        r == -1 && e == Errno::EFAULT,
        "create with a read-only result: EFAULT ({r}, {e})"
    );
    let all = d.totals()?;
    check!(
        all.channels == 0,
        "no channel left in the domain ({} channels)",
        all.channels
    );
    let me = std::process::id();
    check!(
        !d.list_all()?.iter().any(|e| e.domain_pid == me),
        "VDE_IOC_LIST shows no channel of this domain"
    );
    check!(
        d.stats(0).unwrap_err() == Errno::ENOENT,
        "channel 0 does not exist"
    );
    let c = d.create(8, 64)?;
    check!(c.id == 0, "the next create gets id 0");
    // SAFETY: unmaps the page mapped above; nothing refers to it any more.
    unsafe { nix::sys::mman::munmap(p, 4096) }?;
    Ok(())
}

/// `VDE_IOC_SAVE` on a channel served by a `user` backend: EOPNOTSUPP (the process owns the
/// backend's indices; the kernel's never moved), after that process served requests.
fn save_user() -> Result<()> {
    let d = Domain::open()?;
    let backend_efd = EventFd::new(EFD_NONBLOCK)?;
    let mut ch = Chan::new(&d, 16, 64, vde_backend::USER, Some(backend_efd.as_raw_fd()))?;
    let c2 = vd_sys::evtchn::RingMap::clone_of(&ch.map);
    let m = c2.mem();
    let geo = ch.fe.geometry();
    let mut be = HostRing::new(geo, HostRingState::default());
    let mut buf = vec![0u8; geo.max_payload()];
    for i in 0..5u8 {
        ch.push(op::ECHO, &[i]);
    }
    ch.publish()?;
    let mut n = 0;
    while let Some(r) = be
        .pop_request(&m, &mut buf)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
    {
        be.push_response(&m, r.id, 0, &buf[..r.len as usize])
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        n += 1;
    }
    be.publish(&m);
    check!(
        n == 5 && m.load_u32(vd_ring::OFF_REQ_CONS) == 5,
        "the user backend served 5 requests"
    );
    let r = d.save(ch.id);
    check!(
        r.map(|_| ()) == Err(Errno::EOPNOTSUPP),
        "VDE_IOC_SAVE on a user backend: EOPNOTSUPP ({r:?})"
    );
    d.attach(ch.id, vde_backend::NONE, None)?;
    let s = d.save(ch.id)?;
    check!(
        s.backend == vde_backend::NONE && s.req_cons == 5 && s.rsp_prod == 5,
        "after the user backend, SAVE carries the indices it reached: {}/{}",
        s.req_cons,
        s.rsp_prod
    );
    // The kernel continues from there: an echo backend serves the next request, not old ones.
    d.attach(ch.id, vde_backend::ECHO, None)?;
    let mut got = vec![];
    ch.drain(&mut got)?;
    let r = ch.echo_round_trips(20, T)?;
    check!(
        r.n == 20 && ch.stats()?.counters.errors == 0,
        "an in-kernel backend after the user one serves on (20 round trips)"
    );
    Ok(())
}

const STALL: &str = "/sys/kernel/debug/vd_evtchn/stall_block_io";

/// `(set, handlers waiting)` of the block-I/O stall test hook.
fn stall_state() -> Result<(u32, u32)> {
    let t = std::fs::read_to_string(STALL).context("read the stall hook")?;
    let mut it = t.split_whitespace().map(str::parse::<u32>);
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
        _ => anyhow::bail!("stall hook says {t:?}"),
    }
}

/// A block backend held inside its I/O (the module's stall hook, with the channel lock held as
/// a slow disk would): VDE_IOC_STATS (channel and domain), VDE_IOC_LIST and debugfs answer at
/// once, and another domain's channel keeps being served on its own worker.
fn stats_blocked() -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open("/tmp/vd-stall.img")?;
    f.set_len(1 << 16)?;
    let d = Domain::open()?;
    let other = Domain::open()?;
    let mut ch = Chan::new(&d, 8, 1024, vde_backend::BLOCK, Some(f.as_raw_fd()))?;
    let mut echo = Chan::new(&other, 8, 64, vde_backend::ECHO, None)?;
    std::fs::write(STALL, "1").context("set the stall hook")?;
    let r = (|| -> Result<()> {
        ch.push(
            op::BLK_READ,
            &BlkReq {
                sector: 0,
                len: 512,
                reserved: 0,
            }
            .to_bytes(),
        );
        ch.publish()?;
        ch.kick.write(1)?;
        let t0 = std::time::Instant::now();
        while stall_state()?.1 == 0 {
            anyhow::ensure!(t0.elapsed() < T, "the block request never reached its I/O");
            std::thread::sleep(Duration::from_millis(5));
        }
        println!("ok: the block backend is blocked in its I/O");
        let t = std::time::Instant::now();
        let s = d.stats(ch.id)?;
        let all = d.totals()?;
        let took = t.elapsed();
        check!(
            took < Duration::from_secs(2),
            "STATS and STATS VDE_ALL answered in {took:?} while the backend is blocked"
        );
        let t = std::time::Instant::now();
        let me = std::process::id();
        // Both domains are this process's: the blocked one is the block channel.
        let listed = d
            .list_all()?
            .iter()
            .filter(|e| e.domain_pid == me && e.stats.backend == vde_backend::BLOCK)
            .count();
        let dbg = std::fs::read_to_string("/sys/kernel/debug/vd_evtchn/channels")?;
        let took = t.elapsed();
        check!(
            stall_state()?.1 == 1,
            "the backend was still blocked while the statistics were read"
        );
        check!(
            took < Duration::from_secs(2),
            "LIST and debugfs answered in {took:?} while the backend is blocked"
        );
        check!(
            s.counters.requests == 1
                && s.counters.responses == 0
                && s.backend == vde_backend::BLOCK,
            "stats show the request in flight"
        );
        check!(
            all.channels == 1 && listed == 1,
            "domain totals and the list see the channel"
        );
        check!(
            dbg.lines().any(|l| l.starts_with(&format!("{me} "))),
            "debugfs lists the channel"
        );
        let r = echo.echo_round_trips(200, T)?;
        check!(
            r.n == 200,
            "another domain's channel is served meanwhile (200 round trips)"
        );
        Ok(())
    })();
    std::fs::write(STALL, "0").context("clear the stall hook")?;
    r?;
    let mut got = vec![];
    let t0 = std::time::Instant::now();
    while got.is_empty() {
        anyhow::ensure!(t0.elapsed() < T, "no response after the stall ended");
        ch.drain(&mut got)?;
        if got.is_empty() {
            ch.wait_irq(Duration::from_millis(100))?;
        }
    }
    check!(
        got[0].1 == 0 && got[0].2.len() == 512,
        "the stalled read completes once the I/O goes on"
    );
    Ok(())
}

/// Listing while another domain creates and destroys channels all the time: every walk lists
/// each of the 8 channels that live through it exactly once, in key order.
fn list_churn() -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    // The churning domain is opened first, so under index-based listing its channels came
    // before the stable ones and shifted them.
    let churn = Domain::open()?;
    let stable = Domain::open()?;
    // Both domains belong to this process: the stable channels are the ones with 16 entries.
    let keep: Vec<VdeCreate> = (0..8)
        .map(|_| stable.create(16, 64))
        .collect::<Result<_, _>>()?;
    let stop = AtomicBool::new(false);
    let me = std::process::id();
    let walks = std::thread::scope(|s| -> Result<u32> {
        let h = s.spawn(|| -> Result<u64> {
            let mut n = 0u64;
            while !stop.load(Relaxed) {
                let a = churn.create(8, 64)?;
                let b = churn.create(8, 64)?;
                churn.destroy(a.id)?;
                churn.destroy(b.id)?;
                n += 1;
            }
            Ok(n)
        });
        let mut walks = 0;
        let mut bad = None;
        let t0 = std::time::Instant::now();
        let mut err = None;
        while t0.elapsed() < Duration::from_secs(3) && bad.is_none() {
            let l = match stable.list_all() {
                Ok(l) => l,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            };
            let keys_ordered = l.windows(2).all(|w| w[0].cursor < w[1].cursor);
            let mut seen = [0u32; 8];
            for e in l
                .iter()
                .filter(|e| e.domain_pid == me && e.stats.entries == 16)
            {
                if let Some(i) = keep.iter().position(|c| c.id == e.stats.id) {
                    seen[i] += 1;
                }
            }
            if !keys_ordered || seen.iter().any(|&n| n != 1) {
                bad = Some(format!(
                    "walk {walks}: ordered {keys_ordered}, stable channels seen {seen:?}"
                ));
            }
            walks += 1;
        }
        stop.store(true, Relaxed);
        let churned = h
            .join()
            .map_err(|_| anyhow::anyhow!("churn thread panicked"))??;
        if let Some(e) = err {
            anyhow::bail!("VDE_IOC_LIST: {e}");
        }
        println!("list churn: {walks} walks while {churned} create/destroy rounds ran");
        check!(
            bad.is_none(),
            "no walk repeated or skipped a stable channel ({})",
            bad.unwrap_or_default()
        );
        check!(
            churned > 10,
            "channels came and went during the walks ({churned} rounds)"
        );
        Ok(walks)
    })?;
    check!(walks > 10, "{walks} walks");
    Ok(())
}

/// This process's channel `id` in `VDE_IOC_LIST`.
fn listed(d: &Domain, id: u32) -> Result<VdeListEntry> {
    let me = std::process::id();
    d.list_all()?
        .into_iter()
        .find(|e| e.domain_pid == me && e.stats.id == id)
        .with_context(|| format!("channel {id} of pid {me} not in VDE_IOC_LIST"))
}

/// The `kicker` column of this process's channel `id` in debugfs.
fn debugfs_kicker(id: u32) -> Result<u32> {
    let dbg = std::fs::read_to_string("/sys/kernel/debug/vd_evtchn/channels").context("debugfs")?;
    let mut lines = dbg.lines();
    let head: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let col = head
        .iter()
        .position(|c| *c == "kicker")
        .context("no kicker column in debugfs")?;
    let (me, id) = (std::process::id().to_string(), id.to_string());
    let row = lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|r| r.first() == Some(&me.as_str()) && r.get(1) == Some(&id.as_str()))
        .with_context(|| format!("channel {id} of pid {me} not in debugfs"))?;
    row.get(col)
        .and_then(|v| v.parse().ok())
        .context("debugfs kicker column")
}

/// `VDE_IOC_LIST`'s `kick_pid`: the process that kicks a channel, whoever created it. A child
/// process writes the kick eventfd of a channel this process created (as QEMU's vCPU thread
/// signals the ioeventfd of a channel `vd-ivshmem-server` created): `kick_pid` is the child's
/// pid, `domain_pid` stays ours; then a thread of ours kicks: our pid again (the thread group,
/// not the thread). 0 before any kick (attaching a backend and `VDE_IOC_KICK` are no kicks).
/// A nonzero `reserved` is refused with EINVAL.
fn kicker() -> Result<()> {
    let d = Domain::open()?;
    let ch = Chan::new(&d, 8, 64, vde_backend::NULL, None)?;
    d.kick(ch.id)?;
    let me = std::process::id();
    let e = listed(&d, ch.id)?;
    check!(
        e.kick_pid == 0 && e.reserved == 0,
        "before any kick: kick_pid 0 ({}), after a backend attach and VDE_IOC_KICK",
        e.kick_pid
    );
    check!(
        debugfs_kicker(ch.id)? == 0,
        "debugfs: kicker 0 before any kick"
    );
    let kfd = ch.kick.as_raw_fd();
    // SAFETY: the child only calls async-signal-safe functions (`write`, `_exit`) on memory
    // and fds it inherited; this process has no other thread now.
    let child = match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            let one = 1u64.to_ne_bytes();
            // SAFETY: an 8-byte write from a live buffer to the inherited eventfd.
            let n = unsafe { nix::libc::write(kfd, one.as_ptr().cast(), 8) };
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { nix::libc::_exit(if n == 8 { 0 } else { 1 }) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    let st = nix::sys::wait::waitpid(child, None)?;
    check!(
        st == nix::sys::wait::WaitStatus::Exited(child, 0),
        "the child (pid {child}) wrote the kick eventfd ({st:?})"
    );
    let cpid = child.as_raw() as u32;
    // The wake-up ran inside the child's write(2): recorded before it returned.
    let e = listed(&d, ch.id)?;
    check!(
        e.kick_pid == cpid && e.domain_pid == me,
        "VDE_IOC_LIST after the child's kick: kick_pid {} (the child {cpid}), domain_pid {} \
         (the creator {me})",
        e.kick_pid,
        e.domain_pid
    );
    check!(
        debugfs_kicker(ch.id)? == cpid,
        "debugfs: kicker is the child {cpid}"
    );
    // A thread of ours: the thread group's id is recorded, not the thread's.
    let tid = std::thread::scope(|s| {
        s.spawn(|| -> Result<i32> {
            ch.kick.write(1)?;
            Ok(nix::unistd::gettid().as_raw())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("kicking thread panicked"))?
    })?;
    let e = listed(&d, ch.id)?;
    check!(
        e.kick_pid == me && tid as u32 != me,
        "after a kick from thread {tid}: kick_pid {} is this process ({me})",
        e.kick_pid
    );
    // Reserved bits in: EINVAL.
    let mut bad = VdeListEntry {
        reserved: 1,
        ..Default::default()
    };
    // SAFETY: `_IOWR` of one `VdeListEntry` on the stack.
    let r = unsafe { nix::libc::ioctl(d.file().as_raw_fd(), VDE_IOC_LIST as _, &raw mut bad) };
    check!(
        r == -1 && Errno::last() == Errno::EINVAL,
        "VDE_IOC_LIST with reserved 1: EINVAL"
    );
    Ok(())
}
