//! An in-process emulator of ElevenLabs text-to-speech, written from
//! `shared/contracts/services.md` section 7.
//!
//! It is strict where the contract is precise, so an adapter that drifts fails here:
//!
//! - every request needs `xi-api-key` with the emulator's key (401 `invalid_api_key`);
//! - synthesis (`POST /v1/text-to-speech/{voice_id}` and `…/stream`) needs
//!   `Content-Type: application/json`, a JSON object body with a non-empty `text` and no
//!   fields the contract does not list, a known `model_id`, voice settings in range, a
//!   two-letter `language_code`, at most [`MAX_CHARS`] characters, a known `output_format`
//!   in the query (422 `{"detail":[{"loc","msg","type"}]}` otherwise), and a voice of the
//!   account (404 `voice_not_found`);
//! - each request spends its characters from a quota ([`ElevenLabsEmulator::set_quota`]);
//!   one that needs more than is left gets 401 `quota_exceeded`;
//! - audio lasts [`MILLIS_PER_CHAR`] per character, divided by `voice_settings.speed`: MP3
//!   frames for `mp3_*`, headerless 16-bit samples for `pcm_*`, one byte a sample for
//!   `ulaw_8000`/`alaw_8000`; the streaming endpoint sends it in several chunks, a moment
//!   apart, as the service does while it speaks;
//! - `GET /v1/voices` and `GET /v1/models` list what the account has.
//!
//! Faults are scripted with [`ElevenLabsEmulator::fail_next`], and every request is recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};

use crate::http::{Chunks, HttpServer, Reply, Request, Response, StreamBody};
use crate::media::{mp3_silence, tone};

/// How long the emulated voice takes per character, at speed 1.
pub const MILLIS_PER_CHAR: u64 = 30;

/// The most characters one synthesis request may carry (`eleven_multilingual_v2`'s limit).
pub const MAX_CHARS: usize = 10_000;

/// The voices of the emulated account: (id, name, category, language label).
pub const VOICES: &[(&str, &str, &str, Option<&str>)] = &[
    ("21m00Tcm4TlvDq8ikWAM", "Rachel", "premade", None),
    ("pNInz6obpgDQGcFmaJgB", "Adam", "premade", None),
    ("XB0fDUnXU5powFXDhCwa", "Charlotte", "premade", None),
    ("zhLinCloned000000001", "Lin", "cloned", Some("zh")),
];

/// The models of the emulated service: (id, text-to-speech, languages).
const MODELS: &[(&str, bool, &[&str])] = &[
    (
        "eleven_multilingual_v2",
        true,
        &["en", "zh", "ja", "de", "fr"],
    ),
    (
        "eleven_flash_v2_5",
        true,
        &["en", "zh", "ja", "de", "fr", "vi"],
    ),
    (
        "eleven_turbo_v2_5",
        true,
        &["en", "zh", "ja", "de", "fr", "vi"],
    ),
    ("eleven_monolingual_v1", true, &["en"]),
    ("eleven_english_sts_v2", false, &["en"]),
];

/// Every `output_format` the contract lists.
const OUTPUT_FORMATS: &[&str] = &[
    "mp3_22050_32",
    "mp3_44100_32",
    "mp3_44100_64",
    "mp3_44100_96",
    "mp3_44100_128",
    "mp3_44100_192",
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_44100",
    "pcm_48000",
    "ulaw_8000",
    "alaw_8000",
    "opus_48000_32",
    "opus_48000_64",
    "opus_48000_96",
    "opus_48000_128",
    "opus_48000_192",
];

/// The body fields the contract lists.
const BODY_FIELDS: &[&str] = &[
    "text",
    "model_id",
    "language_code",
    "voice_settings",
    "pronunciation_dictionary_locators",
    "seed",
    "previous_text",
    "next_text",
    "previous_request_ids",
    "next_request_ids",
    "apply_text_normalization",
];

/// How many chunks the streaming endpoint sends the audio in.
const STREAM_CHUNKS: usize = 4;

/// A scripted failure: status, body, extra headers.
struct Fault {
    status: u16,
    body: Value,
    headers: Vec<(String, String)>,
}

struct State {
    key: String,
    quota: Mutex<Option<u64>>,
    faults: Mutex<VecDeque<Fault>>,
}

/// A running emulator; stops when dropped.
pub struct ElevenLabsEmulator {
    server: HttpServer,
    state: Arc<State>,
}

impl ElevenLabsEmulator {
    /// Starts an emulator that accepts API key `key`, with no quota limit.
    pub fn start(key: &str) -> ElevenLabsEmulator {
        let state = Arc::new(State {
            key: key.to_string(),
            quota: Mutex::new(None),
            faults: Mutex::new(VecDeque::new()),
        });
        let handler_state = Arc::clone(&state);
        let server = HttpServer::start(move |req| handle(&handler_state, req));
        ElevenLabsEmulator { server, state }
    }

    /// Returns the base URL to use in place of `https://api.elevenlabs.io`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Returns every request received, in order, faulted ones included.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Returns the synthesis requests received, in order.
    pub fn synthesis_requests(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| path_of(r).starts_with("/v1/text-to-speech/"))
            .collect()
    }

    /// Leaves `characters` of quota; a request needing more is refused with 401
    /// `quota_exceeded`.
    pub fn set_quota(&self, characters: u64) {
        *lock(&self.state.quota) = Some(characters);
    }

    /// Makes the next request (of any kind) fail with `status` and the service's error body
    /// `{"detail": {"status": detail_status, "message": …}}`, plus `headers`. Faults queue up
    /// in order.
    pub fn fail_next(&self, status: u16, detail_status: &str, headers: &[(&str, &str)]) {
        let body = json!({"detail": {"status": detail_status, "message": format!("emulated {detail_status}")}});
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        lock(&self.state.faults).push_back(Fault {
            status,
            body,
            headers,
        });
    }
}

/// Returns the text of a synthesis request's body, for tests.
pub fn spoken_text(req: &Request) -> String {
    serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|b| b["text"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Returns the query parameter `name` of a request.
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    let query = req.path.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| v.to_string())
    })
}

/// Returns how long the emulator speaks a request's text, in milliseconds.
pub fn expected_millis(req: &Request) -> u64 {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let chars = body["text"].as_str().unwrap_or_default().chars().count() as f64;
    let speed = body["voice_settings"]["speed"].as_f64().unwrap_or(1.0);
    (chars * MILLIS_PER_CHAR as f64 / speed).round() as u64
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn path_of(req: &Request) -> &str {
    req.path.split('?').next().unwrap_or_default()
}

fn detail(status: u16, code: &str, message: &str) -> Reply {
    Reply::Respond(Response::json(
        status,
        &json!({"detail": {"status": code, "message": message}}),
    ))
}

fn invalid(loc: &[&str], msg: &str, kind: &str) -> Reply {
    Reply::Respond(Response::json(
        422,
        &json!({"detail": [{"loc": loc, "msg": msg, "type": kind}]}),
    ))
}

fn handle(state: &State, req: &Request) -> Reply {
    if let Some(fault) = lock(&state.faults).pop_front() {
        let mut response = Response::json(fault.status, &fault.body);
        response.headers.extend(fault.headers);
        return Reply::Respond(response);
    }
    if req.header("xi-api-key") != Some(state.key.as_str()) {
        return detail(401, "invalid_api_key", "Invalid API key");
    }
    let path = path_of(req);
    match (req.method.as_str(), path) {
        ("GET", "/v1/voices") => Reply::Respond(Response::json(200, &voices_json())),
        ("GET", "/v1/models") => Reply::Respond(Response::json(200, &models_json())),
        ("POST", _) if path.starts_with("/v1/text-to-speech/") => {
            let rest = &path["/v1/text-to-speech/".len()..];
            let (voice, stream) = match rest.strip_suffix("/stream") {
                Some(voice) => (voice, true),
                None => (rest, false),
            };
            synthesize(state, req, voice, stream)
        }
        (_, "/v1/voices" | "/v1/models") => Reply::Respond(Response::json(
            405,
            &json!({"detail": "Method Not Allowed"}),
        )),
        _ => Reply::Respond(Response::json(404, &json!({"detail": "Not Found"}))),
    }
}

fn voices_json() -> Value {
    let voices: Vec<Value> = VOICES
        .iter()
        .map(|(id, name, category, language)| {
            let mut labels = json!({"accent": "american", "gender": "female", "age": "young"});
            if let Some(language) = language {
                labels["language"] = json!(language);
            }
            json!({"voice_id": id, "name": name, "category": category, "labels": labels})
        })
        .collect();
    json!({ "voices": voices })
}

fn models_json() -> Value {
    let models: Vec<Value> = MODELS
        .iter()
        .map(|(id, tts, languages)| {
            json!({
                "model_id": id,
                "name": id.replace('_', " "),
                "can_do_text_to_speech": tts,
                "max_characters_request_free_user": 2500,
                "max_characters_request_subscribed_user": MAX_CHARS,
                "languages": languages.iter().map(|l| json!({"language_id": l, "name": l})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Value::Array(models)
}

/// Checks a number in `voice_settings` or the body.
fn in_range(body: &Value, loc: &[&str], min: f64, max: f64) -> Result<(), Reply> {
    let mut value = body;
    for key in &loc[1..] {
        value = &value[*key];
    }
    match value {
        Value::Null => Ok(()),
        Value::Number(n) if n.as_f64().is_some_and(|v| (min..=max).contains(&v)) => Ok(()),
        _ => Err(invalid(
            loc,
            &format!("Input should be a number from {min} to {max}"),
            "value_error",
        )),
    }
}

fn synthesize(state: &State, req: &Request, voice: &str, stream: bool) -> Reply {
    let json_body = req
        .header("Content-Type")
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json_body {
        return invalid(
            &["body"],
            "Input should be a valid JSON object",
            "model_attributes_type",
        );
    }
    let format = query_param(req, "output_format").unwrap_or_else(|| "mp3_44100_128".to_string());
    if !OUTPUT_FORMATS.contains(&format.as_str()) {
        return invalid(
            &["query", "output_format"],
            "Input should be one of the listed output formats",
            "enum",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return invalid(&["body"], "JSON decode error", "json_invalid");
    };
    let Some(fields) = body.as_object() else {
        return invalid(&["body"], "Input should be a valid dictionary", "dict_type");
    };
    if let Some(extra) = fields.keys().find(|k| !BODY_FIELDS.contains(&k.as_str())) {
        return invalid(
            &["body", extra],
            "Extra inputs are not permitted",
            "extra_forbidden",
        );
    }
    let text = match body["text"].as_str() {
        Some(text) if !text.trim().is_empty() => text,
        _ => return invalid(&["body", "text"], "Field required", "missing"),
    };
    let model = body["model_id"]
        .as_str()
        .unwrap_or("eleven_multilingual_v2");
    if !MODELS.iter().any(|(id, tts, _)| *id == model && *tts) {
        return detail(
            400,
            "model_not_found",
            &format!("A model with model ID {model} does not exist or cannot speak text."),
        );
    }
    let checks = [
        in_range(&body, &["body", "voice_settings", "stability"], 0.0, 1.0),
        in_range(
            &body,
            &["body", "voice_settings", "similarity_boost"],
            0.0,
            1.0,
        ),
        in_range(&body, &["body", "voice_settings", "style"], 0.0, 1.0),
        in_range(&body, &["body", "voice_settings", "speed"], 0.7, 1.2),
        in_range(&body, &["body", "seed"], 0.0, 4_294_967_295.0),
    ];
    if let Some(Err(reply)) = checks.into_iter().find(Result::is_err) {
        return reply;
    }
    if let Some(code) = body.get("language_code") {
        let ok = code
            .as_str()
            .is_some_and(|c| c.len() == 2 && c.chars().all(|ch| ch.is_ascii_lowercase()));
        if !ok {
            return invalid(
                &["body", "language_code"],
                "Input should be an ISO 639-1 code",
                "value_error",
            );
        }
    }
    for key in ["previous_text", "next_text"] {
        if body.get(key).is_some_and(|v| !v.is_string()) {
            return invalid(
                &["body", key],
                "Input should be a valid string",
                "string_type",
            );
        }
    }
    let chars = text.chars().count();
    if chars > MAX_CHARS {
        return detail(
            400,
            "max_character_limit_exceeded",
            &format!("Text is too long: {chars} characters, the limit is {MAX_CHARS}."),
        );
    }
    if !VOICES.iter().any(|(id, ..)| *id == voice) {
        return detail(
            404,
            "voice_not_found",
            &format!("A voice with voice_id {voice} was not found."),
        );
    }
    {
        let mut quota = lock(&state.quota);
        if let Some(left) = quota.as_mut() {
            if (chars as u64) > *left {
                return detail(
                    401,
                    "quota_exceeded",
                    &format!(
                        "This request exceeds your quota of 10000. You have {left} credits remaining, while {chars} credits are required for this request."
                    ),
                );
            }
            *left -= chars as u64;
        }
    }
    let millis = expected_millis(req).max(50);
    let (media_type, audio) = render(&format, millis);
    if !stream {
        return Reply::Respond(
            Response::new(200)
                .header("Content-Type", media_type)
                .body(audio),
        );
    }
    let chunk = audio.len().div_ceil(STREAM_CHUNKS).max(1);
    let writer = StreamBody::new(move |out: &mut Chunks<'_>| {
        for piece in audio.chunks(chunk) {
            out.send(piece)?;
            out.pause(Duration::from_millis(20))?;
        }
        Ok(())
    });
    Reply::Stream(
        Response::new(200).header("Content-Type", media_type),
        writer,
    )
}

/// Returns the media type and bytes of `millis` of audio in `format`.
fn render(format: &str, millis: u64) -> (&'static str, Vec<u8>) {
    let mut parts = format.split('_');
    let codec = parts.next().unwrap_or_default();
    let rate: u32 = parts.next().and_then(|r| r.parse().ok()).unwrap_or(44_100);
    let kbps: u32 = parts.next().and_then(|k| k.parse().ok()).unwrap_or(128);
    match codec {
        "mp3" => ("audio/mpeg", mp3_silence(rate, kbps, millis)),
        "pcm" => ("audio/pcm", tone(rate, millis)),
        // One byte a sample; 0xFF is silence in µ-law, 0xD5 in A-law.
        "ulaw" => ("audio/basic", vec![0xFF; (8 * millis) as usize]),
        "alaw" => ("audio/alaw", vec![0xD5; (8 * millis) as usize]),
        // Not a playable stream: tests only check that Opus passes through as it came.
        _ => ("audio/ogg", [b"OggS".as_slice(), &[0; 60]].concat()),
    }
}
