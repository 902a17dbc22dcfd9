//! `quilt-notify state`: the shared state table (`state.table`) for an operator. `state create`
//! makes it (idempotent); `state` (or `state show`) prints the digest windows waiting to be sent
//! and the latest claims, or one event's claims with `--event`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::app;
use crate::aws::admin::{ClaimRow, PendingWindow, StateAdmin};
use crate::config::Settings;
use crate::worker::claims::now_ms;

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
    /// Print the digest windows waiting to be sent (route, window, events, who is sending it)
    /// and the latest claims (time, route, event, status, owner, SES message id). Needs
    /// dynamodb:Query and dynamodb:Scan.
    Show(ShowArgs),
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

/// Runs a `state` sub-command; Ok(true) when it did what was asked.
///
/// # Errors
/// Invalid configuration, no table configured, or a DynamoDB call failed.
pub fn run(args: &StateArgs) -> anyhow::Result<bool> {
    let config = match &args.command {
        Some(StateCommand::Create(create)) => create.config.as_deref(),
        Some(StateCommand::Show(show)) => show.config.as_deref(),
        None => args.show.config.as_deref(),
    };
    let settings = Settings::load(config)?;
    let table = settings.state.table.clone().context(
        "state.table is not set: name the DynamoDB table (or set QUILT_NOTIFY__STATE__TABLE)",
    )?;
    super::block_on(async {
        let sdk = app::sdk_config(&settings).await?;
        let admin = StateAdmin::new(
            app::dynamodb_client(&sdk, &settings, &app::skew_watch(&settings)),
            &table,
        );
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
            Some(StateCommand::Show(show)) => show_state(&admin, &settings, &table, show).await,
            None => show_state(&admin, &settings, &table, &args.show).await,
        }
    })
}

async fn show_state(
    admin: &StateAdmin,
    settings: &Settings,
    table: &str,
    args: &ShowArgs,
) -> anyhow::Result<bool> {
    let now = now_ms();
    if let Some(event_id) = &args.event {
        let claims = admin.event_claims(event_id).await?;
        println!("table {table}: claims of event {event_id}");
        print_claims(&claims, now);
        return Ok(true);
    }
    let digest_routes: Vec<&str> = settings
        .routes
        .iter()
        .filter(|r| r.digest.is_some())
        .map(|r| r.name.as_str())
        .collect();
    let mut pending: Vec<PendingWindow> = Vec::new();
    for route in &digest_routes {
        pending.extend(admin.pending(route).await?);
    }
    println!("table {table}");
    if digest_routes.is_empty() {
        println!("\nno digest routes in this configuration");
    } else if pending.is_empty() {
        println!("\npending digest windows: none");
    } else {
        println!("\npending digest windows ({}):", pending.len());
        let rows: Vec<Vec<String>> = pending
            .iter()
            .map(|p| {
                vec![
                    p.route.clone(),
                    format!(
                        "{} – {}",
                        utc(p.window.start * 1000),
                        utc(p.window.end * 1000)
                    ),
                    p.events.to_string(),
                    window_status(p, now),
                ]
            })
            .collect();
        print_table(&["route", "window (UTC)", "events", "status"], &rows);
    }
    let (claims, scanned) = admin.recent_claims(args.claims, args.scan_limit).await?;
    println!(
        "\nlatest claims ({} shown, from {scanned} items scanned):",
        claims.len()
    );
    print_claims(&claims, now);
    Ok(true)
}

/// `open`, `sending (owner, lease Ns left)`, or `lease expired (owner)`: the window waits for
/// the next task to take it over.
fn window_status(pending: &PendingWindow, now_ms: i64) -> String {
    match &pending.claim {
        None => {
            if pending.window.end * 1000 <= now_ms {
                "closed, waiting for a task".to_owned()
            } else {
                "open".to_owned()
            }
        }
        Some(claim) if claim.status == "claimed" && claim.lease_until_ms > now_ms => format!(
            "sending ({}, lease {}s left)",
            claim.owner,
            (claim.lease_until_ms - now_ms) / 1000
        ),
        Some(claim) if claim.status == "claimed" => {
            format!("lease ended ({}): the next task takes it over", claim.owner)
        }
        Some(claim) => claim.status.clone(),
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
