//! The control protocol between vdctl and vdd: one JSON object per line each way over the UNIX
//! control socket. A request is `{"cmd": "...", ...}`; the answer is `{"ok": true, "data": ...}`
//! or `{"ok": false, "error": "..."}`.
//!
//! ```text
//! -> {"cmd":"vm_list"}
//! <- {"ok":true,"data":[{"pid":1234,"state":"placed",...}]}
//! -> {"cmd":"policy_set","key":"threshold","value":"3000"}
//! <- {"ok":true,"data":{"interval_ms":1000,"threshold":3000.0,...}}
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::config::{Config, PolicyConfig};
use crate::policy::Rates;

/// What vdctl asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Every VM: [`VmView`]s.
    VmList,
    /// One VM with its threads: [`VmDetail`].
    VmShow { pid: u32 },
    /// The running configuration: [`PolicyView`].
    PolicyGet,
    /// Change one `[policy]` key: answers the new [`PolicyView`].
    PolicySet { key: String, value: String },
    /// The daemon: [`StatusView`].
    Status,
    /// Give the routed input devices to VM `vm_id` (0: to no VM) through vd_input_irq
    /// (`VDI_IOC_FOCUS`): answers a [`FocusView`].
    Focus { vm_id: u32 },
}

/// `focus`: what vdd did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FocusView {
    /// The VM that has the focus now (0: none).
    pub vm_id: u32,
    /// The VM that had it before, as far as vdd knows (0: none or unknown).
    pub previous: u32,
}

/// One VF as the SR-IOV policy sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct VfView {
    /// PCI name (`0000:01:10.0`).
    pub vf: String,
    /// The VM holding its lease (none: free).
    pub vm_id: Option<u64>,
    /// Window rate, bytes/s (once the module has a full window).
    pub rate_bps: Option<u64>,
    /// The holder is a reassignment candidate.
    pub idle: bool,
    /// The holder has a `[[vm]]` entry (QMP socket) in vdd's config.
    pub configured: bool,
}

/// The SR-IOV policy's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SriovView {
    /// "ok", or why the policy is off.
    pub state: String,
    /// The module's reassignment parameters: threshold_bps, hysteresis_bps, window_ms, min_hold_ms.
    pub module_policy: Option<[u64; 4]>,
    pub vfs: Vec<VfView>,
    /// Reassignments completed (swap + unplug + plug).
    pub reassignments_total: u64,
    /// Reassignments that failed after the swap (and were rolled back).
    pub failures_total: u64,
    /// Rollbacks that themselves failed (the state needs an operator).
    pub rollback_failures_total: u64,
    /// Proposals left alone because a VM has no `[[vm]]` entry.
    pub skipped_total: u64,
    /// The last reassignment or failure, in words.
    pub last: Option<String>,
    /// The last completed reassignment, step by step (wall clock: comparable with other tools'
    /// timestamps, e.g. when the new holder's traffic appears on the VF).
    pub last_move: Option<MoveTiming>,
}

/// How long a completed reassignment took, step by step (ms, each step on its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MoveTiming {
    pub vf: String,
    pub from_vm: u64,
    pub to_vm: u64,
    /// When vdd took the decision (the module's proposal in hand), Unix time in microseconds.
    pub decided_unix_us: u64,
    /// Both QMP connections opened and greeted.
    pub connect_ms: f64,
    /// Step 1: VDS_IOC_SWAP.
    pub lease_ms: f64,
    /// Step 2: device_del until DEVICE_DELETED (the old guest's hot-unplug).
    pub unplug_ms: f64,
    /// Step 3: set_link up and announce-self on the old holder's standby NIC.
    pub standby_ms: f64,
    /// Step 4: the new holder's standby MAC read and given to the VF (qom-get, IFLA_VF_MAC).
    pub mac_ms: f64,
    /// Step 4: device_add answered.
    pub plug_ms: f64,
    /// Decision to device_add answered.
    pub total_ms: f64,
}

/// One VM's input queue (`VDI_IOC_STATS`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct InputVmView {
    pub vm_id: u32,
    pub running: bool,
    /// Events waiting in the VM's queue now.
    pub queue_depth: u32,
    pub max_depth: u64,
    pub queued: u64,
    pub dropped: u64,
}

/// The input focus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct InputView {
    /// "ok", or why vd_input_irq is not usable.
    pub state: String,
    /// The VM vdd last gave the focus to (none: never, or cleared).
    pub focused: Option<u32>,
    pub focus_changes_total: u64,
    /// The VMs whose queues vdd reads (focused, `[[vm]]` ids, routed devices' VMs).
    pub vms: Vec<InputVmView>,
}

/// What vdd answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl Response {
    pub fn ok<T: Serialize>(t: &T) -> Self {
        match serde_json::to_value(t) {
            Ok(v) => Self {
                ok: true,
                error: None,
                data: Some(v),
            },
            Err(e) => Self::err(format!("internal: {e}")),
        }
    }
    pub fn err(e: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(e.into()),
            data: None,
        }
    }
}

/// A VM's state as vdctl shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// Not on the driver cores.
    Normal,
    /// On the driver cores.
    Placed,
    /// Pinned by hand: left alone (`manage_pinned = false`).
    Pinned,
    /// Hot, but no slot free on the driver cores.
    Waiting,
}

/// One VM in `vm list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmView {
    pub pid: u32,
    /// The VM's name, from its VMM's command line (QEMU's `-name`), if it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub state: VmState,
    pub vcpus: Vec<u32>,
    /// `None` until two samples.
    pub rates: Option<Rates>,
    /// Seconds in the current state.
    pub state_secs: f64,
    /// Seconds under `threshold - hysteresis` (placed VMs on their way back).
    pub cooling_secs: Option<f64>,
    /// The last state change with its numbers.
    pub last_change: String,
}

/// A thread of a VM in `vm show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadView {
    pub tid: u32,
    /// Its affinity now (CPU list), if readable.
    pub affinity: Option<String>,
    /// Its slice now (ns), for fair-class threads.
    pub slice_ns: Option<u64>,
    /// What vdd changed, if anything.
    pub managed: bool,
    pub orig_affinity: Option<String>,
    pub orig_slice_ns: Option<u64>,
}

/// `vm show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmDetail {
    #[serde(flatten)]
    pub vm: VmView,
    pub threads: Vec<ThreadView>,
}

/// `policy get`: the running `[policy]` (possibly changed at runtime) and the rest of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyView {
    pub policy: PolicyConfig,
    pub config: Config,
}

/// `daemon status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StatusView {
    pub pid: u32,
    pub version: String,
    pub config_file: Option<String>,
    pub uptime_secs: f64,
    pub ticks: u64,
    pub driver_cores: String,
    /// How the driver cores were found ("config" or the IRQs).
    pub driver_cores_from: String,
    pub slice_mode: String,
    /// Per source: "ok" or why it is off.
    pub sources: BTreeMap<String, String>,
    pub vms: usize,
    pub placed_vms: usize,
    pub managed_threads: usize,
    pub placements_total: u64,
    pub restores_total: u64,
    pub state_file: String,
    pub socket: String,
    pub metrics: String,
    #[serde(default)]
    pub sriov: SriovView,
    #[serde(default)]
    pub input: InputView,
}
