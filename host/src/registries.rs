//! The registries this launcher installs from, kept in `registries.toml` in the launcher home.
//!
//! They live in a file of their own, written only by `launcher registry add|remove`, so that
//! rewriting it never disturbs the comments and layout of the user's `config.toml`. Order
//! matters: `install` looks in registries in the order they were added.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use launcher_registry::{DownloadLimits, Registry, RegistryConfig, Store};
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
        let limits = download_limits()?;
        let now = now();
        self.entries
            .iter()
            .map(|e| {
                Registry::open(&e.name, &e.config, store, offline)
                    .map(|r| r.with_limits(limits).with_clock(now))
                    .map_err(crate::commands::registry::registry_failure)
            })
            .collect()
    }
}

/// Returns the names of store plugins whose installed version was yanked, from what is at hand
/// (local registries and cached index files); empty when that cannot be read.
pub(crate) fn yanked_installed(home: &Home) -> Vec<String> {
    let Ok(store) = Store::open(home.data_dir()) else {
        return Vec::new();
    };
    let registries = match Registries::load(home) {
        Ok(registries) if !registries.entries.is_empty() => registries,
        _ => return Vec::new(),
    };
    match registries.open(&store, true) {
        Ok(open) => launcher_registry::yanked_installed(&store, &open),
        Err(_) => Vec::new(),
    }
}

/// Returns the time freshness statements are checked and issued at: the system clock, which
/// debug builds let tests replace.
pub(crate) fn now() -> SystemTime {
    #[cfg(debug_assertions)]
    if let Some(secs) = crate::env::var(crate::env::TEST_NOW).and_then(|v| v.parse::<u64>().ok()) {
        return SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    }
    SystemTime::now()
}

/// Returns the download limits, the defaults changed by the environment.
pub(crate) fn download_limits() -> Result<DownloadLimits> {
    use crate::env;
    let mut limits = DownloadLimits::default();
    let size = |name: &str| -> Result<Option<u64>> {
        env::var(name)
            .map(|v| {
                parse_size(&v).ok_or_else(|| {
                    crate::failure::Failure::new(
                        Class::Usage,
                        format!("{name}=`{v}` is not a size"),
                    )
                    .hint("give bytes, or a number with K, M or G (e.g. 512M)")
                    .into()
                })
            })
            .transpose()
    };
    if let Some(max) = size(env::MAX_DOWNLOAD)? {
        limits.max_size = max;
    }
    if let Some(rate) = size(env::DOWNLOAD_MIN_RATE)? {
        limits.min_rate = rate.max(1);
    }
    if let Some(cache) = size(env::ARCHIVE_CACHE_SIZE)? {
        limits.cache_size = cache;
    }
    if let Some(grace) = env::var(env::DOWNLOAD_GRACE) {
        let secs = grace.parse::<u64>().map_err(|_| {
            fail(
                Class::Usage,
                format!(
                    "{}=`{grace}` is not a number of seconds",
                    env::DOWNLOAD_GRACE
                ),
            )
        })?;
        limits.grace = Duration::from_secs(secs);
    }
    Ok(limits)
}

/// Parses `1234`, `64K`, `512M` or `2G` (binary multiples) into bytes.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, shift) = match text.chars().last()?.to_ascii_uppercase() {
        'K' => (&text[..text.len() - 1], 10),
        'M' => (&text[..text.len() - 1], 20),
        'G' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(1 << shift)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1234"), Some(1234));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size(""), None);
    }
}
