//! A Replicate model's OpenAPI description turned into launcher parameters, and a model's
//! inputs built back from a job's parameters.
//!
//! A model version carries `openapi_schema`, whose `components.schemas.Input` is a JSON
//! Schema object: each property has a `type` (`string`, `integer`, `number`, `boolean`,
//! `array`), maybe `format: uri` (a file), `minimum`/`maximum`, a `default`, and for a closed
//! set an `allOf: [{"$ref": "#/components/schemas/<name>"}]` pointing at an `enum`.
//! `components.schemas.Output` says what comes back: URIs (files), or text (a string, or an
//! array of strings that is an iterator of tokens). The model's content kind, and so the task
//! a configured model tool performs, follows from these.

use launcher_sdk::serde_json::{Map, Value};
use launcher_sdk::{ContentKind, ParamSpec, ParamType, PluginError, Slot, TaskSpec};

/// Names launcher's own `run` options use; a model input of that name becomes `input_<name>`.
const RESERVED: &[&str] = &[
    "output",
    "tool",
    "task",
    "to",
    "file",
    "set",
    "resume",
    "cid",
    "color",
    "play",
    "continue",
    "json",
    "force",
    "help",
    "detach",
    "cancel_remote",
    "model",
];

/// Launcher's common task parameters and the input names models commonly give them.
const ALIASES: &[(&str, &[&str])] = &[
    ("negative", &["negative_prompt"]),
    ("count", &["num_outputs"]),
    ("system", &["system_prompt"]),
    ("max_tokens", &["max_new_tokens"]),
    ("ratio", &["aspect_ratio"]),
    (
        "image",
        &[
            "input_image",
            "image_url",
            "start_image",
            "first_frame_image",
        ],
    ),
];

/// One input of a model, as its schema describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The model's name for it.
    pub name: String,
    /// The launcher parameter it becomes.
    pub param: ParamSpec,
    /// The JSON type the model wants (`string`, `integer`, `number`, `boolean`, `array`).
    pub json_type: String,
    /// Whether its value is a file (sent as a data URI).
    pub file: bool,
    /// Its position in the model's own order (`x-order`).
    order: i64,
}

/// What a model takes and makes.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSchema {
    /// The inputs, in the model's order.
    pub inputs: Vec<Input>,
    /// The kind of content it makes.
    pub kind: ContentKind,
    /// Whether its output is text arriving as a stream of tokens.
    pub tokens: bool,
}

/// Reads the schema of a model version's `openapi_schema`; `hint` (the model's name and
/// description) helps tell image, video and audio apart, since an output URI does not say.
pub fn parse(openapi: &Value, hint: &str) -> Result<ModelSchema, PluginError> {
    let schemas = &openapi["components"]["schemas"];
    let input = &schemas["Input"];
    let properties = input["properties"].as_object().ok_or_else(|| {
        PluginError::unavailable("the model's OpenAPI description has no input schema")
    })?;
    let required: Vec<&str> = input["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut inputs: Vec<Input> = properties
        .iter()
        .map(|(name, property)| {
            parse_input(name, property, schemas, required.contains(&name.as_str()))
        })
        .collect();
    inputs.sort_by_key(|i| i.order);
    let output = &schemas["Output"];
    let (kind, tokens) = output_kind(output, hint);
    Ok(ModelSchema {
        inputs,
        kind,
        tokens,
    })
}

fn parse_input(name: &str, property: &Value, schemas: &Value, required: bool) -> Input {
    // A closed set is a `$ref` (inside `allOf`, or directly) to a schema with `enum`.
    let referenced = property["allOf"]
        .as_array()
        .and_then(|all| all.first())
        .unwrap_or(property)["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .map(|r| &schemas[r]);
    let choices: Vec<String> = referenced
        .map(|r| &r["enum"])
        .or(Some(&property["enum"]))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    let json_type = property["type"]
        .as_str()
        .or_else(|| referenced.and_then(|r| r["type"].as_str()))
        .unwrap_or("string")
        .to_string();
    let items_uri = property["items"]["format"].as_str() == Some("uri");
    let file = property["format"].as_str() == Some("uri") || (json_type == "array" && items_uri);
    let ty = if file {
        ParamType::File
    } else if !choices.is_empty() {
        // Choices are compared as text; the value is turned back into the model's type when
        // the input is built.
        ParamType::String
    } else {
        match json_type.as_str() {
            "integer" => ParamType::Integer,
            "number" => ParamType::Number,
            "boolean" => ParamType::Boolean,
            _ => ParamType::String,
        }
    };
    let description = property["description"]
        .as_str()
        .or_else(|| property["title"].as_str())
        .unwrap_or_default();
    let mut param = ParamSpec::new(param_name(name), ty, one_line(description));
    if let Some(default) = property.get("default").filter(|d| !d.is_null()) {
        let default = match (&param.ty, default) {
            (ParamType::String, Value::Number(n)) => Value::String(n.to_string()),
            _ => default.clone(),
        };
        param = param.default_value(default);
    }
    if let (Some(min), Some(max)) = (property["minimum"].as_f64(), property["maximum"].as_f64()) {
        param = param.range(min, max);
    } else if let Some(min) = property["minimum"].as_f64() {
        param = param.range(min, f64::MAX);
    } else if let Some(max) = property["maximum"].as_f64() {
        param = param.range(f64::MIN, max);
    }
    if !choices.is_empty() {
        param = param.choices(choices);
    }
    if required && param.default.is_none() {
        param = param.required();
    }
    if json_type == "array" {
        param = param.multiple();
    }
    Input {
        name: name.to_string(),
        param,
        json_type,
        file,
        order: property["x-order"].as_i64().unwrap_or(i64::MAX),
    }
}

/// Returns the launcher parameter name for a model input: lowercase, and out of the way of
/// launcher's own options.
fn param_name(input: &str) -> String {
    let lower: String = input
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if RESERVED.contains(&lower.as_str()) || lower.starts_with(|c: char| c.is_ascii_digit()) {
        format!("input_{lower}")
    } else {
        lower
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Returns the kind a model's output is, and whether it is a token stream.
fn output_kind(output: &Value, hint: &str) -> (ContentKind, bool) {
    let is_uri = |v: &Value| v["format"].as_str() == Some("uri");
    let files = match output["type"].as_str() {
        Some("array") => is_uri(&output["items"]),
        Some("string") => is_uri(output),
        // An object or anything else is written as JSON, which is text.
        _ => false,
    };
    if !files {
        let tokens = output["type"].as_str() == Some("array")
            && output["x-cog-array-type"].as_str() == Some("iterator");
        return (ContentKind::Text, tokens);
    }
    (kind_from_words(hint), false)
}

/// Tells image, video and audio apart by the words describing a model; images are the most
/// common and the default. The output written is sniffed from its bytes regardless.
pub fn kind_from_words(hint: &str) -> ContentKind {
    let hint = hint.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| hint.contains(w));
    if has(&["video", "animate", "animation", "movie", "clip"]) {
        ContentKind::Video
    } else if has(&["audio", "speech", "music", "voice", "song", "sound", "tts"]) {
        ContentKind::Audio
    } else {
        ContentKind::Image
    }
}

impl ModelSchema {
    /// Returns the launcher parameters of the model's inputs.
    pub fn params(&self) -> Vec<ParamSpec> {
        self.inputs.iter().map(|i| i.param.clone()).collect()
    }

    /// Returns the standard task a tool running this model performs, or `None` when none fits
    /// (then the tool performs [`predict_task`] of the model's kind).
    pub fn standard_task(&self) -> Option<&'static str> {
        let has = |name: &str| self.input_for(name).is_some();
        let takes_image = self
            .inputs
            .iter()
            .any(|i| i.file && i.param.required && i.name.contains("image"));
        match self.kind {
            ContentKind::Text if has("prompt") => Some("chat"),
            ContentKind::Image if takes_image && has("prompt") => Some("img2img"),
            ContentKind::Image if has("prompt") => Some("txt2img"),
            ContentKind::Video if takes_image => Some("img2vid"),
            ContentKind::Video if has("prompt") => Some("txt2vid"),
            ContentKind::Audio if has("text") => Some("tts"),
            _ => None,
        }
    }

    /// Returns [`predict_task`] for this model, taking its main input (see
    /// [`ModelSchema::main_input`]) as the job's input: the positional argument or stdin.
    pub fn predict_task(&self) -> TaskSpec {
        let task = predict_task(self.kind.clone());
        match self.main_input() {
            Some(input) => {
                let kind = if input.file {
                    kind_from_words(&input.name)
                } else {
                    ContentKind::Text
                };
                task.input(Slot::new(input.param.name.clone(), kind))
            }
            None => task,
        }
    }

    /// Returns the input a user gives first: `prompt` or `text` when the model takes one, else
    /// its first required text or file input in the model's own order.
    pub fn main_input(&self) -> Option<&Input> {
        let takes = |i: &&Input| !i.param.multiple && (i.file || i.param.ty == ParamType::String);
        ["prompt", "text"]
            .iter()
            .find_map(|name| self.inputs.iter().filter(takes).find(|i| i.name == *name))
            .or_else(|| {
                self.inputs
                    .iter()
                    .filter(takes)
                    .find(|i| i.param.required && i.param.choices.is_empty())
            })
    }

    /// Returns the input a launcher parameter sets: the input of that name, else the one a
    /// common task parameter usually goes by (`negative` is `negative_prompt`).
    pub fn input_for(&self, param: &str) -> Option<&Input> {
        if let Some(input) = self.inputs.iter().find(|i| i.param.name == param) {
            return Some(input);
        }
        let (_, names) = ALIASES.iter().find(|(name, _)| *name == param)?;
        names
            .iter()
            .find_map(|alias| self.inputs.iter().find(|i| i.name == *alias))
    }

    /// Returns the model's input object for a job's parameters: each value under the model's
    /// name for it, in its JSON type, files read through `file` (a data URI).
    pub fn build_input(
        &self,
        model: &str,
        params: &Map<String, Value>,
        file: &dyn Fn(&str) -> Result<String, PluginError>,
    ) -> Result<Map<String, Value>, PluginError> {
        let mut input = Map::new();
        for (name, value) in params {
            if name == "model" {
                continue;
            }
            let Some(spec) = self.input_for(name) else {
                let known: Vec<String> = self
                    .inputs
                    .iter()
                    .map(|i| format!("--{}", i.param.name.replace('_', "-")))
                    .collect();
                return Err(PluginError::invalid_input(format!(
                    "model `{model}` takes no `--{}`",
                    name.replace('_', "-")
                ))
                .with_hint(format!("its inputs: {}", known.join(" "))));
            };
            input.insert(spec.name.clone(), spec.value(value, file)?);
        }
        Ok(input)
    }
}

impl Input {
    /// Returns `value` as the model wants it.
    fn value(
        &self,
        value: &Value,
        file: &dyn Fn(&str) -> Result<String, PluginError>,
    ) -> Result<Value, PluginError> {
        if self.file {
            return match value {
                Value::Array(items) => items
                    .iter()
                    .map(|v| file(v.as_str().unwrap_or_default()).map(Value::String))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array),
                other => file(other.as_str().unwrap_or_default()).map(Value::String),
            };
        }
        // Choices arrive as text; an integer or number choice goes back as a number.
        if let Value::String(text) = value {
            let parsed = match self.json_type.as_str() {
                "integer" => text.parse::<i64>().ok().map(Value::from),
                "number" => text.parse::<f64>().ok().map(Value::from),
                _ => None,
            };
            if let Some(parsed) = parsed {
                return Ok(parsed);
            }
        }
        Ok(value.clone())
    }
}

/// Returns the task a model tool performs when no standard task fits: `predict`, making
/// content of `kind`.
pub fn predict_task(kind: ContentKind) -> TaskSpec {
    TaskSpec::new("predict", "run a Replicate model").output(Slot::new("output", kind).multiple())
}

#[cfg(test)]
mod tests {
    use super::*;
    use launcher_sdk::serde_json::json;

    /// A model with required, optional, enum, file and number inputs, as Replicate
    /// describes one.
    fn openapi() -> Value {
        json!({"components": {"schemas": {
            "Input": {
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    "prompt": {"type": "string", "title": "Prompt", "x-order": 0,
                               "description": "Prompt for the\n generated image"},
                    "aspect_ratio": {"allOf": [{"$ref": "#/components/schemas/aspect_ratio"}],
                                     "default": "1:1", "x-order": 1},
                    "num_outputs": {"type": "integer", "default": 1, "minimum": 1, "maximum": 4,
                                    "x-order": 2},
                    "guidance": {"type": "number", "minimum": 0, "maximum": 10, "x-order": 3},
                    "image": {"type": "string", "format": "uri", "x-order": 4},
                    "megapixels": {"allOf": [{"$ref": "#/components/schemas/megapixels"}],
                                   "x-order": 5},
                    "model": {"type": "string", "default": "dev", "x-order": 6},
                    "go_fast": {"type": "boolean", "default": true, "x-order": 7},
                }
            },
            "aspect_ratio": {"type": "string", "enum": ["1:1", "16:9", "9:16"]},
            "megapixels": {"type": "integer", "enum": [1, 2]},
            "Output": {"type": "array", "items": {"type": "string", "format": "uri"}},
        }}})
    }

    #[test]
    fn every_kind_of_input_becomes_the_right_parameter() {
        let schema = parse(&openapi(), "flux schnell, fast images").unwrap();
        let params = schema.params();
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "prompt",
                "aspect_ratio",
                "num_outputs",
                "guidance",
                "image",
                "megapixels",
                "input_model",
                "go_fast"
            ]
        );
        assert!(params[0].required);
        assert_eq!(params[0].description, "Prompt for the generated image");
        assert_eq!(params[1].choices, ["1:1", "16:9", "9:16"]);
        assert_eq!(params[1].default, Some(json!("1:1")));
        assert!(!params[1].required);
        assert_eq!(params[2].ty, ParamType::Integer);
        assert_eq!((params[2].min, params[2].max), (Some(1.0), Some(4.0)));
        assert_eq!(params[3].ty, ParamType::Number);
        assert_eq!(params[4].ty, ParamType::File);
        assert_eq!(params[5].choices, ["1", "2"]);
        assert_eq!(params[7].ty, ParamType::Boolean);
        assert_eq!(schema.kind, ContentKind::Image);
        assert_eq!(schema.standard_task(), Some("txt2img"));
    }

    #[test]
    fn parameters_are_checked_as_the_schema_says() {
        let params = parse(&openapi(), "").unwrap().params();
        let check = |name: &str, value: &str| {
            let spec = params.iter().find(|p| p.name == name).unwrap();
            launcher_sdk::check_value(spec, &json!(value)).is_ok()
        };
        assert!(check("aspect_ratio", "16:9"));
        assert!(!check("aspect_ratio", "4:3"));
        assert!(!check("megapixels", "3"));
    }

    #[test]
    fn inputs_are_built_in_the_models_types_and_names() {
        let schema = parse(&openapi(), "").unwrap();
        let mut params = Map::new();
        params.insert("prompt".into(), json!("a fox"));
        params.insert("megapixels".into(), json!("2"));
        params.insert("count".into(), json!(3));
        params.insert("image".into(), json!("/tmp/fox.png"));
        params.insert("input_model".into(), json!("schnell"));
        params.insert("model".into(), json!("owner/name"));
        let input = schema
            .build_input("owner/name", &params, &|path| Ok(format!("data:{path}")))
            .unwrap();
        assert_eq!(
            Value::Object(input),
            json!({"prompt": "a fox", "megapixels": 2, "num_outputs": 3,
                   "image": "data:/tmp/fox.png", "model": "schnell"})
        );
        params.insert("width".into(), json!(512));
        let err = schema
            .build_input("owner/name", &params, &|p| Ok(p.into()))
            .unwrap_err();
        assert!(err.message.contains("takes no `--width`"), "{err}");
    }

    #[test]
    fn the_kind_follows_the_output_and_the_words() {
        let text = json!({"components": {"schemas": {
            "Input": {"properties": {"prompt": {"type": "string"}}},
            "Output": {"type": "array", "items": {"type": "string"},
                       "x-cog-array-type": "iterator"},
        }}});
        let schema = parse(&text, "a language model").unwrap();
        assert_eq!(
            (schema.kind.clone(), schema.tokens),
            (ContentKind::Text, true)
        );
        assert_eq!(schema.standard_task(), Some("chat"));
        assert_eq!(
            kind_from_words("Generate videos from text"),
            ContentKind::Video
        );
        assert_eq!(kind_from_words("music generation"), ContentKind::Audio);
        assert_eq!(kind_from_words("sdxl"), ContentKind::Image);
    }

    #[test]
    fn the_main_input_is_the_prompt_else_the_first_required_text_or_file() {
        let image = parse(&openapi(), "").unwrap();
        assert_eq!(image.main_input().unwrap().name, "prompt");
        let task = image.predict_task();
        assert_eq!(task.primary_input().unwrap().name, "prompt");
        assert_eq!(task.primary_input().unwrap().kind, ContentKind::Text);

        let upscaler = json!({"components": {"schemas": {
            "Input": {"type": "object", "required": ["scale", "audio_file"], "properties": {
                "scale": {"type": "integer", "x-order": 0},
                "audio_file": {"type": "string", "format": "uri", "x-order": 1},
                "language": {"type": "string", "x-order": 2},
            }},
            "Output": {"type": "string"},
        }}});
        let schema = parse(&upscaler, "transcribe speech").unwrap();
        assert_eq!(schema.main_input().unwrap().name, "audio_file");
        let slot = schema.predict_task().primary_input().cloned().unwrap();
        assert_eq!(
            (slot.name.as_str(), slot.kind),
            ("audio_file", ContentKind::Audio)
        );

        let numbers = json!({"components": {"schemas": {
            "Input": {"type": "object", "required": ["seed"], "properties": {
                "seed": {"type": "integer"},
            }},
            "Output": {"type": "string"},
        }}});
        let schema = parse(&numbers, "").unwrap();
        assert!(schema.main_input().is_none());
        assert!(schema.predict_task().primary_input().is_none());
    }
}
