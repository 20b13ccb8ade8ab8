//! ElevenLabs text-to-speech for launcher.
//!
//! Tool `elevenlabs` performs `tts`, `voices` and `models`. Settings: `api_key`
//! (`ELEVENLABS_API_KEY`, the variable ElevenLabs' own SDK reads), `base_url`
//! (`ELEVENLABS_BASE_URL`, for proxies and tests) and `timeout` (`ELEVENLABS_TIMEOUT`).
//!
//! Speech goes through the streaming endpoint, so MP3, Opus and raw PCM reach the output as
//! the service makes them. A text longer than one request ([`PIECE_CHARS`]) is spoken by the
//! SDK's [`Speaker`]: split at sentence ends (Chinese and English alike), each piece asked for
//! as PCM with its neighbours' text as context (`previous_text`, `next_text`, so intonation
//! carries across the cut), the samples joined, and the file encoded once by ffmpeg when a
//! compressed format was asked for: one valid file of the right duration. See [`api`] for the
//! formats and for how its errors are read.
//!
//! Every character synthesized is billed, so a synthesis request that may have reached the
//! service is never sent twice: only refusals (429) and connections never made are retried.

use std::time::Duration;

use launcher_sdk::http::{Client, Request};
use launcher_sdk::serde_json::Value;
use launcher_sdk::speech::{Audio, Speaker};
use launcher_sdk::text::Limit;
use launcher_sdk::{
    Context, ErrorKind, Job, JobResult, Manifest, ParamSpec, ParamType, Plugin, PluginError,
    SettingSpec, Settings, ToolSpec, export_plugin,
};
use serde::Deserialize;

pub mod api;

use api::{Synthesis, VoiceSettings};

/// The tool id, which is also the plugin name.
pub const TOOL: &str = "elevenlabs";

/// The service's address unless setting `base_url` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.elevenlabs.io";

/// The voice used when none is given: Rachel, one of the premade voices every account has.
pub const DEFAULT_VOICE: &str = "21m00Tcm4TlvDq8ikWAM";

/// The model used when none is given: the service's own default, which speaks 29 languages.
pub const DEFAULT_MODEL: &str = "eleven_multilingual_v2";

/// The most characters one request carries: half of what `eleven_multilingual_v2` takes
/// (10,000), so a piece is a few minutes of speech and one failure costs little.
pub const PIECE_CHARS: usize = 5000;

/// The speaking speeds the service accepts in `voice_settings.speed`.
const SPEED_RANGE: (f64, f64) = (0.7, 1.2);

/// Per-request timeout when the `timeout` setting is absent.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The plugin: one configured connection to ElevenLabs.
pub struct ElevenLabs {
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
    format: Option<String>,
    model: Option<String>,
    output_format: Option<String>,
    language_code: Option<String>,
    stability: Option<f64>,
    similarity_boost: Option<f64>,
    style: Option<f64>,
    speaker_boost: Option<bool>,
    seed: Option<u32>,
}

impl Plugin for ElevenLabs {
    fn manifest() -> Manifest {
        let tts = &["tts"];
        let p = ParamSpec::new;
        let tool = ToolSpec::new(TOOL, &["tts", "voices", "models"])
            .description("ElevenLabs voices: streamed speech in 29 languages, any length")
            .cloud()
            .priority(90)
            .param(
                p(
                    "model",
                    ParamType::String,
                    "the model, e.g. eleven_multilingual_v2 or eleven_flash_v2_5 (`launcher run models --tool elevenlabs` lists them)",
                )
                .only_for(tts),
            )
            .param(
                p(
                    "output_format",
                    ParamType::String,
                    "the service's exact format, e.g. mp3_44100_192 or pcm_16000 (instead of --format)",
                )
                .choices(api::OUTPUT_FORMATS.iter().copied())
                .only_for(tts),
            )
            .param(
                p(
                    "language_code",
                    ParamType::String,
                    "the language to speak, ISO 639-1 (e.g. zh), for models that take one",
                )
                .only_for(tts),
            )
            .param(
                p("stability", ParamType::Number, "how steady the voice is")
                    .range(0.0, 1.0)
                    .only_for(tts),
            )
            .param(
                p(
                    "similarity_boost",
                    ParamType::Number,
                    "how close to the original voice",
                )
                .range(0.0, 1.0)
                .only_for(tts),
            )
            .param(
                p("style", ParamType::Number, "how much of the speaker's style")
                    .range(0.0, 1.0)
                    .only_for(tts),
            )
            .param(
                p(
                    "speaker_boost",
                    ParamType::Boolean,
                    "boost the similarity to the speaker",
                )
                .only_for(tts),
            )
            .param(
                p("seed", ParamType::Integer, "a seed, for repeatable speech")
                    .range(0.0, 4_294_967_295.0)
                    .only_for(tts),
            )
            .setting(
                SettingSpec::new("api_key", "ELEVENLABS_API_KEY", "the ElevenLabs API key")
                    .required()
                    .secret(),
            )
            .setting(SettingSpec::new(
                "base_url",
                "ELEVENLABS_BASE_URL",
                "replaces https://api.elevenlabs.io, for proxies and regional hosts",
            ))
            .setting(SettingSpec::timeout("ELEVENLABS_TIMEOUT", DEFAULT_TIMEOUT));
        Manifest::new(TOOL, env!("CARGO_PKG_VERSION"))
            .description("ElevenLabs text-to-speech")
            .tool(tool)
    }

    fn new(tool: &str, settings: &Settings) -> Result<Self, PluginError> {
        launcher_sdk::expect_tool(tool, TOOL)?;
        let key = settings.key(
            "api_key",
            "set ELEVENLABS_API_KEY to your ElevenLabs API key",
        )?;
        let base = settings.base_url_or(
            "base_url",
            DEFAULT_BASE_URL,
            "e.g. ELEVENLABS_BASE_URL=https://api.elevenlabs.io",
        )?;
        let client = Client::builder(format!("launcher-elevenlabs/{}", env!("CARGO_PKG_VERSION")))
            .settings(settings, DEFAULT_TIMEOUT)?
            .secret(key.as_str())
            .build()?;
        Ok(ElevenLabs { client, base, key })
    }

    fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let result = match job.task.as_str() {
            "tts" => self.speak(job, cx),
            "voices" => self.voices(job, cx),
            "models" => self.models(cx),
            other => Err(PluginError::invalid_input(format!(
                "the elevenlabs tool does not perform task `{other}`"
            ))),
        };
        result.map_err(with_advice)
    }
}

export_plugin!(ElevenLabs);

/// Adds what the user can do to errors whose advice depends on more than one answer.
fn with_advice(err: PluginError) -> PluginError {
    if err.hint.is_some() || err.kind != ErrorKind::RateLimited {
        return err;
    }
    if err.message.contains("too_many_concurrent_requests") {
        err.with_hint("the plan's concurrent requests are all in use (Free 2, Starter 3, Creator 5, Pro 10); run fewer jobs at once or move to a larger plan")
    } else if err.message.contains("system_busy") {
        err.with_hint("ElevenLabs is overloaded right now; try again in a minute")
    } else {
        err
    }
}

impl ElevenLabs {
    fn request(&self, request: Request) -> Request {
        request
            .secret_header("xi-api-key", self.key.as_str())
            .read_errors(api::read_error)
    }

    fn list_voices(&self, cx: &mut Context<'_>) -> Result<Vec<api::ServiceVoice>, PluginError> {
        let request = self.request(Request::get(format!("{}/v1/voices", self.base)));
        let list: api::VoiceList = self.client.fetch(&request, cx)?.json()?;
        Ok(list.voices)
    }

    /// Returns the voice id for `--voice`: an id as it is, a name looked up in the account's
    /// voices.
    fn voice_id(&self, voice: Option<&str>, cx: &mut Context<'_>) -> Result<String, PluginError> {
        let Some(voice) = voice.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(DEFAULT_VOICE.to_string());
        };
        if api::is_voice_id(voice) {
            return Ok(voice.to_string());
        }
        let voices = self.list_voices(cx)?;
        if let Some(found) = voices.iter().find(|v| v.name.eq_ignore_ascii_case(voice)) {
            return Ok(found.voice_id.clone());
        }
        let names: Vec<&str> = voices.iter().map(|v| v.name.as_str()).take(12).collect();
        Err(
            PluginError::invalid_input(format!("the ElevenLabs account has no voice `{voice}`"))
                .with_hint(format!(
                    "give a voice id or one of the names {}; `launcher run voices --tool elevenlabs` lists them all",
                    names.join(", ")
                )),
        )
    }

    fn speak(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let params: Speak = job.params()?;
        let text = params.text.trim();
        if text.is_empty() {
            return Err(PluginError::invalid_input("the text to speak is empty"));
        }
        if params.pitch.is_some_and(|p| p != 1.0) {
            return Err(
                PluginError::invalid_input("ElevenLabs voices cannot change their pitch")
                    .with_hint("leave out --pitch; pick a voice that speaks higher or lower"),
            );
        }
        let speed = params.rate.filter(|r| *r != 1.0);
        if let Some(rate) = speed
            && !(SPEED_RANGE.0..=SPEED_RANGE.1).contains(&rate)
        {
            return Err(PluginError::invalid_input(format!(
                "ElevenLabs speaks at rates from {} to {}, not {rate}",
                SPEED_RANGE.0, SPEED_RANGE.1
            ))
            .with_hint("give --rate between 0.7 and 1.2"));
        }
        let language = params
            .language_code
            .as_deref()
            .map(str::trim)
            .filter(|l| !l.is_empty());
        if let Some(code) = language
            && !(code.len() == 2 && code.chars().all(|c| c.is_ascii_alphabetic()))
        {
            return Err(PluginError::invalid_input(format!(
                "`{code}` is not an ISO 639-1 language code"
            ))
            .with_hint("language codes are two letters, e.g. en, zh, ja"));
        }
        let plan = api::plan(params.format.as_deref(), params.output_format.as_deref())?;
        let model = params
            .model
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .unwrap_or(DEFAULT_MODEL);
        let settings = VoiceSettings {
            stability: params.stability,
            similarity_boost: params.similarity_boost,
            style: params.style,
            use_speaker_boost: params.speaker_boost,
            speed,
        };
        let voice = self.voice_id(params.voice.as_deref(), cx)?;
        let language = language.map(str::to_ascii_lowercase);
        let speaker =
            Speaker::new(plan.output.clone(), Limit::chars(PIECE_CHARS)).work_dir(job.work_dir());
        let pieces = speaker.split(text);
        let synthesize =
            |index: usize, format: &api::OutputFormat| -> Result<Request, PluginError> {
                let body = Synthesis {
                    text: pieces[index],
                    model_id: model,
                    language_code: language.as_deref(),
                    voice_settings: &settings,
                    seed: params.seed,
                    previous_text: index.checked_sub(1).map(|i| api::tail(pieces[i])),
                    next_text: pieces.get(index + 1).map(|next| api::head(next)),
                };
                // Left as POST's default, not idempotent: every character is billed.
                self.request(Request::post(format!(
                    "{}/v1/text-to-speech/{voice}/stream?output_format={}",
                    self.base, format.name
                )))
                .json(&body)
            };
        let spoken = speaker.speak(text, cx, |piece, cx| {
            if piece.is_direct() && plan.streams {
                let mut response = self
                    .client
                    .send(&synthesize(piece.index, &plan.direct)?, cx)?;
                let mut out = piece.output(cx)?;
                let written = response.copy_to(&mut out)?;
                out.finish()?;
                return Ok(Audio::Written(written));
            }
            let format = if piece.is_direct() {
                &plan.direct
            } else {
                &plan.pieces
            };
            let body = self
                .client
                .fetch(&synthesize(piece.index, format)?, cx)?
                .body;
            let spec = format.raw_spec().ok_or_else(|| {
                PluginError::internal(format!(
                    "{} audio has its own container and cannot be joined as samples",
                    format.name
                ))
            })?;
            Ok(Audio::Pcm(spec, body))
        })?;
        let mut result = JobResult::default();
        let info = &mut result.info;
        info.insert("voice".into(), Value::from(voice));
        info.insert("model".into(), Value::from(model));
        let asked = if spoken.pieces == 1 {
            plan.direct.name
        } else {
            plan.pieces.name
        };
        info.insert("output_format".into(), Value::from(asked));
        info.insert("characters".into(), Value::from(text.chars().count()));
        spoken.add_to(info);
        Ok(result)
    }

    fn voices(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let wanted = job.given("language");
        let mut voices: Vec<api::Voice> = self
            .list_voices(cx)?
            .into_iter()
            .map(api::Voice::from)
            .filter(|v| wanted.is_none_or(|w| v.speaks(w)))
            .collect();
        if voices.is_empty() {
            return Err(match wanted {
                Some(language) => PluginError::invalid_input(format!(
                    "no ElevenLabs voice of the account speaks `{language}`"
                ))
                .with_hint("leave out --language to list every voice"),
                None => PluginError::invalid_input("the ElevenLabs account has no voices")
                    .with_hint("add voices from the Voice Library at elevenlabs.io"),
            });
        }
        voices.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        cx.json("voices", &voices)?;
        let mut result = JobResult::default();
        result
            .info
            .insert("voices".into(), Value::from(voices.len()));
        Ok(result)
    }

    fn models(&self, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let request = self.request(Request::get(format!("{}/v1/models", self.base)));
        let listed: Vec<api::ServiceModel> = self.client.fetch(&request, cx)?.json()?;
        let models: Vec<api::Model> = listed
            .into_iter()
            .filter(|m| m.can_do_text_to_speech)
            .map(api::Model::from)
            .collect();
        cx.json("models", &models)?;
        let mut result = JobResult::default();
        result
            .info
            .insert("models".into(), Value::from(models.len()));
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_url_defaults_to_the_service() {
        let with = |pairs: &[(&str, &str)]| {
            let mut settings = Settings::from_values(pairs.iter().copied());
            settings.set_secret("api_key", "k");
            ElevenLabs::new(TOOL, &settings)
        };
        assert_eq!(with(&[]).ok().unwrap().base, DEFAULT_BASE_URL);
        assert_eq!(
            with(&[("base_url", "http://127.0.0.1:9/ ")])
                .ok()
                .unwrap()
                .base,
            "http://127.0.0.1:9"
        );
        assert!(with(&[("base_url", "api.elevenlabs.io")]).is_err());
        assert!(ElevenLabs::new(TOOL, &Settings::default()).is_err());
    }

    #[test]
    fn a_cloud_voice_never_becomes_the_offline_default() {
        let manifest = ElevenLabs::manifest();
        let tool = &manifest.tools[0];
        assert!(tool.cloud);
        assert!(
            tool.settings
                .iter()
                .any(|s| s.name == "api_key" && s.secret && s.required)
        );
    }
}
