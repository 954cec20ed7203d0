//! `nylas-sync`: the operator's tool for a deployed nylas-sync (or the local stack).
//!
//! Registers the Nylas webhook destination and rotates its secret without a notification being
//! refused, shows how fresh each grant is, enqueues reconciles and backfills, and moves dead
//! letters back to their queues. It talks to AWS through the standard SDK configuration
//! (`AWS_ENDPOINT_URL` points it at moto) and to Nylas at `NYLAS_API_URI` (the emulator locally).
//!
//! It never prints a secret, an API key or a message body.

mod jobs;
mod redrive;
mod status;
mod time;
mod webhook;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nylas-sync",
    version,
    about = "Operate nylas-sync: webhook, secrets, status, reconciles, dead letters"
)]
struct Cli {
    #[command(flatten)]
    env: Settings,
    #[command(subcommand)]
    command: Command,
}

/// Where things are; each defaults to the variable the functions themselves read.
#[derive(Args, Clone, Debug)]
pub struct Settings {
    /// Secrets Manager secret holding the API key and the webhook secrets.
    #[arg(long, env = "SECRETS_ARN", global = true)]
    pub secrets_arn: Option<String>,
    /// Nylas API host (the emulator's URL locally).
    #[arg(long, env = "NYLAS_API_URI", global = true, default_value = nylas_sync::config::DEFAULT_NYLAS_API_URI)]
    pub nylas_api_uri: String,
    #[arg(long, env = "GRANTS_TABLE", global = true)]
    pub grants_table: Option<String>,
    #[arg(long, env = "OBJECTS_TABLE", global = true)]
    pub objects_table: Option<String>,
    #[arg(long, env = "RECONCILE_QUEUE_URL", global = true)]
    pub reconcile_queue_url: Option<String>,
}

#[derive(Args, Clone, Copy, Debug)]
pub struct Settle {
    /// Seconds to wait between announcing the change in the secret and asking Nylas for the new
    /// secret, so that every ingest instance can see the announcement: the ingest's
    /// SECRETS_REFRESH_SECONDS (default 30). 0 for a local stack whose ingest re-reads at once.
    #[arg(long, env = "SECRETS_REFRESH_SECONDS", default_value_t = 30)]
    pub settle_seconds: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Create the Nylas webhook destination (Nylas runs the challenge against URL) and store
    /// the secret it returns in SECRETS_ARN, keeping the previous secret as second.
    RegisterWebhook {
        /// The deployed ingest's URL (the stack output WebhookUrl).
        #[arg(long)]
        url: String,
        /// Trigger types, comma-separated or repeated; default: every type nylas-sync syncs.
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        triggers: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        /// Ask Nylas for gzip deliveries.
        #[arg(long)]
        compressed: bool,
        #[command(flatten)]
        settle: Settle,
    },
    /// Rotate the webhook secret at Nylas; both the new and the previous secret verify until
    /// `rotate-secret --finish` drops the previous one.
    RotateSecret {
        /// The destination; default: the `webhook_id` stored by register-webhook.
        #[arg(long)]
        webhook_id: Option<String>,
        /// End a rotation: keep only the current secret.
        #[arg(long)]
        finish: bool,
        #[command(flatten)]
        settle: Settle,
    },
    /// Per-grant sync status (one grant), or a summary of every grant.
    Status {
        grant: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Grants listed in the summary, stalest first.
        #[arg(long, default_value_t = 20)]
        top: usize,
    },
    /// Enqueue an incremental reconcile of one grant, or of every active grant.
    Reconcile {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        grant: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Enqueue a backfill of one grant from a date (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ, Unix
    /// seconds, or 30d / 12h back from now).
    Backfill {
        grant: String,
        #[arg(long)]
        since: String,
    },
    /// Move messages from the dead-letter queues back to their source queues, reporting what
    /// each held.
    Redrive {
        /// Only report what would be moved.
        #[arg(long)]
        dry_run: bool,
        /// DLQ_URL or DLQ_URL=SOURCE_URL (repeatable); default: NOTIFICATIONS_DLQ_URL and
        /// RECONCILE_DLQ_URL, with NOTIFICATIONS_QUEUE_URL / RECONCILE_QUEUE_URL as sources
        /// (or the queue whose redrive policy names the DLQ).
        #[arg(long = "queue", value_name = "DLQ_URL[=SOURCE_URL]")]
        queues: Vec<String>,
    },
}

/// AWS clients, built once.
pub struct Aws {
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Aws {
    async fn load() -> Self {
        let sdk = nylas_sync::aws::sdk_config(nylas_sync::aws::AwsTimeouts::BACKGROUND).await;
        Self {
            sqs: nylas_sync::aws::sqs_client(&sdk),
            s3: nylas_sync::aws::s3_client(&sdk),
            ddb: aws_sdk_dynamodb::Client::new(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
        }
    }
}

/// A required setting, or an error naming its flag and variable.
pub fn require<'a>(value: &'a Option<String>, flag: &str, var: &str) -> Result<&'a str, String> {
    value
        .as_deref()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("{var} is not set (or pass --{flag})"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let aws = Aws::load().await;
    let result = match cli.command {
        Command::RegisterWebhook {
            url,
            triggers,
            description,
            compressed,
            settle,
        } => {
            webhook::register(
                &cli.env,
                &aws,
                webhook::Registration {
                    url,
                    triggers,
                    description,
                    compressed,
                },
                settle,
            )
            .await
        }
        Command::RotateSecret {
            webhook_id,
            finish: false,
            settle,
        } => webhook::rotate(&cli.env, &aws, webhook_id, settle).await,
        Command::RotateSecret { finish: true, .. } => webhook::finish(&cli.env, &aws).await,
        Command::Status { grant, json, top } => {
            status::run(&cli.env, &aws, grant.as_deref(), json, top).await
        }
        Command::Reconcile { grant, all } => match (grant, all) {
            (_, true) => jobs::reconcile_all(&cli.env, &aws).await,
            (Some(g), false) => jobs::reconcile_one(&cli.env, &aws, &g).await,
            (None, false) => Err("name a grant or pass --all".into()),
        },
        Command::Backfill { grant, since } => jobs::backfill(&cli.env, &aws, &grant, &since).await,
        Command::Redrive { dry_run, queues } => redrive::run(&aws, &queues, dry_run).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
