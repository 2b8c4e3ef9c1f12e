// SPDX-License-Identifier: GPL-2.0
//! The VF lease table: which VM holds which VF, for which owning file. Pure logic (no kernel
//! objects), so its rules are tested by KUnit on their own.
//!
//! Rules: a VF is leased to at most one VM; a VM holds at most one VF; only the owner that took
//! a lease may release it; an owner going away releases all of its leases at once; a VF that
//! disappears while leased revokes the lease (the caller reports it as an event).

/// Most VFs tracked (the igb PF has 7; large NICs have 64+ per PF).
pub(crate) const MAX_VFS: usize = 256;

/// A lease: VM id plus the identity of the file that took it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) vm_id: u64,
    pub(crate) owner: u64,
}

/// Why a lease operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseError {
    /// No such VF (never seen or removed): `ENODEV`.
    NoSuchVf,
    /// The VF is leased already: `EBUSY`.
    Busy,
    /// The VM holds another VF already: `EEXIST`.
    VmHasVf,
    /// Not leased by this owner: `EPERM`.
    NotOwner,
    /// The VF is not leased: `ENOENT`.
    NotLeased,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Absent,
    Free,
    Leased(Lease),
}

/// The table, indexed by the manager's VF slot number.
pub(crate) struct LeaseTable {
    slots: [Slot; MAX_VFS],
}

impl LeaseTable {
    /// An empty table.
    pub(crate) const fn new() -> Self {
        Self {
            slots: [Slot::Absent; MAX_VFS],
        }
    }
    /// A VF appeared in slot `vf`.
    pub(crate) fn add_vf(&mut self, vf: usize) -> Result<(), LeaseError> {
        match self.slots.get_mut(vf) {
            Some(s @ Slot::Absent) => {
                *s = Slot::Free;
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(LeaseError::NoSuchVf),
        }
    }
    /// The VF in slot `vf` disappeared; returns the lease it revoked, if any.
    pub(crate) fn remove_vf(&mut self, vf: usize) -> Option<Lease> {
        let s = self.slots.get_mut(vf)?;
        let old = core::mem::replace(s, Slot::Absent);
        match old {
            Slot::Leased(l) => Some(l),
            _ => None,
        }
    }
    /// Leases `vf` to `vm_id` for `owner`.
    pub(crate) fn lease(&mut self, vf: usize, vm_id: u64, owner: u64) -> Result<(), LeaseError> {
        if self.holder_of(vm_id).is_some() {
            return Err(LeaseError::VmHasVf);
        }
        match self.slots.get_mut(vf) {
            None | Some(Slot::Absent) => Err(LeaseError::NoSuchVf),
            Some(Slot::Leased(_)) => Err(LeaseError::Busy),
            Some(s @ Slot::Free) => {
                *s = Slot::Leased(Lease { vm_id, owner });
                Ok(())
            }
        }
    }
    /// Releases `vf`, which `owner` must hold.
    pub(crate) fn release(&mut self, vf: usize, owner: u64) -> Result<Lease, LeaseError> {
        match self.slots.get_mut(vf) {
            None | Some(Slot::Absent) => Err(LeaseError::NoSuchVf),
            Some(Slot::Free) => Err(LeaseError::NotLeased),
            Some(Slot::Leased(l)) if l.owner != owner => Err(LeaseError::NotOwner),
            Some(s @ Slot::Leased(_)) => match core::mem::replace(s, Slot::Free) {
                Slot::Leased(l) => Ok(l),
                _ => Err(LeaseError::NotLeased),
            },
        }
    }
    /// Releases every lease of `owner`; calls `f(vf, lease)` for each. Returns how many.
    pub(crate) fn release_owner(&mut self, owner: u64, mut f: impl FnMut(usize, Lease)) -> usize {
        let mut n = 0;
        for (vf, s) in self.slots.iter_mut().enumerate() {
            if let Slot::Leased(l) = *s {
                if l.owner == owner {
                    *s = Slot::Free;
                    f(vf, l);
                    n += 1;
                }
            }
        }
        n
    }
    /// The VF leased to `vm_id`.
    pub(crate) fn holder_of(&self, vm_id: u64) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| matches!(s, Slot::Leased(l) if l.vm_id == vm_id))
    }
    /// The lease on `vf`.
    pub(crate) fn lease_of(&self, vf: usize) -> Option<Lease> {
        match self.slots.get(vf) {
            Some(Slot::Leased(l)) => Some(*l),
            _ => None,
        }
    }
    /// (present VFs, leased VFs).
    pub(crate) fn counts(&self) -> (u32, u32) {
        self.slots.iter().fold((0, 0), |(p, l), s| match s {
            Slot::Absent => (p, l),
            Slot::Free => (p + 1, l),
            Slot::Leased(_) => (p + 1, l + 1),
        })
    }
}

#[kernel::prelude::kunit_tests(vd_sriov_lease)]
mod tests {
    use super::*;
    use kernel::prelude::*;

    fn table(n: usize) -> KBox<LeaseTable> {
        let mut t = KBox::new(LeaseTable::new(), GFP_KERNEL).unwrap();
        for vf in 0..n {
            t.add_vf(vf).unwrap();
        }
        t
    }

    #[test]
    fn a_vf_is_leased_once() {
        let mut t = table(2);
        assert_eq!(t.lease(0, 100, 1), Ok(()));
        assert_eq!(t.lease(0, 101, 2), Err(LeaseError::Busy));
        assert_eq!(t.lease(1, 100, 1), Err(LeaseError::VmHasVf));
        assert_eq!(t.lease(1, 101, 2), Ok(()));
        assert_eq!(t.counts(), (2, 2));
        assert_eq!(t.holder_of(101), Some(1));
    }

    #[test]
    fn only_the_owner_releases() {
        let mut t = table(1);
        t.lease(0, 7, 1).unwrap();
        assert_eq!(t.release(0, 2), Err(LeaseError::NotOwner));
        assert_eq!(t.release(0, 1), Ok(Lease { vm_id: 7, owner: 1 }));
        assert_eq!(t.release(0, 1), Err(LeaseError::NotLeased));
        assert_eq!(t.lease(0, 8, 2), Ok(()));
    }

    #[test]
    fn owner_exit_releases_all_its_leases() {
        let mut t = table(4);
        t.lease(0, 1, 9).unwrap();
        t.lease(1, 2, 5).unwrap();
        t.lease(2, 3, 9).unwrap();
        let mut seen = KVec::new();
        assert_eq!(
            t.release_owner(9, |vf, l| seen.push((vf, l.vm_id), GFP_KERNEL).unwrap()),
            2
        );
        assert_eq!(&seen[..], &[(0, 1), (2, 3)]);
        assert_eq!(t.counts(), (4, 1));
        assert_eq!(t.lease_of(1), Some(Lease { vm_id: 2, owner: 5 }));
    }

    #[test]
    fn removed_vf_revokes_its_lease() {
        let mut t = table(2);
        t.lease(1, 42, 3).unwrap();
        assert_eq!(
            t.remove_vf(1),
            Some(Lease {
                vm_id: 42,
                owner: 3
            })
        );
        assert_eq!(t.lease(1, 43, 3), Err(LeaseError::NoSuchVf));
        assert_eq!(t.release(1, 3), Err(LeaseError::NoSuchVf));
        assert_eq!(t.holder_of(42), None);
        assert_eq!(t.remove_vf(0), None);
        assert_eq!(t.add_vf(MAX_VFS), Err(LeaseError::NoSuchVf));
    }
}
