//! `launcher keys`: the secrets tools need, kept in the keys store (see `crate::keys`).
//!
//! `keys set <tool> [setting]` reads the value with a hidden prompt on a terminal, or from
//! stdin when piped (`pass show azure | launcher keys set azure-tts`); it is never echoed or
//! printed. A value in the store is used after `--set` and the environment and before the
//! config file.

use std::io::{IsTerminal as _, Read as _};

use anyhow::Result;
use clap::{Args, Subcommand};
use launcher_sdk::serde_json::{self, json};
use launcher_sdk::{SettingSpec, ToolSpec};

use crate::catalog::Catalog;
use crate::commands::{Globals, print_json};
use crate::failure::{Class, Failure};
use crate::home::{Config, Home, suggest};
use crate::keys::KeyStore;
use crate::owners::PluginId;
use crate::settings::{self, SettingSource};

#[derive(Debug, Args)]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    pub(crate) command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Store a secret setting of a tool, typed at a hidden prompt or piped on stdin.
    Set {
        /// The tool id.
        tool: String,
        /// The setting (default: the tool's one secret setting).
        setting: Option<String>,
        /// Print what was stored (never the value) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show which secrets are set and where each comes from; never their values.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Hand a tool's settings and secrets to the plugin that provides the tool now.
    ///
    /// Settings are bound to the plugin they were configured for; when another plugin
    /// provides the tool (after `install --replace`, say), `launcher run` refuses to hand
    /// them over until this command says so.
    Bind {
        /// The tool id.
        tool: String,
        /// Print what was bound as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a stored secret.
    Remove {
        /// The tool id.
        tool: String,
        /// The setting (default: the tool's one stored or secret setting).
        setting: Option<String>,
        /// Print what was removed as JSON.
        #[arg(long)]
        json: bool,
    },
}

impl KeysCommand {
    /// Returns whether the command was asked for JSON (its errors are JSON then too).
    pub(crate) fn wants_json(&self) -> bool {
        match self {
            KeysCommand::Set { json, .. }
            | KeysCommand::List { json }
            | KeysCommand::Bind { json, .. }
            | KeysCommand::Remove { json, .. } => *json,
        }
    }
}

/// Runs a `launcher keys` subcommand.
pub(crate) fn run(globals: &Globals, command: KeysCommand) -> Result<()> {
    let home = Home::locate()?;
    let mut config = Config::load_or_warn(&home, &|w| globals.warn(w));
    if !matches!(command, KeysCommand::List { .. }) {
        // A store that cannot be read must not be overwritten with only the change.
        config.keys = KeyStore::load(&home.keys_file())?;
    }
    match command {
        KeysCommand::Set {
            tool,
            setting,
            json,
        } => {
            let catalog = Catalog::discover(&home, &config);
            let spec = find_tool(&catalog, &tool)?;
            let setting = choose_setting(spec, setting.as_deref())?;
            let value = read_secret(&format!("{} for {}: ", setting.name, spec.id))?;
            config.keys.set(&spec.id, &setting.name, value);
            config.keys.save()?;
            bind_first_use(globals, &catalog, &config, &spec.id)?;
            globals.status(&format!(
                "Stored setting `{}` of `{}` in {}.",
                setting.name,
                spec.id,
                config.keys.path().display()
            ));
            if let Some(var) = setting
                .env
                .as_deref()
                .filter(|v| crate::env::var(v).is_some())
            {
                globals.warn(&format!(
                    "${var} is set and is used before the keys store; unset it to use the stored value"
                ));
            }
            if json {
                print_json(json!({
                    "action": "stored",
                    "tool": spec.id,
                    "setting": setting.name,
                    "file": config.keys.path(),
                }))?;
            }
            Ok(())
        }
        KeysCommand::Bind { tool, json } => {
            let catalog = Catalog::discover(&home, &config);
            let spec = find_tool(&catalog, &tool)?;
            let tool = catalog.tool(&spec.id).expect("found just now");
            let now = PluginId::of(tool);
            let before = config.owners.settings_owner(&tool.spec.id).cloned();
            config
                .owners
                .update(&tool.spec.id, |r| r.settings = Some(now.clone()))?;
            if json {
                print_json(json!({
                    "action": if before.as_ref() == Some(&now) { "unchanged" } else { "bound" },
                    "tool": tool.spec.id,
                    "plugin": now,
                    "previous": before,
                }))?;
            }
            globals.status(&match before {
                Some(before) if before == now => {
                    format!(
                        "The settings of `{}` were already bound to {now}.",
                        tool.spec.id
                    )
                }
                Some(before) => format!(
                    "The settings of `{}` now go to {now}; they went to {before}.",
                    tool.spec.id
                ),
                None => format!("The settings of `{}` now go to {now}.", tool.spec.id),
            });
            Ok(())
        }
        KeysCommand::List { json } => {
            let catalog = Catalog::discover(&home, &config);
            list(&catalog, &config, json)
        }
        KeysCommand::Remove {
            tool,
            setting,
            json,
        } => {
            let setting = match setting {
                Some(s) => s,
                None => {
                    let stored: Vec<&str> = config
                        .keys
                        .entries()
                        .filter(|(t, _)| *t == tool)
                        .map(|(_, s)| s)
                        .collect();
                    match stored.as_slice() {
                        [one] => one.to_string(),
                        [] => return Err(not_stored(&tool, None).into()),
                        many => {
                            return Err(Failure::new(
                                Class::Usage,
                                format!(
                                    "`{tool}` has several stored settings: {}; say which to remove",
                                    many.join(", ")
                                ),
                            )
                            .hint(format!("launcher keys remove {tool} {}", many[0]))
                            .into());
                        }
                    }
                }
            };
            if !config.keys.remove(&tool, &setting) {
                return Err(not_stored(&tool, Some(&setting)).into());
            }
            config.keys.save()?;
            globals.status(&format!(
                "Removed setting `{setting}` of `{tool}` from the keys store."
            ));
            if json {
                print_json(json!({"action": "removed", "tool": tool, "setting": setting}))?;
            }
            Ok(())
        }
    }
}

/// Binds the settings of `tool` to the plugin providing it, when they are bound to none yet:
/// storing a setting is a first use. Says so when they are bound to another plugin.
pub(crate) fn bind_first_use(
    globals: &Globals,
    catalog: &Catalog,
    config: &Config,
    tool: &str,
) -> Result<()> {
    let Some(tool) = catalog.tool(tool) else {
        return Ok(());
    };
    let now = PluginId::of(tool);
    match config.owners.settings_owner(&tool.spec.id) {
        None => config
            .owners
            .update(&tool.spec.id, |r| r.settings = Some(now))?,
        Some(bound) if !bound.accepts(&now) => globals.warn(&format!(
            "the settings of `{id}` are bound to {bound}, not to {now}, which provides `{id}` now; `launcher keys bind {id}` hands them over",
            id = tool.spec.id
        )),
        Some(_) => {}
    }
    Ok(())
}

fn not_stored(tool: &str, setting: Option<&str>) -> Failure {
    let what = match setting {
        Some(s) => format!("no value of setting `{s}` of `{tool}` is stored"),
        None => format!("no setting of `{tool}` is stored"),
    };
    Failure::new(Class::NotFound, what).hint("`launcher keys list` shows what is stored")
}

fn find_tool<'c>(catalog: &'c Catalog, id: &str) -> Result<&'c ToolSpec, Failure> {
    catalog
        .tools
        .iter()
        .map(|t| &t.spec)
        .find(|t| t.id == id)
        .ok_or_else(|| {
            Failure::new(
                Class::NotFound,
                format!(
                    "there is no installed tool `{id}`{}",
                    suggest(id, catalog.tools.iter().map(|t| t.spec.id.as_str()))
                ),
            )
            .hint("`launcher list` shows the installed tools")
        })
}

/// Returns the setting `name` names, or the tool's one secret setting.
fn choose_setting<'t>(tool: &'t ToolSpec, name: Option<&str>) -> Result<&'t SettingSpec, Failure> {
    let secrets: Vec<&SettingSpec> = tool.settings.iter().filter(|s| s.secret).collect();
    let names = |specs: &[&SettingSpec]| {
        specs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(name) = name else {
        return match secrets.as_slice() {
            [one] => Ok(one),
            [] => Err(Failure::new(
                Class::Usage,
                format!("tool `{}` has no secret settings to store", tool.id),
            )
            .hint(format!(
                "set its other settings with `launcher config set tools.{}.<setting> <value>`",
                tool.id
            ))),
            many => Err(Failure::new(
                Class::Usage,
                format!(
                    "tool `{}` has several secret settings: {}; say which to set",
                    tool.id,
                    names(many)
                ),
            )
            .hint(format!("launcher keys set {} {}", tool.id, many[0].name))),
        };
    };
    let Some(setting) = tool.settings.iter().find(|s| s.name == name) else {
        return Err(Failure::new(
            Class::Usage,
            format!(
                "tool `{}` has no setting `{name}`{}",
                tool.id,
                suggest(name, tool.settings.iter().map(|s| s.name.as_str()))
            ),
        )
        .hint(format!("its secret settings are: {}", names(&secrets))));
    };
    if !setting.secret {
        return Err(Failure::new(
            Class::Usage,
            format!("setting `{name}` of `{}` is not a secret", tool.id),
        )
        .hint(format!(
            "keep it in the config file: launcher config set tools.{}.{name} <value>",
            tool.id
        )));
    }
    Ok(setting)
}

/// Reads a secret: with a hidden prompt on a terminal, else all of stdin (one trailing line
/// break removed).
fn read_secret(prompt: &str) -> Result<String> {
    let value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt)?
    } else {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        text.strip_suffix('\r').unwrap_or(text).to_string()
    };
    if value.trim().is_empty() {
        return Err(Failure::new(
            Class::InvalidInput,
            "no value was given; nothing was stored",
        )
        .hint("type the value at the prompt, or pipe it: `pass show x | launcher keys set ...`")
        .into());
    }
    Ok(value)
}

/// One row of `keys list`.
struct Row {
    tool: String,
    setting: String,
    source: SettingSource,
    stored: bool,
}

fn list(catalog: &Catalog, config: &Config, as_json: bool) -> Result<()> {
    let mut rows: Vec<Row> = Vec::new();
    for tool in &catalog.tools {
        for s in tool.spec.settings.iter().filter(|s| s.secret) {
            let source = settings::source_of(&tool.spec, s, &[], config);
            let stored = config.keys.get(&tool.spec.id, &s.name).is_some();
            if source != SettingSource::Missing || stored {
                rows.push(Row {
                    tool: tool.spec.id.clone(),
                    setting: s.name.clone(),
                    source,
                    stored,
                });
            }
        }
    }
    // Stored values of tools not installed (or of settings a tool no longer has) still show.
    for (tool, setting) in config.keys.entries() {
        if !rows.iter().any(|r| r.tool == tool && r.setting == setting) {
            rows.push(Row {
                tool: tool.to_string(),
                setting: setting.to_string(),
                source: SettingSource::KeyStore,
                stored: true,
            });
        }
    }
    rows.sort_by(|a, b| (&a.tool, &a.setting).cmp(&(&b.tool, &b.setting)));
    if as_json {
        let items: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "tool": r.tool,
                    "setting": r.setting,
                    "source": r.source.describe(),
                    "stored": r.stored,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    if rows.is_empty() {
        eprintln!("No secrets are set; `launcher keys set <tool>` stores one.");
        return Ok(());
    }
    let width = rows.iter().map(|r| r.tool.len()).max().unwrap_or(0).max(4);
    let swidth = rows
        .iter()
        .map(|r| r.setting.len())
        .max()
        .unwrap_or(0)
        .max(7);
    let mut out = format!("{:<width$}  {:<swidth$}  FROM\n", "TOOL", "SETTING");
    for r in &rows {
        let mut from = r.source.describe();
        if r.stored && r.source != SettingSource::KeyStore {
            from.push_str(" (also in the keys store, not used)");
        }
        out.push_str(&format!(
            "{:<width$}  {:<swidth$}  {from}\n",
            r.tool, r.setting
        ));
    }
    print!("{}", crate::escape::printable(&out));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_defaults_to_the_one_secret_and_several_are_listed() {
        let one = ToolSpec::new("t", &["tts"])
            .setting(SettingSpec::new("key", "T_KEY", "k").secret())
            .setting(SettingSpec::new("region", "T_REGION", "r"));
        assert_eq!(choose_setting(&one, None).unwrap().name, "key");
        let err = choose_setting(&one, Some("region")).unwrap_err();
        assert!(err.message.contains("is not a secret"), "{}", err.message);
        let err = choose_setting(&one, Some("kye")).unwrap_err();
        assert!(
            err.message.contains("did you mean `key`?"),
            "{}",
            err.message
        );

        let two = one
            .clone()
            .setting(SettingSpec::new("token", "T_TOKEN", "t").secret());
        let err = choose_setting(&two, None).unwrap_err();
        assert_eq!(
            err.message,
            "tool `t` has several secret settings: key, token; say which to set"
        );
        assert_eq!(choose_setting(&two, Some("token")).unwrap().name, "token");
        let none = ToolSpec::new("n", &["tts"]);
        assert!(choose_setting(&none, None).is_err());
    }
}
