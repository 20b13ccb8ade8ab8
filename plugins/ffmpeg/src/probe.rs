//! Checking inputs with `ffprobe` before ffmpeg runs, so a bad file is named precisely, and
//! reading the line of ffmpeg's or ffprobe's stderr that explains a failure.

use std::path::Path;

use launcher_sdk::process::Runner;
use launcher_sdk::serde_json::{self, Value};
use launcher_sdk::{Cancel, PluginError};

/// The hint given when ffmpeg or ffprobe cannot be run.
pub(crate) const INSTALL_HINT: &str = "install them with `apt-get install ffmpeg` (which also \
     provides ffprobe), or point the `program` setting (LAUNCHER_FFMPEG_PROGRAM) or the \
     `ffprobe` setting (LAUNCHER_FFPROBE_PROGRAM) at them";

/// Returns the duration in seconds of the first audio stream in `path`.
pub(crate) fn audio_duration(
    ffprobe: &str,
    path: &str,
    cancel: &dyn Cancel,
) -> Result<f64, PluginError> {
    let report = run(
        ffprobe,
        &[
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_type,duration:format=duration",
        ],
        path,
        "audio",
        cancel,
    )?;
    parse_audio(&report).map_err(|problem| {
        PluginError::invalid_input(format!("audio `{path}` {problem}"))
            .with_hint("give --audio a sound file ffmpeg can read, such as WAV, MP3 or M4A")
    })
}

/// Checks that `path` holds a picture ffmpeg can decode.
pub(crate) fn check_image(
    ffprobe: &str,
    path: &str,
    cancel: &dyn Cancel,
) -> Result<(), PluginError> {
    let report = run(
        ffprobe,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_type,width,height",
        ],
        path,
        "image",
        cancel,
    )?;
    parse_image(&report).map_err(|problem| {
        PluginError::invalid_input(format!("image `{path}` {problem}"))
            .with_hint("give --image pictures ffmpeg can read, such as PNG, JPEG or WebP")
    })
}

/// What ffprobe said about one file.
pub(crate) struct Report {
    json: Value,
    stderr: String,
}

fn run(
    ffprobe: &str,
    args: &[&str],
    path: &str,
    what: &str,
    cancel: &dyn Cancel,
) -> Result<Report, PluginError> {
    if !Path::new(path).is_file() {
        return Err(PluginError::invalid_input(format!(
            "{what} `{path}` is not a file"
        )));
    }
    let url = file_url(path);
    let output = Runner::new(ffprobe)
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(&url)
        .install_hint(INSTALL_HINT)
        .allow_failure()
        .output(cancel)?;
    let stderr = output.stderr;
    if !output.status.success() {
        let line = relevant_line(&stderr).unwrap_or("ffprobe cannot read it");
        // The message already names the file.
        let line = line.strip_prefix(&format!("{url}: ")).unwrap_or(line);
        return Err(PluginError::invalid_input(format!(
            "{what} `{path}` cannot be read: {line}"
        )));
    }
    let json = serde_json::from_slice(&output.stdout).map_err(|err| {
        PluginError::internal(format!("ffprobe's report on `{path}` is not JSON: {err}"))
    })?;
    Ok(Report { json, stderr })
}

fn first_stream(report: &Report) -> Option<&Value> {
    report.json.get("streams")?.as_array()?.first()
}

/// Reads a duration the way ffprobe writes it: a decimal string, or absent when unknown.
fn seconds(value: Option<&Value>) -> Option<f64> {
    value?.as_str()?.parse::<f64>().ok()
}

fn parse_audio(report: &Report) -> Result<f64, String> {
    let stream = first_stream(report).ok_or_else(|| "has no sound in it".to_string())?;
    // The container's duration covers priming and padding; the stream's is the fallback.
    let duration = seconds(report.json.get("format").and_then(|f| f.get("duration")))
        .or_else(|| seconds(stream.get("duration")));
    match duration {
        Some(d) if d.is_finite() && d > 0.0 => Ok(d),
        _ => Err(match relevant_line(&report.stderr) {
            Some(line) => format!("holds no audio: {line}"),
            None => "holds no audio (its length is zero)".to_string(),
        }),
    }
}

fn parse_image(report: &Report) -> Result<(), String> {
    let stream = first_stream(report).ok_or_else(|| "is not a picture".to_string())?;
    let size = |key: &str| stream.get(key).and_then(Value::as_u64).unwrap_or(0);
    if size("width") == 0 || size("height") == 0 {
        return Err(match relevant_line(&report.stderr) {
            Some(line) => format!("cannot be decoded: {line}"),
            None => "cannot be decoded".to_string(),
        });
    }
    Ok(())
}

/// Returns `path` as an ffmpeg `file:` URL, so a name containing a colon is never taken for
/// another protocol (`http:`, `concat:`, ...).
pub(crate) fn file_url(path: &str) -> String {
    format!("file:{path}")
}

/// Returns the line of an ffmpeg or ffprobe stderr that best explains a failure, without the
/// `[png @ 0x55d0...]` context prefix, skipping the generic summaries ffmpeg adds last.
pub(crate) fn relevant_line(stderr: &str) -> Option<&str> {
    const GENERIC: &[&str] = &[
        "Conversion failed!",
        "Error marking filters as finished",
        "Error while filtering",
        "Exiting normally",
    ];
    stderr
        .lines()
        .map(|line| {
            let line = line.trim();
            match (line.strip_prefix('['), line.find("] ")) {
                (Some(_), Some(end)) if line[..end].contains(" @ ") => line[end + 2..].trim(),
                _ => line,
            }
        })
        .find(|line| !line.is_empty() && !GENERIC.iter().any(|g| line.starts_with(g)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(json: &str, stderr: &str) -> Report {
        Report {
            json: serde_json::from_str(json).unwrap(),
            stderr: stderr.to_string(),
        }
    }

    #[test]
    fn audio_duration_prefers_the_container() {
        let r = report(
            r#"{"streams":[{"codec_type":"audio","duration":"2.6"}],
                "format":{"duration":"2.645000"}}"#,
            "",
        );
        assert_eq!(parse_audio(&r), Ok(2.645));
        let r = report(
            r#"{"streams":[{"codec_type":"audio","duration":"2.6"}],"format":{}}"#,
            "",
        );
        assert_eq!(parse_audio(&r), Ok(2.6));
    }

    #[test]
    fn silent_or_empty_audio_is_refused() {
        let none = report(r#"{"streams":[],"format":{}}"#, "");
        assert_eq!(parse_audio(&none).unwrap_err(), "has no sound in it");
        // A WAV header with no samples: a stream, but no duration.
        let empty = report(r#"{"streams":[{"codec_type":"audio"}],"format":{}}"#, "");
        assert!(parse_audio(&empty).unwrap_err().contains("length is zero"));
        let zero = report(
            r#"{"streams":[{"codec_type":"audio"}],"format":{"duration":"0.000000"}}"#,
            "",
        );
        assert!(parse_audio(&zero).is_err());
    }

    #[test]
    fn undecodable_images_carry_ffprobes_reason() {
        let ok = report(
            r#"{"streams":[{"codec_type":"video","width":3,"height":5}]}"#,
            "",
        );
        assert!(parse_image(&ok).is_ok());
        let broken = report(
            r#"{"streams":[{"codec_type":"video","width":0,"height":0}]}"#,
            "[png @ 0x55d0c0a0] Invalid PNG signature 0x6E6F7420616E2069.\n",
        );
        assert_eq!(
            parse_image(&broken).unwrap_err(),
            "cannot be decoded: Invalid PNG signature 0x6E6F7420616E2069."
        );
        let sound = report(r#"{"streams":[]}"#, "");
        assert_eq!(parse_image(&sound).unwrap_err(), "is not a picture");
    }

    #[test]
    fn the_relevant_line_skips_context_and_summaries() {
        let stderr = "[png @ 0x55e13f71e1c0] Invalid PNG signature 0x6E6F7420616E2069.\n\
                      Error while decoding stream #0:0: Invalid data found when processing input\n\
                      Conversion failed!\n";
        assert_eq!(
            relevant_line(stderr),
            Some("Invalid PNG signature 0x6E6F7420616E2069.")
        );
        assert_eq!(
            relevant_line(
                "\nError marking filters as finished\nfile:/x.wav: No such file or directory\n"
            ),
            Some("file:/x.wav: No such file or directory")
        );
        // A bracket that is not a context prefix stays.
        assert_eq!(
            relevant_line("[v] is not connected"),
            Some("[v] is not connected")
        );
        assert_eq!(relevant_line("  \n"), None);
    }
}
