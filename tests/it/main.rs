//! Integration tests: the real `quilt-notify` binary against real emulators (LocalStack for SQS
//! and EventBridge, aws-ses-v2-local for SES v2), started by `scripts/test`. Each test that needs
//! them is `#[ignore = "needs the emulators: run scripts/test"]`, so a plain `cargo test` leaves
//! it out and `scripts/test` runs it (`--include-ignored`).

mod support;

mod clock;
mod delivery;
mod details;
mod digests;
mod feedback;
mod harness;
mod operations;
mod reliability;
mod ses;
mod state;
mod tables;
