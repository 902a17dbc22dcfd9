//! Real Quilt package revisions on the test LocalStack's S3, pushed by the real client: a
//! bucket per test ([`QuiltBucket`], emptied and deleted when dropped, also when a test panics)
//! and [`QuiltBucket::push`], which runs `scripts/quilt_packages.py push` (quilt3 8.0.0) with
//! `.emulators/quilt-venv/bin/python` (made by `scripts/install-emulators`) and returns the top
//! hashes quilt3 reports, with quilt3's own diff against the previous revision.
//! [`QuiltBucket::bulk`] builds a revision of many entries with quilt3 without uploading files;
//! [`QuiltBucket::tables`] pushes revisions of real Parquet and CSV files.
//!
//! Everything here blocks on a child process (a push takes about a second): from an async test,
//! call it inside `tokio::task::spawn_blocking`, or accept the pause of that test's runtime.

// A toolbox for the package tests: not every helper (workflows, local files, a bucket of its own
// name) is used by the tests of today.
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
    /// quilt3's `Package.diff` of the previous revision and this one; `None` for a first
    /// revision (and for [`QuiltBucket::bulk`]).
    pub diff: Option<Quilt3Diff>,
}

/// What quilt3's `previous.diff(current)` says, each list sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Quilt3Diff {
    pub added: Vec<String>,
    pub modified: Vec<String>,
    pub deleted: Vec<String>,
}

impl Pushed {
    fn from_json(pushed: &Value) -> Self {
        let text = |key: &str| {
            pushed[key]
                .as_str()
                .unwrap_or_else(|| panic!("push result without {key}: {pushed}"))
                .to_owned()
        };
        let list = |diff: &Value, key: &str| -> Vec<String> {
            diff[key]
                .as_array()
                .unwrap_or_else(|| panic!("diff without {key}: {diff}"))
                .iter()
                .map(|v| v.as_str().expect("diff path").to_owned())
                .collect()
        };
        let diff = pushed
            .get("diff")
            .filter(|d| !d.is_null())
            .map(|d| Quilt3Diff {
                added: list(d, "added"),
                modified: list(d, "modified"),
                deleted: list(d, "deleted"),
            });
        Self {
            top_hash: text("top_hash"),
            previous_top_hash: pushed["previous_top_hash"].as_str().map(str::to_owned),
            manifest_key: text("manifest_key"),
            diff,
        }
    }
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
        Self::create_named(endpoint, &unique("qn-pkg"))
    }

    /// Creates the bucket `name` (e.g. a [`TestStack`](super::TestStack)'s `bucket`, which its
    /// rule passes), owned by the returned value: dropping it deletes the bucket.
    pub fn create_named(endpoint: &str, name: &str) -> Self {
        let bucket = Self {
            name: name.to_owned(),
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
    /// The result carries quilt3's diff against the revision `latest` pointed at before.
    pub fn push(&self, package: &str, revision: Revision) -> Pushed {
        let mut args: Vec<String> = vec![
            "push".into(),
            "--bucket".into(),
            self.name.clone(),
            "--name".into(),
            package.into(),
            "--diff".into(),
        ];
        args.extend(revision.args);
        Pushed::from_json(&quilt_packages(&self.endpoint, &args))
    }

    /// Builds one revision of `package` holding `files` file entries, with quilt3's
    /// `Package.build` (manifest and revision pointers as a push writes them), without uploading
    /// any file: the entries name objects under `s3://<bucket>/bulk/` that do not exist. Ten
    /// top-level folders `shard-0` … `shard-9`, each entry 100 to 149 bytes.
    pub fn bulk(&self, package: &str, files: usize, message: &str) -> Pushed {
        let args: Vec<String> = vec![
            "bulk".into(),
            "--bucket".into(),
            self.name.clone(),
            "--name".into(),
            package.into(),
            "--files".into(),
            files.to_string(),
            "--message".into(),
            message.into(),
        ];
        Pushed::from_json(&quilt_packages(&self.endpoint, &args))
    }

    /// Pushes the table scenario of `scripts/quilt_packages.py tables` as `package` (the bucket
    /// made versioned): real Parquet and CSV files over three revisions. Returns the script's
    /// JSON: each revision's top hash and, per table file, its physical key, size and what
    /// pyarrow (or Python's csv module) says about it.
    pub fn tables(&self, package: &str) -> Value {
        let args: Vec<String> = vec![
            "tables".into(),
            "--bucket".into(),
            self.name.clone(),
            "--name".into(),
            package.into(),
        ];
        quilt_packages(&self.endpoint, &args)
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
