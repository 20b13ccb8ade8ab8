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
    // Going back is refused unless asked for.
    let back = ctx.run_with_env(
        ["install", "panicky@~0.2"],
        &[("LAUNCHER_FIXTURE_VERSION", "0.2.0")],
    );
    back.expect_code(15);
    assert!(
        back.stderr.contains("refusing to go back to 0.2.0")
            && back.stderr.contains("--allow-downgrade"),
        "{}",
        back.stderr
    );
    assert_eq!(installed_version(&ctx, "panicky").as_deref(), Some("1.0.0"));
    ctx.run_with_env(
        ["install", "panicky@~0.2", "--allow-downgrade"],
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
    // The registry's freshness statement is the first thing signed that the client checks.
    let out = ctx.run_with_env(["install", "panicky@0.2.0"], &env);
    assert_refused(&ctx, &out, 11, "which is not trusted", &before);

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
        "--key",
        reg.key().to_str().unwrap(),
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
        "--key",
        reg.key().to_str().unwrap(),
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
    // Every standard task has a bundled tool, so an empty listing is what asks for more.
    let missing = ctx.run(["list", "--category", "audio", "--task", "txt2vid"]);
    missing.success();
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
    let found = ctx.run(["list", "--category", "audio", "--task", "txt2vid"]);
    found.success();
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

// ---------------------------------------------------------------------------------------------
// Trust: freshness, downgrades, where archives come from, deadlines, caches.

/// Seconds since the Unix epoch, now.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Copies a directory tree (regular files and directories only).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

/// Serves an older copy of the index at the same address, as a replaying mirror would.
fn replace_tree(dir: &Path, with: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
    copy_tree(with, dir);
}

fn resign(ctx: &TestContext, reg: &Published, extra: &[&str]) {
    let (index, key) = (reg.index(), reg.key());
    let mut cmd = ctx.cmd();
    cmd.args(["registry", "refresh-signature", "--index"])
        .arg(&index)
        .arg("--key")
        .arg(&key)
        .args(extra);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn archive_url_path(reg: &Published, version: &str) -> String {
    let archive = reg.archive("panicky", version);
    format!("/{}", archive.strip_prefix(reg.index()).unwrap().display())
}

#[test]
fn a_replayed_older_signed_index_is_refused() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    let old = tempfile::tempdir().unwrap();
    copy_tree(&reg.index(), old.path());
    reg.publish_panicky(&ctx, "0.2.0");
    reg.publish_panicky(&ctx, "0.3.0");
    ctx.run_with_env(
        ["install", "panicky"],
        &[("LAUNCHER_FIXTURE_VERSION", "0.3.0")],
    )
    .success();
    ctx.run(["outdated"]).success();

    // The mirror now serves the index as it was before 0.2.0: validly signed, but older.
    replace_tree(&reg.index(), old.path());
    let before = store_state(ctx.home.path());
    for command in [vec!["install", "panicky"], vec!["outdated"], vec!["update"]] {
        let out = ctx.run(&command);
        assert_refused(&ctx, &out, 15, "is stale", &before);
        assert!(out.stderr.contains("old copy"), "{}", out.stderr);
    }
    // Even with the memory of statements gone, the lockfile knows 0.3.0 was installed from it.
    std::fs::remove_dir_all(ctx.home.path().join("trust")).unwrap();
    let out = ctx.run(["outdated"]);
    assert_refused(&ctx, &out, 15, "does not list 0.3.0", &before);
    assert_eq!(installed_version(&ctx, "panicky").as_deref(), Some("0.3.0"));
}

#[test]
fn an_expired_statement_is_an_error_until_the_publisher_resigns() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    let later = (now_secs() + 31 * 86_400).to_string();
    let out = ctx.run_with_env(["install", "panicky"], &[("LAUNCHER_TEST_NOW", &later)]);
    out.expect_code(15);
    assert!(
        out.stderr.contains("expired") && out.stderr.contains("refresh-signature"),
        "{}",
        out.stderr
    );
    assert_eq!(installed_version(&ctx, "panicky"), None);

    let mut cmd = ctx.cmd();
    cmd.env("LAUNCHER_TEST_NOW", &later);
    cmd.args([
        "registry",
        "refresh-signature",
        "--index",
        reg.index().to_str().unwrap(),
        "--key",
        reg.key().to_str().unwrap(),
    ]);
    assert!(cmd.status().unwrap().success());
    ctx.run_with_env(["install", "panicky"], &[("LAUNCHER_TEST_NOW", &later)])
        .success();
    // A statement that never expires is for local registries only.
    resign(&ctx, &reg, &["--expires", "never"]);
    let out = ctx.run(["search"]);
    out.expect_code(11);
    assert!(out.stderr.contains("never expires"), "{}", out.stderr);
}

#[test]
fn a_local_registry_without_a_statement_warns_but_works_and_an_http_one_fails() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    for file in ["freshness.json", "freshness.json.minisig"] {
        std::fs::remove_file(reg.index().join(file)).unwrap();
    }
    ctx.run([
        "registry",
        "add",
        "local",
        reg.index().to_str().unwrap(),
        "--trust",
        reg.public_key().to_str().unwrap(),
    ])
    .success();
    let out = ctx.run(["install", "panicky", "--registry", "local"]);
    out.success();
    assert!(
        out.stderr.contains("warning:") && out.stderr.contains("no signed freshness statement"),
        "{}",
        out.stderr
    );
    let out = ctx.run(["install", "espeak", "--registry", "test"]);
    out.expect_code(11);
    assert!(out.stderr.contains("must have"), "{}", out.stderr);

    // A never-expiring statement suits a local registry (setup.sh makes one).
    resign(&ctx, &reg, &["--expires", "never"]);
    let later = (now_secs() + 3650 * 86_400).to_string();
    let out = ctx.run_with_env(
        ["install", "espeak", "--registry", "local"],
        &[("LAUNCHER_TEST_NOW", &later)],
    );
    out.success();
    assert!(!out.stderr.contains("warning:"), "{}", out.stderr);
}

#[test]
fn yanked_after_install_shows_in_outdated_and_list() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    ctx.run(["install", "panicky"]).success();
    ctx.run([
        "yank",
        "panicky@0.1.0",
        "--index",
        reg.index().to_str().unwrap(),
        "--key",
        reg.key().to_str().unwrap(),
    ])
    .success();
    let outdated = ctx.run(["outdated", "--json"]).json();
    let row = &outdated.as_array().unwrap()[0];
    assert_eq!(
        (&row["name"], &row["yanked"]),
        (&"panicky".into(), &true.into())
    );
    let text = ctx.run(["outdated"]);
    assert!(text.stdout.contains("0.1.0 (yanked)"), "{}", text.stdout);
    assert!(text.stderr.contains("was yanked"), "{}", text.stderr);
    let list = ctx.run(["list"]);
    assert!(
        list.stdout.contains("panicky 0.1.0 (yanked)"),
        "{}",
        list.stdout
    );
    let tools = ctx.run(["list", "--json"]).json();
    let tool = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["plugin"] == "panicky")
        .unwrap()
        .clone();
    assert_eq!(tool["yanked"], true);
    // A yank without the key would leave the signed statement wrong: refused.
    let out = ctx.run([
        "yank",
        "espeak@0.1.0",
        "--index",
        reg.index().to_str().unwrap(),
    ]);
    out.expect_code(2);
    assert!(out.stderr.contains("--key"), "{}", out.stderr);
}

/// Points the registry's `dl` template at `dl` and re-signs the statement, so that only the
/// template is hostile.
fn set_dl(ctx: &TestContext, reg: &Published, dl: &str) {
    std::fs::write(
        reg.index().join("config.json"),
        serde_json::json!({ "dl": dl }).to_string(),
    )
    .unwrap();
    resign(ctx, reg, &[]);
}

#[test]
fn an_http_registry_cannot_point_downloads_at_local_files() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    let secret = ctx.work_file("secret-{name}-{version}-{target}");
    set_dl(&ctx, &reg, &format!("file://{}", secret.display()));
    let real = ctx.work_file(&format!(
        "secret-panicky-0.1.0-{}",
        launcher_registry::host_target()
    ));
    std::fs::write(&real, b"private bytes").unwrap();
    let before = store_state(ctx.home.path());
    let out = ctx.run(["install", "panicky"]);
    assert_refused(&ctx, &out, 11, "may download only over HTTP(S)", &before);
    // Nothing about the file leaks: no digest of it.
    let digest = launcher_registry::verify::sha256_file(&real).unwrap();
    assert!(!out.stderr.contains(&digest), "{}", out.stderr);
}

#[cfg(unix)]
#[test]
fn a_local_registry_downloads_only_regular_files() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    resign(&ctx, &reg, &["--expires", "never"]);
    ctx.run([
        "registry",
        "add",
        "local",
        reg.index().to_str().unwrap(),
        "--trust",
        reg.public_key().to_str().unwrap(),
    ])
    .success();
    let archive = reg.archive("panicky", "0.1.0");
    let before = store_state(ctx.home.path());

    std::fs::remove_file(&archive).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &archive).unwrap();
    let out = ctx.run(["install", "panicky", "--registry", "local"]);
    assert_refused(&ctx, &out, 11, "not a regular file", &before);

    std::fs::remove_file(&archive).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&archive)
        .status()
        .unwrap();
    assert!(made.success());
    let started = Instant::now();
    let out = ctx.run(["install", "panicky", "--registry", "local"]);
    assert_refused(&ctx, &out, 11, "not a regular file", &before);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the FIFO blocked"
    );
}

#[test]
fn a_huge_declared_size_is_refused_before_anything_is_written() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    let before = store_state(ctx.home.path());
    let out = ctx.run_with_env(["install", "panicky"], &[("LAUNCHER_MAX_DOWNLOAD", "1K")]);
    assert_refused(&ctx, &out, 11, "more than the 1024 bytes", &before);

    // An index line declaring a petabyte: more than any disk here has free.
    let relative = "pa/ni/panicky";
    let path = reg.index().join(relative);
    let text = std::fs::read_to_string(&path).unwrap();
    let size = regex_free_size(&text);
    let huge = text.replace(&format!("\"size\":{size}"), "\"size\":1125899906842624");
    std::fs::write(&path, huge).unwrap();
    resign(&ctx, &reg, &[]);
    let out = ctx.run_with_env(
        ["install", "panicky"],
        &[("LAUNCHER_MAX_DOWNLOAD", "2000000G")],
    );
    assert_refused(&ctx, &out, 11, "bytes free in", &before);
    assert!(
        reg.server
            .requests_for(&archive_url_path(&reg, "0.1.0"))
            .is_empty(),
        "nothing was fetched"
    );
}

/// Returns the `size` of the first artifact in an index file's text.
fn regex_free_size(text: &str) -> u64 {
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    line["targets"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()["size"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_trickling_download_hits_its_deadline_without_holding_the_store_lock() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    let path = archive_url_path(&reg, "0.1.0");
    reg.server.fault(
        &path,
        Reply::Stream(
            Response::new(200),
            launcher_testkit::http::StreamBody::new(|chunks| {
                loop {
                    chunks.send(b"x")?;
                    chunks.pause(Duration::from_millis(500))?;
                }
            }),
        ),
    );
    let started = Instant::now();
    let slow = ctx
        .cmd()
        .args(["install", "panicky"])
        .env("LAUNCHER_DOWNLOAD_GRACE", "4")
        .env("LAUNCHER_DOWNLOAD_MIN_RATE", "1G")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while reg.server.requests_for(&path).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Meanwhile another install takes the store lock, commits and finishes.
    let espeak = ctx.built_library("launcher_plugin_espeak");
    ctx.run(["install", "--path", espeak.to_str().unwrap()])
        .success();
    let out = slow.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{stderr}");
    assert!(stderr.contains("did not finish within 4 s"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(installed_version(&ctx, "panicky"), None);
    assert_eq!(installed_version(&ctx, "espeak").as_deref(), Some("0.1.0"));
}

#[test]
fn a_server_without_validators_still_gives_an_offline_cache_and_archives_are_kept() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    let bare = StaticServer::start_without_validators(reg.index());
    ctx.run([
        "registry",
        "add",
        "test",
        &bare.url(),
        "--trust",
        reg.public_key().to_str().unwrap(),
    ])
    .success();
    ctx.run(["install", "panicky"]).success();
    ctx.run(["search"]).success();
    drop(bare);

    // The server is gone: the cached index and the kept archive are enough.
    let search = ctx.run(["search", "--offline"]);
    search.success();
    assert!(search.stdout.contains("panicky"), "{}", search.stdout);
    ctx.run(["install", "panicky", "--offline", "--reinstall"])
        .success();
    std::fs::remove_dir_all(ctx.home.path().join("plugins/panicky")).unwrap();
    ctx.run(["sync", "--offline"]).success();
    ctx.run([
        "run",
        "panicky",
        "--mode",
        "ok",
        "--text",
        "hi",
        "-o",
        "offline.wav",
    ])
    .success();

    // Cleaning the cache takes that away, and says so.
    let clean = ctx.run(["cache", "clean", "--json"]).json();
    assert!(clean["freed"].as_u64().unwrap() > 0);
    let out = ctx.run(["install", "panicky", "--offline", "--reinstall"]);
    out.expect_code(8);
    assert!(out.stderr.contains("offline"), "{}", out.stderr);

    // A cache of size 0 keeps nothing.
    let bare = StaticServer::start_without_validators(reg.index());
    ctx.run(["registry", "remove", "test"]).success();
    ctx.run([
        "registry",
        "add",
        "test",
        &bare.url(),
        "--trust",
        reg.public_key().to_str().unwrap(),
    ])
    .success();
    ctx.run_with_env(
        ["install", "panicky", "--reinstall"],
        &[("LAUNCHER_ARCHIVE_CACHE_SIZE", "0")],
    )
    .success();
    let archives = ctx.home.path().join("cache/archives");
    assert!(
        launcher_testkit::cli::list_dir(&archives).is_empty(),
        "{:?}",
        launcher_testkit::cli::list_dir(&archives)
    );
}

#[test]
fn sync_from_a_lockfile_on_a_fresh_home_says_what_it_needs() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    ctx.run(["install", "panicky"]).success();
    let lockfile = ctx.home.path().join("plugins.lock");

    let fresh = test_context!();
    let out = fresh.run(["sync", "--lockfile", lockfile.to_str().unwrap()]);
    out.expect_code(3);
    let recorded = std::fs::read_to_string(&lockfile).unwrap();
    let key_id = recorded
        .lines()
        .find_map(|l| l.strip_prefix("signed_by = "))
        .expect("the lockfile records the signing key")
        .trim_matches('"')
        .to_string();
    assert!(
        out.stderr.contains("registry `test`")
            && out.stderr.contains(&reg.server.url())
            && out.stderr.contains(&key_id),
        "{}",
        out.stderr
    );
    // Trusting another key is not enough either.
    let other = fresh.work_file("other.key");
    fresh
        .run(["registry", "keygen", other.to_str().unwrap()])
        .success();
    fresh
        .run([
            "registry",
            "add",
            "test",
            &reg.server.url(),
            "--trust",
            other.with_extension("pub").to_str().unwrap(),
        ])
        .success();
    let out = fresh.run(["sync", "--lockfile", lockfile.to_str().unwrap()]);
    out.expect_code(3);
    assert!(out.stderr.contains("does not trust key"), "{}", out.stderr);

    fresh
        .run([
            "registry",
            "add",
            "test",
            &reg.server.url(),
            "--trust",
            reg.public_key().to_str().unwrap(),
        ])
        .success();
    fresh
        .run(["sync", "--lockfile", lockfile.to_str().unwrap()])
        .success();
    assert_eq!(
        installed_version(&fresh, "panicky").as_deref(),
        Some("0.1.0")
    );
}

#[test]
fn two_publishes_into_one_index_at_once_both_land_signed() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    let library = ctx.built_library("launcher_fixture_panicky");
    let spawn = |version: &str| {
        ctx.cmd()
            .args(["publish", library.to_str().unwrap(), "--index"])
            .arg(reg.index())
            .arg("--key")
            .arg(reg.key())
            .env("LAUNCHER_FIXTURE_VERSION", version)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = ["0.2.0", "0.3.0", "0.4.0"].map(spawn).into_iter().collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let index = std::fs::read_to_string(reg.index().join("pa/ni/panicky")).unwrap();
    assert_eq!(index.lines().count(), 4, "{index}");
    // The statement signed last covers every line: each version installs over HTTP.
    for version in ["0.2.0", "0.3.0", "0.4.0"] {
        ctx.run_with_env(
            ["install", &format!("panicky@={version}")],
            &[("LAUNCHER_FIXTURE_VERSION", version)],
        )
        .success();
    }
    assert_eq!(installed_version(&ctx, "panicky").as_deref(), Some("0.4.0"));
}
