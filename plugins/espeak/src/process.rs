//! Running `espeak-ng`: text in on stdin, audio out to a temporary file, cancellable.

use std::fs::File;
use std::io::{self, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use launcher_sdk::{Context, PluginError};

/// How often the job checks for cancellation while espeak-ng runs.
const POLL: Duration = Duration::from_millis(10);
/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// espeak-ng can print one warning per phoneme; only this much of stderr is kept.
const STDERR_LIMIT: u64 = 16 * 1024;

/// What a finished espeak-ng run left behind.
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    /// Everything it wrote to stdout, rewound to the start.
    pub(crate) stdout: File,
    pub(crate) stdout_len: u64,
    pub(crate) stderr: String,
}

/// Kills and reaps the child if the job ends early, so no espeak-ng outlives its job.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Returns the error for a program that could not be started.
pub(crate) fn spawn_error(program: &str, err: io::Error) -> PluginError {
    match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
            PluginError::unavailable(format!("cannot run espeak-ng (`{program}`): {err}"))
                .with_hint(
                    "install it with `apt-get install espeak-ng`, or point the `program` \
                     setting (LAUNCHER_ESPEAK_PROGRAM) at it",
                )
        }
        _ => PluginError::internal(format!("failed to start `{program}`: {err}")),
    }
}

/// Runs `program` with `args`, feeding `input` on stdin and spooling stdout to an anonymous
/// temporary file. Reports progress as audio arrives and kills the child when the job is
/// cancelled.
pub(crate) fn run(
    program: &str,
    args: &[String],
    input: &[u8],
    bytes_per_sec: u64,
    cx: &mut Context<'_>,
) -> Result<Finished, PluginError> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| spawn_error(program, err))?;
    let mut child = Running(child);
    let (Some(mut stdin), Some(mut stdout), Some(stderr)) = (
        child.0.stdin.take(),
        child.0.stdout.take(),
        child.0.stderr.take(),
    ) else {
        return Err(PluginError::internal("espeak-ng started without its pipes"));
    };

    // Writing happens on its own thread: espeak-ng speaks while it reads, and a large text
    // would otherwise fill the pipe while nobody drains stdout.
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        // A broken pipe means espeak-ng exited early (a bad voice); its status says why.
        let _ = stdin.write_all(&input);
    });
    let produced = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&produced);
    let reader = thread::spawn(move || -> io::Result<File> {
        let mut file = tempfile::tempfile()?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            file.write_all(&buf[..n])?;
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(file)
    });
    let errors = thread::spawn(move || {
        let mut text = Vec::new();
        let mut limited = stderr.take(STDERR_LIMIT);
        let _ = limited.read_to_end(&mut text);
        // Drains the rest so espeak-ng never blocks on a full stderr pipe.
        let _ = io::copy(&mut limited.into_inner(), &mut io::sink());
        String::from_utf8_lossy(&text).into_owned()
    });

    let mut last_report = Instant::now();
    let status = loop {
        if cx.is_cancelled() {
            return Err(PluginError::cancelled());
        }
        if let Some(status) = child.0.try_wait()? {
            break status;
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            let bytes = produced.load(Ordering::Relaxed);
            let secs = bytes as f64 / bytes_per_sec.max(1) as f64;
            cx.progress(None, &format!("{secs:.0} s of speech so far"))?;
        }
        thread::sleep(POLL);
    };

    let _ = writer.join();
    let stderr = errors.join().unwrap_or_default();
    let mut stdout = reader
        .join()
        .map_err(|_| PluginError::internal("the thread reading espeak-ng's output panicked"))?
        .map_err(|err| {
            PluginError::internal(format!("failed to spool espeak-ng's audio: {err}"))
        })?;
    let stdout_len = std::io::Seek::seek(&mut stdout, io::SeekFrom::End(0))?;
    std::io::Seek::rewind(&mut stdout)?;
    Ok(Finished {
        status,
        stdout,
        stdout_len,
        stderr,
    })
}

/// Runs `program` with `args` and returns its stdout, for quick queries like the voice list.
pub(crate) fn query(program: &str, args: &[&str]) -> Result<String, PluginError> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| spawn_error(program, err))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(PluginError::internal(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            stderr.lines().next().unwrap_or("no message")
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
