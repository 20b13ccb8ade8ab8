//! Stable Diffusion through the AUTOMATIC1111 WebUI API, as AUTOMATIC1111, Forge, SD.Next and
//! stable-diffusion.cpp's `sd-server` serve it (a Tencent HAI SD WebUI instance is the same
//! app at a remote address: set `SD_WEBUI_URL` and, with `--api-auth`, `SD_WEBUI_AUTH`).
//!
//! Tasks: `txt2img`, `img2img` (`--image`, `--strength`, `--mask`), `models` (the server's
//! checkpoints) and `samplers` (this tool's own listing). The generation call blocks until the
//! images are made, so it runs on a helper thread while this one polls `/sdapi/v1/progress`
//! for a bar with steps and time left; a server without that endpoint (sd-server) gets a
//! spinner. Cancelling sends `/sdapi/v1/interrupt`. The answer's base64 images are decoded and
//! written as they arrive, never held as a batch; each PNG carries the generation parameters
//! in a `parameters` text chunk, in A1111's own form (the server's when it wrote one).

mod images;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use launcher_sdk::http::{Client, ErrorReply, Request, Response, Verdict};
use launcher_sdk::media::{PngTextAdder, sniff};
use launcher_sdk::serde_json::{self, Map, Value, json};
use launcher_sdk::{
    ContentKind, Context, ErrorKind, Job, JobResult, LogLevel, Manifest, ParamSpec, ParamType,
    Plugin, PluginError, SettingSpec, Settings, Slot, TaskSpec, ToolSpec, export_plugin,
};

use crate::images::{Piece, Scanner};

const TOOL: &str = "sd-webui";
/// Where the WebUI listens unless told otherwise (used only when run without `url` set).
const DEFAULT_URL: &str = "http://127.0.0.1:7860";
/// How often the progress endpoint is asked.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// How long the interrupt on the way out of a cancelled job may take.
const CLEANUP: Duration = Duration::from_secs(3);

/// The sd-webui plugin: one tool for any server that speaks the WebUI API.
pub struct SdWebui {
    base: String,
    client: Client,
    /// A second client for progress, polled while the first waits for the images.
    poller: Client,
    /// The `Authorization` header for `--api-auth`, when set.
    auth: Option<String>,
}

/// The parameters of a generation, as the manifest declares them.
#[derive(serde::Deserialize)]
struct Params {
    prompt: String,
    negative: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    steps: Option<u32>,
    seed: Option<i64>,
    count: Option<u32>,
    model: Option<String>,
    checkpoint: Option<String>,
    cfg_scale: Option<f64>,
    sampler: Option<String>,
    scheduler: Option<String>,
    batch_size: Option<u32>,
    image: Option<String>,
    mask: Option<String>,
    strength: Option<f64>,
    extra: Option<String>,
}

impl Plugin for SdWebui {
    fn manifest() -> Manifest {
        let gen_tasks: &[&str] = &["txt2img", "img2img"];
        let p = ParamSpec::new;
        let tool = ToolSpec::new(TOOL, &["txt2img", "img2img", "models"])
            .description(
                "Stable Diffusion through the WebUI API (A1111, Forge, SD.Next, sd.cpp sd-server)",
            )
            .custom_task(
                TaskSpec::new("samplers", "list the samplers the server offers (JSON)").output(
                    Slot::new("samplers", ContentKind::Text).media_types(&["application/json"]),
                ),
            )
            .priority(10)
            // img2img's common parameters are fewer than txt2img's; the WebUI takes these too.
            .param(p("negative", ParamType::String, "what not to draw").only_for(&["img2img"]))
            .param(
                p("width", ParamType::Integer, "width in pixels")
                    .range(64.0, 8192.0)
                    .only_for(&["img2img"]),
            )
            .param(
                p("height", ParamType::Integer, "height in pixels")
                    .range(64.0, 8192.0)
                    .only_for(&["img2img"]),
            )
            .param(
                p("steps", ParamType::Integer, "sampling steps")
                    .range(1.0, 500.0)
                    .only_for(&["img2img"]),
            )
            .param(
                p("count", ParamType::Integer, "how many batches (n_iter)")
                    .range(1.0, 16.0)
                    .only_for(&["img2img"]),
            )
            .param(
                p("cfg_scale", ParamType::Number, "how closely to follow the prompt")
                    .range(1.0, 30.0)
                    .only_for(gen_tasks),
            )
            .param(
                p(
                    "sampler",
                    ParamType::String,
                    "the sampler, e.g. `Euler a` (`launcher run samplers --tool sd-webui` lists them)",
                )
                .only_for(gen_tasks),
            )
            .param(
                p("scheduler", ParamType::String, "the noise schedule, e.g. karras")
                    .only_for(gen_tasks),
            )
            .param(
                p("batch_size", ParamType::Integer, "images made at once in each batch")
                    .range(1.0, 16.0)
                    .only_for(gen_tasks),
            )
            .param(
                p(
                    "checkpoint",
                    ParamType::String,
                    "the checkpoint for this job only, as `models` lists it (the server's own setting is left alone); --model says the same",
                )
                .only_for(gen_tasks),
            )
            .param(
                p("mask", ParamType::File, "an inpainting mask: white is redrawn")
                    .only_for(&["img2img"]),
            )
            .param(
                p(
                    "extra",
                    ParamType::String,
                    "more WebUI request fields, as a JSON object, e.g. '{\"restore_faces\": true}'",
                )
                .only_for(gen_tasks),
            )
            .setting(SettingSpec::new(
                "url",
                "SD_WEBUI_URL",
                "the WebUI's address, e.g. http://127.0.0.1:7860 (started with --api)",
            ))
            .setting(
                SettingSpec::new(
                    "auth",
                    "SD_WEBUI_AUTH",
                    "user:password for a WebUI started with --api-auth",
                )
                .secret(),
            )
            .setting(SettingSpec::new(
                "timeout",
                "SD_WEBUI_TIMEOUT",
                "seconds a generation may take (default 1800)",
            ))
            // A local server: ready once its address is set, not because a default exists.
            .require_one_of(&["url"]);
        Manifest::new(TOOL, env!("CARGO_PKG_VERSION"))
            .description("Stable Diffusion through the AUTOMATIC1111 WebUI API")
            .tool(tool)
    }

    fn new(_tool: &str, settings: &Settings) -> Result<Self, PluginError> {
        let base = settings
            .get("url")
            .unwrap_or(DEFAULT_URL)
            .trim_end_matches('/')
            .to_string();
        // A generation of a large batch may take hours on a slow machine.
        let timeout = settings.seconds(
            "timeout",
            Duration::from_secs(1800),
            Duration::from_secs(86_400),
        )?;
        let auth = settings
            .get("auth")
            .map(|pair| format!("Basic {}", STANDARD.encode(pair.as_bytes())));
        let agent = concat!("launcher-sd-webui/", env!("CARGO_PKG_VERSION"));
        let mut client = Client::builder(agent)
            .timeout(timeout)
            .secrets_from(settings);
        let mut poller = Client::builder(agent)
            .timeout(Duration::from_secs(5))
            .retries(0)
            .secrets_from(settings);
        if let Some(header) = &auth {
            client = client.secret(header.clone());
            poller = poller.secret(header.clone());
        }
        Ok(SdWebui {
            base,
            client: client.build()?,
            poller: poller.build()?,
            auth,
        })
    }

    fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        match job.task.as_str() {
            "txt2img" | "img2img" => self.generate(job, cx),
            "models" => self.models(cx),
            "samplers" => {
                let names = self.sampler_names(cx)?;
                let list: Vec<Value> = names.iter().map(|n| json!({"id": n, "name": n})).collect();
                cx.json("samplers", &list)?;
                Ok(JobResult::default())
            }
            other => Err(PluginError::invalid_input(format!(
                "the sd-webui tool does not perform task `{other}`"
            ))),
        }
    }
}

export_plugin!(SdWebui);

impl SdWebui {
    fn request(&self, request: Request) -> Request {
        let request = request.read_errors(read_error);
        match &self.auth {
            Some(value) => request.secret_header("Authorization", value.clone()),
            None => request,
        }
    }

    fn get(&self, path: &str) -> Request {
        self.request(Request::get(format!("{}{path}", self.base)))
    }

    fn models(&self, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let list: Vec<Value> = self
            .client
            .fetch(&self.get("/sdapi/v1/sd-models"), cx)?
            .json()?;
        let models: Vec<Value> = list
            .iter()
            .map(|m| {
                json!({
                    "id": m["title"],
                    "name": m["model_name"],
                    "hash": m["hash"],
                    "filename": m["filename"],
                })
            })
            .collect();
        cx.json("models", &models)?;
        Ok(JobResult::default())
    }

    fn sampler_names(&self, cx: &mut Context<'_>) -> Result<Vec<String>, PluginError> {
        let list: Vec<Value> = self
            .client
            .fetch(&self.get("/sdapi/v1/samplers"), cx)?
            .json()?;
        Ok(list
            .iter()
            .filter_map(|s| s["name"].as_str().map(str::to_string))
            .collect())
    }

    fn generate(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let params: Params = job.params()?;
        let body = request_body(&job.task, &params)?;
        let path = format!("/sdapi/v1/{}", job.task);
        let request = self
            .request(Request::post(format!("{}{path}", self.base)))
            .json(&body)?;
        let response = match self.run_with_progress(&request, cx) {
            Err(err) if err.kind == ErrorKind::InvalidInput && err.message.contains("ampler") => {
                // A sampler the server does not have: say which it has.
                let names = self.sampler_names(cx).unwrap_or_default();
                return Err(err.with_hint(format!("the server's samplers: {}", names.join(", "))));
            }
            other => other?,
        };
        cx.progress(None, "receiving the images")?;
        let (written, rest) = write_images(response, &params, &body, cx)?;
        if written == 0 {
            return Err(PluginError::unavailable(
                "the server answered without an image",
            ));
        }
        let mut result = JobResult::default();
        result.info.insert("images".into(), written.into());
        // A1111 sends `info` as a JSON string; sd-server sends "".
        let info = match &rest["info"] {
            Value::String(text) if !text.is_empty() => {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
            }
            other => other.clone(),
        };
        if let Some(seeds) = info.get("all_seeds").filter(|s| s.is_array()) {
            result.info.insert("seeds".into(), seeds.clone());
        } else if let Some(seed) = info.get("seed") {
            result.info.insert("seeds".into(), json!([seed]));
        } else if let Some(seed) = params.seed.filter(|s| *s >= 0) {
            result.info.insert("seeds".into(), json!([seed]));
        }
        if !info.is_null() && info != "" {
            result.info.insert("server_info".into(), info);
        }
        Ok(result)
    }

    /// Sends the blocking generation request on a helper thread and shows the server's
    /// progress meanwhile; on cancellation, interrupts the server's work.
    fn run_with_progress(
        &self,
        request: &Request,
        cx: &mut Context<'_>,
    ) -> Result<Response, PluginError> {
        let stop = AtomicBool::new(false);
        let progress = self.get("/sdapi/v1/progress?skip_current_image=true");
        let mut has_progress = true;
        std::thread::scope(|s| {
            let (done, finished) = std::sync::mpsc::channel::<()>();
            let stop = &stop;
            let work = s.spawn(move || {
                let outcome = self.client.send_with(request, stop);
                let _ = done.send(());
                outcome
            });
            let mut cancelled = false;
            loop {
                // Wait for the answer first: a fast server is never asked for progress.
                match finished.recv_timeout(PROGRESS_EVERY) {
                    Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                }
                if cx.is_cancelled() {
                    cancelled = true;
                } else if has_progress {
                    match self.poller.fetch(&progress, cx) {
                        Ok(answer) => {
                            if let Ok(state) = answer.json::<Value>() {
                                cancelled = show_progress(&state, cx).is_err();
                            }
                        }
                        Err(err) if err.kind == ErrorKind::Cancelled => cancelled = true,
                        // No progress endpoint (sd-server) or a busy server: a spinner.
                        Err(_) => has_progress = false,
                    }
                } else {
                    cancelled = cx.progress(None, "generating").is_err();
                }
                if cancelled {
                    stop.store(true, Ordering::SeqCst);
                    break;
                }
            }
            let outcome = work
                .join()
                .map_err(|_| PluginError::internal("the thread sending the request panicked"))?;
            if cancelled || stop.load(Ordering::SeqCst) {
                let interrupt =
                    self.request(Request::post(format!("{}/sdapi/v1/interrupt", self.base)));
                if let Err(err) = self.client.send_after_cancel(&interrupt, CLEANUP) {
                    cx.log(
                        LogLevel::Warn,
                        format!("the server was not told to stop: {}", err.message),
                    );
                }
                return Err(PluginError::cancelled());
            }
            outcome
        })
    }
}

/// Shows the WebUI's `/progress` answer: a fraction, the step, the time left.
fn show_progress(state: &Value, cx: &mut Context<'_>) -> Result<(), PluginError> {
    let fraction = state["progress"].as_f64().unwrap_or(0.0);
    let step = state["state"]["sampling_step"].as_u64();
    let steps = state["state"]["sampling_steps"].as_u64();
    let eta = state["eta_relative"].as_f64().filter(|e| *e > 0.0);
    let mut message = match (step, steps) {
        (Some(step), Some(steps)) if steps > 0 => format!("step {step}/{steps}"),
        _ => "generating".to_string(),
    };
    if let Some(eta) = eta {
        message.push_str(&format!(", about {eta:.0} s left"));
    }
    cx.progress(Some(fraction), &message)
}

/// Builds the WebUI request body from the job's parameters.
fn request_body(task: &str, p: &Params) -> Result<Value, PluginError> {
    let mut body = Map::new();
    let mut put = |key: &str, value: Value| {
        body.insert(key.to_string(), value);
    };
    put("prompt", p.prompt.clone().into());
    if let Some(v) = &p.negative {
        put("negative_prompt", v.clone().into());
    }
    // Always sent: servers default to 512, and sd-server to a slow size.
    put("width", p.width.unwrap_or(512).into());
    put("height", p.height.unwrap_or(512).into());
    if let Some(v) = p.steps {
        put("steps", v.into());
    }
    put("seed", p.seed.unwrap_or(-1).into());
    if let Some(v) = p.cfg_scale {
        put("cfg_scale", v.into());
    }
    if let Some(v) = &p.sampler {
        put("sampler_name", v.clone().into());
    }
    if let Some(v) = &p.scheduler {
        put("scheduler", v.clone().into());
    }
    put("batch_size", p.batch_size.unwrap_or(1).into());
    put("n_iter", p.count.unwrap_or(1).into());
    let checkpoint = match (&p.checkpoint, &p.model) {
        (Some(a), Some(b)) if a != b => {
            return Err(PluginError::invalid_input(
                "--checkpoint and --model name different checkpoints; give one",
            ));
        }
        (Some(a), _) | (None, Some(a)) => Some(a.clone()),
        (None, None) => None,
    };
    if let Some(name) = checkpoint {
        // For this request only: the server's global option is left as it is.
        put("override_settings", json!({"sd_model_checkpoint": name}));
        put("override_settings_restore_afterwards", true.into());
    }
    if task == "img2img" {
        let image = p
            .image
            .as_deref()
            .ok_or_else(|| PluginError::invalid_input("img2img needs --image"))?;
        put("init_images", json!([encode_file(image)?]));
        if let Some(v) = p.strength {
            put("denoising_strength", v.into());
        }
        if let Some(mask) = &p.mask {
            put("mask", encode_file(mask)?.into());
        }
    }
    if let Some(extra) = &p.extra {
        let fields: Map<String, Value> = serde_json::from_str(extra).map_err(|e| {
            PluginError::invalid_input(format!("--extra is not a JSON object: {e}"))
        })?;
        let clash: Vec<&String> = fields.keys().filter(|k| body.contains_key(*k)).collect();
        if !clash.is_empty() {
            let names: Vec<&str> = clash.iter().map(|k| k.as_str()).collect();
            return Err(PluginError::invalid_input(format!(
                "--extra sets {}, which the command line already sets; use the parameters for those",
                names.join(", ")
            )));
        }
        body.extend(fields);
    }
    Ok(Value::Object(body))
}

fn encode_file(path: &str) -> Result<String, PluginError> {
    let bytes = std::fs::read(path)
        .map_err(|e| PluginError::invalid_input(format!("cannot read {path}: {e}")))?;
    Ok(STANDARD.encode(bytes))
}

/// Builds A1111's text form of the generation parameters, for an image that came without it.
fn infotext(p: &Params, body: &Value, index: usize) -> String {
    let mut text = p.prompt.clone();
    if let Some(negative) = &p.negative {
        text.push_str(&format!("\nNegative prompt: {negative}"));
    }
    let mut fields: Vec<String> = Vec::new();
    if let Some(steps) = p.steps {
        fields.push(format!("Steps: {steps}"));
    }
    if let Some(sampler) = &p.sampler {
        fields.push(format!("Sampler: {sampler}"));
    }
    if let Some(scheduler) = &p.scheduler {
        fields.push(format!("Schedule type: {scheduler}"));
    }
    if let Some(cfg) = p.cfg_scale {
        fields.push(format!("CFG scale: {cfg}"));
    }
    // A1111 gives the images of a batch consecutive seeds.
    if let Some(seed) = p.seed.filter(|s| *s >= 0) {
        fields.push(format!("Seed: {}", seed + index as i64));
    }
    fields.push(format!("Size: {}x{}", body["width"], body["height"]));
    if let Some(model) = body["override_settings"]["sd_model_checkpoint"].as_str() {
        fields.push(format!("Model: {model}"));
    }
    if let Some(strength) = p.strength {
        fields.push(format!("Denoising strength: {strength}"));
    }
    text.push('\n');
    text.push_str(&fields.join(", "));
    text
}

/// Reads the answer as it arrives, writing each image as its own output (`image`, `image-2`,
/// ...) in the format its bytes say, a PNG with a `parameters` text chunk. Returns how many
/// images were written and the rest of the answer, parsed.
///
/// One decoded image is held at a time (an output being written borrows the job's context,
/// which reading the answer needs too), never the batch.
fn write_images(
    mut response: Response,
    p: &Params,
    body: &Value,
    cx: &mut Context<'_>,
) -> Result<(usize, Value), PluginError> {
    let mut scanner = Scanner::new();
    let mut written = 0usize;
    let mut current: Option<(usize, Vec<u8>)> = None;
    while let Some(chunk) = response.chunk(&*cx)? {
        let mut events: Vec<(usize, Option<Vec<u8>>)> = Vec::new();
        scanner.feed(&chunk, &mut |piece| {
            match piece {
                Piece::Bytes { index, bytes } => events.push((index, Some(bytes.to_vec()))),
                Piece::End { index } => events.push((index, None)),
            }
            Ok(())
        })?;
        for (index, bytes) in events {
            match bytes {
                Some(bytes) => {
                    let buffer = match &mut current {
                        Some((i, buffer)) if *i == index => buffer,
                        _ => {
                            current = Some((index, Vec::new()));
                            &mut current.as_mut().expect("just set").1
                        }
                    };
                    buffer.extend_from_slice(&bytes);
                }
                None => {
                    let data = current.take().map(|(_, b)| b).unwrap_or_default();
                    write_one(index, &data, p, body, cx)?;
                    written += 1;
                }
            }
        }
    }
    Ok((written, scanner.finish()?))
}

fn write_one(
    index: usize,
    data: &[u8],
    p: &Params,
    body: &Value,
    cx: &mut Context<'_>,
) -> Result<(), PluginError> {
    let format = sniff(data)
        .filter(|f| f.kind == ContentKind::Image)
        .ok_or_else(|| {
            PluginError::unavailable(format!(
                "image {} of the answer is not an image launcher knows",
                index + 1
            ))
        })?;
    let name = if index == 0 {
        "image".to_string()
    } else {
        format!("image-{}", index + 1)
    };
    let mut out = cx.output(&name, format.media_type, format.extension)?;
    if format.media_type == "image/png" {
        let mut adder = PngTextAdder::new("parameters", &infotext(p, body, index));
        adder.write(data, &mut out)?;
    } else {
        std::io::Write::write_all(&mut out, data)?;
    }
    out.finish()
}

/// Turns the WebUI's error answers into errors that say what to do.
fn read_error(reply: &ErrorReply<'_>) -> Verdict {
    let body: Value = serde_json::from_slice(reply.body).unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().map(str::to_string);
    match reply.status {
        401 => Verdict::Fail(
            PluginError::unauthorized("the WebUI rejected the user name and password")
                .with_hint("set SD_WEBUI_AUTH to the user:password given to its --api-auth"),
        ),
        404 if body["detail"] == "Not Found" => Verdict::Fail(
            PluginError::unavailable("the server has no WebUI API at /sdapi/v1").with_hint(
                "start the WebUI with --api (or --nowebui, which serves the API alone on :7861)",
            ),
        ),
        404 => Verdict::Fail(PluginError::invalid_input(format!(
            "the WebUI refused the request: {}",
            text(&body["detail"])
                .or_else(|| text(&body["errors"]))
                .unwrap_or_else(|| "not found".into())
        ))),
        422 => {
            let problems: Vec<String> = body["detail"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    let field: Vec<String> = d["loc"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|l| *l != "body")
                        .map(|l| match l {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    format!(
                        "field `{}` {}",
                        field.join("."),
                        d["msg"].as_str().unwrap_or("is not valid")
                    )
                })
                .collect();
            let message = if problems.is_empty() {
                text(&body["detail"])
                    .or_else(|| text(&body["errors"]))
                    .unwrap_or_else(|| "the request was not valid".into())
            } else {
                problems.join("; ")
            };
            Verdict::Fail(PluginError::invalid_input(format!(
                "the WebUI refused the request: {message}"
            )))
        }
        400 => Verdict::Fail(PluginError::invalid_input(format!(
            "the server refused the request: {}",
            text(&body["error"])
                .or_else(|| text(&body["detail"]))
                .unwrap_or_else(|| "bad request".into())
        ))),
        500 => {
            let all =
                format!("{} {} {}", body["error"], body["detail"], body["errors"]).to_lowercase();
            if all.contains("out of memory") || all.contains("outofmemory") {
                Verdict::Fail(
                    PluginError::unavailable("the server ran out of memory making the images")
                        .with_hint("ask for a smaller size or fewer images at once"),
                )
            } else {
                Verdict::Default
            }
        }
        _ => Verdict::Default,
    }
}
