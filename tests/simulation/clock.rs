//! A task's wall clock: the epoch, plus tokio's virtual time since the seed started, plus the
//! task's skew. Leases and digest windows read it through `Claims::with_clock`.

use quilt_notify::worker::clock::Clock;
use tokio::time::Instant;

use crate::config::EPOCH_S;

/// Unix milliseconds as one simulated task sees them.
#[derive(Debug)]
pub struct SimClock {
    /// Virtual time 0.
    pub started: Instant,
    pub skew_ms: i64,
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX / 2);
        EPOCH_S * 1000 + elapsed + self.skew_ms
    }
}
