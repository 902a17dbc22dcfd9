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
//!   `{"exists": false}` matches there (exists works on leaf nodes only).

mod cidr;
mod compile;
mod leaf;
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
    key: Box<str>,
    node: Node,
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
        compile::root(pattern).map(|root| Pattern { root })
    }

    /// Whether `event` matches. The hot path: no allocation, no parsing.
    pub fn matches(&self, event: &Value) -> bool {
        self.root.matches(Some(event))
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
        Some(path)
    }
}

impl ObjectNode {
    fn matches(&self, event: Option<&Value>) -> bool {
        match event {
            Some(Value::Array(items)) if !items.is_empty() => {
                items.iter().any(|item| self.matches(Some(item)))
            }
            Some(Value::Object(map)) => self.matches_fields(Some(map)),
            _ => self.matches_fields(None),
        }
    }

    fn matches_fields(&self, map: Option<&Map<String, Value>>) -> bool {
        self.fields
            .iter()
            .all(|field| field.node.matches(map.and_then(|m| m.get(&*field.key))))
            && self
                .ors
                .iter()
                .all(|branches| branches.iter().any(|branch| branch.matches_fields(map)))
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
            let value = map.and_then(|m| m.get(&*field.key));
            if field.node.matches(value) {
                continue;
            }
            push_segment(path, &field.key);
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
            .any(|branches| !branches.iter().any(|branch| branch.matches_fields(map)))
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
}
