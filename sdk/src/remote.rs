//! What adapters of hosted generation services share (feature `http`): an input image given
//! as a local file or an https URL, sent inline within the service's size limit, and the
//! submit, resume and cancel rules of a paid remote task. Results are fetched with
//! [`Client::download`](crate::http::Client::download).
//!
//! Video services (Runway, Kling, Replicate) take a first frame either by URL or inline
//! (base64, or a `data:` URI), each with its own cap on inline size; [`Image::load`] reads a
//! local file, names the format from its bytes, and refuses one over the cap with a message
//! saying so.
//!
//! Between the two, [`submit`], [`resumed_task`] and [`follow`] keep the rules of a paid
//! remote task: the job is checkpointed as submitting *before* the request goes out and with
//! the task's id once the service accepted it, so a run stopped in between is never sent
//! again by a resume (it may have been charged); a resumed job picks the task up from its
//! checkpoint; and a job cancelled while it waits (Ctrl-C with `--cancel-remote`) cancels the
//! remote task too, while a detached job leaves it running.
//!
//! # Example
//!
//! ```no_run
//! use launcher_sdk::remote::Image;
//! # fn run() -> Result<(), launcher_sdk::PluginError> {
//! let image = Image::load("frame.png", 5 * 1024 * 1024, "Runway")?;
//! let reference = image.reference(); // an https URL as given, or a data: URI
//! # let _ = reference;
//! # Ok(()) }
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::{ErrorKind, PluginError};
use crate::media::{MediaFormat, sniff};
use crate::plugin::Context;
use crate::types::{ContentKind, Job, LogLevel};
use crate::wait::{Poll, Status, poll};
use serde_json::{Value, json};

/// Checkpoints the job as submitting, runs `send` (the one request that creates the remote
/// task; it must not be resent: leave POST's default), and checkpoints the id it returns
/// together with `extra` (what a resume needs besides the id, as a JSON object). Returns
/// the id.
pub fn submit(
    cx: &mut Context<'_>,
    extra: Value,
    send: impl FnOnce(&mut Context<'_>) -> Result<String, PluginError>,
) -> Result<String, PluginError> {
    cx.checkpoint(&json!({ "state": "submitting" }))?;
    let id = send(cx)?;
    let mut checkpoint = match extra {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    checkpoint.insert("state".into(), "submitted".into());
    checkpoint.insert("task".into(), id.clone().into());
    cx.checkpoint(&Value::Object(checkpoint))?;
    cx.log(LogLevel::Info, format!("submitted task {id}"));
    Ok(id)
}

/// Returns the remote task a resumed job picks up, with its whole checkpoint, or `None` for
/// a new job. A job stopped while submitting cannot be resumed: its request may have reached
/// `service` and been charged, so it is never sent again.
pub fn resumed_task(job: &Job, service: &str) -> Result<Option<(String, Value)>, PluginError> {
    let Some(checkpoint) = &job.resume else {
        return Ok(None);
    };
    if let Some(task) = checkpoint.get("task").and_then(Value::as_str) {
        return Ok(Some((task.to_string(), checkpoint.clone())));
    }
    if checkpoint.get("state").and_then(Value::as_str) == Some("submitting") {
        return Err(PluginError::submission_unknown(service));
    }
    Err(PluginError::internal(format!(
        "the job's checkpoint names no {service} task: {checkpoint}"
    )))
}

/// Polls a remote task with `check` (see [`poll`]) until it is done. When the job is
/// cancelled while it waits, `cancel` is called once to cancel the remote task (its failure
/// is logged, not returned) and the job ends cancelled.
pub fn follow<T>(
    cx: &mut Context<'_>,
    policy: &Poll,
    check: impl FnMut(&mut Context<'_>, u32) -> Result<Status<T>, PluginError>,
    cancel: impl FnOnce() -> Result<(), PluginError>,
) -> Result<T, PluginError> {
    let mut check = check;
    let outcome = poll(cx, policy, |cx, attempt| check(cx, attempt));
    match outcome {
        Err(err) if err.kind == ErrorKind::Cancelled => {
            match cancel() {
                Ok(()) => cx.log(LogLevel::Warn, "cancelled the remote task"),
                Err(failed) => cx.log(
                    LogLevel::Warn,
                    format!("could not cancel the remote task: {}", failed.message),
                ),
            }
            Err(err)
        }
        other => other,
    }
}

/// An input image: a URL the service fetches itself, or a local file sent inline.
#[derive(Debug, Clone, PartialEq)]
pub enum Image {
    /// An https URL, passed on as given.
    Url(String),
    /// A local file's bytes and format.
    Inline {
        /// The file's bytes.
        bytes: Vec<u8>,
        /// Its format, named from its first bytes.
        format: MediaFormat,
    },
}

impl Image {
    /// Reads `value`: an `https://` URL is kept as it is; anything else is a local file that
    /// must be an image whose data URI (`data:<type>;base64,…`, a third larger than the file)
    /// is at most `max_inline` bytes, the most `service` takes inline.
    pub fn load(value: &str, max_inline: u64, service: &str) -> Result<Image, PluginError> {
        let value = value.trim();
        if value.starts_with("https://") {
            return Ok(Image::Url(value.to_string()));
        }
        if value.starts_with("http://") {
            return Err(PluginError::invalid_input(format!(
                "{service} fetches images only over https, and `{value}` is http"
            ))
            .with_hint("give an https URL, or a local file to send inline"));
        }
        let size = std::fs::metadata(value)
            .map_err(|e| PluginError::invalid_input(format!("cannot read image `{value}`: {e}")))?
            .len();
        let encoded = size.div_ceil(3) * 4 + DATA_URI_PREFIX_MAX;
        if encoded > max_inline {
            return Err(PluginError::invalid_input(format!(
                "image `{value}` is {} ({} once base64-encoded), and {service} takes at most {} \
                 inline",
                megabytes(size),
                megabytes(encoded),
                megabytes(max_inline)
            ))
            .with_hint("give an https URL of the image instead, or make the file smaller"));
        }
        let bytes = std::fs::read(value)
            .map_err(|e| PluginError::invalid_input(format!("cannot read image `{value}`: {e}")))?;
        let format = sniff(&bytes)
            .filter(|f| f.kind == ContentKind::Image)
            .ok_or_else(|| {
                PluginError::invalid_input(format!("`{value}` is not an image this launcher knows"))
                    .with_hint("give a PNG, JPEG or WebP file")
            })?;
        Ok(Image::Inline { bytes, format })
    }

    /// Returns the image's media type when it is inline (`image/png`).
    pub fn media_type(&self) -> Option<&'static str> {
        match self {
            Image::Url(_) => None,
            Image::Inline { format, .. } => Some(format.media_type),
        }
    }

    /// Returns the URL, or the inline bytes as plain base64.
    pub fn base64_or_url(&self) -> String {
        match self {
            Image::Url(url) => url.clone(),
            Image::Inline { bytes, .. } => STANDARD.encode(bytes),
        }
    }

    /// Returns the URL, or the inline bytes as a `data:<type>;base64,` URI.
    pub fn reference(&self) -> String {
        match self {
            Image::Url(url) => url.clone(),
            Image::Inline { bytes, format } => data_uri(bytes, format.media_type),
        }
    }
}

/// Returns a local file of any kind (an audio or video input, say) as a `data:` URI, its
/// media type from its bytes, else `application/octet-stream`. For images, whose size a
/// service caps, see [`Image::load`].
pub fn file_data_uri(path: &str) -> Result<String, PluginError> {
    let bytes = std::fs::read(path)
        .map_err(|e| PluginError::invalid_input(format!("cannot read `{path}`: {e}")))?;
    let media_type = sniff(&bytes).map_or("application/octet-stream", |f| f.media_type);
    Ok(data_uri(&bytes, media_type))
}

fn data_uri(bytes: &[u8], media_type: &str) -> String {
    format!("data:{media_type};base64,{}", STANDARD.encode(bytes))
}

/// The longest `data:<type>;base64,` prefix of an image this module names.
const DATA_URI_PREFIX_MAX: u64 = "data:image/jpeg;base64,".len() as u64 + 8;

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_file_becomes_a_data_uri_typed_by_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("voice.bin");
        let mut bytes = b"RIFF\x24\0\0\0WAVEfmt ".to_vec();
        bytes.extend_from_slice(&[0; 28]);
        std::fs::write(&wav, &bytes).unwrap();
        let uri = file_data_uri(wav.to_str().unwrap()).unwrap();
        assert_eq!(
            uri,
            format!("data:audio/wav;base64,{}", STANDARD.encode(&bytes))
        );

        let other = dir.path().join("notes.dat");
        std::fs::write(&other, b"\x00\x01 plain bytes").unwrap();
        let uri = file_data_uri(other.to_str().unwrap()).unwrap();
        assert!(
            uri.starts_with("data:application/octet-stream;base64,"),
            "{uri}"
        );

        let missing = file_data_uri("/no/such/file").unwrap_err();
        assert_eq!(missing.kind, ErrorKind::InvalidInput);
        assert!(missing.message.contains("/no/such/file"), "{missing}");
    }

    #[test]
    fn images_load_by_url_or_inline_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("frame.png");
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        bytes.extend_from_slice(&[0; 100]);
        std::fs::write(&png, &bytes).unwrap();
        let path = png.to_str().unwrap();

        let image = Image::load(path, 200, "Runway").unwrap();
        assert_eq!(image.media_type(), Some("image/png"));
        assert!(
            image
                .reference()
                .starts_with("data:image/png;base64,iVBORw0KGgo")
        );
        assert!(image.base64_or_url().starts_with("iVBORw0KGgo"));

        // 108 bytes are 144 in base64, plus the prefix.
        let err = Image::load(path, 150, "Runway").unwrap_err();
        assert!(
            err.message.contains("once base64-encoded"),
            "{}",
            err.message
        );
        assert!(err.hint.unwrap().contains("https URL"));

        let url = Image::load("https://example.com/a.png", 1, "Runway").unwrap();
        assert_eq!(url.reference(), "https://example.com/a.png");
        assert!(Image::load("http://example.com/a.png", 1, "Runway").is_err());
        assert!(Image::load(dir.path().join("none.png").to_str().unwrap(), 1, "R").is_err());

        let text = dir.path().join("notes.png");
        std::fs::write(&text, "hello").unwrap();
        let err = Image::load(text.to_str().unwrap(), 1000, "Runway").unwrap_err();
        assert!(err.message.contains("is not an image"), "{}", err.message);
    }
}
