//! Digest emails as the SES emulator stored them, digest routes for a stack, and waiting
//! until every window went out.

use std::time::Duration;

use serde_json::Value;

use super::state::StateTable;
use super::{eventually, TestStack};

/// One digest email as the SES emulator stored it.
#[derive(Debug)]
pub struct Digest {
    pub route: String,
    pub subject: String,
    pub handles: Vec<String>,
}

/// The digests among these emails: the shipped text template lists one package per
/// `<handle> in s3://…` line and ends with `route "<name>"`.
pub fn digests(emails: &[Value]) -> Vec<Digest> {
    emails
        .iter()
        .filter_map(|email| {
            let text = email["body"]["text"].as_str()?;
            let start = text.find("(route \"")? + "(route \"".len();
            let route = text[start..].split('"').next()?.to_owned();
            let handles = text
                .lines()
                .filter_map(|line| line.split_once(" in s3://").map(|(h, _)| h.to_owned()))
                .collect();
            Some(Digest {
                route,
                subject: email["subject"].as_str().unwrap_or_default().to_owned(),
                handles,
            })
        })
        .collect()
}

/// One digest route `name` on this stack's bucket, every `every`, mailing `to`, with the
/// digest template `template` (the shipped one when `None`); no package details (the events
/// are synthetic).
pub fn digest_route(
    stack: &TestStack,
    name: &str,
    every: &str,
    to: &str,
    template: Option<&str>,
) -> String {
    let pattern = format!(
        r#"{{"source": ["com.quiltdata"], "detail": {{"bucket": ["{}"]}}}}"#,
        stack.bucket
    );
    let template = template.map_or(String::new(), |t| format!(", template = \"{t}\""));
    format!(
        "[[routes]]\nname = \"{name}\"\nto = [\"{to}\"]\ndetails = false\ndigest = {{ every = \"{every}\"{template} }}\npattern = '{pattern}'\n"
    )
}

/// Waits until the queue is empty and no window is pending any more.
pub async fn drained(stack: &TestStack, table: &StateTable, within: Duration) -> bool {
    eventually(within, || async {
        stack.depth(&stack.queue_url).await == (0, 0) && table.items("pending#").await.is_empty()
    })
    .await
}
