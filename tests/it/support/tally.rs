//! How a test's events fared: which were mailed (once, more than once, never), which the
//! worker logged as settled, and the `RELIABILITY |` summary line docs/reliability.md tabulates.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

/// The event id an email was sent for: every template ends with "… for event <id>."
pub fn event_id_of(email: &Value) -> Option<String> {
    let text = email["body"]["text"]
        .as_str()
        .or_else(|| email["body"]["html"].as_str())
        .or_else(|| email["body"].as_str())?;
    let start = text.rfind("for event ")? + "for event ".len();
    let id: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '.' && *c != '<')
        .collect();
    Some(id)
}

/// Event ids of the log lines whose outcome is one of `outcomes`.
pub fn event_ids(lines: &[Value], outcomes: &[&str]) -> HashSet<String> {
    lines
        .iter()
        .filter(|l| outcomes.iter().any(|o| l["outcome"] == *o))
        .filter_map(|l| l["event_id"].as_str().map(str::to_owned))
        .collect()
}

/// Whether every id in `expected` was logged as sent (or as a duplicate of a sent one).
pub fn all_settled(lines: &[Value], expected: &[String]) -> bool {
    let done = event_ids(lines, &["sent", "duplicate"]);
    expected.iter().all(|id| done.contains(id))
}

/// How the expected events fared in the store.
pub struct Tally {
    /// Expected ids with at least one email.
    pub delivered: usize,
    /// Extra copies beyond the first, per id.
    pub duplicates: BTreeMap<String, usize>,
    /// Expected ids with no email.
    pub lost: Vec<String>,
}

impl Tally {
    pub fn of(expected: &[String], emails: &[Value]) -> Self {
        let mut copies: BTreeMap<String, usize> = BTreeMap::new();
        for email in emails {
            if let Some(id) = event_id_of(email) {
                *copies.entry(id).or_default() += 1;
            }
        }
        let lost: Vec<String> = expected
            .iter()
            .filter(|id| !copies.contains_key(*id))
            .cloned()
            .collect();
        let duplicates = copies
            .iter()
            .filter(|(id, n)| **n > 1 && expected.contains(id))
            .map(|(id, n)| (id.clone(), n - 1))
            .collect();
        Self {
            delivered: expected.len() - lost.len(),
            duplicates,
            lost,
        }
    }

    pub fn duplicate_count(&self) -> usize {
        self.duplicates.values().sum()
    }
}

/// One row of the table in docs/reliability.md.
pub fn summary(fault: &str, injected: &str, sent: usize, tally: &Tally, in_dlq: &str) {
    println!(
        "RELIABILITY | {fault} | {injected} | {sent} | {} | {} | {in_dlq} | {} |",
        tally.delivered,
        tally.duplicate_count(),
        tally.lost.len()
    );
    if !tally.duplicates.is_empty() {
        println!("RELIABILITY duplicates ({fault}): {:?}", tally.duplicates);
    }
}
