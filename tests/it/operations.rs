//! The operator's tools, end to end with the real binary: `render`, `send-test-event` (both
//! paths), `dlq inspect` and `dlq redrive` (including a move task that ends FAILED), `/readyz`
//! when SQS goes away, and `/metrics` after a known workload.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::support::{eventually, free_port, repo_root, StackOptions, TestStack};

const SECONDS_30: Duration = Duration::from_secs(30);

/// What a run of the binary printed.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `quilt-notify ARGS` to the end.
async fn quilt_notify(args: &[&str]) -> Ran {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_quilt-notify"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .env_remove("QUILT_NOTIFY_CONFIG")
        .output()
        .await
        .expect("run quilt-notify");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `host:port` of an `http://host:port` endpoint.
fn authority(endpoint: &str) -> SocketAddr {
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("endpoint host:port")
}

/// GET `url`: status and body.
async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

fn pattern_for(stack: &TestStack, handle_prefix: &str) -> Value {
    json!({
        "source": ["com.quiltdata"],
        "detail-type": ["package-revision"],
        "detail": {"bucket": [stack.bucket], "handle": [{"prefix": handle_prefix}]}
    })
}

/// The stack's config with the EventBridge endpoint and `extra` sections.
fn config(stack: &TestStack, routes: &str, extra: &str) -> std::path::PathBuf {
    let extra = format!(
        "[events]\nendpoint_url = \"{}\"\n{extra}",
        stack.endpoints.aws
    );
    stack.config(&stack.endpoints.ses.clone(), routes, &extra)
}

#[tokio::test(flavor = "multi_thread")]
async fn render_prints_writes_and_names_the_template_line_that_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = repo_root().join("config/templates");
    let config = dir.path().join("config.toml");
    let write_config = |templates: &Path| {
        std::fs::write(
            &config,
            format!(
                r#"
[queue]
url = "http://127.0.0.1:9/000000000000/unused"
[ses]
from = "quilt@example.com"
[catalog]
host = "catalog.example.com"
[templates]
dir = "{}"
[[routes]]
name = "docs"
template = "package-created"
to = ["team@example.com"]
pattern = {{ source = ["com.quiltdata"], detail = {{ bucket = ["example"] }} }}
[[routes]]
name = "elsewhere"
template = "package-created"
to = ["other@example.com"]
pattern = {{ detail = {{ bucket = ["not-this-one"] }} }}
"#,
                templates.display()
            ),
        )
        .expect("write config");
    };
    write_config(&templates);
    let event = repo_root().join("events/package-revision.json");

    let printed = quilt_notify(&["render", "-c", path_arg(&config), "-e", path_arg(&event)]).await;
    assert_eq!(printed.code, Some(0), "{printed:?}");
    assert!(
        printed
            .stdout
            .contains("=== route \"docs\" → team@example.com"),
        "{printed:?}"
    );
    assert!(
        printed
            .stdout
            .contains("Subject: New package revision: some/package @ a0fddac in s3://example"),
        "{printed:?}"
    );
    assert!(printed
        .stdout
        .contains("quilt+s3://example#package=some/package@a0fddace"));
    assert!(
        !printed.stdout.contains("elsewhere"),
        "only matching routes"
    );

    let out = dir.path().join("out");
    let written = quilt_notify(&[
        "render",
        "-c",
        path_arg(&config),
        "-e",
        path_arg(&event),
        "--out",
        path_arg(&out),
    ])
    .await;
    assert_eq!(written.code, Some(0), "{written:?}");
    let html = std::fs::read_to_string(out.join("docs/index.html")).expect("index.html");
    assert!(html.contains(
        "https://catalog.example.com/b/example/packages/some/package/tree/a0fddace2eb2fd91faa697d237a5dbdcfa77f0fd38ca8b4c850dbd93d142ee69/"
    ));
    let subject = std::fs::read_to_string(out.join("docs/subject.txt")).expect("subject.txt");
    assert!(subject.starts_with("New package revision: some/package"));
    assert!(out.join("docs/body.txt").is_file());
    assert!(!out.join("elsewhere").exists());

    // A template that uses a variable the event lacks: the error points at file, line, variable.
    let broken = dir.path().join("templates");
    let part = broken.join("package-created");
    std::fs::create_dir_all(&part).expect("mkdir");
    for file in ["subject.hbs", "html.hbs"] {
        std::fs::copy(
            templates.join("package-created").join(file),
            part.join(file),
        )
        .expect("copy");
    }
    std::fs::write(
        part.join("text.hbs"),
        "Package {{handle}}\nby {{detail.author}}\n",
    )
    .expect("write");
    write_config(&broken);
    let failed = quilt_notify(&["render", "-c", path_arg(&config), "-e", path_arg(&event)]).await;
    assert_eq!(failed.code, Some(1), "{failed:?}");
    assert!(failed.stderr.contains("text.hbs"), "{failed:?}");
    assert!(failed.stderr.contains("line 2"), "{failed:?}");
    assert!(failed.stderr.contains("author"), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn render_lists_exactly_the_ascii_addresses_sent_and_drops_smuggled_ones_with_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[queue]
url = "http://127.0.0.1:9/000000000000/unused"
[ses]
from = "quilt@example.com"
[templates]
dir = "{}"
[[routes]]
name = "owners"
template = "package-created"
to = ["team@example.org"]
to_from = "user_meta.owners"
allowed_domains = ["example.com"]
pattern = {{ source = ["com.quiltdata"] }}
"#,
            repo_root().join("config/templates").display()
        ),
    )
    .expect("write config");
    let manifest = dir.path().join("owned.jsonl");
    let header = json!({"version": "v0", "message": "owned", "user_meta": {"owners": [
        "eve@evil.test, Bo <bo@example.com>",
        "<eve2@evil.test><bo2@example.com>",
        "Jürgen <j@example.com>",
    ]}});
    std::fs::write(&manifest, format!("{header}\n")).expect("write manifest");
    let event = repo_root().join("events/package-revision.json");

    let printed = quilt_notify(&[
        "render",
        "-c",
        path_arg(&config),
        "-e",
        path_arg(&event),
        "--manifest",
        path_arg(&manifest),
    ])
    .await;
    assert_eq!(printed.code, Some(0), "{printed:?}");
    assert!(
        printed.stdout.contains(
            "=== route \"owners\" → team@example.org, =?utf-8?b?SsO8cmdlbg==?= <j@example.com>\n"
        ),
        "{printed:?}"
    );
    let to_line = printed
        .stdout
        .lines()
        .find(|l| l.starts_with("=== route"))
        .unwrap_or_default();
    assert!(!to_line.contains("evil.test"), "{to_line}");
    assert_eq!(
        printed.stderr.matches("to_from drops").count(),
        2,
        "{printed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn send_test_event_to_the_bus_is_routed_by_the_rule_and_delivered_by_a_running_worker() {
    let stack = TestStack::spawn(StackOptions::default()).await;
    let config = config(
        &stack,
        &stack.route("smoke", &pattern_for(&stack, "smoke/")),
        "",
    );
    let worker = stack.start_worker(&config);

    let ran = quilt_notify(&[
        "send-test-event",
        "--config",
        path_arg(&config),
        "--bucket",
        &stack.bucket,
        "--handle",
        "smoke/test",
        "--to-bus",
        "--wait",
        "--timeout",
        "30",
    ])
    .await;
    assert_eq!(ran.code, Some(0), "{ran:?}\nlog: {:#?}", worker.lines());
    let mut lines = ran.stdout.lines();
    let id = lines.next().expect("the event id").to_owned();
    assert_eq!(id.len(), 36, "{ran:?}");
    assert!(lines.next().unwrap_or("").starts_with("handled"), "{ran:?}");
    assert!(
        ran.stderr.contains("matches this event"),
        "the rule check ran: {ran:?}"
    );

    let emails = stack.wait_for_emails(1, SECONDS_30).await;
    assert_eq!(emails.len(), 1, "log: {:#?}", worker.lines());
    assert!(emails[0]["subject"]
        .as_str()
        .unwrap_or("")
        .contains("smoke/test"));
    // EventBridge's own id, printed by the command, is the one the worker logged.
    let logged = worker
        .wait_for_log(SECONDS_30, |lines| {
            lines
                .iter()
                .any(|l| l["outcome"] == "sent" && l["event_id"] == id.as_str())
        })
        .await;
    assert!(logged, "a `sent` line for {id}: {:#?}", worker.lines());

    assert_eq!(worker.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn send_test_event_puts_a_realistic_envelope_in_the_queue_by_either_path() {
    let stack = TestStack::spawn(StackOptions::default()).await;
    let config = config(&stack, &stack.route("all", &pattern_for(&stack, "")), "");
    let send = |path: &'static str| {
        let config = config.clone();
        let bucket = stack.bucket.clone();
        async move {
            quilt_notify(&[
                "send-test-event",
                "-c",
                path_arg(&config),
                "--bucket",
                &bucket,
                "--handle",
                "direct/pkg",
                "--type",
                "created",
                path,
            ])
            .await
        }
    };
    let direct = send("--to-queue").await;
    assert_eq!(direct.code, Some(0), "{direct:?}");
    let via_bus = send("--to-bus").await;
    assert_eq!(via_bus.code, Some(0), "{via_bus:?}");
    let ids = [direct.stdout.trim(), via_bus.stdout.trim()];

    // No worker: read the queue directly.
    let bodies: Vec<Value> = stack
        .take(&stack.queue_url, 2, SECONDS_30)
        .await
        .iter()
        .filter_map(|body| serde_json::from_str(body).ok())
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    for id in ids {
        let body = bodies
            .iter()
            .find(|b| b["id"] == id)
            .unwrap_or_else(|| panic!("no message with id {id}: {bodies:#?}"));
        let event = quilt_notify::domain::event::PackageEvent::parse(&body.to_string())
            .expect("a package event, as the worker parses it");
        assert_eq!(event.bucket(), stack.bucket);
        assert_eq!(event.handle(), "direct/pkg");
        assert_eq!(event.kind(), "created");
        assert_eq!(event.top_hash().len(), 64);
        let age = std::time::SystemTime::now()
            .duration_since(event.timestamp().expect("RFC 3339 time"))
            .unwrap_or_default();
        assert!(age < Duration::from_secs(120), "time is now: {body}");
        for key in [
            "version",
            "account",
            "region",
            "resources",
            "detail-type",
            "source",
        ] {
            assert!(body.get(key).is_some(), "{key} in {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn dlq_inspect_lists_messages_without_consuming_them() {
    let stack = TestStack::spawn(StackOptions::default()).await;
    let config = config(&stack, &stack.route("all", &pattern_for(&stack, "")), "");
    let event = stack.event("dead/pkg");
    let ids = stack
        .send_batch(
            &stack.dlq_url,
            &[event.to_string(), "this is not json {".to_owned()],
        )
        .await;
    let before = stack.depth(&stack.dlq_url).await;
    assert_eq!(before.0 + before.1, 2);

    let table = quilt_notify(&["dlq", "inspect", "-c", path_arg(&config)]).await;
    assert_eq!(table.code, Some(0), "{table:?}");
    for needle in [
        ids[0].as_str(),
        ids[1].as_str(),
        event["id"].as_str().unwrap_or("?"),
        stack.bucket.as_str(),
        "dead/pkg",
        "permanent (invalid_event): body is not JSON",
        "WHY (re-derived unless recorded)",
    ] {
        assert!(table.stdout.contains(needle), "{needle}: {table:?}");
    }
    assert!(table.stderr.contains("2 message(s) listed"), "{table:?}");

    let listed = quilt_notify(&["dlq", "inspect", "-c", path_arg(&config), "--json"]).await;
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let rows: Vec<Value> = listed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 2, "{listed:?}");
    let valid = rows
        .iter()
        .find(|r| r["message_id"] == ids[0].as_str())
        .expect("the event's row");
    assert_eq!(valid["event_id"], event["id"]);
    assert_eq!(valid["handle"], "dead/pkg");
    assert_eq!(valid["why_is"], "re-derived");
    assert_eq!(valid["body"], event.to_string());
    // Received once by the table listing before this one.
    assert_eq!(valid["receive_count"], 1);

    let after = stack.depth(&stack.dlq_url).await;
    assert_eq!(after, (2, 0), "nothing consumed, nothing left hidden");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn dlq_redrive_returns_messages_to_the_queue_and_a_running_worker_delivers_them() {
    let stack = TestStack::spawn(StackOptions::default()).await;
    let config = config(&stack, &stack.route("all", &pattern_for(&stack, "")), "");
    let bodies: Vec<String> = (0..3)
        .map(|i| stack.event(&format!("redriven/pkg-{i}")).to_string())
        .collect();
    stack.send_batch(&stack.dlq_url, &bodies).await;
    let worker = stack.start_worker(&config);

    let ran = quilt_notify(&["dlq", "redrive", "-c", path_arg(&config)]).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout.contains("redrive: moved 3 message(s)"),
        "{ran:?}"
    );
    // LocalStack 4.12 may complete the move task or fail it; either way the output says which.
    assert!(
        ran.stdout.contains("with StartMessageMoveTask")
            || ran.stdout.contains("(fallback: StartMessageMoveTask"),
        "{ran:?}"
    );

    let emails = stack.wait_for_emails(3, SECONDS_30).await;
    assert_eq!(emails.len(), 3, "log: {:#?}", worker.lines());
    let dlq = stack.depth(&stack.dlq_url).await;
    assert_eq!(dlq, (0, 0), "{ran:?}");

    let empty = quilt_notify(&["dlq", "redrive", "-c", path_arg(&config)]).await;
    assert_eq!(empty.code, Some(0), "{empty:?}");
    assert!(empty.stdout.contains("nothing to redrive"), "{empty:?}");

    assert_eq!(worker.stop().await, Some(0));
}

/// An SQS endpoint in front of LocalStack whose message move tasks always end FAILED, as
/// LocalStack's do in some set-ups: `StartMessageMoveTask` is accepted without moving anything
/// and `ListMessageMoveTasks` reports the task FAILED with `AttributeError`. Everything else is
/// forwarded.
async fn failing_move_tasks(upstream: String) -> (String, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let client = reqwest::Client::new();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = stopped.cancelled() => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            let client = client.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let client = client.clone();
                    let upstream = upstream.clone();
                    async move { Ok::<_, Infallible>(answer(request, &client, &upstream).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{address}"), stop)
}

async fn answer(
    request: Request<Incoming>,
    client: &reqwest::Client,
    upstream: &str,
) -> Response<Full<Bytes>> {
    let json_answer = |body: Value| {
        Response::builder()
            .status(200)
            .header("content-type", "application/x-amz-json-1.0")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("response")
    };
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    match target.as_str() {
        "AmazonSQS.StartMessageMoveTask" => return json_answer(json!({"TaskHandle": "fake-task"})),
        "AmazonSQS.ListMessageMoveTasks" => {
            return json_answer(json!({"Results": [{
                "Status": "FAILED",
                "FailureReason": "AttributeError",
                "ApproximateNumberOfMessagesMoved": 0,
                "ApproximateNumberOfMessagesToMove": 2,
                "StartedTimestamp": 1_700_000_000_000u64,
            }]}))
        }
        _ => {}
    }
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut forward = client.request(parts.method, format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            forward = forward.header(name, value);
        }
    }
    match forward.body(body).send().await {
        Ok(response) => {
            let mut builder = Response::builder().status(response.status());
            for (name, value) in response.headers() {
                if name != "content-length" && name != "transfer-encoding" {
                    builder = builder.header(name, value);
                }
            }
            let bytes = response.bytes().await.unwrap_or_default();
            builder.body(Full::new(bytes)).expect("response")
        }
        Err(e) => Response::builder()
            .status(502)
            .body(Full::new(Bytes::from(e.to_string())))
            .expect("response"),
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_move_task_that_ends_failed_is_detected_and_the_fallback_moves_the_messages() {
    let stack = TestStack::spawn(StackOptions::default()).await;
    let (proxy, stop_proxy) = failing_move_tasks(stack.endpoints.aws.clone()).await;
    let config = config(&stack, &stack.route("all", &pattern_for(&stack, "")), "");
    // Point the commands' SQS calls at the proxy.
    let text = std::fs::read_to_string(&config).expect("config");
    let proxied = stack.dir.path().join("proxied.toml");
    std::fs::write(
        &proxied,
        text.replacen(
            &format!("endpoint_url = \"{}\"", stack.endpoints.aws),
            &format!("endpoint_url = \"{proxy}\""),
            1,
        ),
    )
    .expect("write config");
    let bodies = vec![
        stack.event("failed-task/a").to_string(),
        stack.event("failed-task/b").to_string(),
    ];
    stack.send_batch(&stack.dlq_url, &bodies).await;

    let strict = quilt_notify(&[
        "dlq",
        "redrive",
        "-c",
        path_arg(&proxied),
        "--method",
        "task",
    ])
    .await;
    assert_eq!(
        strict.code,
        Some(1),
        "a failed task is not success: {strict:?}"
    );
    assert!(
        strict
            .stdout
            .contains("redrive failed: StartMessageMoveTask ended FAILED (AttributeError)"),
        "{strict:?}"
    );
    assert_eq!(stack.depth(&stack.dlq_url).await, (2, 0), "nothing moved");

    let ran = quilt_notify(&["dlq", "redrive", "-c", path_arg(&proxied)]).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout.contains(
            "moved 2 message(s)"
        ) && ran
            .stdout
            .contains("by receive, send, delete (fallback: StartMessageMoveTask ended FAILED (AttributeError))"),
        "{ran:?}"
    );
    assert_eq!(stack.depth(&stack.dlq_url).await, (0, 0));
    let mut back = stack.take(&stack.queue_url, 2, SECONDS_30).await;
    back.sort();
    let mut sent = bodies.clone();
    sent.sort();
    assert_eq!(back, sent, "the same bodies are back in the source queue");

    stop_proxy.cancel();
}

/// A TCP forwarder to `upstream` that can be cut (listener and open connections).
async fn forwarder(upstream: SocketAddr) -> (u16, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let cut = CancellationToken::new();
    let stopped = cut.clone();
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                () = stopped.cancelled() => break,
                accepted = listener.accept() => {
                    if let Ok((mut inbound, _)) = accepted {
                        connections.spawn(async move {
                            if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            }
                        });
                    }
                }
            }
        }
        connections.abort_all();
    });
    (port, cut)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn readyz_turns_not_ready_when_sqs_becomes_unreachable() {
    let stack = TestStack::spawn(StackOptions::default()).await;
    let (sqs_port, cut) = forwarder(authority(&stack.endpoints.aws)).await;
    let health = free_port();
    let config = config(
        &stack,
        &stack.route("all", &pattern_for(&stack, "")),
        &format!("[health]\nlisten = \"127.0.0.1:{health}\"\nready_within_seconds = 2\n"),
    );
    let worker = stack.start_worker_with_env(
        &config,
        &[(
            "QUILT_NOTIFY__QUEUE__ENDPOINT_URL",
            format!("http://127.0.0.1:{sqs_port}"),
        )],
    );
    let base = format!("http://127.0.0.1:{health}");
    // The status and body once `path` answers `status`, or the last answer after 30 s.
    let wait_for = |path: &'static str, status: u16| {
        let url = format!("{base}{path}");
        async move {
            let answer = eventually(SECONDS_30, || async {
                let (code, body) = get(&url).await;
                if code == status {
                    Ok((code, body))
                } else {
                    Err((code, body))
                }
            })
            .await;
            answer.unwrap_or_else(|last| last)
        }
    };

    let (code, body) = wait_for("/readyz", 200).await;
    assert_eq!(
        code,
        200,
        "ready while SQS answers: {body}\nlog: {:#?}",
        worker.lines()
    );

    cut.cancel();
    let (code, body) = wait_for("/readyz", 503).await;
    assert_eq!(code, 503, "{body}\nlog: {:#?}", worker.lines());
    assert!(body.contains("no progress"), "{body}");
    assert_eq!(
        get(&format!("{base}/healthz")).await.0,
        200,
        "alive all the same"
    );
    let probe = quilt_notify(&["health", "--url", &format!("{base}/readyz")]).await;
    assert_eq!(probe.code, Some(1), "{probe:?}");
    assert!(
        worker
            .lines()
            .iter()
            .any(|l| l["message"] == "receive failed"),
        "the worker says why: {:#?}",
        worker.lines()
    );

    assert_eq!(worker.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn metrics_after_a_known_workload_say_exactly_what_happened() {
    // maxReceiveCount 1: the poison message is received once, then moved to the DLQ.
    let stack = TestStack::spawn(StackOptions {
        max_receive_count: 1,
        visibility_timeout: 30,
    })
    .await;
    let health = free_port();
    let config = config(
        &stack,
        &stack.route("deliver", &pattern_for(&stack, "deliver/")),
        &format!(
            "[health]\nlisten = \"127.0.0.1:{health}\"\n[metrics]\nemf_interval_seconds = 1\n"
        ),
    );
    let mut worker = stack.start_worker(&config);

    let mut bodies: Vec<String> = (0..7)
        .map(|i| stack.event(&format!("deliver/pkg-{i}")).to_string())
        .collect();
    bodies.extend((0..2).map(|i| stack.event(&format!("skip/pkg-{i}")).to_string()));
    bodies.push("poison: not json".to_owned());
    stack.send_batch(&stack.queue_url, &bodies).await;

    let emails = stack.wait_for_emails(7, SECONDS_30).await;
    assert_eq!(emails.len(), 7, "log: {:#?}", worker.lines());
    let dead = eventually(SECONDS_30, || async {
        stack.depth(&stack.dlq_url).await == (1, 0)
    })
    .await;
    assert!(dead, "the poison message is in the DLQ");
    let settled = worker
        .wait_for_log(SECONDS_30, |lines| {
            lines.iter().filter(|l| l["outcome"].is_string()).count() >= 10
        })
        .await;
    assert!(settled, "{:#?}", worker.lines());
    let drained = eventually(SECONDS_30, || async {
        stack.depth(&stack.queue_url).await == (0, 0)
    })
    .await;
    assert!(drained, "the queue is empty");

    // The DLQ message carries the id the worker logged, so inspect's row leads to the log line.
    let failed = worker.outcomes("failed");
    assert_eq!(failed.len(), 1, "{failed:#?}");
    let inspected = quilt_notify(&["dlq", "inspect", "-c", path_arg(&config), "--json"]).await;
    let row: Value = serde_json::from_str(inspected.stdout.trim()).expect("one row");
    assert_eq!(row["message_id"], failed[0]["message_id"], "{inspected:?}");
    assert_eq!(row["body"], "poison: not json");
    assert!(
        row["why"]
            .as_str()
            .unwrap_or("")
            .starts_with("permanent (invalid_event): body is not JSON"),
        "{row}"
    );
    assert_eq!(
        row["dead_letter_source"],
        format!("arn:aws:sqs:us-east-1:000000000000:{}", stack.name)
    );

    let (code, text) = get(&format!("http://127.0.0.1:{health}/metrics")).await;
    assert_eq!(code, 200, "{text}");
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    for (name, expected) in [
        ("quilt_notify_received_total", 10.0),
        ("quilt_notify_sent_total", 7.0),
        ("quilt_notify_filtered_total", 2.0),
        ("quilt_notify_failed_permanent_total", 1.0),
        ("quilt_notify_duplicate_total", 0.0),
        ("quilt_notify_failed_transient_total", 0.0),
        ("quilt_notify_failed_throttled_total", 0.0),
        ("quilt_notify_failed_account_paused_total", 0.0),
        ("quilt_notify_released_total", 0.0),
        ("quilt_notify_deleted_total", 9.0),
        ("quilt_notify_unacknowledged_total", 0.0),
        ("quilt_notify_emails_sent_total", 7.0),
        ("quilt_notify_processing_seconds_count", 10.0),
        ("quilt_notify_ses_call_seconds_count", 7.0),
        ("quilt_notify_event_age_seconds_count", 7.0),
    ] {
        assert_eq!(value(name), expected, "{name}\n{text}");
    }

    // The EMF lines on stdout add up to the same counts (the last one is written at shutdown).
    assert_eq!(worker.terminate().await, Some(0));
    let emf: Vec<Value> = worker
        .lines()
        .into_iter()
        .filter(|l| l.get("_aws").is_some())
        .collect();
    assert!(!emf.is_empty(), "EMF lines: {:#?}", worker.lines());
    let total = |name: &str| emf.iter().filter_map(|l| l[name].as_u64()).sum::<u64>();
    assert_eq!(total("Received"), 10);
    assert_eq!(total("Sent"), 7);
    assert_eq!(total("Filtered"), 2);
    assert_eq!(total("FailedPermanent"), 1);
    assert_eq!(total("Deleted"), 9);
    let directive = &emf[0]["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "QuiltNotify");
    assert_eq!(emf[0]["Queue"], stack.name.as_str());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn topics_sync_creates_the_contact_list_with_one_topic_per_route_topic() {
    let endpoints = crate::support::Endpoints::from_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let list = crate::support::unique("contacts");
    let config = dir.path().join("config.toml");
    let route = |name: &str, topic: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\ntemplate = \"package-created\"\nto = [\"a@example.com\"]\n\
             topic = \"{topic}\"\npattern = {{ source = [\"com.quiltdata\"] }}\n"
        )
    };
    std::fs::write(
        &config,
        format!(
            "[aws]\nregion = \"us-east-1\"\n[queue]\nurl = \"http://127.0.0.1:1/q\"\n\
             [ses]\nfrom = \"a@example.com\"\nendpoint_url = \"{moto}\"\ncontact_list = \"{list}\"\n\
             [templates]\ndir = \"{templates}\"\n{raw}{curated}{ops}",
            moto = endpoints.moto,
            templates = repo_root().join("config/templates").display(),
            raw = route("raw", "releases"),
            curated = route("curated", "releases"),
            ops = route("ops", "ops"),
        ),
    )
    .expect("config");

    let dry = quilt_notify(&["topics", "sync", "-c", path_arg(&config), "--dry-run"]).await;
    assert_eq!(dry.code, Some(0), "{dry:?}");
    assert_eq!(
        dry.stdout.trim(),
        format!("would create contact list {list} with topics releases, ops")
    );
    let created = quilt_notify(&["topics", "sync", "-c", path_arg(&config)]).await;
    assert_eq!(created.code, Some(0), "{created:?}");
    assert!(
        created.stdout.starts_with("create contact list"),
        "{created:?}"
    );

    // Read back over plain HTTP: moto 5.2.5 answers GetContactList's timestamps as ISO strings,
    // which the AWS SDK (rightly) refuses, so a second `sync` cannot run against moto; the
    // plan it would follow is table-tested in src/commands/topics.rs.
    let url = format!("{}/v2/email/contact-lists/{list}", endpoints.moto);
    // moto picks the service from the credential scope of the Authorization header.
    let auth = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ses/aws4_request, \
                SignedHeaders=host, Signature=0";
    let stored: Value = reqwest::Client::new()
        .get(&url)
        .header("Authorization", auth)
        .send()
        .await
        .expect("GetContactList")
        .json()
        .await
        .expect("json");
    let topics: Vec<(&str, &str)> = stored["Topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| {
            (
                t["TopicName"].as_str().unwrap_or_default(),
                t["DefaultSubscriptionStatus"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(topics, [("releases", "OPT_IN"), ("ops", "OPT_IN")]);
    assert!(
        stored["Topics"][0]["Description"]
            .as_str()
            .is_some_and(|d| d.ends_with("raw, curated")),
        "{stored}"
    );
}
