// SPDX-License-Identifier: GPL-2.0
//! A passed-through VF's traffic as its PF sees it: the PF-mirrored per-VF statistics of the
//! Intel 82576 and i350 (igb) PFs. Pure logic (which PFs, where the registers are, wrapping
//! 32-bit counters to 64-bit totals), tested by KUnit; the sampler (`state/sampler.rs`) maps
//! and reads the registers.
//!
//! A VF on vfio-pci has no netdev on the host and a stock VMM pushes no counts
//! (`VDS_IOC_SAMPLE`), but the PF's BAR0 mirrors every VF's statistics, read-only, 32-bit,
//! wrapping and not cleared on read (the datasheets' "PF-mirrored VF statistics"; the same layout
//! on the 82576 and the i350), at `0x10000 + n * 0x100` for VF `n` of the PF:
//!
//! | register | offset | counts |
//! |---|---|---|
//! | `PVFGPRC(n)` | `+0x10` | good packets received |
//! | `PVFGPTC(n)` | `+0x14` | good packets transmitted |
//! | `PVFGORC(n)` | `+0x18` | good octets received |
//! | `PVFGOTC(n)` | `+0x34` | good octets transmitted |
//!
//! They are the registers the VF driver itself reads (igbvf's `VFGORC` etc., `UPDATE_VF_COUNTER`
//! in `drivers/net/ethernet/intel/igbvf/netdev.c`, whose wrap handling [`Wrap32`] follows). QEMU's
//! igb emulates them (`hw/net/igb_core.c`, `igb_update_rx_stats`, `igb_on_tx_done_update_stats`):
//! in VMDq mode (the igb PF driver's mode while VFs exist) each frame the VF sends from either of
//! its queues (`n`, `n + 8`: counted per pool, `queue % 8`) and each frame written to one of its
//! receive rings counts, with 4 bytes of FCS; frames for a VF whose receive queue is not enabled
//! (no driver in the guest yet) are dropped before they are counted. A VF reset (FLR) does not
//! clear them; a PF reset does, which reads as one wrap (see [`Wrap32::update`]).

use crate::vd::netdev::Counters;

/// PCI vendor id of Intel.
pub(crate) const INTEL: u16 = 0x8086;

/// PF device ids whose BAR0 has the per-VF mirror statistics at the offsets below: the 82576
/// family (verified against QEMU's igb, which emulates 0x10c9) and the i350 family (same layout
/// in the i350 datasheet; not verified on hardware here).
const PF_IDS: [u16; 12] = [
    // 82576: copper, fiber, serdes, quad copper, quad copper ET2, NS, NS serdes, serdes quad.
    0x10c9, 0x10e6, 0x10e7, 0x10e8, 0x1526, 0x150a, 0x1518, 0x150d,
    // i350: copper, fiber, serdes, SGMII (igb's `E1000_DEV_ID_I350_*`).
    0x1521, 0x1522, 0x1523, 0x1524,
];

/// VFs per PF with mirror registers (82576 and i350: 8 pools, at most 7 or 8 VFs).
pub(crate) const MAX_VF: u32 = 8;

/// The BAR holding the registers.
pub(crate) const BAR: u32 = 0;

/// Offsets inside a VF's block of the mirror registers.
pub(crate) const GPRC: usize = 0x10;
/// Good packets transmitted.
pub(crate) const GPTC: usize = 0x14;
/// Good octets received.
pub(crate) const GORC: usize = 0x18;
/// Good octets transmitted.
pub(crate) const GOTC: usize = 0x34;
/// Bytes of a VF's block that cover the four registers.
pub(crate) const BLOCK_LEN: usize = 0x40;

/// Whether a PF with these ids has the mirror registers.
pub(crate) fn supported(vendor: u16, device: u16) -> bool {
    vendor == INTEL && PF_IDS.contains(&device)
}

/// Offset in BAR0 of the block of VF `vf` (its VF number on the PF), if the PF has one.
pub(crate) fn block(vf: u32) -> Option<u64> {
    (vf < MAX_VF).then(|| 0x10000 + u64::from(vf) * 0x100)
}

/// The four registers of one VF, as read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Raw {
    pub(crate) rx_packets: u32,
    pub(crate) tx_packets: u32,
    pub(crate) rx_bytes: u32,
    pub(crate) tx_bytes: u32,
}

impl Raw {
    /// All four registers read all-ones: what a read of a device that stopped decoding (surprise
    /// removal, a PF that left D0) returns, not a reading.
    pub(crate) fn all_ones(&self) -> bool {
        [
            self.rx_packets,
            self.tx_packets,
            self.rx_bytes,
            self.tx_bytes,
        ] == [u32::MAX; 4]
    }
}

/// A 32-bit hardware counter that wraps, turned into a total that only increases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Wrap32 {
    /// The previous raw value (`None`: no baseline yet).
    last: Option<u32>,
    total: u64,
}

impl Wrap32 {
    /// No baseline, total 0.
    pub(crate) const fn new() -> Self {
        Self {
            last: None,
            total: 0,
        }
    }

    /// Feeds a raw reading and returns the total. The first reading after [`Self::new`] only
    /// sets the baseline; then the total grows by `raw - last` modulo 2^32: a counter read at
    /// least once per wrap (4 GiB; 34 s at 1 Gbit/s, far longer than the longest sampling
    /// period) is counted exactly. A counter that restarted from 0 (PF reset) cannot be told
    /// from a wrap: it adds `2^32 - last + raw` once, which makes the VF look busy for one
    /// window, never idle. The total saturates.
    pub(crate) fn update(&mut self, raw: u32) -> u64 {
        if let Some(last) = self.last {
            self.total = self.total.saturating_add(u64::from(raw.wrapping_sub(last)));
        }
        self.last = Some(raw);
        self.total
    }

    /// The total so far.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }
}

/// The four counters of one VF since its lease began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Mirror {
    rx_packets: Wrap32,
    tx_packets: Wrap32,
    rx_bytes: Wrap32,
    tx_bytes: Wrap32,
    /// The last raw reading, for debugfs.
    raw: Option<Raw>,
}

impl Mirror {
    /// No baseline.
    pub(crate) const fn new() -> Self {
        Self {
            rx_packets: Wrap32::new(),
            tx_packets: Wrap32::new(),
            rx_bytes: Wrap32::new(),
            tx_bytes: Wrap32::new(),
            raw: None,
        }
    }

    /// Forgets baseline and totals (a new lease).
    pub(crate) fn reset(&mut self) {
        *self = Self::new();
    }

    /// Feeds a reading; returns the totals since the first reading after [`Self::reset`].
    pub(crate) fn update(&mut self, r: Raw) -> Counters {
        self.raw = Some(r);
        Counters {
            rx_packets: self.rx_packets.update(r.rx_packets),
            tx_packets: self.tx_packets.update(r.tx_packets),
            rx_bytes: self.rx_bytes.update(r.rx_bytes),
            tx_bytes: self.tx_bytes.update(r.tx_bytes),
        }
    }

    /// Bytes both ways since the baseline (saturating).
    pub(crate) fn bytes(&self) -> u64 {
        self.rx_bytes.total().saturating_add(self.tx_bytes.total())
    }

    /// The last raw reading (`None`: none since the lease began).
    pub(crate) fn raw(&self) -> Option<Raw> {
        self.raw
    }
}

#[kernel::prelude::kunit_tests(vd_sriov_mirror)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reading_is_the_baseline() {
        let mut w = Wrap32::new();
        assert_eq!(w.update(1_000_000), 0);
        assert_eq!(w.update(1_000_500), 500);
        assert_eq!(w.update(1_000_500), 500);
        assert_eq!(w.total(), 500);
    }

    #[test]
    fn a_wrap_counts_what_crossed_it() {
        let mut w = Wrap32::new();
        w.update(u32::MAX - 99);
        // 100 bytes to the wrap, 50 after it.
        assert_eq!(w.update(50), 150);
        assert_eq!(w.update(u32::MAX), 150 + u64::from(u32::MAX) - 50);
        assert_eq!(w.update(0), 151 + u64::from(u32::MAX) - 50);
        // Totals go past 32 bits.
        let mut w = Wrap32::new();
        w.update(0);
        for i in 1..=5u64 {
            w.update(((i * 0xC000_0000) & 0xffff_ffff) as u32);
        }
        assert_eq!(w.total(), 5 * 0xC000_0000);
    }

    #[test]
    fn totals_saturate() {
        let mut w = Wrap32 {
            last: Some(0),
            total: u64::MAX - 10,
        };
        assert_eq!(w.update(100), u64::MAX);
        assert_eq!(w.update(200), u64::MAX);
    }

    #[test]
    fn a_lease_starts_from_a_new_baseline() {
        let mut m = Mirror::new();
        assert_eq!(m.raw(), None);
        let r = |rx, tx| Raw {
            rx_packets: rx / 100,
            tx_packets: tx / 100,
            rx_bytes: rx,
            tx_bytes: tx,
        };
        assert_eq!(m.update(r(5000, 7000)), Counters::default());
        let c = m.update(r(5400, 7100));
        assert_eq!(
            (c.rx_bytes, c.tx_bytes, c.rx_packets, c.tx_packets),
            (400, 100, 4, 1)
        );
        assert_eq!(m.bytes(), 500);
        assert_eq!(m.raw(), Some(r(5400, 7100)));
        m.reset();
        assert_eq!(m.bytes(), 0);
        assert_eq!(m.update(r(9000, 9000)), Counters::default());
        assert_eq!(m.update(r(9001, 9000)).rx_bytes, 1);
    }

    #[test]
    fn registers_and_ids() {
        assert_eq!(block(0), Some(0x10000));
        assert_eq!(block(7).map(|b| b + GOTC as u64), Some(0x10734));
        assert_eq!(block(8), None);
        assert!(supported(0x8086, 0x10c9));
        assert!(supported(0x8086, 0x1521));
        assert!(!supported(0x8086, 0x10ca)); // an 82576 VF
        assert!(!supported(0x8086, 0x1572)); // an X710 (i40e)
        assert!(!supported(0x1af4, 0x10c9));
        let ones = Raw {
            rx_packets: u32::MAX,
            tx_packets: u32::MAX,
            rx_bytes: u32::MAX,
            tx_bytes: u32::MAX,
        };
        assert!(ones.all_ones());
        assert!(!Raw {
            tx_bytes: 7,
            ..ones
        }
        .all_ones());
        // The four registers lie in the mapped block.
        assert!([GPRC, GPTC, GORC, GOTC].iter().all(|&o| o + 4 <= BLOCK_LEN));
    }
}
