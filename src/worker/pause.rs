//! The worker-wide stop: when SES says the account cannot send (paused or suspended), or the
//! shared state table cannot be used (missing, access denied), every poller stops receiving, so
//! the queue keeps its messages instead of draining them into the DLQ. One poller at a time
//! probes the cause (SES `GetAccount`, or one read of the table; neither costs a message) with a
//! doubling interval, and reopens the gate when it works again.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// First wait before probing a paused account; doubles per failed probe.
pub const FIRST_PROBE: Duration = Duration::from_secs(5);
/// Longest wait between probes.
pub const MAX_PROBE: Duration = Duration::from_secs(300);

/// What stopped the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The SES account cannot send.
    SesAccount,
    /// The state table cannot be used.
    StateTable,
}

impl Cause {
    /// Why the worker is not receiving, for `/readyz` and the log.
    pub fn describe(self) -> &'static str {
        match self {
            Self::SesAccount => "SES account cannot send (paused); not receiving",
            Self::StateTable => {
                "the state table cannot be used (missing or access denied); not receiving"
            }
        }
    }
}

#[derive(Debug)]
struct Paused {
    cause: Cause,
    until: Instant,
    interval: Duration,
    probing: bool,
}

/// What a poller should do before receiving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Receive as usual.
    Open,
    /// Paused: wait this long, then ask again.
    Wait(Duration),
    /// Paused and due: this poller probes the cause, then calls `resume` or `extend`.
    Probe(Cause),
}

/// Shared pause state of all pollers.
#[derive(Debug, Default)]
pub struct Pause {
    state: Mutex<Option<Paused>>,
}

impl Pause {
    /// Closes the gate after a worker-wide failure. Returns true if this call closed it (so
    /// the caller logs it once), false if it was already closed (for whatever cause).
    pub fn trip(&self, cause: Cause) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.is_some() {
            return false;
        }
        *state = Some(Paused {
            cause,
            until: Instant::now() + FIRST_PROBE,
            interval: FIRST_PROBE,
            probing: false,
        });
        true
    }

    /// How long until the next probe, if paused.
    pub fn remaining(&self) -> Option<Duration> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .as_ref()
            .map(|p| p.until.saturating_duration_since(Instant::now()))
    }

    /// Asks whether to receive, wait, or probe.
    pub fn check(&self) -> Gate {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(paused) = state.as_mut() else {
            return Gate::Open;
        };
        let now = Instant::now();
        if now < paused.until {
            Gate::Wait(paused.until - now)
        } else if paused.probing {
            Gate::Wait(Duration::from_millis(500))
        } else {
            paused.probing = true;
            Gate::Probe(paused.cause)
        }
    }

    /// The probe found the account able to send: open the gate.
    pub fn resume(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The probe found the account still paused: wait twice as long before the next.
    /// Returns the new interval.
    pub fn extend(&self) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let paused = state.get_or_insert(Paused {
            cause: Cause::SesAccount,
            until: Instant::now(),
            interval: FIRST_PROBE,
            probing: false,
        });
        paused.interval = (paused.interval * 2).min(MAX_PROBE);
        paused.until = Instant::now() + paused.interval;
        paused.probing = false;
        paused.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tripped_gate_waits_then_lets_exactly_one_poller_probe() {
        let pause = Pause::default();
        assert_eq!(pause.check(), Gate::Open);
        assert!(pause.trip(Cause::StateTable));
        assert!(
            !pause.trip(Cause::SesAccount),
            "tripping twice is reported once"
        );
        assert_eq!(pause.check(), Gate::Wait(FIRST_PROBE));
        tokio::time::advance(FIRST_PROBE).await;
        assert_eq!(pause.check(), Gate::Probe(Cause::StateTable));
        assert!(
            matches!(pause.check(), Gate::Wait(_)),
            "others wait while one probes"
        );
        pause.resume();
        assert_eq!(pause.check(), Gate::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probes_back_off_up_to_the_cap() {
        let pause = Pause::default();
        pause.trip(Cause::SesAccount);
        let intervals: Vec<Duration> = (0..8).map(|_| pause.extend()).collect();
        assert_eq!(intervals[0], Duration::from_secs(10));
        assert_eq!(intervals[1], Duration::from_secs(20));
        assert_eq!(*intervals.last().expect("some"), MAX_PROBE);
    }
}
