//! Tracking and deliverability notifications (`message.opened`, `message.link_clicked`, their
//! `.legacy` forms, `thread.replied`, `message.bounce_detected`): their `data.object` names the
//! message as `message_id` and has no `id`. Shapes follow Nylas's notification reference: the
//! tracking triggers carry `grant_id` in `data.object`, `message.bounce_detected` at
//! `data.grant_id` (see `grant_in_data`).

use serde_json::{json, Value};

/// The triggers this module shapes.
pub(crate) const TRACKING_TRIGGERS: &[&str] = &[
    "message.opened",
    "message.opened.legacy",
    "message.link_clicked",
    "message.link_clicked.legacy",
    "thread.replied",
    "thread.replied.legacy",
    "message.bounce_detected",
];

pub(crate) fn is_tracking(kind: &str) -> bool {
    TRACKING_TRIGGERS.contains(&kind)
}

/// Whether the grant goes at `data.grant_id` rather than in `data.object` (deliverability).
pub(crate) fn grant_in_data(kind: &str) -> bool {
    kind == "message.bounce_detected"
}

/// `source` of a tracking or deliverability notification (a plausible guess: the spec does
/// not give one).
pub(crate) fn source(kind: &str) -> &'static str {
    if kind == "message.bounce_detected" {
        "/com/nylas/deliverability"
    } else {
        "/com/nylas/tracking"
    }
}

const USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36";

/// `data.object` of a tracking or deliverability notification about `message_id`, as the
/// Nylas notification reference shows it.
pub(crate) fn object(
    kind: &str,
    app_id: &str,
    grant_id: &str,
    message_id: &str,
    now: i64,
) -> Value {
    let base = kind.trim_end_matches(".legacy");
    match base {
        "message.opened" => json!({
            "object": "message",
            "grant_id": grant_id,
            "message_id": message_id,
            "label": "emulated tracking label",
            "sender_app_id": app_id,
            "timestamp": now,
            "message_data": {"count": 1, "timestamp": now},
            "recents": [{"ip": "192.0.2.1", "opened_id": 0, "timestamp": now, "user_agent": USER_AGENT}],
        }),
        "message.link_clicked" => json!({
            "object": "message",
            "grant_id": grant_id,
            "message_id": message_id,
            "label": "emulated tracking label",
            "sender_app_id": app_id,
            "timestamp": now,
            "link_data": [{"count": 1, "url": "https://www.example.com"}],
            "recents": [{"click_id": 0, "ip": "192.0.2.1", "link_index": "0", "timestamp": now, "user_agent": USER_AGENT}],
        }),
        "thread.replied" => json!({
            "object": "thread",
            "grant_id": grant_id,
            "message_id": message_id,
            "root_message_id": message_id,
            "reply_to_message_id": message_id,
            "from_self": false,
            "thread_id": format!("thread-of-{message_id}"),
            "label": "emulated tracking label",
            "sender_app_id": app_id,
            "timestamp": now,
            "reply_data": {"count": 1},
        }),
        "message.bounce_detected" => json!({
            "message_id": message_id,
            "bounce_reason": "The email account that you tried to reach does not exist.",
            "bounce_date": now.to_string(),
            "bounced_addresses": "nobody@example.com",
            "type": "hard_bounce",
            "code": "550",
            "origin": {
                "id": message_id,
                "subject": "emulated bounced message",
                "from": "sender@example.com",
                "to": ["nobody@example.com"],
                "cc": [],
                "bcc": [],
            },
        }),
        _ => json!({"message_id": message_id, "grant_id": grant_id, "timestamp": now}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tracking_object_names_the_message_and_has_no_id() {
        for kind in TRACKING_TRIGGERS {
            let o = object(kind, "app", "g1", "m1", 1);
            assert_eq!(o["message_id"], "m1", "{kind}");
            assert!(o.get("id").is_none(), "{kind}");
            assert_eq!(o.get("grant_id").is_none(), grant_in_data(kind), "{kind}");
        }
    }
}
