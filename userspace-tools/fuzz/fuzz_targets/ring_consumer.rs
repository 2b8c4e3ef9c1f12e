//! Fuzzes the ring *consumer*: the [`HostRing`] that the kernel module runs against guest memory
//! it cannot trust, with an honest [`GuestRing`] and a hostile guest writing the shared area
//! between operations.
//!
//! Input layout (every read past the end yields zero, so any input is valid):
//!
//! ```text
//! byte 0     geometry: entries = 1 << (b % 7) (1..=64), entry_size = 32 << ((b >> 3) % 4) (32..=256)
//! byte 1     flags: bit 0 start from a restored state (u32 start index follows),
//!                   bit 1 hostile initial image (frontend line and slot headers follow)
//! ...        operations, one opcode byte each plus operands, until the input ends
//! ```
//!
//! After every backend call the target checks the call against what the shared memory held
//! (a shadow of the backend's indices is kept here): a request is only popped when the producer
//! index is 1..=entries ahead and a response slot is free, its length fits the slot and its bytes
//! are the slot's, a response is written into its own slot and nowhere else, an error is only
//! returned for a real violation, and once failed the backend stays failed. While the guest only
//! acts through the honest [`GuestRing`], neither side may report an error at all.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vd_ring::mem::RawMem;
use vd_ring::*;

/// Input bytes, zero once exhausted.
struct In<'a>(&'a [u8]);
impl In<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        core::array::from_fn(|_| self.u8())
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The ring area: a plain buffer, 8-byte aligned, accessed only through [`RawMem`].
struct Area {
    _buf: Vec<u64>,
    mem: RawMem,
}
impl Area {
    fn new(geo: Geometry) -> Self {
        let mut buf = vec![0u64; geo.total_bytes() / 8];
        // SAFETY: `buf` is 8-byte aligned and `total_bytes` long; its heap block never moves and
        // lives as long as `mem` (both are fields of `Area`, and `buf` is never touched again).
        let mem = unsafe { RawMem::new(buf.as_mut_ptr().cast(), geo.total_bytes()) };
        Self { _buf: buf, mem }
    }
    fn snapshot(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.mem.size()];
        self.mem.read(0, &mut v);
        v
    }
    fn u32_at(&self, off: usize) -> u32 {
        self.mem.load_u32(off)
    }
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Asserts that `before` and `after` differ only inside the given byte ranges.
fn changed_only(before: &[u8], after: &[u8], allowed: &[(usize, usize)], what: &str) {
    assert_eq!(before.len(), after.len());
    // Compare the gaps between the allowed ranges (sorted, disjoint) as whole slices.
    let mut ranges = allowed.to_vec();
    ranges.sort_unstable();
    let mut pos = 0;
    for (s, n) in ranges.into_iter().chain([(before.len(), 0)]) {
        if before[pos..s] != after[pos..s] {
            let i = (pos..s).find(|&i| before[i] != after[i]).unwrap();
            panic!(
                "{what}: wrote byte {i:#x} ({:#04x} -> {:#04x}) outside {allowed:x?}",
                before[i], after[i]
            );
        }
        pos = s + n;
    }
}

/// What the target knows the backend's state must be.
struct Shadow {
    geo: Geometry,
    req_cons: u32,
    rsp_prod: u32,
    rsp_published: u32,
    req_cons_published: u32,
    failed: Option<RingError>,
    /// Requests popped and not answered yet (the caller's contract: one response per request).
    outstanding: u32,
}

/// Mirrors of the checks the backend must make, computed from the memory as it was.
impl Shadow {
    fn entries(&self) -> u32 {
        self.geo.entries()
    }
    /// `Err` with the violation the producer index shows, or the number of pending requests.
    fn pending(&self, req_prod: u32) -> Result<u32, ()> {
        let n = req_prod.wrapping_sub(self.req_cons);
        if n > self.entries() {
            Err(())
        } else {
            Ok(n)
        }
    }
    /// `Err` when `rsp_cons` is invalid, else the free response slots.
    fn room(&self, rsp_cons: u32) -> Result<u32, ()> {
        if self.rsp_published.wrapping_sub(rsp_cons) > self.entries() {
            return Err(());
        }
        Ok(self
            .entries()
            .saturating_sub(self.rsp_prod.wrapping_sub(rsp_cons)))
    }
}

struct Run {
    a: Area,
    be: HostRing,
    fe: GuestRing,
    sh: Shadow,
    /// Nothing but the honest frontend has written the ring: no side may see an error.
    honest: bool,
    last_id: u64,
}

impl Run {
    fn check_state(&self, what: &str) {
        let st = self.be.state();
        assert_eq!(
            st,
            HostRingState {
                req_cons: self.sh.req_cons,
                rsp_prod: self.sh.rsp_prod
            },
            "{what}: indices"
        );
        assert_eq!(self.be.failure(), self.sh.failed, "{what}: failure changed");
        assert_eq!(self.be.geometry(), self.sh.geo, "{what}: geometry");
        // Invariant: never more produced-but-unpublished responses than slots.
        assert!(
            self.sh.rsp_prod.wrapping_sub(self.sh.rsp_published) <= self.sh.entries(),
            "{what}: rsp_prod ran ahead"
        );
        if self.honest {
            assert_eq!(
                self.sh.failed, None,
                "{what}: backend failed an honest ring"
            );
        }
    }

    /// Records a newly failed ring; checks the backend said so in the status word.
    fn note_fail(&mut self, e: RingError, before: &[u8], what: &str) {
        let after = self.a.snapshot();
        if self.sh.failed.is_none() {
            assert_ne!(
                e,
                RingError::Failed,
                "{what}: Failed without an earlier failure"
            );
            self.sh.failed = Some(e);
            assert_eq!(
                self.a.u32_at(OFF_STATUS) & STATUS_FAILED,
                STATUS_FAILED,
                "{what}: status not set"
            );
            changed_only(before, &after, &[(OFF_STATUS, 4)], what);
        } else {
            assert_eq!(e, RingError::Failed, "{what}: failed ring reported {e:?}");
            changed_only(before, &after, &[], what);
        }
    }

    fn pop_request(&mut self, buf_len: usize) -> Option<Request> {
        let geo = self.sh.geo;
        let before = self.a.snapshot();
        let req_prod = le32(&before, OFF_REQ_PROD);
        let rsp_cons = le32(&before, OFF_RSP_CONS);
        let slot = geo.req_slot(self.sh.req_cons);
        const SENTINEL: u8 = 0xa5;
        let mut buf = vec![SENTINEL; buf_len];
        let r = self.be.pop_request(&self.a.mem, &mut buf);
        let what = "pop_request";
        match r {
            Ok(Some(req)) => {
                assert!(self.sh.failed.is_none(), "{what}: served a failed ring");
                let n = self
                    .sh
                    .pending(req_prod)
                    .expect("pop_request: popped past a bad producer index");
                assert!(
                    n >= 1,
                    "pop_request: popped with nothing pending (prod {req_prod:#x} cons {:#x})",
                    self.sh.req_cons
                );
                let room = self
                    .sh
                    .room(rsp_cons)
                    .expect("pop_request: popped with a bad rsp_cons");
                assert!(
                    room > self.sh.outstanding,
                    "pop_request: popped with no unreserved response slot"
                );
                assert!(
                    req.len as usize <= geo.max_payload(),
                    "pop_request: len {} > max_payload",
                    req.len
                );
                assert!(
                    req.len as usize <= buf_len,
                    "pop_request: len beyond the buffer"
                );
                let want = Request {
                    id: le64(&before, slot),
                    op: u16::from_le_bytes([before[slot + 8], before[slot + 9]]),
                    flags: u16::from_le_bytes([before[slot + 10], before[slot + 11]]),
                    len: le32(&before, slot + 12),
                };
                assert_eq!(req, want, "pop_request: header not the slot's");
                let len = req.len as usize;
                assert_eq!(
                    &buf[..len],
                    &before[slot + REQ_HDR..slot + REQ_HDR + len],
                    "pop_request: payload not the slot's"
                );
                assert!(
                    buf[len..].iter().all(|&b| b == SENTINEL),
                    "pop_request: wrote past len into the buffer"
                );
                changed_only(&before, &self.a.snapshot(), &[], what);
                self.sh.req_cons = self.sh.req_cons.wrapping_add(1);
                self.sh.outstanding += 1;
                self.check_state(what);
                Some(req)
            }
            Ok(None) => {
                assert!(
                    self.sh.failed.is_none(),
                    "{what}: Ok(None) from a failed ring"
                );
                let idle = self.sh.pending(req_prod) == Ok(0);
                // Every response slot is taken or reserved by a popped, unanswered request.
                let full = self
                    .sh
                    .room(rsp_cons)
                    .is_ok_and(|r| r <= self.sh.outstanding);
                assert!(
                    idle || (self.sh.pending(req_prod).is_ok() && full),
                    "pop_request: None although a request is pending (prod {req_prod:#x}, rsp_cons {rsp_cons:#x}, {:?})",
                    self.be.state()
                );
                changed_only(&before, &self.a.snapshot(), &[], what);
                self.check_state(what);
                None
            }
            Err(RingError::Full) => {
                // Caller's buffer too small for a valid length: not the guest's fault.
                assert!(self.sh.failed.is_none(), "{what}: Full from a failed ring");
                let len = le32(&before, slot + 12) as usize;
                assert!(
                    buf_len < len && len <= geo.max_payload(),
                    "pop_request: Full for len {len}, buffer {buf_len}"
                );
                assert!(
                    buf.iter().all(|&b| b == SENTINEL),
                    "pop_request: Full but wrote the buffer"
                );
                changed_only(&before, &self.a.snapshot(), &[], what);
                self.check_state(what);
                None
            }
            Err(e) => {
                if self.sh.failed.is_none() {
                    match e {
                        RingError::BadRequestProducer { prod, cons } => {
                            assert_eq!((prod, cons), (req_prod, self.sh.req_cons), "{what}: {e:?}");
                            assert!(
                                self.sh.pending(req_prod).is_err(),
                                "{what}: {e:?} for a valid producer index"
                            );
                        }
                        RingError::BadResponseConsumer { cons, prod } => {
                            assert_eq!(
                                (cons, prod),
                                (rsp_cons, self.sh.rsp_published),
                                "{what}: {e:?}"
                            );
                            assert!(
                                self.sh.room(rsp_cons).is_err(),
                                "{what}: {e:?} for a valid rsp_cons"
                            );
                        }
                        RingError::BadLength { len } => {
                            assert_eq!(len, le32(&before, slot + 12), "{what}: {e:?}");
                            assert!(
                                len as usize > geo.max_payload(),
                                "{what}: {e:?} for a length that fits"
                            );
                        }
                        _ => panic!("{what}: unexpected {e:?}"),
                    }
                }
                assert!(
                    buf.iter().all(|&b| b == SENTINEL),
                    "{what}: error but wrote the buffer"
                );
                self.note_fail(e, &before, what);
                self.check_state(what);
                None
            }
        }
    }

    fn push_response(&mut self, id: u64, status: i32, payload: &[u8]) -> Result<(), RingError> {
        let geo = self.sh.geo;
        let before = self.a.snapshot();
        let rsp_cons = le32(&before, OFF_RSP_CONS);
        let slot = geo.rsp_slot(self.sh.rsp_prod);
        let r = self.be.push_response(&self.a.mem, id, status, payload);
        let what = "push_response";
        match r {
            Ok(()) => {
                assert!(self.sh.failed.is_none(), "{what}: wrote into a failed ring");
                assert!(
                    payload.len() <= geo.max_payload(),
                    "{what}: accepted {} bytes",
                    payload.len()
                );
                let room = self
                    .sh
                    .room(rsp_cons)
                    .expect("push_response: accepted a bad rsp_cons");
                assert!(
                    room >= 1,
                    "push_response: overwrote a response the frontend has not consumed"
                );
                let after = self.a.snapshot();
                let n = RSP_HDR + payload.len();
                changed_only(&before, &after, &[(slot, n)], what);
                assert_eq!(le64(&after, slot), id);
                assert_eq!(le32(&after, slot + 8) as i32, status);
                assert_eq!(le32(&after, slot + 12) as usize, payload.len());
                assert_eq!(&after[slot + RSP_HDR..slot + n], payload);
                self.sh.rsp_prod = self.sh.rsp_prod.wrapping_add(1);
                self.sh.outstanding = self.sh.outstanding.saturating_sub(1);
            }
            Err(RingError::Full) => {
                assert!(self.sh.failed.is_none(), "{what}: Full from a failed ring");
                // No room and no reservation (a push without a pop): the caller's problem.
                assert!(
                    payload.len() > geo.max_payload()
                        || (self.sh.room(rsp_cons) == Ok(0) && self.sh.outstanding == 0),
                    "{what}: Full with room {:?} for {} bytes",
                    self.sh.room(rsp_cons),
                    payload.len()
                );
                changed_only(&before, &self.a.snapshot(), &[], what);
            }
            Err(e) => {
                if self.sh.failed.is_none() {
                    assert!(
                        matches!(e, RingError::BadResponseConsumer { .. }),
                        "{what}: unexpected {e:?}"
                    );
                    // A bad rsp_cons, or one moved back onto the slot a popped request reserved.
                    let stolen = self.sh.room(rsp_cons) == Ok(0) && self.sh.outstanding > 0;
                    assert!(
                        self.sh.room(rsp_cons).is_err() || stolen,
                        "{what}: {e:?} for a valid rsp_cons"
                    );
                }
                self.note_fail(e, &before, what);
            }
        }
        self.check_state(what);
        r
    }

    fn publish(&mut self) {
        let before = self.a.snapshot();
        let event = le32(&before, OFF_RSP_EVENT);
        let (n, notify) = self.be.publish(&self.a.mem);
        let after = self.a.snapshot();
        let what = "publish";
        let mut allowed = vec![];
        if self.sh.req_cons != self.sh.req_cons_published {
            assert_eq!(
                le32(&after, OFF_REQ_CONS),
                self.sh.req_cons,
                "{what}: req_cons"
            );
            self.sh.req_cons_published = self.sh.req_cons;
            allowed.push((OFF_REQ_CONS, 4));
        }
        let (old, new) = (self.sh.rsp_published, self.sh.rsp_prod);
        if self.sh.failed.is_some() || old == new {
            assert_eq!((n, notify), (0, false), "{what}: failed or nothing new");
        } else {
            assert_eq!(n, new.wrapping_sub(old), "{what}: count");
            assert!(n <= self.sh.entries(), "{what}: published more than a ring");
            assert_eq!(notify, need_event(event, new, old), "{what}: notify");
            assert_eq!(le32(&after, OFF_RSP_PROD), new, "{what}: rsp_prod");
            allowed.push((OFF_RSP_PROD, 4));
            self.sh.rsp_published = new;
        }
        changed_only(&before, &after, &allowed, what);
        self.check_state(what);
    }

    fn pending(&mut self) {
        let before = self.a.snapshot();
        let req_prod = le32(&before, OFF_REQ_PROD);
        let r = self.be.pending(&self.a.mem);
        self.check_pending(r, req_prod, &before, "pending");
        self.check_state("pending");
    }

    fn check_pending(
        &mut self,
        r: Result<u32, RingError>,
        req_prod: u32,
        before: &[u8],
        what: &str,
    ) {
        match r {
            Ok(n) => {
                assert!(self.sh.failed.is_none(), "{what}: Ok from a failed ring");
                assert_eq!(Ok(n), self.sh.pending(req_prod), "{what}: count");
            }
            Err(e) => {
                if self.sh.failed.is_none() {
                    assert_eq!(
                        e,
                        RingError::BadRequestProducer {
                            prod: req_prod,
                            cons: self.sh.req_cons
                        },
                        "{what}"
                    );
                    assert!(
                        self.sh.pending(req_prod).is_err(),
                        "{what}: {e:?} for a valid producer index"
                    );
                }
                self.note_fail(e, before, what);
            }
        }
    }

    fn enable_kicks(&mut self) {
        let before = self.a.snapshot();
        let req_prod = le32(&before, OFF_REQ_PROD);
        let was_failed = self.sh.failed.is_some();
        let r = self.be.enable_kicks(&self.a.mem);
        let what = "enable_kicks";
        if was_failed {
            assert_eq!(r, Err(RingError::Failed), "{what}: on a failed ring");
            changed_only(&before, &self.a.snapshot(), &[], what);
        } else {
            assert_eq!(
                self.a.u32_at(OFF_REQ_EVENT),
                self.sh.req_cons,
                "{what}: req_event"
            );
            // The event index write is legitimate; judge the rest against memory with it applied.
            let mut mid = before.clone();
            mid[OFF_REQ_EVENT..OFF_REQ_EVENT + 4].copy_from_slice(&self.sh.req_cons.to_le_bytes());
            let rsp_cons = le32(&before, OFF_RSP_CONS);
            // "Poll again" only for a pending request that has an unreserved response slot.
            match (r, self.sh.pending(req_prod)) {
                (Ok(more), Ok(0)) => {
                    assert!(!more, "{what}: poll again with nothing pending");
                    changed_only(&mid, &self.a.snapshot(), &[], what);
                }
                (Ok(more), Ok(_)) => {
                    let room = self
                        .sh
                        .room(rsp_cons)
                        .expect("enable_kicks: accepted a bad rsp_cons");
                    assert_eq!(
                        more,
                        room > self.sh.outstanding,
                        "{what}: result with room {room}"
                    );
                    changed_only(&mid, &self.a.snapshot(), &[], what);
                }
                (Err(e @ RingError::BadResponseConsumer { .. }), Ok(n)) => {
                    assert!(
                        n > 0 && self.sh.room(rsp_cons).is_err(),
                        "{what}: {e:?} for a valid rsp_cons"
                    );
                    self.note_fail(e, &mid, what);
                }
                (r, _) => self.check_pending(r.map(|_| 0), req_prod, &mid, what),
            }
        }
        self.check_state(what);
    }

    /// The kernel's serve step: pop, answer at once, as `vd_evtchn` does.
    fn serve_one(&mut self) {
        let max = self.sh.geo.max_payload();
        let Some(req) = self.pop_request(max) else {
            return;
        };
        // Echo back what the slot held (re-read: the buffer was local to pop_request).
        let slot = self.sh.geo.req_slot(self.sh.req_cons.wrapping_sub(1));
        let mut payload = vec![0u8; req.len as usize];
        self.a.mem.read(slot + REQ_HDR, &mut payload);
        // Nothing touched the ring between the two calls: the room pop_request saw is still there
        // (`vd_evtchn` relies on this: it treats a failure here as the guest's doing).
        assert_eq!(
            self.push_response(req.id, 0, &payload),
            Ok(()),
            "serve: push_response right after pop_request"
        );
    }

    /// A hostile guest write of `v` at `off` (in bounds, 4-aligned).
    fn guest_write(&mut self, off: usize, v: u32) {
        self.honest = false;
        let off = (off % self.a.mem.size()) & !3;
        self.a.mem.store_u32(off, v);
    }

    fn frontend_op(&mut self, inp: &mut In, which: u8) {
        let m = &self.a.mem;
        match which % 5 {
            0 => {
                let len = inp.u8() as usize % (self.sh.geo.max_payload() + 1);
                let payload: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
                self.last_id = self.last_id.wrapping_add(1);
                let r = self.fe.push_request(m, self.last_id, op::ECHO, &payload);
                if r.is_ok() && inp.u8() & 1 == 1 {
                    self.fe.publish(m);
                }
            }
            1 => {
                self.fe.publish(m);
            }
            2 => {
                let mut buf = vec![0u8; self.sh.geo.max_payload()];
                let r = self.fe.pop_response(m, &mut buf);
                match r {
                    Ok(Some(rsp)) => assert!(
                        rsp.len as usize <= self.sh.geo.max_payload(),
                        "pop_response: len"
                    ),
                    Ok(None) => {}
                    Err(e) => assert!(!self.honest, "frontend saw {e:?} from an honest backend"),
                }
            }
            3 => {
                self.fe.enable_irq(m);
            }
            _ => {
                self.fe.disable_irq(m);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = In(data);
    let g = inp.u8();
    let geo = Geometry::new(1 << (g % 7), 32 << ((g >> 3) % 4))
        .expect("geometry from the table is valid");
    let a = Area::new(geo);
    init_ring(&a.mem, geo, 1);
    let flags = inp.u8();
    let start = if flags & 1 != 0 { inp.u32() } else { 0 };
    // A restored ring: every index at `start`, as after save/restore of a long-running channel.
    for off in [
        OFF_REQ_PROD,
        OFF_RSP_CONS,
        OFF_RSP_EVENT,
        OFF_RSP_PROD,
        OFF_REQ_CONS,
        OFF_REQ_EVENT,
    ] {
        a.mem.store_u32(off, start);
    }
    let fe = GuestRing::attach(&a.mem).expect("attach to a freshly initialised ring");
    let be = HostRing::new(
        geo,
        HostRingState {
            req_cons: start,
            rsp_prod: start,
        },
    );
    let sh = Shadow {
        geo,
        req_cons: start,
        rsp_prod: start,
        rsp_published: start,
        req_cons_published: start,
        failed: None,
        outstanding: 0,
    };
    let mut run = Run {
        a,
        be,
        fe,
        sh,
        honest: true,
        last_id: 0,
    };

    if flags & 2 != 0 {
        // Hostile initial image: the frontend line, then some slot headers.
        run.honest = false;
        let m = &run.a.mem;
        m.store_u32(OFF_REQ_PROD, start.wrapping_add(inp.u32()));
        m.store_u32(OFF_RSP_CONS, start.wrapping_add(inp.u32()));
        m.store_u32(OFF_RSP_EVENT, inp.u32());
        for _ in 0..inp.u8() % 8 {
            let slot = geo.req_slot(inp.u8().into());
            m.write(slot, &inp.bytes::<REQ_HDR>());
        }
    }

    let mut ops = 0;
    while !inp.is_empty() && ops < 2048 {
        ops += 1;
        let opc = inp.u8();
        match opc % 12 {
            0 => {
                let b = inp.u8();
                // Mostly a full-size buffer; sometimes a short one (the Full path).
                let len = if b & 0xf == 0 {
                    inp.u8() as usize % geo.max_payload()
                } else {
                    geo.max_payload()
                };
                run.pop_request(len);
            }
            1 => {
                // Only after a pop (the API contract), with an arbitrary length (maybe too large).
                if run.sh.outstanding > 0 {
                    let len = inp.u16() as usize % (geo.entry_size() as usize + 8);
                    let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
                    let id = inp.u64();
                    let status = inp.u32() as i32;
                    let _ = run.push_response(id, status, &payload);
                }
            }
            2 => run.serve_one(),
            3 => run.publish(),
            4 => run.enable_kicks(),
            5 => run.pending(),
            6 => {
                // Guest writes a frontend-line index near the backend's view, or anything.
                let sel = inp.u8();
                let off = [OFF_REQ_PROD, OFF_RSP_CONS, OFF_RSP_EVENT][sel as usize % 3];
                let base = if off == OFF_REQ_PROD {
                    run.sh.req_cons
                } else {
                    run.sh.rsp_published
                };
                let v = if sel & 0x80 != 0 {
                    inp.u32()
                } else {
                    base.wrapping_add(inp.u8() as i8 as u32)
                };
                run.guest_write(off, v);
            }
            7 => {
                // Guest rewrites a request slot's length (a TOCTOU attempt) or other header word.
                let slot = geo.req_slot(inp.u8().into());
                let word = [12, 12, 0, 4, 8][inp.u8() as usize % 5];
                let v = if inp.u8() & 1 == 0 {
                    inp.u16() as u32
                } else {
                    inp.u32()
                };
                run.guest_write(slot + word, v);
            }
            8 => {
                // Anywhere in the area.
                let off = inp.u32() as usize;
                let v = inp.u32();
                run.guest_write(off, v);
            }
            _ => {
                let which = inp.u8();
                run.frontend_op(&mut inp, which);
            }
        }
    }
    // Once failed, every entry point keeps refusing.
    if run.sh.failed.is_some() {
        let mut buf = vec![0u8; geo.max_payload()];
        assert_eq!(
            run.be.pop_request(&run.a.mem, &mut buf),
            Err(RingError::Failed)
        );
        assert_eq!(
            run.be.push_response(&run.a.mem, 0, 0, &[]),
            Err(RingError::Failed)
        );
        assert_eq!(run.be.pending(&run.a.mem), Err(RingError::Failed));
        assert_eq!(run.be.enable_kicks(&run.a.mem), Err(RingError::Failed));
        assert_eq!(run.be.publish(&run.a.mem), (0, false));
        assert_eq!(run.be.failure(), run.sh.failed);
    }
});
