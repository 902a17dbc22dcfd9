//! [`Opening`]: what most integration tests begin with, in one call: a stack, its config (one
//! route `all` for every package of its bucket unless the test names its own routes), and the
//! worker running on it.

use std::path::PathBuf;

use super::state::StateTable;
use super::{every_package, StackOptions, TestStack, Worker};

/// Routes written for the stack once it exists (they name its bucket and recipient).
type Routes<'a> = Box<dyn FnOnce(&TestStack) -> String + 'a>;

/// A test's opening, built up and then [`started`](Opening::start) (or only
/// [`configured`](Opening::configure), for a test that queues events before any worker runs).
#[derive(Default)]
pub struct Opening<'a> {
    options: StackOptions,
    ses: Option<&'a str>,
    routes: Option<Routes<'a>>,
    extra: String,
    state: Option<(&'a StateTable, &'a str, u32)>,
    env: Vec<(&'static str, String)>,
}

/// What [`Opening::start`] made. Bind `stack` even where a test does not use it (`stack:
/// _stack`): a pattern that leaves it out with `..` drops it at once, which deletes the queue.
pub struct Opened {
    pub stack: TestStack,
    pub config: PathBuf,
    pub worker: Worker,
}

impl<'a> Opening<'a> {
    /// The defaults: [`StackOptions::default`], the SES emulator, the route `all`, no extra
    /// sections, no state table, no environment overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// The queue moves a message to the DLQ after `max_receive_count` receives, and hides a
    /// received one for `visibility_timeout` seconds.
    pub fn queue(mut self, max_receive_count: u32, visibility_timeout: u32) -> Self {
        self.options = StackOptions {
            max_receive_count,
            visibility_timeout,
        };
        self
    }

    /// The worker sends to `url` (a fault proxy, moto) instead of the SES emulator.
    pub fn ses(mut self, url: &'a str) -> Self {
        self.ses = Some(url);
        self
    }

    /// The config's routes, written once the stack exists, instead of `all`.
    pub fn routes(mut self, routes: impl FnOnce(&TestStack) -> String + 'a) -> Self {
        self.routes = Some(Box::new(routes));
        self
    }

    /// More config sections (appended before the routes).
    pub fn extra(mut self, extra: &str) -> Self {
        self.extra.push_str(extra);
        self
    }

    /// The shared state table `table`, reached through `via` (moto, or a proxy in front of it),
    /// with leases of `lease_seconds`; created (`quilt-notify state create`) with the config.
    pub fn state(mut self, table: &'a StateTable, via: &'a str, lease_seconds: u32) -> Self {
        self.state = Some((table, via, lease_seconds));
        self
    }

    /// Environment overrides for the worker.
    pub fn env(mut self, pairs: &[(&'static str, &str)]) -> Self {
        self.env
            .extend(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())));
        self
    }

    /// The stack and its config (and the state table, if any), with no worker running yet.
    pub async fn configure(self) -> (TestStack, PathBuf) {
        let (stack, config, _env) = self.made().await;
        (stack, config)
    }

    /// The stack, its config, and the worker started on it.
    pub async fn start(self) -> Opened {
        let (stack, config, env) = self.made().await;
        let worker = stack.start_worker_with_env(&config, &env);
        Opened {
            stack,
            config,
            worker,
        }
    }

    async fn made(self) -> (TestStack, PathBuf, Vec<(&'static str, String)>) {
        let stack = TestStack::spawn(self.options).await;
        let ses = self
            .ses
            .map_or_else(|| stack.endpoints.ses.clone(), str::to_owned);
        let routes = match self.routes {
            Some(routes) => routes(&stack),
            None => stack.route("all", &every_package(&stack)),
        };
        let mut extra = self.extra;
        if let Some((table, via, lease_seconds)) = self.state {
            extra.push_str(&table.section(via, lease_seconds));
        }
        let config = stack.config(&ses, &routes, &extra);
        if let Some((table, ..)) = self.state {
            table.create(&config);
        }
        (stack, config, self.env)
    }
}
