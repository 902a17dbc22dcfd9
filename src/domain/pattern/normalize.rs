//! Rewrites a valid pattern into the rules Event Ruler would build from it, before compiling.
//!
//! Ruler flattens a pattern into one map from dotted path to values per `$or` branch
//! (`JsonRuleCompiler.parseObject` / `parseIntoOrRelationship` / `writeRules`). Two consequences
//! are reproduced here, on the JSON, so the matcher keeps its tree:
//! - **dot-joined keys**: `{"detail.state": [..]}` is the path `detail.state`, the same as
//!   `{"detail": {"state": [..]}}`; dotted keys are split into nested objects and merged with
//!   their siblings;
//! - **a field constrained again inside a `$or` branch**: each branch becomes its own rule, and
//!   `writeRules` puts the branch's values for a path in place of the ones already there. So a
//!   path constrained both beside a `$or` and inside one of its branches is moved into every
//!   branch: the branches that constrain it keep their own values, the others get the outer ones.
//!
//! JSON objects reach us as sorted maps, so the written order of keys is unknown; the rewrite
//! assumes the usual order, the `$or` written after the fields it overrides (see
//! `docs/patterns.md`).

use serde_json::{Map, Value};

const OR: &str = "$or";

/// The pattern Ruler would see: dotted keys split, `$or` overrides applied.
pub(super) fn normalize(pattern: &Map<String, Value>) -> Map<String, Value> {
    let mut out = split_dotted(pattern);
    apply_overrides(&mut out);
    out
}

/// Splits every dotted key into nested objects, merging objects that meet at the same path; for
/// two leaves at the same path the one visited last wins, as Ruler's `rule.put`.
fn split_dotted(map: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in map {
        let value = match value {
            Value::Object(inner) => Value::Object(split_dotted(inner)),
            Value::Array(branches) if key == OR => Value::Array(
                branches
                    .iter()
                    .map(|b| match b {
                        Value::Object(inner) => Value::Object(split_dotted(inner)),
                        other => other.clone(),
                    })
                    .collect(),
            ),
            other => other.clone(),
        };
        if key == OR {
            out.insert(key.clone(), value);
        } else {
            let segments: Vec<&str> = key.split('.').collect();
            insert_at(&mut out, &segments, value);
        }
    }
    out
}

/// Puts `value` at the path `segments` below `map`, merging objects on the way.
fn insert_at(map: &mut Map<String, Value>, segments: &[&str], value: Value) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    if rest.is_empty() {
        match (map.get_mut(*first), value) {
            (Some(Value::Object(existing)), Value::Object(incoming)) => {
                for (k, v) in incoming {
                    insert_at(existing, &[k.as_str()], v);
                }
            }
            (_, value) => {
                map.insert((*first).to_owned(), value);
            }
        }
        return;
    }
    let slot = map
        .entry((*first).to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    if let Value::Object(inner) = slot {
        insert_at(inner, rest, value);
    }
}

/// Leaf paths below `map`: everything that is not an object is a leaf. With `into_or`, the
/// leaves of `$or` branches count too (at the path of the object holding the `$or`).
fn leaf_paths(
    map: &Map<String, Value>,
    into_or: bool,
    prefix: &mut Vec<String>,
    out: &mut Vec<Vec<String>>,
) {
    for (key, value) in map {
        if key == OR {
            if into_or {
                for branch in value.as_array().into_iter().flatten() {
                    if let Value::Object(inner) = branch {
                        leaf_paths(inner, true, prefix, out);
                    }
                }
            }
            continue;
        }
        prefix.push(key.clone());
        match value {
            Value::Object(inner) => leaf_paths(inner, into_or, prefix, out),
            _ => out.push(prefix.clone()),
        }
        prefix.pop();
    }
}

fn paths(map: &Map<String, Value>, into_or: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    leaf_paths(map, into_or, &mut Vec::new(), &mut out);
    out
}

/// Removes the leaf at `path`, dropping objects it leaves empty.
fn take(map: &mut Map<String, Value>, path: &[String]) -> Option<Value> {
    let (first, rest) = path.split_first()?;
    if rest.is_empty() {
        return map.remove(first);
    }
    let taken = match map.get_mut(first) {
        Some(Value::Object(inner)) => take(inner, rest),
        _ => None,
    };
    if map
        .get(first)
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
    {
        map.remove(first);
    }
    taken
}

/// Moves the paths constrained both beside a `$or` and inside its branches into the branches,
/// top-down, so a nested `$or` sees what an outer one moved in.
fn apply_overrides(map: &mut Map<String, Value>) {
    if let Some(Value::Array(branches)) = map.get(OR) {
        let all_objects = branches.iter().all(Value::is_object);
        let inner: Vec<Vec<String>> = branches
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|b| paths(b, true))
            .collect();
        let overridden: Vec<Vec<String>> = paths(map, false)
            .into_iter()
            .filter(|p| inner.contains(p))
            .collect();
        if all_objects && !overridden.is_empty() {
            let moved: Vec<(Vec<String>, Value)> = overridden
                .into_iter()
                .filter_map(|p| take(map, &p).map(|v| (p, v)))
                .collect();
            if let Some(Value::Array(branches)) = map.get_mut(OR) {
                for branch in branches.iter_mut().filter_map(Value::as_object_mut) {
                    let own = paths(branch, false);
                    for (path, value) in &moved {
                        if !own.contains(path) {
                            let segments: Vec<&str> = path.iter().map(String::as_str).collect();
                            insert_at(branch, &segments, value.clone());
                        }
                    }
                }
            }
        }
    }
    for (key, value) in map.iter_mut() {
        match value {
            Value::Object(inner) => apply_overrides(inner),
            Value::Array(branches) if key == OR => {
                for branch in branches.iter_mut().filter_map(Value::as_object_mut) {
                    apply_overrides(branch);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;
    use serde_json::{json, Value};

    fn norm(pattern: Value) -> Value {
        match pattern {
            Value::Object(map) => Value::Object(normalize(&map)),
            other => other,
        }
    }

    #[test]
    fn dotted_keys_become_nested_objects_merged_with_their_siblings() {
        assert_eq!(
            norm(json!({"detail.state": ["running"], "detail": {"id": [1]}})),
            json!({"detail": {"state": ["running"], "id": [1]}})
        );
        assert_eq!(
            norm(json!({"detail": {"state.status": {"status": ["running"]}}})),
            json!({"detail": {"state": {"status": {"status": ["running"]}}}})
        );
        assert_eq!(
            norm(json!({"$or": [{"a.b": ["x"]}, {"c": ["y"]}]})),
            json!({"$or": [{"a": {"b": ["x"]}}, {"c": ["y"]}]})
        );
    }

    #[test]
    fn a_branch_constraint_replaces_the_outer_one_in_that_branch_only() {
        assert_eq!(
            norm(json!({"detail": {
                "status": ["open"],
                "$or": [{"status": [{"anything-but": "open"}]}, {"priority": ["high"]}]
            }})),
            json!({"detail": {
                "$or": [
                    {"status": [{"anything-but": "open"}]},
                    {"priority": ["high"], "status": ["open"]}
                ]
            }})
        );
        // Across levels: a root `$or` overriding a nested field, through a nested `$or`.
        assert_eq!(
            norm(json!({
                "detail": {"status": ["open"], "id": [1]},
                "$or": [{"source": ["a"]}, {"$or": [{"detail": {"status": ["x"]}}, {"region": ["r"]}]}]
            })),
            json!({
                "detail": {"id": [1]},
                "$or": [
                    {"source": ["a"], "detail": {"status": ["open"]}},
                    {"$or": [
                        {"detail": {"status": ["x"]}},
                        {"region": ["r"], "detail": {"status": ["open"]}}
                    ]}
                ]
            })
        );
    }

    #[test]
    fn patterns_without_dots_or_overrides_are_unchanged() {
        let pattern =
            json!({"source": ["s"], "detail": {"$or": [{"a": [1]}, {"b": [2]}], "c": [3]}});
        assert_eq!(norm(pattern.clone()), pattern);
    }
}
