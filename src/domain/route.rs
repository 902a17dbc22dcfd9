//! Routes: which events become which emails, to whom.
//!
//! A [`RouteSpec`] is what the configuration file says; [`Route`] is the same route compiled once
//! at start-up (pattern compiled, addresses checked), so nothing is parsed per message.

use serde::Deserialize;
use serde_json::Value;

pub use super::address::{AddressError, EmailAddress};
use super::pattern::{Pattern, PatternError};
use super::recipients::{Addressees, MetadataRecipients, Recipients, SES_MAX_RECIPIENTS};
use super::schedule::{self, DigestSpec, Schedule};

/// A route as written in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Unique name, used in logs, email tags and the `route` template variable.
    pub name: String,
    /// EventBridge event pattern: an object, or a string holding its JSON.
    pub pattern: Value,
    /// Template directory name under `templates.dir`; required unless the route is a digest
    /// (which names its template in `digest.template`).
    #[serde(default)]
    pub template: Option<String>,
    /// Batch the route's events into one email per window instead of one email per event.
    #[serde(default)]
    pub digest: Option<DigestSpec>,
    /// Recipients.
    #[serde(default)]
    pub to: Vec<String>,
    /// Carbon-copy recipients.
    #[serde(default)]
    pub cc: Vec<String>,
    /// Blind-copy recipients.
    #[serde(default)]
    pub bcc: Vec<String>,
    /// Reply-To addresses.
    #[serde(default)]
    pub reply_to: Vec<String>,
    /// Sender for this route instead of `ses.from`.
    #[serde(default)]
    pub from: Option<String>,
    /// Give the template the package details (`package`, `changes`), read from S3.
    #[serde(default = "yes")]
    pub details: bool,
    /// EventBridge pattern matched against `{"package": …, "changes": …}`; reads details even
    /// when `details` is false.
    #[serde(default)]
    pub package_pattern: Option<Value>,
    /// Send nothing for a revision whose top hash equals its predecessor's.
    #[serde(default = "yes")]
    pub skip_unchanged: bool,
    /// A path below `package` naming more recipients (a string or a list, one address per
    /// entry), e.g. `user_meta.owners`; needs `allowed_domains`.
    #[serde(default)]
    pub to_from: Option<String>,
    /// The domains that `to_from` addresses may have: exactly (`example.com` is not
    /// `mail.example.com`), or `*.example.com` for its subdomains (not `example.com` itself).
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Most addresses on one email (To, Cc and Bcc); `to_from` addresses beyond it are dropped.
    #[serde(default = "max_recipients")]
    pub max_recipients: usize,
    /// A topic of `ses.contact_list`: recipients can unsubscribe from this route's mail.
    #[serde(default)]
    pub topic: Option<String>,
}

fn yes() -> bool {
    true
}

fn max_recipients() -> usize {
    SES_MAX_RECIPIENTS
}

/// A route ready to use.
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique name.
    pub name: String,
    /// Compiled pattern.
    pub pattern: Pattern,
    /// The template this route renders: one event's, or for a digest route the digest's.
    pub template: String,
    /// For a digest route, when its windows close; `None` sends one email per event.
    pub digest: Option<Schedule>,
    /// Recipients.
    pub recipients: Recipients,
    /// Sender override.
    pub from: Option<EmailAddress>,
    /// The template gets the package details.
    pub details: bool,
    /// Filter on the package details.
    pub package_pattern: Option<Pattern>,
    /// Skip a revision whose top hash equals its predecessor's (only where details are read).
    pub skip_unchanged: bool,
    /// Recipients the package names, when `to_from` is set.
    pub metadata_recipients: Option<MetadataRecipients>,
    /// Most addresses on one email.
    pub max_recipients: usize,
    /// Contact-list topic, for one-click unsubscribe.
    pub topic: Option<String>,
    /// Its details include `changes.tables` (the table files read): its `package_pattern`
    /// mentions `tables`, or its template gets details and may show them. Compiled
    /// conservatively (any template may); [`RouteTable::narrow_tables`] clears it for routes
    /// whose template is known not to.
    pub reads_tables: bool,
}

impl Route {
    /// Whether this route reads the package details: for its template, its `package_pattern` or
    /// its `to_from`.
    pub fn needs_details(&self) -> bool {
        self.details || self.package_pattern.is_some() || self.metadata_recipients.is_some()
    }

    /// The value of the `route` tag on this route's mail (see [`route_tag`]).
    pub fn tag(&self) -> String {
        route_tag(&self.name)
    }

    /// The addressees for a package (`package` from its details, when read): the fixed
    /// recipients, then those `to_from` names, at most `max_recipients` in all.
    pub fn addressees(&self, package: Option<&Value>) -> Addressees {
        self.recipients.addressees(
            self.metadata_recipients.as_ref(),
            self.max_recipients,
            package,
        )
    }
}

/// Longest `route` tag value: SES allows 256 characters, and SES feedback keeps 200 of a tag
/// (`feedback::MAX_CHARS`), so a longer one would not lead back to its route.
pub const ROUTE_TAG_MAX_CHARS: usize = 200;

/// Length of the hash suffix of a [`route_tag`] that is not the name itself: `-q` and 16 hex
/// digits.
const HASHED_SUFFIX_CHARS: usize = 18;

/// The `route` tag SES carries on a route's mail, and on its bounces and complaints back to
/// the worker. SES tag values allow only ASCII letters, digits, `_` and `-` (`MessageTag` in the
/// SES API reference): a name of those characters (at most [`ROUTE_TAG_MAX_CHARS`]) is its own
/// tag, as it always was; any other name becomes its allowed characters (each other one as `_`), then `-q` and a 64-bit
/// FNV-1a hash of the whole name in hex. Feedback finds the route by comparing tags
/// ([`RouteTable::by_tag`]), so the mapping need not be reversed, only stable and distinct;
/// [`RouteTable::compile`] refuses two routes with one tag.
pub fn route_tag(name: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !name.is_empty() && name.len() <= ROUTE_TAG_MAX_CHARS && name.chars().all(allowed) {
        return name.to_owned();
    }
    let mut tag: String = name
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .take(ROUTE_TAG_MAX_CHARS - HASHED_SUFFIX_CHARS)
        .collect();
    tag.push_str(&format!("-q{:016x}", fnv1a(name.as_bytes())));
    tag
}

/// 64-bit FNV-1a: tiny and defined by its constants, so a tag stays the same across builds and
/// versions of this program (a mail sent before an upgrade still finds its route).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Why a route could not be compiled; always names the route.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum RouteError {
    /// The pattern is not a valid EventBridge pattern.
    #[error("route \"{route}\": pattern {cause}")]
    Pattern {
        /// Route name.
        route: String,
        /// What the pattern compiler said.
        cause: PatternError,
    },
    /// The pattern string is not JSON.
    #[error("route \"{route}\": {field} is a string but not JSON: {reason}")]
    PatternJson {
        /// Route name.
        route: String,
        /// `pattern` or `package_pattern`.
        field: &'static str,
        /// Parser message.
        reason: String,
    },
    /// The package pattern is not a valid EventBridge pattern.
    #[error("route \"{route}\": package_pattern {cause}")]
    PackagePattern {
        /// Route name.
        route: String,
        /// What the pattern compiler said.
        cause: PatternError,
    },
    /// An address is malformed, or cannot be sent by SES (a non-ASCII local part).
    #[error("route \"{route}\": `{field}`: {value:?} {cause}")]
    Address {
        /// Route name.
        route: String,
        /// `to`, `cc`, `bcc`, `reply_to` or `from`.
        field: &'static str,
        /// The address as configured.
        value: String,
        /// What is wrong.
        cause: AddressError,
    },
    /// `to_from`, `allowed_domains` or `max_recipients` is unusable.
    #[error("route \"{route}\": {reason}")]
    Recipients {
        /// Route name.
        route: String,
        /// What is wrong.
        reason: String,
    },
    /// The route names no template, or names one where it does not belong.
    #[error("route \"{route}\": {reason}")]
    Template {
        /// Route name.
        route: String,
        /// What is wrong.
        reason: String,
    },
    /// The `digest` table is invalid, or asks for something a digest cannot do.
    #[error("route \"{route}\": {reason}")]
    Digest {
        /// Route name.
        route: String,
        /// What is wrong, with a valid example.
        reason: String,
    },
    /// Nobody would receive the email.
    #[error(
        "route \"{route}\": has no recipients (`to`, `cc`, `bcc` and `to_from` are all empty)"
    )]
    NoRecipients {
        /// Route name.
        route: String,
    },
    /// Two routes would carry one `route` tag, so SES feedback could not tell them apart.
    #[error("route \"{route}\": its SES tag {tag:?} is also route \"{other}\"'s; rename one")]
    SameTag {
        /// Route name.
        route: String,
        /// The earlier route with the same tag.
        other: String,
        /// The tag.
        tag: String,
    },
}

impl Route {
    /// Compiles a configured route.
    ///
    /// # Errors
    /// The pattern is invalid, an address is malformed, there are no recipients, the template
    /// is missing (or set beside `digest`), or the digest is invalid.
    pub fn compile(spec: &RouteSpec) -> Result<Self, RouteError> {
        let route = || spec.name.clone();
        let (template, digest) = template_and_schedule(spec)?;
        let pattern_value = pattern_json(&spec.pattern, "pattern", &spec.name)?;
        let pattern = Pattern::compile(&pattern_value).map_err(|cause| RouteError::Pattern {
            route: route(),
            cause,
        })?;
        let package_pattern = spec
            .package_pattern
            .as_ref()
            .map(|raw| {
                let value = pattern_json(raw, "package_pattern", &spec.name)?;
                Pattern::compile(&value).map_err(|cause| RouteError::PackagePattern {
                    route: route(),
                    cause,
                })
            })
            .transpose()?;
        let address = |field: &'static str, raw: &str| {
            EmailAddress::parse(raw).map_err(|cause| RouteError::Address {
                route: route(),
                field,
                value: raw.to_owned(),
                cause,
            })
        };
        let addresses = |field: &'static str, raw: &[String]| {
            raw.iter()
                .map(|a| address(field, a))
                .collect::<Result<Vec<_>, _>>()
        };
        let recipients = Recipients {
            to: addresses("to", &spec.to)?,
            cc: addresses("cc", &spec.cc)?,
            bcc: addresses("bcc", &spec.bcc)?,
            reply_to: addresses("reply_to", &spec.reply_to)?,
        };
        let metadata_recipients = spec
            .to_from
            .as_deref()
            .map(|path| MetadataRecipients::compile(path, &spec.allowed_domains))
            .transpose()
            .map_err(|reason| RouteError::Recipients {
                route: route(),
                reason,
            })?;
        if metadata_recipients.is_none() && !spec.allowed_domains.is_empty() {
            return Err(RouteError::Recipients {
                route: route(),
                reason: "`allowed_domains` is set but `to_from` is not: it only filters `to_from` addresses".to_owned(),
            });
        }
        if !(1..=SES_MAX_RECIPIENTS).contains(&spec.max_recipients) {
            return Err(RouteError::Recipients {
                route: route(),
                reason: format!("`max_recipients` must be between 1 and {SES_MAX_RECIPIENTS} (SES's limit per email)"),
            });
        }
        let fixed = recipients.to.len() + recipients.cc.len() + recipients.bcc.len();
        if fixed == 0 && metadata_recipients.is_none() {
            return Err(RouteError::NoRecipients { route: route() });
        }
        if fixed > spec.max_recipients {
            return Err(RouteError::Recipients {
                route: route(),
                reason: format!(
                    "{fixed} fixed recipients are more than `max_recipients` ({})",
                    spec.max_recipients
                ),
            });
        }
        let from = spec
            .from
            .as_deref()
            .filter(|f| !f.trim().is_empty())
            .map(|f| address("from", f))
            .transpose()?;
        Ok(Self {
            name: spec.name.clone(),
            pattern,
            template,
            digest,
            recipients,
            from,
            details: spec.details,
            package_pattern,
            skip_unchanged: spec.skip_unchanged,
            reads_tables: spec.details || pattern_mentions_tables(spec),
            metadata_recipients,
            max_recipients: spec.max_recipients,
            topic: spec
                .topic
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        })
    }
}

/// Whether the route's `package_pattern` may match on `changes.tables`: it names `tables`
/// anywhere (cheap and conservative).
fn pattern_mentions_tables(spec: &RouteSpec) -> bool {
    spec.package_pattern
        .as_ref()
        .is_some_and(|p| p.to_string().contains("tables"))
}

/// The template a route renders and, for a digest route, its schedule.
fn template_and_schedule(spec: &RouteSpec) -> Result<(String, Option<Schedule>), RouteError> {
    let template_error = |reason: &str| RouteError::Template {
        route: spec.name.clone(),
        reason: reason.to_owned(),
    };
    let digest_error = |reason: String| RouteError::Digest {
        route: spec.name.clone(),
        reason,
    };
    let Some(digest) = &spec.digest else {
        return match &spec.template {
            Some(template) if !template.trim().is_empty() => Ok((template.clone(), None)),
            _ => Err(template_error(
                "`template` is required (or `digest` for a digest route)",
            )),
        };
    };
    if spec.template.is_some() {
        return Err(template_error(
            "a digest route sends only its digest: name its template in `digest.template` \
             (default \"digest\")",
        ));
    }
    if spec.to_from.is_some() {
        return Err(digest_error(
            "`to_from` cannot be used with `digest`: recipients cannot come from one package's \
             metadata in a digest of many packages; list them in `to`, `cc` or `bcc`"
                .to_owned(),
        ));
    }
    let schedule =
        Schedule::parse(digest).map_err(|reason| digest_error(format!("`digest`: {reason}")))?;
    let template = match &digest.template {
        None => schedule::DEFAULT_TEMPLATE.to_owned(),
        Some(template) if !template.trim().is_empty() => template.clone(),
        Some(_) => {
            return Err(digest_error(
                "`digest.template` is empty: leave it out for the default \"digest\"".to_owned(),
            ))
        }
    };
    Ok((template, Some(schedule)))
}

/// A pattern as configured: an object, or a string holding its JSON (a rule's pasted pattern).
fn pattern_json(raw: &Value, field: &'static str, route: &str) -> Result<Value, RouteError> {
    match raw {
        Value::String(json) => serde_json::from_str(json).map_err(|e| RouteError::PatternJson {
            route: route.to_owned(),
            field,
            reason: e.to_string(),
        }),
        other => Ok(other.clone()),
    }
}

/// All routes, in configuration order.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Compiles every route.
    ///
    /// # Errors
    /// The first route that fails to compile, or the second of two routes with one SES tag.
    pub fn compile(specs: &[RouteSpec]) -> Result<Self, RouteError> {
        let routes: Vec<Route> = specs.iter().map(Route::compile).collect::<Result<_, _>>()?;
        let mut tags = std::collections::HashMap::new();
        for route in &routes {
            if let Some(other) = tags.insert(route.tag(), &route.name) {
                return Err(RouteError::SameTag {
                    route: route.name.clone(),
                    other: other.clone(),
                    tag: route.tag(),
                });
            }
        }
        Ok(Self { routes })
    }

    /// Every route, in order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Stops reading tables for the routes whose template does not use them
    /// (`template_may_use(template)` is false) and whose `package_pattern` does not mention
    /// them. `specs` are the ones these routes were compiled from, in the same order.
    pub fn narrow_tables(&mut self, specs: &[RouteSpec], template_may_use: impl Fn(&str) -> bool) {
        for (route, spec) in self.routes.iter_mut().zip(specs) {
            route.reads_tables &= pattern_mentions_tables(spec)
                || (route.details && template_may_use(&route.template));
        }
    }

    /// Whether any route reads tables: when none does, the worker never reads table files;
    /// else it reads them for the events that one of those routes matches.
    pub fn any_reads_tables(&self) -> bool {
        self.routes.iter().any(|route| route.reads_tables)
    }

    /// The route whose mail carries this `route` tag (SES feedback names it).
    pub fn by_tag(&self, tag: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.tag() == tag)
    }

    /// The routes whose pattern matches the envelope, in configuration order.
    pub fn matching<'a>(&'a self, envelope: &'a Value) -> impl Iterator<Item = &'a Route> + 'a {
        self.routes
            .iter()
            .filter(move |route| route.pattern.matches(envelope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::domain::route_builder::RouteSpecBuilder;

    /// A route named `name` with `pattern`, rendering `package-created` to team@example.com.
    fn route(name: &str, pattern: Value) -> RouteSpecBuilder {
        RouteSpec::builder(name)
            .template("package-created")
            .pattern(pattern)
    }

    fn spec(name: &str, pattern: Value) -> RouteSpec {
        route(name, pattern).build()
    }

    fn with_package_pattern(name: &str, package_pattern: Value) -> RouteSpec {
        route(name, json!({"source": ["com.quiltdata"]}))
            .package_pattern(package_pattern)
            .build()
    }

    #[test]
    fn a_route_reads_details_for_its_template_or_its_package_pattern() {
        let compile = |details: bool, package_pattern: Option<Value>| {
            let route = route("r", json!({"source": ["com.quiltdata"]})).details(details);
            let route = match package_pattern {
                Some(pattern) => route.package_pattern(pattern),
                None => route,
            };
            Route::compile(&route.build())
                .expect("compiles")
                .needs_details()
        };
        assert!(compile(true, None));
        assert!(!compile(false, None));
        let prod = json!({"package": {"user_meta": {"stage": ["prod"]}}});
        assert!(compile(false, Some(prod.clone())));
        assert!(compile(false, Some(Value::String(prod.to_string()))));
    }

    #[test]
    fn details_and_skip_unchanged_default_to_on() {
        let spec: RouteSpec = serde_json::from_value(json!({
            "name": "r", "template": "t", "to": ["a@b.c"], "pattern": {"source": ["com.quiltdata"]}
        }))
        .expect("parses");
        assert!(spec.details && spec.skip_unchanged && spec.package_pattern.is_none());
    }

    fn documented() -> Value {
        serde_json::from_str(include_str!("../../events/package-revision.json")).expect("json")
    }

    #[test]
    fn a_name_ses_tags_can_carry_is_its_own_route_tag() {
        for name in ["package-created", "raw_data-v2", "OPS", &"x".repeat(200)] {
            assert_eq!(route_tag(name), name);
        }
    }

    #[test]
    fn any_other_name_gets_a_stable_tag_of_allowed_characters_that_tells_names_apart() {
        // Pinned: a tag must not change between versions, or feedback on mail sent before an
        // upgrade would not find its route.
        assert_eq!(
            route_tag("Data team / weekly (é)"),
            "Data_team___weekly____-q38dbe7fbb766d9f9"
        );
        let names = [
            "raw.data",
            "ops@team",
            "a b",
            "a/b",
            "a_b-q",
            "",
            "é",
            "ü",
            &"y".repeat(201),
            &"y".repeat(400),
        ];
        let tags: Vec<String> = names.iter().map(|n| route_tag(n)).collect();
        for (name, tag) in names.iter().zip(&tags) {
            assert!(
                tag.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                "{name:?} -> {tag}"
            );
            assert!(!tag.is_empty() && tag.chars().count() <= ROUTE_TAG_MAX_CHARS);
        }
        let distinct: std::collections::HashSet<&String> = tags.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{tags:?}");
    }

    #[test]
    fn feedback_finds_its_route_by_tag_and_two_routes_may_not_share_one() {
        let pattern = json!({"source": ["com.quiltdata"]});
        let table = RouteTable::compile(&[
            spec("plain", pattern.clone()),
            spec("Data team / weekly", pattern.clone()),
        ])
        .expect("compiles");
        let found = |tag: &str| table.by_tag(tag).map(|r| r.name.clone());
        assert_eq!(found("plain").as_deref(), Some("plain"));
        let weekly = route_tag("Data team / weekly");
        assert_eq!(found(&weekly).as_deref(), Some("Data team / weekly"));
        assert_eq!(found("Data_team___weekly"), None);

        let clash = RouteTable::compile(&[
            spec("Data team / weekly", pattern.clone()),
            spec(&weekly, pattern),
        ]);
        assert!(
            matches!(clash, Err(RouteError::SameTag { ref other, .. }) if other == "Data team / weekly"),
            "{clash:?}"
        );
    }

    #[test]
    fn routes_match_in_configuration_order() {
        let table = RouteTable::compile(&[
            spec("other-bucket", json!({"detail": {"bucket": ["other"]}})),
            spec("example", json!({"detail": {"bucket": ["example"]}})),
            spec("all-quilt", json!({"source": ["com.quiltdata"]})),
        ])
        .expect("compiles");
        let event = documented();
        let names: Vec<_> = table.matching(&event).map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["example", "all-quilt"]);
    }

    #[test]
    fn a_pattern_may_be_the_rules_json_pasted_as_a_string() {
        let pasted = r#"{"source":["com.quiltdata"],"detail-type":["package-revision"],
            "detail":{"type":["created"],"handle":[{"prefix":"some/"}],"bucket":["example"]}}"#;
        let table = RouteTable::compile(&[spec("pasted", Value::String(pasted.to_owned()))])
            .expect("compiles");
        assert_eq!(table.matching(&documented()).count(), 1);
    }

    #[test]
    fn errors_name_the_route() {
        let bad_to = route("r1", json!({"source": ["x"]}))
            .to(&["not-an-address"])
            .build();
        let injected = route("r2", json!({"source": ["x"]}))
            .cc(&["a@b.c\r\nBcc: evil@x.y"])
            .build();
        let nobody = route("r3", json!({"source": ["x"]})).to(&[]).build();
        let cases = [
            (
                bad_to,
                "route \"r1\": `to`: \"not-an-address\" is not one email address",
            ),
            (injected, "route \"r2\": `cc`:"),
            (nobody, "route \"r3\": has no recipients"),
            (
                spec("r4", Value::String("{oops".to_owned())),
                "route \"r4\": pattern is a string but not JSON",
            ),
            (spec("r5", json!("[]")), "route \"r5\": pattern"),
            (
                with_package_pattern("r6", Value::String("{oops".to_owned())),
                "route \"r6\": package_pattern is a string but not JSON",
            ),
            (
                with_package_pattern("r7", json!({"package": "prod"})),
                "route \"r7\": package_pattern",
            ),
            (
                route("r8", json!({"source": ["x"]}))
                    .to_from("user_meta.owners")
                    .build(),
                "route \"r8\": `to_from` needs `allowed_domains`",
            ),
            (
                route("r9", json!({"source": ["x"]}))
                    .allowed_domains(&["example.com"])
                    .build(),
                "route \"r9\": `allowed_domains` is set but `to_from` is not",
            ),
            (
                route("r10", json!({"source": ["x"]}))
                    .max_recipients(51)
                    .build(),
                "route \"r10\": `max_recipients` must be between 1 and 50",
            ),
        ];
        for (spec, expected) in cases {
            let err = Route::compile(&spec).expect_err(expected).to_string();
            assert!(err.starts_with(expected), "got {err}, want {expected}");
        }
    }

    fn digest_route(name: &str, digest: Value) -> RouteSpecBuilder {
        route(name, json!({"source": ["com.quiltdata"]}))
            .no_template()
            .digest(digest)
    }

    fn digest_spec(name: &str, digest: Value) -> RouteSpec {
        digest_route(name, digest).build()
    }

    #[test]
    fn a_digest_route_renders_the_digest_template_unless_it_names_another() {
        let hourly =
            Route::compile(&digest_spec("hourly", json!({"every": "1h"}))).expect("compiles");
        assert_eq!(hourly.template, "digest");
        assert_eq!(hourly.digest, Some(Schedule::Every { seconds: 3600 }));
        let morning = Route::compile(&digest_spec(
            "morning",
            json!({"at": "09:00", "timezone": "Europe/Berlin", "template": "team-digest"}),
        ))
        .expect("compiles");
        assert_eq!(morning.template, "team-digest");
        assert_eq!(
            morning.digest.map(|d| d.describe()).as_deref(),
            Some("daily at 09:00 Europe/Berlin")
        );
        let single = Route::compile(&spec("single", json!({"source": ["x"]}))).expect("compiles");
        assert_eq!(
            (single.template.as_str(), single.digest),
            ("package-created", None)
        );
    }

    #[test]
    fn a_digest_is_configured_as_a_table_in_the_route() {
        let spec: RouteSpec = serde_json::from_value(json!({
            "name": "r", "to": ["a@b.c"], "pattern": {"source": ["com.quiltdata"]},
            "digest": {"at": "09:00", "timezone": "Europe/Berlin"}
        }))
        .expect("parses");
        assert_eq!(spec.template, None);
        assert_eq!(
            spec.digest.as_ref().and_then(|d| d.timezone.as_deref()),
            Some("Europe/Berlin")
        );
        let typo = serde_json::from_value::<RouteSpec>(json!({
            "name": "r", "to": ["a@b.c"], "pattern": {"source": ["x"]},
            "digest": {"evry": "1h"}
        }))
        .expect_err("unknown digest key");
        assert!(typo.to_string().contains("evry"), "{typo}");
    }

    #[test]
    fn digest_and_template_errors_name_the_route() {
        let cases = [
            (
                route("d1", json!({"source": ["x"]})).no_template().build(),
                "route \"d1\": `template` is required (or `digest` for a digest route)",
            ),
            (
                digest_route("d2", json!({"every": "1h"}))
                    .template("package-created")
                    .build(),
                "route \"d2\": a digest route sends only its digest: name its template in \
                 `digest.template` (default \"digest\")",
            ),
            (
                digest_route("d3", json!({"every": "1h"}))
                    .to_from("user_meta.owners")
                    .allowed_domains(&["example.com"])
                    .build(),
                "route \"d3\": `to_from` cannot be used with `digest`",
            ),
            (
                digest_spec("d4", json!({"every": "1h", "at": "09:00"})),
                "route \"d4\": `digest`: set `every` or `at`, not both",
            ),
            (
                digest_spec("d5", json!({"at": "09:00", "timezone": "Europe/Berlinn"})),
                "route \"d5\": `digest`: `timezone` = \"Europe/Berlinn\" is not a known IANA",
            ),
            (
                digest_spec("d6", json!({"every": "1h", "template": " "})),
                "route \"d6\": `digest.template` is empty",
            ),
        ];
        for (spec, expected) in cases {
            let err = Route::compile(&spec).expect_err(expected).to_string();
            assert!(err.starts_with(expected), "got {err}, want {expected}");
        }
    }

    #[test]
    fn a_route_may_take_all_its_recipients_from_the_package() {
        let route = Route::compile(
            &route("owners", json!({"source": ["x"]}))
                .to(&[])
                .to_from("user_meta.owners")
                .allowed_domains(&["example.com"])
                .build(),
        )
        .expect("compiles");
        assert!(route.needs_details());
        assert_eq!(route.max_recipients, 50);
    }

    #[test]
    fn fixed_addresses_ses_cannot_take_are_refused_at_load_naming_route_field_and_value() {
        let cases = [
            (
                route("r1", json!({"source": ["x"]}))
                    .bcc(&["jürgen@example.com"])
                    .build(),
                "route \"r1\": `bcc`: \"jürgen@example.com\" has a local part (before the @) that is not 7-bit ASCII",
            ),
            (
                route("r2", json!({"source": ["x"]}))
                    .from("a@example.com, b@example.com")
                    .build(),
                "route \"r2\": `from`: \"a@example.com, b@example.com\" holds 2 addresses, not one",
            ),
            (
                route("r3", json!({"source": ["x"]}))
                    .reply_to(&["<a@example.com><b@evil.test>"])
                    .build(),
                "route \"r3\": `reply_to`: \"<a@example.com><b@evil.test>\" is not one email address",
            ),
        ];
        for (spec, expected) in cases {
            let err = Route::compile(&spec).expect_err(expected).to_string();
            assert!(err.starts_with(expected), "got {err}, want {expected}");
        }
    }

    #[test]
    fn fixed_addresses_are_kept_in_the_ascii_form_ses_takes() {
        let route = Route::compile(
            &route("r", json!({"source": ["x"]}))
                .to(&["Jürgen <j@bücher.example>"])
                .from("Qüilt <q@example.com>")
                .build(),
        )
        .expect("compiles");
        assert_eq!(
            route.recipients.to[0].as_str(),
            "=?utf-8?b?SsO8cmdlbg==?= <j@xn--bcher-kva.example>"
        );
        assert_eq!(
            route.from.as_ref().map(EmailAddress::as_str),
            Some("=?utf-8?b?UcO8aWx0?= <q@example.com>")
        );
    }
}
