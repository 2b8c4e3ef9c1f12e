//! `vd-itest fake-ivshmem`: an ivshmem server for the guest driver's refusal tests (issue 12,
//! 87-guest-bad). It speaks the protocol exactly as `vd-ivshmem-server` does
//! (`vd_ivshmem::proto::setup_messages`: version 0, the client's id, the shared memory, the host
//! peer's kick eventfd, the client's call eventfd), but the shared memory is a memfd with a
//! crafted vd geometry line and nothing ever serves the ring. Connection N gets the N-th layout
//! of `--layouts` (later connections the last one).
//!
//! Layouts, each with exactly one defect that `vd_front` must refuse (`geometry::validate`):
//! - `zero`: all zero, no ring magic (`GeomError::Magic`).
//! - `data-beyond`: a valid ring whose data area runs past the end of the BAR
//!   (`GeomError::DataArea`).
//! - `kind`: a valid ring and data area, device kind NONE (`GeomError::Kind`).
//! - `tiny`: a 4096-byte BAR whose header claims a 64 x 64 ring (three pages):
//!   `GeomError::RingTooBig`.
//! - `silent`: a valid block channel with a data area; nobody answers, so the driver's size
//!   query times out (`ETIMEDOUT`).
//!
//! Input layouts (issue 13, 88-guest-input-fake; `fakeinput.rs`): an SPEC-13 event ring (kind
//! INPUT) that the server itself produces into, one phase per SIGUSR1:
//! - `input`: 200 frames through a 16-slot ring (wraps, kicks, interrupts by EVENT_IDX);
//! - `input-broken`: 20 frames, then a broken `rsp_prod`, then valid events the guest must
//!   ignore; `input-badlen`: the same with a slot whose length is 15.

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde::Serialize;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;
use vd_ivshmem::proto;
use vd_ring::mem::RawMem;
use vd_ring::{
    dev_kind, init_ring, Geometry, RingMem, OFF_DATA_LEN, OFF_DATA_OFF, OFF_DEV_KIND, OFF_DOORBELL,
    RING_PAGE,
};

/// Ring slots of every crafted ring (and slot size): what the real server makes by default.
const ENTRIES: u32 = 64;
const SLOT: u32 = 64;
/// Data area of the layouts that have a valid one.
const DATA_LEN: u32 = 1 << 20;
/// BAR2 size of the layouts other than `tiny`.
const SHM_SIZE: u64 = 2 << 20;

/// A shared-memory layout handed to one QEMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// All zero: no ring magic.
    Zero,
    /// A valid ring, the data area running past the end of the BAR.
    DataBeyond,
    /// A valid ring and data area, device kind NONE.
    Kind,
    /// A one-page BAR whose header claims a ring of three pages.
    Tiny,
    /// A valid block channel nobody serves.
    Silent,
    /// An input event ring the server produces into.
    Input,
    /// An input event ring the server breaks after a few frames.
    InputBroken,
    /// An input event ring the server breaks with a bad slot length.
    InputBadLen,
}

impl Layout {
    /// Every layout.
    pub const ALL: [Layout; 8] = [
        Self::Zero,
        Self::DataBeyond,
        Self::Kind,
        Self::Tiny,
        Self::Silent,
        Self::Input,
        Self::InputBroken,
        Self::InputBadLen,
    ];

    /// The name on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Zero => "zero",
            Self::DataBeyond => "data-beyond",
            Self::Kind => "kind",
            Self::Tiny => "tiny",
            Self::Silent => "silent",
            Self::Input => "input",
            Self::InputBroken => "input-broken",
            Self::InputBadLen => "input-badlen",
        }
    }

    /// What the guest driver must do with it (the refusal it logs).
    pub const fn expect(self) -> Verdict {
        match self {
            Self::Zero => Verdict::Refused(Defect::Magic),
            Self::DataBeyond => Verdict::Refused(Defect::DataArea),
            Self::Kind => Verdict::Refused(Defect::Kind),
            Self::Tiny => Verdict::Refused(Defect::RingTooBig),
            Self::Silent => Verdict::Accepted,
            Self::Input | Self::InputBroken | Self::InputBadLen => Verdict::Input,
        }
    }
}

impl Layout {
    /// Whether the fake produces input events on it.
    pub const fn is_input(self) -> bool {
        matches!(self, Self::Input | Self::InputBroken | Self::InputBadLen)
    }
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|l| l.name()).collect();
                format!("unknown layout {s:?} (one of {})", names.join(", "))
            })
    }
}

/// The refusal a layout is made for, named as `vd_front`'s `GeomError` (drivers/vd_front/
/// geometry.rs) names it in the guest's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Defect {
    /// `GeomError::Magic`.
    Magic,
    /// `GeomError::RingTooBig`.
    RingTooBig,
    /// `GeomError::DataArea`.
    DataArea,
    /// `GeomError::Kind`.
    Kind,
}

impl Defect {
    /// The guest's log text (`not a vd disk: <this>`), as `GeomError::name`.
    pub const fn guest_log(self) -> &'static str {
        match self {
            Self::Magic => "no vd ring magic",
            Self::RingTooBig => "ring larger than BAR2",
            Self::DataArea => "bad data area",
            Self::Kind => "device kind is not BLOCK",
        }
    }
}

/// What the guest driver does with a geometry line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It accepts the geometry (and goes on to the size query).
    Accepted,
    /// It makes the input device "vd-input".
    Input,
    /// `not a vd disk: ...`, ENODEV.
    Refused(Defect),
}

/// A crafted shared memory: its size (BAR2) and its first page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crafted {
    /// Bytes of the memfd (a power of two, at least a page: QEMU's requirement).
    pub size: u64,
    /// The first page (the rest of the memfd is zero).
    pub page: Vec<u8>,
}

/// A page-sized, 4-byte aligned buffer the ring helpers can write.
struct Page(Vec<u32>);

impl Page {
    fn new() -> Self {
        Self(vec![0; RING_PAGE / 4])
    }
    fn with<R>(&mut self, f: impl FnOnce(&RawMem) -> R) -> R {
        // SAFETY: the buffer is a live, exclusively borrowed `Vec<u32>` (4-byte aligned) of
        // RING_PAGE bytes for the whole call; `RawMem` only copies and does atomic accesses.
        let mem = unsafe { RawMem::new(self.0.as_mut_ptr().cast(), RING_PAGE) };
        f(&mem)
    }
    fn bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }
}

/// The shared memory for `layout`.
pub fn craft(layout: Layout) -> Crafted {
    if layout.is_input() {
        return craft_input();
    }
    let geo = match Geometry::new(ENTRIES, SLOT) {
        Ok(g) => g,
        Err(_) => unreachable!("64 x 64 is a valid ring geometry"),
    };
    let ring_end = geo.total_bytes() as u32;
    let mut page = Page::new();
    let size = match layout {
        Layout::Tiny => RING_PAGE as u64,
        _ => SHM_SIZE,
    };
    if layout != Layout::Zero {
        let (data_len, kind) = match layout {
            Layout::DataBeyond => (SHM_SIZE as u32, dev_kind::BLOCK),
            Layout::Kind => (DATA_LEN, dev_kind::NONE),
            Layout::Tiny => (RING_PAGE as u32, dev_kind::BLOCK),
            _ => (DATA_LEN, dev_kind::BLOCK),
        };
        // As the kernel's VDE_IOC_CREATE_SHM (drivers/vd_evtchn/domain.rs `create_shm`): the
        // ring, then the data-area line; the guest's doorbell rings peer 0, vector 0.
        page.with(|m| {
            init_ring(m, geo, 0);
            m.store_u32(OFF_DATA_OFF, ring_end);
            m.store_u32(OFF_DATA_LEN, data_len);
            m.store_u32(OFF_DEV_KIND, kind);
            m.store_u32(OFF_DOORBELL, 0);
        });
    }
    Crafted {
        size,
        page: page.bytes(),
    }
}

/// An SPEC-13 input event ring, as `VDI_IOC_VM_CREATE_SHM` makes it (the fake's smaller ring).
fn craft_input() -> Crafted {
    let geo = crate::fakeinput::geometry();
    let total = geo.total_bytes();
    let mut page = Page::new();
    page.with(|m| {
        m.store_u32(OFF_DATA_OFF, total as u32);
        m.store_u32(OFF_DATA_LEN, 0);
        m.store_u32(OFF_DEV_KIND, dev_kind::INPUT);
        m.store_u32(OFF_DOORBELL, 0);
        init_ring(m, geo, 1);
    });
    Crafted {
        size: (total as u64).next_power_of_two().max(RING_PAGE as u64),
        page: page.bytes(),
    }
}

/// One event; `--json` prints each as one line.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event<'a> {
    Listening {
        socket: &'a Path,
        layouts: &'a [Layout],
    },
    Client {
        client: u16,
        layout: Layout,
        shm_size: u64,
        /// What the guest should log: the refusal, or "size query times out".
        expect: String,
    },
    Refused {
        client: u16,
        error: String,
    },
    Left {
        client: u16,
    },
    Stopped {
        connections: u32,
        connected: usize,
    },
}

impl Event<'_> {
    fn message(&self) -> String {
        match self {
            Self::Listening { socket, layouts } => {
                let n: Vec<_> = layouts.iter().map(|l| l.name()).collect();
                format!("listening on {}: layouts {}", socket.display(), n.join(","))
            }
            Self::Client {
                client,
                layout,
                shm_size,
                expect,
            } => format!(
                "client {client}: layout {} ({shm_size} bytes of shared memory), the guest \
                 should: {expect}",
                layout.name()
            ),
            Self::Refused { client, error } => format!("client {client}: setup failed: {error}"),
            Self::Left { client } => format!("client {client}: disconnected (QEMU exited)"),
            Self::Stopped {
                connections,
                connected,
            } => format!("stopping: {connections} connection(s) served, {connected} still open"),
        }
    }
}

/// One served QEMU: its socket and everything it was sent (kept until it leaves).
struct Client {
    id: u16,
    sock: UnixStream,
    _fds: [OwnedFd; 3],
}

fn memfd(c: &Crafted) -> Result<OwnedFd> {
    let fd = nix::sys::memfd::memfd_create(
        c"vd-fake-ivshmem",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .context("memfd_create")?;
    nix::unistd::ftruncate(&fd, c.size as i64).context("ftruncate")?;
    let f = std::fs::File::from(fd);
    f.write_all_at(&c.page, 0)
        .context("write the crafted page")?;
    Ok(f.into())
}

fn eventfd() -> Result<OwnedFd> {
    Ok(EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
        .context("eventfd")?
        .into())
}

/// Sends client `id` its setup with `layout`.
fn serve(s: &UnixStream, id: u16, layout: Layout) -> Result<[OwnedFd; 3]> {
    let shm = memfd(&craft(layout))?;
    let (kick, call) = (eventfd()?, eventfd()?);
    s.set_nonblocking(false)?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let msgs = proto::setup_messages(id, shm.as_fd(), kick.as_fd(), call.as_fd());
    proto::send_all(s.as_fd(), &msgs).map_err(|e| anyhow::anyhow!("sending the setup: {e}"))?;
    s.set_nonblocking(true)?;
    Ok([shm, kick, call])
}

/// For an input layout, starts client `id`'s producer thread (`fakeinput::run`) on copies of
/// its shared memory, kick and call eventfds; returns the sender of its goes.
fn spawn_input(
    id: u16,
    layout: Layout,
    fds: &[OwnedFd; 3],
) -> Result<Option<std::sync::mpsc::Sender<()>>> {
    if !layout.is_input() {
        return Ok(None);
    }
    let [shm, kick, call] = fds;
    let (shm, kick, call) = (shm.try_clone()?, kick.try_clone()?, call.try_clone()?);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("fake-input-{id}"))
        .spawn(move || {
            crate::fakeinput::run(
                id,
                match layout {
                    Layout::InputBroken => crate::fakeinput::Mode::BrokenProd,
                    Layout::InputBadLen => crate::fakeinput::Mode::BrokenLen,
                    _ => crate::fakeinput::Mode::Normal,
                },
                shm,
                kick,
                call,
                rx,
                |line| {
                    use std::io::Write;
                    let _ = writeln!(std::io::stdout().lock(), "{line}");
                },
            )
        })
        .context("spawn the producer thread")?;
    Ok(Some(tx))
}

/// The subcommand: serves until SIGTERM/SIGINT; SIGUSR1 starts the next phase of every input
/// client.
pub fn run(socket: &Path, layouts: &[Layout], json: bool) -> Result<()> {
    if layouts.is_empty() {
        bail!("--layouts: give at least one layout");
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGUSR1);
    mask.thread_block()?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("remove {}", socket.display())),
    }
    let listener =
        UnixListener::bind(socket).with_context(|| format!("bind {}", socket.display()))?;
    listener.set_nonblocking(true)?;
    let emit = |e: &Event| {
        use std::io::Write;
        let line = if json {
            serde_json::to_string(e).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
        } else {
            format!("fake-ivshmem: {}", e.message())
        };
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    };
    emit(&Event::Listening { socket, layouts });
    let mut clients: Vec<Client> = vec![];
    // The producer threads' goes (input layouts).
    let mut gos: Vec<std::sync::mpsc::Sender<()>> = vec![];
    let mut served: u32 = 0;
    loop {
        let (stop, accept, gone) = {
            let mut fds = vec![
                PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            ];
            fds.extend(
                clients
                    .iter()
                    .map(|c| PollFd::new(c.sock.as_fd(), PollFlags::POLLIN)),
            );
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => bail!("poll: {e}"),
            }
            let ready = |p: &PollFd| p.revents().is_some_and(|r| !r.is_empty());
            let gone: Vec<u16> = clients
                .iter()
                .zip(&fds[2..])
                .filter(|(_, p)| ready(p))
                .map(|(c, _)| c.id)
                .collect();
            (ready(&fds[0]), ready(&fds[1]), gone)
        };
        let mut stop = stop;
        if stop {
            // SIGUSR1: the next phase of every input client; SIGTERM/SIGINT: stop.
            stop = false;
            while let Ok(Some(si)) = sfd.read_signal() {
                if si.ssi_signo == Signal::SIGUSR1 as u32 {
                    // (A thread that finished its phases is gone: its send fails.)
                    for go in &gos {
                        let _ = go.send(());
                    }
                } else {
                    stop = true;
                }
            }
        }
        if stop {
            emit(&Event::Stopped {
                connections: served,
                connected: clients.len(),
            });
            drop(listener);
            let _ = std::fs::remove_file(socket);
            return Ok(());
        }
        for id in gone {
            let Some(i) = clients.iter().position(|c| c.id == id) else {
                continue;
            };
            let mut buf = [0u8; 64];
            match clients[i].sock.read(&mut buf) {
                // QEMU never writes; anything else is ignored.
                Ok(n) if n > 0 => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                _ => {}
            }
            clients.remove(i);
            emit(&Event::Left { client: id });
        }
        if accept {
            loop {
                let s = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => bail!("accept: {e}"),
                };
                served += 1;
                let id = u16::try_from(served).unwrap_or(u16::MAX);
                let layout = layouts[(served as usize - 1).min(layouts.len() - 1)];
                match serve(&s, id, layout) {
                    Ok(fds) => {
                        let c = craft(layout);
                        match spawn_input(id, layout, &fds) {
                            // Kept after the client leaves: its last phase reports the ring
                            // after QEMU exited.
                            Ok(go) => gos.extend(go),
                            Err(e) => {
                                emit(&Event::Refused {
                                    client: id,
                                    error: format!("{e:#}"),
                                });
                                continue;
                            }
                        }
                        let expect = match layout.expect() {
                            Verdict::Input => "make the evdev device vd-input".to_string(),
                            Verdict::Accepted => "time out its size query".to_string(),
                            Verdict::Refused(d) => {
                                format!("log 'not a vd disk: {}'", d.guest_log())
                            }
                        };
                        emit(&Event::Client {
                            client: id,
                            layout,
                            shm_size: c.size,
                            expect,
                        });
                        clients.push(Client {
                            id,
                            sock: s,
                            _fds: fds,
                        });
                    }
                    Err(e) => emit(&Event::Refused {
                        client: id,
                        error: format!("{e:#}"),
                    }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// What the shared memory looks like to QEMU; whether vd_front refuses each layout for its
    /// reason is checked by the guest itself (87-guest-bad), not by a copy of its checks here.
    #[test]
    fn every_layout_is_a_size_qemu_takes() {
        for l in Layout::ALL {
            let c = craft(l);
            assert!(
                c.size.is_power_of_two() && c.size >= 4096,
                "{l:?}: QEMU needs 2^n >= 4096"
            );
            assert_eq!(c.page.len(), RING_PAGE);
        }
    }

    /// Each bad layout is the valid `silent` layout with one thing changed: fixing that thing
    /// makes the guest accept it.
    #[test]
    fn each_defect_is_the_only_one() {
        let good = craft(Layout::Silent);
        let set = |page: &mut Vec<u8>, off: usize, v: u32| {
            page[off..off + 4].copy_from_slice(&v.to_ne_bytes())
        };
        let mut p = craft(Layout::Kind).page;
        set(&mut p, OFF_DEV_KIND, dev_kind::BLOCK);
        assert_eq!(p, good.page);
        let mut p = craft(Layout::DataBeyond).page;
        set(&mut p, OFF_DATA_LEN, DATA_LEN);
        assert_eq!(p, good.page);
        // tiny: the same ring (its data line aside) in a BAR too small for it.
        let tiny = craft(Layout::Tiny);
        assert!(tiny.size < SHM_SIZE);
        let mut p = tiny.page;
        set(&mut p, OFF_DATA_LEN, DATA_LEN);
        assert_eq!(p, good.page);
        assert_eq!(craft(Layout::Zero).page, vec![0; RING_PAGE]);
        assert_eq!(craft(Layout::Zero).size, good.size);
    }

    #[test]
    fn layouts_parse_by_name() {
        for l in Layout::ALL {
            assert_eq!(l.name().parse::<Layout>(), Ok(l));
        }
        assert!("huge"
            .parse::<Layout>()
            .unwrap_err()
            .contains("data-beyond"));
    }

    /// The whole exchange against a QEMU stand-in: the five messages of the real server, the
    /// memfd with the crafted page and size, two eventfds.
    #[test]
    fn a_client_gets_the_real_servers_setup_with_its_layout() {
        let (a, b) = UnixStream::pair().unwrap();
        let fds = serve(&a, 3, Layout::Kind).unwrap();
        let mut got = vec![];
        for _ in 0..5 {
            got.push(proto::recv(b.as_fd()).unwrap().unwrap());
        }
        let v: Vec<_> = got.iter().map(|m| (m.value, m.fds.len())).collect();
        assert_eq!(v, [(0, 0), (3, 0), (-1, 1), (0, 1), (3, 1)]);
        let shm = std::fs::File::from(got[2].fds[0].try_clone().unwrap());
        assert_eq!(shm.metadata().unwrap().len(), SHM_SIZE);
        let mut page = vec![0u8; RING_PAGE];
        shm.read_exact_at(&mut page, 0).unwrap();
        assert_eq!(page, craft(Layout::Kind).page);
        // The kick eventfd the client got is the one the server keeps.
        let one = 1u64.to_ne_bytes();
        nix::unistd::write(&got[3].fds[0], &one).unwrap();
        let mut v = [0u8; 8];
        nix::unistd::read(fds[1].as_raw_fd(), &mut v).unwrap();
        assert_eq!(u64::from_ne_bytes(v), 1);
    }
}
