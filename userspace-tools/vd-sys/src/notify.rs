//! sd_notify by hand: one datagram to `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
//! namespace). No libsystemd.

use std::io;
use std::os::unix::net::UnixDatagram;

/// Sends `msg` (e.g. "READY=1") when the process (vdd, vd-ivshmem-server) runs under systemd with `Type=notify`; `Ok(false)` when
/// `NOTIFY_SOCKET` is not set.
pub fn notify(msg: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let s = UnixDatagram::unbound()?;
    let p = path.to_string_lossy();
    if let Some(name) = p.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        s.send_to_addr(msg.as_bytes(), &addr)?;
    } else {
        s.send_to(msg.as_bytes(), &*p)?;
    }
    Ok(true)
}
