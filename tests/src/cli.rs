//! Driving the real `launcher` binary in an isolated home, for end-to-end tests.
//!
//! A [`TestContext`] owns a temporary `LAUNCHER_HOME`, a temporary working directory and a
//! temporary plugin directory on `LAUNCHER_PLUGIN_PATH`. Commands it builds start from a clean
//! environment: no `LAUNCHER_*` or `AZURE_*` variables leak in from the machine running tests.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Returns a [`TestContext`] for the `launcher` binary of the calling crate.
#[macro_export]
macro_rules! test_context {
    () => {
        $crate::cli::TestContext::new(env!("CARGO_BIN_EXE_launcher"))
    };
}

/// An isolated launcher installation.
pub struct TestContext {
    bin: PathBuf,
    /// `LAUNCHER_HOME`.
    pub home: tempfile::TempDir,
    /// The working directory of commands; default outputs land here.
    pub work: tempfile::TempDir,
    /// A directory on `LAUNCHER_PLUGIN_PATH`, empty until a test adds libraries.
    pub plugins: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// Returns the id of the job a `job <id> goes on at <tool>` line of `stderr` names (a
/// detached or stopped remote job).
#[track_caller]
pub fn job_id(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.contains(" goes on at "))
        .and_then(|line| line.split("job ").nth(1))
        .and_then(|after| after.split_whitespace().next())
        .unwrap_or_else(|| panic!("no job id in {stderr}"))
        .to_string()
}

/// What a finished command did.
#[derive(Debug)]
pub struct Outcome {
    /// The exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
    /// Standard output as bytes.
    pub stdout_bytes: Vec<u8>,
}

impl Outcome {
    fn from(output: Output) -> Outcome {
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            stdout_bytes: output.stdout,
        }
    }

    /// Panics with the whole outcome unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Outcome {
        assert_eq!(self.code, code, "unexpected exit code; outcome: {self:#?}");
        self
    }

    /// Panics unless the command succeeded.
    #[track_caller]
    pub fn success(&self) -> &Outcome {
        self.expect_code(0)
    }

    /// Returns stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

impl TestContext {
    /// Creates a context for the launcher binary at `bin`.
    pub fn new(bin: &str) -> TestContext {
        let bin_dir = Path::new(bin).parent().expect("binary has a directory");
        let (prefix, suffix) = library_affixes();
        let espeak = bin_dir.join(format!("{prefix}launcher_plugin_espeak{suffix}"));
        // `cargo test` builds plugin libraries only into deps/; the end-to-end tests need them
        // beside the binary, where `cargo build` puts them and where launcher looks.
        assert!(
            espeak.is_file(),
            "{} is missing: run `cargo build --workspace` before `cargo test --workspace`",
            espeak.display()
        );
        TestContext {
            bin: PathBuf::from(bin),
            home: tempfile::tempdir().expect("temp home"),
            work: tempfile::tempdir().expect("temp work dir"),
            plugins: tempfile::tempdir().expect("temp plugin dir"),
            env: Vec::new(),
        }
    }

    /// Returns the directory holding the launcher binary and the plugins built beside it.
    pub fn bin_dir(&self) -> PathBuf {
        self.bin
            .parent()
            .expect("binary has a directory")
            .to_path_buf()
    }

    /// Returns the path of a library built in this workspace, e.g. `launcher_plugin_espeak`.
    #[track_caller]
    pub fn built_library(&self, stem: &str) -> PathBuf {
        let (prefix, suffix) = library_affixes();
        let file = format!("{prefix}{stem}{suffix}");
        let dir = self.bin_dir();
        for candidate in [dir.join(&file), dir.join("deps").join(&file)] {
            if candidate.is_file() {
                return candidate;
            }
        }
        panic!(
            "{file} is not built in {}: run `cargo build --workspace` first",
            dir.display()
        )
    }

    /// Copies a built library into the plugin directory as plugin `name`.
    pub fn add_plugin(&self, stem: &str, name: &str) -> PathBuf {
        let from = self.built_library(stem);
        self.add_plugin_file(name, &std::fs::read(from).expect("read library"))
    }

    /// Writes `bytes` into the plugin directory as the library of plugin `name`.
    pub fn add_plugin_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let (prefix, suffix) = library_affixes();
        let path = self.plugins.path().join(format!(
            "{prefix}launcher_plugin_{}{suffix}",
            name.replace('-', "_")
        ));
        std::fs::write(&path, bytes).expect("write plugin");
        path
    }

    /// Sets an environment variable for every later command.
    pub fn env(&mut self, key: &str, value: impl AsRef<OsStr>) -> &mut Self {
        self.env.push((
            key.to_string(),
            value.as_ref().to_string_lossy().into_owned(),
        ));
        self
    }

    /// Writes the launcher config file.
    pub fn config(&self, toml: &str) {
        std::fs::write(self.home.path().join("config.toml"), toml).expect("write config");
    }

    /// Returns a command for the launcher binary with a clean environment.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("LAUNCHER_") || key.starts_with("AZURE_") {
                cmd.env_remove(key.as_ref());
            }
            // A voice set up on this machine would change which tool speaks.
            if key.starts_with("PIPER_") || key.starts_with("ELEVENLABS_") {
                cmd.env_remove(key.as_ref());
            }
        }
        cmd.env("LAUNCHER_HOME", self.home.path())
            .env("LAUNCHER_PLUGIN_PATH", self.plugins.path())
            .env("LAUNCHER_NO_PROGRESS", "1")
            .env("NO_COLOR", "1")
            .current_dir(self.work.path())
            .stdin(Stdio::null());
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd
    }

    /// Runs launcher with `args` and no input.
    pub fn run<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Outcome::from(self.cmd().args(args).output().expect("launcher runs"))
    }

    /// Runs launcher with `args` and extra environment variables for this command only.
    pub fn run_with_env<I, S>(&self, args: I, env: &[(&str, &str)]) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.cmd();
        cmd.args(args);
        for (key, value) in env {
            cmd.env(key, value);
        }
        Outcome::from(cmd.output().expect("launcher runs"))
    }

    /// Runs launcher with `args`, feeding `input` on stdin.
    pub fn run_with_stdin<I, S>(&self, args: I, input: &[u8]) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("launcher starts");
        let mut stdin = child.stdin.take().expect("stdin piped");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output().expect("launcher runs");
        let _ = writer.join();
        Outcome::from(output)
    }

    /// Starts launcher with `args` and returns once a line of its stderr contains `marker`
    /// (or it ended, or 60 s passed): for tests that signal a running job.
    pub fn spawn_until<I, S>(&self, args: I, marker: &str) -> Running
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = self
            .cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("launcher starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                let Ok(line) = line else { break };
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
            all
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(marker) => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Running { child, reader }
    }

    /// Returns a command that runs launcher with `args` (shell words) on a pseudo-terminal,
    /// through util-linux's `script`, in this context's environment; its stdin is what is
    /// typed, its stdout what the terminal shows, and its exit code launcher's.
    ///
    /// `script` starts a shell for the command line, and `exec` makes launcher replace it:
    /// dash, unlike bash, stays as its parent, and Ctrl-C would stop the shell too.
    pub fn on_terminal(&self, args: &str) -> Command {
        let base = self.cmd();
        let program = base.get_program().to_string_lossy().replace('\'', r"'\''");
        let mut script = Command::new("script");
        script
            .args(["-qfec", &format!("exec '{program}' {args}"), "/dev/null"])
            .env("SHELL", "/bin/sh");
        for (key, value) in base.get_envs() {
            match value {
                Some(value) => script.env(key, value),
                None => script.env_remove(key),
            };
        }
        script.current_dir(self.work.path());
        script
    }

    /// Returns the path of `name` in the working directory.
    pub fn work_file(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Returns the names of the files in the working directory, sorted.
    pub fn work_files(&self) -> Vec<String> {
        list_dir(self.work.path())
    }
}

/// The file name prefix and suffix of dynamic libraries on this platform.
fn library_affixes() -> (&'static str, &'static str) {
    if cfg!(windows) {
        ("", ".dll")
    } else if cfg!(target_os = "macos") {
        ("lib", ".dylib")
    } else {
        ("lib", ".so")
    }
}

/// Returns the names of the entries of `dir`, sorted.
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A launcher process started by [`TestContext::spawn_until`].
pub struct Running {
    child: std::process::Child,
    reader: std::thread::JoinHandle<String>,
}

impl Running {
    /// Sends the process a signal by name (`INT`, `TERM`, `HUP`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to end and returns what it did (stderr in full).
    pub fn wait(mut self) -> Outcome {
        let mut stdout = Vec::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = std::io::Read::read_to_end(&mut out, &mut stdout);
        }
        let status = self.child.wait().expect("launcher ends");
        let stderr = self.reader.join().unwrap_or_default();
        Outcome {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr,
            stdout_bytes: stdout,
        }
    }
}
