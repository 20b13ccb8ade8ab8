//! Local video composition through the `ffmpeg` program.
//!
//! The `ffmpeg` tool performs `compose`: one or more `--image` and an `--audio` become an MP4
//! (H.264 and AAC) as long as the audio, to within half a frame. The images share that time
//! equally, each fitted inside the frame and letterboxed on black. This is the narrated
//! slideshow a content maker otherwise assembles by hand from a `tts` voice-over and a few
//! generated pictures.
//!
//! Inputs are checked with `ffprobe` first, so a file that is not a picture or holds no sound
//! is named in the error. ffmpeg writes to a temporary file in the job's work directory (MP4's
//! index is moved to the front once the whole file exists, which needs seeking), then the file
//! is streamed to the host in chunks. Both programs run under the SDK's
//! [`launcher_sdk::process::Runner`], so a cancelled job kills ffmpeg and removes the
//! temporary file.

use std::fs::File;
use std::path::Path;

use launcher_sdk::process::{Event, Runner, TempFile};
use launcher_sdk::{
    Context, Job, JobResult, LogLevel, Manifest, ParamSpec, ParamType, Plugin, PluginError,
    SettingSpec, Settings, ToolSpec, export_plugin, serde_json::json,
};
use serde::Deserialize;

mod graph;
mod probe;

/// The tool id, which is also the plugin name.
const TOOL: &str = "ffmpeg";

const DEFAULT_WIDTH: i64 = 1280;
const DEFAULT_HEIGHT: i64 = 720;
/// The rate players and upload sites expect; stills gain nothing from more.
const DEFAULT_FPS: i64 = 25;

/// ffmpeg `-loglevel error` keeps stderr short; this much of it is kept.
const STDERR_LIMIT: usize = 64 * 1024;

/// The parameters of a `compose` job (ranges are checked by the host).
#[derive(Deserialize)]
struct Compose {
    image: Images,
    audio: String,
    width: u32,
    height: u32,
    fps: u32,
}

/// One `--image` or several: a repeatable parameter given once arrives as a single value.
#[derive(Deserialize)]
#[serde(untagged)]
enum Images {
    One(String),
    Many(Vec<String>),
}

impl Images {
    fn into_vec(self) -> Vec<String> {
        match self {
            Images::One(image) => vec![image],
            Images::Many(images) => images,
        }
    }
}

/// The ffmpeg plugin: one tool, `ffmpeg`.
pub struct Ffmpeg {
    ffmpeg: String,
    ffprobe: String,
}

impl Plugin for Ffmpeg {
    fn manifest() -> Manifest {
        let tool = ToolSpec::new(TOOL, &["compose"])
            .description("images and a soundtrack into an MP4 slideshow, locally with ffmpeg")
            .param(
                ParamSpec::new("width", ParamType::Integer, "frame width in pixels (even)")
                    .default_value(DEFAULT_WIDTH)
                    .range(16.0, 7680.0),
            )
            .param(
                ParamSpec::new(
                    "height",
                    ParamType::Integer,
                    "frame height in pixels (even)",
                )
                .default_value(DEFAULT_HEIGHT)
                .range(16.0, 4320.0),
            )
            .param(
                ParamSpec::new(
                    "fps",
                    ParamType::Integer,
                    "frames per second; lower encodes stills faster",
                )
                .default_value(DEFAULT_FPS)
                .range(1.0, 60.0),
            )
            .setting(SettingSpec::new(
                "program",
                "LAUNCHER_FFMPEG_PROGRAM",
                "the ffmpeg program to run (default: ffmpeg on PATH)",
            ))
            .setting(SettingSpec::new(
                "ffprobe",
                "LAUNCHER_FFPROBE_PROGRAM",
                "the ffprobe program to run (default: the one beside ffmpeg)",
            ));
        Manifest::new(TOOL, env!("CARGO_PKG_VERSION"))
            .description("local video composition through ffmpeg")
            .tool(tool)
    }

    fn new(tool: &str, settings: &Settings) -> Result<Self, PluginError> {
        if tool != TOOL {
            return Err(PluginError::internal(format!(
                "the ffmpeg plugin has no tool `{tool}`"
            )));
        }
        let ffmpeg = settings.get("program").unwrap_or("ffmpeg").to_string();
        let ffprobe = match settings.get("ffprobe") {
            Some(ffprobe) => ffprobe.to_string(),
            None => ffprobe_beside(&ffmpeg),
        };
        Ok(Ffmpeg { ffmpeg, ffprobe })
    }

    fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        if job.task != "compose" {
            return Err(PluginError::invalid_input(format!(
                "the ffmpeg tool does not perform task `{}`",
                job.task
            )));
        }
        self.compose(job, cx)
    }
}

export_plugin!(Ffmpeg);

/// Checks that a frame side is even: H.264 in yuv420p stores colour at half resolution.
fn even_dimension(name: &str, value: u32) -> Result<u32, PluginError> {
    if value.is_multiple_of(2) {
        return Ok(value);
    }
    Err(
        PluginError::invalid_input(format!("--{name} must be an even number, not {value}"))
            .with_hint(format!("try --{name} {}", value + 1)),
    )
}

/// Returns the ffprobe to use with `ffmpeg`: the one beside it when ffmpeg is given by path
/// (`/opt/ff/ffmpeg-6` → `/opt/ff/ffprobe-6`), else `ffprobe` on PATH.
fn ffprobe_beside(ffmpeg: &str) -> String {
    let path = Path::new(ffmpeg);
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return "ffprobe".to_string();
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.contains("ffmpeg"))
        .map_or_else(|| "ffprobe".to_string(), |n| n.replace("ffmpeg", "ffprobe"));
    dir.join(name).to_string_lossy().into_owned()
}

/// Returns the progress ffmpeg reports, in seconds of output written, from one line of its
/// `-progress` output, or `None` for the other keys.
fn progress_secs(line: &str) -> Option<f64> {
    let value = line.strip_prefix("out_time_us=")?;
    // Before the first frame ffmpeg writes `N/A`, and sometimes a negative value.
    let micros = value.trim().parse::<i64>().ok()?;
    Some(micros.max(0) as f64 / 1e6)
}

impl Ffmpeg {
    fn compose(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let params: Compose = job.params()?;
        let images = params.image.into_vec();
        let audio = params.audio.as_str();
        let width = even_dimension("width", params.width)?;
        let height = even_dimension("height", params.height)?;
        let fps = params.fps;

        cx.progress(Some(0.0), "checking the inputs")?;
        let duration = probe::audio_duration(&self.ffprobe, audio, cx)?;
        for image in &images {
            probe::check_image(&self.ffprobe, image, cx)?;
        }
        let frames = graph::frames_per_image(images.len(), duration, fps).ok_or_else(|| {
            PluginError::invalid_input(format!(
                "{} images do not fit in {duration:.2} s of audio at {fps} frames a second",
                images.len()
            ))
            .with_hint("give fewer images or a higher --fps")
        })?;

        let video = TempFile::new_in(job.work_dir(), "launcher-ffmpeg-", ".mp4")?;
        let video_path = video.path().to_string_lossy().into_owned();
        cx.log(LogLevel::Debug, format!("ffmpeg writes to {video_path}"));

        let mut runner = Runner::new(&self.ffmpeg)
            .install_hint(probe::INSTALL_HINT)
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]);
        for input in images.iter().map(String::as_str).chain([audio]) {
            runner = runner.arg("-i").arg(probe::file_url(input));
        }
        let runner = runner
            .arg("-filter_complex")
            .arg(graph::filter_graph(&frames, width, height, fps))
            .args(["-map", "[v]", "-map", &format!("{}:a:0", images.len())])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-tune",
                "stillimage",
            ])
            .args(["-pix_fmt", "yuv420p", "-r", &fps.to_string()])
            .args(["-c:a", "aac", "-b:a", "192k", "-movflags", "+faststart"])
            .args(["-progress", "pipe:1", "-nostats", "-f", "mp4"])
            .arg(probe::file_url(&video_path))
            .stdout_lines()
            .stderr_limit(STDERR_LIMIT)
            .allow_failure();

        cx.progress(Some(0.0), "encoding")?;
        let mut running = runner.spawn()?;
        cx.log(
            LogLevel::Debug,
            format!("ffmpeg runs as process {}", running.id()),
        );
        while let Some(event) = running.next(&*cx)? {
            if let Event::Line(line) = event
                && let Some(secs) = progress_secs(&line)
            {
                let fraction = if duration > 0.0 { secs / duration } else { 0.0 };
                cx.progress(
                    Some(fraction.min(0.99)),
                    &format!("encoded {secs:.1} of {duration:.1} s"),
                )?;
            }
        }
        let finished = running.finish(&*cx)?;
        if !finished.status.success() {
            return Err(ffmpeg_failure(&finished.stderr, finished.status));
        }

        cx.progress(Some(1.0), "writing the video")?;
        let mut out = cx.output("video", "video/mp4", "mp4")?;
        std::io::copy(&mut File::open(video.path())?, &mut out)?;
        out.finish()?;

        let mut result = JobResult::default();
        let rounded = (duration * 1000.0).round() / 1000.0;
        result.info.insert("duration_secs".into(), json!(rounded));
        result.info.insert("width".into(), json!(width));
        result.info.insert("height".into(), json!(height));
        result.info.insert("fps".into(), json!(fps));
        result.info.insert("images".into(), json!(images.len()));
        Ok(result)
    }
}

/// Returns the error for an ffmpeg run that failed after its inputs passed ffprobe.
fn ffmpeg_failure(stderr: &str, status: impl std::fmt::Display) -> PluginError {
    let line = probe::relevant_line(stderr).unwrap_or("no message");
    if line.contains("Unknown encoder") || line.contains("Encoder not found") {
        return PluginError::unavailable(format!("this ffmpeg cannot encode the video: {line}"))
            .with_hint("install Debian's ffmpeg (`apt-get install ffmpeg`), built with libx264");
    }
    if ["Invalid data", "Error while decoding", "decode", "corrupt"]
        .iter()
        .any(|needle| line.contains(needle))
    {
        return PluginError::invalid_input(format!("ffmpeg cannot read an input: {line}"));
    }
    PluginError::internal(format!("ffmpeg failed ({status}): {line}"))
}

#[cfg(test)]
mod tests {
    use launcher_sdk::{ContentKind, ErrorKind};

    use super::*;

    #[test]
    fn the_manifest_declares_compose_with_its_params() {
        let manifest = Ffmpeg::manifest();
        manifest.validate().unwrap();
        let tool = &manifest.tools[0];
        assert_eq!(tool.id, "ffmpeg");
        assert_eq!(tool.categories(), [ContentKind::Video]);
        assert_eq!(tool.tasks, ["compose"]);
        let names: Vec<&str> = tool.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["width", "height", "fps"]);
        assert_eq!(tool.params[0].default, Some(json!(1280)));
        assert_eq!(tool.params[1].default, Some(json!(720)));
        assert_eq!(tool.params[2].default, Some(json!(25)));
    }

    #[test]
    fn odd_sizes_are_refused_with_the_next_even_one() {
        assert_eq!(even_dimension("width", 1280).unwrap(), 1280);
        let odd = even_dimension("width", 641).unwrap_err();
        assert_eq!(odd.kind, ErrorKind::InvalidInput);
        assert!(odd.message.contains("even"), "{}", odd.message);
        assert_eq!(odd.hint.as_deref(), Some("try --width 642"));
    }

    #[test]
    fn ffprobe_is_found_beside_ffmpeg() {
        assert_eq!(ffprobe_beside("ffmpeg"), "ffprobe");
        assert_eq!(ffprobe_beside("/usr/bin/ffmpeg"), "/usr/bin/ffprobe");
        assert_eq!(ffprobe_beside("/opt/ff/ffmpeg-6"), "/opt/ff/ffprobe-6");
        assert_eq!(ffprobe_beside("/opt/ff/encoder"), "/opt/ff/ffprobe");
    }

    #[test]
    fn progress_comes_from_out_time_us() {
        assert_eq!(progress_secs("out_time_us=2647075"), Some(2.647075));
        assert_eq!(progress_secs("out_time_us=N/A"), None);
        assert_eq!(progress_secs("out_time_us=-9223372036854775807"), Some(0.0));
        assert_eq!(progress_secs("out_time_ms=2647075"), None);
        assert_eq!(progress_secs("progress=end"), None);
    }

    #[test]
    fn failures_are_classified_from_the_relevant_line() {
        let status = "exit status: 1";
        let missing = ffmpeg_failure("Unknown encoder 'libx264'\n", status);
        assert_eq!(missing.kind, ErrorKind::Unavailable);
        let bad = ffmpeg_failure(
            "Error while decoding stream #0:0: Invalid data found when processing input\n\
             Conversion failed!\n",
            status,
        );
        assert_eq!(bad.kind, ErrorKind::InvalidInput);
        assert!(
            bad.message
                .ends_with("Invalid data found when processing input")
        );
        let other = ffmpeg_failure("[mp4 @ 0x5] No space left on device\n", status);
        assert_eq!(other.kind, ErrorKind::Internal);
        assert_eq!(
            other.message,
            "ffmpeg failed (exit status: 1): No space left on device"
        );
    }
}
