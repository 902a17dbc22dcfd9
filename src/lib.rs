//! quilt-notify: turns Quilt `package-revision` events, delivered by an EventBridge rule to an
//! SQS queue, into templated emails sent with SES v2.
//!
//! Layers, each depending only on those below it: [`app`] (wiring) → [`worker`] (receive,
//! process, acknowledge; the shared-state protocol) → [`ports`] (the traits the worker talks
//! through, implemented in [`adapters`]: AWS, and in memory) → [`domain`] (pure: event, pattern,
//! route, manifest, render); [`config`] (settings and template files) and [`telemetry`] (logs,
//! metrics, the health listener) on the side, [`commands`] for the CLI's sub-commands.

#![warn(missing_docs)]

pub mod adapters;
pub mod app;
pub mod commands;
pub mod config;
pub mod domain;
pub mod ports;
pub mod telemetry;
pub mod worker;
