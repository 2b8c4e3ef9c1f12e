// SPDX-License-Identifier: GPL-2.0
//! The input capabilities block of a vd input ring's shared memory (issue 13): what the guest's
//! input device may report, taken from the host devices routed when the guest's QEMU connected.
//!
//! vd_input_irq reserves it in the data area of an input ring's shmem file
//! (`VDI_IOC_VM_CREATE_SHM`: the geometry line's `data_off`/`data_len`, `data_len` >=
//! [`CAPS_LEN`]) and leaves it zero; the server that hands the file to QEMU fills it in before
//! QEMU gets it (`vd-ivshmem-server --input`, vdd's `[[input.vm]]`); the guest's vd_front copies
//! it once at probe, checks it ([`InputCaps::decode`]) and registers its evdev device with these
//! capabilities. A zero block (magic 0: nothing was routed, or an older server) means "no
//! capabilities given": the guest uses its default set.
//!
//! Layout, all little-endian, [`CAPS_LEN`] bytes:
//!
//! | offset | field |
//! |---|---|
//! | 0 | `magic: u32` = [`CAPS_MAGIC`] |
//! | 4 | `version: u32` = [`CAPS_VERSION`] |
//! | 8 | `ev: u32`: bit n = event type n (`EV_KEY` 1, `EV_REL` 2, `EV_ABS` 3, `EV_MSC` 4) |
//! | 12 | reserved, 0 |
//! | 16 | `key: [u64; 12]`: key codes 0..768, bit (code % 64) of word (code / 64) |
//! | 112 | `rel: u64`: relative axes 0..16 |
//! | 120 | `abs: u64`: absolute axes 0..64 |
//! | 128 | `msc: u64`: misc codes 0..8 |
//! | 136 | `absinfo: [{min, max, fuzz, flat, resolution: i32}; 64]`, per absolute axis |

/// `"VDCP"`.
pub const CAPS_MAGIC: u32 = 0x5043_4456;
/// The layout above.
pub const CAPS_VERSION: u32 = 1;
/// Words of key bits (`KEY_CNT` = 0x300 codes).
pub const KEY_WORDS: usize = 12;
/// Key codes covered.
pub const KEY_CODES: usize = KEY_WORDS * 64;
/// Relative axes covered (`REL_CNT`).
pub const REL_AXES: usize = 16;
/// Absolute axes covered (`ABS_CNT`).
pub const ABS_AXES: usize = 64;
/// Misc codes covered (`MSC_CNT`).
pub const MSC_CODES: usize = 8;
/// Event types a block may name: `EV_SYN`, `EV_KEY`, `EV_REL`, `EV_ABS`, `EV_MSC`.
pub const EV_KNOWN: u32 = 0b1_1111;
/// `ABS_MT_SLOT`..=`ABS_MT_TOOL_Y`: multitouch axes, which need the guest's multitouch slots
/// (not given: a block naming them is refused).
pub const ABS_MT_AXES: u64 = ((1u64 << 0x3e) - 1) & !((1u64 << 0x2f) - 1);

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_EV: usize = 8;
const OFF_KEY: usize = 16;
const OFF_REL: usize = OFF_KEY + KEY_WORDS * 8;
const OFF_ABS: usize = OFF_REL + 8;
const OFF_MSC: usize = OFF_ABS + 8;
const OFF_ABSINFO: usize = OFF_MSC + 8;
/// Bytes of one axis's `absinfo`.
const ABSINFO_LEN: usize = 20;
/// Bytes of the block.
pub const CAPS_LEN: usize = OFF_ABSINFO + ABS_AXES * ABSINFO_LEN;

const _: () = assert!(OFF_REL == 112 && OFF_ABS == 120 && OFF_MSC == 128 && OFF_ABSINFO == 136);
const _: () = assert!(CAPS_LEN == 1416);
const _: () = assert!(ABS_MT_AXES.count_ones() == 15 && ABS_MT_AXES & (1 << 0x2f) != 0);

/// One absolute axis's range (`struct input_absinfo` without the current value).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AbsInfo {
    pub min: i32,
    pub max: i32,
    pub fuzz: i32,
    pub flat: i32,
    pub resolution: i32,
}

impl AbsInfo {
    const ZERO: Self = Self {
        min: 0,
        max: 0,
        fuzz: 0,
        flat: 0,
        resolution: 0,
    };
}

/// Why a capabilities block was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapsError {
    /// Neither zero nor [`CAPS_MAGIC`].
    Magic,
    /// Another layout version.
    Version,
    /// Event types other than [`EV_KNOWN`], or bits of a type that is not named, or reserved
    /// bits set.
    Bits,
    /// Multitouch axes ([`ABS_MT_AXES`]).
    Multitouch,
    /// An absolute axis whose `min > max`, or a negative fuzz, flat or resolution.
    AbsRange,
}

impl CapsError {
    /// What is wrong, for a log line.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Magic => "bad magic",
            Self::Version => "unknown version",
            Self::Bits => "unknown event types or codes",
            Self::Multitouch => "multitouch axes (not supported)",
            Self::AbsRange => "an absolute axis with a bad range",
        }
    }
}

/// A device's (or a union of devices') capabilities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputCaps {
    pub ev: u32,
    pub key: [u64; KEY_WORDS],
    pub rel: u64,
    pub abs: u64,
    pub msc: u64,
    pub absinfo: [AbsInfo; ABS_AXES],
}

impl Default for InputCaps {
    fn default() -> Self {
        Self {
            ev: 0,
            key: [0; KEY_WORDS],
            rel: 0,
            abs: 0,
            msc: 0,
            absinfo: [AbsInfo::ZERO; ABS_AXES],
        }
    }
}

fn u32_at(b: &[u8; CAPS_LEN], o: usize) -> u32 {
    // Every offset used is a constant inside the block (see the layout assertions).
    match b.get(o..o.saturating_add(4)) {
        Some(&[x0, x1, x2, x3]) => u32::from_le_bytes([x0, x1, x2, x3]),
        _ => 0,
    }
}

fn u64_at(b: &[u8; CAPS_LEN], o: usize) -> u64 {
    u64::from(u32_at(b, o)) | (u64::from(u32_at(b, o + 4)) << 32)
}

fn put(b: &mut [u8; CAPS_LEN], o: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(o..o.saturating_add(v.len())) {
        d.copy_from_slice(v);
    }
}

impl InputCaps {
    /// Whether key `code` is set.
    pub fn has_key(&self, code: usize) -> bool {
        self.key
            .get(code / 64)
            .is_some_and(|w| w & (1 << (code % 64)) != 0)
    }

    /// Sets key `code` (ignored past [`KEY_CODES`]).
    pub fn set_key(&mut self, code: usize) {
        if let Some(w) = self.key.get_mut(code / 64) {
            *w |= 1 << (code % 64);
        }
    }

    /// Adds `o`'s capabilities; an axis both have gets the range that covers both.
    pub fn union(&mut self, o: &Self) {
        for a in 0..ABS_AXES {
            let bit = 1u64 << a;
            if o.abs & bit == 0 {
                continue;
            }
            let (x, y) = (&mut self.absinfo[a], o.absinfo[a]);
            if self.abs & bit == 0 {
                *x = y;
            } else {
                x.min = x.min.min(y.min);
                x.max = x.max.max(y.max);
                x.fuzz = x.fuzz.max(y.fuzz);
                x.flat = x.flat.max(y.flat);
                x.resolution = x.resolution.max(y.resolution);
            }
        }
        self.ev |= o.ev;
        for (k, ok) in self.key.iter_mut().zip(o.key) {
            *k |= ok;
        }
        self.rel |= o.rel;
        self.abs |= o.abs;
        self.msc |= o.msc;
    }

    /// What a guest may be given: only the event types and codes of [`EV_KNOWN`], no
    /// multitouch axes, a bit only under a type that is named.
    pub fn restricted(&self) -> Self {
        let mut c = self.clone();
        c.ev &= EV_KNOWN;
        c.abs &= !ABS_MT_AXES;
        c.rel &= (1 << REL_AXES) - 1;
        c.msc &= (1 << MSC_CODES) - 1;
        let named = |ty: u32| c.ev & (1 << ty) != 0;
        if !named(1) {
            c.key = [0; KEY_WORDS];
        }
        if !named(2) {
            c.rel = 0;
        }
        if !named(3) {
            c.abs = 0;
        }
        if !named(4) {
            c.msc = 0;
        }
        for a in 0..ABS_AXES {
            if c.abs & (1 << a) == 0 {
                c.absinfo[a] = AbsInfo::ZERO;
            }
        }
        c
    }

    /// The block's bytes.
    pub fn encode(&self) -> [u8; CAPS_LEN] {
        let mut b = [0u8; CAPS_LEN];
        put(&mut b, OFF_MAGIC, &CAPS_MAGIC.to_le_bytes());
        put(&mut b, OFF_VERSION, &CAPS_VERSION.to_le_bytes());
        put(&mut b, OFF_EV, &self.ev.to_le_bytes());
        for (i, w) in self.key.iter().enumerate() {
            put(&mut b, OFF_KEY + i * 8, &w.to_le_bytes());
        }
        put(&mut b, OFF_REL, &self.rel.to_le_bytes());
        put(&mut b, OFF_ABS, &self.abs.to_le_bytes());
        put(&mut b, OFF_MSC, &self.msc.to_le_bytes());
        for (i, a) in self.absinfo.iter().enumerate() {
            let o = OFF_ABSINFO + i * ABSINFO_LEN;
            for (j, v) in [a.min, a.max, a.fuzz, a.flat, a.resolution]
                .iter()
                .enumerate()
            {
                put(&mut b, o + j * 4, &v.to_le_bytes());
            }
        }
        b
    }

    /// Reads a block copied out of shared memory (once: the caller's copy), and checks all of
    /// it: `Ok(None)` for a zero magic (no capabilities given), `Err` for anything a guest's
    /// device must not be registered with.
    pub fn decode(b: &[u8; CAPS_LEN]) -> Result<Option<Self>, CapsError> {
        match u32_at(b, OFF_MAGIC) {
            0 => return Ok(None),
            CAPS_MAGIC => {}
            _ => return Err(CapsError::Magic),
        }
        if u32_at(b, OFF_VERSION) != CAPS_VERSION {
            return Err(CapsError::Version);
        }
        let mut c = Self {
            ev: u32_at(b, OFF_EV),
            rel: u64_at(b, OFF_REL),
            abs: u64_at(b, OFF_ABS),
            msc: u64_at(b, OFF_MSC),
            ..Self::default()
        };
        if u32_at(b, OFF_EV + 4) != 0 {
            return Err(CapsError::Bits);
        }
        for (i, w) in c.key.iter_mut().enumerate() {
            *w = u64_at(b, OFF_KEY + i * 8);
        }
        for (i, a) in c.absinfo.iter_mut().enumerate() {
            let o = OFF_ABSINFO + i * ABSINFO_LEN;
            let v = |j: usize| u32_at(b, o + j * 4) as i32;
            *a = AbsInfo {
                min: v(0),
                max: v(1),
                fuzz: v(2),
                flat: v(3),
                resolution: v(4),
            };
        }
        if c.abs & ABS_MT_AXES != 0 {
            return Err(CapsError::Multitouch);
        }
        if c.restricted() != c {
            return Err(CapsError::Bits);
        }
        for a in 0..ABS_AXES {
            let x = c.absinfo[a];
            if c.abs & (1 << a) != 0
                && (x.min > x.max || x.fuzz < 0 || x.flat < 0 || x.resolution < 0)
            {
                return Err(CapsError::AbsRange);
            }
        }
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kbd_tablet() -> InputCaps {
        let mut c = InputCaps {
            ev: 0b1_1111,
            rel: 0b1_0000_0011,
            abs: 0b11,
            msc: 0b10000,
            ..InputCaps::default()
        };
        c.rel &= (1 << REL_AXES) - 1;
        c.msc = 0b10;
        for k in (1..=88).chain([0x110, 0x111, 0x14a]) {
            c.set_key(k);
        }
        c.absinfo[0] = AbsInfo {
            min: 0,
            max: 32767,
            ..AbsInfo::default()
        };
        c.absinfo[1] = AbsInfo {
            min: -5,
            max: 4095,
            fuzz: 1,
            flat: 2,
            resolution: 3,
        };
        c
    }

    #[test]
    fn round_trip_and_zero_block() {
        let c = kbd_tablet();
        assert_eq!(InputCaps::decode(&c.encode()), Ok(Some(c)));
        assert_eq!(InputCaps::decode(&[0u8; CAPS_LEN]), Ok(None));
    }

    #[test]
    fn bad_blocks_are_refused() {
        let good = kbd_tablet().encode();
        let mut b = good;
        b[0] ^= 1;
        assert_eq!(InputCaps::decode(&b), Err(CapsError::Magic));
        let mut b = good;
        b[OFF_VERSION] = 2;
        assert_eq!(InputCaps::decode(&b), Err(CapsError::Version));
        let mut b = good;
        b[OFF_EV] |= 1 << 5; // EV_SW
        assert_eq!(InputCaps::decode(&b), Err(CapsError::Bits));
        let mut b = good;
        b[OFF_EV + 4] = 1; // reserved
        assert_eq!(InputCaps::decode(&b), Err(CapsError::Bits));
        let mut c = kbd_tablet();
        c.abs |= 1 << 0x2f; // ABS_MT_SLOT
        assert_eq!(InputCaps::decode(&c.encode()), Err(CapsError::Multitouch));
        let mut c = kbd_tablet();
        c.absinfo[0].min = 40000;
        assert_eq!(InputCaps::decode(&c.encode()), Err(CapsError::AbsRange));
        let mut c = kbd_tablet();
        c.ev &= !(1 << 2); // REL bits without EV_REL
        assert_eq!(InputCaps::decode(&c.encode()), Err(CapsError::Bits));
    }

    #[test]
    fn union_widens_ranges_and_restriction_drops_the_unsupported() {
        let mut a = InputCaps {
            ev: 1 << 3,
            abs: 1,
            ..InputCaps::default()
        };
        a.absinfo[0] = AbsInfo {
            min: 0,
            max: 100,
            ..AbsInfo::default()
        };
        let mut b = a.clone();
        b.absinfo[0] = AbsInfo {
            min: -10,
            max: 50,
            fuzz: 4,
            ..AbsInfo::default()
        };
        b.abs |= 1 << 0x35; // ABS_MT_POSITION_X
        b.ev |= 1 << 0x11; // EV_LED
        a.union(&b);
        assert_eq!(
            (a.absinfo[0].min, a.absinfo[0].max, a.absinfo[0].fuzz),
            (-10, 100, 4)
        );
        let r = a.restricted();
        assert_eq!((r.ev, r.abs), (1 << 3, 1));
        assert_eq!(InputCaps::decode(&r.encode()), Ok(Some(r)));
        assert!(
            kbd_tablet().has_key(88) && !kbd_tablet().has_key(89) && !kbd_tablet().has_key(5000)
        );
    }
}
