//! `status`: how fresh each grant is, from the grants table (and the objects table for one grant).
//! Attributes the reconciler has not written yet (a grant never reconciled) show as absent.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use nylas_sync::destination::Incident;
use nylas_sync::grants::DESTINATION_ITEM;
use serde_json::{json, Value};

use crate::time::{format_age, format_utc, now};
use crate::{require, Aws, Settings};

type Item = HashMap<String, AttributeValue>;

fn text(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn num(item: &Item, k: &str) -> Option<i64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<f64>().ok())
        .map(|n| n as i64)
}

/// What the status shows of one grant.
struct GrantView {
    grant_id: String,
    status: String,
    provider: Option<String>,
    /// Unix s.
    status_changed_at: Option<i64>,
    messages_cursor: Option<i64>,
    events_cursors: BTreeMap<String, i64>,
    last_webhook_at: Option<i64>,
    last_reconcile_at: Option<i64>,
    last_reconcile_outcome: Option<String>,
    last_recovered: Option<i64>,
    recovered_total: Option<i64>,
    lease_owner: Option<String>,
    /// Unix ms.
    lease_until: Option<i64>,
}

impl GrantView {
    fn of(item: &Item) -> Option<Self> {
        let events_cursors = match item.get("events_updated_after") {
            Some(AttributeValue::M(m)) => m
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_n().ok()?.parse().ok()?)))
                .collect(),
            _ => BTreeMap::new(),
        };
        Some(Self {
            grant_id: text(item, "grant_id")?,
            status: text(item, "status").unwrap_or_else(|| "unknown".into()),
            provider: text(item, "provider"),
            status_changed_at: num(item, "status_changed_at").map(|ms| ms / 1000),
            messages_cursor: num(item, "messages_received_after"),
            events_cursors,
            last_webhook_at: num(item, "last_webhook_at"),
            last_reconcile_at: num(item, "last_reconcile_at"),
            last_reconcile_outcome: text(item, "last_reconcile_outcome"),
            last_recovered: num(item, "last_recovered"),
            recovered_total: num(item, "recovered_total"),
            lease_owner: text(item, "lease_owner"),
            lease_until: num(item, "lease_until"),
        })
    }

    /// Age of the oldest cursor (messages or any calendar), in seconds.
    fn cursor_age(&self, now: i64) -> Option<i64> {
        self.messages_cursor
            .into_iter()
            .chain(self.events_cursors.values().copied())
            .min()
            .map(|c| now - c)
    }

    fn to_json(&self, now: i64) -> Value {
        let lease_held = self.lease_until.is_some_and(|u| u > now * 1000);
        json!({
            "grant_id": self.grant_id,
            "status": self.status,
            "provider": self.provider,
            "status_changed_at": self.status_changed_at,
            "messages_cursor": self.messages_cursor,
            "events_cursors": self.events_cursors,
            "cursor_age_seconds": self.cursor_age(now),
            "last_webhook_at": self.last_webhook_at,
            "last_reconcile_at": self.last_reconcile_at,
            "last_reconcile_outcome": self.last_reconcile_outcome,
            "last_recovered": self.last_recovered,
            "recovered_total": self.recovered_total,
            "lease": if lease_held { json!({"owner": self.lease_owner, "until_ms": self.lease_until}) } else { Value::Null },
        })
    }
}

fn when(t: Option<i64>, now: i64) -> String {
    match t {
        Some(t) => format!("{} ({} ago)", format_utc(t), format_age(now - t)),
        None => "never".into(),
    }
}

/// What the objects table holds for one grant: counts by kind, and the last write from a
/// notification (webhook or the fetch it caused) and from a reconcile. One paginated query that
/// reads only keys and bookkeeping attributes.
struct Objects {
    /// kind → (stored, tombstones)
    counts: BTreeMap<String, (i64, i64)>,
    /// Unix ms.
    last_from_notification: Option<i64>,
    last_from_reconcile: Option<i64>,
}

async fn objects_of(aws: &Aws, table: &str, grant: &str) -> Result<Objects, String> {
    let mut objects = Objects {
        counts: ["calendar", "event", "folder", "message"]
            .iter()
            .map(|k| (k.to_string(), (0, 0)))
            .collect(),
        last_from_notification: None,
        last_from_reconcile: None,
    };
    let mut start: Option<Item> = None;
    loop {
        let out = aws
            .ddb
            .query()
            .table_name(table)
            .key_condition_expression("grant_id = :g")
            .expression_attribute_values(":g", AttributeValue::S(grant.into()))
            .projection_expression("sk, deleted, #src, written_at")
            .expression_attribute_names("#src", "source")
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "could not query {table}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                )
            })?;
        for item in out.items() {
            let kind = text(item, "sk")
                .and_then(|sk| sk.split('#').next().map(str::to_string))
                .unwrap_or_default();
            let deleted = matches!(item.get("deleted"), Some(AttributeValue::Bool(true)));
            let entry = objects.counts.entry(kind).or_default();
            if deleted {
                entry.1 += 1;
            } else {
                entry.0 += 1;
            }
            let written = num(item, "written_at");
            let latest = match text(item, "source").as_deref() {
                Some("webhook" | "fetch") => &mut objects.last_from_notification,
                Some("reconcile") => &mut objects.last_from_reconcile,
                _ => continue,
            };
            *latest = (*latest).max(written);
        }
        start = out.last_evaluated_key.filter(|k| !k.is_empty());
        if start.is_none() {
            return Ok(objects);
        }
    }
}

async fn one(settings: &Settings, aws: &Aws, grant: &str, as_json: bool) -> Result<(), String> {
    let table = require(&settings.grants_table, "grants-table", "GRANTS_TABLE")?;
    let out = aws
        .ddb
        .get_item()
        .table_name(table)
        .key("grant_id", AttributeValue::S(grant.into()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| {
            format!(
                "could not read {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            )
        })?;
    let view = out
        .item
        .as_ref()
        .and_then(GrantView::of)
        .ok_or_else(|| format!("grant {grant} is not in {table}"))?;
    let now = now();
    let objects = match settings.objects_table.as_deref().filter(|t| !t.is_empty()) {
        Some(objects_table) => Some(objects_of(aws, objects_table, grant).await?),
        None => None,
    };
    // The last webhook: the grant's own record if a function keeps one, else the newest object
    // written from a notification.
    let last_webhook = view.last_webhook_at.or_else(|| {
        objects
            .as_ref()
            .and_then(|o| o.last_from_notification)
            .map(|ms| ms / 1000)
    });
    if as_json {
        let mut v = view.to_json(now);
        v["last_webhook_at"] = json!(last_webhook);
        v["objects"] = match &objects {
            Some(o) => {
                let mut counts: serde_json::Map<String, Value> = o
                    .counts
                    .iter()
                    .map(|(k, (stored, tombstones))| {
                        (
                            format!("{k}s"),
                            json!({"stored": stored, "tombstones": tombstones}),
                        )
                    })
                    .collect();
                counts.insert(
                    "last_written_from_notification_ms".into(),
                    json!(o.last_from_notification),
                );
                counts.insert(
                    "last_written_by_reconcile_ms".into(),
                    json!(o.last_from_reconcile),
                );
                Value::Object(counts)
            }
            None => Value::Null,
        };
        println!("{v}");
        return Ok(());
    }
    println!("grant            {}", view.grant_id);
    println!(
        "status           {}{}{}",
        view.status,
        view.provider
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default(),
        view.status_changed_at
            .map(|t| format!(", since {}", format_utc(t)))
            .unwrap_or_default()
    );
    println!(
        "messages cursor  {}",
        match view.messages_cursor {
            Some(c) => format!("{} ({} old)", format_utc(c), format_age(now - c)),
            None => "none yet (not reconciled)".into(),
        }
    );
    if !view.events_cursors.is_empty() {
        let oldest = view.events_cursors.values().min().copied().unwrap_or(now);
        println!(
            "events cursors   {} calendars, oldest {} old",
            view.events_cursors.len(),
            format_age(now - oldest)
        );
    }
    println!(
        "last webhook     {}",
        match last_webhook {
            Some(t) => when(Some(t), now),
            None if objects.is_some() => "none stored".into(),
            None => "unknown (set OBJECTS_TABLE)".into(),
        }
    );
    println!(
        "last reconcile   {}{}",
        when(view.last_reconcile_at, now),
        view.last_reconcile_outcome
            .as_deref()
            .map(|o| format!(": {o}"))
            .unwrap_or_default()
    );
    println!(
        "recovered        {} in the last run, {} in total (changes webhooks missed)",
        view.last_recovered.unwrap_or(0),
        view.recovered_total.unwrap_or(0)
    );
    if let Some(until) = view.lease_until.filter(|u| *u > now * 1000) {
        println!(
            "lease            held by {} for {}",
            view.lease_owner.as_deref().unwrap_or("?"),
            format_age(until / 1000 - now)
        );
    }
    if let Some(o) = &objects {
        let parts: Vec<String> = o
            .counts
            .iter()
            .map(|(k, (stored, tombstones))| format!("{k}s {stored} (+{tombstones} tombstones)"))
            .collect();
        println!("objects          {}", parts.join(", "));
    }
    Ok(())
}

async fn summary(settings: &Settings, aws: &Aws, as_json: bool, top: usize) -> Result<(), String> {
    let table = require(&settings.grants_table, "grants-table", "GRANTS_TABLE")?;
    let spinner = indicatif::ProgressBar::new_spinner();
    let mut views = Vec::new();
    let mut incident: Option<Incident> = None;
    let mut start: Option<Item> = None;
    loop {
        let out = aws
            .ddb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "could not scan {table}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                )
            })?;
        for item in out.items() {
            if text(item, "grant_id").as_deref() == Some(DESTINATION_ITEM) {
                incident = text(item, "incident").and_then(|t| serde_json::from_str(&t).ok());
            } else {
                views.extend(GrantView::of(item));
            }
        }
        spinner.set_message(format!("scanning {table}: {} grants", views.len()));
        spinner.tick();
        start = out.last_evaluated_key.filter(|k| !k.is_empty());
        if start.is_none() {
            break;
        }
    }
    spinner.finish_and_clear();
    let now = now();
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let (mut never, mut recovered_total, mut last_recovered, mut with_recovered) = (0, 0, 0, 0);
    for v in &views {
        *by_status.entry(v.status.clone()).or_default() += 1;
        if v.status != "active" {
            continue;
        }
        match &v.last_reconcile_outcome {
            Some(o) => *outcomes.entry(o.clone()).or_default() += 1,
            None => never += 1,
        }
        recovered_total += v.recovered_total.unwrap_or(0);
        last_recovered += v.last_recovered.unwrap_or(0);
        if v.recovered_total.unwrap_or(0) > 0 {
            with_recovered += 1;
        }
    }
    // Stalest first: never reconciled, then the oldest cursor.
    let mut active: Vec<&GrantView> = views.iter().filter(|v| v.status == "active").collect();
    active.sort_by_key(|v| {
        (
            v.cursor_age(now).map(|a| -a).unwrap_or(i64::MIN),
            v.grant_id.clone(),
        )
    });
    let stalest: Vec<&GrantView> = active.iter().take(top).copied().collect();
    let oldest_cursor = active.iter().filter_map(|v| v.cursor_age(now)).max();
    if as_json {
        let v = json!({
            "grants": views.len(),
            "by_status": by_status,
            "active_never_reconciled": never,
            "last_outcomes": outcomes,
            "recovered_total": recovered_total,
            "recovered_last_runs": last_recovered,
            "grants_with_recovered": with_recovered,
            "oldest_cursor_age_seconds": oldest_cursor,
            "stalest": stalest.iter().map(|g| g.to_json(now)).collect::<Vec<_>>(),
            "destination_last_incident": incident,
        });
        println!("{v}");
        return Ok(());
    }
    let statuses: Vec<String> = by_status.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("grants           {} ({})", views.len(), statuses.join(", "));
    let outcome_list: Vec<String> = outcomes.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "last reconcile   {}{}",
        if outcome_list.is_empty() {
            "none yet".to_string()
        } else {
            outcome_list.join(", ")
        },
        if never > 0 {
            format!("; never reconciled {never}")
        } else {
            String::new()
        }
    );
    println!(
        "recovered        {recovered_total} in total across {with_recovered} grants, {last_recovered} in the last runs (changes webhooks missed)"
    );
    println!(
        "oldest cursor    {}",
        oldest_cursor
            .map(format_age)
            .unwrap_or_else(|| "none".into())
    );
    println!(
        "destination      {}",
        describe_incident(incident.as_ref(), now)
    );
    if !stalest.is_empty() {
        println!();
        println!(
            "{:<40} {:<8} {:>12} {:>16} {:<12} {:>10}",
            "GRANT", "STATUS", "CURSOR AGE", "LAST RECONCILE", "OUTCOME", "RECOVERED"
        );
        for g in stalest {
            println!(
                "{:<40} {:<8} {:>12} {:>16} {:<12} {:>10}",
                g.grant_id,
                g.status,
                g.cursor_age(now)
                    .map(format_age)
                    .unwrap_or_else(|| "-".into()),
                g.last_reconcile_at
                    .map(|t| format!("{} ago", format_age(now - t)))
                    .unwrap_or_else(|| "never".into()),
                g.last_reconcile_outcome.as_deref().unwrap_or("-"),
                format!(
                    "{}/{}",
                    g.last_recovered.unwrap_or(0),
                    g.recovered_total.unwrap_or(0)
                ),
            );
        }
    }
    Ok(())
}

/// The webhook destination's last incident, as the scheduler's watch recorded it.
fn describe_incident(incident: Option<&Incident>, now: i64) -> String {
    let Some(i) = incident else {
        return "no incident recorded (the scheduler watches it when the secret names webhook_id)"
            .into();
    };
    let ago = |t: i64| format!("{} ago", format_age(now - t));
    let state = match i.repaired_at {
        Some(t) => format!(
            "repaired {}{}",
            ago(t),
            if i.reactivated {
                " (reactivated, every grant caught up)"
            } else {
                " (every grant caught up)"
            }
        ),
        None => "open".into(),
    };
    format!(
        "last incident: {} seen {}, changes lost from {} ago; {state}",
        i.status,
        ago(i.seen_at),
        format_age(now - i.lost_from)
    )
}

pub async fn run(
    settings: &Settings,
    aws: &Aws,
    grant: Option<&str>,
    as_json: bool,
    top: usize,
) -> Result<(), String> {
    match grant {
        Some(g) => one(settings, aws, g, as_json).await,
        None => summary(settings, aws, as_json, top).await,
    }
}
