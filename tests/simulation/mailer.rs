//! SES as the simulation sees it: it records every email it accepts (with its route and its
//! event or digest window), and during the chaos phase it throttles, fails, accepts and then
//! times out, is slow, or has its account paused. Some (event, route) pairs and some digests
//! are refused for good (an address SES rejects), in every phase.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use quilt_notify::ports::{AccountStatus, Email, FailureKind, Mailer, SendError};

use crate::config::Config;
use crate::world::{Accepted, Answer, Fate, Life, Sim};

/// The account and what it refuses.
#[derive(Debug)]
pub struct MailerModel {
    /// The account cannot send until then (virtual ms).
    pub paused_until: u64,
    rejected_pairs: BTreeSet<(String, String)>,
    /// A digest's key → whether SES refuses it, decided at its first send.
    digest_verdicts: BTreeMap<String, bool>,
    sent: u64,
}

impl MailerModel {
    pub fn new(cfg: &Config) -> Self {
        Self {
            paused_until: 0,
            rejected_pairs: cfg.rejected_pairs.clone(),
            digest_verdicts: BTreeMap::new(),
            sent: 0,
        }
    }
}

/// The state key an email belongs to (`send:<event>:<route>` or `window:<route>:<start>`),
/// from its tags; and the event ids a digest lists in its text.
pub fn key_of(email: &Email) -> (String, Vec<String>) {
    let tag = |name: &str| {
        email
            .tags
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let route = tag("route");
    if let Some((_, window)) = email.tags.iter().find(|(n, _)| n == "digest_window") {
        let events = email
            .text
            .split('[')
            .filter_map(|part| part.split_once(']').map(|(id, _)| id.to_owned()))
            .collect();
        (format!("window:{route}:{window}"), events)
    } else {
        (format!("send:{}:{route}", tag("event_id")), Vec::new())
    }
}

fn refused(kind: FailureKind, code: &str) -> SendError {
    SendError {
        kind,
        code: code.to_owned(),
        message: "simulated".to_owned(),
    }
}

/// One task's handle on SES.
pub struct SimMailer {
    sim: Arc<Sim>,
    life: Arc<Life>,
}

impl SimMailer {
    pub fn new(sim: Arc<Sim>, life: Arc<Life>) -> Self {
        Self { sim, life }
    }

    /// What SES does with the email, now; and the index of its record, when accepted.
    fn decide(&self, email: &Email, fate: Fate) -> (Result<String, SendError>, Option<usize>) {
        let sim = &self.sim;
        let mut world = sim.lock();
        let now = sim.now();
        let owner = self.life.owner();
        let (key, events) = key_of(email);
        let faults = sim.cfg.faults;
        let chaos = world.chaos();
        let mut index = None;
        let refused_for_good = if key.starts_with("window:") {
            let reject = world.rng.f64() < faults.digest_reject;
            *world
                .mailer
                .digest_verdicts
                .entry(key.clone())
                .or_insert(reject)
        } else {
            let (_, rest) = key.split_at("send:".len());
            let (event, route) = rest.split_once(':').unwrap_or((rest, ""));
            world
                .mailer
                .rejected_pairs
                .contains(&(event.to_owned(), route.to_owned()))
        };
        let result = if world.mailer.paused_until > now {
            Err(refused(
                FailureKind::AccountPaused,
                "SendingPausedException",
            ))
        } else if refused_for_good {
            world.records.rejected.push((key.clone(), events.clone()));
            Err(refused(FailureKind::Permanent, "MessageRejected"))
        } else if chaos && world.rng.f64() < faults.mail_throttle {
            world.fault("mail_throttle");
            Err(refused(FailureKind::Throttled, "TooManyRequestsException"))
        } else if chaos && world.rng.f64() < faults.mail_transient {
            world.fault("mail_transient");
            Err(refused(FailureKind::Transient, "InternalFailure"))
        } else {
            world.mailer.sent += 1;
            let id = format!("ses-{}", world.mailer.sent);
            let answer = if fate == Fate::DiesAfter {
                Answer::Lost
            } else if chaos && world.rng.f64() < faults.mail_timeout_after_accept {
                world.fault("mail_timeout_after_accept");
                Answer::TimeoutAfterAccept
            } else {
                Answer::Ok
            };
            index = Some(world.records.accepted.len());
            world.records.accepted.push(Accepted {
                key: key.clone(),
                owner: owner.clone(),
                at: now,
                answer,
                events,
            });
            match answer {
                Answer::TimeoutAfterAccept => {
                    Err(refused(FailureKind::Ambiguous, "accepted-then-timeout"))
                }
                _ => Ok(id),
            }
        };
        let shown = match &result {
            Ok(id) => format!("accepted {id}"),
            Err(e) => format!("{:?} {}", e.kind, e.code),
        };
        sim.trace(&mut world, &owner, format_args!("send {key} -> {shown}"));
        (result, index)
    }
}

/// Marks an accepted email's answer as abandoned if the send is dropped before it returns: the
/// worker aborts unfinished message tasks at its shutdown deadline.
struct Unanswered<'a> {
    sim: &'a Sim,
    index: Option<usize>,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if let Some(index) = self.index {
            let mut world = self.sim.lock();
            world.records.accepted[index].answer = Answer::Abandoned;
            let owner = world.records.accepted[index].owner.clone();
            let key = world.records.accepted[index].key.clone();
            self.sim.trace(
                &mut world,
                &owner,
                format_args!("send {key}: aborted before the answer came"),
            );
        }
    }
}

impl Mailer for SimMailer {
    async fn send(&self, email: &Email) -> Result<String, SendError> {
        let fate = self.sim.enter(&self.life, "SendEmail").await;
        let slow = {
            let mut world = self.sim.lock();
            let slow = world.chaos() && world.rng.f64() < self.sim.cfg.faults.mail_slow;
            if slow {
                world.fault("mail_slow");
                let most = 2 * self.sim.cfg.lease_seconds * 1000;
                Some(Duration::from_millis(world.rng.u64(1_000..=most)))
            } else {
                None
            }
        };
        if let Some(slow) = slow {
            tokio::time::sleep(slow).await;
            self.life.alive().await;
        }
        let (result, index) = self.decide(email, fate);
        let mut unanswered = Unanswered {
            sim: &self.sim,
            index,
        };
        self.sim.leave(&self.life, "SendEmail", fate).await;
        unanswered.index = None;
        result
    }

    async fn account(&self) -> Result<AccountStatus, SendError> {
        let fate = self.sim.enter(&self.life, "GetAccount").await;
        let sending_enabled = {
            let mut world = self.sim.lock();
            let enabled = world.mailer.paused_until <= self.sim.now();
            let owner = self.life.owner();
            self.sim.trace(
                &mut world,
                &owner,
                format_args!("account -> sending enabled: {enabled}"),
            );
            enabled
        };
        self.sim.leave(&self.life, "GetAccount", fate).await;
        Ok(AccountStatus {
            sending_enabled,
            max_send_rate: None,
        })
    }
}
