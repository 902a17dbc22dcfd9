//! `quilt-notify dlq inspect` and `quilt-notify dlq redrive`: the dead-letter queue runbook's
//! two tools. This module owns the command line and finding the two queues (the configuration's
//! queue and the DLQ its redrive policy names); `inspect` lists the DLQ without consuming it,
//! `redrive` moves its messages back.

mod inspect;
mod redrive;

pub use inspect::InspectArgs;
pub use redrive::{Method, RedriveArgs};

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::adapters::aws::admin::SqsAdmin;
use crate::app;
use crate::config::Settings;

/// Arguments of `quilt-notify dlq`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    /// What to do with the dead-letter queue.
    #[command(subcommand)]
    pub command: DlqCommand,
}

/// The `dlq` sub-commands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List the DLQ's messages without consuming them: message id, event id, bucket, handle,
    /// receive count, when first sent, and why it failed: re-derived from the body with the
    /// current configuration (the worker's log line with the same message_id is the record), or
    /// the error EventBridge recorded when its rule could not deliver the event.
    /// Messages are hidden from other readers while being listed (`--hold-seconds`), then
    /// released.
    Inspect(InspectArgs),
    /// Move the DLQ's messages back to the source queue, for the worker to try again (fix the
    /// cause first). Uses SQS StartMessageMoveTask; if SQS refuses it or the task fails, moves
    /// them by receive, send, delete. Progress on the terminal, a summary at the end; exits 1 if
    /// anything was left behind or sent twice.
    Redrive(RedriveArgs),
}

/// Which queues: the configuration's queue and its DLQ.
#[derive(Debug, Args)]
pub struct Target {
    /// Configuration file (as for `run`): gives the source queue, endpoint and region.
    #[arg(short, long, env = "QUILT_NOTIFY_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The DLQ's URL. Default: the queue's RedrivePolicy `deadLetterTargetArn`.
    #[arg(long, value_name = "URL")]
    pub dlq_url: Option<String>,
}

/// Runs a `dlq` sub-command. Ok(false) when a redrive left messages behind or sent some twice.
///
/// # Errors
/// Invalid configuration, no DLQ to be found, or an SQS call failed.
pub fn run(args: &DlqArgs) -> anyhow::Result<bool> {
    match &args.command {
        DlqCommand::Inspect(inspect) => {
            let settings = Settings::load(inspect.target.config.as_deref())?;
            // Routes and templates only sharpen the WHY column; inspect works without them.
            let compiled = app::compile(&settings).ok();
            super::block_on(inspect::run(inspect, &settings, compiled.as_ref()))
        }
        DlqCommand::Redrive(redrive) => {
            let settings = Settings::load(redrive.target.config.as_deref())?;
            super::block_on(redrive::run(redrive, &settings))
        }
    }
}

/// The source queue and its DLQ.
struct Queues {
    queue_url: String,
    queue_arn: String,
    dlq_url: String,
    dlq_arn: String,
}

/// Connects to SQS as the configuration says and finds the source queue and its DLQ.
async fn connect(settings: &Settings, target: &Target) -> anyhow::Result<(SqsAdmin, Queues)> {
    let sdk = app::sdk_config(settings).await?;
    let sqs = SqsAdmin::new(app::sqs_client(&sdk, settings, &app::skew_watch(settings)));
    let queue_url = settings.queue.url.clone();
    let facts = sqs
        .facts(&queue_url)
        .await
        .with_context(|| format!("reading the queue {queue_url}"))?;
    let (dlq_url, dlq_arn) = match &target.dlq_url {
        Some(url) => {
            let dlq = sqs
                .facts(url)
                .await
                .with_context(|| format!("reading the DLQ {url}"))?;
            (url.clone(), dlq.arn)
        }
        None => {
            let arn = facts.dead_letter_arn.with_context(|| {
                format!("the queue {queue_url} has no redrive policy naming a DLQ: pass --dlq-url")
            })?;
            let url = sqs
                .url_of(&arn)
                .await
                .with_context(|| format!("finding the DLQ {arn}"))?;
            (url, arn)
        }
    };
    if dlq_arn == facts.arn {
        anyhow::bail!("the DLQ {dlq_url} is the queue itself: pass the dead-letter queue's URL");
    }
    let queues = Queues {
        queue_url,
        queue_arn: facts.arn,
        dlq_url,
        dlq_arn,
    };
    Ok((sqs, queues))
}
