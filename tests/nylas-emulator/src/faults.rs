//! Fault injection settings. Delivery delays, outages and REST fault windows are in *emulated*
//! time (they scale with `--time-scale`); `slow_response` and the delay of a slow window are real
//! time, because they exist to exercise a client's real timeouts and real concurrency.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A span of emulated time, `[from, until)` in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    pub from: i64,
    pub until: i64,
}

impl FaultWindow {
    /// A window that opens at emulated time `from` and lasts `length` emulated time.
    pub fn starting_at(from: i64, length: Duration) -> Self {
        FaultWindow {
            from,
            until: from.saturating_add(length.as_secs() as i64),
        }
    }

    pub fn contains(&self, t: i64) -> bool {
        self.from <= t && t < self.until
    }
}

/// A span of emulated time in which every REST answer is held back `delay` (real time) after it
/// was computed: the answer shows the state when the request arrived, and changes made while it
/// is held back are not in it (a slow provider, with live changes overlapping the read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowWindow {
    pub from: i64,
    pub until: i64,
    #[serde(rename = "delay_ms", with = "millis")]
    pub delay: Duration,
}

impl SlowWindow {
    /// A window that opens at emulated time `from`, lasts `length` emulated time, and holds
    /// every answer back `delay` real time.
    pub fn starting_at(from: i64, length: Duration, delay: Duration) -> Self {
        let w = FaultWindow::starting_at(from, length);
        SlowWindow {
            from: w.from,
            until: w.until,
            delay,
        }
    }

    pub fn contains(&self, t: i64) -> bool {
        self.from <= t && t < self.until
    }
}

/// What can go wrong, on purpose. `Faults::default()` is a healthy Nylas.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Probability that a notification is never sent to a destination.
    pub drop_probability: f64,
    /// Probability that a notification is sent twice (same notification `id`).
    pub duplicate_probability: f64,
    /// Each delivery is held back by a random delay in `[0, max_delay]` (emulated), which
    /// reorders notifications. Zero keeps first attempts in order per destination.
    #[serde(rename = "max_delay_secs", with = "secs")]
    pub max_delay: Duration,
    /// Endpoint-outage windows: attempts inside them fail as if the endpoint were down.
    pub outages: Vec<FaultWindow>,
    /// Probability that a REST request is answered 429 `rate_limit_error`.
    pub api_429_probability: f64,
    /// Windows in which every REST request is answered 429 (a 429 storm).
    pub api_429_windows: Vec<FaultWindow>,
    /// Probability that a REST request is answered with a 5xx.
    pub api_5xx_probability: f64,
    /// Windows in which every REST request is answered with a 5xx.
    pub api_5xx_windows: Vec<FaultWindow>,
    /// `Retry-After` (seconds) on every 429, injected or from the rate limiter; `None` omits it.
    pub retry_after_secs: Option<u64>,
    /// Every REST response is held back this long (real time). A delay at or above
    /// `request_timeout` is cut off there and answered 504 `provider_error`, as Nylas does after 90 s.
    #[serde(rename = "slow_response_ms", with = "opt_millis")]
    pub slow_response: Option<Duration>,
    /// Windows (emulated time) in which every REST answer is held back a real-time delay after
    /// it was computed; the window is judged when the request arrives. A delay at or above
    /// `request_timeout` is answered 504 `provider_error` at the timeout instead.
    pub slow_windows: Vec<SlowWindow>,
    /// How long a REST request may take before it is answered 504 `provider_error` (real time;
    /// Nylas: 90 s, the value used when `None`). Tests lower it to see the 504 quickly.
    #[serde(rename = "request_timeout_ms", with = "opt_millis")]
    pub request_timeout: Option<Duration>,
    /// Probability that an `event.*` notification comes without `grant_id` in `data.object`
    /// (the schemas do not require it).
    pub event_missing_grant_id_probability: f64,
    /// Probability that an `event.deleted` notification carries `calendar_id: null` ("may be
    /// null in rare edge cases").
    pub event_deleted_null_calendar_probability: f64,
    /// Page tokens older than this many emulated seconds are refused with 400
    /// `invalid_request_error`; `None`: they never expire.
    pub page_token_max_age_secs: Option<u64>,
    /// Probability that a request carrying a `page_token` is refused as if the token had expired.
    pub page_token_expiry_probability: f64,
}

/// Nylas ends a request after 90 s with a 504.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

impl Faults {
    pub(crate) fn in_outage(&self, now: i64) -> bool {
        self.outages.iter().any(|w| w.contains(now))
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT)
    }

    /// How long an answer to a request arriving at emulated time `now` is held back after it
    /// was computed (the longest of the slow windows open then).
    pub(crate) fn held_back(&self, now: i64) -> Duration {
        self.slow_windows
            .iter()
            .filter(|w| w.contains(now))
            .map(|w| w.delay)
            .max()
            .unwrap_or_default()
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_round_trip_through_json_with_readable_units() {
        let f = Faults {
            max_delay: Duration::from_secs(30),
            slow_response: Some(Duration::from_millis(250)),
            outages: vec![FaultWindow {
                from: 10,
                until: 20,
            }],
            slow_windows: vec![SlowWindow::starting_at(
                100,
                Duration::from_secs(60),
                Duration::from_millis(1500),
            )],
            ..Faults::default()
        };
        let json = serde_json::to_value(&f).expect("serialize");
        assert_eq!(json["max_delay_secs"], 30.0);
        assert_eq!(json["slow_response_ms"], 250);
        assert_eq!(
            json["slow_windows"],
            serde_json::json!([{"from": 100, "until": 160, "delay_ms": 1500}])
        );
        let back: Faults = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, f);
        let partial: Faults = serde_json::from_str(r#"{"drop_probability":0.5}"#).expect("partial");
        assert_eq!(partial.drop_probability, 0.5);
    }

    #[test]
    fn an_answer_is_held_back_by_the_longest_slow_window_open_when_it_arrived() {
        let slow = |from, until, ms| SlowWindow {
            from,
            until,
            delay: Duration::from_millis(ms),
        };
        let f = Faults {
            slow_windows: vec![slow(10, 20, 100), slow(15, 30, 300)],
            ..Faults::default()
        };
        assert_eq!(f.held_back(9), Duration::ZERO);
        assert_eq!(f.held_back(10), Duration::from_millis(100));
        assert_eq!(f.held_back(15), Duration::from_millis(300));
        assert_eq!(f.held_back(29), Duration::from_millis(300));
        assert_eq!(f.held_back(30), Duration::ZERO);
    }
}
