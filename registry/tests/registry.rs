//! The registry end to end at the library level: publish into an index directory, serve it
//! from a path or over loopback HTTP, and install, update, sync and refuse against a store in
//! a temporary launcher home.
//!
//! The host validates libraries by loading them in a child process; here a probe stands in
//! for it, reading the plugin's name and version from the fake library's first line.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;
use launcher_registry::freshness::DEFAULT_VALIDITY;
use launcher_registry::publish::{
    KeyPair, PublishRequest, Signing, find_docs, publish, refresh_signature, sign, yank,
};
use launcher_registry::verify::{sha256_file, trusted_comment};
use launcher_registry::{
    ArchiveError, Error, ErrorKind, HostInfo, InstallContext, InstallOptions, InstallOutcome,
    LockEntry, Lockfile, NoReporter, PluginSpec, Registry, RegistryConfig, Reporter, ResolveError,
    SearchQuery, SignatureError, Source, Stage, Store, host_target, outdated, search,
};
use launcher_sdk::{ContentKind, Manifest, ToolSpec};
use launcher_testkit::http::{Reply, Response, StaticServer};
use semver::Version;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Fixtures

const MAGIC: &str = "launcher-test-plugin";

/// What a fake plugin says about itself.
#[derive(Clone)]
struct Plugin {
    name: &'static str,
    version: &'static str,
    abi: u32,
    category: &'static str,
    task: &'static str,
    /// Changes the library's bytes without changing what it says.
    flavour: u32,
}

fn plugin(name: &'static str, version: &'static str) -> Plugin {
    Plugin {
        name,
        version,
        abi: launcher_sdk::abi::ABI_MAJOR,
        category: "text",
        task: "chat",
        flavour: 0,
    }
}

/// Writes a fake library: one line the probe reads, then 200 KB that do not compress, so
/// downloads take several chunks.
fn write_library(dir: &Path, p: &Plugin) -> PathBuf {
    let path = dir.join(format!("lib{}.so", p.name.replace('-', "_")));
    let mut bytes = format!(
        "{MAGIC} {} {} {} {} {} {}\n",
        p.name, p.version, p.abi, p.category, p.task, p.flavour
    )
    .into_bytes();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(p.flavour) ^ (p.name.len() as u64) << 32;
    for _ in 0..200 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.push(x as u8);
    }
    fs::write(&path, bytes).unwrap();
    path
}

/// The stand-in for the host's child-process validator.
fn probe(path: &Path) -> Result<Manifest, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(first);
    let words: Vec<&str> = line.split_whitespace().collect();
    let [MAGIC, name, version, abi, category, task, _] = words[..] else {
        return Err("not a launcher plugin (no header)".to_string());
    };
    // The category follows from the task; the word only has to name a kind.
    let _: ContentKind = category.parse()?;
    let mut manifest = Manifest::new(name, version)
        .description("a test plugin")
        .tool(ToolSpec::new(name, &[task]));
    manifest.abi = abi.parse().map_err(|_| "bad abi".to_string())?;
    Ok(manifest)
}

struct Fixture {
    root: tempfile::TempDir,
    keys: KeyPair,
}

impl Fixture {
    fn new() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let keys = KeyPair::generate(None).unwrap();
        fs::create_dir_all(root.path().join("work")).unwrap();
        keys.write(
            &root.path().join("work/key"),
            &root.path().join("work/key.pub"),
        )
        .unwrap();
        Fixture { root, keys }
    }

    fn index(&self) -> PathBuf {
        self.root.path().join("index")
    }

    fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    fn publish(&self, p: &Plugin) -> launcher_registry::Published {
        self.publish_for(p, &host_target())
    }

    fn publish_for(&self, p: &Plugin, target: &str) -> launcher_registry::Published {
        let dir = self
            .work()
            .join(format!("{}-{}-{}", p.name, p.version, p.flavour));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("README.md"), format!("# {}\n", p.name)).unwrap();
        let library = write_library(&dir, p);
        let manifest = probe(&library).unwrap();
        publish(&PublishRequest {
            library: &library,
            manifest: &manifest,
            index: &self.index(),
            secret_key: &self.work().join("key"),
            password: None,
            host: None,
            target: Some(target),
            docs: find_docs(&dir).unwrap(),
            now: SystemTime::now(),
            validity: Some(DEFAULT_VALIDITY),
        })
        .unwrap()
    }

    fn key_path(&self) -> PathBuf {
        self.work().join("key")
    }

    /// Re-signs the index's freshness statement, as a publisher does after editing by hand.
    fn resign(&self) {
        let key = self.key_path();
        refresh_signature(&self.index(), &signing(&key)).unwrap();
    }

    fn config(&self, location: &str) -> RegistryConfig {
        RegistryConfig {
            index: location.to_string(),
            trust: vec![self.keys.public_base64()],
        }
    }

    fn store(&self) -> Store {
        Store::open(self.home()).unwrap()
    }

    fn local(&self, store: &Store) -> Registry {
        let config = self.config(self.index().to_str().unwrap());
        Registry::open("local", &config, store, false).unwrap()
    }

    fn install(
        &self,
        store: &Store,
        registry: &Registry,
        spec: &str,
    ) -> Result<InstallOutcome, Error> {
        install_with(
            store,
            registry,
            spec,
            &InstallOptions::default(),
            &probe,
            &NoReporter,
        )
    }

    fn archive_path(&self, name: &str, version: &str) -> PathBuf {
        self.index().join(format!(
            "archives/{name}/{name}-{version}-{}.tar.gz",
            host_target()
        ))
    }

    /// Rewrites the index line of `name` `version`, in its file and in the catalog.
    fn edit_line(&self, name: &str, version: &str, edit: impl Fn(&mut Value)) {
        let relative = launcher_registry::index_path(name).unwrap();
        for path in [
            self.index().join(relative),
            self.index().join("catalog.jsonl"),
        ] {
            let text = fs::read_to_string(&path).unwrap();
            let mut out = String::new();
            for line in text.lines() {
                let mut value: Value = serde_json::from_str(line).unwrap();
                if value["name"] == name && value["vers"] == version {
                    edit(&mut value);
                }
                out.push_str(&value.to_string());
                out.push('\n');
            }
            fs::write(&path, out).unwrap();
        }
        self.resign();
    }

    /// Replaces the published archive of `name` `version` with `bytes`, declaring its true
    /// sha256 and size and signing it with `key` and `comment`: only the contents are wrong.
    fn replace_archive(
        &self,
        name: &str,
        version: &str,
        bytes: &[u8],
        key: &KeyPair,
        comment: &str,
    ) {
        let path = self.archive_path(name, version);
        fs::write(&path, bytes).unwrap();
        let sha = sha256_file(&path).unwrap();
        let sig = sign(&path, &key.secret, None, comment).unwrap();
        let size = bytes.len();
        self.edit_line(name, version, |line| {
            let artifact = &mut line["targets"][host_target()];
            artifact["sha256"] = Value::from(sha.clone());
            artifact["size"] = Value::from(size);
            artifact["sig"] = Value::from(sig.clone());
        });
    }

    fn comment(&self, name: &str, version: &str) -> String {
        trusted_comment(name, &Version::parse(version).unwrap(), &host_target())
    }
}

fn signing(key: &Path) -> Signing<'_> {
    Signing {
        secret_key: key,
        password: None,
        now: SystemTime::now(),
        validity: Some(DEFAULT_VALIDITY),
    }
}

fn install_with(
    store: &Store,
    registry: &Registry,
    spec: &str,
    options: &InstallOptions,
    validate: &launcher_registry::Validate,
    reporter: &dyn Reporter,
) -> Result<InstallOutcome, Error> {
    let host = HostInfo::current(Version::new(0, 1, 0));
    let registries = std::slice::from_ref(registry);
    let cx = InstallContext {
        registries,
        host: &host,
        validate,
        reporter,
    };
    let spec: PluginSpec = spec.parse()?;
    store.install(&cx, &spec, options)
}

fn host() -> HostInfo {
    HostInfo::current(Version::new(0, 1, 0))
}

/// Everything an install may change: the lockfile's bytes and every file under `plugins/`.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    lockfile: Option<Vec<u8>>,
    files: Vec<(String, String)>,
}

fn snapshot(home: &Path) -> Snapshot {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let relative = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            // The store's lock files: empty, and there as soon as anyone locked.
            if relative == ".lock" || relative == ".readers" {
                continue;
            }
            if path.is_dir() {
                out.push((relative, "dir".to_string()));
                walk(&path, base, out);
            } else {
                out.push((relative, sha256_file(&path).unwrap()));
            }
        }
    }
    let plugins = home.join("plugins");
    let mut files = Vec::new();
    walk(&plugins, &plugins, &mut files);
    files.sort();
    Snapshot {
        lockfile: fs::read(home.join("plugins.lock")).ok(),
        files,
    }
}

fn installed_text(store: &Store, name: &str) -> String {
    let (installed, _) = store.installed().unwrap();
    let plugin = installed.iter().find(|p| p.entry.name == name).unwrap();
    let bytes = fs::read(&plugin.library_path).unwrap();
    String::from_utf8_lossy(bytes.split(|b| *b == b'\n').next().unwrap()).into_owned()
}

fn version_of(store: &Store, name: &str) -> Option<String> {
    let (installed, _) = store.installed().unwrap();
    installed
        .iter()
        .find(|p| p.entry.name == name)
        .map(|p| p.entry.version.to_string())
}

/// One entry of a hand-made archive, path written raw (so `..` and `/` get through).
enum Item<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Huge(&'a str, u64),
}

fn tar_gz(items: &[Item<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for item in items {
        let mut header = tar::Header::new_gnu();
        let (path, data, kind, size): (&str, &[u8], tar::EntryType, u64) = match *item {
            Item::File(p, d) => (p, d, tar::EntryType::Regular, d.len() as u64),
            Item::Symlink(p, target) => {
                header.set_link_name(target).unwrap();
                (p, &[], tar::EntryType::Symlink, 0)
            }
            Item::Huge(p, size) => (p, &[], tar::EntryType::Regular, size),
        };
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(0o644);
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// The files of a real package of `p`: its plugin.toml and library, for hostile variants.
fn package_files(fx: &Fixture, p: &Plugin) -> (Vec<u8>, String, Vec<u8>) {
    let archive = fx.archive_path(p.name, p.version);
    let out = fx.work().join(format!("unpacked-{}", p.version));
    fs::create_dir_all(&out).unwrap();
    launcher_registry::extract(&archive, &out, &launcher_registry::Limits::for_archive(0)).unwrap();
    let toml = fs::read(out.join("plugin.toml")).unwrap();
    let library = format!("lib{}.so", p.name);
    let bytes = fs::read(out.join(&library)).unwrap();
    (toml, library, bytes)
}

// ---------------------------------------------------------------------------------------------
// The whole journey

#[test]
fn publish_search_install_update_outdated_uninstall_sync_over_http() {
    let fx = Fixture::new();
    let mut tts = plugin("say-it", "1.0.0");
    tts.category = "audio";
    tts.task = "tts";
    fx.publish(&plugin("echo", "1.0.0"));
    fx.publish(&tts);
    let served = StaticServer::start(fx.index());
    let store = fx.store();
    let registry = Registry::open("web", &fx.config(&served.url()), &store, false).unwrap();

    // Search by text, category and task, from the catalog alone.
    let query = |text: Option<&str>, category: Option<&str>, task: Option<&str>| {
        let query = SearchQuery {
            text: text.map(str::to_string),
            category: category.map(str::to_string),
            task: task.map(str::to_string),
        };
        search(
            std::slice::from_ref(&registry),
            &query,
            &host(),
            &NoReporter,
        )
        .unwrap()
        .into_iter()
        .map(|h| format!("{}@{}", h.name, h.version))
        .collect::<Vec<_>>()
    };
    assert_eq!(query(None, None, None), ["echo@1.0.0", "say-it@1.0.0"]);
    assert_eq!(query(Some("say"), None, None), ["say-it@1.0.0"]);
    assert_eq!(
        query(Some("TEST plugin"), None, None),
        ["echo@1.0.0", "say-it@1.0.0"]
    );
    assert_eq!(query(None, Some("audio"), None), ["say-it@1.0.0"]);
    assert_eq!(query(None, None, Some("chat")), ["echo@1.0.0"]);
    assert!(query(Some("nothing-like-it"), None, None).is_empty());

    // Install within a requirement, with progress reported.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);
    impl Reporter for Recorder {
        fn download_started(&self, name: &str, version: &Version, total: u64) {
            self.0
                .lock()
                .unwrap()
                .push(format!("start {name} {version} {total}"));
        }
        fn download_progress(&self, _: &str, received: u64) {
            self.0.lock().unwrap().push(format!("got {received}"));
        }
        fn download_finished(&self, name: &str) {
            self.0.lock().unwrap().push(format!("done {name}"));
        }
        fn stage(&self, _: &str, _: &Version, stage: Stage) {
            self.0.lock().unwrap().push(format!("{stage:?}"));
        }
    }
    let recorder = Recorder::default();
    let outcome = install_with(
        &store,
        &registry,
        "echo@^1",
        &InstallOptions::default(),
        &probe,
        &recorder,
    )
    .unwrap();
    assert!(outcome.changed && outcome.previous.is_none());
    assert_eq!(outcome.entry.requirement, "^1");
    assert_eq!(
        outcome.entry.source,
        Source::Registry {
            registry: "web".to_string(),
            index: served.url()
        }
    );
    let events = recorder.0.into_inner().unwrap();
    let size = fs::metadata(fx.archive_path("echo", "1.0.0"))
        .unwrap()
        .len();
    assert_eq!(events[0], format!("start echo 1.0.0 {size}"));
    let stages: Vec<&str> = events
        .iter()
        .filter(|e| !e.contains(' '))
        .map(String::as_str)
        .collect();
    assert_eq!(
        stages,
        [
            "Verifying",
            "Extracting",
            "Validating",
            "Installing",
            "Recording"
        ]
    );
    assert!(events.contains(&format!("got {size}")), "{events:?}");
    assert!(events.contains(&"done echo".to_string()));

    // What the store holds: plugin.toml, the library, the readme.
    let (installed, warnings) = store.installed().unwrap();
    assert!(warnings.is_empty());
    let echo = &installed[0];
    assert_eq!(echo.dir, fx.home().join("plugins/echo/1.0.0"));
    assert!(echo.dir.join("README.md").is_file());
    let toml = echo.plugin_toml().unwrap();
    assert_eq!(toml.manifest, probe(&echo.library_path).unwrap());
    assert_eq!(toml.target, host_target());
    assert!(!echo.library_changed());

    // Installing what is installed changes nothing.
    let again = fx.install(&store, &registry, "echo@^1").unwrap();
    assert!(!again.changed);

    // Newer versions appear: outdated shows them, update stays within ^1.
    fx.publish(&plugin("echo", "1.1.0"));
    fx.publish(&plugin("echo", "2.0.0"));
    let report = outdated(
        &store,
        std::slice::from_ref(&registry),
        &host(),
        &NoReporter,
    )
    .unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].installed.to_string(), "1.0.0");
    assert_eq!(
        report[0]
            .wanted
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("1.1.0")
    );
    assert_eq!(
        report[0]
            .latest
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("2.0.0")
    );

    let host = host();
    let cx = InstallContext {
        registries: std::slice::from_ref(&registry),
        host: &host,
        validate: &probe,
        reporter: &NoReporter,
    };
    let results = store.lock(&NoReporter).unwrap().update(&cx, None).unwrap();
    assert_eq!(results.len(), 1);
    let updated = results[0].1.as_ref().unwrap();
    assert!(updated.changed);
    assert_eq!(updated.entry.version.to_string(), "1.1.0");
    assert_eq!(
        updated.previous.as_ref().unwrap().version.to_string(),
        "1.0.0"
    );
    assert_eq!(updated.entry.requirement, "^1");
    let results = store
        .lock(&NoReporter)
        .unwrap()
        .update(&cx, Some("echo"))
        .unwrap();
    assert!(!results[0].1.as_ref().unwrap().changed);
    let report = outdated(&store, std::slice::from_ref(&registry), &host, &NoReporter).unwrap();
    assert_eq!(report[0].wanted, None);
    assert_eq!(
        report[0]
            .latest
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("2.0.0")
    );

    // The old version's directory goes the next time the store is locked.
    drop(store.lock(&NoReporter).unwrap());
    assert!(!fx.home().join("plugins/echo/1.0.0").exists());

    fx.install(&store, &registry, "say-it").unwrap();
    let lockfile = fs::read(store.lockfile_path()).unwrap();

    // Sync a fresh home from the lockfile: same versions, same checksums.
    let fresh_home = fx.root.path().join("fresh");
    fs::create_dir_all(&fresh_home).unwrap();
    fs::write(fresh_home.join("plugins.lock"), &lockfile).unwrap();
    let fresh = Store::open(&fresh_home).unwrap();
    let fresh_registry = Registry::open("web", &fx.config(&served.url()), &fresh, false).unwrap();
    let cx = InstallContext {
        registries: std::slice::from_ref(&fresh_registry),
        host: &host,
        validate: &probe,
        reporter: &NoReporter,
    };
    let results = fresh.lock(&NoReporter).unwrap().sync(&cx).unwrap();
    assert_eq!(results.len(), 2);
    for (name, result) in &results {
        assert!(
            result.as_ref().is_ok_and(|o| o.changed),
            "{name}: {result:?}"
        );
    }
    let (old, _) = store.installed().unwrap();
    let (new, _) = fresh.installed().unwrap();
    let strip = |e: &LockEntry| {
        (
            e.name.clone(),
            e.version.clone(),
            e.archive_sha256.clone(),
            e.library_sha256.clone(),
            e.requirement.clone(),
        )
    };
    assert_eq!(
        old.iter().map(|p| strip(&p.entry)).collect::<Vec<_>>(),
        new.iter().map(|p| strip(&p.entry)).collect::<Vec<_>>()
    );
    // A second sync finds everything in place.
    let results = fresh.lock(&NoReporter).unwrap().sync(&cx).unwrap();
    assert!(
        results
            .iter()
            .all(|(_, r)| r.as_ref().is_ok_and(|o| !o.changed))
    );

    // Uninstall: the entry, then the directory.
    let removed = store.lock(&NoReporter).unwrap().uninstall("echo").unwrap();
    assert_eq!(removed.version.to_string(), "1.1.0");
    assert_eq!(version_of(&store, "echo"), None);
    assert!(!fx.home().join("plugins/echo").exists());
    assert_eq!(version_of(&store, "say-it").as_deref(), Some("1.0.0"));
}

/// Search keeps a pre-parsed listing of each catalog in the cache; it must follow every change
/// of the catalog, survive damage, and never answer for another registry.
#[test]
fn search_listings_follow_the_catalog_they_were_made_from() {
    let fx = Fixture::new();
    fx.publish(&plugin("echo", "1.0.0"));
    let store = fx.store();
    let served = StaticServer::start(fx.index());
    let local = fx.local(&store);
    let web = Registry::open("web", &fx.config(&served.url()), &store, false).unwrap();
    let names = |registry: &Registry| {
        search(
            std::slice::from_ref(registry),
            &SearchQuery::default(),
            &host(),
            &NoReporter,
        )
        .unwrap()
        .into_iter()
        .map(|h| format!("{}@{}", h.name, h.version))
        .collect::<Vec<_>>()
    };
    let listing = |name: &str| {
        store
            .index_cache_dir()
            .join(name)
            .join("search-listing.tsv")
    };
    for registry in [&local, &web] {
        assert_eq!(names(registry), ["echo@1.0.0"]);
        assert!(listing(registry.name()).is_file(), "{}", registry.name());
    }

    // A new version, a new plugin and a yank each change the answer at once.
    fx.publish(&plugin("echo", "1.1.0"));
    fx.publish(&plugin("zither", "0.1.0"));
    for registry in [&local, &web] {
        assert_eq!(names(registry), ["echo@1.1.0", "zither@0.1.0"]);
    }
    fx.edit_line("echo", "1.1.0", |line| line["yanked"] = true.into());
    for registry in [&local, &web] {
        assert_eq!(names(registry), ["echo@1.0.0", "zither@0.1.0"]);
    }

    // A listing made for one catalog is not taken for another: rows planted in a listing are
    // ignored once the catalog moves on, and a damaged listing is rebuilt.
    let planted = fs::read_to_string(listing("local")).unwrap() + "ghost\t9.9.9\tboo\taudio\ttts\n";
    fs::write(listing("local"), &planted).unwrap();
    assert!(
        names(&local).contains(&"ghost@9.9.9".to_string()),
        "the listing is what is read"
    );
    fx.publish(&plugin("echo", "1.2.0"));
    assert_eq!(names(&local), ["echo@1.2.0", "zither@0.1.0"]);
    fs::write(listing("local"), "garbage\n\u{0}\t\n").unwrap();
    assert_eq!(names(&local), ["echo@1.2.0", "zither@0.1.0"]);

    // An unwritable cache costs time, not answers.
    fs::remove_file(listing("web")).unwrap();
    fs::create_dir(listing("web")).unwrap();
    assert_eq!(names(&web), ["echo@1.2.0", "zither@0.1.0"]);

    // A cached listing never outlives its statement: past the expiry, search fails as an
    // install would, though the listing (and the statement files) are unchanged.
    assert_eq!(names(&local), ["echo@1.2.0", "zither@0.1.0"]);
    let later = fx
        .local(&store)
        .with_clock(SystemTime::now() + DEFAULT_VALIDITY + Duration::from_secs(60));
    let err = search(
        std::slice::from_ref(&later),
        &SearchQuery::default(),
        &host(),
        &NoReporter,
    )
    .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn installs_from_a_directory_and_a_file_url() {
    let fx = Fixture::new();
    fx.publish(&plugin("echo", "1.0.0"));
    let store = fx.store();
    let url = format!("file://{}", fx.index().display());
    for registry in [
        fx.local(&store),
        Registry::open("file", &fx.config(&url), &store, false).unwrap(),
    ] {
        let outcome = install_with(
            &store,
            &registry,
            "echo",
            &InstallOptions {
                reinstall: true,
                ..InstallOptions::default()
            },
            &probe,
            &NoReporter,
        )
        .unwrap();
        assert!(outcome.changed);
        assert_eq!(outcome.entry.version.to_string(), "1.0.0");
        assert_eq!(outcome.entry.requirement, "*");
        assert!(installed_text(&store, "echo").starts_with(MAGIC));
    }
}

#[test]
fn http_index_files_are_cached_with_etags_and_read_offline() {
    let fx = Fixture::new();
    fx.publish(&plugin("echo", "1.0.0"));
    let served = StaticServer::start(fx.index());
    let store = fx.store();
    let online = Registry::open("web", &fx.config(&served.url()), &store, false).unwrap();
    assert_eq!(online.versions("echo").unwrap().unwrap().lines.len(), 1);
    assert!(store.index_cache_dir().join("web/ec/ho/echo").is_file());

    // A second fetch is conditional, and the 304 reuses the cache.
    let again = Registry::open("web", &fx.config(&served.url()), &store, false).unwrap();
    assert_eq!(again.versions("echo").unwrap().unwrap().lines.len(), 1);
    let requests = served.requests_for("/ec/ho/echo");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("If-None-Match"), None);
    assert!(requests[1].header("If-None-Match").is_some());

    // A change on the server is seen.
    fx.publish(&plugin("echo", "1.1.0"));
    assert_eq!(again.versions("echo").unwrap().unwrap().lines.len(), 2);

    // Offline reads only the cache: no request is made.
    let before = served.requests().len();
    let offline = Registry::open("web", &fx.config(&served.url()), &store, true).unwrap();
    assert_eq!(offline.versions("echo").unwrap().unwrap().lines.len(), 2);
    match offline.versions("never-fetched").unwrap_err().kind() {
        ErrorKind::NotCached { registry, .. } => assert_eq!(registry, "web"),
        other => panic!("{other:?}"),
    }
    // Installing offline from an HTTP registry cannot download.
    let err = fx.install(&store, &offline, "echo").unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::NotCached { .. }), "{err}");
    assert_eq!(served.requests().len(), before);

    // 404, 410 and 451 mean no such plugin; other errors say what the server said.
    assert_eq!(again.versions("other").unwrap(), None);
    served.fault("/ot/he/other", Reply::Respond(Response::new(451)));
    assert_eq!(again.versions("other").unwrap(), None);
    // But a file the signed statement lists cannot be made to vanish.
    served.fault("/ec/ho/echo", Reply::Respond(Response::new(410)));
    let err = again.versions("echo").unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Freshness { .. }), "{err}");
    served.fault("/ec/ho/echo", Reply::Respond(Response::new(500)));
    let err = again.versions("echo").unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::HttpStatus { status: 500, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("/ec/ho/echo` answered with HTTP status 500"),
        "{err}"
    );
}

#[test]
fn an_unknown_name_suggests_close_ones() {
    let fx = Fixture::new();
    fx.publish(&plugin("sdxl-local", "1.0.0"));
    let store = fx.store();
    let registry = fx.local(&store);
    let err = fx.install(&store, &registry, "sdxl-locl").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no plugin named `sdxl-locl` in registry `local`; did you mean `sdxl-local`?"
    );
    assert!(matches!(
        err.kind(),
        ErrorKind::Resolve(ResolveError::NoSuchPlugin { .. })
    ));
    let err = fx.install(&store, &registry, "Not A Name").unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::InvalidSpec { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Refusals: each leaves the store exactly as it was, with the previous version working.

/// Installs echo 1.0.0, publishes echo 2.0.0, lets `spoil` break it, then asks for `spec` and
/// checks that nothing changed. Returns the error.
fn refused(spec: &str, spoil: impl FnOnce(&Fixture, &StaticServer)) -> Error {
    refused_with(spec, &InstallOptions::default(), &probe, spoil)
}

fn refused_with(
    spec: &str,
    options: &InstallOptions,
    validate: &launcher_registry::Validate,
    spoil: impl FnOnce(&Fixture, &StaticServer),
) -> Error {
    let fx = Fixture::new();
    fx.publish(&plugin("echo", "1.0.0"));
    let served = StaticServer::start(fx.index());
    let store = fx.store();
    let registry = Registry::open("web", &fx.config(&served.url()), &store, false).unwrap();
    fx.install(&store, &registry, "echo@1").unwrap();
    fx.publish(&plugin("echo", "2.0.0"));
    spoil(&fx, &served);

    let before = snapshot(&fx.home());
    let err = install_with(&store, &registry, spec, options, validate, &NoReporter).unwrap_err();
    assert_eq!(
        snapshot(&fx.home()),
        before,
        "refusing `{spec}` changed the store: {err}"
    );
    assert_eq!(version_of(&store, "echo").as_deref(), Some("1.0.0"));
    assert!(store.installed().unwrap().0[0].library_path.is_file());
    err
}

#[test]
fn refuses_a_checksum_mismatch() {
    let err = refused("echo@2", |fx, served| {
        // Same size, one byte changed in transit.
        let mut bytes = fs::read(fx.archive_path("echo", "2.0.0")).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        let path = format!("/archives/echo/echo-2.0.0-{}.tar.gz", host_target());
        served.fault(&path, Reply::Respond(Response::new(200).body(bytes)));
    });
    assert!(
        matches!(err.kind(), ErrorKind::ChecksumMismatch { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("checksum mismatch for `echo` 2.0.0: the archive is not the one with"),
        "{err}"
    );
}

#[test]
fn refuses_a_truncated_download() {
    let err = refused("echo@2", |fx, served| {
        let bytes = fs::read(fx.archive_path("echo", "2.0.0")).unwrap();
        let half = bytes.len() / 2;
        let path = format!("/archives/echo/echo-2.0.0-{}.tar.gz", host_target());
        served.fault(&path, Reply::Truncate(Response::new(200).body(bytes), half));
    });
    match err.kind() {
        ErrorKind::DownloadTruncated {
            received, declared, ..
        } => assert!(received < declared),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("ended early"), "{err}");
}

#[test]
fn refuses_a_download_larger_than_declared() {
    let err = refused("echo@2", |fx, _| {
        fx.edit_line("echo", "2.0.0", |line| {
            let size = line["targets"][host_target()]["size"].as_u64().unwrap();
            line["targets"][host_target()]["size"] = Value::from(size - 100);
        });
    });
    assert!(
        matches!(err.kind(), ErrorKind::DownloadTooLarge { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("exceeded its declared size"),
        "{err}"
    );
}

#[test]
fn refuses_a_download_larger_than_declared_without_content_length_help() {
    // From a directory there is no Content-Length: the cap itself must cut the stream.
    let fx = Fixture::new();
    fx.publish(&plugin("echo", "1.0.0"));
    fx.edit_line("echo", "1.0.0", |line| {
        line["targets"][host_target()]["size"] = Value::from(1000);
    });
    let store = fx.store();
    let err = fx.install(&store, &fx.local(&store), "echo").unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::DownloadTooLarge { declared: 1000, .. }
        ),
        "{err}"
    );
    let staging_only = [(".staging".to_string(), "dir".to_string())];
    assert_eq!(snapshot(&fx.home()).files, staging_only);
}

fn signature_problem(err: &Error) -> &SignatureError {
    match err.kind() {
        ErrorKind::Signature { source, .. } => source,
        other => panic!("expected a signature error, got {other:?}"),
    }
}

#[test]
fn refuses_a_missing_signature() {
    let err = refused("echo@2", |fx, _| {
        fx.edit_line("echo", "2.0.0", |line| {
            line["targets"][host_target()]["sig"] = Value::from("");
        });
    });
    assert!(matches!(signature_problem(&err), SignatureError::Missing));
    assert_eq!(
        err.to_string(),
        format!(
            "signature check failed for `echo` 2.0.0 ({})",
            host_target()
        )
    );
}

#[test]
fn refuses_a_bad_signature() {
    let err = refused("echo@2", |fx, _| {
        // A genuine signature by the trusted key, of other bytes.
        let other = fx.work().join("other");
        fs::write(&other, b"something else").unwrap();
        let sig = sign(&other, &fx.keys.secret, None, &fx.comment("echo", "2.0.0")).unwrap();
        fx.edit_line("echo", "2.0.0", |line| {
            line["targets"][host_target()]["sig"] = Value::from(sig.clone());
        });
    });
    assert!(
        matches!(signature_problem(&err), SignatureError::Invalid(_)),
        "{err:?}"
    );
}

#[test]
fn refuses_a_signature_by_an_untrusted_key() {
    let err = refused("echo@2", |fx, _| {
        let bytes = fs::read(fx.archive_path("echo", "2.0.0")).unwrap();
        let stranger = KeyPair::generate(None).unwrap();
        fx.replace_archive(
            "echo",
            "2.0.0",
            &bytes,
            &stranger,
            &fx.comment("echo", "2.0.0"),
        );
    });
    assert!(
        matches!(signature_problem(&err), SignatureError::UntrustedKey { .. }),
        "{err:?}"
    );
}

#[test]
fn refuses_a_signature_made_for_another_plugin_or_target() {
    for (name, target) in [
        ("other", host_target()),
        ("echo", "aarch64-apple-darwin".to_string()),
    ] {
        let err = refused("echo@2", |fx, _| {
            // The genuine archive of another plugin or target, swapped in under echo 2.0.0.
            let bytes = fs::read(fx.archive_path("echo", "2.0.0")).unwrap();
            let comment = trusted_comment(name, &Version::new(2, 0, 0), &target);
            fx.replace_archive("echo", "2.0.0", &bytes, &fx.keys, &comment);
        });
        match signature_problem(&err) {
            SignatureError::CommentMismatch { found, .. } => {
                assert!(found.contains(&format!("name={name}")) && found.contains(&target));
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Publishes a validly signed archive of echo 2.0.0 holding a real package plus `extra`.
fn hostile(extra: Item<'static>) -> Error {
    refused("echo@2", move |fx, _| {
        let (toml, library, bytes) = package_files(fx, &plugin("echo", "2.0.0"));
        let archive = tar_gz(&[
            Item::File("plugin.toml", &toml),
            Item::File(&library, &bytes),
            extra,
        ]);
        fx.replace_archive(
            "echo",
            "2.0.0",
            &archive,
            &fx.keys,
            &fx.comment("echo", "2.0.0"),
        );
    })
}

fn archive_problem(err: &Error) -> &ArchiveError {
    match err.kind() {
        ErrorKind::UnsafeArchive { source, .. } => source,
        other => panic!("expected an unsafe archive, got {other:?}"),
    }
}

#[test]
fn refuses_an_archive_with_parent_paths() {
    let err = hostile(Item::File("../../.bashrc", b"evil"));
    assert!(matches!(
        archive_problem(&err),
        ArchiveError::Escapes { .. }
    ));
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        chain.contains("entry `../../.bashrc` escapes the install directory"),
        "{chain}"
    );
}

#[test]
fn refuses_an_archive_with_an_absolute_path() {
    let err = hostile(Item::File("/tmp/launcher-registry-test-owned", b"evil"));
    assert!(matches!(
        archive_problem(&err),
        ArchiveError::Absolute { .. }
    ));
    assert!(!Path::new("/tmp/launcher-registry-test-owned").exists());
}

#[test]
fn refuses_an_archive_with_a_symlink() {
    let err = hostile(Item::Symlink("escape", "/"));
    assert!(matches!(archive_problem(&err), ArchiveError::Link { .. }));
}

#[test]
fn refuses_an_archive_bomb() {
    let err = hostile(Item::Huge("zeros", 64 << 30));
    assert!(matches!(
        archive_problem(&err),
        ArchiveError::TooLarge { .. }
    ));
}

#[test]
fn refuses_a_package_that_disagrees_with_its_index_line() {
    let err = refused("echo@2", |fx, _| {
        let (toml, library, bytes) = package_files(fx, &plugin("echo", "2.0.0"));
        let toml = String::from_utf8(toml)
            .unwrap()
            .replace("version = \"2.0.0\"", "version = \"9.9.9\"");
        let archive = tar_gz(&[
            Item::File("plugin.toml", toml.as_bytes()),
            Item::File(&library, &bytes),
        ]);
        fx.replace_archive(
            "echo",
            "2.0.0",
            &archive,
            &fx.keys,
            &fx.comment("echo", "2.0.0"),
        );
    });
    assert!(
        matches!(err.kind(), ErrorKind::PackageMismatch { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("version is `2.0.0` in the index but `9.9.9` in the package"),
        "{err}"
    );
}

#[test]
fn refuses_a_library_that_fails_validation_or_names_another_plugin() {
    let crashing = |_: &Path| Err("the library crashed while loading (SIGSEGV)".to_string());
    let err = refused_with("echo@2", &InstallOptions::default(), &crashing, |_, _| {});
    assert!(matches!(err.kind(), ErrorKind::Validation { .. }), "{err}");
    assert!(err.to_string().contains("SIGSEGV"), "{err}");

    let impostor = |path: &Path| {
        let mut manifest = probe(path)?;
        manifest.name = "other".to_string();
        Ok(manifest)
    };
    let err = refused_with("echo@2", &InstallOptions::default(), &impostor, |_, _| {});
    assert!(
        err.to_string()
            .contains("reports itself as `other` 2.0.0, not `echo` 2.0.0"),
        "{err}"
    );
}

#[test]
fn refuses_an_index_line_for_another_abi() {
    let err = refused("echo@2", |fx, _| {
        fs::remove_dir_all(fx.index().join("archives/echo")).ok();
        let relative = launcher_registry::index_path("echo").unwrap();
        let text = fs::read_to_string(fx.index().join(&relative)).unwrap();
        let kept: String = text
            .lines()
            .filter(|l| !l.contains("\"2.0.0\""))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(fx.index().join(&relative), kept).unwrap();
        let mut future = plugin("echo", "2.0.0");
        future.abi = 3;
        fx.publish(&future);
    });
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Resolve(ResolveError::Incompatible { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("2.0.0 needs plugin ABI 3"),
        "{err}"
    );
}

#[test]
fn refuses_only_yanked_versions_unless_allowed() {
    let yank_two = |fx: &Fixture, _: &StaticServer| {
        yank(
            &fx.index(),
            "echo",
            &Version::new(2, 0, 0),
            true,
            Some(&signing(&fx.key_path())),
        )
        .unwrap()
    };
    let err = refused("echo@2", yank_two);
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Resolve(ResolveError::OnlyYanked { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("pass --allow-yanked"), "{err}");

    let fx = Fixture::new();
    fx.publish(&plugin("echo", "2.0.0"));
    yank(
        &fx.index(),
        "echo",
        &Version::new(2, 0, 0),
        true,
        Some(&signing(&fx.key_path())),
    )
    .unwrap();
    let store = fx.store();
    let registry = fx.local(&store);
    let options = InstallOptions {
        allow_yanked: true,
        ..InstallOptions::default()
    };
    let outcome = install_with(&store, &registry, "echo@2", &options, &probe, &NoReporter).unwrap();
    assert_eq!(outcome.entry.version.to_string(), "2.0.0");
    // Pinned by the lockfile, a yanked version stays acceptable without the flag.
    let again = fx.install(&store, &registry, "echo@2").unwrap();
    assert!(!again.changed);
}

#[test]
fn refuses_a_version_with_no_build_for_this_target() {
    let err = refused("echo@2", |fx, _| {
        let relative = launcher_registry::index_path("echo").unwrap();
        let text = fs::read_to_string(fx.index().join(&relative)).unwrap();
        let kept: String = text
            .lines()
            .filter(|l| !l.contains("\"2.0.0\""))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(fx.index().join(&relative), kept).unwrap();
        fx.publish_for(&plugin("echo", "2.0.0"), "riscv64gc-unknown-none-elf");
    });
    assert_eq!(
        err.to_string(),
        format!(
            "`echo` 2.0.0 has no build for {} (available: riscv64gc-unknown-none-elf)",
            host_target()
        )
    );
}

#[test]
fn skips_index_lines_of_an_unknown_schema() {
    let fx = Fixture::new();
    fx.publish(&plugin("echo", "1.0.0"));
    let relative = launcher_registry::index_path("echo").unwrap();
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(fx.index().join(relative))
        .unwrap();
    writeln!(
        file,
        r#"{{"v":2,"name":"echo","vers":"9.0.0","abi":1,"future":{{"shape":"unknown"}}}}"#
    )
    .unwrap();
    fx.resign();
    struct Warnings(Mutex<Vec<String>>);
    impl Reporter for Warnings {
        fn warning(&self, message: &str) {
            self.0.lock().unwrap().push(message.to_string());
        }
    }
    let warnings = Warnings(Mutex::default());
    let store = fx.store();
    let outcome = install_with(
        &store,
        &fx.local(&store),
        "echo",
        &InstallOptions::default(),
        &probe,
        &warnings,
    )
    .unwrap();
    assert_eq!(outcome.entry.version.to_string(), "1.0.0");
    assert!(
        warnings.0.lock().unwrap().is_empty(),
        "an unknown schema is skipped silently"
    );
}

// ---------------------------------------------------------------------------------------------
// Interruptions, concurrency, damage

/// Runs in a child process (see `killed_installs_leave_the_previous_version`): installs and
/// aborts the process at the stage named by `KILL_AT`.
#[test]
#[ignore = "a helper run by the kill tests in a child process"]
fn kill_helper() {
    struct Killer(String);
    impl Reporter for Killer {
        fn download_progress(&self, _: &str, _: u64) {
            if self.0 == "download" {
                std::process::abort();
            }
        }
        fn stage(&self, _: &str, _: &Version, stage: Stage) {
            if format!("{stage:?}") == self.0 {
                std::process::abort();
            }
        }
    }
    // Run directly (`--include-ignored`) it has nothing to do.
    if std::env::var_os("KILL_AT").is_none() {
        return;
    }
    let var = |name: &str| std::env::var(name).unwrap();
    let store = Store::open(var("KILL_HOME")).unwrap();
    let config = RegistryConfig {
        index: var("KILL_INDEX"),
        trust: vec![var("KILL_KEY")],
    };
    let registry = Registry::open("local", &config, &store, false).unwrap();
    let options = InstallOptions {
        reinstall: true,
        ..InstallOptions::default()
    };
    let result = install_with(
        &store,
        &registry,
        &var("KILL_SPEC"),
        &options,
        &probe,
        &Killer(var("KILL_AT")),
    );
    panic!("the install was not killed: {result:?}");
}

fn run_killed(fx: &Fixture, spec: &str, at: &str) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "kill_helper",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KILL_HOME", fx.home())
        .env("KILL_INDEX", fx.index())
        .env("KILL_KEY", fx.keys.public_base64())
        .env("KILL_SPEC", spec)
        .env("KILL_AT", at)
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child at {at} was not killed");
}

#[test]
fn killed_installs_leave_the_previous_version() {
    for at in [
        "download",
        "Verifying",
        "Extracting",
        "Validating",
        "Installing",
        "Recording",
    ] {
        let fx = Fixture::new();
        fx.publish(&plugin("echo", "1.0.0"));
        let store = fx.store();
        let registry = fx.local(&store);
        fx.install(&store, &registry, "echo").unwrap();
        fx.publish(&plugin("echo", "2.0.0"));
        let before = snapshot(&fx.home());
        let first_line = installed_text(&store, "echo");

        run_killed(&fx, "echo@2", at);

        // The lockfile still names 1.0.0, whose directory is whole; the next lock cleans up.
        assert_eq!(
            version_of(&store, "echo").as_deref(),
            Some("1.0.0"),
            "killed at {at}"
        );
        assert_eq!(installed_text(&store, "echo"), first_line);
        drop(store.lock(&NoReporter).unwrap());
        assert_eq!(snapshot(&fx.home()), before, "killed at {at}");

        // And the store works: the install goes through now.
        let outcome = fx.install(&store, &registry, "echo@2").unwrap();
        assert_eq!(outcome.entry.version.to_string(), "2.0.0");
    }
}

#[test]
fn a_killed_replacement_of_the_same_version_is_undone() {
    let fx = Fixture::new();
    // The registry has echo 2.0.0; the store has a locally built 2.0.0 with other bytes.
    fx.publish(&plugin("echo", "2.0.0"));
    let mut local = plugin("echo", "2.0.0");
    local.flavour = 7;
    let library = write_library(&fx.work(), &local);
    let store = fx.store();
    store
        .lock(&NoReporter)
        .unwrap()
        .install_local(&library, &probe, &NoReporter)
        .unwrap();
    let before = snapshot(&fx.home());

    for at in ["Installing", "Recording"] {
        run_killed(&fx, "echo@=2.0.0", at);
        drop(store.lock(&NoReporter).unwrap());
        assert_eq!(snapshot(&fx.home()), before, "killed at {at}");
        let (installed, _) = store.installed().unwrap();
        assert!(matches!(installed[0].entry.source, Source::Path { .. }));
        assert!(installed_text(&store, "echo").ends_with(" 7"));
    }
}

#[test]
fn two_installs_at_once_both_land() {
    let fx = Fixture::new();
    fx.publish(&plugin("alpha", "1.0.0"));
    fx.publish(&plugin("beta", "1.0.0"));
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();

    struct Slow(Mutex<Option<std::sync::mpsc::Sender<()>>>);
    impl Reporter for Slow {
        fn stage(&self, _: &str, _: &Version, stage: Stage) {
            if stage == Stage::Validating {
                if let Some(tx) = self.0.lock().unwrap().take() {
                    tx.send(()).unwrap();
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }
    struct Waits(Mutex<bool>);
    impl Reporter for Waits {
        fn waiting_for_lock(&self, _: &Path) {
            *self.0.lock().unwrap() = true;
        }
    }

    std::thread::scope(|scope| {
        let fx = &fx;
        let first = scope.spawn(move || {
            let store = fx.store();
            let registry = fx.local(&store);
            let host = host();
            let slow = Slow(Mutex::new(Some(started_tx)));
            let cx = InstallContext {
                registries: std::slice::from_ref(&registry),
                host: &host,
                validate: &probe,
                reporter: &slow,
            };
            let mut lock = store.lock(&NoReporter).unwrap();
            lock.install(&cx, &"alpha".parse().unwrap(), &InstallOptions::default())
                .unwrap();
        });
        started_rx.recv().unwrap();
        let second = scope.spawn(move || {
            let store = fx.store();
            let registry = fx.local(&store);
            let host = host();
            let cx = InstallContext {
                registries: std::slice::from_ref(&registry),
                host: &host,
                validate: &probe,
                reporter: &NoReporter,
            };
            let waits = Waits(Mutex::new(false));
            let mut lock = store.lock(&waits).unwrap();
            lock.install(&cx, &"beta".parse().unwrap(), &InstallOptions::default())
                .unwrap();
            assert!(
                *waits.0.lock().unwrap(),
                "the second install waited for the first"
            );
        });
        first.join().unwrap();
        second.join().unwrap();
    });

    let store = fx.store();
    let (installed, warnings) = store.installed().unwrap();
    assert!(warnings.is_empty());
    let names: Vec<&str> = installed.iter().map(|p| p.entry.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert!(installed.iter().all(|p| p.library_path.is_file()));
}

#[test]
fn a_corrupt_lockfile_entry_is_skipped_and_the_rest_keeps_working() {
    let fx = Fixture::new();
    fx.publish(&plugin("alpha", "1.0.0"));
    fx.publish(&plugin("beta", "1.0.0"));
    fx.publish(&plugin("gamma", "1.0.0"));
    let store = fx.store();
    let registry = fx.local(&store);
    fx.install(&store, &registry, "alpha").unwrap();
    fx.install(&store, &registry, "beta").unwrap();

    let text = fs::read_to_string(store.lockfile_path()).unwrap();
    let damaged = text.replacen("name = \"beta\"", "name = \"beta\nabi = [oops", 1);
    fs::write(store.lockfile_path(), &damaged).unwrap();

    let (installed, warnings) = store.installed().unwrap();
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0].entry.name, "alpha");
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("plugins.lock: entry at line"),
        "{warnings:?}"
    );
    assert!(warnings[0].ends_with("; ignored"), "{warnings:?}");

    // Installing something else keeps the damaged entry (and its directory) for repair.
    fx.install(&store, &registry, "gamma").unwrap();
    let after = fs::read_to_string(store.lockfile_path()).unwrap();
    assert!(after.contains("name = \"beta\nabi = [oops"), "{after}");
    assert!(fx.home().join("plugins/beta/1.0.0").is_dir());
    let (lockfile, warnings) = Lockfile::read(&store.lockfile_path()).unwrap();
    assert_eq!(warnings.len(), 1);
    let names: Vec<&str> = lockfile.plugins.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["alpha", "gamma"]);
}

#[test]
fn sync_reinstalls_pinned_yanked_versions_and_local_libraries_but_not_changed_archives() {
    let fx = Fixture::new();
    fx.publish(&plugin("echo", "1.0.0"));
    fx.publish(&plugin("echo", "1.1.0"));
    let store = fx.store();
    let registry = fx.local(&store);
    fx.install(&store, &registry, "echo@=1.0.0").unwrap();
    let local = write_library(&fx.work(), &plugin("mine", "0.3.0"));
    store
        .lock(&NoReporter)
        .unwrap()
        .install_local(&local, &probe, &NoReporter)
        .unwrap();
    yank(
        &fx.index(),
        "echo",
        &Version::new(1, 0, 0),
        true,
        Some(&signing(&fx.key_path())),
    )
    .unwrap();

    let lockfile = fs::read(store.lockfile_path()).unwrap();
    let sync_into = |name: &str| {
        let home = fx.root.path().join(name);
        fs::create_dir_all(&home).unwrap();
        fs::write(home.join("plugins.lock"), &lockfile).unwrap();
        let fresh = Store::open(&home).unwrap();
        let registry = fx.local(&fresh);
        let host = host();
        let cx = InstallContext {
            registries: std::slice::from_ref(&registry),
            host: &host,
            validate: &probe,
            reporter: &NoReporter,
        };
        let results = fresh.lock(&NoReporter).unwrap().sync(&cx).unwrap();
        (fresh, results)
    };

    let (fresh, results) = sync_into("fresh");
    for (name, result) in &results {
        assert!(result.is_ok(), "{name}: {result:?}");
    }
    assert_eq!(version_of(&fresh, "echo").as_deref(), Some("1.0.0"));
    assert_eq!(version_of(&fresh, "mine").as_deref(), Some("0.3.0"));
    let recorded = |store: &Store| {
        let (installed, _) = store.installed().unwrap();
        installed
            .into_iter()
            .map(|p| {
                let e = p.entry;
                (
                    e.name,
                    e.version,
                    e.source,
                    e.requirement,
                    e.archive_sha256,
                    e.library_sha256,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(recorded(&fresh), recorded(&store));

    // The registry now serves other bytes for echo 1.0.0: sync refuses rather than drift.
    let bytes = fs::read(fx.archive_path("echo", "1.1.0")).unwrap();
    fx.replace_archive(
        "echo",
        "1.0.0",
        &bytes,
        &fx.keys,
        &fx.comment("echo", "1.0.0"),
    );
    fs::write(&local, b"rebuilt since").unwrap();
    let (other, results) = sync_into("other");
    let errors: Vec<String> = results
        .iter()
        .map(|(name, r)| {
            format!(
                "{name}: {}",
                r.as_ref()
                    .map(|_| "ok".to_string())
                    .unwrap_or_else(|e| e.to_string())
            )
        })
        .collect();
    assert!(
        errors[0].starts_with("echo: checksum mismatch for `echo` 1.0.0"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("that library is gone or has changed"),
        "{errors:?}"
    );
    assert_eq!(
        other.installed().unwrap().0.len(),
        2,
        "the lockfile is kept as it was"
    );
    assert!(!other.home().join("plugins/echo").exists());
}

#[test]
fn registries_are_searched_in_order_unless_one_is_named() {
    let first = Fixture::new();
    let second = Fixture::new();
    first.publish(&plugin("alpha", "1.0.0"));
    second.publish(&plugin("alpha", "2.0.0"));
    second.publish(&plugin("beta", "1.0.0"));
    let store = first.store();
    let registries = [
        Registry::open(
            "first",
            &first.config(first.index().to_str().unwrap()),
            &store,
            false,
        )
        .unwrap(),
        Registry::open(
            "second",
            &second.config(second.index().to_str().unwrap()),
            &store,
            false,
        )
        .unwrap(),
    ];
    let host = host();
    let cx = InstallContext {
        registries: &registries,
        host: &host,
        validate: &probe,
        reporter: &NoReporter,
    };
    let install = |spec: &str, registry: Option<&str>| {
        let options = InstallOptions {
            registry: registry.map(str::to_string),
            ..InstallOptions::default()
        };
        store
            .lock(&NoReporter)
            .unwrap()
            .install(&cx, &spec.parse().unwrap(), &options)
    };
    let alpha = install("alpha", None).unwrap();
    assert_eq!(alpha.entry.version.to_string(), "1.0.0");
    let beta = install("beta", None).unwrap();
    assert!(
        matches!(&beta.entry.source, Source::Registry { registry, .. } if registry == "second")
    );
    let alpha = install("alpha", Some("second")).unwrap();
    assert_eq!(alpha.entry.version.to_string(), "2.0.0");
    let err = install("beta", Some("first")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no plugin named `beta` in registry `first`"
    );
    let err = install("beta", Some("third")).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::UnknownRegistry { .. }),
        "{err}"
    );

    // Search takes each name from the first registry that has it.
    let hits = search(&registries, &SearchQuery::default(), &host, &NoReporter).unwrap();
    let found: Vec<String> = hits
        .iter()
        .map(|h| format!("{}@{} ({})", h.name, h.version, h.registry))
        .collect();
    assert_eq!(found, ["alpha@1.0.0 (first)", "beta@1.0.0 (second)"]);
}

/// Collects warnings.
#[derive(Default)]
struct Warnings(Mutex<Vec<String>>);

impl Reporter for Warnings {
    fn warning(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

#[test]
fn many_bad_index_and_catalog_lines_give_one_warning_each() {
    let fx = Fixture::new();
    fx.publish(&plugin("echo", "1.0.0"));
    let relative = launcher_registry::index_path("echo").unwrap();
    let mut bad = String::new();
    for i in 0..1000 {
        bad.push_str(&format!(
            "{{\"v\":1,\"name\":\"Echo\\u001b[31m{i}\",\"vers\":\"1.0.{i}\",\"abi\":1,\"host\":\"*\",\"targets\":{{}}}}\n"
        ));
    }
    for file in [fx.index().join(relative), fx.index().join("catalog.jsonl")] {
        let mut text = fs::read_to_string(&file).unwrap();
        text.push_str(&bad);
        fs::write(&file, text).unwrap();
    }
    fx.resign();
    let store = fx.store();
    let registry = fx.local(&store);
    let warnings = Warnings::default();
    install_with(
        &store,
        &registry,
        "echo",
        &InstallOptions::default(),
        &probe,
        &warnings,
    )
    .unwrap();
    let seen = warnings.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains("skipped 1000 lines"), "{seen:?}");
    // Escapes in a hostile name are not passed on raw.
    assert!(!seen[0].contains('\u{1b}'), "{seen:?}");

    let warnings = Warnings::default();
    let hits = search(
        std::slice::from_ref(&registry),
        &SearchQuery::default(),
        &host(),
        &warnings,
    )
    .unwrap();
    assert_eq!(hits.len(), 1);
    let seen = warnings.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains("skipped 1000 catalog lines"), "{seen:?}");
}

#[test]
fn an_index_that_forgets_a_version_seen_before_is_an_old_copy() {
    let fx = Fixture::new();
    fx.publish(&plugin("echo", "1.0.0"));
    fx.publish(&plugin("echo", "2.0.0"));
    let store = fx.store();
    let registry = fx.local(&store);
    let outcome = fx.install(&store, &registry, "echo@^1").unwrap();
    assert_eq!(outcome.entry.seen, Some(Version::new(2, 0, 0)));
    let before = snapshot(&fx.home());

    // The publisher's key re-signs an index without 2.0.0: fresh, but it forgot a version.
    let relative = launcher_registry::index_path("echo").unwrap();
    for file in [fx.index().join(relative), fx.index().join("catalog.jsonl")] {
        let text = fs::read_to_string(&file).unwrap();
        let kept: String = text
            .lines()
            .filter(|l| !l.contains("\"vers\":\"2.0.0\""))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&file, kept).unwrap();
    }
    fx.resign();
    let registry = fx.local(&store);
    let err = fx.install(&store, &registry, "echo@^1").unwrap_err();
    match err.kind() {
        ErrorKind::Stale { message, hint, .. } => {
            assert!(message.contains("does not list 2.0.0"), "{message}");
            assert!(hint.contains("--allow-downgrade"), "{hint}");
        }
        other => panic!("{other:?}"),
    }
    let cx_host = host();
    let cx = InstallContext {
        registries: std::slice::from_ref(&registry),
        host: &cx_host,
        validate: &probe,
        reporter: &NoReporter,
    };
    let results = store.update(&cx, None).unwrap();
    assert!(
        matches!(
            results[0].1.as_ref().map_err(Error::kind),
            Err(ErrorKind::Stale { .. })
        ),
        "{:?}",
        results[0].1
    );
    assert!(
        outdated(
            &store,
            std::slice::from_ref(&registry),
            &host(),
            &NoReporter
        )
        .is_err()
    );
    assert_eq!(snapshot(&fx.home()), before);
}

#[test]
fn going_below_the_installed_version_needs_to_be_allowed() {
    let fx = Fixture::new();
    fx.publish(&plugin("echo", "1.0.0"));
    fx.publish(&plugin("echo", "2.0.0"));
    let store = fx.store();
    let registry = fx.local(&store);
    fx.install(&store, &registry, "echo").unwrap();
    let err = fx.install(&store, &registry, "echo@^1").unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Downgrade { .. }), "{err}");
    assert!(err.to_string().contains("`echo@^1` asks for it"), "{err}");
    let allowed = InstallOptions {
        allow_downgrade: true,
        ..InstallOptions::default()
    };
    let outcome =
        install_with(&store, &registry, "echo@^1", &allowed, &probe, &NoReporter).unwrap();
    assert_eq!(outcome.entry.version, Version::new(1, 0, 0));
    // It remembers that 2.0.0 exists.
    assert_eq!(outcome.entry.seen, Some(Version::new(2, 0, 0)));
}
