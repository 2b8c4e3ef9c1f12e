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
    use crate::vd::ratelimit::RateLimit;
    use crate::vd::shmem::SharedPages;
    use kernel::ioctl::{_IO, _IOR, _IOW, _IOWR};

    #[test]
    fn abi_ioctl_numbers_match_the_kernel_encoding() {
        assert_eq!(VD_IOC_VERSION, _IOR::<VdVersion>(VD_IOC_MAGIC, 0));
        assert_eq!(iow::<u64>(5), _IOW::<u64>(VD_IOC_MAGIC, 5));
        assert_eq!(iowr::<[u8; 24]>(9), _IOWR::<[u8; 24]>(VD_IOC_MAGIC, 9));
        assert_eq!(io(3), _IO(VD_IOC_MAGIC, 3));
        assert_eq!(ioc_size(VD_IOC_VERSION), 40);
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
