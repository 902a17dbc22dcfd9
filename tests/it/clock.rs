//! Clock skew (issue 20 §5): leases compare the clocks of the tasks that hold them, so a task
//! measures its own clock against the `Date` of AWS answers, warns once when it is off by more
//! than `state.max_clock_skew_seconds`, counts such answers and exports its estimate.

use std::time::Duration;

use serde_json::Value;

use crate::support::proxy::{Faults, SesProxy};
use crate::support::tally::Tally;
use crate::support::{env, events, every_package, free_port, StackOptions, TestStack};

/// A metric's value on `/metrics`.
async fn metric(health: u16, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{health}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
}

fn about_the_clock(lines: &[Value], level: &str) -> usize {
    lines
        .iter()
        .filter(|l| l["level"] == level)
        .filter(|l| l["message"].as_str().is_some_and(|m| m.contains("clock")))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_task_whose_clock_is_off_from_aws_warns_once_counts_it_and_exports_its_skew() {
    let stack = TestStack::spawn(StackOptions::default()).await;
    // Every AWS answer (SQS and S3 on LocalStack, SES) dated 30 s ago: this task's clock looks
    // 30 s ahead of AWS's.
    let aws = SesProxy::start(&stack.endpoints.aws, 1).await;
    let ses = SesProxy::start(&stack.endpoints.ses, 2).await;
    aws.set(Faults::none().date_behind(30));
    ses.set(Faults::none().date_behind(30));
    let health = free_port();
    let config = stack.config(
        &ses.url,
        &stack.route("all", &every_package(&stack)),
        &format!("[health]\nlisten = \"127.0.0.1:{health}\"\n"),
    );
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace(&stack.endpoints.aws, &aws.url);
    std::fs::write(&config, text).expect("config");
    let worker = stack.start_worker_with_env(
        &config,
        &env(&[("QUILT_NOTIFY__SES__MAX_SEND_RATE", "100")]),
    );

    let (ids, bodies) = events(&stack, "skewed", 3);
    stack.send_batch(&stack.queue_url, &bodies).await;
    let emails = stack.wait_for_emails(3, Duration::from_secs(30)).await;
    assert_eq!(
        Tally::of(&ids, &emails).delivered,
        3,
        "a skewed clock delays nothing here: {:#?}",
        worker.lines()
    );
    let skew = metric(health, "quilt_notify_clock_skew_seconds").await;
    let exceeded = metric(health, "quilt_notify_clock_skew_exceeded_total").await;
    println!(
        "clock 30 s ahead of AWS: estimate {skew:?} s, {exceeded:?} answers past the allowed skew"
    );
    assert!(
        skew.is_some_and(|s| (28.0..=31.0).contains(&s)),
        "estimate {skew:?}"
    );
    assert!(exceeded.is_some_and(|n| n >= 3.0), "{exceeded:?}");
    assert_eq!(
        about_the_clock(&worker.lines(), "WARN"),
        1,
        "one WARN line: {:#?}",
        worker.lines()
    );

    // AWS's clock agrees again: the estimate follows, and the task says so once.
    aws.heal();
    ses.heal();
    let (ids, bodies) = events(&stack, "agreed", 3);
    stack.send_batch(&stack.queue_url, &bodies).await;
    let emails = stack.wait_for_emails(6, Duration::from_secs(30)).await;
    assert_eq!(Tally::of(&ids, &emails).delivered, 3);
    let skew = metric(health, "quilt_notify_clock_skew_seconds").await;
    assert!(skew.is_some_and(|s| s.abs() <= 1.0), "estimate {skew:?}");
    assert_eq!(about_the_clock(&worker.lines(), "WARN"), 1);
    assert_eq!(about_the_clock(&worker.lines(), "INFO"), 1, "back within");
    assert_eq!(worker.stop().await, Some(0));
}
