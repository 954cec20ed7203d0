//! The ingest across a webhook secret rotation, with the window held open: Nylas (the emulator)
//! already signs with the new secret while Secrets Manager (moto) still holds only the old one,
//! which is the moment between `rotate-secret` at Nylas and the operator tool storing the answer.
//! With the rotation announced in the secret document, deliveries in that window are deferred
//! (503, Nylas retries) and all arrive once the secret is stored; without the announcement, the
//! same window loses them (401 is final for Nylas). The CLI's own tests run the whole sequence.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use nylas_emulator::{Emulator, EmulatorConfig, MessageSpec};
use nylas_sync::ingest::Ingest;
use serde_json::json;
use support::{unique, Aws};

struct Setup {
    aws: Aws,
    emu: Emulator,
    arn: String,
    queue_url: String,
    destination: String,
    old_secret: String,
    _server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn setup(announce: bool) -> Setup {
    let aws = Aws::connect().await;
    // A retry 1.7-3.3 s after a failed attempt.
    let emu = Emulator::start(EmulatorConfig {
        time_scale: 120.0,
        initial_messages_per_grant: 0,
        initial_events_per_grant: 0,
        recurring_series_per_grant: 0,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/nylas", listener.local_addr().unwrap());
    let (destination, old_secret) = emu.register_destination_direct(&url, false);
    let mut doc =
        json!({"nylas_api_key": "k", "webhook_secrets": [old_secret], "webhook_id": destination});
    if announce {
        // What `nylas-sync rotate-secret` writes before it asks Nylas.
        doc["rotating_until"] = json!(nylas_sync::clock::now_ms() / 1000 + 120);
    }
    let arn = aws
        .secrets
        .create_secret()
        .name(unique("nylas-sync"))
        .secret_string(doc.to_string())
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let queue_url = aws.create_queue("notifications").await;
    let bucket = aws.create_bucket("payloads").await;
    let env = HashMap::from([
        ("NOTIFICATIONS_QUEUE_URL", queue_url.as_str()),
        ("PAYLOAD_BUCKET", bucket.as_str()),
        ("SECRETS_ARN", arn.as_str()),
        ("SECRETS_REFRESH_SECONDS", "1"),
    ]);
    let ingest = Arc::new(Ingest::from_env(&env).await.expect("ingest"));
    let server = tokio::spawn(local_stack::serve_ingest(ingest, listener));
    Setup {
        aws,
        emu,
        arn,
        queue_url,
        destination,
        old_secret,
        _server: server,
    }
}

impl Setup {
    /// Rotates at Nylas and sends `n` notifications signed with the new secret, which the
    /// secret document does not hold yet. Returns the new secret once every first attempt is done.
    async fn rotate_at_nylas_and_send(&self, n: usize) -> String {
        let new_secret = self.emu.rotate_secret(&self.destination).expect("rotate");
        let grant = self.emu.grant_ids()[0].clone();
        for _ in 0..n {
            self.emu.create_message(&grant, MessageSpec::default());
        }
        // Every first attempt answered (refused one way or the other), none retried yet.
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let d = self.emu.stats().webhooks.deliveries;
            if d.failed_attempts + d.rejected + d.delivered >= n as u64 {
                break;
            }
            assert!(tokio::time::Instant::now() < until, "no deliveries: {d:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        new_secret
    }

    /// What the operator tool does once Nylas answered: new secret first, old second, no mark.
    async fn store(&self, new_secret: &str) {
        let doc = json!({"nylas_api_key": "k", "webhook_secrets": [new_secret, self.old_secret], "webhook_id": self.destination});
        self.aws
            .secrets
            .put_secret_value()
            .secret_id(&self.arn)
            .secret_string(doc.to_string())
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn with_the_rotation_announced_notifications_signed_before_the_secret_is_stored_are_deferred_then_accepted(
) {
    let s = setup(true).await;
    let new_secret = s.rotate_at_nylas_and_send(5).await;
    let d = s.emu.stats().webhooks.deliveries;
    assert_eq!(
        d.failed_attempts, 5,
        "deferred with a retryable answer: {d:?}"
    );
    assert_eq!(d.rejected, 0, "{d:?}");
    assert!(
        s.aws.drain(&s.queue_url).await.is_empty(),
        "nothing unverified was queued"
    );

    s.store(&new_secret).await;
    assert!(
        s.emu
            .wait_for_deliveries_idle(Duration::from_secs(60))
            .await
    );
    let d = s.emu.stats().webhooks.deliveries;
    assert_eq!(d.delivered, 5, "{d:?}");
    assert_eq!(d.rejected + d.dropped_after_retries, 0, "{d:?}");
    assert_eq!(s.aws.drain(&s.queue_url).await.len(), 5);
    s.emu.shutdown().await;
}

#[tokio::test]
async fn without_the_announcement_the_same_window_is_refused_with_401_and_rides_on_nylas_retries() {
    let s = setup(false).await;
    let new_secret = s.rotate_at_nylas_and_send(5).await;
    let d = s.emu.stats().webhooks.deliveries;
    assert_eq!(d.failed_attempts, 5, "refused with 401: {d:?}");
    assert!(
        s.aws.drain(&s.queue_url).await.is_empty(),
        "nothing unverified was queued"
    );
    s.store(&new_secret).await;
    assert!(
        s.emu
            .wait_for_deliveries_idle(Duration::from_secs(60))
            .await
    );
    let d = s.emu.stats().webhooks.deliveries;
    // Nylas retries every non-200, a 401 included: the second attempt verifies. Each refusal
    // still counted against the destination's health, and a third failure would have lost it.
    assert_eq!(d.delivered, 5, "{d:?}");
    assert_eq!(d.non_200_answers, 5, "{d:?}");
    assert_eq!(s.aws.drain(&s.queue_url).await.len(), 5);
    s.emu.shutdown().await;
}
