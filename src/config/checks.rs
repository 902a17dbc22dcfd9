//! Checks: range and presence rules that the types alone cannot express, each failing with the
//! key it is about.

use super::settings::LEASE_SKEW_MULTIPLE;
use super::{ConfigError, Settings};
use crate::domain::address::EmailAddress;

impl Settings {
    /// Range and presence checks that types alone cannot express.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                reason: reason.to_owned(),
            })
        };
        if self.queue.url.trim().is_empty() {
            return invalid(
                "queue.url",
                "is required: set it in the file or as QUILT_NOTIFY__QUEUE__URL",
            );
        }
        if self.ses.from.trim().is_empty() {
            return invalid(
                "ses.from",
                "is required: set it in the file or as QUILT_NOTIFY__SES__FROM",
            );
        }
        if let Err(cause) = EmailAddress::parse(&self.ses.from) {
            return invalid("ses.from", &format!("{:?} {cause}", self.ses.from));
        }
        if self.queue.wait_time_seconds > 20 {
            return invalid("queue.wait_time_seconds", "must be between 0 and 20");
        }
        if !(1..=10).contains(&self.queue.max_messages) {
            return invalid("queue.max_messages", "must be between 1 and 10");
        }
        if !(1..=43_200).contains(&self.queue.visibility_timeout_seconds) {
            return invalid(
                "queue.visibility_timeout_seconds",
                "must be between 1 and 43200 (12 hours)",
            );
        }
        if !self.ses.max_send_rate.is_finite() || self.ses.max_send_rate < 0.0 {
            return invalid("ses.max_send_rate", "must be 0 (ask SES) or more");
        }
        if self.worker.threads == 0 {
            return invalid("worker.threads", "must be at least 1");
        }
        if self.worker.pollers == 0 {
            return invalid("worker.pollers", "must be at least 1");
        }
        if self.worker.concurrency == 0 {
            return invalid("worker.concurrency", "must be at least 1");
        }
        if self.worker.dedupe_capacity == 0 {
            return invalid("worker.dedupe_capacity", "must be at least 1");
        }
        if self.retry.max_seconds > 43_200 || self.retry.base_seconds > self.retry.max_seconds {
            return invalid(
                "retry",
                "need base_seconds <= max_seconds <= 43200 (SQS's longest visibility timeout)",
            );
        }
        if let Some(listen) = &self.health.listen {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                return invalid(
                    "health.listen",
                    &format!("{listen:?} is not an address like 0.0.0.0:8080"),
                );
            }
        }
        if self.metrics.emf_interval_seconds > 0 && self.metrics.namespace.trim().is_empty() {
            return invalid(
                "metrics.namespace",
                "must not be empty while metrics.emf_interval_seconds is above 0",
            );
        }
        if self.s3.max_manifest_entries == 0 {
            return invalid("s3.max_manifest_entries", "must be at least 1");
        }
        if !(1..=4_194_303).contains(&self.s3.memory_megabytes) {
            return invalid(
                "s3.memory_megabytes",
                "must be between 1 and 4194303 (4 TiB)",
            );
        }
        if !(1..=1000).contains(&self.s3.max_tables) {
            return invalid("s3.max_tables", "must be between 1 and 1000");
        }
        if !(1..=64).contains(&self.s3.max_footer_megabytes) {
            return invalid("s3.max_footer_megabytes", "must be between 1 and 64");
        }
        if self.state.ttl_days == 0 || self.state.ttl_days > 365 {
            return invalid("state.ttl_days", "must be between 1 and 365");
        }
        if !(1..=14).contains(&self.state.dlq_retention_days) {
            return invalid(
                "state.dlq_retention_days",
                "must be between 1 and 14 (SQS keeps a message at most 14 days)",
            );
        }
        if !(5..=3600).contains(&self.state.lease_seconds) {
            return invalid("state.lease_seconds", "must be between 5 and 3600");
        }
        if !(1..=300).contains(&self.state.max_clock_skew_seconds) {
            return invalid("state.max_clock_skew_seconds", "must be between 1 and 300");
        }
        let shortest = LEASE_SKEW_MULTIPLE * self.state.max_clock_skew_seconds;
        if self.state.lease_seconds < shortest {
            return invalid(
                "state.lease_seconds",
                &format!(
                    "must be at least {LEASE_SKEW_MULTIPLE} × state.max_clock_skew_seconds ({shortest} s): leases compare the clocks of tasks that may disagree by twice the allowed skew"
                ),
            );
        }
        if !(1..=300).contains(&self.state.digest_check_seconds) {
            return invalid("state.digest_check_seconds", "must be between 1 and 300");
        }
        if self.routes.is_empty() {
            return invalid(
                "routes",
                "no route is configured, so every message would be deleted unsent; add a [[routes]] table",
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            if route.name.trim().is_empty() {
                return invalid(&format!("routes[{i}].name"), "must not be empty");
            }
            if !seen.insert(route.name.as_str()) {
                return invalid(
                    &format!("routes[{i}].name"),
                    &format!("route name \"{}\" is used twice", route.name),
                );
            }
            let topic = route
                .topic
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty());
            if topic.is_some() && self.ses.contact_list.is_none() {
                return invalid(
                    &format!("routes[{i}].topic"),
                    &format!(
                        "route \"{}\" names a topic, but ses.contact_list is not set",
                        route.name
                    ),
                );
            }
            if route.to_from.is_some() && !self.s3.details {
                return invalid(
                    &format!("routes[{i}].to_from"),
                    &format!(
                        "route \"{}\" takes recipients from package details, but s3.details = false reads none",
                        route.name
                    ),
                );
            }
            if route.digest.is_some() && self.state.table.is_none() {
                return invalid(
                    &format!("routes[{i}].digest"),
                    &format!(
                        "route \"{}\" is a digest, which needs the shared state table: set state.table (and create it with `quilt-notify state create`)",
                        route.name
                    ),
                );
            }
            if route.package_pattern.is_some() && !self.s3.details {
                return invalid(
                    &format!("routes[{i}].package_pattern"),
                    &format!(
                        "route \"{}\" filters on package details, but s3.details = false reads none",
                        route.name
                    ),
                );
            }
        }
        Ok(())
    }
}
