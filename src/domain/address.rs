//! One email address: exactly one RFC 5322 mailbox (`user@example.com` or
//! `Name <user@example.com>`), kept in its parts and written back as the 7-bit ASCII string that
//! SES receives.
//!
//! SES v2 takes addresses as 7-bit ASCII strings and rejects the whole SendEmail for one that is
//! not, so every address is made ASCII here, once: the domain in punycode, a non-ASCII display
//! name as RFC 2047 encoded words. A local part (before the `@`) that is not ASCII cannot be made
//! valid, so such an address is refused. Because the string sent is built from the parsed parts,
//! what is checked (the domain against `allowed_domains`) is exactly what is sent.
//!
//! The grammar is lettre's, anchored at both ends: a list (`a@x, b@y`), a group, two
//! `<…>`, a comment or any trailing text is not one mailbox.

use std::fmt;

use lettre::message::{Mailbox, Mailboxes};

/// Longest entry parsed, in bytes: RFC 5322's line limit.
const MAX_INPUT: usize = 998;

/// Longest `local@domain`: RFC 5321's path limit less the angle brackets.
const MAX_ADDR_SPEC: usize = 254;

/// Longest display name kept, in characters; a longer one is left off and the address kept.
const MAX_NAME_CHARS: usize = 100;

/// An email address as SES accepts it, parsed from one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress {
    /// The display name as written (Unicode, unquoted); None when absent or left off.
    name: Option<String>,
    /// `local@domain`, ASCII, the domain in lower-case punycode.
    addr_spec: String,
    /// Where the domain starts in `addr_spec`.
    at: usize,
    /// Exactly what SES receives.
    sent: String,
}

/// Why a string is not one email address SES can send to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Nothing but white space.
    #[error("is empty")]
    Empty,
    /// CR, LF, tab or another control character: header injection, or a pasting accident.
    #[error("contains control characters (CR, LF, tab, …)")]
    Control,
    /// Longer than any address SES would take.
    #[error("is longer than {MAX_INPUT} bytes")]
    TooLong,
    /// Several addresses in one entry.
    #[error("holds {0} addresses, not one: give each its own entry")]
    List(usize),
    /// Not the syntax of one mailbox.
    #[error(
        "is not one email address like `user@example.com` or `Name <user@example.com>` \
         (no lists, groups, comments or trailing text)"
    )]
    NotOneMailbox,
    /// The part before the `@` is not a valid local part (or longer than 64 bytes).
    #[error("has an invalid local part (before the @)")]
    LocalPart,
    /// The part before the `@` is not ASCII: SES (and most mail servers) cannot deliver to it.
    #[error("has a local part (before the @) that is not 7-bit ASCII, which SES cannot send to")]
    NonAsciiLocalPart,
    /// The part after the `@` is not a domain name.
    #[error("has a domain (after the @) that is not a domain name")]
    Domain,
    /// `local@domain` is longer than RFC 5321 allows.
    #[error("is longer than {MAX_ADDR_SPEC} characters as user@domain")]
    AddrSpecTooLong,
}

impl EmailAddress {
    /// Parses one mailbox and makes it 7-bit ASCII: the domain in punycode, a display name
    /// quoted or RFC 2047 encoded as needed (a name over 100 characters is left off).
    ///
    /// # Errors
    /// Empty, control characters, too long, not exactly one mailbox, an invalid or non-ASCII
    /// local part, or a domain that is not a domain name.
    pub fn parse(raw: &str) -> Result<Self, AddressError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(AddressError::Empty);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(AddressError::Control);
        }
        if trimmed.len() > MAX_INPUT {
            return Err(AddressError::TooLong);
        }
        let mailbox: Mailbox = trimmed.parse().map_err(|e| match e {
            lettre::address::AddressError::InvalidUser => AddressError::LocalPart,
            lettre::address::AddressError::InvalidDomain => AddressError::Domain,
            _ => match trimmed.parse::<Mailboxes>() {
                Ok(list) if list.iter().count() > 1 => AddressError::List(list.iter().count()),
                _ => AddressError::NotOneMailbox,
            },
        })?;
        let local = mailbox.email.user();
        if !local.is_ascii() {
            return Err(AddressError::NonAsciiLocalPart);
        }
        let domain = ascii_domain(mailbox.email.domain()).ok_or(AddressError::Domain)?;
        let addr_spec = format!("{local}@{domain}");
        if addr_spec.len() > MAX_ADDR_SPEC {
            return Err(AddressError::AddrSpecTooLong);
        }
        let name = mailbox
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty() && n.chars().count() <= MAX_NAME_CHARS);
        let sent = match name.and_then(encode_name) {
            Some(encoded) => format!("{encoded} <{addr_spec}>"),
            None => addr_spec.clone(),
        };
        Ok(Self {
            name: name.map(str::to_owned),
            at: local.len() + 1,
            addr_spec,
            sent,
        })
    }

    /// Exactly the string SES receives: 7-bit ASCII, `user@domain` or `Name <user@domain>`.
    pub fn as_str(&self) -> &str {
        &self.sent
    }

    /// The `user@domain` part as sent, without a display name.
    pub fn mailbox(&self) -> &str {
        &self.addr_spec
    }

    /// The domain as sent: lower-case ASCII, an IDN in its `xn--` form.
    pub fn domain(&self) -> &str {
        &self.addr_spec[self.at..]
    }

    /// The display name as written (before encoding); None when there is none or it was left off.
    pub fn display_name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sent)
    }
}

/// A display name as an RFC 5322 phrase in 7-bit ASCII: as written when it is plain words,
/// quoted when it holds specials (`,`, `.`, `"`, …), RFC 2047 encoded words when it is not ASCII.
/// None if it cannot be written (it has control characters, which `parse` refuses anyway).
fn encode_name(name: &str) -> Option<String> {
    if name.chars().any(char::is_control) {
        return None;
    }
    if name.is_ascii() {
        let plain = name
            .bytes()
            .all(|b| b == b' ' || b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b));
        return Some(if plain {
            name.to_owned()
        } else {
            format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
        });
    }
    let mut folded = String::new();
    {
        let mut writer =
            email_encoding::headers::writer::EmailWriter::new(&mut folded, 0, 0, false);
        email_encoding::headers::rfc2047::encode(name, &mut writer).ok()?;
    }
    // The encoder folds long names over several lines; SES takes one line, and unfolding (RFC
    // 5322: drop the CRLF before the space) keeps the encoded words apart.
    let encoded = folded.replace("\r\n", "");
    encoded.is_ascii().then_some(encoded)
}

/// A domain in lower-case ASCII, IDNs in their `xn--` form; None if it is not a domain name
/// (letters, digits and hyphens in labels of 1 to 63, 253 in all).
pub(crate) fn ascii_domain(domain: &str) -> Option<String> {
    let ascii = idna::domain_to_ascii(domain).ok()?;
    let valid = !ascii.is_empty()
        && ascii.len() <= 253
        && ascii.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    valid.then_some(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string sent is 7-bit ASCII without control characters.
    fn sendable(address: &EmailAddress) -> bool {
        address
            .as_str()
            .bytes()
            .all(|b| b.is_ascii() && !b.is_ascii_control())
    }

    #[test]
    fn one_mailbox_is_sent_as_written_when_it_is_already_ascii() {
        let cases = [
            ("a@b.c", "a@b.c"),
            ("  a@example.com  ", "a@example.com"),
            ("Quilt <quilt@example.com>", "Quilt <quilt@example.com>"),
            ("<bo@example.com>", "bo@example.com"),
            ("\"Data, Team\" <d@e.f>", "\"Data, Team\" <d@e.f>"),
            ("Dr. Bo <bo@example.com>", "\"Dr. Bo\" <bo@example.com>"),
            (
                "\"Doe, \\\"Jane\\\"\" <jane@example.com>",
                "\"Doe, \\\"Jane\\\"\" <jane@example.com>",
            ),
            ("Bo <bo@EXAMPLE.com>", "Bo <bo@example.com>"),
            ("first.last+tag@example.com", "first.last+tag@example.com"),
        ];
        for (raw, sent) in cases {
            let address = EmailAddress::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!(address.as_str(), sent, "{raw:?}");
            assert!(sendable(&address), "{raw:?}");
        }
    }

    #[test]
    fn international_parts_are_made_ascii_as_ses_requires() {
        let cases = [
            ("ana@bücher.example", "ana@xn--bcher-kva.example"),
            (
                "Jürgen <j@example.com>",
                "=?utf-8?b?SsO8cmdlbg==?= <j@example.com>",
            ),
            (
                "\"Müller, Jürgen\" <j@bücher.example>",
                "=?utf-8?b?TcO8bGxlciwgSsO8cmdlbg==?= <j@xn--bcher-kva.example>",
            ),
            (
                "李四 <li@example.com>",
                "=?utf-8?b?5p2O5Zub?= <li@example.com>",
            ),
        ];
        for (raw, sent) in cases {
            let address = EmailAddress::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!(address.as_str(), sent, "{raw:?}");
        }
        let long = format!("{} <u@example.com>", "ü".repeat(90));
        let address = EmailAddress::parse(&long).expect("a long non-ASCII name");
        assert!(sendable(&address), "{address:?}");
        assert!(
            address.as_str().matches("=?utf-8?b?").count() > 1,
            "{address:?}"
        );
    }

    #[test]
    fn the_parts_are_those_sent() {
        let address = EmailAddress::parse("Jürgen <J.Doe@Bücher.Example>").expect("valid");
        assert_eq!(address.display_name(), Some("Jürgen"));
        assert_eq!(address.mailbox(), "J.Doe@xn--bcher-kva.example");
        assert_eq!(address.domain(), "xn--bcher-kva.example");
        assert!(address.as_str().ends_with(" <J.Doe@xn--bcher-kva.example>"));
    }

    #[test]
    fn a_string_that_is_not_exactly_one_mailbox_is_refused_with_why() {
        let cases = [
            ("", AddressError::Empty),
            ("   ", AddressError::Empty),
            ("eve@evil.test, Bo <bo@example.com>", AddressError::List(2)),
            ("a@example.com, b@example.com", AddressError::List(2)),
            (
                "<eve2@evil.test><bo2@example.com>",
                AddressError::NotOneMailbox,
            ),
            (
                "bo@example.com <eve@evil.test>",
                AddressError::NotOneMailbox,
            ),
            (
                "Bo <bo@example.com> eve@evil.test",
                AddressError::NotOneMailbox,
            ),
            (
                "friends: a@example.com, b@example.com;",
                AddressError::NotOneMailbox,
            ),
            ("friends:;", AddressError::NotOneMailbox),
            ("a@example.com (comment)", AddressError::NotOneMailbox),
            ("Bo (x) <bo@example.com>", AddressError::NotOneMailbox),
            ("a@example.com;b@evil.test", AddressError::NotOneMailbox),
            (
                "a@example.com\r\nBcc: victim@evil.test",
                AddressError::Control,
            ),
            ("a@example.com\nX-Injected: 1", AddressError::Control),
            ("Bo\t<bo@example.com>", AddressError::Control),
            ("a@example.com\u{0}", AddressError::Control),
            ("\"Bo\r\n\" <bo@example.com>", AddressError::Control),
            ("not-an-address", AddressError::NotOneMailbox),
            ("@b.c", AddressError::NotOneMailbox),
            ("a@", AddressError::NotOneMailbox),
            ("a b@c.d", AddressError::NotOneMailbox),
            ("Name <a@b.c", AddressError::NotOneMailbox),
            ("a@b.c>", AddressError::NotOneMailbox),
            ("<script>@example.com", AddressError::NotOneMailbox),
            ("x@exa mple.com", AddressError::NotOneMailbox),
            ("a@[127.0.0.1]", AddressError::NotOneMailbox),
            ("\"a b\"@example.com", AddressError::LocalPart),
            ("a.@example.com", AddressError::NotOneMailbox),
            ("a@-example.com", AddressError::Domain),
            ("a@exa_mple.com", AddressError::Domain),
            ("a@ex!ample.com", AddressError::Domain),
            ("jürgen@example.com", AddressError::NonAsciiLocalPart),
            (
                "Jürgen <jürgen@bücher.example>",
                AddressError::NonAsciiLocalPart,
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(EmailAddress::parse(raw), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn over_long_parts_are_refused_and_an_over_long_name_is_left_off() {
        let local = "x".repeat(65);
        assert_eq!(
            EmailAddress::parse(&format!("{local}@example.com")),
            Err(AddressError::LocalPart)
        );
        let label = "d".repeat(64);
        assert_eq!(
            EmailAddress::parse(&format!("a@{label}.com")),
            Err(AddressError::Domain)
        );
        let domain = ["d".repeat(63), "d".repeat(63), "d".repeat(63)].join(".");
        assert_eq!(
            EmailAddress::parse(&format!("{}@{domain}", "x".repeat(64))),
            Err(AddressError::AddrSpecTooLong)
        );
        assert_eq!(
            EmailAddress::parse(&format!("{}a@example.com", "x".repeat(10_000))),
            Err(AddressError::TooLong)
        );
        let named = EmailAddress::parse(&format!("{} <a@example.com>", "N".repeat(101)))
            .expect("the address is kept");
        assert_eq!(named.as_str(), "a@example.com");
        assert_eq!(named.display_name(), None);
    }

    #[test]
    fn domains_are_letters_digits_and_hyphens_in_ascii() {
        assert_eq!(ascii_domain("Example.COM").as_deref(), Some("example.com"));
        assert_eq!(
            ascii_domain("bücher.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
        for bad in [
            "",
            "a..b",
            "-a.b",
            "a-.b",
            "a b.c",
            "a_b.c",
            &"x".repeat(64),
        ] {
            assert_eq!(ascii_domain(bad), None, "{bad:?}");
        }
    }
}
