//! `launcher keys`: secrets stored privately, used after the environment, never shown.

use launcher_testkit::emulators::azure::AzureEmulator;
use launcher_testkit::test_context;

const KEY: &str = "stored-azure-key-0123456789";

fn source_of_key(out: &launcher_testkit::cli::Outcome) -> String {
    let info = out.json();
    let settings = info["settings"].as_array().unwrap();
    let key = settings.iter().find(|s| s["name"] == "key").unwrap();
    key["source"].as_str().unwrap().to_string()
}

#[test]
fn a_piped_key_is_stored_privately_and_comes_after_the_environment() {
    let ctx = test_context!();
    let set = ctx.run_with_stdin(["keys", "set", "azure-tts"], format!("{KEY}\n").as_bytes());
    set.success();
    assert!(
        !set.stdout.contains(KEY) && !set.stderr.contains(KEY),
        "{set:#?}"
    );
    assert!(
        set.stderr.contains("Stored setting `key` of `azure-tts`"),
        "{}",
        set.stderr
    );

    let file = ctx.home.path().join("keys.toml");
    assert!(std::fs::read_to_string(&file).unwrap().contains(KEY));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "keys.toml must be private");
    }

    let info = ctx.run(["info", "azure-tts", "--json"]);
    assert_eq!(source_of_key(info.success()), "keys store");
    // The environment comes first, the config file after the store.
    ctx.config("[tools.azure-tts]\nkey = \"from-the-config-file\"\n");
    let info = ctx.run_with_env(
        ["info", "azure-tts", "--json"],
        &[("AZURE_SPEECH_KEY", "from-env")],
    );
    assert_eq!(source_of_key(info.success()), "$AZURE_SPEECH_KEY");
    let info = ctx.run(["info", "azure-tts", "--json"]);
    assert_eq!(source_of_key(info.success()), "keys store");

    let list = ctx.run(["keys", "list"]);
    list.success();
    assert!(
        list.stdout.contains("azure-tts  key      keys store"),
        "{}",
        list.stdout
    );
    let json = ctx.run(["keys", "list", "--json"]);
    assert!(!json.stdout.contains(KEY));
    assert_eq!(
        json.success().json(),
        serde_json::json!([{"tool": "azure-tts", "setting": "key", "source": "keys store", "stored": true}])
    );

    ctx.run(["keys", "remove", "azure-tts"]).success();
    let info = ctx.run(["info", "azure-tts", "--json"]);
    assert_eq!(source_of_key(info.success()), "config file");
    let again = ctx.run(["keys", "remove", "azure-tts", "key"]);
    again.expect_code(3);
    assert!(
        again
            .stderr
            .contains("no value of setting `key` of `azure-tts` is stored")
    );
}

#[test]
fn a_stored_key_reaches_the_service_and_is_scrubbed_from_errors() {
    let emulator = AzureEmulator::start(KEY);
    let mut ctx = test_context!();
    ctx.env("AZURE_SPEECH_ENDPOINT", emulator.url())
        .env("AZURE_SPEECH_TIMEOUT", "5");
    ctx.run_with_stdin(["keys", "set", "azure-tts", "key"], KEY.as_bytes())
        .success();
    let out = ctx.run(["run", "azure-tts", "--text", "hi", "-o", "ok.wav"]);
    out.success();
    assert!(ctx.work_file("ok.wav").is_file());

    let wrong = "wrong-stored-key-98765";
    ctx.run_with_stdin(["keys", "set", "azure-tts"], wrong.as_bytes())
        .success();
    let out = ctx.run(["run", "azure-tts", "--text", "hi", "-o", "no.wav", "-vv"]);
    out.expect_code(6);
    assert!(
        !out.stdout.contains(wrong) && !out.stderr.contains(wrong),
        "the stored key leaked: {out:#?}"
    );
}

#[test]
fn keys_set_refuses_what_it_cannot_store() {
    let ctx = test_context!();
    let out = ctx.run_with_stdin(["keys", "set", "azure-ttz"], b"x");
    out.expect_code(3);
    assert!(
        out.stderr.contains("did you mean `azure-tts`?"),
        "{}",
        out.stderr
    );

    let out = ctx.run_with_stdin(["keys", "set", "azure-tts", "region"], b"westeurope");
    out.expect_code(2);
    assert!(out.stderr.contains("is not a secret"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("launcher config set tools.azure-tts.region")
    );

    let out = ctx.run_with_stdin(["keys", "set", "azure-tts"], b"\n");
    out.expect_code(5);
    assert!(!ctx.home.path().join("keys.toml").exists());

    let out = ctx.run_with_stdin(["keys", "set", "espeak"], b"x");
    out.expect_code(2);
    assert!(
        out.stderr.contains("has no secret settings"),
        "{}",
        out.stderr
    );

    let out = ctx.run(["keys", "list"]);
    out.success();
    assert!(out.stderr.contains("No secrets are set"), "{}", out.stderr);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        ctx.run_with_stdin(["keys", "set", "azure-tts"], b"first-key-1234")
            .success();
        let file = ctx.home.path().join("keys.toml");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = ctx.run_with_stdin(["keys", "set", "azure-tts"], b"second-key-1234");
        out.expect_code(2);
        assert!(
            out.stderr.contains("is open to other users (mode 644)"),
            "{}",
            out.stderr
        );
        assert!(
            std::fs::read_to_string(&file)
                .unwrap()
                .contains("first-key-1234")
        );
        let list = ctx.run(["list"]);
        list.success();
        assert!(list.stderr.contains("chmod 600"), "{}", list.stderr);
    }
}

/// On a terminal the prompt does not echo what is typed (driven through `script`'s terminal).
#[cfg(target_os = "linux")]
#[test]
fn the_prompt_on_a_terminal_does_not_echo() {
    use std::io::Write as _;
    use std::process::Stdio;
    let ctx = test_context!();
    let mut child = ctx
        .on_terminal("keys set azure-tts")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Type only once the prompt is shown (and echo is off, a moment later).
    let mut stdout = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let started = std::time::Instant::now();
    while !String::from_utf8_lossy(&seen.lock().unwrap()).contains("key for azure-tts: ") {
        assert!(started.elapsed().as_secs() < 30, "no prompt");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{KEY}\r").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned()
        + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("key for azure-tts: "), "{text}");
    assert!(!text.contains(KEY), "the typed key was echoed: {text}");
    let stored = std::fs::read_to_string(ctx.home.path().join("keys.toml")).unwrap();
    assert!(stored.contains(KEY));
}
