//! The history through the real binary: every job recorded (outputs, failures), never a secret,
//! `launcher logs` (filters, search, JSON, show, off and on), `launcher rerun`, and `run
//! --dry-run`, which runs nothing.

use launcher_testkit::cli::TestContext;
use launcher_testkit::emulators::azure::AzureEmulator;
use launcher_testkit::test_context;
use serde_json::Value;

/// The history as `launcher logs --json` gives it, with extra arguments.
fn logs(ctx: &TestContext, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["logs", "--json"];
    all.extend_from_slice(args);
    let out = ctx.run(&all);
    out.success();
    out.json().as_array().expect("an array").clone()
}

fn ids(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every byte of the job store, with its journal files if any.
fn database_bytes(ctx: &TestContext) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(ctx.home.path()).unwrap() {
        let entry = entry.unwrap();
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("launcher.db")
        {
            bytes.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    assert!(!bytes.is_empty(), "no job store in the home");
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn runs_are_recorded_with_their_outputs_and_logs_filters_and_searches_them() {
    let ctx = test_context!();
    ctx.run([
        "run",
        "tts",
        "--text",
        "a lighthouse in the fog",
        "-o",
        "a.wav",
    ])
    .success();
    ctx.run(["run", "tts", "--text", "the quick brown fox"])
        .success();

    let all = logs(&ctx, &[]);
    assert_eq!(all.len(), 2, "{all:#?}");
    let (newest, first) = (&all[0], &all[1]);
    assert_eq!(newest["input"], "the quick brown fox");
    assert_eq!(first["tool"], "espeak");
    assert_eq!(first["task"], "tts");
    assert_eq!(first["status"], "done");
    assert_eq!(first["exit_code"], 0);
    assert_eq!(first["params"]["text"], "a lighthouse in the fog");
    let output = &first["outputs"][0];
    let path = output["path"].as_str().unwrap();
    assert!(path.ends_with("a.wav"), "{output}");
    assert_eq!(
        output["size"].as_u64().unwrap(),
        std::fs::metadata(ctx.work_file("a.wav")).unwrap().len()
    );
    assert!(first["duration_ms"].as_i64().unwrap() >= 0);

    assert_eq!(ids(&logs(&ctx, &["-n", "1"])), ids(&all[..1]));
    assert_eq!(logs(&ctx, &["--tool", "espeak"]).len(), 2);
    assert!(logs(&ctx, &["--tool", "azure-tts"]).is_empty());
    assert_eq!(logs(&ctx, &["--task", "tts"]).len(), 2);
    assert!(logs(&ctx, &["--task", "stt"]).is_empty());
    assert_eq!(logs(&ctx, &["--since", "1h"]).len(), 2);
    assert_eq!(logs(&ctx, &["--since", "2000-01-01T00:00:00Z"]).len(), 2);
    assert!(logs(&ctx, &["--since", "2999-01-01"]).is_empty());
    assert_eq!(
        ids(&logs(&ctx, &["--search", "lighthouse fog"])),
        ids(&all[1..])
    );
    assert!(logs(&ctx, &["--search", "lighthouse fox"]).is_empty());
    ctx.run(["logs", "--since", "yesterday"]).expect_code(2);

    let text = ctx.run(["logs"]);
    text.success();
    let id = first["id"].as_str().unwrap();
    assert!(
        text.stdout.lines().nth(1).unwrap().starts_with(id),
        "{}",
        text.stdout
    );
    let shown = ctx.run(["logs", "show", &id[..id.len() - 1]]);
    shown.success();
    assert!(
        shown.stdout.contains("a.wav") && shown.stdout.contains("a lighthouse in the fog"),
        "{}",
        shown.stdout
    );
    let shown = ctx.run(["logs", "show", id, "--json"]);
    shown.success();
    assert_eq!(shown.json()["id"], id);
    ctx.run(["logs", "show", "nosuchjob"]).expect_code(3);
}

#[test]
fn a_failed_run_is_recorded_with_its_exit_status_and_error() {
    let ctx = test_context!();
    ctx.add_plugin("launcher_fixture_panicky", "panicky");
    let out = ctx.run([
        "run",
        "panicky",
        "--text",
        "hi",
        "--mode",
        "error",
        "--error-kind",
        "unauthorized",
    ]);
    out.expect_code(6);
    let entries = logs(&ctx, &[]);
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry["status"], "failed");
    assert_eq!(entry["exit_code"], 6);
    assert!(
        entry["error"]
            .as_str()
            .unwrap()
            .contains("failed on purpose"),
        "{entry}"
    );
    assert_eq!(entry["outputs"], serde_json::json!([]));
}

#[test]
fn no_secret_reaches_the_database_from_set_the_environment_or_an_error() {
    const KEY: &str = "history-env-key-0123456789";
    const SET_KEY: &str = "history-set-key-9876543210";
    let emulator = AzureEmulator::start(KEY);
    let mut ctx = test_context!();
    ctx.env("AZURE_SPEECH_KEY", KEY)
        .env("AZURE_SPEECH_ENDPOINT", emulator.url())
        .env("AZURE_SPEECH_TIMEOUT", "5");
    // The key from the environment, and typed into the text by mistake.
    let text = format!("my key is {KEY}");
    ctx.run(["run", "azure-tts", "--text", &text, "-o", "a.wav"])
        .success();
    // Another key with --set: the service rejects it, and the error is recorded.
    let set = format!("key={SET_KEY}");
    let out = ctx.run(["run", "azure-tts", "--text", "hi", "--set", &set]);
    out.expect_code(6);

    let entries = logs(&ctx, &[]);
    assert_eq!(entries.len(), 2, "{entries:#?}");
    assert_eq!(entries[0]["exit_code"], 6);
    assert_eq!(entries[1]["input"], "my key is ***");
    let bytes = database_bytes(&ctx);
    assert!(!contains(&bytes, KEY), "the environment's key is stored");
    assert!(!contains(&bytes, SET_KEY), "the --set key is stored");
    assert!(contains(&bytes, "my key is ***"));
}

#[test]
fn rerun_replans_a_recorded_job_with_overrides_into_new_outputs() {
    let ctx = test_context!();
    ctx.run(["run", "tts", "--text", "say it again", "-o", "first.wav"])
        .success();
    let id = ids(&logs(&ctx, &[]))[0].clone();
    let out = ctx.run(["rerun", &id, "--rate", "2", "--json"]);
    out.success();
    assert_eq!(out.json()["outputs"][0]["path"], "tts.wav");
    assert!(ctx.work_file("first.wav").exists());
    assert!(ctx.work_file("tts.wav").exists(), "{:?}", ctx.work_files());

    let entries = logs(&ctx, &[]);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["id"], id.as_str());
    let rerun = &entries[0];
    assert_eq!(rerun["rerun_of"], id.as_str());
    assert_eq!(rerun["params"]["text"], "say it again");
    assert_eq!(rerun["params"]["rate"], 2.0);

    ctx.run(["rerun", &id, "--no-such-param", "1"])
        .expect_code(2);
    ctx.run(["rerun", &id, "--rate", "99"]).expect_code(5);
    ctx.run(["rerun", "nosuchjob"]).expect_code(3);
}

#[test]
fn logs_off_stops_recording_and_on_starts_it_again() {
    let ctx = test_context!();
    ctx.run(["run", "tts", "--text", "one"]).success();
    let off = ctx.run(["logs", "off"]);
    off.success();
    assert!(off.stdout.contains("history is off"), "{}", off.stdout);
    ctx.run(["run", "tts", "--text", "two"]).success();
    assert_eq!(logs(&ctx, &[]).len(), 1);
    let status = ctx.run(["logs", "status"]);
    assert!(
        status.stdout.contains("history is off"),
        "{}",
        status.stdout
    );
    ctx.run(["logs", "on"]).success();
    ctx.run(["run", "tts", "--text", "three"]).success();
    let inputs: Vec<Value> = logs(&ctx, &[]).iter().map(|e| e["input"].clone()).collect();
    assert_eq!(inputs, ["three", "one"]);
}

#[test]
fn dry_run_prints_the_plan_with_secrets_masked_and_runs_nothing() {
    let ctx = test_context!();
    ctx.add_plugin("launcher_fixture_panicky", "panicky");
    // The panicky tool would panic if it were called.
    let out = ctx.run([
        "run",
        "panicky",
        "--text",
        "hi",
        "-o",
        "x.wav",
        "--dry-run",
        "-v",
    ]);
    out.success();
    assert!(out.stdout.contains("panicky"), "{}", out.stdout);
    assert!(out.stdout.contains("x.wav"), "{}", out.stdout);
    assert!(!out.stderr.contains("loading"), "{}", out.stderr);
    assert!(ctx.work_files().is_empty(), "{:?}", ctx.work_files());

    const SECRET: &str = "dry-run-secret-0123456789";
    let set = format!("key={SECRET}");
    let out = ctx.run([
        "run",
        "azure-tts",
        "--text",
        "hi",
        "--set",
        &set,
        "--set",
        "region=eastus",
        "--dry-run",
    ]);
    out.success();
    assert!(!out.stdout.contains(SECRET) && !out.stderr.contains(SECRET));
    assert!(
        out.stdout.contains("key = ***  (from --set)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("region = eastus"), "{}", out.stdout);

    let out = ctx.run([
        "run",
        "azure-tts",
        "--text",
        "hi",
        "--set",
        &set,
        "--set",
        "region=eastus",
        "--dry-run",
        "--json",
    ]);
    out.success();
    assert!(!out.stdout.contains(SECRET));
    let plan = out.json();
    assert_eq!(plan["tool"], "azure-tts");
    assert_eq!(plan["params"]["text"], "hi");
    let key = plan["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "key")
        .unwrap();
    assert_eq!(
        (&key["value"], &key["source"]),
        (&"***".into(), &"--set".into())
    );
    assert!(!plan["routing"].as_array().unwrap().is_empty());
    // Nothing ran, so nothing was recorded.
    assert!(logs(&ctx, &[]).is_empty());
}

#[test]
fn a_detached_job_is_recorded_as_such_and_its_resumption_completes_the_entry() {
    let ctx = test_context!();
    ctx.add_plugin("launcher_fixture_remote", "remote");
    ctx.run([
        "run",
        "remote",
        "a storm",
        "--detach",
        // The resumed run waits what is left of it, as a real poll loop would.
        "--delay-ms",
        "300",
    ])
    .success();
    let entries = logs(&ctx, &[]);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["status"], "detached");
    let id = entries[0]["id"].as_str().unwrap().to_string();
    ctx.run(["run", "--resume", &id]).success();
    let entries = logs(&ctx, &[]);
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["status"], "done");
    assert!(
        entries[0]["outputs"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("txt2vid.webm"),
        "{entries:#?}"
    );
}

#[test]
fn a_chat_job_names_its_conversation_in_the_history() {
    let ctx = test_context!();
    ctx.add_plugin("launcher_fixture_remote", "remote");
    ctx.run(["run", "parrot", "Why is the sky blue?"]).success();
    let second = ctx.run(["run", "chat", "-c", "And at sunset?", "--json"]);
    second.success();
    let conversation = second.json()["conversation"].clone();
    assert!(conversation.is_string(), "{conversation}");
    let entries = logs(&ctx, &["--task", "chat"]);
    assert_eq!(entries.len(), 2);
    assert!(
        entries.iter().all(|e| e["conversation"] == conversation),
        "{entries:#?}"
    );
    assert_eq!(entries[0]["input"], "And at sunset?");
    let shown = ctx.run(["logs", "show", entries[0]["id"].as_str().unwrap()]);
    assert!(
        shown
            .stdout
            .contains(&format!("conversation: {}", conversation.as_str().unwrap())),
        "{}",
        shown.stdout
    );
}

#[test]
fn a_long_input_is_kept_as_a_digest_and_rerun_asks_for_it_again() {
    let ctx = test_context!();
    ctx.add_plugin("launcher_fixture_panicky", "panicky");
    let text = "a long chapter ".repeat(5000);
    std::fs::write(ctx.work_file("chapter.txt"), &text).unwrap();
    ctx.run([
        "run",
        "panicky",
        "--file",
        "chapter.txt",
        "--mode",
        "error",
        "--error-kind",
        "invalid_input",
    ])
    .expect_code(5);
    let entry = logs(&ctx, &[]).remove(0);
    assert_eq!(entry["input_bytes"], text.len());
    assert_eq!(entry["input_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(entry["input"].as_str().unwrap().chars().count(), 200);
    assert!(entry["params"].get("text").is_none(), "{entry}");
    assert!(!contains(&database_bytes(&ctx), &text[..1000]));

    let again = ctx.run(["rerun", entry["id"].as_str().unwrap()]);
    again.expect_code(5);
    assert!(again.stderr.contains("only its digest"), "{}", again.stderr);
}
