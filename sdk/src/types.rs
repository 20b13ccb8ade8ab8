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

/// The kind of content a task consumes or produces. A tool's categories are the kinds its tasks
/// produce.
///
/// A kind this SDK does not know (sent by a newer peer) is kept as [`ContentKind::Other`] with its
/// name, so an older host shows it as such instead of refusing the whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ContentKind {
    /// Plain or structured text (JSON results included).
    Text,
    /// Still images.
    Image,
    /// Sound.
    Audio,
    /// Moving images, usually with sound.
    Video,
    /// A kind from a newer SDK, by its name.
    Other(String),
}

impl ContentKind {
    /// Every kind this SDK knows, in display order.
    pub const ALL: [ContentKind; 4] = [
        ContentKind::Text,
        ContentKind::Image,
        ContentKind::Audio,
        ContentKind::Video,
    ];

    /// Returns the lowercase name.
    pub fn as_str(&self) -> &str {
        match self {
            ContentKind::Text => "text",
            ContentKind::Image => "image",
            ContentKind::Audio => "audio",
            ContentKind::Video => "video",
            ContentKind::Other(name) => name,
        }
    }

    /// Returns the kind a media type such as `audio/wav` belongs to. JSON and subtitles are text.
    pub fn of_media_type(media_type: &str) -> Option<ContentKind> {
        let essence = media_type.split(';').next()?.trim().to_ascii_lowercase();
        let (top, sub) = essence.split_once('/')?;
        match top {
            "text" => Some(ContentKind::Text),
            "image" => Some(ContentKind::Image),
            "audio" => Some(ContentKind::Audio),
            "video" => Some(ContentKind::Video),
            "application" if sub == "json" || sub.ends_with("+json") || sub == "x-ndjson" => {
                Some(ContentKind::Text)
            }
            "application" if sub == "x-subrip" => Some(ContentKind::Text),
            _ => None,
        }
    }

    fn from_name(name: &str) -> ContentKind {
        ContentKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .unwrap_or_else(|| ContentKind::Other(name.to_string()))
    }
}

impl fmt::Display for ContentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ContentKind {
    type Err = String;

    /// Parses a kind a user typed: only the kinds this SDK knows.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ContentKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown content kind `{s}` (expected text, image, audio or video)")
            })
    }
}

impl Serialize for ContentKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ContentKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(ContentKind::from_name(&name))
    }
}

/// The type of a parameter's value, checked by the host before a plugin is called.
///
/// A type from a newer SDK is kept as [`ParamType::Other`]; the host passes such a value on as
/// text, unchecked.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// A type from a newer SDK, by its name.
    Other(String),
}

impl ParamType {
    /// Returns the lowercase name.
    pub fn as_str(&self) -> &str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::File => "file",
            ParamType::Other(name) => name,
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ParamType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ParamType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(match name.as_ref() {
            "string" => ParamType::String,
            "integer" => ParamType::Integer,
            "number" => ParamType::Number,
            "boolean" => ParamType::Boolean,
            "file" => ParamType::File,
            other => ParamType::Other(other.to_string()),
        })
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
    /// For a tool's own parameter: the tasks that take it; empty means all of the tool's tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
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
            tasks: Vec::new(),
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

    /// Limits a tool's own parameter to some of its tasks.
    pub fn only_for(mut self, tasks: &[&str]) -> Self {
        self.tasks = tasks.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Returns whether a tool's own parameter applies to `task`.
    pub fn applies_to(&self, task: &str) -> bool {
        self.tasks.is_empty()
            || self
                .tasks
                .iter()
                .any(|t| t == task || standard_alias(t) == standard_alias(task))
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
    /// The value the tool gets when the user gave none. Only a described tool needs one: its
    /// configuration (a profile's URL, say) reaches the instance this way. A setting with a
    /// default counts as set when readiness is decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

impl SettingSpec {
    /// Returns the `timeout` setting of a tool that talks to a service: the seconds one
    /// request may take, `default` when it is not set (read it with
    /// `ClientBuilder::settings`, feature `http`, which takes the same default).
    pub fn timeout(env: impl Into<String>, default: std::time::Duration) -> Self {
        SettingSpec::new(
            "timeout",
            env,
            format!(
                "seconds one request may take (default {})",
                default.as_secs()
            ),
        )
    }

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
            default: None,
        }
    }

    /// Sets the value used when the user gave none.
    pub fn default_value(mut self, value: impl Into<String>) -> Self {
        self.default = Some(value.into());
        self
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
///
/// Its categories are not declared: they follow from what its tasks produce (see
/// [`ToolSpec::categories`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The id, unique across installed plugins: lowercase letters, digits and dashes.
    pub id: String,
    /// One line saying what it is.
    #[serde(default)]
    pub description: String,
    /// The tasks it performs, standard (see [`standard_tasks`]) or its own.
    pub tasks: Vec<String>,
    /// Its own parameters, in addition to the common ones of its tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<ParamSpec>,
    /// The settings it reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<SettingSpec>,
    /// Groups of settings of which at least one must be set for the tool to be ready, such as
    /// `["region", "endpoint"]`; on top of the settings marked required. A tool that talks to
    /// a local server names its URL (or model file) here, so that it is ready only when the
    /// user set it, not because a default address exists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_one_of: Vec<Vec<String>>,
    /// Whether jobs go to a remote, usually paid, service. Routing prefers tools that are not.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cloud: bool,
    /// Its rank when a task is routed among several ready tools; higher wins.
    #[serde(default)]
    pub priority: i32,
    /// Whether jobs must not run concurrently in one instance.
    #[serde(default, skip_serializing_if = "is_false")]
    pub serial: bool,
    /// Tasks of its own, not among the standard ones. They are scoped to this tool: another
    /// tool may declare a task of the same name with another shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_tasks: Vec<TaskSpec>,
    /// Parameters whose values change the tool's other parameters (a workflow file, a hosted
    /// model's name). When one is given, the host asks the plugin to describe the tool again
    /// with those values (see [`DescribeRequest`]) and caches the answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub described_by: Vec<String>,
    /// Another tool of the same plugin whose stored and configured settings this one uses
    /// where it has none of its own: a model tool the config names shares the API token
    /// `launcher keys set replicate` stored. Only within one plugin, and only while that
    /// tool's settings are bound to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_of: Option<String>,
}

impl ToolSpec {
    /// Returns a tool performing `tasks`, with no parameters or settings.
    pub fn new(id: impl Into<String>, tasks: &[&str]) -> Self {
        ToolSpec {
            id: id.into(),
            description: String::new(),
            tasks: tasks.iter().map(|t| t.to_string()).collect(),
            params: Vec::new(),
            settings: Vec::new(),
            require_one_of: Vec::new(),
            cloud: false,
            priority: 0,
            serial: false,
            custom_tasks: Vec::new(),
            described_by: Vec::new(),
            settings_of: None,
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

    /// Requires at least one of `settings` to be set before the tool counts as ready.
    pub fn require_one_of(mut self, settings: &[&str]) -> Self {
        self.require_one_of
            .push(settings.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Marks the tool as sending jobs to a remote service.
    pub fn cloud(mut self) -> Self {
        self.cloud = true;
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

    /// Adds a task of the tool's own and names it among its tasks.
    pub fn custom_task(mut self, task: TaskSpec) -> Self {
        if !self.tasks.contains(&task.name) {
            self.tasks.push(task.name.clone());
        }
        self.custom_tasks.push(task);
        self
    }

    /// Says that the values of parameter `name` change the tool's other parameters.
    pub fn described_by(mut self, name: impl Into<String>) -> Self {
        self.described_by.push(name.into());
        self
    }

    /// Says that this tool uses the settings of tool `id` of the same plugin where it has
    /// none of its own (see [`ToolSpec::settings_of`](ToolSpec#structfield.settings_of)).
    pub fn settings_of(mut self, id: impl Into<String>) -> Self {
        self.settings_of = Some(id.into());
        self
    }

    /// Returns the spec of task `name` as this tool performs it: its own declaration, else the
    /// standard task (an alias such as `asr` resolves to its task).
    pub fn task(&self, name: &str) -> Option<TaskSpec> {
        self.task_ref(name).cloned()
    }

    /// Like [`ToolSpec::task`], borrowed: listing and routing ask this of every tool, so the
    /// answer is never copied.
    fn task_ref(&self, name: &str) -> Option<&TaskSpec> {
        let name = if self.tasks.iter().any(|t| t == name) {
            name
        } else {
            let canonical = standard_alias(name)?;
            self.tasks.iter().find(|t| *t == canonical)?.as_str()
        };
        self.custom_tasks
            .iter()
            .find(|t| t.name == name)
            .or_else(|| standard().iter().find(|t| t.name == name))
    }

    /// Returns the kinds of content the tool produces, from its tasks' primary outputs.
    ///
    /// The listing tasks `voices` and `models` describe the tool rather than produce content,
    /// so they do not make a tool a text tool.
    pub fn categories(&self) -> Vec<ContentKind> {
        let mut kinds: Vec<ContentKind> = Vec::new();
        for name in &self.tasks {
            if LISTING_TASKS.contains(&name.as_str()) {
                continue;
            }
            if let Some(kind) = self.task_ref(name).and_then(|t| t.output_kind())
                && !kinds.contains(&kind)
            {
                kinds.push(kind);
            }
        }
        kinds.sort();
        kinds
    }
}

/// The standard tasks that list what a tool offers; their result is a JSON array.
pub const LISTING_TASKS: [&str; 2] = ["voices", "models"];

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
    /// The tools it provides, as known without configuration.
    pub tools: Vec<ToolSpec>,
    /// Whether its tools depend on configuration (profiles, named models): the host then asks
    /// the plugin to describe them (see [`DescribeRequest`]) and caches the answer.
    #[serde(default, skip_serializing_if = "is_false")]
    pub configured_tools: bool,
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
            configured_tools: false,
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

    /// Says that the plugin's tools depend on configuration.
    pub fn configured_tools(mut self) -> Self {
        self.configured_tools = true;
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
        if self.tools.is_empty() && !self.configured_tools {
            return Err(format!("plugin `{}` provides no tools", self.name));
        }
        validate_tools(&self.tools)
    }
}

/// Returns the first problem that makes a list of tools unusable, if any: ids that are not
/// identifiers or appear twice, tools without tasks, tasks neither standard nor declared.
pub fn validate_tools(tools: &[ToolSpec]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for tool in tools {
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
            if tool.task_ref(task).is_none() {
                return Err(format!(
                    "tool `{}` names task `{task}`, which is neither standard nor declared",
                    tool.id
                ));
            }
        }
        for task in &tool.custom_tasks {
            if !is_identifier(&task.name) {
                return Err(format!(
                    "task `{}` of tool `{}` is not lowercase letters, digits and dashes",
                    task.name, tool.id
                ));
            }
        }
        for param in tool
            .params
            .iter()
            .chain(tool.custom_tasks.iter().flat_map(|t| &t.params))
        {
            if param.name.is_empty()
                || !param
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(format!(
                    "parameter `{}` of tool `{}` is not lowercase letters, digits and underscores",
                    param.name, tool.id
                ));
            }
        }
    }
    Ok(())
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

/// A named input or output of a task: which parameter or output it is, what kind of content
/// it carries, and which media types it takes or makes. Pipelines wire one task's output slot
/// into another's input slot by name and kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// The parameter (for an input) or output name.
    pub name: String,
    /// The kind of content.
    pub kind: ContentKind,
    /// The media types accepted or produced (`audio/wav`); empty means any of the kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media_types: Vec<String>,
    /// Whether it takes or makes several.
    #[serde(default, skip_serializing_if = "is_false")]
    pub multiple: bool,
}

impl Slot {
    /// Returns a slot named `name` of `kind`, taking or making one of any media type.
    pub fn new(name: impl Into<String>, kind: ContentKind) -> Slot {
        Slot {
            name: name.into(),
            kind,
            media_types: Vec::new(),
            multiple: false,
        }
    }

    /// Limits the slot to these media types.
    pub fn media_types(mut self, types: &[&str]) -> Slot {
        self.media_types = types.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Lets the slot take or make several.
    pub fn multiple(mut self) -> Slot {
        self.multiple = true;
        self
    }
}

/// What a task does: its input and output slots and its common parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The task's name, e.g. `tts`.
    pub name: String,
    /// One line saying what it does.
    #[serde(default)]
    pub description: String,
    /// What it takes. The first slot is the primary input, which a positional argument fills.
    #[serde(default)]
    pub inputs: Vec<Slot>,
    /// What it makes. The first slot is the primary output; its kind is the task's kind.
    #[serde(default)]
    pub outputs: Vec<Slot>,
    /// The parameters every tool of this task accepts.
    #[serde(default)]
    pub params: Vec<ParamSpec>,
}

impl TaskSpec {
    /// Returns a task with no slots or parameters.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> TaskSpec {
        TaskSpec {
            name: name.into(),
            description: description.into(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            params: Vec::new(),
        }
    }

    /// Adds an input slot.
    pub fn input(mut self, slot: Slot) -> TaskSpec {
        self.inputs.push(slot);
        self
    }

    /// Adds an output slot.
    pub fn output(mut self, slot: Slot) -> TaskSpec {
        self.outputs.push(slot);
        self
    }

    /// Adds a common parameter.
    pub fn param(mut self, param: ParamSpec) -> TaskSpec {
        self.params.push(param);
        self
    }

    /// Returns the kind of the primary output.
    pub fn output_kind(&self) -> Option<ContentKind> {
        self.outputs.first().map(|s| s.kind.clone())
    }

    /// Returns the primary input slot.
    pub fn primary_input(&self) -> Option<&Slot> {
        self.inputs.first()
    }
}

/// Returns the standard task an alias names (`asr` is `stt`), or the name itself when it is
/// a standard task.
pub fn standard_alias(name: &str) -> Option<&'static str> {
    const ALIASES: [(&str, &str); 1] = [("asr", "stt")];
    if let Some((_, task)) = ALIASES.iter().find(|(alias, _)| *alias == name) {
        return Some(task);
    }
    STANDARD_TASK_NAMES.iter().find(|t| **t == name).copied()
}

/// The standard tasks' names, in the order `--to` breaks ties (`chat` before `complete`).
pub const STANDARD_TASK_NAMES: [&str; 12] = [
    "chat", "complete", "embed", "tts", "stt", "txt2img", "img2img", "txt2vid", "img2vid",
    "compose", "voices", "models",
];

/// Returns the standard tasks (DESIGN.md section 2) with their slots and common parameters.
pub fn standard_tasks() -> Vec<TaskSpec> {
    standard().to_vec()
}

/// The standard tasks, built once: every listing, route and manifest check looks them up.
fn standard() -> &'static [TaskSpec] {
    static TASKS: std::sync::OnceLock<Vec<TaskSpec>> = std::sync::OnceLock::new();
    TASKS.get_or_init(build_standard_tasks)
}

fn build_standard_tasks() -> Vec<TaskSpec> {
    use ContentKind::{Audio, Image, Text, Video};
    use ParamType::{File, Integer, Number, String as Str};
    let p = ParamSpec::new;
    let seed = || p("seed", Integer, "random seed, -1 for random").range(-1.0, 4_294_967_295.0);
    let model = || p("model", Str, "the model to use");
    let json = || Slot::new("json", Text).media_types(&["application/json"]);
    vec![
        TaskSpec::new("chat", "answer a prompt with text")
            .input(Slot::new("prompt", Text))
            .output(Slot::new("text", Text).media_types(&["text/plain"]))
            .param(p("prompt", Str, "the prompt (or stdin)").required())
            .param(p("system", Str, "a system instruction"))
            .param(model())
            .param(p("temperature", Number, "sampling temperature").range(0.0, 2.0))
            .param(p("max_tokens", Integer, "the most tokens to generate").range(1.0, 1e9)),
        TaskSpec::new("complete", "continue a text (base models)")
            .input(Slot::new("prompt", Text))
            .output(Slot::new("text", Text).media_types(&["text/plain"]))
            .param(p("prompt", Str, "the text to continue (or stdin)").required())
            .param(model())
            .param(p("max_tokens", Integer, "the most tokens to generate").range(1.0, 1e9)),
        TaskSpec::new("embed", "turn text into an embedding vector")
            .input(Slot::new("input", Text))
            .output(json())
            .param(p("input", Str, "the text to embed (or stdin)").required())
            .param(model()),
        TaskSpec::new("tts", "speak text aloud")
            .input(Slot::new("text", Text))
            .output(Slot::new("audio", Audio))
            .param(p("text", Str, "the text to speak (or stdin, or --file)").required())
            .param(p("voice", Str, "the voice to speak with"))
            .param(p("rate", Number, "speaking rate, 1.0 is normal").range(0.25, 4.0))
            .param(p("pitch", Number, "pitch shift, 1.0 is normal").range(0.5, 2.0))
            .param(p("format", Str, "audio format, e.g. wav or mp3")),
        TaskSpec::new("stt", "transcribe speech to text")
            .input(Slot::new("audio", Audio))
            .output(Slot::new("text", Text))
            .param(p("audio", File, "the audio file").required())
            .param(p("language", Str, "the spoken language, e.g. en or zh"))
            .param(model())
            .param(
                p("format", Str, "the transcript's form").choices(["text", "json", "srt", "vtt"]),
            ),
        TaskSpec::new("txt2img", "make images from a prompt")
            .input(Slot::new("prompt", Text))
            .output(Slot::new("image", Image).multiple())
            .param(p("prompt", Str, "what to draw (or stdin)").required())
            .param(p("negative", Str, "what not to draw"))
            .param(p("width", Integer, "width in pixels").range(64.0, 8192.0))
            .param(p("height", Integer, "height in pixels").range(64.0, 8192.0))
            .param(p("steps", Integer, "sampling steps").range(1.0, 500.0))
            .param(seed())
            .param(p("count", Integer, "how many images").range(1.0, 16.0))
            .param(model()),
        TaskSpec::new("img2img", "change an image as a prompt says")
            .input(Slot::new("image", Image))
            .input(Slot::new("prompt", Text))
            .output(Slot::new("image", Image).multiple())
            .param(p("image", File, "the source image").required())
            .param(p("prompt", Str, "what to change").required())
            .param(p("strength", Number, "how much to change, 0 to 1").range(0.0, 1.0))
            .param(seed())
            .param(model()),
        TaskSpec::new("txt2vid", "make a video from a prompt")
            .input(Slot::new("prompt", Text))
            .output(Slot::new("video", Video))
            .param(p("prompt", Str, "what to show (or stdin)").required())
            .param(p("duration", Number, "length in seconds").range(1.0, 600.0))
            .param(p("ratio", Str, "aspect ratio, e.g. 16:9"))
            .param(model()),
        TaskSpec::new("img2vid", "animate an image as a prompt says")
            .input(Slot::new("image", Image))
            .input(Slot::new("prompt", Text))
            .output(Slot::new("video", Video))
            .param(p("image", File, "the first frame").required())
            .param(p("prompt", Str, "what happens"))
            .param(p("duration", Number, "length in seconds").range(1.0, 600.0))
            .param(p("ratio", Str, "aspect ratio, e.g. 16:9"))
            .param(model()),
        TaskSpec::new("compose", "put images and sound together into a video")
            .input(Slot::new("image", Image).multiple())
            .input(Slot::new("audio", Audio))
            .output(Slot::new("video", Video).media_types(&["video/mp4"]))
            .param(
                p("image", File, "an image; give several for a slideshow")
                    .required()
                    .multiple(),
            )
            .param(p("audio", File, "the soundtrack").required()),
        TaskSpec::new(
            "voices",
            "list the voices a tool offers (JSON: id, name, language)",
        )
        .output(json())
        .param(p(
            "language",
            Str,
            "only voices for this language, e.g. en or zh",
        )),
        TaskSpec::new("models", "list the models a tool offers (JSON: id, name)").output(json()),
    ]
}

/// Returns the standard task named `name` (or named by an alias such as `asr`).
pub fn task_spec(name: &str) -> Option<TaskSpec> {
    let name = standard_alias(name)?;
    standard().iter().find(|t| t.name == name).cloned()
}

/// Settings given to a tool instance, by setting name.
///
/// The host says which of them are secret (as declared in the manifest); `Debug` never shows
/// their values, and [`Settings::secret_values`] hands them to whatever must scrub them (the
/// HTTP helper does so by itself when built with [`Settings`]).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Values by setting name.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// The names of the settings that are secret.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub secret: std::collections::BTreeSet<String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in &self.values {
            if self.secret.contains(name) {
                map.entry(name, &"<secret>");
            } else {
                map.entry(name, value);
            }
        }
        map.finish()
    }
}

impl Settings {
    /// Returns settings holding `values`, none of them secret.
    pub fn from_values<I, K, V>(values: I) -> Settings
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Settings {
            values: values
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            secret: Default::default(),
        }
    }

    /// Sets `name` to `value`.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.values.insert(name.into(), value.into());
    }

    /// Sets secret `name` to `value`.
    pub fn set_secret(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.secret.insert(name.clone());
        self.values.insert(name, value.into());
    }

    /// Returns the value of setting `name`, if given and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Returns the value of setting `name`, or an error naming the missing setting.
    pub fn require(&self, name: &str) -> Result<&str, PluginError> {
        self.get(name)
            .ok_or_else(|| PluginError::invalid_input(format!("setting `{name}` is missing")))
    }

    /// Returns the key, token or other credential in setting `name`, without surrounding
    /// whitespace (a key pasted with its newline still works); when it is missing, the error
    /// carries `hint`, which should name the variable to set.
    pub fn key(&self, name: &str, hint: &str) -> Result<String, PluginError> {
        self.get(name)
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                PluginError::invalid_input(format!("setting `{name}` is missing")).with_hint(hint)
            })
    }

    /// Returns setting `name` as a number of seconds, above 0 and at most `max`, or
    /// `default` when it is not given (a `timeout` setting, say).
    pub fn seconds(
        &self,
        name: &str,
        default: std::time::Duration,
        max: std::time::Duration,
    ) -> Result<std::time::Duration, PluginError> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        raw.trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= max.as_secs_f64())
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(|| {
                PluginError::invalid_input(format!(
                    "setting `{name}` is `{raw}`, not a number of seconds between 0 and {}",
                    max.as_secs_f64()
                ))
            })
    }

    /// Returns setting `name` as the base URL of a service: an `http` or `https` URL, trimmed
    /// and without a trailing slash, so paths can be appended; `None` when it is not given.
    pub fn base_url(&self, name: &str) -> Result<Option<String>, PluginError> {
        let Some(url) = self.get(name).map(str::trim) else {
            return Ok(None);
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(PluginError::invalid_input(format!(
                "setting `{name}` must be an http or https URL"
            )));
        }
        Ok(Some(url.trim_end_matches('/').to_string()))
    }

    /// Returns setting `name` as a base URL, as [`Settings::base_url`] does, or `default`
    /// when it is not given; a bad one is an error with `hint` (an example value).
    pub fn base_url_or(
        &self,
        name: &str,
        default: &str,
        hint: &str,
    ) -> Result<String, PluginError> {
        Ok(self
            .base_url(name)
            .map_err(|e| e.with_hint(hint))?
            .unwrap_or_else(|| default.to_string()))
    }

    /// Returns the values of the secret settings, to keep out of every message.
    pub fn secret_values(&self) -> impl Iterator<Item = &str> {
        self.secret.iter().filter_map(|name| self.get(name))
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

/// What the host sends to ask a plugin for tools or parameters that depend on configuration
/// or arguments (see [`Plugin::describe`](crate::Plugin::describe)).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DescribeRequest {
    /// The tool whose parameters are wanted, or none for the plugin's whole list of tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The user's configuration of the plugin's tools: the `[tools.<id>]` tables of
    /// `config.toml` for each tool id the manifest declares, as JSON, without secrets.
    #[serde(default)]
    pub config: serde_json::Map<String, Value>,
    /// For a tool: the values given for the parameters it is described by.
    #[serde(default)]
    pub args: serde_json::Map<String, Value>,
    /// The settings of the plugin's own tools (those its manifest declares), by tool id,
    /// resolved as for a job, secrets included: what a description fetched from the service
    /// needs (an API token, a base URL). The host sends them only when it has to ask (its
    /// cache keys descriptions on the rest of the request), and only settings bound to this
    /// plugin.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, Settings>,
}

/// The plugin's answer to a [`DescribeRequest`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DescribeResponse {
    /// The tools (all of them, or the one asked for, with its parameters).
    pub tools: Vec<ToolSpec>,
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
    /// The job's id, stable across a resume.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The checkpoint an earlier run of this job recorded (a remote task id, say): the job
    /// picks up that work instead of starting it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Value>,
    /// Submit and return: record a checkpoint once the remote work is accepted, then end
    /// without waiting for it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub detach: bool,
    /// A directory for temporary files, beside the job's outputs, removed after the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<String>,
    /// For `chat`: the earlier turns of the conversation this job continues, oldest first.
    /// The new prompt is not among them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Message>,
    /// The outputs go to a stream that cannot seek back (stdout, a pipe to a player): write
    /// them as they are produced, with a streaming header where the format has one (a WAV
    /// data size of `0xFFFFFFFF`), rather than holding them back to complete a header.
    #[serde(default, skip_serializing_if = "is_false")]
    pub streaming: bool,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who said it: `user`, `assistant` or `system`.
    pub role: String,
    /// What was said.
    pub content: String,
}

impl Message {
    /// Returns a message of `role` saying `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

impl Job {
    /// Returns a job for `tool` doing `task` with no parameters.
    pub fn new(task: impl Into<String>, tool: impl Into<String>) -> Job {
        Job {
            task: task.into(),
            tool: tool.into(),
            params: serde_json::Map::new(),
            id: String::new(),
            resume: None,
            detach: false,
            work_dir: None,
            history: Vec::new(),
            streaming: false,
        }
    }

    /// Returns parameter `name` as text.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.params.get(name).and_then(Value::as_str)
    }

    /// Returns text parameter `name` without surrounding whitespace, or `None` when it is
    /// absent or blank (a filter such as `voices --language`, where blank means "all").
    pub fn given(&self, name: &str) -> Option<&str> {
        self.str(name).map(str::trim).filter(|v| !v.is_empty())
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

    /// Returns the parameters as a typed struct.
    ///
    /// A parameter of the wrong shape is an invalid-input error naming it. Ranges and choices
    /// are checked by the host against the manifest before the job starts, so the struct
    /// need not check them again.
    pub fn params<T: serde::de::DeserializeOwned>(&self) -> Result<T, PluginError> {
        crate::params::typed(&self.params)
    }

    /// Returns the directory for temporary files: the job's work directory beside its outputs,
    /// or the system's temporary directory when the host gave none.
    pub fn work_dir(&self) -> std::path::PathBuf {
        self.work_dir
            .as_ref()
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
    }
}

/// Describes an output stream when it is opened.
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

/// How loud a log line is. A level from a newer SDK reads as [`LogLevel::Info`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Detail for `-vv`.
    Debug,
    /// Shown with `-v`.
    Info,
    /// Always shown.
    Warn,
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match String::deserialize(deserializer)?.as_str() {
            "debug" | "trace" => LogLevel::Debug,
            "warn" | "warning" | "error" => LogLevel::Warn,
            _ => LogLevel::Info,
        })
    }
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
    /// Facts about the job worth showing (the voice used, the seed, the model, usage).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub info: serde_json::Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_seconds_and_base_urls() {
        use std::time::Duration;
        let s = Settings::from_values([
            ("timeout", "1.5"),
            ("bad", "soon"),
            ("url", " https://api.example.com/ "),
            ("ftp", "ftp://x"),
        ]);
        let (default, max) = (Duration::from_secs(60), Duration::from_secs(3600));
        assert_eq!(
            s.seconds("timeout", default, max).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(s.seconds("missing", default, max).unwrap(), default);
        for raw in ["0", "-1", "NaN", "3601", "soon"] {
            let s = Settings::from_values([("t", raw)]);
            let err = s.seconds("t", default, max).unwrap_err();
            assert!(err.message.contains("between 0 and 3600"), "{raw}: {err}");
        }
        assert!(s.seconds("bad", default, max).is_err());
        assert_eq!(
            s.base_url("url").unwrap().as_deref(),
            Some("https://api.example.com")
        );
        assert_eq!(s.base_url("missing").unwrap(), None);
        assert!(s.base_url("ftp").unwrap_err().message.contains("`ftp`"));
        assert_eq!(
            s.base_url_or("missing", "https://default", "e.g. X")
                .unwrap(),
            "https://default"
        );
        assert_eq!(
            s.base_url_or("ftp", "https://default", "e.g. X=https://host")
                .unwrap_err()
                .hint
                .as_deref(),
            Some("e.g. X=https://host")
        );
    }

    #[test]
    fn keys_are_trimmed_and_a_blank_one_is_missing_with_the_hint() {
        let s = Settings::from_values([("key", " abc\n"), ("blank", "  \n")]);
        assert_eq!(s.key("key", "set K").unwrap(), "abc");
        for name in ["blank", "absent"] {
            let err = s.key(name, "set K to your key").unwrap_err();
            assert_eq!(err.kind, crate::ErrorKind::InvalidInput);
            assert!(
                err.message.contains(&format!("`{name}` is missing")),
                "{err}"
            );
            assert_eq!(err.hint.as_deref(), Some("set K to your key"));
        }
    }

    #[test]
    fn unknown_enumerations_are_kept_not_fatal() {
        let tool: ToolSpec = serde_json::from_value(serde_json::json!({
            "id": "holo",
            "tasks": ["sculpt"],
            "custom_tasks": [{
                "name": "sculpt",
                "inputs": [{"name": "prompt", "kind": "text"}],
                "outputs": [{"name": "mesh", "kind": "3d"}],
                "params": [{"name": "prompt", "type": "text-ish"}]
            }]
        }))
        .unwrap();
        assert_eq!(tool.categories(), [ContentKind::Other("3d".into())]);
        assert_eq!(
            tool.custom_tasks[0].params[0].ty,
            ParamType::Other("text-ish".into())
        );
        let line: LogLine =
            serde_json::from_value(serde_json::json!({"level": "notice", "message": "m"})).unwrap();
        assert_eq!(line.level, LogLevel::Info);
        assert_eq!(
            serde_json::to_value(ContentKind::Other("3d".into())).unwrap(),
            "3d"
        );
    }

    #[test]
    fn categories_follow_tasks_and_skip_listings() {
        let tool = ToolSpec::new("omni", &["chat", "txt2img", "tts", "voices", "models"]);
        assert_eq!(
            tool.categories(),
            [ContentKind::Text, ContentKind::Image, ContentKind::Audio]
        );
        let speaker = ToolSpec::new("say", &["tts", "voices"]);
        assert_eq!(speaker.categories(), [ContentKind::Audio]);
    }

    #[test]
    fn asr_is_an_alias_of_stt() {
        assert_eq!(task_spec("asr").unwrap().name, "stt");
        let tool = ToolSpec::new("w", &["stt"]);
        assert_eq!(tool.task("asr").unwrap().name, "stt");
        assert!(tool.task("tts").is_none());
    }

    #[test]
    fn standard_tasks_have_primary_slots_backed_by_parameters() {
        for task in standard_tasks() {
            assert!(!task.outputs.is_empty(), "{} has no output", task.name);
            for slot in &task.inputs {
                assert!(
                    task.params.iter().any(|p| p.name == slot.name),
                    "{}: input slot {} has no parameter",
                    task.name,
                    slot.name
                );
            }
        }
        assert_eq!(
            STANDARD_TASK_NAMES.to_vec(),
            standard_tasks()
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let mut settings = Settings::default();
        settings.set("region", "westeurope");
        settings.set_secret("key", "sk-very-secret");
        let request = CreateRequest {
            tool: "t".into(),
            settings,
        };
        let shown = format!("{request:?}");
        assert!(shown.contains("westeurope"));
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert_eq!(
            request.settings.secret_values().collect::<Vec<_>>(),
            ["sk-very-secret"]
        );
    }
}
