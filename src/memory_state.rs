//! A [`StateStore`] held in memory, with the DynamoDB adapter's semantics: the pipeline's and
//! the digest sender's tests use it (with injected failures and counted calls), and so does the
//! pipeline bench for the cost of the state code path without a network.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::ports::{
    BoxFuture, Claim, Finish, LeaseKey, Recorded, StateError, StateFailureKind, StateStore, Window,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Claimed,
    /// A digest record under way, into this window.
    Recording(Window),
    Recorded,
    Finished,
}

#[derive(Debug, Clone)]
struct Lease {
    status: Status,
    owner: String,
    until_ms: i64,
}

type Key = (String, String);

#[derive(Debug, Default)]
struct Tables {
    leases: HashMap<Key, Lease>,
    entries: HashMap<(String, Window), BTreeMap<String, String>>,
    closed: BTreeSet<(String, Window)>,
    pending: BTreeSet<(String, Window)>,
    sent: Vec<(String, String)>,
}

/// Leases, digest entries and pending windows, in memory.
#[derive(Debug, Default)]
pub struct MemoryState {
    tables: Mutex<Tables>,
    failure: Mutex<Option<StateFailureKind>>,
    calls: Mutex<usize>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn key(lease: LeaseKey<'_>) -> Key {
    match lease {
        LeaseKey::Send { event_id, route } => (format!("send#{event_id}"), route.to_owned()),
        LeaseKey::Window { route, window } => (
            format!("window#{route}#{}", window.start),
            "window".to_owned(),
        ),
    }
}

fn recording(window: Window) -> Lease {
    Lease {
        status: Status::Recording(window),
        owner: String::new(),
        until_ms: 0,
    }
}

impl MemoryState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call fails this way from now on (None: calls work again).
    pub fn fail(&self, kind: Option<StateFailureKind>) {
        *locked(&self.failure) = kind;
    }

    /// How many calls were made.
    pub fn calls(&self) -> usize {
        *locked(&self.calls)
    }

    /// The (key, message id) of everything finished as sent, in order.
    pub fn sent(&self) -> Vec<(String, String)> {
        locked(&self.tables).sent.clone()
    }

    /// Who holds the lease on `key` and until when, if anyone holds it.
    pub fn holder(&self, lease: LeaseKey<'_>) -> Option<(String, i64)> {
        locked(&self.tables)
            .leases
            .get(&key(lease))
            .filter(|l| l.status == Status::Claimed)
            .map(|l| (l.owner.clone(), l.until_ms))
    }

    fn check(&self, operation: &'static str) -> Result<MutexGuard<'_, Tables>, StateError> {
        *locked(&self.calls) += 1;
        match *locked(&self.failure) {
            None => Ok(locked(&self.tables)),
            Some(kind) => Err(StateError {
                kind,
                operation,
                table: "memory".to_owned(),
                code: match kind {
                    StateFailureKind::Transient => "ThrottlingException".to_owned(),
                    StateFailureKind::Unusable => "ResourceNotFoundException".to_owned(),
                },
                message: "injected failure".to_owned(),
            }),
        }
    }
}

impl StateStore for MemoryState {
    fn claim<'a>(
        &'a self,
        lease: LeaseKey<'a>,
        owner: &'a str,
        now_ms: i64,
        lease_ms: i64,
    ) -> BoxFuture<'a, Result<Claim, StateError>> {
        Box::pin(async move {
            let mut tables = self.check("PutItem")?;
            let entry = tables.leases.entry(key(lease));
            let claim = match &entry {
                std::collections::hash_map::Entry::Occupied(held) => {
                    let held = held.get();
                    match held.status {
                        Status::Recorded | Status::Recording(_) | Status::Finished => {
                            return Ok(Claim::Done)
                        }
                        Status::Claimed if held.owner != owner && held.until_ms >= now_ms => {
                            return Ok(Claim::Held {
                                until_ms: held.until_ms,
                            })
                        }
                        Status::Claimed => Claim::Won {
                            takeover: held.owner != owner,
                        },
                    }
                }
                std::collections::hash_map::Entry::Vacant(_) => Claim::Won { takeover: false },
            };
            let lease = Lease {
                status: Status::Claimed,
                owner: owner.to_owned(),
                until_ms: now_ms + lease_ms,
            };
            entry
                .and_modify(|l| *l = lease.clone())
                .or_insert_with(|| lease);
            Ok(claim)
        })
    }

    fn renew<'a>(
        &'a self,
        lease: LeaseKey<'a>,
        owner: &'a str,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        Box::pin(async move {
            let mut tables = self.check("UpdateItem")?;
            Ok(match tables.leases.get_mut(&key(lease)) {
                Some(l) if l.status == Status::Claimed && l.owner == owner => {
                    l.until_ms = until_ms;
                    true
                }
                _ => false,
            })
        })
    }

    fn finish<'a>(
        &'a self,
        lease: LeaseKey<'a>,
        owner: &'a str,
        finish: Finish<'a>,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let mut tables = self.check("UpdateItem")?;
            let k = key(lease);
            if let Finish::Sent { message_id } = finish {
                tables.sent.push((k.0.clone(), message_id.to_owned()));
            }
            tables.leases.insert(
                k,
                Lease {
                    status: Status::Finished,
                    owner: owner.to_owned(),
                    until_ms: 0,
                },
            );
            if let LeaseKey::Window { route, window } = lease {
                tables.pending.remove(&(route.to_owned(), window));
            }
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        lease: LeaseKey<'a>,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let mut tables = self.check("DeleteItem")?;
            let k = key(lease);
            let mine = tables
                .leases
                .get(&k)
                .is_some_and(|l| l.status == Status::Claimed && l.owner == owner);
            if mine {
                match lease {
                    LeaseKey::Send { .. } => {
                        tables.leases.remove(&k);
                    }
                    // The window stays closed to new events: only its lease ends.
                    LeaseKey::Window { .. } => {
                        if let Some(l) = tables.leases.get_mut(&k) {
                            l.until_ms = 0;
                        }
                    }
                }
            }
            Ok(())
        })
    }

    fn record<'a>(
        &'a self,
        route: &'a str,
        window: Window,
        event_id: &'a str,
        entry: &'a str,
    ) -> BoxFuture<'a, Result<Recorded, StateError>> {
        Box::pin(async move {
            let mut tables = self.check("UpdateItem")?;
            let marker = key(LeaseKey::Send { event_id, route });
            let mut attempt = match tables.leases.get(&marker).map(|l| l.status) {
                Some(Status::Recording(first)) => first,
                Some(_) => return Ok(Recorded::Already),
                None => window,
            };
            loop {
                let slot = (route.to_owned(), attempt);
                let held = tables
                    .entries
                    .get(&slot)
                    .is_some_and(|e| e.contains_key(event_id));
                if held {
                    break;
                }
                if !tables.closed.contains(&slot) {
                    tables
                        .entries
                        .entry(slot.clone())
                        .or_default()
                        .insert(event_id.to_owned(), entry.to_owned());
                    tables.pending.insert(slot);
                    break;
                }
                if attempt == window {
                    // The marker stays, pointing here, as DynamoDB's would after a refusal.
                    tables.leases.insert(marker, recording(attempt));
                    return Ok(Recorded::WindowClosed);
                }
                attempt = window;
            }
            let recorded = Lease {
                status: Status::Recorded,
                ..recording(attempt)
            };
            tables.leases.insert(marker, recorded);
            Ok(Recorded::New)
        })
    }

    fn pending_windows<'a>(
        &'a self,
        route: &'a str,
        ended_by: i64,
    ) -> BoxFuture<'a, Result<Vec<Window>, StateError>> {
        Box::pin(async move {
            let tables = self.check("Query")?;
            Ok(tables
                .pending
                .iter()
                .filter(|(r, w)| r == route && w.end <= ended_by)
                .map(|(_, w)| *w)
                .collect())
        })
    }

    fn close_window<'a>(
        &'a self,
        route: &'a str,
        window: Window,
    ) -> BoxFuture<'a, Result<Vec<String>, StateError>> {
        Box::pin(async move {
            let mut tables = self.check("UpdateItem")?;
            tables.closed.insert((route.to_owned(), window));
            Ok(tables
                .entries
                .get(&(route.to_owned(), window))
                .map(|e| e.values().cloned().collect())
                .unwrap_or_default())
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move { self.check("GetItem").map(|_| ()) })
    }
}
