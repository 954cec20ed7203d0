//! Time, injected: everything that compares times (versions, cursors, leases) takes a `Clock`, so
//! tests can move it.

/// Milliseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;

    /// A delay of `seconds` on this clock as SQS `DelaySeconds`, which counts real seconds: the
    /// same on the system clock; a sped-up test clock divides.
    fn queue_delay_s(&self, seconds: i32) -> i32 {
        seconds
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// The system time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The monotonic instant of a wall-clock time in Unix milliseconds (the Runtime API gives an
/// invocation's deadline so); a time already past is now.
pub fn instant_at_unix_ms(unix_ms: u64) -> std::time::Instant {
    let left = unix_ms.saturating_sub(now_ms().max(0) as u64);
    std::time::Instant::now() + std::time::Duration::from_millis(left)
}
