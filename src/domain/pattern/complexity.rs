//! Wildcard complexity: EventBridge refuses a pattern whose wildcards could keep too many
//! partial matches alive at once ("Rule is too complex - try using fewer wildcard characters or
//! fewer repeating character sequences after a wildcard character").
//!
//! The measure is Event Ruler's `MachineComplexityEvaluator`: in the byte machine of one field,
//! the largest number of wildcard rule prefixes that a single input value can match at the same
//! time, each counted once per wildcard pattern that can still be reached from it. Values are
//! matched with their JSON quotes, as Ruler stores them (`"*.png"` is the bytes `"`, `*`, `.png`,
//! `"`). The limit is not published; [`MAX`] is the largest value that agrees with every answer
//! recorded against EventBridge (see `docs/patterns.md`): the most permissive choice.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::{Map, Value};

/// The highest wildcard complexity a field may have.
pub(super) const MAX: usize = 10;

/// EventBridge's reason, word for word.
pub(super) const TOO_COMPLEX: &str = "Rule is too complex - try using fewer wildcard characters or fewer repeating character sequences after a wildcard character";

/// A wildcard token: a literal byte, or `*`.
const STAR: u16 = 256;
/// A byte that appears in no pattern: it only keeps `*` states alive.
const OTHER: u16 = 257;

/// The tokens of a (valid) glob between its JSON quotes: `\*` and `\\` are literal bytes.
fn tokens(glob: &str) -> Vec<u16> {
    let bytes = glob.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.push(u16::from(b'"'));
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'*' => out.push(STAR),
            b'\\' if i + 1 < bytes.len() => {
                i += 1;
                out.push(u16::from(bytes[i]));
            }
            other => out.push(u16::from(other)),
        }
        i += 1;
    }
    out.push(u16::from(b'"'));
    out
}

/// Ruler's complexity of one field holding these globs (`wildcard` and `anything-but`
/// `wildcard` alike; a glob written twice counts once), computed up to `cap`.
pub(super) fn field_complexity<'a>(globs: impl IntoIterator<Item = &'a str>, cap: usize) -> usize {
    let unique: BTreeSet<&str> = globs.into_iter().collect();
    let patterns: Vec<Vec<u16>> = unique.into_iter().map(tokens).collect();
    complexity(&patterns, cap)
}

/// The first path (dotted, `$or` left out, as Ruler names fields) whose wildcards are too
/// complex. Every branch of every `$or` adds to the same path, as Ruler's rules for one pattern
/// share their field machines.
pub(super) fn too_complex(pattern: &Map<String, Value>) -> Option<String> {
    let mut globs: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    collect(pattern, "", &mut globs);
    globs
        .into_iter()
        .find(|(_, globs)| field_complexity(globs.iter().copied(), MAX + 1) > MAX)
        .map(|(path, _)| path)
}

fn collect<'a>(map: &'a Map<String, Value>, path: &str, out: &mut BTreeMap<String, Vec<&'a str>>) {
    for (key, value) in map {
        if key == "$or" {
            for branch in value.as_array().into_iter().flatten() {
                if let Value::Object(inner) = branch {
                    collect(inner, path, out);
                }
            }
            continue;
        }
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match value {
            Value::Object(inner) => collect(inner, &here, out),
            Value::Array(values) => {
                for op in values.iter().filter_map(Value::as_object) {
                    let glob = match (op.get("wildcard"), op.get("anything-but")) {
                        (Some(w), _) => Some(w),
                        (_, Some(Value::Object(but))) => but.get("wildcard"),
                        _ => None,
                    };
                    let found: Vec<&str> = match glob {
                        Some(Value::String(s)) => vec![s.as_str()],
                        Some(Value::Array(items)) => {
                            items.iter().filter_map(Value::as_str).collect()
                        }
                        _ => Vec::new(),
                    };
                    if !found.is_empty() {
                        out.entry(here.clone()).or_default().extend(found);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Positions of one pattern: position `i` means `tokens[..i]` consumed. A position right after a
/// `*` loops on every byte; a position right before a `*` also stands in the `*` position.
fn closure(pattern: &[u16], positions: &BTreeSet<usize>) -> BTreeSet<usize> {
    let mut out = positions.clone();
    for &i in positions {
        if pattern.get(i) == Some(&STAR) {
            out.insert(i + 1);
        }
    }
    out
}

fn step(pattern: &[u16], active: &BTreeSet<usize>, byte: u16) -> BTreeSet<usize> {
    let mut next = BTreeSet::new();
    for &i in &closure(pattern, active) {
        if pattern.get(i) == Some(&byte) {
            next.insert(i + 1);
        }
        if i > 0 && pattern[i - 1] == STAR {
            next.insert(i);
        }
    }
    next
}

/// The largest number of positions, summed over all patterns, that one input keeps alive after
/// a byte (with the `*` positions they lead to), explored over every distinct set of positions.
/// Stops as soon as `cap` is reached.
fn complexity(patterns: &[Vec<u16>], cap: usize) -> usize {
    let mut alphabet: BTreeSet<u16> = patterns
        .iter()
        .flatten()
        .copied()
        .filter(|&t| t != STAR)
        .collect();
    alphabet.insert(OTHER);
    let start: Vec<BTreeSet<usize>> = patterns.iter().map(|_| BTreeSet::from([0])).collect();
    let mut seen = HashSet::new();
    let mut pending = vec![start];
    let mut max = 0;
    while let Some(state) = pending.pop() {
        for &byte in &alphabet {
            let next: Vec<BTreeSet<usize>> = patterns
                .iter()
                .zip(&state)
                .map(|(pattern, active)| step(pattern, active, byte))
                .collect();
            let size: usize = patterns
                .iter()
                .zip(&next)
                .map(|(pattern, active)| closure(pattern, active).len())
                .sum();
            if size == 0 {
                continue;
            }
            max = max.max(size);
            if max >= cap {
                return cap;
            }
            if seen.insert(next.clone()) {
                pending.push(next);
            }
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::{complexity, field_complexity, MAX};

    /// Raw byte patterns, without the JSON quotes, as Ruler's own `ByteMachine` tests add them.
    fn raw(globs: &[&str]) -> usize {
        let patterns: Vec<Vec<u16>> = globs
            .iter()
            .map(|g| {
                g.bytes()
                    .map(|b| if b == b'*' { super::STAR } else { u16::from(b) })
                    .collect()
            })
            .collect();
        complexity(&patterns, 100)
    }

    // Event Ruler, src/test/software/amazon/event/ruler/MachineComplexityEvaluatorTest.java:
    // the expected values of its single-machine cases.
    #[test]
    fn agrees_with_event_rulers_evaluator_tests() {
        let cases: &[(&[&str], usize)] = &[
            (&["*"], 1),
            (&["abc"], 1),
            (&["*", "ab*c"], 3),
            (&["*ab"], 2),
            (&["*aa"], 3),
            (&["a*b"], 2),
            (&["aa*"], 2),
            (&["a*bc"], 2),
            (&["a*bb"], 3),
            (&["a*bcb"], 3),
            (&["a*bbb"], 4),
            (&["*ab*ad"], 4),
            (&["*ab*d"], 3),
            (&["*aba*"], 4),
            (&["a*b*bb"], 5),
            (&["a*b*cb"], 4),
            (&["a*b*cd"], 3),
            (&["a*b*b"], 4),
            (&["a*bb*"], 4),
            (&["ab*b*"], 3),
            (&["ab*c", "x*xx"], 3),
            (&["*abc", "*abcde"], 4),
            (&["a*bcd", "ab*cd"], 4),
            (&["a*bc", "a*bcde"], 4),
            (&["a*aaa", "aa*aa"], 7),
            (&["a*bc", "abc*d"], 4),
            (&["a*aaa", "aaa*a"], 6),
            (&["a*aax", "aaa*x"], 5),
            (&["a*bc", "abc*"], 4),
            (&["a*aa", "aaa*"], 5),
            (&["abc*", "abcde*"], 3),
            (&["ab*cd", "ab*wx", "ab*yz"], 6),
            (&["*ab*b*b*"], 7),
            (&["*a*a*a*a*a*a*a*a*"], 17),
            (
                &["F*eatureFeature", "Fe*atureFeature", "Fea*tureFeature"],
                10,
            ),
        ];
        for &(globs, expected) in cases {
            assert_eq!(raw(globs), expected, "{globs:?}");
        }
    }

    #[test]
    fn a_glob_written_twice_counts_once() {
        assert_eq!(
            field_complexity(["ab*c", "ab*c"], 100),
            field_complexity(["ab*c"], 100)
        );
    }

    // Answers recorded against EventBridge (docs/patterns.md, "Wildcard complexity"): the
    // pattern, its complexity, and whether EventBridge accepted it.
    #[test]
    fn the_limit_separates_what_eventbridge_accepts_from_what_it_refuses() {
        let cases: &[(&[&str], usize, bool)] = &[
            // LocalStack tests/aws/services/events/event_pattern_templates, recorded against AWS.
            (&["arn:aws:events:us-east-1:*:event-bus/*"], 3, true),
            (&["/Users/*/dir/dir/dir/dir/dir/doc.txt"], 7, true),
            (&["/Users/*/doc.txt"], 2, true),
            (&["*:*:*:*:*:event-bus/*"], 11, false),
            // A deployed rule, and the one EventBridge refused beside it (Terraform, quoted in
            // docs/patterns.md).
            (&["*.bif", "*.tiff", "*.tif", "*.svs"], 8, true),
            (&["*/datasync/*.bif", "*/datasync/*.tif"], 8, true),
            (
                &[
                    "*/datasync/*.bif",
                    "*/datasync/*.tif",
                    "*/datasync/*.tiff",
                    "*/datasync/*.svs",
                ],
                16,
                false,
            ),
        ];
        for &(globs, expected, accepted) in cases {
            let c = field_complexity(globs.iter().copied(), 100);
            assert_eq!(c, expected, "{globs:?}");
            assert_eq!(c <= MAX, accepted, "{globs:?}: complexity {c}");
        }
    }
}
