//! Which events the store mirrors, and the time windows the reconciler lists them by.
//!
//! Nylas never lists "all events": `GET /events` without `start`/`end` answers only the next
//! month, and `GET /events/import` takes a time frame too. So the store mirrors the events of a
//! sliding window around now (by default a year back and two years ahead, `EVENTS_PAST_DAYS`,
//! `EVENTS_FUTURE_DAYS`), recurring series by their master and exceptions (never expanded
//! occurrences), plus whatever webhooks deliver outside it. Every rule here is a plain function
//! of plain values: the reconciler's listings and the comparisons with Nylas's state use the same
//! ones.

use serde_json::Value;

use crate::config::{ConfigError, Env};

const DAY: i64 = 86_400;
/// iCloud refuses an events listing whose `end - start` exceeds one year.
pub const ICLOUD_MAX_SPAN_S: i64 = 365 * DAY;

/// How far around now the store mirrors events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventWindow {
    pub past_s: i64,
    pub future_s: i64,
}

impl Default for EventWindow {
    /// A year back (meetings just held are still looked up) and two years ahead (annual events
    /// booked early); 366 and 731 days so a leap year does not cut an anniversary off.
    fn default() -> Self {
        Self {
            past_s: 366 * DAY,
            future_s: 731 * DAY,
        }
    }
}

impl EventWindow {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            past_s: env.number_or("EVENTS_PAST_DAYS", (d.past_s / DAY) as u64)? as i64 * DAY,
            future_s: env.number_or("EVENTS_FUTURE_DAYS", (d.future_s / DAY) as u64)? as i64 * DAY,
        })
    }

    /// `[start, end)` in Unix seconds for a run that began at `now`.
    pub fn bounds(&self, now: i64) -> (i64, i64) {
        (now - self.past_s, now + self.future_s)
    }

    /// Whether the store is expected to hold `event` (a master, an exception or a single event)
    /// when the window is taken at `now`.
    pub fn covers(&self, event: &Value, now: i64) -> bool {
        let (start, end) = self.bounds(now);
        overlaps(event, start, end)
    }
}

/// The longest `end - start` a listing may ask of this provider (`None`: no limit).
pub fn max_span(provider: Option<&str>) -> Option<i64> {
    match provider {
        Some(p) if p.eq_ignore_ascii_case("icloud") => Some(ICLOUD_MAX_SPAN_S),
        _ => None,
    }
}

/// `[start, end)` cut into consecutive slices no longer than `max_span` (one slice without a
/// limit). Empty when `end <= start`.
pub fn slices(start: i64, end: i64, max_span: Option<i64>) -> Vec<(i64, i64)> {
    if end <= start {
        return Vec::new();
    }
    let step = max_span.filter(|s| *s > 0).unwrap_or(end - start);
    let mut out = Vec::new();
    let mut from = start;
    while from < end {
        let to = from.saturating_add(step).min(end);
        out.push((from, to));
        from = to;
    }
    out
}

/// The time an event occupies, `[start, end]` in Unix seconds, from its `when`
/// (`timespan`, `time`, `date`, `datespan`). `None` when `when` is missing or unreadable.
pub fn span(event: &Value) -> Option<(i64, i64)> {
    let when = event.get("when")?;
    let int = |k: &str| when.get(k).and_then(Value::as_i64);
    let date = |k: &str| when.get(k).and_then(Value::as_str).and_then(parse_date);
    if let (Some(s), Some(e)) = (int("start_time"), int("end_time")) {
        return Some((s, e.max(s)));
    }
    if let Some(t) = int("time") {
        return Some((t, t));
    }
    if let Some(d) = date("date") {
        return Some((d, d + DAY));
    }
    if let (Some(s), Some(e)) = (date("start_date"), date("end_date")) {
        return Some((s, (e + DAY).max(s)));
    }
    None
}

/// Whether `event` belongs to `[start, end)`: its own time overlaps it, or, for a recurring
/// master, some occurrence of its series can (from the master's start to the end of the
/// series, as far as `UNTIL` and `COUNT` tell; a rule this cannot bound counts as endless).
/// An event whose time cannot be read counts as inside: keeping one too many is repairable,
/// dropping one is not.
pub fn overlaps(event: &Value, start: i64, end: i64) -> bool {
    let Some((from, to)) = span(event) else {
        return true;
    };
    let rules: Vec<&str> = event
        .get("recurrence")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let to = if rules.is_empty() {
        to
    } else {
        series_end(&rules, from, to).unwrap_or(i64::MAX)
    };
    from < end && (to > start || (to == from && from >= start))
}

/// The end of the last occurrence of a series whose first occurrence is `[start, end]`, when
/// the `RRULE` bounds it; `None` when it does not (or cannot be read).
fn series_end(rules: &[&str], start: i64, end: i64) -> Option<i64> {
    let rule = rules
        .iter()
        .find_map(|r| r.strip_prefix("RRULE:"))?
        .split(';')
        .filter_map(|p| p.split_once('='))
        .collect::<Vec<_>>();
    let get = |k: &str| {
        rule.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| *v)
    };
    let duration = end - start;
    if let Some(until) = get("UNTIL").and_then(parse_rrule_time) {
        return Some(until + duration);
    }
    let count: i64 = get("COUNT")?.parse().ok()?;
    let interval: i64 = get("INTERVAL")
        .and_then(|i| i.parse().ok())
        .unwrap_or(1)
        .max(1);
    let period = match get("FREQ")? {
        f if f.eq_ignore_ascii_case("DAILY") => DAY,
        f if f.eq_ignore_ascii_case("WEEKLY") => 7 * DAY,
        _ => return None,
    };
    // A WEEKLY rule with several BYDAY values has more occurrences per week than weeks: the
    // last one is still within the week of the count-th week at most.
    let weeks_or_days = if get("BYDAY").is_some_and(|d| d.contains(',')) {
        count
    } else {
        count - 1
    };
    Some(start + weeks_or_days.max(0) * interval * period + duration)
}

/// `YYYY-MM-DD` as Unix seconds at 00:00 UTC.
fn parse_date(s: &str) -> Option<i64> {
    let mut parts = s.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    civil_to_unix(y, m, d)
}

/// `YYYYMMDD` or `YYYYMMDDTHHMMSS[Z]` (RFC 5545 `UNTIL`) as Unix seconds, read as UTC.
fn parse_rrule_time(s: &str) -> Option<i64> {
    let s = s.trim_end_matches(['Z', 'z']);
    let (date, time) = match s.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let day = civil_to_unix(
        date[..4].parse().ok()?,
        date[4..6].parse().ok()?,
        date[6..].parse().ok()?,
    )?;
    let secs = match time {
        Some(t) if t.len() == 6 && t.bytes().all(|b| b.is_ascii_digit()) => {
            t[..2].parse::<i64>().ok()? * 3600
                + t[2..4].parse::<i64>().ok()? * 60
                + t[4..].parse::<i64>().ok()?
        }
        Some(_) => return None,
        // A date-only UNTIL includes that whole day.
        None => DAY - 1,
    };
    Some(day + secs)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm), in seconds.
fn civil_to_unix(y: i64, m: u32, d: u32) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let (m, d) = (i64::from(m), i64::from(d));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * DAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn timespan(start: i64, end: i64) -> Value {
        json!({"id": "e", "when": {"object": "timespan", "start_time": start, "end_time": end}})
    }

    #[test]
    fn dates_are_read_as_utc_midnight() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-02-29"), Some(1_709_164_800));
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_date("2024-1"), None);
        assert_eq!(
            parse_rrule_time("20240229T120000Z"),
            Some(1_709_164_800 + 43_200)
        );
        assert_eq!(parse_rrule_time("20240229"), Some(1_709_164_800 + DAY - 1));
        assert_eq!(parse_rrule_time("2024"), None);
    }

    #[test]
    fn every_kind_of_when_has_a_span() {
        assert_eq!(span(&timespan(10, 20)), Some((10, 20)));
        assert_eq!(
            span(&json!({"when": {"object": "time", "time": 5}})),
            Some((5, 5))
        );
        assert_eq!(
            span(&json!({"when": {"object": "date", "date": "1970-01-02"}})),
            Some((DAY, 2 * DAY))
        );
        assert_eq!(
            span(
                &json!({"when": {"object": "datespan", "start_date": "1970-01-02", "end_date": "1970-01-03"}})
            ),
            Some((DAY, 3 * DAY))
        );
        assert_eq!(span(&json!({"id": "no when"})), None);
    }

    #[test]
    fn past_and_far_future_events_are_inside_the_default_window_and_older_ones_are_not() {
        let w = EventWindow::default();
        let now = 1_800_000_000;
        assert!(w.covers(&timespan(now - 360 * DAY, now - 360 * DAY + 3600), now));
        assert!(w.covers(&timespan(now + 700 * DAY, now + 700 * DAY + 3600), now));
        assert!(!w.covers(&timespan(now - 400 * DAY, now - 400 * DAY + 3600), now));
        assert!(!w.covers(&timespan(now + 800 * DAY, now + 800 * DAY + 3600), now));
        // Unreadable times are kept rather than lost.
        assert!(w.covers(&json!({"id": "x"}), now));
    }

    #[test]
    fn a_series_that_began_long_ago_is_inside_until_it_ends() {
        let now = 1_800_000_000;
        let (start, end) = (now - 900 * DAY, now - 900 * DAY + 3600);
        let mut master = timespan(start, end);
        master["recurrence"] = json!(["RRULE:FREQ=WEEKLY"]);
        assert!(overlaps(&master, now - DAY, now));
        master["recurrence"] = json!(["RRULE:FREQ=WEEKLY;COUNT=10"]);
        assert!(!overlaps(&master, now - DAY, now));
        assert!(overlaps(
            &master,
            start + 9 * 7 * DAY,
            start + 9 * 7 * DAY + 1
        ));
        master["recurrence"] = json!(["RRULE:FREQ=DAILY;INTERVAL=2;COUNT=3"]);
        assert!(overlaps(&master, start + 4 * DAY, start + 4 * DAY + 1));
        assert!(!overlaps(&master, start + 5 * DAY, start + 6 * DAY));
        master["recurrence"] = json!(["RRULE:FREQ=WEEKLY;UNTIL=20991231T000000Z"]);
        assert!(overlaps(&master, now, now + DAY));
        master["recurrence"] = json!(["RRULE:FREQ=MONTHLY;COUNT=2"]);
        assert!(
            overlaps(&master, now, now + DAY),
            "an unbounded reading keeps it"
        );
    }

    #[test]
    fn icloud_listings_are_cut_into_years() {
        assert_eq!(max_span(Some("icloud")), Some(ICLOUD_MAX_SPAN_S));
        assert_eq!(max_span(Some("google")), None);
        let w = EventWindow::default();
        let (s, e) = w.bounds(0);
        let parts = slices(s, e, max_span(Some("icloud")));
        // 366 + 731 days: three full years and a two-day remainder.
        assert_eq!(parts.len(), 4);
        assert!(parts.iter().all(|(a, b)| b - a <= ICLOUD_MAX_SPAN_S));
        assert_eq!(slices(s, e, None), vec![(s, e)]);
        assert!(slices(5, 5, None).is_empty());
    }

    proptest! {
        #[test]
        fn slices_cover_the_window_exactly_and_respect_the_limit(
            start in -1_000_000_000i64..1_000_000_000,
            len in 0i64..200_000_000,
            limit in proptest::option::of(1i64..50_000_000),
        ) {
            let parts = slices(start, start + len, limit);
            let mut at = start;
            for (from, to) in &parts {
                prop_assert_eq!(*from, at);
                prop_assert!(to > from);
                if let Some(l) = limit { prop_assert!(to - from <= l); }
                at = *to;
            }
            prop_assert_eq!(at, if len == 0 { start } else { start + len });
        }

        #[test]
        fn a_single_event_is_covered_exactly_when_it_overlaps(
            start in -10_000i64..10_000, len in 0i64..5_000, ws in -10_000i64..10_000, wl in 1i64..10_000,
        ) {
            let e = timespan(start, start + len);
            let expected = start < ws + wl && (start + len > ws || (len == 0 && start >= ws));
            prop_assert_eq!(overlaps(&e, ws, ws + wl), expected);
        }
    }
}
