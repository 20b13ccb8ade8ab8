//! Installing from registries: `install`, `update`, `outdated` and `sync`.
//!
//! An install resolves a version ([`crate::resolve`]), streams its archive into staging while
//! hashing it and capping its size ([`Registry`]), checks the sha256 and the signature
//! ([`crate::verify`]), extracts it safely ([`crate::extract`]), checks its `plugin.toml` and
//! library against the index line, has the host validate the library in a child process, and
//! commits it to the store ([`StoreLock`]), whose lockfile rewrite is the moment it happens.
//!
//! [`Store::install`], [`Store::update`] and [`Store::sync`] do all of that up to the commit
//! without the store lock, in a staging directory of their own that the store's clean-up
//! leaves alone while they hold its lock file, and take the store lock only to commit: a slow
//! download never blocks another install. The same operations
//! on a [`StoreLock`] do everything under the lock.
//!
//! Two rules stop a registry from rolling a user back. An install never goes below the
//! installed version unless asked (`allow_downgrade`); and since index lines are never
//! removed, an index that no longer lists the installed version, or the highest version seen
//! from it before (recorded in the lockfile), is an old copy and is refused.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use semver::{Version, VersionReq};

use crate::error::{Error, ErrorKind, Result};
use crate::extract::{Limits, extract};
use crate::index::{IndexFile, IndexLine};
use crate::lockfile::Lockfile;
use crate::lockfile::{LockEntry, Source};
use crate::plugin_toml::{PLUGIN_TOML, PluginToml};
use crate::report::{Reporter, Stage};
use crate::resolve::{HostInfo, PluginSpec, Request, ResolveError, resolve, suggestions};
use crate::source::Registry;
use crate::store::{InstalledPlugin, Store, StoreLock, Validate, check_manifest};
use crate::verify::{sha256_file, signer_id};

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
    /// Allow going below the installed version, or installing from an index that no longer
    /// lists a version seen in it before.
    pub allow_downgrade: bool,
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
    /// Whether the publisher yanked the installed version after it was installed.
    pub yanked: bool,
}

/// What to do for one plugin, decided from the lockfile and the index.
enum Plan<'r> {
    /// Installed and intact already; `entry` is its entry, with any new requirement or newly
    /// seen version.
    Unchanged { entry: LockEntry, rewrite: bool },
    /// Install this index line from this registry.
    Install {
        registry: &'r Registry,
        line: IndexLine,
        requirement: String,
        seen: Version,
    },
}

/// An install downloaded, verified, extracted and validated in staging, waiting for its commit.
struct Prepared {
    staged: tempfile::TempDir,
    entry: LockEntry,
    _inflight: Inflight,
}

impl StoreLock<'_> {
    /// Installs `spec` from the first registry (or `options.registry`) that has it, holding the
    /// lock throughout. [`Store::install`] is the same without holding it while downloading.
    pub fn install(
        &mut self,
        cx: &InstallContext<'_>,
        spec: &PluginSpec,
        options: &InstallOptions,
    ) -> Result<InstallOutcome> {
        let current = self.lockfile().get(&spec.name).cloned();
        let home = self.store().home();
        let plan = plan_install(home, self.lockfile(), cx, spec, options)?;
        self.carry_out(cx, plan, current, options.allow_downgrade)
    }

    /// Updates `name`, or every plugin installed from a registry, to the newest version within
    /// its recorded requirement. Plugins are updated one by one; one failing does not stop the
    /// others, so each gets its own result.
    pub fn update(
        &mut self,
        cx: &InstallContext<'_>,
        name: Option<&str>,
    ) -> Result<Vec<(String, Result<InstallOutcome>)>> {
        let names = update_names(self.lockfile(), name)?;
        let mut results = Vec::new();
        for name in names {
            let result = (|| {
                let current = self.lockfile().get(&name).cloned();
                let plan = plan_update(self.store().home(), self.lockfile(), cx, &name)?;
                self.carry_out(cx, plan, current, false)
            })();
            results.push((name, result));
        }
        Ok(results)
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
        for recorded in entries {
            let result = (|| {
                if let Source::Path { path } = &recorded.source {
                    return self.sync_path(cx, &recorded, path);
                }
                let plan = plan_sync(self.store(), cx, &recorded)?;
                let current = self.lockfile().get(&recorded.name).cloned();
                self.carry_out(cx, plan, current.or(Some(recorded.clone())), true)
            })();
            results.push((recorded.name.clone(), result));
        }
        Ok(results)
    }

    fn sync_path(
        &mut self,
        cx: &InstallContext<'_>,
        recorded: &LockEntry,
        path: &Path,
    ) -> Result<InstallOutcome> {
        if recorded.target == cx.host.target
            && InstalledPlugin::new(self.store().home(), recorded.clone()).is_intact()
            && self.lockfile().get(&recorded.name) == Some(recorded)
        {
            return Ok(unchanged(recorded.clone()));
        }
        let same = sha256_file(path).is_ok_and(|sum| sum == recorded.library_sha256);
        if !same {
            return Err(ErrorKind::LocalSource {
                name: recorded.name.clone(),
                path: path.to_path_buf(),
                message: "that library is gone or has changed; build it and use \
                          `install --path` again"
                    .to_string(),
            }
            .into());
        }
        let entry = self.stage_library(path, &recorded.requirement, cx.validate, cx.reporter)?;
        Ok(InstallOutcome {
            entry,
            previous: Some(recorded.clone()),
            changed: true,
        })
    }

    /// Carries out a plan under the lock.
    fn carry_out(
        &mut self,
        cx: &InstallContext<'_>,
        plan: Plan<'_>,
        current: Option<LockEntry>,
        allow_downgrade: bool,
    ) -> Result<InstallOutcome> {
        match plan {
            Plan::Unchanged { entry, rewrite } => {
                if rewrite {
                    let mut next = self.lockfile().clone();
                    next.upsert(entry.clone());
                    self.write_lockfile(next)?;
                }
                Ok(InstallOutcome {
                    entry,
                    previous: current,
                    changed: false,
                })
            }
            Plan::Install {
                registry,
                line,
                requirement,
                seen,
            } => {
                let prepared = prepare(self.store(), cx, registry, &line, &requirement, &seen)?;
                self.finish(cx, prepared, allow_downgrade)
            }
        }
    }

    /// Commits a prepared install, after checking it against the lockfile as it is now.
    fn finish(
        &mut self,
        cx: &InstallContext<'_>,
        prepared: Prepared,
        allow_downgrade: bool,
    ) -> Result<InstallOutcome> {
        let Prepared {
            staged,
            mut entry,
            _inflight,
        } = prepared;
        let current = self.lockfile().get(&entry.name).cloned();
        if let Some(current) = &current {
            check_downgrade(current, &entry.version, allow_downgrade, "")?;
            if current.source == entry.source {
                entry.seen = max_seen(entry.seen.take(), current.seen.clone());
            }
        }
        let entry = self.commit(staged, entry, cx.reporter)?;
        Ok(InstallOutcome {
            entry,
            previous: current,
            changed: true,
        })
    }
}

impl Store {
    /// Installs `spec` like [`StoreLock::install`], but downloads, verifies and validates
    /// without the store lock, taking it only to commit.
    pub fn install(
        &self,
        cx: &InstallContext<'_>,
        spec: &PluginSpec,
        options: &InstallOptions,
    ) -> Result<InstallOutcome> {
        let (lockfile, _) = self.read_lockfile()?;
        let plan = plan_install(self.home(), &lockfile, cx, spec, options)?;
        self.carry_out(cx, plan, options.allow_downgrade)
    }

    /// Updates like [`StoreLock::update`], downloading without the store lock.
    pub fn update(
        &self,
        cx: &InstallContext<'_>,
        name: Option<&str>,
    ) -> Result<Vec<(String, Result<InstallOutcome>)>> {
        let (lockfile, _) = self.read_lockfile()?;
        let names = update_names(&lockfile, name)?;
        let mut results = Vec::new();
        for name in names {
            let result = self
                .read_lockfile()
                .and_then(|(lockfile, _)| plan_update(self.home(), &lockfile, cx, &name))
                .and_then(|plan| self.carry_out(cx, plan, false));
            results.push((name, result));
        }
        Ok(results)
    }

    /// Installs what `recorded` (another home's lockfile, or this one's when `None`) records,
    /// like [`StoreLock::sync`], downloading without the store lock. With another lockfile,
    /// first checks that every registry it names is configured and trusts the key that signed
    /// each plugin, and says which are missing.
    pub fn sync(
        &self,
        cx: &InstallContext<'_>,
        recorded: Option<&Lockfile>,
        allow_downgrade: bool,
    ) -> Result<Vec<(String, Result<InstallOutcome>)>> {
        let entries = match recorded {
            Some(lockfile) => {
                check_sync_needs(cx.registries, lockfile)?;
                lockfile.plugins.clone()
            }
            None => self.read_lockfile()?.0.plugins,
        };
        let mut results = Vec::new();
        for recorded in entries {
            let result = (|| {
                if let Source::Path { path } = &recorded.source {
                    let mut lock = self.lock(cx.reporter)?;
                    return lock.sync_path(cx, &recorded, path);
                }
                let (lockfile, _) = self.read_lockfile()?;
                let current = lockfile.get(&recorded.name);
                let in_place = current == Some(&recorded)
                    && recorded.target == cx.host.target
                    && InstalledPlugin::new(self.home(), recorded.clone()).is_intact();
                if in_place {
                    return Ok(unchanged(recorded.clone()));
                }
                let plan = plan_sync(self, cx, &recorded)?;
                self.carry_out(cx, plan, allow_downgrade)
            })();
            results.push((recorded.name.clone(), result));
        }
        Ok(results)
    }

    fn carry_out(
        &self,
        cx: &InstallContext<'_>,
        plan: Plan<'_>,
        allow_downgrade: bool,
    ) -> Result<InstallOutcome> {
        match plan {
            Plan::Unchanged {
                entry,
                rewrite: false,
            } => {
                // Nothing to change, but what killed changes left (staging, directories no
                // entry names) is still cleaned up when no other launcher holds the store, as
                // a locked command would: a no-op install is what a user runs to repair.
                if let Ok(Some(lock)) = self.try_lock() {
                    report_lock_warnings(&lock, cx.reporter);
                }
                Ok(unchanged(entry))
            }
            Plan::Unchanged { entry, .. } => {
                let mut lock = self.lock(cx.reporter)?;
                report_lock_warnings(&lock, cx.reporter);
                let current = lock.lockfile().get(&entry.name).cloned();
                // Another launcher may have changed the entry meanwhile: only the requirement
                // and the version seen are ours to record, and only on the same version.
                let Some(mut updated) = current
                    .clone()
                    .filter(|c| c.version == entry.version && c.source == entry.source)
                else {
                    return Ok(unchanged(entry));
                };
                updated.requirement = entry.requirement;
                updated.seen = max_seen(updated.seen.take(), entry.seen);
                let mut next = lock.lockfile().clone();
                next.upsert(updated.clone());
                lock.write_lockfile(next)?;
                Ok(InstallOutcome {
                    entry: updated,
                    previous: current,
                    changed: false,
                })
            }
            Plan::Install {
                registry,
                line,
                requirement,
                seen,
            } => {
                let prepared = prepare(self, cx, registry, &line, &requirement, &seen)?;
                let mut lock = self.lock(cx.reporter)?;
                report_lock_warnings(&lock, cx.reporter);
                lock.finish(cx, prepared, allow_downgrade)
            }
        }
    }
}

fn report_lock_warnings(lock: &StoreLock<'_>, reporter: &dyn Reporter) {
    for warning in lock.warnings() {
        reporter.warning(warning);
    }
}

fn unchanged(entry: LockEntry) -> InstallOutcome {
    InstallOutcome {
        previous: Some(entry.clone()),
        entry,
        changed: false,
    }
}

/// Decides an install of `spec` against `lockfile`.
fn plan_install<'r>(
    home: &Path,
    lockfile: &Lockfile,
    cx: &InstallContext<'r>,
    spec: &PluginSpec,
    options: &InstallOptions,
) -> Result<Plan<'r>> {
    let searched = select(cx.registries, options.registry.as_deref())?;
    let current = lockfile.get(&spec.name).cloned();
    // A plugin installed from a registry stays with it: a registry configured later that
    // offers the same name cannot take it over unless `--registry` names it.
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
            let versions = registry.versions(&spec.name);
            pass_warnings(registry, cx.reporter);
            if let Some(file) = versions? {
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

    let same_registry = current
        .as_ref()
        .filter(|e| from_registry(e) == Some(registry.name()));
    let seen = match same_registry {
        Some(current) => check_not_rolled_back(registry, &file, current, options.allow_downgrade)?,
        None => newest_listed(&file),
    };
    let pinned = same_registry.map(|e| e.version.clone());
    let request = Request {
        name: &spec.name,
        requirement: spec.requirement.as_ref(),
        allow_yanked: options.allow_yanked,
        pinned: pinned.as_ref(),
    };
    let line = resolve(&file.lines, &request, cx.host).map_err(|e| named(e, registry))?;
    let requirement = spec.requirement_text();
    if let Some(current) = &current {
        let why = if spec.requirement.is_some() {
            format!("; `{spec}` asks for it")
        } else {
            format!(
                "; it is the newest version registry `{}` offers",
                registry.name()
            )
        };
        check_downgrade(current, &line.vers, options.allow_downgrade, &why)?;
    }

    if let Some(current) = current.as_ref().filter(|_| !options.reinstall) {
        let artifact = &line.targets[&cx.host.target];
        let same = from_registry(current) == Some(registry.name())
            && current.version == line.vers
            && current.target == cx.host.target
            && current.archive_sha256.as_deref() == Some(artifact.sha256.as_str());
        if same && InstalledPlugin::new(home, current.clone()).is_intact() {
            let mut entry = current.clone();
            let seen = max_seen(entry.seen.clone(), seen.clone());
            let rewrite = entry.requirement != requirement || entry.seen != seen;
            entry.requirement = requirement;
            entry.seen = seen;
            return Ok(Plan::Unchanged { entry, rewrite });
        }
    }
    Ok(Plan::Install {
        registry,
        line: line.clone(),
        requirement,
        seen: seen.unwrap_or_else(|| line.vers.clone()),
    })
}

/// Decides an update of the installed `name` against `lockfile`.
fn plan_update<'r>(
    home: &Path,
    lockfile: &Lockfile,
    cx: &InstallContext<'r>,
    name: &str,
) -> Result<Plan<'r>> {
    let current = lockfile
        .get(name)
        .cloned()
        .ok_or_else(|| ErrorKind::NotInstalled {
            name: name.to_string(),
        })?;
    let (registry, file) = recorded_registry(cx.registries, &current, cx.reporter)?;
    warn_skipped(cx.reporter, registry, name, &file);
    let seen = check_not_rolled_back(registry, &file, &current, false)?;
    let requirement = parse_requirement(&current)?;
    let request = Request {
        name,
        requirement: Some(&requirement),
        allow_yanked: false,
        pinned: Some(&current.version),
    };
    let line = resolve(&file.lines, &request, cx.host).map_err(|e| named(e, registry))?;
    // Nothing newer: a damaged install of this version is still repaired.
    let repair =
        line.vers == current.version && !InstalledPlugin::new(home, current.clone()).is_intact();
    if line.vers <= current.version && !repair {
        let mut entry = current.clone();
        let seen = max_seen(entry.seen.clone(), seen);
        let rewrite = entry.seen != seen;
        entry.seen = seen;
        return Ok(Plan::Unchanged { entry, rewrite });
    }
    Ok(Plan::Install {
        registry,
        line: line.clone(),
        requirement: current.requirement.clone(),
        seen: seen.unwrap_or_else(|| line.vers.clone()),
    })
}

/// Decides a reinstall of exactly what `recorded` names.
fn plan_sync<'r>(store: &Store, cx: &InstallContext<'r>, recorded: &LockEntry) -> Result<Plan<'r>> {
    if recorded.target == cx.host.target
        && InstalledPlugin::new(store.home(), recorded.clone()).is_intact()
    {
        return Ok(Plan::Unchanged {
            entry: recorded.clone(),
            rewrite: false,
        });
    }
    let (registry, file) = recorded_registry(cx.registries, recorded, cx.reporter)?;
    warn_skipped(cx.reporter, registry, &recorded.name, &file);
    let exact = VersionReq::parse(&format!("={}", recorded.version))
        .expect("a version makes an exact requirement");
    let request = Request {
        name: &recorded.name,
        requirement: Some(&exact),
        allow_yanked: true,
        pinned: Some(&recorded.version),
    };
    let line = resolve(&file.lines, &request, cx.host).map_err(|e| named(e, registry))?;
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
    let seen =
        max_seen(recorded.seen.clone(), newest_listed(&file)).unwrap_or_else(|| line.vers.clone());
    Ok(Plan::Install {
        registry,
        line: line.clone(),
        requirement: recorded.requirement.clone(),
        seen,
    })
}

fn update_names(lockfile: &Lockfile, name: Option<&str>) -> Result<Vec<String>> {
    Ok(match name {
        Some(name) => {
            let entry = lockfile.get(name).ok_or_else(|| ErrorKind::NotInstalled {
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
        None => lockfile
            .plugins
            .iter()
            .filter(|e| matches!(e.source, Source::Registry { .. }))
            .map(|e| e.name.clone())
            .collect(),
    })
}

/// Refuses going from `current` to `offered` when it is a downgrade that was not allowed.
fn check_downgrade(
    current: &LockEntry,
    offered: &Version,
    allow_downgrade: bool,
    why: &str,
) -> Result<()> {
    if offered < &current.version && !allow_downgrade {
        return Err(ErrorKind::Downgrade {
            name: current.name.clone(),
            installed: current.version.clone(),
            offered: offered.clone(),
            why: why.to_string(),
        }
        .into());
    }
    Ok(())
}

/// Returns the newest version an index file lists, yanked or not.
fn newest_listed(file: &IndexFile) -> Option<Version> {
    file.lines.iter().map(|l| l.vers.clone()).max()
}

fn max_seen(a: Option<Version>, b: Option<Version>) -> Option<Version> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Refuses an index that no longer lists the installed version or the highest version seen in
/// it before: index lines are never removed, so such an index is an old copy. Returns the
/// highest version seen, now.
fn check_not_rolled_back(
    registry: &Registry,
    file: &IndexFile,
    current: &LockEntry,
    allow: bool,
) -> Result<Option<Version>> {
    let listed = |v: &Version| file.lines.iter().any(|l| &l.vers == v);
    let newest = newest_listed(file);
    let seen = max_seen(current.seen.clone(), newest);
    if allow {
        return Ok(seen);
    }
    for (version, what) in [
        (Some(&current.version), "is installed from it"),
        (current.seen.as_ref(), "was seen in it before"),
    ] {
        if let Some(version) = version.filter(|v| !listed(v)) {
            return Err(ErrorKind::Stale {
                registry: registry.name().to_string(),
                message: format!(
                    "its index of `{}` does not list {version}, which {what}; index lines are \
                     never removed, so this is an old copy of the index (a lagging mirror, or a \
                     replay)",
                    current.name
                ),
                hint: "try again later; if the publisher really rewrote the index, pass \
                       --allow-downgrade"
                    .to_string(),
            }
            .into());
        }
    }
    Ok(seen)
}

/// Checks that every registry `lockfile` names is configured and trusts the key that signed
/// each of its plugins; the error lists everything missing.
pub fn check_sync_needs(registries: &[Registry], lockfile: &Lockfile) -> Result<()> {
    let mut missing: Vec<String> = Vec::new();
    for entry in &lockfile.plugins {
        let Source::Registry { registry, index } = &entry.source else {
            continue;
        };
        match registries.iter().find(|r| r.name() == registry) {
            None => {
                let need = format!(
                    "registry `{registry}` ({index}) is not configured; add it with `launcher \
                     registry add {registry} {index} --trust KEY`{}",
                    entry
                        .signed_by
                        .as_ref()
                        .map(|k| format!(", KEY being the publisher's key {k}"))
                        .unwrap_or_default()
                );
                if !missing.contains(&need) {
                    missing.push(need);
                }
            }
            Some(configured) => {
                if let Some(key) = &entry.signed_by
                    && !configured.keys().trusts(key)
                {
                    missing.push(format!(
                        "registry `{registry}` does not trust key {key}, which signed `{}` {}; \
                         add it with `launcher registry add {registry} {} --trust KEY ...`",
                        entry.name,
                        entry.version,
                        configured.config().index
                    ));
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ErrorKind::SyncNeeds { missing }.into())
    }
}

/// The staging directory an install works in (`plugins/.staging/dl-*`). It may work without
/// the store lock, so it holds a lock file of its own inside: the store's clean-up removes
/// such a directory only once nobody holds that lock.
struct Inflight {
    dir: tempfile::TempDir,
    _lock: File,
}

const INFLIGHT_PREFIX: &str = "dl-";
const INFLIGHT_LOCK: &str = ".inflight";

/// How long a directory without its lock file yet counts as being set up rather than left by
/// a killed install.
const SETTING_UP: std::time::Duration = std::time::Duration::from_secs(60);

impl Inflight {
    fn new(store: &Store) -> Result<Inflight> {
        let staging = store.staging();
        let dir = tempfile::Builder::new()
            .prefix(INFLIGHT_PREFIX)
            .tempdir_in(staging)
            .map_err(|e| Error::io("create a directory in", staging, e))?;
        let path = dir.path().join(INFLIGHT_LOCK);
        let lock = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        lock.lock().map_err(|e| Error::io("lock", &path, e))?;
        Ok(Inflight { dir, _lock: lock })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Returns whether the staging entry at `path` belongs to an install still running.
pub(crate) fn is_in_flight(path: &Path) -> bool {
    let is_inflight_dir = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(INFLIGHT_PREFIX));
    if !is_inflight_dir {
        return false;
    }
    match File::open(path.join(INFLIGHT_LOCK)) {
        Ok(file) => matches!(file.try_lock(), Err(TryLockError::WouldBlock)),
        // Between creating the directory and its lock file, or killed in between.
        Err(_) => fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < SETTING_UP)),
    }
}

/// Downloads (or takes from the cache), verifies, extracts, checks and validates one index
/// line, without touching the store's state.
fn prepare(
    store: &Store,
    cx: &InstallContext<'_>,
    registry: &Registry,
    line: &IndexLine,
    requirement: &str,
    seen: &Version,
) -> Result<Prepared> {
    let name = line.name.as_str();
    let version = &line.vers;
    let target = cx.host.target.as_str();
    let artifact = line
        .targets
        .get(target)
        .expect("resolution keeps only lines with a build for the host");

    let inflight = Inflight::new(store)?;
    let archive: PathBuf = inflight
        .path()
        .join(format!("{name}-{version}-{target}.tar.gz"));
    let mut cached = registry.cached_archive(&artifact.sha256, &archive);
    let mut sum = if cached {
        sha256_file(&archive)?
    } else {
        registry.download(name, version, target, artifact.size, &archive, cx.reporter)?
    };
    if cached && !sum.eq_ignore_ascii_case(&artifact.sha256) {
        // A damaged cache entry: fetch it again.
        fs::remove_file(&archive).map_err(|e| Error::io("remove", &archive, e))?;
        sum = registry.download(name, version, target, artifact.size, &archive, cx.reporter)?;
        cached = false;
    }

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
    if !cached {
        registry.keep_archive(&archive, &sum);
    }

    cx.reporter.stage(name, version, Stage::Extracting);
    let staged = tempfile::Builder::new()
        .prefix("new-")
        .tempdir_in(inflight.path())
        .map_err(|e| Error::io("create a directory in", inflight.path(), e))?;
    extract(&archive, staged.path(), &Limits::for_archive(artifact.size))?;
    let _ = fs::remove_file(&archive);

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
    check_field("abi", &line.abi.to_string(), &toml.manifest.abi.to_string()).map_err(mismatch)?;
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
        signed_by: signer_id(&artifact.sig),
        seen: Some(seen.clone().max(version.clone())),
    };
    Ok(Prepared {
        staged,
        entry,
        _inflight: inflight,
    })
}

/// Lists the plugins installed from registries that have newer versions, or whose installed
/// version was yanked. Takes no lock. An index that no longer lists the installed version is
/// an error (an old copy), not "up to date".
pub fn outdated(
    store: &Store,
    registries: &[Registry],
    host: &HostInfo,
    reporter: &dyn Reporter,
) -> Result<Vec<Outdated>> {
    let (lockfile, _) = store.read_lockfile()?;
    let mut out = Vec::new();
    for entry in &lockfile.plugins {
        let Some(registry_name) = from_registry(entry) else {
            continue;
        };
        let (registry, file) = recorded_registry(registries, entry, reporter)?;
        warn_skipped(reporter, registry, &entry.name, &file);
        check_not_rolled_back(registry, &file, entry, false)?;
        let requirement = parse_requirement(entry)?;
        let newest = |requirement: Option<&VersionReq>| {
            let request = Request {
                name: &entry.name,
                requirement,
                allow_yanked: false,
                pinned: None,
            };
            resolve(&file.lines, &request, host)
                .ok()
                .map(|l| l.vers.clone())
                .filter(|v| v > &entry.version)
        };
        let wanted = newest(Some(&requirement));
        let latest = newest(None);
        let yanked = file
            .lines
            .iter()
            .any(|l| l.vers == entry.version && l.yanked);
        if wanted.is_some() || latest.is_some() || yanked {
            out.push(Outdated {
                name: entry.name.clone(),
                registry: registry_name.to_string(),
                installed: entry.version.clone(),
                requirement: entry.requirement.clone(),
                wanted,
                latest,
                yanked,
            });
        }
    }
    Ok(out)
}

/// Returns the names of installed plugins whose installed version their registry has yanked,
/// reading only what is at hand: local registries, and the cache of HTTP ones. Registries that
/// cannot be read this way are passed over; this is a hint for listings, not a check.
pub fn yanked_installed(store: &Store, registries: &[Registry]) -> Vec<String> {
    let Ok((lockfile, _)) = store.read_lockfile() else {
        return Vec::new();
    };
    let mut yanked = Vec::new();
    for entry in &lockfile.plugins {
        let Some(registry) =
            from_registry(entry).and_then(|name| registries.iter().find(|r| r.name() == name))
        else {
            continue;
        };
        if let Ok(Some(file)) = registry.versions(&entry.name)
            && file
                .lines
                .iter()
                .any(|l| l.vers == entry.version && l.yanked)
        {
            yanked.push(entry.name.clone());
        }
    }
    yanked
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
    reporter: &dyn Reporter,
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
    let versions = registry.versions(&entry.name);
    pass_warnings(registry, reporter);
    let file = versions?.ok_or_else(|| no_such_plugin(&entry.name, &[registry]))?;
    Ok((registry, file))
}

/// Hands the registry's gathered warnings to the reporter.
fn pass_warnings(registry: &Registry, reporter: &dyn Reporter) {
    for warning in registry.take_warnings() {
        reporter.warning(&warning);
    }
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

/// Reports the lines an index file had to skip, in one warning however many there are (a
/// hostile index could hold millions).
fn warn_skipped(reporter: &dyn Reporter, registry: &Registry, name: &str, file: &IndexFile) {
    let Some(first) = file.skipped.first() else {
        return;
    };
    let message = match file.skipped.len() {
        1 => format!(
            "registry `{}`: skipped a line of the index of `{name}`: {first}",
            registry.name()
        ),
        n => format!(
            "registry `{}`: skipped {n} lines of the index of `{name}` (the first: {first})",
            registry.name()
        ),
    };
    reporter.warning(&message);
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
