//! Delivery guarantees under injected faults (issue 4): the real binary against LocalStack and the
//! SES v2 emulator, with a fault-injecting proxy (`support::proxy`) in front of SES, or moto where
//! a real SES rejection is wanted.
//!
//! Every test that counts mail prints one `RELIABILITY |` summary line (run with `--nocapture`
//! to see them); `docs/reliability.md` tabulates them. "Lost" must always be 0.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::proxy::{Account, Faults, SesError, SesProxy};
use crate::support::tally::{all_settled, event_id_of, event_ids, summary, Tally};
use crate::support::{
    env, events, eventually, every_package, Opened, Opening, StackOptions, TestStack, SECONDS_120,
};

const SECONDS_30: Duration = Duration::from_secs(30);
const SECONDS_60: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A route pattern for one handle prefix of this stack's bucket.
fn handles_under(stack: &TestStack, prefix: &str) -> Value {
    json!({
        "source": ["com.quiltdata"],
        "detail-type": ["package-revision"],
        "detail": {"bucket": [stack.bucket], "handle": [{"prefix": prefix}]},
    })
}

/// Log lines about one SQS message.
fn lines_for(lines: &[Value], message_id: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["message_id"] == message_id)
        .cloned()
        .collect()
}

/// Log lines with a given level.
fn at_level(lines: &[Value], level: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["level"] == level)
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Throttling
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_throttling_storm_delays_mail_but_every_event_is_delivered_exactly_once_and_none_is_dead_lettered(
) {
    let proxy = SesProxy::in_front_of_ses(0x5eed_0001).await;
    proxy.set(
        Faults::none()
            .send_errors(0.5, SesError::too_many_requests())
            .account(Account::enabled(50.0)),
    );
    // SDK retries off: every injected throttle reaches the worker's own backoff instead of being
    // absorbed by the SDK's three attempts. `ses.max_send_rate` is left at 0: read from GetAccount.
    let Opened { stack, worker, .. } = Opening::new()
        .queue(10, 10)
        .ses(&proxy.url)
        .env(&[
            ("AWS_MAX_ATTEMPTS", "1"),
            ("QUILT_NOTIFY__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "10"),
        ])
        .start()
        .await;

    let (ids, bodies) = events(&stack, "storm", 30);
    stack.send_batch(&stack.queue_url, &bodies).await;

    // The storm lasts until SES has refused 20 sends; then it is over.
    let stormed = eventually(SECONDS_120, || async { proxy.stats().sends_failed >= 20 }).await;
    assert!(
        stormed,
        "storm: {:?}\nlog: {:#?}",
        proxy.stats(),
        worker.lines()
    );
    proxy.heal();

    let settled = worker
        .wait_for_log(SECONDS_120, |lines| all_settled(lines, &ids))
        .await;
    assert!(settled, "all sent: {:#?}", worker.lines());

    let lines = worker.lines();
    assert!(
        lines.iter().any(|l| l["max_send_rate"] == 50.0),
        "the send rate was read from GetAccount: {lines:#?}"
    );
    let throttled: Vec<&Value> = lines.iter().filter(|l| l["outcome"] == "failed").collect();
    assert!(!throttled.is_empty(), "the worker saw throttling");
    for line in &throttled {
        assert_eq!(line["error.kind"], "throttled", "{line}");
        assert_eq!(line["error.code"], "TooManyRequestsException", "{line}");
        assert_eq!(line["level"], "WARN", "{line}");
        assert_eq!(line["acknowledged"], true, "{line}");
    }

    let tally = Tally::of(&ids, &stack.emails().await);
    assert!(tally.lost.is_empty(), "lost: {:?}", tally.lost);
    assert!(
        tally.duplicates.is_empty(),
        "exactly once: {:?}",
        tally.duplicates
    );
    assert_eq!(stack.depth(&stack.dlq_url).await, (0, 0), "nothing dead");
    assert_eq!(stack.depth(&stack.queue_url).await, (0, 0), "queue drained");
    let stats = proxy.stats();
    println!(
        "storm: proxy {stats:?}; worker-level throttled failures {}",
        throttled.len()
    );
    summary(
        "Throttling storm, then recovery",
        &format!(
            "proxy: 50% of SendEmail -> 429 TooManyRequestsException until {} refused (SDK retries off)",
            stats.sends_failed
        ),
        ids.len(),
        &tally,
        "0",
    );

    assert_eq!(worker.stop().await, Some(0));
}

// ---------------------------------------------------------------------------------------------
// 2. SES down
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn while_ses_is_unreachable_nothing_is_deleted_unsent_and_after_recovery_all_is_delivered_or_redriven(
) {
    let proxy = SesProxy::in_front_of_ses(0x5eed_0002).await;
    proxy.set(Faults::none().drop_connections(1.0));
    let Opened {
        stack, mut worker, ..
    } = Opening::new()
        .queue(3, 2)
        .ses(&proxy.url)
        .env(&[
            ("QUILT_NOTIFY__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "2"),
            ("QUILT_NOTIFY__SES__MAX_SEND_RATE", "100"),
        ])
        .start()
        .await;

    // Two waves: the first is in the queue for the whole outage and uses up its receives; the
    // second arrives when the first starts reaching the DLQ, and still has receives left when
    // SES comes back.
    let (early, early_bodies) = events(&stack, "outage-early", 6);
    let (late, late_bodies) = events(&stack, "outage-late", 6);
    let ids: Vec<String> = early.iter().chain(&late).cloned().collect();
    let outage = Instant::now();
    stack.send_batch(&stack.queue_url, &early_bodies).await;
    let first_dead = eventually(SECONDS_120, || async {
        stack.depth(&stack.dlq_url).await.0 >= 1
    })
    .await;
    assert!(first_dead, "log: {:#?}", worker.lines());
    stack.send_batch(&stack.queue_url, &late_bodies).await;

    // The outage lasts until the first wave used up its three receives each (well over three
    // visibility timeouts) and the second wave was tried at least once.
    let outage_over = eventually(SECONDS_120, || async {
        let tried = event_ids(&worker.lines(), &["failed"]);
        stack.depth(&stack.dlq_url).await.0 >= early.len() as u64
            && late.iter().all(|id| tried.contains(id))
    })
    .await;
    assert!(outage_over, "log: {:#?}", worker.lines());
    // Nothing was deleted unsent: every message is still in the queue or in the DLQ (queue
    // first, so a message moving meanwhile is counted twice, never missed), none was mailed.
    let (visible, hidden) = stack.depth(&stack.queue_url).await;
    let (dead, _) = stack.depth(&stack.dlq_url).await;
    assert!(
        visible + hidden + dead >= ids.len() as u64,
        "queue {visible}+{hidden}, DLQ {dead}"
    );
    assert!(stack.emails().await.is_empty(), "nothing was sent");
    let lines = worker.lines();
    assert!(
        event_ids(&lines, &["sent", "filtered", "duplicate"]).is_empty(),
        "nothing was acknowledged as done: {lines:#?}"
    );
    for line in lines.iter().filter(|l| l["outcome"] == "failed") {
        assert_eq!(line["error.kind"], "transient", "{line}");
        assert_eq!(line["level"], "WARN", "{line}");
    }
    let outage_s = outage.elapsed().as_secs();
    let dropped = proxy.stats().dropped;

    proxy.heal();
    // What is still in the source queue is delivered by the worker; then the DLQ is redriven.
    let drained = eventually(SECONDS_60, || async {
        stack.depth(&stack.queue_url).await == (0, 0)
    })
    .await;
    assert!(drained, "log: {:#?}", worker.lines());
    let direct = event_ids(&worker.lines(), &["sent"]).len();
    let redriven = stack.redrive().await;
    assert!(redriven >= early.len(), "redriven {redriven}");
    assert!(direct >= 1, "some were delivered without a redrive");

    let settled = worker
        .wait_for_log(SECONDS_60, |lines| all_settled(lines, &ids))
        .await;
    assert!(settled, "all sent after recovery: {:#?}", worker.lines());
    let tally = Tally::of(&ids, &stack.emails().await);
    assert!(tally.lost.is_empty(), "lost: {:?}", tally.lost);
    assert_eq!(stack.depth(&stack.dlq_url).await, (0, 0));
    assert!(worker.is_running());
    println!(
        "outage: {outage_s} s with visibility 2 s; {dropped} connections dropped; {direct} delivered from the queue, {redriven} redriven"
    );
    summary(
        "SES unreachable, then back",
        &format!(
            "proxy: every connection dropped for {outage_s} s (visibility 2 s, maxReceiveCount 3); DLQ redriven by receive/send/delete"
        ),
        ids.len(),
        &tally,
        &format!("{redriven} (redriven, then delivered); {direct} delivered from the queue"),
    );

    assert_eq!(worker.stop().await, Some(0));
}

// ---------------------------------------------------------------------------------------------
// 3. kill -9
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn kill_9_in_the_middle_of_500_events_then_a_restart_loses_none() {
    let (stack, config) = Opening::new().queue(5, 5).configure().await;
    let fast = env(&[
        ("QUILT_NOTIFY__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "5"),
        ("QUILT_NOTIFY__SES__MAX_SEND_RATE", "1000"),
    ]);

    let (ids, bodies) = events(&stack, "kill", 500);
    stack.send_batch(&stack.queue_url, &bodies).await;

    let mut first = stack.start_worker_with_env(&config, &fast);
    let midway = first
        .wait_for_log(SECONDS_120, |lines| {
            lines.iter().filter(|l| l["outcome"] == "sent").count() >= 150
        })
        .await;
    assert!(midway, "log: {:#?}", first.lines());
    first.kill9();
    let before_kill = first.lines();
    let sent_before = event_ids(&before_kill, &["sent"]).len();
    let (visible, hidden) = stack.depth(&stack.queue_url).await;
    println!("kill -9 after {sent_before} logged sends; queue {visible} visible, {hidden} hidden");
    assert!(sent_before < 500, "killed in the middle");

    let second = stack.start_worker_with_env(&config, &fast);
    // Done when the logs account for every event, or when the queue is empty: the kill can fall
    // between a batch's delete and its log lines, so a few deliveries may never be logged.
    let settled = eventually(Duration::from_secs(150), || {
        let mut lines = before_kill.clone();
        lines.extend(second.lines());
        let logged = all_settled(&lines, &ids);
        let stack = &stack;
        async move { logged || stack.depth(&stack.queue_url).await == (0, 0) }
    })
    .await;
    assert!(settled, "log after restart: {:#?}", second.lines());

    let tally = Tally::of(&ids, &stack.emails().await);
    println!(
        "kill -9: {} duplicates: {:?}",
        tally.duplicate_count(),
        tally.duplicates
    );
    assert!(tally.lost.is_empty(), "lost: {:?}", tally.lost);
    assert_eq!(stack.depth(&stack.dlq_url).await, (0, 0), "nothing dead");
    summary(
        "kill -9 mid-batch, then restart",
        &format!(
            "SIGKILL of the binary after {sent_before} of 500 were sent (SendMessageBatch straight to the queue); restarted"
        ),
        ids.len(),
        &tally,
        "0",
    );

    assert_eq!(second.stop().await, Some(0));
}

// ---------------------------------------------------------------------------------------------
// 4. SIGTERM
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn an_idle_worker_exits_0_at_once_on_sigterm_without_waiting_out_its_long_poll() {
    // A 20 s long poll on an empty queue and a 5 s deadline: before the fix the worker waited for
    // the poll to answer (about 16 s after the signal); now it abandons it at once.
    let deadline = Duration::from_secs(5);
    // Bound, though unused: dropping the stack would delete the queue under the worker.
    let Opened {
        stack: _stack,
        mut worker,
        ..
    } = Opening::new()
        .queue(5, 30)
        .env(&[
            ("QUILT_NOTIFY__QUEUE__WAIT_TIME_SECONDS", "20"),
            ("QUILT_NOTIFY__WORKER__SHUTDOWN_DEADLINE_SECONDS", "5"),
        ])
        .start()
        .await;
    let started = worker
        .wait_for_log(SECONDS_30, |lines| {
            lines.iter().any(|l| l["message"] == "worker started")
        })
        .await;
    assert!(started, "log: {:#?}", worker.lines());
    // Well inside the first long poll.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let signalled = Instant::now();
    let code = worker.terminate().await;
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "log: {:#?}", worker.lines());
    assert!(
        took < deadline,
        "exited {took:?} after SIGTERM: the long poll was waited for"
    );
    println!("idle SIGTERM: exit {code:?} after {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_worker_whose_stdout_and_stderr_were_closed_still_exits_0_on_sigterm() {
    // The log reader went away (a crashed log shipper, a closed terminal, a bench that stopped
    // reading). Before the fix, the logger reported its failed write on stderr with eprintln!,
    // which panics when stderr is closed too: the panic unwound through the signal's handling
    // and the worker waited forever with no timer left.
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let (_stack, config) = Opening::new().queue(5, 30).configure().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_quilt-notify"))
        .args(["run", "--config"])
        .arg(&config)
        .env("QUILT_NOTIFY__LOG__FORMAT", "json")
        .env("QUILT_NOTIFY__WORKER__SHUTDOWN_DEADLINE_SECONDS", "2")
        .env("RUST_LOG", "info")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start quilt-notify");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stdout).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("worker started"));
    assert!(started, "the worker did not start");
    // Both read ends closed: every later write of the worker fails with EPIPE.
    drop(lines);
    drop(stderr);

    // SAFETY: kill only sends a signal to the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let signalled = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if signalled.elapsed() > SECONDS_30 {
            let _ = child.kill();
            panic!("still running 30 s after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn sigterm_under_load_exits_0_within_the_deadline_leaves_nothing_invisible_and_loses_nothing()
{
    // The queue's own visibility timeout is long: a message the worker failed to release would
    // stay invisible for 60 s, and the check right after exit would see it.
    // The proxy only watches here: it counts the sends SES accepted.
    let proxy = SesProxy::in_front_of_ses(0x5eed_0004).await;
    let (stack, config) = Opening::new()
        .queue(5, 60)
        .ses(&proxy.url)
        .configure()
        .await;
    let deadline = Duration::from_secs(2);

    let (ids, bodies) = events(&stack, "term", 40);
    stack.send_batch(&stack.queue_url, &bodies).await;

    // Two sends a second, twenty in flight: at the signal most in-flight messages are still
    // waiting for their turn, and the 2 s deadline covers only about four of them.
    let mut first = stack.start_worker_with_env(
        &config,
        &env(&[
            ("QUILT_NOTIFY__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "60"),
            ("QUILT_NOTIFY__SES__MAX_SEND_RATE", "2"),
            ("QUILT_NOTIFY__WORKER__SHUTDOWN_DEADLINE_SECONDS", "2"),
        ]),
    );
    let busy = eventually(SECONDS_60, || async { proxy.stats().sends_accepted >= 4 }).await;
    assert!(busy, "log: {:#?}", first.lines());

    let signalled = Instant::now();
    let code = first.terminate().await;
    let took = signalled.elapsed();
    let (_, invisible) = stack.depth(&stack.queue_url).await;
    assert_eq!(code, Some(0), "log: {:#?}", first.lines());
    // The deadline, plus the settling calls (pending long polls are abandoned at the deadline).
    assert!(
        took <= deadline + Duration::from_secs(5),
        "exited {took:?} after SIGTERM"
    );
    assert_eq!(invisible, 0, "nothing left invisible after exit");

    let lines = first.lines();
    let released: Vec<&Value> = lines
        .iter()
        .filter(|l| l["outcome"] == "released")
        .collect();
    assert!(
        !released.is_empty(),
        "the deadline released unfinished messages: {lines:#?}"
    );
    for line in &released {
        assert_eq!(line["visible_in_s"], 0, "{line}");
        assert_eq!(line["acknowledged"], true, "{line}");
    }
    assert!(lines.iter().any(|l| l["message"]
        .as_str()
        .is_some_and(|m| m.contains("shutdown deadline passed"))));
    let sent_before = event_ids(&lines, &["sent"]).len();

    let second = stack.start_worker_with_env(
        &config,
        &env(&[("QUILT_NOTIFY__SES__MAX_SEND_RATE", "1000")]),
    );
    let settled = eventually(SECONDS_60, || {
        let mut all = lines.clone();
        all.extend(second.lines());
        let done = all_settled(&all, &ids);
        async move { done }
    })
    .await;
    assert!(settled, "log after restart: {:#?}", second.lines());
    let tally = Tally::of(&ids, &stack.emails().await);
    assert!(tally.lost.is_empty(), "lost: {:?}", tally.lost);
    assert_eq!(stack.depth(&stack.dlq_url).await, (0, 0));
    println!(
        "SIGTERM: exit {code:?} after {took:?}; {sent_before} sent before, {} released",
        released.len()
    );
    summary(
        "SIGTERM under load, then restart",
        &format!(
            "SIGTERM with 20 in flight at 2 sends/s, deadline 2 s: exit 0 after {:.1} s, {} released, 0 invisible",
            took.as_secs_f64(),
            released.len()
        ),
        ids.len(),
        &tally,
        "0",
    );

    assert_eq!(second.stop().await, Some(0));
}

// ---------------------------------------------------------------------------------------------
// 5. MessageRejected (moto)
// ---------------------------------------------------------------------------------------------

/// A route with its own `from`, for the moto test.
fn route_from(stack: &TestStack, name: &str, from: Option<&str>, pattern: &Value) -> String {
    let from = from.map_or(String::new(), |f| format!("from = \"{f}\"\n"));
    format!(
        "[[routes]]\nname = \"{name}\"\ntemplate = \"package-created\"\nto = [\"{}\"]\n{from}pattern = '''{pattern}'''\n",
        stack.recipient
    )
}

/// Mail moto accepted for this stack's recipient.
async fn moto_messages(stack: &TestStack) -> Vec<Value> {
    let data: Value = stack
        .http
        .get(format!("{}/moto-api/data.json", stack.endpoints.moto))
        .send()
        .await
        .expect("GET moto data")
        .json()
        .await
        .expect("moto json");
    data["ses"]["Message"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m["destinations"]["ToAddresses"]
                .as_array()
                .is_some_and(|a| a.iter().any(|r| r.as_str() == Some(&stack.recipient)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_message_ses_rejects_reaches_the_dlq_within_seconds_with_one_error_line_and_others_are_delivered(
) {
    // Visibility 30 s and three receives: only the release-at-once of permanent failures gets a
    // message to the DLQ within the 25 s waited below (the timeout path would take 60 s or more).
    let stack = TestStack::spawn(StackOptions {
        max_receive_count: 3,
        visibility_timeout: 30,
    })
    .await;
    let moto = stack.endpoints.moto.clone();
    let verified = format!("sender-{}@verified.example", stack.name);
    let unverified = format!("nobody-{}@unverified.example", stack.name);
    let ses = aws_sdk_sesv2::Client::new(&crate::support::sdk_config(&moto));
    ses.create_email_identity()
        .email_identity(&verified)
        .send()
        .await
        .expect("CreateEmailIdentity on moto");

    let routes = format!(
        "{}{}",
        route_from(
            &stack,
            "rejected",
            Some(&format!("Nobody <{unverified}>")),
            &handles_under(&stack, "rejected/")
        ),
        route_from(
            &stack,
            "verified",
            None,
            &handles_under(&stack, "verified/")
        ),
    );
    let config = stack.config(&moto, &routes, "");
    let worker = stack.start_worker_with_env(
        &config,
        &env(&[
            ("QUILT_NOTIFY__SES__FROM", &format!("Quilt <{verified}>")),
            ("QUILT_NOTIFY__SES__MAX_SEND_RATE", "100"),
        ]),
    );

    let rejected = stack.event("rejected/pkg").to_string();
    let accepted = stack.event("verified/pkg");
    let rejected_id = stack.send_raw(&rejected).await;
    stack.send_raw(&accepted.to_string()).await;

    let dead = stack.take(&stack.dlq_url, 1, Duration::from_secs(25)).await;
    assert_eq!(
        dead,
        vec![rejected.clone()],
        "the rejected message is dead-lettered unchanged; log: {:#?}",
        worker.lines()
    );

    let delivered = eventually(SECONDS_30, || async {
        !moto_messages(&stack).await.is_empty()
    })
    .await;
    assert!(delivered, "log: {:#?}", worker.lines());
    let mail = moto_messages(&stack).await;
    assert_eq!(mail.len(), 1, "{mail:#?}");
    assert!(mail[0]["source"]
        .as_str()
        .is_some_and(|s| s.contains(&verified)));
    assert!(mail[0]["subject"]
        .as_str()
        .is_some_and(|s| s.contains("verified/pkg")));

    let lines = lines_for(&worker.lines(), &rejected_id);
    let errors = at_level(&lines, "ERROR");
    assert_eq!(errors.len(), 1, "one ERROR line: {lines:#?}");
    let error = &errors[0];
    assert_eq!(error["outcome"], "failed");
    assert_eq!(error["error.kind"], "permanent");
    assert_eq!(error["error.code"], "MessageRejected");
    assert_eq!(error["visible_in_s"], 0);
    assert!(error["error"]
        .as_str()
        .is_some_and(|e| e.contains("route \"rejected\"") && e.contains("not verified")));
    assert!(
        lines
            .iter()
            .all(|l| l["level"] == "ERROR" || l["level"] == "WARN"),
        "later receives say it again as WARN: {lines:#?}"
    );
    let tally = Tally {
        delivered: mail.len(),
        duplicates: BTreeMap::new(),
        lost: Vec::new(),
    };
    summary(
        "MessageRejected (unverified sender)",
        "moto: route `from` not verified -> 400 MessageRejected; the other route's sender verified with CreateEmailIdentity",
        2,
        &tally,
        "1 (the rejected one, after 3 fast receives; 1 ERROR line)",
    );

    assert_eq!(worker.stop().await, Some(0));
}

// ---------------------------------------------------------------------------------------------
// 6. SendingPausedException
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_paused_account_stops_consumption_keeps_the_queue_and_resumes_when_sending_is_enabled() {
    let proxy = SesProxy::in_front_of_ses(0x5eed_0006).await;
    proxy.set(
        Faults::none()
            .send_errors(1.0, SesError::sending_paused())
            .account(Account::paused()),
    );
    let Opened { stack, worker, .. } = Opening::new()
        .queue(3, 30)
        .ses(&proxy.url)
        .env(&[("QUILT_NOTIFY__SES__MAX_SEND_RATE", "100")])
        .start()
        .await;

    let (ids, bodies) = events(&stack, "paused", 5);
    stack.send_batch(&stack.queue_url, &bodies).await;

    let tripped = worker
        .wait_for_log(SECONDS_30, |lines| {
            lines.iter().any(|l| {
                l["level"] == "ERROR"
                    && l["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("account cannot send"))
            })
        })
        .await;
    assert!(tripped, "log: {:#?}", worker.lines());
    for line in worker.outcomes("failed") {
        assert_eq!(line["error.kind"], "account_paused", "{line}");
        assert_eq!(line["error.code"], "SendingPausedException", "{line}");
    }

    // Two probes find the account still paused (5 s, then 10 s later). Between them no message
    // is received, so no send is tried; the queue keeps every message and the DLQ stays empty,
    // although three receives would have dead-lettered them by now.
    let probes_at_trip = proxy.stats().account_calls;
    let first_probe = eventually(SECONDS_30, || async {
        proxy.stats().account_calls > probes_at_trip
    })
    .await;
    assert!(first_probe, "a probe: {:?}", proxy.stats());
    let sends_after_first_probe = proxy.stats().sends;
    let second_probe = eventually(SECONDS_30, || async {
        proxy.stats().account_calls > probes_at_trip + 1
    })
    .await;
    assert!(second_probe, "a second probe: {:?}", proxy.stats());
    assert_eq!(
        proxy.stats().sends,
        sends_after_first_probe,
        "no sends while paused"
    );
    let (visible, hidden) = stack.depth(&stack.queue_url).await;
    assert_eq!(visible + hidden, 5, "the queue keeps its messages");
    assert_eq!(stack.depth(&stack.dlq_url).await, (0, 0), "nothing dead");
    assert!(stack.emails().await.is_empty());
    let paused_receives = worker.outcomes("failed").len();

    proxy.heal();
    let resumed = worker
        .wait_for_log(SECONDS_60, |lines| {
            lines.iter().any(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("resuming"))
            })
        })
        .await;
    assert!(resumed, "log: {:#?}", worker.lines());
    let settled = worker
        .wait_for_log(SECONDS_60, |lines| all_settled(lines, &ids))
        .await;
    assert!(settled, "log: {:#?}", worker.lines());
    let tally = Tally::of(&ids, &stack.emails().await);
    assert!(tally.lost.is_empty(), "lost: {:?}", tally.lost);
    assert!(tally.duplicates.is_empty(), "{:?}", tally.duplicates);
    assert_eq!(stack.depth(&stack.dlq_url).await, (0, 0));
    println!(
        "paused: {paused_receives} failed receives before the gate closed; {} probes",
        proxy.stats().account_calls
    );
    summary(
        "Account paused, then re-enabled",
        "proxy: SendEmail -> 400 SendingPausedException, GetAccount SendingEnabled=false for 2 probes; then enabled",
        ids.len(),
        &tally,
        "0",
    );

    assert_eq!(worker.stop().await, Some(0));
}

// ---------------------------------------------------------------------------------------------
// 7. Hostile input
// ---------------------------------------------------------------------------------------------

/// SQS's limit on a message body.
const SQS_MAX_BODY: usize = 256 * 1024;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn hostile_bodies_each_meet_their_defined_fate_and_the_worker_never_dies() {
    let Opened {
        stack, mut worker, ..
    } = Opening::new()
        .queue(2, 30)
        .env(&[("QUILT_NOTIFY__SES__MAX_SEND_RATE", "100")])
        .start()
        .await;

    let event = |handle: &str| stack.event(handle);
    let mut wrong_type = event("hostile/wrong-type");
    wrong_type["detail"]["handle"] = json!(42);
    let mut missing = event("hostile/missing");
    missing["detail"]
        .as_object_mut()
        .expect("detail")
        .remove("topHash");
    let mut detail_string = event("hostile/detail-string");
    detail_string["detail"] = json!("not an object");
    let truncated = event("hostile/truncated").to_string();
    let truncated = truncated[..truncated.len() / 2].to_owned();
    let sns_garbage = json!({
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:000000000000:quilt",
        "Message": "<html>not an event</html>",
    })
    .to_string();

    // Poison: straight to the DLQ, one ERROR line each, naming the problem.
    let poison: Vec<(&str, String, &str)> = vec![
        (
            "non-JSON",
            "hello, this is not JSON".to_owned(),
            "body is not JSON",
        ),
        ("truncated JSON", truncated, "body is not JSON"),
        (
            "wrong type",
            wrong_type.to_string(),
            "`detail.handle` must be a string",
        ),
        (
            "missing detail field",
            missing.to_string(),
            "`detail.topHash` is missing",
        ),
        (
            "detail not an object",
            detail_string.to_string(),
            "`detail` is missing or not an object",
        ),
        (
            "JSON array",
            "[1, 2, 3]".to_owned(),
            "expected a JSON object",
        ),
        (
            "SNS wrapper around garbage",
            sns_garbage,
            "SNS Message is not JSON",
        ),
        ("nesting 100k deep", "[".repeat(100_000), "body is not JSON"),
        (
            "near-256 KiB garbage",
            "x".repeat(SQS_MAX_BODY - 64),
            "body is not JSON",
        ),
    ];

    // Deliverable: sent, with the handle escaped in HTML and kept to one line in the subject.
    let mut padded = event("hostile/padded");
    let overhead = padded.to_string().len() + r#","padding":"""#.len();
    padded["detail"]["padding"] = json!("p".repeat(SQS_MAX_BODY - overhead - 64));
    let markup = event("team/<script>alert('x')</script>\r\nBcc: victim@evil.example");
    let unicode = event("équipe/данные-📦");
    let deliverable = [
        ("near-256 KiB valid event", padded.to_string()),
        ("markup and CR/LF in handle", markup.to_string()),
        ("unicode handle", unicode.to_string()),
    ];

    // Filtered: a well-formed envelope that no route wants.
    let mut other = event("hostile/other-type");
    other["detail-type"] = json!("something-else");
    let filtered_body = other.to_string();

    let mut poison_ids = Vec::new();
    for (_, body, _) in &poison {
        assert!(body.len() <= SQS_MAX_BODY);
        poison_ids.push(stack.send_raw(body).await);
    }
    for (_, body) in &deliverable {
        assert!(body.len() <= SQS_MAX_BODY, "{}", body.len());
        stack.send_raw(body).await;
    }
    let filtered_id = stack.send_raw(&filtered_body).await;

    let dead = stack
        .take(&stack.dlq_url, poison.len(), Duration::from_secs(90))
        .await;
    let dead: HashSet<&String> = dead.iter().collect();
    for (name, body, _) in &poison {
        assert!(
            dead.contains(body),
            "{name} is in the DLQ; log: {:#?}",
            worker.lines()
        );
    }

    let delivered_ids: Vec<String> = [&padded, &markup, &unicode]
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    let settled = worker
        .wait_for_log(SECONDS_60, |lines| {
            all_settled(lines, &delivered_ids)
                && lines
                    .iter()
                    .any(|l| l["message_id"] == filtered_id.as_str())
        })
        .await;
    assert!(settled, "log: {:#?}", worker.lines());

    let lines = worker.lines();
    for ((name, _, reason), id) in poison.iter().zip(&poison_ids) {
        let mine = lines_for(&lines, id);
        let errors = at_level(&mine, "ERROR");
        assert_eq!(errors.len(), 1, "{name}: one ERROR line: {mine:#?}");
        let error = &errors[0];
        assert_eq!(error["error.kind"], "permanent", "{name}");
        assert_eq!(error["error.code"], "invalid_event", "{name}");
        assert_eq!(error["visible_in_s"], 0, "{name}");
        assert!(
            error["error"].as_str().is_some_and(|e| e.contains(reason)),
            "{name}: {error}"
        );
    }
    let filtered = lines_for(&lines, &filtered_id);
    assert_eq!(filtered.len(), 1, "{filtered:#?}");
    assert_eq!(filtered[0]["outcome"], "filtered");
    assert_eq!(filtered[0]["acknowledged"], true);

    let emails = stack.emails().await;
    let tally = Tally::of(&delivered_ids, &emails);
    assert!(tally.lost.is_empty(), "lost: {:?}", tally.lost);
    assert_eq!(emails.len(), 3, "only the deliverable ones are mailed");
    let markup_mail = emails
        .iter()
        .find(|m| event_id_of(m).as_deref() == markup["id"].as_str())
        .expect("markup mail");
    let html = markup_mail["body"]["html"].as_str().expect("html");
    assert!(!html.contains("<script>"), "markup escaped: {html}");
    assert!(html.contains("&lt;script&gt;"), "markup escaped: {html}");
    let subject = markup_mail["subject"].as_str().expect("subject");
    assert!(
        !subject.contains(['\r', '\n']),
        "one-line subject: {subject:?}"
    );
    assert!(subject.contains("alert"), "{subject:?}");
    assert_eq!(markup_mail["destination"]["to"], json!([stack.recipient]));
    assert!(
        markup_mail["destination"]["bcc"]
            .as_array()
            .is_none_or(|b| b.is_empty()),
        "no header injection: {markup_mail:#?}"
    );
    let unicode_mail = emails
        .iter()
        .find(|m| event_id_of(m).as_deref() == unicode["id"].as_str())
        .expect("unicode mail");
    assert!(unicode_mail["subject"]
        .as_str()
        .is_some_and(|s| s.contains("équipe/данные-📦")));

    assert!(worker.is_running(), "the worker is alive");
    assert!(
        !lines.iter().any(|l| l["error.code"] == "panic"),
        "no panics"
    );
    let sent = poison.len() + deliverable.len() + 1;
    summary(
        "Hostile input corpus",
        "straight to SQS: non-JSON, truncated, wrong type, missing field, detail not object, array, SNS around garbage, 100k nesting, 256 KiB garbage (DLQ); 256 KiB valid, markup+CR/LF handle, unicode (delivered); other detail-type (filtered)",
        sent,
        &tally,
        &format!("{} (all poison, 1 ERROR line each)", poison.len()),
    );

    assert_eq!(worker.stop().await, Some(0));
}

// ---------------------------------------------------------------------------------------------
// Partial success, dedupe, heartbeat
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn when_one_of_two_routes_fails_the_redelivery_sends_only_the_failed_route() {
    let proxy = SesProxy::in_front_of_ses(0x5eed_0008).await;
    // The route name travels in the message tags and the rendered text.
    proxy.set(
        Faults::none()
            .send_errors(1.0, SesError::service_unavailable())
            .only_containing("flaky"),
    );
    let Opened { stack, worker, .. } = Opening::new()
        .queue(5, 30)
        .ses(&proxy.url)
        .routes(|stack| {
            format!(
                "{}{}",
                stack.route("steady", &every_package(stack)),
                stack.route("flaky", &every_package(stack))
            )
        })
        .env(&[("QUILT_NOTIFY__SES__MAX_SEND_RATE", "100")])
        .start()
        .await;

    let event = stack.event("partial/pkg");
    let message_id = stack.send_raw(&event.to_string()).await;
    let failed = worker
        .wait_for_log(SECONDS_30, |lines| {
            lines.iter().any(|l| l["outcome"] == "failed")
        })
        .await;
    assert!(failed, "log: {:#?}", worker.lines());
    let line = &worker.outcomes("failed")[0];
    assert_eq!(line["routes"], "steady,flaky");
    assert_eq!(line["error.kind"], "transient");
    assert_eq!(line["error.code"], "ServiceUnavailable");
    let route_of = |m: &Value| {
        let text = m["body"]["text"].as_str().unwrap_or_default();
        if text.contains("route \"flaky\"") {
            "flaky"
        } else {
            "steady"
        }
    };
    let first = stack.emails().await;
    assert_eq!(
        first.iter().map(route_of).collect::<Vec<_>>(),
        ["steady"],
        "the steady route was sent on the first receive"
    );

    proxy.heal();
    let sent = worker
        .wait_for_log(SECONDS_30, |lines| {
            lines.iter().any(|l| l["outcome"] == "sent")
        })
        .await;
    assert!(sent, "log: {:#?}", worker.lines());
    let sent = &worker.outcomes("sent")[0];
    assert_eq!(sent["message_id"], message_id.as_str());
    assert!(sent["receive_count"].as_u64() > Some(1));
    let mut routes: Vec<&str> = stack.emails().await.iter().map(route_of).collect();
    routes.sort_unstable();
    assert_eq!(routes, ["flaky", "steady"], "steady was not sent again");
    assert_eq!(proxy.stats().sends_accepted, 2);
    assert_eq!(stack.depth(&stack.queue_url).await, (0, 0));
    // Counted per (event, route): one email per route is the expected delivery.
    let emails = stack.emails().await;
    let tally = Tally {
        delivered: 1,
        duplicates: BTreeMap::new(),
        lost: Vec::new(),
    };
    summary(
        "Partial success (2 routes, 1 failing)",
        "proxy: 503 ServiceUnavailable for sends whose body contains the route name `flaky`, then healed",
        1,
        &tally,
        "0",
    );
    println!(
        "partial: {} emails for 2 routes; {} duplicates of the steady route",
        emails.len(),
        emails.len() - 2
    );

    assert_eq!(worker.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn the_same_event_id_delivered_twice_is_mailed_once_and_the_second_is_logged_duplicate() {
    let Opened { stack, worker, .. } = Opening::new()
        .env(&[("QUILT_NOTIFY__SES__MAX_SEND_RATE", "100")])
        .start()
        .await;

    let body = stack.event("dedupe/pkg").to_string();
    let first = stack.send_raw(&body).await;
    let sent = worker
        .wait_for_log(SECONDS_30, |lines| {
            lines.iter().any(|l| l["outcome"] == "sent")
        })
        .await;
    assert!(sent, "log: {:#?}", worker.lines());
    let second = stack.send_raw(&body).await;
    assert_ne!(first, second, "two SQS messages");
    let duplicate = worker
        .wait_for_log(SECONDS_30, |lines| {
            lines.iter().any(|l| l["outcome"] == "duplicate")
        })
        .await;
    assert!(duplicate, "log: {:#?}", worker.lines());

    let line = &worker.outcomes("duplicate")[0];
    assert_eq!(line["message_id"], second.as_str());
    assert_eq!(line["event_id"], worker.outcomes("sent")[0]["event_id"]);
    assert_eq!(line["acknowledged"], true, "the duplicate is deleted");
    let emails = stack.emails().await;
    assert_eq!(emails.len(), 1, "one email");
    assert_eq!(stack.depth(&stack.queue_url).await, (0, 0));
    let ids = [line["event_id"].as_str().expect("event id").to_owned()];
    summary(
        "Same event delivered twice",
        "the same body sent as two SQS messages, the second after the first was sent",
        1,
        &Tally::of(&ids, &emails),
        "0",
    );

    assert_eq!(worker.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_send_slower_than_the_visibility_timeout_is_not_received_twice() {
    let proxy = SesProxy::in_front_of_ses(0x5eed_000a).await;
    // Over two visibility timeouts, and below the SDK's 10 s attempt timeout.
    proxy.set(Faults::none().send_delay(Duration::from_secs(7)));
    let Opened { stack, worker, .. } = Opening::new()
        .queue(5, 3)
        .ses(&proxy.url)
        .env(&[
            ("QUILT_NOTIFY__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "3"),
            ("QUILT_NOTIFY__SES__MAX_SEND_RATE", "100"),
        ])
        .start()
        .await;

    let message_id = stack.send_raw(&stack.event("slow/pkg").to_string()).await;
    let sent = worker
        .wait_for_log(SECONDS_30, |lines| {
            lines.iter().any(|l| l["outcome"] == "sent")
        })
        .await;
    assert!(sent, "log: {:#?}", worker.lines());

    let mine = lines_for(&worker.lines(), &message_id);
    assert_eq!(mine.len(), 1, "one receive: {mine:#?}");
    assert_eq!(mine[0]["receive_count"], 1);
    assert!(mine[0]["elapsed_ms"].as_f64() > Some(7000.0));
    assert_eq!(proxy.stats().sends, 1, "one send");
    let emails = stack.emails().await;
    assert_eq!(emails.len(), 1, "one email");
    assert_eq!(stack.depth(&stack.queue_url).await, (0, 0));
    let ids = [mine[0]["event_id"].as_str().expect("event id").to_owned()];
    summary(
        "Send slower than the visibility timeout",
        "proxy: every send delayed 7 s; visibility timeout 3 s (heartbeat every 1.5 s)",
        1,
        &Tally::of(&ids, &emails),
        "0",
    );

    assert_eq!(worker.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_message_done_early_stays_hidden_while_a_slow_batch_mate_still_sends_so_another_task_cannot_resend_it(
) {
    let proxy = SesProxy::in_front_of_ses(0x5eed_000b).await;
    // Only the slow package's send is delayed: over two visibility timeouts.
    proxy.set(
        Faults::none()
            .send_delay(Duration::from_secs(7))
            .only_containing("batch/slow"),
    );
    let (stack, config) = Opening::new().queue(5, 3).ses(&proxy.url).configure().await;
    let settings = |pollers: &str| {
        env(&[
            ("QUILT_NOTIFY__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "3"),
            ("QUILT_NOTIFY__SES__MAX_SEND_RATE", "100"),
            ("QUILT_NOTIFY__WORKER__POLLERS", pollers),
        ])
    };

    // Both messages are in the queue before the first task starts; its single poller takes
    // them in one batch, which settles when the slow one is done.
    let fast = stack.event("batch/fast");
    let slow = stack.event("batch/slow");
    let ids = [&fast, &slow].map(|e| e["id"].as_str().expect("id").to_owned());
    stack
        .send_batch(&stack.queue_url, &[fast.to_string(), slow.to_string()])
        .await;
    let first = stack.start_worker_with_env(&config, &settings("1"));
    let both_sending = eventually(SECONDS_30, || async { proxy.stats().sends >= 2 }).await;
    assert!(both_sending, "log: {:#?}", first.lines());
    // A second task (another ECS task: no shared memory) polls the same queue meanwhile.
    let second = stack.start_worker_with_env(&config, &settings("2"));

    let settled = first
        .wait_for_log(SECONDS_30, |lines| all_settled(lines, &ids))
        .await;
    assert!(settled, "log: {:#?}", first.lines());
    let mut lines = first.lines();
    lines.extend(second.lines());
    let handled: Vec<&Value> = lines.iter().filter(|l| l["outcome"].is_string()).collect();
    assert_eq!(
        handled.len(),
        2,
        "each message handled once, by the first task: {handled:#?}"
    );
    assert!(
        handled.iter().all(|l| l["receive_count"] == 1),
        "{handled:#?}"
    );
    let emails = stack.emails().await;
    let tally = Tally::of(&ids, &emails);
    assert!(tally.lost.is_empty(), "lost: {:?}", tally.lost);
    assert!(
        tally.duplicates.is_empty(),
        "no second email: {:?}",
        tally.duplicates
    );
    assert_eq!(proxy.stats().sends, 2, "two sends");
    summary(
        "Slow send beside a fast one in one batch, two tasks",
        "proxy: the slow package's send delayed 7 s, visibility 3 s; a second worker process polls the queue",
        ids.len(),
        &tally,
        "0",
    );

    assert_eq!(first.stop().await, Some(0));
    assert_eq!(second.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_second_stop_signal_exits_130_at_once_and_the_unfinished_message_is_redelivered_later() {
    let proxy = SesProxy::in_front_of_ses(0x5eed_000c).await;
    proxy.set(Faults::none().send_delay(Duration::from_secs(8)));
    let (stack, config) = Opening::new().queue(5, 3).ses(&proxy.url).configure().await;
    let fast = env(&[
        ("QUILT_NOTIFY__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "3"),
        ("QUILT_NOTIFY__SES__MAX_SEND_RATE", "100"),
        ("QUILT_NOTIFY__WORKER__SHUTDOWN_DEADLINE_SECONDS", "20"),
    ]);
    let mut first = stack.start_worker_with_env(&config, &fast);

    let event = stack.event("impatient/pkg");
    let ids = [event["id"].as_str().expect("id").to_owned()];
    stack.send_raw(&event.to_string()).await;
    let sending = eventually(SECONDS_30, || async { proxy.stats().sends >= 1 }).await;
    assert!(sending, "log: {:#?}", first.lines());

    first.signal(libc::SIGTERM);
    let draining = first
        .wait_for_log(SECONDS_30, |lines| {
            lines.iter().any(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("stop requested"))
            })
        })
        .await;
    assert!(draining, "log: {:#?}", first.lines());
    first.signal(libc::SIGTERM);
    // Well before the 20 s deadline and the 8 s send.
    let code = first.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(code, Some(130), "log: {:#?}", first.lines());

    // The message was neither deleted nor released: it comes back after its visibility timeout
    // (no longer renewed) and a new worker delivers it.
    proxy.heal();
    let second = stack.start_worker_with_env(&config, &fast);
    let settled = second
        .wait_for_log(SECONDS_60, |lines| all_settled(lines, &ids))
        .await;
    assert!(settled, "log: {:#?}", second.lines());
    let tally = Tally::of(&ids, &stack.emails().await);
    assert!(tally.lost.is_empty(), "lost: {:?}", tally.lost);
    summary(
        "Second stop signal during a send",
        "SIGTERM, then SIGTERM again while a send is delayed 8 s: exit 130 at once; restarted",
        1,
        &tally,
        "0",
    );

    assert_eq!(second.stop().await, Some(0));
}
