//! Serde types shared by plugins and the host: manifests, tasks, jobs and output events.
//!
//! These are the messages of the plugin boundary. They stay transport-neutral (plain JSON), so a
//! later out-of-process loader can carry the same messages over a pipe. New fields are always
//! optional with a default, so older peers keep parsing newer messages.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::PluginError;

/// The kind of content a task consumes or produces. A tool's category is the kind it produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentKind {
    /// Plain or structured text.
    Text,
    /// Still images.
    Image,
    /// Sound.
    Audio,
    /// Moving images, usually with sound.
    Video,
}

impl ContentKind {
    /// Every kind, in display order.
    pub const ALL: [ContentKind; 4] = [
        ContentKind::Text,
        ContentKind::Image,
        ContentKind::Audio,
        ContentKind::Video,
    ];

    /// Returns the lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentKind::Text => "text",
            ContentKind::Image => "image",
            ContentKind::Audio => "audio",
            ContentKind::Video => "video",
        }
    }

    /// Returns the kind a media type such as `audio/wav` belongs to.
    pub fn of_media_type(media_type: &str) -> Option<ContentKind> {
        let top = media_type.split('/').next()?;
        match top {
            "text" => Some(ContentKind::Text),
            "image" => Some(ContentKind::Image),
            "audio" => Some(ContentKind::Audio),
            "video" => Some(ContentKind::Video),
            _ => None,
        }
    }
}

impl fmt::Display for ContentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ContentKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ContentKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown content kind `{s}` (expected text, image, audio or video)")
            })
    }
}

/// The type of a parameter's value, checked by the host before a plugin is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Any text.
    String,
    /// A whole number.
    Integer,
    /// A number, whole or not.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A path to an existing input file; the host makes it absolute.
    File,
}

impl ParamType {
    /// Returns the lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::File => "file",
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parameter a task or tool accepts, as `--name value` on the command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// The name, lowercase with underscores; the command line spells it with dashes.
    pub name: String,
    /// The type of its value.
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// One line of help.
    #[serde(default)]
    pub description: String,
    /// The value used when none is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The smallest value accepted (numbers) or the shortest length (strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The largest value accepted (numbers) or the longest length (strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The only values accepted, when the set is closed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// Whether the job cannot run without it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// Whether it may be given more than once; its value is then an array.
    #[serde(default, skip_serializing_if = "is_false")]
    pub multiple: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ParamSpec {
    /// Returns a parameter named `name` of type `ty`, optional, with no default.
    pub fn new(name: impl Into<String>, ty: ParamType, description: impl Into<String>) -> Self {
        ParamSpec {
            name: name.into(),
            ty,
            description: description.into(),
            default: None,
            min: None,
            max: None,
            choices: Vec::new(),
            required: false,
            multiple: false,
        }
    }

    /// Sets the default value.
    pub fn default_value(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self
    }

    /// Sets the accepted range (inclusive).
    pub fn range(mut self, min: f64, max: f64) -> Self {
        self.min = Some(min);
        self.max = Some(max);
        self
    }

    /// Sets the closed set of accepted values.
    pub fn choices<I, S>(mut self, choices: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.choices = choices.into_iter().map(Into::into).collect();
        self
    }

    /// Marks the parameter as required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Lets the parameter be given more than once.
    pub fn multiple(mut self) -> Self {
        self.multiple = true;
        self
    }
}

/// A setting a tool needs from its user: a key, a region, a base URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingSpec {
    /// The name in the config file and on the command line (`--set name=value`).
    pub name: String,
    /// The environment variable that provides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// One line of help.
    #[serde(default)]
    pub description: String,
    /// Whether the tool is not ready without it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// Whether it must never be printed, logged or stored in history.
    #[serde(default, skip_serializing_if = "is_false")]
    pub secret: bool,
}

impl SettingSpec {
    /// Returns an optional, non-secret setting read from `env`.
    pub fn new(
        name: impl Into<String>,
        env: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        SettingSpec {
            name: name.into(),
            env: Some(env.into()),
            description: description.into(),
            required: false,
            secret: false,
        }
    }

    /// Marks the setting as required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Marks the setting as a secret.
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
}

/// One concrete provider of one or more tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The id, unique across installed plugins: lowercase letters, digits and dashes.
    pub id: String,
    /// One line saying what it is.
    #[serde(default)]
    pub description: String,
    /// The kind of content it produces.
    pub category: ContentKind,
    /// The tasks it performs, standard (see [`standard_tasks`]) or its own.
    pub tasks: Vec<String>,
    /// Its own parameters, in addition to the common ones of its tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<ParamSpec>,
    /// The settings it reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<SettingSpec>,
    /// Its rank when a task is routed among several ready tools; higher wins.
    #[serde(default)]
    pub priority: i32,
    /// Whether jobs must not run concurrently in one instance.
    #[serde(default, skip_serializing_if = "is_false")]
    pub serial: bool,
    /// Tasks of its own, not among the standard ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_tasks: Vec<TaskSpec>,
}

impl ToolSpec {
    /// Returns a tool with no parameters or settings.
    pub fn new(id: impl Into<String>, category: ContentKind, tasks: &[&str]) -> Self {
        ToolSpec {
            id: id.into(),
            description: String::new(),
            category,
            tasks: tasks.iter().map(|t| t.to_string()).collect(),
            params: Vec::new(),
            settings: Vec::new(),
            priority: 0,
            serial: false,
            custom_tasks: Vec::new(),
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Adds a parameter of the tool's own.
    pub fn param(mut self, param: ParamSpec) -> Self {
        self.params.push(param);
        self
    }

    /// Adds a setting.
    pub fn setting(mut self, setting: SettingSpec) -> Self {
        self.settings.push(setting);
        self
    }

    /// Sets the routing priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Marks the tool as serial.
    pub fn serial(mut self) -> Self {
        self.serial = true;
        self
    }
}

/// What a plugin says about itself. The host stores it as `plugin.toml` beside the library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The plugin's name: lowercase letters, digits and dashes.
    pub name: String,
    /// Its version (semver).
    pub version: String,
    /// One line saying what it is.
    #[serde(default)]
    pub description: String,
    /// The ABI major version it was built for; set by the SDK.
    #[serde(default)]
    pub abi: u32,
    /// The ABI minor version it was built for; set by the SDK.
    #[serde(default)]
    pub abi_minor: u32,
    /// The SDK version it was built with; set by the SDK.
    #[serde(default)]
    pub sdk_version: String,
    /// The tools it provides.
    pub tools: Vec<ToolSpec>,
}

impl Manifest {
    /// Returns a manifest for plugin `name` at `version` with no tools yet.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Manifest {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            abi: crate::abi::ABI_MAJOR,
            abi_minor: crate::abi::ABI_MINOR,
            sdk_version: env!("CARGO_PKG_VERSION").to_string(),
            tools: Vec::new(),
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Adds a tool.
    pub fn tool(mut self, tool: ToolSpec) -> Self {
        self.tools.push(tool);
        self
    }

    /// Returns the first problem that makes this manifest unusable, if any.
    pub fn validate(&self) -> Result<(), String> {
        if !is_identifier(&self.name) {
            return Err(format!(
                "plugin name `{}` is not lowercase letters, digits and dashes",
                self.name
            ));
        }
        if self.tools.is_empty() {
            return Err(format!("plugin `{}` provides no tools", self.name));
        }
        let mut seen = std::collections::BTreeSet::new();
        for tool in &self.tools {
            if !is_identifier(&tool.id) {
                return Err(format!(
                    "tool id `{}` is not lowercase letters, digits and dashes",
                    tool.id
                ));
            }
            if !seen.insert(tool.id.as_str()) {
                return Err(format!("tool id `{}` appears twice", tool.id));
            }
            if tool.tasks.is_empty() {
                return Err(format!("tool `{}` performs no task", tool.id));
            }
            for task in &tool.tasks {
                if task_spec(task).is_none() && !tool.custom_tasks.iter().any(|t| &t.name == task) {
                    return Err(format!(
                        "tool `{}` names task `{task}`, which is neither standard nor declared",
                        tool.id
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Returns whether `s` is a valid plugin name or tool id: 1 to 64 of `a-z`, `0-9` and `-`,
/// starting with a letter.
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// What a task does: its inputs, its output and its common parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The task's name, e.g. `tts`.
    pub name: String,
    /// One line saying what it does.
    #[serde(default)]
    pub description: String,
    /// The kinds of content it takes.
    pub inputs: Vec<ContentKind>,
    /// The kind of content it produces.
    pub output: ContentKind,
    /// The parameters every tool of this task accepts.
    #[serde(default)]
    pub params: Vec<ParamSpec>,
}

/// Returns the standard tasks (DESIGN.md section 2) with their common parameters.
pub fn standard_tasks() -> Vec<TaskSpec> {
    use ContentKind::{Audio, Image, Text, Video};
    use ParamType::{File, Integer, Number, String as Str};
    let p = ParamSpec::new;
    let task = |name: &str, description: &str, inputs: &[ContentKind], output, params| TaskSpec {
        name: name.to_string(),
        description: description.to_string(),
        inputs: inputs.to_vec(),
        output,
        params,
    };
    vec![
        task(
            "chat",
            "answer a prompt with text",
            &[Text],
            Text,
            vec![
                p("prompt", Str, "the prompt (or stdin)").required(),
                p("system", Str, "a system instruction"),
                p("model", Str, "the model to use"),
                p("temperature", Number, "sampling temperature").range(0.0, 2.0),
                p("max_tokens", Integer, "the most tokens to generate").range(1.0, 1_000_000.0),
            ],
        ),
        task(
            "tts",
            "speak text aloud",
            &[Text],
            Audio,
            vec![
                p("text", Str, "the text to speak (or stdin, or --file)").required(),
                p("voice", Str, "the voice to speak with"),
                p("rate", Number, "speaking rate, 1.0 is normal").range(0.25, 4.0),
                p("pitch", Number, "pitch shift, 1.0 is normal").range(0.5, 2.0),
                p("format", Str, "audio format, e.g. wav or mp3"),
            ],
        ),
        task(
            "asr",
            "transcribe speech to text",
            &[Audio],
            Text,
            vec![
                p("audio", File, "the audio file").required(),
                p("language", Str, "the spoken language, e.g. en or zh"),
            ],
        ),
        task(
            "txt2img",
            "make images from a prompt",
            &[Text],
            Image,
            vec![
                p("prompt", Str, "what to draw").required(),
                p("negative", Str, "what not to draw"),
                p("width", Integer, "width in pixels").range(64.0, 8192.0),
                p("height", Integer, "height in pixels").range(64.0, 8192.0),
                p("steps", Integer, "sampling steps").range(1.0, 500.0),
                p("seed", Integer, "random seed, -1 for random").range(-1.0, 4_294_967_295.0),
                p("count", Integer, "how many images").range(1.0, 16.0),
                p("model", Str, "the model to use"),
            ],
        ),
        task(
            "img2img",
            "change an image as a prompt says",
            &[Image, Text],
            Image,
            vec![
                p("image", File, "the source image").required(),
                p("prompt", Str, "what to change").required(),
                p("strength", Number, "how much to change, 0 to 1").range(0.0, 1.0),
                p("seed", Integer, "random seed, -1 for random").range(-1.0, 4_294_967_295.0),
                p("model", Str, "the model to use"),
            ],
        ),
        task(
            "txt2vid",
            "make a video from a prompt",
            &[Text],
            Video,
            vec![
                p("prompt", Str, "what to show").required(),
                p("duration", Number, "length in seconds").range(1.0, 600.0),
                p("ratio", Str, "aspect ratio, e.g. 16:9"),
                p("model", Str, "the model to use"),
            ],
        ),
        task(
            "img2vid",
            "animate an image as a prompt says",
            &[Image, Text],
            Video,
            vec![
                p("image", File, "the first frame").required(),
                p("prompt", Str, "what happens"),
                p("duration", Number, "length in seconds").range(1.0, 600.0),
                p("ratio", Str, "aspect ratio, e.g. 16:9"),
                p("model", Str, "the model to use"),
            ],
        ),
        task(
            "compose",
            "put images and sound together into a video",
            &[Image, Audio],
            Video,
            vec![
                p("image", File, "an image; give several for a slideshow")
                    .required()
                    .multiple(),
                p("audio", File, "the soundtrack").required(),
            ],
        ),
    ]
}

/// Returns the standard task named `name`.
pub fn task_spec(name: &str) -> Option<TaskSpec> {
    standard_tasks().into_iter().find(|t| t.name == name)
}

/// Settings given to a tool instance, by setting name. Secrets among them must never be echoed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Settings(pub BTreeMap<String, String>);

impl Settings {
    /// Returns the value of setting `name`, if given and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Returns the value of setting `name`, or an error naming the missing setting.
    pub fn require(&self, name: &str) -> Result<&str, PluginError> {
        self.get(name)
            .ok_or_else(|| PluginError::invalid_input(format!("setting `{name}` is missing")))
    }
}

/// What the host sends to create a tool instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRequest {
    /// The tool to create.
    pub tool: String,
    /// Its settings.
    #[serde(default)]
    pub settings: Settings,
}

/// One job: a task for a tool with validated parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The task to perform.
    pub task: String,
    /// The tool performing it.
    pub tool: String,
    /// Parameters by name, already checked and defaulted by the host.
    #[serde(default)]
    pub params: serde_json::Map<String, Value>,
}

impl Job {
    /// Returns parameter `name` as text.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.params.get(name).and_then(Value::as_str)
    }

    /// Returns parameter `name` as a number.
    pub fn f64(&self, name: &str) -> Option<f64> {
        self.params.get(name).and_then(Value::as_f64)
    }

    /// Returns parameter `name` as a whole number.
    pub fn i64(&self, name: &str) -> Option<i64> {
        self.params.get(name).and_then(Value::as_i64)
    }

    /// Returns parameter `name` as a boolean.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.params.get(name).and_then(Value::as_bool)
    }

    /// Returns every value of parameter `name` as text (one for a single value).
    pub fn strings(&self, name: &str) -> Vec<&str> {
        match self.params.get(name) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(s)) => vec![s.as_str()],
            _ => Vec::new(),
        }
    }

    /// Returns text parameter `name`, or an invalid-input error naming it.
    pub fn require_str(&self, name: &str) -> Result<&str, PluginError> {
        self.str(name)
            .ok_or_else(|| PluginError::invalid_input(format!("parameter `{name}` is missing")))
    }
}

/// Describes an output stream: sent with each chunk of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputHeader {
    /// The output's name within the job, e.g. `audio` or `image-1`.
    pub name: String,
    /// Its kind.
    pub kind: ContentKind,
    /// Its media type, e.g. `audio/wav`.
    pub media_type: String,
    /// The file name extension to give it, without the dot.
    #[serde(default)]
    pub extension: String,
}

/// Progress of a job, between 0 and 1 when known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// How far along the job is, from 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// What it is doing now.
    #[serde(default)]
    pub message: String,
}

/// How loud a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Detail for `-vv`.
    Debug,
    /// Shown with `-v`.
    Info,
    /// Always shown.
    Warn,
}

/// A log line from a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// How loud it is.
    pub level: LogLevel,
    /// The line.
    pub message: String,
}

/// What a finished job returns besides its outputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// Facts about the job worth showing (the voice used, the seed, the model).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub info: serde_json::Map<String, Value>,
}
