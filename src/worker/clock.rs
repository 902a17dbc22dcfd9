//! Wall-clock time, as leases and digest windows read it. Behind a trait so that a simulation
//! can run several tasks on tokio's paused clock, each with its own skew; production reads the
//! system clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds, as one task sees them.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Unix milliseconds now.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}
