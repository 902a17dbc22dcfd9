//! How long a failed message stays hidden before its next try.

/// Exponential backoff on the receive count: `base * 2^(receives - 1)`, capped, minus up to 20%
/// jitter so a burst of failures does not come back as a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base_seconds: u32,
    max_seconds: u32,
}

impl Backoff {
    /// A backoff starting at `base_seconds`, never above `max_seconds`.
    pub fn new(base_seconds: u32, max_seconds: u32) -> Self {
        Self {
            base_seconds,
            max_seconds: max_seconds.max(base_seconds),
        }
    }

    /// Seconds to hide a message that has been received `receive_count` times.
    /// `jitter` in `[0, 1)` removes up to 20% of the delay (pass `fastrand::f64()`).
    pub fn delay(&self, receive_count: u32, jitter: f64) -> u32 {
        let exponent = receive_count.saturating_sub(1).min(31);
        let full = u64::from(self.base_seconds)
            .saturating_mul(1u64 << exponent)
            .min(u64::from(self.max_seconds));
        let cut = (full as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as u64;
        u32::try_from(full - cut).unwrap_or(self.max_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_receive_up_to_the_cap() {
        let b = Backoff::new(5, 300);
        let delays: Vec<u32> = (1..=9).map(|n| b.delay(n, 0.0)).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn jitter_shortens_by_at_most_a_fifth() {
        let b = Backoff::new(10, 300);
        assert_eq!(b.delay(1, 0.0), 10);
        assert_eq!(b.delay(1, 0.999_999), 9);
        assert_eq!(b.delay(3, 0.5), 36);
    }

    #[test]
    fn absurd_receive_counts_do_not_overflow() {
        let b = Backoff::new(5, 43_200);
        assert_eq!(b.delay(u32::MAX, 0.0), 43_200);
        assert_eq!(b.delay(0, 0.0), 5);
    }

    #[test]
    fn a_zero_base_means_retry_at_once() {
        assert_eq!(Backoff::new(0, 0).delay(4, 0.3), 0);
    }
}
