//! `bench`: the whole-process benchmarks behind `make bench`. Each subcommand measures one
//! thing, merges its figures into the results file, and `bench report` writes them (with the
//! criterion medians) into BENCHMARKS.md.
//!
//! Subcommands that need AWS run against the local moto server that `tests/with-moto` starts
//! (`AWS_ENDPOINT_URL` must be a 127.0.0.1 URL); nothing here talks to real AWS or Nylas.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, Select, WriteRequest};
use aws_sdk_sqs::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_sqs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sqs::error::BoxError;
use aws_sdk_sqs::types::QueueAttributeName;
use bench::figures::{self, Results, OWN_RUNTIME};
use bench::fixtures::{message_created, signed};
use bench::procfs;
use bench::runtime_api::{CallKind, RuntimeApi};
use bench::socket_floor::SocketFloor;
use clap::{Parser, Subcommand};
use futures::stream::{self, StreamExt};
use nylas_sync::queue::{attr, ClaimCheck};
use sha2::{Digest, Sha256};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "Whole-process benchmarks of nylas-sync (run by `make bench`)")]
struct Cli {
    /// Where the figures of this run are collected.
    #[arg(long, default_value = "target/bench/results.json")]
    results: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Each function binary from exec to its first request for work from the Runtime API.
    ColdStart {
        /// Directory holding the release binaries `ingest`, `consumer`, `scheduler`, `reconciler`.
        #[arg(long)]
        bin_dir: PathBuf,
        #[arg(long, default_value_t = 21)]
        runs: usize,
    },
    /// Sizes of the release binaries (host) and of the cargo-lambda arm64 `bootstrap`s.
    Sizes {
        #[arg(long)]
        bin_dir: PathBuf,
        /// cargo lambda's output directory (`<target>/lambda`), holding `<function>/bootstrap`.
        #[arg(long)]
        lambda_dir: Option<PathBuf>,
    },
    /// The consumer binary on batches of ten full-object notifications: CPU per record, peak RSS.
    Consumer {
        #[arg(long)]
        bin_dir: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        body_bytes: usize,
        #[arg(long, default_value_t = 10)]
        batches: usize,
    },
    /// The scheduler's fan-out over N seeded grants: grants/s and the SQS calls it made.
    FanOut {
        #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
        grants: Vec<u64>,
    },
    /// The real ingest handler and SQS/S3 sink against moto: CPU per request of this process.
    IngestSdk {
        #[arg(long, default_value_t = 400)]
        requests: usize,
    },
    /// Webhooks over HTTP → ingest → SQS → consumer → DynamoDB, in rising steps of load.
    EndToEnd {
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "25,50,100,150,200,300,400,600"
        )]
        rates: Vec<f64>,
        #[arg(long, default_value_t = 8.0)]
        step_seconds: f64,
        #[arg(long, default_value_t = 5)]
        pollers: usize,
        #[arg(long, default_value_t = 2048)]
        body_bytes: usize,
    },
    /// The release ingest binary and the empty Lambda under the Runtime API stand-in, against
    /// moto: process CPU per invocation for each path beside one SHA-256 pass over the same body,
    /// and exec to the first answer.
    Invocation {
        #[arg(long)]
        bin_dir: PathBuf,
        /// Invocations per 900 KB path.
        #[arg(long, default_value_t = 40)]
        large: usize,
        /// Invocations per 2 KiB path.
        #[arg(long, default_value_t = 400)]
        small: usize,
        /// Fresh processes for exec to first answer.
        #[arg(long, default_value_t = 21)]
        first_answer_runs: usize,
    },
    /// Generated hostile API Gateway events at the release ingest binary, against moto:
    /// invocation errors, 5xx answers and anything enqueued that was not signed.
    Hostile {
        #[arg(long)]
        bin_dir: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        events: usize,
        #[arg(long, default_value_t = 14)]
        seed: u64,
    },
    /// One drift sweep slice by the release reconciler binary against stores of rising size
    /// (moto): DynamoDB read units, peak RSS and CPU, which must not grow with the mailbox.
    Sweep {
        #[arg(long)]
        bin_dir: PathBuf,
        /// Messages stored outside the slice, one run each.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        sizes: Vec<u64>,
        /// Messages in the slice (the emulated mailbox, synced first).
        #[arg(long, default_value_t = 50)]
        in_slice: usize,
    },
    /// (Internal) an open-loop load generator: signed POSTs at a fixed rate; prints JSON.
    Load {
        #[arg(long)]
        url: String,
        #[arg(long)]
        secret: String,
        #[arg(long)]
        rate: f64,
        #[arg(long)]
        seconds: f64,
        #[arg(long)]
        body_bytes: usize,
        #[arg(long)]
        step: u64,
    },
    /// (For a profiler) runs verify + parse + build `iters` times on one body, nothing else:
    /// `valgrind --tool=callgrind bench profile-ingest --bytes 1048576` on an unstripped build.
    ProfileIngest {
        #[arg(long, default_value_t = 2048)]
        bytes: usize,
        #[arg(long, default_value_t = 200)]
        iters: usize,
    },
    /// Writes the figures (and criterion's medians) into BENCHMARKS.md between its markers.
    Report {
        /// criterion's output directory (`$CRITERION_HOME`, default `<target>/criterion`).
        #[arg(long)]
        criterion_dir: PathBuf,
        #[arg(long, default_value = "BENCHMARKS.md")]
        doc: PathBuf,
    },
}

const FUNCTIONS: [&str; 4] = ["ingest", "consumer", "scheduler", "reconciler"];

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let results = cli.results.clone();
    match cli.command {
        Command::ColdStart { bin_dir, runs } => {
            let figures = runtime.block_on(cold_start(&bin_dir, runs))?;
            Results::update(&results, |r| r.cold_start = figures)?;
        }
        Command::Sizes {
            bin_dir,
            lambda_dir,
        } => {
            let sizes = sizes(&bin_dir, lambda_dir.as_deref());
            Results::update(&results, |r| r.sizes = sizes)?;
        }
        Command::Consumer {
            bin_dir,
            body_bytes,
            batches,
        } => {
            let run = runtime.block_on(consumer(&bin_dir, body_bytes, batches))?;
            Results::update(&results, |r| {
                r.consumer.retain(|c| c.body_bytes != run.body_bytes);
                r.consumer.push(run);
                r.consumer.sort_by_key(|c| c.body_bytes);
            })?;
        }
        Command::FanOut { grants } => {
            let mut runs = Vec::new();
            for n in grants {
                runs.push(runtime.block_on(fan_out(n))?);
            }
            Results::update(&results, |r| r.fan_out = runs)?;
        }
        Command::IngestSdk { requests } => {
            drop(runtime);
            let figures = ingest_sdk(requests)?;
            Results::update(&results, |r| r.ingest_sdk = figures)?;
        }
        Command::Invocation {
            bin_dir,
            large,
            small,
            first_answer_runs,
        } => {
            let run = runtime.block_on(invocation(&bin_dir, large, small, first_answer_runs))?;
            Results::update(&results, |r| r.invocation = Some(run))?;
        }
        Command::Hostile {
            bin_dir,
            events,
            seed,
        } => {
            let run = runtime.block_on(hostile(&bin_dir, events, seed))?;
            let clean = run.invocation_errors == 0
                && run.status_5xx == 0
                && run.enqueued_unsigned == 0
                && run.answered == run.events;
            Results::update(&results, |r| r.hostile = Some(run))?;
            if !clean {
                eprintln!("bench: hostile events: errors, 5xx or unsigned bytes enqueued (see the results)");
            }
        }
        Command::EndToEnd {
            rates,
            step_seconds,
            pollers,
            body_bytes,
        } => {
            let e = runtime.block_on(end_to_end(&rates, step_seconds, pollers, body_bytes))?;
            Results::update(&results, |r| r.end_to_end = Some(e))?;
        }
        Command::Sweep {
            bin_dir,
            sizes,
            in_slice,
        } => {
            let mut runs = Vec::new();
            for n in sizes {
                runs.push(runtime.block_on(sweep(&bin_dir, n, in_slice))?);
            }
            Results::update(&results, |r| r.sweep = runs)?;
        }
        Command::Load {
            url,
            secret,
            rate,
            seconds,
            body_bytes,
            step,
        } => {
            let out = runtime.block_on(load(&url, &secret, rate, seconds, body_bytes, step))?;
            println!("{}", serde_json::to_string(&out)?);
        }
        Command::ProfileIngest { bytes, iters } => profile_ingest(bytes, iters),
        Command::Report { criterion_dir, doc } => {
            let mut r = Results::load(&results);
            r.machine = Some(machine());
            r.ingest = figures::ingest_from_criterion(&criterion_dir);
            r.save(&results)?;
            let text = std::fs::read_to_string(&doc).unwrap_or_default();
            std::fs::write(&doc, figures::splice(&text, &figures::render(&r)))?;
            eprintln!("bench: figures written into {}", doc.display());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Environment of a function process, as Lambda would give it.

/// The variables Lambda sets, credentials included (Lambda passes them in the environment).
fn lambda_env(function: &str, runtime_api: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api),
        ("AWS_LAMBDA_FUNCTION_NAME", function),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_SESSION_TOKEN", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("NYLAS_API_KEY", "nyk_bench"),
        ("NYLAS_WEBHOOK_SECRETS", "bench-secret"),
        ("PATH", "/usr/bin:/bin"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
        env.push(("AWS_ENDPOINT_URL".into(), endpoint));
    }
    // Lambda passes a function's configured environment; glibc's allocator tunables are one
    // such setting worth measuring (`GLIBC_TUNABLES=glibc.malloc.trim_threshold=...`).
    if let Ok(tunables) = std::env::var("GLIBC_TUNABLES") {
        env.push(("GLIBC_TUNABLES".into(), tunables));
    }
    env
}

/// Placeholder values for a function's required configuration (nothing is called at start-up).
fn placeholder_config(function: &str) -> Vec<(String, String)> {
    let vars = nylas_sync::contract::for_function(function).unwrap_or_default();
    vars.iter()
        .filter(|v| v.required)
        .map(|v| {
            let value = if v.name.ends_with("_URL") {
                format!(
                    "http://127.0.0.1:9/000000000000/{}",
                    v.name.to_ascii_lowercase()
                )
            } else {
                format!("bench-{}", v.name.to_ascii_lowercase().replace('_', "-"))
            };
            (v.name.to_string(), value)
        })
        .collect()
}

fn spawn_function(bin: &Path, env: &[(String, String)]) -> std::io::Result<tokio::process::Child> {
    tokio::process::Command::new(bin)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
}

async fn stderr_of(mut child: tokio::process::Child) -> String {
    use tokio::io::AsyncReadExt;
    let _ = child.start_kill();
    let mut text = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = tokio::time::timeout(Duration::from_secs(2), e.read_to_string(&mut text)).await;
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Cold start.

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn cold_start(bin_dir: &Path, runs: usize) -> Result<Vec<figures::ColdStart>, Error> {
    let functions: Vec<&str> = FUNCTIONS
        .into_iter()
        .chain([figures::EMPTY_LAMBDA])
        .collect();
    for function in &functions {
        let bin = bin_dir.join(function);
        if !bin.exists() {
            return Err(format!(
                "{} not found; build the release binaries first",
                bin.display()
            )
            .into());
        }
    }
    // (wall ms, CPU ms) of each run, and the peak RSS, by function.
    let mut times = vec![Vec::new(); functions.len()];
    let mut cpu = vec![Vec::new(); functions.len()];
    let mut peak = vec![0; functions.len()];
    // Round by round, each function once per round: a machine that slows down or speeds up
    // during the step weighs on every function alike instead of on whichever ran then. One
    // extra round first, so each binary is in the page cache (Lambda caches it too).
    for run in 0..=runs {
        for (i, function) in functions.iter().enumerate() {
            let bin = bin_dir.join(function);
            let mut api = RuntimeApi::start().await?;
            let mut env = lambda_env(function, &api.endpoint());
            env.extend(placeholder_config(function));
            let started = Instant::now();
            let mut child = spawn_function(&bin, &env)?;
            let pid = child.id().ok_or("no pid")?;
            let call = api.next_call(Duration::from_secs(10)).await;
            match call {
                Some(c) if c.kind == CallKind::Next => {
                    let ready = c.at.duration_since(started);
                    let used = procfs::cpu(pid)?;
                    let rss = procfs::peak_rss_kib(pid)?;
                    if run > 0 {
                        times[i].push(ready.as_secs_f64() * 1000.0);
                        cpu[i].push(used.as_secs_f64() * 1000.0);
                        peak[i] = peak[i].max(rss);
                    }
                    let _ = child.kill().await;
                }
                other => {
                    let err = stderr_of(child).await;
                    return Err(
                        format!("{function} did not ask for work ({other:?}): {err}").into(),
                    );
                }
            }
        }
    }
    let mut out = Vec::new();
    for (i, function) in functions.iter().enumerate() {
        let (times, cpu) = (&mut times[i], &mut cpu[i]);
        times.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        eprintln!(
            "cold start {function}: median {:.2} ms, p90 {:.2} ms, CPU {:.2} ms",
            percentile(times, 0.5),
            percentile(times, 0.9),
            percentile(cpu, 0.5)
        );
        out.push(figures::ColdStart {
            function: (*function).into(),
            runs,
            min_ms: times[0],
            median_ms: percentile(times, 0.5),
            p90_ms: percentile(times, 0.9),
            max_ms: *times.last().unwrap_or(&0.0),
            init_peak_rss_kib: peak[i],
            init_cpu_ms: percentile(cpu, 0.5),
        });
    }
    Ok(out)
}

fn sizes(bin_dir: &Path, lambda_dir: Option<&Path>) -> Vec<figures::BinarySize> {
    let size = |p: PathBuf| std::fs::metadata(p).ok().map(|m| m.len());
    let mut out = Vec::new();
    for f in FUNCTIONS {
        out.push(figures::BinarySize {
            function: f.into(),
            target: format!("{} (host, release)", std::env::consts::ARCH),
            bytes: size(bin_dir.join(f)),
        });
    }
    if let Some(dir) = lambda_dir {
        for f in FUNCTIONS {
            out.push(figures::BinarySize {
                function: f.into(),
                target: "aarch64 bootstrap (cargo lambda build --release --arm64)".into(),
                bytes: size(dir.join(f).join("bootstrap")),
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Consumer.

fn moto_endpoint() -> Result<String, Error> {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(u) if u.starts_with("http://127.0.0.1") || u.starts_with("http://localhost") => Ok(u),
        _ => Err(
            "AWS_ENDPOINT_URL must point at a local moto server (run through tests/with-moto)"
                .into(),
        ),
    }
}

/// The total time moto has spent serving requests, in nanoseconds, when it is served by
/// `tests/bench/moto-server.py` (which keeps it); `None` under plain moto.
async fn moto_service_ns(http: &reqwest::Client) -> Option<u64> {
    let url = format!(
        "{}/__bench/service-time",
        std::env::var("AWS_ENDPOINT_URL").ok()?
    );
    let answer = http.get(url).send().await.ok()?;
    if !answer.status().is_success() {
        return None;
    }
    answer.text().await.ok()?.trim().parse().ok()
}

fn moto_pid() -> Option<u32> {
    let url = std::env::var("AWS_ENDPOINT_URL").ok()?;
    procfs::pid_listening_on(procfs::port_of(&url)?)
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, Error> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| "queue has no ARN".into())
}

fn string_attribute(value: &str) -> SqsMessageAttribute {
    let mut a = SqsMessageAttribute::default();
    a.string_value = Some(value.to_string());
    a.data_type = Some("String".into());
    a
}

async fn count_items(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Result<u64, Error> {
    let mut total = 0u64;
    let mut start = None;
    loop {
        let out = ddb
            .scan()
            .table_name(table)
            .select(Select::Count)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        total += out.count as u64;
        match out.last_evaluated_key.filter(|k| !k.is_empty()) {
            Some(k) => start = Some(k),
            None => return Ok(total),
        }
    }
}

async fn consumer(
    bin_dir: &Path,
    body_bytes: usize,
    batches: usize,
) -> Result<figures::ConsumerRun, Error> {
    moto_endpoint()?;
    let aws = support::Aws::connect().await;
    let ddb = aws.ddb();
    let objects = aws.create_table("bench-objects", true).await;
    let grants = aws.create_table("bench-grants", false).await;
    let bucket = aws.create_bucket("bench-payloads").await;
    let reconcile = aws.create_queue("bench-reconcile").await;
    let notifications = aws.create_queue("bench-notifications").await;
    let arn = queue_arn(&aws.sqs, &notifications).await?;

    let mut api = RuntimeApi::start().await?;
    let mut env = lambda_env("consumer", &api.endpoint());
    env.extend([
        ("OBJECTS_TABLE".to_string(), objects.clone()),
        ("GRANTS_TABLE".to_string(), grants),
        ("PAYLOAD_BUCKET".to_string(), bucket.clone()),
        ("RECONCILE_QUEUE_URL".to_string(), reconcile),
        // Full-object notifications are written without calling Nylas: nothing listens here.
        (
            "NYLAS_API_URI".to_string(),
            "http://127.0.0.1:9".to_string(),
        ),
    ]);
    let bin = bin_dir.join("consumer");
    let child = spawn_function(&bin, &env)?;
    let pid = child.id().ok_or("no pid")?;
    match api.next_call(Duration::from_secs(10)).await {
        Some(c) if c.kind == CallKind::Next => {}
        other => {
            return Err(format!(
                "consumer did not start ({other:?}): {}",
                stderr_of(child).await
            )
            .into())
        }
    }
    let peak_after_init = procfs::peak_rss_kib(pid)?;
    let records = 10;
    let claim_checked = body_bytes + 400 > 262_144;
    let mut cpu_per_batch = Vec::new();
    let mut wall_per_batch = Vec::new();
    for b in 0..batches {
        let mut event = SqsEvent::default();
        for i in 0..records {
            let (nid, gid, mid) = (format!("n-{b}-{i}"), format!("g-{i}"), format!("m-{b}-{i}"));
            let text = message_created(&nid, &gid, &mid, body_bytes);
            let body = if claim_checked {
                let key = format!("notifications/{}.json", hex_digest(text.as_bytes()));
                aws.s3
                    .put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(text.clone().into_bytes().into())
                    .send()
                    .await?;
                ClaimCheck {
                    bucket: bucket.clone(),
                    key,
                    bytes: text.len() as u64,
                }
                .to_message_body()
            } else {
                text
            };
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("00000000-0000-4000-8000-{b:06}{i:06}"));
            m.receipt_handle = Some(format!("rh-{b}-{i}"));
            m.body = Some(body);
            m.event_source = Some("aws:sqs".into());
            m.event_source_arn = Some(arn.clone());
            m.aws_region = Some("us-east-1".into());
            m.attributes = HashMap::from([
                ("ApproximateReceiveCount".to_string(), "1".to_string()),
                ("SentTimestamp".to_string(), "1723821985000".to_string()),
            ]);
            m.message_attributes = HashMap::from([
                (attr::TYPE.to_string(), string_attribute("message.created")),
                (attr::NOTIFICATION_ID.to_string(), string_attribute(&nid)),
                (attr::GRANT_ID.to_string(), string_attribute(&gid)),
                (attr::OBJECT_ID.to_string(), string_attribute(&mid)),
                (
                    attr::PAYLOAD.to_string(),
                    string_attribute(if claim_checked { "s3" } else { "inline" }),
                ),
            ]);
            event.records.push(m);
        }
        let payload = serde_json::to_vec(&event)?;
        drop(event);
        let cpu_before = procfs::cpu(pid)?;
        let sent = Instant::now();
        let id = api.invoke(payload);
        let answered = loop {
            match api.next_call(Duration::from_secs(120)).await {
                Some(c) => match c.kind {
                    CallKind::Response { request_id, body } if request_id == id => {
                        let v: serde_json::Value = serde_json::from_slice(&body)?;
                        let failures = v["batchItemFailures"].as_array().map_or(0, Vec::len);
                        if failures > 0 {
                            return Err(
                                format!("the consumer failed {failures} records: {v}").into()
                            );
                        }
                        break c.at;
                    }
                    CallKind::Next => continue,
                    other => return Err(format!("unexpected answer: {other:?}").into()),
                },
                None => return Err("the consumer did not answer within 120 s".into()),
            }
        };
        // Its next request for work: the batch is done and the process is idle.
        match api.next_call(Duration::from_secs(30)).await {
            Some(c) if c.kind == CallKind::Next => {}
            other => return Err(format!("expected a request for work, got {other:?}").into()),
        }
        let used = procfs::cpu(pid)? - cpu_before;
        cpu_per_batch.push(used.as_secs_f64() * 1000.0);
        wall_per_batch.push(answered.duration_since(sent).as_secs_f64() * 1000.0);
    }
    let peak = procfs::peak_rss_kib(pid)?;
    drop(child);
    let items = count_items(&ddb, &objects).await?;
    if items != (batches * records) as u64 {
        return Err(format!("{items} items in the table, expected {}", batches * records).into());
    }
    let warm = &cpu_per_batch[1.min(cpu_per_batch.len() - 1)..];
    let warm_wall = &wall_per_batch[1.min(wall_per_batch.len() - 1)..];
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let run = figures::ConsumerRun {
        body_bytes: body_bytes as u64,
        claim_checked,
        batches,
        records_per_batch: records,
        first_batch_cpu_ms_per_record: cpu_per_batch[0] / records as f64,
        warm_cpu_ms_per_record: mean(warm) / records as f64,
        warm_wall_ms_per_batch: mean(warm_wall),
        peak_rss_after_init_kib: peak_after_init,
        peak_rss_kib: peak,
        items_written: items,
    };
    eprintln!(
        "consumer {} B: {:.2} ms CPU per record (warm), peak RSS {} KiB",
        body_bytes, run.warm_cpu_ms_per_record, run.peak_rss_kib
    );
    Ok(run)
}

fn hex_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Scheduler fan-out.

/// Counts the AWS calls a client makes, by operation (`X-Amz-Target`), retries included.
#[derive(Debug, Default, Clone)]
struct CallCounter(Arc<Mutex<HashMap<String, u64>>>);

impl CallCounter {
    fn get(&self, operation_suffix: &str) -> u64 {
        self.0
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.ends_with(operation_suffix))
                    .map(|(_, v)| *v)
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("unknown")
            .to_string();
        if let Ok(mut m) = self.0.lock() {
            *m.entry(target).or_default() += 1;
        }
        Ok(())
    }
}

async fn seed_grants(ddb: &aws_sdk_dynamodb::Client, table: &str, n: u64) -> Result<(), Error> {
    let items = (0..n).map(|i| {
        HashMap::from([
            (
                "grant_id".to_string(),
                AttributeValue::S(format!("grant-{i:07}")),
            ),
            ("status".to_string(), AttributeValue::S("active".into())),
            (
                "status_version".to_string(),
                AttributeValue::N("1000".into()),
            ),
            ("provider".to_string(), AttributeValue::S("google".into())),
        ])
    });
    batch_put(ddb, table, items).await
}

/// Writes `items` with `BatchWriteItem` (25 a call, 8 calls at a time, unprocessed ones retried).
async fn batch_put(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    items: impl Iterator<Item = HashMap<String, AttributeValue>>,
) -> Result<(), Error> {
    let items: Vec<_> = items.collect();
    let results: Vec<Result<(), Error>> = stream::iter(items.chunks(25).map(<[_]>::to_vec))
        .map(|chunk| async move {
            let mut requests: Vec<WriteRequest> = chunk
                .into_iter()
                .map(|item| {
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(item))
                                .build()
                                .expect("item"),
                        )
                        .build()
                })
                .collect();
            for _ in 0..10 {
                let out = ddb
                    .batch_write_item()
                    .request_items(table, requests.clone())
                    .send()
                    .await?;
                match out.unprocessed_items.and_then(|mut u| u.remove(table)) {
                    Some(rest) if !rest.is_empty() => requests = rest,
                    _ => return Ok(()),
                }
            }
            Err("items left unprocessed".into())
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn fan_out(n: u64) -> Result<figures::FanOutRun, Error> {
    use nylas_sync::grants::GrantStore;
    use nylas_sync::jobs::JobQueue;
    use nylas_sync::scheduler::{Scheduler, SchedulerSettings};
    moto_endpoint()?;
    let aws = support::Aws::connect().await;
    let table = aws.create_table("bench-grants", false).await;
    let queue = aws.create_queue("bench-reconcile").await;
    let seed_started = Instant::now();
    seed_grants(&aws.ddb(), &table, n).await?;
    let seed_seconds = seed_started.elapsed().as_secs_f64();
    eprintln!("fan-out: {n} grants seeded in {seed_seconds:.1} s");

    let counter = CallCounter::default();
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&aws.sdk)
            .interceptor(counter.clone())
            .build(),
    );
    // moto answers a Scan page by walking the whole table in Python (and four segments
    // contend for its interpreter lock): at 100,000 grants a page takes longer than the
    // functions' 15 s operation timeout. That is moto's cost, not the scheduler's: the bench
    // gives moto's scans time (on AWS a page takes milliseconds).
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws.sdk)
            .interceptor(counter.clone())
            .timeout_config(
                aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(900))
                    .operation_attempt_timeout(Duration::from_secs(900))
                    .read_timeout(Duration::from_secs(900))
                    .build(),
            )
            .build(),
    );
    let scheduler = Scheduler {
        grants: GrantStore { ddb, table },
        jobs: JobQueue {
            sqs,
            queue_url: queue.clone(),
        },
        settings: SchedulerSettings::default(),
        clock: Arc::new(nylas_sync::clock::SystemClock),
    };
    let moto = moto_pid();
    let moto_before = moto.and_then(|p| procfs::cpu(p).ok());
    let cpu_before = procfs::self_cpu();
    let started = Instant::now();
    let out = scheduler.fan_out().await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = (procfs::self_cpu() - cpu_before).as_secs_f64();
    let moto_cpu = match (moto, moto_before) {
        (Some(p), Some(before)) => procfs::cpu(p)
            .ok()
            .map(|after| (after - before).as_secs_f64()),
        _ => None,
    };
    let attrs = aws
        .sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await?;
    let attrs = attrs.attributes.unwrap_or_default();
    let count =
        |k: QueueAttributeName| -> u64 { attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0) };
    let jobs = count(QueueAttributeName::ApproximateNumberOfMessages)
        + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        + count(QueueAttributeName::ApproximateNumberOfMessagesDelayed);
    // SQS acknowledged every entry (the scheduler counts successful entries of the batch
    // responses). The queue's count is a cross-check only: moto sums three approximate
    // counts walked one after the other, and a delayed job that becomes visible between two
    // walks is missed (as ApproximateNumberOfMessages* may on AWS). A batch whose attempt the
    // SDK timed out and retried may have been stored by the first attempt as well (moto's
    // scans hold its interpreter for seconds at 100,000 grants): SQS delivers at least once,
    // and a job twice is a reconciliation run twice, so up to ten extra jobs per retried
    // attempt are duplicates, not a defect; more than that is.
    let attempts = counter.get(".SendMessageBatch");
    let retried = attempts.saturating_sub(out.batch_calls);
    if out.grants != n || jobs > n + 10 * retried || jobs < n - n / 100 {
        return Err(format!(
            "fan-out enqueued {} jobs ({} on the queue) for {n} grants \
             ({} SendMessageBatch calls, {attempts} HTTP attempts)",
            out.grants, jobs, out.batch_calls
        )
        .into());
    }
    let run = figures::FanOutRun {
        grants: n,
        seconds,
        grants_per_second: n as f64 / seconds,
        send_message_batch_calls: out.batch_calls,
        send_message_batch_attempts: attempts,
        expected_calls: n.div_ceil(10),
        scan_calls: counter.get(".Scan"),
        jobs_on_queue: jobs,
        scheduler_cpu_s: cpu,
        scheduler_cpu_us_per_grant: cpu * 1e6 / n as f64,
        moto_cpu_s: moto_cpu,
        seed_seconds,
    };
    eprintln!(
        "fan-out {n}: {:.0} grants/s, {} SendMessageBatch calls (ceil = {}), {} HTTP attempts",
        run.grants_per_second,
        run.send_message_batch_calls,
        run.expected_calls,
        run.send_message_batch_attempts
    );
    Ok(run)
}

// ---------------------------------------------------------------------------------------------
// The whole invocation: a release binary under the Runtime API stand-in.

/// What a function answered to one invocation.
#[derive(Debug)]
enum Answer {
    Response(Vec<u8>),
    Error(Vec<u8>),
}

impl Answer {
    /// The proxy response's `statusCode`, if the answer is one.
    fn status(&self) -> Option<u16> {
        match self {
            Self::Response(body) => serde_json::from_slice::<serde_json::Value>(body)
                .ok()?
                .get("statusCode")?
                .as_u64()
                .map(|s| s as u16),
            Self::Error(_) => None,
        }
    }
}

/// A function process, started and waiting for work.
struct Running {
    api: RuntimeApi,
    child: tokio::process::Child,
    pid: u32,
}

impl Running {
    async fn start(bin: &Path, env: &[(String, String)], api: RuntimeApi) -> Result<Self, Error> {
        let child = spawn_function(bin, env)?;
        let pid = child.id().ok_or("no pid")?;
        let mut me = Self { api, child, pid };
        match me.api.next_call(Duration::from_secs(10)).await {
            Some(c) if c.kind == CallKind::Next => Ok(me),
            other => Err(format!(
                "{} did not ask for work ({other:?}): {}",
                bin.display(),
                stderr_of(me.child).await
            )
            .into()),
        }
    }

    /// One invocation: the answer, and the process's CPU from handing out the event to its next
    /// request for work (the answer posted, the process idle again).
    async fn invoke(&mut self, payload: Vec<u8>) -> Result<(Answer, Duration), Error> {
        let before = procfs::cpu(self.pid)?;
        let id = self.api.invoke(payload);
        let mut answer = None;
        loop {
            match self.api.next_call(Duration::from_secs(60)).await {
                Some(c) => match c.kind {
                    CallKind::Response { request_id, body } if request_id == id => {
                        answer = Some(Answer::Response(body))
                    }
                    CallKind::Error { request_id, body } if request_id == id => {
                        answer = Some(Answer::Error(body))
                    }
                    CallKind::Next if answer.is_some() => break,
                    other => return Err(format!("unexpected call: {other:?}").into()),
                },
                None => return Err("no answer and next request within 60 s".into()),
            }
        }
        let cpu = procfs::cpu(self.pid)? - before;
        Ok((answer.ok_or("no answer")?, cpu))
    }
}

/// An HTTP API (payload 2.0) event as API Gateway hands it to the ingest.
fn apigw_event(method: &str, body: &str, signature: &str, request_id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": "2.0",
        "routeKey": "POST /webhooks/nylas",
        "rawPath": "/webhooks/nylas",
        "rawQueryString": "",
        "headers": {
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "content-type": "application/json",
            "user-agent": "Nylas/3.0",
            "x-forwarded-for": "203.0.113.10",
            "x-nylas-signature": signature,
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": method, "path": "/webhooks/nylas", "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.10", "userAgent": "Nylas/3.0"},
            "requestId": request_id,
            "routeKey": "POST /webhooks/nylas",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1_767_225_600_000u64,
        },
        "body": body,
        "isBase64Encoded": false,
    }))
    .unwrap_or_default()
}

/// One SHA-256 pass over `bytes`, in this thread's CPU ns: the mean of about 8 MiB of passes
/// (the invocation step takes one such figure per round and the median over its rounds).
fn sha256_pass_ns(bytes: &[u8]) -> f64 {
    let passes = (8 << 20) / bytes.len().max(1) + 1;
    let t = procfs::thread_cpu();
    for _ in 0..passes {
        std::hint::black_box(Sha256::digest(std::hint::black_box(bytes)));
    }
    (procfs::thread_cpu() - t).as_nanos() as f64 / passes as f64
}

fn ingest_env_for(api: &RuntimeApi, queue: &str, bucket: &str) -> Vec<(String, String)> {
    let mut env = lambda_env("ingest", &api.endpoint());
    env.extend([
        ("NOTIFICATIONS_QUEUE_URL".to_string(), queue.to_string()),
        ("PAYLOAD_BUCKET".to_string(), bucket.to_string()),
    ]);
    env
}

/// One path through one binary: `n` invocations of `make(i)` on process `process`, the first
/// three unmeasured (connections open, allocator warm).
struct InvocationPath<'a> {
    process: usize,
    function: &'a str,
    case: &'a str,
    n: usize,
    body_bytes: usize,
    make: Box<dyn Fn(usize) -> Vec<u8> + 'a>,
    cpu_us: Vec<f64>,
    status: u16,
    event_bytes: usize,
}

impl InvocationPath<'_> {
    /// Invocation `i` of this path; false once the path has had all of its invocations.
    async fn step(&mut self, running: &mut Running, i: usize) -> Result<bool, Error> {
        if i >= self.n + 3 {
            return Ok(false);
        }
        let payload = (self.make)(i);
        self.event_bytes = payload.len();
        let (answer, used) = running.invoke(payload).await?;
        let s = answer.status().ok_or_else(|| {
            format!(
                "{} {}: not a proxy response: {answer:?}",
                self.function, self.case
            )
        })?;
        if i == 0 {
            self.status = s;
        }
        // A different answer (a moto hiccup answered 503) is another path: not counted.
        if s != self.status {
            eprintln!(
                "{} {}: invocation {i} answered {s}, not {}: left out",
                self.function, self.case, self.status
            );
        } else if i >= 3 {
            self.cpu_us.push(used.as_secs_f64() * 1e6);
        }
        Ok(true)
    }

    fn summary(mut self) -> figures::InvocationCase {
        self.cpu_us.sort_by(f64::total_cmp);
        let run = figures::InvocationCase {
            function: self.function.into(),
            case: self.case.into(),
            event_bytes: self.event_bytes as u64,
            body_bytes: self.body_bytes as u64,
            invocations: self.n,
            status: self.status,
            cpu_us_median: percentile(&self.cpu_us, 0.5),
            cpu_us_p10: percentile(&self.cpu_us, 0.1),
            cpu_us_p90: percentile(&self.cpu_us, 0.9),
            ..Default::default()
        };
        eprintln!(
            "invocation {} {}: {}, median {:.0} µs CPU",
            self.function, self.case, self.status, run.cpu_us_median
        );
        run
    }
}

async fn invocation(
    bin_dir: &Path,
    large: usize,
    small: usize,
    first_answer_runs: usize,
) -> Result<figures::InvocationRun, Error> {
    moto_endpoint()?;
    let aws = support::Aws::connect().await;
    let queue = aws.create_queue("bench-notifications").await;
    let bucket = aws.create_bucket("bench-payloads").await;
    let secret = "bench-secret";
    const LARGE: usize = 900_000;
    const SMALL: usize = 2048;
    let body = |prefix: &str, i: usize, len: usize| {
        signed(
            message_created(&format!("{prefix}-{i}"), "g-1", &format!("m-{i}"), len),
            secret,
        )
    };
    let large_signed = body("x", 0, LARGE);
    let small_body = body("x", 0, SMALL).body;
    // The kernel's part of the 900 KB paths, measured in the same rounds as SHA-256: reading the
    // event the ingest reads, writing the body it uploads.
    let mut socket = SocketFloor::start(
        apigw_event("POST", &large_signed.body, &large_signed.signature, "r"),
        large_signed.body.clone().into_bytes(),
    )?;
    let large_body = large_signed.body;

    // The empty Lambda and the ingest (one process for every path) run side by side, and the
    // paths take turns, one invocation each per round, with a SHA-256 pass over each body in
    // every round: whatever the machine does during the step (another tenant, frequency
    // changes) weighs on the floors and on the paths alike.
    let empty_bin = bin_dir.join(figures::EMPTY_LAMBDA);
    let api = RuntimeApi::start().await?;
    let env = lambda_env(figures::EMPTY_LAMBDA, &api.endpoint());
    let empty = Running::start(&empty_bin, &env, api).await?;
    let ingest_bin = bin_dir.join("ingest");
    let api = RuntimeApi::start().await?;
    let env = ingest_env_for(&api, &queue, &bucket);
    let ingest = Running::start(&ingest_bin, &env, api).await?;
    // The same handler under a minimal Runtime API client of our own (tests/ingest-own-runtime):
    // what replacing lambda_runtime's would save, on the same events.
    let own_bin = bin_dir.join(OWN_RUNTIME);
    let api = RuntimeApi::start().await?;
    let env = ingest_env_for(&api, &queue, &bucket);
    let own = Running::start(&own_bin, &env, api).await?;
    let mut processes = [empty, ingest, own];
    let forged = "0".repeat(64);
    let path =
        |process: usize, function, case, n, body_bytes, make: Box<dyn Fn(usize) -> Vec<u8>>| {
            InvocationPath {
                process,
                function,
                case,
                n,
                body_bytes,
                make,
                cpu_us: Vec::new(),
                status: 0,
                event_bytes: 0,
            }
        };
    let event = move |prefix: String, len: usize| -> Box<dyn Fn(usize) -> Vec<u8>> {
        Box::new(move |i| {
            let s = body(&prefix, i, len);
            apigw_event("POST", &s.body, &s.signature, "r")
        })
    };
    // The ingest's four paths, for a process running its handler (the ingest, or the same handler
    // under our own Runtime API client); `tag` keeps their notification ids apart.
    let ingest_paths = |process: usize, function: &'static str, tag: &'static str| {
        let forged = forged.clone();
        let put = move |i| {
            let s = body(&format!("{tag}put"), i, LARGE);
            apigw_event("PUT", &s.body, &s.signature, "r")
        };
        let bad = move |i| {
            apigw_event(
                "POST",
                &body(&format!("{tag}bad"), i, LARGE).body,
                &forged,
                "r",
            )
        };
        [
            path(
                process,
                function,
                "signed 2 KiB message.created, enqueued inline",
                small,
                SMALL,
                event(format!("{tag}small"), SMALL),
            ),
            path(
                process,
                function,
                "signed 900 KB message.created, enqueued via S3 (claim check)",
                large,
                LARGE,
                event(format!("{tag}large"), LARGE),
            ),
            path(
                process,
                function,
                "bad signature on 900 KB",
                large,
                LARGE,
                Box::new(bad),
            ),
            path(
                process,
                function,
                "PUT with a 900 KB body (405)",
                large,
                LARGE,
                Box::new(put),
            ),
        ]
    };
    let mut paths = vec![
        path(
            0,
            figures::EMPTY_LAMBDA,
            "signed 2 KiB message.created (answered, nothing done)",
            small,
            SMALL,
            event("empty".into(), SMALL),
        ),
        path(
            0,
            figures::EMPTY_LAMBDA,
            "signed 900 KB message.created (answered, nothing done)",
            large,
            LARGE,
            event("empty".into(), LARGE),
        ),
    ];
    paths.extend(ingest_paths(1, "ingest", ""));
    paths.extend(ingest_paths(2, OWN_RUNTIME, "own-"));
    // The 2 KiB paths first, then the 900 KB ones: a small invocation right after a large one
    // would measure the caches the large one left cold, not the small one.
    let (mut sha_large, mut sha_small) = (Vec::new(), Vec::new());
    let (mut socket_read, mut socket_write) = (Vec::new(), Vec::new());
    for (phase, bytes) in [(SMALL, &small_body), (LARGE, &large_body)] {
        for i in 0.. {
            let mut any = false;
            for p in paths.iter_mut().filter(|p| p.body_bytes == phase) {
                any |= p.step(&mut processes[p.process], i).await?;
            }
            if !any {
                break;
            }
            if phase == SMALL {
                sha_small.push(sha256_pass_ns(bytes.as_bytes()));
            } else {
                sha_large.push(sha256_pass_ns(bytes.as_bytes()));
                let round = socket.round()?;
                socket_read.push(round.read_ns);
                socket_write.push(round.write_ns);
            }
        }
    }
    drop(processes);
    let socket_event_bytes = socket.last_event().len() as u64;
    socket.finish()?;
    for v in [
        &mut sha_large,
        &mut sha_small,
        &mut socket_read,
        &mut socket_write,
    ] {
        v.sort_by(f64::total_cmp);
    }
    let (sha_large, sha_small) = (percentile(&sha_large, 0.5), percentile(&sha_small, 0.5));
    eprintln!("invocation: SHA-256 {sha_large:.0} ns (900 KB), {sha_small:.0} ns (2 KiB)");
    let socket = figures::SocketFloorFigures {
        event_bytes: socket_event_bytes,
        read_ns: percentile(&socket_read, 0.5),
        body_bytes: large_body.len() as u64,
        write_ns: percentile(&socket_write, 0.5),
    };
    eprintln!(
        "invocation: loopback socket, read the {} KB event {:.0} ns, write the body {:.0} ns",
        socket.event_bytes / 1000,
        socket.read_ns,
        socket.write_ns
    );
    let [empty_small, empty_large, ingest_small, large_run, bad_run, put_run, own_small, own_large, own_bad, own_put] =
        <[InvocationPath; 10]>::try_from(paths)
            .map_err(|_| "ten paths")?
            .map(InvocationPath::summary);
    let with = |mut c: figures::InvocationCase, floor: &str, bound: Option<f64>, base: f64| {
        c.floor = Some(floor.into());
        c.bound = bound;
        c.ratio = Some(c.cpu_us_median * 1000.0 / base);
        c
    };
    let mut cases = Vec::new();
    let empty_small_ns = empty_small.cpu_us_median * 1000.0;
    cases.push(with(ingest_small, "empty", Some(2.0), empty_small_ns));
    cases.push(with(large_run, "sha256", Some(3.0), sha_large));
    cases.push(with(bad_run, "sha256", Some(2.0), sha_large));
    cases.push(with(put_run, "sha256", None, sha_large));
    cases.push(empty_small);
    cases.push(with(empty_large, "sha256", None, sha_large));
    cases.push(with(own_small, "empty", None, empty_small_ns));
    cases.push(with(own_large, "sha256", None, sha_large));
    cases.push(with(own_bad, "sha256", None, sha_large));
    cases.push(with(own_put, "sha256", None, sha_large));

    // Exec to the first answer, each run a fresh process with its invocation already queued;
    // the ingest, the empty Lambda and the ingest under our own Runtime API client in turns, so
    // that the machine's drift weighs on all three.
    let http = reqwest::Client::new();
    let functions = ["ingest", figures::EMPTY_LAMBDA, OWN_RUNTIME];
    // (ready, answer, answer less moto's service time, moto's service time, CPU) per run.
    let mut runs: [Vec<[f64; 5]>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for run in 0..=first_answer_runs {
        for (f, function) in functions.into_iter().enumerate() {
            let bin = bin_dir.join(function);
            let mut api = RuntimeApi::start().await?;
            let env = if function != figures::EMPTY_LAMBDA {
                ingest_env_for(&api, &queue, &bucket)
            } else {
                lambda_env(function, &api.endpoint())
            };
            let s = body(&format!("first-{function}"), run, SMALL);
            let id = api.invoke(apigw_event("POST", &s.body, &s.signature, "r"));
            let moto_before = moto_service_ns(&http).await;
            let started = Instant::now();
            let child = spawn_function(&bin, &env)?;
            let pid = child.id().ok_or("no pid")?;
            let mut ready_at = None;
            let answered = loop {
                match api.next_call(Duration::from_secs(30)).await {
                    Some(c) => match c.kind {
                        CallKind::Next => {
                            ready_at.get_or_insert(c.at);
                        }
                        CallKind::Response { request_id, body } if request_id == id => {
                            let status = Answer::Response(body).status();
                            if status != Some(200) {
                                eprintln!("{function}: first answer {status:?}");
                            }
                            break c.at;
                        }
                        other => {
                            return Err(format!(
                                "{function}: unexpected {other:?}: {}",
                                stderr_of(child).await
                            )
                            .into())
                        }
                    },
                    None => {
                        return Err(format!(
                            "{function}: no first answer: {}",
                            stderr_of(child).await
                        )
                        .into())
                    }
                }
            };
            let used = procfs::cpu(pid)?;
            drop(child);
            let moto_ms = match (moto_before, moto_service_ns(&http).await) {
                (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e6,
                _ => 0.0,
            };
            if run > 0 {
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                let answer = ms(answered.duration_since(started));
                runs[f].push([
                    ms(ready_at.unwrap_or(answered).duration_since(started)),
                    answer,
                    answer - moto_ms,
                    moto_ms,
                    ms(used),
                ]);
            }
        }
    }
    let mut first_answer = Vec::new();
    for (f, function) in functions.into_iter().enumerate() {
        let median = |k: usize| {
            let mut v: Vec<f64> = runs[f].iter().map(|r| r[k]).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let fa = figures::FirstAnswer {
            function: function.into(),
            case: if function != figures::EMPTY_LAMBDA {
                "signed 2 KiB, enqueued in moto".into()
            } else {
                "signed 2 KiB, answered".into()
            },
            runs: first_answer_runs,
            ready_ms_median: percentile(&median(0), 0.5),
            answer_ms_median: percentile(&median(1), 0.5),
            answer_ms_p90: percentile(&median(1), 0.9),
            own_ms_median: percentile(&median(2), 0.5),
            moto_ms_median: percentile(&median(3), 0.5),
            cpu_ms_median: percentile(&median(4), 0.5),
        };
        eprintln!(
            "first answer {function}: median {:.2} ms (ready {:.2} ms; less moto's {:.2} ms: {:.2} ms), CPU {:.2} ms",
            fa.answer_ms_median, fa.ready_ms_median, fa.moto_ms_median, fa.own_ms_median, fa.cpu_ms_median
        );
        first_answer.push(fa);
    }
    Ok(figures::InvocationRun {
        sha256: vec![(LARGE as u64, sha_large), (SMALL as u64, sha_small)],
        socket: Some(socket),
        cases,
        first_answer,
    })
}

// ---------------------------------------------------------------------------------------------
// Hostile events at the ingest binary.

async fn hostile(bin_dir: &Path, events: usize, seed: u64) -> Result<figures::HostileRun, Error> {
    use bench::hostile::{self, Rng, Signed};
    moto_endpoint()?;
    let aws = support::Aws::connect().await;
    let queue = aws.create_queue("bench-hostile").await;
    let bucket = aws.create_bucket("bench-hostile").await;
    let bin = bin_dir.join("ingest");
    let start = |api: RuntimeApi| {
        let mut env = ingest_env_for(&api, &queue, &bucket);
        for (k, v) in env.iter_mut() {
            if k == "NYLAS_WEBHOOK_SECRETS" {
                *v = hostile::SECRET.into();
            }
        }
        let bin = bin.clone();
        async move { Running::start(&bin, &env, api).await }
    };
    let mut running = start(RuntimeApi::start().await?).await?;
    let mut rng = Rng::new(seed);
    let mut signed = Signed::default();
    let mut out = figures::HostileRun {
        events,
        seed,
        ..Default::default()
    };
    let mut statuses: std::collections::BTreeMap<u16, usize> = Default::default();
    let mut cpu = Duration::ZERO;
    let started = Instant::now();
    for i in 0..events {
        let e = hostile::event(&mut rng, i);
        if let Some(text) = &e.signed_text {
            signed.insert(text);
            out.signed_posts += 1;
        }
        match running.invoke(e.payload).await {
            Ok((answer, used)) => {
                cpu += used;
                out.answered += 1;
                match answer.status() {
                    Some(s) => {
                        *statuses.entry(s).or_default() += 1;
                        match s {
                            200..=299 => out.status_2xx += 1,
                            400..=499 => out.status_4xx += 1,
                            500..=599 => out.status_5xx += 1,
                            _ => {}
                        }
                    }
                    None => {
                        out.invocation_errors += 1;
                        if let Answer::Error(body) = &answer {
                            eprintln!(
                                "hostile event {i}: invocation error: {}",
                                String::from_utf8_lossy(body)
                            );
                        }
                    }
                }
            }
            Err(e) => {
                // The process died or hung: count it and start another.
                eprintln!("hostile event {i}: {e}");
                out.invocation_errors += 1;
                out.process_restarts += 1;
                drop(running);
                running = start(RuntimeApi::start().await?).await?;
            }
        }
        if (i + 1) % 2000 == 0 {
            eprintln!(
                "hostile: {} events, {} errors, {} 5xx",
                i + 1,
                out.invocation_errors,
                out.status_5xx
            );
        }
    }
    out.seconds = started.elapsed().as_secs_f64();
    out.cpu_us_per_event = cpu.as_secs_f64() * 1e6 / events.max(1) as f64;
    drop(running);
    out.statuses = statuses.into_iter().collect();
    // Everything on the queue must be bytes that were signed (claim checks resolved from S3).
    for m in aws.drain(&queue).await {
        out.enqueued += 1;
        let body = m.body.clone().unwrap_or_default();
        let bytes = match support::attribute(&m, attr::PAYLOAD).as_deref() {
            Some("s3") => match ClaimCheck::from_message_body(&body) {
                Some(c) => aws.object(&c.bucket, &c.key).await,
                None => body.into_bytes(),
            },
            _ => body.into_bytes(),
        };
        if !signed.contains(&bytes) {
            out.enqueued_unsigned += 1;
            if out.enqueued_unsigned <= 5 {
                eprintln!(
                    "hostile: enqueued bytes that were not signed ({} bytes, payload {:?}): {:?}",
                    bytes.len(),
                    support::attribute(&m, attr::PAYLOAD),
                    String::from_utf8_lossy(&bytes[..bytes.len().min(160)])
                );
            }
        }
    }
    eprintln!(
        "hostile: {} events, {} answered, {} invocation errors, {} 5xx, {} signed POSTs, {} enqueued, {} unsigned",
        out.events, out.answered, out.invocation_errors, out.status_5xx, out.signed_posts, out.enqueued, out.enqueued_unsigned
    );
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The drift sweep against the mailbox's size.

/// One drift sweep slice by the release reconciler binary, under the Runtime API stand-in,
/// against a store holding `stored` messages besides the slice's: the reconciler's
/// `StoreReadUnits` for the invocation, its peak RSS and CPU. The slice (the recent window, the
/// older slices switched off) holds the emulator's mailbox of `in_slice` messages, synced first;
/// the other messages are older, so a sweep bounded by the slice reads none of them.
async fn sweep(bin_dir: &Path, stored: u64, in_slice: usize) -> Result<figures::SweepRun, Error> {
    use nylas_sync::jobs::{JobKind, ReconcileJob};
    moto_endpoint()?;
    let aws = support::Aws::connect().await;
    let objects = aws.create_table("bench-sweep-objects", true).await;
    let grants = aws.create_table("bench-sweep-grants", false).await;
    let bucket = aws.create_bucket("bench-sweep-payloads").await;
    let reconcile = aws.create_queue("bench-sweep-reconcile").await;
    let emulator = nylas_emulator::Emulator::start(nylas_emulator::EmulatorConfig {
        grants: 1,
        initial_messages_per_grant: in_slice,
        initial_events_per_grant: 0,
        recurring_series_per_grant: 0,
        ..Default::default()
    })
    .await?;
    let grant = emulator.grant_ids().remove(0);
    let config: Vec<(String, String)> = vec![
        ("OBJECTS_TABLE".into(), objects.clone()),
        ("GRANTS_TABLE".into(), grants),
        ("PAYLOAD_BUCKET".into(), bucket),
        ("RECONCILE_QUEUE_URL".into(), reconcile),
        ("NYLAS_API_URI".into(), emulator.base_url()),
        ("NYLAS_API_KEY".into(), emulator.api_key().to_string()),
        // One slice: the recent window, not the walk through older ones.
        ("DRIFT_OLDER_SLICES".into(), "0".into()),
        // moto answers a query on the grant's partition by walking all of it in Python: at
        // 100,000 stored messages a page took longer than the 5 s attempt limit, three times,
        // and the job failed on the 15 s operation limit. That is moto's time (a page takes
        // milliseconds on DynamoDB); the read units and memory measured do not depend on it.
        ("SDK_ATTEMPT_TIMEOUT_MS".into(), "300000".into()),
        ("SDK_OPERATION_TIMEOUT_MS".into(), "900000".into()),
    ];

    // The grant synced (in this process, by the library), then the older mail added.
    let env: HashMap<&str, &str> = config
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let reconciler = nylas_sync::reconcile::Reconciler::from_env(&env).await?;
    reconciler
        .grants
        .set_status(&grant, nylas_sync::grants::GrantStatus::Active, 1, &[])
        .await?;
    let synced = reconciler
        .run(
            &ReconcileJob::new(grant.clone(), JobKind::Incremental, None),
            Instant::now() + Duration::from_secs(120),
        )
        .await?;
    if synced.written < in_slice as u64 {
        return Err(format!("the first sync wrote {} objects", synced.written).into());
    }
    let now = emulator.now();
    let filled = Instant::now();
    batch_put(
        &aws.ddb(),
        &objects,
        (0..stored).map(|i| older_message(&grant, i, now, stored)),
    )
    .await?;
    eprintln!(
        "sweep: {stored} older messages stored in {:.1} s",
        filled.elapsed().as_secs_f64()
    );

    // The release reconciler, one job with a forced sweep.
    let mut api = RuntimeApi::start().await?;
    let mut env = lambda_env("reconciler", &api.endpoint());
    env.extend(config);
    let mut child = tokio::process::Command::new(bin_dir.join("reconciler"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().ok_or("no pid")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let lines = tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut out = Vec::new();
        let mut reader = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(l)) = reader.next_line().await {
            out.push(l);
        }
        out
    });
    match api.next_call(Duration::from_secs(10)).await {
        Some(c) if c.kind == CallKind::Next => {}
        other => return Err(format!("the reconciler did not start ({other:?})").into()),
    }
    let peak_after_init = procfs::peak_rss_kib(pid)?;
    let mut job = ReconcileJob::new(grant.clone(), JobKind::Incremental, None);
    job.force_sweep = true;
    let mut record = SqsMessage::default();
    record.message_id = Some("00000000-0000-4000-8000-000000000001".into());
    record.receipt_handle = Some("rh-sweep".into());
    record.body = Some(serde_json::to_string(&job)?);
    record.event_source = Some("aws:sqs".into());
    let mut event = SqsEvent::default();
    event.records.push(record);
    let cpu_before = procfs::cpu(pid)?;
    let sent = Instant::now();
    let id = api.invoke(serde_json::to_vec(&event)?);
    let answer = loop {
        match api.next_call(Duration::from_secs(300)).await {
            Some(c) => match c.kind {
                CallKind::Response { request_id, body } if request_id == id => break body,
                CallKind::Next => continue,
                other => return Err(format!("unexpected answer: {other:?}").into()),
            },
            None => return Err("the reconciler did not answer within 300 s".into()),
        }
    };
    let wall = sent.elapsed();
    match api.next_call(Duration::from_secs(30)).await {
        Some(c) if c.kind == CallKind::Next => {}
        other => return Err(format!("expected a request for work, got {other:?}").into()),
    }
    let cpu = procfs::cpu(pid)? - cpu_before;
    let peak = procfs::peak_rss_kib(pid)?;
    let failures: serde_json::Value = serde_json::from_slice(&answer)?;
    let failed = failures["batchItemFailures"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    // Its stdout to the end: the process is stopped first, so nothing is still being written.
    child.start_kill()?;
    let _ = child.wait().await;
    let lines = lines.await?;
    if failed {
        let last = &lines[lines.len().saturating_sub(20)..];
        return Err(
            format!("the reconcile job failed: {failures}; its last log lines: {last:#?}").into(),
        );
    }
    let swept = lines.iter().any(|l| {
        serde_json::from_str::<serde_json::Value>(l)
            .is_ok_and(|v| v["swept"] == true || v["fields"]["swept"] == true)
    });
    let read_units: f64 = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| match &v["StoreReadUnits"] {
            serde_json::Value::Array(a) => Some(a.iter().filter_map(|x| x.as_f64()).sum()),
            other => other.as_f64(),
        })
        .sum();
    if !swept {
        return Err(format!("the reconcile run did not sweep: {lines:#?}").into());
    }
    emulator.shutdown().await;
    let run = figures::SweepRun {
        stored_messages: stored + in_slice as u64,
        in_slice: in_slice as u64,
        read_units,
        cpu_ms: cpu.as_secs_f64() * 1000.0,
        wall_ms: wall.as_secs_f64() * 1000.0,
        peak_rss_after_init_kib: peak_after_init,
        peak_rss_kib: peak,
    };
    eprintln!(
        "sweep: {} stored, {} in the slice: {} read units, peak RSS {} KiB, {:.1} ms CPU, {:.1} s",
        run.stored_messages,
        run.in_slice,
        run.read_units,
        run.peak_rss_kib,
        run.cpu_ms,
        run.wall_ms / 1000.0
    );
    Ok(run)
}

/// A message as the store keeps it (the item `ObjectStore::put_if_newer` writes), received
/// between 30 days and about five years before `now`: outside the sweep's recent window.
fn older_message(grant: &str, i: u64, now: i64, of: u64) -> HashMap<String, AttributeValue> {
    let s = |v: &str| AttributeValue::S(v.to_string());
    let n = |v: i64| AttributeValue::N(v.to_string());
    let id = format!("older-{i:07}");
    let date = now - 30 * 86_400 - (i as i64 * (1_800 * 86_400) / of.max(1) as i64);
    let flags = AttributeValue::M(HashMap::from([
        ("folders".to_string(), AttributeValue::L(vec![s("INBOX")])),
        ("unread".to_string(), AttributeValue::Bool(i % 3 == 0)),
        ("starred".to_string(), AttributeValue::Bool(false)),
    ]));
    let mut object = HashMap::from([
        ("id".to_string(), s(&id)),
        ("grant_id".to_string(), s(grant)),
        ("object".to_string(), s("message")),
        ("date".to_string(), n(date)),
        ("subject".to_string(), s("An older message")),
        ("body".to_string(), s(&"x".repeat(2_000))),
    ]);
    if let AttributeValue::M(f) = &flags {
        object.extend(f.clone());
    }
    HashMap::from([
        ("grant_id".to_string(), s(grant)),
        ("sk".to_string(), s(&format!("message#{id}"))),
        ("kind".to_string(), s("message")),
        ("object_id".to_string(), s(&id)),
        ("version".to_string(), n(date * 1000)),
        ("deleted".to_string(), AttributeValue::Bool(false)),
        ("content_hash".to_string(), s(&format!("{i:064x}"))),
        ("source".to_string(), s("reconcile")),
        ("written_at".to_string(), n(date * 1000)),
        (nylas_sync::store::DATE_ATTRIBUTE.to_string(), n(date)),
        (nylas_sync::store::FLAGS_ATTRIBUTE.to_string(), flags),
        ("object".to_string(), AttributeValue::M(object)),
    ])
}

// ---------------------------------------------------------------------------------------------
// Ingest with the real sink, against moto.

fn ingest_sdk(requests: usize) -> Result<Vec<figures::IngestSdkFigure>, Error> {
    use nylas_sync::ingest::Ingest;
    moto_endpoint()?;
    // One thread: the process's CPU time is the handler's and the SDK's.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let aws = support::Aws::connect().await;
        let queue = aws.create_queue("bench-notifications").await;
        let bucket = aws.create_bucket("bench-payloads").await;
        let secret = "bench-secret";
        let ingest = Ingest::from_env(&support::ingest_env(&queue, &bucket, secret)).await?;
        let mut out = Vec::new();
        for (label, len, n) in [
            ("2KiB", 2048usize, requests),
            ("1MiB", 1 << 20, requests / 10),
        ] {
            let prepared: Vec<lambda_http::Request> = (0..n + 5)
                .map(|i| {
                    let body =
                        message_created(&format!("n-{label}-{i}"), "g-1", &format!("m-{i}"), len);
                    support::signed_post(&body, secret)
                })
                .collect();
            let mut it = prepared.into_iter();
            // Warm the connections.
            for req in it.by_ref().take(5) {
                let (resp, _) = nylas_sync::metrics::capture(ingest.handle(req)).await;
                if resp.status() != 200 {
                    return Err::<_, Error>(format!("ingest answered {}", resp.status()).into());
                }
            }
            let cpu = procfs::self_cpu();
            let started = Instant::now();
            for req in it {
                let (resp, _) = nylas_sync::metrics::capture(ingest.handle(req)).await;
                if resp.status() != 200 {
                    return Err(format!("ingest answered {}", resp.status()).into());
                }
            }
            let cpu = (procfs::self_cpu() - cpu).as_secs_f64();
            let wall = started.elapsed().as_secs_f64();
            out.push(figures::IngestSdkFigure {
                body: label.into(),
                requests: n as u64,
                cpu_us_per_request: cpu * 1e6 / n as f64,
                wall_ms_per_request: wall * 1e3 / n as f64,
                via_s3: len + 400 > 262_144,
            });
        }
        Ok(out)
    })
}

// ---------------------------------------------------------------------------------------------
// End to end.

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct LoadOutcome {
    sent: u64,
    ok: u64,
    not_ok: u64,
    p50_ms: f64,
    p99_ms: f64,
    seconds: f64,
}

async fn load(
    url: &str,
    secret: &str,
    rate: f64,
    seconds: f64,
    body_bytes: usize,
    step: u64,
) -> Result<LoadOutcome, Error> {
    let n = (rate * seconds).round() as u64;
    let prepared: Vec<(String, String)> = (0..n)
        .map(|i| {
            let grant = format!("g-{:03}", i % 100);
            let s = signed(
                message_created(
                    &format!("n-{step}-{i}"),
                    &grant,
                    &format!("m-{step}-{i}"),
                    body_bytes,
                ),
                secret,
            );
            (s.body, s.signature)
        })
        .collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30))
        .build()?;
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n as usize);
    for (i, (body, signature)) in prepared.into_iter().enumerate() {
        tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / rate)).await;
        let http = http.clone();
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = http
                .post(url)
                .header("content-type", "application/json")
                .header("x-nylas-signature", signature)
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16() == 200)
                .unwrap_or(false);
            (ok, t.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut ok = 0;
    for t in tasks {
        let (good, ms) = t.await?;
        ok += u64::from(good);
        latencies.push(ms);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(LoadOutcome {
        sent: n,
        ok,
        not_ok: n - ok,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn end_to_end(
    rates: &[f64],
    step_seconds: f64,
    pollers: usize,
    body_bytes: usize,
) -> Result<figures::EndToEnd, Error> {
    use nylas_sync::consumer::{Consumer, ConsumerCounters};
    use nylas_sync::ingest::Ingest;
    moto_endpoint()?;
    let aws = support::Aws::connect().await;
    let (queue, _dlq) = aws
        .create_queue_with("bench-notifications", 30, Some(5))
        .await;
    let bucket = aws.create_bucket("bench-payloads").await;
    let objects = aws.create_table("bench-objects", true).await;
    let grants = aws.create_table("bench-grants", false).await;
    let reconcile = aws.create_queue("bench-reconcile").await;
    let secret = "bench-e2e-secret";

    let ingest = Arc::new(Ingest::from_env(&support::ingest_env(&queue, &bucket, secret)).await?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhooks/nylas", listener.local_addr()?);
    let server = tokio::spawn(local_stack::serve_ingest(ingest, listener));

    let env: HashMap<&str, &str> = HashMap::from([
        ("OBJECTS_TABLE", objects.as_str()),
        ("GRANTS_TABLE", grants.as_str()),
        ("PAYLOAD_BUCKET", bucket.as_str()),
        ("RECONCILE_QUEUE_URL", reconcile.as_str()),
        ("NYLAS_API_URI", "http://127.0.0.1:9"),
        ("NYLAS_API_KEY", "nyk_bench"),
    ]);
    let consumer = Arc::new(Consumer::from_env(&env).await?);
    let poller = local_stack::SqsPoller::new(aws.sqs.clone(), &queue).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut poll_tasks = Vec::new();
    for _ in 0..pollers {
        let (consumer, poller, stop) = (Arc::clone(&consumer), poller.clone(), Arc::clone(&stop));
        poll_tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let c = Arc::clone(&consumer);
                let polled = poller
                    .poll_once(1, |event| async move {
                        nylas_sync::metrics::capture(c.handle(event)).await.0
                    })
                    .await;
                if polled.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    let written = || ConsumerCounters::get(&consumer.counters.written);
    let moto = moto_pid();
    let exe = std::env::current_exe()?;
    let mut steps = Vec::new();
    let mut accepted_total = 0u64;
    let mut cpu_sum = 0.0;
    let mut moto_sum = 0.0;
    let mut webhooks_sum = 0u64;
    let mut misses = 0;
    for (k, &rate) in rates.iter().enumerate() {
        let written_before = written();
        let cpu_before = procfs::self_cpu();
        let moto_before = moto.and_then(|p| procfs::cpu(p).ok());
        let started = Instant::now();
        // The load comes from another process, so this one's CPU is the functions' alone.
        let output = tokio::process::Command::new(&exe)
            .args([
                "load",
                "--url",
                &url,
                "--secret",
                secret,
                "--rate",
                &rate.to_string(),
                "--seconds",
                &step_seconds.to_string(),
                "--body-bytes",
                &body_bytes.to_string(),
                "--step",
                &k.to_string(),
            ])
            .stderr(Stdio::inherit())
            .output()
            .await?;
        let elapsed = started.elapsed().as_secs_f64();
        let load: LoadOutcome = serde_json::from_slice(&output.stdout).map_err(|e| {
            format!(
                "load generator: {e}: {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })?;
        let processed = written() - written_before;
        let cpu = (procfs::self_cpu() - cpu_before).as_secs_f64();
        let moto_cpu = match (moto, moto_before) {
            (Some(p), Some(b)) => procfs::cpu(p).ok().map(|a| (a - b).as_secs_f64()),
            _ => None,
        };
        let (visible, in_flight) = aws.queue_depth(&queue).await;
        let backlog = visible + in_flight;
        accepted_total += load.ok;
        let kept_up = load.not_ok == 0 && (backlog as f64) <= rate.max(10.0);
        let step = figures::EndToEndStep {
            offered_per_s: rate,
            accepted_per_s: load.ok as f64 / elapsed,
            processed_per_s: processed as f64 / elapsed,
            rejected: load.not_ok,
            ingest_p50_ms: load.p50_ms,
            ingest_p99_ms: load.p99_ms,
            backlog_at_end: backlog,
            moto_cpu: moto_cpu.map(|m| m / elapsed),
            functions_cpu: cpu / elapsed,
            kept_up,
        };
        eprintln!(
            "end to end {rate}/s: accepted {:.0}/s, processed {:.0}/s, backlog {backlog}, p99 {:.0} ms, moto {:?}, functions {:.0}%",
            step.accepted_per_s, step.processed_per_s, step.ingest_p99_ms, step.moto_cpu, step.functions_cpu * 100.0
        );
        if kept_up {
            cpu_sum += cpu;
            moto_sum += moto_cpu.unwrap_or(0.0);
            webhooks_sum += load.ok;
        }
        steps.push(step);
        // Drain before the next step (not measured).
        let deadline = Instant::now() + Duration::from_secs(300);
        while written() < accepted_total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if written() < accepted_total {
            return Err(format!(
                "only {} of {accepted_total} webhooks reached DynamoDB",
                written()
            )
            .into());
        }
        if !kept_up {
            misses += 1;
            if misses >= 2 {
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in poll_tasks {
        let _ = t.await;
    }
    server.abort();
    let sustained = steps
        .iter()
        .filter(|s| s.kept_up)
        .map(|s| s.accepted_per_s)
        .fold(0.0, f64::max);
    Ok(figures::EndToEnd {
        body_bytes: body_bytes as u64,
        pollers,
        step_seconds,
        steps,
        sustained_per_s: sustained,
        functions_cpu_us_per_webhook: cpu_sum * 1e6 / webhooks_sum.max(1) as f64,
        moto_cpu_us_per_webhook: moto.map(|_| moto_sum * 1e6 / webhooks_sum.max(1) as f64),
    })
}

// ---------------------------------------------------------------------------------------------

fn profile_ingest(bytes: usize, iters: usize) {
    use nylas_sync::config::WebhookSecret;
    use nylas_sync::enqueue_request::build;
    use nylas_sync::notification::parse_routing;
    use nylas_sync::signature::verify_signature;
    let secret = "bench-secret";
    let s = signed(message_created("n-1", "g-1", "m-1", bytes), secret);
    let secrets = vec![WebhookSecret::new(secret)];
    let sink = bench::build_only::BuildOnlySink::default();
    for _ in 0..iters {
        // As the handler: the body arrives as text (API Gateway's event is JSON).
        let text = s.body.clone();
        let verified = verify_signature(&secrets, Some(s.signature.as_bytes()), text.as_bytes());
        assert!(verified.is_ok());
        let routing = parse_routing(text.as_bytes())
            .expect("routing")
            .into_owned();
        std::hint::black_box(build(&sink.destination, &routing, text).expect("build"));
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> figures::Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib / 1024)
        .unwrap_or(0);
    figures::Machine {
        nproc: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model,
        uname: command_line("uname", &["-a"]),
        memory_mib,
        rustc: command_line("rustc", &["--version"]),
        date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    }
}
