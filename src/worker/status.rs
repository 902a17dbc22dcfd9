//! What the worker reports about itself to the health endpoint: liveness is the process being
//! up; readiness is "the worker made progress recently and is not paused" (by an SES account
//! that cannot send, or an unusable state table).
//!
//! Progress is any step that moves messages along: a receive that answered (empty or not), an
//! email SES accepted, a delete. Receives alone are not enough: a busy worker whose slots are all
//! taken by slow sends does not receive for a while, yet it is healthy and must stay in service.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

// Tokio's clock: the same as the system's in production, and one tests can pause and advance.
use tokio::time::Instant;

use super::pause::Cause;

/// Shared, lock-free status updated by the pollers and the pipeline.
#[derive(Debug)]
pub struct Status {
    started: Instant,
    /// Milliseconds after `started` of the last progress; 0 means never.
    last_progress_ms: AtomicU64,
    /// 0: not paused; otherwise 1 + the index of the cause in `CAUSES`.
    paused: AtomicU8,
}

const CAUSES: [Cause; 2] = [Cause::SesAccount, Cause::StateTable];

impl Default for Status {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last_progress_ms: AtomicU64::new(0),
            paused: AtomicU8::new(0),
        }
    }
}

impl Status {
    /// A receive answered, an email was accepted or a message deleted.
    pub fn progressed(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_progress_ms
            .fetch_max(ms.max(1), Ordering::Relaxed);
    }

    /// The worker stopped receiving for this cause (Some), or resumed (None).
    pub fn set_paused(&self, cause: Option<Cause>) {
        let code = cause
            .and_then(|c| CAUSES.iter().position(|&k| k == c))
            .map_or(0, |i| u8::try_from(i + 1).unwrap_or(u8::MAX));
        self.paused.store(code, Ordering::Relaxed);
    }

    /// Why the worker is paused, if it is.
    pub fn paused(&self) -> Option<Cause> {
        match self.paused.load(Ordering::Relaxed) {
            0 => None,
            code => CAUSES.get(usize::from(code) - 1).copied(),
        }
    }

    /// Time since the last progress, if there was any.
    pub fn since_last_progress(&self) -> Option<Duration> {
        match self.last_progress_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }

    /// Ready: progressed within `within`, and not paused. The reason when not.
    pub fn readiness(&self, within: Duration) -> Result<(), String> {
        if let Some(cause) = self.paused() {
            return Err(cause.describe().to_owned());
        }
        match self.since_last_progress() {
            None => Err("no successful receive yet".to_owned()),
            Some(age) if age > within => Err(format!(
                "no progress (receive, send or delete) for {}s (limit {}s)",
                age.as_secs(),
                within.as_secs()
            )),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_after_progress_and_while_not_paused() {
        let status = Status::default();
        assert!(status.readiness(Duration::from_secs(60)).is_err());
        status.progressed();
        assert!(status.readiness(Duration::from_secs(60)).is_ok());
        status.set_paused(Some(Cause::SesAccount));
        let reason = status
            .readiness(Duration::from_secs(60))
            .expect_err("paused");
        assert!(reason.contains("paused"), "{reason}");
        status.set_paused(Some(Cause::StateTable));
        let reason = status
            .readiness(Duration::from_secs(60))
            .expect_err("paused");
        assert!(reason.contains("state table"), "{reason}");
        status.set_paused(None);
        assert!(status.readiness(Duration::from_secs(60)).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn progress_that_is_too_old_is_not_ready() {
        let status = Status::default();
        status.progressed();
        tokio::time::advance(Duration::from_secs(61)).await;
        let reason = status
            .readiness(Duration::from_secs(60))
            .expect_err("stale");
        assert!(reason.contains("no progress"), "{reason}");
        status.progressed();
        assert_eq!(status.readiness(Duration::from_secs(60)), Ok(()));
    }
}
