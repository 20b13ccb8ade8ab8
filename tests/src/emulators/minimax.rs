//! An in-process emulator of MiniMax text-to-speech (`POST /v1/t2a_v2`), written from
//! `shared/contracts/seed-services.md` section 18c.
//!
//! It is strict where the contract is precise:
//!
//! - failures come as HTTP 200 with a non-zero `base_resp.status_code`, as the service sends
//!   them: 1004 for a missing or wrong `Authorization: Bearer` key (or a missing `GroupId`
//!   when the emulator was started with one), 2013 for a body that is not JSON or has a
//!   missing or out-of-range field (model, text of 1 to 10,000 characters, voice id, speed,
//!   vol, pitch, emotion, sample rate, bit rate, format, channel, `output_format` other than
//!   hex, WAV asked for in streaming mode);
//! - audio comes back **hex-encoded** in `data.audio`, in the requested format, lasting
//!   [`MILLIS_PER_CHAR`] per character divided by the speed; `extra_info.audio_length` says
//!   how long in milliseconds;
//! - `stream: true` answers with server-sent events, one `data:` line of JSON per chunk of
//!   hex audio (`data.status` 1), then a last event (`status` 2) that repeats the **whole**
//!   audio with `extra_info`, as the service does.
//!
//! Faults are scripted with [`MiniMaxEmulator::fail_next`] (a 200 with an error code, e.g.
//! 1002 rate limit, 1008 balance, 1026 sensitive content), [`MiniMaxEmulator::fail_next_http`]
//! and [`MiniMaxEmulator::hang_next`]; every request is recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use launcher_sdk::media::{SampleFormat, WavSpec};
use serde_json::{Value, json};

use crate::http::{HttpServer, Reply, Request, Response, StreamBody};
use crate::media::{flac_header, hex, mp3_silence, tone};

/// The synthesis path.
pub const T2A_PATH: &str = "/v1/t2a_v2";

/// How long the emulated voice takes per character, at speed 1.
pub const MILLIS_PER_CHAR: u64 = 10;

/// The most characters one request may carry.
pub const MAX_TEXT_CHARS: usize = 10_000;

/// The models the emulator knows.
pub const MODELS: &[&str] = &[
    "speech-2.8-hd",
    "speech-2.8-turbo",
    "speech-2.6-hd",
    "speech-2.6-turbo",
    "speech-02-hd",
    "speech-02-turbo",
    "speech-01-hd",
    "speech-01-turbo",
];

/// The voices the emulator knows.
pub const VOICES: &[&str] = &[
    "male-qn-qingse",
    "female-shaonv",
    "presenter_male",
    "audiobook_female_1",
    "English_Graceful_Lady",
];

const EMOTIONS: &[&str] = &[
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgusted",
    "surprised",
    "calm",
    "fluent",
    "whisper",
];

/// Bytes of audio per streamed chunk.
const STREAM_CHUNK: usize = 16 * 1024;

enum Fault {
    Code(i64, String),
    Http(u16),
    Hang,
}

struct State {
    key: String,
    group_id: Option<String>,
    faults: Mutex<VecDeque<Fault>>,
}

/// A running emulator; stops when dropped.
pub struct MiniMaxEmulator {
    server: HttpServer,
    state: Arc<State>,
}

impl MiniMaxEmulator {
    /// Starts an emulator that accepts API key `key`.
    pub fn start(key: &str) -> MiniMaxEmulator {
        Self::start_with(key, None)
    }

    /// Starts an emulator that also wants `?GroupId=group_id`, as older accounts do.
    pub fn start_with_group(key: &str, group_id: &str) -> MiniMaxEmulator {
        Self::start_with(key, Some(group_id.to_string()))
    }

    fn start_with(key: &str, group_id: Option<String>) -> MiniMaxEmulator {
        let state = Arc::new(State {
            key: key.to_string(),
            group_id,
            faults: Mutex::new(VecDeque::new()),
        });
        let handler_state = Arc::clone(&state);
        let server = HttpServer::start(move |req| handle(&handler_state, req));
        MiniMaxEmulator { server, state }
    }

    /// Returns the base URL to use in place of `https://api.minimax.io`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Returns every request received, in order, faulted ones included.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Returns the JSON bodies of the synthesis requests received, in order.
    pub fn bodies(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| path_of(r) == T2A_PATH)
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    /// Makes the next request fail as the service fails: HTTP 200 with `base_resp`
    /// `status_code` and `status_msg`. Faults queue up in order.
    pub fn fail_next(&self, status_code: i64, status_msg: &str) {
        lock(&self.state.faults).push_back(Fault::Code(status_code, status_msg.to_string()));
    }

    /// Makes the next request fail with HTTP `status` (a gateway error, say).
    pub fn fail_next_http(&self, status: u16) {
        lock(&self.state.faults).push_back(Fault::Http(status));
    }

    /// Makes the next request go unanswered until the emulator is dropped.
    pub fn hang_next(&self) {
        lock(&self.state.faults).push_back(Fault::Hang);
    }
}

/// Returns how long the emulator speaks `text` at `speed`, in milliseconds.
pub fn spoken_millis(text: &str, speed: f64) -> u64 {
    (text.chars().count() as f64 * MILLIS_PER_CHAR as f64 / speed).round() as u64
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn path_of(req: &Request) -> &str {
    req.path.split('?').next().unwrap_or_default()
}

fn query_value<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    let query = req.path.split_once('?')?.1;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

const TRACE_ID: &str = "0123456789abcdef0123456789abcdef";

/// A failure as the service sends it: HTTP 200, a JSON body with `base_resp`.
fn refusal(status_code: i64, status_msg: &str) -> Reply {
    Reply::Respond(Response::json(
        200,
        &json!({
            "trace_id": TRACE_ID,
            "base_resp": {"status_code": status_code, "status_msg": status_msg},
        }),
    ))
}

fn invalid(why: &str) -> Reply {
    refusal(2013, &format!("invalid params, {why}"))
}

fn handle(state: &State, req: &Request) -> Reply {
    if let Some(fault) = lock(&state.faults).pop_front() {
        return match fault {
            Fault::Code(code, msg) => refusal(code, &msg),
            Fault::Http(status) => Reply::Respond(Response::text(status, "emulated fault")),
            Fault::Hang => Reply::Hang,
        };
    }
    if path_of(req) != T2A_PATH {
        return Reply::Respond(Response::text(404, "404 page not found"));
    }
    if req.method != "POST" {
        return Reply::Respond(Response::text(405, "method not allowed"));
    }
    let bearer = req
        .header("Authorization")
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(state.key.as_str()) {
        return refusal(
            1004,
            "login fail: Please carry the API secret key in the 'Authorization' field of the \
             request header",
        );
    }
    if let Some(group) = &state.group_id
        && query_value(req, "GroupId") != Some(group.as_str())
    {
        return refusal(1004, "login fail: GroupId does not match the key");
    }
    let json_body = req
        .header("Content-Type")
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        return invalid("Content-Type must be application/json");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return invalid("the body is not JSON");
    };
    match check(&body) {
        Ok(speech) => speak(&speech),
        Err(why) => invalid(&why),
    }
}

/// A request that passed the checks.
struct Speech {
    millis: u64,
    characters: usize,
    sample_rate: u32,
    bitrate: u32,
    format: String,
    channels: u16,
    stream: bool,
}

fn check(body: &Value) -> Result<Speech, String> {
    let model = body["model"].as_str().ok_or("model is required")?;
    if !MODELS.contains(&model) {
        return Err(format!("unknown model {model}"));
    }
    let text = body["text"].as_str().ok_or("text is required")?;
    let characters = text.chars().count();
    if text.trim().is_empty() || characters > MAX_TEXT_CHARS {
        return Err(format!(
            "text must have 1 to {MAX_TEXT_CHARS} characters, not {characters}"
        ));
    }
    let stream = match &body["stream"] {
        Value::Null => false,
        Value::Bool(b) => *b,
        _ => return Err("stream must be a boolean".into()),
    };
    let voice = &body["voice_setting"];
    let voice_id = voice["voice_id"]
        .as_str()
        .ok_or("voice_setting.voice_id is required")?;
    if !VOICES.contains(&voice_id) {
        return Err(format!("voice id {voice_id} does not exist"));
    }
    let speed = number(voice, "speed", 1.0, 0.5, 2.0)?;
    number(voice, "vol", 1.0, 0.01, 10.0)?;
    match &voice["pitch"] {
        Value::Null => {}
        v if v.as_i64().is_some_and(|p| (-12..=12).contains(&p)) => {}
        _ => return Err("voice_setting.pitch must be an integer from -12 to 12".into()),
    }
    match &voice["emotion"] {
        Value::Null => {}
        Value::String(e) if EMOTIONS.contains(&e.as_str()) => {}
        other => return Err(format!("voice_setting.emotion {other} is not supported")),
    }
    let audio = &body["audio_setting"];
    let sample_rate = integer(audio, "sample_rate", 32_000)?;
    if ![8000, 16_000, 22_050, 24_000, 32_000, 44_100].contains(&sample_rate) {
        return Err(format!("sample_rate {sample_rate} is not supported"));
    }
    let bitrate = integer(audio, "bitrate", 128_000)?;
    if ![32_000, 64_000, 128_000, 256_000].contains(&bitrate) {
        return Err(format!("bitrate {bitrate} is not supported"));
    }
    let format = audio["format"].as_str().unwrap_or("mp3").to_string();
    if !["mp3", "wav", "flac", "pcm"].contains(&format.as_str()) {
        return Err(format!("format {format} is not supported"));
    }
    if stream && format == "wav" {
        return Err("wav is only supported in non-streaming mode".into());
    }
    let channels = integer(audio, "channel", 1)?;
    if !(1..=2).contains(&channels) {
        return Err(format!("channel {channels} is not supported"));
    }
    match &body["output_format"] {
        Value::Null => {}
        Value::String(f) if f == "hex" => {}
        other => return Err(format!("output_format {other} is not supported here")),
    }
    Ok(Speech {
        millis: spoken_millis(text, speed),
        characters,
        sample_rate: sample_rate as u32,
        bitrate: bitrate as u32,
        format,
        channels: channels as u16,
        stream,
    })
}

fn number(object: &Value, name: &str, default: f64, min: f64, max: f64) -> Result<f64, String> {
    match &object[name] {
        Value::Null => Ok(default),
        v => v
            .as_f64()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| format!("{name} must be a number from {min} to {max}")),
    }
}

fn integer(object: &Value, name: &str, default: u64) -> Result<u64, String> {
    match &object[name] {
        Value::Null => Ok(default),
        v => v
            .as_u64()
            .ok_or_else(|| format!("{name} must be a positive integer")),
    }
}

/// Returns the audio for a checked request, in its format.
fn render(speech: &Speech) -> Vec<u8> {
    let rate = speech.sample_rate;
    let mono = tone(rate, speech.millis);
    let samples = if speech.channels == 2 {
        mono.chunks(2)
            .flat_map(|s| [s[0], s[1], s[0], s[1]])
            .collect()
    } else {
        mono
    };
    match speech.format.as_str() {
        "wav" => wav(rate, speech.channels, &samples),
        "pcm" => samples,
        "flac" => flac_header(rate, speech.millis),
        _ => {
            // MPEG audio has no 8 kHz without MPEG-2.5, and no 256 kbit/s below 32 kHz.
            let rate = rate.max(16_000);
            let kbps = if rate < 32_000 {
                (speech.bitrate / 1000).min(128)
            } else {
                speech.bitrate / 1000
            };
            mp3_silence(rate, kbps, speech.millis)
        }
    }
}

fn wav(rate: u32, channels: u16, data: &[u8]) -> Vec<u8> {
    let spec = WavSpec {
        sample_rate: rate,
        channels,
        bits_per_sample: 16,
        format: SampleFormat::Int,
    };
    let mut out = spec.header(data.len() as u64).expect("a valid spec");
    out.extend_from_slice(data);
    out
}

fn extra_info(speech: &Speech, audio: &[u8]) -> Value {
    json!({
        "audio_length": speech.millis,
        "audio_sample_rate": speech.sample_rate,
        "audio_size": audio.len(),
        "bitrate": speech.bitrate,
        "audio_format": speech.format,
        "audio_channel": speech.channels,
        "usage_characters": speech.characters,
        "word_count": speech.characters,
        "invisible_character_ratio": 0,
    })
}

fn speak(speech: &Speech) -> Reply {
    let audio = render(speech);
    let last = json!({
        "data": {"audio": hex(&audio), "status": 2, "ced": ""},
        "extra_info": extra_info(speech, &audio),
        "trace_id": TRACE_ID,
        "base_resp": {"status_code": 0, "status_msg": "success"},
    });
    if !speech.stream {
        return Reply::Respond(Response::json(200, &last));
    }
    let body = StreamBody::new(move |chunks| {
        for piece in audio.chunks(STREAM_CHUNK) {
            let event = json!({
                "data": {"audio": hex(piece), "status": 1, "ced": ""},
                "trace_id": TRACE_ID,
                "base_resp": {"status_code": 0, "status_msg": ""},
            });
            chunks.send(format!("data: {event}\n\n").as_bytes())?;
        }
        chunks.send(format!("data: {last}\n\n").as_bytes())
    });
    Reply::Stream(
        Response::new(200).header("Content-Type", "text/event-stream"),
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    const KEY: &str = "minimax-test-key";

    fn post(emulator: &MiniMaxEmulator, path: &str, auth: Option<&str>, body: &Value) -> Vec<u8> {
        let addr = emulator.url().trim_start_matches("http://").to_string();
        let mut stream = TcpStream::connect(&addr).unwrap();
        let body = body.to_string();
        let auth = auth
            .map(|k| format!("Authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).unwrap();
        out
    }

    fn json_of(reply: &[u8]) -> Value {
        let text = String::from_utf8_lossy(reply);
        let body = text.split_once("\r\n\r\n").unwrap().1;
        serde_json::from_str(body).unwrap()
    }

    fn request(text: &str, format: &str, stream: bool) -> Value {
        json!({
            "model": "speech-02-hd",
            "text": text,
            "stream": stream,
            "voice_setting": {"voice_id": "male-qn-qingse", "speed": 1.0},
            "audio_setting": {"sample_rate": 16000, "format": format, "channel": 1},
            "output_format": "hex",
        })
    }

    #[test]
    fn speaks_hex_wav_whose_length_follows_the_text() {
        let emulator = MiniMaxEmulator::start(KEY);
        let reply = json_of(&post(
            &emulator,
            T2A_PATH,
            Some(KEY),
            &request("你好，世界。", "wav", false),
        ));
        assert_eq!(reply["base_resp"]["status_code"], 0);
        assert_eq!(reply["extra_info"]["audio_length"], 60);
        let hex_audio = reply["data"]["audio"].as_str().unwrap();
        assert!(hex_audio.starts_with(&hex(b"RIFF")));
        // 60 ms at 16 kHz, 16-bit mono, after a 44-byte header.
        assert_eq!(hex_audio.len(), 2 * (44 + 1920));
    }

    #[test]
    fn errors_come_as_200_with_base_resp() {
        let emulator = MiniMaxEmulator::start(KEY);
        let no_key = post(&emulator, T2A_PATH, None, &request("hi", "mp3", false));
        assert!(no_key.starts_with(b"HTTP/1.1 200"));
        assert_eq!(json_of(&no_key)["base_resp"]["status_code"], 1004);
        let wav_stream = post(&emulator, T2A_PATH, Some(KEY), &request("hi", "wav", true));
        assert_eq!(json_of(&wav_stream)["base_resp"]["status_code"], 2013);
        let mut bad = request("hi", "mp3", false);
        bad["voice_setting"]["pitch"] = json!(1.5);
        let reply = post(&emulator, T2A_PATH, Some(KEY), &bad);
        assert_eq!(json_of(&reply)["base_resp"]["status_code"], 2013);
        emulator.fail_next(1026, "input new_sensitive");
        let reply = post(&emulator, T2A_PATH, Some(KEY), &request("hi", "mp3", false));
        assert_eq!(json_of(&reply)["base_resp"]["status_code"], 1026);
    }

    #[test]
    fn streams_hex_chunks_then_the_whole_audio() {
        let emulator = MiniMaxEmulator::start(KEY);
        let text = "a".repeat(600);
        let reply = post(&emulator, T2A_PATH, Some(KEY), &request(&text, "pcm", true));
        let text = String::from_utf8_lossy(&reply);
        let events: Vec<Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        // 6 s at 16 kHz 16-bit is 192,000 bytes: 12 chunks, then the whole again.
        assert_eq!(events.len(), 13);
        let chunked: usize = events[..12]
            .iter()
            .map(|e| e["data"]["audio"].as_str().unwrap().len())
            .sum();
        assert_eq!(chunked, 2 * 192_000);
        assert_eq!(events[12]["data"]["status"], 2);
        assert_eq!(events[12]["data"]["audio"].as_str().unwrap().len(), chunked);
        assert_eq!(events[12]["extra_info"]["audio_length"], 6000);
    }

    #[test]
    fn a_group_id_is_checked_when_required() {
        let emulator = MiniMaxEmulator::start_with_group(KEY, "g1");
        let reply = post(&emulator, T2A_PATH, Some(KEY), &request("hi", "mp3", false));
        assert_eq!(json_of(&reply)["base_resp"]["status_code"], 1004);
        let path = format!("{T2A_PATH}?GroupId=g1");
        let reply = post(&emulator, &path, Some(KEY), &request("hi", "mp3", false));
        assert_eq!(json_of(&reply)["base_resp"]["status_code"], 0);
    }
}
