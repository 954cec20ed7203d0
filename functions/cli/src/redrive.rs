//! `redrive`: moves dead letters back to the queue they came from (same body, same message
//! attributes), printing what each held (type, notification id, grant; never the body). A
//! message is deleted from the DLQ only after its source queue accepted the copy.
//!
//! A claim-checked notification whose S3 payload is gone is reported: moved if its attributes
//! name the object (the consumer fetches it from Nylas), left in the DLQ otherwise (nothing could
//! process it: the grant's next reconcile repairs the object). A payload that is there is copied
//! onto itself before its message moves, which restarts its lifecycle: the redriven message
//! starts a new life, and its payload must outlive it.

use std::collections::{HashMap, HashSet};

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use nylas_sync::jobs::ReconcileJob;
use nylas_sync::queue::{attr, stand_in_trigger, ClaimCheck};
use serde_json::Value;

use crate::Aws;

/// Seconds a received dead letter stays hidden while it is being moved (or reported).
const VISIBILITY_SECONDS: i32 = 60;

fn sqs_err(what: &str, e: impl std::error::Error + 'static) -> String {
    format!("{what}: {}", aws_sdk_sqs::error::DisplayErrorContext(e))
}

/// The DLQ → source pairs to work on.
async fn pairs(aws: &Aws, queues: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut given: Vec<(String, Option<String>)> = queues
        .iter()
        .map(|q| match q.split_once('=') {
            Some((dlq, src)) => (dlq.trim().to_string(), Some(src.trim().to_string())),
            None => (q.trim().to_string(), None),
        })
        .collect();
    if given.is_empty() {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        for (dlq, src) in [
            ("NOTIFICATIONS_DLQ_URL", "NOTIFICATIONS_QUEUE_URL"),
            ("RECONCILE_DLQ_URL", "RECONCILE_QUEUE_URL"),
        ] {
            if let Some(d) = var(dlq) {
                given.push((d, var(src)));
            }
        }
    }
    if given.is_empty() {
        return Err(
            "no dead-letter queue: set NOTIFICATIONS_DLQ_URL / RECONCILE_DLQ_URL or pass --queue DLQ_URL[=SOURCE_URL]"
                .into(),
        );
    }
    let mut out = Vec::new();
    for (dlq, src) in given {
        let src = match src {
            Some(s) if !s.is_empty() => s,
            _ => {
                let sources = aws
                    .sqs
                    .list_dead_letter_source_queues()
                    .queue_url(&dlq)
                    .send()
                    .await
                    .map_err(|e| sqs_err(&format!("could not find the source of {dlq}"), e))?
                    .queue_urls;
                match sources.as_slice() {
                    [one] => one.clone(),
                    [] => return Err(format!("no queue sends its dead letters to {dlq}: pass --queue {dlq}=SOURCE_URL")),
                    _ => return Err(format!("several queues send their dead letters to {dlq}: pass --queue {dlq}=SOURCE_URL")),
                }
            }
        };
        out.push((dlq, src));
    }
    Ok(out)
}

/// What a message held, from its attributes or its body: never the body itself.
pub fn describe(m: &Message) -> String {
    let attribute = |name: &str| {
        m.message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .map(str::to_string)
    };
    let receives = m
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .map(|n| format!(", received {n} times"))
        .unwrap_or_default();
    if let Some(kind) = attribute(attr::TYPE) {
        return format!(
            "notification {kind} id={} grant={} ({} payload{receives})",
            attribute(attr::NOTIFICATION_ID).unwrap_or_else(|| "?".into()),
            attribute(attr::GRANT_ID).unwrap_or_else(|| "-".into()),
            attribute(attr::PAYLOAD).unwrap_or_else(|| "inline".into()),
        );
    }
    let body = m.body().unwrap_or_default();
    if let Ok(job) = serde_json::from_str::<ReconcileJob>(body) {
        let kind = serde_json::to_value(job.kind)
            .ok()
            .and_then(|k| k.as_str().map(str::to_string))
            .unwrap_or_default();
        return format!(
            "reconcile job {kind} grant={}{}{receives}",
            job.grant_id,
            job.since
                .map(|s| format!(" since={}", crate::time::format_utc(s)))
                .unwrap_or_default()
        );
    }
    if let Some(check) = ClaimCheck::from_message_body(body) {
        return format!(
            "notification stored in S3 (s3://{}/{}, {} bytes{receives})",
            check.bucket, check.key, check.bytes
        );
    }
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        if let Some(kind) = v.get("type").and_then(Value::as_str) {
            let grant = v["data"]["object"]["grant_id"]
                .as_str()
                .or(v["data"]["grant_id"].as_str())
                .unwrap_or("-");
            return format!(
                "notification {kind} id={} grant={grant}{receives}",
                v.get("id").and_then(Value::as_str).unwrap_or("?")
            );
        }
    }
    format!("unrecognised message ({} bytes{receives})", body.len())
}

/// Whether a message's claim-checked payload is gone from S3, and if so whether its attributes
/// still name an object the consumer can fetch instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PayloadGone {
    No,
    Recoverable,
    Unrecoverable,
}

async fn payload_gone(aws: &Aws, m: &Message) -> PayloadGone {
    let Some(check) = ClaimCheck::from_message_body(m.body().unwrap_or_default()) else {
        return PayloadGone::No;
    };
    match aws
        .s3
        .head_object()
        .bucket(&check.bucket)
        .key(&check.key)
        .send()
        .await
    {
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
        // Present, or unknown (no permission, S3 down): moved as before.
        _ => return PayloadGone::No,
    }
    let attribute = |name: &str| {
        m.message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .filter(|v| !v.trim().is_empty())
    };
    let names_object = attribute(attr::TYPE).and_then(stand_in_trigger).is_some()
        && attribute(attr::GRANT_ID).is_some()
        && attribute(attr::OBJECT_ID).is_some();
    if names_object {
        PayloadGone::Recoverable
    } else {
        PayloadGone::Unrecoverable
    }
}

/// Copies a claim-checked payload onto itself, so the bucket's lifecycle counts its days from now.
async fn renew_payload(aws: &Aws, m: &Message) -> Option<&'static str> {
    let check = ClaimCheck::from_message_body(m.body()?)?;
    // `x-amz-copy-source` is URL-encoded; keys hold `[A-Za-z0-9._%-]` and `/` only.
    let source = format!("{}/{}", check.bucket, check.key.replace('%', "%25"));
    let renewed = aws
        .s3
        .copy_object()
        .bucket(&check.bucket)
        .key(&check.key)
        .copy_source(source)
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .content_type("application/json")
        .send()
        .await;
    Some(match renewed {
        Ok(_) => " [payload renewed]",
        Err(_) => " [payload could not be renewed: it expires on its first schedule]",
    })
}

const GONE_RECOVERABLE: &str =
    " [payload gone from S3: the consumer will fetch the object from Nylas]";
const GONE_SKIPPED: &str = " [payload gone from S3 and nothing names the object: left in the DLQ; the grant's next reconcile repairs it]";

async fn depth(aws: &Aws, queue: &str) -> u64 {
    aws.sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .ok()
        .and_then(|o| o.attributes)
        .and_then(|a| {
            a.get(&QueueAttributeName::ApproximateNumberOfMessages)
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn short(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

async fn receive(aws: &Aws, dlq: &str) -> Result<Vec<Message>, String> {
    let out = aws
        .sqs
        .receive_message()
        .queue_url(dlq)
        .max_number_of_messages(10)
        .visibility_timeout(VISIBILITY_SECONDS)
        .wait_time_seconds(1)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .map_err(|e| sqs_err(&format!("could not receive from {dlq}"), e))?;
    Ok(out.messages.unwrap_or_default())
}

/// Moves one batch; returns (moved, failed) descriptions.
async fn move_batch(
    aws: &Aws,
    dlq: &str,
    source: &str,
    batch: &[Message],
    notes: &HashMap<String, &'static str>,
) -> Result<(Vec<String>, Vec<String>), String> {
    let mut entries = Vec::new();
    for (i, m) in batch.iter().enumerate() {
        let attributes: HashMap<_, _> = m.message_attributes().cloned().unwrap_or_default();
        entries.push(
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(m.body().unwrap_or_default())
                .set_message_attributes((!attributes.is_empty()).then_some(attributes))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    let sent = aws
        .sqs
        .send_message_batch()
        .queue_url(source)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| sqs_err(&format!("{source} did not accept the messages"), e))?;
    let ok: HashSet<usize> = sent
        .successful
        .iter()
        .filter_map(|s| s.id.parse().ok())
        .collect();
    let deletes: Vec<DeleteMessageBatchRequestEntry> = batch
        .iter()
        .enumerate()
        .filter(|(i, _)| ok.contains(i))
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle()?)
                .build()
                .ok()
        })
        .collect();
    if !deletes.is_empty() {
        aws.sqs
            .delete_message_batch()
            .queue_url(dlq)
            .set_entries(Some(deletes))
            .send()
            .await
            .map_err(|e| {
                sqs_err(
                    &format!("moved, but could not delete from {dlq} (they may be moved twice)"),
                    e,
                )
            })?;
    }
    let (mut moved, mut failed) = (Vec::new(), Vec::new());
    for (i, m) in batch.iter().enumerate() {
        let note = notes
            .get(m.message_id().unwrap_or_default())
            .copied()
            .unwrap_or_default();
        if ok.contains(&i) {
            moved.push(format!("{}{note}", describe(m)));
        } else {
            failed.push(format!("{}{note}", describe(m)));
        }
    }
    Ok((moved, failed))
}

/// Makes received messages visible again at once (after a dry run).
async fn release(aws: &Aws, dlq: &str, messages: &[Message]) {
    for chunk in messages.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        let _ = aws
            .sqs
            .change_message_visibility_batch()
            .queue_url(dlq)
            .set_entries(Some(entries))
            .send()
            .await;
    }
}

pub async fn run(aws: &Aws, queues: &[String], dry_run: bool) -> Result<(), String> {
    let pairs = pairs(aws, queues).await?;
    let mut failures = 0usize;
    for (dlq, source) in pairs {
        let expected = depth(aws, &dlq).await;
        let bar = indicatif::ProgressBar::new(expected);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(short(&dlq).to_string());
        let (from, to) = (short(&dlq).to_string(), short(&source).to_string());
        let verb = if dry_run { "would move" } else { "moved" };
        let mut seen: HashSet<String> = HashSet::new();
        let mut held: Vec<Message> = Vec::new();
        let mut count = 0usize;
        let mut skipped = 0usize;
        loop {
            let batch = receive(aws, &dlq).await?;
            let fresh: Vec<Message> = batch
                .into_iter()
                .filter(|m| seen.insert(m.message_id().unwrap_or_default().to_string()))
                .collect();
            if fresh.is_empty() {
                break;
            }
            let mut notes: HashMap<String, &'static str> = HashMap::new();
            let mut movable = Vec::new();
            let mut left = Vec::new();
            for m in fresh {
                let id = m.message_id().unwrap_or_default().to_string();
                match payload_gone(aws, &m).await {
                    PayloadGone::No if dry_run => movable.push(m),
                    PayloadGone::No => {
                        if let Some(note) = renew_payload(aws, &m).await {
                            notes.insert(id, note);
                        }
                        movable.push(m);
                    }
                    PayloadGone::Recoverable => {
                        notes.insert(id, GONE_RECOVERABLE);
                        movable.push(m);
                    }
                    PayloadGone::Unrecoverable => left.push(m),
                }
            }
            let (done, failed) = if dry_run {
                let d = movable
                    .iter()
                    .map(|m| {
                        let note = notes
                            .get(m.message_id().unwrap_or_default())
                            .copied()
                            .unwrap_or_default();
                        format!("{}{note}", describe(m))
                    })
                    .collect();
                held.extend(movable);
                (d, Vec::new())
            } else if movable.is_empty() {
                (Vec::new(), Vec::new())
            } else {
                move_batch(aws, &dlq, &source, &movable, &notes).await?
            };
            bar.suspend(|| {
                for d in &done {
                    println!("{verb} {from} -> {to}: {d}");
                }
                for d in &failed {
                    println!("NOT moved {from} -> {to}: {d}");
                }
                for m in &left {
                    println!("skipped {from}: {}{GONE_SKIPPED}", describe(m));
                }
            });
            skipped += left.len();
            held.extend(left);
            count += done.len();
            failures += failed.len();
            if count as u64 > bar.length().unwrap_or(0) {
                bar.set_length(count as u64);
            }
            bar.set_position(count as u64);
        }
        bar.finish_and_clear();
        // Dry-run messages and skipped ones are visible again at once.
        release(aws, &dlq, &held).await;
        let skipped = if skipped > 0 {
            format!("; {skipped} skipped (payload gone)")
        } else {
            String::new()
        };
        println!("{from}: {count} message(s) {verb} to {to}{skipped}");
    }
    if failures > 0 {
        return Err(format!(
            "{failures} message(s) could not be moved and stay in their DLQ"
        ));
    }
    Ok(())
}
