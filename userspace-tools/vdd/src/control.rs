//! The control socket: a UNIX stream socket, mode 0600, that answers [`Request`]s from peers
//! running as root or as the user vdd runs as (checked with SO_PEERCRED on every connection).
//! Also the client side vdctl uses.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::libc;
use tracing::{debug, info, warn};

use crate::protocol::{Request, Response};

/// Answers one request (the daemon implements it over its shared state).
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> Response;
}

/// The peer's uid (SO_PEERCRED).
pub fn peer_uid(s: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a writable ucred and `len` its size.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Binds the control socket with mode 0600. A socket file left by a dead vdd is replaced; one
/// that answers means another vdd runs, which is an error.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{}: another vdd is running (its socket answers); stop it first",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    // SAFETY: umask has no preconditions; vdd binds its sockets before starting threads.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let l = l?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serves connections on a thread of its own, one thread per connection.
pub fn spawn_server(
    l: UnixListener,
    h: Arc<dyn Handler>,
) -> io::Result<std::thread::JoinHandle<()>> {
    // SAFETY: geteuid has no preconditions.
    let owner = unsafe { libc::geteuid() };
    std::thread::Builder::new()
        .name("vdd-control".into())
        .spawn(move || {
            for c in l.incoming() {
                let c = match c {
                    Ok(c) => c,
                    Err(e) => {
                        warn!("control socket: accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                let h = h.clone();
                let _ = std::thread::Builder::new()
                    .name("vdd-client".into())
                    .spawn(move || serve_conn(c, owner, &*h));
            }
        })
}

fn serve_conn(c: UnixStream, owner: u32, h: &dyn Handler) {
    let uid = match peer_uid(&c) {
        Ok(u) => u,
        Err(e) => {
            warn!("control socket: SO_PEERCRED: {e}; connection dropped");
            return;
        }
    };
    let mut w = match c.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    if uid != 0 && uid != owner {
        warn!(
            uid,
            "control socket: refused a client that is neither root nor uid {owner}"
        );
        let _ = writeln!(
            w,
            "{}",
            serde_json::to_string(&Response::err(format!(
                "permission denied: uid {uid} is neither root nor vdd's uid {owner}"
            )))
            .unwrap_or_default()
        );
        return;
    }
    let _ = c.set_read_timeout(Some(Duration::from_secs(60)));
    let mut r = BufReader::new(c);
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.len() > 64 * 1024 {
            return;
        }
        let resp = match serde_json::from_str::<Request>(line.trim()) {
            Ok(req) => {
                debug!(?req, uid, "control request");
                if let Request::PolicySet { key, value } = &req {
                    info!(uid, "control: policy set {key} = {value}");
                }
                if let Request::Focus { vm_id } = &req {
                    info!(uid, "control: focus VM {vm_id}");
                }
                h.handle(req)
            }
            Err(e) => Response::err(format!("bad request: {e}")),
        };
        let Ok(text) = serde_json::to_string(&resp) else {
            return;
        };
        if writeln!(w, "{text}").is_err() {
            return;
        }
    }
}

/// Why a client request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("vdd is not running (nothing listens on {0}): start it with `vdd --config /etc/vdd/vdd.toml` or `systemctl start vdd`, or point --socket at its socket")]
    NotRunning(PathBuf),
    #[error("permission denied on {0}: the control socket is for root and the user vdd runs as; retry with sudo")]
    Permission(PathBuf),
    #[error("talking to vdd on {0}: {1}")]
    Io(PathBuf, io::Error),
    #[error("vdd answered something that is not a response: {0}")]
    Protocol(String),
    #[error("vdd: {0}")]
    Daemon(String),
}

/// Sends one request and waits for the answer (10 s at most). `Ok` only for `"ok": true`.
pub fn request(path: &Path, req: &Request) -> Result<serde_json::Value, ClientError> {
    let c = UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning(path.into())
        }
        io::ErrorKind::PermissionDenied => ClientError::Permission(path.into()),
        _ => ClientError::Io(path.into(), e),
    })?;
    let io = |e| ClientError::Io(path.into(), e);
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let mut w = c.try_clone().map_err(io)?;
    writeln!(
        w,
        "{}",
        serde_json::to_string(req).map_err(|e| ClientError::Protocol(e.to_string()))?
    )
    .map_err(io)?;
    let mut line = String::new();
    BufReader::new(c).read_line(&mut line).map_err(io)?;
    let resp: Response = serde_json::from_str(line.trim())
        .map_err(|e| ClientError::Protocol(format!("{e}: {line:?}")))?;
    if resp.ok {
        Ok(resp.data.unwrap_or(serde_json::Value::Null))
    } else {
        Err(ClientError::Daemon(
            resp.error
                .unwrap_or_else(|| "failed without a reason".into()),
        ))
    }
}
