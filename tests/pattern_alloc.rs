//! The hot path allocates nothing: matching an event against compiled patterns, hit or miss,
//! every operator included, makes no heap allocation. Counted with a global allocator wrapper,
//! so this file is its own test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

use quilt_notify::domain::pattern::Pattern;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn matching_does_not_allocate() {
    let event: Value = serde_json::from_str(include_str!("../events/package-revision.json"))
        .unwrap_or_else(|e| panic!("event: {e}"));
    let patterns: Vec<Pattern> = [
        json!({"source": ["com.quiltdata"], "detail-type": ["package-revision"],
               "detail": {"type": ["created"], "handle": [{"prefix": ""}], "bucket": ["example"]}}),
        json!({"detail": {"handle": [{"prefix": {"equals-ignore-case": "SOME/"}}]}}),
        json!({"detail": {"handle": [{"suffix": {"equals-ignore-case": "PACKAGE"}}]}}),
        json!({"detail": {"type": [{"equals-ignore-case": "CRÉÉ"}, {"equals-ignore-case": "CREATED"}]}}),
        json!({"detail": {"handle": [{"wildcard": "some/*a*"}]}}),
        json!({"detail": {"handle": [{"anything-but": {"wildcard": ["x*", "*y"]}}]}}),
        json!({"detail": {"bucket": [{"anything-but": ["a", "b"]}], "version": [{"anything-but": {"equals-ignore-case": "X"}}]}}),
        json!({"detail": {"version": [{"numeric": [">", 0, "<=", 5]}, 0.1, "0.1"]}}),
        json!({"detail": {"topHash": [{"exists": true}], "missing": [{"exists": false}]}}),
        json!({"detail": {"ip": [{"cidr": "10.0.0.0/8"}, "2001:db8::1"]}}),
        json!({"resources": [{"prefix": "arn:"}], "$or": [{"region": ["eu-west-1"]}, {"account": ["012345678901"]}]}),
        json!({"detail": {"nested": {"deeper": [null]}}}),
        json!({"detail.type": ["created"], "detail": {"user.name": [{"exists": false}]}}),
        json!({"detail": {"type": ["created"], "$or": [{"type": [{"anything-but": "created"}]}, {"bucket": ["example"]}]}}),
    ]
    .iter()
    .map(|p| Pattern::compile(p).unwrap_or_else(|e| panic!("{p}: {e}")))
    .collect();

    // The same event with dot-joined keys, which are looked up from the object above.
    let mut dotted = event.clone();
    if let Some(map) = dotted.as_object_mut() {
        map.insert("detail.extra.key".into(), json!("v"));
    }
    if let Some(detail) = dotted.get_mut("detail").and_then(Value::as_object_mut) {
        detail.insert("user.name".into(), json!("someone"));
    }

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut hits = 0;
    for _ in 0..100 {
        for p in &patterns {
            hits += usize::from(p.matches(&event));
            hits += usize::from(p.matches(&dotted));
        }
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(allocations, 0, "matching allocated {allocations} times");
    assert!(
        hits > 0 && hits < 200 * patterns.len(),
        "the set should mix hits and misses ({hits})"
    );
}
