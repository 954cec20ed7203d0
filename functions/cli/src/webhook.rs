//! `register-webhook` and `rotate-secret`: the Nylas side and the Secrets Manager document.
//!
//! Nylas signs with a new secret from the moment it returns it, before this tool has stored it.
//! So both commands first mark the document (`rotating_until`), wait `--settle-seconds` so every
//! ingest instance may re-read it, and only then ask Nylas. An instance that knows of the mark
//! answers a signature it cannot verify with 503 (Nylas retries) rather than 401, and re-reads
//! the secret every second until the new one is there. The new secret is stored first in
//! `webhook_secrets`, the previous one second, so both verify; `rotate-secret --finish` (or the
//! next rotation) drops the previous one.

use std::time::Duration;

use serde_json::{Map, Value};

use nylas_sync::secrets::field;

use crate::{require, Aws, Settings, Settle};

/// What `register-webhook` subscribes to by default: every type the consumer syncs.
pub const DEFAULT_TRIGGERS: &[&str] = &[
    "message.created",
    "message.updated",
    "message.deleted",
    "event.created",
    "event.updated",
    "event.deleted",
    "calendar.created",
    "calendar.updated",
    "calendar.deleted",
    "folder.created",
    "folder.updated",
    "folder.deleted",
    "grant.created",
    "grant.updated",
    "grant.deleted",
    "grant.expired",
];

/// Margin of the rotation mark beyond the settle time: long enough for the Nylas call and the
/// write, and at least one default refresh interval.
const MARK_MARGIN_SECONDS: i64 = 120;
/// The ingest ignores a mark further ahead than this (nylas_sync::secrets::MAX_ROTATION_WINDOW_SECONDS).
const MAX_SETTLE_SECONDS: u64 = 600;

pub struct Registration {
    pub url: String,
    pub triggers: Vec<String>,
    pub description: Option<String>,
    pub compressed: bool,
}

/// The secret document, kept as JSON so fields this tool does not know survive a write.
struct Document {
    arn: String,
    fields: Map<String, Value>,
}

impl Document {
    async fn read(aws: &Aws, arn: &str) -> Result<Self, String> {
        let out = aws
            .secrets
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "could not read the secret {arn}: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                )
            })?;
        let text = out.secret_string().unwrap_or("{}");
        let fields = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            _ => return Err(format!("the secret {arn} is not a JSON object")),
        };
        Ok(Self {
            arn: arn.to_string(),
            fields,
        })
    }

    async fn write(&self, aws: &Aws) -> Result<(), String> {
        let text = Value::Object(self.fields.clone()).to_string();
        let mut last = String::new();
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            }
            match aws
                .secrets
                .put_secret_value()
                .secret_id(&self.arn)
                .secret_string(&text)
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => last = aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
            }
        }
        Err(format!("could not write the secret {}: {last}", self.arn))
    }

    fn webhook_secrets(&self) -> Vec<String> {
        self.fields
            .get("webhook_secrets")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn set_webhook_secrets(&mut self, list: Vec<String>) {
        self.fields.insert(
            "webhook_secrets".into(),
            Value::Array(list.into_iter().map(Value::String).collect()),
        );
    }

    fn text(&self, name: &str) -> Option<String> {
        self.fields
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    fn api_key(&self) -> Result<String, String> {
        self.text("nylas_api_key")
            .or_else(|| std::env::var("NYLAS_API_KEY").ok().filter(|k| !k.is_empty()))
            .ok_or_else(|| {
                format!(
                    "no Nylas API key: the secret {} has no nylas_api_key and NYLAS_API_KEY is not set",
                    self.arn
                )
            })
    }

    /// Announces a change and waits for the ingest instances to be able to see it.
    async fn announce(&mut self, aws: &Aws, settle: Settle) -> Result<(), String> {
        let settle_s = settle.settle_seconds.min(MAX_SETTLE_SECONDS);
        let until = crate::time::now() + settle_s as i64 + MARK_MARGIN_SECONDS;
        self.fields
            .insert(field::ROTATING_UNTIL.into(), Value::from(until));
        self.write(aws).await?;
        if settle_s > 0 {
            let bar = indicatif::ProgressBar::new(settle_s);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} s")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message("letting every ingest instance see the rotation mark");
            for _ in 0..settle_s {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.inc(1);
            }
            bar.finish_and_clear();
        }
        Ok(())
    }

    /// Removes the mark (after success, or after Nylas refused the change).
    fn clear_mark(&mut self) {
        self.fields.remove(field::ROTATING_UNTIL);
    }
}

/// A minimal Nylas client for the two webhook calls.
struct Nylas {
    http: reqwest::Client,
    base: reqwest::Url,
    api_key: String,
}

impl Nylas {
    fn new(base: &str, api_key: String) -> Result<Self, String> {
        let base = reqwest::Url::parse(base)
            .map_err(|e| format!("NYLAS_API_URI {base:?} is not a URL: {e}"))?;
        let http = reqwest::Client::builder()
            // Nylas runs the challenge (up to 10 s) before answering.
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            base,
            api_key,
        })
    }

    async fn post(&self, segments: &[&str], body: Value) -> Result<Map<String, Value>, String> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| "NYLAS_API_URI cannot take a path".to_string())?
            .pop_if_empty()
            .extend(segments);
        let what = format!("POST /{}", segments.join("/"));
        let resp = self
            .http
            .post(url)
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("{what}: Nylas did not answer: {e}"))?;
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            let message = answer["error"]["message"]
                .as_str()
                .unwrap_or("no error message");
            return Err(format!("{what}: Nylas answered {status}: {message}"));
        }
        match answer.get("data") {
            Some(Value::Object(data)) => Ok(data.clone()),
            _ => Err(format!("{what}: Nylas's answer has no data object")),
        }
    }
}

fn secret_of(data: &Map<String, Value>, what: &str) -> Result<String, String> {
    data.get("webhook_secret")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| format!("{what}: Nylas's answer has no webhook_secret"))
}

/// Stores `new` as the current secret, keeping the current one as previous.
async fn store_new_secret(
    doc: &mut Document,
    aws: &Aws,
    new: String,
    webhook_id: &str,
) -> Result<(), String> {
    let previous = doc.webhook_secrets().into_iter().next();
    let list: Vec<String> = std::iter::once(new).chain(previous).collect();
    doc.set_webhook_secrets(list);
    doc.fields
        .insert(field::WEBHOOK_ID.into(), Value::String(webhook_id.into()));
    doc.clear_mark();
    doc.write(aws).await.map_err(|e| {
        format!(
            "{e}\nNylas already uses the new secret of webhook {webhook_id}, which could not be \
             stored: run `nylas-sync rotate-secret --webhook-id {webhook_id}` to get another one"
        )
    })
}

pub async fn register(
    settings: &Settings,
    aws: &Aws,
    r: Registration,
    settle: Settle,
) -> Result<(), String> {
    let arn = require(&settings.secrets_arn, "secrets-arn", "SECRETS_ARN")?;
    let parsed = reqwest::Url::parse(&r.url).map_err(|e| format!("--url {:?}: {e}", r.url))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("--url {:?} must be an http(s) URL", r.url));
    }
    let triggers: Vec<String> = if r.triggers.is_empty() {
        DEFAULT_TRIGGERS.iter().map(|t| t.to_string()).collect()
    } else {
        r.triggers
            .iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    };
    if triggers.is_empty() {
        return Err("--triggers names no trigger type".into());
    }
    let mut doc = Document::read(aws, arn).await?;
    let nylas = Nylas::new(&settings.nylas_api_uri, doc.api_key()?)?;
    let replaced = doc.text(field::WEBHOOK_ID);
    doc.announce(aws, settle).await?;

    let mut body = serde_json::json!({
        "webhook_url": r.url,
        "trigger_types": triggers,
        "compressed_delivery": r.compressed,
    });
    if let Some(d) = &r.description {
        body["description"] = Value::String(d.clone());
    }
    let data = match nylas.post(&["v3", "webhooks"], body).await {
        Ok(data) => data,
        Err(e) => {
            doc.clear_mark();
            let restored = doc.write(aws).await;
            return Err(match restored {
                Ok(()) => format!("{e}\nnothing was changed"),
                Err(w) => format!("{e}\n{w}"),
            });
        }
    };
    let id = data
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let secret = secret_of(&data, "POST /v3/webhooks")?;
    store_new_secret(&mut doc, aws, secret, &id).await?;
    println!("registered webhook {id} -> {}", r.url);
    println!("  triggers: {}", triggers.join(", "));
    println!("  secret stored in {arn} as current; the previous one (if any) still verifies");
    if let Some(old) = replaced.filter(|old| *old != id) {
        println!(
            "  the previous destination {old} still exists at Nylas; delete it when it is no longer needed"
        );
    }
    Ok(())
}

pub async fn rotate(
    settings: &Settings,
    aws: &Aws,
    webhook_id: Option<String>,
    settle: Settle,
) -> Result<(), String> {
    let arn = require(&settings.secrets_arn, "secrets-arn", "SECRETS_ARN")?;
    let mut doc = Document::read(aws, arn).await?;
    let id = webhook_id
        .or_else(|| doc.text(field::WEBHOOK_ID))
        .ok_or_else(|| {
            format!(
                "no webhook id: pass --webhook-id, or register the destination with \
                 `nylas-sync register-webhook` (which stores it in {arn})"
            )
        })?;
    let nylas = Nylas::new(&settings.nylas_api_uri, doc.api_key()?)?;
    doc.announce(aws, settle).await?;
    let data = match nylas
        .post(
            &["v3", "webhooks", "rotate-secret", &id],
            serde_json::json!({}),
        )
        .await
    {
        Ok(data) => data,
        Err(e) => {
            doc.clear_mark();
            let restored = doc.write(aws).await;
            return Err(match restored {
                Ok(()) => format!("{e}\nnothing was changed"),
                Err(w) => format!("{e}\n{w}"),
            });
        }
    };
    let secret = secret_of(&data, "POST /v3/webhooks/rotate-secret")?;
    store_new_secret(&mut doc, aws, secret, &id).await?;
    println!("rotated the secret of webhook {id}");
    println!("  the new secret is current in {arn}; the previous one still verifies");
    println!(
        "  once notifications signed before the rotation are through (Nylas retries for up to 20 minutes), \
         run `nylas-sync rotate-secret --finish`"
    );
    Ok(())
}

pub async fn finish(settings: &Settings, aws: &Aws) -> Result<(), String> {
    let arn = require(&settings.secrets_arn, "secrets-arn", "SECRETS_ARN")?;
    let mut doc = Document::read(aws, arn).await?;
    let list = doc.webhook_secrets();
    let Some(current) = list.first().cloned() else {
        return Err(format!("the secret {arn} holds no webhook secret"));
    };
    let dropped = list.len() - 1;
    doc.set_webhook_secrets(vec![current]);
    doc.clear_mark();
    doc.write(aws).await?;
    println!(
        "kept the current secret, dropped {dropped} previous; the ingest stops accepting a dropped \
         secret the next time it is used (at most SECRETS_REFRESH_SECONDS later)"
    );
    Ok(())
}
