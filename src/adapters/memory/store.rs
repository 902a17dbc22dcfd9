//! A [`PackageStore`] held in memory. `render --manifest` previews details with it, and the
//! tests and benchmarks use it for a store's behaviour (bodies in chunks, sorted listings,
//! injected failures, counted reads) without S3.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::ports::{ByteRange, ObjectRef, PackageStore, ReadSink, StoreError, StoreFailureKind};

/// Bodies by (bucket, key).
type Objects = BTreeMap<(String, String), Arc<[u8]>>;

/// Objects by bucket and key.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<Objects>,
    /// Keys (for reads) and prefixes (for listings) that fail, with how.
    failures: Mutex<HashMap<String, StoreFailureKind>>,
    reads: Mutex<HashMap<String, usize>>,
    /// Bytes per chunk handed to a reader (0: the whole body at once).
    chunk: usize,
    /// Each chunk comes on a later poll, as a network body's do, so concurrent reads interleave.
    yielding: bool,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStore {
    /// An empty store that hands bodies out `chunk` bytes at a time (0: whole).
    pub fn new(chunk: usize) -> Self {
        Self {
            chunk,
            ..Self::default()
        }
    }

    /// A store whose reads hand each chunk on a later poll, as an S3 body does: concurrent
    /// reads interleave instead of each running to its end at once.
    pub fn yielding(chunk: usize) -> Self {
        Self {
            chunk,
            yielding: true,
            ..Self::default()
        }
    }

    /// Stores (or replaces) an object.
    pub fn put(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
        let body: Vec<u8> = body.into();
        locked(&self.objects).insert((bucket.to_owned(), key.to_owned()), body.into());
    }

    /// Makes reads of `key`, and listings of the prefix `key`, fail with `kind`.
    pub fn fail(&self, key: &str, kind: StoreFailureKind) {
        locked(&self.failures).insert(key.to_owned(), kind);
    }

    /// Undoes [`fail`](Self::fail).
    pub fn heal(&self, key: &str) {
        locked(&self.failures).remove(key);
    }

    /// How many times `key` was read (failed reads included).
    pub fn reads(&self, key: &str) -> usize {
        locked(&self.reads).get(key).copied().unwrap_or(0)
    }

    /// The body of `object`, counting the read: an injected failure or `NoSuchKey` if none.
    fn body(&self, object: &ObjectRef) -> Result<Arc<[u8]>, StoreError> {
        *locked(&self.reads).entry(object.key.clone()).or_default() += 1;
        if let Some(e) = self.failure("GetObject", &object.bucket, &object.key) {
            return Err(e);
        }
        let found = locked(&self.objects)
            .get(&(object.bucket.clone(), object.key.clone()))
            .cloned();
        found.ok_or_else(|| StoreError {
            kind: StoreFailureKind::Missing,
            operation: "GetObject",
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            code: "NoSuchKey".to_owned(),
            message: "The specified key does not exist.".to_owned(),
        })
    }

    /// Hands `bytes` to `sink`: their size, then chunks of `self.chunk` (each on a later poll
    /// when yielding), until the sink says stop.
    async fn hand(&self, bytes: &[u8], sink: &mut dyn ReadSink) {
        let chunk = if self.chunk == 0 {
            bytes.len().max(1)
        } else {
            self.chunk
        };
        if !sink.size(bytes.len() as u64) {
            return;
        }
        for piece in bytes.chunks(chunk) {
            if self.yielding {
                tokio::task::yield_now().await;
            }
            if !sink.chunk(piece) {
                break;
            }
        }
    }

    fn failure(&self, operation: &'static str, bucket: &str, key: &str) -> Option<StoreError> {
        let kind = *locked(&self.failures).get(key)?;
        Some(StoreError {
            kind,
            operation,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            code: "Injected".to_owned(),
            message: format!("{} failure injected", kind.as_str()),
        })
    }
}

impl PackageStore for MemoryStore {
    async fn read(
        &self,
        object: &ObjectRef,
        max_bytes: Option<u64>,
        sink: &mut dyn ReadSink,
    ) -> Result<(), StoreError> {
        let body = self.body(object)?;
        let limit = max_bytes.map_or(body.len(), |n| {
            body.len().min(usize::try_from(n).unwrap_or(usize::MAX))
        });
        self.hand(&body[..limit], sink).await;
        Ok(())
    }

    /// S3's rules: what exists of a span (nothing past the end), all of an object shorter
    /// than a suffix.
    async fn read_range(
        &self,
        object: &ObjectRef,
        range: ByteRange,
        sink: &mut dyn ReadSink,
    ) -> Result<(), StoreError> {
        let body = self.body(object)?;
        let len = body.len() as u64;
        let (start, end) = match range {
            ByteRange::Span { start, end } => (start.min(len), end.min(len).max(start.min(len))),
            ByteRange::Suffix(n) => (len.saturating_sub(n), len),
        };
        // Both are at most the body's length, which is a usize.
        let (start, end) = (start as usize, end as usize);
        self.hand(&body[start..end], sink).await;
        Ok(())
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        max_keys: usize,
    ) -> Result<Vec<String>, StoreError> {
        if let Some(e) = self.failure("ListObjectsV2", bucket, prefix) {
            return Err(e);
        }
        Ok(locked(&self.objects)
            .keys()
            .filter(|(b, key)| b == bucket && key.starts_with(prefix))
            .map(|(_, key)| key.clone())
            .take(max_keys)
            .collect())
    }
}
