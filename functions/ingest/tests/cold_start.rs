//! The binary refuses to start without its configuration, and says which variable is missing.

use std::process::Command;

#[test]
fn a_cold_start_without_configuration_fails_naming_the_missing_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_ingest"))
        .env_clear()
        .env("AWS_REGION", "us-east-1")
        .env("PAYLOAD_BUCKET", "b")
        .env("NYLAS_WEBHOOK_SECRETS", "s")
        .output()
        .expect("run the ingest binary");
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("NOTIFICATIONS_QUEUE_URL"), "{text}");
}
