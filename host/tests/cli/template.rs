//! `plugin new`: the crate it writes builds, passes its own tests, installs and runs.
//!
//! These are the end-to-end tests that run cargo. Generated crates build into one target
//! directory under the workspace's `target/`, so only the first run compiles the SDK and its
//! dependencies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use launcher_testkit::cli::TestContext;
use launcher_testkit::test_context;

/// Held by every test that runs cargo on a generated crate: such tests share a target
/// directory, and two of them at once would only wait on cargo's lock with half the machine
/// each.
static CARGO: Mutex<()> = Mutex::new(());

/// Returns the target directory generated crates share, beside the launcher's own builds.
fn shared_target_dir(ctx: &TestContext) -> PathBuf {
    // bin_dir is <target>/debug (or another profile's directory).
    ctx.bin_dir()
        .parent()
        .expect("the binary's profile directory has a parent")
        .join("plugin-template")
}

/// Runs `cargo <args>` in `dir`, offline, building into `target`; panics with its output on
/// failure.
fn cargo(dir: &Path, target: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO"))
        .args(args)
        // The workspace's lockfile (copied in) holds every crate the SDK needs, and a build of
        // the workspace has fetched them all, so the test needs no network.
        .arg("--offline")
        .env("CARGO_TARGET_DIR", target)
        .current_dir(dir)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {args:?} failed in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_new_plugin_builds_tests_installs_and_runs() {
    let _cargo = CARGO
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let ctx = test_context!();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().to_str().unwrap();

    let created = ctx.run(["plugin", "new", "demo", "--dir", dir]);
    created.success();
    assert!(
        created.stderr.contains("Created plugin `demo`"),
        "{}",
        created.stderr
    );
    let root = parent.path().join("demo");
    for file in [
        "Cargo.toml",
        "README.md",
        ".gitignore",
        "src/lib.rs",
        "tests/plugin.rs",
    ] {
        assert!(root.join(file).is_file(), "{file} is missing");
    }

    // A second run, and a name that is not an identifier, are refused.
    let again = ctx.run(["plugin", "new", "demo", "--dir", dir]);
    again.expect_code(10);
    assert!(again.stderr.contains("exists already"), "{}", again.stderr);
    let bad = ctx.run(["plugin", "new", "Demo_1", "--dir", dir]);
    bad.expect_code(2);
    assert!(
        bad.stderr.contains("cannot be a plugin name"),
        "{}",
        bad.stderr
    );

    let workspace_lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    std::fs::copy(workspace_lock, root.join("Cargo.lock")).expect("copy the lockfile");
    let target = shared_target_dir(&ctx);
    cargo(&root, &target, &["build"]);
    cargo(&root, &target, &["test"]);

    let library = target.join("debug").join(format!(
        "{}launcher_plugin_demo{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let install = ctx.run(["install", "--path", library.to_str().unwrap()]);
    install.success();
    assert!(
        install.stderr.contains("installed demo 0.1.0"),
        "{}",
        install.stderr
    );
    let run = ctx.run(["run", "demo", "hello"]);
    run.success();
    assert_eq!(run.stdout, "olleh\n");
}

#[test]
fn the_image_audio_and_video_templates_build_and_pass_their_own_tests() {
    let _cargo = CARGO
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let ctx = test_context!();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().to_str().unwrap();
    let workspace_lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    let target = shared_target_dir(&ctx);
    for kind in ["image", "audio", "video"] {
        let name = format!("demo-{kind}");
        ctx.run(["plugin", "new", &name, "--kind", kind, "--dir", dir])
            .success();
        let root = parent.path().join(&name);
        std::fs::copy(&workspace_lock, root.join("Cargo.lock")).expect("copy the lockfile");
        // The generated tests check the output's format (PNG, WAV, Y4M) through the ABI.
        cargo(&root, &target, &["test"]);
    }
}
