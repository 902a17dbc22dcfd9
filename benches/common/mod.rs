//! What the benches share: a mailer that accepts everything, the documented route for a bucket,
//! the default templates, and quilt3-shaped content hashes. Each bench uses part of it.
#![allow(dead_code)]

use quilt_notify::domain::render::Renderer;
use quilt_notify::domain::route::{RouteSpec, RouteTable};
use quilt_notify::ports::{AccountStatus, Email, Mailer, SendError};

/// Accepts every email at once.
pub struct NoopMailer;

impl Mailer for NoopMailer {
    async fn send(&self, email: &Email) -> Result<String, SendError> {
        Ok(email.subject.len().to_string())
    }
    async fn account(&self) -> Result<AccountStatus, SendError> {
        Ok(AccountStatus {
            sending_enabled: true,
            max_send_rate: None,
        })
    }
}

/// The Quilt docs' route (`package-created`) for events of `bucket`; `details` on by default.
pub fn routes(bucket: &str) -> RouteTable {
    let spec = RouteSpec::builder("package-created")
        .template("package-created")
        .to(&["data-team@example.com"])
        .pattern(serde_json::json!({
            "source": ["com.quiltdata"],
            "detail-type": ["package-revision"],
            "detail": {"type": ["created"], "handle": [{"prefix": ""}], "bucket": [bucket]}
        }))
        .build();
    RouteTable::compile(&[spec]).expect("routes")
}

/// The default templates of `config/templates`.
pub fn renderer() -> Renderer {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/templates");
    quilt_notify::config::templates::load_dir(&dir, ["package-created"]).expect("templates")
}

/// Base64 of 32 bytes derived from `seed`, like quilt3's `sha2-256-chunked` values.
pub fn hash_b64(seed: u64) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = [0u8; 33];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in bytes.iter_mut().take(32) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut out = String::with_capacity(44);
    for chunk in bytes.chunks(3) {
        let n = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
        for shift in [18, 12, 6, 0] {
            out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
        }
    }
    // With a zero 33rd byte, the first 43 characters are those of the 32 bytes alone.
    out.truncate(43);
    out.push('=');
    out
}
