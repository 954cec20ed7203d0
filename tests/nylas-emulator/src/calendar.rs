//! Calendars and events beyond single events: the listing windows, recurring series (masters,
//! expanded occurrences, exceptions, cancelled and deleted occurrences), `events/import`,
//! calendar updates and deletes, and the seeded calendar content and activity.
//!
//! Storage: `Grant::events` holds single events, recurring masters and exceptions (an exception
//! is a stored event with `master_event_id`, id `<master>_<original start>`). Occurrences that
//! were never changed are not stored: they are expanded from the master's rule when asked for.
//! A deleted occurrence is remembered in `Grant::deleted_occurrences` so it stays gone.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::model::{generate_event, to_value, Event, EventChange, Grant, Model, Notification};
use crate::recurrence::{occurrence_id, overlaps, split_occurrence_id, Rule};

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// Nylas's default listing window: `end` defaults to one month after `start`.
pub(crate) const DEFAULT_WINDOW_SECS: i64 = 30 * DAY;
/// iCloud refuses listings whose `end - start` is above one year.
pub(crate) const ICLOUD_MAX_WINDOW_SECS: i64 = 365 * DAY;
/// Seeded single events are spread over this span around the grant's creation.
const SEED_PAST_SECS: i64 = 395 * DAY;
const SEED_FUTURE_SECS: i64 = 600 * DAY;
const SOURCE: &str = "/google/calendar/realtime";

/// A new event, exactly as asked. `title` is generated when `None`; `recurrence` (RRULE/EXDATE
/// strings) makes it a recurring master whose first occurrence is `start_time`..`end_time`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EventSpec {
    pub title: Option<String>,
    pub start_time: i64,
    pub end_time: i64,
    pub recurrence: Option<Vec<String>>,
}

/// What a listing asks for.
pub(crate) struct EventQuery<'a> {
    pub(crate) calendar_id: &'a str,
    pub(crate) from: i64,
    pub(crate) to: i64,
    /// Expand masters into occurrences (`expand_recurring`, default true).
    pub(crate) expand: bool,
    pub(crate) show_cancelled: bool,
    /// `events/import`: masters, exceptions and single events; cancelled exceptions included
    /// (they are how a cancelled occurrence shows), cancelled single events and masters not.
    pub(crate) import: bool,
    pub(crate) updated_after: Option<i64>,
    pub(crate) updated_before: Option<i64>,
    pub(crate) master_event_id: Option<&'a str>,
}

fn rule_of(e: &Event) -> Option<Rule> {
    e.recurrence
        .as_deref()
        .filter(|r| !r.is_empty())
        .and_then(Rule::parse)
}

fn duration(e: &Event) -> i64 {
    (e.when.end_time - e.when.start_time).max(0)
}

/// The unchanged occurrence of `master` originally starting at `start`.
fn occurrence(master: &Event, start: i64) -> Event {
    let mut e = master.clone();
    e.id = occurrence_id(&master.id, start);
    e.when.start_time = start;
    e.when.end_time = start + duration(master);
    e.recurrence = None;
    e.master_event_id = Some(master.id.clone());
    e.original_start_time = Some(start);
    e.html_link = format!("https://calendar.google.com/event?eid={}", e.id);
    e
}

impl Grant {
    /// A calendar id as the API accepts it: `primary` names the primary calendar (not on iCloud).
    pub(crate) fn resolve_calendar(&self, id: &str) -> Option<String> {
        if id == "primary" && !self.is_icloud() {
            return self.primary_calendar_id();
        }
        self.calendars.contains_key(id).then(|| id.to_string())
    }

    pub(crate) fn is_icloud(&self) -> bool {
        self.provider == "icloud"
    }

    fn occurrence_deleted(&self, master_id: &str, start: i64) -> bool {
        self.deleted_occurrences
            .get(master_id)
            .is_some_and(|s| s.contains(&start))
    }

    /// An event by id: a stored one (single, master, exception) or an unchanged occurrence.
    pub(crate) fn find_event(&self, id: &str) -> Option<Event> {
        if let Some(e) = self.events.get(id) {
            return Some(e.clone());
        }
        let (master_id, start) = split_occurrence_id(id)?;
        let master = self.events.get(master_id)?;
        let rule = rule_of(master)?;
        (rule.has_occurrence(master.when.start_time, start)
            && !self.occurrence_deleted(master_id, start))
        .then(|| occurrence(master, start))
    }

    /// The events a listing returns, ordered by id (stable while events change).
    pub(crate) fn query_events(&self, q: &EventQuery) -> Vec<Event> {
        let visible = |e: &Event, exception: bool| {
            e.status != "cancelled"
                || if q.import {
                    exception
                } else {
                    q.show_cancelled
                }
        };
        let mut out = Vec::new();
        for e in self.events.values() {
            if e.calendar_id != q.calendar_id {
                continue;
            }
            if let Some(master) = &e.master_event_id {
                if q.master_event_id.is_some_and(|m| m != master) {
                    continue;
                }
                if overlaps(e.when.start_time, e.when.end_time, q.from, q.to) && visible(e, true) {
                    out.push(e.clone());
                }
            } else if let Some(rule) = rule_of(e) {
                let starts = rule.occurrences_in(e.when.start_time, duration(e), q.from, q.to);
                if !visible(e, false) {
                    continue;
                }
                if q.expand && !q.import {
                    if q.master_event_id.is_some_and(|m| m != e.id) {
                        continue;
                    }
                    for s in starts {
                        let id = occurrence_id(&e.id, s);
                        if !self.events.contains_key(&id) && !self.occurrence_deleted(&e.id, s) {
                            out.push(occurrence(e, s));
                        }
                    }
                } else if q.master_event_id.is_none() && !starts.is_empty() {
                    out.push(e.clone());
                }
            } else if q.master_event_id.is_none()
                && overlaps(e.when.start_time, e.when.end_time, q.from, q.to)
                && visible(e, false)
            {
                out.push(e.clone());
            }
        }
        out.retain(|e| {
            q.updated_after.is_none_or(|t| e.updated_at > t)
                && q.updated_before.is_none_or(|t| e.updated_at < t)
        });
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Stores the exception for an occurrence (a copy of it) unless it exists; returns its id.
    /// `None` when `master_id` has no such occurrence.
    fn materialize(&mut self, master_id: &str, start: i64, now: i64) -> Option<String> {
        let id = occurrence_id(master_id, start);
        if let Some(e) = self.events.get(&id) {
            return e.master_event_id.is_some().then_some(id);
        }
        let mut e = self.find_event(&id)?;
        e.created_at = now;
        e.updated_at = now;
        self.events.insert(id.clone(), e);
        Some(id)
    }

    /// Ids of the master's cancelled occurrences, as `cancelled_occurrences` lists them.
    fn cancelled_occurrences(&self, master_id: &str) -> Vec<String> {
        self.events
            .values()
            .filter(|e| e.master_event_id.as_deref() == Some(master_id) && e.status == "cancelled")
            .map(|e| e.id.clone())
            .collect()
    }

    fn masters(&self, live_only: bool) -> Vec<String> {
        self.events
            .values()
            .filter(|e| e.recurrence.is_some() && (!live_only || e.status != "cancelled"))
            .map(|e| e.id.clone())
            .collect()
    }

    fn insert_series(
        &mut self,
        calendar_id: &str,
        dtstart: i64,
        len: i64,
        rule: &str,
        now: i64,
    ) -> Event {
        let mut e = generate_event(self, calendar_id, now);
        e.title = format!("Weekly {}", e.title.to_lowercase());
        e.when.start_time = dtstart;
        e.when.end_time = dtstart + len;
        e.recurrence = Some(vec![rule.to_string()]);
        self.events.insert(e.id.clone(), e.clone());
        e
    }
}

/// A start on the hour: 40% in the next month, the rest from ~13 months ago to ~20 months ahead.
fn random_start(g: &mut Grant, now: i64) -> i64 {
    let hours = if g.rng.chance(0.4) {
        g.rng.below(30 * 24) as i64
    } else {
        g.rng
            .below(((SEED_PAST_SECS + SEED_FUTURE_SECS) / 3600) as usize) as i64
            - SEED_PAST_SECS / 3600
    };
    (now / 3600 + 1 + hours) * 3600
}

/// The initial events of a grant: `singles` single events spread evenly from ~13 months ago to
/// ~20 months ahead, and `series` weekly series (52 weeks, half past, half ahead), each with its
/// occurrence of 3 weeks ago moved by two hours and its occurrence in 2 weeks cancelled.
pub(crate) fn seed_events(
    g: &mut Grant,
    calendar_id: &str,
    singles: usize,
    series: usize,
    now: i64,
) {
    let span = SEED_PAST_SECS + SEED_FUTURE_SECS;
    for i in 0..singles {
        let mut e = generate_event(g, calendar_id, now);
        let slot = span / singles as i64;
        let offset = i as i64 * slot + g.rng.below((slot / 3600).max(1) as usize) as i64 * 3600;
        let len = duration(&e);
        e.when.start_time = (now - SEED_PAST_SECS + offset) / 3600 * 3600;
        e.when.end_time = e.when.start_time + len;
        g.events.insert(e.id.clone(), e);
    }
    for i in 0..series {
        let hour = 8 + g.rng.below(9) as i64;
        let dtstart = (now / DAY) * DAY - (26 + 4 * i as i64) * WEEK + hour * 3600;
        let master = g.insert_series(
            calendar_id,
            dtstart,
            3600,
            "RRULE:FREQ=WEEKLY;COUNT=52",
            now,
        );
        let moved = dtstart + ((now - dtstart) / WEEK - 3) * WEEK;
        let cancelled = dtstart + ((now - dtstart) / WEEK + 2) * WEEK;
        if let Some(id) = g.materialize(&master.id, moved, now) {
            if let Some(e) = g.events.get_mut(&id) {
                e.when.start_time += 2 * 3600;
                e.when.end_time += 2 * 3600;
            }
        }
        if let Some(id) = g.materialize(&master.id, cancelled, now) {
            if let Some(e) = g.events.get_mut(&id) {
                e.status = "cancelled".into();
            }
        }
    }
}

impl Model {
    fn event_notification(
        &mut self,
        kind: &str,
        grant_id: &str,
        now: i64,
        object: Value,
        out: &mut Vec<Notification>,
    ) {
        let n = self.notification(kind, SOURCE, now, grant_id, object);
        out.push(n);
    }

    /// Creates exactly the event asked for and notifies `event.created`. `None` when the grant
    /// or calendar is unknown, the times are reversed or the recurrence is not supported.
    pub(crate) fn create_event_spec(
        &mut self,
        grant_id: &str,
        calendar_id: &str,
        spec: EventSpec,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> Option<Value> {
        let g = self.grants.get_mut(grant_id)?;
        let calendar_id = g.resolve_calendar(calendar_id)?;
        let recurrence = spec.recurrence.filter(|r| !r.is_empty());
        if spec.end_time < spec.start_time
            || recurrence
                .as_deref()
                .is_some_and(|r| Rule::parse(r).is_none())
        {
            return None;
        }
        let mut e = generate_event(g, &calendar_id, now);
        if let Some(t) = spec.title {
            e.title = t;
        }
        e.when.start_time = spec.start_time;
        e.when.end_time = spec.end_time;
        e.recurrence = recurrence;
        g.events.insert(e.id.clone(), e.clone());
        let v = to_value(&e);
        self.event_notification("event.created", grant_id, now, v.clone(), out);
        Some(v)
    }

    /// A seeded new event somewhere from ~13 months ago to ~20 months ahead (40% in the next
    /// month), notified as `event.created`.
    fn create_random_event(
        &mut self,
        grant_id: &str,
        calendar_id: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) {
        let Some(g) = self.grants.get_mut(grant_id) else {
            return;
        };
        let mut e = generate_event(g, calendar_id, now);
        let len = duration(&e);
        e.when.start_time = random_start(g, now);
        e.when.end_time = e.when.start_time + len;
        g.events.insert(e.id.clone(), e.clone());
        self.event_notification("event.created", grant_id, now, to_value(&e), out);
    }

    /// Moves one occurrence (stored as an exception) and notifies `event.updated` with the
    /// exception. `None` when there is no such occurrence.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn move_occurrence(
        &mut self,
        grant_id: &str,
        master_id: &str,
        original_start: i64,
        new_start: i64,
        new_end: i64,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> Option<Value> {
        let g = self.grants.get_mut(grant_id)?;
        let id = g.materialize(master_id, original_start, now)?;
        let change = EventChange {
            start_time: Some(new_start),
            end_time: Some(new_end.max(new_start)),
            status: Some("confirmed".into()),
            ..EventChange::default()
        };
        self.update_event(grant_id, &id, change, now, out)
    }

    /// Cancels one occurrence: it is stored as a cancelled exception (listed only with
    /// `show_cancelled=true`) and the master's `event.updated` carries `cancelled_occurrences`.
    pub(crate) fn cancel_occurrence(
        &mut self,
        grant_id: &str,
        master_id: &str,
        original_start: i64,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> bool {
        let Some(g) = self.grants.get_mut(grant_id) else {
            return false;
        };
        let Some(id) = g.materialize(master_id, original_start, now) else {
            return false;
        };
        if let Some(e) = g.events.get_mut(&id) {
            e.status = "cancelled".into();
            e.updated_at = now;
        }
        let cancelled = g.cancelled_occurrences(master_id);
        let Some(master) = g.events.get_mut(master_id) else {
            return false;
        };
        master.updated_at = now;
        let mut object = to_value(&*master);
        if let Value::Object(o) = &mut object {
            o.insert("cancelled_occurrences".into(), json!(cancelled));
        }
        self.event_notification("event.updated", grant_id, now, object, out);
        true
    }

    /// `update_event` for what is part of a series: `Some(answer)` when handled here, `None`
    /// to let the single-event path go on (an occurrence is stored as an exception first).
    pub(crate) fn update_recurring(
        &mut self,
        grant_id: &str,
        event_id: &str,
        change: &EventChange,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> Option<Option<Value>> {
        let g = self.grants.get_mut(grant_id)?;
        let target = g.find_event(event_id)?;
        if target.recurrence.is_some() && change.status.as_deref() == Some("cancelled") {
            // Cancelling a series cancels all of it: its exceptions go with the master, notified
            // by the master's one `event.updated` (as a deleted master takes them with it).
            for e in g.events.values_mut() {
                if e.master_event_id.as_deref() == Some(event_id) && e.status != "cancelled" {
                    e.status = "cancelled".into();
                    e.updated_at = now;
                }
            }
            return None;
        }
        let master_id = target.master_event_id.clone()?;
        let start = target.original_start_time?;
        if change.status.as_deref() == Some("cancelled") {
            let ok = self.cancel_occurrence(grant_id, &master_id, start, now, out);
            let g = self.grants.get(grant_id)?;
            return Some(ok.then(|| g.events.get(event_id).map(to_value)).flatten());
        }
        g.materialize(&master_id, start, now)?;
        None
    }

    /// `delete_event` for masters, exceptions and occurrences: `Some(deleted)` when handled.
    /// A master goes with its exceptions, notified by one `event.deleted` (the master's); an
    /// exception or occurrence is notified with its `master_event_id` and stays gone.
    pub(crate) fn delete_recurring(
        &mut self,
        grant_id: &str,
        event_id: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> Option<bool> {
        let g = self.grants.get_mut(grant_id)?;
        let target = g.find_event(event_id)?;
        if target.recurrence.is_some() {
            let gone: Vec<Event> = g
                .events
                .values()
                .filter(|e| e.id == event_id || e.master_event_id.as_deref() == Some(event_id))
                .cloned()
                .collect();
            for e in &gone {
                g.events.remove(&e.id);
                g.deleted_events.insert(e.id.clone(), e.calendar_id.clone());
            }
            g.deleted_occurrences.remove(event_id);
        } else if let (Some(master), Some(start)) =
            (&target.master_event_id, target.original_start_time)
        {
            g.events.remove(event_id);
            g.deleted_occurrences
                .entry(master.clone())
                .or_default()
                .insert(start);
            g.deleted_events
                .insert(event_id.to_string(), target.calendar_id.clone());
        } else {
            return None;
        }
        let mut object = json!({
            "id": event_id, "grant_id": grant_id, "object": "event",
            "calendar_id": target.calendar_id,
        });
        if let (Value::Object(o), Some(m)) = (&mut object, &target.master_event_id) {
            o.insert("master_event_id".into(), json!(m));
        }
        self.event_notification("event.deleted", grant_id, now, object, out);
        Some(true)
    }

    /// Renames a calendar and notifies `calendar.updated` with it.
    pub(crate) fn update_calendar(
        &mut self,
        grant_id: &str,
        calendar_id: &str,
        name: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> Option<Value> {
        let c = self
            .grants
            .get_mut(grant_id)?
            .calendars
            .get_mut(calendar_id)?;
        c.name = name.to_string();
        let v = to_value(&*c);
        let n = self.notification("calendar.updated", SOURCE, now, grant_id, v.clone());
        out.push(n);
        Some(v)
    }

    /// Deletes a secondary calendar and every event on it, and notifies `calendar.deleted` only
    /// (no `event.deleted` for its events). The primary calendar cannot be deleted (false).
    pub(crate) fn delete_calendar(
        &mut self,
        grant_id: &str,
        calendar_id: &str,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> bool {
        let Some(g) = self.grants.get_mut(grant_id) else {
            return false;
        };
        if g.calendars.get(calendar_id).is_none_or(|c| c.is_primary) {
            return false;
        }
        g.calendars.remove(calendar_id);
        g.deleted_calendar_ids.insert(calendar_id.to_string());
        let gone: Vec<String> = g
            .events
            .values()
            .filter(|e| e.calendar_id == calendar_id)
            .map(|e| e.id.clone())
            .collect();
        for id in gone {
            g.events.remove(&id);
            g.deleted_occurrences.remove(&id);
            g.deleted_events.insert(id, calendar_id.to_string());
        }
        let object = json!({"id": calendar_id, "grant_id": grant_id, "object": "calendar"});
        let n = self.notification("calendar.deleted", SOURCE, now, grant_id, object);
        out.push(n);
        true
    }

    /// One seeded calendar change: `roll` in 0..22 picks what (see `random_change`).
    pub(crate) fn random_event_change(
        &mut self,
        grant_id: &str,
        roll: usize,
        now: i64,
        out: &mut Vec<Notification>,
    ) -> bool {
        let Some(g) = self.grants.get_mut(grant_id) else {
            return false;
        };
        let Some(cal) = g.primary_calendar_id() else {
            return false;
        };
        let pick = |g: &mut Grant, live_only: bool| -> Option<String> {
            let ids: Vec<&String> = g
                .events
                .values()
                .filter(|e| !live_only || e.status != "cancelled")
                .map(|e| &e.id)
                .collect();
            (!ids.is_empty()).then(|| ids[g.rng.below(ids.len())].clone())
        };
        match roll {
            0..=6 => {
                self.create_random_event(grant_id, &cal, now, out);
                true
            }
            7..=12 => {
                let Some(id) = pick(g, true) else {
                    return false;
                };
                // A third of the updates move the event by up to three days either way.
                let change = match (g.rng.below(3), g.events.get(&id)) {
                    (0, Some(e)) => {
                        let shift = (g.rng.below(145) as i64 - 72) * 3600;
                        EventChange {
                            start_time: Some(e.when.start_time + shift),
                            end_time: Some(e.when.end_time + shift),
                            ..EventChange::default()
                        }
                    }
                    _ => EventChange::default(),
                };
                self.update_event(grant_id, &id, change, now, out).is_some()
            }
            13..=15 => {
                let Some(id) = pick(g, true) else {
                    return false;
                };
                let change = EventChange {
                    status: Some("cancelled".into()),
                    ..EventChange::default()
                };
                self.update_event(grant_id, &id, change, now, out).is_some()
            }
            16..=18 => {
                let masters = g.masters(true);
                if masters.is_empty() || g.rng.below(4) == 0 {
                    // A new weekly series, starting up to a year ago or up to a year ahead.
                    let dtstart = (now / 3600 + g.rng.below(2 * 365 * 24) as i64 - 365 * 24) * 3600;
                    let rule = match g.rng.below(3) {
                        0 => "RRULE:FREQ=WEEKLY".to_string(),
                        1 => format!("RRULE:FREQ=WEEKLY;COUNT={}", 5 + g.rng.below(60)),
                        _ => "RRULE:FREQ=DAILY;INTERVAL=7;COUNT=20".to_string(),
                    };
                    let e = g.insert_series(&cal, dtstart, 1800, &rule, now);
                    self.event_notification("event.created", grant_id, now, to_value(&e), out);
                    return true;
                }
                let master_id = g.rng.pick(&masters).clone();
                let Some(master) = g.events.get(&master_id).cloned() else {
                    return false;
                };
                let from = now - 90 * DAY;
                let starts: Vec<i64> = rule_of(&master)
                    .map(|r| r.occurrences_in(master.when.start_time, 0, from, now + 180 * DAY))
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|s| !g.events.contains_key(&occurrence_id(&master_id, *s)))
                    .collect();
                if starts.is_empty() {
                    return false;
                }
                let s = *g.rng.pick(&starts);
                if g.rng.chance(0.5) {
                    let shift = (1 + g.rng.below(48) as i64) * 3600;
                    let len = duration(&master);
                    self.move_occurrence(
                        grant_id,
                        &master_id,
                        s,
                        s + shift,
                        s + shift + len,
                        now,
                        out,
                    )
                    .is_some()
                } else {
                    self.cancel_occurrence(grant_id, &master_id, s, now, out)
                }
            }
            _ => {
                let Some(id) = pick(g, false) else {
                    return false;
                };
                self.delete_event(grant_id, &id, now, out)
            }
        }
    }
}
