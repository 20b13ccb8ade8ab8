//! `list` and `info`: what discovery finds, and what it refuses.

use launcher_testkit::test_context;

#[test]
fn list_groups_bundled_tools_by_category() {
    let ctx = test_context!();
    let out = ctx.run(["list"]);
    out.success();
    let audio = out.stdout.find("audio\n").expect("an audio section");
    let video = out.stdout.find("video\n").expect("a video section");
    assert!(audio < video, "categories in order: {}", out.stdout);
    let espeak = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("espeak "))
        .expect("espeak listed");
    assert!(
        espeak.contains("tts") && espeak.ends_with("ready"),
        "{espeak}"
    );
    let azure = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("azure-tts "))
        .expect("azure-tts listed");
    assert!(azure.contains("not ready: set AZURE_SPEECH_KEY"), "{azure}");
    assert!(out.stdout.contains("ffmpeg"), "{}", out.stdout);
}

#[test]
fn list_filters_by_category_and_task() {
    let ctx = test_context!();
    let audio = ctx.run(["list", "--category", "audio"]);
    audio.success();
    assert!(
        audio.stdout.contains("espeak") && !audio.stdout.contains("ffmpeg"),
        "{}",
        audio.stdout
    );
    let compose = ctx.run(["list", "--task", "compose"]);
    compose.success();
    assert!(
        compose.stdout.contains("ffmpeg") && !compose.stdout.contains("espeak"),
        "{}",
        compose.stdout
    );
    let video = ctx.run(["list", "--task", "txt2vid"]);
    video.success();
    assert!(
        video.stdout.contains("runway")
            && video.stdout.contains("kling")
            && !video.stdout.contains("espeak"),
        "{video:?}"
    );
    ctx.run(["list", "--category", "smell"]).expect_code(2);
}

#[test]
fn list_json_has_the_documented_fields() {
    let mut ctx = test_context!();
    ctx.env("AZURE_SPEECH_KEY", "k-123456")
        .env("AZURE_SPEECH_REGION", "eastus");
    let out = ctx.run(["list", "--json"]);
    out.success();
    let items = out.json();
    let items = items.as_array().expect("an array");
    for item in items {
        for field in [
            "id",
            "categories",
            "tasks",
            "plugin",
            "version",
            "ready",
            "cloud",
        ] {
            assert!(item.get(field).is_some(), "{field} missing in {item}");
        }
    }
    let azure = items
        .iter()
        .find(|i| i["id"] == "azure-tts")
        .expect("azure-tts");
    assert_eq!(azure["ready"], true);
    assert_eq!(azure["categories"], serde_json::json!(["audio"]));
    assert_eq!(azure["cloud"], true);
    assert!(!out.stdout.contains("k-123456"));
    let tasks = ctx.run(["list", "--json", "--task", "tts"]).json();
    assert!(
        tasks.as_array().unwrap().iter().all(|i| i["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "tts"))
    );
}

#[test]
fn manifests_are_cached_and_a_changed_library_is_noticed() {
    let ctx = test_context!();
    ctx.add_plugin("launcher_fixture_panicky", "panicky");
    let first = ctx.run(["list", "-v"]);
    first.success();
    assert!(
        first.stderr.contains("probed"),
        "first sight probes: {}",
        first.stderr
    );
    assert!(first.stdout.contains("panicky"));
    let second = ctx.run(["list", "-v"]);
    second.success();
    assert!(
        !second.stderr.contains("probed"),
        "cached manifests load nothing: {}",
        second.stderr
    );
    assert_eq!(first.stdout, second.stdout);

    // Replace the library with garbage of another size: the cache must not hide it.
    ctx.add_plugin_file("panicky", b"not a library at all");
    let third = ctx.run(["list", "-v"]);
    third.success();
    assert!(!third.stdout.contains("panicky"), "{}", third.stdout);
    assert!(
        third.stderr.contains("warning: skipping") && third.stderr.contains("panicky"),
        "{}",
        third.stderr
    );
}

#[test]
fn bad_libraries_are_skipped_with_a_warning_and_others_keep_working() {
    let ctx = test_context!();
    ctx.add_plugin_file(
        "garbage",
        &[0x7f, b'E', b'L', b'F', 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0],
    );
    ctx.add_plugin("launcher_fixture_abi_future", "future");
    // A real shared library that is not a launcher plugin: the system's libm.
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib/aarch64-linux-gnu/libm.so.6",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).is_file());
    if let Some(libm) = libm {
        ctx.add_plugin_file("foreign", &std::fs::read(libm).unwrap());
    }
    let out = ctx.run(["list"]);
    out.success();
    assert!(out.stdout.contains("espeak"), "{}", out.stdout);
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: skipping"))
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("garbage") && w.contains("cannot be loaded")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("future") && w.contains("plugin ABI 3") && w.contains("ABI 2")),
        "{warnings:?}"
    );
    if libm.is_some() {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("foreign") && w.contains("not a launcher plugin")),
            "{warnings:?}"
        );
    }
    // One line per skipped library, every run.
    assert_eq!(
        ctx.run(["list"])
            .stderr
            .lines()
            .filter(|l| l.starts_with("warning:"))
            .count(),
        warnings.len()
    );
}

#[test]
fn info_shows_tasks_parameters_and_setting_sources() {
    let mut ctx = test_context!();
    let out = ctx.run(["info", "espeak"]);
    out.success();
    assert!(out.stdout.contains("task tts"), "{}", out.stdout);
    assert!(
        out.stdout.contains("--rate") && out.stdout.contains("0.25..4"),
        "{}",
        out.stdout
    );

    ctx.env("AZURE_SPEECH_KEY", "secret-key-value");
    ctx.config("[tools.azure-tts]\nregion = \"eastasia\"\n");
    let azure = ctx.run(["info", "azure-tts"]);
    azure.success();
    assert!(
        azure.stdout.contains("$AZURE_SPEECH_KEY"),
        "{}",
        azure.stdout
    );
    assert!(!azure.stdout.contains("secret-key-value"));
    let json = ctx.run(["info", "azure-tts", "--json"]).json();
    let settings = json["settings"].as_array().unwrap();
    let key = settings.iter().find(|s| s["name"] == "key").unwrap();
    assert_eq!(key["secret"], true);
    assert_eq!(key["source"], "$AZURE_SPEECH_KEY");
    let region = settings.iter().find(|s| s["name"] == "region").unwrap();
    assert_eq!(region["source"], "config file");

    let unknown = ctx.run(["info", "espek"]);
    unknown.expect_code(3);
    assert!(
        unknown.stderr.contains("did you mean `espeak`"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn info_describes_a_task_and_the_tool_that_would_do_it() {
    let ctx = test_context!();
    let out = ctx.run(["info", "tts"]);
    out.success();
    assert!(!out.stderr.contains("did you mean"), "{}", out.stderr);
    assert!(out.stdout.contains("task tts"), "{}", out.stdout);
    assert!(out.stdout.contains("--voice"), "{}", out.stdout);
    let espeak = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("espeak "))
        .unwrap_or_else(|| panic!("espeak is listed: {}", out.stdout));
    assert!(espeak.contains("chosen"), "{espeak}");
    let json = ctx.run(["info", "tts", "--json"]).json();
    assert_eq!(json["chosen"], "espeak");
    assert_eq!(json["outputs"][0]["kind"], "audio");
    ctx.run(["info", "tss"]).expect_code(3);
}
