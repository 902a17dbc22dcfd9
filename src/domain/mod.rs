//! The domain: events, patterns, routes and rendering. Pure and synchronous: no tokio, no AWS,
//! so it can be unit-tested and benchmarked without a runtime.

pub mod event;
pub mod pattern;
pub mod render;
pub mod route;
