//! The metrics the handlers publish: each invocation's CloudWatch Embedded Metric Format lines
//! parse as valid EMF, carry what happened (against moto and the Nylas emulator), and use only
//! the names the README's "Operating" table documents.

use std::collections::{BTreeMap, BTreeSet};

use nylas_emulator::{EmulatorConfig, MessageSpec};
use nylas_sync::ingest::Ingest;
use nylas_sync::metrics::{self, names, validate_line};
use serde_json::Value;
use support::*;

/// Metric rows of the README's "Operating" section: name → function.
fn documented() -> BTreeMap<String, String> {
    let readme = include_str!("../../../README.md");
    let operating = readme
        .split("\n## Operating")
        .nth(1)
        .expect("the README has an Operating section");
    let operating = operating.split("\n## ").next().unwrap_or_default();
    operating
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            // | `Name` | function | unit | dimensions | meaning |
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let function = cells.get(2)?;
            (name.chars().next()?.is_ascii_uppercase() && !name.contains(' '))
                .then(|| (name.to_string(), function.to_string()))
        })
        .collect()
}

/// Every (metric, dimensions, values, document) in the lines, each line validated as EMF.
fn parse(lines: &[String]) -> Vec<(String, Vec<String>, Vec<f64>, Value)> {
    let mut out = Vec::new();
    for l in lines {
        let metrics = validate_line(l).unwrap_or_else(|e| panic!("invalid EMF ({e}): {l}"));
        let doc: Value = serde_json::from_str(l).unwrap();
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "NylasSync",
            "{l}"
        );
        for m in metrics {
            out.push((m.name, m.dimensions, m.values, doc.clone()));
        }
    }
    out
}

/// The Function-level value of a metric (0 if absent).
fn total(metrics: &[(String, Vec<String>, Vec<f64>, Value)], name: &str) -> f64 {
    metrics
        .iter()
        .filter(|(n, d, _, _)| n == name && d == &["Function"])
        .map(|(_, _, v, _)| v.iter().sum::<f64>())
        .sum()
}

fn assert_documented(metrics: &[(String, Vec<String>, Vec<f64>, Value)], function: &str) {
    let docs = documented();
    for (name, _, _, doc) in metrics {
        assert_eq!(doc["Function"], function);
        // The function column may list several functions ("consumer, reconciler").
        assert!(
            docs.get(name)
                .is_some_and(|f| f.split(',').any(|f| f.trim() == function)),
            "{name} is emitted by {function} but not documented for it in the README"
        );
    }
}

#[test]
fn every_metric_the_library_names_is_documented_and_every_documented_one_exists() {
    let docs = documented();
    for name in names::ALL {
        assert!(
            docs.contains_key(*name),
            "{name} is not in the README table"
        );
    }
    // Rows for the library's own handlers name only metrics the library defines.
    for (name, function) in &docs {
        if function == "ingest" || function == "consumer" {
            assert!(
                names::ALL.contains(&name.as_str()),
                "the README documents {name} for {function}, which does not emit it"
            );
        }
    }
}

#[tokio::test]
async fn each_ingest_request_prints_one_valid_emf_line_saying_what_happened() {
    let aws = Aws::connect().await;
    let queue_url = aws.create_queue("notifications").await;
    let bucket = aws.create_bucket("payloads").await;
    let ingest = Ingest::from_env(&ingest_env(&queue_url, &bucket, "current-secret"))
        .await
        .expect("ingest");
    let body = message_created("n-metrics", "grant-1", "msg-1", 10);

    let (resp, lines) = metrics::capture(ingest.handle(signed_post(&body, "current-secret"))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let m = parse(&lines);
    assert_documented(&m, "ingest");
    assert_eq!(total(&m, names::NOTIFICATIONS_RECEIVED), 1.0);
    assert_eq!(total(&m, names::NOTIFICATIONS_ENQUEUED), 1.0);
    assert_eq!(total(&m, names::NOTIFICATIONS_REJECTED), 0.0);
    assert_eq!(total(&m, names::ENQUEUED_VIA_S3), 0.0);

    let (resp, lines) = metrics::capture(ingest.handle(signed_post(&body, "forged"))).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let m = parse(&lines);
    assert_documented(&m, "ingest");
    assert_eq!(total(&m, names::NOTIFICATIONS_REJECTED), 1.0);
    assert_eq!(total(&m, names::NOTIFICATIONS_ENQUEUED), 0.0);
    let by_reason: Vec<(&str, f64)> = m
        .iter()
        .filter(|(n, d, _, _)| n == names::NOTIFICATIONS_REJECTED && d == &["Function", "Reason"])
        .map(|(_, _, v, doc)| (doc["Reason"].as_str().unwrap(), v[0]))
        .collect();
    assert_eq!(by_reason, [("invalid_signature", 1.0)]);

    let large = message_created("n-large", "grant-1", "msg-2", 300_000);
    let (resp, lines) =
        metrics::capture(ingest.handle(signed_post(&large, "current-secret"))).await;
    assert_eq!(resp.status(), 200);
    let m = parse(&lines);
    assert_eq!(total(&m, names::ENQUEUED_VIA_S3), 1.0);

    // A challenge is not a notification: no metrics.
    let (resp, lines) = metrics::capture(ingest.handle(get(Api::Http, "challenge=abc"))).await;
    assert_eq!(resp.status(), 200);
    assert!(lines.is_empty(), "{lines:?}");
}

#[tokio::test]
async fn a_consumer_batch_prints_its_writes_fetches_calls_and_lag() {
    let p = Pipeline::start(PipelineOptions {
        emulator: EmulatorConfig {
            time_scale: 50.0,
            initial_messages_per_grant: 0,
            initial_events_per_grant: 0,
            recurring_series_per_grant: 0,
            ..EmulatorConfig::default()
        },
        ..PipelineOptions::default()
    })
    .await;
    let g = p.grant();
    // One full notification (written as is) and one truncated (fetched from Nylas).
    p.emulator.create_message(&g, MessageSpec::default());
    p.emulator.create_message(
        &g,
        MessageSpec {
            body_size: Some(1_100_000),
            ..Default::default()
        },
    );
    p.emulator.emit_notification(
        "booking.created",
        &g,
        serde_json::json!({"id": "b1", "grant_id": g}),
    );
    assert!(
        p.emulator
            .wait_for_deliveries_idle(std::time::Duration::from_secs(30))
            .await
    );
    assert_eq!(p.aws.queue_depth(&p.notifications.queue_url).await.0, 3);

    let (_, lines) = metrics::capture(p.run_batch()).await;
    let m = parse(&lines);
    assert_documented(&m, "consumer");
    assert_eq!(total(&m, names::RECORDS_PROCESSED), 3.0);
    assert_eq!(total(&m, names::OBJECTS_WRITTEN), 2.0);
    assert_eq!(total(&m, names::FETCHES_AVOIDED), 1.0);
    assert_eq!(total(&m, names::UNKNOWN_TYPES), 1.0);
    assert_eq!(total(&m, names::RECORD_FAILURES), 0.0);
    assert_eq!(total(&m, names::OBJECTS_STALE), 0.0);
    let calls: BTreeSet<(String, String, u64)> = m
        .iter()
        .filter(|(n, _, _, _)| n == names::NYLAS_CALLS)
        .map(|(_, d, v, doc)| {
            assert_eq!(d, &["Function", "Endpoint", "Status"]);
            (
                doc["Endpoint"].as_str().unwrap().to_string(),
                doc["Status"].as_str().unwrap().to_string(),
                v[0] as u64,
            )
        })
        .collect();
    assert_eq!(
        calls,
        BTreeSet::from([("messages.get".to_string(), "200".to_string(), 1)])
    );
    let lags: Vec<f64> = m
        .iter()
        .filter(|(n, _, _, _)| n == names::CHANGE_TO_STORE_LAG)
        .flat_map(|(_, _, v, _)| v.clone())
        .collect();
    assert_eq!(
        lags.len(),
        2,
        "one sample per object written from a notification"
    );
    // Emulated time runs 50x: a few real seconds are minutes of notification time at most.
    assert!(lags.iter().all(|l| (0.0..3600.0).contains(l)), "{lags:?}");

    // The next batch reports its own work (per-invocation deltas, not totals since the cold start).
    let bodies: Vec<String> = vec![notification(
        "message.created",
        p.emulator.now(),
        &serde_json::json!({"id": "m-direct", "grant_id": g, "object": "message"}),
    )];
    p.enqueue_raw(&bodies).await;
    let (_, lines) = metrics::capture(p.run_batch()).await;
    let m = parse(&lines);
    assert_eq!(total(&m, names::RECORDS_PROCESSED), 1.0);
    assert_eq!(total(&m, names::OBJECTS_WRITTEN), 1.0);
    assert_eq!(total(&m, names::FETCHES_AVOIDED), 1.0);
    assert!(m.iter().all(|(n, _, _, _)| n != names::NYLAS_CALLS));
}
