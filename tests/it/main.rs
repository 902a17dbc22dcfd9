//! Integration tests: the real `quilt-notify` binary against real emulators (LocalStack for SQS
//! and EventBridge, aws-ses-v2-local for SES v2), started by `scripts/test`.

mod support;

mod delivery;
mod operations;
mod reliability;
