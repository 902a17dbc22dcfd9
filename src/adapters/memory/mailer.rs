//! A [`Mailer`] in memory for unit tests: it records every email it accepts and fails on cue,
//! from a script of answers or for every send while a refusal is set; it can be held mid-send,
//! slowed down, or have its account paused. The simulation has its own SES with its chaos
//! (tests/simulation/mailer.rs).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::ports::{AccountStatus, Email, FailureKind, Mailer, SendError};

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Inner {
    sent: Mutex<Vec<Email>>,
    /// Answers for the next sends, then success.
    script: Mutex<VecDeque<Result<(), FailureKind>>>,
    /// Refuses every send with this while set (the script waits meanwhile).
    refusal: Mutex<Option<SendError>>,
    sending_enabled: Mutex<bool>,
    /// A send takes a permit for its duration: none left, every send hangs.
    gate: Semaphore,
    /// How long each send takes.
    latency: Mutex<Duration>,
}

/// Sent emails in memory; clones share them. SES message ids are `ses-<n>`, n counting the
/// emails accepted.
#[derive(Clone)]
pub struct MemoryMailer(Arc<Inner>);

impl Default for MemoryMailer {
    fn default() -> Self {
        Self::scripted(Vec::new())
    }
}

impl MemoryMailer {
    /// A mailer that answers the first sends from `script` (an error kind fails that send),
    /// then accepts.
    pub fn scripted(script: Vec<Result<(), FailureKind>>) -> Self {
        Self(Arc::new(Inner {
            sent: Mutex::default(),
            script: Mutex::new(script.into()),
            refusal: Mutex::default(),
            sending_enabled: Mutex::new(true),
            gate: Semaphore::new(Semaphore::MAX_PERMITS),
            latency: Mutex::default(),
        }))
    }

    /// Refuses every send with `refusal` while it is `Some`.
    pub fn refuse(&self, refusal: Option<SendError>) {
        *locked(&self.0.refusal) = refusal;
    }

    /// What `account` says: whether SES lets the account send.
    pub fn set_sending_enabled(&self, enabled: bool) {
        *locked(&self.0.sending_enabled) = enabled;
    }

    /// Every send from now on takes `latency`.
    pub fn set_latency(&self, latency: Duration) {
        *locked(&self.0.latency) = latency;
    }

    /// Every send from now on hangs (until it is cancelled).
    pub fn hold_sends(&self) {
        self.0.gate.forget_permits(Semaphore::MAX_PERMITS);
    }

    /// The emails accepted, in order.
    pub fn sent(&self) -> Vec<Email> {
        locked(&self.0.sent).clone()
    }

    /// The subjects of the emails accepted, in order.
    pub fn subjects(&self) -> Vec<String> {
        locked(&self.0.sent)
            .iter()
            .map(|e| e.subject.clone())
            .collect()
    }
}

impl Mailer for MemoryMailer {
    async fn send(&self, email: &Email) -> Result<String, SendError> {
        let _permit = self.0.gate.acquire().await.map_err(|_| SendError {
            kind: FailureKind::Transient,
            code: "closed".into(),
            message: "gate closed".into(),
        })?;
        // A real send waits for the network: other messages run meanwhile.
        tokio::task::yield_now().await;
        let latency = *locked(&self.0.latency);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if let Some(refusal) = locked(&self.0.refusal).clone() {
            return Err(refusal);
        }
        let answer = locked(&self.0.script).pop_front().unwrap_or(Ok(()));
        match answer {
            Ok(()) => {
                let mut sent = locked(&self.0.sent);
                sent.push(email.clone());
                Ok(format!("ses-{}", sent.len()))
            }
            Err(kind) => Err(SendError {
                kind,
                code: "Scripted".into(),
                message: format!("scripted {}", kind.as_str()),
            }),
        }
    }

    async fn account(&self) -> Result<AccountStatus, SendError> {
        Ok(AccountStatus {
            sending_enabled: *locked(&self.0.sending_enabled),
            max_send_rate: None,
        })
    }
}
