//! The `wildcard` operator's glob: `*` stands for any run of characters (including none),
//! `\*` for a literal asterisk and `\\` for a literal backslash.
//!
//! Parsing follows Event Ruler's `WildcardParser`, the parser behind EventBridge: two `*` in a row
//! and a backslash before anything else are rejected, so a pattern EventBridge refuses is refused
//! here too, at start-up.

/// A compiled glob: the literal pieces between the wildcards.
///
/// `pieces.len()` is the number of `*` plus one, so `"*.png"` is `["", ".png"]` and a glob
/// without `*` is a single piece that must equal the whole value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wildcard {
    pieces: Box<[Box<str>]>,
}

impl Wildcard {
    /// Parses a glob.
    ///
    /// # Errors
    /// The reason, worded like EventBridge's, when two `*` follow each other or a backslash
    /// escapes something other than `*` or `\`.
    pub(super) fn parse(glob: &str) -> Result<Self, String> {
        let bytes = glob.as_bytes();
        let mut pieces = Vec::new();
        let mut piece: Vec<u8> = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'*' => {
                    if bytes.get(i + 1) == Some(&b'*') {
                        return Err(format!("consecutive wildcard characters at position {i}"));
                    }
                    pieces.push(std::mem::take(&mut piece));
                }
                b'\\' => match bytes.get(i + 1) {
                    Some(&next @ (b'*' | b'\\')) => {
                        piece.push(next);
                        i += 1;
                    }
                    _ => {
                        return Err(format!(
                            "invalid escape character at position {i}: only \\* and \\\\ may be escaped"
                        ))
                    }
                },
                other => piece.push(other),
            }
            i += 1;
        }
        pieces.push(piece);
        let pieces = pieces
            .into_iter()
            // Only ASCII bytes were removed from valid UTF-8, so every piece is still UTF-8.
            .map(|p| String::from_utf8(p).map(String::into_boxed_str))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "wildcard is not valid UTF-8".to_owned())?;
        Ok(Self {
            pieces: pieces.into_boxed_slice(),
        })
    }

    /// Whether `value` matches the glob. Allocation-free: the first piece must be a prefix, the
    /// last a suffix, and the middle pieces are found left to right in what is between (greedy
    /// leftmost search is exact for globs whose only metacharacter is `*`).
    pub(super) fn matches(&self, value: &str) -> bool {
        let (first, rest) = match self.pieces.split_first() {
            Some(split) => split,
            None => return false,
        };
        let Some((last, middle)) = rest.split_last() else {
            return value == &**first;
        };
        if value.len() < first.len() + last.len()
            || !value.starts_with(&**first)
            || !value.ends_with(&**last)
        {
            return false;
        }
        let mut between = &value[first.len()..value.len() - last.len()];
        for piece in middle {
            match between.find(&**piece) {
                Some(at) => between = &between[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Wildcard;

    fn glob(s: &str) -> Wildcard {
        Wildcard::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn star_matches_any_run_including_none() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("Simple*Service", "SimpleService", true),
            ("Simple*Service", "Simple Queue Service", true),
            ("Simple*Service", "SimpleServices", false),
            ("*.png", "dir/file.png", true),
            ("*.png", ".png", true),
            ("*.png", "file.PNG", false),
            ("dir/*.png", "dir/a/b.png", true),
            ("*/lib/*", "usr/lib/x", true),
            ("*/lib/*", "/lib/", true),
            ("*/lib/*", "usr/lib", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("ab*ab*ab", "ababab", true),
            ("ab*ab*ab", "abab", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("", "", true),
            ("", "x", false),
            ("é*ü", "é-ü", true),
        ];
        for &(pattern, value, expected) in cases {
            assert_eq!(
                glob(pattern).matches(value),
                expected,
                "{pattern:?} vs {value:?}"
            );
        }
    }

    #[test]
    fn escapes_make_literal_star_and_backslash() {
        assert!(glob(r"a\*b").matches("a*b"));
        assert!(!glob(r"a\*b").matches("axb"));
        assert!(glob(r"a\\b").matches(r"a\b"));
        assert!(glob(r"\**").matches("*tail"));
        assert!(!glob(r"\**").matches("tail"));
        assert!(glob(r"*\\").matches(r"dir\"));
    }

    #[test]
    fn rejects_what_eventbridge_rejects() {
        let cases: &[(&str, &str)] = &[
            ("a**b", "consecutive wildcard characters at position 1"),
            ("**", "consecutive wildcard characters at position 0"),
            (r"a\b", "invalid escape character at position 1"),
            ("trailing\\", "invalid escape character at position 8"),
        ];
        for &(pattern, reason) in cases {
            let err = Wildcard::parse(pattern).expect_err(pattern);
            assert!(err.starts_with(reason), "{pattern:?}: {err}");
        }
        // An escaped star followed by a wildcard is not two wildcards in a row.
        assert!(Wildcard::parse(r"\**").is_ok());
    }
}
