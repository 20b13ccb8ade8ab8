//! Running `ffmpeg` and `ffprobe`: locating them, following progress, cancelling, and
//! picking the line of their stderr that explains a failure.

use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use launcher_sdk::{Context, PluginError};

/// How often the job checks for cancellation while ffmpeg runs.
const POLL: Duration = Duration::from_millis(20);
/// Only this much of ffmpeg's stderr is kept; `-loglevel error` keeps it short anyway.
const STDERR_LIMIT: u64 = 64 * 1024;

/// Which of the two programs failed to start, for the error message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Program {
    Ffmpeg,
    Ffprobe,
}

/// Returns the error for a program that could not be started.
pub(crate) fn spawn_error(which: Program, program: &str, err: io::Error) -> PluginError {
    let (name, setting) = match which {
        Program::Ffmpeg => ("ffmpeg", "`program` setting (LAUNCHER_FFMPEG_PROGRAM)"),
        Program::Ffprobe => ("ffprobe", "`ffprobe` setting (LAUNCHER_FFPROBE_PROGRAM)"),
    };
    match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => PluginError::unavailable(
            format!("cannot run {name} (`{program}`): {err}"),
        )
        .with_hint(format!(
            "install it with `apt-get install ffmpeg` (which also provides ffprobe), \
                     or point the {setting} at it"
        )),
        _ => PluginError::internal(format!("failed to start `{program}`: {err}")),
    }
}

/// Returns the ffprobe to use with `ffmpeg`: the one beside it when ffmpeg is given by path
/// (`/opt/ff/ffmpeg-6` → `/opt/ff/ffprobe-6`), else `ffprobe` on PATH.
pub(crate) fn ffprobe_beside(ffmpeg: &str) -> String {
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

/// Returns the progress ffmpeg reports, in seconds of output written, from one line of its
/// `-progress` output, or `None` for the other keys.
pub(crate) fn progress_secs(line: &str) -> Option<f64> {
    let value = line.strip_prefix("out_time_us=")?;
    // Before the first frame ffmpeg writes `N/A`, and sometimes a negative value.
    let micros = value.trim().parse::<i64>().ok()?;
    Some(micros.max(0) as f64 / 1e6)
}

/// How an ffmpeg run ended.
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stderr: String,
}

/// Kills and reaps the child if the job ends early, so no ffmpeg outlives its job.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs ffmpeg with `args` (which must include `-progress pipe:1`), reporting progress
/// against `duration` seconds, and kills it when the job is cancelled.
pub(crate) fn run_ffmpeg(
    program: &str,
    args: &[String],
    duration: f64,
    cx: &mut Context<'_>,
) -> Result<Finished, PluginError> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| spawn_error(Program::Ffmpeg, program, err))?;
    let mut child = Running(child);
    let (Some(stdout), Some(stderr)) = (child.0.stdout.take(), child.0.stderr.take()) else {
        return Err(PluginError::internal("ffmpeg started without its pipes"));
    };

    // The context is not Send, so readers hand progress to this thread, which reports it.
    let (sender, progress) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Some(secs) = progress_secs(&line) else {
                continue;
            };
            if sender.send(secs).is_err() {
                break;
            }
        }
    });
    let errors = thread::spawn(move || {
        let mut text = Vec::new();
        let mut limited = stderr.take(STDERR_LIMIT);
        let _ = limited.read_to_end(&mut text);
        let _ = io::copy(&mut limited.into_inner(), &mut io::sink());
        String::from_utf8_lossy(&text).into_owned()
    });

    let status = loop {
        if cx.is_cancelled() {
            return Err(PluginError::cancelled());
        }
        match progress.recv_timeout(POLL) {
            Ok(secs) => {
                let fraction = if duration > 0.0 { secs / duration } else { 0.0 };
                cx.progress(
                    Some(fraction.min(0.99)),
                    &format!("encoded {secs:.1} of {duration:.1} s"),
                )?;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Once stdout closes recv returns at once; sleep so this stays a poll.
            Err(mpsc::RecvTimeoutError::Disconnected) => thread::sleep(POLL),
        }
        if let Some(status) = child.0.try_wait()? {
            break status;
        }
    };
    let _ = reader.join();
    let stderr = errors.join().unwrap_or_default();
    Ok(Finished { status, stderr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffprobe_is_found_beside_ffmpeg() {
        assert_eq!(ffprobe_beside("ffmpeg"), "ffprobe");
        assert_eq!(ffprobe_beside("/usr/bin/ffmpeg"), "/usr/bin/ffprobe");
        assert_eq!(ffprobe_beside("/opt/ff/ffmpeg-6"), "/opt/ff/ffprobe-6");
        assert_eq!(ffprobe_beside("/opt/ff/encoder"), "/opt/ff/ffprobe");
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

    #[test]
    fn progress_comes_from_out_time_us() {
        assert_eq!(progress_secs("out_time_us=2647075"), Some(2.647075));
        assert_eq!(progress_secs("out_time_us=N/A"), None);
        assert_eq!(progress_secs("out_time_us=-9223372036854775807"), Some(0.0));
        assert_eq!(progress_secs("out_time_ms=2647075"), None);
        assert_eq!(progress_secs("progress=end"), None);
    }
}
