//! The previous revision of an event's package: its pointer found among the package's revision
//! pointers (see [`PreviousSearch`]), and the top hash it holds.

use std::time::UNIX_EPOCH;

use super::DetailsReader;
use crate::domain::event::PackageEvent;
use crate::domain::revision::{
    pointer_hash, pointers_newest_first, pointers_prefix, ObjectRef, PreviousSearch, Step,
    POINTER_SKEW_SECONDS,
};
use crate::ports::{PackageStore, StoreError};

/// Bytes read from a revision pointer (a top hash and a line break).
const POINTER_BYTES: u64 = 512;
/// Revision pointers listed at most, and read at most while looking for the previous one.
const MAX_POINTERS_LISTED: usize = 100_000;
const MAX_POINTERS_READ: usize = 20;

impl<S: PackageStore> DetailsReader<S> {
    /// The previous revision's top hash: the pointer just older than the event's own (see
    /// [`PreviousSearch`]). None for a first revision, or when the event's own pointer is not
    /// among the [`MAX_POINTERS_READ`] closest to its time.
    pub(super) async fn previous_hash(
        &self,
        event: &PackageEvent,
    ) -> Result<Option<String>, StoreError> {
        let bucket = event.bucket();
        let prefix = pointers_prefix(event.handle());
        let keys = self
            .store
            .list(bucket, &prefix, MAX_POINTERS_LISTED)
            .await?;
        let event_time = event
            .timestamp()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        let not_after = event_time.map(|t| t.saturating_add(POINTER_SKEW_SECONDS));
        let pointers = pointers_newest_first(&prefix, &keys, not_after);
        let mut search =
            PreviousSearch::new(event.top_hash(), event_time, &pointers, MAX_POINTERS_READ);
        loop {
            match search.step() {
                Step::Read(i) => {
                    let hash = self.pointer(bucket, &pointers[i].1).await?;
                    search.feed(i, hash.as_deref());
                }
                Step::Done(previous) => return Ok(previous),
            }
        }
    }

    /// The top hash a pointer holds; None when its text is not a hash.
    async fn pointer(&self, bucket: &str, key: &str) -> Result<Option<String>, StoreError> {
        let object = ObjectRef {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version: None,
        };
        let text = self.read_text(&object, POINTER_BYTES).await?;
        Ok(pointer_hash(&text).map(str::to_ascii_lowercase))
    }
}
