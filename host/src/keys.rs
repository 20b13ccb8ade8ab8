//! The keys store: secrets `launcher keys set` keeps, in `keys.toml` of the data directory.
//!
//! The file is private to the user (0600 on Unix) from the moment it exists: it is written
//! to a temporary file created 0600 in the same directory, synced, then renamed over the old
//! one, so it is never world-readable, even briefly, and never half-written. Values are never
//! printed; `launcher keys list` shows only which settings have one.
//!
//! ```toml
//! [azure-speech]
//! key = "..."
//! ```

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::failure::{Class, fail};

/// The stored secrets: tool id → setting name → value.
#[derive(Default)]
pub(crate) struct KeyStore {
    path: PathBuf,
    keys: BTreeMap<String, BTreeMap<String, String>>,
}

impl std::fmt::Debug for KeyStore {
    // The values are secrets: never in debug output either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("path", &self.path)
            .field("set", &self.entries().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyStore {
    /// Reads the store at `path`; a missing file is an empty store.
    pub(crate) fn load(path: &Path) -> Result<KeyStore> {
        let mut store = KeyStore {
            path: path.to_path_buf(),
            keys: BTreeMap::new(),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(store),
            Err(err) => {
                return Err(err).with_context(|| format!("failed to read {}", path.display()));
            }
        };
        refuse_if_shared(path)?;
        let invalid = |what: &str| {
            fail(
                Class::Usage,
                format!(
                    "{} is not a valid keys store: {what}; fix it or remove it and use `launcher keys set` again",
                    path.display()
                ),
            )
        };
        // The parser's message may quote the file, and the file holds secrets: say only where.
        let table: toml::Table = toml::from_str(&text).map_err(|err| {
            let at = err.span().map_or(0, |s| s.start);
            let p = crate::home::Position::of(&text, at);
            invalid(&format!(
                "line {} column {} is not valid TOML",
                p.line, p.column
            ))
        })?;
        for (tool, settings) in table {
            let toml::Value::Table(settings) = settings else {
                return Err(invalid(&format!("`{tool}` is not a table")));
            };
            let mut values = BTreeMap::new();
            for (name, value) in settings {
                let toml::Value::String(value) = value else {
                    return Err(invalid(&format!("`{tool}.{name}` is not a string")));
                };
                values.insert(name, value);
            }
            store.keys.insert(tool, values);
        }
        Ok(store)
    }

    /// The file of the store.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the stored value of setting `name` of `tool`.
    pub(crate) fn get(&self, tool: &str, name: &str) -> Option<&str> {
        self.keys
            .get(tool)?
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Returns every (tool, setting) that has a value, in order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.keys
            .iter()
            .flat_map(|(tool, s)| s.keys().map(move |name| (tool.as_str(), name.as_str())))
    }

    /// Sets a value (call [`KeyStore::save`] to keep it).
    pub(crate) fn set(&mut self, tool: &str, name: &str, value: String) {
        self.keys
            .entry(tool.to_string())
            .or_default()
            .insert(name.to_string(), value);
    }

    /// Removes a value; returns whether there was one.
    pub(crate) fn remove(&mut self, tool: &str, name: &str) -> bool {
        let Some(settings) = self.keys.get_mut(tool) else {
            return false;
        };
        let removed = settings.remove(name).is_some();
        if settings.is_empty() {
            self.keys.remove(tool);
        }
        removed
    }

    /// Writes the store: owner-only, atomically.
    pub(crate) fn save(&self) -> Result<()> {
        let dir = self
            .path
            .parent()
            .context("the keys store has no directory")?;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        let mut text = String::from(
            "# Secrets stored by `launcher keys set`; private to you. Change them with `launcher keys`.\n",
        );
        let body = toml::to_string(&self.keys).context("failed to write the keys store")?;
        text.push_str(&body);
        // tempfile creates the file 0600 on Unix; the mode is set again in case a umask or
        // platform differs, before any secret is written.
        let mut file = tempfile::Builder::new()
            .prefix(".keys.toml.")
            .tempfile_in(dir)
            .with_context(|| format!("failed to create a file in {}", dir.display()))?;
        private(file.as_file())?;
        file.write_all(text.as_bytes())?;
        file.as_file().sync_all()?;
        file.persist(&self.path)
            .with_context(|| format!("failed to write {}", self.path.display()))?;
        Ok(())
    }
}

/// Refuses a store others can read or write (as ssh refuses such a private key): its keys may
/// have leaked, and the user should know.
#[cfg(unix)]
fn refuse_if_shared(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("failed to read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(fail(
            Class::Usage,
            format!(
                "{} is open to other users (mode {:o}), so its keys are not used; run `chmod 600 {}` (and consider replacing the keys)",
                path.display(),
                mode & 0o777,
                path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_if_shared(_path: &Path) -> Result<()> {
    Ok(())
}

#[cfg(unix)]
fn private(file: &std::fs::File) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[cfg(not(unix))]
fn private(_file: &std::fs::File) -> Result<()> {
    // On Windows the file inherits the user profile's ACL, private to the user.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_privately_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/keys.toml");
        let mut store = KeyStore::load(&path).unwrap();
        store.set("azure-speech", "key", "s3cret-value".into());
        store.set("openai", "api_key", "sk-1".into());
        store.save().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut again = KeyStore::load(&path).unwrap();
        assert_eq!(again.get("azure-speech", "key"), Some("s3cret-value"));
        assert_eq!(
            again.entries().collect::<Vec<_>>(),
            [("azure-speech", "key"), ("openai", "api_key")]
        );
        assert!(!format!("{again:?}").contains("s3cret"));
        assert!(again.remove("openai", "api_key"));
        assert!(!again.remove("openai", "api_key"));
        again.save().unwrap();
        let third = KeyStore::load(&path).unwrap();
        assert_eq!(third.entries().count(), 1);
        // No temporary file is left behind.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn an_invalid_store_does_not_quote_its_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        std::fs::write(&path, "[t]\nkey = \"abcd-secret\nx").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let err = format!("{:#}", KeyStore::load(&path).unwrap_err());
        assert!(!err.contains("abcd-secret"), "{err}");
        assert!(err.contains("is not valid TOML"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_store_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        std::fs::write(&path, "[t]\nkey = \"abcd-secret\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = format!("{:#}", KeyStore::load(&path).unwrap_err());
        assert!(err.contains("is open to other users (mode 644)"), "{err}");
        assert!(!err.contains("abcd-secret"), "{err}");
    }
}
