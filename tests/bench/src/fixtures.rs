//! Notification bodies as Nylas sends them, of an exact size, with a realistic message body:
//! HTML escaped the way Go's encoder (Nylas's) escapes it (`\u003c`, `\"`, `\n`), some non-ASCII.

use nylas_sync::signature::sign;

/// One paragraph of an HTML email body, already JSON-escaped.
const PARAGRAPH: &str = "\\u003cp style=\\\"margin:0 0 8px;font-family:Arial\\\"\\u003eQuarterly numbers are in \u{2014} revenue up 12% over plan; the deck is attached, comments by Friday please. R\u{e9}sum\u{e9} of the call: \\u0026amp; next steps below.\\u003c/p\\u003e\\n";

/// A `message.created` notification of exactly `total_len` bytes (at least 600), carrying the
/// full message with an HTML body, as Nylas delivers it.
pub fn message_created(
    notification_id: &str,
    grant_id: &str,
    message_id: &str,
    total_len: usize,
) -> String {
    let head = format!(
        concat!(
            r#"{{"specversion":"1.0","type":"message.created","source":"/google/emails/realtime","#,
            r#""id":"{nid}","time":1723821985,"webhook_delivery_attempt":1,"data":{{"application_id":"app-1","#,
            r#""object":{{"id":"{mid}","grant_id":"{gid}","object":"message","thread_id":"t-{mid}","#,
            r#""subject":"Quarterly report","from":[{{"name":"Ada Lovelace","email":"ada@example.com"}}],"#,
            r#""to":[{{"name":"Team","email":"team@example.com"}}],"cc":[],"bcc":[],"reply_to":[],"#,
            r#""folders":["INBOX","UNREAD"],"unread":true,"starred":false,"date":1723821980,"#,
            r#""attachments":[],"snippet":"Quarterly numbers are in","body":""#
        ),
        nid = notification_id,
        mid = message_id,
        gid = grant_id,
    );
    let tail = "\"}}}";
    let fixed = head.len() + tail.len();
    assert!(
        total_len >= fixed,
        "a notification needs at least {fixed} bytes"
    );
    let mut out = String::with_capacity(total_len);
    out.push_str(&head);
    let want = total_len - tail.len();
    while out.len() + PARAGRAPH.len() <= want {
        out.push_str(PARAGRAPH);
    }
    while out.len() < want {
        out.push('x');
    }
    out.push_str(tail);
    debug_assert_eq!(out.len(), total_len);
    out
}

/// A body and the `x-nylas-signature` Nylas would send with it.
pub struct Signed {
    pub body: String,
    pub signature: String,
}

pub fn signed(body: String, secret: &str) -> Signed {
    let signature = sign(secret, body.as_bytes());
    Signed { body, signature }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_exact_size_and_parse_as_notifications() {
        for len in [2048, 100_000, 1 << 20] {
            let body = message_created("n-1", "g-1", "m-1", len);
            assert_eq!(body.len(), len);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["data"]["object"]["grant_id"], "g-1");
            let r = nylas_sync::notification::parse_routing(body.as_bytes()).unwrap();
            assert_eq!(r.object_id.as_deref(), Some("m-1"));
        }
    }
}
