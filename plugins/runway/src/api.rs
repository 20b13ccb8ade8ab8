//! Runway's wire shapes and rules: the models with the ratios and durations each allows, the
//! create bodies, the task a poll returns, and what its `failureCode` means.

use launcher_sdk::serde_json::{Map, Value, json};
use launcher_sdk::{ErrorKind, PluginError};
use serde::Deserialize;

/// The API host.
pub const BASE_URL: &str = "https://api.dev.runwayml.com";
/// The API version every request names in `X-Runway-Version`.
pub const API_VERSION: &str = "2024-11-06";

/// The most UTF-16 code units `promptText` may hold.
pub const MAX_PROMPT_UNITS: usize = 1000;
/// The largest image sent inline as a data URI; larger ones must be given by URL.
pub const MAX_INLINE_IMAGE: u64 = 5 * 1024 * 1024;

const GEN4_RATIOS: &[&str] = &[
    "1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672",
];
const VEO_RATIOS: &[&str] = &["1280:720", "720:1280", "1080:1920", "1920:1080"];

/// What one model accepts.
#[derive(Debug, PartialEq)]
pub struct Model {
    /// The model's id.
    pub id: &'static str,
    /// Whether it makes videos from text alone (`/v1/text_to_video`).
    pub text_to_video: bool,
    /// The ratios it renders, as `width:height` in pixels.
    pub ratios: &'static [&'static str],
    /// The durations it renders, in seconds; the first is the default.
    pub durations: &'static [u32],
    /// Whether `promptText` is required.
    pub needs_prompt: bool,
    /// Whether it can add sound (`audio`).
    pub audio: bool,
    /// Credits per second of video, as Runway prices it (one credit is one US cent).
    pub credits_per_second: u32,
}

/// The models this adapter knows. `gen3a_turbo` was retired in 2026 and is left out.
pub const MODELS: &[Model] = &[
    Model {
        id: "gen4_turbo",
        text_to_video: false,
        ratios: GEN4_RATIOS,
        durations: &[5, 2, 3, 4, 6, 7, 8, 9, 10],
        needs_prompt: false,
        audio: false,
        credits_per_second: 5,
    },
    Model {
        id: "gen4.5",
        text_to_video: false,
        ratios: GEN4_RATIOS,
        durations: &[5, 2, 3, 4, 6, 7, 8, 9, 10],
        needs_prompt: true,
        audio: false,
        credits_per_second: 12,
    },
    Model {
        id: "veo3",
        text_to_video: true,
        ratios: VEO_RATIOS,
        durations: &[8],
        needs_prompt: false,
        audio: true,
        credits_per_second: 40,
    },
    Model {
        id: "veo3.1",
        text_to_video: true,
        ratios: VEO_RATIOS,
        durations: &[8, 4, 6],
        needs_prompt: false,
        audio: true,
        credits_per_second: 40,
    },
    Model {
        id: "veo3.1_fast",
        text_to_video: true,
        ratios: VEO_RATIOS,
        durations: &[8, 4, 6],
        needs_prompt: false,
        audio: true,
        credits_per_second: 15,
    },
];

/// Returns the built-in prices, in US dollars per second of video (a credit is a cent).
pub fn prices() -> launcher_sdk::cost::PriceTable {
    let prices: Vec<(&str, f64)> = MODELS
        .iter()
        .map(|m| (m.id, f64::from(m.credits_per_second) / 100.0))
        .collect();
    launcher_sdk::cost::PriceTable::new(&prices, "USD")
}

/// The model `img2vid` uses when none is given.
pub const DEFAULT_IMAGE_MODEL: &str = "gen4_turbo";
/// The model `txt2vid` uses when none is given.
pub const DEFAULT_TEXT_MODEL: &str = "veo3.1_fast";

/// Returns the model named `id` for `task`, or why it cannot be used.
pub fn model(id: &str, task: &str) -> Result<&'static Model, PluginError> {
    let text_only = task == "txt2vid";
    let usable = || {
        MODELS
            .iter()
            .filter(|m| !text_only || m.text_to_video)
            .map(|m| m.id)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let found = MODELS.iter().find(|m| m.id == id).ok_or_else(|| {
        PluginError::invalid_input(format!("Runway has no model `{id}`"))
            .with_hint(format!("use one of {}", usable()))
    })?;
    if text_only && !found.text_to_video {
        return Err(PluginError::invalid_input(format!(
            "Runway's `{id}` needs an image; it does not make videos from text alone"
        ))
        .with_hint(format!(
            "use img2vid with --image, or one of {} for txt2vid",
            usable()
        )));
    }
    Ok(found)
}

/// Returns the ratio to send: `ratio` as Runway writes it (`1280:720`), or a screen shape
/// (`16:9`, `9:16`, `1:1`, `4:3`, `3:4`, `21:9`) turned into the model's matching size; the
/// model's first ratio when none is given.
pub fn ratio(model: &Model, ratio: Option<&str>) -> Result<&'static str, PluginError> {
    let Some(asked) = ratio.map(str::trim) else {
        return Ok(model.ratios[0]);
    };
    let shape = |r: &str| -> Option<(u32, u32)> {
        let (w, h) = r.split_once(':')?;
        let (w, h) = (w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?);
        let g = gcd(w, h);
        (g > 0).then(|| (w / g, h / g))
    };
    if let Some(exact) = model.ratios.iter().find(|r| **r == asked) {
        return Ok(exact);
    }
    // A shape in lowest terms (`16:9`) picks the model's size of that shape; a size in
    // pixels (`1920:1080`) must be one the model renders, never silently another.
    let wanted = shape(asked).filter(|(w, h)| {
        asked
            .split_once(':')
            .is_some_and(|(aw, ah)| aw.trim() == w.to_string() && ah.trim() == h.to_string())
    });
    // Runway's 1104:832 and 1584:672 are near 4:3 and 21:9, not exact.
    let near = |r: &str| match r {
        "1104:832" => Some((4, 3)),
        "832:1104" => Some((3, 4)),
        "1584:672" => Some((21, 9)),
        other => shape(other),
    };
    wanted
        .and_then(|w| model.ratios.iter().find(|r| near(r) == Some(w)).copied())
        .ok_or_else(|| {
            PluginError::invalid_input(format!(
                "Runway's `{}` does not render ratio `{asked}`",
                model.id
            ))
            .with_hint(format!("use one of {}", model.ratios.join(", ")))
        })
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Returns the duration to send: `seconds` if the model renders it, else the model's default
/// when none is given.
pub fn duration(model: &Model, seconds: Option<f64>) -> Result<u32, PluginError> {
    let Some(seconds) = seconds else {
        return Ok(model.durations[0]);
    };
    let mut allowed = model.durations.to_vec();
    allowed.sort_unstable();
    let list = allowed
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if seconds.fract() == 0.0 && allowed.contains(&(seconds as u32)) {
        Ok(seconds as u32)
    } else {
        Err(PluginError::invalid_input(format!(
            "Runway's `{}` renders {list} seconds, not {seconds}",
            model.id
        ))
        .with_hint(format!("use --duration with one of {list}")))
    }
}

/// Checks `promptText` against the model and Runway's length limit.
pub fn check_prompt(model: &Model, prompt: Option<&str>) -> Result<(), PluginError> {
    match prompt {
        None if model.needs_prompt => Err(PluginError::invalid_input(format!(
            "Runway's `{}` needs a prompt",
            model.id
        ))
        .with_hint("say what happens with --prompt")),
        Some(text) if text.encode_utf16().count() > MAX_PROMPT_UNITS => {
            Err(PluginError::invalid_input(format!(
                "the prompt is {} UTF-16 units long, and Runway takes at most {MAX_PROMPT_UNITS}",
                text.encode_utf16().count()
            ))
            .with_hint("shorten the prompt"))
        }
        _ => Ok(()),
    }
}

/// A checked request for a video.
#[derive(Debug, Clone, PartialEq)]
pub struct Video<'a> {
    /// The model.
    pub model: &'static Model,
    /// The first frame: an https URL or a data URI; `None` for text to video.
    pub image: Option<String>,
    /// What happens.
    pub prompt: Option<&'a str>,
    /// `width:height`.
    pub ratio: &'static str,
    /// Seconds.
    pub duration: u32,
    /// A seed, for repeatable results.
    pub seed: Option<u32>,
    /// Whether to add sound (Veo models).
    pub audio: Option<bool>,
}

impl Video<'_> {
    /// Returns the path to POST to.
    pub fn path(&self) -> &'static str {
        if self.image.is_some() {
            "/v1/image_to_video"
        } else {
            "/v1/text_to_video"
        }
    }

    /// Returns the create body.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model.id));
        if let Some(image) = &self.image {
            body.insert("promptImage".into(), json!(image));
        }
        if let Some(prompt) = self.prompt {
            body.insert("promptText".into(), json!(prompt));
        }
        body.insert("ratio".into(), json!(self.ratio));
        body.insert("duration".into(), json!(self.duration));
        if let Some(seed) = self.seed {
            body.insert("seed".into(), json!(seed));
        }
        if let Some(audio) = self.audio.filter(|_| self.model.audio) {
            body.insert("audio".into(), json!(audio));
        }
        Value::Object(body)
    }
}

/// The answer to a create request.
#[derive(Debug, Deserialize)]
pub struct Created {
    /// The task's id.
    pub id: String,
}

/// A task as `GET /v1/tasks/{id}` returns it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// `PENDING`, `THROTTLED`, `RUNNING`, `SUCCEEDED`, `FAILED` or `CANCELLED`.
    pub status: String,
    /// How far a running task is, 0 to 1.
    #[serde(default)]
    pub progress: Option<f64>,
    /// The result URLs of a task that succeeded.
    #[serde(default)]
    pub output: Vec<String>,
    /// Why a task failed, in words.
    #[serde(default)]
    pub failure: Option<String>,
    /// Why a task failed, as a dotted code such as `SAFETY.INPUT.TEXT`.
    #[serde(default)]
    pub failure_code: Option<String>,
}

/// Returns the error a `FAILED` task ends the job with.
///
/// A `SAFETY` code (the input or output broke Runway's content rules) or a code about the
/// input (`ASSET`, `INPUT_PREPROCESSING` other than its internal failures) is invalid input:
/// the same request fails the same way. `INTERNAL` codes and codes this adapter does not know
/// are Runway's own failures, which a new submit may get past.
pub fn failed(task: &Task) -> PluginError {
    let code = task.failure_code.as_deref().unwrap_or("");
    let why = task
        .failure
        .as_deref()
        .filter(|f| !f.trim().is_empty())
        .unwrap_or("no reason given");
    let named = if code.is_empty() {
        String::new()
    } else {
        format!(" ({code})")
    };
    let segments: Vec<&str> = code.split('.').collect();
    let (kind, hint) = if segments.contains(&"SAFETY") {
        (
            ErrorKind::InvalidInput,
            "Runway's content moderation refused it; change the prompt or image, since the \
             same input fails the same way",
        )
    } else if segments.contains(&"INTERNAL") {
        (
            ErrorKind::Unavailable,
            "a failure on Runway's side; submitting the job again may work (it is charged again)",
        )
    } else if matches!(segments[0], "ASSET" | "INPUT_PREPROCESSING") {
        (
            ErrorKind::InvalidInput,
            "Runway could not use the input; check the image (JPEG, PNG or WebP) and prompt",
        )
    } else {
        (
            ErrorKind::Unavailable,
            "submitting the job again may work (it is charged again)",
        )
    };
    PluginError::new(kind, format!("the Runway task failed{named}: {why}")).with_hint(hint)
}

/// Returns the message of a 4xx answer's `{"error": "…"}` body.
pub fn error_text(body: &Value) -> Option<&str> {
    body.get("error").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(code: Option<&str>) -> Task {
        Task {
            status: "FAILED".into(),
            progress: None,
            output: Vec::new(),
            failure: Some("nope".into()),
            failure_code: code.map(str::to_string),
        }
    }

    #[test]
    fn failure_codes_map_to_kinds() {
        let kind = |code| failed(&task(code)).kind;
        assert_eq!(kind(Some("SAFETY.INPUT.TEXT")), ErrorKind::InvalidInput);
        assert_eq!(kind(Some("SAFETY.OUTPUT.VIDEO")), ErrorKind::InvalidInput);
        assert_eq!(
            kind(Some("INPUT_PREPROCESSING.SAFETY.TEXT")),
            ErrorKind::InvalidInput
        );
        assert_eq!(kind(Some("ASSET.INVALID")), ErrorKind::InvalidInput);
        assert_eq!(
            kind(Some("INTERNAL.BAD_OUTPUT.CODE01")),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(Some("INPUT_PREPROCESSING.INTERNAL")),
            ErrorKind::Unavailable
        );
        assert_eq!(kind(Some("SOMETHING.NEW")), ErrorKind::Unavailable);
        assert_eq!(kind(None), ErrorKind::Unavailable);
        let err = failed(&task(Some("SAFETY.INPUT.TEXT")));
        assert_eq!(
            err.message,
            "the Runway task failed (SAFETY.INPUT.TEXT): nope"
        );
    }

    #[test]
    fn models_ratios_and_durations_are_checked_before_any_request() {
        let gen4 = model("gen4_turbo", "img2vid").unwrap();
        assert!(model("gen4_turbo", "txt2vid").is_err());
        assert!(
            model("gen9", "img2vid")
                .unwrap_err()
                .hint
                .unwrap()
                .contains("veo3.1")
        );
        assert_eq!(ratio(gen4, None).unwrap(), "1280:720");
        assert_eq!(ratio(gen4, Some("16:9")).unwrap(), "1280:720");
        assert_eq!(ratio(gen4, Some("4:3")).unwrap(), "1104:832");
        assert_eq!(ratio(gen4, Some("960:960")).unwrap(), "960:960");
        assert!(ratio(gen4, Some("1920:1080")).is_err());
        let veo = model("veo3.1", "txt2vid").unwrap();
        assert_eq!(ratio(veo, Some("9:16")).unwrap(), "720:1280");
        assert_eq!(duration(gen4, None).unwrap(), 5);
        assert_eq!(duration(gen4, Some(10.0)).unwrap(), 10);
        assert!(duration(gen4, Some(11.0)).is_err());
        assert!(duration(gen4, Some(5.5)).is_err());
        assert_eq!(duration(veo, None).unwrap(), 8);
        let err = duration(veo, Some(5.0)).unwrap_err();
        assert_eq!(
            err.message,
            "Runway's `veo3.1` renders 4, 6, 8 seconds, not 5"
        );
        let gen45 = model("gen4.5", "img2vid").unwrap();
        assert!(check_prompt(gen45, None).is_err());
        assert!(check_prompt(gen4, None).is_ok());
        assert!(check_prompt(gen4, Some(&"字".repeat(1001))).is_err());
        assert!(check_prompt(gen4, Some(&"字".repeat(1000))).is_ok());
    }

    #[test]
    fn bodies_carry_only_what_the_model_takes() {
        let veo = model("veo3", "txt2vid").unwrap();
        let video = Video {
            model: veo,
            image: None,
            prompt: Some("waves"),
            ratio: "1280:720",
            duration: 8,
            seed: Some(7),
            audio: Some(false),
        };
        assert_eq!(video.path(), "/v1/text_to_video");
        assert_eq!(
            video.body(),
            json!({"model":"veo3","promptText":"waves","ratio":"1280:720","duration":8,"seed":7,"audio":false})
        );
        let gen4 = Video {
            model: model("gen4_turbo", "img2vid").unwrap(),
            image: Some("https://example.com/a.png".into()),
            audio: Some(true),
            ..video
        };
        assert_eq!(gen4.path(), "/v1/image_to_video");
        assert!(gen4.body().get("audio").is_none());
        assert_eq!(gen4.body()["promptImage"], "https://example.com/a.png");
    }
}
