//! Placeholder until the digest domain lands (branch digest-domain replaces this file).

/// A digest window, `[start, end)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// First second in the window.
    pub start: i64,
    /// First second after it.
    pub end: i64,
}
