//! What an SQS message body can be: a Quilt package event, or SES feedback about a mail sent
//! earlier (both reach the queue through EventBridge rules). One JSON parse decides.

use super::event::{envelope_of, EventError, PackageEvent};
use super::feedback::Feedback;

/// A parsed message body.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A `package-revision` event: route, render, send.
    Package(PackageEvent),
    /// An SES bounce, complaint or delivery delay: count, log, delete.
    Feedback(Feedback),
}

impl Message {
    /// Parses a body: SES events by their `source`, anything else as a package event.
    ///
    /// # Errors
    /// As [`PackageEvent::parse`]: not JSON, not an envelope, or not a package event.
    pub fn parse(body: &str) -> Result<Self, EventError> {
        let envelope = envelope_of(body)?;
        if let Some(feedback) = Feedback::from_envelope(&envelope) {
            return Ok(Self::Feedback(feedback));
        }
        PackageEvent::from_envelope(envelope).map(Self::Package)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_events_and_ses_feedback_are_told_apart() {
        let package = include_str!("../../events/package-revision.json");
        assert!(matches!(Message::parse(package), Ok(Message::Package(_))));
        let bounce = r#"{"source": "aws.ses", "detail-type": "Email Bounced", "detail": {}}"#;
        assert!(matches!(Message::parse(bounce), Ok(Message::Feedback(_))));
        let wrapped = serde_json::json!({"Type": "Notification", "Message": bounce}).to_string();
        assert!(matches!(Message::parse(&wrapped), Ok(Message::Feedback(_))));
        assert!(Message::parse("not json").is_err());
        assert!(
            Message::parse(r#"{"source": "other", "detail-type": "x", "detail": {}}"#).is_err()
        );
    }
}
