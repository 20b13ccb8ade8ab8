//! Offline text-to-speech through the `espeak-ng` program.
//!
//! The `espeak` tool performs `tts` and is the default voice of `launcher run tts` when no
//! better tool is configured: it needs no network, no key and no model download, only
//! Debian's `espeak-ng` package. It speaks over 100 languages, Mandarin (`--voice zh`) and
//! Cantonese (`--voice yue`) among them, and writes WAV. Its own task `voices` lists the
//! voices installed.
//!
//! Text goes to espeak-ng on stdin, never as an argument, so text starting with a dash or
//! longer than the command line allows is spoken as is. The audio is spooled to a temporary
//! file and its header repaired (see the `wav` module) before it is streamed to the host.

use std::io::{Read, Seek, SeekFrom, Write};

use launcher_sdk::{
    ContentKind, Context, Job, JobResult, Manifest, ParamSpec, ParamType, Plugin, PluginError,
    SettingSpec, Settings, TaskSpec, ToolSpec, export_plugin, serde_json::json,
};

mod process;
mod voices;
mod wav;

/// The tool id, which is also the plugin name.
const TOOL: &str = "espeak";
/// The custom task that lists voices.
const VOICES_TASK: &str = "voices";
/// The hint given whenever a voice is not found.
const VOICES_HINT: &str = "list the installed voices with `launcher run voices --tool espeak`";

/// espeak-ng's speaking rate at the normal speed, in words per minute, and the range it
/// accepts.
const NORMAL_WPM: f64 = 175.0;
const MIN_WPM: f64 = 80.0;
const MAX_WPM: f64 = 450.0;

/// The espeak-ng plugin: one tool, `espeak`.
pub struct Espeak {
    program: String,
}

impl Plugin for Espeak {
    fn manifest() -> Manifest {
        let tool = ToolSpec::new(TOOL, &["tts", VOICES_TASK])
            .description("offline text-to-speech with espeak-ng (WAV, 100+ languages)")
            .priority(0)
            .setting(SettingSpec::new(
                "program",
                "LAUNCHER_ESPEAK_PROGRAM",
                "the espeak-ng program to run (default: espeak-ng on PATH)",
            ));
        Manifest::new(TOOL, env!("CARGO_PKG_VERSION"))
            .description("offline text-to-speech through espeak-ng")
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
            VOICES_TASK => self.list_voices(job, cx),
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
    fn speak(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        // espeak-ng reads stdin as C strings: a NUL would silently end the text there.
        let text = job.require_str("text")?.replace('\0', " ");
        if text.trim().is_empty() {
            return Err(PluginError::invalid_input("the text to speak is empty"));
        }
        let format = job.str("format").unwrap_or("wav");
        if !format.eq_ignore_ascii_case("wav") {
            return Err(PluginError::invalid_input(format!(
                "the espeak tool cannot write `{format}` audio, only `wav`"
            ))
            .with_hint("leave out --format, or convert the WAV afterwards"));
        }
        let voice = match job.str("voice").map(str::trim) {
            Some(v) if !v.is_empty() => voices::resolve(v),
            _ => voices::DEFAULT_VOICE.to_string(),
        };
        if let Some((_, variant)) = voice.split_once('+') {
            self.check_variant(variant)?;
        }
        let wpm = words_per_minute(job.f64("rate").unwrap_or(1.0));
        let pitch = pitch_level(job.f64("pitch").unwrap_or(1.0));
        let args = vec![
            "-b".to_string(),
            "1".to_string(),
            "--stdin".to_string(),
            "--stdout".to_string(),
            "-v".to_string(),
            voice.clone(),
            "-s".to_string(),
            wpm.to_string(),
            "-p".to_string(),
            pitch.to_string(),
        ];

        cx.progress(Some(0.0), &format!("speaking with espeak-ng voice {voice}"))?;
        // espeak-ng's own voices are 22050 Hz, 16-bit mono; only used for progress messages.
        let finished = process::run(&self.program, &args, text.as_bytes(), 44_100, cx)?;
        if !finished.status.success() {
            if let Some(err) = voice_problem(&finished.stderr, &voice) {
                return Err(err);
            }
            let detail = finished
                .stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            return Err(PluginError::internal(format!(
                "espeak-ng failed ({}): {detail}",
                finished.status
            )));
        }

        let mut audio = finished.stdout;
        let mut head = vec![0u8; finished.stdout_len.min(4096) as usize];
        audio.read_exact(&mut head)?;
        let layout = wav::fix_header(&mut head, finished.stdout_len).map_err(|err| {
            PluginError::internal(format!("espeak-ng wrote a WAV that cannot be used: {err}"))
        })?;
        cx.progress(Some(1.0), "writing the WAV file")?;

        let mut out = cx.output("audio", "audio/wav", "wav")?;
        out.write_all(&head[..layout.data_offset])?;
        audio.seek(SeekFrom::Start(layout.data_offset as u64))?;
        let mut samples = audio.take(u64::from(layout.data_len));
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = samples.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
        }
        out.finish()?;

        let mut result = JobResult::default();
        result.info.insert("voice".to_string(), json!(voice));
        result
            .info
            .insert("sample_rate".to_string(), json!(layout.sample_rate));
        let duration = (layout.duration_secs() * 1000.0).round() / 1000.0;
        result
            .info
            .insert("duration_secs".to_string(), json!(duration));
        result
            .info
            .insert("words_per_minute".to_string(), json!(wpm));
        Ok(result)
    }

    fn voices_for(&self, language: &str) -> Result<Vec<voices::VoiceEntry>, PluginError> {
        let arg = format!("--voices={language}");
        Ok(voices::parse_list(&process::query(&self.program, &[&arg])?))
    }

    /// Checks a `+variant` suffix against espeak-ng's variants, since espeak-ng silently
    /// ignores one it does not know.
    fn check_variant(&self, variant: &str) -> Result<(), PluginError> {
        let listing = process::query(&self.program, &["--voices=variant"])?;
        let known = voices::parse_list(&listing);
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
        let language = job.str("language").map(str::trim).filter(|l| !l.is_empty());
        let found = match language {
            None => voices::parse_list(&process::query(&self.program, &["--voices"])?),
            Some(language) => {
                // espeak-ng's own filter first, so `zh` lists every Chinese voice; an alias
                // (`mandarin`) only when espeak-ng knows no such language.
                let mut found = self.voices_for(language)?;
                let alias = voices::resolve(language);
                if found.is_empty() && alias != language {
                    found = self.voices_for(&alias)?;
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
        cx.text(&voices::format_table(&found))?;
        let mut result = JobResult::default();
        result.info.insert("voices".to_string(), json!(found.len()));
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(tool.category, ContentKind::Audio);
        assert_eq!(tool.tasks, ["tts", "voices"]);
        assert_eq!(tool.priority, 0);
        let voices = &tool.custom_tasks[0];
        assert!(voices.inputs.is_empty());
        assert_eq!(voices.output, ContentKind::Text);
        assert_eq!(voices.params[0].name, "language");
        assert_eq!(
            tool.settings[0].env.as_deref(),
            Some("LAUNCHER_ESPEAK_PROGRAM")
        );
    }
}
