//! Loading plugin libraries: the header check, init, and validation in a child process.
//!
//! Opening a library runs its constructors, so a library is first opened in a child process
//! (`launcher __probe <lib>`) whose crash cannot harm the host; only libraries that passed that
//! probe are opened in-process, and then only when a job needs them. Loaded libraries are never
//! unloaded: code and statics of a plugin may be referenced until the process ends.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use launcher_sdk::abi::{self, InitFn, PluginHeader, PluginLib};
use launcher_sdk::{DescribeRequest, DescribeResponse, Manifest, ToolSpec, validate_tools};

/// How long a probe may take before the library is declared hung.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Opens `path` in this process, checks its header and returns its function table.
pub(crate) fn open(path: &Path) -> Result<PluginLib, String> {
    // SAFETY: opening a library runs its initialisers; every library opened here passed the
    // child-process probe first (see `probe`), or is being probed right now in a child.
    #[allow(unsafe_code)]
    let library = unsafe { libloading::Library::new(path) }
        .map_err(|e| format!("cannot be loaded: {}", error_chain(&e)))?;
    // SAFETY: the symbol, when present, is the plugin's header static; it is read by value
    // (unaligned, in case a foreign library got it wrong) before any plugin code runs.
    #[allow(unsafe_code)]
    let header = unsafe {
        let symbol = library
            .get::<*const PluginHeader>(abi::HEADER_SYMBOL)
            .map_err(|_| {
                "is not a launcher plugin (it has no LAUNCHER_PLUGIN_HEADER)".to_string()
            })?;
        std::ptr::read_unaligned(*symbol)
    };
    PluginLib::check_header(&header)?;
    // SAFETY: the header promises the init function of this ABI major.
    #[allow(unsafe_code)]
    let init: InitFn = unsafe {
        *library
            .get::<InitFn>(abi::INIT_SYMBOL)
            .map_err(|_| "has a header but no launcher_plugin_init function".to_string())?
    };
    // Never unloaded: its code may still be referenced by instances and the table.
    std::mem::forget(library);
    // SAFETY: the header passed the check and the library stays loaded for good.
    #[allow(unsafe_code)]
    unsafe {
        PluginLib::init(init)
    }
}

/// Opens `path` here and returns its checked manifest. Only for the probe child.
pub(crate) fn read_manifest_in_process(path: &Path) -> Result<Manifest, String> {
    let lib = open(path)?;
    let manifest = lib
        .manifest()
        .map_err(|e| format!("returned no manifest: {e}"))?;
    check_manifest(&manifest)?;
    Ok(manifest)
}

/// Returns the first problem that makes `manifest` unusable by this host.
pub(crate) fn check_manifest(manifest: &Manifest) -> Result<(), String> {
    if manifest.abi != abi::ABI_MAJOR {
        return Err(format!(
            "claims plugin ABI {} in its manifest, and this launcher speaks ABI {}",
            manifest.abi,
            abi::ABI_MAJOR
        ));
    }
    semver::Version::parse(&manifest.version).map_err(|e| {
        format!(
            "has version `{}`, which is not semver: {e}",
            manifest.version
        )
    })?;
    manifest
        .validate()
        .map_err(|e| format!("has an unusable manifest: {e}"))
}

/// Validates `path` by loading it in a child process; returns its manifest.
///
/// A library that crashes, hangs, or is not a launcher plugin is refused with the reason.
pub(crate) fn probe(path: &Path) -> Result<Manifest, String> {
    let stdout = in_child("__probe", path, None)?;
    let manifest: Manifest =
        serde_json::from_slice(&stdout).map_err(|e| format!("gave an unreadable manifest: {e}"))?;
    check_manifest(&manifest)?;
    Ok(manifest)
}

/// Asks the plugin at `path`, in a child process, to describe tools that depend on
/// configuration or arguments. Returns the tools, checked; an empty list when the plugin
/// predates `describe`.
pub(crate) fn describe(path: &Path, request: &DescribeRequest) -> Result<Vec<ToolSpec>, String> {
    let json = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    let stdout = in_child("__describe", path, Some(&json))?;
    let response: DescribeResponse = serde_json::from_slice(&stdout)
        .map_err(|e| format!("gave an unreadable description: {e}"))?;
    validate_tools(&response.tools).map_err(|e| format!("described unusable tools: {e}"))?;
    Ok(response.tools)
}

/// The child side of [`describe`]: the request on stdin, the answer on stdout.
pub(crate) fn describe_in_process(path: &Path, request: &[u8]) -> Result<Vec<u8>, String> {
    let lib = open(path)?;
    let request: DescribeRequest =
        serde_json::from_slice(request).map_err(|e| format!("unreadable request: {e}"))?;
    let response = lib
        .describe(&request)
        .map_err(|e| format!("could not describe its tools: {e}"))?
        .unwrap_or_default();
    serde_json::to_vec(&response).map_err(|e| e.to_string())
}

/// Runs `launcher <command> <path>` with `stdin`, bounded in time; returns its stdout, or
/// why it failed (its stderr when it refused, else how it died).
fn in_child(command: &str, path: &Path, stdin: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the launcher executable: {e}"))?;
    let mut child = Command::new(exe)
        .arg(command)
        .arg(path)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the validation process: {e}"))?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut pipe, &bytes);
        });
    }
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > PROBE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "hung while loading (no answer in {} s)",
                    PROBE_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("cannot watch the validation process: {e}")),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if status.success() {
        return Ok(stdout);
    }
    let reason = String::from_utf8_lossy(&stderr).trim().to_string();
    if !reason.is_empty() && status.code() == Some(PROBE_REFUSED) {
        return Err(reason);
    }
    Err(format!(
        "crashed while loading ({})",
        describe_status(status)
    ))
}

/// The probe child's exit code when it refused the library (the reason is on stderr).
pub(crate) const PROBE_REFUSED: i32 = 3;

fn describe_status(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                4 => "SIGILL",
                6 => "SIGABRT",
                7 => "SIGBUS",
                8 => "SIGFPE",
                9 => "SIGKILL",
                11 => "SIGSEGV",
                _ => "signal",
            };
            return format!("{name}, signal {signal}");
        }
    }
    format!("{status}")
}

/// Returns an error and its sources on one line (libloading keeps dlerror's text in the source).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
