//! CloudWatch Embedded Metric Format: metrics from log lines, with no agent. [`EmfReporter`]
//! turns the metrics into one JSON line per interval and [`report_emf`] writes those lines to
//! stdout, between the log lines.
//!
//! Owns the EMF layout and the interval loop; the names and units come from the descriptor tables
//! in [`metrics`](super::metrics).

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::metrics::{Metrics, Snapshot, BUCKETS, COUNTERS, GAUGES, HISTOGRAMS, SLOTS};
use crate::domain::feedback::FeedbackKind;

/// Most values one EMF metric may carry (the format's limit).
const EMF_MAX_VALUES: usize = 100;

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
    previous_feedback: BTreeMap<(String, FeedbackKind), u64>,
}

impl EmfReporter {
    /// A reporter for metrics in `namespace`, with the dimension `Queue` = `queue`. The first line
    /// covers everything since the metrics were created.
    pub fn new(namespace: impl Into<String>, queue: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            queue: queue.into(),
            previous: Snapshot::default(),
            previous_feedback: BTreeMap::new(),
        }
    }

    /// The next EMF line (one JSON object, no newline) for the interval ending at `timestamp_ms`
    /// (milliseconds since the Unix epoch).
    pub fn line(&mut self, metrics: &Metrics, timestamp_ms: u64) -> String {
        let now = metrics.snapshot();
        let mut root = Map::new();
        let mut definitions = Vec::new();
        for (index, counter) in COUNTERS.iter().enumerate() {
            let delta = now.counters[index].saturating_sub(self.previous.counters[index]);
            definitions
                .push(serde_json::json!({"Name": counter.emf_name, "Unit": counter.emf_unit}));
            root.insert(counter.emf_name.to_owned(), Value::from(delta));
        }
        for (index, histogram) in HISTOGRAMS.iter().enumerate() {
            let deltas: [u64; SLOTS] = std::array::from_fn(|slot| {
                now.buckets[index][slot].saturating_sub(self.previous.buckets[index][slot])
            });
            let values = emf_values(&deltas, now.max_micros[index]);
            if values.is_empty() {
                continue;
            }
            definitions
                .push(serde_json::json!({"Name": histogram.emf_name, "Unit": histogram.emf_unit}));
            root.insert(histogram.emf_name.to_owned(), Value::from(values));
        }
        for (index, gauge) in GAUGES.iter().enumerate() {
            definitions.push(serde_json::json!({"Name": gauge.emf_name, "Unit": gauge.emf_unit}));
            root.insert(
                gauge.emf_name.to_owned(),
                Value::from(now.gauges[index] as f64 / 1000.0),
            );
        }
        self.previous = now;
        self.document(root, &[], definitions, timestamp_ms)
    }

    /// One EMF line: the metric values in `root`, the dimension `Queue` plus `extra` dimensions
    /// (name, value), and the directive that declares `definitions`.
    fn document(
        &self,
        mut root: Map<String, Value>,
        extra: &[(&str, &str)],
        definitions: Vec<Value>,
        timestamp_ms: u64,
    ) -> String {
        let mut dimensions = vec!["Queue"];
        root.insert("Queue".to_owned(), Value::from(self.queue.clone()));
        for (name, value) in extra {
            dimensions.push(name);
            root.insert((*name).to_owned(), Value::from(*value));
        }
        root.insert("message".to_owned(), Value::from("metrics"));
        root.insert(
            "_aws".to_owned(),
            serde_json::json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dimensions],
                    "Metrics": definitions,
                }],
            }),
        );
        Value::Object(root).to_string()
    }
}

impl EmfReporter {
    /// One EMF line per route that had SES feedback since the previous call, with the
    /// dimensions `Queue` and `Route` and the metrics `Bounces`, `Complaints`,
    /// `DeliveryDelays` and `OtherSesEvents` (their increase in the interval).
    pub fn feedback_lines(&mut self, metrics: &Metrics, timestamp_ms: u64) -> Vec<String> {
        let now: BTreeMap<(String, FeedbackKind), u64> = metrics.feedback().into_iter().collect();
        let mut per_route: BTreeMap<&str, [u64; FeedbackKind::ALL.len()]> = BTreeMap::new();
        for ((route, kind), count) in &now {
            let before = self
                .previous_feedback
                .get(&(route.clone(), *kind))
                .copied()
                .unwrap_or(0);
            let delta = count.saturating_sub(before);
            if delta > 0 {
                let slot = FeedbackKind::ALL
                    .iter()
                    .position(|k| k == kind)
                    .unwrap_or(0);
                per_route.entry(route.as_str()).or_default()[slot] += delta;
            }
        }
        let lines = per_route
            .into_iter()
            .map(|(route, counts)| {
                let mut root = Map::new();
                let mut definitions = Vec::new();
                for (kind, count) in FeedbackKind::ALL.iter().zip(counts) {
                    let name = feedback_metric(*kind);
                    definitions.push(serde_json::json!({"Name": name, "Unit": "Count"}));
                    root.insert(name.to_owned(), Value::from(count));
                }
                self.document(root, &[("Route", route)], definitions, timestamp_ms)
            })
            .collect();
        self.previous_feedback = now;
        lines
    }
}

/// The EMF metric name of one kind of SES feedback.
fn feedback_metric(kind: FeedbackKind) -> &'static str {
    match kind {
        FeedbackKind::Bounce => "Bounces",
        FeedbackKind::Complaint => "Complaints",
        FeedbackKind::DeliveryDelay => "DeliveryDelays",
        FeedbackKind::Other => "OtherSesEvents",
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

/// Writes an EMF line to stdout every `every`, and a last one when `stop` is cancelled.
pub async fn report_emf(
    reporter: EmfReporter,
    every: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    report_to(reporter, every, &metrics, &stop, write_line).await;
}

/// The loop of [`report_emf`], with the line's destination as a parameter.
async fn report_to(
    mut reporter: EmfReporter,
    every: Duration,
    metrics: &Metrics,
    stop: &CancellationToken,
    mut write: impl FnMut(&str),
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = ticks.tick() => false,
            () = stop.cancelled() => true,
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        write(&reporter.line(metrics, now_ms));
        for line in reporter.feedback_lines(metrics, now_ms) {
            write(&line);
        }
        if last {
            return;
        }
    }
}

/// Writes one line to stdout in a single `write_all` under the stdout lock, as the log
/// subscriber does, so an EMF line never interleaves with a log line. EMF needs `_aws` at the
/// top level of the JSON object, which a tracing field cannot produce: hence not a log event.
fn write_line(line: &str) {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        tracing::warn!(error = %e, "could not write the metrics line");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::{Counter, Histogram};

    #[test]
    fn feedback_lines_carry_each_routes_increase_with_a_route_dimension() {
        let metrics = Metrics::default();
        let mut reporter = EmfReporter::new("QuiltNotify", "q");
        assert!(
            reporter.feedback_lines(&metrics, 1).is_empty(),
            "no feedback, no line"
        );
        metrics.add_feedback("raw", FeedbackKind::Bounce);
        metrics.add_feedback("raw", FeedbackKind::Complaint);
        metrics.add_feedback("ops", FeedbackKind::Bounce);
        let lines = reporter.feedback_lines(&metrics, 2);
        let parsed: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(parsed.len(), 2);
        let raw = parsed.iter().find(|l| l["Route"] == "raw").expect("raw");
        assert_eq!(
            (raw["Bounces"].as_u64(), raw["Complaints"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(
            raw["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["Queue", "Route"]])
        );
        metrics.add_feedback("ops", FeedbackKind::Bounce);
        let lines = reporter.feedback_lines(&metrics, 3);
        assert_eq!(lines.len(), 1, "only routes with new feedback");
        assert!(lines[0].contains("\"Bounces\":1"), "{}", lines[0]);
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
        assert_eq!(
            directive["Metrics"][0],
            serde_json::json!({"Name": "Received", "Unit": "Count"})
        );
        assert_eq!(
            directive["Metrics"][COUNTERS.len()],
            serde_json::json!({"Name": "ProcessingTime", "Unit": "Milliseconds"})
        );

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

    #[tokio::test(start_paused = true)]
    async fn the_reporter_writes_once_per_interval_and_a_last_line_when_stopped() {
        let metrics = Metrics::default();
        let stop = CancellationToken::new();
        let mut lines = Vec::new();
        let reporter = report_to(
            EmfReporter::new("QuiltNotify", "q"),
            Duration::from_secs(60),
            &metrics,
            &stop,
            |line| lines.push(line.to_owned()),
        );
        let stop_later = async {
            tokio::time::sleep(Duration::from_secs(150)).await;
            metrics.add(Counter::Sent, 1);
            stop.cancel();
        };
        tokio::join!(reporter, stop_later);
        assert_eq!(lines.len(), 3, "at 60 s, 120 s and at the stop: {lines:?}");
        let last: Value = serde_json::from_str(&lines[2]).expect("json");
        assert_eq!(
            last["Sent"], 1,
            "the last line covers the last partial interval"
        );
    }
}
