//! The ivshmem server-to-client protocol (QEMU `docs/specs/ivshmem-spec.rst`, "The ivshmem
//! Client-Server Protocol"): one-way, server to client; each message is one 8-byte
//! little-endian signed integer sent with one `sendmsg`, optionally with one file descriptor
//! (`SCM_RIGHTS`).

use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// `ScmSocket` (rust-vmm's `sendmsg`/`recvmsg` with `SCM_RIGHTS`, `MSG_NOSIGNAL`) on a
/// borrowed socket.
struct Sock<'a>(BorrowedFd<'a>);

impl ScmSocket for Sock<'_> {
    fn socket_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// The protocol version QEMU (2.5 and later) expects in the first message.
pub const PROTOCOL_VERSION: i64 = 0;
/// The message that carries the shared-memory file.
pub const SHM_MSG: i64 = -1;
/// Largest client id QEMU accepts (the doorbell register has 16 bits for it).
pub const MAX_ID: u16 = u16::MAX;
/// The id of the host peer (the vd_evtchn backend): the guest kicks `(0 << 16) | vector`.
pub const HOST_PEER: u16 = 0;

/// One message: a value and maybe a descriptor.
#[derive(Clone, Copy, Debug)]
pub struct Msg<'a> {
    /// The value (version, id, -1, peer id).
    pub value: i64,
    /// The descriptor sent with it.
    pub fd: Option<BorrowedFd<'a>>,
}

/// Encodes a value as it travels (little-endian).
pub fn encode(value: i64) -> [u8; 8] {
    value.to_le_bytes()
}

/// Decodes a received value.
pub fn decode(b: [u8; 8]) -> i64 {
    i64::from_le_bytes(b)
}

/// The whole setup for client `id` with one vector: version, id, the shared memory, the host
/// peer's kick eventfd (the guest's doorbell `(0 << 16) | 0` signals it), the client's own id
/// with the call eventfd (QEMU's MSI-X vector 0 irqfd).
pub fn setup_messages<'a>(
    id: u16,
    shm: BorrowedFd<'a>,
    kick: BorrowedFd<'a>,
    call: BorrowedFd<'a>,
) -> [Msg<'a>; 5] {
    [
        Msg {
            value: PROTOCOL_VERSION,
            fd: None,
        },
        Msg {
            value: i64::from(id),
            fd: None,
        },
        Msg {
            value: SHM_MSG,
            fd: Some(shm),
        },
        Msg {
            value: i64::from(HOST_PEER),
            fd: Some(kick),
        },
        Msg {
            value: i64::from(id),
            fd: Some(call),
        },
    ]
}

/// The version message of a refusal: QEMU stops the device's realize with "server sent version
/// -N, expecting 0" (N = the errno of the server's failure; the server's log says more) instead
/// of waiting. A refusal must be the first message: QEMU 10.0's setup loops forever, busy, on
/// an end of file in the middle of its setup (`ivshmem_recv_msg` adds 0 bytes and reads again).
pub fn refusal(errno: Errno) -> i64 {
    let e = errno as i64;
    if e > 0 {
        -e
    } else {
        -1
    }
}

/// Sends one message (never raises SIGPIPE: a client that left gives `EPIPE`).
pub fn send(sock: BorrowedFd<'_>, m: &Msg<'_>) -> Result<(), Errno> {
    let buf = encode(m.value);
    let fds: &[RawFd] = &match m.fd {
        Some(fd) => vec![fd.as_raw_fd()],
        None => vec![],
    };
    loop {
        match Sock(sock).send_with_fds(&[&buf[..]], fds) {
            // A stream socket takes the 8 bytes with their descriptor whole unless its buffer
            // is nearly full, which 5 messages of 8 bytes never make it.
            Ok(8) => return Ok(()),
            Ok(_) => return Err(Errno::EIO),
            Err(e) if e.errno() == Errno::EINTR as i32 => continue,
            Err(e) => return Err(Errno::from_raw(e.errno())),
        }
    }
}

/// Sends messages in order, stopping at the first error.
pub fn send_all(sock: BorrowedFd<'_>, msgs: &[Msg<'_>]) -> Result<(), Errno> {
    msgs.iter().try_for_each(|m| send(sock, m))
}

/// A received message: value and the descriptors that came with it (close-on-exec).
#[derive(Debug)]
pub struct Received {
    /// The value.
    pub value: i64,
    /// Descriptors that came with its bytes.
    pub fds: Vec<OwnedFd>,
}

/// Receives one message the way QEMU does (8 bytes, the descriptors that come with them);
/// `Ok(None)` at end of file before any byte. The tests' fake QEMU uses it.
pub fn recv(sock: BorrowedFd<'_>) -> Result<Option<Received>, Errno> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    let mut fds = vec![];
    while got < buf.len() {
        let mut raw: [RawFd; 4] = [-1; 4];
        let rest = &mut buf[got..];
        let mut iov = [nix::libc::iovec {
            iov_base: rest.as_mut_ptr().cast(),
            iov_len: rest.len(),
        }];
        // SAFETY: `iov` points to `rest`, a live, exclusively borrowed byte buffer of that
        // length: any bytes may be written there.
        let (n, nfds) = match unsafe { Sock(sock).recv_with_fds(&mut iov, &mut raw) } {
            Ok(r) => r,
            Err(e) if e.errno() == Errno::EINTR as i32 => continue,
            Err(e) => return Err(Errno::from_raw(e.errno())),
        };
        for &fd in &raw[..nfds] {
            // SAFETY: the kernel installed these descriptors in this process for this call;
            // nothing else owns them.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            nix::fcntl::fcntl(
                fd.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )?;
            fds.push(fd);
        }
        if n == 0 {
            return if got == 0 && fds.is_empty() {
                Ok(None)
            } else {
                Err(Errno::EPROTO)
            };
        }
        got += n;
    }
    Ok(Some(Received {
        value: decode(buf),
        fds,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::eventfd::EfdFlags;

    fn eventfd(v: u32, f: EfdFlags) -> nix::Result<OwnedFd> {
        nix::sys::eventfd::EventFd::from_value_and_flags(v, f).map(OwnedFd::from)
    }
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn values_are_little_endian_i64() {
        assert_eq!(encode(0), [0; 8]);
        assert_eq!(encode(-1), [0xff; 8]);
        assert_eq!(encode(2), [2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode(0x0102), [2, 1, 0, 0, 0, 0, 0, 0]);
        for v in [0, 1, -1, 65535, i64::MIN, i64::MAX] {
            assert_eq!(decode(encode(v)), v);
        }
    }

    #[test]
    fn refusal_is_a_negative_version() {
        assert_eq!(refusal(Errno::EBUSY), -16);
        assert_eq!(refusal(Errno::ENOENT), -2);
        assert_eq!(refusal(Errno::UnknownErrno), -1);
        assert_ne!(refusal(Errno::EBUSY), PROTOCOL_VERSION);
    }

    #[test]
    fn setup_order_matches_the_spec() {
        let (a, b, c) = (
            eventfd(0, EfdFlags::EFD_CLOEXEC).unwrap(),
            eventfd(0, EfdFlags::EFD_CLOEXEC).unwrap(),
            eventfd(0, EfdFlags::EFD_CLOEXEC).unwrap(),
        );
        let m = setup_messages(7, a.as_fd(), b.as_fd(), c.as_fd());
        let v: Vec<_> = m
            .iter()
            .map(|m| (m.value, m.fd.map(|f| f.as_raw_fd())))
            .collect();
        assert_eq!(
            v,
            [
                (0, None),
                (7, None),
                (-1, Some(a.as_raw_fd())),
                (0, Some(b.as_raw_fd())),
                (7, Some(c.as_raw_fd())),
            ]
        );
    }

    #[test]
    fn a_message_with_and_without_fd_round_trips() {
        let (s, r) = UnixStream::pair().unwrap();
        let e = eventfd(5, EfdFlags::EFD_CLOEXEC).unwrap();
        send(s.as_fd(), &Msg { value: 3, fd: None }).unwrap();
        send(
            s.as_fd(),
            &Msg {
                value: -1,
                fd: Some(e.as_fd()),
            },
        )
        .unwrap();
        let m = recv(r.as_fd()).unwrap().unwrap();
        assert_eq!((m.value, m.fds.len()), (3, 0));
        let m = recv(r.as_fd()).unwrap().unwrap();
        assert_eq!((m.value, m.fds.len()), (-1, 1));
        // The same eventfd: its counter (5) reads through the received descriptor.
        let mut v = [0u8; 8];
        assert_eq!(nix::unistd::read(m.fds[0].as_raw_fd(), &mut v).unwrap(), 8);
        assert_eq!(u64::from_ne_bytes(v), 5);
        drop(s);
        assert!(recv(r.as_fd()).unwrap().is_none());
    }

    #[test]
    fn sending_to_a_closed_peer_is_epipe_not_a_signal() {
        let (s, r) = UnixStream::pair().unwrap();
        drop(r);
        let e = send(s.as_fd(), &Msg { value: 0, fd: None });
        assert_eq!(e, Err(Errno::EPIPE));
    }

    #[test]
    fn a_short_message_then_eof_is_a_protocol_error() {
        use std::io::Write;
        let (mut s, r) = UnixStream::pair().unwrap();
        s.write_all(&[1, 2, 3]).unwrap();
        drop(s);
        assert_eq!(recv(r.as_fd()).unwrap_err(), Errno::EPROTO);
    }
}
