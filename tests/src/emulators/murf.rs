//! An in-process emulator of Murf's text-to-speech API, written from
//! `shared/contracts/seed-services.md` section 1.
//!
//! It is strict where the contract is precise:
//!
//! - every API request needs the `api-key` header with the emulator's key (403 otherwise);
//! - `POST /v1/speech/generate` and `POST /v1/speech/stream` need a JSON body (400 otherwise)
//!   with `text` (1 to [`MAX_TEXT_CHARS`] characters) and a known `voiceId`; `format` is one
//!   of MP3, WAV, FLAC, ALAW, ULAW, PCM, OGG; `sampleRate` one of 8000, 24000, 44100, 48000
//!   (and 16000 when streaming); `channelType` MONO or STEREO; `rate` and `pitch` integers
//!   from -50 to 50; `style` one of the voice's styles; `locale` one the voice speaks;
//!   `modelVersion` GEN2; streaming `model` FALCON or GEN2;
//! - audio lasts [`MILLIS_PER_CHAR`] per character, sped up or slowed by `rate` percent;
//! - generate answers `{audioFile, audioLengthInSeconds, consumedCharacterCount,
//!   remainingCharacterCount, wordDurations}`; the file is served at `audioFile` without a
//!   key, as a presigned URL is; with `encodeAsBase64` the audio comes in `encodedAudio`
//!   instead and no file is kept;
//! - stream answers the audio as chunked bytes;
//! - a character quota (see [`MurfEmulator::set_quota`]) answers 402 once spent;
//! - `GET /v1/speech/voices` lists [`VOICES`].
//!
//! Faults are scripted with [`MurfEmulator::fail_next`], [`MurfEmulator::fail_next_download`]
//! and [`MurfEmulator::hang_next`];
//! every request is recorded.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use launcher_sdk::media::{SampleFormat, WavSpec};
use serde_json::{Value, json};

use crate::http::{HttpServer, Reply, Request, Response, StreamBody};
use crate::media::{flac_header, mp3_silence, tone};

/// The generate path.
pub const GENERATE_PATH: &str = "/v1/speech/generate";
/// The streaming path.
pub const STREAM_PATH: &str = "/v1/speech/stream";
/// The voice list path.
pub const VOICES_PATH: &str = "/v1/speech/voices";
/// Where generated files are served.
pub const AUDIO_PREFIX: &str = "/audio/";

/// How long the emulated voice takes per character at rate 0.
pub const MILLIS_PER_CHAR: u64 = 10;

/// The most characters one request may carry (an assumption of the adapter; the contract
/// gives no number).
pub const MAX_TEXT_CHARS: usize = 3000;

/// A voice the emulator offers.
#[derive(Debug, Clone, Copy)]
pub struct EmulatedVoice {
    /// The voice id, e.g. `en-US-natalie`.
    pub id: &'static str,
    /// The display name.
    pub name: &'static str,
    /// Its own locale.
    pub locale: &'static str,
    /// `Male` or `Female`.
    pub gender: &'static str,
    /// The styles it speaks in.
    pub styles: &'static [&'static str],
    /// Every locale it speaks, its own included.
    pub locales: &'static [&'static str],
}

/// The voices.
pub const VOICES: &[EmulatedVoice] = &[
    EmulatedVoice {
        id: "en-US-natalie",
        name: "Natalie",
        locale: "en-US",
        gender: "Female",
        styles: &["Promo", "Narration", "Conversational"],
        locales: &["en-US", "zh-CN", "fr-FR"],
    },
    EmulatedVoice {
        id: "en-US-terrell",
        name: "Terrell",
        locale: "en-US",
        gender: "Male",
        styles: &["Inspirational", "Conversational"],
        locales: &["en-US"],
    },
    EmulatedVoice {
        id: "zh-CN-tao",
        name: "Tao",
        locale: "zh-CN",
        gender: "Male",
        styles: &["Conversational", "Calm"],
        locales: &["zh-CN", "en-US"],
    },
    EmulatedVoice {
        id: "en-UK-hazel",
        name: "Hazel",
        locale: "en-UK",
        gender: "Female",
        styles: &["Conversational"],
        locales: &["en-UK"],
    },
];

/// Bytes of audio per streamed chunk.
const STREAM_CHUNK: usize = 16 * 1024;

enum Fault {
    Status(u16, String),
    Hang,
}

struct State {
    key: String,
    faults: Mutex<VecDeque<Fault>>,
    download_faults: Mutex<VecDeque<u16>>,
    files: Mutex<HashMap<String, (String, Vec<u8>)>>,
    /// Characters left; `None` is unlimited.
    quota: Mutex<Option<u64>>,
    base: Mutex<String>,
}

/// A running emulator; stops when dropped.
pub struct MurfEmulator {
    server: HttpServer,
    state: Arc<State>,
}

impl MurfEmulator {
    /// Starts an emulator that accepts API key `key`.
    pub fn start(key: &str) -> MurfEmulator {
        let state = Arc::new(State {
            key: key.to_string(),
            faults: Mutex::new(VecDeque::new()),
            download_faults: Mutex::new(VecDeque::new()),
            files: Mutex::new(HashMap::new()),
            quota: Mutex::new(None),
            base: Mutex::new(String::new()),
        });
        let handler_state = Arc::clone(&state);
        let server = HttpServer::start(move |req| handle(&handler_state, req));
        *lock(&state.base) = server.url();
        MurfEmulator { server, state }
    }

    /// Returns the base URL to use in place of `https://api.murf.ai`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Returns every request received, in order, faulted ones included.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Returns the requests to `path` (without query), in order.
    pub fn requests_to(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| path_of(r) == path)
            .collect()
    }

    /// Returns the JSON bodies of the synthesis requests (generate and stream), in order.
    pub fn bodies(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| matches!(path_of(r), GENERATE_PATH | STREAM_PATH))
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    /// Returns how many generated files the emulator still keeps.
    pub fn kept_files(&self) -> usize {
        lock(&self.state.files).len()
    }

    /// Gives the account `characters` more to spend; past it, synthesis answers 402.
    pub fn set_quota(&self, characters: u64) {
        *lock(&self.state.quota) = Some(characters);
    }

    /// Makes the next request fail with `status` and a JSON error saying `message`.
    pub fn fail_next(&self, status: u16, message: &str) {
        lock(&self.state.faults).push_back(Fault::Status(status, message.to_string()));
    }

    /// Makes the next fetch of a generated file fail with `status`, as a storage host may.
    pub fn fail_next_download(&self, status: u16) {
        lock(&self.state.download_faults).push_back(status);
    }

    /// Makes the next request go unanswered until the emulator is dropped.
    pub fn hang_next(&self) {
        lock(&self.state.faults).push_back(Fault::Hang);
    }
}

/// Returns how long the emulator speaks `text` at `rate` percent, in milliseconds.
pub fn spoken_millis(text: &str, rate: i64) -> u64 {
    let speed = 1.0 + rate as f64 / 100.0;
    (text.chars().count() as f64 * MILLIS_PER_CHAR as f64 / speed).round() as u64
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn path_of(req: &Request) -> &str {
    req.path.split('?').next().unwrap_or_default()
}

fn error(status: u16, message: &str) -> Reply {
    Reply::Respond(Response::json(
        status,
        &json!({"errorMessage": message, "errorCode": status}),
    ))
}

fn handle(state: &State, req: &Request) -> Reply {
    if let Some(fault) = lock(&state.faults).pop_front() {
        return match fault {
            Fault::Status(status, message) => error(status, &message),
            Fault::Hang => Reply::Hang,
        };
    }
    let path = path_of(req);
    if let Some(name) = path.strip_prefix(AUDIO_PREFIX) {
        // A presigned URL: no key needed.
        if let Some(status) = lock(&state.download_faults).pop_front() {
            return Reply::Respond(Response::text(status, "SlowDown"));
        }
        return match lock(&state.files).get(name) {
            Some((media_type, bytes)) if req.method == "GET" => Reply::Respond(
                Response::new(200)
                    .header("Content-Type", media_type.as_str())
                    .body(bytes.clone()),
            ),
            _ => Reply::Respond(Response::text(404, "NoSuchKey")),
        };
    }
    if req.header("api-key") != Some(state.key.as_str()) {
        return error(403, "Invalid or expired api-key");
    }
    match (req.method.as_str(), path) {
        ("GET", VOICES_PATH) => Reply::Respond(Response::json(200, &voices_json())),
        ("POST", GENERATE_PATH) => synthesize(state, req, false),
        ("POST", STREAM_PATH) => synthesize(state, req, true),
        (_, VOICES_PATH | GENERATE_PATH | STREAM_PATH) => error(405, "Method not allowed"),
        _ => error(404, "Not found"),
    }
}

/// Returns the voice list as the service sends it.
pub fn voices_json() -> Value {
    Value::Array(
        VOICES
            .iter()
            .map(|v| {
                let (id, name, locale, gender) = (v.id, v.name, v.locale, v.gender);
                let (styles, locales) = (v.styles, v.locales);
                json!({
                    "voiceId": id,
                    "displayName": format!("{name} ({gender})"),
                    "locale": locale,
                    "accent": locale,
                    "gender": gender,
                    "availableStyles": styles,
                    "supportedLocales": locales
                        .iter()
                        .map(|l| (l.to_string(), json!({"detail": l})))
                        .collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect(),
    )
}

/// A request that passed the checks.
struct Speech {
    millis: u64,
    characters: u64,
    format: String,
    sample_rate: u32,
    channels: u16,
    base64: bool,
}

fn check(body: &Value, stream: bool) -> Result<Speech, String> {
    let text = body["text"].as_str().ok_or("text is required")?;
    let characters = text.chars().count();
    if text.trim().is_empty() || characters > MAX_TEXT_CHARS {
        return Err(format!(
            "text must have 1 to {MAX_TEXT_CHARS} characters, not {characters}"
        ));
    }
    let voice_id = body["voiceId"].as_str().ok_or("voiceId is required")?;
    let voice = VOICES
        .iter()
        .find(|v| v.id == voice_id)
        .ok_or_else(|| format!("Invalid voice_id: {voice_id}"))?;
    let format = body["format"].as_str().unwrap_or("MP3");
    if !["MP3", "WAV", "FLAC", "ALAW", "ULAW", "PCM", "OGG"].contains(&format) {
        return Err(format!("Invalid format: {format}"));
    }
    let rates: &[u64] = if stream {
        &[8000, 16_000, 24_000, 44_100, 48_000]
    } else {
        &[8000, 24_000, 44_100, 48_000]
    };
    let default_rate = if stream { 24_000 } else { 44_100 };
    let sample_rate = match &body["sampleRate"] {
        Value::Null => default_rate,
        v => v
            .as_u64()
            .filter(|r| rates.contains(r))
            .ok_or_else(|| format!("Invalid sampleRate: {v}"))?,
    };
    let channels = match body["channelType"].as_str() {
        None | Some("MONO") => 1,
        Some("STEREO") => 2,
        Some(other) => return Err(format!("Invalid channelType: {other}")),
    };
    let mut rate = 0;
    for name in ["rate", "pitch"] {
        match &body[name] {
            Value::Null => {}
            v => {
                let n = v
                    .as_i64()
                    .filter(|n| (-50..=50).contains(n))
                    .ok_or_else(|| format!("{name} must be an integer from -50 to 50"))?;
                if name == "rate" {
                    rate = n;
                }
            }
        }
    }
    if let Some(style) = body["style"].as_str()
        && !voice.styles.contains(&style)
    {
        return Err(format!("Style {style} is not available for {voice_id}"));
    }
    if let Some(locale) = body["locale"].as_str()
        && !voice.locales.contains(&locale)
    {
        return Err(format!("Locale {locale} is not supported by {voice_id}"));
    }
    if let Some(version) = body.get("modelVersion")
        && version != "GEN2"
    {
        return Err(format!("Invalid modelVersion: {version}"));
    }
    if let Some(model) = body.get("model")
        && !(stream && (model == "FALCON" || model == "GEN2"))
    {
        return Err(format!("Invalid model: {model}"));
    }
    let base64 = match &body["encodeAsBase64"] {
        Value::Null => false,
        Value::Bool(b) if !stream => *b,
        other => return Err(format!("Invalid encodeAsBase64: {other}")),
    };
    Ok(Speech {
        millis: spoken_millis(text, rate),
        characters: characters as u64,
        format: format.to_string(),
        sample_rate: sample_rate as u32,
        channels,
        base64,
    })
}

/// Returns the audio for a checked request and its media type and extension.
fn render(speech: &Speech) -> (&'static str, &'static str, Vec<u8>) {
    let rate = speech.sample_rate;
    let mono = tone(rate, speech.millis);
    let samples: Vec<u8> = if speech.channels == 2 {
        mono.chunks(2)
            .flat_map(|s| [s[0], s[1], s[0], s[1]])
            .collect()
    } else {
        mono
    };
    let frames = (u64::from(rate) * speech.millis / 1000) as usize * usize::from(speech.channels);
    match speech.format.as_str() {
        "WAV" => {
            let spec = WavSpec {
                sample_rate: rate,
                channels: speech.channels,
                bits_per_sample: 16,
                format: SampleFormat::Int,
            };
            let mut wav = spec.header(samples.len() as u64).expect("a valid spec");
            wav.extend_from_slice(&samples);
            ("audio/wav", "wav", wav)
        }
        "PCM" => ("audio/pcm", "pcm", samples),
        "ALAW" => ("audio/basic", "alaw", vec![0xD5; frames]),
        "ULAW" => ("audio/basic", "ulaw", vec![0xFF; frames]),
        "FLAC" => ("audio/flac", "flac", flac_header(rate, speech.millis)),
        "OGG" => (
            "audio/ogg",
            "ogg",
            crate::emulators::azure::ogg_opus(rate, speech.millis),
        ),
        _ => {
            // MPEG audio has no 8 kHz without MPEG-2.5.
            let rate = if rate < 16_000 { 16_000 } else { rate };
            ("audio/mpeg", "mp3", mp3_silence(rate, 64, speech.millis))
        }
    }
}

fn synthesize(state: &State, req: &Request, stream: bool) -> Reply {
    let json_body = req
        .header("Content-Type")
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        return error(400, "Content-Type must be application/json");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return error(400, "The body is not valid JSON");
    };
    let speech = match check(&body, stream) {
        Ok(speech) => speech,
        Err(message) => return error(400, &message),
    };
    let remaining = {
        let mut quota = lock(&state.quota);
        match quota.as_mut() {
            Some(left) if *left < speech.characters => {
                return error(402, "Character quota exhausted; upgrade your plan");
            }
            Some(left) => {
                *left -= speech.characters;
                *left
            }
            None => 1_000_000,
        }
    };
    let (media_type, extension, audio) = render(&speech);
    if stream {
        let body = StreamBody::new(move |chunks| {
            for piece in audio.chunks(STREAM_CHUNK) {
                chunks.send(piece)?;
            }
            Ok(())
        });
        return Reply::Stream(Response::new(200).header("Content-Type", media_type), body);
    }
    let mut answer = json!({
        "audioLengthInSeconds": speech.millis as f64 / 1000.0,
        "consumedCharacterCount": speech.characters,
        "remainingCharacterCount": remaining,
        "wordDurations": [],
    });
    if speech.base64 {
        answer["encodedAudio"] = json!(base64::engine::general_purpose::STANDARD.encode(&audio));
        answer["audioFile"] = json!("");
    } else {
        let mut files = lock(&state.files);
        let name = format!("{}-{}.{extension}", files.len() + 1, speech.characters);
        answer["audioFile"] = json!(format!("{}{AUDIO_PREFIX}{name}", lock(&state.base)));
        files.insert(name, (media_type.to_string(), audio));
    }
    Reply::Respond(Response::json(200, &answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_voice_speaks_its_own_locale() {
        for voice in VOICES {
            assert!(voice.locales.contains(&voice.locale), "{}", voice.id);
        }
        let listed = voices_json();
        assert_eq!(listed[0]["voiceId"], "en-US-natalie");
        assert!(listed[2]["supportedLocales"]["zh-CN"].is_object());
    }

    #[test]
    fn checks_fields_as_the_contract_gives_them() {
        let ok = json!({"text": "Hi", "voiceId": "en-US-natalie", "format": "WAV",
                        "sampleRate": 24000, "rate": -10, "style": "Promo", "locale": "zh-CN"});
        let speech = check(&ok, false).unwrap();
        assert_eq!(speech.millis, spoken_millis("Hi", -10));
        for (field, value) in [
            ("voiceId", json!("nobody")),
            ("format", json!("wav")),
            ("sampleRate", json!(16000)),
            ("rate", json!(60)),
            ("style", json!("Angry")),
            ("locale", json!("de-DE")),
            ("channelType", json!("QUAD")),
            ("model", json!("FALCON")),
        ] {
            let mut bad = ok.clone();
            bad[field] = value;
            assert!(check(&bad, false).is_err(), "{field}");
        }
        let mut streamed = ok.clone();
        streamed["sampleRate"] = json!(16000);
        streamed["model"] = json!("FALCON");
        assert!(check(&streamed, true).is_ok());
        let long = json!({"text": "a".repeat(MAX_TEXT_CHARS + 1), "voiceId": "en-US-natalie"});
        assert!(check(&long, false).is_err());
    }
}
