//! The per-message domain work and the whole in-process pipeline with no-op ports: what one
//! message costs the worker's CPU before any network, without and with claims in a shared state
//! (held in memory here: the DynamoDB calls' own cost is measured end to end by scripts/bench,
//! phase send_state). `cargo bench --bench pipeline`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use quilt_notify::adapters::memory::table::MemoryTable;
use quilt_notify::domain::event::PackageEvent;
use quilt_notify::domain::render::template_data;
use quilt_notify::domain::route::{RouteSpec, RouteTable};
use quilt_notify::worker::claims::Claims;
use quilt_notify::worker::dedupe::HandledEvents;
use quilt_notify::worker::outcome::Outcome;
use quilt_notify::worker::rate::RateLimiter;
use quilt_notify::worker::state::{StateOptions, StateStore};
use quilt_notify::worker::{Instruments, Pipeline, PipelineParts};

mod common;
use common::{renderer, NoopMailer};

const EVENT: &str = include_str!("../events/package-revision.json");

fn routes() -> RouteTable {
    common::routes("example")
}

fn domain(c: &mut Criterion) {
    let mut group = c.benchmark_group("domain");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse", |b| {
        b.iter(|| PackageEvent::parse(std::hint::black_box(EVENT)))
    });
    let event = PackageEvent::parse(EVENT).expect("event");
    let table = routes();
    group.bench_function("match_docs_route", |b| {
        b.iter(|| {
            table
                .matching(std::hint::black_box(event.envelope()))
                .count()
        })
    });
    let renderer = renderer();
    group.bench_function("template_data+render", |b| {
        b.iter(|| {
            let data = template_data(&event, Some("catalog.example.com"), "package-created", None);
            renderer.render("package-created", data)
        })
    });
    group.finish();
}

/// A pipeline with no-op ports, claiming in `claims` when given.
fn build(claims: Option<Claims>) -> Pipeline<NoopMailer> {
    build_with(routes(), claims)
}

/// A pipeline with no-op ports for `routes`.
fn build_with(routes: RouteTable, claims: Option<Claims>) -> Pipeline<NoopMailer> {
    Pipeline::new(PipelineParts {
        routes,
        renderer: renderer(),
        catalog_host: Some("catalog.example.com".to_owned()),
        default_from: "quilt@example.com".to_owned(),
        contact_list: None,
        mailer: Arc::new(NoopMailer),
        details: None,
        // A window of zero: every message is new, as in steady state with distinct events.
        handled: HandledEvents::new(Duration::ZERO, 1),
        claims,
        limiter: RateLimiter::new(0.0),
        instruments: Instruments::default(),
    })
}

/// The documented event with a fresh id: claims remember ids, so each message must be new.
fn fresh_event(n: u64) -> String {
    EVENT.replacen("\"id\": \"", &format!("\"id\": \"bench-{n}-"), 1)
}

fn pipeline(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pipeline = build(None);
    for _ in 0..2 {
        let (outcome, _) = runtime.block_on(pipeline.process(EVENT));
        assert_eq!(outcome, Outcome::Sent, "every iteration does the full work");
    }
    let state = StateStore::new(Arc::new(MemoryTable::new()), StateOptions::default());
    let claiming = build(Some(Claims::new(state, "bench", Duration::from_secs(60))));
    assert_ne!(fresh_event(1), EVENT, "the id is replaced");
    for n in 0..2 {
        let (outcome, _) = runtime.block_on(claiming.process(&fresh_event(n)));
        assert_eq!(outcome, Outcome::Sent, "a new event is claimed and sent");
    }
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    group.bench_function("process_one_message_noop_ports", |b| {
        b.to_async(&runtime)
            .iter(|| pipeline.process(std::hint::black_box(EVENT)))
    });
    // The same work on fresh ids, with and without claims, so the two differ only by the claim,
    // the lease and the mark.
    let mut n = 1_000;
    group.bench_function("process_fresh_message_no_state", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                n += 1;
                fresh_event(n)
            },
            |body| {
                let pipeline = &pipeline;
                async move { pipeline.process(&body).await }
            },
            BatchSize::SmallInput,
        )
    });
    let mut n = 1_000_000;
    group.bench_function("process_fresh_message_memory_state", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                n += 1;
                fresh_event(n)
            },
            |body| {
                let claiming = &claiming;
                async move { claiming.process(&body).await }
            },
            BatchSize::SmallInput,
        )
    });
    // A digest route: each message records its event into the route's window (the digest is
    // sent later, by the digest check, not here). The protocol's own CPU per recorded event, and
    // what DynamoDB would bill for it, counted by the in-memory table.
    let table = Arc::new(MemoryTable::new());
    let state = StateStore::new(Arc::clone(&table) as _, StateOptions::default());
    let digest = RouteSpec::builder("daily")
        .no_template()
        .details(false)
        .digest(serde_json::json!({"every": "1h", "template": "package-created"}))
        .build();
    let routes = RouteTable::compile(&[digest]).expect("routes");
    let recording = build_with(
        routes,
        Some(Claims::new(state, "bench", Duration::from_secs(60))),
    );
    let (outcome, _) = runtime.block_on(recording.process(&fresh_event(0)));
    assert_eq!(
        outcome,
        Outcome::Recorded,
        "a digest route records the event"
    );
    let before = table.units();
    let mut n = 2_000_000;
    group.bench_function("process_fresh_message_digest_route", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                n += 1;
                fresh_event(n)
            },
            |body| {
                let recording = &recording;
                async move { recording.process(&body).await }
            },
            BatchSize::SmallInput,
        )
    });
    let events = n - 2_000_000;
    let after = table.units();
    if events > 0 {
        let per = |a: u64, b: u64| (a - b) as f64 / events as f64;
        println!(
            "digest recording, per recorded event ({events} events into one window): {:.2} state calls, {:.2} write units, {:.2} read units",
            per(after.calls, before.calls),
            per(after.write, before.write),
            per(after.read, before.read),
        );
    }
    group.finish();
}

criterion_group!(benches, domain, pipeline);
criterion_main!(benches);
