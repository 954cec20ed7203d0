//! What the consumer and the reconciler share, built once per cold start from the same part of
//! the configuration contract: the objects and grants tables, the reconcile queue, the Nylas
//! client, and the AWS configuration they came from.

use crate::aws::{self, AwsTimeouts};
use crate::config::{ConfigError, Env, Secrets};
use crate::grants::GrantStore;
use crate::jobs::JobQueue;
use crate::nylas::NylasClient;
use crate::store::{ObjectStore, DEFAULT_MAX_INLINE_OBJECT_BYTES};

pub struct SyncBackend {
    pub objects: ObjectStore,
    pub grants: GrantStore,
    pub jobs: JobQueue,
    pub nylas: NylasClient,
    pub sdk: aws_config::SdkConfig,
}

impl SyncBackend {
    /// Reads `OBJECTS_TABLE`, `GRANTS_TABLE`, `PAYLOAD_BUCKET`, `RECONCILE_QUEUE_URL` (each
    /// required, checked before any network call), `NYLAS_API_URI`, the API key and the SDK's
    /// timeouts ([`AwsTimeouts::from_env`]).
    pub async fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let objects_table = env.required("OBJECTS_TABLE")?;
        let grants_table = env.required("GRANTS_TABLE")?;
        let bucket = env.required("PAYLOAD_BUCKET")?;
        let queue_url = env.required("RECONCILE_QUEUE_URL")?;
        let sdk = aws::sdk_config(AwsTimeouts::BACKGROUND.from_env(env)?).await;
        let secrets = Secrets::load(env, &sdk).await?;
        let nylas = NylasClient::from_config(env, &secrets)?;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        Ok(Self {
            objects: ObjectStore {
                ddb: ddb.clone(),
                s3: aws::LazyS3::new(&sdk),
                table: objects_table,
                bucket,
                max_inline_object_bytes: DEFAULT_MAX_INLINE_OBJECT_BYTES,
                observer: None,
                reads: Default::default(),
                writes: Default::default(),
            },
            grants: GrantStore {
                ddb,
                table: grants_table,
            },
            jobs: JobQueue {
                sqs: aws::sqs_client(&sdk),
                queue_url,
            },
            nylas,
            sdk,
        })
    }
}
