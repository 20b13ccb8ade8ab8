//! Replicate's wire shapes: model names, the prediction object, and its errors.

use launcher_sdk::PluginError;
use launcher_sdk::serde_json::Value;
use serde::Deserialize;

/// Replicate's own host; `REPLICATE_BASE_URL` replaces it.
pub const DEFAULT_BASE_URL: &str = "https://api.replicate.com";

/// A model as the user names it: `owner/name` (an official model, run at its latest
/// version) or `owner/name:version` (a community model at one version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// `owner/name`.
    pub name: String,
    /// The version id, when one was given.
    pub version: Option<String>,
}

impl ModelRef {
    /// Reads `owner/name[:version]`.
    pub fn parse(text: &str) -> Result<ModelRef, PluginError> {
        let text = text.trim();
        let (name, version) = match text.split_once(':') {
            Some((name, version)) => (name, Some(version)),
            None => (text, None),
        };
        let part_ok = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let valid_name = match name.split_once('/') {
            Some((owner, model)) => part_ok(owner) && part_ok(model),
            None => false,
        };
        let valid_version =
            version.is_none_or(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_hexdigit()));
        if !valid_name || !valid_version {
            return Err(PluginError::invalid_input(format!(
                "`{text}` is not a Replicate model name"
            ))
            .with_hint("name a model as owner/name, or owner/name:version for one version"));
        }
        Ok(ModelRef {
            name: name.to_string(),
            version: version.map(str::to_string),
        })
    }

    /// Returns the path of the model's description (with the version's schema).
    pub fn describe_path(&self) -> String {
        match &self.version {
            Some(version) => format!("/v1/models/{}/versions/{version}", self.name),
            None => format!("/v1/models/{}", self.name),
        }
    }

    /// Returns the path predictions of this model are created at.
    pub fn create_path(&self) -> String {
        match &self.version {
            Some(_) => "/v1/predictions".to_string(),
            None => format!("/v1/models/{}/predictions", self.name),
        }
    }
}

/// Returns the OpenAPI description of a model from `GET /v1/models/...`: a model's
/// `latest_version`, or the version itself.
pub fn openapi_of(answer: &Value) -> Option<&Value> {
    [
        &answer["latest_version"]["openapi_schema"],
        &answer["openapi_schema"],
    ]
    .into_iter()
    .find(|v| v.is_object())
}

/// A prediction, as create, get and cancel return it.
#[derive(Debug, Clone, Deserialize)]
pub struct Prediction {
    /// Its id.
    pub id: String,
    /// `starting`, `processing`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    /// What the model made; its shape depends on the model.
    #[serde(default)]
    pub output: Value,
    /// Why it failed.
    #[serde(default)]
    pub error: Value,
    /// The model's log so far.
    #[serde(default)]
    pub logs: Option<String>,
    /// Links: `stream` carries tokens as server-sent events.
    #[serde(default)]
    pub urls: Value,
    /// `predict_time`, in seconds, once it ran.
    #[serde(default)]
    pub metrics: Value,
}

impl Prediction {
    /// Returns whether it has ended (succeeded, failed or canceled).
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "canceled")
    }

    /// Returns how far along the model's log says it is: the last `NN%` it printed (the
    /// progress bars most models draw).
    pub fn fraction(&self) -> Option<f64> {
        let logs = self.logs.as_deref()?;
        let end = logs.rfind('%')?;
        let digits: String = logs[..end]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        digits
            .parse::<f64>()
            .ok()
            .filter(|p| *p <= 100.0)
            .map(|p| p / 100.0)
    }

    /// Returns what it says went wrong, or a plain word when it says nothing.
    pub fn error_text(&self) -> String {
        match &self.error {
            Value::String(text) if !text.trim().is_empty() => text.trim().to_string(),
            Value::Null => "no reason given".to_string(),
            other => other.to_string(),
        }
    }
}

/// Reads a 422 answer into one message with a line per invalid field, each named by the
/// launcher option that sets it (`--num-outputs`), so the user sees what to change.
pub fn validation_error(body: &Value) -> PluginError {
    let title = body["title"].as_str().unwrap_or("the input was refused");
    let fields = body["invalid_fields"].as_array();
    let mut lines = Vec::new();
    for field in fields.into_iter().flatten() {
        let description = field["description"]
            .as_str()
            .unwrap_or("is not valid")
            .trim();
        let name = field["field"].as_str().unwrap_or("input");
        // `input.num_outputs` names the input; `input` alone means the object, whose
        // description names the input itself ("prompt is required").
        let line = match name.strip_prefix("input.") {
            Some(input) => format!("--{}: {description}", input.replace('_', "-")),
            None => match description.split_once(' ') {
                Some((input, rest)) if is_input_name(input) => {
                    format!("--{}: {rest}", input.replace('_', "-"))
                }
                _ => format!("{name}: {description}"),
            },
        };
        lines.push(line);
    }
    if lines.is_empty() {
        let detail = body["detail"].as_str().unwrap_or_default().trim();
        let message = if detail.is_empty() {
            format!("Replicate refused the prediction: {title}")
        } else {
            format!("Replicate refused the prediction: {title}: {detail}")
        };
        let mut err = PluginError::invalid_input(message);
        if title.contains("version") {
            err = err.with_hint("check the model name and version on its Replicate page");
        }
        return err;
    }
    PluginError::invalid_input(format!(
        "Replicate refused the prediction's input ({}):\n  {}",
        title.to_lowercase(),
        lines.join("\n  ")
    ))
    .with_hint("`launcher run replicate --model MODEL --help` lists what the model takes")
}

fn is_input_name(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use launcher_sdk::serde_json::json;

    #[test]
    fn model_names_pick_the_route() {
        let official = ModelRef::parse("black-forest-labs/flux-schnell").unwrap();
        assert_eq!(
            official.create_path(),
            "/v1/models/black-forest-labs/flux-schnell/predictions"
        );
        assert_eq!(
            official.describe_path(),
            "/v1/models/black-forest-labs/flux-schnell"
        );
        let pinned = ModelRef::parse("stability-ai/sdxl:39ed52f2a78e").unwrap();
        assert_eq!(pinned.create_path(), "/v1/predictions");
        assert_eq!(pinned.version.as_deref(), Some("39ed52f2a78e"));
        assert_eq!(
            pinned.describe_path(),
            "/v1/models/stability-ai/sdxl/versions/39ed52f2a78e"
        );
        for bad in ["flux", "a/b/c", "a/b:xyz", "/b", "a/", "a/b c"] {
            assert!(ModelRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_fields_become_one_line_each() {
        let body = json!({"title": "Input validation failed", "status": 422,
            "detail": "- input: prompt is required\n",
            "invalid_fields": [
                {"type": "required", "field": "input", "description": "prompt is required"},
                {"type": "less_than_equal", "field": "input.num_outputs",
                 "description": "Must be less than or equal to 4"}]});
        let err = validation_error(&body);
        assert_eq!(err.kind, launcher_sdk::ErrorKind::InvalidInput);
        assert!(
            err.message.contains("\n  --prompt: is required"),
            "{}",
            err.message
        );
        assert!(
            err.message
                .contains("\n  --num-outputs: Must be less than or equal to 4"),
            "{}",
            err.message
        );
        let version = validation_error(&json!({"title": "Invalid version or not permitted",
            "detail": "The specified version does not exist", "status": 422}));
        assert!(version.message.contains("does not exist"));
        assert!(version.hint.is_some());
    }

    #[test]
    fn progress_is_read_from_the_log() {
        let mut p: Prediction = launcher_sdk::serde_json::from_value(json!({
            "id": "x", "status": "processing", "logs": "loading\n 10%|█\n 45%|████ 9/20"}))
        .unwrap();
        assert_eq!(p.fraction(), Some(0.45));
        p.logs = Some("no bars".into());
        assert_eq!(p.fraction(), None);
    }
}
