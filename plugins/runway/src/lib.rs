//! Runway video for launcher, over Runway's developer API.
//!
//! Tool `runway` performs `img2vid` (Gen-4 and Veo models: a first frame given as a local
//! file, sent inline as a data URI of at most 5 MB, or as an https URL) and `txt2vid` (Veo
//! models). Settings come from `RUNWAYML_API_SECRET` (the variable Runway's own SDKs read),
//! `RUNWAY_BASE_URL` (proxies, tests) and `RUNWAY_TIMEOUT`.
//!
//! A video is a paid remote task: the model, ratio, duration and prompt are checked against
//! what the model accepts before anything is sent; the job is checkpointed as submitting
//! before the create request (which is never resent), then with the task id; the task is
//! polled no more often than every 5 seconds, as Runway asks; and the result is streamed from
//! its expiring link into the output (an expired link is reported as such). A resumed job goes on polling its task; a job cancelled
//! while it waits deletes the task (`DELETE /v1/tasks/{id}`). See [`launcher_sdk::remote`].

use std::time::Duration;

use launcher_sdk::cost::{self, PriceTable};
use launcher_sdk::http::{Client, Request, Verdict};
use launcher_sdk::remote::{self, Image};
use launcher_sdk::serde_json::{Value, json};
use launcher_sdk::wait::{Poll, Status};
use launcher_sdk::{
    Context, Job, JobResult, Manifest, ParamSpec, ParamType, Plugin, PluginError, SettingSpec,
    Settings, ToolSpec, export_plugin,
};
use serde::Deserialize;

pub mod api;

/// The tool id.
pub const TOOL: &str = "runway";

/// Runway asks clients to poll a task no more often than this.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// How long a job waits for its task before giving up (the task goes on; resume it later).
const WAIT_LIMIT: Duration = Duration::from_secs(60 * 60);

/// Per-request timeout when the `timeout` setting is absent. Inline images make create
/// requests of up to 7 MB.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The plugin: one configured connection to Runway.
pub struct Runway {
    client: Client,
    base: String,
    key: String,
    prices: PriceTable,
}

/// The parameters of a job (types and ranges are checked by the host).
#[derive(Deserialize)]
struct Params {
    image: Option<String>,
    model: Option<String>,
    ratio: Option<String>,
    duration: Option<f64>,
    seed: Option<i64>,
    audio: Option<bool>,
}

impl Plugin for Runway {
    fn manifest() -> Manifest {
        let tool = ToolSpec::new(TOOL, &["img2vid", "txt2vid"])
            .description("Runway video: Gen-4 from an image, Veo from text or an image")
            .cloud()
            .priority(60)
            .param(
                ParamSpec::new("seed", ParamType::Integer, "a seed, for repeatable results")
                    .range(0.0, 4_294_967_295.0),
            )
            .param(ParamSpec::new(
                "audio",
                ParamType::Boolean,
                "Veo models: add sound to the video",
            ))
            .setting(
                SettingSpec::new("key", "RUNWAYML_API_SECRET", "the Runway API key")
                    .required()
                    .secret(),
            )
            .setting(SettingSpec::new(
                "base_url",
                "RUNWAY_BASE_URL",
                "replaces https://api.dev.runwayml.com, for proxies",
            ))
            .setting(SettingSpec::timeout("RUNWAY_TIMEOUT", DEFAULT_TIMEOUT))
            .setting(cost::prices_setting("RUNWAY_PRICES", "USD"));
        Manifest::new("runway", env!("CARGO_PKG_VERSION"))
            .description("Runway image-to-video and text-to-video")
            .tool(tool)
    }

    fn new(tool: &str, settings: &Settings) -> Result<Self, PluginError> {
        launcher_sdk::expect_tool(tool, TOOL)?;
        let key = settings.key("key", "set RUNWAYML_API_SECRET to your Runway API key")?;
        let base = settings.base_url_or(
            "base_url",
            api::BASE_URL,
            "e.g. RUNWAY_BASE_URL=https://api.dev.runwayml.com",
        )?;
        let client = Client::builder(format!("launcher-runway/{}", env!("CARGO_PKG_VERSION")))
            .settings(settings, DEFAULT_TIMEOUT)?
            .secret(key.as_str())
            .build()?;
        let prices = api::prices().with_override(settings.get(cost::PRICES_SETTING))?;
        Ok(Runway {
            client,
            base,
            key,
            prices,
        })
    }

    fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        if !matches!(job.task.as_str(), "img2vid" | "txt2vid") {
            return Err(PluginError::invalid_input(format!(
                "{TOOL} does not perform task `{}`",
                job.task
            )));
        }
        let mut result = JobResult::default();
        let task = match remote::resumed_task(job, "Runway")? {
            Some((task, checkpoint)) => {
                result.info.insert("resumed".into(), true.into());
                for key in ["model", "duration"] {
                    if let Some(value) = checkpoint.get(key) {
                        result.info.insert(key.into(), value.clone());
                    }
                }
                task
            }
            None => {
                let video = self.plan(job)?;
                let facts = json!({
                    "model": video.model.id,
                    "duration": video.duration,
                });
                let what = format!("{} s of {} video", video.duration, video.model.id);
                if let Some(cost) =
                    self.prices
                        .estimate(video.model.id, f64::from(video.duration), &what)
                {
                    cx.confirm_cost(&cost)?;
                }
                let body = video.body();
                let url = format!("{}{}", self.base, video.path());
                let task = remote::submit(cx, facts.clone(), |cx| {
                    // POST's default: never resent once it may have reached Runway.
                    let request = self.request(Request::post(url), None).json(&body)?;
                    let created: api::Created = self.client.fetch(&request, cx)?.json()?;
                    Ok(created.id)
                })?;
                if let Value::Object(facts) = facts {
                    result.info.extend(facts);
                }
                result.info.insert("task".into(), task.clone().into());
                if job.detach {
                    return Ok(result);
                }
                task
            }
        };
        result.info.insert("task".into(), task.clone().into());
        let outputs = self.wait(&task, cx)?;
        for (i, url) in outputs.iter().enumerate() {
            let name = if i == 0 {
                "video".to_string()
            } else {
                format!("video-{}", i + 1)
            };
            let mut out = cx.output(&name, "video/mp4", "mp4")?;
            self.client.download(&Request::get(url), &mut out)?;
            out.finish()?;
        }
        Ok(result)
    }
}

impl Runway {
    /// Checks a new job's parameters against the model and reads its image.
    fn plan<'j>(&self, job: &'j Job) -> Result<api::Video<'j>, PluginError> {
        let params: Params = job.params()?;
        let from_image = job.task == "img2vid";
        let default_model = if from_image {
            api::DEFAULT_IMAGE_MODEL
        } else {
            api::DEFAULT_TEXT_MODEL
        };
        let model = api::model(params.model.as_deref().unwrap_or(default_model), &job.task)?;
        let ratio = api::ratio(model, params.ratio.as_deref())?;
        let duration = api::duration(model, params.duration)?;
        let prompt = job.str("prompt").map(str::trim).filter(|p| !p.is_empty());
        api::check_prompt(model, prompt)?;
        if !from_image && prompt.is_none() {
            return Err(PluginError::invalid_input("txt2vid needs a prompt")
                .with_hint("say what to show with --prompt"));
        }
        let image = match (from_image, params.image.as_deref()) {
            (true, Some(image)) => {
                let image = Image::load(image, api::MAX_INLINE_IMAGE, "Runway")?;
                if let Some(media_type) = image.media_type()
                    && !matches!(media_type, "image/jpeg" | "image/png" | "image/webp")
                {
                    return Err(PluginError::invalid_input(format!(
                        "Runway takes JPEG, PNG or WebP images, not {media_type}"
                    )));
                }
                Some(image.reference())
            }
            (true, None) => {
                return Err(PluginError::invalid_input("img2vid needs an image")
                    .with_hint("give the first frame with --image FILE or an https URL"));
            }
            (false, _) => None,
        };
        let seed = params
            .seed
            .map(|s| {
                u32::try_from(s)
                    .map_err(|_| PluginError::invalid_input("Runway's seed is 0 to 4294967295"))
            })
            .transpose()?;
        Ok(api::Video {
            model,
            image,
            prompt,
            ratio,
            duration,
            seed,
            audio: params.audio,
        })
    }

    /// Adds what every Runway request carries, and reads Runway's error bodies. A request for
    /// a task passes the task's id, so that a 404 says the task is gone.
    fn request(&self, request: Request, task: Option<&str>) -> Request {
        let task = task.map(str::to_string);
        request
            .secret_header("Authorization", format!("Bearer {}", self.key))
            .header("X-Runway-Version", api::API_VERSION)
            .read_errors(move |reply| {
                let said = reply
                    .json()
                    .and_then(|body| api::error_text(&body).map(str::to_string));
                match (reply.status, said) {
                    (401, _) => Verdict::Fail(
                        PluginError::unauthorized("Runway rejected the API key (HTTP 401)")
                            .with_hint("check RUNWAYML_API_SECRET; keys are made in the Runway developer portal"),
                    ),
                    (404, _) if let Some(task) = &task => Verdict::Fail(PluginError::unavailable(format!(
                        "Runway task {task} no longer exists (it was cancelled or deleted)"
                    ))),
                    (400, Some(said)) => Verdict::Fail(PluginError::invalid_input(format!(
                        "Runway refused the request: {said}"
                    ))),
                    _ => Verdict::Default,
                }
            })
    }

    /// Polls `task` until it succeeds, and returns its output URLs.
    fn wait(&self, task: &str, cx: &mut Context<'_>) -> Result<Vec<String>, PluginError> {
        let url = format!("{}/v1/tasks/{task}", self.base);
        let policy = Poll::every(POLL_INTERVAL).deadline(WAIT_LIMIT);
        let get = self.request(Request::get(&url), Some(task));
        let delete = self
            .request(Request::new("DELETE", &url), Some(task))
            .timeout(Duration::from_secs(10));
        remote::follow(
            cx,
            &policy,
            |cx, _| {
                let found: api::Task = self.client.fetch(&get, cx)?.json()?;
                Ok(match found.status.as_str() {
                    "SUCCEEDED" if !found.output.is_empty() => Status::Done(found.output),
                    "SUCCEEDED" => {
                        return Err(PluginError::unavailable(
                            "the Runway task succeeded without an output",
                        ));
                    }
                    "FAILED" => return Err(api::failed(&found)),
                    "CANCELLED" => {
                        return Err(PluginError::unavailable(format!(
                            "Runway task {task} was cancelled on Runway's side"
                        )));
                    }
                    "THROTTLED" => Status::Pending {
                        fraction: None,
                        message: "waiting in your Runway queue (your concurrency limit is reached)"
                            .into(),
                    },
                    "RUNNING" => Status::Pending {
                        fraction: found.progress,
                        message: "rendering on Runway".into(),
                    },
                    _ => Status::Pending {
                        fraction: None,
                        message: "waiting for Runway to start".into(),
                    },
                })
            },
            || {
                self.client
                    .send_after_cancel(&delete, Duration::from_secs(10))
                    .map(drop)
            },
        )
    }
}

export_plugin!(Runway);
