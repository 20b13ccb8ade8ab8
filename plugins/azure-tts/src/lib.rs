//! Azure AI Speech text-to-speech for launcher, over the service's REST API.
//!
//! Tool `azure-tts` performs `tts` (text to audio in any of the service's output formats)
//! and `voices` (lists the voices the service offers). Settings come from
//! `AZURE_SPEECH_KEY`, `AZURE_SPEECH_REGION` or `AZURE_SPEECH_ENDPOINT`, and
//! `AZURE_SPEECH_TIMEOUT`. Long text is split at sentence boundaries and the audio joined into
//! one file (see [`api`]).

use std::time::Duration;

use launcher_sdk::http::{Client, Request};
use launcher_sdk::serde_json::Value;
use launcher_sdk::{
    ContentKind, Context, ErrorKind, Job, JobResult, Manifest, ParamSpec, ParamType, Plugin,
    PluginError, SettingSpec, Settings, TaskSpec, ToolSpec, export_plugin,
};

pub mod api;

use api::{Container, Format, OggChain, Speech, WavJoiner};

/// The tool id.
pub const TOOL: &str = "azure-tts";

const SYNTHESIZE_PATH: &str = "/cognitiveservices/v1";
const VOICES_PATH: &str = "/cognitiveservices/voices/list";

/// Per-attempt timeout when the `timeout` setting is absent.
const DEFAULT_TIMEOUT_SECS: f64 = 60.0;

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
    if let Some(endpoint) = settings.get("endpoint") {
        let endpoint = endpoint.trim().trim_end_matches('/');
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(PluginError::invalid_input(
                "setting `endpoint` must be an http or https URL",
            )
            .with_hint("e.g. AZURE_SPEECH_ENDPOINT=https://eastus.tts.speech.microsoft.com"));
        }
        return Ok(endpoint.to_string());
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

fn timeout(settings: &Settings) -> Result<Duration, PluginError> {
    let Some(raw) = settings.get("timeout") else {
        return Ok(Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS));
    };
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            PluginError::invalid_input(format!(
                "setting `timeout` is `{raw}`, not a number of seconds between 0 and 3600"
            ))
        })
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

/// Returns the multiplier parameter `name`, checked against the range Azure accepts.
fn multiplier(job: &Job, name: &str, min: f64, max: f64) -> Result<f64, PluginError> {
    let value = job.f64(name).unwrap_or(1.0);
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(PluginError::invalid_input(format!(
            "parameter `{name}` is {value}; Azure accepts {min} to {max} (1.0 is normal)"
        )))
    }
}

impl Plugin for AzureTts {
    fn manifest() -> Manifest {
        let mut tool = ToolSpec::new(TOOL, &["tts", "voices"])
            .description("Azure AI Speech neural voices, over the REST API")
            .priority(100)
            .param(
                ParamSpec::new("rate", ParamType::Number, "speaking rate, 1.0 is normal")
                    .range(0.5, 2.0),
            )
            .param(
                ParamSpec::new("pitch", ParamType::Number, "pitch, 1.0 is normal").range(0.5, 1.5),
            )
            .param(ParamSpec::new(
                "style",
                ParamType::String,
                "speaking style, e.g. cheerful or sad (the voices task lists each voice's)",
            ))
            .param(
                ParamSpec::new(
                    "style_degree",
                    ParamType::Number,
                    "how strongly the style applies, 1.0 is normal",
                )
                .range(0.01, 2.0),
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
            .setting(SettingSpec::new(
                "timeout",
                "AZURE_SPEECH_TIMEOUT",
                "seconds one request may take (default 60)",
            ));
        Manifest::new("azure-tts", env!("CARGO_PKG_VERSION"))
            .description("Azure AI Speech text-to-speech")
            .tool(tool)
    }

    fn new(tool: &str, settings: &Settings) -> Result<Self, PluginError> {
        if tool != TOOL {
            return Err(PluginError::internal(format!(
                "this plugin provides `{TOOL}`, not `{tool}`"
            )));
        }
        let key = settings
            .require("key")
            .map_err(|e| e.with_hint("set AZURE_SPEECH_KEY to your Speech resource's key"))?
            .trim()
            .to_string();
        let base = base_url(settings)?;
        let client = Client::builder(format!("launcher-azure-tts/{}", env!("CARGO_PKG_VERSION")))
            .timeout(timeout(settings)?)
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
        let text = job.require_str("text")?;
        if text.trim().is_empty() {
            return Err(PluginError::invalid_input("the text to speak is empty"));
        }
        let voice = job
            .str("voice")
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| api::default_voice(text));
        let speech = Speech {
            voice,
            rate: multiplier(job, "rate", 0.5, 2.0)?,
            pitch: multiplier(job, "pitch", 0.5, 1.5)?,
            style: job.str("style"),
            style_degree: job.f64("style_degree"),
        };
        let format = api::resolve_format(job.str("format").unwrap_or("wav"))?;
        let parts = api::split_text(text, api::MAX_PART_UNITS);
        if parts.len() > 1 && format.container == Container::Unjoinable {
            return Err(PluginError::invalid_input(format!(
                "this text needs {} requests, and {} audio cannot be joined into one file",
                parts.len(),
                format.name
            ))
            .with_hint("use --format wav, mp3 or ogg, or shorten the text"));
        }
        // Build every document first, so a bad voice fails before anything is sent.
        let documents = parts
            .iter()
            .map(|part| api::ssml(&speech, part))
            .collect::<Result<Vec<_>, _>>()?;
        let requests: Vec<Request> = documents
            .into_iter()
            .map(|ssml| {
                self.request(Request::post(format!("{}{SYNTHESIZE_PATH}", self.base)))
                    .header("Content-Type", "application/ssml+xml")
                    .header("X-Microsoft-OutputFormat", format.name)
                    .body(ssml)
            })
            .collect();
        let bytes = match format.container {
            _ if requests.len() == 1 => self.stream_part(&requests[0], format, cx)?,
            // Unjoinable formats with several parts were refused above.
            Container::Stream | Container::Unjoinable => {
                let mut total = 0;
                for (i, request) in requests.iter().enumerate() {
                    report(cx, i, requests.len())?;
                    total += self.stream_part(request, format, cx)?;
                }
                total
            }
            Container::Riff => {
                let mut joiner = WavJoiner::default();
                for (i, request) in requests.iter().enumerate() {
                    report(cx, i, requests.len())?;
                    joiner.push(&self.client.fetch(request, cx)?.body)?;
                }
                write_output(cx, format, &joiner.finish()?)?
            }
            Container::Ogg => {
                let mut chain = OggChain::default();
                let mut total = 0;
                for (i, request) in requests.iter().enumerate() {
                    report(cx, i, requests.len())?;
                    let link = chain.link(self.client.fetch(request, cx)?.body)?;
                    total += write_output(cx, format, &link)?;
                }
                total
            }
        };
        let mut result = JobResult::default();
        let info = &mut result.info;
        info.insert("voice".into(), Value::from(voice));
        info.insert("format".into(), Value::from(format.name));
        info.insert("requests".into(), Value::from(requests.len()));
        info.insert("characters".into(), Value::from(text.chars().count()));
        info.insert("bytes".into(), Value::from(bytes));
        Ok(result)
    }

    /// Sends one synthesis request and streams its audio to the output as it arrives.
    ///
    /// The output is opened only once the service has accepted the request, so a refused job
    /// leaves no empty file behind. Later parts reopen the same output, which appends.
    fn stream_part(
        &self,
        request: &Request,
        format: &Format,
        cx: &mut Context<'_>,
    ) -> Result<u64, PluginError> {
        let mut response = self.client.send(request, cx)?;
        let mut out = cx.output("audio", format.media_type, format.extension)?;
        let written = response.copy_to(&mut out)?;
        out.finish()?;
        Ok(written)
    }

    fn voices(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let request = self.request(Request::get(format!("{}{VOICES_PATH}", self.base)));
        let voices: Vec<Value> = self.client.fetch(&request, cx)?.json()?;
        let wanted = job
            .str("locale")
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_ascii_lowercase);
        let field = |v: &Value, name: &str| v[name].as_str().unwrap_or_default().to_string();
        let mut rows: Vec<[String; 5]> = voices
            .iter()
            .filter(|v| {
                let locale = field(v, "Locale").to_ascii_lowercase();
                wanted
                    .as_ref()
                    .is_none_or(|w| locale == *w || locale.starts_with(&format!("{w}-")))
            })
            .map(|v| {
                let styles = v["StyleList"]
                    .as_array()
                    .map(|s| {
                        s.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                [
                    field(v, "ShortName"),
                    field(v, "Gender"),
                    field(v, "Locale"),
                    field(v, "LocalName"),
                    styles,
                ]
            })
            .collect();
        if rows.is_empty() {
            return Err(match wanted {
                Some(locale) => {
                    PluginError::invalid_input(format!("no voice matches locale `{locale}`"))
                        .with_hint("leave out --locale to list every voice")
                }
                None => PluginError::unavailable("the service listed no voices"),
            });
        }
        rows.sort_by(|a, b| (&a[2], &a[0]).cmp(&(&b[2], &b[0])));
        let mut widths = [0usize; 4];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row.iter()) {
                *width = (*width).max(display_width(cell));
            }
        }
        let mut listing = String::new();
        for row in &rows {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(widths) {
                line.push_str(cell);
                line.push_str(&" ".repeat(width - display_width(cell) + 2));
            }
            line.push_str(&row[4]);
            listing.push_str(line.trim_end());
            listing.push('\n');
        }
        cx.text(&listing)?;
        let mut result = JobResult::default();
        result.info.insert("voices".into(), Value::from(rows.len()));
        Ok(result)
    }
}

/// Reports which part is being synthesized.
fn report(cx: &mut Context<'_>, index: usize, total: usize) -> Result<(), PluginError> {
    cx.progress(
        Some(index as f64 / total as f64),
        &format!("synthesizing part {} of {total}", index + 1),
    )
}

fn write_output(cx: &mut Context<'_>, format: &Format, bytes: &[u8]) -> Result<u64, PluginError> {
    use std::io::Write;
    let mut out = cx.output("audio", format.media_type, format.extension)?;
    out.write_all(bytes)?;
    out.finish()?;
    Ok(bytes.len() as u64)
}

/// Returns how many terminal columns `s` takes: CJK and other wide characters take two.
fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| match c {
            '\u{1100}'..='\u{115F}'
            | '\u{2E80}'..='\u{A4CF}'
            | '\u{AC00}'..='\u{D7A3}'
            | '\u{F900}'..='\u{FAFF}'
            | '\u{FE30}'..='\u{FE4F}'
            | '\u{FF00}'..='\u{FF60}'
            | '\u{FFE0}'..='\u{FFE6}'
            | '\u{20000}'..='\u{3FFFD}' => 2,
            _ => 1,
        })
        .sum()
}

export_plugin!(AzureTts);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_values(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
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
    fn the_timeout_setting_is_seconds() {
        assert_eq!(timeout(&settings(&[])).unwrap(), Duration::from_secs(60));
        assert_eq!(
            timeout(&settings(&[("timeout", "1.5")])).unwrap(),
            Duration::from_millis(1500)
        );
        for bad in ["0", "-1", "soon", "NaN"] {
            assert!(timeout(&settings(&[("timeout", bad)])).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_width_counts_wide_characters_twice() {
        assert_eq!(display_width("Ava"), 3);
        assert_eq!(display_width("晓晓"), 4);
        assert_eq!(display_width("선히"), 4);
    }
}
