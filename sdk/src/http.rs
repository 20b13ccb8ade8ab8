//! A blocking HTTP client for adapters that call web services (feature `http`).
//!
//! [`Client::send`] makes one logical request: it retries a bounded number of times with
//! exponential backoff and full jitter on 408, 429, 5xx and connection failures, waits as
//! `Retry-After` or `retry-after-ms` ask on 429 and 503, logs each retry through the job's
//! [`Context`], stops promptly when the host cancels the job, and maps the final failure to an
//! [`ErrorKind`].
//!
//! Retries never charge twice. Only an idempotent request is resent after a failure that
//! may have happened once the service had it (a timeout, a connection that broke after the
//! request went out, a 5xx): GET, HEAD, PUT, DELETE, OPTIONS and TRACE are idempotent, POST
//! and PATCH are not, and [`Request::idempotent`] overrides the method's default. A POST to a
//! service that deduplicates by key becomes safe to resend with [`Request::idempotency_key`],
//! which sends the same key on every attempt. Any other request is retried only when the
//! service cannot have acted on it: the connection could not be established, so nothing was
//! sent, or the service answered 429. Otherwise the error says the request may have reached
//! the service and was not sent again, so the user checks before trying once more. A
//! service whose error bodies say more than its status (a quota that waiting will not lift,
//! a model still loading) gets a reader with [`Request::read_errors`], which may end the
//! request at once or declare it refused and safe to resend. A service that reports
//! failures inside a 2xx answer (MiniMax's `base_resp`) gets a checker with
//! [`Request::check_answers`], whose rate-limit errors are resent the same way. Values marked secret (keys in headers, tokens in URLs) are scrubbed from every
//! error message, and messages name only the scheme, host and port of a URL, never its path or
//! query.
//!
//! A response body arrives in chunks, so audio or video can be streamed into an
//! [`OutputWriter`](crate::OutputWriter) as it comes ([`Response::copy_to`]);
//! [`Client::fetch`] reads the whole body instead and also retries when the body breaks off.
//!
//! Under the hood it is reqwest on a current-thread tokio runtime owned by the client, driven
//! from the calling thread; so call it from plain threads (as the host's job workers are), not
//! from inside another async runtime.
//!
//! # Example
//!
//! ```no_run
//! use launcher_sdk::http::{Client, Request};
//! # fn run(cx: &mut launcher_sdk::Context<'_>, key: &str) -> Result<(), launcher_sdk::PluginError> {
//! let client = Client::builder("launcher-example/0.1").secret(key).build()?;
//! let request = Request::post("https://example.com/v1/speak")
//!     .secret_header("Api-Key", key)
//!     .header("Content-Type", "text/plain")
//!     .body("hello");
//! let mut response = client.send(&request, cx)?;
//! let mut out = cx.output("audio", "audio/mpeg", "mp3")?;
//! response.copy_to(&mut out)?;
//! out.finish()
//! # }
//! ```

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use serde::de::DeserializeOwned;
use tokio::runtime::Runtime;

use crate::error::{ErrorKind, PluginError};
use crate::multipart::{Form, FormBody};
pub use crate::plugin::Cancel;
use crate::plugin::Context;
use crate::types::LogLevel;

/// The longest wait a `Retry-After` may ask for; a longer one ends the retries at once.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How often a blocked call checks whether the job was cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// How much of an error response body is read to quote from.
const ERROR_BODY_LIMIT: usize = 16 * 1024;

/// How many characters of an error response body a message quotes.
const EXCERPT_CHARS: usize = 200;

/// Redirects followed within one request.
const MAX_REDIRECTS: usize = 5;

/// Who a request runs for: something that can be cancelled and hears about retries.
pub(crate) trait Caller: Cancel {
    fn log(&mut self, level: LogLevel, message: String);
}

impl Caller for Context<'_> {
    fn log(&mut self, level: LogLevel, message: String) {
        Context::log(self, level, message);
    }
}

/// A request run away from the job's thread: cancellable, retries unlogged.
struct Unlogged<'a>(&'a (dyn Cancel + Sync));

impl Cancel for Unlogged<'_> {
    fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

impl Caller for Unlogged<'_> {
    fn log(&mut self, _level: LogLevel, _message: String) {}
}

/// The longest a tool's `timeout` setting may ask one request to take: an hour.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// Configures a [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    user_agent: String,
    connect_timeout: Duration,
    timeout: Duration,
    retries: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    retry_timeouts: bool,
    cross_origin_redirects: bool,
    secrets: Vec<String>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("user_agent", &self.user_agent)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("retry_timeouts", &self.retry_timeouts)
            .field("cross_origin_redirects", &self.cross_origin_redirects)
            .field("secrets", &format_args!("[{} hidden]", self.secrets.len()))
            .finish()
    }
}

impl ClientBuilder {
    /// Sets how long establishing a connection may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long one attempt may take, from connecting until the whole body has been read
    /// (default 60 s). [`Request::timeout`] overrides it for one request.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how many times a failed attempt is retried (default 3, so at most 4 attempts).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets the backoff before the first retry; each later one doubles it, and the actual wait
    /// is drawn uniformly below that ("full jitter"). Default 500 ms.
    pub fn backoff_base(mut self, base: Duration) -> Self {
        self.backoff_base = base;
        self
    }

    /// Sets the longest computed backoff (default 8 s). `Retry-After` is not bound by it.
    pub fn backoff_max(mut self, max: Duration) -> Self {
        self.backoff_max = max;
        self
    }

    /// Sets whether an attempt that timed out is retried (default true).
    pub fn retry_timeouts(mut self, retry: bool) -> Self {
        self.retry_timeouts = retry;
        self
    }

    /// Sets whether redirects to another scheme, host or port are followed (default false).
    ///
    /// Off by default because secret headers would travel with the redirected request.
    pub fn follow_cross_origin_redirects(mut self, follow: bool) -> Self {
        self.cross_origin_redirects = follow;
        self
    }

    /// Marks `value` as secret: it never appears in an error message from this client.
    pub fn secret(mut self, value: impl Into<String>) -> Self {
        let value = value.into();
        if !value.is_empty() {
            self.secrets.push(value);
        }
        self
    }

    /// Marks the values of every secret setting (as the manifest declares them) as secret.
    pub fn secrets_from(self, settings: &crate::types::Settings) -> Self {
        settings
            .secret_values()
            .fold(self, |builder, value| builder.secret(value))
    }

    /// Applies what a tool's settings say about its client: the time one request may take
    /// from setting `timeout` (declared with `SettingSpec::timeout`; `default` when not
    /// given, at most [`MAX_TIMEOUT`]), and every secret setting kept out of messages
    /// ([`ClientBuilder::secrets_from`]).
    pub fn settings(
        self,
        settings: &crate::types::Settings,
        default: Duration,
    ) -> Result<Self, PluginError> {
        Ok(self
            .timeout(settings.seconds("timeout", default, MAX_TIMEOUT)?)
            .secrets_from(settings))
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client, PluginError> {
        install_crypto_provider();
        let scrub = Scrubber::new(self.secrets.iter().cloned());
        let cross_origin = self.cross_origin_redirects;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            let same = attempt
                .previous()
                .first()
                .is_some_and(|first| same_origin(first, attempt.url()));
            if same || cross_origin {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let inner = reqwest::Client::builder()
            .user_agent(self.user_agent.as_str())
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .redirect(redirects)
            .build()
            .map_err(|e| {
                PluginError::internal(
                    scrub.apply(&format!("cannot set up the HTTP client: {}", describe(&e))),
                )
            })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PluginError::internal(format!("cannot start the HTTP runtime: {e}")))?;
        Ok(Client {
            inner,
            runtime: Arc::new(runtime),
            policy: Arc::new(Policy {
                timeout: self.timeout,
                retries: self.retries,
                backoff_base: self.backoff_base,
                backoff_max: self.backoff_max,
                retry_timeouts: self.retry_timeouts,
                scrub,
            }),
        })
    }
}

/// rustls is built without a default crypto provider; install ring once per library. Another
/// part of the process may have installed one already, which is just as good.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub(crate) struct Policy {
    timeout: Duration,
    pub(crate) retries: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    retry_timeouts: bool,
    scrub: Scrubber,
}

/// A blocking HTTP client with retries, cancellation and secret scrubbing.
///
/// Cheap to clone; clones share connections. Safe to use from several threads at once.
#[derive(Clone)]
pub struct Client {
    inner: reqwest::Client,
    runtime: Arc<Runtime>,
    pub(crate) policy: Arc<Policy>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.policy.timeout)
            .field("retries", &self.policy.retries)
            .finish_non_exhaustive()
    }
}

/// One HTTP request, reusable across attempts.
#[derive(Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Body,
    timeout: Option<Duration>,
    secrets: Vec<String>,
    /// Set by [`Request::idempotent`] or [`Request::idempotency_key`]; `None` follows the
    /// method.
    idempotent: Option<bool>,
    /// Set by [`Request::read_errors`].
    pub(crate) error_reader: Option<Arc<ErrorReader>>,
    /// Set by [`Request::check_answers`].
    answer_checker: Option<Arc<AnswerChecker>>,
}

/// What a request sends: bytes in memory, or a form read while it is sent.
#[derive(Clone)]
enum Body {
    Bytes(Vec<u8>),
    Form(Arc<Form>),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::Form(form) => form.len(),
        }
    }
}

type ErrorReader = dyn Fn(&ErrorReply<'_>) -> Verdict + Send + Sync;

type AnswerChecker = dyn Fn(&Fetched) -> Result<(), Refusal> + Send + Sync;

/// What a [`Request::check_answers`] checker found wrong in a 2xx answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// End the request with this error at once. Secrets are scrubbed from it.
    Fail(PluginError),
    /// The service refused without acting on the request (a rate limit), so send it again,
    /// even if it is not idempotent: after the error's `retry_after`, else the usual backoff,
    /// within the client's retry count. The error is returned when the retries run out.
    Resend(PluginError),
}

/// An answer that is not 2xx, as a [`Request::read_errors`] reader sees it.
#[derive(Debug, Clone, Copy)]
pub struct ErrorReply<'a> {
    /// The status code.
    pub status: u16,
    /// Every header, names in lowercase.
    pub headers: &'a [(String, String)],
    /// The start of the body (up to 16 KiB).
    pub body: &'a [u8],
}

impl ErrorReply<'_> {
    /// Returns the first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(self.headers, name)
    }

    /// Returns the body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(self.body).ok()
    }
}

/// What a [`Request::read_errors`] reader makes of an answer that is not 2xx.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Handle it as the client always does (see the [module docs](self)).
    Default,
    /// End the request with this error at once, without retrying. Secrets are scrubbed from
    /// it.
    Fail(PluginError),
    /// The service refused the request without acting on it (a rate limit, a model still
    /// loading), so it may be sent again even if it is not idempotent: after the wait given,
    /// or the wait the service asked for, or the usual backoff. The client's retry count
    /// still bounds it.
    Retry(Option<Duration>),
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scrub = Scrubber::new(self.secrets.iter().cloned());
        let headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), scrub.apply(v)))
            .collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &scrub.apply(&self.url))
            .field("headers", &headers)
            .field("body_len", &self.body.len())
            .field("idempotent", &self.is_idempotent())
            .finish()
    }
}

impl Request {
    /// Returns a request with `method` (e.g. `PUT`) to `url`.
    pub fn new(method: &str, url: impl Into<String>) -> Request {
        Request {
            method: method.to_ascii_uppercase(),
            url: url.into(),
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
            timeout: None,
            secrets: Vec::new(),
            idempotent: None,
            error_reader: None,
            answer_checker: None,
        }
    }

    /// Returns a GET request.
    pub fn get(url: impl Into<String>) -> Request {
        Request::new("GET", url)
    }

    /// Returns a POST request.
    pub fn post(url: impl Into<String>) -> Request {
        Request::new("POST", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a header whose value is secret (an API key, a token).
    pub fn secret_header(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let value = value.into();
        self.secret(value.clone()).header(name, value)
    }

    /// Marks `value` as secret for this request, e.g. a key that travels in the URL.
    pub fn secret(mut self, value: impl Into<String>) -> Self {
        let value = value.into();
        if !value.is_empty() {
            self.secrets.push(value);
        }
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Bytes(body.into());
        self
    }

    /// Sets a `multipart/form-data` body and its `Content-Type`. The form's files are read
    /// while the request is sent, from the start again on every attempt, and the request
    /// announces the form's whole length; see [`crate::multipart`].
    pub fn multipart(mut self, form: Form) -> Self {
        self.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        let content_type = form.content_type();
        self.body = Body::Form(Arc::new(form));
        self.header("Content-Type", content_type)
    }

    /// Sets a JSON body and its `Content-Type`.
    pub fn json(self, value: &impl serde::Serialize) -> Result<Self, PluginError> {
        let body = serde_json::to_vec(value)
            .map_err(|e| PluginError::internal(format!("cannot encode the request body: {e}")))?;
        Ok(self.header("Content-Type", "application/json").body(body))
    }

    /// Sets how long each attempt of this request may take, instead of the client's timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Says whether sending this request twice has the same effect as sending it once,
    /// overriding the method's default (true for GET, HEAD, PUT, DELETE, OPTIONS and TRACE,
    /// false for the rest).
    ///
    /// Only an idempotent request is resent after a failure that may have reached the
    /// service. Mark a GET that starts paid work `false`; mark a POST that only reads (a
    /// search, a token count) `true`.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }

    /// Sends header `name` (such as `Idempotency-Key`) with `key` and marks the request
    /// idempotent: a service that honours the key acts on it once however often it arrives.
    ///
    /// The key is part of the request, so every attempt resends the same one; make a fresh
    /// key for each logical submission, not for each call to [`Client::send`] that repeats
    /// it.
    pub fn idempotency_key(self, name: impl Into<String>, key: impl Into<String>) -> Self {
        self.header(name, key).idempotent(true)
    }

    /// Lets `reader` decide what an answer that is not 2xx means before the client's usual
    /// handling: a service's own error body, a rate limit that waiting will not lift, a wait
    /// given in a header the client does not know.
    pub fn read_errors(
        mut self,
        reader: impl Fn(&ErrorReply<'_>) -> Verdict + Send + Sync + 'static,
    ) -> Self {
        self.error_reader = Some(Arc::new(reader));
        self
    }

    /// Lets `checker` read a 2xx answer that [`Client::fetch`] read whole, for services that
    /// report failures inside a successful HTTP answer (MiniMax's `base_resp`).
    ///
    /// A [`Refusal`] it returns ends the request or resends it. [`Client::send`] does not
    /// read the body, so it does not call `checker`.
    pub fn check_answers(
        mut self,
        checker: impl Fn(&Fetched) -> Result<(), Refusal> + Send + Sync + 'static,
    ) -> Self {
        self.answer_checker = Some(Arc::new(checker));
        self
    }

    /// Returns whether the request may be resent after a failure that may have reached the
    /// service; see [`Request::idempotent`].
    pub fn is_idempotent(&self) -> bool {
        let by_method = matches!(
            self.method.as_str(),
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        );
        self.idempotent.unwrap_or(by_method)
    }

    /// Returns the method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Returns the URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A successful response whose body has not been read yet.
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    inner: reqwest::Response,
    runtime: Arc<Runtime>,
    scrub: Scrubber,
    origin: String,
    timeout: Duration,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Response {
    /// Returns the status code (always 2xx).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Returns the first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Returns every header, names in lowercase.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Returns the body length the server announced, if it did.
    pub fn content_length(&self) -> Option<u64> {
        self.inner.content_length()
    }

    /// Returns the next piece of the body as it arrives, or `None` at its end.
    pub fn chunk(
        &mut self,
        cancel: &(impl Cancel + ?Sized),
    ) -> Result<Option<Vec<u8>>, PluginError> {
        let next = block_on(&self.runtime, self.inner.chunk(), cancel)
            .ok_or_else(PluginError::cancelled)?;
        match next {
            Ok(chunk) => Ok(chunk.map(|c| c.to_vec())),
            Err(err) => Err(self.body_error(&err)),
        }
    }

    /// Streams the rest of the body into `out` as it arrives; returns how many bytes it wrote.
    ///
    /// Stops with a cancelled error as soon as `out` says the job should stop.
    pub fn copy_to<W: Write + Cancel + ?Sized>(&mut self, out: &mut W) -> Result<u64, PluginError> {
        let mut written = 0u64;
        while let Some(piece) = self.chunk(&*out)? {
            out.write_all(&piece).map_err(PluginError::from)?;
            written += piece.len() as u64;
        }
        Ok(written)
    }

    /// Reads the whole body.
    pub fn bytes(mut self, cancel: &(impl Cancel + ?Sized)) -> Result<Vec<u8>, PluginError> {
        let mut body = Vec::new();
        while let Some(piece) = self.chunk(cancel)? {
            body.extend_from_slice(&piece);
        }
        Ok(body)
    }

    /// Reads the whole body as UTF-8 text.
    pub fn text(self, cancel: &(impl Cancel + ?Sized)) -> Result<String, PluginError> {
        let body = self.bytes(cancel)?;
        String::from_utf8(body)
            .map_err(|_| PluginError::unavailable("the service sent text that is not UTF-8"))
    }

    /// Reads the whole body as JSON.
    pub fn json<T: DeserializeOwned>(
        self,
        cancel: &(impl Cancel + ?Sized),
    ) -> Result<T, PluginError> {
        let body = self.bytes(cancel)?;
        parse_json(&body)
    }

    /// Streams the body into a new output `name` as it arrives, in the format its first bytes
    /// show ([`media::sniff`](crate::media::sniff)), else `fallback` (a format named by the
    /// URL's extension, or the one asked for; its name is kept when the bytes agree with it);
    /// returns that format and how many bytes were written.
    ///
    /// A remote file's kind is decided by its bytes, not by what was asked for, so a model
    /// that made a video where an image was expected still writes a `.mp4`. An empty body, or
    /// one in no known format without a fallback, is an unavailable error and opens nothing.
    pub fn write_output(
        mut self,
        name: &str,
        fallback: Option<crate::media::MediaFormat>,
        cx: &mut Context<'_>,
    ) -> Result<(crate::media::MediaFormat, u64), PluginError> {
        let mut head = Vec::new();
        while head.len() < 64 {
            match self.chunk(&*cx)? {
                Some(bytes) => head.extend_from_slice(&bytes),
                None => break,
            }
        }
        if head.is_empty() {
            return Err(PluginError::unavailable(format!(
                "{} sent an empty file where `{name}` was expected",
                self.origin
            )));
        }
        // The bytes decide; the fallback names the file when they agree with it (Opus arrives
        // in Ogg, which sniffs as `.ogg`; a `.jpeg` URL sniffs as `.jpg`).
        let format = match (crate::media::sniff(&head), fallback) {
            (Some(sniffed), Some(named)) if sniffed.media_type == named.media_type => Some(named),
            (sniffed, named) => sniffed.or(named),
        };
        let format = format.ok_or_else(|| {
            PluginError::unavailable(format!(
                "{} sent `{name}` in a format that is not recognised",
                self.origin
            ))
        })?;
        let mut out = cx.output(name, format.media_type, format.extension)?;
        out.write_all(&head)?;
        let written = head.len() as u64 + self.copy_to(&mut out)?;
        out.finish()?;
        Ok((format, written))
    }

    /// Returns `scheme://host:port` of the request, for messages.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// Returns what hides the request's secrets in messages.
    pub(crate) fn scrubber(&self) -> &Scrubber {
        &self.scrub
    }

    fn body_error(&self, err: &reqwest::Error) -> PluginError {
        let failure = Failure::Body {
            kind: transport_kind(err),
            detail: describe(err),
        };
        failure.into_error(&self.origin, self.timeout, &self.scrub, 1)
    }
}

/// A response read whole by [`Client::fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The status code (always 2xx).
    pub status: u16,
    /// Every header, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Fetched {
    /// Returns the first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Parses the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        parse_json(&self.body)
    }
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, PluginError> {
    serde_json::from_slice(body).map_err(|e| {
        PluginError::unavailable(format!("the service sent JSON that cannot be read: {e}"))
    })
}

fn find_header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why one attempt failed.
#[derive(Debug)]
enum Failure {
    /// The server answered with a status that is not 2xx.
    Status {
        status: u16,
        retry_after: Option<Duration>,
        excerpt: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// No answer: connecting, sending or waiting for the response head failed. `sent` is
    /// false only when no connection was made, so the request cannot have left.
    Transport {
        kind: ErrorKind,
        detail: String,
        sent: bool,
    },
    /// The answer was 2xx but its body broke off.
    Body { kind: ErrorKind, detail: String },
    /// The request cannot be sent as built (a bad header, an unusable URL).
    Unsendable(String),
    /// The host cancelled the job.
    Cancelled,
    /// A 2xx answer whose body carries this error ([`Request::check_answers`]); resendable
    /// when the flag is set.
    Refused(PluginError, bool),
}

impl Failure {
    fn is_retryable(&self, retry_timeouts: bool) -> bool {
        match self {
            Failure::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            Failure::Transport { kind, .. } | Failure::Body { kind, .. } => {
                *kind != ErrorKind::Timeout || retry_timeouts
            }
            Failure::Unsendable(_) | Failure::Cancelled => false,
            Failure::Refused(_, resend) => *resend,
        }
    }

    /// Returns whether the service may have acted on the request: anything but a failure to
    /// connect, a request that could not be built, or a 429 (a service that rate limits
    /// refuses the request before doing its work).
    fn may_have_reached_service(&self) -> bool {
        match self {
            Failure::Status { status: 429, .. } => false,
            Failure::Transport { sent, .. } => *sent,
            Failure::Unsendable(_) => false,
            Failure::Refused(_, resend) => !resend,
            Failure::Status { .. } | Failure::Body { .. } | Failure::Cancelled => true,
        }
    }

    /// Returns the wait the server asked for, if it did on a status where that is honoured.
    fn asked_wait(&self) -> Option<Duration> {
        match self {
            Failure::Status {
                status: 429 | 503,
                retry_after,
                ..
            } => *retry_after,
            Failure::Refused(err, _) => err.retry_after_secs.map(Duration::from_secs_f64),
            _ => None,
        }
    }

    /// Returns a short description for the retry log; never contains secrets.
    fn summary(&self, origin: &str) -> String {
        match self {
            Failure::Status { status, .. } => format!("{origin} answered HTTP {status}"),
            Failure::Transport {
                kind: ErrorKind::Timeout,
                ..
            } => format!("{origin} did not answer in time"),
            Failure::Transport { .. } => format!("the connection to {origin} failed"),
            Failure::Body { .. } => format!("the response from {origin} broke off"),
            Failure::Unsendable(_) => "the request cannot be sent".to_string(),
            Failure::Cancelled => "cancelled".to_string(),
            Failure::Refused(err, _) if err.kind == ErrorKind::RateLimited => {
                format!("{origin} is rate limiting requests")
            }
            Failure::Refused(..) => format!("{origin} refused the request"),
        }
    }

    fn into_error(
        self,
        origin: &str,
        timeout: Duration,
        scrub: &Scrubber,
        attempts: u32,
    ) -> PluginError {
        let tried = if attempts > 1 {
            format!(" (gave up after {attempts} attempts)")
        } else {
            String::new()
        };
        let err = match self {
            Failure::Cancelled => return PluginError::cancelled(),
            Failure::Refused(mut err, _) => {
                err.message.push_str(&tried);
                err
            }
            Failure::Unsendable(detail) => {
                PluginError::invalid_input(format!("cannot send a request to {origin}: {detail}"))
            }
            Failure::Status {
                status: status @ (401 | 403),
                ..
            } => PluginError::unauthorized(format!(
                "the service rejected the credentials (HTTP {status})"
            )),
            Failure::Status {
                status: 429,
                retry_after,
                excerpt,
                ..
            } => PluginError::rate_limited(
                format!(
                    "the service is rate limiting requests (HTTP 429){tried}{}",
                    quote(&excerpt)
                ),
                retry_after,
            ),
            Failure::Status {
                status: 408,
                excerpt,
                ..
            } => PluginError::timeout(format!(
                "{origin} timed out waiting for the request (HTTP 408){tried}{}",
                quote(&excerpt)
            )),
            Failure::Status {
                status: status @ 500..=599,
                retry_after,
                excerpt,
                ..
            } => {
                let err = PluginError::unavailable(format!(
                    "{origin} failed with HTTP {status}{tried}{}",
                    quote(&excerpt)
                ));
                match retry_after {
                    Some(wait) => err.with_hint(format!(
                        "the service asked to wait {} before trying again",
                        human_duration(wait)
                    )),
                    None => err,
                }
            }
            Failure::Status {
                status: status @ 400..=499,
                excerpt,
                ..
            } => PluginError::invalid_input(format!(
                "the service refused the request (HTTP {status}){}",
                quote(&excerpt)
            )),
            Failure::Status {
                status: status @ 300..=399,
                ..
            } => PluginError::unavailable(format!(
                "{origin} redirected elsewhere (HTTP {status}), which is not followed"
            ))
            .with_hint("credentials are never sent to another host; check the service URL"),
            Failure::Status {
                status, excerpt, ..
            } => PluginError::unavailable(format!(
                "{origin} answered with unexpected HTTP {status}{}",
                quote(&excerpt)
            )),
            Failure::Transport {
                kind: ErrorKind::Timeout,
                ..
            } => PluginError::timeout(format!(
                "{origin} did not answer within {}{tried}",
                human_duration(timeout)
            )),
            Failure::Transport { kind, detail, .. } => {
                PluginError::new(kind, format!("cannot reach {origin}: {detail}{tried}"))
            }
            Failure::Body {
                kind: ErrorKind::Timeout,
                ..
            } => PluginError::timeout(format!(
                "the response from {origin} was not complete within {}{tried}",
                human_duration(timeout)
            )),
            Failure::Body { kind, detail } => PluginError::new(
                kind,
                format!("the response from {origin} broke off: {detail}{tried}"),
            ),
        };
        scrub_error(err, scrub)
    }
}

/// Adds to the error of a request that was not resent why it was not, and what to do.
fn not_resent(mut err: PluginError, method: &str) -> PluginError {
    err.message.push_str(&format!(
        "; the {method} request may have reached the service, so it was not sent again"
    ));
    // Replaces any hint about waiting: whether the work happened matters more.
    err.with_hint(
        "check whether the service acted on the request (for example in its job list or \
         usage page) before trying again, so nothing is done or charged twice",
    )
}

fn quote(excerpt: &str) -> String {
    if excerpt.is_empty() {
        String::new()
    } else {
        format!(": {excerpt}")
    }
}

fn scrub_error(mut err: PluginError, scrub: &Scrubber) -> PluginError {
    err.message = scrub.apply(&err.message);
    err.hint = err.hint.map(|h| scrub.apply(&h));
    err
}

/// What messages about a request need: its origin, its timeout, and the secrets to hide.
struct Prepared {
    origin: String,
    timeout: Duration,
    scrub: Scrubber,
}

/// What one successful attempt produced.
enum Outcome {
    Streaming(reqwest::Response),
    Buffered(Fetched),
}

impl Client {
    /// Returns a builder for a client that sends `user_agent`.
    pub fn builder(user_agent: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            user_agent: user_agent.into(),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            retries: 3,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            retry_timeouts: true,
            cross_origin_redirects: false,
            secrets: Vec::new(),
        }
    }

    /// Sends `request`, retrying as the client is configured, and returns the response once
    /// its status is 2xx; the body is left to read as it arrives.
    ///
    /// Retries are logged through `cx` and the wait between them ends early when the job is
    /// cancelled. A request that is not idempotent is resent only when the service cannot
    /// have acted on it (see the [module docs](self)). A final failure is an error of the matching kind: 401/403 unauthorized,
    /// 429 rate limited, 5xx and connection failures unavailable, timeouts timeout, other 4xx
    /// invalid input quoting the start of the body.
    pub fn send(&self, request: &Request, cx: &mut Context<'_>) -> Result<Response, PluginError> {
        self.streaming(request, cx)
    }

    /// Runs `request` for `caller` and returns its response with the body still to read.
    pub(crate) fn streaming(
        &self,
        request: &Request,
        caller: &mut dyn Caller,
    ) -> Result<Response, PluginError> {
        let prepared = self.prepare(request)?;
        match self.run(request, &prepared, caller, false)? {
            Outcome::Streaming(inner) => Ok(Response {
                status: inner.status().as_u16(),
                headers: collect_headers(inner.headers()),
                inner,
                runtime: Arc::clone(&self.runtime),
                scrub: prepared.scrub,
                origin: prepared.origin,
                timeout: prepared.timeout,
            }),
            Outcome::Buffered(_) => unreachable!("a streaming response was asked for"),
        }
    }

    /// Sends `request` like [`Client::send`] from a thread that does not hold the job's
    /// [`Context`]: the job's own thread goes on (polling a progress endpoint, say) while this
    /// request is in flight, and sets `cancel` to stop it. Retries are not logged.
    ///
    /// ```no_run
    /// # use launcher_sdk::http::{Client, Request};
    /// # use std::sync::atomic::{AtomicBool, Ordering};
    /// # fn run(client: &Client, cx: &mut launcher_sdk::Context<'_>) -> Result<(), launcher_sdk::PluginError> {
    /// let stop = AtomicBool::new(false);
    /// let response = std::thread::scope(|s| {
    ///     let work = s.spawn(|| client.send_with(&Request::post("http://127.0.0.1:7860/run"), &stop));
    ///     while !work.is_finished() {
    ///         if cx.sleep(std::time::Duration::from_millis(500)).is_err() {
    ///             stop.store(true, Ordering::SeqCst);
    ///         }
    ///     }
    ///     work.join().expect("the request thread does not panic")
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn send_with(
        &self,
        request: &Request,
        cancel: &(dyn Cancel + Sync),
    ) -> Result<Response, PluginError> {
        self.streaming(request, &mut Unlogged(cancel))
    }

    /// Sends a cleanup request once, even though the job was cancelled: the service's own
    /// cancel (`/interrupt`, `DELETE /tasks/{id}`) that a cancelled job owes it.
    ///
    /// One attempt, no retries, at most `timeout`; the body is read whole (cancel answers are
    /// small). Use it only on the way out of a cancelled job.
    pub fn send_after_cancel(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Fetched, PluginError> {
        let mut request = request.clone();
        request.timeout = Some(timeout);
        let prepared = self.prepare(&request)?;
        let never = std::sync::atomic::AtomicBool::new(false);
        match self.attempt(&request, &never, true, &prepared.scrub) {
            Ok(Outcome::Buffered(fetched)) => Ok(fetched),
            Ok(Outcome::Streaming(_)) => unreachable!("asked for a buffered response"),
            Err(failure) => Err(failure.into_error(&prepared.origin, timeout, &prepared.scrub, 1)),
        }
    }

    /// Sends `request` like [`Client::send`] and reads the whole body; an attempt whose body
    /// breaks off is retried too.
    pub fn fetch(&self, request: &Request, cx: &mut Context<'_>) -> Result<Fetched, PluginError> {
        let prepared = self.prepare(request)?;
        match self.run(request, &prepared, cx, true)? {
            Outcome::Buffered(fetched) => Ok(fetched),
            Outcome::Streaming(_) => unreachable!("fetch asks for a buffered response"),
        }
    }

    /// Checks the request's URL and gathers what messages about it need.
    fn prepare(&self, request: &Request) -> Result<Prepared, PluginError> {
        let scrub = self.policy.scrub.with(request.secrets.iter().cloned());
        let url = Url::parse(&request.url).map_err(|e| {
            PluginError::invalid_input(format!("the request URL is not valid: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(PluginError::invalid_input(format!(
                "the request URL has scheme `{}`; only http and https are supported",
                scrub.apply(url.scheme())
            )));
        }
        let origin = scrub.apply(&origin_of(&url));
        Ok(Prepared {
            origin,
            timeout: request.timeout.unwrap_or(self.policy.timeout),
            scrub,
        })
    }

    fn run(
        &self,
        request: &Request,
        prepared: &Prepared,
        cx: &mut dyn Caller,
        buffered: bool,
    ) -> Result<Outcome, PluginError> {
        let Prepared {
            origin,
            timeout,
            scrub,
        } = prepared;
        let (origin, timeout) = (origin.as_str(), *timeout);
        let attempts = self.policy.retries.saturating_add(1);
        let mut attempt = 1;
        loop {
            if cx.is_cancelled() {
                return Err(PluginError::cancelled());
            }
            let failure = match self.attempt(request, &*cx, buffered, scrub) {
                Ok(Outcome::Buffered(fetched)) => match &request.answer_checker {
                    Some(check) => match check(&fetched) {
                        Ok(()) => return Ok(Outcome::Buffered(fetched)),
                        Err(Refusal::Fail(err)) => Failure::Refused(err, false),
                        Err(Refusal::Resend(err)) => Failure::Refused(err, true),
                    },
                    None => return Ok(Outcome::Buffered(fetched)),
                },
                Ok(outcome) => return Ok(outcome),
                Err(failure) => failure,
            };
            let verdict = match (&request.error_reader, &failure) {
                (
                    Some(reader),
                    Failure::Status {
                        status,
                        headers,
                        body,
                        ..
                    },
                ) => reader(&ErrorReply {
                    status: *status,
                    headers,
                    body,
                }),
                _ => Verdict::Default,
            };
            let refused = match verdict {
                Verdict::Fail(err) => return Err(scrub_error(err, scrub)),
                Verdict::Retry(wait) => Some(wait),
                Verdict::Default => None,
            };
            if refused.is_none() {
                if !failure.is_retryable(self.policy.retry_timeouts) {
                    return Err(failure.into_error(origin, timeout, scrub, attempt));
                }
                if !request.is_idempotent() && failure.may_have_reached_service() {
                    let err = failure.into_error(origin, timeout, scrub, attempt);
                    return Err(not_resent(err, &request.method));
                }
            }
            if attempt >= attempts {
                return Err(failure.into_error(origin, timeout, scrub, attempt));
            }
            let asked = refused.flatten().or_else(|| failure.asked_wait());
            let (wait, why) = match asked {
                // Waiting a minute and then hitting the same limit wastes the user's time;
                // the error carries the wait so the user (or the host) can decide.
                Some(asked) if asked > MAX_RETRY_AFTER => {
                    return Err(failure.into_error(origin, timeout, scrub, attempt));
                }
                Some(asked) => (asked, "as the service asked"),
                None => (self.backoff(attempt), "with backoff"),
            };
            cx.log(
                LogLevel::Info,
                format!(
                    "{}; retrying in {} {why} (attempt {} of {attempts})",
                    failure.summary(origin),
                    human_duration(wait),
                    attempt + 1
                ),
            );
            block_on(
                &self.runtime,
                async { tokio::time::sleep(wait).await },
                &*cx,
            )
            .ok_or_else(PluginError::cancelled)?;
            attempt += 1;
        }
    }

    /// Returns the full-jitter backoff before retry number `attempt`.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .policy
            .backoff_base
            .saturating_mul(1u32 << (attempt - 1).min(20))
            .min(self.policy.backoff_max);
        ceiling.mul_f64(random_fraction())
    }

    fn attempt(
        &self,
        request: &Request,
        cancel: &dyn Cancel,
        buffered: bool,
        scrub: &Scrubber,
    ) -> Result<Outcome, Failure> {
        let builder = self.build(request, scrub)?;
        let work = async move {
            let response = builder.send().await.map_err(|e| {
                if e.is_builder() {
                    Failure::Unsendable(describe(&e))
                } else {
                    Failure::Transport {
                        kind: transport_kind(&e),
                        detail: describe(&e),
                        sent: !e.is_connect(),
                    }
                }
            })?;
            let status = response.status().as_u16();
            if !(200..300).contains(&status) {
                let retry_after = retry_after(response.headers(), SystemTime::now());
                let headers = collect_headers(response.headers());
                let body = error_body(response).await;
                return Err(Failure::Status {
                    status,
                    retry_after,
                    excerpt: excerpt(&body),
                    headers,
                    body,
                });
            }
            if !buffered {
                return Ok(Outcome::Streaming(response));
            }
            let headers = collect_headers(response.headers());
            let body = response.bytes().await.map_err(|e| Failure::Body {
                kind: transport_kind(&e),
                detail: describe(&e),
            })?;
            Ok(Outcome::Buffered(Fetched {
                status,
                headers,
                body: body.to_vec(),
            }))
        };
        block_on(&self.runtime, work, cancel).unwrap_or(Err(Failure::Cancelled))
    }

    fn build(
        &self,
        request: &Request,
        scrub: &Scrubber,
    ) -> Result<reqwest::RequestBuilder, Failure> {
        let invalid = Failure::Unsendable;
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| invalid(format!("`{}` is not an HTTP method", request.method)))?;
        let mut builder = self.inner.request(method, request.url.as_str());
        for (name, value) in &request.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                invalid(format!(
                    "`{}` is not a valid header name",
                    scrub.apply(name)
                ))
            })?;
            // The value may be a secret, so the message names only the header.
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| invalid(format!("header `{name}` has a value that cannot be sent")))?;
            builder = builder.header(name, value);
        }
        if let Some(timeout) = request.timeout {
            builder = builder.timeout(timeout);
        }
        match &request.body {
            Body::Bytes(bytes) if bytes.is_empty() => {}
            Body::Bytes(bytes) => builder = builder.body(bytes.clone()),
            Body::Form(form) => {
                let body = FormBody::new(form).map_err(|e| invalid(scrub.apply(&e.message)))?;
                builder = builder
                    .header(reqwest::header::CONTENT_LENGTH, form.len())
                    .body(reqwest::Body::wrap(body));
            }
        }
        Ok(builder)
    }
}

/// Runs `work` on `runtime` from the calling thread, checking `cancel` every 50 ms; `None`
/// when cancelled first.
fn block_on<F: Future>(
    runtime: &Runtime,
    work: F,
    cancel: &(impl Cancel + ?Sized),
) -> Option<F::Output> {
    if cancel.is_cancelled() {
        return None;
    }
    runtime.block_on(async {
        tokio::select! {
            biased;
            _ = watch(cancel) => None,
            out = work => Some(out),
        }
    })
}

async fn watch(cancel: &(impl Cancel + ?Sized)) {
    loop {
        tokio::time::sleep(CANCEL_POLL).await;
        if cancel.is_cancelled() {
            return;
        }
    }
}

fn collect_headers(map: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Reads the start of an error body (unscrubbed; the error it ends up in is scrubbed).
async fn error_body(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(piece)) => body.extend_from_slice(&piece),
            _ => break,
        }
    }
    body
}

pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= EXCERPT_CHARS {
        line
    } else {
        let cut: String = line.chars().take(EXCERPT_CHARS).collect();
        format!("{cut}…")
    }
}

fn transport_kind(err: &reqwest::Error) -> ErrorKind {
    if err.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Unavailable
    }
}

/// Describes a reqwest error by its innermost cause, without the URL reqwest would print.
fn describe(err: &reqwest::Error) -> String {
    let mut deepest: &dyn std::error::Error = err;
    while let Some(source) = deepest.source() {
        deepest = source;
    }
    let text = if std::ptr::addr_eq(deepest, err) {
        // reqwest's own Display appends the URL; a fresh error without it says the same.
        let mut parts = err.to_string();
        if let Some(url) = err.url() {
            parts = parts.replace(url.as_str(), "");
        }
        parts
    } else {
        deepest.to_string()
    };
    text.trim().to_string()
}

/// Returns `scheme://host:port` of `url`, without credentials, path or query.
fn origin_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or("unknown host");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Returns the wait a response asks for: `retry-after-ms`, then `Retry-After` in seconds,
/// then `Retry-After` as an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = value("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let raw = value("retry-after")?.trim();
    if let Ok(secs) = raw.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = parse_http_date(raw)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7).
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let mut parts = s.split_whitespace();
    let _weekday = parts.next()?;
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':');
    let hour: u64 = clock.next()?.parse().ok()?;
    let minute: u64 = clock.next()?.parse().ok()?;
    let second: u64 = clock.next()?.parse().ok()?;
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Returns a uniformly distributed number in [0, 1).
fn random_fraction() -> f64 {
    // Each RandomState is freshly keyed, which is randomness enough for jitter without
    // pulling in a random number crate.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1.0 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{secs:.1} s")
    }
}

/// Replaces secret values in text.
#[derive(Clone, Default)]
pub(crate) struct Scrubber {
    /// Longest first, so a secret containing another is replaced whole.
    secrets: Vec<String>,
}

impl Scrubber {
    fn new(secrets: impl IntoIterator<Item = String>) -> Scrubber {
        Scrubber::default().with(secrets)
    }

    fn with(&self, more: impl IntoIterator<Item = String>) -> Scrubber {
        let mut secrets = self.secrets.clone();
        for secret in more {
            if secret.is_empty() {
                continue;
            }
            // A secret in a URL or form body travels percent-encoded.
            let encoded = percent_encode(&secret);
            if encoded != secret {
                secrets.push(encoded);
            }
            secrets.push(secret);
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Scrubber { secrets }
    }

    pub(crate) fn apply(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use launcher_testkit::http::{HttpServer, Reply, Response as Answer};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::time::Instant;

    /// Records what a job sends the host; `cancel` is the host's stop flag.
    type Host = crate::plugin::TestHost;

    fn fast_client() -> ClientBuilder {
        Client::builder("launcher-sdk-test/1")
            .timeout(Duration::from_secs(5))
            .backoff_base(Duration::from_millis(5))
    }

    /// Answers with `replies` in turn, then keeps answering with the last one.
    fn scripted(replies: Vec<Reply>) -> HttpServer {
        let next = AtomicUsize::new(0);
        HttpServer::start(move |_| {
            let i = next.fetch_add(1, Ordering::SeqCst).min(replies.len() - 1);
            replies[i].clone()
        })
    }

    fn ok(body: &str) -> Reply {
        Reply::Respond(Answer::text(200, body))
    }

    fn status(code: u16) -> Reply {
        Reply::Respond(Answer::text(code, "nope"))
    }

    #[test]
    fn waits_as_retry_after_says_on_429_then_succeeds() {
        let server = scripted(vec![
            Reply::Respond(Answer::new(429).header("Retry-After", "1")),
            ok("done"),
        ]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let started = Instant::now();
        let fetched = client.fetch(&Request::get(server.url()), &mut cx).unwrap();
        assert_eq!(fetched.body, b"done");
        assert!(started.elapsed() >= Duration::from_millis(950));
        assert_eq!(server.requests().len(), 2);
        assert_eq!(host.logs.len(), 1);
        assert_eq!(host.logs[0].level, LogLevel::Info);
        assert!(
            host.logs[0].message.contains("HTTP 429")
                && host.logs[0].message.contains("1.0 s as the service asked"),
            "{:?}",
            host.logs
        );
    }

    #[test]
    fn retry_after_ms_takes_precedence() {
        let server = scripted(vec![
            Reply::Respond(
                Answer::new(503)
                    .header("retry-after-ms", "120")
                    .header("Retry-After", "30"),
            ),
            ok("up"),
        ]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let started = Instant::now();
        let fetched = client.fetch(&Request::get(server.url()), &mut cx).unwrap();
        assert_eq!(fetched.body, b"up");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(110) && took < Duration::from_secs(5));
        assert!(host.logs[0].message.contains("120 ms"), "{:?}", host.logs);
    }

    #[test]
    fn a_retry_after_beyond_the_cap_ends_at_once_with_the_wait() {
        let server = scripted(vec![Reply::Respond(
            Answer::new(429).header("Retry-After", "120"),
        )]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let err = client
            .fetch(&Request::get(server.url()), &mut cx)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimited);
        assert_eq!(err.retry_after_secs, Some(120.0));
        assert_eq!(server.requests().len(), 1);
    }

    #[test]
    fn retries_a_500_then_succeeds() {
        let server = scripted(vec![status(500), ok("fine")]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let mut response = client.send(&Request::get(server.url()), &mut cx).unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.header("CONTENT-TYPE"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(response.chunk(&cx).unwrap().as_deref(), Some(&b"fine"[..]));
        assert_eq!(response.chunk(&cx).unwrap(), None);
        assert_eq!(server.requests().len(), 2);
        assert!(
            host.logs[0].message.contains("with backoff"),
            "{:?}",
            host.logs
        );
    }

    #[test]
    fn gives_up_after_the_configured_retries() {
        let server = scripted(vec![status(503)]);
        let client = fast_client().retries(2).build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let err = client
            .fetch(&Request::get(server.url()), &mut cx)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(err.message.contains("HTTP 503"), "{}", err.message);
        assert!(err.message.contains("after 3 attempts"), "{}", err.message);
        assert_eq!(server.requests().len(), 3);
        assert_eq!(host.logs.len(), 2);
    }

    #[test]
    fn does_not_retry_401_and_says_so_plainly() {
        let server = scripted(vec![status(401), ok("never")]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let err = client
            .fetch(&Request::get(server.url()), &mut cx)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unauthorized);
        assert_eq!(
            err.message,
            "the service rejected the credentials (HTTP 401)"
        );
        assert_eq!(server.requests().len(), 1);
        assert!(host.logs.is_empty());
    }

    #[test]
    fn other_4xx_is_invalid_input_quoting_the_body() {
        let server = scripted(vec![Reply::Respond(Answer::text(
            400,
            &format!("voice\n  unknown {}", "x".repeat(500)),
        ))]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let err = client
            .fetch(&Request::post(server.url()), &mut cx)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(
            err.message
                .starts_with("the service refused the request (HTTP 400): voice unknown xxx"),
            "{}",
            err.message
        );
        assert!(err.message.ends_with('…') && err.message.len() < 300);
        assert_eq!(server.requests().len(), 1);
    }

    #[test]
    fn a_hung_server_times_out() {
        let server = HttpServer::start(|_| Reply::Hang);
        let client = fast_client()
            .timeout(Duration::from_millis(300))
            .retries(1)
            .build()
            .unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let started = Instant::now();
        let err = client
            .fetch(&Request::get(server.url()), &mut cx)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Timeout);
        assert!(
            err.message.contains("did not answer within 300 ms"),
            "{}",
            err.message
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(server.requests().len(), 2);
    }

    #[test]
    fn timeouts_need_not_be_retried() {
        let server = HttpServer::start(|_| Reply::Hang);
        let client = fast_client()
            .timeout(Duration::from_millis(200))
            .retry_timeouts(false)
            .build()
            .unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let err = client
            .fetch(&Request::get(server.url()), &mut cx)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Timeout);
        assert_eq!(server.requests().len(), 1);
    }

    #[test]
    fn cancellation_interrupts_a_waiting_request() {
        let server = HttpServer::start(|_| Reply::Hang);
        let client = fast_client()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut host = Host::default();
        let cancel = Arc::clone(&host.cancel);
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            cancel.store(true, Ordering::SeqCst);
        });
        let mut cx = Context::new(&mut host);
        let started = Instant::now();
        let err = client
            .send(&Request::get(server.url()), &mut cx)
            .unwrap_err();
        canceller.join().unwrap();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_request_runs_on_another_thread_while_the_job_thread_goes_on() {
        let server = HttpServer::start(|_| {
            std::thread::sleep(Duration::from_millis(300));
            Reply::Respond(Answer::text(200, "done"))
        });
        let client = fast_client().build().unwrap();
        let stop = AtomicBool::new(false);
        let mut ticks = 0;
        let response = std::thread::scope(|s| {
            let work = s.spawn(|| client.send_with(&Request::post(server.url()), &stop));
            while !work.is_finished() {
                ticks += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            work.join().unwrap()
        });
        assert_eq!(response.unwrap().text(&stop).unwrap(), "done");
        assert!(ticks > 3, "the job thread went on while the request ran");

        let hung = HttpServer::start(|_| Reply::Hang);
        let started = Instant::now();
        let err = std::thread::scope(|s| {
            let work = s.spawn(|| client.send_with(&Request::get(hung.url()), &stop));
            std::thread::sleep(Duration::from_millis(100));
            stop.store(true, Ordering::SeqCst);
            work.join().unwrap()
        })
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_cancelled_job_can_still_send_its_cleanup_once() {
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&hits);
        let server = HttpServer::start(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
            Reply::Respond(Answer::text(500, "busy"))
        });
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        host.cancel.store(true, Ordering::SeqCst);
        let mut cx = Context::new(&mut host);
        let interrupt = Request::post(format!("{}/interrupt", server.url()));
        let err = client.send(&interrupt, &mut cx).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert_eq!(hits.load(Ordering::SeqCst), 0);
        // Sent once though the job is cancelled; a failure is reported, not retried.
        let err = client
            .send_after_cancel(&interrupt, Duration::from_secs(2))
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        let ok = HttpServer::start(|_| Reply::Respond(Answer::text(200, "{}")));
        let fetched = client
            .send_after_cancel(&Request::post(ok.url()), Duration::from_secs(2))
            .unwrap();
        assert_eq!(fetched.status, 200);
    }

    #[test]
    fn cancellation_interrupts_a_backoff() {
        let server = scripted(vec![Reply::Respond(
            Answer::new(429).header("Retry-After", "30"),
        )]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let cancel = Arc::clone(&host.cancel);
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            cancel.store(true, Ordering::SeqCst);
        });
        let mut cx = Context::new(&mut host);
        let started = Instant::now();
        let err = client
            .fetch(&Request::get(server.url()), &mut cx)
            .unwrap_err();
        canceller.join().unwrap();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(server.requests().len(), 1);
    }

    #[test]
    fn secret_settings_are_scrubbed_and_others_are_not() {
        let server = HttpServer::start(|req| {
            Reply::Respond(Answer::text(400, req.header("api-key").unwrap_or("")))
        });
        let mut settings = crate::types::Settings::default();
        settings.set_secret("key", "sk-from-settings");
        settings.set("region", "westeurope");
        let client = fast_client().secrets_from(&settings).build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        for (value, hidden) in [("sk-from-settings", true), ("westeurope", false)] {
            let request = Request::get(server.url()).header("Api-Key", value);
            let err = client.fetch(&request, &mut cx).unwrap_err();
            assert_eq!(err.message.contains(value), !hidden, "{}", err.message);
        }
    }

    #[test]
    fn secrets_never_reach_error_text() {
        let key = "k3y/with+odd=chars";
        // A server that echoes what it got, the way some error pages do.
        let server = HttpServer::start(|req| {
            Reply::Respond(Answer::text(
                400,
                &format!(
                    "bad key {} at {}",
                    req.header("api-key").unwrap_or(""),
                    req.path
                ),
            ))
        });
        let client = fast_client().secret(key).build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let request = Request::get(format!("{}/v1?key={}", server.url(), percent_encode(key)))
            .header("Api-Key", key);
        let err = client.fetch(&request, &mut cx).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(!err.message.contains(key), "{}", err.message);
        assert!(
            !err.message.contains(&percent_encode(key)),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("bad key *** at /v1?key=***"),
            "{}",
            err.message
        );

        // A refused connection: reqwest would name the URL, and the URL holds the token.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let token = "t0ken-in-the-query";
        let request =
            Request::get(format!("http://127.0.0.1:{port}/x?token={token}")).secret(token);
        let err = fast_client()
            .retries(1)
            .build()
            .unwrap()
            .fetch(&request, &mut cx)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(!err.message.contains(token), "{}", err.message);
        assert!(!err.message.contains("/x"), "{}", err.message);
        assert!(
            err.message
                .starts_with(&format!("cannot reach http://127.0.0.1:{port}")),
            "{}",
            err.message
        );
        assert!(host.logs.iter().all(|l| !l.message.contains(token)));
    }

    #[test]
    fn streams_a_body_into_an_output() {
        let body: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let expected = body.clone();
        let server =
            HttpServer::start(move |_| Reply::Respond(Answer::new(200).body(body.clone())));
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let mut response = client.send(&Request::get(server.url()), &mut cx).unwrap();
        assert_eq!(response.content_length(), Some(600_000));
        let mut out = cx.output("audio", "audio/mpeg", "mp3").unwrap();
        assert_eq!(response.copy_to(&mut out).unwrap(), 600_000);
        out.finish().unwrap();
        assert_eq!(host.output, expected);
    }

    #[test]
    fn an_output_takes_the_format_its_bytes_show_else_the_fallback() {
        let mut png = crate::media::PNG_SIGNATURE.to_vec();
        png.extend_from_slice(&[0u8; 200]);
        let server = scripted(vec![
            Reply::Respond(Answer::new(200).body(png.clone())),
            Reply::Respond(Answer::new(200).body(vec![1u8; 100])),
            Reply::Respond(Answer::new(200).body(vec![1u8; 100])),
            Reply::Respond(Answer::new(200)),
        ]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let mp4 = crate::media::format_for_name("mp4");
        let get = |cx: &mut Context<'_>| client.send(&Request::get(server.url()), cx).unwrap();

        // The bytes win over what the caller expected.
        let response = get(&mut cx);
        let (format, written) = response
            .write_output("image", mp4.clone(), &mut cx)
            .unwrap();
        assert_eq!(
            (format.media_type, written),
            ("image/png", png.len() as u64)
        );
        // Unknown bytes: the fallback, or an error when there is none.
        let response = get(&mut cx);
        let (format, _) = response.write_output("video", mp4, &mut cx).unwrap();
        assert_eq!(format.media_type, "video/mp4");
        let response = get(&mut cx);
        let err = response.write_output("video", None, &mut cx).unwrap_err();
        assert!(err.message.contains("not recognised"), "{}", err.message);
        let response = get(&mut cx);
        let err = response.write_output("video", None, &mut cx).unwrap_err();
        assert!(err.message.contains("empty file"), "{}", err.message);
        drop(cx);
        assert_eq!(host.output.len(), png.len() + 100);
    }

    #[test]
    fn a_body_that_breaks_off_is_an_error_when_streaming_and_retried_when_fetching() {
        let answer = Answer::new(200).body(vec![7u8; 1000]);
        let server = scripted(vec![
            Reply::Truncate(answer.clone(), 100),
            Reply::Respond(answer),
        ]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let response = client.send(&Request::get(server.url()), &mut cx).unwrap();
        let err = response.bytes(&cx).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable, "{}", err.message);
        assert!(err.message.contains("broke off"), "{}", err.message);

        let server = scripted(vec![
            Reply::Truncate(Answer::new(200).body(vec![7u8; 1000]), 100),
            Reply::Respond(Answer::new(200).body(vec![7u8; 1000])),
        ]);
        let fetched = client.fetch(&Request::get(server.url()), &mut cx).unwrap();
        assert_eq!(fetched.body.len(), 1000);
        assert_eq!(server.requests().len(), 2);
    }

    #[test]
    fn a_closed_connection_is_retried() {
        let server = scripted(vec![Reply::Close, ok("second time")]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let fetched = client.fetch(&Request::get(server.url()), &mut cx).unwrap();
        assert_eq!(fetched.body, b"second time");
    }

    #[test]
    fn sends_method_headers_body_and_user_agent() {
        let server = scripted(vec![ok("")]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let request = Request::post(format!("{}/synth?x=1", server.url()))
            .secret_header("Ocp-Apim-Subscription-Key", "abc")
            .header("Content-Type", "application/ssml+xml")
            .body("<speak/>");
        client.fetch(&request, &mut cx).unwrap();
        let seen = &server.requests()[0];
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/synth?x=1");
        assert_eq!(seen.header("ocp-apim-subscription-key"), Some("abc"));
        assert_eq!(seen.header("content-type"), Some("application/ssml+xml"));
        assert_eq!(seen.header("user-agent"), Some("launcher-sdk-test/1"));
        assert_eq!(seen.body, b"<speak/>");
        assert!(!format!("{request:?}").contains("abc"));
    }

    #[test]
    fn a_form_streams_its_file_with_a_content_length_and_is_sent_whole_again_after_a_429() {
        let server = scripted(vec![
            Reply::Respond(Answer::text(429, "slow down").header("retry-after", "0")),
            ok("heard"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("talk.wav");
        let audio: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
        std::fs::write(&path, &audio).unwrap();
        let form = Form::new()
            .text("model", "whisper-1")
            .file("file", &path, "audio/wav")
            .unwrap();
        let len = form.len();
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let request = Request::post(server.url())
            .header("Content-Type", "text/plain")
            .multipart(form);
        let fetched = client.fetch(&request, &mut cx).unwrap();
        assert_eq!(fetched.body, b"heard");
        let seen = server.requests();
        assert_eq!(seen.len(), 2);
        for request in &seen {
            assert_eq!(
                request.header("content-length"),
                Some(len.to_string().as_str())
            );
            assert!(request.header("transfer-encoding").is_none());
            let parts = request.form().unwrap();
            assert_eq!(parts.len(), 2);
            assert_eq!(
                (parts[0].name.as_str(), parts[0].text()),
                ("model", "whisper-1".into())
            );
            assert_eq!(parts[1].file_name.as_deref(), Some("talk.wav"));
            assert_eq!(parts[1].content_type.as_deref(), Some("audio/wav"));
            assert!(parts[1].data == audio, "the file arrived changed");
        }
        let types: Vec<_> = seen[0]
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .collect();
        assert_eq!(types.len(), 1, "{types:?}");
    }

    #[test]
    fn a_form_whose_file_vanished_is_not_sent() {
        let server = scripted(vec![ok("")]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.wav");
        std::fs::write(&path, b"RIFF").unwrap();
        let form = Form::new().file("file", &path, "audio/wav").unwrap();
        std::fs::remove_file(&path).unwrap();
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let err = client
            .send(&Request::post(server.url()).multipart(form), &mut cx)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message.contains("gone.wav"), "{}", err.message);
        assert!(server.requests().is_empty());
    }

    #[test]
    fn an_unsendable_request_fails_at_once_without_showing_the_value() {
        let server = scripted(vec![ok("")]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let request = Request::get(server.url()).secret_header("Api-Key", "line\nbreak");
        let err = client.fetch(&request, &mut cx).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message.contains("header `api-key`"), "{}", err.message);
        assert!(!err.message.contains("break"), "{}", err.message);
        assert!(server.requests().is_empty());
        let err = client
            .fetch(&Request::get("ftp://example.com/x"), &mut cx)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message.contains("`ftp`"), "{}", err.message);
        assert!(host.logs.is_empty(), "nothing was retried");
    }

    #[test]
    fn redirects_to_another_host_are_not_followed() {
        let elsewhere = HttpServer::start(|_| Reply::Respond(Answer::text(200, "stolen")));
        let target = format!("{}/grab", elsewhere.url());
        let server = HttpServer::start(move |req| {
            if req.path == "/moved" {
                Reply::Respond(Answer::new(307).header("Location", "/here"))
            } else if req.path == "/here" {
                Reply::Respond(Answer::text(200, "same host"))
            } else {
                Reply::Respond(Answer::new(307).header("Location", target.clone()))
            }
        });
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let fetched = client
            .fetch(&Request::get(format!("{}/moved", server.url())), &mut cx)
            .unwrap();
        assert_eq!(fetched.body, b"same host");
        let err = client
            .fetch(
                &Request::get(format!("{}/away", server.url())).secret_header("Key", "k3y"),
                &mut cx,
            )
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(elsewhere.requests().is_empty());
    }

    #[test]
    fn concurrent_jobs_share_one_client() {
        let server = HttpServer::start(|req| Reply::Respond(Answer::text(200, &req.path)));
        let client = fast_client().build().unwrap();
        let results = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for i in 0..4 {
                let (client, server, results) = (&client, &server, &results);
                scope.spawn(move || {
                    let mut host = Host::default();
                    let mut cx = Context::new(&mut host);
                    let url = format!("{}/{i}", server.url());
                    let fetched = client.fetch(&Request::get(url), &mut cx).unwrap();
                    results.lock().unwrap().push(fetched.body);
                });
            }
        });
        let mut results = results.into_inner().unwrap();
        results.sort();
        assert_eq!(
            results,
            vec![
                b"/0".to_vec(),
                b"/1".to_vec(),
                b"/2".to_vec(),
                b"/3".to_vec()
            ]
        );
    }

    fn posts(server: &HttpServer) -> usize {
        server
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    }

    #[test]
    fn methods_have_the_expected_idempotency() {
        for method in ["GET", "head", "PUT", "DELETE", "OPTIONS", "TRACE"] {
            assert!(Request::new(method, "http://x").is_idempotent(), "{method}");
        }
        for method in ["POST", "PATCH", "patch", "PROPFIND"] {
            assert!(
                !Request::new(method, "http://x").is_idempotent(),
                "{method}"
            );
        }
        assert!(Request::post("http://x").idempotent(true).is_idempotent());
        assert!(!Request::get("http://x").idempotent(false).is_idempotent());
        let keyed = Request::post("http://x").idempotency_key("Idempotency-Key", "k1");
        assert!(keyed.is_idempotent());
        assert_eq!(
            keyed.headers,
            vec![("Idempotency-Key".to_string(), "k1".to_string())]
        );
    }

    #[test]
    fn an_error_reader_can_fail_at_once_or_resend_a_refused_post() {
        let server = scripted(vec![
            Reply::Respond(Answer::text(503, "loading model")),
            Reply::Respond(Answer::text(429, r#"{"code":"insufficient_quota"}"#)),
            ok("never"),
        ]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let request = Request::post(server.url())
            .body("work")
            .read_errors(|reply| {
                let body = String::from_utf8_lossy(reply.body);
                if reply.status == 503 && body.contains("loading") {
                    Verdict::Retry(Some(Duration::from_millis(1)))
                } else if body.contains("insufficient_quota") {
                    Verdict::Fail(PluginError::invalid_input(format!(
                        "no credit left (HTTP {})",
                        reply.status
                    )))
                } else {
                    Verdict::Default
                }
            });
        let err = client.fetch(&request, &mut cx).unwrap_err();
        // The 503 was resent although POST is not idempotent; the 429 was not retried.
        assert_eq!(posts(&server), 2);
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert_eq!(err.message, "no credit left (HTTP 429)");
    }

    #[test]
    fn an_answer_checker_resends_a_refused_200_and_fails_on_others() {
        let limited = r#"{"base_resp":{"status_code":1002}}"#;
        let server = scripted(vec![ok(limited), ok(limited), ok("fine"), ok("refused")]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let request =
            Request::post(server.url())
                .body("speak")
                .check_answers(|answer| match answer.body.as_slice() {
                    b"fine" => Ok(()),
                    b"refused" => Err(Refusal::Fail(PluginError::invalid_input(
                        "sensitive content",
                    ))),
                    _ => Err(Refusal::Resend(PluginError::rate_limited(
                        "too many requests",
                        Some(Duration::from_millis(1)),
                    ))),
                });
        // A rate limit in a 200 is resent, although POST is not idempotent.
        assert_eq!(client.fetch(&request, &mut cx).unwrap().body, b"fine");
        assert_eq!(posts(&server), 3);
        // Any other error ends the request at once.
        let err = client.fetch(&request, &mut cx).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert_eq!(err.message, "sensitive content");
        assert_eq!(posts(&server), 4);
        // Retries stay bounded.
        let server = scripted(vec![ok(limited)]);
        let request = Request::post(server.url()).check_answers(|_| {
            Err(Refusal::Resend(PluginError::rate_limited(
                "too many requests",
                None,
            )))
        });
        let err = client.fetch(&request, &mut cx).unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimited);
        assert!(
            err.message.contains("gave up after 4 attempts"),
            "{}",
            err.message
        );
        drop(cx);
        let retries: Vec<&str> = host.logs.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(retries.len(), 2 + 3, "{retries:?}");
        assert!(
            retries
                .iter()
                .all(|m| m.contains("is rate limiting requests")),
            "{retries:?}"
        );
    }

    #[test]
    fn a_post_answered_500_is_not_resent() {
        let server = scripted(vec![status(500), ok("charged twice")]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let err = client
            .fetch(&Request::post(server.url()).body("render"), &mut cx)
            .unwrap_err();
        assert_eq!(posts(&server), 1);
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(err.message.contains("HTTP 500"), "{}", err.message);
        assert!(
            err.message.ends_with(
                "; the POST request may have reached the service, so it was not sent again"
            ),
            "{}",
            err.message
        );
        assert!(!err.message.contains("attempts"), "{}", err.message);
        assert!(
            err.hint
                .as_deref()
                .is_some_and(|h| h.contains("charged twice")),
            "{:?}",
            err.hint
        );
        assert!(host.logs.is_empty());
    }

    #[test]
    fn a_patch_is_not_resent_either_but_an_idempotent_post_is() {
        let server = scripted(vec![status(502), ok("done")]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let request = Request::new("PATCH", server.url()).body("x");
        let err = client.fetch(&request, &mut cx).unwrap_err();
        assert!(err.message.contains("PATCH request may have reached"));
        assert_eq!(server.requests().len(), 1);

        let server = scripted(vec![status(502), ok("done")]);
        let request = Request::post(server.url())
            .body("count tokens")
            .idempotent(true);
        let fetched = client.fetch(&request, &mut cx).unwrap();
        assert_eq!(fetched.body, b"done");
        assert_eq!(posts(&server), 2);
    }

    #[test]
    fn a_post_answered_429_is_resent() {
        let server = scripted(vec![
            Reply::Respond(Answer::new(429).header("retry-after-ms", "20")),
            ok("accepted"),
        ]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let fetched = client
            .fetch(&Request::post(server.url()).body("render"), &mut cx)
            .unwrap();
        assert_eq!(fetched.body, b"accepted");
        assert_eq!(posts(&server), 2);
        assert_eq!(host.logs.len(), 1);
    }

    #[test]
    fn a_post_that_could_not_connect_is_resent() {
        // Take a free port, leave it closed for the first attempt, then listen on it.
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let received = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&received);
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
            let (mut conn, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            // Read the head and the 6-byte body, then answer and close.
            while !seen.ends_with(b"\r\n\r\nrender") {
                let n = std::io::Read::read(&mut conn, &mut buf).unwrap();
                assert!(n > 0, "the client hung up");
                seen.extend_from_slice(&buf[..n]);
            }
            counter.fetch_add(1, Ordering::SeqCst);
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .unwrap();
        });
        let client = fast_client()
            .backoff_base(Duration::from_millis(80))
            .retries(8)
            .build()
            .unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let request = Request::post(format!("http://127.0.0.1:{port}/jobs")).body("render");
        let fetched = client.fetch(&request, &mut cx).unwrap();
        late.join().unwrap();
        assert_eq!(fetched.body, b"ok");
        assert_eq!(received.load(Ordering::SeqCst), 1);
        assert!(!host.logs.is_empty());
        assert!(
            host.logs[0].message.contains("the connection to"),
            "{:?}",
            host.logs
        );
    }

    #[test]
    fn a_post_to_a_closed_port_gives_up_without_the_warning() {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let client = fast_client().retries(2).build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let err = client
            .fetch(&Request::post(format!("http://127.0.0.1:{port}")), &mut cx)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(err.message.contains("after 3 attempts"), "{}", err.message);
        assert!(!err.message.contains("may have reached"), "{}", err.message);
        assert_eq!(host.logs.len(), 2);
    }

    #[test]
    fn a_post_that_timed_out_is_not_resent() {
        let server = HttpServer::start(|_| Reply::Hang);
        let client = fast_client()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let err = client
            .send(&Request::post(server.url()).body("render"), &mut cx)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Timeout);
        assert!(err.message.contains("did not answer within 200 ms"));
        assert!(err.message.contains("may have reached the service"));
        assert_eq!(posts(&server), 1);
    }

    #[test]
    fn a_post_whose_connection_dropped_after_sending_is_not_resent() {
        let server = scripted(vec![Reply::Close, ok("second")]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let err = client
            .fetch(&Request::post(server.url()).body("render"), &mut cx)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(err.message.contains("may have reached the service"));
        assert_eq!(posts(&server), 1);
    }

    #[test]
    fn a_post_with_an_idempotency_key_is_resent_with_the_same_key() {
        let server = scripted(vec![status(500), status(503), ok("once")]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let request = Request::post(server.url())
            .idempotency_key("Idempotency-Key", "job-7f3a")
            .body("render");
        let fetched = client.fetch(&request, &mut cx).unwrap();
        assert_eq!(fetched.body, b"once");
        let seen = server.requests();
        assert_eq!(seen.len(), 3);
        assert!(
            seen.iter()
                .all(|r| r.method == "POST" && r.header("idempotency-key") == Some("job-7f3a"))
        );
    }

    #[test]
    fn a_get_answered_500_is_still_resent() {
        let server = scripted(vec![status(500), status(500), ok("fine")]);
        let client = fast_client().build().unwrap();
        let mut host = Host::default();
        let mut cx = Context::new(&mut host);
        let fetched = client.fetch(&Request::get(server.url()), &mut cx).unwrap();
        assert_eq!(fetched.body, b"fine");
        assert_eq!(server.requests().len(), 3);

        // Marked not idempotent, a GET that starts work is treated like a POST.
        let server = scripted(vec![status(500), ok("fine")]);
        let request = Request::get(server.url()).idempotent(false);
        let err = client.fetch(&request, &mut cx).unwrap_err();
        assert!(err.message.contains("the GET request may have reached"));
        assert_eq!(server.requests().len(), 1);
    }

    #[test]
    fn parses_retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_700);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "retry-after",
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(77)));
        headers.insert("retry-after", "1.5".parse().unwrap());
        assert_eq!(
            retry_after(&headers, now),
            Some(Duration::from_millis(1500))
        );
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, now), None);
        headers.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_millis(250)));
        // A date in the past means "now".
        let later = now + Duration::from_secs(1000);
        headers.remove("retry-after-ms");
        headers.insert(
            "retry-after",
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers, later), Some(Duration::ZERO));
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_ceiling() {
        let client = Client::builder("t")
            .backoff_base(Duration::from_millis(100))
            .backoff_max(Duration::from_millis(350))
            .build()
            .unwrap();
        let waits: Vec<Duration> = (0..200).map(|_| client.backoff(1)).collect();
        assert!(waits.iter().all(|w| *w < Duration::from_millis(100)));
        assert!(waits.iter().any(|w| *w != waits[0]), "no jitter");
        assert!((0..200).all(|_| client.backoff(2) < Duration::from_millis(200)));
        assert!((0..200).all(|_| client.backoff(30) < Duration::from_millis(350)));
        assert!((0..200).any(|_| client.backoff(3) > Duration::from_millis(200)));
    }
}
