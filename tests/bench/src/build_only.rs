//! A notification sink that builds the requests the SQS sink would send (and, for a large body,
//! the S3 upload) and sends nothing: the ingest's CPU up to the network.

use std::hint::black_box;

use nylas_sync::enqueue_request::{build, Destination};
use nylas_sync::notification::Routing;
use nylas_sync::queue::{EnqueueError, NotificationSink, Placement};

pub struct BuildOnlySink {
    pub destination: Destination,
}

impl Default for BuildOnlySink {
    /// The ingest's defaults: SQS's 256 KiB message limit, above which the body goes to S3.
    fn default() -> Self {
        Self {
            destination: Destination {
                queue_url: "https://sqs.us-east-1.amazonaws.com/123456789012/notifications".into(),
                bucket: "nylas-sync-payloads".into(),
                max_message_bytes: 262_144,
            },
        }
    }
}
impl NotificationSink for BuildOnlySink {
    async fn enqueue(
        &self,
        routing: &Routing<'_>,
        body: String,
    ) -> Result<Placement, EnqueueError> {
        let requests = build(&self.destination, routing, body)?;
        let placement = requests.placement.clone();
        black_box(requests);
        Ok(placement)
    }
}
