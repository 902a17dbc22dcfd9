//! What the worker counts about itself, recorded: [`Metrics`] holds a value per counter and
//! gauge and the buckets of each duration histogram; what each one is and how it is named is the
//! [`catalog`]'s.
//!
//! Recording is a few relaxed atomic adds, so the hot path never takes a lock (SES feedback,
//! counted per route and rare, takes one). Knows nothing of
//! the export formats ([`prometheus`](super::prometheus), [`emf`](super::emf)) nor of when or
//! where they are written.

pub mod catalog;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

pub use catalog::{Counter, Descriptor, Gauge, Histogram, COUNTERS, GAUGES, HISTOGRAMS};

use crate::domain::feedback::FeedbackKind;

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
