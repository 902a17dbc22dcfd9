//! The shared state table, and each task's handle on it. The state protocol
//! (`quilt_notify::worker::state::StateStore`) runs unchanged in every task over its handle, which
//! makes each item call a port call of its own: a latency before and after it takes effect, a
//! kill between any two calls of one protocol step, and the faults of the chaos phase:
//! throttling (a transient error, nothing written), outages (every call fails, transiently or as
//! unusable) and ambiguous writes (written, then answered with an error).
//!
//! The handle also reads what each write did, for the invariants: claims won (and whether only
//! clock skew let one take a live lease over), renewals, marks.
//!
//! The table comes from one factory, [`new_table`].

use std::sync::Arc;

use quilt_notify::adapters::memory::table::MemoryTable;
use std::future::Future;

use quilt_notify::ports::{
    Attr, Changes, Cond, DynStateTable, Item, ItemKey, SortKeys, StateError, StateFailureKind,
    StateTable, Update, Written,
};

use crate::config::EPOCH_S;
use crate::world::{Life, Records, Sim};

/// The table every task of a seed shares.
pub fn new_table() -> Arc<dyn DynStateTable> {
    Arc::new(MemoryTable::new())
}

/// An item key as the simulation writes it: `send:<event>:<route>` for a route's email (the
/// mailer writes its keys the same way), `window:<route>:<start>` for a digest window's state.
pub fn key_text(key: &ItemKey) -> String {
    if let Some(event) = key.pk.strip_prefix("send#") {
        format!("send:{event}:{}", key.sk)
    } else if let (Some(window), "window") = (key.pk.strip_prefix("window#"), key.sk.as_str()) {
        let (route, start) = window.rsplit_once('#').unwrap_or((window, ""));
        format!("window:{route}:{start}")
    } else {
        format!("{}/{}", key.pk, key.sk)
    }
}

fn injected(kind: StateFailureKind, operation: &'static str, code: &str) -> StateError {
    StateError {
        kind,
        operation,
        table: "simulated".to_owned(),
        code: code.to_owned(),
        message: "injected".to_owned(),
    }
}

/// What the fault injector does to one call.
enum Injection {
    None,
    Fail(StateError),
    /// Apply, then answer with an error.
    Ambiguous,
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(Attr::as_str).map(str::to_owned)
}

fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name).and_then(Attr::as_i64)
}

/// One task's handle on the shared table.
pub struct SimTable {
    sim: Arc<Sim>,
    life: Arc<Life>,
    inner: Arc<dyn DynStateTable>,
}

impl SimTable {
    pub fn new(sim: Arc<Sim>, life: Arc<Life>, inner: Arc<dyn DynStateTable>) -> Self {
        Self { sim, life, inner }
    }

    fn inject(&self, operation: &'static str, write: bool) -> Injection {
        let mut world = self.sim.lock();
        let now = self.sim.now();
        match world.outage {
            Some((until, unusable)) if now < until => {
                return Injection::Fail(if unusable {
                    injected(
                        StateFailureKind::Unusable,
                        operation,
                        "ResourceNotFoundException",
                    )
                } else {
                    injected(StateFailureKind::Transient, operation, "RequestTimeout")
                });
            }
            Some(_) => world.outage = None,
            None => {}
        }
        if !world.chaos() {
            return Injection::None;
        }
        let faults = self.sim.cfg.faults;
        if world.rng.f64() < faults.state_throttle {
            world.fault("state_throttle");
            return Injection::Fail(injected(
                StateFailureKind::Transient,
                operation,
                "ThrottlingException",
            ));
        }
        if write && world.rng.f64() < faults.state_ambiguous {
            world.fault("state_ambiguous");
            return Injection::Ambiguous;
        }
        Injection::None
    }

    /// One call: latency and the scheduler's kill decision, the fault, the table's answer,
    /// what the invariants must know (`note`, on what the table did), the trace line.
    async fn call<T: std::fmt::Debug>(
        &self,
        operation: &'static str,
        write: bool,
        what: String,
        inner: impl Future<Output = Result<T, StateError>>,
        note: impl FnOnce(&mut Records, &Result<T, StateError>, &str, u64),
    ) -> Result<T, StateError> {
        self.call_marking(operation, write, what, Vec::new(), inner, note)
            .await
    }

    /// [`Self::call`], recording `marks` (lease keys) as abandoned if the call is dropped
    /// before it returns: its task was aborted at the shutdown deadline while marking.
    async fn call_marking<T: std::fmt::Debug>(
        &self,
        operation: &'static str,
        write: bool,
        what: String,
        marks: Vec<String>,
        inner: impl Future<Output = Result<T, StateError>>,
        note: impl FnOnce(&mut Records, &Result<T, StateError>, &str, u64),
    ) -> Result<T, StateError> {
        let owner = self.life.owner();
        let mut unfinished = Unfinished {
            sim: &self.sim,
            marks: marks.into_iter().map(|key| (key, owner.clone())).collect(),
        };
        let fate = self.sim.enter(&self.life, operation).await;
        let (answer, ambiguous) = match self.inject(operation, write) {
            Injection::Fail(e) => (Err(e), false),
            Injection::None => (inner.await, false),
            Injection::Ambiguous => (inner.await, true),
        };
        let answer = {
            let mut world = self.sim.lock();
            let owner = self.life.owner();
            let now = self.sim.now();
            note(&mut world.records, &answer, &owner, now);
            let ambiguous = ambiguous && answer.is_ok();
            let mut shown = match &answer {
                Ok(answer) => format!("{answer:?}"),
                Err(e) => format!("Err({:?} {})", e.kind, e.code),
            };
            if shown.len() > 160 {
                let cut = (0..=160)
                    .rev()
                    .find(|i| shown.is_char_boundary(*i))
                    .unwrap_or(0);
                shown.truncate(cut);
                shown.push('…');
            }
            self.sim.trace(
                &mut world,
                &owner,
                format_args!(
                    "{operation} {what} -> {shown}{}",
                    if ambiguous {
                        ", answered as failed"
                    } else {
                        ""
                    }
                ),
            );
            if ambiguous {
                Err(injected(
                    StateFailureKind::Transient,
                    operation,
                    "InternalServerError",
                ))
            } else {
                answer
            }
        };
        self.sim.leave(&self.life, operation, fate).await;
        unfinished.marks.clear();
        answer
    }
}

/// Records a mark whose call was dropped before it returned: whether it took effect, the task
/// never learned.
struct Unfinished<'a> {
    sim: &'a Sim,
    marks: Vec<(String, String)>,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        for (key, owner) in self.marks.drain(..) {
            let mut world = self.sim.lock();
            world
                .records
                .abandoned_marks
                .insert((key.clone(), owner.clone()));
            self.sim
                .trace(&mut world, &owner, format_args!("mark {key}: aborted"));
        }
    }
}

/// Whether `changes` mark a lease sent.
fn is_mark(changes: &Changes) -> bool {
    changes
        .set
        .iter()
        .any(|(name, value)| *name == "status" && value.as_str() == Some("sent"))
}

/// What an applied update did to a lease or marker, for the invariants.
fn note_update(
    records: &mut Records,
    key: &ItemKey,
    changes: &Changes,
    answer: &Result<Written, StateError>,
    owner: &str,
    now: u64,
) {
    let set = |name: &str| changes.set.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
    let status = set("status").and_then(Attr::as_str);
    let lease = key_text(key);
    let applied = match answer {
        Ok(Written::Applied(old)) => Some(old),
        _ => None,
    };
    match (status, set("lease_until")) {
        (Some("claimed"), _) => {
            let Some(old) = applied else { return };
            let old = old.as_ref();
            let holder = old
                .filter(|o| text(o, "status").as_deref() == Some("claimed"))
                .and_then(|o| text(o, "owner"))
                .filter(|holder| holder != owner);
            if let (Some(holder), Some(until)) =
                (&holder, old.and_then(|o| number(o, "lease_until")))
            {
                // When the holder's lease ends in true time, against now.
                let ends = until - records.skew_of(holder) - EPOCH_S * 1000;
                if i64::try_from(now).unwrap_or(i64::MAX) < ends {
                    let apart = records.skew_of(owner) - records.skew_of(holder);
                    records.skew_takeovers.insert(
                        (lease.clone(), owner.to_owned()),
                        (now, holder.clone(), apart),
                    );
                }
            }
            records
                .claims
                .push((lease, owner.to_owned(), now, holder.is_some()));
        }
        (None, Some(_)) if applied.is_none() => {
            records.renew_failures.insert((lease, owner.to_owned()));
        }
        (Some("sent"), _) => match answer {
            Ok(Written::Applied(_)) => {
                records
                    .marks
                    .entry((lease, owner.to_owned()))
                    .or_insert(now);
            }
            Ok(Written::Refused(_)) => {}
            Err(_) => {
                records.mark_failures.insert((lease, owner.to_owned()));
            }
        },
        _ => {}
    }
}

impl StateTable for SimTable {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn get(&self, key: &ItemKey) -> Result<Option<Item>, StateError> {
        self.call(
            "GetItem",
            false,
            format!("{}/{}", key.pk, key.sk),
            self.inner.get(key),
            |_, _, _, _| {},
        )
        .await
    }

    async fn get_many(&self, keys: &[ItemKey]) -> Result<Vec<Item>, StateError> {
        self.call(
            "BatchGetItem",
            false,
            format!("{} keys", keys.len()),
            self.inner.get_many(keys),
            |_, _, _, _| {},
        )
        .await
    }

    async fn put(&self, item: Item, cond: Option<&Cond>) -> Result<Written, StateError> {
        let what = format!(
            "{}/{}",
            text(&item, "pk").unwrap_or_default(),
            text(&item, "sk").unwrap_or_default()
        );
        self.call(
            "PutItem",
            true,
            what,
            self.inner.put(item, cond),
            |_, _, _, _| {},
        )
        .await
    }

    async fn update(
        &self,
        key: &ItemKey,
        changes: &Changes,
        cond: Option<&Cond>,
    ) -> Result<Written, StateError> {
        let set: Vec<String> = changes
            .set
            .iter()
            .filter(|(name, _)| matches!(*name, "status" | "owner" | "lease_until"))
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect();
        let marking = is_mark(changes);
        self.call_marking(
            "UpdateItem",
            true,
            format!("{} [{}]", key_text(key), set.join(" ")),
            marking.then(|| key_text(key)).into_iter().collect(),
            self.inner.update(key, changes, cond),
            move |records, answer, owner, now| {
                note_update(records, key, changes, answer, owner, now);
            },
        )
        .await
    }

    async fn update_all(&self, updates: &[Update]) -> Result<bool, StateError> {
        let marks: Vec<String> = updates
            .iter()
            .filter(|u| is_mark(&u.changes))
            .map(|u| key_text(&u.key))
            .collect();
        self.call_marking(
            "TransactWriteItems",
            true,
            format!("{} writes ({} marks)", updates.len(), marks.len()),
            marks,
            self.inner.update_all(updates),
            move |records, answer, owner, now| {
                // Applied whole: each write as if alone. A batched claim never takes over, so
                // the item it found is of no interest (no old item stands in for it).
                if let Ok(true) = answer {
                    for u in updates {
                        let applied = Ok(Written::Applied(None));
                        note_update(records, &u.key, &u.changes, &applied, owner, now);
                    }
                }
            },
        )
        .await
    }

    async fn delete(&self, key: &ItemKey, cond: Option<&Cond>) -> Result<Written, StateError> {
        self.call(
            "DeleteItem",
            true,
            key_text(key),
            self.inner.delete(key, cond),
            |_, _, _, _| {},
        )
        .await
    }

    async fn query(&self, pk: &str, keys: SortKeys<'_>) -> Result<Vec<Item>, StateError> {
        self.call(
            "Query",
            false,
            format!("{pk} {keys:?}"),
            self.inner.query(pk, keys),
            |_, _, _, _| {},
        )
        .await
    }

    async fn count(&self, pk: &str, keys: SortKeys<'_>) -> Result<usize, StateError> {
        self.call(
            "Query(count)",
            false,
            format!("{pk} {keys:?}"),
            self.inner.count(pk, keys),
            |_, _, _, _| {},
        )
        .await
    }
}
