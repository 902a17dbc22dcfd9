//! The world of one seed and its scheduler: the shared models (queue, mailer, state store), the
//! tasks with their lives, the trace, and the script that runs the chaos phase, the healthy
//! phase and the graceful stop.
//!
//! A task talks to the models only through its own port handles, which hold its [`Life`]. A
//! kill marks the life dead and aborts the task's `Worker::run`; every port call of a dead task,
//! one in progress included, then never returns, so the dead task has no further effect. Each
//! call waits a latency before and after it takes effect, so a kill mid-call decides whether
//! the call took effect (its answer lost) or not.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use quilt_notify::domain::render::{Renderer, TemplateSource};
use quilt_notify::domain::route::RouteTable;
use quilt_notify::ports::DynStateTable;
use quilt_notify::worker::claims::Claims;
use quilt_notify::worker::dedupe::HandledEvents;
use quilt_notify::worker::rate::RateLimiter;
use quilt_notify::worker::state::{StateOptions, StateStore, WindowStatus};
use quilt_notify::worker::{Backoff, Instruments, Pipeline, PipelineParts, Worker, WorkerOptions};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::SimClock;
use crate::config::{Action, Config, DIGEST_ROUTE};
use crate::mailer::{MailerModel, SimMailer};
use crate::queue::{QueueModel, SimQueue};
use crate::state::{self, SimTable};

/// The phase of the seed: faults and kills only in chaos.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Chaos,
    Healthy,
    Stopping,
}

/// One incarnation of a task: dead once killed, for good (a restart is a new life).
#[derive(Debug)]
pub struct Life {
    pub proc: usize,
    pub incarnation: u32,
    dead: AtomicBool,
}

impl Life {
    /// The owner id its claims use, and its name in the trace.
    pub fn owner(&self) -> String {
        format!("p{}.{}", self.proc, self.incarnation)
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Returns at once while alive; never returns once dead.
    pub async fn alive(&self) {
        if self.is_dead() {
            never::<()>().await;
        }
    }
}

/// A future that never completes: what every call of a dead task waits on.
pub async fn never<T>() -> T {
    std::future::pending().await
}

/// How a port call ends for its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Lives,
    /// The task dies before the call takes effect.
    DiesBefore,
    /// The call takes effect, then the task dies: the answer is lost.
    DiesAfter,
}

/// A task slot: its current incarnation and how to stop or kill it.
struct Proc {
    incarnation: u32,
    life: Option<Arc<Life>>,
    token: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

/// The event log of a seed: every decision of the models, in order. Its hash is the seed's
/// fingerprint (the same seed must give the same hash).
#[derive(Debug, Default)]
pub struct Trace {
    pub lines: Vec<String>,
    pub hash: u64,
}

impl Trace {
    fn push(&mut self, line: String) {
        // FNV-1a: stable across runs and Rust versions.
        for byte in line.bytes().chain([b'\n']) {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.lines.push(line);
    }
}

/// What the invariants need to know besides the final state: who sent what and when, every
/// claim, mark and failure.
#[derive(Debug, Default)]
pub struct Records {
    /// Emails SES accepted, in order.
    pub accepted: Vec<Accepted>,
    /// (key, digest events) of every permanent rejection.
    pub rejected: Vec<(String, Vec<String>)>,
    /// (key, owner, virtual ms, takeover) of every claim won.
    pub claims: Vec<(String, String, u64, bool)>,
    /// (key, owner) → when the mark `sent` took effect, first time.
    pub marks: BTreeMap<(String, String), u64>,
    /// (key, owner) whose mark failed at least once.
    pub mark_failures: BTreeSet<(String, String)>,
    /// (key, owner) whose lease renewal failed or found the lease gone.
    pub renew_failures: BTreeSet<(String, String)>,
    /// Owner → when it was killed.
    pub deaths: BTreeMap<String, u64>,
    /// (key, owner) whose mark was abandoned: its task was aborted at the shutdown deadline
    /// while marking.
    pub abandoned_marks: BTreeSet<(String, String)>,
    /// (key, new owner) → (virtual ms, previous owner, how far apart their clocks were) of
    /// every takeover of a lease that was still live in true time: clock skew let it happen.
    pub skew_takeovers: BTreeMap<(String, String), (u64, String, i64)>,
    /// Each task's clock skew, by task index.
    pub skews: Vec<i64>,
    /// Message id → its receives: (virtual ms, phase).
    pub receives: BTreeMap<String, Vec<(u64, Phase)>>,
}

/// How the sender learned of an accepted email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    /// SES accepted it, and the caller got a timeout.
    TimeoutAfterAccept,
    /// The caller died before the answer came.
    Lost,
    /// The caller's task was aborted at the shutdown deadline before the answer came.
    Abandoned,
}

/// One email SES accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// `send:<event>:<route>` or `window:<route>:<start>`, as the state keys are written.
    pub key: String,
    pub owner: String,
    pub at: u64,
    pub answer: Answer,
    /// A digest's event ids.
    pub events: Vec<String>,
}

/// Counts for the summary line.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub kills: u64,
    pub deploys: u64,
    pub call_kills: u32,
    pub restarts: u64,
    pub faults: BTreeMap<&'static str, u64>,
}

/// The mutable world, behind one lock (never held across an await).
pub struct World {
    pub rng: fastrand::Rng,
    pub phase: Phase,
    pub trace: Trace,
    pub queue: QueueModel,
    pub mailer: MailerModel,
    /// Until when (virtual ms) the state store fails every call, and whether as unusable.
    pub outage: Option<(u64, bool)>,
    pub records: Records,
    pub stats: Stats,
    procs: Vec<Proc>,
}

impl Records {
    /// The clock skew of the task an owner id (`p<task>.<incarnation>`) belongs to.
    pub fn skew_of(&self, owner: &str) -> i64 {
        owner
            .strip_prefix('p')
            .and_then(|rest| rest.split('.').next())
            .and_then(|task| task.parse::<usize>().ok())
            .and_then(|task| self.skews.get(task).copied())
            .unwrap_or(0)
    }
}

impl World {
    /// Counts an injected fault.
    pub fn fault(&mut self, kind: &'static str) {
        *self.stats.faults.entry(kind).or_default() += 1;
    }

    pub fn chaos(&self) -> bool {
        self.phase == Phase::Chaos
    }
}

/// One seed's simulation.
pub struct Sim {
    pub cfg: Config,
    /// Virtual time 0.
    pub started: Instant,
    world: Mutex<World>,
    /// Woken when a message becomes visible at once (arrival, release): long polls wait on it.
    pub arrivals: Notify,
    /// The shared state table, without faults (the invariants read it).
    pub table: Arc<dyn DynStateTable>,
    /// Print the trace as it happens.
    pub verbose: bool,
}

impl Sim {
    /// The state protocol over `table`, with this seed's allowed skew.
    pub fn store(&self, table: Arc<dyn DynStateTable>) -> StateStore {
        let skew_margin =
            Duration::from_millis(u64::try_from(self.cfg.allowed_skew_ms).unwrap_or(0));
        StateStore::new(
            table,
            StateOptions {
                skew_margin,
                batch_writes: self.cfg.batch_writes,
                ..StateOptions::default()
            },
        )
    }

    pub fn new(cfg: Config, verbose: bool) -> Arc<Self> {
        let world = World {
            rng: fastrand::Rng::with_seed(cfg.seed ^ 0x9e37_79b9_7f4a_7c15),
            phase: Phase::Chaos,
            trace: Trace::default(),
            queue: QueueModel::new(cfg.sqs),
            mailer: MailerModel::new(&cfg),
            outage: None,
            records: Records {
                skews: cfg.procs.iter().map(|p| p.skew_ms).collect(),
                ..Records::default()
            },
            stats: Stats::default(),
            procs: (0..cfg.procs.len())
                .map(|_| Proc {
                    incarnation: 0,
                    life: None,
                    token: CancellationToken::new(),
                    handle: None,
                })
                .collect(),
        };
        Arc::new(Self {
            cfg,
            started: Instant::now(),
            world: Mutex::new(world),
            arrivals: Notify::new(),
            table: state::new_table(),
            verbose,
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Virtual milliseconds since the seed started.
    pub fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Adds a line to the trace, from `who` (a task's owner id, or `sim`).
    pub fn trace(&self, world: &mut World, who: &str, text: std::fmt::Arguments<'_>) {
        let line = format!("{:>9} {who:<5} {text}", self.now());
        if self.verbose {
            println!("{line}");
        }
        world.trace.push(line);
    }

    /// The start of a port call: the caller must be alive; the call's latency passes; the
    /// scheduler may kill the caller here (before the call takes effect) or decide that it
    /// dies right after (see [`Sim::leave`]).
    pub async fn enter(self: &Arc<Self>, life: &Arc<Life>, op: &str) -> Fate {
        life.alive().await;
        let (latency, fate) = {
            let mut world = self.lock();
            let latency = self.latency(&mut world);
            let fate = if world.chaos()
                && world.stats.call_kills < self.cfg.max_call_kills
                && world.rng.f64() < self.cfg.faults.kill_per_call
            {
                world.stats.call_kills += 1;
                if world.rng.bool() {
                    Fate::DiesBefore
                } else {
                    Fate::DiesAfter
                }
            } else {
                Fate::Lives
            };
            (latency, fate)
        };
        tokio::time::sleep(latency).await;
        life.alive().await;
        if fate == Fate::DiesBefore {
            self.kill(life, &format!("during {op}, before it took effect"));
            never::<()>().await;
        }
        fate
    }

    /// The end of a port call that took effect: the answer's latency, unless the caller dies.
    pub async fn leave(self: &Arc<Self>, life: &Arc<Life>, op: &str, fate: Fate) {
        if fate == Fate::DiesAfter {
            self.kill(life, &format!("during {op}, after it took effect"));
            never::<()>().await;
        }
        let latency = {
            let mut world = self.lock();
            self.latency(&mut world)
        };
        tokio::time::sleep(latency).await;
        life.alive().await;
    }

    fn latency(&self, world: &mut World) -> Duration {
        let (low, high) = self.cfg.latency_ms;
        Duration::from_millis(world.rng.u64(low..=high))
    }

    /// Kills this life's task (if it is still the current one) and schedules its restart.
    pub fn kill(self: &Arc<Self>, life: &Life, why: &str) {
        let delay = {
            let mut world = self.lock();
            let proc = &mut world.procs[life.proc];
            if proc.incarnation != life.incarnation || life.is_dead() {
                return;
            }
            life.dead.store(true, Ordering::SeqCst);
            if let Some(handle) = proc.handle.take() {
                handle.abort();
            }
            proc.life = None;
            world.stats.kills += 1;
            let now = self.now();
            world.records.deaths.insert(life.owner(), now);
            let delay = world.rng.u64(0..=self.cfg.max_restart_ms);
            self.trace(
                &mut world,
                &life.owner(),
                format_args!("KILLED {why}; restart in {delay} ms"),
            );
            delay
        };
        let sim = Arc::clone(self);
        let (proc, incarnation) = (life.proc, life.incarnation);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let dead = {
                let world = sim.lock();
                let slot = &world.procs[proc];
                slot.incarnation == incarnation && slot.life.is_none()
            };
            if dead && sim.lock().phase != Phase::Stopping {
                start(&sim, proc);
            }
        });
    }

    /// Kills a random live task (a timed kill of the chaos phase).
    fn kill_any(self: &Arc<Self>) {
        let life = {
            let mut world = self.lock();
            let live: Vec<Arc<Life>> = world.procs.iter().filter_map(|p| p.life.clone()).collect();
            if live.is_empty() {
                return;
            }
            let pick = world.rng.usize(0..live.len());
            Arc::clone(&live[pick])
        };
        self.kill(&life, "at a random time");
    }
}

/// The renderer every task loads: a per-event template and the digest's, which lists the
/// digest's event ids in its text part so that the mailer can tell which events it carried.
fn renderer() -> Renderer {
    let mut renderer = Renderer::new();
    let templates = [
        (
            "t",
            TemplateSource {
                subject: "{{route}} {{handle}}".into(),
                html: "<p>{{handle}}</p>".into(),
                text: "{{handle}}".into(),
            },
        ),
        (
            "digest",
            TemplateSource {
                subject: "{{route}}: {{events}} events".into(),
                html: "<p>{{events}}</p>".into(),
                text: "{{#each packages}}{{#each revision_list}}[{{event_id}}]{{/each}}{{/each}}"
                    .into(),
            },
        ),
    ];
    for (name, source) in templates {
        renderer
            .add(name, &source)
            .unwrap_or_else(|e| panic!("template {name}: {e}"));
    }
    renderer
}

/// Starts a new incarnation of task `proc`, with an empty dedupe record and a new owner id.
pub fn start(sim: &Arc<Sim>, proc: usize) {
    let cfg = &sim.cfg;
    let options = &cfg.procs[proc];
    let life = {
        let mut world = sim.lock();
        let slot = &mut world.procs[proc];
        slot.incarnation += 1;
        let life = Arc::new(Life {
            proc,
            incarnation: slot.incarnation,
            dead: AtomicBool::new(false),
        });
        slot.life = Some(Arc::clone(&life));
        slot.token = CancellationToken::new();
        world.stats.restarts += u64::from(life.incarnation > 1);
        sim.trace(&mut world, &life.owner(), format_args!("started"));
        life
    };
    let clock = Arc::new(SimClock {
        started: sim.started,
        skew_ms: options.skew_ms,
    });
    let table: Arc<dyn DynStateTable> = Arc::new(SimTable::new(
        Arc::clone(sim),
        Arc::clone(&life),
        Arc::clone(&sim.table),
    ));
    let store = sim.store(table);
    let claims =
        Claims::new(store, life.owner(), Duration::from_secs(cfg.lease_seconds)).with_clock(clock);
    let mailer = Arc::new(SimMailer::new(Arc::clone(sim), Arc::clone(&life)));
    let instruments = Instruments::default();
    let routes = RouteTable::compile(&cfg.route_specs()).unwrap_or_else(|e| panic!("routes: {e}"));
    let pipeline = Pipeline::new(PipelineParts {
        routes,
        renderer: renderer(),
        catalog_host: None,
        default_from: "notify@example.com".into(),
        contact_list: None,
        mailer: Arc::clone(&mailer),
        details: None,
        handled: HandledEvents::new(Duration::from_secs(3600), options.dedupe_capacity),
        claims: Some(claims),
        limiter: RateLimiter::new(options.send_rate),
        instruments: instruments.clone(),
    });
    let worker = Worker::new(
        SimQueue::new(Arc::clone(sim), Arc::clone(&life)),
        pipeline,
        mailer,
        instruments,
        WorkerOptions {
            pollers: options.pollers,
            concurrency: options.concurrency,
            max_messages: options.max_messages,
            wait_seconds: options.wait_seconds,
            visibility_seconds: cfg.sqs.visibility_seconds,
            backoff: Backoff::new(cfg.backoff.0, cfg.backoff.1),
            shutdown_deadline: Duration::from_secs(10),
            digest_check: Duration::from_secs(cfg.digest_check_seconds),
        },
    );
    let mut world = sim.lock();
    let slot = &mut world.procs[proc];
    if slot.incarnation == life.incarnation {
        slot.handle = Some(tokio::spawn(worker.run(slot.token.clone())));
    }
}

/// How long the healthy phase may take to drain everything: the longest backoff, a paused
/// worker's longest probe interval (300 s), leases, digest windows and checks all fit.
const HEALTHY_MAX: Duration = Duration::from_secs(20 * 60);

/// What a seed's run left for the invariants.
pub struct Ending {
    /// Workers that did not stop within a minute of the stop signal.
    pub stuck: Vec<String>,
    /// Whether the healthy phase drained the queue and the windows.
    pub drained: bool,
    /// Virtual milliseconds the seed took.
    pub virtual_ms: u64,
}

/// Runs the seed: tasks start, messages arrive and the scheduled disruptions happen during the
/// chaos phase; then the healthy phase (no faults, every task alive) runs until the queue is
/// empty and no digest window is pending; then every task is stopped gracefully.
pub async fn run(sim: Arc<Sim>) -> Ending {
    for proc in 0..sim.cfg.procs.len() {
        start(&sim, proc);
    }
    let arrivals = tokio::spawn(arrive(Arc::clone(&sim)));
    for (at, action) in sim.cfg.actions.clone() {
        tokio::time::sleep_until(sim.started + Duration::from_millis(at)).await;
        disrupt(&sim, action);
    }
    tokio::time::sleep_until(sim.started + Duration::from_millis(sim.cfg.chaos_end_ms)).await;
    let _ = arrivals.await;

    {
        let mut world = sim.lock();
        world.phase = Phase::Healthy;
        world.outage = None;
        world.mailer.paused_until = 0;
        sim.trace(
            &mut world,
            "sim",
            format_args!("HEALTHY: faults off, every task alive"),
        );
    }
    let dead: Vec<usize> = {
        let world = sim.lock();
        (0..world.procs.len())
            .filter(|p| world.procs[*p].life.is_none())
            .collect()
    };
    for proc in dead {
        start(&sim, proc);
    }
    let healthy_since = Instant::now();
    let mut drained = false;
    while healthy_since.elapsed() < HEALTHY_MAX {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if quiet(&sim).await {
            drained = true;
            break;
        }
    }

    let stopping: Vec<(String, JoinHandle<()>)> = {
        let mut world = sim.lock();
        world.phase = Phase::Stopping;
        sim.trace(
            &mut world,
            "sim",
            format_args!("STOP: graceful stop of every task"),
        );
        world
            .procs
            .iter_mut()
            .filter_map(|p| {
                let life = p.life.as_ref()?;
                p.token.cancel();
                Some((life.owner(), p.handle.take()?))
            })
            .collect()
    };
    let mut stuck = Vec::new();
    for (owner, handle) in stopping {
        match tokio::time::timeout(Duration::from_secs(60), handle).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => stuck.push(format!("{owner}: {e}")),
            Err(_) => stuck.push(format!("{owner}: still running a minute after the stop")),
        }
    }
    Ending {
        stuck,
        drained,
        virtual_ms: sim.now(),
    }
}

/// Puts each message on the queue at its time.
async fn arrive(sim: Arc<Sim>) {
    for message in sim.cfg.messages.clone() {
        tokio::time::sleep_until(sim.started + Duration::from_millis(message.at_ms)).await;
        let event = &sim.cfg.events[message.event];
        {
            let mut world = sim.lock();
            let now = sim.now();
            world
                .queue
                .send(&message.id, message.event, &event.body, now);
            sim.trace(
                &mut world,
                "sim",
                format_args!("arrive {} ({} {})", message.id, event.id, event.handle),
            );
        }
        sim.arrivals.notify_waiters();
    }
}

/// One timed disruption.
fn disrupt(sim: &Arc<Sim>, action: Action) {
    match action {
        Action::Kill => sim.kill_any(),
        Action::Deploy => deploy(sim),
        Action::PauseMailer { for_ms } => {
            let mut world = sim.lock();
            let until = sim.now() + for_ms;
            world.mailer.paused_until = world.mailer.paused_until.max(until);
            world.fault("mail_paused");
            sim.trace(
                &mut world,
                "sim",
                format_args!("SES account paused for {for_ms} ms"),
            );
        }
        Action::Outage { for_ms, unusable } => {
            let mut world = sim.lock();
            let until = sim.now() + for_ms;
            world.outage = Some((until, unusable));
            world.fault(if unusable {
                "state_unusable"
            } else {
                "state_outage"
            });
            sim.trace(
                &mut world,
                "sim",
                format_args!(
                    "state store {} for {for_ms} ms",
                    if unusable { "unusable" } else { "unreachable" }
                ),
            );
        }
    }
}

/// Stops a random live task gracefully and starts it again once it has stopped (unless it was
/// killed meanwhile, or the seed is stopping).
fn deploy(sim: &Arc<Sim>) {
    let picked = {
        let mut world = sim.lock();
        let live: Vec<usize> = (0..world.procs.len())
            .filter(|p| world.procs[*p].life.is_some() && !world.procs[*p].token.is_cancelled())
            .collect();
        if live.is_empty() {
            return;
        }
        let proc = live[world.rng.usize(0..live.len())];
        let slot = &world.procs[proc];
        slot.token.cancel();
        let incarnation = slot.incarnation;
        world.stats.deploys += 1;
        let owner = format!("p{proc}.{incarnation}");
        sim.trace(&mut world, &owner, format_args!("DEPLOY: stop requested"));
        (proc, incarnation)
    };
    let sim = Arc::clone(sim);
    tokio::spawn(async move {
        let (proc, incarnation) = picked;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let world = sim.lock();
            let slot = &world.procs[proc];
            if slot.incarnation != incarnation || slot.life.is_none() {
                return;
            }
            if slot.handle.as_ref().is_none_or(JoinHandle::is_finished) {
                break;
            }
        }
        if sim.lock().phase != Phase::Stopping {
            start(&sim, proc);
        }
    });
}

/// Whether nothing is left to do: no message in the queue (visible or in flight) and no
/// digest window listed but those given up.
async fn quiet(sim: &Arc<Sim>) -> bool {
    if sim.lock().queue.live() > 0 {
        return false;
    }
    if sim.cfg.digest.is_none() {
        return true;
    }
    let store = sim.store(Arc::clone(&sim.table));
    store
        .windows(&[DIGEST_ROUTE.0.to_owned()], 0)
        .await
        .is_ok_and(|views| {
            views
                .iter()
                .all(|v| matches!(v.status, WindowStatus::Failed { .. }))
        })
}
