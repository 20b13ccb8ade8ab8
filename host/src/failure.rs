//! Failures a user can meet, each with its own exit code.
//!
//! Commands return `anyhow::Error`; a [`Failure`] anywhere in its chain decides the exit code
//! and may carry a hint. Anything else is an unexpected error (exit 1).

use std::fmt;

use launcher_sdk::ErrorKind;

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
    /// An output cannot be written where it was asked to go (no such directory, no
    /// permission, a directory in the way).
    Unwritable,
    /// The user cancelled (Ctrl-C).
    Cancelled,
    /// A signal stopped the job: SIGINT (130), SIGTERM (143), SIGHUP (129).
    Signalled(i32),
    /// A signal stopped launcher while a remote job went on; it can be resumed.
    Detached,
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
