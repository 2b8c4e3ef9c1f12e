//! Helpers for the vdd VM tests (`scripts/vmtests/5x-vdd-*.sh`): fake QEMUs (QMP peers) standing
//! in for the VMMs, a VM waiting for a VF, and frames on a VF's netdev.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use vd_sys::sriov::{bdf_name, event_name, Manager};
use vdd::fakeqmp::{self, FakeOpts, Journal};

/// Serves one fake QMP peer per `NAME=SOCKET` until killed; every command goes, as one JSON line
/// `{"vm": NAME, "execute": ..., "arguments": ...}`, to `log` (one file: the order across VMs).
pub fn fake_qmp(vms: &[String], log: &str, fail_device_add: &[String]) -> Result<()> {
    let j = Journal::with_file(std::path::Path::new(log)).with_context(|| format!("log {log}"))?;
    for v in vms {
        let (name, sock) = v.split_once('=').with_context(|| format!("{v:?}: expected NAME=SOCKET"))?;
        let _ = std::fs::remove_file(sock);
        let opts = FakeOpts { fail_device_add: fail_device_add.iter().any(|n| n == name), ..Default::default() };
        fakeqmp::spawn(std::path::Path::new(sock), name, j.clone(), opts).with_context(|| format!("bind {sock}"))?;
    }
    println!("ready: {} fake QMP peer(s), log {log}", vms.len());
    std::io::stdout().flush()?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// VM `vm` waits for a VF (`VDS_IOC_WAIT` on its own file, as a VMM would) and holds whatever
/// it gets until killed, printing `WAITING` and then every event that concerns it.
pub fn waiter(vm: u64) -> Result<()> {
    let m = Manager::open()?;
    m.wait_for_vf(vm, false).with_context(|| format!("VDS_IOC_WAIT for VM {vm}"))?;
    println!("WAITING vm {vm}");
    std::io::stdout().flush()?;
    loop {
        match m.read_events() {
            Ok(evs) => {
                for e in evs.iter().filter(|e| e.vm_id == vm || e.other_vm == vm) {
                    println!("EVENT {} {} vm {} other {}", event_name(e.kind), bdf_name(e.bdf), e.vm_id, e.other_vm);
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => bail!("read events: {e}"),
        }
        std::io::stdout().flush()?;
    }
}

/// Sends Ethernet frames (local experimental ethertype, broadcast) out of `ifname` at about
/// `rate` bytes/s for `secs` seconds; prints the bytes sent.
pub fn send_frames(ifname: &str, rate: u64, secs: f64) -> Result<()> {
    use nix::libc;
    let cname = std::ffi::CString::new(ifname)?;
    // SAFETY: plain libc call; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    Errno::result(fd).context("socket(AF_PACKET)")?;
    // SAFETY: `cname` is a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        bail!("no interface {ifname}");
    }
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_ifindex = ifindex as i32;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let mut frame = vec![0u8; 1000];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    let t0 = Instant::now();
    let end = Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    while t0.elapsed() < end {
        let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
        if sent >= due {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        // SAFETY: `frame` and `sa` are valid for the call.
        let n = unsafe {
            libc::sendto(fd, frame.as_ptr().cast(), frame.len(), 0, (&sa as *const libc::sockaddr_ll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32)
        };
        if n < 0 {
            let e = Errno::last();
            if e == Errno::ENOBUFS || e == Errno::EAGAIN {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            // SAFETY: our fd.
            unsafe { libc::close(fd) };
            bail!("sendto on {ifname}: {e}");
        }
        sent += n as u64;
    }
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    println!("sent {sent} bytes on {ifname} in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
