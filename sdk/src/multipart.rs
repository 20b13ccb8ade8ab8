//! `multipart/form-data` bodies whose file parts are read from disk while they are sent.
//!
//! Uploads to speech-to-text and image-editing services are forms: a few text fields and a
//! file that may be an hour of recording. A [`Form`] holds the text fields and small byte
//! parts in memory but only the *path* and length of each file; its bytes are read a chunk at
//! a time as the request goes out ([`Form::reader`]), so a large recording never sits whole in
//! memory. Every reader starts again from the first byte and re-opens the files, which is
//! what lets the HTTP client send the same form again when a retry is allowed.
//!
//! The length of the whole body is known before it is sent (text, boundaries and the files'
//! sizes), so the request carries `Content-Length`: several servers refuse chunked uploads.
//! A file that changes size between [`Form::file`] and the upload fails the request instead
//! of sending a body that disagrees with its announced length.
//!
//! # Example
//!
//! ```no_run
//! use launcher_sdk::http::{Client, Request};
//! use launcher_sdk::multipart::Form;
//! # fn run(cx: &mut launcher_sdk::Context<'_>, client: &Client) -> Result<(), launcher_sdk::PluginError> {
//! let form = Form::new()
//!     .file("file", "meeting.wav", "audio/wav")?
//!     .text("model", "whisper-1");
//! let request = Request::post("http://127.0.0.1:8000/v1/audio/transcriptions").multipart(form);
//! let text = client.send(&request, cx)?.text(&*cx)?;
//! # let _ = text;
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::PluginError;

/// How much of a file is read at a time while a form is sent.
pub const CHUNK: usize = 64 * 1024;

/// A `multipart/form-data` body: text fields, in-memory parts and files read while sent.
#[derive(Clone)]
pub struct Form {
    boundary: String,
    /// The body as it goes out: boundaries and part headers in memory, files by path.
    segments: Vec<Segment>,
    /// The field names, in order, for messages and tests.
    fields: Vec<String>,
}

#[derive(Clone)]
enum Segment {
    Bytes(Arc<[u8]>),
    File { path: PathBuf, len: u64 },
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::Bytes(bytes) => bytes.len() as u64,
            Segment::File { len, .. } => *len,
        }
    }
}

impl fmt::Debug for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Form")
            .field("boundary", &self.boundary)
            .field("fields", &self.fields)
            .field("len", &self.len())
            .finish()
    }
}

impl Default for Form {
    fn default() -> Self {
        Form::new()
    }
}

impl Form {
    /// Returns an empty form with a fresh random boundary.
    pub fn new() -> Form {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let a = hasher.finish();
        hasher.write_u64(a);
        Form::with_boundary(format!("launcher-{a:016x}{:016x}", hasher.finish()))
    }

    /// Returns an empty form with `boundary`, for bodies that must be byte-for-byte
    /// predictable (tests). The boundary must not occur in any part.
    pub fn with_boundary(boundary: impl Into<String>) -> Form {
        Form {
            boundary: boundary.into(),
            segments: Vec::new(),
            fields: Vec::new(),
        }
    }

    /// Adds a text field.
    pub fn text(self, name: &str, value: impl AsRef<str>) -> Self {
        let head = self.head(name, None, None);
        self.part(name, head, Segment::Bytes(value.as_ref().as_bytes().into()))
    }

    /// Adds a file part whose bytes are in memory, with the file name and media type the
    /// server is told.
    pub fn bytes(
        self,
        name: &str,
        file_name: &str,
        media_type: &str,
        data: impl Into<Vec<u8>>,
    ) -> Self {
        let head = self.head(name, Some(file_name), Some(media_type));
        self.part(name, head, Segment::Bytes(data.into().into()))
    }

    /// Adds the file at `path` as a part, named by its file name, read only while the form
    /// is sent. Fails when the file cannot be read now.
    pub fn file(
        self,
        name: &str,
        path: impl AsRef<Path>,
        media_type: &str,
    ) -> Result<Self, PluginError> {
        let path = path.as_ref();
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".to_string());
        self.file_named(name, path, &file_name, media_type)
    }

    /// Like [`Form::file`], telling the server `file_name` instead of the file's own name.
    pub fn file_named(
        self,
        name: &str,
        path: impl AsRef<Path>,
        file_name: &str,
        media_type: &str,
    ) -> Result<Self, PluginError> {
        let path = path.as_ref();
        let meta = File::open(path)
            .and_then(|f| f.metadata())
            .map_err(|e| cannot_read(path, &e))?;
        if !meta.is_file() {
            return Err(PluginError::invalid_input(format!(
                "`{}` is not a file",
                path.display()
            )));
        }
        let head = self.head(name, Some(file_name), Some(media_type));
        let len = meta.len();
        Ok(self.part(
            name,
            head,
            Segment::File {
                path: path.to_path_buf(),
                len,
            },
        ))
    }

    /// Returns the boundary.
    pub fn boundary(&self) -> &str {
        &self.boundary
    }

    /// Returns the `Content-Type` header value: `multipart/form-data; boundary=…`.
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    /// Returns the field names in the order they are sent.
    pub fn fields(&self) -> Vec<&str> {
        self.fields.iter().map(String::as_str).collect()
    }

    /// Returns the length of the whole body in bytes, closing boundary included.
    pub fn len(&self) -> u64 {
        self.segments.iter().map(Segment::len).sum::<u64>() + self.closing().len() as u64
    }

    /// Returns whether the form has no parts.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Returns a reader of the whole body from its first byte. Each call opens the files
    /// again, so each attempt of a request sends the same bytes.
    pub fn reader(&self) -> Result<FormReader, PluginError> {
        let mut pending = VecDeque::new();
        for segment in &self.segments {
            pending.push_back(match segment {
                Segment::Bytes(bytes) => Source::Bytes(Arc::clone(bytes), 0),
                Segment::File { path, len } => {
                    let file = File::open(path).map_err(|e| cannot_read(path, &e))?;
                    Source::File {
                        file: file.take(*len),
                        path: path.clone(),
                        left: *len,
                    }
                }
            });
        }
        pending.push_back(Source::Bytes(self.closing().into_bytes().into(), 0));
        Ok(FormReader { pending })
    }

    /// Reads the whole body into memory; for tests and small forms.
    pub fn to_bytes(&self) -> Result<Vec<u8>, PluginError> {
        let mut body = Vec::new();
        self.reader()?.read_to_end(&mut body)?;
        Ok(body)
    }

    fn head(&self, name: &str, file_name: Option<&str>, media_type: Option<&str>) -> Vec<u8> {
        let mut head = format!(
            "--{}\r\nContent-Disposition: form-data; name=\"{}\"",
            self.boundary,
            escape(name)
        );
        if let Some(file_name) = file_name {
            head.push_str(&format!("; filename=\"{}\"", escape(file_name)));
        }
        head.push_str("\r\n");
        if let Some(media_type) = media_type {
            head.push_str(&format!("Content-Type: {}\r\n", media_type.trim()));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    fn part(mut self, name: &str, head: Vec<u8>, content: Segment) -> Self {
        self.segments.push(Segment::Bytes(head.into()));
        self.segments.push(content);
        self.segments.push(Segment::Bytes(Arc::from(&b"\r\n"[..])));
        self.fields.push(name.to_string());
        self
    }

    fn closing(&self) -> String {
        format!("--{}--\r\n", self.boundary)
    }
}

/// Quotes a field or file name the way browsers do: `"` and line breaks percent-encoded.
fn escape(name: &str) -> String {
    name.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn cannot_read(path: &Path, err: &io::Error) -> PluginError {
    PluginError::invalid_input(format!("cannot read `{}`: {err}", path.display()))
}

/// Reads a [`Form`]'s body from its first byte, files a chunk at a time.
pub struct FormReader {
    pending: VecDeque<Source>,
}

enum Source {
    Bytes(Arc<[u8]>, usize),
    File {
        file: io::Take<File>,
        path: PathBuf,
        left: u64,
    },
}

impl fmt::Debug for FormReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormReader")
            .field("parts_left", &self.pending.len())
            .finish()
    }
}

impl Read for FormReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(source) = self.pending.front_mut() {
            let n = match source {
                Source::Bytes(bytes, at) => {
                    let n = (bytes.len() - *at).min(buf.len());
                    buf[..n].copy_from_slice(&bytes[*at..*at + n]);
                    *at += n;
                    n
                }
                Source::File { file, path, left } => {
                    let n = file.read(buf)?;
                    if n == 0 && *left > 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "`{}` became shorter while it was being sent",
                                path.display()
                            ),
                        ));
                    }
                    *left -= n as u64;
                    n
                }
            };
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.pending.pop_front();
        }
        Ok(0)
    }
}

/// A form as a request body that reqwest pulls from: each frame is read from the form when
/// the connection is ready for it, on the thread driving the request.
#[cfg(feature = "http")]
pub(crate) struct FormBody {
    reader: FormReader,
    left: u64,
}

#[cfg(feature = "http")]
impl FormBody {
    pub(crate) fn new(form: &Form) -> Result<FormBody, PluginError> {
        Ok(FormBody {
            reader: form.reader()?,
            left: form.len(),
        })
    }
}

#[cfg(feature = "http")]
impl http_body::Body for FormBody {
    type Data = bytes::Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(self.left).unwrap_or(CHUNK).min(CHUNK);
        let mut buf = vec![0; want];
        let n = match self.reader.read(&mut buf) {
            Ok(n) => n,
            Err(err) => return Poll::Ready(Some(Err(err))),
        };
        if n == 0 {
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the form ended before its announced length",
            ))));
        }
        buf.truncate(n);
        self.left -= n as u64;
        Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_fields_and_files_as_browsers_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.wav");
        std::fs::write(&path, b"RIFFdata").unwrap();
        let form = Form::with_boundary("XyZ")
            .text("model", "whisper-1")
            .file("file", &path, "audio/wav")
            .unwrap()
            .bytes("note", "a\"b.txt", "text/plain", "hi");
        let body = form.to_bytes().unwrap();
        let expected = "--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFFdata\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"note\"; filename=\"a%22b.txt\"\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
             --XyZ--\r\n";
        assert_eq!(String::from_utf8(body).unwrap(), expected);
        assert_eq!(form.len(), expected.len() as u64);
        assert_eq!(form.fields(), ["model", "file", "note"]);
        assert_eq!(form.content_type(), "multipart/form-data; boundary=XyZ");
    }

    #[test]
    fn a_large_file_is_read_in_chunks_and_again_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.raw");
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let form = Form::new().file("file", &path, "audio/wav").unwrap();
        let mut reader = form.reader().unwrap();
        let mut buf = vec![0; CHUNK];
        let mut total = Vec::new();
        let mut reads = 0;
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= CHUNK);
            total.extend_from_slice(&buf[..n]);
            reads += 1;
        }
        assert!(reads > data.len() / CHUNK, "{reads} reads");
        assert_eq!(total.len() as u64, form.len());
        assert!(total.windows(data.len()).any(|w| w == data.as_slice()));
        assert_eq!(
            form.to_bytes().unwrap(),
            total,
            "a second reader starts over"
        );
    }

    #[test]
    fn boundaries_differ_between_forms() {
        assert_ne!(Form::new().boundary(), Form::new().boundary());
    }

    #[test]
    fn a_missing_or_shrunk_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.wav");
        let err = Form::new().file("file", &path, "audio/wav").unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::InvalidInput);
        assert!(err.message.contains("gone.wav"), "{}", err.message);

        std::fs::write(&path, vec![1u8; 100]).unwrap();
        let form = Form::new().file("file", &path, "audio/wav").unwrap();
        std::fs::write(&path, vec![1u8; 10]).unwrap();
        let err = form.to_bytes().unwrap_err();
        assert!(err.message.contains("shorter"), "{}", err.message);
        std::fs::remove_file(&path).unwrap();
        assert!(form.reader().is_err());
    }
}
