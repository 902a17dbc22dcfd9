//! Sub-commands beyond `run` and `validate` that have enough logic to live in the library: each
//! module has a `clap::Args` struct and a `run` function; `main` maps results to exit codes.

pub mod dlq;
pub mod pattern_match;
pub mod render;
pub mod send_test_event;
pub mod state;
pub mod topics;

/// Runs an operator command's async body on a small runtime of its own.
///
/// # Errors
/// The runtime cannot start, or the body fails.
pub(crate) fn block_on<T>(
    body: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?
        .block_on(body)
}
