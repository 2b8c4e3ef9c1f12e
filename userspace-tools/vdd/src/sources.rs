//! Where VMs and their I/O counters come from, without asking the VMM:
//! - KVM's debugfs: one `<pid>-<fd>` directory per VM with one file per statistic (`io_exits`,
//!   `mmio_exits`, ..., summed over the VM's vCPUs) and one `vcpuN/` directory per vCPU whose
//!   `pid` file holds the thread id that last ran it (0 before its first KVM_RUN);
//! - vd_evtchn's host-wide channel list (`VDE_IOC_LIST`): requests per channel, counted for
//!   the process that kicks the channel (see [`io_owner`]).
//!
//! Measured in the test VM (nested KVM under TCG): a guest on vd_evtchn's in-kernel path also
//! makes port-I/O exits (each doorbell is a KVM_IOEVENTFD port write, and the guest's interrupt
//! handler writes the PIC's EOI port), so such a VM counts each request both as io_exits and as
//! an evtchn request: 15413 io_exits/s + 7709 evtchn/s for 7709 requests/s. The policy's rate is
//! an I/O *pressure* measure (exits plus requests), not a request count; set `threshold` with it.
//!
//! A source that is missing (no debugfs, kvm not loaded, vd_evtchn not loaded) reports why;
//! the daemon logs each change of a source's state once and goes on with the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::policy::Counters;

/// One VM as found in KVM's debugfs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KvmVm {
    pub pid: u32,
    pub io_exits: u64,
    pub mmio_exits: u64,
    pub halt_exits: u64,
    /// All VM exits, and those for host interrupts (KVM's `exits`, `irq_exits`).
    pub exits: u64,
    pub irq_exits: u64,
    /// Thread ids from `vcpuN/pid` (vCPUs that have run).
    pub vcpu_tids: Vec<u32>,
    /// The kernel has no `vcpuN/pid` files (the daemon falls back to every thread of the VMM).
    pub no_vcpu_pid_files: bool,
}

/// The name a QEMU process gives its VM (`-name NAME[,debug-threads=on]` or `-name
/// guest=NAME,...`, as libvirt passes it), from its command line; `None` for other VMMs.
pub fn vmm_name(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&str> = raw
        .split(|&b| b == 0)
        .filter_map(|a| std::str::from_utf8(a).ok())
        .collect();
    qemu_name(&args)
}

/// VM names by VMM pid ([`vmm_name`]): a process's command line is read once, when vdd first
/// asks for it, not on every tick. The pid's process start time (`/proc/PID/stat` field 22, as
/// the placer uses for thread ids) is checked on each lookup: a pid reused by another process
/// has another start time, and its command line is read again.
#[derive(Debug, Default)]
pub struct VmmNames {
    /// pid -> (start time, name).
    cache: BTreeMap<u32, (u64, Option<String>)>,
    /// Command lines read so far (for tests).
    reads: u64,
}

impl VmmNames {
    /// The name of the VM that process `pid` runs; `None` for a process without `-name` or
    /// one that is gone.
    pub fn get(&mut self, pid: u32) -> Option<String> {
        let Some(start) = process_start_time(pid) else {
            self.cache.remove(&pid);
            return None;
        };
        if let Some((t, name)) = self.cache.get(&pid) {
            if *t == start {
                return name.clone();
            }
        }
        self.reads += 1;
        let name = vmm_name(pid);
        // The command line read is that of the process whose start time was read only if the
        // pid still has that start time now.
        if process_start_time(pid) != Some(start) {
            self.cache.remove(&pid);
            return None;
        }
        self.cache.insert(pid, (start, name.clone()));
        name
    }

    /// Forgets the pids for which `keep` is false (VMs that left).
    pub fn retain(&mut self, mut keep: impl FnMut(u32) -> bool) {
        self.cache.retain(|&pid, _| keep(pid));
    }
}

/// Start time of process `pid` (`/proc/PID/stat` field 22); `None` if it is gone.
fn process_start_time(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    crate::host::parse_start_time(&s)
}

/// [`vmm_name`] over an argument list.
pub fn qemu_name(args: &[&str]) -> Option<String> {
    let i = args.iter().position(|a| *a == "-name" || *a == "--name")?;
    let v = args.get(i + 1)?;
    // QEMU's option syntax: the first field may be the name itself or `guest=NAME`; a comma in
    // the name is written twice.
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                fields.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    fields.push(cur);
    let name = fields
        .iter()
        .find_map(|f| f.strip_prefix("guest="))
        .or_else(|| {
            fields
                .first()
                .map(String::as_str)
                .filter(|f| !f.contains('='))
        })?;
    (!name.is_empty()).then(|| name.to_owned())
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// KVM's debugfs directory.
#[derive(Debug, Clone)]
pub struct KvmDebugfs {
    pub dir: PathBuf,
}

impl KvmDebugfs {
    /// Every VM, one entry per VMM pid (a process with several VMs has them summed).
    pub fn scan(&self) -> Result<BTreeMap<u32, KvmVm>, String> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| {
            format!(
                "{}: {e} (is debugfs mounted on /sys/kernel/debug and kvm loaded?)",
                self.dir.display()
            )
        })?;
        let mut out: BTreeMap<u32, KvmVm> = BTreeMap::new();
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((pid, _fd)) = name.split_once('-') else {
                continue;
            };
            let Ok(pid) = pid.parse::<u32>() else {
                continue;
            };
            let d = e.path();
            // A VM whose directory vanishes mid-read is simply not reported this round.
            let Some(io) = read_u64(&d.join("io_exits")) else {
                continue;
            };
            let vm = out.entry(pid).or_insert_with(|| KvmVm {
                pid,
                ..Default::default()
            });
            vm.io_exits += io;
            vm.mmio_exits += read_u64(&d.join("mmio_exits")).unwrap_or(0);
            vm.halt_exits += read_u64(&d.join("halt_exits")).unwrap_or(0);
            vm.exits += read_u64(&d.join("exits")).unwrap_or(0);
            vm.irq_exits += read_u64(&d.join("irq_exits")).unwrap_or(0);
            let mut saw_vcpu = false;
            let mut saw_pid_file = false;
            for v in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let n = v.file_name();
                if !n
                    .to_str()
                    .is_some_and(|n| n.starts_with("vcpu") && n[4..].parse::<u32>().is_ok())
                {
                    continue;
                }
                saw_vcpu = true;
                if let Some(tid) = read_u64(&v.path().join("pid")) {
                    saw_pid_file = true;
                    if tid != 0 {
                        vm.vcpu_tids.push(tid as u32);
                    }
                }
            }
            vm.no_vcpu_pid_files |= saw_vcpu && !saw_pid_file;
            vm.vcpu_tids.sort_unstable();
            vm.vcpu_tids.dedup();
        }
        Ok(out)
    }
}

/// The VMM a channel's I/O belongs to: the process that kicks it (`kick_pid`: the kick's
/// wake-up runs in the signaller, for a QEMU guest the QEMU whose vCPU thread took the doorbell
/// write), else the domain's owner (`domain_pid`: the creator, which for a channel made by
/// `vd-ivshmem-server` is the server, not a VM). `None` for a channel that was never kicked and
/// served nothing: no evidence of any VM's I/O (a server's channel whose guest has not started
/// would otherwise list the server as a VM).
pub fn io_owner(e: &vd_uapi::VdeListEntry) -> Option<u32> {
    if e.kick_pid != 0 {
        Some(e.kick_pid)
    } else if e.stats.counters.requests != 0 {
        // Served without an eventfd kick (`VDE_IOC_KICK`, a backend attached over queued
        // requests): the domain drives it.
        Some(e.domain_pid)
    } else {
        None
    }
}

/// Requests per VMM pid ([`io_owner`]), summed over its channels.
pub fn requests_by_vmm(list: &[vd_uapi::VdeListEntry]) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    for e in list {
        if let Some(pid) = io_owner(e) {
            let n: &mut u64 = out.entry(pid).or_insert(0);
            *n = n.saturating_add(e.stats.counters.requests);
        }
    }
    out
}

/// vd_evtchn's counters.
pub struct Evtchn {
    pub device: PathBuf,
    dom: Option<vd_sys::evtchn::Domain>,
}

impl Evtchn {
    pub fn new(device: PathBuf) -> Self {
        Self { device, dom: None }
    }

    /// Requests per VMM pid, summed over its channels ([`requests_by_vmm`]).
    pub fn scan(&mut self) -> Result<BTreeMap<u32, u64>, String> {
        if self.dom.is_none() {
            let d = vd_sys::evtchn::Domain::open_path(&self.device)
                .map_err(|e| format!("{}: {e} (is vd_evtchn loaded?)", self.device.display()))?;
            self.dom = Some(d);
        }
        let dom = self.dom.as_ref().expect("opened above");
        match dom.list_all() {
            Ok(list) => Ok(requests_by_vmm(&list)),
            Err(e) => {
                // Reopen next time (the module may have been reloaded).
                self.dom = None;
                Err(format!("{}: VDE_IOC_LIST: {e}", self.device.display()))
            }
        }
    }
}

/// The counters of one VM from both sources.
pub fn merge(kvm: Option<&KvmVm>, evtchn_requests: Option<u64>) -> Counters {
    Counters {
        io_exits: kvm.map_or(0, |k| k.io_exits),
        mmio_exits: kvm.map_or(0, |k| k.mmio_exits),
        evtchn_requests: evtchn_requests.unwrap_or(0),
        other_exits: kvm.map_or(0, |k| {
            k.exits
                .saturating_sub(k.halt_exits)
                .saturating_sub(k.irq_exits)
                .saturating_sub(k.io_exits)
                .saturating_sub(k.mmio_exits)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child whose command line names a VM as QEMU's does (`-name NAME,debug-threads=on`);
    /// `; true` keeps the shell from exec'ing `sleep` in its place.
    fn spawn_named(name: &str) -> std::process::Child {
        std::process::Command::new("sh")
            .args(["-c", "sleep 30; true", "sh", "-name"])
            .arg(format!("{name},debug-threads=on"))
            .spawn()
            .unwrap()
    }
    use crate::placer::tests::tmpdir;

    #[test]
    fn qemu_names() {
        let n = |a: &[&str]| qemu_name(a);
        assert_eq!(
            n(&["qemu", "-name", "desk1,debug-threads=on"]).as_deref(),
            Some("desk1")
        );
        assert_eq!(
            n(&["qemu", "-name", "guest=win11-a,debug-threads=on"]).as_deref(),
            Some("win11-a")
        );
        assert_eq!(n(&["qemu", "-name", "a,,b"]).as_deref(), Some("a,b"));
        assert_eq!(n(&["qemu", "-name", "debug-threads=on"]), None);
        assert_eq!(n(&["qemu", "-m", "1G"]), None);
        assert_eq!(n(&["qemu", "-name"]), None);
        // A real process: this test's own has no -name.
        assert_eq!(vmm_name(std::process::id()), None);
        // (Poll: until the child has exec'd.)
        let mut c = spawn_named("desk7");
        let t = std::time::Instant::now();
        let mut got = vmm_name(c.id());
        while got.is_none() && t.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(10));
            got = vmm_name(c.id());
        }
        let _ = c.kill();
        let _ = c.wait();
        assert_eq!(got.as_deref(), Some("desk7"));
    }

    #[test]
    fn vmm_names_read_once_per_process() {
        let mut c = spawn_named("desk8");
        let pid = c.id();
        // Until the child has exec'd (its command line is the test binary's before).
        let t = std::time::Instant::now();
        while vmm_name(pid).is_none() && t.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut n = VmmNames::default();
        let first = n.get(pid);
        let again = (n.get(pid), n.get(pid));
        let reads_cached = n.reads;
        // The same pid with another start time (as after a reuse): read again.
        if let Some(e) = n.cache.get_mut(&pid) {
            *e = (e.0.wrapping_add(1), Some("old".into()));
        }
        let after_reuse = n.get(pid);
        let reads_reuse = n.reads;
        // Not a VM any more: forgotten.
        n.retain(|p| p != pid);
        let forgotten = !n.cache.contains_key(&pid);
        let _ = c.kill();
        let _ = c.wait();
        // Gone: no name, nothing cached, nothing read.
        let gone = n.get(pid);
        assert_eq!(first.as_deref(), Some("desk8"));
        assert_eq!(
            (again.0.as_deref(), again.1.as_deref()),
            (Some("desk8"), Some("desk8"))
        );
        assert_eq!(reads_cached, 1);
        assert_eq!(after_reuse.as_deref(), Some("desk8"));
        assert_eq!(reads_reuse, 2);
        assert!(forgotten);
        assert_eq!(gone, None);
        assert!(n.cache.is_empty());
        assert_eq!(n.reads, 2);
        // A process without -name: read once, cached as None.
        let me = std::process::id();
        assert_eq!((n.get(me), n.get(me)), (None, None));
        assert_eq!(n.reads, 3);
    }

    #[test]
    fn scans_a_debugfs_tree() {
        let d = tmpdir("kvmfs");
        let mk = |vm: &str, io: u64, vcpus: &[(u32, Option<u32>)]| {
            let v = d.join(vm);
            std::fs::create_dir_all(&v).unwrap();
            std::fs::write(v.join("io_exits"), format!("{io}\n")).unwrap();
            std::fs::write(v.join("mmio_exits"), "7\n").unwrap();
            std::fs::write(v.join("exits"), "500\n").unwrap();
            std::fs::write(v.join("halt_exits"), "10\n").unwrap();
            std::fs::write(v.join("irq_exits"), "15\n").unwrap();
            for (n, pid) in vcpus {
                let c = v.join(format!("vcpu{n}"));
                std::fs::create_dir_all(&c).unwrap();
                if let Some(p) = pid {
                    std::fs::write(c.join("pid"), format!("{p}\n")).unwrap();
                }
            }
        };
        mk("100-11", 50, &[(0, Some(101)), (1, Some(0))]);
        mk("100-12", 5, &[(0, Some(105))]);
        mk("200-9", 1, &[(0, None)]);
        std::fs::create_dir_all(d.join("not-a-vm")).unwrap();
        std::fs::write(d.join("io_exits"), "1\n").unwrap(); // the global file
        let m = KvmDebugfs {
            dir: d.to_path_buf(),
        }
        .scan()
        .unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[&100].io_exits, 55);
        assert_eq!(m[&100].mmio_exits, 14);
        let c = merge(m.get(&100), Some(3));
        assert_eq!(
            c.other_exits,
            1000 - 20 - 30 - 55 - 14,
            "exits less halts, irqs, io, mmio"
        );
        assert_eq!(
            m[&100].vcpu_tids,
            vec![101, 105],
            "vCPU 1 never ran: pid 0 skipped"
        );
        assert!(!m[&100].no_vcpu_pid_files);
        assert!(m[&200].no_vcpu_pid_files);
        let gone = d.to_path_buf();
        drop(d);
        let e = KvmDebugfs { dir: gone }.scan().unwrap_err();
        assert!(e.contains("debugfs"), "{e}");
    }

    fn entry(domain_pid: u32, kick_pid: u32, requests: u64) -> vd_uapi::VdeListEntry {
        let mut e = vd_uapi::VdeListEntry {
            domain_pid,
            kick_pid,
            ..Default::default()
        };
        e.stats.counters.requests = requests;
        e
    }

    #[test]
    fn io_goes_to_the_kicker_not_the_creator() {
        // A server (pid 50) created channels for two QEMUs (100, 200) and one whose guest has
        // not kicked yet; a VMM (300) kicks its own channels; a channel served through
        // VDE_IOC_KICK only (400); a fresh channel of 500 that nothing used.
        let list = [
            entry(50, 100, 7),
            entry(50, 100, 3),
            entry(50, 200, 5),
            entry(50, 0, 0),
            entry(300, 300, 11),
            entry(400, 0, 2),
            entry(500, 0, 0),
        ];
        assert_eq!(io_owner(&list[0]), Some(100));
        assert_eq!(io_owner(&list[3]), None);
        assert_eq!(io_owner(&list[5]), Some(400));
        let m = requests_by_vmm(&list);
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            vec![(100, 10), (200, 5), (300, 11), (400, 2)],
            "the server (50) and the unused domain (500) are no VMs"
        );
        // Sums over channels saturate.
        let m = requests_by_vmm(&[entry(1, 9, u64::MAX), entry(2, 9, 1)]);
        assert_eq!(m[&9], u64::MAX);
    }

    #[test]
    fn missing_evtchn_is_an_error_message_not_a_panic() {
        let mut e = Evtchn::new("/nonexistent/vd_evtchn".into());
        assert!(e.scan().unwrap_err().contains("is vd_evtchn loaded"));
        // A device that is not vd_evtchn: the ioctl fails, reported.
        let mut e = Evtchn::new("/dev/null".into());
        assert!(e.scan().unwrap_err().contains("VDE_IOC_LIST"));
    }
}
