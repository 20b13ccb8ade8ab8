//! The plugin store: the installed plugins under the launcher home, and the changes to them.
//!
//! ```text
//! $LAUNCHER_HOME/
//! ├── plugins.lock                what is installed, from where, at which checksums
//! ├── plugins/
//! │   ├── .lock                   held exclusively while anything below changes
//! │   ├── .staging/               downloads, extractions and replaced directories in flight
//! │   └── azure-tts/
//! │       └── 1.2.0/              plugin.toml, the library, README and LICENSE when packed
//! └── cache/index/<registry>/     cached index files of HTTP registries
//! ```
//!
//! The lockfile is the truth, and it names only complete directories: every change is staged
//! in `.staging/` (on the same file system, so renames are atomic), renamed into its version
//! directory, and only then recorded by an atomic rewrite of the lockfile. A failure or a kill
//! at any point leaves the previous lockfile and every directory it names. Replacing a version
//! directory moves the old one into `.staging/old-<name>@<version>-<n>` first, so it can be put
//! back. Leftovers are cleaned up the next time the store is locked: staging entries are
//! removed (or moved back, when the lockfile still names them) unless an install working
//! without the lock still uses them, and version directories that no
//! entry names are deleted. Deleting them later rather than at once means a library that a
//! running launcher still has loaded is not pulled away mid-job on platforms that forbid it.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use launcher_sdk::Manifest;
use semver::Version;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::atomic;
use crate::error::{Error, ErrorKind, Result};
use crate::lockfile::{LOCKFILE, LockEntry, Lockfile, Source};
use crate::plugin_toml::{PLUGIN_TOML, PLUGIN_TOML_SCHEMA, PluginToml};
use crate::report::{Reporter, Stage};
use crate::verify::{hex, sha256_file};

/// The validator the host provides: loads the library at the path in a child process and
/// returns its manifest, or a message saying why it could not.
pub type Validate = dyn Fn(&Path) -> std::result::Result<Manifest, String>;

const STAGING: &str = ".staging";
const LOCK_FILE: &str = ".lock";
const OLD_PREFIX: &str = "old-";

/// The plugin store of one launcher home.
#[derive(Debug, Clone)]
pub struct Store {
    home: PathBuf,
    plugins: PathBuf,
    staging: PathBuf,
}

impl Store {
    /// Opens the store under `home`, creating its directories.
    pub fn open(home: impl Into<PathBuf>) -> Result<Store> {
        let home = home.into();
        let plugins = home.join("plugins");
        let staging = plugins.join(STAGING);
        fs::create_dir_all(&staging).map_err(|e| Error::io("create", &staging, e))?;
        Ok(Store {
            home,
            plugins,
            staging,
        })
    }

    /// Returns the launcher home.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Returns the directory holding one directory per installed plugin.
    pub fn plugins_dir(&self) -> &Path {
        &self.plugins
    }

    /// Returns the staging directory (same file system as the version directories).
    pub(crate) fn staging(&self) -> &Path {
        &self.staging
    }

    /// Returns the lockfile's path.
    pub fn lockfile_path(&self) -> PathBuf {
        self.home.join(LOCKFILE)
    }

    /// Returns the directory where HTTP registries cache their index files.
    pub fn index_cache_dir(&self) -> PathBuf {
        self.home.join("cache").join("index")
    }

    /// Returns the directory where verified archives of HTTP registries are kept.
    pub fn archive_cache_dir(&self) -> PathBuf {
        self.home.join("cache").join("archives")
    }

    /// Empties the caches (index files and archives); returns the bytes freed. Nothing
    /// installed depends on them: they only spare downloads and allow `--offline`.
    pub fn clean_cache(&self) -> Result<u64> {
        let mut freed = 0;
        for dir in [self.index_cache_dir(), self.archive_cache_dir()] {
            freed += tree_size(&dir);
            remove_all(&dir).map_err(|e| Error::io("remove", &dir, e))?;
        }
        Ok(freed)
    }

    /// Reads the lockfile, with a warning for each entry that could not be read.
    pub fn read_lockfile(&self) -> Result<(Lockfile, Vec<String>)> {
        Lockfile::read(&self.lockfile_path())
    }

    /// Returns the installed plugins as the lockfile records them, with a warning for each
    /// entry that could not be read. Needs no lock: the lockfile is only ever replaced whole.
    pub fn installed(&self) -> Result<(Vec<InstalledPlugin>, Vec<String>)> {
        let (lockfile, warnings) = self.read_lockfile()?;
        let plugins = lockfile
            .plugins
            .into_iter()
            .map(|entry| InstalledPlugin::new(&self.home, entry))
            .collect();
        Ok((plugins, warnings))
    }

    /// Takes the store lock, waiting (and telling `reporter`) while another process holds it,
    /// then cleans up what an interrupted change left behind.
    pub fn lock(&self, reporter: &dyn Reporter) -> Result<StoreLock<'_>> {
        let path = self.plugins.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                reporter.waiting_for_lock(&path);
                file.lock().map_err(|e| Error::io("lock", &path, e))?;
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        let (lockfile, warnings) = self.read_lockfile()?;
        let mut lock = StoreLock {
            store: self,
            _file: file,
            lockfile,
            warnings,
        };
        lock.recover();
        Ok(lock)
    }
}

/// One installed plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPlugin {
    /// Its lockfile entry.
    pub entry: LockEntry,
    /// Its version directory.
    pub dir: PathBuf,
    /// Its library.
    pub library_path: PathBuf,
}

impl InstalledPlugin {
    pub(crate) fn new(home: &Path, entry: LockEntry) -> InstalledPlugin {
        let dir = home.join(&entry.dir);
        let library_path = dir.join(&entry.library);
        InstalledPlugin {
            entry,
            dir,
            library_path,
        }
    }

    /// Reads its `plugin.toml`.
    pub fn plugin_toml(&self) -> Result<PluginToml> {
        PluginToml::read(&self.dir.join(PLUGIN_TOML))
    }

    /// Returns whether the library is missing or its size or modification time differ from
    /// the lockfile's, a cheap sign that it changed since it was installed.
    pub fn library_changed(&self) -> bool {
        match fs::metadata(&self.library_path) {
            Ok(meta) => {
                meta.len() != self.entry.library_size
                    || mtime_nanos(&meta) != self.entry.library_mtime
            }
            Err(_) => true,
        }
    }

    /// Returns whether the library is there and is the one the lockfile records, hashing it
    /// only when size or time differ.
    pub(crate) fn is_intact(&self) -> bool {
        if !self.dir.join(PLUGIN_TOML).is_file() {
            return false;
        }
        if !self.library_changed() {
            return true;
        }
        sha256_file(&self.library_path).is_ok_and(|sum| sum == self.entry.library_sha256)
    }
}

/// The store, locked against other processes. Every change to the store goes through this.
#[derive(Debug)]
pub struct StoreLock<'a> {
    store: &'a Store,
    _file: File,
    lockfile: Lockfile,
    warnings: Vec<String>,
}

impl<'a> StoreLock<'a> {
    /// Returns the store.
    pub fn store(&self) -> &'a Store {
        self.store
    }

    /// Returns the lockfile as of now.
    pub fn lockfile(&self) -> &Lockfile {
        &self.lockfile
    }

    /// Returns the warnings from reading the lockfile and from cleaning up.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Installs a locally built library (`launcher install --path`): copies it into staging,
    /// validates the copy, writes its `plugin.toml` from the manifest, renames it into its
    /// version directory, and records it. An installed version directory of the same name and
    /// version is replaced.
    pub fn install_local(
        &mut self,
        library: &Path,
        validate: &Validate,
        reporter: &dyn Reporter,
    ) -> Result<LockEntry> {
        let source = fs::canonicalize(library).map_err(|e| Error::io("read", library, e))?;
        let entry = self.stage_library(&source, "*", validate, reporter)?;
        Ok(entry)
    }

    /// Copies, validates and installs the library at `source` (canonical), recording
    /// `requirement`.
    pub(crate) fn stage_library(
        &mut self,
        source: &Path,
        requirement: &str,
        validate: &Validate,
        reporter: &dyn Reporter,
    ) -> Result<LockEntry> {
        let meta = fs::metadata(source).map_err(|e| Error::io("read", source, e))?;
        if !meta.is_file() {
            return Err(ErrorKind::Validation {
                library: source.to_path_buf(),
                message: "it is not a file".to_string(),
            }
            .into());
        }
        let file_name = source
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| ErrorKind::Validation {
                library: source.to_path_buf(),
                message: "its file name is not UTF-8".to_string(),
            })?;
        let staged = self.staging_dir("new-")?;
        let staged_library = staged.path().join(&file_name);
        let library_sha256 = copy_hashing(source, &staged_library)?;

        // Validate the copy, not the original, so what is installed is what was loaded.
        let manifest = validate(&staged_library).map_err(|message| ErrorKind::Validation {
            library: source.to_path_buf(),
            message,
        })?;
        let version = check_manifest(&manifest, source, None)?;
        let name = manifest.name.clone();
        let abi = manifest.abi;
        let target = crate::host_target();
        PluginToml {
            schema: PLUGIN_TOML_SCHEMA,
            manifest,
            library: file_name.clone(),
            library_sha256: library_sha256.clone(),
            target: target.clone(),
        }
        .write(&staged.path().join(PLUGIN_TOML))?;

        let library_meta =
            fs::metadata(&staged_library).map_err(|e| Error::io("read", &staged_library, e))?;
        let entry = LockEntry {
            dir: LockEntry::dir_for(&name, &version),
            name,
            version,
            source: Source::Path {
                path: source.to_path_buf(),
            },
            requirement: requirement.to_string(),
            target,
            abi,
            archive_sha256: None,
            library: file_name,
            library_sha256,
            library_size: library_meta.len(),
            library_mtime: mtime_nanos(&library_meta),
            signed_by: None,
            seen: None,
        };
        self.commit(staged, entry.clone(), reporter)?;
        Ok(entry)
    }

    /// Uninstalls `name`: removes its lockfile entry, then its directory. Returns the entry.
    pub fn uninstall(&mut self, name: &str) -> Result<LockEntry> {
        let mut next = self.lockfile.clone();
        let entry = next.remove(name).ok_or_else(|| ErrorKind::NotInstalled {
            name: name.to_string(),
        })?;
        next.write(&self.store.lockfile_path())?;
        self.lockfile = next;
        // From here the plugin is uninstalled; a directory that cannot go now goes next time.
        let dir = self.store.home.join(&entry.dir);
        if let Err(e) = remove_all(&dir) {
            self.warnings.push(format!(
                "could not remove `{}` yet ({e}); it will be removed later",
                dir.display()
            ));
        }
        if let Some(parent) = dir.parent() {
            let _ = fs::remove_dir(parent);
        }
        Ok(entry)
    }

    /// Creates a fresh directory in staging.
    pub(crate) fn staging_dir(&self, prefix: &str) -> Result<TempDir> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&self.store.staging)
            .map_err(|e| Error::io("create a directory in", &self.store.staging, e))
    }

    /// Moves a complete staged directory into `entry`'s version directory and records `entry`
    /// in the lockfile. On failure the previous directory and lockfile are back in place.
    pub(crate) fn commit(
        &mut self,
        staged: TempDir,
        entry: LockEntry,
        reporter: &dyn Reporter,
    ) -> Result<()> {
        reporter.stage(&entry.name, &entry.version, Stage::Installing);
        atomic::sync_tree(staged.path())?;
        let target = self.store.home.join(&entry.dir);
        let parent = atomic::parent(&target).to_path_buf();
        fs::create_dir_all(&parent).map_err(|e| Error::io("create", &parent, e))?;
        atomic::sync_dir(&self.store.plugins)?;

        let replaced = if target.exists() {
            let old = self.store.staging.join(format!(
                "{OLD_PREFIX}{}@{}-{}",
                entry.name,
                entry.version,
                unique()
            ));
            fs::rename(&target, &old).map_err(|e| Error::io("move aside", &target, e))?;
            if let Err(e) = fs::rename(staged.path(), &target) {
                let _ = fs::rename(&old, &target);
                return Err(Error::io("move into place", &target, e));
            }
            Some(old)
        } else {
            fs::rename(staged.path(), &target)
                .map_err(|e| Error::io("move into place", &target, e))?;
            None
        };
        // The directory now lives at `target`; the guard must not delete anything.
        let _ = staged.keep();
        atomic::sync_dir(&parent)?;

        reporter.stage(&entry.name, &entry.version, Stage::Recording);
        let mut next = self.lockfile.clone();
        next.upsert(entry);
        if let Err(e) = next.write(&self.store.lockfile_path()) {
            self.undo_commit(&target, replaced.as_deref());
            return Err(e);
        }
        self.lockfile = next;
        if let Some(old) = replaced {
            let _ = remove_all(&old);
        }
        Ok(())
    }

    /// Puts back what [`commit`](Self::commit) moved, after the lockfile write failed.
    fn undo_commit(&self, target: &Path, replaced: Option<&Path>) {
        let trash = self.store.staging.join(format!("trash-{}", unique()));
        match replaced {
            Some(old) => {
                if fs::rename(target, &trash).is_ok() {
                    let _ = fs::rename(old, target);
                }
            }
            None => {
                let _ = fs::rename(target, &trash);
            }
        }
        let _ = remove_all(&trash);
    }

    /// Cleans up after interrupted changes; see the module docs. Best effort: what cannot be
    /// removed now is tried again next time.
    fn recover(&mut self) {
        let Ok(entries) = fs::read_dir(&self.store.staging) else {
            return;
        };
        for item in entries.flatten() {
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            if let Some((plugin, version)) = parse_old(&name) {
                self.recover_replaced(&path, plugin, &version);
            } else if !crate::install::is_in_flight(&path) {
                let _ = remove_all(&path);
            }
        }

        // Stale temporary lockfiles from a write that never reached its rename.
        if let Ok(entries) = fs::read_dir(&self.store.home) {
            for item in entries.flatten() {
                let name = item.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!(".{LOCKFILE}.")) && name.ends_with(".tmp") {
                    let _ = fs::remove_file(item.path());
                }
            }
        }

        // An unreadable entry names a directory we cannot know, so keep every directory.
        if self.lockfile.has_unreadable() {
            return;
        }
        let Ok(names) = fs::read_dir(&self.store.plugins) else {
            return;
        };
        for plugin_dir in names.flatten() {
            let plugin = plugin_dir.file_name().to_string_lossy().into_owned();
            if !launcher_sdk::is_identifier(&plugin) || !plugin_dir.path().is_dir() {
                continue;
            }
            let Ok(versions) = fs::read_dir(plugin_dir.path()) else {
                continue;
            };
            for version_dir in versions.flatten() {
                let version = version_dir.file_name().to_string_lossy().into_owned();
                let named = self
                    .lockfile
                    .get(&plugin)
                    .is_some_and(|e| e.version.to_string() == version);
                if !named {
                    let _ = remove_all(&version_dir.path());
                }
            }
            // Succeeds only when empty.
            let _ = fs::remove_dir(plugin_dir.path());
        }
    }

    /// Deals with a directory a replacement moved aside: puts it back if the replacement was
    /// never recorded, otherwise removes it.
    fn recover_replaced(&mut self, old: &Path, plugin: &str, version: &Version) {
        let recorded = self
            .lockfile
            .get(plugin)
            .filter(|e| &e.version == version)
            .cloned();
        let Some(entry) = recorded else {
            let _ = remove_all(old);
            return;
        };
        let target = self.store.home.join(&entry.dir);
        let library_sha = |dir: &Path| {
            PluginToml::read(&dir.join(PLUGIN_TOML))
                .ok()
                .map(|t| t.library_sha256)
        };
        if !target.exists() {
            if fs::rename(old, &target).is_ok() {
                self.warnings.push(format!(
                    "restored `{}` after an interrupted install",
                    target.display()
                ));
            }
        } else if library_sha(&target).as_deref() == Some(entry.library_sha256.as_str()) {
            let _ = remove_all(old);
        } else if library_sha(old).as_deref() == Some(entry.library_sha256.as_str()) {
            let trash = self.store.staging.join(format!("trash-{}", unique()));
            if fs::rename(&target, &trash).is_ok() && fs::rename(old, &target).is_ok() {
                self.warnings.push(format!(
                    "restored `{}` after an interrupted install",
                    target.display()
                ));
            }
            let _ = remove_all(&trash);
        } else {
            let _ = remove_all(old);
        }
    }

    pub(crate) fn write_lockfile(&mut self, next: Lockfile) -> Result<()> {
        next.write(&self.store.lockfile_path())?;
        self.lockfile = next;
        Ok(())
    }
}

/// Checks a manifest the validator returned: usable, semver, this host's ABI, and (when given)
/// the name and version expected. Returns the version.
pub(crate) fn check_manifest(
    manifest: &Manifest,
    library: &Path,
    expected: Option<(&str, &Version)>,
) -> Result<Version> {
    let invalid = |message: String| {
        ErrorKind::InvalidManifest {
            library: library.to_path_buf(),
            message,
        }
        .into()
    };
    manifest.validate().map_err(invalid)?;
    let version = Version::parse(&manifest.version)
        .map_err(|e| invalid(format!("version `{}` is not semver: {e}", manifest.version)))?;
    let abi = launcher_sdk::abi::ABI_MAJOR;
    if manifest.abi != abi {
        return Err(invalid(format!(
            "it was built for plugin ABI {}; this launcher speaks ABI {abi}",
            manifest.abi
        )));
    }
    if let Some((name, expected_version)) = expected
        && (manifest.name != name || &version != expected_version)
    {
        return Err(invalid(format!(
            "it reports itself as `{}` {version}, not `{name}` {expected_version}",
            manifest.name
        )));
    }
    Ok(version)
}

/// Copies `from` to the new file `to`, syncing it, and returns the sha256 of the bytes copied.
fn copy_hashing(from: &Path, to: &Path) -> Result<String> {
    let mut input = File::open(from).map_err(|e| Error::io("open", from, e))?;
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| Error::io("create", to, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", from, e)),
        };
        hasher.update(&buf[..n]);
        output
            .write_all(&buf[..n])
            .map_err(|e| Error::io("write", to, e))?;
    }
    output.sync_all().map_err(|e| Error::io("write", to, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = input
            .metadata()
            .map(|m| m.permissions().mode())
            .unwrap_or(0o644);
        let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
        fs::set_permissions(to, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("write", to, e))?;
    }
    Ok(hex(&hasher.finalize()))
}

/// Returns a file's modification time in nanoseconds since the Unix epoch (0 if unknown).
pub(crate) fn mtime_nanos(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Parses `old-<name>@<version>-<n>`.
fn parse_old(file_name: &str) -> Option<(&str, Version)> {
    let rest = file_name.strip_prefix(OLD_PREFIX)?;
    let (plugin, rest) = rest.split_once('@')?;
    let (version, _) = rest.rsplit_once('-')?;
    Some((plugin, Version::parse(version).ok()?))
}

/// Returns a name part that no other staging entry of this process or another has.
pub(crate) fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}{nanos}", std::process::id())
}

/// Returns the bytes of the files under `path` (0 if it is missing).
fn tree_size(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::read_dir(path)
            .map(|entries| entries.flatten().map(|e| tree_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(meta) => meta.len(),
        Err(_) => 0,
    }
}

/// Removes a file or a directory tree; a missing one is fine.
fn remove_all(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::report::NoReporter;
    use launcher_sdk::ToolSpec;

    fn manifest(name: &str, version: &str) -> Manifest {
        Manifest::new(name, version).tool(ToolSpec::new(name, &["chat"]))
    }

    /// A validator that reads `name version` from the library file itself, standing in for the
    /// host's child-process probe.
    fn probe(path: &Path) -> std::result::Result<Manifest, String> {
        let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
        let mut words = text.split_whitespace();
        match (words.next(), words.next()) {
            (Some(name), Some(version)) => Ok(manifest(name, version)),
            _ => Err("not a plugin".to_string()),
        }
    }

    fn library(dir: &Path, file: &str, contents: &str) -> PathBuf {
        let path = dir.join(file);
        fs::write(&path, contents).unwrap();
        path
    }

    fn listing(store: &Store) -> Vec<String> {
        let mut out = Vec::new();
        for plugin in fs::read_dir(store.plugins_dir()).unwrap().flatten() {
            let name = plugin.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            for version in fs::read_dir(plugin.path()).unwrap().flatten() {
                out.push(format!("{name}/{}", version.file_name().to_string_lossy()));
            }
        }
        out.sort();
        out
    }

    fn staging_is_empty(store: &Store) -> bool {
        fs::read_dir(store.home().join("plugins/.staging"))
            .unwrap()
            .next()
            .is_none()
    }

    #[test]
    fn install_local_then_uninstall() {
        let home = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let lib = library(src.path(), "libecho.so", "echo 0.1.0");
        let store = Store::open(home.path()).unwrap();
        let mut lock = store.lock(&NoReporter).unwrap();
        let entry = lock.install_local(&lib, &probe, &NoReporter).unwrap();
        assert_eq!(entry.name, "echo");
        assert_eq!(entry.dir, "plugins/echo/0.1.0");
        assert_eq!(entry.requirement, "*");
        assert_eq!(entry.target, crate::host_target());
        assert!(
            matches!(&entry.source, Source::Path { path } if path == &fs::canonicalize(&lib).unwrap())
        );
        drop(lock);

        let (installed, warnings) = store.installed().unwrap();
        assert!(warnings.is_empty());
        assert_eq!(installed.len(), 1);
        let plugin = &installed[0];
        assert_eq!(
            fs::read_to_string(&plugin.library_path).unwrap(),
            "echo 0.1.0"
        );
        assert!(!plugin.library_changed());
        let toml = plugin.plugin_toml().unwrap();
        assert_eq!(toml.manifest.name, "echo");
        assert_eq!(toml.library_sha256, entry.library_sha256);
        assert!(staging_is_empty(&store));

        fs::write(&plugin.library_path, "echo 0.1.0 but changed").unwrap();
        assert!(plugin.library_changed());

        let mut lock = store.lock(&NoReporter).unwrap();
        assert_eq!(lock.uninstall("echo").unwrap().name, "echo");
        assert!(matches!(
            lock.uninstall("echo").map_err(Error::into_kind),
            Err(ErrorKind::NotInstalled { .. })
        ));
        drop(lock);
        assert!(store.installed().unwrap().0.is_empty());
        assert!(listing(&store).is_empty());
    }

    #[test]
    fn a_refused_library_changes_nothing() {
        let home = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        let good = library(src.path(), "libecho.so", "echo 0.1.0");
        store
            .lock(&NoReporter)
            .unwrap()
            .install_local(&good, &probe, &NoReporter)
            .unwrap();
        let before = fs::read(store.lockfile_path()).unwrap();

        let mut lock = store.lock(&NoReporter).unwrap();
        for (contents, expected) in [
            ("garbage", "failed validation: not a plugin"),
            ("Bad-Name 1.0.0", "is not lowercase"),
            ("echo one", "is not semver"),
        ] {
            let bad = library(src.path(), "libbad.so", contents);
            let err = lock.install_local(&bad, &probe, &NoReporter).unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        }
        let other_abi = |_: &Path| {
            let mut m = manifest("echo", "0.2.0");
            m.abi = launcher_sdk::abi::ABI_MAJOR + 1;
            Ok(m)
        };
        let err = lock
            .install_local(&good, &other_abi, &NoReporter)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("plugin ABI {}", launcher_sdk::abi::ABI_MAJOR + 1)),
            "{err}"
        );
        drop(lock);

        assert_eq!(fs::read(store.lockfile_path()).unwrap(), before);
        assert_eq!(listing(&store), ["echo/0.1.0"]);
        assert!(staging_is_empty(&store));
    }

    #[test]
    fn reinstalling_the_same_version_replaces_it() {
        let home = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        let mut lock = store.lock(&NoReporter).unwrap();
        let first = library(src.path(), "libecho.so", "echo 0.1.0");
        lock.install_local(&first, &probe, &NoReporter).unwrap();
        let second = library(src.path(), "libecho.so", "echo 0.1.0 rebuilt");
        let entry = lock.install_local(&second, &probe, &NoReporter).unwrap();
        drop(lock);
        let (installed, _) = store.installed().unwrap();
        assert_eq!(installed.len(), 1);
        assert_eq!(installed[0].entry, entry);
        assert_eq!(
            fs::read_to_string(&installed[0].library_path).unwrap(),
            "echo 0.1.0 rebuilt"
        );
        assert!(staging_is_empty(&store));
    }

    #[test]
    fn a_new_version_replaces_the_entry_and_the_old_directory_goes_later() {
        let home = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        let mut lock = store.lock(&NoReporter).unwrap();
        lock.install_local(
            &library(src.path(), "libecho.so", "echo 0.1.0"),
            &probe,
            &NoReporter,
        )
        .unwrap();
        lock.install_local(
            &library(src.path(), "libecho.so", "echo 0.2.0"),
            &probe,
            &NoReporter,
        )
        .unwrap();
        assert_eq!(lock.lockfile().plugins.len(), 1);
        assert_eq!(listing(&store), ["echo/0.1.0", "echo/0.2.0"]);
        drop(lock);
        drop(store.lock(&NoReporter).unwrap());
        assert_eq!(listing(&store), ["echo/0.2.0"]);
    }

    #[test]
    fn a_failed_lockfile_write_puts_the_previous_directory_back() {
        let home = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        let mut lock = store.lock(&NoReporter).unwrap();
        lock.install_local(
            &library(src.path(), "libecho.so", "echo 0.1.0"),
            &probe,
            &NoReporter,
        )
        .unwrap();
        let before = fs::read(store.lockfile_path()).unwrap();

        // With a non-empty directory in the lockfile's place, the rename over it fails.
        fs::remove_file(store.lockfile_path()).unwrap();
        fs::create_dir(store.lockfile_path()).unwrap();
        fs::write(store.lockfile_path().join("keep"), "").unwrap();
        let rebuilt = library(src.path(), "libecho.so", "echo 0.1.0 rebuilt");
        assert!(lock.install_local(&rebuilt, &probe, &NoReporter).is_err());
        let new_version = library(src.path(), "libecho.so", "echo 0.3.0");
        assert!(
            lock.install_local(&new_version, &probe, &NoReporter)
                .is_err()
        );
        fs::remove_dir_all(store.lockfile_path()).unwrap();
        fs::write(store.lockfile_path(), &before).unwrap();
        drop(lock);

        let (installed, _) = store.installed().unwrap();
        assert_eq!(
            fs::read_to_string(&installed[0].library_path).unwrap(),
            "echo 0.1.0"
        );
        assert_eq!(listing(&store), ["echo/0.1.0"]);
        assert!(staging_is_empty(&store));
    }

    #[test]
    fn recovery_puts_back_a_directory_moved_aside_by_a_killed_replacement() {
        let home = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        store
            .lock(&NoReporter)
            .unwrap()
            .install_local(
                &library(src.path(), "libecho.so", "echo 0.1.0"),
                &probe,
                &NoReporter,
            )
            .unwrap();
        let dir = home.path().join("plugins/echo/0.1.0");
        let old = home.path().join("plugins/.staging/old-echo@0.1.0-123");

        // Killed between moving the old directory aside and moving the new one in.
        fs::rename(&dir, &old).unwrap();
        let lock = store.lock(&NoReporter).unwrap();
        assert!(
            lock.warnings()[0].contains("restored"),
            "{:?}",
            lock.warnings()
        );
        drop(lock);
        let (installed, _) = store.installed().unwrap();
        assert!(installed[0].is_intact());

        // Killed after moving the new one in, before the lockfile was rewritten.
        fs::rename(&dir, &old).unwrap();
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("libecho.so"), "echo 0.1.0 rebuilt").unwrap();
        let mut toml = PluginToml::read(&old.join(PLUGIN_TOML)).unwrap();
        toml.library_sha256 = "ff".repeat(32);
        toml.write(&dir.join(PLUGIN_TOML)).unwrap();
        drop(store.lock(&NoReporter).unwrap());
        let (installed, _) = store.installed().unwrap();
        assert!(installed[0].is_intact());
        assert_eq!(
            fs::read_to_string(&installed[0].library_path).unwrap(),
            "echo 0.1.0"
        );

        // Killed after the lockfile was rewritten, before the old directory was removed.
        fs::create_dir(&old).unwrap();
        fs::write(old.join("libecho.so"), "stale").unwrap();
        drop(store.lock(&NoReporter).unwrap());
        assert!(!old.exists());
        assert_eq!(
            fs::read_to_string(&installed[0].library_path).unwrap(),
            "echo 0.1.0"
        );
        assert!(staging_is_empty(&store));
    }

    #[test]
    fn leftovers_are_collected_but_not_when_an_entry_is_unreadable() {
        let home = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        store
            .lock(&NoReporter)
            .unwrap()
            .install_local(
                &library(src.path(), "libecho.so", "echo 0.1.0"),
                &probe,
                &NoReporter,
            )
            .unwrap();
        fs::create_dir_all(home.path().join("plugins/.staging/new-abc/x")).unwrap();
        fs::create_dir_all(home.path().join("plugins/stray/1.0.0")).unwrap();
        fs::write(home.path().join(".plugins.lock.xyz.tmp"), "half").unwrap();

        // An unreadable entry might name `stray`: keep it.
        let mut text = fs::read_to_string(store.lockfile_path()).unwrap();
        text.push_str("\n[[plugins]]\nname = \"stray\"\nversion = \n");
        fs::write(store.lockfile_path(), &text).unwrap();
        let lock = store.lock(&NoReporter).unwrap();
        assert_eq!(lock.warnings().len(), 1, "{:?}", lock.warnings());
        drop(lock);
        assert_eq!(listing(&store), ["echo/0.1.0", "stray/1.0.0"]);
        assert!(staging_is_empty(&store));
        assert!(!home.path().join(".plugins.lock.xyz.tmp").exists());

        // Once repaired, the stray directory goes.
        let repaired = text.replace("\n[[plugins]]\nname = \"stray\"\nversion = \n", "");
        fs::write(store.lockfile_path(), repaired).unwrap();
        drop(store.lock(&NoReporter).unwrap());
        assert_eq!(listing(&store), ["echo/0.1.0"]);
    }

    #[test]
    fn the_lock_excludes_a_second_holder_and_says_it_waits() {
        struct Waiting<'a>(&'a Cell<bool>);
        impl Reporter for Waiting<'_> {
            fn waiting_for_lock(&self, _: &Path) {
                self.0.set(true);
            }
        }
        let home = tempfile::tempdir().unwrap();
        let first = Store::open(home.path()).unwrap();
        let held = first.lock(&NoReporter).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = home.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            let second = Store::open(&path).unwrap();
            let waited = Cell::new(false);
            let lock = second.lock(&Waiting(&waited)).unwrap();
            tx.send(waited.get()).unwrap();
            drop(lock);
        });
        // The second holder cannot get in while the first holds the lock.
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(300))
                .is_err()
        );
        drop(held);
        assert!(rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap());
        waiter.join().unwrap();
    }

    #[test]
    fn old_directory_names_parse() {
        let (name, version) = parse_old("old-echo@1.0.0-beta.2-4242").unwrap();
        assert_eq!(name, "echo");
        assert_eq!(version, Version::parse("1.0.0-beta.2").unwrap());
        assert!(parse_old("new-abc").is_none());
        assert!(parse_old("old-echo@garbage-1").is_none());
    }
}
