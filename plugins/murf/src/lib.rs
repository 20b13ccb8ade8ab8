//! Murf text-to-speech for launcher, over its HTTP API.
//!
//! Tool `murf` performs `tts` and `voices` (the service's voices as the standard JSON list,
//! with locale, gender and styles). Settings come from `MURF_API_KEY` (sent as the `api-key`
//! header), `MURF_REGION` (a regional host such as `us-east` or `eu-central`; the default
//! host otherwise), `MURF_BASE_URL` (replaces the host: proxies, tests) and `MURF_TIMEOUT`.
//!
//! Speech comes from `POST /v1/speech/generate`, which answers with the URL of the audio
//! file (fetched at once, without the key), or, when the user asks for zero retention, with
//! the audio itself in base64 so Murf keeps no file. With `--stream`, a text that fits one
//! request goes to `POST /v1/speech/stream` instead and its chunked audio is written to the
//! output as it arrives. Long text is split at sentence boundaries and spoken as one file by
//! the SDK's [`Speaker`]: WAV pieces, joined, and encoded once with ffmpeg when a compressed
//! format was asked for.
//!
//! Synthesis is billed per character, so a synthesis request that may have reached the
//! service is never resent, and a 402 (the character quota is spent) ends the job at once
//! with a hint: waiting does not help.

use std::time::Duration;

use base64::Engine;
use launcher_sdk::http::{Client, Request, Verdict};
use launcher_sdk::serde_json::{Value, json};
use launcher_sdk::speech::{Audio, AudioFormat, Encoding, Piece, Speaker};
use launcher_sdk::text::Limit;
use launcher_sdk::{
    Context, ErrorKind, Job, JobResult, LogLevel, Manifest, ParamSpec, ParamType, Plugin,
    PluginError, SettingSpec, Settings, ToolSpec, export_plugin,
};
use serde::{Deserialize, Serialize};

/// The tool id.
pub const TOOL: &str = "murf";

const GENERATE_PATH: &str = "/v1/speech/generate";
const STREAM_PATH: &str = "/v1/speech/stream";
const VOICES_PATH: &str = "/v1/speech/voices";

/// The default host.
pub const DEFAULT_URL: &str = "https://api.murf.ai";

/// The regional hosts, `https://{region}.api.murf.ai`; `global` picks the nearest.
pub const REGIONS: &[&str] = &[
    "global",
    "us-east",
    "us-west",
    "in",
    "eu-central",
    "uk",
    "jp",
    "kr",
    "au",
    "ca",
    "me",
    "sa-east",
];

/// The voice used when none is given.
pub const DEFAULT_VOICE: &str = "en-US-natalie";

/// The most text one request carries: Murf's documentation names no limit, and 3,000
/// characters is what its own clients send at most.
pub const MAX_PIECE_CHARS: usize = 3000;

/// Sample rates generate offers; stream also offers 16000.
const SAMPLE_RATES: &[u32] = &[8000, 24_000, 44_100, 48_000];

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The plugin: one configured connection to Murf.
pub struct Murf {
    client: Client,
    base: String,
    key: String,
}

/// The parameters of a `tts` job (ranges are checked by the host).
#[derive(Deserialize)]
struct Speak {
    text: String,
    voice: Option<String>,
    rate: Option<f64>,
    pitch: Option<f64>,
    style: Option<String>,
    locale: Option<String>,
    format: Option<String>,
    sample_rate: Option<u32>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    zero_retention: bool,
}

/// How a voice speaks.
struct Speech<'a> {
    voice: &'a str,
    rate: i64,
    pitch: i64,
    style: Option<&'a str>,
    locale: Option<&'a str>,
    sample_rate: u32,
}

/// Returns a multiplier (1.0 is normal) as the percentage change Murf takes, -50 to 50.
fn percent(multiplier: f64) -> i64 {
    ((multiplier - 1.0) * 100.0).round().clamp(-50.0, 50.0) as i64
}

/// Returns the format Murf makes for an output format, if it makes it.
fn native_format(format: &AudioFormat) -> Option<&'static str> {
    match format.encoding {
        Encoding::Mp3 => Some("MP3"),
        Encoding::Wav => Some("WAV"),
        Encoding::Flac => Some("FLAC"),
        Encoding::Pcm => Some("PCM"),
        Encoding::Opus => Some("OGG"),
        _ => None,
    }
}

/// Returns the base URL for `settings`: the base URL if given, else the region's host.
fn base_url(settings: &Settings) -> Result<String, PluginError> {
    let base_url = settings
        .base_url("base_url")
        .map_err(|e| e.with_hint("e.g. MURF_BASE_URL=https://api.murf.ai"))?;
    if let Some(url) = base_url {
        return Ok(url);
    }
    match settings
        .get("region")
        .map(|r| r.trim().to_ascii_lowercase())
    {
        None => Ok(DEFAULT_URL.to_string()),
        Some(region) if region.is_empty() => Ok(DEFAULT_URL.to_string()),
        Some(region) if REGIONS.contains(&region.as_str()) => {
            Ok(format!("https://{region}.api.murf.ai"))
        }
        Some(region) => Err(PluginError::invalid_input(format!(
            "setting `region` is `{region}`, which is not a Murf region"
        ))
        .with_hint(format!("use one of {}", REGIONS.join(", ")))),
    }
}

/// Reads Murf's error answers: a 402 means the character quota is spent, which waiting
/// does not change.
fn read_error(reply: &launcher_sdk::http::ErrorReply<'_>) -> Verdict {
    if reply.status != 402 {
        return Verdict::Default;
    }
    let said = reply
        .json()
        .and_then(|b| b["errorMessage"].as_str().map(str::to_string))
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    Verdict::Fail(
        PluginError::rate_limited(
            format!(
                "Murf refused the request: the account's character quota is spent (HTTP 402){said}"
            ),
            None,
        )
        .with_hint("waiting will not help: upgrade the Murf plan or use another key"),
    )
}

/// Adds what the user can do to errors the service caused.
fn with_advice(err: PluginError) -> PluginError {
    if err.hint.is_some() {
        return err;
    }
    match err.kind {
        ErrorKind::Unauthorized => err.with_hint("check MURF_API_KEY"),
        ErrorKind::InvalidInput => err.with_hint(
            "check the voice (`launcher run voices --tool murf` lists them), its style and locale",
        ),
        _ => err,
    }
}

impl Plugin for Murf {
    fn manifest() -> Manifest {
        let tts = &["tts"];
        let tool = ToolSpec::new(TOOL, &["tts", "voices"])
            .description("Murf studio voices, over the Murf API")
            .cloud()
            .priority(80)
            .param(
                ParamSpec::new("rate", ParamType::Number, "speaking rate, 1.0 is normal")
                    .range(0.5, 1.5)
                    .only_for(tts),
            )
            .param(
                ParamSpec::new("pitch", ParamType::Number, "pitch, 1.0 is normal")
                    .range(0.5, 1.5)
                    .only_for(tts),
            )
            .param(
                ParamSpec::new(
                    "style",
                    ParamType::String,
                    "speaking style, e.g. Conversational (the voices task lists each voice's)",
                )
                .only_for(tts),
            )
            .param(
                ParamSpec::new(
                    "locale",
                    ParamType::String,
                    "the language a multilingual voice speaks, e.g. zh-CN",
                )
                .only_for(tts),
            )
            .param(
                ParamSpec::new(
                    "sample_rate",
                    ParamType::Integer,
                    "samples per second: 8000, 24000 (default), 44100 or 48000; 16000 with --stream",
                )
                .range(8000.0, 48_000.0)
                .only_for(tts),
            )
            .param(
                ParamSpec::new(
                    "stream",
                    ParamType::Boolean,
                    "write audio as it is made (text of one request)",
                )
                .only_for(tts),
            )
            .param(
                ParamSpec::new(
                    "zero_retention",
                    ParamType::Boolean,
                    "have the audio sent in the answer, so Murf keeps no file",
                )
                .only_for(tts),
            )
            .setting(
                SettingSpec::new("key", "MURF_API_KEY", "the Murf API key")
                    .required()
                    .secret(),
            )
            .setting(SettingSpec::new(
                "region",
                "MURF_REGION",
                "a regional host, e.g. us-east, eu-central, in, jp (default api.murf.ai)",
            ))
            .setting(SettingSpec::new(
                "base_url",
                "MURF_BASE_URL",
                "replaces the region's host, for proxies",
            ))
            .setting(SettingSpec::timeout("MURF_TIMEOUT", DEFAULT_TIMEOUT));
        Manifest::new("murf", env!("CARGO_PKG_VERSION"))
            .description("Murf text-to-speech")
            .tool(tool)
    }

    fn new(tool: &str, settings: &Settings) -> Result<Self, PluginError> {
        launcher_sdk::expect_tool(tool, TOOL)?;
        let key = settings.key("key", "set MURF_API_KEY to your Murf API key")?;
        let base = base_url(settings)?;
        let client = Client::builder(format!("launcher-murf/{}", env!("CARGO_PKG_VERSION")))
            .settings(settings, DEFAULT_TIMEOUT)?
            .secret(key.as_str())
            .build()?;
        Ok(Murf { client, base, key })
    }

    fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let result = match job.task.as_str() {
            "tts" => self.speak(job, cx),
            "voices" => self.voices(job, cx),
            other => Err(PluginError::invalid_input(format!(
                "{TOOL} does not perform task `{other}`"
            ))),
        };
        result.map_err(with_advice)
    }
}

/// What generate answers.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Generated {
    #[serde(default)]
    audio_file: Option<String>,
    #[serde(default)]
    encoded_audio: Option<String>,
    #[serde(default)]
    warning: Option<String>,
}

impl Murf {
    fn speak(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let params: Speak = job.params()?;
        let text = params.text.as_str();
        let requested = params.format.as_deref().unwrap_or("wav");
        let format = AudioFormat::parse(requested)?;
        let sample_rate = params.sample_rate.unwrap_or(24_000);
        let rate_ok =
            SAMPLE_RATES.contains(&sample_rate) || (params.stream && sample_rate == 16_000);
        if !rate_ok {
            return Err(PluginError::invalid_input(format!(
                "Murf has no sample rate of {sample_rate} Hz here"
            ))
            .with_hint("use 8000, 24000, 44100 or 48000 (16000 only with --stream)"));
        }
        let speech = Speech {
            voice: params
                .voice
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .unwrap_or(DEFAULT_VOICE),
            rate: percent(params.rate.unwrap_or(1.0)),
            pitch: percent(params.pitch.unwrap_or(1.0)),
            style: params
                .style
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty()),
            locale: params
                .locale
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty()),
            sample_rate,
        };
        let speaker =
            Speaker::new(format.clone(), Limit::chars(MAX_PIECE_CHARS)).work_dir(job.work_dir());
        if params.stream {
            speaker.require_one_request(text, "--stream")?;
        }
        if params.stream && native_format(&format).is_none() {
            return Err(PluginError::invalid_input(format!(
                "Murf streams MP3, WAV, FLAC, PCM and Ogg, not {}",
                format.extension
            ))
            .with_hint("use --format mp3 with --stream, or leave out --stream"));
        }
        let retention = params.zero_retention;
        let spoken = speaker.speak(text, cx, |piece, cx| {
            match (piece.is_direct(), native_format(piece.format())) {
                (true, Some(native)) if params.stream => self.stream(&speech, piece, native, cx),
                (true, Some(native)) => piece.write(
                    &self.generate(&speech, piece.text, native, retention, cx)?,
                    cx,
                ),
                _ => Ok(Audio::Wav(
                    self.generate(&speech, piece.text, "WAV", retention, cx)?,
                )),
            }
        })?;
        let mut result = JobResult::default();
        let info = &mut result.info;
        info.insert("voice".into(), Value::from(speech.voice));
        info.insert("format".into(), Value::from(format.extension));
        info.insert("characters".into(), Value::from(text.chars().count()));
        spoken.add_to(info);
        Ok(result)
    }

    fn synthesis_request(
        &self,
        path: &str,
        speech: &Speech<'_>,
        text: &str,
        format: &str,
        extra: &[(&str, Value)],
    ) -> Result<Request, PluginError> {
        let mut body = json!({
            "text": text,
            "voiceId": speech.voice,
            "format": format,
            "sampleRate": speech.sample_rate,
            "channelType": "MONO",
            "rate": speech.rate,
            "pitch": speech.pitch,
        });
        if let Some(style) = speech.style {
            body["style"] = json!(style);
        }
        if let Some(locale) = speech.locale {
            body["locale"] = json!(locale);
        }
        for (name, value) in extra {
            body[*name] = value.clone();
        }
        // Left as POST's default, not idempotent: see the crate documentation.
        Request::post(format!("{}{path}", self.base))
            .secret_header("api-key", self.key.as_str())
            .read_errors(read_error)
            .json(&body)
    }

    /// Generates `text` in `format` and returns the audio: fetched from the URL Murf gives,
    /// or decoded from the answer when `zero_retention`.
    fn generate(
        &self,
        speech: &Speech<'_>,
        text: &str,
        format: &str,
        zero_retention: bool,
        cx: &mut Context<'_>,
    ) -> Result<Vec<u8>, PluginError> {
        let extra = [("encodeAsBase64", json!(true))];
        let extra: &[(&str, Value)] = if zero_retention { &extra } else { &[] };
        let request = self.synthesis_request(GENERATE_PATH, speech, text, format, extra)?;
        let answer: Generated = self.client.fetch(&request, cx)?.json()?;
        if let Some(warning) = answer.warning.filter(|w| !w.trim().is_empty()) {
            cx.log(LogLevel::Warn, format!("Murf warns: {warning}"));
        }
        if zero_retention {
            let encoded = answer
                .encoded_audio
                .filter(|a| !a.is_empty())
                .ok_or_else(|| PluginError::unavailable("Murf answered without the audio"))?;
            return base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| PluginError::unavailable("Murf sent audio that is not valid base64"));
        }
        let url = answer
            .audio_file
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .ok_or_else(|| PluginError::unavailable("Murf answered without an audio file URL"))?;
        // A presigned URL: the key stays with the API.
        Ok(self.client.fetch(&Request::get(url), cx)?.body)
    }

    /// Streams one direct piece: the chunked answer goes to the output as it arrives.
    fn stream(
        &self,
        speech: &Speech<'_>,
        piece: &Piece<'_>,
        format: &str,
        cx: &mut Context<'_>,
    ) -> Result<Audio, PluginError> {
        let request = self.synthesis_request(STREAM_PATH, speech, piece.text, format, &[])?;
        let mut response = self.client.send(&request, cx)?;
        let mut out = piece.output(cx)?;
        let written = response.copy_to(&mut out)?;
        out.finish()?;
        Ok(Audio::Written(written))
    }

    fn voices(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let wanted = job.given("language");
        let request = Request::get(format!("{}{VOICES_PATH}", self.base))
            .secret_header("api-key", self.key.as_str());
        let listed: Vec<ServiceVoice> = self.client.fetch(&request, cx)?.json()?;
        let mut voices: Vec<Voice> = listed
            .into_iter()
            .map(Voice::from)
            .filter(|v| wanted.is_none_or(|w| v.speaks(w)))
            .collect();
        if voices.is_empty() {
            return Err(match wanted {
                Some(language) => PluginError::invalid_input(format!(
                    "no Murf voice speaks `{language}`"
                ))
                .with_hint(
                    "give a language such as zh or a locale such as zh-CN, or leave out --language",
                ),
                None => PluginError::unavailable("Murf listed no voices"),
            });
        }
        voices.sort_by(|a, b| (&a.locale, &a.id).cmp(&(&b.locale, &b.id)));
        cx.json("voices", &voices)?;
        let mut result = JobResult::default();
        result
            .info
            .insert("voices".into(), Value::from(voices.len()));
        Ok(result)
    }
}

/// A voice as Murf lists it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceVoice {
    voice_id: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    locale: String,
    #[serde(default)]
    accent: String,
    #[serde(default)]
    gender: String,
    #[serde(default)]
    available_styles: Vec<String>,
    /// Keyed by locale; the values' shape is not documented.
    #[serde(default)]
    supported_locales: launcher_sdk::serde_json::Map<String, Value>,
}

/// A voice as the `voices` task lists it: the standard `id`, `name` and `language`, then
/// what Murf adds.
#[derive(Debug, Serialize)]
struct Voice {
    id: String,
    name: String,
    language: String,
    locale: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    gender: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    accent: String,
    styles: Vec<String>,
    locales: Vec<String>,
}

impl Voice {
    /// Returns whether the voice speaks `wanted`: a language (`zh`) or a locale (`zh-CN`).
    fn speaks(&self, wanted: &str) -> bool {
        std::iter::once(&self.locale)
            .chain(&self.locales)
            .any(|l| launcher_sdk::speech::speaks(l, wanted))
    }
}

impl From<ServiceVoice> for Voice {
    fn from(v: ServiceVoice) -> Voice {
        let name = match v.display_name.split_once(" (") {
            Some((name, _)) => name.to_string(),
            None if v.display_name.is_empty() => v.voice_id.clone(),
            None => v.display_name,
        };
        Voice {
            name,
            language: v.locale.split('-').next().unwrap_or_default().to_string(),
            locales: v.supported_locales.keys().cloned().collect(),
            id: v.voice_id,
            locale: v.locale,
            gender: v.gender.to_ascii_lowercase(),
            accent: v.accent,
            styles: v.available_styles,
        }
    }
}

export_plugin!(Murf);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_values(pairs.iter().copied())
    }

    #[test]
    fn the_base_url_comes_from_the_setting_or_the_region() {
        assert_eq!(base_url(&settings(&[])).unwrap(), "https://api.murf.ai");
        assert_eq!(
            base_url(&settings(&[("region", "EU-Central")])).unwrap(),
            "https://eu-central.api.murf.ai"
        );
        assert_eq!(
            base_url(&settings(&[
                ("region", "jp"),
                ("base_url", "http://127.0.0.1:9/")
            ]))
            .unwrap(),
            "http://127.0.0.1:9"
        );
        assert!(base_url(&settings(&[("region", "moon")])).is_err());
        assert!(base_url(&settings(&[("region", "us-east.evil.com/")])).is_err());
        assert!(base_url(&settings(&[("base_url", "ftp://x")])).is_err());
    }

    #[test]
    fn multipliers_become_percentages_within_murfs_range() {
        assert_eq!(percent(1.0), 0);
        assert_eq!(percent(1.2), 20);
        assert_eq!(percent(0.5), -50);
        assert_eq!(percent(2.0), 50);
    }

    #[test]
    fn voices_speak_their_locale_and_the_ones_they_support() {
        let voice = Voice::from(ServiceVoice {
            voice_id: "en-US-natalie".into(),
            display_name: "Natalie (F)".into(),
            locale: "en-US".into(),
            accent: "US".into(),
            gender: "Female".into(),
            available_styles: vec!["Promo".into()],
            supported_locales: [("zh-CN".to_string(), json!({}))].into_iter().collect(),
        });
        assert_eq!(voice.name, "Natalie");
        assert_eq!(voice.language, "en");
        assert_eq!(voice.gender, "female");
        assert!(voice.speaks("en"));
        assert!(voice.speaks("zh_cn"));
        assert!(!voice.speaks("fr"));
    }
}
