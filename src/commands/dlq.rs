//! `quilt-notify dlq inspect` and `quilt-notify dlq redrive`: the dead-letter queue runbook's
//! two tools.
//!
//! `inspect` reads the DLQ without consuming it: it receives with a short visibility timeout,
//! then releases everything it read (visibility 0). SQS messages cannot be annotated, so the
//! worker's record of why a message failed is its log line (same `message_id`: SQS keeps the id
//! when it moves a message to the DLQ). The WHY column is re-derived here by running the body
//! through the same parse, match and render the worker does, with the current configuration,
//! and is labelled as such. The one recorded reason is EventBridge's: when its rule cannot
//! deliver an event to the queue, it parks the event in the DLQ with `ERROR_CODE` and
//! `ERROR_MESSAGE` attributes, and inspect shows those.
//!
//! `redrive` moves the messages back to the source queue with SQS `StartMessageMoveTask`, and
//! when that is refused or the task ends FAILED (as on some emulators), by hand: receive from
//! the DLQ, send the same body to the queue, delete from the DLQ.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::app::{self, Compiled};
use crate::aws::admin::{MoveTaskStatus, PeekedMessage, SqsAdmin};
use crate::config::Settings;
use crate::domain::event::PackageEvent;
use crate::domain::render::template_data;

/// Arguments of `quilt-notify dlq`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    /// What to do with the dead-letter queue.
    #[command(subcommand)]
    pub command: DlqCommand,
}

/// The `dlq` sub-commands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List the DLQ's messages without consuming them: message id, event id, bucket, handle,
    /// receive count, when first sent, and why it failed: re-derived from the body with the
    /// current configuration (the worker's log line with the same message_id is the record), or
    /// the error EventBridge recorded when its rule could not deliver the event.
    /// Messages are hidden from other readers while being listed (`--hold-seconds`), then
    /// released.
    Inspect(InspectArgs),
    /// Move the DLQ's messages back to the source queue, for the worker to try again (fix the
    /// cause first). Uses SQS StartMessageMoveTask; if SQS refuses it or the task fails, moves
    /// them by receive, send, delete. Progress on the terminal, a summary at the end; exits 1 if
    /// anything was left behind or sent twice.
    Redrive(RedriveArgs),
}

/// Which queues: the configuration's queue and its DLQ.
#[derive(Debug, Args)]
pub struct Target {
    /// Configuration file (as for `run`): gives the source queue, endpoint and region.
    #[arg(short, long, env = "QUILT_NOTIFY_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The DLQ's URL. Default: the queue's RedrivePolicy `deadLetterTargetArn`.
    #[arg(long, value_name = "URL")]
    pub dlq_url: Option<String>,
}

/// Arguments of `quilt-notify dlq inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Which queues.
    #[command(flatten)]
    pub target: Target,
    /// List at most this many messages.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
    /// One JSON object per message instead of a table, with the body (to feed `render -e -`).
    #[arg(long)]
    pub json: bool,
    /// Seconds each message stays hidden while the listing runs; if inspect is killed, that is
    /// how long the messages stay hidden. Must outlast the listing (about 1 s per 10 messages).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub hold_seconds: u32,
}

/// How `redrive` moves messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// StartMessageMoveTask, falling back to moving by hand if it is refused or fails.
    Auto,
    /// StartMessageMoveTask only.
    Task,
    /// Receive, send, delete only.
    Manual,
}

/// Arguments of `quilt-notify dlq redrive`.
#[derive(Debug, Args)]
pub struct RedriveArgs {
    /// Which queues.
    #[command(flatten)]
    pub target: Target,
    /// How to move the messages.
    #[arg(long, value_enum, default_value_t = Method::Auto)]
    pub method: Method,
    /// Seconds to wait for a move task to finish (it goes on in SQS after that).
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub timeout: u64,
    /// Move at most this many messages by hand (default: as many as the DLQ held at the start,
    /// so messages that fail again and return meanwhile are not moved in a loop).
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
}

/// Runs a `dlq` sub-command. Ok(false) when a redrive left messages behind or sent some twice.
///
/// # Errors
/// Invalid configuration, no DLQ to be found, or an SQS call failed.
pub fn run(args: &DlqArgs) -> anyhow::Result<bool> {
    match &args.command {
        DlqCommand::Inspect(inspect) => {
            let settings = Settings::load(inspect.target.config.as_deref())?;
            // Routes and templates only sharpen the WHY column; inspect works without them.
            let compiled = app::compile(&settings).ok();
            super::block_on(run_inspect(inspect, &settings, compiled.as_ref()))
        }
        DlqCommand::Redrive(redrive) => {
            let settings = Settings::load(redrive.target.config.as_deref())?;
            super::block_on(run_redrive(redrive, &settings))
        }
    }
}

/// The source queue and its DLQ.
struct Queues {
    queue_url: String,
    queue_arn: String,
    dlq_url: String,
    dlq_arn: String,
}

async fn resolve(sqs: &SqsAdmin, settings: &Settings, target: &Target) -> anyhow::Result<Queues> {
    let queue_url = settings.queue.url.clone();
    let facts = sqs
        .facts(&queue_url)
        .await
        .with_context(|| format!("reading the queue {queue_url}"))?;
    let (dlq_url, dlq_arn) = match &target.dlq_url {
        Some(url) => {
            let dlq = sqs
                .facts(url)
                .await
                .with_context(|| format!("reading the DLQ {url}"))?;
            (url.clone(), dlq.arn)
        }
        None => {
            let arn = facts.dead_letter_arn.with_context(|| {
                format!("the queue {queue_url} has no redrive policy naming a DLQ: pass --dlq-url")
            })?;
            let url = sqs
                .url_of(&arn)
                .await
                .with_context(|| format!("finding the DLQ {arn}"))?;
            (url, arn)
        }
    };
    if dlq_arn == facts.arn {
        anyhow::bail!("the DLQ {dlq_url} is the queue itself: pass the dead-letter queue's URL");
    }
    Ok(Queues {
        queue_url,
        queue_arn: facts.arn,
        dlq_url,
        dlq_arn,
    })
}

async fn run_inspect(
    args: &InspectArgs,
    settings: &Settings,
    compiled: Option<&Compiled>,
) -> anyhow::Result<bool> {
    let sdk = app::sdk_config(settings).await?;
    let sqs = SqsAdmin::new(app::sqs_client(&sdk, settings));
    let queues = resolve(&sqs, settings, &args.target).await?;
    let before = sqs
        .depth(&queues.dlq_url)
        .await
        .context("reading the DLQ")?;

    let mut receipts = Vec::new();
    let listed = list(&sqs, &queues.dlq_url, args, before.visible, &mut receipts).await;
    // Whatever happened, give back what was read.
    let unreleased = sqs.release(&queues.dlq_url, &receipts).await;
    let messages = listed?;

    let catalog = settings.catalog.host.as_deref();
    if args.json {
        for message in &messages {
            let row = Row::of(message, compiled, catalog);
            println!(
                "{}",
                json!({
                    "message_id": message.message_id,
                    "event_id": row.event_id,
                    "bucket": row.bucket,
                    "handle": row.handle,
                    "receive_count": message.receive_count.saturating_sub(1),
                    "sent_at": message.sent_at.map(rfc3339),
                    "dead_letter_source": message.dead_letter_source,
                    "why": row.why,
                    "why_is": if row.recorded { "recorded" } else { "re-derived" },
                    "body": message.body,
                })
            );
        }
    } else {
        print_table(&messages, compiled, catalog);
    }
    eprintln!(
        "{} message(s) listed from {} (about {} there, {} in flight before); nothing consumed: all released again",
        messages.len(),
        queues.dlq_url,
        before.visible,
        before.in_flight
    );
    match unreleased {
        Ok(0) => {}
        Ok(n) => eprintln!(
            "warning: {n} message(s) could not be released; they reappear after {} s",
            args.hold_seconds
        ),
        Err(e) => eprintln!(
            "warning: releasing failed ({e}); the messages reappear after {} s",
            args.hold_seconds
        ),
    }
    Ok(true)
}

/// Receives until `limit` distinct messages, or until the DLQ has nothing more to give;
/// collects every receipt handle for the release.
async fn list(
    sqs: &SqsAdmin,
    dlq_url: &str,
    args: &InspectArgs,
    visible_before: u64,
    receipts: &mut Vec<String>,
) -> anyhow::Result<Vec<PeekedMessage>> {
    let mut messages = Vec::new();
    let mut ids = HashSet::new();
    let mut empty = 0;
    while messages.len() < args.limit {
        let want = u8::try_from((args.limit - messages.len()).min(10)).unwrap_or(10);
        let batch = sqs
            .receive(dlq_url, want, 1, args.hold_seconds.max(1))
            .await
            .context("receiving from the DLQ")?;
        if batch.is_empty() {
            empty += 1;
            // Approximate counts lag: one more try unless everything counted was seen.
            if empty >= 2 || messages.len() as u64 >= visible_before {
                break;
            }
            continue;
        }
        empty = 0;
        for message in batch {
            receipts.push(message.receipt_handle.clone());
            if ids.insert(message.message_id.clone()) && messages.len() < args.limit {
                messages.push(message);
            }
        }
    }
    Ok(messages)
}

/// One line of the listing.
struct Row {
    event_id: Option<String>,
    bucket: Option<String>,
    handle: Option<String>,
    why: String,
    /// Whether `why` was recorded by EventBridge (true) or re-derived here (false).
    recorded: bool,
}

impl Row {
    fn of(message: &PeekedMessage, compiled: Option<&Compiled>, catalog: Option<&str>) -> Self {
        let recorded = message
            .rule_error
            .as_ref()
            .map(|e| format!("the EventBridge rule could not deliver it to the queue: {e}"));
        let event = match PackageEvent::parse(&message.body) {
            Ok(event) => event,
            Err(e) => {
                return Self {
                    event_id: None,
                    bucket: None,
                    handle: None,
                    recorded: recorded.is_some(),
                    why: recorded.unwrap_or_else(|| format!("permanent (invalid_event): {e}")),
                }
            }
        };
        Self {
            event_id: Some(event.id().to_owned()),
            bucket: Some(event.bucket().to_owned()),
            handle: Some(event.handle().to_owned()),
            recorded: recorded.is_some(),
            why: recorded.unwrap_or_else(|| why_for_event(&event, compiled, catalog)),
        }
    }
}

/// What the worker would make of a well-formed event today.
fn why_for_event(
    event: &PackageEvent,
    compiled: Option<&Compiled>,
    catalog: Option<&str>,
) -> String {
    let Some(compiled) = compiled else {
        return "a valid package event; routes not checked (the configuration's routes or templates do not load)".to_owned();
    };
    let routes: Vec<_> = compiled.routes.matching(event.envelope()).collect();
    if routes.is_empty() {
        return "matches no route now: a worker would delete it as filtered".to_owned();
    }
    for route in &routes {
        let data = template_data(event, catalog, &route.name);
        if let Err(e) = compiled.renderer.render(&route.template, data) {
            return format!("permanent (render): route \"{}\": {e}", route.name);
        }
    }
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    format!(
        "no permanent cause now (routes {} render): a transient failure (SES unreachable, throttled) or an address SES rejected; the log line with this message_id says which",
        names.join(", ")
    )
}

fn rfc3339(at: SystemTime) -> String {
    OffsetDateTime::from(at)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn print_table(messages: &[PeekedMessage], compiled: Option<&Compiled>, catalog: Option<&str>) {
    let header = [
        "MESSAGE ID",
        "EVENT ID",
        "BUCKET",
        "HANDLE",
        "RECEIVES",
        "FIRST SENT",
        "WHY (re-derived unless recorded)",
    ];
    let rows: Vec<[String; 7]> = messages
        .iter()
        .map(|m| {
            let row = Row::of(m, compiled, catalog);
            let dash = || "-".to_owned();
            [
                m.message_id.clone(),
                row.event_id.unwrap_or_else(dash),
                row.bucket.unwrap_or_else(dash),
                row.handle.unwrap_or_else(dash),
                m.receive_count.saturating_sub(1).to_string(),
                m.sent_at.map(rfc3339).unwrap_or_else(dash),
                row.why,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text
    };
    println!("{}", line(&header.map(str::to_owned)));
    for row in &rows {
        println!("{}", line(row));
    }
    if !rows.is_empty() {
        println!("(RECEIVES: times received before this inspection. WHY: re-derived from the body with the current configuration, except a reason EventBridge recorded on an event it could not deliver)");
    }
}

/// A progress line on stderr, redrawn in place; silent when stderr is not a terminal.
struct Progress {
    on: bool,
    drawn: bool,
}

impl Progress {
    fn new() -> Self {
        Self {
            on: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    fn show(&mut self, text: &str) {
        if self.on {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{text}\x1b[K");
            let _ = err.flush();
            self.drawn = true;
        }
    }

    fn done(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

/// How a move task ended.
enum TaskEnd {
    Completed(u64),
    Failed(String, u64),
    Cancelled(u64),
    StillRunning(u64),
}

/// Totals of a redrive.
#[derive(Default)]
struct Summary {
    by_task: u64,
    by_hand: u64,
    send_failed: u64,
    delete_failed: u64,
}

async fn run_redrive(args: &RedriveArgs, settings: &Settings) -> anyhow::Result<bool> {
    let sdk = app::sdk_config(settings).await?;
    let sqs = SqsAdmin::new(app::sqs_client(&sdk, settings));
    let queues = resolve(&sqs, settings, &args.target).await?;
    let start = sqs
        .depth(&queues.dlq_url)
        .await
        .context("reading the DLQ")?;
    if start.total() == 0 {
        println!("the DLQ {} is empty: nothing to redrive", queues.dlq_url);
        return Ok(true);
    }
    eprintln!(
        "redriving about {} message(s) ({} in flight) from {} to {}",
        start.total(),
        start.in_flight,
        queues.dlq_url,
        queues.queue_url
    );
    let mut progress = Progress::new();
    let mut summary = Summary::default();
    let fallback = match args.method {
        Method::Manual => Some("--method manual".to_owned()),
        Method::Auto | Method::Task => {
            match sqs
                .start_move_task(&queues.dlq_arn, &queues.queue_arn)
                .await
            {
                Ok(_) => {
                    let end =
                        watch_task(&sqs, &queues.dlq_arn, args.timeout, &mut progress).await?;
                    progress.done();
                    match end {
                        TaskEnd::Completed(moved) => {
                            summary.by_task = moved;
                            None
                        }
                        TaskEnd::Failed(reason, moved) => {
                            summary.by_task = moved;
                            Some(format!("StartMessageMoveTask ended FAILED ({reason})"))
                        }
                        TaskEnd::Cancelled(moved) => {
                            println!(
                                "the move task was cancelled after moving about {moved} message(s)"
                            );
                            return Ok(false);
                        }
                        TaskEnd::StillRunning(moved) => {
                            println!(
                                "the move task is still running after {} s ({moved} moved so far); it goes on in SQS (see ListMessageMoveTasks)",
                                args.timeout
                            );
                            return Ok(false);
                        }
                    }
                }
                Err(e) => Some(format!(
                    "StartMessageMoveTask was refused ({}: {})",
                    e.code, e.message
                )),
            }
        }
    };
    if let Some(reason) = &fallback {
        if args.method == Method::Task {
            println!("redrive failed: {reason}; nothing more was moved (--method task)");
            return Ok(false);
        }
        eprintln!("{reason}: moving the messages by receive, send, delete instead");
        let left = sqs
            .depth(&queues.dlq_url)
            .await
            .context("reading the DLQ")?;
        let cap = args.max.unwrap_or(start.total().max(left.total()));
        move_by_hand(&sqs, &queues, cap, &mut summary, &mut progress).await?;
        progress.done();
    }

    let moved = summary.by_task + summary.by_hand;
    let how = match (&fallback, summary.by_task) {
        (None, _) => "with StartMessageMoveTask".to_owned(),
        (Some(reason), 0) => format!("by receive, send, delete (fallback: {reason})"),
        (Some(reason), n) => format!(
            "{n} by the move task, {} by receive, send, delete (fallback: {reason})",
            summary.by_hand
        ),
    };
    println!(
        "redrive: moved {moved} message(s) from {} to {} {how}",
        queues.dlq_url, queues.queue_url
    );
    if summary.send_failed > 0 {
        println!(
            "{} message(s) could not be sent to the queue and stay in the DLQ",
            summary.send_failed
        );
    }
    if summary.delete_failed > 0 {
        println!(
            "{} message(s) were sent but could not be deleted from the DLQ: they are in both queues; the worker drops the second delivery as a duplicate within its dedupe window",
            summary.delete_failed
        );
    }
    if let Ok(after) = sqs.depth(&queues.dlq_url).await {
        println!(
            "the DLQ now holds about {} message(s) ({} in flight)",
            after.total(),
            after.in_flight
        );
    }
    Ok(summary.send_failed == 0 && summary.delete_failed == 0)
}

/// Polls the most recent move task once a second until it ends or `timeout` seconds pass.
async fn watch_task(
    sqs: &SqsAdmin,
    dlq_arn: &str,
    timeout: u64,
    progress: &mut Progress,
) -> anyhow::Result<TaskEnd> {
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let task = sqs
            .latest_move_task(dlq_arn)
            .await
            .context("reading the move task")?;
        let Some(task) = task else {
            if started.elapsed() > Duration::from_secs(timeout) {
                return Ok(TaskEnd::StillRunning(0));
            }
            continue;
        };
        match task.status {
            MoveTaskStatus::Completed => return Ok(TaskEnd::Completed(task.moved)),
            MoveTaskStatus::Failed(reason) => return Ok(TaskEnd::Failed(reason, task.moved)),
            MoveTaskStatus::Cancelled => return Ok(TaskEnd::Cancelled(task.moved)),
            MoveTaskStatus::Running | MoveTaskStatus::Other(_) => {
                let of = task.to_move.map(|n| format!(" of {n}")).unwrap_or_default();
                progress.show(&format!("move task: {}{of} moved", task.moved));
                if started.elapsed() > Duration::from_secs(timeout) {
                    return Ok(TaskEnd::StillRunning(task.moved));
                }
            }
        }
    }
}

/// Receive, send, delete until the DLQ gives nothing on two receives in a row or `cap`
/// messages were handled.
async fn move_by_hand(
    sqs: &SqsAdmin,
    queues: &Queues,
    cap: u64,
    summary: &mut Summary,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let mut empty = 0;
    let mut handled = 0;
    while handled < cap && empty < 2 {
        let want = u8::try_from((cap - handled).min(10)).unwrap_or(10);
        let batch = sqs
            .move_batch(&queues.dlq_url, &queues.queue_url, want, 30)
            .await
            .context("moving messages by hand")?;
        if batch.received == 0 {
            empty += 1;
            continue;
        }
        empty = 0;
        handled += batch.received as u64;
        summary.by_hand += batch.moved as u64;
        summary.send_failed += batch.send_failed as u64;
        summary.delete_failed += batch.delete_failed as u64;
        progress.show(&format!(
            "moved by hand: {} of about {cap}",
            summary.by_hand
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::render::{Renderer, TemplateSource};
    use crate::domain::route::{RouteSpec, RouteTable};

    const EVENT: &str = include_str!("../../events/package-revision.json");

    fn compiled(template_text: &str) -> Compiled {
        let spec: RouteSpec = serde_json::from_value(json!({
            "name": "all", "template": "t", "to": ["a@example.com"],
            "pattern": {"source": ["com.quiltdata"]}
        }))
        .expect("spec");
        let mut renderer = Renderer::new();
        renderer
            .add(
                "t",
                &TemplateSource {
                    subject: "s".into(),
                    html: "h".into(),
                    text: template_text.into(),
                },
            )
            .expect("template");
        Compiled {
            routes: RouteTable::compile(&[spec]).expect("routes"),
            renderer,
            warnings: Vec::new(),
        }
    }

    fn message(body: &str) -> PeekedMessage {
        PeekedMessage {
            message_id: "m-1".into(),
            receipt_handle: "r".into(),
            body: body.into(),
            receive_count: 4,
            sent_at: None,
            dead_letter_source: None,
            rule_error: None,
        }
    }

    #[test]
    fn why_is_re_derived_the_way_the_worker_decides() {
        let ok = compiled("{{handle}}");
        let row = Row::of(&message("not json"), Some(&ok), None);
        assert!(
            row.why
                .starts_with("permanent (invalid_event): body is not JSON"),
            "{}",
            row.why
        );
        assert_eq!(row.event_id, None);

        let row = Row::of(&message(EVENT), Some(&ok), None);
        assert_eq!(
            row.event_id.as_deref(),
            Some("6425eb6a-9627-e6a1-2ae8-9d2d8883dc74")
        );
        assert_eq!(row.handle.as_deref(), Some("some/package"));
        assert!(row.why.starts_with("no permanent cause now"), "{}", row.why);

        let broken = compiled("{{no_such_field}}");
        let row = Row::of(&message(EVENT), Some(&broken), None);
        assert!(
            row.why.starts_with("permanent (render): route \"all\""),
            "{}",
            row.why
        );

        let elsewhere = EVENT.replace("com.quiltdata", "com.other");
        let row = Row::of(&message(&elsewhere), Some(&ok), None);
        assert!(row.why.contains("filtered"), "{}", row.why);

        let row = Row::of(&message(EVENT), None, None);
        assert!(row.why.contains("routes not checked"), "{}", row.why);
        assert!(!row.recorded);

        let mut parked = message(EVENT);
        parked.rule_error = Some("SQS.AccessDenied: not allowed".into());
        let row = Row::of(&parked, Some(&ok), None);
        assert!(row.recorded);
        assert_eq!(
            row.why,
            "the EventBridge rule could not deliver it to the queue: SQS.AccessDenied: not allowed"
        );
    }
}
