//! Offline neural text-to-speech through the Piper HTTP server.
//!
//! Tool `piper` performs `tts` (text to WAV) and `voices` (the voices the server has). It
//! talks to a running server at setting `url` (`PIPER_URL`, default `http://127.0.0.1:5000`),
//! or, with setting `model` (`PIPER_MODEL`, a `.onnx` voice), starts one itself for the job
//! and stops it afterwards (see [`server`]). Either setting makes the tool ready; then it
//! outranks espeak as the offline default for `tts` (priority 50 against espeak's 0): a
//! neural voice sounds far better, and a user who set one up wants it.
//!
//! `--rate` becomes Piper's `length_scale` (the voice's own divided by the rate); `speaker`,
//! `length_scale`, `noise_scale` and `noise_w_scale` go to the server as they are. The server
//! labels its WAV `text/html`, so the body is checked to be WAV by its bytes. The SDK's
//! [`Speaker`] does the rest: long text is split at sentence boundaries into pieces of at most
//! [`PIECE_CHARS`], each one a request with its own progress step, the WAV pieces are joined
//! (spooled in the job's directory, so memory stays flat), and MP3, Ogg, FLAC or AAC is
//! encoded from the joined WAV once, by ffmpeg.

use std::collections::BTreeMap;
use std::time::Duration;

use launcher_sdk::http::{Client, Request, Verdict};
use launcher_sdk::media::Wav;
use launcher_sdk::serde_json::Value;
use launcher_sdk::speech::{Audio, AudioFormat, Speaker};
use launcher_sdk::text::Limit;
use launcher_sdk::{
    Context, ErrorKind, Job, JobResult, LogLevel, Manifest, ParamSpec, ParamType, Plugin,
    PluginError, SettingSpec, Settings, ToolSpec, export_plugin,
};
use serde::Deserialize;

pub mod api;
pub mod server;

use api::{Info, Synthesize, VoiceConfig};

/// The tool id, which is also the plugin name.
pub const TOOL: &str = "piper";

/// Where a Piper server listens unless told otherwise (`python -m piper.http_server`).
pub const DEFAULT_URL: &str = "http://127.0.0.1:5000";

/// The priority that puts Piper before espeak (0) among ready offline voices.
pub const PRIORITY: i32 = 50;

/// The most characters one request carries. Piper speaks about 15 characters a second, so a
/// piece is about a minute of speech: seconds to synthesize, and a progress step the user sees.
pub const PIECE_CHARS: usize = 1000;

/// Per-request timeout when the `timeout` setting is absent: a long piece on a busy machine.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The plugin: how to reach a Piper server, or how to start one.
pub struct Piper {
    target: Target,
    client: Client,
    /// Asks a starting server whether it is up: one quick try, no retries.
    probe: Client,
}

/// Where the server is.
enum Target {
    /// A server someone else runs.
    Url(String),
    /// A voice file to start a server for, with the Python to run it.
    Model {
        model: std::path::PathBuf,
        python: std::path::PathBuf,
    },
}

/// A server for one job: its root, and the child to stop when the job ends, if this job
/// started it.
struct Connection {
    url: String,
    server: Option<launcher_sdk::process::Background>,
}

impl Connection {
    /// Adds what a server this job started last said to a failure of its own: the server
    /// answers a failure with a bare 500 page, and its log says why.
    fn explain(&mut self, err: PluginError) -> PluginError {
        let Some(server) = self.server.as_mut() else {
            return err;
        };
        if err.kind != ErrorKind::Unavailable && err.kind != ErrorKind::Timeout {
            return err;
        }
        let exited = server.check().err();
        let last_words = |server: &launcher_sdk::process::Background| {
            server
                .output_tail()
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty() && !l.starts_with("INFO:"))
                .map(str::to_string)
        };
        // The server logs before it answers, but its log reaches us through a pipe and a
        // reader thread: give a busy machine a moment.
        let mut last = last_words(server);
        for _ in 0..25 {
            if last.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            last = last_words(server);
        }
        match (exited, last) {
            (Some(exit), _) => PluginError::unavailable(format!(
                "Piper's server stopped during the job: {}",
                exit.message
            )),
            (None, Some(line)) => {
                let mut err = err;
                err.message
                    .push_str(&format!("; Piper's server said: {line}"));
                err
            }
            (None, None) => err,
        }
    }
}

/// The parameters of a `tts` job (ranges are checked by the host).
#[derive(Deserialize)]
struct Speak {
    text: String,
    voice: Option<String>,
    speaker: Option<String>,
    rate: Option<f64>,
    pitch: Option<f64>,
    format: Option<String>,
    length_scale: Option<f64>,
    noise_scale: Option<f64>,
    noise_w_scale: Option<f64>,
}

const DESCRIPTION: &str = "offline neural text-to-speech with Piper (WAV)";

impl Plugin for Piper {
    fn manifest() -> Manifest {
        let tts = &["tts"];
        let tool = ToolSpec::new(TOOL, &["tts", "voices"])
            .description(DESCRIPTION)
            .priority(PRIORITY)
            .param(
                ParamSpec::new(
                    "speaker",
                    ParamType::String,
                    "the speaker of a multi-speaker voice: a name or a number",
                )
                .only_for(tts),
            )
            .param(
                ParamSpec::new(
                    "length_scale",
                    ParamType::Number,
                    "how long phonemes last, 1.0 is the voice's normal (--rate says it the other way round)",
                )
                .range(0.1, 10.0)
                .only_for(tts),
            )
            .param(
                ParamSpec::new("noise_scale", ParamType::Number, "generator noise (voice default about 0.667)")
                    .range(0.0, 2.0)
                    .only_for(tts),
            )
            .param(
                ParamSpec::new(
                    "noise_w_scale",
                    ParamType::Number,
                    "phoneme width noise (voice default about 0.8)",
                )
                .range(0.0, 2.0)
                .only_for(tts),
            )
            .setting(SettingSpec::new(
                "url",
                "PIPER_URL",
                "a running Piper server, e.g. http://127.0.0.1:5000 (python -m piper.http_server)",
            ))
            .setting(SettingSpec::new(
                "model",
                "PIPER_MODEL",
                "a Piper voice (.onnx, with its .onnx.json beside it): the plugin starts a server for it for each job",
            ))
            .setting(SettingSpec::new(
                "python",
                "PIPER_PYTHON",
                "the Python with piper-tts to start the server with (default: the one of `piper` on PATH, else python3)",
            ))
            .setting(SettingSpec::timeout("PIPER_TIMEOUT", DEFAULT_TIMEOUT))
            // A local server: ready once it is set up, not because a default address exists.
            .require_one_of(&["url", "model"]);
        Manifest::new(TOOL, env!("CARGO_PKG_VERSION"))
            .description(DESCRIPTION)
            .tool(tool)
    }

    fn new(tool: &str, settings: &Settings) -> Result<Self, PluginError> {
        launcher_sdk::expect_tool(tool, TOOL)?;
        let target = match settings.get("model").filter(|m| !m.trim().is_empty()) {
            Some(model) => Target::Model {
                model: server::model_path(model)?,
                python: server::python(settings.get("python")),
            },
            None => Target::Url(settings.base_url_or(
                "url",
                DEFAULT_URL,
                "e.g. PIPER_URL=http://127.0.0.1:5000",
            )?),
        };
        let agent = concat!("launcher-piper/", env!("CARGO_PKG_VERSION"));
        let client = Client::builder(agent)
            .settings(settings, DEFAULT_TIMEOUT)?
            .build()?;
        let probe = Client::builder(agent)
            .timeout(Duration::from_secs(2))
            .retries(0)
            .build()?;
        Ok(Piper {
            target,
            client,
            probe,
        })
    }

    fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let result = match job.task.as_str() {
            "tts" => self.speak(job, cx),
            "voices" => self.voices(job, cx),
            other => Err(PluginError::invalid_input(format!(
                "the piper tool does not perform task `{other}`"
            ))),
        };
        result.map_err(|err| self.with_advice(err))
    }
}

export_plugin!(Piper);

impl Piper {
    /// Returns a server for this job: the configured one, or one started now.
    fn connect(&self, cx: &mut Context<'_>) -> Result<Connection, PluginError> {
        match &self.target {
            Target::Url(url) => Ok(Connection {
                url: url.clone(),
                server: None,
            }),
            Target::Model { model, python } => {
                let started = server::start(python, model, &self.probe, cx)?;
                Ok(Connection {
                    url: started.url,
                    server: Some(started.server),
                })
            }
        }
    }

    /// Adds what the user can do to errors the server caused.
    fn with_advice(&self, err: PluginError) -> PluginError {
        if err.hint.is_some() {
            return err;
        }
        match (&self.target, err.kind) {
            (Target::Url(url), ErrorKind::Unavailable | ErrorKind::Timeout)
                if err.message.contains("cannot reach") =>
            {
                err.with_hint(format!(
                    "start Piper's server at {url} (python3 -m piper.http_server -m VOICE.onnx), \
                     or set PIPER_MODEL to a voice file and the plugin starts one itself"
                ))
            }
            (_, ErrorKind::Unavailable) => {
                err.with_hint("Piper's server failed; its own log says why")
            }
            _ => err,
        }
    }

    /// Asks the server which voice it loaded and which it has.
    fn voice_table(
        &self,
        url: &str,
        cx: &mut Context<'_>,
    ) -> Result<(Info, BTreeMap<String, VoiceConfig>), PluginError> {
        let info: Info = self
            .client
            .fetch(&Request::get(format!("{url}/info")), cx)?
            .json()?;
        // Older servers have no /voices; they have only the voice /info names.
        let voices = match self
            .client
            .fetch(&Request::get(format!("{url}/voices")), cx)
        {
            Ok(reply) => reply.json()?,
            Err(err) if err.message.contains("HTTP 404") => BTreeMap::new(),
            Err(err) => return Err(err),
        };
        Ok((info, voices))
    }

    fn speak(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let params: Speak = job.params()?;
        let text = params.text.trim();
        // The server answers 500 to empty text; say what is wrong before starting anything.
        if text.is_empty() {
            return Err(PluginError::invalid_input("the text to speak is empty")
                .with_hint("give the text as an argument, with --text or --file, or on stdin"));
        }
        let requested = params.format.as_deref().unwrap_or("wav");
        let Some(format) = AudioFormat::named(requested) else {
            return Err(PluginError::invalid_input(format!(
                "the piper tool cannot write `{requested}` audio"
            ))
            .with_hint("use wav (Piper's own), or mp3, ogg, flac or aac, which ffmpeg encodes"));
        };
        if params.pitch.is_some_and(|p| p != 1.0) {
            return Err(
                PluginError::invalid_input("Piper voices cannot change their pitch")
                    .with_hint("leave out --pitch, or use the espeak or azure-tts tool"),
            );
        }
        let mut connection = self.connect(cx)?;
        let url = connection.url.clone();
        self.speak_at(&url, &params, format, job, cx)
            .map_err(|err| connection.explain(err))
    }

    /// Speaks a job's text with the server at `url`.
    fn speak_at(
        &self,
        url: &str,
        params: &Speak,
        format: AudioFormat,
        job: &Job,
        cx: &mut Context<'_>,
    ) -> Result<JobResult, PluginError> {
        let text = params.text.trim();
        let (info, voices) = self.voice_table(url, cx)?;
        let voice = params
            .voice
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty());
        let voice_name = voice.unwrap_or(&info.voice.name);
        let config = voices.get(voice_name);
        if voice.is_some_and(|v| v != info.voice.name) && config.is_none() {
            let known: Vec<&str> = voices.keys().map(String::as_str).collect();
            return Err(PluginError::invalid_input(format!(
                "the Piper server has no voice `{voice_name}`"
            ))
            .with_hint(if known.is_empty() {
                format!("it speaks only `{}`", info.voice.name)
            } else {
                format!(
                    "it has {}; put more voices (.onnx with .onnx.json) in its data directory",
                    known.join(", ")
                )
            }));
        }
        let speaker_id = match params.speaker.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(speaker) => {
                let fallback = VoiceConfig {
                    num_speakers: info.voice.num_speakers,
                    ..VoiceConfig::default()
                };
                Some(api::speaker_id(
                    voice_name,
                    config.unwrap_or(&fallback),
                    speaker,
                )?)
            }
            None => None,
        };
        let length_scale = api::length_scale(params.length_scale, params.rate, config)?;
        let spoken = Speaker::new(format, Limit::chars(PIECE_CHARS))
            .work_dir(job.work_dir())
            .speak(text, cx, |piece, cx| {
                let body = Synthesize {
                    text: piece.text,
                    voice,
                    speaker_id,
                    length_scale,
                    noise_scale: params.noise_scale,
                    noise_w_scale: params.noise_w_scale,
                };
                // Synthesis changes nothing on the server, so a dropped connection may be
                // tried again; a 5xx is the server's own failure, which repeats.
                let request = Request::post(format!("{url}/synthesize"))
                    .json(&body)?
                    .idempotent(true)
                    .read_errors(|reply| match reply.status {
                        500..=599 => Verdict::Fail(PluginError::unavailable(format!(
                            "Piper's server failed with HTTP {}",
                            reply.status
                        ))),
                        _ => Verdict::Default,
                    });
                let wav = self.client.fetch(&request, cx)?.body;
                check_wav(&wav)?;
                Ok(Audio::Wav(wav))
            })?;
        let seconds = spoken.duration_secs.unwrap_or_default();
        let requests = match spoken.pieces {
            1 => "1 request".to_string(),
            n => format!("{n} requests"),
        };
        cx.log(
            LogLevel::Info,
            format!(
                "spoke {} characters as {seconds:.1} s of audio in {requests}",
                text.chars().count()
            ),
        );
        let mut result = JobResult::default();
        let info_out = &mut result.info;
        info_out.insert("voice".into(), Value::from(voice_name));
        if let Some(id) = speaker_id {
            info_out.insert("speaker_id".into(), Value::from(id));
        }
        if let Some(scale) = length_scale {
            info_out.insert("length_scale".into(), Value::from(scale));
        }
        info_out.insert("encoded".into(), Value::from(spoken.encoded));
        spoken.add_to(info_out);
        Ok(result)
    }

    fn voices(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let wanted = job.given("language");
        let mut connection = self.connect(cx)?;
        let url = connection.url.clone();
        let (info, voices) = self
            .voice_table(&url, cx)
            .map_err(|err| connection.explain(err))?;
        let listed: Vec<api::ListedVoice> = api::list_voices(&info, &voices)
            .into_iter()
            .filter(|v| wanted.is_none_or(|w| api::speaks(v, w)))
            .collect();
        if listed.is_empty() {
            return Err(PluginError::invalid_input(format!(
                "the Piper server has no voice for language `{}`",
                wanted.unwrap_or_default()
            ))
            .with_hint("leave out --language to list every voice it has"));
        }
        cx.json("voices", &listed)?;
        let mut result = JobResult::default();
        result
            .info
            .insert("voices".into(), Value::from(listed.len()));
        Ok(result)
    }
}

/// Checks that the server's answer is WAV, whatever its `Content-Type` says.
fn check_wav(body: &[u8]) -> Result<(), PluginError> {
    Wav::parse(body).map(|_| ()).map_err(|err| {
        let start: String = String::from_utf8_lossy(&body[..body.len().min(60)])
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        PluginError::unavailable(format!(
            "Piper's server answered something that is not WAV audio ({}; it starts `{start}`)",
            err.message
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_defaults_to_the_servers_own() {
        let piper = |pairs: &[(&str, &str)]| {
            Piper::new(TOOL, &Settings::from_values(pairs.iter().copied()))
        };
        assert!(matches!(piper(&[]).unwrap().target, Target::Url(ref u) if u == DEFAULT_URL));
        let err = piper(&[("url", "localhost:5000")]).err().unwrap();
        assert!(err.hint.unwrap().contains("PIPER_URL="));
        assert!(piper(&[("timeout", "never")]).is_err());
    }

    #[test]
    fn an_html_page_is_not_audio() {
        let err =
            check_wav(b"<!doctype html>\n<title>500 Internal Server Error</title>").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(err.message.contains("not WAV audio"), "{}", err.message);
        assert!(err.message.contains("<!doctype html>"), "{}", err.message);
    }

    #[test]
    fn piper_outranks_espeak_and_is_offline() {
        let manifest = Piper::manifest();
        let tool = &manifest.tools[0];
        assert!(!tool.cloud);
        assert!(tool.priority > 0, "espeak has priority 0");
        assert_eq!(
            tool.require_one_of,
            [vec!["url".to_string(), "model".to_string()]]
        );
    }
}
