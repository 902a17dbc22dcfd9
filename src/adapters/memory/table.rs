//! A [`StateTable`] in memory, with DynamoDB's semantics for what the state protocol uses:
//! atomic single-item conditional writes, consistent reads and queries. Unit tests, the
//! pipeline bench and the simulation run the state protocol over it; the contract suite
//! (`worker::state::contract`) holds it to the same answers as the DynamoDB adapter.
//!
//! It also counts the capacity DynamoDB would bill, from item sizes by DynamoDB's rules, so
//! the cost of a protocol step can be measured without an AWS account.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::ports::{
    Attr, Changes, Cond, Item, ItemKey, SortKeys, StateError, StateFailureKind, StateTable, Update,
    Written, MAX_TRANSACTION_WRITES,
};

/// DynamoDB's limit on a partition key's length, in bytes.
const MAX_PK_BYTES: usize = 2048;
/// DynamoDB's limit on a sort key's length, in bytes.
const MAX_SK_BYTES: usize = 1024;

/// Capacity units DynamoDB would bill (on-demand: write and read request units).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Units {
    /// Write units: one per started KiB of the larger of the item before and after a write,
    /// refused conditional writes included.
    pub write: u64,
    /// Strongly consistent read units: one per started 4 KiB read (a query sums its items).
    pub read: u64,
    /// Calls made.
    pub calls: u64,
}

#[derive(Debug, Default)]
struct Inner {
    items: BTreeMap<ItemKey, Item>,
    units: Units,
}

/// Items in memory.
#[derive(Debug, Default)]
pub struct MemoryTable {
    inner: Mutex<Inner>,
    failure: Mutex<Option<StateFailureKind>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call fails this way from now on (None: calls work again).
    pub fn fail(&self, kind: Option<StateFailureKind>) {
        *locked(&self.failure) = kind;
    }

    /// What the calls so far would have cost, and how many there were.
    pub fn units(&self) -> Units {
        locked(&self.inner).units
    }

    /// A copy of every item, in key order.
    pub fn items(&self) -> Vec<Item> {
        locked(&self.inner).items.values().cloned().collect()
    }

    fn check(&self, operation: &'static str) -> Result<MutexGuard<'_, Inner>, StateError> {
        self.check_keys(operation, &[])
    }

    /// Counts the call, answers an injected failure, and refuses keys over DynamoDB's limits
    /// (partition key 2048 bytes, sort key 1024) as DynamoDB does.
    fn check_keys(
        &self,
        operation: &'static str,
        keys: &[&ItemKey],
    ) -> Result<MutexGuard<'_, Inner>, StateError> {
        if let Some(key) = keys
            .iter()
            .find(|k| k.pk.len() > MAX_PK_BYTES || k.sk.len() > MAX_SK_BYTES)
        {
            return Err(StateError {
                kind: StateFailureKind::Invalid,
                operation,
                table: "memory".to_owned(),
                code: "ValidationException".to_owned(),
                message: format!(
                    "key too long: partition key {} bytes (at most {MAX_PK_BYTES}), sort key {} bytes (at most {MAX_SK_BYTES})",
                    key.pk.len(),
                    key.sk.len()
                ),
            });
        }
        let mut inner = locked(&self.inner);
        inner.units.calls += 1;
        match *locked(&self.failure) {
            None => Ok(inner),
            Some(kind) => Err(StateError {
                kind,
                operation,
                table: "memory".to_owned(),
                code: match kind {
                    StateFailureKind::Transient => "ThrottlingException",
                    StateFailureKind::Unusable => "ResourceNotFoundException",
                    StateFailureKind::Invalid => "ValidationException",
                }
                .to_owned(),
                message: "injected failure".to_owned(),
            }),
        }
    }

    /// The write shared by put, update and delete: checks `cond` on the item as it is, then
    /// replaces it with what `change` makes of it (None deletes it).
    fn write(
        &self,
        operation: &'static str,
        key: &ItemKey,
        cond: Option<&Cond>,
        change: impl FnOnce(Option<&Item>) -> Option<Item>,
    ) -> Result<Written, StateError> {
        let mut inner = self.check_keys(operation, &[key])?;
        let old = inner.items.get(key).cloned();
        if !cond.is_none_or(|c| holds(c, old.as_ref())) {
            inner.units.write += write_units(old.as_ref(), None);
            return Ok(Written::Refused(old));
        }
        let new = change(old.as_ref());
        inner.units.write += write_units(old.as_ref(), new.as_ref());
        match new {
            Some(item) => inner.items.insert(key.clone(), item),
            None => inner.items.remove(key),
        };
        Ok(Written::Applied(old))
    }

    fn partition(inner: &Inner, pk: &str, keys: SortKeys<'_>) -> Vec<Item> {
        let from = ItemKey {
            pk: pk.to_owned(),
            sk: String::new(),
        };
        inner
            .items
            .range(from..)
            .take_while(|(k, _)| k.pk == pk)
            .filter(|(k, _)| match keys {
                SortKeys::Prefix(prefix) => k.sk.starts_with(prefix),
                SortKeys::Below(below) => k.sk.as_str() < below,
            })
            .map(|(_, item)| item.clone())
            .collect()
    }
}

/// `changes` made to the item under `key` as it is (`old`), creating it if need be.
fn changed(key: &ItemKey, old: Option<&Item>, changes: &Changes) -> Item {
    let mut item = old.cloned().unwrap_or_else(|| {
        Item::from([
            ("pk".to_owned(), Attr::S(key.pk.clone())),
            ("sk".to_owned(), Attr::S(key.sk.clone())),
        ])
    });
    for (name, value) in &changes.set {
        item.insert((*name).to_owned(), value.clone());
    }
    for name in &changes.remove {
        item.remove(*name);
    }
    item
}

/// A transaction DynamoDB refuses as invalid whatever the items hold.
fn invalid_transaction(message: String) -> StateError {
    StateError {
        kind: StateFailureKind::Invalid,
        operation: "TransactWriteItems",
        table: "memory".to_owned(),
        code: "ValidationException".to_owned(),
        message,
    }
}

/// Whether `cond` holds for the item (None: there is no item).
fn holds(cond: &Cond, item: Option<&Item>) -> bool {
    let attr = |name: &str| item.and_then(|i| i.get(name));
    match cond {
        Cond::Absent => item.is_none(),
        Cond::Eq(name, value) => attr(name) == Some(value),
        Cond::Lt(name, bound) => attr(name)
            .and_then(Attr::as_i64)
            .is_some_and(|v| v < *bound),
        Cond::Missing(name) => attr(name).is_none(),
        Cond::All(all) => all.iter().all(|c| holds(c, item)),
        Cond::Any(any) => any.iter().any(|c| holds(c, item)),
    }
}

/// An item's size as DynamoDB bills it: names plus values (a number about one byte per two
/// digits, plus one).
pub fn item_size(item: &Item) -> u64 {
    item.iter()
        .map(|(name, value)| {
            let value = match value {
                Attr::S(s) => s.len(),
                Attr::N(n) => n.unsigned_abs().to_string().len().div_ceil(2) + 1,
                Attr::Bool(_) => 1,
            };
            (name.len() + value) as u64
        })
        .sum()
}

fn write_units(old: Option<&Item>, new: Option<&Item>) -> u64 {
    let size = old.map_or(0, item_size).max(new.map_or(0, item_size));
    size.div_ceil(1024).max(1)
}

fn read_units(bytes: u64) -> u64 {
    bytes.div_ceil(4096).max(1)
}

impl StateTable for MemoryTable {
    fn name(&self) -> &str {
        "memory"
    }

    async fn get(&self, key: &ItemKey) -> Result<Option<Item>, StateError> {
        let mut inner = self.check_keys("GetItem", &[key])?;
        let item = inner.items.get(key).cloned();
        inner.units.read += read_units(item.as_ref().map_or(0, item_size));
        Ok(item)
    }

    async fn get_many(&self, keys: &[ItemKey]) -> Result<Vec<Item>, StateError> {
        let mut inner = self.check("BatchGetItem")?;
        let items: Vec<Item> = keys
            .iter()
            .filter_map(|key| inner.items.get(key).cloned())
            .collect();
        inner.units.read += items.iter().map(|i| read_units(item_size(i))).sum::<u64>();
        Ok(items)
    }

    async fn put(&self, item: Item, cond: Option<&Cond>) -> Result<Written, StateError> {
        let key = item_key(&item)?;
        self.write("PutItem", &key, cond, |_| Some(item))
    }

    async fn update(
        &self,
        key: &ItemKey,
        changes: &Changes,
        cond: Option<&Cond>,
    ) -> Result<Written, StateError> {
        self.write("UpdateItem", key, cond, |old| {
            Some(changed(key, old, changes))
        })
    }

    async fn update_all(&self, updates: &[Update]) -> Result<bool, StateError> {
        if updates.len() > MAX_TRANSACTION_WRITES {
            return Err(invalid_transaction(format!(
                "{} writes (at most {MAX_TRANSACTION_WRITES})",
                updates.len()
            )));
        }
        let keys: Vec<&ItemKey> = updates.iter().map(|u| &u.key).collect();
        let distinct: std::collections::BTreeSet<&ItemKey> = keys.iter().copied().collect();
        if distinct.len() < keys.len() {
            return Err(invalid_transaction(
                "Transaction request cannot include multiple operations on one item".to_owned(),
            ));
        }
        let mut inner = self.check_keys("TransactWriteItems", &keys)?;
        let old: Vec<Option<Item>> = keys.iter().map(|k| inner.items.get(*k).cloned()).collect();
        let units = |old: &Option<Item>, new: Option<&Item>| 2 * write_units(old.as_ref(), new);
        let refused = updates
            .iter()
            .zip(&old)
            .any(|(u, old)| !u.cond.as_ref().is_none_or(|c| holds(c, old.as_ref())));
        if refused {
            inner.units.write += old.iter().map(|o| units(o, None)).sum::<u64>();
            return Ok(false);
        }
        for (update, old) in updates.iter().zip(old) {
            let new = changed(&update.key, old.as_ref(), &update.changes);
            inner.units.write += units(&old, Some(&new));
            inner.items.insert(update.key.clone(), new);
        }
        Ok(true)
    }

    async fn delete(&self, key: &ItemKey, cond: Option<&Cond>) -> Result<Written, StateError> {
        self.write("DeleteItem", key, cond, |_| None)
    }

    async fn query(&self, pk: &str, keys: SortKeys<'_>) -> Result<Vec<Item>, StateError> {
        let mut inner = self.check("Query")?;
        let items = Self::partition(&inner, pk, keys);
        inner.units.read += read_units(items.iter().map(item_size).sum());
        Ok(items)
    }

    async fn count(&self, pk: &str, keys: SortKeys<'_>) -> Result<usize, StateError> {
        let mut inner = self.check("Query")?;
        let items = Self::partition(&inner, pk, keys);
        inner.units.read += read_units(items.iter().map(item_size).sum());
        Ok(items.len())
    }
}

/// The key of an item to put; an item without one is a bug in the protocol, answered as
/// DynamoDB would.
fn item_key(item: &Item) -> Result<ItemKey, StateError> {
    let part = |name: &str| item.get(name).and_then(Attr::as_str).map(str::to_owned);
    match (part("pk"), part("sk")) {
        (Some(pk), Some(sk)) => Ok(ItemKey { pk, sk }),
        _ => Err(StateError {
            kind: StateFailureKind::Invalid,
            operation: "PutItem",
            table: "memory".to_owned(),
            code: "ValidationException".to_owned(),
            message: "One of the required keys was not given a value".to_owned(),
        }),
    }
}
