//! An in-process emulator of Azure AI Speech text-to-speech over REST, written from
//! `shared/contracts/services.md` section 1.
//!
//! It is strict where the contract is precise, so an adapter that drifts from the published
//! API fails here rather than in front of a user:
//!
//! - every request needs `Ocp-Apim-Subscription-Key` with the emulator's key, or
//!   `Authorization: Bearer` with a token from `issueToken` (401 otherwise);
//! - synthesis needs `Content-Type: application/ssml+xml` (415), a known
//!   `X-Microsoft-OutputFormat` (400), a `User-Agent` under 255 characters (400), and a body of
//!   well-formed SSML: a `<speak version="1.0" xml:lang="…">` root with one to fifty `<voice>`
//!   elements naming known voices, and `<prosody>` values the service accepts (400);
//! - audio comes back in the requested format and lasts [`MILLIS_PER_CHAR`] per spoken
//!   character (scaled by a prosody rate, capped at ten minutes as the service truncates).
//!
//! Faults are scripted with [`AzureEmulator::fail_next`] and [`AzureEmulator::hang_next`], and
//! every request is recorded.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};

use crate::http::{HttpServer, Reply, Request, Response};

/// The synthesis path.
pub const SYNTHESIZE_PATH: &str = "/cognitiveservices/v1";
/// The voice list path.
pub const VOICES_PATH: &str = "/cognitiveservices/voices/list";
/// The token path (served on the same origin here; Azure serves it on `api.cognitive…`).
pub const TOKEN_PATH: &str = "/sts/v1.0/issueToken";

/// How long the emulated voice takes per character of text, at the normal rate.
pub const MILLIS_PER_CHAR: u64 = 40;

/// The longest audio the service returns; it silently truncates beyond.
const MAX_AUDIO_MILLIS: u64 = 10 * 60 * 1000;

const SSML_NS: &str = "http://www.w3.org/2001/10/synthesis";
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Every output format the contract lists.
pub const OUTPUT_FORMATS: &[&str] = &[
    "audio-16khz-32kbitrate-mono-mp3",
    "audio-16khz-64kbitrate-mono-mp3",
    "audio-16khz-128kbitrate-mono-mp3",
    "audio-24khz-48kbitrate-mono-mp3",
    "audio-24khz-96kbitrate-mono-mp3",
    "audio-24khz-160kbitrate-mono-mp3",
    "audio-48khz-96kbitrate-mono-mp3",
    "audio-48khz-192kbitrate-mono-mp3",
    "audio-16khz-16bit-32kbps-mono-opus",
    "audio-24khz-16bit-24kbps-mono-opus",
    "audio-24khz-16bit-48kbps-mono-opus",
    "ogg-16khz-16bit-mono-opus",
    "ogg-24khz-16bit-mono-opus",
    "ogg-48khz-16bit-mono-opus",
    "webm-16khz-16bit-mono-opus",
    "webm-24khz-16bit-mono-opus",
    "webm-24khz-16bit-24kbps-mono-opus",
    "raw-8khz-16bit-mono-pcm",
    "raw-16khz-16bit-mono-pcm",
    "raw-22050hz-16bit-mono-pcm",
    "raw-24khz-16bit-mono-pcm",
    "raw-44100hz-16bit-mono-pcm",
    "raw-48khz-16bit-mono-pcm",
    "raw-8khz-8bit-mono-alaw",
    "raw-8khz-8bit-mono-mulaw",
    "raw-16khz-16bit-mono-truesilk",
    "raw-24khz-16bit-mono-truesilk",
    "amr-wb-16000hz",
    "riff-8khz-16bit-mono-pcm",
    "riff-22050hz-16bit-mono-pcm",
    "riff-24khz-16bit-mono-pcm",
    "riff-44100hz-16bit-mono-pcm",
    "riff-48khz-16bit-mono-pcm",
    "riff-8khz-8bit-mono-alaw",
    "riff-8khz-8bit-mono-mulaw",
];

/// A voice the emulator knows: (short name, gender, local name, styles).
const VOICES: &[(&str, &str, &str, &[&str])] = &[
    (
        "en-US-AvaMultilingualNeural",
        "Female",
        "Ava Multilingual",
        &[],
    ),
    (
        "en-US-JennyNeural",
        "Female",
        "Jenny",
        &["assistant", "chat", "cheerful", "sad", "whispering"],
    ),
    ("en-US-GuyNeural", "Male", "Guy", &["newscast", "angry"]),
    ("en-GB-SoniaNeural", "Female", "Sonia", &["cheerful", "sad"]),
    (
        "zh-CN-XiaoxiaoNeural",
        "Female",
        "晓晓",
        &["affectionate", "cheerful", "gentle", "sad", "newscast"],
    ),
    ("zh-CN-XiaoyiNeural", "Female", "晓伊", &["cheerful", "sad"]),
    ("zh-CN-XiaochenNeural", "Female", "晓辰", &[]),
    (
        "zh-CN-YunxiNeural",
        "Male",
        "云希",
        &["narration-relaxed", "cheerful", "sad"],
    ),
    (
        "zh-CN-YunjianNeural",
        "Male",
        "云健",
        &["sports-commentary"],
    ),
    ("zh-CN-YunyangNeural", "Male", "云扬", &["customerservice"]),
    ("zh-CN-YunxiaNeural", "Male", "云夏", &["cheerful"]),
    ("zh-CN-henan-YundengNeural", "Male", "云登", &[]),
    ("zh-HK-HiuMaanNeural", "Female", "曉曼", &[]),
    ("zh-TW-HsiaoChenNeural", "Female", "曉臻", &[]),
    (
        "ja-JP-NanamiNeural",
        "Female",
        "七海",
        &["chat", "cheerful"],
    ),
    ("ko-KR-SunHiNeural", "Female", "선히", &[]),
    ("de-DE-KatjaNeural", "Female", "Katja", &[]),
    ("fr-FR-DeniseNeural", "Female", "Denise", &["cheerful"]),
];

/// Returns the locale part of a voice's short name: everything before its last dash.
fn locale_of(short_name: &str) -> &str {
    short_name.rsplit_once('-').map_or(short_name, |(l, _)| l)
}

/// Returns the voice list as the service sends it.
pub fn voices_json() -> Value {
    let voices: Vec<Value> = VOICES
        .iter()
        .map(|(short, gender, local, styles)| {
            let locale = locale_of(short);
            let plain = &short[locale.len() + 1..];
            let mut voice = json!({
                "Name": format!("Microsoft Server Speech Text to Speech Voice ({locale}, {plain})"),
                "DisplayName": plain.trim_end_matches("Neural"),
                "LocalName": local,
                "ShortName": short,
                "Gender": gender,
                "Locale": locale,
                "LocaleName": locale_name(locale),
                "SampleRateHertz": if short.contains("Multilingual") { "48000" } else { "24000" },
                "VoiceType": "Neural",
                "Status": "GA",
                "WordsPerMinute": if locale.starts_with("zh") { "260" } else { "150" },
            });
            if !styles.is_empty() {
                voice["StyleList"] = json!(styles);
            }
            if short.contains("Multilingual") {
                voice["SecondaryLocaleList"] = json!(["zh-CN", "ja-JP", "de-DE", "fr-FR"]);
            }
            if *short == "zh-CN-YunxiNeural" {
                voice["RolePlayList"] = json!(["Narrator", "YoungAdultMale", "Boy"]);
            }
            voice
        })
        .collect();
    Value::Array(voices)
}

fn locale_name(locale: &str) -> &'static str {
    match locale {
        "en-US" => "English (United States)",
        "en-GB" => "English (United Kingdom)",
        "zh-CN" => "Chinese (Mandarin, Simplified)",
        "zh-CN-henan" => "Chinese (Zhongyuan Mandarin Henan, Simplified)",
        "zh-HK" => "Chinese (Cantonese, Traditional)",
        "zh-TW" => "Chinese (Taiwanese Mandarin, Traditional)",
        "ja-JP" => "Japanese (Japan)",
        "ko-KR" => "Korean (Korea)",
        "de-DE" => "German (Germany)",
        "fr-FR" => "French (France)",
        _ => "Unknown",
    }
}

enum Fault {
    Status(u16, Vec<(String, String)>),
    Hang,
}

struct State {
    key: String,
    faults: Mutex<VecDeque<Fault>>,
    tokens: Mutex<Vec<String>>,
    next_token: AtomicU64,
}

/// A running emulator; stops when dropped.
pub struct AzureEmulator {
    server: HttpServer,
    state: Arc<State>,
}

impl AzureEmulator {
    /// Starts an emulator that accepts subscription key `key`.
    pub fn start(key: &str) -> AzureEmulator {
        let state = Arc::new(State {
            key: key.to_string(),
            faults: Mutex::new(VecDeque::new()),
            tokens: Mutex::new(Vec::new()),
            next_token: AtomicU64::new(1),
        });
        let handler_state = Arc::clone(&state);
        let server = HttpServer::start(move |req| handle(&handler_state, req));
        AzureEmulator { server, state }
    }

    /// Returns the base URL to use in place of `https://{region}.tts.speech.microsoft.com`.
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
            .filter(|r| path_of(r) == SYNTHESIZE_PATH)
            .collect()
    }

    /// Makes the next request (of any kind) fail with `status` and `headers`, e.g.
    /// `fail_next(429, &[("Retry-After", "1")])`. Faults queue up in order.
    pub fn fail_next(&self, status: u16, headers: &[(&str, &str)]) {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        lock(&self.state.faults).push_back(Fault::Status(status, headers));
    }

    /// Makes the next request (of any kind) go unanswered until the emulator is dropped.
    pub fn hang_next(&self) {
        lock(&self.state.faults).push_back(Fault::Hang);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn path_of(req: &Request) -> &str {
    req.path.split('?').next().unwrap_or_default()
}

fn error(status: u16, message: &str) -> Reply {
    Reply::Respond(Response::text(status, message))
}

fn handle(state: &State, req: &Request) -> Reply {
    if let Some(fault) = lock(&state.faults).pop_front() {
        return match fault {
            Fault::Hang => Reply::Hang,
            Fault::Status(status, headers) => {
                let mut response = Response::text(status, "emulated fault");
                response.headers.extend(headers);
                Reply::Respond(response)
            }
        };
    }
    let method = req.method.as_str();
    match path_of(req) {
        SYNTHESIZE_PATH if method == "POST" => {
            authorized(state, req).unwrap_or_else(|| synthesize(req))
        }
        VOICES_PATH if method == "GET" => authorized(state, req)
            .unwrap_or_else(|| Reply::Respond(Response::json(200, &voices_json()))),
        TOKEN_PATH if method == "POST" => issue_token(state, req),
        SYNTHESIZE_PATH | VOICES_PATH | TOKEN_PATH => error(405, "method not allowed"),
        _ => error(404, "resource not found"),
    }
}

/// Returns a 401 reply unless the request carries the key or an issued token.
fn authorized(state: &State, req: &Request) -> Option<Reply> {
    let by_key = req.header("Ocp-Apim-Subscription-Key") == Some(state.key.as_str());
    let by_token = req
        .header("Authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| lock(&state.tokens).iter().any(|known| known == t));
    if by_key || by_token {
        None
    } else {
        Some(error(
            401,
            "the subscription key or token is missing or not valid for this region",
        ))
    }
}

fn issue_token(state: &State, req: &Request) -> Reply {
    if req.header("Ocp-Apim-Subscription-Key") != Some(state.key.as_str()) {
        return error(401, "the subscription key is missing or not valid");
    }
    let n = state.next_token.fetch_add(1, Ordering::SeqCst);
    let token = format!("emulated.token.{n}");
    lock(&state.tokens).push(token.clone());
    Reply::Respond(Response::text(200, &token))
}

fn synthesize(req: &Request) -> Reply {
    let media_type = req
        .header("Content-Type")
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !media_type.is_some_and(|m| m.eq_ignore_ascii_case("application/ssml+xml")) {
        return error(415, "Content-Type must be application/ssml+xml");
    }
    let Some(format) = req.header("X-Microsoft-OutputFormat") else {
        return error(400, "the X-Microsoft-OutputFormat header is missing");
    };
    let Some(format) = OUTPUT_FORMATS.iter().find(|f| **f == format) else {
        return error(
            400,
            "the X-Microsoft-OutputFormat header names no known format",
        );
    };
    match req.header("User-Agent") {
        None | Some("") => return error(400, "the User-Agent header is missing"),
        Some(ua) if ua.chars().count() >= 255 => {
            return error(400, "the User-Agent header is too long");
        }
        Some(_) => {}
    }
    let Ok(body) = std::str::from_utf8(&req.body) else {
        return error(400, "the SSML is not UTF-8");
    };
    let millis = match spoken_millis(body) {
        Ok(millis) => millis.min(MAX_AUDIO_MILLIS),
        Err(message) => return error(400, &message),
    };
    let (media_type, audio) = render(format, millis);
    Reply::Respond(
        Response::new(200)
            .header("Content-Type", media_type)
            .body(audio),
    )
}

/// Checks the SSML and returns how long speaking it takes, in milliseconds.
pub fn spoken_millis(ssml: &str) -> Result<u64, String> {
    let doc =
        roxmltree::Document::parse(ssml).map_err(|e| format!("SSML is not valid XML: {e}"))?;
    let root = doc.root_element();
    let ns = root.tag_name().namespace();
    if root.tag_name().name() != "speak" || !matches!(ns, None | Some(SSML_NS)) {
        return Err("the SSML root element must be <speak>".to_string());
    }
    if root.attribute("version") != Some("1.0") {
        return Err("<speak> must have version=\"1.0\"".to_string());
    }
    if root.attribute((XML_NS, "lang")).is_none_or(str::is_empty) {
        return Err("<speak> must have xml:lang".to_string());
    }
    let voices: Vec<_> = root
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "voice")
        .collect();
    if voices.is_empty() {
        return Err("the SSML has no <voice> element".to_string());
    }
    if voices.len() > 50 {
        return Err("the SSML has more than 50 <voice> elements".to_string());
    }
    let mut millis = 0.0;
    for voice in voices {
        let name = voice.attribute("name").ok_or("<voice> must have a name")?;
        if !VOICES.iter().any(|(short, ..)| *short == name) {
            return Err(format!("unknown voice `{name}`"));
        }
        for node in voice.descendants().filter(|n| n.is_text()) {
            let chars = node.text().unwrap_or_default().trim().chars().count();
            let mut speed = 1.0;
            for ancestor in node.ancestors().filter(|n| n.is_element()) {
                match ancestor.tag_name().name() {
                    "prosody" => speed *= prosody_speed(ancestor)?,
                    "express-as" if ancestor.attribute("style").is_none() => {
                        return Err("<mstts:express-as> must have a style".to_string());
                    }
                    _ => {}
                }
            }
            millis += chars as f64 * MILLIS_PER_CHAR as f64 / speed;
        }
    }
    Ok((millis.round() as u64).max(100))
}

/// Validates a `<prosody>` and returns the speed factor its rate sets.
fn prosody_speed(node: roxmltree::Node<'_, '_>) -> Result<f64, String> {
    if let Some(pitch) = node.attribute("pitch") {
        let ok = matches!(
            pitch,
            "x-low" | "low" | "medium" | "high" | "x-high" | "default"
        ) || signed_number(pitch, "%").is_some()
            || signed_number(pitch, "Hz").is_some()
            || signed_number(pitch, "st").is_some();
        if !ok {
            return Err(format!("prosody pitch `{pitch}` is not valid"));
        }
    }
    let Some(rate) = node.attribute("rate") else {
        return Ok(1.0);
    };
    let speed = match rate {
        "x-slow" => 0.5,
        "slow" => 0.75,
        "medium" | "default" => 1.0,
        "fast" => 1.5,
        "x-fast" => 2.0,
        _ if rate.ends_with('%') => {
            let pct =
                signed_number(rate, "%").ok_or(format!("prosody rate `{rate}` is not valid"))?;
            1.0 + pct / 100.0
        }
        _ => rate
            .parse::<f64>()
            .map_err(|_| format!("prosody rate `{rate}` is not valid"))?,
    };
    if !(0.5..=2.0).contains(&speed) {
        return Err(format!("prosody rate `{rate}` is outside 0.5 to 2 times"));
    }
    Ok(speed)
}

/// Parses `+12.5%`, `-3st`, `600Hz`: a number with an optional sign and the given unit.
fn signed_number(value: &str, unit: &str) -> Option<f64> {
    let number = value.strip_suffix(unit)?;
    if number.is_empty() || number.starts_with(['+', '-']) && number.len() == 1 {
        return None;
    }
    number.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Returns the media type and bytes of `millis` of audio in `format`.
///
/// What is real: WAV and raw PCM (a quiet 440 Hz tone at the format's rate), A-law and µ-law
/// (digital silence), MP3 (genuine MPEG Layer III frames of silence: valid headers for the
/// format's rate and bitrate, zeroed side info, which decoders play as silence), Ogg Opus
/// (genuine Ogg pages with CRCs, OpusHead and OpusTags, then one zero-length Opus frame per
/// 20 ms, which decoders conceal as silence) and AMR-WB (the storage-format magic and NO_DATA
/// frames). WebM is a valid EBML header and an empty segment padded with a Void element, so
/// it is not playable. Container-less Opus and SILK are opaque bytes at the format's bitrate:
/// the contract does not say how Azure frames them.
pub fn render(format: &str, millis: u64) -> (&'static str, Vec<u8>) {
    let rate = sample_rate(format);
    let samples = (rate as u64 * millis / 1000) as usize;
    if let Some(rest) = format.strip_prefix("riff-") {
        return if rest.ends_with("alaw") {
            ("audio/x-wav", wav(6, rate, 8, &vec![0xD5; samples]))
        } else if rest.ends_with("mulaw") {
            ("audio/x-wav", wav(7, rate, 8, &vec![0xFF; samples]))
        } else {
            (
                "audio/x-wav",
                wav(1, rate, 16, &crate::media::tone(rate, millis)),
            )
        };
    }
    if format.starts_with("raw-") && format.ends_with("-pcm") {
        return ("audio/L16", crate::media::tone(rate, millis));
    }
    if format.ends_with("alaw") {
        return ("audio/PCMA", vec![0xD5; samples]);
    }
    if format.ends_with("mulaw") {
        return ("audio/PCMU", vec![0xFF; samples]);
    }
    if format.ends_with("-mp3") {
        return ("audio/mpeg", mp3(format, rate, millis));
    }
    if format.starts_with("ogg-") {
        return ("audio/ogg", ogg_opus(rate, millis));
    }
    if format.starts_with("webm-") {
        return ("audio/webm", webm(millis));
    }
    if format == "amr-wb-16000hz" {
        let mut out = b"#!AMR-WB\n".to_vec();
        out.extend(std::iter::repeat_n(0x7C, (millis / 20) as usize));
        return ("audio/AMR-WB", out);
    }
    // Container-less Opus and SILK: opaque bytes at about 32 kbit/s.
    let len = (millis * 4) as usize;
    (
        "application/octet-stream",
        (0..len).map(|i| (i % 253) as u8).collect(),
    )
}

/// Returns the sample rate a format name states.
fn sample_rate(format: &str) -> u32 {
    for part in format.split('-') {
        if let Some(khz) = part.strip_suffix("khz") {
            if let Ok(khz) = khz.parse::<u32>() {
                return khz * 1000;
            }
        } else if let Some(hz) = part.strip_suffix("hz")
            && let Ok(hz) = hz.parse::<u32>()
        {
            return hz;
        }
    }
    16_000
}

/// Returns a WAV file: `format_tag` 1 is PCM, 6 A-law, 7 µ-law (which also get the `fact`
/// chunk that non-PCM WAV requires).
pub fn wav(format_tag: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block_align = bits / 8;
    let pcm = format_tag == 1;
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&format_tag.to_le_bytes());
    fmt.extend_from_slice(&1u16.to_le_bytes());
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
    fmt.extend_from_slice(&block_align.to_le_bytes());
    fmt.extend_from_slice(&bits.to_le_bytes());
    if !pcm {
        fmt.extend_from_slice(&0u16.to_le_bytes());
    }
    let mut body = b"WAVE".to_vec();
    chunk(&mut body, b"fmt ", &fmt);
    if !pcm {
        let frames = (data.len() / usize::from(block_align)) as u32;
        chunk(&mut body, b"fact", &frames.to_le_bytes());
    }
    chunk(&mut body, b"data", data);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn chunk(out: &mut Vec<u8>, id: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(id);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
}

/// MPEG Layer III frames of silence for the format's rate and bitrate.
fn mp3(format: &str, rate: u32, millis: u64) -> Vec<u8> {
    let kbps: u32 = format
        .split('-')
        .find_map(|p| p.strip_suffix("kbitrate"))
        .and_then(|k| k.parse().ok())
        .unwrap_or(48);
    crate::media::mp3_silence(rate, kbps, millis)
}

/// The Ogg page CRC: polynomial 0x04C11DB7, no reflection, zero initial value.
pub fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn ogg_page(out: &mut Vec<u8>, flags: u8, granule: u64, serial: u32, seq: u32, packets: &[&[u8]]) {
    let mut lacing = Vec::new();
    for packet in packets {
        lacing.extend(std::iter::repeat_n(255u8, packet.len() / 255));
        lacing.push((packet.len() % 255) as u8);
    }
    let start = out.len();
    out.extend_from_slice(b"OggS");
    out.push(0);
    out.push(flags);
    out.extend_from_slice(&granule.to_le_bytes());
    out.extend_from_slice(&serial.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(lacing.len() as u8);
    out.extend_from_slice(&lacing);
    for packet in packets {
        out.extend_from_slice(packet);
    }
    let crc = ogg_crc(&out[start..]);
    out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
}

/// Ogg Opus: headers, then one zero-length 20 ms frame (a bare TOC byte) per packet.
pub(crate) fn ogg_opus(input_rate: u32, millis: u64) -> Vec<u8> {
    const PRE_SKIP: u16 = 312;
    const PACKETS_PER_PAGE: usize = 50;
    // Each emulator response is its own logical stream, as separate Azure responses are.
    static SERIAL: AtomicU64 = AtomicU64::new(0x4C41_0001);
    let serial = SERIAL.fetch_add(1, Ordering::SeqCst) as u32;
    let mut head = b"OpusHead".to_vec();
    head.push(1);
    head.push(1);
    head.extend_from_slice(&PRE_SKIP.to_le_bytes());
    head.extend_from_slice(&input_rate.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes());
    head.push(0);
    let vendor = b"launcher-testkit azure emulator";
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor);
    tags.extend_from_slice(&0u32.to_le_bytes());

    let mut out = Vec::new();
    ogg_page(&mut out, 0x02, 0, serial, 0, &[&head]);
    ogg_page(&mut out, 0x00, 0, serial, 1, &[&tags]);
    // TOC 0xF8: CELT-only fullband 20 ms, mono, one frame; no frame bytes follow.
    let packet: &[u8] = &[0xF8];
    let total = (millis / 20).max(1) as usize;
    let mut sent = 0;
    let mut seq = 2;
    while sent < total {
        let n = PACKETS_PER_PAGE.min(total - sent);
        sent += n;
        let flags = if sent == total { 0x04 } else { 0x00 };
        let granule = u64::from(PRE_SKIP) + sent as u64 * 960;
        ogg_page(&mut out, flags, granule, serial, seq, &vec![packet; n]);
        seq += 1;
    }
    out
}

/// An EBML header declaring WebM, then a Segment holding only a Void element.
fn webm(millis: u64) -> Vec<u8> {
    fn element(out: &mut Vec<u8>, id: &[u8], data: &[u8]) {
        out.extend_from_slice(id);
        // An 8-byte size: marker 0x01 then seven bytes of length.
        out.push(0x01);
        out.extend_from_slice(&(data.len() as u64).to_be_bytes()[1..]);
        out.extend_from_slice(data);
    }
    let mut header = Vec::new();
    element(&mut header, &[0x42, 0x86], &[1]); // EBMLVersion
    element(&mut header, &[0x42, 0xF7], &[1]); // EBMLReadVersion
    element(&mut header, &[0x42, 0xF2], &[4]); // EBMLMaxIDLength
    element(&mut header, &[0x42, 0xF3], &[8]); // EBMLMaxSizeLength
    element(&mut header, &[0x42, 0x82], b"webm"); // DocType
    element(&mut header, &[0x42, 0x87], &[4]); // DocTypeVersion
    element(&mut header, &[0x42, 0x85], &[2]); // DocTypeReadVersion
    let mut out = Vec::new();
    element(&mut out, &[0x1A, 0x45, 0xDF, 0xA3], &header);
    let mut segment = Vec::new();
    element(&mut segment, &[0xEC], &vec![0; (millis * 3) as usize]);
    element(&mut out, &[0x18, 0x53, 0x80, 0x67], &segment);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    const KEY: &str = "emulator-test-key";

    /// Sends one request and returns (status, headers text, body).
    fn call(
        emulator: &AzureEmulator,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, Vec<u8>) {
        let addr = emulator.url().trim_start_matches("http://").to_string();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(raw.as_bytes()).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head");
        let head = String::from_utf8(response[..split].to_vec()).unwrap();
        let status = head[9..12].parse().unwrap();
        (status, head, response[split + 4..].to_vec())
    }

    fn ssml(voice: &str, text: &str) -> String {
        format!(
            "<speak version=\"1.0\" xmlns=\"{SSML_NS}\" xml:lang=\"{}\">\
             <voice name=\"{voice}\">{text}</voice></speak>",
            locale_of(voice)
        )
    }

    fn synth(emulator: &AzureEmulator, format: &str, body: &str) -> (u16, String, Vec<u8>) {
        call(
            emulator,
            "POST",
            SYNTHESIZE_PATH,
            &[
                ("Ocp-Apim-Subscription-Key", KEY),
                ("Content-Type", "application/ssml+xml"),
                ("X-Microsoft-OutputFormat", format),
                ("User-Agent", "emulator-test"),
            ],
            body,
        )
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn synthesizes_a_wav_whose_length_follows_the_text() {
        let emulator = AzureEmulator::start(KEY);
        let (status, head, wav) = synth(
            &emulator,
            "riff-24khz-16bit-mono-pcm",
            &ssml("en-US-JennyNeural", "Hello world"),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&wav));
        assert!(head.contains("Content-Type: audio/x-wav"));
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(u32_at(&wav, 4) as usize, wav.len() - 8);
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        assert_eq!(u32_at(&wav, 24), 24_000);
        assert_eq!(&wav[36..40], b"data");
        // 11 characters at 40 ms, 24000 samples/s, 2 bytes each.
        assert_eq!(u32_at(&wav, 40), 11 * 40 * 24 * 2);
        assert_eq!(emulator.synthesis_requests().len(), 1);
    }

    #[test]
    fn a_faster_prosody_rate_makes_shorter_audio() {
        let emulator = AzureEmulator::start(KEY);
        let text = "<prosody rate=\"+100%\" pitch=\"-5%\">Hello world</prosody>";
        let (status, _, wav) = synth(
            &emulator,
            "riff-24khz-16bit-mono-pcm",
            &ssml("en-US-JennyNeural", text),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&wav));
        assert_eq!(u32_at(&wav, 40), 11 * 20 * 24 * 2);
    }

    #[test]
    fn checks_key_content_type_format_user_agent_and_ssml() {
        let emulator = AzureEmulator::start(KEY);
        let good = ssml("zh-CN-XiaoxiaoNeural", "你好");
        let long_agent = "u".repeat(255);
        type Case<'a> = (u16, Vec<(&'a str, &'a str)>, String);
        let cases: Vec<Case<'_>> = vec![
            (
                401,
                vec![("Ocp-Apim-Subscription-Key", "wrong")],
                good.clone(),
            ),
            (401, vec![("Ocp-Apim-Subscription-Key", "")], good.clone()),
            (415, vec![("Content-Type", "text/plain")], good.clone()),
            (415, vec![("Content-Type", "")], good.clone()),
            (400, vec![("X-Microsoft-OutputFormat", "wav")], good.clone()),
            (400, vec![("User-Agent", "")], good.clone()),
            (400, vec![("User-Agent", &*long_agent)], good.clone()),
            (400, vec![], "<speak version=\"1.0\">unclosed".to_string()),
            (400, vec![], good.replace(" xml:lang=\"zh-CN\"", "")),
            (
                400,
                vec![],
                good.replace("version=\"1.0\"", "version=\"2.0\""),
            ),
            (400, vec![], good.replace("XiaoxiaoNeural", "NobodyNeural")),
            (
                400,
                vec![],
                "<speak version=\"1.0\" xml:lang=\"en-US\">hi</speak>".into(),
            ),
            (
                400,
                vec![],
                ssml("en-US-JennyNeural", "<prosody rate=\"+300%\">hi</prosody>"),
            ),
            (
                400,
                vec![],
                ssml("en-US-JennyNeural", "<prosody pitch=\"loud\">hi</prosody>"),
            ),
        ];
        for (expected, overrides, body) in cases {
            let mut headers = vec![
                ("Ocp-Apim-Subscription-Key", KEY),
                ("Content-Type", "application/ssml+xml; charset=utf-8"),
                (
                    "X-Microsoft-OutputFormat",
                    "audio-24khz-48kbitrate-mono-mp3",
                ),
                ("User-Agent", "emulator-test"),
            ];
            for (name, value) in &overrides {
                let slot = headers.iter_mut().find(|(k, _)| k == name).unwrap();
                slot.1 = value;
            }
            headers.retain(|(_, v)| !v.is_empty());
            let (status, _, _) = call(&emulator, "POST", SYNTHESIZE_PATH, &headers, &body);
            assert_eq!(status, expected, "{overrides:?} {body}");
        }
        let (status, _, _) = synth(&emulator, "audio-24khz-48kbitrate-mono-mp3", &good);
        assert_eq!(status, 200);
    }

    #[test]
    fn mp3_is_a_run_of_well_formed_frames() {
        let emulator = AzureEmulator::start(KEY);
        let (status, _, mp3) = synth(
            &emulator,
            "audio-24khz-96kbitrate-mono-mp3",
            &ssml("en-US-GuyNeural", &"a".repeat(50)),
        );
        assert_eq!(status, 200);
        // 24 kHz at 96 kbit/s: 288-byte MPEG-2 frames of 576 samples; 2 s needs 84 frames.
        assert_eq!(mp3.len(), 84 * 288);
        for frame in mp3.chunks(288) {
            assert_eq!(&frame[..4], &[0xFF, 0xF3, 0xA4, 0xC0]);
        }
        let (_, _, mp3) = synth(
            &emulator,
            "audio-48khz-192kbitrate-mono-mp3",
            &ssml("en-US-GuyNeural", "abc"),
        );
        assert_eq!(&mp3[..4], &[0xFF, 0xFB, 0xB4, 0xC0]);
        assert_eq!(mp3.len() % 576, 0);
    }

    #[test]
    fn ogg_pages_carry_valid_crcs_and_opus_headers() {
        let emulator = AzureEmulator::start(KEY);
        let (status, _, ogg) = synth(
            &emulator,
            "ogg-24khz-16bit-mono-opus",
            &ssml("zh-CN-YunxiNeural", &"字".repeat(100)),
        );
        assert_eq!(status, 200);
        let mut at = 0;
        let mut pages = Vec::new();
        while at < ogg.len() {
            assert_eq!(&ogg[at..at + 4], b"OggS");
            let segments = usize::from(ogg[at + 26]);
            let body: usize = ogg[at + 27..at + 27 + segments]
                .iter()
                .map(|b| usize::from(*b))
                .sum();
            let end = at + 27 + segments + body;
            let mut page = ogg[at..end].to_vec();
            let crc = u32_at(&page, 22);
            page[22..26].fill(0);
            assert_eq!(ogg_crc(&page), crc);
            pages.push(ogg[at..end].to_vec());
            at = end;
        }
        assert_eq!(pages[0][5], 0x02);
        assert_eq!(&pages[0][28..36], b"OpusHead");
        assert_eq!(&pages[1][28..36], b"OpusTags");
        let last = pages.last().unwrap();
        assert_eq!(last[5], 0x04);
        // 100 characters at 40 ms is 4 s: 200 frames of 960 samples after the pre-skip.
        let granule = u64::from_le_bytes(last[6..14].try_into().unwrap());
        assert_eq!(granule, 312 + 200 * 960);
    }

    #[test]
    fn lists_voices_including_chinese_ones() {
        let emulator = AzureEmulator::start(KEY);
        let (status, _, body) = call(
            &emulator,
            "GET",
            VOICES_PATH,
            &[("Ocp-Apim-Subscription-Key", KEY)],
            "",
        );
        assert_eq!(status, 200);
        let voices: Vec<Value> = serde_json::from_slice(&body).unwrap();
        let yunxi = voices
            .iter()
            .find(|v| v["ShortName"] == "zh-CN-YunxiNeural")
            .unwrap();
        assert_eq!(yunxi["LocalName"], "云希");
        assert_eq!(yunxi["Locale"], "zh-CN");
        assert_eq!(yunxi["SampleRateHertz"], "24000");
        assert!(yunxi["StyleList"].as_array().is_some());
        let henan = voices
            .iter()
            .find(|v| v["ShortName"] == "zh-CN-henan-YundengNeural")
            .unwrap();
        assert_eq!(henan["Locale"], "zh-CN-henan");
        let (status, _, _) = call(&emulator, "GET", VOICES_PATH, &[], "");
        assert_eq!(status, 401);
    }

    #[test]
    fn a_token_from_issue_token_authorizes_synthesis() {
        let emulator = AzureEmulator::start(KEY);
        let (status, _, token) = call(
            &emulator,
            "POST",
            TOKEN_PATH,
            &[("Ocp-Apim-Subscription-Key", KEY)],
            "",
        );
        assert_eq!(status, 200);
        let bearer = format!("Bearer {}", String::from_utf8(token).unwrap());
        let (status, _, _) = call(
            &emulator,
            "POST",
            SYNTHESIZE_PATH,
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/ssml+xml"),
                ("X-Microsoft-OutputFormat", "raw-16khz-16bit-mono-pcm"),
                ("User-Agent", "emulator-test"),
            ],
            &ssml("en-US-JennyNeural", "hi"),
        );
        assert_eq!(status, 200);
        let (status, _, _) = call(
            &emulator,
            "GET",
            VOICES_PATH,
            &[("Authorization", "Bearer forged")],
            "",
        );
        assert_eq!(status, 401);
    }

    #[test]
    fn scripted_faults_come_first_and_in_order() {
        let emulator = AzureEmulator::start(KEY);
        emulator.fail_next(429, &[("Retry-After", "1")]);
        emulator.fail_next(500, &[]);
        let body = ssml("en-US-JennyNeural", "hi");
        let (status, head, _) = synth(&emulator, "riff-24khz-16bit-mono-pcm", &body);
        assert_eq!(status, 429);
        assert!(head.contains("Retry-After: 1\r\n"));
        assert_eq!(synth(&emulator, "riff-24khz-16bit-mono-pcm", &body).0, 500);
        assert_eq!(synth(&emulator, "riff-24khz-16bit-mono-pcm", &body).0, 200);
        assert_eq!(emulator.requests().len(), 3);

        emulator.hang_next();
        let addr = emulator.url().trim_start_matches("http://").to_string();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /cognitiveservices/voices/list HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        assert!(
            stream.read(&mut buf).is_err(),
            "a hung request got an answer"
        );
        assert_eq!(emulator.requests().len(), 4);
    }

    #[test]
    fn every_listed_format_renders() {
        for format in OUTPUT_FORMATS {
            let (media_type, audio) = render(format, 1000);
            assert!(!audio.is_empty(), "{format}");
            assert!(media_type.contains('/'), "{format}");
        }
        let (_, alaw) = render("riff-8khz-8bit-mono-alaw", 500);
        assert_eq!(u32_at(&alaw, 20) & 0xFFFF, 6);
        assert!(alaw.windows(4).any(|w| w == b"fact"));
        let (_, raw) = render("raw-48khz-16bit-mono-pcm", 500);
        assert_eq!(raw.len(), 48_000);
    }
}
