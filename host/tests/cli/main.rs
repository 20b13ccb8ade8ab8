//! End-to-end tests: the real `launcher` binary with the real plugin libraries built beside it,
//! each test in its own `LAUNCHER_HOME`.

mod azure;
mod c_plugin;
mod chat;
mod discovery;
mod failures;
mod history;
mod install;
mod jobs;
mod registry;
mod run;
mod template;
mod text;
