//! Folders (Gmail labels): the seeded set every grant starts with, the changes to user labels
//! (create, rename, delete) with their `folder.*` notifications, and the seeded folder activity.
//!
//! Ids follow Gmail: system labels are named by their id (`INBOX`, `CATEGORY_UPDATES`, …), user
//! labels get `Label_<n>`, never reused within a grant. `ARCHIVE` is a user label kept under
//! that id because messages move there. Counts (`total_count`, `unread_count`) are not served.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::model::{to_value, Grant, MessageChange, Model, Notification};

const SOURCE: &str = "/google/emails/realtime";

/// Gmail's system labels, with the Nylas attributes of the ones that have a common meaning.
const SYSTEM_FOLDERS: &[(&str, &[&str])] = &[
    ("INBOX", &["\\Inbox"]),
    ("SENT", &["\\Sent"]),
    ("DRAFT", &["\\Drafts"]),
    ("TRASH", &["\\Trash"]),
    ("SPAM", &["\\Junk"]),
    ("STARRED", &["\\Flagged"]),
    ("IMPORTANT", &["\\Important"]),
    ("UNREAD", &[]),
    ("CHAT", &[]),
    ("CATEGORY_PERSONAL", &[]),
    ("CATEGORY_SOCIAL", &[]),
    ("CATEGORY_PROMOTIONS", &[]),
    ("CATEGORY_UPDATES", &[]),
    ("CATEGORY_FORUMS", &[]),
];

/// The user labels every grant starts with: (id, name).
const USER_FOLDERS: &[(&str, &str)] = &[("ARCHIVE", "Archive"), ("Label_1", "Receipts")];

/// User labels the seeded activity never deletes (messages move there).
const PROTECTED: &[&str] = &["ARCHIVE"];

/// At most this many user labels; beyond it the activity renames or deletes instead of creating.
const MAX_USER_FOLDERS: usize = 12;

const LABEL_WORDS: &[&str] = &[
    "Receipts",
    "Travel",
    "Projects",
    "Family",
    "Newsletters",
    "Clients",
    "Taxes",
    "Hiring",
    "Vendors",
    "Archive 2024",
];
const COLORS: &[(&str, &str)] = &[
    ("#16a766", "#ffffff"),
    ("#4a86e8", "#ffffff"),
    ("#ffad47", "#000000"),
    ("#e07798", "#ffffff"),
];

/// A Nylas folder object as Google grants return it (no `parent_id` or `child_count`: those are
/// Microsoft/EWS only; no counts: see `README.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Folder {
    pub id: String,
    pub grant_id: String,
    pub object: String,
    pub name: String,
    pub system_folder: bool,
    pub attributes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_color: Option<String>,
}

/// The folders a new grant starts with, and the next `Label_<n>` number.
pub(crate) fn seed_folders(g: &mut Grant) {
    for (id, attributes) in SYSTEM_FOLDERS {
        let f = Folder {
            id: id.to_string(),
            grant_id: g.id.clone(),
            object: "folder".into(),
            name: id.to_string(),
            system_folder: true,
            attributes: attributes.iter().map(|a| a.to_string()).collect(),
            background_color: None,
            text_color: None,
        };
        g.folders.insert(f.id.clone(), f);
    }
    for (i, (id, name)) in USER_FOLDERS.iter().enumerate() {
        let (bg, fg) = COLORS[i % COLORS.len()];
        let f = Folder {
            id: id.to_string(),
            grant_id: g.id.clone(),
            object: "folder".into(),
            name: name.to_string(),
            system_folder: false,
            attributes: vec![],
            background_color: Some(bg.into()),
            text_color: Some(fg.into()),
        };
        g.folders.insert(f.id.clone(), f);
    }
    g.next_label = USER_FOLDERS.len() as u64;
}

impl Grant {
    fn name_taken(&self, name: &str, except: Option<&str>) -> bool {
        self.folders
            .values()
            .any(|f| f.name.eq_ignore_ascii_case(name) && Some(f.id.as_str()) != except)
    }

    fn user_folder_ids(&self) -> Vec<String> {
        self.folders
            .values()
            .filter(|f| !f.system_folder)
            .map(|f| f.id.clone())
            .collect()
    }
}

impl Model {
    /// Creates a user label and notifies `folder.created`. `None` when the grant is unknown or
    /// the name is empty, longer than 1024 characters, or already used (Gmail refuses duplicates).
    pub(crate) fn create_folder(
        &mut self,
        grant_id: &str,
        name: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> Option<Value> {
        let g = self.grants.get_mut(grant_id)?;
        if name.is_empty() || name.chars().count() > 1024 || g.name_taken(name, None) {
            return None;
        }
        g.next_label += 1;
        let (bg, fg) = COLORS[g.next_label as usize % COLORS.len()];
        let f = Folder {
            id: format!("Label_{}", g.next_label),
            grant_id: grant_id.to_string(),
            object: "folder".into(),
            name: name.to_string(),
            system_folder: false,
            attributes: vec![],
            background_color: Some(bg.into()),
            text_color: Some(fg.into()),
        };
        g.folders.insert(f.id.clone(), f.clone());
        let v = to_value(&f);
        let n = self.notification("folder.created", SOURCE, now, grant_id, v.clone());
        out.push(n);
        Some(v)
    }

    /// Renames a user label and notifies `folder.updated`. `None` when unknown, a system folder,
    /// or the name is empty, too long or used by another folder.
    pub(crate) fn update_folder(
        &mut self,
        grant_id: &str,
        folder_id: &str,
        name: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> Option<Value> {
        let g = self.grants.get_mut(grant_id)?;
        if name.is_empty() || name.chars().count() > 1024 || g.name_taken(name, Some(folder_id)) {
            return None;
        }
        let f = g.folders.get_mut(folder_id)?;
        if f.system_folder {
            return None;
        }
        f.name = name.to_string();
        let v = to_value(&*f);
        let n = self.notification("folder.updated", SOURCE, now, grant_id, v.clone());
        out.push(n);
        Some(v)
    }

    /// Deletes a user label and notifies `folder.deleted` (ids only). As in Gmail the messages
    /// stay and lose the label: each of them first gets its `message.updated`. False when
    /// unknown or a system folder.
    pub(crate) fn delete_folder(
        &mut self,
        grant_id: &str,
        folder_id: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> bool {
        let Some(g) = self.grants.get_mut(grant_id) else {
            return false;
        };
        if g.folders.get(folder_id).is_none_or(|f| f.system_folder) {
            return false;
        }
        g.folders.remove(folder_id);
        g.deleted_folder_ids.insert(folder_id.to_string());
        let labelled: Vec<(String, Vec<String>)> = g
            .messages
            .values()
            .filter(|m| m.folders.iter().any(|f| f == folder_id))
            .map(|m| {
                let rest = m.folders.iter().filter(|f| *f != folder_id).cloned();
                (m.id.clone(), rest.collect())
            })
            .collect();
        for (id, folders) in labelled {
            let change = MessageChange {
                folders: Some(folders),
                ..MessageChange::default()
            };
            self.update_message(grant_id, &id, change, now, out);
        }
        let object = json!({"id": folder_id, "grant_id": grant_id, "object": "folder"});
        let n = self.notification("folder.deleted", SOURCE, now, grant_id, object);
        out.push(n);
        true
    }

    /// One seeded folder change, drawn from the grant's folder generator (not the one of the
    /// other changes, so their sequence is the same with or without folder changes): create a
    /// user label, rename one, or delete one (never a protected one).
    pub(crate) fn random_folder_change(
        &mut self,
        grant_id: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) {
        let Some(g) = self.grants.get_mut(grant_id) else {
            return;
        };
        let user = g.user_folder_ids();
        let deletable: Vec<String> = user
            .iter()
            .filter(|id| !PROTECTED.contains(&id.as_str()))
            .cloned()
            .collect();
        let roll = g.folder_rng.below(3);
        let name = format!(
            "{} {}",
            g.folder_rng.pick(LABEL_WORDS),
            g.folder_rng.below(1000)
        );
        match roll {
            1 if !user.is_empty() => {
                let id = g.folder_rng.pick(&user).clone();
                if !g.name_taken(&name, Some(&id)) {
                    self.update_folder(grant_id, &id, &name, now, out);
                    return;
                }
            }
            2 if !deletable.is_empty() => {
                let id = g.folder_rng.pick(&deletable).clone();
                self.delete_folder(grant_id, &id, now, out);
                return;
            }
            _ => {}
        }
        if user.len() >= MAX_USER_FOLDERS && !deletable.is_empty() {
            let id = deletable[0].clone();
            self.delete_folder(grant_id, &id, now, out);
            return;
        }
        let name = match self.grants.get(grant_id) {
            Some(g) if g.name_taken(&name, None) => format!("{name} ({})", g.next_label + 1),
            _ => name,
        };
        self.create_folder(grant_id, &name, now, out);
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Model, ModelSettings, Notification};

    fn model(folder_changes: f64) -> Model {
        Model::new(ModelSettings {
            seed: 42,
            truncation_threshold_bytes: crate::DEFAULT_TRUNCATION_THRESHOLD_BYTES,
            events_per_minute: 0.0,
            initial_messages: 10,
            initial_events: 2,
            recurring_series: 0,
            folder_changes,
            mix: None,
        })
    }

    fn run(m: &mut Model, changes: usize) -> Vec<Notification> {
        let mut out = Vec::new();
        let g = m.add_grant(1_750_000_000, &mut out);
        out.clear();
        for i in 0..changes {
            m.random_change(&g, 1_750_000_000 + i as i64, &mut out);
        }
        out
    }

    fn kinds_and_objects(ns: &[Notification], folders: bool) -> Vec<(String, String)> {
        ns.iter()
            .filter(|n| n.kind.starts_with("folder.") == folders)
            .map(|n| (n.kind.clone(), n.object.to_string()))
            .collect()
    }

    #[test]
    fn the_folder_activity_is_deterministic_per_seed() {
        let a = run(&mut model(0.3), 400);
        let b = run(&mut model(0.3), 400);
        assert_eq!(kinds_and_objects(&a, true), kinds_and_objects(&b, true));
        assert_eq!(kinds_and_objects(&a, false), kinds_and_objects(&b, false));
        let kinds: std::collections::BTreeSet<&str> = a
            .iter()
            .filter(|n| n.kind.starts_with("folder."))
            .map(|n| n.kind.as_str())
            .collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            ["folder.created", "folder.deleted", "folder.updated"]
        );
    }

    #[test]
    fn folder_changes_leave_the_other_changes_sequence_as_it_was() {
        let mut plain = model(0.0);
        let without = run(&mut plain, 300);
        let mut with_folders = model(0.2);
        // As many non-folder changes as the plain run made.
        let mut out = Vec::new();
        let g = with_folders.add_grant(1_750_000_000, &mut out);
        out.clear();
        let mut i = 0;
        while out
            .iter()
            .filter(|n| !n.kind.starts_with("folder."))
            .count()
            < without.len()
        {
            with_folders.random_change(&g, 1_750_000_000 + i, &mut out);
            i += 1;
        }
        assert!(out.iter().any(|n| n.kind.starts_with("folder.")));
        let strip = |ns: &[Notification]| -> Vec<String> {
            ns.iter()
                .filter(|n| !n.kind.starts_with("folder."))
                .map(|n| n.kind.clone())
                .collect()
        };
        assert_eq!(strip(&without), strip(&out));
    }
}
