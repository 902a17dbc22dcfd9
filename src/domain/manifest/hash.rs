//! Compact forms of what a manifest entry says about its content: the hash (decoded to 32
//! bytes when it is SHA-256, as quilt3 writes it) and a fingerprint of the entry's metadata.

use std::hash::{Hash, Hasher};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
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

/// Lower-case hex of exactly 32 bytes: one spelling per digest, so that equal bytes mean equal
/// text (the `hex` crate also takes upper case).
fn decode_hex_32(text: &str) -> Option<[u8; 32]> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Standard base64 of exactly 32 bytes (44 characters ending in one `=`), canonical only (the
/// unused low bits are zero, as `STANDARD` requires), so equal bytes mean equal text.
fn decode_base64_32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 44 {
        return None;
    }
    let mut out = [0u8; 32];
    let decoded = STANDARD.decode_slice(text, &mut out).ok()?;
    (decoded == 32).then_some(out)
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
    fn only_the_one_canonical_spelling_of_32_bytes_decodes() {
        // sha256("") in standard base64: 44 characters, one `=`.
        let b64 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert!(decode_base64_32(b64).is_some());
        for other in [
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", // padding left out
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=", // URL-safe alphabet
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuF==", // 31 bytes
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFUA", // 33 bytes, no padding
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", // a line break after it
            " 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", // a space before it
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hS=FU=", // padding inside
            "",
        ] {
            assert_eq!(decode_base64_32(other), None, "{other:?}");
        }
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(decode_hex_32(hex).is_some());
        for other in [
            "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855".to_owned(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85".to_owned(),
            format!("{hex}00"),
            format!("0x{}", &hex[2..]),
            format!("{} ", &hex[..63]),
            "g".repeat(64),
            String::new(),
        ] {
            assert_eq!(decode_hex_32(&other), None, "{other:?}");
        }
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
