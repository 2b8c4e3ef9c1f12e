//! A channel driven from the frontend side by this process, as a guest would drive it: the
//! ring through the mapping, kicks by writing the kick eventfd (the same wake-up KVM's ioeventfd
//! performs), interrupts by reading the call eventfd (what KVM's irqfd consumes).

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};
use vd_ring::{op, GuestRing, RingMem};
use vd_sys::evtchn::{Domain, RingMap};
use vd_uapi::*;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub struct Chan<'d> {
    pub dom: &'d Domain,
    pub id: u32,
    pub map: RingMap,
    pub kick: EventFd,
    pub call: EventFd,
    pub fe: GuestRing,
    pub next_id: u64,
}

impl<'d> Chan<'d> {
    /// Creates, maps and binds a channel; attaches `backend` unless it is `vde_backend::NONE`.
    pub fn new(
        dom: &'d Domain,
        entries: u32,
        esz: u32,
        backend: u32,
        arg: Option<i32>,
    ) -> Result<Self> {
        let c = dom.create(entries, esz).context("VDE_IOC_CREATE")?;
        let map = dom.map_ring(&c).context("mmap ring")?;
        let kick = EventFd::new(EFD_NONBLOCK)?;
        let call = EventFd::new(EFD_NONBLOCK)?;
        dom.bind(c.id, Some(kick.as_raw_fd()), Some(call.as_raw_fd()))
            .context("VDE_IOC_BIND")?;
        if backend != vde_backend::NONE {
            dom.attach(c.id, backend, arg).context("VDE_IOC_ATTACH")?;
        }
        let fe =
            GuestRing::attach(&map.mem()).map_err(|e| anyhow::anyhow!("ring header: {e:?}"))?;
        Ok(Self {
            dom,
            id: c.id,
            map,
            kick,
            call,
            fe,
            next_id: 0,
        })
    }

    pub fn mem(&self) -> vd_ring::mem::RawMem {
        self.map.mem()
    }

    /// Pushes one request; returns false when the ring is full.
    pub fn push(&mut self, opc: u16, payload: &[u8]) -> bool {
        let m = self.mem();
        if self.fe.push_request(&m, self.next_id, opc, payload).is_ok() {
            self.next_id += 1;
            true
        } else {
            false
        }
    }

    /// Publishes and kicks if the backend asked for it. Returns whether it kicked.
    pub fn publish(&mut self) -> Result<bool> {
        let m = self.mem();
        if self.fe.publish(&m) {
            self.kick.write(1)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Waits for the call eventfd (an "interrupt"), at most `t`. Returns whether it fired.
    pub fn wait_irq(&self, t: Duration) -> Result<bool> {
        // SAFETY: `call` owns this fd and outlives the borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(self.call.as_raw_fd()) };
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let ms =
            PollTimeout::try_from(t.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        if poll(&mut fds, ms)? == 0 {
            return Ok(false);
        }
        let _ = self.call.read();
        Ok(true)
    }

    /// Pops every available response into `out` as (id, status, payload).
    pub fn drain(&mut self, out: &mut Vec<(u64, i32, Vec<u8>)>) -> Result<()> {
        let m = self.mem();
        let mut buf = vec![0u8; self.fe.geometry().max_payload()];
        loop {
            match self.fe.pop_response(&m, &mut buf) {
                Ok(Some(r)) => out.push((r.id, r.status, buf[..r.len as usize].to_vec())),
                Ok(None) => return Ok(()),
                Err(e) => bail!("response ring broken: {e:?}"),
            }
        }
    }

    /// Sends `n` echo requests (payload = id bytes) in batches as the ring allows and checks every
    /// response: nothing lost, nothing duplicated, in order, payload intact.
    pub fn echo_round_trips(&mut self, n: u64, timeout: Duration) -> Result<EchoReport> {
        let start = Instant::now();
        let first = self.next_id;
        let mut got = Vec::with_capacity(n as usize);
        let mut kicks = 0;
        let mut irqs = 0;
        while (got.len() as u64) < n {
            if start.elapsed() > timeout {
                bail!(
                    "timeout: {} of {n} responses after {:?}",
                    got.len(),
                    timeout
                );
            }
            while self.next_id - first < n && self.push(op::ECHO, &self.next_id.to_le_bytes()) {}
            if self.publish()? {
                kicks += 1;
            }
            self.drain(&mut got)?;
            if (got.len() as u64) < n {
                let m = self.mem();
                // Wait only for answers to requests in flight; with none, go push more.
                let in_flight = (self.next_id - first) - got.len() as u64;
                if in_flight > 0
                    && !self.fe.enable_irq(&m)
                    && self.wait_irq(Duration::from_millis(2000))?
                {
                    irqs += 1;
                }
                self.drain(&mut got)?;
            }
        }
        for (i, (id, st, p)) in got.iter().enumerate() {
            let want = first + i as u64;
            if *id != want || *st != 0 || p.as_slice() != want.to_le_bytes() {
                bail!("response {i}: id {id} status {st} payload {p:?}, want id {want}");
            }
        }
        Ok(EchoReport {
            n,
            kicks,
            irqs,
            elapsed: start.elapsed(),
        })
    }

    pub fn stats(&self) -> Result<VdeStats> {
        Ok(self.dom.stats(self.id)?)
    }

    pub fn backend_failed(&self) -> bool {
        self.fe.backend_failed(&self.mem())
    }

    pub fn store(&self, off: usize, v: u32) {
        self.mem().store_u32(off, v)
    }
}

#[derive(Debug, serde::Serialize)]
pub struct EchoReport {
    pub n: u64,
    pub kicks: u64,
    pub irqs: u64,
    #[allow(dead_code, reason = "read by the benchmarks")]
    #[serde(skip)]
    pub elapsed: Duration,
}
