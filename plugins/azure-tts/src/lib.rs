//! Azure AI Speech text-to-speech for launcher, over the service's REST API.
//!
//! Tool `azure-tts` performs `tts` (text to audio in any of the service's output formats)
//! and `voices` (lists the voices the service offers, as the standard JSON array). Settings
//! come from `AZURE_SPEECH_KEY`, `AZURE_SPEECH_REGION` or `AZURE_SPEECH_ENDPOINT`, and
//! `AZURE_SPEECH_TIMEOUT`. Long text is split at sentence boundaries and spoken as one file by
//! the SDK's [`Speaker`] (see [`api`] for how each format is joined).
//!
//! The service bills every character it synthesizes and takes no idempotency key, so a
//! synthesis request that may have reached it (an answer of 5xx, a timeout, a connection that
//! broke after sending) is never sent again: the SDK's client resends such a POST only when
//! told it is idempotent, and this one is not. A 429 or a connection that was never made is
//! still retried, since the service did not act on it.

use std::time::Duration;

use launcher_sdk::http::{Client, Request};
use launcher_sdk::serde_json::Value;
use launcher_sdk::speech::{self, Audio, AudioFormat, Speaker};
use launcher_sdk::text::{self, Limit};
use launcher_sdk::{
    Context, ErrorKind, Job, JobResult, Manifest, ParamSpec, ParamType, Plugin, PluginError,
    SettingSpec, Settings, ToolSpec, export_plugin,
};
use serde::{Deserialize, Serialize};

pub mod api;

use api::{Format, Speech};

/// The tool id.
pub const TOOL: &str = "azure-tts";

const SYNTHESIZE_PATH: &str = "/cognitiveservices/v1";
const VOICES_PATH: &str = "/cognitiveservices/voices/list";

/// Per-attempt timeout when the `timeout` setting is absent.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The plugin: one configured connection to a Speech resource.
pub struct AzureTts {
    client: Client,
    base: String,
    key: String,
}

impl AzureTts {
    fn request(&self, request: Request) -> Request {
        request.secret_header("Ocp-Apim-Subscription-Key", self.key.as_str())
    }
}

/// Returns `settings`' base URL: the endpoint if given, else the region's.
fn base_url(settings: &Settings) -> Result<String, PluginError> {
    let endpoint = settings.base_url("endpoint").map_err(|e| {
        e.with_hint("e.g. AZURE_SPEECH_ENDPOINT=https://eastus.tts.speech.microsoft.com")
    })?;
    if let Some(endpoint) = endpoint {
        return Ok(endpoint);
    }
    let Some(region) = settings.get("region") else {
        return Err(
            PluginError::invalid_input("azure-tts needs setting `region` or `endpoint`").with_hint(
                "set AZURE_SPEECH_REGION to your Speech resource's region (e.g. eastus), or \
             AZURE_SPEECH_ENDPOINT to its endpoint",
            ),
        );
    };
    let region = region.trim().to_ascii_lowercase();
    if region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(PluginError::invalid_input(format!(
            "setting `region` is `{region}`, which is not an Azure region name"
        ))
        .with_hint("region names look like eastus or westeurope"));
    }
    Ok(format!("https://{region}.tts.speech.microsoft.com"))
}

/// Adds what the user can do to errors the service caused.
fn with_advice(err: PluginError) -> PluginError {
    if err.hint.is_some() {
        return err;
    }
    match err.kind {
        ErrorKind::Unauthorized => err.with_hint(
            "check setting `key` (AZURE_SPEECH_KEY), and that `region` (AZURE_SPEECH_REGION) \
             is the region of the Speech resource the key belongs to",
        ),
        ErrorKind::RateLimited => err.with_hint(
            "the service's quota or its voice capacity in this region is exhausted; wait, or \
             use a resource on a higher tier",
        ),
        ErrorKind::InvalidInput => err.with_hint(
            "check the voice name (`launcher run voices` lists them) and the style it supports",
        ),
        _ => err,
    }
}

/// The parameters of a `tts` job (ranges are checked by the host).
#[derive(Deserialize)]
struct Speak {
    text: String,
    voice: Option<String>,
    rate: Option<f64>,
    pitch: Option<f64>,
    style: Option<String>,
    style_degree: Option<f64>,
    format: Option<String>,
}

impl Plugin for AzureTts {
    fn manifest() -> Manifest {
        let tts = &["tts"];
        let tool = ToolSpec::new(TOOL, &["tts", "voices"])
            .description("Azure AI Speech neural voices, over the REST API")
            .cloud()
            .priority(100)
            .param(
                ParamSpec::new("rate", ParamType::Number, "speaking rate, 1.0 is normal")
                    .range(0.5, 2.0)
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
                    "speaking style, e.g. cheerful or sad (the voices task lists each voice's)",
                )
                .only_for(tts),
            )
            .param(
                ParamSpec::new(
                    "style_degree",
                    ParamType::Number,
                    "how strongly the style applies, 1.0 is normal",
                )
                .range(0.01, 2.0)
                .only_for(tts),
            )
            .setting(
                SettingSpec::new("key", "AZURE_SPEECH_KEY", "the Speech resource's key")
                    .required()
                    .secret(),
            )
            .setting(SettingSpec::new(
                "region",
                "AZURE_SPEECH_REGION",
                "the Speech resource's region, e.g. eastus (or set `endpoint`)",
            ))
            .setting(SettingSpec::new(
                "endpoint",
                "AZURE_SPEECH_ENDPOINT",
                "replaces https://{region}.tts.speech.microsoft.com, for sovereign clouds and \
                 private endpoints",
            ))
            .setting(SettingSpec::timeout(
                "AZURE_SPEECH_TIMEOUT",
                DEFAULT_TIMEOUT,
            ))
            .require_one_of(&["region", "endpoint"]);
        Manifest::new("azure-tts", env!("CARGO_PKG_VERSION"))
            .description("Azure AI Speech text-to-speech")
            .tool(tool)
    }

    fn new(tool: &str, settings: &Settings) -> Result<Self, PluginError> {
        launcher_sdk::expect_tool(tool, TOOL)?;
        let key = settings.key("key", "set AZURE_SPEECH_KEY to your Speech resource's key")?;
        let base = base_url(settings)?;
        let client = Client::builder(format!("launcher-azure-tts/{}", env!("CARGO_PKG_VERSION")))
            .settings(settings, DEFAULT_TIMEOUT)?
            // What is sent is the trimmed key, which the setting's value may only contain.
            .secret(key.as_str())
            .build()?;
        Ok(AzureTts { client, base, key })
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

impl AzureTts {
    fn speak(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let params: Speak = job.params()?;
        let text = params.text.as_str();
        if text.trim().is_empty() {
            return Err(PluginError::invalid_input("the text to speak is empty"));
        }
        let voice = params
            .voice
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| api::default_voice(text));
        let speech = Speech {
            voice,
            rate: params.rate.unwrap_or(1.0),
            pitch: params.pitch.unwrap_or(1.0),
            style: params.style.as_deref(),
            style_degree: params.style_degree,
        };
        let format = api::resolve_format(params.format.as_deref().unwrap_or("wav"))?;
        let limit = Limit::bytes(api::MAX_PART_BYTES);
        let parts = text::split_text(text, limit);
        let joined = format.pieces();
        // A single part is streamed in the requested format itself, whatever it is.
        let (part_format, output) = match joined {
            Some(joined) => joined,
            None if parts.len() == 1 => (format, AudioFormat::named("wav").expect("wav is known")),
            None => {
                return Err(PluginError::invalid_input(format!(
                    "this text needs {} requests, and {} audio cannot be joined into one file",
                    parts.len(),
                    format.name
                ))
                .with_hint("use --format wav, mp3 or ogg, or shorten the text"));
            }
        };
        // Build every document first, so a bad voice fails before anything is sent.
        let documents = parts
            .iter()
            .map(|part| api::ssml(&speech, part))
            .collect::<Result<Vec<_>, _>>()?;
        let synthesize = |ssml: &str, format: &Format| {
            // Left as POST's default, not idempotent: see the crate documentation.
            self.request(Request::post(format!("{}{SYNTHESIZE_PATH}", self.base)))
                .header("Content-Type", "application/ssml+xml")
                .header("X-Microsoft-OutputFormat", format.name)
                .body(ssml.to_string())
        };
        let spoken =
            Speaker::new(output, limit)
                .work_dir(job.work_dir())
                .speak(text, cx, |piece, cx| {
                    let ssml = &documents[piece.index];
                    if piece.is_direct() {
                        let mut response = self.client.send(&synthesize(ssml, format), cx)?;
                        let mut out = cx.output("audio", format.media_type, format.extension)?;
                        let written = response.copy_to(&mut out)?;
                        out.finish()?;
                        return Ok(Audio::Written(written));
                    }
                    let body = self.client.fetch(&synthesize(ssml, part_format), cx)?.body;
                    Ok(match part_format.raw_spec() {
                        Some(spec) => Audio::Pcm(spec, body),
                        None => Audio::Wav(body),
                    })
                })?;
        let mut result = JobResult::default();
        let info = &mut result.info;
        info.insert("voice".into(), Value::from(voice));
        info.insert("format".into(), Value::from(format.name));
        info.insert("characters".into(), Value::from(text.chars().count()));
        spoken.add_to(info);
        Ok(result)
    }

    fn voices(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let wanted = job.given("language");
        let request = self.request(Request::get(format!("{}{VOICES_PATH}", self.base)));
        let listed: Vec<ServiceVoice> = self.client.fetch(&request, cx)?.json()?;
        let mut voices: Vec<Voice> = listed
            .into_iter()
            .filter(|v| wanted.is_none_or(|w| speech::speaks(&v.locale, w)))
            .map(Voice::from)
            .collect();
        if voices.is_empty() {
            return Err(match wanted {
                Some(language) => PluginError::invalid_input(format!(
                    "no voice matches language `{language}`"
                ))
                .with_hint("give a language such as zh or a locale such as zh-CN, or leave out --language to list every voice"),
                None => PluginError::unavailable("the service listed no voices"),
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

/// A voice as the service lists it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceVoice {
    short_name: String,
    display_name: String,
    local_name: String,
    locale: String,
    #[serde(default)]
    locale_name: String,
    #[serde(default)]
    gender: String,
    #[serde(default)]
    style_list: Vec<String>,
    #[serde(default)]
    secondary_locale_list: Vec<String>,
}

/// A voice as the `voices` task lists it: the standard `id`, `name` and `language`, then what
/// Azure adds.
#[derive(Debug, Serialize)]
struct Voice {
    id: String,
    name: String,
    language: String,
    locale: String,
    local_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    locale_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    gender: String,
    styles: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    secondary_locales: Vec<String>,
}

impl From<ServiceVoice> for Voice {
    fn from(v: ServiceVoice) -> Voice {
        Voice {
            id: v.short_name,
            name: v.display_name,
            language: v.locale.split('-').next().unwrap_or_default().to_string(),
            locale: v.locale,
            local_name: v.local_name,
            locale_name: v.locale_name,
            gender: v.gender.to_ascii_lowercase(),
            styles: v.style_list,
            secondary_locales: v.secondary_locale_list,
        }
    }
}

export_plugin!(AzureTts);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_values(pairs.iter().copied())
    }

    #[test]
    fn the_base_url_comes_from_the_endpoint_or_the_region() {
        let region = settings(&[("region", "EastUS")]);
        assert_eq!(
            base_url(&region).unwrap(),
            "https://eastus.tts.speech.microsoft.com"
        );
        let both = settings(&[
            ("region", "eastus"),
            ("endpoint", "https://chinaeast2.tts.speech.azure.cn/"),
        ]);
        assert_eq!(
            base_url(&both).unwrap(),
            "https://chinaeast2.tts.speech.azure.cn"
        );
        let err = base_url(&settings(&[])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message.contains("`region` or `endpoint`"));
        assert!(base_url(&settings(&[("region", "east.us/evil")])).is_err());
        assert!(base_url(&settings(&[("endpoint", "ftp://x")])).is_err());
    }

    #[test]
    fn a_language_or_a_locale_picks_voices() {
        assert!(speech::speaks("zh-CN", "zh"));
        assert!(speech::speaks("zh-CN", "zh-cn"));
        assert!(speech::speaks("zh-CN", "zh_CN"));
        assert!(speech::speaks("zh-CN-henan", "zh-CN"));
        assert!(!speech::speaks("zh-TW", "zh-CN"));
        assert!(!speech::speaks("zu-ZA", "z"));
        assert!(!speech::speaks("en-US", "zh"));
    }
}
