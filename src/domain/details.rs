//! Package details as templates and `package_pattern`s see them, and what a route does with
//! them: send, skip an unchanged revision, filter, or fail for lack of details.

use serde_json::{json, Value};

use super::route::Route;

/// What was read about one revision: the `package` and `changes` template objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Details {
    /// The `package` object (see docs/templates.md).
    pub package: Value,
    /// The `changes` object; null for a first revision.
    pub changes: Value,
    /// The revision's top hash equals its predecessor's (a re-push of the same content).
    pub unchanged: bool,
}

impl Details {
    /// `{"package": …, "changes": …}`, what a route's `package_pattern` is matched against.
    pub fn pattern_input(&self) -> Value {
        json!({"package": self.package, "changes": self.changes})
    }

    /// Why the details are incomplete: `package.error`, then `changes.error`.
    pub fn error(&self) -> Option<String> {
        self.error_of(true)
    }

    /// Why what a route reads is incomplete: `package.error`, and `changes.error` when the
    /// route reads `changes`. A previous revision that could not be read leaves the package
    /// whole; only the diff against it is missing.
    fn error_of(&self, with_changes: bool) -> Option<String> {
        let parts: &[&Value] = if with_changes {
            &[&self.package, &self.changes]
        } else {
            &[&self.package]
        };
        let reasons: Vec<&str> = parts
            .iter()
            .filter_map(|part| part.get("error").and_then(Value::as_str))
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}

/// What one matched route does with an event, once its details (if any) are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Render and send.
    Send,
    /// A re-push of the predecessor's content, and the route skips those (`skip_unchanged`).
    SkipUnchanged,
    /// The route's `package_pattern` does not match the details.
    Filtered,
    /// The route's `package_pattern`, or the recipients only its `to_from` names, cannot be
    /// decided: the details are missing or incomplete. Permanent, because a partial manifest
    /// could make the pattern lie either way, and deleting the message would lose the mail.
    Unevaluable(String),
}

impl Route {
    /// Decides for `details`, the event's details when they were read (None when no route
    /// needed them or `s3.details` is off). A route that does not use details ignores them.
    ///
    /// A route that cannot be decided without whole details (a `package_pattern`, or recipients
    /// that only `to_from` names) fails instead of guessing, so its message reaches the DLQ
    /// rather than being deleted unsent. Whole means what the route reads: `to_from` reads the
    /// package only, and a `package_pattern` reads `changes` only when it names them.
    pub fn decide(&self, details: Option<&Details>) -> Decision {
        let details = details.filter(|_| self.needs_details());
        let missing = |with_changes: bool| match details {
            None => Some("no package details were read".to_owned()),
            Some(d) => d.error_of(with_changes),
        };
        if let Some(pattern) = &self.package_pattern {
            if let Some(reason) = missing(pattern.names("changes")) {
                return Decision::Unevaluable(format!(
                    "package_pattern cannot be evaluated: {reason}"
                ));
            }
        }
        if self.metadata_recipients.is_some() && self.recipients.is_empty() {
            if let Some(reason) = missing(false) {
                return Decision::Unevaluable(format!(
                    "to_from names every recipient and cannot be read: {reason}"
                ));
            }
        }
        let Some(details) = details else {
            return Decision::Send;
        };
        if self.skip_unchanged && details.unchanged {
            return Decision::SkipUnchanged;
        }
        match &self.package_pattern {
            Some(pattern) if !pattern.matches(&details.pattern_input()) => Decision::Filtered,
            _ => Decision::Send,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::route::RouteSpec;

    fn route(details: bool, skip_unchanged: bool, package_pattern: Option<Value>) -> Route {
        Route::compile(&spec(details, skip_unchanged, package_pattern)).expect("compiles")
    }

    fn spec(details: bool, skip_unchanged: bool, package_pattern: Option<Value>) -> RouteSpec {
        RouteSpec {
            name: "r".to_owned(),
            pattern: json!({"source": ["com.quiltdata"]}),
            template: Some("t".to_owned()),
            digest: None,
            to: vec!["team@example.com".to_owned()],
            cc: vec![],
            bcc: vec![],
            reply_to: vec![],
            from: None,
            details,
            package_pattern,
            skip_unchanged,
            to_from: None,
            allowed_domains: vec![],
            max_recipients: 50,
            topic: None,
        }
    }

    fn details(stage: &str, removed: u64, unchanged: bool) -> Details {
        Details {
            package: json!({"user_meta": {"stage": stage}, "workflow": {"id": "release"}, "error": null}),
            changes: json!({"removed": {"count": removed}, "unchanged": unchanged, "error": null}),
            unchanged,
        }
    }

    fn prod() -> Option<Value> {
        Some(json!({"package": {"user_meta": {"stage": ["prod"]}}}))
    }

    #[test]
    fn a_package_pattern_sends_only_what_it_matches() {
        let prod_only = route(true, true, prod());
        assert_eq!(
            prod_only.decide(Some(&details("prod", 0, false))),
            Decision::Send
        );
        assert_eq!(
            prod_only.decide(Some(&details("dev", 0, false))),
            Decision::Filtered
        );
        let removals = route(
            false,
            true,
            Some(json!({"changes": {"removed": {"count": [{"numeric": [">", 0]}]}}})),
        );
        assert_eq!(
            removals.decide(Some(&details("dev", 2, false))),
            Decision::Send
        );
        assert_eq!(
            removals.decide(Some(&details("dev", 0, false))),
            Decision::Filtered
        );
    }

    #[test]
    fn an_unchanged_revision_is_skipped_unless_the_route_wants_it() {
        let same = details("prod", 0, true);
        assert_eq!(
            route(true, true, None).decide(Some(&same)),
            Decision::SkipUnchanged
        );
        assert_eq!(route(true, false, None).decide(Some(&same)), Decision::Send);
        // A route that reads no details cannot know, and sends as it always did.
        assert_eq!(route(false, true, None).decide(Some(&same)), Decision::Send);
        assert_eq!(route(false, true, None).decide(None), Decision::Send);
    }

    #[test]
    fn a_package_pattern_without_whole_details_cannot_be_evaluated() {
        let mut partial = details("prod", 0, false);
        partial.package["error"] = json!("the manifest is empty: it has no header line");
        let Decision::Unevaluable(reason) = route(true, true, prod()).decide(Some(&partial)) else {
            panic!("a partial manifest must not decide a package_pattern");
        };
        assert!(reason.contains("the manifest is empty"), "{reason}");
        assert!(matches!(
            route(true, true, prod()).decide(None),
            Decision::Unevaluable(_)
        ));
        // Without a package_pattern, partial details still go out: the email says what failed.
        assert_eq!(
            route(true, true, None).decide(Some(&partial)),
            Decision::Send
        );
    }

    /// The details of an event whose own manifest was read whole but whose previous revision's
    /// was not (missing, corrupt, over a limit): only `changes` are missing.
    fn without_changes(stage: &str) -> Details {
        let mut d = details(stage, 0, false);
        d.changes = json!({"previous_top_hash": "aaa", "unchanged": false, "removed": null,
                           "error": "the previous revision's manifest was not read whole: NoSuchKey"});
        d
    }

    #[test]
    fn a_package_pattern_that_does_not_name_changes_is_decided_without_them() {
        let prod_only = route(true, true, prod());
        assert_eq!(
            prod_only.decide(Some(&without_changes("prod"))),
            Decision::Send
        );
        assert_eq!(
            prod_only.decide(Some(&without_changes("dev"))),
            Decision::Filtered
        );
        // Named in any `$or` branch, or below a dotted key, it still needs them.
        for pattern in [
            json!({"changes": {"removed": {"count": [{"numeric": [">", 0]}]}}}),
            json!({"changes.unchanged": [false]}),
            json!({"$or": [{"package": {"user_meta": {"stage": ["prod"]}}},
                           {"changes": {"added": {"count": [{"numeric": [">", 0]}]}}}]}),
        ] {
            let Decision::Unevaluable(reason) =
                route(true, true, Some(pattern.clone())).decide(Some(&without_changes("prod")))
            else {
                panic!("{pattern} names changes, which are missing");
            };
            assert!(reason.contains("NoSuchKey"), "{reason}");
        }
    }

    #[test]
    fn recipients_named_in_the_package_need_no_changes() {
        let owners = Route::compile(&RouteSpec {
            to: vec![],
            to_from: Some("user_meta.owners".to_owned()),
            allowed_domains: vec!["example.com".to_owned()],
            ..spec(false, true, None)
        })
        .expect("compiles");
        assert_eq!(
            owners.decide(Some(&without_changes("prod"))),
            Decision::Send
        );
    }

    #[test]
    fn recipients_only_the_package_names_need_whole_details() {
        let owners = |to: &[&str]| {
            Route::compile(&RouteSpec {
                to: to.iter().map(|a| (*a).to_owned()).collect(),
                to_from: Some("user_meta.owners".to_owned()),
                allowed_domains: vec!["example.com".to_owned()],
                ..spec(false, true, None)
            })
            .expect("compiles")
        };
        let mut partial = details("prod", 0, false);
        partial.package["error"] = json!("AccessDenied");
        // Deleting the message unsent would lose the notification: it goes to the DLQ instead.
        let Decision::Unevaluable(reason) = owners(&[]).decide(Some(&partial)) else {
            panic!("nobody can be named without the manifest");
        };
        assert!(reason.contains("AccessDenied"), "{reason}");
        assert!(matches!(owners(&[]).decide(None), Decision::Unevaluable(_)));
        // The operator's own recipients still get it.
        assert_eq!(
            owners(&["ops@example.org"]).decide(Some(&partial)),
            Decision::Send
        );
        assert_eq!(
            owners(&[]).decide(Some(&details("prod", 0, false))),
            Decision::Send
        );
    }

    #[test]
    fn errors_of_both_parts_are_joined() {
        let mut d = details("prod", 0, false);
        d.package["error"] = json!("a");
        d.changes["error"] = json!("b");
        assert_eq!(d.error().as_deref(), Some("a; b"));
        assert_eq!(details("prod", 0, false).error(), None);
        let first = Details {
            changes: Value::Null,
            ..details("prod", 0, false)
        };
        assert_eq!(first.error(), None);
    }
}
