//! The emulated provider state: grants, their mailboxes and calendars, and the mutations that
//! change them. Every mutation returns the notifications Nylas would send for it; routing them
//! (silent mode, expired grants, delivery) is the caller's business.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::folders::Folder;
use crate::rng::Rng;

/// Nylas sends `message.*.truncated` (without `body`) above this serialized object size.
pub const DEFAULT_TRUNCATION_THRESHOLD_BYTES: usize = 1_000_000;

/// Re-authentication within this span after expiry replays the notifications of the gap.
pub(crate) const REPLAY_WINDOW_SECS: i64 = 72 * 3600;

const FOLDERS: &[&str] = &["INBOX", "INBOX", "INBOX", "IMPORTANT", "CATEGORY_UPDATES"];
/// The stream (or-ed with the grant's sequence number) of each grant's folder generator.
const FOLDER_STREAM: u64 = 0xF01D_0000_0000_0000;
const MOVE_TARGETS: &[&str] = &["ARCHIVE", "TRASH", "INBOX", "IMPORTANT"];
const WORDS: &[&str] = &[
    "quarterly",
    "report",
    "meeting",
    "invoice",
    "lunch",
    "roadmap",
    "review",
    "launch",
    "draft",
    "budget",
    "follow-up",
    "schedule",
    "design",
    "contract",
    "update",
    "notes",
    "travel",
    "offer",
];
const NAMES: &[&str] = &[
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Ken Thompson",
    "Margaret Hamilton",
    "Donald Knuth",
];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub email: String,
}

impl Participant {
    pub fn new(name: &str, email: &str) -> Self {
        Participant {
            name: Some(name.to_string()),
            email: email.to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: String,
    pub grant_id: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub is_inline: bool,
}

/// A Nylas message object. There is no `updated_at`, as in Nylas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub grant_id: String,
    pub object: String,
    pub thread_id: String,
    pub subject: String,
    pub from: Vec<Participant>,
    pub to: Vec<Participant>,
    pub cc: Vec<Participant>,
    pub bcc: Vec<Participant>,
    pub reply_to: Vec<Participant>,
    pub date: i64,
    pub body: String,
    pub snippet: String,
    pub folders: Vec<String>,
    pub unread: bool,
    pub starred: bool,
    pub attachments: Vec<Attachment>,
    pub metadata: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calendar {
    pub id: String,
    pub grant_id: String,
    pub object: String,
    pub name: String,
    /// Omitted when the calendar has none: the spec types it as a string, never `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub is_primary: bool,
    pub read_only: bool,
    pub is_owned_by_user: bool,
    pub timezone: String,
    pub hex_color: String,
    pub metadata: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct When {
    pub object: String,
    pub start_time: i64,
    pub end_time: i64,
    pub start_timezone: String,
    pub end_timezone: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventParticipant {
    pub name: Option<String>,
    pub email: String,
    pub status: String,
}

/// A Nylas event object. Cancelled events stay, with `status: "cancelled"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub grant_id: String,
    pub calendar_id: String,
    pub object: String,
    pub title: String,
    pub description: Option<String>,
    pub when: When,
    pub status: String,
    pub busy: bool,
    pub participants: Vec<EventParticipant>,
    pub organizer: Participant,
    pub location: Option<String>,
    /// Set on exceptions (and expanded occurrences) of a recurring series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_event_id: Option<String>,
    /// `RRULE`/`EXDATE` strings; only on a recurring master, as in Nylas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<Vec<String>>,
    /// The occurrence's start in the series, on exceptions and expanded occurrences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_start_time: Option<i64>,
    pub ical_uid: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub read_only: bool,
    pub visibility: String,
    pub html_link: String,
    pub metadata: Map<String, Value>,
}

/// What a new message looks like; every field left `None` is generated from the seed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MessageSpec {
    pub subject: Option<String>,
    /// The exact body. Wins over `body_size`.
    pub body: Option<String>,
    /// Generate a body of exactly this many bytes (e.g. above 1 MB to get a truncated notification).
    pub body_size: Option<usize>,
    /// Folder ids; default `["INBOX"]` (or a seeded choice).
    pub folders: Option<Vec<String>>,
    pub from: Option<Participant>,
    pub to: Option<Vec<Participant>>,
    pub unread: Option<bool>,
    pub starred: Option<bool>,
    /// Received time (emulated Unix s); default: now.
    pub date: Option<i64>,
    pub thread_id: Option<String>,
    /// Number of attachments (metadata only).
    pub attachments: usize,
    pub metadata: Option<Map<String, Value>>,
}

/// A change to a message's flags or folders; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MessageChange {
    pub unread: Option<bool>,
    pub starred: Option<bool>,
    pub folders: Option<Vec<String>>,
}

/// A change to an event. All `None` (the default) still counts as an update: the title gets a
/// revision suffix and `updated_at` moves.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EventChange {
    pub title: Option<String>,
    pub description: Option<String>,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    /// `confirmed`, `tentative` or `cancelled`.
    pub status: Option<String>,
}

/// The state of every grant, for comparing a store against.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    /// Emulated Unix seconds when the snapshot was taken.
    pub now: i64,
    pub grants: Vec<GrantTruth>,
    pub deleted_grant_ids: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GrantTruth {
    pub grant_id: String,
    /// `valid` or `invalid` (expired), as in `GET /v3/grants`.
    pub grant_status: String,
    pub grant: Value,
    /// Current messages, newest first, exactly as the API returns them.
    pub messages: Vec<Value>,
    /// Current events of every calendar, cancelled ones included.
    pub events: Vec<Value>,
    pub calendars: Vec<Value>,
    pub deleted_message_ids: Vec<String>,
    pub deleted_events: Vec<DeletedEvent>,
    pub deleted_calendar_ids: Vec<String>,
    /// Current folders (labels), ordered by id as `GET /v3/grants/{id}/folders` lists them.
    #[serde(default)]
    pub folders: Vec<Value>,
    #[serde(default)]
    pub deleted_folder_ids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedEvent {
    pub id: String,
    pub calendar_id: String,
}

/// One webhook notification, before it is wrapped for a destination.
#[derive(Clone, Debug)]
pub(crate) struct Notification {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) source: &'static str,
    pub(crate) time: i64,
    pub(crate) grant_id: String,
    pub(crate) object: Value,
    /// The grant goes in `data.grant_id` (tracking and deliverability triggers), not only in
    /// `data.object`.
    pub(crate) grant_in_data: bool,
}

/// Suffixes Nylas sends to subscribers of the base trigger without their subscribing to them.
/// (`.cleaned` and `.legacy` are triggers of their own: only their subscribers get them.)
const UNSUBSCRIBED_SUFFIXES: &[&str] = &[".truncated", ".metadata", ".transformed"];

impl Notification {
    /// Whether a destination subscribed to `trigger` gets this notification: the exact type, or
    /// a variant of it Nylas sends unasked (`message.created` gets `message.created.truncated`,
    /// `.metadata`, `.transformed`, but not `.cleaned`). `*` (an emulator convenience) gets all.
    pub(crate) fn matches_trigger(&self, trigger: &str) -> bool {
        trigger == "*"
            || self.kind == trigger
            || self
                .kind
                .strip_prefix(trigger)
                .is_some_and(|rest| UNSUBSCRIBED_SUFFIXES.contains(&rest))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GrantStatus {
    Valid,
    Expired,
}

pub(crate) struct Grant {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) email: String,
    pub(crate) provider: String,
    pub(crate) integration_id: String,
    pub(crate) status: GrantStatus,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) expired_at: Option<i64>,
    pub(crate) rng: Rng,
    /// Activity rate (changes per emulated minute) and when the next change is due.
    pub(crate) events_per_minute: f64,
    pub(crate) next_activity_at: f64,
    pub(crate) messages: BTreeMap<String, Message>,
    /// Listing order: newest first, ties by id descending. Sort keys never change, so a page
    /// token holding the last key returned stays valid while messages come and go.
    pub(crate) message_order: BTreeSet<(Reverse<i64>, Reverse<String>)>,
    pub(crate) calendars: BTreeMap<String, Calendar>,
    pub(crate) events: BTreeMap<String, Event>,
    pub(crate) deleted_message_ids: BTreeSet<String>,
    pub(crate) deleted_events: BTreeMap<String, String>,
    pub(crate) deleted_calendar_ids: BTreeSet<String>,
    /// Deleted occurrences of recurring masters (original starts), so they stay gone.
    pub(crate) deleted_occurrences: BTreeMap<String, BTreeSet<i64>>,
    pub(crate) folders: BTreeMap<String, Folder>,
    pub(crate) deleted_folder_ids: BTreeSet<String>,
    /// The `n` of the last `Label_<n>` given out; ids are never reused.
    pub(crate) next_label: u64,
    /// Draws the folder activity, apart from `rng` so the other changes keep their sequence.
    pub(crate) folder_rng: Rng,
    /// Notifications produced while expired, replayed on re-authentication within 72 h.
    pub(crate) held: Vec<Notification>,
    revision: u64,
}

impl Grant {
    pub(crate) fn api_object(&self) -> Value {
        json!({
            "id": self.id,
            "grant_status": self.status_str(),
            "provider": self.provider,
            "email": self.email,
            "scope": ["https://www.googleapis.com/auth/gmail.readonly", "https://www.googleapis.com/auth/calendar"],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "provider_user_id": format!("{}", self.seq),
            "settings": {},
        })
    }

    pub(crate) fn status_str(&self) -> &'static str {
        match self.status {
            GrantStatus::Valid => "valid",
            GrantStatus::Expired => "invalid",
        }
    }

    fn insert_message(&mut self, m: Message) {
        self.message_order
            .insert((Reverse(m.date), Reverse(m.id.clone())));
        self.messages.insert(m.id.clone(), m);
    }

    fn remove_message(&mut self, id: &str) -> Option<Message> {
        let m = self.messages.remove(id)?;
        self.message_order
            .remove(&(Reverse(m.date), Reverse(m.id.clone())));
        self.deleted_message_ids.insert(m.id.clone());
        Some(m)
    }

    pub(crate) fn primary_calendar_id(&self) -> Option<String> {
        self.calendars
            .values()
            .find(|c| c.is_primary)
            .or_else(|| self.calendars.values().next())
            .map(|c| c.id.clone())
    }

    fn truth(&self) -> GrantTruth {
        GrantTruth {
            grant_id: self.id.clone(),
            grant_status: self.status_str().to_string(),
            grant: self.api_object(),
            messages: self
                .message_order
                .iter()
                .filter_map(|(_, Reverse(id))| self.messages.get(id))
                .map(to_value)
                .collect(),
            events: self.events.values().map(to_value).collect(),
            calendars: self.calendars.values().map(to_value).collect(),
            deleted_message_ids: self.deleted_message_ids.iter().cloned().collect(),
            deleted_events: self
                .deleted_events
                .iter()
                .map(|(id, cal)| DeletedEvent {
                    id: id.clone(),
                    calendar_id: cal.clone(),
                })
                .collect(),
            deleted_calendar_ids: self.deleted_calendar_ids.iter().cloned().collect(),
            folders: self.folders.values().map(to_value).collect(),
            deleted_folder_ids: self.deleted_folder_ids.iter().cloned().collect(),
        }
    }
}

pub(crate) fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Settings the model needs from the emulator's configuration.
#[derive(Clone, Debug)]
pub(crate) struct ModelSettings {
    pub(crate) seed: u64,
    pub(crate) truncation_threshold_bytes: usize,
    pub(crate) events_per_minute: f64,
    pub(crate) initial_messages: usize,
    pub(crate) initial_events: usize,
    pub(crate) recurring_series: usize,
    /// Share of activity changes that are folder changes, in `[0, 1]`.
    pub(crate) folder_changes: f64,
    /// The kinds of change and their shares; `None`: the default mix.
    pub(crate) mix: Option<crate::mix::ActivityMix>,
}

pub(crate) struct Model {
    pub(crate) settings: ModelSettings,
    pub(crate) grants: BTreeMap<String, Grant>,
    pub(crate) deleted_grant_ids: BTreeSet<String>,
    rng: Rng,
    next_grant_seq: u64,
}

/// The outcome of a re-authentication, for the counters.
#[derive(Default)]
pub(crate) struct Reauth {
    pub(crate) replayed: u64,
    pub(crate) discarded: u64,
}

impl Model {
    pub(crate) fn new(settings: ModelSettings) -> Self {
        Model {
            rng: Rng::derive(settings.seed, u64::MAX),
            settings,
            grants: BTreeMap::new(),
            deleted_grant_ids: BTreeSet::new(),
            next_grant_seq: 0,
        }
    }

    pub(crate) fn grant_ids(&self) -> Vec<String> {
        let mut gs: Vec<&Grant> = self.grants.values().collect();
        gs.sort_by_key(|g| g.seq);
        gs.into_iter().map(|g| g.id.clone()).collect()
    }

    pub(crate) fn truth(&self, now: i64) -> Truth {
        let mut gs: Vec<&Grant> = self.grants.values().collect();
        gs.sort_by_key(|g| g.seq);
        Truth {
            now,
            grants: gs.into_iter().map(Grant::truth).collect(),
            deleted_grant_ids: self.deleted_grant_ids.iter().cloned().collect(),
        }
    }

    pub(crate) fn notification(
        &mut self,
        kind: &str,
        source: &'static str,
        time: i64,
        grant_id: &str,
        object: Value,
    ) -> Notification {
        Notification {
            id: self.rng.uuid(),
            kind: kind.to_string(),
            source,
            time,
            grant_id: grant_id.to_string(),
            object,
            grant_in_data: false,
        }
    }

    fn message_notification(&mut self, base: &str, m: &Message, time: i64) -> Notification {
        let mut object = to_value(m);
        let size = serde_json::to_vec(&object).map(|v| v.len()).unwrap_or(0);
        let kind = if size > self.settings.truncation_threshold_bytes {
            if let Value::Object(map) = &mut object {
                map.remove("body");
            }
            format!("{base}.truncated")
        } else {
            base.to_string()
        };
        let grant_id = m.grant_id.clone();
        self.notification(&kind, "/google/emails/realtime", time, &grant_id, object)
    }

    fn grant_notification(&mut self, kind: &str, grant_id: &str, time: i64) -> Notification {
        let Some(g) = self.grants.get(grant_id) else {
            return self.notification(kind, "/nylas/system", time, grant_id, json!({}));
        };
        let mut object = json!({
            "grant_id": g.id,
            "integration_id": g.integration_id,
            "provider": g.provider,
            "email": g.email,
        });
        let extra = match kind {
            "grant.created" => json!({"code": 25012, "login_id": format!("login-{}", g.seq)}),
            // A re-authentication; an ordinary update (25014) is made by `update_grant`.
            "grant.updated" => json!({"code": 25027, "reauthentication_flag": true}),
            "grant.expired" => json!({"code": 25009, "grant_updated_at": g.updated_at}),
            _ => json!({"code": 25013}),
        };
        if let (Value::Object(o), Value::Object(e)) = (&mut object, extra) {
            o.extend(e);
        }
        self.notification(kind, "/nylas/system", time, grant_id, object)
    }

    /// Adds a grant with a primary calendar and a few messages and events. Seeded: the n-th grant
    /// of a given seed always has the same id and content.
    pub(crate) fn add_grant(&mut self, now: i64, out: &mut Vec<Notification>) -> String {
        self.add_grant_with("google", now, out)
    }

    /// `add_grant` for a grant of another provider (`icloud` gets iCloud's limits).
    pub(crate) fn add_grant_with(
        &mut self,
        provider: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> String {
        let seq = self.next_grant_seq;
        self.next_grant_seq += 1;
        let mut rng = Rng::derive(self.settings.seed, seq);
        let id = rng.uuid();
        let email = format!("user{}@example.com", seq + 1);
        let epm = self.settings.events_per_minute;
        let next_activity_at = if epm > 0.0 {
            now as f64 + rng.exp(60.0 / epm)
        } else {
            f64::INFINITY
        };
        let integration_id = rng.uuid();
        let mut grant = Grant {
            id: id.clone(),
            seq,
            email: email.clone(),
            provider: provider.into(),
            integration_id,
            status: GrantStatus::Valid,
            created_at: now,
            updated_at: now,
            expired_at: None,
            rng,
            events_per_minute: epm,
            next_activity_at,
            messages: BTreeMap::new(),
            message_order: BTreeSet::new(),
            calendars: BTreeMap::new(),
            events: BTreeMap::new(),
            deleted_message_ids: BTreeSet::new(),
            deleted_events: BTreeMap::new(),
            deleted_calendar_ids: BTreeSet::new(),
            deleted_occurrences: BTreeMap::new(),
            folders: BTreeMap::new(),
            deleted_folder_ids: BTreeSet::new(),
            next_label: 0,
            folder_rng: Rng::derive(self.settings.seed, FOLDER_STREAM | seq),
            held: Vec::new(),
            revision: 0,
        };
        grant.calendars.insert(
            email.clone(),
            Calendar {
                id: email.clone(),
                grant_id: id.clone(),
                object: "calendar".into(),
                name: email.clone(),
                description: None,
                is_primary: true,
                read_only: false,
                is_owned_by_user: true,
                timezone: "UTC".into(),
                hex_color: "#039be5".into(),
                metadata: Map::new(),
            },
        );
        crate::folders::seed_folders(&mut grant);
        for i in 0..self.settings.initial_messages {
            // Spread over the last few hours so `received_after` windows have something to cut.
            let date = now - 600 * (self.settings.initial_messages - i) as i64;
            let m = generate_message(
                &mut grant,
                MessageSpec {
                    date: Some(date),
                    ..MessageSpec::default()
                },
                now,
            );
            grant.insert_message(m);
        }
        crate::calendar::seed_events(
            &mut grant,
            &email,
            self.settings.initial_events,
            self.settings.recurring_series,
            now,
        );
        self.grants.insert(id.clone(), grant);
        let n = self.grant_notification("grant.created", &id, now);
        out.push(n);
        id
    }

    pub(crate) fn expire_grant(&mut self, grant_id: &str, now: i64, out: &mut Vec<Notification>) {
        let Some(g) = self.grants.get_mut(grant_id) else {
            return;
        };
        if g.status == GrantStatus::Expired {
            return;
        }
        g.status = GrantStatus::Expired;
        g.expired_at = Some(now);
        let n = self.grant_notification("grant.expired", grant_id, now);
        out.push(n);
    }

    pub(crate) fn reauthenticate_grant(
        &mut self,
        grant_id: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> Reauth {
        let mut result = Reauth::default();
        let Some(g) = self.grants.get_mut(grant_id) else {
            return result;
        };
        let expired_at = g.expired_at.take();
        g.status = GrantStatus::Valid;
        g.updated_at = now;
        let held = std::mem::take(&mut g.held);
        let n = self.grant_notification("grant.updated", grant_id, now);
        out.push(n);
        match expired_at {
            Some(t) if now - t <= REPLAY_WINDOW_SECS => {
                result.replayed = held.len() as u64;
                out.extend(held);
            }
            _ => result.discarded = held.len() as u64,
        }
        result
    }

    /// An ordinary grant update (not a re-authentication): `grant.updated` with code 25014 and
    /// `reauthentication_flag: false`; the grant's status does not change. False when unknown.
    pub(crate) fn update_grant(
        &mut self,
        grant_id: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> bool {
        let Some(g) = self.grants.get_mut(grant_id) else {
            return false;
        };
        g.updated_at = now;
        let mut n = self.grant_notification("grant.updated", grant_id, now);
        if let Value::Object(o) = &mut n.object {
            o.insert("code".into(), json!(25014));
            o.insert("reauthentication_flag".into(), json!(false));
        }
        out.push(n);
        true
    }

    /// Removes a grant and everything in it; returns how many held notifications died with it.
    pub(crate) fn delete_grant(
        &mut self,
        grant_id: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> u64 {
        if !self.grants.contains_key(grant_id) {
            return 0;
        }
        let n = self.grant_notification("grant.deleted", grant_id, now);
        out.push(n);
        let held = self
            .grants
            .remove(grant_id)
            .map(|g| g.held.len())
            .unwrap_or(0);
        self.deleted_grant_ids.insert(grant_id.to_string());
        held as u64
    }

    pub(crate) fn create_message(
        &mut self,
        grant_id: &str,
        spec: MessageSpec,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> Option<Value> {
        let g = self.grants.get_mut(grant_id)?;
        let m = generate_message(g, spec, now);
        g.insert_message(m.clone());
        let n = self.message_notification("message.created", &m, now);
        out.push(n);
        Some(to_value(&m))
    }

    pub(crate) fn update_message(
        &mut self,
        grant_id: &str,
        message_id: &str,
        change: MessageChange,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> Option<Value> {
        let m = self
            .grants
            .get_mut(grant_id)?
            .messages
            .get_mut(message_id)?;
        if let Some(u) = change.unread {
            m.unread = u;
        }
        if let Some(s) = change.starred {
            m.starred = s;
        }
        if let Some(f) = change.folders {
            m.folders = f;
        }
        let m = m.clone();
        let n = self.message_notification("message.updated", &m, now);
        out.push(n);
        Some(to_value(&m))
    }

    pub(crate) fn delete_message(
        &mut self,
        grant_id: &str,
        message_id: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> bool {
        let Some(g) = self.grants.get_mut(grant_id) else {
            return false;
        };
        if g.remove_message(message_id).is_none() {
            return false;
        }
        let object = json!({"id": message_id, "grant_id": grant_id, "object": "message"});
        let n = self.notification(
            "message.deleted",
            "/google/emails/realtime",
            now,
            grant_id,
            object,
        );
        out.push(n);
        true
    }

    pub(crate) fn create_calendar(
        &mut self,
        grant_id: &str,
        name: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> Option<Value> {
        let g = self.grants.get_mut(grant_id)?;
        let id = format!("{}@group.calendar.google.com", g.rng.alnum(26));
        let c = Calendar {
            id: id.clone(),
            grant_id: grant_id.to_string(),
            object: "calendar".into(),
            name: name.to_string(),
            description: None,
            is_primary: false,
            read_only: false,
            is_owned_by_user: true,
            timezone: "UTC".into(),
            hex_color: "#7986cb".into(),
            metadata: Map::new(),
        };
        g.calendars.insert(id, c.clone());
        let v = to_value(&c);
        let n = self.notification(
            "calendar.created",
            "/google/calendar/realtime",
            now,
            grant_id,
            v.clone(),
        );
        out.push(n);
        Some(v)
    }

    pub(crate) fn create_event(
        &mut self,
        grant_id: &str,
        calendar_id: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> Option<Value> {
        let g = self.grants.get_mut(grant_id)?;
        if !g.calendars.contains_key(calendar_id) {
            return None;
        }
        let e = generate_event(g, calendar_id, now);
        g.events.insert(e.id.clone(), e.clone());
        let v = to_value(&e);
        let n = self.notification(
            "event.created",
            "/google/calendar/realtime",
            now,
            grant_id,
            v.clone(),
        );
        out.push(n);
        Some(v)
    }

    pub(crate) fn update_event(
        &mut self,
        grant_id: &str,
        event_id: &str,
        change: EventChange,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> Option<Value> {
        if let Some(answer) = self.update_recurring(grant_id, event_id, &change, now, out) {
            return answer;
        }
        let g = self.grants.get_mut(grant_id)?;
        g.revision += 1;
        let revision = g.revision;
        let e = g.events.get_mut(event_id)?;
        let untouched = change.title.is_none()
            && change.description.is_none()
            && change.start_time.is_none()
            && change.end_time.is_none()
            && change.status.is_none();
        if let Some(t) = change.title {
            e.title = t;
        } else if untouched {
            let base = e.title.split(" (rev ").next().unwrap_or("").to_string();
            e.title = format!("{base} (rev {revision})");
        }
        if let Some(d) = change.description {
            e.description = Some(d);
        }
        if let Some(s) = change.start_time {
            e.when.start_time = s;
        }
        if let Some(s) = change.end_time {
            e.when.end_time = s;
        }
        if e.when.end_time < e.when.start_time {
            e.when.end_time = e.when.start_time;
        }
        if let Some(s) = change.status {
            e.status = s;
        }
        e.updated_at = now;
        let v = to_value(&*e);
        let n = self.notification(
            "event.updated",
            "/google/calendar/realtime",
            now,
            grant_id,
            v.clone(),
        );
        out.push(n);
        Some(v)
    }

    pub(crate) fn delete_event(
        &mut self,
        grant_id: &str,
        event_id: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> bool {
        if let Some(deleted) = self.delete_recurring(grant_id, event_id, now, out) {
            return deleted;
        }
        let Some(g) = self.grants.get_mut(grant_id) else {
            return false;
        };
        let Some(e) = g.events.remove(event_id) else {
            return false;
        };
        g.deleted_events.insert(e.id.clone(), e.calendar_id.clone());
        let object = json!({
            "id": e.id, "grant_id": grant_id, "object": "event", "calendar_id": e.calendar_id,
        });
        let n = self.notification(
            "event.deleted",
            "/google/calendar/realtime",
            now,
            grant_id,
            object,
        );
        out.push(n);
        true
    }

    /// One seeded random change to a grant's mailbox or calendar.
    pub(crate) fn random_change(&mut self, grant_id: &str, now: i64, out: &mut Vec<Notification>) {
        let Some(g) = self.grants.get_mut(grant_id) else {
            return;
        };
        let folder_changes = self.settings.folder_changes;
        if folder_changes > 0.0 && g.folder_rng.chance(folder_changes) {
            self.random_folder_change(grant_id, now, out);
            return;
        }
        if let Some(mix) = self.settings.mix.clone() {
            self.mixed_change(&mix, grant_id, now, out);
            return;
        }
        let roll = g.rng.below(100);
        let pick_message = |g: &mut Grant| -> Option<String> {
            let n = g.messages.len();
            if n == 0 {
                return None;
            }
            let i = g.rng.below(n);
            g.messages.keys().nth(i).cloned()
        };
        match roll {
            0..=34 => {}
            35..=54 => {
                if let Some(id) = pick_message(g) {
                    let unread = g.messages.get(&id).map(|m| !m.unread);
                    let change = MessageChange {
                        unread,
                        ..Default::default()
                    };
                    self.update_message(grant_id, &id, change, now, out);
                    return;
                }
            }
            55..=61 => {
                if let Some(id) = pick_message(g) {
                    let starred = g.messages.get(&id).map(|m| !m.starred);
                    let change = MessageChange {
                        starred,
                        ..Default::default()
                    };
                    self.update_message(grant_id, &id, change, now, out);
                    return;
                }
            }
            62..=70 => {
                if let Some(id) = pick_message(g) {
                    // Only to folders that exist (`ARCHIVE` can be deleted through the API).
                    let targets: Vec<&str> = MOVE_TARGETS
                        .iter()
                        .copied()
                        .filter(|t| g.folders.contains_key(*t))
                        .collect();
                    let folder = g.rng.pick(&targets).to_string();
                    let change = MessageChange {
                        folders: Some(vec![folder]),
                        ..Default::default()
                    };
                    self.update_message(grant_id, &id, change, now, out);
                    return;
                }
            }
            71..=77 => {
                if let Some(id) = pick_message(g) {
                    self.delete_message(grant_id, &id, now, out);
                    return;
                }
            }
            _ => {
                if self.random_event_change(grant_id, roll - 78, now, out) {
                    return;
                }
            }
        }
        // New mail is the fallback whenever the picked change had nothing to act on.
        self.create_message(grant_id, MessageSpec::default(), now, out);
    }

    /// One change of the kind `mix` draws, on mail of its recent window.
    fn mixed_change(
        &mut self,
        mix: &crate::mix::ActivityMix,
        grant_id: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) {
        use crate::mix::Change;
        let Some(g) = self.grants.get_mut(grant_id) else {
            return;
        };
        let change = mix.pick(g.rng.below(mix.per_day().max(1) as usize) as u32);
        let recent_from = now - mix.recent_days * 86_400;
        let recent: Vec<&String> = g
            .messages
            .values()
            .filter(|m| m.date >= recent_from)
            .map(|m| &m.id)
            .collect();
        let pool: Vec<&String> = if recent.is_empty() {
            g.messages.keys().collect()
        } else {
            recent
        };
        let picked = (!pool.is_empty()).then(|| pool[g.rng.below(pool.len())].clone());
        match (change, picked) {
            (Change::Flag, Some(id)) => {
                let m = &g.messages[&id];
                let change = if g.rng.below(4) == 0 {
                    MessageChange {
                        starred: Some(!m.starred),
                        ..Default::default()
                    }
                } else {
                    MessageChange {
                        unread: Some(!m.unread),
                        ..Default::default()
                    }
                };
                self.update_message(grant_id, &id, change, now, out);
            }
            (Change::FolderMove, Some(id)) => {
                let targets: Vec<&str> = MOVE_TARGETS
                    .iter()
                    .copied()
                    .filter(|t| g.folders.contains_key(*t))
                    .collect();
                if targets.is_empty() {
                    return;
                }
                let folder = g.rng.pick(&targets).to_string();
                let change = MessageChange {
                    folders: Some(vec![folder]),
                    ..Default::default()
                };
                self.update_message(grant_id, &id, change, now, out);
            }
            (Change::Delete, Some(id)) => {
                self.delete_message(grant_id, &id, now, out);
            }
            (Change::Event, _) => {
                // Without a calendar (deleted by the API) there is nothing to change.
                let roll = g.rng.below(22);
                self.random_event_change(grant_id, roll, now, out);
            }
            _ => {
                let span = mix.body_bytes_max.saturating_sub(mix.body_bytes_min);
                let size = mix.body_bytes_min + g.rng.below(span + 1);
                let spec = MessageSpec {
                    body_size: Some(size),
                    ..MessageSpec::default()
                };
                self.create_message(grant_id, spec, now, out);
            }
        }
    }

    /// One seeded grant lifecycle change: a new grant, an expiry, a re-authentication or a delete.
    pub(crate) fn random_grant_change(&mut self, now: i64, out: &mut Vec<Notification>) -> Reauth {
        let roll = self.rng.below(100);
        let expired: Vec<String> = self
            .grants
            .values()
            .filter(|g| g.status == GrantStatus::Expired)
            .map(|g| g.id.clone())
            .collect();
        let valid: Vec<String> = self
            .grants
            .values()
            .filter(|g| g.status == GrantStatus::Valid)
            .map(|g| g.id.clone())
            .collect();
        if roll < 35 && !expired.is_empty() {
            let id = self.rng.pick(&expired).clone();
            return self.reauthenticate_grant(&id, now, out);
        }
        if roll < 70 && !valid.is_empty() {
            let id = self.rng.pick(&valid).clone();
            self.expire_grant(&id, now, out);
            return Reauth::default();
        }
        if roll < 80 && self.grants.len() > 1 {
            let ids: Vec<String> = self.grants.keys().cloned().collect();
            let id = self.rng.pick(&ids).clone();
            let discarded = self.delete_grant(&id, now, out);
            return Reauth {
                replayed: 0,
                discarded,
            };
        }
        self.add_grant(now, out);
        Reauth::default()
    }
}

fn sentence(rng: &mut Rng, words: usize) -> String {
    (0..words)
        .map(|_| *rng.pick(WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An HTML body of exactly `size` bytes (ASCII), starting with a seeded sentence.
fn generate_body(rng: &mut Rng, size: usize) -> String {
    let text = sentence(rng, 12);
    let mut body = format!("<div><p>{text}</p><p>");
    let filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ";
    while body.len() + filler.len() + 10 < size {
        body.push_str(filler);
    }
    body.push_str("</p></div>");
    if body.len() > size {
        body.truncate(size);
    }
    while body.len() < size {
        body.push(' ');
    }
    body
}

fn snippet_of(body: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                if !text.ends_with(' ') && !text.is_empty() {
                    text.push(' ');
                }
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
        if text.len() >= 100 {
            break;
        }
    }
    text.trim().chars().take(100).collect()
}

fn generate_message(g: &mut Grant, spec: MessageSpec, now: i64) -> Message {
    let rng = &mut g.rng;
    let id = rng.hex(16);
    let body = match (spec.body, spec.body_size) {
        (Some(b), _) => b,
        (None, Some(size)) => generate_body(rng, size),
        (None, None) => {
            let size = 400 + rng.below(3000);
            generate_body(rng, size)
        }
    };
    let sender = rng.pick(NAMES).to_string();
    let from = spec.from.unwrap_or_else(|| {
        let email = format!("{}@example.org", sender.to_lowercase().replace(' ', "."));
        Participant::new(&sender, &email)
    });
    let subject = spec.subject.unwrap_or_else(|| {
        let s = sentence(rng, 4);
        let mut c = s.chars();
        match c.next() {
            Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
            None => s,
        }
    });
    let folders = spec
        .folders
        .unwrap_or_else(|| vec![rng.pick(FOLDERS).to_string()]);
    let attachments = (0..spec.attachments)
        .map(|i| Attachment {
            id: format!("{}-att{}", id, i),
            grant_id: g.id.clone(),
            filename: format!("file{i}.pdf"),
            content_type: "application/pdf".into(),
            size: 10_000 + rng.below(90_000) as u64,
            is_inline: false,
        })
        .collect();
    let thread_id = spec.thread_id.unwrap_or_else(|| rng.hex(16));
    Message {
        snippet: snippet_of(&body),
        id,
        grant_id: g.id.clone(),
        object: "message".into(),
        thread_id,
        subject,
        from: vec![from.clone()],
        to: spec
            .to
            .unwrap_or_else(|| vec![Participant::new("Me", &g.email)]),
        cc: vec![],
        bcc: vec![],
        reply_to: vec![from],
        date: spec.date.unwrap_or(now),
        body,
        folders,
        unread: spec.unread.unwrap_or(true),
        starred: spec.starred.unwrap_or(false),
        attachments,
        metadata: spec.metadata.unwrap_or_default(),
    }
}

pub(crate) fn generate_event(g: &mut Grant, calendar_id: &str, now: i64) -> Event {
    let rng = &mut g.rng;
    let id = rng.alnum(26);
    // Somewhere in the next two weeks, on the hour, 30 to 120 minutes long.
    let start = (now / 3600 + 1 + rng.below(14 * 24) as i64) * 3600;
    let end = start + 1800 * (1 + rng.below(4) as i64);
    let title = {
        let s = sentence(rng, 3);
        let mut c = s.chars();
        match c.next() {
            Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
            None => s,
        }
    };
    let guest = rng.pick(NAMES).to_string();
    let guest_email = format!("{}@example.org", guest.to_lowercase().replace(' ', "."));
    Event {
        html_link: format!("https://calendar.google.com/event?eid={id}"),
        ical_uid: format!("{id}@google.com"),
        id,
        grant_id: g.id.clone(),
        calendar_id: calendar_id.to_string(),
        object: "event".into(),
        title,
        description: None,
        when: When {
            object: "timespan".into(),
            start_time: start,
            end_time: end,
            start_timezone: "UTC".into(),
            end_timezone: "UTC".into(),
        },
        status: "confirmed".into(),
        busy: true,
        participants: vec![EventParticipant {
            name: Some(guest),
            email: guest_email,
            status: "noreply".into(),
        }],
        organizer: Participant::new("Me", &g.email),
        location: None,
        master_event_id: None,
        recurrence: None,
        original_start_time: None,
        created_at: now,
        updated_at: now,
        read_only: false,
        visibility: "default".into(),
        metadata: Map::new(),
    }
}
