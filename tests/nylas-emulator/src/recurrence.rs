//! Recurrence rules as Nylas carries them on a master event (`recurrence`: RFC 5545 `RRULE` and
//! `EXDATE` strings), expanded in UTC; and Google-style occurrence ids
//! (`<master_id>_<YYYYMMDDTHHMMSSZ>` of the occurrence's original start).
//!
//! Supported: `FREQ=DAILY|WEEKLY`, `INTERVAL`, `COUNT`, `UNTIL`, and `BYDAY` on weekly rules;
//! `EXDATE` values in UTC (a `TZID` is ignored). Anything else is refused when an event is created.

use std::collections::BTreeSet;

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// Upper bound on occurrences generated for one question, whatever the rule says.
const MAX_STEPS: usize = 200_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    weekly: bool,
    interval: i64,
    count: Option<usize>,
    until: Option<i64>,
    /// Weekly rules: days of the week, 0 = Monday.
    by_day: Vec<i64>,
    exdates: BTreeSet<i64>,
}

impl Rule {
    /// Parses a master's `recurrence` strings. `None` when there is no supported `RRULE`.
    pub(crate) fn parse(lines: &[String]) -> Option<Rule> {
        let mut rule = None;
        let mut exdates = BTreeSet::new();
        for line in lines {
            let line = line.trim();
            let (name, value) = line.split_once(':')?;
            let name = name.trim().to_ascii_uppercase();
            if name == "RRULE" {
                rule = Some(parse_rrule(value)?);
            } else if name.starts_with("EXDATE") {
                for v in value.split(',') {
                    exdates.insert(parse_time(v.trim())?);
                }
            } else {
                return None;
            }
        }
        let mut rule = rule?;
        rule.exdates = exdates;
        Some(rule)
    }

    /// Every occurrence start (excluded dates included, so `COUNT` applies before `EXDATE` as in
    /// RFC 5545), ascending, from `dtstart` until one starts at or after `before`.
    fn starts(&self, dtstart: i64, before: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let done = |out: &Vec<i64>, t: i64| {
            t >= before
                || self.until.is_some_and(|u| t > u)
                || self.count.is_some_and(|c| out.len() >= c)
        };
        if self.weekly && !self.by_day.is_empty() {
            let tod = dtstart.rem_euclid(DAY);
            let day0 = dtstart.div_euclid(DAY);
            // 1970-01-01 was a Thursday: Monday-based weekday = (days + 3) mod 7.
            let monday = day0 - (day0 + 3).rem_euclid(7);
            for week in 0..MAX_STEPS as i64 {
                let base = (monday + week * 7 * self.interval) * DAY + tod;
                for d in &self.by_day {
                    let t = base + d * DAY;
                    if t < dtstart {
                        continue;
                    }
                    if done(&out, t) {
                        return out;
                    }
                    out.push(t);
                }
            }
            return out;
        }
        let step = if self.weekly { WEEK } else { DAY } * self.interval;
        let mut t = dtstart;
        for _ in 0..MAX_STEPS {
            if done(&out, t) {
                break;
            }
            out.push(t);
            t += step;
        }
        out
    }

    /// Occurrence starts (not excluded) whose `[start, start + duration)` overlaps `[from, to)`.
    pub(crate) fn occurrences_in(
        &self,
        dtstart: i64,
        duration: i64,
        from: i64,
        to: i64,
    ) -> Vec<i64> {
        self.starts(dtstart, to)
            .into_iter()
            .filter(|t| !self.exdates.contains(t) && overlaps(*t, *t + duration, from, to))
            .collect()
    }

    /// Whether `t` is an occurrence start of the rule (excluded dates are not).
    pub(crate) fn has_occurrence(&self, dtstart: i64, t: i64) -> bool {
        !self.exdates.contains(&t) && self.starts(dtstart, t + 1).last() == Some(&t)
    }
}

/// Whether an event spanning `[start, end)` is in the window `[from, to)`. A zero-length event
/// counts when it starts inside the window.
pub(crate) fn overlaps(start: i64, end: i64, from: i64, to: i64) -> bool {
    start < to && (end > from || start >= from)
}

fn parse_rrule(value: &str) -> Option<Rule> {
    let mut rule = Rule {
        weekly: false,
        interval: 1,
        count: None,
        until: None,
        by_day: Vec::new(),
        exdates: BTreeSet::new(),
    };
    let mut freq = None;
    for part in value.split(';') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=')?;
        let v = v.trim();
        match k.trim().to_ascii_uppercase().as_str() {
            "FREQ" => freq = Some(v.to_ascii_uppercase()),
            "INTERVAL" => rule.interval = v.parse().ok().filter(|i: &i64| *i >= 1)?,
            "COUNT" => rule.count = Some(v.parse().ok().filter(|c: &usize| *c >= 1)?),
            "UNTIL" => rule.until = Some(parse_time(v)?),
            "BYDAY" => {
                for d in v.split(',') {
                    let i = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
                        .iter()
                        .position(|x| x.eq_ignore_ascii_case(d.trim()))?;
                    rule.by_day.push(i as i64);
                }
                rule.by_day.sort_unstable();
                rule.by_day.dedup();
            }
            "WKST" if v.eq_ignore_ascii_case("MO") => {}
            _ => return None,
        }
    }
    match freq.as_deref() {
        Some("DAILY") if rule.by_day.is_empty() => {}
        Some("WEEKLY") => rule.weekly = true,
        _ => return None,
    }
    Some(rule)
}

/// `YYYYMMDDTHHMMSSZ` (or without `Z`, read as UTC) or `YYYYMMDD` (midnight UTC).
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim().trim_end_matches(['Z', 'z']);
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let (h, mi, sec) = match s.len() {
        8 => (0, 0, 0),
        15 if s.as_bytes()[8].eq_ignore_ascii_case(&b't') => {
            (num(9..11)?, num(11..13)?, num(13..15)?)
        }
        _ => return None,
    };
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * DAY + h * 3600 + mi * 60 + sec)
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time.
pub(crate) fn format_time(t: i64) -> String {
    let (y, mo, d) = civil_from_days(t.div_euclid(DAY));
    let s = t.rem_euclid(DAY);
    format!(
        "{y:04}{mo:02}{d:02}T{:02}{:02}{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The id of the occurrence of `master_id` originally starting at `start`, as Google forms it.
pub fn occurrence_id(master_id: &str, start: i64) -> String {
    format!("{master_id}_{}", format_time(start))
}

/// `(master_id, original_start)` of an occurrence id.
pub(crate) fn split_occurrence_id(id: &str) -> Option<(&str, i64)> {
    let (master, ts) = id.rsplit_once('_')?;
    if master.is_empty() || ts.len() != 16 || !ts.ends_with('Z') {
        return None;
    }
    Some((master, parse_time(ts)?))
}

// Howard Hinnant's algorithms for the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(lines: &[&str]) -> Rule {
        let lines: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        Rule::parse(&lines).expect("supported rule")
    }

    #[test]
    fn times_format_and_parse_in_utc() {
        // 2024-02-29T13:05:09Z
        let t = 1_709_211_909;
        assert_eq!(format_time(t), "20240229T130509Z");
        assert_eq!(parse_time("20240229T130509Z"), Some(t));
        assert_eq!(parse_time("20240229"), Some(t - 13 * 3600 - 5 * 60 - 9));
        assert_eq!(format_time(0), "19700101T000000Z");
        assert_eq!(parse_time("2024-02-29"), None);
        assert_eq!(
            split_occurrence_id(&occurrence_id("abc_def", t)),
            Some(("abc_def", t))
        );
        assert_eq!(split_occurrence_id("plainid"), None);
    }

    #[test]
    fn weekly_and_daily_rules_honour_count_until_interval_and_exdate() {
        let start = parse_time("20240101T100000Z").unwrap_or_default(); // a Monday
        let r = rule(&["RRULE:FREQ=WEEKLY;COUNT=3"]);
        let all = r.occurrences_in(start, 3600, 0, i64::MAX);
        assert_eq!(all, vec![start, start + WEEK, start + 2 * WEEK]);
        let r = rule(&["RRULE:FREQ=DAILY;INTERVAL=2;UNTIL=20240105T100000Z"]);
        assert_eq!(
            r.occurrences_in(start, 3600, 0, i64::MAX),
            vec![start, start + 2 * DAY, start + 4 * DAY]
        );
        let r = rule(&[
            "RRULE:FREQ=WEEKLY; BYDAY=MO,WE; COUNT=4",
            "EXDATE:20240103T100000Z",
        ]);
        assert_eq!(
            r.occurrences_in(start, 3600, 0, i64::MAX),
            vec![start, start + WEEK, start + WEEK + 2 * DAY],
            "EXDATE removes an occurrence after COUNT was applied"
        );
        assert!(r.has_occurrence(start, start + WEEK));
        assert!(!r.has_occurrence(start, start + 2 * DAY));
        // Windows cut on overlap: the occurrence running across `from` is in.
        let r = rule(&["RRULE:FREQ=DAILY"]);
        assert_eq!(
            r.occurrences_in(start, 3600, start + DAY + 1800, start + 3 * DAY),
            vec![start + DAY, start + 2 * DAY]
        );
        assert!(Rule::parse(&["RRULE:FREQ=MONTHLY".to_string()]).is_none());
        assert!(Rule::parse(&["EXDATE:20240101T000000Z".to_string()]).is_none());
    }
}
