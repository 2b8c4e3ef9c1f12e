//! Input "hardware" for the tests: uinput devices through the raw uinput ioctls (no extra
//! crate, builds static), and a reader of a device's evdev node (what a userspace forwarder
//! such as QEMU's input-linux reads).

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

pub use vd_sys::input::{EV_ABS, EV_KEY, EV_REL, EV_SYN, SYN_REPORT};

/// `REL_X`.
pub const REL_X: u16 = 0;
/// `REL_Y`.
pub const REL_Y: u16 = 1;
/// `REL_WHEEL`.
pub const REL_WHEEL: u16 = 8;
/// `ABS_X`.
pub const ABS_X: u16 = 0;
/// `ABS_Y`.
pub const ABS_Y: u16 = 1;
/// `ABS_MT_SLOT`.
pub const ABS_MT_SLOT: u16 = 0x2f;
/// `ABS_MT_POSITION_X`.
pub const ABS_MT_POSITION_X: u16 = 0x35;
/// `ABS_MT_POSITION_Y`.
pub const ABS_MT_POSITION_Y: u16 = 0x36;
/// `ABS_MT_TRACKING_ID`.
pub const ABS_MT_TRACKING_ID: u16 = 0x39;
/// `BTN_LEFT`.
pub const BTN_LEFT: u16 = 0x110;
/// `BTN_RIGHT`.
pub const BTN_RIGHT: u16 = 0x111;
/// `BTN_TOUCH`.
pub const BTN_TOUCH: u16 = 0x14a;
/// `KEY_A`..`KEY_Z` in alphabetical order (evdev codes follow the keyboard layout).
pub const KEYS: [u16; 26] = [
    30, 48, 46, 32, 18, 33, 34, 35, 23, 36, 37, 38, 50, 49, 24, 25, 16, 19, 31, 20, 22, 47, 17, 45,
    21, 44,
];

/// `(type, code, value)`.
pub type Ev = (u16, u16, i32);

const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((b'U' as u32) << 8) | nr
}
const UI_DEV_CREATE: u32 = ioc(0, 1, 0);
const UI_DEV_DESTROY: u32 = ioc(0, 2, 0);
const UI_DEV_SETUP: u32 = ioc(1, 3, size_of::<UinputSetup>());
const UI_ABS_SETUP: u32 = ioc(1, 4, size_of::<UinputAbsSetup>());
const UI_SET_EVBIT: u32 = ioc(1, 100, 4);
const UI_SET_KEYBIT: u32 = ioc(1, 101, 4);
const UI_SET_RELBIT: u32 = ioc(1, 102, 4);
const UI_SET_ABSBIT: u32 = ioc(1, 103, 4);
const UI_SET_PHYS: u32 = ioc(1, 108, 8);
const fn ui_get_sysname(len: usize) -> u32 {
    ioc(2, 44, len)
}

#[repr(C)]
struct UinputSetup {
    bustype: u16,
    vendor: u16,
    product: u16,
    version: u16,
    name: [u8; 80],
    ff_effects_max: u32,
}
const _: () = assert!(size_of::<UinputSetup>() == 92);

#[repr(C)]
struct UinputAbsSetup {
    code: u16,
    _pad: u16,
    value: i32,
    minimum: i32,
    maximum: i32,
    fuzz: i32,
    flat: i32,
    resolution: i32,
}
const _: () = assert!(size_of::<UinputAbsSetup>() == 28);

/// `struct input_event` on 64-bit: `timeval`, type, code, value.
pub const INPUT_EVENT_SIZE: usize = 24;

/// Encodes events as `struct input_event`s (the time is set by the kernel).
pub fn encode(evs: &[Ev]) -> Vec<u8> {
    let mut b = Vec::with_capacity(evs.len() * INPUT_EVENT_SIZE);
    for &(t, c, v) in evs {
        b.extend_from_slice(&[0u8; 16]);
        b.extend_from_slice(&t.to_ne_bytes());
        b.extend_from_slice(&c.to_ne_bytes());
        b.extend_from_slice(&v.to_ne_bytes());
    }
    b
}

/// Decodes `struct input_event`s: `(sec, usec, type, code, value)`.
pub fn decode(b: &[u8]) -> Vec<(i64, i64, u16, u16, i32)> {
    b.chunks_exact(INPUT_EVENT_SIZE)
        .map(|c| {
            let i64at = |o: usize| i64::from_ne_bytes(c[o..o + 8].try_into().unwrap_or([0; 8]));
            (
                i64at(0),
                i64at(8),
                u16::from_ne_bytes([c[16], c[17]]),
                u16::from_ne_bytes([c[18], c[19]]),
                i32::from_ne_bytes([c[20], c[21], c[22], c[23]]),
            )
        })
        .collect()
}

/// What kind of device to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Keyboard (codes 1..=88) with a relative pointer, two buttons and a wheel.
    KeyboardMouse,
    /// Absolute pointer (ABS_X/ABS_Y 0..32767, BTN_TOUCH).
    Tablet,
    /// Multitouch (type B): 2 slots, ABS_MT_POSITION_X/Y 0..32767, ABS_MT_TRACKING_ID.
    Multitouch,
}

/// A uinput device; destroyed on drop.
pub struct Uinput {
    file: Option<File>,
    pub name: String,
    pub phys: String,
    pub sysname: String,
}

fn ioctl_int(f: &File, cmd: u32, arg: usize) -> Result<(), Errno> {
    // SAFETY: the uinput ioctls used with this take an integer (or a pointer the caller made
    // valid) as `arg`.
    let r = unsafe { nix::libc::ioctl(f.as_raw_fd(), cmd as _, arg) };
    Errno::result(r).map(drop)
}

impl Uinput {
    /// Creates and registers a device.
    pub fn new(name: &str, phys: &str, kind: Kind) -> Result<Self> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/uinput")
            .context("open /dev/uinput (CONFIG_INPUT_UINPUT)")?;
        let set = |cmd: u32, v: u16| {
            ioctl_int(&f, cmd, v as usize).with_context(|| format!("uinput ioctl {cmd:#x} {v}"))
        };
        match kind {
            Kind::KeyboardMouse => {
                set(UI_SET_EVBIT, EV_KEY)?;
                // A full keyboard (KEY_ESC..KEY_F12 and the rest of the main block) and buttons.
                for k in (1u16..=88).chain([BTN_LEFT, BTN_RIGHT]) {
                    set(UI_SET_KEYBIT, k)?;
                }
                set(UI_SET_EVBIT, EV_REL)?;
                for r in [REL_X, REL_Y, REL_WHEEL] {
                    set(UI_SET_RELBIT, r)?;
                }
            }
            Kind::Tablet => {
                set(UI_SET_EVBIT, EV_KEY)?;
                set(UI_SET_KEYBIT, BTN_TOUCH)?;
                set(UI_SET_EVBIT, EV_ABS)?;
                for a in [ABS_X, ABS_Y] {
                    set(UI_SET_ABSBIT, a)?;
                    let s = UinputAbsSetup {
                        code: a,
                        _pad: 0,
                        value: 0,
                        minimum: 0,
                        maximum: 32767,
                        fuzz: 0,
                        flat: 0,
                        resolution: 0,
                    };
                    ioctl_int(&f, UI_ABS_SETUP, &s as *const _ as usize).context("UI_ABS_SETUP")?;
                }
            }
            Kind::Multitouch => {}
        }
        if kind == Kind::Multitouch {
            set(UI_SET_EVBIT, EV_ABS)?;
            let axes = [
                (ABS_MT_SLOT, 0, 1),
                (ABS_MT_TRACKING_ID, 0, 65535),
                (ABS_MT_POSITION_X, 0, 32767),
                (ABS_MT_POSITION_Y, 0, 32767),
            ];
            for (a, minimum, maximum) in axes {
                set(UI_SET_ABSBIT, a)?;
                let s = UinputAbsSetup {
                    code: a,
                    _pad: 0,
                    value: 0,
                    minimum,
                    maximum,
                    fuzz: 0,
                    flat: 0,
                    resolution: 0,
                };
                ioctl_int(&f, UI_ABS_SETUP, &s as *const _ as usize).context("UI_ABS_SETUP")?;
            }
        }
        let mut s = UinputSetup {
            bustype: 0x06, /* BUS_VIRTUAL */
            vendor: 0x1d6b,
            product: 0x7664,
            version: 1,
            name: [0; 80],
            ff_effects_max: 0,
        };
        let n = name.len().min(79);
        s.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        ioctl_int(&f, UI_DEV_SETUP, &s as *const _ as usize).context("UI_DEV_SETUP")?;
        let phys_c = std::ffi::CString::new(phys)?;
        ioctl_int(&f, UI_SET_PHYS, phys_c.as_ptr() as usize).context("UI_SET_PHYS")?;
        ioctl_int(&f, UI_DEV_CREATE, 0).context("UI_DEV_CREATE")?;
        let mut buf = [0u8; 64];
        ioctl_int(&f, ui_get_sysname(buf.len()), buf.as_mut_ptr() as usize)
            .context("UI_GET_SYSNAME")?;
        let sysname = vd_sys::input::fixed_str(&buf);
        Ok(Self {
            file: Some(f),
            name: name.to_owned(),
            phys: phys.to_owned(),
            sysname,
        })
    }

    /// Injects events (one `write`; the input core handles them in this thread).
    pub fn emit(&self, evs: &[Ev]) -> Result<()> {
        let Some(mut f) = self.file.as_ref() else {
            bail!("device destroyed")
        };
        let b = encode(evs);
        f.write_all(&b).context("write /dev/uinput")?;
        Ok(())
    }

    /// `/dev/input/eventN` of the device.
    pub fn event_node(&self) -> Result<PathBuf> {
        let dir = PathBuf::from("/sys/devices/virtual/input").join(&self.sysname);
        for e in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
            let n = e?.file_name().to_string_lossy().into_owned();
            if n.starts_with("event") {
                return Ok(PathBuf::from("/dev/input").join(n));
            }
        }
        bail!("{}: no event node (CONFIG_INPUT_EVDEV?)", dir.display())
    }

    /// Unregisters the device (`UI_DEV_DESTROY`) and closes it.
    pub fn destroy(&mut self) -> Result<()> {
        if let Some(f) = self.file.take() {
            ioctl_int(&f, UI_DEV_DESTROY, 0).context("UI_DEV_DESTROY")?;
        }
        Ok(())
    }

    /// `UI_DEV_DESTROY` through a shared reference (another thread may be writing; uinput
    /// serialises the two). The file stays open; later writes fail.
    pub fn destroy_shared(&self) -> Result<()> {
        let Some(f) = self.file.as_ref() else {
            bail!("device destroyed")
        };
        ioctl_int(f, UI_DEV_DESTROY, 0).context("UI_DEV_DESTROY")?;
        Ok(())
    }

    /// Closes the uinput file without `UI_DEV_DESTROY` (the kernel destroys it on release).
    pub fn close(&mut self) {
        self.file.take();
    }
}

impl Drop for Uinput {
    fn drop(&mut self) {
        let _ = self.destroy();
    }
}

/// A reader of `/dev/input/eventN`.
pub struct Evdev {
    pub file: File,
}

impl Evdev {
    pub fn open(node: &std::path::Path, nonblock: bool) -> Result<Self> {
        let mut o = OpenOptions::new();
        o.read(true);
        if nonblock {
            use std::os::unix::fs::OpenOptionsExt;
            o.custom_flags(nix::libc::O_NONBLOCK);
        }
        Ok(Self {
            file: o
                .open(node)
                .with_context(|| format!("open {}", node.display()))?,
        })
    }
    /// Reads what is there (blocking unless opened non-blocking; then empty when nothing).
    pub fn read(&mut self) -> Result<Vec<Ev>> {
        let mut b = [0u8; INPUT_EVENT_SIZE * 64];
        match self.file.read(&mut b) {
            Ok(n) => Ok(decode(&b[..n])
                .into_iter()
                .map(|(_, _, t, c, v)| (t, c, v))
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(vec![]),
            Err(e) => Err(e.into()),
        }
    }
}

/// A key frame: key `n` of [`KEYS`] pressed (`down`) or released, then `SYN_REPORT`.
pub fn key_frame(n: usize, down: bool) -> [Ev; 2] {
    [
        (EV_KEY, KEYS[n % KEYS.len()], i32::from(down)),
        (EV_SYN, SYN_REPORT, 0),
    ]
}

/// A motion frame: `REL_X dx`, `REL_Y dy`, `SYN_REPORT` (zero deltas are left out, as the
/// input core would drop them).
pub fn motion_frame(dx: i32, dy: i32) -> Vec<Ev> {
    let mut v = vec![];
    if dx != 0 {
        v.push((EV_REL, REL_X, dx));
    }
    if dy != 0 {
        v.push((EV_REL, REL_Y, dy));
    }
    v.push((EV_SYN, SYN_REPORT, 0));
    v
}

/// A burst of exactly `total` events: `keys` key frames (press/release pairs of one key each,
/// so the input core passes every one) spread evenly between three-event motion frames with
/// nonzero deltas. `total - 2 * keys` must be a multiple of 3 and `keys` even.
pub fn burst(total: usize, keys: usize) -> Result<Vec<Ev>> {
    if keys == 0
        || !keys.is_multiple_of(2)
        || total < 2 * keys
        || !(total - 2 * keys).is_multiple_of(3)
    {
        bail!(
            "burst({total}, {keys}): total - 2*keys must be a multiple of 3, keys even and nonzero"
        );
    }
    let motions = (total - 2 * keys) / 3;
    let mut v = Vec::with_capacity(total);
    let mut m = 0usize;
    for k in 0..keys {
        v.extend(key_frame(k / 2, k % 2 == 0));
        let n = motions / keys + usize::from(k < motions % keys);
        for _ in 0..n {
            v.extend(motion_frame(1 + (m % 5) as i32, -(1 + (m % 3) as i32)));
            m += 1;
        }
    }
    Ok(v)
}

/// Frame `i` of the focus test: a key (pressed on even `i`, released on odd: every key event is
/// real to the input core), a tag in `REL_X` (`i + 1`) and `REL_Y` (`-(i + 1)`), a wheel tick.
pub fn tagged_frame(i: usize) -> [Ev; 5] {
    let t = i as i32 + 1;
    [
        (
            EV_KEY,
            KEYS[(i / 2) % KEYS.len()],
            i32::from(i.is_multiple_of(2)),
        ),
        (EV_REL, REL_X, t),
        (EV_REL, REL_Y, -t),
        (EV_REL, REL_WHEEL, 1 + (i % 3) as i32),
        (EV_SYN, SYN_REPORT, 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use vd_sys::input::Summary;

    #[test]
    fn ioctl_numbers_match_linux_uinput_h() {
        assert_eq!(UI_DEV_CREATE, 0x5501);
        assert_eq!(UI_DEV_DESTROY, 0x5502);
        assert_eq!(UI_DEV_SETUP, 0x405c_5503);
        assert_eq!(UI_ABS_SETUP, 0x401c_5504);
        assert_eq!(UI_SET_EVBIT, 0x4004_5564);
        assert_eq!(UI_SET_PHYS, 0x4008_556c);
        assert_eq!(ui_get_sysname(64), 0x8040_552c);
    }

    #[test]
    fn input_event_encoding_round_trips() {
        let b = encode(&[(EV_REL, REL_Y, -3), (EV_SYN, SYN_REPORT, 0)]);
        assert_eq!(b.len(), 48);
        assert_eq!(
            decode(&b),
            vec![(0, 0, EV_REL, REL_Y, -3), (0, 0, EV_SYN, SYN_REPORT, 0)]
        );
    }

    #[test]
    fn burst_has_the_asked_shape() {
        let b = burst(10_000, 140).unwrap();
        assert_eq!(b.len(), 10_000);
        let s = Summary::of(
            b.iter()
                .map(|&(ty, code, value)| vd_uapi::VdiEvent {
                    time_ns: 0,
                    ty,
                    code,
                    value,
                })
                .collect::<Vec<_>>()
                .iter(),
        );
        assert_eq!(s.keys.len(), 140);
        // Presses and releases alternate per key: the input core drops a repeated state.
        for p in s.keys.chunks(2) {
            assert_eq!((p[0].0, p[0].1, p[1].0, p[1].1), (p[0].0, 1, p[0].0, 0));
        }
        assert_eq!(s.reports, 140 + 3240);
        assert!(s.rel[REL_X as usize] > 0 && s.rel[REL_Y as usize] < 0);
        assert_eq!(b.last(), Some(&(EV_SYN, SYN_REPORT, 0)));
        assert!(
            b.iter().all(|e| e.0 != EV_REL || e.2 != 0),
            "no zero deltas"
        );
        assert!(burst(10_000, 139).is_err());
        assert!(burst(10_001, 140).is_err());
    }

    #[test]
    fn tagged_frames_alternate_keys() {
        assert_eq!(tagged_frame(0)[0], (EV_KEY, 30, 1));
        assert_eq!(tagged_frame(1)[0], (EV_KEY, 30, 0));
        assert_eq!(tagged_frame(2)[0], (EV_KEY, 48, 1));
        assert_eq!(tagged_frame(41)[1], (EV_REL, REL_X, 42));
    }
}
