//! `vd-itest`: integration checks of the vd modules, run inside the test VM by
//! `scripts/vmtests/*.sh`. Each subcommand prints one `ok:` line per check and exits non-zero
//! with the failed check's reason.

mod chan;
mod evtchn;
mod fakeinput;
mod fakeshm;
mod hops;
mod hostile;
mod input;
mod netprobe;
mod qmpcheck;
mod qtestguest;
mod shm;
mod sriov;
mod vddtest;
mod vfio;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "vd-itest")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Channel lifecycle, argument validation, echo and null backends, statistics.
    EvtchnBasic,
    /// A ring with garbage indices/lengths fails alone; a second channel keeps working.
    EvtchnHostile,
    /// The block backend against a host file.
    EvtchnBlock {
        /// Backing file (created and sized by the test).
        #[arg(long, default_value = "/tmp/vd-disk.img")]
        file: String,
    },
    /// A userspace backend serving the ring through its own mapping.
    EvtchnUser,
    /// Shmem channels (`VDE_IOC_CREATE_SHM`): the ring and data area through the file,
    /// data-area block requests on a disk image, the device mapping, bad requests.
    EvtchnShm {
        /// Disk image (created and sized by the test).
        #[arg(long, default_value = "/tmp/vd-shm.img")]
        file: String,
    },
    /// `VDE_IOC_ORPHAN`: outlives its domain, pins the module, goes with its kick eventfd.
    /// Unloads vd_evtchn at the end.
    EvtchnOrphan {
        #[arg(long, default_value = "/tmp/vd-orphan.img")]
        file: String,
    },
    /// `VDE_IOC_ORPHAN` racing with binds of the same channel: an orphan always keeps a kick.
    EvtchnOrphanRace {
        #[arg(long, default_value_t = 30)]
        rounds: u32,
    },
    /// `VDE_IOC_CREATE_SHM` whose answer cannot be copied out: EFAULT, nothing left.
    EvtchnShmEfault,
    /// A hostile holder truncates a channel's file: only that channel breaks.
    EvtchnShmTruncate {
        #[arg(long, default_value = "/tmp/vd-trunc.img")]
        file: String,
    },
    /// Save a channel with requests in flight, restore it in a new domain, nothing is lost.
    EvtchnRestore,
    /// One of the hardening checks of issue 11 (`bind-race`, `kick-overflow`, `attach-types`,
    /// `create-efault`, `save-user`, ...).
    EvtchnCase { name: String },
    /// Echo traffic on several channels until killed (for the VMM-kill test).
    EvtchnStress {
        /// Channels.
        #[arg(long, default_value_t = 4)]
        channels: u32,
    },
    /// SR-IOV: lease/release checks, errors and events on one VF (needs vfio-pci to accept it).
    SriovBasic {
        #[arg(long)]
        vf: String,
    },
    /// SR-IOV: permission checks as nobody (and with a file root opened).
    SriovUnpriv {
        #[arg(long)]
        vf: String,
    },
    /// SR-IOV: `procs` processes race to lease the same VF, `rounds` times.
    SriovRace {
        #[arg(long)]
        vf: String,
        #[arg(long, default_value_t = 8)]
        procs: u32,
        #[arg(long, default_value_t = 5)]
        rounds: u32,
    },
    /// One racer of sriov-race (internal).
    SriovRaceChild {
        #[arg(long)]
        vf: String,
        #[arg(long)]
        vm: u64,
        #[arg(long)]
        go_at: u64,
        #[arg(long, default_value_t = 500)]
        hold_ms: u64,
    },
    /// SR-IOV: lease a VF and hold it until killed, printing events.
    SriovHold {
        #[arg(long)]
        vf: String,
        #[arg(long)]
        vm: u64,
        #[arg(long)]
        keep_host: bool,
    },
    /// SR-IOV: open a leased VF through VFIO as a VMM would (IOMMU group, config space, DMA map).
    VfioOpen {
        #[arg(long)]
        vf: String,
        /// Keep the device open this long before closing it.
        #[arg(long, default_value_t = 0)]
        hold_ms: u64,
    },
    /// SR-IOV: send frames from a leased igb VF through VFIO (userspace driver of its transmit
    /// queue, as a guest's igbvf would), at about `bytes_per_s` for `ms` milliseconds.
    VfioTx {
        #[arg(long)]
        vf: String,
        #[arg(long, default_value_t = 3000)]
        ms: u64,
        #[arg(long, default_value_t = 200_000)]
        bytes_per_s: u64,
    },
    /// SR-IOV: reassignment driven by frames sent on the VF's netdev.
    SriovReassign {
        #[arg(long)]
        vf: String,
        #[arg(long)]
        ifname: String,
    },
    /// SR-IOV: a passed-through VF whose holder pushes nothing is counted from its PF's mirror
    /// statistics (igb): frames sent on its netdev first, then leased, baseline, rate 0, swap.
    SriovMirror {
        #[arg(long)]
        vf: String,
        #[arg(long)]
        ifname: String,
    },
    /// SR-IOV: per-VF transmit rate limits through the PF driver, set and read back (PF link up).
    SriovRate {
        #[arg(long)]
        vf: String,
    },
    /// Benchmark: VF moves igbvf -> vfio-pci -> igbvf by the module (lease/release) beside the
    /// same moves by a shell script writing driver_override, unbind and drivers_probe.
    SriovBench {
        #[arg(long)]
        vf: String,
        /// Round trips per path.
        #[arg(long, default_value_t = 15)]
        repeats: usize,
        /// The shell script: `sh SCRIPT VF DRIVER` moves VF to DRIVER ("" for normal matching).
        #[arg(long)]
        script: String,
    },
    /// Benchmark: echo throughput and requests per notification at ring sizes 64..4096, a
    /// process as the frontend and the in-kernel echo backend.
    EvtchnThroughput {
        /// Requests per ring size.
        #[arg(long, default_value_t = 20000)]
        requests: u64,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The input test hardware alone: a uinput device and its evdev node (no module needed).
    InputHw {
        /// Device name.
        #[arg(long, default_value = "vd-itest hw")]
        name: String,
        /// Keep the device until killed.
        #[arg(long)]
        hold: bool,
    },
    /// Hostile arguments to every ioctl of the three devices, seeded and randomised.
    Hostile(hostile::Args),
    /// vd_input_irq: VM sink, routing by name/phys/capability, grab, frames in order, stats.
    InputBasic,
    /// vd_input_irq: delivery that follows a vCPU child (SIGSTOP/SIGCONT), the 10,000-event
    /// burst, explicit pause, a vCPU that dies with events queued.
    InputSched,
    /// vd_input_irq: a stock QEMU's vCPU threads followed by TID (VDI_IOC_VCPU_ATTACH):
    /// delivery while it waits, a burst queued while it is SIGSTOPped, its errnos, QEMU killed
    /// with events queued, no hook left.
    InputAttach,
    /// vd_input_irq: two VMs, focus switching under load: whole frames only, nothing lost.
    InputFocus {
        /// Frames written (5 events each).
        #[arg(long, default_value_t = 8000)]
        frames: usize,
    },
    /// Real guests (8b-guest-input-focus): focus switches between VMs A and B (each a stock QEMU
    /// on vd-ivshmem-server --input) under a writer's load; prints what the guests must add up to.
    InputFocusGuests {
        #[arg(long)]
        vm_a: u32,
        #[arg(long)]
        vm_b: u32,
        /// Frames written (5 events each; at most 1,600 so a guest's evdev client never overflows).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1600))]
        frames: u64,
    },
    /// vd_input_irq: uinput devices unplugged while routed; the sink keeps working.
    InputUnplug,
    /// vd_input_irq: a multitouch device's burst queued behind a stopped vCPU and coalesced:
    /// every position stays with its slot.
    InputMt,
    /// vd_input_irq: a vCPU thread outlives its VMM's file: rmmod is refused (EWOULDBLOCK)
    /// while it lives and succeeds once it is gone. Unloads the module.
    InputUnload,
    /// vd_input_irq: a stand-in VMM with events queued behind a stopped vCPU, until killed.
    InputHold {
        /// Name of its uinput device (routed by this name, grabbed).
        #[arg(long, default_value = "vd-itest hold")]
        name: String,
        /// VM id.
        #[arg(long, default_value_t = 6001)]
        vm: u32,
    },
    /// Benchmark: delivery latency vs. a userspace forwarder, queue flush time.
    InputBench {
        /// Latency rounds per path.
        #[arg(long, default_value_t = 2000)]
        rounds: usize,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// vd_input_irq: feeds a stock QEMU guest's vd input device (82-guest-input).
    InputFeed {
        /// The guest's VM id (`vd-ivshmem-server --input VM`).
        #[arg(long)]
        vm: u32,
        /// Frames before the end marker.
        #[arg(long, default_value_t = 300)]
        frames: usize,
        /// SIGSTOP this process (the guest's QEMU) for the burst, SIGCONT after.
        #[arg(long)]
        stop_pid: Option<u32>,
        /// Pause the guest with QMP `stop` on this socket for the burst, `cont` after.
        #[arg(long)]
        qmp_pause: Option<std::path::PathBuf>,
    },
    /// The comparison path of 82-guest-input: uinput devices for QEMU's input-linux objects.
    InputFeedVirtio {
        /// Where to write the devices' evdev nodes (`KBD=...`, `TAB=...`).
        #[arg(long)]
        nodes: std::path::PathBuf,
        /// Go files: round R starts when `<go>.R` exists.
        #[arg(long)]
        go: std::path::PathBuf,
        /// File with the guest's QEMU pid (read for round 2).
        #[arg(long)]
        pid_file: std::path::PathBuf,
        /// Frames of round 1.
        #[arg(long, default_value_t = 300)]
        frames: usize,
    },
    /// vd_input_irq: a VM sink whose ring is a shmem file (for `ivshmem-doorbell`).
    InputShm,
    /// make bench: a vd disk request's time hop by hop, from vd_front's and vd_evtchn's traces of
    /// the same requests (`hops.rs`).
    Hops(hops::Args),
    /// make bench: host uinput write -> a guest process's read, vd_input_irq vs input-linux +
    /// virtio-keyboard in one guest (the host side; the guest runs `input-echo`).
    InputLatency(input::LatencyArgs),
    /// The capabilities of input devices (their sysfs directories), as the guest's vd input
    /// device should have them (`CAPS ...`; 8c-guest-input-caps runs it in the guest).
    InputCaps {
        #[arg(long, required = true)]
        sys: Vec<std::path::PathBuf>,
    },
    /// A routed uinput keyboard+mouse and tablet named PREFIX...; prints their union (`CAPS
    /// ...`), then holds them until killed.
    InputDevices {
        #[arg(long)]
        prefix: String,
    },
    /// In the guest: echoes each key event of the evdev DEVICEs (slot i = the i-th) into the
    /// echo memory SHM (the ivshmem-plain BAR file), until KEY_F12 is released on every one.
    InputEcho {
        #[arg(long)]
        shm: std::path::PathBuf,
        #[arg(required = true)]
        devices: Vec<std::path::PathBuf>,
    },
    /// vd_input_irq: what following threads (preempt notifiers) costs every context switch.
    InputSwitchCost {
        /// Samples per configuration (alternated).
        #[arg(long, default_value_t = 15)]
        samples: usize,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// vdd's QMP client against a real QEMU (24-qmp-qemu): capabilities, typed error answers,
    /// the STOP event during `stop`, `cont` and RESUME; a SIGSTOPped QEMU times out.
    /// A test's hand on a QEMU: `stop` or `cont` its vCPUs through QMP (waits for the answer).
    QmpVcpus {
        #[arg(long)]
        qmp: std::path::PathBuf,
        /// stop | cont
        action: String,
    },
    QmpCheck {
        /// QEMU's QMP socket.
        #[arg(long)]
        qmp: std::path::PathBuf,
        /// QEMU's pid: also check that a QEMU that does not answer (SIGSTOP) cannot hang the
        /// client.
        #[arg(long)]
        qemu_pid: Option<u32>,
    },
    /// vdd tests: fake QEMUs (QMP peers) until killed, one per NAME=SOCKET, commands logged.
    FakeQmp {
        #[arg(long = "vm", required = true)]
        vms: Vec<String>,
        #[arg(long)]
        log: String,
        /// Peers (by NAME) whose device_add fails.
        #[arg(long)]
        fail_device_add: Vec<String>,
    },
    /// Guest tests (87-guest-bad): an ivshmem server that hands QEMU connection N the N-th
    /// crafted shared-memory layout (zero, data-beyond, kind, tiny, silent; later connections
    /// the last) with the real server's messages, and never serves a ring; until SIGTERM.
    FakeIvshmem {
        #[arg(long)]
        socket: std::path::PathBuf,
        /// Comma-separated layouts.
        #[arg(long, value_delimiter = ',', required = true)]
        layouts: Vec<fakeshm::Layout>,
        /// One JSON object per event.
        #[arg(long)]
        json: bool,
    },
    /// A vd disk's guest played through QEMU's qtest protocol (no guest OS): a stock QEMU with
    /// an ivshmem-doorbell device on a vd-ivshmem-server socket, its BARs programmed, verified
    /// block I/O through the ring; then a normal quit, or SIGKILL with requests in flight.
    QtestGuest(qtestguest::Args),
    /// A stock QEMU guest's vd input device driven through qtest (vd-ivshmem-server --input).
    QtestInput(input::qtest::Args),
    /// vdd tests: VM `vm` waits for a VF and holds what it gets until killed.
    VddWaiter {
        #[arg(long)]
        vm: u64,
    },
    /// Guest network path (VF failover): echo UDP datagrams on `port` until one says STOP.
    UdpEcho {
        #[arg(long, default_value_t = 7777)]
        port: u16,
    },
    /// Guest network path: a numbered UDP stream to an `udp-echo` every `interval_us`, until
    /// SIGTERM or `secs`; status in `status` (rewritten every 50 ms), the report as JSON.
    UdpProbe {
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long, default_value_t = 2000)]
        interval_us: u64,
        #[arg(long, default_value_t = 0.0)]
        secs: f64,
        #[arg(long)]
        status: std::path::PathBuf,
    },
    /// Guest network path: tell the `udp-echo` at `to` to stop (waits `secs` for its answer).
    UdpStop {
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long, default_value_t = 30.0)]
        secs: f64,
    },
    /// Benchmarks: when a counter file (e.g. a netdev's rx_packets) first rises by `delta` over
    /// its value at start. Prints `START <unix us>`, then one JSON line
    /// {start_unix_us, rise_unix_us, from, to} (polls every 200 us); exit 1 after `secs`.
    CounterRise {
        #[arg(long)]
        path: std::path::PathBuf,
        #[arg(long, default_value_t = 3)]
        delta: u64,
        #[arg(long, default_value_t = 60.0)]
        secs: f64,
    },
    /// vdd tests: frames out of a netdev at `rate` bytes/s for `secs` seconds.
    SendFrames {
        #[arg(long)]
        ifname: String,
        #[arg(long, default_value_t = 200_000)]
        rate: u64,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
}

fn main() -> std::process::ExitCode {
    let r = match Cli::parse().cmd {
        Cmd::EvtchnBasic => evtchn::basic(),
        Cmd::EvtchnHostile => evtchn::hostile(),
        Cmd::EvtchnBlock { file } => evtchn::block(&file),
        Cmd::EvtchnUser => evtchn::user(),
        Cmd::EvtchnShm { file } => shm::shm(&file),
        Cmd::EvtchnOrphan { file } => shm::orphan(&file),
        Cmd::EvtchnShmEfault => shm::efault(),
        Cmd::EvtchnOrphanRace { rounds } => shm::orphan_race(rounds),
        Cmd::EvtchnShmTruncate { file } => shm::truncate(&file),
        Cmd::EvtchnRestore => evtchn::restore(),
        Cmd::EvtchnCase { name } => evtchn::case(&name),
        Cmd::EvtchnStress { channels } => evtchn::stress(channels),
        Cmd::EvtchnThroughput { requests, json } => evtchn::throughput(requests, json),
        Cmd::InputHw { name, hold } => input::hw(&name, hold),
        Cmd::Hostile(a) => hostile::run(a),
        Cmd::InputBasic => input::basic(),
        Cmd::InputSched => input::sched(),
        Cmd::InputAttach => input::attach(),
        Cmd::InputFocus { frames } => input::focus(frames),
        Cmd::InputFocusGuests { vm_a, vm_b, frames } => {
            input::focus_guests(vm_a, vm_b, frames as usize)
        }
        Cmd::InputUnplug => input::unplug(),
        Cmd::InputMt => input::multitouch(),
        Cmd::InputUnload => input::unload(),
        Cmd::InputHold { name, vm } => input::hold(&name, vm),
        Cmd::InputBench { rounds, json } => input::bench(rounds, json),
        Cmd::InputShm => input::shm(),
        Cmd::Hops(a) => hops::run(a),
        Cmd::InputFeedVirtio {
            nodes,
            go,
            pid_file,
            frames,
        } => input::feed_virtio(&nodes, &go, &pid_file, frames),
        Cmd::InputFeed {
            vm,
            frames,
            stop_pid,
            qmp_pause,
        } => input::feed(vm, frames, stop_pid, qmp_pause.as_deref()),
        Cmd::InputSwitchCost { samples, json } => input::switch_cost(samples, json),
        Cmd::InputLatency(a) => input::input_latency(a),
        Cmd::InputEcho { shm, devices } => input::input_echo(&shm, &devices),
        Cmd::InputCaps { sys } => input::input_caps(&sys),
        Cmd::InputDevices { prefix } => input::input_devices(&prefix),
        Cmd::SriovBasic { vf } => sriov::basic(&vf),
        Cmd::SriovUnpriv { vf } => sriov::unpriv(&vf),
        Cmd::SriovRace { vf, procs, rounds } => sriov::race(&vf, procs, rounds),
        Cmd::SriovRaceChild {
            vf,
            vm,
            go_at,
            hold_ms,
        } => sriov::race_child(&vf, vm, go_at, hold_ms),
        Cmd::SriovHold { vf, vm, keep_host } => sriov::hold(&vf, vm, keep_host),
        Cmd::VfioOpen { vf, hold_ms } => vfio::open(&vf, hold_ms),
        Cmd::QmpVcpus { qmp, action } => qmpcheck::vcpus(&qmp, &action),
        Cmd::VfioTx {
            vf,
            ms,
            bytes_per_s,
        } => vfio::tx(&vf, ms, bytes_per_s),
        Cmd::SriovReassign { vf, ifname } => sriov::reassign(&vf, &ifname),
        Cmd::SriovMirror { vf, ifname } => sriov::mirror(&vf, &ifname),
        Cmd::QmpCheck { qmp, qemu_pid } => qmpcheck::run(&qmp, qemu_pid),
        Cmd::FakeQmp {
            vms,
            log,
            fail_device_add,
        } => vddtest::fake_qmp(&vms, &log, &fail_device_add),
        Cmd::FakeIvshmem {
            socket,
            layouts,
            json,
        } => fakeshm::run(&socket, &layouts, json),
        Cmd::QtestGuest(a) => qtestguest::run(a),
        Cmd::QtestInput(a) => input::qtest::run(a),
        Cmd::VddWaiter { vm } => vddtest::waiter(vm),
        Cmd::UdpEcho { port } => netprobe::echo(port),
        Cmd::UdpProbe {
            to,
            interval_us,
            secs,
            status,
        } => netprobe::probe(
            to,
            std::time::Duration::from_micros(interval_us),
            secs,
            &status,
        ),
        Cmd::UdpStop { to, secs } => netprobe::stop(to, secs),
        Cmd::CounterRise { path, delta, secs } => netprobe::counter_rise(&path, delta, secs),
        Cmd::SendFrames { ifname, rate, secs } => vddtest::send_frames(&ifname, rate, secs),
        Cmd::SriovRate { vf } => sriov::rate(&vf),
        Cmd::SriovBench {
            vf,
            repeats,
            script,
        } => sriov::bench(&vf, repeats, &script),
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            println!("FAIL: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `ok: <what>` when `cond`, else an error naming it.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($what:tt)*) => {{
        if $cond {
            println!("ok: {}", format!($($what)*));
        } else {
            anyhow::bail!("{} (check `{}` failed)", format!($($what)*), stringify!($cond));
        }
    }};
}
