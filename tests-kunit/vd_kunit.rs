// SPDX-License-Identifier: GPL-2.0
//! vd_kunit: KUnit suites for the code the vd modules share (`rust/vd/`, the ABI crate). The
//! per-driver suites live next to each driver and run when that driver loads.

mod vd;
use vd::{ring, uapi};

use kernel::prelude::*;

module! {
    type: VdKunit,
    name: "vd_kunit",
    authors: ["vd project"],
    description: "KUnit suites for vd's shared kernel code",
    license: "GPL",
}

struct VdKunit;

impl kernel::Module for VdKunit {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(VdKunit)
    }
}

#[kunit_tests(vd_shared)]
mod tests {
    use crate::ring::RingMem;
    use crate::uapi::*;
    use crate::vd::hops::{tsc, HopTrace};
    use crate::vd::ratelimit::RateLimit;
    use crate::vd::shmem::SharedPages;
    use kernel::ioctl::{_IO, _IOR, _IOW, _IOWR};
    use kernel::prelude::*;
    use kernel::str::CString;

    #[test]
    fn abi_ioctl_numbers_match_the_kernel_encoding() {
        assert_eq!(VD_IOC_VERSION, _IOR::<VdVersion>(VD_IOC_MAGIC, 0));
        assert_eq!(iow::<u64>(5), _IOW::<u64>(VD_IOC_MAGIC, 5));
        assert_eq!(iowr::<[u8; 24]>(9), _IOWR::<[u8; 24]>(VD_IOC_MAGIC, 9));
        assert_eq!(io(3), _IO(VD_IOC_MAGIC, 3));
        assert_eq!(ioc_size(VD_IOC_VERSION), 40);
    }

    /// The text a trace reads as.
    fn hops_text(t: &HopTrace<2, 3>) -> Result<KVec<u8>, Error> {
        let s = CString::try_from_fmt(fmt!("{:?}", t))?;
        let mut v = KVec::new();
        v.extend_from_slice(s.to_bytes(), GFP_KERNEL)?;
        Ok(v)
    }

    #[test]
    fn hop_traces_keep_records_while_on_and_never_wrap() {
        let t = HopTrace::<2, 3>::new();
        t.record([1, 2]);
        assert_eq!(&hops_text(&t).unwrap()[..], b"hops 0 0\n");
        t.set(true);
        for i in 0..5 {
            t.record([i, 10 * i]);
        }
        // Three kept, two dropped, in order.
        assert_eq!(&hops_text(&t).unwrap()[..], b"hops 3 2\n0 0\n1 10\n2 20\n");
        t.set(false);
        t.record([7, 7]);
        assert_eq!(&hops_text(&t).unwrap()[..], b"hops 3 2\n0 0\n1 10\n2 20\n");
        // On again: emptied.
        t.set(true);
        t.record([9, 8]);
        assert_eq!(&hops_text(&t).unwrap()[..], b"hops 1 0\n9 8\n");
        let (a, b) = (tsc(), tsc());
        assert!(b >= a);
    }

    #[test]
    fn shared_pages_copy_across_page_boundaries() {
        let mem = SharedPages::new(3 * 4096).unwrap();
        let mut src = [0u8; 300];
        for (i, b) in src.iter_mut().enumerate() {
            *b = i as u8;
        }
        mem.write(4096 - 100, &src);
        let mut dst = [0u8; 300];
        mem.read(4096 - 100, &mut dst);
        assert_eq!(src, dst);
        mem.store_release_u32(8192, 0xdead_beef);
        assert_eq!(mem.load_acquire_u32(8192), 0xdead_beef);
        assert!(SharedPages::new(100).is_err());
        assert!(SharedPages::new(0).is_err());
    }

    #[test]
    fn ratelimit_allows_a_burst_then_counts() {
        let rl = RateLimit::new(60_000, 3);
        assert!(rl.allow() && rl.allow() && rl.allow());
        assert!(!rl.allow());
        assert!(!rl.allow());
        assert_eq!(rl.suppressed(), 2);
    }
}
