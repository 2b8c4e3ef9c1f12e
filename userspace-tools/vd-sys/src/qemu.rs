//! Stock QEMU processes as the host sees them: their vCPU threads, by the names QEMU gives them
//! (`CPU <n>/KVM`, `CPU <n>/TCG`, ...; `qemu_thread_create` with `-name debug-threads=on`, the
//! default since QEMU 2.x on Linux for vCPU threads).

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

/// The vCPU threads of process `pid`, sorted by vCPU index (empty while QEMU has not created
/// them yet). Errors when the process does not exist.
pub fn vcpu_threads(pid: u32) -> std::io::Result<Vec<VcpuThread>> {
    vcpu_threads_in(Path::new("/proc"), pid)
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
}
