//! Sub-commands beyond `run` and `validate` that have enough logic to live in the library.

pub mod pattern_match;
pub mod render;
