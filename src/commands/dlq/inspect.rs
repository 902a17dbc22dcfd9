//! `quilt-notify dlq inspect`: reads the DLQ without consuming it. It receives with a short
//! visibility timeout, then releases everything it read (visibility 0).
//!
//! SQS messages cannot be annotated, so the worker's record of why a message failed is its log
//! line (same `message_id`: SQS keeps the id when it moves a message to the DLQ). The WHY column
//! is re-derived here by running the body through the same parse, match and render the worker
//! does, with the current configuration, and is labelled as such. The one recorded reason is
//! EventBridge's: when its rule cannot deliver an event to the queue, it parks the event in the
//! DLQ with `ERROR_CODE` and `ERROR_MESSAGE` attributes, and inspect shows those.

use std::collections::HashSet;
use std::time::SystemTime;

use anyhow::Context;
use clap::Args;
use jiff::Timestamp;
use serde_json::json;

use super::Target;
use crate::adapters::aws::admin::{PeekedMessage, SqsAdmin};
use crate::app::CompiledConfig;
use crate::config::Settings;
use crate::domain::event::PackageEvent;
use crate::domain::render::route_data;
use crate::ports::Receipt;

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

/// Lists the DLQ, then releases everything it read. Ok(true): inspect has no failing outcome.
pub(super) async fn run(
    args: &InspectArgs,
    settings: &Settings,
    compiled: Option<&CompiledConfig>,
) -> anyhow::Result<bool> {
    let (sqs, queues) = super::connect(settings, &args.target).await?;
    let before = sqs
        .depth(&queues.dlq_url)
        .await
        .context("reading the DLQ")?;

    let mut receipts: Vec<Receipt> = Vec::new();
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
    receipts: &mut Vec<Receipt>,
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
            receipts.push(message.receipt());
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
    fn of(
        message: &PeekedMessage,
        compiled: Option<&CompiledConfig>,
        catalog: Option<&str>,
    ) -> Self {
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
    compiled: Option<&CompiledConfig>,
    catalog: Option<&str>,
) -> String {
    let Some(compiled) = compiled else {
        return "a valid package event; routes not checked (the configuration's routes or templates do not load)".to_owned();
    };
    let routes: Vec<_> = compiled.routes.matching(event.envelope()).collect();
    if routes.is_empty() {
        return "matches no route now: a worker would delete it as filtered".to_owned();
    }
    // A digest route renders no email per event (its digest is tried at start-up).
    for route in routes.iter().filter(|r| r.digest.is_none()) {
        let data = route_data(route, event, catalog, None);
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

/// RFC 3339 in UTC, whole seconds (truncated).
fn rfc3339(at: SystemTime) -> String {
    Timestamp::try_from(at)
        .and_then(|t| Timestamp::from_second(t.as_second()))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn print_table(
    messages: &[PeekedMessage],
    compiled: Option<&CompiledConfig>,
    catalog: Option<&str>,
) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::render::{Renderer, TemplateSource};
    use crate::domain::route::{RouteSpec, RouteTable};

    const EVENT: &str = include_str!("../../../events/package-revision.json");

    #[test]
    fn sent_at_is_rfc_3339_in_utc_to_the_second() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_714_056_411_999);
        assert_eq!(rfc3339(at), "2024-04-25T14:46:51Z");
        assert_eq!(rfc3339(std::time::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    fn compiled(template_text: &str) -> CompiledConfig {
        let spec = RouteSpec::builder("all").to(&["a@example.com"]).build();
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
        CompiledConfig {
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
