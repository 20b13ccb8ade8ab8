//! Registry sources: reading index files and downloading archives from a local directory, a
//! `file://` URL or an `http(s)://` URL.
//!
//! HTTP index files are cached under `cache/index/<registry>/`, at the same relative paths as
//! in the registry, each with a small header of validators:
//!
//! ```text
//! etag: "5f3a-1c"
//! last-modified: Tue, 03 Mar 2026 10:00:00 GMT
//!
//! {"v":1,"name":"azure-tts",...}
//! ```
//!
//! A later fetch sends them back (`If-None-Match`, `If-Modified-Since`), and a `304 Not
//! Modified` answer reuses the cached body; a server that sends neither validator gets an empty
//! header, and the body is still cached for offline use. In offline mode only the cache is
//! read. A 404, 410 or 451 means the file does not exist (no such plugin).
//!
//! Every index file read is checked against the registry's signed freshness statement
//! ([`crate::freshness`]).
//!
//! Archives are streamed into a staging directory, hashed as they arrive and cut off at the
//! declared size, under an overall deadline scaled to that size ([`DownloadLimits`]). Where they
//! may come from depends on the registry: one served over HTTP(S) downloads only over HTTP(S);
//! only a local registry may name `file://` URLs or paths, and then only regular files. Verified
//! archives of HTTP registries are kept under `cache/archives/` (bounded), so a reinstall or a
//! `sync` works offline.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, SystemTime};

use reqwest::{StatusCode, Url, header};
use semver::Version;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic;
use crate::error::{Error, ErrorKind, Result};
use crate::freshness::{self, Memory, SIGNATURE_FILE, STATEMENT_FILE, Statement};
use crate::index::{CATALOG_FILE, CONFIG_FILE, IndexConfig, IndexFile, index_path};
use crate::report::Reporter;
use crate::store::Store;
use crate::verify::{TrustedKeys, hex};

/// The largest index file accepted over HTTP: a catalog of many thousands of plugins fits, a
/// hostile server cannot exhaust memory.
const MAX_INDEX_FILE: u64 = 256 << 20;

/// Limits on archive downloads. The index is unsigned, so its declared sizes are only trusted
/// as far as these allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadLimits {
    /// The largest archive accepted, in bytes; a larger declared size is refused before
    /// anything is written.
    pub max_size: u64,
    /// The slowest transfer accepted, in bytes per second: with `grace`, it sets each
    /// download's overall deadline.
    pub min_rate: u64,
    /// Time every download gets on top of what `min_rate` allows (connection, slow start).
    pub grace: Duration,
    /// The most the archive cache may hold, in bytes; the oldest archives go first.
    pub cache_size: u64,
}

impl Default for DownloadLimits {
    fn default() -> Self {
        DownloadLimits {
            max_size: 1 << 30,
            min_rate: 20 * 1024,
            grace: Duration::from_secs(30),
            cache_size: 1 << 30,
        }
    }
}

impl DownloadLimits {
    /// Returns the overall deadline of a download of `size` bytes.
    pub fn deadline(&self, size: u64) -> Duration {
        self.grace + Duration::from_secs(size / self.min_rate.max(1))
    }
}

/// A registry as the user configured it: where its index is, and which keys sign it.
///
/// The host keeps these in its config file, keyed by registry name, e.g.
///
/// ```toml
/// [registries.default]
/// index = "https://plugins.example.org/index/"
/// trust = ["RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryConfig {
    /// The index location: a directory path, a `file://` URL or an `http(s)://` URL.
    pub index: String,
    /// The minisign public keys trusted to sign its archives (base64 key lines or whole `.pub`
    /// files).
    #[serde(default)]
    pub trust: Vec<String>,
}

impl RegistryConfig {
    /// Checks that `name` can name a registry and that the location and every key parse, so
    /// `registry add` can refuse a bad entry before it is saved.
    pub fn check(&self, name: &str) -> Result<()> {
        check_registry_name(name)?;
        Location::parse(name, &self.index)?;
        let keys = TrustedKeys::parse(&self.trust)?;
        if keys.is_empty() {
            return Err(ErrorKind::RegistryConfig {
                registry: name.to_string(),
                message: "no trusted key is given; archives could not be verified".to_string(),
            }
            .into());
        }
        Ok(())
    }
}

fn check_registry_name(name: &str) -> Result<()> {
    // The name is a directory name in the cache.
    if launcher_sdk::is_identifier(name) {
        Ok(())
    } else {
        Err(ErrorKind::RegistryConfig {
            registry: name.to_string(),
            message: "a registry name is lowercase letters, digits and dashes".to_string(),
        }
        .into())
    }
}

#[derive(Debug, Clone)]
enum Location {
    Dir(PathBuf),
    Http(Url),
}

impl Location {
    fn parse(registry: &str, index: &str) -> Result<Location> {
        let invalid = |message: String| {
            ErrorKind::RegistryConfig {
                registry: registry.to_string(),
                message,
            }
            .into()
        };
        let lower = index.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let mut url =
                Url::parse(index).map_err(|e| invalid(format!("`{index}` is not a URL: {e}")))?;
            // Relative paths resolve against a directory, not a file.
            if !url.path().ends_with('/') {
                url.set_path(&format!("{}/", url.path()));
            }
            Ok(Location::Http(url))
        } else if lower.starts_with("file://") {
            let url =
                Url::parse(index).map_err(|e| invalid(format!("`{index}` is not a URL: {e}")))?;
            let path = url
                .to_file_path()
                .map_err(|()| invalid(format!("`{index}` is not a local file URL")))?;
            Ok(Location::Dir(path))
        } else if index.contains("://") {
            Err(invalid(format!(
                "`{index}` is neither a path nor a file://, http:// or https:// URL"
            )))
        } else {
            Ok(Location::Dir(PathBuf::from(index)))
        }
    }
}

/// An open registry: its index files and archives.
///
/// Its methods block (HTTP runs on a runtime of its own), so call them from plain threads, not
/// from inside an async runtime.
#[derive(Debug)]
pub struct Registry {
    name: String,
    config: RegistryConfig,
    location: Location,
    keys: TrustedKeys,
    cache: PathBuf,
    archive_cache: PathBuf,
    memory: Memory,
    offline: bool,
    now: SystemTime,
    limits: DownloadLimits,
    http: OnceLock<Http>,
    index_config: OnceLock<IndexConfig>,
    /// The verified statement once loaded (`Some(None)`: a local registry without one).
    statement: Mutex<Option<Option<Arc<Statement>>>>,
    warnings: Mutex<Vec<String>>,
}

impl Registry {
    /// Opens registry `name`, caching its index under `store`'s cache. Offline, only the cache
    /// is read (for HTTP registries) and archives cannot be downloaded from HTTP.
    pub fn open(
        name: &str,
        config: &RegistryConfig,
        store: &Store,
        offline: bool,
    ) -> Result<Registry> {
        check_registry_name(name)?;
        Ok(Registry {
            name: name.to_string(),
            location: Location::parse(name, &config.index)?,
            keys: TrustedKeys::parse(&config.trust)?,
            config: config.clone(),
            cache: store.index_cache_dir().join(name),
            archive_cache: store.archive_cache_dir(),
            memory: Memory::new(store.home(), name),
            offline,
            now: SystemTime::now(),
            limits: DownloadLimits::default(),
            http: OnceLock::new(),
            index_config: OnceLock::new(),
            statement: Mutex::new(None),
            warnings: Mutex::new(Vec::new()),
        })
    }

    /// Sets the time freshness statements are checked against (the system clock by default).
    pub fn with_clock(mut self, now: SystemTime) -> Registry {
        self.now = now;
        self
    }

    /// Sets the download limits.
    pub fn with_limits(mut self, limits: DownloadLimits) -> Registry {
        self.limits = limits;
        self
    }

    /// Returns whether the registry is served over HTTP(S), rather than a local directory.
    pub fn is_remote(&self) -> bool {
        matches!(self.location, Location::Http(_))
    }

    /// Returns (and forgets) the warnings gathered while reading the registry, such as a local
    /// registry without a freshness statement.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn warn(&self, warning: String) {
        let mut warnings = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }

    /// Returns the registry's verified freshness statement, fetched once; `None` for a local
    /// registry that has none (with a warning).
    pub fn statement(&self) -> Result<Option<Arc<Statement>>> {
        let loaded = self
            .statement
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match loaded {
            Some(statement) => Ok(statement),
            None => self.load_statement(),
        }
    }

    /// Fetches and verifies the freshness statement (again).
    fn load_statement(&self) -> Result<Option<Arc<Statement>>> {
        let refuse = |message: String| -> Error {
            ErrorKind::Freshness {
                registry: self.name.clone(),
                message,
            }
            .into()
        };
        let loaded = match self.fetch_raw(STATEMENT_FILE)? {
            None if self.is_remote() => {
                return Err(refuse(format!(
                    "it has no signed freshness statement ({STATEMENT_FILE}), which a registry \
                     served over HTTP(S) must have; its publisher makes one with `launcher \
                     registry refresh-signature`"
                )));
            }
            None => {
                self.warn(format!(
                    "registry `{}` has no signed freshness statement ({STATEMENT_FILE}), so an \
                     old copy of it cannot be told from the current one; its publisher makes \
                     one with `launcher registry refresh-signature`",
                    self.name
                ));
                None
            }
            Some(text) => {
                let sig = self.fetch_raw(SIGNATURE_FILE)?.ok_or_else(|| {
                    refuse(format!("its {STATEMENT_FILE} has no {SIGNATURE_FILE}"))
                })?;
                let statement = freshness::verify(&self.name, &self.keys, &text, &sig)?;
                if statement.expires.is_none() && self.is_remote() {
                    return Err(refuse(
                        "its freshness statement never expires, which only a local registry \
                         may do; its publisher must re-sign it with an expiry"
                            .to_string(),
                    ));
                }
                statement.check_expiry(&self.name, self.now)?;
                self.memory.check_and_remember(
                    &self.name,
                    &self.config.index,
                    &statement,
                    &text,
                )?;
                Some(Arc::new(statement))
            }
        };
        *self.statement.lock().unwrap_or_else(|e| e.into_inner()) = Some(loaded.clone());
        Ok(loaded)
    }

    /// Returns the registry's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the registry's configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Returns the keys trusted to sign this registry's archives.
    pub fn keys(&self) -> &TrustedKeys {
        &self.keys
    }

    /// Returns the registry's `config.json`.
    pub fn index_config(&self) -> Result<&IndexConfig> {
        if let Some(config) = self.index_config.get() {
            return Ok(config);
        }
        let text = self
            .fetch(CONFIG_FILE)?
            .ok_or_else(|| ErrorKind::RegistryConfig {
                registry: self.name.clone(),
                message: format!(
                    "it has no {CONFIG_FILE} at `{}`",
                    self.describe(CONFIG_FILE)
                ),
            })?;
        let config: IndexConfig =
            serde_json::from_str(&text).map_err(|e| ErrorKind::InvalidIndex {
                location: self.describe(CONFIG_FILE),
                message: e.to_string(),
            })?;
        Ok(self.index_config.get_or_init(|| config))
    }

    /// Returns the published versions of `name`, or `None` if the registry has no such plugin.
    pub fn versions(&self, name: &str) -> Result<Option<IndexFile>> {
        let Some(path) = index_path(name) else {
            return Ok(None);
        };
        Ok(self
            .fetch(&path)?
            .map(|text| IndexFile::parse(&text, Some(name))))
    }

    /// Returns every line of every plugin, from the registry's catalog file.
    pub fn catalog(&self) -> Result<IndexFile> {
        Ok(IndexFile::parse(&self.catalog_text()?, None))
    }

    /// Returns the text of the registry's catalog file.
    pub(crate) fn catalog_text(&self) -> Result<String> {
        let text = self
            .fetch(CATALOG_FILE)?
            .ok_or_else(|| ErrorKind::RegistryConfig {
                registry: self.name.clone(),
                message: format!(
                    "it has no {CATALOG_FILE} at `{}`, which search needs",
                    self.describe(CATALOG_FILE)
                ),
            })?;
        Ok(text)
    }

    /// Returns what identifies the catalog's current contents without reading them, for caches
    /// derived from it, and the catalog's text when finding that out meant reading it anyway.
    ///
    /// The identity is the metadata of the file the text comes from: the registry's own file for
    /// a local registry, the cached copy (refreshed first, as [`Registry::catalog`] would) for an
    /// HTTP one. Files are replaced by rename when they change, so a new version has a new inode
    /// and change time even when its size and modification time happen to match.
    pub(crate) fn catalog_stamp(&self) -> Result<(String, Option<String>)> {
        let (path, text) = match &self.location {
            Location::Dir(root) => (root.join(CATALOG_FILE), None),
            Location::Http(_) => {
                let text = self.catalog_text()?;
                (self.cache.join(CATALOG_FILE), Some(text))
            }
        };
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            // Missing: let catalog_text say so, as search always has.
            Err(e) if e.kind() == io::ErrorKind::NotFound && text.is_none() => {
                return self.catalog_text().map(|t| (String::new(), Some(t)));
            }
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let stamp = file_identity(&meta);
        Ok((stamp, text))
    }

    /// For a local registry, identifies its freshness statement and signature files as they
    /// are now (as [`catalog_stamp`](Self::catalog_stamp) does the catalog), without reading
    /// them; `None` for an HTTP registry or a local one without both files. A cache may then
    /// stand for a statement it saw verified as long as these files are the same ones.
    pub(crate) fn statement_files_stamp(&self) -> Option<String> {
        let Location::Dir(root) = &self.location else {
            return None;
        };
        let mut stamp = String::new();
        for file in [STATEMENT_FILE, SIGNATURE_FILE] {
            let meta = fs::metadata(root.join(file)).ok()?;
            stamp.push_str(&file_identity(&meta));
            stamp.push(';');
        }
        Some(stamp)
    }

    /// Returns whether a statement verified before, issued at `issued` and expiring at
    /// `expires`, still stands now: not expired by this registry's clock, and no newer one
    /// seen from this registry since.
    pub(crate) fn still_fresh(&self, issued: u64, expires: Option<u64>) -> bool {
        let now = freshness::seconds(self.now);
        expires.is_none_or(|e| now < e)
            && self
                .memory
                .newest_issued(&self.config.index)
                .is_none_or(|newest| newest <= issued)
    }

    /// Returns the directory this registry's cached files live in.
    pub(crate) fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// Returns where an index file lives, for messages.
    fn describe(&self, relative: &str) -> String {
        match &self.location {
            Location::Dir(root) => root.join(relative).display().to_string(),
            Location::Http(base) => base
                .join(relative)
                .map_or_else(|_| format!("{base}{relative}"), |u| u.to_string()),
        }
    }

    /// Returns an index file's text, or `None` if it does not exist, checked against the
    /// freshness statement.
    fn fetch(&self, relative: &str) -> Result<Option<String>> {
        let mut statement = self.statement()?;
        let mut retried = false;
        loop {
            let text = self.fetch_raw(relative)?;
            let Some(current) = &statement else {
                return Ok(text);
            };
            let problem = match (current.digest(relative), &text) {
                (None, None) => return Ok(None),
                (Some(digest), Some(body)) if freshness::sha256(body.as_bytes()) == digest => {
                    return Ok(text);
                }
                (Some(_), Some(_)) => {
                    "does not match the digest in the registry's signed freshness statement \
                     (an old or altered copy)"
                }
                (Some(_), None) => "is missing, though the signed freshness statement lists it",
                (None, Some(_)) => "is not covered by the registry's signed freshness statement",
            };
            // The registry may have been published to since the statement was read: read both
            // again, once (the newer statement must still not be older than the last).
            if !retried && !self.offline {
                retried = true;
                statement = self.load_statement()?;
                continue;
            }
            return Err(ErrorKind::Freshness {
                registry: self.name.clone(),
                message: format!("`{}` {problem}", self.describe(relative)),
            }
            .into());
        }
    }

    /// Returns a file's text, or `None` if it does not exist, unchecked.
    fn fetch_raw(&self, relative: &str) -> Result<Option<String>> {
        match &self.location {
            Location::Dir(root) => {
                let path = root.join(relative);
                match fs::read_to_string(&path) {
                    Ok(text) => Ok(Some(text)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io("read", &path, e)),
                }
            }
            Location::Http(base) => {
                let url = base.join(relative).map_err(|e| ErrorKind::InvalidIndex {
                    location: format!("{base}{relative}"),
                    message: e.to_string(),
                })?;
                self.fetch_cached(&url, &self.cache.join(relative))
            }
        }
    }

    fn fetch_cached(&self, url: &Url, cache: &Path) -> Result<Option<String>> {
        let cached = read_cache(cache)?;
        if self.offline {
            return match cached {
                Some(entry) => Ok(Some(entry.body)),
                None => Err(ErrorKind::NotCached {
                    registry: self.name.clone(),
                    what: url.to_string(),
                }
                .into()),
            };
        }
        let http = self.http(url)?;
        let validators = cached
            .as_ref()
            .map(|c| (c.etag.clone(), c.last_modified.clone()));
        let response = http.get(url, validators)?;
        match response {
            Fetched::NotModified => match cached {
                Some(entry) => Ok(Some(entry.body)),
                // Only sent validators come back as 304, so the cache was there a moment ago;
                // if it vanished, ask again without them.
                None => match http.get(url, None)? {
                    Fetched::Body { text, .. } => Ok(Some(text)),
                    _ => Ok(None),
                },
            },
            Fetched::Missing => {
                match fs::remove_file(cache) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("remove", cache, e)),
                }
                Ok(None)
            }
            Fetched::Body {
                text,
                etag,
                last_modified,
            } => {
                write_cache(
                    cache,
                    &CacheEntry {
                        etag,
                        last_modified,
                        body: text.clone(),
                    },
                )?;
                Ok(Some(text))
            }
        }
    }

    fn http(&self, url: &Url) -> Result<&Http> {
        if let Some(http) = self.http.get() {
            return Ok(http);
        }
        let http = Http::new(url)?;
        Ok(self.http.get_or_init(|| http))
    }

    /// Streams the archive of `name` `version` for `target` into `dest` (a new file), capped at
    /// `size` bytes and the registry's deadline; returns its sha256. The size check is exact:
    /// fewer bytes is an error too. A size above the limit or the free space is refused before
    /// anything is written.
    pub(crate) fn download(
        &self,
        name: &str,
        version: &Version,
        target: &str,
        size: u64,
        dest: &Path,
        reporter: &dyn Reporter,
    ) -> Result<String> {
        let refuse = |message: String| -> Error {
            ErrorKind::DownloadRefused {
                name: name.to_string(),
                version: version.clone(),
                declared: size,
                message,
            }
            .into()
        };
        if size > self.limits.max_size {
            return Err(refuse(format!(
                "more than the {} bytes this launcher accepts (LAUNCHER_MAX_DOWNLOAD sets the \
                 limit)",
                self.limits.max_size
            )));
        }
        let dir = atomic::parent(dest);
        if let Some(free) = free_space(dir)
            && size > free
        {
            return Err(refuse(format!(
                "more than the {free} bytes free in `{}`",
                dir.display()
            )));
        }
        let template = self.index_config()?;
        let location = template
            .archive_location(name, version, target)
            .map_err(|message| ErrorKind::InvalidIndex {
                location: self.describe(CONFIG_FILE),
                message,
            })?;
        let source = self.archive_source(name, &location)?;
        // Opened before the staging file exists, so a refused source leaves nothing behind.
        let mut file = match &source {
            ArchiveSource::File(path) => Some(match open_regular(path) {
                Ok(file) => file,
                Err(Some(e)) => return Err(Error::io("open", path, e)),
                Err(None) => {
                    return Err(ErrorKind::RefusedLocation {
                        registry: self.name.clone(),
                        name: name.to_string(),
                        location: location.clone(),
                        message: "it is not a regular file".to_string(),
                    }
                    .into());
                }
            }),
            ArchiveSource::Url(url) if self.offline => {
                return Err(ErrorKind::NotCached {
                    registry: self.name.clone(),
                    what: url.to_string(),
                }
                .into());
            }
            ArchiveSource::Url(_) => None,
        };
        let out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .map_err(|e| Error::io("create", dest, e))?;
        let mut sink = Sink {
            out,
            dest,
            hasher: Sha256::new(),
            received: 0,
            declared: size,
            name,
            version,
            reporter,
        };
        reporter.download_started(name, version, size);
        match (&source, file.as_mut()) {
            (ArchiveSource::File(path), Some(file)) => {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match file.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(Error::io("read", path, e)),
                    };
                    sink.push(&buf[..n])?;
                }
            }
            (ArchiveSource::Url(url), _) => {
                let deadline = self.limits.deadline(size);
                self.http(url)?.download(url, &mut sink, deadline)?;
            }
            (ArchiveSource::File(_), None) => unreachable!("a file source is opened above"),
        }
        let sum = sink.finish()?;
        reporter.download_finished(name);
        Ok(sum)
    }

    /// Returns where a verified archive with this sha256 is kept, for registries whose
    /// archives are worth keeping (remote ones); `None` for a sha256 that is not 64 hex digits
    /// (the index is unsigned: it must not pick a path).
    fn archive_cache_path(&self, sha256: &str) -> Option<PathBuf> {
        let plain = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        (self.is_remote() && plain).then(|| {
            self.archive_cache
                .join(format!("{}.tar.gz", sha256.to_ascii_lowercase()))
        })
    }

    /// Links (or copies) the cached archive with this sha256 to `dest`; returns whether there
    /// was one. The caller verifies it as if it had been downloaded.
    pub(crate) fn cached_archive(&self, sha256: &str, dest: &Path) -> bool {
        let Some(cached) = self.archive_cache_path(sha256) else {
            return false;
        };
        if !cached.is_file() {
            return false;
        }
        let linked = fs::hard_link(&cached, dest).is_ok() || fs::copy(&cached, dest).is_ok();
        if linked {
            // Touched, so eviction takes the archives used least recently.
            let _ = File::open(&cached).and_then(|f| f.set_modified(SystemTime::now()));
        }
        linked
    }

    /// Keeps a verified archive in the cache, then trims the cache to its limit. Best effort: a
    /// cache that cannot be written only costs a later download.
    pub(crate) fn keep_archive(&self, archive: &Path, sha256: &str) {
        if self.limits.cache_size == 0 {
            return;
        }
        let Some(cached) = self.archive_cache_path(sha256) else {
            return;
        };
        if cached.is_file() || fs::create_dir_all(&self.archive_cache).is_err() {
            return;
        }
        let temp = self
            .archive_cache
            .join(format!(".{}.tmp", crate::store::unique()));
        let copied = fs::hard_link(archive, &temp).is_ok() || fs::copy(archive, &temp).is_ok();
        if copied && fs::rename(&temp, &cached).is_err() {
            let _ = fs::remove_file(&temp);
        }
        trim_cache(&self.archive_cache, self.limits.cache_size);
    }

    fn archive_source(&self, name: &str, location: &str) -> Result<ArchiveSource> {
        let lower = location.to_ascii_lowercase();
        let invalid = |message: String| {
            ErrorKind::InvalidIndex {
                location: self.describe(CONFIG_FILE),
                message,
            }
            .into()
        };
        let refused = |message: &str| -> Error {
            ErrorKind::RefusedLocation {
                registry: self.name.clone(),
                name: name.to_string(),
                location: location.to_string(),
                message: message.to_string(),
            }
            .into()
        };
        let remote = self.is_remote();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            Url::parse(location)
                .map(ArchiveSource::Url)
                .map_err(|e| invalid(format!("`{location}` is not a URL: {e}")))
        } else if lower.starts_with("file://") {
            if remote {
                return Err(refused(
                    "a registry served over HTTP(S) may download only over HTTP(S)",
                ));
            }
            Url::parse(location)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .map(ArchiveSource::File)
                .ok_or_else(|| invalid(format!("`{location}` is not a local file URL")))
        } else if location.contains("://") {
            Err(refused(
                "only http://, https:// and (for a local registry) file:// are allowed",
            ))
        } else {
            match &self.location {
                Location::Dir(root) => Ok(ArchiveSource::File(root.join(location))),
                Location::Http(base) => match base.join(location) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => {
                        Ok(ArchiveSource::Url(url))
                    }
                    Ok(_) => Err(refused(
                        "a registry served over HTTP(S) may download only over HTTP(S)",
                    )),
                    Err(e) => Err(invalid(format!("`{location}`: {e}"))),
                },
            }
        }
    }
}

/// Opens a local archive for reading; `Err(None)` when it is not a regular file. The open does
/// not block (a FIFO would wait for a writer forever), and the check is made on the opened
/// file, so nothing can be swapped in between.
fn open_regular(path: &Path) -> std::result::Result<File, Option<io::Error>> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = options.open(path).map_err(Some)?;
    if !file.metadata().map_err(Some)?.is_file() {
        return Err(None);
    }
    Ok(file)
}

/// Returns the bytes available to this user on the file system holding `dir`, if known.
fn free_space(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let stat = rustix::fs::statvfs(dir).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// Removes the least recently used archives until the cache holds at most `limit` bytes.
fn trim_cache(dir: &Path, limit: u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            meta.is_file().then(|| {
                (
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    meta.len(),
                    e.path(),
                )
            })
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= limit {
            break;
        }
        if fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
}

enum ArchiveSource {
    File(PathBuf),
    Url(Url),
}

/// Where downloaded bytes go: the staging file, hashed and counted as they arrive.
struct Sink<'a> {
    out: File,
    dest: &'a Path,
    hasher: Sha256,
    received: u64,
    declared: u64,
    name: &'a str,
    version: &'a Version,
    reporter: &'a dyn Reporter,
}

impl Sink<'_> {
    fn push(&mut self, bytes: &[u8]) -> Result<()> {
        if self.received + bytes.len() as u64 > self.declared {
            return Err(self.too_large());
        }
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io("write", self.dest, e))?;
        self.hasher.update(bytes);
        self.received += bytes.len() as u64;
        self.reporter.download_progress(self.name, self.received);
        Ok(())
    }

    fn too_large(&self) -> Error {
        ErrorKind::DownloadTooLarge {
            name: self.name.to_string(),
            version: self.version.clone(),
            declared: self.declared,
        }
        .into()
    }

    fn truncated(&self) -> Error {
        ErrorKind::DownloadTruncated {
            name: self.name.to_string(),
            version: self.version.clone(),
            declared: self.declared,
            received: self.received,
        }
        .into()
    }

    fn finish(self) -> Result<String> {
        if self.received < self.declared {
            return Err(self.truncated());
        }
        self.out
            .sync_all()
            .map_err(|e| Error::io("write", self.dest, e))?;
        Ok(hex(&self.hasher.finalize()))
    }
}

/// A blocking face over reqwest: one current-thread runtime per registry, so no thread runs in
/// the background and the library stays synchronous like the rest of the store.
#[derive(Debug)]
struct Http {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

enum Fetched {
    Body {
        text: String,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    NotModified,
    Missing,
}

impl Http {
    fn new(url: &Url) -> Result<Http> {
        static PROVIDER: Once = Once::new();
        PROVIDER.call_once(|| {
            // Fails only if the process already chose a provider, which then serves as well.
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ErrorKind::Network {
                url: url.to_string(),
                source: Box::new(e),
            })?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("launcher/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ErrorKind::Network {
                url: url.to_string(),
                source: Box::new(e),
            })?;
        Ok(Http { client, runtime })
    }

    fn get(
        &self,
        url: &Url,
        validators: Option<(Option<String>, Option<String>)>,
    ) -> Result<Fetched> {
        let network = |e: reqwest::Error| -> Error {
            ErrorKind::Network {
                url: url.to_string(),
                source: Box::new(e),
            }
            .into()
        };
        self.runtime.block_on(async {
            let mut request = self.client.get(url.clone());
            if let Some((etag, last_modified)) = validators {
                if let Some(etag) = etag {
                    request = request.header(header::IF_NONE_MATCH, etag);
                }
                if let Some(date) = last_modified {
                    request = request.header(header::IF_MODIFIED_SINCE, date);
                }
            }
            let response = request.send().await.map_err(network)?;
            let status = response.status();
            if status == StatusCode::NOT_MODIFIED {
                return Ok(Fetched::NotModified);
            }
            if is_missing(status) {
                return Ok(Fetched::Missing);
            }
            if !status.is_success() {
                return Err(ErrorKind::HttpStatus {
                    url: url.to_string(),
                    status: status.as_u16(),
                }
                .into());
            }
            let header_text = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let etag = header_text(header::ETAG);
            let last_modified = header_text(header::LAST_MODIFIED);
            let too_large = || -> Error {
                ErrorKind::InvalidIndex {
                    location: url.to_string(),
                    message: format!("it is larger than {MAX_INDEX_FILE} bytes"),
                }
                .into()
            };
            if response
                .content_length()
                .is_some_and(|n| n > MAX_INDEX_FILE)
            {
                return Err(too_large());
            }
            let mut response = response;
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(network)? {
                if (bytes.len() + chunk.len()) as u64 > MAX_INDEX_FILE {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            let text = String::from_utf8(bytes).map_err(|_| ErrorKind::InvalidIndex {
                location: url.to_string(),
                message: "it is not UTF-8".to_string(),
            })?;
            Ok(Fetched::Body {
                text,
                etag,
                last_modified,
            })
        })
    }

    fn download(&self, url: &Url, sink: &mut Sink<'_>, deadline: Duration) -> Result<()> {
        let network = |e: reqwest::Error| -> Error {
            ErrorKind::Network {
                url: url.to_string(),
                source: Box::new(e),
            }
            .into()
        };
        let transfer = async {
            let mut response = self.client.get(url.clone()).send().await.map_err(network)?;
            let status = response.status();
            if !status.is_success() {
                return Err(ErrorKind::HttpStatus {
                    url: url.to_string(),
                    status: status.as_u16(),
                }
                .into());
            }
            if response.content_length().is_some_and(|n| n > sink.declared) {
                return Err(sink.too_large());
            }
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => sink.push(&chunk)?,
                    Ok(None) => return Ok(()),
                    // A connection cut short (or stalled past the read timeout) is reported as
                    // what it means for the user: the archive did not arrive whole.
                    Err(_) if sink.received < sink.declared => return Err(sink.truncated()),
                    Err(e) => return Err(network(e)),
                }
            }
        };
        // One deadline for the whole transfer: a per-read timeout alone lets a server that
        // trickles a byte now and then keep an install going for ever.
        let outcome = self
            .runtime
            .block_on(async { tokio::time::timeout(deadline, transfer).await });
        match outcome {
            Ok(result) => result,
            Err(_) => Err(ErrorKind::DownloadDeadline {
                name: sink.name.to_string(),
                version: sink.version.clone(),
                seconds: deadline.as_secs(),
                received: sink.received,
                declared: sink.declared,
            }
            .into()),
        }
    }
}

/// Identifies one version of a file that is replaced by rename when it changes: a new version
/// has a new inode and change time even when its size and modification time match.
fn file_identity(meta: &fs::Metadata) -> String {
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut stamp = format!("{} {}", meta.len(), crate::store::mtime_nanos(meta));
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        stamp.push_str(&format!(
            " {} {} {}.{}",
            meta.dev(),
            meta.ino(),
            meta.ctime(),
            meta.ctime_nsec()
        ));
    }
    stamp
}

fn is_missing(status: StatusCode) -> bool {
    matches!(status.as_u16(), 404 | 410 | 451)
}

struct CacheEntry {
    etag: Option<String>,
    last_modified: Option<String>,
    body: String,
}

fn read_cache(path: &Path) -> Result<Option<CacheEntry>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // A damaged cache entry is as good as none: the next fetch replaces it.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(None),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    // Without validators the header is empty and the text starts with the blank line.
    let (head, body) = match text.strip_prefix('\n') {
        Some(body) => ("", body),
        None => match text.split_once("\n\n") {
            Some(split) => split,
            None => return Ok(None),
        },
    };
    let mut entry = CacheEntry {
        etag: None,
        last_modified: None,
        body: body.to_string(),
    };
    for line in head.lines() {
        if let Some(value) = line.strip_prefix("etag: ") {
            entry.etag = Some(value.to_string());
        } else if let Some(value) = line.strip_prefix("last-modified: ") {
            entry.last_modified = Some(value.to_string());
        }
    }
    Ok(Some(entry))
}

fn write_cache(path: &Path, entry: &CacheEntry) -> Result<()> {
    let dir = atomic::parent(path);
    fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let mut text = String::new();
    // Validators are one-line header values; anything else is not worth sending back.
    for (name, value) in [
        ("etag", &entry.etag),
        ("last-modified", &entry.last_modified),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.contains('\n')) {
            text.push_str(&format!("{name}: {value}\n"));
        }
    }
    text.push('\n');
    text.push_str(&entry.body);
    atomic::write_file(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        assert!(matches!(
            Location::parse("r", "/srv/index").unwrap(),
            Location::Dir(p) if p == Path::new("/srv/index")
        ));
        assert!(matches!(
            Location::parse("r", "file:///srv/index").unwrap(),
            Location::Dir(p) if p == Path::new("/srv/index")
        ));
        match Location::parse("r", "https://plugins.example/index").unwrap() {
            Location::Http(url) => assert_eq!(url.as_str(), "https://plugins.example/index/"),
            other => panic!("{other:?}"),
        }
        assert!(Location::parse("r", "ftp://plugins.example/").is_err());
    }

    #[test]
    fn config_check_wants_a_good_name_and_a_key() {
        let config = RegistryConfig {
            index: "/srv/index".to_string(),
            trust: Vec::new(),
        };
        let err = config.check("default").unwrap_err().to_string();
        assert!(err.contains("no trusted key"), "{err}");
        assert!(config.check("Bad Name").is_err());
    }

    #[test]
    fn cache_entries_without_validators_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.jsonl");
        let entry = CacheEntry {
            etag: None,
            last_modified: None,
            body: "{\"v\":1}\n\n{\"v\":1}\n".to_string(),
        };
        write_cache(&path, &entry).unwrap();
        let read = read_cache(&path)
            .unwrap()
            .expect("readable without validators");
        assert_eq!((read.etag, read.last_modified), (None, None));
        assert_eq!(read.body, entry.body);
    }

    fn registry(index: &str) -> (tempfile::TempDir, Registry) {
        let home = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        let keys = crate::publish::KeyPair::generate(None).unwrap();
        let config = RegistryConfig {
            index: index.to_string(),
            trust: vec![keys.public_base64()],
        };
        let registry = Registry::open("r", &config, &store, false).unwrap();
        (home, registry)
    }

    #[test]
    fn http_registries_download_only_over_http() {
        let (_home, web) = registry("https://plugins.example/index/");
        let refused = |location: &str| match web.archive_source("echo", location) {
            Err(e) => matches!(e.kind(), ErrorKind::RefusedLocation { .. }),
            Ok(_) => false,
        };
        assert!(refused("file:///etc/passwd"));
        assert!(refused("FILE:///dev/zero"));
        assert!(refused("ftp://plugins.example/echo.tar.gz"));
        for fine in [
            "archives/echo.tar.gz",
            "//cdn.example/echo.tar.gz",
            "https://cdn.example/echo.tar.gz",
        ] {
            assert!(
                matches!(web.archive_source("echo", fine), Ok(ArchiveSource::Url(_))),
                "{fine}"
            );
        }

        let (_home, local) = registry("/srv/index");
        assert!(matches!(
            local.archive_source("echo", "file:///srv/archives/echo.tar.gz"),
            Ok(ArchiveSource::File(_))
        ));
        assert!(matches!(
            local.archive_source("echo", "archives/echo.tar.gz"),
            Ok(ArchiveSource::File(p)) if p == Path::new("/srv/index/archives/echo.tar.gz")
        ));
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_open_and_fifos_do_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.tar.gz");
        fs::write(&file, b"bytes").unwrap();
        assert!(open_regular(&file).is_ok());
        assert!(matches!(open_regular(Path::new("/dev/zero")), Err(None)));
        assert!(matches!(open_regular(dir.path()), Err(None)));
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(matches!(open_regular(&fifo), Err(None)));
        assert!(matches!(
            open_regular(&dir.path().join("missing")),
            Err(Some(_))
        ));
    }

    #[test]
    fn deadlines_scale_with_the_declared_size() {
        let limits = DownloadLimits {
            min_rate: 1000,
            grace: Duration::from_secs(10),
            ..DownloadLimits::default()
        };
        assert_eq!(limits.deadline(0), Duration::from_secs(10));
        assert_eq!(limits.deadline(60_000), Duration::from_secs(70));
    }

    #[test]
    fn the_archive_cache_keeps_the_most_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            let path = dir.path().join(name);
            fs::write(&path, [0u8; 100]).unwrap();
            let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + i as u64);
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(time)
                .unwrap();
        }
        trim_cache(dir.path(), 250);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["mid", "new"]);
    }

    #[test]
    fn cache_entries_round_trip_and_tolerate_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ec/ho/echo");
        let entry = CacheEntry {
            etag: Some("\"abc\"".to_string()),
            last_modified: None,
            body: "{\"v\":1}\n\n{\"v\":1}\n".to_string(),
        };
        write_cache(&path, &entry).unwrap();
        let read = read_cache(&path).unwrap().unwrap();
        assert_eq!(read.etag.as_deref(), Some("\"abc\""));
        assert_eq!(read.last_modified, None);
        assert_eq!(read.body, entry.body);
        fs::write(&path, "no header here").unwrap();
        assert!(read_cache(&path).unwrap().is_none());
    }
}
