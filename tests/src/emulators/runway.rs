//! An in-process emulator of Runway's developer API (`POST /v1/image_to_video`,
//! `POST /v1/text_to_video`, `GET` and `DELETE /v1/tasks/{id}`), written from
//! `shared/contracts/services.md` sections 5 and 10.
//!
//! It is strict where the contract is precise:
//!
//! - every request needs `Authorization: Bearer <key>` (401 otherwise) and
//!   `X-Runway-Version: 2024-11-06` (400 otherwise);
//! - create bodies are checked per model: a known model, one of its ratios and durations,
//!   `promptText` of at most 1000 UTF-16 units (required for `gen4.5`), `seed` in
//!   0..4294967295, `promptImage` an https URL or a `data:image/(jpeg|png|webp);base64,` URI
//!   of at most 5 MB whose base64 decodes; text to video takes only Veo models. A failure is
//!   400 `{"error": "…"}`;
//! - tasks move PENDING → (THROTTLED) → RUNNING with `progress` → SUCCEEDED with an `output`
//!   link, or FAILED with `failure` and `failureCode`, one step per poll (see
//!   [`tasks`]); a deleted task is gone (404);
//! - result links carry a JWT whose `exp` the emulator honours (403 once it has passed) and
//!   serve a real MP4 made by ffmpeg.
//!
//! Faults: [`RunwayEmulator::fail_next`] answers the next request with an HTTP status (429,
//! 502–504), [`Tasks::script_next`] (through [`RunwayEmulator::tasks`]) scripts throttling and
//! failure codes, [`Tasks::link_lifetime`] expires links. Every request is recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::tasks::{self, Phase, Signing, Tasks};
use crate::http::{HttpServer, Reply, Request, Response};
use crate::media::tiny_mp4;

/// The API version the emulator requires.
pub const API_VERSION: &str = "2024-11-06";

/// The most bytes a `data:` URI image may have.
pub const MAX_DATA_URI: usize = 5 * 1024 * 1024;

const GEN4_RATIOS: &[&str] = &[
    "1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672",
];
const VEO_RATIOS: &[&str] = &["1280:720", "720:1280", "1080:1920", "1920:1080"];

/// A model's id, ratios, durations, whether it does text to video, and whether it needs a
/// prompt.
type ModelRule = (
    &'static str,
    &'static [&'static str],
    &'static [u64],
    bool,
    bool,
);

const MODELS: &[ModelRule] = &[
    (
        "gen4_turbo",
        GEN4_RATIOS,
        &[2, 3, 4, 5, 6, 7, 8, 9, 10],
        false,
        false,
    ),
    (
        "gen4.5",
        GEN4_RATIOS,
        &[2, 3, 4, 5, 6, 7, 8, 9, 10],
        false,
        true,
    ),
    ("veo3", VEO_RATIOS, &[8], true, false),
    ("veo3.1", VEO_RATIOS, &[4, 6, 8], true, false),
    ("veo3.1_fast", VEO_RATIOS, &[4, 6, 8], true, false),
];

struct State {
    key: String,
    faults: Mutex<VecDeque<u16>>,
    tasks: Tasks,
    video: Vec<u8>,
    base: Mutex<String>,
}

/// A running emulator; stops when dropped.
pub struct RunwayEmulator {
    server: HttpServer,
    state: Arc<State>,
}

impl RunwayEmulator {
    /// Starts an emulator that accepts API key `key` and renders 1-second videos.
    pub fn start(key: &str) -> RunwayEmulator {
        let state = Arc::new(State {
            key: key.to_string(),
            faults: Mutex::new(VecDeque::new()),
            tasks: Tasks::new("rw"),
            video: tiny_mp4(1),
            base: Mutex::new(String::new()),
        });
        let handler_state = Arc::clone(&state);
        let server = HttpServer::start(move |req| handle(&handler_state, req));
        *lock(&state.base) = server.url();
        RunwayEmulator { server, state }
    }

    /// Returns the base URL to use in place of `https://api.dev.runwayml.com`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Returns every request received, in order, faulted ones included.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Returns the create requests received (both create paths), in order.
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

    /// Returns the ids of the tasks deleted with `DELETE /v1/tasks/{id}`, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.state.tasks.cancelled()
    }

    /// Returns the tasks, to script them and see how they were polled.
    pub fn tasks(&self) -> &Tasks {
        &self.state.tasks
    }

    /// Returns the MP4 the emulator serves as every result.
    pub fn video(&self) -> &[u8] {
        &self.state.video
    }

    /// Answers the next request with HTTP `status` and an `{"error"}` body. Faults queue up.
    pub fn fail_next(&self, status: u16) {
        lock(&self.state.faults).push_back(status);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn error(status: u16, message: &str) -> Reply {
    Reply::Respond(Response::json(status, &json!({ "error": message })))
}

fn handle(state: &State, req: &Request) -> Reply {
    if tasks::is_result(req) {
        return tasks::serve_result(req, &state.video, "video/mp4");
    }
    if let Some(status) = lock(&state.faults).pop_front() {
        let reply = Response::json(
            status,
            &json!({ "error": format!("emulated HTTP {status}") }),
        );
        return Reply::Respond(if status == 429 {
            reply.header("Retry-After", "0")
        } else {
            reply
        });
    }
    let expected = format!("Bearer {}", state.key);
    if req.header("authorization") != Some(expected.as_str()) {
        return error(401, "Invalid API key");
    }
    match req.header("x-runway-version") {
        Some(API_VERSION) => {}
        Some(other) => return error(400, &format!("Invalid API version: {other}")),
        None => return error(400, "The X-Runway-Version header is required"),
    }
    let path = req.path.split('?').next().unwrap_or_default();
    match (req.method.as_str(), path) {
        ("POST", "/v1/image_to_video") => create(state, req, true),
        ("POST", "/v1/text_to_video") => create(state, req, false),
        ("GET", p) if p.starts_with("/v1/tasks/") => look(state, &p["/v1/tasks/".len()..]),
        ("DELETE", p) if p.starts_with("/v1/tasks/") => {
            if state.tasks.cancel(&p["/v1/tasks/".len()..], true) {
                Reply::Respond(Response::new(204))
            } else {
                error(404, "Task not found")
            }
        }
        _ => error(404, "Not found"),
    }
}

fn create(state: &State, req: &Request, from_image: bool) -> Reply {
    if !req
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return error(400, "Content-Type must be application/json");
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(body) => body,
        Err(_) => return error(400, "Invalid JSON body"),
    };
    match check(&body, from_image) {
        Ok(()) => Reply::Respond(Response::json(200, &json!({ "id": state.tasks.create() }))),
        Err(message) => error(400, &message),
    }
}

fn check(body: &Value, from_image: bool) -> Result<(), String> {
    let model = body["model"].as_str().ok_or("model is required")?;
    let (_, ratios, durations, text, needs_prompt) = MODELS
        .iter()
        .find(|m| m.0 == model)
        .ok_or_else(|| format!("Invalid model: {model}"))?;
    if !from_image && !text {
        return Err(format!("Model {model} does not support text to video"));
    }
    let ratio = body["ratio"].as_str().ok_or("ratio is required")?;
    if !ratios.contains(&ratio) {
        return Err(format!("Invalid ratio {ratio} for model {model}"));
    }
    if let Some(duration) = body.get("duration") {
        let d = duration.as_u64().ok_or("duration must be an integer")?;
        if !durations.contains(&d) {
            return Err(format!("Invalid duration {d} for model {model}"));
        }
    }
    match body.get("promptText") {
        Some(Value::String(text)) if text.encode_utf16().count() > 1000 => {
            return Err("promptText must be at most 1000 characters".into());
        }
        Some(Value::String(_)) => {}
        Some(_) => return Err("promptText must be a string".into()),
        None if *needs_prompt || !from_image => {
            return Err(format!("promptText is required for model {model}"));
        }
        None => {}
    }
    if let Some(seed) = body.get("seed") {
        seed.as_u64()
            .filter(|s| *s <= 4_294_967_295)
            .ok_or("seed must be an integer from 0 to 4294967295")?;
    }
    if from_image {
        let image = body["promptImage"]
            .as_str()
            .ok_or("promptImage is required")?;
        check_image(image)?;
    } else if body.get("promptImage").is_some() {
        return Err("promptImage is not accepted for text to video".into());
    }
    Ok(())
}

fn check_image(image: &str) -> Result<(), String> {
    if image.starts_with("https://") {
        return if image.len() <= 2048 {
            Ok(())
        } else {
            Err("promptImage URLs must be at most 2048 characters".into())
        };
    }
    let rest = image
        .strip_prefix("data:")
        .ok_or("promptImage must be an HTTPS URL or a data URI")?;
    if image.len() > MAX_DATA_URI {
        return Err("promptImage data URIs must be at most 5MB".into());
    }
    let (media_type, data) = rest
        .split_once(";base64,")
        .ok_or("promptImage data URIs must be base64")?;
    if !matches!(media_type, "image/jpeg" | "image/png" | "image/webp") {
        return Err(format!("Unsupported image type {media_type}"));
    }
    STANDARD
        .decode(data)
        .map(drop)
        .map_err(|_| "promptImage data URI is not valid base64".into())
}

fn look(state: &State, id: &str) -> Reply {
    let Some(phase) = state.tasks.look(id) else {
        return error(404, "Task not found");
    };
    let mut task = json!({ "id": id, "createdAt": "2026-11-30T12:00:00.000Z" });
    match phase {
        Phase::Pending => task["status"] = json!("PENDING"),
        Phase::Throttled => task["status"] = json!("THROTTLED"),
        Phase::Running(progress) => {
            task["status"] = json!("RUNNING");
            task["progress"] = json!(progress);
        }
        Phase::Succeeded { expires } => {
            task["status"] = json!("SUCCEEDED");
            let base = lock(&state.base).clone();
            task["output"] = json!([tasks::result_link(&base, id, "mp4", expires, Signing::Jwt)]);
        }
        Phase::Failed { code, message } => {
            task["status"] = json!("FAILED");
            task["failure"] = json!(message);
            task["failureCode"] = json!(code);
        }
        Phase::Cancelled => task["status"] = json!("CANCELLED"),
    }
    Reply::Respond(Response::json(200, &task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::request;

    const KEY: &str = "runway-test-key";

    fn post(emulator: &RunwayEmulator, version: Option<&str>, body: &Value) -> (u16, Value) {
        let auth = format!("Bearer {KEY}");
        let mut headers = vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        if let Some(version) = version {
            headers.push(("X-Runway-Version", version));
        }
        let url = format!("{}/v1/image_to_video", emulator.url());
        let reply = request("POST", &url, &headers, body.to_string().as_bytes()).unwrap();
        (reply.status, reply.json())
    }

    #[test]
    fn the_version_header_and_each_models_rules_are_enforced() {
        let emulator = RunwayEmulator::start(KEY);
        let good = json!({"model": "gen4_turbo", "promptImage": "https://example.com/a.png",
                          "ratio": "1280:720", "duration": 5});
        assert_eq!(post(&emulator, None, &good).0, 400);
        assert_eq!(post(&emulator, Some("2023-01-01"), &good).0, 400);
        let (status, body) = post(&emulator, Some(API_VERSION), &good);
        assert_eq!(status, 200, "{body}");
        assert!(body["id"].as_str().is_some());
        for (change, says) in [
            (json!({"ratio": "1920:1080"}), "Invalid ratio"),
            (json!({"duration": 11}), "Invalid duration"),
            (json!({"model": "veo9"}), "Invalid model"),
            (
                json!({"promptImage": "http://example.com/a.png"}),
                "HTTPS URL or a data URI",
            ),
            (
                json!({"promptImage": "data:image/gif;base64,R0lG"}),
                "Unsupported image type",
            ),
            (json!({"promptText": "字".repeat(1001)}), "at most 1000"),
            (json!({"seed": 4_294_967_296u64}), "seed"),
        ] {
            let mut body = good.clone();
            for (k, v) in change.as_object().unwrap() {
                body[k] = v.clone();
            }
            let (status, answer) = post(&emulator, Some(API_VERSION), &body);
            assert_eq!(status, 400, "{change}");
            assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
        }
        let mut big = good.clone();
        big["promptImage"] = json!(format!(
            "data:image/png;base64,{}",
            "A".repeat(MAX_DATA_URI)
        ));
        let (status, answer) = post(&emulator, Some(API_VERSION), &big);
        assert_eq!(status, 400);
        assert!(
            answer["error"].as_str().unwrap().contains("5MB"),
            "{answer}"
        );
    }

    #[test]
    fn a_task_moves_through_its_states_and_a_deleted_one_is_gone() {
        let emulator = RunwayEmulator::start(KEY);
        emulator.tasks().script_next(tasks::Script {
            throttled: 1,
            running: 1,
            ..tasks::Script::default()
        });
        let good = json!({"model": "veo3", "promptText": "x", "ratio": "1280:720", "duration": 8});
        let auth = format!("Bearer {KEY}");
        let headers = [
            ("Authorization", auth.as_str()),
            ("X-Runway-Version", API_VERSION),
            ("Content-Type", "application/json"),
        ];
        let url = format!("{}/v1/text_to_video", emulator.url());
        let id = request("POST", &url, &headers, good.to_string().as_bytes())
            .unwrap()
            .json()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let task_url = format!("{}/v1/tasks/{id}", emulator.url());
        let look = || request("GET", &task_url, &headers, b"").unwrap().json();
        assert_eq!(look()["status"], "PENDING");
        assert_eq!(look()["status"], "THROTTLED");
        let running = look();
        assert_eq!(running["status"], "RUNNING");
        assert_eq!(running["progress"], 0.5);
        let done = look();
        assert_eq!(done["status"], "SUCCEEDED");
        let link = done["output"][0].as_str().unwrap();
        let video = request("GET", link, &[], b"").unwrap();
        assert_eq!(video.status, 200);
        assert_eq!(video.body, emulator.video());
        assert_eq!(
            request("DELETE", &task_url, &headers, b"").unwrap().status,
            204
        );
        assert_eq!(
            request("GET", &task_url, &headers, b"").unwrap().status,
            404
        );
        assert_eq!(emulator.deleted(), [id]);
    }
}
