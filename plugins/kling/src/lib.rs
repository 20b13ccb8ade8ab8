//! Kling (可灵) video and images for launcher, over Kling's task API.
//!
//! Tool `kling` performs `txt2vid`, `img2vid` (a first frame, and optionally a last one, as
//! an https URL or a local file sent as base64 of at most 10 MB) and `txt2img`. Settings come
//! from `KLING_ACCESS_KEY` and `KLING_SECRET_KEY`, which sign a fresh HS256 JWT for every
//! request; `KLING_REGION` (`global`, the default, or `cn`: keys work only on the platform
//! that issued them); `KLING_BASE_URL` (replaces the host: proxies, tests); `KLING_TIMEOUT`;
//! and `KLING_PRICES`.
//!
//! Every job is a paid remote task, run by the rules of [`launcher_sdk::remote`]: the cost is
//! confirmed and the job checkpointed as submitting before the create request (never
//! resent), the task id checkpointed once Kling accepted it, the task polled every 5 seconds,
//! and the results streamed from their links into outputs. Kling's answers carry a `code`
//! that decides the error kind ([`api::error`]). Kling offers no way to cancel a task: a job
//! cancelled while it waits says so, and the task runs to its end.

use std::time::Duration;

use launcher_sdk::cost::{self, PriceTable};
use launcher_sdk::http::{Client, Request};
use launcher_sdk::media::{self, MediaFormat};
use launcher_sdk::remote::{self, Image};
use launcher_sdk::serde_json::{Map, Value, json};
use launcher_sdk::wait::{Poll, Status};
use launcher_sdk::{
    ContentKind, Context, Job, JobResult, Manifest, ParamSpec, ParamType, Plugin, PluginError,
    SettingSpec, Settings, ToolSpec, export_plugin,
};
use serde::Deserialize;

pub mod api;

use api::Kind;

/// The tool id.
pub const TOOL: &str = "kling";

/// How often a task is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// How long a job waits for its task before giving up (the task goes on; resume it later).
const WAIT_LIMIT: Duration = Duration::from_secs(60 * 60);

/// How long one request may take when the `timeout` setting is absent.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Built-in prices in US dollars: per second of video for `model/mode`, per image for
/// `model/image`. Kling sells prepaid units, so these are what a unit costs at list price;
/// correct them with `KLING_PRICES`.
const PRICES: &[(&str, f64)] = &[
    ("kling-v1/std", 0.028),
    ("kling-v1/pro", 0.098),
    ("kling-v1-5/std", 0.056),
    ("kling-v1-5/pro", 0.098),
    ("kling-v1-6/std", 0.056),
    ("kling-v1-6/pro", 0.098),
    ("kling-v2-master/std", 0.28),
    ("kling-v2-master/pro", 0.28),
    ("kling-v2-1/std", 0.056),
    ("kling-v2-1/pro", 0.098),
    ("kling-v2-1-master/std", 0.28),
    ("kling-v2-1-master/pro", 0.28),
    ("kling-v2-5-turbo/std", 0.042),
    ("kling-v2-5-turbo/pro", 0.07),
    ("kling-v1/image", 0.0035),
    ("kling-v1-5/image", 0.014),
    ("kling-v2/image", 0.014),
    ("kling-v2-1/image", 0.014),
];

/// The plugin: one configured connection to Kling.
pub struct Kling {
    client: Client,
    base: String,
    access_key: String,
    secret_key: String,
    prices: PriceTable,
}

/// The parameters of a job (types and ranges are checked by the host).
#[derive(Deserialize)]
struct Params {
    prompt: Option<String>,
    negative: Option<String>,
    image: Option<String>,
    last_frame: Option<String>,
    model: Option<String>,
    ratio: Option<String>,
    duration: Option<f64>,
    mode: Option<String>,
    cfg_scale: Option<f64>,
    count: Option<u32>,
}

/// Returns the API's base URL for `settings`.
fn base_url(settings: &Settings) -> Result<String, PluginError> {
    if let Some(url) = settings
        .base_url("base_url")
        .map_err(|e| e.with_hint("e.g. KLING_BASE_URL=https://api-singapore.klingai.com"))?
    {
        return Ok(url);
    }
    match settings
        .get("region")
        .map(|r| r.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("global") => Ok(api::GLOBAL_URL.to_string()),
        Some("cn") | Some("china") => Ok(api::CN_URL.to_string()),
        Some(other) => Err(PluginError::invalid_input(format!(
            "setting `region` is `{other}`, not `global` or `cn`"
        ))
        .with_hint(
            "KLING_REGION=cn uses api-beijing.klingai.com, global api-singapore.klingai.com",
        )),
    }
}

impl Plugin for Kling {
    fn manifest() -> Manifest {
        let tool = ToolSpec::new(TOOL, &["txt2vid", "img2vid", "txt2img"])
            .description("Kling (可灵) video from text or an image, and images from text")
            .cloud()
            .priority(50)
            .param(
                ParamSpec::new("mode", ParamType::String, "video quality: std or pro")
                    .choices(["std", "pro"])
                    .only_for(&["txt2vid", "img2vid"]),
            )
            .param(
                ParamSpec::new(
                    "cfg_scale",
                    ParamType::Number,
                    "how closely to follow the prompt, 0 to 1",
                )
                .range(0.0, 1.0)
                .only_for(&["txt2vid", "img2vid"]),
            )
            .param(
                ParamSpec::new("negative", ParamType::String, "what not to show")
                    .only_for(&["txt2vid", "img2vid"]),
            )
            .param(
                ParamSpec::new(
                    "last_frame",
                    ParamType::File,
                    "the last frame (a file or an https URL)",
                )
                .only_for(&["img2vid"]),
            )
            .param(
                ParamSpec::new("ratio", ParamType::String, "aspect ratio, e.g. 16:9 or 4:3")
                    .choices(api::IMAGE_RATIOS.iter().copied())
                    .only_for(&["txt2img"]),
            )
            .setting(
                SettingSpec::new("access_key", "KLING_ACCESS_KEY", "the Kling access key")
                    .required()
                    .secret(),
            )
            .setting(
                SettingSpec::new("secret_key", "KLING_SECRET_KEY", "the Kling secret key")
                    .required()
                    .secret(),
            )
            .setting(SettingSpec::new(
                "region",
                "KLING_REGION",
                "global (api-singapore.klingai.com, the default) or cn (api-beijing.klingai.com)",
            ))
            .setting(SettingSpec::new(
                "base_url",
                "KLING_BASE_URL",
                "replaces the region's host, for proxies",
            ))
            .setting(SettingSpec::timeout("KLING_TIMEOUT", DEFAULT_TIMEOUT))
            .setting(cost::prices_setting("KLING_PRICES", "USD"));
        Manifest::new("kling", env!("CARGO_PKG_VERSION"))
            .description("Kling (可灵) text-to-video, image-to-video and text-to-image")
            .tool(tool)
    }

    fn new(tool: &str, settings: &Settings) -> Result<Self, PluginError> {
        launcher_sdk::expect_tool(tool, TOOL)?;
        let access_key = settings.key(
            "access_key",
            "set KLING_ACCESS_KEY to your Kling access key",
        )?;
        let secret_key = settings.key(
            "secret_key",
            "set KLING_SECRET_KEY to your Kling secret key",
        )?;
        let base = base_url(settings)?;
        let client = Client::builder(format!("launcher-kling/{}", env!("CARGO_PKG_VERSION")))
            .settings(settings, DEFAULT_TIMEOUT)?
            .secret(access_key.as_str())
            .secret(secret_key.as_str())
            .build()?;
        let prices =
            PriceTable::new(PRICES, "USD").with_override(settings.get(cost::PRICES_SETTING))?;
        Ok(Kling {
            client,
            base,
            access_key,
            secret_key,
            prices,
        })
    }

    fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        let kind = Kind::of_task(&job.task).ok_or_else(|| {
            PluginError::invalid_input(format!("{TOOL} does not perform task `{}`", job.task))
        })?;
        let mut result = JobResult::default();
        let (task, kind) = match remote::resumed_task(job, "Kling")? {
            Some((task, checkpoint)) => {
                result.info.insert("resumed".into(), true.into());
                let kind = checkpoint
                    .get("kind")
                    .and_then(Value::as_str)
                    .and_then(Kind::named)
                    .unwrap_or(kind);
                (task, kind)
            }
            None => {
                let (body, cost) = self.plan(job, kind)?;
                if let Some(cost) = &cost {
                    cx.confirm_cost(cost)?;
                }
                let url = format!("{}{}", self.base, kind.path());
                let task = remote::submit(cx, json!({ "kind": kind.name() }), |cx| {
                    // POST's default: never resent once it may have reached Kling.
                    let request = self.request(Request::post(url)).json(&body)?;
                    let envelope: api::Envelope = self.client.fetch(&request, cx)?.json()?;
                    accepted(envelope).map(|t| t.task_id)
                })?;
                result
                    .info
                    .insert("model".into(), body["model_name"].clone());
                if job.detach {
                    result.info.insert("task".into(), task.into());
                    return Ok(result);
                }
                (task, kind)
            }
        };
        result.info.insert("task".into(), task.clone().into());
        let links = self.wait(kind, &task, cx)?;
        let name = match kind {
            Kind::Images => "image",
            _ => "video",
        };
        for (i, url) in links.iter().enumerate() {
            let name = if i == 0 {
                name.to_string()
            } else {
                format!("{name}-{}", i + 1)
            };
            let format = result_format(kind, url);
            let mut out = cx.output(&name, format.media_type, format.extension)?;
            self.client.download(&Request::get(url), &mut out)?;
            out.finish()?;
        }
        Ok(result)
    }
}

/// Returns the format of a result: a video is MP4; an image is what its link's file name
/// says (Kling serves PNG and JPEG), PNG when it says nothing known.
fn result_format(kind: Kind, url: &str) -> MediaFormat {
    let named = url
        .split(['?', '#'])
        .next()
        .and_then(|path| path.rsplit_once('.'))
        .and_then(|(_, extension)| media::format_for_name(extension));
    let fallback = if kind == Kind::Images { "png" } else { "mp4" };
    let wanted = if kind == Kind::Images {
        ContentKind::Image
    } else {
        ContentKind::Video
    };
    named
        .filter(|f| f.kind == wanted)
        .or_else(|| media::format_for_name(fallback))
        .expect("png and mp4 are known formats")
}

/// Returns the task of a successful answer, or the error its `code` says.
fn accepted(envelope: api::Envelope) -> Result<api::Task, PluginError> {
    if envelope.code != 0 {
        return Err(api::error(envelope.code, &envelope.message).0);
    }
    envelope.data.ok_or_else(|| {
        PluginError::unavailable(format!(
            "Kling answered without a task (request {})",
            envelope.request_id
        ))
    })
}

impl Kling {
    /// Checks a new job's parameters and returns the create body and its estimated cost.
    fn plan(&self, job: &Job, kind: Kind) -> Result<(Value, Option<cost::Cost>), PluginError> {
        let params: Params = job.params()?;
        let prompt = params
            .prompt
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty());
        let mut body = Map::new();
        if let Some(prompt) = prompt {
            if prompt.chars().count() > 2500 {
                return Err(PluginError::invalid_input(format!(
                    "the prompt is {} characters long, and Kling takes at most 2500",
                    prompt.chars().count()
                )));
            }
            body.insert("prompt".into(), json!(prompt));
        } else if kind != Kind::ImageToVideo {
            return Err(
                PluginError::invalid_input(format!("{} needs a prompt", job.task))
                    .with_hint("say what to show with --prompt"),
            );
        }
        if let Some(negative) = params.negative.as_deref().filter(|n| !n.trim().is_empty()) {
            body.insert("negative_prompt".into(), json!(negative));
        }
        let image = |value: &str| {
            Image::load(value, api::MAX_INLINE_IMAGE, "Kling").map(|i| i.base64_or_url())
        };
        if kind == Kind::Images {
            if let Some(name) = ["width", "height", "steps", "seed"]
                .into_iter()
                .find(|name| job.params.contains_key(*name))
            {
                return Err(PluginError::invalid_input(format!(
                    "Kling does not take --{name} for images"
                ))
                .with_hint("choose the shape with --ratio, e.g. --ratio 4:3"));
            }
            let model = params.model.as_deref().unwrap_or(api::IMAGE_MODELS[0]);
            api::one_of("image model", model, api::IMAGE_MODELS)?;
            let ratio = api::one_of(
                "image ratio",
                params.ratio.as_deref().unwrap_or("1:1"),
                api::IMAGE_RATIOS,
            )?;
            let count = params.count.unwrap_or(1);
            if !(1..=9).contains(&count) {
                return Err(PluginError::invalid_input(format!(
                    "Kling makes 1 to 9 images at once, not {count}"
                )));
            }
            body.insert("model_name".into(), json!(model));
            body.insert("aspect_ratio".into(), json!(ratio));
            body.insert("n".into(), json!(count));
            let what = format!("{count} {model} image{}", if count == 1 { "" } else { "s" });
            let cost = self
                .prices
                .estimate(&format!("{model}/image"), f64::from(count), &what);
            return Ok((Value::Object(body), cost));
        }
        let model = params.model.as_deref().unwrap_or(api::VIDEO_MODELS[0]);
        api::one_of("video model", model, api::VIDEO_MODELS)?;
        let mode = params.mode.as_deref().unwrap_or("std");
        let duration = api::duration(params.duration)?;
        body.insert("model_name".into(), json!(model));
        body.insert("mode".into(), json!(mode));
        body.insert("duration".into(), json!(duration.to_string()));
        if let Some(cfg) = params.cfg_scale {
            body.insert("cfg_scale".into(), json!(cfg));
        }
        match kind {
            Kind::ImageToVideo => {
                let first = params.image.as_deref().ok_or_else(|| {
                    PluginError::invalid_input("img2vid needs an image")
                        .with_hint("give the first frame with --image FILE or an https URL")
                })?;
                body.insert("image".into(), json!(image(first)?));
                if let Some(last) = params.last_frame.as_deref() {
                    body.insert("image_tail".into(), json!(image(last)?));
                }
            }
            _ => {
                let ratio = api::one_of(
                    "video ratio",
                    params.ratio.as_deref().unwrap_or("16:9"),
                    api::VIDEO_RATIOS,
                )?;
                body.insert("aspect_ratio".into(), json!(ratio));
            }
        }
        let what = format!("{duration} s of {model} {mode} video");
        let cost = self
            .prices
            .estimate(&format!("{model}/{mode}"), f64::from(duration), &what);
        Ok((Value::Object(body), cost))
    }

    /// Adds a fresh token and reads Kling's error answers.
    fn request(&self, request: Request) -> Request {
        let token = api::token(&self.access_key, &self.secret_key, api::now());
        request
            .secret_header("Authorization", format!("Bearer {token}"))
            .read_errors(|reply| api::read_error(reply.json()))
    }

    /// Polls the task until it succeeds, and returns its result links.
    fn wait(
        &self,
        kind: Kind,
        task: &str,
        cx: &mut Context<'_>,
    ) -> Result<Vec<String>, PluginError> {
        let url = format!("{}{}/{task}", self.base, kind.path());
        let policy = Poll::every(POLL_INTERVAL).deadline(WAIT_LIMIT);
        remote::follow(
            cx,
            &policy,
            |cx, _| {
                // A new token for every look: a wait may outlast one.
                let get = self.request(Request::get(&url));
                let found = accepted(self.client.fetch(&get, cx)?.json()?)?;
                Ok(match found.task_status.as_str() {
                    "succeed" => {
                        let result = found.task_result.unwrap_or_default();
                        let links: Vec<String> = result
                            .videos
                            .into_iter()
                            .chain(result.images)
                            .map(|l| l.url)
                            .collect();
                        if links.is_empty() {
                            return Err(PluginError::unavailable(
                                "the Kling task succeeded without a result",
                            ));
                        }
                        Status::Done(links)
                    }
                    "failed" => return Err(api::failed(&found)),
                    "processing" => Status::Pending {
                        fraction: None,
                        message: "rendering on Kling".into(),
                    },
                    _ => Status::Pending {
                        fraction: None,
                        message: "waiting in Kling's queue".into(),
                    },
                })
            },
            || {
                Err(PluginError::unavailable(format!(
                    "Kling offers no way to cancel a task, so task {task} runs to its end (and is charged)"
                )))
            },
        )
    }
}

export_plugin!(Kling);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_values(pairs.iter().copied())
    }

    #[test]
    fn results_are_named_by_their_links() {
        let image = |url| result_format(Kind::Images, url).extension;
        assert_eq!(image("https://cdn.klingai.com/a/b.jpg?Expires=1"), "jpg");
        assert_eq!(image("https://cdn.klingai.com/a/b.png"), "png");
        assert_eq!(image("https://cdn.klingai.com/a/b"), "png");
        assert_eq!(image("https://cdn.klingai.com/a/b.mp4"), "png");
        assert_eq!(
            result_format(Kind::TextToVideo, "https://x/v.mp4").extension,
            "mp4"
        );
    }

    #[test]
    fn the_host_comes_from_the_base_url_or_the_region() {
        assert_eq!(base_url(&settings(&[])).unwrap(), api::GLOBAL_URL);
        assert_eq!(
            base_url(&settings(&[("region", "CN")])).unwrap(),
            api::CN_URL
        );
        assert_eq!(
            base_url(&settings(&[
                ("region", "cn"),
                ("base_url", "http://127.0.0.1:9/")
            ]))
            .unwrap(),
            "http://127.0.0.1:9"
        );
        assert!(base_url(&settings(&[("region", "mars")])).is_err());
    }
}
