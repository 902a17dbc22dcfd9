//! `TestStack`: a unique queue, DLQ and rule on LocalStack (made by the same
//! `scripts/setup_resources.py` the local stack uses, deleted when the stack is dropped, also
//! when a test panics), a config file, and the real binary running against them, with its JSON
//! log lines captured.

pub mod digest;
pub mod eventually;
pub mod opening;
pub mod proxy;
pub mod quilt;
pub mod state;
pub mod tally;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

pub use eventually::eventually;
pub use opening::{Opened, Opening};

/// The longest a test waits for a storm or an outage to pass.
pub const SECONDS_120: Duration = Duration::from_secs(120);

/// Where the emulators are; `scripts/test` exports these.
pub struct Endpoints {
    pub aws: String,
    pub ses: String,
    /// moto server: SES v2 that rejects unverified senders.
    pub moto: String,
    pub setup_command: Vec<String>,
}

impl Endpoints {
    pub fn from_env() -> Self {
        let setup = std::env::var("QN_SETUP_RESOURCES").unwrap_or_else(|_| {
            panic!(
                "QN_SETUP_RESOURCES is not set: integration tests need the emulators; \
                 run them with `scripts/test` (plain `cargo test` leaves them out)"
            )
        });
        Self {
            aws: env_or("QN_TEST_AWS_ENDPOINT", "http://127.0.0.1:4566"),
            ses: env_or("QN_TEST_SES_ENDPOINT", "http://127.0.0.1:8005"),
            moto: env_or("QN_TEST_MOTO_ENDPOINT", "http://127.0.0.1:5000"),
            setup_command: setup.split_whitespace().map(str::to_owned).collect(),
        }
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn documented_event() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("events/package-revision.json"))
            .expect("read event"),
    )
    .expect("event json")
}

/// A route pattern that matches every package event of this stack's bucket.
pub fn every_package(stack: &TestStack) -> Value {
    json!({
        "source": ["com.quiltdata"],
        "detail-type": ["package-revision"],
        "detail": {"bucket": [stack.bucket]},
    })
}

/// Environment overrides for the worker.
pub fn env(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// `n` fresh events (unique ids) under `prefix`, and their bodies as SQS carries them.
pub fn events(stack: &TestStack, prefix: &str, n: usize) -> (Vec<String>, Vec<String>) {
    let events: Vec<Value> = (0..n)
        .map(|i| stack.event(&format!("{prefix}/pkg-{i}")))
        .collect();
    let ids = events
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    let bodies = events.iter().map(Value::to_string).collect();
    (ids, bodies)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique across tests and runs (LocalStack lives across test runs).
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// Resource options for one stack.
pub struct StackOptions {
    pub max_receive_count: u32,
    pub visibility_timeout: u32,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            max_receive_count: 3,
            visibility_timeout: 30,
        }
    }
}

/// Deletes one test's queue, DLQ and rule when dropped, so a failing test (a panic unwinds
/// through it) leaves nothing behind on the LocalStack that outlives the run.
struct Resources {
    setup_command: Vec<String>,
    aws: String,
    queue: String,
}

impl Drop for Resources {
    fn drop(&mut self) {
        // Blocking is fine here: a test's body runs on its own thread, and this takes a second.
        let status = Command::new(&self.setup_command[0])
            .args(&self.setup_command[1..])
            .args(["--queue", &self.queue, "--delete"])
            .env("AWS_ENDPOINT_URL", &self.aws)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            eprintln!(
                "warning: could not delete queue {} (and its DLQ and rule): {status:?}",
                self.queue
            );
        }
    }
}

/// Queue, DLQ and rule for one test; dropping it deletes them.
pub struct TestStack {
    pub endpoints: Endpoints,
    pub name: String,
    /// The bucket the rule passes; unique, so tests never see each other's events.
    pub bucket: String,
    /// A recipient unique to this stack, to find its mail in the shared SES store.
    pub recipient: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub sqs: aws_sdk_sqs::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    _resources: Resources,
}

/// SDK configuration for an emulator: us-east-1, credentials test/test.
pub fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
            aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests"),
        ))
        .build()
}

impl TestStack {
    pub async fn spawn(options: StackOptions) -> Self {
        let endpoints = Endpoints::from_env();
        let name = unique("qn");
        let bucket = format!("bucket-{name}");
        let recipient = format!("{name}@example.com");
        let mut command = Command::new(&endpoints.setup_command[0]);
        command
            .args(&endpoints.setup_command[1..])
            .args(["--queue", &name, "--bucket", &bucket, "--json"])
            .args([
                "--max-receive-count",
                &options.max_receive_count.to_string(),
            ])
            .args([
                "--visibility-timeout",
                &options.visibility_timeout.to_string(),
            ])
            .env("AWS_ENDPOINT_URL", &endpoints.aws);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("join")
            .expect("run setup_resources");
        // Before anything else can fail: whatever setup_resources made is deleted again.
        let resources = Resources {
            setup_command: endpoints.setup_command.clone(),
            aws: endpoints.aws.clone(),
            queue: name.clone(),
        };
        assert!(
            output.status.success(),
            "setup_resources failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let created: Value = serde_json::from_slice(&output.stdout).expect("setup json");
        let sdk = sdk_config(&endpoints.aws);
        Self {
            queue_url: created["queue_url"].as_str().expect("queue_url").to_owned(),
            dlq_url: created["dlq_url"].as_str().expect("dlq_url").to_owned(),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            events: aws_sdk_eventbridge::Client::new(&sdk),
            http: reqwest::Client::new(),
            dir: tempfile::tempdir().expect("tempdir"),
            endpoints,
            name,
            bucket,
            recipient,
            _resources: resources,
        }
    }

    /// A config that works against this stack; `extra` is appended (more sections, routes).
    pub fn config(&self, ses_endpoint: &str, routes: &str, extra: &str) -> PathBuf {
        let templates = repo_root().join("config/templates");
        let text = format!(
            r#"
[aws]
region = "us-east-1"
[queue]
url = "{queue}"
endpoint_url = "{aws}"
wait_time_seconds = 1
visibility_timeout_seconds = 30
[ses]
endpoint_url = "{ses_endpoint}"
from = "Quilt <quilt-notify@example.com>"
[s3]
endpoint_url = "{aws}"
[catalog]
host = "catalog.example.com"
[templates]
dir = "{templates}"
[worker]
shutdown_deadline_seconds = 5
[retry]
base_seconds = 1
max_seconds = 1
{extra}
{routes}
"#,
            queue = self.queue_url,
            aws = self.endpoints.aws,
            templates = templates.display(),
        );
        let path = self.dir.path().join("config.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// One route named `name` sending to this stack's recipient when `pattern` matches.
    pub fn route(&self, name: &str, pattern: &Value) -> String {
        format!(
            "[[routes]]\nname = \"{name}\"\ntemplate = \"package-created\"\nto = [\"{}\"]\npattern = '''{pattern}'''\n",
            self.recipient
        )
    }

    /// The documented event, moved into this stack's bucket, with a fresh id and `handle`.
    pub fn event(&self, handle: &str) -> Value {
        let mut event = documented_event();
        event["id"] = json!(unique("evt"));
        event["detail"]["bucket"] = json!(self.bucket);
        event["detail"]["handle"] = json!(handle);
        event
    }

    /// Publishes an event's detail to the default bus, as a Quilt stack does.
    pub async fn put_event(&self, event: &Value) {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .source(event["source"].as_str().expect("source"))
            .detail_type(event["detail-type"].as_str().expect("detail-type"))
            .detail(event["detail"].to_string())
            .build();
        let out = self
            .events
            .put_events()
            .entries(entry)
            .send()
            .await
            .expect("PutEvents");
        assert_eq!(out.failed_entry_count(), 0, "PutEvents failed: {out:?}");
    }

    /// Sends a raw body straight to the queue; returns the SQS message id.
    pub async fn send_raw(&self, body: &str) -> String {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("SendMessage")
            .message_id()
            .unwrap_or_default()
            .to_owned()
    }

    /// Sends bodies straight to `queue_url` with SendMessageBatch, ten per call; returns the
    /// SQS message ids in order.
    pub async fn send_batch(&self, queue_url: &str, bodies: &[String]) -> Vec<String> {
        let mut ids = Vec::with_capacity(bodies.len());
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .expect("batch entry")
                })
                .collect();
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("SendMessageBatch");
            assert!(out.failed().is_empty(), "SendMessageBatch: {out:?}");
            let mut sent: Vec<(usize, String)> = out
                .successful()
                .iter()
                .map(|e| (e.id().parse().unwrap_or(0), e.message_id().to_owned()))
                .collect();
            sent.sort();
            ids.extend(sent.into_iter().map(|(_, id)| id));
        }
        ids
    }

    /// Receives and deletes from `url` until `n` bodies were taken or `within` passed; returns
    /// what was taken.
    pub async fn take(&self, url: &str, n: usize, within: Duration) -> Vec<String> {
        let taken = Mutex::new(Vec::new());
        eventually(within, || async {
            let batch = self.receive_and_delete(url).await;
            let mut taken = taken.lock().expect("taken");
            taken.extend(batch);
            taken.len() >= n
        })
        .await;
        taken.into_inner().expect("taken")
    }

    /// Redrives the DLQ by hand, as an operator would where `StartMessageMoveTask` is not
    /// available (LocalStack): receive from the DLQ, send to the source queue, delete from the
    /// DLQ, until the DLQ is empty. Returns how many messages were moved.
    pub async fn redrive(&self) -> usize {
        let moved = Mutex::new(0);
        let emptied = eventually(Duration::from_secs(60), || async {
            let out = self.receive(&self.dlq_url).await;
            for message in out.messages() {
                self.send_raw(message.body().unwrap_or_default()).await;
                self.delete_message(&self.dlq_url, message).await;
                *moved.lock().expect("moved") += 1;
            }
            out.messages().is_empty() && self.depth(&self.dlq_url).await == (0, 0)
        })
        .await;
        let moved = moved.into_inner().expect("moved");
        assert!(emptied, "the DLQ did not empty within 60 s ({moved} moved)");
        moved
    }

    /// One receive (up to 10, 1 s wait) from `url`.
    async fn receive(
        &self,
        url: &str,
    ) -> aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput {
        self.sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage")
    }

    async fn delete_message(&self, url: &str, message: &aws_sdk_sqs::types::Message) {
        self.sqs
            .delete_message()
            .queue_url(url)
            .receipt_handle(message.receipt_handle().unwrap_or_default())
            .send()
            .await
            .expect("DeleteMessage");
    }

    /// One receive from `url`, each message deleted; returns the bodies.
    async fn receive_and_delete(&self, url: &str) -> Vec<String> {
        let mut bodies = Vec::new();
        for message in self.receive(url).await.messages() {
            self.delete_message(url, message).await;
            bodies.push(message.body().unwrap_or_default().to_owned());
        }
        bodies
    }

    /// Mail in the SES emulator's store addressed to this stack's recipient.
    pub async fn emails(&self) -> Vec<Value> {
        let store: Value = self
            .http
            .get(format!("{}/store", self.endpoints.ses))
            .send()
            .await
            .expect("GET /store")
            .json()
            .await
            .expect("store json");
        store["emails"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| {
                let d = &m["destination"];
                ["to", "cc", "bcc"].iter().any(|k| {
                    d[k].as_array()
                        .is_some_and(|a| a.iter().any(|r| r.as_str() == Some(&self.recipient)))
                })
            })
            .collect()
    }

    /// Waits until at least `n` emails arrived for this stack; returns what arrived.
    pub async fn wait_for_emails(&self, n: usize, within: Duration) -> Vec<Value> {
        eventually(within, || async {
            let emails = self.emails().await;
            if emails.len() >= n {
                Ok(emails)
            } else {
                Err(emails)
            }
        })
        .await
        .unwrap_or_else(|arrived| arrived)
    }

    /// Visible plus in-flight messages on a queue.
    pub async fn depth(&self, url: &str) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("GetQueueAttributes");
        let get = |a: A| {
            out.attributes()
                .and_then(|m| m.get(&a))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (
            get(A::ApproximateNumberOfMessages),
            get(A::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Starts the real binary on a config file.
    pub fn start_worker(&self, config: &Path) -> Worker {
        Worker::start(config)
    }

    /// Starts the real binary with extra environment variables (`QUILT_NOTIFY__…` overrides,
    /// `AWS_MAX_ATTEMPTS`…).
    pub fn start_worker_with_env(&self, config: &Path, env: &[(&str, String)]) -> Worker {
        Worker::start_with_env(config, env)
    }
}

/// The `quilt-notify run` process and its captured JSON log lines.
pub struct Worker {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Worker {
    pub fn start(config: &Path) -> Self {
        Self::start_with_env(config, &[])
    }

    /// As [`Worker::start`], with extra environment variables.
    pub fn start_with_env(config: &Path, env: &[(&str, String)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quilt-notify"))
            .args(["run", "--config"])
            .arg(config)
            .env("QUILT_NOTIFY__LOG__FORMAT", "json")
            .env("RUST_LOG", "info")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("AWS_PROFILE")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start quilt-notify");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value =
                    serde_json::from_str(&line).unwrap_or_else(|_| json!({"unparsed": line}));
                sink.lock().expect("lines").push(value);
            }
        });
        Self { child, lines }
    }

    /// Every log line so far.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().expect("lines").clone()
    }

    /// Log lines whose `outcome` is `outcome`.
    pub fn outcomes(&self, outcome: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["outcome"] == outcome)
            .collect()
    }

    /// Waits until `predicate` holds for the captured lines; returns whether it did.
    pub async fn wait_for_log(
        &self,
        within: Duration,
        predicate: impl Fn(&[Value]) -> bool,
    ) -> bool {
        eventually(within, || std::future::ready(predicate(&self.lines()))).await
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL (`kill -9`): no shutdown, no settling; returns once the process is gone. The
    /// captured lines stay readable.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) without waiting.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Waits up to `within` for the process to exit; returns its exit code, or `None` if it
    /// is still running (then it is killed) or died by a signal.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let child = &mut self.child;
        let exited = eventually(within, || {
            std::future::ready(child.try_wait().ok().flatten().ok_or(()))
        })
        .await;
        match exited {
            Ok(status) => status.code(),
            Err(()) => {
                let _ = self.child.kill();
                None
            }
        }
    }

    /// SIGTERM, then waits for exit; returns the exit code. The captured lines stay readable.
    pub async fn terminate(&mut self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(40)).await
    }

    /// SIGTERM, then waits for exit; returns the exit code.
    pub async fn stop(mut self) -> Option<i32> {
        self.terminate().await
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
