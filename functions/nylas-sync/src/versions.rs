//! Which state of an object wins: every write carries a version (milliseconds) and the store keeps
//! the highest (`put_if_newer`). A state is versioned by **what was seen**, never by when it is
//! written:
//! - a webhook state by its notification `time` (seconds, so the start of that second; an event
//!   by its `updated_at` when that is later);
//! - a webhook tombstone by the end of its notification's second (a delete is final: an update of
//!   the same second cannot undo it);
//! - a state read from Nylas (a fetch, a listing page, a sweep's comparison) by the time the read
//!   **began**, minus [`READ_SKEW_MS`]: a change made while a slow read was in flight, whose
//!   webhook carries a time after the read began, must win over what the read returned.
//!
//! Plain functions over plain values; the consumer and the reconciler call them, the property
//! test below holds them to "any interleaving ends at the newest state".

use crate::store::Version;

/// What a read's version gives up, so a change made during the read wins over it: notification
/// times are whole seconds (a change at 12.9 s is notified as 12 s: up to 1 s), plus 1 s of
/// clock skew between Nylas and this function.
pub const READ_SKEW_MS: i64 = 2_000;

/// A webhook state of notification time `time_s`.
pub fn webhook(time_s: i64) -> Version {
    time_s.saturating_mul(1000)
}

/// A webhook state of an event: its `updated_at` when later than the notification time.
pub fn webhook_event(time_s: i64, updated_at_s: Option<i64>) -> Version {
    webhook(updated_at_s.map_or(time_s, |u| u.max(time_s)))
}

/// A webhook tombstone of notification time `time_s`: the end of that second.
pub fn webhook_tombstone(time_s: i64) -> Version {
    webhook(time_s).saturating_add(999)
}

/// A state read from Nylas by a read that began at `read_began_ms`.
pub fn read(read_began_ms: i64) -> Version {
    read_began_ms.saturating_sub(READ_SKEW_MS)
}

/// A state fetched because of a notification of time `time_s`: by when the fetch began, and at
/// least just above the notification it answers (whose own state it replaces).
pub fn fetched(read_began_ms: i64, time_s: i64) -> Version {
    read(read_began_ms).max(webhook(time_s).saturating_add(1))
}

/// A fetch that found the object gone (404): at least the end of the notification's second.
pub fn fetched_gone(read_began_ms: i64, time_s: i64) -> Version {
    read(read_began_ms).max(webhook_tombstone(time_s))
}

/// Whether a write of `candidate` replaces a stored `existing` version (strictly newer).
pub fn wins(candidate: Version, existing: Option<Version>) -> bool {
    existing.is_none_or(|e| candidate > e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_read_that_began_before_a_change_loses_to_its_webhook() {
        // The read began at 12.500 s; the change came at 12.900 s (notified as 12 s) while the
        // read was in flight; the read's answer (without the change) is written later.
        let read_version = read(12_500);
        let change = webhook(12);
        assert!(wins(change, Some(read_version)));
        assert!(!wins(read_version, Some(change)));
    }

    #[test]
    fn a_read_that_began_well_after_a_webhook_replaces_it() {
        assert!(wins(read(20_000), Some(webhook(12))));
        assert!(wins(fetched(20_000, 12), Some(webhook(12))));
    }

    #[test]
    fn a_fetch_always_replaces_the_notification_it_answers() {
        // Even when the clock reads earlier than the notification time (skew).
        assert!(fetched(10_000, 12) > webhook(12));
        assert!(fetched_gone(10_000, 12) >= webhook_tombstone(12));
    }

    #[test]
    fn a_tombstone_outlives_updates_of_its_second() {
        assert!(webhook_tombstone(12) > webhook(12));
        assert!(webhook_tombstone(12) < webhook(13));
        assert_eq!(webhook_event(12, Some(15)), webhook(15));
        assert_eq!(webhook_event(12, Some(3)), webhook(12));
        assert_eq!(webhook_event(12, None), webhook(12));
    }

    /// An observation of an object: a version and the state (index of the change) it shows.
    #[derive(Debug, Clone, Copy)]
    struct Seen {
        version: Version,
        state: usize,
    }

    fn apply(observations: &[Seen]) -> Option<Seen> {
        let mut stored: Option<Seen> = None;
        for o in observations {
            if wins(o.version, stored.map(|s| s.version)) {
                stored = Some(*o);
            }
        }
        stored
    }

    proptest! {
        /// Changes at distinct seconds (same-second states are told apart by a fetch, elsewhere);
        /// some webhooks are lost; reads (fetches, listing pages) begin at arbitrary times and
        /// show the newest change made before they began; everything is applied in any order.
        /// If the last change's webhook arrived, or a read began at least READ_SKEW_MS after
        /// it, the store ends at the last change; in every case it ends at the newest
        /// observation's state.
        #[test]
        fn any_interleaving_of_webhook_fetch_and_listing_states_ends_at_the_newest_state(
            seconds in proptest::collection::btree_set(0i64..60, 1..6),
            offsets in proptest::collection::vec(0i64..1000, 6),
            delivered in proptest::collection::vec(any::<bool>(), 6),
            reads in proptest::collection::vec(0i64..70_000, 0..5),
            shuffle_seed in any::<u64>(),
        ) {
            let changes: Vec<i64> = seconds.iter().zip(&offsets).map(|(s, o)| s * 1000 + o).collect();
            let mut observations = Vec::new();
            for (i, &c) in changes.iter().enumerate() {
                if delivered[i] {
                    observations.push(Seen { version: webhook(c / 1000), state: i + 1 });
                }
            }
            for &r in &reads {
                // State 0 is the object before any change.
                let state = changes.iter().filter(|&&c| c < r).count();
                observations.push(Seen { version: read(r), state });
            }
            // A deterministic shuffle from the seed.
            let mut rng = shuffle_seed | 1;
            for i in (1..observations.len()).rev() {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
                observations.swap(i, (rng % (i as u64 + 1)) as usize);
            }
            let last = changes.len();
            let stored = apply(&observations);
            let newest = observations.iter().map(|o| o.version).max();
            prop_assert_eq!(stored.map(|s| s.version), newest);
            let last_change = *changes.last().unwrap();
            let covered = delivered[last - 1] || reads.iter().any(|&r| r >= last_change + READ_SKEW_MS);
            if covered {
                prop_assert_eq!(stored.map(|s| s.state), Some(last), "{:?}", observations);
            }
        }
    }
}
