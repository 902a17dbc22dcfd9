//! TEMPORARY stub of the EventBridge pattern engine (exact values, prefix, nested objects), to be
//! replaced by the full implementation.

use serde_json::Value;

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern(Value);

/// Why a pattern is invalid.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[error("at `{path}`: {reason}")]
pub struct PatternError {
    /// Path inside the pattern.
    pub path: String,
    /// Reason.
    pub reason: String,
}

impl Pattern {
    /// Compiles.
    ///
    /// # Errors
    /// Not an object.
    pub fn compile(pattern: &Value) -> Result<Pattern, PatternError> {
        if !pattern.is_object() {
            return Err(PatternError {
                path: String::new(),
                reason: "must be an object".into(),
            });
        }
        Ok(Pattern(pattern.clone()))
    }

    /// Matches.
    pub fn matches(&self, event: &Value) -> bool {
        self.first_mismatch(event).is_none()
    }

    /// First failing path.
    pub fn first_mismatch(&self, event: &Value) -> Option<String> {
        fn walk(p: &Value, e: Option<&Value>, path: &str) -> Option<String> {
            match p {
                Value::Object(m) => m.iter().find_map(|(k, v)| {
                    let sub = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(v, e.and_then(|e| e.get(k)), &sub)
                }),
                Value::Array(alts) => {
                    let vals: Vec<&Value> = match e {
                        Some(Value::Array(a)) => a.iter().collect(),
                        Some(v) => vec![v],
                        None => vec![],
                    };
                    let ok = alts.iter().any(|alt| {
                        vals.iter().any(|v| match alt {
                            Value::Object(op) => match (op.get("prefix"), v) {
                                (Some(Value::String(pre)), Value::String(s)) => {
                                    s.starts_with(pre.as_str())
                                }
                                _ => false,
                            },
                            other => other == *v,
                        })
                    });
                    if ok {
                        None
                    } else {
                        Some(path.to_owned())
                    }
                }
                _ => Some(path.to_owned()),
            }
        }
        walk(&self.0, Some(event), "")
    }
}
