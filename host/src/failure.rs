//! Failures a user can meet, each with its own exit code.
//!
//! Commands return `anyhow::Error`; a [`Failure`] anywhere in its chain decides the exit code
//! and may carry a hint. Anything else is an unexpected error (exit 1).

use std::fmt;

use launcher_sdk::ErrorKind;
use launcher_sdk::serde_json::{Value, json};

use crate::escape::printable;
use crate::style;

/// The class of a failure; each has a distinct, documented exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// launcher or a plugin misbehaved (a bug, a panic, an I/O failure).
    Failure,
    /// The command line is wrong.
    Usage,
    /// No such tool, task or plugin.
    NotFound,
    /// A tool lacks a required setting.
    NotReady,
    /// The input or parameters were rejected, by launcher or by the service.
    InvalidInput,
    /// The service rejected the credentials.
    Unauthorized,
    /// The service kept rate limiting.
    RateLimited,
    /// The service or engine is down or failing.
    Unavailable,
    /// The service did not answer in time.
    Timeout,
    /// An output file exists already (and `--force` was not given).
    Exists,
    /// A download or archive failed verification.
    Integrity,
    /// A registry serves an index older than one seen before, or an expired one, or the
    /// install would go below the installed version.
    Stale,
    /// An output cannot be written where it was asked to go (no such directory, no
    /// permission, a directory in the way).
    Unwritable,
    /// The user cancelled (Ctrl-C).
    Cancelled,
    /// A signal stopped the job: SIGINT (130), SIGTERM (143), SIGHUP (129).
    Signalled(i32),
    /// A signal stopped launcher while a remote job went on; it can be resumed.
    Detached,
    /// A tool id, or the settings configured for it, belong to another plugin: an install
    /// that would take a tool from another plugin, or a run that would hand a tool's settings
    /// to a plugin they were not configured for.
    Conflict,
}

impl Class {
    /// Returns the process exit code of this class.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Class::Failure => 1,
            Class::Usage => 2,
            Class::NotFound => 3,
            Class::NotReady => 4,
            Class::InvalidInput => 5,
            Class::Unauthorized => 6,
            Class::RateLimited => 7,
            Class::Unavailable => 8,
            Class::Timeout => 9,
            Class::Exists => 10,
            Class::Integrity => 11,
            Class::Cancelled => 130,
            Class::Signalled(signal) => crate::signals::exit_code(signal),
            Class::Detached => 12,
            Class::Unwritable => 13,
            Class::Conflict => 14,
            Class::Stale => 15,
        }
    }

    /// Returns the class's name in JSON errors: stable, snake_case.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Class::Failure => "failure",
            Class::Usage => "usage",
            Class::NotFound => "not_found",
            Class::NotReady => "not_ready",
            Class::InvalidInput => "invalid_input",
            Class::Unauthorized => "unauthorized",
            Class::RateLimited => "rate_limited",
            Class::Unavailable => "unavailable",
            Class::Timeout => "timeout",
            Class::Exists => "exists",
            Class::Integrity => "integrity",
            Class::Cancelled => "cancelled",
            Class::Signalled(_) => "signalled",
            Class::Detached => "detached",
            Class::Unwritable => "unwritable",
            Class::Conflict => "conflict",
            Class::Stale => "stale",
        }
    }

    /// Returns the class for a plugin error kind.
    pub(crate) fn of_kind(kind: ErrorKind) -> Class {
        match kind {
            ErrorKind::InvalidInput => Class::InvalidInput,
            ErrorKind::Unauthorized => Class::Unauthorized,
            ErrorKind::RateLimited => Class::RateLimited,
            ErrorKind::Unavailable => Class::Unavailable,
            ErrorKind::Timeout => Class::Timeout,
            ErrorKind::Cancelled => Class::Cancelled,
            _ => Class::Failure,
        }
    }
}

/// An error with a class and an optional hint for the user.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) class: Class,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl Failure {
    pub(crate) fn new(class: Class, message: impl Into<String>) -> Failure {
        Failure {
            class,
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Returns a [`Failure`] of `class` as an `anyhow::Error`.
pub(crate) fn fail(class: Class, message: impl Into<String>) -> anyhow::Error {
    Failure::new(class, message).into()
}

/// What an error tells the user, taken apart for rendering.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) class: Class,
    pub(crate) message: String,
    pub(crate) causes: Vec<String>,
    pub(crate) hint: Option<String>,
}

impl Report {
    /// Takes `err` apart: the first [`Failure`] in its chain gives the class and hint.
    pub(crate) fn of(err: &anyhow::Error) -> Report {
        let failure = err.chain().find_map(|e| e.downcast_ref::<Failure>());
        Report {
            class: failure.map_or(Class::Failure, |f| f.class),
            message: err.to_string(),
            causes: err.chain().skip(1).map(|e| e.to_string()).collect(),
            hint: failure.and_then(|f| f.hint.clone()),
        }
    }

    /// Returns the report of a command line clap rejected: its first line, and where to look.
    pub(crate) fn of_usage(err: &clap::Error) -> Report {
        // Rendered as plain text whatever the color choice: `to_string` drops the styles.
        let rendered = err.render().to_string();
        let first = rendered.lines().next().unwrap_or_default();
        Report {
            class: Class::Usage,
            message: first.trim_start_matches("error: ").to_string(),
            causes: Vec::new(),
            hint: Some("`launcher --help` shows the commands and their options".to_string()),
        }
    }

    /// Returns the report as text for stderr: `error: …`, each cause on its own line, then
    /// the hint after a blank line; styled, for an anstream stream to keep or strip.
    pub(crate) fn text(&self) -> String {
        // Messages and hints relay what plugins, services and registries said.
        let mut out = format!(
            "{} {}\n",
            style::label(style::ERROR, "error"),
            printable(&self.message)
        );
        for cause in &self.causes {
            out.push_str(&format!(
                "  {} {}\n",
                style::label(style::DIM, "caused by"),
                printable(cause)
            ));
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!(
                "\n{} {}\n",
                style::label(style::HINT, "hint"),
                printable(hint)
            ));
        }
        out
    }

    /// Returns the report as the JSON document `--json` commands write on stderr.
    pub(crate) fn json(&self) -> Value {
        json!({
            "schema": crate::commands::JSON_SCHEMA,
            "error": {
                "class": self.class.name(),
                "code": self.class.exit_code(),
                "message": self.message,
                "causes": self.causes,
                "hint": self.hint,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let err = anyhow::Error::from(
            Failure::new(Class::NotFound, "no tool `x`").hint("`launcher list` shows tools"),
        )
        .context("cannot run `x`");
        Report::of(&err)
    }

    #[test]
    fn text_has_error_causes_and_hint() {
        let text = report().text();
        let plain = anstream::adapter::strip_str(&text).to_string();
        assert_eq!(
            plain,
            "error: cannot run `x`\n  caused by: no tool `x`\n\nhint: `launcher list` shows tools\n"
        );
    }

    #[test]
    fn json_names_class_and_exit_code() {
        let json = report().json();
        assert_eq!(json["error"]["class"], "not_found");
        assert_eq!(json["error"]["code"], 3);
        assert_eq!(json["error"]["hint"], "`launcher list` shows tools");
        assert_eq!(json["schema"], 1);
    }
}
