//! `vd-ivshmem-server --input VM`: gives one stock QEMU guest a vd input device.
//!
//! The guest's `ivshmem-doorbell` device gets, instead of a disk channel, a vd_input_irq VM
//! sink whose event ring lives in the shared memory (`VDI_IOC_VM_CREATE_SHM`; the geometry line
//! says `dev_kind::INPUT`): the guest's vd_front makes it an evdev device. The call eventfd is
//! QEMU's MSI-X vector 0 irqfd, the kick eventfd its doorbell ioeventfd, so an event goes host
//! input device -> vd_input_irq -> ring + interrupt without reaching QEMU's or this server's
//! userspace. This server also tells the module which threads are the guest's vCPUs: QEMU's
//! `CPU n/KVM` threads, found through the client's `SO_PEERCRED` pid and attached
//! (`VDI_IOC_VCPU_ATTACH`) as they appear, so events wait in order while every vCPU is
//! descheduled or stopped.
//!
//! Unlike a disk channel, the sink is this server's open file: it lives while the guest's QEMU
//! is connected and this server runs (a restarted server cannot adopt a running guest's input
//! ring: the guest's input device goes silent). One guest at a time (a VM id is one VM): a
//! second QEMU is refused with `EBUSY` while the first is connected.

use crate::listen::{self, Listener};
use crate::proto;
use crate::provider::doorbell;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use serde::Serialize;
use std::collections::BTreeSet;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;
use vd_sys::input::Input;
use vd_uapi::{VDI_FEAT_ATTACH, VDI_FEAT_SHM};

/// How often a connected guest's QEMU is looked at for new vCPU threads.
const RESCAN: Duration = Duration::from_millis(250);

/// What the input server serves.
#[derive(Clone, Debug)]
pub struct InputConfig {
    /// UNIX socket to listen on.
    pub socket: PathBuf,
    /// Socket file mode.
    pub mode: u32,
    /// Socket file group.
    pub gid: Option<u32>,
    /// The VM id of the sink (what `vdctl input focus` names).
    pub vm_id: u32,
    /// Event ring entries (a power of two, 8..=4096).
    pub entries: u32,
    /// The vd_input_irq device.
    pub device: PathBuf,
}

/// What happened, for the log and `--json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum InputEvent {
    /// Listening.
    Listening {
        socket: PathBuf,
        vm_id: u32,
        entries: u32,
    },
    /// A QEMU got the input ring.
    Client {
        client: u16,
        pid: Option<u32>,
        vm_id: u32,
        shm_size: u64,
        /// Where the guest device's capabilities come from.
        capabilities: String,
    },
    /// A vCPU thread of the client's QEMU is followed.
    Attached { client: u16, vcpu: u32, tid: u32 },
    /// A vCPU thread could not be attached.
    AttachFailed {
        client: u16,
        tid: u32,
        errno: i32,
        error: String,
    },
    /// The client's QEMU left: its VM sink is gone.
    Left { client: u16 },
    /// A client was refused.
    Refused {
        client: u16,
        errno: i32,
        error: String,
    },
    /// Stopped by a signal.
    Stopped,
}

impl InputEvent {
    /// One log line.
    pub fn message(&self) -> String {
        match self {
            Self::Listening {
                socket,
                vm_id,
                entries,
            } => format!(
                "listening on {} for VM {vm_id}'s input ({entries}-event ring)",
                socket.display()
            ),
            Self::Client {
                client,
                pid,
                vm_id,
                shm_size,
                capabilities,
            } => format!(
                "client {client} (QEMU pid {}) is VM {vm_id}'s input ({shm_size}-byte shared \
                 memory; capabilities {capabilities})",
                pid.map_or("unknown".into(), |p| p.to_string())
            ),
            Self::Attached { client, vcpu, tid } => {
                format!("client {client}: vCPU {vcpu} (thread {tid}) followed")
            }
            Self::AttachFailed {
                client, tid, error, ..
            } => {
                format!("client {client}: thread {tid} not followed: {error}")
            }
            Self::Left { client } => format!("client {client} left; its VM sink is gone"),
            Self::Refused { client, error, .. } => format!("client {client} refused: {error}"),
            Self::Stopped => "stopping; the connected guest's input device goes silent".into(),
        }
    }
}

/// The connected guest.
struct Guest {
    id: u16,
    sock: UnixStream,
    /// Its VM sink (this file is the VM).
    sink: Input,
    pid: Option<u32>,
    /// Threads attached (or found gone).
    seen: BTreeSet<u32>,
}

/// The input server.
pub struct InputServer {
    cfg: InputConfig,
    listener: Listener,
    guest: Option<Guest>,
    next_id: u16,
}

fn sys<T>(what: &str, r: Result<T, Errno>) -> Result<T, (Errno, String)> {
    r.map_err(|e| (e, format!("{what}: {}", e.desc())))
}

/// The pid of the process on the other end of `s`.
fn peer_pid(s: &UnixStream) -> Option<u32> {
    let mut c = nix::libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<nix::libc::ucred>() as nix::libc::socklen_t;
    // SAFETY: `c` and `len` are valid out pointers of the sizes `SO_PEERCRED` writes.
    let r = unsafe {
        nix::libc::getsockopt(
            s.as_raw_fd(),
            nix::libc::SOL_SOCKET,
            nix::libc::SO_PEERCRED,
            (&raw mut c).cast(),
            &mut len,
        )
    };
    (r == 0 && c.pid > 0).then_some(c.pid as u32)
}

impl InputServer {
    /// Checks the device and binds the socket.
    pub fn bind(cfg: InputConfig) -> anyhow::Result<Self> {
        use anyhow::Context;
        let dev = Input::open_path(&cfg.device).with_context(|| {
            format!(
                "open {}: is vd_input_irq loaded (modprobe vd_input_irq)?",
                cfg.device.display()
            )
        })?;
        let v = dev.version().context("VD_IOC_VERSION")?;
        let need = VDI_FEAT_SHM | VDI_FEAT_ATTACH;
        anyhow::ensure!(
            v.driver == vd_uapi::VdDriver::Input as u32 && v.features & need == need,
            "{}: not a vd_input_irq with shared-memory rings and thread attach (driver {}, \
             features {:#x}): load this release's module",
            cfg.device.display(),
            v.driver,
            v.features
        );
        anyhow::ensure!(cfg.vm_id != 0, "--input 0: VM ids start at 1");
        let listener = listen::bind(&cfg.socket, cfg.mode, cfg.gid)?;
        Ok(Self {
            cfg,
            listener,
            guest: None,
            next_id: 1,
        })
    }

    /// Serves until `stop` is readable.
    pub fn run(
        &mut self,
        stop: BorrowedFd<'_>,
        on: &mut dyn FnMut(&InputEvent),
    ) -> anyhow::Result<()> {
        on(&InputEvent::Listening {
            socket: self.listener.path().to_owned(),
            vm_id: self.cfg.vm_id,
            entries: self.cfg.entries,
        });
        loop {
            let (stopped, accept, left) = {
                let mut fds = vec![
                    PollFd::new(stop, PollFlags::POLLIN),
                    PollFd::new(self.listener.sock.as_fd(), PollFlags::POLLIN),
                ];
                if let Some(g) = &self.guest {
                    fds.push(PollFd::new(g.sock.as_fd(), PollFlags::POLLIN));
                }
                let timeout = if self.guest.is_some() {
                    PollTimeout::try_from(RESCAN.as_millis() as i32).unwrap_or(PollTimeout::NONE)
                } else {
                    PollTimeout::NONE
                };
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => anyhow::bail!("poll: {}", e.desc()),
                }
                let ready = |p: &PollFd| p.revents().is_some_and(|r| !r.is_empty());
                (
                    ready(&fds[0]),
                    ready(&fds[1]),
                    fds.get(2).is_some_and(ready),
                )
            };
            if stopped {
                on(&InputEvent::Stopped);
                return Ok(());
            }
            if left && self.client_gone() {
                if let Some(g) = self.guest.take() {
                    on(&InputEvent::Left { client: g.id });
                }
            }
            if accept {
                self.accept_all(on);
            }
            self.attach_vcpus(on);
        }
    }

    /// The guest's socket is readable: QEMU never writes, so it is the end (or junk, ignored).
    fn client_gone(&mut self) -> bool {
        let Some(g) = &mut self.guest else {
            return false;
        };
        let mut buf = [0u8; 64];
        match g.sock.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ),
        }
    }

    fn accept_all(&mut self, on: &mut dyn FnMut(&InputEvent)) {
        loop {
            let s = match self.listener.sock.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        tracing::warn!("accept: {e}");
                    }
                    return;
                }
            };
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            let _ = s.set_nonblocking(false);
            let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
            if let Some(g) = &self.guest {
                let error = format!(
                    "VM {} already has its guest (client {}, QEMU pid {}): one QEMU per VM id",
                    self.cfg.vm_id,
                    g.id,
                    g.pid.map_or("unknown".into(), |p| p.to_string())
                );
                self.refuse(&s, id, Errno::EBUSY, error, on);
                continue;
            }
            match self.setup(&s, id) {
                Ok((sink, size, capabilities)) => {
                    let pid = peer_pid(&s);
                    let _ = s.set_nonblocking(true);
                    on(&InputEvent::Client {
                        client: id,
                        pid,
                        vm_id: self.cfg.vm_id,
                        shm_size: size,
                        capabilities,
                    });
                    self.guest = Some(Guest {
                        id,
                        sock: s,
                        sink,
                        pid,
                        seen: BTreeSet::new(),
                    });
                }
                Err((errno, error)) => self.refuse(&s, id, errno, error, on),
            }
        }
    }

    fn refuse(
        &self,
        s: &UnixStream,
        id: u16,
        errno: Errno,
        error: String,
        on: &mut dyn FnMut(&InputEvent),
    ) {
        let _ = proto::send(
            s.as_fd(),
            &proto::Msg {
                value: proto::refusal(errno),
                fd: None,
            },
        );
        on(&InputEvent::Refused {
            client: id,
            errno: errno as i32,
            error,
        });
    }

    /// Makes the VM sink in shared memory, writes the capabilities block, and sends QEMU the
    /// setup. Returns the sink, the memory's size and where the capabilities came from.
    fn setup(&self, s: &UnixStream, id: u16) -> Result<(Input, u64, String), (Errno, String)> {
        let eventfd = || {
            sys(
                "eventfd",
                EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC),
            )
            .map(OwnedFd::from)
        };
        let sink = Input::open_path(&self.cfg.device).map_err(|e| {
            let errno = Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32));
            (errno, format!("open {}: {e}", self.cfg.device.display()))
        })?;
        let (kick, call) = (eventfd()?, eventfd()?);
        let (shm, size) = sys(
            "VDI_IOC_VM_CREATE_SHM (is the VM id taken? `vdctl input vm list`)",
            sink.vm_create_shm(
                self.cfg.vm_id,
                self.cfg.entries,
                Some(call.as_raw_fd()),
                doorbell(proto::HOST_PEER, 0),
            ),
        )?;
        sys("VDI_IOC_BIND_KICK", sink.bind_kick(Some(kick.as_raw_fd())))?;
        let caps = write_caps(&sink, shm.as_fd(), size)?;
        let msgs = proto::setup_messages(id, shm.as_fd(), kick.as_fd(), call.as_fd());
        sys(
            "sending the setup (the client left)",
            proto::send_all(s.as_fd(), &msgs),
        )?;
        // Our copies of the memory and eventfds close here; QEMU and the sink hold theirs.
        Ok((sink, size, caps))
    }

    /// Attaches the guest's QEMU vCPU threads not seen yet.
    fn attach_vcpus(&mut self, on: &mut dyn FnMut(&InputEvent)) {
        let Some(g) = &mut self.guest else { return };
        let Some(pid) = g.pid else { return };
        let Ok(threads) = vd_sys::qemu::vcpu_threads(pid) else {
            return;
        };
        for t in threads {
            if !g.seen.insert(t.tid) {
                continue;
            }
            match g.sink.vcpu_attach(t.tid) {
                Ok(()) => on(&InputEvent::Attached {
                    client: g.id,
                    vcpu: t.index,
                    tid: t.tid,
                }),
                Err(e) => on(&InputEvent::AttachFailed {
                    client: g.id,
                    tid: t.tid,
                    errno: e as i32,
                    error: format!("VDI_IOC_VCPU_ATTACH: {}", e.desc()),
                }),
            }
        }
    }
}

/// Fills the capabilities block of a new input ring's shared memory (`vd_ring::caps`, at the
/// geometry line's data area) with the union of the devices routed now, before QEMU gets the
/// memory. With nothing routed (or a module without the block) it stays zero: the guest uses its
/// default set. Returns a description for the log.
fn write_caps(adm: &Input, shm: BorrowedFd<'_>, size: u64) -> Result<String, (Errno, String)> {
    use vd_ring::caps::CAPS_LEN;
    let Some((caps, names)) =
        vd_sys::evdev::routed_caps(adm).map_err(|e| (Errno::EIO, format!("capabilities: {e}")))?
    else {
        return Ok("none routed: the guest's default set".into());
    };
    let len = std::num::NonZeroUsize::new(size as usize).ok_or((Errno::EINVAL, "empty".into()))?;
    // SAFETY: a fresh shared mapping of the shmem file, unmapped below; only this function
    // touches it, with bounds-checked copies.
    let p = sys("mmap the input ring", unsafe {
        nix::sys::mman::mmap(
            None,
            len,
            nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
            nix::sys::mman::MapFlags::MAP_SHARED,
            shm,
            0,
        )
    })?;
    // SAFETY: `p` maps `len` bytes, and nothing else writes them before QEMU gets the file.
    let mem = unsafe { std::slice::from_raw_parts_mut(p.as_ptr().cast::<u8>(), len.get()) };
    let word = |o: usize| {
        mem.get(o..o + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let (off, dlen) = (word(vd_ring::OFF_DATA_OFF), word(vd_ring::OFF_DATA_LEN));
    let out = if dlen >= CAPS_LEN {
        match mem.get_mut(off..off.saturating_add(CAPS_LEN)) {
            Some(d) => {
                d.copy_from_slice(&caps.encode());
                Ok(format!("from {}", names.join(", ")))
            }
            None => Err((
                Errno::EINVAL,
                "the capabilities block is outside the memory".into(),
            )),
        }
    } else {
        Ok("not given: the module reserves no capabilities block (older vd_input_irq)".into())
    };
    // SAFETY: the mapping made above, unmapped once.
    let _ = unsafe { nix::sys::mman::munmap(p, len.get()) };
    out
}
