//! `reconcile` and `backfill`: reconcile jobs on the reconcile queue, as the scheduler and the
//! consumer send them.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use nylas_sync::grants::{grant_of, GrantStatus};
use nylas_sync::jobs::ReconcileJob;
use serde_json::json;

use crate::{require, Aws, Settings};

/// A job as the reconciler reads it. Built through serde so that fields the reconciler adds
/// (with defaults) need no change here.
fn job(grant_id: &str, kind: &str, since: Option<i64>) -> Result<String, String> {
    let mut v = json!({"grant_id": grant_id, "kind": kind});
    if let Some(s) = since {
        v["since"] = json!(s);
    }
    let job: ReconcileJob = serde_json::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_string(&job).map_err(|e| e.to_string())
}

/// Refuses a grant the grants table does not hold as active (when the table is configured):
/// the reconciler would ignore the job.
async fn check_grant(settings: &Settings, aws: &Aws, grant_id: &str) -> Result<(), String> {
    let Some(table) = settings.grants_table.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let out = aws
        .ddb
        .get_item()
        .table_name(table)
        .key("grant_id", AttributeValue::S(grant_id.into()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| {
            format!(
                "could not read {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            )
        })?;
    match out.item.as_ref().and_then(grant_of) {
        None => Err(format!(
            "grant {grant_id} is not in {table}; nothing was enqueued"
        )),
        Some(g) if g.status != GrantStatus::Active => Err(format!(
            "grant {grant_id} is {}; only active grants are reconciled; nothing was enqueued",
            g.status.as_str()
        )),
        Some(_) => Ok(()),
    }
}

async fn send_one(aws: &Aws, queue: &str, body: String) -> Result<(), String> {
    aws.sqs
        .send_message()
        .queue_url(queue)
        .message_body(body)
        .send()
        .await
        .map_err(|e| {
            format!(
                "SQS did not accept the job: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        })?;
    Ok(())
}

pub async fn reconcile_one(settings: &Settings, aws: &Aws, grant_id: &str) -> Result<(), String> {
    let queue = require(
        &settings.reconcile_queue_url,
        "reconcile-queue-url",
        "RECONCILE_QUEUE_URL",
    )?;
    check_grant(settings, aws, grant_id).await?;
    send_one(aws, queue, job(grant_id, "incremental", None)?).await?;
    println!("enqueued an incremental reconcile of {grant_id}");
    Ok(())
}

pub async fn backfill(
    settings: &Settings,
    aws: &Aws,
    grant_id: &str,
    since: &str,
) -> Result<(), String> {
    let queue = require(
        &settings.reconcile_queue_url,
        "reconcile-queue-url",
        "RECONCILE_QUEUE_URL",
    )?;
    let now = crate::time::now();
    let since = crate::time::parse_since(since, now)?;
    if since > now {
        return Err(format!(
            "--since {} is in the future",
            crate::time::format_utc(since)
        ));
    }
    check_grant(settings, aws, grant_id).await?;
    send_one(aws, queue, job(grant_id, "backfill", Some(since))?).await?;
    println!(
        "enqueued a backfill of {grant_id} from {}",
        crate::time::format_utc(since)
    );
    Ok(())
}

/// Every active grant's id, by a paginated scan.
pub async fn active_grants(aws: &Aws, table: &str) -> Result<Vec<String>, String> {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("scanning {table}"));
    let mut ids = Vec::new();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let out = aws
            .ddb
            .scan()
            .table_name(table)
            .projection_expression("grant_id")
            .filter_expression("#s = :active")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":active", AttributeValue::S("active".into()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "could not scan {table}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                )
            })?;
        ids.extend(
            out.items()
                .iter()
                .filter_map(|i| i.get("grant_id").and_then(|v| v.as_s().ok()).cloned()),
        );
        spinner.set_message(format!("scanning {table}: {} active grants", ids.len()));
        spinner.tick();
        start = out.last_evaluated_key.filter(|k| !k.is_empty());
        if start.is_none() {
            break;
        }
    }
    spinner.finish_and_clear();
    ids.sort();
    Ok(ids)
}

pub async fn reconcile_all(settings: &Settings, aws: &Aws) -> Result<(), String> {
    let queue = require(
        &settings.reconcile_queue_url,
        "reconcile-queue-url",
        "RECONCILE_QUEUE_URL",
    )?;
    let table = require(&settings.grants_table, "grants-table", "GRANTS_TABLE")?;
    let ids = active_grants(aws, table).await?;
    let bar = indicatif::ProgressBar::new(ids.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("enqueueing [{bar:30}] {pos}/{len} grants")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut refused = Vec::new();
    for chunk in ids.chunks(10) {
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, g) in chunk.iter().enumerate() {
            entries.push(
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(job(g, "incremental", None)?)
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        // Entries SQS refuses are sent once more; any refused twice are reported.
        for attempt in 0..2 {
            let out = aws
                .sqs
                .send_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries.clone()))
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "SQS did not accept the batch: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    )
                })?;
            let failed: Vec<String> = out.failed.iter().map(|f| f.id.clone()).collect();
            entries.retain(|e| failed.contains(&e.id));
            if entries.is_empty() {
                break;
            }
            if attempt == 1 {
                refused.extend(
                    entries
                        .iter()
                        .filter_map(|e| e.id.parse::<usize>().ok())
                        .map(|i| chunk[i].clone()),
                );
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let sent = ids.len() - refused.len();
    println!("enqueued an incremental reconcile of {sent} active grants");
    if refused.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "SQS refused the jobs of {} grants: {}",
            refused.len(),
            refused.join(", ")
        ))
    }
}
