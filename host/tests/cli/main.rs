//! End-to-end tests: the real `launcher` binary with the real plugin libraries built beside it,
//! each test in its own `LAUNCHER_HOME`.

mod azure;
mod c_plugin;
mod chat;
mod config;
mod discovery;
mod elevenlabs;
mod failures;
mod history;
mod images;
mod install;
mod jobs;
mod keys;
mod long_jobs;
mod outputs;
mod piper;
mod registry;
mod run;
mod shell;
// Kills by signal and reads how a process ended: Unix only.
#[cfg(unix)]
mod store;
mod template;
mod text;
mod trust;
mod video_runway_kling;
// Signals a running job: Unix only.
#[cfg(unix)]
mod video_replicate_deepbrain;
mod voices;
