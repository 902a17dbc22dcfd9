//! Pattern engine benchmarks (targets from issue 3): the Quilt docs' rule pattern against the
//! documented event (≥ 2 M matches/s/core), 100 routes of mixed operators against one event
//! (< 10 µs per event), and compiling a large pattern.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Map, Value};

use quilt_notify::domain::pattern::Pattern;

fn documented_event() -> Value {
    serde_json::from_str(include_str!("../events/package-revision.json"))
        .unwrap_or_else(|e| panic!("event: {e}"))
}

fn compile(pattern: &Value) -> Pattern {
    Pattern::compile(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"))
}

/// The pattern the Quilt docs' CloudFormation produces with an empty PackageNamePrefix.
fn docs_pattern() -> Pattern {
    compile(&json!({
        "source": ["com.quiltdata"],
        "detail-type": ["package-revision"],
        "detail": {"type": ["created"], "handle": [{"prefix": ""}], "bucket": ["example"]}
    }))
}

/// 100 routes such as a real configuration might hold: per-bucket and per-team routes built from
/// every operator, most of which miss the event (as most routes miss most events).
fn hundred_routes() -> Vec<Pattern> {
    (0..100)
        .map(|i| {
            let bucket = if i % 10 == 0 {
                "example".to_owned()
            } else {
                format!("bucket-{i}")
            };
            let handle = match i % 8 {
                0 => json!([{"prefix": format!("team-{i}/")}]),
                1 => json!([{"prefix": {"equals-ignore-case": "SOME/"}}]),
                2 => json!([{"suffix": format!("/pkg-{i}")}]),
                3 => json!([{"wildcard": format!("team-{i}/*/data*")}]),
                4 => json!([{"anything-but": {"prefix": ["tmp/", "scratch/"]}}]),
                5 => json!([{"equals-ignore-case": format!("Team-{i}/Package")}]),
                6 => json!([format!("team-{i}/a"), format!("team-{i}/b"), "some/package"]),
                _ => json!([{"exists": true}]),
            };
            let mut detail = Map::new();
            detail.insert("bucket".into(), json!([bucket, {"prefix": "shared-"}]));
            detail.insert("handle".into(), handle);
            detail.insert("type".into(), json!([{"anything-but": "deleted"}]));
            if i % 3 == 0 {
                detail.insert(
                    "version".into(),
                    json!([{"numeric": [">=", 0, "<", 10]}, {"exists": false}]),
                );
            }
            let mut pattern = json!({
                "source": ["com.quiltdata"],
                "detail-type": ["package-revision"],
                "detail": detail,
            });
            if i % 5 == 0 {
                pattern["$or"] =
                    json!([{"region": ["us-east-1", "us-west-2"]}, {"account": ["012345678901"]}]);
            }
            compile(&pattern)
        })
        .collect()
}

/// A pattern far larger than EventBridge's size limit: 200 fields under nested objects, each
/// with ten alternatives mixing every operator, plus a `$or`.
fn large_pattern() -> Value {
    let mut detail = Map::new();
    for f in 0..200 {
        let alternatives: Vec<Value> = (0..10)
            .map(|a| match a % 10 {
                0 => json!(format!("value-{f}-{a}")),
                1 => json!(f * 10 + a),
                2 => json!({"prefix": format!("p{f}")}),
                3 => json!({"suffix": {"equals-ignore-case": format!("S{f}")}}),
                4 => json!({"wildcard": format!("w{f}*x*y")}),
                5 => json!({"anything-but": ["a", "b", "c"]}),
                6 => json!({"numeric": [">", f, "<=", f + 100]}),
                7 => json!({"cidr": "10.0.0.0/8"}),
                8 => json!({"equals-ignore-case": format!("E{f}")}),
                _ => json!({"exists": true}),
            })
            .collect();
        let group = detail
            .entry(format!("group-{}", f / 20))
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(group) = group {
            group.insert(format!("field-{f}"), Value::Array(alternatives));
        }
    }
    json!({
        "source": ["com.quiltdata"],
        "detail": detail,
        "$or": [{"region": ["us-east-1"]}, {"account": [{"prefix": "0"}]}, {"resources": [{"exists": false}]}]
    })
}

fn benches(c: &mut Criterion) {
    let event = documented_event();

    let docs = docs_pattern();
    assert!(docs.matches(&event));
    let mut group = c.benchmark_group("match");
    group.throughput(Throughput::Elements(1));
    group.bench_function("docs_pattern_vs_documented_event", |b| {
        b.iter(|| black_box(&docs).matches(black_box(&event)))
    });
    group.finish();

    let routes = hundred_routes();
    let hits = routes.iter().filter(|r| r.matches(&event)).count();
    assert!(hits > 0 && hits < routes.len(), "mixed routes: {hits} hits");
    let mut group = c.benchmark_group("routes");
    group.throughput(Throughput::Elements(1));
    group.bench_function("100_mixed_routes_vs_one_event", |b| {
        b.iter(|| {
            black_box(&routes)
                .iter()
                .filter(|r| r.matches(black_box(&event)))
                .count()
        })
    });
    group.finish();

    let large = large_pattern();
    eprintln!("large pattern: {} bytes of JSON", large.to_string().len());
    c.bench_function("compile/large_pattern", |b| {
        b.iter(|| Pattern::compile(black_box(&large)).is_ok())
    });
    c.bench_function("compile/docs_pattern", |b| {
        let p = json!({"source": ["com.quiltdata"], "detail-type": ["package-revision"],
                       "detail": {"type": ["created"], "handle": [{"prefix": ""}], "bucket": ["example"]}});
        b.iter(|| Pattern::compile(black_box(&p)).is_ok())
    });
}

criterion_group!(pattern, benches);
criterion_main!(pattern);
