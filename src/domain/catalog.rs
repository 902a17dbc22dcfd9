//! Links into the Quilt catalog: a revision's tree, a package's history, the comparison of two
//! revisions. One place builds them, so every link encodes its path parts the same way.

/// Links into the Quilt catalog for one package; every path part is percent-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogLinks {
    /// `https://<host>/b/<bucket>/packages/<handle>`
    package: String,
}

impl CatalogLinks {
    /// Links for `handle` in `bucket` on the catalog at `host` (a scheme and trailing `/` are
    /// tolerated, as for `catalog_url`).
    pub fn new(host: &str, bucket: &str, handle: &str) -> Self {
        let host = host.trim_end_matches('/');
        let host = host
            .strip_prefix("https://")
            .or_else(|| host.strip_prefix("http://"))
            .unwrap_or(host);
        Self {
            package: format!(
                "https://{host}/b/{}/packages/{}",
                encode_path(bucket),
                encode_path(handle)
            ),
        }
    }

    /// The revision's file tree: `…/tree/<hash>/`.
    pub fn tree(&self, top_hash: &str) -> String {
        format!("{}/tree/{}/", self.package, encode_path(top_hash))
    }

    /// The package's history: `…/revisions`.
    pub fn revisions(&self) -> String {
        format!("{}/revisions", self.package)
    }

    /// The catalog's comparison of two revisions: `…/compare/<base>/<other>/`.
    pub fn compare(&self, base: &str, other: &str) -> String {
        format!(
            "{}/compare/{}/{}/",
            self.package,
            encode_path(base),
            encode_path(other)
        )
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`, so a hostile handle
/// cannot break out of the URL it is placed in.
pub(crate) fn encode_path(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
