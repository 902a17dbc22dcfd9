//! SES feedback on the queue, end to end: bounces, complaints and delivery delays (as SES
//! publishes them to EventBridge, which the stack's `FeedbackRule` sends to the queue) are
//! counted per route, logged and deleted by the real worker; none reaches the DLQ as poison.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::proxy::SesProxy;
use crate::support::{eventually, free_port, Opened, Opening, TestStack};

/// A route pattern for every event from Quilt in this stack's bucket (SES feedback has another
/// source, so only the queue, not the route, lets it in).
fn bucket_pattern(stack: &TestStack) -> Value {
    json!({"source": ["com.quiltdata"], "detail": {"bucket": [stack.bucket]}})
}

const WITHIN: Duration = Duration::from_secs(30);

/// An SES event record as EventBridge delivers it, about a mail the worker tagged `route`.
fn ses_event(detail_type: &str, route: &str, recipient: &str) -> String {
    let (event_type, section, list) = match detail_type {
        "Email Bounced" => ("Bounce", "bounce", "bouncedRecipients"),
        "Email Complaint Received" => ("Complaint", "complaint", "complainedRecipients"),
        _ => ("DeliveryDelay", "deliveryDelay", "delayedRecipients"),
    };
    let mut detail = json!({
        "eventType": event_type,
        "mail": {"timestamp": "2026-11-29T10:00:00.000Z", "source": "quilt@example.com",
                 "messageId": crate::support::unique("ses"), "destination": [recipient],
                 "tags": {"route": [route], "event_id": [crate::support::unique("evt")],
                          "ses:configuration-set": ["quilt-notify-mail"]}}
    });
    detail[section] = json!({list: [{"emailAddress": recipient}], "bounceType": "Permanent",
                             "bounceSubType": "General", "complaintFeedbackType": "abuse",
                             "delayType": "MailboxFull"});
    json!({
        "version": "0", "id": crate::support::unique("eb"), "detail-type": detail_type,
        "source": "aws.ses", "account": "000000000000", "time": "2026-11-29T10:00:01Z",
        "region": "us-east-1", "resources": [], "detail": detail
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn ses_feedback_is_counted_per_route_logged_and_deleted_never_dead_lettered() {
    // maxReceiveCount 1: anything the worker took for poison would be in the DLQ at once.
    let health = free_port();
    let Opened {
        stack, mut worker, ..
    } = Opening::new()
        .queue(1, 30)
        .routes(|stack| stack.route("deliver", &bucket_pattern(stack)))
        .extra(&format!(
            "[health]\nlisten = \"127.0.0.1:{health}\"\n[metrics]\nemf_interval_seconds = 1\n"
        ))
        .start()
        .await;

    let bodies = vec![
        ses_event("Email Bounced", "deliver", "gone@example.com"),
        ses_event("Email Bounced", "deliver", "left@example.com"),
        ses_event("Email Complaint Received", "deliver", "angry@example.com"),
        ses_event(
            "Email Delivery Delayed",
            "no-such-route",
            "full@example.com",
        ),
        stack.event("team/data").to_string(),
    ];
    stack.send_batch(&stack.queue_url, &bodies).await;

    let emails = stack.wait_for_emails(1, WITHIN).await;
    assert_eq!(
        emails.len(),
        1,
        "the package event still mails: {:#?}",
        worker.lines()
    );
    let settled = worker
        .wait_for_log(WITHIN, |lines| {
            lines.iter().filter(|l| l["outcome"].is_string()).count() >= 5
        })
        .await;
    assert!(settled, "{:#?}", worker.lines());
    let feedback = worker.outcomes("feedback");
    assert_eq!(feedback.len(), 4, "{:#?}", worker.lines());
    let drained = eventually(WITHIN, || async {
        stack.depth(&stack.queue_url).await == (0, 0)
    })
    .await;
    assert!(drained, "all five deleted");
    assert_eq!(
        stack.depth(&stack.dlq_url).await,
        (0, 0),
        "nothing dead-lettered"
    );

    // One line each, naming the route and the recipient; bounces and complaints are WARN.
    let lines = worker.lines();
    let about =
        |kind: &str| -> Vec<&Value> { lines.iter().filter(|l| l["feedback"] == kind).collect() };
    assert_eq!(about("bounce").len(), 2);
    assert!(about("bounce")
        .iter()
        .all(|l| l["level"] == "WARN" && l["route"] == "deliver"));
    assert!(about("bounce")
        .iter()
        .any(|l| l["recipients"] == "gone@example.com"));
    assert_eq!(about("bounce")[0]["subtype"], "Permanent/General");
    assert_eq!(about("complaint")[0]["recipients"], "angry@example.com");
    assert_eq!(about("delivery_delay")[0]["level"], "INFO");

    let text = reqwest::get(format!("http://127.0.0.1:{health}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        "quilt_notify_feedback_total 4",
        "quilt_notify_feedback_by_route_total{route=\"deliver\",type=\"bounce\"} 2",
        "quilt_notify_feedback_by_route_total{route=\"deliver\",type=\"complaint\"} 1",
        "quilt_notify_feedback_by_route_total{route=\"(unknown)\",type=\"delivery_delay\"} 1",
        "quilt_notify_sent_total 1",
        "quilt_notify_failed_permanent_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }

    // EMF: per-route lines with the Route dimension add up to the same.
    assert_eq!(worker.terminate().await, Some(0));
    let emf: Vec<Value> = worker
        .lines()
        .into_iter()
        .filter(|l| l.get("_aws").is_some() && l["Route"] == "deliver")
        .collect();
    let total = |name: &str| emf.iter().filter_map(|l| l[name].as_u64()).sum::<u64>();
    assert_eq!((total("Bounces"), total("Complaints")), (2, 1), "{emf:#?}");
    assert_eq!(
        emf[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Queue", "Route"]])
    );
}

/// The `route` tag of the mail the worker asked SES to send (as the proxy saw it).
fn route_tag(request: &Value) -> Option<String> {
    request["EmailTags"]
        .as_array()?
        .iter()
        .find(|t| t["Name"] == "route")
        .and_then(|t| t["Value"].as_str())
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn feedback_finds_a_route_whose_name_ses_tags_cannot_carry() {
    // SES tag values allow only letters, digits, `_` and `-`: this name needs the route's tag to
    // map back to it, or its bounces count as "(unknown)".
    const NAME: &str = "Data team / weekly (é)";
    let proxy = SesProxy::in_front_of_ses(7).await;
    let health = free_port();
    let Opened { stack, worker, .. } = Opening::new()
        .ses(&proxy.url)
        .routes(|stack| stack.route(NAME, &bucket_pattern(stack)))
        .extra(&format!("[health]\nlisten = \"127.0.0.1:{health}\"\n"))
        .start()
        .await;
    stack
        .send_batch(&stack.queue_url, &[stack.event("team/data").to_string()])
        .await;
    let emails = stack.wait_for_emails(1, WITHIN).await;
    assert_eq!(emails.len(), 1, "{:#?}", worker.lines());
    let requests = proxy.send_requests();
    let tag = route_tag(&requests[0]).expect("a route tag");
    assert!(
        tag.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "only what SES allows: {tag}"
    );

    // SES publishes the bounce with the mail's tags as it sent them.
    stack
        .send_batch(
            &stack.queue_url,
            &[ses_event("Email Bounced", &tag, "gone@example.com")],
        )
        .await;
    let counted = worker
        .wait_for_log(WITHIN, |lines| {
            lines.iter().any(|l| l["outcome"] == "feedback")
        })
        .await;
    assert!(counted, "{:#?}", worker.lines());
    let bounce: Vec<Value> = worker
        .lines()
        .into_iter()
        .filter(|l| l["feedback"] == "bounce")
        .collect();
    assert_eq!(bounce.len(), 1, "{:#?}", worker.lines());
    assert_eq!(bounce[0]["route"], NAME, "tag {tag}");
    let text = reqwest::get(format!("http://127.0.0.1:{health}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let line =
        format!("quilt_notify_feedback_by_route_total{{route=\"{NAME}\",type=\"bounce\"}} 1");
    assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    assert_eq!(worker.stop().await, Some(0));
}
