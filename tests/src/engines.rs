//! Real engines for tests: llama.cpp's server, faster-whisper-server, stable-diffusion.cpp's
//! sd-server and the Piper TTS server, started on demand.
//!
//! `tests/engines.sh install` puts each engine in a cache directory
//! (`LAUNCHER_ENGINES_DIR`, or `~/.cache/launcher-test-engines`) and writes a manifest,
//! `NAME/engine.env`, that this module reads: no Python runs to find anything. The first call of
//! [`llama`], [`whisper`], [`sd`] or [`piper`] in a test binary starts that engine on a free
//! loopback port and waits until it answers; later calls share it. The engine ends with the
//! test process: its launcher (`tests/engines/*.py`) watches its parent and exits when it is
//! gone, even after a SIGKILL.
//!
//! When an engine is not installed the call prints one line,
//! `skipping: <engine> is not installed (run tests/engines.sh install)`, and returns `None`, so
//! the test can return early; with `LAUNCHER_REQUIRE_ENGINES=1` (as CI sets) it panics with
//! that message instead. An installed engine that fails to start always panics, with the tail
//! of its output.
//!
//! ```no_run
//! let Some(llama) = launcher_testkit::engines::llama() else { return };
//! let reply = launcher_testkit::engines::get(&format!("{}/models", llama.base_url())).unwrap();
//! assert_eq!(reply.status, 200);
//! ```

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How long an engine may take to answer after it was started; the machine may be busy.
const START_DEADLINE: Duration = Duration::from_secs(120);

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(100);

/// How many times a start is retried when another process took the chosen port first.
const PORT_TRIES: usize = 3;

/// How long one request may wait for an answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// A running engine, serving on `127.0.0.1`.
#[derive(Debug)]
pub struct Engine {
    name: String,
    port: u16,
    model: String,
    manifest: HashMap<String, String>,
    log: PathBuf,
    child: Mutex<Child>,
}

impl Engine {
    /// The engine's name, e.g. `llama`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's root, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The OpenAI-style API root, `url()` + `/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.url())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The model name to send in requests: the alias llama.cpp serves, the name
    /// faster-whisper-server expects in its `model_name` field, the checkpoint's name as
    /// sd-server lists it in `/sdapi/v1/sd-models` (its file name without `.safetensors`), or
    /// the voice Piper serves (`en_US-joe-medium`).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// A value from the engine's manifest (`python`, `model`, `versions`, …).
    pub fn manifest(&self, key: &str) -> Option<&str> {
        self.manifest.get(key).map(String::as_str)
    }

    /// The last `lines` lines of what the engine printed.
    pub fn output_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Starts the engine described by `NAME/engine.env` in the engines directory and waits until
    /// it answers. Most tests want the shared instance from [`llama`], [`whisper`], [`sd`] or
    /// [`piper`] instead.
    ///
    /// Returns `Ok(None)` when the engine is not installed; `Err` with its output when it would
    /// not start.
    pub fn start(name: &str) -> Result<Option<Engine>, String> {
        let Some(manifest) = read_manifest(name) else {
            return Ok(None);
        };
        let spec = Spec::of(name, &manifest)?;
        let mut last = String::new();
        for _ in 0..PORT_TRIES {
            match spawn(&spec, &manifest)? {
                Started::Ready(engine) => return Ok(Some(engine)),
                Started::PortTaken(output) => last = output,
            }
        }
        Err(format!(
            "{name}: the port was taken {PORT_TRIES} times in a row; last output:\n{last}"
        ))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The shared llama.cpp server (SmolLM2-135M-Instruct) of this test binary, started on first
/// use; `None` (after a skip line on stderr) when it is not installed.
pub fn llama() -> Option<&'static Engine> {
    static LLAMA: OnceLock<Option<Engine>> = OnceLock::new();
    shared(&LLAMA, "llama")
}

/// The shared faster-whisper-server (whisper tiny.en) of this test binary, started on first
/// use; `None` (after a skip line on stderr) when it is not installed.
pub fn whisper() -> Option<&'static Engine> {
    static WHISPER: OnceLock<Option<Engine>> = OnceLock::new();
    shared(&WHISPER, "whisper")
}

/// The shared stable-diffusion.cpp `sd-server` of this test binary, with a Stable Diffusion 1.5
/// checkpoint of random weights (its pictures are noise; its API is real), started on first use;
/// `None` (after a skip line on stderr) when it is not installed.
pub fn sd() -> Option<&'static Engine> {
    static SD: OnceLock<Option<Engine>> = OnceLock::new();
    shared(&SD, "sd")
}

/// The shared Piper TTS server (`piper.http_server` with the en_US "joe" medium voice) of this
/// test binary, started on first use; `None` (after a skip line on stderr) when it is not
/// installed. Its [`Engine::manifest`] `model` is the voice file, for tests in which the
/// plugin starts a server of its own.
pub fn piper() -> Option<&'static Engine> {
    static PIPER: OnceLock<Option<Engine>> = OnceLock::new();
    shared(&PIPER, "piper")
}

/// The cache directory `tests/engines.sh` installs into.
pub fn engines_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LAUNCHER_ENGINES_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/launcher-test-engines")
}

/// Whether a missing engine is a failure rather than a skip (`LAUNCHER_REQUIRE_ENGINES=1`).
pub fn engines_required() -> bool {
    std::env::var("LAUNCHER_REQUIRE_ENGINES").is_ok_and(|v| v == "1")
}

fn shared(cell: &'static OnceLock<Option<Engine>>, name: &str) -> Option<&'static Engine> {
    let message = format!("skipping: {name} is not installed (run tests/engines.sh install)");
    let engine = cell.get_or_init(|| match (Instant::now(), Engine::start(name)) {
        (t0, Ok(Some(engine))) => {
            let _ = writeln!(
                io::stderr(),
                "engines: {name} answers at {} after {:.1} s",
                engine.url(),
                t0.elapsed().as_secs_f64()
            );
            Some(engine)
        }
        (_, Ok(None)) => {
            if !engines_required() {
                // Straight to the process's stderr, past the test harness's capture, once.
                let _ = writeln!(io::stderr(), "{message}");
            }
            None
        }
        (_, Err(e)) => panic!("{name} is installed but did not start: {e}"),
    });
    if engine.is_none() && engines_required() {
        panic!("{message}; LAUNCHER_REQUIRE_ENGINES=1 makes that a failure");
    }
    engine.as_ref()
}

/// Reads `NAME/engine.env`; `None` when the engine is not installed or its files are gone.
fn read_manifest(name: &str) -> Option<HashMap<String, String>> {
    let text = std::fs::read_to_string(engines_dir().join(name).join("engine.env")).ok()?;
    let mut manifest: HashMap<String, String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .collect();
    if let Some(script) = manifest.get_mut("launcher") {
        *script = launch_script(script);
    }
    let present = |key: &str| manifest.get(key).is_some_and(|p| Path::new(p).exists());
    // A built engine (sd) names its binary too; it must be there as well.
    let binary = !manifest.contains_key("binary") || present("binary");
    (present("python") && present("model") && present("launcher") && binary).then_some(manifest)
}

/// How to run one kind of engine.
struct Spec {
    name: String,
    python: String,
    launcher: String,
    args: Vec<String>,
    model: String,
    health: &'static str,
}

impl Spec {
    fn of(name: &str, m: &HashMap<String, String>) -> Result<Spec, String> {
        let get = |key: &str| {
            m.get(key)
                .cloned()
                .ok_or_else(|| format!("{name}: its manifest has no `{key}`"))
        };
        let (args, model, health) = match name {
            "llama" => {
                let alias = get("alias")?;
                (vec![get("model")?, alias.clone()], alias, "/health")
            }
            "whisper" => (vec![get("model")?], get("model_name")?, "/health"),
            // The server loads the voice before it listens; `/info` names it.
            "piper" => {
                let voice = get("model")?;
                let name = Path::new(&voice)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (vec![voice], name, "/info")
            }
            "sd" => {
                let checkpoint = get("model")?;
                let stem = Path::new(&checkpoint)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let threads = m.get("threads").cloned().unwrap_or_else(|| "2".to_owned());
                // sd-server loads the checkpoint before it listens: any answer means ready.
                (
                    vec![checkpoint, get("binary")?, threads],
                    stem,
                    "/sdapi/v1/sd-models",
                )
            }
            other => return Err(format!("no launch rule for engine `{other}`")),
        };
        Ok(Spec {
            name: name.to_owned(),
            python: get("python")?,
            launcher: get("launcher")?,
            args,
            model,
            health,
        })
    }
}

/// Returns the launch script of this checkout with the manifest's file name: the engines are
/// cached between checkouts (CI clones anew each time), their launch scripts are not.
fn launch_script(recorded: &str) -> String {
    let file = Path::new(recorded)
        .file_name()
        .map(|f| f.to_os_string())
        .unwrap_or_default();
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("engines")
        .join(file)
        .to_string_lossy()
        .into_owned()
}

enum Started {
    Ready(Engine),
    PortTaken(String),
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding 127.0.0.1:0: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn spawn(spec: &Spec, manifest: &HashMap<String, String>) -> Result<Started, String> {
    let port = free_port()?;
    let log = std::env::temp_dir().join(format!(
        "launcher-engine-{}-{}-{port}.log",
        spec.name,
        std::process::id()
    ));
    let out = File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    // The launcher takes MODEL PORT [more...].
    let mut args = vec![
        spec.launcher.clone(),
        spec.args[0].clone(),
        port.to_string(),
    ];
    args.extend(spec.args[1..].iter().cloned());
    let child = Command::new(&spec.python)
        .args(&args)
        .env("LAUNCHER_ENGINE_PARENT", std::process::id().to_string())
        .env("HF_HUB_OFFLINE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("{}: running {}: {e}", spec.name, spec.python))?;
    let engine = Engine {
        name: spec.name.clone(),
        port,
        model: spec.model.clone(),
        manifest: manifest.clone(),
        log,
        child: Mutex::new(child),
    };
    let deadline = Instant::now() + START_DEADLINE;
    let health = format!("{}{}", engine.url(), spec.health);
    loop {
        let exited = engine
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_wait()
            .map_err(|e| e.to_string())?;
        if let Some(status) = exited {
            let output = engine.output_tail(40);
            if output.to_lowercase().contains("address already in use") {
                return Ok(Started::PortTaken(output));
            }
            return Err(format!(
                "{} exited with {status} before answering; its output ends:\n{output}",
                spec.name
            ));
        }
        if let Ok(reply) = request_with("GET", &health, &[], b"", Duration::from_secs(5))
            && reply.status == 200
        {
            return Ok(Started::Ready(engine));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not answer {health} within {} s; its output ends:\n{}",
                spec.name,
                START_DEADLINE.as_secs(),
                engine.output_tail(40)
            ));
        }
        thread::sleep(POLL);
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// An HTTP response as [`request`] read it.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, with any chunked coding removed.
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, replacing invalid UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// `GET url`.
pub fn get(url: &str) -> io::Result<HttpReply> {
    request("GET", url, &[], b"")
}

/// `POST url` with a JSON body.
pub fn post_json(url: &str, body: &serde_json::Value) -> io::Result<HttpReply> {
    let body = serde_json::to_vec(body).map_err(io::Error::other)?;
    request("POST", url, &[("Content-Type", "application/json")], &body)
}

/// A minimal blocking HTTP/1.1 client for `http://` URLs: one request per connection
/// (`Connection: close`), reading `Content-Length`, chunked or close-delimited bodies.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpReply> {
    request_with(method, url, headers, body, REQUEST_TIMEOUT)
}

fn request_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpReply> {
    let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{m}: {url}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid("only http:// URLs"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| invalid("no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;

    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("status: {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let mut reply = HttpReply {
        status,
        headers,
        body: Vec::new(),
    };
    let chunked = reply
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if method == "HEAD" || status == 204 || status == 304 {
        return Ok(reply);
    }
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size, 16).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("chunk {line:?}: {e}"))
            })?;
            if size == 0 {
                break;
            }
            let start = reply.body.len();
            reply.body.resize(start + size, 0);
            reader.read_exact(&mut reply.body[start..])?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else if let Some(len) = reply.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("length: {e}")))?;
        reply.body.resize(len, 0);
        reader.read_exact(&mut reply.body)?;
    } else {
        reader.read_to_end(&mut reply.body)?;
    }
    Ok(reply)
}

/// A `multipart/form-data` body: returns the `Content-Type` header value and the bytes.
/// Each part is `(field, file name if a file, bytes)`.
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = format!("launcher-testkit-{}", std::process::id());
    let mut body = Vec::new();
    for (field, file, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{field}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{field}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
