//! Profiles: the endpoints this plugin knows by name, and those the user adds in `config.toml`.
//!
//! A profile is a base URL, the setting that holds its key (or none), a default model, extra
//! headers, and the quirks the adapter must handle. Each profile is one tool. A cloud profile
//! is ready when its key is set; a local one when its address is set explicitly, although a
//! default address exists (the SDK's readiness rule), so a server that is not running never
//! becomes the default for a task.

use launcher_sdk::serde_json::{self, Map, Value};
use launcher_sdk::{ParamSpec, ParamType, PluginError, SettingSpec, Settings, ToolSpec};

/// The tasks this plugin performs against every OpenAI-compatible server that has them.
const LLM_TASKS: &[&str] = &["chat", "complete", "embed", "models"];

/// Every task a profile may offer; user profiles list theirs from these.
const ALL_TASKS: &[&str] = &[
    "chat", "complete", "embed", "models", "stt", "tts", "txt2img",
];

/// How a server's audio and image endpoints differ from OpenAI's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quirk {
    /// OpenAI's own API, or close enough.
    #[default]
    None,
    /// faster-whisper-server: reads the model from the form field `model_name` (ignoring
    /// `model`) and answers only `json` and `verbose_json`; `text`, `srt` and `vtt` get 400.
    FasterWhisper,
    /// LocalAI: the text after `|` in an image prompt is the negative prompt.
    LocalAi,
}

/// The models the media tasks use when `--model` names none; `None` lets the server choose.
/// The `model` setting names a text model, so it does not apply to these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaModels {
    pub stt: Option<&'static str>,
    pub tts: Option<&'static str>,
    pub image: Option<&'static str>,
}

const NO_MEDIA: MediaModels = MediaModels {
    stt: None,
    tts: None,
    image: None,
};

/// A built-in profile.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The tool id.
    pub id: &'static str,
    /// One line for `launcher list`.
    pub description: &'static str,
    /// The base URL the API paths are appended to (`{base}/chat/completions`).
    pub base_url: &'static str,
    /// The environment variable overriding the base URL.
    pub base_env: &'static str,
    /// The environment variable holding the key; `None` for servers without auth.
    pub key_env: Option<&'static str>,
    /// The model used when neither `--model` nor the `model` setting names one; `None` asks
    /// the server for its first model.
    pub model: Option<&'static str>,
    /// The tasks the service offers through its OpenAI-compatible API.
    pub tasks: &'static [&'static str],
    /// Runs on the user's machine: ready only once its address is set explicitly.
    pub local: bool,
    /// Accepts `stream_options.include_usage`, so a streamed answer ends with its usage.
    pub include_usage: bool,
    /// The default models of `stt`, `tts` and `txt2img`.
    pub media: MediaModels,
    /// How its audio and image endpoints differ from OpenAI's.
    pub quirk: Quirk,
}

/// Every built-in profile, in listing order.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        id: "openai",
        description: "OpenAI's API (chat, completions, embeddings, speech, transcription, images)",
        base_url: "https://api.openai.com/v1",
        base_env: "OPENAI_BASE_URL",
        key_env: Some("OPENAI_API_KEY"),
        model: Some("gpt-4o-mini"),
        tasks: &[
            "chat", "complete", "embed", "models", "stt", "tts", "txt2img",
        ],
        local: false,
        include_usage: true,
        media: MediaModels {
            stt: Some("whisper-1"),
            tts: Some("tts-1"),
            image: Some("dall-e-3"),
        },
        quirk: Quirk::None,
    },
    Builtin {
        id: "ollama",
        description: "a local Ollama server",
        base_url: "http://127.0.0.1:11434/v1",
        base_env: "OLLAMA_HOST",
        key_env: None,
        model: None,
        tasks: LLM_TASKS,
        local: true,
        include_usage: false,
        media: NO_MEDIA,
        quirk: Quirk::None,
    },
    Builtin {
        id: "llamacpp",
        description: "a local llama.cpp server (llama-server)",
        base_url: "http://127.0.0.1:8080/v1",
        base_env: "LLAMACPP_BASE_URL",
        key_env: Some("LLAMACPP_API_KEY"),
        model: None,
        tasks: LLM_TASKS,
        local: true,
        // llama-server answers a streamed chat's usage in a last chunk when asked (seen
        // against the real server in the engine tests).
        include_usage: true,
        media: NO_MEDIA,
        quirk: Quirk::None,
    },
    Builtin {
        id: "vllm",
        description: "a local vLLM server",
        base_url: "http://127.0.0.1:8000/v1",
        base_env: "VLLM_BASE_URL",
        key_env: Some("VLLM_API_KEY"),
        model: None,
        tasks: LLM_TASKS,
        local: true,
        include_usage: true,
        media: NO_MEDIA,
        quirk: Quirk::None,
    },
    Builtin {
        id: "localai",
        description: "a local LocalAI server",
        base_url: "http://127.0.0.1:8080/v1",
        base_env: "LOCALAI_BASE_URL",
        key_env: Some("LOCALAI_API_KEY"),
        model: None,
        tasks: &["chat", "complete", "models", "stt", "tts", "txt2img"],
        local: true,
        include_usage: false,
        media: NO_MEDIA,
        quirk: Quirk::LocalAi,
    },
    Builtin {
        id: "deepseek",
        description: "DeepSeek's API",
        base_url: "https://api.deepseek.com/v1",
        base_env: "DEEPSEEK_BASE_URL",
        key_env: Some("DEEPSEEK_API_KEY"),
        model: Some("deepseek-chat"),
        tasks: &["chat", "models"],
        local: false,
        include_usage: true,
        media: NO_MEDIA,
        quirk: Quirk::None,
    },
    Builtin {
        id: "qianfan",
        description: "Baidu Qianfan (v2, OpenAI-compatible)",
        base_url: "https://qianfan.baidubce.com/v2",
        base_env: "QIANFAN_BASE_URL",
        key_env: Some("QIANFAN_API_KEY"),
        model: Some("ernie-4.0-8k"),
        tasks: &["chat", "models"],
        local: false,
        include_usage: false,
        media: NO_MEDIA,
        quirk: Quirk::None,
    },
    Builtin {
        id: "dashscope",
        description: "Alibaba Cloud DashScope (Qwen, OpenAI-compatible mode)",
        base_url: "https://dashscope.aliyuncs.com/compatible-mode/v1",
        base_env: "DASHSCOPE_BASE_URL",
        key_env: Some("DASHSCOPE_API_KEY"),
        model: Some("qwen-plus"),
        tasks: &["chat", "models"],
        local: false,
        include_usage: true,
        media: NO_MEDIA,
        quirk: Quirk::None,
    },
    Builtin {
        id: "moonshot",
        description: "Moonshot AI (Kimi)",
        base_url: "https://api.moonshot.cn/v1",
        base_env: "MOONSHOT_BASE_URL",
        key_env: Some("MOONSHOT_API_KEY"),
        model: Some("moonshot-v1-8k"),
        tasks: &["chat", "models"],
        local: false,
        include_usage: false,
        media: NO_MEDIA,
        quirk: Quirk::None,
    },
    Builtin {
        id: "zhipu",
        description: "Zhipu AI (GLM)",
        base_url: "https://open.bigmodel.cn/api/paas/v4",
        base_env: "ZHIPUAI_BASE_URL",
        key_env: Some("ZHIPUAI_API_KEY"),
        model: Some("glm-4-flash"),
        tasks: &["chat", "models"],
        local: false,
        include_usage: false,
        media: NO_MEDIA,
        quirk: Quirk::None,
    },
    Builtin {
        id: "hunyuan",
        description: "Tencent Hunyuan (OpenAI-compatible)",
        base_url: "https://api.hunyuan.cloud.tencent.com/v1",
        base_env: "HUNYUAN_BASE_URL",
        key_env: Some("HUNYUAN_API_KEY"),
        model: Some("hunyuan-lite"),
        tasks: &["chat", "models"],
        local: false,
        include_usage: false,
        media: NO_MEDIA,
        quirk: Quirk::None,
    },
    Builtin {
        id: "chatglm",
        description: "a local ChatGLM2-6B openai_api.py server",
        base_url: "http://127.0.0.1:8000/v1",
        base_env: "CHATGLM_BASE_URL",
        key_env: None,
        model: Some("chatglm2-6b"),
        tasks: &["chat", "models"],
        local: true,
        include_usage: false,
        media: NO_MEDIA,
        quirk: Quirk::None,
    },
    Builtin {
        id: "whisper",
        description: "a local faster-whisper-server (speech to text)",
        base_url: "http://127.0.0.1:8000/v1",
        base_env: "WHISPER_BASE_URL",
        key_env: None,
        model: None,
        tasks: &["stt", "models"],
        local: true,
        include_usage: false,
        media: NO_MEDIA,
        quirk: Quirk::FasterWhisper,
    },
];

/// DashScope's base URL outside mainland China (`region = intl`).
pub const DASHSCOPE_INTL: &str = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1";

/// The prefix of the tool ids of profiles from the config.
pub const USER_PREFIX: &str = "openai-";

/// What an instance needs to know about its profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The tool id.
    pub id: String,
    /// The base URL, without a trailing slash.
    pub base_url: String,
    /// Ollama's native API root, for the `ollama` profile.
    pub native_url: Option<String>,
    /// The key, if the profile has one and it is set.
    pub key: Option<String>,
    /// The environment variable or setting users fix a rejected key with, for hints.
    pub key_source: String,
    /// Where the base URL comes from, for hints.
    pub base_source: String,
    /// The default model.
    pub model: Option<String>,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
    /// Runs on the user's machine.
    pub local: bool,
    /// Accepts `stream_options.include_usage`.
    pub include_usage: bool,
    /// The default models of the media tasks.
    pub media: MediaModels,
    /// The `model` setting applies to the media tasks too: the profile has no text task
    /// (chat, complete, embed) whose model it would otherwise name.
    pub model_for_media: bool,
    /// How its audio and image endpoints differ from OpenAI's.
    pub quirk: Quirk,
}

fn is_text_task(task: &str) -> bool {
    matches!(task, "chat" | "complete" | "embed")
}

fn builtin(id: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.id == id)
}

/// The tool params every profile takes (the common ones of each task come from the SDK).
fn params(tool: ToolSpec) -> ToolSpec {
    let text = &["chat", "complete"];
    tool.param(
        ParamSpec::new(
            "seed",
            ParamType::Integer,
            "random seed, for repeatable answers where the server supports it",
        )
        .range(0.0, 4_294_967_295.0)
        .only_for(text),
    )
    .param(
        ParamSpec::new(
            "stream",
            ParamType::Boolean,
            "print the answer as it is generated",
        )
        .default_value(true)
        .only_for(text),
    )
    .param(
        ParamSpec::new(
            "json_schema",
            ParamType::File,
            "a JSON Schema file the answer must follow (structured output)",
        )
        .only_for(&["chat"]),
    )
    .param(
        ParamSpec::new("image", ParamType::File, "an image to show a vision model")
            .multiple()
            .only_for(&["chat"]),
    )
    .param(
        ParamSpec::new(
            "format",
            ParamType::String,
            "audio format; pcm is raw 24 kHz 16-bit mono, written as WAV",
        )
        .choices(["mp3", "opus", "aac", "flac", "wav", "pcm"])
        .only_for(&["tts"]),
    )
    .param(
        ParamSpec::new(
            "quality",
            ParamType::String,
            "image quality the model offers, e.g. standard or hd (dall-e-3), low, medium or high (gpt-image-1)",
        )
        .only_for(&["txt2img"]),
    )
}

fn common_settings(tool: ToolSpec, env_prefix: &str) -> ToolSpec {
    tool.setting(SettingSpec::new(
        "model",
        format!("{env_prefix}_MODEL"),
        "the model used when --model names none",
    ))
    .setting(SettingSpec::new(
        "timeout",
        format!("{env_prefix}_TIMEOUT"),
        "seconds a request may take, whole answer included (default 600; a streamed answer may run up to an hour)",
    ))
}

/// Returns the tool of a built-in profile.
pub fn builtin_tool(b: &Builtin) -> ToolSpec {
    let env_prefix = b.id.to_ascii_uppercase();
    let mut tool = params(ToolSpec::new(b.id, b.tasks).description(b.description));
    let address = if b.id == "ollama" { "host" } else { "base_url" };
    let address_help = if b.id == "ollama" {
        "the Ollama server, as `host:port` or a URL (default 127.0.0.1:11434)".to_string()
    } else {
        format!("the API's base URL (default {})", b.base_url)
    };
    tool = tool.setting(SettingSpec::new(address, b.base_env, address_help));
    if let Some(key_env) = b.key_env {
        let mut key = SettingSpec::new("api_key", key_env, "the API key").secret();
        if !b.local {
            key = key.required();
        }
        tool = tool.setting(key);
    }
    match b.id {
        "qianfan" => {
            tool = tool.setting(SettingSpec::new(
                "appid",
                "QIANFAN_APPID",
                "the Qianfan application id, sent as the `appid` header",
            ));
        }
        "dashscope" => {
            tool = tool.setting(SettingSpec::new(
                "region",
                "DASHSCOPE_REGION",
                "cn (default) or intl, the international endpoint",
            ));
        }
        _ => {}
    }
    if b.id == "ollama" {
        tool = tool.param(
            ParamSpec::new(
                "pull",
                ParamType::Boolean,
                "download the model first when the server does not have it",
            )
            .default_value(false)
            .only_for(&["chat", "complete"]),
        );
    }
    tool = common_settings(tool, &env_prefix);
    if b.local {
        tool.require_one_of(&[address])
    } else {
        tool.cloud()
    }
}

/// Returns the tools of the profiles the user configured under
/// `[tools.openai.profiles.NAME]`; a profile that cannot be used is an error naming it.
pub fn user_tools(config: &Map<String, Value>) -> Result<Vec<ToolSpec>, PluginError> {
    let Some(profiles) = config
        .get("openai")
        .and_then(|t| t.get("profiles"))
        .and_then(Value::as_object)
    else {
        return Ok(Vec::new());
    };
    let mut tools = Vec::new();
    for (name, table) in profiles {
        let bad = |what: &str| {
            PluginError::invalid_input(format!(
                "profile `{name}` in [tools.openai.profiles] {what}"
            ))
        };
        let id = format!("{USER_PREFIX}{name}");
        if !launcher_sdk::is_identifier(&id) {
            return Err(bad("needs a name of lowercase letters, digits and dashes"));
        }
        let text = |key: &str| table.get(key).and_then(Value::as_str);
        let base_url = text("base_url").ok_or_else(|| bad("has no `base_url`"))?;
        let local = table.get("local").and_then(Value::as_bool).unwrap_or(false);
        let tasks: Vec<String> = match table.get("tasks") {
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| ALL_TASKS.contains(t))
                .map(str::to_string)
                .collect(),
            _ => LLM_TASKS.iter().map(|t| t.to_string()).collect(),
        };
        if tasks.is_empty() {
            return Err(bad(
                "lists no task this plugin performs (chat, complete, embed, models, stt, tts, txt2img)",
            ));
        }
        let task_refs: Vec<&str> = tasks.iter().map(String::as_str).collect();
        let env_prefix = format!("OPENAI_{}", name.to_ascii_uppercase().replace('-', "_"));
        let mut tool = params(ToolSpec::new(&id, &task_refs).description(format!(
            "OpenAI-compatible endpoint `{name}` from the config ({base_url})"
        )))
        .setting(
            SettingSpec::new(
                "base_url",
                format!("{env_prefix}_BASE_URL"),
                "the API's base URL",
            )
            .default_value(base_url),
        );
        if let Some(key_env) = text("key_env") {
            let mut key = SettingSpec::new("api_key", key_env, "the API key").secret();
            if !local {
                key = key.required();
            }
            tool = tool.setting(key);
        }
        if let Some(headers) = table.get("headers").and_then(Value::as_object) {
            if headers.values().any(|v| !v.is_string()) {
                return Err(bad("has a header whose value is not text"));
            }
            tool = tool.setting(
                SettingSpec::new(
                    "headers",
                    format!("{env_prefix}_HEADERS"),
                    "extra headers, as a JSON object",
                )
                .default_value(Value::Object(headers.clone()).to_string()),
            );
        }
        if table.get("include_usage").and_then(Value::as_bool) == Some(true) {
            tool = tool.setting(
                SettingSpec::new(
                    "include_usage",
                    format!("{env_prefix}_INCLUDE_USAGE"),
                    "ask for usage at the end of a stream",
                )
                .default_value("true"),
            );
        }
        if !tasks.iter().any(|t| is_text_task(t)) {
            tool = tool.setting(
                SettingSpec::new(
                    "text_tasks",
                    format!("{env_prefix}_TEXT_TASKS"),
                    "whether the profile has text tasks (set from its `tasks`)",
                )
                .default_value("false"),
            );
        }
        if let Some(quirk) = text("quirk") {
            if !matches!(quirk, "faster-whisper" | "localai") {
                return Err(bad(&format!(
                    "has quirk `{quirk}`; the quirks are faster-whisper and localai"
                )));
            }
            tool = tool.setting(
                SettingSpec::new(
                    "quirk",
                    format!("{env_prefix}_QUIRK"),
                    "how the server differs from OpenAI's API: faster-whisper or localai",
                )
                .default_value(quirk),
            );
        }
        tool = common_settings(tool, &env_prefix);
        if let Some(model) = text("model") {
            tool.settings
                .iter_mut()
                .filter(|s| s.name == "model")
                .for_each(|s| s.default = Some(model.to_string()));
        }
        tools.push(if local { tool } else { tool.cloud() });
    }
    Ok(tools)
}

/// Returns Ollama's server root from `OLLAMA_HOST`'s forms: `host`, `host:port`, a URL.
/// A listening address such as `0.0.0.0` is reached on loopback.
pub fn ollama_root(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    let (scheme, rest) = match host.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("http", host),
    };
    let (hostport, path) = match rest.split_once('/') {
        Some((hp, path)) => (hp, format!("/{path}")),
        None => (rest, String::new()),
    };
    let has_port = match hostport.rsplit_once(':') {
        Some((h, p)) => !h.ends_with(':') && p.chars().all(|c| c.is_ascii_digit()),
        None => false,
    };
    let mut hostport = hostport.to_string();
    if hostport.is_empty() {
        hostport = "127.0.0.1".into();
    }
    for any in ["0.0.0.0", "[::]"] {
        if let Some(port) = hostport.strip_prefix(any) {
            hostport = format!("127.0.0.1{port}");
        }
    }
    if !has_port {
        let port = if scheme == "https" { 443 } else { 11434 };
        hostport = format!("{hostport}:{port}");
    }
    format!("{scheme}://{hostport}{path}")
}

/// Returns the profile of `tool` with `settings`.
pub fn resolve(tool: &str, settings: &Settings) -> Result<Profile, PluginError> {
    let trimmed = |url: &str| url.trim().trim_end_matches('/').to_string();
    if let Some(b) = builtin(tool) {
        let (base_url, native_url, base_source) = if b.id == "ollama" {
            let root = ollama_root(settings.get("host").unwrap_or("127.0.0.1:11434"));
            (
                format!("{root}/v1"),
                Some(root),
                "setting `host` (OLLAMA_HOST)".to_string(),
            )
        } else {
            let base = match (settings.get("base_url"), b.id, settings.get("region")) {
                (Some(url), _, _) => trimmed(url),
                (None, "dashscope", Some(region)) if region.eq_ignore_ascii_case("intl") => {
                    DASHSCOPE_INTL.to_string()
                }
                (None, "dashscope", Some(region)) if !region.eq_ignore_ascii_case("cn") => {
                    return Err(PluginError::invalid_input(format!(
                        "setting `region` is `{region}`; DashScope's regions are cn and intl"
                    )));
                }
                _ => b.base_url.to_string(),
            };
            (base, None, format!("setting `base_url` ({})", b.base_env))
        };
        let mut headers = Vec::new();
        if let Some(appid) = settings.get("appid") {
            headers.push(("appid".to_string(), appid.to_string()));
        }
        return Ok(Profile {
            id: tool.to_string(),
            base_url,
            native_url,
            key: settings.get("api_key").map(str::to_string),
            key_source: match b.key_env {
                Some(env) => format!("setting `api_key` ({env})"),
                None => "setting `api_key`".to_string(),
            },
            base_source,
            model: settings
                .get("model")
                .map(str::to_string)
                .or(b.model.map(str::to_string)),
            headers,
            local: b.local,
            include_usage: b.include_usage,
            media: b.media,
            model_for_media: !b.tasks.iter().any(|t| is_text_task(t)),
            quirk: b.quirk,
        });
    }
    let Some(name) = tool.strip_prefix(USER_PREFIX) else {
        return Err(PluginError::invalid_input(format!(
            "the openai plugin has no tool `{tool}`"
        )));
    };
    let base_url = settings.get("base_url").ok_or_else(|| {
        PluginError::invalid_input(format!(
            "profile `{name}` has no base URL; set `base_url` in [tools.openai.profiles.{name}]"
        ))
    })?;
    let headers = match settings.get("headers") {
        Some(json) => serde_json::from_str::<Map<String, Value>>(json)
            .map_err(|_| {
                PluginError::invalid_input(format!(
                    "the headers of profile `{name}` are not a JSON object of text values"
                ))
            })?
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
            .collect(),
        None => Vec::new(),
    };
    Ok(Profile {
        id: tool.to_string(),
        base_url: trimmed(base_url),
        native_url: None,
        key: settings.get("api_key").map(str::to_string),
        key_source: format!("the `key_env` variable of profile `{name}`"),
        base_source: format!("`base_url` in [tools.openai.profiles.{name}]"),
        model: settings.get("model").map(str::to_string),
        headers,
        local: false,
        include_usage: settings.get("include_usage") == Some("true"),
        media: MediaModels::default(),
        model_for_media: settings.get("text_tasks") == Some("false"),
        quirk: match settings.get("quirk") {
            Some("faster-whisper") => Quirk::FasterWhisper,
            Some("localai") => Quirk::LocalAi,
            _ => Quirk::None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_host_takes_its_own_forms() {
        assert_eq!(ollama_root("127.0.0.1:11434"), "http://127.0.0.1:11434");
        assert_eq!(ollama_root("0.0.0.0"), "http://127.0.0.1:11434");
        assert_eq!(ollama_root("0.0.0.0:9999"), "http://127.0.0.1:9999");
        assert_eq!(ollama_root("gpu-box"), "http://gpu-box:11434");
        assert_eq!(
            ollama_root("https://ollama.example.com/"),
            "https://ollama.example.com:443"
        );
        assert_eq!(ollama_root("http://10.0.0.5:8000"), "http://10.0.0.5:8000");
    }

    #[test]
    fn every_builtin_is_a_valid_tool() {
        let tools: Vec<ToolSpec> = BUILTINS.iter().map(builtin_tool).collect();
        launcher_sdk::validate_tools(&tools).unwrap();
        for (b, t) in BUILTINS.iter().zip(&tools) {
            assert_eq!(t.cloud, !b.local, "{}", b.id);
            assert_eq!(t.require_one_of.is_empty(), !b.local, "{}", b.id);
        }
    }
}
