//! The ports in memory: a package store (`render --manifest` previews with it; tests and
//! benches use it), and, for tests, benches and the simulation only, the state table, a queue
//! and a mailer; the quilt3 fixtures for the unit tests alone.

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(any(test, feature = "test-support"))]
pub mod mailer;
#[cfg(any(test, feature = "test-support"))]
pub mod queue;
pub mod store;
#[cfg(any(test, feature = "test-support"))]
pub mod table;

#[cfg(any(test, feature = "test-support"))]
pub use mailer::MemoryMailer;
#[cfg(any(test, feature = "test-support"))]
pub use queue::MemoryQueue;
pub use store::MemoryStore;
#[cfg(any(test, feature = "test-support"))]
pub use table::MemoryTable;
