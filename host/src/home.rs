//! The launcher home: where config, plugins, the lockfile, history and caches live.
//!
//! Three directories, the platform's usual ones (on Linux the XDG base directories):
//!
//! - the config directory (`$XDG_CONFIG_HOME/launcher`, default `~/.config/launcher`) holds
//!   `config.toml` and `registries.toml`, the files a user edits or backs up;
//! - the data directory (`$XDG_DATA_HOME/launcher`, default `~/.local/share/launcher`) holds
//!   the plugin store, the lockfile, the history database and `keys.toml`;
//! - the cache directory (`$XDG_CACHE_HOME/launcher`, default `~/.cache/launcher`) holds what
//!   can be rebuilt (manifest caches).
//!
//! `LAUNCHER_HOME` puts everything in one directory instead (tests, several setups side by
//! side): config and data files at its top, caches in its `cache/`.
//!
//! Before the split, everything lived in the data directory. A `config.toml` or
//! `registries.toml` found there is still used, in place, as long as the config directory has
//! none: nothing is moved behind the user's back, and `launcher config path` says which file is
//! in use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::env;
use crate::failure::{Class, Failure, fail};
use crate::keys::KeyStore;
use crate::owners::Owners;

/// The directories of one launcher installation.
#[derive(Debug, Clone)]
pub(crate) struct Home {
    config: PathBuf,
    data: PathBuf,
    cache: PathBuf,
}

impl Home {
    /// Returns the home named by `LAUNCHER_HOME`, or the platform's directories.
    pub(crate) fn locate() -> Result<Home> {
        if let Some(dir) = env::var_os(env::HOME) {
            if std::fs::metadata(&dir).is_ok_and(|m| !m.is_dir()) {
                return Err(fail(
                    Class::Usage,
                    format!(
                        "LAUNCHER_HOME is {}, which is not a directory; point it at a directory (or an absent one, created when needed)",
                        Path::new(&dir).display()
                    ),
                ));
            }
            return Ok(Home::single(PathBuf::from(dir)));
        }
        let dirs = platform_dirs(&|name| env::var_os(name).map(PathBuf::from));
        dirs.ok_or_else(|| {
            fail(
                Class::Usage,
                "cannot tell where to keep launcher's files: set LAUNCHER_HOME (no home directory is known)",
            )
        })
    }

    /// A home keeping everything in `root` (what `LAUNCHER_HOME` asks for).
    pub(crate) fn single(root: PathBuf) -> Home {
        Home {
            config: root.clone(),
            cache: root.join("cache"),
            data: root,
        }
    }

    /// The directory of the plugin store, the lockfile, history and the keys store.
    pub(crate) fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The directory of caches: anything in it may be deleted.
    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.cache.clone()
    }

    /// The config file in use: the config directory's, or one left in the data directory by
    /// an older launcher when the config directory has none.
    pub(crate) fn config_file(&self) -> PathBuf {
        self.config_dir_file("config.toml")
    }

    /// The file of configured registries (see [`Home::config_file`] for the older place).
    pub(crate) fn registries_file(&self) -> PathBuf {
        self.config_dir_file("registries.toml")
    }

    /// The secrets `launcher keys` keeps.
    pub(crate) fn keys_file(&self) -> PathBuf {
        self.data.join("keys.toml")
    }

    /// Which plugin provides each contested tool, and which plugin its settings are for.
    pub(crate) fn owners_file(&self) -> PathBuf {
        self.data.join("owners.toml")
    }

    /// Returns where the config file belongs when the one in use is in the older place.
    pub(crate) fn config_file_to_move(&self) -> Option<PathBuf> {
        let current = self.config.join("config.toml");
        (self.config_file() != current).then_some(current)
    }

    fn config_dir_file(&self, name: &str) -> PathBuf {
        let current = self.config.join(name);
        let legacy = self.data.join(name);
        if !current.exists() && legacy.is_file() {
            return legacy;
        }
        current
    }
}

/// Returns the platform's directories for launcher, reading variables through `var`.
fn platform_dirs(var: &dyn Fn(&str) -> Option<PathBuf>) -> Option<Home> {
    let absolute = |name: &str| var(name).filter(|p| p.is_absolute());
    if cfg!(target_os = "windows") {
        let roaming = absolute(env::APPDATA)?.join("launcher");
        let local =
            absolute(env::LOCALAPPDATA).map_or_else(|| roaming.clone(), |p| p.join("launcher"));
        return Some(Home {
            config: roaming.clone(),
            data: roaming,
            cache: local.join("cache"),
        });
    }
    let home = var(env::USER_HOME);
    if cfg!(target_os = "macos") {
        let home = home?;
        let support = home.join("Library/Application Support/launcher");
        return Some(Home {
            config: support.clone(),
            data: support,
            cache: home.join("Library/Caches/launcher"),
        });
    }
    let xdg = |name: &str, default: &str| {
        absolute(name)
            .or_else(|| home.as_ref().map(|h| h.join(default)))
            .map(|p| p.join("launcher"))
    };
    Some(Home {
        config: xdg(env::XDG_CONFIG_HOME, ".config")?,
        data: xdg(env::XDG_DATA_HOME, ".local/share")?,
        cache: xdg(env::XDG_CACHE_HOME, ".cache")?,
    })
}

/// A place in the config file, 1-based, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

impl Position {
    /// Returns the line and column of byte `offset` of `text`.
    pub(crate) fn of(text: &str, offset: usize) -> Position {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line,
            column: before[start..].chars().count() + 1,
        }
    }
}

/// The user's `config.toml`, and the keys `launcher keys` stored.
#[derive(Debug, Default)]
pub(crate) struct Config {
    /// The tool to use for each task, when a task is named without `--tool`.
    pub(crate) defaults: BTreeMap<String, String>,
    /// `[defaults] confirm_over`: the cost above which a paid job asks first.
    pub(crate) confirm_over: Option<f64>,
    /// Settings per tool id. A key ending in `_command` names a shell command whose output
    /// is the value of the setting without that suffix (for password managers).
    pub(crate) tools: BTreeMap<String, BTreeMap<String, toml::Value>>,
    /// The secrets of `launcher keys`.
    pub(crate) keys: KeyStore,
    /// Which plugin provides each contested tool, and which plugin its settings are for.
    pub(crate) owners: Owners,
    /// The file read, for messages (empty for a config made in code).
    pub(crate) path: PathBuf,
    /// Where each key was written, by dotted path (`tools.espeak.program`).
    positions: BTreeMap<String, Position>,
    /// Keys outside the known sections, found while reading.
    strays: Vec<String>,
}

/// The key of `[defaults]` that holds the cost threshold rather than a task's tool.
pub(crate) const CONFIRM_OVER: &str = "confirm_over";

/// The cost above which a paid job asks before it is submitted, when the config sets none: a
/// few seconds of the cheaper video models run without a question, anything dearer asks.
pub(crate) const DEFAULT_CONFIRM_OVER: f64 = 1.0;

impl Config {
    /// Returns the cost above which a paid job asks before it is submitted.
    pub(crate) fn confirm_over(&self) -> f64 {
        self.confirm_over.unwrap_or(DEFAULT_CONFIRM_OVER)
    }

    /// Reads the config file and the keys store of `home`; a missing file is empty.
    ///
    /// A config file that does not parse is an error naming its line and column: for commands
    /// that run jobs, which must not run with settings other than those the user wrote.
    pub(crate) fn load(home: &Home) -> Result<Config> {
        let mut config = Config::read(&home.config_file())?;
        config.keys = KeyStore::load(&home.keys_file())?;
        config.owners = Owners::load(&home.owners_file())?;
        Ok(config)
    }

    /// Like [`Config::load`], but an invalid config file or keys store is a warning and an
    /// empty one stands in: for commands that only show (`list`).
    pub(crate) fn load_or_warn(home: &Home, warn: &dyn Fn(&str)) -> Config {
        let mut config = Config::read(&home.config_file()).unwrap_or_else(|err| {
            warn(&format!("{err:#}; it is ignored until fixed"));
            Config::default()
        });
        config.keys = KeyStore::load(&home.keys_file()).unwrap_or_else(|err| {
            warn(&format!("{err:#}; it is ignored until fixed"));
            KeyStore::default()
        });
        config.owners = Owners::load(&home.owners_file()).unwrap_or_else(|err| {
            warn(&format!("{err:#}"));
            Owners::default()
        });
        config
    }

    /// Reads one config file; a missing file is an empty config.
    pub(crate) fn read(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config {
                    path: path.to_path_buf(),
                    ..Config::default()
                });
            }
            Err(err) => {
                return Err(err).with_context(|| format!("failed to read {}", path.display()));
            }
        };
        Config::parse(path, &text).map_err(anyhow::Error::new)
    }

    /// Parses the text of config file `path`.
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Config, Failure> {
        let at = |offset: Option<std::ops::Range<usize>>| {
            let p = Position::of(text, offset.map_or(0, |r| r.start));
            format!("{}:{}:{}", path.display(), p.line, p.column)
        };
        let doc = toml_edit::Document::parse(text).map_err(|err| {
            Failure::new(
                Class::Usage,
                format!(
                    "{}: the config file is not valid TOML: {}",
                    at(err.span()),
                    err.message().trim()
                ),
            )
        })?;
        // The same text as plain values, for what is passed on to plugins.
        let plain: toml::Table = toml::from_str(text).map_err(|err| {
            Failure::new(
                Class::Usage,
                format!(
                    "{}: the config file is not valid TOML: {}",
                    at(err.span()),
                    err.message().trim()
                ),
            )
        })?;
        let mut config = Config {
            path: path.to_path_buf(),
            ..Config::default()
        };
        let invalid = |span, what: String| {
            Failure::new(Class::Usage, format!("{}: {what}", at(span))).hint(
                "fix it with `launcher config edit`; the README's Config section lists the keys",
            )
        };
        for (key, item) in doc.as_table().iter() {
            let span = doc.as_table().key(key).and_then(|k| k.span());
            config.note(key, text, span.clone());
            match key {
                "defaults" => {
                    let table = item.as_table_like().ok_or_else(|| {
                        invalid(
                            span.clone(),
                            "`defaults` must be a table of task = \"tool\"".into(),
                        )
                    })?;
                    for (task, value) in table.iter() {
                        let key_span = table.key(task).and_then(|k| k.span());
                        if task == CONFIRM_OVER {
                            let amount = value
                                .as_float()
                                .or_else(|| value.as_integer().map(|i| i as f64))
                                .filter(|a| a.is_finite() && *a >= 0.0);
                            let Some(amount) = amount else {
                                return Err(invalid(
                                    key_span,
                                    format!(
                                        "`defaults.{CONFIRM_OVER}` must be a number of zero or \
                                         more (a cost in the tool's currency)"
                                    ),
                                ));
                            };
                            config.note(&format!("defaults.{task}"), text, key_span);
                            config.confirm_over = Some(amount);
                            continue;
                        }
                        let Some(tool) = value.as_str() else {
                            return Err(invalid(
                                key_span,
                                format!("`defaults.{task}` must be a tool id in quotes"),
                            ));
                        };
                        config.note(&format!("defaults.{task}"), text, key_span);
                        config.defaults.insert(task.to_string(), tool.to_string());
                    }
                }
                "tools" => {
                    let table = item.as_table_like().ok_or_else(|| {
                        invalid(
                            span.clone(),
                            "`tools` must be a table of [tools.<id>] tables".into(),
                        )
                    })?;
                    for (tool, settings) in table.iter() {
                        let tool_span = table.key(tool).and_then(|k| k.span());
                        let settings = settings.as_table_like().ok_or_else(|| {
                            invalid(
                                tool_span.clone(),
                                format!("`tools.{tool}` must be a table of settings"),
                            )
                        })?;
                        config.note(&format!("tools.{tool}"), text, tool_span);
                        let mut values = BTreeMap::new();
                        for (name, _) in settings.iter() {
                            let name_span = settings.key(name).and_then(|k| k.span());
                            // Tables and arrays are a plugin's own configuration (the
                            // profiles of `openai`, say): passed on as written.
                            let Some(value) = plain
                                .get("tools")
                                .and_then(|t| t.get(tool))
                                .and_then(|t| t.get(name))
                                .cloned()
                            else {
                                continue;
                            };
                            if name.ends_with("_command") && !value.is_str() {
                                return Err(invalid(
                                    name_span,
                                    format!("`tools.{tool}.{name}` must be a command in quotes"),
                                ));
                            }
                            config.note(&format!("tools.{tool}.{name}"), text, name_span);
                            values.insert(name.to_string(), value);
                        }
                        config.tools.insert(tool.to_string(), values);
                    }
                }
                other => config.strays.push(other.to_string()),
            }
        }
        Ok(config)
    }

    fn note(&mut self, key: &str, text: &str, span: Option<std::ops::Range<usize>>) {
        if let Some(span) = span {
            self.positions
                .insert(key.to_string(), Position::of(text, span.start));
        }
    }

    /// Returns `path:line:column` of dotted key `key`, or the file's path when unknown.
    pub(crate) fn locate(&self, key: &str) -> String {
        match self.positions.get(key) {
            Some(p) => format!("{}:{}:{}", self.path.display(), p.line, p.column),
            None => self.path.display().to_string(),
        }
    }

    /// Returns the configured value of setting `name` for `tool`, as text.
    pub(crate) fn setting(&self, tool: &str, name: &str) -> Option<String> {
        match self.tools.get(tool)?.get(name)? {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// Returns what is wrong with the type of `setting` of `tool` in the file, if anything: a
    /// secret must be a string, other settings a string, a number or a boolean.
    pub(crate) fn setting_type_error(
        &self,
        tool: &str,
        setting: &launcher_sdk::SettingSpec,
    ) -> Option<String> {
        let value = self.tools.get(tool)?.get(&setting.name)?;
        let at = self.locate(&format!("tools.{tool}.{}", setting.name));
        let name = &setting.name;
        match value {
            toml::Value::String(_) => None,
            _ if setting.secret => Some(format!(
                "{at}: setting `{name}` of `{tool}` is a secret and must be a string in quotes"
            )),
            toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => None,
            _ => Some(format!(
                "{at}: setting `{name}` of `{tool}` must be a string, a number or true/false"
            )),
        }
    }

    /// Returns the command configured to produce setting `name` for `tool`.
    pub(crate) fn setting_command(&self, tool: &str, name: &str) -> Option<String> {
        match self.tools.get(tool)?.get(&format!("{name}_command"))? {
            toml::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            _ => None,
        }
    }

    /// Returns a warning for each key the installed tools do not explain: a top-level key
    /// other than `defaults` and `tools`, a default for a task no tool performs, a section for
    /// a tool that is not installed, a setting the tool does not have. Each names the file,
    /// line and column, and the closest known name when one is close.
    pub(crate) fn unknown_keys(&self, tools: &[&launcher_sdk::ToolSpec]) -> Vec<String> {
        let mut warnings = Vec::new();
        for key in &self.strays {
            warnings.push(format!(
                "{}: unknown key `{key}` in the config file (it has [defaults] and [tools.<id>] only){}",
                self.locate(key),
                suggest(key, ["defaults", "tools"])
            ));
        }
        if tools.is_empty() {
            // Nothing installed: nothing to compare with.
            return warnings;
        }
        let mut tasks: Vec<&str> = tools
            .iter()
            .flat_map(|t| {
                t.tasks
                    .iter()
                    .map(String::as_str)
                    .chain(t.custom_tasks.iter().map(|c| c.name.as_str()))
            })
            .collect();
        tasks.sort_unstable();
        tasks.dedup();
        for (task, tool) in &self.defaults {
            let key = format!("defaults.{task}");
            if !tasks.contains(&task.as_str()) {
                warnings.push(format!(
                    "{}: no installed tool performs task `{task}`, so this default is not used{}",
                    self.locate(&key),
                    suggest(task, tasks.iter().copied())
                ));
            } else if !tools.iter().any(|t| &t.id == tool) {
                warnings.push(format!(
                    "{}: the default for `{task}` is `{tool}`, which is not an installed tool{}",
                    self.locate(&key),
                    suggest(tool, tools.iter().map(|t| t.id.as_str()))
                ));
            }
        }
        for (id, settings) in &self.tools {
            let key = format!("tools.{id}");
            let Some(spec) = tools.iter().find(|t| &t.id == id) else {
                warnings.push(format!(
                    "{}: there is no installed tool `{id}`, so [tools.{id}] is not used{}",
                    self.locate(&key),
                    suggest(id, tools.iter().map(|t| t.id.as_str()))
                ));
                continue;
            };
            let names: Vec<String> = spec
                .settings
                .iter()
                .flat_map(|s| [s.name.clone(), format!("{}_command", s.name)])
                .collect();
            for (name, value) in settings {
                // A table or an array is the plugin's own configuration (profiles).
                if !names.contains(name)
                    && !matches!(value, toml::Value::Table(_) | toml::Value::Array(_))
                {
                    warnings.push(format!(
                        "{}: tool `{id}` has no setting `{name}`, so it is not used{}",
                        self.locate(&format!("{key}.{name}")),
                        suggest(name, names.iter().map(String::as_str))
                    ));
                }
            }
        }
        warnings
    }
}

/// Returns " (did you mean `x`?)" for the candidate closest to `word`, or nothing.
pub(crate) fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, c)| {
            *score > 0.85 || strsim::damerau_levenshtein(word, c) <= (c.len() / 3).max(1)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdg_directories_with_their_defaults() {
        let vars = |name: &str| match name {
            "HOME" => Some(PathBuf::from("/home/u")),
            "XDG_CONFIG_HOME" => Some(PathBuf::from("/cfg")),
            // A relative value is ignored, as the XDG spec says.
            "XDG_CACHE_HOME" => Some(PathBuf::from("rel")),
            _ => None,
        };
        let home = platform_dirs(&vars).unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(home.config, Path::new("/cfg/launcher"));
            assert_eq!(home.data_dir(), Path::new("/home/u/.local/share/launcher"));
            assert_eq!(home.cache_dir(), PathBuf::from("/home/u/.cache/launcher"));
        }
        assert!(platform_dirs(&|_| None).is_none());
    }

    #[test]
    fn one_home_keeps_the_old_layout() {
        let home = Home::single(PathBuf::from("/h"));
        assert_eq!(home.config_file(), PathBuf::from("/h/config.toml"));
        assert_eq!(home.data_dir(), Path::new("/h"));
        assert_eq!(home.cache_dir(), PathBuf::from("/h/cache"));
        assert_eq!(home.keys_file(), PathBuf::from("/h/keys.toml"));
    }

    #[test]
    fn a_config_left_in_the_data_dir_is_used_until_one_is_in_the_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home {
            config: dir.path().join("config"),
            data: dir.path().join("data"),
            cache: dir.path().join("cache"),
        };
        assert_eq!(home.config_file(), dir.path().join("config/config.toml"));
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("data/config.toml"), "").unwrap();
        assert_eq!(home.config_file(), dir.path().join("data/config.toml"));
        assert_eq!(
            home.config_file_to_move(),
            Some(dir.path().join("config/config.toml"))
        );
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join("config/config.toml"), "").unwrap();
        assert_eq!(home.config_file(), dir.path().join("config/config.toml"));
    }

    #[test]
    fn syntax_and_type_errors_name_line_and_column() {
        let path = Path::new("c.toml");
        let err = Config::parse(path, "[defaults]\ntts = \n").unwrap_err();
        assert!(err.message.starts_with("c.toml:2:"), "{}", err.message);
        let err = Config::parse(path, "[defaults]\ntts = 1\n").unwrap_err();
        assert!(err.message.starts_with("c.toml:2:1: "), "{}", err.message);
        let err = Config::parse(path, "[tools.x]\nkey_command = 5\n").unwrap_err();
        assert!(err.message.contains("must be a command"), "{}", err.message);
    }

    #[test]
    fn unknown_keys_are_warnings_with_a_close_match() {
        let text = "tolls = 1\n[defaults]\ntss = \"espeak\"\n[tools.espeak]\nprogrm = \"x\"\n[tools.espeek]\n";
        let config = Config::parse(Path::new("c.toml"), text).unwrap();
        let spec = launcher_sdk::ToolSpec::new("espeak", &["tts"]).setting(
            launcher_sdk::SettingSpec::new("program", "ESPEAK_PROGRAM", "the program"),
        );
        let warnings = config.unknown_keys(&[&spec]);
        assert_eq!(warnings.len(), 4, "{warnings:#?}");
        assert!(warnings[0].starts_with("c.toml:1:1: unknown key `tolls`"));
        assert!(warnings[0].contains("did you mean `tools`"));
        assert!(warnings[1].starts_with("c.toml:3:1: no installed tool performs task `tss`"));
        assert!(warnings[1].contains("did you mean `tts`"));
        assert!(warnings[2].contains("no setting `progrm`"));
        assert!(warnings[2].contains("did you mean `program`"));
        assert!(warnings[3].contains("no installed tool `espeek`"));
        assert!(warnings[3].contains("did you mean `espeak`"));
    }

    #[test]
    fn confirm_over_is_a_cost_in_defaults() {
        let path = Path::new("c.toml");
        assert_eq!(Config::default().confirm_over(), DEFAULT_CONFIRM_OVER);
        let config =
            Config::parse(path, "[defaults]\nconfirm_over = 2.5\ntts = \"espeak\"\n").unwrap();
        assert_eq!(config.confirm_over(), 2.5);
        assert_eq!(config.defaults.len(), 1, "not a task's default");
        let config = Config::parse(path, "[defaults]\nconfirm_over = 0\n").unwrap();
        assert_eq!(config.confirm_over(), 0.0);
        for bad in ["\"cheap\"", "-1", "nan"] {
            let text = format!("[defaults]\nconfirm_over = {bad}\n");
            let err = Config::parse(path, &text).unwrap_err();
            assert!(
                format!("{err:#}").contains("must be a number"),
                "{bad}: {err:#}"
            );
        }
    }
}
