//! What must hold at the end of every seed, checked against what SES accepted, what is left in
//! the queue and the DLQ, and what the state store still lists:
//!
//! 1. every (event, per-event route it matches) has an accepted email, or a copy of the event
//!    is in the DLQ, dead-lettered for a reason: a permanent rejection, receives during the
//!    chaos phase, or (its event delivered all the same) leases held elsewhere;
//! 2. nothing is left in the queue, visible or in flight;
//! 3. a second accepted email for one (event, route), or for one digest window, only where the
//!    docs allow it (docs/reliability.md, "The window in which a duplicate is still possible"):
//!    the sender that claimed first never learned that SES accepted its email (a timeout after
//!    accepting, a death or an abort before the answer), or died or failed to mark it sent, or
//!    lost its lease while SES was slow, or to a task whose clock is off by more than the
//!    skew the store allows;
//!    counted by cause;
//! 4. every event the digest route matches is in exactly one digest window that was sent,
//!    refused for good, or is still listed pending, or (never recorded) a copy is in the DLQ;
//!    once the tasks are healthy, no window stays pending;
//!
//! and the healthy phase drained the queue, every task stopped when asked, nothing panicked.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Config;
use crate::queue::Place;
use crate::world::{Accepted, Answer, Ending, Phase, Records, World};

/// The verdict on one seed.
#[derive(Debug, Default)]
pub struct Verdict {
    pub violations: Vec<String>,
    /// Explained duplicates by cause.
    pub duplicates: BTreeMap<&'static str, u64>,
    /// Dead-lettered messages by cause.
    pub dead_letters: BTreeMap<&'static str, u64>,
    /// Of them, those whose event was delivered all the same.
    pub dead_lettered_delivered: u64,
    pub emails: u64,
    /// Of them, digests.
    pub digests: u64,
}

/// What the state table says of the digest route at the end.
#[derive(Debug, Default)]
pub struct DigestState {
    /// Event id → its once-marker's status and window start.
    pub markers: BTreeMap<String, (String, i64)>,
    /// Window start → (status, event ids) of every window the table still lists.
    pub listed: BTreeMap<i64, (String, BTreeSet<String>)>,
}

/// Checks the seed's end.
pub fn check(cfg: &Config, world: &World, ending: &Ending, digests: &DigestState) -> Verdict {
    let mut verdict = Verdict {
        emails: world.records.accepted.len() as u64,
        digests: world
            .records
            .accepted
            .iter()
            .filter(|a| a.key.starts_with("window:"))
            .count() as u64,
        ..Verdict::default()
    };
    let records = &world.records;
    for stuck in &ending.stuck {
        verdict.violations.push(format!("graceful stop: {stuck}"));
    }

    // Where each event's copies ended.
    let mut dead_lettered: BTreeSet<usize> = BTreeSet::new();
    let mut left = Vec::new();
    for (id, message) in &world.queue.messages {
        match message.place {
            Place::Dlq => {
                dead_lettered.insert(message.event);
            }
            Place::Queue => left.push(format!("{id} ({})", cfg.events[message.event].id)),
            Place::Deleted => {}
        }
    }
    // 2. Nothing left in the queue.
    if !left.is_empty() {
        verdict.violations.push(format!(
            "2. messages left in the queue after the healthy phase: {}",
            left.join(", ")
        ));
    }
    if !ending.drained && left.is_empty() {
        let listed: Vec<String> = digests
            .listed
            .iter()
            .map(|(start, (status, events))| format!("{start} {status} ({} events)", events.len()))
            .collect();
        verdict.violations.push(format!(
            "4. digest windows still waiting after the healthy phase: {}",
            listed.join("; ")
        ));
    }

    let mut by_key: BTreeMap<&str, Vec<&Accepted>> = BTreeMap::new();
    for accepted in &records.accepted {
        by_key.entry(&accepted.key).or_default().push(accepted);
    }

    // 1. Every matched per-event route has an email, or the event is in the DLQ.
    for (index, event) in cfg.events.iter().enumerate() {
        for route in &event.routes {
            let key = format!("send:{}:{route}", event.id);
            if !by_key.contains_key(key.as_str()) && !dead_lettered.contains(&index) {
                verdict.violations.push(format!(
                    "1. event {} ({}), route {route}: no email accepted, and no copy in the DLQ",
                    event.id, event.handle
                ));
            }
        }
    }
    for key in by_key.keys() {
        if let Some(rest) = key.strip_prefix("send:") {
            let (event, route) = rest.split_once(':').unwrap_or((rest, ""));
            let matches = cfg
                .events
                .iter()
                .any(|e| e.id == event && e.routes.contains(&route));
            if !matches {
                verdict.violations.push(format!(
                    "1. an email for {key}, a route the event does not match"
                ));
            }
        }
    }

    // 3. Duplicates only where explained.

    for (key, copies) in &by_key {
        for pair in copies.windows(2) {
            match explain(records, cfg.allowed_skew_ms, key, pair[0], pair[1]) {
                Ok(cause) => *verdict.duplicates.entry(cause).or_default() += 1,
                Err(why) => verdict
                    .violations
                    .push(format!("3. duplicate email for {key}: {why}")),
            }
        }
    }

    // 4. Digest events: recorded in one window, which was sent or is still listed.
    if cfg.digest.is_some() {
        let window_start = |key: &str| -> i64 {
            key.rsplit(':')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(-1)
        };
        let mut sent: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
        for accepted in &records.accepted {
            for event in &accepted.events {
                sent.entry(event)
                    .or_default()
                    .insert(window_start(&accepted.key));
            }
        }
        for (index, event) in cfg.events.iter().enumerate() {
            if !event.digest {
                continue;
            }
            let sent_in = sent.get(event.id.as_str()).cloned().unwrap_or_default();
            // A window's digest holds the events whose marker says recorded in it; an item
            // left behind in another window by a withdrawn record is ignored, as senders do.
            let listed_in = |window: i64| {
                digests
                    .listed
                    .get(&window)
                    .is_some_and(|(_, events)| events.contains(&event.id))
            };
            match digests.markers.get(&event.id) {
                Some((status, window)) if status == "recorded" => {
                    let elsewhere: Vec<&i64> = sent_in.iter().filter(|w| *w != window).collect();
                    if !elsewhere.is_empty() {
                        verdict.violations.push(format!(
                            "4. event {} is recorded in window {window} but was sent in the \
                             digest of {elsewhere:?}",
                            event.id
                        ));
                    } else if !sent_in.contains(window) && !listed_in(*window) {
                        verdict.violations.push(format!(
                            "4. event {} is recorded in window {window}, which was neither sent \
                             nor is listed holding it",
                            event.id
                        ));
                    }
                }
                marker if !sent_in.is_empty() => verdict.violations.push(format!(
                    "4. event {} was sent in the digests of {sent_in:?} but its marker says \
                     {marker:?}",
                    event.id
                )),
                _ if dead_lettered.contains(&index) => {}
                marker => verdict.violations.push(format!(
                    "4. event {} matches the digest route, its marker says {marker:?}, and no \
                     copy is in the DLQ",
                    event.id
                )),
            }
        }
    }

    // Why each message reached the DLQ.
    for (id, message) in &world.queue.messages {
        if message.place != Place::Dlq {
            continue;
        }
        let event = &cfg.events[message.event];
        let rejected = records
            .rejected
            .iter()
            .any(|(key, _)| key.starts_with(&format!("send:{}:", event.id)));
        let chaotic = records
            .receives
            .get(id)
            .is_some_and(|r| r.iter().any(|(_, phase)| *phase == Phase::Chaos));
        let delivered = event
            .routes
            .iter()
            .all(|route| by_key.contains_key(format!("send:{}:{route}", event.id).as_str()))
            && (!event.digest
                || digests
                    .markers
                    .get(&event.id)
                    .is_some_and(|(status, _)| status == "recorded"));
        let cause = if rejected {
            "permanent_reject"
        } else if chaotic {
            "chaos"
        } else if delivered {
            // Its receives found the event's leases held by other tasks (each look costs a
            // receive) until none were left; the event was delivered all the same.
            "claimed_elsewhere_after_delivery"
        } else {
            verdict.violations.push(format!(
                "1. message {id} ({}) reached the DLQ undelivered, with no permanent rejection \
                 and no receive during the chaos phase: receives at {:?}",
                event.id,
                records.receives.get(id)
            ));
            "unexplained"
        };
        *verdict.dead_letters.entry(cause).or_default() += 1;
        verdict.dead_lettered_delivered += u64::from(delivered);
    }
    verdict
}

/// Why `second` was accepted after `first` for the same key, if the docs allow it.
///
/// A live lease keeps every other task off, so of the two senders the one that claimed first
/// lost its lease to the other: it died, or never learned that SES had accepted its email and
/// gave the lease up, or failed to mark the work sent, or its renewals failed while SES was slow,
/// or the other task's clock ran far enough ahead of its own to see the lease ended.
fn explain(
    records: &Records,
    allowed_skew_ms: i64,
    key: &str,
    first: &Accepted,
    second: &Accepted,
) -> Result<&'static str, String> {
    // The sender's last claim before it sent: (virtual ms, its place among all claims, for
    // claims in the same millisecond).
    let claimed = |sender: &Accepted| {
        records
            .claims
            .iter()
            .enumerate()
            .filter(|(_, (k, owner, at, _))| k == key && *owner == sender.owner && *at <= sender.at)
            .map(|(order, (_, _, at, _))| (*at, order))
            .max()
    };
    let (Some((first_claimed, first_order)), Some((second_claimed, second_order))) =
        (claimed(first), claimed(second))
    else {
        return Err(format!(
            "{} sent at {} or {} sent at {} without a claim",
            first.owner, first.at, second.owner, second.at
        ));
    };
    let lost = |sender: &Accepted| (key.to_owned(), sender.owner.clone());
    let (earlier, later, later_claimed) =
        if (second_claimed, second_order) < (first_claimed, first_order) {
            // The second email's sender held the lease first and was still sending when the first
            // email's sender took it over.
            if records.renew_failures.contains(&lost(second)) {
                return Ok("lease_lost_while_sending");
            }
            (second, first, first_claimed)
        } else {
            match first.answer {
                Answer::TimeoutAfterAccept => return Ok("timeout_after_accept"),
                Answer::Lost => return Ok("killed_before_answer"),
                Answer::Abandoned => return Ok("aborted_at_shutdown_deadline"),
                Answer::Ok => {}
            }
            if let Some(marked) = records.marks.get(&lost(first)) {
                if *marked <= second_claimed {
                    return Err(format!(
                        "{} sent at {} and marked it sent at {marked}; {} claimed it at \
                     {second_claimed} and sent again at {}",
                        first.owner, first.at, second.owner, second.at
                    ));
                }
            }
            if records
                .deaths
                .get(&first.owner)
                .is_some_and(|died| *died <= second_claimed)
            {
                return Ok("killed_before_mark");
            }
            if records.abandoned_marks.contains(&lost(first)) {
                return Ok("aborted_at_shutdown_deadline");
            }
            if records.mark_failures.contains(&lost(first)) {
                return Ok("mark_failed");
            }
            if records.renew_failures.contains(&lost(first)) {
                return Ok("lease_lost_while_sending");
            }
            (first, second, second_claimed)
        };
    if let Some((at, holder, apart)) = records
        .skew_takeovers
        .get(&(key.to_owned(), later.owner.clone()))
    {
        if *at == later_claimed && *holder == earlier.owner {
            // The store waits out the allowed skew past a lease's end: within it, a live lease
            // is safe.
            let beyond = |owner: &str| records.skew_of(owner).abs() > allowed_skew_ms;
            if beyond(&later.owner) || beyond(&earlier.owner) {
                return Ok("clock_skew");
            }
            return Err(format!(
                "{} took over the live lease of {} at {at}, their clocks {apart} ms apart and \
                 each within the allowed skew ({allowed_skew_ms} ms); they sent at {} and {}",
                later.owner, earlier.owner, later.at, earlier.at
            ));
        }
    }
    Err(format!(
        "{} claimed at {} and sent at {}, alive, its lease renewed, unmarked; {} claimed at {} \
         and sent at {}",
        earlier.owner,
        if earlier.owner == first.owner {
            first_claimed
        } else {
            second_claimed
        },
        earlier.at,
        later.owner,
        later_claimed,
        later.at
    ))
}
