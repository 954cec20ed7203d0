//! The local stack, the main job on a laptop (`make dev`): against the AWS emulator named by
//! `AWS_ENDPOINT_URL` (moto) and an in-process Nylas emulator, it runs the real handlers (ingest
//! behind HTTP, consumer and reconciler behind SQS pollers with event-source-mapping semantics,
//! the scheduler on a timer) for four sync strategies on the same traffic, and reports.
//!
//! `--serve` instead hosts only the ingest on `--listen` until interrupted; `--demo` sends it
//! signed sample notifications and prints what reached SQS and S3.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use local_stack::scenario::{ScenarioConfig, ScenarioName};
use nylas_sync::aws::{self, AwsTimeouts};
use nylas_sync::ingest::Ingest;
use nylas_sync::queue::{attr, ClaimCheck};
use nylas_sync::signature::sign;
use nylas_sync::sqs_queue::SqsNotificationSink;

#[derive(Parser, Debug)]
#[command(
    about = "Run nylas-sync locally against moto and the Nylas emulator, and compare sync strategies"
)]
struct Args {
    /// The scenario to run.
    #[arg(long, value_enum, default_value = "day")]
    scenario: ScenarioName,
    /// Write the report as JSON here.
    #[arg(long)]
    report_json: Option<std::path::PathBuf>,
    /// Write the report as HTML (with charts) here.
    #[arg(long, default_value = "reports/report.html")]
    report_html: std::path::PathBuf,
    /// Grants in the emulated application.
    #[arg(long)]
    grants: Option<usize>,
    /// Emulated seconds per real second.
    #[arg(long)]
    time_scale: Option<f64>,
    /// Real seconds of traffic.
    #[arg(long)]
    traffic_seconds: Option<u64>,
    /// Changes per emulated minute per grant.
    #[arg(long)]
    events_per_minute: Option<f64>,
    /// Messages the first grant's big mailbox starts with (scenario faults; default 2000).
    #[arg(long)]
    big_mailbox: Option<usize>,
    /// Only host the ingest on --listen (for curl, cargo lambda or your own sender).
    #[arg(long)]
    serve: bool,
    /// Sync the real Nylas application of NYLAS_API_KEY (at NYLAS_API_URI) by reconciliation.
    #[arg(long)]
    real: bool,
    /// With --real: days to backfill, and seconds between reconciles.
    #[arg(long, default_value_t = 7)]
    backfill_days: u32,
    #[arg(long, default_value_t = 300)]
    interval_seconds: u64,
    /// Address of the local webhook endpoint.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Webhook secrets (comma-separated, current first) the ingest accepts.
    #[arg(
        long,
        env = "NYLAS_WEBHOOK_SECRETS",
        default_value = "local-dev-secret"
    )]
    secrets: String,
    /// Queue and bucket names created in the emulator.
    #[arg(long, default_value = "nylas-sync-notifications")]
    queue: String,
    #[arg(long, default_value = "nylas-sync-payloads")]
    bucket: String,
    /// Send sample notifications through the endpoint, print what was stored, and exit.
    #[arg(long)]
    demo: bool,
}

type Shared = Arc<Ingest<SqsNotificationSink>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The functions' per-request logs would drown the progress line and the report: warnings
    // only, unless RUST_LOG says otherwise.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    // Likewise the functions' EMF metric lines (the report measures what they would).
    if std::env::var_os("METRICS_DISABLED").is_none() {
        std::env::set_var("METRICS_DISABLED", "1");
    }
    nylas_sync::telemetry::init();
    let args = Args::parse();
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        return Err(
            "AWS_ENDPOINT_URL is not set: run through `make dev`, which starts moto".into(),
        );
    }
    if args.real {
        let key = std::env::var("NYLAS_API_KEY").map_err(|_| "--real needs NYLAS_API_KEY")?;
        let uri = std::env::var("NYLAS_API_URI")
            .unwrap_or_else(|_| nylas_sync::config::DEFAULT_NYLAS_API_URI.into());
        return local_stack::scenario::run_real(
            &uri,
            &key,
            args.backfill_days,
            std::time::Duration::from_secs(args.interval_seconds),
            None,
        )
        .await
        .map(|_| ());
    }
    if !args.serve && !args.demo {
        return run_scenario(&args).await;
    }
    let sdk = aws::sdk_config(AwsTimeouts::BACKGROUND).await;
    let sqs = aws::sqs_client(&sdk);
    let s3 = aws::s3_client(&sdk);
    let queue_url = sqs
        .create_queue()
        .queue_name(&args.queue)
        .send()
        .await?
        .queue_url
        .unwrap_or_default();
    if s3.head_bucket().bucket(&args.bucket).send().await.is_err() {
        s3.create_bucket().bucket(&args.bucket).send().await?;
    }
    let env = std::collections::HashMap::from([
        ("NOTIFICATIONS_QUEUE_URL", queue_url.as_str()),
        ("PAYLOAD_BUCKET", args.bucket.as_str()),
        ("NYLAS_WEBHOOK_SECRETS", args.secrets.as_str()),
    ]);
    let ingest: Shared = Arc::new(Ingest::from_env(&env).await?);

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let url = format!("http://{}/webhooks/nylas", listener.local_addr()?);
    eprintln!(
        "ingest listening on {url} (queue {queue_url}, bucket {})",
        args.bucket
    );
    let server = tokio::spawn(local_stack::serve_ingest(ingest, listener));

    if args.demo {
        let secret = args
            .secrets
            .split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        demo(&url, &secret, &sqs, &s3, &queue_url).await?;
        server.abort();
        return Ok(());
    }
    tokio::signal::ctrl_c().await?;
    server.abort();
    Ok(())
}

async fn run_scenario(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = ScenarioConfig::new(args.scenario);
    config.progress = true;
    if let Some(n) = args.big_mailbox {
        config.big_mailbox = n;
    }
    if let Some(g) = args.grants {
        config.grants = g;
    }
    if let Some(t) = args.time_scale {
        config.time_scale = t;
    }
    if let Some(t) = args.traffic_seconds {
        config.traffic_seconds = t;
    }
    if let Some(e) = args.events_per_minute {
        config.events_per_minute = e;
    }
    eprintln!(
        "scenario {:?}: {} grants, {} s of traffic at {}x (1 real second = {} emulated seconds)",
        config.scenario,
        config.grants,
        config.traffic_seconds,
        config.time_scale,
        config.time_scale
    );
    let report = local_stack::scenario::run(config).await?;
    println!("{}", report.table());
    if let Some(path) = &args.report_json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("report JSON: {}", path.display());
    }
    if let Some(dir) = args
        .report_html
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.report_html, report.html())?;
    eprintln!("report HTML: {}", args.report_html.display());
    match report.hybrid() {
        Some(_) if report.converged() => {
            eprintln!("nylas-sync hybrid: store equals the emulator's truth (0 missing, 0 stale, 0 resurrected)");
            Ok(())
        }
        Some(h) => Err(format!(
            "nylas-sync hybrid differs from the truth: {} missing, {} stale, {} resurrected: {:?}",
            h.missing, h.stale, h.resurrected, h.differences
        )
        .into()),
        None => Err("no nylas-sync hybrid in the report".into()),
    }
}

async fn demo(
    url: &str,
    secret: &str,
    sqs: &aws_sdk_sqs::Client,
    s3: &aws_sdk_s3::Client,
    queue_url: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let http = reqwest::Client::new();
    let challenge = http
        .get(format!("{url}?challenge=demo-challenge"))
        .send()
        .await?;
    println!(
        "GET ?challenge=demo-challenge          -> {} {:?}",
        challenge.status().as_u16(),
        challenge.text().await?
    );

    let notification = |id: &str, body_len: usize| {
        serde_json::json!({
            "specversion": "1.0", "type": "message.created", "source": "/google/emails/realtime",
            "id": id, "time": 1_767_225_600, "webhook_delivery_attempt": 1,
            "data": {"application_id": "demo", "object": {"id": format!("msg-{id}"), "grant_id": "demo-grant",
                "object": "message", "subject": "demo", "folders": ["INBOX"], "body": "x".repeat(body_len)}}
        })
        .to_string()
        .into_bytes()
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&notification("demo-gzip", 2_000))?;
    let gzipped = gz.finish()?;

    let cases: Vec<(&str, Vec<u8>, Option<String>, bool)> = vec![
        (
            "signed message.created (2 KB)",
            notification("demo-small", 2_000),
            None,
            false,
        ),
        ("signed, gzip", gzipped.clone(), None, true),
        (
            "signed, 600 KB (claim check via S3)",
            notification("demo-large", 600_000),
            None,
            false,
        ),
        (
            "bad signature",
            notification("demo-bad", 10),
            Some("0".repeat(64)),
            false,
        ),
        (
            "unsigned",
            notification("demo-unsigned", 10),
            Some(String::new()),
            false,
        ),
    ];
    for (what, body, forced_sig, gzip) in cases {
        let mut req = http.post(url).header("content-type", "application/json");
        match forced_sig {
            Some(s) if s.is_empty() => {}
            Some(s) => req = req.header("x-nylas-signature", s),
            None => req = req.header("x-nylas-signature", sign(secret, &body)),
        }
        if gzip {
            req = req.header("content-encoding", "gzip");
        }
        let resp = req.body(body).send().await?;
        println!(
            "POST {what:<34} -> {} {}",
            resp.status().as_u16(),
            resp.text().await?
        );
    }

    println!("\nwhat reached the notifications queue:");
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            let a = |n: &str| {
                m.message_attributes()
                    .and_then(|x| x.get(n))
                    .and_then(|v| v.string_value())
                    .unwrap_or("-")
                    .to_string()
            };
            let body = m.body().unwrap_or_default();
            let where_ = match ClaimCheck::from_message_body(body) {
                Some(c) => {
                    let obj = s3.get_object().bucket(&c.bucket).key(&c.key).send().await?;
                    let len = obj.body.collect().await?.into_bytes().len();
                    format!("s3://{}/{} ({len} bytes)", c.bucket, c.key)
                }
                None => format!("inline ({} bytes)", body.len()),
            };
            println!(
                "  {:<14} {:<16} grant={} {where_}",
                a(attr::NOTIFICATION_ID),
                a(attr::TYPE),
                a(attr::GRANT_ID)
            );
            if let Some(handle) = m.receipt_handle() {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
        }
    }
    Ok(())
}
