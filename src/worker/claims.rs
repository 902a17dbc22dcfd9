//! Leases on shared state: claim a piece of work (one route's email for one event, one digest
//! window), hold the lease while the work runs, then finish it or give it up.
//!
//! Whoever holds a live lease is the only task doing that work; a lease that is not renewed
//! (its task died) ends after `state.lease_seconds`, and another task takes the work over.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::clock::{Clock, SystemClock};
use crate::ports::{StateError, StateFailureKind};
use crate::worker::state::{Claim, Finish, LeaseKey, StateStore};

/// Attempts at marking work finished, the first retry after `FINISH_FIRST_RETRY`, doubling:
/// 0.2 + 0.4 + … + 6.4 s, about 12.6 s in all.
const FINISH_ATTEMPTS: u32 = 7;
const FINISH_FIRST_RETRY: Duration = Duration::from_millis(200);

/// The state store with this task's identity and lease length.
#[derive(Clone)]
pub struct Claims {
    store: StateStore,
    owner: String,
    lease: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// Unix milliseconds now, by the system clock.
pub fn now_ms() -> i64 {
    SystemClock.now_ms()
}

impl Claims {
    /// Claims in `store` as `owner` (unique per process), for leases of `lease`.
    pub fn new(store: StateStore, owner: impl Into<String>, lease: Duration) -> Self {
        Self {
            store,
            owner: owner.into(),
            lease,
            clock: Arc::new(SystemClock),
        }
    }

    /// The same, reading time from `clock` (a simulated task's, with its skew).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Unix milliseconds now, by this task's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A fresh owner id for this process: the host name (the ECS task's, in production) and a
    /// random suffix, so that a restarted process never mistakes its predecessor's leases for
    /// its own.
    pub fn new_owner() -> String {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "quilt-notify".to_owned());
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("{host}-{}", &id[..12])
    }

    /// This process's owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The store, for the calls that are not about leases.
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// Takes the lease on `key` for one lease length.
    ///
    /// # Errors
    /// The store failed.
    pub async fn claim(&self, key: LeaseKey<'_>) -> Result<Claim, StateError> {
        self.store
            .claim(key, &self.owner, self.now_ms(), self.lease_ms())
            .await
    }

    /// Runs `work` while renewing the lease on `key` every third of its length, so a slow send
    /// is not taken over. A renewal that finds the lease gone, or fails, is logged: the work
    /// goes on (it may already be under way at SES), and another task may do it again.
    pub async fn hold<F: Future>(&self, key: LeaseKey<'_>, work: F) -> F::Output {
        self.hold_all(key, &[], work).await
    }

    /// The same for several leases at once (the windows of one digest).
    pub async fn hold_all<F: Future>(
        &self,
        key: LeaseKey<'_>,
        more: &[LeaseKey<'_>],
        work: F,
    ) -> F::Output {
        let every = self.lease / 3;
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                output = &mut work => return output,
                _ = renew.tick() => {
                    let until = self.now_ms().saturating_add(self.lease_ms());
                    for key in std::iter::once(key).chain(more.iter().copied()) {
                        match self.store.renew(key, &self.owner, until).await {
                            Ok(true) => tracing::debug!(?key, "lease renewed"),
                            Ok(false) => tracing::warn!(?key, "lease lost while working (another task may do this work too)"),
                            Err(e) => tracing::warn!(?key, error = %e, "could not renew lease"),
                        }
                    }
                }
            }
        }
    }

    /// Marks the work finished for good, retrying a transient failure for up to about 12 s
    /// while the lease is kept: an unmarked digest window would be taken over and sent again
    /// once its lease ended.
    ///
    /// # Errors
    /// The store failed on every attempt, or is unusable.
    pub async fn finish(&self, key: LeaseKey<'_>, finish: Finish<'_>) -> Result<(), StateError> {
        let attempts = async {
            let mut wait = FINISH_FIRST_RETRY;
            let mut attempt = 1;
            loop {
                match self
                    .store
                    .finish(key, &self.owner, finish, self.now_ms())
                    .await
                {
                    Err(e)
                        if e.kind == StateFailureKind::Transient && attempt < FINISH_ATTEMPTS =>
                    {
                        tracing::debug!(?key, error = %e, attempt, "could not mark finished; trying again");
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                        attempt += 1;
                    }
                    result => return result,
                }
            }
        };
        self.hold(key, attempts).await
    }

    /// Gives the lease up after a failure, so a retry need not wait for it to end. Best
    /// effort: if the store fails too, the lease simply runs out.
    pub async fn release(&self, key: LeaseKey<'_>) {
        if let Err(e) = self.store.release(key, &self.owner).await {
            tracing::debug!(?key, error = %e, "could not release lease; it runs out by itself");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::table::MemoryTable;
    use crate::worker::state::StateOptions;

    fn store(table: &Arc<MemoryTable>) -> StateStore {
        StateStore::new(
            Arc::clone(table) as Arc<dyn crate::ports::DynStateTable>,
            StateOptions::default(),
        )
    }

    fn claims(table: &Arc<MemoryTable>, owner: &str) -> Claims {
        Claims::new(store(table), owner, Duration::from_secs(3))
    }

    const KEY: LeaseKey<'static> = LeaseKey::Send {
        event_id: "e1",
        route: "r",
    };

    #[tokio::test(start_paused = true)]
    async fn marking_finished_outlasts_a_short_outage_of_the_store() {
        let table = Arc::new(MemoryTable::new());
        let a = claims(&table, "a");
        a.claim(KEY).await.expect("claim");
        table.fail(Some(StateFailureKind::Transient));
        let healer = {
            let table = Arc::clone(&table);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                table.fail(None);
            })
        };
        a.finish(KEY, Finish::Sent { message_id: "m" })
            .await
            .expect("marked once the store is back");
        healer.await.expect("healer");
        assert_eq!(a.claim(KEY).await, Ok(Claim::Done));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unusable_store_is_not_retried() {
        let table = Arc::new(MemoryTable::new());
        let a = claims(&table, "a");
        table.fail(Some(StateFailureKind::Unusable));
        let calls = table.units().calls;
        assert!(a
            .finish(KEY, Finish::Sent { message_id: "m" })
            .await
            .is_err());
        assert_eq!(table.units().calls - calls, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_send_keeps_its_lease() {
        let table = Arc::new(MemoryTable::new());
        let a = claims(&table, "a");
        a.claim(KEY).await.expect("claim");
        let calls = table.units().calls;
        // Tokio's clock is paused and advances; the wall clock the leases use barely moves, so
        // the renewal shows as calls rather than as a later end.
        a.hold(KEY, tokio::time::sleep(Duration::from_secs(10)))
            .await;
        assert!(
            table.units().calls - calls >= 9,
            "renewed about every second: {}",
            table.units().calls - calls
        );
        let b = claims(&table, "b");
        assert!(matches!(b.claim(KEY).await, Ok(Claim::Held { .. })));
    }
}
