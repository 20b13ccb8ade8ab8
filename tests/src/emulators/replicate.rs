//! An in-process emulator of Replicate's predictions API, written from
//! `shared/contracts/services.md` section 6 (and section 10's list of what it must reproduce).
//!
//! - **Auth:** `Authorization: Bearer <token>` (or the older `Token <token>`); anything else
//!   gets 401 `{"title":"Unauthenticated","detail":"You did not pass a valid authentication
//!   token","status":401}`.
//! - **Models:** `GET /v1/models/{owner}/{name}` (with `latest_version.openapi_schema`) and
//!   `GET /v1/models/{owner}/{name}/versions/{id}`; unknown ones get 404.
//! - **Create:** all three routes: `POST /v1/models/{owner}/{name}/predictions {input}`,
//!   `POST /v1/predictions {version, input}` (a `model` field gets 422 "Additional property
//!   model is not allowed", an unknown version 422 "Invalid version or not permitted") and
//!   `POST /v1/deployments/{owner}/{name}/predictions`. The input is validated against the
//!   model's schema (required, unknown, type, enum, minimum/maximum, URIs that are neither
//!   https nor data URIs) and refused with 422 `{title, detail, status, invalid_fields}`.
//!   Answers 201.
//! - **Time:** a fast-forwarded clock, never a real sleep: a prediction is `starting` until
//!   looked at, then `processing` for [`ModelSpec::looks`] looks (its `logs` drawing a progress
//!   bar), then `succeeded` (or `failed` with `error`, for a model made to fail), with
//!   `metrics.predict_time`. `Prefer: wait[=N]` returns a fast model finished, and a slow
//!   one still `starting` with a `Location` header.
//! - **Outputs:** file URLs served by the emulator at `/files/...`, which
//!   [`ReplicateEmulator::expire_outputs`] makes answer 404 as expired links do; text as
//!   a list of tokens, also sent as server-sent events (`output`, then `done`) at `urls.stream`.
//! - **Cancel:** `POST /v1/predictions/{id}/cancel`, idempotent; a finished prediction is
//!   unchanged.
//! - **Throttling:** [`ReplicateEmulator::throttle_next`] answers the next request 429
//!   `{"detail":"Request was throttled. ..."}`, with or without `Retry-After`.
//!
//! Every request is recorded; [`ReplicateEmulator::created`] returns the create bodies.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value, json};

use crate::http::{HttpServer, Reply, Request, Response, StreamBody};

/// The official image model every emulator knows.
pub const IMAGE_MODEL: &str = "black-forest-labs/flux-schnell";
/// A community video model, run by version.
pub const VIDEO_MODEL: &str = "acme/tiny-video";
/// The version id of [`VIDEO_MODEL`].
pub const VIDEO_VERSION: &str = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa";
/// An official language model that streams tokens.
pub const TEXT_MODEL: &str = "meta/tiny-llama";
/// The tokens [`TEXT_MODEL`] answers with.
pub const TOKENS: &[&str] = &["Foxes ", "are ", "clever", "."];

/// A model the emulator serves.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// `owner/name`.
    pub name: String,
    /// Its one version id.
    pub version: String,
    /// Its description.
    pub description: String,
    /// Its OpenAPI description (`components.schemas.Input` and `Output`).
    pub openapi: Value,
    /// How many looks a prediction spends `processing`.
    pub looks: u32,
    /// Whether `Prefer: wait` returns it finished.
    pub fast: bool,
    /// What it makes.
    pub output: OutputSpec,
    /// When set, predictions fail with this error.
    pub fails_with: Option<String>,
}

/// What a model's predictions output.
#[derive(Debug, Clone)]
pub enum OutputSpec {
    /// Files, served at emulator URLs with these names and bytes.
    Files(Vec<(String, Vec<u8>)>),
    /// Text, as a list of tokens (and a stream).
    Tokens(Vec<String>),
}

/// The image model's schema: required, optional, enum, file, number and boolean inputs.
pub fn image_schema() -> Value {
    json!({"components": {"schemas": {
        "Input": {
            "type": "object",
            "title": "Input",
            "required": ["prompt"],
            "properties": {
                "prompt": {"type": "string", "title": "Prompt", "x-order": 0,
                           "description": "Prompt for generated image"},
                "aspect_ratio": {"allOf": [{"$ref": "#/components/schemas/aspect_ratio"}],
                                 "default": "1:1", "x-order": 1,
                                 "description": "Aspect ratio for the generated image"},
                "num_outputs": {"type": "integer", "title": "Num Outputs", "default": 1,
                                "minimum": 1, "maximum": 4, "x-order": 2,
                                "description": "Number of outputs to generate"},
                "guidance": {"type": "number", "minimum": 0, "maximum": 10, "default": 3.5,
                             "x-order": 3, "description": "Guidance for generated image"},
                "image": {"type": "string", "format": "uri", "x-order": 4,
                          "description": "Input image for image to image mode"},
                "go_fast": {"type": "boolean", "default": true, "x-order": 5,
                            "description": "Run faster predictions"},
                "seed": {"type": "integer", "x-order": 6, "description": "Random seed"},
            }
        },
        "aspect_ratio": {"type": "string", "title": "aspect_ratio",
                         "enum": ["1:1", "16:9", "9:16"], "description": "An enumeration."},
        "Output": {"type": "array", "items": {"type": "string", "format": "uri"}},
    }}})
}

fn video_schema() -> Value {
    json!({"components": {"schemas": {
        "Input": {"type": "object", "required": ["prompt"], "properties": {
            "prompt": {"type": "string", "x-order": 0},
            "duration": {"type": "integer", "minimum": 1, "maximum": 10, "default": 5,
                         "x-order": 1},
        }},
        "Output": {"type": "string", "format": "uri"},
    }}})
}

fn text_schema() -> Value {
    json!({"components": {"schemas": {
        "Input": {"type": "object", "required": ["prompt"], "properties": {
            "prompt": {"type": "string", "x-order": 0},
            "max_new_tokens": {"type": "integer", "minimum": 1, "default": 128, "x-order": 1},
        }},
        "Output": {"type": "array", "items": {"type": "string"},
                   "x-cog-array-type": "iterator", "x-cog-array-display": "concatenate"},
    }}})
}

/// The models a new emulator serves: [`IMAGE_MODEL`] (fast, PNGs), [`VIDEO_MODEL`] (slow,
/// `video` bytes as an MP4) and [`TEXT_MODEL`] (fast, tokens).
pub fn default_models(png: Vec<u8>, video: Vec<u8>) -> Vec<ModelSpec> {
    vec![
        ModelSpec {
            name: IMAGE_MODEL.into(),
            version: "bf2f2e683d03a9549f484a37a0df1581514b28c9ea5d6b2e1d2c6a7c0e4e9a1f".into(),
            description: "The fastest image generation model".into(),
            openapi: image_schema(),
            looks: 2,
            fast: true,
            output: OutputSpec::Files(vec![("out-0.webp".into(), png)]),
            fails_with: None,
        },
        ModelSpec {
            name: VIDEO_MODEL.into(),
            version: VIDEO_VERSION.into(),
            description: "Generate short videos from text".into(),
            openapi: video_schema(),
            looks: 3,
            fast: false,
            output: OutputSpec::Files(vec![("output.mp4".into(), video)]),
            fails_with: None,
        },
        ModelSpec {
            name: TEXT_MODEL.into(),
            version: "02e509c789964a7ea8736978a43525956ef40397be9033abf9fd2badfe68c9e3".into(),
            description: "A small language model".into(),
            openapi: text_schema(),
            looks: 1,
            fast: false,
            output: OutputSpec::Tokens(TOKENS.iter().map(|t| t.to_string()).collect()),
            fails_with: None,
        },
    ]
}

struct Prediction {
    model: usize,
    looks: u32,
    status: &'static str,
}

struct State {
    token: String,
    models: Mutex<Vec<ModelSpec>>,
    predictions: Mutex<BTreeMap<String, Prediction>>,
    expired: Mutex<bool>,
    throttles: Mutex<VecDeque<Option<u64>>>,
    base: Mutex<String>,
}

/// A running emulator; stops when dropped.
pub struct ReplicateEmulator {
    server: HttpServer,
    state: Arc<State>,
}

impl ReplicateEmulator {
    /// Starts an emulator that accepts `token` and serves `models`.
    pub fn start(token: &str, models: Vec<ModelSpec>) -> ReplicateEmulator {
        let state = Arc::new(State {
            token: token.to_string(),
            models: Mutex::new(models),
            predictions: Mutex::new(BTreeMap::new()),
            expired: Mutex::new(false),
            throttles: Mutex::new(VecDeque::new()),
            base: Mutex::new(String::new()),
        });
        let handler_state = Arc::clone(&state);
        let server = HttpServer::start(move |req| handle(&handler_state, req));
        *lock(&state.base) = server.url();
        ReplicateEmulator { server, state }
    }

    /// Returns the base URL to use in place of `https://api.replicate.com`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Returns every request received, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Returns the create requests received (path and JSON body), in order.
    pub fn created(&self) -> Vec<(String, Value)> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/predictions"))
            .map(|r| {
                let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                (r.path, body)
            })
            .collect()
    }

    /// Returns the ids of the predictions cancelled, in order.
    pub fn cancelled(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/cancel"))
            .filter_map(|r| r.path.split('/').nth(3).map(str::to_string))
            .collect()
    }

    /// Returns the status of prediction `id`.
    pub fn status(&self, id: &str) -> Option<String> {
        lock(&self.state.predictions)
            .get(id)
            .map(|p| p.status.to_string())
    }

    /// Makes predictions of `model` fail with `error`.
    pub fn fail_model(&self, model: &str, error: &str) {
        for spec in lock(&self.state.models).iter_mut() {
            if spec.name == model {
                spec.fails_with = Some(error.to_string());
            }
        }
    }

    /// Makes predictions of `model` spend `looks` looks processing, from now on.
    pub fn set_looks(&self, model: &str, looks: u32) {
        for spec in lock(&self.state.models).iter_mut() {
            if spec.name == model {
                spec.looks = looks;
            }
        }
    }

    /// Gives `model` a new OpenAPI description, as a new version of a model does.
    pub fn replace_schema(&self, model: &str, openapi: Value) {
        for spec in lock(&self.state.models).iter_mut() {
            if spec.name == model {
                spec.openapi = openapi.clone();
            }
        }
    }

    /// Makes every output link answer 404, as links past their hour do.
    pub fn expire_outputs(&self) {
        *lock(&self.state.expired) = true;
    }

    /// Answers the next request 429, with `Retry-After` when given.
    pub fn throttle_next(&self, retry_after: Option<u64>) {
        lock(&self.state.throttles).push_back(retry_after);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn json_reply(status: u16, value: &Value) -> Reply {
    Reply::Respond(Response::json(status, value))
}

fn not_found() -> Reply {
    json_reply(404, &json!({"detail": "Not found.", "status": 404}))
}

fn handle(state: &State, req: &Request) -> Reply {
    let path = req.path.split('?').next().unwrap_or_default().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // Output links are public, as replicate.delivery's are.
    if parts.first() == Some(&"files") {
        return serve_file(state, &parts);
    }
    if let Some(retry_after) = lock(&state.throttles).pop_front() {
        let mut response = Response::json(
            429,
            &json!({"detail": "Request was throttled. Your rate limit resets in ~30s.",
                    "status": 429}),
        );
        if let Some(seconds) = retry_after {
            response = response.header("Retry-After", seconds.to_string());
        }
        return Reply::Respond(response);
    }
    let auth = req.header("authorization").unwrap_or_default();
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("Token "));
    if token != Some(state.token.as_str()) {
        return json_reply(
            401,
            &json!({"title": "Unauthenticated",
                    "detail": "You did not pass a valid authentication token", "status": 401}),
        );
    }
    match (req.method.as_str(), parts.as_slice()) {
        ("GET", ["v1", "models", owner, name]) => describe(state, &format!("{owner}/{name}"), None),
        ("GET", ["v1", "models", owner, name, "versions", version]) => {
            describe(state, &format!("{owner}/{name}"), Some(version))
        }
        ("POST", ["v1", "models" | "deployments", owner, name, "predictions"]) => {
            let model = find_model(state, |m| m.name == format!("{owner}/{name}"));
            match model {
                Some(index) => create(state, req, index, false),
                None => not_found(),
            }
        }
        ("POST", ["v1", "predictions"]) => {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            if body.get("model").is_some() {
                return invalid(vec![json!({"type": "additional_property_not_allowed",
                    "field": "(root)", "description": "Additional property model is not allowed"})]);
            }
            let version = body["version"].as_str().unwrap_or_default().to_string();
            match find_model(state, |m| m.version == version) {
                Some(index) => create(state, req, index, true),
                None => json_reply(
                    422,
                    &json!({"title": "Invalid version or not permitted",
                            "detail": "The specified version does not exist (or perhaps you \
                                       don't have permission to use it?)", "status": 422}),
                ),
            }
        }
        ("GET", ["v1", "predictions", id]) => look(state, id),
        ("POST", ["v1", "predictions", id, "cancel"]) => cancel(state, id),
        ("GET", ["stream", id]) => stream(state, id),
        _ => not_found(),
    }
}

fn find_model(state: &State, pick: impl Fn(&ModelSpec) -> bool) -> Option<usize> {
    lock(&state.models).iter().position(pick)
}

fn describe(state: &State, name: &str, version: Option<&str>) -> Reply {
    let models = lock(&state.models);
    let Some(model) = models.iter().find(|m| m.name == name) else {
        return not_found();
    };
    let version_object = json!({"id": model.version, "openapi_schema": model.openapi,
                                "created_at": "2026-11-01T00:00:00Z"});
    match version {
        Some(v) if v == model.version => json_reply(200, &version_object),
        Some(_) => not_found(),
        None => {
            let (owner, short) = name.split_once('/').unwrap_or((name, name));
            json_reply(
                200,
                &json!({"owner": owner, "name": short, "description": model.description,
                        "visibility": "public", "latest_version": version_object}),
            )
        }
    }
}

fn invalid(fields: Vec<Value>) -> Reply {
    let detail: String = fields
        .iter()
        .map(|f| {
            format!(
                "- {}: {}\n",
                f["field"].as_str().unwrap_or("input"),
                f["description"].as_str().unwrap_or_default()
            )
        })
        .collect();
    json_reply(
        422,
        &json!({"title": "Input validation failed", "detail": detail, "status": 422,
                "invalid_fields": fields}),
    )
}

/// Returns what is wrong with `input` for `openapi`, in Replicate's `invalid_fields` shape.
pub fn validate(openapi: &Value, input: &Map<String, Value>) -> Vec<Value> {
    let schemas = &openapi["components"]["schemas"];
    let schema = &schemas["Input"];
    let properties = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut problems = Vec::new();
    for name in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !input.contains_key(name) {
            problems.push(json!({"type": "required", "field": "input",
                                 "description": format!("{name} is required")}));
        }
    }
    for (name, value) in input {
        let Some(property) = properties.get(name) else {
            problems.push(
                json!({"type": "additional_property_not_allowed", "field": "input",
                "description": format!("Additional property {name} is not allowed")}),
            );
            continue;
        };
        let field = format!("input.{name}");
        let enum_schema = property["allOf"][0]["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .map(|r| &schemas[r]);
        let expected = property["type"]
            .as_str()
            .or_else(|| enum_schema.and_then(|s| s["type"].as_str()))
            .unwrap_or("string");
        let type_ok = match expected {
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            _ => value.is_string(),
        };
        if !type_ok {
            problems.push(json!({"type": "invalid_type", "field": field,
                "description": format!("Invalid type. Expected: {expected}, given: {}",
                                       type_name(value))}));
            continue;
        }
        if let Some(choices) = enum_schema.and_then(|s| s["enum"].as_array())
            && !choices.contains(value)
        {
            let list: Vec<String> = choices.iter().map(|c| c.to_string()).collect();
            problems.push(json!({"type": "enum", "field": field,
                "description": format!("{name} must be one of the following: {}",
                                       list.join(", "))}));
        }
        if let (Some(min), Some(v)) = (property["minimum"].as_f64(), value.as_f64())
            && v < min
        {
            problems.push(json!({"type": "number_gte", "field": field,
                "description": format!("Must be greater than or equal to {min}")}));
        }
        if let (Some(max), Some(v)) = (property["maximum"].as_f64(), value.as_f64())
            && v > max
        {
            problems.push(json!({"type": "number_lte", "field": field,
                "description": format!("Must be less than or equal to {max}")}));
        }
        if property["format"].as_str() == Some("uri") {
            let uri = value.as_str().unwrap_or_default();
            let data_ok = uri
                .strip_prefix("data:")
                .and_then(|rest| rest.split_once(";base64,"))
                .is_some_and(|(media, data)| media.contains('/') && !data.is_empty());
            if !(uri.starts_with("https://") || data_ok) {
                problems.push(json!({"type": "format", "field": field,
                    "description": "Does not match format 'uri'"}));
            }
        }
    }
    problems
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn create(state: &State, req: &Request, model: usize, by_version: bool) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return json_reply(400, &json!({"detail": "Invalid JSON", "status": 400}));
    };
    let input = body["input"].as_object().cloned().unwrap_or_default();
    let spec = lock(&state.models)[model].clone();
    let extra: Vec<&String> = body
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys())
        .filter(|k| {
            let allowed: &[&str] = if by_version {
                &[
                    "version",
                    "input",
                    "webhook",
                    "webhook_events_filter",
                    "stream",
                ]
            } else {
                &["input", "webhook", "webhook_events_filter", "stream"]
            };
            !allowed.contains(&k.as_str())
        })
        .collect();
    if let Some(key) = extra.first() {
        return invalid(vec![json!({"type": "additional_property_not_allowed",
            "field": "(root)", "description": format!("Additional property {key} is not allowed")})]);
    }
    let problems = validate(&spec.openapi, &input);
    if !problems.is_empty() {
        return invalid(problems);
    }
    let id = {
        let mut predictions = lock(&state.predictions);
        let id = format!("p{:025}", predictions.len() + 1);
        predictions.insert(
            id.clone(),
            Prediction {
                model,
                looks: 0,
                status: "starting",
            },
        );
        id
    };
    // `Prefer: wait` blocks until a fast model is done; the emulated clock jumps there.
    let wait = req
        .header("prefer")
        .is_some_and(|p| p.trim().starts_with("wait"));
    if wait && spec.fast {
        let mut predictions = lock(&state.predictions);
        let p = predictions.get_mut(&id).expect("just inserted");
        p.looks = spec.looks + 1;
        p.status = if spec.fails_with.is_some() {
            "failed"
        } else {
            "succeeded"
        };
    }
    let object = prediction_object(state, &id);
    let mut response = Response::json(201, &object);
    if object["status"] == "starting" {
        response = response.header(
            "Location",
            object["urls"]["get"].as_str().unwrap_or_default(),
        );
    }
    Reply::Respond(response)
}

fn look(state: &State, id: &str) -> Reply {
    {
        let models = lock(&state.models);
        let mut predictions = lock(&state.predictions);
        let Some(p) = predictions.get_mut(id) else {
            return not_found();
        };
        if !matches!(p.status, "succeeded" | "failed" | "canceled") {
            p.looks += 1;
            let spec = &models[p.model];
            p.status = if p.looks <= spec.looks {
                "processing"
            } else if spec.fails_with.is_some() {
                "failed"
            } else {
                "succeeded"
            };
        }
    }
    json_reply(200, &prediction_object(state, id))
}

fn cancel(state: &State, id: &str) -> Reply {
    {
        let mut predictions = lock(&state.predictions);
        let Some(p) = predictions.get_mut(id) else {
            return not_found();
        };
        if !matches!(p.status, "succeeded" | "failed") {
            p.status = "canceled";
        }
    }
    json_reply(200, &prediction_object(state, id))
}

fn prediction_object(state: &State, id: &str) -> Value {
    let base = lock(&state.base).clone();
    let models = lock(&state.models);
    let predictions = lock(&state.predictions);
    let p = &predictions[id];
    let spec = &models[p.model];
    let percent = (p.looks.min(spec.looks) * 100)
        .checked_div(spec.looks)
        .unwrap_or(0);
    let logs = if p.status == "starting" {
        String::new()
    } else {
        format!(
            "loading weights\n{percent:3}%|{}| {}/{}\n",
            "#".repeat(percent as usize / 10),
            p.looks.min(spec.looks),
            spec.looks
        )
    };
    let output = match (p.status, &spec.output) {
        ("succeeded", OutputSpec::Files(files)) => {
            let urls: Vec<String> = files
                .iter()
                .map(|(name, _)| format!("{base}/files/{id}/{name}"))
                .collect();
            // A model whose schema says one URI answers one; a list model answers a list.
            if spec.openapi["components"]["schemas"]["Output"]["type"] == "string" {
                Value::from(urls[0].clone())
            } else {
                Value::from(urls)
            }
        }
        ("succeeded", OutputSpec::Tokens(tokens)) => Value::from(tokens.clone()),
        _ => Value::Null,
    };
    let error = match p.status {
        "failed" => Value::from(spec.fails_with.clone().unwrap_or_default()),
        _ => Value::Null,
    };
    let finished = matches!(p.status, "succeeded" | "failed" | "canceled");
    let mut urls = json!({
        "get": format!("{base}/v1/predictions/{id}"),
        "cancel": format!("{base}/v1/predictions/{id}/cancel"),
        "web": format!("https://replicate.com/p/{id}"),
    });
    if matches!(spec.output, OutputSpec::Tokens(_)) {
        urls["stream"] = Value::from(format!("{base}/stream/{id}"));
    }
    json!({
        "id": id, "model": spec.name, "version": spec.version, "logs": logs,
        "output": output, "error": error, "status": p.status,
        "created_at": "2026-11-30T00:00:00.000Z", "data_removed": false,
        "started_at": if p.status == "starting" { Value::Null } else { "2026-11-30T00:00:01.000Z".into() },
        "completed_at": if finished { "2026-11-30T00:00:05.000Z".into() } else { Value::Null },
        "urls": urls,
        "metrics": if p.status == "succeeded" { json!({"predict_time": 4.52}) } else { json!({}) },
    })
}

fn stream(state: &State, id: &str) -> Reply {
    let tokens = {
        let models = lock(&state.models);
        let predictions = lock(&state.predictions);
        let Some(p) = predictions.get(id) else {
            return not_found();
        };
        match &models[p.model].output {
            OutputSpec::Tokens(tokens) => tokens.clone(),
            OutputSpec::Files(_) => return not_found(),
        }
    };
    let response = Response::new(200)
        .header("Content-Type", "text/event-stream")
        .header("Cache-Control", "no-store");
    Reply::Stream(
        response,
        StreamBody::new(move |out| {
            for token in &tokens {
                out.send(format!("event: output\nid: 1\ndata: {token}\n\n").as_bytes())?;
            }
            out.send(b"event: done\ndata: {}\n\n")
        }),
    )
}

fn serve_file(state: &State, parts: &[&str]) -> Reply {
    if *lock(&state.expired) {
        return Reply::Respond(Response::text(404, "Not Found"));
    }
    let [_, id, name] = parts else {
        return not_found();
    };
    let models = lock(&state.models);
    let predictions = lock(&state.predictions);
    let Some(p) = predictions.get(*id).filter(|p| p.status == "succeeded") else {
        return not_found();
    };
    match &models[p.model].output {
        OutputSpec::Files(files) => match files.iter().find(|(n, _)| n == name) {
            Some((_, bytes)) => Reply::Respond(
                Response::new(200)
                    .header("Content-Type", "application/octet-stream")
                    .body(bytes.clone()),
            ),
            None => not_found(),
        },
        OutputSpec::Tokens(_) => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn the_schema_is_enforced_as_replicate_enforces_it() {
        let schema = image_schema();
        assert!(validate(&schema, &input(json!({"prompt": "a fox"}))).is_empty());
        let problems = validate(
            &schema,
            &input(
                json!({"num_outputs": 9, "aspect_ratio": "4:3", "guidance": "high",
                          "image": "/tmp/fox.png", "colour": "red"}),
            ),
        );
        let fields: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p["type"].as_str().unwrap(), p["field"].as_str().unwrap()))
            .collect();
        for expected in [
            ("required", "input"),
            ("number_lte", "input.num_outputs"),
            ("enum", "input.aspect_ratio"),
            ("invalid_type", "input.guidance"),
            ("format", "input.image"),
            ("additional_property_not_allowed", "input"),
        ] {
            assert!(fields.contains(&expected), "{expected:?} in {fields:?}");
        }
        let data = validate(
            &schema,
            &input(json!({"prompt": "x", "image": "data:image/png;base64,iVBORw0K"})),
        );
        assert!(data.is_empty(), "{data:?}");
    }
}
