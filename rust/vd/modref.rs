// SPDX-License-Identifier: GPL-2.0
//! [`ModuleRef`]: a counted reference on a module (`__module_get` / `module_put`), for objects
//! that outlive the files of the module that made them (while one lives, `rmmod` answers
//! `EBUSY`).

use kernel::bindings;
use kernel::ThisModule;

/// One reference on a module.
///
/// # Invariants
///
/// `module` is the module's `struct module` (or null for a built-in module, which
/// `__module_get` and `module_put` ignore), on which we hold one reference.
pub(crate) struct ModuleRef {
    module: *mut bindings::module,
}

// SAFETY: module references may be taken and dropped from any thread.
unsafe impl Send for ModuleRef {}
// SAFETY: nothing is reachable through `&self`.
unsafe impl Sync for ModuleRef {}

impl ModuleRef {
    /// Takes a reference on `module`.
    ///
    /// # Safety
    ///
    /// The caller runs code of `module` that the module pins otherwise (an open file's
    /// callback), and every place the value may be dropped either holds another reference or
    /// runs in a work item that the module's exit waits for: `module_put` may let the module
    /// go, so the code that runs after the drop must still exist.
    pub(crate) unsafe fn new(module: &'static ThisModule) -> Self {
        let module = module.as_ptr();
        // SAFETY: the module is live (its code runs us, per the caller).
        unsafe { bindings::__module_get(module) };
        // INVARIANT: one reference taken.
        Self { module }
    }
}

impl Drop for ModuleRef {
    fn drop(&mut self) {
        // SAFETY: we hold one reference (type invariant); where we run is the constructor's
        // caller's promise.
        unsafe { bindings::module_put(self.module) };
    }
}
