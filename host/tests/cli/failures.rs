//! What users see when plugins misbehave, settings are missing, or the user cancels.

use std::time::{Duration, Instant};

use launcher_testkit::test_context;

#[test]
fn a_panicking_plugin_fails_its_job_and_leaves_no_output() {
    let ctx = test_context!();
    ctx.add_plugin("launcher_fixture_panicky", "panicky");
    let out = ctx.run(["run", "panicky", "--text", "hi", "-o", "half.wav"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("panicked") && out.stderr.contains("on purpose"),
        "{}",
        out.stderr
    );
    assert!(
        ctx.work_files().is_empty(),
        "partial output left: {:?}",
        ctx.work_files()
    );
    // The host goes on: other tools still work in the next run.
    ctx.run(["run", "tts", "--text", "still here", "-o", "ok.wav"])
        .success();
}

#[test]
fn plugin_error_kinds_map_to_distinct_exit_codes() {
    let ctx = test_context!();
    ctx.add_plugin("launcher_fixture_panicky", "panicky");
    for (kind, code) in [
        ("invalid_input", 5),
        ("unauthorized", 6),
        ("rate_limited", 7),
        ("unavailable", 8),
        ("timeout", 9),
        ("internal", 1),
    ] {
        let out = ctx.run([
            "run",
            "panicky",
            "--text",
            "hi",
            "--mode",
            "error",
            "--error-kind",
            kind,
        ]);
        assert_eq!(out.code, code, "{kind}: {out:#?}");
        assert!(out.stderr.contains("failed on purpose"), "{}", out.stderr);
    }
    assert!(ctx.work_files().is_empty());
}

#[test]
fn a_tool_missing_a_setting_says_which_and_how() {
    let ctx = test_context!();
    let out = ctx.run(["run", "azure-tts", "--text", "hi"]);
    out.expect_code(4);
    assert!(
        out.stderr.contains("setting `key` is missing"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("AZURE_SPEECH_KEY"), "{}", out.stderr);
    assert!(ctx.work_files().is_empty());
    // Help is still shown for a tool that is not ready, with where its settings come from.
    let help = ctx.run(["run", "azure-tts", "--help"]);
    help.success();
    assert!(
        help.stdout.contains("$AZURE_SPEECH_KEY") && help.stdout.contains("not set"),
        "{}",
        help.stdout
    );
}

#[test]
fn ctrl_c_cancels_the_job_and_removes_partial_outputs() {
    let ctx = test_context!();
    ctx.add_plugin("launcher_fixture_panicky", "panicky");
    let child = ctx
        .cmd()
        .args([
            "run",
            "panicky",
            "--text",
            "hi",
            "--mode",
            "hang",
            "-o",
            "partial.wav",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the partial output exists, so the job is really running.
    let started = Instant::now();
    while !ctx.work_files().iter().any(|f| f.contains("partial.wav")) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the job never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancelled"));
    assert!(
        ctx.work_files().is_empty(),
        "partial output left: {:?}",
        ctx.work_files()
    );
}

#[test]
fn secrets_from_a_command_are_used_and_never_shown() {
    let ctx = test_context!();
    ctx.add_plugin("launcher_fixture_panicky", "panicky");
    ctx.config("[tools.azure-tts]\nkey_command = \"echo s3cr3t-from-command\"\nendpoint = \"http://127.0.0.1:9\"\n");
    let list = ctx.run(["list", "--json"]);
    let azure = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "azure-tts")
        .cloned()
        .unwrap();
    assert_eq!(
        azure["ready"], true,
        "a key command makes the tool ready without running it"
    );
    let out = ctx.run(["run", "azure-tts", "--text", "hi", "--set", "timeout=2"]);
    assert_ne!(out.code, 0);
    assert!(
        !out.stderr.contains("s3cr3t") && !out.stdout.contains("s3cr3t"),
        "{out:#?}"
    );
    let failing = "[tools.azure-tts]\nkey_command = \"exit 3\"\nregion = \"eastus\"\n";
    ctx.config(failing);
    let out = ctx.run(["run", "azure-tts", "--text", "hi"]);
    out.expect_code(4);
    assert!(
        out.stderr.contains("command for setting `key`"),
        "{}",
        out.stderr
    );
}

#[test]
fn settings_help_is_aligned_like_info_and_quiet_verbose_contradict() {
    let ctx = test_context!();
    let help = ctx.run(["run", "azure-tts", "--help"]);
    help.success();
    let info = ctx.run(["info", "azure-tts"]);
    info.success();
    let rows = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains("$AZURE_SPEECH_"))
            .map(str::to_string)
            .collect()
    };
    let (help_rows, info_rows) = (rows(&help.stdout), rows(&info.stdout));
    assert_eq!(help_rows.len(), 4, "{}", help.stdout);
    assert_eq!(help_rows, info_rows, "the same table in both");
    assert!(!help.stdout.contains("[not set]"), "{}", help.stdout);
    // Every column starts at the same place on every row.
    let column = |row: &String, needle: &str| row.find(needle);
    let descriptions: Vec<_> = help_rows.iter().map(|r| column(r, "not set")).collect();
    assert!(
        descriptions
            .windows(2)
            .all(|w| w[0] == w[1] && w[0].is_some()),
        "{help_rows:#?}"
    );

    for args in [
        &["-q", "-v", "list"][..],
        &["run", "tts", "-q", "-v", "hi"],
        &["-q", "run", "tts", "-v", "hi"],
    ] {
        let out = ctx.run(args);
        out.expect_code(2);
        assert!(ctx.work_files().is_empty(), "{args:?}");
    }
}

#[test]
fn a_launcher_home_that_is_a_file_is_named_as_the_problem() {
    let ctx = test_context!();
    let file = ctx.work_file("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let out = ctx.run_with_env(["list"], &[("LAUNCHER_HOME", file.to_str().unwrap())]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("LAUNCHER_HOME") && out.stderr.contains("not a directory"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("config.toml"), "{}", out.stderr);
}
