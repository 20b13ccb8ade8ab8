//! The registry end to end: real libraries published, served over loopback HTTP, searched,
//! installed, updated and synced by the real binary.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use launcher_testkit::cli::{Outcome, TestContext};
use launcher_testkit::http::{Reply, Response, StaticServer};
use launcher_testkit::test_context;

/// A registry directory with a signing key, served over HTTP.
pub(super) struct Published {
    dir: tempfile::TempDir,
    server: StaticServer,
}

impl Published {
    fn index(&self) -> PathBuf {
        self.dir.path().join("index")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("keys/publisher.key")
    }

    fn public_key(&self) -> PathBuf {
        self.dir.path().join("keys/publisher.pub")
    }

    /// Publishes the panicky fixture as `version`.
    pub(super) fn publish_panicky(&self, ctx: &TestContext, version: &str) {
        let library = ctx.built_library("launcher_fixture_panicky");
        ctx.run_with_env(
            [
                "publish",
                library.to_str().unwrap(),
                "--index",
                self.index().to_str().unwrap(),
                "--key",
                self.key().to_str().unwrap(),
            ],
            &[("LAUNCHER_FIXTURE_VERSION", version)],
        )
        .success();
    }

    fn archive(&self, name: &str, version: &str) -> PathBuf {
        let dir = self.index().join("archives").join(name);
        std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .contains(&format!("-{version}-"))
            })
            .unwrap_or_else(|| panic!("no archive of {name} {version} in {}", dir.display()))
    }
}

/// Makes a key, publishes espeak and panicky 0.1.0, serves the registry and adds it.
pub(super) fn registry(ctx: &TestContext) -> Published {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    let published = Published {
        server: StaticServer::start(&index),
        dir,
    };
    ctx.run(["registry", "keygen", published.key().to_str().unwrap()])
        .success();
    let espeak = ctx.built_library("launcher_plugin_espeak");
    ctx.run([
        "publish",
        espeak.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
        "--key",
        published.key().to_str().unwrap(),
    ])
    .success();
    published.publish_panicky(ctx, "0.1.0");
    ctx.run([
        "registry",
        "add",
        "test",
        &published.server.url(),
        "--trust",
        published.public_key().to_str().unwrap(),
    ])
    .success();
    published
}

pub(super) fn installed_version(ctx: &TestContext, tool: &str) -> Option<String> {
    let list = ctx.run(["list", "--json"]).json();
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == tool && t["origin"] == "store")
        .map(|t| t["version"].as_str().unwrap().to_string())
}

/// Everything the store holds: the lockfile and the files under `plugins/` (not staging).
fn store_state(home: &Path) -> Vec<(String, u64)> {
    let mut state = Vec::new();
    let lock = home.join("plugins.lock");
    if let Ok(bytes) = std::fs::read(&lock) {
        state.push((String::from_utf8_lossy(&bytes).into_owned(), 0));
    }
    fn walk(dir: &Path, state: &mut Vec<(String, u64)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                walk(&path, state);
            } else {
                state.push((path.display().to_string(), entry.metadata().unwrap().len()));
            }
        }
    }
    walk(&home.join("plugins"), &mut state);
    state.sort();
    state
}

#[test]
fn publish_search_install_run_update_outdated_uninstall_sync() {
    let ctx = test_context!();
    let reg = registry(&ctx);

    let all = ctx.run(["search"]);
    all.success();
    assert!(
        all.stdout.contains("espeak") && all.stdout.contains("panicky"),
        "{}",
        all.stdout
    );
    let by_text = ctx.run(["search", "misbehaves"]);
    assert!(
        by_text.stdout.contains("panicky") && !by_text.stdout.contains("espeak"),
        "{}",
        by_text.stdout
    );
    let by_task = ctx.run(["search", "--task", "voices", "--json"]).json();
    let names: Vec<&str> = by_task
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["espeak"]);
    // search and list describe espeak in the same words.
    let listed = ctx.run(["list", "--json"]).json();
    let espeak = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "espeak")
        .unwrap()
        .clone();
    assert_eq!(by_task[0]["description"], espeak["description"], "{espeak}");
    let by_category = ctx.run(["search", "--category", "video"]);
    by_category.success();
    assert!(
        by_category.stdout.trim().is_empty(),
        "{}",
        by_category.stdout
    );

    ctx.run(["install", "panicky"]).success();
    assert_eq!(installed_version(&ctx, "panicky").as_deref(), Some("0.1.0"));
    ctx.run([
        "run", "panicky", "--mode", "ok", "--text", "hi", "-o", "one.wav",
    ])
    .success();
    let again = ctx.run(["install", "panicky"]);
    again.success();
    assert!(
        again.stderr.contains("already installed"),
        "{}",
        again.stderr
    );

    reg.publish_panicky(&ctx, "0.2.0");
    reg.publish_panicky(&ctx, "1.0.0");
    let outdated = ctx.run(["outdated", "--json"]).json();
    let row = &outdated.as_array().unwrap()[0];
    assert_eq!(
        (row["name"].as_str(), row["installed"].as_str()),
        (Some("panicky"), Some("0.1.0"))
    );
    assert_eq!(row["latest"], "1.0.0");

    // Validation runs the library, whose manifest version comes from the environment.
    ctx.run_with_env(
        ["update", "panicky"],
        &[("LAUNCHER_FIXTURE_VERSION", "1.0.0")],
    )
    .success();
    assert_eq!(installed_version(&ctx, "panicky").as_deref(), Some("1.0.0"));
    ctx.run_with_env(
        ["install", "panicky@~0.2"],
        &[("LAUNCHER_FIXTURE_VERSION", "0.2.0")],
    )
    .success();
    assert_eq!(installed_version(&ctx, "panicky").as_deref(), Some("0.2.0"));
    ctx.run(["install", "espeak"]).success();

    // A new machine: the lockfile and the registry list are all it needs.
    let fresh = test_context!();
    for file in ["plugins.lock", "registries.toml"] {
        std::fs::copy(ctx.home.path().join(file), fresh.home.path().join(file)).unwrap();
    }
    fresh
        .run_with_env(["sync"], &[("LAUNCHER_FIXTURE_VERSION", "0.2.0")])
        .success();
    assert_eq!(
        installed_version(&fresh, "panicky").as_deref(),
        Some("0.2.0")
    );
    assert_eq!(
        installed_version(&fresh, "espeak").as_deref(),
        Some("0.1.0")
    );
    fresh
        .run([
            "run",
            "panicky",
            "--mode",
            "ok",
            "--text",
            "hi",
            "-o",
            "synced.wav",
        ])
        .success();

    ctx.run(["uninstall", "panicky"]).success();
    assert_eq!(installed_version(&ctx, "panicky"), None);
}

#[track_caller]
fn assert_refused(
    ctx: &TestContext,
    out: &Outcome,
    code: i32,
    message: &str,
    before: &[(String, u64)],
) {
    assert_eq!(out.code, code, "{out:#?}");
    assert!(
        out.stderr.contains(message),
        "expected `{message}` in: {}",
        out.stderr
    );
    assert_eq!(store_state(ctx.home.path()), before, "the store changed");
}

#[test]
fn tampered_or_unverifiable_downloads_install_nothing() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    ctx.run(["install", "panicky"]).success();
    let before = store_state(ctx.home.path());
    reg.publish_panicky(&ctx, "0.2.0");

    // Checksum: the archive on the server no longer matches its index line.
    let archive = reg.archive("panicky", "0.2.0");
    let original = std::fs::read(&archive).unwrap();
    let mut tampered = original.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0xff;
    std::fs::write(&archive, &tampered).unwrap();
    let env = [("LAUNCHER_FIXTURE_VERSION", "0.2.0")];
    let out = ctx.run_with_env(["install", "panicky@0.2.0"], &env);
    assert_refused(&ctx, &out, 11, "checksum mismatch", &before);
    std::fs::write(&archive, &original).unwrap();

    // Truncated download.
    let path = format!("/{}", archive.strip_prefix(reg.index()).unwrap().display());
    reg.server.fault(
        &path,
        Reply::Truncate(
            Response::new(200).body(original.clone()),
            original.len() / 3,
        ),
    );
    let out = ctx.run_with_env(["install", "panicky@0.2.0"], &env);
    assert_refused(&ctx, &out, 11, "ended early", &before);

    // More bytes than the index declares.
    let mut longer = original.clone();
    longer.extend_from_slice(&[0u8; 4096]);
    reg.server
        .fault(&path, Reply::Respond(Response::new(200).body(longer)));
    let out = ctx.run_with_env(["install", "panicky@0.2.0"], &env);
    assert_refused(&ctx, &out, 11, "exceeded its declared size", &before);

    // Signed by a key this client does not trust.
    let other = tempfile::tempdir().unwrap();
    let other_key = other.path().join("other.key");
    ctx.run(["registry", "keygen", other_key.to_str().unwrap()])
        .success();
    ctx.run([
        "registry",
        "add",
        "test",
        &reg.server.url(),
        "--trust",
        other_key.with_extension("pub").to_str().unwrap(),
    ])
    .success();
    let fresh_server = StaticServer::start(reg.index());
    ctx.run([
        "registry",
        "add",
        "test",
        &fresh_server.url(),
        "--trust",
        other_key.with_extension("pub").to_str().unwrap(),
    ])
    .success();
    let out = ctx.run_with_env(["install", "panicky@0.2.0"], &env);
    assert_refused(&ctx, &out, 11, "signature check failed", &before);

    // The previous version still runs.
    ctx.run([
        "run",
        "panicky",
        "--mode",
        "ok",
        "--text",
        "hi",
        "-o",
        "still.wav",
    ])
    .success();
}

#[test]
fn resolution_failures_say_why() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    let out = ctx.run(["install", "panicy"]);
    out.expect_code(3);
    assert!(
        out.stderr.contains("panicky"),
        "close match suggested: {}",
        out.stderr
    );
    let out = ctx.run(["install", "panicky@^3"]);
    out.expect_code(3);
    assert!(
        out.stderr.contains("0.1.0"),
        "available versions named: {}",
        out.stderr
    );

    ctx.run([
        "yank",
        "panicky@0.1.0",
        "--index",
        reg.index().to_str().unwrap(),
    ])
    .success();
    let out = ctx.run(["install", "panicky"]);
    out.expect_code(3);
    assert!(
        out.stderr.contains("yanked") && out.stderr.contains("--allow-yanked"),
        "{}",
        out.stderr
    );
    ctx.run(["install", "panicky", "--allow-yanked"]).success();
    ctx.run([
        "yank",
        "panicky@0.1.0",
        "--index",
        reg.index().to_str().unwrap(),
        "--undo",
    ])
    .success();
    assert!(ctx.run(["search", "panicky"]).stdout.contains("panicky"));

    ctx.run(["registry", "remove", "test"]).success();
    let out = ctx.run(["search"]);
    out.expect_code(3);
    assert!(out.stderr.contains("registry add"), "{}", out.stderr);
}

#[test]
fn a_killed_download_leaves_the_previous_version_working() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    ctx.run(["install", "panicky"]).success();
    let before = store_state(ctx.home.path());
    reg.publish_panicky(&ctx, "0.2.0");
    let archive = reg.archive("panicky", "0.2.0");
    let path = format!("/{}", archive.strip_prefix(reg.index()).unwrap().display());
    reg.server.fault(&path, Reply::Hang);

    let mut child = ctx
        .cmd()
        .args(["install", "panicky@0.2.0"])
        .env("LAUNCHER_FIXTURE_VERSION", "0.2.0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while reg.server.requests_for(&path).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the download never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(store_state(ctx.home.path()), before);
    ctx.run([
        "run",
        "panicky",
        "--mode",
        "ok",
        "--text",
        "hi",
        "-o",
        "after-kill.wav",
    ])
    .success();
    assert_eq!(installed_version(&ctx, "panicky").as_deref(), Some("0.1.0"));
}

#[test]
fn two_installs_at_once_both_land() {
    let ctx = test_context!();
    let _reg = registry(&ctx);
    let spawn = |name: &str| {
        ctx.cmd()
            .args(["install", name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn("panicky");
    let b = spawn("espeak");
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert_eq!(installed_version(&ctx, "panicky").as_deref(), Some("0.1.0"));
    assert_eq!(installed_version(&ctx, "espeak").as_deref(), Some("0.1.0"));
}

#[test]
fn a_corrupt_lockfile_entry_is_skipped_with_a_warning() {
    let ctx = test_context!();
    let _reg = registry(&ctx);
    ctx.run(["install", "panicky"]).success();
    let lock = ctx.home.path().join("plugins.lock");
    let mut text = std::fs::read_to_string(&lock).unwrap();
    text.push_str("\n[[plugins]]\nname = \"broken\"\nversion = \"not semver\"\n");
    std::fs::write(&lock, text).unwrap();
    let out = ctx.run(["list"]);
    out.success();
    assert!(out.stdout.contains("panicky"), "{}", out.stdout);
    assert!(
        out.stderr.contains("warning:") && out.stderr.contains("plugins.lock"),
        "{}",
        out.stderr
    );
    // Installing another plugin keeps the unreadable entry rather than dropping it.
    ctx.run(["install", "espeak"]).success();
    assert!(
        std::fs::read_to_string(&lock)
            .unwrap()
            .contains("not semver")
    );
}

#[test]
fn install_update_and_sync_report_what_they_did_as_json() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    let installed = ctx.run(["install", "panicky", "--json"]);
    let doc = installed.success().json();
    assert_eq!(doc["schema"], 1);
    let plugin = &doc["plugins"][0];
    assert_eq!(
        (&plugin["name"], &plugin["version"], &plugin["action"]),
        (&"panicky".into(), &"0.1.0".into(), &"installed".into())
    );
    assert_eq!(plugin["registry"], "test");
    assert!(plugin["previous"].is_null());
    let again = ctx.run(["install", "panicky", "--json"]).json();
    assert_eq!(again["plugins"][0]["action"], "unchanged");

    reg.publish_panicky(&ctx, "0.2.0");
    let updated = ctx.run_with_env(
        ["update", "--json"],
        &[("LAUNCHER_FIXTURE_VERSION", "0.2.0")],
    );
    let plugin = &updated.success().json()["plugins"][0];
    assert_eq!(
        (&plugin["action"], &plugin["previous"], &plugin["version"]),
        (&"updated".into(), &"0.1.0".into(), &"0.2.0".into())
    );

    let fresh = test_context!();
    for file in ["plugins.lock", "registries.toml"] {
        std::fs::copy(ctx.home.path().join(file), fresh.home.path().join(file)).unwrap();
    }
    let synced = fresh.run_with_env(["sync", "--json"], &[("LAUNCHER_FIXTURE_VERSION", "0.2.0")]);
    let doc = synced.success().json();
    // The copied lockfile records it, so the store counts this as a reinstall, as the text does.
    let plugin = &doc["plugins"][0];
    assert_eq!(
        (&plugin["action"], &plugin["version"]),
        (&"reinstalled".into(), &"0.2.0".into())
    );

    // A failure is JSON on stderr, with its documented exit code.
    let missing = ctx.run(["install", "no-such-plugin", "--json"]);
    missing.expect_code(3);
    let error: serde_json::Value = serde_json::from_str(&missing.stderr).expect("stderr is JSON");
    assert_eq!(error["error"]["class"], "not_found");
}

#[test]
fn search_and_list_name_the_plugin_alike() {
    let ctx = test_context!();
    let _reg = registry(&ctx);
    let hits = ctx.run(["search", "panicky", "--json"]).json();
    let hit = &hits.as_array().unwrap()[0];
    assert_eq!(
        (&hit["plugin"], &hit["name"]),
        (&"panicky".into(), &"panicky".into())
    );
    ctx.run(["install", "panicky"]).success();
    let tools = ctx.run(["list", "--json"]).json();
    let tool = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["plugin"] == "panicky")
        .expect("panicky listed");
    for field in ["plugin", "version", "categories", "tasks", "description"] {
        assert!(!tool[field].is_null() && !hit[field].is_null(), "{field}");
    }
}

#[test]
fn hints_lead_to_search_only_when_a_registry_is_configured() {
    let ctx = test_context!();
    let none = ctx.run(["registry", "list"]);
    none.success();
    assert!(
        none.stderr.contains("no registry") && none.stderr.contains("launcher registry add"),
        "{none:#?}"
    );
    let missing = ctx.run(["run", "txt2vid", "a fox"]);
    missing.expect_code(3);
    assert!(
        !missing.stderr.contains("launcher search"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("launcher registry add"),
        "{}",
        missing.stderr
    );

    let _reg = registry(&ctx);
    let found = ctx.run(["run", "txt2vid", "a fox"]);
    found.expect_code(3);
    assert!(found.stderr.contains("launcher search"), "{}", found.stderr);
    let listed = ctx.run(["registry", "list"]);
    assert!(listed.stdout.starts_with("test "), "{listed:#?}");
}

#[test]
fn a_missing_trust_file_is_named() {
    let ctx = test_context!();
    let out = ctx.run([
        "registry",
        "add",
        "mine",
        "/tmp/launcher-no-such-index",
        "--trust",
        "keys/publisher.pub",
    ]);
    out.expect_code(5);
    assert!(
        out.stderr.contains("keys/publisher.pub") && out.stderr.contains("does not exist"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("Base64"), "{}", out.stderr);
}
