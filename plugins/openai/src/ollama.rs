//! Ollama's native API, for the `ollama` tool: `/api/chat` for chat and `/api/generate` for
//! complete (NDJSON streams), `/api/tags` for models, and `/api/pull` with progress when the
//! model asked for is missing and `--pull` was given. Embeddings stay on the
//! OpenAI-compatible `/v1/embeddings`, which Ollama serves with the same models.

use launcher_sdk::http::Request;
use launcher_sdk::serde_json::{Map, Value, json};
use launcher_sdk::{Context, ErrorKind, Job, JobResult, LogLevel, PluginError};

use crate::{ChatParams, OpenAi, STREAM_TIMEOUT};

impl OpenAi {
    fn native(&self, path: &str) -> String {
        let root = self.profile.native_url.as_deref().unwrap_or("");
        format!("{root}/api/{path}")
    }

    /// Runs chat (`/api/chat`) or complete (`/api/generate`) natively.
    pub(crate) fn ollama_generate(
        &self,
        job: &Job,
        chat: bool,
        cx: &mut Context<'_>,
    ) -> Result<JobResult, PluginError> {
        let p: ChatParams = job.params()?;
        let model = self.model(p.model.as_deref(), cx)?;
        let mut body = Map::new();
        body.insert("model".into(), json!(model));
        if chat {
            let mut messages = Vec::new();
            if let Some(system) = p.system.as_deref().filter(|s| !s.is_empty()) {
                messages.push(json!({"role": "system", "content": system}));
            }
            for turn in &job.history {
                messages.push(json!({"role": turn.role, "content": turn.content}));
            }
            let mut user = json!({"role": "user", "content": p.prompt});
            let images = p
                .image
                .paths()
                .into_iter()
                .map(|path| crate::vision_image(path).map(|image| image.base64_or_url()))
                .collect::<Result<Vec<_>, _>>()?;
            if !images.is_empty() {
                user["images"] = json!(images);
            }
            messages.push(user);
            body.insert("messages".into(), json!(messages));
            if let Some(schema) = &p.json_schema {
                let format = crate::response_format(schema)?;
                body.insert("format".into(), format["json_schema"]["schema"].clone());
            }
        } else {
            body.insert("prompt".into(), json!(p.prompt));
            if let Some(system) = p.system.as_deref().filter(|s| !s.is_empty()) {
                body.insert("system".into(), json!(system));
            }
        }
        let mut options = Map::new();
        if let Some(t) = p.temperature {
            options.insert("temperature".into(), json!(t));
        }
        if let Some(n) = p.max_tokens {
            options.insert("num_predict".into(), json!(n));
        }
        if let Some(seed) = p.seed {
            options.insert("seed".into(), json!(seed));
        }
        if !options.is_empty() {
            body.insert("options".into(), Value::Object(options));
        }
        body.insert("stream".into(), json!(p.stream));
        let path = if chat { "chat" } else { "generate" };
        let mut request = self
            .request(Request::post(self.native(path)), Some(&model))
            .json(&body)?;
        if p.stream {
            request = request.timeout(STREAM_TIMEOUT.max(self.timeout));
        }
        let response = match self.send(&request, cx) {
            Ok(response) => response,
            Err(err) if is_missing(&err) && p.pull => {
                self.pull(&model, cx)?;
                self.send(&request, cx)?
            }
            Err(err) if is_missing(&err) => {
                return Err(err.with_hint(format!(
                    "download it with `ollama pull {model}`, or run again with --pull"
                )));
            }
            Err(err) => return Err(err),
        };
        let piece = |value: &Value| -> String {
            let text = if chat {
                value.pointer("/message/content")
            } else {
                value.get("response")
            };
            text.and_then(Value::as_str).unwrap_or("").to_string()
        };
        let mut info = Map::new();
        info.insert("model".into(), json!(model));
        let last = if p.stream {
            let mut lines = response.json_lines();
            let mut last = None;
            while let Some(value) = lines.next::<Value>(&*cx)? {
                let text = piece(&value);
                if !text.is_empty() {
                    cx.text(&text)?;
                }
                if value.get("done") == Some(&json!(true)) {
                    last = Some(value);
                    break;
                }
            }
            last.ok_or_else(|| {
                PluginError::unavailable("Ollama's stream ended before the answer was done")
            })?
        } else {
            let value: Value = response.json(&*cx)?;
            cx.text(&piece(&value))?;
            value
        };
        for key in [
            "done_reason",
            "eval_count",
            "prompt_eval_count",
            "total_duration",
        ] {
            if let Some(v) = last.get(key) {
                info.insert(key.into(), v.clone());
            }
        }
        if last.get("done_reason").and_then(Value::as_str) == Some("length") {
            cx.log(
                LogLevel::Warn,
                "the answer was cut off at the token limit; raise --max-tokens for a longer one",
            );
        }
        Ok(JobResult { info })
    }

    /// Downloads `model` with `/api/pull`, reporting its progress.
    fn pull(&self, model: &str, cx: &mut Context<'_>) -> Result<(), PluginError> {
        cx.log(
            LogLevel::Info,
            format!("Ollama does not have `{model}`; pulling it"),
        );
        let request = self
            .request(Request::post(self.native("pull")), Some(model))
            .json(&json!({"model": model, "stream": true}))?
            .timeout(STREAM_TIMEOUT.max(self.timeout));
        let mut lines = self.send(&request, cx)?.json_lines();
        let mut success = false;
        while let Some(line) = lines.next::<Value>(&*cx)? {
            let status = line.get("status").and_then(Value::as_str).unwrap_or("");
            let fraction = match (
                line.get("completed").and_then(Value::as_f64),
                line.get("total").and_then(Value::as_f64),
            ) {
                (Some(done), Some(total)) if total > 0.0 => Some(done / total),
                _ => None,
            };
            cx.progress(fraction, &format!("pulling {model}: {status}"))?;
            success = status == "success";
        }
        if success {
            Ok(())
        } else {
            Err(PluginError::unavailable(format!(
                "pulling `{model}` ended without success"
            )))
        }
    }

    /// Lists the models Ollama has (`/api/tags`).
    pub(crate) fn ollama_models(&self, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let request = self.request(Request::get(self.native("tags")), None);
        let tags: Value = self.client.fetch(&request, cx)?.json()?;
        let models: Vec<Value> = tags
            .get("models")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|m| {
                        let name = m.get("name")?.as_str()?;
                        let mut entry = json!({"id": name, "name": name});
                        for key in ["size", "modified_at"] {
                            if let Some(v) = m.get(key) {
                                entry[key] = v.clone();
                            }
                        }
                        if let Some(details) = m.get("details") {
                            entry["details"] = details.clone();
                        }
                        Some(entry)
                    })
                    .collect()
            })
            .unwrap_or_default();
        cx.json("models", &models)?;
        Ok(JobResult::default())
    }
}

/// Whether Ollama said it does not have the model: 404 "model 'x' not found".
fn is_missing(err: &PluginError) -> bool {
    err.kind == ErrorKind::InvalidInput
        && err.message.contains("HTTP 404")
        && err.message.contains("not found")
}
