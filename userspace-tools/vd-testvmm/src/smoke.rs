//! `smoke`: run a few `out` instructions and check that an ioeventfd swallowed them.

use std::io::ErrorKind;

use anyhow::{bail, Context, Result};
use kvm_ioctls::{IoEventAddress, NoDatamatch, VcpuExit};
use serde::Serialize;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::asm;
use crate::guest::{Guest, Vcpu};

const MEM_SIZE: usize = 64 << 10;
const CODE_GPA: u16 = 0x1000;
const KICK_PORT: u16 = 0x500;
const KICK_VALUE: u8 = 0x42;
const KICKS: usize = 3;
const MAX_EXITS: usize = 1000;

/// Outcome of the smoke test; serialises to the `--json` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmokeReport {
    pub test: &'static str,
    pub kicks: u64,
    pub io_exits: u64,
    pub hlt: bool,
    pub pass: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SmokeReport {
    pub fn new(kicks: u64, io_exits: u64, hlt: bool) -> Self {
        let pass = hlt && io_exits == 0 && kicks == KICKS as u64;
        Self {
            test: "kvm_smoke",
            kicks,
            io_exits,
            hlt,
            pass,
            error: None,
        }
    }

    /// Report for a run that could not complete at all.
    pub fn failed(err: &anyhow::Error) -> Self {
        Self {
            error: Some(format!("{err:#}")),
            ..Self::new(0, 0, false)
        }
    }

    pub fn human_line(&self) -> String {
        let mut line = format!(
            "smoke: guest ran, ioeventfd kicks={}, exits_to_userspace={}, result={}",
            self.kicks,
            self.io_exits,
            if self.pass { "PASS" } else { "FAIL" }
        );
        if !self.hlt {
            line.push_str(" (guest never reached hlt)");
        }
        if let Some(err) = &self.error {
            line = format!("smoke: result=FAIL: {err}");
        }
        line
    }
}

/// Run the smoke test against the KVM device at `kvm_path`.
pub fn run(kvm_path: &str) -> Result<SmokeReport> {
    let guest = Guest::with_kvm_path(kvm_path, MEM_SIZE)?;
    guest
        .write(
            u64::from(CODE_GPA),
            &asm::out_loop_then_hlt(KICK_PORT, KICK_VALUE, KICKS),
        )
        .context("load smoke program")?;
    let evt = register_kick_eventfd(&guest)?;
    let mut vcpu = guest.create_real_mode_vcpu(0, CODE_GPA)?;
    let (io_exits, hlt) = run_until_hlt(&mut vcpu)?;
    let kicks = drain_eventfd(&evt)?;
    Ok(SmokeReport::new(kicks, io_exits, hlt))
}

fn register_kick_eventfd(guest: &Guest) -> Result<EventFd> {
    let evt = EventFd::new(EFD_NONBLOCK).context("eventfd(EFD_NONBLOCK): check RLIMIT_NOFILE")?;
    guest
        .vm()
        .register_ioevent(&evt, &IoEventAddress::Pio(u64::from(KICK_PORT)), NoDatamatch)
        .with_context(|| {
            format!("KVM_IOEVENTFD on PIO {KICK_PORT:#x}: is the kernel built with CONFIG_HAVE_KVM_EVENTFD?")
        })?;
    Ok(evt)
}

/// Run until `hlt` or `MAX_EXITS` exits. Returns (`out` exits that reached
/// userspace on the kick port, whether the guest halted).
fn run_until_hlt(vcpu: &mut Vcpu<'_>) -> Result<(u64, bool)> {
    let mut io_exits = 0;
    for _ in 0..MAX_EXITS {
        match vcpu.run()? {
            VcpuExit::Hlt => return Ok((io_exits, true)),
            VcpuExit::IoOut(KICK_PORT, _) => io_exits += 1,
            other => bail!("unexpected vCPU exit {other:?}: the guest program went off the rails"),
        }
    }
    Ok((io_exits, false))
}

/// Read (and reset) the eventfd counter; an empty non-blocking eventfd means 0.
fn drain_eventfd(evt: &EventFd) -> Result<u64> {
    match evt.read() {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e).context("read kick eventfd"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_criteria() {
        assert!(SmokeReport::new(3, 0, true).pass);
        assert!(!SmokeReport::new(2, 1, true).pass);
        assert!(!SmokeReport::new(3, 0, false).pass);
        assert!(!SmokeReport::new(0, 3, true).pass);
    }

    #[test]
    fn json_shape() {
        let json = serde_json::to_string(&SmokeReport::new(3, 0, true)).expect("serialise");
        assert_eq!(
            json,
            r#"{"test":"kvm_smoke","kicks":3,"io_exits":0,"hlt":true,"pass":true}"#
        );
    }

    #[test]
    fn human_shape() {
        assert_eq!(
            SmokeReport::new(3, 0, true).human_line(),
            "smoke: guest ran, ioeventfd kicks=3, exits_to_userspace=0, result=PASS"
        );
    }

    #[test]
    fn missing_kvm_is_an_error_naming_the_device() {
        let Err(err) = run("/nonexistent/dev/kvm") else {
            panic!("must fail without a KVM device");
        };
        let report = SmokeReport::failed(&err);
        assert!(!report.pass);
        assert!(report
            .error
            .as_deref()
            .unwrap_or("")
            .contains("/nonexistent/dev/kvm"));
    }

    #[test]
    fn empty_eventfd_reads_zero() {
        let evt = EventFd::new(EFD_NONBLOCK).expect("eventfd");
        assert_eq!(drain_eventfd(&evt).expect("drain"), 0);
        evt.write(3).expect("write");
        assert_eq!(drain_eventfd(&evt).expect("drain"), 3);
    }
}
