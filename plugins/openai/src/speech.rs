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
//! **Speech.** One request takes at most [`SPEECH_LIMIT`] characters. A text that fits is
//! one request whose audio is streamed to the output as it arrives, named by the format its
//! first bytes show (servers differ in what they label it). `pcm` is raw 24 kHz 16-bit mono
//! without a header, so it is written as WAV. A longer text is split at sentence ends and
//! every piece asked for as WAV, whose samples can be joined without re-encoding; the
//! samples are spooled to a file in the job's work directory, so memory holds one piece at a
//! time. Compressed pieces (MP3, Opus, AAC, FLAC) cannot be joined that way, so a long text
//! asked for in one of them comes out as WAV, with a warning saying so.

use std::io::{Read, Seek, SeekFrom, Write};

use launcher_sdk::http::{Request, Response};
use launcher_sdk::media::{self, MediaFormat, SampleFormat, Wav, WavSpec};
use launcher_sdk::multipart::Form;
use launcher_sdk::serde_json::{Map, Value, json};
use launcher_sdk::text::{Limit, split_text};
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
        let format = p.format.as_deref().unwrap_or("mp3");
        let model = self.media_model(p.model.as_deref(), self.profile.media.tts);
        let voice = p.voice.as_deref().unwrap_or("alloy");
        let pieces = split_text(&p.text, Limit::chars(SPEECH_LIMIT));
        if pieces.is_empty() {
            return Err(PluginError::invalid_input("there is no text to speak"));
        }
        let body = |input: &str, format: &str| {
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
            body
        };
        let url = self.url("audio/speech");
        let mut info = Map::new();
        info.insert("voice".into(), json!(voice));
        if let Some(model) = &model {
            info.insert("model".into(), json!(model));
        }
        if pieces.len() == 1 {
            let request = self
                .request(Request::post(&url), model.as_deref())
                .json(&body(pieces[0], format))?;
            let response = self.send(&request, cx)?;
            if format == "pcm" {
                write_pcm(response, job, cx)?;
            } else {
                stream_to_output(response, "audio", media::format_for_name(format), cx)?;
            }
            return Ok(JobResult { info });
        }
        if !matches!(format, "wav" | "pcm") {
            cx.log(
                LogLevel::Warn,
                format!(
                    "the text is longer than the {SPEECH_LIMIT} characters one request takes, so it \
                     is spoken in {} pieces; {format} pieces cannot be joined without re-encoding, \
                     so the audio is written as WAV",
                    pieces.len()
                ),
            );
        }
        let mut spool = tempfile::tempfile_in(job.work_dir()).map_err(|e| {
            PluginError::internal(format!("cannot make a file in the work directory: {e}"))
        })?;
        let mut spec = None;
        let mut total = 0u64;
        for (i, piece) in pieces.iter().enumerate() {
            cx.progress(
                Some(i as f64 / pieces.len() as f64),
                &format!("speaking piece {} of {}", i + 1, pieces.len()),
            )?;
            let request = self
                .request(Request::post(&url), model.as_deref())
                .json(&body(piece, "wav"))?;
            let bytes = self.send(&request, cx)?.bytes(&*cx)?;
            let wav = Wav::parse(&bytes).map_err(|e| {
                PluginError::unavailable(format!(
                    "piece {} of the speech is not the WAV asked for: {}",
                    i + 1,
                    e.message
                ))
            })?;
            match spec {
                None => spec = Some(wav.spec),
                Some(first) if first != wav.spec => {
                    return Err(PluginError::unavailable(format!(
                        "piece {} of the speech is {} but the first is {first}, so they cannot be joined",
                        i + 1,
                        wav.spec
                    )));
                }
                Some(_) => {}
            }
            spool.write_all(wav.data)?;
            total += wav.data.len() as u64;
        }
        let spec = spec.expect("there is at least one piece");
        spool.seek(SeekFrom::Start(0))?;
        let mut out = cx.output("audio", "audio/wav", "wav")?;
        spec.write_header(&mut out, total)?;
        std::io::copy(&mut spool, &mut out)?;
        if total % 2 == 1 {
            out.write_all(&[0])?;
        }
        out.finish()?;
        info.insert("pieces".into(), json!(pieces.len()));
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

/// Writes a body to the output `name` as it arrives, as the format its first bytes show
/// (else `fallback`, whose extension is kept when the bytes agree); returns that format.
pub(crate) fn stream_to_output(
    mut response: Response,
    name: &str,
    fallback: Option<MediaFormat>,
    cx: &mut Context<'_>,
) -> Result<MediaFormat, PluginError> {
    let mut head = Vec::new();
    while head.len() < 64 {
        match response.chunk(&*cx)? {
            Some(bytes) => head.extend_from_slice(&bytes),
            None => break,
        }
    }
    if head.is_empty() {
        return Err(PluginError::unavailable(format!(
            "the server answered with an empty body where `{name}` was expected"
        )));
    }
    // The sniffed format decides; the asked-for one only names an extension the bytes agree
    // with (Opus arrives in Ogg, which sniffs as `ogg`).
    let format = match (media::sniff(&head), fallback) {
        (Some(sniffed), Some(asked)) if sniffed.media_type == asked.media_type => Some(asked),
        (sniffed, asked) => sniffed.or(asked),
    };
    let format = format.ok_or_else(|| {
        PluginError::unavailable(format!(
            "the server sent `{name}` in a format that is not recognised"
        ))
    })?;
    let mut out = cx.output(name, format.media_type, format.extension)?;
    out.write_all(&head)?;
    response.copy_to(&mut out)?;
    out.finish()?;
    Ok(format)
}

/// Writes raw PCM as a WAV file: streamed when the server announced its length, else
/// spooled to the work directory first, because the header comes before the samples.
fn write_pcm(mut response: Response, job: &Job, cx: &mut Context<'_>) -> Result<(), PluginError> {
    if let Some(len) = response.content_length() {
        let mut out = cx.output("audio", "audio/wav", "wav")?;
        PCM.write_header(&mut out, len)?;
        let written = response.copy_to(&mut out)?;
        if written != len {
            return Err(PluginError::unavailable(format!(
                "the server announced {len} bytes of audio but sent {written}"
            )));
        }
        if len % 2 == 1 {
            out.write_all(&[0])?;
        }
        return out.finish();
    }
    let mut spool = tempfile::tempfile_in(job.work_dir()).map_err(|e| {
        PluginError::internal(format!("cannot make a file in the work directory: {e}"))
    })?;
    let mut len = 0u64;
    while let Some(bytes) = response.chunk(&*cx)? {
        spool.write_all(&bytes)?;
        len += bytes.len() as u64;
    }
    spool.seek(SeekFrom::Start(0))?;
    let mut out = cx.output("audio", "audio/wav", "wav")?;
    PCM.write_header(&mut out, len)?;
    std::io::copy(&mut spool, &mut out)?;
    if len % 2 == 1 {
        out.write_all(&[0])?;
    }
    out.finish()
}
