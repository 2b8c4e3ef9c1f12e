//! vd_input_irq checks: uinput devices are the "hardware", this process is the VMM (a VM sink
//! per open file, the event ring read through its own mapping, the call eventfd as the guest's
//! interrupt), and a forked child that registered itself as the VM's vCPU thread is what gets
//! SIGSTOPped (a signal stop affects a whole thread group, so the vCPU "thread" is a process
//! sharing the sink's file).
//!
//! One file per check (`attach`, `basic`, `sched`, `focus`, `unplug`, `mt`, `hw`, `hold`) and the
//! benchmark (`bench`); `fixtures` holds what they share.

mod attach;
mod basic;
mod bench;
mod caps;
mod feed;
mod fixtures;
mod focus;
mod hold;
mod hw;
mod latency;
mod mt;
pub mod qtest;
mod sched;
mod shm;
mod switchcost;
mod unplug;

pub use attach::attach;
pub use basic::basic;
pub use bench::bench;
pub use caps::{caps as input_caps, devices as input_devices};
pub(crate) use feed::Summary;
pub use feed::{feed, feed_virtio};
pub use focus::{focus, focus_guests};
pub use hold::hold;
pub use hw::hw;
pub use latency::{echo as input_echo, latency as input_latency, LatencyArgs};
pub use mt::{multitouch, unload};
pub use sched::sched;
pub use shm::shm;
pub use switchcost::switch_cost;
pub use unplug::unplug;
