//! Digest routes: a route that batches its events into one email per time window.
//!
//! This module owns the pure parts: the schedule ([`Schedule`], parsed from a route's
//! [`DigestSpec`]), the window an instant falls in ([`Window`]), what is kept of one event until
//! its window closes ([`DigestEntry`]), and the data the digest template sees ([`digest_data`]).
//! Where the entries are kept, and when a closed window is sent, is the worker's business.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::catalog::CatalogLinks;
use super::details::Details;
use super::event::PackageEvent;
use super::render::SES_UNSUBSCRIBE_PLACEHOLDER;
use super::route::Route;

/// The template a digest route renders when `digest.template` is not set.
pub const DEFAULT_TEMPLATE: &str = "digest";

/// Most packages listed in one digest; the rest are only counted (`more_packages`), so one
/// window of a busy bucket cannot make an email SES refuses (10 MB).
pub const MAX_PACKAGES: usize = 500;

/// Most revisions listed per package (`revision_list`); `revisions` counts them all.
pub const MAX_REVISIONS_LISTED: usize = 10;

/// Most characters of a commit message kept per entry, "…" included, so that an entry stays a
/// small item in the store whatever the message.
pub const MAX_MESSAGE_CHARS: usize = 300;

const SECOND: i64 = 1;
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
    /// `at`; `every` not a whole number with a unit s, m, h or d, or outside 1s..=7d; `at` not
    /// `HH:MM`; `timezone` without `at`, or not an IANA zone name.
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

/// `"90m"` → 5400: a whole number and one unit, 1 s to 7 d.
fn parse_every(raw: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "`every` = {raw:?} is not a duration: write a whole number and a unit s, m, h or d, \
             e.g. every = \"30m\" or \"1h\""
        )
    };
    let text = raw.trim();
    let unit = match text.chars().last() {
        Some('s') => SECOND,
        Some('m') => MINUTE,
        Some('h') => HOUR,
        Some('d') => DAY,
        _ => return Err(bad()),
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let too_long = || format!("`every` = {raw:?} is too long: at most 7d, e.g. every = \"1d\"");
    let count: i64 = digits.parse().map_err(|_| too_long())?;
    let seconds = count.checked_mul(unit).ok_or_else(too_long)?;
    if seconds < 1 {
        return Err(format!(
            "`every` = {raw:?} is too short: at least 1s, e.g. every = \"1h\""
        ));
    }
    if seconds > MAX_EVERY {
        return Err(too_long());
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
    let bytes = raw.as_bytes();
    let two_digits = |i: usize| -> Option<i8> {
        let (tens, ones) = (*bytes.get(i)?, *bytes.get(i + 1)?);
        (tens.is_ascii_digit() && ones.is_ascii_digit())
            .then(|| i8::try_from((tens - b'0') * 10 + (ones - b'0')).ok())
            .flatten()
    };
    if bytes.len() != 5 || bytes[2] != b':' {
        return Err(bad());
    }
    let (Some(hour), Some(minute)) = (two_digits(0), two_digits(3)) else {
        return Err(bad());
    };
    // Time::new refuses 24:00 and 09:60.
    Time::new(hour, minute, 0, 0).map_err(|_| bad())
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

/// What a digest keeps of one event until its window closes: small (well under 2 KB as JSON),
/// so that it fits one store item however long the commit message is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestEntry {
    /// EventBridge's event id: the same event recorded twice is listed once.
    pub event_id: String,
    /// The event's time, as sent (RFC 3339).
    pub time: String,
    /// The S3 bucket of the package.
    pub bucket: String,
    /// The package name.
    pub handle: String,
    /// The revision's top hash.
    pub top_hash: String,
    /// `detail.type`, e.g. `created`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The commit message, at most [`MAX_MESSAGE_CHARS`] characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Files in the revision (`package.files`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// Their total size (`package.bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Files added since the previous revision (`changes.added.count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<u64>,
    /// Files removed (`changes.removed.count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<u64>,
    /// Files modified (`changes.modified.count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<u64>,
    /// The details were read whole and there is no previous revision.
    #[serde(default, skip_serializing_if = "is_false")]
    pub first_revision: bool,
    /// The details were read but are incomplete (`package.error` or `changes.error`): the
    /// counts are what was read, not facts.
    #[serde(default, skip_serializing_if = "is_false")]
    pub incomplete: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl DigestEntry {
    /// Keeps what a digest shows of one event. Pass the details only when the route shows them
    /// (`route.details`), as [`route_data`](super::render::route_data) does for one email.
    pub fn new(event: &PackageEvent, details: Option<&Details>) -> Self {
        let package = details.map(|d| d.package.package());
        let diff = details
            .and_then(|d| d.changes.as_ref())
            .and_then(|c| c.diff.as_ref().ok());
        let incomplete = details.is_some_and(|d| d.incomplete().is_some());
        Self {
            event_id: event.id().to_owned(),
            time: event.time().to_owned(),
            bucket: event.bucket().to_owned(),
            handle: event.handle().to_owned(),
            top_hash: event.top_hash().to_owned(),
            kind: event.kind().to_owned(),
            message: package
                .and_then(|p| p.message.as_deref())
                .filter(|m| !m.trim().is_empty())
                .map(|m| cut(m, MAX_MESSAGE_CHARS)),
            files: package.map(|p| p.files),
            bytes: package.map(|p| p.bytes),
            added: diff.map(|d| d.added.count),
            removed: diff.map(|d| d.removed.count),
            modified: diff.map(|d| d.modified.count),
            // Incomplete details cannot tell a first revision from an unread history.
            first_revision: details.is_some_and(|d| d.changes.is_none()) && !incomplete,
            incomplete,
        }
    }
}

/// At most `max_chars` characters, the last one "…" when the text was longer; cut on a char
/// boundary.
fn cut(text: &str, max_chars: usize) -> String {
    if text.chars().nth(max_chars).is_none() {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// An entry and its time as an instant, parsed once for sorting.
struct Timed {
    at: Option<Timestamp>,
    entry: DigestEntry,
}

/// Newer first: by instant where the times parse, and the string breaks ties of equal instants.
/// A time that does not parse counts as older than any that does (among themselves, by
/// string), which keeps the order total: `sort_by` may panic on one that is not.
fn newer_first(a: &Timed, b: &Timed) -> Ordering {
    (b.at, &b.entry.time).cmp(&(a.at, &a.entry.time))
}

/// Revisions of a package: newer first, then by event id, so the order never depends on the
/// order the entries were recorded in.
fn newest_first(a: &Timed, b: &Timed) -> Ordering {
    newer_first(a, b).then_with(|| a.entry.event_id.cmp(&b.entry.event_id))
}

/// The data of a digest template: the window, and the window's events grouped by package (see
/// docs/templates.md, "Digest templates"). Every key is always present, as templates are strict;
/// links are `null` without a catalog host.
pub fn digest_data(
    route: &Route,
    schedule: &Schedule,
    window: Window,
    entries: Vec<DigestEntry>,
    catalog_host: Option<&str>,
) -> Value {
    let mut seen = HashSet::new();
    let mut groups: HashMap<(String, String), Vec<Timed>> = HashMap::new();
    for entry in entries {
        // A re-delivered event may have been recorded twice: the first record stands.
        if !seen.insert(entry.event_id.clone()) {
            continue;
        }
        let at = entry.time.parse::<Timestamp>().ok();
        groups
            .entry((entry.bucket.clone(), entry.handle.clone()))
            .or_default()
            .push(Timed { at, entry });
    }
    let mut packages: Vec<((String, String), Vec<Timed>)> = groups.into_iter().collect();
    for (_, revisions) in &mut packages {
        revisions.sort_by(newest_first);
    }
    packages.sort_by(|(key_a, a), (key_b, b)| match (a.first(), b.first()) {
        (Some(a), Some(b)) => newer_first(a, b).then_with(|| key_a.cmp(key_b)),
        _ => key_a.cmp(key_b),
    });
    let package_count = packages.len();
    let listed: Vec<Value> = packages
        .iter()
        .take(MAX_PACKAGES)
        .map(|((bucket, handle), revisions)| package_value(bucket, handle, revisions, catalog_host))
        .collect();
    let rfc3339 = |seconds: i64| {
        Timestamp::from_second(seconds).map_or_else(|_| Value::Null, |t| Value::from(t.to_string()))
    };
    json!({
        "route": route.name,
        "schedule": schedule.describe(),
        "window": {
            "start": rfc3339(window.start),
            "end": rfc3339(window.end),
            "label": schedule.label(window),
        },
        "events": seen.len(),
        "package_count": package_count,
        "more_packages": package_count.saturating_sub(MAX_PACKAGES),
        "packages": listed,
        "unsubscribe_url": route.topic.as_ref().map(|_| SES_UNSUBSCRIBE_PLACEHOLDER),
    })
}

/// One package of a digest: its revisions in the window, newest first.
fn package_value(
    bucket: &str,
    handle: &str,
    revisions: &[Timed],
    catalog_host: Option<&str>,
) -> Value {
    let links = catalog_host.map(|host| CatalogLinks::new(host, bucket, handle));
    let entry = |timed: &Timed| entry_value(&timed.entry, links.as_ref());
    let listed: Vec<Value> = revisions
        .iter()
        .take(MAX_REVISIONS_LISTED)
        .map(entry)
        .collect();
    json!({
        "bucket": bucket,
        "handle": handle,
        "revisions": revisions.len(),
        "more_revisions": revisions.len().saturating_sub(listed.len()),
        "revisions_url": links.as_ref().map(CatalogLinks::revisions),
        "latest": revisions.first().map_or(Value::Null, entry),
        "revision_list": listed,
    })
}

/// An entry as the template sees it: every field (null when unknown), plus `short_hash` and
/// `catalog_url`.
fn entry_value(entry: &DigestEntry, links: Option<&CatalogLinks>) -> Value {
    json!({
        "event_id": entry.event_id,
        "time": entry.time,
        "bucket": entry.bucket,
        "handle": entry.handle,
        "top_hash": entry.top_hash,
        "short_hash": entry.top_hash.chars().take(7).collect::<String>(),
        "type": entry.kind,
        "message": entry.message,
        "files": entry.files,
        "bytes": entry.bytes,
        "added": entry.added,
        "removed": entry.removed,
        "modified": entry.modified,
        "first_revision": entry.first_revision,
        "incomplete": entry.incomplete,
        "catalog_url": links.map(|l| l.tree(&entry.top_hash)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::changes::{Changes, Diff};
    use crate::domain::details::{Package, PackageRead};
    use crate::domain::route::RouteSpec;

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
            (spec(Some("1.5h"), None, None), "is not a duration"),
            (spec(Some("-1h"), None, None), "is not a duration"),
            (spec(Some("1H"), None, None), "is not a duration"),
            (spec(Some("0s"), None, None), "too short: at least 1s"),
            (spec(Some("8d"), None, None), "too long: at most 7d"),
            (spec(Some("604801s"), None, None), "too long"),
            (spec(Some("99999999999999999999d"), None, None), "too long"),
            (
                spec(Some("1h"), None, Some("Europe/Berlin")),
                "`timezone` = \"Europe/Berlin\" goes with `at`",
            ),
            (spec(None, Some("9:00"), None), "not a time of day"),
            (spec(None, Some("24:00"), None), "not a time of day"),
            (spec(None, Some("09:60"), None), "not a time of day"),
            (spec(None, Some("09:00:00"), None), "not a time of day"),
            (spec(None, Some("9am"), None), "not a time of day"),
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

    // --- Entries ---------------------------------------------------------------------------

    const DOCUMENTED: &str = include_str!("../../events/package-revision.json");

    fn event(id: &str, time: &str, bucket: &str, handle: &str, top_hash: &str) -> PackageEvent {
        let body = DOCUMENTED
            .replace("6425eb6a-9627-e6a1-2ae8-9d2d8883dc74", id)
            .replace("2024-04-25T14:46:51Z", time)
            .replace("\"example\"", &format!("{bucket:?}"))
            .replace("some/package", handle)
            .replace(
                "a0fddace2eb2fd91faa697d237a5dbdcfa77f0fd38ca8b4c850dbd93d142ee69",
                top_hash,
            );
        PackageEvent::parse(&body).expect("event")
    }

    fn entry(id: &str, time: &str, bucket: &str, handle: &str) -> DigestEntry {
        DigestEntry::new(
            &event(id, time, bucket, handle, &format!("{id}0123456789")),
            None,
        )
    }

    fn details() -> Details {
        let mut diff = Diff::default();
        (diff.added.count, diff.removed.count, diff.modified.count) = (4, 1, 0);
        Details {
            package: PackageRead::Complete(Package {
                message: Some("Unicode and deep keys".to_owned()),
                user_meta: serde_json::Map::new(),
                workflow: None,
                files: 8,
                bytes: 166,
                top_level: vec![],
                readme_key: None,
                readme: None,
            }),
            changes: Some(Changes {
                previous_top_hash: "aaa".to_owned(),
                unchanged: false,
                diff: Ok(diff),
                compare_url: None,
            }),
            unchanged: false,
        }
    }

    #[test]
    fn an_entry_keeps_the_message_sizes_and_change_counts() {
        let e = DigestEntry::new(
            &event("e1", "2026-11-29T10:00:00Z", "b", "team/demo", "abc"),
            Some(&details()),
        );
        assert_eq!(e.message.as_deref(), Some("Unicode and deep keys"));
        assert_eq!((e.files, e.bytes), (Some(8), Some(166)));
        assert_eq!(
            (e.added, e.removed, e.modified),
            (Some(4), Some(1), Some(0))
        );
        assert!(!e.first_revision && !e.incomplete);
        assert_eq!(e.kind, "created");

        let first = Details {
            changes: None,
            ..details()
        };
        let e = DigestEntry::new(&event("e2", "t", "b", "h", "x"), Some(&first));
        assert!(e.first_revision);
        assert_eq!(e.added, None);

        let unread = Details {
            package: first.package.clone().failed("AccessDenied"),
            ..first
        };
        let e = DigestEntry::new(&event("e3", "t", "b", "h", "x"), Some(&unread));
        assert!(e.incomplete && !e.first_revision, "{e:?}");

        let e = DigestEntry::new(&event("e4", "t", "b", "h", "x"), None);
        assert!(!e.first_revision && !e.incomplete);
        assert_eq!((e.message, e.files), (None, None));
    }

    #[test]
    fn an_entry_round_trips_and_leaves_out_what_it_does_not_know() {
        let bare = entry("e1", "2026-11-29T10:00:00Z", "b", "h");
        let stored = serde_json::to_value(&bare).expect("serializes");
        assert_eq!(
            stored.as_object().map(|o| o.len()),
            Some(6),
            "only the event's own fields: {stored}"
        );
        assert_eq!(stored["type"], "created");
        let back: DigestEntry = serde_json::from_value(stored).expect("deserializes");
        assert_eq!(back, bare);

        let full = DigestEntry::new(
            &event("e1", "2026-11-29T10:00:00Z", "b", "h", "abc"),
            Some(&details()),
        );
        let text = serde_json::to_string(&full).expect("serializes");
        assert_eq!(
            serde_json::from_str::<DigestEntry>(&text).expect("deserializes"),
            full
        );
    }

    #[test]
    fn a_long_message_is_cut_so_the_entry_stays_under_2_kb() {
        let mut long = details();
        long.package.package_mut().message = Some("é🦀".repeat(5_000));
        let e = DigestEntry::new(
            &event(
                "6425eb6a-9627-e6a1-2ae8-9d2d8883dc74",
                "2026-11-29T10:00:00.123456789+01:00",
                &"b".repeat(63),
                "a-long-namespace-name/and-a-long-package-name-too",
                "a0fddace2eb2fd91faa697d237a5dbdcfa77f0fd38ca8b4c850dbd93d142ee69",
            ),
            Some(&long),
        );
        let message = e.message.as_deref().expect("message");
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS);
        assert!(message.ends_with('…') && message.starts_with("é🦀é"));
        let size = serde_json::to_string(&e).expect("serializes").len();
        assert!(size < 2048, "{size} bytes");

        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "ab…");
        assert_eq!(cut("", 3), "");
    }

    // --- Digest data -----------------------------------------------------------------------

    fn route(topic: Option<&str>) -> Route {
        Route::compile(&RouteSpec {
            digest: Some(DigestSpec {
                every: Some("1h".into()),
                ..DigestSpec::default()
            }),
            topic: topic.map(str::to_owned),
            ..serde_json::from_value(json!({
                "name": "hourly", "to": ["a@b.c"], "pattern": {"source": ["com.quiltdata"]}
            }))
            .expect("spec")
        })
        .expect("route")
    }

    fn data(entries: Vec<DigestEntry>, host: Option<&str>) -> Value {
        let route = route(None);
        let schedule = every("1h");
        let window = schedule.window_at(instant("2026-11-29T10:30:00Z"));
        digest_data(&route, &schedule, window, entries, host)
    }

    fn handles(data: &Value) -> Vec<String> {
        data["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| {
                format!(
                    "{}/{}",
                    p["bucket"].as_str().unwrap_or("?"),
                    p["handle"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }

    #[test]
    fn digest_data_describes_the_window() {
        let d = data(vec![], None);
        assert_eq!(d["route"], "hourly");
        assert_eq!(d["schedule"], "every 1h");
        assert_eq!(
            d["window"],
            json!({"start": "2026-11-29T10:00:00Z", "end": "2026-11-29T11:00:00Z",
                   "label": "2026-11-29 10:00–11:00 UTC"})
        );
        assert_eq!(
            (d["events"].clone(), d["package_count"].clone()),
            (json!(0), json!(0))
        );
        assert_eq!(d["more_packages"], 0);
        assert_eq!(d["packages"], json!([]));
        assert!(d["unsubscribe_url"].is_null());
        let listed = route(Some("digests"));
        let schedule = every("1h");
        let d = digest_data(&listed, &schedule, schedule.window_at(0), vec![], None);
        assert_eq!(d["unsubscribe_url"], SES_UNSUBSCRIBE_PLACEHOLDER);
    }

    #[test]
    fn packages_come_newest_first_with_their_revisions_newest_first_each_once() {
        let entries = vec![
            entry("a1", "2026-11-29T10:05:00Z", "b", "team/a"),
            entry("b1", "2026-11-29T10:20:00Z", "b", "team/b"),
            // 10:10Z written with an offset: newer than a1, though its string sorts before.
            entry("a2", "2026-11-29T09:10:00-01:00", "b", "team/a"),
            entry("b1", "2026-11-29T10:20:00Z", "b", "team/b"), // recorded twice
            entry("c1", "2026-11-29T10:20:00Z", "a", "team/c"), // ties with b1: bucket first
            entry("d1", "2026-11-29T10:20:00Z", "b", "team/a-other"),
            entry("x1", "not a time", "z", "broken/time"),
        ];
        let d = data(entries, Some("catalog.example.com"));
        assert_eq!(
            handles(&d),
            [
                "a/team/c",
                "b/team/a-other",
                "b/team/b",
                "b/team/a",
                "z/broken/time"
            ]
        );
        assert_eq!(d["events"], 6);
        assert_eq!(d["package_count"], 5);
        let a = &d["packages"][3];
        assert_eq!(a["revisions"], 2);
        assert_eq!(a["more_revisions"], 0);
        // Compared as instants: a2 (10:10Z) is newer than a1 (10:05Z).
        let order: Vec<&Value> = a["revision_list"]
            .as_array()
            .expect("list")
            .iter()
            .map(|r| &r["event_id"])
            .collect();
        assert_eq!(order, [&json!("a2"), &json!("a1")]);
        assert_eq!(a["latest"], a["revision_list"][0]);
        assert_eq!(
            a["revisions_url"],
            "https://catalog.example.com/b/b/packages/team/a/revisions"
        );
        assert_eq!(a["latest"]["short_hash"], "a201234");
        assert_eq!(
            a["latest"]["catalog_url"],
            "https://catalog.example.com/b/b/packages/team/a/tree/a20123456789/"
        );
        for key in [
            "message",
            "files",
            "bytes",
            "added",
            "removed",
            "modified",
            "first_revision",
            "incomplete",
            "type",
            "time",
            "top_hash",
        ] {
            assert!(a["latest"].get(key).is_some(), "latest lacks {key}");
        }
        let without_catalog = data(
            vec![entry("a1", "2026-11-29T10:05:00Z", "b", "team/a")],
            None,
        );
        let p = &without_catalog["packages"][0];
        assert!(p["revisions_url"].is_null() && p["latest"]["catalog_url"].is_null());
    }

    #[test]
    fn a_package_lists_its_ten_newest_revisions_and_counts_them_all() {
        let entries = (0..12)
            .map(|i| {
                entry(
                    &format!("e{i:02}"),
                    &format!("2026-11-29T10:{i:02}:00Z"),
                    "b",
                    "h",
                )
            })
            .collect();
        let d = data(entries, None);
        let p = &d["packages"][0];
        assert_eq!(
            (p["revisions"].clone(), p["more_revisions"].clone()),
            (json!(12), json!(2))
        );
        let list = p["revision_list"].as_array().expect("list");
        assert_eq!(list.len(), MAX_REVISIONS_LISTED);
        assert_eq!(
            (&list[0]["event_id"], &list[9]["event_id"]),
            (&json!("e11"), &json!("e02"))
        );
    }

    #[test]
    fn beyond_500_packages_the_rest_are_only_counted() {
        let entries = (0..=MAX_PACKAGES)
            .map(|i| {
                entry(
                    &format!("e{i}"),
                    "2026-11-29T10:05:00Z",
                    "b",
                    &format!("p/{i:04}"),
                )
            })
            .collect();
        let d = data(entries, None);
        assert_eq!(d["packages"].as_array().map(Vec::len), Some(MAX_PACKAGES));
        assert_eq!(d["package_count"], 501);
        assert_eq!(d["more_packages"], 1);
        assert_eq!(d["events"], 501);
        // Equal times: by bucket, then handle, so the last handle is the one left out.
        assert_eq!(d["packages"][0]["handle"], "p/0000");
        assert_eq!(d["packages"][MAX_PACKAGES - 1]["handle"], "p/0499");
    }
}
