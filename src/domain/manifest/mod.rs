//! Quilt package manifests: a push parser that reads one JSON Lines manifest line at a time into
//! a compact summary (what the package is) and an index (what the diff needs).
//!
//! The manifest of `s3://<bucket>/.quilt/packages/<topHash>` is JSON Lines: line 1 is the header
//! `{"version": "v0", "message", "user_meta", "workflow"}` (any key may be missing or null), and
//! every later line is one file `{"logical_key", "physical_keys", "size", "hash", "meta"}`. The
//! reader never holds the manifest: per file it keeps the logical key, the size, the content hash
//! (32 decoded bytes when it is SHA-256, as quilt3 writes) and a 64-bit fingerprint of the file's
//! metadata, about 100 bytes a file.
//!
//! A manifest that breaks a rule stops the reader at its first error, and the summary still
//! carries what was read before it, because an email with partial details beats no email.

mod error;
mod hash;
mod reader;
mod summary;

pub use error::ManifestError;
pub use hash::ContentHash;
pub use reader::{ManifestLimits, ManifestReader};
pub use summary::{
    readme_excerpt, Entry, Folder, ManifestSummary, Workflow, README_CHARS, README_KEY,
    ROOT_FOLDER, TOP_LEVEL_LIMIT,
};

#[cfg(test)]
mod tests;
