// SPDX-License-Identifier: GPL-2.0
//! The reassignment policy as a pure state machine, tested by KUnit. The module's mechanism
//! (`state.rs`) feeds it window rates and hold times and acts on what it returns: it never moves
//! a VF by itself. A VF moves only through `VDS_IOC_SWAP`, which the daemon issues.
//!
//! - A holder becomes a *candidate* (idle) when it has held its VF for at least `min_hold_ms`
//!   and its average rate over the last `window_ms` is under `threshold_bps`.
//! - It stops being one only when the rate rises above `threshold_bps + hysteresis_bps`, so a
//!   holder hovering at the threshold does not flap.
//! - Without a full window of history nothing changes.
//! - Candidates are ordered most reclaimable first (lowest rate, then longest held, then lowest
//!   slot); waiters longest waiting first (then lowest VM id). Pairing the two lists in order
//!   gives the proposals; with more waiters than idle holders the extra waiters keep waiting.

use crate::lease::LeaseTable;
use crate::uapi::VdsPolicy;
use kernel::prelude::*;

/// Policy parameters (see [`VdsPolicy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) threshold_bps: u64,
    pub(crate) hysteresis_bps: u64,
    pub(crate) window_ms: u64,
    pub(crate) min_hold_ms: u64,
    pub(crate) sample_ms: u64,
}

impl Params {
    /// Defaults: 64 KiB/s, 16 KiB/s hysteresis, 5 s window, 5 s minimum hold, 250 ms sampling.
    pub(crate) const DEFAULT: Self = Self {
        threshold_bps: 65536,
        hysteresis_bps: 16384,
        window_ms: 5000,
        min_hold_ms: 5000,
        sample_ms: 250,
    };

    /// Checks and converts the ABI form. The window must fit in the usage history
    /// (`SAMPLES - 2` sampling periods).
    pub(crate) fn from_abi(p: &VdsPolicy) -> Result<Self> {
        let s = Self {
            threshold_bps: p.threshold_bps,
            hysteresis_bps: p.hysteresis_bps,
            window_ms: p.window_ms as u64,
            min_hold_ms: p.min_hold_ms as u64,
            sample_ms: p.sample_ms as u64,
        };
        let ok = p.flags == 0
            && (100..=600_000).contains(&s.window_ms)
            && (50..=10_000).contains(&s.sample_ms)
            && s.window_ms <= (crate::usage::SAMPLES as u64 - 2).saturating_mul(s.sample_ms)
            && s.min_hold_ms <= 86_400_000;
        if ok {
            Ok(s)
        } else {
            Err(EINVAL)
        }
    }

    /// The ABI form.
    pub(crate) fn to_abi(&self) -> VdsPolicy {
        VdsPolicy {
            threshold_bps: self.threshold_bps,
            hysteresis_bps: self.hysteresis_bps,
            window_ms: self.window_ms as u32,
            min_hold_ms: self.min_hold_ms as u32,
            sample_ms: self.sample_ms as u32,
            flags: 0,
        }
    }
}

/// A change of a holder's candidate state, reported as an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    None,
    BecameIdle,
    BecameBusy,
}

/// The next candidate state of a holder that is `idle` now, has held its VF `held_ms`, and whose
/// window rate is `rate` (`None`: the history does not cover the window yet).
pub(crate) fn step(p: &Params, idle: bool, held_ms: u64, rate: Option<u64>) -> (bool, Change) {
    if held_ms < p.min_hold_ms {
        return (
            false,
            if idle {
                Change::BecameBusy
            } else {
                Change::None
            },
        );
    }
    match rate {
        None => (idle, Change::None),
        Some(r) if idle => {
            if r > p.threshold_bps.saturating_add(p.hysteresis_bps) {
                (false, Change::BecameBusy)
            } else {
                (true, Change::None)
            }
        }
        Some(r) if r < p.threshold_bps => (true, Change::BecameIdle),
        Some(_) => (false, Change::None),
    }
}

/// Whether the usage sampler queues itself again after a pass: only while something is leased
/// (the history of an unleased VF is never used: a lease starts a new one) and the module is not
/// exiting. The next lease queues it again.
pub(crate) fn keep_sampling(stopping: bool, leased: u32) -> bool {
    !stopping && leased > 0
}

/// An idle holder, for ordering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Holder {
    pub(crate) slot: usize,
    pub(crate) vm_id: u64,
    pub(crate) rate: u64,
    pub(crate) held_ms: u64,
}

/// A waiter, for ordering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub(crate) vm_id: u64,
    pub(crate) waited_ms: u64,
}

/// Most reclaimable first: lowest rate, then longest held, then lowest slot.
pub(crate) fn order_holders(h: &mut [Holder]) {
    h.sort_unstable_by(|a, b| {
        a.rate
            .cmp(&b.rate)
            .then(b.held_ms.cmp(&a.held_ms))
            .then(a.slot.cmp(&b.slot))
    });
}

/// Longest waiting first, then lowest VM id.
pub(crate) fn order_waiters(w: &mut [Waiter]) {
    w.sort_unstable_by(|a, b| b.waited_ms.cmp(&a.waited_ms).then(a.vm_id.cmp(&b.vm_id)));
}

/// The idle holders among the leases of `table`: `idle(slot)` gives `(rate, held_ms)` for a slot
/// whose holder is a candidate. Slots without a lease (free, or revoked because the VF was
/// removed) are never candidates, whatever `idle` says.
pub(crate) fn idle_holders(
    table: &LeaseTable,
    idle: impl Fn(usize) -> Option<(u64, u64)>,
) -> Result<KVec<Holder>> {
    let mut v = KVec::new();
    for slot in 0..crate::lease::MAX_VFS {
        if let Some(l) = table.lease_of(slot) {
            if let Some((rate, held_ms)) = idle(slot) {
                v.push(
                    Holder {
                        slot,
                        vm_id: l.vm_id,
                        rate,
                        held_ms,
                    },
                    GFP_KERNEL,
                )?;
            }
        }
    }
    order_holders(&mut v);
    Ok(v)
}

#[kernel::prelude::kunit_tests(vd_sriov_policy)]
mod tests {
    use super::*;

    const P: Params = Params {
        threshold_bps: 1000,
        hysteresis_bps: 200,
        window_ms: 1000,
        min_hold_ms: 2000,
        sample_ms: 100,
    };

    #[test]
    fn threshold() {
        assert_eq!(step(&P, false, 5000, Some(999)), (true, Change::BecameIdle));
        assert_eq!(step(&P, false, 5000, Some(1000)), (false, Change::None));
        assert_eq!(step(&P, false, 5000, Some(0)), (true, Change::BecameIdle));
    }

    #[test]
    fn window_must_be_covered() {
        // No rate yet: state kept, whatever it is.
        assert_eq!(step(&P, false, 5000, None), (false, Change::None));
        assert_eq!(step(&P, true, 5000, None), (true, Change::None));
        // With the usage history: a rate exists only once the window is covered.
        let mut u = crate::usage::Usage::new();
        u.push(10_000, 0, P.sample_ms);
        u.push(10_500, 10, P.sample_ms);
        assert_eq!(u.rate(10_500, P.window_ms), None);
        u.push(11_000, 20, P.sample_ms);
        assert_eq!(
            step(&P, false, 5000, u.rate(11_000, P.window_ms)),
            (true, Change::BecameIdle)
        );
    }

    #[test]
    fn hysteresis() {
        // An idle holder stays idle up to threshold + hysteresis...
        assert_eq!(step(&P, true, 5000, Some(1100)), (true, Change::None));
        assert_eq!(step(&P, true, 5000, Some(1200)), (true, Change::None));
        // ...and becomes busy above it.
        assert_eq!(
            step(&P, true, 5000, Some(1201)),
            (false, Change::BecameBusy)
        );
        // A busy holder between threshold and threshold + hysteresis stays busy.
        assert_eq!(step(&P, false, 5000, Some(1100)), (false, Change::None));
    }

    #[test]
    fn minimum_hold() {
        assert_eq!(step(&P, false, 1999, Some(0)), (false, Change::None));
        assert_eq!(step(&P, false, 2000, Some(0)), (true, Change::BecameIdle));
        // Parameters changed under an idle holder: it is busy again until it held long enough.
        assert_eq!(step(&P, true, 10, Some(0)), (false, Change::BecameBusy));
    }

    #[test]
    fn ties() {
        let mut h = [
            Holder {
                slot: 3,
                vm_id: 30,
                rate: 5,
                held_ms: 100,
            },
            Holder {
                slot: 1,
                vm_id: 10,
                rate: 5,
                held_ms: 100,
            },
            Holder {
                slot: 2,
                vm_id: 20,
                rate: 5,
                held_ms: 900,
            },
            Holder {
                slot: 0,
                vm_id: 40,
                rate: 1,
                held_ms: 1,
            },
        ];
        order_holders(&mut h);
        let order: [u64; 4] = [h[0].vm_id, h[1].vm_id, h[2].vm_id, h[3].vm_id];
        assert_eq!(order, [40, 20, 10, 30]);
        let mut w = [
            Waiter {
                vm_id: 9,
                waited_ms: 50,
            },
            Waiter {
                vm_id: 7,
                waited_ms: 50,
            },
            Waiter {
                vm_id: 8,
                waited_ms: 60,
            },
        ];
        order_waiters(&mut w);
        assert_eq!([w[0].vm_id, w[1].vm_id, w[2].vm_id], [8, 7, 9]);
    }

    #[test]
    fn more_waiters_than_vfs() {
        let mut t = KBox::new(LeaseTable::new(), GFP_KERNEL).unwrap();
        for vf in 0..2 {
            t.add_vf(vf).unwrap();
        }
        t.lease(0, 100, 1).unwrap();
        t.lease(1, 101, 1).unwrap();
        // Only VF 1's holder is idle.
        let h = idle_holders(&t, |s| if s == 1 { Some((0, 9000)) } else { None }).unwrap();
        let mut w = [
            Waiter {
                vm_id: 200,
                waited_ms: 10,
            },
            Waiter {
                vm_id: 201,
                waited_ms: 30,
            },
            Waiter {
                vm_id: 202,
                waited_ms: 20,
            },
        ];
        order_waiters(&mut w);
        let pairs: KVec<(u64, u64)> = {
            let mut v = KVec::new();
            for (a, b) in h.iter().zip(w.iter()) {
                v.push((a.vm_id, b.vm_id), GFP_KERNEL).unwrap();
            }
            v
        };
        // One proposal: the idle holder's VF to the longest waiter; the others keep waiting.
        assert_eq!(&pairs[..], &[(101, 201)]);
    }

    #[test]
    fn vf_removed_while_leased() {
        let mut t = KBox::new(LeaseTable::new(), GFP_KERNEL).unwrap();
        for vf in 0..3 {
            t.add_vf(vf).unwrap();
        }
        t.lease(0, 100, 1).unwrap();
        t.lease(2, 102, 1).unwrap();
        // Both idle; VF 0 disappears: its lease is revoked and it is no candidate any more,
        // even though the caller's stale per-slot data still says idle.
        assert_eq!(t.remove_vf(0).map(|l| l.vm_id), Some(100));
        let h = idle_holders(&t, |_| Some((0, 9000))).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!((h[0].slot, h[0].vm_id), (2, 102));
        // The revoked VM holds nothing, so it may wait for (or lease) another VF.
        assert_eq!(t.holder_of(100), None);
    }

    #[test]
    fn the_sampler_stops_when_nothing_is_leased() {
        assert!(!keep_sampling(false, 0));
        assert!(keep_sampling(false, 1));
        assert!(keep_sampling(false, crate::lease::MAX_VFS as u32));
        assert!(!keep_sampling(true, 1));
    }

    #[test]
    fn every_change_of_a_tick_is_reported() {
        // All 256 holders cross the threshold in the same tick: 256 changes (16 used to be kept).
        let mut idle = [false; crate::lease::MAX_VFS];
        let mut changes = 0;
        for i in idle.iter_mut() {
            let (now_idle, ch) = step(&P, *i, 5000, Some(0));
            *i = now_idle;
            if ch == Change::BecameIdle {
                changes += 1;
            }
        }
        assert_eq!(changes, crate::lease::MAX_VFS);
        assert!(idle.iter().all(|&i| i));
    }

    #[test]
    fn extreme_parameters_do_not_overflow() {
        let p = Params {
            threshold_bps: u64::MAX,
            hysteresis_bps: u64::MAX,
            ..P
        };
        assert_eq!(
            step(&p, false, u64::MAX, Some(u64::MAX - 1)),
            (true, Change::BecameIdle)
        );
        assert_eq!(
            step(&p, true, u64::MAX, Some(u64::MAX)),
            (true, Change::None)
        );
        let ok = Params::DEFAULT.to_abi();
        let max = VdsPolicy {
            threshold_bps: u64::MAX,
            hysteresis_bps: u64::MAX,
            window_ms: u32::MAX,
            min_hold_ms: u32::MAX,
            sample_ms: u32::MAX,
            flags: 0,
        };
        assert_eq!(Params::from_abi(&max), Err(EINVAL));
        assert_eq!(
            Params::from_abi(&VdsPolicy {
                sample_ms: u32::MAX,
                ..ok
            }),
            Err(EINVAL)
        );
        assert_eq!(
            Params::from_abi(&VdsPolicy {
                window_ms: u32::MAX,
                ..ok
            }),
            Err(EINVAL)
        );
        assert_eq!(
            Params::from_abi(&VdsPolicy {
                min_hold_ms: u32::MAX,
                ..ok
            }),
            Err(EINVAL)
        );
        let hi = VdsPolicy {
            threshold_bps: u64::MAX,
            hysteresis_bps: u64::MAX,
            ..ok
        };
        assert_eq!(Params::from_abi(&hi).map(|p| p.threshold_bps), Ok(u64::MAX));
    }

    #[test]
    fn parameters_are_checked() {
        let ok = Params::DEFAULT.to_abi();
        assert_eq!(Params::from_abi(&ok), Ok(Params::DEFAULT));
        assert_eq!(
            Params::from_abi(&VdsPolicy {
                window_ms: 99,
                ..ok
            }),
            Err(EINVAL)
        );
        assert_eq!(Params::from_abi(&VdsPolicy { flags: 1, ..ok }), Err(EINVAL));
        // A window longer than the history can cover at this sampling period.
        assert_eq!(
            Params::from_abi(&VdsPolicy {
                window_ms: 100_000,
                sample_ms: 100,
                ..ok
            }),
            Err(EINVAL)
        );
    }
}
