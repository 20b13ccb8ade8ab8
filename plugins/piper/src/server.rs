//! A Piper server the plugin starts itself, for one job, from a voice file.
//!
//! With setting `model` (a `.onnx` voice with its `.onnx.json` beside it), a job runs
//! `PYTHON -m piper.http_server -m MODEL --host 127.0.0.1 --port P --data-dir DIR` on a free
//! loopback port, waits until `/info` answers, talks to it, and kills it when the job ends
//! however it ends (the SDK's [`Background`] child). The voice's directory is the data
//! directory, so the other voices in it can be chosen with `--voice`.
//!
//! Which Python: setting `python`, else the interpreter of the `piper` program on `PATH` (the
//! piper-tts package installs it, and its server module, into the same environment), else
//! `python3`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use launcher_sdk::http::{Client, Request};
use launcher_sdk::process::{Background, Runner, free_port};
use launcher_sdk::{Context, ErrorKind, LogLevel, PluginError};

/// How long a started server may take to load its voice and answer. It takes about 3.5 s on
/// a quiet machine and 5 to 50 times that on a busy one.
pub const START_TIMEOUT: Duration = Duration::from_secs(180);

/// How many times a start is tried again when another process took the port first.
const PORT_TRIES: usize = 3;

const INSTALL_HINT: &str = "install Piper's server into that Python (`pip install piper-tts \
                            flask`), or point setting `python` (PIPER_PYTHON) at one that has it";

/// A server this job started, and its address.
pub struct Started {
    /// Its root, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The child; dropping it stops the server.
    pub server: Background,
}

/// Returns the voice file of setting `model`, checked: a `.onnx` file with its config.
pub fn model_path(setting: &str) -> Result<PathBuf, PluginError> {
    let path = PathBuf::from(setting.trim());
    let hint = "set PIPER_MODEL (or `model`) to a Piper voice file, e.g. \
                /voices/en_US-joe-medium.onnx, with its .onnx.json beside it";
    if !path.is_file() {
        return Err(PluginError::invalid_input(format!(
            "setting `model` names `{}`, which is not a file",
            path.display()
        ))
        .with_hint(hint));
    }
    if path.extension().is_none_or(|e| e != "onnx") {
        return Err(PluginError::invalid_input(format!(
            "setting `model` names `{}`, which is not a Piper voice (.onnx)",
            path.display()
        ))
        .with_hint(hint));
    }
    let config = PathBuf::from(format!("{}.json", path.display()));
    if !config.is_file() {
        return Err(PluginError::invalid_input(format!(
            "the Piper voice `{}` has no config `{}` beside it",
            path.display(),
            config.display()
        ))
        .with_hint(
            "download the voice's .onnx.json with its .onnx; Piper cannot speak without it",
        ));
    }
    Ok(path)
}

/// Returns the Python to run the server with (see the module documentation).
pub fn python(setting: Option<&str>) -> PathBuf {
    if let Some(python) = setting.map(str::trim).filter(|p| !p.is_empty()) {
        return PathBuf::from(python);
    }
    find_on_path("piper")
        .and_then(|piper| python_of_script(&piper))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Returns the interpreter a Python console script runs with: a `python` beside it (a
/// virtual environment's `bin`), else the one its `#!` line names.
fn python_of_script(script: &Path) -> Option<PathBuf> {
    let dir = script.parent()?;
    for name in ["python", "python3"] {
        let beside = dir.join(name);
        if beside.is_file() {
            return Some(beside);
        }
    }
    let head = std::fs::read(script).ok()?;
    let first = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(first).ok()?.strip_prefix("#!")?.trim();
    // `#!/usr/bin/env python3` names a program to find; `#!/opt/x/bin/python` a path.
    let mut words = line.split_whitespace();
    let program = words.next()?;
    if program.ends_with("/env") {
        return words.next().map(PathBuf::from);
    }
    program.contains("python").then(|| PathBuf::from(program))
}

/// Starts a server for `model` and waits until it answers; `probe` asks `/info` once.
pub fn start(
    python: &Path,
    model: &Path,
    probe: &Client,
    cx: &mut Context<'_>,
) -> Result<Started, PluginError> {
    let began = Instant::now();
    cx.progress(None, "starting the Piper server")?;
    let mut last = None;
    for _ in 0..PORT_TRIES {
        match start_on(python, model, free_port()?, probe, cx) {
            Ok(started) => {
                cx.log(
                    LogLevel::Info,
                    format!(
                        "started Piper's server for {} at {} in {:.1} s",
                        model.display(),
                        started.url,
                        began.elapsed().as_secs_f64()
                    ),
                );
                return Ok(started);
            }
            Err(err) if err.message.contains("Address already in use") => last = Some(err),
            Err(err) => return Err(explain(err)),
        }
    }
    Err(last.map_or_else(
        || PluginError::internal("Piper's server was never started"),
        explain,
    ))
}

fn start_on(
    python: &Path,
    model: &Path,
    port: u16,
    probe: &Client,
    cx: &mut Context<'_>,
) -> Result<Started, PluginError> {
    let data_dir = model.parent().unwrap_or(Path::new("."));
    let port_text = port.to_string();
    let mut server = Runner::new(python)
        .args(["-m", "piper.http_server", "--host", "127.0.0.1", "--port"])
        .arg(&port_text)
        .arg("-m")
        .arg(model)
        .arg("--data-dir")
        .arg(data_dir)
        // Nothing in a job may fetch a voice from a model hub.
        .env("HF_HUB_OFFLINE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .current_dir(data_dir)
        .install_hint(format!(
            "cannot run `{}`: install Python 3 and piper-tts, or set PIPER_PYTHON",
            python.display()
        ))
        .spawn_background()?;
    let url = format!("http://127.0.0.1:{port}");
    let info = Request::get(format!("{url}/info"));
    server.wait_ready(cx, START_TIMEOUT, |cx| {
        probe
            .fetch(&info, cx)
            .is_ok_and(|reply| reply.status == 200)
    })?;
    Ok(Started { url, server })
}

/// Adds what the user can do to a server that would not start.
fn explain(err: PluginError) -> PluginError {
    if err.hint.is_some() || err.kind == ErrorKind::Cancelled {
        return err;
    }
    let message = format!("Piper's server did not start: {}", err.message);
    let err = PluginError::new(err.kind, message);
    if err.message.contains("No module named") {
        err.with_hint(INSTALL_HINT)
    } else if err.kind == ErrorKind::Timeout {
        err.with_hint(
            "the machine may be busy; try again, or start the server yourself and set PIPER_URL",
        )
    } else {
        err.with_hint(
            "run the same command by hand to see why: python3 -m piper.http_server -m VOICE.onnx",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_must_be_a_voice_with_its_config() {
        let dir = std::env::temp_dir().join(format!("launcher-piper-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let voice = dir.join("en_US-test-low.onnx");
        std::fs::write(&voice, b"onnx").unwrap();
        let err = model_path(voice.to_str().unwrap()).unwrap_err();
        assert!(err.message.contains("has no config"), "{}", err.message);
        std::fs::write(dir.join("en_US-test-low.onnx.json"), b"{}").unwrap();
        assert_eq!(model_path(voice.to_str().unwrap()).unwrap(), voice);
        let err = model_path(dir.join("missing.onnx").to_str().unwrap()).unwrap_err();
        assert!(err.message.contains("not a file"), "{}", err.message);
        let other = dir.join("voice.bin");
        std::fs::write(&other, b"x").unwrap();
        assert!(model_path(other.to_str().unwrap()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_console_script_names_its_python() {
        let dir =
            std::env::temp_dir().join(format!("launcher-piper-script-{}", std::process::id()));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let script = bin.join("piper");
        std::fs::write(&script, "#!/opt/piper/bin/python3.11\nimport sys\n").unwrap();
        assert_eq!(
            python_of_script(&script),
            Some(PathBuf::from("/opt/piper/bin/python3.11"))
        );
        std::fs::write(&script, "#!/usr/bin/env python3\n").unwrap();
        assert_eq!(python_of_script(&script), Some(PathBuf::from("python3")));
        std::fs::write(bin.join("python"), "").unwrap();
        assert_eq!(python_of_script(&script), Some(bin.join("python")));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            python(Some(" /usr/bin/python3 ")),
            PathBuf::from("/usr/bin/python3")
        );
    }
}
