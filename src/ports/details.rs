//! Where the pipeline gets an event's package details (its manifest, and what changed since the
//! previous revision): the worker's `DetailsReader` over any [`PackageStore`](super::PackageStore),
//! held as a [`DynDetailsSource`] so that the pipeline and the worker need no store type parameter.

use std::future::Future;

use super::{BoxFuture, StoreError};
use crate::domain::details::Details;
use crate::domain::event::PackageEvent;

/// A source of package details. Implement this trait (with an `async fn`); the pipeline holds a
/// source as a [`DynDetailsSource`], which every implementation is.
pub trait DetailsSource: Send + Sync + 'static {
    /// The details of the event's revision; fails only transiently.
    fn details(
        &self,
        event: &PackageEvent,
    ) -> impl Future<Output = Result<Details, StoreError>> + Send;
}

/// A [`DetailsSource`] as a trait object (`Arc<dyn DynDetailsSource>`). Every `DetailsSource` is
/// one, its future boxed here.
pub trait DynDetailsSource: Send + Sync + 'static {
    /// [`DetailsSource::details`].
    fn details<'a>(&'a self, event: &'a PackageEvent)
        -> BoxFuture<'a, Result<Details, StoreError>>;
}

impl<T: DetailsSource> DynDetailsSource for T {
    fn details<'a>(
        &'a self,
        event: &'a PackageEvent,
    ) -> BoxFuture<'a, Result<Details, StoreError>> {
        Box::pin(DetailsSource::details(self, event))
    }
}
