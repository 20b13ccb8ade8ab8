//! elevenlabs end to end: the real binary and plugin against the ElevenLabs emulator.

use launcher_testkit::cli::{Outcome, TestContext};
use launcher_testkit::emulators::elevenlabs::{ElevenLabsEmulator, expected_millis};
use launcher_testkit::media::probe_duration;
use launcher_testkit::test_context;
use launcher_testkit::text::mixed_chinese_english;

const KEY: &str = "sk_e2e_elevenlabs_key_0123456789";

fn context(emulator: &ElevenLabsEmulator) -> TestContext {
    let mut ctx = test_context!();
    ctx.env("ELEVENLABS_API_KEY", KEY)
        .env("ELEVENLABS_BASE_URL", emulator.url())
        .env("ELEVENLABS_TIMEOUT", "10");
    ctx
}

#[track_caller]
fn assert_no_secret(out: &Outcome) {
    assert!(
        !out.stdout.contains(KEY) && !out.stderr.contains(KEY),
        "the key leaked: {out:#?}"
    );
}

#[test]
fn elevenlabs_speaks_when_asked_and_never_by_default() {
    let emulator = ElevenLabsEmulator::start(KEY);
    let ctx = context(&emulator);
    let offline = ctx.run(["run", "tts", "--text", "Hello", "-v", "--json"]);
    offline.success();
    assert_ne!(offline.json()["tool"], "elevenlabs");
    assert!(
        offline.stderr.contains("passed over `elevenlabs` (cloud"),
        "{}",
        offline.stderr
    );
    assert!(emulator.synthesis_requests().is_empty());

    let out = ctx.run([
        "run",
        "tts",
        "--tool",
        "elevenlabs",
        "--text",
        "你好，ElevenLabs。",
        "--language-code",
        "zh",
        "-o",
        "hi.mp3",
    ]);
    out.success();
    assert_no_secret(&out);
    let mp3 = std::fs::read(ctx.work_file("hi.mp3")).unwrap();
    let requests = emulator.synthesis_requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].path.contains("output_format=mp3_"),
        "{}",
        requests[0].path
    );
    let duration = probe_duration(&mp3, "mp3").unwrap();
    assert!((duration - expected_millis(&requests[0]) as f64 / 1000.0).abs() < 0.1);
}

#[test]
fn a_wrong_key_and_a_spent_quota_exit_differently_and_leave_nothing() {
    let emulator = ElevenLabsEmulator::start("sk_the_right_key_0000000000");
    let ctx = context(&emulator);
    let wrong = ctx.run(["run", "elevenlabs", "--text", "hi", "-o", "x.mp3"]);
    wrong.expect_code(6);
    assert!(wrong.stderr.contains("invalid_api_key"), "{}", wrong.stderr);
    assert!(wrong.stderr.contains("hint:"), "{}", wrong.stderr);
    assert_no_secret(&wrong);

    let emulator = ElevenLabsEmulator::start(KEY);
    emulator.set_quota(3);
    let ctx = context(&emulator);
    let spent = ctx.run([
        "run",
        "elevenlabs",
        "--text",
        "too long for the quota",
        "-o",
        "y.mp3",
    ]);
    spent.expect_code(7);
    assert!(spent.stderr.contains("quota"), "{}", spent.stderr);
    assert_eq!(emulator.synthesis_requests().len(), 1);
    assert!(ctx.work_files().is_empty(), "{:?}", ctx.work_files());
}

#[test]
fn voices_and_models_are_listed_as_json() {
    let emulator = ElevenLabsEmulator::start(KEY);
    let ctx = context(&emulator);
    let voices = ctx.run(["run", "voices", "--tool", "elevenlabs", "--json"]);
    voices.success();
    let list = voices.json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|v| v["id"] == "21m00Tcm4TlvDq8ikWAM" && v["name"] == "Rachel"),
        "{list}"
    );
    let models = ctx.run(["run", "models", "--tool", "elevenlabs", "--json"]);
    models.success();
    assert!(
        models
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "eleven_multilingual_v2")
    );
}

#[test]
fn a_chapter_of_mixed_chinese_and_english_is_one_mp3() {
    let emulator = ElevenLabsEmulator::start(KEY);
    let ctx = context(&emulator);
    let text = mixed_chinese_english(20_000);
    std::fs::write(ctx.work_file("chapter.txt"), &text).unwrap();
    let out = ctx.run([
        "run",
        "tts",
        "--tool",
        "elevenlabs",
        "--file",
        "chapter.txt",
        "-o",
        "chapter.mp3",
    ]);
    out.success();
    let requests = emulator.synthesis_requests();
    assert!(requests.len() >= 4, "{} requests", requests.len());
    let total: u64 = requests.iter().map(expected_millis).sum();
    let mp3 = std::fs::read(ctx.work_file("chapter.mp3")).unwrap();
    let duration = probe_duration(&mp3, "mp3").unwrap();
    assert!(
        (duration - total as f64 / 1000.0).abs() < 0.1,
        "{duration} s, expected {total} ms"
    );
    assert_eq!(ctx.work_files(), ["chapter.mp3", "chapter.txt"]);
}
