//! One seed's world, drawn from the seed before anything runs: the tasks and their settings, the
//! routes, the events and when they arrive, which faults are on and how often, and the timed
//! disruptions (kills, a paused SES account, state outages) of the chaos phase.

use std::collections::BTreeSet;

use serde_json::json;

use quilt_notify::domain::route::RouteSpec;

/// Unix seconds at virtual time 0 (2026-01-01T00:00:00Z): the clocks' and the events' epoch.
pub const EPOCH_S: i64 = 1_767_225_600;

/// The per-event routes: name and the handle prefix its pattern matches. A `team-a/` package
/// matches `alpha` and `team`, a `team-b/` one `team` and `beta`, a `misc/` one none.
pub const ROUTES: [(&str, &str); 3] =
    [("alpha", "team-a/"), ("team", "team-"), ("beta", "team-b/")];

/// The digest route (when the seed has one) and the prefix it matches.
pub const DIGEST_ROUTE: (&str, &str) = ("digest", "team-");

/// One task (process) of the service.
#[derive(Debug, Clone)]
pub struct ProcConfig {
    /// Its clock's offset from true time, in milliseconds.
    pub skew_ms: i64,
    pub pollers: usize,
    pub concurrency: usize,
    pub max_messages: u8,
    pub wait_seconds: u8,
    /// The dedupe record's capacity (`worker.dedupe_capacity`): small ones forget, as a busy task does.
    pub dedupe_capacity: usize,
    /// Sends per second; 0 is unlimited.
    pub send_rate: f64,
}

/// One EventBridge event.
#[derive(Debug, Clone)]
pub struct EventSpec {
    pub id: String,
    pub handle: String,
    /// The message body, as EventBridge delivers it to SQS.
    pub body: String,
    /// The per-event routes it matches.
    pub routes: Vec<&'static str>,
    /// Whether the digest route (if any) matches it.
    pub digest: bool,
}

/// One SQS message: a copy of an event (EventBridge may put an event twice).
#[derive(Debug, Clone)]
pub struct MessageSpec {
    pub id: String,
    pub event: usize,
    pub at_ms: u64,
}

/// SQS behaviour that differs between seeds.
#[derive(Debug, Clone, Copy)]
pub struct Sqs {
    pub visibility_seconds: u32,
    pub max_receive: u32,
    /// Chance that a receive leaves the message visible (SQS standard delivers it again).
    pub duplicate: f64,
    /// Visible messages are handed out in random order, not oldest first.
    pub reorder: bool,
    /// A delete with an older receipt handle deletes the message (true) or silently does
    /// nothing (false); AWS documents both outcomes.
    pub stale_delete_works: bool,
}

/// Fault rates during the chaos phase (all 0 once healthy).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub mail_throttle: f64,
    pub mail_transient: f64,
    /// SES accepted the email, the caller got a timeout.
    pub mail_timeout_after_accept: f64,
    /// A send that takes seconds (up to twice the lease).
    pub mail_slow: f64,
    pub state_throttle: f64,
    /// A write applied, then answered with an error.
    pub state_ambiguous: f64,
    pub queue_error: f64,
    /// Chance that a task dies at a port call (before or after it took effect).
    pub kill_per_call: f64,
    /// Chance that a digest (route, window) is refused by SES for good.
    pub digest_reject: f64,
}

/// A disruption at a virtual time of the chaos phase.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// Kill a random live task.
    Kill,
    /// Stop a random live task gracefully (SIGTERM: its shutdown deadline), then start it
    /// again: a deploy.
    Deploy,
    /// The SES account cannot send for this long.
    PauseMailer { for_ms: u64 },
    /// The state store fails every call for this long: transiently, or as unusable.
    Outage { for_ms: u64, unusable: bool },
}

/// Everything one seed is made of.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub procs: Vec<ProcConfig>,
    pub sqs: Sqs,
    pub lease_seconds: u64,
    /// The skew the state store allows (`state.max_clock_skew_seconds`): a lease counts as
    /// ended only this long after its end. Every task's clock is within it, except in seeds
    /// where `clocks_beyond_allowed`.
    pub allowed_skew_ms: i64,
    pub clocks_beyond_allowed: bool,
    /// `state.batch_writes`: on in three seeds of four (from the seed, not the generator, so
    /// turning it on moved no other choice of a seed).
    pub batch_writes: bool,
    pub backoff: (u32, u32),
    pub digest_check_seconds: u64,
    /// `every` of the digest route, and its length in seconds; None: no digest route.
    pub digest: Option<(&'static str, i64)>,
    pub events: Vec<EventSpec>,
    pub messages: Vec<MessageSpec>,
    /// (event id, route) pairs SES refuses for good.
    pub rejected_pairs: BTreeSet<(String, String)>,
    pub faults: Faults,
    pub actions: Vec<(u64, Action)>,
    /// The chaos phase ends here; every message has arrived by then.
    pub chaos_end_ms: u64,
    /// Most kills at port calls in one seed (timed kills come on top).
    pub max_call_kills: u32,
    /// A restarted task comes back this long after its death, at most.
    pub max_restart_ms: u64,
    /// Round-trip latency of a port call, milliseconds, each way.
    pub latency_ms: (u64, u64),
}

/// A rate that is 0 half the time, else up to `max`.
fn sometimes(rng: &mut fastrand::Rng, max: f64) -> f64 {
    if rng.bool() {
        0.0
    } else {
        rng.f64() * max
    }
}

impl Config {
    /// The world of `seed`.
    pub fn generate(seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let lease_seconds = rng.u64(5..=30);
        // Start-up refuses a lease shorter than 4 times the allowed skew.
        let allowed_skew_ms =
            rng.i64(0..=i64::try_from(lease_seconds * 250).unwrap_or(0).min(2_000));
        let clocks_beyond_allowed = rng.u8(0..4) == 0;
        let skew_bound = if clocks_beyond_allowed {
            3_000
        } else {
            allowed_skew_ms
        };
        let procs = (0..rng.usize(2..=3))
            .map(|_| ProcConfig {
                skew_ms: rng.i64(-skew_bound..=skew_bound),
                pollers: rng.usize(1..=2),
                concurrency: rng.usize(1..=10),
                max_messages: rng.u8(1..=10),
                wait_seconds: if rng.bool() { 20 } else { rng.u8(1..=20) },
                dedupe_capacity: if rng.u8(0..4) == 0 {
                    rng.usize(1..=5)
                } else {
                    1_000
                },
                send_rate: if rng.bool() {
                    0.0
                } else {
                    f64::from(rng.u8(2..=20))
                },
            })
            .collect();
        let sqs = Sqs {
            visibility_seconds: rng.u32(5..=30),
            max_receive: rng.u32(3..=8),
            duplicate: sometimes(&mut rng, 0.1),
            reorder: rng.bool(),
            stale_delete_works: rng.bool(),
        };
        let backoff = (rng.u32(1..=5), rng.u32(20..=120));
        let digest_check_seconds = rng.u64(2..=10);
        let digest = match rng.u8(0..4) {
            0 => None,
            1 => Some(("30s", 30)),
            2 => Some(("1m", 60)),
            _ => Some(("2m", 120)),
        };

        let arrive_ms = rng.u64(10_000..=180_000);
        let event_count = rng.usize(10..=60);
        let copy_rate = sometimes(&mut rng, 0.2);
        let mut events = Vec::with_capacity(event_count);
        let mut messages = Vec::new();
        for n in 0..event_count {
            let prefix = match rng.u8(0..10) {
                0..=3 => "team-a/",
                4..=7 => "team-b/",
                _ => "misc/",
            };
            let handle = format!("{prefix}p{n}");
            let id = format!("e{n}");
            let at_ms = rng.u64(0..=arrive_ms);
            events.push(EventSpec {
                body: body(&id, &handle, at_ms),
                routes: ROUTES
                    .iter()
                    .filter(|(_, p)| handle.starts_with(p))
                    .map(|(name, _)| *name)
                    .collect(),
                digest: digest.is_some() && handle.starts_with(DIGEST_ROUTE.1),
                id,
                handle,
            });
            messages.push(MessageSpec {
                id: format!("m{}", messages.len()),
                event: n,
                at_ms,
            });
            if rng.f64() < copy_rate {
                // EventBridge's at-least-once: the same event as a second message, later.
                let again = at_ms + rng.u64(0..=30_000);
                messages.push(MessageSpec {
                    id: format!("m{}", messages.len()),
                    event: n,
                    at_ms: again.min(arrive_ms),
                });
            }
        }
        messages.sort_by_key(|m| m.at_ms);

        let reject_rate = sometimes(&mut rng, 0.05);
        let mut rejected_pairs = BTreeSet::new();
        for event in &events {
            for route in &event.routes {
                if rng.f64() < reject_rate {
                    rejected_pairs.insert((event.id.clone(), (*route).to_owned()));
                }
            }
        }
        let faults = Faults {
            mail_throttle: sometimes(&mut rng, 0.2),
            mail_transient: sometimes(&mut rng, 0.1),
            mail_timeout_after_accept: sometimes(&mut rng, 0.05),
            mail_slow: sometimes(&mut rng, 0.05),
            state_throttle: sometimes(&mut rng, 0.1),
            state_ambiguous: sometimes(&mut rng, 0.05),
            queue_error: sometimes(&mut rng, 0.02),
            kill_per_call: sometimes(&mut rng, 0.004),
            digest_reject: sometimes(&mut rng, 0.1),
        };
        let chaos_end_ms = arrive_ms + rng.u64(0..=60_000);
        let mut actions = Vec::new();
        for _ in 0..rng.usize(0..=4) {
            actions.push((rng.u64(0..chaos_end_ms), Action::Kill));
        }
        for _ in 0..rng.usize(0..=2) {
            actions.push((rng.u64(0..chaos_end_ms), Action::Deploy));
        }
        for _ in 0..rng.usize(0..=2) {
            let for_ms = rng.u64(1_000..=60_000);
            actions.push((rng.u64(0..chaos_end_ms), Action::PauseMailer { for_ms }));
        }
        for _ in 0..rng.usize(0..=2) {
            let for_ms = rng.u64(1_000..=60_000);
            let unusable = rng.u8(0..3) == 0;
            actions.push((
                rng.u64(0..chaos_end_ms),
                Action::Outage { for_ms, unusable },
            ));
        }
        actions.sort_by_key(|(at, _)| *at);
        let latency_ms = if rng.bool() { (1, 5) } else { (2, 60) };
        Self {
            seed,
            procs,
            sqs,
            lease_seconds,
            allowed_skew_ms,
            clocks_beyond_allowed,
            batch_writes: !seed.is_multiple_of(4),
            backoff,
            digest_check_seconds,
            digest,
            events,
            messages,
            rejected_pairs,
            faults,
            actions,
            chaos_end_ms,
            max_call_kills: rng.u32(0..=6),
            max_restart_ms: rng.u64(0..=30_000),
            latency_ms,
        }
    }

    /// The routes as the configuration file would give them.
    pub fn route_specs(&self) -> Vec<RouteSpec> {
        let prefix_route = |name: &str, prefix: &str| {
            RouteSpec::builder(name)
                .details(false)
                .pattern(json!({"detail": {"handle": [{"prefix": prefix}]}}))
        };
        let mut specs: Vec<_> = ROUTES
            .iter()
            .map(|(name, prefix)| prefix_route(name, prefix).build())
            .collect();
        if let Some((every, _)) = self.digest {
            specs.push(
                prefix_route(DIGEST_ROUTE.0, DIGEST_ROUTE.1)
                    .no_template()
                    .to(&["digest@example.com"])
                    .digest(json!({"every": every}))
                    .build(),
            );
        }
        specs
    }
}

/// An EventBridge `package-revision` event as SQS delivers it.
fn body(id: &str, handle: &str, at_ms: u64) -> String {
    let seconds = at_ms / 1000;
    let time = format!(
        "2026-01-01T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    json!({
        "version": "0", "id": id, "detail-type": "package-revision", "source": "com.quiltdata",
        "account": "123456789012", "time": time, "region": "us-east-1", "resources": [],
        "detail": {"version": "0.1", "type": "created", "bucket": "bucket", "handle": handle,
                   "topHash": format!("{at_ms:064x}")}
    })
    .to_string()
}
