//! Metrics as CloudWatch Embedded Metric Format (EMF): each invocation accumulates its counts
//! and samples in an [`Emf`] and prints them as JSON on stdout when it ends. CloudWatch Logs
//! turns those lines into metrics, so publishing costs no API call and no time on the request
//! path beyond building a few hundred bytes of JSON once per invocation.
//!
//! One line per invocation holds every metric with the `Function` dimension and, when they fit,
//! the labelled ones (`Reason`, `Endpoint` + `Status`). EMF gives each member one value per line,
//! so two labelled groups that disagree on a label (two Nylas endpoints in one batch) take a line
//! each, as do samples beyond EMF's 100 values per metric. Metric names and their meaning are
//! listed in the README ("Operating"); [`names`] holds the ones the library emits.
//!
//! The namespace is `METRICS_NAMESPACE`, default `NylasSync`. Metrics never carry an id, a
//! secret or a body: dimensions are bounded sets (function, endpoint, status, reason).

use std::cell::RefCell;
use std::future::Future;
use std::io::Write;
use std::sync::OnceLock;

use serde_json::{Map, Value};

/// The namespace when `METRICS_NAMESPACE` is unset.
pub const DEFAULT_NAMESPACE: &str = "NylasSync";

/// EMF accepts at most 100 values for one metric in one line.
pub const MAX_VALUES_PER_METRIC: usize = 100;

/// The dimension every metric carries: the function's binary name (`ingest`, `consumer`,
/// `scheduler`, `reconciler`).
pub const FUNCTION_DIMENSION: &str = "Function";

/// Metric names emitted by the library's handlers (the README's table lists each).
pub mod names {
    // ingest
    /// POST requests (notification deliveries), whatever their outcome.
    pub const NOTIFICATIONS_RECEIVED: &str = "NotificationsReceived";
    /// POSTs answered with an error; also by `Reason` (the error code of the answer).
    pub const NOTIFICATIONS_REJECTED: &str = "NotificationsRejected";
    /// Notifications made durable (SQS accepted them) and answered 200.
    pub const NOTIFICATIONS_ENQUEUED: &str = "NotificationsEnqueued";
    /// Of those, the ones too large for SQS, stored in S3 with a pointer on the queue.
    pub const ENQUEUED_VIA_S3: &str = "EnqueuedViaS3";
    /// Times the ingest re-read the webhook secrets (a signature failed, or the previous secret was used).
    pub const SECRETS_REFRESHED: &str = "SecretsRefreshed";

    // consumer
    pub const RECORDS_PROCESSED: &str = "RecordsProcessed";
    pub const OBJECTS_WRITTEN: &str = "ObjectsWritten";
    pub const OBJECTS_STALE: &str = "ObjectsStale";
    pub const OBJECTS_TOMBSTONED: &str = "ObjectsTombstoned";
    pub const FETCHES_AVOIDED: &str = "FetchesAvoided";
    pub const NYLAS_CALLS: &str = "NylasCalls";
    pub const CHANGE_TO_STORE_LAG: &str = "ChangeToStoreLagSeconds";
    pub const UNKNOWN_TYPES: &str = "UnknownTypes";
    /// Object notifications the consumer cannot tie to a grant or a calendar (no `grant_id`, a
    /// null `calendar_id` the store cannot resolve): parked in the DLQ, repaired by reconciliation.
    pub const NOTIFICATIONS_UNRESOLVED: &str = "NotificationsUnresolved";
    pub const RECORD_FAILURES: &str = "RecordFailures";
    /// Rate-limited records re-sent to the queue with a delay (acknowledged, not failed).
    pub const RECORDS_DEFERRED: &str = "RecordsDeferred";
    /// Claim-checked records whose S3 payload was gone: recovered from Nylas by their attributes.
    pub const CLAIM_CHECKS_EXPIRED: &str = "ClaimChecksExpired";
    /// Grants whose next scheduled reconcile was brought forward because Nylas redelivered one
    /// of their notifications (evidence that others may have been lost).
    pub const GRANTS_MARKED_DUE: &str = "GrantsMarkedDue";

    /// Every name above, for the tests that hold the README to the code.
    pub const ALL: &[&str] = &[
        NOTIFICATIONS_RECEIVED,
        NOTIFICATIONS_REJECTED,
        NOTIFICATIONS_ENQUEUED,
        ENQUEUED_VIA_S3,
        SECRETS_REFRESHED,
        RECORDS_PROCESSED,
        OBJECTS_WRITTEN,
        OBJECTS_STALE,
        OBJECTS_TOMBSTONED,
        FETCHES_AVOIDED,
        NYLAS_CALLS,
        CHANGE_TO_STORE_LAG,
        UNKNOWN_TYPES,
        NOTIFICATIONS_UNRESOLVED,
        RECORD_FAILURES,
        RECORDS_DEFERRED,
        CLAIM_CHECKS_EXPIRED,
        GRANTS_MARKED_DUE,
    ];
}

/// CloudWatch units used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    Milliseconds,
    Bytes,
    None,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
            Unit::Milliseconds => "Milliseconds",
            Unit::Bytes => "Bytes",
            Unit::None => "None",
        }
    }
}

#[derive(Debug, Clone)]
enum Data {
    Count(u64),
    Samples(Vec<f64>),
}

#[derive(Debug, Clone)]
struct Metric {
    name: &'static str,
    unit: Unit,
    data: Data,
}

#[derive(Debug, Clone)]
struct Group {
    labels: Vec<(&'static str, String)>,
    metrics: Vec<Metric>,
}

/// The metrics of one invocation. Build with [`Emf::new`], add with [`Emf::count`],
/// [`Emf::count_with`] and [`Emf::sample`], print with [`Emf::flush`].
///
/// ```
/// use nylas_sync::metrics::{Emf, Unit};
/// let mut m = Emf::new("reconciler");
/// m.count("GrantsProcessed", 1)
///     .count_with("NylasCalls", &[("Endpoint", "messages.list"), ("Status", "200")], 3)
///     .sample("CursorLagSeconds", Unit::Seconds, 42.0);
/// let mut out = Vec::new();
/// m.write_to(&mut out).unwrap();
/// assert!(String::from_utf8(out).unwrap().starts_with("{\"_aws\""));
/// ```
#[derive(Debug, Clone)]
pub struct Emf {
    namespace: &'static str,
    function: &'static str,
    timestamp_ms: i64,
    base: Vec<Metric>,
    groups: Vec<Group>,
}

fn namespace_from_env() -> &'static str {
    static NAMESPACE: OnceLock<String> = OnceLock::new();
    NAMESPACE.get_or_init(|| {
        std::env::var("METRICS_NAMESPACE")
            .ok()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
    })
}

fn add(metrics: &mut Vec<Metric>, name: &'static str, unit: Unit, data: Data) {
    match (metrics.iter_mut().find(|m| m.name == name), data) {
        (
            Some(Metric {
                data: Data::Count(c),
                ..
            }),
            Data::Count(n),
        ) => *c = c.saturating_add(n),
        (
            Some(Metric {
                data: Data::Samples(s),
                ..
            }),
            Data::Samples(mut n),
        ) => s.append(&mut n),
        // A name used as both a count and a sample: the first use wins, the other is dropped
        // rather than producing a line CloudWatch would reject.
        (Some(_), _) => {}
        (None, data) => metrics.push(Metric { name, unit, data }),
    }
}

impl Emf {
    /// Metrics of the function `function` (its binary name), timestamped now.
    pub fn new(function: &'static str) -> Self {
        Self {
            namespace: namespace_from_env(),
            function,
            timestamp_ms: crate::clock::now_ms(),
            base: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// Overrides the namespace (tests; the environment's is used otherwise).
    pub fn with_namespace(mut self, namespace: &'static str) -> Self {
        self.namespace = namespace;
        self
    }

    /// Overrides the timestamp (Unix milliseconds).
    pub fn with_timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = timestamp_ms;
        self
    }

    /// Adds `n` to the count `name` (dimension `Function`). A count of 0 is still published, so
    /// that alarms see a datapoint.
    pub fn count(&mut self, name: &'static str, n: u64) -> &mut Self {
        add(&mut self.base, name, Unit::Count, Data::Count(n));
        self
    }

    /// Adds `n` to the count `name` with extra dimensions (e.g. `[("Reason", "invalid_signature")]`),
    /// published with `Function` plus those dimensions only. Label values must come from a small
    /// set (codes, endpoints): never an id.
    pub fn count_with(
        &mut self,
        name: &'static str,
        dims: &[(&'static str, &str)],
        n: u64,
    ) -> &mut Self {
        let group = match self.groups.iter_mut().position(|g| {
            g.labels.len() == dims.len()
                && g.labels
                    .iter()
                    .zip(dims)
                    .all(|((k, v), (dk, dv))| k == dk && v == dv)
        }) {
            Some(i) => &mut self.groups[i],
            None => {
                self.groups.push(Group {
                    labels: dims.iter().map(|(k, v)| (*k, v.to_string())).collect(),
                    metrics: Vec::new(),
                });
                let last = self.groups.len() - 1;
                &mut self.groups[last]
            }
        };
        add(&mut group.metrics, name, Unit::Count, Data::Count(n));
        self
    }

    /// Records one value of a distribution (a lag, a duration); CloudWatch computes percentiles.
    pub fn sample(&mut self, name: &'static str, unit: Unit, value: f64) -> &mut Self {
        if value.is_finite() {
            add(&mut self.base, name, unit, Data::Samples(vec![value]));
        }
        self
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.base.is_empty() && self.groups.is_empty()
    }

    /// The EMF lines (JSON documents, without newline).
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![Line::new(self.function)];
        let mut overflow: Vec<(&'static str, Unit, Vec<f64>)> = Vec::new();
        let mut base = Directive {
            dims: vec![],
            metrics: vec![],
        };
        for m in &self.base {
            let value = match &m.data {
                Data::Count(c) => Value::from(*c),
                Data::Samples(s) => {
                    let mut chunks = s.chunks(MAX_VALUES_PER_METRIC);
                    let first = chunks.next().unwrap_or_default();
                    for rest in chunks {
                        overflow.push((m.name, m.unit, rest.to_vec()));
                    }
                    Value::from(first.to_vec())
                }
            };
            lines[0].members.insert(m.name.to_string(), value);
            base.metrics.push((m.name, m.unit));
        }
        if !base.metrics.is_empty() {
            lines[0].directives.push(base);
        }
        for g in &self.groups {
            let values: Vec<(&Metric, Value)> = g
                .metrics
                .iter()
                .map(|m| {
                    let v = match &m.data {
                        Data::Count(c) => Value::from(*c),
                        Data::Samples(s) => Value::from(s.clone()),
                    };
                    (m, v)
                })
                .collect();
            let fits = |line: &Line| {
                g.labels.iter().all(|(k, v)| match line.members.get(*k) {
                    None => !values.iter().any(|(m, _)| m.name == *k),
                    Some(Value::String(s)) => s == v,
                    Some(_) => false,
                }) && values.iter().all(|(m, v)| match line.members.get(m.name) {
                    None => !g.labels.iter().any(|(k, _)| *k == m.name),
                    Some(existing) => existing == v && line.is_metric(m.name),
                })
            };
            let index = match lines.iter().position(fits) {
                Some(i) => i,
                None => {
                    lines.push(Line::new(self.function));
                    lines.len() - 1
                }
            };
            let line = &mut lines[index];
            for (k, v) in &g.labels {
                line.members.insert(k.to_string(), Value::String(v.clone()));
            }
            for (m, v) in &values {
                line.members.insert(m.name.to_string(), v.clone());
            }
            line.directives.push(Directive {
                dims: g.labels.iter().map(|(k, _)| *k).collect(),
                metrics: values.iter().map(|(m, _)| (m.name, m.unit)).collect(),
            });
        }
        for (name, unit, values) in overflow {
            let mut line = Line::new(self.function);
            line.members.insert(name.to_string(), Value::from(values));
            line.directives.push(Directive {
                dims: vec![],
                metrics: vec![(name, unit)],
            });
            lines.push(line);
        }
        lines
            .into_iter()
            .filter(|l| !l.directives.is_empty())
            .map(|l| l.render(self.namespace, self.timestamp_ms))
            .collect()
    }

    /// Writes the lines, each followed by a newline, in one write.
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut buf = String::new();
        for line in self.lines() {
            buf.push_str(&line);
            buf.push('\n');
        }
        out.write_all(buf.as_bytes())?;
        out.flush()
    }

    /// Prints the lines on stdout (where Lambda sends them to CloudWatch Logs), or into the
    /// buffer of an enclosing [`capture`].
    pub fn flush(self) {
        if self.is_empty() {
            return;
        }
        // `METRICS_DISABLED` (any value) silences the lines: the local stack sets it so that the
        // terminal shows its progress and report, not four functions' metrics.
        static DISABLED: OnceLock<bool> = OnceLock::new();
        if *DISABLED.get_or_init(|| std::env::var_os("METRICS_DISABLED").is_some()) {
            return;
        }
        let captured = CAPTURED.try_with(|c| c.borrow_mut().extend(self.lines()));
        if captured.is_err() {
            let mut buf = String::new();
            for line in self.lines() {
                buf.push_str(&line);
                buf.push('\n');
            }
            // One `print!` (stdout locked once), which the test harness also captures.
            print!("{buf}");
        }
    }
}

struct Directive {
    /// Extra dimension keys; `Function` is always first.
    dims: Vec<&'static str>,
    metrics: Vec<(&'static str, Unit)>,
}

struct Line {
    members: Map<String, Value>,
    directives: Vec<Directive>,
}

impl Line {
    fn new(function: &str) -> Self {
        let mut members = Map::new();
        members.insert(FUNCTION_DIMENSION.into(), Value::String(function.into()));
        Self {
            members,
            directives: Vec::new(),
        }
    }

    fn is_metric(&self, name: &str) -> bool {
        self.directives
            .iter()
            .any(|d| d.metrics.iter().any(|(n, _)| *n == name))
    }

    /// Writes the document by hand: this runs on every ingest request, and building a
    /// `serde_json::Value` tree for it cost several times more than the text itself.
    fn render(self, namespace: &str, timestamp_ms: i64) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(640);
        let _ = write!(
            out,
            "{{\"_aws\":{{\"Timestamp\":{timestamp_ms},\"CloudWatchMetrics\":["
        );
        for (i, d) in self.directives.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"Namespace\":");
            push_json_str(&mut out, namespace);
            out.push_str(",\"Dimensions\":[[");
            push_json_str(&mut out, FUNCTION_DIMENSION);
            for k in &d.dims {
                out.push(',');
                push_json_str(&mut out, k);
            }
            out.push_str("]],\"Metrics\":[");
            for (j, (name, unit)) in d.metrics.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push_str("{\"Name\":");
                push_json_str(&mut out, name);
                out.push_str(",\"Unit\":");
                push_json_str(&mut out, unit.as_str());
                out.push('}');
            }
            out.push_str("]}");
        }
        out.push_str("]}");
        for (k, v) in &self.members {
            out.push(',');
            push_json_str(&mut out, k);
            out.push(':');
            match v {
                Value::String(text) => push_json_str(&mut out, text),
                other => {
                    let _ = write!(out, "{other}");
                }
            }
        }
        out.push('}');
        out
    }
}

/// A JSON string literal; names and labels are plain ASCII, so escaping is rarely needed.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&Value::String(s.to_string()).to_string());
    }
}

tokio::task_local! {
    static CAPTURED: RefCell<Vec<String>>;
}

/// Runs `fut`, collecting the EMF lines its [`Emf::flush`] calls would print (tests use this to
/// check what a handler publishes; it is scoped to the task, so tests running in parallel do not
/// see each other's lines).
pub async fn capture<F: Future>(fut: F) -> (F::Output, Vec<String>) {
    CAPTURED
        .scope(RefCell::new(Vec::new()), async move {
            let out = fut.await;
            let lines = CAPTURED.with(|c| c.take());
            (out, lines)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    // What each line holds as EMF is checked by the integration tests (tests/metrics.rs), with
    // their validator.

    fn emf() -> Emf {
        Emf::new("ingest")
            .with_namespace("NylasSync")
            .with_timestamp_ms(1_767_225_600_000)
    }

    fn parse(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }
    #[test]
    fn counts_add_up_and_samples_accumulate() {
        let mut m = emf();
        m.count("A", 2).count("A", 3);
        m.sample("Lag", Unit::Seconds, 1.5)
            .sample("Lag", Unit::Seconds, 2.5)
            .sample("Lag", Unit::Seconds, f64::NAN);
        let doc = parse(&m.lines()[0]);
        assert_eq!(doc["A"], 5);
        assert_eq!(doc["Lag"], serde_json::json!([1.5, 2.5]));
        let units: Vec<_> = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["Name"].as_str().unwrap().to_string(),
                    m["Unit"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            units,
            [
                ("A".to_string(), "Count".to_string()),
                ("Lag".to_string(), "Seconds".to_string())
            ]
        );
    }

    #[test]
    fn nothing_recorded_prints_nothing() {
        assert!(emf().lines().is_empty());
        assert!(emf().is_empty());
    }
}
