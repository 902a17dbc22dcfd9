//! What the worker counts about itself, and the two ways it is exported: Prometheus text (the
//! `/metrics` endpoint) and CloudWatch Embedded Metric Format lines (metrics from logs, no agent).
//!
//! Owns the metric names, the fixed histogram buckets and both text formats. Recording is a few
//! relaxed atomic adds, so the hot path never takes a lock. Knows nothing of HTTP, of stdout or of
//! when a line is written: the health listener and the app's reporter task decide that.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};

use super::outcome::Outcome;
use crate::ports::FailureKind;

/// A monotonic count. The per-outcome counters follow the `outcome` log field, so for settled
/// batches `received = sent + filtered + duplicate + failed_* + released`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Messages received from the queue; a message received three times counts three.
    Received,
    /// Messages whose every matched route was sent (`outcome=sent`).
    Sent,
    /// Messages that matched no route, deleted unsent (`outcome=filtered`).
    Filtered,
    /// Messages whose event id was handled before, deleted unsent (`outcome=duplicate`).
    Duplicate,
    /// Transient failures (network, 5xx, timeout): retried after a backoff.
    FailedTransient,
    /// SES throttling: retried after a backoff, sending slowed down.
    FailedThrottled,
    /// Permanent failures (bad body, template, rejected address): released towards the DLQ.
    FailedPermanent,
    /// The SES account cannot send: kept in the queue, receiving paused.
    FailedAccountPaused,
    /// Unfinished at shutdown and given back to the queue at once (`outcome=released`).
    Released,
    /// Messages deleted from the queue.
    Deleted,
    /// Deletes or visibility changes that SQS did not accept: the message reappears after its
    /// visibility timeout (`acknowledged=false` in the log).
    Unacknowledged,
    /// `SendEmail` calls SES accepted (a message matching two routes sends two).
    EmailsSent,
}

impl Counter {
    /// Every counter, in export order.
    pub const ALL: [Counter; 12] = [
        Counter::Received,
        Counter::Sent,
        Counter::Filtered,
        Counter::Duplicate,
        Counter::FailedTransient,
        Counter::FailedThrottled,
        Counter::FailedPermanent,
        Counter::FailedAccountPaused,
        Counter::Released,
        Counter::Deleted,
        Counter::Unacknowledged,
        Counter::EmailsSent,
    ];

    /// Snake-case name; the Prometheus metric is `quilt_notify_<name>_total`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Sent => "sent",
            Self::Filtered => "filtered",
            Self::Duplicate => "duplicate",
            Self::FailedTransient => "failed_transient",
            Self::FailedThrottled => "failed_throttled",
            Self::FailedPermanent => "failed_permanent",
            Self::FailedAccountPaused => "failed_account_paused",
            Self::Released => "released",
            Self::Deleted => "deleted",
            Self::Unacknowledged => "unacknowledged",
            Self::EmailsSent => "emails_sent",
        }
    }

    /// CloudWatch metric name in EMF lines.
    pub fn emf_name(self) -> &'static str {
        match self {
            Self::Received => "Received",
            Self::Sent => "Sent",
            Self::Filtered => "Filtered",
            Self::Duplicate => "Duplicate",
            Self::FailedTransient => "FailedTransient",
            Self::FailedThrottled => "FailedThrottled",
            Self::FailedPermanent => "FailedPermanent",
            Self::FailedAccountPaused => "FailedAccountPaused",
            Self::Released => "Released",
            Self::Deleted => "Deleted",
            Self::Unacknowledged => "Unacknowledged",
            Self::EmailsSent => "EmailsSent",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::Received => "Messages received from the queue (each receive counts).",
            Self::Sent => "Messages whose every matched route was sent.",
            Self::Filtered => "Messages no route matched, deleted unsent.",
            Self::Duplicate => "Messages whose event id was already handled, deleted unsent.",
            Self::FailedTransient => "Messages that failed transiently and will be retried.",
            Self::FailedThrottled => "Messages throttled by SES and retried later.",
            Self::FailedPermanent => "Messages that failed permanently, released towards the DLQ.",
            Self::FailedAccountPaused => "Messages kept because the SES account cannot send.",
            Self::Released => "Messages given back unfinished at shutdown.",
            Self::Deleted => "Messages deleted from the queue.",
            Self::Unacknowledged => "Deletes or visibility changes SQS did not accept.",
            Self::EmailsSent => "SendEmail calls SES accepted.",
        }
    }

    /// The counter an outcome adds to.
    pub fn for_outcome(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Sent => Self::Sent,
            Outcome::Filtered => Self::Filtered,
            Outcome::Duplicate => Self::Duplicate,
            Outcome::Interrupted => Self::Released,
            Outcome::Failed { kind, .. } => match kind {
                FailureKind::Transient => Self::FailedTransient,
                FailureKind::Throttled => Self::FailedThrottled,
                FailureKind::Permanent => Self::FailedPermanent,
                FailureKind::AccountPaused => Self::FailedAccountPaused,
            },
        }
    }
}

/// A distribution of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Histogram {
    /// One message, from parsing to its last send.
    ProcessingTime,
    /// One SES `SendEmail` call, success or failure.
    SesCall,
    /// Now minus the event's `time`, at each accepted send: how late the email is.
    EventAge,
}

impl Histogram {
    /// Every histogram, in export order.
    pub const ALL: [Histogram; 3] = [
        Histogram::ProcessingTime,
        Histogram::SesCall,
        Histogram::EventAge,
    ];

    /// Snake-case name; the Prometheus metric is `quilt_notify_<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ProcessingTime => "processing_seconds",
            Self::SesCall => "ses_call_seconds",
            Self::EventAge => "event_age_seconds",
        }
    }

    /// CloudWatch metric name in EMF lines (values in milliseconds).
    pub fn emf_name(self) -> &'static str {
        match self {
            Self::ProcessingTime => "ProcessingTime",
            Self::SesCall => "SesCallTime",
            Self::EventAge => "EventAge",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::ProcessingTime => "Time to process one message, parse to last send.",
            Self::SesCall => "Duration of one SES SendEmail call.",
            Self::EventAge => "Age of the event (now minus its time) when its email was accepted.",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds of the histogram buckets in seconds, shared by every histogram; one more bucket
/// (`+Inf`) holds the rest. From 5 ms (an SES call) to an hour (an event that waited in the queue).
pub const BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Number of buckets including `+Inf`.
const SLOTS: usize = BUCKETS.len() + 1;

/// Most values one EMF metric may carry (the format's limit).
const EMF_MAX_VALUES: usize = 100;

#[derive(Debug, Default)]
struct Distribution {
    /// Observations per bucket (not cumulative).
    buckets: [AtomicU64; SLOTS],
    sum_micros: AtomicU64,
    /// Largest observation since the last EMF line, for the open bucket's value.
    max_micros: AtomicU64,
}

/// The worker's counters and histograms, shared by pollers, pipeline and exporters.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: [AtomicU64; Counter::ALL.len()],
    histograms: [Distribution; Histogram::ALL.len()],
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(&self, counter: Counter, n: u64) {
        self.counters[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn count(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].load(Ordering::Relaxed)
    }

    /// Records one duration.
    pub fn observe(&self, histogram: Histogram, value: Duration) {
        let distribution = &self.histograms[histogram.index()];
        let seconds = value.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        distribution.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        distribution.sum_micros.fetch_add(micros, Ordering::Relaxed);
        distribution.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// How many durations a histogram has recorded.
    pub fn observations(&self, histogram: Histogram) -> u64 {
        self.histograms[histogram.index()]
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }

    /// Everything in the Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        for counter in Counter::ALL {
            let name = format!("quilt_notify_{}_total", counter.name());
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {name} {}", counter.help());
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", self.count(counter));
        }
        for histogram in Histogram::ALL {
            let name = format!("quilt_notify_{}", histogram.name());
            let distribution = &self.histograms[histogram.index()];
            let _ = writeln!(out, "# HELP {name} {}", histogram.help());
            let _ = writeln!(out, "# TYPE {name} histogram");
            let mut cumulative = 0;
            for (slot, bucket) in distribution.buckets.iter().enumerate() {
                cumulative += bucket.load(Ordering::Relaxed);
                match BUCKETS.get(slot) {
                    Some(bound) => {
                        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
                    }
                    None => {
                        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                    }
                }
            }
            let sum = distribution.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum {sum}");
            let _ = writeln!(out, "{name}_count {cumulative}");
        }
        out
    }

    fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for counter in Counter::ALL {
            snapshot.counters[counter as usize] = self.count(counter);
        }
        for histogram in Histogram::ALL {
            let distribution = &self.histograms[histogram.index()];
            for (slot, bucket) in distribution.buckets.iter().enumerate() {
                snapshot.buckets[histogram.index()][slot] = bucket.load(Ordering::Relaxed);
            }
            snapshot.max_micros[histogram.index()] =
                distribution.max_micros.swap(0, Ordering::Relaxed);
        }
        snapshot
    }
}

#[derive(Debug, Default, Clone)]
struct Snapshot {
    counters: [u64; Counter::ALL.len()],
    buckets: [[u64; SLOTS]; Histogram::ALL.len()],
    max_micros: [u64; Histogram::ALL.len()],
}

/// Turns the metrics into CloudWatch Embedded Metric Format lines, one per interval, each holding
/// what happened since the previous line: counters as increases (CloudWatch sums them across
/// tasks) and histograms as at most 100 values drawn from the interval's buckets.
///
/// A histogram's values are bucket upper bounds (the open bucket: the interval's largest
/// observation), repeated in proportion to the bucket's count. Percentiles and Maximum are right
/// to bucket resolution; Average and SampleCount are not meaningful for them (use the counters
/// for volumes). A histogram with no observation in the interval is left out of the line.
#[derive(Debug)]
pub struct EmfReporter {
    namespace: String,
    queue: String,
    previous: Snapshot,
}

impl EmfReporter {
    /// A reporter for metrics in `namespace`, with the dimension `Queue` = `queue`. The first line
    /// covers everything since the metrics were created.
    pub fn new(namespace: impl Into<String>, queue: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            queue: queue.into(),
            previous: Snapshot::default(),
        }
    }

    /// The next EMF line (one JSON object, no newline) for the interval ending at `timestamp_ms`
    /// (milliseconds since the Unix epoch).
    pub fn line(&mut self, metrics: &Metrics, timestamp_ms: u64) -> String {
        let now = metrics.snapshot();
        let mut root = Map::new();
        let mut definitions = Vec::new();
        for counter in Counter::ALL {
            let index = counter as usize;
            let delta = now.counters[index].saturating_sub(self.previous.counters[index]);
            definitions.push(serde_json::json!({"Name": counter.emf_name(), "Unit": "Count"}));
            root.insert(counter.emf_name().to_owned(), Value::from(delta));
        }
        for histogram in Histogram::ALL {
            let index = histogram.index();
            let mut deltas = [0u64; SLOTS];
            for (slot, delta) in deltas.iter_mut().enumerate() {
                *delta =
                    now.buckets[index][slot].saturating_sub(self.previous.buckets[index][slot]);
            }
            let values = emf_values(&deltas, now.max_micros[index]);
            if values.is_empty() {
                continue;
            }
            definitions
                .push(serde_json::json!({"Name": histogram.emf_name(), "Unit": "Milliseconds"}));
            root.insert(histogram.emf_name().to_owned(), Value::from(values));
        }
        root.insert("Queue".to_owned(), Value::from(self.queue.clone()));
        root.insert("message".to_owned(), Value::from("metrics"));
        root.insert(
            "_aws".to_owned(),
            serde_json::json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [["Queue"]],
                    "Metrics": definitions,
                }],
            }),
        );
        self.previous = now;
        Value::Object(root).to_string()
    }
}

/// At most [`EMF_MAX_VALUES`] millisecond values representing one interval's bucket counts.
fn emf_values(deltas: &[u64; SLOTS], max_micros: u64) -> Vec<f64> {
    let total: u64 = deltas.iter().sum();
    if total == 0 {
        return Vec::new();
    }
    let max_ms = max_micros as f64 / 1000.0;
    let limit = EMF_MAX_VALUES as u64;
    let mut repeats: Vec<u64> = deltas
        .iter()
        .map(|&count| match count {
            0 => 0,
            _ if total <= limit => count,
            _ => (count * limit / total).max(1),
        })
        .collect();
    // Rounding up the rare buckets can overshoot the limit: take from the largest.
    while repeats.iter().sum::<u64>() > limit {
        if let Some(largest) = repeats.iter_mut().max() {
            *largest -= 1;
        }
    }
    let mut values = Vec::new();
    for (slot, &repeat) in repeats.iter().enumerate() {
        let bound_ms = BUCKETS
            .get(slot)
            .map_or(max_ms, |b| (b * 1000.0).min(max_ms));
        values.extend(std::iter::repeat_n(bound_ms, repeat as usize));
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_their_counters() {
        let failed = |kind| Outcome::Failed {
            kind,
            code: "c".into(),
            error: "e".into(),
        };
        assert_eq!(Counter::for_outcome(&Outcome::Sent), Counter::Sent);
        assert_eq!(
            Counter::for_outcome(&Outcome::Interrupted),
            Counter::Released
        );
        assert_eq!(
            Counter::for_outcome(&failed(FailureKind::Permanent)),
            Counter::FailedPermanent
        );
        assert_eq!(
            Counter::for_outcome(&failed(FailureKind::AccountPaused)),
            Counter::FailedAccountPaused
        );
    }

    #[test]
    fn prometheus_text_has_counters_and_cumulative_buckets() {
        let metrics = Metrics::default();
        metrics.add(Counter::Received, 3);
        metrics.add(Counter::Sent, 2);
        metrics.observe(Histogram::SesCall, Duration::from_millis(40));
        metrics.observe(Histogram::SesCall, Duration::from_millis(200));
        metrics.observe(Histogram::SesCall, Duration::from_secs(7200));
        let text = metrics.prometheus();
        assert!(
            text.contains(
                "# TYPE quilt_notify_received_total counter\nquilt_notify_received_total 3\n"
            ),
            "{text}"
        );
        assert!(text.contains("quilt_notify_sent_total 2\n"), "{text}");
        assert!(text.contains("quilt_notify_filtered_total 0\n"), "{text}");
        assert!(
            text.contains("# TYPE quilt_notify_ses_call_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("quilt_notify_ses_call_seconds_bucket{le=\"0.025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("quilt_notify_ses_call_seconds_bucket{le=\"0.05\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("quilt_notify_ses_call_seconds_bucket{le=\"0.25\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("quilt_notify_ses_call_seconds_bucket{le=\"3600\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("quilt_notify_ses_call_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("quilt_notify_ses_call_seconds_count 3\n"),
            "{text}"
        );
        assert!(
            text.contains("quilt_notify_ses_call_seconds_sum 7200.24\n"),
            "{text}"
        );
        assert!(
            text.contains("quilt_notify_event_age_seconds_count 0\n"),
            "{text}"
        );
        // Every sample line is `name value` or `name{labels} value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("sample");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn emf_lines_carry_increases_since_the_previous_line() {
        let metrics = Metrics::default();
        let mut reporter = EmfReporter::new("QuiltNotify", "my-queue");
        metrics.add(Counter::Received, 5);
        metrics.add(Counter::Sent, 4);
        metrics.observe(Histogram::ProcessingTime, Duration::from_millis(30));
        metrics.observe(Histogram::ProcessingTime, Duration::from_millis(45));

        let first: Value =
            serde_json::from_str(&reporter.line(&metrics, 1_700_000_000_000)).expect("json");
        assert_eq!(first["Received"], 5);
        assert_eq!(first["Sent"], 4);
        assert_eq!(first["Filtered"], 0);
        assert_eq!(first["Queue"], "my-queue");
        assert_eq!(first["ProcessingTime"], serde_json::json!([45.0, 45.0]));
        assert!(
            first.get("SesCallTime").is_none(),
            "no observations, no metric"
        );
        let directive = &first["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(first["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(directive["Namespace"], "QuiltNotify");
        assert_eq!(directive["Dimensions"], serde_json::json!([["Queue"]]));
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .filter_map(|m| m["Name"].as_str())
            .collect();
        // Every declared metric is present at the root, as the format requires.
        for name in &names {
            assert!(first.get(*name).is_some(), "{name}");
        }
        assert!(names.contains(&"ProcessingTime"));
        assert!(!names.contains(&"SesCallTime"));

        metrics.add(Counter::Received, 2);
        let second: Value =
            serde_json::from_str(&reporter.line(&metrics, 1_700_000_060_000)).expect("json");
        assert_eq!(second["Received"], 2);
        assert_eq!(second["Sent"], 0);
        assert!(second.get("ProcessingTime").is_none());
    }

    #[test]
    fn emf_histograms_never_exceed_a_hundred_values_and_keep_the_shape() {
        let mut deltas = [0u64; SLOTS];
        deltas[2] = 900; // 25 ms
        deltas[9] = 99; // 5 s
        deltas[SLOTS - 1] = 1; // over an hour
        let values = emf_values(&deltas, 5_000_000_000);
        assert!(values.len() <= EMF_MAX_VALUES, "{}", values.len());
        let fast = values.iter().filter(|v| **v == 25.0).count();
        let slow = values.iter().filter(|v| **v == 5000.0).count();
        assert!(fast >= 85 && slow >= 8, "{values:?}");
        assert!(
            values.contains(&5_000_000.0),
            "the open bucket is the maximum"
        );
    }
}
