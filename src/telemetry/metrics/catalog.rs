//! What the worker measures and how each metric is named: the [`Counter`], [`Histogram`] and
//! [`Gauge`] variants, each described once in a table ([`COUNTERS`], [`HISTOGRAMS`], [`GAUGES`])
//! that both export formats read for its names, help text and unit.
//!
//! Knows nothing of how values are stored ([`Metrics`](super::Metrics)) nor of the export
//! formats' layout.

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
    /// per route and type in [`Metrics::feedback`](super::Metrics::feedback).
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
}
