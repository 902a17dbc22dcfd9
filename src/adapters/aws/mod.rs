//! AWS adapters: the SQS [`Queue`](crate::ports::Queue), the SES v2
//! [`Mailer`](crate::ports::Mailer) and the S3 [`PackageStore`](crate::ports::PackageStore).
//!
//! Also the SQS and EventBridge calls of the operator commands ([`admin`]), and the SQS batch
//! acknowledgements both use (`batch`).
//!
//! Thin by design: translate our port types to SDK calls and SDK errors to our classified errors.
//! Every `aws_sdk_*` type stops here.

pub mod admin;
mod batch;
pub mod dynamodb;
pub mod s3;
pub mod ses;
pub mod skew;
pub mod sqs;

use aws_sdk_sesv2::error::{BuildError, ProvideErrorMetadata, SdkError};

/// How an adapter reports a failed AWS call in its own error type, so that shared helpers
/// (`batch`) answer in their caller's terms. Every service crate re-exports the same
/// `SdkError` and `BuildError`, so one trait serves SQS and EventBridge alike.
trait AwsError: Sized {
    /// The call was sent and failed, or could not be sent.
    fn call<E, R>(operation: &'static str, err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static;

    /// A request or one of its entries could not be built.
    fn build(operation: &'static str, err: BuildError) -> Self;
}

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
