//! ElevenLabs wire shapes: output formats, the synthesis body, and what its errors mean.
//!
//! Synthesis is `POST /v1/text-to-speech/{voice_id}/stream?output_format=…` with
//! `xi-api-key` and a JSON body; the audio comes back chunked as it is made. Errors are
//! FastAPI's: `{"detail": {"status", "message"}}`, or `{"detail": [{"loc", "msg", "type"}]}`
//! for a 422. Two pairs share a status code and must be told apart by `detail.status`:
//!
//! - 401 `invalid_api_key` (the key is wrong: fix the setting) and 401 `quota_exceeded` (the
//!   key is fine, the account's credits are spent: waiting seconds will not help, so it is
//!   never retried);
//! - 429 `too_many_concurrent_requests` (the plan's concurrency is taken: a slot frees in a
//!   moment, so it is retried soon) and 429 `system_busy` (the service is overloaded: retried
//!   with exponential backoff and jitter).

use std::time::Duration;

use launcher_sdk::http::{ErrorReply, Verdict};
use launcher_sdk::media::{SampleFormat, WavSpec};
use launcher_sdk::serde_json::Value;
use launcher_sdk::speech::AudioFormat;
use launcher_sdk::{ErrorKind, PluginError};
use serde::{Deserialize, Serialize};

/// How long to wait before retrying when the plan's concurrent requests are all taken.
pub const CONCURRENCY_WAIT: Duration = Duration::from_secs(1);

/// The service's default output format.
pub const DEFAULT_OUTPUT_FORMAT: &str = "mp3_44100_128";

/// What long text is asked for piece by piece when no PCM rate was chosen: 24 kHz is on
/// every plan (44.1 kHz PCM needs Pro) and plenty for speech.
pub const PIECE_FORMAT: &str = "pcm_24000";

/// Every `output_format` the contract lists.
pub const OUTPUT_FORMATS: &[&str] = &[
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

/// The codec of an output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// MP3 frames.
    Mp3,
    /// Headerless 16-bit little-endian mono samples.
    Pcm,
    /// Headerless µ-law samples.
    Ulaw,
    /// Headerless A-law samples.
    Alaw,
    /// Opus in Ogg.
    Opus,
}

/// One of the service's output formats, e.g. `mp3_44100_128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputFormat {
    /// Its name, as `output_format` takes it.
    pub name: &'static str,
    /// Its codec.
    pub codec: Codec,
    /// Samples per second.
    pub sample_rate: u32,
    /// The bit rate of a compressed format, in kbit/s.
    pub kbps: Option<u32>,
}

impl OutputFormat {
    /// Returns the format named `name`, one of [`OUTPUT_FORMATS`].
    pub fn named(name: &str) -> Result<OutputFormat, PluginError> {
        let name = name.trim().to_ascii_lowercase();
        let Some(known) = OUTPUT_FORMATS.iter().find(|f| **f == name) else {
            return Err(PluginError::invalid_input(format!(
                "ElevenLabs has no output format `{name}`"
            ))
            .with_hint(format!("use one of {}", OUTPUT_FORMATS.join(", "))));
        };
        let mut parts = known.split('_');
        let codec = match parts.next() {
            Some("mp3") => Codec::Mp3,
            Some("pcm") => Codec::Pcm,
            Some("ulaw") => Codec::Ulaw,
            Some("alaw") => Codec::Alaw,
            _ => Codec::Opus,
        };
        let number = |p: Option<&str>| p.and_then(|p| p.parse::<u32>().ok());
        Ok(OutputFormat {
            name: known,
            codec,
            sample_rate: number(parts.next()).unwrap_or(0),
            kbps: number(parts.next()),
        })
    }

    /// Returns what the samples of a headerless format are, to put a WAV header on them.
    pub fn raw_spec(&self) -> Option<WavSpec> {
        let (bits, format) = match self.codec {
            Codec::Pcm => (16, SampleFormat::Int),
            Codec::Ulaw => (8, SampleFormat::MuLaw),
            Codec::Alaw => (8, SampleFormat::ALaw),
            Codec::Mp3 | Codec::Opus => return None,
        };
        Some(WavSpec {
            sample_rate: self.sample_rate,
            channels: 1,
            bits_per_sample: bits,
            format,
        })
    }
}

/// How a job's audio is asked for and written.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// What a text of one request is asked for as.
    pub direct: OutputFormat,
    /// Whether that audio goes to the output as it arrives (MP3, Opus, raw PCM); otherwise it
    /// is made into WAV first (and encoded, for formats the service does not offer).
    pub streams: bool,
    /// What each piece of a longer text is asked for as: uncompressed, so it can be joined.
    pub pieces: OutputFormat,
    /// The file written.
    pub output: AudioFormat,
}

/// Works out the [`Plan`] for `--format` and `--output-format`.
pub fn plan(format: Option<&str>, output_format: Option<&str>) -> Result<Plan, PluginError> {
    let chosen = output_format.map(OutputFormat::named).transpose()?;
    let format = format
        .map(|f| f.trim().trim_start_matches('.').to_ascii_lowercase())
        .filter(|f| !f.is_empty());
    let format = match (format, chosen) {
        (Some(f), _) => f,
        (None, Some(chosen)) => match chosen.codec {
            Codec::Mp3 => "mp3".to_string(),
            Codec::Opus => "ogg".to_string(),
            Codec::Pcm | Codec::Ulaw | Codec::Alaw => "wav".to_string(),
        },
        (None, None) => "mp3".to_string(),
    };
    let output = AudioFormat::named(&format).ok_or_else(|| {
        PluginError::invalid_input(format!("unknown audio format `{format}`")).with_hint(
            "use mp3, wav, pcm, ogg (Opus), flac or aac, or an ElevenLabs --output-format",
        )
    })?;
    use launcher_sdk::speech::Encoding;
    let disagree = |chosen: &OutputFormat| {
        PluginError::invalid_input(format!(
            "--format {format} and --output-format {} ask for different audio",
            chosen.name
        ))
        .with_hint("give one of them, or an --output-format of the same kind (mp3_* for mp3, pcm_* for wav and pcm, opus_* for ogg)")
    };
    let direct = match (output.encoding, chosen) {
        (Encoding::Mp3, Some(c)) if c.codec == Codec::Mp3 => c,
        (Encoding::Opus, Some(c)) if c.codec == Codec::Opus => c,
        (Encoding::Wav, Some(c)) if c.raw_spec().is_some() => c,
        (Encoding::Pcm, Some(c)) if c.codec == Codec::Pcm => c,
        (_, Some(c)) => return Err(disagree(&c)),
        (Encoding::Mp3, None) => OutputFormat::named(DEFAULT_OUTPUT_FORMAT)?,
        (Encoding::Opus, None) => OutputFormat::named("opus_48000_64")?,
        // WAV, raw PCM, and what only ffmpeg makes (FLAC, AAC, Vorbis) start from PCM.
        (_, None) => OutputFormat::named(PIECE_FORMAT)?,
    };
    let streams = match output.encoding {
        Encoding::Mp3 | Encoding::Opus => true,
        Encoding::Pcm => direct.codec == Codec::Pcm,
        _ => false,
    };
    let pieces = if direct.raw_spec().is_some() {
        direct
    } else {
        OutputFormat::named(PIECE_FORMAT)?
    };
    let output = match direct.kbps.filter(|_| output.encoding.is_compressed()) {
        Some(kbps) => output.with_bitrate(kbps * 1000),
        None => output,
    };
    Ok(Plan {
        direct,
        streams,
        pieces,
        output,
    })
}

/// Voice settings; each is sent only when given.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VoiceSettings {
    /// How steady the voice is, 0 to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stability: Option<f64>,
    /// How close to the original voice, 0 to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity_boost: Option<f64>,
    /// How much of the speaker's style, 0 to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<f64>,
    /// Whether to boost similarity to the speaker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_speaker_boost: Option<bool>,
    /// Speaking speed, 0.7 to 1.2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
}

impl VoiceSettings {
    /// Returns whether nothing is set, so the object is left out and the voice's own apply.
    pub fn is_empty(&self) -> bool {
        *self == VoiceSettings::default()
    }
}

/// The body of a synthesis request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Synthesis<'a> {
    /// The text of this piece.
    pub text: &'a str,
    /// The model.
    pub model_id: &'a str,
    /// An ISO 639-1 code the model is to speak.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language_code: Option<&'a str>,
    /// How the voice speaks.
    #[serde(skip_serializing_if = "VoiceSettings::is_empty")]
    pub voice_settings: &'a VoiceSettings,
    /// A seed, for repeatable speech.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    /// The end of the piece before this one, so the intonation carries over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_text: Option<&'a str>,
    /// The start of the piece after this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_text: Option<&'a str>,
}

/// How much of a neighbouring piece goes into `previous_text` / `next_text`: a sentence or
/// two is the context that matters.
pub const CONTEXT_CHARS: usize = 300;

/// Returns the last `CONTEXT_CHARS` characters of `text`.
pub fn tail(text: &str) -> &str {
    let count = text.chars().count();
    let skip = count.saturating_sub(CONTEXT_CHARS);
    text.char_indices()
        .nth(skip)
        .map_or(text, |(at, _)| &text[at..])
}

/// Returns the first `CONTEXT_CHARS` characters of `text`.
pub fn head(text: &str) -> &str {
    text.char_indices()
        .nth(CONTEXT_CHARS)
        .map_or(text, |(at, _)| &text[..at])
}

/// Returns whether `voice` looks like a voice id (20 letters and digits) rather than a name.
pub fn is_voice_id(voice: &str) -> bool {
    voice.len() == 20 && voice.chars().all(|c| c.is_ascii_alphanumeric())
}

/// A voice as `GET /v1/voices` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceVoice {
    /// Its id.
    pub voice_id: String,
    /// Its name.
    pub name: String,
    /// `premade`, `cloned`, `generated`, `professional`.
    #[serde(default)]
    pub category: String,
    /// Free-form labels: accent, gender, age, language, use case.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The answer of `GET /v1/voices`.
#[derive(Debug, Clone, Deserialize)]
pub struct VoiceList {
    /// The voices.
    pub voices: Vec<ServiceVoice>,
}

/// A voice as the `voices` task lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Voice {
    /// The voice id, as `--voice` takes it (its name works too).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its language label, or `multilingual` for a voice without one: the multilingual
    /// models speak any of their languages with it.
    pub language: String,
    /// Its category.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub category: String,
    /// Its gender label.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gender: String,
    /// Its accent label.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub accent: String,
}

impl From<ServiceVoice> for Voice {
    fn from(v: ServiceVoice) -> Voice {
        let label = |k: &str| v.labels.get(k).cloned().unwrap_or_default();
        let language = label("language");
        Voice {
            language: if language.is_empty() {
                "multilingual".to_string()
            } else {
                language
            },
            gender: label("gender"),
            accent: label("accent"),
            id: v.voice_id,
            name: v.name,
            category: v.category,
        }
    }
}

impl Voice {
    /// Returns whether the voice speaks `wanted` (`en`, `zh`); a multilingual voice speaks
    /// any language.
    pub fn speaks(&self, wanted: &str) -> bool {
        let wanted = wanted.trim().to_ascii_lowercase();
        let wanted = wanted.split(['-', '_']).next().unwrap_or_default();
        self.language == "multilingual" || self.language.eq_ignore_ascii_case(wanted)
    }
}

/// A model as `GET /v1/models` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceModel {
    /// Its id.
    pub model_id: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Whether it speaks text.
    #[serde(default)]
    pub can_do_text_to_speech: bool,
    /// The languages it speaks.
    #[serde(default)]
    pub languages: Vec<ModelLanguage>,
    /// The most characters one request of a subscriber may carry.
    #[serde(default)]
    pub max_characters_request_subscribed_user: Option<u64>,
}

/// A language of a model.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelLanguage {
    /// Its code, e.g. `zh`.
    pub language_id: String,
}

/// A model as the `models` task lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    /// The model id, as `--model` takes it.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The language codes it speaks.
    pub languages: Vec<String>,
    /// The most characters one request may carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_characters: Option<u64>,
}

impl From<ServiceModel> for Model {
    fn from(m: ServiceModel) -> Model {
        Model {
            name: if m.name.is_empty() {
                m.model_id.clone()
            } else {
                m.name
            },
            id: m.model_id,
            languages: m.languages.into_iter().map(|l| l.language_id).collect(),
            max_characters: m.max_characters_request_subscribed_user,
        }
    }
}

/// Returns `detail.status` and `detail.message` of an error body.
fn detail(body: Option<&Value>) -> (Option<String>, Option<String>) {
    let detail = body.and_then(|b| b.get("detail"));
    let text = |key: &str| {
        detail
            .and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    (text("status"), text("message"))
}

/// Returns a 422 body's complaints, `loc: msg` each.
fn validation(body: Option<&Value>) -> Option<String> {
    let items = body?.get("detail")?.as_array()?;
    let lines: Vec<String> = items
        .iter()
        .filter_map(|item| {
            let msg = item.get("msg")?.as_str()?;
            let loc: Vec<String> = item
                .get("loc")
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            Some(if loc.is_empty() {
                msg.to_string()
            } else {
                format!("{}: {msg}", loc.join("."))
            })
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}

/// Reads an ElevenLabs error answer (see the module documentation).
pub fn read_error(reply: &ErrorReply<'_>) -> Verdict {
    let body = reply.json();
    let (status, message) = detail(body.as_ref());
    let said = |fallback: &str| message.clone().unwrap_or_else(|| fallback.to_string());
    match (reply.status, status.as_deref()) {
        (401, Some("quota_exceeded")) => Verdict::Fail(
            PluginError::new(
                ErrorKind::RateLimited,
                format!(
                    "the ElevenLabs account's quota is used up (quota_exceeded): {}",
                    said("no credits are left")
                ),
            )
            .with_hint("add credits or move to a larger plan at elevenlabs.io, or wait until the quota renews; retrying now does not help"),
        ),
        (401 | 403, status) => Verdict::Fail(
            PluginError::unauthorized(format!(
                "ElevenLabs rejected the API key ({}): {}",
                status.unwrap_or("HTTP 401"),
                said("it is not valid")
            ))
            .with_hint("check ELEVENLABS_API_KEY (setting `api_key`); `launcher keys set elevenlabs api_key` stores it"),
        ),
        (429, Some("too_many_concurrent_requests")) => {
            // A slot frees as soon as another request of the account ends.
            let asked = reply
                .header("retry-after")
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            Verdict::Retry(Some(asked.unwrap_or(CONCURRENCY_WAIT)))
        }
        // The service is overloaded: the usual exponential backoff, or its Retry-After.
        (429, _) => Verdict::Retry(None),
        (422, _) => Verdict::Fail(PluginError::invalid_input(format!(
            "ElevenLabs refused the request's parameters: {}",
            validation(body.as_ref()).unwrap_or_else(|| said("no details given"))
        ))),
        (400 | 404, Some(status)) => {
            let err = PluginError::invalid_input(format!(
                "ElevenLabs refused the request ({status}): {}",
                said("no details given")
            ));
            Verdict::Fail(match status {
                "voice_not_found" => err.with_hint(
                    "`launcher run voices --tool elevenlabs` lists the voices of the account",
                ),
                "model_not_found" => err.with_hint(
                    "`launcher run models --tool elevenlabs` lists the models",
                ),
                _ => err,
            })
        }
        _ => Verdict::Default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use launcher_sdk::serde_json::{self, json};
    use launcher_sdk::speech::Encoding;

    fn reply(status: u16, body: &Value) -> Verdict {
        let bytes = body.to_string().into_bytes();
        read_error(&ErrorReply {
            status,
            headers: &[],
            body: &bytes,
        })
    }

    fn failed(verdict: Verdict) -> PluginError {
        match verdict {
            Verdict::Fail(err) => err,
            other => panic!("not a failure: {other:?}"),
        }
    }

    #[test]
    fn a_wrong_key_and_a_spent_quota_are_told_apart() {
        let key = failed(reply(
            401,
            &json!({"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}),
        ));
        assert_eq!(key.kind, ErrorKind::Unauthorized);
        assert!(key.message.contains("invalid_api_key"), "{}", key.message);
        let quota = failed(reply(
            401,
            &json!({"detail": {"status": "quota_exceeded", "message": "This request exceeds your quota of 10000. You have 0 credits remaining, while 91 credits are required for this request."}}),
        ));
        assert_eq!(quota.kind, ErrorKind::RateLimited);
        assert_eq!(quota.retry_after_secs, None);
        assert!(
            quota.message.contains("91 credits are required"),
            "{}",
            quota.message
        );
        assert!(quota.hint.unwrap().contains("retrying now does not help"));
    }

    #[test]
    fn busy_and_concurrency_limits_are_retried_differently() {
        assert_eq!(
            reply(
                429,
                &json!({"detail": {"status": "too_many_concurrent_requests", "message": "…"}})
            ),
            Verdict::Retry(Some(CONCURRENCY_WAIT))
        );
        assert_eq!(
            reply(
                429,
                &json!({"detail": {"status": "system_busy", "message": "…"}})
            ),
            Verdict::Retry(None)
        );
    }

    #[test]
    fn validation_errors_name_the_fields() {
        let err = failed(reply(
            422,
            &json!({"detail": [{"loc": ["body", "voice_settings", "stability"], "msg": "Input should be less than or equal to 1", "type": "less_than_equal"}]}),
        ));
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(
            err.message
                .contains("body.voice_settings.stability: Input should be less than or equal to 1"),
            "{}",
            err.message
        );
        let voice = failed(reply(
            404,
            &json!({"detail": {"status": "voice_not_found", "message": "A voice with the voice_id x was not found."}}),
        ));
        assert!(voice.hint.unwrap().contains("launcher run voices"));
        assert_eq!(reply(500, &json!({})), Verdict::Default);
    }

    #[test]
    fn formats_follow_format_or_output_format() {
        let p = plan(None, None).unwrap();
        assert_eq!((p.direct.name, p.streams), ("mp3_44100_128", true));
        assert_eq!(p.pieces.name, "pcm_24000");
        assert_eq!(p.output.encoding, Encoding::Mp3);
        assert_eq!(p.output.bitrate, Some(128_000));

        let p = plan(Some("wav"), None).unwrap();
        assert_eq!((p.direct.name, p.streams), ("pcm_24000", false));
        let p = plan(Some("wav"), Some("pcm_16000")).unwrap();
        assert_eq!((p.direct.name, p.pieces.name), ("pcm_16000", "pcm_16000"));
        let p = plan(None, Some("ulaw_8000")).unwrap();
        assert_eq!(p.output.encoding, Encoding::Wav);
        assert_eq!(p.pieces.raw_spec().unwrap().format, SampleFormat::MuLaw);
        let p = plan(Some("pcm"), None).unwrap();
        assert!(p.streams);
        let p = plan(Some("ogg"), Some("opus_48000_96")).unwrap();
        assert_eq!(p.output.bitrate, Some(96_000));
        let p = plan(Some("flac"), None).unwrap();
        assert_eq!((p.direct.name, p.streams), ("pcm_24000", false));
        let p = plan(Some(".MP3"), Some("mp3_22050_32")).unwrap();
        assert_eq!(p.output.bitrate, Some(32_000));

        assert!(plan(Some("mp3"), Some("pcm_16000")).is_err());
        assert!(plan(Some("webm"), None).is_err());
        let err = plan(None, Some("mp3_44100_999")).unwrap_err();
        assert!(err.hint.unwrap().contains("mp3_44100_192"));
    }

    #[test]
    fn pcm_has_a_wav_spec_and_mp3_none() {
        let f = OutputFormat::named("pcm_22050").unwrap();
        let spec = f.raw_spec().unwrap();
        assert!((spec.duration_secs(44100) - 1.0).abs() < 1e-9);
        assert!(
            OutputFormat::named("mp3_44100_64")
                .unwrap()
                .raw_spec()
                .is_none()
        );
    }

    #[test]
    fn only_what_is_set_is_sent() {
        let settings = VoiceSettings {
            stability: Some(0.3),
            ..VoiceSettings::default()
        };
        let body = Synthesis {
            text: "你好",
            model_id: "eleven_multilingual_v2",
            language_code: Some("zh"),
            voice_settings: &settings,
            seed: None,
            previous_text: None,
            next_text: None,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"text": "你好", "model_id": "eleven_multilingual_v2", "language_code": "zh", "voice_settings": {"stability": 0.3}})
        );
        let none = VoiceSettings::default();
        let plain = Synthesis {
            voice_settings: &none,
            language_code: None,
            ..body
        };
        assert!(
            serde_json::to_value(&plain)
                .unwrap()
                .get("voice_settings")
                .is_none()
        );
    }

    #[test]
    fn context_is_cut_at_characters() {
        let long = "长".repeat(CONTEXT_CHARS + 5);
        assert_eq!(tail(&long).chars().count(), CONTEXT_CHARS);
        assert_eq!(head(&long).chars().count(), CONTEXT_CHARS);
        assert_eq!(tail("short"), "short");
        assert!(is_voice_id("21m00Tcm4TlvDq8ikWAM"));
        assert!(!is_voice_id("Rachel"));
    }

    #[test]
    fn voices_without_a_language_are_multilingual() {
        let v: Voice = serde_json::from_value::<ServiceVoice>(json!({
            "voice_id": "21m00Tcm4TlvDq8ikWAM", "name": "Rachel", "category": "premade",
            "labels": {"accent": "american", "gender": "female"}
        }))
        .unwrap()
        .into();
        assert_eq!(v.language, "multilingual");
        assert!(v.speaks("zh-CN"));
        let zh: Voice = serde_json::from_value::<ServiceVoice>(json!({
            "voice_id": "abcdefghij0123456789", "name": "Lin", "labels": {"language": "zh"}
        }))
        .unwrap()
        .into();
        assert!(zh.speaks("zh_CN") && !zh.speaks("en"));
    }
}
