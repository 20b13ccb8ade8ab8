//! The error a plugin returns from a job; it crosses the boundary as JSON.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What went wrong, in the terms the host needs to pick an exit code and decide about retries.
///
/// A kind from a newer SDK reads as [`ErrorKind::Unknown`]: the error still reaches the user
/// with its message, as a plain failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The job's input or parameters are not acceptable (to the plugin or the service).
    InvalidInput,
    /// The service rejected the credentials (HTTP 401/403).
    Unauthorized,
    /// The service is rate limiting; `retry_after` says how long it asked to wait.
    RateLimited,
    /// The service or a local engine is down or failing (connection refused, 5xx, missing binary).
    Unavailable,
    /// The service did not answer in time.
    Timeout,
    /// The host asked the job to stop.
    Cancelled,
    /// A bug or an unexpected state in the plugin.
    Internal,
    /// A kind this SDK does not know, sent by a newer one.
    #[serde(other)]
    Unknown,
}

impl ErrorKind {
    /// Returns the snake_case name used on the wire and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
            ErrorKind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed job: a kind for the host, a message for the user, and an optional hint.
///
/// Messages must never contain secrets; the HTTP helper takes care of that for its errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginError {
    /// What class of failure this is.
    pub kind: ErrorKind,
    /// A lowercase, one-line description of what failed.
    pub message: String,
    /// What the user can do about it, if anything useful can be said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// For [`ErrorKind::RateLimited`]: how long the service asked to wait, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<f64>,
}

impl PluginError {
    /// Returns an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PluginError {
            kind,
            message: message.into(),
            hint: None,
            retry_after_secs: None,
        }
    }

    /// Returns an [`ErrorKind::InvalidInput`] error.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Returns an [`ErrorKind::Unauthorized`] error.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }

    /// Returns an [`ErrorKind::Unavailable`] error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// Returns an [`ErrorKind::Timeout`] error.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }

    /// Returns an [`ErrorKind::Internal`] error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Returns the error a job reports when the host cancelled it.
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "the job was cancelled")
    }

    /// Returns a rate-limit error, remembering how long the service asked to wait.
    pub fn rate_limited(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        let mut err = Self::new(ErrorKind::RateLimited, message);
        err.retry_after_secs = retry_after.map(|d| d.as_secs_f64());
        err
    }

    /// Returns the error of a resumed job whose submit request may or may not have reached
    /// `service`: its checkpoint says `submitting` and holds no remote id. Submitting again
    /// could charge twice, so the job fails and the user is sent to look.
    pub fn submission_unknown(service: &str) -> Self {
        Self::unavailable(format!(
            "the launcher stopped while the job was being submitted to {service}, so it is \
             unknown whether {service} received it"
        ))
        .with_hint(format!(
            "check your {service} account for the task before running the job again; it was \
             not submitted a second time"
        ))
    }

    /// Adds a hint telling the user what to do.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

/// Marks the I/O error an output writer returns once the host asked the job to stop.
///
/// Not `ErrorKind::Interrupted`: `write_all` and `io::copy` retry on that forever.
#[derive(Debug)]
struct JobCancelled;

impl fmt::Display for JobCancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the job was cancelled")
    }
}

impl std::error::Error for JobCancelled {}

/// Returns the I/O error that tells a writer's caller the job was cancelled.
pub(crate) fn cancelled_io_error() -> std::io::Error {
    std::io::Error::other(JobCancelled)
}

impl From<std::io::Error> for PluginError {
    fn from(err: std::io::Error) -> Self {
        if err.get_ref().is_some_and(|e| e.is::<JobCancelled>()) {
            return PluginError::cancelled();
        }
        match err.kind() {
            std::io::ErrorKind::TimedOut => PluginError::timeout(err.to_string()),
            _ => PluginError::internal(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_kind_is_kept_with_its_message() {
        let err: PluginError =
            serde_json::from_str(r#"{"kind": "quota_exhausted", "message": "no credits left"}"#)
                .unwrap();
        assert_eq!(err.kind, ErrorKind::Unknown);
        assert_eq!(err.message, "no credits left");
    }
}
