//! The process-wide memory budget for manifests being read (`s3.memory_megabytes`).
//!
//! A manifest's summary holds about 100 bytes a file, roughly half the manifest's own size, and
//! more while it grows; so many large manifests read at once (forty messages on 100,000-file
//! packages) can exceed a task's memory. Each event reserves the sizes of the large manifests it
//! is about to read, all at once, before reading any of them, and holds the reservation until its
//! details are made (its summaries live that long). Reserving all at once, while holding
//! nothing, is what keeps two events from each holding part and waiting for the rest.

use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

/// Bytes of manifests that may be read at once, across all messages. Counted in KiB (a
/// semaphore takes at most `u32::MAX` permits at a time).
#[derive(Debug)]
pub struct MemoryBudget {
    kib: Semaphore,
    total_kib: u32,
}

/// A reservation: released when dropped.
pub(super) type Reservation<'a> = SemaphorePermit<'a>;

/// No reservation came within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Busy;

impl MemoryBudget {
    /// A budget of `bytes` (rounded up to KiB, at most 4 TiB).
    pub fn new(bytes: u64) -> Self {
        let total_kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        Self {
            kib: Semaphore::new(total_kib as usize),
            total_kib,
        }
    }

    /// A budget of `megabytes` MiB.
    pub fn megabytes(megabytes: u64) -> Self {
        Self::new(megabytes.saturating_mul(1024 * 1024))
    }

    /// The whole budget, in bytes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.total_kib) * 1024
    }

    /// Bytes reserved now (for the benchmark's and the tests' checks).
    pub fn in_use(&self) -> u64 {
        let free = u64::try_from(self.kib.available_permits()).unwrap_or(u64::MAX);
        self.bytes().saturating_sub(free * 1024)
    }

    /// Reserves `bytes` (at most [`bytes`](Self::bytes)), waiting at most `wait` for them. The
    /// semaphore is fair: a large reservation is not starved by a stream of small ones.
    pub(super) async fn reserve(
        &self,
        bytes: u64,
        wait: Duration,
    ) -> Result<Reservation<'_>, Busy> {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.total_kib);
        match tokio::time::timeout(wait, self.kib.acquire_many(kib)).await {
            Ok(Ok(permit)) => Ok(permit),
            // Elapsed, or closed (never: the budget is never closed).
            _ => Err(Busy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_reservation_waits_for_room_and_gives_it_back_when_dropped() {
        let budget = MemoryBudget::new(10 * 1024);
        let wait = Duration::from_secs(5);
        let first = budget.reserve(6 * 1024, wait).await.expect("room");
        assert_eq!(budget.in_use(), 6 * 1024);
        assert!(
            matches!(budget.reserve(6 * 1024, wait).await, Err(Busy)),
            "no room"
        );
        drop(first);
        let again = budget.reserve(6 * 1024, wait).await.expect("room again");
        assert_eq!(budget.in_use(), 6 * 1024);
        drop(again);
        assert_eq!(budget.in_use(), 0);
        assert_eq!(MemoryBudget::megabytes(256).bytes(), 256 << 20);
        assert_eq!(MemoryBudget::new(1).bytes(), 1024, "rounded up to KiB");
    }
}
