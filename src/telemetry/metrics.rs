//! What the worker counts about itself: counters and duration histograms, each described once in
//! a table ([`COUNTERS`], [`HISTOGRAMS`]) that both export formats read.
//!
//! Recording is a few relaxed atomic adds, so the hot path never takes a lock (SES feedback,
//! counted per route and rare, takes one). Knows nothing of
//! the export formats ([`prometheus`](super::prometheus), [`emf`](super::emf)) nor of when or
//! where they are written.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::domain::feedback::FeedbackKind;

/// How one metric is named and explained in every export, and its unit in EMF.
#[derive(Debug, Clone, Copy)]
pub struct Descriptor<M> {
    /// The metric this row describes; its position in the table is its index.
    pub metric: M,
    /// Snake-case name: the Prometheus metric is `quilt_notify_<name>` (`_total` added for
    /// counters).
    pub name: &'static str,
    /// CloudWatch metric name in EMF lines.
    pub emf_name: &'static str,
    /// CloudWatch unit in EMF lines.
    pub emf_unit: &'static str,
    /// The Prometheus `# HELP` text.
    pub help: &'static str,
}

/// A monotonic count. The per-outcome counters follow the `outcome` log field, so for settled
/// batches `received = sent + filtered + duplicate + feedback + unchanged + recorded +
/// claimed_elsewhere + failed_* + released`.
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
    /// SES bounces, complaints and delivery delays received and deleted (`outcome=feedback`);
    /// per route and type in [`Metrics::feedback`].
    Feedback,
    /// Messages whose revision has its predecessor's top hash, deleted unsent because every
    /// matched route skips unchanged revisions (`outcome=unchanged`).
    Unchanged,
    /// Messages whose digest routes recorded the event for a later digest, with nothing else
    /// left to send (`outcome=recorded`).
    Recorded,
    /// Messages hidden because another task holds the lease on one of their emails
    /// (`outcome=claimed_elsewhere`).
    ClaimedElsewhere,
    /// Transient failures (network, 5xx, timeout): retried after a backoff.
    FailedTransient,
    /// SES throttling: retried after a backoff, sending slowed down.
    FailedThrottled,
    /// Permanent failures (bad body, template, rejected address): released towards the DLQ.
    FailedPermanent,
    /// The SES account cannot send: kept in the queue, receiving paused.
    FailedAccountPaused,
    /// The state table is unusable: kept in the queue, receiving paused.
    FailedStateUnavailable,
    /// Unfinished at shutdown and given back to the queue at once (`outcome=released`).
    Released,
    /// Messages deleted from the queue.
    Deleted,
    /// Deletes or visibility changes that SQS did not accept: the message reappears after its
    /// visibility timeout (`acknowledged=false` in the log).
    Unacknowledged,
    /// `SendEmail` calls SES accepted (a message matching two routes sends two).
    EmailsSent,
    /// `SendEmail` calls that failed after SES may have accepted the email (a timeout, a
    /// connection lost after sending, a 5xx): the retry may deliver it twice.
    PossibleDuplicates,
    /// Leases won on shared state (an (event, route) email or a digest window) before sending.
    Claims,
    /// Claims that found the work done already (sent or recorded by another task or an earlier
    /// receive): nothing sent again.
    ClaimsSkipped,
    /// Claims that found another task's live lease.
    ClaimsHeld,
    /// Claims that took over another owner's expired lease (it died or stalled mid-send).
    LeaseTakeovers,
    /// Emails SES accepted whose claim could not be marked sent: a redelivery after the lease
    /// ends may send them again.
    UnmarkedSends,
    /// Events recorded into a digest window.
    DigestEvents,
    /// Digest emails SES accepted.
    DigestsSent,
    /// Digest windows given up (the digest cannot render, or SES rejects it).
    DigestsFailed,
    /// AWS answers whose `Date` showed this task's clock off by more than
    /// `state.max_clock_skew_seconds` (see [`Gauge::ClockSkew`]).
    ClockSkewExceeded,
}

/// Every counter, in export order; row `i` describes the variant whose discriminant is `i`.
pub const COUNTERS: [Descriptor<Counter>; 27] = {
    const fn row(
        metric: Counter,
        name: &'static str,
        emf_name: &'static str,
        help: &'static str,
    ) -> Descriptor<Counter> {
        Descriptor {
            metric,
            name,
            emf_name,
            emf_unit: "Count",
            help,
        }
    }
    [
        row(
            Counter::Received,
            "received",
            "Received",
            "Messages received from the queue (each receive counts).",
        ),
        row(
            Counter::Sent,
            "sent",
            "Sent",
            "Messages whose every matched route was sent.",
        ),
        row(
            Counter::Filtered,
            "filtered",
            "Filtered",
            "Messages no route matched, deleted unsent.",
        ),
        row(
            Counter::Duplicate,
            "duplicate",
            "Duplicate",
            "Messages whose event id was already handled, deleted unsent.",
        ),
        row(
            Counter::Feedback,
            "feedback",
            "Feedback",
            "SES bounce, complaint and delivery-delay events received, deleted.",
        ),
        row(
            Counter::Unchanged,
            "unchanged",
            "Unchanged",
            "Messages for a re-push of the same top hash, deleted unsent.",
        ),
        row(
            Counter::Recorded,
            "recorded",
            "Recorded",
            "Messages recorded for a later digest, with nothing else to send.",
        ),
        row(
            Counter::ClaimedElsewhere,
            "claimed_elsewhere",
            "ClaimedElsewhere",
            "Messages hidden while another task holds the lease on one of their emails.",
        ),
        row(
            Counter::FailedTransient,
            "failed_transient",
            "FailedTransient",
            "Messages that failed transiently and will be retried.",
        ),
        row(
            Counter::FailedThrottled,
            "failed_throttled",
            "FailedThrottled",
            "Messages throttled by SES and retried later.",
        ),
        row(
            Counter::FailedPermanent,
            "failed_permanent",
            "FailedPermanent",
            "Messages that failed permanently, released towards the DLQ.",
        ),
        row(
            Counter::FailedAccountPaused,
            "failed_account_paused",
            "FailedAccountPaused",
            "Messages kept because the SES account cannot send.",
        ),
        row(
            Counter::FailedStateUnavailable,
            "failed_state_unavailable",
            "FailedStateUnavailable",
            "Messages kept because the state table is unusable.",
        ),
        row(
            Counter::Released,
            "released",
            "Released",
            "Messages given back unfinished at shutdown.",
        ),
        row(
            Counter::Deleted,
            "deleted",
            "Deleted",
            "Messages deleted from the queue.",
        ),
        row(
            Counter::Unacknowledged,
            "unacknowledged",
            "Unacknowledged",
            "Deletes or visibility changes SQS did not accept.",
        ),
        row(
            Counter::EmailsSent,
            "emails_sent",
            "EmailsSent",
            "SendEmail calls SES accepted.",
        ),
        row(
            Counter::PossibleDuplicates,
            "possible_duplicates",
            "PossibleDuplicates",
            "SendEmail calls that failed after SES may have accepted the email: its retry may send it twice.",
        ),
        row(
            Counter::Claims,
            "claims",
            "Claims",
            "Leases won on shared state before a send (an email or a digest window).",
        ),
        row(
            Counter::ClaimsSkipped,
            "claims_skipped",
            "ClaimsSkipped",
            "Claims that found the email sent or the event recorded already: not sent again.",
        ),
        row(
            Counter::ClaimsHeld,
            "claims_held",
            "ClaimsHeld",
            "Claims that found another task's live lease.",
        ),
        row(
            Counter::LeaseTakeovers,
            "lease_takeovers",
            "LeaseTakeovers",
            "Claims that took over an expired lease of another owner.",
        ),
        row(
            Counter::UnmarkedSends,
            "unmarked_sends",
            "UnmarkedSends",
            "Emails SES accepted whose claim could not be marked sent.",
        ),
        row(
            Counter::DigestEvents,
            "digest_events",
            "DigestEvents",
            "Events recorded into a digest window.",
        ),
        row(
            Counter::DigestsSent,
            "digests_sent",
            "DigestsSent",
            "Digest emails SES accepted.",
        ),
        row(
            Counter::DigestsFailed,
            "digests_failed",
            "DigestsFailed",
            "Digest windows given up: the digest cannot render or SES rejects it.",
        ),
        row(
            Counter::ClockSkewExceeded,
            "clock_skew_exceeded",
            "ClockSkewExceeded",
            "AWS answers whose Date showed this task's clock off by more than state.max_clock_skew_seconds.",
        ),
    ]
};

impl Counter {
    /// Every counter, in export order.
    pub const ALL: [Counter; COUNTERS.len()] = {
        let mut all = [Counter::Received; COUNTERS.len()];
        let mut i = 0;
        while i < all.len() {
            all[i] = COUNTERS[i].metric;
            i += 1;
        }
        all
    };

    /// This counter's row of [`COUNTERS`].
    pub fn descriptor(self) -> &'static Descriptor<Counter> {
        &COUNTERS[self as usize]
    }

    /// Snake-case name; the Prometheus metric is `quilt_notify_<name>_total`.
    pub fn name(self) -> &'static str {
        self.descriptor().name
    }

    /// CloudWatch metric name in EMF lines.
    pub fn emf_name(self) -> &'static str {
        self.descriptor().emf_name
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
    /// Reading one event's package details (S3 calls, parsing, diff), success or failure.
    DetailsRead,
}

/// Every histogram, in export order; row `i` describes the variant whose discriminant is `i`.
/// Prometheus exports seconds, EMF milliseconds.
pub const HISTOGRAMS: [Descriptor<Histogram>; 4] = {
    const fn row(
        metric: Histogram,
        name: &'static str,
        emf_name: &'static str,
        help: &'static str,
    ) -> Descriptor<Histogram> {
        Descriptor {
            metric,
            name,
            emf_name,
            emf_unit: "Milliseconds",
            help,
        }
    }
    [
        row(
            Histogram::ProcessingTime,
            "processing_seconds",
            "ProcessingTime",
            "Time to process one message, parse to last send.",
        ),
        row(
            Histogram::SesCall,
            "ses_call_seconds",
            "SesCallTime",
            "Duration of one SES SendEmail call.",
        ),
        row(
            Histogram::EventAge,
            "event_age_seconds",
            "EventAge",
            "Age of the event (now minus its time) when its email was accepted.",
        ),
        row(
            Histogram::DetailsRead,
            "details_seconds",
            "DetailsTime",
            "Time to read one event's package details from S3, success or failure.",
        ),
    ]
};

impl Histogram {
    /// Every histogram, in export order.
    pub const ALL: [Histogram; HISTOGRAMS.len()] = {
        let mut all = [Histogram::ProcessingTime; HISTOGRAMS.len()];
        let mut i = 0;
        while i < all.len() {
            all[i] = HISTOGRAMS[i].metric;
            i += 1;
        }
        all
    };

    /// This histogram's row of [`HISTOGRAMS`].
    pub fn descriptor(self) -> &'static Descriptor<Histogram> {
        &HISTOGRAMS[self as usize]
    }

    /// Snake-case name; the Prometheus metric is `quilt_notify_<name>`.
    pub fn name(self) -> &'static str {
        self.descriptor().name
    }

    /// CloudWatch metric name in EMF lines (values in milliseconds).
    pub fn emf_name(self) -> &'static str {
        self.descriptor().emf_name
    }
}

/// A value that goes up and down; kept in milliseconds, exported in the descriptor's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gauge {
    /// This task's clock minus AWS's, from the `Date` of AWS answers: the smallest offset the
    /// latest quick answer proves (0 until one proves any). Leases compare task clocks.
    ClockSkew,
}

/// Every gauge, in export order; row `i` describes the variant whose discriminant is `i`.
/// Prometheus and EMF both export seconds.
pub const GAUGES: [Descriptor<Gauge>; 1] = [Descriptor {
    metric: Gauge::ClockSkew,
    name: "clock_skew_seconds",
    emf_name: "ClockSkew",
    emf_unit: "Seconds",
    help: "This task's clock minus AWS's, from the Date of AWS answers (positive: ahead).",
}];

impl Gauge {
    /// Every gauge, in export order.
    pub const ALL: [Gauge; GAUGES.len()] = [Gauge::ClockSkew];

    /// This gauge's row of [`GAUGES`].
    pub fn descriptor(self) -> &'static Descriptor<Gauge> {
        &GAUGES[self as usize]
    }
}

// A table row out of place would export one metric under another's name: refuse to compile.
const _: () = {
    let mut i = 0;
    while i < COUNTERS.len() {
        assert!(COUNTERS[i].metric as usize == i, "COUNTERS out of order");
        i += 1;
    }
    let mut i = 0;
    while i < GAUGES.len() {
        assert!(GAUGES[i].metric as usize == i, "GAUGES out of order");
        i += 1;
    }
    let mut i = 0;
    while i < HISTOGRAMS.len() {
        assert!(
            HISTOGRAMS[i].metric as usize == i,
            "HISTOGRAMS out of order"
        );
        i += 1;
    }
};

/// Upper bounds of the histogram buckets in seconds, shared by every histogram; one more bucket
/// (`+Inf`) holds the rest. From 5 ms (an SES call) to an hour (an event that waited in the queue).
pub const BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Number of buckets including `+Inf`.
pub const SLOTS: usize = BUCKETS.len() + 1;

#[derive(Debug, Default)]
struct Distribution {
    /// Observations per bucket (not cumulative).
    buckets: [AtomicU64; SLOTS],
    sum_micros: AtomicU64,
    /// Largest observation since the last [`Metrics::snapshot`], for EMF's open bucket.
    max_micros: AtomicU64,
}

/// The worker's counters and histograms, shared by pollers, pipeline and exporters.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: [AtomicU64; COUNTERS.len()],
    /// Gauge values, in milliseconds.
    gauges: [AtomicI64; GAUGES.len()],
    histograms: [Distribution; HISTOGRAMS.len()],
    /// SES feedback per (route, kind). Routes are the configured ones (the caller maps any other
    /// tag to [`UNKNOWN_ROUTE`]), so the label set stays bounded.
    feedback: Mutex<BTreeMap<(String, FeedbackKind), u64>>,
}

/// The route label of SES feedback whose `route` tag names no configured route.
pub const UNKNOWN_ROUTE: &str = "(unknown)";

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(&self, counter: Counter, n: u64) {
        self.counters[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn count(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].load(Ordering::Relaxed)
    }

    /// Sets a gauge, in milliseconds.
    pub fn set(&self, gauge: Gauge, millis: i64) {
        self.gauges[gauge as usize].store(millis, Ordering::Relaxed);
    }

    /// A gauge's value, in milliseconds.
    pub fn gauge(&self, gauge: Gauge) -> i64 {
        self.gauges[gauge as usize].load(Ordering::Relaxed)
    }

    /// Counts one SES feedback event for a route.
    pub fn add_feedback(&self, route: &str, kind: FeedbackKind) {
        let mut feedback = self.feedback.lock().unwrap_or_else(PoisonError::into_inner);
        *feedback.entry((route.to_owned(), kind)).or_default() += 1;
    }

    /// SES feedback counts per (route, kind), in order.
    pub fn feedback(&self) -> Vec<((String, FeedbackKind), u64)> {
        let feedback = self.feedback.lock().unwrap_or_else(PoisonError::into_inner);
        feedback.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Records one duration.
    pub fn observe(&self, histogram: Histogram, value: Duration) {
        let distribution = &self.histograms[histogram as usize];
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
        self.buckets(histogram).iter().sum()
    }

    /// A histogram's observations per bucket (not cumulative), the last one `+Inf`.
    pub fn buckets(&self, histogram: Histogram) -> [u64; SLOTS] {
        let distribution = &self.histograms[histogram as usize];
        std::array::from_fn(|slot| distribution.buckets[slot].load(Ordering::Relaxed))
    }

    /// The sum of a histogram's observations, in microseconds.
    pub fn sum_micros(&self, histogram: Histogram) -> u64 {
        self.histograms[histogram as usize]
            .sum_micros
            .load(Ordering::Relaxed)
    }

    /// Every counter and bucket now, and each histogram's largest observation since the previous
    /// snapshot (which this one resets): what an interval-based exporter needs.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counters: Counter::ALL.map(|counter| self.count(counter)),
            gauges: Gauge::ALL.map(|gauge| self.gauge(gauge)),
            buckets: Histogram::ALL.map(|histogram| self.buckets(histogram)),
            max_micros: Histogram::ALL.map(|histogram| {
                self.histograms[histogram as usize]
                    .max_micros
                    .swap(0, Ordering::Relaxed)
            }),
        }
    }
}

/// The metrics at one moment; see [`Metrics::snapshot`].
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Counter values, indexed by [`Counter`].
    pub counters: [u64; COUNTERS.len()],
    /// Gauge values in milliseconds, indexed by [`Gauge`].
    pub gauges: [i64; GAUGES.len()],
    /// Observations per bucket (not cumulative), indexed by [`Histogram`].
    pub buckets: [[u64; SLOTS]; HISTOGRAMS.len()],
    /// Largest observation since the previous snapshot, indexed by [`Histogram`].
    pub max_micros: [u64; HISTOGRAMS.len()],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_a_distinct_name_in_each_format() {
        let mut names: Vec<&str> = COUNTERS.iter().map(|d| d.name).collect();
        names.extend(HISTOGRAMS.iter().map(|d| d.name));
        names.extend(GAUGES.iter().map(|d| d.name));
        let mut emf: Vec<&str> = COUNTERS.iter().map(|d| d.emf_name).collect();
        emf.extend(HISTOGRAMS.iter().map(|d| d.emf_name));
        emf.extend(GAUGES.iter().map(|d| d.emf_name));
        for list in [&mut names, &mut emf] {
            let before = list.len();
            list.sort_unstable();
            list.dedup();
            assert_eq!(list.len(), before, "{list:?}");
        }
        assert_eq!(Counter::EmailsSent.name(), "emails_sent");
        assert_eq!(Histogram::SesCall.emf_name(), "SesCallTime");
    }

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let metrics = Metrics::default();
        metrics.observe(Histogram::SesCall, Duration::from_millis(5));
        metrics.observe(Histogram::SesCall, Duration::from_millis(6));
        metrics.observe(Histogram::SesCall, Duration::from_secs(7200));
        let buckets = metrics.buckets(Histogram::SesCall);
        assert_eq!((buckets[0], buckets[1], buckets[SLOTS - 1]), (1, 1, 1));
        assert_eq!(metrics.observations(Histogram::SesCall), 3);
        assert_eq!(metrics.observations(Histogram::EventAge), 0);
        assert_eq!(metrics.sum_micros(Histogram::SesCall), 7_200_011_000);
        let snapshot = metrics.snapshot();
        assert_eq!(
            snapshot.max_micros[Histogram::SesCall as usize],
            7_200_000_000
        );
        assert_eq!(
            metrics.snapshot().max_micros[Histogram::SesCall as usize],
            0,
            "a snapshot resets the maximum"
        );
    }
}
