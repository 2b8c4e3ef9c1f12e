//! The configuration file (TOML) and its validation. Every key has a default, so an empty file is
//! a valid configuration; `vdd.example.toml` documents each one. The `[policy]` keys can also be
//! changed at runtime (`vdctl policy set KEY VALUE`), through [`PolicyConfig::set`], which applies
//! the same validation as the file.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::cpus;

/// The thresholds and timings of the placement policy: all settable at runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Sampling period, milliseconds.
    pub interval_ms: u64,
    /// Sliding window the I/O rate is measured over, milliseconds (at least `interval_ms`).
    pub window_ms: u64,
    /// I/O requests per second (io_exits + mmio_exits + vd_evtchn requests) at or above which a
    /// VM's vCPU threads move to the driver cores.
    pub threshold: f64,
    /// A placed VM goes back when its rate stays under `threshold - hysteresis` for `hold_ms`.
    /// Also the margin by which a waiting VM must beat a placed one to take its slot.
    pub hysteresis: f64,
    /// How long a placed VM must stay cool before it is restored, milliseconds.
    pub hold_ms: u64,
    /// EEVDF slice given to placed vCPU threads, microseconds (kernel clamps to 100..=100000);
    /// 0 leaves slices alone.
    pub slice_us: u64,
    /// At most this many VMs on the driver cores at once, highest rate first; 0 disables placement.
    pub max_vms_on_driver_cores: u32,
    /// Also manage VMs whose vCPU threads were pinned by hand (affinity not the online set).
    pub manage_pinned: bool,
    /// How much KVM's other exits (`Counters::other_exits`) count in a VM's rate. 0 (default):
    /// only port and MMIO exits to the VMM and vd requests count. 1 lets guests whose virtio I/O
    /// the kernel serves (ioeventfd) be found, at the price of counting their timer and APIC
    /// exits too (set `threshold` above an idle guest's rate, which `vdctl vm list` shows).
    pub other_exits_weight: f64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            interval_ms: 1000,
            window_ms: 2000,
            threshold: 2000.0,
            hysteresis: 500.0,
            hold_ms: 5000,
            slice_us: 500,
            max_vms_on_driver_cores: 2,
            manage_pinned: false,
            other_exits_weight: 0.0,
        }
    }
}

/// The keys `vdctl policy set` accepts.
pub const POLICY_KEYS: &[&str] = &[
    "interval_ms",
    "window_ms",
    "threshold",
    "hysteresis",
    "hold_ms",
    "slice_us",
    "max_vms_on_driver_cores",
    "manage_pinned",
    "other_exits_weight",
];

impl PolicyConfig {
    /// Checks every value and their relations; the message names the key and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval_ms < 50 || self.interval_ms > 60_000 {
            return Err(format!(
                "interval_ms = {}: must be 50..=60000",
                self.interval_ms
            ));
        }
        if self.window_ms < self.interval_ms || self.window_ms > 600_000 {
            return Err(format!(
                "window_ms = {}: must be at least interval_ms ({}) and at most 600000",
                self.window_ms, self.interval_ms
            ));
        }
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return Err(format!(
                "threshold = {}: must be a positive number of requests per second",
                self.threshold
            ));
        }
        if !(self.hysteresis.is_finite()
            && self.hysteresis >= 0.0
            && self.hysteresis < self.threshold)
        {
            return Err(format!(
                "hysteresis = {}: must be 0 <= hysteresis < threshold ({})",
                self.hysteresis, self.threshold
            ));
        }
        if !(self.other_exits_weight.is_finite()
            && (0.0..=1000.0).contains(&self.other_exits_weight))
        {
            return Err(format!(
                "other_exits_weight = {}: must be 0..=1000",
                self.other_exits_weight
            ));
        }
        if self.hold_ms > 3_600_000 {
            return Err(format!("hold_ms = {}: at most 3600000", self.hold_ms));
        }
        if self.slice_us != 0 && !(100..=100_000).contains(&self.slice_us) {
            return Err(format!("slice_us = {}: must be 0 (leave slices alone) or 100..=100000 (the kernel's clamp)", self.slice_us));
        }
        Ok(())
    }

    /// Sets one key from its text form, validating the result as a whole; on error nothing changes.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let mut n = self.clone();
        let v = value.trim();
        let int = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{key}: {v:?} is not a non-negative integer"))
        };
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{key}: {v:?} is not a number"))
        };
        match key {
            "interval_ms" => n.interval_ms = int(v)?,
            "window_ms" => n.window_ms = int(v)?,
            "threshold" => n.threshold = num(v)?,
            "hysteresis" => n.hysteresis = num(v)?,
            "hold_ms" => n.hold_ms = int(v)?,
            "slice_us" => n.slice_us = int(v)?,
            "max_vms_on_driver_cores" => {
                n.max_vms_on_driver_cores =
                    u32::try_from(int(v)?).map_err(|_| format!("{key}: {v} is too large"))?
            }
            "other_exits_weight" => n.other_exits_weight = num(v)?,
            "manage_pinned" => {
                n.manage_pinned = v
                    .parse::<bool>()
                    .map_err(|_| format!("{key}: {v:?} is not true or false"))?
            }
            _ => {
                return Err(format!(
                    "unknown policy key {key:?}; the keys are: {}",
                    POLICY_KEYS.join(", ")
                ))
            }
        }
        n.validate()?;
        *self = n;
        Ok(())
    }
}

/// Where the host's pieces are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// The host-driver cores, as a CPU list ("1", "2-3"), or "auto": the union of the
    /// `/proc/irq/N/smp_affinity_list` of every IRQ whose `/proc/interrupts` line contains one of
    /// `irq_match`. Changing it needs a restart.
    pub driver_cores: String,
    /// Substrings of `/proc/interrupts` lines that mark the device IRQs (used by "auto").
    pub irq_match: Vec<String>,
    /// KVM's debugfs directory (one `<pid>-<fd>` directory per VM).
    pub kvm_debugfs: PathBuf,
    /// vd_evtchn's device node.
    pub evtchn_device: PathBuf,
    /// The scheduler's debugfs directory (for `base_slice_ns`, to tell a custom slice from the default).
    pub sched_debugfs: PathBuf,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            driver_cores: "auto".into(),
            irq_match: vec!["vd_".into(), "vfio".into(), "igb".into(), "nvme".into()],
            kvm_debugfs: "/sys/kernel/debug/kvm".into(),
            evtchn_device: vd_sys::evtchn::DEVICE.into(),
            sched_debugfs: "/sys/kernel/debug/sched".into(),
        }
    }
}

/// The daemon's own files and endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Control socket for vdctl (mode 0600).
    pub socket: PathBuf,
    /// What vdd changed (original affinity and slice per thread), for restart after a crash.
    pub state_file: PathBuf,
    /// Prometheus endpoint: "127.0.0.1:PORT" (loopback only), "unix:/path", or "" for none.
    pub metrics: String,
    /// error, warn, info, debug or trace.
    pub log_level: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            socket: "/run/vdd/vdd.sock".into(),
            state_file: "/run/vdd/state.json".into(),
            metrics: "127.0.0.1:9477".into(),
            log_level: "info".into(),
        }
    }
}

/// The SR-IOV policy: turns vd_sriov_mgr's reassignment proposals into VMM actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SriovConfig {
    /// Act on vd_sriov_mgr's proposals (swap the lease, unplug the VF from the old holder's VMM,
    /// plug it into the waiter's). `false`: vdd only reports VF holders.
    pub enabled: bool,
    /// vd_sriov_mgr's device node.
    pub device: PathBuf,
    /// How long the old holder's guest gets to release the VF after `device_del`, milliseconds.
    pub unplug_timeout_ms: u64,
    /// After a failed reassignment (rolled back), the same VF/holder/waiter is not tried again
    /// for this long, milliseconds.
    pub retry_ms: u64,
}

impl Default for SriovConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            device: vd_sys::sriov::DEVICE.into(),
            unplug_timeout_ms: 10_000,
            retry_ms: 30_000,
        }
    }
}

/// The input focus (vd_input_irq), and the VMs whose input device vdd serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputConfig {
    /// vd_input_irq's device node (`VDI_IOC_FOCUS`, `VDI_IOC_STATS`).
    pub device: PathBuf,
    /// `[[input.vm]]`: VMs whose QEMU gets its vd input device from vdd (what
    /// `vd-ivshmem-server --input` does, in vdd).
    #[serde(rename = "vm", skip_serializing_if = "Vec::is_empty")]
    pub vms: Vec<InputVmConfig>,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self {
            device: vd_sys::input::DEVICE.into(),
            vms: Vec::new(),
        }
    }
}

/// One `[[input.vm]]`: vdd listens on `socket` for that VM's QEMU (`-chardev
/// socket,path=SOCKET,id=vdin -device ivshmem-doorbell,chardev=vdin,vectors=1`), gives it a
/// vd_input_irq event ring in the device's shared memory and follows its vCPU threads while it
/// is connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputVmConfig {
    /// The VM id (what `vdctl focus` names).
    pub id: u32,
    /// The UNIX socket QEMU's ivshmem-doorbell chardev connects to.
    pub socket: PathBuf,
    /// Event ring entries (a power of two, 8..=4096).
    #[serde(default = "default_input_entries")]
    pub entries: u32,
}

fn default_input_entries() -> u32 {
    256
}

/// One VM's VMM, for the SR-IOV policy: `[[vm]]` tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// The VM id the VMM uses with vd_sriov_mgr (`VDS_IOC_LEASE`/`VDS_IOC_WAIT`) and vd_input_irq.
    pub id: u64,
    /// QEMU's QMP socket (`-qmp unix:PATH,server,wait=off`).
    pub qmp: PathBuf,
    /// QEMU device id of the VF's vfio-pci device in this VM (`device_del` / `device_add id=`).
    #[serde(default = "default_vf_device")]
    pub vf_device: String,
    /// Device id of the guest's standby virtio-net NIC (`virtio-net-pci,failover=on,id=...`): the
    /// VF is plugged with `failover_pair_id` = this, and its link is set up when the VF leaves.
    /// Without it the VF is plugged alone and no link is touched.
    #[serde(default)]
    pub standby_nic: Option<String>,
    /// The QEMU bus the VF is plugged into (`device_add bus=`), e.g. a `pcie-root-port`'s id: on
    /// q35 the root bus takes no hot-plugged device. Without it QEMU picks a bus.
    #[serde(default)]
    pub vf_bus: Option<String>,
}

fn default_vf_device() -> String {
    "vdvf0".into()
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub policy: PolicyConfig,
    pub host: HostConfig,
    pub daemon: DaemonConfig,
    pub sriov: SriovConfig,
    pub input: InputConfig,
    /// The VMs' VMMs (`[[vm]]`), by VM id.
    #[serde(rename = "vm", skip_serializing_if = "Vec::is_empty")]
    pub vms: Vec<VmConfig>,
}

/// Where metrics are served.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsAddr {
    None,
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

impl Config {
    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    /// Reads, parses and validates a file.
    pub fn load(p: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// Every check that does not need the running host.
    pub fn validate(&self) -> Result<(), String> {
        self.policy
            .validate()
            .map_err(|e| format!("[policy] {e}"))?;
        if self.host.driver_cores.trim() != "auto" {
            let c = cpus::parse(&self.host.driver_cores)
                .map_err(|e| format!("[host] driver_cores: {e}"))?;
            if c.is_empty() {
                return Err(
                    "[host] driver_cores: empty; give a CPU list such as \"1\" or \"auto\"".into(),
                );
            }
        } else if self.host.irq_match.is_empty() {
            return Err(
                "[host] driver_cores = \"auto\" needs at least one irq_match pattern".into(),
            );
        }
        self.metrics_addr()?;
        match self.daemon.log_level.as_str() {
            "error" | "warn" | "info" | "debug" | "trace" => {}
            l => {
                return Err(format!(
                    "[daemon] log_level = {l:?}: one of error, warn, info, debug, trace"
                ))
            }
        }
        for (k, p) in [
            ("socket", &self.daemon.socket),
            ("state_file", &self.daemon.state_file),
        ] {
            if !p.is_absolute() {
                return Err(format!(
                    "[daemon] {k} = {:?}: must be an absolute path",
                    p.display()
                ));
            }
        }
        if !self.sriov.device.is_absolute() {
            return Err(format!(
                "[sriov] device = {:?}: must be an absolute path",
                self.sriov.device.display()
            ));
        }
        if !(100..=600_000).contains(&self.sriov.unplug_timeout_ms) {
            return Err(format!(
                "[sriov] unplug_timeout_ms = {}: must be 100..=600000",
                self.sriov.unplug_timeout_ms
            ));
        }
        if self.sriov.retry_ms > 86_400_000 {
            return Err(format!(
                "[sriov] retry_ms = {}: at most 86400000",
                self.sriov.retry_ms
            ));
        }
        if !self.input.device.is_absolute() {
            return Err(format!(
                "[input] device = {:?}: must be an absolute path",
                self.input.device.display()
            ));
        }
        // One check for both kinds of VM table: a nonzero id and an absolute socket path, each
        // once.
        fn vm_entry(
            at: &str,
            id: u64,
            key: &str,
            path: &Path,
            ids: &mut std::collections::BTreeSet<u64>,
            paths: &mut std::collections::BTreeSet<PathBuf>,
        ) -> Result<(), String> {
            if id == 0 {
                return Err(format!(
                    "{at}: id must be nonzero (the VM id the VMM gives the modules)"
                ));
            }
            if !ids.insert(id) {
                return Err(format!("{at}: id {id} appears twice"));
            }
            if !path.is_absolute() {
                return Err(format!(
                    "{at}: {key} = {:?}: must be an absolute path",
                    path.display()
                ));
            }
            if !paths.insert(path.to_owned()) {
                return Err(format!(
                    "{at}: {key} = {:?} is also another VM's socket",
                    path.display()
                ));
            }
            Ok(())
        }
        let (mut ids, mut socks) = Default::default();
        for (i, v) in self.input.vms.iter().enumerate() {
            let at = format!("[[input.vm]] #{} (id = {})", i + 1, v.id);
            vm_entry(&at, v.id.into(), "socket", &v.socket, &mut ids, &mut socks)?;
            if !v.entries.is_power_of_two() || !(8..=4096).contains(&v.entries) {
                return Err(format!(
                    "{at}: entries = {}: a power of two, 8..=4096",
                    v.entries
                ));
            }
        }
        let (mut ids, mut socks) = Default::default();
        for (i, v) in self.vms.iter().enumerate() {
            let at = format!("[[vm]] #{} (id = {})", i + 1, v.id);
            vm_entry(&at, v.id, "qmp", &v.qmp, &mut ids, &mut socks)?;
            let id_ok = |s: &str| {
                !s.is_empty()
                    && s.len() <= 64
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    && s.starts_with(|c: char| c.is_ascii_alphabetic())
            };
            if !id_ok(&v.vf_device) {
                return Err(format!("{at}: vf_device = {:?}: a QEMU device id (a letter, then letters, digits, '-', '_', '.')", v.vf_device));
            }
            if let Some(b) = &v.vf_bus {
                if !id_ok(b) {
                    return Err(format!("{at}: vf_bus = {b:?}: a QEMU bus id (a letter, then letters, digits, '-', '_', '.')"));
                }
            }
            if let Some(n) = &v.standby_nic {
                if !id_ok(n) {
                    return Err(format!("{at}: standby_nic = {n:?}: a QEMU device id (a letter, then letters, digits, '-', '_', '.')"));
                }
            }
        }
        Ok(())
    }

    /// The `[[vm]]` entry of a VM id.
    pub fn vm(&self, id: u64) -> Option<&VmConfig> {
        self.vms.iter().find(|v| v.id == id)
    }

    /// The parsed `[daemon] metrics`.
    pub fn metrics_addr(&self) -> Result<MetricsAddr, String> {
        let m = self.daemon.metrics.trim();
        if m.is_empty() {
            return Ok(MetricsAddr::None);
        }
        if let Some(p) = m.strip_prefix("unix:") {
            let p = PathBuf::from(p);
            if !p.is_absolute() {
                return Err(format!(
                    "[daemon] metrics = {m:?}: the UNIX socket path must be absolute"
                ));
            }
            return Ok(MetricsAddr::Unix(p));
        }
        let a: std::net::SocketAddr = m.parse().map_err(|_| {
            format!("[daemon] metrics = {m:?}: expected \"127.0.0.1:PORT\", \"unix:/path\" or \"\"")
        })?;
        if !a.ip().is_loopback() {
            return Err(format!("[daemon] metrics = {m:?}: only loopback addresses (the endpoint has no authentication)"));
        }
        Ok(MetricsAddr::Tcp(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.policy.threshold, 2000.0);
        assert_eq!(
            c.metrics_addr().unwrap(),
            MetricsAddr::Tcp("127.0.0.1:9477".parse().unwrap())
        );
    }

    #[test]
    fn the_example_file_parses_and_equals_the_defaults() {
        let text = include_str!("../vdd.example.toml");
        assert_eq!(
            Config::parse(text).unwrap(),
            Config::default(),
            "vdd.example.toml must document the real defaults"
        );
    }

    #[test]
    fn a_full_file_parses() {
        let c = Config::parse(
            r#"
            [policy]
            interval_ms = 500
            window_ms = 1000
            threshold = 300
            hysteresis = 100
            hold_ms = 1500
            slice_us = 0
            max_vms_on_driver_cores = 1
            manage_pinned = true
            [host]
            driver_cores = "1,3"
            [daemon]
            socket = "/tmp/x.sock"
            metrics = "unix:/tmp/m.sock"
            "#,
        )
        .unwrap();
        assert_eq!(c.policy.interval_ms, 500);
        assert_eq!(c.policy.threshold, 300.0);
        assert!(c.policy.manage_pinned);
        assert_eq!(
            c.metrics_addr().unwrap(),
            MetricsAddr::Unix("/tmp/m.sock".into())
        );
    }

    #[test]
    fn bad_files_say_which_key() {
        let e = |t: &str| Config::parse(t).unwrap_err();
        assert!(e("[policy]\nthreshold = -1").contains("threshold"));
        assert!(e("[policy]\nthreshold = 100\nhysteresis = 100").contains("hysteresis"));
        assert!(e("[policy]\ninterval_ms = 10").contains("interval_ms"));
        assert!(e("[policy]\ninterval_ms = 1000\nwindow_ms = 500").contains("window_ms"));
        assert!(e("[policy]\nslice_us = 50").contains("slice_us"));
        assert!(e("[policy]\nthreshhold = 5").contains("unknown field"));
        assert!(e("[host]\ndriver_cores = \"1-x\"").contains("driver_cores"));
        assert!(e("[host]\ndriver_cores = \"\"").contains("driver_cores"));
        assert!(e("[daemon]\nmetrics = \"0.0.0.0:9477\"").contains("loopback"));
        assert!(e("[daemon]\nlog_level = \"loud\"").contains("log_level"));
        assert!(e("[daemon]\nsocket = \"rel.sock\"").contains("absolute"));
        assert!(e("[policy\n").contains("TOML") || !e("[policy\n").is_empty());
    }

    #[test]
    fn input_vm_tables() {
        let c = Config::parse(
            r#"
            [[input.vm]]
            id = 42
            socket = "/run/vd/desk42-input.sock"
            [[input.vm]]
            id = 43
            socket = "/run/vd/desk43-input.sock"
            entries = 1024
            "#,
        )
        .unwrap();
        assert_eq!(c.input.vms.len(), 2);
        assert_eq!(c.input.vms[0].entries, 256, "default ring");
        assert_eq!(c.input.vms[1].entries, 1024);
        let e = |t: &str| Config::parse(t).unwrap_err();
        let vm = |id: u32, sock: &str| format!("[[input.vm]]\nid = {id}\nsocket = \"{sock}\"\n");
        assert!(e(&vm(0, "/a")).contains("nonzero"));
        assert!(e(&vm(1, "a")).contains("absolute"));
        assert!(e(&(vm(1, "/a") + "entries = 100")).contains("power of two"));
        assert!(e(&(vm(1, "/a") + &vm(1, "/b"))).contains("twice"));
        assert!(e(&(vm(1, "/a") + &vm(2, "/a"))).contains("another VM's socket"));
        // The example file's [[input.vm]] table, uncommented, is one.
        let ex: String = include_str!("../vdd.example.toml")
            .lines()
            .skip_while(|l| *l != "# [[input.vm]]")
            .take_while(|l| l.starts_with("# "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        assert_eq!(Config::parse(&ex).map(|c| c.input.vms.len()), Ok(1), "{ex}");
    }

    #[test]
    fn vm_tables() {
        let c = Config::parse(
            r#"
            [sriov]
            unplug_timeout_ms = 2000
            [[vm]]
            id = 1
            qmp = "/run/vm1.qmp"
            vf_device = "hostdev0"
            standby_nic = "net0"
            [[vm]]
            id = 2
            qmp = "/run/vm2.qmp"
            "#,
        )
        .unwrap();
        assert_eq!(c.sriov.unplug_timeout_ms, 2000);
        assert_eq!(c.vms.len(), 2);
        assert_eq!(c.vm(1).unwrap().standby_nic.as_deref(), Some("net0"));
        assert_eq!(c.vm(2).unwrap().vf_device, "vdvf0", "default device id");
        assert!(c.vm(3).is_none());
        let e = |t: &str| Config::parse(t).unwrap_err();
        assert!(e("[[vm]]\nid = 0\nqmp = \"/a\"").contains("nonzero"));
        assert!(e("[[vm]]\nid = 1\nqmp = \"/a\"\n[[vm]]\nid = 1\nqmp = \"/b\"").contains("twice"));
        assert!(
            e("[[vm]]\nid = 1\nqmp = \"/a\"\n[[vm]]\nid = 2\nqmp = \"/a\"").contains("another VM")
        );
        assert!(e("[[vm]]\nid = 1\nqmp = \"rel.qmp\"").contains("absolute"));
        assert!(e("[[vm]]\nid = 1").contains("qmp"));
        assert!(e("[[vm]]\nid = 1\nqmp = \"/a\"\nvf_device = \"a b\"").contains("vf_device"));
        assert!(e("[[vm]]\nid = 1\nqmp = \"/a\"\nstandby_nic = \"\"").contains("standby_nic"));
        assert!(e("[[vm]]\nid = 1\nqmp = \"/a\"\nqmpp = 1").contains("unknown field"));
        assert!(e("[sriov]\nunplug_timeout_ms = 5").contains("unplug_timeout_ms"));
        assert!(e("[input]\ndevice = \"x\"").contains("[input]"));
    }

    #[test]
    fn runtime_set_validates_and_is_atomic() {
        let mut p = PolicyConfig::default();
        p.set("threshold", "5000").unwrap();
        assert_eq!(p.threshold, 5000.0);
        p.set("manage_pinned", "true").unwrap();
        assert!(p.manage_pinned);
        let before = p.clone();
        assert!(p
            .set("hysteresis", "6000")
            .unwrap_err()
            .contains("hysteresis"));
        assert!(p
            .set("threshold", "abc")
            .unwrap_err()
            .contains("not a number"));
        assert!(p.set("bogus", "1").unwrap_err().contains("keys are"));
        assert!(p.set("hold_ms", "-1").is_err());
        assert_eq!(p, before, "a rejected set changes nothing");
    }
}
