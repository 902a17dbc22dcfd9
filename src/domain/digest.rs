//! Digests: what a digest route keeps of one event until its window closes ([`DigestEntry`]),
//! and the data its template sees when the window is sent ([`digest_data`]). When windows close
//! is [`schedule`](super::schedule)'s business; where the entries are kept, and when a closed
//! window is sent, the worker's.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::catalog::CatalogLinks;
use super::cut;
use super::details::Details;
use super::event::PackageEvent;
use super::render::SES_UNSUBSCRIBE_PLACEHOLDER;
use super::route::Route;
use super::schedule::{Schedule, Window};

/// Most packages listed in one digest; the rest are only counted (`more_packages`), so one
/// window of a busy bucket cannot make an email SES refuses (10 MB).
pub const MAX_PACKAGES: usize = 500;

/// Most revisions listed per package (`revision_list`); `revisions` counts them all.
pub const MAX_REVISIONS_LISTED: usize = 10;

/// Most characters of a commit message kept per entry, "…" included, so that an entry stays a
/// small item in the store whatever the message.
pub const MAX_MESSAGE_CHARS: usize = 300;

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
    /// Rows added across the table files that changed (`changes.tables`, see
    /// [`TableChanges::rows_delta`](super::changes::TableChanges::rows_delta)); None when the
    /// tables were not read or no row count is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_delta: Option<i64>,
    /// Table files added or modified (`changes.tables` and `changes.tables_more`), when read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<u64>,
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
        let tables = details
            .and_then(|d| d.changes.as_ref())
            .filter(|c| c.diff.is_ok())
            .and_then(|c| c.tables.as_ref());
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
            rows_delta: tables.and_then(|t| t.rows_delta()),
            tables: tables.map(|t| t.entries.len() as u64 + t.more),
            // Incomplete details cannot tell a first revision from an unread history.
            first_revision: details.is_some_and(|d| d.changes.is_none()) && !incomplete,
            incomplete,
        }
    }
}

/// An entry and its time as an instant, parsed once for sorting.
struct Timed {
    at: Option<Timestamp>,
    entry: DigestEntry,
}

/// Newest first by time: by instant where the times parse, equal instants by the time as
/// written (descending). A time that does not parse counts as older than any that does (among
/// themselves, by the text), which keeps the order total: `sort_by` may panic on one that is
/// not. Equal times stay equal: the caller breaks those ties.
fn newest_first_by_time(a: &Timed, b: &Timed) -> Ordering {
    (b.at, &b.entry.time).cmp(&(a.at, &a.entry.time))
}

/// Revisions of a package: [`newest_first_by_time`], equal times by event id (ascending), so
/// the order never depends on the order the entries were recorded in.
fn newest_first_by_time_then_event_id(a: &Timed, b: &Timed) -> Ordering {
    newest_first_by_time(a, b).then_with(|| a.entry.event_id.cmp(&b.entry.event_id))
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
        revisions.sort_by(newest_first_by_time_then_event_id);
    }
    packages.sort_by(|(key_a, a), (key_b, b)| match (a.first(), b.first()) {
        (Some(a), Some(b)) => newest_first_by_time(a, b).then_with(|| key_a.cmp(key_b)),
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
    // Summed over the window's revisions that know them.
    let sum = |field: fn(&DigestEntry) -> Option<i64>| {
        revisions
            .iter()
            .filter_map(|t| field(&t.entry))
            .reduce(i64::saturating_add)
    };
    json!({
        "bucket": bucket,
        "handle": handle,
        "rows_delta": sum(|e| e.rows_delta),
        "tables": sum(|e| e.tables.map(|n| i64::try_from(n).unwrap_or(i64::MAX))),
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
        "rows_delta": entry.rows_delta,
        "tables": entry.tables,
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
    use crate::domain::schedule::DigestSpec;

    fn instant(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().expect("RFC 3339").as_second()
    }

    fn every(text: &str) -> Schedule {
        Schedule::parse(&DigestSpec {
            every: Some(text.to_owned()),
            ..DigestSpec::default()
        })
        .expect("valid every")
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
                tables: None,
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
    fn a_package_shows_the_row_delta_of_its_table_changes_in_the_window() {
        let with_tables = |rows: &[(Option<i64>, Option<i64>, &str)]| {
            let mut d = details();
            if let Some(changes) = d.changes.as_mut() {
                changes.tables = Some(crate::domain::changes::TableChanges {
                    entries: rows
                        .iter()
                        .map(|(before, after, status)| {
                            json!({"status": status, "rows": {"before": before, "after": after}})
                        })
                        .collect(),
                    more: 1,
                });
            }
            d
        };
        let at = |id: &str, time: &str, d: Option<&Details>| {
            DigestEntry::new(&event(id, time, "b", "team/demo", id), d)
        };
        let first = with_tables(&[(Some(100), Some(130), "modified"), (None, Some(5), "added")]);
        let second = with_tables(&[(Some(130), Some(120), "modified"), (None, None, "added")]);
        let e1 = at("e1", "2026-11-29T10:01:00Z", Some(&first));
        assert_eq!((e1.rows_delta, e1.tables), (Some(35), Some(3)));
        let e2 = at("e2", "2026-11-29T10:02:00Z", Some(&second));
        assert_eq!((e2.rows_delta, e2.tables), (Some(-10), Some(3)));
        // Tables not read: nothing known, nothing stored.
        let e3 = at("e3", "2026-11-29T10:03:00Z", Some(&details()));
        assert_eq!((e3.rows_delta, e3.tables), (None, None));

        let d = data(vec![e1, e2, e3], None);
        let package = &d["packages"][0];
        assert_eq!(package["rows_delta"], 25);
        assert_eq!(package["tables"], 6);
        assert_eq!(package["latest"]["rows_delta"], Value::Null);
        assert_eq!(package["revision_list"][1]["rows_delta"], -10);

        let d = data(vec![at("e4", "2026-11-29T10:04:00Z", None)], None);
        assert_eq!(d["packages"][0]["rows_delta"], Value::Null);
        assert_eq!(d["packages"][0]["tables"], Value::Null);
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
    }

    // --- Digest data -----------------------------------------------------------------------

    fn route(topic: Option<&str>) -> Route {
        let spec = RouteSpec::builder("hourly")
            .no_template()
            .to(&["a@b.c"])
            .digest(json!({"every": "1h"}));
        let spec = match topic {
            Some(topic) => spec.topic(topic),
            None => spec,
        };
        Route::compile(&spec.build()).expect("route")
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
