//! The figures of one `make bench` run: each step merges its section into a JSON file, and
//! `bench report` renders them (with criterion's medians) between two markers of BENCHMARKS.md,
//! leaving the hand-written analysis around them untouched.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Results {
    pub machine: Option<Machine>,
    #[serde(default)]
    pub ingest: Vec<IngestFigure>,
    #[serde(default)]
    pub ingest_sdk: Vec<IngestSdkFigure>,
    #[serde(default)]
    pub cold_start: Vec<ColdStart>,
    #[serde(default)]
    pub sizes: Vec<BinarySize>,
    #[serde(default)]
    pub consumer: Vec<ConsumerRun>,
    #[serde(default)]
    pub fan_out: Vec<FanOutRun>,
    pub end_to_end: Option<EndToEnd>,
    #[serde(default)]
    pub invocation: Option<InvocationRun>,
    #[serde(default)]
    pub hostile: Option<HostileRun>,
    #[serde(default)]
    pub sweep: Vec<SweepRun>,
}

/// One drift sweep slice by the release reconciler binary, against a store of a given size.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SweepRun {
    /// Messages the store held (the slice's and the older ones).
    pub stored_messages: u64,
    pub in_slice: u64,
    /// The invocation's `StoreReadUnits` (DynamoDB read units of the objects table).
    pub read_units: f64,
    /// Process CPU from the event handed over to the next request for work.
    pub cpu_ms: f64,
    /// Wall time from the event handed over to the answer (moto's answers dominate it).
    #[serde(default)]
    pub wall_ms: f64,
    pub peak_rss_after_init_kib: u64,
    pub peak_rss_kib: u64,
}

/// One path through a release binary under the Runtime API stand-in: the process's CPU from
/// handing it the event to its next request for work (the answer posted).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct InvocationCase {
    pub function: String,
    pub case: String,
    /// Size of the API Gateway event (what the Runtime API hands over) and of the body in it.
    pub event_bytes: u64,
    pub body_bytes: u64,
    pub invocations: usize,
    /// The status code answered (the proxy response's `statusCode`).
    pub status: u16,
    pub cpu_us_median: f64,
    pub cpu_us_p10: f64,
    pub cpu_us_p90: f64,
    /// What the target compares with: "sha256" or "empty", the bound, and the ratio.
    pub floor: Option<String>,
    pub bound: Option<f64>,
    pub ratio: Option<f64>,
}

/// Exec to the first answer: the invocation queued before the process starts.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct FirstAnswer {
    pub function: String,
    pub case: String,
    pub runs: usize,
    pub ready_ms_median: f64,
    pub answer_ms_median: f64,
    pub answer_ms_p90: f64,
    /// Exec to the first answer less the time moto spent serving the run's requests (AWS's
    /// time in production, not the function's): median of runs.
    #[serde(default)]
    pub own_ms_median: f64,
    /// Moto's time serving the run's requests (0 for the empty Lambda, or under plain moto).
    #[serde(default)]
    pub moto_ms_median: f64,
    pub cpu_ms_median: f64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct InvocationRun {
    /// One SHA-256 pass over each body (this process, thread CPU, median of rounds), ns.
    pub sha256: Vec<(u64, f64)>,
    /// The kernel's part of the 900 KB paths ([`crate::socket_floor`]), medians of the same rounds.
    #[serde(default)]
    pub socket: Option<SocketFloorFigures>,
    pub cases: Vec<InvocationCase>,
    pub first_answer: Vec<FirstAnswer>,
}

/// Reading the large event from a loopback socket and writing its body to one (thread CPU,
/// medians), read against the SHA-256 pass over the same body in the same rounds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SocketFloorFigures {
    pub event_bytes: u64,
    pub read_ns: f64,
    pub body_bytes: u64,
    pub write_ns: f64,
}

/// Generated hostile events at the release ingest binary.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct HostileRun {
    pub events: usize,
    pub seed: u64,
    pub answered: usize,
    pub invocation_errors: usize,
    pub status_2xx: usize,
    pub status_4xx: usize,
    pub status_5xx: usize,
    /// Status codes and how often they were answered.
    pub statuses: Vec<(u16, usize)>,
    pub signed_posts: usize,
    pub enqueued: usize,
    pub enqueued_unsigned: usize,
    pub process_restarts: usize,
    pub seconds: f64,
    pub cpu_us_per_event: f64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub uname: String,
    pub memory_mib: u64,
    pub rustc: String,
    pub date: String,
}

/// Criterion medians for one body size, in nanoseconds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct IngestFigure {
    pub body: String,
    pub bytes: u64,
    pub sha256_ns: f64,
    pub hmac_verify_ns: f64,
    pub parse_routing_ns: f64,
    pub build_requests_ns: f64,
    pub verify_parse_build_ns: f64,
    pub handler_ns: f64,
    pub utf8_check_ns: f64,
}

/// The real ingest handler and SDK against moto: CPU of this process per request.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct IngestSdkFigure {
    pub body: String,
    pub requests: u64,
    pub cpu_us_per_request: f64,
    pub wall_ms_per_request: f64,
    pub via_s3: bool,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ColdStart {
    pub function: String,
    pub runs: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub max_ms: f64,
    /// Peak RSS when the function first asked for work.
    pub init_peak_rss_kib: u64,
    /// CPU the process used until then.
    pub init_cpu_ms: f64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct BinarySize {
    pub function: String,
    pub target: String,
    pub bytes: Option<u64>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ConsumerRun {
    pub body_bytes: u64,
    pub claim_checked: bool,
    pub batches: usize,
    pub records_per_batch: usize,
    /// Process CPU per record, first batch (connections opened) and the warm ones.
    pub first_batch_cpu_ms_per_record: f64,
    pub warm_cpu_ms_per_record: f64,
    pub warm_wall_ms_per_batch: f64,
    pub peak_rss_after_init_kib: u64,
    pub peak_rss_kib: u64,
    pub items_written: u64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct FanOutRun {
    pub grants: u64,
    pub seconds: f64,
    pub grants_per_second: f64,
    /// The scheduler's calls (each a batch of at most ten).
    pub send_message_batch_calls: u64,
    /// HTTP attempts the SDK made for them (its retries of a failed connection included).
    #[serde(default)]
    pub send_message_batch_attempts: u64,
    pub expected_calls: u64,
    pub scan_calls: u64,
    pub jobs_on_queue: u64,
    pub scheduler_cpu_s: f64,
    pub scheduler_cpu_us_per_grant: f64,
    pub moto_cpu_s: Option<f64>,
    pub seed_seconds: f64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct EndToEndStep {
    pub offered_per_s: f64,
    pub accepted_per_s: f64,
    pub processed_per_s: f64,
    pub rejected: u64,
    pub ingest_p50_ms: f64,
    pub ingest_p99_ms: f64,
    /// Visible + in flight when the step's traffic stopped.
    pub backlog_at_end: u64,
    /// Share of one core, over the step.
    pub moto_cpu: Option<f64>,
    pub functions_cpu: f64,
    pub kept_up: bool,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct EndToEnd {
    pub body_bytes: u64,
    pub pollers: usize,
    pub step_seconds: f64,
    pub steps: Vec<EndToEndStep>,
    pub sustained_per_s: f64,
    pub functions_cpu_us_per_webhook: f64,
    pub moto_cpu_us_per_webhook: Option<f64>,
}

impl Results {
    pub fn load(path: &Path) -> Self {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self).unwrap_or_default())
    }

    /// Applies `f` to the results stored at `path` and writes them back.
    pub fn update(path: &Path, f: impl FnOnce(&mut Results)) -> std::io::Result<()> {
        let mut r = Self::load(path);
        f(&mut r);
        r.save(path)
    }
}

/// The median of a criterion benchmark, in nanoseconds.
pub fn criterion_median_ns(criterion_dir: &Path, group: &str, function: &str) -> Option<f64> {
    let path = criterion_dir
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

pub fn ingest_from_criterion(criterion_dir: &Path) -> Vec<IngestFigure> {
    [("2KiB", 2048u64), ("1MiB", 1 << 20)]
        .into_iter()
        .filter_map(|(label, bytes)| {
            let group = format!("ingest-{label}");
            let get = |f: &str| criterion_median_ns(criterion_dir, &group, f);
            Some(IngestFigure {
                body: label.into(),
                bytes,
                sha256_ns: get("sha256")?,
                hmac_verify_ns: get("hmac_verify")?,
                parse_routing_ns: get("parse_routing")?,
                build_requests_ns: get("build_requests")?,
                verify_parse_build_ns: get("verify_parse_build")?,
                handler_ns: get("handler")?,
                utf8_check_ns: get("utf8_check")?,
            })
        })
        .collect()
}

pub const BEGIN: &str =
    "<!-- figures:begin (written by `make bench`; edit outside the markers) -->";
pub const END: &str = "<!-- figures:end -->";

/// Replaces the text between the markers of `doc` with `figures` (appends the block if absent).
pub fn splice(doc: &str, figures: &str) -> String {
    match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if e > b => format!(
            "{}{BEGIN}\n{figures}{END}{}",
            &doc[..b],
            &doc[e + END.len()..]
        ),
        _ => format!("{doc}\n{BEGIN}\n{figures}{END}\n"),
    }
}

fn us(ns: f64) -> String {
    if ns >= 100_000.0 {
        format!("{:.0} µs", ns / 1000.0)
    } else if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

/// The name of the bench-only empty Rust Lambda (`tests/empty-lambda`, its own package).
pub const EMPTY_LAMBDA: &str = "empty-lambda";

/// The ingest's handler under our own minimal Runtime API client (`tests/ingest-own-runtime`):
/// bench-only, measured beside the ingest to show what replacing `lambda_runtime` would save.
pub const OWN_RUNTIME: &str = "ingest-own-runtime";

fn render_invocation(o: &mut String, r: &Results) {
    use std::fmt::Write;
    let _ = writeln!(o, "### The whole invocation: release binaries under the Runtime API stand-in, process CPU per invocation (moto behind)\n");
    let Some(inv) = r.invocation.as_ref().filter(|i| !i.cases.is_empty()) else {
        let _ = writeln!(o, "_not measured in this run_\n");
        return;
    };
    let _ = writeln!(o, "From handing the process the event's bytes to its next request for work (the answer posted), all threads, read from the kernel (`clock_getcpuclockid`). Floors from the same run: one SHA-256 pass over the same body (this harness, thread CPU) and the empty Rust Lambda's invocation on the same event. The `ingest-own-runtime` rows are the ingest's handler under a minimal Runtime API client of our own (bench-only, never deployed), on the same events in the same rounds: what replacing `lambda_runtime` would give.\n");
    for (bytes, ns) in &inv.sha256 {
        let _ = writeln!(
            o,
            "- one SHA-256 pass over a {bytes}-byte body: {} ({:.2} GB/s)",
            us(*ns),
            *bytes as f64 / ns
        );
    }
    let socket = inv.socket.as_ref().and_then(|s| {
        let sha = inv
            .sha256
            .iter()
            .find(|(bytes, _)| *bytes == s.body_bytes)?
            .1;
        Some((s, sha))
    });
    if let Some((s, sha)) = socket {
        let x = |ns: f64| ns / sha;
        let check = s.read_ns + sha;
        let upload = check + s.write_ns;
        let _ = writeln!(
            o,
            "- the kernel's part, over a loopback TCP socket kept open (this harness, thread CPU, the same rounds): reading the {:.0} KB event into a buffer already big enough {} ({:.2}× SHA-256); writing the {:.0} KB body until the peer has all of it {} ({:.2}×)",
            s.event_bytes as f64 / 1000.0,
            us(s.read_ns),
            x(s.read_ns),
            s.body_bytes as f64 / 1000.0,
            us(s.write_ns),
            x(s.write_ns)
        );
        let _ = writeln!(
            o,
            "- so no program that receives this event over a socket pays less than {} = **{:.2}×** SHA-256 to check its signature (read + one pass), or {} = **{:.2}×** to check it and upload the body (+ write), before any JSON, HTTP or SDK work",
            us(check),
            x(check),
            us(upload),
            x(upload)
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "| binary | path | event | body | answered | invocations | p10 | **median** | p90 | **ratio** | target | verdict |");
    let _ = writeln!(
        o,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    );
    for c in &inv.cases {
        let (ratio, target, check) = match (&c.floor, c.bound, c.ratio) {
            (Some(floor), bound, Some(x)) => {
                let what = if floor == "sha256" {
                    "SHA-256"
                } else {
                    "the empty Lambda"
                };
                match bound {
                    Some(b) => (
                        format!("**{x:.2}×** {what}"),
                        format!("≤ {b}× {what}"),
                        verdict(x <= b),
                    ),
                    None => (format!("{x:.2}× {what}"), "—".into(), "measured"),
                }
            }
            _ => ("—".into(), "—".into(), "floor"),
        };
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} KB | {:.0} KB | {} | {} | {} | **{}** | {} | {} | {} | {} |",
            c.function,
            c.case,
            c.event_bytes as f64 / 1000.0,
            c.body_bytes as f64 / 1000.0,
            c.status,
            c.invocations,
            us(c.cpu_us_p10 * 1000.0),
            us(c.cpu_us_median * 1000.0),
            us(c.cpu_us_p90 * 1000.0),
            ratio,
            target,
            check
        );
    }
    let _ = writeln!(o);
}

fn render_hostile(o: &mut String, r: &Results) {
    use std::fmt::Write;
    if let Some(h) = &r.hostile {
        let _ = writeln!(o, "Hostile events at the release ingest binary (`bench hostile`, seed {}: both payload formats, any method, raw query strings and paths with `\"`, `<`, `>`, spaces, newlines and broken escapes, header casing, lying base64 flags, random, forged, tampered and gzip bodies, wrong field types, documents that are no event), SQS and S3 in moto up throughout:\n", h.seed);
        let _ = writeln!(o, "| events | answered | **invocation errors** | 2xx | 4xx | **5xx** | signed POSTs | enqueued | **enqueued unsigned** | process restarts | CPU per event |");
        let _ = writeln!(
            o,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let _ = writeln!(
            o,
            "| {} | {} | **{}** | {} | {} | **{}** | {} | {} | **{}** | {} | {:.0} µs |",
            h.events,
            h.answered,
            h.invocation_errors,
            h.status_2xx,
            h.status_4xx,
            h.status_5xx,
            h.signed_posts,
            h.enqueued,
            h.enqueued_unsigned,
            h.process_restarts,
            h.cpu_us_per_event
        );
        let statuses: Vec<String> = h
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let _ = writeln!(
            o,
            "\nStatus codes answered: {}. Verdict: {}.\n",
            statuses.join(", "),
            verdict(
                h.invocation_errors == 0
                    && h.status_5xx == 0
                    && h.enqueued_unsigned == 0
                    && h.answered == h.events
            )
        );
    }
}

/// The Markdown block of figures.
pub fn render(r: &Results) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    if let Some(m) = &r.machine {
        let _ = writeln!(
            o,
            "Run of {}: `nproc` = {}, CPU: {}, {} MiB RAM, {}.  ",
            m.date, m.nproc, m.cpu_model, m.memory_mib, m.rustc
        );
        let _ = writeln!(o, "`uname -a`: `{}`\n", m.uname);
    }

    let _ = writeln!(o, "### Ingest CPU per request (criterion medians of thread CPU time, release profile, one run)\n");
    if r.ingest.is_empty() {
        let _ = writeln!(o, "_not measured in this run_\n");
    } else {
        let _ = writeln!(o, "| body | SHA-256 (floor) | HMAC verify | route parse | build requests | **verify + parse + build** | target ≤ 2× | whole handler |");
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---|---:|");
        for f in &r.ingest {
            let ratio = f.verify_parse_build_ns / f.sha256_ns;
            let _ = writeln!(
                o,
                "| {} | {} ({:.2} GB/s) | {} ({:.2}×) | {} ({:.2}×) | {} | **{} = {:.2}×** | {} | {} = {:.2}× |",
                f.body,
                us(f.sha256_ns),
                f.bytes as f64 / f.sha256_ns,
                us(f.hmac_verify_ns),
                f.hmac_verify_ns / f.sha256_ns,
                us(f.parse_routing_ns),
                f.parse_routing_ns / f.sha256_ns,
                us(f.build_requests_ns),
                us(f.verify_parse_build_ns),
                ratio,
                verdict(ratio <= 2.0),
                us(f.handler_ns),
                f.handler_ns / f.sha256_ns,
            );
        }
        let _ = writeln!(o);
        for f in &r.ingest {
            let _ = writeln!(o, "- {}: a UTF-8 check of the body (only for a base64-encoded `Body::Binary`) adds {} ({:.2}×).", f.body, us(f.utf8_check_ns), f.utf8_check_ns / f.sha256_ns);
        }
        if let (Some(small), Some(large)) = (r.ingest.first(), r.ingest.last()) {
            if large.bytes > small.bytes {
                let span = (large.bytes - small.bytes) as f64;
                let slope = |a: f64, b: f64| (b - a) / span;
                let sha = slope(small.sha256_ns, large.sha256_ns);
                let (a, b) = (small.verify_parse_build_ns, large.verify_parse_build_ns);
                let per_byte = slope(a, b);
                let fixed = a - per_byte * small.bytes as f64;
                let _ = writeln!(o, "- verify + parse + build: {:.3} ns per byte ({:.2}× SHA-256's {:.3} ns per byte) plus {} per request.", per_byte, per_byte / sha, sha, us(fixed));
            }
        }
        let _ = writeln!(o);
    }
    if !r.ingest_sdk.is_empty() {
        let _ = writeln!(o, "Ingest with the real SQS/S3 sink against moto (whole process CPU, includes the SDK's serialisation, signing and HTTP):\n");
        let _ = writeln!(
            o,
            "| body | requests | CPU per request | wall per request | via S3 |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---|");
        for f in &r.ingest_sdk {
            let _ = writeln!(
                o,
                "| {} | {} | {:.0} µs | {:.2} ms | {} |",
                f.body,
                f.requests,
                f.cpu_us_per_request,
                f.wall_ms_per_request,
                if f.via_s3 { "yes" } else { "no" }
            );
        }
        let _ = writeln!(o);
    }

    render_invocation(&mut o, r);
    render_hostile(&mut o, r);
    let _ = writeln!(o, "### Consumer: one process (release `consumer` binary under the Runtime API stand-in), batches of 10 full-object notifications, against moto\n");
    if r.consumer.is_empty() {
        let _ = writeln!(o, "_not measured in this run_\n");
    } else {
        let _ = writeln!(o, "| body | delivery | batches | CPU per record (first batch) | CPU per record (warm) | wall per batch (warm) | peak RSS after init | **peak RSS** | target | items written |");
        let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|---|---:|");
        for c in &r.consumer {
            let target = if c.body_bytes >= 1 << 20 {
                verdict(c.peak_rss_kib < 64 * 1024).to_string() + " (< 64 MB)"
            } else {
                "—".into()
            };
            let _ = writeln!(
                o,
                "| {} KB | {} | {} | {:.2} ms | {:.2} ms | {:.1} ms | {} | **{}** | {} | {} |",
                c.body_bytes / 1000,
                if c.claim_checked {
                    "S3 claim check"
                } else {
                    "inline"
                },
                c.batches,
                c.first_batch_cpu_ms_per_record,
                c.warm_cpu_ms_per_record,
                c.warm_wall_ms_per_batch,
                mib(c.peak_rss_after_init_kib),
                mib(c.peak_rss_kib),
                target,
                c.items_written,
            );
        }
        let _ = writeln!(o);
    }

    let _ = writeln!(o, "### Cold start: exec to the first request for work from the Runtime API (release binaries, x86_64 host, secrets from the environment)\n");
    if r.cold_start.is_empty() {
        let _ = writeln!(o, "_not measured in this run_\n");
    } else {
        let empty = r
            .cold_start
            .iter()
            .find(|c| c.function == EMPTY_LAMBDA)
            .map(|c| c.median_ms);
        let _ = writeln!(o, "| function | runs | min | **median** | p90 | max | **× the empty Lambda** | target ≤ 1.5× | CPU until ready | peak RSS at ready |");
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|");
        for c in &r.cold_start {
            let (ratio, check) = match empty {
                Some(e) if c.function != EMPTY_LAMBDA && e > 0.0 => {
                    let x = c.median_ms / e;
                    (format!("**{x:.2}×**"), verdict(x <= 1.5))
                }
                _ => ("1×".to_string(), "—"),
            };
            let _ = writeln!(
                o,
                "| {} | {} | {:.2} ms | **{:.2} ms** | {:.2} ms | {:.2} ms | {} | {} | {:.2} ms | {} |",
                c.function,
                c.runs,
                c.min_ms,
                c.median_ms,
                c.p90_ms,
                c.max_ms,
                ratio,
                check,
                c.init_cpu_ms,
                mib(c.init_peak_rss_kib)
            );
        }
        let _ = writeln!(o);
    }
    if let Some(inv) = r.invocation.as_ref().filter(|i| !i.first_answer.is_empty()) {
        let _ = writeln!(o, "Exec to the first answer (the invocation queued before the process starts; the ingest enqueues it in moto, the empty Lambda answers it; the ingest's handler under our own Runtime API client, bench-only, enqueues it too; the three in turns). The verdict takes out the time moto spent serving the run's requests (measured at moto's server by `tests/bench/moto-server.py`, from each request's first byte read to its answer's last byte sent): that time is SQS's in production, not the function's.\n");
        let _ = writeln!(o, "| function | event | runs | first request for work | first answer (median) | p90 | moto's time in it | **first answer less moto's time** | × the empty Lambda | target ≤ 1.5× | CPU until the answer |");
        let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|");
        let own = |f: &FirstAnswer| {
            if f.own_ms_median > 0.0 {
                f.own_ms_median
            } else {
                f.answer_ms_median
            }
        };
        let empty = inv
            .first_answer
            .iter()
            .find(|f| f.function == EMPTY_LAMBDA)
            .map(own);
        for f in &inv.first_answer {
            let (ratio, check) = match empty {
                Some(e) if f.function != EMPTY_LAMBDA && e > 0.0 => {
                    let x = own(f) / e;
                    let check = if f.function == OWN_RUNTIME {
                        "measured (bench-only)"
                    } else {
                        verdict(x <= 1.5)
                    };
                    (format!("**{x:.2}×**"), check)
                }
                _ => ("1×".to_string(), "—"),
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | **{:.2} ms** | {} | {} | {:.2} ms |",
                f.function,
                f.case,
                f.runs,
                f.ready_ms_median,
                f.answer_ms_median,
                f.answer_ms_p90,
                f.moto_ms_median,
                own(f),
                ratio,
                check,
                f.cpu_ms_median
            );
        }
        let _ = writeln!(o);
    }
    if !r.sizes.is_empty() {
        let _ = writeln!(
            o,
            "Binary sizes (release: fat LTO, one codegen unit, symbols stripped):\n"
        );
        let _ = writeln!(o, "| function | target | size | target < 8 MB |");
        let _ = writeln!(o, "|---|---|---:|---|");
        for s in &r.sizes {
            match s.bytes {
                Some(b) => {
                    let check = if s.target.contains("aarch64") {
                        verdict(b < 8_000_000)
                    } else {
                        "—"
                    };
                    let _ = writeln!(
                        o,
                        "| {} | {} | {:.2} MB ({} bytes) | {} |",
                        s.function,
                        s.target,
                        b as f64 / 1e6,
                        b,
                        check
                    );
                }
                None => {
                    let _ = writeln!(o, "| {} | {} | not built | — |", s.function, s.target);
                }
            }
        }
        let _ = writeln!(o);
    }

    let _ = writeln!(o, "### Drift sweep: one slice against the mailbox's size (release reconciler under the Runtime API stand-in, moto)\n");
    if r.sweep.is_empty() {
        let _ = writeln!(o, "_not measured in this run_\n");
    } else {
        let _ = writeln!(o, "One reconcile job with a forced sweep of the recent window (`DRIFT_OLDER_SLICES=0`), the slice holding the same synced mailbox each time, the store holding more and more older messages (2 KB each) besides it. Target: read units and memory flat from the smallest store to the largest.\n");
        let _ = writeln!(o, "| messages stored | in the slice | **DynamoDB read units** (`StoreReadUnits`) | peak RSS after init | **peak RSS after the sweep** | CPU | wall time |");
        let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|");
        for f in &r.sweep {
            let _ = writeln!(
                o,
                "| {} | {} | **{}** | {} | **{}** | {:.1} ms | {:.1} s |",
                f.stored_messages,
                f.in_slice,
                f.read_units,
                mib(f.peak_rss_after_init_kib),
                mib(f.peak_rss_kib),
                f.cpu_ms,
                f.wall_ms / 1000.0
            );
        }
        let reads: Vec<f64> = r.sweep.iter().map(|f| f.read_units).collect();
        let rss: Vec<f64> = r.sweep.iter().map(|f| f.peak_rss_kib as f64).collect();
        let spread = |v: &[f64]| {
            let (lo, hi) = v
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            if lo > 0.0 {
                hi / lo
            } else {
                f64::INFINITY
            }
        };
        let _ = writeln!(
            o,
            "\nLargest over smallest: read units {:.2}×, peak RSS {:.2}× (flat: ≤ 1.10×): {}.\n",
            spread(&reads),
            spread(&rss),
            verdict(spread(&reads) <= 1.10 && spread(&rss) <= 1.10)
        );
    }

    let _ = writeln!(o, "### Scheduler fan-out against moto (default settings: 4 scan segments, 16 batches in flight, delay jitter)\n");
    if r.fan_out.is_empty() {
        let _ = writeln!(o, "_not measured in this run_\n");
    } else {
        let _ = writeln!(o, "| grants | fan-out time | **grants/s** | SendMessageBatch calls | ceil(N/10) | HTTP attempts (SDK retries included) | scans | jobs on the queue | scheduler CPU | per grant | moto CPU (share of the wall time) |");
        let _ = writeln!(
            o,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for f in &r.fan_out {
            let moto = f
                .moto_cpu_s
                .map(|m| format!("{m:.1} s ({:.0}%)", 100.0 * m / f.seconds))
                .unwrap_or_else(|| "n/a".into());
            let _ = writeln!(
                o,
                "| {} | {:.1} s | **{:.0}** | {} {} | {} | {} | {} | {} | {:.2} s | {:.0} µs | {} |",
                f.grants,
                f.seconds,
                f.grants_per_second,
                f.send_message_batch_calls,
                if f.send_message_batch_calls == f.expected_calls {
                    "(= ceil)"
                } else {
                    "(**≠ ceil**)"
                },
                f.expected_calls,
                f.send_message_batch_attempts,
                f.scan_calls,
                f.jobs_on_queue,
                f.scheduler_cpu_s,
                f.scheduler_cpu_us_per_grant,
                moto
            );
        }
        let _ = writeln!(o);
    }

    let _ = writeln!(o, "### End to end on the local stack: signed webhooks over HTTP → ingest → SQS → consumer → DynamoDB (moto)\n");
    match &r.end_to_end {
        None => {
            let _ = writeln!(o, "_not measured in this run_\n");
        }
        Some(e) => {
            let _ = writeln!(o, "{}-byte `message.created` notifications, {} consumer pollers (batches of 10), {:.0} s per step; a step keeps up when every webhook got 200 and the queue held under one second of traffic when it ended.\n", e.body_bytes, e.pollers, e.step_seconds);
            let _ = writeln!(o, "| offered/s | accepted/s | processed/s | non-200 | ingest p50 | ingest p99 | backlog at end | moto CPU | functions CPU | kept up |");
            let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
            for s in &e.steps {
                let _ = writeln!(
                    o,
                    "| {:.0} | {:.0} | {:.0} | {} | {:.1} ms | {:.1} ms | {} | {} | {:.0}% | {} |",
                    s.offered_per_s,
                    s.accepted_per_s,
                    s.processed_per_s,
                    s.rejected,
                    s.ingest_p50_ms,
                    s.ingest_p99_ms,
                    s.backlog_at_end,
                    s.moto_cpu
                        .map(|m| format!("{:.0}%", m * 100.0))
                        .unwrap_or_else(|| "n/a".into()),
                    s.functions_cpu * 100.0,
                    if s.kept_up { "yes" } else { "no" }
                );
            }
            let _ = writeln!(o, "\n**Sustained without queueing: {:.0} webhooks/s.** CPU per webhook: functions (ingest + consumer + pollers, one process) {:.0} µs; moto {}.\n",
                e.sustained_per_s, e.functions_cpu_us_per_webhook,
                e.moto_cpu_us_per_webhook.map(|m| format!("{m:.0} µs")).unwrap_or_else(|| "n/a".into()));
        }
    }
    o
}
