//! azure-tts end to end: the real binary and plugin against the Azure TTS emulator.

use launcher_testkit::cli::TestContext;
use launcher_testkit::emulators::azure::AzureEmulator;
use launcher_testkit::media::parse_wav;
use launcher_testkit::test_context;

const KEY: &str = "e2e-azure-key-0123456789";

fn azure_context(emulator: &AzureEmulator) -> TestContext {
    let mut ctx = test_context!();
    ctx.env("AZURE_SPEECH_KEY", KEY)
        .env("AZURE_SPEECH_ENDPOINT", emulator.url())
        .env("AZURE_SPEECH_TIMEOUT", "5");
    ctx
}

#[track_caller]
fn assert_no_secret(out: &launcher_testkit::cli::Outcome) {
    assert!(
        !out.stdout.contains(KEY) && !out.stderr.contains(KEY),
        "the key leaked: {out:#?}"
    );
}

#[test]
fn a_cloud_voice_does_tts_only_when_chosen_as_the_default() {
    let emulator = AzureEmulator::start(KEY);
    let ctx = azure_context(&emulator);
    // Its key in the environment does not make a paid service the default.
    let offline = ctx.run(["run", "tts", "--text", "Hello", "-v", "--json"]);
    offline.success();
    assert_eq!(offline.json()["tool"], "espeak");
    assert!(
        offline.stderr.contains("passed over `azure-tts` (cloud"),
        "{}",
        offline.stderr
    );
    assert!(emulator.synthesis_requests().is_empty());

    ctx.config("[defaults]\ntts = \"azure-tts\"\n");
    let out = ctx.run(["run", "tts", "--text", "Hello from Azure", "-v", "--json"]);
    out.success();
    assert_no_secret(&out);
    assert!(
        out.stderr.contains("`azure-tts` is the configured default"),
        "{}",
        out.stderr
    );
    let result = out.json();
    assert_eq!(result["tool"], "azure-tts");
    let path = ctx
        .work
        .path()
        .join(result["outputs"][0]["path"].as_str().unwrap());
    let wav = parse_wav(&std::fs::read(path).unwrap()).unwrap();
    assert!(wav.duration > 0.1, "{wav:?}");
    let requests = emulator.synthesis_requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.header("Content-Type"), Some("application/ssml+xml"));
    assert_eq!(req.header("Ocp-Apim-Subscription-Key"), Some(KEY));
    assert!(
        req.header("User-Agent")
            .is_some_and(|ua| ua.starts_with("launcher"))
    );
}

#[test]
fn output_extension_and_chinese_voice_reach_the_service() {
    let emulator = AzureEmulator::start(KEY);
    let ctx = azure_context(&emulator);
    let out = ctx.run([
        "run",
        "tts",
        "--tool",
        "azure-tts",
        "--voice",
        "zh-CN-XiaoxiaoNeural",
        "--text",
        "你好，<世界> & \"朋友\"",
        "-o",
        "hi.mp3",
    ]);
    out.success();
    let mp3 = std::fs::read(ctx.work_file("hi.mp3")).unwrap();
    assert!(!mp3.is_empty());
    let req = &emulator.synthesis_requests()[0];
    assert!(
        req.header("X-Microsoft-OutputFormat")
            .unwrap()
            .ends_with("mp3"),
        "{req:?}"
    );
    let ssml = req.body_text();
    assert!(ssml.contains("xml:lang=\"zh-CN\""), "{ssml}");
    assert!(
        ssml.contains("&lt;世界&gt; &amp; "),
        "text is XML-escaped: {ssml}"
    );
}

#[test]
fn rejected_credentials_fail_fast_without_leaking_the_key() {
    let emulator = AzureEmulator::start("the-right-key-000000");
    let ctx = azure_context(&emulator);
    let out = ctx.run(["run", "azure-tts", "--text", "hi", "-o", "x.wav"]);
    out.expect_code(6);
    assert_no_secret(&out);
    assert!(out.stderr.contains("401"), "{}", out.stderr);
    assert_eq!(emulator.synthesis_requests().len(), 1, "401 is not retried");
    assert!(ctx.work_files().is_empty());
}

#[test]
fn rate_limits_are_retried_and_a_billed_request_is_never_sent_twice() {
    let emulator = AzureEmulator::start(KEY);
    let ctx = azure_context(&emulator);
    emulator.fail_next(429, &[("Retry-After", "1")]);
    let out = ctx.run([
        "run",
        "azure-tts",
        "--text",
        "after a rate limit",
        "-o",
        "ok.wav",
    ]);
    out.success();
    assert_eq!(emulator.synthesis_requests().len(), 2);
    assert!(parse_wav(&std::fs::read(ctx.work_file("ok.wav")).unwrap()).is_ok());

    // A 5xx after the text was sent may have been synthesized (and billed): not resent.
    emulator.fail_next(500, &[]);
    let down = ctx.run(["run", "azure-tts", "--text", "once", "-o", "down.wav"]);
    down.expect_code(8);
    assert!(down.stderr.contains("not sent again"), "{}", down.stderr);
    assert_eq!(emulator.synthesis_requests().len(), 3);
    assert!(!ctx.work_file("down.wav").exists());
    assert_no_secret(&down);
}

#[test]
fn a_hung_service_times_out() {
    let emulator = AzureEmulator::start(KEY);
    let ctx = azure_context(&emulator);
    for _ in 0..8 {
        emulator.hang_next();
    }
    let out = ctx.run([
        "run",
        "azure-tts",
        "--text",
        "hello?",
        "--set",
        "timeout=1",
        "-o",
        "late.wav",
    ]);
    out.expect_code(9);
    assert_no_secret(&out);
    assert!(ctx.work_files().is_empty());
}

#[test]
fn voices_are_listed_from_the_service() {
    let emulator = AzureEmulator::start(KEY);
    let ctx = azure_context(&emulator);
    let out = ctx.run([
        "run",
        "voices",
        "--tool",
        "azure-tts",
        "--language",
        "zh-CN",
    ]);
    out.success();
    let voices = out.json();
    let voices = voices.as_array().expect("a JSON array of voices");
    assert!(
        voices.iter().any(|v| v["id"] == "zh-CN-XiaoxiaoNeural"),
        "{}",
        out.stdout
    );
    assert!(
        voices
            .iter()
            .all(|v| v["language"] == "zh" && v["name"].is_string()),
        "{}",
        out.stdout
    );
    // A tts parameter is not one of `voices`.
    ctx.run(["run", "voices", "--tool", "azure-tts", "--rate", "1.5"])
        .expect_code(2);
}
