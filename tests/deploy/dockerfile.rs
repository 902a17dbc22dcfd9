//! The `Dockerfile` and `.dockerignore`: what the image copies, builds and runs.

use std::collections::HashMap;
use std::path::PathBuf;

use quilt_notify::config::Settings;

use crate::{read, repo, IMAGE_BINARY};

/// Dockerfile instructions, continuation lines joined, comments dropped: (INSTRUCTION, rest).
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (instruction, rest) = current.split_once(char::is_whitespace).expect("arguments");
        out.push((instruction.to_uppercase(), rest.trim().to_owned()));
        current.clear();
    }
    out
}

/// The instructions of the last stage (the image that ships).
fn final_stage() -> Vec<(String, String)> {
    let all = dockerfile();
    let start = all.iter().rposition(|(i, _)| i == "FROM").expect("a FROM");
    all[start..].to_vec()
}

/// Matches one `.dockerignore` pattern against a path, or any of its parents, as Docker does.
fn ignore_pattern_matches(pattern: &str, path: &str) -> bool {
    fn glob(pattern: &[u8], text: &[u8]) -> bool {
        match (pattern.first(), text.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                glob(&pattern[1..], text)
                    || (!text.is_empty() && text[0] != b'/' && glob(pattern, &text[1..]))
            }
            (Some(b'?'), Some(&c)) if c != b'/' => glob(&pattern[1..], &text[1..]),
            (Some(&p), Some(&c)) if p == c => glob(&pattern[1..], &text[1..]),
            _ => false,
        }
    }
    let pattern = pattern.trim_end_matches('/');
    let mut prefix = String::new();
    for part in path.split('/') {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        if glob(pattern.as_bytes(), prefix.as_bytes()) {
            return true;
        }
    }
    false
}

/// Whether `.dockerignore` leaves `path` in the build context (last matching rule wins).
fn in_build_context(path: &str) -> bool {
    let mut included = true;
    for line in read(".dockerignore").lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (negated, pattern) = match line.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, line),
        };
        if ignore_pattern_matches(pattern, path) {
            included = negated;
        }
    }
    included
}

/// A JSON (exec-form) argument list, e.g. of HEALTHCHECK CMD or ENTRYPOINT.
fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not exec form ({e}): {text}"))
}

#[test]
fn dockerfile_copies_only_files_that_exist_and_are_in_the_build_context() {
    let mut copies = 0;
    for (instruction, rest) in dockerfile() {
        if instruction != "COPY" && instruction != "ADD" {
            continue;
        }
        assert_eq!(instruction, "COPY", "COPY, not ADD");
        if rest.starts_with("--from=") {
            continue;
        }
        let args: Vec<&str> = rest
            .split_whitespace()
            .filter(|a| !a.starts_with("--"))
            .collect();
        let (sources, _destination) = args.split_at(args.len() - 1);
        for source in sources {
            copies += 1;
            if *source == "." {
                continue;
            }
            assert!(
                repo().join(source).exists(),
                "Dockerfile copies {source}, which does not exist"
            );
            assert!(
                in_build_context(source),
                "Dockerfile copies {source}, which .dockerignore leaves out of the context"
            );
        }
    }
    assert!(copies > 5, "found the COPY instructions");
    // What the planner's `COPY . .` must see for `cargo chef prepare`.
    for path in [
        "Cargo.toml",
        "Cargo.lock",
        "src/main.rs",
        "src/lib.rs",
        "benches/pipeline.rs",
        "config/default.toml",
        "events/package-revision.json",
    ] {
        assert!(
            in_build_context(path),
            "{path} must be in the build context"
        );
    }
    for path in [
        "target/release/quilt-notify",
        ".emulators/venv",
        ".git/HEAD",
    ] {
        assert!(
            !in_build_context(path),
            "{path} must stay out of the context"
        );
    }
}

#[test]
fn dockerfile_builds_locked_and_caches_dependencies_apart_from_the_code() {
    let all = dockerfile();
    let runs: Vec<&str> = all
        .iter()
        .filter(|(i, _)| i == "RUN")
        .map(|(_, r)| r.as_str())
        .collect();
    let cook = runs
        .iter()
        .position(|r| r.contains("cargo chef cook"))
        .expect("dependencies are built from a cargo-chef recipe");
    let build = runs
        .iter()
        .position(|r| r.contains("cargo build"))
        .expect("cargo build");
    assert!(cook < build);
    assert!(runs[cook].contains("--release") && runs[cook].contains("--locked"));
    assert!(runs[build].contains("--release") && runs[build].contains("--locked"));
    // Between the two, only manifests and sources are copied: the cook layer does not depend on them.
    let index_of = |needle: &str| {
        all.iter()
            .position(|(i, r)| i == "RUN" && r.contains(needle))
            .expect(needle)
    };
    let between = &all[index_of("cargo chef cook")..index_of("cargo build")];
    assert!(between.iter().any(|(i, r)| i == "COPY" && r == "src src"));
}

#[test]
fn dockerfile_image_is_distroless_non_root_and_checks_health_with_the_binary() {
    let stage = final_stage();
    let get = |name: &str| -> Vec<String> {
        stage
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, r)| r.clone())
            .collect()
    };
    let from = &get("FROM")[0];
    assert!(
        from.starts_with("gcr.io/distroless/cc-debian12:nonroot"),
        "{from}"
    );
    assert!(
        get("RUN").is_empty(),
        "no shell in the runtime image to RUN with"
    );
    assert_eq!(get("USER"), vec!["nonroot:nonroot"]);

    let healthcheck = &get("HEALTHCHECK")[0];
    let cmd = healthcheck
        .split_once("CMD ")
        .map(|(_, c)| c)
        .expect("HEALTHCHECK CMD");
    assert_eq!(exec_form(cmd), vec![IMAGE_BINARY, "health"]);
    assert_eq!(exec_form(&get("ENTRYPOINT")[0]), vec![IMAGE_BINARY]);
    assert_eq!(exec_form(&get("CMD")[0]), vec!["run"]);

    let copies = get("COPY");
    assert!(
        copies
            .iter()
            .any(|c| c.starts_with("--from=builder") && c.ends_with(IMAGE_BINARY)),
        "the binary is installed at {IMAGE_BINARY}: {copies:?}"
    );
    assert!(copies.contains(&"config/templates /etc/quilt-notify/templates".to_owned()));
    assert!(copies.contains(&"deploy/container.toml /etc/quilt-notify/config.toml".to_owned()));

    // The default config path and the health listener.
    let env = get("ENV").join(" ");
    assert!(
        env.contains("QUILT_NOTIFY_CONFIG=/etc/quilt-notify/config.toml"),
        "{env}"
    );
    assert!(
        env.contains("QUILT_NOTIFY__HEALTH__LISTEN=0.0.0.0:8080"),
        "{env}"
    );
}

#[test]
fn the_image_config_file_points_at_the_baked_templates() {
    // deploy/container.toml as the image has it, with the queue and sender from the environment.
    let env: HashMap<String, String> = [
        ("QUILT_NOTIFY__QUEUE__URL", "https://sqs.example/q"),
        ("QUILT_NOTIFY__SES__FROM", "quilt@example.com"),
        (
            "QUILT_NOTIFY_CONFIG_TOML",
            "[[routes]]\nname = \"all\"\ntemplate = \"package-created\"\nto = [\"a@example.com\"]\npattern = { source = [\"com.quiltdata\"] }\n",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let settings = Settings::load_with_env(Some(&repo().join("deploy/container.toml")), Some(env))
        .unwrap_or_else(|e| panic!("deploy/container.toml: {e}"));
    assert_eq!(
        settings.templates.dir,
        PathBuf::from("/etc/quilt-notify/templates")
    );
    assert_eq!(settings.health.listen.as_deref(), Some("0.0.0.0:8080"));
    assert_eq!(settings.log.format, quilt_notify::config::LogFormat::Json);
    // Every template a route can name by default is baked in.
    assert!(repo()
        .join("config/templates/package-created/subject.hbs")
        .is_file());
}
