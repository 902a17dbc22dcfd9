//! `quilt-notify render`: shows exactly what would be sent for an event, without sending, with
//! the package details read as the worker reads them (from S3, or from local manifest files).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::adapters::memory::store::MemoryStore;
use crate::app;
use crate::config::Settings;
use crate::domain::details::{Decision, Details};
use crate::domain::digest::{digest_data, DigestEntry};
use crate::domain::event::PackageEvent;
use crate::domain::manifest::ManifestLimits;
use crate::domain::recipients::Selection;
use crate::domain::render::route_data;
use crate::domain::revision::{manifest_key, pointers_prefix};
use crate::domain::route::Route;
use crate::ports::{DetailsWanted, DynDetailsSource, PackageStore};
use crate::worker::details::{CacheLimits, DetailsReader};

/// Arguments of `quilt-notify render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Configuration file (as for `run`).
    #[arg(short, long, env = "QUILT_NOTIFY_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The event: a file holding an SQS message body (EventBridge envelope, or SNS-wrapped),
    /// or `-` for standard input.
    #[arg(short, long, value_name = "FILE", required_unless_present = "digest")]
    pub event: Option<PathBuf>,
    /// Preview the digest of digest routes (`digest = …`) from a file of events (`-`: standard
    /// input): a JSON array of EventBridge envelopes, or one per line. Each digest route gets the
    /// events its pattern matches (with `--route`, all of them), in the window of the newest.
    /// No package details are read.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["event", "manifest", "previous"])]
    pub digest: Option<PathBuf>,
    /// Render only this route, even if its patterns do not match the event.
    #[arg(short, long, value_name = "NAME")]
    pub route: Option<String>,
    /// Write `<DIR>/<route>/{subject.txt,index.html,body.txt}` to open in a browser, instead of
    /// printing the subject and text part.
    #[arg(short, long, value_name = "DIR", conflicts_with = "data")]
    pub out: Option<PathBuf>,
    /// Print each route's template data (the JSON every template variable comes from, see
    /// docs/templates.md) instead of the email.
    #[arg(long)]
    pub data: bool,
    /// Take the package details from this local manifest (JSON Lines, as quilt3 writes to
    /// `.quilt/packages/<top hash>`) instead of reading the event's manifest from S3. Its
    /// README is not fetched.
    #[arg(long, value_name = "FILE", conflicts_with = "no_details")]
    pub manifest: Option<PathBuf>,
    /// With `--manifest`: the previous revision's manifest, so that `changes` is filled in.
    #[arg(long, value_name = "FILE", requires = "manifest")]
    pub previous: Option<PathBuf>,
    /// Read no package details: `package` and `changes` are null, as with `s3.details = false`.
    #[arg(long)]
    pub no_details: bool,
}

/// Renders every matching route (or the named one) and prints or writes the result. Details
/// that cannot be read now (S3 unreachable) are left out with a note, as a preview should still
/// show the email.
///
/// # Errors
/// Invalid configuration, unreadable or invalid event, unknown route, or a template that fails
/// on this event (the message names the template file, line and
/// variable).
pub fn run(args: &RenderArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args.config.as_deref())?;
    let compiled = app::compile(&settings)?;
    if let Some(events) = &args.digest {
        return render_digests(args, &settings, &compiled, events);
    }
    let Some(path) = &args.event else {
        anyhow::bail!("give an event (--event FILE) or a file of events (--digest FILE)");
    };
    let event = PackageEvent::parse(&read_input(path)?).context("the event")?;

    let routes: Vec<&Route> = match &args.route {
        Some(name) => {
            let route = compiled
                .routes
                .routes()
                .iter()
                .find(|r| &r.name == name)
                .with_context(|| format!("no route named \"{name}\""))?;
            if !route.pattern.matches(event.envelope()) {
                eprintln!(
                    "note: route \"{name}\" does not match this event (first mismatch at `{}`); rendering anyway",
                    route.pattern.first_mismatch(event.envelope()).unwrap_or_default()
                );
            }
            vec![route]
        }
        None => compiled.routes.matching(event.envelope()).collect(),
    };
    if routes.is_empty() {
        println!("no route matches this event: nothing would be sent");
        return Ok(());
    }
    let details = if routes.iter().any(|r| r.needs_details()) {
        read_details(args, &settings, &event)?
    } else {
        None
    };

    for route in routes {
        if let Some(schedule) = &route.digest {
            let now = jiff::Timestamp::now().as_second();
            eprintln!(
                "note: route \"{}\" is a digest ({}): this event would be recorded for the window {}; preview the digest with --digest FILE",
                route.name,
                schedule.describe(),
                schedule.label(schedule.window_at(now))
            );
            continue;
        }
        match route.decide(details.as_ref()) {
            Decision::Send => {}
            Decision::SkipUnchanged => {
                eprintln!("note: route \"{}\": this revision has its predecessor's top hash and the route skips unchanged revisions (skip_unchanged); nothing would be sent", route.name);
            }
            Decision::Filtered => eprintln!(
                "note: route \"{}\": its package_pattern does not match these details; nothing would be sent",
                route.name
            ),
            Decision::Unevaluable(reason) => eprintln!(
                "note: route \"{}\": {reason}; the worker would fail this route permanently (DLQ)",
                route.name
            ),
        }
        let package = details.as_ref().map(Details::package_json);
        let addressees = route.addressees(package.as_ref());
        if let Some(selection) = &addressees.selection {
            print_drops(&route.name, route.max_recipients, selection);
        }
        if addressees.nobody {
            eprintln!(
                "note: route \"{}\": nobody is left to receive it (to_from names no allowed address); nothing would be sent",
                route.name
            );
        }
        let to: Vec<&str> = addressees.to.iter().map(|a| a.as_str()).collect();
        let data = route_data(
            route,
            &event,
            settings.catalog.host.as_deref(),
            details.as_ref(),
        );
        if args.data {
            println!("{}", serde_json::to_string_pretty(&data)?);
            continue;
        }
        let email = compiled
            .renderer
            .render(&route.template, data)
            .with_context(|| format!("route \"{}\"", route.name))?;
        show(args, route, &to, &email)?;
    }
    Ok(())
}

/// Prints an email (or writes it under `--out`).
fn show(
    args: &RenderArgs,
    route: &Route,
    to: &[&str],
    email: &crate::domain::render::RenderedEmail,
) -> anyhow::Result<()> {
    match &args.out {
        Some(dir) => {
            let dir = dir.join(&route.name);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (file, text) in [
                ("subject.txt", &email.subject),
                ("index.html", &email.html),
                ("body.txt", &email.text),
            ] {
                let path = dir.join(file);
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!(
                "route \"{}\": {}",
                route.name,
                dir.join("index.html").display()
            );
        }
        None => {
            println!("=== route \"{}\" → {}", route.name, to.join(", "));
            let copies = |list: &[crate::domain::route::EmailAddress]| {
                list.iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if !route.recipients.cc.is_empty() {
                println!("Cc: {}", copies(&route.recipients.cc));
            }
            if !route.recipients.bcc.is_empty() {
                println!("Bcc: {}", copies(&route.recipients.bcc));
            }
            println!("Subject: {}\n", email.subject);
            println!("{}", email.text);
        }
    }
    Ok(())
}

/// A file's text, or standard input's for `-`.
fn read_input(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// The events of a `--digest` file: a JSON array, or one JSON value per line.
fn parse_events(text: &str) -> anyhow::Result<Vec<PackageEvent>> {
    let values: Vec<serde_json::Value> = match serde_json::from_str(text) {
        Ok(serde_json::Value::Array(values)) => values,
        Ok(value) => vec![value],
        Err(_) => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| {
                serde_json::from_str(line).with_context(|| format!("line {}: not JSON", i + 1))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            PackageEvent::from_envelope(value).with_context(|| format!("event {}", i + 1))
        })
        .collect()
}

/// `render --digest`: the digest each digest route would send for these events.
fn render_digests(
    args: &RenderArgs,
    settings: &Settings,
    compiled: &app::CompiledConfig,
    path: &Path,
) -> anyhow::Result<()> {
    let events = parse_events(&read_input(path)?)?;
    let digests: Vec<&Route> = compiled
        .routes
        .routes()
        .iter()
        .filter(|r| r.digest.is_some())
        .filter(|r| args.route.as_ref().is_none_or(|name| &r.name == name))
        .collect();
    if digests.is_empty() {
        match &args.route {
            Some(name) => {
                anyhow::bail!("no digest route named \"{name}\" (a route with `digest = …`)")
            }
            None => anyhow::bail!("no route of this configuration is a digest (`digest = …`)"),
        }
    }
    for route in digests {
        let Some(schedule) = &route.digest else {
            continue;
        };
        let matching: Vec<&PackageEvent> = events
            .iter()
            .filter(|e| args.route.is_some() || route.pattern.matches(e.envelope()))
            .collect();
        if matching.is_empty() {
            eprintln!(
                "note: route \"{}\": none of the {} events matches its pattern; an empty window sends nothing",
                route.name,
                events.len()
            );
            continue;
        }
        let newest = matching
            .iter()
            .filter_map(|e| e.time().parse::<jiff::Timestamp>().ok())
            .max()
            .unwrap_or_else(jiff::Timestamp::now);
        let window = schedule.window_at(newest.as_second());
        eprintln!(
            "note: route \"{}\": {} of {} events, in the window {} ({})",
            route.name,
            matching.len(),
            events.len(),
            schedule.label(window),
            schedule.describe()
        );
        let entries = matching.iter().map(|e| DigestEntry::new(e, None)).collect();
        let data = digest_data(
            route,
            schedule,
            window,
            entries,
            settings.catalog.host.as_deref(),
        );
        if args.data {
            println!("{}", serde_json::to_string_pretty(&data)?);
            continue;
        }
        let email = compiled
            .renderer
            .render(&route.template, data)
            .with_context(|| format!("route \"{}\"", route.name))?;
        let to: Vec<&str> = route.recipients.to.iter().map(|a| a.as_str()).collect();
        show(args, route, &to, &email)?;
    }
    Ok(())
}

/// Every address `to_from` dropped, with why, as notes on stderr.
fn print_drops(route: &str, max_recipients: usize, selection: &Selection) {
    for dropped in &selection.dropped {
        eprintln!(
            "note: route \"{route}\": to_from drops {}: {}",
            dropped.value, dropped.reason
        );
    }
    let unquoted = selection.dropped_count - selection.dropped.len();
    if unquoted > 0 {
        eprintln!("note: route \"{route}\": to_from drops {unquoted} more");
    }
    if selection.over_limit > 0 {
        eprintln!(
            "note: route \"{route}\": to_from drops {} over max_recipients ({max_recipients})",
            selection.over_limit
        );
    }
}

/// The reader, reading table files from S3 unless `s3.tables = false`. A preview reads them
/// whatever the routes use, so that `--data` shows `changes.tables`.
fn with_tables<S: PackageStore>(reader: DetailsReader<S>, settings: &Settings) -> DetailsReader<S> {
    match settings.s3.table_settings() {
        Some(tables) => reader.with_tables(tables),
        None => reader,
    }
}

/// The details the worker would read: from local files with `--manifest`, none with
/// `--no-details` or `s3.details = false`, otherwise from S3 as configured.
fn read_details(
    args: &RenderArgs,
    settings: &Settings,
    event: &PackageEvent,
) -> anyhow::Result<Option<Details>> {
    if args.no_details || (!settings.s3.details && args.manifest.is_none()) {
        return Ok(None);
    }
    let limits = ManifestLimits {
        max_entries: settings.s3.max_manifest_entries,
        ..ManifestLimits::default()
    };
    let host = settings.catalog.host.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let source: Arc<dyn DynDetailsSource> = match &args.manifest {
        Some(manifest) => {
            let store = local_store(event, manifest, args.previous.as_deref())?;
            // Local manifests only: the table files they name are on S3, not read.
            Arc::new(DetailsReader::new(store, limits, CacheLimits::NONE, host))
        }
        None => {
            let sdk = runtime.block_on(app::sdk_config(settings))?;
            let store = crate::adapters::aws::s3::S3Store::new(app::s3_client(
                &sdk,
                settings,
                &app::skew_watch(settings),
            ));
            Arc::new(with_tables(
                DetailsReader::new(store, limits, CacheLimits::NONE, host),
                settings,
            ))
        }
    };
    match runtime.block_on(source.details(event, DetailsWanted::ALL)) {
        Ok(details) => Ok(Some(details)),
        // The worker would retry; a preview goes on without them, and says so.
        Err(e) => {
            eprintln!(
                "note: cannot read the package details now ({e}); rendering without them (as with --no-details). Preview with local manifests: --manifest FILE [--previous FILE]"
            );
            Ok(None)
        }
    }
}

/// The two manifests laid out as quilt3 lays a package out in its bucket, under the event's
/// top hash and, for the previous one, its file name when that is a top hash (as in quilt3's
/// local registry, `~/.local/share/Quilt/packages/<top hash>`).
fn local_store(
    event: &PackageEvent,
    manifest: &Path,
    previous: Option<&Path>,
) -> anyhow::Result<MemoryStore> {
    let read = |path: &Path| {
        std::fs::read(path).with_context(|| format!("reading manifest {}", path.display()))
    };
    let store = MemoryStore::new(0);
    let bucket = event.bucket();
    let pointers = pointers_prefix(event.handle());
    store.put(bucket, &manifest_key(event.top_hash()), read(manifest)?);
    store.put(bucket, &format!("{pointers}2"), event.top_hash());
    if let Some(path) = previous {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .unwrap_or_else(|| {
                eprintln!(
                    "note: {} is not named by its top hash; changes.previous_top_hash shows zeros",
                    path.display()
                );
                "0".repeat(64)
            });
        store.put(bucket, &manifest_key(&stem), read(path)?);
        store.put(bucket, &format!("{pointers}1"), stem);
    }
    Ok(store)
}
