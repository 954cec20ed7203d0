//! Compares a store with the emulator's ground truth: what is missing, stale (present with a
//! different state), or resurrected (deleted in Nylas, live in the store; every live object the
//! store still holds for a deleted grant counts as resurrected too).

use std::collections::HashMap;

use nylas_emulator::Truth;
use nylas_sync::event_window::EventWindow;
use nylas_sync::store::{ObjectRef, ObjectStore, StoreError, StoredObject};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Completeness {
    pub missing: Vec<String>,
    pub stale: Vec<String>,
    pub resurrected: Vec<String>,
}

impl Completeness {
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.stale.is_empty() && self.resurrected.is_empty()
    }

    /// One line per difference.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(self.missing.iter().map(|k| format!("missing {k}")));
        out.extend(self.stale.iter().map(|k| format!("stale {k}")));
        out.extend(self.resurrected.iter().map(|k| format!("resurrected {k}")));
        out
    }
}

/// Compares messages (and events, if `events`) of every grant in `truth` with the store.
/// Cancelled events count as deleted. An event the store does not hold is missing only inside
/// the events window the reconciler mirrors (taken at the truth's time; see
/// `nylas_sync::event_window`); an event it does hold must equal Nylas's wherever it lies.
/// Calendars are not compared (they change rarely and the store keeps them only once listed),
/// except under a deleted grant: there, whatever the store still holds live (messages, events,
/// calendars, folders) is resurrected.
pub async fn compare(
    store: &ObjectStore,
    truth: &Truth,
    events: bool,
) -> Result<Completeness, StoreError> {
    compare_within(store, truth, events, &EventWindow::default()).await
}

/// [`compare`] with the events window of a reconciler configured otherwise.
pub async fn compare_within(
    store: &ObjectStore,
    truth: &Truth,
    events: bool,
    window: &EventWindow,
) -> Result<Completeness, StoreError> {
    let mut result = Completeness::default();
    for g in &truth.grants {
        let grant = &g.grant_id;
        let stored: HashMap<String, StoredObject> = store
            .list_grant(grant)
            .await?
            .into_iter()
            .map(|o| (o.sort_key.clone(), o))
            .collect();
        // (object, its state at Nylas, whether the store must hold it even if it never heard of it)
        let mut expect: Vec<(ObjectRef, Option<&Value>, bool)> = Vec::new();
        for m in &g.messages {
            expect.push((ObjectRef::Message { id: text(m, "id") }, Some(m), true));
        }
        for id in &g.deleted_message_ids {
            expect.push((ObjectRef::Message { id: id.clone() }, None, true));
        }
        if events {
            for e in &g.events {
                let r = ObjectRef::Event {
                    calendar_id: text(e, "calendar_id"),
                    id: text(e, "id"),
                };
                let cancelled = e.get("status").and_then(Value::as_str) == Some("cancelled");
                let required = window.covers(e, truth.now);
                expect.push((r, if cancelled { None } else { Some(e) }, required));
            }
            for d in &g.deleted_events {
                expect.push((
                    ObjectRef::Event {
                        calendar_id: d.calendar_id.clone(),
                        id: d.id.clone(),
                    },
                    None,
                    true,
                ));
            }
        }
        for (r, want, required) in expect {
            let key = format!("{grant} {}", r.sort_key());
            let got = stored.get(&r.sort_key());
            match (want, got) {
                (Some(_), None) if !required => {}
                (Some(want), Some(got)) if !got.deleted && got.object.as_ref() == Some(want) => {}
                (Some(_), None) => result.missing.push(key),
                (Some(_), Some(got)) if got.deleted => result.missing.push(key),
                (Some(_), Some(_)) => result.stale.push(key),
                (None, Some(got)) if !got.deleted => result.resurrected.push(key),
                (None, _) => {}
            }
        }
    }
    for grant in &truth.deleted_grant_ids {
        for o in store.list_grant(grant).await? {
            if !o.deleted {
                result.resurrected.push(format!("{grant} {}", o.sort_key));
            }
        }
    }
    Ok(result)
}

fn text(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}
