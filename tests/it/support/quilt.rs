//! Real Quilt package revisions on the test LocalStack's S3, pushed by the real client: a
//! bucket per test ([`QuiltBucket`], emptied and deleted when dropped, also when a test panics)
//! and [`QuiltBucket::push`], which runs `scripts/quilt_packages.py push` (quilt3 8.0.0) with
//! `.emulators/quilt-venv/bin/python` (made by `scripts/install-emulators`) and returns the top
//! hashes quilt3 reports.
//!
//! Everything here blocks on a child process (a push takes about a second): from an async test,
//! call it inside `tokio::task::spawn_blocking`, or accept the pause of that test's runtime.

// The package-details (enrichment) tests in tests/it use this module; until they land, nothing
// does.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::{repo_root, unique};

/// The Python of the quilt3 venv, which `scripts/install-emulators` makes.
fn quilt_python() -> PathBuf {
    let python = repo_root().join(".emulators/quilt-venv/bin/python");
    assert!(
        python.is_file(),
        "no quilt3 venv at {}: run scripts/install-emulators (scripts/test does)",
        python.display()
    );
    python
}

/// Runs `scripts/quilt_packages.py --endpoint-url ENDPOINT ARGS` and parses the JSON it prints.
fn quilt_packages(endpoint: &str, args: &[String]) -> Value {
    let output = run_quilt_packages(endpoint, args);
    assert!(
        output.status.success(),
        "scripts/quilt_packages.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "scripts/quilt_packages.py {args:?}: bad JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn run_quilt_packages(endpoint: &str, args: &[String]) -> Output {
    Command::new(quilt_python())
        .arg(repo_root().join("scripts/quilt_packages.py"))
        .args(["--endpoint-url", endpoint])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/quilt_packages.py: {e}"))
}

/// What one push made, as `scripts/quilt_packages.py push` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub top_hash: String,
    /// The revision `latest` pointed at before this push; `None` for a package's first.
    pub previous_top_hash: Option<String>,
    /// `.quilt/packages/<top hash>`.
    pub manifest_key: String,
}

/// One revision to push: starts from the package's latest revision (or from nothing with
/// [`Revision::starting_empty`]) and applies the edits in order.
#[derive(Debug, Clone, Default)]
pub struct Revision {
    args: Vec<String>,
}

impl Revision {
    pub fn new() -> Self {
        Self::default()
    }

    /// Start from an empty package instead of the latest revision.
    pub fn starting_empty(mut self) -> Self {
        self.args.extend(["--base".into(), "none".into()]);
        self
    }

    /// Add or replace the entry `logical_key` with this text.
    pub fn set_text(mut self, logical_key: &str, text: &str) -> Self {
        self.args
            .extend(["--set-text".into(), format!("{logical_key}={text}")]);
        self
    }

    /// Add or replace the entry `logical_key` with a local file's content.
    pub fn set_file(mut self, logical_key: &str, path: &Path) -> Self {
        self.args
            .extend(["--set".into(), format!("{logical_key}={}", path.display())]);
        self
    }

    /// Remove the entry `logical_key`.
    pub fn delete(mut self, logical_key: &str) -> Self {
        self.args.extend(["--delete".into(), logical_key.into()]);
        self
    }

    /// The package's `user_meta`.
    pub fn meta(mut self, meta: &Value) -> Self {
        self.args.extend(["--meta".into(), meta.to_string()]);
        self
    }

    /// The revision's commit message.
    pub fn message(mut self, message: &str) -> Self {
        self.args.extend(["--message".into(), message.into()]);
        self
    }

    /// The workflow id (the bucket needs `.quilt/workflows/config.yml` naming it).
    pub fn workflow(mut self, id: &str) -> Self {
        self.args.extend(["--workflow".into(), id.into()]);
        self
    }
}

/// A bucket of its own for one test on the test LocalStack; dropping it deletes it with every
/// object (and version) in it.
pub struct QuiltBucket {
    pub name: String,
    endpoint: String,
}

impl QuiltBucket {
    /// Creates a uniquely named bucket at `endpoint` (`QN_TEST_AWS_ENDPOINT`, see
    /// [`Endpoints`](super::Endpoints)).
    pub fn create(endpoint: &str) -> Self {
        // unique() is lower-case letters, digits and dashes: a valid bucket name, well under 63.
        let bucket = Self {
            name: unique("qn-pkg"),
            endpoint: endpoint.to_owned(),
        };
        quilt_packages(
            endpoint,
            &[
                "bucket".into(),
                "create".into(),
                "--bucket".into(),
                bucket.name.clone(),
            ],
        );
        bucket
    }

    /// Pushes one revision of `package` (e.g. `team/demo`) with quilt3. Back-to-back pushes
    /// are spaced by the script into distinct seconds, so each keeps its own revision pointer.
    pub fn push(&self, package: &str, revision: Revision) -> Pushed {
        let mut args: Vec<String> = vec![
            "push".into(),
            "--bucket".into(),
            self.name.clone(),
            "--name".into(),
            package.into(),
        ];
        args.extend(revision.args);
        let pushed = quilt_packages(&self.endpoint, &args);
        let text = |key: &str| {
            pushed[key]
                .as_str()
                .unwrap_or_else(|| panic!("push result without {key}: {pushed}"))
                .to_owned()
        };
        Pushed {
            top_hash: text("top_hash"),
            previous_top_hash: pushed["previous_top_hash"].as_str().map(str::to_owned),
            manifest_key: text("manifest_key"),
        }
    }

    /// The `package-revision` event detail a Quilt stack publishes for `pushed`.
    pub fn event_detail(&self, package: &str, pushed: &Pushed) -> Value {
        serde_json::json!({
            "version": "0.1",
            "type": "created",
            "bucket": self.name,
            "handle": package,
            "topHash": pushed.top_hash,
        })
    }
}

impl Drop for QuiltBucket {
    fn drop(&mut self) {
        let args = [
            "bucket".into(),
            "delete".into(),
            "--bucket".into(),
            self.name.clone(),
        ];
        let output = run_quilt_packages(&self.endpoint, &args);
        if !output.status.success() {
            eprintln!(
                "warning: could not delete bucket {}: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
