//! S3 adapter for the [`PackageStore`] port, and the classification of S3 errors.

use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::Client;

use super::{describe, error_code};
use crate::ports::{ByteRange, ObjectRef, PackageStore, ReadSink, StoreError, StoreFailureKind};

/// Longest wait for the next piece of a body. The client's timeouts end at the response's
/// headers and stalled-stream protection is off (see `app::sdk_config`), so without this a
/// stalled body would hold its message, heartbeat and all, forever.
const BODY_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads with S3 `GetObject` and `ListObjectsV2`.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
}

impl S3Store {
    /// Wraps a client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// `GetObject`, with a `Range` header when given, its body handed to `sink`.
    async fn get(
        &self,
        object: &ObjectRef,
        range: Option<String>,
        sink: &mut dyn ReadSink,
    ) -> Result<(), StoreError> {
        let failed = |code: String, message: String, kind| StoreError {
            kind,
            operation: "GetObject",
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            code,
            message,
        };
        let output = self
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version.clone())
            .set_range(range)
            .send()
            .await
            .map_err(|e| {
                let (code, message, kind) = classify(&e);
                failed(code, message, kind)
            })?;
        let size = output.content_length().and_then(|n| u64::try_from(n).ok());
        if size.is_some_and(|n| !sink.size(n)) {
            // Dropping the body closes the connection: nothing more is read.
            return Ok(());
        }
        let mut body = output.body;
        loop {
            let Ok(next) = tokio::time::timeout(BODY_CHUNK_TIMEOUT, body.try_next()).await else {
                return Err(failed(
                    "BodyReadTimeout".to_owned(),
                    format!("no body bytes for {} s", BODY_CHUNK_TIMEOUT.as_secs()),
                    StoreFailureKind::Transient,
                ));
            };
            match next {
                Ok(Some(chunk)) => {
                    if !sink.chunk(&chunk) {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                // The connection broke mid-body: reading again may well work.
                Err(e) => {
                    return Err(failed(
                        "BodyReadFailed".to_owned(),
                        describe(&e),
                        StoreFailureKind::Transient,
                    ))
                }
            }
        }
    }
}

impl PackageStore for S3Store {
    async fn read(
        &self,
        object: &ObjectRef,
        max_bytes: Option<u64>,
        sink: &mut dyn ReadSink,
    ) -> Result<(), StoreError> {
        let range = max_bytes.map(|n| format!("bytes=0-{}", n.saturating_sub(1)));
        self.get(object, range, sink).await
    }

    /// One `GetObject` with a `Range` header (`bytes=START-LAST`, or `bytes=-N` for a suffix).
    /// S3 answers a range that starts past the end, and any range of an empty object, with
    /// 416 `InvalidRange`: here that is no bytes. An empty range sends nothing.
    async fn read_range(
        &self,
        object: &ObjectRef,
        range: ByteRange,
        sink: &mut dyn ReadSink,
    ) -> Result<(), StoreError> {
        let header = match range {
            ByteRange::Span { start, end } if end > start => {
                format!("bytes={start}-{}", end - 1)
            }
            ByteRange::Suffix(n) if n > 0 => format!("bytes=-{n}"),
            ByteRange::Span { .. } | ByteRange::Suffix(_) => {
                sink.size(0);
                return Ok(());
            }
        };
        match self.get(object, Some(header), sink).await {
            Err(e) if e.code == "InvalidRange" => {
                sink.size(0);
                Ok(())
            }
            other => other,
        }
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        max_keys: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                let (code, message, kind) = classify(&e);
                StoreError {
                    kind,
                    operation: "ListObjectsV2",
                    bucket: bucket.to_owned(),
                    key: prefix.to_owned(),
                    code,
                    message,
                }
            })?;
            for object in page.contents() {
                if keys.len() >= max_keys {
                    return Ok(keys);
                }
                if let Some(key) = object.key() {
                    keys.push(key.to_owned());
                }
            }
        }
        Ok(keys)
    }
}

/// Maps an S3 error to what the worker does about it: by error code and HTTP status, so that
/// emulators and proxies speaking the same protocol are classified alike.
fn classify<E>(err: &SdkError<E, HttpResponse>) -> (String, String, StoreFailureKind)
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = error_code(err);
    let status = match err {
        SdkError::ServiceError(ctx) => Some(ctx.raw().status().as_u16()),
        // A HEAD-like answer without a body has no code: its status still says what it was.
        SdkError::ResponseError(ctx) => Some(ctx.raw().status().as_u16()),
        _ => None,
    };
    let kind = kind_of(&code, status);
    // The service's own sentence ("Access Denied") when it sent one: this text reaches emails
    // (`package.error`), where the SDK's debug rendering would not belong.
    let message = err
        .message()
        .filter(|m| !m.is_empty())
        .map_or_else(|| describe(err), str::to_owned);
    (code, message, kind)
}

/// The classification table.
pub fn kind_of(code: &str, http_status: Option<u16>) -> StoreFailureKind {
    match code {
        "SlowDown"
        | "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequests"
        | "TooManyRequestsException"
        | "RequestTimeout"
        | "InternalError"
        | "ServiceUnavailable"
        | "Timeout"
        | "DispatchFailure"
        | "ResponseError" => StoreFailureKind::Transient,
        "NoSuchKey" | "NoSuchBucket" | "NoSuchVersion" | "NotFound" => StoreFailureKind::Missing,
        "AccessDenied"
        | "Forbidden"
        | "AllAccessDisabled"
        | "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken" => StoreFailureKind::Denied,
        _ => match http_status {
            Some(429 | 500..=599) => StoreFailureKind::Transient,
            Some(404) => StoreFailureKind::Missing,
            Some(403) => StoreFailureKind::Denied,
            _ => StoreFailureKind::Other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_code_then_status() {
        let table = [
            ("SlowDown", None, StoreFailureKind::Transient),
            ("InternalError", Some(500), StoreFailureKind::Transient),
            ("Timeout", None, StoreFailureKind::Transient),
            ("DispatchFailure", None, StoreFailureKind::Transient),
            ("NoSuchKey", Some(404), StoreFailureKind::Missing),
            ("NoSuchBucket", Some(404), StoreFailureKind::Missing),
            ("AccessDenied", Some(403), StoreFailureKind::Denied),
            ("Unknown", Some(503), StoreFailureKind::Transient),
            ("Unknown", Some(404), StoreFailureKind::Missing),
            ("Unknown", Some(403), StoreFailureKind::Denied),
            ("InvalidRange", Some(416), StoreFailureKind::Other),
        ];
        for (code, status, kind) in table {
            assert_eq!(kind_of(code, status), kind, "{code} {status:?}");
        }
    }
}
