//! The plugin store under kill -9 and concurrent readers: the real binary, killed at each step
//! of the commit sequence by the store's test-only failpoints (debug builds only), must leave a
//! store every later command can use and repair.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;

use launcher_testkit::cli::{TestContext, list_dir};
use launcher_testkit::test_context;

use crate::registry::{installed_version, registry};

/// The steps of a commit, in order; the change happens at the lockfile's rename, between the
/// third and the fourth.
const STEPS: [&str; 4] = [
    "commit-staged",
    "commit-moved-in",
    "replacing-plugins.lock",
    "commit-recorded",
];

/// Runs launcher with `args`, asking it to be killed with SIGKILL at `step`, and checks that
/// it was.
#[track_caller]
fn kill_at(ctx: &TestContext, step: &str, args: &[&str], version: &str) {
    let output = ctx
        .cmd()
        .args(args)
        .env("LAUNCHER_TEST_KILL_AT", step)
        .env("LAUNCHER_FIXTURE_VERSION", version)
        .output()
        .unwrap();
    assert_eq!(
        output.status.signal(),
        Some(9),
        "`launcher {}` was not killed at {step}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Checks that `list`, `run` and `outdated` work and see panicky at `version` (or not at all).
#[track_caller]
fn assert_usable(ctx: &TestContext, version: Option<&str>, output: &str) {
    let list = ctx.run(["list"]);
    list.success();
    assert!(!list.stderr.contains("warning"), "{}", list.stderr);
    assert_eq!(
        installed_version(ctx, "panicky").as_deref(),
        version,
        "{output}"
    );
    if version.is_some() {
        ctx.run([
            "run",
            "panicky",
            "--mode",
            "ok",
            "--text",
            "hi",
            "-o",
            &format!("{output}.wav"),
        ])
        .success();
    }
    ctx.run(["outdated"]).success();
}

/// Checks that nothing is left over: one version directory, the one the lockfile names, and
/// no staging entry or temporary lockfile.
#[track_caller]
fn assert_tidy(ctx: &TestContext) {
    let home = ctx.home.path();
    assert_eq!(
        list_dir(&home.join("plugins/.staging")),
        Vec::<String>::new()
    );
    let temporary: Vec<String> = list_dir(home)
        .into_iter()
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(temporary.is_empty(), "{temporary:?}");
    let versions = list_dir(&home.join("plugins/panicky"));
    assert_eq!(versions.len(), 1, "{versions:?}");
    let dir = installed(ctx, "dir");
    assert_eq!(dir, format!("plugins/panicky/{}", versions[0]));
}

/// Returns a string field of panicky's lockfile entry.
fn installed(ctx: &TestContext, field: &str) -> String {
    let lock = std::fs::read_to_string(ctx.home.path().join("plugins.lock")).unwrap();
    let entry = lock
        .split("[[plugins]]")
        .find(|e| e.contains("name = \"panicky\""))
        .expect("panicky is in the lockfile");
    let prefix = format!("{field} = \"");
    entry
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no {field} in {entry}"))
        .to_string()
}

fn installed_library(ctx: &TestContext) -> PathBuf {
    ctx.home
        .path()
        .join(installed(ctx, "dir"))
        .join(installed(ctx, "library"))
}

#[test]
fn a_fresh_install_killed_at_any_step_leaves_a_store_that_works_and_install_completes() {
    let ctx = test_context!();
    let _reg = registry(&ctx);
    for step in STEPS {
        kill_at(&ctx, step, &["install", "panicky"], "0.1.0");
        let landed = step == "commit-recorded";
        assert_usable(&ctx, landed.then_some("0.1.0"), step);

        let again = ctx.run(["install", "panicky"]);
        again.success();
        let said = if landed {
            "panicky 0.1.0 is already installed"
        } else {
            "installed panicky 0.1.0"
        };
        assert!(again.stderr.contains(said), "{step}: {}", again.stderr);
        assert_usable(&ctx, Some("0.1.0"), &format!("{step}-again"));
        assert_tidy(&ctx);
        ctx.run(["uninstall", "panicky"]).success();
    }

    // Killed after uninstall recorded it: gone, and its directory goes with the next change.
    ctx.run(["install", "panicky"]).success();
    kill_at(
        &ctx,
        "uninstall-recorded",
        &["uninstall", "panicky"],
        "0.1.0",
    );
    assert_usable(&ctx, None, "uninstalled");
    ctx.run(["uninstall", "panicky"]).expect_code(3);
    assert!(!ctx.home.path().join("plugins/panicky").exists());
}

#[test]
fn a_reinstall_or_upgrade_killed_at_any_step_leaves_one_version_working() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    ctx.run(["install", "panicky"]).success();
    for step in STEPS {
        kill_at(&ctx, step, &["install", "--reinstall", "panicky"], "0.1.0");
        assert_usable(&ctx, Some("0.1.0"), step);
        let again = ctx.run(["install", "--reinstall", "panicky"]);
        again.success();
        assert!(
            again.stderr.contains("reinstalled panicky 0.1.0"),
            "{step}: {}",
            again.stderr
        );
        assert_usable(&ctx, Some("0.1.0"), &format!("{step}-again"));
        assert_tidy(&ctx);
    }

    let mut current = "0.1.0";
    for (step, next) in STEPS.into_iter().zip(["0.2.0", "0.3.0", "0.4.0", "0.5.0"]) {
        reg.publish_panicky(&ctx, next);
        let spec = format!("panicky@{next}");
        kill_at(&ctx, step, &["install", &spec], next);
        let landed = step == "commit-recorded";
        let name = format!("upgrade-{step}");
        assert_usable(&ctx, Some(if landed { next } else { current }), &name);
        ctx.run_with_env(["install", &spec], &[("LAUNCHER_FIXTURE_VERSION", next)])
            .success();
        assert_usable(&ctx, Some(next), &format!("{name}-again"));
        assert_tidy(&ctx);
        current = next;
    }
}

#[test]
fn install_update_and_sync_repair_an_install_whose_files_do_not_match_the_lockfile() {
    let ctx = test_context!();
    let _reg = registry(&ctx);
    ctx.run(["install", "panicky"]).success();
    for command in [
        &["install", "panicky"][..],
        &["update", "panicky"],
        &["sync"],
    ] {
        std::fs::write(installed_library(&ctx), b"tampered").unwrap();
        let list = ctx.run(["list"]);
        assert!(
            list.stderr.contains("changed or vanished") && list.stderr.contains("`launcher sync`"),
            "{}",
            list.stderr
        );
        let repaired = ctx.run(command);
        repaired.success();
        assert!(
            repaired.stderr.contains("reinstalled panicky 0.1.0"),
            "{command:?}: {}",
            repaired.stderr
        );
        assert_usable(&ctx, Some("0.1.0"), &command.join("-"));
        assert_tidy(&ctx);
    }

    // The same bytes with another time (a home copied without keeping times) are recorded
    // afresh by the next reader, and are no reason to reinstall.
    let library = installed_library(&ctx);
    let lock = ctx.home.path().join("plugins.lock");
    let recorded = installed(&ctx, "dir");
    let before = std::fs::read_to_string(&lock).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&library)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .unwrap();
    assert_usable(&ctx, Some("0.1.0"), "touched");
    assert_ne!(std::fs::read_to_string(&lock).unwrap(), before);
    let again = ctx.run(["install", "panicky"]);
    assert!(
        again.stderr.contains("already installed"),
        "{}",
        again.stderr
    );
    assert_eq!(installed(&ctx, "dir"), recorded);
}

#[test]
fn a_run_that_read_the_lockfile_before_an_upgrade_still_loads_its_library() {
    let ctx = test_context!();
    let reg = registry(&ctx);
    ctx.run(["install", "panicky"]).success();
    reg.publish_panicky(&ctx, "0.2.0");
    let old = ctx.home.path().join(installed(&ctx, "dir"));

    // The run stops right after reading the lockfile, before it loads the library.
    let go = ctx.work_file("go");
    let mut reader = ctx
        .cmd()
        .args([
            "run", "panicky", "--mode", "ok", "--text", "hi", "-o", "slow.wav",
        ])
        .env(
            "LAUNCHER_TEST_PAUSE_AT",
            format!("store-read:{}", go.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(reader.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("paused at store-read") {
        line.clear();
        assert_ne!(
            stderr.read_line(&mut line).unwrap(),
            0,
            "the run never paused"
        );
    }

    // The upgrade neither waits for the reader nor takes its directory away.
    ctx.run_with_env(
        ["install", "panicky@0.2.0"],
        &[("LAUNCHER_FIXTURE_VERSION", "0.2.0")],
    )
    .success();
    assert_eq!(installed_version(&ctx, "panicky").as_deref(), Some("0.2.0"));
    assert!(
        old.is_dir(),
        "{} went while a reader used it",
        old.display()
    );

    std::fs::write(&go, "").unwrap();
    let status = reader.wait().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{rest}");
    assert!(ctx.work_file("slow.wav").is_file());

    // With no reader left, the next change removes it.
    ctx.run(["install", "panicky@0.2.0"]).success();
    assert!(!old.exists());
    assert_tidy(&ctx);
}
