//! An in-process emulator of ComfyUI's server, written from `shared/contracts/services.md`
//! section 4 and `research/engines.md`: HTTP and the websocket on one port.
//!
//! `POST /prompt` checks that the graph is in API format (node ids mapped to `{class_type,
//! inputs}`), that every class is one `/object_info` knows, that links point at nodes, that
//! `ckpt_name` is a checkpoint the emulator has and a `LoadImage` image was uploaded; it
//! answers 400 with `error` and per-node `node_errors` otherwise. Accepted prompts run one at a
//! time on a background thread and send the real message sequence to the websocket of their
//! `client_id` (`status` on connect, `execution_start`, `execution_cached`, `executing` per
//! node, `progress` for the sampler's steps, `executed` with the images, `executing` with
//! node null, `execution_success`). A graph identical to one run before is fully cached and
//! writes nothing new. `/history/{id}` is `{}` until the prompt ends; `/view` serves real
//! PNGs with the path rules; `/upload/image` takes multipart and renames on a clash;
//! `/interrupt` and `/queue {"delete"}` stop prompts. Every route is also under `/api`.
//!
//! Switches: [`ComfyEmulator::slow`] (a pause per sampler step), [`ComfyEmulator::websocket`]
//! (refuse it, or drop it once a prompt starts) and [`ComfyEmulator::fail_node`] (an
//! `execution_error`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::TcpStream;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::http::{HttpServer, Reply, Request, Response, Takeover};

/// The checkpoints the emulator has.
pub const CHECKPOINTS: &[&str] = &[
    "sd_xl_base_1.0.safetensors",
    "v1-5-pruned-emaonly.safetensors",
];

/// What the websocket does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Websocket {
    /// Works.
    #[default]
    Works,
    /// Upgrades are refused with 404.
    Refused,
    /// Connects, then closes as soon as a prompt starts.
    DropsAtStart,
}

#[derive(Default)]
struct State {
    /// Websocket senders by client id.
    clients: HashMap<String, Vec<Sender<String>>>,
    /// Finished prompts' history entries.
    history: BTreeMap<String, Value>,
    /// Prompts queued and not started.
    pending: Vec<String>,
    running: Option<String>,
    interrupt: bool,
    /// Graphs run before (serialised), for the cache.
    seen: HashSet<String>,
    /// Files by (type, subfolder, name).
    files: HashMap<(String, String, String), Vec<u8>>,
    counter: u32,
    number: u64,
    step_delay: Duration,
    websocket: Websocket,
    fail_node: Option<String>,
}

type Shared = Arc<(Mutex<State>, Mutex<()>)>;

/// The emulator; stops when dropped.
pub struct ComfyEmulator {
    server: HttpServer,
    state: Shared,
}

impl Default for ComfyEmulator {
    fn default() -> Self {
        Self::start()
    }
}

impl ComfyEmulator {
    /// Starts an emulator on a free loopback port.
    pub fn start() -> ComfyEmulator {
        let state: Shared = Arc::new((Mutex::new(State::default()), Mutex::new(())));
        let shared = Arc::clone(&state);
        let server = HttpServer::start(move |req| handle(&shared, req));
        ComfyEmulator { server, state }
    }

    /// Returns the base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Returns every request received, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Returns the requests with this method whose path (without `/api`) starts with `path`.
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && route_path(&r.path).starts_with(path))
            .collect()
    }

    /// Pauses this long after each sampler step.
    pub fn slow(&self, step: Duration) {
        lock(&self.state.0).step_delay = step;
    }

    /// Sets what the websocket does.
    pub fn websocket(&self, mode: Websocket) {
        lock(&self.state.0).websocket = mode;
    }

    /// Makes node `id` fail with an `execution_error` in the prompts that follow.
    pub fn fail_node(&self, id: &str) {
        lock(&self.state.0).fail_node = Some(id.to_string());
    }

    /// Returns the bytes of an uploaded input file.
    pub fn input_file(&self, name: &str) -> Option<Vec<u8>> {
        lock(&self.state.0)
            .files
            .get(&("input".into(), String::new(), name.into()))
            .cloned()
    }

    /// Returns whether the history has an entry for `prompt_id`.
    pub fn finished(&self, prompt_id: &str) -> bool {
        lock(&self.state.0).history.contains_key(prompt_id)
    }

    /// Waits until `prompt_id` finished, at most `limit`.
    pub fn wait_finished(&self, prompt_id: &str, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if self.finished(prompt_id) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn route_path(path: &str) -> &str {
    path.strip_prefix("/api")
        .filter(|p| p.starts_with('/'))
        .unwrap_or(path)
}

fn json_reply(status: u16, value: &Value) -> Reply {
    Reply::Respond(Response::json(status, value))
}

fn handle(shared: &Shared, req: &Request) -> Reply {
    let full = route_path(&req.path);
    let (path, query) = full.split_once('?').unwrap_or((full, ""));
    match (req.method.as_str(), path) {
        ("GET", "/ws") => websocket(shared, req, query),
        ("POST", "/prompt") => submit(shared, req),
        ("GET", "/prompt") => {
            let s = lock(&shared.0);
            let remaining = s.pending.len() + usize::from(s.running.is_some());
            json_reply(200, &json!({"exec_info": {"queue_remaining": remaining}}))
        }
        ("GET", "/object_info") => json_reply(200, &object_info()),
        ("GET", p) if p.starts_with("/object_info/") => {
            let class = &p["/object_info/".len()..];
            match object_info().get(class) {
                Some(info) => json_reply(200, &json!({ class: info })),
                None => json_reply(200, &json!({})),
            }
        }
        ("GET", p) if p.starts_with("/history/") => {
            let id = &p["/history/".len()..];
            match lock(&shared.0).history.get(id) {
                Some(entry) => json_reply(200, &json!({ id: entry })),
                None => json_reply(200, &json!({})),
            }
        }
        ("GET", "/view") => view(shared, query),
        ("POST", "/upload/image") => upload(shared, req),
        ("POST", "/interrupt") => {
            let mut s = lock(&shared.0);
            let wanted = serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|b| b["prompt_id"].as_str().map(str::to_string));
            if wanted.is_none() || wanted == s.running {
                s.interrupt = true;
            }
            Reply::Respond(Response::new(200))
        }
        ("GET", "/queue") => {
            let s = lock(&shared.0);
            json_reply(
                200,
                &json!({"queue_running": s.running.iter().collect::<Vec<_>>(), "queue_pending": s.pending}),
            )
        }
        ("POST", "/queue") => {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let mut s = lock(&shared.0);
            if body["clear"] == true {
                s.pending.clear();
            }
            for id in body["delete"].as_array().into_iter().flatten() {
                s.pending.retain(|p| Some(p.as_str()) != id.as_str());
            }
            Reply::Respond(Response::new(200))
        }
        _ => Reply::Respond(Response::text(404, "404: Not Found")),
    }
}

fn object_info() -> Value {
    let combo = |values: Vec<Value>| json!([values, {}]);
    let checkpoints = CHECKPOINTS.iter().map(|c| json!(c)).collect();
    let class = |required: Value, output: Value, output_node: bool| json!({"input": {"required": required}, "output": output, "output_node": output_node});
    json!({
        "CheckpointLoaderSimple": class(json!({"ckpt_name": combo(checkpoints)}), json!(["MODEL", "CLIP", "VAE"]), false),
        "CLIPTextEncode": class(json!({"text": ["STRING", {"multiline": true}], "clip": ["CLIP"]}), json!(["CONDITIONING"]), false),
        "EmptyLatentImage": class(json!({"width": ["INT", {}], "height": ["INT", {}], "batch_size": ["INT", {}]}), json!(["LATENT"]), false),
        "KSampler": class(json!({"seed": ["INT", {}], "steps": ["INT", {}], "cfg": ["FLOAT", {}],
            "sampler_name": combo(vec![json!("euler"), json!("dpmpp_2m")]),
            "scheduler": combo(vec![json!("normal"), json!("karras")]), "denoise": ["FLOAT", {}],
            "model": ["MODEL"], "positive": ["CONDITIONING"], "negative": ["CONDITIONING"], "latent_image": ["LATENT"]}),
            json!(["LATENT"]), false),
        "VAEDecode": class(json!({"samples": ["LATENT"], "vae": ["VAE"]}), json!(["IMAGE"]), false),
        "VAEEncode": class(json!({"pixels": ["IMAGE"], "vae": ["VAE"]}), json!(["LATENT"]), false),
        "LoadImage": class(json!({"image": [[], {"image_upload": true}]}), json!(["IMAGE", "MASK"]), false),
        "SaveImage": class(json!({"images": ["IMAGE"], "filename_prefix": ["STRING", {}]}), json!([]), true),
        "PreviewImage": class(json!({"images": ["IMAGE"]}), json!([]), true),
    })
}

/// Checks a graph; returns the 400 body when it is refused.
fn validate(graph: &Value, s: &State) -> Result<(), Value> {
    let invalid = |message: &str| json!({"error": {"type": "invalid_prompt", "message": message, "details": "", "extra_info": {}}, "node_errors": {}});
    let Some(nodes) = graph.as_object().filter(|n| !n.is_empty()) else {
        return Err(invalid(
            "Cannot execute because the prompt is not an object of nodes.",
        ));
    };
    let info = object_info();
    let mut node_errors = Map::new();
    let mut outputs = 0;
    for (id, node) in nodes {
        let (Some(class), Some(inputs)) = (node["class_type"].as_str(), node["inputs"].as_object())
        else {
            return Err(invalid(
                "Cannot execute because a node is missing the class_type property.",
            ));
        };
        let Some(spec) = info.get(class) else {
            return Err(invalid(&format!(
                "Cannot execute because node {class} does not exist."
            )));
        };
        if spec["output_node"] == true {
            outputs += 1;
        }
        let mut errors = Vec::new();
        for (name, value) in inputs {
            if let Some(link) = value.as_array() {
                if !link
                    .first()
                    .and_then(Value::as_str)
                    .is_some_and(|src| nodes.contains_key(src))
                {
                    errors.push(json!({"type": "bad_linked_input", "message": "Bad linked input", "details": name}));
                }
                continue;
            }
            let allowed: Option<Vec<String>> = match (class, name.as_str()) {
                ("CheckpointLoaderSimple", "ckpt_name") => {
                    Some(CHECKPOINTS.iter().map(|c| c.to_string()).collect())
                }
                ("LoadImage", "image") => Some(
                    s.files
                        .keys()
                        .filter(|(t, _, _)| t == "input")
                        .map(|(_, _, n)| n.clone())
                        .collect(),
                ),
                _ => None,
            };
            if let Some(allowed) = allowed {
                let given = value.as_str().unwrap_or_default();
                if !allowed.iter().any(|a| a == given) {
                    let list: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
                    errors.push(
                        json!({"type": "value_not_in_list", "message": "Value not in list",
                        "details": format!("{name}: '{given}' not in [{}]", list.join(", ")),
                        "extra_info": {"input_name": name}}),
                    );
                }
            }
        }
        if !errors.is_empty() {
            node_errors.insert(
                id.clone(),
                json!({"errors": errors, "dependent_outputs": [], "class_type": class}),
            );
        }
    }
    if outputs == 0 {
        return Err(
            json!({"error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}}, "node_errors": []}),
        );
    }
    if !node_errors.is_empty() {
        return Err(
            json!({"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}, "node_errors": node_errors}),
        );
    }
    Ok(())
}

fn submit(shared: &Shared, req: &Request) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return json_reply(400, &json!({"error": "no prompt", "node_errors": []}));
    };
    let graph = body["prompt"].clone();
    if graph.is_null() {
        return json_reply(
            400,
            &json!({"error": {"type": "no_prompt", "message": "No prompt provided", "details": "", "extra_info": {}}, "node_errors": []}),
        );
    }
    let mut s = lock(&shared.0);
    if let Err(refusal) = validate(&graph, &s) {
        return json_reply(400, &refusal);
    }
    s.number += 1;
    let number = s.number;
    let id = format!("{:08x}-0000-4000-8000-{:012x}", number, number);
    s.pending.push(id.clone());
    drop(s);
    let client = body["client_id"].as_str().unwrap_or_default().to_string();
    let runner = Arc::clone(shared);
    let prompt_id = id.clone();
    thread::spawn(move || execute(&runner, &prompt_id, &client, &graph));
    json_reply(
        200,
        &json!({"prompt_id": id, "number": number, "node_errors": {}}),
    )
}

/// Sends `kind` with `data` to every websocket of `client`.
fn send(s: &mut State, client: &str, kind: &str, data: Value) {
    let text = json!({"type": kind, "data": data}).to_string();
    if let Some(senders) = s.clients.get_mut(client) {
        senders.retain(|tx| tx.send(text.clone()).is_ok());
    }
}

/// Returns the node ids in an order where every node follows the nodes it links from.
fn order(nodes: &Map<String, Value>) -> Vec<String> {
    fn visit(id: &str, nodes: &Map<String, Value>, done: &mut Vec<String>) {
        if done.iter().any(|d| d == id) {
            return;
        }
        done.push(String::new()); // placeholder against cycles
        let slot = done.len() - 1;
        for value in nodes[id]["inputs"]
            .as_object()
            .into_iter()
            .flat_map(|i| i.values())
        {
            if let Some(src) = value
                .get(0)
                .and_then(Value::as_str)
                .filter(|_| value.is_array())
                && nodes.contains_key(src)
            {
                visit(src, nodes, done);
            }
        }
        done.remove(slot);
        done.push(id.to_string());
    }
    let mut done = Vec::new();
    let mut ids: Vec<&String> = nodes.keys().collect();
    ids.sort_by_key(|id| (id.parse::<u64>().unwrap_or(u64::MAX), id.to_string()));
    for id in ids {
        visit(id, nodes, &mut done);
    }
    done
}

fn execute(shared: &Shared, id: &str, client: &str, graph: &Value) {
    let _one_at_a_time = lock(&shared.1);
    let nodes = graph.as_object().cloned().unwrap_or_default();
    let signature = graph.to_string();
    {
        let mut s = lock(&shared.0);
        if !s.pending.iter().any(|p| p == id) {
            return; // deleted from the queue
        }
        s.pending.retain(|p| p != id);
        s.running = Some(id.to_string());
        s.interrupt = false;
        send(&mut s, client, "execution_start", json!({"prompt_id": id}));
    }
    if lock(&shared.0).websocket == Websocket::DropsAtStart {
        lock(&shared.0).clients.remove(client);
    }
    let cached_all = !lock(&shared.0).seen.insert(signature);
    let order = order(&nodes);
    let cached: Vec<&String> = if cached_all {
        order.iter().collect()
    } else {
        Vec::new()
    };
    let mut messages = vec![json!(["execution_start", {"prompt_id": id}])];
    send(
        &mut lock(&shared.0),
        client,
        "execution_cached",
        json!({"nodes": cached, "prompt_id": id}),
    );
    let mut outputs = Map::new();
    let mut failure = None;
    let batch = nodes
        .values()
        .find(|n| n["class_type"] == "EmptyLatentImage")
        .and_then(|n| n["inputs"]["batch_size"].as_u64())
        .unwrap_or(1);
    'nodes: for node_id in order.iter().filter(|_| !cached_all) {
        let node = &nodes[node_id];
        let class = node["class_type"].as_str().unwrap_or_default();
        let delay = {
            let mut s = lock(&shared.0);
            send(
                &mut s,
                client,
                "executing",
                json!({"node": node_id, "display_node": node_id, "prompt_id": id}),
            );
            if s.fail_node.as_deref() == Some(node_id.as_str()) {
                failure = Some(
                    json!({"prompt_id": id, "node_id": node_id, "node_type": class,
                    "exception_message": "Allocation on device failed", "exception_type": "torch.OutOfMemoryError",
                    "traceback": [], "current_inputs": {}, "current_outputs": {}}),
                );
                break 'nodes;
            }
            s.step_delay
        };
        if class == "KSampler" {
            let steps = node["inputs"]["steps"].as_u64().unwrap_or(20).clamp(1, 50);
            for value in 1..=steps {
                thread::sleep(delay);
                let mut s = lock(&shared.0);
                if s.interrupt {
                    failure = Some(Value::Null);
                    break 'nodes;
                }
                send(
                    &mut s,
                    client,
                    "progress",
                    json!({"value": value, "max": steps, "prompt_id": id, "node": node_id}),
                );
            }
        }
        if class == "SaveImage" || class == "PreviewImage" {
            let kind = if class == "SaveImage" {
                "output"
            } else {
                "temp"
            };
            let prefix = node["inputs"]["filename_prefix"]
                .as_str()
                .unwrap_or("ComfyUI")
                .to_string();
            let mut s = lock(&shared.0);
            let mut images = Vec::new();
            for i in 0..batch {
                s.counter += 1;
                let name = format!("{prefix}_{:05}_.png", s.counter);
                let shade = (s.counter * 40 % 256) as u8;
                s.files.insert(
                    (kind.into(), String::new(), name.clone()),
                    crate::media::png(8, 8, [shade, 100, i as u8]),
                );
                images.push(json!({"filename": name, "subfolder": "", "type": kind}));
            }
            let output = json!({"images": images});
            send(
                &mut s,
                client,
                "executed",
                json!({"node": node_id, "display_node": node_id, "output": output, "prompt_id": id}),
            );
            outputs.insert(node_id.clone(), output);
        }
    }
    let mut s = lock(&shared.0);
    let status = match failure {
        None => {
            send(
                &mut s,
                client,
                "executing",
                json!({"node": null, "display_node": null, "prompt_id": id}),
            );
            send(
                &mut s,
                client,
                "execution_success",
                json!({"prompt_id": id}),
            );
            messages.push(json!(["execution_success", {"prompt_id": id}]));
            "success"
        }
        Some(Value::Null) => {
            send(
                &mut s,
                client,
                "execution_interrupted",
                json!({"prompt_id": id}),
            );
            messages.push(json!(["execution_interrupted", {"prompt_id": id}]));
            outputs.clear();
            "error"
        }
        Some(error) => {
            send(&mut s, client, "execution_error", error.clone());
            messages.push(json!(["execution_error", error]));
            outputs.clear();
            "error"
        }
    };
    s.running = None;
    let number = s.number;
    s.history.insert(id.to_string(), json!({
        "prompt": [number, id, graph, {"client_id": client}, outputs.keys().collect::<Vec<_>>()],
        "outputs": outputs,
        "status": {"status_str": status, "completed": status == "success", "messages": messages},
        "meta": {}
    }));
}

fn view(shared: &Shared, query: &str) -> Reply {
    let mut params = HashMap::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.insert(k.to_string(), decode(v));
    }
    let filename = params.get("filename").cloned().unwrap_or_default();
    let subfolder = params.get("subfolder").cloned().unwrap_or_default();
    let kind = params
        .get("type")
        .cloned()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "output".into());
    if filename.is_empty() || filename.starts_with('/') || filename.contains("..") {
        return Reply::Respond(Response::new(400));
    }
    if subfolder.starts_with('/') || subfolder.contains("..") {
        return Reply::Respond(Response::new(403));
    }
    match lock(&shared.0)
        .files
        .get(&(kind, subfolder, filename.clone()))
    {
        Some(bytes) => Reply::Respond(
            Response::new(200)
                .header("Content-Type", "image/png")
                .header("Content-Disposition", format!("filename=\"{filename}\""))
                .body(bytes.clone()),
        ),
        None => Reply::Respond(Response::new(404)),
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One part of a multipart body: field name, file name, bytes.
type Part = (String, Option<String>, Vec<u8>);

/// Reads the parts of a multipart body.
fn parts(req: &Request) -> Option<Vec<Part>> {
    let content_type = req.header("content-type")?;
    let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
    let delimiter = format!("--{boundary}");
    let body = &req.body;
    let find = |from: usize, needle: &[u8]| {
        body[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut parts = Vec::new();
    let mut at = find(0, delimiter.as_bytes())? + delimiter.len();
    loop {
        if body[at..].starts_with(b"--") {
            return Some(parts);
        }
        let head_end = find(at, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&body[at..head_end]).into_owned();
        let head = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?
            .to_string();
        let next = find(head_end, format!("\r\n{delimiter}").as_bytes())?;
        let field = |key: &str| {
            head.split(';').find_map(|p| {
                p.trim()
                    .strip_prefix(&format!("{key}=\""))
                    .map(|v| v.trim_end_matches(['"', '\r', '\n']).to_string())
            })
        };
        parts.push((
            field("name")?,
            field("filename"),
            body[head_end + 4..next].to_vec(),
        ));
        at = next + 2 + delimiter.len();
    }
}

fn upload(shared: &Shared, req: &Request) -> Reply {
    let Some(parts) = parts(req) else {
        return Reply::Respond(Response::new(400));
    };
    let Some((_, Some(name), bytes)) = parts.iter().find(|(f, _, _)| f == "image").cloned() else {
        return Reply::Respond(Response::new(400));
    };
    let value = |key: &str| {
        parts
            .iter()
            .find(|(f, _, _)| f == key)
            .map(|(_, _, v)| String::from_utf8_lossy(v).into_owned())
    };
    let kind = value("type").unwrap_or_else(|| "input".into());
    let subfolder = value("subfolder").unwrap_or_default();
    let overwrite = matches!(value("overwrite").as_deref(), Some("true" | "1"));
    let mut s = lock(&shared.0);
    let mut stored = name.clone();
    let mut n = 1;
    while !overwrite
        && s.files
            .get(&(kind.clone(), subfolder.clone(), stored.clone()))
            .is_some_and(|b| *b != bytes)
    {
        let (stem, ext) = name.rsplit_once('.').unwrap_or((&name, ""));
        stored = format!("{stem} ({n}).{ext}");
        n += 1;
    }
    s.files
        .insert((kind.clone(), subfolder.clone(), stored.clone()), bytes);
    json_reply(
        200,
        &json!({"name": stored, "subfolder": subfolder, "type": kind}),
    )
}

fn websocket(shared: &Shared, req: &Request, query: &str) -> Reply {
    let Some(key) = req.header("sec-websocket-key") else {
        return Reply::Respond(Response::text(400, "not a websocket request"));
    };
    if lock(&shared.0).websocket == Websocket::Refused {
        return Reply::Respond(Response::text(404, "404: Not Found"));
    }
    let client = query
        .split('&')
        .find_map(|p| p.strip_prefix("clientId="))
        .map(decode)
        .unwrap_or_else(|| "anonymous".into());
    let (tx, rx) = channel();
    {
        let mut s = lock(&shared.0);
        let remaining = s.pending.len() + usize::from(s.running.is_some());
        let hello = json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": remaining}}, "sid": client}});
        let _ = tx.send(hello.to_string());
        s.clients.entry(client).or_default().push(tx);
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let response = Response::new(101)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Accept", accept);
    let rx = Arc::new(Mutex::new(Some(rx)));
    Reply::Upgrade(
        response,
        Takeover::new(move |stream| {
            if let Some(rx) = lock(&rx).take() {
                pump(stream, rx);
            }
        }),
    )
}

/// Sends the client's messages until it leaves or its sender is dropped.
fn pump(stream: TcpStream, rx: Receiver<String>) {
    let mut ws =
        tungstenite::WebSocket::from_raw_socket(stream, tungstenite::protocol::Role::Server, None);
    // A binary preview frame first, as ComfyUI sends while sampling: clients skip it.
    let mut preview = vec![0, 0, 0, 1, 0, 0, 0, 2];
    preview.extend_from_slice(&crate::media::png(1, 1, [0, 0, 0]));
    let _ = ws.send(tungstenite::Message::binary(preview));
    while let Ok(text) = rx.recv() {
        if ws.send(tungstenite::Message::text(text)).is_err() {
            return;
        }
    }
    let _ = ws.close(None);
    let _ = ws.flush();
}
