//! Fault injection settings. Delivery delays, outages and REST fault windows are in *emulated*
//! time (they scale with `--time-scale`); `slow_response` is real time, because it exists to
//! exercise a client's real timeouts.

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
            ..Faults::default()
        };
        let json = serde_json::to_value(&f).expect("serialize");
        assert_eq!(json["max_delay_secs"], 30.0);
        assert_eq!(json["slow_response_ms"], 250);
        let back: Faults = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, f);
        let partial: Faults = serde_json::from_str(r#"{"drop_probability":0.5}"#).expect("partial");
        assert_eq!(partial.drop_probability, 0.5);
    }
}
