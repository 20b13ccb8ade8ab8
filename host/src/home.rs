//! The launcher home: where config, plugins, the lockfile and caches live.
//!
//! One directory holds everything so that `LAUNCHER_HOME` isolates a whole installation (tests,
//! several setups side by side). Without it, the platform's per-user data directory is used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Deserialize;

use crate::env;
use crate::failure::{Class, fail};

/// The paths of one launcher installation.
#[derive(Debug, Clone)]
pub(crate) struct Home {
    pub(crate) root: PathBuf,
}

impl Home {
    /// Returns the home named by `LAUNCHER_HOME`, or the platform default.
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
            return Ok(Home {
                root: PathBuf::from(dir),
            });
        }
        let base = platform_data_dir().ok_or_else(|| {
            fail(
                Class::Usage,
                "cannot tell where to keep launcher's files: set LAUNCHER_HOME (no home directory is known)",
            )
        })?;
        Ok(Home {
            root: base.join("launcher"),
        })
    }

    pub(crate) fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }
}

fn platform_data_dir() -> Option<PathBuf> {
    if cfg!(target_os = "windows") {
        return env::var_os("APPDATA").map(PathBuf::from);
    }
    let home = env::var_os("HOME").map(PathBuf::from);
    if cfg!(target_os = "macos") {
        return home.map(|h| h.join("Library/Application Support"));
    }
    env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|h| h.join(".local/share")))
}

/// The user's `config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// The tool to use for each task, when a task is named without `--tool`.
    #[serde(default)]
    pub(crate) defaults: BTreeMap<String, String>,
    /// Settings per tool id. A key ending in `_command` names a shell command whose output
    /// is the value of the setting without that suffix (for password managers).
    #[serde(default)]
    pub(crate) tools: BTreeMap<String, BTreeMap<String, toml::Value>>,
}

impl Config {
    /// Reads the config file; a missing file is an empty config.
    pub(crate) fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(err) => {
                return Err(err).with_context(|| format!("failed to read {}", path.display()));
            }
        };
        toml::from_str(&text).map_err(|err| {
            fail(
                Class::Usage,
                format!(
                    "{} is not a valid launcher config: {}",
                    path.display(),
                    err.message()
                ),
            )
        })
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

    /// Returns the command configured to produce setting `name` for `tool`.
    pub(crate) fn setting_command(&self, tool: &str, name: &str) -> Option<String> {
        match self.tools.get(tool)?.get(&format!("{name}_command"))? {
            toml::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            _ => None,
        }
    }
}
