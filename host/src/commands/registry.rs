//! The registry commands: `registry add|list|remove|keygen|refresh-signature`, `search`,
//! `install <name>`, `update`, `outdated`, `sync`, `publish`, `yank` and `cache clean`.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use launcher_registry::{
    ErrorKind, HostInfo, InstallContext, InstallOptions, InstallOutcome, KeyPair, Lockfile,
    PluginSpec, PublishRequest, RegistryConfig, SearchQuery, Signing, Store,
};
use launcher_sdk::serde_json::{self, json};
use semver::Version;

use crate::commands::Globals;
use crate::commands::claims::Claims;
use crate::env;
use crate::escape::printable;
use crate::failure::{Class, Failure, fail};
use crate::home::Home;
use crate::loader;
use crate::progress::Progress;
use crate::registries::{Entry, Registries, normalize_location, read_key};

/// Returns the user-facing failure for a registry error, with its exit code.
pub(crate) fn registry_failure(err: launcher_registry::Error) -> anyhow::Error {
    let class = match err.kind() {
        ErrorKind::Resolve(_)
        | ErrorKind::NotInstalled { .. }
        | ErrorKind::UnknownRegistry { .. } => Class::NotFound,
        ErrorKind::NoRegistries => Class::NotFound,
        ErrorKind::Network { .. } | ErrorKind::HttpStatus { .. } | ErrorKind::NotCached { .. } => {
            Class::Unavailable
        }
        ErrorKind::DownloadDeadline { .. } => Class::Timeout,
        ErrorKind::Stale { .. } | ErrorKind::Downgrade { .. } => Class::Stale,
        ErrorKind::SyncNeeds { .. } => Class::NotFound,
        ErrorKind::DownloadRefused { .. }
        | ErrorKind::RefusedLocation { .. }
        | ErrorKind::Freshness { .. }
        | ErrorKind::DownloadTooLarge { .. }
        | ErrorKind::DownloadTruncated { .. }
        | ErrorKind::ChecksumMismatch { .. }
        | ErrorKind::Signature { .. }
        | ErrorKind::UnsafeArchive { .. }
        | ErrorKind::PackageMismatch { .. } => Class::Integrity,
        ErrorKind::Validation { .. }
        | ErrorKind::InvalidManifest { .. }
        | ErrorKind::InvalidPluginToml { .. } => Class::InvalidInput,
        ErrorKind::RegistryConfig { .. } | ErrorKind::Publish { .. } => Class::Usage,
        _ => Class::Failure,
    };
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if class == Class::Integrity {
        message.push_str("; nothing was installed");
    }
    let hint = match err.kind() {
        ErrorKind::Stale { hint, .. } => Some(hint.clone()),
        ErrorKind::Downgrade { .. } => {
            Some("pass --allow-downgrade to install the older version anyway".to_string())
        }
        ErrorKind::DownloadDeadline { .. } => Some(
            "the server is too slow; LAUNCHER_DOWNLOAD_MIN_RATE (bytes per second) and \
             LAUNCHER_DOWNLOAD_GRACE (seconds) set how long a download may take"
                .to_string(),
        ),
        ErrorKind::NotCached { .. } => {
            Some("run it once online, so the index and archive are cached".to_string())
        }
        ErrorKind::SyncNeeds { .. } => {
            Some("configure them with `launcher registry add`, then run the sync again".to_string())
        }
        _ => None,
    };
    let failure = Failure::new(class, message);
    match hint {
        Some(hint) => failure.hint(hint).into(),
        None => failure.into(),
    }
}

/// Returns the validity `--expires` asks for: days, or `never`.
fn validity(expires: &str) -> Result<Option<std::time::Duration>> {
    if expires.eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    match expires.parse::<u64>() {
        Ok(days) if days > 0 => Ok(Some(std::time::Duration::from_secs(days * 86_400))),
        _ => Err(Failure::new(
            Class::Usage,
            format!("--expires `{expires}` is neither a number of days nor `never`"),
        )
        .hint("e.g. --expires 30; `never` suits only a registry used as a local directory")
        .into()),
    }
}

fn host_info() -> HostInfo {
    HostInfo::current(
        Version::parse(env!("CARGO_PKG_VERSION")).expect("the package version is semver"),
    )
}

fn validate(path: &Path) -> Result<launcher_sdk::Manifest, String> {
    loader::probe(path)
}

/// `launcher registry add`.
pub(crate) fn add(
    globals: &Globals,
    name: &str,
    location: &str,
    trust: &[String],
    as_json: bool,
) -> Result<()> {
    let home = Home::locate()?;
    let mut registries = Registries::load(&home)?;
    let keys = trust
        .iter()
        .map(|k| read_key(k))
        .collect::<Result<Vec<_>>>()?;
    let config = RegistryConfig {
        index: normalize_location(location),
        trust: keys,
    };
    config.check(name).map_err(registry_failure)?;
    if config.trust.is_empty() {
        return Err(Failure::new(
            Class::Usage,
            format!("registry `{name}` needs at least one trusted key"),
        )
        .hint("pass --trust with the publisher's minisign public key (or its .pub file)")
        .into());
    }
    let document = json!({
        "registry": {"name": name, "index": config.index, "trust": config.trust},
    });
    let entry = Entry {
        name: name.to_string(),
        config,
    };
    let replaced = match registries.entries.iter_mut().find(|e| e.name == name) {
        Some(existing) => {
            *existing = entry;
            true
        }
        None => {
            registries.entries.push(entry);
            false
        }
    };
    registries.save()?;
    let action = if replaced { "updated" } else { "added" };
    globals.status(&format!("{action} registry `{name}` ({location})"));
    if as_json {
        let mut document = document;
        document["action"] = json!(action);
        crate::commands::print_json(document)?;
    }
    Ok(())
}

/// `launcher registry list`.
pub(crate) fn list(as_json: bool) -> Result<()> {
    let registries = Registries::load(&Home::locate()?)?;
    if as_json {
        let items: Vec<_> = registries
            .entries
            .iter()
            .map(|e| json!({"name": e.name, "index": e.config.index, "trust": e.config.trust}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    if registries.entries.is_empty() {
        eprintln!("{}", crate::registries::NO_REGISTRY_HINT);
        return Ok(());
    }
    for e in &registries.entries {
        println!(
            "{}  {}  ({} trusted key{})",
            e.name,
            e.config.index,
            e.config.trust.len(),
            if e.config.trust.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// `launcher registry remove`.
pub(crate) fn remove(globals: &Globals, name: &str, as_json: bool) -> Result<()> {
    let mut registries = Registries::load(&Home::locate()?)?;
    let before = registries.entries.len();
    registries.entries.retain(|e| e.name != name);
    if registries.entries.len() == before {
        return Err(fail(
            Class::NotFound,
            format!("no registry named `{name}` is configured"),
        ));
    }
    registries.save()?;
    globals.status(&format!(
        "removed registry `{name}`; plugins installed from it stay installed"
    ));
    if as_json {
        crate::commands::print_json(json!({"registry": {"name": name}, "action": "removed"}))?;
    }
    Ok(())
}

/// `launcher registry keygen`: a minisign key pair for publishing.
pub(crate) fn keygen(globals: &Globals, secret: &Path, public: Option<&Path>) -> Result<()> {
    let public = public
        .map(Path::to_path_buf)
        .unwrap_or_else(|| secret.with_extension("pub"));
    for path in [secret, public.as_path()] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
    }
    let password = env::var(env::KEY_PASSWORD);
    let pair = KeyPair::generate(password.as_deref()).map_err(registry_failure)?;
    pair.write(secret, &public).map_err(registry_failure)?;
    globals.status(&format!(
        "wrote {} and {}",
        secret.display(),
        public.display()
    ));
    println!("{}", pair.public_base64());
    Ok(())
}

/// `launcher search`.
pub(crate) fn search(
    globals: &Globals,
    query: SearchQuery,
    offline: bool,
    as_json: bool,
) -> Result<()> {
    let home = Home::locate()?;
    let store = Store::open(home.data_dir()).map_err(registry_failure)?;
    let registries = Registries::load(&home)?.open(&store, offline)?;
    let progress = Progress::new(*globals);
    let hits = launcher_registry::search(&registries, &query, &host_info(), &progress)
        .map_err(registry_failure)?;
    // Thousands of lines: one buffered writer rather than a write per line.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if as_json {
        #[derive(serde::Serialize)]
        struct Hit<'a> {
            name: &'a str,
            /// The plugin's name, as `list --json` calls it.
            plugin: &'a str,
            version: String,
            registry: &'a str,
            categories: &'a [String],
            tasks: &'a [String],
            description: &'a str,
        }
        let items: Vec<Hit<'_>> = hits
            .iter()
            .map(|h| Hit {
                name: &h.name,
                plugin: &h.name,
                version: h.version.to_string(),
                registry: &h.registry,
                categories: &h.categories,
                tasks: &h.tasks,
                description: &h.description,
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &items)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(());
    }
    if hits.is_empty() {
        globals.status("no plugin matches");
        return Ok(());
    }
    let rows: Vec<[String; 3]> = hits
        .iter()
        .map(|h| {
            [
                h.version.to_string(),
                h.categories.join(","),
                h.tasks.join(","),
            ]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(0);
    let (ver_w, cat_w, task_w) = (width(0), width(1), width(2));
    let name_w = hits.iter().map(|h| h.name.len()).max().unwrap_or(4);
    let several = registries.len() > 1;
    for (h, [version, categories, tasks]) in hits.iter().zip(&rows) {
        let mut line = format!(
            "{:<name_w$}  {version:<ver_w$}  {categories:<cat_w$}  {tasks:<task_w$}  {}",
            h.name, h.description
        );
        if several {
            line.push_str(&format!("  [{}]", h.registry));
        }
        // Every field comes from the registry's catalog or index.
        writeln!(out, "{}", printable(&line))?;
    }
    out.flush()?;
    Ok(())
}

/// Options shared by the commands that install from registries.
pub(crate) struct InstallFlags {
    pub(crate) registry: Option<String>,
    pub(crate) allow_yanked: bool,
    pub(crate) reinstall: bool,
    /// Install a plugin in place of the plugins whose tool ids it declares.
    pub(crate) replace: bool,
    pub(crate) allow_downgrade: bool,
    pub(crate) offline: bool,
    pub(crate) json: bool,
}

/// `launcher install <name>[@req]...`.
pub(crate) fn install(globals: &Globals, specs: &[String], flags: &InstallFlags) -> Result<()> {
    let specs = specs
        .iter()
        .map(|spec| {
            spec.parse::<PluginSpec>()
                .map_err(|e| fail(Class::Usage, e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let options = InstallOptions {
        registry: flags.registry.clone(),
        allow_yanked: flags.allow_yanked,
        reinstall: flags.reinstall,
        allow_downgrade: flags.allow_downgrade,
    };
    let mut done = Vec::new();
    let home = Home::locate()?;
    let claims = Claims::new(globals, &home, flags.replace)?;
    let result = with_registries(globals, flags.offline, |store, cx| {
        let validate = claims.validator();
        let cx = InstallContext {
            validate: &validate,
            ..*cx
        };
        for spec in &specs {
            let outcome = store.install(&cx, spec, &options).map_err(|e| {
                claims
                    .refusal(Some(&spec.name))
                    .unwrap_or_else(|| registry_failure(e))
            })?;
            report_outcome(globals, &outcome);
            if outcome.changed {
                claims.installed(globals, &outcome.entry.name)?;
            }
            done.push(outcome_json(&outcome));
        }
        Ok(())
    });
    if flags.json && result.is_ok() {
        crate::commands::print_json(json!({ "plugins": done }))?;
    }
    result
}

/// Returns what an install did, for `--json`.
fn outcome_json(outcome: &InstallOutcome) -> serde_json::Value {
    let entry = &outcome.entry;
    let action = match (&outcome.previous, outcome.changed) {
        (_, false) => "unchanged",
        (Some(prev), true) if prev.version != entry.version => "updated",
        (Some(_), true) => "reinstalled",
        (None, true) => "installed",
    };
    let mut value = json!({
        "name": entry.name,
        "version": entry.version.to_string(),
        "previous": outcome.previous.as_ref().map(|p| p.version.to_string()),
        "action": action,
    });
    match &entry.source {
        launcher_registry::Source::Registry { registry, .. } => value["registry"] = json!(registry),
        launcher_registry::Source::Path { path } => value["path"] = json!(path),
    }
    value
}

fn report_outcome(globals: &Globals, outcome: &InstallOutcome) {
    let entry = &outcome.entry;
    let from = match &entry.source {
        launcher_registry::Source::Registry { registry, .. } => format!("registry `{registry}`"),
        launcher_registry::Source::Path { path } => path.display().to_string(),
    };
    let message = match (&outcome.previous, outcome.changed) {
        (_, false) => format!("{} {} is already installed", entry.name, entry.version),
        (Some(prev), true) if prev.version != entry.version => {
            format!(
                "updated {} {} -> {} from {from}",
                entry.name, prev.version, entry.version
            )
        }
        (Some(_), true) => format!("reinstalled {} {} from {from}", entry.name, entry.version),
        (None, true) => format!("installed {} {} from {from}", entry.name, entry.version),
    };
    globals.status(&message);
}

/// Reports the result of each plugin; `refusal` gives the failure to show instead of the
/// store's error for a plugin refused for taking another plugin's tool ids.
fn report_each(
    globals: &Globals,
    results: Vec<(String, launcher_registry::Result<InstallOutcome>)>,
    refusal: &dyn Fn(&str) -> Option<anyhow::Error>,
    as_json: bool,
) -> Result<()> {
    let mut first_error = None;
    let mut done = Vec::new();
    for (name, result) in results {
        match result {
            Ok(outcome) => {
                report_outcome(globals, &outcome);
                done.push(outcome_json(&outcome));
            }
            Err(err) => {
                let failure = refusal(&name).unwrap_or_else(|| registry_failure(err));
                let report = crate::failure::Report::of(&failure);
                if as_json {
                    done.push(
                        json!({"name": name, "action": "failed", "error": report.json()["error"]}),
                    );
                } else {
                    anstream::eprintln!(
                        "{} {}",
                        crate::style::label(crate::style::ERROR, "error"),
                        printable(&format!("{name}: {failure}"))
                    );
                }
                first_error.get_or_insert(failure);
            }
        }
    }
    if as_json {
        crate::commands::print_json(json!({ "plugins": done }))?;
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// `launcher update [name]`.
pub(crate) fn update(
    globals: &Globals,
    name: Option<&str>,
    offline: bool,
    as_json: bool,
) -> Result<()> {
    let home = Home::locate()?;
    // An update may declare new tools: it must not take them from another plugin either.
    let claims = Claims::new(globals, &home, false)?;
    with_registries(globals, offline, |store, cx| {
        let validate = claims.validator();
        let cx = InstallContext {
            validate: &validate,
            ..*cx
        };
        let results = store.update(&cx, name).map_err(registry_failure)?;
        if results.is_empty() {
            globals.status("nothing installed from a registry");
        }
        for (_, outcome) in &results {
            if let Ok(outcome) = outcome
                && outcome.changed
            {
                claims.installed(globals, &outcome.entry.name)?;
            }
        }
        report_each(
            globals,
            results,
            &|name| claims.refusal(Some(name)),
            as_json,
        )
    })
}

/// `launcher sync [--lockfile FILE]`.
pub(crate) fn sync(
    globals: &Globals,
    lockfile: Option<&Path>,
    allow_downgrade: bool,
    offline: bool,
    as_json: bool,
) -> Result<()> {
    let recorded = lockfile
        .map(|path| {
            if !path.is_file() {
                return Err(fail(
                    Class::NotFound,
                    format!("no lockfile at {}", path.display()),
                ));
            }
            let (lockfile, warnings) = Lockfile::read(path).map_err(registry_failure)?;
            for warning in warnings {
                globals.warn(&warning);
            }
            Ok(lockfile)
        })
        .transpose()?;
    if let Some(recorded) = &recorded {
        // With no registry configured at all, say what the lockfile needs rather than only
        // that none is configured.
        let home = Home::locate()?;
        if Registries::load(&home)?.entries.is_empty() {
            launcher_registry::check_sync_needs(&[], recorded).map_err(registry_failure)?;
        }
    }
    with_registries(globals, offline, |store, cx| {
        let results = store
            .sync(cx, recorded.as_ref(), allow_downgrade)
            .map_err(registry_failure)?;
        if results.is_empty() {
            globals.status("the lockfile records no plugins");
        }
        report_each(globals, results, &|_| None, as_json)
    })
}

/// Runs `body` with the store and the configured registries. The store lock is taken only to
/// commit each change, never while downloading.
fn with_registries(
    globals: &Globals,
    offline: bool,
    body: impl FnOnce(&Store, &InstallContext<'_>) -> Result<()>,
) -> Result<()> {
    let home = Home::locate()?;
    let store = Store::open(home.data_dir()).map_err(registry_failure)?;
    let registries = Registries::load(&home)?.open(&store, offline)?;
    let host = host_info();
    let progress = Progress::new(*globals);
    let cx = InstallContext {
        registries: &registries,
        host: &host,
        validate: &validate,
        reporter: &progress,
    };
    body(&store, &cx)
}

/// `launcher outdated`.
pub(crate) fn outdated(globals: &Globals, offline: bool, as_json: bool) -> Result<()> {
    let home = Home::locate()?;
    let store = Store::open(home.data_dir()).map_err(registry_failure)?;
    let registries = Registries::load(&home)?.open(&store, offline)?;
    let progress = Progress::new(*globals);
    let rows = launcher_registry::outdated(&store, &registries, &host_info(), &progress)
        .map_err(registry_failure)?;
    if as_json {
        let items: Vec<_> = rows
            .iter()
            .map(|o| {
                json!({
                    "name": o.name,
                    "registry": o.registry,
                    "installed": o.installed.to_string(),
                    "requirement": o.requirement,
                    "wanted": o.wanted.as_ref().map(ToString::to_string),
                    "latest": o.latest.as_ref().map(ToString::to_string),
                    "yanked": o.yanked,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    if rows.is_empty() {
        globals.status("every plugin installed from a registry is up to date");
        return Ok(());
    }
    for o in rows.iter().filter(|o| o.yanked) {
        globals.warn(&format!(
            "{} {} was yanked by its publisher after you installed it; update it, or install \
             another version",
            o.name, o.installed
        ));
    }
    println!(
        "{:<20} {:<10} {:<10} {:<10} requirement",
        "plugin", "installed", "wanted", "latest"
    );
    for o in rows {
        let show = |v: &Option<Version>| v.as_ref().map_or("-".to_string(), ToString::to_string);
        let installed = if o.yanked {
            format!("{} (yanked)", o.installed)
        } else {
            o.installed.to_string()
        };
        println!(
            "{:<20} {:<10} {:<10} {:<10} {}",
            o.name,
            installed,
            show(&o.wanted),
            show(&o.latest),
            o.requirement
        );
    }
    Ok(())
}

/// `launcher publish`.
pub(crate) fn publish(
    globals: &Globals,
    library: &Path,
    index: &Path,
    key: &Path,
    host: Option<&str>,
    expires: &str,
) -> Result<()> {
    let validity = validity(expires)?;
    let manifest = loader::probe(library).map_err(|reason| {
        fail(
            Class::InvalidInput,
            format!("{} {reason}", library.display()),
        )
    })?;
    let host = host
        .map(|h| {
            h.parse::<semver::VersionReq>()
                .map_err(|e| fail(Class::Usage, format!("--host `{h}`: {e}")))
        })
        .transpose()?;
    let docs_dir = library.parent().unwrap_or(Path::new("."));
    let docs = launcher_registry::find_docs(docs_dir).map_err(registry_failure)?;
    let password = env::var(env::KEY_PASSWORD);
    let published = launcher_registry::publish(&PublishRequest {
        library,
        manifest: &manifest,
        index,
        secret_key: key,
        password: password.as_deref(),
        host,
        target: None,
        docs,
        now: crate::registries::now(),
        validity,
    })
    .map_err(registry_failure)?;
    globals.status(&format!(
        "published {} {} to {} ({})",
        manifest.name,
        manifest.version,
        index.display(),
        published.archive.display()
    ));
    Ok(())
}

/// `launcher yank`.
pub(crate) fn yank(
    globals: &Globals,
    spec: &str,
    index: &Path,
    key: Option<&Path>,
    undo: bool,
    expires: &str,
) -> Result<()> {
    let (name, version) = spec.split_once('@').ok_or_else(|| {
        fail(
            Class::Usage,
            format!("give the exact version to yank, as name@version, not `{spec}`"),
        )
    })?;
    let version = Version::parse(version.trim_start_matches('=')).map_err(|e| {
        fail(
            Class::Usage,
            format!("`{version}` is not an exact version: {e}"),
        )
    })?;
    let password = env::var(env::KEY_PASSWORD);
    let validity = validity(expires)?;
    let signing = key.map(|secret_key| Signing {
        secret_key,
        password: password.as_deref(),
        now: crate::registries::now(),
        validity,
    });
    launcher_registry::yank(index, name, &version, !undo, signing.as_ref())
        .map_err(registry_failure)?;
    globals.status(&format!(
        "{} {name} {version}",
        if undo { "unyanked" } else { "yanked" }
    ));
    Ok(())
}

/// `launcher registry refresh-signature`.
pub(crate) fn refresh_signature(
    globals: &Globals,
    index: &Path,
    key: &Path,
    expires: &str,
) -> Result<()> {
    let password = env::var(env::KEY_PASSWORD);
    let statement = launcher_registry::refresh_signature(
        index,
        &Signing {
            secret_key: key,
            password: password.as_deref(),
            now: crate::registries::now(),
            validity: validity(expires)?,
        },
    )
    .map_err(registry_failure)?;
    let until = match statement.expires {
        Some(expires) => format!("valid until {expires} (seconds since the Unix epoch)"),
        None => "never expiring".to_string(),
    };
    globals.status(&format!(
        "signed the freshness statement of {} ({} files, {until})",
        index.display(),
        statement.files.len()
    ));
    Ok(())
}

/// `launcher cache clean`.
pub(crate) fn clean_cache(globals: &Globals, as_json: bool) -> Result<()> {
    let home = Home::locate()?;
    let store = Store::open(home.data_dir()).map_err(registry_failure)?;
    let freed = store.clean_cache().map_err(registry_failure)?;
    globals.status(&format!(
        "removed the cached registry index files and archives ({freed} bytes)"
    ));
    if as_json {
        crate::commands::print_json(json!({ "freed": freed }))?;
    }
    Ok(())
}
