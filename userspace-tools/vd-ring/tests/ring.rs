//! The ring driven from both sides in plain memory, including a hostile frontend
//! (the `virtio-queue` mock approach).

use vd_ring::mem::RawMem;
use vd_ring::*;

/// A page-aligned ring area owned by the test.
struct Area {
    buf: Vec<u64>,
    mem: RawMem,
}
impl Area {
    fn new(geo: Geometry) -> Self {
        let mut buf = vec![0u64; geo.total_bytes() / 8];
        // SAFETY: `buf` is 8-byte aligned, `total_bytes` long, and lives as long as `mem`
        // (both in `Area`; the Vec's heap buffer never moves).
        let mem = unsafe { RawMem::new(buf.as_mut_ptr().cast(), geo.total_bytes()) };
        init_ring(&mem, geo, 1);
        Self { buf, mem }
    }
}

fn pair(entries: u32, esz: u32) -> (Area, HostRing, GuestRing) {
    let geo = Geometry::new(entries, esz).unwrap();
    let a = Area::new(geo);
    let be = HostRing::new(geo, HostRingState::default());
    let fe = GuestRing::attach(&a.mem).unwrap();
    let _ = a.buf.len();
    (a, be, fe)
}

/// A frontend that ignores the in-flight limit: writes an empty echo request into slot `idx` and
/// publishes `req_prod = idx + 1` behind the honest `GuestRing`'s back.
fn push_raw(a: &Area, geo: Geometry, idx: u32, id: u64) {
    let slot = geo.req_slot(idx);
    a.mem.write(slot, &id.to_le_bytes());
    a.mem
        .write(slot + 8, &[op::ECHO as u8, 0, 0, 0, 0, 0, 0, 0]);
    a.mem.store_release_u32(OFF_REQ_PROD, idx + 1);
}

fn echo_all(a: &Area, be: &mut HostRing) -> (u32, bool) {
    let mut buf = vec![0u8; be.geometry().max_payload()];
    while let Some(req) = be.pop_request(&a.mem, &mut buf).unwrap() {
        be.push_response(&a.mem, req.id, 0, &buf[..req.len as usize])
            .unwrap();
    }
    be.publish(&a.mem)
}

#[test]
fn geometry_validation() {
    assert!(Geometry::new(0, 64).is_err());
    assert!(Geometry::new(3, 64).is_err());
    assert!(Geometry::new(8192, 64).is_err());
    assert!(Geometry::new(64, 16).is_err());
    assert!(Geometry::new(64, 48).is_err());
    assert!(Geometry::new(64, 8192).is_err());
    assert!(
        Geometry::new(4096, 4096).is_err(),
        "16 MiB array must be refused"
    );
    let g = Geometry::new(4096, 256).unwrap();
    assert_eq!(g.array_bytes(), 1 << 20);
    assert_eq!(g.total_bytes(), 4096 + (2 << 20));
    let g = Geometry::new(1, 32).unwrap();
    assert_eq!(g.total_bytes(), 3 * 4096);
    assert_eq!(g.req_slot(5), 4096);
}

#[test]
fn need_event_rule() {
    // Peer asked for index 5: crossing it from 4 to 6 notifies, 5->6 does not, 3->5 notifies.
    assert!(need_event(4, 5, 4));
    assert!(need_event(5, 6, 4));
    assert!(!need_event(5, 7, 6));
    assert!(!need_event(5, 5, 4), "entry 5 not published yet");
    // Wrap-around.
    assert!(need_event(u32::MAX, 1, u32::MAX - 1));
    assert!(!need_event(u32::MAX - 10, 1, u32::MAX - 1));
}

#[test]
fn round_trip_and_wraparound() {
    let (a, mut be, mut fe) = pair(8, 64);
    let mut got = vec![];
    let mut buf = [0u8; 48];
    for round in 0..100u64 {
        for i in 0..5u64 {
            let id = round * 5 + i;
            fe.push_request(&a.mem, id, op::ECHO, &id.to_le_bytes())
                .unwrap();
        }
        fe.publish(&a.mem);
        echo_all(&a, &mut be);
        while let Some(r) = fe.pop_response(&a.mem, &mut buf).unwrap() {
            assert_eq!(r.len, 8);
            assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), r.id);
            got.push(r.id);
        }
    }
    assert_eq!(got, (0..500).collect::<Vec<_>>());
}

#[test]
fn indices_wrap_u32() {
    let geo = Geometry::new(4, 32).unwrap();
    let a = Area::new(geo);
    let start = u32::MAX - 2;
    for off in [OFF_REQ_PROD, OFF_RSP_CONS, OFF_RSP_PROD, OFF_REQ_CONS] {
        a.mem.store_u32(off, start);
    }
    let mut be = HostRing::new(
        geo,
        HostRingState {
            req_cons: start,
            rsp_prod: start,
        },
    );
    let mut fe = GuestRing::attach(&a.mem).unwrap();
    let mut buf = [0u8; 16];
    for id in 0..20u64 {
        fe.push_request(&a.mem, id, op::ECHO, &[id as u8]).unwrap();
        fe.publish(&a.mem);
        echo_all(&a, &mut be);
        let r = fe.pop_response(&a.mem, &mut buf).unwrap().unwrap();
        assert_eq!((r.id, buf[0]), (id, id as u8));
    }
    assert!(be.state().req_cons < 100, "index wrapped past zero");
}

#[test]
fn kick_suppression_batches() {
    let (a, mut be, mut fe) = pair(64, 64);
    // First publish kicks (backend asked for index 0 at init).
    fe.push_request(&a.mem, 0, op::ECHO, &[]).unwrap();
    assert!(fe.publish(&a.mem));
    // Backend busy: further publishes are suppressed.
    for id in 1..10 {
        fe.push_request(&a.mem, id, op::ECHO, &[]).unwrap();
        assert!(
            !fe.publish(&a.mem),
            "kick {id} should be suppressed while the backend works"
        );
    }
    echo_all(&a, &mut be);
    // Backend re-arms with nothing pending: next publish kicks again.
    assert!(!be.enable_kicks(&a.mem).unwrap());
    fe.push_request(&a.mem, 10, op::ECHO, &[]).unwrap();
    assert!(fe.publish(&a.mem));
    // Re-arming while a request is pending tells the backend to poll again.
    assert!(be.enable_kicks(&a.mem).unwrap());
}

#[test]
fn irq_suppression() {
    let (a, mut be, mut fe) = pair(16, 64);
    let mut buf = [0u8; 48];
    fe.push_request(&a.mem, 1, op::ECHO, &[]).unwrap();
    fe.publish(&a.mem);
    let (n, notify) = echo_all(&a, &mut be);
    assert_eq!(
        (n, notify),
        (1, true),
        "initial rsp_event 0 asks for the first response"
    );
    fe.pop_response(&a.mem, &mut buf).unwrap().unwrap();
    // Frontend polling (irq disabled): no interrupt.
    fe.disable_irq(&a.mem);
    fe.push_request(&a.mem, 2, op::ECHO, &[]).unwrap();
    fe.publish(&a.mem);
    assert_eq!(echo_all(&a, &mut be), (1, false));
    fe.pop_response(&a.mem, &mut buf).unwrap().unwrap();
    // Re-armed: interrupt again.
    assert!(!fe.enable_irq(&a.mem));
    fe.push_request(&a.mem, 3, op::ECHO, &[]).unwrap();
    fe.publish(&a.mem);
    assert_eq!(echo_all(&a, &mut be), (1, true));
}

#[test]
fn backpressure_when_responses_not_consumed() {
    let (a, mut be, mut fe) = pair(4, 32);
    for id in 0..4 {
        fe.push_request(&a.mem, id, op::ECHO, &[]).unwrap();
    }
    fe.publish(&a.mem);
    assert_eq!(echo_all(&a, &mut be).0, 4);
    // The backend freed the request slots, but the four answers are not consumed: the honest
    // frontend holds back (at most `entries` requests in flight).
    assert_eq!(fe.free_slots(&a.mem), 0);
    assert_eq!(
        fe.push_request(&a.mem, 4, op::ECHO, &[]),
        Err(RingError::Full)
    );
    // A frontend that pushes anyway: the backend neither serves nor spins on the requests it
    // cannot answer, and does not fail the ring for it.
    let geo = be.geometry();
    for id in 4..8 {
        push_raw(&a, geo, id as u32, id);
    }
    let mut buf = [0u8; 16];
    assert_eq!(be.pop_request(&a.mem, &mut buf).unwrap(), None);
    assert!(
        !be.enable_kicks(&a.mem).unwrap(),
        "no room: sleep, do not poll again"
    );
    assert!(be.failure().is_none());
    fe.pop_response(&a.mem, &mut buf).unwrap().unwrap();
    assert!(be.enable_kicks(&a.mem).unwrap(), "room again: poll");
    assert!(be.pop_request(&a.mem, &mut buf).unwrap().is_some());
}

#[test]
fn hostile_producer_index_fails_ring() {
    let (a, mut be, _fe) = pair(8, 64);
    a.mem.store_u32(OFF_REQ_PROD, 9);
    let mut buf = [0u8; 48];
    assert_eq!(
        be.pop_request(&a.mem, &mut buf),
        Err(RingError::BadRequestProducer { prod: 9, cons: 0 })
    );
    assert_eq!(a.mem.load_u32(OFF_STATUS) & STATUS_FAILED, STATUS_FAILED);
    // Stays failed even if the guest repairs the index: never trusted again.
    a.mem.store_u32(OFF_REQ_PROD, 1);
    assert_eq!(be.pop_request(&a.mem, &mut buf), Err(RingError::Failed));
    assert_eq!(be.publish(&a.mem), (0, false));
}

#[test]
fn hostile_length_fails_ring() {
    let (a, mut be, mut fe) = pair(8, 64);
    fe.push_request(&a.mem, 7, op::ECHO, &[1, 2, 3]).unwrap();
    fe.publish(&a.mem);
    // Guest rewrites the length after publishing.
    let slot = be.geometry().req_slot(0);
    a.mem.write(slot + 12, &49u32.to_le_bytes());
    let mut buf = [0u8; 48];
    assert_eq!(
        be.pop_request(&a.mem, &mut buf),
        Err(RingError::BadLength { len: 49 })
    );
    assert_eq!(be.failure(), Some(RingError::BadLength { len: 49 }));
}

#[test]
fn hostile_response_consumer_fails_ring() {
    let (a, mut be, mut fe) = pair(8, 64);
    fe.push_request(&a.mem, 7, op::ECHO, &[]).unwrap();
    fe.publish(&a.mem);
    a.mem.store_u32(OFF_RSP_CONS, 1000);
    let mut buf = [0u8; 48];
    assert!(matches!(
        be.pop_request(&a.mem, &mut buf),
        Err(RingError::BadResponseConsumer { .. })
    ));
}

#[test]
fn frontend_rejects_bad_header() {
    let geo = Geometry::new(8, 64).unwrap();
    let a = Area::new(geo);
    a.mem.store_u32(OFF_ENTRIES, 7);
    assert_eq!(GuestRing::attach(&a.mem).err(), Some(RingError::BadHeader));
    a.mem.store_u32(OFF_ENTRIES, 8);
    a.mem.store_u32(OFF_MAGIC, 0);
    assert_eq!(GuestRing::attach(&a.mem).err(), Some(RingError::BadHeader));
}

#[test]
fn restore_continues_in_flight() {
    let (a, mut be, mut fe) = pair(8, 64);
    for id in 0..6 {
        fe.push_request(&a.mem, id, op::ECHO, &[]).unwrap();
    }
    fe.publish(&a.mem);
    let mut buf = [0u8; 48];
    for _ in 0..3 {
        let r = be.pop_request(&a.mem, &mut buf).unwrap().unwrap();
        be.push_response(&a.mem, r.id, 0, &[]).unwrap();
    }
    be.publish(&a.mem);
    // "Migrate": a new backend from the saved state, same memory.
    let saved = be.state();
    let mut be2 = HostRing::new(be_geo(&a), saved);
    echo_all(&a, &mut be2);
    let mut ids = vec![];
    while let Some(r) = fe.pop_response(&a.mem, &mut buf).unwrap() {
        ids.push(r.id);
    }
    assert_eq!(ids, (0..6).collect::<Vec<_>>());
}

fn be_geo(a: &Area) -> Geometry {
    Geometry::new(a.mem.load_u32(OFF_ENTRIES), a.mem.load_u32(OFF_ENTRY_SIZE)).unwrap()
}

/// Random garbage in every shared field never panics the backend, never reads out of bounds,
/// and every outcome is either progress or a recorded failure: each call answers `Ok` or the one
/// error that matches what the guest wrote, the backend's indices only move as far as its answers
/// say, and once the ring is failed it stays failed (status word set, every call `Failed`, nothing
/// published).
#[test]
fn garbage_never_panics() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut served, mut failed_rings) = (0u32, 0u32);
    for _ in 0..2000 {
        let (a, mut be, _fe) = pair(1 << (rnd() % 5), 32 << (rnd() % 3));
        let geo = be.geometry();
        let entries = geo.entries();
        let mut buf = vec![0u8; geo.max_payload()];
        // What the backend did, counted here: its indices must agree.
        let (mut popped, mut pushed, mut published) = (0u32, 0u32, 0u32);
        for _ in 0..8 {
            let off = [OFF_REQ_PROD, OFF_RSP_CONS, OFF_RSP_EVENT][rnd() as usize % 3];
            a.mem.store_u32(off, rnd() as u32 % 40);
            let slot = geo.req_slot(rnd() as u32);
            a.mem.write(slot, &rnd().to_le_bytes());
            a.mem.write(slot + 8, &rnd().to_le_bytes());
            let was_failed = be.failure().is_some();
            // Serve like a backend: pop, answer, publish; stop at the first error.
            let err = loop {
                let (prod, cons) = (a.mem.load_u32(OFF_REQ_PROD), be.state().req_cons);
                match be.pop_request(&a.mem, &mut buf) {
                    Ok(Some(req)) => {
                        assert!(!was_failed, "a failed ring served a request");
                        assert!(
                            req.len as usize <= geo.max_payload(),
                            "len {} > {}",
                            req.len,
                            geo.max_payload()
                        );
                        popped += 1;
                        assert_eq!(
                            be.state().req_cons,
                            popped,
                            "req_cons moves by one per request"
                        );
                        match be.push_response(&a.mem, req.id, 0, &buf[..req.len as usize]) {
                            Ok(()) => pushed += 1,
                            // Only a frontend that moved rsp_cons under the reserved slot.
                            Err(e) => break Some(e),
                        }
                        assert_eq!(
                            be.state().rsp_prod,
                            pushed,
                            "rsp_prod moves by one per response"
                        );
                    }
                    Ok(None) => {
                        assert_eq!(be.state().req_cons, cons, "no request, no move");
                        break None;
                    }
                    Err(e) => {
                        // The error names what was wrong.
                        match e {
                            RingError::BadRequestProducer { prod: p, cons: c } => {
                                assert_eq!((p, c), (prod, cons));
                                assert!(
                                    p.wrapping_sub(c) > entries,
                                    "{p} - {c} <= {entries} refused"
                                );
                            }
                            RingError::BadResponseConsumer { .. } => {}
                            RingError::BadLength { len } => {
                                assert!(len as usize > geo.max_payload(), "len {len} refused")
                            }
                            RingError::Failed => {
                                assert!(was_failed, "Failed from a ring that was not")
                            }
                            other => panic!("pop_request: unexpected {other:?}"),
                        }
                        assert_eq!(be.state().req_cons, cons, "an error consumes nothing");
                        break Some(e);
                    }
                }
            };
            let (n, _) = be.publish(&a.mem);
            published += n;
            assert!(
                published <= pushed,
                "published {published} of {pushed} responses"
            );
            if let Some(e) = err {
                assert!(
                    matches!(
                        e,
                        RingError::BadRequestProducer { .. }
                            | RingError::BadResponseConsumer { .. }
                            | RingError::BadLength { .. }
                            | RingError::Failed
                    ),
                    "{e:?}"
                );
                // Every error but a full payload buffer fails the ring for good.
                let first = be.failure().expect("an error fails the ring");
                if !was_failed {
                    assert_eq!(first, e, "the first error is the recorded one");
                }
                assert_eq!(a.mem.load_u32(OFF_STATUS) & STATUS_FAILED, STATUS_FAILED);
                assert_eq!(n, 0, "a failed ring publishes nothing");
                assert_eq!(be.pop_request(&a.mem, &mut buf), Err(RingError::Failed));
                assert_eq!(be.push_response(&a.mem, 0, 0, &[]), Err(RingError::Failed));
                assert_eq!(be.enable_kicks(&a.mem), Err(RingError::Failed));
            } else {
                assert!(be.failure().is_none(), "failed without an error");
                assert_eq!(
                    a.mem.load_u32(OFF_RSP_PROD),
                    pushed,
                    "everything answered is published"
                );
                assert_eq!(a.mem.load_u32(OFF_REQ_CONS), popped);
                assert!(be.enable_kicks(&a.mem).is_ok() || be.failure().is_some());
            }
        }
        served += popped;
        failed_rings += u32::from(be.failure().is_some());
    }
    // The garbage exercises both outcomes.
    assert!(
        served > 100 && failed_rings > 100,
        "served {served}, failed rings {failed_rings}"
    );
}

/// Found by the fuzzer: a backend that pops several requests before answering them must not be
/// promised more response slots than exist.
#[test]
fn popped_requests_reserve_response_slots() {
    let (a, mut be, mut fe) = pair(4, 64);
    let mut buf = vec![0u8; be.geometry().max_payload()];
    for id in 0..4 {
        fe.push_request(&a.mem, id, op::ECHO, &[id as u8]).unwrap();
    }
    fe.publish(&a.mem);
    let mut popped = vec![];
    while let Some(r) = be.pop_request(&a.mem, &mut buf).unwrap() {
        popped.push(r.id);
    }
    assert_eq!(popped, [0, 1, 2, 3]);
    // The request slots are free (req_cons published) and a frontend ignoring the in-flight
    // limit queues four more: the backend must hold them back, not pop a 5th..8th.
    be.publish(&a.mem);
    let geo = be.geometry();
    for id in 4..8 {
        push_raw(&a, geo, id as u32, id);
    }
    assert!(
        be.pop_request(&a.mem, &mut buf).unwrap().is_none(),
        "no response slot is free"
    );
    for id in 0..4 {
        be.push_response(&a.mem, id, 0, &[]).unwrap();
    }
    assert!(be.failure().is_none());
}

/// Found by the fuzzer: a frontend that moves `rsp_cons` back between a pop and its push takes
/// the reserved slot; that fails the ring (STATUS_FAILED) instead of silently losing a response.
#[test]
fn rsp_cons_moved_back_after_pop_fails_the_ring() {
    let (a, mut be, mut fe) = pair(4, 64);
    let mut buf = vec![0u8; be.geometry().max_payload()];
    fe.push_request(&a.mem, 7, op::ECHO, &[1]).unwrap();
    fe.publish(&a.mem);
    let r = be.pop_request(&a.mem, &mut buf).unwrap().unwrap();
    a.mem.store_u32(OFF_RSP_CONS, 0u32.wrapping_sub(4));
    let e = be.push_response(&a.mem, r.id, 0, &[1]).unwrap_err();
    assert!(matches!(e, RingError::BadResponseConsumer { .. }), "{e:?}");
    assert_eq!(be.failure(), Some(e));
    assert_eq!(a.mem.load_u32(OFF_STATUS) & STATUS_FAILED, STATUS_FAILED);
}

/// The block payload header is the documented 16 bytes: sector at 0, len at 8, reserved at 12,
/// a write's data at 16; encoding and decoding agree.
#[test]
fn blk_req_layout_and_bytes() {
    let r = BlkReq {
        sector: 0x0102_0304_0506_0708,
        len: 0x1122_3344,
        reserved: 0,
    };
    let b = r.to_bytes();
    assert_eq!(BLK_REQ_HDR, 16);
    assert_eq!(&b[..8], &0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(&b[8..12], &0x1122_3344u32.to_le_bytes());
    assert_eq!(&b[12..], &[0; 4]);
    assert_eq!(BlkReq::from_bytes(&b), Some(r));
    assert_eq!(BlkReq::from_bytes(&b[..15]), None);
    assert_eq!(
        BlkReq {
            sector: u64::MAX / 256,
            len: 1,
            reserved: 0
        }
        .pos(),
        None
    );
    assert_eq!(
        BlkReq {
            sector: 3,
            len: 1,
            reserved: 0
        }
        .pos(),
        Some(1536)
    );
}

/// The data-area block payload is 24 bytes (sector 0, len 8, flags 12, data_off 16); encoding
/// and decoding agree; the data range check refuses any byte outside the area, overflow too.
#[test]
fn blk_da_req_layout_and_range() {
    let r = BlkDaReq {
        sector: 0x0102_0304_0506_0708,
        len: 4096,
        flags: BLK_F_FUA,
        data_off: 0x1_0000_2000,
    };
    let b = r.to_bytes();
    assert_eq!(&b[..8], &0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(&b[8..12], &4096u32.to_le_bytes());
    assert_eq!(&b[12..16], &BLK_F_FUA.to_le_bytes());
    assert_eq!(&b[16..], &0x1_0000_2000u64.to_le_bytes());
    assert_eq!(BlkDaReq::from_bytes(&b), Some(r));
    assert_eq!(BlkDaReq::from_bytes(&b[..23]), None);
    let at = |data_off, len| BlkDaReq { data_off, len, ..r };
    assert_eq!(at(0, 4096).data_range(4096), Some(0..4096));
    assert_eq!(at(1, 4096).data_range(4096), None);
    assert_eq!(at(4096, 1).data_range(4096), None);
    assert_eq!(at(u64::MAX, 2).data_range(u64::MAX), None);
    assert_eq!(at(8192, 0).data_range(8192), Some(8192..8192));
}
