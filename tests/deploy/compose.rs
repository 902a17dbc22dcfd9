//! The compose file (`compose.yaml`): valid against the Compose Specification, its files
//! present, its start order, and the worker environment it gives accepted by the config loader.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use serde_json::{json, Value};

use quilt_notify::app;
use quilt_notify::config::Settings;

use crate::{deploy_check, read, repo, IMAGE_BINARY};

/// compose.yaml as docker compose reads it (interpolated, with no variables set), after schema
/// validation.
fn compose_model() -> Value {
    compose_model_with(&json!({}))
}

/// As [`compose_model`], with the variables in `env` set (a JSON object).
fn compose_model_with(env: &Value) -> Value {
    let checked = deploy_check(&[
        "compose",
        "compose.yaml",
        "tests/deploy_data/compose-spec.schema.json",
        &env.to_string(),
    ]);
    let errors = checked["errors"].as_array().expect("errors");
    assert!(
        errors.is_empty(),
        "compose.yaml does not validate against the Compose Specification schema:\n{}",
        errors
            .iter()
            .map(|e| e.as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    );
    checked["model"].clone()
}

/// A service's environment (map or `KEY=VALUE` list form) as a map.
fn service_env(service: &Value) -> HashMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k.clone(), value)
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let text = item.as_str().expect("KEY=VALUE");
                let (k, v) = text.split_once('=').unwrap_or((text, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Value::Null => HashMap::new(),
        other => panic!("environment {other}"),
    }
}

/// A service's volumes as (source, container path): a bind mount's source starts with `./`,
/// anything else names a volume.
fn volume_sources(service: &Value) -> Vec<(String, String)> {
    let Some(volumes) = service["volumes"].as_array() else {
        return Vec::new();
    };
    volumes
        .iter()
        .map(|volume| match volume {
            Value::String(short) => {
                let mut parts = short.split(':');
                let source = parts.next().expect("source").to_owned();
                let target = parts.next().expect("target").to_owned();
                (source, target)
            }
            Value::Object(long) => (
                long["source"].as_str().expect("source").to_owned(),
                long["target"].as_str().expect("target").to_owned(),
            ),
            other => panic!("volume {other}"),
        })
        .collect()
}

/// Whether a volume source names a volume (declared at the top level) rather than a host path.
fn is_named_volume(source: &str) -> bool {
    !source.starts_with('.') && !source.starts_with('/') && !source.starts_with('~')
}

/// A service's bind mounts as (host path in the repository, container path).
fn bind_mounts(service: &Value) -> Vec<(PathBuf, String)> {
    volume_sources(service)
        .into_iter()
        .filter(|(source, _)| !is_named_volume(source))
        .map(|(source, target)| {
            assert!(
                source.starts_with("./"),
                "bind mounts come from the repository: {source}"
            );
            (repo().join(&source[2..]), target)
        })
        .collect()
}

/// The host file behind a container path, through the service's bind mounts.
fn host_path(service: &Value, container_path: &str) -> Option<PathBuf> {
    bind_mounts(service).into_iter().find_map(|(host, target)| {
        if container_path == target {
            Some(host)
        } else {
            container_path
                .strip_prefix(&format!("{target}/"))
                .map(|rest| host.join(rest))
        }
    })
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn compose_file_validates_against_the_compose_spec_schema() {
    let model = compose_model();
    let services = model["services"].as_object().expect("services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["localstack", "moto", "sample-event", "ses", "worker"]
            .into_iter()
            .collect()
    );
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn compose_services_reference_files_that_exist() {
    let model = compose_model();
    for (name, service) in model["services"].as_object().expect("services") {
        for (host, target) in bind_mounts(service) {
            assert!(
                host.exists(),
                "service {name}: mounts {} at {target}, which does not exist",
                host.display()
            );
        }
        if let Some(build) = service.get("build") {
            let context = repo().join(build["context"].as_str().expect("context"));
            assert!(context.is_dir(), "service {name}: build context");
            let dockerfile = build["dockerfile"].as_str().unwrap_or("Dockerfile");
            assert!(
                context.join(dockerfile).is_file(),
                "service {name}: {dockerfile}"
            );
        }
    }
    let services = &model["services"];

    // LocalStack's ready hook: a .py that LocalStack runs, mounted from deploy/, which runs the
    // shared set-up script, mounted with the rule pattern it reads.
    let localstack = &services["localstack"];
    assert!(localstack["image"]
        .as_str()
        .is_some_and(|i| i.starts_with("localstack/localstack:4.12")));
    let hook = "/etc/localstack/init/ready.d/quilt-notify.py";
    let hook_file = host_path(localstack, hook).expect("the ready hook is mounted");
    let hook_text = std::fs::read_to_string(&hook_file).expect("hook");
    assert!(hook_text.contains("/quilt-notify/scripts/setup_resources.py"));
    assert_eq!(
        host_path(localstack, "/quilt-notify/scripts/setup_resources.py"),
        Some(repo().join("scripts/setup_resources.py"))
    );
    assert_eq!(
        host_path(localstack, "/quilt-notify/config/rule-pattern.json"),
        Some(repo().join("config/rule-pattern.json"))
    );
    let services_env = service_env(localstack);
    let emulated: BTreeSet<&str> = services_env["SERVICES"].split(',').collect();
    assert!(
        emulated.contains("s3") && emulated.contains("sqs") && emulated.contains("events"),
        "{emulated:?}"
    );

    // The sample event: a shell step that installs quilt3 from the harness's lock, then the
    // shared script, which pushes with scripts/quilt_packages.py and publishes the event file.
    let sample = &services["sample-event"];
    let entrypoint: Vec<&str> = sample["entrypoint"]
        .as_array()
        .expect("exec-form entrypoint")
        .iter()
        .map(|v| v.as_str().expect("arg"))
        .collect();
    assert_eq!(entrypoint[..2], ["sh", "-c"]);
    let step = entrypoint[2];
    let script_path = step
        .split_whitespace()
        .find(|word| word.ends_with("send_sample_event.py"))
        .expect("the step runs send_sample_event.py");
    assert!(
        step.contains(&format!("{script_path} \"$@\"")),
        "the service's arguments reach the script (`docker compose run sample-event --handle x`): {step}"
    );
    assert_eq!(
        host_path(sample, script_path),
        Some(repo().join("scripts/send_sample_event.py"))
    );
    let lock_path = step
        .split_whitespace()
        .find(|word| word.ends_with("quilt-requirements.txt"))
        .expect("quilt3 is installed from the lock file");
    assert_eq!(
        host_path(sample, lock_path),
        Some(repo().join("scripts/quilt-requirements.txt"))
    );
    assert!(step.contains("--no-deps"), "installed as pinned: {step}");
    for (file, why) in [
        ("events/package-revision.json", "the event it publishes"),
        (
            "scripts/setup_resources.py",
            "send_sample_event.py imports it",
        ),
        (
            "scripts/quilt_packages.py",
            "send_sample_event.py pushes with it",
        ),
    ] {
        assert_eq!(
            host_path(sample, &format!("/quilt-notify/{file}")),
            Some(repo().join(file)),
            "{why}"
        );
    }
    // The venv lives in a declared volume, so a second `docker compose run` skips the install.
    let declared = model["volumes"].as_object().expect("top-level volumes");
    for (source, _) in volume_sources(sample) {
        if is_named_volume(&source) {
            assert!(
                declared.contains_key(&source),
                "volume {source} is declared"
            );
        }
    }
    assert!(
        volume_sources(sample)
            .iter()
            .any(|(source, target)| is_named_volume(source) && step.contains(target.as_str())),
        "quilt3's venv is in a volume"
    );

    // The SES emulator installs from the harness's own lock file, and answers GetAccount as the
    // harness's does (it refuses an account JSON that lacks any field, and the worker then
    // sends unthrottled).
    let ses = &services["ses"];
    let account: Value = serde_json::from_str(&service_env(ses)["AWS_SES_ACCOUNT"])
        .expect("AWS_SES_ACCOUNT is JSON");
    let start_emulators = read("scripts/start-emulators");
    let harness_account = start_emulators
        .split("default_ses_account='")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("scripts/start-emulators sets default_ses_account");
    assert_eq!(
        account,
        serde_json::from_str::<Value>(harness_account).expect("harness account JSON"),
        "compose's AWS_SES_ACCOUNT vs scripts/start-emulators"
    );
    for file in ["package.json", "package-lock.json", ".npmrc"] {
        let path = host_path(ses, &format!("/quilt-notify/scripts/ses/{file}"))
            .unwrap_or_else(|| panic!("ses mounts scripts/ses/{file}"));
        assert!(path.is_file(), "{}", path.display());
    }
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn compose_starts_each_service_when_what_it_needs_is_healthy() {
    let model = compose_model();
    let services = &model["services"];
    for (service, needs) in [
        ("worker", vec!["moto", "localstack", "ses"]),
        // The LocalStack init hook creates the state table in moto.
        ("localstack", vec!["moto"]),
        ("sample-event", vec!["worker"]),
    ] {
        for need in needs {
            assert_eq!(
                services[service]["depends_on"][need]["condition"], "service_healthy",
                "{service} waits for {need} to be healthy"
            );
            assert!(
                services[need]["healthcheck"]["test"].is_array(),
                "{need} has an exec-form health check"
            );
        }
    }
    assert_eq!(
        services["worker"]["healthcheck"]["test"],
        json!(["CMD", IMAGE_BINARY, "health"])
    );
    let ports: Vec<&str> = services["ses"]["ports"]
        .as_array()
        .expect("ses ports")
        .iter()
        .map(|p| p.as_str().expect("short port syntax"))
        .collect();
    assert!(
        ports.contains(&"127.0.0.1:8005:8005"),
        "the inbox is on localhost:8005: {ports:?}"
    );
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn compose_builds_the_worker_by_default_and_runs_a_published_image_through_one_variable() {
    let built = &compose_model()["services"]["worker"];
    assert_eq!(built["image"], "quilt-notify:local");
    assert_eq!(built["build"]["context"], ".");
    assert!(
        built.get("pull_policy").is_none(),
        "with no pull_policy Compose pulls a named image and builds only when it finds none"
    );

    let published = "ghcr.io/quilt-example/quilt-notify:0.1.0";
    let pulled = &compose_model_with(&json!({ "QUILT_NOTIFY_IMAGE": published }))["services"];
    assert_eq!(pulled["worker"]["image"], published);
    assert_eq!(
        pulled["worker"]["build"], built["build"],
        "the variable changes the image only"
    );
    assert_eq!(
        pulled["localstack"],
        compose_model()["services"]["localstack"],
        "and nothing else"
    );
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn compose_worker_environment_is_accepted_by_the_config_loader() {
    let model = compose_model();
    let services = &model["services"];
    let worker = &services["worker"];
    let env = service_env(worker);
    let config_in_container = env
        .get("QUILT_NOTIFY_CONFIG")
        .expect("the worker names its config file");
    let config = host_path(worker, config_in_container).expect("the config file is mounted");
    assert_eq!(config, repo().join("config/local.toml"));
    assert!(
        host_path(worker, "/etc/quilt-notify/templates").is_some(),
        "local.toml's relative templates dir is /etc/quilt-notify/templates"
    );

    let settings = Settings::load_with_env(Some(&config), Some(env.clone()))
        .unwrap_or_else(|e| panic!("config/local.toml + the worker's environment: {e}"));
    app::compile(&settings).unwrap_or_else(|e| panic!("{e:#}"));

    // The loader refuses unknown keys, so the check above would catch a misspelt variable.
    let mut misspelt = env.clone();
    misspelt.insert("QUILT_NOTIFY__QUEUE__ENDPOINT".into(), "x".into());
    assert!(Settings::load_with_env(Some(&config), Some(misspelt)).is_err());

    // Endpoints name compose services, on the ports they listen on.
    assert_eq!(
        settings.queue.endpoint_url.as_deref(),
        Some("http://localstack:4566")
    );
    assert_eq!(
        settings.ses.endpoint_url.as_deref(),
        Some("http://ses:8005")
    );
    // The state table is the one the LocalStack init hook creates in the moto service.
    assert_eq!(
        settings.state.endpoint_url.as_deref(),
        Some("http://moto:5000")
    );
    let init = service_env(&services["localstack"]);
    assert_eq!(
        settings.state.table.as_deref(),
        init.get("QN_STATE_TABLE").map(String::as_str)
    );
    assert_eq!(
        init.get("QN_STATE_ENDPOINT").map(String::as_str),
        Some("http://moto:5000")
    );
    // Package details come from LocalStack's S3 (the field is typed by the worker's [s3]
    // section; the loader above accepted it, and refuses unknown keys).
    assert_eq!(
        env["QUILT_NOTIFY__S3__ENDPOINT_URL"],
        "http://localstack:4566"
    );
    assert!(settings
        .queue
        .url
        .starts_with("http://localstack:4566/queue/us-east-1/000000000000/"));
    assert!(
        services["ses"]["command"]
            .to_string()
            .contains("--host 0.0.0.0 --port 8005"),
        "the SES emulator listens on 8005 for other containers"
    );

    // The queue the worker polls is the one the hook creates, with the same visibility timeout.
    let hook_env = service_env(&services["localstack"]);
    let queue_name = hook_env
        .get("QN_QUEUE_NAME")
        .map(String::as_str)
        .unwrap_or("quilt-notify");
    assert!(
        settings.queue.url.ends_with(&format!("/{queue_name}")),
        "{} vs QN_QUEUE_NAME={queue_name}",
        settings.queue.url
    );
    if let Some(visibility) = hook_env.get("QN_VISIBILITY_TIMEOUT") {
        assert_eq!(
            settings.queue.visibility_timeout_seconds.to_string(),
            *visibility
        );
    }
    assert!(
        settings.health.listen.is_some(),
        "the health check needs it"
    );
}
