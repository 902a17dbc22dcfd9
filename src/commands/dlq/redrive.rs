//! `quilt-notify dlq redrive`: moves the DLQ's messages back to the source queue with SQS
//! `StartMessageMoveTask`, and when that is refused or the task ends FAILED (as on some
//! emulators), by hand: receive from the DLQ, send the same body to the queue, delete from the
//! DLQ. Whether to fall back is decided by [`next`], apart from the calls, so it can be tested
//! for every method and every way the task can end.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::{Queues, Target};
use crate::adapters::aws::admin::{MoveTaskStatus, SqsAdmin};
use crate::config::Settings;

/// How `redrive` moves messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// StartMessageMoveTask, falling back to moving by hand if it is refused or fails.
    Auto,
    /// StartMessageMoveTask only.
    Task,
    /// Receive, send, delete only.
    Manual,
}

/// Arguments of `quilt-notify dlq redrive`.
#[derive(Debug, Args)]
pub struct RedriveArgs {
    /// Which queues.
    #[command(flatten)]
    pub target: Target,
    /// How to move the messages.
    #[arg(long, value_enum, default_value_t = Method::Auto)]
    pub method: Method,
    /// Seconds to wait for a move task to finish (it goes on in SQS after that).
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub timeout: u64,
    /// Move at most this many messages by hand (default: as many as the DLQ held at the start,
    /// so messages that fail again and return meanwhile are not moved in a loop).
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
}

/// A progress line on stderr, redrawn in place; silent when stderr is not a terminal.
struct Progress {
    on: bool,
    drawn: bool,
}

impl Progress {
    fn new() -> Self {
        Self {
            on: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    fn show(&mut self, text: &str) {
        if self.on {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{text}\x1b[K");
            let _ = err.flush();
            self.drawn = true;
        }
    }

    fn done(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

/// How a move task ended, with about how many messages it moved.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TaskEnd {
    Completed(u64),
    Failed(String, u64),
    Cancelled(u64),
    StillRunning(u64),
}

/// How the try with a move task went.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    /// Not tried: `--method manual`.
    Skipped,
    /// SQS refused to start it, saying this (`code: message`).
    Refused(String),
    /// It started, and ended (or was left running) so.
    Ended(TaskEnd),
}

impl Attempt {
    /// Messages the task moved.
    fn moved(&self) -> u64 {
        match self {
            Self::Skipped | Self::Refused(_) => 0,
            Self::Ended(
                TaskEnd::Completed(n)
                | TaskEnd::Failed(_, n)
                | TaskEnd::Cancelled(n)
                | TaskEnd::StillRunning(n),
            ) => *n,
        }
    }
}

/// What redrive does once the try with a move task is over.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    /// The task moved everything: report.
    Report,
    /// Move the rest by hand; the reason is shown, and named in the summary.
    ByHand(String),
    /// Print this line and exit 1, moving nothing more.
    Stop(String),
}

/// The redrive decision. Only `auto` falls back, and only when the task could not do the work
/// (refused, or ended FAILED). A cancelled task was stopped on purpose, and one still running
/// goes on in SQS, so moving by hand beside it would race it: both stop.
fn next(method: Method, attempt: &Attempt, timeout: u64) -> Next {
    let reason = match attempt {
        Attempt::Skipped => return Next::ByHand("--method manual".to_owned()),
        Attempt::Ended(TaskEnd::Completed(_)) => return Next::Report,
        Attempt::Ended(TaskEnd::Cancelled(moved)) => {
            return Next::Stop(format!(
                "the move task was cancelled after moving about {moved} message(s)"
            ))
        }
        Attempt::Ended(TaskEnd::StillRunning(moved)) => {
            return Next::Stop(format!(
                "the move task is still running after {timeout} s ({moved} moved so far); it goes on in SQS (see ListMessageMoveTasks)"
            ))
        }
        Attempt::Refused(why) => format!("StartMessageMoveTask was refused ({why})"),
        Attempt::Ended(TaskEnd::Failed(why, _)) => {
            format!("StartMessageMoveTask ended FAILED ({why})")
        }
    };
    match method {
        Method::Task => Next::Stop(format!(
            "redrive failed: {reason}; nothing more was moved (--method task)"
        )),
        Method::Auto | Method::Manual => Next::ByHand(reason),
    }
}

/// Totals of a redrive.
#[derive(Default)]
struct Summary {
    by_task: u64,
    by_hand: u64,
    send_failed: u64,
    delete_failed: u64,
}

/// Moves the DLQ's messages back, prints a summary. Ok(false) when messages were left behind or
/// sent twice.
pub(super) async fn run(args: &RedriveArgs, settings: &Settings) -> anyhow::Result<bool> {
    let (sqs, queues) = super::connect(settings, &args.target).await?;
    let start = sqs
        .depth(&queues.dlq_url)
        .await
        .context("reading the DLQ")?;
    if start.total() == 0 {
        println!("the DLQ {} is empty: nothing to redrive", queues.dlq_url);
        return Ok(true);
    }
    eprintln!(
        "redriving about {} message(s) ({} in flight) from {} to {}",
        start.total(),
        start.in_flight,
        queues.dlq_url,
        queues.queue_url
    );
    let mut progress = Progress::new();
    let attempt = match args.method {
        Method::Manual => Attempt::Skipped,
        Method::Auto | Method::Task => match sqs
            .start_move_task(&queues.dlq_arn, &queues.queue_arn)
            .await
        {
            Ok(_) => {
                let end = watch_task(&sqs, &queues.dlq_arn, args.timeout, &mut progress).await?;
                progress.done();
                Attempt::Ended(end)
            }
            Err(e) => Attempt::Refused(format!("{}: {}", e.code, e.message)),
        },
    };
    let mut summary = Summary {
        by_task: attempt.moved(),
        ..Summary::default()
    };
    let fallback = match next(args.method, &attempt, args.timeout) {
        Next::Report => None,
        Next::Stop(line) => {
            println!("{line}");
            return Ok(false);
        }
        Next::ByHand(reason) => {
            eprintln!("{reason}: moving the messages by receive, send, delete instead");
            let left = sqs
                .depth(&queues.dlq_url)
                .await
                .context("reading the DLQ")?;
            let cap = args.max.unwrap_or(start.total().max(left.total()));
            move_by_hand(&sqs, &queues, cap, &mut summary, &mut progress).await?;
            progress.done();
            Some(reason)
        }
    };

    let moved = summary.by_task + summary.by_hand;
    let how = match (&fallback, summary.by_task) {
        (None, _) => "with StartMessageMoveTask".to_owned(),
        (Some(reason), 0) => format!("by receive, send, delete (fallback: {reason})"),
        (Some(reason), n) => format!(
            "{n} by the move task, {} by receive, send, delete (fallback: {reason})",
            summary.by_hand
        ),
    };
    println!(
        "redrive: moved {moved} message(s) from {} to {} {how}",
        queues.dlq_url, queues.queue_url
    );
    if summary.send_failed > 0 {
        println!(
            "{} message(s) could not be sent to the queue and stay in the DLQ",
            summary.send_failed
        );
    }
    if summary.delete_failed > 0 {
        println!(
            "{} message(s) were sent but could not be deleted from the DLQ: they are in both queues; the worker drops the second delivery as a duplicate within its dedupe window",
            summary.delete_failed
        );
    }
    if let Ok(after) = sqs.depth(&queues.dlq_url).await {
        println!(
            "the DLQ now holds about {} message(s) ({} in flight)",
            after.total(),
            after.in_flight
        );
    }
    Ok(summary.send_failed == 0 && summary.delete_failed == 0)
}

/// Polls the most recent move task once a second until it ends or `timeout` seconds pass.
async fn watch_task(
    sqs: &SqsAdmin,
    dlq_arn: &str,
    timeout: u64,
    progress: &mut Progress,
) -> anyhow::Result<TaskEnd> {
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let task = sqs
            .latest_move_task(dlq_arn)
            .await
            .context("reading the move task")?;
        let Some(task) = task else {
            if started.elapsed() > Duration::from_secs(timeout) {
                return Ok(TaskEnd::StillRunning(0));
            }
            continue;
        };
        match task.status {
            MoveTaskStatus::Completed => return Ok(TaskEnd::Completed(task.moved)),
            MoveTaskStatus::Failed(reason) => return Ok(TaskEnd::Failed(reason, task.moved)),
            MoveTaskStatus::Cancelled => return Ok(TaskEnd::Cancelled(task.moved)),
            MoveTaskStatus::Running | MoveTaskStatus::Other(_) => {
                let of = task.to_move.map(|n| format!(" of {n}")).unwrap_or_default();
                progress.show(&format!("move task: {}{of} moved", task.moved));
                if started.elapsed() > Duration::from_secs(timeout) {
                    return Ok(TaskEnd::StillRunning(task.moved));
                }
            }
        }
    }
}

/// Receive, send, delete until the DLQ gives nothing on two receives in a row or `cap`
/// messages were handled.
async fn move_by_hand(
    sqs: &SqsAdmin,
    queues: &Queues,
    cap: u64,
    summary: &mut Summary,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let mut empty = 0;
    let mut handled = 0;
    while handled < cap && empty < 2 {
        let want = u8::try_from((cap - handled).min(10)).unwrap_or(10);
        let batch = sqs
            .move_batch(&queues.dlq_url, &queues.queue_url, want, 30)
            .await
            .context("moving messages by hand")?;
        if batch.received == 0 {
            empty += 1;
            continue;
        }
        empty = 0;
        handled += batch.received as u64;
        summary.by_hand += batch.moved as u64;
        summary.send_failed += batch.send_failed as u64;
        summary.delete_failed += batch.delete_failed as u64;
        progress.show(&format!(
            "moved by hand: {} of about {cap}",
            summary.by_hand
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_auto_falls_back_and_only_when_the_task_could_not_do_the_work() {
        use Method::{Auto, Manual, Task};
        let refused = || Attempt::Refused("AccessDenied: no".to_owned());
        let failed = || Attempt::Ended(TaskEnd::Failed("boom".to_owned(), 3));
        let ended = |end: TaskEnd| Attempt::Ended(end);
        let by_hand = |reason: &str| Next::ByHand(reason.to_owned());
        let stop = |line: &str| Next::Stop(line.to_owned());
        let refused_reason = "StartMessageMoveTask was refused (AccessDenied: no)";
        let failed_reason = "StartMessageMoveTask ended FAILED (boom)";
        let cancelled = "the move task was cancelled after moving about 2 message(s)";
        let running = "the move task is still running after 900 s (4 moved so far); it goes on in SQS (see ListMessageMoveTasks)";
        let table = [
            (Manual, Attempt::Skipped, by_hand("--method manual")),
            (Auto, refused(), by_hand(refused_reason)),
            (Auto, failed(), by_hand(failed_reason)),
            (Auto, ended(TaskEnd::Completed(5)), Next::Report),
            (Auto, ended(TaskEnd::Cancelled(2)), stop(cancelled)),
            (Auto, ended(TaskEnd::StillRunning(4)), stop(running)),
            (
                Task,
                refused(),
                stop("redrive failed: StartMessageMoveTask was refused (AccessDenied: no); nothing more was moved (--method task)"),
            ),
            (
                Task,
                failed(),
                stop("redrive failed: StartMessageMoveTask ended FAILED (boom); nothing more was moved (--method task)"),
            ),
            (Task, ended(TaskEnd::Completed(5)), Next::Report),
            (Task, ended(TaskEnd::Cancelled(2)), stop(cancelled)),
            (Task, ended(TaskEnd::StillRunning(4)), stop(running)),
        ];
        for (method, attempt, expected) in table {
            assert_eq!(
                next(method, &attempt, 900),
                expected,
                "{method:?} after {attempt:?}"
            );
        }
    }

    #[test]
    fn the_summary_counts_what_the_task_moved_even_when_it_failed() {
        assert_eq!(Attempt::Skipped.moved(), 0);
        assert_eq!(Attempt::Refused("x".to_owned()).moved(), 0);
        assert_eq!(
            Attempt::Ended(TaskEnd::Failed("x".to_owned(), 3)).moved(),
            3
        );
        assert_eq!(Attempt::Ended(TaskEnd::Completed(7)).moved(), 7);
    }
}
