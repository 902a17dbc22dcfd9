//! From the pattern's JSON to the compiled tree, rejecting what EventBridge rejects.
//!
//! The checks and their wording follow EventBridge's `InvalidEventPatternException` reasons
//! (produced by Event Ruler's `JsonRuleCompiler`), so a pattern that `PutRule` would refuse is
//! refused at start-up with the path inside the pattern and the reason.

use serde_json::{Map, Value};

use super::cidr::{parse_ip, IpRange};
use super::leaf::{lowercase, AnythingBut, Matcher, NumericRange, NUMERIC_LIMIT};
use super::wildcard::Wildcard;
use super::{Field, Leaf, Node, ObjectNode, PatternError};
use crate::domain::json_kind;

/// The path reported for errors about the pattern as a whole.
const ROOT: &str = "(root)";

/// Words Ruler reserves: they may not be field names inside a `$or` branch, where they would be
/// ambiguous with operators.
const RESERVED_IN_OR: &[&str] = &[
    "exactly",
    "equals-ignore-case",
    "prefix",
    "suffix",
    "anything-but",
    "exists",
    "wildcard",
    "numeric",
    "cidr",
    "html",
    "=",
    "<",
    "<=",
    ">",
    ">=",
    "regex",
    "not-wildcard",
    "not-equals-ignore-case",
    "date-after",
    "date-on-or-after",
    "date-before",
    "date-on-or-before",
    "in-date-range",
    "ip-address-in-range",
    "ip-address-not-in-range",
];

type Result<T> = std::result::Result<T, PatternError>;

fn error(path: &str, reason: impl Into<String>) -> PatternError {
    PatternError {
        path: if path.is_empty() { ROOT } else { path }.to_owned(),
        reason: reason.into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Compiles a whole pattern: a non-empty JSON object. `as_written` checks the words reserved
/// inside `$or`, which apply to the keys the author wrote, not to a normalized pattern.
pub(super) fn root(pattern: &Value, as_written: bool) -> Result<ObjectNode> {
    match pattern {
        Value::Object(map) if map.is_empty() => Err(error("", "the pattern is empty")),
        Value::Object(map) => object(map, "", false, as_written),
        other => Err(error(
            "",
            format!(
                "a pattern must be a JSON object, found {}",
                json_kind(other)
            ),
        )),
    }
}

fn object(map: &Map<String, Value>, path: &str, in_or: bool, check: bool) -> Result<ObjectNode> {
    if map.is_empty() {
        return Err(error(path, "empty objects are not allowed"));
    }
    let mut fields = Vec::with_capacity(map.len());
    let mut ors = Vec::new();
    for (key, value) in map {
        if key == "$or" {
            ors.push(or(value, path, check)?);
            continue;
        }
        let child = join(path, key);
        if check && in_or && RESERVED_IN_OR.contains(&key.as_str()) {
            return Err(error(
                &child,
                format!("\"{key}\" is a reserved word and cannot be a field name inside $or"),
            ));
        }
        let node = match value {
            Value::Object(inner) => Node::Object(object(inner, &child, in_or, check)?),
            Value::Array(values) => Node::Leaf(leaf(values, &child)?),
            other => {
                return Err(error(
                    &child,
                    format!(
                        "must be an object or an array of values to match, found {}",
                        json_kind(other)
                    ),
                ))
            }
        };
        fields.push(Field {
            path: key.as_str().into(),
            key_at: 0,
            node,
        });
    }
    Ok(ObjectNode {
        fields: fields.into_boxed_slice(),
        ors: ors.into_boxed_slice(),
    })
}

fn or(value: &Value, path: &str, check: bool) -> Result<Box<[ObjectNode]>> {
    let here = join(path, "$or");
    let Value::Array(branches) = value else {
        return Err(error(
            &here,
            format!(
                "$or must be an array of objects, found {}",
                json_kind(value)
            ),
        ));
    };
    if branches.len() < 2 {
        return Err(error(&here, "$or must hold at least 2 objects"));
    }
    branches
        .iter()
        .enumerate()
        .map(|(i, branch)| {
            let branch_path = format!("{here}[{i}]");
            match branch {
                Value::Object(map) => object(map, &branch_path, true, check),
                other => Err(error(
                    &branch_path,
                    format!(
                        "only objects are allowed in $or, found {}",
                        json_kind(other)
                    ),
                )),
            }
        })
        .collect()
}

fn leaf(values: &[Value], path: &str) -> Result<Leaf> {
    if values.is_empty() {
        return Err(error(path, "empty arrays are not allowed"));
    }
    let matchers = values
        .iter()
        .map(|value| matcher(value, path))
        .collect::<Result<Vec<_>>>()?;
    Ok(Leaf::new(matchers))
}

fn matcher(value: &Value, path: &str) -> Result<Matcher> {
    Ok(match value {
        Value::String(s) => match parse_ip(s) {
            Some(ip) => Matcher::Ip(IpRange::single(ip)),
            None => Matcher::String(s.as_str().into()),
        },
        Value::Number(n) => Matcher::Number(n.clone()),
        Value::Bool(b) => Matcher::Bool(*b),
        Value::Null => Matcher::Null,
        Value::Object(op) => operator(op, path)?,
        Value::Array(_) => {
            return Err(error(
                path,
                "match values must be strings, numbers, true, false, null or operator objects, found an array",
            ))
        }
    })
}

/// The single `(name, operand)` of an operator object.
fn single_entry<'a>(
    map: &'a Map<String, Value>,
    path: &str,
    what: &str,
) -> Result<(&'a str, &'a Value)> {
    let mut entries = map.iter();
    match (entries.next(), entries.next()) {
        (Some((name, operand)), None) => Ok((name.as_str(), operand)),
        (None, _) => Err(error(path, format!("{what} must have one key, found none"))),
        (Some(_), Some(_)) => Err(error(
            path,
            format!(
                "{what} must have exactly one key, found {}: {}",
                map.len(),
                map.keys()
                    .map(|k| format!("\"{k}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn string_operand<'a>(operand: &'a Value, path: &str, name: &str) -> Result<&'a str> {
    operand.as_str().ok_or_else(|| {
        error(
            path,
            format!(
                "{name} match pattern must be a string, found {}",
                json_kind(operand)
            ),
        )
    })
}

fn operator(op: &Map<String, Value>, path: &str) -> Result<Matcher> {
    let (name, operand) = single_entry(op, path, "an operator object")?;
    Ok(match name {
        "prefix" | "suffix" => {
            let is_prefix = name == "prefix";
            match operand {
                Value::Object(inner) => {
                    let (inner_name, inner_operand) =
                        single_entry(inner, path, &format!("the {name} object"))?;
                    if inner_name != "equals-ignore-case" {
                        return Err(error(
                            path,
                            format!("unsupported {name} pattern \"{inner_name}\" (only \"equals-ignore-case\")"),
                        ));
                    }
                    let lowered =
                        lowercase(string_operand(inner_operand, path, "equals-ignore-case")?);
                    if is_prefix {
                        Matcher::PrefixIgnoreCase(lowered)
                    } else {
                        Matcher::SuffixIgnoreCase(lowered)
                    }
                }
                _ => {
                    let text = string_operand(operand, path, name)?.into();
                    if is_prefix {
                        Matcher::Prefix(text)
                    } else {
                        Matcher::Suffix(text)
                    }
                }
            }
        }
        "equals-ignore-case" => {
            Matcher::EqualsIgnoreCase(lowercase(string_operand(operand, path, name)?))
        }
        "wildcard" => Matcher::Wildcard(wildcard(string_operand(operand, path, name)?, path)?),
        "anything-but" => Matcher::AnythingBut(anything_but(operand, path)?),
        "numeric" => Matcher::Numeric(numeric(operand, path)?),
        "exists" => match operand {
            Value::Bool(b) => Matcher::Exists(*b),
            other => {
                return Err(error(
                    path,
                    format!(
                        "exists match pattern must be either true or false, found {}",
                        json_kind(other)
                    ),
                ))
            }
        },
        "cidr" => {
            let text = string_operand(operand, path, name)?;
            Matcher::Cidr(IpRange::parse_cidr(text).map_err(|reason| error(path, reason))?)
        }
        unknown => return Err(error(path, format!("unknown operator \"{unknown}\""))),
    })
}

fn wildcard(glob: &str, path: &str) -> Result<Wildcard> {
    Wildcard::parse(glob).map_err(|reason| error(path, format!("wildcard \"{glob}\": {reason}")))
}

fn anything_but(operand: &Value, path: &str) -> Result<AnythingBut> {
    match operand {
        Value::String(s) => Ok(AnythingBut::Strings(Box::new([s.as_str().into()]))),
        Value::Number(_) => Ok(AnythingBut::Numbers(Box::new([numeric_operand(
            operand, path,
        )?]))),
        Value::Array(values) => {
            if values.iter().all(Value::is_string) && !values.is_empty() {
                Ok(AnythingBut::Strings(
                    values
                        .iter()
                        .filter_map(Value::as_str)
                        .map(Into::into)
                        .collect(),
                ))
            } else if values.iter().all(Value::is_number) && !values.is_empty() {
                let numbers = values
                    .iter()
                    .map(|v| numeric_operand(v, path))
                    .collect::<Result<_>>()?;
                Ok(AnythingBut::Numbers(numbers))
            } else if values.iter().any(|v| !v.is_string() && !v.is_number()) {
                Err(error(
                    path,
                    "inside an anything-but list, only strings or numbers are supported (no null, boolean, array or object)",
                ))
            } else {
                Err(error(
                    path,
                    "an anything-but list must hold only strings or only numbers, and at least one",
                ))
            }
        }
        Value::Object(inner) => {
            let (name, values) = single_entry(inner, path, "the anything-but object")?;
            if !matches!(
                name,
                "prefix" | "suffix" | "equals-ignore-case" | "wildcard"
            ) {
                return Err(error(
                    path,
                    format!(
                        "unsupported anything-but pattern \"{name}\" (use prefix, suffix, equals-ignore-case or wildcard)"
                    ),
                ));
            }
            let texts = anything_but_strings(values, path, name)?;
            match name {
                "prefix" | "suffix" => {
                    if texts.iter().any(|t| t.is_empty()) {
                        return Err(error(
                            path,
                            format!("anything-but {name} must not be empty"),
                        ));
                    }
                    let texts = texts.into_iter().map(Into::into).collect();
                    Ok(if name == "prefix" {
                        AnythingBut::Prefix(texts)
                    } else {
                        AnythingBut::Suffix(texts)
                    })
                }
                "equals-ignore-case" => Ok(AnythingBut::IgnoreCase(
                    texts.into_iter().map(lowercase).collect(),
                )),
                _ => Ok(AnythingBut::Wildcard(
                    texts
                        .into_iter()
                        .map(|t| wildcard(t, path))
                        .collect::<Result<_>>()?,
                )),
            }
        }
        other => Err(error(
            path,
            format!(
                "anything-but must be a string, a number, an array of them, or an object; found {}",
                json_kind(other)
            ),
        )),
    }
}

/// The operand of `anything-but: {prefix|suffix|equals-ignore-case|wildcard: …}`: one string or
/// an array of strings.
fn anything_but_strings<'a>(values: &'a Value, path: &str, name: &str) -> Result<Vec<&'a str>> {
    let not_strings = || {
        error(
            path,
            format!("anything-but {name} must be a string or an array of strings"),
        )
    };
    match values {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().ok_or_else(not_strings))
            .collect(),
        _ => Err(not_strings()),
    }
}

/// A number used in numeric matching: within ±5e9 and with at most six decimals, the limits
/// EventBridge documents ("15 digits of precision, or six digits to the right of the decimal
/// point").
fn numeric_operand(value: &Value, path: &str) -> Result<f64> {
    let Some(v) = value.as_f64() else {
        return Err(error(
            path,
            format!("expected a number, found {}", json_kind(value)),
        ));
    };
    if !(-NUMERIC_LIMIT..=NUMERIC_LIMIT).contains(&v) {
        return Err(error(
            path,
            format!("{value} is out of range: numbers must be between -5e9 and 5e9 inclusive"),
        ));
    }
    if (v * 1e6).round() / 1e6 != v {
        return Err(error(
            path,
            format!("{value} has more than 6 digits after the decimal point"),
        ));
    }
    Ok(v)
}

fn numeric(operand: &Value, path: &str) -> Result<NumericRange> {
    let Value::Array(terms) = operand else {
        return Err(error(
            path,
            format!(
                "numeric must be an array like [\">\", 0, \"<=\", 5], found {}",
                json_kind(operand)
            ),
        ));
    };
    let comparison = |i: usize| -> Result<(&str, f64)> {
        let op = match terms.get(i) {
            Some(Value::String(op)) => op.as_str(),
            Some(other) => {
                return Err(error(
                    path,
                    format!("invalid member in numeric match: {other}"),
                ))
            }
            None => return Err(error(path, "numeric needs an operator and a number")),
        };
        if !matches!(op, "=" | "<" | "<=" | ">" | ">=") {
            return Err(error(
                path,
                format!("unrecognized numeric operator \"{op}\""),
            ));
        }
        match terms.get(i + 1) {
            Some(n @ Value::Number(_)) => Ok((op, numeric_operand(n, path)?)),
            _ => Err(error(
                path,
                format!(
                    "value of {} must be numeric",
                    if op == "=" { "equals" } else { op }
                ),
            )),
        }
    };
    let (op, v) = comparison(0)?;
    let mut range = NumericRange {
        low: f64::NEG_INFINITY,
        low_inclusive: false,
        high: f64::INFINITY,
        high_inclusive: false,
    };
    match op {
        "=" => {
            range = NumericRange {
                low: v,
                low_inclusive: true,
                high: v,
                high_inclusive: true,
            }
        }
        "<" | "<=" => {
            range.high = v;
            range.high_inclusive = op == "<=";
        }
        _ => {
            range.low = v;
            range.low_inclusive = op == ">=";
        }
    }
    if terms.len() == 2 {
        return Ok(range);
    }
    if !matches!(op, ">" | ">=") {
        return Err(error(
            path,
            "too many elements in numeric expression (a range is [\">\" or \">=\", low, \"<\" or \"<=\", high])",
        ));
    }
    let (top_op, top) = comparison(2)?;
    if !matches!(top_op, "<" | "<=") {
        return Err(error(
            path,
            format!("bad numeric range operator \"{top_op}\" (a range ends with \"<\" or \"<=\")"),
        ));
    }
    if terms.len() > 4 {
        return Err(error(path, "too many terms in numeric range expression"));
    }
    if top <= range.low {
        return Err(error(path, "numeric range bottom must be less than top"));
    }
    range.high = top;
    range.high_inclusive = top_op == "<=";
    Ok(range)
}
