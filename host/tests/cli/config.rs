//! `launcher config`, `launcher default`, the checks of config.toml and the directories.

use launcher_testkit::test_context;

#[test]
fn set_get_unset_keep_the_users_comments() {
    let ctx = test_context!();
    ctx.config("# my setup\n[defaults]\n# offline first\ntts = \"espeak\" # fast\n");
    ctx.run([
        "config",
        "set",
        "tools.espeak.program",
        "/usr/bin/espeak-ng",
    ])
    .success();
    let out = ctx.run(["config", "get", "tools.espeak.program"]);
    assert_eq!(out.success().stdout, "/usr/bin/espeak-ng\n");
    assert_eq!(
        ctx.run(["config", "get", "defaults.tts"]).stdout,
        "espeak\n"
    );
    let text = std::fs::read_to_string(ctx.home.path().join("config.toml")).unwrap();
    assert_eq!(
        text,
        "# my setup\n[defaults]\n# offline first\ntts = \"espeak\" # fast\n\n[tools.espeak]\nprogram = \"/usr/bin/espeak-ng\"\n"
    );
    let list = ctx.run(["config", "list", "--json"]);
    assert_eq!(
        list.success().json(),
        serde_json::json!({"defaults.tts": "espeak", "tools.espeak.program": "/usr/bin/espeak-ng", "schema": 1})
    );
    ctx.run(["config", "unset", "tools.espeak.program"])
        .success();
    let text = std::fs::read_to_string(ctx.home.path().join("config.toml")).unwrap();
    assert_eq!(
        text,
        "# my setup\n[defaults]\n# offline first\ntts = \"espeak\" # fast\n"
    );
    ctx.run(["config", "get", "tools.espeak.program"])
        .expect_code(3);
    let bad = ctx.run(["config", "set", "colors.x", "1"]);
    bad.expect_code(2);
    assert!(
        bad.stderr
            .contains("`defaults.<task>` or `tools.<tool>.<setting>`")
    );
}

#[test]
fn secrets_in_the_config_file_are_not_shown() {
    let ctx = test_context!();
    ctx.config("[tools.azure-tts]\nkey = \"config-secret-0123\"\nregion = \"westeurope\"\n");
    let list = ctx.run(["config", "list"]);
    list.success();
    assert!(
        !list.stdout.contains("config-secret-0123"),
        "{}",
        list.stdout
    );
    assert!(
        list.stdout
            .contains("tools.azure-tts.region = \"westeurope\"")
    );
    let get = ctx.run(["config", "get", "tools.azure-tts.key"]);
    get.expect_code(2);
    assert!(!get.stdout.contains("config-secret-0123"));
}

#[test]
fn default_checks_the_tool_performs_the_task() {
    let ctx = test_context!();
    let none = ctx.run(["default", "tts"]);
    assert_eq!(none.success().stdout, "");
    assert!(
        none.stderr.contains("No default tool for `tts`"),
        "{}",
        none.stderr
    );
    ctx.run(["default", "tts", "espeak"]).success();
    assert_eq!(ctx.run(["default", "tts"]).stdout, "espeak\n");
    assert_eq!(
        ctx.run(["config", "get", "defaults.tts"]).stdout,
        "espeak\n"
    );

    let wrong = ctx.run(["default", "chat", "espeak"]);
    wrong.expect_code(2);
    assert!(
        wrong
            .stderr
            .contains("tool `espeak` does not perform task `chat`")
    );
    let missing = ctx.run(["default", "tts", "espeek"]);
    missing.expect_code(3);
    assert!(
        missing.stderr.contains("did you mean `espeak`?"),
        "{}",
        missing.stderr
    );

    ctx.run(["default", "tts", "--unset"]).success();
    assert_eq!(ctx.run(["default", "tts"]).stdout, "");
}

#[test]
fn unknown_keys_are_warnings_with_their_line_and_a_close_match() {
    let ctx = test_context!();
    ctx.config("[defaults]\ntss = \"espeak\"\n\n[tools.espeak]\nprogrm = \"x\"\n\n[tools.espek]\nvoice = \"en\"\n");
    let out = ctx.run(["list"]);
    out.success();
    let config = ctx.home.path().join("config.toml");
    let at = |line: usize, column: usize| format!("{}:{line}:{column}: ", config.display());
    for expected in [
        format!(
            "{}no installed tool performs task `tss`, so this default is not used (did you mean `tts`?)",
            at(2, 1)
        ),
        format!(
            "{}tool `espeak` has no setting `progrm`, so it is not used (did you mean `program`?)",
            at(5, 1)
        ),
        format!(
            "{}there is no installed tool `espek`, so [tools.espek] is not used (did you mean `espeak`?)",
            at(7, 8)
        ),
    ] {
        assert!(
            out.stderr.contains(&expected),
            "missing {expected:?} in {}",
            out.stderr
        );
    }
}

#[test]
fn a_broken_config_lets_list_work_but_stops_run() {
    let ctx = test_context!();
    ctx.config("[defaults]\ntts = \"espeak\n");
    let list = ctx.run(["list"]);
    list.success();
    assert!(list.stdout.contains("espeak"));
    let config = ctx.home.path().join("config.toml");
    assert!(
        list.stderr
            .contains(&format!("warning: {}:2:", config.display())),
        "{}",
        list.stderr
    );
    assert!(list.stderr.contains("not valid TOML"), "{}", list.stderr);
    let run = ctx.run(["run", "tts", "--text", "hi"]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains(&format!("error: {}:2:", config.display())),
        "{}",
        run.stderr
    );
    assert!(ctx.work_files().is_empty());
}

#[test]
fn a_secret_that_is_not_a_string_stops_run_with_its_line() {
    let ctx = test_context!();
    ctx.config("[tools.azure-tts]\nregion = \"westeurope\"\nkey = 123456\n");
    let run = ctx.run(["run", "azure-tts", "--text", "hi"]);
    run.expect_code(2);
    let config = ctx.home.path().join("config.toml");
    assert!(
        run.stderr.contains(&format!(
            "{}:3:1: setting `key` of `azure-tts` is a secret and must be a string in quotes",
            config.display()
        )),
        "{}",
        run.stderr
    );
    ctx.config("[tools.azure-tts]\nkey = \"k-123456\"\nregion = [1]\n");
    let run = ctx.run(["run", "azure-tts", "--text", "hi"]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains(":3:1: setting `region` of `azure-tts` must be a string"),
        "{}",
        run.stderr
    );
}

#[test]
fn edit_opens_the_editor_then_checks_the_file() {
    let ctx = test_context!();
    let script = ctx.work.path().join("editor.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf '[tools.espeek]\\nvoice = \"en\"\\n' >> \"$1\"\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let editor = format!("sh {}", script.display());
    let out = ctx.run_with_env(["config", "edit"], &[("EDITOR", &editor)]);
    out.success();
    assert!(
        out.stderr.contains("did you mean `espeak`?"),
        "{}",
        out.stderr
    );

    std::fs::write(&script, "#!/bin/sh\necho '[oops' >> \"$1\"\n").unwrap();
    let out = ctx.run_with_env(
        ["config", "edit"],
        &[("VISUAL", &editor), ("EDITOR", "false")],
    );
    out.expect_code(2);
    assert!(out.stderr.contains("not valid TOML"), "{}", out.stderr);
    assert!(
        out.stderr.contains("`launcher config edit` opens it again"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_xdg_directories_hold_config_data_and_cache() {
    let ctx = test_context!();
    let base = ctx.work.path();
    let xdg = |cmd: &mut std::process::Command| {
        cmd.env_remove("LAUNCHER_HOME")
            .env("HOME", base.join("home"))
            .env("XDG_CONFIG_HOME", base.join("cfg"))
            .env("XDG_DATA_HOME", base.join("data"))
            .env_remove("XDG_CACHE_HOME");
    };
    let run = |args: &[&str], input: Option<&[u8]>| {
        let mut cmd = ctx.cmd();
        xdg(&mut cmd);
        cmd.args(args);
        if input.is_some() {
            cmd.stdin(std::process::Stdio::piped());
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = input {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let paths: serde_json::Value =
        serde_json::from_str(&run(&["config", "path", "--json"], None)).unwrap();
    let path = |p: std::path::PathBuf| serde_json::json!(p);
    assert_eq!(
        paths["config_file"],
        path(base.join("cfg/launcher/config.toml"))
    );
    assert_eq!(paths["data_dir"], path(base.join("data/launcher")));
    assert_eq!(
        paths["keys_file"],
        path(base.join("data/launcher/keys.toml"))
    );
    assert_eq!(paths["cache_dir"], path(base.join("home/.cache/launcher")));

    run(&["default", "tts", "espeak"], None);
    assert!(base.join("cfg/launcher/config.toml").is_file());
    run(&["keys", "set", "azure-tts"], Some(b"xdg-key-123456"));
    assert!(base.join("data/launcher/keys.toml").is_file());
    run(&["list"], None);
    assert!(base.join("home/.cache/launcher").is_dir());
}

#[test]
fn a_config_left_in_the_data_dir_is_still_read() {
    let ctx = test_context!();
    let base = ctx.work.path();
    std::fs::create_dir_all(base.join("data/launcher")).unwrap();
    std::fs::write(
        base.join("data/launcher/config.toml"),
        "[defaults]\ntts = \"espeak\"\n",
    )
    .unwrap();
    let mut cmd = ctx.cmd();
    cmd.env_remove("LAUNCHER_HOME")
        .env("HOME", base.join("home"))
        .env("XDG_CONFIG_HOME", base.join("cfg"))
        .env("XDG_DATA_HOME", base.join("data"))
        .args(["config", "path"]);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(&format!(
            "config file  {}",
            base.join("data/launcher/config.toml").display()
        )),
        "{stdout}"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("move it to"), "{stderr}");
    let mut cmd = ctx.cmd();
    cmd.env_remove("LAUNCHER_HOME")
        .env("HOME", base.join("home"))
        .env("XDG_CONFIG_HOME", base.join("cfg"))
        .env("XDG_DATA_HOME", base.join("data"))
        .args(["default", "tts"]);
    assert_eq!(
        String::from_utf8(cmd.output().unwrap().stdout).unwrap(),
        "espeak\n"
    );
}
