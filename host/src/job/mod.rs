//! A job's life: planned from the command line ([`plan`]), run on a worker thread
//! ([`exec`]), shown to the user ([`render`]), and kept in the job store when it can be
//! resumed ([`store`]).
//!
//! Planning is pure: it reads the command line, the catalog, the config and what its
//! [`plan::Inputs`] give it (stdin, files, the environment), and decides everything a job
//! needs before any plugin code runs. The executor only runs plans, so the same executor can
//! later run many jobs at once (a batch, a server).

pub(crate) mod exec;
pub(crate) mod lock;
pub(crate) mod plan;
pub(crate) mod render;
pub(crate) mod store;

/// Returns a new job id: sortable by time (milliseconds, in hex) and unique enough for one
/// user's jobs (16 random bits more).
pub(crate) fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    // RandomState is seeded randomly per process: enough to tell two jobs of one millisecond
    // apart without another dependency.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(millis);
    hasher.write_u32(std::process::id());
    format!("{millis:011x}{:04x}", hasher.finish() & 0xffff)
}
