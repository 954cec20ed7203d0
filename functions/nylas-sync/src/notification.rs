//! Nylas webhook notifications: the trigger types, and the routing fields the ingest reads
//! (`id`, `type`, `time`, grant id, object id) without building a tree of the whole body.

use std::borrow::Cow;

mod read;

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

/// Reads the routing fields of a notification. Fields the router does not need (the message
/// body above all) are skipped without being copied or built into values, 64 bytes at a time
/// ([`crate::json_scan`]); the JSON is still checked to be well-formed end to end, and a
/// repeated routing key is refused. It accepts and refuses what serde_json reading the same
/// fields as `Option`s would ([`read`]; a test holds it to that).
pub fn parse_routing(body: &[u8]) -> Result<Routing<'_>, ParseError> {
    let env = read::envelope(body).map_err(|e| ParseError::InvalidJson(e.to_string()))?;
    routing_of(env)
}

/// The routing of a notification's fields, checked.
fn routing_of(env: read::Envelope<'_>) -> Result<Routing<'_>, ParseError> {
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
        Some(read::Data { grant_id, object }) => (grant_id, object),
        None => (None, None),
    };
    let (object_id, object_grant) = match object {
        Some(read::ObjectRef { id, grant_id }) => (id, grant_id),
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

    /// The reader this module had before `read`: serde_json into `Option`s of derived structs.
    /// `read` must accept and refuse what it does, and read the same fields.
    mod serde_reader {
        use super::super::read;
        use serde::Deserialize;
        use std::borrow::Cow;

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

        pub fn envelope(body: &[u8]) -> Option<read::Envelope<'_>> {
            let e: Envelope<'_> = serde_json::from_slice(body).ok()?;
            Some(read::Envelope {
                id: e.id,
                trigger: e.trigger,
                time: e.time,
                data: e.data.map(|d| read::Data {
                    grant_id: d.grant_id,
                    object: d.object.map(|o| read::ObjectRef {
                        id: o.id,
                        grant_id: o.grant_id,
                    }),
                }),
            })
        }
    }

    /// A JSON value as text, leaning towards the shapes and edge cases routing meets: the
    /// routing keys (also escaped and repeated), structs as arrays, numbers serde_json reads as
    /// floats, strings with every kind of escape, raw control characters and lone surrogates.
    fn json_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            prop::sample::select(vec![
                "0",
                "-0",
                "1.5",
                "1e3",
                "-1",
                "00",
                "1.",
                "-",
                "9223372036854775808",
                "-9223372036854775808",
                "-9223372036854775809",
                "18446744073709551616",
                "2E-2",
            ])
            .prop_map(str::to_string),
            prop::sample::select(vec![
                r#""g-1""#,
                r#""""#,
                r#""a\"b""#,
                r#""\u0041""#,
                r#""\ud800""#,
                r#""\ud83d\ude00""#,
                r#""\x""#,
                "\"tab\there\"",
                "\"\u{e9}\"",
                r#""\/\n""#,
                r#""message.created""#,
            ])
            .prop_map(str::to_string),
            "[a-z0-9 <>/]{0,90}".prop_map(|s| format!("\"{s}\"")),
        ];
        let key = prop::sample::select(vec![
            "id", "type", "time", "data", "grant_id", "object", "body", r"\u0069d", "x",
        ]);
        leaf.prop_recursive(4, 40, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((key.clone(), inner), 0..6).prop_map(|v| {
                    let fields: Vec<String> = v
                        .into_iter()
                        .map(|(k, v)| format!("\"{k}\": {v}"))
                        .collect();
                    format!("{{{}}}", fields.join(", "))
                }),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Any document, and any document with one byte changed, removed or added: the routing
        /// read is serde_json's (the same fields, or both refuse it as JSON).
        #[test]
        fn routing_is_read_as_serde_json_reads_it(
            doc in json_text(),
            edit in proptest::option::of((
                0usize..1000,
                0u8..3,
                proptest::sample::select(b"{}[],:\"\\ 0-enu".to_vec()),
            )),
        ) {
            let mut bytes = doc.into_bytes();
            if let Some((at, how, byte)) = edit {
                let at = at % (bytes.len() + 1);
                match how {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, byte),
                }
            }
            let ours = read::envelope(&bytes).ok().map(routing_of);
            let theirs = serde_reader::envelope(&bytes).map(routing_of);
            proptest::prop_assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn routing_is_read_as_serde_json_reads_it_in_these_cases() {
        for doc in [
            r#"["n", "grant.expired", 1, [null, ["m", "g"]]]"#,
            r#"["n", "grant.expired", 1]"#,
            r#"["n", "grant.expired", 1, null, 2]"#,
            r#"{"id":"n","type":"grant.expired","time":-0}"#,
            r#"{"id":"n","type":"grant.expired","time":-9223372036854775808}"#,
            r#"{"id":"n","type":"grant.expired","time":9223372036854775808}"#,
            r#"{"\u0069d":"n","type":"grant.expired","time":1}"#,
            r#"{"id":"n","type":"grant.expired","time":1,"x":{"y":[1,{"z":"\ud800"}]}}"#,
            r#"{"id":"n\ud800","type":"grant.expired","time":1}"#,
            "{\"id\":\"n\",\"type\":\"grant.expired\",\"time\":1,\"x\":\"a\u{1}b\"}",
            r#"{"id":"n","type":"grant.expired","time":1,"x":[1,]}"#,
            r#"{"id":"n","type":"grant.expired","time":1,}"#,
            r#"  {"id":"n","type":"grant.expired","time":1}  "#,
        ] {
            let ours = read::envelope(doc.as_bytes()).ok().map(routing_of);
            let theirs = serde_reader::envelope(doc.as_bytes()).map(routing_of);
            assert_eq!(ours, theirs, "{doc}");
        }
        // Skipped values nest to any depth (serde_json skips them without a limit too).
        let deep = format!(
            r#"{{"id":"n","type":"grant.expired","time":1,"x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(parse_routing(deep.as_bytes()).is_ok());
    }

    #[test]
    fn escaped_ids_are_unescaped() {
        let body = br#"{"id":"n\u002d1","type":"grant.deleted","time":1,"data":{"object":{"grant_id":"g"}}}"#;
        assert_eq!(parse_routing(body).unwrap().id, "n-1");
    }
}
