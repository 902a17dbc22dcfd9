//! Property tests for the pattern engine: it never panics, whatever the pattern and the event,
//! it is deterministic, and a few laws of the language hold for arbitrary values.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use quilt_notify::domain::pattern::Pattern;

/// Keys that make arbitrary objects look like patterns: operator names, `$or`, plain fields.
const KEYS: &[&str] = &[
    "a",
    "b",
    "detail",
    "$or",
    "prefix",
    "suffix",
    "equals-ignore-case",
    "anything-but",
    "numeric",
    "exists",
    "wildcard",
    "cidr",
    "=",
    "<",
    ">=",
    "x",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        (-6e9f64..6e9).prop_map(|f| json!(f)),
        "[a-zA-Z0-9*\\\\./:é ]{0,8}".prop_map(Value::from),
        prop::sample::select(vec![
            "<",
            "<=",
            "=",
            ">",
            ">=",
            "10.0.0.0/24",
            "::/0",
            "a**b",
            "10.0.0.1"
        ])
        .prop_map(Value::from),
    ]
}

/// Arbitrary JSON, biased towards pattern-like shapes.
fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(KEYS).prop_map(str::to_owned),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One alternative of a leaf, type-correct most of the time, so most patterns compile and
/// matching itself gets exercised.
fn matcher() -> impl Strategy<Value = Value> {
    let text = "[a-c*\\\\.]{0,4}";
    prop_oneof![
        scalar(),
        text.prop_map(|s| json!({"prefix": s})),
        text.prop_map(|s| json!({"suffix": {"equals-ignore-case": s}})),
        text.prop_map(|s| json!({"equals-ignore-case": s})),
        text.prop_map(|s| json!({"wildcard": s})),
        text.prop_map(|s| json!({"anything-but": {"wildcard": [s]}})),
        prop::collection::vec(text, 1..3).prop_map(|v| json!({"anything-but": v})),
        (-10i64..10).prop_map(|n| json!({"anything-but": n})),
        ((-10i64..10), (1i64..10)).prop_map(|(a, d)| json!({"numeric": [">=", a, "<", a + d]})),
        (-10i64..10).prop_map(|n| json!({"numeric": ["=", n]})),
        any::<bool>().prop_map(|b| json!({"exists": b})),
        prop::sample::select(vec!["10.0.0.0/8", "::/0", "a.b/8"]).prop_map(|c| json!({"cidr": c})),
    ]
}

/// Pattern-shaped JSON: nested objects over a few keys, leaves are arrays of matchers, `$or`
/// sometimes.
fn pattern_like() -> impl Strategy<Value = Value> {
    let leaf = prop::collection::vec(matcher(), 1..4).prop_map(Value::Array);
    leaf.prop_recursive(3, 24, 3, |inner| {
        prop_oneof![
            4 => prop::collection::btree_map(prop::sample::select(vec!["a", "b", "detail"]).prop_map(str::to_owned), inner.clone(), 1..3)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
            1 => prop::collection::vec(
                prop::collection::btree_map(prop::sample::select(vec!["a", "b"]).prop_map(str::to_owned), inner, 1..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
                2..3,
            )
            .prop_map(|branches| json!({"$or": branches})),
        ]
    })
    .prop_filter("an object", Value::is_object)
}

fn plain_string() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9./-]{0,6}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Compiling any JSON and matching it against any JSON never panics; first_mismatch agrees
    /// with matches.
    #[test]
    fn never_panics(pattern in json_value(), event in json_value()) {
        if let Ok(p) = Pattern::compile(&pattern) {
            let matched = p.matches(&event);
            prop_assert_eq!(p.first_mismatch(&event).is_none(), matched);
        }
    }

    /// The same for pattern-shaped input, where most patterns compile and matching goes deep.
    #[test]
    fn never_panics_on_pattern_shaped_input(pattern in pattern_like(), event in json_value()) {
        if let Ok(p) = Pattern::compile(&pattern) {
            let matched = p.matches(&event);
            prop_assert_eq!(p.first_mismatch(&event).is_none(), matched);
        }
    }

    /// Compiling twice gives the same verdict, and both compiled patterns the same answers.
    #[test]
    fn deterministic(pattern in json_value(), events in prop::collection::vec(json_value(), 1..4)) {
        match (Pattern::compile(&pattern), Pattern::compile(&pattern)) {
            (Ok(a), Ok(b)) => {
                for e in &events {
                    prop_assert_eq!(a.matches(e), b.matches(e));
                    prop_assert_eq!(a.matches(e), a.matches(e));
                    prop_assert_eq!(a.first_mismatch(e), b.first_mismatch(e));
                }
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "different verdicts: {:?} / {:?}", a.err(), b.err()),
        }
    }

    /// A scalar field (or a missing one) either exists or does not: exactly one of the two
    /// `exists` patterns matches.
    #[test]
    fn exists_true_and_false_partition_scalars(value in prop::option::of(scalar())) {
        let event = match &value { Some(v) => json!({"x": v}), None => json!({}) };
        let yes = Pattern::compile(&json!({"x": [{"exists": true}]})).map(|p| p.matches(&event));
        let no = Pattern::compile(&json!({"x": [{"exists": false}]})).map(|p| p.matches(&event));
        prop_assert_eq!(yes.clone().ok(), Some(value.is_some()));
        prop_assert_eq!(no.ok(), Some(value.is_none()));
    }

    /// For a present string, `anything-but: s` is exactly the complement of `[s]`.
    #[test]
    fn anything_but_is_the_complement_of_equality(s in plain_string(), v in plain_string()) {
        let event = json!({"x": v});
        let equal = Pattern::compile(&json!({"x": [s.clone()]})).map(|p| p.matches(&event)).ok();
        let but = Pattern::compile(&json!({"x": [{"anything-but": s}]})).map(|p| p.matches(&event)).ok();
        prop_assert_eq!(equal.map(|b| !b), but);
    }

    /// `equals-ignore-case` ignores the case of both sides; `prefix: ""` matches every string and
    /// nothing else; a wildcard without `*` is an exact match.
    #[test]
    fn operator_laws(s in plain_string(), other in scalar()) {
        let upper = json!({"x": s.to_uppercase()});
        let lower = json!({"x": s.to_lowercase()});
        let eic = Pattern::compile(&json!({"x": [{"equals-ignore-case": s.clone()}]})).ok();
        prop_assert_eq!(eic.as_ref().map(|p| (p.matches(&upper), p.matches(&lower))), Some((true, true)));

        let empty_prefix = Pattern::compile(&json!({"x": [{"prefix": ""}]})).ok();
        prop_assert_eq!(empty_prefix.as_ref().map(|p| p.matches(&json!({"x": s.clone()}))), Some(true));
        prop_assert_eq!(empty_prefix.as_ref().map(|p| p.matches(&json!({"x": other.clone()}))), Some(other.is_string()));

        let glob = Pattern::compile(&json!({"x": [{"wildcard": s.clone()}]})).ok();
        let exact = Pattern::compile(&json!({"x": [s.clone()]})).ok();
        let probe = json!({"x": other});
        prop_assert_eq!(glob.map(|p| p.matches(&probe)), exact.map(|p| p.matches(&probe)));
    }

    /// Numbers are compared as numbers: an integer and the same value written as a float match
    /// each other, and a number never matches its string form.
    #[test]
    fn numbers_compare_as_numbers(n in -5_000_000_000i64..5_000_000_000) {
        let p = Pattern::compile(&json!({"x": [n]})).ok();
        prop_assert_eq!(p.as_ref().map(|p| p.matches(&json!({"x": n as f64}))), Some(true));
        prop_assert_eq!(p.as_ref().map(|p| p.matches(&json!({"x": n.to_string()}))), Some(false));
        let eq = Pattern::compile(&json!({"x": [{"numeric": ["=", n]}]})).ok();
        prop_assert_eq!(eq.map(|p| p.matches(&json!({"x": n as f64}))), Some(true));
    }
}
