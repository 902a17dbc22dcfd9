//! Leaf matching: the values and operators inside a field's array, tested against one scalar of
//! the event (a string, number, boolean or null).
//!
//! Everything here runs on the hot path, so nothing allocates: case-insensitive comparisons walk
//! lowercase character iterators instead of building lowercase strings.

use serde_json::{Number, Value};

use super::cidr::IpRange;
use super::wildcard::Wildcard;

/// Numeric matching is limited to this magnitude (EventBridge user guide, "Numeric matching":
/// "limited to values between -5.0e9 and +5.0e9 inclusive").
pub(super) const NUMERIC_LIMIT: f64 = 5.0e9;

/// One alternative in a field's array.
#[derive(Debug, Clone)]
pub(super) enum Matcher {
    /// `"text"`: the same string.
    String(Box<str>),
    /// `"10.0.0.1"`: an IP literal compares as an address (Ruler turns such values into a range).
    Ip(IpRange),
    /// `300`: a number equal to it as a number (`300.0` and `3.0e2` too, never the string `"300"`).
    Number(Number),
    /// `true` / `false`.
    Bool(bool),
    /// `null`: a JSON null, not a missing field and not `""`.
    Null,
    /// `{"prefix": "…"}`.
    Prefix(Box<str>),
    /// `{"prefix": {"equals-ignore-case": "…"}}`, stored lowercased.
    PrefixIgnoreCase(Box<str>),
    /// `{"suffix": "…"}`.
    Suffix(Box<str>),
    /// `{"suffix": {"equals-ignore-case": "…"}}`, stored lowercased.
    SuffixIgnoreCase(Box<str>),
    /// `{"equals-ignore-case": "…"}`, stored lowercased.
    EqualsIgnoreCase(Box<str>),
    /// `{"wildcard": "…"}`.
    Wildcard(Wildcard),
    /// `{"anything-but": …}`.
    AnythingBut(AnythingBut),
    /// `{"numeric": […]}`.
    Numeric(NumericRange),
    /// `{"exists": true|false}`.
    Exists(bool),
    /// `{"cidr": "…"}`.
    Cidr(IpRange),
}

/// What `anything-but` excludes. A present value matches unless it is excluded; a value of
/// another type than the excluded ones (a number against excluded strings, say) is never
/// excluded, as in Ruler.
#[derive(Debug, Clone)]
pub(super) enum AnythingBut {
    /// `"x"` or `["x", "y"]`.
    Strings(Box<[Box<str>]>),
    /// `5` or `[5, 6.5]`.
    Numbers(Box<[f64]>),
    /// `{"prefix": …}`.
    Prefix(Box<[Box<str>]>),
    /// `{"suffix": …}`.
    Suffix(Box<[Box<str>]>),
    /// `{"equals-ignore-case": …}`, stored lowercased.
    IgnoreCase(Box<[Box<str>]>),
    /// `{"wildcard": …}`.
    Wildcard(Box<[Wildcard]>),
}

/// A numeric interval; one comparison leaves the other side infinite, `=` closes both on the
/// same value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct NumericRange {
    pub(super) low: f64,
    pub(super) low_inclusive: bool,
    pub(super) high: f64,
    pub(super) high_inclusive: bool,
}

impl NumericRange {
    fn contains(&self, v: f64) -> bool {
        let above = if self.low_inclusive {
            v >= self.low
        } else {
            v > self.low
        };
        let below = if self.high_inclusive {
            v <= self.high
        } else {
            v < self.high
        };
        above && below
    }
}

impl Matcher {
    /// Whether one scalar of the event satisfies this alternative. Arrays, objects and missing
    /// fields never reach here: the caller handles them (see `Leaf::matches`).
    pub(super) fn matches(&self, value: &Value) -> bool {
        match self {
            Self::String(s) => value.as_str() == Some(&**s),
            Self::Ip(range) | Self::Cidr(range) => {
                value.as_str().is_some_and(|v| range.contains(v))
            }
            Self::Number(n) => matches!(value, Value::Number(v) if numbers_equal(n, v)),
            Self::Bool(b) => value.as_bool() == Some(*b),
            Self::Null => value.is_null(),
            Self::Prefix(p) => value.as_str().is_some_and(|v| v.starts_with(&**p)),
            Self::PrefixIgnoreCase(p) => value.as_str().is_some_and(|v| starts_ignore_case(v, p)),
            Self::Suffix(s) => value.as_str().is_some_and(|v| v.ends_with(&**s)),
            Self::SuffixIgnoreCase(s) => value.as_str().is_some_and(|v| ends_ignore_case(v, s)),
            Self::EqualsIgnoreCase(s) => value.as_str().is_some_and(|v| equals_ignore_case(v, s)),
            Self::Wildcard(w) => value.as_str().is_some_and(|v| w.matches(v)),
            Self::AnythingBut(but) => !but.excludes(value),
            Self::Numeric(range) => numeric_value(value).is_some_and(|v| range.contains(v)),
            Self::Exists(present) => *present,
        }
    }
}

impl AnythingBut {
    fn excludes(&self, value: &Value) -> bool {
        match (self, value) {
            (Self::Strings(set), Value::String(v)) => set.iter().any(|s| **s == **v),
            (Self::Numbers(set), Value::Number(_)) => {
                numeric_value(value).is_some_and(|v| set.contains(&v))
            }
            (Self::Prefix(set), Value::String(v)) => set.iter().any(|p| v.starts_with(&**p)),
            (Self::Suffix(set), Value::String(v)) => set.iter().any(|s| v.ends_with(&**s)),
            (Self::IgnoreCase(set), Value::String(v)) => {
                set.iter().any(|s| equals_ignore_case(v, s))
            }
            (Self::Wildcard(set), Value::String(v)) => set.iter().any(|w| w.matches(v)),
            _ => false,
        }
    }
}

/// The value of an event number that numeric matching may use: inside the documented limits.
fn numeric_value(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64().filter(|v| v.abs() <= NUMERIC_LIMIT),
        _ => None,
    }
}

/// Numbers are equal as numbers: integers exactly, anything else as doubles, so `300`, `300.0`
/// and `3.0e2` are one value.
pub(super) fn numbers_equal(a: &Number, b: &Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Lowercases `pattern` once, at compile time; events are lowercased lazily while comparing.
pub(super) fn lowercase(pattern: &str) -> Box<str> {
    pattern.to_lowercase().into_boxed_str()
}

fn lower(s: &str) -> impl DoubleEndedIterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase)
}

/// `value` equals the already-lowercased `pattern`, ignoring case.
fn equals_ignore_case(value: &str, lowered: &str) -> bool {
    if value.is_ascii() && lowered.is_ascii() {
        return value.len() == lowered.len()
            && value
                .bytes()
                .zip(lowered.bytes())
                .all(|(v, p)| v.to_ascii_lowercase() == p);
    }
    lower(value).eq(lowered.chars())
}

/// `value` starts with the already-lowercased `prefix`, ignoring case.
fn starts_ignore_case(value: &str, prefix: &str) -> bool {
    let mut chars = lower(value);
    prefix.chars().all(|p| chars.next() == Some(p))
}

/// `value` ends with the already-lowercased `suffix`, ignoring case.
fn ends_ignore_case(value: &str, suffix: &str) -> bool {
    let mut chars = lower(value).rev();
    suffix.chars().rev().all(|p| chars.next() == Some(p))
}

#[cfg(test)]
mod tests {
    use super::{
        ends_ignore_case, equals_ignore_case, lowercase, numbers_equal, starts_ignore_case,
    };
    use serde_json::Number;

    fn num(s: &str) -> Number {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn numbers_compare_as_numbers() {
        for (a, b, equal) in [
            ("300", "300.0", true),
            ("300", "3.0e2", true),
            ("3.018e2", "301.8", true),
            ("-0", "0", true),
            ("123456789012", "123456789012", true),
            ("18446744073709551615", "18446744073709551615", true),
            ("18446744073709551615", "-1", false),
            ("300", "301", false),
            ("0.1", "0.10000001", false),
        ] {
            assert_eq!(numbers_equal(&num(a), &num(b)), equal, "{a} vs {b}");
        }
    }

    #[test]
    fn ignore_case_helpers_agree_with_lowercasing_both_sides() {
        for (value, pattern) in [
            ("EventBridge", "eventb"),
            ("TBRIDGE", "tbridge"),
            ("ÉTÉ", "été"),
            ("Straße", "strasse"),
            ("", ""),
            ("a", ""),
        ] {
            let lowered = lowercase(pattern);
            let v = value.to_lowercase();
            assert_eq!(
                equals_ignore_case(value, &lowered),
                v == *lowered,
                "{value} = {pattern}"
            );
            assert_eq!(
                starts_ignore_case(value, &lowered),
                v.starts_with(&*lowered),
                "{value} ^ {pattern}"
            );
            assert_eq!(
                ends_ignore_case(value, &lowered),
                v.ends_with(&*lowered),
                "{value} $ {pattern}"
            );
        }
    }
}
