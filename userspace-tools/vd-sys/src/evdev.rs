//! Host input devices' capabilities, for the guest's vd input device (issue 13): the union of
//! the capabilities of the devices vd_input_irq routes now ([`routed_caps`]), read from sysfs
//! (`/sys/class/input/inputN/capabilities/*`) and, for absolute axes, the ranges from the
//! device's evdev node (`EVIOCGABS`). The result goes into the capabilities block of the guest's
//! shared memory (`vd_ring::caps`).

use crate::input::Input;
use std::path::{Path, PathBuf};
use vd_ring::caps::{AbsInfo, InputCaps, ABS_AXES};
use vd_uapi::VdiDevice;

/// A sysfs capability bitmap (`"e080ffdf01cfffff fffffffffffffffe"`: 64-bit words, the most
/// significant first) as words, the least significant first.
pub fn parse_bitmap(s: &str) -> Option<Vec<u64>> {
    s.split_whitespace()
        .rev()
        .map(|w| u64::from_str_radix(w, 16).ok())
        .collect()
}

/// `struct input_absinfo`.
#[repr(C)]
#[derive(Default)]
struct RawAbsInfo {
    value: i32,
    minimum: i32,
    maximum: i32,
    fuzz: i32,
    flat: i32,
    resolution: i32,
}

/// One input device's capabilities from its sysfs directory (`/sys/class/input/inputN`).
pub fn device_caps(sys: &Path) -> std::io::Result<InputCaps> {
    let word = |name: &str| -> std::io::Result<Vec<u64>> {
        let s = std::fs::read_to_string(sys.join("capabilities").join(name))?;
        parse_bitmap(&s).ok_or_else(|| std::io::Error::other(format!("{name}: not a bitmap")))
    };
    let first = |v: &[u64]| v.first().copied().unwrap_or(0);
    let mut c = InputCaps {
        ev: first(&word("ev")?) as u32,
        rel: first(&word("rel")?),
        abs: first(&word("abs")?),
        msc: first(&word("msc")?),
        ..InputCaps::default()
    };
    for (i, w) in word("key")?.into_iter().enumerate() {
        if let Some(k) = c.key.get_mut(i) {
            *k = w;
        }
    }
    if c.abs != 0 {
        let node = event_node(sys)?;
        let f = std::fs::File::open(&node)?;
        for a in 0..ABS_AXES {
            if c.abs & (1 << a) == 0 {
                continue;
            }
            let mut r = RawAbsInfo::default();
            let req = nix::request_code_read!(b'E', 0x40 + a, size_of::<RawAbsInfo>());
            use std::os::fd::AsRawFd;
            // SAFETY: EVIOCGABS writes one `struct input_absinfo` to the pointer, valid here.
            let rc = unsafe { nix::libc::ioctl(f.as_raw_fd(), req as _, &mut r) };
            nix::errno::Errno::result(rc)
                .map_err(|e| std::io::Error::other(format!("EVIOCGABS {}: {e}", node.display())))?;
            c.absinfo[a] = AbsInfo {
                min: r.minimum,
                max: r.maximum,
                fuzz: r.fuzz,
                flat: r.flat,
                resolution: r.resolution,
            };
        }
    }
    Ok(c)
}

/// The evdev node of an input device's sysfs directory.
fn event_node(sys: &Path) -> std::io::Result<PathBuf> {
    for e in std::fs::read_dir(sys)?.flatten() {
        let n = e.file_name();
        if n.to_string_lossy().starts_with("event") {
            return Ok(Path::new("/dev/input").join(n));
        }
    }
    Err(std::io::Error::other(format!(
        "{}: no evdev node",
        sys.display()
    )))
}

/// The sysfs directory of the input device with this name and phys.
fn find(name: &str, phys: &str) -> Option<PathBuf> {
    let rd = std::fs::read_dir("/sys/class/input").ok()?;
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("input"))
        })
        .find(|p| {
            let rd = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
            rd("name").trim_end_matches('\n') == name && rd("phys").trim_end_matches('\n') == phys
        })
}

/// The union of the capabilities of every device vd_input_irq routes now (restricted to what a
/// guest may be given, `InputCaps::restricted`), with the names of the devices it came from.
/// `None` when nothing is routed.
pub fn routed_caps(adm: &Input) -> Result<Option<(InputCaps, Vec<String>)>, String> {
    let devs: Vec<VdiDevice> = adm
        .devices()
        .map_err(|e| format!("VDI_IOC_DEVICE: {}", e.desc()))?;
    let mut all: Option<InputCaps> = None;
    let mut names = Vec::new();
    for d in devs.iter().filter(|d| d.routed == 1) {
        let (name, phys) = (
            crate::input::fixed_str(&d.name),
            crate::input::fixed_str(&d.phys),
        );
        let Some(sys) = find(&name, &phys) else {
            continue; // unplugged meanwhile
        };
        let c = device_caps(&sys).map_err(|e| format!("{name}: {e}"))?;
        all.get_or_insert_with(InputCaps::default).union(&c);
        names.push(name);
    }
    Ok(all.map(|c| (c.restricted(), names)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_bitmaps() {
        assert_eq!(parse_bitmap("3\n"), Some(vec![3]));
        assert_eq!(
            parse_bitmap("e080ffdf01cfffff fffffffffffffffe\n"),
            Some(vec![0xfffffffffffffffe, 0xe080ffdf01cfffff])
        );
        assert_eq!(parse_bitmap("0"), Some(vec![0]));
        assert_eq!(parse_bitmap("zz"), None);
    }
}
