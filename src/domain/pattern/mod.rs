//! EventBridge event patterns: the whole language, compiled once at start-up and matched against
//! every event without allocating.
//!
//! A route's `pattern` is an EventBridge event pattern, so a rule's `EventPattern` can be pasted
//! into a route unchanged and must give the answer EventBridge gives. This module owns that
//! promise: exact values (strings, numbers compared as numbers, booleans, `null`), arrays of
//! alternatives, nested objects, event arrays (any element may match), `prefix`, `suffix`,
//! `equals-ignore-case`, `anything-but`, `numeric`, `exists`, `wildcard`, `cidr` and `$or`; and
//! it refuses, with the path and the reason, every pattern EventBridge refuses.
//!
//! Semantics come from the EventBridge user guide; where it is silent they follow Event Ruler,
//! the open-source engine EventBridge runs (<https://github.com/aws/event-ruler>). The choices and
//! the known differences from LocalStack are listed in `docs/patterns.md`.
//!
//! Matching walks the pattern tree and the event together:
//! - an object pattern against an event array matches if one element matches it whole, so all
//!   fields tested inside one array element come from that same element (Ruler's
//!   "array-consistent" matching);
//! - a leaf (a field's array of alternatives) against an event array matches if one element
//!   matches one alternative;
//! - a leaf sees a missing field, an object, or an empty array as "absent": only
//!   `{"exists": false}` matches there (exists works on leaf nodes only);
//! - keys are paths joined with dots, as in Ruler: the pattern is normalized first (dotted keys
//!   split, see `normalize`), and an event key holding dots (`"state.status"`) is found from the
//!   object above it, so a field is looked up in a [`Scope`]: every event object that can hold it.

mod cidr;
mod compile;
mod complexity;
mod leaf;
mod normalize;
#[cfg(test)]
mod tests;
mod wildcard;

use serde_json::{Map, Value};

use leaf::Matcher;

/// A compiled event pattern. Cheap to share between threads: it is immutable.
#[derive(Debug, Clone)]
pub struct Pattern {
    root: ObjectNode,
}

/// Why a pattern is invalid, as EventBridge's `InvalidEventPatternException` would say it:
/// where in the pattern (a dotted path, `$or[i]` for a branch) and what is wrong.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[error("at `{path}`: {reason}")]
pub struct PatternError {
    /// Dotted path inside the pattern, e.g. `detail.handle`; `(root)` for the whole pattern.
    pub path: String,
    /// What is wrong, e.g. `unknown operator "prefx"`.
    pub reason: String,
}

/// An object in the pattern: every field must match, and for every `$or` one branch must.
#[derive(Debug, Clone)]
struct ObjectNode {
    fields: Box<[Field]>,
    ors: Box<[Box<[ObjectNode]>]>,
}

/// One key of a pattern object and what its value must match.
#[derive(Debug, Clone)]
struct Field {
    /// The field's whole path from the root, dot-joined without `$or`: `detail.state`.
    path: Box<str>,
    /// Where the field's own key starts in `path`.
    key_at: usize,
    node: Node,
}

/// The event objects a pattern object's fields are looked up in: each `map` holds a field under
/// `path[offset..]`. The innermost object holds it under its own key; an ancestor holds it under
/// a dotted key (`"state.status"` seen from `detail`). A linked list on the stack: no allocation.
#[derive(Clone, Copy)]
struct Scope<'a> {
    map: &'a Map<String, Value>,
    offset: usize,
    up: Option<&'a Scope<'a>>,
}

impl<'a> Scope<'a> {
    fn iter(scope: Option<&'a Scope<'a>>) -> impl Iterator<Item = &'a Scope<'a>> {
        std::iter::successors(scope, |s| s.up)
    }
}

#[derive(Debug, Clone)]
enum Node {
    Object(ObjectNode),
    Leaf(Leaf),
}

/// A field's array of alternatives: one must match one scalar of the event field.
#[derive(Debug, Clone)]
struct Leaf {
    matchers: Box<[Matcher]>,
    /// Whether an absent field matches (the leaf holds `{"exists": false}`).
    matches_absent: bool,
}

impl Pattern {
    /// Compiles a pattern once, at start-up.
    ///
    /// # Errors
    /// A [`PatternError`] naming the path in the pattern and the reason when EventBridge would
    /// reject the pattern: not an object, empty, a value that is neither an object nor an array,
    /// an empty array, an unknown operator, an operand of the wrong type, a numeric bound out of
    /// range, consecutive `*` in a wildcard, a malformed CIDR, a malformed `$or`, and so on.
    pub fn compile(pattern: &Value) -> Result<Pattern, PatternError> {
        // Validated as written, so errors name the paths the author wrote; then compiled as Ruler
        // would see it.
        compile::root(pattern, true)?;
        let Value::Object(map) = pattern else {
            return compile::root(pattern, true).map(|root| Pattern { root });
        };
        let normalized = normalize::normalize(map);
        if let Some(path) = complexity::too_complex(&normalized) {
            return Err(PatternError {
                path,
                reason: complexity::TOO_COMPLEX.to_owned(),
            });
        }
        let mut root = compile::root(&Value::Object(normalized), false)?;
        root.set_paths("");
        Ok(Pattern { root })
    }

    /// Whether `event` matches. The hot path: no allocation, no parsing.
    pub fn matches(&self, event: &Value) -> bool {
        match event {
            Value::Object(map) => self.root.matches_in(Some(&Scope {
                map,
                offset: 0,
                up: None,
            })),
            Value::Array(items) if !items.is_empty() => items.iter().any(|e| self.matches(e)),
            _ => self.root.matches_in(None),
        }
    }

    /// Whether the pattern tests the top-level field `key` or anything below it, in any `$or`
    /// branch: a `package_pattern` that never names `changes` can be decided without them.
    pub fn names(&self, key: &str) -> bool {
        self.root.names(key)
    }

    /// For diagnostics: `None` when `event` matches, else the dotted path of the first pattern
    /// field (in key order) that fails, e.g. `detail.handle`, or `….$or` when no branch of a
    /// `$or` matches.
    pub fn first_mismatch(&self, event: &Value) -> Option<String> {
        if self.matches(event) {
            return None;
        }
        let mut path = String::new();
        self.root.explain(Some(event), &mut path);
        if path.is_empty() {
            path.push_str("(root)");
        }
        Some(path)
    }
}

impl ObjectNode {
    /// Gives every field its whole path (the compiler knows only its key).
    fn set_paths(&mut self, parent: &str) {
        for field in self.fields.iter_mut() {
            if !parent.is_empty() {
                field.path = format!("{parent}.{}", field.path).into();
                field.key_at = parent.len() + 1;
            }
            if let Node::Object(inner) = &mut field.node {
                inner.set_paths(&field.path);
            }
        }
        for branch in self.ors.iter_mut().flat_map(|b| b.iter_mut()) {
            branch.set_paths(parent);
        }
    }

    /// See [`Pattern::names`]; paths are whole, so a nested field's path starts with `key.`.
    fn names(&self, key: &str) -> bool {
        self.fields.iter().any(|field| {
            field
                .path
                .strip_prefix(key)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        }) || self
            .ors
            .iter()
            .flat_map(|branches| branches.iter())
            .any(|branch| branch.names(key))
    }

    fn matches_in(&self, scope: Option<&Scope<'_>>) -> bool {
        self.fields.iter().all(|field| field.matches_in(scope))
            && self
                .ors
                .iter()
                .all(|branches| branches.iter().any(|branch| branch.matches_in(scope)))
    }

    /// Where this object's keys start in its fields' paths.
    fn key_at(&self) -> usize {
        match self.fields.first() {
            Some(field) => field.key_at,
            None => self
                .ors
                .iter()
                .flat_map(|b| b.iter())
                .map(ObjectNode::key_at)
                .next()
                .unwrap_or(0),
        }
    }

    /// The nested-keys-only form, for diagnostics.
    fn matches(&self, event: Option<&Value>) -> bool {
        match event {
            Some(Value::Array(items)) if !items.is_empty() => {
                items.iter().any(|item| self.matches(Some(item)))
            }
            Some(Value::Object(map)) => self.matches_in(Some(&Scope {
                map,
                offset: self.key_at(),
                up: None,
            })),
            _ => self.matches_in(None),
        }
    }

    /// Appends to `path` the first failing field below this object, for an event it does not
    /// match. Against an array, explains the first element.
    fn explain(&self, event: Option<&Value>, path: &mut String) {
        let map = match event {
            Some(Value::Array(items)) if !items.is_empty() => {
                return self.explain(items.first(), path);
            }
            Some(Value::Object(map)) => Some(map),
            _ => None,
        };
        for field in self.fields.iter() {
            let key = &field.path[field.key_at..];
            let value = map.and_then(|m| m.get(key));
            if field.node.matches(value) {
                continue;
            }
            push_segment(path, key);
            if let (Node::Object(inner), Some(v @ (Value::Object(_) | Value::Array(_)))) =
                (&field.node, value)
            {
                inner.explain(Some(v), path);
            }
            return;
        }
        if self
            .ors
            .iter()
            .any(|branches| !branches.iter().any(|branch| branch.matches(event)))
        {
            push_segment(path, "$or");
        }
    }
}

fn push_segment(path: &mut String, segment: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(segment);
}

impl Field {
    fn matches_in(&self, scope: Option<&Scope<'_>>) -> bool {
        match &self.node {
            Node::Leaf(leaf) => leaf.matches_any(
                Scope::iter(scope).map(|s| s.map.get(&self.path[s.offset.min(self.path.len())..])),
            ),
            Node::Object(inner) => self.descend(inner, scope, None),
        }
    }

    /// Matches `inner` against the scope one level down: every object in `pending` may hold
    /// this field (an object: one more place to look; an array: one element must do, which keeps
    /// fields tested together in the same element), and an object that also holds dotted keys
    /// below this field stays in scope. Checking for those keys once here spares every field
    /// below a failed lookup in objects that have none.
    fn descend(
        &self,
        inner: &ObjectNode,
        pending: Option<&Scope<'_>>,
        built: Option<&Scope<'_>>,
    ) -> bool {
        let Some(here) = pending else {
            return inner.matches_in(built);
        };
        let key = &self.path[here.offset.min(self.path.len())..];
        let kept;
        let built = if has_keys_below(here.map, key) {
            kept = Scope {
                map: here.map,
                offset: here.offset,
                up: built,
            };
            Some(&kept)
        } else {
            built
        };
        self.descend_value(inner, here.map.get(key), here.up, built)
    }

    fn descend_value(
        &self,
        inner: &ObjectNode,
        value: Option<&Value>,
        pending: Option<&Scope<'_>>,
        built: Option<&Scope<'_>>,
    ) -> bool {
        match value {
            Some(Value::Object(map)) => {
                let scope = Scope {
                    map,
                    offset: self.path.len() + 1,
                    up: built,
                };
                self.descend(inner, pending, Some(&scope))
            }
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .any(|item| self.descend_value(inner, Some(item), pending, built)),
            _ => self.descend(inner, pending, built),
        }
    }
}

/// Whether `map` has a key addressing something below `key` with dots (`key.…`).
fn has_keys_below(map: &Map<String, Value>, key: &str) -> bool {
    map.keys()
        .any(|k| k.len() > key.len() && k.as_bytes()[key.len()] == b'.' && k.starts_with(key))
}

impl Node {
    fn matches(&self, event: Option<&Value>) -> bool {
        match self {
            Node::Object(object) => object.matches(event),
            Node::Leaf(leaf) => leaf.matches(event),
        }
    }
}

impl Leaf {
    fn new(matchers: Vec<Matcher>) -> Self {
        let matches_absent = matchers.iter().any(|m| matches!(m, Matcher::Exists(false)));
        Self {
            matchers: matchers.into_boxed_slice(),
            matches_absent,
        }
    }

    fn matches(&self, event: Option<&Value>) -> bool {
        match event {
            Some(Value::Array(items)) if !items.is_empty() => {
                items.iter().any(|item| self.matches(Some(item)))
            }
            None | Some(Value::Array(_) | Value::Object(_)) => self.matches_absent,
            Some(scalar) => self.matchers.iter().any(|m| m.matches(scalar)),
        }
    }

    /// The field may be held in several places (a nested key and a dotted one): it matches if
    /// one present value matches, and counts as absent only if it is absent everywhere.
    fn matches_any<'v>(&self, values: impl Iterator<Item = Option<&'v Value>>) -> bool {
        let mut present = false;
        for value in values {
            match value {
                None | Some(Value::Object(_)) => {}
                Some(Value::Array(items)) if items.is_empty() => {}
                Some(v) => {
                    present = true;
                    if self.matches(Some(v)) {
                        return true;
                    }
                }
            }
        }
        !present && self.matches_absent
    }
}
