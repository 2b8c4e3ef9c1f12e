//! `input`: vd_input_irq's notification injects a real interrupt into a running KVM guest.
//!
//! The VMM makes its `/dev/vd_input` file the sink of a VM, maps the event ring into the guest
//! as a second memory slot, registers the call eventfd with `KVM_IRQFD` (GSI [`IRQ_LINE`] on the
//! in-kernel 8259) and its vCPU thread with `VDI_IOC_VCPU_REGISTER`. A uinput keyboard (the
//! "hardware") is routed to the VM and given the focus; a second thread types on it. The guest
//! ([`crate::inputguest`]) sleeps in `hlt`, wakes on each interrupt, consumes the events and
//! stops once it has seen them all.

use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use kvm_ioctls::VcpuExit;
use serde::Serialize;
use vd_ring::Geometry;
use vd_sys::input::Input;
use vd_uapi::{vdi_match, VDI_ENTRY_SIZE};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::guest::Guest;
use crate::inputguest::{self as ig, result};
use crate::ringguest::{self as rg, param, IRQ_LINE, RING_GPA};
use vd_testkit::uinput::{key_frame, Kind, Uinput};

/// "Done" port.
const DONE_PORT: u16 = 0x604;

/// What to run.
#[derive(Clone, Debug)]
pub struct Opts {
    pub vm_id: u32,
    /// Key presses to type (each a press frame and a release frame: 4 events).
    pub keys: u32,
    pub entries: u32,
    pub timeout: Duration,
}

/// Outcome; serialises to the `--json` line.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub test: &'static str,
    pub vm_id: u32,
    /// Events the guest was told to expect.
    pub expected: u32,
    /// Events the guest consumed from its ring.
    pub events: u32,
    /// Key events among them.
    pub keys: u32,
    /// Interrupts the guest took.
    pub guest_irqs: u32,
    /// Interrupts the module sent.
    pub module_irqs: u64,
    pub delivered_immediately: u64,
    pub queued: u64,
    pub pass: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    /// Report for a run that could not complete.
    pub fn failed(e: &anyhow::Error) -> Self {
        Self {
            test: "kvm_input",
            error: Some(format!("{e:#}")),
            ..Default::default()
        }
    }
    pub fn human_line(&self) -> String {
        match &self.error {
            Some(e) => format!("input: result=FAIL: {e}"),
            None => format!(
                "input: vm {} guest consumed {}/{} events ({} keys) with {} interrupts (module sent {}; {} at once, {} queued) result={}",
                self.vm_id,
                self.events,
                self.expected,
                self.keys,
                self.guest_irqs,
                self.module_irqs,
                self.delivered_immediately,
                self.queued,
                if self.pass { "PASS" } else { "FAIL" }
            ),
        }
    }
}

/// Runs the guest while a uinput keyboard types `o.keys` keys at it.
pub fn run(kvm_path: &str, o: &Opts) -> Result<Report> {
    ensure!(o.keys >= 1, "type at least one key");
    let geo = Geometry::new(o.entries, VDI_ENTRY_SIZE)
        .map_err(|e| anyhow::anyhow!("ring of {} entries: {e:?}", o.entries))?;
    ensure!(
        geo.total_bytes() <= rg::RING_MAX,
        "ring too large for the real-mode guest"
    );
    let _watchdog = crate::evtchn::watchdog(o.timeout);

    // Drop order (reverse of declaration): vCPU, VM, ring mapping, device file.
    let vdi = Input::open().context("open /dev/vd_input: is vd_input_irq loaded?")?;
    let call = EventFd::new(EFD_NONBLOCK).context("eventfd")?;
    let c = vdi
        .vm_create(o.vm_id, o.entries, Some(call.as_raw_fd()))
        .context("VDI_IOC_VM_CREATE")?;
    let map = vdi.map_ring(&c).context("mmap the event ring")?;
    let guest = Guest::with_kvm_path(kvm_path, rg::MEM_SIZE)?;
    let vm = guest.vm();
    vm.create_irq_chip().context("KVM_CREATE_IRQCHIP")?;
    // SAFETY: `map` is the live event-ring mapping, declared before `guest`: it outlives the VM.
    unsafe { guest.add_slot(1, RING_GPA, map.as_ptr(), map.len()) }?;
    vm.register_irqfd(&call, u32::from(IRQ_LINE))
        .context("KVM_IRQFD")?;

    let expected = o.keys * 4;
    rg::load(
        &guest,
        ig::program(),
        &[
            (param::N, expected),
            (param::DONE_PORT, u32::from(DONE_PORT)),
            (param::MASK, o.entries - 1),
            (param::ENTRY_SIZE, VDI_ENTRY_SIZE),
            (param::RSP_ARRAY, geo.rsp_array() as u32),
            (param::PIC_MASK, u32::from(ig::PIC_MASK)),
        ],
    )?;
    guest.write(
        result::EVENTS,
        &[0; (result::END - result::EVENTS) as usize],
    )?;
    let mut vcpu = guest.create_real_mode_vcpu(0, rg::CODE_GPA)?;

    // The hardware, routed to this VM.
    let name = format!("vd-testvmm kbd {}", o.vm_id);
    let kbd = Uinput::new(
        &name,
        &format!("vd-testvmm/{}", o.vm_id),
        Kind::KeyboardMouse,
    )?;
    let route = vd_sys::input::route_spec(vdi_match::NAME, true, &name).context("route")?;
    vdi.route(&route)
        .context("VDI_IOC_ROUTE (needs CAP_SYS_ADMIN)")?;
    vdi.focus(o.vm_id).context("VDI_IOC_FOCUS")?;

    // This thread is the vCPU thread: register it, then run the guest while another thread types.
    vdi.vcpu_register().context("VDI_IOC_VCPU_REGISTER")?;
    let keys = o.keys;
    let typist = std::thread::spawn(move || -> Result<Uinput> {
        for i in 0..keys as usize {
            kbd.emit(&key_frame(i, true))?;
            kbd.emit(&key_frame(i, false))?;
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(kbd)
    });
    let run = loop {
        match vcpu.run() {
            Ok(VcpuExit::IoOut(DONE_PORT, _)) => break Ok(()),
            // A signal (SIGSTOP/SIGCONT, or the typist's) interrupts KVM_RUN: enter again.
            Err(e)
                if e.downcast_ref::<kvm_ioctls::Error>()
                    .is_some_and(|k| k.errno() == nix::libc::EINTR) =>
            {
                continue
            }
            Ok(other) => break Err(anyhow::anyhow!("unexpected vCPU exit {other:?}")),
            Err(e) => break Err(e),
        }
    };
    vdi.vcpu_unregister().context("VDI_IOC_VCPU_UNREGISTER")?;
    let kbd = typist
        .join()
        .map_err(|_| anyhow::anyhow!("typist thread panicked"))??;
    run?;
    let _ = vdi.unroute(&route);
    drop(kbd);

    let s = vdi.stats(0).context("VDI_IOC_STATS")?;
    let mut r = Report {
        test: "kvm_input",
        vm_id: o.vm_id,
        expected,
        events: guest.read_u32(result::EVENTS)?,
        keys: guest.read_u32(result::KEYS)?,
        guest_irqs: guest.read_u32(result::IRQS)?,
        module_irqs: s.irqs,
        delivered_immediately: s.delivered_immediately,
        queued: s.queued,
        ..Default::default()
    };
    if r.events > expected {
        bail!(
            "the guest consumed {} events, more than the {expected} typed",
            r.events
        );
    }
    r.pass =
        r.events == expected && r.keys == o.keys * 2 && r.guest_irqs >= 1 && r.module_irqs >= 1;
    Ok(r)
}
