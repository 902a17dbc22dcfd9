//! What start-up and `validate` check before anything runs: every route's pattern compiles, every
//! template renders the built-in sample event (and a digest of it), with and without details.

use anyhow::Context;

use crate::config::Settings;
use crate::domain::changes::TableChanges;
use crate::domain::details::Details;
use crate::domain::digest::{digest_data, DigestEntry};
use crate::domain::event::PackageEvent;
use crate::domain::render::{route_data, Renderer};
use crate::domain::route::{Route, RouteTable};
use crate::domain::schedule::{Schedule, Window};

/// A built-in sample event, used to try every template once at start-up.
const SAMPLE_EVENT: &str = include_str!("../../events/package-revision.json");
/// The details of a real quilt3 revision with changes, tried with every template that shows
/// details (see `events/README.md`).
const SAMPLE_DETAILS: &str = include_str!("../../events/package-details.json");

/// The built-in sample details.
///
/// # Errors
/// Only if the file compiled into the binary is not the documented shape (a test checks it).
pub fn sample_details() -> anyhow::Result<Details> {
    let value: serde_json::Value =
        serde_json::from_str(SAMPLE_DETAILS).context("built-in sample details")?;
    Details::from_json(&value).context("built-in sample details")
}

/// Routes and templates, compiled and loaded: everything `validate` checks.
pub struct CompiledConfig {
    /// The compiled routes.
    pub routes: RouteTable,
    /// The loaded templates.
    pub renderer: Renderer,
    /// Problems that do not stop start-up (a template that fails on the sample event may still
    /// work on real ones), one line each, naming the route.
    pub warnings: Vec<String>,
}

/// Compiles every route pattern and loads every template the routes name.
///
/// # Errors
/// The first route or template that is invalid, named.
pub fn compile(settings: &Settings) -> anyhow::Result<CompiledConfig> {
    let mut routes = RouteTable::compile(&settings.routes)?;
    let renderer = crate::config::templates::load_dir(
        &settings.templates.dir,
        routes.routes().iter().map(|r| r.template.as_str()),
    )
    .with_context(|| format!("templates in {}", settings.templates.dir.display()))?;
    let sample = PackageEvent::parse(SAMPLE_EVENT).context("built-in sample event")?;
    let details = sample_details()?;
    // Details as they come: with changes, a first revision, and a manifest that was not read
    // whole (`changes` then has an `error` and null counts).
    let first = Details {
        changes: None,
        ..details.clone()
    };
    let mut incomplete = Details {
        package: details
            .package
            .clone()
            .failed("the manifest could not be read to the end"),
        ..details.clone()
    };
    if let Some(changes) = &mut incomplete.changes {
        changes.diff = Err("the current revision's manifest was not read whole".to_owned());
    }
    let mut with_tables = details.clone();
    if let Some(changes) = &mut with_tables.changes {
        changes.tables = Some(sample_tables());
    }
    let variants = [with_tables, details, first, incomplete];
    let host = settings.catalog.host.as_deref();
    let mut warnings = Vec::new();
    for route in routes.routes() {
        if let Some(schedule) = &route.digest {
            warnings.extend(try_digest(
                &renderer, route, schedule, &sample, &variants, host,
            ));
            continue;
        }
        // Details may be missing for any event (s3.details off, a store that failed), so a
        // template must render both without and with them.
        let mut cases = vec![None];
        if route.details && settings.s3.details {
            cases.extend(variants.iter().map(Some));
        }
        for case in cases {
            let data = route_data(route, &sample, host, case);
            if let Err(e) = renderer.render(&route.template, data) {
                let which = match case.map(|d| (d.changes.is_none(), d.incomplete().is_some())) {
                    None => "without package details",
                    Some((true, _)) => "as a first revision",
                    Some((_, true)) => "with incomplete package details",
                    Some(_) => "with package details",
                };
                warnings.push(format!(
                    "route \"{}\": template \"{}\" fails on the sample package event {which}: {e}",
                    route.name, route.template
                ));
            }
        }
    }
    routes.narrow_tables(&settings.routes, |template| {
        renderer.may_use_tables(template)
    });
    Ok(CompiledConfig {
        routes,
        renderer,
        warnings,
    })
}

/// Sample `changes.tables`, for trying templates: a Parquet file with every kind of column
/// change, an added CSV, and a table that could not be read.
pub fn sample_tables() -> TableChanges {
    use crate::domain::table::{Column, Table, TableChange, TableError, TableFormat};
    let column = |name: &str, data_type: Option<&str>| Column {
        name: name.to_owned(),
        data_type: data_type.map(str::to_owned),
    };
    let readings = |rows, columns| Table {
        columns,
        rows: Some(rows),
    };
    let changes = [
        TableChange {
            path: "data/readings.parquet".to_owned(),
            format: TableFormat::Parquet,
            before: Some(Ok(readings(
                1200,
                vec![
                    column("time", Some("timestamp(ms, utc)")),
                    column("value", Some("int32")),
                    column("note", Some("string")),
                ],
            ))),
            after: Ok(readings(
                1300,
                vec![
                    column("time", Some("timestamp(ms, utc)")),
                    column("value", Some("double")),
                    column("station_id", Some("int64")),
                ],
            )),
        },
        TableChange {
            path: "data/stations.csv".to_owned(),
            format: TableFormat::Csv { gzip: false },
            before: None,
            after: Ok(readings(
                40,
                vec![
                    column("id", None),
                    column("name", None),
                    column("lat", None),
                ],
            )),
        },
        TableChange {
            path: "data/broken.parquet".to_owned(),
            format: TableFormat::Parquet,
            before: None,
            after: Err(TableError::NotParquet("no PAR1 at its end".to_owned())),
        },
    ];
    TableChanges {
        entries: changes.iter().map(TableChange::to_json).collect(),
        more: 0,
    }
}

/// Tries a digest route's template on a digest of the sample event: alone without details, and
/// beside revisions with each kind of details. The problem, if any, naming the route.
fn try_digest(
    renderer: &Renderer,
    route: &Route,
    schedule: &Schedule,
    sample: &PackageEvent,
    variants: &[Details],
    host: Option<&str>,
) -> Option<String> {
    let window = sample
        .timestamp()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(Window { start: 0, end: 0 }, |d| {
            schedule.window_at(i64::try_from(d.as_secs()).unwrap_or(0))
        });
    let mut entries = vec![DigestEntry::new(sample, None)];
    for (i, details) in variants.iter().enumerate() {
        let mut entry = DigestEntry::new(sample, Some(details));
        entry.event_id = format!("{}-{i}", entry.event_id);
        entries.push(entry);
    }
    let cases = [vec![entries[0].clone()], entries];
    for entries in cases {
        let data = digest_data(route, schedule, window, entries, host);
        if let Err(e) = renderer.render(&route.template, data) {
            return Some(format!(
                "route \"{}\": digest template \"{}\" fails on a digest of the sample package event: {e}",
                route.name, route.template
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::domain::pattern::Pattern;

    /// `compile` of routes using `template` (written to a temporary templates directory, its
    /// three parts as given) and `package_pattern`.
    fn uses_tables(parts: [&str; 3], package_pattern: Option<&str>, details: bool) -> bool {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let templates = dir.path().join("templates/t");
        std::fs::create_dir_all(&templates).expect("mkdir");
        for (name, text) in ["subject.hbs", "html.hbs", "text.hbs"].iter().zip(parts) {
            std::fs::write(templates.join(name), text).expect("write template");
        }
        let pattern = package_pattern.map_or(String::new(), |p| format!("package_pattern = '{p}'"));
        let config = format!(
            "[queue]\nurl = \"http://127.0.0.1:9/0/q\"\n[ses]\nfrom = \"a@example.com\"\n\
             [[routes]]\nname = \"r\"\ntemplate = \"t\"\nto = [\"b@example.com\"]\n\
             pattern = {{ source = [\"com.quiltdata\"] }}\ndetails = {details}\n{pattern}\n"
        );
        let path = dir.path().join("config.toml");
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(config.as_bytes()))
            .expect("write config");
        let settings =
            Settings::load_with_env(Some(&path), Some(Default::default())).expect("settings");
        compile(&settings)
            .expect("compiles")
            .routes
            .any_reads_tables()
    }

    #[test]
    fn tables_are_read_only_when_a_route_template_or_package_pattern_mentions_them() {
        let plain = ["{{handle}}", "<p>{{changes.added.count}}</p>", "{{bucket}}"];
        assert!(!uses_tables(plain, None, true));
        let shown = ["s", "h", "{{#each changes.tables}}{{path}}{{/each}}"];
        assert!(uses_tables(shown, None, true));
        // A template that is never given details cannot show them.
        assert!(!uses_tables(shown, None, false));
        let pattern =
            r#"{"changes": {"tables": {"columns": {"removed": {"name": [{"exists": true}]}}}}}"#;
        assert!(uses_tables(plain, Some(pattern), true));
        let other = r#"{"package": {"user_meta": {"stage": ["prod"]}}}"#;
        assert!(!uses_tables(plain, Some(other), true));
    }

    /// The two `package_pattern`s docs/templates.md shows for tables.
    fn documented() -> [(&'static str, Value); 2] {
        [
            (
                "removed",
                json!({"changes": {"tables": {"columns": {"removed": {"name": [{"exists": true}]}}}}}),
            ),
            (
                "removed or retyped",
                json!({"changes": {"tables": {"columns": {"$or": [
                    {"removed": {"name": [{"exists": true}]}},
                    {"retyped": {"name": [{"exists": true}]}}
                ]}}}}),
            ),
        ]
    }

    fn details_with(entries: Vec<Value>) -> Value {
        let mut details = sample_details().expect("sample");
        if let Some(changes) = details.changes.as_mut() {
            changes.tables = Some(TableChanges { entries, more: 0 });
        }
        details.pattern_input()
    }

    #[test]
    fn the_documented_table_patterns_match_only_schema_breaking_revisions() {
        let sample = sample_tables().entries;
        let retyped_only = {
            let mut entry = sample[0].clone();
            entry["columns"]["removed"] = json!([]);
            entry
        };
        let appended_only = {
            let mut entry = sample[0].clone();
            entry["columns"]["removed"] = json!([]);
            entry["columns"]["retyped"] = json!([]);
            entry
        };
        let cases = [
            (sample.clone(), [true, true]),
            (vec![retyped_only, sample[1].clone()], [false, true]),
            (
                vec![appended_only, sample[1].clone(), sample[2].clone()],
                [false, false],
            ),
            (vec![], [false, false]),
        ];
        for (entries, expected) in cases {
            let input = details_with(entries);
            for ((name, pattern), want) in documented().into_iter().zip(expected) {
                let pattern = Pattern::compile(&pattern).expect("compiles");
                assert_eq!(
                    pattern.matches(&input),
                    want,
                    "{name}: {}",
                    input["changes"]["tables"]
                );
            }
        }
        // Tables not read (null): no match.
        let mut unread = sample_details().expect("sample").pattern_input();
        unread["changes"]["tables"] = Value::Null;
        for (name, pattern) in documented() {
            let pattern = Pattern::compile(&pattern).expect("compiles");
            assert!(!pattern.matches(&unread), "{name}");
        }
    }
}
