//! ComfyUI's HTTP routes, as the adapter uses them: submit a graph, read its history, fetch
//! and upload files, list checkpoints, and stop a prompt.

use std::time::Duration;

use launcher_sdk::http::{Client, Request, Response, Verdict};
use launcher_sdk::serde_json::{Map, Value, json};
use launcher_sdk::{Context, PluginError};

/// A ComfyUI server.
pub struct Api {
    client: Client,
    base: String,
}

/// One file a node wrote, as history and `executed` messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// The file's name.
    pub filename: String,
    /// Its folder below the type's root.
    pub subfolder: String,
    /// `output`, `temp` or `input`.
    pub kind: String,
}

/// How long a cleanup request after a cancellation may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(3);

impl Api {
    /// Returns the server at `base` (`http://host:port`, no trailing slash needed).
    pub fn new(base: &str, timeout: Duration) -> Result<Api, PluginError> {
        let client = Client::builder(concat!("launcher-comfyui/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .build()?;
        Ok(Api {
            client,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// Returns the base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Queues `graph` for `client_id`; returns the prompt id. A graph ComfyUI refuses is an
    /// invalid-input error listing each node's problems.
    pub fn submit(
        &self,
        graph: &Map<String, Value>,
        client_id: &str,
        cx: &mut Context<'_>,
    ) -> Result<String, PluginError> {
        let request = Request::post(self.url("/prompt"))
            .json(&json!({"prompt": graph, "client_id": client_id}))?
            .read_errors(|reply| match reply.json() {
                Some(body) if reply.status == 400 => Verdict::Fail(refused(&body)),
                _ => Verdict::Default,
            });
        let answer: Value = self.client.fetch(&request, cx)?.json()?;
        answer["prompt_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| PluginError::unavailable("ComfyUI accepted the prompt without an id"))
    }

    /// Returns the history entry of `prompt_id`, or `None` while it is queued or running.
    pub fn history(
        &self,
        prompt_id: &str,
        cx: &mut Context<'_>,
    ) -> Result<Option<Value>, PluginError> {
        let request = Request::get(self.url(&format!("/history/{}", encode(prompt_id))));
        let mut all: Value = self.client.fetch(&request, cx)?.json()?;
        Ok(all.get_mut(prompt_id).map(Value::take))
    }

    /// Starts downloading `file`; the body arrives as it is read.
    pub fn view(&self, file: &FileRef, cx: &mut Context<'_>) -> Result<Response, PluginError> {
        let url = self.url(&format!(
            "/view?filename={}&subfolder={}&type={}",
            encode(&file.filename),
            encode(&file.subfolder),
            encode(&file.kind)
        ));
        self.client.send(&Request::get(url), cx)
    }

    /// Uploads an image to ComfyUI's input folder; returns the name a `LoadImage` node takes.
    pub fn upload_image(
        &self,
        name: &str,
        bytes: &[u8],
        media_type: &str,
        cx: &mut Context<'_>,
    ) -> Result<String, PluginError> {
        let boundary = format!("launcher-{:016x}", crate::random_u64());
        let mut body = Vec::with_capacity(bytes.len() + 512);
        let safe_name = name.replace(['"', '\r', '\n'], "_");
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{safe_name}\"\r\n\
                 Content-Type: {media_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\ninput\r\n--{boundary}--\r\n"
            )
            .as_bytes(),
        );
        // The same bytes under the same name are stored once, so sending again is harmless.
        let request = Request::post(self.url("/upload/image"))
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .idempotent(true);
        let answer: Value = self.client.fetch(&request, cx)?.json()?;
        let stored = answer["name"]
            .as_str()
            .ok_or_else(|| PluginError::unavailable("ComfyUI stored the upload without a name"))?;
        Ok(
            match answer["subfolder"].as_str().filter(|s| !s.is_empty()) {
                Some(folder) => format!("{folder}/{stored}"),
                None => stored.to_string(),
            },
        )
    }

    /// Returns the checkpoints `CheckpointLoaderSimple` offers.
    pub fn checkpoints(&self, cx: &mut Context<'_>) -> Result<Vec<String>, PluginError> {
        let request = Request::get(self.url("/object_info/CheckpointLoaderSimple"));
        let info: Value = self.client.fetch(&request, cx)?.json()?;
        let spec = &info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"];
        Ok(combo_values(spec)
            .ok_or_else(|| PluginError::unavailable("ComfyUI listed no checkpoint loader inputs"))?
            .into_iter()
            .collect())
    }

    /// Stops `prompt_id` after the job was cancelled: interrupts it if it runs and removes
    /// it from the queue if it waits. The job's context says "cancelled" by then, so these go
    /// out on a plain connection of their own, each with a short timeout; failures are
    /// returned for the log.
    pub fn stop(&self, prompt_id: &str) -> Vec<String> {
        let mut failures = Vec::new();
        let body = json!({"prompt_id": prompt_id}).to_string();
        if let Err(e) = self.post_plain("/interrupt", &body) {
            failures.push(format!("interrupting the prompt failed: {e}"));
        }
        let body = json!({"delete": [prompt_id]}).to_string();
        if let Err(e) = self.post_plain("/queue", &body) {
            failures.push(format!("removing the prompt from the queue failed: {e}"));
        }
        failures
    }

    /// Sends one small JSON POST over plain HTTP and reads the status line.
    fn post_plain(&self, path: &str, body: &str) -> Result<(), String> {
        let request = Request::post(self.url(path))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        let answer = self
            .client
            .send_after_cancel(&request, CLEANUP_TIMEOUT)
            .map_err(|e| e.message)?;
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(format!("ComfyUI answered {}", answer.status))
        }
    }
}

/// Returns the values a combo input allows: `[[values...], {...}]`, or the newer
/// `["COMBO", {"options": [values...]}]`.
pub fn combo_values(spec: &Value) -> Option<Vec<String>> {
    let list = match spec.get(0)? {
        Value::Array(values) => values,
        Value::String(kind) if kind == "COMBO" => spec.get(1)?.get("options")?.as_array()?,
        _ => return None,
    };
    Some(
        list.iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
    )
}

/// Turns a 400 from `/prompt` into one invalid-input error naming each node's problems.
pub fn refused(body: &Value) -> PluginError {
    let error = &body["error"];
    let headline = match error {
        Value::String(text) => text.clone(),
        _ => error["message"]
            .as_str()
            .unwrap_or("the workflow is not valid")
            .to_string(),
    };
    let mut message = format!("ComfyUI refused the workflow: {headline}.");
    if let Some(details) = error["details"].as_str().filter(|d| !d.is_empty()) {
        message.push_str(&format!(" {details}"));
    }
    let mut checkpoints = false;
    if let Some(nodes) = body["node_errors"].as_object() {
        let mut ids: Vec<&String> = nodes.keys().collect();
        ids.sort_by_key(|id| (id.parse::<u64>().unwrap_or(u64::MAX), id.to_string()));
        for id in ids {
            let node = &nodes[id];
            let class = node["class_type"].as_str().unwrap_or("a node");
            for problem in node["errors"].as_array().into_iter().flatten() {
                let what = problem["message"].as_str().unwrap_or("invalid");
                let details = problem["details"].as_str().unwrap_or_default();
                checkpoints |= details.starts_with("ckpt_name");
                if details.is_empty() {
                    message.push_str(&format!("\n  node {id} ({class}): {what}"));
                } else {
                    message.push_str(&format!("\n  node {id} ({class}): {what}: {details}"));
                }
            }
        }
    }
    if checkpoints {
        message.push_str(
            "\nPick a checkpoint with --model; `launcher run models --tool comfyui` lists them.",
        );
    }
    PluginError::invalid_input(message)
}

/// Returns the files a node's output names: every list of objects with a `filename`
/// (`images`, `gifs`, `videos`, `audio`, ...).
pub fn files_of(output: &Value) -> Vec<FileRef> {
    let mut files = Vec::new();
    for list in output.as_object().into_iter().flat_map(|o| o.values()) {
        for item in list.as_array().into_iter().flatten() {
            if let Some(filename) = item["filename"].as_str() {
                files.push(FileRef {
                    filename: filename.to_string(),
                    subfolder: item["subfolder"].as_str().unwrap_or_default().to_string(),
                    kind: item["type"].as_str().unwrap_or("output").to_string(),
                });
            }
        }
    }
    files
}

/// Percent-encodes `text` for a URL's path segment or query value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_each_node_and_the_checkpoints() {
        let body = json!({
            "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": ""},
            "node_errors": {"4": {"class_type": "CheckpointLoaderSimple", "errors": [
                {"type": "value_not_in_list", "message": "Value not in list",
                 "details": "ckpt_name: 'x' not in ['a.safetensors', 'b.safetensors']"}]}}
        });
        let err = refused(&body);
        assert_eq!(err.kind, launcher_sdk::ErrorKind::InvalidInput);
        assert!(
            err.message.contains(
                "node 4 (CheckpointLoaderSimple): Value not in list: ckpt_name: 'x' not in ['a.safetensors', 'b.safetensors']"
            ),
            "{}",
            err.message
        );
        assert!(err.message.contains("--model"));
        let old = refused(&json!({"error": "no prompt", "node_errors": []}));
        assert!(old.message.contains("no prompt"));
    }

    #[test]
    fn combos_and_files_are_read_in_both_shapes() {
        assert_eq!(combo_values(&json!([["a", "b"], {}])).unwrap(), ["a", "b"]);
        assert_eq!(
            combo_values(&json!(["COMBO", {"options": ["c"]}])).unwrap(),
            ["c"]
        );
        let files = files_of(&json!({
            "images": [{"filename": "a.png", "subfolder": "", "type": "output"}],
            "gifs": [{"filename": "v.mp4", "subfolder": "vid", "type": "output", "format": "video/h264-mp4"}],
            "text": ["not a file"]
        }));
        assert_eq!(files.len(), 2);
        assert!(files.iter().any(|f| f.subfolder == "vid"));
        assert_eq!(encode("a b/c.png"), "a%20b%2Fc.png");
    }
}
