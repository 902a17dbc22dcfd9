//! Who one email goes to ([`Addressees`]): the fixed recipients a route lists ([`Recipients`]),
//! then the ones a package names itself (`to_from`, [`MetadataRecipients`]): read from the package
//! details, checked against the route's allowed domains, capped, and only ever handed to SES as
//! parsed addresses. Knows nothing of routes: a route holds these and asks them.
//!
//! Anyone who can push a package can write its metadata, so an address from it is a claim, not
//! an instruction: only domains the operator listed get mail, and the route's fixed recipients
//! (the operator's own) are neither filtered nor displaced. Each entry must be exactly one
//! mailbox, and the allowed domain is checked on the address as it will be sent; an entry that
//! is not, or that SES could not take, is dropped alone, never the email.

use serde_json::Value;

use super::address::{ascii_domain, EmailAddress};

/// SES accepts at most 50 recipients (To, Cc and Bcc together) per message.
pub const SES_MAX_RECIPIENTS: usize = 50;

/// At most this many dropped values are quoted in the WARN line; the rest are counted.
const DROPS_QUOTED: usize = 10;

/// Longest value quoted from metadata, in characters.
const QUOTE_CHARS: usize = 80;

/// Who receives a route's email whatever the package: the addresses its configuration lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients {
    /// To.
    pub to: Vec<EmailAddress>,
    /// Cc.
    pub cc: Vec<EmailAddress>,
    /// Bcc.
    pub bcc: Vec<EmailAddress>,
    /// Reply-To.
    pub reply_to: Vec<EmailAddress>,
}

impl Recipients {
    /// Nobody would receive the email (Reply-To receives nothing).
    pub fn is_empty(&self) -> bool {
        self.to.is_empty() && self.cc.is_empty() && self.bcc.is_empty()
    }
}

/// Where in the package details the recipients are, and which domains may receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataRecipients {
    /// Keys below `package`, e.g. `["user_meta", "owners"]`.
    path: Vec<String>,
    /// Allowed domains.
    allowed: Vec<AllowedDomain>,
}

/// One entry of `allowed_domains`, lower-case ASCII (IDNs in their `xn--` form).
#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowedDomain {
    /// `example.com`: that domain only, not its subdomains.
    Exact(String),
    /// `*.example.com`: any subdomain of it, at any depth, but not `example.com` itself.
    Below(String),
}

impl AllowedDomain {
    fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim().trim_start_matches('@');
        let (wildcard, domain) = match trimmed.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        if domain.contains('*') {
            return Err(format!(
                "`allowed_domains`: {raw:?}: a wildcard may only be a leading `*.`, as in \"*.example.com\""
            ));
        }
        let ascii = ascii_domain(domain)
            .ok_or_else(|| format!("`allowed_domains`: {raw:?} is not a domain name"))?;
        if !wildcard {
            return Ok(Self::Exact(ascii));
        }
        if !ascii.contains('.') {
            return Err(format!(
                "`allowed_domains`: {raw:?} would allow every domain under a top-level domain; name the organisation's domain, as in \"*.example.com\""
            ));
        }
        Ok(Self::Below(ascii))
    }

    /// Whether `domain` (lower-case ASCII, as sent) is allowed by this entry.
    fn admits(&self, domain: &str) -> bool {
        match self {
            Self::Exact(allowed) => domain == allowed,
            Self::Below(parent) => domain
                .strip_suffix(parent.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty()),
        }
    }
}

/// One value from the metadata that gets no mail, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The value, quoted with escapes and cut to a safe length.
    pub value: String,
    /// Why.
    pub reason: String,
}

/// The outcome of [`MetadataRecipients::select`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Addresses to add to To, in metadata order.
    pub to: Vec<EmailAddress>,
    /// Invalid addresses and addresses outside the allowed domains, the first few.
    pub dropped: Vec<Dropped>,
    /// How many were dropped in all (invalid or not allowed).
    pub dropped_count: usize,
    /// Valid, allowed addresses left out because the email was full (`max_recipients`).
    pub over_limit: usize,
}

impl MetadataRecipients {
    /// Compiles `to_from` (a dotted path below `package`, e.g. `user_meta.owners`) and the
    /// allowed domains.
    ///
    /// # Errors
    /// An empty path or segment, no allowed domain, a domain that is not a domain name, or a
    /// wildcard that is not a leading `*.` or is over a single label (`*.com`).
    pub fn compile(to_from: &str, allowed_domains: &[String]) -> Result<Self, String> {
        let trimmed = to_from.trim();
        let trimmed = trimmed.strip_prefix("package.").unwrap_or(trimmed);
        let path: Vec<String> = trimmed.split('.').map(str::to_owned).collect();
        if trimmed.is_empty() || path.iter().any(String::is_empty) {
            return Err(format!(
                "`to_from` {to_from:?} is not a path like \"user_meta.owners\""
            ));
        }
        if allowed_domains.is_empty() {
            return Err(
                "`to_from` needs `allowed_domains`: anyone who can push a package could otherwise make the service mail any address"
                    .to_owned(),
            );
        }
        let allowed = allowed_domains
            .iter()
            .map(|d| AllowedDomain::parse(d))
            .collect::<Result<_, _>>()?;
        Ok(Self { path, allowed })
    }

    /// The path as configured, below `package`.
    pub fn path(&self) -> String {
        self.path.join(".")
    }

    /// The addresses `package` names at the path, valid and allowed, after the route's fixed
    /// `recipients`, so that the email has at most `max_recipients` in all. Addresses equal to
    /// one already on the email are left out silently.
    pub fn select(
        &self,
        package: Option<&Value>,
        fixed: &Recipients,
        max_recipients: usize,
    ) -> Selection {
        let mut selection = Selection::default();
        let Some(found) = package.and_then(|p| self.path.iter().try_fold(p, |v, k| v.get(k)))
        else {
            return selection;
        };
        let values: Vec<&Value> = match found {
            Value::Array(items) => items.iter().collect(),
            Value::Null => Vec::new(),
            other => vec![other],
        };
        let mut seen: Vec<String> = fixed
            .to
            .iter()
            .chain(&fixed.cc)
            .chain(&fixed.bcc)
            .map(|a| a.mailbox().to_ascii_lowercase())
            .collect();
        let room = max_recipients.saturating_sub(seen.len());
        for value in values {
            let address = match self.check(value) {
                Ok(address) => address,
                Err(reason) => {
                    selection.dropped_count += 1;
                    if selection.dropped.len() < DROPS_QUOTED {
                        selection.dropped.push(Dropped {
                            value: quote(value),
                            reason,
                        });
                    }
                    continue;
                }
            };
            let key = address.mailbox().to_ascii_lowercase();
            if seen.contains(&key) {
                continue;
            }
            if selection.to.len() >= room {
                selection.over_limit += 1;
                continue;
            }
            seen.push(key);
            selection.to.push(address);
        }
        selection
    }

    fn check(&self, value: &Value) -> Result<EmailAddress, String> {
        let Value::String(raw) = value else {
            return Err("not a string".to_owned());
        };
        let address = EmailAddress::parse(raw).map_err(|e| e.to_string())?;
        // The domain of the very address that is sent, so no other part of the entry can pass.
        let domain = address.domain();
        if self.allowed.iter().any(|a| a.admits(domain)) {
            Ok(address)
        } else {
            Err(format!("domain {domain} is not in allowed_domains"))
        }
    }
}

/// Who one email of a route goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressees {
    /// To: the route's fixed `to`, then what `to_from` kept, in metadata order.
    pub to: Vec<EmailAddress>,
    /// What `to_from` kept and dropped; None for a route without it.
    pub selection: Option<Selection>,
    /// Nobody would receive the email (To, Cc and Bcc all empty).
    pub nobody: bool,
}

impl Recipients {
    /// The addressees of one email: these fixed recipients, then the ones `from_metadata` (a
    /// route's `to_from`) finds in `package` (from its details, when read), so that the email
    /// has at most `max_recipients` in all.
    pub fn addressees(
        &self,
        from_metadata: Option<&MetadataRecipients>,
        max_recipients: usize,
        package: Option<&Value>,
    ) -> Addressees {
        let selection = from_metadata.map(|source| source.select(package, self, max_recipients));
        let to: Vec<EmailAddress> = self
            .to
            .iter()
            .chain(selection.iter().flat_map(|s| &s.to))
            .cloned()
            .collect();
        let nobody = to.is_empty() && self.is_empty();
        Addressees {
            to,
            selection,
            nobody,
        }
    }
}

/// A metadata value for a log line: JSON-quoted (so CR/LF and quotes are escaped), cut short.
fn quote(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn owners(allowed: &[&str]) -> MetadataRecipients {
        let allowed: Vec<String> = allowed.iter().map(|d| (*d).to_owned()).collect();
        MetadataRecipients::compile("user_meta.owners", &allowed).expect("compiles")
    }

    fn fixed(to: &[&str]) -> Recipients {
        Recipients {
            to: to
                .iter()
                .map(|a| EmailAddress::parse(a).expect("address"))
                .collect(),
            ..Recipients::default()
        }
    }

    fn package(owners: Value) -> Value {
        json!({"user_meta": {"owners": owners}})
    }

    fn addresses(selection: &Selection) -> Vec<&str> {
        selection.to.iter().map(EmailAddress::as_str).collect()
    }

    #[test]
    fn a_string_or_a_list_of_strings_names_recipients_in_allowed_domains_only() {
        let route = owners(&["example.com"]);
        let one = route.select(Some(&package(json!("ana@example.com"))), &fixed(&[]), 50);
        assert_eq!(addresses(&one), ["ana@example.com"]);
        let list = route.select(
            Some(&package(json!([
                "ana@example.com",
                "eve@evil.test",
                "Bo <bo@EXAMPLE.com>"
            ]))),
            &fixed(&[]),
            50,
        );
        assert_eq!(addresses(&list), ["ana@example.com", "Bo <bo@example.com>"]);
        assert_eq!(list.dropped_count, 1);
        assert_eq!(list.dropped[0].value, "\"eve@evil.test\"");
        assert!(list.dropped[0]
            .reason
            .contains("evil.test is not in allowed_domains"));
    }

    #[test]
    fn a_list_or_two_angle_addresses_in_one_entry_cannot_smuggle_a_foreign_address() {
        let route = owners(&["example.com"]);
        for smuggled in [
            "eve@evil.test, Bo <bo@example.com>",
            "<eve2@evil.test><bo2@example.com>",
        ] {
            let got = route.select(Some(&package(json!([smuggled]))), &fixed(&[]), 50);
            assert!(got.to.is_empty(), "{smuggled:?} kept as {:?}", got.to);
            assert_eq!(got.dropped_count, 1, "{smuggled:?}");
        }
    }

    #[test]
    fn each_entry_is_sent_as_one_ascii_mailbox_or_dropped_alone_with_why() {
        let route = owners(&["example.com"]);
        let got = route.select(
            Some(&package(json!([
                "jürgen@example.com",
                "Jürgen <j@example.com>",
                "a@example.com (the owner)",
                "team: a@example.com, b@example.com;",
                "Bo <bo@example.com> trailing",
                "ana@example.com",
            ]))),
            &fixed(&["ops@example.org"]),
            50,
        );
        assert_eq!(
            addresses(&got),
            [
                "=?utf-8?b?SsO8cmdlbg==?= <j@example.com>",
                "ana@example.com"
            ]
        );
        let reasons: Vec<&str> = got.dropped.iter().map(|d| d.reason.as_str()).collect();
        assert_eq!(got.dropped_count, 4, "{reasons:?}");
        assert!(reasons[0].contains("not 7-bit ASCII"), "{reasons:?}");
        assert!(
            reasons[1..]
                .iter()
                .all(|r| r.contains("not one email address")),
            "{reasons:?}"
        );
    }

    #[test]
    fn subdomains_are_not_the_domain() {
        let route = owners(&["example.com"]);
        let got = route.select(
            Some(&package(json!([
                "a@mail.example.com",
                "b@example.com.evil.test"
            ]))),
            &fixed(&[]),
            50,
        );
        assert!(got.to.is_empty());
        assert_eq!(got.dropped_count, 2);
    }

    #[test]
    fn a_wildcard_allows_subdomains_only_not_the_domain_itself() {
        let route = owners(&["*.example.com"]);
        let got = route.select(
            Some(&package(json!([
                "a@mail.example.com",
                "b@deep.mail.EXAMPLE.com",
                "c@example.com",
                "d@evilexample.com",
                "e@example.com.evil.test",
                "f@.example.com",
            ]))),
            &fixed(&[]),
            50,
        );
        assert_eq!(
            addresses(&got),
            ["a@mail.example.com", "b@deep.mail.example.com"]
        );
        assert_eq!(got.dropped_count, 4);
        let both = owners(&["example.com", "*.example.com"]);
        let got = both.select(
            Some(&package(json!(["a@mail.example.com", "c@example.com"]))),
            &fixed(&[]),
            50,
        );
        assert_eq!(addresses(&got), ["a@mail.example.com", "c@example.com"]);
        let idn = owners(&["*.bücher.example"]);
        let got = idn.select(
            Some(&package(json!(["a@läden.bücher.example"]))),
            &fixed(&[]),
            50,
        );
        assert_eq!(addresses(&got), ["a@xn--lden-loa.xn--bcher-kva.example"]);
    }

    #[test]
    fn a_wildcard_is_only_a_leading_star_dot_below_a_named_domain() {
        for bad in [
            "*example.com",
            "a.*.example.com",
            "*.*.example.com",
            "*",
            "*.",
            "*.com",
        ] {
            let err =
                MetadataRecipients::compile("user_meta.owners", &[bad.to_owned()]).expect_err(bad);
            assert!(err.starts_with("`allowed_domains`"), "{bad}: {err}");
        }
    }

    #[test]
    fn no_metadata_at_the_path_names_nobody() {
        let route = owners(&["example.com"]);
        for package in [json!({}), json!({"user_meta": {}}), package(Value::Null)] {
            let got = route.select(Some(&package), &fixed(&[]), 50);
            assert_eq!(got, Selection::default(), "{package}");
        }
        assert_eq!(route.select(None, &fixed(&[]), 50), Selection::default());
    }

    #[test]
    fn hostile_values_are_dropped_never_passed_on() {
        let route = owners(&["example.com"]);
        let hostile = json!([
            "a@example.com\r\nBcc: victim@evil.test",
            "a@example.com\nX-Injected: 1",
            "\"Doe, \\\"Jane\\\"\" <jane@example.com>",
            "<script>@example.com",
            "no-at-sign",
            "",
            42,
            {"address": "x@example.com"},
            ["nested@example.com"],
            "x@exa mple.com",
            "x@example.com>",
        ]);
        let got = route.select(Some(&package(hostile)), &fixed(&[]), 50);
        for address in &got.to {
            assert!(!address.as_str().contains(['\r', '\n']), "{address:?}");
        }
        assert!(got.dropped_count >= 9, "{got:?}");
        assert!(got.dropped.iter().all(|d| !d.value.contains(['\r', '\n'])));
    }

    #[test]
    fn international_domains_match_in_either_form() {
        let unicode = owners(&["bücher.example"]);
        let punycode = owners(&["xn--bcher-kva.example"]);
        for route in [unicode, punycode] {
            let got = route.select(
                Some(&package(json!([
                    "ana@bücher.example",
                    "bo@xn--bcher-kva.example"
                ]))),
                &fixed(&[]),
                50,
            );
            assert_eq!(got.to.len(), 2, "{got:?}");
        }
    }

    #[test]
    fn the_fixed_recipients_come_first_and_the_rest_are_capped_in_metadata_order() {
        let route = owners(&["example.com"]);
        let many: Vec<String> = (0..10_000).map(|i| format!("u{i}@example.com")).collect();
        let got = route.select(
            Some(&package(json!(many))),
            &fixed(&["ops@example.org", "u0@example.com"]),
            50,
        );
        assert_eq!(got.to.len(), 48);
        assert_eq!(
            got.to[0].as_str(),
            "u1@example.com",
            "u0 is already on the email"
        );
        assert_eq!(got.over_limit, 10_000 - 1 - 48);
        assert_eq!(got.dropped_count, 0);
    }

    #[test]
    fn only_the_first_drops_are_quoted_and_each_is_short() {
        let route = owners(&["example.com"]);
        let bad: Vec<String> = (0..1000)
            .map(|i| format!("{}{i}@evil.test", "x".repeat(500)))
            .collect();
        let got = route.select(Some(&package(json!(bad))), &fixed(&[]), 50);
        assert_eq!(got.dropped_count, 1000);
        assert_eq!(got.dropped.len(), DROPS_QUOTED);
        assert!(got.dropped[0].value.chars().count() <= QUOTE_CHARS + 1);
    }

    #[test]
    fn to_from_needs_allowed_domains_and_a_path() {
        let err = MetadataRecipients::compile("user_meta.owners", &[]).expect_err("refused");
        assert!(err.contains("allowed_domains"), "{err}");
        for path in ["", ".", "user_meta..owners"] {
            assert!(MetadataRecipients::compile(path, &["example.com".to_owned()]).is_err());
        }
        let bad = MetadataRecipients::compile("user_meta.owners", &["not a domain".to_owned()]);
        assert!(bad.is_err());
        let prefixed =
            MetadataRecipients::compile("package.user_meta.owners", &["@Example.COM".to_owned()])
                .expect("a leading package. and @ are accepted");
        assert_eq!(prefixed.path(), "user_meta.owners");
    }
}
