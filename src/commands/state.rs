//! `quilt-notify state`: the shared state table (`state.table`) for an operator. `state create`
//! makes it (idempotent); `state` (or `state show`) prints the digest windows waiting to be sent
//! (failed and orphaned ones marked) and the latest claims, or one event's claims with
//! `--event`; `state retry` makes failed windows sendable again, or hands a route's windows to
//! another route.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::adapters::aws::admin::{claim_row, ClaimRow, StateAdmin};
use crate::app;
use crate::config::Settings;
use crate::ports::SortKeys;
use crate::worker::claims::now_ms;
use crate::worker::state::{StateStore, WindowStatus};

/// Arguments of `quilt-notify state`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct StateArgs {
    /// What to do; `show` when none is given.
    #[command(subcommand)]
    pub command: Option<StateCommand>,
    /// `show`'s arguments, when no sub-command is given.
    #[command(flatten)]
    pub show: ShowArgs,
}

/// The `state` sub-commands.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Create the table `state.table` unless it exists: on-demand capacity, key pk (S) + sk
    /// (S), TTL on `expires_at`; wait until it is active and turn TTL on unless it is. For
    /// compose, scripts/run-local, the tests, and accounts without the CloudFormation stack
    /// (which creates its own). Needs dynamodb:CreateTable, DescribeTable, DescribeTimeToLive
    /// and UpdateTimeToLive.
    Create(CreateArgs),
    /// Print the digest windows waiting to be sent (route, window, events, status: open, due,
    /// sending, lease ended, failed with its reason, retry; `orphaned` for a route the config
    /// no longer has) and the latest claims (time, route, event, status, owner, SES message
    /// id). Needs dynamodb:Query, dynamodb:GetItem and dynamodb:Scan.
    Show(ShowArgs),
    /// Make the failed digest windows of a route sendable again: the next digest check sends
    /// them in one digest. With --as, hand every window of a route (failed or waiting; e.g. a
    /// route that was renamed or removed) to another route, whose template and recipients
    /// send them. Needs dynamodb:Query, UpdateItem, PutItem and DeleteItem.
    Retry(RetryArgs),
}

/// Arguments of `quilt-notify state create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Configuration file (as for `run`): `state.table`, its endpoint and the region.
    #[arg(short, long, env = "QUILT_NOTIFY_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Arguments of `quilt-notify state show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Configuration file (as for `run`): `state.table`, the digest routes, endpoint and region.
    #[arg(short, long, env = "QUILT_NOTIFY_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Show this event's claims (one per route) instead of the latest ones.
    #[arg(long, value_name = "EVENT_ID")]
    pub event: Option<String>,
    /// How many of the latest claims to print.
    #[arg(long, default_value_t = 20)]
    pub claims: usize,
    /// Read at most about this many items to find the latest claims: a Scan reads the table in
    /// key-hash order, so on a larger table the claims shown are the latest of a sample.
    #[arg(long, default_value_t = 10_000)]
    pub scan_limit: usize,
}

/// Arguments of `quilt-notify state retry`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Configuration file (as for `run`): `state.table`, the digest routes, endpoint and region.
    #[arg(short, long, env = "QUILT_NOTIFY_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The route whose windows to retry (as `state` lists it).
    #[arg(long, value_name = "NAME")]
    pub route: String,
    /// Hand the route's windows to this digest route of the configuration instead.
    #[arg(long = "as", value_name = "NEW")]
    pub to: Option<String>,
}

/// Runs a `state` sub-command; Ok(true) when it did what was asked.
///
/// # Errors
/// Invalid configuration, no table configured, or a DynamoDB call failed.
pub fn run(args: &StateArgs) -> anyhow::Result<bool> {
    let config = match &args.command {
        Some(StateCommand::Create(create)) => create.config.as_deref(),
        Some(StateCommand::Show(show)) => show.config.as_deref(),
        Some(StateCommand::Retry(retry)) => retry.config.as_deref(),
        None => args.show.config.as_deref(),
    };
    let settings = Settings::load(config)?;
    let table = settings.state.table.clone().context(
        "state.table is not set: name the DynamoDB table (or set QUILT_NOTIFY__STATE__TABLE)",
    )?;
    super::block_on(async {
        let sdk = app::sdk_config(&settings).await?;
        let skew = app::skew_watch(&settings);
        let admin = StateAdmin::new(app::dynamodb_client(&sdk, &settings, &skew), &table);
        // The worker's item lifetime, so windows `state retry` lists expire with their events.
        let ttl = app::claim_ttl(&sdk, &settings, &skew).await.duration();
        let store =
            app::state_store(&sdk, &settings, ttl, &skew).context("state.table is not set")?;
        match &args.command {
            Some(StateCommand::Create(_)) => {
                let created = admin.create().await?;
                let what = match (created.table, created.ttl) {
                    (true, _) => "created, with TTL on expires_at",
                    (false, true) => "exists; TTL on expires_at turned on",
                    (false, false) => "exists, with TTL on expires_at: nothing to do",
                };
                println!("table {table}: {what}");
                Ok(true)
            }
            Some(StateCommand::Show(show)) => {
                show_state(&admin, &store, &settings, &table, show).await
            }
            Some(StateCommand::Retry(retry)) => retry_windows(&store, &settings, retry).await,
            None => show_state(&admin, &store, &settings, &table, &args.show).await,
        }
    })
}

async fn retry_windows(
    store: &StateStore,
    settings: &Settings,
    args: &RetryArgs,
) -> anyhow::Result<bool> {
    let digest = |name: &str| {
        settings
            .routes
            .iter()
            .any(|r| r.name == name && r.digest.is_some())
    };
    if let Some(to) = &args.to {
        anyhow::ensure!(
            digest(to),
            "--as {to:?}: no digest route of that name in the configuration"
        );
    }
    let changed = store.retry(&args.route, args.to.as_deref()).await?;
    match (&args.to, changed) {
        (_, 0) if args.to.is_none() => {
            println!("route {}: no failed digest windows", args.route);
        }
        (Some(to), 0) => println!("route {}: no digest windows to hand to {to}", args.route),
        (Some(to), n) => println!(
            "route {}: {n} digest window(s) handed to route {to}; its next digest check sends them in one digest",
            args.route
        ),
        (None, n) => println!(
            "route {}: {n} failed digest window(s) sendable again; the next digest check sends them in one digest",
            args.route
        ),
    }
    Ok(true)
}

async fn show_state(
    admin: &StateAdmin,
    store: &StateStore,
    settings: &Settings,
    table: &str,
    args: &ShowArgs,
) -> anyhow::Result<bool> {
    let now = now_ms();
    if let Some(event_id) = &args.event {
        let items = store
            .table()
            .query(&format!("send#{event_id}"), SortKeys::Prefix(""))
            .await?;
        let claims: Vec<ClaimRow> = items
            .iter()
            .map(|item| claim_row(item, event_id.clone()))
            .collect();
        println!("table {table}: claims of event {event_id}");
        print_claims(&claims, now);
        return Ok(true);
    }
    let configured: Vec<String> = settings
        .routes
        .iter()
        .filter(|r| r.digest.is_some())
        .map(|r| r.name.clone())
        .collect();
    let mut routes = configured.clone();
    for known in store.digest_routes().await? {
        if !routes.contains(&known) {
            routes.push(known);
        }
    }
    let windows = store.windows(&routes, now).await?;
    println!("table {table}");
    if routes.is_empty() {
        println!("\nno digest routes in this configuration, and no digest windows in the table");
    } else if windows.is_empty() {
        println!("\npending digest windows: none");
    } else {
        println!("\npending digest windows ({}):", windows.len());
        let rows: Vec<Vec<String>> = windows
            .iter()
            .map(|view| {
                let p = &view.pending;
                let mut route = p.route.clone();
                if p.source != p.route {
                    route.push_str(&format!(" (from {})", p.source));
                }
                if !configured.contains(&p.route) {
                    route.push_str(" [orphaned]");
                }
                vec![
                    route,
                    format!(
                        "{} – {}",
                        utc(p.window.start * 1000),
                        utc(p.window.end * 1000)
                    ),
                    view.events.to_string(),
                    window_status(&view.status, now),
                ]
            })
            .collect();
        print_table(&["route", "window (UTC)", "events", "status"], &rows);
        if windows
            .iter()
            .any(|w| !configured.contains(&w.pending.route))
        {
            println!("\n  [orphaned]: the configuration has no such route, so nothing sends these windows;\n  `quilt-notify state retry --route OLD --as NEW` hands them to a digest route");
        }
        if windows
            .iter()
            .any(|w| matches!(w.status, WindowStatus::Failed { .. }))
        {
            println!("\n  failed: `quilt-notify state retry --route NAME` sends them again, in one digest");
        }
    }
    let (claims, scanned) = admin.recent_claims(args.claims, args.scan_limit).await?;
    println!(
        "\nlatest claims ({} shown, from {scanned} items scanned):",
        claims.len()
    );
    print_claims(&claims, now);
    Ok(true)
}

/// What an operator reads of a window's status.
fn window_status(status: &WindowStatus, now_ms: i64) -> String {
    match status {
        WindowStatus::Open => "open".to_owned(),
        WindowStatus::Due => "closed, waiting for a task".to_owned(),
        WindowStatus::Sending { owner, until_ms } => format!(
            "sending ({owner}, lease {}s left)",
            (until_ms - now_ms) / 1000
        ),
        WindowStatus::LeaseEnded { owner } => {
            format!("lease ended ({owner}): the next task takes it over")
        }
        WindowStatus::Failed { error } => format!("failed: {error}"),
        WindowStatus::Retry => "retry: the next digest check sends it".to_owned(),
    }
}

fn print_claims(claims: &[ClaimRow], now_ms: i64) {
    if claims.is_empty() {
        println!("  none");
        return;
    }
    let rows: Vec<Vec<String>> = claims
        .iter()
        .map(|c| {
            let status = if c.status == "claimed" && c.lease_until_ms <= now_ms {
                "claimed (lease ended)".to_owned()
            } else {
                c.status.clone()
            };
            vec![
                utc(c.at_ms),
                c.route.clone(),
                c.subject.clone(),
                status,
                c.owner.clone(),
                c.ses_message_id.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "time (UTC)",
            "route",
            "event",
            "status",
            "owner",
            "SES message id",
        ],
        &rows,
    );
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("  {}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Unix milliseconds as `2026-11-29 09:00:00`.
fn utc(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(
        |_| ms.to_string(),
        |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
    )
}
