//! SES v2 adapter for the [`Mailer`] port, and the classification of SES errors.

use aws_sdk_sesv2::config::http::HttpResponse;
use aws_sdk_sesv2::config::interceptors::InterceptorContext;
use aws_sdk_sesv2::config::retry::{ClassifyRetry, RetryAction};
use aws_sdk_sesv2::error::{ConnectorError, SdkError};
use aws_sdk_sesv2::types::{
    Body, Content, Destination, EmailContent, ListManagementOptions, Message, MessageTag,
};
use aws_sdk_sesv2::Client;

use super::{describe, error_code};
use crate::ports::{AccountStatus, Email, FailureKind, Mailer, SendError};

/// Sends with SES v2 `SendEmail`, simple content.
#[derive(Debug, Clone)]
pub struct SesMailer {
    client: Client,
    configuration_set: Option<String>,
}

impl SesMailer {
    /// Wraps a client; every email is sent with `configuration_set` when given.
    pub fn new(client: Client, configuration_set: Option<String>) -> Self {
        Self {
            client,
            configuration_set,
        }
    }
}

impl Mailer for SesMailer {
    async fn send(&self, email: &Email) -> Result<String, SendError> {
        let content = |data: &str| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .map_err(|e| invalid(&e))
        };
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(
                Body::builder()
                    .html(content(&email.html)?)
                    .text(content(&email.text)?)
                    .build(),
            )
            .build();
        let tags = email
            .tags
            .iter()
            .map(|(name, value)| {
                MessageTag::builder()
                    .name(tag_text(name))
                    .value(tag_text(value))
                    .build()
                    .map_err(|e| invalid(&e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .send_email()
            .from_email_address(&email.from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(email.to.clone()))
                    .set_cc_addresses(Some(email.cc.clone()))
                    .set_bcc_addresses(Some(email.bcc.clone()))
                    .build(),
            )
            .set_reply_to_addresses((!email.reply_to.is_empty()).then(|| email.reply_to.clone()))
            .content(EmailContent::builder().simple(message).build())
            .set_email_tags(Some(tags))
            .set_configuration_set_name(self.configuration_set.clone())
            .set_list_management_options(list_management(email)?)
            .customize()
            .config_override(
                aws_sdk_sesv2::config::Builder::default().retry_classifier(NoBlindResend),
            )
            .send()
            .await
            .map_err(|e| classify_send(&e))?;
        Ok(output.message_id().unwrap_or_default().to_owned())
    }

    async fn account(&self) -> Result<AccountStatus, SendError> {
        let output = self
            .client
            .get_account()
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(AccountStatus {
            sending_enabled: output.sending_enabled(),
            max_send_rate: output.send_quota().map(|q| q.max_send_rate()),
        })
    }
}

fn invalid(err: &dyn std::fmt::Display) -> SendError {
    SendError {
        kind: FailureKind::Permanent,
        code: "InvalidRequest".to_owned(),
        message: err.to_string(),
    }
}

/// SES tag names and values allow only ASCII letters, digits, `_` and `-`, up to 256 (the
/// `MessageTag` API reference, v1 and v2).
/// The `route` tag is already one (`domain::route::route_tag`, which feedback maps back to its
/// route); this keeps any other value sendable.
fn tag_text(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(256)
        .collect()
}

/// Maps an SES error to what the worker should do. By error code, not by SDK variant, so errors
/// from emulators and proxies that speak the same protocol are classified the same way.
pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> SendError
where
    E: aws_sdk_sesv2::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = error_code(err);
    SendError {
        kind: kind_of(&code, status_of(err)),
        message: describe(err),
        code,
    }
}

/// As [`classify`], for a `SendEmail` that failed: a transient failure after which SES may hold
/// the email is [`FailureKind::Ambiguous`].
fn classify_send<E>(err: &SdkError<E, HttpResponse>) -> SendError
where
    E: aws_sdk_sesv2::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut error = classify(err);
    let status = status_of(err);
    let ambiguous = match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => failure.as_connector_error().is_some_and(went_out),
        SdkError::ServiceError(_) => status.is_some_and(|s| s >= 500),
        _ => false,
    };
    if error.kind == FailureKind::Transient && ambiguous {
        error.kind = FailureKind::Ambiguous;
    }
    error
}

fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    match err {
        SdkError::ServiceError(ctx) => Some(ctx.raw().status().as_u16()),
        _ => None,
    }
}

/// Whether a request that failed in the connector may have reached SES: not when the connection
/// was never made (refused, DNS, connect timeout: hyper's `Connect` error) nor when the request
/// could not be built; otherwise it may have been sent whole before the connection broke.
fn went_out(err: &ConnectorError) -> bool {
    if err.is_user() {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(hyper_util::client::legacy::Error::is_connect)
        {
            return false;
        }
        source = cause.source();
    }
    true
}

/// Keeps the SDK from retrying a `SendEmail` attempt that SES may have accepted (a timeout, a
/// connection lost after sending, a 5xx): SES takes no idempotency key, so a blind retry is a
/// possible duplicate that nobody would count. Such an attempt fails the send at once as
/// [`FailureKind::Ambiguous`]; the worker counts it and retries the message after its backoff.
/// Throttling and connections that never opened are still retried by the SDK.
#[derive(Debug)]
struct NoBlindResend;

impl ClassifyRetry for NoBlindResend {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(error)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        let ambiguous = if error.is_timeout_error() || error.is_response_error() {
            true
        } else if let Some(connector) = error.as_connector_error() {
            went_out(connector)
        } else if error.is_operation_error() {
            ctx.response().is_some_and(|r| r.status().as_u16() >= 500)
        } else {
            false
        };
        if ambiguous {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "NoBlindResend"
    }
}

/// The classification table: see `FailureKind` for what each kind makes the worker do.
pub fn kind_of(code: &str, http_status: Option<u16>) -> FailureKind {
    match code {
        "TooManyRequestsException"
        | "LimitExceededException"
        | "Throttling"
        | "ThrottlingException" => FailureKind::Throttled,
        "AccountSuspendedException" | "SendingPausedException" => FailureKind::AccountPaused,
        "MessageRejected"
        | "BadRequestException"
        | "MailFromDomainNotVerifiedException"
        | "NotFoundException"
        | "InvalidParameterValue"
        | "ConstructionFailure"
        | "InvalidRequest" => FailureKind::Permanent,
        _ => match http_status {
            Some(429) => FailureKind::Throttled,
            Some(400..=499) if !matches!(http_status, Some(403) | Some(408)) => {
                FailureKind::Permanent
            }
            _ => FailureKind::Transient,
        },
    }
}

/// `ListManagementOptions` for an email that belongs to a contact list topic.
fn list_management(email: &Email) -> Result<Option<ListManagementOptions>, SendError> {
    email
        .list
        .as_ref()
        .map(|list| {
            ListManagementOptions::builder()
                .contact_list_name(&list.contact_list)
                .topic_name(&list.topic)
                .build()
                .map_err(|e| invalid(&e))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ses_error_codes_map_to_what_the_worker_does() {
        let table = [
            (
                "TooManyRequestsException",
                Some(429),
                FailureKind::Throttled,
            ),
            ("LimitExceededException", Some(400), FailureKind::Throttled),
            (
                "SendingPausedException",
                Some(400),
                FailureKind::AccountPaused,
            ),
            (
                "AccountSuspendedException",
                Some(400),
                FailureKind::AccountPaused,
            ),
            ("MessageRejected", Some(400), FailureKind::Permanent),
            ("BadRequestException", Some(400), FailureKind::Permanent),
            (
                "MailFromDomainNotVerifiedException",
                Some(400),
                FailureKind::Permanent,
            ),
            ("NotFoundException", Some(404), FailureKind::Permanent),
            ("InternalFailure", Some(500), FailureKind::Transient),
            ("ServiceUnavailable", Some(503), FailureKind::Transient),
            ("DispatchFailure", None, FailureKind::Transient),
            ("Timeout", None, FailureKind::Transient),
            ("ResponseError", None, FailureKind::Transient),
            ("Unknown", Some(429), FailureKind::Throttled),
            ("Unknown", Some(403), FailureKind::Transient),
            ("Unknown", Some(422), FailureKind::Permanent),
        ];
        for (code, status, kind) in table {
            assert_eq!(kind_of(code, status), kind, "{code} {status:?}");
        }
    }

    #[test]
    fn tags_keep_only_characters_ses_allows() {
        assert_eq!(tag_text("package-created"), "package-created");
        assert_eq!(tag_text("a b/c<d>é"), "a_b_c_d__");
        assert_eq!(tag_text("ops@example.com"), "ops_example_com");
        assert_eq!(tag_text(&"x".repeat(300)).len(), 256);
    }
}
