//! AWS adapters: the SQS [`Queue`](crate::ports::Queue) and SES v2 [`Mailer`](crate::ports::Mailer).
//!
//! Also the SQS and EventBridge calls of the operator commands ([`admin`]).
//!
//! Thin by design: translate our port types to SDK calls and SDK errors to our classified errors.
//! Every `aws_sdk_*` type stops here.

pub mod admin;
pub mod ses;
pub mod sqs;

use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};

/// The service's error code, or a short name for failures that never reached the service.
fn error_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> String {
    match err {
        SdkError::ConstructionFailure(_) => "ConstructionFailure".to_owned(),
        SdkError::TimeoutError(_) => "Timeout".to_owned(),
        SdkError::DispatchFailure(_) => "DispatchFailure".to_owned(),
        SdkError::ResponseError(_) => "ResponseError".to_owned(),
        _ => err.code().unwrap_or("Unknown").to_owned(),
    }
}

/// The error with its whole source chain on one line (the SDK's Display alone says only
/// "dispatch failure").
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
