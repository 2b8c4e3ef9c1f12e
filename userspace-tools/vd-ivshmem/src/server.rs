//! The server loop: accept a QEMU, give it a channel, keep its socket, keep listening.

use crate::image::{self, ImageError, ImageInfo};
use crate::listen::{self, ListenError, Listener};
use crate::proto;
use crate::provider::{Channel, ChannelGeometry, ChannelProvider, ProviderError, Step};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// How a server runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The UNIX socket QEMU's `-chardev socket,path=` names.
    pub socket: PathBuf,
    /// The disk image (regular file or block device).
    pub image: PathBuf,
    /// Every channel's shape.
    pub geometry: ChannelGeometry,
    /// How long a new client waits for the image's lock (a previous guest's channel ending).
    pub lock_wait: Duration,
    /// Socket file mode.
    pub mode: u32,
    /// Socket file group.
    pub gid: Option<u32>,
}

/// One thing that happened; `--json` prints each as one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The server listens.
    Listening {
        /// Socket path.
        socket: PathBuf,
        /// The image.
        image: ImageInfo,
        /// Channel shape.
        geometry: ChannelGeometry,
        /// Bytes of each channel's shared memory (QEMU's BAR2).
        shm_size: u64,
    },
    /// A client got its channel.
    Client {
        /// The client's ivshmem id (its IVPosition register).
        client: u16,
        /// The vd_evtchn channel id it had in the server's domain before it was handed over
        /// (free again afterwards: the next client's channel may get the same).
        channel: u32,
        /// The channel's host-wide list key (`VDE_IOC_LIST` cursor), unique for the host's
        /// uptime; null if the listing failed.
        key: Option<u64>,
        /// The image.
        image: PathBuf,
        /// Image bytes.
        size: u64,
        /// Shared-memory bytes.
        shm_size: u64,
        /// Data area offset in the shared memory.
        data_off: u64,
    },
    /// A client was refused (it got a negative version: QEMU stops with an error).
    Refused {
        /// The id it would have had.
        client: u16,
        /// errno of the failure.
        errno: i32,
        /// What failed and what to do.
        error: String,
    },
    /// A client that got its channel closed its socket (QEMU exited; its channel ends when
    /// QEMU's last reference to the kick eventfd goes).
    Left {
        /// The client's id.
        client: u16,
    },
    /// The server stops (SIGTERM/SIGINT): channels stay with their guests.
    Stopped {
        /// Clients still connected (their guests keep their disks).
        clients: usize,
    },
}

impl Event {
    /// One human line.
    pub fn message(&self) -> String {
        match self {
            Self::Listening {
                socket,
                image,
                geometry,
                shm_size,
            } => format!(
                "listening on {}: image {} ({:?}, {} bytes), {} slots of {} bytes, {} MiB data \
                 area, {} MiB shared memory per guest",
                socket.display(),
                image.path.display(),
                image.kind,
                image.size,
                geometry.entries,
                geometry.slot,
                geometry.data_size >> 20,
                shm_size >> 20
            ),
            Self::Client {
                client,
                channel,
                key,
                image,
                size,
                shm_size,
                data_off,
            } => format!(
                "client {client}: channel {channel}{} on image {} ({size} bytes), shared memory \
                 {shm_size} bytes (data at {data_off}), handed to the guest",
                key.map(|k| format!(" (list key {k})")).unwrap_or_default(),
                image.display()
            ),
            Self::Refused {
                client,
                errno,
                error,
            } => format!("client {client}: refused (QEMU sees version -{errno}): {error}"),
            Self::Left { client } => format!("client {client}: disconnected (QEMU exited)"),
            Self::Stopped { clients } => {
                format!("stopping; {clients} connected guest(s) keep their channels")
            }
        }
    }
}

/// Why the server cannot start or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The image at startup.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// poll/accept failed.
    #[error("{0}: {1}")]
    Sys(&'static str, Errno),
}

/// Why one client could not get a channel.
#[derive(Debug, thiserror::Error)]
enum ClientError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

impl ClientError {
    fn errno(&self) -> Errno {
        match self {
            Self::Image(e) => e.errno(),
            Self::Provider(e) => e.errno,
        }
    }
}

/// A server: its socket, its provider, its connected clients.
pub struct Server<P: ChannelProvider> {
    cfg: Config,
    provider: P,
    listener: Listener,
    info: ImageInfo,
    clients: BTreeMap<u16, UnixStream>,
    next_id: u16,
}

impl<P: ChannelProvider> Server<P> {
    /// Checks the image and binds the socket.
    pub fn bind(cfg: Config, provider: P) -> Result<Self, Error> {
        let (_, info) = image::open(&cfg.image)?;
        let listener = listen::bind(&cfg.socket, cfg.mode, cfg.gid)?;
        Ok(Self {
            cfg,
            provider,
            listener,
            info,
            clients: BTreeMap::new(),
            next_id: 1,
        })
    }

    /// The bound socket path.
    pub fn socket(&self) -> &std::path::Path {
        self.listener.path()
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Serves until `stop` is readable (a signalfd, an eventfd in tests). Channels stay with
    /// their guests; client sockets close (QEMU ignores that).
    pub fn run(&mut self, stop: BorrowedFd<'_>, on: &mut dyn FnMut(&Event)) -> Result<(), Error> {
        on(&Event::Listening {
            socket: self.listener.path().to_owned(),
            image: self.info.clone(),
            geometry: self.cfg.geometry,
            shm_size: self.cfg.geometry.shm_size(),
        });
        loop {
            let ids: Vec<u16> = self.clients.keys().copied().collect();
            let (stopped, accept, gone) = {
                let mut fds = vec![
                    PollFd::new(stop, PollFlags::POLLIN),
                    PollFd::new(self.listener.sock.as_fd(), PollFlags::POLLIN),
                ];
                fds.extend(
                    self.clients
                        .values()
                        .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN)),
                );
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(Error::Sys("poll", e)),
                }
                let ready = |p: &PollFd| p.revents().is_some_and(|r| !r.is_empty());
                let gone: Vec<u16> = ids
                    .iter()
                    .zip(&fds[2..])
                    .filter(|(_, p)| ready(p))
                    .map(|(id, _)| *id)
                    .collect();
                (ready(&fds[0]), ready(&fds[1]), gone)
            };
            if stopped {
                on(&Event::Stopped {
                    clients: self.clients.len(),
                });
                return Ok(());
            }
            // Departures first: a QEMU restarted at once finds its old id free.
            for id in gone {
                self.check_client(id, on);
            }
            if accept {
                self.accept_all(stop, on)?;
            }
        }
    }

    /// A client socket is readable: QEMU never writes, so it is the end (or junk, ignored).
    fn check_client(&mut self, id: u16, on: &mut dyn FnMut(&Event)) {
        let Some(s) = self.clients.get_mut(&id) else {
            return;
        };
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Ok(_) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
            Err(_) => {}
        }
        self.clients.remove(&id);
        on(&Event::Left { client: id });
    }

    fn accept_all(
        &mut self,
        stop: BorrowedFd<'_>,
        on: &mut dyn FnMut(&Event),
    ) -> Result<(), Error> {
        loop {
            let s = match self.listener.sock.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // The client left before we took it, or a transient shortage: keep serving.
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    return Ok(());
                }
            };
            self.serve(s, stop, on);
        }
    }

    fn alloc_id(&mut self) -> Option<u16> {
        for _ in 0..proto::MAX_ID {
            let id = self.next_id;
            self.next_id = if id == proto::MAX_ID { 1 } else { id + 1 };
            if !self.clients.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    fn make_channel(&mut self, stop: BorrowedFd<'_>) -> Result<(Channel, ImageInfo), ClientError> {
        let (img, info) = image::open_locked(&self.cfg.image, self.cfg.lock_wait, Some(stop))?;
        let ch = self.provider.create(&self.cfg.geometry, img.as_fd())?;
        // QEMU maps fstat's size as a BAR: it must be a power of two (QEMU asserts) of at
        // least a page.
        let size = nix::sys::stat::fstat(ch.shm.as_raw_fd())
            .map(|st| st.st_size as u64)
            .unwrap_or(0);
        if size != ch.size || !size.is_power_of_two() || size < 4096 {
            self.provider.destroy(&ch);
            return Err(ProviderError {
                detail: format!("fstat size {size}, reported {}", ch.size),
                ..ProviderError::new(Step::Shm, Errno::EINVAL)
            }
            .into());
        }
        // Handed over before anything is sent: from here the channel's life is its kick
        // eventfd's, so a server killed during the sends leaves no guest without its disk.
        if let Err(e) = self.provider.orphan(&ch) {
            self.provider.destroy(&ch);
            return Err(e.into());
        }
        Ok((ch, info))
    }

    fn serve(&mut self, s: UnixStream, stop: BorrowedFd<'_>, on: &mut dyn FnMut(&Event)) {
        let Some(id) = self.alloc_id() else {
            let _ = send_refusal(&s, Errno::EUSERS);
            on(&Event::Refused {
                client: 0,
                errno: Errno::EUSERS as i32,
                error: "65535 clients connected: no free ivshmem id".into(),
            });
            return;
        };
        // Blocking sends, bounded: eight bytes at a time never fill a socket buffer, but a
        // stuck peer must not stop the server.
        let _ = s.set_nonblocking(false);
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        let (ch, info) = match self.make_channel(stop) {
            Ok(x) => x,
            Err(e) => {
                let errno = e.errno();
                let _ = send_refusal(&s, errno);
                on(&Event::Refused {
                    client: id,
                    errno: errno as i32,
                    error: e.to_string(),
                });
                return;
            }
        };
        let msgs = proto::setup_messages(id, ch.shm.as_fd(), ch.kick.as_fd(), ch.call.as_fd());
        if let Err(e) = proto::send_all(s.as_fd(), &msgs) {
            // The client left: its copies of the descriptors went with its socket; ours go
            // now, and with the last kick reference the channel ends.
            on(&Event::Refused {
                client: id,
                errno: e as i32,
                error: format!("client left during the setup (sending: {})", e.desc()),
            });
            return;
        }
        let _ = s.set_nonblocking(true);
        on(&Event::Client {
            client: id,
            channel: ch.id,
            key: ch.key,
            image: info.path,
            size: info.size,
            shm_size: ch.size,
            data_off: ch.data_off,
        });
        self.clients.insert(id, s);
        // `ch` drops here: this process's copies of the shared memory and eventfds close.
    }
}

fn send_refusal(s: &UnixStream, e: Errno) -> Result<(), Errno> {
    proto::send(
        s.as_fd(),
        &proto::Msg {
            value: proto::refusal(e),
            fd: None,
        },
    )
}
