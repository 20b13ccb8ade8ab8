//! `launcher config` (read and change `config.toml`, keeping the user's comments and layout)
//! and `launcher default` (the tool used for a task).
//!
//! Keys are dotted paths: `defaults.<task>` and `tools.<tool>.<setting>`. Changes go through
//! `toml_edit`, so comments, order and formatting of everything else stay as the user wrote
//! them; the file is rewritten atomically, keeping its permissions (0600 for a new file, as it
//! may hold secrets).

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use launcher_sdk::ToolSpec;
use launcher_sdk::serde_json::{self, Value, json};

use crate::catalog::Catalog;
use crate::commands::{Globals, print_json};
use crate::env;
use crate::failure::{Class, Failure};
use crate::home::{CONFIRM_OVER, Config, Home, suggest};

#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    pub(crate) command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the value of a key, e.g. `defaults.tts` or `tools.espeak.program`.
    Get {
        /// The dotted key.
        key: String,
        /// Print the key and its value as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a key to a value (as a string), keeping the file's comments and layout.
    Set {
        /// The dotted key: `defaults.<task>` or `tools.<tool>.<setting>`.
        key: String,
        /// The value.
        value: String,
        /// Print what was set as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a key.
    Unset {
        /// The dotted key.
        key: String,
        /// Print what was removed as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print every key and value (secret values are not shown).
    List {
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print where the config file, data and cache are.
    Path {
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Open the config file in $VISUAL or $EDITOR, then check it.
    Edit,
}

#[derive(Debug, Args)]
pub(crate) struct DefaultArgs {
    /// The task, e.g. `tts`.
    pub(crate) task: String,
    /// The tool to use for it; without it, print the current default.
    #[arg(conflicts_with = "unset")]
    pub(crate) tool: Option<String>,
    /// Remove the default (launcher chooses again).
    #[arg(long)]
    pub(crate) unset: bool,
    /// Print the task's default tool (or what changed) as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

impl ConfigCommand {
    /// Returns whether the command was asked for JSON (its errors are JSON then too).
    pub(crate) fn wants_json(&self) -> bool {
        match self {
            ConfigCommand::Get { json, .. }
            | ConfigCommand::Set { json, .. }
            | ConfigCommand::Unset { json, .. }
            | ConfigCommand::List { json }
            | ConfigCommand::Path { json } => *json,
            ConfigCommand::Edit => false,
        }
    }
}

/// Runs a `launcher config` subcommand.
pub(crate) fn run(globals: &Globals, command: ConfigCommand) -> Result<()> {
    let home = Home::locate()?;
    match command {
        ConfigCommand::Get { key, json } => {
            let value = get(globals, &home, &key)?;
            if json {
                print_json(json!({ "key": key, "value": value }))?;
            } else {
                match value {
                    Value::String(text) => println!("{text}"),
                    other => println!("{other}"),
                }
            }
            Ok(())
        }
        ConfigCommand::Set { key, value, json } => {
            let value = set(globals, &home, &key, &value)?;
            if json {
                print_json(json!({
                    "action": "set", "key": key, "value": value, "file": home.config_file(),
                }))?;
            }
            Ok(())
        }
        ConfigCommand::Unset { key, json } => {
            let removed = unset(globals, &home, &key)?;
            if json {
                print_json(json!({
                    "action": if removed { "removed" } else { "unchanged" },
                    "key": key,
                    "file": home.config_file(),
                }))?;
            }
            Ok(())
        }
        ConfigCommand::List { json } => list(globals, &home, json),
        ConfigCommand::Path { json } => path(&home, json),
        ConfigCommand::Edit => edit(globals, &home),
    }
}

/// Runs `launcher default`.
pub(crate) fn default(globals: &Globals, args: &DefaultArgs) -> Result<()> {
    let home = Home::locate()?;
    let key = format!("defaults.{}", args.task);
    let report = |action: &str, tool: Option<&str>| {
        print_json(json!({ "action": action, "task": args.task, "tool": tool }))
    };
    if args.unset {
        let removed = unset(globals, &home, &key)?;
        if args.json {
            report(if removed { "removed" } else { "unchanged" }, None)?;
        }
        return Ok(());
    }
    match &args.tool {
        Some(tool) => {
            set(globals, &home, &key, tool)?;
            if args.json {
                report("set", Some(tool))?;
            }
            Ok(())
        }
        None => {
            let config = Config::read(&home.config_file())?;
            let tool = config.defaults.get(&args.task);
            if args.json {
                return report("shown", tool.map(String::as_str));
            }
            match tool {
                Some(tool) => println!("{tool}"),
                None => globals.status(&format!(
                    "No default tool for `{}`: launcher picks the best ready local tool.",
                    args.task
                )),
            }
            Ok(())
        }
    }
}

/// A checked dotted key.
#[derive(Debug, PartialEq)]
enum Key {
    Default { task: String },
    Setting { tool: String, name: String },
}

impl Key {
    fn parse(key: &str) -> Result<Key, Failure> {
        let bad = || {
            Failure::new(Class::Usage, format!("`{key}` is not a config key"))
                .hint("keys are `defaults.<task>` or `tools.<tool>.<setting>`")
        };
        let parts: Vec<String> = toml_edit::Key::parse(key)
            .map_err(|_| bad())?
            .iter()
            .map(|k| k.get().to_string())
            .collect();
        match parts.as_slice() {
            [d, task] if d == "defaults" => Ok(Key::Default { task: task.clone() }),
            [t, tool, name] if t == "tools" => Ok(Key::Setting {
                tool: tool.clone(),
                name: name.clone(),
            }),
            _ => Err(bad()),
        }
    }

    fn path(&self) -> Vec<&str> {
        match self {
            Key::Default { task } => vec!["defaults", task],
            Key::Setting { tool, name } => vec!["tools", tool, name],
        }
    }
}

fn catalog(home: &Home, globals: &Globals) -> Catalog {
    let config = Config::load_or_warn(home, &|w| globals.warn(w));
    Catalog::discover(home, &config)
}

fn is_secret(catalog: &Catalog, tool: &str, name: &str) -> bool {
    catalog
        .tools
        .iter()
        .filter(|t| t.spec.id == tool)
        .any(|t| t.spec.settings.iter().any(|s| s.secret && s.name == name))
}

/// Returns the value of `key`: a number for `defaults.confirm_over`, else text.
fn get(globals: &Globals, home: &Home, key: &str) -> Result<Value> {
    let parsed = Key::parse(key)?;
    let config = Config::read(&home.config_file())?;
    let value = match &parsed {
        Key::Default { task } if task == CONFIRM_OVER => config.confirm_over.map(Value::from),
        Key::Default { task } => config.defaults.get(task).cloned().map(Value::String),
        Key::Setting { tool, name } => {
            if config.tools.get(tool).is_some_and(|t| t.contains_key(name))
                && is_secret(&catalog(home, globals), tool, name)
            {
                return Err(Failure::new(
                    Class::Usage,
                    format!("`{key}` is a secret setting; launcher does not print secrets"),
                )
                .into());
            }
            config.setting(tool, name).map(Value::String)
        }
    };
    match value {
        Some(value) => Ok(value),
        None => Err(Failure::new(
            Class::NotFound,
            format!("`{key}` is not set in {}", config.path.display()),
        )
        .into()),
    }
}

/// Checks a value against the installed tools: a default must name a tool performing the
/// task (an error); a setting of a tool that is not installed, or that the tool lacks, is a
/// warning (the plugin may come later), a secret in the config file a hint. Returns whether
/// the key is a secret setting, whose value is never shown.
fn check(globals: &Globals, home: &Home, key: &Key, value: &str) -> Result<bool, Failure> {
    let catalog = catalog(home, globals);
    let specs: Vec<&ToolSpec> = catalog.tools.iter().map(|t| &t.spec).collect();
    let ids = || specs.iter().map(|t| t.id.as_str());
    match key {
        // A cost, not a tool: checked where it is parsed, in `set`.
        Key::Default { task } if task == CONFIRM_OVER => {}
        Key::Default { task } => {
            let Some(tool) = specs.iter().find(|t| t.id == value) else {
                return Err(Failure::new(
                    Class::NotFound,
                    format!(
                        "there is no installed tool `{value}`{}",
                        suggest(value, ids())
                    ),
                )
                .hint("`launcher list` shows the installed tools"));
            };
            if tool.task(task).is_none() {
                let doers: Vec<&str> = specs
                    .iter()
                    .filter(|t| t.task(task).is_some())
                    .map(|t| t.id.as_str())
                    .collect();
                return Err(Failure::new(
                    Class::Usage,
                    format!("tool `{value}` does not perform task `{task}`"),
                )
                .hint(if doers.is_empty() {
                    format!("no installed tool performs `{task}`")
                } else {
                    format!("tools performing `{task}`: {}", doers.join(", "))
                }));
            }
        }
        Key::Setting { tool, name } => match specs.iter().find(|t| &t.id == tool) {
            None => globals.warn(&format!(
                "there is no installed tool `{tool}`; the setting is kept for when there is{}",
                suggest(tool, ids())
            )),
            Some(spec) => {
                let base = name.strip_suffix("_command").unwrap_or(name);
                match spec.settings.iter().find(|s| s.name == base) {
                    None => globals.warn(&format!(
                        "tool `{tool}` has no setting `{name}`, so it is not used{}",
                        suggest(name, spec.settings.iter().map(|s| s.name.as_str()))
                    )),
                    Some(s) if s.secret && base == name => globals.warn(&format!(
                        "`{name}` is a secret: `launcher keys set {tool} {name}` keeps it in a private file instead"
                    )),
                    Some(_) => {}
                }
            }
        },
    }
    Ok(matches!(key, Key::Setting { tool, name } if is_secret(&catalog, tool, name)))
}

/// Sets `key` to `value`; returns the value as written (a number for `confirm_over`), or a
/// placeholder for a secret.
fn set(globals: &Globals, home: &Home, key: &str, value: &str) -> Result<Value> {
    let parsed = Key::parse(key)?;
    let secret = check(globals, home, &parsed, value)?;
    let path = home.config_file();
    let item = match &parsed {
        Key::Default { task } if task == CONFIRM_OVER => {
            let amount = value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|a| a.is_finite() && *a >= 0.0)
                .ok_or_else(|| {
                    Failure::new(
                        Class::Usage,
                        format!(
                            "`{key}` takes a cost of zero or more in the tool's currency, not `{value}`"
                        ),
                    )
                })?;
            (toml_edit::Value::from(amount), Value::from(amount))
        }
        _ => (toml_edit::Value::from(value), Value::from(value)),
    };
    let (item, written) = item;
    update(&path, |doc| set_in(doc, &parsed.path(), item))?;
    globals.status(&format!("Set `{key}` in {}.", path.display()));
    if let Key::Setting { tool, .. } = &parsed {
        // Setting a tool's value is a first use: it binds the tool's settings to its plugin.
        let config = Config::load_or_warn(home, &|w| globals.warn(w));
        let catalog = Catalog::discover(home, &config);
        crate::commands::keys::bind_first_use(globals, &catalog, &config, tool)?;
    }
    Ok(if secret {
        json!("(secret, not shown)")
    } else {
        written
    })
}

/// Removes `key`; returns whether it was set.
fn unset(globals: &Globals, home: &Home, key: &str) -> Result<bool> {
    let parsed = Key::parse(key)?;
    let path = home.config_file();
    let mut removed = false;
    update(&path, |doc| {
        removed = remove_in(doc, &parsed.path());
        Ok(())
    })?;
    if removed {
        globals.status(&format!("Removed `{key}` from {}.", path.display()));
    } else {
        globals.status(&format!("`{key}` was not set in {}.", path.display()));
    }
    Ok(removed)
}

/// Sets `path` to `value` in `doc`, creating tables as needed (as `[a.b]` headers).
fn set_in(
    doc: &mut toml_edit::DocumentMut,
    path: &[&str],
    value: toml_edit::Value,
) -> Result<(), Failure> {
    let (last, tables) = path.split_last().expect("keys have two or three parts");
    let mut table: &mut dyn toml_edit::TableLike = doc.as_table_mut();
    for (i, name) in tables.iter().enumerate() {
        let item = table.entry(name).or_insert_with(|| {
            let mut t = toml_edit::Table::new();
            // `tools` itself stays implicit: only `[tools.<id>]` headers are written.
            t.set_implicit(i + 1 < tables.len());
            toml_edit::Item::Table(t)
        });
        table = item.as_table_like_mut().ok_or_else(|| {
            Failure::new(
                Class::Usage,
                format!(
                    "`{}` in the config file is not a table",
                    tables[..=i].join(".")
                ),
            )
        })?;
    }
    match table.get_mut(last) {
        // Keep the decor (comments beside the value) of an existing value.
        Some(toml_edit::Item::Value(old)) => {
            let decor = old.decor().clone();
            *old = value;
            *old.decor_mut() = decor;
        }
        _ => {
            table.insert(last, toml_edit::Item::Value(value));
        }
    }
    Ok(())
}

/// Removes `path` from `doc`, and a `[tools.<id>]` table left empty; returns whether it was set.
fn remove_in(doc: &mut toml_edit::DocumentMut, path: &[&str]) -> bool {
    let (last, tables) = path.split_last().expect("keys have two or three parts");
    let mut table: &mut dyn toml_edit::TableLike = doc.as_table_mut();
    for name in tables {
        match table.get_mut(name).and_then(|i| i.as_table_like_mut()) {
            Some(t) => table = t,
            None => return false,
        }
    }
    let removed = table.remove(last).is_some();
    if removed
        && tables.len() == 2
        && table.is_empty()
        && let Some(tools) = doc.get_mut("tools").and_then(|i| i.as_table_like_mut())
    {
        tools.remove(tables[1]);
    }
    removed
}

/// Reads `path` (empty when missing), applies `change`, checks and writes the result.
fn update(
    path: &Path,
    change: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<(), Failure>,
) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
    };
    // A file that does not parse is not rewritten: the user's text would be lost.
    Config::parse(path, &text)?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| anyhow::anyhow!("{}", e.message()))?;
    change(&mut doc)?;
    let new = doc.to_string();
    Config::parse(path, &new)?;
    if new != text {
        write_atomically(path, &new)?;
    }
    Ok(())
}

/// Writes `text` to `path` through a temporary file in the same directory, keeping the old
/// file's permissions (owner-only for a new file).
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().context("the config file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let mut file = tempfile::Builder::new()
        .prefix(".config.toml.")
        .tempfile_in(dir)
        .with_context(|| format!("failed to create a file in {}", dir.display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        file.as_file().set_permissions(meta.permissions())?;
    }
    file.write_all(text.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path)
        .with_context(|| format!("failed to write {}", path.display()))?;
    Ok(())
}

fn list(globals: &Globals, home: &Home, as_json: bool) -> Result<()> {
    let config = Config::read(&home.config_file())?;
    let catalog = catalog(home, globals);
    let mut entries: Vec<(String, Value)> = Vec::new();
    for (task, tool) in &config.defaults {
        entries.push((format!("defaults.{task}"), json!(tool)));
    }
    if let Some(amount) = config.confirm_over {
        entries.push((format!("defaults.{CONFIRM_OVER}"), json!(amount)));
    }
    for (tool, settings) in &config.tools {
        for (name, value) in settings {
            let shown = if is_secret(&catalog, tool, name) {
                json!("(secret, not shown)")
            } else {
                serde_json::to_value(value)?
            };
            entries.push((format!("tools.{tool}.{name}"), shown));
        }
    }
    if as_json {
        // Keys are dotted paths (`defaults.tts`), so `schema` cannot be one of them.
        let object: serde_json::Map<String, Value> = entries.into_iter().collect();
        return crate::commands::print_json(Value::Object(object));
    }
    if entries.is_empty() {
        globals.status(&format!("{} sets nothing.", config.path.display()));
    }
    for (key, value) in entries {
        println!("{key} = {value}");
    }
    Ok(())
}

fn path(home: &Home, as_json: bool) -> Result<()> {
    let rows = [
        ("config_file", "config file", home.config_file()),
        ("registries_file", "registries", home.registries_file()),
        ("data_dir", "data dir", home.data_dir().to_path_buf()),
        ("keys_file", "keys store", home.keys_file()),
        ("cache_dir", "cache dir", home.cache_dir()),
    ];
    if as_json {
        let object: serde_json::Map<String, Value> = rows
            .iter()
            .map(|(key, _, path)| (key.to_string(), json!(path)))
            .collect();
        crate::commands::print_json(Value::Object(object))?;
    } else {
        for (_, label, path) in rows {
            println!("{label:<12} {}", path.display());
        }
        if let Some(moved) = home.config_file_to_move() {
            eprintln!(
                "note: the config file is where an older launcher kept it; move it to {} to use the config directory",
                moved.display()
            );
        }
    }
    Ok(())
}

fn edit(globals: &Globals, home: &Home) -> Result<()> {
    let path = home.config_file();
    let editor = env::var(env::VISUAL)
        .or_else(|| env::var(env::EDITOR))
        .unwrap_or_else(|| if cfg!(windows) { "notepad" } else { "vi" }.to_string());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    // The editor may carry arguments (`code --wait`): the shell splits it, the path is "$1".
    let status = if cfg!(windows) {
        Command::new("cmd")
            .arg("/C")
            .arg(format!("{editor} \"{}\"", path.display()))
            .status()
    } else {
        Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("launcher")
            .arg(&path)
            .status()
    }
    .map_err(|e| {
        Failure::new(
            Class::Failure,
            format!("cannot start the editor `{editor}`: {e}"),
        )
    })?;
    if !status.success() {
        return Err(Failure::new(
            Class::Failure,
            format!("the editor `{editor}` failed ({status}); the config file was not checked"),
        )
        .into());
    }
    let config = Config::read(&path).map_err(|err| {
        err.context("the edited config file is not valid; `launcher config edit` opens it again")
    })?;
    let catalog = Catalog::discover(home, &config);
    // Discovery warns about keys no installed tool explains, among others.
    globals.report_catalog(&catalog);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_defaults_or_tool_settings() {
        assert_eq!(
            Key::parse("defaults.tts").unwrap(),
            Key::Default { task: "tts".into() }
        );
        assert_eq!(
            Key::parse("tools.\"my.tool\".key").unwrap(),
            Key::Setting {
                tool: "my.tool".into(),
                name: "key".into()
            }
        );
        assert!(Key::parse("tools.espeak").is_err());
        assert!(Key::parse("colors.x").is_err());
        assert!(Key::parse("defaults..x").is_err());
    }

    #[test]
    fn set_and_remove_keep_comments_and_layout() {
        let text = "# my launcher setup\n[defaults]\ntts = \"espeak\" # offline\n\n[tools.azure-tts]\n# region\nregion = \"westeurope\"\n";
        let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
        set_in(&mut doc, &["defaults", "tts"], "azure-tts".into()).unwrap();
        set_in(
            &mut doc,
            &["tools", "espeak", "program"],
            "/usr/bin/espeak-ng".into(),
        )
        .unwrap();
        assert_eq!(
            doc.to_string(),
            "# my launcher setup\n[defaults]\ntts = \"azure-tts\" # offline\n\n[tools.azure-tts]\n# region\nregion = \"westeurope\"\n\n[tools.espeak]\nprogram = \"/usr/bin/espeak-ng\"\n"
        );
        assert!(remove_in(&mut doc, &["tools", "espeak", "program"]));
        assert!(!remove_in(&mut doc, &["tools", "espeak", "program"]));
        assert!(!remove_in(&mut doc, &["tools", "nope", "x"]));
        assert_eq!(
            doc.to_string(),
            "# my launcher setup\n[defaults]\ntts = \"azure-tts\" # offline\n\n[tools.azure-tts]\n# region\nregion = \"westeurope\"\n"
        );
        let mut flat: toml_edit::DocumentMut = "defaults = 3\n".parse().unwrap();
        assert!(set_in(&mut flat, &["defaults", "tts"], "x".into()).is_err());
    }
}
