//! `StateTable`: a DynamoDB state table on moto, unique to one test, made by the binary's own
//! `quilt-notify state create` and deleted when dropped (also when the test panics).

use std::path::Path;
use std::process::Command;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{sdk_config, unique};

/// One test's state table.
pub struct StateTable {
    /// Its name.
    pub name: String,
    /// A client for assertions and faults.
    pub client: aws_sdk_dynamodb::Client,
}

impl StateTable {
    /// A fresh name on moto at `endpoint`; nothing exists until [`StateTable::create`].
    pub fn new(endpoint: &str) -> Self {
        Self {
            name: unique("qn-state"),
            client: aws_sdk_dynamodb::Client::new(&sdk_config(endpoint)),
        }
    }

    /// The `[state]` section that points a worker at this table (endpoint: `via`, a proxy or
    /// moto itself), with short leases and a one-second digest check. The tasks of a test share
    /// one clock, so the allowed skew is the least (a lease must be 4 times it).
    pub fn section(&self, via: &str, lease_seconds: u32) -> String {
        format!(
            "[state]\ntable = \"{}\"\nendpoint_url = \"{via}\"\nlease_seconds = {lease_seconds}\nmax_clock_skew_seconds = 1\ndigest_check_seconds = 1\n",
            self.name
        )
    }

    /// Runs `quilt-notify state create --config CONFIG` and returns its stdout; panics if it
    /// fails. The config must name this table (see [`StateTable::section`]).
    pub fn create(&self, config: &Path) -> String {
        state_command(config, &["create"], &[])
    }

    /// Deletes the table now (a fault: the worker must stop receiving, not lose messages).
    pub async fn delete(&self) {
        self.client
            .delete_table()
            .table_name(&self.name)
            .send()
            .await
            .expect("DeleteTable");
    }

    /// Every item whose `pk` starts with `prefix` (a Scan: fine for a test's small table).
    pub async fn items(
        &self,
        prefix: &str,
    ) -> Vec<std::collections::HashMap<String, AttributeValue>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.name)
                .filter_expression("begins_with(pk, :p)")
                .expression_attribute_values(":p", AttributeValue::S(prefix.to_owned()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .expect("Scan");
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return items,
            }
        }
    }
}

/// Runs the operator's command `quilt-notify state ARGS --config CONFIG` (`ARGS` empty: `state`
/// itself, which shows the table), with extra environment variables, and returns its stdout;
/// panics if it fails.
pub fn state_command(config: &Path, args: &[&str], env: &[(&str, String)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_quilt-notify"))
        .arg("state")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run quilt-notify state");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "quilt-notify state {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

impl Drop for StateTable {
    fn drop(&mut self) {
        let client = self.client.clone();
        let name = self.name.clone();
        // Drop cannot await, and may run inside the test's runtime: a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let _ = runtime.block_on(client.delete_table().table_name(name).send());
        })
        .join();
    }
}
