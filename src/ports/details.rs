//! Where the pipeline gets an event's package details (its manifest, and what changed since the
//! previous revision): the worker's `DetailsReader` over any [`PackageStore`](super::PackageStore),
//! held as a [`DynDetailsSource`] so that the pipeline and the worker need no store type parameter.

use std::future::Future;

use super::{BoxFuture, StoreError};
use crate::domain::details::Details;
use crate::domain::event::PackageEvent;

/// What a read of details must include beyond the manifest, for the routes that will use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetailsWanted {
    /// `changes.tables`: the table files read (when the source reads tables at all).
    pub tables: bool,
}

impl DetailsWanted {
    /// Everything the source can read (a preview, or a caller that does not know its routes).
    pub const ALL: Self = Self { tables: true };
}

/// A source of package details. Implement this trait (with an `async fn`); the pipeline holds a
/// source as a [`DynDetailsSource`], which every implementation is.
pub trait DetailsSource: Send + Sync + 'static {
    /// The details of the event's revision, with what `wanted` asks; fails only transiently.
    fn details(
        &self,
        event: &PackageEvent,
        wanted: DetailsWanted,
    ) -> impl Future<Output = Result<Details, StoreError>> + Send;
}

/// A [`DetailsSource`] as a trait object (`Arc<dyn DynDetailsSource>`). Every `DetailsSource` is
/// one, its future boxed here.
pub trait DynDetailsSource: Send + Sync + 'static {
    /// [`DetailsSource::details`].
    fn details<'a>(
        &'a self,
        event: &'a PackageEvent,
        wanted: DetailsWanted,
    ) -> BoxFuture<'a, Result<Details, StoreError>>;
}

impl<T: DetailsSource> DynDetailsSource for T {
    fn details<'a>(
        &'a self,
        event: &'a PackageEvent,
        wanted: DetailsWanted,
    ) -> BoxFuture<'a, Result<Details, StoreError>> {
        Box::pin(DetailsSource::details(self, event, wanted))
    }
}
