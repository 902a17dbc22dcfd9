//! Where Quilt keeps packages beside the data, like S3: read only.

use std::future::Future;

/// A shared store is a store (the tests and benches keep a handle on the one a reader uses).
impl<S: PackageStore> PackageStore for std::sync::Arc<S> {
    fn read(
        &self,
        object: &ObjectRef,
        max_bytes: Option<u64>,
        sink: &mut dyn ReadSink,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        S::read(self, object, max_bytes, sink)
    }

    fn read_range(
        &self,
        object: &ObjectRef,
        range: ByteRange,
        sink: &mut dyn ReadSink,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        S::read_range(self, object, range, sink)
    }

    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        max_keys: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send {
        S::list(self, bucket, prefix, max_keys)
    }
}

pub use crate::domain::revision::ObjectRef;
pub use crate::domain::table::ByteRange;

/// What a failed store call means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFailureKind {
    /// Throttling, 5xx, timeouts, network: try the message again later.
    Transient,
    /// The object or the bucket does not exist.
    Missing,
    /// The service refused access.
    Denied,
    /// Any other answer: asking again will not change it.
    Other,
}

impl StoreFailureKind {
    /// Stable name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Missing => "missing",
            Self::Denied => "denied",
            Self::Other => "other",
        }
    }
}

/// Why a store call failed, with the object it was about.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{operation} s3://{bucket}/{key}: {code}: {message}")]
pub struct StoreError {
    /// What it means for the message.
    pub kind: StoreFailureKind,
    /// The operation, e.g. `GetObject`.
    pub operation: &'static str,
    /// The bucket.
    pub bucket: String,
    /// The key, or the prefix of a listing.
    pub key: String,
    /// The service's error code, or a short name for failures that never reached it.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// Where a [`PackageStore`] hands an object's bytes. A closure taking chunks is one.
pub trait ReadSink: Send {
    /// The bytes the read will hand over, before the first chunk, when the store knows them
    /// (a reader sizes its memory by it). False: stop, nothing more is wanted.
    fn size(&mut self, _bytes: u64) -> bool {
        true
    }

    /// The next chunk. False: stop, nothing more is wanted.
    fn chunk(&mut self, chunk: &[u8]) -> bool;
}

impl<F: FnMut(&[u8]) -> bool + Send> ReadSink for F {
    fn chunk(&mut self, chunk: &[u8]) -> bool {
        self(chunk)
    }
}

/// Where Quilt keeps packages beside the data, like S3: manifests, revision pointers and the
/// files themselves. Read only.
pub trait PackageStore: Send + Sync + 'static {
    /// Reads an object (its first `max_bytes` when given), handing its bytes to `sink` as they
    /// arrive, so a large object is never held whole: first its size, when the store knows it
    /// (S3: the response's `Content-Length`), then its chunks. `sink` returns false to stop.
    fn read(
        &self,
        object: &ObjectRef,
        max_bytes: Option<u64>,
        sink: &mut dyn ReadSink,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads `range` of an object, handing its bytes to `sink` as [`read`](Self::read) does
    /// (first how many will come, then the chunks). A range reaching past the end gives what
    /// exists of it; one wholly past the end, or any range of an empty object, gives no bytes,
    /// which is no error (S3 answers both with 416 `InvalidRange`). A suffix longer than the
    /// object gives all of it.
    ///
    /// This default reads from the start and keeps what the range covers (a suffix: the whole
    /// object, of which only the last bytes are kept); stores that can ask for a range, S3 and
    /// the memory store, do so instead.
    fn read_range(
        &self,
        object: &ObjectRef,
        range: ByteRange,
        sink: &mut dyn ReadSink,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            let (skip, limit) = match range {
                ByteRange::Span { start, end } => (start, Some(end)),
                ByteRange::Suffix(_) => (0, None),
            };
            if limit.is_some_and(|end| end <= skip) {
                sink.size(0);
                return Ok(());
            }
            let mut kept = Vec::new();
            let mut offset: u64 = 0;
            self.read(object, limit, &mut |chunk: &[u8]| {
                let at = usize::try_from(skip.saturating_sub(offset)).unwrap_or(usize::MAX);
                offset += chunk.len() as u64;
                if let Some(rest) = chunk.get(at..) {
                    kept.extend_from_slice(rest);
                }
                if let ByteRange::Suffix(n) = range {
                    let n = usize::try_from(n).unwrap_or(usize::MAX);
                    if kept.len() > n {
                        kept.drain(..kept.len() - n);
                    }
                }
                true
            })
            .await?;
            if sink.size(kept.len() as u64) && !kept.is_empty() {
                sink.chunk(&kept);
            }
            Ok(())
        }
    }

    /// The keys under `prefix`, in byte order, at most `max_keys` of them.
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        max_keys: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}
