//! An in-process emulator of OpenAI-compatible APIs, written from
//! `shared/contracts/services.md` section 2 and `seed-services.md` sections 15–17.
//!
//! It is strict about what an adapter sends: the path and method, `Authorization: Bearer`
//! with the emulator's key when it has one (401 otherwise), `Content-Type: application/json`,
//! a body with `model` and `messages` of valid roles, and `stream` a boolean. It answers
//! chat, completions, embeddings and models, streamed as server-sent events ending in
//! `data: [DONE]`; transcriptions (a strictly checked multipart form), speech (bytes of the
//! asked-for format, streamed in pieces; `pcm` headerless) and image generations (base64,
//! or URLs the emulator serves, with each model's sizes and counts checked); and records
//! every request.
//!
//! Faults are scripted with [`OpenAiEmulator::fail_next`] (any [`Fault`]), and each
//! profile's differences are switched on with [`Flavor`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};

use crate::http::{HttpServer, Reply, Request, Response, StreamBody};

/// How a server differs from OpenAI's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// OpenAI's own API.
    #[default]
    OpenAi,
    /// ChatGLM2-6B's `openai_api.py`: no `id` or `usage`, 400 `{"detail":"Invalid request"}`
    /// unless the last message is the user's, `/v1/models` always `gpt-3.5-turbo`.
    ChatGlm,
    /// Baidu Qianfan v2: requires the configured `appid` header and echoes it.
    Qianfan,
    /// Zhipu: answers without `object`.
    Zhipu,
    /// llama.cpp's server: a `timings` object on the last chunk.
    LlamaCpp,
    /// faster-whisper-server: the model in the form field `model_name` (`model` is ignored),
    /// only `json` and `verbose_json` transcripts; `text`, `srt` and `vtt` answer 400
    /// `{"detail":{"error":{…}}}`.
    FasterWhisper,
}

/// What every transcription says.
pub const TRANSCRIPT: &str = "the quick brown fox jumps over the lazy dog";

/// The image every generation draws: a 1×1 PNG.
pub const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0\x90wS\xde";

/// The voices `/v1/audio/speech` knows.
pub const VOICES: &[&str] = &[
    "alloy", "echo", "fable", "onyx", "nova", "shimmer", "ash", "coral", "sage",
];

/// A scripted failure for the next request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// An error status with an OpenAI-style body of this code.
    Status(u16, &'static str),
    /// 429 with `retry-after` in seconds.
    RetryAfter(&'static str),
    /// 429 with `retry-after-ms`.
    RetryAfterMs(&'static str),
    /// 429 with only `x-ratelimit-reset-requests`.
    ResetRequests(&'static str),
    /// 429 `insufficient_quota`.
    InsufficientQuota,
    /// DeepSeek's 402 insufficient balance.
    InsufficientBalance,
    /// DeepSeek's 422 invalid parameters.
    InvalidParameters,
    /// llama.cpp's 503 while loading the model.
    Loading,
    /// vLLM's older flat error body, with this status.
    VllmFlat(u16),
    /// vLLM's newer wrapped error body with a numeric code.
    VllmWrapped(u16),
    /// Streams two chunks, then `data: {"error": …}` with status 200.
    MidStreamError,
    /// Streams the chunks and stops without `[DONE]`.
    NoDone,
    /// Ends with `finish_reason: length`.
    Length,
}

#[derive(Default)]
struct State {
    faults: VecDeque<Fault>,
    /// Pause between streamed chunks.
    delay: Duration,
    /// When set, the stream holds after its first chunk until [`Gate::open`].
    gate: Option<Arc<Gate>>,
    /// Images are answered as URLs even when `b64_json` was asked for.
    image_urls: bool,
}

/// Holds a stream after its first token until the test opens it.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    cond: Condvar,
    /// Whether the stream went on because the gate opened, not because it timed out.
    opened_in_time: AtomicBool,
}

impl Gate {
    /// Lets the stream go on.
    pub fn open(&self) {
        *self.open.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.cond.notify_all();
    }

    fn wait(&self, limit: Duration) {
        let guard = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self
            .cond
            .wait_timeout_while(guard, limit, |open| !*open)
            .unwrap_or_else(PoisonError::into_inner);
        self.opened_in_time.store(*guard, Ordering::SeqCst);
    }

    /// Returns whether the stream went on because the gate was opened.
    pub fn opened_in_time(&self) -> bool {
        self.opened_in_time.load(Ordering::SeqCst)
    }
}

/// The emulator; stops when dropped.
pub struct OpenAiEmulator {
    server: HttpServer,
    state: Arc<Mutex<State>>,
}

/// The models the emulator serves.
pub const MODELS: &[&str] = &[
    "gpt-4o-mini",
    "gpt-4o",
    "text-embedding-3-small",
    "llama3:8b",
    "deepseek-chat",
    "ernie-4.0-8k",
    "qwen-plus",
    "moonshot-v1-8k",
    "glm-4-flash",
    "hunyuan-lite",
];

/// The answer every chat gets, streamed as these tokens.
pub const TOKENS: &[&str] = &["Hello", ",", " world", "!"];

impl OpenAiEmulator {
    /// Starts an emulator requiring `key` (none: no auth) with `flavor`; `appid` is the
    /// header Qianfan requires when configured.
    pub fn start(key: Option<&str>, flavor: Flavor, appid: Option<&str>) -> OpenAiEmulator {
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = Arc::clone(&state);
        let key = key.map(str::to_string);
        let appid = appid.map(str::to_string);
        // The handler needs the server's own address for image URLs, known once it started.
        let server_url: Arc<Mutex<String>> = Arc::default();
        let own_url = Arc::clone(&server_url);
        let server = HttpServer::start(move |req| {
            let server_url = own_url
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
            let fault = state.faults.pop_front();
            let delay = state.delay;
            let gate = state.gate.clone();
            let image_urls = state.image_urls;
            drop(state);
            if let Some(reply) = media(req, key.as_deref(), flavor, image_urls, &server_url) {
                return reply;
            }
            handle(
                req,
                key.as_deref(),
                appid.as_deref(),
                flavor,
                fault,
                delay,
                gate,
            )
        });
        *server_url.lock().unwrap_or_else(PoisonError::into_inner) = server.url();
        OpenAiEmulator { server, state }
    }

    /// Answers image generations with URLs (served by the emulator) even when `b64_json`
    /// was asked for, as some servers do.
    pub fn answer_image_urls(&self) {
        self.lock().image_urls = true;
    }

    /// Returns the base URL adapters append paths to: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.url())
    }

    /// Makes the next request fail with `fault`; several calls queue up.
    pub fn fail_next(&self, fault: Fault) {
        self.lock().faults.push_back(fault);
    }

    /// Pauses this long between streamed chunks.
    pub fn slow(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Holds every stream after its first token until the returned gate is opened (or 5 s).
    pub fn gate(&self) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        self.lock().gate = Some(Arc::clone(&gate));
        gate
    }

    /// Returns every request received.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Returns the JSON bodies of the requests to `path` (e.g. `/v1/chat/completions`).
    pub fn bodies(&self, path: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .filter_map(|r| serde_json::from_slice(&r.body).ok())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn error(status: u16, message: &str, kind: &str, code: Value) -> Reply {
    Reply::Respond(Response::json(
        status,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    ))
}

fn fault_reply(fault: &Fault) -> Option<Reply> {
    Some(match fault {
        Fault::Status(status, code) => error(*status, "scripted failure", "api_error", json!(code)),
        Fault::RetryAfter(secs) => {
            match error(429, "slow down", "requests", json!("rate_limit_exceeded")) {
                Reply::Respond(r) => Reply::Respond(r.header("retry-after", *secs)),
                other => other,
            }
        }
        Fault::RetryAfterMs(ms) => {
            match error(429, "slow down", "requests", json!("rate_limit_exceeded")) {
                Reply::Respond(r) => Reply::Respond(r.header("retry-after-ms", *ms)),
                other => other,
            }
        }
        Fault::ResetRequests(reset) => {
            match error(429, "slow down", "requests", json!("rate_limit_exceeded")) {
                Reply::Respond(r) => Reply::Respond(
                    r.header("x-ratelimit-reset-requests", *reset)
                        .header("x-ratelimit-remaining-requests", "0"),
                ),
                other => other,
            }
        }
        Fault::InsufficientQuota => error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            json!("insufficient_quota"),
        ),
        Fault::InsufficientBalance => error(
            402,
            "Insufficient Balance",
            "unknown_error",
            json!("invalid_request_error"),
        ),
        Fault::InvalidParameters => error(
            422,
            "Invalid parameters: temperature",
            "invalid_request_error",
            Value::Null,
        ),
        Fault::Loading => error(503, "Loading model", "unavailable_error", json!(503)),
        Fault::VllmFlat(status) => Reply::Respond(Response::json(
            *status,
            &json!({"object": "error", "message": "The model `nope` does not exist.", "type": "NotFoundError", "param": null, "code": status}),
        )),
        Fault::VllmWrapped(status) => error(
            *status,
            "The model `nope` does not exist.",
            "NotFoundError",
            json!(status),
        ),
        Fault::MidStreamError | Fault::NoDone | Fault::Length => return None,
    })
}

fn handle(
    req: &Request,
    key: Option<&str>,
    appid: Option<&str>,
    flavor: Flavor,
    fault: Option<Fault>,
    delay: Duration,
    gate: Option<Arc<Gate>>,
) -> Reply {
    if let Some(key) = key
        && req.header("authorization") != Some(format!("Bearer {key}").as_str())
    {
        return error(
            401,
            "Incorrect API key provided.",
            "invalid_request_error",
            json!("invalid_api_key"),
        );
    }
    if let Some(appid) = appid
        && req.header("appid") != Some(appid)
    {
        return error(
            400,
            "appid is missing or wrong",
            "invalid_request_error",
            json!("invalid_appid"),
        );
    }
    if let Some(reply) = fault.as_ref().and_then(fault_reply) {
        return reply;
    }
    let path = req.path.split('?').next().unwrap_or("");
    let reply = match (req.method.as_str(), path) {
        ("GET", "/v1/models") => models(flavor),
        ("POST", "/v1/chat/completions") => generate(req, flavor, true, fault, delay, gate),
        ("POST", "/v1/completions") => generate(req, flavor, false, fault, delay, gate),
        ("POST", "/v1/embeddings") => embeddings(req),
        _ => error(
            404,
            "Unknown request URL",
            "invalid_request_error",
            json!("unknown_url"),
        ),
    };
    match (reply, appid) {
        (Reply::Respond(r), Some(appid)) => Reply::Respond(r.header("appid", appid)),
        (Reply::Stream(r, body), Some(appid)) => Reply::Stream(r.header("appid", appid), body),
        (reply, _) => reply,
    }
}

fn models(flavor: Flavor) -> Reply {
    let ids: Vec<&str> = if flavor == Flavor::ChatGlm {
        vec!["gpt-3.5-turbo"]
    } else {
        MODELS.to_vec()
    };
    let data: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1686935002, "owned_by": "emulator"}))
        .collect();
    Reply::Respond(Response::json(
        200,
        &json!({"object": "list", "data": data}),
    ))
}

/// Checks the JSON body of a POST; returns it or the 400 the service would answer.
fn json_body(req: &Request) -> Result<Value, Reply> {
    if req
        .header("content-type")
        .map(|v| v.starts_with("application/json"))
        != Some(true)
    {
        return Err(error(
            400,
            "Content-Type must be application/json",
            "invalid_request_error",
            Value::Null,
        ));
    }
    serde_json::from_slice(&req.body).map_err(|_| {
        error(
            400,
            "We could not parse the JSON body of your request.",
            "invalid_request_error",
            Value::Null,
        )
    })
}

fn embeddings(req: &Request) -> Reply {
    let body = match json_body(req) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return error(
            400,
            "you must provide a model parameter",
            "invalid_request_error",
            Value::Null,
        );
    };
    if !MODELS.contains(&model) {
        return error(
            404,
            &format!("The model `{model}` does not exist"),
            "invalid_request_error",
            json!("model_not_found"),
        );
    }
    let Some(input) = body.get("input").and_then(Value::as_str) else {
        return error(
            400,
            "input must be a string",
            "invalid_request_error",
            Value::Null,
        );
    };
    let vector: Vec<f64> = (0..8)
        .map(|i| ((input.len() + i) % 7) as f64 / 7.0)
        .collect();
    Reply::Respond(Response::json(
        200,
        &json!({"object": "list", "model": model, "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                "usage": {"prompt_tokens": 3, "total_tokens": 3}}),
    ))
}

fn generate(
    req: &Request,
    flavor: Flavor,
    chat: bool,
    fault: Option<Fault>,
    delay: Duration,
    gate: Option<Arc<Gate>>,
) -> Reply {
    let body = match json_body(req) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let Some(model) = body
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return error(
            400,
            "you must provide a model parameter",
            "invalid_request_error",
            Value::Null,
        );
    };
    if flavor != Flavor::ChatGlm && !MODELS.contains(&model.as_str()) {
        return error(
            404,
            &format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            json!("model_not_found"),
        );
    }
    let stream = match body.get("stream") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return error(
                400,
                "stream must be a boolean",
                "invalid_request_error",
                Value::Null,
            );
        }
    };
    if chat {
        let Some(messages) = body
            .get("messages")
            .and_then(Value::as_array)
            .filter(|m| !m.is_empty())
        else {
            return error(
                400,
                "messages must be a non-empty array",
                "invalid_request_error",
                Value::Null,
            );
        };
        for m in messages {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("");
            if !["system", "user", "assistant", "tool", "developer"].contains(&role)
                || m.get("content").is_none()
            {
                return error(
                    400,
                    "each message needs a valid role and content",
                    "invalid_request_error",
                    Value::Null,
                );
            }
        }
        if flavor == Flavor::ChatGlm
            && messages.last().and_then(|m| m.get("role")) != Some(&json!("user"))
        {
            return Reply::Respond(Response::json(400, &json!({"detail": "Invalid request"})));
        }
    } else if body.get("prompt").and_then(Value::as_str).is_none() {
        return error(
            400,
            "prompt must be a string",
            "invalid_request_error",
            Value::Null,
        );
    }
    let include_usage = body.pointer("/stream_options/include_usage") == Some(&json!(true));
    let finish = if fault == Some(Fault::Length) {
        "length"
    } else {
        "stop"
    };
    let usage = json!({"prompt_tokens": 9, "completion_tokens": TOKENS.len(), "total_tokens": 9 + TOKENS.len()});
    let object = if chat {
        "chat.completion"
    } else {
        "text_completion"
    };
    let stamp = |mut v: Value, object: &str| {
        match flavor {
            Flavor::ChatGlm => {}
            Flavor::Zhipu => {
                v["id"] = json!("chatcmpl-1");
            }
            _ => {
                v["id"] = json!("chatcmpl-1");
                v["object"] = json!(object);
                v["created"] = json!(1_700_000_000);
            }
        }
        v["model"] = json!(model);
        v
    };
    if !stream {
        let text: String = TOKENS.concat();
        let choice = if chat {
            json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish})
        } else {
            json!({"index": 0, "text": text, "finish_reason": finish})
        };
        let mut answer = stamp(json!({"choices": [choice]}), object);
        if flavor != Flavor::ChatGlm {
            answer["usage"] = usage;
        }
        if flavor == Flavor::LlamaCpp {
            answer["timings"] = json!({"predicted_n": TOKENS.len(), "predicted_per_second": 50.0});
        }
        return Reply::Respond(Response::json(200, &answer));
    }
    let chunk_object = if chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let piece = |text: Option<&str>, finish: Option<&str>| {
        let choice = if chat {
            let delta = match text {
                Some(t) => json!({"content": t}),
                None if finish.is_none() => json!({"role": "assistant", "content": ""}),
                None => json!({}),
            };
            json!({"index": 0, "delta": delta, "finish_reason": finish})
        } else {
            json!({"index": 0, "text": text.unwrap_or(""), "finish_reason": finish})
        };
        stamp(json!({"choices": [choice]}), chunk_object)
    };
    let mut events: Vec<Value> = vec![piece(None, None)];
    events.extend(TOKENS.iter().map(|t| piece(Some(t), None)));
    let mut last = piece(None, Some(finish));
    if flavor == Flavor::LlamaCpp {
        last["timings"] = json!({"predicted_n": TOKENS.len(), "predicted_per_second": 50.0});
    }
    events.push(last);
    if include_usage && flavor != Flavor::ChatGlm {
        events.push(stamp(json!({"choices": [], "usage": usage}), chunk_object));
    }
    let fault = fault.clone();
    let body = StreamBody::new(move |out| {
        for (i, event) in events.iter().enumerate() {
            if fault == Some(Fault::MidStreamError) && i == 3 {
                out.send(b"data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"code\":null}}\n\n")?;
                return Ok(());
            }
            out.send(format!("data: {event}\n\n").as_bytes())?;
            if i == 1
                && let Some(gate) = &gate
            {
                gate.wait(Duration::from_secs(5));
            }
            if !delay.is_zero() {
                out.pause(delay)?;
            }
        }
        if fault != Some(Fault::NoDone) {
            out.send(b"data: [DONE]\n\n")?;
        }
        Ok(())
    });
    Reply::Stream(
        Response::new(200)
            .header("Content-Type", "text/event-stream")
            .header("Cache-Control", "no-cache"),
        body,
    )
}

/// Serves the audio and image endpoints, and the image files; `None` for other paths.
fn media(
    req: &Request,
    key: Option<&str>,
    flavor: Flavor,
    image_urls: bool,
    own: &str,
) -> Option<Reply> {
    let path = req.path.split('?').next().unwrap_or("");
    if req.method == "GET" && path.starts_with("/files/") {
        return Some(Reply::Respond(
            Response::new(200)
                .header("Content-Type", "image/png")
                .body(PNG),
        ));
    }
    let route = matches!(
        path,
        "/v1/audio/transcriptions" | "/v1/audio/speech" | "/v1/images/generations"
    );
    if !route || req.method != "POST" {
        return None;
    }
    if let Some(key) = key
        && req.header("authorization") != Some(format!("Bearer {key}").as_str())
    {
        return Some(error(
            401,
            "Incorrect API key provided.",
            "invalid_request_error",
            json!("invalid_api_key"),
        ));
    }
    Some(match path {
        "/v1/audio/transcriptions" => transcribe(req, flavor),
        "/v1/audio/speech" => speak(req),
        _ => draw(req, image_urls, own),
    })
}

fn bad(message: &str) -> Reply {
    error(400, message, "invalid_request_error", Value::Null)
}

/// `/v1/audio/transcriptions`: a strict multipart form.
fn transcribe(req: &Request, flavor: Flavor) -> Reply {
    let parts = match req.form() {
        Ok(parts) => parts,
        Err(why) => return bad(&format!("the body is not multipart/form-data: {why}")),
    };
    let allowed: &[&str] = if flavor == Flavor::FasterWhisper {
        &[
            "file",
            "model",
            "model_name",
            "language",
            "response_format",
            "prompt",
            "temperature",
        ]
    } else {
        &[
            "file",
            "model",
            "language",
            "response_format",
            "prompt",
            "temperature",
        ]
    };
    for part in &parts {
        if !allowed.contains(&part.name.as_str()) {
            return bad(&format!(
                "Unrecognized request argument supplied: {}",
                part.name
            ));
        }
        if parts.iter().filter(|p| p.name == part.name).count() > 1 {
            return bad(&format!("field `{}` was sent twice", part.name));
        }
    }
    let field = |name: &str| parts.iter().find(|p| p.name == name);
    let Some(file) = field("file").filter(|f| f.file_name.is_some() && !f.data.is_empty()) else {
        return bad("file is required, as a file part");
    };
    if media_sniff_audio(&file.data).is_none() {
        return bad("Invalid file format.");
    }
    if flavor != Flavor::FasterWhisper && field("model").is_none() {
        return bad("model is required");
    }
    let format = field("response_format").map_or("json".to_string(), |f| f.text());
    let fail_detail = |message: &str| {
        Reply::Respond(Response::json(
            400,
            &json!({"detail": {"error": {"message": message, "type": "invalid_request_error"}}}),
        ))
    };
    if flavor == Flavor::FasterWhisper && !matches!(format.as_str(), "json" | "verbose_json") {
        return fail_detail(&format!("response_format `{format}` is not supported"));
    }
    let seconds = 3.0;
    match format.as_str() {
        "json" => Reply::Respond(Response::json(200, &json!({"text": TRANSCRIPT}))),
        "verbose_json" => Reply::Respond(Response::json(
            200,
            &json!({
            "task": "transcribe", "language": "en", "duration": seconds, "text": TRANSCRIPT,
            "segments": [{"id": 0, "start": 0.0, "end": seconds, "text": TRANSCRIPT}]}),
        )),
        "text" => Reply::Respond(Response::text(200, &format!("{TRANSCRIPT}\n"))),
        "srt" => Reply::Respond(Response::text(
            200,
            &format!("1\n00:00:00,000 --> 00:00:03,000\n{TRANSCRIPT}\n\n"),
        )),
        "vtt" => Reply::Respond(Response::text(
            200,
            &format!("WEBVTT\n\n00:00:00.000 --> 00:00:03.000\n{TRANSCRIPT}\n\n"),
        )),
        other => bad(&format!(
            "response_format `{other}` is not one of json, text, srt, verbose_json, vtt"
        )),
    }
}

/// Whether `data` starts like an audio file the API takes.
fn media_sniff_audio(data: &[u8]) -> Option<()> {
    let known = data.starts_with(b"RIFF")
        || data.starts_with(b"ID3")
        || data.starts_with(b"fLaC")
        || data.starts_with(b"OggS")
        || data.first() == Some(&0xFF);
    known.then_some(())
}

/// The first bytes of audio in `format`; `pcm` has none.
fn audio_head(format: &str, data_len: usize) -> Vec<u8> {
    match format {
        "mp3" => b"ID3\x04\0\0\0\0\0\0".to_vec(),
        "opus" => b"OggS\0\x02\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x13OpusHead\x01\x01\x38\x01\x80\xbb\0\0\0\0\0".to_vec(),
        "aac" => vec![0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F, 0xFC],
        "flac" => b"fLaC\0\0\0\x22".to_vec(),
        "wav" => {
            let mut h = b"RIFF".to_vec();
            h.extend_from_slice(&(36 + data_len as u32).to_le_bytes());
            h.extend_from_slice(b"WAVEfmt \x10\0\0\0\x01\0\x01\0");
            h.extend_from_slice(&24_000u32.to_le_bytes());
            h.extend_from_slice(&48_000u32.to_le_bytes());
            h.extend_from_slice(b"\x02\0\x10\0data");
            h.extend_from_slice(&(data_len as u32).to_le_bytes());
            h
        }
        _ => Vec::new(),
    }
}

/// `/v1/audio/speech`: audio of the requested format, 100 bytes of samples per character,
/// streamed in pieces.
fn speak(req: &Request) -> Reply {
    let body = match json_body(req) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    for key in body
        .as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if ![
            "model",
            "input",
            "voice",
            "response_format",
            "speed",
            "instructions",
        ]
        .contains(&key.as_str())
        {
            return bad(&format!("Unrecognized request argument supplied: {key}"));
        }
    }
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return bad("you must provide a model parameter");
    };
    if !["tts-1", "tts-1-hd", "gpt-4o-mini-tts"].contains(&model) {
        return error(
            404,
            &format!("The model `{model}` does not exist"),
            "invalid_request_error",
            json!("model_not_found"),
        );
    }
    let Some(input) = body
        .get("input")
        .and_then(Value::as_str)
        .filter(|i| !i.is_empty())
    else {
        return bad("input is required");
    };
    if input.chars().count() > 4096 {
        return bad("string too long. Expected a string with maximum length 4096");
    }
    if !body
        .get("voice")
        .and_then(Value::as_str)
        .is_some_and(|v| VOICES.contains(&v))
    {
        return bad("voice is not one the API has");
    }
    let format = body
        .get("response_format")
        .and_then(Value::as_str)
        .unwrap_or("mp3")
        .to_string();
    if !["mp3", "opus", "aac", "flac", "wav", "pcm"].contains(&format.as_str()) {
        return bad("response_format is not one of mp3, opus, aac, flac, wav, pcm");
    }
    if let Some(speed) = body.get("speed")
        && !speed.as_f64().is_some_and(|s| (0.25..=4.0).contains(&s))
    {
        return bad("speed must be between 0.25 and 4.0");
    }
    let data_len = input.chars().count() * 100;
    let mut audio = audio_head(&format, data_len);
    audio.extend((0..data_len).map(|i| (i % 200) as u8));
    let media_type = match format.as_str() {
        "mp3" => "audio/mpeg",
        "opus" => "audio/ogg",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        _ => "audio/pcm",
    };
    let stream = StreamBody::new(move |out| {
        for piece in audio.chunks(1000) {
            out.send(piece)?;
        }
        Ok(())
    });
    Reply::Stream(
        Response::new(200).header("Content-Type", media_type),
        stream,
    )
}

/// `/v1/images/generations`: sizes and counts checked per the contract's table.
fn draw(req: &Request, image_urls: bool, own: &str) -> Reply {
    use base64::Engine as _;
    let body = match json_body(req) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let Some(prompt) = body
        .get("prompt")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
    else {
        return bad("prompt is required");
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("dall-e-2");
    let (sizes, max_n, max_prompt): (&[&str], u64, usize) = match model {
        "dall-e-2" => (&["256x256", "512x512", "1024x1024"], 10, 1000),
        "dall-e-3" => (&["1024x1024", "1792x1024", "1024x1792"], 1, 4000),
        "gpt-image-1" => (&["1024x1024", "1536x1024", "1024x1536", "auto"], 10, 32000),
        other => {
            return error(
                404,
                &format!("The model `{other}` does not exist"),
                "invalid_request_error",
                json!("model_not_found"),
            );
        }
    };
    if prompt.chars().count() > max_prompt {
        return bad("prompt is too long");
    }
    if let Some(size) = body.get("size")
        && !size.as_str().is_some_and(|s| sizes.contains(&s))
    {
        return bad(&format!(
            "Invalid size {size}; {model} takes {}",
            sizes.join(", ")
        ));
    }
    let n = match body.get("n") {
        None => 1,
        Some(n) => match n.as_u64().filter(|n| (1..=max_n).contains(n)) {
            Some(n) => n,
            None => return bad(&format!("n must be between 1 and {max_n} for {model}")),
        },
    };
    let format = match body.get("response_format") {
        None => "url",
        Some(f) if model == "gpt-image-1" => {
            let _ = f;
            return bad("Unknown parameter: 'response_format'.");
        }
        Some(f) => match f.as_str() {
            Some("url") => "url",
            Some("b64_json") => "b64_json",
            _ => return bad("response_format must be url or b64_json"),
        },
    };
    let urls = model != "gpt-image-1" && (format == "url" || image_urls);
    let data: Vec<Value> = (0..n)
        .map(|i| {
            if urls {
                json!({"url": format!("{own}/files/img-{i}.png"), "revised_prompt": prompt})
            } else {
                json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(PNG)})
            }
        })
        .collect();
    Reply::Respond(Response::json(
        200,
        &json!({"created": 1_700_000_000, "data": data}),
    ))
}
