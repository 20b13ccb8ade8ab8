//! An in-process emulator of DeepBrain AI Studios' simple-video API, written from
//! `shared/contracts/seed-services.md` section 13.
//!
//! - **Auth:** the raw key in `Authorization`, with no scheme; anything else (a `Bearer`
//!   prefix included) gets 401 `{"success":false,"error":{...}}`.
//! - **Submit:** `POST /v3/simple/video {language, text, model, clothes}` answers
//!   `{success:true, data:{projectId}}`. A missing text, an unknown language, model or clothes
//!   id fails as the service fails: HTTP 200 with `success:false`.
//! - **Progress:** `GET /v3/editor/progress/{projectId}` answers `{success, data:{progress}}`;
//!   a fast-forwarded clock moves `progress` by [`STEP`] per look, never by real time, and at
//!   100 the answer carries `downloadUrl` (or `url`, the field DeepBrain's own sample code
//!   reads, after [`DeepBrainEmulator::answer_with_url_field`]). A project made to fail
//!   answers `success:false` mid-render.
//! - The same routes are served under `/api/odin`, as the service serves them.
//! - **Download:** the MP4 given at start, at an emulator URL signed as S3 signs links
//!   (`X-Amz-Date`, `X-Amz-Expires=3600`); after [`DeepBrainEmulator::expire_downloads`] links
//!   answer 403 and are dated two hours back, as an expired signed link is.
//!
//! Every request is recorded; [`DeepBrainEmulator::submitted`] returns the submit bodies.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::http::{HttpServer, Reply, Request, Response};

/// The presenter model ids the emulator knows, each with its clothes ids.
pub const MODELS: &[(&str, &[&str])] = &[
    ("M000045058", &["BG00002320", "BG00002321"]),
    ("M000004017", &["BG00006160"]),
];

/// The languages the emulator accepts.
pub const LANGUAGES: &[&str] = &["en", "ko", "zh", "ja", "es", "de", "fr"];

/// How far `progress` moves per look.
pub const STEP: u64 = 25;

struct Project {
    looks: u64,
    fails: Option<String>,
}

struct State {
    key: String,
    video: Vec<u8>,
    projects: Mutex<BTreeMap<String, Project>>,
    fail_next: Mutex<Option<String>>,
    url_field: Mutex<bool>,
    expired: Mutex<bool>,
    base: Mutex<String>,
}

/// A running emulator; stops when dropped.
pub struct DeepBrainEmulator {
    server: HttpServer,
    state: Arc<State>,
}

impl DeepBrainEmulator {
    /// Starts an emulator that accepts `key` and renders every project as `video` (an MP4).
    pub fn start(key: &str, video: Vec<u8>) -> DeepBrainEmulator {
        let state = Arc::new(State {
            key: key.to_string(),
            video,
            projects: Mutex::new(BTreeMap::new()),
            fail_next: Mutex::new(None),
            url_field: Mutex::new(false),
            expired: Mutex::new(false),
            base: Mutex::new(String::new()),
        });
        let handler_state = Arc::clone(&state);
        let server = HttpServer::start(move |req| handle(&handler_state, req));
        *lock(&state.base) = server.url();
        DeepBrainEmulator { server, state }
    }

    /// Returns the base URL to use in place of `https://app.aistudios.com/api/odin`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Returns every request received, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Returns the JSON bodies of the submit requests, in order.
    pub fn submitted(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/v3/simple/video"))
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    /// Returns how many progress requests were made.
    pub fn progress_looks(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path.contains("/v3/editor/progress/"))
            .count()
    }

    /// Makes the next project submitted fail mid-render with `message`.
    pub fn fail_next_project(&self, message: &str) {
        *lock(&self.state.fail_next) = Some(message.to_string());
    }

    /// Names the finished video's link `url` instead of `downloadUrl`.
    pub fn answer_with_url_field(&self) {
        *lock(&self.state.url_field) = true;
    }

    /// Makes download links answer 403, as signed links do once expired, and dates the links
    /// it hands out two hours back, so they say they expired an hour ago.
    pub fn expire_downloads(&self) {
        *lock(&self.state.expired) = true;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A refusal as the service sends one: HTTP 200, `success: false`.
fn refusal(code: &str, message: &str) -> Reply {
    Reply::Respond(Response::json(
        200,
        &json!({"success": false, "error": {"code": code, "message": message}}),
    ))
}

fn handle(state: &State, req: &Request) -> Reply {
    let path = req.path.split('?').next().unwrap_or_default();
    let path = path.strip_prefix("/api/odin").unwrap_or(path);
    if let Some(file) = path.strip_prefix("/download/") {
        let file = file.split('?').next().unwrap_or_default();
        return download(state, req, file);
    }
    if req.header("authorization") != Some(state.key.as_str()) {
        return Reply::Respond(Response::json(
            401,
            &json!({"success": false,
                    "error": {"code": "UNAUTHORIZED", "message": "invalid API key"}}),
        ));
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("POST", ["v3", "simple", "video"]) => submit(state, req),
        ("GET", ["v3", "editor", "progress", id]) => progress(state, id),
        _ => Reply::Respond(Response::json(404, &json!({"success": false}))),
    }
}

fn submit(state: &State, req: &Request) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return refusal("INVALID_BODY", "the body is not JSON");
    };
    let text = body["text"].as_str().unwrap_or_default();
    if text.trim().is_empty() {
        return refusal("INVALID_PARAMETER", "text is required");
    }
    let language = body["language"].as_str().unwrap_or_default();
    if !LANGUAGES.contains(&language) {
        return refusal(
            "INVALID_PARAMETER",
            &format!("unsupported language: {language}"),
        );
    }
    let model = body["model"].as_str().unwrap_or_default();
    let Some((_, clothes)) = MODELS.iter().find(|(m, _)| *m == model) else {
        return refusal("INVALID_MODEL", &format!("unknown model: {model}"));
    };
    let cloth = body["clothes"].as_str().unwrap_or_default();
    if !clothes.contains(&cloth) {
        return refusal(
            "INVALID_CLOTHES",
            &format!("model {model} has no clothes {cloth}"),
        );
    }
    let id = {
        let mut projects = lock(&state.projects);
        let id = format!("{:024x}", projects.len() + 0x6543_21ab);
        let fails = lock(&state.fail_next).take();
        projects.insert(id.clone(), Project { looks: 0, fails });
        id
    };
    Reply::Respond(Response::json(
        200,
        &json!({"success": true, "data": {"projectId": id}}),
    ))
}

fn progress(state: &State, id: &str) -> Reply {
    let (progress, fails) = {
        let mut projects = lock(&state.projects);
        let Some(project) = projects.get_mut(id) else {
            return refusal("NOT_FOUND", &format!("no project {id}"));
        };
        project.looks += 1;
        ((project.looks * STEP).min(100), project.fails.clone())
    };
    if let Some(message) = fails
        && progress >= 50
    {
        return refusal("RENDER_FAILED", &message);
    }
    let mut data = json!({"progress": progress});
    if progress == 100 {
        // Signed as S3 signs links: valid for an hour from when it was made.
        let link = format!(
            "{}/download/{id}.mp4?X-Amz-Date={}&X-Amz-Expires=3600",
            lock(&state.base),
            amz_date(if *lock(&state.expired) {
                SystemTime::now() - Duration::from_secs(2 * 3600)
            } else {
                SystemTime::now()
            })
        );
        let field = if *lock(&state.url_field) {
            "url"
        } else {
            "downloadUrl"
        };
        data[field] = Value::from(link);
    }
    Reply::Respond(Response::json(200, &json!({"success": true, "data": data})))
}

fn download(state: &State, req: &Request, file: &str) -> Reply {
    let made = req
        .path
        .split_once("X-Amz-Date=")
        .and_then(|(_, rest)| rest.get(..16))
        .unwrap_or_default()
        .to_string();
    if *lock(&state.expired) || made.is_empty() {
        return Reply::Respond(Response::text(403, "Request has expired"));
    }
    let id = file.trim_end_matches(".mp4");
    if !lock(&state.projects).contains_key(id) {
        return Reply::Respond(Response::text(404, "Not Found"));
    }
    Reply::Respond(
        Response::new(200)
            .header("Content-Type", "video/mp4")
            .body(state.video.clone()),
    )
}

/// Returns `time` as S3 writes `X-Amz-Date`: `20261130T235959Z`.
fn amz_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_dated_as_s3_dates_them() {
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_164_800 + 3_723);
        assert_eq!(amz_date(leap), "20240229T010203Z");
    }
}
