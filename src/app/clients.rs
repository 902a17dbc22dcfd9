//! The AWS clients, built the same way for every command (so `run`, `send-test-event`, `dlq` and
//! `state` reach the same endpoints with the same region, timeouts and clock-skew watch), and
//! the state store with its item lifetime.

use std::sync::Arc;
use std::time::Duration;

use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sesv2::config::timeout::TimeoutConfig;

use crate::adapters::aws::admin::sqs::SqsAdmin;
use crate::adapters::aws::dynamodb::DynamoTable;
use crate::adapters::aws::skew::SkewWatch;
use crate::config::{ClaimTtl, DlqRetention, Settings};
use crate::worker::state::{StateOptions, StateStore};

/// Loads the AWS SDK configuration (credentials, region) from the standard chain, with
/// `aws.region` on top. Every command that talks to AWS starts here.
///
/// Stalled-stream protection is off: it times every body chunk of every request, and each
/// client already bounds every attempt with a timeout (`sqs_client`, `ses_client`), which also
/// ends a stalled stream.
///
/// # Errors
/// No region anywhere in the chain.
pub async fn sdk_config(settings: &Settings) -> anyhow::Result<SdkConfig> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
    if let Some(region) = &settings.aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        anyhow::bail!("no AWS region: set `aws.region`, QUILT_NOTIFY__AWS__REGION or AWS_REGION");
    }
    Ok(sdk)
}

/// The clock-skew watch of a command that exports no metrics: it only warns. The daemon's
/// records into its metrics (`App::build`).
pub fn skew_watch(settings: &Settings) -> Arc<SkewWatch> {
    SkewWatch::new(
        settings.state.max_clock_skew(),
        Arc::new(crate::telemetry::metrics::Metrics::default()),
    )
}

/// An SQS client for `queue.endpoint_url`, with attempts long enough for the configured long
/// poll. Every client's answers feed `skew`.
pub fn sqs_client(
    sdk: &SdkConfig,
    settings: &Settings,
    skew: &Arc<SkewWatch>,
) -> aws_sdk_sqs::Client {
    let wait = u64::from(settings.queue.wait_time_seconds);
    let mut config = aws_sdk_sqs::config::Builder::from(sdk);
    config.set_endpoint_url(settings.queue.endpoint_url.clone());
    let config = config
        .timeout_config(timeouts(wait + 10, None))
        .interceptor(skew.interceptor())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// An SES v2 client for `ses.endpoint_url`.
pub fn ses_client(
    sdk: &SdkConfig,
    settings: &Settings,
    skew: &Arc<SkewWatch>,
) -> aws_sdk_sesv2::Client {
    let mut config = aws_sdk_sesv2::config::Builder::from(sdk);
    config.set_endpoint_url(settings.ses.endpoint_url.clone());
    let config = config
        .timeout_config(timeouts(10, Some(30)))
        .interceptor(skew.interceptor())
        .build();
    aws_sdk_sesv2::Client::from_conf(config)
}

/// An S3 client for `s3.endpoint_url`, path-style when an endpoint is set (LocalStack and most
/// S3-compatible stores do not resolve bucket sub-domains).
pub fn s3_client(
    sdk: &SdkConfig,
    settings: &Settings,
    skew: &Arc<SkewWatch>,
) -> aws_sdk_s3::Client {
    let mut config = aws_sdk_s3::config::Builder::from(sdk);
    config.set_endpoint_url(settings.s3.endpoint_url.clone());
    let config = config
        .force_path_style(settings.s3.endpoint_url.is_some())
        .timeout_config(timeouts(10, None))
        .interceptor(skew.interceptor())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A DynamoDB client for `state.endpoint_url`.
pub fn dynamodb_client(
    sdk: &SdkConfig,
    settings: &Settings,
    skew: &Arc<SkewWatch>,
) -> aws_sdk_dynamodb::Client {
    let mut config = aws_sdk_dynamodb::config::Builder::from(sdk);
    config.set_endpoint_url(settings.state.endpoint_url.clone());
    let config = config
        .timeout_config(timeouts(5, Some(20)))
        .interceptor(skew.interceptor())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// The shared state table of `state.table`, when set, whose items live `ttl` (see
/// [`claim_ttl`]) and whose leases count as ended only after the allowed clock skew.
pub fn state_store(
    sdk: &SdkConfig,
    settings: &Settings,
    ttl: Duration,
    skew: &Arc<SkewWatch>,
) -> Option<StateStore> {
    let table = settings.state.table.as_ref()?;
    let options = StateOptions {
        ttl,
        skew_margin: settings.state.max_clock_skew(),
        batch_writes: settings.state.batch_writes,
    };
    let table = DynamoTable::new(dynamodb_client(sdk, settings, skew), table.clone());
    Some(StateStore::new(Arc::new(table), options))
}

/// How long the DLQ lookup may take at start-up before the configured retention stands in.
const DLQ_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long claims live: `state.ttl_days`, or a day longer than the queue's DLQ keeps messages,
/// read from SQS (or `state.dlq_retention_days` when it cannot be; see
/// [`StateSettings::claim_ttl`](crate::config::StateSettings::claim_ttl)).
pub async fn claim_ttl(sdk: &SdkConfig, settings: &Settings, skew: &Arc<SkewWatch>) -> ClaimTtl {
    let lookup = dlq_retention(sdk, settings, skew);
    let dlq = match tokio::time::timeout(DLQ_LOOKUP_TIMEOUT, lookup).await {
        Ok(found) => found,
        Err(_) => Err(format!(
            "no answer within {} s",
            DLQ_LOOKUP_TIMEOUT.as_secs()
        )),
    };
    settings.state.claim_ttl(dlq)
}

/// The retention of the queue's DLQ: its RedrivePolicy names the DLQ's ARN, GetQueueUrl finds
/// it, GetQueueAttributes says how long it keeps messages.
async fn dlq_retention(
    sdk: &SdkConfig,
    settings: &Settings,
    skew: &Arc<SkewWatch>,
) -> Result<DlqRetention, String> {
    let sqs = SqsAdmin::new(sqs_client(sdk, settings, skew));
    let facts = sqs
        .facts(&settings.queue.url)
        .await
        .map_err(|e| e.to_string())?;
    let arn = facts
        .dead_letter_arn
        .ok_or_else(|| "the queue has no redrive policy naming a DLQ".to_owned())?;
    let url = sqs.url_of(&arn).await.map_err(|e| e.to_string())?;
    let seconds = sqs
        .retention_seconds(&url)
        .await
        .map_err(|e| e.to_string())?;
    Ok(DlqRetention {
        queue: arn.rsplit(':').next().unwrap_or(&arn).to_owned(),
        seconds,
    })
}

/// An EventBridge client for `events.endpoint_url` (only `send-test-event` uses one).
pub fn events_client(
    sdk: &SdkConfig,
    settings: &Settings,
    skew: &Arc<SkewWatch>,
) -> aws_sdk_eventbridge::Client {
    let mut config = aws_sdk_eventbridge::config::Builder::from(sdk);
    config.set_endpoint_url(settings.events.endpoint_url.clone());
    let config = config
        .timeout_config(timeouts(10, None))
        .interceptor(skew.interceptor())
        .build();
    aws_sdk_eventbridge::Client::from_conf(config)
}

/// Every client connects within 5 s and bounds each attempt (and, when given, the whole call
/// with its retries). These timeouts also end a stalled stream (see `sdk_config`).
fn timeouts(attempt_seconds: u64, operation_seconds: Option<u64>) -> TimeoutConfig {
    let mut builder = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(attempt_seconds));
    if let Some(seconds) = operation_seconds {
        builder = builder.operation_timeout(Duration::from_secs(seconds));
    }
    builder.build()
}
