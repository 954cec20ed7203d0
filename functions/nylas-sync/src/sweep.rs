//! The drift sweep's decisions, as plain functions: which slices of the mailbox a sweep
//! compares, and what one slice's comparison changes.
//!
//! Messages have no `updated_at`, so a flag change, a folder move or a delete that lost its
//! webhook can only be found by comparing Nylas's listing with the store. Every sweep compares
//! the recent window (where changes are likely) and then walks a few older slices of the same
//! length, one cursor per grant, back to the oldest mail and round again: the whole mailbox is
//! covered in a bounded, documented cycle, and each slice costs what the slice holds, whatever
//! the mailbox's size.

use std::collections::HashMap;

use crate::store::Flags;

/// The slices one sweep compares, newest first: the recent window `[now - window, ∞)`, then
/// `older` slices of `window` each, going back from `cursor` (where the last sweep's walk
/// stopped; the recent window's start when there is none, or when it lies ahead of it).
pub fn slices(now: i64, cursor: Option<i64>, window: i64, older: usize) -> Vec<(i64, i64)> {
    let window = window.max(1);
    let recent_start = now - window;
    let mut out = vec![(recent_start, i64::MAX)];
    let mut to = cursor.map_or(recent_start, |c| c.min(recent_start));
    for _ in 0..older {
        out.push((to - window, to));
        to -= window;
    }
    out
}

/// What comparing one slice's listing with the store's view of the same slice asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SliceDiff {
    /// Held by both with different flags: patch the store's copy to Nylas's flags.
    pub patch: Vec<(String, Flags)>,
    /// Held by the store, not listed: tombstone once a GET confirms it is gone.
    pub gone: Vec<String>,
    /// Listed, not held live by the store (never seen, or held as a tombstone): fetch it.
    pub fetch: Vec<String>,
}

/// Compares Nylas's listing of a slice with the store's live messages of the same slice.
pub fn compare(listed: &HashMap<String, Flags>, stored: &HashMap<String, Flags>) -> SliceDiff {
    let mut diff = SliceDiff::default();
    for (id, flags) in listed {
        match stored.get(id) {
            Some(held) if held == flags => {}
            Some(_) => diff.patch.push((id.clone(), flags.clone())),
            None => diff.fetch.push(id.clone()),
        }
    }
    for id in stored.keys() {
        if !listed.contains_key(id) {
            diff.gone.push(id.clone());
        }
    }
    diff.patch.sort_by(|a, b| a.0.cmp(&b.0));
    diff.gone.sort();
    diff.fetch.sort();
    diff
}

/// Where the walk through older mail goes after an older slice `[from, _)`: on to `from`,
/// unless the slice was empty on both sides and Nylas holds nothing older (`older_exists`
/// false): then the walk is over and the next sweep starts again from the recent window.
pub fn next_cursor(from: i64, slice_empty: bool, older_exists: Option<bool>) -> Option<i64> {
    if slice_empty && older_exists == Some(false) {
        None
    } else {
        Some(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn flags(unread: bool, folder: &str) -> Flags {
        Flags {
            folders: Some(json!([folder])),
            unread: Some(json!(unread)),
            starred: Some(json!(false)),
        }
    }

    #[test]
    fn a_sweep_compares_the_recent_window_then_walks_back_from_its_cursor() {
        let week = 7;
        assert_eq!(slices(100, None, week, 0), vec![(93, i64::MAX)]);
        assert_eq!(
            slices(100, None, week, 2),
            vec![(93, i64::MAX), (86, 93), (79, 86)]
        );
        assert_eq!(
            slices(100, Some(50), week, 2),
            vec![(93, i64::MAX), (43, 50), (36, 43)]
        );
        // A cursor ahead of the recent window (the clock moved back): start at the window.
        assert_eq!(
            slices(100, Some(99), week, 1),
            vec![(93, i64::MAX), (86, 93)]
        );
    }

    #[test]
    fn a_slice_comparison_patches_tombstones_and_fetches_what_differs() {
        let listed = HashMap::from([
            ("same".to_string(), flags(true, "INBOX")),
            ("read".to_string(), flags(false, "INBOX")),
            ("new".to_string(), flags(true, "INBOX")),
        ]);
        let stored = HashMap::from([
            ("same".to_string(), flags(true, "INBOX")),
            ("read".to_string(), flags(true, "INBOX")),
            ("deleted".to_string(), flags(true, "INBOX")),
        ]);
        assert_eq!(
            compare(&listed, &stored),
            SliceDiff {
                patch: vec![("read".to_string(), flags(false, "INBOX"))],
                gone: vec!["deleted".to_string()],
                fetch: vec!["new".to_string()],
            }
        );
    }

    #[test]
    fn the_walk_wraps_only_past_the_oldest_mail() {
        assert_eq!(next_cursor(40, false, None), Some(40));
        assert_eq!(next_cursor(40, true, Some(true)), Some(40));
        assert_eq!(next_cursor(40, true, Some(false)), None);
    }

    fn any_flags() -> impl Strategy<Value = Flags> {
        (any::<bool>(), 0..3u8, any::<bool>()).prop_map(|(u, f, s)| Flags {
            folders: Some(json!([format!("F{f}")])),
            unread: Some(json!(u)),
            starred: Some(json!(s)),
        })
    }

    proptest! {
        /// Applying a slice's diff to the store's view (patches and fetches take Nylas's flags,
        /// confirmed deletes leave) makes it equal to Nylas's listing.
        #[test]
        fn applying_a_slice_diff_makes_the_store_equal_to_the_listing(
            listed in proptest::collection::hash_map("[a-f]{1,2}", any_flags(), 0..12),
            stored in proptest::collection::hash_map("[a-f]{1,2}", any_flags(), 0..12),
        ) {
            let diff = compare(&listed, &stored);
            let mut view = stored.clone();
            for (id, f) in &diff.patch { view.insert(id.clone(), f.clone()); }
            for id in &diff.gone { view.remove(id); }
            for id in &diff.fetch { view.insert(id.clone(), listed[id].clone()); }
            prop_assert_eq!(&view, &listed);
            // Nothing asked for twice, nothing asked for an unchanged message.
            let touched = diff.patch.len() + diff.gone.len() + diff.fetch.len();
            let unchanged = listed.iter().filter(|(k, v)| stored.get(*k) == Some(v)).count();
            prop_assert_eq!(touched + unchanged, listed.len() + diff.gone.len());
        }

        /// Successive sweeps walk back without gaps or overlaps until the walk wraps.
        #[test]
        fn successive_sweeps_cover_older_mail_without_gaps(
            now in 1_000_000i64..2_000_000, window in 1i64..1000, older in 1usize..5, sweeps in 1usize..6,
        ) {
            let mut cursor = None;
            let mut covered_to = now - window;
            for _ in 0..sweeps {
                let s = slices(now, cursor, window, older);
                for (from, to) in s.iter().skip(1) {
                    prop_assert_eq!(*to, covered_to);
                    covered_to = *from;
                    cursor = next_cursor(*from, false, None);
                }
            }
            prop_assert_eq!(covered_to, now - window - (window * (older * sweeps) as i64));
        }
    }
}
