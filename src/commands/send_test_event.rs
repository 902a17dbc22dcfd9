//! `quilt-notify send-test-event`: a production smoke test. Publishes a realistic
//! `package-revision` event (to EventBridge's default bus, which exercises the rule, or straight
//! to the queue), prints its id, and with `--wait` watches the queue drain to say whether the
//! worker took it.
//!
//! Knows the event's shape and how to read the queue's depth; knows nothing of how the worker
//! processes the event (the worker's log line for the printed event id tells that).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::Args;
use jiff::Timestamp;
use serde_json::{json, Value};

use crate::adapters::aws::admin::{Depth, EventBus, NewEvent, SqsAdmin};
use crate::app;
use crate::config::Settings;
use crate::domain::pattern::Pattern;

/// How often `--wait` reads the queue's depth.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// With `--to-bus`, an empty queue means "handled" only after EventBridge had this long to
/// deliver, unless the message was seen in the queue.
const DELIVERY_GRACE: Duration = Duration::from_secs(3);

/// Arguments of `quilt-notify send-test-event`.
#[derive(Debug, Args)]
pub struct SendTestEventArgs {
    /// Configuration file (as for `run`): gives the queue, the endpoints and the region.
    #[arg(short, long, env = "QUILT_NOTIFY_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The package's bucket (`detail.bucket`), e.g. one your routes and rule select.
    #[arg(long, value_name = "B")]
    pub bucket: String,
    /// The package name (`detail.handle`), e.g. `team/dataset`.
    #[arg(long, value_name = "H")]
    pub handle: String,
    /// The revision type (`detail.type`).
    #[arg(long = "type", value_name = "TYPE", default_value = "created")]
    pub kind: String,
    /// Publish to EventBridge's default bus with PutEvents, as a Quilt stack does (the default):
    /// tests the rule too. Needs `events.endpoint_url` locally.
    #[arg(long, conflicts_with = "to_queue")]
    pub to_bus: bool,
    /// Send the event straight to the queue (SendMessage), shaped as EventBridge delivers it:
    /// tests the worker alone.
    #[arg(long)]
    pub to_queue: bool,
    /// Then watch the queue until it is empty again and say whether the worker handled the
    /// event (exit 0) or not (exit 1: still queued, dead-lettered, or never routed). Needs a
    /// quiet queue: other traffic keeps it from draining.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` watches, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
}

/// Publishes the event; with `--wait`, reports what became of it. Ok(false) when `--wait` found
/// it not handled.
///
/// # Errors
/// Invalid configuration, or an SQS or EventBridge call failed.
pub fn run(args: &SendTestEventArgs) -> anyhow::Result<bool> {
    let settings = Settings::load(args.config.as_deref())?;
    super::block_on(send(args, &settings))
}

/// Whether the event will reach the queue, as far as can be told before sending.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Routing {
    /// Sent to the queue itself.
    Direct,
    /// This enabled rule targets the queue and its pattern matches the event.
    RuleMatches(String),
    /// Rules target the queue, but none that is enabled matches.
    NoRuleMatches(Vec<String>),
    /// Could not tell (no rule targets the queue directly, or the rules could not be read).
    Unknown(String),
}

/// What `--wait` found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// The queue is empty again and the event did not reach the DLQ.
    Handled { seen: bool },
    /// The event is in the dead-letter queue.
    DeadLettered,
    /// The queue never held a message, and routing was not confirmed.
    NotSeen(Routing),
    /// Messages were still in the queue at the deadline.
    StillQueued(Depth),
}

async fn send(args: &SendTestEventArgs, settings: &Settings) -> anyhow::Result<bool> {
    let sdk = app::sdk_config(settings).await?;
    let skew = app::skew_watch(settings);
    let sqs = SqsAdmin::new(app::sqs_client(&sdk, settings, &skew));
    let queue_url = settings.queue.url.as_str();
    let facts = sqs
        .facts(queue_url)
        .await
        .with_context(|| format!("reading the queue {queue_url}"))?;
    let envelope = test_event(
        &args.bucket,
        &args.handle,
        &args.kind,
        &facts.arn,
        Timestamp::now(),
    );
    let dlq_url = match &facts.dead_letter_arn {
        Some(arn) => sqs.url_of(arn).await.ok(),
        None => None,
    };
    let dlq_before = match (&dlq_url, args.wait) {
        (Some(url), true) => sqs.depth(url).await.ok(),
        _ => None,
    };

    let (id, routing) = if args.to_queue {
        let id = envelope["id"].as_str().unwrap_or_default().to_owned();
        sqs.send(queue_url, &envelope.to_string())
            .await
            .context("sending the event to the queue")?;
        eprintln!("sent to the queue {queue_url}");
        (id, Routing::Direct)
    } else {
        let bus = EventBus::new(app::events_client(&sdk, settings, &skew));
        let routing = check_rules(&bus, &facts.arn, &envelope).await;
        match &routing {
            Routing::RuleMatches(rule) => {
                eprintln!("rule \"{rule}\" targets the queue and matches this event");
            }
            Routing::NoRuleMatches(rules) => eprintln!(
                "warning: no enabled rule that targets the queue matches this event (rules: {}); it will not arrive",
                rules.join(", ")
            ),
            Routing::Unknown(why) => eprintln!("note: cannot tell whether a rule routes this event to the queue: {why}"),
            Routing::Direct => {}
        }
        let event = NewEvent {
            source: "com.quiltdata".to_owned(),
            detail_type: "package-revision".to_owned(),
            detail: envelope["detail"].to_string(),
            time: SystemTime::now(),
        };
        let id = bus.put(&event).await.with_context(|| {
            if settings.events.endpoint_url.is_none() && settings.queue.endpoint_url.is_some() {
                "publishing to EventBridge (queue.endpoint_url is set but events.endpoint_url is not: \
                 set it too when the queue is emulated, e.g. LocalStack)"
                    .to_owned()
            } else {
                "publishing to EventBridge".to_owned()
            }
        })?;
        eprintln!("published to EventBridge's default bus");
        (id, routing)
    };
    println!("{id}");
    if !args.wait {
        return Ok(true);
    }

    let verdict = wait_for_drain(
        &sqs,
        queue_url,
        dlq_url.as_deref().zip(dlq_before),
        &id,
        &routing,
        Duration::from_secs(args.timeout),
    )
    .await?;
    println!("{}", describe(&verdict, &id, args.timeout));
    Ok(matches!(verdict, Verdict::Handled { .. }))
}

/// A `package-revision` envelope as EventBridge delivers it: a fresh id, now as its time, a
/// random top hash, and the account and region of the queue.
fn test_event(bucket: &str, handle: &str, kind: &str, queue_arn: &str, now: Timestamp) -> Value {
    let mut arn = queue_arn.split(':').skip(3);
    let region = arn.next().filter(|r| !r.is_empty()).unwrap_or("us-east-1");
    let account = arn
        .next()
        .filter(|a| !a.is_empty())
        .unwrap_or("000000000000");
    // Whole seconds, as EventBridge stamps its events.
    let time = Timestamp::from_second(now.as_second())
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string();
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "package-revision",
        "source": "com.quiltdata",
        "account": account,
        "time": time,
        "region": region,
        "resources": [],
        "detail": {
            "version": "0.1",
            "type": kind,
            "bucket": bucket,
            "handle": handle,
            "topHash": random_hex64(),
        }
    })
}

/// 64 random hex digits, the shape of a Quilt top hash.
fn random_hex64() -> String {
    (0..4)
        .map(|_| format!("{:016x}", fastrand::u64(..)))
        .collect()
}

/// Checks the rules that target the queue against the event with this program's own
/// EventBridge pattern engine.
async fn check_rules(bus: &EventBus, queue_arn: &str, envelope: &Value) -> Routing {
    let rules = match bus.rules_targeting(queue_arn).await {
        Ok(rules) => rules,
        Err(e) => return Routing::Unknown(e.to_string()),
    };
    if rules.is_empty() {
        return Routing::Unknown(
            "no rule on the default bus targets the queue directly".to_owned(),
        );
    }
    for rule in rules.iter().filter(|r| r.enabled) {
        let Some(text) = &rule.pattern else { continue };
        let Ok(pattern) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        if Pattern::compile(&pattern).is_ok_and(|p| p.matches(envelope)) {
            return Routing::RuleMatches(rule.name.clone());
        }
    }
    Routing::NoRuleMatches(rules.into_iter().map(|r| r.name).collect())
}

/// Watches the queue until it is empty on two reads in a row (after the message was seen, or
/// after the delivery grace), then checks the DLQ for the event.
async fn wait_for_drain(
    sqs: &SqsAdmin,
    queue_url: &str,
    dlq: Option<(&str, Depth)>,
    id: &str,
    routing: &Routing,
    timeout: Duration,
) -> anyhow::Result<Verdict> {
    let started = Instant::now();
    let mut seen = false;
    let mut empty_reads = 0;
    loop {
        let depth = sqs
            .depth(queue_url)
            .await
            .context("reading the queue's depth")?;
        if depth.total() > 0 {
            seen = true;
            empty_reads = 0;
        } else {
            empty_reads += 1;
        }
        let delivered = seen || *routing == Routing::Direct || started.elapsed() >= DELIVERY_GRACE;
        if empty_reads >= 2 && delivered {
            break;
        }
        if started.elapsed() >= timeout {
            return Ok(Verdict::StillQueued(depth));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    if let Some((dlq_url, before)) = dlq {
        let after = sqs
            .depth(dlq_url)
            .await
            .context("reading the DLQ's depth")?;
        if after.total() > before.total() && in_queue(sqs, dlq_url, id).await {
            return Ok(Verdict::DeadLettered);
        }
    }
    Ok(match routing {
        Routing::Direct | Routing::RuleMatches(_) => Verdict::Handled { seen },
        _ if seen => Verdict::Handled { seen },
        other => Verdict::NotSeen(other.clone()),
    })
}

/// Whether a message whose body mentions `id` is in the queue: a few peeks (visibility 0, so
/// nothing is hidden from anyone).
async fn in_queue(sqs: &SqsAdmin, url: &str, id: &str) -> bool {
    for _ in 0..3 {
        match sqs.receive(url, 10, 1, 0).await {
            Ok(messages) if messages.iter().any(|m| m.body.contains(id)) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

fn describe(verdict: &Verdict, id: &str, timeout: u64) -> String {
    match verdict {
        Verdict::Handled { seen: true } => format!(
            "handled: the message came and went; the worker deleted it (sent or filtered: its log line with event_id={id} says which)"
        ),
        Verdict::Handled { seen: false } => format!(
            "handled: the queue is empty and the event is not in the DLQ; the worker took it between two reads (its log line with event_id={id} says what it did)"
        ),
        Verdict::DeadLettered => format!(
            "not handled: the event is in the dead-letter queue; the worker failed it (see `quilt-notify dlq inspect` and the log line with event_id={id})"
        ),
        Verdict::NotSeen(Routing::NoRuleMatches(rules)) => format!(
            "not routed: the queue never held a message, and no rule targeting it ({}) matches this event",
            rules.join(", ")
        ),
        Verdict::NotSeen(routing) => format!(
            "unconfirmed: the queue never held a message during the wait; the rule may not route this event here ({})",
            match routing {
                Routing::Unknown(why) => why.as_str(),
                _ => "routing unknown",
            }
        ),
        Verdict::StillQueued(depth) => format!(
            "not handled within {timeout}s: {} message(s) waiting, {} in flight (being worked on, or hidden for a retry backoff); is a worker running?",
            depth.visible, depth.in_flight
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::PackageEvent;

    #[test]
    fn the_test_event_is_a_package_event_from_the_queues_account_and_region() {
        let now = Timestamp::from_second(1_714_056_411).expect("time");
        let event = test_event(
            "my-bucket",
            "team/data",
            "created",
            "arn:aws:sqs:eu-west-1:123456789012:quilt-notify",
            now,
        );
        let parsed = PackageEvent::parse(&event.to_string()).expect("a package event");
        assert_eq!(parsed.bucket(), "my-bucket");
        assert_eq!(parsed.handle(), "team/data");
        assert_eq!(parsed.kind(), "created");
        assert_eq!(parsed.time(), "2024-04-25T14:46:51Z");
        assert_eq!(event["account"], "123456789012");
        assert_eq!(event["region"], "eu-west-1");
        assert_eq!(event["source"], "com.quiltdata");
        assert_eq!(event["detail-type"], "package-revision");
        let hash = parsed.top_hash();
        assert_eq!(hash.len(), 64);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{hash}");
    }

    #[test]
    fn each_test_event_has_a_fresh_version_4_uuid_as_its_id() {
        let now = Timestamp::UNIX_EPOCH;
        let id = |event: Value| event["id"].as_str().map(str::to_owned).expect("an id");
        let a = id(test_event("b", "h", "created", "", now));
        let b = id(test_event("b", "h", "created", "", now));
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).expect("a UUID");
        assert_eq!(parsed.get_version(), Some(uuid::Version::Random));
        assert_eq!(parsed.hyphenated().to_string(), a, "lower-case, hyphenated");
    }

    #[test]
    fn only_a_handled_event_reads_as_handled() {
        let text = describe(&Verdict::Handled { seen: true }, "e-1", 60);
        assert!(text.starts_with("handled"), "{text}");
        let text = describe(&Verdict::DeadLettered, "e-1", 60);
        assert!(
            text.starts_with("not handled") && text.contains("dlq inspect"),
            "{text}"
        );
        let text = describe(
            &Verdict::StillQueued(Depth {
                visible: 1,
                in_flight: 0,
            }),
            "e-1",
            60,
        );
        assert!(text.contains("within 60s"), "{text}");
    }
}
