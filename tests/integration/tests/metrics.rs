//! The metrics the handlers publish: each invocation's CloudWatch Embedded Metric Format lines
//! parse as valid EMF, carry what happened (against moto and the Nylas emulator), and use only
//! the names the README's "Operating" table documents.

use std::collections::{BTreeMap, BTreeSet};

use nylas_emulator::{EmulatorConfig, MessageSpec};
use nylas_sync::ingest::Ingest;
use nylas_sync::metrics::{self, names};
use serde_json::Value;
use support::emf::validate_line;
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

/// What [`metrics::Emf`] renders: one valid EMF line per invocation unless labels or EMF's limits
/// need more, nothing lost between lines.
mod lines {
    use nylas_sync::metrics::{capture, names, Emf, Unit, MAX_VALUES_PER_METRIC};
    use serde_json::Value;
    use support::emf::validate_line;

    fn emf() -> Emf {
        Emf::new("ingest")
            .with_namespace("NylasSync")
            .with_timestamp_ms(1_767_225_600_000)
    }

    fn parse(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn one_invocation_is_one_valid_line_with_function_dimension() {
        let mut m = emf();
        m.count(names::NOTIFICATIONS_RECEIVED, 1)
            .count(names::NOTIFICATIONS_ENQUEUED, 1)
            .count(names::NOTIFICATIONS_REJECTED, 0);
        let lines = m.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let metrics = validate_line(&lines[0]).unwrap();
        assert_eq!(metrics.len(), 3);
        let doc = parse(&lines[0]);
        assert_eq!(doc["Function"], "ingest");
        assert_eq!(doc["NotificationsReceived"], 1);
        assert_eq!(doc["NotificationsRejected"], 0);
        assert_eq!(doc["_aws"]["Timestamp"], 1_767_225_600_000i64);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "NylasSync"
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["Function"]])
        );
    }

    #[test]
    fn a_rejection_reason_shares_the_line_with_the_total() {
        let mut m = emf();
        m.count(names::NOTIFICATIONS_RECEIVED, 1)
            .count(names::NOTIFICATIONS_REJECTED, 1)
            .count_with(
                names::NOTIFICATIONS_REJECTED,
                &[("Reason", "invalid_signature")],
                1,
            );
        let lines = m.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let metrics = validate_line(&lines[0]).unwrap();
        assert!(metrics.iter().any(|m| m.name == "NotificationsRejected"
            && m.dimensions == ["Function", "Reason"]
            && m.values == [1.0]));
        assert_eq!(parse(&lines[0])["Reason"], "invalid_signature");
    }

    #[test]
    fn labelled_groups_that_disagree_take_a_line_each_and_none_is_lost() {
        let mut m = Emf::new("consumer").with_timestamp_ms(1_767_225_600_000);
        m.count(names::RECORDS_PROCESSED, 10);
        m.count_with(
            names::NYLAS_CALLS,
            &[("Endpoint", "messages.get"), ("Status", "200")],
            4,
        );
        m.count_with(
            names::NYLAS_CALLS,
            &[("Endpoint", "messages.get"), ("Status", "429")],
            1,
        );
        m.count_with(
            names::NYLAS_CALLS,
            &[("Endpoint", "events.get"), ("Status", "200")],
            2,
        );
        m.count_with(
            names::NYLAS_CALLS,
            &[("Endpoint", "messages.get"), ("Status", "200")],
            1,
        );
        let lines = m.lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        let mut calls = Vec::new();
        for l in &lines {
            for m in validate_line(l).unwrap() {
                if m.name == "NylasCalls" {
                    let doc = parse(l);
                    assert_eq!(m.dimensions, ["Function", "Endpoint", "Status"]);
                    calls.push((
                        doc["Endpoint"].as_str().unwrap().to_string(),
                        doc["Status"].as_str().unwrap().to_string(),
                        m.values[0],
                    ));
                }
            }
        }
        calls.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(
            calls,
            [
                ("events.get".into(), "200".into(), 2.0),
                ("messages.get".into(), "200".into(), 5.0),
                ("messages.get".into(), "429".into(), 1.0)
            ]
        );
        // The function-level count is published once, not once per line.
        let records: usize = lines
            .iter()
            .filter(|l| parse(l).get("RecordsProcessed").is_some())
            .count();
        assert_eq!(records, 1);
    }

    #[test]
    fn more_than_a_hundred_samples_are_split_across_lines() {
        let mut m = emf();
        for i in 0..250 {
            m.sample(names::CHANGE_TO_STORE_LAG, Unit::Seconds, i as f64);
        }
        m.count(names::RECORDS_PROCESSED, 250);
        let lines = m.lines();
        assert_eq!(lines.len(), 3);
        let mut all = Vec::new();
        for l in &lines {
            for m in validate_line(l).unwrap() {
                if m.name == names::CHANGE_TO_STORE_LAG {
                    assert!(m.values.len() <= MAX_VALUES_PER_METRIC);
                    all.extend(m.values);
                }
            }
        }
        assert_eq!(all, (0..250).map(|i| i as f64).collect::<Vec<_>>());
    }

    #[test]
    fn write_to_puts_one_newline_terminated_line_per_document() {
        let mut m = emf();
        m.count("A", 1);
        let mut out = Vec::new();
        m.write_to(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(text.lines().count(), 1);
        validate_line(text.trim_end()).unwrap();
    }

    #[test]
    fn label_values_are_escaped_as_json() {
        let mut m = emf();
        m.count_with("A", &[("Reason", "quote\" and \\ and \n")], 1);
        let line = &m.lines()[0];
        validate_line(line).unwrap();
        assert_eq!(parse(line)["Reason"], "quote\" and \\ and \n");
    }

    #[tokio::test]
    async fn capture_collects_the_lines_of_its_own_task_only() {
        let ((), lines) = capture(async {
            let mut m = emf();
            m.count("A", 1);
            m.flush();
        })
        .await;
        assert_eq!(lines.len(), 1);
        validate_line(&lines[0]).unwrap();
    }
}
