//! The `package-revision` event: parsing an SQS message body into the EventBridge envelope.
//!
//! Accepts the envelope as an EventBridge → SQS target delivers it, or wrapped in an SNS
//! notification (`{"Type": "Notification", "Message": "<envelope as a string>"}`). Anything else
//! is a [`EventError`]: retrying cannot fix a body, so callers treat it as permanent.

use serde_json::Value;

use crate::domain::json_kind;

/// A parsed event: the whole envelope (for pattern matching and templates) and the fields that
/// every email needs, checked once here.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageEvent {
    envelope: Value,
    id: String,
    time: String,
    kind: String,
    bucket: String,
    handle: String,
    top_hash: String,
}

/// Why a message body is not a usable event.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum EventError {
    /// The body (or the SNS `Message`) is not JSON.
    #[error("{what} is not JSON: {reason}")]
    NotJson {
        /// "body" or "SNS Message".
        what: &'static str,
        /// The parser's message, with line and column.
        reason: String,
    },
    /// The JSON is not an EventBridge envelope.
    #[error("not an EventBridge event: {0}")]
    NotAnEnvelope(String),
    /// A field every package event has is missing or has the wrong type.
    #[error("not a package-revision event: `{path}` {problem}")]
    BadField {
        /// Dotted path, e.g. `detail.handle`.
        path: &'static str,
        /// "is missing" or "must be a string".
        problem: &'static str,
    },
}

impl PackageEvent {
    /// Parses an SQS message body.
    ///
    /// # Errors
    /// The body is not JSON, not an envelope (direct or SNS-wrapped), or lacks one of `id`,
    /// `time`, `detail.type`, `detail.bucket`, `detail.handle`, `detail.topHash` as strings.
    pub fn parse(body: &str) -> Result<Self, EventError> {
        Self::from_envelope(envelope_of(body)?)
    }

    /// Builds an event from an envelope already parsed.
    ///
    /// # Errors
    /// As [`PackageEvent::parse`], for the envelope checks.
    pub fn from_envelope(envelope: Value) -> Result<Self, EventError> {
        let Some(object) = envelope.as_object() else {
            return Err(EventError::NotAnEnvelope(format!(
                "expected a JSON object, found {}",
                json_kind(&envelope)
            )));
        };
        if !object.contains_key("detail-type") || !object.contains_key("source") {
            return Err(EventError::NotAnEnvelope(
                "`source` and `detail-type` are missing".to_owned(),
            ));
        }
        if !object.get("detail").is_some_and(Value::is_object) {
            return Err(EventError::NotAnEnvelope(
                "`detail` is missing or not an object".to_owned(),
            ));
        }
        Ok(Self {
            id: string_at(&envelope, "id", &["id"])?,
            time: string_at(&envelope, "time", &["time"])?,
            kind: string_at(&envelope, "detail.type", &["detail", "type"])?,
            bucket: string_at(&envelope, "detail.bucket", &["detail", "bucket"])?,
            handle: string_at(&envelope, "detail.handle", &["detail", "handle"])?,
            top_hash: string_at(&envelope, "detail.topHash", &["detail", "topHash"])?,
            envelope,
        })
    }

    /// The whole EventBridge envelope.
    pub fn envelope(&self) -> &Value {
        &self.envelope
    }

    /// EventBridge's event id: the idempotency key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// When the revision happened (RFC 3339, as EventBridge sends it).
    pub fn time(&self) -> &str {
        &self.time
    }

    /// [`time`](Self::time) as an instant, when it is valid RFC 3339 (as jiff reads it: also
    /// RFC 9557 and ISO 8601's other forms of an instant, as the digest entries' times are read).
    pub fn timestamp(&self) -> Option<std::time::SystemTime> {
        self.time
            .parse::<jiff::Timestamp>()
            .ok()
            .map(std::time::SystemTime::from)
    }

    /// `detail.type`, e.g. `created`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The S3 bucket of the package.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The package name, `namespace/name`.
    pub fn handle(&self) -> &str {
        &self.handle
    }

    /// The package revision's top hash.
    pub fn top_hash(&self) -> &str {
        &self.top_hash
    }
}

/// An SNS notification carries the envelope as a JSON string in `Message`; unwrap it once.
/// The EventBridge envelope in a message body: the body itself, or the `Message` of an SNS
/// notification.
///
/// # Errors
/// The body (or the SNS `Message`) is not JSON.
pub(crate) fn envelope_of(body: &str) -> Result<Value, EventError> {
    let value: Value = serde_json::from_str(body).map_err(|e| EventError::NotJson {
        what: "body",
        reason: e.to_string(),
    })?;
    unwrap_sns(value)
}

fn unwrap_sns(value: Value) -> Result<Value, EventError> {
    let is_sns = value.get("Type").and_then(Value::as_str) == Some("Notification")
        && value.get("Message").is_some();
    if !is_sns {
        return Ok(value);
    }
    let Some(message) = value.get("Message").and_then(Value::as_str) else {
        return Err(EventError::NotAnEnvelope(
            "SNS notification whose `Message` is not a string".to_owned(),
        ));
    };
    serde_json::from_str(message).map_err(|e| EventError::NotJson {
        what: "SNS Message",
        reason: e.to_string(),
    })
}

fn string_at(value: &Value, path: &'static str, keys: &[&str]) -> Result<String, EventError> {
    let found = keys.iter().try_fold(value, |v, key| v.get(key));
    match found {
        None | Some(Value::Null) => Err(EventError::BadField {
            path,
            problem: "is missing",
        }),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(EventError::BadField {
            path,
            problem: "must be a string",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENTED: &str = include_str!("../../events/package-revision.json");

    #[test]
    fn parses_the_documented_event() {
        let event = PackageEvent::parse(DOCUMENTED).expect("parses");
        assert_eq!(event.id(), "6425eb6a-9627-e6a1-2ae8-9d2d8883dc74");
        assert_eq!(event.time(), "2024-04-25T14:46:51Z");
        assert_eq!(event.kind(), "created");
        assert_eq!(event.bucket(), "example");
        assert_eq!(event.handle(), "some/package");
        assert_eq!(
            event.top_hash(),
            "a0fddace2eb2fd91faa697d237a5dbdcfa77f0fd38ca8b4c850dbd93d142ee69"
        );
        assert_eq!(event.envelope()["detail-type"], "package-revision");
    }

    #[test]
    fn the_event_time_is_read_as_an_instant() {
        let event = PackageEvent::parse(DOCUMENTED).expect("parses");
        let at = event.timestamp().expect("valid time");
        let unix = at
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        assert_eq!(unix, 1_714_056_411);
        // RFC 3339 with an offset and a fraction of a second is the same instant.
        let offset = PackageEvent::parse(
            &DOCUMENTED.replace("2024-04-25T14:46:51Z", "2024-04-25T16:46:51.250+02:00"),
        )
        .expect("parses");
        let at = offset.timestamp().expect("valid time");
        let since = at
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970");
        assert_eq!(
            (since.as_secs(), since.subsec_millis()),
            (1_714_056_411, 250)
        );
        let odd = PackageEvent::parse(&DOCUMENTED.replace("2024-04-25T14:46:51Z", "yesterday"))
            .expect("parses");
        assert_eq!(odd.timestamp(), None);
    }

    #[test]
    fn unwraps_an_sns_notification() {
        let sns = serde_json::json!({
            "Type": "Notification",
            "MessageId": "m-1",
            "TopicArn": "arn:aws:sns:us-east-1:012345678901:quilt",
            "Message": DOCUMENTED,
        });
        let event = PackageEvent::parse(&sns.to_string()).expect("parses");
        assert_eq!(event.handle(), "some/package");
        assert_eq!(event, PackageEvent::parse(DOCUMENTED).expect("parses"));
    }

    #[test]
    fn rejects_with_a_reason_that_says_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("not json", "body is not JSON"),
            ("{\"id\": ", "body is not JSON"),
            ("[1, 2]", "expected a JSON object, found an array"),
            ("\"text\"", "found a string"),
            ("{}", "`source` and `detail-type` are missing"),
            (
                r#"{"source":"s","detail-type":"d","id":"1","time":"t","detail":"x"}"#,
                "`detail` is missing or not an object",
            ),
            (
                r#"{"Type":"Notification","Message":"garbage"}"#,
                "SNS Message is not JSON",
            ),
            (
                r#"{"Type":"Notification","Message":{"a":1}}"#,
                "`Message` is not a string",
            ),
            (
                r#"{"source":"s","detail-type":"d","id":"1","time":"t","detail":{"type":"created","bucket":"b","topHash":"h"}}"#,
                "`detail.handle` is missing",
            ),
            (
                r#"{"source":"s","detail-type":"d","id":"1","time":"t","detail":{"type":"created","bucket":"b","handle":7,"topHash":"h"}}"#,
                "`detail.handle` must be a string",
            ),
            (
                r#"{"source":"s","detail-type":"d","time":"t","detail":{"type":"created","bucket":"b","handle":"h","topHash":"h"}}"#,
                "`id` is missing",
            ),
        ];
        for (body, expected) in cases {
            let err = PackageEvent::parse(body).expect_err(body);
            assert!(
                err.to_string().contains(expected),
                "{body}: got {err}, want {expected}"
            );
        }
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
        let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            PackageEvent::parse(&body),
            Err(EventError::NotJson { .. })
        ));
    }

    #[test]
    fn hostile_strings_are_kept_verbatim_for_escaping_later() {
        let body = DOCUMENTED.replace("some/package", "<script>x</script>\\r\\nBcc: a@b");
        let event = PackageEvent::parse(&body).expect("parses");
        assert_eq!(event.handle(), "<script>x</script>\r\nBcc: a@b");
    }
}
