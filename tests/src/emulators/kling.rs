//! An in-process emulator of Kling's task API (`/v1/videos/text2video`,
//! `/v1/videos/image2video`, `/v1/images/generations`, each with `GET …/{task_id}`), written
//! from `shared/contracts/seed-services.md` section 18a.
//!
//! It is strict where the contract is precise:
//!
//! - every request needs `Authorization: Bearer <JWT>`: HS256, signed with the secret key,
//!   `iss` the access key, `nbf` passed and `exp` not; otherwise 401 with code 1000–1004
//!   (the decoded claims of every token are kept: [`KlingEmulator::claims`]);
//! - create bodies are checked: a known `model_name`, `mode` std or pro, `duration` the string
//!   `"5"` or `"10"`, `aspect_ratio` from the task's list, a prompt of at most 2500
//!   characters, `image` an http(s) URL or **raw** base64 (a `data:` prefix is refused, as
//!   Kling refuses it) of at most 10 MB, `n` 1 to 9. A failure is 400 with code 1201;
//! - every answer is the envelope `{code, message, request_id, data}`; tasks move
//!   `submitted` → `processing` → `succeed` with `task_result.videos` or `.images`, or
//!   `failed` with `task_status_msg`, one step per look (see [`tasks`]);
//! - result links carry an `Expires` the emulator honours (403 once it has passed).
//!
//! Faults: [`KlingEmulator::fail_next`] answers the next request with an HTTP status and a
//! Kling code (e.g. 429 with 1302, 429 with 1102, 500 with 5000).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::tasks::{self, Phase, Signing, Tasks};
use crate::http::{HttpServer, Reply, Request, Response};
use crate::media::{png, tiny_mp4};

const VIDEO_MODELS: &[&str] = &[
    "kling-v1",
    "kling-v1-5",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
];
const IMAGE_MODELS: &[&str] = &["kling-v1", "kling-v1-5", "kling-v2", "kling-v2-1"];
const VIDEO_RATIOS: &[&str] = &["16:9", "9:16", "1:1"];
const IMAGE_RATIOS: &[&str] = &["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9"];

/// The most bytes of base64 an inline image may have.
pub const MAX_IMAGE: usize = 10 * 1024 * 1024;

struct State {
    access_key: String,
    secret_key: String,
    faults: Mutex<VecDeque<(u16, i64, String)>>,
    tasks: Tasks,
    kinds: Mutex<HashMap<String, (String, u32)>>,
    claims: Mutex<Vec<Value>>,
    video: Vec<u8>,
    image: Vec<u8>,
    base: Mutex<String>,
}

/// A running emulator; stops when dropped.
pub struct KlingEmulator {
    server: HttpServer,
    state: Arc<State>,
}

impl KlingEmulator {
    /// Starts an emulator that accepts tokens of `access_key` signed with `secret_key`.
    pub fn start(access_key: &str, secret_key: &str) -> KlingEmulator {
        let state = Arc::new(State {
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            faults: Mutex::new(VecDeque::new()),
            tasks: Tasks::new("kl"),
            kinds: Mutex::new(HashMap::new()),
            claims: Mutex::new(Vec::new()),
            video: tiny_mp4(1),
            image: png(16, 16, [30, 120, 200]),
            base: Mutex::new(String::new()),
        });
        let handler_state = Arc::clone(&state);
        let server = HttpServer::start(move |req| handle(&handler_state, req));
        *lock(&state.base) = server.url();
        KlingEmulator { server, state }
    }

    /// Returns the base URL to use in place of Kling's host.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Returns every request received, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Returns the create requests, in order.
    pub fn creates(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }

    /// Returns the JSON bodies of the create requests, in order.
    pub fn create_bodies(&self) -> Vec<Value> {
        self.creates()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    /// Returns the claims of every token whose signature checked, in order.
    pub fn claims(&self) -> Vec<Value> {
        lock(&self.state.claims).clone()
    }

    /// Returns the tasks, to script them.
    pub fn tasks(&self) -> &Tasks {
        &self.state.tasks
    }

    /// Returns the MP4 served as every video result.
    pub fn video(&self) -> &[u8] {
        &self.state.video
    }

    /// Answers the next API request with HTTP `status` and Kling `code`. Faults queue up.
    pub fn fail_next(&self, status: u16, code: i64, message: &str) {
        lock(&self.state.faults).push_back((status, code, message.to_string()));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn answer(status: u16, code: i64, message: &str, data: Value) -> Reply {
    let mut body = json!({
        "code": code,
        "message": message,
        "request_id": format!("req-{}", tasks::now()),
    });
    if !data.is_null() {
        body["data"] = data;
    }
    Reply::Respond(Response::json(status, &body))
}

fn handle(state: &State, req: &Request) -> Reply {
    if tasks::is_result(req) {
        return if req.path.contains(".png") {
            tasks::serve_result(req, &state.image, "image/png")
        } else {
            tasks::serve_result(req, &state.video, "video/mp4")
        };
    }
    if let Some((status, code, message)) = lock(&state.faults).pop_front() {
        return answer(status, code, &message, Value::Null);
    }
    if let Err((code, message)) = authenticate(state, req) {
        return answer(401, code, message, Value::Null);
    }
    let path = req.path.split('?').next().unwrap_or_default();
    let kinds = [
        ("/v1/videos/text2video", "text2video"),
        ("/v1/videos/image2video", "image2video"),
        ("/v1/images/generations", "images"),
    ];
    for (prefix, kind) in kinds {
        if req.method == "POST" && path == prefix {
            return create(state, req, kind);
        }
        if req.method == "GET"
            && let Some(id) = path.strip_prefix(prefix).and_then(|p| p.strip_prefix('/'))
        {
            return look(state, kind, id);
        }
    }
    answer(404, 1203, "resource not found", Value::Null)
}

/// Checks the bearer JWT; the error is Kling's code and message.
fn authenticate(state: &State, req: &Request) -> Result<(), (i64, &'static str)> {
    let token = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or((1001, "Authorization is empty"))?;
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err((1002, "Authorization is invalid"));
    };
    let decode = |part: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
    };
    let header = decode(header).ok_or((1002, "Authorization is invalid"))?;
    if header["alg"] != "HS256" {
        return Err((1002, "Authorization is invalid"));
    }
    let signed = &token[..token.len() - signature.len() - 1];
    let expected =
        URL_SAFE_NO_PAD.encode(hmac_sha256(state.secret_key.as_bytes(), signed.as_bytes()));
    if signature != expected {
        return Err((1000, "Authorization failed: signature mismatch"));
    }
    let claims = decode(claims).ok_or((1002, "Authorization is invalid"))?;
    if claims["iss"] != state.access_key.as_str() {
        return Err((1000, "Authorization failed: unknown access key"));
    }
    let now = tasks::now();
    if claims["nbf"].as_u64().is_none_or(|nbf| nbf > now) {
        return Err((1003, "Authorization is not yet valid"));
    }
    if claims["exp"].as_u64().is_none_or(|exp| exp <= now) {
        return Err((1004, "Authorization has expired"));
    }
    lock(&state.claims).push(claims);
    Ok(())
}

/// HMAC-SHA256 (RFC 2104), written out so the emulator checks tokens independently of the
/// adapter's own signing code.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let digest = |bytes: &[u8]| -> [u8; 32] { Sha256::digest(bytes).into() };
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let mut inner = pad(0x36);
    inner.extend_from_slice(message);
    let mut outer = pad(0x5c);
    outer.extend_from_slice(&digest(&inner));
    digest(&outer)
}

fn create(state: &State, req: &Request, kind: &str) -> Reply {
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(body) => body,
        Err(_) => return answer(400, 1200, "request body is not valid JSON", Value::Null),
    };
    let count = match check(&body, kind) {
        Ok(count) => count,
        Err(message) => return answer(400, 1201, &message, Value::Null),
    };
    let id = state.tasks.create();
    lock(&state.kinds).insert(id.clone(), (kind.to_string(), count));
    answer(
        200,
        0,
        "SUCCEED",
        json!({"task_id": id, "task_status": "submitted", "created_at": 1_764_500_000_000u64}),
    )
}

/// Checks a create body; returns how many results the task makes.
fn check(body: &Value, kind: &str) -> Result<u32, String> {
    let models = if kind == "images" {
        IMAGE_MODELS
    } else {
        VIDEO_MODELS
    };
    let model = body["model_name"].as_str().unwrap_or("kling-v1");
    if !models.contains(&model) {
        return Err(format!("model_name {model} is not supported"));
    }
    match body.get("prompt").map(Value::as_str) {
        Some(Some(p)) if p.chars().count() > 2500 => return Err("prompt is too long".into()),
        Some(Some(_)) => {}
        Some(None) => return Err("prompt must be a string".into()),
        None if kind != "image2video" => return Err("prompt is required".into()),
        None => {}
    }
    let ratios = if kind == "images" {
        IMAGE_RATIOS
    } else {
        VIDEO_RATIOS
    };
    if let Some(ratio) = body.get("aspect_ratio")
        && !ratio.as_str().is_some_and(|r| ratios.contains(&r))
    {
        return Err(format!("aspect_ratio {ratio} is not supported"));
    }
    if kind == "images" {
        let n = body.get("n").map_or(Some(1), Value::as_u64);
        return match n {
            Some(n @ 1..=9) => Ok(n as u32),
            _ => Err("n must be 1 to 9".into()),
        };
    }
    if let Some(mode) = body.get("mode")
        && !matches!(mode.as_str(), Some("std" | "pro"))
    {
        return Err(format!("mode {mode} is not supported"));
    }
    if let Some(duration) = body.get("duration")
        && !matches!(duration.as_str(), Some("5" | "10"))
    {
        return Err(format!("duration must be \"5\" or \"10\", not {duration}"));
    }
    if let Some(cfg) = body.get("cfg_scale")
        && !cfg.as_f64().is_some_and(|c| (0.0..=1.0).contains(&c))
    {
        return Err("cfg_scale must be 0 to 1".into());
    }
    if kind == "image2video" {
        let image = body["image"].as_str().ok_or("image is required")?;
        check_image(image)?;
        if let Some(tail) = body.get("image_tail") {
            check_image(tail.as_str().ok_or("image_tail must be a string")?)?;
        }
    }
    Ok(1)
}

fn check_image(image: &str) -> Result<(), String> {
    if image.starts_with("https://") || image.starts_with("http://") {
        return Ok(());
    }
    if image.starts_with("data:") {
        return Err("image must be a URL or base64 without a data: prefix".into());
    }
    if image.len() > MAX_IMAGE {
        return Err("image must be at most 10MB".into());
    }
    STANDARD
        .decode(image)
        .map(drop)
        .map_err(|_| "image is not valid base64".into())
}

fn look(state: &State, kind: &str, id: &str) -> Reply {
    let known = lock(&state.kinds).get(id).cloned();
    let Some((created_as, count)) = known.filter(|(k, _)| k == kind) else {
        return answer(404, 1203, "task not found", Value::Null);
    };
    let Some(phase) = state.tasks.look(id) else {
        return answer(404, 1203, "task not found", Value::Null);
    };
    let mut data = json!({"task_id": id, "created_at": 1_764_500_000_000u64});
    match phase {
        Phase::Pending | Phase::Throttled => data["task_status"] = json!("submitted"),
        Phase::Running(_) => data["task_status"] = json!("processing"),
        Phase::Succeeded { expires } => {
            data["task_status"] = json!("succeed");
            let base = lock(&state.base).clone();
            data["task_result"] = if created_as == "images" {
                let images: Vec<Value> = (0..count)
                    .map(|i| {
                        let name = format!("{id}-{i}");
                        json!({"index": i, "url": tasks::result_link(&base, &name, "png", expires, Signing::Expires)})
                    })
                    .collect();
                json!({ "images": images })
            } else {
                let url = tasks::result_link(&base, id, "mp4", expires, Signing::Expires);
                json!({"videos": [{"id": format!("{id}-v"), "url": url, "duration": "5.1"}]})
            };
        }
        Phase::Failed { message, .. } => {
            data["task_status"] = json!("failed");
            data["task_status_msg"] = json!(message);
        }
        Phase::Cancelled => {
            data["task_status"] = json!("failed");
            data["task_status_msg"] = json!("task cancelled");
        }
    }
    answer(200, 0, "SUCCEED", data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::request;

    fn token(claims: &Value, secret: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(secret.as_bytes(), signed.as_bytes()));
        format!("{signed}.{signature}")
    }

    fn create(emulator: &KlingEmulator, token: &str) -> (u16, Value) {
        let auth = format!("Bearer {token}");
        let url = format!("{}/v1/videos/text2video", emulator.url());
        let body = json!({"prompt": "rain", "duration": "5"}).to_string();
        let reply = request(
            "POST",
            &url,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .unwrap();
        (reply.status, reply.json())
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tokens_are_checked_for_signature_issuer_and_time() {
        let emulator = KlingEmulator::start("ak", "sk");
        let now = tasks::now();
        let good = json!({"iss": "ak", "exp": now + 1800, "nbf": now - 5});
        let (status, body) = create(&emulator, &token(&good, "sk"));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["code"], 0);
        assert_eq!(body["data"]["task_status"], "submitted");
        for (claims, secret, code) in [
            (good.clone(), "wrong", 1000),
            (
                json!({"iss": "other", "exp": now + 1800, "nbf": now - 5}),
                "sk",
                1000,
            ),
            (
                json!({"iss": "ak", "exp": now + 1800, "nbf": now + 600}),
                "sk",
                1003,
            ),
            (
                json!({"iss": "ak", "exp": now - 1, "nbf": now - 5}),
                "sk",
                1004,
            ),
        ] {
            let (status, body) = create(&emulator, &token(&claims, secret));
            assert_eq!(
                (status, body["code"].as_i64()),
                (401, Some(code)),
                "{claims}"
            );
        }
        assert_eq!(create(&emulator, "not-a-jwt").1["code"], 1002);
        assert_eq!(emulator.claims(), [good]);
    }

    #[test]
    fn data_uris_and_wrong_durations_are_refused() {
        assert!(check(&json!({"prompt": "x", "duration": 5}), "text2video").is_err());
        assert!(check(&json!({"prompt": "x", "duration": "7"}), "text2video").is_err());
        let data_uri = json!({"image": "data:image/png;base64,iVBORw0KGgo="});
        assert!(
            check(&data_uri, "image2video")
                .unwrap_err()
                .contains("data: prefix")
        );
        assert!(check(&json!({"image": "iVBORw0KGgo="}), "image2video").is_ok());
        assert_eq!(check(&json!({"prompt": "x", "n": 4}), "images"), Ok(4));
        assert!(check(&json!({"prompt": "x", "n": 10}), "images").is_err());
    }
}
