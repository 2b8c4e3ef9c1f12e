//! A minimal KVM guest: one VM, one flat memory slot at GPA 0, real-mode vCPUs.
//!
//! Meant to be reused by every `vd-testvmm` subcommand.

use std::ffi::{c_void, CString};
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use anyhow::{bail, ensure, Context, Result};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

/// Default KVM device node.
pub const KVM_PATH: &str = "/dev/kvm";

const PAGE_SIZE: usize = 4096;
/// rflags bit 1 is reserved and must be set.
const RFLAGS_RESERVED: u64 = 0x2;

/// Open the KVM device at `path`.
///
/// Taking the path (instead of always using `/dev/kvm`) lets tests exercise
/// the failure path without touching the real device.
pub fn open_kvm(path: &str) -> Result<Kvm> {
    let cpath = CString::new(path)
        .with_context(|| format!("KVM device path {path:?} contains a NUL byte"))?;
    Kvm::new_with_path(&cpath).with_context(|| {
        format!(
            "open {path}: is kvm_amd (or kvm_intel) loaded, and can this user read/write {path}?"
        )
    })
}

/// Anonymous, page-aligned host mapping that backs guest memory.
///
/// Unmapped on drop.
#[derive(Debug)]
pub struct GuestMemory {
    ptr: NonNull<c_void>,
    len: usize,
}

impl GuestMemory {
    /// Map `len` bytes (a non-zero multiple of the page size) of zeroed memory.
    pub fn new(len: usize) -> Result<Self> {
        ensure!(
            len != 0 && len.is_multiple_of(PAGE_SIZE),
            "guest memory size {len:#x} must be a non-zero multiple of {PAGE_SIZE:#x}"
        );
        let size = NonZeroUsize::new(len).context("guest memory size is zero")?;
        // SAFETY: a fresh anonymous private mapping at a kernel-chosen address
        // cannot alias any existing Rust object.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        }
        .with_context(|| {
            format!("mmap {len:#x} bytes of guest memory: check RLIMIT_AS / free memory")
        })?;
        Ok(Self { ptr, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Host virtual address of GPA 0.
    pub fn host_addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Byte offset for `[gpa, gpa + len)`, or an error if it is outside the mapping.
    fn checked_offset(&self, gpa: u64, len: usize) -> Result<usize> {
        let start = usize::try_from(gpa).ok();
        let end = start.and_then(|s| s.checked_add(len));
        match (start, end) {
            (Some(start), Some(end)) if end <= self.len => Ok(start),
            _ => bail!(
                "guest access [{gpa:#x}, +{len:#x}) is outside guest memory [0, {:#x})",
                self.len
            ),
        }
    }

    /// Copy `bytes` into guest memory at `gpa`.
    pub fn write(&self, gpa: u64, bytes: &[u8]) -> Result<()> {
        let off = self.checked_offset(gpa, bytes.len())?;
        // SAFETY: `checked_offset` guarantees `[off, off + bytes.len())` lies inside our
        // live mapping; `bytes` is a Rust slice so it cannot overlap guest memory we own
        // exclusively through raw pointers.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().cast::<u8>().add(off),
                bytes.len(),
            );
        }
        Ok(())
    }

    /// Copy guest memory at `gpa` into `buf`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        let off = self.checked_offset(gpa, buf.len())?;
        // SAFETY: `checked_offset` guarantees the source range lies inside our live
        // mapping; `buf` is a distinct, exclusively borrowed Rust slice.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().cast::<u8>().add(off),
                buf.as_mut_ptr(),
                buf.len(),
            );
        }
        Ok(())
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe exactly the mapping created in `new`, and no
        // references into it outlive `self`. Nothing useful to do on failure.
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}

/// A VM with a single memory slot covering `[0, mem.len())`.
///
/// Field order matters: the VM fd is closed before the memory backing it is unmapped.
pub struct Guest {
    vm: VmFd,
    mem: GuestMemory,
    _kvm: Kvm,
}

impl Guest {
    /// Create a VM via `/dev/kvm` with `mem_size` bytes of RAM at GPA 0.
    pub fn new(mem_size: usize) -> Result<Self> {
        Self::with_kvm_path(KVM_PATH, mem_size)
    }

    /// Like [`Guest::new`], but open the KVM device at `kvm_path`.
    pub fn with_kvm_path(kvm_path: &str, mem_size: usize) -> Result<Self> {
        let kvm = open_kvm(kvm_path)?;
        let vm = kvm
            .create_vm()
            .context("KVM_CREATE_VM failed: is nested virtualisation enabled / is another hypervisor holding VT-x/SVM?")?;
        let mem = GuestMemory::new(mem_size)?;
        register_memory(&vm, &mem)?;
        Ok(Self { vm, mem, _kvm: kvm })
    }

    pub fn vm(&self) -> &VmFd {
        &self.vm
    }

    pub fn mem_size(&self) -> usize {
        self.mem.len()
    }

    /// Host virtual address of GPA 0 (for a thread that watches guest memory while a vCPU runs:
    /// it must stop before this `Guest` is dropped).
    pub fn mem_host_addr(&self) -> u64 {
        self.mem.host_addr()
    }

    /// Copy `bytes` into guest memory at `gpa`.
    pub fn write(&self, gpa: u64, bytes: &[u8]) -> Result<()> {
        self.mem.write(gpa, bytes)
    }

    /// Copy guest memory at `gpa` into `buf`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        self.mem.read(gpa, buf)
    }

    /// Writes a little-endian `u32` at `gpa`.
    pub fn write_u32(&self, gpa: u64, v: u32) -> Result<()> {
        self.write(gpa, &v.to_le_bytes())
    }

    /// Reads a little-endian `u32` at `gpa`.
    pub fn read_u32(&self, gpa: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Adds `len` bytes of host memory at `host` as memory slot `slot` at `gpa` (a device's
    /// shared ring, for instance).
    ///
    /// # Safety
    ///
    /// `host..host + len` is a live mapping that stays mapped until this `Guest` is dropped
    /// (declare it before the `Guest`).
    pub unsafe fn add_slot(&self, slot: u32, gpa: u64, host: *mut u8, len: usize) -> Result<()> {
        let region = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: len as u64,
            userspace_addr: host as u64,
        };
        // SAFETY: the caller keeps the mapping alive for the VM's life; every vCPU borrows the
        // `Guest`, so none runs after it is dropped.
        unsafe { self.vm.set_user_memory_region(region) }
            .with_context(|| format!("KVM_SET_USER_MEMORY_REGION slot {slot} at {gpa:#x}"))
    }

    /// Create vCPU `id` in real mode with CS base/selector 0, starting at `entry`.
    pub fn create_real_mode_vcpu(&self, id: u64, entry: u16) -> Result<Vcpu<'_>> {
        let fd = self.vm.create_vcpu(id).with_context(|| {
            format!("KVM_CREATE_VCPU {id}: check the vCPU limit (KVM_CAP_MAX_VCPUS)")
        })?;
        setup_real_mode(&fd, entry)?;
        Ok(Vcpu {
            fd,
            _guest: PhantomData,
        })
    }
}

fn register_memory(vm: &VmFd, mem: &GuestMemory) -> Result<()> {
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: mem.len() as u64,
        userspace_addr: mem.host_addr(),
    };
    // SAFETY: `region` describes the whole of `mem`, a live anonymous mapping. `Guest`
    // drops the VM fd before `mem`, and every `Vcpu` borrows the `Guest`, so KVM can
    // never run guest code against this range after it is unmapped.
    unsafe { vm.set_user_memory_region(region) }
        .context("KVM_SET_USER_MEMORY_REGION slot 0 failed: is the memory size page-aligned?")
}

fn setup_real_mode(vcpu: &VcpuFd, entry: u16) -> Result<()> {
    let mut sregs = vcpu.get_sregs().context("KVM_GET_SREGS on new vCPU")?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs)
        .context("KVM_SET_SREGS (real-mode CS=0)")?;

    let mut regs = vcpu.get_regs().context("KVM_GET_REGS on new vCPU")?;
    regs.rip = u64::from(entry);
    regs.rflags = RFLAGS_RESERVED;
    vcpu.set_regs(&regs).context("KVM_SET_REGS (rip/rflags)")
}

/// A vCPU that cannot outlive the [`Guest`] (and thus the memory) it runs in.
pub struct Vcpu<'g> {
    fd: VcpuFd,
    _guest: PhantomData<&'g Guest>,
}

impl Vcpu<'_> {
    /// One `KVM_RUN`.
    pub fn run(&mut self) -> Result<VcpuExit<'_>> {
        self.fd.run().context("KVM_RUN failed")
    }

    pub fn fd(&self) -> &VcpuFd {
        &self.fd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_kvm_missing_device_names_path() {
        let path = "/nonexistent/dev/kvm";
        let Err(err) = open_kvm(path) else {
            panic!("opening a nonexistent device must fail");
        };
        let msg = format!("{err:#}");
        assert!(msg.contains(path), "error should name the device: {msg}");
        assert!(
            msg.contains("kvm_amd"),
            "error should say what to check: {msg}"
        );
    }

    #[test]
    fn guest_with_missing_device_fails_cleanly() {
        let Err(err) = Guest::with_kvm_path("/nonexistent/dev/kvm", 0x10000) else {
            panic!("must fail without a KVM device");
        };
        assert!(format!("{err:#}").contains("/nonexistent/dev/kvm"));
    }

    #[test]
    fn memory_roundtrip() {
        let mem = GuestMemory::new(0x10000).expect("mmap");
        mem.write(0x1000, &[1, 2, 3]).expect("write");
        let mut buf = [0u8; 5];
        mem.read(0x0fff, &mut buf).expect("read");
        assert_eq!(buf, [0, 1, 2, 3, 0]);
        // Last byte is reachable.
        mem.write(0xffff, &[9]).expect("write last byte");
    }

    #[test]
    fn memory_rejects_out_of_bounds() {
        let mem = GuestMemory::new(0x10000).expect("mmap");
        assert!(mem.write(0xffff, &[1, 2]).is_err());
        assert!(mem.write(0x10000, &[]).is_ok());
        assert!(mem.write(0x10001, &[]).is_err());
        assert!(mem.read(u64::MAX, &mut [0u8; 1]).is_err());
    }

    #[test]
    fn memory_size_must_be_page_multiple() {
        assert!(GuestMemory::new(0).is_err());
        assert!(GuestMemory::new(0x1001).is_err());
    }
}
