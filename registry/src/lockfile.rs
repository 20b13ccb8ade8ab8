//! `plugins.lock`: what is installed, from where, at which checksums.
//!
//! The lockfile is the store's truth: a version directory exists for the host only once an
//! entry names it. It is TOML, one `[[plugins]]` table per plugin, sorted by name, and always
//! replaced atomically.
//!
//! Reading tolerates damage: each `[[plugins]]` table is parsed on its own, so an entry that
//! does not parse (or names an impossible directory) is skipped with a warning and kept verbatim
//! for the next write, and every other entry still loads.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::error::{Error, ErrorKind, Result};
use crate::plugin_toml::is_file_name;

/// The lockfile format this crate writes and understands.
pub const LOCKFILE_VERSION: u32 = 1;

/// The lockfile's name in the launcher home.
pub const LOCKFILE: &str = "plugins.lock";

const ENTRY_HEADER: &str = "[[plugins]]";

/// Where an installed plugin came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// A library built locally (`launcher install --path`).
    Path {
        /// The library's absolute path at install time.
        path: PathBuf,
    },
    /// A registry.
    Registry {
        /// The registry's configured name.
        registry: String,
        /// Its index location (URL or path) at install time.
        index: String,
    },
}

/// One installed plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEntry {
    /// The plugin's name.
    pub name: String,
    /// The installed version.
    pub version: Version,
    /// Where it came from.
    pub source: Source,
    /// The semver requirement the user asked for (`*` when none); `update` stays within it.
    pub requirement: String,
    /// The target triple of the library.
    pub target: String,
    /// The plugin ABI major version of the library.
    pub abi: u32,
    /// The sha256 of the downloaded archive; absent for local installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_sha256: Option<String>,
    /// The library's file name inside `dir`.
    pub library: String,
    /// The sha256 of the library.
    pub library_sha256: String,
    /// The library's size in bytes, to notice a changed library without hashing it.
    pub library_size: u64,
    /// The library's modification time in nanoseconds since the Unix epoch, for the same.
    pub library_mtime: u64,
    /// The version directory, relative to the launcher home, with `/` separators.
    pub dir: String,
    /// The id of the key that signed the archive (hex, as minisign prints it), so that a new
    /// machine can be told which key to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// The highest version ever seen in the registry's index of this plugin: an index that no
    /// longer lists it is an old copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<Version>,
}

impl LockEntry {
    /// Returns the usual version directory of `name` at `version`. A reinstall of an installed
    /// version goes beside it, into `<dir>~<n>`, so that no directory a lockfile names changes.
    pub fn dir_for(name: &str, version: &Version) -> String {
        format!("plugins/{name}/{version}")
    }

    fn check(&self) -> std::result::Result<(), String> {
        if !launcher_sdk::is_identifier(&self.name) {
            return Err(format!("`{}` is not a valid plugin name", self.name));
        }
        let dir = LockEntry::dir_for(&self.name, &self.version);
        let reinstalled = self
            .dir
            .strip_prefix(&dir)
            .and_then(|rest| rest.strip_prefix('~'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if self.dir != dir && !reinstalled {
            return Err(format!(
                "dir `{}` should be `{dir}` or `{dir}~<n>`",
                self.dir
            ));
        }
        if !is_file_name(&self.library) {
            return Err(format!(
                "library `{}` is not a plain file name",
                self.library
            ));
        }
        Ok(())
    }
}

/// The whole lockfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockfile {
    /// The format version; [`LOCKFILE_VERSION`].
    pub version: u32,
    /// The installed plugins, one per name.
    pub plugins: Vec<LockEntry>,
    /// Entries that did not parse, verbatim, so that rewriting the file does not lose them.
    unreadable: Vec<String>,
}

impl Default for Lockfile {
    fn default() -> Self {
        Lockfile {
            version: LOCKFILE_VERSION,
            plugins: Vec::new(),
            unreadable: Vec::new(),
        }
    }
}

impl Lockfile {
    /// Reads `path`; a missing file is an empty lockfile. Returns the entries that load and a
    /// warning for each that does not.
    pub fn read(path: &Path) -> Result<(Lockfile, Vec<String>)> {
        match fs::read_to_string(path) {
            Ok(text) => Lockfile::parse(&text, path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((Lockfile::default(), Vec::new())),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    /// Parses lockfile text; `path` only names the file in messages.
    pub fn parse(text: &str, path: &Path) -> Result<(Lockfile, Vec<String>)> {
        let mut lockfile = Lockfile::default();
        let mut warnings = Vec::new();
        let file = path.display();

        let mut chunks: Vec<(usize, String)> = Vec::new();
        let mut header = String::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim() == ENTRY_HEADER {
                chunks.push((number + 1, String::new()));
            }
            let chunk = match chunks.last_mut() {
                Some((_, chunk)) => chunk,
                None => &mut header,
            };
            chunk.push_str(line);
            chunk.push('\n');
        }

        match toml::from_str::<toml::Table>(&header) {
            Ok(table) => {
                match table.get("version") {
                    None => {}
                    Some(toml::Value::Integer(v)) if *v == i64::from(LOCKFILE_VERSION) => {}
                    Some(v) => {
                        return Err(ErrorKind::Lockfile {
                            path: path.to_path_buf(),
                            message: format!(
                                "version {v} is not {LOCKFILE_VERSION}, the one this launcher \
                                 understands"
                            ),
                        }
                        .into());
                    }
                }
                // A hand-edited file may hold entries inline: `plugins = [{ ... }]`.
                if let Some(toml::Value::Array(items)) = table.get("plugins") {
                    for item in items {
                        let raw = toml::to_string(&Entries {
                            plugins: vec![item.clone()],
                        })
                        .unwrap_or_default();
                        lockfile.take(item.clone(), raw, "1", &file, &mut warnings);
                    }
                }
            }
            Err(e) => warnings.push(format!(
                "{file}: header unreadable ({}); assuming version {LOCKFILE_VERSION}",
                one_line(&e.to_string())
            )),
        }

        for (line, chunk) in chunks {
            let at = line.to_string();
            match toml::from_str::<Entries<toml::Value>>(&chunk) {
                Ok(entries) if entries.plugins.len() == 1 => {
                    let item = entries.plugins.into_iter().next().expect("one entry");
                    lockfile.take(item, chunk, &at, &file, &mut warnings);
                }
                Ok(_) => {
                    warnings.push(format!("{file}: entry at line {at} unreadable; ignored"));
                    lockfile.unreadable.push(chunk);
                }
                Err(e) => {
                    warnings.push(format!(
                        "{file}: entry at line {at} unreadable ({}); ignored",
                        one_line(&e.to_string())
                    ));
                    lockfile.unreadable.push(chunk);
                }
            }
        }
        Ok((lockfile, warnings))
    }

    fn take(
        &mut self,
        item: toml::Value,
        raw: String,
        at: &str,
        file: &dyn std::fmt::Display,
        warnings: &mut Vec<String>,
    ) {
        let name = item
            .get("name")
            .and_then(toml::Value::as_str)
            .map(|n| format!(" (`{n}`)"))
            .unwrap_or_default();
        let problem = match item.try_into::<LockEntry>() {
            Ok(entry) => match entry.check() {
                Ok(()) if self.get(&entry.name).is_some() => {
                    format!("`{}` appears twice", entry.name)
                }
                Ok(()) => {
                    self.plugins.push(entry);
                    return;
                }
                Err(problem) => problem,
            },
            Err(e) => one_line(&e.to_string()),
        };
        warnings.push(format!(
            "{file}: entry at line {at}{name} unreadable ({problem}); ignored"
        ));
        self.unreadable.push(raw);
    }

    /// Writes the lockfile to `path` atomically, entries sorted by name.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = format!(
            "# Written by launcher: the installed plugins, where they came from, and their \
             checksums.\nversion = {}\n",
            self.version
        );
        let mut plugins: Vec<&LockEntry> = self.plugins.iter().collect();
        plugins.sort_by(|a, b| a.name.cmp(&b.name));
        for entry in plugins {
            let table = toml::to_string(&Entries {
                plugins: vec![entry],
            })
            .map_err(|e| ErrorKind::Lockfile {
                path: path.to_path_buf(),
                message: format!("cannot write the entry of `{}`: {e}", entry.name),
            })?;
            text.push('\n');
            text.push_str(&table);
        }
        for raw in &self.unreadable {
            text.push('\n');
            text.push_str(raw.trim_end());
            text.push('\n');
        }
        atomic::write_file(path, text.as_bytes())
    }

    /// Returns the entry of `name`.
    pub fn get(&self, name: &str) -> Option<&LockEntry> {
        self.plugins.iter().find(|e| e.name == name)
    }

    /// Adds `entry`, replacing the one of the same name; returns the replaced one.
    pub fn upsert(&mut self, entry: LockEntry) -> Option<LockEntry> {
        let old = self.remove(&entry.name);
        self.plugins.push(entry);
        self.plugins.sort_by(|a, b| a.name.cmp(&b.name));
        old
    }

    /// Removes and returns the entry of `name`.
    pub fn remove(&mut self, name: &str) -> Option<LockEntry> {
        let at = self.plugins.iter().position(|e| e.name == name)?;
        Some(self.plugins.remove(at))
    }

    /// Returns whether some entries could not be read (and so which directories they name is
    /// unknown).
    pub fn has_unreadable(&self) -> bool {
        !self.unreadable.is_empty()
    }
}

#[derive(Serialize, Deserialize)]
struct Entries<T> {
    plugins: Vec<T>,
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn entry(name: &str, version: &str) -> LockEntry {
        let version = Version::parse(version).unwrap();
        LockEntry {
            dir: LockEntry::dir_for(name, &version),
            name: name.to_string(),
            version,
            source: Source::Registry {
                registry: "default".to_string(),
                index: "https://plugins.example/index/".to_string(),
            },
            requirement: "^1".to_string(),
            target: "x86_64-unknown-linux-gnu".to_string(),
            abi: 1,
            archive_sha256: Some("aa".repeat(32)),
            library: format!("lib{name}.so"),
            library_sha256: "bb".repeat(32),
            library_size: 1234,
            library_mtime: 1_700_000_000_123_456_789,
            signed_by: None,
            seen: None,
        }
    }

    #[test]
    fn round_trips_sorted_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCKFILE);
        let mut lockfile = Lockfile::default();
        lockfile.upsert(entry("zeta", "1.0.0"));
        let mut local = entry("alpha", "0.2.0");
        local.source = Source::Path {
            path: PathBuf::from("/src/target/release/libalpha.so"),
        };
        local.archive_sha256 = None;
        lockfile.upsert(local);
        lockfile.write(&path).unwrap();

        let (read, warnings) = Lockfile::read(&path).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(read, lockfile);
        let names: Vec<&str> = read.plugins.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["alpha", "zeta"]);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.find("alpha").unwrap() < text.find("zeta").unwrap());
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (lockfile, warnings) = Lockfile::read(&dir.path().join(LOCKFILE)).unwrap();
        assert!(lockfile.plugins.is_empty() && warnings.is_empty());
    }

    #[test]
    fn a_corrupt_entry_is_skipped_with_a_warning_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCKFILE);
        let mut lockfile = Lockfile::default();
        for name in ["one", "two", "three"] {
            lockfile.upsert(entry(name, "1.0.0"));
        }
        lockfile.write(&path).unwrap();
        // Break TOML syntax inside `three`'s table and a field type inside `two`'s.
        let text = fs::read_to_string(&path).unwrap();
        let text = text
            .replacen("name = \"three\"", "name = \"three", 1)
            .replacen(
                "library_size = 1234\nlibrary_mtime = 1700000000123456789\ndir = \"plugins/two",
                "library_size = \"big\"\nlibrary_mtime = 1700000000123456789\ndir = \"plugins/two",
                1,
            );
        assert!(text.contains("\"big\""), "the edit must apply: {text}");
        fs::write(&path, &text).unwrap();

        let (read, warnings) = Lockfile::read(&path).unwrap();
        let names: Vec<&str> = read.plugins.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["one"]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings.iter().any(|w| w.contains("(`two`)")),
            "{warnings:?}"
        );
        assert!(read.has_unreadable());

        // Rewriting keeps the damaged entries for a human to repair, and `one` still loads.
        read.write(&path).unwrap();
        let again = fs::read_to_string(&path).unwrap();
        assert!(again.contains("\"big\"") && again.contains("name = \"three\n"));
        let (reread, warnings) = Lockfile::read(&path).unwrap();
        assert_eq!(reread.plugins, read.plugins);
        assert_eq!(warnings.len(), 2);
    }

    #[test]
    fn an_entry_naming_a_foreign_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCKFILE);
        let mut lockfile = Lockfile::default();
        let mut evil = entry("evil", "1.0.0");
        evil.dir = "../../etc".to_string();
        lockfile.plugins.push(evil);
        lockfile.upsert(entry("good", "1.0.0"));
        lockfile.write(&path).unwrap();
        let (read, warnings) = Lockfile::read(&path).unwrap();
        assert_eq!(read.plugins.len(), 1);
        assert_eq!(read.plugins[0].name, "good");
        assert!(
            warnings[0].contains("should be `plugins/evil/1.0.0`"),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_reinstall_may_sit_beside_the_usual_directory_and_nowhere_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCKFILE);
        let mut lockfile = Lockfile::default();
        for (name, dir) in [
            ("good", "plugins/good/1.0.0~12"),
            ("empty", "plugins/empty/1.0.0~"),
            ("letters", "plugins/letters/1.0.0~a"),
            ("escape", "plugins/escape/1.0.0~1/../../../etc"),
            ("other", "plugins/other/1.0.1~1"),
        ] {
            let mut e = entry(name, "1.0.0");
            e.dir = dir.to_string();
            lockfile.plugins.push(e);
        }
        lockfile.write(&path).unwrap();
        let (read, warnings) = Lockfile::read(&path).unwrap();
        let names: Vec<&str> = read.plugins.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["good"]);
        assert_eq!(warnings.len(), 4, "{warnings:?}");
    }

    #[test]
    fn a_newer_version_is_an_error_not_a_silent_loss() {
        let err = Lockfile::parse("version = 2\n", Path::new("plugins.lock")).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    #[test]
    fn duplicate_names_keep_the_first() {
        let mut text = String::from("version = 1\n");
        for size in [1, 2] {
            let mut e = entry("dup", "1.0.0");
            e.library_size = size;
            text.push_str(&toml::to_string(&Entries { plugins: vec![e] }).unwrap());
        }
        let (read, warnings) = Lockfile::parse(&text, Path::new("plugins.lock")).unwrap();
        assert_eq!(read.plugins.len(), 1);
        assert_eq!(read.plugins[0].library_size, 1);
        assert!(warnings[0].contains("appears twice"), "{warnings:?}");
    }
}
