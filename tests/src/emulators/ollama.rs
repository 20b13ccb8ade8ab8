//! An in-process emulator of Ollama's native API, written from
//! `shared/contracts/services.md` section 8.
//!
//! `/api/chat` and `/api/generate` stream NDJSON (`application/x-ndjson`), one object per
//! token and a last one with `done: true` and the stats, or one JSON object with
//! `"stream": false`; `/api/tags` lists the models it has; `/api/pull` streams status lines
//! (`pulling manifest`, progress with `total`/`completed`, `success`) and adds the model. A
//! model it does not have answers 404 `{"error":"model 'x' not found"}`. It is strict about
//! what is sent: JSON bodies, `model`, valid roles, `stream` a boolean, `options` an object
//! of known keys. [`OllamaEmulator::fail_mid_stream`] makes the next stream end in an
//! `{"error": …}` line with status 200.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};

use crate::http::{HttpServer, Reply, Request, Response, StreamBody};

/// The answer every chat and generation gets, streamed as these tokens.
pub const TOKENS: &[&str] = &["Hi", " from", " Ollama"];

#[derive(Default)]
struct State {
    models: Vec<String>,
    fail_mid_stream: bool,
}

/// The emulator; stops when dropped.
pub struct OllamaEmulator {
    server: HttpServer,
    state: Arc<Mutex<State>>,
}

impl OllamaEmulator {
    /// Starts an emulator that has `models` (names with tags, e.g. `llama3:latest`).
    pub fn start(models: &[&str]) -> OllamaEmulator {
        let state = Arc::new(Mutex::new(State {
            models: models.iter().map(|m| m.to_string()).collect(),
            fail_mid_stream: false,
        }));
        let shared = Arc::clone(&state);
        let server = HttpServer::start(move |req| handle(req, &shared));
        OllamaEmulator { server, state }
    }

    /// Returns the server root, `http://127.0.0.1:PORT`, as `OLLAMA_HOST` would name it.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Makes the next stream send one token, then an `{"error": …}` line.
    pub fn fail_mid_stream(&self) {
        self.lock().fail_mid_stream = true;
    }

    /// Returns the models it has now.
    pub fn models(&self) -> Vec<String> {
        self.lock().models.clone()
    }

    /// Returns every request received.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Returns the JSON bodies of the requests to `path` (e.g. `/api/chat`).
    pub fn bodies(&self, path: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .filter_map(|r| serde_json::from_slice(&r.body).ok())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn error(status: u16, message: &str) -> Reply {
    Reply::Respond(Response::json(status, &json!({ "error": message })))
}

/// With no tag, a name means `:latest`.
fn full_name(model: &str) -> String {
    if model.contains(':') {
        model.to_string()
    } else {
        format!("{model}:latest")
    }
}

fn handle(req: &Request, state: &Mutex<State>) -> Reply {
    let path = req.path.split('?').next().unwrap_or("");
    if req.method == "GET" && path == "/api/tags" {
        let models = state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .models
            .clone();
        let list: Vec<Value> = models
            .iter()
            .map(|m| json!({"name": m, "model": m, "modified_at": "2026-11-30T00:00:00Z", "size": 4_000_000_000u64,
                "digest": "sha256:0", "details": {"format": "gguf", "family": "llama", "parameter_size": "8B", "quantization_level": "Q4_0"}}))
            .collect();
        return Reply::Respond(Response::json(200, &json!({ "models": list })));
    }
    if req.method != "POST" || !matches!(path, "/api/chat" | "/api/generate" | "/api/pull") {
        return Reply::Respond(Response::text(404, "404 page not found"));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return error(400, "invalid JSON");
    };
    let Some(model) = body
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
    else {
        return error(400, "model is required");
    };
    let stream = match body.get("stream") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return error(400, "stream must be a boolean"),
    };
    if let Some(options) = body.get("options") {
        let known = [
            "temperature",
            "seed",
            "num_predict",
            "num_ctx",
            "top_k",
            "top_p",
            "stop",
        ];
        match options.as_object() {
            Some(o) if o.keys().all(|k| known.contains(&k.as_str())) => {}
            _ => return error(400, "options must be an object of known options"),
        }
    }
    let name = full_name(model);
    if path == "/api/pull" {
        state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .models
            .push(name);
        let lines = [
            json!({"status": "pulling manifest"}),
            json!({"status": "pulling 6a0746a1ec1a", "digest": "sha256:6a07", "total": 1000, "completed": 250}),
            json!({"status": "pulling 6a0746a1ec1a", "digest": "sha256:6a07", "total": 1000, "completed": 1000}),
            json!({"status": "verifying sha256 digest"}),
            json!({"status": "success"}),
        ];
        return ndjson(lines.to_vec(), None);
    }
    let has = state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .models
        .contains(&name);
    if !has {
        return error(404, &format!("model '{model}' not found"));
    }
    let chat = path == "/api/chat";
    if chat {
        let Some(messages) = body.get("messages").and_then(Value::as_array) else {
            return error(400, "messages is required");
        };
        for m in messages {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("");
            if !["system", "user", "assistant", "tool"].contains(&role)
                || !m.get("content").is_some_and(Value::is_string)
            {
                return error(400, "each message needs a valid role and text content");
            }
        }
    } else if !body.get("prompt").is_some_and(Value::is_string) {
        return error(400, "prompt must be a string");
    }
    let piece = |text: &str, done: bool| {
        let mut v = json!({"model": model, "created_at": "2026-11-30T00:00:00Z", "done": done});
        if chat {
            v["message"] = json!({"role": "assistant", "content": text});
        } else {
            v["response"] = json!(text);
        }
        if done {
            v["done_reason"] = json!("stop");
            v["eval_count"] = json!(TOKENS.len());
            v["prompt_eval_count"] = json!(7);
            v["total_duration"] = json!(1_000_000u64);
        }
        v
    };
    if !stream {
        let mut whole = piece(&TOKENS.concat(), true);
        if !chat {
            whole["context"] = json!([1, 2, 3]);
        }
        return Reply::Respond(Response::json(200, &whole));
    }
    let mut lines: Vec<Value> = TOKENS.iter().map(|t| piece(t, false)).collect();
    lines.push(piece("", true));
    let fail = std::mem::take(
        &mut state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fail_mid_stream,
    );
    ndjson(lines, fail.then_some(1))
}

/// Streams `lines` as NDJSON; with `fail_after`, an error line follows that many lines.
fn ndjson(lines: Vec<Value>, fail_after: Option<usize>) -> Reply {
    let body = StreamBody::new(move |out| {
        for (i, line) in lines.iter().enumerate() {
            if fail_after == Some(i) {
                out.send(b"{\"error\":\"an error was encountered while running the model\"}\n")?;
                return Ok(());
            }
            out.send(format!("{line}\n").as_bytes())?;
        }
        Ok(())
    });
    Reply::Stream(
        Response::new(200).header("Content-Type", "application/x-ndjson"),
        body,
    )
}
