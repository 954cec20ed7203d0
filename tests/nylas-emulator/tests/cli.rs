//! The `nylas-emulator` binary: documented flags, and a process that serves what it announces.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nylas-emulator");

#[test]
fn help_documents_every_flag_of_the_issue() {
    let out = Command::new(BIN).arg("--help").output().expect("runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--api-key",
        "--grants",
        "--seed",
        "--events-per-minute",
        "--time-scale",
        "--drop-probability",
        "--duplicate-probability",
        "--max-delay-secs",
        "--outage",
        "--api-429-probability",
        "--api-429-window",
        "--api-5xx-probability",
        "--api-5xx-window",
        "--retry-after",
        "--slow-response-ms",
        "--slow-window",
        "--webhook-url",
        "--folder-changes",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[tokio::test]
async fn the_binary_announces_its_address_and_serves_the_api_with_its_key() {
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            "k1",
            "--grants",
            "3",
            "--seed",
            "9",
            "--events-per-minute",
            "0",
            "--time-scale",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            line
        }),
    )
    .await;
    let ready: Value = match line {
        Ok(Ok(l)) => serde_json::from_str(&l).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let base = ready["base_url"].as_str().unwrap_or_default().to_string();
    let grants = ready["grant_ids"].as_array().map(Vec::len);
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let status = match http
        .get(format!("{base}/v3/grants"))
        .bearer_auth("k1")
        .send()
        .await
    {
        Ok(r) => Some(r.status().as_u16()),
        Err(_) => None,
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(base.starts_with("http://127.0.0.1:"), "ready line: {ready}");
    assert_eq!(grants, Some(3));
    assert_eq!(status, Some(200));
}
