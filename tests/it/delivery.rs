//! The core promise, end to end: a Quilt event on EventBridge becomes an email; what is not
//! owed is deleted; what cannot be sent stays until the dead-letter queue.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{Opened, Opening, TestStack};

const SECONDS_30: Duration = Duration::from_secs(30);

fn route_pattern(stack: &TestStack, handle_prefix: &str) -> Value {
    json!({
        "source": ["com.quiltdata"],
        "detail-type": ["package-revision"],
        "detail": {
            "type": ["created"],
            "bucket": [stack.bucket],
            "handle": [{"prefix": handle_prefix}],
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_documented_event_on_eventbridge_becomes_an_email_and_leaves_the_queue_empty() {
    let Opened { stack, worker, .. } = Opening::new()
        .routes(|stack| stack.route("team-a", &route_pattern(stack, "team-a/")))
        .start()
        .await;

    let event = stack.event("team-a/sales");
    stack.put_event(&event).await;

    let emails = stack.wait_for_emails(1, SECONDS_30).await;
    assert_eq!(
        emails.len(),
        1,
        "one email: {emails:#?}\nlog: {:#?}",
        worker.lines()
    );
    let email = &emails[0];
    let hash = "a0fddace2eb2fd91faa697d237a5dbdcfa77f0fd38ca8b4c850dbd93d142ee69";
    assert_eq!(
        email["subject"],
        format!(
            "New package revision: team-a/sales @ a0fddac in s3://{}",
            stack.bucket
        )
    );
    assert_eq!(email["destination"]["to"], json!([stack.recipient]));
    assert!(email["from"]
        .as_str()
        .unwrap_or("")
        .contains("quilt-notify@example.com"));
    let html = email["body"]["html"]
        .as_str()
        .expect("html")
        .replace("&#x3D;", "=");
    let text = email["body"]["text"].as_str().expect("text");
    let catalog = format!(
        "https://catalog.example.com/b/{}/packages/team-a/sales/tree/{hash}/",
        stack.bucket
    );
    let uri = format!("quilt+s3://{}#package=team-a/sales@{hash}", stack.bucket);
    for part in [&html, text] {
        assert!(part.contains(&catalog), "catalog link in {part}");
        assert!(part.contains(&uri), "Quilt+ URI in {part}");
    }

    let logged = worker
        .wait_for_log(SECONDS_30, |lines| {
            lines.iter().any(|l| l["outcome"] == "sent")
        })
        .await;
    assert!(logged, "a `sent` line: {:#?}", worker.lines());
    let sent = &worker.outcomes("sent")[0];
    // EventBridge assigns its own id when it delivers the event.
    assert!(sent["event_id"].is_string());
    assert_eq!(sent["bucket"], stack.bucket);
    assert_eq!(sent["handle"], "team-a/sales");
    assert_eq!(sent["top_hash"], hash);
    assert_eq!(sent["routes"], "team-a");
    assert!(sent["elapsed_ms"].is_number());
    assert!(sent["message_id"].is_string());
    assert_eq!(sent["acknowledged"], true);
    assert_eq!(
        stack.depth(&stack.queue_url).await,
        (0, 0),
        "queue is empty"
    );

    assert_eq!(worker.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn an_event_no_route_matches_is_deleted_unsent_and_logged_as_filtered() {
    let Opened { stack, worker, .. } = Opening::new()
        .routes(|stack| stack.route("team-a", &route_pattern(stack, "team-a/")))
        .start()
        .await;

    // The rule passes every handle in the bucket; the route only team-a's.
    stack.put_event(&stack.event("team-b/other")).await;

    let logged = worker
        .wait_for_log(SECONDS_30, |lines| {
            lines.iter().any(|l| l["outcome"] == "filtered")
        })
        .await;
    assert!(logged, "a `filtered` line: {:#?}", worker.lines());
    let line = &worker.outcomes("filtered")[0];
    assert_eq!(line["handle"], "team-b/other");
    assert_eq!(line["routes"], "");
    assert_eq!(line["acknowledged"], true);
    assert_eq!(stack.depth(&stack.queue_url).await, (0, 0), "deleted");
    assert!(stack.emails().await.is_empty(), "no email");

    assert_eq!(worker.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn an_sns_wrapped_event_is_delivered_like_a_direct_one() {
    let Opened { stack, worker, .. } = Opening::new()
        .routes(|stack| stack.route("all", &route_pattern(stack, "")))
        .start()
        .await;

    let event = stack.event("wrapped/pkg");
    let sns = json!({
        "Type": "Notification",
        "MessageId": "c0ffee",
        "TopicArn": "arn:aws:sns:us-east-1:000000000000:quilt",
        "Message": event.to_string(),
    });
    stack.send_raw(&sns.to_string()).await;

    let emails = stack.wait_for_emails(1, SECONDS_30).await;
    assert_eq!(emails.len(), 1, "log: {:#?}", worker.lines());
    assert!(emails[0]["subject"]
        .as_str()
        .unwrap_or("")
        .contains("wrapped/pkg"));
    // The mail is in the store a moment before the worker logs it (after the delete).
    let logged = worker
        .wait_for_log(SECONDS_30, |lines| {
            lines.iter().any(|l| l["outcome"] == "sent")
        })
        .await;
    assert!(logged, "a `sent` line: {:#?}", worker.lines());
    assert_eq!(worker.outcomes("sent")[0]["event_id"], event["id"]);

    assert_eq!(worker.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn when_ses_is_unreachable_the_message_is_kept_until_it_reaches_the_dlq_intact() {
    // Port 9 (discard) has no listener: every send fails to connect.
    let Opened { stack, worker, .. } = Opening::new()
        .queue(3, 30)
        .ses("http://127.0.0.1:9")
        .routes(|stack| stack.route("all", &route_pattern(stack, "")))
        .start()
        .await;

    let event = stack.event("unreachable/pkg");
    let body = event.to_string();
    stack.send_raw(&body).await;

    let dead = stack.take(&stack.dlq_url, 1, Duration::from_secs(60)).await;
    assert_eq!(
        dead,
        vec![body],
        "the body reaches the DLQ unchanged; log: {:#?}",
        worker.lines()
    );

    let failed = worker.outcomes("failed");
    assert!(failed.len() >= 3, "one failure per receive: {failed:#?}");
    for line in &failed {
        assert_eq!(line["error.kind"], "transient", "{line}");
        assert_eq!(line["level"], "WARN");
        assert!(
            line["error"]
                .as_str()
                .unwrap_or("")
                .contains("route \"all\""),
            "{line}"
        );
    }
    assert!(worker.outcomes("sent").is_empty());
    assert!(worker.outcomes("filtered").is_empty());
    assert_eq!(stack.depth(&stack.queue_url).await, (0, 0));

    assert_eq!(worker.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_body_that_is_not_json_goes_to_the_dlq_with_one_error_line_and_the_worker_carries_on() {
    let Opened { stack, worker, .. } = Opening::new()
        .routes(|stack| stack.route("all", &route_pattern(stack, "")))
        .start()
        .await;

    stack.send_raw("this is not json {").await;
    let dead = stack.take(&stack.dlq_url, 1, SECONDS_30).await;
    assert_eq!(dead, vec!["this is not json {".to_owned()]);

    let errors: Vec<Value> = worker
        .lines()
        .into_iter()
        .filter(|l| l["level"] == "ERROR")
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "exactly one ERROR line: {:#?}",
        worker.lines()
    );
    for line in &errors {
        assert_eq!(line["outcome"], "failed");
        assert_eq!(line["error.kind"], "permanent");
        assert_eq!(line["error.code"], "invalid_event");
        assert!(
            line["error"]
                .as_str()
                .unwrap_or("")
                .contains("body is not JSON"),
            "{line}"
        );
        assert_eq!(
            line["visible_in_s"], 0,
            "released at once, so it reaches the DLQ fast"
        );
    }

    // The worker is still there and still delivers.
    stack
        .send_raw(&stack.event("after/poison").to_string())
        .await;
    let emails = stack.wait_for_emails(1, SECONDS_30).await;
    assert_eq!(emails.len(), 1, "log: {:#?}", worker.lines());

    assert_eq!(worker.stop().await, Some(0));
}
