//! Carries out placements on threads and remembers what it changed, in memory and in the state
//! file, so that a restart (even after `kill -9`) neither loses an original affinity nor takes
//! the driver-core affinity it set itself for an original.
//!
//! Crash safety comes from the order of writes: a thread's record (its original affinity and
//! slice, and what we are about to set) reaches the state file *before* the thread is changed.
//! On restore a thread is touched only if it still has what we set: a record written just before
//! a crash, for a thread never changed, is dropped without touching it, and so is a thread whose
//! affinity or slice someone else changed since (we never fight the operator). A record whose
//! thread id was reused by a new thread is recognised by its start time and dropped.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use tracing::{info, warn};

use crate::cpus::{self, CpuList};

/// The kernel operations placement needs; [`crate::host::RealHost`] does them for real, tests use
/// a simulated host.
pub trait Host {
    /// CPUs the thread may run on.
    fn affinity(&self, tid: u32) -> io::Result<CpuList>;
    fn set_affinity(&mut self, tid: u32, cpus: &CpuList) -> io::Result<()>;
    /// The thread's EEVDF slice in ns, `None` when it is not a fair-class (SCHED_NORMAL/BATCH/IDLE) thread.
    fn slice(&self, tid: u32) -> io::Result<Option<u64>>;
    /// Sets the slice (0: back to the default, `sysctl_sched_base_slice`), keeping policy and nice.
    fn set_slice(&mut self, tid: u32, ns: u64) -> io::Result<()>;
    /// The thread's start time (clock ticks since boot, `/proc/TID/stat` field 22): with the tid,
    /// the identity of a thread across tid reuse.
    fn start_time(&self, tid: u32) -> io::Result<u64>;
}

/// The thread has exited (ESRCH from the scheduler calls, ENOENT from /proc).
pub fn is_gone(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::ESRCH) || e.kind() == io::ErrorKind::NotFound
}

/// What we changed on one thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadRecord {
    /// The VM (VMM process) it belongs to.
    pub pid: u32,
    pub tid: u32,
    pub start_time: u64,
    /// Its affinity before we moved it (CPU list).
    pub orig_affinity: String,
    /// What we set.
    pub placed_affinity: String,
    /// Its slice before (ns), when we changed the slice.
    pub orig_slice_ns: Option<u64>,
    /// Whether that slice was a custom one (restored as is) or the default (restored as 0).
    pub orig_slice_custom: bool,
    /// The slice we set, when we set one.
    pub placed_slice_ns: Option<u64>,
}

/// The state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StateFile {
    pub version: u32,
    pub threads: Vec<ThreadRecord>,
}

const STATE_VERSION: u32 = 1;

/// Result of placing one VM.
#[derive(Debug, Default, PartialEq)]
pub struct PlaceOutcome {
    /// Threads moved now.
    pub moved: Vec<u32>,
    /// Threads that were ours already (no syscall made).
    pub already: Vec<u32>,
    /// Threads that exited in the middle.
    pub vanished: Vec<u32>,
    /// Threads that could not be moved, with the error.
    pub failed: Vec<(u32, String)>,
}

/// Result of restoring.
#[derive(Debug, Default, PartialEq)]
pub struct RestoreOutcome {
    pub restored: Vec<u32>,
    /// Exited (or tid reused): nothing to do.
    pub vanished: Vec<u32>,
    /// Changed by someone else since we placed it (or never changed: crash before acting): left as is.
    pub left_alone: Vec<u32>,
    pub failed: Vec<(u32, String)>,
}

/// The placement executor.
pub struct Placer<H: Host> {
    pub host: H,
    driver: CpuList,
    /// Slice to set in ns; 0: leave slices alone (not configured, or the kernel has no per-task slice).
    slice_ns: u64,
    /// `sysctl_sched_base_slice`, when known: a slice equal to it is the default.
    base_slice_ns: Option<u64>,
    records: BTreeMap<u32, ThreadRecord>,
    state_path: Option<PathBuf>,
}

impl<H: Host> Placer<H> {
    pub fn new(
        host: H,
        driver: CpuList,
        slice_ns: u64,
        base_slice_ns: Option<u64>,
        state_path: Option<PathBuf>,
    ) -> Self {
        Self {
            host,
            driver,
            slice_ns,
            base_slice_ns,
            records: BTreeMap::new(),
            state_path,
        }
    }

    pub fn driver_cores(&self) -> &CpuList {
        &self.driver
    }

    /// New slice for threads placed from now on (already placed threads keep theirs).
    pub fn set_slice_ns(&mut self, ns: u64) {
        self.slice_ns = ns;
    }

    pub fn records(&self) -> impl Iterator<Item = &ThreadRecord> {
        self.records.values()
    }

    /// Whether we changed this thread (its current affinity is our doing).
    pub fn manages(&self, tid: u32) -> bool {
        self.records.contains_key(&tid)
    }

    /// VMs with at least one thread we changed.
    pub fn placed_pids(&self) -> std::collections::BTreeSet<u32> {
        self.records.values().map(|r| r.pid).collect()
    }

    /// Reads the state file after a (re)start. Records of threads that are gone or were replaced
    /// (tid reuse) are dropped. Returns the VMs still placed, for [`crate::policy::Policy::adopt`].
    pub fn load(&mut self) -> io::Result<std::collections::BTreeSet<u32>> {
        let Some(p) = &self.state_path else {
            return Ok(Default::default());
        };
        let text = match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => return Err(e),
        };
        let st: StateFile = serde_json::from_str(&text).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display()))
        })?;
        if st.version != STATE_VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: state version {} (this vdd writes {STATE_VERSION})",
                    p.display(),
                    st.version
                ),
            ));
        }
        for r in st.threads {
            match self.host.start_time(r.tid) {
                // The file is written before a thread is moved and after it is moved back, so a
                // crash in between leaves a record of a thread that is not (or no longer) where
                // we put it: only a thread that still has what we set is ours to adopt.
                Ok(t) if t == r.start_time && !self.still_placed(&r) => {
                    info!(tid = r.tid, pid = r.pid, "state file: thread is not on the driver cores (vdd stopped between the state file and the move); record dropped");
                }
                Ok(t) if t == r.start_time => {
                    self.records.insert(r.tid, r);
                }
                Ok(_) => info!(
                    tid = r.tid,
                    pid = r.pid,
                    "state file: thread id reused by a new thread; record dropped"
                ),
                Err(_) => info!(
                    tid = r.tid,
                    pid = r.pid,
                    "state file: thread exited while vdd was down; record dropped"
                ),
            }
        }
        self.save()?;
        Ok(self.placed_pids())
    }

    /// The thread still has the affinity we set (unreadable: assume so, restore decides later).
    fn still_placed(&self, r: &ThreadRecord) -> bool {
        match (self.host.affinity(r.tid), cpus::parse(&r.placed_affinity)) {
            (Ok(now), Ok(placed)) => now == placed,
            _ => true,
        }
    }

    /// Writes the state file atomically (temporary file, fsync, rename).
    pub fn save(&self) -> io::Result<()> {
        let Some(p) = &self.state_path else {
            return Ok(());
        };
        let st = StateFile {
            version: STATE_VERSION,
            threads: self.records.values().cloned().collect(),
        };
        let tmp = p.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(
                serde_json::to_string_pretty(&st)
                    .map_err(io::Error::other)?
                    .as_bytes(),
            )?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, p)
    }

    fn save_logged(&self) {
        if let Err(e) = self.save() {
            warn!("cannot write the state file: {e}; a crash now would leave threads on the driver cores");
        }
    }

    /// Moves these threads of VM `pid` to the driver cores. Threads we changed already are left
    /// as they are (no syscall): calling this again, or after a restart, never double-acts.
    pub fn place(&mut self, pid: u32, tids: &[u32]) -> PlaceOutcome {
        let mut out = PlaceOutcome::default();
        let placed_aff = cpus::format(&self.driver);
        let mut todo = vec![];
        for &tid in tids {
            if self.records.contains_key(&tid) {
                out.already.push(tid);
                continue;
            }
            let rec = (|| -> io::Result<ThreadRecord> {
                let start_time = self.host.start_time(tid)?;
                let aff = self.host.affinity(tid)?;
                let (orig_slice_ns, placed_slice_ns) = if self.slice_ns > 0 {
                    match self.host.slice(tid)? {
                        Some(s) => (Some(s), Some(self.slice_ns)),
                        None => (None, None),
                    }
                } else {
                    (None, None)
                };
                Ok(ThreadRecord {
                    pid,
                    tid,
                    start_time,
                    orig_affinity: cpus::format(&aff),
                    placed_affinity: placed_aff.clone(),
                    orig_slice_ns,
                    orig_slice_custom: orig_slice_ns
                        .is_some_and(|s| self.base_slice_ns.is_some_and(|b| b != s)),
                    placed_slice_ns,
                })
            })();
            match rec {
                Ok(r) => todo.push(r),
                Err(e) if is_gone(&e) => out.vanished.push(tid),
                Err(e) => out.failed.push((tid, e.to_string())),
            }
        }
        if todo.is_empty() {
            return out;
        }
        // Record first, then act (see the module comment).
        for r in &todo {
            self.records.insert(r.tid, r.clone());
        }
        self.save_logged();
        let mut changed_state = false;
        for r in todo {
            let res = self.host.set_affinity(r.tid, &self.driver).and_then(|()| {
                match r.placed_slice_ns {
                    Some(ns) => self.host.set_slice(r.tid, ns),
                    None => Ok(()),
                }
            });
            match res {
                Ok(()) => out.moved.push(r.tid),
                Err(e) => {
                    // Undo what part of it took effect (affinity set, slice refused).
                    if !is_gone(&e) && self.host.affinity(r.tid).is_ok_and(|a| a == self.driver) {
                        if let Ok(orig) = cpus::parse(&r.orig_affinity) {
                            let _ = self.host.set_affinity(r.tid, &orig);
                        }
                    }
                    self.records.remove(&r.tid);
                    changed_state = true;
                    if is_gone(&e) {
                        out.vanished.push(r.tid);
                    } else {
                        out.failed.push((r.tid, e.to_string()));
                    }
                }
            }
        }
        if changed_state {
            self.save_logged();
        }
        out
    }

    /// Restores every thread of VM `pid` we changed.
    pub fn restore_pid(&mut self, pid: u32) -> RestoreOutcome {
        let tids: Vec<u32> = self
            .records
            .values()
            .filter(|r| r.pid == pid)
            .map(|r| r.tid)
            .collect();
        self.restore_tids(&tids)
    }

    /// Restores everything (shutdown).
    pub fn restore_all(&mut self) -> RestoreOutcome {
        let tids: Vec<u32> = self.records.keys().copied().collect();
        self.restore_tids(&tids)
    }

    /// Drops records of threads that exited (a vCPU thread can end while its VM lives on).
    pub fn forget_exited(&mut self) -> Vec<u32> {
        let gone: Vec<u32> = self
            .records
            .values()
            .filter(|r| !self.host.start_time(r.tid).is_ok_and(|t| t == r.start_time))
            .map(|r| r.tid)
            .collect();
        for t in &gone {
            self.records.remove(t);
        }
        if !gone.is_empty() {
            self.save_logged();
        }
        gone
    }

    fn restore_tids(&mut self, tids: &[u32]) -> RestoreOutcome {
        let mut out = RestoreOutcome::default();
        for &tid in tids {
            let Some(r) = self.records.get(&tid).cloned() else {
                continue;
            };
            match self.restore_one(&r) {
                Ok(true) => out.restored.push(tid),
                Ok(false) => out.left_alone.push(tid),
                Err(e) if is_gone(&e) => out.vanished.push(tid),
                Err(e) => {
                    out.failed.push((tid, e.to_string()));
                    // Keep the record: the next restore (or the next start) tries again.
                    continue;
                }
            }
            self.records.remove(&tid);
        }
        if !tids.is_empty() {
            self.save_logged();
        }
        out
    }

    /// `Ok(true)`: restored; `Ok(false)`: not ours any more, left alone.
    fn restore_one(&mut self, r: &ThreadRecord) -> io::Result<bool> {
        if self.host.start_time(r.tid)? != r.start_time {
            return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
        }
        let placed = cpus::parse(&r.placed_affinity).map_err(io::Error::other)?;
        let orig = cpus::parse(&r.orig_affinity).map_err(io::Error::other)?;
        let mut ours = false;
        if self.host.affinity(r.tid)? == placed {
            self.host.set_affinity(r.tid, &orig)?;
            ours = true;
        } else {
            warn!(
                pid = r.pid,
                tid = r.tid,
                "affinity changed by someone else since vdd placed it; left as is"
            );
        }
        if let (Some(placed_ns), Some(orig_ns)) = (r.placed_slice_ns, r.orig_slice_ns) {
            match self.host.slice(r.tid)? {
                Some(now) if now == placed_ns => {
                    self.host
                        .set_slice(r.tid, if r.orig_slice_custom { orig_ns } else { 0 })?;
                    ours = true;
                }
                _ => warn!(
                    pid = r.pid,
                    tid = r.tid,
                    "slice changed by someone else since vdd set it; left as is"
                ),
            }
        }
        Ok(ours)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A simulated kernel: threads with an affinity, a slice and a start time; counts syscalls.
    #[derive(Debug, Default, Clone)]
    pub struct FakeHost {
        pub threads: BTreeMap<u32, FakeThread>,
        pub set_affinity_calls: u32,
        pub set_slice_calls: u32,
        /// The thread exits when its affinity is about to be set (VM exiting mid-migration).
        pub vanish_on_set: BTreeSet<u32>,
        /// set_affinity fails with EINVAL for these CPUs (outside the thread's cpuset).
        pub refuse_cpus: BTreeSet<u32>,
    }

    #[derive(Debug, Clone, PartialEq)]
    pub struct FakeThread {
        pub affinity: CpuList,
        pub slice: u64,
        pub start: u64,
    }

    pub const BASE_SLICE: u64 = 3_000_000;

    impl FakeHost {
        pub fn with_threads(tids: &[u32], online: &str) -> Self {
            let mut h = Self::default();
            for &t in tids {
                h.threads.insert(
                    t,
                    FakeThread {
                        affinity: cpus::parse(online).unwrap(),
                        slice: BASE_SLICE,
                        start: 1000 + u64::from(t),
                    },
                );
            }
            h
        }
        pub fn aff(&self, tid: u32) -> String {
            cpus::format(&self.threads[&tid].affinity)
        }
    }

    fn esrch() -> io::Error {
        io::Error::from_raw_os_error(nix::libc::ESRCH)
    }

    impl Host for FakeHost {
        fn affinity(&self, tid: u32) -> io::Result<CpuList> {
            self.threads
                .get(&tid)
                .map(|t| t.affinity.clone())
                .ok_or_else(esrch)
        }
        fn set_affinity(&mut self, tid: u32, c: &CpuList) -> io::Result<()> {
            self.set_affinity_calls += 1;
            if self.vanish_on_set.contains(&tid) {
                self.threads.remove(&tid);
            }
            if c.iter().any(|x| self.refuse_cpus.contains(x)) {
                return Err(io::Error::from_raw_os_error(nix::libc::EINVAL));
            }
            self.threads
                .get_mut(&tid)
                .map(|t| t.affinity = c.clone())
                .ok_or_else(esrch)
        }
        fn slice(&self, tid: u32) -> io::Result<Option<u64>> {
            self.threads
                .get(&tid)
                .map(|t| Some(t.slice))
                .ok_or_else(esrch)
        }
        fn set_slice(&mut self, tid: u32, ns: u64) -> io::Result<()> {
            self.set_slice_calls += 1;
            self.threads
                .get_mut(&tid)
                .map(|t| t.slice = if ns == 0 { BASE_SLICE } else { ns })
                .ok_or_else(esrch)
        }
        fn start_time(&self, tid: u32) -> io::Result<u64> {
            self.threads
                .get(&tid)
                .map(|t| t.start)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
    }

    pub use crate::testutil::TmpDir;

    pub fn tmpdir(name: &str) -> TmpDir {
        TmpDir::new("vdd-test", name)
    }

    fn placer(h: FakeHost, state: Option<PathBuf>) -> Placer<FakeHost> {
        Placer::new(
            h,
            cpus::parse("1").unwrap(),
            500_000,
            Some(BASE_SLICE),
            state,
        )
    }

    #[test]
    fn a_test_directory_is_removed_when_the_test_ends_or_fails() {
        let d = tmpdir("scratch");
        let kept = d.to_path_buf();
        std::fs::write(d.join("f"), "x").unwrap();
        drop(d);
        assert!(!kept.exists(), "{} left behind", kept.display());
        let kept = std::panic::catch_unwind(|| {
            let d = tmpdir("failing");
            std::fs::write(d.join("f"), "x").unwrap();
            std::panic::panic_any(d.to_path_buf());
        })
        .unwrap_err()
        .downcast::<PathBuf>()
        .unwrap();
        assert!(
            !kept.exists(),
            "{} left behind by a failed test",
            kept.display()
        );
    }

    #[test]
    fn place_and_restore_affinity_and_slice() {
        let mut p = placer(FakeHost::with_threads(&[11, 12, 20], "0-3"), None);
        let o = p.place(1, &[11, 12]);
        assert_eq!(o.moved, vec![11, 12]);
        assert_eq!(p.host.aff(11), "1");
        assert_eq!(p.host.threads[&11].slice, 500_000);
        assert_eq!(p.host.aff(20), "0-3", "other threads untouched");
        // Idempotent: no syscalls the second time.
        let calls = p.host.set_affinity_calls;
        let o = p.place(1, &[11, 12]);
        assert_eq!(o.already, vec![11, 12]);
        assert_eq!(p.host.set_affinity_calls, calls);
        let o = p.restore_pid(1);
        assert_eq!(o.restored, vec![11, 12]);
        assert_eq!(p.host.aff(11), "0-3");
        assert_eq!(p.host.threads[&11].slice, BASE_SLICE);
        assert!(p.records().next().is_none());
    }

    #[test]
    fn a_custom_slice_is_restored_as_it_was() {
        let mut h = FakeHost::with_threads(&[11], "0-1");
        h.threads.get_mut(&11).unwrap().slice = 7_000_000;
        let mut p = placer(h, None);
        p.place(1, &[11]);
        assert!(p.records().next().unwrap().orig_slice_custom);
        p.restore_all();
        assert_eq!(p.host.threads[&11].slice, 7_000_000);
    }

    #[test]
    fn vm_exiting_mid_migration() {
        let mut h = FakeHost::with_threads(&[11, 12, 13], "0-1");
        h.vanish_on_set.insert(12);
        let mut p = placer(h, None);
        let o = p.place(1, &[11, 12, 13, 14]);
        assert_eq!(o.moved, vec![11, 13]);
        assert_eq!(o.vanished, vec![14, 12]);
        assert!(o.failed.is_empty());
        assert!(
            !p.manages(12) && !p.manages(14),
            "no record of a thread that exited"
        );
        // Then the rest of the VM exits too: restore has nothing to do and does not fail.
        p.host.threads.clear();
        let o = p.restore_pid(1);
        assert_eq!(o.vanished, vec![11, 13]);
        assert!(o.failed.is_empty());
        assert!(p.records().next().is_none());
    }

    #[test]
    fn refused_affinity_is_reported_and_not_recorded() {
        let mut h = FakeHost::with_threads(&[11], "0-1");
        h.refuse_cpus.insert(1);
        let mut p = placer(h, None);
        let o = p.place(1, &[11]);
        assert_eq!(o.failed.len(), 1);
        assert!(o.failed[0].1.contains("Invalid argument"), "{:?}", o.failed);
        assert!(!p.manages(11));
        assert_eq!(p.host.aff(11), "0-1");
    }

    #[test]
    fn operator_changes_are_not_undone() {
        let mut p = placer(FakeHost::with_threads(&[11, 12], "0-3"), None);
        p.place(1, &[11, 12]);
        p.host.threads.get_mut(&11).unwrap().affinity = cpus::parse("3").unwrap(); // operator pins it
        p.host.threads.get_mut(&11).unwrap().slice = 9_000_000;
        let o = p.restore_pid(1);
        assert_eq!(o.left_alone, vec![11]);
        assert_eq!(o.restored, vec![12]);
        assert_eq!(p.host.aff(11), "3");
        assert_eq!(p.host.threads[&11].slice, 9_000_000);
    }

    #[test]
    fn restart_from_the_state_file_does_not_double_act() {
        let d = tmpdir("restart");
        let state = d.join("state.json");
        let mut p = placer(
            FakeHost::with_threads(&[11, 12, 21], "0-3"),
            Some(state.clone()),
        );
        p.place(1, &[11, 12]);
        p.place(2, &[21]);
        // kill -9: the placer is gone, the kernel (host) keeps what was set.
        let mut host = p.host.clone();
        drop(p);
        // Meanwhile VM 2 exits, and thread 12's id is reused by a new thread.
        host.threads.remove(&21);
        host.threads.get_mut(&12).unwrap().start = 99_999;
        let calls = host.set_affinity_calls;
        let mut p = placer(host, Some(state.clone()));
        let adopted = p.load().unwrap();
        assert_eq!(adopted.into_iter().collect::<Vec<_>>(), vec![1]);
        assert!(p.manages(11) && !p.manages(12) && !p.manages(21));
        // Placing the adopted VM again (the policy would not, but the daemon re-ensures) is a no-op.
        let o = p.place(1, &[11]);
        assert_eq!(o.already, vec![11]);
        assert_eq!(p.host.set_affinity_calls, calls, "no syscall after restart");
        // The original is the real original, not the driver core.
        assert_eq!(p.records().next().unwrap().orig_affinity, "0-3");
        p.restore_all();
        assert_eq!(p.host.aff(11), "0-3");
        let st: StateFile =
            serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        assert!(st.threads.is_empty(), "state file emptied after restore");
    }

    #[test]
    fn crash_between_record_and_act_leaves_the_thread_alone() {
        // The record reached the file but the thread was never moved: restore must not
        // "restore" anything (its affinity is not what we set).
        let d = tmpdir("crash-window");
        let state = d.join("state.json");
        let st = StateFile {
            version: STATE_VERSION,
            threads: vec![ThreadRecord {
                pid: 1,
                tid: 11,
                start_time: 1011,
                orig_affinity: "0-3".into(),
                placed_affinity: "1".into(),
                orig_slice_ns: Some(BASE_SLICE),
                orig_slice_custom: false,
                placed_slice_ns: Some(500_000),
            }],
        };
        std::fs::write(&state, serde_json::to_string(&st).unwrap()).unwrap();
        let mut h = FakeHost::with_threads(&[11], "0-3");
        h.threads.get_mut(&11).unwrap().affinity = cpus::parse("2").unwrap(); // operator's, meanwhile
        let mut p = placer(h, Some(state.clone()));
        assert!(
            p.load().unwrap().is_empty(),
            "a VM whose thread is not on the driver cores is not adopted as placed"
        );
        assert!(!p.manages(11));
        let o = p.restore_all();
        assert!(o.left_alone.is_empty() && o.restored.is_empty());
        assert_eq!(p.host.aff(11), "2");
        assert_eq!(p.host.set_affinity_calls + p.host.set_slice_calls, 0);
        let st: StateFile =
            serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        assert!(
            st.threads.is_empty(),
            "the stale record is gone from the file"
        );
    }

    #[test]
    fn crash_between_restore_and_record_does_not_adopt() {
        // vdd moved the thread back and was killed before the state file said so: the record is
        // stale, and the next start must not take the VM for placed (it would not place it again
        // while it stays hot).
        let d = tmpdir("crash-restore");
        let state = d.join("state.json");
        let mut p = placer(FakeHost::with_threads(&[11], "0-3"), Some(state.clone()));
        p.place(1, &[11]);
        let mut host = p.host.clone();
        drop(p);
        host.threads.get_mut(&11).unwrap().affinity = cpus::parse("0-3").unwrap(); // restored, then kill -9
        host.threads.get_mut(&11).unwrap().slice = BASE_SLICE;
        let mut p = placer(host, Some(state));
        assert!(p.load().unwrap().is_empty());
        assert!(!p.manages(11));
        // Placed afresh when the policy says so, with the real original.
        assert_eq!(p.place(1, &[11]).moved, vec![11]);
        assert_eq!(p.records().next().unwrap().orig_affinity, "0-3");
    }

    #[test]
    fn a_corrupt_or_foreign_state_file_is_an_error_not_a_guess() {
        let d = tmpdir("corrupt");
        let state = d.join("state.json");
        std::fs::write(&state, "{ not json").unwrap();
        let mut p = placer(FakeHost::default(), Some(state.clone()));
        assert_eq!(p.load().unwrap_err().kind(), io::ErrorKind::InvalidData);
        std::fs::write(&state, r#"{"version": 99, "threads": []}"#).unwrap();
        assert!(p.load().unwrap_err().to_string().contains("version 99"));
        std::fs::remove_file(&state).unwrap();
        assert!(p.load().unwrap().is_empty(), "no file: a first start");
    }
}
