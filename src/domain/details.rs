//! Package details as templates and `package_pattern`s see them, and what a route does with
//! them: send, skip an unchanged revision, filter, or fail for lack of details.
//!
//! Details are typed: the package read whole or not ([`PackageRead`]), and the changes against
//! the previous revision, whole or not ([`Changes::diff`]). They become JSON only where the
//! templates and the pattern language read them ([`Details::package_json`],
//! [`Details::changes_json`], [`Details::pattern_input`]), so what a route relies on (the package
//! whole for `to_from`, the changes too for a `package_pattern` that names them) is decided on
//! the types, not by looking for an `"error"` key.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::changes::Changes;
use super::manifest::{readme_excerpt, Folder, ManifestSummary, Workflow};
use super::route::Route;

/// What was read about one revision: its package, and what changed since the previous one.
#[derive(Debug, Clone, PartialEq)]
pub struct Details {
    /// The package, read whole or not (the template's `package`).
    pub package: PackageRead,
    /// The difference from the previous revision (the template's `changes`); None for a first
    /// revision.
    pub changes: Option<Changes>,
    /// The revision's top hash equals its predecessor's, ignoring case (a re-push of the same
    /// content).
    pub unchanged: bool,
}

/// The package's manifest summarized, as far as it was read.
#[derive(Debug, Clone, PartialEq)]
pub enum PackageRead {
    /// Read whole: every field is a fact.
    Complete(Package),
    /// Not read whole, or its history could not be listed: the fields hold what was read, and
    /// `reason` says what is missing (the template's `package.error`).
    Incomplete {
        /// What was read.
        package: Package,
        /// Why it is incomplete, one or more causes joined by `"; "`.
        reason: String,
    },
}

/// What a manifest says about its package (see docs/templates.md, `package`).
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    /// The revision's commit message.
    pub message: Option<String>,
    /// The package's `user_meta`, empty without metadata.
    pub user_meta: Map<String, Value>,
    /// The package's workflow.
    pub workflow: Option<Workflow>,
    /// Files in the manifest (those read, when incomplete).
    pub files: u64,
    /// Their total size, in bytes.
    pub bytes: u64,
    /// The largest top-level folders, largest first.
    pub top_level: Vec<Folder>,
    /// The physical key of `README.md` at the package root.
    pub readme_key: Option<String>,
    /// The README's first characters, when it was read.
    pub readme: Option<String>,
}

impl Details {
    /// The template's `package` object.
    pub fn package_json(&self) -> Value {
        self.package.to_json()
    }

    /// The template's `changes` object; null for a first revision.
    pub fn changes_json(&self) -> Value {
        self.changes.as_ref().map_or(Value::Null, Changes::to_json)
    }

    /// `{"package": …, "changes": …}`, what a route's `package_pattern` is matched against.
    pub fn pattern_input(&self) -> Value {
        json!({"package": self.package_json(), "changes": self.changes_json()})
    }

    /// Why the details are incomplete: the package's reason, then the changes'.
    pub fn incomplete(&self) -> Option<String> {
        self.missing(true)
    }

    /// Why what a route reads is incomplete: the package's reason, and the changes' when the
    /// route reads `changes`. A previous revision that could not be read leaves the package
    /// whole; only the diff against it is missing.
    fn missing(&self, with_changes: bool) -> Option<String> {
        let changes = self
            .changes
            .as_ref()
            .filter(|_| with_changes)
            .and_then(|c| c.diff.as_ref().err());
        let reasons: Vec<&str> = self
            .package
            .reason()
            .into_iter()
            .chain(changes.map(String::as_str))
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// Reads details back from [`Self::pattern_input`]'s form (the built-in sample).
    ///
    /// # Errors
    /// `package` or `changes` is not of the documented shape.
    pub fn from_json(value: &Value) -> Result<Self, serde_json::Error> {
        let field = |key: &str| value.get(key).unwrap_or(&Value::Null);
        let package = PackageRead::from_json(field("package"))?;
        let changes = match field("changes") {
            Value::Null => None,
            changes => Some(Changes::from_json(changes)?),
        };
        Ok(Self {
            package,
            unchanged: changes.as_ref().is_some_and(|c| c.unchanged),
            changes,
        })
    }
}

impl PackageRead {
    /// What was read, whole or not.
    pub fn package(&self) -> &Package {
        match self {
            Self::Complete(package) | Self::Incomplete { package, .. } => package,
        }
    }

    /// What was read, whole or not, to change (tests, samples).
    pub fn package_mut(&mut self) -> &mut Package {
        match self {
            Self::Complete(package) | Self::Incomplete { package, .. } => package,
        }
    }

    /// Why the package is incomplete; None when it was read whole.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Complete(_) => None,
            Self::Incomplete { reason, .. } => Some(reason),
        }
    }

    /// The same package, incomplete for `reason` (added after any reason it already has).
    #[must_use]
    pub fn failed(self, reason: &str) -> Self {
        match self {
            Self::Complete(package) => Self::Incomplete {
                package,
                reason: reason.to_owned(),
            },
            Self::Incomplete {
                package,
                reason: first,
            } => Self::Incomplete {
                package,
                reason: format!("{first}; {reason}"),
            },
        }
    }

    /// The template's `package` object.
    ///
    /// ```json
    /// {"message": "…", "user_meta": {}, "workflow": {"id": "…", "config": "…"} | null,
    ///  "files": 3, "bytes": 120, "top_level": [{"name": "data", "files": 2, "bytes": 100}],
    ///  "readme_key": "s3://…" | null, "readme": "…" | null, "error": "…" | null}
    /// ```
    pub fn to_json(&self) -> Value {
        let p = self.package();
        let workflow = p
            .workflow
            .as_ref()
            .map_or(Value::Null, |w| json!({"id": w.id, "config": w.config}));
        let top_level: Vec<Value> = p
            .top_level
            .iter()
            .map(|f| json!({"name": f.name, "files": f.files, "bytes": f.bytes}))
            .collect();
        json!({
            "message": p.message,
            "user_meta": p.user_meta,
            "workflow": workflow,
            "files": p.files,
            "bytes": p.bytes,
            "top_level": top_level,
            "readme_key": p.readme_key,
            "readme": p.readme,
            "error": self.reason(),
        })
    }

    /// Reads a `package` object back from [`Self::to_json`]'s form.
    fn from_json(value: &Value) -> Result<Self, serde_json::Error> {
        let form = PackageForm::deserialize(value)?;
        let package = Package {
            message: form.message,
            user_meta: form.user_meta,
            workflow: form.workflow.map(|w| Workflow {
                id: w.id,
                config: w.config,
            }),
            files: form.files,
            bytes: form.bytes,
            top_level: form
                .top_level
                .into_iter()
                .map(|f| Folder {
                    name: f.name,
                    files: f.files,
                    bytes: f.bytes,
                })
                .collect(),
            readme_key: form.readme_key,
            readme: form.readme,
        };
        Ok(match form.error {
            None => Self::Complete(package),
            Some(reason) => Self::Incomplete { package, reason },
        })
    }
}

impl Package {
    /// What `summary` says, with `readme`, the README text the caller fetched from its
    /// `readme_key` (cut here to [`README_CHARS`](super::manifest::README_CHARS) characters).
    pub fn from_summary(summary: &ManifestSummary, readme: Option<&str>) -> Self {
        Self {
            message: summary.message().map(str::to_owned),
            user_meta: summary.user_meta().clone(),
            workflow: summary.workflow().cloned(),
            files: summary.files(),
            bytes: summary.bytes(),
            top_level: summary.top_level().to_vec(),
            readme_key: summary.readme_key().map(str::to_owned),
            readme: readme.map(|text| readme_excerpt(text).to_owned()),
        }
    }
}

/// The `package` object as [`PackageRead::to_json`] writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageForm {
    message: Option<String>,
    user_meta: Map<String, Value>,
    workflow: Option<WorkflowForm>,
    files: u64,
    bytes: u64,
    top_level: Vec<FolderForm>,
    readme_key: Option<String>,
    readme: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowForm {
    id: Option<String>,
    config: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FolderForm {
    name: String,
    files: u64,
    bytes: u64,
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
            Some(d) => d.missing(with_changes),
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
    use crate::domain::changes::Diff;
    use crate::domain::route::RouteSpec;
    use crate::domain::route_builder::RouteSpecBuilder;

    fn route(details: bool, skip_unchanged: bool, package_pattern: Option<Value>) -> Route {
        Route::compile(&spec(details, skip_unchanged, package_pattern).build()).expect("compiles")
    }

    fn spec(
        details: bool,
        skip_unchanged: bool,
        package_pattern: Option<Value>,
    ) -> RouteSpecBuilder {
        let spec = RouteSpec::builder("r")
            .details(details)
            .skip_unchanged(skip_unchanged);
        match package_pattern {
            Some(pattern) => spec.package_pattern(pattern),
            None => spec,
        }
    }

    fn package(stage: &str) -> Package {
        Package {
            message: None,
            user_meta: json!({"stage": stage})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            workflow: Some(Workflow {
                id: Some("release".to_owned()),
                config: None,
            }),
            files: 0,
            bytes: 0,
            top_level: vec![],
            readme_key: None,
            readme: None,
        }
    }

    fn details(stage: &str, removed: u64, unchanged: bool) -> Details {
        let mut diff = Diff::default();
        diff.removed.count = removed;
        Details {
            package: PackageRead::Complete(package(stage)),
            changes: Some(Changes {
                previous_top_hash: "aaa".to_owned(),
                unchanged,
                diff: Ok(diff),
                compare_url: None,
                tables: None,
            }),
            unchanged,
        }
    }

    /// `details` whose package was not read whole, for `reason`.
    fn partial(details: Details, reason: &str) -> Details {
        Details {
            package: details.package.failed(reason),
            ..details
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
        let partial = partial(
            details("prod", 0, false),
            "the manifest is empty: it has no header line",
        );
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
        if let Some(changes) = &mut d.changes {
            changes.diff =
                Err("the previous revision's manifest was not read whole: NoSuchKey".to_owned());
        }
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
        let owners = Route::compile(
            &spec(false, true, None)
                .to(&[])
                .to_from("user_meta.owners")
                .allowed_domains(&["example.com"])
                .build(),
        )
        .expect("compiles");
        assert_eq!(
            owners.decide(Some(&without_changes("prod"))),
            Decision::Send
        );
    }

    #[test]
    fn recipients_only_the_package_names_need_whole_details() {
        let owners = |to: &[&str]| {
            Route::compile(
                &spec(false, true, None)
                    .to(to)
                    .to_from("user_meta.owners")
                    .allowed_domains(&["example.com"])
                    .build(),
            )
            .expect("compiles")
        };
        let partial = partial(details("prod", 0, false), "AccessDenied");
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
    fn reasons_of_both_parts_are_joined() {
        let mut d = partial(details("prod", 0, false), "a");
        if let Some(changes) = &mut d.changes {
            changes.diff = Err("b".to_owned());
        }
        assert_eq!(d.incomplete().as_deref(), Some("a; b"));
        assert_eq!(details("prod", 0, false).incomplete(), None);
        let first = Details {
            changes: None,
            ..details("prod", 0, false)
        };
        assert_eq!(first.incomplete(), None);
        assert_eq!(
            partial(partial(first, "a"), "c").package.reason(),
            Some("a; c")
        );
    }

    /// What templates and patterns see: `package.error` and `changes.error` say what is
    /// missing, and a diff that is missing is null field by field.
    #[test]
    fn the_json_says_what_is_missing_and_reads_back_the_same() {
        let whole = details("prod", 2, false);
        let json = whole.pattern_input();
        assert_eq!(json["package"]["error"], Value::Null);
        assert_eq!(json["package"]["user_meta"]["stage"], "prod");
        assert_eq!(
            json["package"]["workflow"],
            json!({"id": "release", "config": null})
        );
        assert_eq!(json["changes"]["error"], Value::Null);
        assert_eq!(json["changes"]["removed"]["count"], 2);

        let unread = partial(without_changes("dev"), "AccessDenied");
        let json = unread.pattern_input();
        assert_eq!(json["package"]["error"], "AccessDenied");
        assert!(json["changes"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("NoSuchKey")));
        for diff in ["added", "removed", "modified", "bytes_delta", "user_meta"] {
            assert_eq!(json["changes"][diff], Value::Null, "{diff}");
        }

        let first = Details {
            changes: None,
            ..whole.clone()
        };
        assert_eq!(first.pattern_input()["changes"], Value::Null);
        for d in [whole, unread, first] {
            let back = Details::from_json(&d.pattern_input()).expect("reads back");
            assert_eq!(back, d);
        }
        let stray = json!({"package": {"files": 1}, "changes": null});
        assert!(
            Details::from_json(&stray).is_err(),
            "a partial object is refused"
        );
    }
}
