//! Nylas webhook notifications: the trigger types, and the routing fields the ingest reads
//! (`id`, `type`, `time`, grant id, object id) without building a tree of the whole body.

use std::borrow::Cow;

use serde::Deserialize;

/// Longest notification id, grant id or object id accepted (Nylas ids are far shorter).
const MAX_ID_LEN: usize = 256;
/// Longest trigger type accepted.
const MAX_TYPE_LEN: usize = 128;

/// The object family a trigger is about: the part of `type` before the first dot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Message,
    Event,
    Calendar,
    Folder,
    Grant,
    /// Anything else (tracking, send, booking, notetaker...): accepted, left to the consumer.
    Other,
}

impl ObjectKind {
    pub fn of(trigger: &str) -> Self {
        match trigger.split('.').next().unwrap_or_default() {
            "message" => Self::Message,
            "event" => Self::Event,
            "calendar" => Self::Calendar,
            "folder" => Self::Folder,
            "grant" => Self::Grant,
            _ => Self::Other,
        }
    }

    /// Whether notifications of this kind name a synced object, so must carry its id.
    pub fn names_an_object(self) -> bool {
        matches!(
            self,
            Self::Message | Self::Event | Self::Calendar | Self::Folder
        )
    }

    /// Whether notifications of this kind must carry a grant id.
    pub fn needs_grant(self) -> bool {
        self != Self::Other
    }
}

/// The fields routing needs. Borrowed from the body where JSON escaping allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing<'a> {
    pub id: Cow<'a, str>,
    pub trigger: Cow<'a, str>,
    pub time: i64,
    pub grant_id: Option<Cow<'a, str>>,
    pub object_id: Option<Cow<'a, str>>,
}

impl Routing<'_> {
    pub fn kind(&self) -> ObjectKind {
        ObjectKind::of(&self.trigger)
    }

    /// The same fields, owned: the routing outlives the body it was parsed from (the ingest
    /// moves the body into the SQS request and logs the routing afterwards).
    pub fn into_owned(self) -> Routing<'static> {
        Routing {
            id: self.id.into_owned().into(),
            trigger: self.trigger.into_owned().into(),
            time: self.time,
            grant_id: self.grant_id.map(|g| g.into_owned().into()),
            object_id: self.object_id.map(|o| o.into_owned().into()),
        }
    }
}

impl Routing<'static> {
    /// The routing of a signed body that has none to read (not JSON, or without a usable `id`,
    /// `type` or `time`): it is queued all the same, keyed by a digest of its bytes, and the
    /// consumer parks it visibly. Nylas signed it; refusing it would only make Nylas retry, then
    /// drop it.
    pub fn opaque(body: &[u8]) -> Self {
        use sha2::{Digest, Sha256};
        Routing {
            id: format!("unparsed-{}", hex::encode(Sha256::digest(body))).into(),
            trigger: Cow::Borrowed(UNPARSED_TYPE),
            time: 0,
            grant_id: None,
            object_id: None,
        }
    }
}

/// The `type` attribute of a queued body whose routing could not be read.
pub const UNPARSED_TYPE: &str = "unparsed";

/// Why a notification body's routing could not be read. Messages are safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not a JSON notification: {0}")]
    InvalidJson(String),
    #[error("notification has no {0}")]
    MissingField(&'static str),
    #[error("notification field {0} is empty, too long or has characters it may not have")]
    InvalidField(&'static str),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    trigger: Option<Cow<'a, str>>,
    time: Option<i64>,
    #[serde(borrow)]
    data: Option<Data<'a>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow)]
    grant_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    object: Option<ObjectRef<'a>>,
}

#[derive(Deserialize)]
struct ObjectRef<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    grant_id: Option<Cow<'a, str>>,
}

/// Reads the routing fields of a notification. Fields the router does not need (the message
/// body above all) are skipped by the parser without being copied or built into values; the
/// JSON is still checked to be well-formed end to end, and a repeated routing key is refused.
pub fn parse_routing(body: &[u8]) -> Result<Routing<'_>, ParseError> {
    let env: Envelope<'_> = serde_json::from_slice(body)
        .map_err(|e| ParseError::InvalidJson(crate::json_error_summary(&e)))?;
    let id = env.id.ok_or(ParseError::MissingField("id"))?;
    let trigger = env.trigger.ok_or(ParseError::MissingField("type"))?;
    let time = env.time.ok_or(ParseError::MissingField("time"))?;
    check_id(&id, "id")?;
    if trigger.is_empty()
        || trigger.len() > MAX_TYPE_LEN
        || !trigger
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
    {
        return Err(ParseError::InvalidField("type"));
    }
    if time < 0 {
        return Err(ParseError::InvalidField("time"));
    }
    let (data_grant, object) = match env.data {
        Some(Data { grant_id, object }) => (grant_id, object),
        None => (None, None),
    };
    let (object_id, object_grant) = match object {
        Some(ObjectRef { id, grant_id }) => (id, grant_id),
        None => (None, None),
    };
    // grant_id lives at data.object.grant_id, except for send and deliverability triggers
    // (data.grant_id).
    // Grant and object ids only label the queued message: one that is missing or unusable as
    // a label is left out, never a reason to refuse a signed notification (the consumer reads
    // the body itself, and parks what it cannot use).
    let grant_id = object_grant
        .or(data_grant)
        .filter(|g| check_id(g, "grant_id").is_ok());
    let object_id = object_id.filter(|o| check_id(o, "data.object.id").is_ok());
    Ok(Routing {
        id,
        trigger,
        time,
        grant_id,
        object_id,
    })
}

/// Ids become SQS message attributes and S3 key parts: printable ASCII, bounded.
fn check_id(value: &str, field: &'static str) -> Result<(), ParseError> {
    if value.is_empty() || value.len() > MAX_ID_LEN || !value.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ParseError::InvalidField(field));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATED: &str = r#"{"specversion":"1.0","type":"message.created","source":"/google/emails/realtime",
        "id":"n-1","time":1723821985,"webhook_delivery_attempt":1,
        "data":{"application_id":"app","object":{"id":"m-1","grant_id":"g-1","object":"message",
        "body":"<p>hello \"world\"</p>","folders":["INBOX"]}}}"#;

    #[test]
    fn routing_fields_are_read_from_a_full_message_notification() {
        let r = parse_routing(CREATED.as_bytes()).unwrap();
        assert_eq!(r.id, "n-1");
        assert_eq!(r.trigger, "message.created");
        assert_eq!(r.time, 1723821985);
        assert_eq!(r.grant_id.as_deref(), Some("g-1"));
        assert_eq!(r.object_id.as_deref(), Some("m-1"));
        assert_eq!(r.kind(), ObjectKind::Message);
    }

    #[test]
    fn grant_id_is_read_from_data_for_send_triggers() {
        let body = br#"{"id":"n","type":"message.send_success","time":1,"data":{"grant_id":"g-2","object":{"id":"m"}}}"#;
        assert_eq!(
            parse_routing(body).unwrap().grant_id.as_deref(),
            Some("g-2")
        );
    }

    #[test]
    fn grant_notifications_need_no_object_id() {
        let body = br#"{"id":"n","type":"grant.expired","time":1,"data":{"object":{"grant_id":"g","code":25009,"provider":"google"}}}"#;
        let r = parse_routing(body).unwrap();
        assert_eq!(r.kind(), ObjectKind::Grant);
        assert_eq!(r.object_id, None);
    }

    #[test]
    fn unknown_types_are_accepted_without_grant_or_object() {
        let body =
            br#"{"id":"n","type":"notetaker.media","time":1,"data":{"object":{"state":"x"}}}"#;
        let r = parse_routing(body).unwrap();
        assert_eq!(r.kind(), ObjectKind::Other);
        assert_eq!(r.grant_id, None);
    }

    #[test]
    fn suffixes_keep_the_base_kind() {
        for t in [
            "message.created.truncated",
            "message.updated.metadata",
            "message.created.cleaned",
            "event.updated.transformed",
        ] {
            assert_ne!(ObjectKind::of(t), ObjectKind::Other, "{t}");
        }
    }

    #[test]
    fn missing_routing_fields_are_named() {
        let cases: [(&[u8], &str); 3] = [
            (br#"{"type":"message.created","time":1,"data":{"object":{"id":"m","grant_id":"g"}}}"#, "id"),
            (br#"{"id":"n","time":1,"data":{"object":{"id":"m","grant_id":"g"}}}"#, "type"),
            (br#"{"id":"n","type":"message.created","data":{"object":{"id":"m","grant_id":"g"}}}"#, "time"),
        ];
        for (body, field) in cases {
            assert_eq!(parse_routing(body), Err(ParseError::MissingField(field)));
        }
    }

    #[test]
    fn notifications_without_grant_or_object_id_are_routed_without_them() {
        // event.* may lack grant_id; tracking triggers carry message_id, not id.
        let body = br#"{"id":"n","type":"event.deleted","time":1,"data":{"object":{"id":"e","calendar_id":null}}}"#;
        let r = parse_routing(body).unwrap();
        assert_eq!((r.grant_id, r.object_id.as_deref()), (None, Some("e")));
        let body = br#"{"id":"n","type":"message.opened","time":1,"data":{"grant_id":"g","object":{"message_id":"m"}}}"#;
        let r = parse_routing(body).unwrap();
        assert_eq!((r.grant_id.as_deref(), r.object_id), (Some("g"), None));
    }

    #[test]
    fn an_opaque_routing_is_keyed_by_the_bytes() {
        let a = Routing::opaque(b"not json");
        assert_eq!(a, Routing::opaque(b"not json"));
        assert_ne!(a.id, Routing::opaque(b"not json!").id);
        assert_eq!(a.trigger, UNPARSED_TYPE);
        assert!(check_id(&a.id, "id").is_ok());
    }

    #[test]
    fn malformed_json_and_wrong_shapes_are_refused() {
        for body in [
            &b""[..],
            b"not json",
            b"{\"id\":\"n\"",
            b"[]",
            br#"{"id":1,"type":"message.created","time":1}"#,
            br#"{"id":"n","type":"message.created","time":"yesterday","data":{}}"#,
            br#"{"id":"n","type":"message.created","time":1.5,"data":{}}"#,
            br#"{"id":"n","id":"m","type":"grant.expired","time":1,"data":{"object":{"grant_id":"g"}}}"#,
            b"{\"id\":\"n\",\"type\":\"grant.expired\",\"time\":1,\"data\":{\"object\":{\"grant_id\":\"g\"}}} trailing",
            b"{\"id\":\"\xff\",\"type\":\"grant.expired\",\"time\":1}",
        ] {
            assert!(matches!(parse_routing(body), Err(ParseError::InvalidJson(_))), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn hostile_field_values_are_refused() {
        let long = "x".repeat(MAX_ID_LEN + 1);
        let cases = [
            (r#"{"id":"","type":"grant.expired","time":1,"data":{"object":{"grant_id":"g"}}}"#.to_string(), "id"),
            (format!(r#"{{"id":"{long}","type":"grant.expired","time":1,"data":{{"object":{{"grant_id":"g"}}}}}}"#), "id"),
            (r#"{"id":"n","type":"Message.Created","time":1,"data":{"object":{"id":"m","grant_id":"g"}}}"#.into(), "type"),
            (r#"{"id":"n","type":"grant.expired","time":-5,"data":{"object":{"grant_id":"g"}}}"#.into(), "time"),
        ];
        for (body, field) in cases {
            assert_eq!(
                parse_routing(body.as_bytes()),
                Err(ParseError::InvalidField(field)),
                "{body}"
            );
        }
    }

    #[test]
    fn unusable_grant_and_object_ids_are_left_out_of_the_routing() {
        let body = br#"{"id":"n","type":"message.deleted","time":1,"data":{"object":{"id":"m\n","grant_id":"a b"}}}"#;
        let r = parse_routing(body).unwrap();
        assert_eq!((r.grant_id, r.object_id), (None, None));
    }

    #[test]
    fn escaped_ids_are_unescaped() {
        let body = br#"{"id":"n\u002d1","type":"grant.deleted","time":1,"data":{"object":{"grant_id":"g"}}}"#;
        assert_eq!(parse_routing(body).unwrap().id, "n-1");
    }
}
