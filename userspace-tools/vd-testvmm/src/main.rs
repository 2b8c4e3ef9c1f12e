//! `vd-testvmm`: a tiny rust-vmm based VMM for exercising KVM plumbing in test VMs.

/// The start of every real-mode guest program here: flat DS/SS at 0 with the stack below 0x7000,
/// ES on the ring's segment, the 8259 master programmed (ICW1 edge + ICW4, ICW2 vector base,
/// ICW3 slave on IR2, ICW4 8086 mode) with the mask from the parameter block, and the local APIC
/// globally disabled (IA32_APIC_BASE bit 11) so that KVM delivers the 8259's interrupt straight
/// to the vCPU. The program's `global_asm!` supplies `ring_seg`, `vector_base`, `p_pic_mask`.
macro_rules! real_mode_prologue {
    () => {
        concat!(
            "    cli\n",
            "    xor ax, ax\n",
            "    mov ds, ax\n",
            "    mov ss, ax\n",
            "    mov sp, 0x7000\n",
            "    mov ax, {ring_seg}\n",
            "    mov es, ax\n",
            "    mov al, 0x11\n",
            "    out 0x20, al\n",
            "    mov al, {vector_base}\n",
            "    out 0x21, al\n",
            "    mov al, 0x04\n",
            "    out 0x21, al\n",
            "    mov al, 0x01\n",
            "    out 0x21, al\n",
            "    mov al, byte ptr [{p_pic_mask}]\n",
            "    out 0x21, al\n",
            "    mov ecx, 0x1b\n",
            "    rdmsr\n",
            "    and eax, 0xfffff7ff\n",
            "    wrmsr\n",
        )
    };
}
pub(crate) use real_mode_prologue;

/// The body of every real-mode guest program's interrupt handler for the call eventfd: counts
/// the interrupt at `r_irqs` and ends it at the 8259.
macro_rules! real_mode_irq_epilogue {
    () => {
        concat!(
            "    push ax\n",
            "    inc dword ptr [{r_irqs}]\n",
            "    mov al, 0x20\n",
            "    out 0x20, al\n",
            "    pop ax\n",
            "    iret\n",
        )
    };
}
pub(crate) use real_mode_irq_epilogue;

mod asm;
mod bench;
mod evtchn;
// Shared VM plumbing; not every subcommand uses every helper.
#[allow(dead_code)]
mod guest;
mod input;
mod inputguest;
mod irqfid;
mod ringguest;
mod smoke;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "vd-testvmm", version, about)]
struct Cli {
    /// KVM device node to open.
    #[arg(long, global = true, default_value = guest::KVM_PATH)]
    kvm: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot a real-mode snippet that does 3 `out`s to an ioeventfd port, then `hlt`.
    Smoke {
        /// Print a single JSON object instead of a human-readable line.
        #[arg(long)]
        json: bool,
    },
    /// A real guest drives a vd_evtchn channel: requests in the ring, kicks through
    /// KVM_IOEVENTFD, answers from the in-kernel echo backend, interrupts through KVM_IRQFD.
    Evtchn {
        /// Who serves: the kernel (vd_evtchn) or this process after a KVM_EXIT_IO.
        #[arg(long, value_enum, default_value_t = evtchn::ServePath::Kernel)]
        path: evtchn::ServePath,
        /// Requests the guest sends.
        #[arg(long, default_value_t = 1000)]
        requests: u32,
        /// Requests per publish (and per interrupt asked for).
        #[arg(long, default_value_t = 16)]
        batch: u32,
        /// Ring entries (power of two).
        #[arg(long, default_value_t = 64)]
        entries: u32,
        /// Bytes per ring slot (power of two, 32..=4096).
        #[arg(long, default_value_t = 64)]
        entry_size: u32,
        /// Hostile guest: publish this req_prod instead of requests.
        #[arg(long)]
        hostile: Option<u32>,
        /// Seconds before giving up on the guest.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// The guest records the round trip of its first N batches (TSC); the report adds their
        /// median in ns (at most 8192).
        #[arg(long, default_value_t = 0)]
        samples: u32,
        /// Long-running latency probe: every MS milliseconds print a `probe ... median_ns=...` line
        /// with the median round trip of the batches finished since the previous line (give a
        /// large --requests; the guest samples every batch into a ring).
        #[arg(long, value_name = "MS")]
        probe_ms: Option<u64>,
        /// With --probe-ms: tell the guest to finish after SECS seconds (the final report then
        /// judges the requests it sent).
        #[arg(long, value_name = "SECS", requires = "probe_ms")]
        duration: Option<u64>,
        /// Print a single JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Round-trip latency (vd_evtchn vs. VMM exit vs. eventfd threads) and batching throughput.
    /// vd_input_irq into a real guest: a uinput keyboard routed to the VM types; the call
    /// eventfd (KVM_IRQFD) interrupts the guest, which consumes every event from its ring.
    Input {
        /// VM id for vd_input_irq.
        #[arg(long, default_value_t = 7001)]
        vm: u32,
        /// Keys to type (4 events each: press, SYN, release, SYN).
        #[arg(long, default_value_t = 50)]
        keys: u32,
        /// Event ring entries.
        #[arg(long, default_value_t = 64)]
        entries: u32,
        /// Seconds before giving up.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Print a single JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Interrupt-fidelity oracle: a real-mode guest counts every delivery on all 256 vectors
    /// while edge interrupts are injected through KVM_IRQFD; fails on a duplicate, a delivery
    /// with IF=0, or a stray vector (no vd module involved).
    IrqFidelity {
        /// Seconds to inject for.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Move the vCPU thread between CPUs 0 and 1 as fast as possible (what vdd does).
        #[arg(long)]
        migrate: bool,
        /// Inject without waiting for each delivery (pulses may merge).
        #[arg(long)]
        flood: bool,
        /// Busy-loop iterations with IF=0 per guest round.
        #[arg(long, default_value_t = 20000)]
        cli_spin: u32,
        /// Busy-loop iterations with IF=1 per guest round.
        #[arg(long, default_value_t = 200)]
        sti_spin: u32,
        /// End each IF=1 window with `hlt`.
        #[arg(long)]
        hlt: bool,
        /// Port reads of the 8259 (exits to L1's KVM) per IF=0 stretch.
        #[arg(long, default_value_t = 0)]
        io: u32,
        /// The injected vector's handler spins this many times 16,384 iterations (IF=0) before
        /// its first exit (the EOI): widens the stretch from an injecting VMRUN to the next exit.
        #[arg(long, default_value_t = 0)]
        handler_spin: u16,
        /// Pin the vCPU thread to CPU 0 and, from CPU 1, toggle the bus-master bit of this PCI
        /// device (e.g. 0000:00:1f.3) as fast as possible: every toggle is a memory-map change
        /// that makes the emulator kick each of its vCPUs out of its execution loop with no
        /// interrupt pending (an experiment on the emulator, see irqfid.rs).
        #[arg(long, conflicts_with = "migrate")]
        kick_pci: Option<String>,
        /// Print a single JSON object.
        #[arg(long)]
        json: bool,
    },
    Bench {
        /// Round trips per latency measurement.
        #[arg(long, default_value_t = 2000)]
        rounds: u32,
        /// Print a single JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Smoke { json } => cmd_smoke(&cli.kvm, json),
        Command::Evtchn {
            path,
            requests,
            batch,
            entries,
            entry_size,
            hostile,
            timeout,
            samples,
            probe_ms,
            duration,
            json,
        } => {
            let o = evtchn::Opts {
                path,
                requests,
                batch,
                entries,
                entry_size,
                hostile,
                samples,
                timeout: std::time::Duration::from_secs(timeout),
                probe: probe_ms.map(|ms| evtchn::Probe {
                    period: std::time::Duration::from_millis(ms),
                    duration: duration.map(std::time::Duration::from_secs),
                }),
            };
            let r = evtchn::run(&cli.kvm, &o).unwrap_or_else(|e| evtchn::Report::failed(&e));
            print_report(&r, json, evtchn::Report::human_line, r.pass)
        }
        Command::Input {
            vm,
            keys,
            entries,
            timeout,
            json,
        } => {
            let o = input::Opts {
                vm_id: vm,
                keys,
                entries,
                timeout: std::time::Duration::from_secs(timeout),
            };
            let r = input::run(&cli.kvm, &o).unwrap_or_else(|e| input::Report::failed(&e));
            print_report(&r, json, input::Report::human_line, r.pass)
        }
        Command::IrqFidelity {
            secs,
            migrate,
            flood,
            cli_spin,
            sti_spin,
            hlt,
            io,
            handler_spin,
            kick_pci,
            json,
        } => {
            let o = irqfid::Opts {
                duration: std::time::Duration::from_secs(secs),
                migrate,
                flood,
                cli_spin,
                sti_spin,
                hlt,
                io,
                handler_spin,
                kick_pci,
            };
            let r = irqfid::run(&cli.kvm, &o).unwrap_or_else(|e| irqfid::Report::failed(&e));
            print_report(&r, json, irqfid::Report::human_line, r.pass)
        }
        Command::Bench { rounds, json } => match bench::run(&cli.kvm, rounds) {
            Ok(b) => print_report(&b, json, bench::BenchReport::human, true),
            Err(e) => {
                eprintln!("vd-testvmm bench: error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn print_report<T: serde::Serialize, S: std::fmt::Display>(
    r: &T,
    json: bool,
    human: impl Fn(&T) -> S,
    pass: bool,
) -> ExitCode {
    if json {
        match serde_json::to_string(r) {
            Ok(line) => println!("{line}"),
            Err(err) => {
                eprintln!("vd-testvmm: serialise report: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", human(r));
        println!();
    }
    if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn cmd_smoke(kvm_path: &str, json: bool) -> ExitCode {
    let report = match smoke::run(kvm_path) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("vd-testvmm smoke: error: {err:#}");
            smoke::SmokeReport::failed(&err)
        }
    };
    if json {
        match serde_json::to_string(&report) {
            Ok(line) => println!("{line}"),
            Err(err) => {
                eprintln!("vd-testvmm smoke: serialise report: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        println!("{}", report.human_line());
    }
    if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evtchn_samples_and_probe_options() {
        let c = Cli::try_parse_from(["vd-testvmm", "evtchn", "--samples", "100"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Evtchn {
                samples: 100,
                probe_ms: None,
                duration: None,
                ..
            }
        ));
        let c = Cli::try_parse_from([
            "vd-testvmm",
            "evtchn",
            "--probe-ms",
            "500",
            "--duration",
            "3",
        ])
        .unwrap();
        assert!(matches!(
            c.command,
            Command::Evtchn {
                samples: 0,
                probe_ms: Some(500),
                duration: Some(3),
                ..
            }
        ));
        // Without the new options: the old defaults.
        let c = Cli::try_parse_from(["vd-testvmm", "evtchn"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Evtchn {
                requests: 1000,
                batch: 16,
                samples: 0,
                probe_ms: None,
                ..
            }
        ));
        assert!(
            Cli::try_parse_from(["vd-testvmm", "evtchn", "--duration", "3"]).is_err(),
            "--duration needs --probe-ms"
        );
    }
}
