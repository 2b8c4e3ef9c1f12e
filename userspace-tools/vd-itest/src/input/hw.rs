//! `vd-itest input-hw`: a routed uinput device for the real-guest tests.

use super::fixtures::*;

/// `input-hw`: the test hardware alone (no vd module needed): a uinput keyboard+mouse whose
/// events a reader of its evdev node sees. With `hold`, the device stays until killed (for the
/// vdctl tests).
pub fn hw(name: &str, hold: bool) -> Result<()> {
    let kb = Uinput::new(name, "vd-itest/hw/input0", Kind::KeyboardMouse)?;
    let node = kb.event_node()?;
    check!(
        node.exists(),
        "uinput device {:?} ({}) has {}",
        kb.name,
        kb.sysname,
        node.display()
    );
    let mut host = Evdev::open(&node, true)?;
    let sent = [
        motion_frame(3, -4),
        key_frame(1, true).to_vec(),
        key_frame(1, false).to_vec(),
    ]
    .concat();
    kb.emit(&sent)?;
    let mut got = vec![];
    let t = Instant::now();
    while got.len() < sent.len() && t.elapsed() < Duration::from_secs(5) {
        got.extend(host.read()?);
        std::thread::sleep(Duration::from_millis(5));
    }
    check!(
        got == sent,
        "evdev reader sees the frames written to uinput ({} events)",
        got.len()
    );
    if hold {
        println!("ready");
        use std::io::Write;
        std::io::stdout().flush()?;
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    Ok(())
}
