//! A send-rate limiter shared by every poller of the process.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Spaces calls evenly at no more than `per_second`, so a burst never exceeds the SES account's
/// maximum send rate. Each caller reserves the next free slot and sleeps until it.
///
/// A throttling answer holds every caller back for a pause, with or without a configured rate:
/// an account whose rate could not be read is still asked to slow down by its throttles.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Option<Duration>,
    /// With a rate: the next free slot. Unlimited: the end of a throttle pause, if any.
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limiter at `per_second` calls; 0 or less means unlimited.
    pub fn new(per_second: f64) -> Self {
        let interval = (per_second > 0.0 && per_second.is_finite())
            .then(|| Duration::from_secs_f64(1.0 / per_second));
        Self {
            interval,
            next: Mutex::new(None),
        }
    }

    /// Waits for this caller's slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            match self.interval {
                Some(interval) => *next = Some(slot + interval),
                // Unlimited: only a throttle pause holds callers back, all of them at once.
                None if slot == now => return,
                None => {}
            }
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Holds every slot back until at least `pause` from now, after the service said we were
    /// too fast. Throttling answers to sends that were in flight together are one signal, not
    /// many: they do not add up (twenty at once would otherwise stop sending for twenty pauses).
    pub fn slow_down(&self, pause: Duration) {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        *next = Some(next.map_or(now, |n| n.max(now)).max(now + pause));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_calls_at_the_configured_rate() {
        let limiter = RateLimiter::new(4.0);
        let start = Instant::now();
        for _ in 0..9 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_means_unlimited() {
        let limiter = RateLimiter::new(0.0);
        let start = Instant::now();
        for _ in 0..1000 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_pauses_sending_even_when_the_rate_is_unlimited() {
        let limiter = RateLimiter::new(0.0);
        let start = Instant::now();
        limiter.slow_down(Duration::from_secs(1));
        limiter.acquire().await;
        limiter.acquire().await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1),
            "every send waits out the pause, then none waits"
        );
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn slowing_down_delays_the_next_slot() {
        let limiter = RateLimiter::new(10.0);
        limiter.acquire().await;
        let start = Instant::now();
        limiter.slow_down(Duration::from_secs(3));
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        limiter.acquire().await;
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(3100),
            "then the rate again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttles_that_arrive_together_pause_once() {
        let limiter = RateLimiter::new(10.0);
        let start = Instant::now();
        for _ in 0..20 {
            limiter.slow_down(Duration::from_secs(1));
        }
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
