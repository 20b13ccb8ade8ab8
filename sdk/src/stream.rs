//! Reading streamed answers one message at a time (feature `http`): server-sent events, as
//! OpenAI-compatible chat endpoints send tokens, and JSON lines, as Ollama's native API does.
//!
//! [`Response::events`] turns a response into an [`EventStream`] that parses the body by the
//! WHATWG rules for `text/event-stream`: bytes are buffered and decoded a whole line at a time
//! (so a character split across network reads survives), CRLF, CR and LF all end a line, a
//! leading byte order mark is dropped, comments are skipped, `data:` lines join with `\n`, and
//! an event is dispatched on a blank line. An event the body ends in the middle of is dropped,
//! as the spec says, with one exception: a final `data: [DONE]` still counts as `[DONE]`.
//!
//! `data: [DONE]` ends an OpenAI-style stream. A stream that stops without it was cut off, so
//! the answer is incomplete; [`EventStream::next_expecting_done`] turns that into an error,
//! and [`EventStream::saw_done`] tells for callers of [`EventStream::next`]. A service that
//! fails after it started streaming can only say so inside the stream; [`SseEvent::error`]
//! recognises such an error and maps it to an [`ErrorKind`].
//!
//! [`Response::json_lines`] reads newline-delimited JSON into [`JsonLines`], which returns an
//! `{"error": ...}` line as an error.
//!
//! Both take the job's cancel token on every call rather than being iterators, because the
//! caller needs its `&mut Context` between messages to write output; they stop with a
//! cancelled error while waiting for bytes as promptly as [`Response::chunk`] does. Note that
//! the client's timeout covers the whole body, so give a long stream a long
//! [`Request::timeout`](crate::http::Request::timeout).
//!
//! # Example
//!
//! ```no_run
//! use launcher_sdk::http::{Client, Request};
//! # fn run(cx: &mut launcher_sdk::Context<'_>, client: &Client, body: &serde_json::Value)
//! #     -> Result<(), launcher_sdk::PluginError> {
//! #[derive(serde::Deserialize)]
//! struct Chunk { choices: Vec<Choice> }
//! #[derive(serde::Deserialize)]
//! struct Choice { delta: Delta }
//! #[derive(serde::Deserialize)]
//! struct Delta { content: Option<String> }
//!
//! let request = Request::post("http://127.0.0.1:8080/v1/chat/completions").json(body)?;
//! let mut events = client.send(&request, cx)?.events();
//! while let Some(event) = events.next_expecting_done(&*cx)? {
//!     if let Some(err) = event.error() {
//!         return Err(err);
//!     }
//!     let chunk: Chunk = event.json()?;
//!     for choice in chunk.choices {
//!         cx.text(choice.delta.content.as_deref().unwrap_or(""))?;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ErrorKind, PluginError};
use crate::http::{Response, Scrubber, excerpt};
use crate::plugin::Cancel;

/// The longest line (and, for events, the most data in one event) accepted by default.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

impl Response {
    /// Reads the body as server-sent events; see [`EventStream`].
    pub fn events(self) -> EventStream {
        let scrub = Arc::new(self.scrubber().clone());
        EventStream {
            response: self,
            lines: Lines::new(MAX_LINE),
            parser: SseParser::default(),
            saw_done: false,
            ended: false,
            scrub,
        }
    }

    /// Reads the body as JSON lines; see [`JsonLines`].
    pub fn json_lines(self) -> JsonLines {
        let scrub = self.scrubber().clone();
        JsonLines {
            response: self,
            lines: Lines::new(MAX_LINE),
            ended: false,
            scrub,
        }
    }
}

/// One server-sent event.
#[derive(Clone)]
pub struct SseEvent {
    name: String,
    data: String,
    id: Option<String>,
    scrub: Arc<Scrubber>,
}

impl fmt::Debug for SseEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseEvent")
            .field("name", &self.name)
            .field("data", &self.data)
            .field("id", &self.id)
            .finish()
    }
}

impl PartialEq for SseEvent {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, &self.data, &self.id) == (&other.name, &other.data, &other.id)
    }
}

impl SseEvent {
    /// Returns an event named `name` carrying `data`, e.g. to test code that handles events.
    pub fn new(name: impl Into<String>, data: impl Into<String>) -> SseEvent {
        SseEvent {
            name: name.into(),
            data: data.into(),
            id: None,
            scrub: Arc::default(),
        }
    }

    /// Returns the event's name, from its `event:` field; `message` when it had none.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the event's data: its `data:` lines joined with `\n`.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// Returns the last event id the stream had set when this event arrived (ids persist
    /// from one event to the next), if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Parses the data as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_str(&self.data).map_err(|e| {
            let detail = self.scrub.apply(&e.to_string());
            PluginError::unavailable(format!(
                "the service sent an event whose data is not the expected JSON: {detail}"
            ))
        })
    }

    /// Returns the error this event reports, if it is one: an event named `error`, or data
    /// that is a JSON object with an `error` member (an object with `message`, `type` and
    /// `code`, or a string). See [`service_error`] for how the kind is chosen.
    pub fn error(&self) -> Option<PluginError> {
        // Token events far outnumber errors; skip parsing those that cannot be one.
        let named = self.name == "error";
        if !named && !self.data.contains("\"error\"") {
            return None;
        }
        let value = serde_json::from_str::<Value>(&self.data).ok();
        let err = match value {
            Some(value) => match service_error(&value) {
                Some(err) => err,
                None if named && value.is_object() => describe_error(&value),
                None if named => reported(&self.data, None),
                None => return None,
            },
            None if named => reported(&self.data, None),
            None => return None,
        };
        Some(scrub_error(err, &self.scrub))
    }
}

/// Server-sent events read from a response as they arrive; made by [`Response::events`].
pub struct EventStream {
    response: Response,
    lines: Lines,
    parser: SseParser,
    saw_done: bool,
    ended: bool,
    scrub: Arc<Scrubber>,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("origin", &self.response.origin())
            .field("saw_done", &self.saw_done)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    /// Sets the longest line, and the most data in one event, that is accepted (default
    /// [`MAX_LINE`], 16 MiB); more is an error rather than unbounded memory.
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.lines.limit = bytes;
        self
    }

    /// Returns the next event, or `None` once the stream has ended: after `data: [DONE]` or
    /// at the end of the body, which [`EventStream::saw_done`] tells apart.
    ///
    /// Returns a cancelled error when `cancel` says so, checked before each event and every
    /// 50 ms while waiting for bytes, and an error when the body breaks off or a line is
    /// longer than [`EventStream::max_size`].
    pub fn next(
        &mut self,
        cancel: &(impl Cancel + ?Sized),
    ) -> Result<Option<SseEvent>, PluginError> {
        if self.ended {
            return Ok(None);
        }
        if cancel.is_cancelled() {
            return Err(PluginError::cancelled());
        }
        loop {
            match self.lines.next_line() {
                Err(_) => return Err(self.too_large()),
                Ok(Some((_, line))) => {
                    let dispatched = self.parser.line(line);
                    if self.parser.data.len() > self.lines.limit {
                        return Err(self.too_large());
                    }
                    if let Some((name, data)) = dispatched {
                        if data == DONE {
                            self.saw_done = true;
                            self.ended = true;
                            return Ok(None);
                        }
                        return Ok(Some(SseEvent {
                            name,
                            data,
                            id: self.parser.last_id.clone(),
                            scrub: Arc::clone(&self.scrub),
                        }));
                    }
                    continue;
                }
                Ok(None) => {}
            }
            match self.response.chunk(cancel) {
                Ok(Some(bytes)) => self.lines.push(&bytes),
                Ok(None) => {
                    self.ended = true;
                    // The spec drops an event the body ends in; a bare `[DONE]` without the
                    // blank line after it still says the answer is complete.
                    if let Some(rest) = self.lines.rest() {
                        self.parser.line(&rest);
                    }
                    if self.parser.data == "[DONE]\n" {
                        self.saw_done = true;
                    }
                    return Ok(None);
                }
                Err(err) => {
                    self.ended = true;
                    return Err(err);
                }
            }
        }
    }

    /// Returns the next event like [`EventStream::next`], but a stream that ends without
    /// `data: [DONE]` is an [`ErrorKind::Unavailable`] error: the service stopped before it
    /// finished, so what arrived is incomplete.
    pub fn next_expecting_done(
        &mut self,
        cancel: &(impl Cancel + ?Sized),
    ) -> Result<Option<SseEvent>, PluginError> {
        match self.next(cancel)? {
            Some(event) => Ok(Some(event)),
            None if self.saw_done => Ok(None),
            None => Err(PluginError::unavailable(format!(
                "the stream from {} ended before [DONE]",
                self.response.origin()
            ))
            .with_hint(
                "the service stopped before finishing its answer; what arrived is incomplete",
            )),
        }
    }

    /// Returns whether the stream ended with `data: [DONE]`.
    pub fn saw_done(&self) -> bool {
        self.saw_done
    }

    /// Returns the last event id the service set, for resuming with `Last-Event-ID`.
    pub fn last_event_id(&self) -> Option<&str> {
        self.parser.last_id.as_deref()
    }

    /// Returns the reconnection delay the service asked for with `retry:`, if it did.
    pub fn retry(&self) -> Option<Duration> {
        self.parser.retry
    }

    fn too_large(&mut self) -> PluginError {
        self.ended = true;
        PluginError::unavailable(format!(
            "an event from {} is larger than {} bytes",
            self.response.origin(),
            self.lines.limit
        ))
    }
}

/// The data that ends an OpenAI-style stream.
const DONE: &str = "[DONE]";

/// Newline-delimited JSON read from a response one value at a time; made by
/// [`Response::json_lines`].
pub struct JsonLines {
    response: Response,
    lines: Lines,
    ended: bool,
    scrub: Scrubber,
}

impl fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLines")
            .field("origin", &self.response.origin())
            .field("line", &self.lines.number)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl JsonLines {
    /// Sets the longest line accepted (default [`MAX_LINE`], 16 MiB); a longer one is an
    /// error rather than unbounded memory.
    pub fn max_line(mut self, bytes: usize) -> Self {
        self.lines.limit = bytes;
        self
    }

    /// Returns the next line parsed as `T`, or `None` at the end of the body. Blank lines
    /// are skipped, and the last line need not end in a newline.
    ///
    /// A line that is not JSON, or not a `T`, is an error naming its line number; a line
    /// that is an `{"error": ...}` object is returned as that error (see
    /// [`service_error`]). Cancellation works as for [`EventStream::next`].
    pub fn next<T: DeserializeOwned>(
        &mut self,
        cancel: &(impl Cancel + ?Sized),
    ) -> Result<Option<T>, PluginError> {
        if self.ended {
            return Ok(None);
        }
        if cancel.is_cancelled() {
            return Err(PluginError::cancelled());
        }
        loop {
            match self.lines.next_line() {
                Err(number) => {
                    self.ended = true;
                    return Err(PluginError::unavailable(format!(
                        "line {number} of the stream from {} is longer than {} bytes",
                        self.response.origin(),
                        self.lines.limit
                    )));
                }
                Ok(Some((_, line))) if line.trim_ascii().is_empty() => continue,
                Ok(Some((number, line))) => {
                    return parse_line(line, number, self.response.origin(), &self.scrub).map(Some);
                }
                Ok(None) => {}
            }
            match self.response.chunk(cancel) {
                Ok(Some(bytes)) => self.lines.push(&bytes),
                Ok(None) => {
                    self.ended = true;
                    return match self.lines.rest() {
                        Some(line) if !line.trim_ascii().is_empty() => {
                            let number = self.lines.number;
                            parse_line(&line, number, self.response.origin(), &self.scrub).map(Some)
                        }
                        _ => Ok(None),
                    };
                }
                Err(err) => {
                    self.ended = true;
                    return Err(err);
                }
            }
        }
    }
}

fn parse_line<T: DeserializeOwned>(
    line: &[u8],
    number: u64,
    origin: &str,
    scrub: &Scrubber,
) -> Result<T, PluginError> {
    let unreadable = |what: &str, e: serde_json::Error| {
        PluginError::unavailable(scrub.apply(&format!(
            "line {number} of the stream from {origin} is {what}: {e}"
        )))
    };
    let value: Value = serde_json::from_slice(line).map_err(|e| unreadable("not JSON", e))?;
    if let Some(err) = service_error(&value) {
        return Err(scrub_error(err, scrub));
    }
    T::deserialize(value).map_err(|e| unreadable("not what was expected", e))
}

/// Returns the error a service reports in a JSON value of the form `{"error": {...}}` or
/// `{"error": "text"}`, or `None` when the value is not one (`"error": null` is not).
///
/// The kind comes from the error's `code`, then its `type` (a numeric code counts as an
/// HTTP status): rate limits (`rate_limit_exceeded`, `rate_limit_error`, 429) are
/// [`ErrorKind::RateLimited`]; `authentication_error`, `invalid_api_key`,
/// `permission_error`, 401 and 403 are [`ErrorKind::Unauthorized`]; `invalid_request_error`,
/// `not_found_error`, `context_length_exceeded` and other 4xx are
/// [`ErrorKind::InvalidInput`]; `timeout` is [`ErrorKind::Timeout`]; `server_error`,
/// `api_error`, `overloaded`, 5xx and anything unrecognised are [`ErrorKind::Unavailable`].
///
/// `insufficient_quota` (the account has no credit or hit its spending limit) is
/// [`ErrorKind::RateLimited`], as the HTTP 429 it arrives with is, but without a retry-after
/// and with a message and hint that say waiting will not help. It is not
/// [`ErrorKind::Unauthorized`] because the key is valid: advice about checking the key
/// setting, which plugins attach to that kind, would send the user the wrong way.
pub fn service_error(value: &Value) -> Option<PluginError> {
    let error = value.as_object()?.get("error")?;
    match error {
        Value::String(text) => Some(reported(text, None)),
        Value::Object(_) => Some(describe_error(error)),
        _ => None,
    }
}

/// What an error's `code` or `type` says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Quota,
    Kind(ErrorKind),
}

fn classify(token: &str) -> Option<Class> {
    let token = token.trim().to_ascii_lowercase();
    if let Ok(status) = token.parse::<u16>() {
        return match status {
            429 => Some(Class::Kind(ErrorKind::RateLimited)),
            401 | 403 => Some(Class::Kind(ErrorKind::Unauthorized)),
            408 => Some(Class::Kind(ErrorKind::Timeout)),
            400..=499 => Some(Class::Kind(ErrorKind::InvalidInput)),
            500..=599 => Some(Class::Kind(ErrorKind::Unavailable)),
            _ => None,
        };
    }
    let kind = match token.as_str() {
        "insufficient_quota" | "billing_hard_limit_reached" | "quota_exceeded" => {
            return Some(Class::Quota);
        }
        "rate_limit_exceeded" | "rate_limit_error" | "rate_limited" | "too_many_requests" => {
            ErrorKind::RateLimited
        }
        "authentication_error"
        | "invalid_api_key"
        | "permission_error"
        | "permission_denied"
        | "unauthorized"
        | "forbidden" => ErrorKind::Unauthorized,
        "invalid_request_error"
        | "invalid_request"
        | "not_found_error"
        | "model_not_found"
        | "context_length_exceeded"
        | "bad_request" => ErrorKind::InvalidInput,
        "timeout" | "request_timeout" => ErrorKind::Timeout,
        "server_error"
        | "api_error"
        | "internal_error"
        | "internal_server_error"
        | "overloaded"
        | "overloaded_error"
        | "service_unavailable" => ErrorKind::Unavailable,
        _ => return None,
    };
    Some(Class::Kind(kind))
}

/// Builds the error for an error object with `message`, `code` and `type` members.
fn describe_error(error: &Value) -> PluginError {
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let message = text(error.get("message")).unwrap_or_default();
    let code = text(error.get("code"));
    let kind = text(error.get("type"));
    let class = [&code, &kind]
        .into_iter()
        .flatten()
        .find_map(|token| classify(token));
    let label = code.or(kind);
    match class {
        Some(Class::Quota) => PluginError::rate_limited(
            format!(
                "the service refused the request because the account's quota is used up ({}){}",
                label.as_deref().unwrap_or("insufficient_quota"),
                colon(&message)
            ),
            None,
        )
        .with_hint(
            "waiting will not help: add credit or raise the spending limit of the account, or \
             use another key",
        ),
        Some(Class::Kind(kind)) => reported_as(kind, &message, label.as_deref()),
        None => reported(&message, label.as_deref()),
    }
}

fn reported(message: &str, label: Option<&str>) -> PluginError {
    reported_as(ErrorKind::Unavailable, message, label)
}

fn reported_as(kind: ErrorKind, message: &str, label: Option<&str>) -> PluginError {
    let message = excerpt(message.as_bytes());
    let text = match (message.is_empty(), label) {
        (true, None) => "the service reported an error without saying what it was".to_string(),
        (true, Some(label)) => format!("the service reported an error ({label})"),
        (false, None) => format!("the service reported an error: {message}"),
        (false, Some(label)) => format!("the service reported an error ({label}): {message}"),
    };
    PluginError::new(kind, text)
}

fn colon(message: &str) -> String {
    let message = excerpt(message.as_bytes());
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

fn scrub_error(mut err: PluginError, scrub: &Scrubber) -> PluginError {
    err.message = scrub.apply(&err.message);
    err.hint = err.hint.map(|h| scrub.apply(&h));
    err
}

/// Splits buffered bytes into lines ended by CRLF, LF or CR.
struct Lines {
    buf: Vec<u8>,
    /// Where the next line starts.
    start: usize,
    /// How far past `start` has been searched for a line end, so a long line arriving in
    /// many pieces is not searched again from its start each time.
    scanned: usize,
    /// The last line ended in CR: an LF that follows belongs to it. It may arrive in the next
    /// read, so this is remembered rather than looked ahead for.
    skip_lf: bool,
    limit: usize,
    /// How many lines have been returned.
    number: u64,
}

impl Lines {
    fn new(limit: usize) -> Lines {
        Lines {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            skip_lf: false,
            limit,
            number: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Returns the next whole line without its end, and its number from 1, or `None` until
    /// one is buffered; the error is the number of a line longer than the limit.
    fn next_line(&mut self) -> Result<Option<(u64, &[u8])>, u64> {
        if self.skip_lf && self.start < self.buf.len() {
            if self.buf[self.start] == b'\n' {
                self.start += 1;
            }
            self.skip_lf = false;
        }
        let from = self.scanned.max(self.start);
        let Some(offset) = self.buf[from..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        else {
            self.scanned = self.buf.len();
            return if self.buf.len() - self.start > self.limit {
                Err(self.number + 1)
            } else {
                Ok(None)
            };
        };
        let end = from + offset;
        let line_start = self.start;
        self.number += 1;
        self.skip_lf = self.buf[end] == b'\r';
        self.start = end + 1;
        self.scanned = self.start;
        if end - line_start > self.limit {
            return Err(self.number);
        }
        Ok(Some((self.number, &self.buf[line_start..end])))
    }

    /// Returns what is left after the last line end, at the end of the body.
    fn rest(&mut self) -> Option<Vec<u8>> {
        let rest = self.buf.split_off(self.start);
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        if rest.is_empty() {
            return None;
        }
        self.number += 1;
        Some(rest)
    }
}

/// The event-stream interpretation of lines (WHATWG HTML, "Parsing an event stream").
#[derive(Default)]
struct SseParser {
    /// The data buffer: each `data:` value followed by LF.
    data: String,
    /// The event type buffer.
    name: String,
    last_id: Option<String>,
    retry: Option<Duration>,
    started: bool,
}

impl SseParser {
    /// Takes one line; returns the name and data of an event when the line dispatches one.
    fn line(&mut self, line: &[u8]) -> Option<(String, String)> {
        let mut line = line;
        if !self.started {
            self.started = true;
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            return self.dispatch();
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.name = value.to_string(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            // An id with NUL is ignored so it cannot smuggle anything into `Last-Event-ID`.
            "id" if !value.contains('\0') => {
                self.last_id = (!value.is_empty()).then(|| value.to_string());
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<(String, String)> {
        let name = std::mem::take(&mut self.name);
        if self.data.is_empty() {
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        let name = if name.is_empty() {
            "message".to_string()
        } else {
            name
        };
        Some((name, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Client;
    use crate::plugin::Context;

    use serde::Deserialize;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    type Host = crate::plugin::TestHost;

    /// What the piece server does after the response head.
    enum Step {
        Write(Vec<u8>),
        /// Stops writing until the server is dropped.
        Stall,
    }

    fn w(bytes: &[u8]) -> Step {
        Step::Write(bytes.to_vec())
    }

    /// A one-connection loopback server that writes a body in pieces, pausing between them
    /// so each arrives in its own read, then closes (the body ends at the close).
    struct Pieces {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
    }

    impl Drop for Pieces {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
        }
    }

    fn serve(steps: Vec<Step>) -> Pieces {
        serve_with_head(
            "Content-Type: text/event-stream\r\nConnection: close",
            steps,
        )
    }

    fn serve_with_head(head: &str, steps: Vec<Step>) -> Pieces {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let head = format!("HTTP/1.1 200 OK\r\n{head}\r\n\r\n");
        std::thread::spawn(move || {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            conn.set_nodelay(true).unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.ends_with(b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(head.as_bytes());
            for step in steps {
                std::thread::sleep(Duration::from_millis(15));
                match step {
                    Step::Write(bytes) => {
                        if conn.write_all(&bytes).is_err() {
                            return;
                        }
                    }
                    Step::Stall => {
                        while !stopped.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        return;
                    }
                }
            }
        });
        Pieces { addr, stop }
    }

    fn open(server: &Pieces) -> Response {
        open_with(server, Client::builder("launcher-sdk-test/1"))
    }

    fn open_with(server: &Pieces, client: crate::http::ClientBuilder) -> Response {
        let client = client.timeout(Duration::from_secs(10)).build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let url = format!("http://{}/v1/chat", server.addr);
        client
            .send(&crate::http::Request::get(url), &mut cx)
            .unwrap()
    }

    fn never() -> AtomicBool {
        AtomicBool::new(false)
    }

    #[test]
    fn parses_events_written_in_awkward_pieces() {
        let server = serve(vec![
            w(b"\xEF\xBB"),
            w(b"\xBF: a comment to keep the connection open\r\n"),
            w(b"event: delta\r\nid: 7\r\nda"),
            w(b"ta: first\r\ndata:second\r\n\r\n"),
            // A three-byte character split across two reads.
            w(b"data: \xE4"),
            w(b"\xBD\xA0\xE5\xA5\xBD\n\n"),
            // CR alone ends lines too; a CRLF split across reads is one line end.
            w(b"retry: 1500\rdata: a\r"),
            w(b"\ndata: b\r\n\r\n"),
            w(b"data:  two spaces\n\n"),
            w(b"data: [DONE]\n\n"),
            w(b"data: after the end\n\n"),
        ]);
        let mut events = open(&server).events();
        let cancel = never();
        let mut got = Vec::new();
        while let Some(event) = events.next(&cancel).unwrap() {
            got.push((
                event.name().to_string(),
                event.data().to_string(),
                event.id().map(str::to_string),
            ));
        }
        let seven = Some("7".to_string());
        assert_eq!(
            got,
            vec![
                ("delta".into(), "first\nsecond".into(), seven.clone()),
                ("message".into(), "你好".into(), seven.clone()),
                ("message".into(), "a\nb".into(), seven.clone()),
                ("message".into(), " two spaces".into(), seven),
            ]
        );
        assert!(events.saw_done());
        assert_eq!(events.retry(), Some(Duration::from_millis(1500)));
        assert_eq!(events.last_event_id(), Some("7"));
        assert_eq!(events.next(&cancel).unwrap(), None);
    }

    #[test]
    fn a_stream_that_ends_without_done_is_reported() {
        let steps = || {
            vec![
                w(b"data: one\n\n"),
                // An event the body ends in is dropped.
                w(b"data: half an event\n"),
            ]
        };
        let server = serve(steps());
        let mut events = open(&server).events();
        let cancel = never();
        assert_eq!(events.next(&cancel).unwrap().unwrap().data(), "one");
        assert_eq!(events.next(&cancel).unwrap(), None);
        assert!(!events.saw_done());

        let server = serve(steps());
        let mut events = open(&server).events();
        assert_eq!(
            events.next_expecting_done(&cancel).unwrap().unwrap().data(),
            "one"
        );
        let err = events.next_expecting_done(&cancel).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert_eq!(
            err.message,
            format!("the stream from http://{} ended before [DONE]", server.addr)
        );
        assert!(err.hint.is_some());
    }

    #[test]
    fn done_counts_without_the_blank_line_after_it() {
        for tail in [&b"data: [DONE]\n"[..], b"data: [DONE]"] {
            let server = serve(vec![w(b"data: tok\n\n"), w(tail)]);
            let mut events = open(&server).events();
            let cancel = never();
            assert_eq!(
                events.next_expecting_done(&cancel).unwrap().unwrap().data(),
                "tok"
            );
            assert_eq!(events.next_expecting_done(&cancel).unwrap(), None);
            assert!(events.saw_done());
        }
    }

    #[test]
    fn an_error_in_the_middle_of_a_stream_is_detected() {
        #[derive(Deserialize)]
        struct Chunk {
            choices: Vec<serde_json::Value>,
        }
        let server = serve(vec![
            w(br#"data: {"choices":[{"delta":{"content":"Hel"}}]}"#),
            w(b"\n\n"),
            w(br#"data: {"error":{"message":"Rate limit reached for requests","type":"requests","code":"rate_limit_exceeded"}}"#),
            w(b"\n\n"),
            w(b"event: error\n"),
            w(br#"data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
            w(b"\n\nevent: error\ndata: the model crashed\n\ndata: [DONE]\n\n"),
        ]);
        let mut events = open(&server).events();
        let cancel = never();
        let first = events.next(&cancel).unwrap().unwrap();
        assert_eq!(first.error(), None);
        assert_eq!(first.json::<Chunk>().unwrap().choices.len(), 1);

        let err = events.next(&cancel).unwrap().unwrap().error().unwrap();
        assert_eq!(err.kind, ErrorKind::RateLimited);
        assert_eq!(
            err.message,
            "the service reported an error (rate_limit_exceeded): Rate limit reached for requests"
        );

        let err = events.next(&cancel).unwrap().unwrap().error().unwrap();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(err.message.contains("Overloaded"), "{}", err.message);

        let err = events.next(&cancel).unwrap().unwrap().error().unwrap();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert_eq!(
            err.message,
            "the service reported an error: the model crashed"
        );
        assert_eq!(events.next_expecting_done(&cancel).unwrap(), None);
    }

    #[test]
    fn errors_in_a_stream_never_show_secrets() {
        let key = "sk-live-123456";
        let body = format!(
            "data: {{\"error\":{{\"message\":\"Incorrect API key provided: {key}\",\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}}}\n\n"
        );
        let server = serve(vec![w(body.as_bytes())]);
        let response = open_with(&server, Client::builder("t").secret(key));
        let mut events = response.events();
        let err = events.next(&never()).unwrap().unwrap().error().unwrap();
        assert_eq!(err.kind, ErrorKind::Unauthorized);
        assert!(!err.message.contains(key), "{}", err.message);
        assert!(err.message.contains("***"), "{}", err.message);
    }

    #[test]
    fn cancellation_while_the_server_stalls_returns_promptly() {
        let server = serve(vec![w(b"data: one\n\n"), Step::Stall]);
        let mut events = open(&server).events();
        let cancel = Arc::new(never());
        assert_eq!(events.next(&*cancel).unwrap().unwrap().data(), "one");
        let flag = Arc::clone(&cancel);
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            flag.store(true, Ordering::SeqCst);
        });
        let start = Instant::now();
        let err = events.next(&*cancel).unwrap_err();
        canceller.join().unwrap();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_body_that_breaks_off_is_an_error() {
        let server = serve_with_head(
            "Content-Type: text/event-stream\r\nContent-Length: 500",
            vec![w(b"data: one\n\n"), w(b"data: tw")],
        );
        let mut events = open(&server).events();
        let cancel = never();
        assert_eq!(events.next(&cancel).unwrap().unwrap().data(), "one");
        let err = events.next(&cancel).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(err.message.contains("broke off"), "{}", err.message);
        assert_eq!(events.next(&cancel).unwrap(), None);
    }

    #[test]
    fn an_oversized_event_is_an_error() {
        let server = serve(vec![w(&[b'x'; 40]), w(&[b'x'; 40]), w(b"\n\n")]);
        let mut events = open(&server).events().max_size(64);
        let err = events.next(&never()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(
            err.message.contains("larger than 64 bytes"),
            "{}",
            err.message
        );

        // Many short data lines add up too.
        let mut body = b"data: 0123456789\n".repeat(10);
        body.extend_from_slice(b"\n");
        let server = serve(vec![Step::Write(body)]);
        let mut events = open(&server).events().max_size(64);
        assert!(events.next(&never()).is_err());
    }

    #[test]
    fn parser_follows_the_field_rules() {
        let mut parser = SseParser::default();
        let mut feed = |line: &str| parser.line(line.as_bytes());
        assert_eq!(feed("data"), None);
        assert_eq!(feed(""), Some(("message".into(), "".into())));
        // An event name without data dispatches nothing, and does not leak into the next.
        assert_eq!(feed("event: ping"), None);
        assert_eq!(feed(""), None);
        assert_eq!(feed("data:x"), None);
        assert_eq!(feed(""), Some(("message".into(), "x".into())));
        assert_eq!(feed("unknown: field"), None);
        assert_eq!(feed("id: a\0b"), None);
        assert_eq!(feed("retry: 12s"), None);
        assert_eq!(feed(""), None);
        assert_eq!(parser.last_id, None);
        assert_eq!(parser.retry, None);
    }

    #[test]
    fn lines_split_on_every_ending_whatever_the_reads() {
        let text = b"a\r\nb\rc\n\r\nd\r\r\ne";
        let want: Vec<&[u8]> = vec![b"a", b"b", b"c", b"", b"d", b""];
        // One byte at a time is the most awkward split there is.
        let mut lines = Lines::new(100);
        let mut got = Vec::new();
        for byte in text {
            lines.push(&[*byte]);
            while let Some((_, line)) = lines.next_line().unwrap() {
                got.push(line.to_vec());
            }
        }
        assert_eq!(got, want);
        assert_eq!(lines.rest(), Some(b"e".to_vec()));
        assert_eq!(lines.number, 7);

        let mut lines = Lines::new(4);
        lines.push(b"ok\nfar too long");
        assert_eq!(lines.next_line(), Ok(Some((1, &b"ok"[..]))));
        assert_eq!(lines.next_line(), Err(2));
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Chat {
        message: Option<Message>,
        done: bool,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Message {
        content: String,
    }

    fn chat(content: Option<&str>, done: bool) -> Chat {
        Chat {
            message: content.map(|c| Message {
                content: c.to_string(),
            }),
            done,
        }
    }

    const NDJSON: &str = "Content-Type: application/x-ndjson\r\nConnection: close";

    #[test]
    fn json_lines_in_awkward_pieces() {
        let server = serve_with_head(
            NDJSON,
            vec![
                w(b"{\"message\":{\"content\":\"\xE4"),
                w(b"\xBD\xA0\"},\"done\":false}\n\n  \r\n{\"message\":{\"con"),
                w(b"tent\":\"!\"},\"done\":false}\r\n"),
                w(b"{\"done\":true}"),
            ],
        );
        let mut lines = open(&server).json_lines();
        let cancel = never();
        assert_eq!(
            lines.next::<Chat>(&cancel).unwrap(),
            Some(chat(Some("你"), false))
        );
        assert_eq!(
            lines.next::<Chat>(&cancel).unwrap(),
            Some(chat(Some("!"), false))
        );
        assert_eq!(lines.next::<Chat>(&cancel).unwrap(), Some(chat(None, true)));
        assert_eq!(lines.next::<Chat>(&cancel).unwrap(), None);
    }

    #[test]
    fn a_malformed_json_line_is_named_by_number() {
        let server = serve_with_head(NDJSON, vec![w(b"{\"done\":false}\n\n{\"done\": tru\n")]);
        let mut lines = open(&server).json_lines();
        let cancel = never();
        assert!(lines.next::<Chat>(&cancel).unwrap().is_some());
        let err = lines.next::<Chat>(&cancel).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(
            err.message.starts_with(&format!(
                "line 3 of the stream from http://{} is not JSON",
                server.addr
            )),
            "{}",
            err.message
        );

        let server = serve_with_head(NDJSON, vec![w(b"{\"other\":1}\n")]);
        let err = open(&server)
            .json_lines()
            .next::<Chat>(&cancel)
            .unwrap_err();
        assert!(err.message.contains("line 1"), "{}", err.message);
        assert!(
            err.message.contains("not what was expected"),
            "{}",
            err.message
        );
    }

    #[test]
    fn an_error_line_is_returned_as_an_error() {
        let server = serve_with_head(
            NDJSON,
            vec![
                w(b"{\"message\":{\"content\":\"Hi\"},\"done\":false}\n"),
                w(b"{\"error\":\"an error was encountered while running the model\"}\n"),
            ],
        );
        let mut lines = open(&server).json_lines();
        let cancel = never();
        assert!(lines.next::<Chat>(&cancel).unwrap().is_some());
        let err = lines.next::<Chat>(&cancel).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert_eq!(
            err.message,
            "the service reported an error: an error was encountered while running the model"
        );
    }

    #[test]
    fn a_json_line_over_the_cap_is_an_error() {
        let server = serve_with_head(NDJSON, vec![w(&[b' '; 50]), w(&[b' '; 50])]);
        let err = open(&server)
            .json_lines()
            .max_line(64)
            .next::<Chat>(&never())
            .unwrap_err();
        assert!(
            err.message.contains("line 1 ") && err.message.contains("longer than 64 bytes"),
            "{}",
            err.message
        );
    }

    #[test]
    fn json_lines_cancel_while_the_server_stalls() {
        let server = serve_with_head(NDJSON, vec![Step::Stall]);
        let mut lines = open(&server).json_lines();
        let cancel = Arc::new(never());
        let flag = Arc::clone(&cancel);
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            flag.store(true, Ordering::SeqCst);
        });
        let start = Instant::now();
        let err = lines.next::<Chat>(&*cancel).unwrap_err();
        canceller.join().unwrap();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn service_errors_map_to_kinds() {
        let kind = |v: serde_json::Value| service_error(&v).map(|e| e.kind);
        use serde_json::json;
        let quota = service_error(&json!({"error": {
            "message": "You exceeded your current quota",
            "type": "insufficient_quota", "code": "insufficient_quota"}}))
        .unwrap();
        assert_eq!(quota.kind, ErrorKind::RateLimited);
        assert_eq!(quota.retry_after_secs, None);
        assert!(
            quota.message.contains("quota is used up"),
            "{}",
            quota.message
        );
        assert!(quota.hint.unwrap().starts_with("waiting will not help"));
        assert_eq!(
            kind(json!({"error": {"type": "authentication_error", "message": "bad key"}})),
            Some(ErrorKind::Unauthorized)
        );
        assert_eq!(
            kind(json!({"error": {"type": "invalid_request_error", "code": null}})),
            Some(ErrorKind::InvalidInput)
        );
        assert_eq!(
            kind(json!({"error": {"type": "server_error", "message": "boom"}})),
            Some(ErrorKind::Unavailable)
        );
        assert_eq!(
            kind(json!({"error": {"type": "overloaded", "message": "busy"}})),
            Some(ErrorKind::Unavailable)
        );
        assert_eq!(
            kind(json!({"error": {"code": 429, "message": "slow down"}})),
            Some(ErrorKind::RateLimited)
        );
        assert_eq!(
            kind(json!({"error": {"code": 500, "type": "server_error"}})),
            Some(ErrorKind::Unavailable)
        );
        assert_eq!(
            kind(json!({"error": {"code": "something_new", "type": "invalid_request_error"}})),
            Some(ErrorKind::InvalidInput)
        );
        assert_eq!(kind(json!({"error": "text"})), Some(ErrorKind::Unavailable));
        assert_eq!(kind(json!({"error": null, "done": true})), None);
        assert_eq!(kind(json!({"message": "fine"})), None);
        assert_eq!(kind(json!(["error"])), None);
        assert_eq!(
            service_error(&json!({"error": {}})).unwrap().message,
            "the service reported an error without saying what it was"
        );
    }
}
