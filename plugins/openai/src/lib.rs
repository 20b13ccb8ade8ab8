//! OpenAI-compatible APIs for launcher: OpenAI itself, local servers (Ollama, llama.cpp,
//! vLLM, LocalAI, ChatGLM2-6B's `openai_api.py`, faster-whisper-server) and Chinese providers (DeepSeek, Qianfan,
//! DashScope, Moonshot, Zhipu, Hunyuan), each a profile and a tool of its own (see
//! [`profiles`]), plus the user's own profiles from `config.toml`.
//!
//! Tasks: `chat` (streamed token by token to stdout as it arrives, or whole with
//! `--stream false`), `complete` (base models), `embed` and `models`; and where a profile
//! offers them (openai, localai, whisper) `stt`, `tts` (see [`speech`]) and `txt2img` (see
//! [`images`]). The `model` setting names the text model; the media tasks take `--model` or
//! the profile's default for the task (OpenAI: whisper-1, tts-1, dall-e-3), except on a
//! profile without text tasks (whisper), where the setting names the media model.
//!
//! **Retries.** Chat, completion and embedding requests are billed per token and take no
//! idempotency key, and a server that failed with a 5xx or timed out may have generated (and
//! billed) the answer. So they are never sent again after such a failure: the SDK's client
//! resends a POST only when the service cannot have acted on it (no connection was made, a
//! 429). A 429 that says the account has no credit (`insufficient_quota`, DeepSeek's 402) is
//! not retried at all, and a 429 that gives its wait only in `x-ratelimit-reset-*` is retried
//! after that wait. llama.cpp answers 503 while it loads its model; that request was not
//! acted on, so it is sent again until [`LOADING_DEADLINE`] has passed.
//!
//! **Ollama.** The `ollama` tool speaks Ollama's native API for chat (`/api/chat`), complete
//! (`/api/generate`), both streamed as JSON lines, and models (`/api/tags`); a model the
//! server does not have is pulled (`/api/pull`, with progress) when `--pull` is given, and
//! otherwise the error says how to pull it. Embeddings stay on the OpenAI-compatible
//! `/v1/embeddings`, and a job that names no model takes the first of `/v1/models`.

use std::time::{Duration, Instant};

use launcher_sdk::http::{Client, Request, Response};
use launcher_sdk::remote::Image;
use launcher_sdk::serde_json::{Map, Value, json};
use launcher_sdk::{
    Context, DescribeRequest, ErrorKind, Job, JobResult, LogLevel, Manifest, Plugin, PluginError,
    Settings, ToolSpec, export_plugin,
};
use serde::Deserialize;

pub mod api;
pub mod images;
mod ollama;
pub mod profiles;
pub mod speech;

use api::{Completion, ErrorContext, ModelList};
use profiles::Profile;

/// How long a request is sent again while the server answers that it is loading its model.
pub const LOADING_DEADLINE: Duration = Duration::from_secs(120);

/// How long one request may take when the `timeout` setting is absent. Local models on a
/// CPU can take minutes for a long answer.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The longest the `timeout` setting may be: a day, for long streamed answers of slow local
/// models.
const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

/// A streamed answer may go on for long; the client's timeout covers the whole body.
pub(crate) const STREAM_TIMEOUT: Duration = Duration::from_secs(3600);

/// One configured profile.
pub struct OpenAi {
    client: Client,
    profile: Profile,
    timeout: Duration,
}

#[derive(Deserialize)]
pub(crate) struct ChatParams {
    prompt: String,
    system: Option<String>,
    model: Option<String>,
    temperature: Option<f64>,
    max_tokens: Option<u64>,
    seed: Option<u64>,
    #[serde(default = "yes")]
    stream: bool,
    json_schema: Option<String>,
    #[serde(default)]
    image: Images,
    /// The `ollama` tool's `--pull`.
    #[serde(default)]
    pull: bool,
}

fn yes() -> bool {
    true
}

/// `--image` given once or several times.
#[derive(Deserialize, Default)]
#[serde(untagged)]
pub(crate) enum Images {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Images {
    fn paths(&self) -> Vec<&str> {
        match self {
            Images::None => Vec::new(),
            Images::One(p) => vec![p.as_str()],
            Images::Many(ps) => ps.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Deserialize)]
struct EmbedParams {
    input: String,
    model: Option<String>,
}

impl Plugin for OpenAi {
    fn manifest() -> Manifest {
        let mut manifest = Manifest::new("openai", env!("CARGO_PKG_VERSION"))
            .description("OpenAI-compatible chat, completions and embeddings, cloud and local")
            .configured_tools();
        for b in profiles::BUILTINS {
            manifest = manifest.tool(profiles::builtin_tool(b));
        }
        manifest
    }

    fn describe(request: &DescribeRequest) -> Result<Vec<ToolSpec>, PluginError> {
        let mut tools = Self::manifest().tools;
        tools.extend(profiles::user_tools(&request.config)?);
        Ok(match &request.tool {
            Some(id) => tools.into_iter().filter(|t| &t.id == id).collect(),
            None => tools,
        })
    }

    fn new(tool: &str, settings: &Settings) -> Result<Self, PluginError> {
        let profile = profiles::resolve(tool, settings)?;
        let timeout = settings.seconds("timeout", DEFAULT_TIMEOUT, MAX_TIMEOUT)?;
        let client = Client::builder(format!("launcher-openai/{}", env!("CARGO_PKG_VERSION")))
            .secrets_from(settings)
            .timeout(timeout)
            .build()?;
        Ok(OpenAi {
            client,
            profile,
            timeout,
        })
    }

    fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let native = self.profile.native_url.is_some();
        let result = match job.task.as_str() {
            "chat" if native => self.ollama_generate(job, true, cx),
            "complete" if native => self.ollama_generate(job, false, cx),
            "models" if native => self.ollama_models(cx),
            "chat" => self.chat(job, cx),
            "complete" => self.complete(job, cx),
            "embed" => self.embed(job, cx),
            "models" => self.models(cx),
            "stt" => self.stt(job, cx),
            "tts" => self.tts(job, cx),
            "txt2img" => self.txt2img(job, cx),
            other => Err(PluginError::invalid_input(format!(
                "tool `{}` does not perform task `{other}`",
                self.profile.id
            ))),
        };
        result.map_err(|err| self.advise(err))
    }
}

impl OpenAi {
    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.profile.base_url)
    }

    /// Returns a request to `path` with the profile's auth, headers and error reader.
    fn request(&self, request: Request, model: Option<&str>) -> Request {
        let mut request = request;
        if let Some(key) = &self.profile.key {
            request = request.secret_header("Authorization", format!("Bearer {key}"));
        }
        for (name, value) in &self.profile.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let context = ErrorContext {
            key_source: self.profile.key_source.clone(),
            model: model.map(str::to_string),
        };
        request.read_errors(move |reply| api::read_error(reply, &context))
    }

    /// Sends `request`, again while the server is loading its model, up to
    /// [`LOADING_DEADLINE`].
    fn send(&self, request: &Request, cx: &mut Context<'_>) -> Result<Response, PluginError> {
        let start = Instant::now();
        let mut wait = Duration::from_millis(250);
        loop {
            match self.client.send(request, cx) {
                Err(err) if api::is_loading_error(&err) && start.elapsed() < LOADING_DEADLINE => {
                    cx.log(
                        LogLevel::Info,
                        format!(
                            "the server is loading the model; asking again in {} ms",
                            wait.as_millis()
                        ),
                    );
                    cx.sleep(wait)?;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    /// Adds what the user can do to an error.
    fn advise(&self, mut err: PluginError) -> PluginError {
        if err.kind == ErrorKind::Unavailable && err.message.starts_with("cannot reach") {
            err.message = format!(
                "the server of `{}` at {} does not answer: {}",
                self.profile.id, self.profile.base_url, err.message
            );
            if err.hint.is_none() {
                err.hint = Some(if self.profile.local {
                    format!(
                        "start the server, or point {} at where it runs",
                        self.profile.base_source
                    )
                } else {
                    format!("check {}", self.profile.base_source)
                });
            }
        }
        err
    }

    /// Returns the model to use: the job's, the profile's, else the server's first.
    fn model(&self, asked: Option<&str>, cx: &mut Context<'_>) -> Result<String, PluginError> {
        if let Some(model) = asked.or(self.profile.model.as_deref()) {
            return Ok(model.to_string());
        }
        let list = self.list_models(cx)?;
        let first = list.data.into_iter().next().ok_or_else(|| {
            PluginError::invalid_input("no model was named and the server lists none")
                .with_hint("name one with --model, or set the `model` setting")
        })?;
        cx.log(
            LogLevel::Info,
            format!("no model named; using the server's first, `{}`", first.id),
        );
        Ok(first.id)
    }

    fn list_models(&self, cx: &mut Context<'_>) -> Result<ModelList, PluginError> {
        let request = self.request(Request::get(self.url("models")), None);
        self.client.fetch(&request, cx)?.json()
    }

    /// Adds to a "model not found" error the server's models that come close.
    fn model_not_found(&self, err: PluginError, model: &str, cx: &mut Context<'_>) -> PluginError {
        if err.kind != ErrorKind::InvalidInput || !err.message.contains("HTTP 404") {
            return err;
        }
        let Ok(list) = self.list_models(cx) else {
            return err;
        };
        let close = api::close_models(model, &list.data);
        let hint = if close.is_empty() {
            let all: Vec<&str> = list.data.iter().take(10).map(|m| m.id.as_str()).collect();
            format!("the server offers: {}", all.join(", "))
        } else {
            format!("did you mean {}?", close.join(", "))
        };
        err.with_hint(hint)
    }

    fn messages(&self, job: &Job, p: &ChatParams) -> Result<Vec<Value>, PluginError> {
        let mut messages = Vec::new();
        if let Some(system) = p.system.as_deref().filter(|s| !s.is_empty()) {
            messages.push(json!({"role": "system", "content": system}));
        }
        for turn in &job.history {
            messages.push(json!({"role": turn.role, "content": turn.content}));
        }
        let images = p.image.paths();
        if images.is_empty() {
            messages.push(json!({"role": "user", "content": p.prompt}));
        } else {
            let mut parts = vec![json!({"type": "text", "text": p.prompt})];
            for path in images {
                parts.push(json!({"type": "image_url", "image_url": {"url": vision_image(path)?.reference()}}));
            }
            messages.push(json!({"role": "user", "content": parts}));
        }
        Ok(messages)
    }

    fn chat(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let p: ChatParams = job.params()?;
        let model = self.model(p.model.as_deref(), cx)?;
        let mut body = Map::new();
        body.insert("model".into(), json!(model));
        body.insert("messages".into(), json!(self.messages(job, &p)?));
        if let Some(schema) = &p.json_schema {
            body.insert("response_format".into(), response_format(schema)?);
        }
        self.sampling(&mut body, p.temperature, p.max_tokens, p.seed);
        self.generate("chat/completions", body, &model, p.stream, cx)
    }

    fn complete(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let p: ChatParams = job.params()?;
        let model = self.model(p.model.as_deref(), cx)?;
        let mut body = Map::new();
        body.insert("model".into(), json!(model));
        body.insert("prompt".into(), json!(p.prompt));
        self.sampling(&mut body, p.temperature, p.max_tokens, p.seed);
        self.generate("completions", body, &model, p.stream, cx)
    }

    fn sampling(
        &self,
        body: &mut Map<String, Value>,
        temperature: Option<f64>,
        max_tokens: Option<u64>,
        seed: Option<u64>,
    ) {
        if let Some(t) = temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(n) = max_tokens {
            body.insert("max_tokens".into(), json!(n));
        }
        if let Some(seed) = seed {
            body.insert("seed".into(), json!(seed));
        }
    }

    /// Runs a chat or completion request and writes its text as it arrives.
    fn generate(
        &self,
        path: &str,
        mut body: Map<String, Value>,
        model: &str,
        stream: bool,
        cx: &mut Context<'_>,
    ) -> Result<JobResult, PluginError> {
        body.insert("stream".into(), json!(stream));
        if stream && self.profile.include_usage {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        let mut request = self
            .request(Request::post(self.url(path)), Some(model))
            .json(&body)?;
        if stream {
            request = request.timeout(STREAM_TIMEOUT.max(self.timeout));
        }
        let response = match self.send(&request, cx) {
            Ok(response) => response,
            Err(err) => return Err(self.model_not_found(err, model, cx)),
        };
        let mut info = Map::new();
        let mut finish = None;
        if stream {
            let mut events = response.events();
            while let Some(event) = events.next_expecting_done(&*cx)? {
                if let Some(err) = event.error() {
                    return Err(err);
                }
                let value: Value = event.json()?;
                if let Some(err) = api::stream_error(&value) {
                    return Err(err);
                }
                let chunk: Completion =
                    launcher_sdk::serde_json::from_value(value).map_err(|e| {
                        PluginError::unavailable(format!(
                            "the server sent a chunk that cannot be read: {e}"
                        ))
                    })?;
                for choice in &chunk.choices {
                    let text = choice.text();
                    if !text.is_empty() {
                        cx.text(text)?;
                    }
                    if let Some(reason) = &choice.finish_reason {
                        finish = Some(reason.clone());
                    }
                }
                api::record(&mut info, &chunk);
            }
        } else {
            let answer: Completion = response.json(&*cx)?;
            for choice in answer.choices.iter().take(1) {
                cx.text(choice.text())?;
                finish = choice.finish_reason.clone();
            }
            api::record(&mut info, &answer);
        }
        if let Some(reason) = finish {
            if reason == "length" {
                cx.log(
                    LogLevel::Warn,
                    "the answer was cut off at the token limit (finish_reason: length); raise \
                     --max-tokens for a longer one",
                );
            }
            info.insert("finish_reason".into(), json!(reason));
        }
        Ok(JobResult { info })
    }

    fn embed(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let p: EmbedParams = job.params()?;
        let model = self.model(p.model.as_deref(), cx)?;
        let request = self
            .request(Request::post(self.url("embeddings")), Some(&model))
            .json(&json!({"model": model, "input": p.input}))?;
        let response = match self.send(&request, cx) {
            Ok(response) => response,
            Err(err) => return Err(self.model_not_found(err, &model, cx)),
        };
        let answer: Value = response.json(&*cx)?;
        let vector = answer
            .pointer("/data/0/embedding")
            .filter(|v| v.is_array())
            .cloned()
            .ok_or_else(|| PluginError::unavailable("the server's answer holds no embedding"))?;
        let dimensions = vector.as_array().map_or(0, Vec::len);
        let model = answer.get("model").cloned().unwrap_or_else(|| json!(model));
        let mut out = json!({"model": model, "dimensions": dimensions, "embedding": vector});
        let mut info = Map::new();
        if let Some(usage) = answer.get("usage").filter(|u| u.is_object()) {
            out["usage"] = usage.clone();
            info.insert("usage".into(), usage.clone());
        }
        cx.json("embedding", &out)?;
        info.insert("model".into(), model);
        Ok(JobResult { info })
    }

    fn models(&self, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let list = self.list_models(cx)?;
        let models: Vec<Value> = list
            .data
            .iter()
            .map(|m| {
                let mut entry = json!({"id": m.id, "name": m.id});
                if let Some(owner) = &m.owned_by {
                    entry["owned_by"] = json!(owner);
                }
                entry
            })
            .collect();
        cx.json("models", &models)?;
        Ok(JobResult::default())
    }
}

/// Reads an image file for a vision model; servers take it inline, with no cap of their own.
pub(crate) fn vision_image(path: &str) -> Result<Image, PluginError> {
    Image::load(path, u64::MAX, "the model")
}

/// Returns `response_format` for a JSON Schema file: the file may hold the schema itself or
/// OpenAI's `{name, schema, strict}` wrapper.
pub(crate) fn response_format(path: &str) -> Result<Value, PluginError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PluginError::invalid_input(format!("cannot read `{path}`: {e}")))?;
    let schema: Value = launcher_sdk::serde_json::from_str(&text)
        .map_err(|e| PluginError::invalid_input(format!("`{path}` is not JSON: {e}")))?;
    let wrapped = if schema.get("schema").is_some() && schema.get("name").is_some() {
        schema
    } else {
        json!({"name": "answer", "schema": schema, "strict": true})
    };
    Ok(json!({"type": "json_schema", "json_schema": wrapped}))
}

export_plugin!(OpenAi);
