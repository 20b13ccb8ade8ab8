//! DeepBrain AI Studios for launcher: a talking presenter reading a script, as an MP4.
//!
//! Tool `deepbrain` performs its own task `presenter` (text → video): `--text` is the script,
//! `--model` and `--clothes` pick the presenter and outfit by their AI Studios ids, and
//! `--language` the language it speaks. The job is submitted to the simple-video endpoint
//! (`POST /v3/simple/video`), followed with the progress endpoint
//! (`GET /v3/editor/progress/{projectId}`) until it reaches 100 with a download link, and the
//! video is streamed from that link into the output.
//!
//! Settings: `DEEPBRAIN_API_KEY` (sent as the raw `Authorization` value, as the service wants),
//! `DEEPBRAIN_BASE_URL` (replaces `https://app.aistudios.com/api/odin`: proxies, tests),
//! `DEEPBRAIN_POLL_INTERVAL` and `DEEPBRAIN_TIMEOUT`.
//!
//! The service reports failures inside HTTP 200 answers (`success: false`), read with
//! [`Request::check_answers`]. A submission is never sent twice: the checkpoint
//! `{"state":"submitting"}` is recorded before it and the project id after, so a stopped
//! launcher resumes by following the project. The API has no way to stop a render, so a
//! cancelled job says that its project goes on rendering.

use std::time::Duration;

use launcher_sdk::http::{Client, Refusal, Request, Verdict};
use launcher_sdk::serde_json::{self, Value, json};
use launcher_sdk::wait::{Poll, Status, poll};
use launcher_sdk::{
    ContentKind, Context, ErrorKind, Job, JobResult, LogLevel, Manifest, ParamSpec, ParamType,
    Plugin, PluginError, SettingSpec, Settings, Slot, TaskSpec, ToolSpec, export_plugin,
};
use serde::Deserialize;

/// The tool id.
pub const TOOL: &str = "deepbrain";

/// The service's own base URL; `DEEPBRAIN_BASE_URL` replaces it.
pub const DEFAULT_BASE_URL: &str = "https://app.aistudios.com/api/odin";

/// The presenter and outfit of DeepBrain's own examples.
pub const DEFAULT_MODEL: &str = "M000045058";
/// The outfit of [`DEFAULT_MODEL`] in DeepBrain's examples.
pub const DEFAULT_CLOTHES: &str = "BG00002320";

/// DeepBrain's samples look every 3 seconds.
const DEFAULT_POLL: Duration = Duration::from_secs(3);

/// How long launcher follows one render before giving up (it stays resumable).
const POLL_DEADLINE: Duration = Duration::from_secs(2 * 3600);

/// How long one request may take when the `timeout` setting is absent.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The plugin: one configured connection to AI Studios.
pub struct DeepBrain {
    client: Client,
    base: String,
    key: String,
    poll_interval: Duration,
}

#[derive(Deserialize)]
struct Script {
    text: String,
    model: String,
    clothes: String,
    language: String,
}

/// What the service answers: `success`, and `data` or an error.
#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    data: Value,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// Returns the error a `success: false` answer reports: its `error.message` (or `message`,
/// `msg`, `reason`), with its code when there is one.
fn refusal_of(answer: &Answer) -> PluginError {
    let error = answer.rest.get("error");
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let message = text(error.and_then(|e| e.get("message")))
        .or_else(|| text(error.filter(|e| e.is_string())))
        .or_else(|| text(answer.rest.get("message")))
        .or_else(|| text(answer.rest.get("msg")))
        .or_else(|| text(answer.rest.get("reason")))
        .unwrap_or_else(|| "no reason given".to_string());
    let code = text(error.and_then(|e| e.get("code")));
    let message = match code {
        Some(code) => format!("DeepBrain refused the request ({code}): {message}"),
        None => format!("DeepBrain refused the request: {message}"),
    };
    let lower = message.to_ascii_lowercase();
    if lower.contains("key") || lower.contains("unauthori") || lower.contains("token") {
        PluginError::unauthorized(message)
            .with_hint("set DEEPBRAIN_API_KEY to your AI Studios API key")
    } else if lower.contains("invalid") || lower.contains("unknown") || lower.contains("required") {
        PluginError::invalid_input(message)
    } else {
        PluginError::unavailable(message)
    }
}

/// Reads a project's progress answer: the download link once done, else how far it is.
fn progress_of(data: &Value) -> Status<String> {
    let progress = data["progress"].as_f64().unwrap_or(0.0).clamp(0.0, 100.0);
    // DeepBrain's own samples read `url`; its documentation says `downloadUrl`.
    let link = data["downloadUrl"]
        .as_str()
        .or_else(|| data["url"].as_str())
        .filter(|l| !l.is_empty());
    match link {
        Some(link) if progress >= 100.0 => Status::Done(link.to_string()),
        _ => Status::Pending {
            fraction: Some(progress / 100.0),
            message: format!("DeepBrain is rendering ({progress:.0}%)"),
        },
    }
}

impl Plugin for DeepBrain {
    fn manifest() -> Manifest {
        let task = TaskSpec::new("presenter", "a talking presenter reads a script")
            .input(Slot::new("text", ContentKind::Text))
            .output(Slot::new("video", ContentKind::Video).media_types(&["video/mp4"]))
            .param(
                ParamSpec::new("text", ParamType::String, "the script to read (or stdin)")
                    .required(),
            );
        let tool = ToolSpec::new(TOOL, &[])
            .description("DeepBrain AI Studios: a talking presenter video from a script")
            .custom_task(task)
            .cloud()
            .priority(-10)
            .param(
                ParamSpec::new("model", ParamType::String, "the presenter's model id")
                    .default_value(DEFAULT_MODEL),
            )
            .param(
                ParamSpec::new("clothes", ParamType::String, "the presenter's clothes id")
                    .default_value(DEFAULT_CLOTHES),
            )
            .param(
                ParamSpec::new(
                    "language",
                    ParamType::String,
                    "the script's language, e.g. en, ko, zh",
                )
                .default_value("en"),
            )
            .setting(
                SettingSpec::new("key", "DEEPBRAIN_API_KEY", "the AI Studios API key")
                    .required()
                    .secret(),
            )
            .setting(SettingSpec::new(
                "base_url",
                "DEEPBRAIN_BASE_URL",
                "replaces https://app.aistudios.com/api/odin, for proxies",
            ))
            .setting(SettingSpec::new(
                "poll_interval",
                "DEEPBRAIN_POLL_INTERVAL",
                "seconds between looks at a render's progress (default 3)",
            ))
            .setting(SettingSpec::timeout("DEEPBRAIN_TIMEOUT", DEFAULT_TIMEOUT));
        Manifest::new("deepbrain", env!("CARGO_PKG_VERSION"))
            .description("DeepBrain AI Studios presenter videos")
            .tool(tool)
    }

    fn new(tool: &str, settings: &Settings) -> Result<Self, PluginError> {
        launcher_sdk::expect_tool(tool, TOOL)?;
        let key = settings.key("key", "set DEEPBRAIN_API_KEY to your AI Studios API key")?;
        let base = settings.base_url_or(
            "base_url",
            DEFAULT_BASE_URL,
            "e.g. DEEPBRAIN_BASE_URL=https://app.aistudios.com/api/odin",
        )?;
        let client = Client::builder(format!("launcher-deepbrain/{}", env!("CARGO_PKG_VERSION")))
            .settings(settings, DEFAULT_TIMEOUT)?
            .secret(key.as_str())
            .build()?;
        let poll_interval =
            settings.seconds("poll_interval", DEFAULT_POLL, Duration::from_secs(60))?;
        Ok(DeepBrain {
            client,
            base,
            key,
            poll_interval,
        })
    }

    fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
        if job.task != "presenter" {
            return Err(PluginError::invalid_input(format!(
                "{TOOL} does not perform task `{}`",
                job.task
            )));
        }
        let project = match &job.resume {
            Some(checkpoint) => checkpoint["project"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| PluginError::submission_unknown("DeepBrain"))?,
            None => {
                let script: Script = job.params()?;
                if script.text.trim().is_empty() {
                    return Err(PluginError::invalid_input("the script is empty")
                        .with_hint("give the presenter's words with --text"));
                }
                // Recorded before the request: a launcher stopped during it must not send it again.
                cx.checkpoint(&json!({ "state": "submitting" }))?;
                let project = self.submit(&script, cx)?;
                if let Err(err) = cx.checkpoint(&json!({ "project": project })) {
                    cx.log(LogLevel::Warn, goes_on(&project));
                    return Err(err);
                }
                cx.log(
                    LogLevel::Info,
                    format!("DeepBrain project {project} submitted"),
                );
                project
            }
        };
        let mut result = JobResult::default();
        result
            .info
            .insert("project".into(), Value::from(project.as_str()));
        if job.resume.is_some() {
            result.info.insert("resumed".into(), Value::from(true));
        }
        if job.detach {
            return Ok(result);
        }
        let outcome = self.follow(&project, cx);
        if let Err(err) = &outcome
            && err.kind == ErrorKind::Cancelled
        {
            cx.log(LogLevel::Warn, goes_on(&project));
        }
        let bytes = outcome?;
        result.info.insert("bytes".into(), Value::from(bytes));
        Ok(result)
    }
}

/// Says that a cancelled job's project keeps rendering: the API cannot stop one.
fn goes_on(project: &str) -> String {
    format!("DeepBrain has no way to stop a render: project {project} goes on in AI Studios")
}

impl DeepBrain {
    fn request(&self, request: Request) -> Request {
        request
            .secret_header("Authorization", self.key.clone())
            .read_errors(|reply| match reply.status {
                401 | 403 => Verdict::Fail(
                    PluginError::unauthorized(format!(
                        "DeepBrain refused the API key ({})",
                        reply.status
                    ))
                    .with_hint("set DEEPBRAIN_API_KEY to your AI Studios API key"),
                ),
                _ => Verdict::Default,
            })
            .check_answers(|fetched| match fetched.json::<Answer>() {
                Ok(answer) if !answer.success => Err(Refusal::Fail(refusal_of(&answer))),
                _ => Ok(()),
            })
    }

    /// Submits the script; returns the project id.
    fn submit(&self, script: &Script, cx: &mut Context<'_>) -> Result<String, PluginError> {
        let body = json!({
            "language": script.language.trim(),
            "text": script.text,
            "model": script.model.trim(),
            "clothes": script.clothes.trim(),
        });
        // Left as POST's default, not idempotent: a render is paid for.
        let request = self.request(
            Request::post(format!("{}/v3/simple/video", self.base))
                .header("Content-Type", "application/json")
                .body(body.to_string()),
        );
        let answer: Answer = self.client.fetch(&request, cx)?.json()?;
        answer.data["projectId"]
            .as_str()
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                PluginError::unavailable("DeepBrain accepted the video without a project id")
            })
    }

    /// Follows the project to its download link and streams the video; returns its size.
    fn follow(&self, project: &str, cx: &mut Context<'_>) -> Result<u64, PluginError> {
        let policy = Poll::every(self.poll_interval)
            .backoff(1.2)
            .max_interval(self.poll_interval.max(Duration::from_secs(15)))
            .deadline(POLL_DEADLINE);
        let link = poll(cx, &policy, |cx, _| {
            let request = self.request(Request::get(format!(
                "{}/v3/editor/progress/{project}",
                self.base
            )));
            let answer: Answer = self.client.fetch(&request, cx)?.json()?;
            Ok(progress_of(&answer.data))
        })?;
        // The link is signed and short-lived; the key is not sent to its host. The SDK's
        // download resumes a transfer that breaks off and names a link past its expiry.
        let download = Request::get(&link).read_errors(|reply| match reply.status {
            403 | 404 | 410 => Verdict::Fail(
                PluginError::unavailable(format!(
                    "DeepBrain no longer serves the rendered video ({})",
                    reply.status
                ))
                .with_hint("resume the job soon after it finishes, or run it anew"),
            ),
            _ => Verdict::Default,
        });
        let mut out = cx.output("video", "video/mp4", "mp4")?;
        let bytes = self.client.download(&download, &mut out)?;
        out.finish()?;
        Ok(bytes)
    }
}

export_plugin!(DeepBrain);

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(value: Value) -> Answer {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn progress_ends_with_a_link_in_either_field() {
        assert_eq!(
            progress_of(&json!({"progress": 40})),
            Status::Pending {
                fraction: Some(0.4),
                message: "DeepBrain is rendering (40%)".into()
            }
        );
        assert_eq!(
            progress_of(&json!({"progress": 100, "downloadUrl": "https://x/v.mp4"})),
            Status::Done("https://x/v.mp4".into())
        );
        assert_eq!(
            progress_of(&json!({"progress": 100, "url": "https://x/w.mp4"})),
            Status::Done("https://x/w.mp4".into())
        );
        // Done without a link yet: keep looking.
        assert!(matches!(
            progress_of(&json!({"progress": 100})),
            Status::Pending { .. }
        ));
    }

    #[test]
    fn refusals_say_why_and_pick_a_kind() {
        let bad = refusal_of(&answer(json!({"success": false,
            "error": {"code": "INVALID_MODEL", "message": "unknown model: M1"}})));
        assert_eq!(bad.kind, ErrorKind::InvalidInput);
        assert!(
            bad.message.contains("(INVALID_MODEL): unknown model: M1"),
            "{}",
            bad.message
        );
        let key = refusal_of(&answer(
            json!({"success": false, "message": "invalid API key"}),
        ));
        assert_eq!(key.kind, ErrorKind::Unauthorized);
        let other = refusal_of(&answer(json!({"success": false})));
        assert_eq!(other.kind, ErrorKind::Unavailable);
        assert!(other.message.contains("no reason given"));
    }
}
