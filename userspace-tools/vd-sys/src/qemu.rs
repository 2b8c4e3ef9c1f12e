//! Stock QEMU processes as the host sees them: their vCPU threads. QEMU names them
//! `CPU <n>/KVM` (`/TCG`, ...) when it runs with `-name ...,debug-threads=on` (libvirt always
//! passes it); without the names, KVM's debugfs still lists a KVM guest's vCPU threads
//! (`/sys/kernel/debug/kvm/<pid>-<fd>/vcpu<n>/pid`, once a vCPU has run).

use std::path::Path;

/// A vCPU thread of a QEMU process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VcpuThread {
    /// vCPU index (the `n` of `CPU n/...`).
    pub index: u32,
    /// Thread id.
    pub tid: u32,
    /// Accelerator named in the thread name (`KVM`, `TCG`, ...).
    pub accel: String,
}

/// Parses a thread name `CPU <n>/<ACCEL>`.
pub fn parse_vcpu_comm(comm: &str) -> Option<(u32, String)> {
    let rest = comm.trim_end().strip_prefix("CPU ")?;
    let (n, accel) = rest.split_once('/')?;
    let index = n.parse().ok()?;
    (!accel.is_empty()).then(|| (index, accel.to_owned()))
}

/// The vCPU threads of process `pid`, sorted by vCPU index: by thread name, else from KVM's
/// debugfs (empty while QEMU has not created them yet). Errors when the process does not exist.
pub fn vcpu_threads(pid: u32) -> std::io::Result<Vec<VcpuThread>> {
    let v = vcpu_threads_in(Path::new("/proc"), pid)?;
    if !v.is_empty() {
        return Ok(v);
    }
    Ok(kvm_vcpu_threads_in(Path::new("/sys/kernel/debug/kvm"), pid))
}

/// The vCPU threads KVM's debugfs (`dir`) lists for VMs of process `pid`.
fn kvm_vcpu_threads_in(dir: &Path, pid: u32) -> Vec<VcpuThread> {
    let prefix = format!("{pid}-");
    let mut v = vec![];
    for vm in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !vm
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix))
        {
            continue;
        }
        for c in std::fs::read_dir(vm.path()).into_iter().flatten().flatten() {
            let name = c.file_name();
            let Some(index) = name
                .to_str()
                .and_then(|n| n.strip_prefix("vcpu")?.parse().ok())
            else {
                continue;
            };
            let tid = std::fs::read_to_string(c.path().join("pid"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if let Some(tid) = tid.filter(|&t| t != 0) {
                v.push(VcpuThread {
                    index,
                    tid,
                    accel: "KVM".into(),
                });
            }
        }
    }
    v.sort_by_key(|t| t.index);
    v
}

fn vcpu_threads_in(proc: &Path, pid: u32) -> std::io::Result<Vec<VcpuThread>> {
    let mut v = vec![];
    for e in std::fs::read_dir(proc.join(pid.to_string()).join("task"))? {
        let Ok(e) = e else { continue };
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // A thread that ended meanwhile has no comm any more: skipped.
        let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) else {
            continue;
        };
        if let Some((index, accel)) = parse_vcpu_comm(&comm) {
            v.push(VcpuThread { index, tid, accel });
        }
    }
    v.sort_by_key(|t| t.index);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_names() {
        assert_eq!(parse_vcpu_comm("CPU 0/KVM\n"), Some((0, "KVM".into())));
        assert_eq!(parse_vcpu_comm("CPU 12/TCG"), Some((12, "TCG".into())));
        for bad in [
            "CPU x/KVM",
            "CPU 1/",
            "CPU 1",
            "qemu-system-x86",
            "IO mon_iothread",
            "",
        ] {
            assert_eq!(parse_vcpu_comm(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn threads_of_a_fake_proc() {
        let d = std::env::temp_dir().join(format!("vd-sys-qemu-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for (tid, comm) in [
            (10, "qemu-system-x86"),
            (12, "CPU 1/KVM"),
            (11, "CPU 0/KVM"),
        ] {
            let t = d.join("7/task").join(tid.to_string());
            std::fs::create_dir_all(&t).unwrap();
            std::fs::write(t.join("comm"), format!("{comm}\n")).unwrap();
        }
        let v = vcpu_threads_in(&d, 7).unwrap();
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(
            v.iter().map(|t| (t.index, t.tid)).collect::<Vec<_>>(),
            vec![(0, 11), (1, 12)]
        );
        assert!(vcpu_threads_in(&d, 7).is_err());
    }

    #[test]
    fn threads_of_a_fake_kvm_debugfs() {
        let d = std::env::temp_dir().join(format!("vd-sys-kvm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for (vm, vcpu, tid) in [
            ("7-12", "vcpu1", "31"),
            ("7-12", "vcpu0", "30"),
            ("8-3", "vcpu0", "40"),
        ] {
            let p = d.join(vm).join(vcpu);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("pid"), format!("{tid}\n")).unwrap();
        }
        // A vCPU that never ran has pid 0.
        std::fs::create_dir_all(d.join("7-12/vcpu2")).unwrap();
        std::fs::write(d.join("7-12/vcpu2/pid"), "0\n").unwrap();
        let v = kvm_vcpu_threads_in(&d, 7);
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(
            v.iter().map(|t| (t.index, t.tid)).collect::<Vec<_>>(),
            vec![(0, 30), (1, 31)]
        );
    }
}
