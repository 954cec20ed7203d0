//! Properties of the ingest handler over arbitrary input: it never panics, and nothing whose
//! signature fails ever reaches the sink. The sink here is an in-memory recorder, so that
//! thousands of cases run in seconds; the SQS adapter itself is tested against moto in ingest.rs.

use std::sync::Mutex;

use nylas_sync::apigw::HttpRequestParts;
use nylas_sync::config::{IngestLimits, WebhookSecret};
use nylas_sync::ingest::Ingest;
use nylas_sync::notification::Routing;
use nylas_sync::queue::{EnqueueError, NotificationSink, Placement};
use proptest::prelude::*;
use support::{gzip, request, sign, Api};

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl NotificationSink for Recorder {
    async fn enqueue(
        &self,
        _routing: &Routing<'_>,
        body: String,
    ) -> Result<Placement, EnqueueError> {
        self.0.lock().unwrap().push(body);
        Ok(Placement::Inline)
    }
}

fn ingest() -> Ingest<Recorder> {
    Ingest {
        secrets: vec![
            WebhookSecret::new("current"),
            WebhookSecret::new("previous"),
        ]
        .into(),
        limits: IngestLimits {
            max_body_bytes: 64 * 1024,
            max_decompressed_bytes: 64 * 1024,
            ..IngestLimits::default()
        },
        sink: Recorder::default(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Bodies that look like notifications often enough to get past the parser sometimes.
fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        "\\PC{0,300}".prop_map(String::into_bytes),
        (
            "[a-z.]{0,30}",
            "[ -~]{0,20}",
            any::<i64>(),
            proptest::option::of("[ -~]{0,12}"),
            proptest::option::of("[ -~]{0,12}")
        )
            .prop_map(|(t, id, time, g, o)| {
                serde_json::json!({"id": id, "type": t, "time": time, "data": {"object": {"id": o, "grant_id": g}}})
                    .to_string()
                    .into_bytes()
            }),
    ]
}

fn header_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(
        (
            prop_oneof![
                Just("x-nylas-signature".to_string()),
                Just("content-encoding".to_string()),
                Just("content-type".to_string()),
                // API Gateway itself sets Host and X-Forwarded-Proto (lambda_http builds the URI
                // from them and panics on a malformed one, before any handler runs), so arbitrary
                // names stay clear of those two.
                "x-[a-z]{1,12}-[a-z]{1,6}"
            ],
            "[ -~]{0,80}",
        ),
        0..4,
    )
}

fn method_strategy() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("POST"), Just("GET"), Just("PUT"), Just("DELETE")]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_unsigned_requests_never_panic_and_never_reach_the_queue(
        method in method_strategy(),
        body in body_strategy(),
        headers in header_strategy(),
        query in proptest::collection::vec((prop_oneof![Just("challenge".to_string()), "[a-z]{1,8}"], "\\PC{0,40}"), 0..3),
        base64 in any::<bool>(),
        api in prop_oneof![Just(Api::Http), Just(Api::Rest)],
        compress in any::<bool>(),
    ) {
        let body = if compress { gzip(&body) } else { body };
        // Percent-encoded, as any HTTP client sends it (lambda_http panics on raw spaces in
        // rawQueryString while building the URI, before any handler runs).
        let raw_query = form_urlencoded::Serializer::new(String::new()).extend_pairs(query).finish();
        let parts = HttpRequestParts { method, path: "/webhooks/nylas", raw_query: &raw_query, headers, body: &body, base64: base64 || compress };
        let ingest = ingest();
        let resp = runtime().block_on(ingest.handle(request(api, &parts)));
        let recorded = ingest.sink.0.lock().unwrap().len();
        // A random header is a valid signature with probability 2^-256.
        prop_assert_eq!(recorded, 0);
        prop_assert_ne!(resp.status().as_u16(), 500);
        if method == "POST" {
            prop_assert!(resp.status().is_client_error(), "status {}", resp.status());
        }
    }

    #[test]
    fn validly_signed_arbitrary_bodies_never_panic_and_are_queued_only_with_200(
        body in body_strategy(),
        compress in any::<bool>(),
        secret in prop_oneof![Just("current"), Just("previous")],
    ) {
        let wire = if compress { gzip(&body) } else { body.clone() };
        let sig = sign(secret, &wire);
        let mut headers = vec![("x-nylas-signature".to_string(), sig)];
        if compress {
            headers.push(("content-encoding".to_string(), "gzip".to_string()));
        }
        let parts = HttpRequestParts { method: "POST", path: "/webhooks/nylas", headers, body: &wire, base64: true, ..Default::default() };
        let ingest = ingest();
        let resp = runtime().block_on(ingest.handle(request(Api::Http, &parts)));
        let recorded = ingest.sink.0.lock().unwrap().clone();
        match resp.status().as_u16() {
            200 => {
                prop_assert_eq!(recorded.len(), 1);
                // Bytes that are not UTF-8 reach the queue replaced by U+FFFD.
                prop_assert_eq!(&recorded[0], &String::from_utf8_lossy(&body));
            }
            // Signed is never refused for its content: only a body too large to read is.
            413 => prop_assert!(recorded.is_empty()),
            other => prop_assert!(false, "unexpected status {}", other),
        }
    }
}
