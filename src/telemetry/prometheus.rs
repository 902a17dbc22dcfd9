//! The Prometheus text exposition format (version 0.0.4), served on `/metrics`.
//!
//! Owns the `quilt_notify_` prefix and the text layout; the names and help texts come from the
//! descriptor tables in [`metrics`](super::metrics).

use std::fmt::Write as _;

use super::metrics::{Metrics, BUCKETS, COUNTERS, GAUGES, HISTOGRAMS};

/// Content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Metrics {
    /// Everything in the Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail, hence the ignored results.
        for counter in &COUNTERS {
            let name = format!("quilt_notify_{}_total", counter.name);
            let _ = writeln!(out, "# HELP {name} {}", counter.help);
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", self.count(counter.metric));
        }
        let name = "quilt_notify_feedback_by_route_total";
        let _ = writeln!(
            out,
            "# HELP {name} SES bounces, complaints and delivery delays, per route (the mail's route tag) and type."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        for ((route, kind), count) in self.feedback() {
            let _ = writeln!(
                out,
                "{name}{{route=\"{}\",type=\"{}\"}} {count}",
                label(&route),
                kind.as_str()
            );
        }
        for histogram in &HISTOGRAMS {
            let name = format!("quilt_notify_{}", histogram.name);
            let _ = writeln!(out, "# HELP {name} {}", histogram.help);
            let _ = writeln!(out, "# TYPE {name} histogram");
            let mut cumulative = 0;
            for (slot, count) in self.buckets(histogram.metric).iter().enumerate() {
                cumulative += count;
                match BUCKETS.get(slot) {
                    Some(bound) => {
                        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
                    }
                    None => {
                        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                    }
                }
            }
            let sum = self.sum_micros(histogram.metric) as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum {sum}");
            let _ = writeln!(out, "{name}_count {cumulative}");
        }
        for gauge in &GAUGES {
            let name = format!("quilt_notify_{}", gauge.name);
            let _ = writeln!(out, "# HELP {name} {}", gauge.help);
            let _ = writeln!(out, "# TYPE {name} gauge");
            let seconds = self.gauge(gauge.metric) as f64 / 1000.0;
            let _ = writeln!(out, "{name} {seconds}");
        }
        out
    }
}

/// A label value escaped as the text format wants it.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::telemetry::metrics::{Counter, Gauge, Histogram, Metrics};

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
    fn feedback_is_counted_per_route_and_type_with_escaped_labels() {
        use crate::domain::feedback::FeedbackKind;
        let metrics = Metrics::default();
        metrics.add_feedback("raw", FeedbackKind::Bounce);
        metrics.add_feedback("raw", FeedbackKind::Bounce);
        metrics.add_feedback("a\"b", FeedbackKind::Complaint);
        let text = metrics.prometheus();
        assert!(text
            .contains("quilt_notify_feedback_by_route_total{route=\"raw\",type=\"bounce\"} 2\n"));
        assert!(
            text.contains("{route=\"a\\\"b\",type=\"complaint\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn every_metric_has_help_and_type_lines_in_export_order() {
        let text = Metrics::default().prometheus();
        let types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        assert_eq!(
            types.len(),
            Counter::ALL.len() + 1 + Histogram::ALL.len() + Gauge::ALL.len()
        );
        assert_eq!(
            types.last().copied(),
            Some("quilt_notify_clock_skew_seconds gauge")
        );
        assert_eq!(types[0], "quilt_notify_received_total counter");
        assert_eq!(
            types[Counter::EmailsSent as usize],
            "quilt_notify_emails_sent_total counter"
        );
        let last_counter = Counter::ALL.len();
        assert_eq!(
            types[last_counter],
            "quilt_notify_feedback_by_route_total counter"
        );
        assert_eq!(
            types[last_counter + 1],
            "quilt_notify_processing_seconds histogram"
        );
        assert!(
            text.contains("# HELP quilt_notify_emails_sent_total SendEmail calls SES accepted.\n")
        );
    }
}
