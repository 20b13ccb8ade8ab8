//! Kling's wire shapes and rules: hosts, the per-request HS256 JWT, the create bodies of its
//! three task kinds, the envelope every answer comes in, and what its `code` values mean.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use launcher_sdk::http::Verdict;
use launcher_sdk::serde_json::{Value, json};
use launcher_sdk::{ErrorKind, PluginError};
use serde::Deserialize;
use sha2::Sha256;

/// The global host (keys of the global platform).
pub const GLOBAL_URL: &str = "https://api-singapore.klingai.com";
/// The mainland China host (keys of the CN platform).
pub const CN_URL: &str = "https://api-beijing.klingai.com";

/// How long a token is valid, in seconds, as Kling's examples sign them.
pub const TOKEN_LIFETIME: u64 = 1800;
/// How far back a token's `nbf` is set, for clocks that run a little ahead of Kling's.
pub const CLOCK_SKEW: u64 = 5;

/// Video models; the first is the default.
pub const VIDEO_MODELS: &[&str] = &[
    "kling-v1-6",
    "kling-v1",
    "kling-v1-5",
    "kling-v2-master",
    "kling-v2-1",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
];
/// Image models; the first is the default.
pub const IMAGE_MODELS: &[&str] = &["kling-v2", "kling-v1", "kling-v1-5", "kling-v2-1"];
/// Video aspect ratios.
pub const VIDEO_RATIOS: &[&str] = &["16:9", "9:16", "1:1"];
/// Image aspect ratios.
pub const IMAGE_RATIOS: &[&str] = &["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9"];
/// Video durations in seconds.
pub const DURATIONS: &[u32] = &[5, 10];
/// The largest image sent inline (as base64), in encoded bytes.
pub const MAX_INLINE_IMAGE: u64 = 10 * 1024 * 1024;

/// Returns the `Authorization` token for `access_key` signed with `secret_key` at `now`
/// (seconds since the epoch): an HS256 JWT with `iss`, `exp` and `nbf`.
pub fn token(access_key: &str, secret_key: &str, now: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({
        "iss": access_key,
        "exp": now + TOKEN_LIFETIME,
        "nbf": now.saturating_sub(CLOCK_SKEW),
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{claims}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(signed.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{signature}")
}

/// Returns the current time in seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The kind of a task, which names its create and poll paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/v1/videos/text2video`.
    TextToVideo,
    /// `/v1/videos/image2video`.
    ImageToVideo,
    /// `/v1/images/generations`.
    Images,
}

impl Kind {
    /// Returns the kind of `task`, the launcher's name for it.
    pub fn of_task(task: &str) -> Option<Kind> {
        match task {
            "txt2vid" => Some(Kind::TextToVideo),
            "img2vid" => Some(Kind::ImageToVideo),
            "txt2img" => Some(Kind::Images),
            _ => None,
        }
    }

    /// Returns the create path; a task is polled at it plus `/{task_id}`.
    pub fn path(self) -> &'static str {
        match self {
            Kind::TextToVideo => "/v1/videos/text2video",
            Kind::ImageToVideo => "/v1/videos/image2video",
            Kind::Images => "/v1/images/generations",
        }
    }

    /// Returns the name kept in the checkpoint.
    pub fn name(self) -> &'static str {
        match self {
            Kind::TextToVideo => "text2video",
            Kind::ImageToVideo => "image2video",
            Kind::Images => "images",
        }
    }

    /// Returns the kind a checkpoint names.
    pub fn named(name: &str) -> Option<Kind> {
        [Kind::TextToVideo, Kind::ImageToVideo, Kind::Images]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// Checks that `value` is one of `allowed` for `what`.
pub fn one_of<'a>(what: &str, value: &'a str, allowed: &[&str]) -> Result<&'a str, PluginError> {
    if allowed.contains(&value) {
        Ok(value)
    } else {
        Err(
            PluginError::invalid_input(format!("Kling has no {what} `{value}`"))
                .with_hint(format!("use one of {}", allowed.join(", "))),
        )
    }
}

/// Returns the duration to send, as Kling writes it (`"5"`).
pub fn duration(seconds: Option<f64>) -> Result<u32, PluginError> {
    match seconds {
        None => Ok(DURATIONS[0]),
        Some(s) if s == 5.0 || s == 10.0 => Ok(s as u32),
        Some(s) => Err(PluginError::invalid_input(format!(
            "Kling renders 5 or 10 seconds, not {s}"
        ))
        .with_hint("use --duration 5 or --duration 10")),
    }
}

/// The envelope of every answer.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// 0 for success.
    #[serde(default)]
    pub code: i64,
    /// What happened, in Kling's words.
    #[serde(default)]
    pub message: String,
    /// The request's id, for Kling's support.
    #[serde(default)]
    pub request_id: String,
    /// The task.
    #[serde(default)]
    pub data: Option<Task>,
}

/// A task as create and poll return it.
#[derive(Debug, Deserialize)]
pub struct Task {
    /// Its id.
    pub task_id: String,
    /// `submitted`, `processing`, `succeed` or `failed`.
    #[serde(default)]
    pub task_status: String,
    /// Why it failed.
    #[serde(default)]
    pub task_status_msg: String,
    /// The results of a task that succeeded.
    #[serde(default)]
    pub task_result: Option<TaskResult>,
}

/// The results of a task.
#[derive(Debug, Default, Deserialize)]
pub struct TaskResult {
    /// Videos, for video tasks.
    #[serde(default)]
    pub videos: Vec<Link>,
    /// Images, for image tasks.
    #[serde(default)]
    pub images: Vec<Link>,
}

/// One result file.
#[derive(Debug, Deserialize)]
pub struct Link {
    /// Where to fetch it.
    pub url: String,
}

/// Returns the error of a Kling `code` (non-zero), with the message Kling gave.
///
/// 1000–1004 are authentication failures, 1100–1103 problems with the account (suspended,
/// in arrears, resource pack used up, no access), 1200–1203 bad parameters, 1300 and 1301
/// content policy, 1302 and 1303 rate and concurrency limits (refused before any work, so
/// safe to resend), 1304 an IP allow list, 5000–5002 Kling's own failures.
pub fn error(code: i64, message: &str) -> (PluginError, bool) {
    let said = format!("Kling answered code {code}: {message}");
    let resend = matches!(code, 1302 | 1303);
    let err = match code {
        1000..=1004 => PluginError::unauthorized(said).with_hint(
            "check KLING_ACCESS_KEY and KLING_SECRET_KEY; keys of the CN platform work only \
             with KLING_REGION=cn, global keys only with the global host",
        ),
        1100..=1103 | 1304 => PluginError::unauthorized(said)
            .with_hint("the Kling account cannot run this; check its balance, resource packs and access in the Kling console"),
        1200..=1299 => PluginError::invalid_input(said),
        1300 | 1301 => PluginError::invalid_input(said)
            .with_hint("Kling's content policy refused it; change the prompt or image"),
        1302 | 1303 => PluginError::rate_limited(said, None),
        5000..=5999 => PluginError::unavailable(said),
        _ => PluginError::new(ErrorKind::Unavailable, said),
    };
    (err, resend)
}

/// Reads an answer that is not 2xx: Kling's `code` decides.
pub fn read_error(body: Option<Value>) -> Verdict {
    let Some(body) = body else {
        return Verdict::Default;
    };
    let Some(code) = body.get("code").and_then(Value::as_i64) else {
        return Verdict::Default;
    };
    let message = body.get("message").and_then(Value::as_str).unwrap_or("");
    match error(code, message) {
        (_, true) => Verdict::Retry(None),
        (_, false) if (5000..=5999).contains(&code) => Verdict::Default,
        (err, false) => Verdict::Fail(err),
    }
}

/// Returns the error of a task that failed.
pub fn failed(task: &Task) -> PluginError {
    let why = if task.task_status_msg.trim().is_empty() {
        "no reason given"
    } else {
        task.task_status_msg.as_str()
    };
    let lower = why.to_lowercase();
    let message = format!("the Kling task failed: {why}");
    if ["risk", "sensitive", "safety", "policy"]
        .iter()
        .any(|w| lower.contains(w))
    {
        PluginError::invalid_input(message)
            .with_hint("Kling's content review refused it; change the prompt or image")
    } else {
        PluginError::unavailable(message)
            .with_hint("submitting the job again may work (it is charged again)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_an_hs256_jwt_of_iss_exp_and_nbf() {
        let token = token("ak-1", "sk-secret", 1_800_000_000);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: Value =
            launcher_sdk::serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap())
                .unwrap();
        assert_eq!(
            claims,
            json!({"iss": "ak-1", "exp": 1_800_001_800u64, "nbf": 1_799_999_995u64})
        );
        let header: Value =
            launcher_sdk::serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap())
                .unwrap();
        assert_eq!(header["alg"], "HS256");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"sk-secret").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .expect("signed with the secret key");
    }

    #[test]
    fn codes_map_to_kinds() {
        let kind = |code| error(code, "x").0.kind;
        assert_eq!(kind(1001), ErrorKind::Unauthorized);
        assert_eq!(kind(1102), ErrorKind::Unauthorized);
        assert_eq!(kind(1201), ErrorKind::InvalidInput);
        assert_eq!(kind(1301), ErrorKind::InvalidInput);
        assert_eq!(kind(1302), ErrorKind::RateLimited);
        assert_eq!(kind(5000), ErrorKind::Unavailable);
        assert!(error(1303, "x").1);
        assert!(!error(1102, "x").1);
        assert_eq!(
            read_error(Some(json!({"code": 1302}))),
            Verdict::Retry(None)
        );
        assert_eq!(read_error(Some(json!({"code": 5001}))), Verdict::Default);
        assert_eq!(read_error(None), Verdict::Default);
    }

    #[test]
    fn durations_are_five_or_ten() {
        assert_eq!(duration(None).unwrap(), 5);
        assert_eq!(duration(Some(10.0)).unwrap(), 10);
        assert!(duration(Some(7.0)).is_err());
    }
}
