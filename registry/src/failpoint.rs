//! Test-only failpoints in the store's change sequences, compiled into debug builds only.
//!
//! End-to-end tests drive the real binary, so they reach these through the environment:
//!
//! - `LAUNCHER_TEST_KILL_AT=<step>` has the process killed with SIGKILL when it reaches
//!   `<step>`, to show that a kill at any step leaves a store every later command can use and
//!   repair;
//! - `LAUNCHER_TEST_PAUSE_AT=<step>:<file>` holds the process at `<step>` (it says
//!   `paused at <step>` on stderr) until `<file>` exists, so a test can interleave two
//!   processes exactly.
//!
//! The steps are named where [`hit`] is called. Release builds ignore both variables.

/// Kills the process at the named step.
#[cfg(debug_assertions)]
const KILL_AT: &str = "LAUNCHER_TEST_KILL_AT";
/// Holds the process at the named step until a file exists.
#[cfg(debug_assertions)]
const PAUSE_AT: &str = "LAUNCHER_TEST_PAUSE_AT";

/// Marks `step`: kills or pauses the process here when a test asked for it.
#[cfg(debug_assertions)]
pub(crate) fn hit(step: &str) {
    if std::env::var_os(KILL_AT).is_some_and(|at| at == step) {
        kill();
    }
    if let Ok(value) = std::env::var(PAUSE_AT)
        && let Some((at, file)) = value.split_once(':')
        && at == step
    {
        pause(step, std::path::Path::new(file));
    }
}

/// Marks `step`: does nothing in release builds.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub(crate) fn hit(_step: &str) {}

/// Marks the step between writing the temporary copy of `file_name` and renaming it over the
/// file: `replacing-<file_name>`.
pub(crate) fn before_replacing(file_name: &str) {
    if cfg!(debug_assertions) {
        hit(&format!("replacing-{file_name}"));
    }
}

#[cfg(debug_assertions)]
fn kill() -> ! {
    // SIGKILL from outside, exactly as `kill -9` would: no destructor, no flush, no cleanup.
    #[cfg(unix)]
    {
        let sent = std::process::Command::new("kill")
            .args(["-KILL", &std::process::id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        if sent {
            // The signal is pending and ends the process; this sleep never finishes.
            std::thread::sleep(std::time::Duration::from_secs(10));
        }
    }
    std::process::abort()
}

#[cfg(debug_assertions)]
fn pause(step: &str, file: &std::path::Path) {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("paused at {step}");
    }
    // Bounded, so a test that forgot to release it still ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !file.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
