//! An in-process emulator of the AUTOMATIC1111 WebUI API (`shared/contracts/services.md` §3),
//! with a flavour for stable-diffusion.cpp's `sd-server`.
//!
//! It answers `txt2img` and `img2img` with real PNGs of the size asked for (one per
//! `batch_size × n_iter`), `info` as a JSON *string* with the seeds used, and `parameters`
//! echoing the request; `progress` moves while a slow generation runs and `interrupt` ends
//! it early; `sd-models` and `samplers` list what it has. It is strict: Basic auth when
//! configured (401 with `WWW-Authenticate: Basic`), FastAPI's 422 body for fields of the wrong
//! type, 404 "Sampler not found" for an unknown sampler, 404 everywhere when started without
//! `--api`, a scripted 500 out of memory, and JPEG answers in JPEG mode. It records requests.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::http::{HttpServer, Reply, Request, Response};

/// Which server it plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// AUTOMATIC1111 (and Forge): progress, interrupt, `info` as a JSON string.
    #[default]
    A1111,
    /// stable-diffusion.cpp's `sd-server`: no progress or interrupt, `info` is `""`, a missing
    /// prompt is 400 `{"error": "prompt required"}`, and its PNGs carry their own parameters.
    SdServer,
}

/// The checkpoints it has.
pub const CHECKPOINTS: [&str; 2] = [
    "v1-5-pruned-emaonly.safetensors [6ce0161689]",
    "dreamshaper_8.safetensors [879db523c3]",
];
/// The samplers it has.
pub const SAMPLERS: [&str; 3] = ["Euler a", "Euler", "DPM++ 2M"];

#[derive(Default)]
struct State {
    auth: Option<String>,
    no_api: bool,
    jpeg: bool,
    oom_next: bool,
    /// Pause per sampling step.
    step_delay: Duration,
    /// The running generation: step and steps.
    progress: Option<(u32, u32)>,
}

/// The emulator; stops when dropped.
pub struct A1111Emulator {
    server: HttpServer,
    state: Arc<Mutex<State>>,
    interrupted: Arc<AtomicBool>,
    generations: Arc<AtomicU32>,
}

impl A1111Emulator {
    /// Starts an emulator of `flavor` on a free loopback port.
    pub fn start(flavor: Flavor) -> A1111Emulator {
        let state = Arc::new(Mutex::new(State::default()));
        let interrupted = Arc::new(AtomicBool::new(false));
        let generations = Arc::new(AtomicU32::new(0));
        let (s, i, g) = (state.clone(), interrupted.clone(), generations.clone());
        let server = HttpServer::start(move |req| handle(flavor, &s, &i, &g, req));
        A1111Emulator {
            server,
            state,
            interrupted,
            generations,
        }
    }

    /// Returns the base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Requires Basic auth with `user:password` (as `--api-auth`).
    pub fn require_auth(&self, pair: &str) {
        self.state().auth = Some(format!("Basic {}", STANDARD.encode(pair)));
    }

    /// Plays a WebUI started without `--api`.
    pub fn without_api(&self) {
        self.state().no_api = true;
    }

    /// Answers JPEG images (the `samples_format` option set to jpg).
    pub fn jpeg(&self) {
        self.state().jpeg = true;
    }

    /// Fails the next generation with a 500 out of memory.
    pub fn out_of_memory_next(&self) {
        self.state().oom_next = true;
    }

    /// Pauses this long per sampling step, so progress can be watched.
    pub fn slow(&self, per_step: Duration) {
        self.state().step_delay = per_step;
    }

    /// Returns whether `/sdapi/v1/interrupt` was called.
    pub fn was_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Returns how many generations ran to their end (or interruption).
    pub fn generations(&self) -> u32 {
        self.generations.load(Ordering::SeqCst)
    }

    /// Returns every request received, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Returns the JSON bodies of the requests to `path`.
    pub fn bodies(&self, path: &str) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r.path == path)
            .filter_map(|r| serde_json::from_slice(&r.body).ok())
            .collect()
    }
}

fn json_reply(status: u16, value: Value) -> Reply {
    Reply::Respond(Response::json(status, &value).header("X-Process-Time", "0.01"))
}

fn handle(
    flavor: Flavor,
    state: &Mutex<State>,
    interrupted: &AtomicBool,
    generations: &AtomicU32,
    req: &Request,
) -> Reply {
    let lock = || state.lock().unwrap_or_else(PoisonError::into_inner);
    let path = req.path.split('?').next().unwrap_or_default().to_string();
    {
        let s = lock();
        if s.no_api && path.starts_with("/sdapi/") {
            return json_reply(404, json!({"detail": "Not Found"}));
        }
        if let Some(auth) = &s.auth
            && path.starts_with("/sdapi/")
            && req.header("authorization") != Some(auth.as_str())
        {
            return Reply::Respond(
                Response::json(401, &json!({"detail": "Incorrect username or password"}))
                    .header("WWW-Authenticate", "Basic"),
            );
        }
    }
    match (req.method.as_str(), path.as_str()) {
        ("GET", "/sdapi/v1/sd-models") => json_reply(
            200,
            Value::Array(
                CHECKPOINTS
                    .iter()
                    .map(|t| {
                        let name = t.split(".safetensors").next().unwrap_or(t);
                        json!({"title": t, "model_name": name, "hash": "6ce0161689",
                               "sha256": null, "filename": format!("/models/{name}.safetensors"), "config": null})
                    })
                    .collect(),
            ),
        ),
        ("GET", "/sdapi/v1/samplers") => json_reply(
            200,
            Value::Array(
                SAMPLERS
                    .iter()
                    .map(|n| json!({"name": n, "aliases": [], "options": {}}))
                    .collect(),
            ),
        ),
        ("GET", "/sdapi/v1/progress") if flavor == Flavor::A1111 => {
            let (step, steps) = lock().progress.unwrap_or((0, 0));
            let fraction = if steps == 0 { 0.0 } else { f64::from(step) / f64::from(steps) };
            json_reply(
                200,
                json!({"progress": fraction, "eta_relative": f64::from(steps.saturating_sub(step)) * 0.1,
                       "state": {"sampling_step": step, "sampling_steps": steps, "interrupted": false,
                                 "job_count": 1, "job_no": 0},
                       "current_image": null, "textinfo": null}),
            )
        }
        ("POST", "/sdapi/v1/interrupt") if flavor == Flavor::A1111 => {
            interrupted.store(true, Ordering::SeqCst);
            json_reply(200, json!({}))
        }
        ("POST", "/sdapi/v1/txt2img") | ("POST", "/sdapi/v1/img2img") => {
            generate(flavor, &path, lock, interrupted, generations, req)
        }
        _ => json_reply(404, json!({"detail": "Not Found"})),
    }
}

fn generate<'a>(
    flavor: Flavor,
    path: &str,
    lock: impl Fn() -> std::sync::MutexGuard<'a, State>,
    interrupted: &AtomicBool,
    generations: &AtomicU32,
    req: &Request,
) -> Reply {
    if req.header("content-type") != Some("application/json") {
        return json_reply(
            422,
            json!({"detail": [{"loc": ["body"], "msg": "expected JSON", "type": "value_error"}]}),
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return json_reply(
            422,
            json!({"detail": [{"loc": ["body"], "msg": "invalid JSON", "type": "value_error.jsondecode"}]}),
        );
    };
    // FastAPI checks the declared types first.
    for field in ["steps", "width", "height", "batch_size", "n_iter", "seed"] {
        if let Some(v) = body.get(field)
            && !v.is_i64()
        {
            return json_reply(
                422,
                json!({"detail": [{"loc": ["body", field], "msg": "value is not a valid integer", "type": "type_error.integer"}]}),
            );
        }
    }
    let prompt = body["prompt"].as_str().unwrap_or_default();
    if flavor == Flavor::SdServer && prompt.is_empty() {
        return json_reply(400, json!({"error": "prompt required"}));
    }
    if path.ends_with("img2img") && body["init_images"].as_array().is_none_or(|a| a.is_empty()) {
        return json_reply(
            422,
            json!({"detail": [{"loc": ["body", "init_images"], "msg": "field required", "type": "value_error.missing"}]}),
        );
    }
    if let Some(sampler) = body["sampler_name"].as_str()
        && !SAMPLERS.contains(&sampler)
    {
        return json_reply(
            404,
            json!({"error": "HTTPException", "detail": "Sampler not found", "body": "", "errors": ""}),
        );
    }
    if lock().oom_next {
        lock().oom_next = false;
        return json_reply(
            500,
            json!({"error": "OutOfMemoryError", "detail": "", "body": "",
            "errors": "CUDA out of memory. Tried to allocate 2.00 GiB"}),
        );
    }
    let width = body["width"].as_u64().unwrap_or(512) as u32;
    let height = body["height"].as_u64().unwrap_or(512) as u32;
    let steps = body["steps"].as_u64().unwrap_or(50) as u32;
    let count = body["batch_size"].as_u64().unwrap_or(1) * body["n_iter"].as_u64().unwrap_or(1);
    let seed = body["seed"]
        .as_i64()
        .filter(|s| *s >= 0)
        .unwrap_or(3_141_592_653);
    let delay = lock().step_delay;
    interrupted.store(false, Ordering::SeqCst);
    for step in 1..=steps {
        lock().progress = Some((step, steps));
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(delay);
    }
    lock().progress = None;
    generations.fetch_add(1, Ordering::SeqCst);
    let jpeg = lock().jpeg;
    let images: Vec<String> = (0..count)
        .map(|i| {
            let bytes = if jpeg {
                // A JPEG's start and end markers around nothing in between is enough to be
                // told apart by its bytes.
                vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 0xFF, 0xD9]
            } else {
                let mut png = crate::media::png(width, height, [(i * 40) as u8, 80, 160]);
                if flavor == Flavor::SdServer {
                    // sd-server writes its own parameters text into the PNG.
                    let text = format!("{prompt}\nSteps: {steps}, Seed: {}, Size: {width}x{height}, Version: stable-diffusion.cpp", seed + i as i64);
                    let chunk = launcher_sdk::media::png_text_chunk("parameters", &text);
                    let end = png.len() - 12;
                    png.splice(end..end, chunk);
                }
                png
            };
            STANDARD.encode(bytes)
        })
        .collect();
    let info = match flavor {
        Flavor::A1111 => {
            let seeds: Vec<i64> = (0..count as i64).map(|i| seed + i).collect();
            Value::String(
                json!({"prompt": prompt, "seed": seed, "all_seeds": seeds, "width": width, "height": height,
                       "steps": steps, "sd_model_name": body["override_settings"]["sd_model_checkpoint"],
                       "infotexts": seeds.iter().map(|s| format!("{prompt}\nSteps: {steps}, Seed: {s}, Size: {width}x{height}")).collect::<Vec<_>>()})
                .to_string(),
            )
        }
        Flavor::SdServer => Value::String(String::new()),
    };
    json_reply(
        200,
        json!({"images": images, "parameters": body, "info": info}),
    )
}
