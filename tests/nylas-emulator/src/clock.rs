//! The emulated clock: `time_scale` emulated seconds pass per real second, so a 30-minute
//! reconcile interval or a 20-minute retry window can be exercised in seconds.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub(crate) struct Clock {
    started: Instant,
    base: f64,
    scale: f64,
}

impl Clock {
    pub(crate) fn new(start_time: Option<i64>, scale: f64) -> Self {
        let base = match start_time {
            Some(t) => t as f64,
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        };
        Clock {
            started: Instant::now(),
            base,
            scale,
        }
    }

    /// Emulated Unix time in fractional seconds.
    pub(crate) fn now_f64(&self) -> f64 {
        self.base + self.started.elapsed().as_secs_f64() * self.scale
    }

    /// Emulated Unix time in whole seconds, as Nylas reports times.
    pub(crate) fn now(&self) -> i64 {
        self.now_f64().floor() as i64
    }

    /// How long in real time an emulated span of `secs` lasts.
    pub(crate) fn real(&self, secs: f64) -> Duration {
        if secs.is_finite() && secs > 0.0 {
            Duration::from_secs_f64(secs / self.scale)
        } else {
            Duration::ZERO
        }
    }

    pub(crate) async fn sleep(&self, emulated_secs: f64) {
        let d = self.real(emulated_secs);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    pub(crate) async fn sleep_until(&self, emulated_time: f64) {
        self.sleep(emulated_time - self.now_f64()).await;
    }
}
