//! The scenario report: a table for the terminal, JSON for machines, and a self-contained HTML
//! page with bar charts (inline SVG, no scripts). Every figure is measured in the run.

use serde::Serialize;

use crate::day::Bill;

#[derive(Debug, Clone, Serialize)]
pub struct StrategyReport {
    pub strategy: String,
    /// Change-to-store lag, emulated seconds: store write time minus the change's time, over every
    /// write whose change time is known (notification time; message arrival; event update).
    pub lag_p50_s: Option<f64>,
    pub lag_p99_s: Option<f64>,
    pub lag_samples: usize,
    pub nylas_calls: u64,
    pub calls_per_grant_day: f64,
    /// Conditional PutItem calls of the objects table (effective writes plus those refused as
    /// stale), by every function of the strategy.
    pub dynamodb_writes: u64,
    /// Their write units (one per started KB of each item, refused writes included), per
    /// grant-day: what DynamoDB bills.
    #[serde(default)]
    pub write_units_per_grant_day: f64,
    /// Objects reconciliation had to create or repair (the missed-webhook signal).
    pub recovered_by_reconcile: i64,
    pub missing: usize,
    pub stale: usize,
    pub resurrected: usize,
    /// The first differences, for a look.
    pub differences: Vec<String>,
    /// How long the notifications its destination never received stayed lost in its store.
    pub losses: LossRepair,
    /// Nylas calls of the destination's watch: per application, whatever the number of grants.
    pub watch_calls: u64,
    /// The destination's status at Nylas at the end (`active`, `failed`, ...), if it has one.
    pub destination_status: Option<String>,
    /// Its Nylas calls by endpoint (the watch's apart).
    pub calls_by_endpoint: std::collections::BTreeMap<String, u64>,
    /// Reconcile jobs its reconciler ran, by kind.
    pub jobs_by_kind: std::collections::BTreeMap<String, u64>,
    /// Reconciler invocations and their mean real duration here (against moto, on this
    /// machine): what a sped-up clock multiplies into emulated minutes.
    pub reconciler_invocations: u64,
    pub reconciler_mean_ms: f64,
    /// Write units the same writes would have cost with each state written whole in one item
    /// (the design before a message's body was stored once), per grant-day.
    pub one_item_write_units_per_grant_day: f64,
    /// Read units of the objects table, per grant-day.
    pub read_units_per_grant_day: f64,
    /// S3 PUTs of payloads (bodies, objects too large for an item).
    pub payload_puts: u64,
    /// The AWS bill of this strategy's traffic, per grant-month, at list prices (`day::price`).
    pub usd_per_grant_month: Bill,
}

/// Loss to repair, emulated seconds (see `day::repairs`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LossRepair {
    /// Losses with a signal (an outage's retries, a `failed` destination) and how long each
    /// lasted from when the endpoint could be reached again.
    pub signal: usize,
    pub signal_p50_s: Option<f64>,
    pub signal_p99_s: Option<f64>,
    pub signal_max_s: Option<f64>,
    /// Silent drops, from the change.
    pub silent: usize,
    pub silent_p50_s: Option<f64>,
    pub silent_p99_s: Option<f64>,
    pub silent_max_s: Option<f64>,
    /// Losses no write repaired by the end of the run.
    pub open: usize,
    /// The slowest repairs and open losses, one line each.
    pub slowest: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub grants: usize,
    pub time_scale: f64,
    pub emulated_minutes: f64,
    pub real_seconds: f64,
    pub notifications: u64,
    pub webhooks_dropped: u64,
    pub consumer_crashes: u64,
    /// The faults scenario's faults, as planned and as they happened.
    pub faults: Option<FaultsReport>,
    pub strategies: Vec<StrategyReport>,
}

/// What the faults scenario did, measured at the emulator.
#[derive(Debug, Clone, Serialize)]
pub struct FaultsReport {
    pub description: String,
    /// The grant with the big mailbox, and how many messages it started with.
    pub big_grant: Option<String>,
    pub big_mailbox: usize,
    /// REST answers a slow window held back.
    pub answers_held_back: u64,
    /// REST answers 429, over every strategy.
    pub answers_429: u64,
    pub deleted_grant: String,
    /// Live objects the nylas-sync hybrid held for the deleted grant just before its deletion.
    pub deleted_grant_objects_before: usize,
    pub expired_grant: String,
    /// 401 answers to requests about the expired grant, over every strategy.
    pub expired_grant_401s: u64,
    /// Notifications Nylas held back while the grant was expired (replayed at its re-authentication).
    pub changes_while_expired: u64,
}

impl Report {
    /// The nylas-sync hybrid's row.
    pub fn hybrid(&self) -> Option<&StrategyReport> {
        self.strategies
            .iter()
            .find(|s| s.strategy == "nylas-sync hybrid")
    }

    /// Whether the nylas-sync hybrid's store equals the truth.
    pub fn converged(&self) -> bool {
        self.hybrid()
            .is_some_and(|h| h.missing == 0 && h.stale == 0 && h.resurrected == 0)
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "scenario {}: {} grants, {:.0} emulated minutes in {:.0} s (time scale {}x), {} notifications, {} dropped after retries, {} consumer crashes\n\n",
            self.scenario, self.grants, self.emulated_minutes, self.real_seconds, self.time_scale, self.notifications, self.webhooks_dropped, self.consumer_crashes
        );
        if let Some(f) = &self.faults {
            out.push_str(&format!(
                "faults: {}\n  seen: {} answers held back, {} answers 429, deleted grant held {} objects before, expired grant got {} 401s and {} changes while expired\n\n",
                f.description, f.answers_held_back, f.answers_429, f.deleted_grant_objects_before, f.expired_grant_401s, f.changes_while_expired
            ));
        }
        out.push_str(&format!(
            "{:<28} {:>10} {:>10} {:>12} {:>15} {:>10} {:>13} {:>10} {:>8} {:>6} {:>12}\n",
            "strategy",
            "lag p50",
            "lag p99",
            "Nylas calls",
            "calls/grant-day",
            "DDB writes",
            "WCU/grant-day",
            "recovered",
            "missing",
            "stale",
            "resurrected"
        ));
        for s in &self.strategies {
            out.push_str(&format!(
                "{:<28} {:>10} {:>10} {:>12} {:>15.0} {:>10} {:>13.0} {:>10} {:>8} {:>6} {:>12}\n",
                s.strategy,
                secs(s.lag_p50_s),
                secs(s.lag_p99_s),
                s.nylas_calls,
                s.calls_per_grant_day,
                s.dynamodb_writes,
                s.write_units_per_grant_day,
                s.recovered_by_reconcile,
                s.missing,
                s.stale,
                s.resurrected
            ));
        }
        out.push_str(
            "\nlag in emulated time; calls per grant-day = calls / grants / emulated days; WCU: DynamoDB write units of the objects table (1 per started KB of each item written, refused conditional writes included).\n",
        );
        out.push_str(&format!(
            "\n{:<28} {:>18} {:>18} {:>5} {:>11} {:>14} {:>13} {:>8} {:>16}\n",
            "loss to repair, cost",
            "signal p50/p99",
            "silent p50/p99",
            "open",
            "watch calls",
            "one-item WCU/gd",
            "RCU/grant-day",
            "S3 PUTs",
            "AWS $/grant-month"
        ));
        for s in &self.strategies {
            let l = &s.losses;
            out.push_str(&format!(
                "{:<28} {:>18} {:>18} {:>5} {:>11} {:>14.0} {:>13.0} {:>8} {:>16.4}\n",
                s.strategy,
                format!(
                    "{} ({}/{})",
                    l.signal,
                    secs(l.signal_p50_s),
                    secs(l.signal_p99_s)
                ),
                format!(
                    "{} ({}/{})",
                    l.silent,
                    secs(l.silent_p50_s),
                    secs(l.silent_p99_s)
                ),
                l.open,
                s.watch_calls,
                s.one_item_write_units_per_grant_day,
                s.read_units_per_grant_day,
                s.payload_puts,
                s.usd_per_grant_month.total(),
            ));
        }
        out.push_str(
            "\nloss to repair: lost notifications (count) and how long each stayed lost, emulated, from the endpoint being reachable (signal: outage retries, failed destination) or from the change (silent drops); open: never repaired by a write. Watch calls: the destination's reads, per application. One-item WCU: what the same writes cost with bodies rewritten in every item. AWS: Lambda, SQS, DynamoDB and S3 at list prices (tests/local-stack/src/day.rs).\n",
        );
        out
    }

    pub fn html(&self) -> String {
        let charts = [
            (
                "Change-to-store lag p50 (emulated s)",
                self.strategies
                    .iter()
                    .map(|s| s.lag_p50_s.unwrap_or(0.0))
                    .collect::<Vec<_>>(),
            ),
            (
                "Change-to-store lag p99 (emulated s)",
                self.strategies
                    .iter()
                    .map(|s| s.lag_p99_s.unwrap_or(0.0))
                    .collect(),
            ),
            (
                "Nylas API calls per grant-day",
                self.strategies
                    .iter()
                    .map(|s| s.calls_per_grant_day)
                    .collect(),
            ),
            (
                "DynamoDB writes",
                self.strategies
                    .iter()
                    .map(|s| s.dynamodb_writes as f64)
                    .collect(),
            ),
            (
                "DynamoDB write units per grant-day",
                self.strategies
                    .iter()
                    .map(|s| s.write_units_per_grant_day)
                    .collect(),
            ),
            (
                "Differences from the truth (missing + stale + resurrected)",
                self.strategies
                    .iter()
                    .map(|s| (s.missing + s.stale + s.resurrected) as f64)
                    .collect(),
            ),
        ];
        let names: Vec<&str> = self
            .strategies
            .iter()
            .map(|s| s.strategy.as_str())
            .collect();
        let mut body = String::new();
        for (title, values) in charts {
            body.push_str(&bar_chart(title, &names, &values));
        }
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>nylas-sync: {scenario}</title>\
             <style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}pre{{background:#f4f4f4;padding:1em;overflow:auto}}\
             h2{{font-size:1.05em;margin-top:1.6em}}</style></head><body>\
             <h1>nylas-sync local run: scenario {scenario}</h1><pre>{table}</pre>{body}</body></html>\n",
            scenario = escape(&self.scenario),
            table = escape(&self.table()),
        )
    }
}

fn secs(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(s) if s >= 60.0 => format!("{:.1} min", s / 60.0),
        Some(s) => format!("{s:.1} s"),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn bar_chart(title: &str, names: &[&str], values: &[f64]) -> String {
    let max = values.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let (label_w, bar_w, row_h) = (220.0, 420.0, 28.0);
    let height = row_h * names.len() as f64 + 10.0;
    let mut svg = format!(
        "<h2>{}</h2><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\">",
        escape(title),
        label_w + bar_w + 120.0
    );
    for (i, (name, v)) in names.iter().zip(values).enumerate() {
        let y = i as f64 * row_h + 5.0;
        let w = (v / max * bar_w).max(1.0);
        let color = if name.starts_with("nylas-sync") {
            "#2b7a4b"
        } else {
            "#7a8ca3"
        };
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{}\" font-size=\"13\">{}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{color}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>",
            y + 17.0,
            escape(name),
            row_h - 8.0,
            label_w + w + 6.0,
            y + 16.0,
            if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") }
        ));
    }
    svg.push_str("</svg>");
    svg
}
