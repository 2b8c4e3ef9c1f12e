// SPDX-License-Identifier: GPL-2.0
//! KUnit: the shared ring (`vd-ring`) running on real shared pages ([`SharedPages`]), driven from
//! both sides, including a hostile frontend.

#[kernel::prelude::kunit_tests(vd_evtchn_ring)]
mod tests {
    use crate::ring::*;
    use crate::vd::shmem::SharedPages;
    use kernel::prelude::*;

    fn setup(entries: u32, esz: u32) -> (SharedPages, HostRing, GuestRing) {
        let geo = Geometry::new(entries, esz).unwrap();
        let mem = SharedPages::new(geo.total_bytes()).unwrap();
        init_ring(&mem, geo, 1);
        let fe = GuestRing::attach(&mem).unwrap();
        (mem, HostRing::new(geo, HostRingState::default()), fe)
    }

    fn echo_all(
        mem: &SharedPages,
        be: &mut HostRing,
        buf: &mut [u8],
    ) -> Result<(u32, bool), RingError> {
        while let Some(req) = be.pop_request(mem, buf)? {
            be.push_response(mem, req.id, 0, &buf[..req.len as usize])?;
        }
        Ok(be.publish(mem))
    }

    #[test]
    fn geometry_refuses_bad_values() {
        assert!(Geometry::new(0, 64).is_err());
        assert!(Geometry::new(6, 64).is_err());
        assert!(Geometry::new(8192, 64).is_err());
        assert!(Geometry::new(64, 24).is_err());
        assert!(Geometry::new(4096, 4096).is_err());
        assert_eq!(
            Geometry::new(4096, 256).unwrap().total_bytes(),
            4096 + (2 << 20)
        );
    }

    #[test]
    fn wraparound_keeps_order_across_pages() {
        // 4096-byte entries: every slot is its own page, so copies cross no page but the
        // pages are distinct allocations.
        let (mem, mut be, mut fe) = setup(4, 4096);
        let mut buf = KVec::from_elem(0u8, 4080, GFP_KERNEL).unwrap();
        let mut next = 0u64;
        for id in 0..64u64 {
            fe.push_request(&mem, id, op::ECHO, &id.to_le_bytes())
                .unwrap();
            fe.publish(&mem);
            echo_all(&mem, &mut be, &mut buf).unwrap();
            let r = fe.pop_response(&mem, &mut buf).unwrap().unwrap();
            assert_eq!(r.id, next);
            assert_eq!(&buf[..8], &next.to_le_bytes());
            next += 1;
        }
        assert_eq!(be.state().req_cons, 64);
    }

    #[test]
    fn suppression_batches_kicks_and_irqs() {
        let (mem, mut be, mut fe) = setup(64, 64);
        let mut buf = [0u8; 48];
        fe.push_request(&mem, 0, op::ECHO, &[]).unwrap();
        assert!(fe.publish(&mem));
        for id in 1..16 {
            fe.push_request(&mem, id, op::ECHO, &[]).unwrap();
            assert!(!fe.publish(&mem));
        }
        assert_eq!(echo_all(&mem, &mut be, &mut buf), Ok((16, true)));
        // Frontend did not re-arm: a second batch raises no interrupt.
        fe.push_request(&mem, 16, op::ECHO, &[]).unwrap();
        fe.publish(&mem);
        assert_eq!(echo_all(&mem, &mut be, &mut buf), Ok((1, false)));
        assert!(!be.enable_kicks(&mem).unwrap());
    }

    #[test]
    fn hostile_indices_and_lengths_fail_the_ring() {
        let (mem, mut be, fe) = setup(8, 64);
        let mut buf = [0u8; 48];
        mem.store_u32(OFF_REQ_PROD, 0x8000_0000);
        assert!(matches!(
            be.pop_request(&mem, &mut buf),
            Err(RingError::BadRequestProducer { .. })
        ));
        assert_eq!(mem.load_u32(OFF_STATUS), STATUS_FAILED);
        assert!(fe.backend_failed(&mem));
        assert_eq!(be.pop_request(&mem, &mut buf), Err(RingError::Failed));

        let (mem, mut be, mut fe) = setup(8, 64);
        fe.push_request(&mem, 1, op::ECHO, &[9]).unwrap();
        fe.publish(&mem);
        mem.write(be.geometry().req_slot(0) + 12, &u32::MAX.to_le_bytes());
        assert_eq!(
            be.pop_request(&mem, &mut buf),
            Err(RingError::BadLength { len: u32::MAX })
        );
    }

    #[test]
    fn out_of_range_accesses_are_ignored() {
        let mem = SharedPages::new(4096).unwrap();
        mem.store_u32(4096, 7);
        assert_eq!(mem.load_u32(4096), 0);
        assert_eq!(mem.load_u32(3), 0);
        let mut b = [1u8; 8];
        mem.read(4092, &mut b);
        assert_eq!(b, [1u8; 8]);
    }
}
