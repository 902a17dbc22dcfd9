//! quilt-notify: turns Quilt `package-revision` events, delivered by an EventBridge rule to an
//! SQS queue, into templated emails sent with SES v2.
//!
//! Layers, each depending only on those below it: [`app`] (wiring) → [`worker`] (receive,
//! process, acknowledge) → [`ports`] (the queue and mailer traits, implemented in [`aws`]) →
//! [`domain`] (pure: event, pattern, route, render); [`config`] (settings), [`templates`] (reading
//! template files) and [`telemetry`] (logs and metrics) on the side, [`health`] serving the metrics
//! and readiness over HTTP.

#![warn(missing_docs)]

pub mod app;
pub mod aws;
pub mod commands;
pub mod config;
pub mod domain;
#[cfg(test)]
mod fixtures;
pub mod health;
pub mod memory_store;
#[cfg(any(test, feature = "test-support"))]
pub mod memory_table;
pub mod ports;
pub mod state;
pub mod telemetry;
pub mod templates;
pub mod worker;
