//! A small loopback HTTP/1.1 server for tests.
//!
//! [`HttpServer::start`] binds `127.0.0.1:0`, serves each connection on its own thread, and asks
//! a handler what to do with every request: answer it, answer it in part and hang up, never
//! answer, or hang up at once. It records every request it reads, keeps connections alive for
//! several requests, decodes `Content-Length` and chunked request bodies, and stops when dropped,
//! releasing any connection it was holding open.
//!
//! ```no_run
//! use launcher_testkit::http::{HttpServer, Reply, Response};
//!
//! let server = HttpServer::start(|req| {
//!     if req.path == "/health" {
//!         Reply::Respond(Response::text(200, "ok"))
//!     } else {
//!         Reply::Respond(Response::new(404))
//!     }
//! });
//! let url = format!("{}/health", server.url());
//! # let _ = url;
//! ```

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The most header bytes one request may carry; more is answered with 431.
const MAX_HEAD: usize = 64 * 1024;

/// How often a held connection checks whether the server is stopping.
const HOLD_POLL: Duration = Duration::from_millis(50);

/// A request as the server read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The request target as sent, including any query, e.g. `/v1/items?page=2`.
    pub path: String,
    /// The headers in the order received, names as the client spelled them.
    pub headers: Vec<(String, String)>,
    /// The body, decoded from its transfer coding.
    pub body: Vec<u8>,
}

impl Request {
    /// Returns the first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Returns the body as text, replacing invalid UTF-8.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parses a `multipart/form-data` body strictly: the boundary from `Content-Type`,
    /// CRLF line ends, a `Content-Disposition: form-data; name="…"` on every part, and the
    /// closing boundary. Returns why the body is not a valid form otherwise.
    pub fn form(&self) -> Result<Vec<FormPart>, String> {
        let content_type = self.header("content-type").ok_or("no Content-Type")?;
        let boundary = content_type
            .strip_prefix("multipart/form-data")
            .and_then(|rest| {
                rest.split(';')
                    .find_map(|p| p.trim().strip_prefix("boundary="))
            })
            .map(|b| b.trim_matches('"'))
            .ok_or_else(|| {
                format!("Content-Type `{content_type}` is not multipart/form-data with a boundary")
            })?;
        let delimiter = format!("--{boundary}");
        let body = &self.body;
        let mut rest = body
            .strip_prefix(delimiter.as_bytes())
            .ok_or("the body does not start with the boundary")?;
        let mut parts = Vec::new();
        loop {
            if rest.starts_with(b"--") {
                return if rest == b"--\r\n" || rest == b"--" {
                    Ok(parts)
                } else {
                    Err("bytes after the closing boundary".into())
                };
            }
            rest = rest
                .strip_prefix(b"\r\n")
                .ok_or("a boundary not followed by CRLF")?;
            let head_end =
                find(rest, b"\r\n\r\n").ok_or("a part without a blank line after its headers")?;
            let head =
                std::str::from_utf8(&rest[..head_end]).map_err(|_| "part headers are not UTF-8")?;
            rest = &rest[head_end + 4..];
            let next = format!("\r\n{delimiter}");
            let end = find(rest, next.as_bytes()).ok_or("a part without a boundary after it")?;
            let data = rest[..end].to_vec();
            rest = &rest[end + next.len()..];
            let mut part = FormPart {
                name: String::new(),
                file_name: None,
                content_type: None,
                data,
            };
            for line in head.split("\r\n") {
                let (key, value) = line
                    .split_once(':')
                    .ok_or_else(|| format!("a part header `{line}` without a colon"))?;
                let value = value.trim();
                if key.eq_ignore_ascii_case("content-disposition") {
                    let mut params = value.split(';').map(str::trim);
                    if params.next() != Some("form-data") {
                        return Err(format!("Content-Disposition `{value}` is not form-data"));
                    }
                    for param in params {
                        let (k, v) = param
                            .split_once('=')
                            .ok_or("a malformed Content-Disposition")?;
                        let v = v.trim_matches('"').to_string();
                        match k {
                            "name" => part.name = v,
                            "filename" => part.file_name = Some(v),
                            _ => {}
                        }
                    }
                } else if key.eq_ignore_ascii_case("content-type") {
                    part.content_type = Some(value.to_string());
                }
            }
            if part.name.is_empty() {
                return Err("a part without a name".into());
            }
            parts.push(part);
        }
    }
}

/// One part of a `multipart/form-data` body, as [`Request::form`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormPart {
    /// The field name.
    pub name: String,
    /// The file name, for a file part.
    pub file_name: Option<String>,
    /// The part's own `Content-Type`, if it has one.
    pub content_type: Option<String>,
    /// The bytes.
    pub data: Vec<u8>,
}

impl FormPart {
    /// Returns the bytes as text, replacing invalid UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A response for the server to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers to send; `Content-Length` is added unless given.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// Returns an empty response with `status`.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Returns a `text/plain` response.
    pub fn text(status: u16, text: &str) -> Self {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(text)
    }

    /// Returns an `application/json` response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(value.to_string())
    }
}

/// What the server does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Sends the response; the connection stays open for more requests.
    Respond(Response),
    /// Sends headers with the full `Content-Length` but only the first n body bytes, then
    /// closes.
    Truncate(Response, usize),
    /// Reads the request and never answers until the server is dropped.
    Hang,
    /// Closes the connection without answering.
    Close,
    /// Sends the response's status and headers, then a body that the [`StreamBody`] writes
    /// piece by piece with chunked transfer coding (the response's own body is ignored), then
    /// closes the connection. When the writer fails, the connection closes without the final
    /// chunk, as a server that dies mid-answer.
    Stream(Response, StreamBody),
    /// Sends the response's status and headers (a `101 Switching Protocols`, say), then hands
    /// the connection to the [`Takeover`], which speaks the new protocol on it (a websocket)
    /// until it returns; then the connection closes.
    Upgrade(Response, Takeover),
}

/// Speaks another protocol on a connection after [`Reply::Upgrade`].
#[derive(Clone)]
pub struct Takeover(Arc<TakeOver>);

type TakeOver = dyn Fn(TcpStream) + Send + Sync;

impl Takeover {
    /// Returns a takeover that runs `serve` on the upgraded connection's thread. The socket
    /// is shut down when the server is dropped, which ends any read `serve` is blocked in.
    pub fn new(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> Self {
        Takeover(Arc::new(serve))
    }
}

impl std::fmt::Debug for Takeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Takeover")
    }
}

/// Writes a streamed body: server-sent events, JSON lines, audio as it is made.
#[derive(Clone)]
pub struct StreamBody(Arc<WriteBody>);

type WriteBody = dyn Fn(&mut Chunks<'_>) -> io::Result<()> + Send + Sync;

impl StreamBody {
    /// Returns a body written by `write`, which sends pieces with [`Chunks::send`].
    pub fn new(write: impl Fn(&mut Chunks<'_>) -> io::Result<()> + Send + Sync + 'static) -> Self {
        StreamBody(Arc::new(write))
    }
}

impl std::fmt::Debug for StreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamBody(..)")
    }
}

/// Where a [`StreamBody`] sends its pieces.
pub struct Chunks<'a> {
    writer: &'a TcpStream,
    stopping: &'a AtomicBool,
}

impl Chunks<'_> {
    /// Sends `bytes` as one chunk at once; fails when the client left or the server stops.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let mut writer = self.writer;
        writer.write_all(format!("{:x}\r\n", bytes.len()).as_bytes())?;
        writer.write_all(bytes)?;
        writer.write_all(b"\r\n")?;
        writer.flush()
    }

    /// Sleeps for `duration`, failing early when the server stops.
    pub fn pause(&mut self, duration: Duration) -> io::Result<()> {
        let start = std::time::Instant::now();
        while start.elapsed() < duration {
            if self.stopping.load(Ordering::SeqCst) {
                return Err(io::ErrorKind::ConnectionAborted.into());
            }
            thread::sleep(HOLD_POLL.min(duration.saturating_sub(start.elapsed())));
        }
        Ok(())
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync + 'static;

struct Shared {
    handler: Box<Handler>,
    requests: Mutex<Vec<Request>>,
    stopping: AtomicBool,
    /// Clones of the open connections, so dropping the server can shut them down.
    connections: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
}

/// Locks `mutex`, ignoring poisoning: a panicking handler must not wedge the server.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A loopback HTTP/1.1 server on a background thread; stops when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Starts a server on `127.0.0.1` with a free port that answers with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback test port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            requests: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name(format!("http-test-server-{}", addr.port()))
            .spawn(move || accept_loop(&listener, &accept_shared))
            .expect("spawn the test server thread");
        HttpServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Returns the base URL, `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Returns the address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns every request received so far, in the order they were read.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // accept() only returns on a connection, so make one to let the thread see the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // Shutting the sockets down wakes any connection thread blocked in a read; held
        // connections also poll the flag. Those threads are not joined, so a handler that
        // never returns cannot hang the test.
        for (_, conn) in lock(&self.shared.connections).drain() {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.connections).insert(id, clone);
        }
        let conn_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name(format!("http-test-conn-{id}"))
            .spawn(move || {
                let _ = serve(&stream, &conn_shared);
                let _ = stream.shutdown(Shutdown::Both);
                lock(&conn_shared.connections).remove(&id);
            });
        if spawned.is_err() {
            lock(&shared.connections).remove(&id);
        }
    }
}

/// Serves requests on one connection until either side closes it.
fn serve(stream: &TcpStream, shared: &Shared) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let request = match read_request(&mut reader, &mut writer) {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(err) => {
                let status = if err.kind() == io::ErrorKind::OutOfMemory {
                    431
                } else {
                    400
                };
                if err.kind() != io::ErrorKind::UnexpectedEof {
                    let _ = write_response(&mut writer, &Response::text(status, "bad request"));
                }
                return Ok(());
            }
        };
        if shared.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        lock(&shared.requests).push(request.clone());
        let close_after = wants_close(&request);
        match (shared.handler)(&request) {
            Reply::Respond(mut response) => {
                if request.method.eq_ignore_ascii_case("HEAD") {
                    // HEAD answers carry the headers of the body they omit.
                    let len = response.body.len();
                    if header_of(&response.headers, "content-length").is_none() {
                        response
                            .headers
                            .push(("Content-Length".into(), len.to_string()));
                    }
                    response.body.clear();
                }
                if close_after {
                    response.headers.push(("Connection".into(), "close".into()));
                }
                write_response(&mut writer, &response)?;
                if close_after {
                    return Ok(());
                }
            }
            Reply::Truncate(response, keep) => {
                let head = response_head(&response);
                writer.write_all(&head)?;
                writer.write_all(&response.body[..keep.min(response.body.len())])?;
                writer.flush()?;
                return Ok(());
            }
            Reply::Hang => {
                hold(stream, shared);
                return Ok(());
            }
            Reply::Close => return Ok(()),
            Reply::Upgrade(response, takeover) => {
                writer.write_all(&response_head(&response))?;
                writer.flush()?;
                (takeover.0)(stream.try_clone()?);
                return Ok(());
            }
            Reply::Stream(mut response, body) => {
                response.headers.retain(|(k, _)| {
                    !k.eq_ignore_ascii_case("content-length")
                        && !k.eq_ignore_ascii_case("transfer-encoding")
                });
                response
                    .headers
                    .push(("Transfer-Encoding".into(), "chunked".into()));
                response.headers.push(("Connection".into(), "close".into()));
                let mut head = format!(
                    "HTTP/1.1 {} {}\r\n",
                    response.status,
                    reason(response.status)
                );
                for (name, value) in &response.headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                writer.write_all(head.as_bytes())?;
                writer.flush()?;
                let mut chunks = Chunks {
                    writer: stream,
                    stopping: &shared.stopping,
                };
                if (body.0)(&mut chunks).is_ok() {
                    writer.write_all(b"0\r\n\r\n")?;
                    writer.flush()?;
                }
                return Ok(());
            }
        }
    }
}

/// Keeps a connection open without answering until the server stops or the client leaves.
fn hold(stream: &TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(HOLD_POLL));
    let mut sink = [0u8; 1024];
    let mut reader = stream;
    while !shared.stopping.load(Ordering::SeqCst) {
        match reader.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

fn wants_close(request: &Request) -> bool {
    request
        .header("connection")
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
}

fn header_of<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads one line ending in LF, without the line ending; `None` at a clean end of stream.
fn read_line(reader: &mut impl BufRead, budget: &mut usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = reader
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget {
        return Err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            "request head too large",
        ));
    }
    *budget -= n;
    if line.last() != Some(&b'\n') {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "request head is not UTF-8"))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads the next request; `None` when the client closed the connection between requests.
fn read_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut &TcpStream,
) -> io::Result<Option<Request>> {
    let mut budget = MAX_HEAD;
    // RFC 9112 lets a server ignore empty lines before a request line.
    let request_line = loop {
        match read_line(reader, &mut budget)? {
            None => return Ok(None),
            Some(line) if line.is_empty() => continue,
            Some(line) => break line,
        }
    };
    let mut parts = request_line.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid("not HTTP/1.x"));
    }
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader, &mut budget)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| invalid("header line"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut request = Request {
        method: method.to_string(),
        path: path.to_string(),
        headers,
        body: Vec::new(),
    };
    if request
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        request.body = read_chunked(reader)?;
    } else if let Some(len) = request.header("content-length") {
        let len: usize = len.parse().map_err(|_| invalid("content-length"))?;
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        request.body = body;
    }
    Ok(Some(request))
}

/// Decodes a chunked body, discarding chunk extensions and trailers.
fn read_chunked(reader: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut budget = MAX_HEAD;
    loop {
        let line = read_line(reader, &mut budget)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid("chunk size"))?;
        if size == 0 {
            while !read_line(reader, &mut budget)?
                .ok_or(io::ErrorKind::UnexpectedEof)?
                .is_empty()
            {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(invalid("chunk not followed by CRLF"));
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Returns the status line and headers, adding `Content-Length` where a body is allowed.
fn response_head(response: &Response) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let bodyless = matches!(response.status, 100..=199 | 204 | 304);
    if !bodyless && header_of(&response.headers, "content-length").is_none() {
        head.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

fn write_response(writer: &mut impl Write, response: &Response) -> io::Result<()> {
    let mut bytes = response_head(response);
    bytes.extend_from_slice(&response.body);
    writer.write_all(&bytes)?;
    writer.flush()
}

/// Serves the files of a directory, as a static registry host would: `ETag`s on every file,
/// `304` for a matching `If-None-Match`, `404` for anything missing. Scripted faults take the
/// place of the reply for a path.
pub struct StaticServer {
    server: HttpServer,
    faults: Arc<Mutex<HashMap<String, Reply>>>,
}

impl StaticServer {
    /// Serves `dir` on a loopback port until dropped.
    pub fn start(dir: impl Into<std::path::PathBuf>) -> StaticServer {
        StaticServer::serve(dir.into(), true)
    }

    /// Serves `dir` as a bare server does: no `ETag` or `Last-Modified`, so clients cannot
    /// revalidate and must cache what they get as it is.
    pub fn start_without_validators(dir: impl Into<std::path::PathBuf>) -> StaticServer {
        StaticServer::serve(dir.into(), false)
    }

    fn serve(dir: std::path::PathBuf, validators: bool) -> StaticServer {
        let faults: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let scripted = Arc::clone(&faults);
        let server = HttpServer::start(move |req| {
            if let Some(reply) = lock(&scripted).get(&req.path) {
                return reply.clone();
            }
            let relative = req
                .path
                .split('?')
                .next()
                .unwrap_or("")
                .trim_start_matches('/');
            if relative.split('/').any(|part| part == "..") {
                return Reply::Respond(Response::new(404));
            }
            let Ok(bytes) = std::fs::read(dir.join(relative)) else {
                return Reply::Respond(Response::new(404));
            };
            if !validators {
                return Reply::Respond(Response::new(200).body(bytes));
            }
            let etag = {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut hasher);
                format!("\"{:016x}\"", hasher.finish())
            };
            if req.header("If-None-Match") == Some(etag.as_str()) {
                return Reply::Respond(Response::new(304).header("ETag", etag));
            }
            Reply::Respond(Response::new(200).header("ETag", etag).body(bytes))
        });
        StaticServer { server, faults }
    }

    /// Returns the root URL, ending in `/`.
    pub fn url(&self) -> String {
        format!("{}/", self.server.url())
    }

    /// Makes every request for `path` (e.g. `/config.json`) get `reply` instead.
    pub fn fault(&self, path: &str, reply: Reply) {
        lock(&self.faults).insert(path.to_string(), reply);
    }

    /// Returns the requests received for `path`.
    pub fn requests_for(&self, path: &str) -> Vec<Request> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Returns every request received.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Sends raw bytes and reads until the server closes or `until` is seen.
    fn exchange(stream: &mut TcpStream, raw: &[u8], until: &str) -> String {
        stream.write_all(raw).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains(until) {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    fn echo_server() -> HttpServer {
        HttpServer::start(|req| {
            Reply::Respond(
                Response::new(200)
                    .header("X-Method", req.method.clone())
                    .header("X-Path", req.path.clone())
                    .body(req.body.clone()),
            )
        })
    }

    #[test]
    fn keeps_the_connection_alive_and_decodes_both_body_framings() {
        let server = echo_server();
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        let first = exchange(
            &mut stream,
            b"POST /a?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            "hello",
        );
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
        assert!(first.contains("X-Path: /a?x=1\r\n"));
        assert!(first.contains("Content-Length: 5\r\n"));
        let second = exchange(
            &mut stream,
            b"PUT /b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
              3;ext=1\r\nwor\r\n2\r\nld\r\n0\r\nTrailer: x\r\n\r\n",
            "world",
        );
        assert!(second.contains("X-Method: PUT\r\n"), "{second}");
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].body, b"hello");
        assert_eq!(requests[1].body, b"world");
        assert_eq!(requests[1].header("TRANSFER-ENCODING"), Some("chunked"));
    }

    #[test]
    fn truncate_sends_the_full_length_but_part_of_the_body() {
        let server =
            HttpServer::start(|_| Reply::Truncate(Response::new(200).body(vec![b'x'; 100]), 10));
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        let got = exchange(&mut stream, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", "\u{0}");
        assert!(got.contains("Content-Length: 100\r\n"), "{got}");
        assert!(got.ends_with(&"x".repeat(10)));
        assert!(!got.ends_with(&"x".repeat(11)));
    }

    #[test]
    fn close_hangs_up_without_an_answer() {
        let server = HttpServer::start(|_| Reply::Close);
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        let got = exchange(&mut stream, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", "\u{0}");
        assert_eq!(got, "");
        assert_eq!(server.requests().len(), 1);
    }

    #[test]
    fn a_hung_connection_is_released_when_the_server_drops() {
        let server = HttpServer::start(|_| Reply::Hang);
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 16];
        let err = stream.read(&mut buf).unwrap_err();
        assert!(matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
        let started = Instant::now();
        drop(server);
        assert!(started.elapsed() < Duration::from_secs(2));
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(stream.read(&mut buf).unwrap_or(0), 0);
    }

    #[test]
    fn connection_close_is_honoured_and_head_has_no_body() {
        let server = HttpServer::start(|_| Reply::Respond(Response::text(200, "body")));
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        let got = exchange(
            &mut stream,
            b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            "\u{0}",
        );
        assert!(got.contains("Content-Length: 4\r\n"), "{got}");
        assert!(got.contains("Connection: close\r\n"));
        assert!(got.ends_with("\r\n\r\n"));
    }

    #[test]
    fn a_malformed_request_gets_400() {
        let server = echo_server();
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        let got = exchange(&mut stream, b"nonsense\r\n\r\n", "\u{0}");
        assert!(got.starts_with("HTTP/1.1 400 "), "{got}");
    }
}
