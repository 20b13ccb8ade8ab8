//! Running a local engine (espeak-ng, ffmpeg, ...) as a child process, cancellably.
//!
//! A plugin that wraps a program needs the same things every time: feed it input without
//! deadlocking, pass its output on as it arrives, keep enough of its stderr to explain a
//! failure, and make sure it never outlives the job. [`Runner`] builds the command; its
//! [`Running`] child is polled every [`POLL`] for cancellation and the timeout, and is killed
//! and reaped when the job is cancelled, the timeout passes, or the handle is dropped (an early
//! return or a panic).
//!
//! Pipes are served by threads, so the caller's thread is free to hand output to the host:
//! stdin is written by one (a child that fills its stdout pipe before reading all its input
//! cannot deadlock), stdout and stderr are read by two more, and what they read arrives on the
//! caller's thread through [`Running::next`]. That matters because host outputs are not
//! `Send`.
//!
//! Only the child itself is killed: a program that starts helpers of its own (a shell running
//! a pipeline) must pass the signal on. Scratch files go in the job's directory through
//! [`TempFile`] and [`TempDir`], never in `/tmp` by default, so large intermediates land
//! beside the output on the same disk.
//!
//! # Example
//!
//! ```
//! use std::sync::atomic::AtomicBool;
//! use launcher_sdk::process::Runner;
//!
//! let cancel = AtomicBool::new(false);
//! let output = Runner::new("cat")
//!     .stdin("hello")
//!     .install_hint("install coreutils")
//!     .output(&cancel)
//!     .unwrap();
//! assert_eq!(output.stdout, b"hello");
//! ```
//!
//! To stream stdout into a host output while reporting progress, drive the child yourself:
//! `while let Some(event) = running.next(&*cx)? { ... }`, then [`Running::finish`].
//!
//! A local server that a job starts and talks to (Piper's HTTP server for one voice file) is a
//! [`Background`] child instead: [`Runner::spawn_background`] on a [`free_port`], then
//! [`Background::wait_ready`] until it answers; it is killed when the job lets go of it.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::PluginError;
use crate::plugin::Cancel;

/// How often a running child is checked for cancellation and its timeout.
pub const POLL: Duration = Duration::from_millis(25);

/// How much of stderr is kept by default: enough for the last screenful of messages.
const DEFAULT_STDERR_LIMIT: usize = 16 * 1024;

/// The size of one stdout read; also the longest line delivered before it is cut.
const CHUNK: usize = 64 * 1024;

/// How many chunks may wait for the caller before the readers stop reading, which in turn
/// makes the child wait: the caller's pace limits memory, not the child's.
const QUEUE: usize = 16;

/// How many lines of the stderr tail go into an error message.
const MESSAGE_LINES: usize = 3;

/// Builds a child process to run: the program, its arguments and input, and how its output is
/// delivered.
#[derive(Debug)]
pub struct Runner {
    command: Command,
    program: String,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
    install_hint: Option<String>,
    stderr_limit: usize,
    stdout_lines: bool,
    stderr_lines: bool,
    allow_failure: bool,
}

/// What a running child produced, in the order it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Bytes from stdout, as they arrived.
    Stdout(Vec<u8>),
    /// One line, without its line ending, from the pipe chosen with [`Runner::stdout_lines`]
    /// or [`Runner::stderr_lines`].
    Line(String),
}

/// How a child ended, and what it left.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Output {
    /// The exit status; a success unless [`Runner::allow_failure`] was set.
    pub status: ExitStatus,
    /// Stdout bytes not already handed out as [`Event`]s (everything, for [`Runner::output`]).
    pub stdout: Vec<u8>,
    /// The last part of stderr (see [`Runner::stderr_limit`]), starting at a line.
    pub stderr: String,
}

impl Runner {
    /// Returns a runner for `program`, found on `PATH` unless it is a path.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        let program = program.as_ref();
        Runner {
            command: Command::new(program),
            program: program.to_string_lossy().into_owned(),
            stdin: None,
            timeout: None,
            install_hint: None,
            stderr_limit: DEFAULT_STDERR_LIMIT,
            stdout_lines: false,
            stderr_lines: false,
            allow_failure: false,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// Sets the child's working directory.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Writes `bytes` to the child's stdin, then closes it. Without this, stdin is empty.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Kills the child and fails with [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) if it
    /// runs longer than `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the hint given when the program cannot be found, such as
    /// "install espeak-ng, or set LAUNCHER_ESPEAK_PROGRAM to its path".
    pub fn install_hint(mut self, hint: impl Into<String>) -> Self {
        self.install_hint = Some(hint.into());
        self
    }

    /// Keeps at most the last `bytes` of stderr (16 KiB unless set); the rest is read and
    /// dropped, so a chatty child never blocks on a full pipe.
    pub fn stderr_limit(mut self, bytes: usize) -> Self {
        self.stderr_limit = bytes;
        self
    }

    /// Delivers stdout as [`Event::Line`]s instead of [`Event::Stdout`] chunks, for programs
    /// that report progress there (ffmpeg `-progress pipe:1`).
    pub fn stdout_lines(mut self) -> Self {
        self.stdout_lines = true;
        self
    }

    /// Also delivers every stderr line as an [`Event::Line`]; the tail is kept all the same.
    pub fn stderr_lines(mut self) -> Self {
        self.stderr_lines = true;
        self
    }

    /// Returns a non-zero exit as an [`Output`] instead of an error, for callers that read
    /// the stderr themselves to say what went wrong.
    pub fn allow_failure(mut self) -> Self {
        self.allow_failure = true;
        self
    }

    /// Gives access to the underlying command, for settings this builder does not cover.
    pub fn command_mut(&mut self) -> &mut Command {
        &mut self.command
    }

    /// Starts the child with piped stdout and stderr, and its input (if any) written to its
    /// stdin by a thread of its own.
    fn start(&mut self) -> Result<Child, PluginError> {
        let stdin = if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut child = self
            .command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| spawn_error(&self.program, self.install_hint.take(), &err))?;
        if let (Some(mut pipe), Some(input)) = (child.stdin.take(), self.stdin.take()) {
            // Detached: it ends when the input is written or the child closes its stdin.
            // A broken pipe means the child exited early; its exit status says why.
            thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        Ok(child)
    }

    /// Starts the child.
    ///
    /// A program that cannot be found or run is [`ErrorKind::Unavailable`] with the install
    /// hint.
    ///
    /// [`ErrorKind::Unavailable`]: crate::ErrorKind::Unavailable
    pub fn spawn(mut self) -> Result<Running, PluginError> {
        let mut child = self.start()?;
        let started = Instant::now();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            // Kill what was started: a child nobody reads from would hang.
            let _ = child.kill();
            let _ = child.wait();
            return Err(PluginError::internal(format!(
                "`{}` started without its output pipes",
                self.program
            )));
        };
        let (sender, events) = mpsc::sync_channel(QUEUE);
        let lines = self.stdout_lines;
        let out_sender = sender.clone();
        thread::spawn(move || read_stdout(stdout, lines, &out_sender));
        let limit = self.stderr_limit;
        let line_sender = self.stderr_lines.then(|| sender.clone());
        let stderr = thread::spawn(move || read_stderr(stderr, limit, line_sender.as_ref()));
        drop(sender);
        Ok(Running {
            child,
            status: None,
            program: self.program,
            events,
            drained: false,
            stderr: Some(stderr),
            deadline: self.timeout.map(|t| (started + t, t)),
            allow_failure: self.allow_failure,
        })
    }

    /// Runs the child to the end and returns its whole stdout.
    pub fn output(self, cancel: &dyn Cancel) -> Result<Output, PluginError> {
        self.spawn()?.finish(cancel)
    }

    /// Runs the child to the end, writing its stdout to `sink` as it arrives.
    ///
    /// When the sink is itself the cancel token (a host output writer), use
    /// [`Runner::stream_to`].
    pub fn stream(self, cancel: &dyn Cancel, sink: &mut dyn Write) -> Result<Output, PluginError> {
        let mut running = self.spawn()?;
        while let Some(event) = running.next(cancel)? {
            if let Event::Stdout(chunk) = event {
                sink.write_all(&chunk)?;
            }
        }
        running.finish(cancel)
    }

    /// Runs the child to the end, writing its stdout to `out`, which also says when to stop.
    pub fn stream_to<W: Write + Cancel>(self, out: &mut W) -> Result<Output, PluginError> {
        let mut running = self.spawn()?;
        while let Some(event) = running.next(&*out)? {
            if let Event::Stdout(chunk) = event {
                out.write_all(&chunk)?;
            }
        }
        running.finish(&*out)
    }

    /// Runs the child to the end, calling `on_line` for every line (see
    /// [`Runner::stdout_lines`] and [`Runner::stderr_lines`]); an error from it kills the child
    /// and is returned.
    pub fn run_lines(
        self,
        cancel: &dyn Cancel,
        on_line: &mut dyn FnMut(&str) -> Result<(), PluginError>,
    ) -> Result<Output, PluginError> {
        let mut running = self.spawn()?;
        let mut stdout = Vec::new();
        while let Some(event) = running.next(cancel)? {
            match event {
                Event::Line(line) => on_line(&line)?,
                Event::Stdout(chunk) => stdout.extend_from_slice(&chunk),
            }
        }
        let mut output = running.finish(cancel)?;
        stdout.append(&mut output.stdout);
        output.stdout = stdout;
        Ok(output)
    }
}

fn spawn_error(program: &str, hint: Option<String>, err: &io::Error) -> PluginError {
    match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
            let hint = hint.unwrap_or_else(|| format!("install `{program}` or put it on PATH"));
            PluginError::unavailable(format!("cannot run `{program}`: {err}")).with_hint(hint)
        }
        _ => PluginError::internal(format!("failed to start `{program}`: {err}")),
    }
}

/// A started child: poll it with [`Running::next`], end it with [`Running::finish`]. Dropping
/// it kills and reaps the child if it is still running.
#[derive(Debug)]
pub struct Running {
    child: Child,
    status: Option<ExitStatus>,
    program: String,
    events: Receiver<Event>,
    /// Whether both readers have finished and every event was handed out.
    drained: bool,
    stderr: Option<JoinHandle<Vec<u8>>>,
    deadline: Option<(Instant, Duration)>,
    allow_failure: bool,
}

impl Running {
    /// Returns the child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the next piece of output, or returns `None` once the child has exited and its
    /// output is all handed out.
    ///
    /// Checks `cancel` and the timeout at least every [`POLL`]; either kills the child, and
    /// cancellation returns [`PluginError::cancelled`].
    pub fn next(&mut self, cancel: &dyn Cancel) -> Result<Option<Event>, PluginError> {
        loop {
            if self.status.is_some() && self.drained {
                return Ok(None);
            }
            if cancel.is_cancelled() {
                self.kill();
                return Err(PluginError::cancelled());
            }
            if let Some((at, timeout)) = self.deadline
                && Instant::now() >= at
            {
                self.kill();
                return Err(PluginError::timeout(format!(
                    "`{}` did not finish within {:.1} s",
                    self.program,
                    timeout.as_secs_f64()
                )));
            }
            if !self.drained {
                match self.events.recv_timeout(POLL) {
                    Ok(event) => return Ok(Some(event)),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => self.drained = true,
                }
            } else {
                // The pipes closed, so the child has exited or is about to.
                match self.child.try_wait() {
                    Ok(Some(status)) => self.status = Some(status),
                    Ok(None) => thread::sleep(POLL),
                    Err(err) => {
                        self.kill();
                        return Err(PluginError::internal(format!(
                            "failed to wait for `{}`: {err}",
                            self.program
                        )));
                    }
                }
            }
        }
    }

    /// Runs the child to the end, collecting stdout not yet handed out, and returns how it
    /// ended.
    ///
    /// A non-zero exit is an [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) error
    /// naming the program, its exit status and the last lines of its stderr, unless
    /// [`Runner::allow_failure`] was set.
    pub fn finish(mut self, cancel: &dyn Cancel) -> Result<Output, PluginError> {
        let mut stdout = Vec::new();
        while let Some(event) = self.next(cancel)? {
            if let Event::Stdout(chunk) = event {
                stdout.extend_from_slice(&chunk);
            }
        }
        let status = self
            .status
            .expect("next returns None only once the child is reaped");
        // The reader has finished: the channel disconnected only once it dropped its sender.
        let tail = self
            .stderr
            .take()
            .map(|handle| handle.join().unwrap_or_default())
            .unwrap_or_default();
        let stderr = tail_text(&tail);
        if !status.success() && !self.allow_failure {
            return Err(exit_error(&self.program, status, &stderr));
        }
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    fn kill(&mut self) {
        if self.status.is_none() {
            // kill fails only if the child has already exited; wait reaps it either way.
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

fn exit_error(program: &str, status: ExitStatus, stderr: &str) -> PluginError {
    let last = last_lines(stderr);
    if last.is_empty() {
        PluginError::unavailable(format!("`{program}` failed ({status}) without saying why"))
    } else {
        PluginError::unavailable(format!(
            "`{program}` failed ({status}): {}",
            last.join("; ")
        ))
    }
}

/// Returns the last few non-empty lines of `text`, for an error message.
fn last_lines(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    lines[lines.len().saturating_sub(MESSAGE_LINES)..].to_vec()
}

/// Returns the kept stderr bytes as text; invalid UTF-8 (a cut character) is replaced.
fn tail_text(tail: &[u8]) -> String {
    String::from_utf8_lossy(tail).into_owned()
}

fn read_stdout(mut pipe: ChildStdout, lines: bool, sender: &SyncSender<Event>) {
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let sent = if lines {
            splitter.push(&buf[..n], sender)
        } else {
            sender.send(Event::Stdout(buf[..n].to_vec())).is_ok()
        };
        // The receiver is gone only when the Running was dropped, which kills the child.
        if !sent {
            return;
        }
    }
    splitter.finish(sender);
}

fn read_stderr(mut pipe: ChildStderr, limit: usize, lines: Option<&SyncSender<Event>>) -> Vec<u8> {
    let mut tail = Tail::new(limit);
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tail.push(&buf[..n]);
        if let Some(sender) = lines {
            // Keep draining even when nobody listens, so the child never blocks on stderr.
            splitter.push(&buf[..n], sender);
        }
    }
    if let Some(sender) = lines {
        splitter.finish(sender);
    }
    tail.bytes()
}

/// The last bytes of a pipe, at most a limit.
#[derive(Debug)]
struct Tail {
    bytes: VecDeque<u8>,
    limit: usize,
    cut: bool,
}

impl Tail {
    fn new(limit: usize) -> Tail {
        Tail {
            bytes: VecDeque::with_capacity(limit.min(CHUNK)),
            limit,
            cut: false,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.bytes.extend(data);
        if self.bytes.len() > self.limit {
            self.bytes.drain(..self.bytes.len() - self.limit);
            self.cut = true;
        }
    }

    /// Returns the kept bytes, starting at a line when earlier ones were dropped.
    fn bytes(&self) -> Vec<u8> {
        let mut tail: Vec<u8> = self.bytes.iter().copied().collect();
        if self.cut {
            // The first kept line is a fragment; drop it unless it is all there is.
            if let Some(newline) = tail.iter().position(|&b| b == b'\n')
                && newline + 1 < tail.len()
            {
                tail.drain(..=newline);
            }
        }
        tail
    }
}

/// Turns chunks into lines, cutting lines longer than [`CHUNK`] so memory stays bounded.
#[derive(Default)]
struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Sends every complete line in `chunk`; returns false once the receiver is gone.
    fn push(&mut self, chunk: &[u8], sender: &SyncSender<Event>) -> bool {
        self.pending.extend_from_slice(chunk);
        while let Some(newline) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=newline).collect();
            if !send_line(&line, sender) {
                return false;
            }
        }
        if self.pending.len() > CHUNK {
            let line = std::mem::take(&mut self.pending);
            return send_line(&line, sender);
        }
        true
    }

    fn finish(self, sender: &SyncSender<Event>) {
        if !self.pending.is_empty() {
            send_line(&self.pending, sender);
        }
    }
}

fn send_line(line: &[u8], sender: &SyncSender<Event>) -> bool {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line).into_owned();
    sender.send(Event::Line(text)).is_ok()
}

/// Returns a loopback port that was free a moment ago, for a server the plugin starts.
///
/// Another process may take it before the server binds it, so a caller retries with a new
/// port when the server exits saying the address is in use.
pub fn free_port() -> Result<u16, PluginError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|err| PluginError::internal(format!("failed to find a free loopback port: {err}")))
}

/// A child that runs beside the job rather than to an end: a local server the plugin started
/// for this job and talks to over the network.
///
/// Its stdout and stderr are read all the time by two threads that keep only their last lines
/// (see [`Runner::stderr_limit`]), so a chatty server never blocks on a full pipe, and an exit
/// can be explained. It is killed and reaped when the handle is dropped, so a job that ends in
/// any way (success, error, cancellation, panic) leaves no server behind.
///
/// ```
/// use std::sync::atomic::AtomicBool;
/// use std::time::Duration;
/// use launcher_sdk::process::Runner;
///
/// let mut cancel = AtomicBool::new(false);
/// let mut server = Runner::new("sleep").arg("30").spawn_background().unwrap();
/// // A real readiness check asks the server, e.g. with an HTTP request.
/// server.wait_ready(&mut cancel, Duration::from_secs(5), |_| true).unwrap();
/// server.check().unwrap();
/// drop(server); // killed here
/// ```
#[derive(Debug)]
pub struct Background {
    child: Child,
    program: String,
    status: Option<ExitStatus>,
    stdout: Arc<Mutex<Tail>>,
    stderr: Arc<Mutex<Tail>>,
}

impl Runner {
    /// Starts the child in the background; see [`Background`]. Input given with
    /// [`Runner::stdin`] is written to it; the timeout and the line options do not apply.
    ///
    /// A program that cannot be found or run is [`ErrorKind::Unavailable`] with the install
    /// hint.
    ///
    /// [`ErrorKind::Unavailable`]: crate::ErrorKind::Unavailable
    pub fn spawn_background(mut self) -> Result<Background, PluginError> {
        let mut child = self.start()?;
        let stdout = Arc::new(Mutex::new(Tail::new(self.stderr_limit)));
        let stderr = Arc::new(Mutex::new(Tail::new(self.stderr_limit)));
        if let Some(pipe) = child.stdout.take() {
            let tail = Arc::clone(&stdout);
            thread::spawn(move || keep_tail(pipe, &tail));
        }
        if let Some(pipe) = child.stderr.take() {
            let tail = Arc::clone(&stderr);
            thread::spawn(move || keep_tail(pipe, &tail));
        }
        Ok(Background {
            child,
            program: self.program,
            status: None,
            stdout,
            stderr,
        })
    }
}

impl Background {
    /// Returns the child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Returns `Ok` while the child runs. Once it has exited, returns an
    /// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) error naming the program, its
    /// exit status and the last lines it wrote.
    pub fn check(&mut self) -> Result<(), PluginError> {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(None) => return Ok(()),
                Ok(Some(status)) => self.status = Some(status),
                Err(err) => {
                    return Err(PluginError::internal(format!(
                        "failed to check on `{}`: {err}",
                        self.program
                    )));
                }
            }
        }
        let status = self.status.expect("set above");
        // The readers may still hold the last words of a child that just exited.
        thread::sleep(POLL);
        Err(exit_error(&self.program, status, &self.output_tail()))
    }

    /// Waits until `ready` returns true, asking it every [`POLL`] at first and less often
    /// later (at most every half second).
    ///
    /// Fails as [`Background::check`] does when the child exits first, with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) (and its last lines) when `within`
    /// passes, and with a cancelled error, killing the child, when the job is cancelled.
    /// `ready` gets the context, so it can make requests through it.
    pub fn wait_ready<C: Cancel + ?Sized>(
        &mut self,
        cx: &mut C,
        within: Duration,
        mut ready: impl FnMut(&mut C) -> bool,
    ) -> Result<(), PluginError> {
        let started = Instant::now();
        let mut interval = POLL;
        loop {
            if cx.is_cancelled() {
                self.kill();
                return Err(PluginError::cancelled());
            }
            self.check()?;
            if ready(cx) {
                return Ok(());
            }
            if started.elapsed() >= within {
                let tail = self.output_tail();
                self.kill();
                let last = last_lines(&tail);
                return Err(PluginError::timeout(if last.is_empty() {
                    format!(
                        "`{}` was not ready within {:.1} s",
                        self.program,
                        within.as_secs_f64()
                    )
                } else {
                    format!(
                        "`{}` was not ready within {:.1} s; it last said: {}",
                        self.program,
                        within.as_secs_f64(),
                        last.join("; ")
                    )
                }));
            }
            if let Err(err) = crate::wait::sleep(&*cx, interval) {
                self.kill();
                return Err(err);
            }
            interval = (interval * 2).min(Duration::from_millis(500));
        }
    }

    /// Returns the last lines the child wrote: its stderr, or its stdout when stderr is empty.
    pub fn output_tail(&self) -> String {
        let read = |tail: &Mutex<Tail>| tail.lock().unwrap_or_else(PoisonError::into_inner).bytes();
        let stderr = read(&self.stderr);
        let bytes = if stderr.iter().all(u8::is_ascii_whitespace) {
            read(&self.stdout)
        } else {
            stderr
        };
        tail_text(&bytes)
    }

    /// Kills and reaps the child; dropping the handle does the same.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.kill();
    }
}

fn keep_tail(mut pipe: impl Read, tail: &Mutex<Tail>) {
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => tail
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(&buf[..n]),
        }
    }
}

/// A temporary file in a directory the caller chooses, removed when dropped unless persisted.
#[derive(Debug)]
pub struct TempFile {
    inner: tempfile::NamedTempFile,
}

impl TempFile {
    /// Creates an empty file named `<prefix><random><suffix>` in `dir` (the job's work
    /// directory, beside its output, so moving it there is a rename on the same disk).
    pub fn new_in(dir: impl AsRef<Path>, prefix: &str, suffix: &str) -> Result<Self, PluginError> {
        let dir = dir.as_ref();
        let inner = tempfile::Builder::new()
            .prefix(prefix)
            .suffix(suffix)
            .tempfile_in(dir)
            .map_err(|err| {
                PluginError::internal(format!(
                    "failed to create a temporary file in `{}`: {err}",
                    dir.display()
                ))
            })?;
        Ok(TempFile { inner })
    }

    /// Returns the file's path, to hand to a program.
    pub fn path(&self) -> &Path {
        self.inner.path()
    }

    /// Returns the open file, for reading or writing.
    pub fn file(&mut self) -> &mut std::fs::File {
        self.inner.as_file_mut()
    }

    /// Moves the file to `path`, replacing what is there, and keeps it.
    pub fn persist(self, path: impl AsRef<Path>) -> Result<(), PluginError> {
        let path = path.as_ref();
        self.inner.persist(path).map_err(|err| {
            PluginError::internal(format!(
                "failed to move a temporary file to `{}`: {}",
                path.display(),
                err.error
            ))
        })?;
        Ok(())
    }
}

/// A temporary directory in a directory the caller chooses, removed with its contents when
/// dropped.
#[derive(Debug)]
pub struct TempDir {
    inner: tempfile::TempDir,
}

impl TempDir {
    /// Creates an empty directory named `<prefix><random>` in `dir`.
    pub fn new_in(dir: impl AsRef<Path>, prefix: &str) -> Result<Self, PluginError> {
        let dir = dir.as_ref();
        let inner = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(dir)
            .map_err(|err| {
                PluginError::internal(format!(
                    "failed to create a temporary directory in `{}`: {err}",
                    dir.display()
                ))
            })?;
        Ok(TempDir { inner })
    }

    /// Returns the directory's path.
    pub fn path(&self) -> &Path {
        self.inner.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn sh(script: &str) -> Runner {
        Runner::new("sh").arg("-c").arg(script)
    }

    fn go() -> AtomicBool {
        AtomicBool::new(false)
    }

    /// Returns whether a process with this id still exists (an unreaped one counts).
    fn alive(pid: u32) -> bool {
        if Path::new("/proc/self").exists() {
            return Path::new(&format!("/proc/{pid}")).exists();
        }
        Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    #[test]
    fn stdout_arrives_as_it_is_written() {
        let cancel = go();
        let mut running = sh("printf first; sleep 0.3; printf second")
            .spawn()
            .unwrap();
        let mut chunks = Vec::new();
        while let Some(event) = running.next(&cancel).unwrap() {
            if let Event::Stdout(chunk) = event {
                chunks.push(String::from_utf8(chunk).unwrap());
            }
        }
        assert_eq!(chunks, ["first", "second"]);
        let output = running.finish(&cancel).unwrap();
        assert!(output.status.success());
        assert!(
            output.stdout.is_empty(),
            "everything was handed out already"
        );
    }

    #[test]
    fn stdout_streams_into_a_sink() {
        let mut sink = Vec::new();
        let output = sh("yes | head -c 1000000")
            .stream(&go(), &mut sink)
            .unwrap();
        assert_eq!(sink.len(), 1_000_000);
        assert!(sink.starts_with(b"y\ny\n"));
        assert!(output.stdout.is_empty());
    }

    #[test]
    fn large_stdin_does_not_deadlock() {
        // cat writes while it reads: without a writer thread both pipes would fill up.
        let input: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let output = Runner::new("cat")
            .stdin(input.clone())
            .timeout(Duration::from_secs(60))
            .output(&go())
            .unwrap();
        assert_eq!(output.stdout.len(), input.len());
        assert!(output.stdout == input);
    }

    #[test]
    fn a_child_that_ignores_its_stdin_is_fine() {
        let output = sh("echo done")
            .stdin(vec![b'x'; 1 << 20])
            .output(&go())
            .unwrap();
        assert_eq!(output.stdout, b"done\n");
    }

    #[test]
    fn a_failure_names_the_program_status_and_last_lines() {
        let err = sh("echo starting >&2; echo 'bad voice' >&2; echo '  try another  ' >&2; exit 3")
            .output(&go())
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(
            err.message.starts_with("`sh` failed (exit status: 3): "),
            "{err}"
        );
        assert!(
            err.message.ends_with("starting; bad voice; try another"),
            "{err}"
        );
        let err = sh("exit 1").output(&go()).unwrap_err();
        assert!(err.message.contains("without saying why"), "{err}");
    }

    #[test]
    fn the_stderr_tail_is_kept_and_bounded() {
        let script =
            "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo \"warning $i\" >&2; done; exit 2";
        let output = sh(script)
            .stderr_limit(1024)
            .allow_failure()
            .output(&go())
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        assert!(output.stderr.len() <= 1024, "{}", output.stderr.len());
        assert!(output.stderr.starts_with("warning "), "starts at a line");
        assert!(output.stderr.ends_with("warning 3000\n"));
        assert!(!output.stderr.contains("warning 1\n"));
        let err = sh(script).stderr_limit(1024).output(&go()).unwrap_err();
        assert!(
            err.message
                .ends_with("warning 2998; warning 2999; warning 3000"),
            "{err}"
        );
    }

    #[test]
    fn cancelling_kills_the_child_promptly() {
        let cancel = Arc::new(go());
        let running = Runner::new("sleep").arg("30").spawn().unwrap();
        let pid = running.id();
        assert!(alive(pid));
        let flag = Arc::clone(&cancel);
        let flipper = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            flag.store(true, Ordering::SeqCst);
        });
        let started = Instant::now();
        let err = running.finish(&*cancel).unwrap_err();
        flipper.join().unwrap();
        assert_eq!(err, PluginError::cancelled());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!alive(pid), "the child was killed and reaped");
    }

    #[test]
    fn dropping_the_handle_kills_the_child() {
        let running = Runner::new("sleep").arg("30").spawn().unwrap();
        let pid = running.id();
        assert!(alive(pid));
        drop(running);
        assert!(!alive(pid));
    }

    #[test]
    fn a_panic_while_running_kills_the_child() {
        let (send, receive) = mpsc::channel();
        let result = thread::spawn(move || {
            let running = Runner::new("sleep").arg("30").spawn().unwrap();
            send.send(running.id()).unwrap();
            panic!("the plugin failed");
        })
        .join();
        assert!(result.is_err());
        assert!(!alive(receive.recv().unwrap()));
    }

    #[test]
    fn a_timeout_kills_the_child() {
        let started = Instant::now();
        let err = Runner::new("sleep")
            .arg("30")
            .timeout(Duration::from_millis(200))
            .output(&go())
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Timeout);
        assert_eq!(err.message, "`sleep` did not finish within 0.2 s");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_missing_program_is_unavailable_with_the_hint() {
        let err = Runner::new("launcher-test-no-such-program")
            .install_hint("install it with your package manager")
            .output(&go())
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(
            err.message
                .starts_with("cannot run `launcher-test-no-such-program`"),
            "{err}"
        );
        assert_eq!(
            err.hint.as_deref(),
            Some("install it with your package manager")
        );
        let err = Runner::new("launcher-test-no-such-program")
            .output(&go())
            .unwrap_err();
        assert!(err.hint.unwrap().contains("PATH"));
    }

    #[test]
    fn stdout_lines_feed_the_progress_hook() {
        let mut lines = Vec::new();
        let output = sh("printf 'out_time_us=1\\r\\nprogress=continue\\nprogress=end'")
            .stdout_lines()
            .run_lines(&go(), &mut |line| {
                lines.push(line.to_string());
                Ok(())
            })
            .unwrap();
        assert_eq!(
            lines,
            ["out_time_us=1", "progress=continue", "progress=end"]
        );
        assert!(output.stdout.is_empty());
    }

    #[test]
    fn stderr_lines_are_delivered_and_kept() {
        let mut lines = Vec::new();
        let output = sh("echo a=1 >&2; echo result; echo a=2 >&2")
            .stderr_lines()
            .run_lines(&go(), &mut |line| {
                lines.push(line.to_string());
                Ok(())
            })
            .unwrap();
        assert_eq!(lines, ["a=1", "a=2"]);
        assert_eq!(output.stdout, b"result\n");
        assert_eq!(output.stderr, "a=1\na=2\n");
    }

    #[test]
    fn an_error_from_the_hook_stops_the_child() {
        let started = Instant::now();
        let err = sh("echo first; exec sleep 30")
            .stdout_lines()
            .run_lines(&go(), &mut |_| Err(PluginError::cancelled()))
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_writer_that_cancels_stops_the_stream() {
        /// A sink that asks to stop after its first chunk.
        struct Output(Vec<u8>);
        impl Write for Output {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl Cancel for Output {
            fn is_cancelled(&self) -> bool {
                !self.0.is_empty()
            }
        }
        let mut out = Output(Vec::new());
        let err = sh("echo one; exec sleep 30")
            .stream_to(&mut out)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert_eq!(out.0, b"one\n");
    }

    #[test]
    fn arguments_environment_and_directory_reach_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let output = sh("printf '%s %s %s' \"$1\" \"$GREETING\" \"$(pwd)\"")
            .arg("sh")
            .args(["first"])
            .env("GREETING", "hi")
            .current_dir(dir.path())
            .output(&go())
            .unwrap();
        let expected = format!("first hi {}", dir.path().canonicalize().unwrap().display());
        assert_eq!(String::from_utf8(output.stdout).unwrap(), expected);
    }

    #[test]
    fn temp_files_live_in_the_given_directory_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = TempFile::new_in(dir.path(), "speech-", ".wav").unwrap();
        let path = file.path().to_path_buf();
        assert_eq!(path.parent(), Some(dir.path()));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("speech-") && name.ends_with(".wav"),
            "{name}"
        );
        file.file().write_all(b"audio").unwrap();
        drop(file);
        assert!(!path.exists());

        let mut file = TempFile::new_in(dir.path(), "speech-", ".wav").unwrap();
        file.file().write_all(b"audio").unwrap();
        let kept = dir.path().join("out.wav");
        file.persist(&kept).unwrap();
        assert_eq!(std::fs::read(&kept).unwrap(), b"audio");

        let scratch = TempDir::new_in(dir.path(), "frames-").unwrap();
        let inside = scratch.path().join("0001.png");
        std::fs::write(&inside, b"png").unwrap();
        let scratch_path = scratch.path().to_path_buf();
        assert_eq!(scratch_path.parent(), Some(dir.path()));
        drop(scratch);
        assert!(!scratch_path.exists());

        let err = TempFile::new_in(dir.path().join("missing"), "x", "").unwrap_err();
        assert!(err.message.contains("missing"), "{err}");
    }
    #[test]
    fn a_background_child_runs_until_dropped() {
        let mut server = sh("sleep 30").spawn_background().unwrap();
        let pid = server.id();
        let mut cancel = go();
        let mut asked = 0;
        server
            .wait_ready(&mut cancel, Duration::from_secs(10), |_| {
                asked += 1;
                asked == 3
            })
            .unwrap();
        assert_eq!(asked, 3);
        server.check().unwrap();
        assert!(alive(pid));
        drop(server);
        assert!(!alive(pid), "dropping the handle kills and reaps the child");
    }

    #[test]
    fn a_background_child_that_exits_says_why() {
        let mut server =
            sh("echo starting; echo 'OSError: [Errno 98] Address already in use' >&2; exit 1")
                .spawn_background()
                .unwrap();
        let err = server
            .wait_ready(&mut go(), Duration::from_secs(10), |_| false)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(
            err.message.contains("Address already in use"),
            "{}",
            err.message
        );
        assert!(err.message.contains("exit status: 1"), "{}", err.message);
    }

    #[test]
    fn a_background_child_with_only_stdout_is_explained_by_it() {
        let mut server = sh("echo 'no model file'; exit 3")
            .spawn_background()
            .unwrap();
        let err = server
            .wait_ready(&mut go(), Duration::from_secs(10), |_| false)
            .unwrap_err();
        assert!(err.message.contains("no model file"), "{}", err.message);
    }

    #[test]
    fn a_background_child_that_never_answers_times_out_and_is_killed() {
        let mut server = sh("echo loading >&2; sleep 30").spawn_background().unwrap();
        let pid = server.id();
        let started = Instant::now();
        let err = server
            .wait_ready(&mut go(), Duration::from_millis(300), |_| false)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Timeout);
        assert!(
            err.message.contains("it last said: loading"),
            "{}",
            err.message
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!alive(pid));
    }

    /// A cancel flag another thread sets.
    struct Shared(Arc<AtomicBool>);

    impl Cancel for Shared {
        fn is_cancelled(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn cancelling_the_wait_kills_the_background_child() {
        let mut server = sh("sleep 30").spawn_background().unwrap();
        let pid = server.id();
        let flag = Arc::new(AtomicBool::new(false));
        let setter = Arc::clone(&flag);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            setter.store(true, Ordering::SeqCst);
        });
        let err = server
            .wait_ready(&mut Shared(flag), Duration::from_secs(30), |_| false)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert!(!alive(pid));
    }

    #[test]
    fn a_chatty_background_child_never_blocks_on_its_pipes() {
        // Far more than the pipe buffers and the kept tails hold, on both pipes.
        let mut server =
            sh("head -c 4000000 /dev/zero; head -c 4000000 /dev/zero >&2; echo done >&2; sleep 30")
                .stderr_limit(1024)
                .spawn_background()
                .unwrap();
        let said_done = |server: &Background| server.output_tail().ends_with("done\n");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !said_done(&server) && Instant::now() < deadline {
            thread::sleep(POLL);
        }
        assert!(said_done(&server), "the child got past its output");
        server.check().unwrap();
    }

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
