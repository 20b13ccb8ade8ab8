//! Installing from registries: `install`, `update`, `outdated` and `sync`.
//!
//! An install resolves a version ([`crate::resolve`]), streams its archive into staging while
//! hashing it and capping its size ([`Registry`]), checks the sha256 and the signature
//! ([`crate::verify`]), extracts it safely ([`crate::extract`]), checks its `plugin.toml` and
//! library against the index line, has the host validate the library in a child process, and
//! commits it to the store ([`StoreLock`]), whose lockfile rewrite is the moment it happens.

use std::fs;

use semver::{Version, VersionReq};

use crate::error::{Error, ErrorKind, Result};
use crate::extract::{Limits, extract};
use crate::index::{IndexFile, IndexLine};
use crate::lockfile::{LockEntry, Source};
use crate::plugin_toml::{PLUGIN_TOML, PluginToml};
use crate::report::{Reporter, Stage};
use crate::resolve::{HostInfo, PluginSpec, Request, ResolveError, resolve, suggestions};
use crate::source::Registry;
use crate::store::{InstalledPlugin, Store, StoreLock, Validate, check_manifest};
use crate::verify::sha256_file;

/// What installs need besides the store: the registries, the host, the validator, a reporter.
#[derive(Clone, Copy)]
pub struct InstallContext<'a> {
    /// The configured registries, in the order they are searched.
    pub registries: &'a [Registry],
    /// The running launcher.
    pub host: &'a HostInfo,
    /// The host's validator: loads a library in a child process and returns its manifest.
    pub validate: &'a Validate,
    /// Where progress goes.
    pub reporter: &'a dyn Reporter,
}

/// Options of `install`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallOptions {
    /// Search only this registry.
    pub registry: Option<String>,
    /// Allow a yanked version to be chosen.
    pub allow_yanked: bool,
    /// Install again even if the chosen version is already installed and intact.
    pub reinstall: bool,
}

/// What an install, update or sync did for one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOutcome {
    /// The plugin's entry now.
    pub entry: LockEntry,
    /// Its entry before, if it was installed.
    pub previous: Option<LockEntry>,
    /// Whether anything changed (false: that version was already installed and intact).
    pub changed: bool,
}

/// An installed plugin with a newer version available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outdated {
    /// The plugin.
    pub name: String,
    /// The registry it came from.
    pub registry: String,
    /// The installed version.
    pub installed: Version,
    /// The recorded requirement.
    pub requirement: String,
    /// The newest version within the requirement, if newer than the installed one.
    pub wanted: Option<Version>,
    /// The newest version that works with this launcher, regardless of the requirement, if
    /// newer than the installed one.
    pub latest: Option<Version>,
}

impl StoreLock<'_> {
    /// Installs `spec` from the first registry (or `options.registry`) that has it.
    pub fn install(
        &mut self,
        cx: &InstallContext<'_>,
        spec: &PluginSpec,
        options: &InstallOptions,
    ) -> Result<InstallOutcome> {
        let searched = select(cx.registries, options.registry.as_deref())?;
        let current = self.lockfile().get(&spec.name).cloned();
        // A plugin installed from a registry stays with it: a registry configured later
        // that offers the same name cannot take it over unless `--registry` names it.
        let recorded = current
            .as_ref()
            .and_then(from_registry)
            .filter(|_| options.registry.is_none());
        let mut order = searched.clone();
        order.sort_by_key(|r| Some(r.name()) != recorded);
        let mut found = None;
        let mut offering = Vec::new();
        for registry in &order {
            if found.is_none() {
                if let Some(file) = registry.versions(&spec.name)? {
                    found = Some((*registry, file));
                    offering.push(registry.name());
                }
            } else if let Ok(Some(_)) = registry.versions(&spec.name) {
                // Only to say that there was a choice; another registry's failure is not ours.
                offering.push(registry.name());
            }
        }
        let Some((registry, file)) = found else {
            return Err(no_such_plugin(&spec.name, &searched));
        };
        if offering.len() > 1 {
            let why = if recorded == Some(registry.name()) {
                "the registry it is installed from"
            } else {
                "the first of them in the order they were added"
            };
            cx.reporter.note(&format!(
                "`{}` is offered by registries {}; using `{}`, {why} (--registry chooses another)",
                spec.name,
                offering
                    .iter()
                    .map(|r| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                registry.name()
            ));
        }
        warn_skipped(cx.reporter, registry, &spec.name, &file);

        let pinned = current
            .as_ref()
            .filter(|e| from_registry(e) == Some(registry.name()))
            .map(|e| e.version.clone());
        let request = Request {
            name: &spec.name,
            requirement: spec.requirement.as_ref(),
            allow_yanked: options.allow_yanked,
            pinned: pinned.as_ref(),
        };
        let line = resolve(&file.lines, &request, cx.host).map_err(|e| named(e, registry))?;
        let requirement = spec.requirement_text();

        if let Some(current) = current.as_ref().filter(|_| !options.reinstall) {
            let artifact = &line.targets[&cx.host.target];
            let same = from_registry(current) == Some(registry.name())
                && current.version == line.vers
                && current.target == cx.host.target
                && current.archive_sha256.as_deref() == Some(artifact.sha256.as_str());
            if same && InstalledPlugin::new(self.store().home(), current.clone()).is_intact() {
                let mut entry = current.clone();
                if entry.requirement != requirement {
                    entry.requirement = requirement;
                    let mut next = self.lockfile().clone();
                    next.upsert(entry.clone());
                    self.write_lockfile(next)?;
                }
                return Ok(InstallOutcome {
                    entry,
                    previous: Some(current.clone()),
                    changed: false,
                });
            }
        }
        let entry = self.install_line(cx, registry, line, &requirement)?;
        Ok(InstallOutcome {
            entry,
            previous: current,
            changed: true,
        })
    }

    /// Updates `name`, or every plugin installed from a registry, to the newest version within
    /// its recorded requirement. Plugins are updated one by one; one failing does not stop the
    /// others, so each gets its own result.
    pub fn update(
        &mut self,
        cx: &InstallContext<'_>,
        name: Option<&str>,
    ) -> Result<Vec<(String, Result<InstallOutcome>)>> {
        let names: Vec<String> = match name {
            Some(name) => {
                let entry = self
                    .lockfile()
                    .get(name)
                    .ok_or_else(|| ErrorKind::NotInstalled {
                        name: name.to_string(),
                    })?;
                if let Source::Path { path } = &entry.source {
                    return Err(ErrorKind::LocalSource {
                        name: name.to_string(),
                        path: path.clone(),
                        message: "build it again and use `install --path`".to_string(),
                    }
                    .into());
                }
                vec![name.to_string()]
            }
            None => self
                .lockfile()
                .plugins
                .iter()
                .filter(|e| matches!(e.source, Source::Registry { .. }))
                .map(|e| e.name.clone())
                .collect(),
        };
        let mut results = Vec::new();
        for name in names {
            let result = self.update_one(cx, &name);
            results.push((name, result));
        }
        Ok(results)
    }

    fn update_one(&mut self, cx: &InstallContext<'_>, name: &str) -> Result<InstallOutcome> {
        let current =
            self.lockfile()
                .get(name)
                .cloned()
                .ok_or_else(|| ErrorKind::NotInstalled {
                    name: name.to_string(),
                })?;
        let (registry, file) = recorded_registry(cx.registries, &current)?;
        warn_skipped(cx.reporter, registry, name, &file);
        let requirement = parse_requirement(&current)?;
        let request = Request {
            name,
            requirement: Some(&requirement),
            allow_yanked: false,
            pinned: Some(&current.version),
        };
        let line = resolve(&file.lines, &request, cx.host).map_err(|e| named(e, registry))?;
        // Nothing newer: a damaged install of this version is still repaired.
        let repair = line.vers == current.version
            && !InstalledPlugin::new(self.store().home(), current.clone()).is_intact();
        if line.vers <= current.version && !repair {
            return Ok(InstallOutcome {
                entry: current.clone(),
                previous: Some(current),
                changed: false,
            });
        }
        let entry = self.install_line(cx, registry, line, &current.requirement)?;
        Ok(InstallOutcome {
            entry,
            previous: Some(current),
            changed: true,
        })
    }

    /// Installs exactly what the lockfile records, where it is not installed intact already:
    /// the same versions from the same registries (refusing an archive whose sha256 differs
    /// from the recorded one), and local libraries from their recorded paths if unchanged.
    /// Each plugin gets its own result.
    pub fn sync(
        &mut self,
        cx: &InstallContext<'_>,
    ) -> Result<Vec<(String, Result<InstallOutcome>)>> {
        let entries = self.lockfile().plugins.clone();
        let mut results = Vec::new();
        for entry in entries {
            let result = self.sync_one(cx, &entry);
            results.push((entry.name.clone(), result));
        }
        Ok(results)
    }

    fn sync_one(
        &mut self,
        cx: &InstallContext<'_>,
        recorded: &LockEntry,
    ) -> Result<InstallOutcome> {
        let unchanged = |entry: &LockEntry| InstallOutcome {
            entry: entry.clone(),
            previous: Some(entry.clone()),
            changed: false,
        };
        if recorded.target == cx.host.target
            && InstalledPlugin::new(self.store().home(), recorded.clone()).is_intact()
        {
            return Ok(unchanged(recorded));
        }
        let entry = match &recorded.source {
            Source::Path { path } => {
                let same = sha256_file(path).is_ok_and(|sum| sum == recorded.library_sha256);
                if !same {
                    return Err(ErrorKind::LocalSource {
                        name: recorded.name.clone(),
                        path: path.clone(),
                        message: "that library is gone or has changed; build it and use \
                                  `install --path` again"
                            .to_string(),
                    }
                    .into());
                }
                self.stage_library(path, &recorded.requirement, cx.validate, cx.reporter)?
            }
            Source::Registry { .. } => {
                let (registry, file) = recorded_registry(cx.registries, recorded)?;
                warn_skipped(cx.reporter, registry, &recorded.name, &file);
                let exact = VersionReq::parse(&format!("={}", recorded.version))
                    .expect("a version makes an exact requirement");
                let request = Request {
                    name: &recorded.name,
                    requirement: Some(&exact),
                    allow_yanked: true,
                    pinned: Some(&recorded.version),
                };
                let line =
                    resolve(&file.lines, &request, cx.host).map_err(|e| named(e, registry))?;
                let artifact = &line.targets[&cx.host.target];
                if let Some(expected) = &recorded.archive_sha256 {
                    // The same target must be the same bytes; another target has its own.
                    if recorded.target == cx.host.target && &artifact.sha256 != expected {
                        return Err(ErrorKind::ChecksumMismatch {
                            name: recorded.name.clone(),
                            version: recorded.version.clone(),
                            expected: expected.clone(),
                            actual: artifact.sha256.clone(),
                        }
                        .into());
                    }
                }
                self.install_line(cx, registry, line, &recorded.requirement)?
            }
        };
        Ok(InstallOutcome {
            entry,
            previous: Some(recorded.clone()),
            changed: true,
        })
    }

    /// Downloads, verifies, extracts, checks, validates and commits one index line.
    fn install_line(
        &mut self,
        cx: &InstallContext<'_>,
        registry: &Registry,
        line: &IndexLine,
        requirement: &str,
    ) -> Result<LockEntry> {
        let name = line.name.as_str();
        let version = &line.vers;
        let target = cx.host.target.as_str();
        let artifact = line
            .targets
            .get(target)
            .expect("resolution keeps only lines with a build for the host");

        let download = self.staging_dir("dl-")?;
        let archive = download
            .path()
            .join(format!("{name}-{version}-{target}.tar.gz"));
        let sum = registry.download(name, version, target, artifact.size, &archive, cx.reporter)?;

        cx.reporter.stage(name, version, Stage::Verifying);
        if !sum.eq_ignore_ascii_case(&artifact.sha256) {
            return Err(ErrorKind::ChecksumMismatch {
                name: name.to_string(),
                version: version.clone(),
                expected: artifact.sha256.clone(),
                actual: sum,
            }
            .into());
        }
        registry
            .keys()
            .verify(&archive, &artifact.sig, name, version, target)?;

        cx.reporter.stage(name, version, Stage::Extracting);
        let staged = self.staging_dir("new-")?;
        extract(&archive, staged.path(), &Limits::for_archive(artifact.size))?;
        drop(download);

        let mismatch = |message: String| {
            ErrorKind::PackageMismatch {
                name: name.to_string(),
                version: version.clone(),
                message,
            }
            .into()
        };
        let toml_path = staged.path().join(PLUGIN_TOML);
        if !toml_path.is_file() {
            return Err(mismatch(format!("the archive has no {PLUGIN_TOML}")));
        }
        let toml = PluginToml::read(&toml_path)?;
        check_field("name", name, &toml.manifest.name).map_err(mismatch)?;
        check_field("version", &version.to_string(), &toml.manifest.version).map_err(mismatch)?;
        check_field("abi", &line.abi.to_string(), &toml.manifest.abi.to_string())
            .map_err(mismatch)?;
        check_field("target", target, &toml.target).map_err(mismatch)?;
        let library = staged.path().join(&toml.library);
        if !library.is_file() {
            return Err(mismatch(format!(
                "the archive has no library `{}`",
                toml.library
            )));
        }
        let library_sha256 = sha256_file(&library)?;
        if !library_sha256.eq_ignore_ascii_case(&toml.library_sha256) {
            return Err(mismatch(format!(
                "{PLUGIN_TOML} gives the library's sha256 as {} but it is {library_sha256}",
                toml.library_sha256
            )));
        }

        cx.reporter.stage(name, version, Stage::Validating);
        let manifest = (cx.validate)(&library).map_err(|message| ErrorKind::Validation {
            library: library.clone(),
            message,
        })?;
        check_manifest(&manifest, &library, Some((name, version)))?;
        // The store keeps what the library says about itself, which routing then trusts.
        let toml = PluginToml { manifest, ..toml };
        toml.write(&toml_path)?;

        let meta = fs::metadata(&library).map_err(|e| Error::io("read", &library, e))?;
        let entry = LockEntry {
            dir: LockEntry::dir_for(name, version),
            name: name.to_string(),
            version: version.clone(),
            source: Source::Registry {
                registry: registry.name().to_string(),
                index: registry.config().index.clone(),
            },
            requirement: requirement.to_string(),
            target: target.to_string(),
            abi: line.abi,
            archive_sha256: Some(sum),
            library: toml.library.clone(),
            library_sha256,
            library_size: meta.len(),
            library_mtime: crate::store::mtime_nanos(&meta),
        };
        self.commit(staged, entry, cx.reporter)
    }
}

/// Lists the plugins installed from registries that have newer versions. Takes no lock.
pub fn outdated(store: &Store, registries: &[Registry], host: &HostInfo) -> Result<Vec<Outdated>> {
    let (lockfile, _) = store.read_lockfile()?;
    let mut out = Vec::new();
    for entry in &lockfile.plugins {
        let Some(registry_name) = from_registry(entry) else {
            continue;
        };
        let (_, file) = recorded_registry(registries, entry)?;
        let requirement = parse_requirement(entry)?;
        let newest = |requirement: Option<&VersionReq>| {
            let request = Request {
                name: &entry.name,
                requirement,
                allow_yanked: false,
                pinned: Some(&entry.version),
            };
            resolve(&file.lines, &request, host)
                .ok()
                .map(|l| l.vers.clone())
                .filter(|v| v > &entry.version)
        };
        let wanted = newest(Some(&requirement));
        let latest = newest(None);
        if wanted.is_some() || latest.is_some() {
            out.push(Outdated {
                name: entry.name.clone(),
                registry: registry_name.to_string(),
                installed: entry.version.clone(),
                requirement: entry.requirement.clone(),
                wanted,
                latest,
            });
        }
    }
    Ok(out)
}

fn select<'r>(registries: &'r [Registry], only: Option<&str>) -> Result<Vec<&'r Registry>> {
    match only {
        Some(name) => registries
            .iter()
            .find(|r| r.name() == name)
            .map(|r| vec![r])
            .ok_or_else(|| {
                ErrorKind::UnknownRegistry {
                    name: name.to_string(),
                }
                .into()
            }),
        None if registries.is_empty() => Err(ErrorKind::NoRegistries.into()),
        None => Ok(registries.iter().collect()),
    }
}

fn no_such_plugin(name: &str, searched: &[&Registry]) -> Error {
    // Suggestions are a courtesy: a registry without a catalog simply offers none.
    let mut known: Vec<String> = Vec::new();
    for registry in searched {
        if let Ok(catalog) = registry.catalog() {
            known.extend(catalog.lines.into_iter().map(|l| l.name));
        }
    }
    known.sort();
    known.dedup();
    ErrorKind::Resolve(ResolveError::NoSuchPlugin {
        name: name.to_string(),
        registries: searched.iter().map(|r| r.name().to_string()).collect(),
        suggestions: suggestions(name, known.iter().map(String::as_str)),
    })
    .into()
}

/// Fills in the registry of a resolution error that does not know it.
fn named(error: ResolveError, registry: &Registry) -> Error {
    match error {
        ResolveError::NoSuchPlugin {
            name, suggestions, ..
        } => ErrorKind::Resolve(ResolveError::NoSuchPlugin {
            name,
            registries: vec![registry.name().to_string()],
            suggestions,
        })
        .into(),
        other => ErrorKind::Resolve(other).into(),
    }
}

fn from_registry(entry: &LockEntry) -> Option<&str> {
    match &entry.source {
        Source::Registry { registry, .. } => Some(registry),
        Source::Path { .. } => None,
    }
}

/// Returns the configured registry an entry came from, and its versions of the plugin.
fn recorded_registry<'r>(
    registries: &'r [Registry],
    entry: &LockEntry,
) -> Result<(&'r Registry, IndexFile)> {
    let name = match &entry.source {
        Source::Registry { registry, .. } => registry,
        Source::Path { path } => {
            return Err(ErrorKind::LocalSource {
                name: entry.name.clone(),
                path: path.clone(),
                message: "it has no registry".to_string(),
            }
            .into());
        }
    };
    let registry = registries
        .iter()
        .find(|r| r.name() == name)
        .ok_or_else(|| ErrorKind::UnknownRegistry { name: name.clone() })?;
    let file = registry
        .versions(&entry.name)?
        .ok_or_else(|| no_such_plugin(&entry.name, &[registry]))?;
    Ok((registry, file))
}

fn parse_requirement(entry: &LockEntry) -> Result<VersionReq> {
    VersionReq::parse(&entry.requirement).map_err(|e| {
        ErrorKind::InvalidSpec {
            spec: format!("{}@{}", entry.name, entry.requirement),
            message: e.to_string(),
        }
        .into()
    })
}

fn warn_skipped(reporter: &dyn Reporter, registry: &Registry, name: &str, file: &IndexFile) {
    for skipped in &file.skipped {
        reporter.warning(&format!(
            "registry `{}`: skipped a line of the index of `{name}`: {skipped}",
            registry.name()
        ));
    }
}

fn check_field(field: &str, index: &str, package: &str) -> std::result::Result<(), String> {
    if index == package {
        Ok(())
    } else {
        Err(format!(
            "{field} is `{index}` in the index but `{package}` in the package"
        ))
    }
}
