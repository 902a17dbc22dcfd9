//! Leases: whoever holds a live lease on a piece of work (one route's email for one event, or
//! one digest window) is the only task doing it. A lease that is not renewed (its task died)
//! ends, and, once the allowed clock skew has passed too, another task takes the work over.

use super::batch::Submitted;
use super::{key, n, number, pending_key, s, string, window_pk, StateStore, TTL_ATTRIBUTE};
use crate::domain::schedule::Window;
use crate::ports::{Attr, Changes, Cond, Item, ItemKey, StateError, Update, Written};

/// What a lease is held on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKey<'a> {
    /// The email of `route` for the event `event_id`.
    Send {
        /// EventBridge event id.
        event_id: &'a str,
        /// Route name.
        route: &'a str,
    },
    /// The digest of a window.
    Window {
        /// The route whose digest it is (whose template and recipients it goes out with).
        route: &'a str,
        /// The route that recorded the window's events: the same, unless `state retry --as`
        /// handed an old route's window to `route`.
        source: &'a str,
        /// The window.
        window: Window,
    },
}

impl LeaseKey<'_> {
    fn item_key(&self) -> ItemKey {
        match *self {
            Self::Send { event_id, route } => send_key(event_id, route),
            Self::Window { source, window, .. } => key(window_pk(source, window), "window"),
        }
    }
}

/// The key of the lease on one route's email for one event (also its digest once-marker).
pub(crate) fn send_key(event_id: &str, route: &str) -> ItemKey {
    key(format!("send#{event_id}"), route)
}

/// The answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The caller holds the lease now. `takeover`: it took over the ended lease of another
    /// owner (that owner died or stalled mid-send).
    Won {
        /// Whether another owner's ended lease was taken.
        takeover: bool,
    },
    /// Finished already: sent, recorded for a digest, or (a window) given up.
    Done,
    /// Another owner's lease counts as live until this time (Unix milliseconds; its end plus
    /// the allowed clock skew).
    Held {
        /// When the lease can be taken over unless renewed.
        until_ms: i64,
    },
}

/// How a claimed piece of work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish<'a> {
    /// SES accepted the email, with this message id.
    Sent {
        /// The SES message id.
        message_id: &'a str,
    },
    /// It can never be sent as it is (a digest that SES refuses or that cannot render): kept,
    /// with the reason, until `state retry` or its items expire.
    Failed {
        /// Why.
        error: &'a str,
    },
}

const CLAIMED: &str = "claimed";

fn mine(owner: &str) -> Cond {
    Cond::All(vec![
        Cond::Eq("status", Attr::S(CLAIMED.to_owned())),
        Cond::Eq("owner", s(owner)),
    ])
}

impl StateStore {
    /// Takes the lease on `key` until `now_ms + lease_ms`, unless the work is done or another
    /// owner's lease is live (its end plus the skew margin is not past).
    ///
    /// # Errors
    /// The table failed.
    pub async fn claim(
        &self,
        lease: LeaseKey<'_>,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Claim, StateError> {
        let changes = self.claim_changes(lease, owner, now_ms, lease_ms);
        // Held through a lone claim, so the claims arriving meanwhile gather into one batch.
        let _turn = match (lease, &self.batch) {
            (LeaseKey::Send { .. }, Some(batch)) => {
                // Batched, a claim may only win what needs no takeover: a fresh send, or ours.
                let fresh = Cond::Any(vec![
                    Cond::Missing("status"),
                    mine(owner),
                    Cond::Eq("status", s("retry")),
                ]);
                let update = Update {
                    key: lease.item_key(),
                    changes: changes.clone(),
                    cond: Some(fresh),
                };
                match batch.submit(self.table.as_ref(), update).await {
                    Submitted::Applied => return Ok(Claim::Won { takeover: false }),
                    Submitted::Alone(turn) => turn,
                }
            }
            _ => None,
        };
        match self.try_claim(lease, owner, now_ms, &changes).await {
            Ok(claim) => Ok(claim),
            Err(e) => Err(self.judged(e).await),
        }
    }

    /// What a claim writes: the lease, and what the item is about.
    fn claim_changes(
        &self,
        lease: LeaseKey<'_>,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Changes {
        let mut set = vec![
            ("status", s(CLAIMED)),
            ("owner", s(owner)),
            ("lease_until", n(now_ms.saturating_add(lease_ms))),
            ("claimed_at", n(now_ms)),
        ];
        match lease {
            LeaseKey::Send { event_id, route } => {
                set.push(("event_id", s(event_id)));
                set.push(("route", s(route)));
                set.push((TTL_ATTRIBUTE, self.expires(now_ms / 1000)));
            }
            LeaseKey::Window { source, window, .. } => {
                set.push(("route", s(source)));
                set.push(("window_start", n(window.start)));
                set.push(("window_end", n(window.end)));
                set.push((TTL_ATTRIBUTE, self.expires(window.end)));
            }
        }
        Changes {
            set,
            remove: Vec::new(),
        }
    }

    async fn try_claim(
        &self,
        lease: LeaseKey<'_>,
        owner: &str,
        now_ms: i64,
        changes: &Changes,
    ) -> Result<Claim, StateError> {
        let ended_before = now_ms.saturating_sub(self.skew_margin_ms);
        let claimable = Cond::Any(vec![
            Cond::Missing("status"),
            Cond::All(vec![
                Cond::Eq("status", s(CLAIMED)),
                Cond::Any(vec![
                    Cond::Lt("lease_until", ended_before),
                    Cond::Eq("owner", s(owner)),
                ]),
            ]),
            Cond::Eq("status", s("retry")),
        ]);
        let item_key = lease.item_key();
        match self
            .table
            .update(&item_key, changes, Some(&claimable))
            .await?
        {
            Written::Applied(old) => Ok(Claim::Won {
                takeover: old.as_ref().is_some_and(|old| {
                    string(old, "status") == Some(CLAIMED)
                        && string(old, "owner").is_some_and(|previous| previous != owner)
                }),
            }),
            // Gone between the write and the read (released): the next attempt claims it.
            Written::Refused(None) => Ok(Claim::Held { until_ms: now_ms }),
            Written::Refused(Some(item)) => self.refused(lease, &item).await,
        }
    }

    /// What the item that refused a claim says, after finishing what a task that died
    /// between a window's two final writes left undone.
    async fn refused(&self, lease: LeaseKey<'_>, item: &Item) -> Result<Claim, StateError> {
        match (string(item, "status"), lease) {
            (Some(CLAIMED), _) => Ok(Claim::Held {
                until_ms: number(item, "lease_until")
                    .unwrap_or(0)
                    .saturating_add(self.skew_margin_ms),
            }),
            (Some("sent"), LeaseKey::Window { route, window, .. }) => {
                self.table.delete(&pending_key(route, window), None).await?;
                Ok(Claim::Done)
            }
            (Some("failed"), LeaseKey::Window { route, window, .. }) => {
                let error = string(item, "error").unwrap_or_default();
                self.mark_index_failed(route, window, error).await?;
                Ok(Claim::Done)
            }
            _ => Ok(Claim::Done),
        }
    }

    /// Extends the caller's lease to `until_ms`; false if the caller no longer holds it.
    ///
    /// # Errors
    /// The table failed.
    pub async fn renew(
        &self,
        lease: LeaseKey<'_>,
        owner: &str,
        until_ms: i64,
    ) -> Result<bool, StateError> {
        let changes = Changes {
            set: vec![("lease_until", n(until_ms))],
            remove: Vec::new(),
        };
        let renewed = self
            .table
            .update(&lease.item_key(), &changes, Some(&mine(owner)))
            .await;
        match renewed {
            Ok(Written::Applied(_)) => Ok(true),
            Ok(Written::Refused(_)) => Ok(false),
            Err(e) => Err(self.judged(e).await),
        }
    }

    /// Marks the claimed work finished for good, whoever holds the lease now: the email went
    /// out (or never can). A finished window leaves the pending list, or stays on it marked
    /// failed.
    ///
    /// # Errors
    /// The table failed; the caller retries (see `worker::claims`).
    pub async fn finish(
        &self,
        lease: LeaseKey<'_>,
        owner: &str,
        finish: Finish<'_>,
        now_ms: i64,
    ) -> Result<(), StateError> {
        let changes = Self::finish_changes(owner, finish, now_ms);
        // A sent email's mark goes in a batch when others are being written (see `batch`).
        let _turn = match (lease, finish, &self.batch) {
            (LeaseKey::Send { .. }, Finish::Sent { .. }, Some(batch)) => {
                let update = Update {
                    key: lease.item_key(),
                    changes: changes.clone(),
                    cond: None,
                };
                match batch.submit(self.table.as_ref(), update).await {
                    Submitted::Applied => return Ok(()),
                    Submitted::Alone(turn) => turn,
                }
            }
            _ => None,
        };
        match self.try_finish(lease, finish, &changes).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.judged(e).await),
        }
    }

    /// What finishing writes: the outcome, and the lease ended.
    fn finish_changes(owner: &str, finish: Finish<'_>, now_ms: i64) -> Changes {
        let (status, field, value) = match finish {
            Finish::Sent { message_id } => ("sent", "ses_message_id", message_id),
            Finish::Failed { error } => ("failed", "error", error),
        };
        Changes {
            set: vec![
                ("status", s(status)),
                (field, s(value)),
                ("finished_at", n(now_ms)),
                ("finished_by", s(owner)),
                ("lease_until", n(0)),
            ],
            remove: Vec::new(),
        }
    }

    async fn try_finish(
        &self,
        lease: LeaseKey<'_>,
        finish: Finish<'_>,
        changes: &Changes,
    ) -> Result<(), StateError> {
        self.table.update(&lease.item_key(), changes, None).await?;
        if let LeaseKey::Window { route, window, .. } = lease {
            match finish {
                Finish::Sent { .. } => {
                    self.table.delete(&pending_key(route, window), None).await?;
                }
                Finish::Failed { error } => self.mark_index_failed(route, window, error).await?,
            }
        }
        Ok(())
    }

    /// Gives the lease up after a failure that a retry may cure, so the next attempt, here or
    /// in another task, need not wait for it to end. A window stays closed to new events.
    ///
    /// # Errors
    /// The table failed (the lease then simply runs out).
    pub async fn release(&self, lease: LeaseKey<'_>, owner: &str) -> Result<(), StateError> {
        let item_key = lease.item_key();
        let released = match lease {
            LeaseKey::Send { .. } => self.table.delete(&item_key, Some(&mine(owner))).await,
            // The window's item keeps `closed`; only the lease ends, and without an owner a
            // later claim is not taken for a takeover.
            LeaseKey::Window { .. } => {
                let changes = Changes {
                    set: vec![("lease_until", n(0))],
                    remove: vec!["owner"],
                };
                self.table
                    .update(&item_key, &changes, Some(&mine(owner)))
                    .await
            }
        };
        match released {
            // Refused: not ours any more, nothing to give up.
            Ok(_) => Ok(()),
            Err(e) => Err(self.judged(e).await),
        }
    }

    /// The route's pending-list entry for the window says it failed, and why.
    pub(super) async fn mark_index_failed(
        &self,
        route: &str,
        window: Window,
        error: &str,
    ) -> Result<(), StateError> {
        let changes = Changes {
            set: vec![("failed", Attr::Bool(true)), ("error", s(error))],
            remove: vec!["retry"],
        };
        // Only an entry still listed: a window sent meanwhile stays off the list.
        let listed = Cond::Eq("window_start", n(window.start));
        self.table
            .update(&pending_key(route, window), &changes, Some(&listed))
            .await
            .map(|_| ())
    }
}
