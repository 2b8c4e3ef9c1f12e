//! The input layouts of `vd-itest fake-ivshmem` (issue 13, 88-guest-input-fake): the fake server
//! plays the host's `vd_input_irq` by itself, producing into the SPEC-13 event ring it lays out
//! in the shared memory of one ivshmem-doorbell device, so that the guest's `vd_front` input side
//! is tested without the host module.
//!
//! Each input client gets a producer thread that waits for a *go* (SIGUSR1 to the server, sent
//! when the guest's reader is ready) before each phase:
//! - `input`: phase 1 produces [`FRAMES`] frames (keys with their scan codes, buttons, relative
//!   and absolute motion) and the end marker (KEY_F12 pressed, released) through a
//!   [`ENTRIES`]-slot ring: while the ring has room it writes, publishing `rsp_prod` at each frame
//!   end and when the ring is full, and signals MSI-X vector 0's eventfd iff
//!   `need_event(rsp_event, new, old)`; on a full ring it sets `req_event = rsp_cons` and waits
//!   for the guest's doorbell (the kick eventfd). It prints `FAKEINPUT` with the summary of what
//!   it produced in the guest reader's format (scripts/guest-input.sh) and the kick and
//!   interrupt counts. Phase 2 reports the final indices.
//! - `input-broken`: phase 1 as above with [`BROKEN_FRAMES`] frames; phase 2 breaks the ring
//!   (`rsp_prod` `entries + 100` ahead of `rsp_cons`; `input-badlen`: one published slot whose
//!   `len` is 15) and signals the interrupt; phase 3 puts a
//!   consistent `rsp_prod` back with [`AFTER_EVENTS`] valid events and signals again (the guest
//!   must consume none of them); phase 4 reports the final indices (`rsp_cons` must still be
//!   where phase 2 found it).

use crate::input::Summary;
use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use vd_ring::{
    need_event, Geometry, RingMem, OFF_REQ_EVENT, OFF_RSP_CONS, OFF_RSP_EVENT, OFF_RSP_PROD,
    RSP_HDR,
};
use vd_sys::evtchn::RingMap;
use vd_testkit::uinput::Ev;

/// Slots of the fake's event ring: small, so that the sequence wraps it many times and the
/// full-ring kick path runs.
pub const ENTRIES: u32 = 16;
/// Slot size (SPEC-13: `VDI_ENTRY_SIZE`).
pub const SLOT: u32 = 32;
/// Frames of the `input` layout's phase 1.
pub const FRAMES: usize = 200;
/// Frames of the `input-broken` layout's phase 1.
pub const BROKEN_FRAMES: usize = 20;
/// Valid events published after the ring was broken.
pub const AFTER_EVENTS: u32 = 6;
/// How long the producer waits for a doorbell on a full ring.
const KICK_WAIT: Duration = Duration::from_secs(60);

const EV_SYN: u16 = 0;
const EV_KEY: u16 = 1;
const EV_REL: u16 = 2;
const EV_ABS: u16 = 3;
const EV_MSC: u16 = 4;
const SYN_REPORT: u16 = 0;
const MSC_SCAN: u16 = 4;
const BTN_LEFT: u16 = 0x110;
const KEY_F12: u16 = 88;

/// The ring's geometry.
pub fn geometry() -> Geometry {
    match Geometry::new(ENTRIES, SLOT) {
        Ok(g) => g,
        Err(_) => unreachable!("16 x 32 is a valid ring geometry"),
    }
}

/// The events of `frames` frames and the end marker: frame `i` by `i % 5` is a key press (with
/// its scan code first), the release of that key, relative motion (never zero), absolute motion
/// (a new position every time) or a BTN_LEFT press/release. Everything passes the input core's
/// filters, so the guest's evdev sees every event.
pub fn sequence(frames: usize) -> Vec<Ev> {
    let mut v = vec![];
    let mut btn = 0;
    for i in 0..frames {
        let key = 2 + ((i / 5) % 80) as u16;
        let key = if key == KEY_F12 { 1 } else { key };
        match i % 5 {
            0 | 1 => {
                v.push((EV_MSC, MSC_SCAN, 0x70000 + i32::from(key)));
                v.push((EV_KEY, key, i32::from(i % 5 == 0)));
            }
            2 => {
                v.push((EV_REL, 0, 1 + (i % 7) as i32));
                v.push((EV_REL, 1, -1 - (i % 3) as i32));
            }
            3 => {
                v.push((EV_ABS, 0, ((i * 37 + 1) % 32768) as i32));
                v.push((EV_ABS, 1, ((i * 91 + 5) % 32768) as i32));
            }
            _ => {
                btn ^= 1;
                v.push((EV_KEY, BTN_LEFT, btn));
            }
        }
        v.push((EV_SYN, SYN_REPORT, 0));
    }
    if btn == 1 {
        v.push((EV_KEY, BTN_LEFT, 0));
        v.push((EV_SYN, SYN_REPORT, 0));
    }
    for value in [1, 0] {
        v.push((EV_KEY, KEY_F12, value));
        v.push((EV_SYN, SYN_REPORT, 0));
    }
    v
}

/// What a client's producer does (its layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `input`: one long phase.
    Normal,
    /// `input-broken`: `rsp_prod` far ahead.
    BrokenProd,
    /// `input-badlen`: a slot of length 15.
    BrokenLen,
}

/// The host side of one event ring.
struct Producer<'a> {
    mem: vd_ring::mem::RawMem,
    geo: Geometry,
    kick: &'a OwnedFd,
    call: &'a OwnedFd,
    prod: u32,
    published: u32,
    seq: u64,
    kicks: u64,
    irqs: u64,
}

impl Producer<'_> {
    fn signal(&mut self) -> Result<()> {
        nix::unistd::write(self.call, &1u64.to_ne_bytes()).context("signal the call eventfd")?;
        self.irqs += 1;
        Ok(())
    }
    /// Publishes what was written; interrupts the guest iff it asked.
    fn publish(&mut self) -> Result<()> {
        let (old, new) = (self.published, self.prod);
        if old == new {
            return Ok(());
        }
        self.mem.store_release_u32(OFF_RSP_PROD, new);
        self.published = new;
        self.mem.fence();
        if need_event(self.mem.load_u32(OFF_RSP_EVENT), new, old) {
            self.signal()?;
        }
        Ok(())
    }
    fn write(&mut self, ev: Ev) {
        self.write_len(ev, 16);
    }
    fn write_len(&mut self, (ty, code, value): Ev, len: u32) {
        let mut b = [0u8; RSP_HDR + 16];
        b[..8].copy_from_slice(&self.seq.to_le_bytes());
        b[12..16].copy_from_slice(&len.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..26].copy_from_slice(&ty.to_le_bytes());
        b[26..28].copy_from_slice(&code.to_le_bytes());
        b[28..32].copy_from_slice(&value.to_le_bytes());
        self.mem.write(self.geo.rsp_slot(self.prod), &b);
        self.prod = self.prod.wrapping_add(1);
        self.seq += 1;
    }
    /// Free slots, or an error if the guest's `rsp_cons` is impossible.
    fn room(&self) -> Result<u32> {
        let cons = self.mem.load_acquire_u32(OFF_RSP_CONS);
        let used = self.published.wrapping_sub(cons);
        if used > self.geo.entries() {
            bail!(
                "the guest's rsp_cons {cons} is not within a ring of rsp_prod {}",
                self.published
            );
        }
        Ok(self.geo.entries() - self.prod.wrapping_sub(cons))
    }
    /// Waits for the guest's doorbell (the ring is full and `req_event` asks for it).
    fn wait_kick(&mut self) -> Result<()> {
        let deadline = Instant::now() + KICK_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "no doorbell from the guest within {KICK_WAIT:?} (ring full: rsp_prod {}, \
                     rsp_cons {})",
                    self.prod,
                    self.mem.load_u32(OFF_RSP_CONS)
                );
            }
            let mut fds = [PollFd::new(self.kick.as_fd(), PollFlags::POLLIN)];
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => bail!("poll the kick eventfd: {e}"),
            }
            let mut v = [0u8; 8];
            match nix::unistd::read(self.kick.as_raw_fd(), &mut v) {
                Ok(8) => {
                    self.kicks += 1;
                    return Ok(());
                }
                Ok(_) | Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => bail!("read the kick eventfd: {e}"),
            }
        }
    }
    /// Produces `evs` through the ring (see the module documentation).
    fn produce(&mut self, evs: &[Ev]) -> Result<()> {
        let mut i = 0;
        while i < evs.len() {
            let room = self.room()?;
            if room == 0 {
                self.publish()?;
                let cons = self.mem.load_acquire_u32(OFF_RSP_CONS);
                self.mem.store_u32(OFF_REQ_EVENT, cons);
                self.mem.fence();
                if self.mem.load_acquire_u32(OFF_RSP_CONS) == cons {
                    self.wait_kick()?;
                }
                continue;
            }
            self.write(evs[i]);
            let end_of_frame = evs[i].0 == EV_SYN;
            i += 1;
            if end_of_frame || room == 1 || i == evs.len() {
                self.publish()?;
            }
        }
        // No kick wanted any more.
        let cons = self.mem.load_u32(OFF_RSP_CONS);
        self.mem
            .store_u32(OFF_REQ_EVENT, cons.wrapping_add(0x8000_0000));
        Ok(())
    }
}

/// One input client's producer thread: `broken` selects the `input-broken` phases; `go`
/// delivers each phase's go; `emit` prints a line.
pub fn run(
    client: u16,
    mode: Mode,
    shm: OwnedFd,
    kick: OwnedFd,
    call: OwnedFd,
    go: Receiver<()>,
    emit: impl Fn(String),
) {
    if let Err(e) = phases(client, mode, &shm, &kick, &call, &go, &emit) {
        emit(format!("FAKEINPUT client {client} error: {e:#}"));
    }
}

fn phases(
    client: u16,
    mode: Mode,
    shm: &OwnedFd,
    kick: &OwnedFd,
    call: &OwnedFd,
    go: &Receiver<()>,
    emit: &impl Fn(String),
) -> Result<()> {
    let geo = geometry();
    let map = RingMap::new(shm.as_fd(), 0, geo.total_bytes()).context("mmap the shm")?;
    let mut p = Producer {
        mem: map.mem(),
        geo,
        kick,
        call,
        prod: 0,
        published: 0,
        seq: 0,
        kicks: 0,
        irqs: 0,
    };
    let wait_go = || go.recv().context("the server stopped");
    wait_go()?;
    let broken = mode != Mode::Normal;
    let evs = sequence(if broken { BROKEN_FRAMES } else { FRAMES });
    let started = Instant::now();
    p.produce(&evs)?;
    let mut sum = Summary::default();
    for e in &evs {
        sum.add(*e);
    }
    emit(format!(
        "FAKEINPUT client {client} phase 1: {} events ({} slots of the {}-slot ring, {} wraps) \
         in {:.1?}, {} doorbells, {} interrupts: {}",
        evs.len(),
        evs.len(),
        geo.entries(),
        evs.len() / geo.entries() as usize,
        started.elapsed(),
        p.kicks,
        p.irqs,
        sum.line()
    ));
    let idx = |p: &Producer<'_>| {
        format!(
            "rsp_prod={} rsp_cons={}",
            p.mem.load_u32(OFF_RSP_PROD),
            p.mem.load_u32(OFF_RSP_CONS)
        )
    };
    if broken {
        wait_go()?;
        let cons = p.mem.load_acquire_u32(OFF_RSP_CONS);
        let what = if mode == Mode::BrokenLen {
            p.write_len((EV_KEY, 30, 1), 15);
            p.mem.store_release_u32(OFF_RSP_PROD, p.prod);
            p.published = p.prod;
            format!("slot {cons} with len 15, rsp_prod {}", p.prod)
        } else {
            let bad = cons.wrapping_add(geo.entries() + 100);
            p.mem.store_release_u32(OFF_RSP_PROD, bad);
            format!("rsp_prod {bad}")
        };
        p.signal()?;
        emit(format!(
            "FAKEINPUT client {client} phase 2: ring broken ({what}, rsp_cons {cons}), \
             interrupt signalled: BROKEN_AT rsp_cons={cons}"
        ));
        wait_go()?;
        // Consistent again: AFTER_EVENTS valid key events after what the guest consumed.
        p.prod = cons;
        p.published = cons;
        for i in 0..AFTER_EVENTS {
            p.write((EV_KEY, 30, i32::from(i % 2 == 0)));
        }
        p.mem.store_release_u32(OFF_RSP_PROD, p.prod);
        p.published = p.prod;
        p.signal()?;
        emit(format!(
            "FAKEINPUT client {client} phase 3: {AFTER_EVENTS} valid events published after the \
             break, interrupt signalled ({})",
            idx(&p)
        ));
    }
    wait_go()?;
    emit(format!("FAKEINPUT client {client} final: {}", idx(&p)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequence passes the input core's filters: keys alternate press/release per code,
    /// relative values are never zero, absolute values change between frames, frames end with
    /// SYN_REPORT, and it ends with the guest reader's end marker.
    #[test]
    fn the_sequence_is_what_evdev_passes_on() {
        let v = sequence(FRAMES);
        assert!(
            v.len() > 3 * ENTRIES as usize * 10,
            "wraps the ring many times"
        );
        let mut down = std::collections::HashMap::new();
        let (mut ax, mut ay) = (-1, -1);
        for &(t, c, val) in &v {
            match t {
                EV_KEY => {
                    let d = down.entry(c).or_insert(0);
                    assert_ne!(*d, val, "key {c} repeats value {val}");
                    *d = val;
                }
                EV_REL => assert_ne!(val, 0),
                EV_ABS if c == 0 => {
                    assert_ne!(val, ax);
                    ax = val;
                }
                EV_ABS => {
                    assert_ne!(val, ay);
                    ay = val;
                }
                _ => {}
            }
        }
        assert!(
            down.values().all(|&d| d == 0),
            "every key released at the end"
        );
        assert_eq!(v[v.len() - 2], (EV_KEY, KEY_F12, 0));
        assert_eq!(v[v.len() - 1], (EV_SYN, SYN_REPORT, 0));
    }

    /// The producer against a guest stand-in that consumes in this thread: every event once, in
    /// order, through the wrap; a full ring asks for a kick.
    #[test]
    fn the_producer_fills_wraps_and_asks_for_kicks() {
        let geo = geometry();
        let mut buf = vec![0u32; geo.total_bytes() / 4];
        // SAFETY: `buf` is a live, 4-byte aligned buffer of the ring's size for the whole test.
        let mem = unsafe { vd_ring::mem::RawMem::new(buf.as_mut_ptr().cast(), geo.total_bytes()) };
        vd_ring::init_ring(&mem, geo, 1);
        let efd = || -> OwnedFd {
            nix::sys::eventfd::EventFd::from_value_and_flags(
                0,
                nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
            )
            .unwrap()
            .into()
        };
        let (kick, call) = (efd(), efd());
        let evs = sequence(FRAMES);
        let mut p = Producer {
            mem,
            geo,
            kick: &kick,
            call: &call,
            prod: 0,
            published: 0,
            seq: 0,
            kicks: 0,
            irqs: 0,
        };
        // The first ring's worth, no more: nobody consumes.
        for e in &evs[..ENTRIES as usize] {
            p.write(*e);
        }
        p.publish().unwrap();
        assert_eq!(p.mem.load_u32(OFF_RSP_PROD), ENTRIES);
        assert_eq!(p.room().unwrap(), 0);
        // The guest (rsp_event 0) asked for an interrupt at the first event.
        assert_eq!(p.irqs, 1);
        // A guest claiming to have consumed more than was produced is caught.
        p.mem.store_u32(OFF_RSP_CONS, ENTRIES + 1);
        assert!(p.room().is_err());
    }
}
