//! The shell around launcher: colors, completions, the man page, JSON documents and errors.

use std::process::{Command, Stdio};

use launcher_testkit::test_context;

const RED_ERROR: &str = "\u{1b}[1m\u{1b}[31merror:";

#[test]
fn errors_are_colored_only_when_asked_or_forced() {
    let ctx = test_context!();
    // Piped, with NO_COLOR (as every test command is): plain text.
    let plain = ctx.run(["info", "no-such-tool"]);
    plain.expect_code(3);
    assert!(plain.stderr.starts_with("error: "), "{}", plain.stderr);
    assert!(!plain.stderr.contains('\u{1b}'), "{:?}", plain.stderr);
    // --color always beats NO_COLOR and the pipe.
    let always = ctx.run(["--color", "always", "info", "no-such-tool"]);
    always.expect_code(3);
    assert!(always.stderr.starts_with(RED_ERROR), "{:?}", always.stderr);
    assert!(
        always.stderr.contains("\u{1b}[1m\u{1b}[36mhint:"),
        "{:?}",
        always.stderr
    );
    // clap's usage errors follow --color as well.
    let usage = ctx.run(["--color", "always", "list", "--no-such-flag"]);
    usage.expect_code(2);
    assert!(usage.stderr.starts_with(RED_ERROR), "{:?}", usage.stderr);
    let usage = ctx.run(["list", "--no-such-flag"]);
    assert!(!usage.stderr.contains('\u{1b}'), "{:?}", usage.stderr);
    // CLICOLOR_FORCE colors a pipe when NO_COLOR is unset.
    let out = ctx
        .cmd()
        .env_remove("NO_COLOR")
        .env("CLICOLOR_FORCE", "1")
        .args(["info", "no-such-tool"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).starts_with(RED_ERROR));
    // --color never beats CLICOLOR_FORCE.
    let out = ctx
        .cmd()
        .env_remove("NO_COLOR")
        .env("CLICOLOR_FORCE", "1")
        .args(["--color", "never", "info", "no-such-tool"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\u{1b}'));
    // Without NO_COLOR but piped: plain.
    let out = ctx
        .cmd()
        .env_remove("NO_COLOR")
        .args(["info", "no-such-tool"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\u{1b}'));
    // Like -q and --json, --color may follow the target of `run`: it is the launcher's, not
    // a parameter of the tool.
    let after = ctx.run([
        "run",
        "tts",
        "--color",
        "always",
        "--text",
        "hi",
        "--no-such",
    ]);
    after.expect_code(2);
    assert!(after.stderr.starts_with(RED_ERROR), "{:?}", after.stderr);
    assert!(after.stderr.contains("--no-such"), "{}", after.stderr);
    let out = ctx.work_file("colored.wav");
    ctx.run([
        "run",
        "tts",
        "--text",
        "hi",
        "--color=never",
        "-o",
        out.to_str().unwrap(),
    ])
    .success();
    assert!(out.is_file());
    let bad = ctx.run(["run", "tts", "--text", "hi", "--color", "sometimes"]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("sometimes"), "{}", bad.stderr);
}

#[test]
fn warnings_are_colored_like_errors() {
    let mut ctx = test_context!();
    ctx.env("LAUNCHER_PLUGIN_PATH", "/no/such/launcher/plugins");
    let out = ctx.run(["--color", "always", "list"]);
    out.success();
    assert!(
        out.stderr
            .contains("\u{1b}[1m\u{1b}[33mwarning:\u{1b}[0m LAUNCHER_PLUGIN_PATH"),
        "{:?}",
        out.stderr
    );
    let out = ctx.run(["list"]);
    assert!(
        out.stderr.starts_with("warning: LAUNCHER_PLUGIN_PATH"),
        "{:?}",
        out.stderr
    );
}

#[test]
fn with_json_errors_are_json_on_stderr_and_exit_codes_stay() {
    let ctx = test_context!();
    let out = ctx.run(["info", "no-such-tool", "--json"]);
    out.expect_code(3);
    assert!(out.stdout.is_empty());
    let error: serde_json::Value = serde_json::from_str(&out.stderr).expect("stderr is JSON");
    assert_eq!(error["schema"], 1);
    assert_eq!(error["error"]["class"], "not_found");
    assert_eq!(error["error"]["code"], 3);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-tool")
    );
    assert!(error["error"]["hint"].is_string(), "{error}");

    // A usage error of a command line asking for JSON.
    let out = ctx.run(["list", "--json", "--no-such-flag"]);
    out.expect_code(2);
    let error: serde_json::Value = serde_json::from_str(&out.stderr).expect("stderr is JSON");
    assert_eq!(error["error"]["class"], "usage");
    assert_eq!(error["error"]["code"], 2);

    // A failing job of `run --json`.
    let out = ctx.run(["run", "no-such-task", "--json"]);
    out.expect_code(3);
    let error: serde_json::Value = serde_json::from_str(&out.stderr).expect("stderr is JSON");
    assert_eq!(error["error"]["code"], 3);
}

#[test]
fn install_and_uninstall_report_what_they_did_as_json() {
    let ctx = test_context!();
    let library = ctx.built_library("launcher_fixture_panicky");
    let out = ctx.run(["install", "--path", library.to_str().unwrap(), "--json"]);
    out.success();
    let doc = out.json();
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["plugins"][0]["name"], "panicky");
    assert_eq!(doc["plugins"][0]["action"], "installed");
    let out = ctx.run(["uninstall", "panicky", "--json"]);
    out.success();
    assert_eq!(out.json()["plugins"][0]["action"], "uninstalled");
    let out = ctx.run(["uninstall", "panicky", "--json"]);
    out.expect_code(3);
    let error: serde_json::Value = serde_json::from_str(&out.stderr).expect("stderr is JSON");
    assert_eq!(error["error"]["class"], "not_found");
}

#[test]
fn registry_add_and_remove_report_as_json() {
    let ctx = test_context!();
    let key = ctx.work_file("publisher.key");
    ctx.run(["registry", "keygen", key.to_str().unwrap()])
        .success();
    let public = key.with_extension("pub");
    let index = ctx.work_file("index");
    let out = ctx.run([
        "registry",
        "add",
        "team",
        index.to_str().unwrap(),
        "--trust",
        public.to_str().unwrap(),
        "--json",
    ]);
    out.success();
    let doc = out.json();
    assert_eq!(
        (doc["schema"].clone(), doc["action"].clone()),
        (1.into(), "added".into())
    );
    assert_eq!(doc["registry"]["name"], "team");
    let out = ctx.run(["registry", "remove", "team", "--json"]);
    out.success();
    assert_eq!(out.json()["action"], "removed");
    let out = ctx.run(["version", "--json"]);
    assert_eq!(out.json()["schema"], 1);
}

#[test]
fn json_objects_carry_the_schema_version() {
    let ctx = test_context!();
    assert_eq!(ctx.run(["info", "espeak", "--json"]).json()["schema"], 1);
    let out = ctx.run(["run", "tts", "--text", "hi", "-o", "hi.wav", "--json"]);
    assert_eq!(out.success().json()["schema"], 1);
    let logs = ctx.run(["logs", "--json"]).json();
    let job = logs[0]["id"].as_str().unwrap().to_string();
    for args in [
        vec!["logs", "show", job.as_str(), "--json"],
        vec!["config", "list", "--json"],
        vec!["config", "path", "--json"],
        vec!["run", "tts", "hi", "--dry-run", "--json"],
        vec!["rerun", job.as_str(), "--dry-run", "--json"],
    ] {
        let out = ctx.run(&args);
        assert_eq!(
            out.success().json()["schema"],
            1,
            "{args:?}: {}",
            out.stdout
        );
    }
    // Arrays stay arrays (the schema is the same number; `version --json` tells it).
    assert!(ctx.run(["list", "--json"]).json().is_array());
}

#[test]
fn config_keys_default_and_logs_report_as_json_and_fail_as_json() {
    let ctx = test_context!();
    let json = |args: &[&str]| {
        let out = ctx.run(args);
        let doc = out.success().json();
        assert_eq!(doc["schema"], 1, "{args:?}");
        doc
    };
    let set = json(&["config", "set", "defaults.confirm_over", "2.5", "--json"]);
    assert_eq!(
        (set["action"].clone(), set["value"].clone()),
        ("set".into(), 2.5.into())
    );
    assert_eq!(
        json(&["config", "get", "defaults.confirm_over", "--json"])["value"],
        2.5
    );
    let unset = json(&["config", "unset", "defaults.confirm_over", "--json"]);
    assert_eq!(unset["action"], "removed");
    assert_eq!(
        json(&["config", "unset", "defaults.confirm_over", "--json"])["action"],
        "unchanged"
    );
    // A secret set in the config file (with a warning) is never echoed back.
    let secret = ctx.run([
        "config",
        "set",
        "tools.azure-tts.key",
        "k-secret-2",
        "--json",
    ]);
    assert!(
        !secret.success().stdout.contains("k-secret-2"),
        "{}",
        secret.stdout
    );
    assert_eq!(secret.json()["value"], "(secret, not shown)");

    assert_eq!(
        json(&["default", "tts", "espeak", "--json"])["tool"],
        "espeak"
    );
    assert_eq!(json(&["default", "tts", "--json"])["tool"], "espeak");
    assert_eq!(
        json(&["default", "tts", "--unset", "--json"])["action"],
        "removed"
    );
    assert!(json(&["default", "tts", "--json"])["tool"].is_null());

    let stored = ctx.run_with_stdin(["keys", "set", "azure-tts", "--json"], b"k-secret-1\n");
    let doc = stored.success().json();
    assert_eq!(
        (doc["action"].clone(), doc["setting"].clone()),
        ("stored".into(), "key".into())
    );
    assert!(!stored.stdout.contains("k-secret-1"));
    assert_eq!(
        json(&["keys", "bind", "azure-tts", "--json"])["plugin"]["plugin"],
        "azure-tts"
    );
    assert_eq!(
        json(&["keys", "remove", "azure-tts", "--json"])["action"],
        "removed"
    );

    assert_eq!(json(&["logs", "off", "--json"])["recording"], false);
    assert_eq!(json(&["logs", "on", "--json"])["recording"], true);
    assert_eq!(json(&["logs", "status", "--json"])["jobs"], 0);

    // Their errors are JSON on stderr, with the documented exit codes.
    for args in [
        vec!["config", "get", "defaults.tts", "--json"],
        vec!["jobs", "cancel", "nothing", "--json"],
        vec!["logs", "show", "nothing", "--json"],
        vec!["rerun", "nothing", "--json"],
        vec!["keys", "remove", "azure-tts", "--json"],
    ] {
        let out = ctx.run(&args);
        out.expect_code(3);
        let error: serde_json::Value = serde_json::from_str(&out.stderr)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", out.stderr));
        assert_eq!(error["error"]["class"], "not_found", "{args:?}");
    }
}

#[test]
fn completion_scripts_are_generated_for_each_shell() {
    let ctx = test_context!();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = ctx.run(["completions", shell]);
        out.success();
        assert!(out.stdout.contains("launcher"), "{shell}: {}", out.stdout);
        assert!(out.stdout.contains("completions"), "{shell}");
        if shell != "powershell" {
            assert!(
                out.stdout.contains("__complete"),
                "{shell}: no dynamic hook"
            );
        }
    }
}

#[test]
fn dynamic_completion_knows_installed_tools_tasks_and_parameters() {
    let ctx = test_context!();
    let out = ctx.run(["__complete", "run", "espe"]);
    assert_eq!(out.success().stdout, "espeak\n");
    let out = ctx.run(["__complete", "run", "espeak", "--ra"]);
    assert_eq!(out.stdout, "--rate\n");
    let out = ctx.run(["__complete", "info", "espe"]);
    assert_eq!(out.stdout, "espeak\n");
    let out = ctx.run(["__complete", "list", "--task", "tt"]);
    assert!(out.stdout.lines().any(|l| l == "tts"), "{}", out.stdout);

    // Through the bash script, as a user's TAB would.
    let script = ctx.run(["completions", "bash"]).stdout;
    let mut bash = shell(&ctx, "bash");
    let probe = format!(
        "{script}\nCOMP_WORDS=('{bin}' run espeak --ra); COMP_CWORD=3; _launcher_dynamic; printf '%s\\n' \"${{COMPREPLY[@]}}\"\n\
         COMP_WORDS=('{bin}' compl); COMP_CWORD=1; _launcher_dynamic '{bin}' compl '{bin}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        bin = env!("CARGO_BIN_EXE_launcher"),
    );
    let out = bash
        .args(["--norc", "-c", &probe])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        "--rate\ncompletions\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Returns a command running `program` in the test's environment, launcher on its `PATH`.
fn shell(ctx: &launcher_testkit::cli::TestContext, program: &str) -> Command {
    let mut shell = Command::new(program);
    for (key, value) in ctx.cmd().get_envs() {
        match value {
            Some(value) => shell.env(key, value),
            None => shell.env_remove(key),
        };
    }
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_launcher"))
        .parent()
        .unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    shell.env("PATH", path).stdin(Stdio::null());
    shell
}

/// Returns whether `program` runs here; CI installs zsh and fish, a developer may not have them.
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn zsh_and_fish_scripts_complete_parameters() {
    let ctx = test_context!();
    if have("zsh") {
        let script = ctx.run(["completions", "zsh"]).stdout;
        // compadd stands in for the completion system: it prints what it was given.
        let probe = format!(
            "autoload -U compinit; compinit -u\n{script}\n\
             compadd() {{ print -l -- \"${{found[@]}}\"; }}\n\
             words=(launcher run espeak --ra); CURRENT=4; _launcher_dynamic\n"
        );
        let out = shell(&ctx, "zsh")
            .args(["-f", "-c", &probe])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout, "--rate\n", "{out:?}");
    }
    if have("fish") {
        let script = ctx.run(["completions", "fish"]).stdout;
        let probe = format!(
            "{script}\ncomplete -C 'launcher run espeak --ra'\ncomplete -C 'launcher info espe'\n"
        );
        // A file that a file completion would offer.
        std::fs::write(ctx.work_file("espeak-notes.txt"), "").unwrap();
        let out = shell(&ctx, "fish")
            .args(["-c", &probe])
            .current_dir(ctx.work.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines, ["--rate", "espeak"], "{out:?}");
    }
}

#[test]
fn the_man_page_renders() {
    let ctx = test_context!();
    let out = ctx.run(["man"]);
    out.success();
    assert!(
        out.stdout.starts_with(".ie") || out.stdout.contains(".TH launcher"),
        "{}",
        out.stdout
    );
    let mut groff = Command::new("groff")
        .args(["-man", "-Tutf8"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("groff is installed (.ci/run installs it)");
    std::io::Write::write_all(&mut groff.stdin.take().unwrap(), out.stdout.as_bytes()).unwrap();
    let rendered = groff.wait_with_output().unwrap();
    assert!(rendered.status.success(), "{rendered:?}");
    let text = String::from_utf8_lossy(&rendered.stdout);
    // grotty emboldens by overstriking, so look for plain text.
    assert!(text.contains("shell completion script"), "{text}");

    let dir = ctx.work_file("man");
    ctx.run(["man", "--out", dir.to_str().unwrap()]).success();
    for page in ["launcher.1", "launcher-run.1", "launcher-completions.1"] {
        assert!(dir.join(page).is_file(), "{page} missing");
    }
    // And `man -l` shows it, where man-db is installed.
    if let Ok(out) = Command::new("man")
        .arg("-l")
        .arg(dir.join("launcher.1"))
        .env("MANPAGER", "cat")
        .output()
    {
        assert!(out.status.success(), "{out:?}");
        let page = String::from_utf8_lossy(&out.stdout);
        assert!(page.contains("shell completion script"), "{page}");
    }
}
