//! Compact forms of what a manifest entry says about its content: the hash (decoded to 32
//! bytes when it is SHA-256, as quilt3 writes it) and a fingerprint of the entry's metadata.

use std::hash::{Hash, Hasher};

use serde_json::Value;

/// A file's content hash, compact: SHA-256 digests are kept as their 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentHash {
    /// `sha2-256-chunked` (quilt3's default), its base64 value decoded.
    Sha256Chunked([u8; 32]),
    /// `SHA256`, its hex value decoded.
    Sha256([u8; 32]),
    /// Any other type, or a value that does not decode: kept as text.
    Other {
        /// The `type` field.
        kind: Box<str>,
        /// The `value` field.
        value: Box<str>,
    },
}

impl ContentHash {
    /// The hash of an entry's `{"type", "value"}`.
    pub(super) fn new(kind: &str, value: &str) -> Self {
        let decoded = match kind {
            "sha2-256-chunked" => decode_base64_32(value).map(Self::Sha256Chunked),
            "SHA256" => decode_hex_32(value).map(Self::Sha256),
            _ => None,
        };
        decoded.unwrap_or_else(|| Self::Other {
            kind: kind.into(),
            value: value.into(),
        })
    }
}

/// A 64-bit fingerprint of a JSON value, equal for equal values whatever the key order
/// (serde_json's maps are sorted).
pub(super) fn fingerprint(value: &Value) -> u64 {
    // Fixed keys: stable within a build, which is all a cache of summaries needs.
    let mut hasher = std::hash::DefaultHasher::new();
    hash_value(value, &mut hasher);
    hasher.finish()
}

fn hash_value(value: &Value, state: &mut impl Hasher) {
    match value {
        Value::Null => state.write_u8(0),
        Value::Bool(b) => {
            state.write_u8(1);
            b.hash(state);
        }
        Value::Number(n) => {
            state.write_u8(2);
            n.to_string().hash(state);
        }
        Value::String(s) => {
            state.write_u8(3);
            s.hash(state);
        }
        Value::Array(items) => {
            state.write_u8(4);
            state.write_usize(items.len());
            items.iter().for_each(|v| hash_value(v, state));
        }
        Value::Object(map) => {
            state.write_u8(5);
            state.write_usize(map.len());
            for (k, v) in map {
                k.hash(state);
                hash_value(v, state);
            }
        }
    }
}

fn decode_hex_32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    // Lower-case only, so that one digest has one spelling and equal bytes mean equal text.
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Standard base64 of exactly 32 bytes (44 characters ending in one `=`), canonical only (the
/// unused low bits are zero), so equal bytes mean equal text.
fn decode_base64_32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 44 || bytes[43] != b'=' {
        return None;
    }
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = [0u8; 32];
    let mut at = 0;
    for &c in &bytes[..43] {
        bits = bits << 6 | u32::from(sextet(c)?);
        count += 6;
        if count >= 8 {
            count -= 8;
            out[at] = (bits >> count) as u8;
            at += 1;
            bits &= (1 << count) - 1;
        }
    }
    // 43 sextets = 258 bits: 256 decoded, 2 left over, which must be zero.
    (at == 32 && bits == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_values_decode_only_when_canonical() {
        assert_eq!(
            ContentHash::new("SHA256", &"ab".repeat(32)),
            ContentHash::Sha256([0xab; 32])
        );
        // Not canonical (upper case, wrong length, stray bits): kept as text, never merged.
        assert!(matches!(
            ContentHash::new("SHA256", &"AB".repeat(32)),
            ContentHash::Other { .. }
        ));
        assert!(matches!(
            ContentHash::new(
                "sha2-256-chunked",
                "be5m2dvcqgcLtgo/H6TDCJQshHJhEFstBs2aKdZ8XF5="
            ),
            ContentHash::Other { .. }
        ));
        assert!(matches!(
            ContentHash::new("CRC64NVME", "AAAAAAAAAAA="),
            ContentHash::Other { .. }
        ));
    }

    #[test]
    fn base64_decoding_matches_the_digest() {
        // sha256("") in base64 and in hex.
        let b64 = decode_base64_32("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        let hex = decode_hex_32("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert!(b64.is_some());
        assert_eq!(b64, hex);
    }
}
