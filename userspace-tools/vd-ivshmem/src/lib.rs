//! `vd-ivshmem`: an ivshmem server that gives stock QEMU guests a vd_evtchn disk.
//!
//! QEMU's `ivshmem-doorbell` device (`-chardev socket,path=S,id=c -device
//! ivshmem-doorbell,chardev=c,vectors=1`) connects to a server on a UNIX socket and receives,
//! in order ([`proto`]): the protocol version, its id, the shared memory (BAR2), the eventfd
//! its doorbell `(0 << 16) | 0` signals (peer 0's vector 0: a `KVM_IOEVENTFD`), and the
//! eventfd that raises its MSI-X vector 0 (a `KVM_IRQFD`). For each client this server makes a
//! vd_evtchn channel in a shmem file (`VDE_IOC_CREATE_SHM`), binds a kick and a call eventfd,
//! attaches the block backend to the disk image, hands the channel to the guest
//! (`VDE_IOC_ORPHAN`: it lives as long as QEMU holds the kick eventfd, not as long as this
//! server), sends the five messages and closes its own copies. The guest's requests then go
//! doorbell -> kernel backend -> interrupt without ever reaching QEMU's or this server's
//! userspace; killing or restarting the server changes nothing for running guests.
//!
//! The channel comes from a [`provider::ChannelProvider`]: [`provider::KernelProvider`] uses
//! `/dev/vd_evtchn`; [`provider::FakeProvider`] (a memfd and two eventfds) lets the tests run
//! the whole protocol against a fake QEMU on any machine.

pub mod image;
pub mod input;
pub mod libvirt;
pub mod listen;
pub mod proto;
pub mod provider;
pub mod server;
#[doc(hidden)]
pub mod testutil;

#[cfg(test)]
mod tests;

pub use provider::{ChannelGeometry, ChannelProvider, FakeProvider, KernelProvider};
pub use server::{Config, Event, Server};
