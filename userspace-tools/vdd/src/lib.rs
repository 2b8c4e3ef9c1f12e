//! vdd: the vd host daemon. It watches every VM on the host (KVM's debugfs statistics and
//! vd_evtchn's per-domain counters), measures each VM's I/O request rate, and moves the vCPU
//! threads of I/O-heavy VMs onto the host-driver cores with a short EEVDF slice; it puts them
//! back when the VM cools down, exits, or vdd stops.
//!
//! The decisions ([`policy`]) and their execution ([`placer`]) are separate and pure over a
//! clock and a [`placer::Host`], so both are tested with simulated time and threads; [`host`]
//! and [`sources`] talk to the real kernel.
//!
//! Two more policies run beside placement: [`sriov`] turns vd_sriov_mgr's reassignment
//! proposals into VMM actions (lease swap, QMP unplug/plug through [`vmm`]), and [`input`] moves
//! the input focus through vd_input_irq on request (`vdctl focus`) and reads the per-VM input
//! queues; [`inputvms`] serves `[[input.vm]]` guests their vd input devices (QEMU's
//! ivshmem-doorbell) and follows their vCPU threads. Either is off, with one log line, when its module is missing.

pub mod config;
pub mod control;
pub mod cpus;
pub mod daemon;
pub mod fakeqmp;
pub mod host;
pub mod input;
pub mod inputvms;
pub mod metrics;
pub mod notify;
pub mod placer;
pub mod policy;
pub mod protocol;
pub mod sources;
pub mod sriov;
pub mod testutil;
pub mod vmm;
