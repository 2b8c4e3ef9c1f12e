// SPDX-License-Identifier: GPL-2.0
//! [`MsixIrq`]: MSI-X vector 0 of a PCI device with a handler on it, as one value.
//!
//! The kernel crate splits this in two: [`IrqVectorRegistration`] (the vectors, freed on drop)
//! and an [`irq::Registration`] that borrows from it. A driver keeps both in its per-device data,
//! which would make that data refer to itself; this type owns the vectors in a box of its own
//! and drops the handler registration first (`free_irq`), the vectors after
//! (`pci_free_irq_vectors`).

use core::ptr::NonNull;
use kernel::device::Bound;
use kernel::irq::{self, Flags, IrqRequest};
use kernel::pci::{self, IrqType, IrqTypes, IrqVectorRegistration};
use kernel::prelude::*;

/// Owns a boxed [`IrqVectorRegistration`].
///
/// # Invariants
///
/// `ptr` comes from `KBox::into_raw` and is freed only in `Drop`.
struct Vectors<'a> {
    ptr: NonNull<IrqVectorRegistration<'a>>,
}

// SAFETY: the registration is a device reference and a count; freeing vectors may happen on any
// thread (it sleeps, which `Drop` of driver data may).
unsafe impl Send for Vectors<'_> {}
// SAFETY: `Vectors` offers no access to its content.
unsafe impl Sync for Vectors<'_> {}

impl Drop for Vectors<'_> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `KBox::into_raw` (invariant) and is freed only here.
        drop(unsafe { KBox::from_raw(self.ptr.as_ptr()) });
    }
}

/// MSI-X vector 0 of a device, with `T` as its hard-interrupt handler.
///
/// # Invariants
///
/// `reg` borrows the registration `vectors` owns; it is declared first, so it is dropped (the
/// handler freed) before `vectors` frees the vector.
#[pin_data]
pub(crate) struct MsixIrq<'a, T: irq::Handler + 'a> {
    #[pin]
    reg: irq::Registration<'a, T>,
    vectors: Vectors<'a>,
}

impl<'a, T: irq::Handler + 'a> MsixIrq<'a, T> {
    /// Allocates exactly one MSI-X vector for `pdev` and registers `handler` on it as `name`.
    /// The handler may run as soon as the returned initializer has run.
    ///
    /// # Safety
    ///
    /// The value must not be leaked (`mem::forget`, `KBox::leak`): its `Drop` must run before
    /// the device is unbound, as for [`irq::Registration::new`].
    pub(crate) unsafe fn new(
        pdev: &'a pci::Device<Bound>,
        name: &'static CStr,
        handler: T,
    ) -> Result<impl PinInit<Self, Error> + 'a> {
        let vecs = pdev.alloc_irq_vectors(1, 1, IrqTypes::default().with(IrqType::MsiX))?;
        let raw = KBox::into_raw(KBox::new(vecs, GFP_KERNEL)?);
        // INVARIANT: `raw` comes from `KBox::into_raw`.
        let vectors = Vectors {
            // SAFETY: `KBox::into_raw` never returns null.
            ptr: unsafe { NonNull::new_unchecked(raw) },
        };
        // SAFETY: the box lives until `vectors` is dropped, which happens after `reg` (field
        // order, see the invariant) or, if this function fails, when `vectors` goes out of
        // scope with nothing borrowing it any more; so the borrow never outlives the box.
        let regs: &'a IrqVectorRegistration<'a> = unsafe { &*raw };
        let request: IrqRequest<'a> = regs.index(0)?.into();
        // SAFETY: the caller promises not to leak `Self`, whose `Drop` drops the registration.
        let reg = unsafe {
            irq::Registration::new(request, Flags::TRIGGER_NONE, name, Ok::<T, Error>(handler))
        };
        // INVARIANT: `reg` borrows `vectors`' registration; `reg` is the first field.
        Ok(try_pin_init!(Self {
            vectors,
            reg <- reg,
        }))
    }

    /// Waits until a handler running on another CPU has returned.
    pub(crate) fn synchronize(&self) {
        self.reg.synchronize()
    }
}
