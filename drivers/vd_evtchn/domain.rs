// SPDX-License-Identifier: GPL-2.0
//! A domain: the channels of one open file (one VM).

use crate::backend::Backend;
use crate::channel::{Channel, ChannelRef};
use crate::orphan;
use crate::registry::teardown;
use crate::ring::{self, Geometry, RingMem};
use crate::uapi::*;
use crate::vd::common::OpenGuard;
use crate::vd::eventfd::{EventFd, WorkQueue};
use crate::vd::shmem::SharedPages;
use kernel::fs::File;
use kernel::mm::virt::VmaNew;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::{Arc, Mutex};

/// The fields protected by [`DomainCore::inner`].
struct DomainInner {
    /// Channel `i` at index `i`; `None` for a free id.
    channels: KVec<Option<ChannelRef>>,
}

/// A domain's state.
#[pin_data]
pub(crate) struct DomainCore {
    /// Thread-group id of the process that opened the file (the VMM).
    pub(crate) pid: u32,
    /// The domain's own worker: its channels' kicks are served here, so one VM's slow backend
    /// I/O never delays another VM's channels.
    wq: Arc<WorkQueue>,
    /// The channel table. Held only to look up, insert or remove; channel work happens on a
    /// cloned reference after the lock is dropped.
    #[pin]
    inner: Mutex<DomainInner>,
}

/// One open file of `/dev/vd_evtchn`: a domain, i.e. one VM as its VMM drives it (the
/// [`DomainCore`] its channels and work share). Its channels die with the file; the open-file
/// objects of the other drivers are named the same way (`ClientFile`, `VmFile`).
pub(crate) struct DomainFile {
    core: Arc<DomainCore>,
    _open: OpenGuard,
}

impl core::ops::Deref for DomainFile {
    type Target = DomainCore;
    fn deref(&self) -> &DomainCore {
        &self.core
    }
}

impl DomainFile {
    /// A domain for the calling process; `open` counts its file while it lives.
    pub(crate) fn new(open: OpenGuard) -> Result<Self> {
        let pid = kernel::current!().tgid() as u32;
        let wq = WorkQueue::new(pid)?;
        let inner = DomainInner {
            channels: KVec::new(),
        };
        let core = Arc::pin_init(
            try_pin_init!(DomainCore { pid, wq, inner <- kernel::new_mutex!(inner) }),
            GFP_KERNEL_ACCOUNT,
        )?;
        Ok(Self { core, _open: open })
    }

    /// The channel with id `id` (`ENOENT` if none).
    pub(crate) fn channel(&self, id: u32) -> Result<ChannelRef> {
        let inner = self.inner.lock();
        inner
            .channels
            .get(id as usize)
            .and_then(|c| c.clone())
            .ok_or(ENOENT)
    }

    /// `VDE_IOC_CREATE`: fills in `c` and returns the new channel (for [`Self::destroy_exact`]
    /// when the result cannot be copied back).
    pub(crate) fn create(&self, c: &mut VdeCreate) -> Result<ChannelRef> {
        if c.flags != 0 {
            return Err(EINVAL);
        }
        let geo = Geometry::new(c.entries, c.entry_size).map_err(|_| EINVAL)?;
        let mem = SharedPages::new(geo.total_bytes())?;
        let (id, ch) = self.insert(geo, mem, (0, 0))?;
        c.id = id;
        c.mmap_offset = u64::from(id) * VDE_MMAP_STRIDE;
        c.mmap_size = geo.total_bytes() as u64;
        Ok(ch)
    }

    /// `VDE_IOC_CREATE_SHM`: a channel whose ring and data area are the pages of a new shmem
    /// file. Fills in `c` (except `fd`) and returns the channel and the file (for a file
    /// descriptor; [`Self::destroy_exact`] undoes the channel if it cannot be handed out).
    pub(crate) fn create_shm(&self, c: &mut VdeCreateShm) -> Result<(ChannelRef, ARef<File>)> {
        if c.flags != 0
            || c.data_size % PAGE_SIZE as u32 != 0
            || c.data_size > VDE_MAX_DATA
            || c.dev_kind > crate::ring::dev_kind::BLOCK
        {
            return Err(EINVAL);
        }
        let geo = Geometry::new(c.entries, c.entry_size).map_err(|_| EINVAL)?;
        let data_off = geo.total_bytes();
        let data_len = c.data_size as usize;
        let used = data_off.checked_add(data_len).ok_or(EINVAL)?;
        let size = used.checked_next_power_of_two().ok_or(EINVAL)?;
        let (mem, file) = SharedPages::new_shmem(c"vd_evtchn", used, size)?;
        // The geometry line's extra fields, before `init_ring` publishes the magic; the guest
        // reads them, the kernel keeps its own copy.
        mem.store_u32(ring::OFF_DATA_OFF, data_off as u32);
        mem.store_u32(ring::OFF_DATA_LEN, c.data_size);
        mem.store_u32(ring::OFF_DEV_KIND, c.dev_kind);
        mem.store_u32(ring::OFF_DOORBELL, c.doorbell);
        let (id, ch) = self.insert(geo, mem, (data_off, data_len))?;
        c.id = id;
        c.fd = -1;
        c.size = size as u64;
        c.data_off = data_off as u64;
        c.mmap_offset = u64::from(id) * VDE_MMAP_STRIDE;
        Ok((ch, file))
    }

    /// Makes a channel over `mem` under a free id, lists it, and returns the id and channel.
    /// The pages are made before (outside the table's lock: a large shmem file takes a while).
    fn insert(
        &self,
        geo: Geometry,
        mem: SharedPages,
        data: (usize, usize),
    ) -> Result<(u32, ChannelRef)> {
        let mut inner = self.inner.lock();
        let id = match inner.channels.iter().position(Option::is_none) {
            Some(i) => i,
            None if inner.channels.len() < VDE_MAX_CHANNELS as usize => {
                inner.channels.push(None, GFP_KERNEL)?;
                inner.channels.len() - 1
            }
            None => return Err(ENOSPC),
        };
        let id32 = u32::try_from(id).map_err(|_| ENOSPC)?;
        let key = crate::registry::next_key();
        let (domain, wq) = (self.pid as u64, self.wq.clone());
        // A hang-up goes to the orphan set, which tears the channel down if it is an orphan.
        let init = Channel::new(id32, key, domain, geo, mem, data, wq, orphan::hung_up)?;
        let ch = Arc::pin_init(init, GFP_KERNEL_ACCOUNT)?;
        crate::registry::register(self.pid, &ch)?;
        inner.channels[id] = Some(ch.clone());
        Ok((id32, ch))
    }

    /// `VDE_IOC_ORPHAN`: channel `id` leaves this domain for the host-wide orphan set, where it
    /// is served until its kick eventfd hangs up. `ENOENT` for an unknown id, `EINVAL` if no
    /// kick eventfd is bound. Its kick binding is sealed: nobody can unbind it any more.
    pub(crate) fn orphan(&self, id: u32) -> Result {
        let ch = self.channel(id)?;
        let prepared = orphan::prepare(&ch)?;
        {
            let mut inner = self.inner.lock();
            let slot = inner.channels.get_mut(id as usize).ok_or(ENOENT)?;
            if !slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &ch)) {
                // Destroyed (and maybe the id reused) since the lookup.
                return Err(ENOENT);
            }
            // Under the table's lock: a concurrent bind of this channel either sealed it out
            // (EINVAL) or finished before.
            ch.seal()?;
            drop(slot.take());
        }
        orphan::adopt(prepared);
        Ok(())
    }

    /// Destroys channel `id` if it still is `ch` (another thread may have destroyed it and
    /// created a new one under the same id meanwhile: that one stays).
    pub(crate) fn destroy_exact(&self, id: u32, ch: &ChannelRef) {
        let taken = {
            let mut inner = self.inner.lock();
            match inner.channels.get_mut(id as usize) {
                Some(slot) if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, ch)) => slot.take(),
                _ => None,
            }
        };
        if let Some(c) = taken {
            teardown(c);
        }
    }

    pub(crate) fn destroy(&self, id: u32) -> Result {
        let ch = {
            let mut inner = self.inner.lock();
            inner
                .channels
                .get_mut(id as usize)
                .and_then(Option::take)
                .ok_or(ENOENT)?
        };
        teardown(ch);
        Ok(())
    }

    pub(crate) fn bind(&self, b: &VdeBind) -> Result {
        if b.flags != 0 {
            return Err(EINVAL);
        }
        let ch = self.channel(b.id)?;
        let call = if b.call_fd >= 0 {
            Some(EventFd::from_fd(b.call_fd)?)
        } else {
            None
        };
        if b.kick_fd >= 0 {
            ch.attach(b.kick_fd)?;
        } else {
            ch.unbind()?;
        }
        ch.data.set_call(call);
        Ok(())
    }

    pub(crate) fn attach(&self, a: &VdeAttach) -> Result {
        if a.flags != 0 {
            return Err(EINVAL);
        }
        let ch = self.channel(a.id)?;
        ch.data.set_driver(Backend::from_attach(a.backend, a.fd)?);
        // Serve whatever the guest queued before the backend arrived.
        ch.kick_now();
        Ok(())
    }

    /// `VDE_IOC_STATS` of channel `id` (`ENOENT` if there is none).
    pub(crate) fn stats(&self, id: u32) -> Result<VdeStats> {
        let mut s = VdeStats {
            id,
            ..Default::default()
        };
        self.channel(id)?.data.stats_into(&mut s);
        Ok(s)
    }

    /// `VDE_IOC_STATS` with `id = VDE_ALL`: the sums over the domain's channels.
    pub(crate) fn totals(&self) -> VdeTotals {
        let mut t = VdeTotals {
            id: VDE_ALL,
            ..Default::default()
        };
        // Counters are atomics: nothing here waits for a channel's handler.
        let inner = self.inner.lock();
        for c in inner.channels.iter().flatten() {
            t.counters.saturating_add(&c.data.stats.counters());
            t.channels = t.channels.saturating_add(1);
            if c.data.failed() {
                t.failed = t.failed.saturating_add(1);
            }
        }
        t
    }

    /// Maps the ring of the channel that `vma`'s offset names.
    pub(crate) fn mmap(&self, vma: &VmaNew) -> Result {
        let pgoff = crate::vd::shmem::vma_pgoff(vma) as u64;
        let stride = VDE_MMAP_STRIDE / PAGE_SIZE as u64;
        let (id, first) = (pgoff / stride, (pgoff % stride) as usize);
        let ch = self.channel(u32::try_from(id).map_err(|_| EINVAL)?)?;
        ch.data.mem.map(vma, first, true)
    }
}

impl Drop for DomainFile {
    fn drop(&mut self) {
        let chans = core::mem::take(&mut self.core.inner.lock().channels);
        for ch in chans.into_iter().flatten() {
            teardown(ch);
        }
    }
}
