//! What the worker reports about itself to the health endpoint: liveness is the process being
//! up; readiness is "a receive succeeded recently and the SES account is not paused".

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shared, lock-free status updated by the pollers.
#[derive(Debug)]
pub struct Status {
    started: Instant,
    /// Milliseconds after `started` of the last successful receive; 0 means never.
    last_receive_ms: AtomicU64,
    paused: AtomicBool,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last_receive_ms: AtomicU64::new(0),
            paused: AtomicBool::new(false),
        }
    }
}

impl Status {
    /// A receive call succeeded (empty or not).
    pub fn receive_succeeded(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_receive_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// The SES account was found paused (true) or able to send again (false).
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Whether the account is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// Time since the last successful receive, if there was one.
    pub fn since_last_receive(&self) -> Option<Duration> {
        match self.last_receive_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }

    /// Ready: received within `within`, and not paused. The reason when not.
    pub fn readiness(&self, within: Duration) -> Result<(), String> {
        if self.is_paused() {
            return Err("SES account cannot send (paused); not receiving".to_owned());
        }
        match self.since_last_receive() {
            None => Err("no successful receive yet".to_owned()),
            Some(age) if age > within => Err(format!(
                "last successful receive {}s ago (limit {}s)",
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
    fn ready_only_after_a_receive_and_while_not_paused() {
        let status = Status::default();
        assert!(status.readiness(Duration::from_secs(60)).is_err());
        status.receive_succeeded();
        assert!(status.readiness(Duration::from_secs(60)).is_ok());
        status.set_paused(true);
        let reason = status
            .readiness(Duration::from_secs(60))
            .expect_err("paused");
        assert!(reason.contains("paused"), "{reason}");
        status.set_paused(false);
        assert!(status.readiness(Duration::from_secs(60)).is_ok());
    }
}
