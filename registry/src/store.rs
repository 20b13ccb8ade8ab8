//! The plugin store: the installed plugins under the launcher home, and the changes to them.
//!
//! ```text
//! $LAUNCHER_HOME/
//! ├── plugins.lock                what is installed, from where, at which checksums
//! ├── plugins/
//! │   ├── .lock                   held exclusively while anything below changes
//! │   ├── .readers                held shared by readers; exclusively to remove a directory
//! │   ├── .staging/               downloads and extractions in flight
//! │   └── azure-tts/
//! │       ├── 1.2.0/              plugin.toml, the library, README and LICENSE when packed
//! │       └── 1.2.0~1/            1.2.0 reinstalled: a new directory beside the named one
//! └── cache/index/<registry>/     cached index files of HTTP registries
//! ```
//!
//! The lockfile is the truth, and it names only complete directories that never change: every
//! change is staged in `.staging/` (on the same file system, so renames are atomic), renamed
//! into a version directory that no entry names, and only then recorded by an atomic rewrite of
//! the lockfile, which is the one moment the change happens. A reinstall of an installed
//! version goes into a fresh directory beside it (`1.2.0~1`) rather than moving the named one
//! aside, so a kill at any step leaves either the previous lockfile or the new one, each with
//! every directory it names in place: no command ever finds a plugin half-replaced, and none
//! needs the lock to repair anything. What a killed change leaves (staging entries, directories
//! no entry names, temporary lockfiles) is removed under the store lock, right after the next
//! change and whenever the store is locked, except the staging directory of an install still
//! downloading (without the lock), which holds a lock file inside it.
//!
//! Readers (listing, routing, loading a library) never wait for a change: they take no store
//! lock, but hold `.readers` shared from reading the lockfile until they have loaded what they
//! need ([`Store::read`]). A directory a lockfile named is removed only while `.readers` can be
//! taken exclusively, otherwise it stays until a later change, so a reader that read the
//! lockfile just before an upgrade still finds its library. We chose this over keeping only
//! the previous version of each plugin: that would still fail a reader that started before two
//! quick upgrades, and the lock costs a reader two system calls however many plugins there are.

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
use crate::failpoint;
use crate::lockfile::{LOCKFILE, LockEntry, Lockfile, Source};
use crate::plugin_toml::{PLUGIN_TOML, PLUGIN_TOML_SCHEMA, PluginToml};
use crate::report::{Reporter, Stage};
use crate::verify::{hex, sha256_file};

/// The validator the host provides: loads the library at the path in a child process and
/// returns its manifest, or a message saying why it could not.
pub type Validate = dyn Fn(&Path) -> std::result::Result<Manifest, String>;

const STAGING: &str = ".staging";
const LOCK_FILE: &str = ".lock";
const READERS_FILE: &str = ".readers";

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
    /// What it names may be removed once it is no longer installed; to use the files, see
    /// [`read`](Self::read).
    pub fn installed(&self) -> Result<(Vec<InstalledPlugin>, Vec<String>)> {
        let (lockfile, warnings) = self.read_lockfile()?;
        let plugins = lockfile
            .plugins
            .into_iter()
            .map(|entry| InstalledPlugin::new(&self.home, entry))
            .collect();
        Ok((plugins, warnings))
    }

    /// Returns the installed plugins whose files match the lockfile, for listing, routing and
    /// loading, with the reader lock held: until the returned guard is dropped no directory
    /// they name is removed, even if another launcher replaces or uninstalls them meanwhile.
    ///
    /// Costs one `stat` per plugin. A library whose size or modification time differ from the
    /// lockfile's is hashed: if its content is the recorded one (a home copied without times,
    /// a `touch`), it is used, and its new size and time are recorded under the store lock
    /// when that is free right now; otherwise the plugin is left out with a warning saying how
    /// to repair it.
    pub fn read(&self) -> Result<StoreRead> {
        let guard = self.reader_guard();
        let (plugins, warnings) = self.installed()?;
        Ok(self.checked(guard, plugins, warnings))
    }

    /// Takes the reader lock (see [`read`](Self::read)), for a reader that knows the lockfile's
    /// entries already: take it before looking at the lockfile, then hand it to
    /// [`read_recorded`](Self::read_recorded).
    pub fn reader_guard(&self) -> ReadGuard {
        ReadGuard {
            _file: self.lock_readers(),
        }
    }

    /// Like [`read`](Self::read), for lockfile entries the caller kept from an earlier read of
    /// the same lockfile (a cache keyed on it): checks their libraries the same way.
    pub fn read_recorded(&self, guard: ReadGuard, entries: Vec<LockEntry>) -> StoreRead {
        let plugins = entries
            .into_iter()
            .map(|entry| InstalledPlugin::new(&self.home, entry))
            .collect();
        self.checked(guard, plugins, Vec::new())
    }

    fn checked(
        &self,
        guard: ReadGuard,
        plugins: Vec<InstalledPlugin>,
        mut warnings: Vec<String>,
    ) -> StoreRead {
        let mut usable = Vec::with_capacity(plugins.len());
        let mut touched = false;
        for plugin in plugins {
            if !plugin.library_changed() {
                usable.push(plugin);
            } else if plugin.is_intact() {
                touched = true;
                usable.push(plugin);
            } else {
                let repair = match &plugin.entry.source {
                    Source::Registry { .. } => "`launcher sync` reinstalls it".to_string(),
                    Source::Path { path } => {
                        format!("`launcher install --path {}` reinstalls it", path.display())
                    }
                };
                warnings.push(format!(
                    "skipping installed plugin `{}` {}: its library {} changed or vanished since \
                     it was installed; {repair}",
                    plugin.entry.name,
                    plugin.entry.version,
                    plugin.library_path.display()
                ));
            }
        }
        if touched {
            // Taking the lock records the new times (see `refresh_touched`). Busy or refused
            // (a read-only home), it is only a cost: the content was checked just now.
            let _ = self.try_lock();
        }
        failpoint::hit("store-read");
        StoreRead {
            plugins: usable,
            warnings,
            guard,
        }
    }

    /// Takes the store lock, waiting (and telling `reporter`) while another process holds it,
    /// then cleans up what an interrupted change left behind.
    pub fn lock(&self, reporter: &dyn Reporter) -> Result<StoreLock<'_>> {
        let (file, path) = self.open_lock_file(LOCK_FILE)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                reporter.waiting_for_lock(&path);
                file.lock().map_err(|e| Error::io("lock", &path, e))?;
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        self.locked(file)
    }

    /// Takes the store lock if no other process holds it, then cleans up like
    /// [`lock`](Self::lock); returns `None` when it is held.
    pub fn try_lock(&self) -> Result<Option<StoreLock<'_>>> {
        let (file, path) = self.open_lock_file(LOCK_FILE)?;
        match file.try_lock() {
            Ok(()) => self.locked(file).map(Some),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
        }
    }

    fn locked(&self, file: File) -> Result<StoreLock<'_>> {
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

    fn open_lock_file(&self, name: &str) -> Result<(File, PathBuf)> {
        let path = self.plugins.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        Ok((file, path))
    }

    /// Returns the readers' lock held shared, waiting only while a change removes directories.
    /// `None` when it cannot be had, as in a read-only home, which no change can touch either.
    fn lock_readers(&self) -> Option<File> {
        let file = match self.open_lock_file(READERS_FILE) {
            Ok((file, _)) => file,
            // A lock works on a file opened only for reading, too.
            Err(_) => File::open(self.plugins.join(READERS_FILE)).ok()?,
        };
        file.lock_shared().ok()?;
        Some(file)
    }

    /// Returns the readers' lock held exclusively, if no reader holds it now.
    fn try_lock_readers_exclusive(&self) -> Option<File> {
        let (file, _) = self.open_lock_file(READERS_FILE).ok()?;
        file.try_lock().ok()?;
        Some(file)
    }
}

/// The installed plugins as a reader sees them; see [`Store::read`].
#[derive(Debug)]
pub struct StoreRead {
    /// The installed plugins whose files match the lockfile.
    pub plugins: Vec<InstalledPlugin>,
    /// A warning for each lockfile entry that could not be read, and for each plugin left out.
    pub warnings: Vec<String>,
    /// Keeps the plugins' directories in place while held.
    pub guard: ReadGuard,
}

/// Keeps every version directory in place while held: hold it from reading the lockfile until
/// the libraries needed are loaded.
#[derive(Debug, Default)]
pub struct ReadGuard {
    _file: Option<File>,
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
    /// validates the copy, writes its `plugin.toml` from the manifest, renames it into a new
    /// version directory, and records it. An installed version of the same name is replaced.
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
        self.commit(staged, entry, reporter)
    }

    /// Uninstalls `name`: removes its lockfile entry, then its directory unless a reader may
    /// still be using it (then a later change removes it). Returns the entry.
    pub fn uninstall(&mut self, name: &str) -> Result<LockEntry> {
        let mut next = self.lockfile.clone();
        let entry = next.remove(name).ok_or_else(|| ErrorKind::NotInstalled {
            name: name.to_string(),
        })?;
        self.write_lockfile(next)?;
        failpoint::hit("uninstall-recorded");
        self.remove_unnamed();
        Ok(entry)
    }

    /// Creates a fresh directory in staging.
    pub(crate) fn staging_dir(&self, prefix: &str) -> Result<TempDir> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&self.store.staging)
            .map_err(|e| Error::io("create a directory in", &self.store.staging, e))
    }

    /// Moves a complete staged directory into a new version directory for `entry` and records
    /// `entry` there in the lockfile; returns it as recorded. The directory of the version it
    /// replaces is removed afterwards unless a reader may still be using it. On failure, the
    /// previous lockfile and every directory it names are as they were.
    pub(crate) fn commit(
        &mut self,
        staged: TempDir,
        mut entry: LockEntry,
        reporter: &dyn Reporter,
    ) -> Result<LockEntry> {
        reporter.stage(&entry.name, &entry.version, Stage::Installing);
        atomic::sync_tree(staged.path())?;
        entry.dir = self.free_dir(&entry.name, &entry.version);
        let target = self.store.home.join(&entry.dir);
        let parent = atomic::parent(&target).to_path_buf();
        fs::create_dir_all(&parent).map_err(|e| Error::io("create", &parent, e))?;
        atomic::sync_dir(&self.store.plugins)?;

        failpoint::hit("commit-staged");
        fs::rename(staged.path(), &target).map_err(|e| Error::io("move into place", &target, e))?;
        // The directory now lives at `target`; the guard must not delete anything.
        let _ = staged.keep();
        // Until the lockfile names it, `target` is a leftover that nothing reads.
        let recorded = atomic::sync_dir(&parent).and_then(|()| {
            failpoint::hit("commit-moved-in");
            reporter.stage(&entry.name, &entry.version, Stage::Recording);
            let mut next = self.lockfile.clone();
            next.upsert(entry.clone());
            self.write_lockfile(next)
        });
        if let Err(e) = recorded {
            let _ = remove_all(&target);
            return Err(e);
        }
        failpoint::hit("commit-recorded");
        self.remove_unnamed();
        Ok(entry)
    }

    /// Returns the directory for a new install of `name` at `version`: the usual one, or when
    /// that exists (the version is installed, or a leftover is still in use) the first free
    /// `<version>~<n>` beside it.
    fn free_dir(&self, name: &str, version: &Version) -> String {
        let usual = LockEntry::dir_for(name, version);
        let free = |dir: &String| fs::symlink_metadata(self.store.home.join(dir)).is_err();
        if free(&usual) {
            return usual;
        }
        (1u32..)
            .map(|n| format!("{usual}~{n}"))
            .find(free)
            .expect("an unbounded sequence of names has a free one")
    }

    /// Cleans up after interrupted changes; see the module docs. Best effort: what cannot be
    /// removed now is tried again next time.
    fn recover(&mut self) {
        // Nothing in staging is named by a lockfile: it is what a killed change left.
        if let Ok(entries) = fs::read_dir(&self.store.staging) {
            for item in entries.flatten() {
                // An install downloading without the store lock holds its own entry.
                if !crate::install::is_in_flight(&item.path()) {
                    let _ = remove_all(&item.path());
                }
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

        self.refresh_touched();
        self.remove_unnamed();
    }

    /// Records the size and modification time of libraries whose content is still the one the
    /// lockfile records but whose size or time are not, so that readers need not hash them
    /// again: a home copied without times, a `touch`.
    fn refresh_touched(&mut self) {
        let mut next = self.lockfile.clone();
        let mut touched = false;
        for entry in &mut next.plugins {
            let plugin = InstalledPlugin::new(&self.store.home, entry.clone());
            if plugin.library_changed()
                && plugin.is_intact()
                && let Ok(meta) = fs::metadata(&plugin.library_path)
            {
                entry.library_size = meta.len();
                entry.library_mtime = mtime_nanos(&meta);
                touched = true;
            }
        }
        if touched && let Err(e) = self.write_lockfile(next) {
            self.warnings.push(format!(
                "could not record the new modification times of installed libraries: {e}"
            ));
        }
    }

    /// Removes the version directories no lockfile entry names, unless a reader may still be
    /// using one (then they stay until a later change).
    fn remove_unnamed(&mut self) {
        // An unreadable entry names a directory we cannot know, so keep every directory.
        if self.lockfile.has_unreadable() {
            return;
        }
        let Some(_readers) = self.store.try_lock_readers_exclusive() else {
            return;
        };
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
                let dir = format!(
                    "plugins/{plugin}/{}",
                    version_dir.file_name().to_string_lossy()
                );
                let named = self.lockfile.get(&plugin).is_some_and(|e| e.dir == dir);
                if !named {
                    let _ = remove_all(&version_dir.path());
                }
            }
            // Succeeds only when empty.
            let _ = fs::remove_dir(plugin_dir.path());
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
    fn reinstalling_the_same_version_goes_into_a_new_directory_beside_it() {
        let home = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        let mut lock = store.lock(&NoReporter).unwrap();
        let first = library(src.path(), "libecho.so", "echo 0.1.0");
        lock.install_local(&first, &probe, &NoReporter).unwrap();
        let second = library(src.path(), "libecho.so", "echo 0.1.0 rebuilt");
        let entry = lock.install_local(&second, &probe, &NoReporter).unwrap();
        assert_eq!(entry.dir, "plugins/echo/0.1.0~1");
        assert_eq!(listing(&store), ["echo/0.1.0~1"]);
        // And back: the usual name is free again.
        let third = lock.install_local(&first, &probe, &NoReporter).unwrap();
        assert_eq!(third.dir, "plugins/echo/0.1.0");
        let entry = lock.install_local(&second, &probe, &NoReporter).unwrap();
        drop(lock);
        let (installed, _) = store.installed().unwrap();
        assert_eq!(installed.len(), 1);
        assert_eq!(installed[0].entry, entry);
        assert_eq!(
            fs::read_to_string(&installed[0].library_path).unwrap(),
            "echo 0.1.0 rebuilt"
        );
        assert_eq!(listing(&store), ["echo/0.1.0~1"]);
        assert!(staging_is_empty(&store));
    }

    #[test]
    fn a_new_version_replaces_the_entry_and_the_old_directory_goes_when_no_one_reads() {
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
        assert_eq!(listing(&store), ["echo/0.2.0"]);
    }

    #[test]
    fn a_reader_keeps_every_directory_it_may_use_until_it_is_done() {
        let home = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        let install = |contents: &str| {
            store
                .lock(&NoReporter)
                .unwrap()
                .install_local(
                    &library(src.path(), "libecho.so", contents),
                    &probe,
                    &NoReporter,
                )
                .unwrap()
        };
        install("echo 0.1.0");
        // Another handle, as another launcher has: locks on separate opens exclude each other.
        let reader = Store::open(home.path()).unwrap().read().unwrap();
        let seen = reader.plugins[0].library_path.clone();

        // Upgraded twice and reinstalled while the reader resolves: it still finds its library.
        install("echo 0.2.0");
        install("echo 0.3.0");
        install("echo 0.3.0 rebuilt");
        assert_eq!(fs::read_to_string(&seen).unwrap(), "echo 0.1.0");
        let mut lock = store.lock(&NoReporter).unwrap();
        lock.uninstall("echo").unwrap();
        assert_eq!(fs::read_to_string(&seen).unwrap(), "echo 0.1.0");
        assert!(store.installed().unwrap().0.is_empty());
        drop(lock);
        assert_eq!(
            listing(&store),
            ["echo/0.1.0", "echo/0.2.0", "echo/0.3.0", "echo/0.3.0~1"]
        );

        // Once it is done, the next change removes them all.
        drop(reader);
        install("echo 0.4.0");
        assert_eq!(listing(&store), ["echo/0.4.0"]);
        assert!(staging_is_empty(&store));
    }

    #[test]
    fn a_touched_library_is_used_and_its_new_time_recorded() {
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
        let plugin = store.installed().unwrap().0.remove(0);
        // Same bytes, another time: a home copied without keeping times, a `touch`.
        let touch = |secs: u64| {
            File::options()
                .write(true)
                .open(&plugin.library_path)
                .unwrap()
                .set_modified(UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .unwrap();
        };
        touch(1_000_000);
        assert!(plugin.library_changed());

        let read = store.read().unwrap();
        assert_eq!(read.plugins.len(), 1, "{:?}", read.warnings);
        assert!(read.warnings.is_empty(), "{:?}", read.warnings);
        drop(read);
        let (installed, _) = store.installed().unwrap();
        assert!(!installed[0].library_changed(), "recorded by the reader");

        // While another process holds the store lock, the reader still uses it.
        let held = Store::open(home.path()).unwrap();
        let held = held.lock(&NoReporter).unwrap();
        touch(2_000_000);
        let read = store.read().unwrap();
        assert_eq!(read.plugins.len(), 1, "{:?}", read.warnings);
        drop(read);
        assert!(store.installed().unwrap().0[0].library_changed());
        drop(held);
        // Any change records it too.
        drop(store.lock(&NoReporter).unwrap());
        assert!(!store.installed().unwrap().0[0].library_changed());
    }

    #[test]
    fn a_changed_or_missing_library_is_left_out_saying_how_to_repair_it() {
        let home = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        let mut lock = store.lock(&NoReporter).unwrap();
        for name in ["echo", "other"] {
            lock.install_local(
                &library(
                    src.path(),
                    &format!("lib{name}.so"),
                    &format!("{name} 0.1.0"),
                ),
                &probe,
                &NoReporter,
            )
            .unwrap();
        }
        drop(lock);
        let (installed, _) = store.installed().unwrap();
        fs::write(&installed[0].library_path, "echo 0.1.0 tampered").unwrap();
        let read = store.read().unwrap();
        let names: Vec<&str> = read.plugins.iter().map(|p| p.entry.name.as_str()).collect();
        assert_eq!(names, ["other"]);
        assert_eq!(read.warnings.len(), 1);
        assert!(
            read.warnings[0].contains("`echo` 0.1.0")
                && read.warnings[0].contains("changed or vanished")
                && read.warnings[0].contains("`launcher install --path ")
                && read.warnings[0].contains("libecho.so` reinstalls it"),
            "{:?}",
            read.warnings
        );
        drop(read);

        fs::remove_dir_all(&installed[1].dir).unwrap();
        let read = store.read().unwrap();
        assert!(read.plugins.is_empty());
        assert_eq!(read.warnings.len(), 2, "{:?}", read.warnings);
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
}
