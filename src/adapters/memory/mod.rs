//! The ports in memory: a package store (`render --manifest` previews with it; tests and
//! benches use it), and, for tests, benches and the simulation only, the state table and the
//! quilt3 fixtures.

#[cfg(test)]
pub(crate) mod fixtures;
pub mod store;
#[cfg(any(test, feature = "test-support"))]
pub mod table;

pub use store::MemoryStore;
#[cfg(any(test, feature = "test-support"))]
pub use table::MemoryTable;
