//! The registries this launcher installs from, kept in `registries.toml` in the launcher home.
//!
//! They live in a file of their own, written only by `launcher registry add|remove`, so that
//! rewriting it never disturbs the comments and layout of the user's `config.toml`. Order
//! matters: `install` looks in registries in the order they were added.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use launcher_registry::{Registry, RegistryConfig, Store};
use serde::{Deserialize, Serialize};

use crate::catalog::write_atomic;
use crate::failure::{Class, fail};
use crate::home::Home;

/// One configured registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) name: String,
    #[serde(flatten)]
    pub(crate) config: RegistryConfig,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default, rename = "registry")]
    registries: Vec<Entry>,
}

/// The configured registries.
#[derive(Debug, Default)]
pub(crate) struct Registries {
    path: PathBuf,
    pub(crate) entries: Vec<Entry>,
}

impl Registries {
    pub(crate) fn load(home: &Home) -> Result<Registries> {
        let path = home.registries_file();
        let entries = match std::fs::read_to_string(&path) {
            Ok(text) => {
                toml::from_str::<File>(&text)
                    .map_err(|e| {
                        fail(
                            Class::Usage,
                            format!("{} is not valid: {}", path.display(), e.message()),
                        )
                    })?
                    .registries
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
        };
        Ok(Registries { path, entries })
    }

    pub(crate) fn save(&self) -> Result<()> {
        let file = File {
            registries: self.entries.clone(),
        };
        let text = format!(
            "# Registries launcher installs plugins from, in the order it looks in them.\n# Written by `launcher registry add` and `launcher registry remove`.\n\n{}",
            toml::to_string(&file)?
        );
        write_atomic(&self.path, text.as_bytes())
            .with_context(|| format!("failed to write {}", self.path.display()))
    }

    /// Opens every configured registry for reading.
    pub(crate) fn open(&self, store: &Store, offline: bool) -> Result<Vec<Registry>> {
        if self.entries.is_empty() {
            return Err(crate::failure::Failure::new(Class::NotFound, "no registry is configured")
                .hint("add one with `launcher registry add <name> <url-or-path> --trust <public key>`")
                .into());
        }
        self.entries
            .iter()
            .map(|e| {
                Registry::open(&e.name, &e.config, store, offline)
                    .map_err(crate::commands::registry::registry_failure)
            })
            .collect()
    }
}

/// Returns a registry location as it should be stored: local paths made absolute.
pub(crate) fn normalize_location(location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let path = Path::new(location);
    path.canonicalize()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| location.to_string())
}

/// Returns a trusted key as given: the contents of a `.pub` file, or the key text itself.
pub(crate) fn read_key(key: &str) -> Result<String> {
    let path = Path::new(key);
    if path.is_file() {
        return std::fs::read_to_string(path)
            .with_context(|| format!("failed to read key file {key}"));
    }
    let key = key.trim();
    // A minisign public key is 42 bytes: 56 characters of base64.
    let is_key = key.len() == 56
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
    if !is_key
        && (key.contains('/') || key.contains('.') || key.contains(std::path::MAIN_SEPARATOR))
    {
        let why = if path.exists() {
            "is not a file"
        } else {
            "does not exist"
        };
        return Err(crate::failure::Failure::new(
            Class::InvalidInput,
            format!("--trust {key}: the key file {why}"),
        )
        .hint(
            "give the publisher's minisign public key itself (RW...), or the path of its .pub file",
        )
        .into());
    }
    Ok(key.to_string())
}

/// The hint that points at more plugins: `with_registry` (a sentence naming `launcher
/// search`) when a registry is configured to search, else how to add one, since `search`
/// would only fail.
pub(crate) fn find_more_hint(with_registry: &str) -> String {
    let configured = Home::locate()
        .and_then(|home| Registries::load(&home))
        .is_ok_and(|r| !r.entries.is_empty());
    if configured {
        with_registry.to_string()
    } else {
        NO_REGISTRY_HINT.to_string()
    }
}

/// What to do when no registry is configured.
pub(crate) const NO_REGISTRY_HINT: &str = "no registry is configured to find plugins in; add one with `launcher registry add NAME LOCATION --trust KEY`";
