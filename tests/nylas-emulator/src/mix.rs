//! What the background activity changes, in which shares: the `day` scenario's typical mailbox
//! (new mail, flag and folder changes on recent mail, a few deletes and event changes) instead
//! of the default mix. Weights are per day and per grant, so `per_day()` is also the rate.

use serde::{Deserialize, Serialize};

/// Shares of each kind of change (any scale; the `typical_day` weights are changes per grant per
/// day), where changes to existing mail pick from, and how big new messages are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivityMix {
    pub new_messages: u32,
    /// `unread` or `starred` toggled.
    pub flag_changes: u32,
    /// Moved to another folder (archive, trash, ...).
    pub folder_moves: u32,
    pub deletes: u32,
    /// Calendar events created, updated, cancelled or deleted.
    pub event_changes: u32,
    /// Flag changes, moves and deletes pick among messages received in the last this-many days
    /// (people act on recent mail); among all messages when none is that recent.
    pub recent_days: i64,
    /// New messages' body sizes, drawn uniformly from this range (bytes, inclusive).
    pub body_bytes_min: usize,
    pub body_bytes_max: usize,
}

impl ActivityMix {
    /// A day of a typical mailbox, per grant: 200 new messages, 400 flag or folder changes,
    /// 20 deletes and 10 event changes, on mail of the last two days, bodies of 5 to 60 KB.
    pub fn typical_day() -> Self {
        ActivityMix {
            new_messages: 200,
            flag_changes: 280,
            folder_moves: 120,
            deletes: 20,
            event_changes: 10,
            recent_days: 2,
            body_bytes_min: 5_000,
            body_bytes_max: 60_000,
        }
    }

    /// Changes per grant per day at these weights (the rate, when they are per-day counts).
    pub fn per_day(&self) -> u32 {
        self.new_messages
            + self.flag_changes
            + self.folder_moves
            + self.deletes
            + self.event_changes
    }

    /// The kind of change a roll in `0..per_day()` stands for.
    pub(crate) fn pick(&self, roll: u32) -> Change {
        let mut r = roll;
        for (weight, change) in [
            (self.new_messages, Change::NewMessage),
            (self.flag_changes, Change::Flag),
            (self.folder_moves, Change::FolderMove),
            (self.deletes, Change::Delete),
        ] {
            if r < weight {
                return change;
            }
            r -= weight;
        }
        Change::Event
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Change {
    NewMessage,
    Flag,
    FolderMove,
    Delete,
    Event,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, ModelSettings};

    #[test]
    fn a_day_of_the_typical_mix_changes_recent_mail_in_its_shares_with_bodies_in_range() {
        let mix = ActivityMix::typical_day();
        let mut m = Model::new(ModelSettings {
            seed: 7,
            truncation_threshold_bytes: crate::DEFAULT_TRUNCATION_THRESHOLD_BYTES,
            events_per_minute: 0.0,
            initial_messages: 20,
            initial_events: 2,
            recurring_series: 0,
            folder_changes: 0.0,
            mix: Some(mix.clone()),
        });
        let start = 1_750_000_000;
        let mut out = Vec::new();
        let g = m.add_grant(start, &mut out);
        out.clear();
        let n = 3 * mix.per_day() as i64;
        for i in 0..n {
            m.random_change(&g, start + i * 86_400 / i64::from(mix.per_day()), &mut out);
        }
        let count = |kind: &str| out.iter().filter(|n| n.kind.starts_with(kind)).count();
        let created = count("message.created");
        let updated = count("message.updated");
        let deleted = count("message.deleted");
        let events = count("event.");
        // Three days of 200 / 400 / 20 / 10, within sampling error.
        assert!((480..=720).contains(&created), "{created} created");
        assert!((1_050..=1_350).contains(&updated), "{updated} updated");
        assert!((30..=100).contains(&deleted), "{deleted} deleted");
        assert!((10..=70).contains(&events), "{events} event changes");
        // Changes touch mail of the last two days only (the initial mail is older).
        let grant = &m.grants[&g];
        for n in out.iter().filter(|n| n.kind == "message.updated") {
            let date = n.object["date"].as_i64().unwrap_or(0);
            assert!(
                date >= n.time - 2 * 86_400,
                "a change to old mail: {date} at {}",
                n.time
            );
        }
        for msg in grant.messages.values().filter(|m| m.date >= start) {
            assert!(
                (5_000..=60_000).contains(&msg.body.len()),
                "{}",
                msg.body.len()
            );
        }
    }

    #[test]
    fn each_roll_maps_to_its_share_of_the_day() {
        let mix = ActivityMix::typical_day();
        assert_eq!(mix.per_day(), 630);
        let mut counts = std::collections::HashMap::new();
        for roll in 0..mix.per_day() {
            *counts.entry(mix.pick(roll)).or_insert(0u32) += 1;
        }
        assert_eq!(counts[&Change::NewMessage], 200);
        assert_eq!(counts[&Change::Flag] + counts[&Change::FolderMove], 400);
        assert_eq!(counts[&Change::Delete], 20);
        assert_eq!(counts[&Change::Event], 10);
    }
}
