//! `install --path` and `uninstall`: the local side of the plugin store.

use launcher_testkit::test_context;

#[test]
fn a_local_library_is_validated_installed_listed_and_uninstalled() {
    let ctx = test_context!();
    let library = ctx.built_library("launcher_fixture_panicky");
    let out = ctx.run(["install", "--path", library.to_str().unwrap()]);
    out.success();
    assert!(
        out.stderr.contains("installed panicky 0.1.0"),
        "{}",
        out.stderr
    );

    let list = ctx.run(["list", "--json"]).json();
    let tool = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "panicky")
        .cloned()
        .expect("listed");
    assert_eq!(tool["origin"], "store");
    assert!(ctx.home.path().join("plugins.lock").is_file());
    ctx.run([
        "run", "panicky", "--mode", "ok", "--text", "hi", "-o", "ok.wav",
    ])
    .success();

    // The store copy is what runs: the original may go away.
    let uninstall = ctx.run(["uninstall", "panicky"]);
    uninstall.success();
    assert!(!ctx.run(["list"]).stdout.contains("panicky"));
    assert!(!ctx.home.path().join("plugins/panicky").exists());
    ctx.run(["uninstall", "panicky"]).expect_code(3);
}

#[test]
fn invalid_libraries_are_refused_and_nothing_is_installed() {
    let ctx = test_context!();
    let garbage = ctx.work_file("liblauncher_plugin_garbage.so");
    std::fs::write(&garbage, b"\x7fELF but not really").unwrap();
    let out = ctx.run(["install", "--path", garbage.to_str().unwrap()]);
    out.expect_code(5);
    assert!(out.stderr.contains("cannot be loaded"), "{}", out.stderr);

    let future = ctx.built_library("launcher_fixture_abi_future");
    let out = ctx.run(["install", "--path", future.to_str().unwrap()]);
    out.expect_code(5);
    assert!(out.stderr.contains("plugin ABI 3"), "{}", out.stderr);

    ctx.run(["install", "--path", "no-such-file.so"])
        .expect_code(3);
    let lock = ctx.home.path().join("plugins.lock");
    assert!(
        !lock.exists()
            || !std::fs::read_to_string(&lock)
                .unwrap()
                .contains("[[plugins]]")
    );
    let installed: Vec<String> = launcher_testkit::cli::list_dir(&ctx.home.path().join("plugins"))
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(installed.is_empty(), "{installed:?}");
}

#[test]
fn a_library_changed_after_install_is_skipped_with_a_warning() {
    let ctx = test_context!();
    let library = ctx.built_library("launcher_fixture_panicky");
    ctx.run(["install", "--path", library.to_str().unwrap()])
        .success();
    // Listed once, so the next listing answers from the store cache: the check of the library
    // must hold there too.
    assert!(ctx.run(["list"]).stdout.contains("panicky"));
    assert!(ctx.home.path().join("cache/store.json").is_file());
    let installed = ctx
        .home
        .path()
        .join("plugins/panicky/0.1.0")
        .join(library.file_name().unwrap());
    std::fs::write(&installed, b"tampered").unwrap();
    let out = ctx.run(["list"]);
    out.success();
    assert!(!out.stdout.contains("panicky"), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("changed or vanished since it was installed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("espeak"),
        "others keep working: {}",
        out.stdout
    );

    // The warning's advice repairs it from the library it was installed from.
    let advice = format!("`launcher install --path {}`", library.display());
    assert!(out.stderr.contains(&advice), "{}", out.stderr);
    ctx.run(["install", "--path", library.to_str().unwrap()])
        .success();
    let out = ctx.run(["list"]);
    assert!(out.stdout.contains("panicky"), "{}", out.stdout);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
}

/// `list` reads installed plugins from one cache file while the lockfile is unchanged; every
/// store change must show at once, and the cache must never add what the store does not have.
#[test]
fn listings_follow_every_change_of_the_store() {
    let ctx = test_context!();
    let cache = ctx.home.path().join("cache/store.json");
    let listed = |ctx: &launcher_testkit::cli::TestContext| {
        let list = ctx.run(["list", "--json"]).json();
        let mut ids: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["origin"] == "store")
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let panicky = ctx.built_library("launcher_fixture_panicky");
    ctx.run(["install", "--path", panicky.to_str().unwrap()])
        .success();
    assert_eq!(listed(&ctx), ["panicky"]);
    assert!(cache.is_file());
    assert_eq!(listed(&ctx), ["panicky"], "answered from the cache");

    // What the cache says is what is listed while the lockfile stays the same file...
    let text = std::fs::read_to_string(&cache).unwrap();
    std::fs::write(&cache, text.replace("\"panicky\"", "\"ghostly\"")).unwrap();
    assert!(
        listed(&ctx).contains(&"ghostly".to_string()),
        "the cache is read"
    );
    // ...and nothing of it survives a change of the store.
    let remote = ctx.built_library("launcher_fixture_remote");
    ctx.run(["install", "--path", remote.to_str().unwrap()])
        .success();
    let after_install = listed(&ctx);
    assert!(
        after_install.contains(&"panicky".to_string()),
        "{after_install:?}"
    );
    assert!(
        !after_install.contains(&"ghostly".to_string()),
        "{after_install:?}"
    );
    ctx.run(["uninstall", "panicky"]).success();
    let after_uninstall = listed(&ctx);
    assert!(
        !after_uninstall.contains(&"panicky".to_string()),
        "{after_uninstall:?}"
    );
    assert!(!after_uninstall.is_empty());

    // A damaged cache is as good as none.
    std::fs::write(&cache, b"{ not json").unwrap();
    assert_eq!(listed(&ctx), after_uninstall);
}
