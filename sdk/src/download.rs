//! Downloading a service's output file into a job output (feature `http`): streamed, resumed
//! where the server allows when the transfer breaks off, and a clear error when the file's
//! URL has expired.
//!
//! Remote generators hand back a URL for each output (a video, an image), often signed and
//! valid for an hour or a day. [`Client::download`] streams it into an [`OutputWriter`], so the
//! host writes it to a partial file and renames it when complete, and a video never sits whole
//! in memory. When the body breaks off, it asks for the rest with an HTTP `Range` request
//! (with `If-Range`, so a file that changed meanwhile is not spliced), up to the client's
//! retry count; a server that cannot resume ends the job with an error saying so. When the
//! server refuses the URL (403 or 410) and the URL's own query says it expired (S3 and
//! GCS signatures, CloudFront and Azure SAS expiry, a plain `exp`), the error says that the
//! output URL expired, rather than a bare "forbidden".
//!
//! ```no_run
//! use launcher_sdk::http::{Client, Request};
//! # fn run(cx: &mut launcher_sdk::Context<'_>, url: &str) -> Result<(), launcher_sdk::PluginError> {
//! let client = Client::builder("launcher-example/0.1").build()?;
//! let mut out = cx.output("video", "video/mp4", "mp4")?;
//! client.download(&Request::get(url), &mut out)?;
//! out.finish()
//! # }
//! ```

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Url;

use crate::error::{ErrorKind, PluginError};
use crate::http::{Client, ErrorReply, Request, Verdict};
use crate::plugin::OutputWriter;
use crate::types::LogLevel;

impl Client {
    /// Streams the body of `request` (a GET of an output's URL) into `out`, resuming with
    /// `Range` requests when it breaks off; returns how many bytes were written.
    ///
    /// The output is not finished: call [`OutputWriter::finish`] after. A body shorter than
    /// the `Content-Length` the server announced is an error, never a silently short file.
    pub fn download(
        &self,
        request: &Request,
        out: &mut OutputWriter<'_, '_>,
    ) -> Result<u64, PluginError> {
        let request = with_expiry_check(request);
        let mut response = self.streaming(&request, &mut *out.cx)?;
        let total = response.content_length();
        let validator = response
            .header("etag")
            .filter(|tag| !tag.starts_with("W/"))
            .or_else(|| response.header("last-modified"))
            .map(str::to_string);
        let mut written = 0u64;
        let mut resumes = 0;
        loop {
            let broke = match response.chunk(&*out) {
                Ok(Some(piece)) => {
                    out.write_all(&piece).map_err(PluginError::from)?;
                    written += piece.len() as u64;
                    continue;
                }
                Ok(None) => break,
                Err(err) if err.kind == ErrorKind::Cancelled => return Err(err),
                Err(err) => err,
            };
            if resumes >= self.policy.retries {
                return Err(broke);
            }
            resumes += 1;
            out.cx.log(
                LogLevel::Info,
                format!("the download broke off after {written} bytes; asking for the rest"),
            );
            let mut rest = request.clone().header("Range", format!("bytes={written}-"));
            if let Some(validator) = &validator {
                rest = rest.header("If-Range", validator.clone());
            }
            response = self.streaming(&rest, &mut *out.cx)?;
            let resumed_at = response
                .header("content-range")
                .and_then(content_range_start);
            if response.status() != 206 || resumed_at != Some(written) {
                return Err(PluginError::unavailable(format!(
                    "the download broke off after {written} bytes and the server cannot resume it"
                ))
                .with_hint("run the job again; the service may keep the output for a while"));
            }
        }
        if let Some(total) = total
            && written != total
        {
            return Err(PluginError::unavailable(format!(
                "the download ended after {written} of {total} bytes"
            )));
        }
        Ok(written)
    }
}

/// Returns `request` with a reader that turns a 403 or 410 of an expired URL into a clear
/// error, keeping the request's own reader for everything else.
fn with_expiry_check(request: &Request) -> Request {
    let expiry = Url::parse(request.url()).ok().and_then(|u| url_expiry(&u));
    let Some(expiry) = expiry else {
        return request.clone();
    };
    let own = request.error_reader.clone();
    let mut checked = request.clone();
    checked.error_reader = Some(Arc::new(move |reply: &ErrorReply<'_>| {
        if matches!(reply.status, 403 | 410)
            && let Ok(ago) = SystemTime::now().duration_since(expiry)
        {
            return Verdict::Fail(expired(ago));
        }
        own.as_ref().map_or(Verdict::Default, |read| read(reply))
    }));
    checked
}

fn expired(ago: Duration) -> PluginError {
    PluginError::unavailable(format!(
        "the output URL expired {} ago, so the file can no longer be downloaded",
        approximately(ago)
    ))
    .with_hint(
        "the service keeps outputs for a limited time; collect jobs soon after they finish \
         (`launcher jobs wait`), or run the job again",
    )
}

/// Returns a duration as one rounded figure: `40 s`, `12 min`, `3 h`, `2 days`.
fn approximately(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        7200..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

/// Returns when a signed URL stops being valid, as its query says: `X-Amz-Date` plus
/// `X-Amz-Expires` (S3 SigV4), `X-Goog-Date` plus `X-Goog-Expires` (GCS), `Expires` (S3 SigV2,
/// CloudFront; Unix seconds), `se` (Azure SAS; RFC 3339), or `exp` (Unix seconds).
fn url_expiry(url: &Url) -> Option<SystemTime> {
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.into_owned())
    };
    let signed = |date: &str, expires: &str| {
        let start = compact_time(&param(date)?)?;
        let secs: u64 = param(expires)?.parse().ok()?;
        Some(start + Duration::from_secs(secs))
    };
    let unix = |name: &str| {
        let secs: u64 = param(name)?.parse().ok()?;
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    };
    signed("X-Amz-Date", "X-Amz-Expires")
        .or_else(|| signed("X-Goog-Date", "X-Goog-Expires"))
        .or_else(|| unix("Expires"))
        .or_else(|| param("se").and_then(|se| rfc3339_time(&se)))
        .or_else(|| unix("exp"))
}

/// Parses `20250102T030405Z`.
fn compact_time(text: &str) -> Option<SystemTime> {
    let digits = |range: std::ops::Range<usize>| text.get(range)?.parse::<u64>().ok();
    if text.len() != 16 || &text[8..9] != "T" || !text.ends_with('Z') {
        return None;
    }
    utc(
        digits(0..4)?,
        digits(4..6)?,
        digits(6..8)?,
        digits(9..11)? * 3600 + digits(11..13)? * 60 + digits(13..15)?,
    )
}

/// Parses `2025-01-02T03:04:05Z` (fractions of a second are ignored; only UTC is accepted).
fn rfc3339_time(text: &str) -> Option<SystemTime> {
    let digits = |range: std::ops::Range<usize>| text.get(range)?.parse::<u64>().ok();
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if !text.ends_with('Z')
        || separators
            .iter()
            .any(|(i, c)| text.as_bytes().get(*i) != Some(c))
    {
        return None;
    }
    utc(
        digits(0..4)?,
        digits(5..7)?,
        digits(8..10)?,
        digits(11..13)? * 3600 + digits(14..16)? * 60 + digits(17..19)?,
    )
}

/// Returns the instant of a UTC date and a second of that day.
fn utc(year: u64, month: u64, day: u64, second_of_day: u64) -> Option<SystemTime> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), for years from 1970.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + second_of_day))
}

/// Returns the first byte of a `Content-Range: bytes 100-199/200` header.
fn content_range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes ")?;
    range.split_once('-')?.0.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::Context;
    use crate::plugin::TestHost;
    use launcher_testkit::http::{HttpServer, Reply, Response as Answer};

    fn client() -> Client {
        Client::builder("launcher-sdk-test/1")
            .timeout(Duration::from_secs(5))
            .backoff_base(Duration::from_millis(5))
            .build()
            .unwrap()
    }

    /// The bytes of a pretend video: every byte tells its position.
    fn video(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// Serves `body`, breaking off the first answer after `cut` bytes, and answering `Range`
    /// requests with 206 when `ranges` is set (200 with everything otherwise).
    fn flaky(body: Vec<u8>, cut: usize, ranges: bool) -> HttpServer {
        let first = std::sync::atomic::AtomicBool::new(true);
        HttpServer::start(move |request| {
            let full = Answer::new(200).header("ETag", "\"v1\"").body(body.clone());
            if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return Reply::Truncate(full, cut);
            }
            match request
                .header("range")
                .and_then(|r| r.strip_prefix("bytes="))
            {
                Some(from) if ranges => {
                    let start: usize = from.trim_end_matches('-').parse().unwrap();
                    Reply::Respond(
                        Answer::new(206)
                            .header(
                                "Content-Range",
                                format!("bytes {start}-{}/{}", body.len() - 1, body.len()),
                            )
                            .body(body[start..].to_vec()),
                    )
                }
                _ => Reply::Respond(full),
            }
        })
    }

    fn download(url: &str) -> (Result<u64, PluginError>, TestHost) {
        let mut host = TestHost::default();
        let result = {
            let mut cx = Context::new(&mut host);
            let mut out = cx.output("video", "video/mp4", "mp4").unwrap();
            let result = client().download(&Request::get(url), &mut out);
            if result.is_ok() {
                out.finish().unwrap();
            }
            result
        };
        (result, host)
    }

    #[test]
    fn a_download_that_breaks_off_is_resumed_with_a_range_request() {
        let body = video(300_000);
        let server = flaky(body.clone(), 100_000, true);
        let (result, host) = download(&server.url());
        assert_eq!(result.unwrap(), 300_000);
        assert!(host.output == body, "the file is whole and in order");
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        let range = requests[1].header("range").unwrap();
        let from: usize = range["bytes=".len()..range.len() - 1].parse().unwrap();
        assert!(from > 0 && from <= 100_000, "{range}");
        assert_eq!(requests[1].header("if-range"), Some("\"v1\""));
        assert!(
            host.logs[0].message.contains("broke off"),
            "{:?}",
            host.logs
        );
    }

    #[test]
    fn a_server_that_cannot_resume_ends_the_download_with_an_error() {
        let server = flaky(video(300_000), 100_000, false);
        let (result, _) = download(&server.url());
        let err = result.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(err.message.contains("cannot resume"), "{}", err.message);
    }

    #[test]
    fn an_expired_signed_url_says_so_instead_of_forbidden() {
        let server = HttpServer::start(|_| {
            Reply::Respond(Answer::text(403, "<Error>Request has expired</Error>"))
        });
        let url = format!(
            "{}/video.mp4?X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-Signature=secret",
            server.url()
        );
        let (result, _) = download(&url);
        let err = result.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(
            err.message.starts_with("the output URL expired") && err.message.contains("days ago"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("secret"));
        // A URL that has not expired keeps the usual answer to a 403.
        let later = format!("{}/video.mp4?Expires=4102444800", server.url());
        let err = download(&later).0.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unauthorized);
    }

    #[test]
    fn expiry_is_read_from_the_common_signed_url_schemes() {
        let at = |url: &str| {
            url_expiry(&Url::parse(url).unwrap())
                .map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs())
        };
        // 2024-01-01T00:00:00Z is 1704067200.
        assert_eq!(
            at("https://s3/x?X-Amz-Date=20240101T000000Z&X-Amz-Expires=60"),
            Some(1_704_067_260)
        );
        assert_eq!(
            at("https://gcs/x?x-goog-date=20240101T000000Z&x-goog-expires=1"),
            Some(1_704_067_201)
        );
        assert_eq!(at("https://cf/x?Expires=1704067200"), Some(1_704_067_200));
        assert_eq!(
            at("https://blob/x?sv=1&se=2024-01-01T00%3A00%3A00Z&sig=s"),
            Some(1_704_067_200)
        );
        assert_eq!(at("https://cdn/x?exp=1704067200"), Some(1_704_067_200));
        assert_eq!(at("https://cdn/x?token=abc"), None);
        assert_eq!(at("https://blob/x?se=2024-01-01\u{e9}00%3A00%3A00Z"), None);
        assert_eq!(at("https://s3/x?X-Amz-Date=garbage&X-Amz-Expires=60"), None);
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("items 1-2/3"), None);
    }
}
