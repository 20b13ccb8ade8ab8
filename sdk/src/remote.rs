//! What adapters of hosted generation services share (feature `http`): an input image given
//! as a local file or an https URL, sent inline within the service's size limit, and result
//! files fetched from the signed, expiring links such services hand back.
//!
//! Video services (Runway, Kling, Replicate) take a first frame either by URL or inline
//! (base64, or a `data:` URI), each with its own cap on inline size; [`Image::load`] reads a
//! local file, names the format from its bytes, and refuses one over the cap with a message
//! saying so. Their results come back as links that expire after a day or two:
//! [`download`] streams one into an output and, when the service refuses it, tells an
//! expired link (whose expiry, read from the URL by [`expires_at`], has passed) from any
//! other refusal, so the user learns that the result is gone rather than that a key is wrong.
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
//! use launcher_sdk::http::Client;
//! use launcher_sdk::remote::{Image, download};
//! # fn run(client: &Client, cx: &mut launcher_sdk::Context<'_>) -> Result<(), launcher_sdk::PluginError> {
//! let image = Image::load("frame.png", 5 * 1024 * 1024, "Runway")?;
//! let reference = image.reference(); // an https URL as given, or a data: URI
//! # let _ = reference;
//! let written = download(client, "https://cdn.example.com/v.mp4?Expires=1700000000", cx, "video", "video/mp4", "mp4")?;
//! # let _ = written;
//! # Ok(()) }
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::Url;

use crate::error::ErrorKind;
use crate::error::PluginError;
use crate::http::{Client, Request, Verdict};
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
        return Err(PluginError::unavailable(format!(
            "this job was stopped while it was being submitted to {service}, before {service} \
             answered, so it is not known whether the task was created; it is not sent again"
        ))
        .with_hint(format!(
            "look for the task in your {service} account before running the job again, so \
             nothing is charged twice"
        )));
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
            Image::Inline { bytes, format } => {
                format!(
                    "data:{};base64,{}",
                    format.media_type,
                    STANDARD.encode(bytes)
                )
            }
        }
    }
}

/// The longest `data:<type>;base64,` prefix of an image this module names.
const DATA_URI_PREFIX_MAX: u64 = "data:image/jpeg;base64,".len() as u64 + 8;

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}

/// Returns when a signed result link stops working, read from its query: `Expires` (seconds
/// since the epoch, as CloudFront and S3's older signatures put it), `X-Amz-Date` plus
/// `X-Amz-Expires` (S3's signature version 4), or the `exp` claim of a JWT in `_jwt` or
/// `token` (Runway's links). `None` when the URL says nothing of it.
pub fn expires_at(url: &str) -> Option<SystemTime> {
    let url = Url::parse(url).ok()?;
    let mut amz_date = None;
    let mut amz_expires = None;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "Expires" | "expires" => return value.parse().ok().map(epoch),
            "X-Amz-Date" => amz_date = amz_seconds(&value),
            "X-Amz-Expires" => amz_expires = value.parse::<u64>().ok(),
            "_jwt" | "token" => {
                if let Some(exp) = jwt_exp(&value) {
                    return Some(epoch(exp));
                }
            }
            _ => {}
        }
    }
    Some(epoch(amz_date? + amz_expires?))
}

fn epoch(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// Reads the `exp` claim of a JWT without checking its signature (only the service can).
fn jwt_exp(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

/// Reads `YYYYMMDDTHHMMSSZ` as seconds since the epoch.
fn amz_seconds(stamp: &str) -> Option<u64> {
    let digits = |range: std::ops::Range<usize>| stamp.get(range)?.parse::<u64>().ok();
    if stamp.len() != 16 || stamp.as_bytes()[8] != b'T' || !stamp.ends_with('Z') {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (hour, minute, second) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    // Days from the civil date (Howard Hinnant's algorithm), valid for the Gregorian calendar.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Streams the file at `url` (a signed result link: no credentials are sent) into a new output
/// `name`, and returns how many bytes it wrote.
///
/// The output's media type and extension are those named from the file's first bytes when
/// they are of the same kind as `media_type`, else `media_type` and `extension` as given. A
/// link the service refuses (401, 403, 404, 410) ends with an unavailable error that says it
/// expired, and when, if [`expires_at`] reads an expiry that has passed, and otherwise that
/// the result could not be fetched.
pub fn download(
    client: &Client,
    url: &str,
    cx: &mut Context<'_>,
    name: &str,
    media_type: &str,
    extension: &str,
) -> Result<u64, PluginError> {
    let expiry = expires_at(url);
    let request = Request::get(url).read_errors(move |reply| match reply.status {
        401 | 403 | 404 | 410 => Verdict::Fail(refused_link(reply.status, expiry)),
        _ => Verdict::Default,
    });
    let mut response = client.send(&request, cx)?;
    let first = response.chunk(&*cx)?.unwrap_or_default();
    let wanted = ContentKind::of_media_type(media_type);
    let (media_type, extension) = match sniff(&first) {
        Some(found) if Some(&found.kind) == wanted.as_ref() => (found.media_type, found.extension),
        _ => (media_type, extension),
    };
    let mut out = cx.output(name, media_type, extension)?;
    std::io::Write::write_all(&mut out, &first)?;
    let written = first.len() as u64 + response.copy_to(&mut out)?;
    out.finish()?;
    Ok(written)
}

fn refused_link(status: u16, expiry: Option<SystemTime>) -> PluginError {
    let now = SystemTime::now();
    match expiry {
        Some(at) if at <= now => {
            let ago = now.duration_since(at).unwrap_or_default().as_secs();
            PluginError::unavailable(format!(
                "the result's download link expired {} ago (HTTP {status}), so the result \
                 can no longer be fetched",
                human_age(ago)
            ))
            .with_hint(
                "services keep results for a day or two; run the job again to make a new one",
            )
        }
        _ => PluginError::unavailable(format!(
            "the service refused to hand over the result (HTTP {status}) although its link \
             has not expired"
        ))
        .with_hint("try again later; if it keeps failing the result may have been deleted"),
    }
}

fn human_age(seconds: u64) -> String {
    match seconds {
        0..120 => format!("{seconds} s"),
        120..7200 => format!("{} min", seconds / 60),
        _ => format!("{} h", seconds / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_read_from_the_usual_signed_url_forms() {
        assert_eq!(
            expires_at("https://cdn.example.com/v.mp4?Expires=1700000000&Signature=x"),
            Some(epoch(1_700_000_000))
        );
        // 2024-01-02T03:04:05Z plus an hour.
        assert_eq!(
            expires_at(
                "https://b.s3.amazonaws.com/v.mp4?X-Amz-Date=20240102T030405Z&X-Amz-Expires=3600"
            ),
            Some(epoch(1_704_164_645 + 3600))
        );
        let payload = URL_SAFE_NO_PAD.encode(br#"{"exp":1800000000,"id":"t"}"#);
        let url = format!(
            "https://dnznrvs05pmza.cloudfront.net/t.mp4?_jwt=eyJhbGciOiJIUzI1NiJ9.{payload}.sig"
        );
        assert_eq!(expires_at(&url), Some(epoch(1_800_000_000)));
        assert_eq!(expires_at("https://example.com/v.mp4?x=1"), None);
        assert_eq!(expires_at("https://example.com/v.mp4?_jwt=garbage"), None);
        assert_eq!(expires_at("not a url"), None);
    }

    #[test]
    fn an_expired_link_says_so_and_a_live_one_does_not() {
        let expired = refused_link(403, Some(SystemTime::now() - Duration::from_secs(7200)));
        assert_eq!(expired.kind, crate::ErrorKind::Unavailable);
        assert!(
            expired.message.contains("expired 2 h ago"),
            "{}",
            expired.message
        );
        let live = refused_link(403, Some(SystemTime::now() + Duration::from_secs(60)));
        assert!(live.message.contains("has not expired"), "{}", live.message);
        assert!(refused_link(404, None).message.contains("HTTP 404"));
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
