//! How far this task's clock is from AWS's, measured on every AWS answer. Leases in the state
//! table compare the clocks of different tasks, so a task whose clock is off must say so: an SDK
//! interceptor on every client notes when each request leaves and reads the `Date` header of
//! its answer; [`SkewWatch`] keeps the estimate (the `ClockSkew` gauge), counts answers past
//! `state.max_clock_skew_seconds` (`ClockSkewExceeded`) and warns once when the clock goes past
//! it (and says once when it is back).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_sqs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sqs::error::BoxError;
use aws_sdk_sqs::primitives::{DateTime, DateTimeFormat};
use aws_smithy_types::config_bag::{Storable, StoreReplace};

use crate::telemetry::metrics::{Counter, Gauge, Metrics};

/// Only answers quicker than this are measured: the `Date` of a slower one (a long poll, a slow
/// send) may be from any moment of the wait, so it proves little.
const QUICK: Duration = Duration::from_secs(1);

/// This task's clock minus AWS's, in milliseconds, as far as one answer proves it: the service
/// stamped `date_s` (whole seconds, cut down) at a moment between `sent_ms` and `received_ms` by
/// this task's clock, so the offset lies in `(sent − date − 1 s, received − date]`; the value
/// of that interval nearest to 0. It never exceeds the true offset, so a slow answer cannot
/// raise a false alarm.
pub fn proven_offset_ms(sent_ms: i64, received_ms: i64, date_s: i64) -> i64 {
    let date_ms = date_s.saturating_mul(1000);
    let low = sent_ms.saturating_sub(date_ms).saturating_sub(1000);
    let high = received_ms.saturating_sub(date_ms);
    if low > 0 {
        low
    } else if high < 0 {
        high
    } else {
        0
    }
}

/// The process's clock-skew estimate, fed by every AWS client's interceptor.
#[derive(Debug)]
pub struct SkewWatch {
    allowed: Duration,
    metrics: Arc<Metrics>,
    /// Past the allowed skew now (warned; said again only after it came back within half).
    off: AtomicBool,
}

impl SkewWatch {
    /// A watch that warns past `allowed` (`state.max_clock_skew_seconds`) and records into
    /// `metrics`.
    pub fn new(allowed: Duration, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            allowed,
            metrics,
            off: AtomicBool::new(false),
        })
    }

    /// The interceptor to put on an SDK client's configuration.
    pub fn interceptor(self: &Arc<Self>) -> SkewInterceptor {
        SkewInterceptor(Arc::clone(self))
    }

    /// One answer: the request left at `sent`, the answer came at `received` (this task's
    /// clock), dated `date_s` (Unix seconds) by the service.
    pub fn observe(&self, sent: SystemTime, received: SystemTime, date_s: i64) {
        if received
            .duration_since(sent)
            .map_or(true, |took| took > QUICK)
        {
            return;
        }
        let offset = proven_offset_ms(unix_ms(sent), unix_ms(received), date_s);
        self.metrics.set(Gauge::ClockSkew, offset);
        let allowed = i64::try_from(self.allowed.as_millis()).unwrap_or(i64::MAX);
        let seconds = offset as f64 / 1000.0;
        if offset.abs() > allowed {
            self.metrics.add(Counter::ClockSkewExceeded, 1);
            if !self.off.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    clock_skew_s = seconds,
                    max_clock_skew_s = self.allowed.as_secs(),
                    "this task's clock is {seconds:+.1} s off AWS's (the Date of its answers), more than state.max_clock_skew_seconds: leases compare task clocks, so another task may take over a live lease or wait for a dead one; fix the clock (NTP)"
                );
            }
        } else if offset.abs() <= allowed / 2 && self.off.swap(false, Ordering::Relaxed) {
            tracing::info!(
                clock_skew_s = seconds,
                "this task's clock agrees with AWS's again"
            );
        }
    }
}

/// Unix milliseconds of a moment.
fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// When the request left, kept between the interceptor's two hooks.
#[derive(Debug, Clone, Copy)]
struct SentAt(SystemTime);

impl Storable for SentAt {
    type Storer = StoreReplace<Self>;
}

/// Feeds a [`SkewWatch`] from one SDK client's answers. Never fails a call.
#[derive(Debug, Clone)]
pub struct SkewInterceptor(Arc<SkewWatch>);

impl Intercept for SkewInterceptor {
    fn name(&self) -> &'static str {
        "ClockSkew"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(SentAt(SystemTime::now()));
        Ok(())
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let received = SystemTime::now();
        let Some(SentAt(sent)) = cfg.load::<SentAt>().copied() else {
            return Ok(());
        };
        let date = context
            .response()
            .headers()
            .get("date")
            .and_then(|date| DateTime::from_str(date, DateTimeFormat::HttpDate).ok());
        if let Some(date) = date {
            self.0.observe(sent, received, date.secs());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_proves_only_the_offset_its_timing_allows() {
        // Sent at 100.2 s, answered at 100.4 s, dated 100 s: agrees within the second.
        assert_eq!(proven_offset_ms(100_200, 100_400, 100), 0);
        // Dated 70 s: at least 29.2 s ahead.
        assert_eq!(proven_offset_ms(100_200, 100_400, 70), 29_200);
        // Dated 130 s: at least 29.6 s behind.
        assert_eq!(proven_offset_ms(100_200, 100_400, 130), -29_600);
        // A long wait proves little: dated 95 s after a 20 s poll could be no skew at all.
        assert_eq!(proven_offset_ms(80_000, 100_000, 95), 0);
    }

    #[test]
    fn past_the_allowed_skew_the_watch_counts_every_answer_and_exports_the_estimate() {
        let metrics = Arc::new(Metrics::default());
        let watch = SkewWatch::new(Duration::from_secs(2), Arc::clone(&metrics));
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        watch.observe(at(100_200), at(100_400), 100);
        assert_eq!(metrics.gauge(Gauge::ClockSkew), 0);
        for _ in 0..3 {
            watch.observe(at(100_200), at(100_400), 90);
        }
        assert_eq!(metrics.gauge(Gauge::ClockSkew), 9_200);
        assert_eq!(metrics.count(Counter::ClockSkewExceeded), 3);
        // Slow answers are not measured.
        watch.observe(at(100_000), at(103_000), 50);
        assert_eq!(metrics.gauge(Gauge::ClockSkew), 9_200);
        watch.observe(at(100_200), at(100_400), 100);
        assert_eq!(metrics.gauge(Gauge::ClockSkew), 0);
        assert_eq!(metrics.count(Counter::ClockSkewExceeded), 3);
    }
}
