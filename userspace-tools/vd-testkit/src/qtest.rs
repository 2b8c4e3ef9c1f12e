// SPDX-License-Identifier: GPL-2.0
//! A stock QEMU driven by its own qtest protocol instead of a guest OS: commands on QEMU's
//! stdin, answers on its stdout (`-qtest stdio`). The machine's CPU never runs (`-S`); the test
//! reads and writes guest-physical memory, PCI configuration space (ports `0xcf8`/`0xcfc`) and
//! device registers itself, so a device such as `ivshmem-doorbell` is exercised by the same QEMU
//! code paths a guest driver would use (an MMIO write to a doorbell reaches QEMU's ioeventfd
//! handling), without a nested guest kernel.
//!
//! Used by `vd-ivshmem`'s QEMU tests and by `vd-itest qtest-guest`.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// QEMU under qtest. Killed when dropped, and after its time limit at the latest (a hung QEMU
/// fails its test instead of hanging it).
pub struct Qtest {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    watchdog: Option<mpsc::Sender<()>>,
}

/// Configuration address (port `0xcf8`) of register `reg` of device `slot`.0 on bus 0.
pub const fn cfg_addr(slot: u32, reg: u32) -> u32 {
    0x8000_0000 | (slot << 11) | reg
}

/// Kills process `pid` after `after` unless the returned sender is used (or dropped) first.
fn watchdog(pid: u32, after: Duration) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(after) {
            eprintln!("QEMU (pid {pid}) still running after {after:?}: killed");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    tx
}

/// A value of a qtest answer (`0x...`).
pub fn hex(s: &str) -> Result<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16)
        .map_err(|_| anyhow!("not a hex value: {s:?}"))
}

/// `bytes` as lower-case hex digits.
pub fn to_hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[usize::from(b >> 4)] as char);
        s.push(D[usize::from(b & 15)] as char);
    }
    s
}

fn from_hex(s: &str, dst: &mut [u8]) -> Result<()> {
    let s = s.strip_prefix("0x").unwrap_or(s).as_bytes();
    if s.len() != dst.len() * 2 {
        bail!("{} hex digits for {} bytes", s.len(), dst.len());
    }
    let nib = |c: u8| -> Result<u8> {
        Ok(match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => bail!("not a hex digit: {:?}", c as char),
        })
    };
    for (d, p) in dst.iter_mut().zip(s.chunks_exact(2)) {
        *d = (nib(p[0])? << 4) | nib(p[1])?;
    }
    Ok(())
}

impl Qtest {
    /// The command line of a q35 machine under qtest (no CPU running, no default devices, the
    /// qtest log off, named threads): add devices, then [`Self::spawn`].
    pub fn command(bin: &Path) -> Command {
        let mut c = Command::new(bin);
        c.args(["-machine", "q35", "-accel", "tcg", "-S", "-qtest", "stdio"])
            // Named threads (`CPU 0/TCG`): how vCPU threads are found (vd-sys `qemu`).
            .args(["-name", "vd-qtest,debug-threads=on"])
            .args(["-qtest-log", "/dev/null", "-display", "none", "-nodefaults"])
            .args(["-m", "64"]);
        c
    }

    /// Starts `cmd` (from [`Self::command`]) with qtest on its stdin and stdout; QEMU is killed
    /// after `limit`. QEMU answers the first command only once its devices are realized.
    pub fn spawn(mut cmd: Command, limit: Duration) -> Result<Self> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let watchdog = Some(watchdog(child.id(), limit));
        let stdin = child.stdin.take().context("QEMU's stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("QEMU's stdout")?);
        Ok(Self {
            child,
            stdin,
            stdout,
            watchdog,
        })
    }

    /// QEMU's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One qtest command; the value after "OK" (empty if none). An error if QEMU answers
    /// something else or is gone (with what it said on stderr, if that was piped).
    pub fn cmd(&mut self, c: &str) -> Result<String> {
        let sent = writeln!(self.stdin, "{c}").and_then(|()| self.stdin.flush());
        loop {
            let mut l = String::new();
            let n = if sent.is_ok() {
                self.stdout.read_line(&mut l).unwrap_or(0)
            } else {
                0
            };
            if n == 0 {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                let what: String = c.chars().take(60).collect();
                bail!("QEMU closed qtest at {what:?}; stderr: {err}");
            }
            let l = l.trim_end();
            // Interrupt notifications (`irq_intercept_in`) come between answers.
            if l.starts_with("IRQ") {
                continue;
            }
            if let Some(v) = l.strip_prefix("OK") {
                return Ok(v.trim().to_string());
            }
            let what: String = c.chars().take(60).collect();
            bail!("qtest {what:?}: {l}");
        }
    }

    /// 32-bit read of guest-physical `addr`.
    pub fn readl(&mut self, addr: u64) -> Result<u32> {
        let v = hex(&self.cmd(&format!("readl {addr:#x}"))?)?;
        u32::try_from(v).map_err(|_| anyhow!("readl {addr:#x}: {v:#x}"))
    }

    /// 32-bit write of guest-physical `addr`.
    pub fn writel(&mut self, addr: u64, v: u32) -> Result<()> {
        self.cmd(&format!("writel {addr:#x} {v:#x}")).map(drop)
    }

    /// Copies guest-physical memory at `addr` into `dst`.
    pub fn read(&mut self, addr: u64, dst: &mut [u8]) -> Result<()> {
        if dst.is_empty() {
            return Ok(());
        }
        let v = self.cmd(&format!("read {addr:#x} {:#x}", dst.len()))?;
        from_hex(&v, dst).with_context(|| format!("read {addr:#x}"))
    }

    /// Copies `src` to guest-physical memory at `addr`.
    pub fn write(&mut self, addr: u64, src: &[u8]) -> Result<()> {
        if src.is_empty() {
            return Ok(());
        }
        let c = format!("write {addr:#x} {:#x} 0x{}", src.len(), to_hex(src));
        self.cmd(&c).map(drop)
    }

    /// Fills `len` bytes of guest-physical memory at `addr` with `v`.
    pub fn memset(&mut self, addr: u64, len: u64, v: u8) -> Result<()> {
        self.cmd(&format!("memset {addr:#x} {len:#x} {v:#x}"))
            .map(drop)
    }

    /// PCI configuration read (32 bits) of register `reg` of device `slot`.0 on bus 0.
    pub fn cfg_read(&mut self, slot: u32, reg: u32) -> Result<u32> {
        self.cmd(&format!("outl 0xcf8 {:#x}", cfg_addr(slot, reg)))?;
        let v = hex(&self.cmd("inl 0xcfc")?)?;
        u32::try_from(v).map_err(|_| anyhow!("inl 0xcfc: {v:#x}"))
    }

    /// PCI configuration write (32 bits).
    pub fn cfg_write(&mut self, slot: u32, reg: u32, v: u32) -> Result<()> {
        self.cmd(&format!("outl 0xcf8 {:#x}", cfg_addr(slot, reg)))?;
        self.cmd(&format!("outl 0xcfc {v:#x}")).map(drop)
    }

    /// Whether QEMU still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends QEMU `sig` (SIGKILL: it dies wherever it is; SIGTERM: it shuts down normally).
    pub fn signal(&mut self, sig: nix::sys::signal::Signal) -> Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).with_context(|| format!("kill({pid}, {sig})"))
    }

    /// Waits for QEMU's exit (bounded by the time limit given to [`Self::spawn`]).
    pub fn wait(&mut self) -> Result<ExitStatus> {
        let st = self.child.wait().context("waiting for QEMU")?;
        if let Some(w) = self.watchdog.take() {
            let _ = w.send(());
        }
        Ok(st)
    }
}

impl Drop for Qtest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(w) = self.watchdog.take() {
            let _ = w.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let b = [0u8, 1, 0x7f, 0x80, 0xab, 0xff];
        let s = to_hex(&b);
        assert_eq!(s, "00017f80abff");
        let mut d = [0u8; 6];
        from_hex(&format!("0x{s}"), &mut d).unwrap();
        assert_eq!(d, b);
        assert!(from_hex("0x0", &mut [0u8; 1]).is_err());
        assert!(from_hex("0xzz", &mut [0u8; 1]).is_err());
        assert_eq!(hex("0x1af4").unwrap(), 0x1af4);
        assert_eq!(cfg_addr(4, 0x10), 0x8000_2010);
    }
}
