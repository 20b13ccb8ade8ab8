//! Local video composition through the `ffmpeg` program.
//!
//! The `ffmpeg` tool performs `compose`: one or more `--image` and an `--audio` become an MP4
//! (H.264 and AAC) as long as the audio, to within half a frame. The images share that time
//! equally, each fitted inside the frame and letterboxed on black. This is the narrated
//! slideshow a content maker otherwise assembles by hand from a `tts` voice-over and a few
//! generated pictures.
//!
//! Inputs are checked with `ffprobe` first, so a file that is not a picture or holds no sound
//! is named in the error. ffmpeg writes to a temporary file (MP4's index is moved to the
//! front once the whole file exists, which needs seeking), then the file is streamed to the
//! host in chunks.

use std::fs::File;
use std::io::{Read, Write};

use launcher_sdk::{
    ContentKind, Context, Job, JobResult, LogLevel, Manifest, ParamSpec, ParamType, Plugin,
    PluginError, SettingSpec, Settings, ToolSpec, export_plugin, serde_json::json,
};

mod graph;
mod probe;
mod process;

/// The tool id, which is also the plugin name.
const TOOL: &str = "ffmpeg";

const DEFAULT_WIDTH: i64 = 1280;
const DEFAULT_HEIGHT: i64 = 720;
/// The rate players and upload sites expect; stills gain nothing from more.
const DEFAULT_FPS: i64 = 25;

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
            None => process::ffprobe_beside(&ffmpeg),
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

/// Returns integer parameter `name`, or its default, checked to be an even number in range.
fn even_dimension(job: &Job, name: &str, default: i64, max: i64) -> Result<u32, PluginError> {
    let value = job.i64(name).unwrap_or(default);
    if !(16..=max).contains(&value) {
        return Err(PluginError::invalid_input(format!(
            "--{name} must be between 16 and {max}, not {value}"
        )));
    }
    // H.264 in yuv420p stores colour at half resolution, so both sides must be even.
    if value % 2 != 0 {
        return Err(PluginError::invalid_input(format!(
            "--{name} must be an even number, not {value}"
        ))
        .with_hint(format!("try --{name} {}", value + 1)));
    }
    Ok(value as u32)
}

impl Ffmpeg {
    fn compose(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let images = job.strings("image");
        if images.is_empty() {
            return Err(PluginError::invalid_input("give at least one --image"));
        }
        let audio = job.require_str("audio")?;
        let width = even_dimension(job, "width", DEFAULT_WIDTH, 7680)?;
        let height = even_dimension(job, "height", DEFAULT_HEIGHT, 4320)?;
        let fps = job.i64("fps").unwrap_or(DEFAULT_FPS);
        if !(1..=60).contains(&fps) {
            return Err(PluginError::invalid_input(format!(
                "--fps must be between 1 and 60, not {fps}"
            )));
        }
        let fps = fps as u32;

        cx.progress(Some(0.0), "checking the inputs")?;
        let duration = probe::audio_duration(&self.ffprobe, audio)?;
        for image in &images {
            cx.check_cancelled()?;
            probe::check_image(&self.ffprobe, image)?;
        }
        let frames = graph::frames_per_image(images.len(), duration, fps).ok_or_else(|| {
            PluginError::invalid_input(format!(
                "{} images do not fit in {duration:.2} s of audio at {fps} frames a second",
                images.len()
            ))
            .with_hint("give fewer images or a higher --fps")
        })?;

        let video = tempfile::Builder::new()
            .prefix("launcher-ffmpeg-")
            .suffix(".mp4")
            .tempfile()?;
        let video_path = video.path().to_string_lossy().into_owned();
        cx.log(LogLevel::Debug, format!("ffmpeg writes to {video_path}"));

        let mut args: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
            .map(String::from)
            .to_vec();
        for input in images.iter().chain([&audio]) {
            args.push("-i".to_string());
            args.push(process::file_url(input));
        }
        args.push("-filter_complex".to_string());
        args.push(graph::filter_graph(&frames, width, height, fps));
        let audio_input = format!("{}:a:0", images.len());
        let fps_arg = fps.to_string();
        args.extend(
            [
                "-map",
                "[v]",
                "-map",
                &audio_input,
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-tune",
                "stillimage",
                "-pix_fmt",
                "yuv420p",
                "-r",
                &fps_arg,
                "-c:a",
                "aac",
                "-b:a",
                "192k",
                "-movflags",
                "+faststart",
                "-progress",
                "pipe:1",
                "-nostats",
                "-f",
                "mp4",
            ]
            .map(String::from),
        );
        args.push(process::file_url(&video_path));

        cx.progress(Some(0.0), "encoding")?;
        let finished = process::run_ffmpeg(&self.ffmpeg, &args, duration, cx)?;
        if !finished.status.success() {
            return Err(ffmpeg_failure(&finished.stderr, finished.status));
        }

        cx.progress(Some(1.0), "writing the video")?;
        let mut file = File::open(video.path())?;
        let mut out = cx.output("video", "video/mp4", "mp4")?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
        }
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
    let line = process::relevant_line(stderr).unwrap_or("no message");
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
    use launcher_sdk::ErrorKind;

    use super::*;

    #[test]
    fn the_manifest_declares_compose_with_its_params() {
        let manifest = Ffmpeg::manifest();
        manifest.validate().unwrap();
        let tool = &manifest.tools[0];
        assert_eq!(tool.id, "ffmpeg");
        assert_eq!(tool.category, ContentKind::Video);
        assert_eq!(tool.tasks, ["compose"]);
        let names: Vec<&str> = tool.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["width", "height", "fps"]);
        assert_eq!(tool.params[0].default, Some(json!(1280)));
        assert_eq!(tool.params[1].default, Some(json!(720)));
    }

    #[test]
    fn odd_or_out_of_range_sizes_are_refused() {
        let job = |params| launcher_sdk::testing::job("compose", "ffmpeg", params);
        assert_eq!(
            even_dimension(&job(json!({})), "width", 1280, 7680).unwrap(),
            1280
        );
        let odd = even_dimension(&job(json!({"width": 641})), "width", 1280, 7680).unwrap_err();
        assert!(odd.message.contains("even"), "{}", odd.message);
        assert_eq!(odd.hint.as_deref(), Some("try --width 642"));
        assert!(even_dimension(&job(json!({"width": 8})), "width", 1280, 7680).is_err());
        assert!(even_dimension(&job(json!({"height": 4322})), "height", 720, 4320).is_err());
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
