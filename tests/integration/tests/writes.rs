//! What the objects table's writes cost, against moto: a message's body is written once, to
//! S3, and a flag or folder change rewrites only the message's small item, with the same
//! monotonic versions.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use nylas_emulator::{EmulatorConfig, MessageChange, MessageSpec};
use nylas_sync::store::{
    body_prefix, ObjectRef, ObjectState, PutOutcome, Source, BODY_HASH_ATTRIBUTE,
};
use serde_json::json;
use support::*;

const SETTLE: Duration = Duration::from_secs(60);

fn options() -> PipelineOptions {
    PipelineOptions {
        emulator: EmulatorConfig {
            time_scale: 50.0,
            initial_messages_per_grant: 0,
            initial_events_per_grant: 0,
            recurring_series_per_grant: 0,
            ..EmulatorConfig::default()
        },
        ..PipelineOptions::default()
    }
}

/// Every item of a grant's partition, as DynamoDB holds it.
async fn raw_items(p: &Pipeline, grant: &str) -> Vec<HashMap<String, AttributeValue>> {
    p.aws
        .ddb()
        .query()
        .table_name(&p.objects_table)
        .key_condition_expression("grant_id = :g")
        .expression_attribute_values(":g", AttributeValue::S(grant.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("query")
        .items
        .unwrap_or_default()
}

async fn raw_item(p: &Pipeline, grant: &str, sk: &str) -> Option<HashMap<String, AttributeValue>> {
    raw_items(p, grant)
        .await
        .into_iter()
        .find(|i| i.get("sk") == Some(&AttributeValue::S(sk.into())))
}

/// The bucket's keys of a message's bodies.
async fn bodies(p: &Pipeline, grant: &str, message: &str) -> Vec<String> {
    let prefix = body_prefix(grant, message);
    p.aws
        .keys(&p.bucket)
        .await
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .collect()
}

fn message(id: &str) -> ObjectRef {
    ObjectRef::Message { id: id.into() }
}

#[tokio::test]
async fn a_flag_change_of_a_50_kb_message_rewrites_only_its_small_item() {
    let p = Pipeline::start(options()).await;
    let g = p.grant();
    let m = p.emulator.create_message(
        &g,
        MessageSpec {
            body_size: Some(50_000),
            ..Default::default()
        },
    );
    let id = id_of(&m);
    p.settle(SETTLE).await;
    let stored_bodies = bodies(&p, &g, &id).await;
    assert_eq!(stored_bodies.len(), 1, "the body in the bucket");
    let head = raw_item(&p, &g, &format!("message#{id}"))
        .await
        .expect("the message item");
    assert!(head.contains_key(BODY_HASH_ATTRIBUTE));
    assert!(
        store_bytes(&head) < 4_000,
        "the message item holds no body: {} bytes",
        store_bytes(&head)
    );

    let meter = &p.consumer.objects.writes;
    let (units, one_item, puts) = (meter.units(), meter.one_item_units(), meter.payload_puts());
    for unread in [false, true, false] {
        p.emulator.update_message(
            &g,
            &id,
            MessageChange {
                unread: Some(unread),
                ..Default::default()
            },
        );
        p.settle(SETTLE).await;
    }
    p.emulator.update_message(
        &g,
        &id,
        MessageChange {
            folders: Some(vec!["ARCHIVE".into()]),
            ..Default::default()
        },
    );
    p.settle(SETTLE).await;

    let (spent, as_one_item) = (meter.units() - units, meter.one_item_units() - one_item);
    assert!(spent <= 4 * 3, "four changes cost {spent} write units");
    assert!(
        as_one_item >= 4 * 49,
        "written whole they would have cost {as_one_item}"
    );
    assert_eq!(meter.payload_puts(), puts, "the body was not written again");
    assert_eq!(bodies(&p, &g, &id).await, stored_bodies);
    let stored = p.stored(&g, &message(&id)).await.expect("stored");
    let truth = p
        .emulator
        .truth()
        .grants
        .into_iter()
        .flat_map(|g| g.messages)
        .find(|t| t["id"] == id.as_str())
        .expect("truth");
    assert_eq!(
        stored.object.as_ref(),
        Some(&truth),
        "body and flags both current"
    );
    assert_eq!(p.diff_against_truth(false).await, Vec::<String>::new());
}

/// Bytes of an item by DynamoDB's rules.
fn store_bytes(item: &HashMap<String, AttributeValue>) -> usize {
    nylas_sync::store::item_bytes(item)
}

#[tokio::test]
async fn a_deleted_message_takes_its_body_with_it_and_a_purge_leaves_nothing() {
    let p = Pipeline::start(options()).await;
    let g = p.grant();
    let gone = p.emulator.create_message(
        &g,
        MessageSpec {
            body_size: Some(5_000),
            ..Default::default()
        },
    );
    let kept = p.emulator.create_message(
        &g,
        MessageSpec {
            body_size: Some(5_000),
            ..Default::default()
        },
    );
    p.settle(SETTLE).await;
    assert_eq!(bodies(&p, &g, &id_of(&gone)).await.len(), 1);
    p.emulator.delete_message(&g, &id_of(&gone));
    p.settle(SETTLE).await;

    assert!(
        bodies(&p, &g, &id_of(&gone)).await.is_empty(),
        "the deleted message's body is gone"
    );
    assert!(
        p.stored(&g, &message(&id_of(&gone)))
            .await
            .expect("tombstone")
            .deleted
    );
    assert_eq!(bodies(&p, &g, &id_of(&kept)).await.len(), 1);
    assert_eq!(p.diff_against_truth(false).await, Vec::<String>::new());

    p.reconciler.objects.purge_grant(&g).await.expect("purge");
    assert_eq!(
        raw_items(&p, &g).await.len(),
        0,
        "bodies purged with the rest"
    );
}

#[tokio::test]
async fn an_older_state_of_a_message_is_refused_without_a_write() {
    let p = Pipeline::start(options()).await;
    let store = &p.consumer.objects;
    let g = "g-stale";
    let state = |version: i64, unread: bool| ObjectState {
        grant_id: g.into(),
        object_ref: message("m1"),
        version,
        object: Some(json!({
            "id": "m1", "grant_id": g, "object": "message", "date": 1_700_000_000,
            "unread": unread, "body": "b".repeat(20_000),
        })),
        source: Source::Webhook,
        changed_at: None,
    };
    assert_eq!(
        store
            .put_if_newer(&state(2_000, true), 1)
            .await
            .expect("put"),
        PutOutcome::Written
    );
    let requests = store.writes.requests();
    let outcome = store
        .put_if_newer(&state(1_000, false), 1)
        .await
        .expect("put");
    assert!(matches!(outcome, PutOutcome::Stale(e) if e.version == 2_000));
    assert_eq!(store.writes.requests(), requests, "no write was sent");
    let stored = store
        .get(g, &message("m1"))
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.version, 2_000);
    assert_eq!(
        stored.object.as_ref().map(|o| o["unread"].clone()),
        Some(json!(true))
    );
}

#[tokio::test]
async fn a_message_stored_whole_by_an_earlier_release_is_read_and_then_split_by_its_next_change() {
    let p = Pipeline::start(options()).await;
    let store = &p.consumer.objects;
    let g = "g-legacy";
    let object = json!({
        "id": "m1", "grant_id": g, "object": "message", "date": 1_700_000_000,
        "unread": true, "folders": ["INBOX"], "body": "<p>".repeat(3_000),
    });
    // The item as releases before bodies were kept apart wrote it: the body inside the object.
    let legacy = HashMap::from([
        ("grant_id".to_string(), AttributeValue::S(g.into())),
        ("sk".to_string(), AttributeValue::S("message#m1".into())),
        ("kind".to_string(), AttributeValue::S("message".into())),
        ("object_id".to_string(), AttributeValue::S("m1".into())),
        ("version".to_string(), AttributeValue::N("1000".into())),
        ("deleted".to_string(), AttributeValue::Bool(false)),
        (
            "content_hash".to_string(),
            AttributeValue::S("legacy".into()),
        ),
        ("source".to_string(), AttributeValue::S("webhook".into())),
        ("written_at".to_string(), AttributeValue::N("1000".into())),
        (
            "object".to_string(),
            serde_dynamo::to_attribute_value(&object).expect("encode"),
        ),
    ]);
    p.aws
        .ddb()
        .put_item()
        .table_name(&p.objects_table)
        .set_item(Some(legacy))
        .send()
        .await
        .expect("legacy item");
    let read = store
        .get(g, &message("m1"))
        .await
        .expect("get")
        .expect("held");
    assert_eq!(read.object.as_ref(), Some(&object));

    let mut changed = object.clone();
    changed["unread"] = json!(false);
    let state = ObjectState {
        grant_id: g.into(),
        object_ref: message("m1"),
        version: 2_000,
        object: Some(changed.clone()),
        source: Source::Webhook,
        changed_at: None,
    };
    assert_eq!(
        store.put_if_newer(&state, 1).await.expect("put"),
        PutOutcome::Written
    );
    let head = raw_item(&p, g, "message#m1").await.expect("message item");
    assert!(
        head.contains_key(BODY_HASH_ATTRIBUTE),
        "split on its next change"
    );
    assert_eq!(bodies(&p, g, "m1").await.len(), 1);
    let read = store
        .get(g, &message("m1"))
        .await
        .expect("get")
        .expect("held");
    assert_eq!(read.object.as_ref(), Some(&changed));
    let listed = store.list_grant(g).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].object.as_ref(), Some(&changed));
}
