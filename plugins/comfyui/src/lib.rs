//! ComfyUI for launcher: jobs are workflows in ComfyUI's API format with named parameters.
//!
//! Tasks: `txt2img` and `img2img` run the built-in workflows (`workflows/*.json`: checkpoint
//! loader, two text encodes, an empty or encoded latent, KSampler, VAE decode, save) or the
//! user's own (`--workflow FILE`, or `--workflow NAME` for `NAME.json` in the directory the
//! `workflows` setting names, `[tools.comfyui] workflows = "DIR"`). A workflow exposes
//! parameters through a small mapping, described in [`workflow`]; `launcher run comfyui
//! --workflow my.json --help` shows them (the tool is described by `workflow`). `models`
//! lists the checkpoints from `/object_info/CheckpointLoaderSimple`.
//!
//! **A job.** Image parameters are uploaded with `/upload/image`; the websocket `/ws` is
//! opened with a fresh client id, the graph is queued with `POST /prompt` and the prompt id is
//! recorded as the job's checkpoint (`{"prompt_id", "client_id"}`). Progress follows the
//! websocket (`executing` names the node, `progress` its steps; one bar per node); when the
//! websocket cannot be opened or breaks, `/history/{id}` is polled instead. Every file the
//! outputs name (images, and the videos or sounds of video workflows) is streamed from
//! `/view` into an output named by its kind: `image`, `image-2`, ..., `video`, `audio`.
//!
//! **Resume, detach, cancel.** With `job.resume` the graph is not submitted again: the
//! recorded prompt is followed (the same client id gets its messages) and collected. With
//! `job.detach` the job ends once the prompt is queued. A cancelled job interrupts its prompt
//! (`POST /interrupt`) and removes it from the queue (`POST /queue {"delete": [id]}`).
//!
//! **Errors.** A graph ComfyUI refuses (400 with `node_errors`) is one message with a line
//! per node: its id, class and each problem, such as "ckpt_name: 'x' not in [...]", which
//! lists the checkpoints that exist. An `execution_error` names the node and the exception.
//!
//! **Readiness.** The tool is ready only when its `url` is set (`COMFYUI_URL`); a job run
//! anyway goes to `http://127.0.0.1:8188`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::time::{Duration, Instant};

use launcher_sdk::serde_json::{Map, Value, json};
use launcher_sdk::wait::{Poll, Status};
use launcher_sdk::{
    Context, DescribeRequest, ErrorKind, Job, JobResult, LogLevel, Manifest, ParamSpec, ParamType,
    Plugin, PluginError, SettingSpec, Settings, ToolSpec, export_plugin, media,
};

pub mod api;
pub mod socket;
pub mod workflow;

use api::{Api, FileRef};
use socket::Socket;
use workflow::Workflow;

/// Where ComfyUI listens unless the `url` setting says otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8188";

/// The tool id.
const TOOL: &str = "comfyui";

/// The tasks that run a workflow.
const GENERATE: [&str; 2] = ["txt2img", "img2img"];

/// How long one HTTP request may take (a `/view` download included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the websocket may stay silent before history is asked whether the prompt ended.
const SILENCE: Duration = Duration::from_secs(5);

/// A ComfyUI server and the user's workflows directory.
pub struct ComfyUi {
    api: Api,
    workflows: Option<String>,
}

impl Plugin for ComfyUi {
    fn manifest() -> Manifest {
        Manifest::new("comfyui", env!("CARGO_PKG_VERSION"))
            .description("ComfyUI workflows: built-in txt2img and img2img, or your own")
            .tool(tool(builtin_params()))
    }

    fn describe(request: &DescribeRequest) -> Result<Vec<ToolSpec>, PluginError> {
        let given = request.args.get("workflow").and_then(Value::as_str);
        let (Some(TOOL), Some(given)) = (request.tool.as_deref(), given) else {
            return Ok(Self::manifest().tools);
        };
        let dir = request
            .config
            .get(TOOL)
            .and_then(|c| c["workflows"].as_str());
        let workflow = Workflow::load(&workflow::locate(given, dir)?)?;
        let params = workflow
            .specs()
            .into_iter()
            .map(|p| p.only_for(&GENERATE))
            .collect();
        let mut spec = tool(params);
        if !workflow.description.is_empty() {
            spec.description = format!("ComfyUI workflow `{given}`: {}", workflow.description);
        }
        Ok(vec![spec])
    }

    fn new(_tool: &str, settings: &Settings) -> Result<Self, PluginError> {
        let url = settings.get("url").unwrap_or(DEFAULT_URL);
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(PluginError::invalid_input(format!(
                "setting `url` is `{url}`; give an http:// address such as {DEFAULT_URL}"
            )));
        }
        Ok(ComfyUi {
            api: Api::new(url, REQUEST_TIMEOUT)?,
            workflows: settings.get("workflows").map(str::to_string),
        })
    }

    fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        match job.task.as_str() {
            "models" => self.models(cx),
            task if GENERATE.contains(&task) => self.generate(job, cx),
            other => Err(PluginError::invalid_input(format!(
                "comfyui does not perform task `{other}`"
            ))),
        }
    }
}

export_plugin!(ComfyUi);

/// The tool with `params` (a workflow's) and the parameters and settings it always has.
fn tool(params: Vec<ParamSpec>) -> ToolSpec {
    let mut spec = ToolSpec::new(TOOL, &["txt2img", "img2img", "models"])
        .description("runs ComfyUI workflows: built-in txt2img and img2img, or your own (--workflow)")
        .setting(SettingSpec::new(
            "url",
            "COMFYUI_URL",
            "the ComfyUI server, e.g. http://127.0.0.1:8188",
        ))
        .setting(SettingSpec::new(
            "workflows",
            "COMFYUI_WORKFLOWS",
            "a directory of workflows that --workflow NAME may name",
        ))
        .require_one_of(&["url"])
        .described_by("workflow")
        .param(
            ParamSpec::new(
                "workflow",
                ParamType::String,
                "a workflow in ComfyUI's API format: a file, or a name in the `workflows` directory",
            )
            .only_for(&GENERATE),
        );
    spec.params.extend(params);
    spec
}

/// The built-in workflows' parameters, each limited to the tasks whose workflow has it.
fn builtin_params() -> Vec<ParamSpec> {
    let mut params: Vec<ParamSpec> = Vec::new();
    for (task, _) in workflow::BUILTIN {
        let workflow = Workflow::builtin(task).expect("a built-in workflow");
        for spec in workflow.specs() {
            match params.iter_mut().find(|p| {
                ParamSpec {
                    tasks: Vec::new(),
                    ..(*p).clone()
                } == spec
            }) {
                Some(same) => same.tasks.push(task.to_string()),
                None => params.push(spec.only_for(&[task])),
            }
        }
    }
    params
}

impl ComfyUi {
    fn models(&self, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let checkpoints = self.api.checkpoints(cx)?;
        let list: Vec<Value> = checkpoints
            .iter()
            .map(|name| json!({"id": name, "name": name}))
            .collect();
        cx.json("models", &list)?;
        Ok(JobResult::default())
    }

    fn generate(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let mut info = Map::new();
        let (prompt_id, client_id, classes) = match &job.resume {
            Some(checkpoint) => {
                let id = checkpoint["prompt_id"].as_str().ok_or_else(|| {
                    PluginError::invalid_input("the job's checkpoint names no ComfyUI prompt")
                })?;
                let client = checkpoint["client_id"].as_str().unwrap_or_default();
                cx.log(LogLevel::Info, format!("collecting ComfyUI prompt {id}"));
                (id.to_string(), client.to_string(), Map::new())
            }
            None => {
                let workflow = self.prepare(job, cx, &mut info)?;
                let client_id = format!("launcher-{:016x}", random_u64());
                let socket = self.open_socket(&client_id, cx);
                let prompt_id = self.api.submit(&workflow.graph, &client_id, cx)?;
                cx.checkpoint(&json!({"prompt_id": prompt_id, "client_id": client_id}))?;
                info.insert("prompt_id".into(), json!(prompt_id));
                if job.detach {
                    return Ok(JobResult { info });
                }
                let classes = workflow.graph;
                let entry = self.wait(&prompt_id, socket, &classes, cx)?;
                self.collect(&prompt_id, &entry, cx)?;
                return Ok(JobResult { info });
            }
        };
        info.insert("prompt_id".into(), json!(prompt_id));
        let entry = match self.api.history(&prompt_id, cx)? {
            Some(entry) => entry,
            None => {
                let socket = (!client_id.is_empty())
                    .then(|| self.open_socket(&client_id, cx))
                    .flatten();
                self.wait(&prompt_id, socket, &classes, cx)?
            }
        };
        self.collect(&prompt_id, &entry, cx)?;
        Ok(JobResult { info })
    }

    /// Loads the job's workflow and sets its parameters (uploading images, drawing seeds).
    fn prepare(
        &self,
        job: &Job,
        cx: &mut Context<'_>,
        info: &mut Map<String, Value>,
    ) -> Result<Workflow, PluginError> {
        let (mut workflow, label) = match job.str("workflow") {
            Some(given) => {
                let path = workflow::locate(given, self.workflows.as_deref())?;
                (Workflow::load(&path)?, given.to_string())
            }
            None => (
                Workflow::builtin(&job.task).expect("generation tasks have a built-in workflow"),
                format!("built-in {}", job.task),
            ),
        };
        info.insert("workflow".into(), json!(label));
        for (name, _) in &job.params {
            if name != "workflow" && !workflow.params.iter().any(|p| &p.name == name) {
                cx.log(
                    LogLevel::Warn,
                    format!(
                        "--{} is not used: workflow `{label}` has no such parameter.",
                        name.replace('_', "-")
                    ),
                );
            }
        }
        let original = workflow.clone();
        for param in workflow.params.clone() {
            let Some(mut value) = job.params.get(&param.name).cloned() else {
                continue;
            };
            // A value the graph already has changes nothing, and must not undo another
            // parameter that sets the same input.
            if original.value(&param) == Some(&value) && !param.image {
                continue;
            }
            if param.image {
                let path = value.as_str().unwrap_or_default().to_string();
                value = json!(self.upload(&path, cx)?);
            } else if param.name == "seed" && value.as_i64() == Some(-1) {
                value = json!(random_u64() & 0xFFFF_FFFF);
            }
            if param.name == "seed" {
                info.insert("seed".into(), value.clone());
            }
            workflow.set(&param, value);
        }
        Ok(workflow)
    }

    fn upload(&self, path: &str, cx: &mut Context<'_>) -> Result<String, PluginError> {
        let bytes = std::fs::read(path)
            .map_err(|e| PluginError::invalid_input(format!("cannot read image `{path}`: {e}")))?;
        let media_type = media::sniff(&bytes)
            .map(|f| f.media_type)
            .unwrap_or("application/octet-stream");
        let name = std::path::Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image.png".to_string());
        let stored = self.api.upload_image(&name, &bytes, media_type, cx)?;
        cx.log(
            LogLevel::Info,
            format!("uploaded {name} to ComfyUI as {stored}"),
        );
        Ok(stored)
    }

    /// Opens the websocket, or says why not and returns none (history is polled instead).
    fn open_socket(&self, client_id: &str, cx: &mut Context<'_>) -> Option<Socket> {
        match Socket::connect(self.api.base(), client_id) {
            Ok(socket) => Some(socket),
            Err(why) => {
                cx.log(
                    LogLevel::Info,
                    format!("The ComfyUI websocket cannot be opened ({why}); polling the history instead."),
                );
                None
            }
        }
    }

    /// Waits for `prompt_id` to end and returns its history entry; a cancelled job stops the
    /// prompt on the server.
    fn wait(
        &self,
        prompt_id: &str,
        socket: Option<Socket>,
        graph: &Map<String, Value>,
        cx: &mut Context<'_>,
    ) -> Result<Value, PluginError> {
        let result = self.wait_inner(prompt_id, socket, graph, cx);
        if result
            .as_ref()
            .is_err_and(|e| e.kind == ErrorKind::Cancelled)
        {
            for failure in self.api.stop(prompt_id) {
                cx.log(
                    LogLevel::Warn,
                    format!("Stopping ComfyUI prompt {prompt_id}: {failure}."),
                );
            }
        }
        result
    }

    fn wait_inner(
        &self,
        prompt_id: &str,
        socket: Option<Socket>,
        graph: &Map<String, Value>,
        cx: &mut Context<'_>,
    ) -> Result<Value, PluginError> {
        if let Some(mut socket) = socket
            && let Some(entry) = self.follow(&mut socket, prompt_id, graph, cx)?
        {
            return Ok(entry);
        }
        let policy = Poll::every(Duration::from_millis(250))
            .backoff(1.5)
            .max_interval(Duration::from_secs(3))
            .deadline(Duration::from_secs(24 * 3600));
        launcher_sdk::poll(cx, &policy, |cx, _| {
            Ok(match self.api.history(prompt_id, cx)? {
                Some(entry) => Status::Done(entry),
                None => Status::Pending {
                    fraction: None,
                    message: "waiting for ComfyUI".to_string(),
                },
            })
        })
    }

    /// Follows the websocket until the prompt ends; returns its history entry, or none when
    /// the websocket broke (it says why in the log).
    fn follow(
        &self,
        socket: &mut Socket,
        prompt_id: &str,
        graph: &Map<String, Value>,
        cx: &mut Context<'_>,
    ) -> Result<Option<Value>, PluginError> {
        let name = |node: &str| match graph.get(node).and_then(|n| n["class_type"].as_str()) {
            Some(class) => format!("{class} (node {node})"),
            None => format!("node {node}"),
        };
        let mut heard = Instant::now();
        loop {
            cx.check_cancelled()?;
            let message = match socket.receive() {
                Ok(Some(message)) => message,
                Ok(None) => {
                    if heard.elapsed() >= SILENCE {
                        if let Some(entry) = self.api.history(prompt_id, cx)? {
                            return Ok(Some(entry));
                        }
                        heard = Instant::now();
                    }
                    continue;
                }
                Err(why) => {
                    cx.log(
                        LogLevel::Info,
                        format!(
                            "The ComfyUI websocket failed ({why}); polling the history instead."
                        ),
                    );
                    return Ok(None);
                }
            };
            heard = Instant::now();
            let data = &message["data"];
            if data["prompt_id"].as_str() != Some(prompt_id) {
                continue;
            }
            match message["type"].as_str().unwrap_or_default() {
                "execution_start" => cx.progress(Some(0.0), "started")?,
                "execution_cached" => {
                    let count = data["nodes"].as_array().map_or(0, Vec::len);
                    cx.log(
                        LogLevel::Info,
                        format!("ComfyUI reused {count} nodes from its cache."),
                    );
                }
                "executing" => match data["node"].as_str() {
                    Some(node) => cx.progress(None, &name(node))?,
                    None => break,
                },
                "progress" => {
                    let (value, max) = (data["value"].as_f64(), data["max"].as_f64());
                    if let (Some(value), Some(max), Some(node)) =
                        (value, max, data["node"].as_str())
                        && max > 0.0
                    {
                        cx.progress(Some(value / max), &format!("{}: {value}/{max}", name(node)))?;
                    }
                }
                "executed" => {
                    if let Some(node) = data["node"].as_str() {
                        cx.log(LogLevel::Debug, format!("{} wrote its output.", name(node)));
                    }
                }
                "execution_success" => break,
                "execution_error" => return Err(execution_error(data)),
                "execution_interrupted" => {
                    return Err(PluginError::unavailable(format!(
                        "ComfyUI prompt {prompt_id} was interrupted on the server"
                    )));
                }
                _ => {}
            }
        }
        // The end was announced; history has the entry now, or very soon.
        Ok(None)
    }

    /// Downloads every file the prompt's outputs name.
    fn collect(
        &self,
        prompt_id: &str,
        entry: &Value,
        cx: &mut Context<'_>,
    ) -> Result<(), PluginError> {
        let status = &entry["status"];
        if status["status_str"].as_str() == Some("error") {
            let failure = status["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m[0] == "execution_error")
                .map(|m| execution_error(&m[1]))
                .unwrap_or_else(|| {
                    PluginError::unavailable(format!("ComfyUI prompt {prompt_id} failed"))
                });
            return Err(failure);
        }
        let mut nodes: Vec<(&String, &Value)> = entry["outputs"]
            .as_object()
            .map(|o| o.iter().collect())
            .unwrap_or_default();
        nodes.sort_by_key(|(id, _)| (id.parse::<u64>().unwrap_or(u64::MAX), id.to_string()));
        let all: Vec<FileRef> = nodes
            .iter()
            .flat_map(|(_, out)| api::files_of(out))
            .collect();
        // Previews (`temp`) repeat what a save node writes; they count only when nothing was saved.
        let saved: Vec<&FileRef> = all.iter().filter(|f| f.kind != "temp").collect();
        let files: Vec<&FileRef> = if saved.is_empty() {
            all.iter().collect()
        } else {
            saved
        };
        if files.is_empty() {
            return Err(PluginError::invalid_input(format!(
                "ComfyUI prompt {prompt_id} finished without new files: it answered an identical \
                 graph from its cache. Change a parameter (a new --seed) to run it again."
            )));
        }
        let mut counts: Vec<(String, usize)> = Vec::new();
        for file in files {
            self.download(file, &mut counts, cx)?;
        }
        Ok(())
    }

    /// Streams one file from `/view` into an output named by its kind.
    fn download(
        &self,
        file: &FileRef,
        counts: &mut Vec<(String, usize)>,
        cx: &mut Context<'_>,
    ) -> Result<(), PluginError> {
        let mut response = self.api.view(file, cx)?;
        let mut head = Vec::new();
        while head.len() < 64 {
            match response.chunk(&*cx)? {
                Some(piece) => head.extend_from_slice(&piece),
                None => break,
            }
        }
        let (media_type, extension, kind) = match media::sniff(&head) {
            Some(f) => (
                f.media_type.to_string(),
                f.extension.to_string(),
                f.kind.to_string(),
            ),
            None => by_extension(&file.filename),
        };
        let count = match counts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                counts.push((kind.clone(), 1));
                1
            }
        };
        let name = if count == 1 {
            kind
        } else {
            format!("{kind}-{count}")
        };
        let mut out = cx.output(&name, &media_type, &extension)?;
        out.write_all(&head)?;
        response.copy_to(&mut out)?;
        out.finish()
    }
}

/// Reads an `execution_error` message's data into an error naming the node.
fn execution_error(data: &Value) -> PluginError {
    let node = data["node_id"].as_str().unwrap_or("?");
    let class = data["node_type"].as_str().unwrap_or("a node");
    let kind = data["exception_type"].as_str().unwrap_or("error");
    let what = data["exception_message"]
        .as_str()
        .unwrap_or("failed")
        .trim();
    PluginError::unavailable(format!(
        "ComfyUI failed in node {node} ({class}): {kind}: {what}"
    ))
}

/// Guesses a file's media type, extension and kind from its name, for bytes `sniff` does not
/// know; a name of no known format is still written, as a file.
fn by_extension(filename: &str) -> (String, String, String) {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match media::format_for_name(&ext) {
        Some(f) => (
            f.media_type.to_string(),
            f.extension.to_string(),
            f.kind.to_string(),
        ),
        None => (
            "application/octet-stream".to_string(),
            ext,
            "file".to_string(),
        ),
    }
}

/// Returns a random number (for client ids, seeds and multipart boundaries).
pub(crate) fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrecognised_bytes_are_named_by_their_file_name() {
        assert_eq!(
            by_extension("ComfyUI_00001_.WEBM"),
            ("video/webm".into(), "webm".into(), "video".into())
        );
        assert_eq!(
            by_extension("frame.jpeg"),
            ("image/jpeg".into(), "jpg".into(), "image".into())
        );
        assert_eq!(
            by_extension("mesh.glb"),
            (
                "application/octet-stream".into(),
                "glb".into(),
                "file".into()
            )
        );
    }
}
