//! The input focus through vd_input_irq: `vdctl focus VM_ID` asks vdd (control request `focus`),
//! vdd calls `VDI_IOC_FOCUS` on `/dev/vd_input` and records the focused VM; every tick it reads
//! `VDI_IOC_STATS` of the VMs it knows (the focused one, the `[[vm]]` ids, the VMs routed devices
//! deliver to) for the metrics (queue depths). The device is opened per operation, so the module
//! may be loaded after vdd started.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use nix::errno::Errno;
use vd_uapi::VdiStats;

/// Why an input operation failed.
#[derive(Debug, Clone, PartialEq)]
pub enum InputError {
    /// The device could not be opened (errno).
    Open(PathBuf, Errno),
    /// The ioctl failed.
    Ioctl(&'static str, Errno),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open(p, Errno::ENOENT) => write!(
                f,
                "{}: no such device (vd_input_irq is not loaded)",
                p.display()
            ),
            Self::Open(p, e) => write!(f, "{}: {e}", p.display()),
            Self::Ioctl(op, Errno::ENOENT) => write!(
                f,
                "{op}: ENOENT: no VM with that id (its VMM creates it with VDI_IOC_VM_CREATE)"
            ),
            Self::Ioctl(op, Errno::EPERM) => {
                write!(f, "{op}: EPERM: needs CAP_SYS_ADMIN (run vdd as root)")
            }
            Self::Ioctl(op, e) => write!(f, "{op}: {e}"),
        }
    }
}

/// What vdd asks of vd_input_irq (a fake in tests).
pub trait InputCtl: Send + Sync {
    fn focus(&self, vm_id: u32) -> Result<(), InputError>;
    fn stats(&self, vm_id: u32) -> Result<VdiStats, InputError>;
    /// The VMs routed devices deliver to now.
    fn device_vms(&self) -> Result<Vec<u32>, InputError>;
}

/// `/dev/vd_input`.
pub struct RealInput(pub PathBuf);

impl RealInput {
    fn open(&self) -> Result<vd_sys::input::Input, InputError> {
        vd_sys::input::Input::open_path(&self.0).map_err(|e| {
            InputError::Open(
                self.0.clone(),
                Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO)),
            )
        })
    }
}

impl InputCtl for RealInput {
    fn focus(&self, vm_id: u32) -> Result<(), InputError> {
        self.open()?
            .focus(vm_id)
            .map_err(|e| InputError::Ioctl("VDI_IOC_FOCUS", e))
    }
    fn stats(&self, vm_id: u32) -> Result<VdiStats, InputError> {
        self.open()?
            .stats(vm_id)
            .map_err(|e| InputError::Ioctl("VDI_IOC_STATS", e))
    }
    fn device_vms(&self) -> Result<Vec<u32>, InputError> {
        let d = self
            .open()?
            .devices()
            .map_err(|e| InputError::Ioctl("VDI_IOC_LIST_DEVICES", e))?;
        Ok(d.iter().filter(|d| d.vm_id != 0).map(|d| d.vm_id).collect())
    }
}

/// The input controller the control handler uses (Debug/Default/Clone for [`crate::daemon::Shared`]).
#[derive(Clone, Default)]
pub struct InputHandle(pub Option<Arc<dyn InputCtl>>);

impl fmt::Debug for InputHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "InputHandle(Some)"
        } else {
            "InputHandle(None)"
        })
    }
}

/// The VMs whose queues are read: `known` (focused now or before, `[[vm]]` ids) and those routed
/// devices deliver to. Returns the rows and whether the device answered at all.
pub fn collect_stats(
    ctl: &dyn InputCtl,
    known: &BTreeSet<u32>,
) -> Result<Vec<crate::protocol::InputVmView>, InputError> {
    let mut ids = known.clone();
    ids.extend(ctl.device_vms()?);
    ids.remove(&0);
    let mut out = vec![];
    for id in ids {
        match ctl.stats(id) {
            Ok(s) => out.push(crate::protocol::InputVmView {
                vm_id: id,
                running: s.running != 0,
                queue_depth: s.queue_depth,
                max_depth: s.max_depth,
                queued: s.queued,
                dropped: s.dropped,
            }),
            Err(InputError::Ioctl(_, Errno::ENOENT)) => {} // no such VM (yet, or any more)
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
