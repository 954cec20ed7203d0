//! What one queued notification asks of the consumer, decided from its text alone.
//!
//! [`decide`] reads a notification (as the ingest queued it, or as a stand-in built from a
//! record's attributes when its claim-checked payload is gone) and says what it changes: an
//! object state to write, a tombstone, a fetch of the current object, a grant's lifecycle, or
//! nothing. It performs no I/O. The one question it cannot answer alone, which calendar holds an
//! `event.*` whose `calendar_id` is null, it hands back as [`Decision::NeedsCalendar`]; the shell
//! asks the store and [`place_event`] finishes the decision.

use serde::Deserialize;
use serde_json::Value;

use crate::notification::ObjectKind;
use crate::store::{ObjectRef, Version};
use crate::versions;

/// Whether full-object notifications are trusted or re-fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchPolicy {
    /// Fetch only when the notification lacks the current object (the default).
    WhenNeeded,
    /// Fetch on every create/update, as the cookbook's handler does (for comparison).
    Always,
}

/// What one object notification asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    Write(Value),
    Tombstone,
    Fetch,
}

/// One object's change, as a notification states it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Intent {
    /// The queue record it came from.
    pub message_id: String,
    pub notification_id: String,
    pub grant_id: String,
    pub object_ref: ObjectRef,
    /// The notification's `time` (seconds).
    pub time: i64,
    pub version: Version,
    pub action: Action,
    /// Nylas delivered it more than once (`webhook_delivery_attempt` > 1): its earlier attempts
    /// failed, so other notifications of the grant may have failed for good.
    pub redelivered: bool,
}

impl Intent {
    /// Two intents with the same hash and version state the same thing.
    pub fn hash(&self) -> String {
        match &self.action {
            Action::Write(v) => crate::store::content_hash(Some(v)),
            Action::Tombstone => "tombstone".into(),
            Action::Fetch => format!("fetch:{}", self.notification_id),
        }
    }
}

/// What a notification asks of the consumer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Write, tombstone or fetch one object.
    Object(Intent),
    /// An `event.*` whose `calendar_id` is null ("in rare edge cases", says the spec): the
    /// intent's calendar is empty until [`place_event`] is given the calendars the store
    /// holds the event in.
    NeedsCalendar { intent: Intent, deleted: bool },
    /// A `grant.*` notification, applied to the grants table.
    Grant {
        trigger: String,
        grant_id: String,
        time: i64,
        object: Value,
    },
    /// Acknowledged without effect: a trigger this consumer does not sync (tracking,
    /// deliverability, unknown types and suffixes), or the delete of an object never stored.
    Ignore { trigger: String },
    /// Nothing here can tell whose object it is (no `grant_id`, an unplaceable event): parked
    /// visibly, left to the grant's next reconciliation.
    Unresolved(String),
    /// Malformed beyond use (not a notification, an object notification without an id).
    Invalid(String),
}

#[derive(Deserialize)]
struct Notification {
    id: String,
    #[serde(rename = "type")]
    trigger: String,
    time: i64,
    #[serde(default)]
    data: Option<NotificationData>,
    #[serde(default)]
    webhook_delivery_attempt: Option<u64>,
}

#[derive(Deserialize)]
struct NotificationData {
    #[serde(default)]
    object: Option<Value>,
    #[serde(default)]
    grant_id: Option<String>,
}

/// Decides what the notification `text`, queued as record `message_id`, asks for.
pub(crate) fn decide(text: &str, message_id: &str, policy: FetchPolicy) -> Decision {
    let n: Notification = match serde_json::from_str(text) {
        Ok(n) => n,
        Err(e) => {
            return Decision::Invalid(format!(
                "not a notification: {}",
                crate::json_error_summary(&e)
            ))
        }
    };
    let (object, data_grant) = match n.data {
        Some(d) => (d.object.unwrap_or(Value::Null), d.grant_id),
        None => (Value::Null, None),
    };
    let grant_id = object
        .get("grant_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(data_grant)
        .unwrap_or_default();
    let kind = ObjectKind::of(&n.trigger);
    let mut parts = n.trigger.split('.');
    let (_, verb, suffix) = (parts.next(), parts.next().unwrap_or_default(), parts.next());
    let ignore = |trigger: String| Decision::Ignore { trigger };
    // Tracking, deliverability and send triggers (`message.opened`, `message.link_clicked`,
    // `message.bounce_detected`, `message.send_success`...) name a message by `message_id`
    // and change nothing the store mirrors.
    if kind.names_an_object() && !matches!(verb, "created" | "updated" | "deleted") {
        return ignore(n.trigger);
    }
    let id = object
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if kind != ObjectKind::Other && grant_id.is_empty() {
        // The spec does not promise `grant_id` in event.* and folder.deleted objects. The
        // store is keyed by grant, so nothing here can tell whose object it is.
        return Decision::Unresolved(format!("{} without grant_id", n.trigger));
    }
    if kind.names_an_object() && id.is_empty() {
        return Decision::Invalid(format!("{} without object id", n.trigger));
    }
    let object_ref = match kind {
        ObjectKind::Grant => {
            return Decision::Grant {
                trigger: n.trigger,
                grant_id,
                time: n.time,
                object,
            }
        }
        ObjectKind::Other => return ignore(n.trigger),
        ObjectKind::Message => ObjectRef::Message { id },
        ObjectKind::Calendar => ObjectRef::Calendar { id },
        ObjectKind::Folder => ObjectRef::Folder { id },
        ObjectKind::Event => ObjectRef::Event {
            calendar_id: object
                .get("calendar_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            id,
        },
    };
    let second = versions::webhook(n.time);
    let (action, version) = match (verb, suffix) {
        ("deleted", _) => (Action::Tombstone, versions::webhook_tombstone(n.time)),
        ("created" | "updated", None) => {
            let version = match kind {
                ObjectKind::Event => versions::webhook_event(
                    n.time,
                    object.get("updated_at").and_then(Value::as_i64),
                ),
                _ => second,
            };
            let fetchable = !matches!(kind, ObjectKind::Folder);
            if policy == FetchPolicy::Always && fetchable {
                (Action::Fetch, version)
            } else if kind == ObjectKind::Event
                && object.get("status").and_then(Value::as_str) == Some("cancelled")
            {
                (Action::Tombstone, version)
            } else {
                (Action::Write(object), version)
            }
        }
        // .truncated, .metadata, .transformed, .cleaned: the object is not the current one.
        ("created" | "updated", Some(_)) if kind != ObjectKind::Folder => (Action::Fetch, second),
        _ => return ignore(n.trigger),
    };
    let intent = Intent {
        message_id: message_id.to_string(),
        notification_id: n.id,
        grant_id,
        object_ref,
        time: n.time,
        version,
        action,
        redelivered: n.webhook_delivery_attempt.is_some_and(|a| a > 1),
    };
    match &intent.object_ref {
        ObjectRef::Event { calendar_id, .. } if calendar_id.is_empty() => Decision::NeedsCalendar {
            intent,
            deleted: verb == "deleted",
        },
        _ => Decision::Object(intent),
    }
}

/// Finishes a [`Decision::NeedsCalendar`] with the calendars the store holds the event in.
pub(crate) fn place_event(mut intent: Intent, deleted: bool, calendars: &[String]) -> Decision {
    let trigger = || {
        let verb = if deleted { "deleted" } else { "updated" };
        format!("event.{verb}")
    };
    match (calendars, &mut intent.object_ref) {
        ([one], ObjectRef::Event { calendar_id, .. }) => {
            calendar_id.clone_from(one);
            Decision::Object(intent)
        }
        // Never stored: nothing to hide.
        ([], _) if deleted => Decision::Ignore { trigger: trigger() },
        _ => Decision::Unresolved(format!(
            "{} with a null calendar_id the store cannot resolve",
            trigger()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const W: FetchPolicy = FetchPolicy::WhenNeeded;

    fn note(trigger: &str, object: Value) -> String {
        json!({"id": "n1", "type": trigger, "time": 1_700_000_000, "data": {"object": object}})
            .to_string()
    }

    fn object_of(d: Decision) -> Intent {
        match d {
            Decision::Object(i) => i,
            other => panic!("expected an object intent, got {other:?}"),
        }
    }

    #[test]
    fn a_full_object_is_written_at_its_notification_time() {
        let obj = json!({"id": "m1", "grant_id": "g1", "unread": true});
        let i = object_of(decide(&note("message.updated", obj.clone()), "r1", W));
        assert_eq!(i.action, Action::Write(obj));
        assert_eq!(i.version, 1_700_000_000_000);
        assert_eq!(i.object_ref, ObjectRef::Message { id: "m1".into() });
        assert_eq!((i.grant_id.as_str(), i.message_id.as_str()), ("g1", "r1"));
    }

    #[test]
    fn a_notification_delivered_again_is_evidence_of_loss() {
        let obj = json!({"id": "m1", "grant_id": "g1"});
        let first = object_of(decide(&note("message.updated", obj.clone()), "r", W));
        assert!(!first.redelivered);
        let again = json!({"id": "n1", "type": "message.updated", "time": 1,
                           "webhook_delivery_attempt": 2, "data": {"object": obj}})
        .to_string();
        assert!(object_of(decide(&again, "r", W)).redelivered);
    }

    #[test]
    fn a_delete_is_a_tombstone_at_the_end_of_its_second() {
        let i = object_of(decide(
            &note("message.deleted", json!({"id": "m1", "grant_id": "g1"})),
            "r",
            W,
        ));
        assert_eq!(i.action, Action::Tombstone);
        assert_eq!(i.version, 1_700_000_000_999);
    }

    #[test]
    fn incomplete_objects_are_fetched_and_folders_never_are() {
        for t in [
            "message.updated.truncated",
            "message.created.metadata",
            "message.created.transformed",
            "message.updated.cleaned",
        ] {
            let i = object_of(decide(
                &note(t, json!({"id": "m", "grant_id": "g"})),
                "r",
                W,
            ));
            assert_eq!(i.action, Action::Fetch, "{t}");
        }
        let always = FetchPolicy::Always;
        let folder = decide(
            &note(
                "folder.updated",
                json!({"id": "f", "grant_id": "g", "name": "X"}),
            ),
            "r",
            always,
        );
        assert!(matches!(object_of(folder).action, Action::Write(_)));
        let msg = decide(
            &note("message.created", json!({"id": "m", "grant_id": "g"})),
            "r",
            always,
        );
        assert_eq!(object_of(msg).action, Action::Fetch);
    }

    #[test]
    fn a_cancelled_event_is_a_tombstone_versioned_by_its_update() {
        let obj = json!({"id": "e", "grant_id": "g", "calendar_id": "c", "status": "cancelled",
                         "updated_at": 1_700_000_005});
        let i = object_of(decide(&note("event.updated", obj), "r", W));
        assert_eq!(i.action, Action::Tombstone);
        assert_eq!(i.version, 1_700_000_005_000);
    }

    #[test]
    fn tracking_and_unknown_triggers_are_ignored() {
        for t in [
            "message.opened",
            "message.link_clicked",
            "message.bounce_detected",
            "thread.replied",
            "contact.updated",
        ] {
            let d = decide(
                &note(t, json!({"message_id": "m", "grant_id": "g"})),
                "r",
                W,
            );
            assert!(matches!(d, Decision::Ignore { .. }), "{t}: {d:?}");
        }
        let d = decide(
            &note(
                "folder.created.whatever",
                json!({"id": "f", "grant_id": "g"}),
            ),
            "r",
            W,
        );
        assert!(matches!(d, Decision::Ignore { .. }), "{d:?}");
    }

    #[test]
    fn without_grant_or_id_nothing_is_written() {
        let d = decide(&note("event.updated", json!({"id": "e"})), "r", W);
        assert!(matches!(d, Decision::Unresolved(_)), "{d:?}");
        let d = decide(&note("message.created", json!({"grant_id": "g"})), "r", W);
        assert!(matches!(d, Decision::Invalid(_)), "{d:?}");
        let d = decide("{\"id\":1", "r", W);
        assert!(matches!(d, Decision::Invalid(_)), "{d:?}");
    }

    #[test]
    fn a_grant_id_outside_the_object_is_used() {
        let text = json!({"id": "n", "type": "folder.deleted", "time": 1,
                          "data": {"grant_id": "g2", "object": {"id": "f"}}})
        .to_string();
        assert_eq!(object_of(decide(&text, "r", W)).grant_id, "g2");
    }

    #[test]
    fn grant_notifications_go_to_the_grants_table() {
        let d = decide(
            &note("grant.expired", json!({"grant_id": "g", "code": 25009})),
            "r",
            W,
        );
        assert!(
            matches!(&d, Decision::Grant { trigger, grant_id, time, .. }
                if trigger == "grant.expired" && grant_id == "g" && *time == 1_700_000_000),
            "{d:?}"
        );
    }

    #[test]
    fn an_event_without_calendar_is_placed_by_what_the_store_holds() {
        let text = note(
            "event.deleted",
            json!({"id": "e", "grant_id": "g", "calendar_id": null}),
        );
        let Decision::NeedsCalendar { intent, deleted } = decide(&text, "r", W) else {
            panic!("expected NeedsCalendar");
        };
        assert!(deleted);
        let placed = object_of(place_event(intent.clone(), deleted, &["c1".into()]));
        assert_eq!(
            placed.object_ref,
            ObjectRef::Event {
                calendar_id: "c1".into(),
                id: "e".into()
            }
        );
        assert!(matches!(
            place_event(intent.clone(), true, &[]),
            Decision::Ignore { .. }
        ));
        assert!(matches!(
            place_event(intent.clone(), false, &[]),
            Decision::Unresolved(_)
        ));
        assert!(matches!(
            place_event(intent, true, &["c1".into(), "c2".into()]),
            Decision::Unresolved(_)
        ));
    }

    fn trigger() -> impl Strategy<Value = String> {
        let kinds = prop::sample::select(vec![
            "message", "event", "calendar", "folder", "grant", "thread", "contact", "",
        ]);
        let verbs = prop::sample::select(vec![
            "created", "updated", "deleted", "opened", "expired", "", "x",
        ]);
        let suffixes = prop::sample::select(vec![
            "",
            ".truncated",
            ".metadata",
            ".cleaned",
            ".legacy",
            ".a.b",
        ]);
        (kinds, verbs, suffixes).prop_map(|(k, v, s)| format!("{k}.{v}{s}"))
    }

    fn maybe(s: &'static str) -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            Just(json!(s)),
            Just(json!("")),
            Just(json!(7))
        ]
    }

    proptest! {
        /// No text makes the decision panic, and nothing without a grant and an id reaches the store.
        #[test]
        fn any_text_gets_a_decision(text in ".{0,200}") {
            let _ = decide(&text, "r", W);
        }

        #[test]
        fn only_identified_objects_are_written(
            trigger in trigger(),
            id in maybe("o1"),
            grant in maybe("g1"),
            calendar in maybe("c1"),
            status in maybe("cancelled"),
            time in any::<i64>(),
            always in any::<bool>(),
        ) {
            let text = json!({"id": "n", "type": trigger, "time": time, "data": {"object": {
                "id": id, "grant_id": grant, "calendar_id": calendar, "status": status}}})
            .to_string();
            let policy = if always { FetchPolicy::Always } else { W };
            match decide(&text, "r", policy) {
                Decision::Object(i) | Decision::NeedsCalendar { intent: i, .. } => {
                    prop_assert_eq!(&i.grant_id, "g1");
                    prop_assert_eq!(i.object_ref.id(), "o1");
                    prop_assert!(i.version >= versions::webhook(time));
                    let full = !trigger.contains(".truncated") && !trigger.contains(".metadata")
                        && !trigger.contains(".cleaned");
                    if matches!(i.action, Action::Write(_)) {
                        prop_assert!(full && (!always || trigger.starts_with("folder.")));
                    }
                }
                Decision::Grant { grant_id, .. } => prop_assert_eq!(grant_id, "g1"),
                Decision::Ignore { .. } | Decision::Unresolved(_) | Decision::Invalid(_) => {}
            }
        }
    }
}
