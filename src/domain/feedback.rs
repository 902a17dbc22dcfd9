//! SES feedback on the queue: the bounce, complaint and delivery-delay events that SES publishes
//! to EventBridge (source `aws.ses`) and the stack's second rule sends to the same queue. They
//! are not package events: the worker counts and logs them, then deletes them, so they never
//! reach the DLQ as poison.

use serde_json::Value;

/// The `source` of every SES event on EventBridge.
pub const SES_SOURCE: &str = "aws.ses";

/// At most this many recipients are kept from one event (SES's own limit per email is 50).
const MAX_RECIPIENTS: usize = 50;

/// Longest string kept from an event, in characters: the log line stays a line.
const MAX_CHARS: usize = 200;

/// What SES reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FeedbackKind {
    /// `Email Bounced`: the recipient's server refused the mail.
    Bounce,
    /// `Email Complaint Received`: the recipient marked it as spam.
    Complaint,
    /// `Email Delivery Delayed`: SES is still trying.
    DeliveryDelay,
    /// Any other SES event (a rule wider than the stack's): counted, nothing more.
    Other,
}

impl FeedbackKind {
    /// Every kind, in export order.
    pub const ALL: [FeedbackKind; 4] = [
        Self::Bounce,
        Self::Complaint,
        Self::DeliveryDelay,
        Self::Other,
    ];

    /// Stable name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bounce => "bounce",
            Self::Complaint => "complaint",
            Self::DeliveryDelay => "delivery_delay",
            Self::Other => "other",
        }
    }
}

/// One SES event, as much of it as an operator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// What happened.
    pub kind: FeedbackKind,
    /// The EventBridge `detail-type`, e.g. `Email Bounced`.
    pub detail_type: String,
    /// The route that sent the mail (the `route` tag the worker puts on every email).
    pub route: Option<String>,
    /// The package event that caused the mail (the `event_id` tag).
    pub event_id: Option<String>,
    /// SES's message id of the mail.
    pub message_id: Option<String>,
    /// The recipients concerned (bounced, complained, delayed), at most 50.
    pub recipients: Vec<String>,
    /// `bounceType/bounceSubType`, `complaintFeedbackType` or `delayType`, when given.
    pub subtype: Option<String>,
}

impl Feedback {
    /// Reads an EventBridge envelope; None when it is not from SES. Never fails on an SES event:
    /// missing fields are just absent, since the message is deleted either way.
    pub fn from_envelope(envelope: &Value) -> Option<Self> {
        if envelope.get("source").and_then(Value::as_str) != Some(SES_SOURCE) {
            return None;
        }
        let detail_type = text(envelope.get("detail-type")).unwrap_or_default();
        let detail = envelope.get("detail").unwrap_or(&Value::Null);
        let event_type = detail
            .get("eventType")
            .or_else(|| detail.get("notificationType"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = match (detail_type.as_str(), event_type) {
            ("Email Bounced", _) | (_, "Bounce") => FeedbackKind::Bounce,
            ("Email Complaint Received", _) | (_, "Complaint") => FeedbackKind::Complaint,
            ("Email Delivery Delayed", _) | (_, "DeliveryDelay") => FeedbackKind::DeliveryDelay,
            _ => FeedbackKind::Other,
        };
        let (section, list, subtype) = match kind {
            FeedbackKind::Bounce => {
                let bounce = detail.get("bounce");
                let subtype = match (
                    text(bounce.and_then(|b| b.get("bounceType"))),
                    text(bounce.and_then(|b| b.get("bounceSubType"))),
                ) {
                    (Some(kind), Some(sub)) => Some(format!("{kind}/{sub}")),
                    (kind, sub) => kind.or(sub),
                };
                ("bounce", "bouncedRecipients", subtype)
            }
            FeedbackKind::Complaint => (
                "complaint",
                "complainedRecipients",
                text(detail.pointer("/complaint/complaintFeedbackType")),
            ),
            FeedbackKind::DeliveryDelay => (
                "deliveryDelay",
                "delayedRecipients",
                text(detail.pointer("/deliveryDelay/delayType")),
            ),
            FeedbackKind::Other => ("", "", None),
        };
        let recipients = detail
            .get(section)
            .and_then(|s| s.get(list))
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|r| text(r.get("emailAddress")))
                    .take(MAX_RECIPIENTS)
                    .collect()
            })
            .unwrap_or_default();
        let tag = |name: &str| {
            let value = detail.pointer(&format!("/mail/tags/{name}"))?;
            text(value.get(0).or(Some(value)))
        };
        Some(Self {
            kind,
            detail_type,
            route: tag("route"),
            event_id: tag("event_id"),
            message_id: text(detail.pointer("/mail/messageId")),
            recipients,
            subtype,
        })
    }
}

/// A string value, cut to [`MAX_CHARS`].
fn text(value: Option<&Value>) -> Option<String> {
    let s = value?.as_str()?;
    Some(match s.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => s[..end].to_owned(),
        None => s.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An SES bounce as EventBridge delivers it (AWS's documented event record in `detail`).
    fn bounce() -> Value {
        json!({
            "version": "0", "id": "5e5e0e5e-1111-2222-3333-444455556666",
            "detail-type": "Email Bounced", "source": "aws.ses", "account": "123456789012",
            "time": "2026-11-29T10:00:00Z", "region": "us-east-1", "resources": [],
            "detail": {
                "eventType": "Bounce",
                "bounce": {
                    "bounceType": "Permanent", "bounceSubType": "General",
                    "bouncedRecipients": [{"emailAddress": "gone@example.com", "action": "failed",
                                           "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
                    "timestamp": "2026-11-29T10:00:00.000Z", "feedbackId": "0100"
                },
                "mail": {
                    "timestamp": "2026-11-29T09:59:59.000Z", "source": "quilt@example.com",
                    "messageId": "0100-abc", "destination": ["gone@example.com"],
                    "tags": {"route": ["raw-data"], "event_id": ["evt-1"],
                             "ses:configuration-set": ["quilt-notify"]}
                }
            }
        })
    }

    #[test]
    fn a_bounce_names_its_route_recipient_and_type() {
        let feedback = Feedback::from_envelope(&bounce()).expect("an SES event");
        assert_eq!(feedback.kind, FeedbackKind::Bounce);
        assert_eq!(feedback.route.as_deref(), Some("raw-data"));
        assert_eq!(feedback.event_id.as_deref(), Some("evt-1"));
        assert_eq!(feedback.message_id.as_deref(), Some("0100-abc"));
        assert_eq!(feedback.recipients, ["gone@example.com"]);
        assert_eq!(feedback.subtype.as_deref(), Some("Permanent/General"));
    }

    #[test]
    fn complaints_and_delays_are_recognised_too() {
        let complaint = json!({
            "source": "aws.ses", "detail-type": "Email Complaint Received",
            "detail": {"eventType": "Complaint",
                       "complaint": {"complainedRecipients": [{"emailAddress": "a@example.com"}],
                                     "complaintFeedbackType": "abuse"},
                       "mail": {"tags": {"route": ["r"]}}}
        });
        let feedback = Feedback::from_envelope(&complaint).expect("SES");
        assert_eq!(feedback.kind, FeedbackKind::Complaint);
        assert_eq!(feedback.subtype.as_deref(), Some("abuse"));
        assert_eq!(feedback.recipients, ["a@example.com"]);
        let delay = json!({
            "source": "aws.ses", "detail-type": "Email Delivery Delayed",
            "detail": {"eventType": "DeliveryDelay",
                       "deliveryDelay": {"delayType": "MailboxFull",
                                         "delayedRecipients": [{"emailAddress": "b@example.com"}]}}
        });
        let feedback = Feedback::from_envelope(&delay).expect("SES");
        assert_eq!(feedback.kind, FeedbackKind::DeliveryDelay);
        assert_eq!(feedback.route, None, "no tags: the route is unknown");
    }

    #[test]
    fn only_ses_events_are_feedback_and_broken_ones_still_are() {
        let package = json!({"source": "com.quiltdata", "detail-type": "package-revision",
                             "detail": {}});
        assert_eq!(Feedback::from_envelope(&package), None);
        for broken in [
            json!({"source": "aws.ses"}),
            json!({"source": "aws.ses", "detail-type": 7, "detail": "x"}),
            json!({"source": "aws.ses", "detail-type": "Email Bounced",
                   "detail": {"bounce": {"bouncedRecipients": "nobody"},
                              "mail": {"tags": {"route": [{"x": 1}]}}}}),
        ] {
            let feedback = Feedback::from_envelope(&broken).expect("still SES");
            assert!(feedback.recipients.is_empty() && feedback.route.is_none());
        }
    }

    #[test]
    fn hostile_values_are_cut_short() {
        let mut event = bounce();
        event["detail"]["mail"]["tags"]["route"] = json!(["r\r\n".repeat(1000)]);
        let many: Vec<Value> = (0..10_000)
            .map(|i| json!({"emailAddress": format!("u{i}@example.com")}))
            .collect();
        event["detail"]["bounce"]["bouncedRecipients"] = Value::from(many);
        let feedback = Feedback::from_envelope(&event).expect("SES");
        assert_eq!(feedback.route.expect("route").chars().count(), MAX_CHARS);
        assert_eq!(feedback.recipients.len(), MAX_RECIPIENTS);
    }
}
