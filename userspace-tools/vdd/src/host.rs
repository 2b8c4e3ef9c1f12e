//! The real kernel: sched_{get,set}affinity, sched_{get,set}attr, /proc and /sys.

use std::io;
use std::path::Path;

use nix::libc;

use crate::cpus::{self, CpuList};
use crate::placer::Host;

/// `struct sched_attr` (SCHED_ATTR_SIZE_VER1, include/uapi/linux/sched/types.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
    sched_util_min: u32,
    sched_util_max: u32,
}
const _: () = assert!(std::mem::size_of::<SchedAttr>() == 56);

const SCHED_NORMAL: u32 = 0;
const SCHED_BATCH: u32 = 3;
const SCHED_IDLE: u32 = 5;

fn sched_getattr(tid: u32) -> io::Result<SchedAttr> {
    let mut a = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        ..Default::default()
    };
    // SAFETY: `a` is a valid, writable `sched_attr` of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid as libc::pid_t,
            &mut a as *mut SchedAttr,
            a.size,
            0u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(a)
}

fn sched_setattr(tid: u32, a: &SchedAttr) -> io::Result<()> {
    let mut a = *a;
    a.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `a` is a valid `sched_attr` of the size it declares; the kernel only reads it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            tid as libc::pid_t,
            &a as *const SchedAttr,
            0u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn is_fair(policy: u32) -> bool {
    matches!(policy, SCHED_NORMAL | SCHED_BATCH | SCHED_IDLE)
}

/// The host's threads, as the scheduler sees them.
#[derive(Debug, Default)]
pub struct RealHost;

impl Host for RealHost {
    fn affinity(&self, tid: u32) -> io::Result<CpuList> {
        // SAFETY: an all-zero cpu_set_t is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is writable and its size is passed.
        let r = unsafe {
            libc::sched_getaffinity(
                tid as libc::pid_t,
                std::mem::size_of::<libc::cpu_set_t>(),
                &mut set,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY (CPU_ISSET): reads `set` only.
        Ok((0..libc::CPU_SETSIZE as u32)
            .filter(|&c| unsafe { libc::CPU_ISSET(c as usize, &set) })
            .collect())
    }

    fn set_affinity(&mut self, tid: u32, c: &CpuList) -> io::Result<()> {
        // SAFETY: an all-zero cpu_set_t is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &cpu in c {
            if cpu as usize >= libc::CPU_SETSIZE as usize {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            // SAFETY: cpu is below CPU_SETSIZE (checked).
            unsafe { libc::CPU_SET(cpu as usize, &mut set) };
        }
        // SAFETY: `set` is a valid cpu_set_t of the size passed.
        let r = unsafe {
            libc::sched_setaffinity(
                tid as libc::pid_t,
                std::mem::size_of::<libc::cpu_set_t>(),
                &set,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn slice(&self, tid: u32) -> io::Result<Option<u64>> {
        let a = sched_getattr(tid)?;
        Ok(is_fair(a.sched_policy).then_some(a.sched_runtime))
    }

    fn set_slice(&mut self, tid: u32, ns: u64) -> io::Result<()> {
        let mut a = sched_getattr(tid)?;
        if !is_fair(a.sched_policy) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a fair-class thread",
            ));
        }
        // Keep policy, nice and reset-on-fork as they are; only the slice changes.
        a.sched_runtime = ns;
        a.sched_deadline = 0;
        a.sched_period = 0;
        a.sched_flags &= 0x01; // SCHED_FLAG_RESET_ON_FORK
        sched_setattr(tid, &a)
    }

    fn start_time(&self, tid: u32) -> io::Result<u64> {
        let s = std::fs::read_to_string(format!("/proc/{tid}/stat"))?;
        parse_start_time(&s).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{tid}/stat: unparsable"),
            )
        })
    }
}

/// Field 22 (starttime) of a `/proc/PID/stat` line; the comm field may hold spaces and parentheses.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields after comm start at field 3 (state); starttime is field 22: index 19 here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The CPUs online now.
pub fn online_cpus() -> io::Result<CpuList> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/online")?;
    cpus::parse(&s).map_err(io::Error::other)
}

/// Thread ids of a process.
pub fn threads_of(pid: u32) -> io::Result<Vec<u32>> {
    let mut v: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// How per-task slices can be set on this kernel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SliceMode {
    /// `sched_setattr(SCHED_NORMAL, sched_runtime)` sets the EEVDF slice (Linux 6.12+).
    EevdfSlice,
    /// Not configured (`slice_us = 0`).
    Off,
    /// The kernel ignored or refused it: affinity only.
    Unsupported(String),
}

impl std::fmt::Display for SliceMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SliceMode::EevdfSlice => {
                write!(f, "EEVDF per-task slice (sched_setattr sched_runtime)")
            }
            SliceMode::Off => write!(f, "off (slice_us = 0)"),
            SliceMode::Unsupported(why) => write!(f, "unsupported: {why}; affinity only"),
        }
    }
}

/// Tries a custom slice on the calling thread (set, read back, reset to the default). Kernels
/// before 6.12 accept `sched_runtime` for SCHED_NORMAL silently and ignore it: only the read-back
/// tells.
pub fn probe_slice(ns: u64) -> SliceMode {
    if ns == 0 {
        return SliceMode::Off;
    }
    let mut h = RealHost;
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() } as u32;
    let before = match h.slice(me) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return SliceMode::Unsupported("vdd itself does not run in the fair class".into())
        }
        Err(e) => return SliceMode::Unsupported(format!("sched_getattr: {e}")),
    };
    let r = h.set_slice(me, ns).and_then(|()| h.slice(me));
    let _ = h.set_slice(me, 0);
    match r {
        Ok(Some(got)) if got == ns.clamp(100_000, 100_000_000) => SliceMode::EevdfSlice,
        Ok(got) => SliceMode::Unsupported(format!(
            "sched_setattr(sched_runtime = {ns}) left the slice at {got:?} ns (was {before}): the kernel has no per-task slice (needs 6.12+)"
        )),
        Err(e) => SliceMode::Unsupported(format!("sched_setattr: {e}")),
    }
}

/// `sysctl_sched_base_slice` from the scheduler's debugfs (None when debugfs is not mounted).
pub fn base_slice_ns(sched_debugfs: &Path) -> Option<u64> {
    std::fs::read_to_string(sched_debugfs.join("base_slice_ns"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The driver cores from the IRQs: the union of `/proc/irq/N/smp_affinity_list` of every IRQ whose
/// `/proc/interrupts` line contains one of `patterns`. Returns the IRQs used too, for the log.
pub fn driver_cores_from_irqs(
    proc_root: &Path,
    patterns: &[String],
) -> io::Result<(CpuList, Vec<String>)> {
    let text = std::fs::read_to_string(proc_root.join("interrupts"))?;
    let (cores, irqs) = irq_lines_matching(&text, patterns).into_iter().fold(
        (CpuList::new(), vec![]),
        |(mut c, mut irqs), (irq, line)| {
            if let Ok(s) =
                std::fs::read_to_string(proc_root.join(format!("irq/{irq}/smp_affinity_list")))
            {
                if let Ok(l) = cpus::parse(&s) {
                    c.extend(l);
                    irqs.push(format!("{irq} ({line})"));
                }
            }
            (c, irqs)
        },
    );
    Ok((cores, irqs))
}

/// `(irq number, device names)` of `/proc/interrupts` lines containing one of `patterns`.
pub fn irq_lines_matching(text: &str, patterns: &[String]) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|l| {
            let (n, rest) = l.trim_start().split_once(':')?;
            let irq: u32 = n.trim().parse().ok()?;
            let name = rest
                .split_whitespace()
                .filter(|w| w.parse::<u64>().is_err())
                .collect::<Vec<_>>()
                .join(" ");
            patterns
                .iter()
                .any(|p| name.contains(p.as_str()))
                .then_some((irq, name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_with_a_hostile_comm() {
        let s =
            "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 3 0 987654 1000 100";
        assert_eq!(parse_start_time(s), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn real_host_on_our_own_thread() {
        let me = unsafe { libc::gettid() } as u32;
        let mut h = RealHost;
        let a = h.affinity(me).unwrap();
        assert!(!a.is_empty());
        h.set_affinity(me, &a).unwrap();
        assert!(h.start_time(me).unwrap() > 0);
        assert!(h.slice(me).unwrap().is_some());
        // A pid that cannot exist: ESRCH, which the placer treats as "gone".
        assert!(crate::placer::is_gone(
            &h.affinity(0x3fff_fff0).unwrap_err()
        ));
        assert!(crate::placer::is_gone(
            &h.start_time(0x3fff_fff0).unwrap_err()
        ));
    }

    #[test]
    fn irq_matching() {
        let t = "           CPU0       CPU1\n  0:         44          0   IO-APIC   2-edge      timer\n 24:        100        200   PCI-MSIX-0000:01:00.0   0-edge      igb-TxRx-0\n NMI:  0 0 Non-maskable interrupts\n";
        let m = irq_lines_matching(t, &["igb".into()]);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].0, 24);
        assert!(irq_lines_matching(t, &["vd_".into()]).is_empty());
    }
}
