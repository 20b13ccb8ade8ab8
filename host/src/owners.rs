//! Who a tool id belongs to: the plugin chosen to provide it when several plugins declare
//! it, and the plugin its settings and secrets were configured for.
//!
//! A tool's settings live under its id (`[tools.azure-tts]`, `launcher keys set azure-tts`),
//! but an id is only a string: another plugin may declare it too. So launcher records, in
//! `owners.toml` of the data directory, which plugin the settings of a tool were configured
//! for (its name and where it came from: bundled, a local library, or a registry), and hands
//! them only to that plugin:
//!
//! - The first use binds silently: the first `run` of a tool with configured settings, or the
//!   first `keys set` / `config set` for it, records the plugin that provides it then.
//! - The same plugin keeps them: the same name, bundled or installed, updated or
//!   reinstalled, or built locally. Only a copy of that name from another registry, or from a
//!   registry now trusted with none of the publisher keys it had, counts as another plugin
//!   (the registry a name was installed from is pinned in the lockfile, so this takes an
//!   explicit `install --registry` or `registry add`).
//! - Another plugin gets nothing without consent: `launcher run` refuses, and
//!   `launcher keys bind <tool>` hands the settings over.
//!
//! When several plugins declare one tool id, `install` refuses the newcomer unless it is given
//! `--replace`, which records the newcomer as the tool's provider here. Plugins found on disk
//! with a shared id (an old store, a library dropped into a plugin directory) are settled by
//! that record, else by discovery's precedence, always with a warning.
//!
//! ```toml
//! [azure-tts]
//! provider = "azure-thief"                        # chosen by `install --replace`
//! settings = { plugin = "azure-tts", kind = "bundled" }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::catalog::{Tool, write_atomic};
use crate::failure::{Class, Failure, fail};
use crate::home::Config;

/// Where a plugin came from, as far as trust is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum Provenance {
    /// Shipped beside the launcher executable.
    Bundled,
    /// A library the user chose: `install --path`, or a `LAUNCHER_PLUGIN_PATH` directory.
    Local { library: PathBuf },
    /// Installed from a registry, whose trusted keys signed it.
    Registry {
        registry: String,
        index: String,
        /// The publisher keys the registry was trusted with (minisign public key lines);
        /// empty when the registry is no longer configured.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        keys: Vec<String>,
    },
}

/// Returns the key lines of a registry's trusted keys (each a base64 line, or a whole `.pub`
/// file whose last line is the key).
pub(crate) fn key_lines(trust: &[String]) -> Vec<String> {
    trust
        .iter()
        .filter_map(|k| k.lines().map(str::trim).rfind(|l| !l.is_empty()))
        .map(str::to_string)
        .collect()
}

/// One plugin, as settings are bound to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PluginId {
    pub(crate) plugin: String,
    #[serde(flatten)]
    pub(crate) provenance: Provenance,
}

impl PluginId {
    /// Returns the identity of the plugin providing `tool`.
    pub(crate) fn of(tool: &Tool) -> PluginId {
        PluginId {
            plugin: tool.plugin.clone(),
            provenance: tool.provenance.clone(),
        }
    }

    /// Returns whether settings bound to `self` may go to `other` without asking: the same
    /// plugin name, and not a copy from another registry or another publisher (no key in
    /// common, when both registries' keys are known).
    pub(crate) fn accepts(&self, other: &PluginId) -> bool {
        if self.plugin != other.plugin {
            return false;
        }
        match (&self.provenance, &other.provenance) {
            (
                Provenance::Registry {
                    registry: a,
                    keys: a_keys,
                    ..
                },
                Provenance::Registry {
                    registry: b,
                    keys: b_keys,
                    ..
                },
            ) => {
                a == b
                    && (a_keys.is_empty()
                        || b_keys.is_empty()
                        || a_keys.iter().any(|k| b_keys.contains(k)))
            }
            _ => true,
        }
    }
}

impl std::fmt::Display for PluginId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plugin `{}` ", self.plugin)?;
        match &self.provenance {
            Provenance::Bundled => f.write_str("(bundled)"),
            Provenance::Local { library } => write!(f, "({})", library.display()),
            Provenance::Registry { registry, .. } => write!(f, "(registry `{registry}`)"),
        }
    }
}

/// What is recorded about one tool id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The plugin chosen to provide the tool when several declare it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) provider: Option<String>,
    /// The plugin the tool's settings were configured for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) settings: Option<PluginId>,
}

/// The records of `owners.toml`.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    path: PathBuf,
    tools: BTreeMap<String, Record>,
}

impl Owners {
    /// Reads the records at `path`; a missing file has none.
    pub(crate) fn load(path: &Path) -> Result<Owners> {
        let tools = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                fail(
                    Class::Usage,
                    format!(
                        "{} is not valid: {}; it records which plugin each tool's settings belong to, so fix it or remove it (settings are then bound again on first use)",
                        path.display(),
                        e.message()
                    ),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
        };
        Ok(Owners {
            path: path.to_path_buf(),
            tools,
        })
    }

    /// Returns the record of tool `id`.
    pub(crate) fn get(&self, id: &str) -> Option<&Record> {
        self.tools.get(id)
    }

    /// Returns the plugin chosen to provide tool `id`, if one was.
    pub(crate) fn provider(&self, id: &str) -> Option<&str> {
        self.get(id)?.provider.as_deref()
    }

    /// Returns the plugin the settings of tool `id` are bound to.
    pub(crate) fn settings_owner(&self, id: &str) -> Option<&PluginId> {
        self.get(id)?.settings.as_ref()
    }

    /// Changes the record of tool `id` in the file, read afresh so that a record another
    /// launcher wrote meanwhile is kept, and writes it at once (records are few and rarely
    /// written: on a first use, a bind or a replacing install). This copy is left as read.
    pub(crate) fn update(&self, id: &str, change: impl FnOnce(&mut Record)) -> Result<()> {
        if self.path.as_os_str().is_empty() {
            // Records made in code (or standing in for a file that did not parse) have no
            // file to go to; an unreadable file was reported when it was read.
            return Ok(());
        }
        let mut current = Owners::load(&self.path)?;
        let record = current.tools.entry(id.to_string()).or_default();
        let before = record.clone();
        change(record);
        if *record == before {
            return Ok(());
        }
        let mut text = String::from(
            "# Which plugin provides each tool and which plugin its settings were configured for.\n# Written by launcher; change it with `launcher keys bind` or `launcher install --replace`.\n",
        );
        text.push_str(&toml::to_string(&current.tools).context("failed to write tool owners")?);
        write_atomic(&self.path, text.as_bytes())
            .with_context(|| format!("failed to write {}", self.path.display()))
    }
}

/// Returns whether the user configured anything for `tool` that a plugin would receive:
/// values in its config table or the keys store, or a secret in the environment.
pub(crate) fn has_configured_settings(tool: &Tool, config: &Config) -> bool {
    let id = tool.spec.id.as_str();
    config.tools.get(id).is_some_and(|t| !t.is_empty())
        || config.keys.entries().any(|(t, _)| t == id)
        || tool.spec.settings.iter().any(|s| {
            s.secret
                && s.env
                    .as_deref()
                    .is_some_and(|var| crate::env::var(var).is_some())
        })
}

/// Checks that the settings configured for `tool` may go to the plugin providing it now,
/// binding them to it on first use. Values given on the command line are the user's own
/// choice for this run and need no binding.
pub(crate) fn check_settings(tool: &Tool, config: &Config) -> Result<(), Failure> {
    let now = PluginId::of(tool);
    // Settings shared from another tool of the plugin go where that tool's are bound; the
    // binding itself is left to that tool's own first use.
    if let Some(shared) = tool.spec.settings_of.as_deref()
        && let Some(bound) = config.owners.settings_owner(shared)
        && !bound.accepts(&now)
    {
        return Err(Failure::new(
            Class::Conflict,
            format!(
                "tool `{}` uses the settings of tool `{shared}`, which were configured for {bound}, not for {now}",
                tool.spec.id
            ),
        )
        .hint(format!("run `launcher keys bind {shared}` to hand them to `{}`", now.plugin)));
    }
    if !has_configured_settings(tool, config) {
        return Ok(());
    }
    let id = tool.spec.id.as_str();
    match config.owners.settings_owner(id) {
        Some(bound) if bound.accepts(&now) => Ok(()),
        Some(bound) => Err(Failure::new(
            Class::Conflict,
            format!(
                "the settings of tool `{id}` were configured for {bound}, and `{id}` is now provided by {now}; they are not handed to another plugin without your consent"
            ),
        )
        .hint(format!(
            "run `launcher keys bind {id}` to hand them to `{}`, or `launcher uninstall {}` if you did not mean to install it",
            now.plugin, now.plugin
        ))),
        None if !tool.shadows.is_empty() => Err(Failure::new(
            Class::Conflict,
            format!(
                "tool `{id}` is declared by several plugins ({}, {}); its settings are not handed to `{}` until you choose",
                now.plugin,
                tool.shadows.join(", "),
                now.plugin
            ),
        )
        .hint(format!(
            "run `launcher keys bind {id}` to hand them to `{}`, or remove the plugin you did not mean to have",
            now.plugin
        ))),
        None => config
            .owners
            .update(id, |r| r.settings = Some(now))
            .map_err(|e| Failure::new(Class::Failure, format!("{e:#}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(plugin: &str, provenance: Provenance) -> PluginId {
        PluginId {
            plugin: plugin.to_string(),
            provenance,
        }
    }

    fn registry(name: &str) -> Provenance {
        Provenance::Registry {
            registry: name.to_string(),
            index: format!("https://{name}.example/index"),
            keys: vec![format!("key-of-{name}")],
        }
    }

    #[test]
    fn settings_follow_a_plugin_name_but_not_to_another_registry() {
        let bundled = id("azure-tts", Provenance::Bundled);
        assert!(bundled.accepts(&id("azure-tts", registry("main"))));
        assert!(id("azure-tts", registry("main")).accepts(&bundled));
        assert!(id("azure-tts", registry("main")).accepts(&id("azure-tts", registry("main"))));
        assert!(!id("azure-tts", registry("main")).accepts(&id("azure-tts", registry("other"))));
        assert!(!bundled.accepts(&id("azure-thief", registry("main"))));
        // The same registry name trusted with another publisher's key is another publisher.
        let rekeyed = Provenance::Registry {
            registry: "main".into(),
            index: "https://elsewhere.example/index".into(),
            keys: vec!["another-key".into()],
        };
        assert!(!id("azure-tts", registry("main")).accepts(&id("azure-tts", rekeyed)));
        assert!(!bundled.accepts(&id(
            "azure-thief",
            Provenance::Local {
                library: "/tmp/x.so".into()
            }
        )));
    }

    #[test]
    fn records_round_trip_and_are_written_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owners.toml");
        let owners = Owners::load(&path).unwrap();
        owners
            .update("azure-tts", |r| {
                r.provider = Some("azure-thief".into());
                r.settings = Some(id("azure-tts", Provenance::Bundled));
            })
            .unwrap();
        let again = Owners::load(&path).unwrap();
        assert_eq!(again.provider("azure-tts"), Some("azure-thief"));
        assert_eq!(
            again.settings_owner("azure-tts"),
            Some(&id("azure-tts", Provenance::Bundled))
        );
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        again
            .update("azure-tts", |r| r.provider = Some("azure-thief".into()))
            .unwrap();
        let unchanged = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(modified, unchanged, "an unchanged record is not written");
    }
}
