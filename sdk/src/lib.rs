//! The SDK for `launcher` adapter plugins.
//!
//! A plugin is a `cdylib` that implements [`Plugin`] and calls [`export_plugin!`]. The host
//! discovers the library, reads its [`Manifest`] (tools, tasks, parameters, settings), and
//! sends it [`Job`]s; the plugin writes outputs through its [`Context`]. Nothing but C types
//! and JSON crosses the library boundary (see [`abi`]), and the macro writes all the `unsafe`.
//!
//! Remote jobs that take minutes record where they stand with [`Context::checkpoint`] (before
//! and after the submit request; see its docs) so the host can resume them, wait with
//! [`poll`], ask the user to accept what paid work costs with [`Context::confirm_cost`] and a
//! [`cost::PriceTable`], and fetch their outputs with the HTTP client's `download`.
//!
//! # Example
//!
//! ```
//! use launcher_sdk::{export_plugin, Context, Job, JobResult, Manifest, Plugin,
//!     PluginError, Settings, ToolSpec};
//! use std::io::Write;
//!
//! struct Shout;
//!
//! impl Plugin for Shout {
//!     fn manifest() -> Manifest {
//!         Manifest::new("shout", "0.1.0")
//!             .tool(ToolSpec::new("shout", &["chat"]).description("answers in capitals"))
//!     }
//!
//!     fn new(_tool: &str, _settings: &Settings) -> Result<Self, PluginError> {
//!         Ok(Shout)
//!     }
//!
//!     fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
//!         let prompt = job.require_str("prompt")?;
//!         cx.text(&prompt.to_uppercase())?;
//!         Ok(JobResult::default())
//!     }
//! }
//!
//! export_plugin!(Shout);
//! ```

#![warn(missing_docs)]

pub mod abi;
pub mod cost;
#[cfg(feature = "http")]
pub mod download;
mod error;
#[cfg(feature = "http")]
pub mod http;
pub mod media;
#[cfg(feature = "http")]
pub mod multipart;
mod params;
mod plugin;
pub mod process;
#[cfg(feature = "http")]
pub mod remote;
pub mod speech;
#[cfg(feature = "http")]
pub mod stream;
#[cfg(feature = "testing")]
pub mod testing;
pub mod text;
mod types;
pub mod wait;

pub use error::{ErrorKind, PluginError};
pub use params::{ParamError, check_params, check_value, params_of};
pub use plugin::{Cancel, Context, OutputWriter, Plugin, expect_tool};
pub use types::{
    ContentKind, CreateRequest, DescribeRequest, DescribeResponse, Job, JobResult, LISTING_TASKS,
    LogLevel, LogLine, Manifest, Message, OutputHeader, ParamSpec, ParamType, Progress,
    STANDARD_TASK_NAMES, SettingSpec, Settings, Slot, TaskSpec, ToolSpec, is_identifier,
    standard_alias, standard_tasks, task_spec, validate_tools,
};

#[cfg(feature = "http")]
pub use stream::{EventStream, JsonLines, SseEvent, service_error};
pub use wait::{Poll, Reporter, Status, poll, sleep};

/// Re-exported so plugins need not depend on serde_json themselves.
pub use serde_json;
