//! The guest's vd input device gets the capabilities of the host devices routed when its QEMU
//! connected (issue 13, `8c-guest-input-caps`): `input-devices` (host) makes a routed uinput
//! keyboard+mouse and tablet and prints their union; `input-caps` (the guest, from the tools disk)
//! prints the capabilities of its evdev device the same way; the test compares the lines.

use super::fixtures::*;
use vd_ring::caps::InputCaps;

/// One line: event types, key words (most significant first, as sysfs), axes, misc codes, and
/// each absolute axis's min/max/fuzz/flat (not the resolution: vd_front does not set it).
pub fn caps_line(c: &InputCaps) -> String {
    let keys: Vec<String> = c.key.iter().rev().map(|w| format!("{w:x}")).collect();
    let abs: Vec<String> = (0..c.absinfo.len())
        .filter(|&a| c.abs & (1 << a) != 0)
        .map(|a| {
            let x = c.absinfo[a];
            format!("{a}:{}:{}:{}:{}", x.min, x.max, x.fuzz, x.flat)
        })
        .collect();
    format!(
        "CAPS ev={:x} key={} rel={:x} abs={:x} msc={:x} absinfo={}",
        c.ev,
        keys.join(","),
        c.rel,
        c.abs,
        c.msc,
        abs.join(",")
    )
}

/// `input-caps`: the capabilities of the input devices at the sysfs directories `sys` (their
/// union, restricted to what a guest may be given), as [`caps_line`].
pub fn caps(sys: &[std::path::PathBuf]) -> Result<()> {
    let mut all = InputCaps::default();
    for s in sys {
        all.union(&vd_sys::evdev::device_caps(s).with_context(|| s.display().to_string())?);
    }
    println!("{}", caps_line(&all.restricted()));
    Ok(())
}

/// `input-devices`: a uinput keyboard+mouse and a uinput tablet named `<prefix> kbd` and
/// `<prefix> tablet`, routed by that prefix; prints the union of their capabilities as the
/// guest should see it ([`caps_line`]), then holds them until killed.
pub fn devices(prefix: &str) -> Result<()> {
    let adm = Input::open().context("open /dev/vd_input: is vd_input_irq loaded?")?;
    let kb = Uinput::new(
        &format!("{prefix} kbd"),
        "vd-itest/caps/kbd",
        Kind::KeyboardMouse,
    )?;
    let tab = Uinput::new(
        &format!("{prefix} tablet"),
        "vd-itest/caps/tab",
        Kind::Tablet,
    )?;
    let _route = Route::add(&adm, vdi_match::NAME, true, prefix)?;
    let mut all = InputCaps::default();
    for d in [&kb, &tab] {
        let sys = std::path::Path::new("/sys/class/input").join(&d.sysname);
        all.union(&vd_sys::evdev::device_caps(&sys).with_context(|| sys.display().to_string())?);
    }
    println!("{}", caps_line(&all.restricted()));
    use std::io::Write;
    std::io::stdout().flush()?;
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
