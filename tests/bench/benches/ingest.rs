//! Ingest CPU per request against the physical floor: a bare SHA-256 over the same bytes, in the
//! same run. Two body sizes (2 KiB, typical; 1 MiB, the largest message Nylas sends), each with:
//! - `sha256`: the floor;
//! - `hmac_verify`, `parse_routing`, `build_requests`: the three steps alone (and `utf8_check`,
//!   which only a base64-encoded body needs);
//! - `verify_parse_build`: the three in sequence on the owned body text, as the handler runs
//!   them (the target: at most 2× `sha256`);
//! - `handler`: the whole `Ingest::handle` on an API Gateway request (headers, logging, EMF
//!   metrics, response), with a sink that builds the SQS/S3 requests and sends nothing.
//!
//! Time is this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not the wall clock: the figures
//! and their ratios hold on a machine busy with other work (time the thread waits for a core is
//! not counted). `make bench` reads the medians and writes the ratios into BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use bench::build_only::BuildOnlySink;
use bench::fixtures::{message_created, signed};
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use local_stack::apigw::{http_api_event, request_from_event, HttpRequestParts};
use nylas_sync::config::{IngestLimits, WebhookSecret};
use nylas_sync::enqueue_request::build;
use nylas_sync::ingest::Ingest;
use nylas_sync::notification::parse_routing;
use nylas_sync::signature::verify_signature;
use sha2::{Digest, Sha256};

/// CPU time of the calling thread.
struct ThreadCpu;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, started: u64) -> u64 {
        thread_cpu_ns().saturating_sub(started)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if ns < 1e3 {
            (1.0, "ns")
        } else if ns < 1e6 {
            (1e-3, "µs")
        } else if ns < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let per = match *t {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => b as f64,
            Throughput::Elements(e) | Throughput::ElementsAndBytes { elements: e, .. } => e as f64,
            Throughput::Bits(b) => b as f64 / 8.0,
        };
        values.iter_mut().for_each(|v| *v = per * 1e9 / *v / 1e6);
        "MB/s (CPU)"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

const SECRET: &str = "whsec-0123456789abcdef0123456789abcdef";

fn ingest_benches(c: &mut Criterion<ThreadCpu>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let secrets = vec![WebhookSecret::new(SECRET)];
    let sink = BuildOnlySink::default();
    let destination = sink.destination.clone();
    let ingest = Ingest {
        secrets: secrets.clone().into(),
        limits: IngestLimits::default(),
        sink,
    };
    for (label, len) in [("2KiB", 2048usize), ("1MiB", 1 << 20)] {
        let s = signed(message_created("n-1", "g-1", "m-1", len), SECRET);
        let raw = s.body.as_bytes().to_vec();
        let sig = s.signature.as_bytes();
        let mut group = c.benchmark_group(format!("ingest-{label}"));
        group.throughput(Throughput::Bytes(len as u64));
        if len > 100_000 {
            group
                .sample_size(50)
                .measurement_time(Duration::from_secs(6));
        }

        group.bench_function("sha256", |b| b.iter(|| Sha256::digest(black_box(&raw))));
        group.bench_function("hmac_verify", |b| {
            b.iter(|| verify_signature(&secrets, Some(black_box(sig)), black_box(&raw)))
        });
        // Only for a body API Gateway base64-encoded (binary media): `Body::Binary` is checked
        // to be UTF-8 before parsing. JSON arrives as text, already checked by the event decoding.
        group.bench_function("utf8_check", |b| {
            b.iter(|| std::str::from_utf8(black_box(&raw)).is_ok())
        });
        group.bench_function("parse_routing", |b| {
            b.iter(|| parse_routing(black_box(&raw)).map(|r| r.time))
        });
        let routing = parse_routing(&raw).expect("routing").into_owned();
        group.bench_function("build_requests", |b| {
            b.iter_batched(
                || s.body.clone(),
                |body| black_box(build(&destination, &routing, body).expect("build")).placement,
                BatchSize::LargeInput,
            )
        });
        group.bench_function("verify_parse_build", |b| {
            b.iter_batched(
                || s.body.clone(),
                |text| {
                    verify_signature(&secrets, Some(sig), text.as_bytes()).expect("signed");
                    let routing = parse_routing(text.as_bytes())
                        .expect("routing")
                        .into_owned();
                    black_box(build(&destination, &routing, text).expect("build")).placement
                },
                BatchSize::LargeInput,
            )
        });
        let event = http_api_event(&HttpRequestParts {
            method: "POST",
            path: "/webhooks/nylas",
            raw_query: "",
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-nylas-signature".into(), s.signature.clone()),
            ],
            body: s.body.as_bytes(),
            base64: false,
        });
        group.bench_function("handler", |b| {
            b.iter_batched(
                || request_from_event(&event).expect("request"),
                |req| {
                    let (resp, _metrics) =
                        runtime.block_on(nylas_sync::metrics::capture(ingest.handle(req)));
                    assert_eq!(resp.status(), 200);
                    resp
                },
                BatchSize::LargeInput,
            )
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = ingest_benches
}
criterion_main!(benches);
