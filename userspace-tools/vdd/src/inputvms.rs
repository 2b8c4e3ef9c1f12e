//! `[[input.vm]]`: vdd serves those VMs' vd input devices itself. For each, a thread runs
//! vd-ivshmem's input server on the VM's socket: when the VM's QEMU connects (its
//! `ivshmem-doorbell` chardev), it gets a vd_input_irq event ring in the device's shared memory,
//! and its vCPU threads are followed (`VDI_IOC_VCPU_ATTACH`) as they appear, so events wait in
//! order while the guest is descheduled; `vdctl focus VM` then sends the routed host devices to
//! it. This is `vd-ivshmem-server --input VM` inside vdd: one process to configure per host
//! instead of one per desktop. As with that server, the VM sink lives while QEMU is connected
//! and vdd runs: a restarted vdd cannot adopt a running guest's ring (QEMU never reconnects), so
//! that guest's input device stays silent until the guest is restarted.

use std::os::fd::{AsFd, OwnedFd};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use tracing::{info, warn};
use vd_ivshmem::input::{InputConfig, InputEvent, InputServer};

use crate::config::Config;

/// The running servers; [`InputVms::stop`] ends them.
pub struct InputVms {
    /// Dropped to stop the servers (their stop fd, the pipe's read end, then polls readable).
    stop: Option<OwnedFd>,
    threads: Vec<(u32, JoinHandle<()>)>,
}

impl InputVms {
    /// Binds every `[[input.vm]]` socket (all or nothing: an error names the VM and says what
    /// to do), then serves each on its own thread.
    pub fn start(cfg: &Config) -> Result<Self> {
        let mut servers = Vec::new();
        for v in &cfg.input.vms {
            let s = InputServer::bind(InputConfig {
                socket: v.socket.clone(),
                mode: 0o660,
                gid: None,
                vm_id: v.id,
                entries: v.entries,
                device: cfg.input.device.clone(),
            })
            .with_context(|| format!("[[input.vm]] id = {}", v.id))?;
            servers.push((v.id, s));
        }
        let (rd, wr) = nix::unistd::pipe().context("pipe")?;
        let rd = std::sync::Arc::new(rd);
        let mut threads = Vec::new();
        for (id, mut s) in servers {
            let rd = rd.clone();
            let t = std::thread::Builder::new()
                .name(format!("vdd-input-{id}"))
                .spawn(move || {
                    let r = s.run(rd.as_fd(), &mut |e| match e {
                        InputEvent::Refused { .. } | InputEvent::AttachFailed { .. } => {
                            warn!("input VM {id}: {}", e.message())
                        }
                        _ => info!("input VM {id}: {}", e.message()),
                    });
                    if let Err(e) = r {
                        warn!("input VM {id}: the server stopped: {e:#}");
                    }
                })
                .context("spawning an input server thread")?;
            threads.push((id, t));
        }
        Ok(Self {
            stop: Some(wr),
            threads,
        })
    }

    /// Stops every server and waits for its thread (the connected guests' input devices go
    /// silent; their sockets are removed).
    pub fn stop(mut self) {
        drop(self.stop.take());
        for (id, t) in self.threads.drain(..) {
            if t.join().is_err() {
                warn!("input VM {id}: the server thread panicked");
            }
        }
    }
}
