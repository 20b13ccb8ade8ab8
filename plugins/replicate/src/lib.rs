//! Replicate for launcher: any hosted model, through the predictions API.
//!
//! Tool `replicate` runs the model named by `--model owner/name` (an official model, at its
//! latest version) or `--model owner/name:version`. Its parameters are the model's inputs,
//! read from the model's OpenAPI description ([`schema`]): the tool is described by `model`,
//! so `launcher run replicate --model black-forest-labs/flux-schnell --help` lists them and the
//! host checks them before a prediction is made. Models named in the config become tools of
//! their own, performing the standard task their schema fits:
//!
//! ```toml
//! [tools.replicate.models]
//! flux = "black-forest-labs/flux-schnell"              # a tool `flux` doing txt2img
//! clip = { model = "owner/video-model", task = "txt2vid" }
//! ```
//!
//! Settings: `REPLICATE_API_TOKEN`, `REPLICATE_BASE_URL` (replaces the host: proxies, tests),
//! `REPLICATE_POLL_INTERVAL` and `REPLICATE_TIMEOUT`. Describing a model happens before a tool
//! instance exists, without settings, so it reads the token and base URL from the environment.
//!
//! A prediction is created once: the checkpoint `{"state":"submitting"}` is recorded before
//! the create request, which the HTTP client never resends, and the prediction id right after.
//! Image, audio and text models are asked to answer at once (`Prefer: wait`); a prediction
//! still running then, and every video model, is polled. Text that a model streams as tokens
//! is read from the prediction's stream URL as it comes. Files are written as their bytes say
//! (a sniffed media type), and a cancelled job cancels its prediction.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use launcher_sdk::cost::{PRICES_SETTING, PriceTable, prices_setting};
use launcher_sdk::http::{Client, Request, Verdict};
use launcher_sdk::remote;
use launcher_sdk::serde_json::{Map, Value, json};
use launcher_sdk::wait::{Poll, Status, poll};
use launcher_sdk::{
    ContentKind, Context, DescribeRequest, ErrorKind, Job, JobResult, LogLevel, Manifest,
    ParamSpec, ParamType, Plugin, PluginError, SettingSpec, Settings, ToolSpec, export_plugin,
    is_identifier, media,
};

pub mod api;
pub mod schema;

use api::{ModelRef, Prediction};
use schema::ModelSchema;

/// The generic tool's id.
pub const TOOL: &str = "replicate";

/// How long a create request may block with `Prefer: wait`; the service's own cap.
const WAIT_SECS: u64 = 60;

/// Per-request timeout when the `timeout` setting is absent: longer than a blocking create.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(WAIT_SECS + 30);

/// How long describing a model may take: the host waits for it before listing or helping.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(15);

/// The first wait between looks at a running prediction, when `poll_interval` is absent.
/// Replicate's own client looks every half second; launcher backs off from one second.
const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// How long launcher follows one prediction before giving up (it stays resumable).
const POLL_DEADLINE: Duration = Duration::from_secs(2 * 3600);

/// The plugin: one configured connection to Replicate.
pub struct Replicate {
    client: Client,
    base: String,
    token: String,
    poll_interval: Duration,
    prices: PriceTable,
}

fn with_settings(tool: ToolSpec) -> ToolSpec {
    tool.cloud()
        .priority(-20)
        .setting(
            SettingSpec::new("token", "REPLICATE_API_TOKEN", "the Replicate API token")
                .required()
                .secret(),
        )
        .setting(SettingSpec::new(
            "base_url",
            "REPLICATE_BASE_URL",
            "replaces https://api.replicate.com, for proxies",
        ))
        .setting(SettingSpec::new(
            "poll_interval",
            "REPLICATE_POLL_INTERVAL",
            "seconds between the first looks at a running prediction (default 1)",
        ))
        .setting(prices_setting("REPLICATE_PRICES", "USD"))
        .setting(SettingSpec::timeout("REPLICATE_TIMEOUT", DEFAULT_TIMEOUT))
}

fn model_param(default: Option<&str>) -> ParamSpec {
    let param = ParamSpec::new(
        "model",
        ParamType::String,
        "the model: owner/name, or owner/name:version",
    );
    match default {
        Some(model) => param.default_value(model),
        None => param.required(),
    }
}

/// The tool that runs any model; its parameters come from the model named.
fn generic_tool() -> ToolSpec {
    with_settings(
        ToolSpec::new(TOOL, &[])
            .description("any Replicate model, by --model owner/name; its inputs as parameters")
            .custom_task(schema::predict_task(ContentKind::Image))
            .param(model_param(None))
            .described_by("model"),
    )
}

/// A tool running one model, performing the task its schema fits (or `task`).
fn model_tool(
    id: &str,
    model: &str,
    schema: &ModelSchema,
    task: Option<&str>,
) -> Result<ToolSpec, PluginError> {
    let task = task.or(schema.standard_task());
    let mut tool = match task {
        Some("predict") | None => ToolSpec::new(id, &[]).custom_task(schema.predict_task()),
        Some(task) => {
            if launcher_sdk::task_spec(task).is_none() {
                return Err(PluginError::invalid_input(format!(
                    "model tool `{id}` names task `{task}`, which is not a launcher task"
                ))
                .with_hint("use txt2img, img2img, txt2vid, img2vid, tts, chat or predict"));
            }
            ToolSpec::new(id, &[task])
        }
    };
    // The token `launcher keys set replicate` stored serves every model tool.
    tool = tool
        .description(format!("{model} on Replicate"))
        .param(model_param(Some(model)))
        .settings_of(TOOL);
    for param in schema.params() {
        tool = tool.param(param);
    }
    Ok(with_settings(tool))
}

/// The models the config names: `[tools.replicate.models]`, tool id → model or
/// `{ model, task }`.
fn configured_models(
    config: &Map<String, Value>,
) -> Result<Vec<(String, String, Option<String>)>, PluginError> {
    let models = config
        .get(TOOL)
        .and_then(|c| c.get("models"))
        .and_then(Value::as_object);
    let mut found = Vec::new();
    for (id, entry) in models.into_iter().flatten() {
        let (model, task) = match entry {
            Value::String(model) => (model.clone(), None),
            Value::Object(table) => (
                table
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                table
                    .get("task")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            ),
            _ => (String::new(), None),
        };
        if !is_identifier(id) || id == TOOL {
            return Err(PluginError::invalid_input(format!(
                "`{id}` in [tools.replicate.models] cannot be a tool id"
            ))
            .with_hint("use lowercase letters, digits and dashes, e.g. flux-schnell"));
        }
        ModelRef::parse(&model).map_err(|e| {
            PluginError::invalid_input(format!("[tools.replicate.models] `{id}`: {}", e.message))
                .with_hint(
                    "give a model name, or a table { model = \"owner/name\", task = \"txt2img\" }",
                )
        })?;
        found.push((id.clone(), model, task));
    }
    Ok(found)
}

/// Returns the settings a description uses: those the host resolved for the tool described
/// (or, listing, for the generic tool), else what the environment gives.
fn describe_settings(request: &DescribeRequest) -> Settings {
    let given = request
        .tool
        .as_deref()
        .and_then(|id| request.settings.get(id));
    if let Some(settings) = given.or_else(|| request.settings.get(TOOL)) {
        return settings.clone();
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let mut settings = Settings::default();
    if let Some(token) = env("REPLICATE_API_TOKEN") {
        settings.set_secret("token", token);
    }
    if let Some(url) = env("REPLICATE_BASE_URL") {
        settings.set("base_url", url);
    }
    settings
}

/// Fetches a model's schema while describing tools: no job, so no context to log to.
fn describe_model(model: &str, settings: &Settings) -> Result<ModelSchema, PluginError> {
    let model = ModelRef::parse(model)?;
    let token = settings.get("token").ok_or_else(|| {
        PluginError::invalid_input(format!(
            "reading the inputs of `{}` needs a Replicate API token",
            model.name
        ))
        .with_hint("set REPLICATE_API_TOKEN, or run `launcher keys set replicate`")
    })?;
    let base = base_url(settings)?;
    let client = Client::builder(user_agent())
        .timeout(DESCRIBE_TIMEOUT)
        .secret(token)
        .build()?;
    let never = AtomicBool::new(false);
    let request = model_request(&base, token, &model);
    let answer: Value = client.send_with(&request, &never)?.json(&never)?;
    schema_of(&model, &answer)
}

fn user_agent() -> String {
    format!("launcher-replicate/{}", env!("CARGO_PKG_VERSION"))
}

fn base_url(settings: &Settings) -> Result<String, PluginError> {
    settings.base_url_or(
        "base_url",
        api::DEFAULT_BASE_URL,
        "e.g. REPLICATE_BASE_URL=https://api.replicate.com",
    )
}

fn model_request(base: &str, token: &str, model: &ModelRef) -> Request {
    let shown = model.name.clone();
    Request::get(format!("{base}{}", model.describe_path()))
        .secret_header("Authorization", format!("Bearer {token}"))
        .read_errors(move |reply| match reply.status {
            404 => Verdict::Fail(
                PluginError::invalid_input(format!("Replicate has no model `{shown}`"))
                    .with_hint("check the name on the model's Replicate page (owner/name)"),
            ),
            status => auth_error(status),
        })
}

/// Reads a model description into its schema.
fn schema_of(model: &ModelRef, answer: &Value) -> Result<ModelSchema, PluginError> {
    let openapi = api::openapi_of(answer).ok_or_else(|| {
        PluginError::unavailable(format!(
            "Replicate describes `{}` without an input schema (it may have no version yet)",
            model.name
        ))
    })?;
    let hint = format!(
        "{} {}",
        model.name,
        answer["description"].as_str().unwrap_or_default()
    );
    schema::parse(openapi, &hint)
}

/// A 401 or 403 says the token is wrong; anything else is handled as usual.
fn auth_error(status: u16) -> Verdict {
    match status {
        401 | 403 => Verdict::Fail(
            PluginError::unauthorized(format!("Replicate refused the API token ({status})"))
                .with_hint("set REPLICATE_API_TOKEN to a token from replicate.com/account"),
        ),
        _ => Verdict::Default,
    }
}

/// Describes the tools: the generic one (with a model's inputs when `--model` is given) and
/// one per model the config names.
fn describe_tools(request: &DescribeRequest) -> Result<Vec<ToolSpec>, PluginError> {
    let configured = configured_models(&request.config)?;
    let settings = describe_settings(request);
    let describe_model = |model: &str| describe_model(model, &settings);
    match request.tool.as_deref() {
        Some(TOOL) => {
            let Some(model) = request.args.get("model").and_then(Value::as_str) else {
                return Ok(vec![generic_tool()]);
            };
            let schema = describe_model(model)?;
            let mut tool = generic_tool();
            tool.custom_tasks = vec![schema.predict_task()];
            for param in schema.params() {
                tool = tool.param(param);
            }
            Ok(vec![tool])
        }
        Some(id) => {
            let Some((id, model, task)) = configured.into_iter().find(|(i, ..)| i == id) else {
                return Ok(Vec::new());
            };
            Ok(vec![model_tool(
                &id,
                &model,
                &describe_model(&model)?,
                task.as_deref(),
            )?])
        }
        None => {
            let mut tools = vec![generic_tool()];
            for (id, model, task) in configured {
                let schema = describe_model(&model).map_err(|e| PluginError {
                    message: format!("model tool `{id}` ({model}): {}", e.message),
                    ..e
                })?;
                tools.push(model_tool(&id, &model, &schema, task.as_deref())?);
            }
            Ok(tools)
        }
    }
}

impl Plugin for Replicate {
    fn manifest() -> Manifest {
        Manifest::new("replicate", env!("CARGO_PKG_VERSION"))
            .description("Replicate: hosted image, video, audio and text models")
            .configured_tools()
            .tool(generic_tool())
    }

    fn describe(request: &DescribeRequest) -> Result<Vec<ToolSpec>, PluginError> {
        // The host reports a failed description as one line, so the hint joins the message.
        describe_tools(request).map_err(|e| match e.hint.clone() {
            Some(hint) => PluginError::new(e.kind, format!("{}; {hint}", e.message)),
            None => e,
        })
    }

    fn new(_tool: &str, settings: &Settings) -> Result<Self, PluginError> {
        let token = settings.key(
            "token",
            "set REPLICATE_API_TOKEN to your Replicate API token",
        )?;
        let base = base_url(settings)?;
        let client = Client::builder(user_agent())
            .settings(settings, DEFAULT_TIMEOUT)?
            .secret(token.as_str())
            .build()?;
        let poll_interval =
            settings.seconds("poll_interval", DEFAULT_POLL, Duration::from_secs(60))?;
        // No prices are built in: Replicate's differ per model and change often, and a
        // wrong estimate is worse than none. The user's own come from `prices`.
        let prices = PriceTable::new(&[], "USD").with_override(settings.get(PRICES_SETTING))?;
        Ok(Replicate {
            client,
            base,
            token,
            poll_interval,
            prices,
        })
    }

    fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let model_text = job.require_str("model")?.trim().to_string();
        let model = ModelRef::parse(&model_text)?;
        if let Some(checkpoint) = &job.resume {
            return self.resume(checkpoint, &model_text, cx);
        }
        let answer: Value = self
            .client
            .send(&model_request(&self.base, &self.token, &model), cx)?
            .json(&*cx)?;
        let schema = schema_of(&model, &answer)?;
        let input = schema.build_input(&model_text, &job.params, &remote::file_data_uri)?;
        warn_of_large_files(&input, cx);
        let mut body = json!({ "input": input });
        if let Some(version) = &model.version {
            body["version"] = Value::from(version.as_str());
        }
        self.confirm_cost(&model, &input, &schema.kind, cx)?;
        // Recorded before the request: a launcher stopped during it must not send it again.
        cx.checkpoint(&json!({ "state": "submitting", "model": model_text }))?;
        let mut request = Request::post(format!("{}{}", self.base, model.create_path()))
            .secret_header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .read_errors(|reply| {
                if reply.status == 422 {
                    return Verdict::Fail(api::validation_error(
                        &reply.json().unwrap_or(Value::Null),
                    ));
                }
                auth_error(reply.status)
            });
        // Video takes minutes, longer than a blocking request may, so it is polled at once;
        // tokens are read from the stream as they come rather than waited for whole.
        if !job.detach && schema.kind != ContentKind::Video && !schema.tokens {
            request = request.header("Prefer", format!("wait={WAIT_SECS}"));
        }
        let prediction: Prediction = self.client.send(&request, cx)?.json(&*cx)?;
        let recorded = cx.checkpoint(&json!({
            "prediction": prediction.id,
            "model": model_text,
            "tokens": schema.tokens,
        }));
        if let Err(err) = recorded {
            // Stopped the moment the prediction was created: nothing can resume it.
            if err.kind == ErrorKind::Cancelled {
                self.cancel_prediction(&prediction.id, cx);
            }
            return Err(err);
        }
        cx.log(
            LogLevel::Info,
            format!(
                "Replicate prediction {} is {}",
                prediction.id, prediction.status
            ),
        );
        let mut result = JobResult::default();
        result
            .info
            .insert("prediction".into(), Value::from(prediction.id.as_str()));
        result
            .info
            .insert("model".into(), Value::from(model_text.as_str()));
        if job.detach {
            return Ok(result);
        }
        self.follow(prediction, schema.tokens, result, cx)
    }
}

impl Replicate {
    /// Asks the host to accept the cost when it can be known: the model has a price per
    /// second of output (the `prices` setting) and a `duration` input, as Replicate's video
    /// models are billed. Anything else is billed by the seconds of hardware it uses, unknown
    /// until it ran, and the job says so: as a warning for video, whose minutes of hardware
    /// add up, and under `-v` for the rest, which a warning on every image would only drown.
    fn confirm_cost(
        &self,
        model: &ModelRef,
        input: &Map<String, Value>,
        kind: &ContentKind,
        cx: &mut Context<'_>,
    ) -> Result<(), PluginError> {
        let seconds = input.get("duration").and_then(Value::as_f64);
        let what = |seconds: f64| format!("{seconds} s of {} output", model.name);
        match seconds.and_then(|s| self.prices.estimate(&model.name, s, &what(s))) {
            Some(cost) => cx.confirm_cost(&cost),
            None => {
                let level = if *kind == ContentKind::Video {
                    LogLevel::Warn
                } else {
                    LogLevel::Info
                };
                cx.log(
                    level,
                    format!(
                        "the cost of this `{}` prediction is not known before it runs: Replicate \
                         bills the seconds of hardware it uses (REPLICATE_PRICES gives a price \
                         per second of output for models with a duration)",
                        model.name
                    ),
                );
                Ok(())
            }
        }
    }

    /// Picks up a prediction an earlier run created.
    fn resume(
        &self,
        checkpoint: &Value,
        model: &str,
        cx: &mut Context<'_>,
    ) -> Result<JobResult, PluginError> {
        let Some(id) = checkpoint["prediction"].as_str() else {
            return Err(PluginError::submission_unknown("Replicate"));
        };
        // `launcher jobs cancel` resumes a job already cancelled: its prediction is cancelled.
        let prediction = match self.get(id, cx) {
            Err(err) if err.kind == ErrorKind::Cancelled => {
                self.cancel_prediction(id, cx);
                return Err(err);
            }
            other => other?,
        };
        let mut result = JobResult::default();
        result.info.insert("prediction".into(), Value::from(id));
        result.info.insert("model".into(), Value::from(model));
        result.info.insert("resumed".into(), Value::from(true));
        let tokens = checkpoint["tokens"].as_bool().unwrap_or(false);
        self.follow(prediction, tokens, result, cx)
    }

    /// Follows a prediction to its end and writes its outputs; a cancelled job cancels it.
    fn follow(
        &self,
        prediction: Prediction,
        tokens: bool,
        result: JobResult,
        cx: &mut Context<'_>,
    ) -> Result<JobResult, PluginError> {
        let id = prediction.id.clone();
        let outcome = self.follow_inner(prediction, tokens, result, cx);
        if let Err(err) = &outcome
            && err.kind == ErrorKind::Cancelled
        {
            self.cancel_prediction(&id, cx);
        }
        outcome
    }

    /// Cancels a prediction on the way out of a cancelled job; a failure is only logged.
    /// A prediction that had already ended (the job stopped while writing its outputs) is
    /// left as it was, and not reported as cancelled.
    fn cancel_prediction(&self, id: &str, cx: &mut Context<'_>) {
        let cancel = Request::post(format!("{}/v1/predictions/{id}/cancel", self.base))
            .secret_header("Authorization", format!("Bearer {}", self.token));
        match self
            .client
            .send_after_cancel(&cancel, Duration::from_secs(10))
        {
            Ok(answer) => match answer.json::<Prediction>() {
                // A cancel answered while the prediction winds down shows it still running.
                Ok(ended) if matches!(ended.status.as_str(), "succeeded" | "failed") => cx.log(
                    LogLevel::Debug,
                    format!("Replicate prediction {id} had already {}", ended.status),
                ),
                _ => cx.log(
                    LogLevel::Warn,
                    format!("cancelled Replicate prediction {id}"),
                ),
            },
            Err(e) => cx.log(
                LogLevel::Warn,
                format!("could not cancel Replicate prediction {id}: {}", e.message),
            ),
        }
    }

    fn follow_inner(
        &self,
        mut prediction: Prediction,
        tokens: bool,
        mut result: JobResult,
        cx: &mut Context<'_>,
    ) -> Result<JobResult, PluginError> {
        let id = prediction.id.clone();
        let mut streamed = false;
        if tokens
            && !prediction.is_finished()
            && let Some(url) = prediction.urls["stream"].as_str()
        {
            self.stream_tokens(url, cx)?;
            streamed = true;
        }
        if !prediction.is_finished() {
            let policy = Poll::every(self.poll_interval)
                .backoff(1.5)
                .max_interval(self.poll_interval.max(Duration::from_secs(10)))
                .deadline(POLL_DEADLINE);
            prediction = poll(cx, &policy, |cx, _| {
                let prediction = self.get(&id, cx)?;
                Ok(if prediction.is_finished() {
                    Status::Done(prediction)
                } else {
                    Status::Pending {
                        fraction: prediction.fraction(),
                        message: format!("Replicate prediction {id} is {}", prediction.status),
                    }
                })
            })?;
        }
        match prediction.status.as_str() {
            "succeeded" => {}
            "canceled" => {
                return Err(PluginError::unavailable(format!(
                    "Replicate prediction {id} was canceled before it finished"
                )));
            }
            _ => {
                let error = prediction.error_text();
                let message = format!("Replicate prediction {id} failed: {error}");
                // A model refusing its input (a safety filter) is not worth retrying as is.
                let lower = error.to_ascii_lowercase();
                return Err(if lower.contains("nsfw") || lower.contains("safety") {
                    PluginError::invalid_input(message)
                } else {
                    PluginError::unavailable(message)
                });
            }
        }
        if let Some(seconds) = prediction.metrics["predict_time"].as_f64() {
            result
                .info
                .insert("predict_time".into(), Value::from(seconds));
        }
        self.write_output(&prediction.output, streamed, cx)?;
        Ok(result)
    }

    fn get(&self, id: &str, cx: &mut Context<'_>) -> Result<Prediction, PluginError> {
        let request = Request::get(format!("{}/v1/predictions/{id}", self.base))
            .secret_header("Authorization", format!("Bearer {}", self.token))
            .read_errors(|reply| auth_error(reply.status));
        self.client.send(&request, cx)?.json(&*cx)
    }

    /// Writes the tokens of a streaming text model as they arrive.
    fn stream_tokens(&self, url: &str, cx: &mut Context<'_>) -> Result<(), PluginError> {
        let request = Request::get(url)
            .secret_header("Authorization", format!("Bearer {}", self.token))
            .header("Accept", "text/event-stream")
            .header("Cache-Control", "no-store");
        let mut events = self.client.send(&request, cx)?.events();
        while let Some(event) = events.next(&*cx)? {
            match event.name() {
                "output" => cx.text(event.data())?,
                "error" => {
                    return Err(event.error().unwrap_or_else(|| {
                        PluginError::unavailable(format!(
                            "Replicate's stream reported an error: {}",
                            event.data()
                        ))
                    }));
                }
                "done" => return Ok(()),
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes a prediction's output: files as their bytes say, text as text, and anything
    /// else as JSON.
    fn write_output(
        &self,
        output: &Value,
        streamed: bool,
        cx: &mut Context<'_>,
    ) -> Result<(), PluginError> {
        let urls: Option<Vec<&str>> = match output {
            Value::String(s) if is_url(s) => Some(vec![s.as_str()]),
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .map(|v| v.as_str().filter(|s| is_url(s)))
                .collect(),
            _ => None,
        };
        if let Some(urls) = urls {
            for (n, url) in urls.iter().enumerate() {
                let name = if n == 0 {
                    "output".to_string()
                } else {
                    format!("output-{}", n + 1)
                };
                self.download(url, &name, cx)?;
            }
            return Ok(());
        }
        let text: Option<String> = match output {
            Value::String(s) => Some(s.clone()),
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => None,
        };
        match (text, output) {
            (_, Value::Null) => Err(PluginError::unavailable(
                "the prediction succeeded without any output",
            )),
            // Streamed tokens were written already; the output repeats them.
            (Some(_), _) if streamed => Ok(()),
            (Some(text), _) => cx.text(&text),
            (None, other) => cx.json("output", other),
        }
    }

    /// Streams one output file to an output; an expired link says so.
    fn download(&self, url: &str, name: &str, cx: &mut Context<'_>) -> Result<(), PluginError> {
        // Output links are public and short-lived; the token is not sent to their host.
        let request = Request::get(url).read_errors(|reply| match reply.status {
            403 | 404 | 410 => Verdict::Fail(
                PluginError::unavailable(format!(
                    "the prediction's output file is gone ({}): Replicate deletes outputs \
                     an hour after a prediction made through the API ends",
                    reply.status
                ))
                .with_hint("run the job again to make it anew"),
            ),
            _ => Verdict::Default,
        });
        let response = self.client.send(&request, cx)?;
        let fallback = url
            .split(['?', '#'])
            .next()
            .and_then(|path| path.rsplit_once('.'))
            .and_then(|(_, ext)| media::format_for_name(ext));
        let (format, bytes) = response.write_output(name, fallback, cx)?;
        cx.log(
            LogLevel::Info,
            format!("wrote {name}: {} ({bytes} bytes)", format.media_type),
        );
        Ok(())
    }
}

fn is_url(text: &str) -> bool {
    text.starts_with("https://") || text.starts_with("http://")
}

/// Replicate recommends data URIs only for files under 1 MB; larger ones still work, slowly.
const DATA_URI_ADVISED: usize = 1024 * 1024;

/// Warns about input files larger than Replicate advises sending inline.
fn warn_of_large_files(input: &Map<String, Value>, cx: &mut Context<'_>) {
    for (name, value) in input {
        let uris: Vec<&str> = match value {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        // Base64 carries 3 bytes in 4 characters.
        let largest = uris
            .iter()
            .filter(|u| u.starts_with("data:"))
            .map(|u| u.len() / 4 * 3)
            .max()
            .unwrap_or(0);
        if largest > DATA_URI_ADVISED {
            cx.log(
                LogLevel::Warn,
                format!(
                    "input `{name}` is a file of about {:.1} MB, sent inline as a data URI; \
                     Replicate advises that only for files under 1 MB, so the request may be slow",
                    largest as f64 / 1e6
                ),
            );
        }
    }
}

export_plugin!(Replicate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_models_become_tool_ids() {
        let config: Map<String, Value> = launcher_sdk::serde_json::from_value(json!({
            "replicate": {"models": {
                "flux": "black-forest-labs/flux-schnell",
                "clip": {"model": "owner/video", "task": "txt2vid"},
            }}
        }))
        .unwrap();
        let models = configured_models(&config).unwrap();
        assert_eq!(
            models,
            [
                (
                    "clip".to_string(),
                    "owner/video".to_string(),
                    Some("txt2vid".to_string())
                ),
                (
                    "flux".to_string(),
                    "black-forest-labs/flux-schnell".to_string(),
                    None
                ),
            ]
        );
        let bad: Map<String, Value> = launcher_sdk::serde_json::from_value(
            json!({"replicate": {"models": {"Flux!": "a/b"}}}),
        )
        .unwrap();
        assert!(configured_models(&bad).is_err());
        let no_model: Map<String, Value> =
            launcher_sdk::serde_json::from_value(json!({"replicate": {"models": {"x": 3}}}))
                .unwrap();
        assert!(configured_models(&no_model).is_err());
    }
}
