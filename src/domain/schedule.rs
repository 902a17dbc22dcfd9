//! Digest schedules: a digest route's `digest = { … }` table as written ([`DigestSpec`]), when
//! its windows close ([`Schedule`], parsed from it), and the window an instant falls in
//! ([`Window`]). Pure time arithmetic: knows nothing of routes, events or templates.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Span, SpanRelativeTo, Timestamp};
use serde::Deserialize;

/// The template a digest route renders when `digest.template` is not set.
pub const DEFAULT_TEMPLATE: &str = "digest";

const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
/// `every` at most a week: a longer window keeps events (and readers) waiting too long.
const MAX_EVERY: i64 = 7 * DAY;

const EVERY_EXAMPLE: &str = "every = \"1h\"";
const AT_EXAMPLE: &str = "at = \"09:00\", timezone = \"Europe/Berlin\"";

/// A route's `digest = { … }` as written in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSpec {
    /// A fixed interval, aligned to the Unix epoch in UTC: `"30s"`, `"5m"`, `"1h"`, `"1d"`.
    #[serde(default)]
    pub every: Option<String>,
    /// Daily, at this local time of day (`"HH:MM"`, 24-hour clock) in `timezone`.
    #[serde(default)]
    pub at: Option<String>,
    /// The IANA zone of `at`; default `UTC`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// The digest's template directory; default [`DEFAULT_TEMPLATE`].
    #[serde(default)]
    pub template: Option<String>,
}

/// When a digest route's windows close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Fixed windows of `seconds`, aligned to the Unix epoch (`1h` closes on the hour, UTC).
    Every {
        /// Window length, 1 s to 7 d.
        seconds: i64,
    },
    /// From `at` local time on one day to `at` on the next, in `zone`: 23, 24 or 25 hours
    /// around a daylight-saving change.
    Daily {
        /// Local time of day the window closes (and the next opens).
        at: Time,
        /// The zone `at` is read in.
        zone: TimeZone,
        /// The zone's IANA name, for labels.
        zone_name: String,
    },
}

/// A half-open interval of Unix seconds, `[start, end)`: one digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// First second inside the window.
    pub start: i64,
    /// First second after it: when the window closes.
    pub end: i64,
}

impl Window {
    /// Whether the instant falls inside the window.
    pub fn contains(&self, unix_seconds: i64) -> bool {
        (self.start..self.end).contains(&unix_seconds)
    }
}

impl Schedule {
    /// Reads a route's `digest` table.
    ///
    /// # Errors
    /// A message saying what is wrong, with a valid example: neither or both of `every` and
    /// `at`; `every` not a duration (jiff's friendly format or ISO 8601), negative, in months
    /// or years, not whole seconds, or outside 1s..=7d; `at` not `HH:MM`; `timezone` without
    /// `at`, or not an IANA zone name.
    pub fn parse(spec: &DigestSpec) -> Result<Self, String> {
        match (&spec.every, &spec.at) {
            (Some(_), Some(_)) => Err(format!(
                "set `every` or `at`, not both: {EVERY_EXAMPLE} for a window every hour, or \
                 {AT_EXAMPLE} for a daily one"
            )),
            (None, None) => Err(format!(
                "needs `every` or `at`: {EVERY_EXAMPLE} for a window every hour, or \
                 {AT_EXAMPLE} for a daily one"
            )),
            (Some(every), None) => {
                if let Some(zone) = &spec.timezone {
                    return Err(format!(
                        "`timezone` = {zone:?} goes with `at`: `every` windows are aligned to \
                         UTC; remove `timezone`, or make the digest daily, e.g. {AT_EXAMPLE}"
                    ));
                }
                parse_every(every).map(|seconds| Self::Every { seconds })
            }
            (None, Some(at)) => {
                let at = parse_at(at)?;
                let name = spec.timezone.as_deref().unwrap_or("UTC");
                let zone = TimeZone::get(name).map_err(|_| {
                    format!(
                        "`timezone` = {name:?} is not a known IANA time zone name, e.g. \
                         timezone = \"Europe/Berlin\" or \"America/New_York\""
                    )
                })?;
                let zone_name = zone.iana_name().unwrap_or(name).to_owned();
                Ok(Self::Daily {
                    at,
                    zone,
                    zone_name,
                })
            }
        }
    }

    /// The window holding the instant. The windows of a schedule follow one another without
    /// gap or overlap (for any instant of the years jiff represents, -9999..=9999), so two
    /// instants in the same window get the same answer.
    pub fn window_at(&self, unix_seconds: i64) -> Window {
        match self {
            Self::Every { seconds } => {
                let start = floor_to(unix_seconds, *seconds);
                Window {
                    start,
                    end: start.saturating_add(*seconds),
                }
            }
            Self::Daily { at, zone, .. } => daily_window(unix_seconds, *at, zone),
        }
    }

    /// The schedule in words, for the template and logs: `every 1h`,
    /// `daily at 09:00 Europe/Berlin`.
    pub fn describe(&self) -> String {
        match self {
            Self::Every { seconds } => format!("every {}", duration_text(*seconds)),
            Self::Daily { at, zone_name, .. } => {
                format!("daily at {} {zone_name}", at.strftime("%H:%M"))
            }
        }
    }

    /// A window in words for a subject line, in the schedule's own time: `2026-11-29
    /// 10:00–11:00 UTC`, or `Sun 29 Nov 2026 09:00 – Mon 30 Nov 2026 09:00 Europe/Berlin`.
    pub fn label(&self, window: Window) -> String {
        match self {
            Self::Every { seconds } => {
                let clock = if seconds % MINUTE == 0 && window.start % MINUTE == 0 {
                    "%H:%M"
                } else {
                    "%H:%M:%S"
                };
                let (Some(start), Some(end)) = (
                    zoned(window.start, &TimeZone::UTC),
                    zoned(window.end, &TimeZone::UTC),
                ) else {
                    return format!("{}–{} (Unix seconds) UTC", window.start, window.end);
                };
                if start.date() == end.date() {
                    format!(
                        "{} {}–{} UTC",
                        start.strftime("%Y-%m-%d"),
                        start.strftime(clock),
                        end.strftime(clock)
                    )
                } else {
                    let day_clock = format!("%Y-%m-%d {clock}");
                    format!(
                        "{} – {} UTC",
                        start.strftime(&day_clock),
                        end.strftime(&day_clock)
                    )
                }
            }
            Self::Daily {
                zone, zone_name, ..
            } => {
                let (Some(start), Some(end)) = (zoned(window.start, zone), zoned(window.end, zone))
                else {
                    return format!("{}–{} (Unix seconds) {zone_name}", window.start, window.end);
                };
                let format = "%a %-d %b %Y %H:%M";
                format!(
                    "{} – {} {zone_name}",
                    start.strftime(format),
                    end.strftime(format)
                )
            }
        }
    }

    /// The longest window this schedule makes, in seconds: how long an entry may wait for its
    /// window to close. Daily: 26 h, because a day gains up to 2 h at a daylight-saving change
    /// (1 h in most zones, 2 h in Antarctica/Troll).
    pub fn longest_window(&self) -> i64 {
        match self {
            Self::Every { seconds } => *seconds,
            Self::Daily { .. } => 26 * HOUR,
        }
    }
}

/// `"90m"` → 5400: a duration as jiff reads it (its friendly format, `"1h30m"` or `"2 days"`,
/// or ISO 8601, `"PT1H"`), a whole number of seconds from 1 s to 7 d. Days are 24 hours and
/// weeks 7 days: the windows are aligned to UTC, which has no daylight-saving changes.
fn parse_every(raw: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "`every` = {raw:?} is not a duration: write a whole number and a unit s, m, h or d, \
             e.g. every = \"30m\" or \"1h\""
        )
    };
    let span: Span = raw.trim().parse().map_err(|_| bad())?;
    // "-1h" and "1h ago" parse, but say when, not how long.
    if span.is_negative() {
        return Err(bad());
    }
    let duration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| {
            format!(
                "`every` = {raw:?} has no fixed length (months and years vary): at most 7d, \
                 e.g. every = \"1d\""
            )
        })?;
    if duration.subsec_nanos() != 0 {
        return Err(format!(
            "`every` = {raw:?} is not a whole number of seconds, e.g. every = \"30s\""
        ));
    }
    let seconds = duration.as_secs();
    if seconds < 1 {
        return Err(format!(
            "`every` = {raw:?} is too short: at least 1s, e.g. every = \"1h\""
        ));
    }
    if seconds > MAX_EVERY {
        return Err(format!(
            "`every` = {raw:?} is too long: at most 7d, e.g. every = \"1d\""
        ));
    }
    Ok(seconds)
}

/// `"09:00"` → 09:00: exactly `HH:MM`, 24-hour clock.
fn parse_at(raw: &str) -> Result<Time, String> {
    let bad = || {
        format!(
            "`at` = {raw:?} is not a time of day: write HH:MM on a 24-hour clock, e.g. \
             at = \"09:00\" or \"17:30\""
        )
    };
    // jiff's %H also takes "9" and leading spaces: only the text it would write back is HH:MM.
    match Time::strptime("%H:%M", raw) {
        Ok(at) if at.strftime("%H:%M").to_string() == raw => Ok(at),
        _ => Err(bad()),
    }
}

/// 5400 → `90m`: the largest unit that divides the interval.
fn duration_text(seconds: i64) -> String {
    for (unit, name) in [(DAY, "d"), (HOUR, "h"), (MINUTE, "m")] {
        if seconds % unit == 0 {
            return format!("{}{name}", seconds / unit);
        }
    }
    format!("{seconds}s")
}

/// The multiple of `step` at or before `t`: rem_euclid is never negative, so -1 lands in
/// [-step, 0), not [0, step). Saturates instead of overflowing near `i64::MIN`.
fn floor_to(t: i64, step: i64) -> i64 {
    t.saturating_sub(t.rem_euclid(step))
}

fn zoned(unix_seconds: i64, zone: &TimeZone) -> Option<jiff::Zoned> {
    Timestamp::from_second(unix_seconds)
        .ok()
        .map(|t| t.to_zoned(zone.clone()))
}

/// The daily window holding the instant: from the latest `at` on or before it, to the `at` of
/// the next local date. A local `at` in a spring-forward gap is the instant after the gap, a
/// repeated one in a fall-back fold the earlier instant ("compatible" disambiguation, as
/// RFC 5545 and Temporal do).
fn daily_window(unix_seconds: i64, at: Time, zone: &TimeZone) -> Window {
    // Only reachable for instants jiff cannot represent (beyond the years -9999..=9999) or a
    // date arithmetic error at those edges: a 24 h window aligned to UTC days still holds the
    // instant, and no real event is ever there.
    let fallback = |start: i64| Window {
        start,
        end: start.saturating_add(DAY),
    };
    let utc_day = floor_to(unix_seconds, DAY);
    let Ok(instant) = Timestamp::from_second(unix_seconds) else {
        return fallback(utc_day);
    };
    let opening = |date: Date| -> Option<i64> {
        zone.to_ambiguous_timestamp(date.to_datetime(at))
            .compatible()
            .ok()
            .map(Timestamp::as_second)
    };
    // The local date's `at` may be after the instant (it is morning before `at`), and a day
    // skipped by a zone (Pacific/Apia, 30 Dec 2011) may open after it too: step back until the
    // opening is not after the instant. Three steps cover every transition in the database.
    let mut date = zone.to_datetime(instant).date();
    let mut start = None;
    for _ in 0..4 {
        match opening(date) {
            Some(open) if open <= unix_seconds => {
                start = Some(open);
                break;
            }
            _ => match date.yesterday() {
                Ok(previous) => date = previous,
                Err(_) => break,
            },
        }
    }
    let Some(start) = start else {
        return fallback(utc_day);
    };
    match date.tomorrow().ok().and_then(opening) {
        Some(end) if end > unix_seconds => Window { start, end },
        // Impossible: the next date's `at` is after the instant, or the loop above would have
        // stopped there. Still a window that holds the instant rather than a panic.
        _ => fallback(start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1;

    fn instant(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().expect("RFC 3339").as_second()
    }

    fn rfc3339(seconds: i64) -> String {
        Timestamp::from_second(seconds)
            .expect("in range")
            .to_string()
    }

    fn every(text: &str) -> Schedule {
        Schedule::parse(&DigestSpec {
            every: Some(text.to_owned()),
            ..DigestSpec::default()
        })
        .expect("valid every")
    }

    fn daily(at: &str, zone: &str) -> Schedule {
        Schedule::parse(&DigestSpec {
            at: Some(at.to_owned()),
            timezone: Some(zone.to_owned()),
            ..DigestSpec::default()
        })
        .expect("valid at")
    }

    /// The window as RFC 3339 UTC instants, and its length in hours.
    fn shown(window: Window) -> (String, String, f64) {
        let hours = (window.end - window.start) as f64 / 3600.0;
        (rfc3339(window.start), rfc3339(window.end), hours)
    }

    fn window(start: &str, end: &str, hours: f64) -> (String, String, f64) {
        (start.to_owned(), end.to_owned(), hours)
    }

    // --- Schedules -------------------------------------------------------------------------

    #[test]
    fn an_hourly_window_closes_on_the_hour_utc() {
        let hourly = every("1h");
        let w = hourly.window_at(instant("2026-11-29T10:59:59Z"));
        assert_eq!(
            shown(w),
            window("2026-11-29T10:00:00Z", "2026-11-29T11:00:00Z", 1.0)
        );
        // The end is outside: the closing second opens the next window.
        let next = hourly.window_at(instant("2026-11-29T11:00:00Z"));
        assert_eq!(next.start, w.end);
        assert!(w.contains(w.start) && !w.contains(w.end));
    }

    #[test]
    fn every_window_is_aligned_to_the_epoch_even_before_it() {
        let seven = every("7s");
        let starts: Vec<i64> = [-15, -14, -8, -7, -1, 0, 6, 7, 13, 14]
            .map(|t| seven.window_at(t).start)
            .to_vec();
        assert_eq!(starts, [-21, -14, -14, -7, -7, 0, 0, 7, 7, 14]);
        assert!((-20..20).all(|t| seven.window_at(t).end - seven.window_at(t).start == 7));
        // 90 minutes divides a day, so the windows start at midnight UTC too.
        let w = every("90m").window_at(instant("2026-11-29T01:31:00Z"));
        assert_eq!(
            shown(w),
            window("2026-11-29T01:30:00Z", "2026-11-29T03:00:00Z", 1.5)
        );
    }

    #[test]
    fn extreme_instants_give_a_window_not_a_panic() {
        for schedule in [every("7s"), every("7d"), daily("09:00", "Europe/Berlin")] {
            for t in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
                let w = schedule.window_at(t);
                // The last second has no room for a window after it: `end` saturates.
                assert!(
                    w.start <= t && w.start <= w.end,
                    "{schedule:?} at {t}: {w:?}"
                );
                assert!(w.contains(t) || t == i64::MAX, "{schedule:?} at {t}: {w:?}");
            }
        }
    }

    #[test]
    fn a_daily_window_in_berlin_is_23_hours_when_the_clocks_spring_forward() {
        let berlin = daily("09:00", "Europe/Berlin");
        // 28 Mar 09:00 CET (UTC+1) to 29 Mar 09:00 CEST (UTC+2).
        let w = berlin.window_at(instant("2026-03-28T20:00:00Z"));
        assert_eq!(
            shown(w),
            window("2026-03-28T08:00:00Z", "2026-03-29T07:00:00Z", 23.0)
        );
        // Before 09:00 local belongs to the previous day's window.
        let early = berlin.window_at(instant("2026-03-29T06:59:59Z"));
        assert_eq!(early, w);
        let after = berlin.window_at(instant("2026-03-29T07:00:00Z"));
        assert_eq!(
            shown(after),
            window("2026-03-29T07:00:00Z", "2026-03-30T07:00:00Z", 24.0)
        );
    }

    #[test]
    fn a_daily_window_in_berlin_is_25_hours_when_the_clocks_fall_back() {
        let berlin = daily("09:00", "Europe/Berlin");
        let w = berlin.window_at(instant("2026-10-25T01:30:00Z"));
        assert_eq!(
            shown(w),
            window("2026-10-24T07:00:00Z", "2026-10-25T08:00:00Z", 25.0)
        );
    }

    #[test]
    fn a_daily_time_inside_the_spring_forward_gap_opens_after_the_gap() {
        // 29 Mar 2026 02:30 does not exist in Berlin (02:00 CET → 03:00 CEST): that day's
        // window opens at 03:30 CEST, the instant 02:30 CET would have been.
        let berlin = daily("02:30", "Europe/Berlin");
        let that_day = berlin.window_at(instant("2026-03-29T12:00:00Z"));
        assert_eq!(
            shown(that_day),
            window("2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z", 23.0)
        );
        // 03:00 CEST is after 02:30 on the clock, but before the opening: the day before.
        let just_after_the_gap = berlin.window_at(instant("2026-03-29T01:00:00Z"));
        assert_eq!(
            shown(just_after_the_gap),
            window("2026-03-28T01:30:00Z", "2026-03-29T01:30:00Z", 24.0)
        );
    }

    #[test]
    fn a_daily_time_repeated_by_the_fall_back_opens_at_its_first_occurrence() {
        // 1 Nov 2026, New York: 01:30 happens at EDT (05:30Z), then again at EST (06:30Z).
        let new_york = daily("01:30", "America/New_York");
        let second_pass = new_york.window_at(instant("2026-11-01T06:10:00Z"));
        assert_eq!(
            shown(second_pass),
            window("2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z", 25.0)
        );
        let nine = daily("09:00", "America/New_York");
        // 7 Mar 09:00 EST to 8 Mar 09:00 EDT.
        let spring = nine.window_at(instant("2026-03-08T00:00:00Z"));
        assert_eq!(
            shown(spring),
            window("2026-03-07T14:00:00Z", "2026-03-08T13:00:00Z", 23.0)
        );
    }

    #[test]
    fn daily_windows_follow_one_another_without_gaps_through_a_year() {
        for zone in [
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
            "UTC",
        ] {
            let schedule = daily("02:30", zone);
            let mut w = schedule.window_at(instant("2026-01-01T00:00:00Z"));
            for _ in 0..400 {
                assert!(
                    schedule.longest_window() >= w.end - w.start,
                    "{zone}: {w:?}"
                );
                assert_eq!(schedule.window_at(w.end - 1), w, "{zone}");
                let next = schedule.window_at(w.end);
                assert_eq!(next.start, w.end, "{zone}");
                w = next;
            }
        }
    }

    #[test]
    fn a_whole_number_and_one_unit_means_what_the_docs_say() {
        // The documented form, leading zeros and surrounding spaces included.
        for (unit, length) in [("s", SECOND), ("m", MINUTE), ("h", HOUR), ("d", DAY)] {
            let counts = (1..=2_000).chain([MAX_EVERY / length]);
            for count in counts.filter(|c| c * length <= MAX_EVERY) {
                let seconds = count * length;
                assert_eq!(
                    every(&format!("{count}{unit}")),
                    Schedule::Every { seconds }
                );
                assert_eq!(
                    every(&format!(" 00{count}{unit} ")),
                    Schedule::Every { seconds }
                );
            }
        }
    }

    #[test]
    fn every_also_reads_jiffs_friendly_and_iso_8601_durations() {
        for (text, seconds) in [
            ("1h30m", 90 * MINUTE),
            ("1h 30m", 90 * MINUTE),
            ("90 minutes", 90 * MINUTE),
            ("1.5h", 90 * MINUTE),
            ("PT1H30M", 90 * MINUTE),
            ("2 days", 2 * DAY),
            ("P1D", DAY),
            ("1w", 7 * DAY),
            ("1d 1s", DAY + 1),
        ] {
            assert_eq!(every(text), Schedule::Every { seconds }, "{text}");
        }
        assert_eq!(every("1h30m").describe(), "every 90m");
    }

    #[test]
    fn digest_specs_that_cannot_work_are_refused_with_an_example() {
        let spec = |every: Option<&str>, at: Option<&str>, timezone: Option<&str>| DigestSpec {
            every: every.map(str::to_owned),
            at: at.map(str::to_owned),
            timezone: timezone.map(str::to_owned),
            template: None,
        };
        let cases = [
            (spec(Some("1h"), Some("09:00"), None), "not both"),
            (spec(None, None, None), "needs `every` or `at`"),
            (spec(None, None, Some("UTC")), "needs `every` or `at`"),
            (spec(Some("5x"), None, None), "is not a duration"),
            (spec(Some("h"), None, None), "is not a duration"),
            (spec(Some("1H"), None, None), "is not a duration"),
            (spec(Some("1h30"), None, None), "is not a duration"),
            (spec(Some(""), None, None), "is not a duration"),
            (
                spec(Some("99999999999999999999d"), None, None),
                "is not a duration",
            ),
            (spec(Some("0s"), None, None), "too short: at least 1s"),
            (spec(Some("-1h"), None, None), "is not a duration"),
            (spec(Some("1 day ago"), None, None), "is not a duration"),
            (spec(Some("0.5s"), None, None), "whole number of seconds"),
            (spec(Some("1m0.5s"), None, None), "whole number of seconds"),
            (spec(Some("1mo"), None, None), "no fixed length"),
            (spec(Some("1y"), None, None), "no fixed length"),
            (spec(Some("8d"), None, None), "too long: at most 7d"),
            (spec(Some("604801s"), None, None), "too long"),
            (spec(Some("1w 1s"), None, None), "too long"),
            (
                spec(Some("1h"), None, Some("Europe/Berlin")),
                "`timezone` = \"Europe/Berlin\" goes with `at`",
            ),
            (spec(None, Some("9:00"), None), "not a time of day"),
            (spec(None, Some("24:00"), None), "not a time of day"),
            (spec(None, Some("09:60"), None), "not a time of day"),
            (spec(None, Some("09:00:00"), None), "not a time of day"),
            (spec(None, Some("9am"), None), "not a time of day"),
            (spec(None, Some("0900"), None), "not a time of day"),
            (spec(None, Some("T09:00"), None), "not a time of day"),
            (spec(None, Some("09"), None), "not a time of day"),
            (spec(None, Some(" 9:00"), None), "not a time of day"),
            (spec(None, Some("09:5"), None), "not a time of day"),
            (spec(None, Some("09:00:00.5"), None), "not a time of day"),
            (
                spec(None, Some("09:00"), Some("Mars/Olympus_Mons")),
                "\"Mars/Olympus_Mons\" is not a known IANA time zone",
            ),
            (spec(None, Some("09:00"), Some("")), "is not a known IANA"),
        ];
        for (spec, expected) in cases {
            let err = Schedule::parse(&spec).expect_err(expected);
            assert!(
                err.contains(expected),
                "{spec:?}: got {err}, want {expected}"
            );
            assert!(err.contains("e.g.") || err.contains(EVERY_EXAMPLE), "{err}");
        }
        assert_eq!(every("7d").longest_window(), 7 * DAY);
        assert_eq!(every("1s").longest_window(), 1);
    }

    #[test]
    fn schedules_describe_themselves_and_label_their_windows() {
        assert_eq!(every("60m").describe(), "every 1h");
        assert_eq!(every("90m").describe(), "every 90m");
        assert_eq!(every("86400s").describe(), "every 1d");
        assert_eq!(every("45s").describe(), "every 45s");
        let berlin = daily("09:00", "Europe/Berlin");
        assert_eq!(berlin.describe(), "daily at 09:00 Europe/Berlin");
        assert_eq!(daily("17:30", "UTC").describe(), "daily at 17:30 UTC");
        assert_eq!(
            Schedule::parse(&DigestSpec {
                at: Some("06:05".into()),
                ..DigestSpec::default()
            })
            .expect("UTC by default")
            .describe(),
            "daily at 06:05 UTC"
        );

        let hourly = every("1h");
        let label = |s: &Schedule, t: &str| s.label(s.window_at(instant(t)));
        assert_eq!(
            label(&hourly, "2026-11-29T10:15:00Z"),
            "2026-11-29 10:00–11:00 UTC"
        );
        assert_eq!(
            label(&hourly, "2026-11-29T23:15:00Z"),
            "2026-11-29 23:00 – 2026-11-30 00:00 UTC"
        );
        assert_eq!(
            label(&every("30s"), "2026-11-29T10:00:45Z"),
            "2026-11-29 10:00:30–10:01:00 UTC"
        );
        assert_eq!(
            label(&berlin, "2026-11-29T12:00:00Z"),
            "Sun 29 Nov 2026 09:00 – Mon 30 Nov 2026 09:00 Europe/Berlin"
        );
        assert_eq!(
            label(&daily("02:30", "Europe/Berlin"), "2026-03-29T12:00:00Z"),
            "Sun 29 Mar 2026 03:30 – Mon 30 Mar 2026 02:30 Europe/Berlin"
        );
    }
}
