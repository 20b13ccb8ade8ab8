//! Plugin discovery: which libraries exist, what their manifests say, which tools they give.
//!
//! Libraries are found in three places, in this order of precedence:
//! 1. the directories in `LAUNCHER_PLUGIN_PATH` (a developer's override);
//! 2. the plugin store under the launcher home (installed plugins, listed by the lockfile);
//! 3. the directory of the `launcher` executable itself (plugins built or shipped beside it).
//!
//! A library's file name is its identity: `liblauncher_plugin_<name>.so` (`.dylib`, or
//! `launcher_plugin_<name>.dll`). Store plugins carry their manifest in `plugin.toml`; other
//! libraries are probed once in a child process and their manifests cached in
//! `cache/manifests.json`, keyed by path, size and modification time, so listing and routing
//! never load a library after the first sight.
//!
//! A plugin whose tools depend on configuration (profiles in `config.toml`) is asked, in a
//! child process, to describe them; the answer is cached in `cache/described.json`, keyed on
//! the library's fingerprint and the request (the plugin's config tables), so nothing is
//! loaded again until the library or its configuration changes. A tool whose parameters
//! depend on arguments (a workflow file) is described the same way when a job needs it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use launcher_sdk::serde_json::{Map, Value};
use launcher_sdk::{DescribeRequest, Manifest, ToolSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::env;
use crate::home::{Config, Home};
use crate::loader;
use crate::owners::{Owners, Provenance};

/// Where a plugin was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Origin {
    /// A directory in `LAUNCHER_PLUGIN_PATH`.
    Path,
    /// The plugin store.
    Store,
    /// Beside the launcher executable.
    Bundled,
}

impl Origin {
    /// Says where a plugin was found, for messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Origin::Path => "on LAUNCHER_PLUGIN_PATH",
            Origin::Store => "installed",
            Origin::Bundled => "bundled",
        }
    }
}

/// One usable plugin library.
#[derive(Debug, Clone)]
pub(crate) struct Plugin {
    pub(crate) library: PathBuf,
    pub(crate) manifest: Manifest,
    pub(crate) origin: Origin,
    /// Where it came from, as the settings bound to it record it.
    pub(crate) provenance: Provenance,
}

/// One tool, with the plugin providing it.
#[derive(Debug, Clone)]
pub(crate) struct Tool {
    pub(crate) spec: ToolSpec,
    pub(crate) plugin: String,
    pub(crate) version: String,
    pub(crate) library: PathBuf,
    pub(crate) origin: Origin,
    pub(crate) provenance: Provenance,
    /// The order in which it was discovered; breaks ties in routing.
    pub(crate) rank: usize,
    /// Other plugins that declare a tool with this id and were passed over.
    pub(crate) shadows: Vec<String>,
}

/// Every plugin and tool found, and what was skipped along the way.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub(crate) plugins: Vec<Plugin>,
    pub(crate) tools: Vec<Tool>,
    /// Tools whose id an earlier plugin declared too, until [`Catalog::settle`] decides.
    contested: Vec<Tool>,
    /// One line per skipped library or entry, for `warning:` output.
    pub(crate) warnings: Vec<String>,
    /// What discovery did, for `-v`.
    pub(crate) notes: Vec<String>,
    /// Keeps the store's version directories in place while the catalog lives, so a library
    /// it names can still be loaded after another launcher replaced it. A command that changes
    /// the store should drop its catalog first: while held, even its own change leaves the
    /// replaced directory for a later one to remove.
    store_guard: launcher_registry::ReadGuard,
}

impl Catalog {
    /// Discovers every plugin for `home`, with the tools its configuration describes.
    pub(crate) fn discover(home: &Home, config: &Config) -> Catalog {
        let mut catalog = Catalog::default();
        let mut cache = ManifestCache::load(home);
        for dir in plugin_path_dirs() {
            catalog.scan_dir(&dir, Origin::Path, &mut cache);
        }
        catalog.add_store(home);
        if let Some(dir) = exe_dir() {
            catalog.scan_dir(&dir, Origin::Bundled, &mut cache);
        }
        for library in &cache.probed {
            catalog
                .notes
                .push(format!("probed {} in a child process", library.display()));
        }
        cache.save_if_changed();
        catalog.settle(&config.owners);
        if catalog.plugins.iter().any(|p| p.manifest.configured_tools) {
            let mut described = DescribeCache::load(home);
            catalog.add_configured_tools(config, &mut described);
            for library in &described.asked {
                catalog.notes.push(format!(
                    "asked {} to describe its configured tools, in a child process",
                    library.display()
                ));
            }
            described.save_if_changed();
        }
        let specs: Vec<&ToolSpec> = catalog.tools.iter().map(|t| &t.spec).collect();
        let unknown = config.unknown_keys(&specs);
        catalog.warnings.extend(unknown);
        catalog
    }

    /// Replaces the tools of plugins whose tools depend on configuration with the tools
    /// they describe for this configuration.
    fn add_configured_tools(&mut self, config: &Config, cache: &mut DescribeCache) {
        let configured: Vec<Plugin> = self
            .plugins
            .iter()
            .filter(|p| p.manifest.configured_tools)
            .cloned()
            .collect();
        for plugin in configured {
            let request = DescribeRequest {
                tool: None,
                config: plugin_config(&plugin.manifest.tools, config),
                ..Default::default()
            };
            let own: Vec<&Tool> = self
                .tools
                .iter()
                .filter(|t| t.plugin == plugin.manifest.name)
                .collect();
            let settings = || plugin_settings(&own, config);
            let tools = match cache.describe(&plugin.library, &request, settings) {
                Ok(tools) => tools,
                Err(reason) => {
                    self.warnings.push(format!(
                        "plugin `{}` could not describe its configured tools, so only its built-in ones are listed: {reason}",
                        plugin.manifest.name
                    ));
                    continue;
                }
            };
            if tools.is_empty() {
                continue;
            }
            self.tools.retain(|t| t.plugin != plugin.manifest.name);
            for mut spec in tools {
                self.settle_shared_settings(&mut spec, &plugin.manifest);
                if let Some(existing) = self.tool(&spec.id) {
                    self.warnings.push(format!(
                        "tool `{}` described by plugin `{}` is ignored: plugin `{}` provides a tool with that id",
                        spec.id, plugin.manifest.name, existing.plugin
                    ));
                    continue;
                }
                let rank = self.tools.len();
                self.tools.push(Tool {
                    spec,
                    plugin: plugin.manifest.name.clone(),
                    version: plugin.manifest.version.clone(),
                    library: plugin.library.clone(),
                    origin: plugin.origin,
                    provenance: plugin.provenance.clone(),
                    rank,
                    shadows: Vec::new(),
                });
            }
        }
    }

    /// Returns the catalog without its hold on the store's version directories, for a
    /// command that reads manifests only and then changes the store itself: its own change
    /// then removes what it replaces.
    pub(crate) fn unguarded(mut self) -> Catalog {
        self.store_guard = launcher_registry::ReadGuard::default();
        self
    }

    /// Returns the tool with id `id`.
    pub(crate) fn tool(&self, id: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.spec.id == id)
    }

    fn scan_dir(&mut self, dir: &Path, origin: Origin, cache: &mut ManifestCache) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            if origin == Origin::Path {
                self.warnings.push(format!(
                    "LAUNCHER_PLUGIN_PATH names {}, which cannot be read",
                    dir.display()
                ));
            }
            return;
        };
        let mut libraries: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| plugin_file_name(p).is_some())
            .collect();
        libraries.sort();
        for library in libraries {
            match cache.manifest(&library) {
                Ok(manifest) => self.add(Plugin {
                    provenance: match origin {
                        Origin::Bundled => Provenance::Bundled,
                        _ => Provenance::Local {
                            library: library.clone(),
                        },
                    },
                    library,
                    manifest,
                    origin,
                }),
                Err(reason) => self
                    .warnings
                    .push(format!("skipping {}: it {reason}", library.display())),
            }
        }
    }

    fn add_store(&mut self, home: &Home) {
        let lockfile = home.data_dir().join(launcher_registry::lockfile::LOCKFILE);
        if !lockfile.is_file() {
            return;
        }
        let store = match launcher_registry::Store::open(home.data_dir()) {
            Ok(store) => store,
            Err(err) => {
                self.warnings
                    .push(format!("cannot read the plugin store: {err}"));
                return;
            }
        };
        // The reader lock first, then the lockfile: what it names then stays in place.
        let guard = store.reader_guard();
        let stamp = std::fs::metadata(&lockfile).ok().map(|m| file_stamp(&m));
        let cache = StoreCache::path(home);
        let mut provenance = StoreProvenance::new(home);
        if let Some(cached) = stamp.as_deref().and_then(|s| StoreCache::read(&cache, s)) {
            let (entries, manifests): (Vec<_>, BTreeMap<_, _>) = cached
                .plugins
                .into_iter()
                .map(|(entry, manifest)| {
                    let name = entry.name.clone();
                    (entry, (name, manifest))
                })
                .unzip();
            let mut manifests = manifests;
            let read = store.read_recorded(guard, entries);
            self.store_guard = read.guard;
            self.warnings.extend(read.warnings);
            for plugin in read.plugins {
                if let Some(manifest) = manifests.remove(&plugin.entry.name) {
                    self.add(Plugin {
                        provenance: provenance.of(&plugin.entry),
                        library: plugin.library_path,
                        manifest,
                        origin: Origin::Store,
                    });
                }
            }
            return;
        }
        let launcher_registry::StoreRead {
            plugins,
            warnings,
            guard,
        } = match store.read() {
            Ok(read) => {
                drop(guard);
                read
            }
            Err(err) => {
                self.warnings
                    .push(format!("cannot read the plugin store: {err}"));
                return;
            }
        };
        self.store_guard = guard;
        // Only a store read without a complaint is remembered, so every complaint is repeated
        // until it is dealt with.
        let mut clean = warnings.is_empty();
        self.warnings.extend(warnings);
        let mut remembered = Vec::with_capacity(plugins.len());
        for plugin in plugins {
            match check_installed(&plugin) {
                Ok(manifest) => {
                    remembered.push((plugin.entry.clone(), manifest.clone()));
                    self.add(Plugin {
                        provenance: provenance.of(&plugin.entry),
                        library: plugin.library_path,
                        manifest,
                        origin: Origin::Store,
                    });
                }
                Err(reason) => {
                    clean = false;
                    self.warnings.push(format!(
                        "skipping installed plugin `{}` {}: {reason}",
                        plugin.entry.name, plugin.entry.version
                    ));
                }
            }
        }
        if clean && let Some(stamp) = stamp {
            StoreCache::write(&cache, stamp, remembered);
        }
    }

    /// Keeps `spec`'s [`ToolSpec::settings_of`] only when it names a tool `manifest`
    /// declares: settings are shared within a plugin, never taken from another's tool.
    fn settle_shared_settings(&mut self, spec: &mut ToolSpec, manifest: &Manifest) {
        let Some(shared) = spec.settings_of.take() else {
            return;
        };
        if manifest
            .tools
            .iter()
            .any(|t| t.id == shared && t.id != spec.id)
        {
            spec.settings_of = Some(shared);
        } else {
            self.warnings.push(format!(
                "tool `{}` of plugin `{}` asks for the settings of `{shared}`, which is not another tool of the plugin; it gets only its own",
                spec.id, manifest.name
            ));
        }
    }

    fn add(&mut self, plugin: Plugin) {
        if let Some(existing) = self
            .plugins
            .iter()
            .find(|p| p.manifest.name == plugin.manifest.name)
        {
            self.notes.push(format!(
                "plugin `{}` at {} is shadowed by the one at {}",
                plugin.manifest.name,
                plugin.library.display(),
                existing.library.display()
            ));
            return;
        }
        for spec in &plugin.manifest.tools {
            let mut spec = spec.clone();
            self.settle_shared_settings(&mut spec, &plugin.manifest);
            let tool = Tool {
                spec,
                plugin: plugin.manifest.name.clone(),
                version: plugin.manifest.version.clone(),
                library: plugin.library.clone(),
                origin: plugin.origin,
                provenance: plugin.provenance.clone(),
                rank: self.tools.len(),
                shadows: Vec::new(),
            };
            if self.tool(&tool.spec.id).is_some() {
                self.contested.push(tool);
            } else {
                self.tools.push(tool);
            }
        }
        self.plugins.push(plugin);
    }

    /// Decides who provides each tool id that several plugins declare: the plugin chosen by
    /// `install --replace`, else the first found (LAUNCHER_PLUGIN_PATH, then the store, then
    /// bundled plugins). Unless the user chose, every such case is a warning: a tool must
    /// never quietly move to another plugin.
    fn settle(&mut self, owners: &Owners) {
        for other in std::mem::take(&mut self.contested) {
            let id = other.spec.id.clone();
            let Some(i) = self.tools.iter().position(|t| t.spec.id == id) else {
                continue;
            };
            let chosen = owners.provider(&id);
            let ignored = if chosen == Some(other.plugin.as_str()) {
                let rank = self.tools[i].rank;
                let mut other = other;
                other.rank = rank;
                std::mem::replace(&mut self.tools[i], other)
            } else {
                other
            };
            let used = &mut self.tools[i];
            used.shadows.push(ignored.plugin.clone());
            if chosen == Some(used.plugin.as_str()) {
                self.notes.push(format!(
                    "tool `{id}` comes from plugin `{}`, chosen with `install --replace`; plugin `{}` ({}) declares it too",
                    used.plugin,
                    ignored.plugin,
                    ignored.origin.describe()
                ));
            } else {
                self.warnings.push(format!(
                    "tool `{id}` is declared by two plugins: `{}` ({}) is used and `{}` ({}) is ignored; uninstall the one you did not mean to have, or install it again with --replace to choose it",
                    used.plugin,
                    used.origin.describe(),
                    ignored.plugin,
                    ignored.origin.describe()
                ));
            }
        }
    }
}

/// Where installed plugins came from, as settings bound to them record it; the registries'
/// configuration (for their publisher keys) is read only if a plugin came from one.
struct StoreProvenance<'h> {
    home: &'h Home,
    registries: Option<Vec<crate::registries::Entry>>,
}

impl<'h> StoreProvenance<'h> {
    fn new(home: &'h Home) -> Self {
        StoreProvenance {
            home,
            registries: None,
        }
    }

    fn of(&mut self, entry: &launcher_registry::LockEntry) -> Provenance {
        match &entry.source {
            launcher_registry::Source::Registry { registry, index } => {
                let home = self.home;
                let registries = self.registries.get_or_insert_with(|| {
                    crate::registries::Registries::load(home)
                        .map(|r| r.entries)
                        .unwrap_or_default()
                });
                Provenance::Registry {
                    registry: registry.clone(),
                    index: index.clone(),
                    keys: registries
                        .iter()
                        .find(|r| &r.name == registry)
                        .map(|r| crate::owners::key_lines(&r.config.trust))
                        .unwrap_or_default(),
                }
            }
            launcher_registry::Source::Path { path } => Provenance::Local {
                library: path.clone(),
            },
        }
    }
}

/// Returns the manifest of an installed plugin from its `plugin.toml`, loading nothing. The
/// store checked its library against the lockfile already.
fn check_installed(plugin: &launcher_registry::InstalledPlugin) -> Result<Manifest, String> {
    let toml = plugin.plugin_toml().map_err(|e| e.to_string())?;
    if toml.manifest.name != plugin.entry.name {
        return Err(format!(
            "its plugin.toml names plugin `{}`",
            toml.manifest.name
        ));
    }
    loader::check_manifest(&toml.manifest)?;
    Ok(toml.manifest)
}

/// Identifies one version of a file that is only ever replaced by rename (the lockfile): a
/// replacement has a new inode and change time even when size and modification time match.
fn file_stamp(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        format!(
            "{} {mtime} {} {} {}.{}",
            meta.len(),
            meta.dev(),
            meta.ino(),
            meta.ctime(),
            meta.ctime_nsec()
        )
    }
    #[cfg(not(unix))]
    format!("{} {mtime}", meta.len())
}

/// The installed plugins as the last clean read of the store found them: lockfile entries and
/// the manifests of their `plugin.toml`, in one file (`cache/store.json`) keyed on the
/// lockfile's identity and this launcher's version.
///
/// Every change to the store rewrites the lockfile by rename, and a version directory never
/// changes once installed, so while the lockfile is the same file the answer is too; listing
/// 100 plugins then reads one file instead of the lockfile and 100 `plugin.toml`s.
#[derive(Serialize, Deserialize)]
struct StoreCache {
    key: String,
    plugins: Vec<(launcher_registry::LockEntry, Manifest)>,
}

impl StoreCache {
    fn path(home: &Home) -> PathBuf {
        home.cache_dir().join("store.json")
    }

    fn key(stamp: &str) -> String {
        format!(
            "store cache 1; launcher {}; plugins.lock {stamp}",
            env!("CARGO_PKG_VERSION")
        )
    }

    fn read(path: &Path, stamp: &str) -> Option<StoreCache> {
        let bytes = std::fs::read(path).ok()?;
        let cache: StoreCache = serde_json::from_slice(&bytes).ok()?;
        (cache.key == Self::key(stamp)).then_some(cache)
    }

    fn write(path: &Path, stamp: String, plugins: Vec<(launcher_registry::LockEntry, Manifest)>) {
        let cache = StoreCache {
            key: Self::key(&stamp),
            plugins,
        };
        // A cache that cannot be written only costs the next listing a full read.
        if let Ok(bytes) = serde_json::to_vec(&cache) {
            let _ = write_atomic(path, &bytes);
        }
    }
}

/// Returns the plugin name encoded in a library's file name, if it is a plugin library.
pub(crate) fn plugin_file_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let (prefix, suffix) = library_affixes();
    let stem = file.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (!stem.is_empty()).then(|| stem.replace('_', "-"))
}

/// The file name prefix and suffix of plugin libraries on this platform.
pub(crate) fn library_affixes() -> (&'static str, &'static str) {
    if cfg!(target_os = "windows") {
        ("launcher_plugin_", ".dll")
    } else if cfg!(target_os = "macos") {
        ("liblauncher_plugin_", ".dylib")
    } else {
        ("liblauncher_plugin_", ".so")
    }
}

fn plugin_path_dirs() -> Vec<PathBuf> {
    env::var_os(env::PLUGIN_PATH)
        .map(|value| {
            std::env::split_paths(&value)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn exe_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let exe = exe.canonicalize().unwrap_or(exe);
    exe.parent().map(Path::to_path_buf)
}

/// Identifies one version of a file cheaply: a changed library changes its size or mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Fingerprint {
    size: u64,
    mtime_ns: u128,
}

impl Fingerprint {
    fn of(path: &Path) -> Option<Fingerprint> {
        let meta = std::fs::metadata(path).ok()?;
        let mtime_ns = meta
            .modified()
            .ok()?
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_nanos();
        Some(Fingerprint {
            size: meta.len(),
            mtime_ns,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheEntry {
    fingerprint: Fingerprint,
    #[serde(flatten)]
    outcome: Outcome,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Manifest(Manifest),
    Refused(String),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    #[serde(default)]
    entries: BTreeMap<PathBuf, CacheEntry>,
}

/// Manifests of libraries outside the store, remembered between runs.
struct ManifestCache {
    path: PathBuf,
    /// Libraries probed during this discovery (not answered from the cache).
    probed: Vec<PathBuf>,
    file: CacheFile,
    changed: bool,
}

// 2: manifests of plugin ABI 2 (tools without a declared category).
const CACHE_VERSION: u32 = 2;

impl ManifestCache {
    fn load(home: &Home) -> ManifestCache {
        let path = home.cache_dir().join("manifests.json");
        let file = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
            .filter(|f| f.version == CACHE_VERSION)
            .unwrap_or(CacheFile {
                version: CACHE_VERSION,
                entries: BTreeMap::new(),
            });
        ManifestCache {
            path,
            probed: Vec::new(),
            file,
            changed: false,
        }
    }

    /// Returns the manifest of `library`, probing it if it is new or changed.
    fn manifest(&mut self, library: &Path) -> Result<Manifest, String> {
        let fingerprint = Fingerprint::of(library).ok_or_else(|| "cannot be read".to_string())?;
        if let Some(entry) = self.file.entries.get(library)
            && entry.fingerprint == fingerprint
        {
            return match &entry.outcome {
                Outcome::Manifest(m) => Ok(m.clone()),
                Outcome::Refused(reason) => Err(reason.clone()),
            };
        }
        let result = loader::probe(library);
        self.probed.push(library.to_path_buf());
        let outcome = match &result {
            Ok(m) => Outcome::Manifest(m.clone()),
            Err(reason) => Outcome::Refused(reason.clone()),
        };
        self.file.entries.insert(
            library.to_path_buf(),
            CacheEntry {
                fingerprint,
                outcome,
            },
        );
        self.changed = true;
        result
    }

    fn save_if_changed(&mut self) {
        if !self.changed {
            return;
        }
        self.file.entries.retain(|path, _| path.exists());
        // A cache that cannot be written only costs a probe next time.
        if let Ok(bytes) = serde_json::to_vec(&self.file) {
            let _ = write_atomic(&self.path, &bytes);
        }
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Returns the user's configuration of a plugin's tools for a describe request: the
/// `[tools.<id>]` tables of the tools it declares, as JSON, without secrets or the commands
/// that produce them.
pub(crate) fn plugin_config(tools: &[ToolSpec], config: &Config) -> Map<String, Value> {
    let mut out = Map::new();
    for tool in tools {
        let Some(table) = config.tools.get(&tool.id) else {
            continue;
        };
        let secret = |key: &str| tool.settings.iter().any(|s| s.secret && s.name == key);
        let table: Map<String, Value> = table
            .iter()
            .filter(|(key, _)| !key.ends_with("_command") && !secret(key))
            .filter_map(|(key, value)| Some((key.clone(), serde_json::to_value(value).ok()?)))
            .collect();
        out.insert(tool.id.clone(), Value::Object(table));
    }
    out
}

/// Returns `tool` as described for the values of the parameters it is described by (a
/// workflow file, a model name), from the cache or by asking its plugin in a child process.
pub(crate) fn describe_tool(
    home: &Home,
    config: &Config,
    tool: &Tool,
    args: Map<String, Value>,
) -> Result<ToolSpec, String> {
    let request = DescribeRequest {
        tool: Some(tool.spec.id.clone()),
        config: plugin_config(std::slice::from_ref(&tool.spec), config),
        args,
        ..Default::default()
    };
    let mut cache = DescribeCache::load(home);
    // Asked for one tool, for a job or its help: its settings as the job gets them, a
    // `key_command` run too.
    let settings = || {
        let mut settings = plugin_settings(&[tool], config);
        if let Some(slot) = settings.get_mut(&tool.spec.id)
            && let Ok(resolved) =
                crate::settings::resolve(&tool.spec, &[], config, &home.config_file())
        {
            *slot = resolved;
        }
        settings
    };
    let described = cache.describe(&tool.library, &request, settings);
    cache.save_if_changed();
    let mut spec = described?
        .into_iter()
        .find(|t| t.id == tool.spec.id)
        .ok_or_else(|| format!("did not describe tool `{}`", tool.spec.id))?;
    // Whose settings it shares was settled when the catalog was made.
    spec.settings_of.clone_from(&tool.spec.settings_of);
    Ok(spec)
}

/// Returns the settings of `tools` for a describe request: those at hand without running a
/// `key_command` (see [`crate::settings::at_hand`]), leaving out a tool whose settings are
/// bound to another plugin. A description that needs more fails, and a job says what is
/// missing.
fn plugin_settings(tools: &[&Tool], config: &Config) -> BTreeMap<String, launcher_sdk::Settings> {
    tools
        .iter()
        .filter(|tool| crate::owners::check_settings(tool, config).is_ok())
        .map(|tool| {
            (
                tool.spec.id.clone(),
                crate::settings::at_hand(&tool.spec, config),
            )
        })
        .collect()
}

/// Descriptions of configured tools, remembered between runs.
struct DescribeCache {
    path: PathBuf,
    entries: BTreeMap<String, Vec<ToolSpec>>,
    changed: bool,
    /// Libraries asked during this run (not answered from the cache).
    asked: Vec<PathBuf>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DescribeFile {
    version: u32,
    #[serde(default)]
    entries: BTreeMap<String, Vec<ToolSpec>>,
}

/// Entries kept at most; the oldest keys go first (they are a hash, so "oldest" is arbitrary,
/// which only costs a child process now and then).
const DESCRIBE_CACHE_ENTRIES: usize = 256;

impl DescribeCache {
    fn load(home: &Home) -> DescribeCache {
        let path = home.cache_dir().join("described.json");
        let entries = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<DescribeFile>(&bytes).ok())
            .filter(|f| f.version == CACHE_VERSION)
            .map(|f| f.entries)
            .unwrap_or_default();
        DescribeCache {
            path,
            entries,
            changed: false,
            asked: Vec::new(),
        }
    }

    /// Returns the tools `library` describes for `request`, asking it (with the tools'
    /// `settings`, resolved only then) when they are not cached.
    fn describe(
        &mut self,
        library: &Path,
        request: &DescribeRequest,
        settings: impl FnOnce() -> BTreeMap<String, launcher_sdk::Settings>,
    ) -> Result<Vec<ToolSpec>, String> {
        // The key leaves settings out: secrets never reach the cache, not even hashed.
        let key = describe_key(library, request).ok_or_else(|| "cannot be read".to_string())?;
        if let Some(tools) = self.entries.get(&key) {
            return Ok(tools.clone());
        }
        let request = DescribeRequest {
            settings: settings(),
            ..request.clone()
        };
        let tools = loader::describe(library, &request)?;
        self.asked.push(library.to_path_buf());
        while self.entries.len() >= DESCRIBE_CACHE_ENTRIES {
            let first = self.entries.keys().next().cloned().expect("not empty");
            self.entries.remove(&first);
        }
        self.entries.insert(key, tools.clone());
        self.changed = true;
        Ok(tools)
    }

    fn save_if_changed(&self) {
        if !self.changed {
            return;
        }
        let file = DescribeFile {
            version: CACHE_VERSION,
            entries: self.entries.clone(),
        };
        // A cache that cannot be written only costs a child process next time.
        if let Ok(bytes) = serde_json::to_vec(&file) {
            let _ = write_atomic(&self.path, &bytes);
        }
    }
}

/// Keys a description on everything it depends on: the library (path and fingerprint), the
/// request, and the fingerprint of every file the request names (a workflow file edited in
/// place must be described again).
fn describe_key(library: &Path, request: &DescribeRequest) -> Option<String> {
    let fingerprint = Fingerprint::of(library)?;
    let mut hasher = Sha256::new();
    hasher.update(library.to_string_lossy().as_bytes());
    hasher.update(serde_json::to_vec(&fingerprint).ok()?);
    hasher.update(serde_json::to_vec(request).ok()?);
    for value in request.args.values() {
        if let Some(path) = value.as_str().map(Path::new).filter(|p| p.is_absolute())
            && let Some(file) = Fingerprint::of(path)
        {
            hasher.update(serde_json::to_vec(&file).ok()?);
        }
    }
    Some(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(name: &str, tool: &str, origin: Origin) -> Plugin {
        Plugin {
            library: PathBuf::from(format!("/plugins/lib{name}.so")),
            manifest: Manifest::new(name, "0.1.0").tool(ToolSpec::new(tool, &["tts"])),
            origin,
            provenance: Provenance::Bundled,
        }
    }

    #[test]
    fn settings_are_shared_only_between_tools_of_one_plugin() {
        let mut catalog = Catalog::default();
        catalog.add(plugin("azure-tts", "azure-tts", Origin::Bundled));
        let mut greedy = plugin("greedy", "greedy", Origin::Store);
        greedy.manifest = Manifest::new("greedy", "0.1.0")
            .tool(ToolSpec::new("greedy", &["tts"]).settings_of("azure-tts"))
            .tool(ToolSpec::new("greedy-2", &["tts"]).settings_of("greedy"));
        catalog.add(greedy);
        // Another plugin's tool is refused, and said so; its own other tool is kept.
        assert_eq!(catalog.tool("greedy").unwrap().spec.settings_of, None);
        assert!(
            catalog.warnings.iter().any(|w| w.contains("`azure-tts`")),
            "{:?}",
            catalog.warnings
        );
        assert_eq!(
            catalog
                .tool("greedy-2")
                .unwrap()
                .spec
                .settings_of
                .as_deref(),
            Some("greedy")
        );
    }

    fn catalog(owners: &Owners) -> Catalog {
        let mut catalog = Catalog::default();
        catalog.add(plugin("azure-thief", "azure-tts", Origin::Store));
        catalog.add(plugin("azure-tts", "azure-tts", Origin::Bundled));
        catalog.settle(owners);
        catalog
    }

    #[test]
    fn a_shared_tool_id_goes_to_the_first_found_with_a_warning() {
        let catalog = catalog(&Owners::default());
        let tool = catalog.tool("azure-tts").unwrap();
        assert_eq!(tool.plugin, "azure-thief");
        assert_eq!(tool.shadows, ["azure-tts"]);
        assert_eq!(catalog.tools.len(), 1);
        assert_eq!(
            catalog.warnings,
            [
                "tool `azure-tts` is declared by two plugins: `azure-thief` (installed) is used and `azure-tts` (bundled) is ignored; uninstall the one you did not mean to have, or install it again with --replace to choose it"
            ]
        );
    }

    #[test]
    fn a_shared_tool_id_goes_to_the_plugin_chosen_with_replace_without_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owners.toml");
        Owners::load(&path)
            .unwrap()
            .update("azure-tts", |r| r.provider = Some("azure-tts".into()))
            .unwrap();
        let catalog = catalog(&Owners::load(&path).unwrap());
        let tool = catalog.tool("azure-tts").unwrap();
        assert_eq!(tool.plugin, "azure-tts");
        assert_eq!(tool.shadows, ["azure-thief"]);
        assert!(catalog.warnings.is_empty(), "{:?}", catalog.warnings);
        assert_eq!(catalog.notes.len(), 1);
    }
}
