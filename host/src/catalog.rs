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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use launcher_sdk::{Manifest, ToolSpec};
use serde::{Deserialize, Serialize};

use crate::env;
use crate::home::Home;
use crate::loader;

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

/// One usable plugin library.
#[derive(Debug, Clone)]
pub(crate) struct Plugin {
    pub(crate) library: PathBuf,
    pub(crate) manifest: Manifest,
    pub(crate) origin: Origin,
}

/// One tool, with the plugin providing it.
#[derive(Debug, Clone)]
pub(crate) struct Tool {
    pub(crate) spec: ToolSpec,
    pub(crate) plugin: String,
    pub(crate) version: String,
    pub(crate) library: PathBuf,
    pub(crate) origin: Origin,
    /// The order in which it was discovered; breaks ties in routing.
    pub(crate) rank: usize,
}

/// Every plugin and tool found, and what was skipped along the way.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub(crate) plugins: Vec<Plugin>,
    pub(crate) tools: Vec<Tool>,
    /// One line per skipped library or entry, for `warning:` output.
    pub(crate) warnings: Vec<String>,
    /// What discovery did, for `-v`.
    pub(crate) notes: Vec<String>,
}

impl Catalog {
    /// Discovers every plugin for `home`.
    pub(crate) fn discover(home: &Home) -> Catalog {
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
        catalog
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
        if !home
            .root
            .join(launcher_registry::lockfile::LOCKFILE)
            .is_file()
        {
            return;
        }
        let installed =
            launcher_registry::Store::open(&home.root).and_then(|store| store.installed());
        let (installed, warnings) = match installed {
            Ok(found) => found,
            Err(err) => {
                self.warnings
                    .push(format!("cannot read the plugin store: {err}"));
                return;
            }
        };
        self.warnings.extend(warnings);
        for plugin in installed {
            match check_installed(&plugin) {
                Ok(manifest) => self.add(Plugin {
                    library: plugin.library_path,
                    manifest,
                    origin: Origin::Store,
                }),
                Err(reason) => self.warnings.push(format!(
                    "skipping installed plugin `{}` {}: {reason}",
                    plugin.entry.name, plugin.entry.version
                )),
            }
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
            if let Some(existing) = self.tool(&spec.id) {
                self.warnings.push(format!(
                    "tool `{}` of plugin `{}` is ignored: plugin `{}` provides a tool with that id",
                    spec.id, plugin.manifest.name, existing.plugin
                ));
                continue;
            }
            let rank = self.tools.len();
            self.tools.push(Tool {
                spec: spec.clone(),
                plugin: plugin.manifest.name.clone(),
                version: plugin.manifest.version.clone(),
                library: plugin.library.clone(),
                origin: plugin.origin,
                rank,
            });
        }
        self.plugins.push(plugin);
    }
}

/// Returns the manifest of an installed plugin from its `plugin.toml`, loading nothing.
fn check_installed(plugin: &launcher_registry::InstalledPlugin) -> Result<Manifest, String> {
    if plugin.library_changed() {
        return Err(format!(
            "its library {} changed or vanished since it was installed; reinstall it",
            plugin.library_path.display()
        ));
    }
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

const CACHE_VERSION: u32 = 1;

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
