//! MiniMax text-to-speech for launcher, over the `t2a_v2` HTTP API.
//!
//! Tool `minimax` performs `tts`. Settings come from `MINIMAX_API_KEY`, `MINIMAX_GROUP_ID`
//! (only accounts that still need it), `MINIMAX_REGION` (`global`, the default, or `cn` for
//! the mainland host), `MINIMAX_BASE_URL` (replaces the host: proxies, tests) and
//! `MINIMAX_TIMEOUT`.
//!
//! The service answers failures with HTTP 200 and a non-zero `base_resp.status_code`, which
//! the SDK client reads through [`Request::check_answers`]: a rate limit (1002) is resent as
//! after a 429, anything else ends the job with its kind (see [`api::error`]). Audio arrives
//! hex-encoded. Synthesis is billed per character and takes no idempotency key, so a request
//! that may have reached the service is never resent.
//!
//! Long text is split at sentence boundaries and spoken as one file by the SDK's
//! [`Speaker`]: WAV pieces, joined, and encoded once with ffmpeg when a compressed format was
//! asked for. A text that fits one request is asked for in the requested format when MiniMax
//! makes it (MP3, FLAC, PCM, WAV); with `--stream` it is streamed as server-sent events of hex
//! chunks, written to the output as they arrive.

use std::io::Write;
use std::time::Duration;

use launcher_sdk::http::{Client, Request};
use launcher_sdk::serde_json::Value;
use launcher_sdk::speech::{Audio, AudioFormat, Encoding, Piece, Speaker};
use launcher_sdk::text::Limit;
use launcher_sdk::{
    Context, Job, JobResult, Manifest, ParamSpec, ParamType, Plugin, PluginError, SettingSpec,
    Settings, ToolSpec, export_plugin,
};
use serde::Deserialize;

pub mod api;

use api::{Answer, Speech};

/// The tool id.
pub const TOOL: &str = "minimax";

const T2A_PATH: &str = "/v1/t2a_v2";

/// The most text one request carries. The service takes up to 10,000 characters, but
/// synthesis time grows with the text; 3,000 characters (about ten minutes of Chinese
/// speech) keep each request well inside its timeout and a failure cheap to repeat.
pub const MAX_PIECE_CHARS: usize = 3000;

/// Per-attempt timeout when the `timeout` setting is absent: long pieces take a while.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The plugin: one configured connection to MiniMax.
pub struct MiniMax {
    client: Client,
    url: String,
    key: String,
}

/// The parameters of a `tts` job (ranges are checked by the host).
#[derive(Deserialize)]
struct Speak {
    text: String,
    voice: Option<String>,
    rate: Option<f64>,
    pitch: Option<f64>,
    volume: Option<f64>,
    emotion: Option<String>,
    model: Option<String>,
    format: Option<String>,
    sample_rate: Option<u32>,
    bitrate: Option<u32>,
    #[serde(default)]
    stream: bool,
}

/// Returns the synthesis URL for `settings`: the base URL if given, else the region's host,
/// with the group id when there is one.
fn synthesis_url(settings: &Settings) -> Result<String, PluginError> {
    let base_url = settings
        .base_url("base_url")
        .map_err(|e| e.with_hint("e.g. MINIMAX_BASE_URL=https://api.minimax.io"))?;
    let base = match base_url {
        Some(url) => url,
        None => match settings
            .get("region")
            .map(|r| r.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("global") | Some("") => api::GLOBAL_URL.to_string(),
            Some("cn") | Some("china") => api::CN_URL.to_string(),
            Some(other) => {
                return Err(PluginError::invalid_input(format!(
                    "setting `region` is `{other}`, not `global` or `cn`"
                ))
                .with_hint("MINIMAX_REGION=cn uses api.minimaxi.com, global api.minimax.io"));
            }
        },
    };
    let mut url = format!("{base}{T2A_PATH}");
    if let Some(group) = settings
        .get("group_id")
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        if !group.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(PluginError::invalid_input(
                "setting `group_id` must be the digits of a MiniMax group id",
            ));
        }
        url.push_str(&format!("?GroupId={group}"));
    }
    Ok(url)
}

/// Returns the format MiniMax makes for an output format, if it makes it.
fn native_format(format: &AudioFormat) -> Option<&'static str> {
    match format.encoding {
        Encoding::Mp3 => Some("mp3"),
        Encoding::Flac => Some("flac"),
        Encoding::Pcm => Some("pcm"),
        Encoding::Wav => Some("wav"),
        _ => None,
    }
}

impl Plugin for MiniMax {
    fn manifest() -> Manifest {
        let tool = ToolSpec::new(TOOL, &["tts"])
            .description("MiniMax speech (strong Mandarin), over the t2a_v2 API")
            .cloud()
            .priority(90)
            .param(
                ParamSpec::new("rate", ParamType::Number, "speaking speed, 1.0 is normal")
                    .range(0.5, 2.0),
            )
            .param(
                ParamSpec::new(
                    "pitch",
                    ParamType::Number,
                    "pitch, 1.0 is normal, 2.0 an octave up (sent in whole semitones)",
                )
                .range(0.5, 2.0),
            )
            .param(
                ParamSpec::new("volume", ParamType::Number, "loudness, 1.0 is normal")
                    .range(0.01, 10.0),
            )
            .param(
                ParamSpec::new("emotion", ParamType::String, "how the voice sounds")
                    .choices(api::EMOTIONS.iter().copied()),
            )
            .param(
                ParamSpec::new("model", ParamType::String, "the speech model")
                    .default_value(api::DEFAULT_MODEL),
            )
            .param(
                ParamSpec::new(
                    "sample_rate",
                    ParamType::Integer,
                    "samples per second: 8000, 16000, 22050, 24000, 32000 or 44100",
                )
                .range(8000.0, 44_100.0),
            )
            .param(
                ParamSpec::new(
                    "bitrate",
                    ParamType::Integer,
                    "MP3 bits per second: 32000, 64000, 128000 or 256000",
                )
                .range(32_000.0, 256_000.0),
            )
            .param(ParamSpec::new(
                "stream",
                ParamType::Boolean,
                "write audio as it is made (text of one request; MP3, FLAC or PCM)",
            ))
            .setting(
                SettingSpec::new("key", "MINIMAX_API_KEY", "the MiniMax API key")
                    .required()
                    .secret(),
            )
            .setting(SettingSpec::new(
                "group_id",
                "MINIMAX_GROUP_ID",
                "the group id, for accounts that still need one",
            ))
            .setting(SettingSpec::new(
                "region",
                "MINIMAX_REGION",
                "global (api.minimax.io, the default) or cn (api.minimaxi.com)",
            ))
            .setting(SettingSpec::new(
                "base_url",
                "MINIMAX_BASE_URL",
                "replaces the region's host, for proxies",
            ))
            .setting(SettingSpec::timeout("MINIMAX_TIMEOUT", DEFAULT_TIMEOUT));
        Manifest::new("minimax", env!("CARGO_PKG_VERSION"))
            .description("MiniMax text-to-speech")
            .tool(tool)
    }

    fn new(tool: &str, settings: &Settings) -> Result<Self, PluginError> {
        launcher_sdk::expect_tool(tool, TOOL)?;
        let key = settings.key("key", "set MINIMAX_API_KEY to your MiniMax API key")?;
        let url = synthesis_url(settings)?;
        let client = Client::builder(format!("launcher-minimax/{}", env!("CARGO_PKG_VERSION")))
            .settings(settings, DEFAULT_TIMEOUT)?
            .secret(key.as_str())
            .build()?;
        Ok(MiniMax { client, url, key })
    }

    fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        match job.task.as_str() {
            "tts" => self.speak(job, cx),
            other => Err(PluginError::invalid_input(format!(
                "{TOOL} does not perform task `{other}`"
            ))),
        }
    }
}

impl MiniMax {
    fn speak(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let params: Speak = job.params()?;
        let text = params.text.as_str();
        let requested = params.format.as_deref().unwrap_or("wav");
        let format = AudioFormat::parse(requested)?;
        let sample_rate = params.sample_rate.unwrap_or(32_000);
        if !api::SAMPLE_RATES.contains(&sample_rate) {
            return Err(PluginError::invalid_input(format!(
                "MiniMax has no sample rate of {sample_rate} Hz"
            ))
            .with_hint("use 8000, 16000, 22050, 24000, 32000 or 44100"));
        }
        let bitrate = params.bitrate.unwrap_or(128_000);
        if !api::BITRATES.contains(&bitrate) {
            return Err(PluginError::invalid_input(format!(
                "MiniMax has no MP3 bit rate of {bitrate}"
            ))
            .with_hint("use 32000, 64000, 128000 or 256000"));
        }
        let voice = params
            .voice
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or(api::DEFAULT_VOICE);
        let speech = Speech {
            model: params.model.as_deref().unwrap_or(api::DEFAULT_MODEL),
            voice,
            speed: params.rate.unwrap_or(1.0),
            volume: params.volume.unwrap_or(1.0),
            pitch: api::semitones(params.pitch.unwrap_or(1.0)),
            emotion: params.emotion.as_deref(),
            sample_rate,
            bitrate,
        };
        let speaker =
            Speaker::new(format.clone(), Limit::chars(MAX_PIECE_CHARS)).work_dir(job.work_dir());
        if params.stream {
            speaker.require_one_request(text, "--stream")?;
        }
        let streamable = native_format(&format).filter(|f| *f != "wav");
        if params.stream && streamable.is_none() {
            return Err(PluginError::invalid_input(format!(
                "MiniMax streams MP3, FLAC and PCM, not {}",
                format.extension
            ))
            .with_hint("use --format mp3 with --stream, or leave out --stream"));
        }
        let spoken = speaker.speak(text, cx, |piece, cx| {
            match (piece.is_direct(), native_format(piece.format())) {
                (true, Some(native)) if params.stream => self.stream(&speech, piece, native, cx),
                (true, Some(native)) => {
                    piece.write(&self.synthesize(&speech, piece.text, native, cx)?, cx)
                }
                _ => Ok(Audio::Wav(self.synthesize(&speech, piece.text, "wav", cx)?)),
            }
        })?;
        let mut result = JobResult::default();
        let info = &mut result.info;
        info.insert("voice".into(), Value::from(voice));
        info.insert("model".into(), Value::from(speech.model));
        info.insert("format".into(), Value::from(format.extension));
        info.insert("characters".into(), Value::from(text.chars().count()));
        spoken.add_to(info);
        Ok(result)
    }

    fn request(&self, speech: &Speech<'_>, text: &str, format: &str, stream: bool) -> Request {
        // Left as POST's default, not idempotent: see the crate documentation.
        Request::post(&self.url)
            .secret_header("Authorization", format!("Bearer {}", self.key))
            .header("Content-Type", "application/json")
            .body(api::body(speech, text, format, stream).to_string())
    }

    /// Synthesizes `text` in `format` in one answer and returns the audio.
    fn synthesize(
        &self,
        speech: &Speech<'_>,
        text: &str,
        format: &str,
        cx: &mut Context<'_>,
    ) -> Result<Vec<u8>, PluginError> {
        let request = self
            .request(speech, text, format, false)
            .check_answers(|fetched| {
                // A body that is not JSON is not a refusal; reading it below says what it is.
                let answer: Answer = match fetched.json() {
                    Ok(answer) => answer,
                    Err(_) => return Ok(()),
                };
                api::refusal(&answer.base_resp).map_or(Ok(()), Err)
            });
        let answer: Answer = self.client.fetch(&request, cx)?.json()?;
        let data = answer
            .data
            .filter(|d| !d.audio.is_empty())
            .ok_or_else(|| PluginError::unavailable("MiniMax answered without audio"))?;
        api::unhex(&data.audio)
    }

    /// Streams one direct piece: hex chunks of audio in server-sent events, each written to
    /// the output as it arrives. The last event repeats the whole audio, so it is written
    /// only when no chunk came before it.
    fn stream(
        &self,
        speech: &Speech<'_>,
        piece: &Piece<'_>,
        format: &str,
        cx: &mut Context<'_>,
    ) -> Result<Audio, PluginError> {
        let request = self.request(speech, piece.text, format, true);
        let response = self.client.send(&request, cx)?;
        let is_json = response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"));
        if is_json {
            // A failure before streaming began comes as one JSON answer.
            let answer: Answer = response.json(&*cx)?;
            return Err(api::error(&answer.base_resp).unwrap_or_else(|| {
                PluginError::unavailable("MiniMax answered a streaming request without a stream")
            }));
        }
        let mut events = response.events();
        let mut written = 0u64;
        // The output is opened with the first audio, so a refusal leaves no file.
        let first = loop {
            let Some(event) = events.next(&*cx)? else {
                return Err(cut_off());
            };
            let answer: Answer = event.json()?;
            if let Some(err) = api::error(&answer.base_resp) {
                return Err(err);
            }
            if let Some(data) = answer.data.filter(|d| !d.audio.is_empty()) {
                break data;
            }
        };
        let mut out = piece.output(cx)?;
        let mut done = first.status == 2;
        let audio = api::unhex(&first.audio)?;
        out.write_all(&audio)?;
        written += audio.len() as u64;
        while !done {
            let Some(event) = events.next(&out)? else {
                return Err(cut_off());
            };
            let answer: Answer = event.json()?;
            if let Some(err) = api::error(&answer.base_resp) {
                return Err(err);
            }
            let Some(data) = answer.data else { continue };
            if data.status == 2 {
                done = true;
                continue;
            }
            let audio = api::unhex(&data.audio)?;
            out.write_all(&audio)?;
            written += audio.len() as u64;
        }
        out.finish()?;
        Ok(Audio::Written(written))
    }
}

fn cut_off() -> PluginError {
    PluginError::unavailable("MiniMax's audio stream ended before the audio was complete")
}

export_plugin!(MiniMax);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_values(pairs.iter().copied())
    }

    #[test]
    fn the_url_comes_from_the_base_url_or_the_region() {
        assert_eq!(
            synthesis_url(&settings(&[])).unwrap(),
            "https://api.minimax.io/v1/t2a_v2"
        );
        assert_eq!(
            synthesis_url(&settings(&[("region", "CN")])).unwrap(),
            "https://api.minimaxi.com/v1/t2a_v2"
        );
        assert_eq!(
            synthesis_url(&settings(&[
                ("region", "cn"),
                ("base_url", "http://127.0.0.1:9/"),
                ("group_id", "1782"),
            ]))
            .unwrap(),
            "http://127.0.0.1:9/v1/t2a_v2?GroupId=1782"
        );
        assert!(synthesis_url(&settings(&[("region", "mars")])).is_err());
        assert!(synthesis_url(&settings(&[("base_url", "ftp://x")])).is_err());
        assert!(synthesis_url(&settings(&[("group_id", "1&x=2")])).is_err());
    }

    #[test]
    fn minimax_makes_mp3_flac_pcm_and_wav_itself() {
        let native = |name: &str| native_format(&AudioFormat::named(name).unwrap());
        assert_eq!(native("mp3"), Some("mp3"));
        assert_eq!(native("flac"), Some("flac"));
        assert_eq!(native("pcm"), Some("pcm"));
        assert_eq!(native("wav"), Some("wav"));
        assert_eq!(native("ogg"), None);
    }
}
