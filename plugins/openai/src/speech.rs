//! Speech: `stt` through `/audio/transcriptions` and `tts` through `/audio/speech`.
//!
//! **Transcription.** The recording goes up as a multipart form whose file part is read from
//! disk while it is sent ([`launcher_sdk::multipart`]), so an hour of audio never sits in
//! memory. `--format text|srt|vtt` asks the server for that form and prints what it answers;
//! `--format json` writes the server's JSON as a JSON output. faster-whisper-server
//! ([`Quirk::FasterWhisper`]) reads the model from `model_name` and answers only JSON, so
//! text is asked for as JSON and its `text` printed, and srt/vtt are refused before anything
//! is sent.
//!
//! **Speech.** One request takes at most [`SPEECH_LIMIT`] characters; the SDK's
//! [`Speaker`] splits a longer text at sentence ends, and each piece is asked for as WAV (as
//! headerless PCM when the user asked for `pcm`) and joined, then encoded once by ffmpeg when
//! a compressed format was asked for. A text that fits is one request whose audio is streamed
//! to the output as it arrives, named by the format its first bytes show (servers differ in
//! what they label it). `pcm` is raw 24 kHz 16-bit mono without a header, so it is written as
//! WAV.

use std::io::Read;

use launcher_sdk::http::Request;
use launcher_sdk::media::{self, SampleFormat, WavSpec};
use launcher_sdk::multipart::Form;
use launcher_sdk::serde_json::{Map, Value, json};
use launcher_sdk::speech::{Audio, AudioFormat, Speaker};
use launcher_sdk::text::Limit;
use launcher_sdk::{Context, Job, JobResult, LogLevel, PluginError};
use serde::Deserialize;

use crate::OpenAi;
use crate::profiles::Quirk;

/// The most characters `/audio/speech` takes in one request.
pub const SPEECH_LIMIT: usize = 4096;

/// What `response_format=pcm` answers: 24 kHz, 16-bit signed little-endian, mono.
pub const PCM: WavSpec = WavSpec {
    sample_rate: 24_000,
    channels: 1,
    bits_per_sample: 16,
    format: SampleFormat::Int,
};

#[derive(Deserialize)]
struct HearParams {
    audio: String,
    language: Option<String>,
    model: Option<String>,
    format: Option<String>,
}

#[derive(Deserialize)]
struct SpeakParams {
    text: String,
    voice: Option<String>,
    rate: Option<f64>,
    pitch: Option<f64>,
    format: Option<String>,
    model: Option<String>,
}

impl OpenAi {
    /// Returns the model a media task uses: `--model`, the profile's default for the task,
    /// or the `model` setting when the profile has no text task that setting is meant for.
    pub(crate) fn media_model(&self, asked: Option<&str>, default: Option<&str>) -> Option<String> {
        asked
            .or(default)
            .or(if self.profile.model_for_media {
                self.profile.model.as_deref()
            } else {
                None
            })
            .map(str::to_string)
    }

    pub(crate) fn stt(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let p: HearParams = job.params()?;
        let format = p.format.as_deref().unwrap_or("text");
        let whisper = self.profile.quirk == Quirk::FasterWhisper;
        let wire = match (whisper, format) {
            (true, "srt" | "vtt") => {
                return Err(PluginError::invalid_input(format!(
                    "`{}` cannot write {format}: faster-whisper-server answers only json and \
                     verbose_json, so this tool offers --format text and --format json",
                    self.profile.id
                )));
            }
            (true, _) => "json",
            (false, other) => other,
        };
        let model = self.media_model(p.model.as_deref(), self.profile.media.stt);
        let mut form = Form::new().file("file", &p.audio, &audio_type(&p.audio))?;
        if let Some(model) = &model {
            form = form.text(if whisper { "model_name" } else { "model" }, model);
        }
        if let Some(language) = p.language.as_deref().filter(|l| !l.is_empty()) {
            form = form.text("language", language);
        }
        form = form.text("response_format", wire);
        let request = self
            .request(
                Request::post(self.url("audio/transcriptions")),
                model.as_deref(),
            )
            .multipart(form);
        let answer = self.send(&request, cx)?.text(&*cx)?;
        let mut info = Map::new();
        if let Some(model) = &model {
            info.insert("model".into(), json!(model));
        }
        if wire == "json" || wire == "verbose_json" {
            let value: Value = launcher_sdk::serde_json::from_str(&answer).map_err(|e| {
                PluginError::unavailable(format!("the transcript is not the JSON asked for: {e}"))
            })?;
            if format == "json" {
                cx.json("text", &value)?;
            } else {
                let text = value.get("text").and_then(Value::as_str).ok_or_else(|| {
                    PluginError::unavailable("the server's JSON transcript has no `text`")
                })?;
                cx.text(text.trim())?;
                cx.text("\n")?;
            }
        } else {
            cx.text(&answer)?;
        }
        Ok(JobResult { info })
    }

    pub(crate) fn tts(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let p: SpeakParams = job.params()?;
        if p.pitch.is_some() {
            cx.log(
                LogLevel::Warn,
                "OpenAI-style speech has no pitch control; --pitch is ignored",
            );
        }
        let asked = p.format.as_deref().unwrap_or("mp3");
        let pcm = asked == "pcm";
        // Headerless PCM is written as WAV, so the file says what its samples are.
        let format = AudioFormat::parse(if pcm { "wav" } else { asked })?;
        let model = self.media_model(p.model.as_deref(), self.profile.media.tts);
        let voice = p.voice.as_deref().unwrap_or("alloy");
        let url = self.url("audio/speech");
        let request = |input: &str, format: &str| {
            let mut body = Map::new();
            if let Some(model) = &model {
                body.insert("model".into(), json!(model));
            }
            body.insert("input".into(), json!(input));
            body.insert("voice".into(), json!(voice));
            body.insert("response_format".into(), json!(format));
            if let Some(rate) = p.rate {
                body.insert("speed".into(), json!(rate));
            }
            self.request(Request::post(&url), model.as_deref())
                .json(&body)
        };
        let spoken = Speaker::new(format, Limit::chars(SPEECH_LIMIT))
            .work_dir(job.work_dir())
            .speak(&p.text, cx, |piece, cx| {
                if pcm {
                    let body = self.send(&request(piece.text, "pcm")?, cx)?.bytes(&*cx)?;
                    return Ok(Audio::Pcm(PCM, body));
                }
                if piece.is_direct() {
                    // Servers differ in what they label the audio: its bytes name the file.
                    let response = self.send(&request(piece.text, asked)?, cx)?;
                    let (_, written) =
                        response.write_output("audio", media::format_for_name(asked), cx)?;
                    return Ok(Audio::Written(written));
                }
                let body = self.send(&request(piece.text, "wav")?, cx)?.bytes(&*cx)?;
                Ok(Audio::Wav(body))
            })?;
        let mut info = Map::new();
        info.insert("voice".into(), json!(voice));
        if let Some(model) = &model {
            info.insert("model".into(), json!(model));
        }
        spoken.add_to(&mut info);
        Ok(JobResult { info })
    }
}

/// Returns the media type of an audio file: from its first bytes, else its name.
fn audio_type(path: &str) -> String {
    let mut head = [0u8; 64];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    media::sniff(&head[..n])
        .or_else(|| {
            std::path::Path::new(path)
                .extension()
                .and_then(|e| media::format_for_name(&e.to_string_lossy()))
        })
        .map_or("application/octet-stream", |f| f.media_type)
        .to_string()
}
