//! IP addresses for the `cidr` operator and for exact values that are IP addresses.
//!
//! EventBridge compares addresses as numbers, not as text, so `"2001:db8::1"` and
//! `"2001:DB8:0::1"` are the same address. What counts as an address, the mask limits and the
//! range a CIDR covers follow Event Ruler's `CIDR` class (the engine behind EventBridge).

use std::net::IpAddr;

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IpRange {
    /// IPv4, as a 32-bit number.
    V4 { low: u32, high: u32 },
    /// IPv6, as a 128-bit number.
    V6 { low: u128, high: u128 },
}

impl IpRange {
    /// The range holding exactly one address.
    pub(super) fn single(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => {
                let n = u32::from(v4);
                Self::V4 { low: n, high: n }
            }
            IpAddr::V6(v6) => {
                let n = u128::from(v6);
                Self::V6 { low: n, high: n }
            }
        }
    }

    /// Parses `address/bits`.
    ///
    /// Like Ruler, the range starts at the address as written (host bits are not cleared) and
    /// ends at that address with every host bit set; an IPv4 mask must be below 32 and an IPv6
    /// mask below 128 (a single host is written as an exact value instead).
    ///
    /// # Errors
    /// The reason, worded like EventBridge's.
    pub(super) fn parse_cidr(cidr: &str) -> Result<Self, String> {
        let mut parts = cidr.split('/');
        let (Some(address), Some(bits), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err("malformed CIDR, one '/' required".to_owned());
        };
        if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("malformed CIDR, mask bits must be an integer".to_owned());
        }
        let bits: u32 = bits
            .parse()
            .map_err(|_| "malformed CIDR, mask bits must be an integer".to_owned())?;
        let ip = parse_ip(address).ok_or_else(|| format!("nonstandard IP address: {address}"))?;
        match ip {
            IpAddr::V4(v4) => {
                if bits > 31 {
                    return Err("IPv4 mask bits must be < 32".to_owned());
                }
                let low = u32::from(v4);
                let host = u32::MAX >> bits;
                Ok(Self::V4 {
                    low,
                    high: low | host,
                })
            }
            IpAddr::V6(v6) => {
                if bits > 127 {
                    return Err("IPv6 mask bits must be < 128".to_owned());
                }
                let low = u128::from(v6);
                let host = u128::MAX >> bits;
                Ok(Self::V6 {
                    low,
                    high: low | host,
                })
            }
        }
    }

    /// Whether `value` is an address inside the range.
    pub(super) fn contains(&self, value: &str) -> bool {
        match (self, parse_ip(value)) {
            (Self::V4 { low, high }, Some(IpAddr::V4(ip))) => {
                (*low..=*high).contains(&u32::from(ip))
            }
            (Self::V6 { low, high }, Some(IpAddr::V6(ip))) => {
                (*low..=*high).contains(&u128::from(ip))
            }
            _ => false,
        }
    }
}

/// Parses an IP address literal, accepting only what Ruler treats as one: four dot-separated
/// decimal groups, or hex digits and colons (no embedded dotted quad, no zone index).
pub(super) fn parse_ip(s: &str) -> Option<IpAddr> {
    let looks_v4 = s.split('.').count() == 4
        && s.split('.')
            .all(|group| !group.is_empty() && group.bytes().all(|b| b.is_ascii_digit()));
    let looks_v6 = s.contains(':') && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    if looks_v4 || looks_v6 {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_ip, IpRange};

    fn range(s: &str) -> IpRange {
        IpRange::parse_cidr(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    // The "IP address matching" example of
    // https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html
    #[test]
    fn ipv4_ranges() {
        let r = range("10.0.0.0/24");
        for (ip, inside) in [
            ("10.0.0.0", true),
            ("10.0.0.255", true),
            ("10.0.1.0", false),
            ("9.255.255.255", false),
            ("10.0.0", false),
            ("10.0.0.256", false),
            ("2001:db8::1", false),
            ("not an ip", false),
        ] {
            assert_eq!(r.contains(ip), inside, "{ip}");
        }
        assert!(range("0.0.0.0/0").contains("255.255.255.255"));
        assert!(range("192.168.1.1/31").contains("192.168.1.1"));
    }

    #[test]
    fn ipv6_ranges_compare_addresses_not_text() {
        let r = range("2001:db8::/32");
        assert!(r.contains("2001:db8::1"));
        assert!(r.contains("2001:DB8:0:0:0:0:0:ffff"));
        assert!(!r.contains("2001:db9::"));
        assert!(!r.contains("10.0.0.1"));
        assert!(range("::/0").contains("ffff::"));
    }

    #[test]
    fn host_bits_are_kept_as_the_bottom_of_the_range_like_ruler() {
        let r = range("10.0.0.5/24");
        assert!(!r.contains("10.0.0.4"));
        assert!(r.contains("10.0.0.5"));
        assert!(r.contains("10.0.0.255"));
    }

    #[test]
    fn rejects_malformed_cidrs() {
        for (cidr, reason) in [
            ("10.0.0.0", "malformed CIDR, one '/' required"),
            ("10.0.0.0/8/8", "malformed CIDR, one '/' required"),
            ("10.0.0.0/x", "malformed CIDR, mask bits must be an integer"),
            ("10.0.0.0/", "malformed CIDR, mask bits must be an integer"),
            (
                "10.0.0.0/-1",
                "malformed CIDR, mask bits must be an integer",
            ),
            ("10.0.0/8", "nonstandard IP address: 10.0.0"),
            ("example.com/8", "nonstandard IP address: example.com"),
            ("10.0.0.0/32", "IPv4 mask bits must be < 32"),
            ("::/128", "IPv6 mask bits must be < 128"),
        ] {
            assert_eq!(IpRange::parse_cidr(cidr), Err(reason.to_owned()), "{cidr}");
        }
    }

    #[test]
    fn only_plain_literals_are_addresses() {
        assert!(parse_ip("10.1.2.3").is_some());
        assert!(parse_ip("::1").is_some());
        assert!(parse_ip("::ffff:10.0.0.1").is_none());
        assert!(parse_ip("fe80::1%eth0").is_none());
        assert!(parse_ip("10.1.2").is_none());
        assert!(parse_ip("").is_none());
    }
}
