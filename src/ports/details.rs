//! Where the pipeline gets an event's package details (its manifest, and what changed since the
//! previous revision): the worker's `DetailsReader` over any [`PackageStore`](super::PackageStore),
//! behind one object so that the pipeline and the worker need no store type parameter.

use super::{BoxFuture, StoreError};
use crate::domain::details::Details;
use crate::domain::event::PackageEvent;

/// A source of package details.
pub trait DetailsSource: Send + Sync {
    /// The details of the event's revision; fails only transiently.
    fn details<'a>(&'a self, event: &'a PackageEvent)
        -> BoxFuture<'a, Result<Details, StoreError>>;
}
