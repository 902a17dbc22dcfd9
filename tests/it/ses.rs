//! The SES v2 adapter against the emulator and the fault proxy: which failures may hide an
//! email SES accepted (issue 20 §5, "ambiguous SES failures"), and that the SDK never resends
//! one of those by itself, so that every such attempt reaches the worker and is counted.

use std::time::Duration;

use quilt_notify::adapters::aws::ses::SesMailer;
use quilt_notify::ports::{Email, FailureKind, Mailer};

use crate::support::proxy::{Faults, SesError, SesProxy};
use crate::support::tally::{summary, Tally};
use crate::support::{events, eventually, free_port, sdk_config, Endpoints, Opened, Opening};

fn mailer(endpoint: &str) -> SesMailer {
    SesMailer::new(aws_sdk_sesv2::Client::new(&sdk_config(endpoint)), None)
}

fn email() -> Email {
    Email {
        from: "quilt-notify@example.com".to_owned(),
        to: vec![format!("{}@example.com", crate::support::unique("ses"))],
        cc: vec![],
        bcc: vec![],
        reply_to: vec![],
        subject: "s".to_owned(),
        html: "<p>h</p>".to_owned(),
        text: "t".to_owned(),
        tags: vec![],
        list: None,
    }
}

/// A local port nothing listens on.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_failure_is_ambiguous_exactly_when_ses_may_have_accepted_the_email_and_is_never_resent_blindly(
) {
    let endpoints = Endpoints::from_env();
    let proxy = SesProxy::start(&endpoints.ses, 5).await;
    let through_proxy = mailer(&proxy.url);
    // (fault, the kind the worker sees, SendEmail requests that reached the proxy)
    let cases = [
        (
            "500 InternalFailure",
            Faults::none().send_errors(1.0, SesError::internal_failure()),
            FailureKind::Ambiguous,
            1,
        ),
        (
            "503 ServiceUnavailable",
            Faults::none().send_errors(1.0, SesError::service_unavailable()),
            FailureKind::Ambiguous,
            1,
        ),
        (
            "connection closed after the request was read",
            Faults::none().drop_connections(1.0),
            FailureKind::Ambiguous,
            1,
        ),
        // Refused, not accepted: the SDK retries it (3 attempts), as before.
        (
            "429 TooManyRequests",
            Faults::none().send_errors(1.0, SesError::too_many_requests()),
            FailureKind::Throttled,
            3,
        ),
        (
            "400 MessageRejected",
            Faults::none().send_errors(1.0, SesError::message_rejected()),
            FailureKind::Permanent,
            1,
        ),
    ];
    for (what, faults, kind, requests) in cases {
        proxy.set(faults);
        let before = proxy.stats().sends;
        let error = through_proxy
            .send(&email())
            .await
            .expect_err("the fault fails the send");
        assert_eq!(error.kind, kind, "{what}: {error}");
        assert_eq!(
            proxy.stats().sends - before,
            requests,
            "{what}: SendEmail requests that reached SES"
        );
    }

    // Nothing listens: the request never left, so SES cannot have it.
    let refused = mailer(&format!("http://127.0.0.1:{}", free_port()))
        .send(&email())
        .await
        .expect_err("connection refused");
    assert_eq!(refused.kind, FailureKind::Transient, "{refused}");

    proxy.heal();
    through_proxy.send(&email()).await.expect("healed");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn an_answer_lost_after_ses_accepted_the_email_is_a_duplicate_the_worker_counts() {
    let proxy = SesProxy::in_front_of_ses(11).await;
    // SES accepts the email; the answer never comes back (the connection closes).
    proxy.set(Faults::none().lose_answers(0.3));
    let health = free_port();
    let Opened { stack, worker, .. } = Opening::new()
        .queue(10, 30)
        .ses(&proxy.url)
        .extra(&format!("[health]\nlisten = \"127.0.0.1:{health}\"\n"))
        .env(&[("QUILT_NOTIFY__SES__MAX_SEND_RATE", "1000")])
        .start()
        .await;
    let (ids, bodies) = events(&stack, "lost", 20);
    stack.send_batch(&stack.queue_url, &bodies).await;
    let drained = eventually(Duration::from_secs(90), || {
        let stack = &stack;
        async move { stack.depth(&stack.queue_url).await == (0, 0) }
    })
    .await;
    assert!(drained, "queue not drained: {:#?}", worker.lines());

    let tally = Tally::of(&ids, &stack.emails().await);
    let stats = proxy.stats();
    let text = reqwest::get(format!("http://127.0.0.1:{health}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let counted: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("quilt_notify_possible_duplicates_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no possible_duplicates in\n{text}"));
    println!(
        "answers lost after SES accepted: {}; duplicates in the inbox: {}; counted: {counted}",
        stats.answers_lost,
        tally.duplicate_count()
    );
    assert!(tally.lost.is_empty(), "lost: {:?}", tally.lost);
    assert!(stats.answers_lost > 0, "{stats:?}");
    assert_eq!(
        tally.duplicate_count() as u64,
        stats.answers_lost,
        "each lost answer is one more copy"
    );
    assert_eq!(counted, stats.answers_lost, "every one counted");
    assert_eq!(stack.depth(&stack.dlq_url).await, (0, 0), "nothing dead");
    summary(
        "SES accepted, the answer lost",
        &format!(
            "proxy: 30 % of sends forwarded, accepted by SES, then the connection closed instead of the answer ({} of {} sends); SDK retries on",
            stats.answers_lost, stats.sends
        ),
        ids.len(),
        &tally,
        "0",
    );
    assert_eq!(worker.stop().await, Some(0));
}
