//! `irq-fidelity`: an oracle for interrupts delivered outside the architecture's rules.
//!
//! A real-mode guest under KVM with the in-kernel irqchip (8259 only: the local APIC is disabled)
//! points all 256 interrupt vectors at stubs that count every delivery per vector and log the
//! anomalous ones (vector, saved FLAGS, saved CS:IP). The guest loops: a long stretch with IF=0
//! (a busy loop, optionally with port reads of the PIC's mask register, which exit to L1's KVM),
//! then `sti` and a short window with IF=1 (optionally ending in `hlt`). The host injects edge
//! interrupts on one PIC line through `KVM_IRQFD` from another thread and counts them; with
//! `--migrate` a third thread moves the vCPU thread between CPUs 0 and 1 with
//! `sched_setaffinity` as fast as it can (what vdd does to a VM's vCPU thread).
//!
//! No vd module is involved. Each oracle proves an interrupt delivered outside the rules:
//! 1. more deliveries of the injected vector than injections (`dup`): an edge-triggered 8259
//!    line can merge pulses, never duplicate one. In lockstep mode (the default) the host injects
//!    the next pulse only once the previous one was delivered, so nothing merges and any
//!    duplicate shows;
//! 2. a delivery whose saved FLAGS has IF=0 (`if0`): a maskable interrupt cannot arrive then;
//! 3. a delivery on any other vector (`stray`): the program raises no exception and the 8259
//!    has only the injected line unmasked (the 8259's spurious IRQ 7 is counted apart).
//!
//! Two opt-in knobs aim the oracle at one suspected emulator path (QEMU's TCG `helper_vmrun`
//! injects an `EVENTINJ` interrupt with `exception_index` set to the vector and leaves it set; an
//! `exit_request` seen before the next exception, interrupt or `#VMEXIT` of that vCPU would have
//! the emulator deliver the vector a second time, as an exception, with IF=0):
//! `--handler-spin N` makes the injected vector's handler spin with IF=0 before its first exit
//! (the EOI), so the stretch from the injecting `VMRUN` to the next exit lasts milliseconds
//! instead of a few instructions; `--kick-pci BDF` pins the vCPU thread to CPU 0 and, from CPU 1,
//! toggles a PCI device's bus-master bit in a loop: each toggle changes the emulator's memory map,
//! and QEMU then queues work on every vCPU (`tcg_commit`), which kicks it out of its execution
//! loop with no interrupt pending. A duplicate under both, and none without the kicks, shows
//! the path; none under both refutes it for this emulator.
//!
//! # Guest-physical layout
//!
//! ```text
//! 0x0000  interrupt vector table: all 256 vectors point at the stubs
//! 0x0500  parameter block (VMM writes) and result block (guest writes), u32 fields
//! 0x0800  deliveries per vector (256 u32)
//! 0x0c00  log of anomalous deliveries (LOG_CAP entries of 4 u16: vector, FLAGS, CS, IP)
//! 0x1000  the program
//! 0x3000  256 stubs of 8 bytes: `push ax; mov al, vector; jmp handler`
//! 0x7000  top of the stack
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use kvm_ioctls::VcpuExit;
use serde::Serialize;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::guest::Guest;

/// Guest RAM: one real-mode segment.
const MEM_SIZE: usize = 0x10000;
/// Where the program is loaded and starts.
const CODE_GPA: u16 = 0x1000;
/// The first vector stub; stub `v` is at `STUBS_GPA + v * STUB_SIZE`.
const STUBS_GPA: u16 = 0x3000;
const STUB_SIZE: u16 = 8;
/// 8259 vector base; the injected line arrives as `VECTOR_BASE + IRQ_LINE`.
const VECTOR_BASE: u8 = 0x20;
/// PIC line (= KVM GSI) the injection eventfd is routed to.
const IRQ_LINE: u8 = 5;
/// The vector every injection arrives on.
pub const INJECTED_VECTOR: u8 = VECTOR_BASE + IRQ_LINE;
/// The 8259's spurious vector for the master (IRQ 7): a 8259 answers an acknowledge with no
/// request pending with it; counted apart, not an oracle.
pub const SPURIOUS_VECTOR: u8 = VECTOR_BASE + 7;
/// Port whose `out` ends the run.
const DONE_PORT: u16 = 0x604;
/// Per-vector delivery counts.
const COUNTS_GPA: u64 = 0x800;
/// Anomaly log and its capacity (entries of 8 bytes).
const LOG_GPA: u64 = 0xc00;
const LOG_CAP: u32 = 128;

/// Parameter block (written by the VMM before the vCPU runs; `STOP` while it runs).
pub mod param {
    /// Busy-loop iterations with IF=0 per round (at least 1).
    pub const CLI_SPIN: u64 = 0x500;
    /// Busy-loop iterations with IF=1 per round (at least 1).
    pub const STI_SPIN: u64 = 0x504;
    /// Non-zero: end each IF=1 window with `hlt`.
    pub const HLT: u64 = 0x508;
    /// `in al, 0x21` (an exit to L1's in-kernel PIC) per IF=0 stretch.
    pub const IO: u64 = 0x50c;
    /// The VMM sets it to 1: the guest finishes its round and writes to `DONE_PORT`.
    pub const STOP: u64 = 0x510;
    /// Port of the final `out`.
    pub const DONE_PORT: u64 = 0x514;
    /// Outer iterations (low 16 bits) of the injected vector's spin before its EOI (0: none).
    pub const HANDLER_SPIN: u64 = 0x518;
    /// PIC interrupt mask (a clear bit enables that line).
    pub const PIC_MASK: u64 = 0x520;
}

/// Result block (written by the guest).
pub mod result {
    /// Rounds (IF=0 stretch + IF=1 window) completed.
    pub const ROUNDS: u64 = 0x540;
    /// Deliveries whose saved FLAGS had IF=0.
    pub const IF0: u64 = 0x544;
    /// Deliveries on any vector.
    pub const TOTAL: u64 = 0x548;
    /// Anomalies seen (the log keeps the first `LOG_CAP`).
    pub const NLOG: u64 = 0x54c;
    /// End of the block.
    pub const END: u64 = 0x550;
}

core::arch::global_asm!(
    ".pushsection .text.vd_guest, \"ax\"",
    ".globl irqf_guest_start",
    ".globl irqf_guest_handler",
    ".globl irqf_guest_end",
    ".code16",
    "irqf_guest_start:",
    crate::real_mode_prologue!(),
    "irqf_round:",
    "    cli",
    "    mov ecx, dword ptr [{p_cli_spin}]",
    "irqf_cli_spin:",
    "    dec ecx",
    "    jnz irqf_cli_spin",
    "    mov ecx, dword ptr [{p_io}]",
    "    test ecx, ecx",
    "    jz irqf_io_done",
    "irqf_io:",
    "    in al, 0x21",
    "    dec ecx",
    "    jnz irqf_io",
    "irqf_io_done:",
    "    inc dword ptr [{r_rounds}]",
    "    mov ecx, dword ptr [{p_sti_spin}]",
    "    sti",
    "irqf_sti_spin:",
    "    dec ecx",
    "    jnz irqf_sti_spin",
    "    cmp dword ptr [{p_hlt}], 0",
    "    je irqf_no_hlt",
    "    hlt",
    "irqf_no_hlt:",
    "    cmp dword ptr [{p_stop}], 0",
    "    je irqf_round",
    "    cli",
    "    mov dx, word ptr [{p_done_port}]",
    "    out dx, al",
    "irqf_halt:",
    "    hlt",
    "    jmp irqf_halt",
    // Every vector's stub saved AX and put the vector in AL. Stack (from SP after the pushes):
    // CX, SI, BX, AX, IP, CS, FLAGS. Only 16-bit halves are written, so the main loop's ECX
    // survives.
    "irqf_guest_handler:",
    "    push bx",
    "    push si",
    "    push cx",
    "    mov cl, al",
    // End the injected line's interrupt at the 8259 before the delivery is counted: the host's
    // next pulse (sent once it sees the count) then never finds the line still in service.
    "    cmp cl, {injected}",
    "    jne irqf_count",
    // --handler-spin: stay in the guest (no exit) with IF=0 before the EOI's `out`, the first
    // exit after the delivery. BX and CX are restored on the way out; CL (the vector) is kept.
    "    mov bx, word ptr [{p_handler_spin}]",
    "    test bx, bx",
    "    jz irqf_eoi",
    "    push cx",
    "irqf_hspin:",
    "    mov cx, 0x4000",
    "irqf_hspin_in:",
    "    dec cx",
    "    jnz irqf_hspin_in",
    "    dec bx",
    "    jnz irqf_hspin",
    "    pop cx",
    "irqf_eoi:",
    "    mov al, 0x20",
    "    out 0x20, al",
    "irqf_count:",
    "    xor bx, bx",
    "    mov bl, cl",
    "    shl bx, 2",
    "    inc dword ptr [bx + {counts}]",
    "    inc dword ptr [{r_total}]",
    "    mov si, sp",
    "    test word ptr [si + 12], 0x200",
    "    jnz irqf_if1",
    "    inc dword ptr [{r_if0}]",
    "    jmp irqf_log",
    "irqf_if1:",
    "    cmp cl, {injected}",
    "    je irqf_done",
    "    cmp cl, {spurious}",
    "    je irqf_done",
    "irqf_log:",
    "    mov bx, word ptr [{r_nlog}]",
    "    cmp bx, {log_cap}",
    "    jae irqf_logged",
    "    shl bx, 3",
    "    xor ah, ah",
    "    mov al, cl",
    "    mov word ptr [bx + {log}], ax",
    "    mov ax, word ptr [si + 12]",
    "    mov word ptr [bx + {log} + 2], ax",
    "    mov ax, word ptr [si + 10]",
    "    mov word ptr [bx + {log} + 4], ax",
    "    mov ax, word ptr [si + 8]",
    "    mov word ptr [bx + {log} + 6], ax",
    "irqf_logged:",
    "    inc dword ptr [{r_nlog}]",
    "irqf_done:",
    "    pop cx",
    "    pop si",
    "    pop bx",
    "    pop ax",
    "    iret",
    "irqf_guest_end:",
    ".code64",
    ".popsection",
    ring_seg = const 0,
    vector_base = const VECTOR_BASE,
    p_pic_mask = const param::PIC_MASK,
    p_cli_spin = const param::CLI_SPIN,
    p_sti_spin = const param::STI_SPIN,
    p_hlt = const param::HLT,
    p_io = const param::IO,
    p_stop = const param::STOP,
    p_done_port = const param::DONE_PORT,
    p_handler_spin = const param::HANDLER_SPIN,
    r_rounds = const result::ROUNDS,
    r_if0 = const result::IF0,
    r_total = const result::TOTAL,
    r_nlog = const result::NLOG,
    counts = const COUNTS_GPA,
    log = const LOG_GPA,
    log_cap = const LOG_CAP,
    injected = const INJECTED_VECTOR,
    spurious = const SPURIOUS_VECTOR,
);

extern "C" {
    static irqf_guest_start: u8;
    static irqf_guest_handler: u8;
    static irqf_guest_end: u8;
}

/// The program's bytes and the offset of its common interrupt handler in them.
fn program() -> crate::ringguest::Program {
    // SAFETY: the three labels are emitted above, in this order.
    unsafe {
        crate::ringguest::program_between(
            core::ptr::addr_of!(irqf_guest_start),
            core::ptr::addr_of!(irqf_guest_handler),
            core::ptr::addr_of!(irqf_guest_end),
        )
    }
}

/// The 256 stubs (`push ax; mov al, v; jmp near handler`, padded to `STUB_SIZE`) for a handler
/// at `handler` (an offset in segment 0), and the interrupt vector table pointing at them.
fn stubs_and_ivt(handler: u16) -> (Vec<u8>, Vec<u8>) {
    let mut stubs = Vec::with_capacity(256 * usize::from(STUB_SIZE));
    let mut ivt = Vec::with_capacity(256 * 4);
    for v in 0..=255u8 {
        let at = STUBS_GPA + u16::from(v) * STUB_SIZE;
        // The jump is relative to the end of its 6-byte stub; real-mode IP arithmetic wraps.
        let rel = handler.wrapping_sub(at + 6);
        stubs.extend_from_slice(&[0x50, 0xb0, v, 0xe9]);
        stubs.extend_from_slice(&rel.to_le_bytes());
        stubs.extend_from_slice(&[0x90, 0x90]);
        ivt.extend_from_slice(&at.to_le_bytes()); // offset
        ivt.extend_from_slice(&0u16.to_le_bytes()); // segment
    }
    (stubs, ivt)
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Opts {
    /// How long the host injects.
    pub duration: Duration,
    /// Move the vCPU thread between CPUs 0 and 1 as fast as possible.
    pub migrate: bool,
    /// Inject without waiting for each delivery (pulses may merge; only `dup` > 0 then proves a
    /// duplicate).
    pub flood: bool,
    pub cli_spin: u32,
    pub sti_spin: u32,
    pub hlt: bool,
    pub io: u32,
    /// Outer iterations of the injected vector's spin before its first exit (0: none).
    pub handler_spin: u16,
    /// A PCI device (`DDDD:BB:DD.F`) whose bus-master bit CPU 1 toggles while the vCPU thread
    /// stays on CPU 0.
    pub kick_pci: Option<String>,
}

/// One logged anomalous delivery.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Anomaly {
    pub vector: u16,
    pub flags: u16,
    pub cs: u16,
    pub ip: u16,
}

/// Outcome; serialises to the `--json` line.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub test: &'static str,
    pub secs: f64,
    pub migrate: bool,
    pub flood: bool,
    pub hlt: bool,
    pub handler_spin: u16,
    /// Bus-master toggles written with `--kick-pci` (each one a memory-map change).
    pub pci_toggles: u64,
    /// Pulses written to the irqfd (an upper bound on the injections).
    pub injected: u64,
    /// Deliveries of the injected vector.
    pub delivered: u32,
    /// `delivered - injected` when positive (oracle 1).
    pub dup: u64,
    /// Deliveries with saved IF=0 (oracle 2).
    pub if0: u32,
    /// Deliveries on vectors other than the injected one and the spurious IRQ 7 (oracle 3).
    pub stray: u64,
    /// Spurious IRQ 7 deliveries (reported, not an oracle).
    pub spurious: u32,
    /// Lockstep waits for a delivery that ran past their bound (an interrupt that took more
    /// than a second to arrive; not an oracle, but worth knowing).
    pub late: u64,
    /// Guest rounds completed.
    pub rounds: u32,
    /// Affinity changes of the vCPU thread.
    pub migrations: u64,
    /// Every vector that saw a delivery, with its count.
    pub vectors: Vec<(u8, u32)>,
    /// The first anomalous deliveries.
    pub anomalies: Vec<Anomaly>,
    pub pass: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    /// Report for a run that could not complete.
    pub fn failed(e: &anyhow::Error) -> Self {
        Self {
            test: "irq_fidelity",
            error: Some(format!("{e:#}")),
            ..Default::default()
        }
    }

    pub fn human_line(&self) -> String {
        let mut s = format!(
            "irq-fidelity: injected {} delivered {} dup {} if0 {} stray {} (spurious7 {} late {} \
             rounds {} migrations {} in {:.1}s{}{}{}{}{}) result={}",
            self.injected,
            self.delivered,
            self.dup,
            self.if0,
            self.stray,
            self.spurious,
            self.late,
            self.rounds,
            self.migrations,
            self.secs,
            if self.migrate { ", migrate" } else { "" },
            if self.flood { ", flood" } else { "" },
            if self.hlt { ", hlt" } else { "" },
            if self.handler_spin > 0 {
                format!(", handler spin {}", self.handler_spin)
            } else {
                String::new()
            },
            if self.pci_toggles > 0 {
                format!(", {} PCI bus-master toggles", self.pci_toggles)
            } else {
                String::new()
            },
            if self.pass { "PASS" } else { "FAIL" }
        );
        for a in &self.anomalies {
            s.push_str(&format!(
                "\nirq-fidelity: anomaly vector {:#04x} flags {:#06x} at {:04x}:{:04x}",
                a.vector, a.flags, a.cs, a.ip
            ));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!("\nirq-fidelity: error: {e}"));
        }
        s
    }

    /// Fills the verdict from the counts.
    fn judge(&mut self) {
        self.dup = u64::from(self.delivered).saturating_sub(self.injected);
        self.pass = self.error.is_none() && self.dup == 0 && self.if0 == 0 && self.stray == 0;
    }
}

/// Reads guest u32s through the host mapping while the vCPU runs.
#[derive(Clone, Copy)]
struct LiveMem(usize);

impl LiveMem {
    fn rd(self, gpa: u64) -> u32 {
        debug_assert!(gpa.is_multiple_of(4) && gpa + 4 <= MEM_SIZE as u64);
        // SAFETY: `self.0` is the host address of the live guest RAM (MEM_SIZE bytes), which
        // outlives every user (scoped threads joined before the guest is dropped); callers pass
        // aligned u32 offsets inside it. The guest writes concurrently: volatile word reads.
        unsafe { std::ptr::read_volatile((self.0 + gpa as usize) as *const u32) }
    }

    fn wr(self, gpa: u64, v: u32) {
        debug_assert!(gpa.is_multiple_of(4) && gpa + 4 <= MEM_SIZE as u64);
        // SAFETY: as in `rd`; the guest only reads this word.
        unsafe { std::ptr::write_volatile((self.0 + gpa as usize) as *mut u32, v) }
    }
}

/// Pins thread `tid` to `cpu`.
fn pin(tid: i32, cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and sched_setaffinity only touch it.
    let r = unsafe {
        let mut set: nix::libc::cpu_set_t = std::mem::zeroed();
        nix::libc::CPU_SET(cpu, &mut set);
        nix::libc::sched_setaffinity(tid, size_of::<nix::libc::cpu_set_t>(), &set)
    };
    nix::errno::Errno::result(r)
        .map(drop)
        .with_context(|| format!("sched_setaffinity thread {tid} to CPU {cpu}"))
}

/// Runs the oracle.
pub fn run(kvm_path: &str, o: &Opts) -> Result<Report> {
    ensure!(
        o.cli_spin >= 1 && o.sti_spin >= 1,
        "--cli-spin and --sti-spin must be at least 1"
    );
    if let Some(bdf) = &o.kick_pci {
        ensure!(
            !bdf.is_empty()
                && bdf
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.'),
            "--kick-pci takes a PCI address such as 0000:00:1f.3, not {bdf:?}"
        );
        ensure!(!o.migrate, "--kick-pci pins the vCPU thread: no --migrate");
    }
    if o.migrate || o.kick_pci.is_some() {
        ensure!(
            std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2,
            "--migrate and --kick-pci need two CPUs"
        );
    }
    let _watchdog = crate::evtchn::watchdog(o.duration + Duration::from_secs(120));

    let inject = EventFd::new(EFD_NONBLOCK).context("eventfd")?;
    let guest = Guest::with_kvm_path(kvm_path, MEM_SIZE)?;
    let vm = guest.vm();
    vm.create_irq_chip().context("KVM_CREATE_IRQCHIP")?;
    vm.register_irqfd(&inject, u32::from(IRQ_LINE))
        .context("KVM_IRQFD")?;

    let (code, handler) = program();
    ensure!(
        usize::from(CODE_GPA) + code.len() <= usize::from(STUBS_GPA),
        "program overlaps the stubs"
    );
    let (stubs, ivt) = stubs_and_ivt(CODE_GPA + handler);
    guest.write(u64::from(CODE_GPA), code)?;
    guest.write(u64::from(STUBS_GPA), &stubs)?;
    guest.write(0, &ivt)?;
    for (gpa, v) in [
        (param::CLI_SPIN, o.cli_spin),
        (param::STI_SPIN, o.sti_spin),
        (param::HLT, u32::from(o.hlt)),
        (param::IO, o.io),
        (param::STOP, 0),
        (param::DONE_PORT, u32::from(DONE_PORT)),
        (param::HANDLER_SPIN, u32::from(o.handler_spin)),
        (param::PIC_MASK, u32::from(!(1u8 << IRQ_LINE))),
    ] {
        guest.write_u32(gpa, v)?;
    }
    guest.write(
        result::ROUNDS,
        &[0; (result::END - result::ROUNDS) as usize],
    )?;
    let mut vcpu = guest.create_real_mode_vcpu(0, CODE_GPA)?;

    let mem = LiveMem(guest.mem_host_addr() as usize);
    // SAFETY: gettid has no preconditions.
    let vcpu_tid = unsafe { nix::libc::gettid() };
    let done = AtomicBool::new(false);
    let injected = AtomicU64::new(0);
    let late = AtomicU64::new(0);
    let migrations = AtomicU64::new(0);
    let toggles = AtomicU64::new(0);
    if o.kick_pci.is_some() {
        pin(vcpu_tid, 0)?;
    }
    let delivered = |m: LiveMem| m.rd(COUNTS_GPA + u64::from(INJECTED_VECTOR) * 4);
    let t0 = Instant::now();

    let run = std::thread::scope(|s| -> Result<()> {
        let injector = s.spawn(|| -> Result<()> {
            let mut stopping = false;
            while !done.load(Ordering::Acquire) {
                if !stopping && t0.elapsed() >= o.duration {
                    // The guest finishes its round; the pulses that wake it from `hlt` (if it
                    // sleeps there) are counted like every other.
                    mem.wr(param::STOP, 1);
                    stopping = true;
                }
                inject.write(1).context("write the irqfd's eventfd")?;
                let n = injected.fetch_add(1, Ordering::AcqRel) + 1;
                if o.flood && !stopping {
                    continue;
                }
                let t = Instant::now();
                while u64::from(delivered(mem)) < n && !done.load(Ordering::Acquire) {
                    if t.elapsed() > Duration::from_secs(1) {
                        late.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    // Sleep, not spin: the irqfd's injection runs in a kworker, typically on
                    // this CPU, which a spinning (even yielding) waiter can starve.
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            Ok(())
        });
        let migrator = o.migrate.then(|| {
            s.spawn(|| -> Result<()> {
                let mut cpu = 0;
                while !done.load(Ordering::Acquire) {
                    cpu ^= 1;
                    pin(vcpu_tid, cpu)?;
                    migrations.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        });
        let kicker = o.kick_pci.as_deref().map(|bdf| {
            let (done, toggles) = (&done, &toggles);
            s.spawn(move || -> Result<()> {
                use std::os::unix::fs::FileExt;
                pin(0, 1)?;
                let path = format!("/sys/bus/pci/devices/{bdf}/config");
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .with_context(|| format!("open {path}"))?;
                let mut cmd = [0u8; 2];
                f.read_exact_at(&mut cmd, 4)
                    .with_context(|| format!("read the command register of {bdf}"))?;
                let on = u16::from_le_bytes(cmd);
                let off = on ^ 0x4;
                let mut r = Ok(());
                while r.is_ok() && !done.load(Ordering::Acquire) {
                    r = f
                        .write_all_at(&off.to_le_bytes(), 4)
                        .and_then(|()| f.write_all_at(&on.to_le_bytes(), 4));
                    toggles.fetch_add(2, Ordering::Relaxed);
                }
                f.write_all_at(&on.to_le_bytes(), 4)
                    .and(r)
                    .with_context(|| format!("write the command register of {bdf}"))
            })
        });
        let r = (|| -> Result<()> {
            loop {
                match vcpu.run() {
                    Ok(VcpuExit::IoOut(DONE_PORT, _)) => return Ok(()),
                    Err(e)
                        if e.downcast_ref::<kvm_ioctls::Error>()
                            .is_some_and(|k| k.errno() == nix::libc::EINTR) =>
                    {
                        continue
                    }
                    Ok(other) => {
                        let exit = format!("{other:?}");
                        let rip = vcpu.fd().get_regs().map(|r| r.rip).unwrap_or(u64::MAX);
                        anyhow::bail!(
                            "unexpected vCPU exit {exit} at rip {rip:#x} after {:.1}s: the \
                             guest program went off the rails",
                            t0.elapsed().as_secs_f64()
                        )
                    }
                    Err(e) => return Err(e),
                }
            }
        })();
        done.store(true, Ordering::Release);
        let joined = injector
            .join()
            .map_err(|_| anyhow::anyhow!("injector thread panicked"))?;
        if let Some(m) = migrator {
            m.join()
                .map_err(|_| anyhow::anyhow!("migrator thread panicked"))??;
        }
        if let Some(k) = kicker {
            k.join()
                .map_err(|_| anyhow::anyhow!("kicker thread panicked"))??;
        }
        r.and(joined)
    });

    let mut rep = Report {
        test: "irq_fidelity",
        secs: t0.elapsed().as_secs_f64(),
        migrate: o.migrate,
        flood: o.flood,
        hlt: o.hlt,
        handler_spin: o.handler_spin,
        pci_toggles: toggles.load(Ordering::Relaxed),
        injected: injected.load(Ordering::Acquire),
        late: late.load(Ordering::Relaxed),
        migrations: migrations.load(Ordering::Relaxed),
        error: run.err().map(|e| format!("{e:#}")),
        ..Default::default()
    };
    // Read the guest's results whether or not it finished: they are the evidence.
    rep.delivered = delivered(mem);
    rep.if0 = guest.read_u32(result::IF0)?;
    rep.rounds = guest.read_u32(result::ROUNDS)?;
    for v in 0..=255u8 {
        let n = guest.read_u32(COUNTS_GPA + u64::from(v) * 4)?;
        if n == 0 {
            continue;
        }
        rep.vectors.push((v, n));
        match v {
            INJECTED_VECTOR => {}
            SPURIOUS_VECTOR => rep.spurious = n,
            _ => rep.stray = rep.stray.saturating_add(u64::from(n)),
        }
    }
    let nlog = guest.read_u32(result::NLOG)?.min(LOG_CAP);
    for i in 0..u64::from(nlog) {
        let mut e = [0u8; 8];
        guest.read(LOG_GPA + i * 8, &mut e)?;
        let w = |k: usize| u16::from_le_bytes([e[k], e[k + 1]]);
        rep.anomalies.push(Anomaly {
            vector: w(0),
            flags: w(2),
            cs: w(4),
            ip: w(6),
        });
    }
    rep.judge();
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_fits_and_is_framed() {
        let (code, handler) = program();
        assert_eq!(code[0], 0xfa, "starts with cli");
        assert_eq!(code[handler as usize], 0x53, "handler starts with push bx");
        assert_eq!(code.last(), Some(&0xcf), "ends with iret");
        assert!(usize::from(CODE_GPA) + code.len() <= usize::from(STUBS_GPA));
        const {
            assert!(STUBS_GPA as u32 + 256 * STUB_SIZE as u32 <= 0x6000);
            assert!(LOG_GPA + LOG_CAP as u64 * 8 <= CODE_GPA as u64);
            assert!(COUNTS_GPA + 256 * 4 <= LOG_GPA);
            assert!(result::END <= COUNTS_GPA);
            assert!(param::PIC_MASK < result::ROUNDS);
        }
    }

    #[test]
    fn stubs_jump_to_the_handler() {
        let handler = 0x1234u16;
        let (stubs, ivt) = stubs_and_ivt(handler);
        assert_eq!(stubs.len(), 256 * 8);
        assert_eq!(ivt.len(), 1024);
        for v in [0usize, 0x25, 255] {
            let at = STUBS_GPA + v as u16 * STUB_SIZE;
            let s = &stubs[v * 8..v * 8 + 8];
            assert_eq!(&s[..4], &[0x50, 0xb0, v as u8, 0xe9]);
            let rel = u16::from_le_bytes([s[4], s[5]]);
            assert_eq!(at.wrapping_add(6).wrapping_add(rel), handler);
            assert_eq!(u16::from_le_bytes([ivt[v * 4], ivt[v * 4 + 1]]), at);
            assert_eq!(u16::from_le_bytes([ivt[v * 4 + 2], ivt[v * 4 + 3]]), 0);
        }
    }

    #[test]
    fn kick_pci_takes_only_a_pci_address_and_no_migration() {
        let mut o = Opts {
            duration: Duration::from_secs(1),
            migrate: false,
            flood: false,
            cli_spin: 1,
            sti_spin: 1,
            hlt: false,
            io: 0,
            handler_spin: 0,
            kick_pci: Some("../../../dev/mem".into()),
        };
        // Refused before KVM is opened (the path does not exist).
        let e = run("/nonexistent/kvm", &o).unwrap_err();
        assert!(format!("{e:#}").contains("--kick-pci takes"), "{e:#}");
        o.kick_pci = Some("0000:00:1f.3".into());
        o.migrate = true;
        let e = run("/nonexistent/kvm", &o).unwrap_err();
        assert!(format!("{e:#}").contains("no --migrate"), "{e:#}");
    }

    #[test]
    fn verdict() {
        let mut r = Report {
            injected: 10,
            delivered: 10,
            ..Default::default()
        };
        r.judge();
        assert!(r.pass);
        r.delivered = 11;
        r.judge();
        assert!(!r.pass);
        assert_eq!(r.dup, 1);
        r.delivered = 3;
        r.if0 = 1;
        r.judge();
        assert!(!r.pass && r.dup == 0);
        r.if0 = 0;
        r.stray = 1;
        r.judge();
        assert!(!r.pass);
        r.stray = 0;
        r.spurious = 4;
        r.judge();
        assert!(r.pass, "the spurious IRQ 7 is not an oracle");
    }
}
