//! The domain: events, patterns, routes and rendering. Pure and synchronous: no tokio, no AWS,
//! so it can be unit-tested and benchmarked without a runtime.
//!
//! Imports go one way. A [`route::Route`] holds specs that know nothing of routes (`pattern`,
//! `address`, `recipients`, `schedule`); what works with routes (`details`, `render`, `digest`)
//! imports `route`, never the reverse.

pub mod address;
pub mod catalog;
pub mod changes;
pub mod details;
pub mod digest;
pub mod event;
pub mod feedback;
pub mod manifest;
pub mod message;
pub mod pattern;
pub mod recipients;
pub mod render;
pub mod revision;
pub mod route;
#[cfg(any(test, feature = "test-support"))]
pub mod route_builder;
pub mod schedule;
pub mod table;

/// What kind of JSON value this is, with its article, for error messages ("found an array").
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `text` in at most `chars` characters, cut on a char boundary: a longer one keeps its first
/// `chars - 1` and ends with an ellipsis, so no reason, name or value grows a line past its
/// budget.
pub fn cut(text: &str, chars: usize) -> String {
    if text.chars().nth(chars).is_none() {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn cut_keeps_short_text_and_ends_long_text_with_an_ellipsis() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "ab…");
        assert_eq!(cut("", 3), "");
        assert_eq!(cut("é🦀éé", 3), "é🦀…");
    }
}
