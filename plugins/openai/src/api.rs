//! The OpenAI-compatible wire: what the servers answer, and how their errors read.
//!
//! Servers differ in the shape of their error bodies: OpenAI and llama.cpp wrap them
//! (`{"error": {"message", "type", "code"}}`), older vLLM sends them flat
//! (`{"object": "error", "message", "type", "code": 400}`), FastAPI servers such as ChatGLM2's
//! `openai_api.py` and faster-whisper-server say `{"detail": …}`. [`read_error`] reads all of
//! them and decides what a failed answer means.

use std::time::Duration;

use launcher_sdk::http::{ErrorReply, Verdict};
use launcher_sdk::serde_json::{Map, Value, json};
use launcher_sdk::{ErrorKind, PluginError, service_error};
use serde::Deserialize;

/// One streamed chunk or one whole answer of `/chat/completions` or `/completions`. Every
/// field is optional: ChatGLM2's server sends no `id` or `usage`, Zhipu no `object`.
#[derive(Debug, Default, Deserialize)]
pub struct Completion {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<Value>,
    /// llama.cpp's server reports its speed here.
    #[serde(default)]
    pub timings: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Choice {
    /// Streamed chat.
    #[serde(default)]
    pub delta: Option<ChatMessage>,
    /// A whole chat answer.
    #[serde(default)]
    pub message: Option<ChatMessage>,
    /// Completions, streamed or not.
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ChatMessage {
    #[serde(default)]
    pub content: Option<String>,
}

impl Choice {
    /// Returns the text this choice adds.
    pub fn text(&self) -> &str {
        self.delta
            .as_ref()
            .or(self.message.as_ref())
            .and_then(|m| m.content.as_deref())
            .or(self.text.as_deref())
            .unwrap_or("")
    }
}

/// `/models`.
#[derive(Debug, Deserialize)]
pub struct ModelList {
    pub data: Vec<ModelEntry>,
}

#[derive(Debug, Deserialize)]
pub struct ModelEntry {
    pub id: String,
    #[serde(default)]
    pub owned_by: Option<String>,
}

/// What the request was for, so an error can say what to fix.
#[derive(Debug, Clone)]
pub struct ErrorContext {
    /// Where the key comes from, for a rejected key.
    pub key_source: String,
    /// The model asked for, for a 404.
    pub model: Option<String>,
}

/// Returns the error object of a body in any of the shapes servers use, as
/// `{"error": {...}}`.
pub fn error_object(body: &Value) -> Option<Value> {
    let obj = body.as_object()?;
    if let Some(error) = obj.get("error").filter(|e| !e.is_null()) {
        return Some(json!({ "error": error }));
    }
    if obj.get("object").and_then(Value::as_str) == Some("error") {
        return Some(json!({ "error": body }));
    }
    match obj.get("detail")? {
        Value::String(message) => Some(json!({ "error": { "message": message } })),
        Value::Object(detail) => match detail.get("error") {
            Some(error) => Some(json!({ "error": error })),
            None => Some(json!({ "error": detail })),
        },
        other => Some(json!({ "error": { "message": other.to_string() } })),
    }
}

/// Returns the service's own words for an error body, if it has any.
fn service_message(body: Option<&Value>) -> Option<(String, Option<String>)> {
    let error = error_object(body?)?;
    let error = error.get("error")?;
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let message = match error {
        Value::String(s) => Some(s.clone()),
        _ => text(error.get("message")),
    }?;
    let code = text(error.get("code")).or_else(|| text(error.get("type")));
    Some((message, code))
}

/// Returns whether an error body's code says the account has no credit left.
fn is_quota(body: Option<&Value>) -> bool {
    let Some(error) = body.and_then(error_object) else {
        return false;
    };
    let error = &error["error"];
    ["code", "type"].iter().any(|k| {
        error.get(*k).and_then(Value::as_str).is_some_and(|c| {
            matches!(
                c,
                "insufficient_quota" | "billing_hard_limit_reached" | "insufficient_balance"
            )
        })
    })
}

/// Parses a reset such as `1s`, `6m0s`, `20ms` or `0.5s` from `x-ratelimit-reset-*`.
pub fn parse_reset(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0.0;
    let mut number = String::new();
    let mut chars = value.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let n: f64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += n * unit;
        any = true;
    }
    (any && number.is_empty()).then(|| Duration::from_secs_f64(total))
}

/// How long a 429 without `retry-after` asks to wait, from `x-ratelimit-reset-*`: the longer
/// of the request and token resets.
fn ratelimit_reset(reply: &ErrorReply<'_>) -> Option<Duration> {
    ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]
        .iter()
        .filter_map(|h| reply.header(h).and_then(parse_reset))
        .max()
}

/// Whether a 503 says the model is still loading (llama.cpp's `unavailable_error`), which
/// passes once the server is ready.
fn is_loading(reply: &ErrorReply<'_>) -> bool {
    reply.status == 503
        && String::from_utf8_lossy(reply.body)
            .to_ascii_lowercase()
            .contains("loading")
}

/// The error a job ends with while a server is still loading its model: unavailable, with
/// the wait before asking again.
pub fn loading_error(wait: Duration) -> PluginError {
    let mut err = PluginError::unavailable("the server is still loading the model (HTTP 503)");
    err.retry_after_secs = Some(wait.as_secs_f64());
    err
}

/// Returns whether `err` is [`loading_error`].
pub fn is_loading_error(err: &PluginError) -> bool {
    err.kind == ErrorKind::Unavailable
        && err.retry_after_secs.is_some()
        && err.message.contains("loading the model")
}

/// Decides what an answer that is not 2xx means.
pub fn read_error(reply: &ErrorReply<'_>, context: &ErrorContext) -> Verdict {
    let body = reply.json();
    let said = service_message(body.as_ref());
    let status = reply.status;
    let words = |fallback: &str| match &said {
        Some((message, Some(code))) => format!(" ({code}): {message}"),
        Some((message, None)) => format!(": {message}"),
        None => fallback.to_string(),
    };
    let fail = |kind: ErrorKind, what: &str| {
        Verdict::Fail(PluginError::new(
            kind,
            format!("{what} (HTTP {status}){}", words("")),
        ))
    };
    match status {
        401 | 403 => Verdict::Fail(
            PluginError::unauthorized(format!(
                "the service rejected the key (HTTP {status}){}",
                words("")
            ))
            .with_hint(format!("check {}", context.key_source)),
        ),
        402 => Verdict::Fail(
            PluginError::rate_limited(
                format!(
                    "the service refused the request because the account's balance is used up (HTTP 402){}",
                    words("")
                ),
                None,
            )
            .with_hint("waiting will not help: top up the account, or use another key"),
        ),
        404 => {
            let what = match &context.model {
                Some(model) => format!("the model `{model}` was not found"),
                None => "the service has no such endpoint or model".to_string(),
            };
            fail(ErrorKind::InvalidInput, &what)
        }
        422 => fail(ErrorKind::InvalidInput, "the service refused the parameters"),
        429 if is_quota(body.as_ref()) => match body.as_ref().and_then(|b| {
            let wrapped = error_object(b)?;
            service_error(&wrapped)
        }) {
            Some(err) => Verdict::Fail(err),
            None => fail(ErrorKind::RateLimited, "the account's quota is used up"),
        },
        429 if reply.header("retry-after").is_some() || reply.header("retry-after-ms").is_some() => {
            Verdict::Default
        }
        429 => match ratelimit_reset(reply) {
            Some(wait) => Verdict::Retry(Some(wait)),
            None => Verdict::Default,
        },
        503 if is_loading(reply) => Verdict::Fail(loading_error(Duration::from_millis(250))),
        400..=499 => fail(ErrorKind::InvalidInput, "the service refused the request"),
        _ => Verdict::Default,
    }
}

/// Returns the error a streamed event or line reports, in any of the shapes servers use.
pub fn stream_error(value: &Value) -> Option<PluginError> {
    let wrapped = error_object(value)?;
    service_error(&wrapped)
}

/// Returns the model ids of `list` closest to `wanted`, best first.
pub fn close_models<'a>(wanted: &str, list: &'a [ModelEntry]) -> Vec<&'a str> {
    let wanted = wanted.to_ascii_lowercase();
    let mut scored: Vec<(f64, &str)> = list
        .iter()
        .map(|m| {
            let id = m.id.to_ascii_lowercase();
            let mut score = strsim::jaro_winkler(&wanted, &id);
            if id.contains(&wanted) || wanted.contains(&id) {
                score += 0.2;
            }
            (score, m.id.as_str())
        })
        .filter(|(score, _)| *score >= 0.75)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(5).map(|(_, id)| id).collect()
}

/// Adds the usage and timings an answer reported to `info`.
pub fn record(info: &mut Map<String, Value>, answer: &Completion) {
    if let Some(model) = &answer.model {
        info.insert("model".into(), Value::String(model.clone()));
    }
    if let Some(usage) = answer.usage.as_ref().filter(|u| u.is_object()) {
        info.insert("usage".into(), usage.clone());
    }
    if let Some(timings) = answer.timings.as_ref().filter(|t| t.is_object()) {
        info.insert("timings".into(), timings.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_error_shape() {
        let msg = |v: Value| service_message(Some(&v)).map(|(m, _)| m);
        assert_eq!(
            msg(json!({"error": {"message": "bad", "type": "x"}})).unwrap(),
            "bad"
        );
        assert_eq!(
            msg(json!({"object": "error", "message": "flat", "type": "BadRequestError", "code": 400}))
                .unwrap(),
            "flat"
        );
        assert_eq!(
            msg(json!({"detail": "Invalid request"})).unwrap(),
            "Invalid request"
        );
        assert_eq!(
            msg(json!({"detail": {"error": {"message": "nested"}}})).unwrap(),
            "nested"
        );
        assert_eq!(msg(json!({"error": "plain"})).unwrap(), "plain");
        assert!(msg(json!({"choices": []})).is_none());
    }

    #[test]
    fn parses_ratelimit_resets() {
        assert_eq!(parse_reset("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_reset("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_reset("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_reset("soon"), None);
    }
}
