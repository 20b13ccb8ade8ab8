//! Offline text-to-speech through the `espeak-ng` program.
//!
//! The `espeak` tool performs `tts` and is the default voice of `launcher run tts` when no
//! better tool is configured: it needs no network, no key and no model download, only
//! Debian's `espeak-ng` package. It speaks over 100 languages, Mandarin (`--voice zh`) and
//! Cantonese (`--voice yue`) among them, and writes WAV; MP3, Ogg, FLAC and M4A are encoded
//! from it by ffmpeg ([`speech::encode_wav`]), so `-o speech.mp3` works too. Its `voices`
//! task lists the voices installed.
//!
//! Text goes to espeak-ng on stdin, never as an argument, so text starting with a dash or
//! longer than the command line allows is spoken as is. espeak-ng cannot seek back in a pipe,
//! so it writes placeholder sizes; the audio is spooled to a file in the job's work directory
//! and its header repaired ([`media::repair_header`]) before it is streamed to the host. When
//! the output itself cannot seek back (stdout, [`Job::streaming`]), the audio goes out as it
//! comes instead, with espeak-ng's streaming header, so a player starts at once.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use launcher_sdk::media;
use launcher_sdk::process::{Event, Runner, TempFile};
use launcher_sdk::speech::{self, AudioFormat, Encoding};
use launcher_sdk::{
    Context, Job, JobResult, LogLevel, Manifest, Plugin, PluginError, SettingSpec, Settings,
    ToolSpec, export_plugin, serde_json::json,
};
use serde::Deserialize;

mod voices;

/// The tool id, which is also the plugin name.
const TOOL: &str = "espeak";
/// The hint given whenever a voice is not found.
const VOICES_HINT: &str = "list the installed voices with `launcher run voices --tool espeak`";
const INSTALL_HINT: &str = "install it with `apt-get install espeak-ng`, or point the `program` \
                            setting (LAUNCHER_ESPEAK_PROGRAM) at it";

/// espeak-ng's speaking rate at the normal speed, in words per minute, and the range it
/// accepts.
const NORMAL_WPM: f64 = 175.0;
const MIN_WPM: f64 = 80.0;
const MAX_WPM: f64 = 450.0;
/// How often progress is reported while espeak-ng speaks.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// espeak-ng's own voices are 22050 Hz, 16-bit mono; only used for progress messages.
const BYTES_PER_SEC: f64 = 44_100.0;

/// The espeak-ng plugin: one tool, `espeak`.
pub struct Espeak {
    program: String,
}

/// The parameters of a `tts` job (ranges are checked by the host).
#[derive(Deserialize)]
struct Speak {
    text: String,
    voice: Option<String>,
    rate: Option<f64>,
    pitch: Option<f64>,
    format: Option<String>,
}

/// What the plugin and its one tool are, in the words `list` and `search` both show.
const DESCRIPTION: &str =
    "offline text-to-speech with espeak-ng (WAV, or MP3 and more with ffmpeg; 100+ languages)";

impl Plugin for Espeak {
    fn manifest() -> Manifest {
        let tool = ToolSpec::new(TOOL, &["tts", "voices"])
            .description(DESCRIPTION)
            .priority(0)
            .setting(SettingSpec::new(
                "program",
                "LAUNCHER_ESPEAK_PROGRAM",
                "the espeak-ng program to run (default: espeak-ng on PATH)",
            ));
        Manifest::new(TOOL, env!("CARGO_PKG_VERSION"))
            .description(DESCRIPTION)
            .tool(tool)
    }

    fn new(tool: &str, settings: &Settings) -> Result<Self, PluginError> {
        if tool != TOOL {
            return Err(PluginError::internal(format!(
                "the espeak plugin has no tool `{tool}`"
            )));
        }
        Ok(Espeak {
            program: settings.get("program").unwrap_or("espeak-ng").to_string(),
        })
    }

    fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        match job.task.as_str() {
            "tts" => self.speak(job, cx),
            "voices" => self.list_voices(job, cx),
            other => Err(PluginError::invalid_input(format!(
                "the espeak tool does not perform task `{other}`"
            ))),
        }
    }
}

export_plugin!(Espeak);

/// Returns espeak-ng's `-s` for a rate multiplier (1.0 is normal).
fn words_per_minute(rate: f64) -> u32 {
    (NORMAL_WPM * rate).round().clamp(MIN_WPM, MAX_WPM) as u32
}

/// Returns espeak-ng's `-p` (0 to 99, 50 normal) for a pitch multiplier (0.5 to 2, 1.0
/// normal). The scale is logarithmic, so an octave down and an octave up land on the ends.
fn pitch_level(pitch: f64) -> u32 {
    if pitch <= 0.0 {
        return 0;
    }
    (50.0 + 50.0 * pitch.log2()).round().clamp(0.0, 99.0) as u32
}

/// Returns the error to report when espeak-ng's stderr says it could not use `voice`.
fn voice_problem(stderr: &str, voice: &str) -> Option<PluginError> {
    if stderr.contains("mbrola voice") {
        return Some(
            PluginError::invalid_input(format!(
                "espeak-ng voice `{voice}` needs the MBROLA synthesizer and its voice data"
            ))
            .with_hint(format!(
                "install them (e.g. `apt-get install mbrola mbrola-us1`), or pick another \
                 voice: {VOICES_HINT}"
            )),
        );
    }
    let unknown = [
        "voice does not exist",
        // What it says (before crashing) for a variant given without a language.
        "language not set, or is invalid",
    ];
    unknown
        .iter()
        .any(|needle| stderr.contains(needle))
        .then(|| {
            PluginError::invalid_input(format!("espeak-ng has no voice `{voice}`"))
                .with_hint(VOICES_HINT)
        })
}

impl Espeak {
    fn runner(&self) -> Runner {
        Runner::new(&self.program).install_hint(INSTALL_HINT)
    }

    fn speak(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let params: Speak = job.params()?;
        // espeak-ng reads stdin as C strings: a NUL would silently end the text there.
        let text = params.text.replace('\0', " ");
        if text.trim().is_empty() {
            return Err(PluginError::invalid_input("the text to speak is empty"));
        }
        let format = AudioFormat::parse(params.format.as_deref().unwrap_or("wav"))?;
        let voice = match params.voice.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => voices::resolve(v),
            _ => voices::DEFAULT_VOICE.to_string(),
        };
        self.check_voice(&voice, cx)?;
        if let Some((_, variant)) = voice.split_once('+') {
            self.check_variant(variant, cx)?;
        }
        let wpm = words_per_minute(params.rate.unwrap_or(1.0));
        let pitch = pitch_level(params.pitch.unwrap_or(1.0));

        // Only WAV can go out as espeak-ng makes it; another format is made from the file.
        if job.streaming && format.encoding == Encoding::Wav {
            return self.speak_streaming(&text, &voice, wpm, pitch, cx);
        }
        let mut spool = TempFile::new_in(job.work_dir(), "launcher-espeak-", ".wav")?;
        cx.log(
            LogLevel::Debug,
            format!("espeak-ng writes to {}", spool.path().display()),
        );
        cx.progress(Some(0.0), &format!("speaking with espeak-ng voice {voice}"))?;
        let mut running = self
            .runner()
            .args(["-b", "1", "--stdin", "--stdout", "-v", &voice])
            .args(["-s", &wpm.to_string(), "-p", &pitch.to_string()])
            .stdin(text.into_bytes())
            .allow_failure()
            .spawn()?;
        let (mut spooled, mut reported) = (0u64, Instant::now());
        while let Some(event) = running.next(&*cx)? {
            if let Event::Stdout(chunk) = event {
                spool.file().write_all(&chunk)?;
                spooled += chunk.len() as u64;
            }
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                let secs = spooled as f64 / BYTES_PER_SEC;
                cx.progress(None, &format!("{secs:.0} s of speech so far"))?;
            }
        }
        let finished = running.finish(&*cx)?;
        if !finished.status.success() {
            return Err(voice_problem(&finished.stderr, &voice).unwrap_or_else(|| {
                let detail = finished.stderr.lines().find(|l| !l.trim().is_empty());
                PluginError::internal(format!(
                    "espeak-ng failed ({}): {}",
                    finished.status,
                    detail.unwrap_or("no message")
                ))
            }));
        }

        let file = spool.file();
        file.rewind()?;
        let mut head = Vec::new();
        file.take(4096).read_to_end(&mut head)?;
        let header = media::repair_header(&mut head, spooled).map_err(|err| {
            PluginError::internal(format!(
                "espeak-ng wrote a WAV that cannot be used: {}",
                err.message
            ))
        })?;
        let data_len = u64::from(header.declared_len);
        match format.encoding {
            Encoding::Wav => {
                cx.progress(Some(1.0), "writing the WAV file")?;
                let mut out = cx.output("audio", "audio/wav", "wav")?;
                out.write_all(&head[..header.data_offset])?;
                file.seek(SeekFrom::Start(header.data_offset as u64))?;
                io::copy(&mut file.take(data_len), &mut out)?;
                out.finish()?;
            }
            Encoding::Pcm => {
                let mut out = cx.output("audio", format.media_type, format.extension)?;
                file.seek(SeekFrom::Start(header.data_offset as u64))?;
                io::copy(&mut file.take(data_len), &mut out)?;
                out.finish()?;
            }
            _ => {
                // ffmpeg reads the repaired header from the file itself.
                file.rewind()?;
                file.write_all(&head[..header.data_offset])?;
                file.flush()?;
                cx.progress(
                    Some(1.0),
                    &format!("encoding the speech as {}", format.extension),
                )?;
                let ffmpeg = std::path::Path::new("ffmpeg");
                let mut encoded =
                    speech::encode_wav(spool.path(), &format, ffmpeg, &job.work_dir(), cx)?;
                let mut out = cx.output("audio", format.media_type, format.extension)?;
                io::copy(encoded.file(), &mut out)?;
                out.finish()?;
            }
        }

        let mut result = JobResult::default();
        let duration = header.spec.duration_secs(data_len);
        result.info.insert("voice".into(), json!(voice));
        result
            .info
            .insert("sample_rate".into(), json!(header.spec.sample_rate));
        let rounded = (duration * 1000.0).round() / 1000.0;
        result.info.insert("duration_secs".into(), json!(rounded));
        result.info.insert("words_per_minute".into(), json!(wpm));
        Ok(result)
    }

    /// Speaks into an output that cannot seek back (stdout): espeak-ng's WAV, with the
    /// streaming size marker it writes into its header, goes out as it comes, so a player
    /// reading the pipe starts at once.
    fn speak_streaming(
        &self,
        text: &str,
        voice: &str,
        wpm: u32,
        pitch: u32,
        cx: &mut Context<'_>,
    ) -> Result<JobResult, PluginError> {
        let mut running = self
            .runner()
            .args(["-b", "1", "--stdin", "--stdout", "-v", voice])
            .args(["-s", &wpm.to_string(), "-p", &pitch.to_string()])
            .stdin(text.as_bytes().to_vec())
            .allow_failure()
            .spawn()?;
        let mut out = cx.output("audio", "audio/wav", "wav")?;
        let mut written = 0u64;
        let mut head: Vec<u8> = Vec::new();
        let mut header = None;
        // The writer is the cancel token too: it holds the context while it is open.
        while let Some(event) = running.next(&out)? {
            if let Event::Stdout(chunk) = event {
                out.write_all(&chunk)?;
                // Each piece goes out now, not when a chunk's worth has gathered.
                out.flush()?;
                written += chunk.len() as u64;
                if header.is_none() && head.len() < 4096 {
                    head.extend_from_slice(&chunk[..chunk.len().min(4096 - head.len())]);
                    header = media::WavHeader::parse(&head).ok();
                }
            }
        }
        let finished = running.finish(&out)?;
        if !finished.status.success() {
            return Err(voice_problem(&finished.stderr, voice).unwrap_or_else(|| {
                let detail = finished.stderr.lines().find(|l| !l.trim().is_empty());
                PluginError::internal(format!(
                    "espeak-ng failed ({}): {}",
                    finished.status,
                    detail.unwrap_or("no message")
                ))
            }));
        }
        let header = header.ok_or_else(|| {
            PluginError::internal("espeak-ng wrote no WAV header that can be used")
        })?;
        out.finish()?;
        let data_len = header.data_len(written)?;
        let mut result = JobResult::default();
        let duration = header.spec.duration_secs(data_len);
        result.info.insert("voice".into(), json!(voice));
        result
            .info
            .insert("sample_rate".into(), json!(header.spec.sample_rate));
        let rounded = (duration * 1000.0).round() / 1000.0;
        result.info.insert("duration_secs".into(), json!(rounded));
        result.info.insert("words_per_minute".into(), json!(wpm));
        Ok(result)
    }

    /// Returns the voices espeak-ng lists for `filter` (`--voices=<filter>`), or all of them.
    fn voices_for(
        &self,
        filter: Option<&str>,
        cx: &Context<'_>,
    ) -> Result<Vec<voices::VoiceEntry>, PluginError> {
        let arg = filter.map_or_else(|| "--voices".to_string(), |f| format!("--voices={f}"));
        let output = self.runner().arg(arg).output(cx)?;
        Ok(voices::parse_list(&String::from_utf8_lossy(&output.stdout)))
    }

    /// Checks a voice (before any `+variant`) against the voices espeak-ng lists, since
    /// espeak-ng speaks its default voice for a name it does not know.
    fn check_voice(&self, voice: &str, cx: &Context<'_>) -> Result<(), PluginError> {
        let base = voice.split_once('+').map_or(voice, |(base, _)| base);
        // A voice of the separate MBROLA synthesizer is not listed; espeak-ng says itself
        // when one is missing.
        if base.is_empty() || base.starts_with("mb-") || base.starts_with("mb/") {
            return Ok(());
        }
        let known = self.voices_for(None, cx)?;
        match voices::check(base, &known) {
            Ok(()) => Ok(()),
            Err(close) => {
                let hint = if close.is_empty() {
                    VOICES_HINT.to_string()
                } else {
                    format!(
                        "did you mean {}? Or {VOICES_HINT}",
                        close
                            .iter()
                            .map(|c| format!("`{c}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                Err(
                    PluginError::invalid_input(format!("espeak-ng has no voice `{base}`"))
                        .with_hint(hint),
                )
            }
        }
    }

    /// Checks a `+variant` suffix against espeak-ng's variants, since espeak-ng silently
    /// ignores one it does not know.
    fn check_variant(&self, variant: &str, cx: &Context<'_>) -> Result<(), PluginError> {
        let known = self.voices_for(Some("variant"), cx)?;
        if known
            .iter()
            .any(|v| v.id().strip_prefix('+') == Some(variant))
        {
            Ok(())
        } else {
            Err(
                PluginError::invalid_input(format!("espeak-ng has no voice variant `{variant}`"))
                    .with_hint(
                        "list the variants with `launcher run voices --tool espeak --language \
                         variant` (their names are case-sensitive)",
                    ),
            )
        }
    }

    fn list_voices(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let found = match job.given("language") {
            None => self.voices_for(None, cx)?,
            Some(language) => {
                // espeak-ng's own filter first, so `zh` lists every Chinese voice; an alias
                // (`mandarin`) only when espeak-ng knows no such language.
                let mut found = self.voices_for(Some(language), cx)?;
                let alias = voices::resolve(language);
                if found.is_empty() && alias != language {
                    found = self.voices_for(Some(&alias), cx)?;
                }
                if found.is_empty() {
                    return Err(PluginError::invalid_input(format!(
                        "espeak-ng has no voice for language `{language}`"
                    ))
                    .with_hint("leave out --language to see every voice"));
                }
                found
            }
        };
        let listed: Vec<voices::Voice<'_>> = found.iter().map(voices::Voice::from).collect();
        cx.json("voices", &listed)?;
        let mut result = JobResult::default();
        result.info.insert("voices".into(), json!(listed.len()));
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use launcher_sdk::ContentKind;

    #[test]
    fn rate_maps_to_words_per_minute_within_espeaks_range() {
        assert_eq!(words_per_minute(1.0), 175);
        assert_eq!(words_per_minute(2.0), 350);
        assert_eq!(words_per_minute(0.5), 88);
        assert_eq!(words_per_minute(0.25), 80);
        assert_eq!(words_per_minute(4.0), 450);
    }

    #[test]
    fn pitch_maps_to_espeaks_scale() {
        assert_eq!(pitch_level(1.0), 50);
        assert_eq!(pitch_level(0.5), 0);
        assert_eq!(pitch_level(2.0), 99);
        assert_eq!(pitch_level(1.5), 79);
        assert_eq!(pitch_level(0.75), 29);
        assert_eq!(pitch_level(0.0), 0);
    }

    #[test]
    fn voice_failures_are_recognised() {
        let unknown = voice_problem(
            "Error: The specified espeak-ng voice does not exist.\n",
            "xx",
        )
        .unwrap();
        assert_eq!(unknown.message, "espeak-ng has no voice `xx`");
        assert!(
            unknown
                .hint
                .unwrap()
                .contains("launcher run voices --tool espeak")
        );
        let mbrola = voice_problem(
            "mbrola executable was not found. Please install MBROLA!\n\
             Error: Could not load the specified mbrola voice file.\n",
            "mb-us1",
        )
        .unwrap();
        assert!(mbrola.message.contains("MBROLA"), "{}", mbrola.message);
        assert!(voice_problem("espeak-ng: out of memory\n", "en").is_none());
    }

    #[test]
    fn the_manifest_declares_tts_and_voices() {
        let manifest = Espeak::manifest();
        manifest.validate().unwrap();
        let tool = &manifest.tools[0];
        assert_eq!(tool.id, "espeak");
        assert_eq!(tool.categories(), [ContentKind::Audio]);
        assert_eq!(tool.tasks, ["tts", "voices"]);
        assert!(tool.custom_tasks.is_empty(), "voices is the standard task");
        assert!(!tool.cloud);
        assert_eq!(tool.priority, 0);
        let voices = tool.task("voices").unwrap();
        assert!(voices.inputs.is_empty());
        assert_eq!(voices.output_kind(), Some(ContentKind::Text));
        assert_eq!(voices.params[0].name, "language");
        assert_eq!(
            tool.settings[0].env.as_deref(),
            Some("LAUNCHER_ESPEAK_PROGRAM")
        );
    }
}
