//! A tool's settings: from the command line, then the environment, then the keys store
//! (`launcher keys`), then the config file, then a command the config file names.

use std::process::{Command, Stdio};

use launcher_sdk::{SettingSpec, Settings, ToolSpec};

use crate::env;
use crate::failure::{Class, Failure};
use crate::home::Config;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SettingSource {
    CommandLine,
    Env(String),
    /// `launcher keys set`; always treated as a secret.
    KeyStore,
    ConfigFile,
    ConfigCommand,
    /// The default the tool's description gives (a configured profile's URL, say).
    Default,
    Missing,
}

impl SettingSource {
    pub(crate) fn describe(&self) -> String {
        match self {
            SettingSource::CommandLine => "--set".to_string(),
            SettingSource::Env(var) => format!("${var}"),
            SettingSource::KeyStore => "keys store".to_string(),
            SettingSource::ConfigFile => "config file".to_string(),
            SettingSource::ConfigCommand => "config file command".to_string(),
            SettingSource::Default => "the tool's configuration".to_string(),
            SettingSource::Missing => "not set".to_string(),
        }
    }
}

/// Returns where `setting` of `tool` would come from, without running any command.
pub(crate) fn source_of(
    tool: &ToolSpec,
    setting: &SettingSpec,
    cli: &[(String, String)],
    config: &Config,
) -> SettingSource {
    locate(tool, setting, cli, config).0
}

/// Returns the tool ids whose stored and configured settings `tool` uses, in order: its own,
/// then those of the tool it shares settings with ([`ToolSpec::settings_of`]).
pub(crate) fn setting_ids(tool: &ToolSpec) -> impl Iterator<Item = &str> {
    std::iter::once(tool.id.as_str()).chain(tool.settings_of.as_deref())
}

/// Returns where `setting` of `tool` would come from, and under which tool id a stored or
/// configured value is kept.
fn locate<'t>(
    tool: &'t ToolSpec,
    setting: &SettingSpec,
    cli: &[(String, String)],
    config: &Config,
) -> (SettingSource, &'t str) {
    if cli.iter().any(|(k, v)| k == &setting.name && !v.is_empty()) {
        return (SettingSource::CommandLine, &tool.id);
    }
    if let Some(var) = &setting.env
        && env::var(var).is_some()
    {
        return (SettingSource::Env(var.clone()), &tool.id);
    }
    for id in setting_ids(tool) {
        if config.keys.get(id, &setting.name).is_some() {
            return (SettingSource::KeyStore, id);
        }
        if config
            .setting(id, &setting.name)
            .is_some_and(|v| !v.is_empty())
        {
            return (SettingSource::ConfigFile, id);
        }
        if config.setting_command(id, &setting.name).is_some() {
            return (SettingSource::ConfigCommand, id);
        }
    }
    if setting.default.as_deref().is_some_and(|d| !d.is_empty()) {
        return (SettingSource::Default, &tool.id);
    }
    (SettingSource::Missing, &tool.id)
}

/// Returns what keeps `tool` from being ready: each entry is a group of settings of which one
/// is needed (a required setting is a group of one). Empty when the tool is ready.
///
/// A tool is ready when every required setting is present and, for each of its
/// `require_one_of` groups, at least one setting of the group. A setting counts as present
/// when it has a value anywhere (the command line, the environment, the config file) or a
/// configured command would produce it; the command is not run for this.
pub(crate) fn missing<'t>(
    tool: &'t ToolSpec,
    cli: &[(String, String)],
    config: &Config,
) -> Vec<Vec<&'t SettingSpec>> {
    let set = |s: &SettingSpec| source_of(tool, s, cli, config) != SettingSource::Missing;
    let mut missing: Vec<Vec<&SettingSpec>> = tool
        .settings
        .iter()
        .filter(|s| s.required && !set(s))
        .map(|s| vec![s])
        .collect();
    for group in &tool.require_one_of {
        let specs: Vec<&SettingSpec> = group
            .iter()
            .filter_map(|name| tool.settings.iter().find(|s| &s.name == name))
            .collect();
        if !specs.iter().any(|s| set(s)) {
            missing.push(specs);
        }
    }
    missing
}

/// Says what a missing group needs, e.g. "set AZURE_SPEECH_REGION or AZURE_SPEECH_ENDPOINT".
pub(crate) fn describe_missing(group: &[&SettingSpec]) -> String {
    let ways: Vec<String> = group
        .iter()
        .map(|s| match &s.env {
            Some(env) => env.clone(),
            None => format!("setting `{}`", s.name),
        })
        .collect();
    format!("set {}", ways.join(" or "))
}

/// Returns the failure for a tool that lacks one of `group`, saying how to provide it.
pub(crate) fn not_ready(
    tool: &str,
    group: &[&SettingSpec],
    config_path: &std::path::Path,
) -> Failure {
    let Some(setting) = group.first() else {
        return Failure::new(Class::NotReady, format!("tool `{tool}` is not ready"));
    };
    let names: Vec<String> = group.iter().map(|s| format!("`{}`", s.name)).collect();
    let what = if group.len() == 1 {
        format!("setting {} is missing", names[0])
    } else {
        format!("it needs one of the settings {}", names.join(", "))
    };
    let mut ways = Vec::new();
    if let Some(var) = &setting.env {
        ways.push(format!("set {var}"));
    }
    ways.push(format!(
        "add `{name} = \"...\"`{cmd} under [tools.{tool}] in {}",
        config_path.display(),
        name = setting.name,
        cmd = if setting.secret {
            format!(" (or `{}_command = \"pass show ...\"`)", setting.name)
        } else {
            String::new()
        }
    ));
    if setting.secret {
        ways.push(format!("run `launcher keys set {tool} {}`", setting.name));
    }
    ways.push(format!("pass --set {}=...", setting.name));
    Failure::new(
        Class::NotReady,
        format!("tool `{tool}` is not ready: {what}"),
    )
    .hint(ways.join(", or "))
}

/// Returns the value of `setting` of `tool` and whether it is secret (a stored key always
/// is), running the command the config names for it only when `run_commands` says so.
fn value_of(
    tool: &ToolSpec,
    setting: &SettingSpec,
    cli: &[(String, String)],
    config: &Config,
    run_commands: bool,
) -> Result<Option<(String, bool)>, Failure> {
    let (source, id) = locate(tool, setting, cli, config);
    let secret = setting.secret || source == SettingSource::KeyStore;
    let value = match source {
        SettingSource::CommandLine => cli
            .iter()
            .rev()
            .find(|(k, _)| k == &setting.name)
            .map(|(_, v)| v.clone()),
        SettingSource::Env(var) => env::var(&var),
        SettingSource::KeyStore => config.keys.get(id, &setting.name).map(str::to_string),
        SettingSource::ConfigFile => config.setting(id, &setting.name),
        SettingSource::ConfigCommand if run_commands => {
            let command = config
                .setting_command(id, &setting.name)
                .expect("source says it exists");
            Some(run_command(id, &setting.name, &command)?)
        }
        SettingSource::ConfigCommand => None,
        SettingSource::Default => setting.default.clone(),
        SettingSource::Missing => None,
    };
    Ok(value.map(|v| (v, secret)))
}

/// Returns the settings of `tool` that are at hand without running a command (the
/// environment, the keys store, the config file, defaults), for describing tools: listing
/// them must never wait on a password manager's prompt.
pub(crate) fn at_hand(tool: &ToolSpec, config: &Config) -> Settings {
    let mut values = Settings::default();
    for setting in &tool.settings {
        match value_of(tool, setting, &[], config, false) {
            Ok(Some((v, true))) => values.set_secret(setting.name.clone(), v),
            Ok(Some((v, false))) => values.set(setting.name.clone(), v),
            _ => {}
        }
    }
    values
}

/// Resolves every setting of `tool`, running configured commands for those that need it.
pub(crate) fn resolve(
    tool: &ToolSpec,
    cli: &[(String, String)],
    config: &Config,
    config_path: &std::path::Path,
) -> Result<Settings, Failure> {
    let mut values = Settings::default();
    for setting in &tool.settings {
        if let Some(problem) = config.setting_type_error(&tool.id, setting) {
            return Err(Failure::new(Class::Usage, problem)
                .hint("fix it with `launcher config edit` or `launcher config set`"));
        }
        match value_of(tool, setting, cli, config, true)? {
            Some((v, true)) => values.set_secret(setting.name.clone(), v),
            Some((v, false)) => values.set(setting.name.clone(), v),
            None if setting.required => {
                return Err(not_ready(&tool.id, &[setting], config_path));
            }
            None => {}
        }
    }
    if let Some(group) = missing(tool, cli, config).into_iter().next() {
        return Err(not_ready(&tool.id, &group, config_path));
    }
    // Settings given with --set that the tool does not declare are a mistake worth reporting.
    if let Some((name, _)) = cli
        .iter()
        .find(|(k, _)| !tool.settings.iter().any(|s| &s.name == k))
    {
        let known: Vec<&str> = tool.settings.iter().map(|s| s.name.as_str()).collect();
        return Err(Failure::new(
            Class::Usage,
            format!("tool `{}` has no setting `{name}`", tool.id),
        )
        .hint(if known.is_empty() {
            "it takes no settings".to_string()
        } else {
            format!("its settings are: {}", known.join(", "))
        }));
    }
    Ok(values)
}

/// Runs a configured command (e.g. a password manager) and returns its first line of output.
fn run_command(tool: &str, setting: &str, command: &str) -> Result<String, Failure> {
    let shell = if cfg!(windows) {
        ("cmd", "/C")
    } else {
        ("sh", "-c")
    };
    let output = Command::new(shell.0)
        .arg(shell.1)
        .arg(command)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            Failure::new(
                Class::NotReady,
                format!("cannot run the command for setting `{setting}` of `{tool}`: {e}"),
            )
        })?;
    // The command's output is the secret itself: it never goes into a message.
    if !output.status.success() {
        return Err(Failure::new(
            Class::NotReady,
            format!(
                "the command for setting `{setting}` of `{tool}` failed ({})",
                output.status
            ),
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let value = text.lines().next().unwrap_or("").trim().to_string();
    if value.is_empty() {
        return Err(Failure::new(
            Class::NotReady,
            format!("the command for setting `{setting}` of `{tool}` printed nothing"),
        ));
    }
    Ok(value)
}

/// Returns the values of the secret settings of `tool`, to scrub from anything shown.
pub(crate) fn secrets(settings: &Settings) -> Vec<String> {
    settings
        .secret_values()
        .filter(|v| v.len() >= 4)
        .map(str::to_string)
        .collect()
}

/// Replaces every secret in `text` with `***`.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_string(), |acc, secret| {
        acc.replace(secret.as_str(), "***")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> SettingSpec {
        SettingSpec::new("token", "LAUNCHER_TEST_NEVER_SET_TOKEN", "a token")
            .required()
            .secret()
    }

    #[test]
    fn a_tool_sharing_settings_uses_its_own_then_the_shared_tools() {
        let mut config = Config::default();
        config.keys.set("replicate", "token", "shared".into());
        let flux = ToolSpec::new("flux", &[])
            .setting(token())
            .settings_of("replicate");
        let nowhere = std::path::Path::new("/nowhere/config.toml");
        let resolved = resolve(&flux, &[], &config, nowhere).unwrap();
        assert_eq!(resolved.get("token"), Some("shared"));
        assert!(missing(&flux, &[], &config).is_empty());

        config.keys.set("flux", "token", "own".into());
        let resolved = resolve(&flux, &[], &config, nowhere).unwrap();
        assert_eq!(resolved.get("token"), Some("own"));

        // What describing gets is at hand without running a command; a job runs it.
        let dir = tempfile::tempdir().unwrap();
        let ran = dir.path().join("ran");
        let command = format!("touch {} && echo from-command", ran.display());
        let mut table = std::collections::BTreeMap::new();
        table.insert("token_command".to_string(), toml::Value::String(command));
        config.tools.insert("solo".into(), table);
        let solo = ToolSpec::new("solo", &[]).setting(token());
        assert_eq!(at_hand(&solo, &config).get("token"), None);
        assert!(!ran.exists(), "listing ran the command");
        let resolved = resolve(&solo, &[], &config, nowhere).unwrap();
        assert_eq!(resolved.get("token"), Some("from-command"));
        assert!(ran.exists());
        assert_eq!(at_hand(&flux, &config).get("token"), Some("own"));

        // A tool that shares nothing sees nothing of another tool's.
        let other = ToolSpec::new("other", &[]).setting(token());
        assert_eq!(
            source_of(&other, &token(), &[], &config),
            SettingSource::Missing
        );
        assert_eq!(
            resolve(&other, &[], &config, nowhere).unwrap_err().class,
            Class::NotReady
        );
    }
}
