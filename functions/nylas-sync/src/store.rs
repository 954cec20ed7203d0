//! The objects table: synced messages, events, calendars and folders, written only through
//! `put_if_newer`, a conditional `PutItem` on `version`, so an older state can never replace a
//! newer one and a tombstone can never be undone by a late create or update.
//!
//! Keys: partition `grant_id`, sort `sk` = `message#<id>` | `event#<calendar_id>#<id>` |
//! `calendar#<id>` | `folder#<id>`. Objects are kept as Nylas sent them (unknown fields
//! included).
//!
//! A message's body never changes, while its flags and folders change often, and DynamoDB bills
//! a write by the size of the item written (refused writes included). So a body of
//! [`BODY_APART_MIN_BYTES`] or more goes to S3, once, under a key of its message
//! (`bodies/<grant>/<message>/<version>`), before the first message item that points to it
//! (`body_ref`, with `body_hash`); a flag or folder change then rewrites only the message's small
//! item, keeping the pointer. An object too large for an item even without its body goes to S3
//! whole. A deleted message's body is deleted after its tombstone is written.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, ReturnValuesOnConditionCheckFailure, WriteRequest,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Milliseconds since the Unix epoch: the unit of `version`.
pub type Version = i64;

/// Largest serialized object kept inline; above it the body goes to S3 (DynamoDB's item limit is
/// 400 KB including attribute names and the other attributes).
pub const DEFAULT_MAX_INLINE_OBJECT_BYTES: usize = 350_000;

/// The objects table's sparse index of live messages by received date (`grant_id`, `mdate`),
/// projecting only what the drift sweep compares: a sweep slice reads a few dozen bytes per
/// message of its slice, whatever the mailbox's size (part of the table's contract; the
/// template and the test tables create it).
pub const BY_DATE_INDEX: &str = "by_date";
/// The message's `date` (Unix s), on live message items only.
pub const DATE_ATTRIBUTE: &str = "mdate";
/// The attributes `BY_DATE_INDEX` projects besides the keys.
pub const BY_DATE_PROJECTION: &[&str] = &[FLAGS_ATTRIBUTE, "version"];
/// A copy of a live message's flags at the item's top level (an index projects only those).
pub const FLAGS_ATTRIBUTE: &str = "flags";
/// A message body at least this long is kept in S3, apart from the message's item (shorter ones
/// cost less inline than as an S3 request).
pub const BODY_APART_MIN_BYTES: usize = 1024;
/// On a message item whose body is in S3: the body's digest (see [`body_hash`]).
pub const BODY_HASH_ATTRIBUTE: &str = "body_hash";

/// What the sweep compares of a message: its mutable flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flags {
    pub folders: Option<Value>,
    pub unread: Option<Value>,
    pub starred: Option<Value>,
}

impl Flags {
    pub fn of(object: &Value) -> Self {
        let field = |k: &str| object.get(k).filter(|v| !v.is_null()).cloned();
        Self {
            folders: field("folders"),
            unread: field("unread"),
            starred: field("starred"),
        }
    }
}

/// What a stored object is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ObjectRef {
    Message { id: String },
    Event { calendar_id: String, id: String },
    Calendar { id: String },
    Folder { id: String },
}

impl ObjectRef {
    /// The object a sort key names: the inverse of [`ObjectRef::sort_key`].
    pub fn from_sort_key(sk: &str) -> Option<Self> {
        let (kind, rest) = sk.split_once('#')?;
        let id = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Some(match kind {
            "message" => Self::Message { id: id(rest)? },
            "event" => {
                let (calendar_id, event) = rest.split_once('#')?;
                Self::Event {
                    calendar_id: id(calendar_id)?,
                    id: id(event)?,
                }
            }
            "calendar" => Self::Calendar { id: id(rest)? },
            "folder" => Self::Folder { id: id(rest)? },
            _ => return None,
        })
    }

    pub fn sort_key(&self) -> String {
        match self {
            Self::Message { id } => format!("message#{id}"),
            Self::Event { calendar_id, id } => format!("event#{calendar_id}#{id}"),
            Self::Calendar { id } => format!("calendar#{id}"),
            Self::Folder { id } => format!("folder#{id}"),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Message { .. } => "message",
            Self::Event { .. } => "event",
            Self::Calendar { .. } => "calendar",
            Self::Folder { .. } => "folder",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Self::Message { id }
            | Self::Event { id, .. }
            | Self::Calendar { id }
            | Self::Folder { id } => id,
        }
    }
}

/// Which path produced a state; kept on the item so reconciliation can tell what webhooks missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Webhook,
    Fetch,
    Reconcile,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Fetch => "fetch",
            Self::Reconcile => "reconcile",
        }
    }
}

/// A state to write: the object, or a tombstone (`object: None`).
#[derive(Debug, Clone)]
pub struct ObjectState {
    pub grant_id: String,
    pub object_ref: ObjectRef,
    pub version: Version,
    pub object: Option<Value>,
    pub source: Source,
    /// When the change this state carries happened (Unix s), where known: the notification
    /// time, or the object's own time. Only reported to the write observer (lag measurement).
    pub changed_at: Option<i64>,
}

impl ObjectState {
    pub fn is_tombstone(&self) -> bool {
        self.object.is_none()
    }

    /// A digest of the object (tombstones hash to a fixed value), to tell same-version states apart.
    pub fn content_hash(&self) -> String {
        content_hash(self.object.as_ref())
    }
}

pub fn content_hash(object: Option<&Value>) -> String {
    match object {
        None => "tombstone".into(),
        Some(v) => {
            let bytes = serde_json::to_vec(v).unwrap_or_default();
            hex::encode(&Sha256::digest(&bytes)[..16])
        }
    }
}

/// What the store held when a write lost its condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub version: Version,
    pub deleted: bool,
    pub content_hash: String,
}

/// What the store holds for an object, without the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub version: Version,
    pub deleted: bool,
    pub content_hash: String,
    /// Unix ms of the write.
    pub written_at: i64,
}

/// The result of a conditional write. `Stale` is a success: a newer state is already stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Written,
    Stale(Existing),
}

/// A stored object read back, body resolved from S3 when it was offloaded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    pub grant_id: String,
    pub sort_key: String,
    pub version: Version,
    pub deleted: bool,
    pub source: String,
    pub content_hash: String,
    /// Unix ms of the write.
    pub written_at: i64,
    pub object: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB: {0}")]
    Dynamo(String),
    #[error("S3: {0}")]
    S3(String),
    #[error("item not representable: {0}")]
    Encoding(String),
}

fn dynamo_err<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_dynamodb::error::SdkError<E, R>,
) -> StoreError {
    StoreError::Dynamo(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
}

#[derive(Clone)]
pub struct ObjectStore {
    pub ddb: aws_sdk_dynamodb::Client,
    pub s3: crate::aws::LazyS3,
    pub table: String,
    pub bucket: String,
    pub max_inline_object_bytes: usize,
    /// Told of every write that took effect (the local stack measures change-to-store lag with it).
    pub observer: Option<WriteObserver>,
    /// The read units this store's reads consumed (shared by its clones).
    pub reads: std::sync::Arc<ReadMeter>,
    /// The write requests and units its writes consumed, refused ones included.
    pub writes: std::sync::Arc<WriteMeter>,
}

/// DynamoDB writes of the objects table: requests, and write units by DynamoDB's billing rules
/// (one per started KB of the item written; a conditional write that is refused still consumes
/// them, so those count too).
///
/// Beside them it keeps what the same states would have cost written as one item each, body
/// included, whatever their outcome (the layout before bodies were kept apart): the baseline the
/// body's own item is measured against.
#[derive(Debug, Default)]
pub struct WriteMeter {
    requests: std::sync::atomic::AtomicU64,
    units: std::sync::atomic::AtomicU64,
    one_item_units: std::sync::atomic::AtomicU64,
    payload_puts: std::sync::atomic::AtomicU64,
}

impl WriteMeter {
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn units(&self) -> u64 {
        self.units.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Write units had every state been written as one item, body included.
    pub fn one_item_units(&self) -> u64 {
        self.one_item_units
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// S3 `PutObject` requests of the store's payloads (bodies, objects too large for an item).
    pub fn payload_puts(&self) -> u64 {
        self.payload_puts.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn add_payload_put(&self) {
        self.payload_puts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn add_bytes(&self, bytes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.requests.fetch_add(1, Relaxed);
        self.units.fetch_add(write_units(bytes), Relaxed);
    }

    fn add_one_item(&self, bytes: usize) {
        self.one_item_units
            .fetch_add(write_units(bytes), std::sync::atomic::Ordering::Relaxed);
    }
}

/// Write units of one write of `bytes`: 1 KB blocks, at least one.
pub fn write_units(bytes: usize) -> u64 {
    bytes.div_ceil(1024).max(1) as u64
}

/// DynamoDB read units consumed, counted from what each read returned by DynamoDB's billing
/// rules ([`item_bytes`], [`read_half_units`]): a `Query` page bills the sum of its items rounded
/// up to 4 KB, a `GetItem` or each item of a `BatchGetItem` its own size rounded up, and a strongly
/// consistent read twice an eventually consistent one. Exact for whole items and for index
/// queries (an index entry is what the index projects); a base-table query with a projection is
/// billed for whole items, so there it counts low.
#[derive(Debug, Default)]
pub struct ReadMeter(std::sync::atomic::AtomicU64);

impl ReadMeter {
    /// Read units so far.
    pub fn units(&self) -> f64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed) as f64 / 2.0
    }

    /// One `Query` page (or `Scan` page) that returned `items`.
    fn page(&self, items: &[HashMap<String, AttributeValue>], consistent: bool) {
        let bytes = items.iter().map(item_bytes).sum();
        self.add(read_half_units(bytes, consistent));
    }

    /// `GetItem` or `BatchGetItem`: each item rounded up on its own (a miss still costs a read).
    fn items(&self, items: &[&HashMap<String, AttributeValue>], misses: usize, consistent: bool) {
        let half: u64 = items
            .iter()
            .map(|i| read_half_units(item_bytes(i), consistent))
            .sum::<u64>()
            + misses as u64 * read_half_units(0, consistent);
        self.add(half);
    }

    fn add(&self, half_units: u64) {
        self.0
            .fetch_add(half_units, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An item's size as DynamoDB bills it: each attribute's name plus its value.
pub fn item_bytes(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_bytes(v)).sum()
}

/// A value's size by DynamoDB's rules: strings and binaries their length, a number about one
/// byte per two significant digits plus one, null and booleans one byte, a list or map 3 bytes
/// plus one per element plus the elements (and a map's key names).
pub fn value_bytes(v: &AttributeValue) -> usize {
    let number = |n: &str| {
        let digits = n
            .trim_start_matches('-')
            .split(['e', 'E'])
            .next()
            .unwrap_or_default()
            .replace('.', "");
        let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
        significant.div_ceil(2) + 1
    };
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number(n)).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|e| 1 + value_bytes(e)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + value_bytes(e))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// Read units, in halves, of one read of `bytes`: 4 KB blocks (at least one), a half unit each
/// when eventually consistent, a whole one when strongly consistent.
pub fn read_half_units(bytes: usize, consistent: bool) -> u64 {
    let blocks = bytes.div_ceil(4096).max(1) as u64;
    if consistent {
        blocks * 2
    } else {
        blocks
    }
}

/// A write that took effect.
#[derive(Debug, Clone)]
pub struct WriteEvent {
    pub grant_id: String,
    pub sort_key: String,
    pub source: Source,
    pub tombstone: bool,
    pub changed_at: Option<i64>,
    /// The state's version (ms): when what it carries was seen (`versions`).
    pub version: Version,
    /// Unix ms, on the writer's clock.
    pub written_at: i64,
}

pub type WriteObserver = std::sync::Arc<dyn Fn(&WriteEvent) + Send + Sync>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Where an object's bytes go, given its serialized size, its body's size, whether it is a
/// message, and the most an item may hold inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The whole object in its item.
    Inline,
    /// A message's body in S3, the rest in the message's item with a pointer to it.
    BodyInBucket,
    /// The whole object to the bucket; the item keeps [`slim_object`].
    ObjectInBucket,
}

pub fn layout(
    message: bool,
    object_bytes: usize,
    body_bytes: Option<usize>,
    max_inline: usize,
) -> Layout {
    let rest = object_bytes.saturating_sub(body_bytes.unwrap_or(0));
    match body_bytes {
        Some(b) if message && b >= BODY_APART_MIN_BYTES && rest <= max_inline => {
            Layout::BodyInBucket
        }
        _ if object_bytes <= max_inline => Layout::Inline,
        _ => Layout::ObjectInBucket,
    }
}

/// A body's digest, as the message item names it: 128 bits of SHA-256, hex.
pub fn body_hash(body: &str) -> String {
    hex::encode(&Sha256::digest(body.as_bytes())[..16])
}

/// Whether a state's body must be written: unless the message item held names the same body
/// (then its item exists: a body is written before any message item that names it).
pub fn body_needed(held_body_hash: Option<&str>, body_hash: &str) -> bool {
    held_body_hash != Some(body_hash)
}

/// Where a message's body goes in the bucket: under its message, named by the version of the
/// state that first carried it (a later state with the same body points to the same object; a
/// state written concurrently with a delete never shares a key with the body the delete removes).
pub fn body_key(grant_id: &str, message_id: &str, version: Version) -> String {
    format!("{}{version}", body_prefix(grant_id, message_id))
}

/// The bucket prefix of one message's bodies.
pub fn body_prefix(grant_id: &str, message_id: &str) -> String {
    format!("bodies/{grant_id}/{message_id}/")
}

/// Fields kept in an item whose object lives in the bucket: what identifies it and what the
/// drift sweep compares.
const SLIM_FIELDS: &[&str] = &[
    "id",
    "grant_id",
    "object",
    "thread_id",
    "date",
    "folders",
    "unread",
    "starred",
    "calendar_id",
    "updated_at",
    "status",
];

pub fn slim_object(object: &Value) -> Value {
    match object.as_object() {
        Some(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| SLIM_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => Value::Null,
    }
}

impl ObjectStore {
    /// Writes `state` unless the store already holds a version at least as new.
    pub async fn put_if_newer(
        &self,
        state: &ObjectState,
        now_ms: i64,
    ) -> Result<PutOutcome, StoreError> {
        let hash = state.content_hash();
        let sk = state.object_ref.sort_key();
        let mut item = HashMap::from([
            ("grant_id".to_string(), s(&state.grant_id)),
            ("sk".to_string(), s(&sk)),
            ("kind".to_string(), s(state.object_ref.kind())),
            ("object_id".to_string(), s(state.object_ref.id())),
            ("version".to_string(), n(state.version)),
            (
                "deleted".to_string(),
                AttributeValue::Bool(state.is_tombstone()),
            ),
            ("content_hash".to_string(), s(hash)),
            ("source".to_string(), s(state.source.as_str())),
            ("written_at".to_string(), n(now_ms)),
        ]);
        let message = matches!(state.object_ref, ObjectRef::Message { .. });
        if let (true, Some(date)) = (
            message,
            state
                .object
                .as_ref()
                .and_then(|o| o.get("date"))
                .and_then(Value::as_i64),
        ) {
            item.insert(DATE_ATTRIBUTE.into(), n(date));
            if let Some(object) = &state.object {
                let flags = Flags::of(object);
                let value = serde_json::json!({
                    "folders": flags.folders, "unread": flags.unread, "starred": flags.starred,
                });
                let value = serde_dynamo::to_attribute_value(value)
                    .map_err(|e| StoreError::Encoding(e.to_string()))?;
                item.insert(FLAGS_ATTRIBUTE.into(), value);
            }
        }
        // What the one-item layout would have added to the item: the body.
        let mut body_bytes_apart = 0;
        if let Some(object) = &state.object {
            let size = serde_json::to_vec(object).map(|v| v.len()).unwrap_or(0);
            let body = object.get("body").and_then(Value::as_str);
            let kept = match layout(
                message,
                size,
                body.map(str::len),
                self.max_inline_object_bytes,
            ) {
                Layout::Inline => object.clone(),
                Layout::BodyInBucket => {
                    let body = body.unwrap_or_default();
                    let digest = body_hash(body);
                    body_bytes_apart = body.len();
                    // The message item as held (one small read): a newer state there makes this
                    // one stale at no write's cost, and a body it already points to is kept.
                    let held = self
                        .get_item_projected(
                            &state.grant_id,
                            &sk,
                            "version, deleted, content_hash, body_hash, body_ref",
                        )
                        .await?;
                    if let Some(existing) = held.as_ref().map(existing_of) {
                        if existing.version >= state.version {
                            self.writes
                                .add_one_item(item_bytes(&item) + size + "object".len());
                            return Ok(PutOutcome::Stale(existing));
                        }
                    }
                    let held_body = held.as_ref().and_then(|h| {
                        let hash = h.get(BODY_HASH_ATTRIBUTE)?.as_s().ok()?;
                        Some((hash.clone(), h.get("body_ref")?.clone()))
                    });
                    let pointer = match held_body {
                        Some((hash, pointer)) if !body_needed(Some(&hash), &digest) => pointer,
                        _ => {
                            let id = state.object_ref.id();
                            let key = body_key(&state.grant_id, id, state.version);
                            self.put_payload(
                                &key,
                                "text/html; charset=utf-8",
                                body.as_bytes().to_vec(),
                            )
                            .await?;
                            self.pointer(key, body.len())
                        }
                    };
                    item.insert(BODY_HASH_ATTRIBUTE.into(), s(digest));
                    item.insert("body_ref".into(), pointer);
                    let mut rest = object.clone();
                    if let Some(map) = rest.as_object_mut() {
                        map.remove("body");
                    }
                    rest
                }
                Layout::ObjectInBucket => {
                    // Too large even without its body (thousands of recipients): the whole
                    // object goes to the bucket; the item keeps the fields that change and
                    // identify it.
                    let bytes = serde_json::to_vec(object)
                        .map_err(|e| StoreError::Encoding(e.to_string()))?;
                    let key = format!(
                        "objects/{}/{}",
                        state.grant_id,
                        hex::encode(Sha256::digest(&bytes))
                    );
                    let len = bytes.len();
                    self.put_payload(&key, "application/json", bytes).await?;
                    item.insert("object_ref".into(), self.pointer(key, len));
                    slim_object(object)
                }
            };
            let value: AttributeValue = serde_dynamo::to_attribute_value(&kept)
                .map_err(|e| StoreError::Encoding(e.to_string()))?;
            item.insert("object".into(), value);
        }
        let bytes = item_bytes(&item);
        self.writes.add_bytes(bytes);
        self.writes.add_one_item(if body_bytes_apart > 0 {
            bytes + body_bytes_apart + "body".len() + 1
        } else {
            bytes
        });
        let new_body = item
            .get("body_ref")
            .and_then(|p| p.as_m().ok())
            .and_then(|p| p.get("key"))
            .and_then(|k| k.as_s().ok())
            .cloned();
        let result = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk) OR #v < :v")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", n(state.version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .set_return_values(message.then_some(aws_sdk_dynamodb::types::ReturnValue::AllOld))
            .send()
            .await;
        match result {
            Ok(out) => {
                // A deleted message's body goes with it (and a replaced body, were one ever to
                // change). Only keys of this message: bodies written by earlier releases were
                // content-addressed, possibly shared, and go with the grant's purge.
                let old_body = out
                    .attributes()
                    .and_then(|old| old.get("body_ref"))
                    .and_then(|p| p.as_m().ok())
                    .and_then(|p| p.get("key"))
                    .and_then(|k| k.as_s().ok());
                if let Some(old) = old_body.filter(|k| {
                    Some(*k) != new_body.as_ref()
                        && k.starts_with(&body_prefix(&state.grant_id, state.object_ref.id()))
                }) {
                    self.delete_payload(old).await?;
                }
                if let Some(observe) = &self.observer {
                    observe(&WriteEvent {
                        grant_id: state.grant_id.clone(),
                        sort_key: sk,
                        source: state.source,
                        tombstone: state.is_tombstone(),
                        changed_at: state.changed_at,
                        version: state.version,
                        written_at: now_ms,
                    });
                }
                Ok(PutOutcome::Written)
            }
            Err(err) => {
                let returned = err
                    .as_service_error()
                    .filter(|e| e.is_conditional_check_failed_exception())
                    .map(|e| match e {
                        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                            c.item().cloned()
                        }
                        _ => None,
                    });
                match returned {
                    None => Err(dynamo_err(err)),
                    Some(Some(old)) if old.contains_key("version") => {
                        Ok(PutOutcome::Stale(existing_of(&old)))
                    }
                    // The emulator may not return the old item: read it.
                    Some(_) => {
                        let old = self.get_item(&state.grant_id, &sk).await?;
                        Ok(PutOutcome::Stale(old.map(|o| existing_of(&o)).unwrap_or(
                            Existing {
                                version: Version::MAX,
                                deleted: false,
                                content_hash: String::new(),
                            },
                        )))
                    }
                }
            }
        }
    }

    async fn delete_payload(&self, key: &str) -> Result<(), StoreError> {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| StoreError::S3(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }

    async fn put_payload(
        &self,
        key: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(aws_sdk_s3::primitives::ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| StoreError::S3(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        self.writes.add_payload_put();
        Ok(())
    }

    fn pointer(&self, key: String, bytes: usize) -> AttributeValue {
        AttributeValue::M(HashMap::from([
            ("bucket".to_string(), s(&self.bucket)),
            ("key".to_string(), s(key)),
            ("bytes".to_string(), n(bytes as i64)),
        ]))
    }

    async fn read_payload(
        &self,
        pointer: &HashMap<String, AttributeValue>,
    ) -> Result<Vec<u8>, StoreError> {
        let get = |k: &str| {
            pointer
                .get(k)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let out = self
            .s3
            .get_object()
            .bucket(get("bucket"))
            .key(get("key"))
            .send()
            .await
            .map_err(|e| StoreError::S3(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        Ok(out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::S3(e.to_string()))?
            .into_bytes()
            .to_vec())
    }

    async fn get_item(
        &self,
        grant_id: &str,
        sk: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        self.get_item_projected(grant_id, sk, "").await
    }

    /// One item, strongly consistent; only the attributes of `projection` unless it is empty.
    async fn get_item_projected(
        &self,
        grant_id: &str,
        sk: &str,
        projection: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let mut get = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("grant_id", s(grant_id))
            .key("sk", s(sk))
            .consistent_read(true);
        if !projection.is_empty() {
            get = get.projection_expression(projection);
        }
        let out = get.send().await.map_err(dynamo_err)?;
        match &out.item {
            Some(item) => self.reads.items(&[item], 0, true),
            None => self.reads.items(&[], 1, true),
        }
        Ok(out.item)
    }

    /// Reads one object back, its body from S3 where it is kept there.
    pub async fn get(
        &self,
        grant_id: &str,
        object_ref: &ObjectRef,
    ) -> Result<Option<StoredObject>, StoreError> {
        match self.get_item(grant_id, &object_ref.sort_key()).await? {
            None => Ok(None),
            Some(item) => self.stored_object(item).await.map(Some),
        }
    }

    /// Every item of a grant (tombstones included), bodies resolved.
    pub async fn list_grant(&self, grant_id: &str) -> Result<Vec<StoredObject>, StoreError> {
        let mut out = Vec::new();
        for item in self.query_grant(grant_id, false).await? {
            out.push(self.stored_object(item).await?);
        }
        Ok(out)
    }

    async fn query_grant(
        &self,
        grant_id: &str,
        keys_only: bool,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut query = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("grant_id = :g")
            .expression_attribute_values(":g", s(grant_id))
            .consistent_read(true);
        if keys_only {
            query = query.projection_expression("grant_id, sk");
        }
        self.query_all(query).await
    }

    /// Every item `query` returns, page after page, each page's read units counted (strongly
    /// consistent if the query asks for it).
    async fn query_all(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let consistent = query.get_consistent_read().unwrap_or(false);
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = query
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(dynamo_err)?;
            self.reads.page(page.items(), consistent);
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// Deletes up to `max` of a grant's remaining items (tombstones too): one bounded step of a
    /// purge. Returns how many were deleted (0: nothing is left).
    pub async fn purge_page(&self, grant_id: &str, max: i32) -> Result<u64, StoreError> {
        let page = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("grant_id = :g")
            .expression_attribute_values(":g", s(grant_id))
            .projection_expression("grant_id, sk")
            .consistent_read(true)
            .limit(max.clamp(1, 1000))
            .send()
            .await
            .map_err(dynamo_err)?;
        self.reads.page(page.items(), true);
        let keys = page.items.unwrap_or_default();
        self.delete_keys(&keys).await
    }

    /// Deletes up to 1,000 of the grant's payloads in the bucket (`bodies/<grant>/`,
    /// `objects/<grant>/`, and its claim-checked notifications, `notifications/<grant>/`). Returns how many were deleted (0: nothing is left).
    pub async fn purge_payloads(&self, grant_id: &str) -> Result<u64, StoreError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let s3_err = |e: String| StoreError::S3(e);
        let mut deleted = 0;
        for prefix in [
            format!("bodies/{grant_id}/"),
            format!("objects/{grant_id}/"),
            crate::queue::grant_notifications_prefix(grant_id),
        ] {
            let listed = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .max_keys(1000)
                .send()
                .await
                .map_err(|e| s3_err(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
            let ids: Vec<ObjectIdentifier> = listed
                .contents()
                .iter()
                .filter_map(|o| ObjectIdentifier::builder().key(o.key()?).build().ok())
                .collect();
            if ids.is_empty() {
                continue;
            }
            let n = ids.len() as u64;
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| s3_err(e.to_string()))?;
            self.s3
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| s3_err(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
            deleted += n;
        }
        Ok(deleted)
    }

    /// Deletes every item of a grant (its tombstones too). Returns how many were deleted.
    pub async fn purge_grant(&self, grant_id: &str) -> Result<u64, StoreError> {
        let keys = self.query_grant(grant_id, true).await?;
        self.delete_keys(&keys).await
    }

    /// Deletes the items of `keys` (`BatchWriteItem`, 25 a call, unprocessed ones retried).
    async fn delete_keys(
        &self,
        keys: &[HashMap<String, AttributeValue>],
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for chunk in keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .filter_map(|k| {
                    let del = DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .ok()?;
                    Some(WriteRequest::builder().delete_request(del).build())
                })
                .collect();
            // Unprocessed items are retried until DynamoDB takes them.
            for _ in 0..8 {
                if requests.is_empty() {
                    break;
                }
                let out = self
                    .ddb
                    .batch_write_item()
                    .request_items(&self.table, requests.clone())
                    .send()
                    .await
                    .map_err(dynamo_err)?;
                let left = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                deleted += (requests.len() - left.len()) as u64;
                requests = left;
            }
            if !requests.is_empty() {
                return Err(StoreError::Dynamo(
                    "batch delete left unprocessed items".into(),
                ));
            }
        }
        Ok(deleted)
    }

    /// The items of a grant whose sort key starts with `prefix` (`message#`, `event#<cal>#`,
    /// `calendar#`). Bodies kept in S3 are fetched only if `resolve_bodies`.
    pub async fn list_prefix(
        &self,
        grant_id: &str,
        prefix: &str,
        resolve_bodies: bool,
    ) -> Result<Vec<StoredObject>, StoreError> {
        let mut out = Vec::new();
        let query = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("grant_id = :g AND begins_with(sk, :p)")
            .expression_attribute_values(":g", s(grant_id))
            .expression_attribute_values(":p", s(prefix))
            .consistent_read(true);
        for mut item in self.query_all(query).await? {
            if !resolve_bodies {
                item.remove("body_ref");
                item.remove("object_ref");
            }
            out.push(self.stored_object(item).await?);
        }
        Ok(out)
    }

    /// The live messages the store holds received in `[from, to)` (Unix s), with their flags,
    /// from the date index: bounded by the slice, not by the mailbox.
    pub async fn messages_received_between(
        &self,
        grant_id: &str,
        from: i64,
        to: i64,
    ) -> Result<HashMap<String, Flags>, StoreError> {
        let mut out = HashMap::new();
        let query = self
            .ddb
            .query()
            .table_name(&self.table)
            .index_name(BY_DATE_INDEX)
            .key_condition_expression("grant_id = :g AND #d BETWEEN :from AND :to")
            .expression_attribute_names("#d", DATE_ATTRIBUTE)
            .expression_attribute_values(":g", s(grant_id))
            .expression_attribute_values(":from", n(from))
            .expression_attribute_values(":to", n(to - 1));
        for item in self.query_all(query).await? {
            let Some(id) = item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .and_then(|sk| sk.strip_prefix("message#"))
            else {
                continue;
            };
            let flags: Value = item
                .get(FLAGS_ATTRIBUTE)
                .and_then(|v| serde_dynamo::from_attribute_value(v.clone()).ok())
                .unwrap_or(Value::Null);
            let field = |k: &str| flags.get(k).filter(|v| !v.is_null()).cloned();
            out.insert(
                id.to_string(),
                Flags {
                    folders: field("folders"),
                    unread: field("unread"),
                    starred: field("starred"),
                },
            );
        }
        Ok(out)
    }

    /// Whether the store holds a live message received before `before` (one index read).
    pub async fn has_message_before(
        &self,
        grant_id: &str,
        before: i64,
    ) -> Result<bool, StoreError> {
        let page = self
            .ddb
            .query()
            .table_name(&self.table)
            .index_name(BY_DATE_INDEX)
            .key_condition_expression("grant_id = :g AND #d < :before")
            .expression_attribute_names("#d", DATE_ATTRIBUTE)
            .expression_attribute_values(":g", s(grant_id))
            .expression_attribute_values(":before", n(before))
            .limit(1)
            .send()
            .await
            .map_err(dynamo_err)?;
        self.reads.page(page.items(), false);
        Ok(page.count() > 0)
    }

    /// The objects the store holds live (tombstones left out) under the sort-key `prefix`.
    /// Reads keys and the tombstone flag only, page by page.
    pub async fn live_refs(
        &self,
        grant_id: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectRef>, StoreError> {
        let mut out = Vec::new();
        let query = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("grant_id = :g AND begins_with(sk, :p)")
            .expression_attribute_values(":g", s(grant_id))
            .expression_attribute_values(":p", s(prefix))
            .projection_expression("sk, deleted")
            .consistent_read(true);
        for item in self.query_all(query).await? {
            let deleted = item
                .get("deleted")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(false);
            let object_ref = item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .and_then(|sk| ObjectRef::from_sort_key(sk));
            if let (false, Some(r)) = (deleted, object_ref) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The calendars under which the store holds event `event_id` (tombstones included), for
    /// notifications whose `calendar_id` is null. Reads the grant's event keys only.
    pub async fn event_calendars(
        &self,
        grant_id: &str,
        event_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let suffix = format!("#{event_id}");
        let mut out = Vec::new();
        let query = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("grant_id = :g AND begins_with(sk, :p)")
            .expression_attribute_values(":g", s(grant_id))
            .expression_attribute_values(":p", s("event#"))
            .projection_expression("sk");
        for item in self.query_all(query).await? {
            if let Some(AttributeValue::S(sk)) = item.get("sk") {
                if let Some(cal) = sk
                    .strip_prefix("event#")
                    .and_then(|rest| rest.strip_suffix(&suffix))
                {
                    out.push(cal.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Version, tombstone flag and content hash of the given objects (absent ones omitted), by
    /// sort key, with `BatchGetItem` (100 keys a call).
    pub async fn summaries(
        &self,
        grant_id: &str,
        refs: &[ObjectRef],
    ) -> Result<HashMap<String, Summary>, StoreError> {
        let mut found = HashMap::new();
        let keys: Vec<String> = refs
            .iter()
            .map(ObjectRef::sort_key)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for chunk in keys.chunks(100) {
            let mut pending: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|sk| {
                    HashMap::from([
                        ("grant_id".to_string(), s(grant_id)),
                        ("sk".to_string(), s(sk.clone())),
                    ])
                })
                .collect();
            for _ in 0..8 {
                if pending.is_empty() {
                    break;
                }
                let ka = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                    .set_keys(Some(pending.clone()))
                    .projection_expression("sk, version, deleted, content_hash, written_at")
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Dynamo(e.to_string()))?;
                let out = self
                    .ddb
                    .batch_get_item()
                    .request_items(&self.table, ka)
                    .send()
                    .await
                    .map_err(dynamo_err)?;
                let returned = out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default();
                let unprocessed = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|ka| ka.keys)
                    .unwrap_or_default();
                let misses = pending
                    .len()
                    .saturating_sub(returned.len() + unprocessed.len());
                self.reads
                    .items(&returned.iter().collect::<Vec<_>>(), misses, true);
                for item in returned {
                    let sk = item
                        .get("sk")
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default();
                    let e = existing_of(&item);
                    let written_at = item
                        .get("written_at")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    found.insert(
                        sk,
                        Summary {
                            version: e.version,
                            deleted: e.deleted,
                            content_hash: e.content_hash,
                            written_at,
                        },
                    );
                }
                pending = unprocessed;
            }
            if !pending.is_empty() {
                return Err(StoreError::Dynamo("batch get left unprocessed keys".into()));
            }
        }
        Ok(found)
    }

    async fn stored_object(
        &self,
        item: HashMap<String, AttributeValue>,
    ) -> Result<StoredObject, StoreError> {
        let text = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let mut object: Option<Value> = match item.get("object") {
            Some(v) => Some(
                serde_dynamo::from_attribute_value(v.clone())
                    .map_err(|e| StoreError::Encoding(e.to_string()))?,
            ),
            None => None,
        };
        if let Some(AttributeValue::M(pointer)) = item.get("object_ref") {
            let bytes = self.read_payload(pointer).await?;
            object = Some(
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Encoding(e.to_string()))?,
            );
        } else if let (Some(obj), Some(AttributeValue::M(pointer))) =
            (object.as_mut(), item.get("body_ref"))
        {
            let bytes = self.read_payload(pointer).await?;
            let body = String::from_utf8(bytes).map_err(|e| StoreError::Encoding(e.to_string()))?;
            if let Some(map) = obj.as_object_mut() {
                map.insert("body".into(), Value::String(body));
            }
        }
        Ok(StoredObject {
            grant_id: text("grant_id"),
            sort_key: text("sk"),
            version: item
                .get("version")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            deleted: item
                .get("deleted")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(false),
            source: text("source"),
            content_hash: text("content_hash"),
            written_at: item
                .get("written_at")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            object,
        })
    }
}

fn existing_of(item: &HashMap<String, AttributeValue>) -> Existing {
    Existing {
        version: item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(Version::MAX),
        deleted: item
            .get("deleted")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        content_hash: item
            .get("content_hash")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_sizes_follow_dynamodbs_rules() {
        let item = HashMap::from([
            ("grant_id".to_string(), s("g1")),
            ("n".to_string(), n(12345)),
            ("b".to_string(), AttributeValue::Bool(true)),
        ]);
        // 8 + 2, 1 + (3 + 1), 1 + 1
        assert_eq!(item_bytes(&item), 17);
        assert_eq!(value_bytes(&AttributeValue::N("100".into())), 2);
        assert_eq!(value_bytes(&AttributeValue::N("-0.00150".into())), 2);
        let map = AttributeValue::M(HashMap::from([("a".to_string(), s("xy"))]));
        assert_eq!(value_bytes(&map), 3 + 1 + 1 + 2);
        let list = AttributeValue::L(vec![s("xy"), AttributeValue::Null(true)]);
        assert_eq!(value_bytes(&list), 3 + (1 + 2) + (1 + 1));
    }

    #[test]
    fn writes_bill_1kb_blocks() {
        assert_eq!(write_units(0), 1);
        assert_eq!(write_units(1024), 1);
        assert_eq!(write_units(1025), 2);
        assert_eq!(write_units(50_000), 49);
        let meter = WriteMeter::default();
        meter.add_bytes(item_bytes(&HashMap::from([(
            "body".to_string(),
            s("x".repeat(3000)),
        )])));
        assert_eq!((meter.requests(), meter.units()), (1, 3));
    }

    #[test]
    fn reads_bill_4kb_blocks_and_consistency_doubles_them() {
        assert_eq!(
            read_half_units(0, false),
            1,
            "a read that finds nothing still costs"
        );
        assert_eq!(read_half_units(4096, false), 1);
        assert_eq!(read_half_units(4097, false), 2);
        assert_eq!(read_half_units(4097, true), 4);
        let meter = ReadMeter::default();
        let small = HashMap::from([("sk".to_string(), s("message#1"))]);
        // One query page of 100 small items is one block; 100 gets are 100.
        meter.page(&vec![small.clone(); 100], false);
        assert_eq!(meter.units(), 0.5);
        meter.items(&vec![&small; 100], 0, true);
        assert_eq!(meter.units(), 100.5);
    }

    #[test]
    fn a_message_body_is_kept_apart_and_an_object_goes_to_the_bucket_only_as_far_as_it_must() {
        // A short body stays with its message; a longer one goes to the bucket.
        assert_eq!(layout(true, 900, Some(500), 350_000), Layout::Inline);
        assert_eq!(
            layout(true, 3_000, Some(2_000), 350_000),
            Layout::BodyInBucket
        );
        assert_eq!(
            layout(true, 900_000, Some(800_000), 350_000),
            Layout::BodyInBucket
        );
        // Only messages have bodies kept apart.
        assert_eq!(layout(false, 3_000, Some(2_000), 350_000), Layout::Inline);
        // Too large without its body (9,000 recipients), or with no body at all: the whole object.
        assert_eq!(
            layout(true, 900_000, Some(2_000), 350_000),
            Layout::ObjectInBucket
        );
        assert_eq!(layout(true, 900_000, None, 350_000), Layout::ObjectInBucket);
        assert_eq!(layout(false, 350_000, None, 350_000), Layout::Inline);
    }

    #[test]
    fn a_body_is_written_unless_the_message_held_names_it() {
        let h = body_hash("<p>hello</p>");
        assert_eq!(h.len(), 32);
        assert_ne!(h, body_hash("<p>hello!</p>"));
        assert!(body_needed(None, &h), "a first write");
        assert!(body_needed(Some(&body_hash("other")), &h));
        assert!(!body_needed(Some(&h), &h), "a flag change");
    }

    #[test]
    fn a_body_is_kept_under_its_message_by_the_version_that_brought_it() {
        assert_eq!(
            body_key("g", "m1", 1_700_000_000_123),
            "bodies/g/m1/1700000000123"
        );
        assert!(body_key("g", "m1", 5).starts_with(&body_prefix("g", "m1")));
        assert!(!body_key("g", "m10", 5).starts_with(&body_prefix("g", "m1")));
    }

    #[test]
    fn a_slim_object_keeps_what_identifies_it_and_what_the_sweep_compares() {
        let big = serde_json::json!({
            "id": "m", "grant_id": "g", "object": "message", "date": 5, "folders": ["INBOX"],
            "unread": true, "starred": false, "to": ["x", "y", "z"], "body": "b",
        });
        let slim = slim_object(&big);
        assert_eq!(
            slim,
            serde_json::json!({"id": "m", "grant_id": "g", "object": "message", "date": 5,
                "folders": ["INBOX"], "unread": true, "starred": false})
        );
    }

    #[test]
    fn a_sort_key_names_its_object_back() {
        for r in [
            ObjectRef::Message { id: "m".into() },
            ObjectRef::Event {
                calendar_id: "c@group.calendar.google.com".into(),
                id: "e_20260101T100000Z".into(),
            },
            ObjectRef::Calendar { id: "c".into() },
            ObjectRef::Folder {
                id: "Label_1".into(),
            },
        ] {
            assert_eq!(ObjectRef::from_sort_key(&r.sort_key()), Some(r));
        }
        for bad in ["", "message#", "event#c", "event##e", "thread#t", "message"] {
            assert_eq!(ObjectRef::from_sort_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn sort_keys_follow_the_contract() {
        assert_eq!(
            ObjectRef::Message { id: "m".into() }.sort_key(),
            "message#m"
        );
        assert_eq!(
            ObjectRef::Event {
                calendar_id: "c".into(),
                id: "e".into()
            }
            .sort_key(),
            "event#c#e"
        );
        assert_eq!(
            ObjectRef::Calendar { id: "c".into() }.sort_key(),
            "calendar#c"
        );
        assert_eq!(ObjectRef::Folder { id: "f".into() }.sort_key(), "folder#f");
    }

    #[test]
    fn content_hash_tells_states_apart_and_ignores_nothing() {
        let a = serde_json::json!({"id": "m", "unread": true});
        let b = serde_json::json!({"id": "m", "unread": false});
        assert_eq!(content_hash(Some(&a)), content_hash(Some(&a.clone())));
        assert_ne!(content_hash(Some(&a)), content_hash(Some(&b)));
        assert_ne!(content_hash(Some(&a)), content_hash(None));
    }
}
