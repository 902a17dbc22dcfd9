//! The domain: events, patterns, routes and rendering. Pure and synchronous: no tokio, no AWS,
//! so it can be unit-tested and benchmarked without a runtime.
//!
//! Imports go one way. A [`route::Route`] holds specs that know nothing of routes (`pattern`,
//! `address`, `recipients`, `schedule`); what works with routes (`details`, `render`, `digest`)
//! imports `route`, never the reverse.

pub mod address;
pub mod catalog;
pub mod changes;
pub mod details;
pub mod digest;
pub mod event;
pub mod feedback;
pub mod manifest;
pub mod message;
pub mod pattern;
pub mod recipients;
pub mod render;
pub mod revision;
pub mod route;
#[cfg(any(test, feature = "test-support"))]
pub mod route_builder;
pub mod schedule;
pub mod table;

/// What kind of JSON value this is, with its article, for error messages ("found an array").
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
