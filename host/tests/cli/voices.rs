//! Cloud voices end to end: the real binary and the minimax, murf and azure-tts plugins
//! against their emulators, with long mixed Chinese and English text spoken as one file.

use launcher_testkit::cli::{Outcome, TestContext};
use launcher_testkit::emulators::azure::{self, AzureEmulator};
use launcher_testkit::emulators::minimax::{self, MiniMaxEmulator};
use launcher_testkit::emulators::murf::{self, MurfEmulator};
use launcher_testkit::media::{parse_wav, probe_duration};
use launcher_testkit::test_context;
use launcher_testkit::text::mixed_chinese_english;

const KEY: &str = "e2e-voice-key-0123456789";

/// About 20,000 characters of mixed Chinese and English sentences.
fn long_mixed() -> String {
    mixed_chinese_english(20_000)
}

#[track_caller]
fn assert_no_secret(out: &Outcome) {
    assert!(
        !out.stdout.contains(KEY) && !out.stderr.contains(KEY),
        "the key leaked: {out:#?}"
    );
}

/// Runs `launcher run <tool>` on the long text from a file, writing `name`, and returns the
/// file's bytes and the job's JSON result.
fn speak_long(
    ctx: &TestContext,
    tool: &str,
    name: &str,
    extra: &[&str],
) -> (Vec<u8>, serde_json::Value) {
    let text = ctx.work_file("chapter.txt");
    std::fs::write(&text, long_mixed()).unwrap();
    let mut args = vec!["run", tool, "--file", "chapter.txt", "-o", name, "--json"];
    args.extend_from_slice(extra);
    let out = ctx.run(args);
    out.success();
    assert_no_secret(&out);
    let result = out.json();
    assert_eq!(result["outputs"].as_array().unwrap().len(), 1, "{result}");
    (std::fs::read(ctx.work_file(name)).unwrap(), result)
}

#[track_caller]
fn assert_duration(bytes: &[u8], extension: &str, expected_millis: u64) {
    let duration = probe_duration(bytes, extension).unwrap();
    assert!(
        (duration - expected_millis as f64 / 1000.0).abs() < 0.1,
        "{extension}: {duration} s, expected {expected_millis} ms"
    );
}

fn minimax_context(emulator: &MiniMaxEmulator) -> TestContext {
    let mut ctx = test_context!();
    ctx.env("MINIMAX_API_KEY", KEY)
        .env("MINIMAX_BASE_URL", emulator.url())
        .env("MINIMAX_TIMEOUT", "20");
    ctx
}

fn murf_context(emulator: &MurfEmulator) -> TestContext {
    let mut ctx = test_context!();
    ctx.env("MURF_API_KEY", KEY)
        .env("MURF_BASE_URL", emulator.url())
        .env("MURF_TIMEOUT", "20");
    ctx
}

fn minimax_pieces(emulator: &MiniMaxEmulator) -> Vec<u64> {
    emulator
        .bodies()
        .iter()
        .map(|b| minimax::spoken_millis(b["text"].as_str().unwrap(), 1.0))
        .collect()
}

#[test]
fn minimax_speaks_a_long_mixed_text_as_one_mp3_of_the_summed_length() {
    let emulator = MiniMaxEmulator::start(KEY);
    let ctx = minimax_context(&emulator);
    let (mp3, result) = speak_long(&ctx, "minimax", "chapter.mp3", &["--sample-rate", "16000"]);
    let pieces = minimax_pieces(&emulator);
    assert!(pieces.len() >= 7, "{} pieces", pieces.len());
    assert_eq!(result["info"]["requests"], pieces.len());
    assert_duration(&mp3, "mp3", pieces.iter().sum());
}

#[test]
fn minimax_speaks_a_long_mixed_text_as_one_wav() {
    let emulator = MiniMaxEmulator::start(KEY);
    let ctx = minimax_context(&emulator);
    let (wav, _) = speak_long(&ctx, "minimax", "chapter.wav", &["--sample-rate", "16000"]);
    let info = parse_wav(&wav).unwrap();
    let total: u64 = minimax_pieces(&emulator).iter().sum();
    assert_eq!((info.duration * 1000.0).round() as u64, total);
    assert_duration(&wav, "wav", total);
}

#[test]
fn minimax_errors_in_a_200_reach_the_user_with_their_exit_codes() {
    let emulator = MiniMaxEmulator::start(KEY);
    let ctx = minimax_context(&emulator);
    emulator.fail_next(1004, "login fail");
    let out = ctx.run(["run", "minimax", "--text", "你好。", "-o", "a.wav"]);
    out.expect_code(6);
    assert!(out.stderr.contains("MINIMAX_API_KEY"), "{}", out.stderr);
    assert_no_secret(&out);
    emulator.fail_next(1026, "input new_sensitive");
    let out = ctx.run(["run", "minimax", "--text", "你好。", "-o", "b.wav"]);
    out.expect_code(5);
    assert!(out.stderr.contains("sensitive"), "{}", out.stderr);
    // A rate limit is waited out and the job succeeds.
    emulator.fail_next(1002, "rate limit");
    let out = ctx.run(["run", "minimax", "--text", "你好。", "-o", "c.wav"]);
    out.success();
    assert!(ctx.work_files().contains(&"c.wav".to_string()));
    assert!(!ctx.work_files().contains(&"a.wav".to_string()));
}

#[test]
fn murf_speaks_a_long_mixed_text_as_one_mp3_of_the_summed_length() {
    let emulator = MurfEmulator::start(KEY);
    let ctx = murf_context(&emulator);
    let (mp3, _) = speak_long(&ctx, "murf", "chapter.mp3", &["--voice", "zh-CN-tao"]);
    let pieces: Vec<u64> = emulator
        .bodies()
        .iter()
        .map(|b| murf::spoken_millis(b["text"].as_str().unwrap(), 0))
        .collect();
    assert!(pieces.len() >= 7, "{} pieces", pieces.len());
    assert_duration(&mp3, "mp3", pieces.iter().sum());
}

#[test]
fn murf_lists_voices_and_refuses_a_spent_quota_with_its_exit_code() {
    let emulator = MurfEmulator::start(KEY);
    let ctx = murf_context(&emulator);
    let out = ctx.run(["run", "voices", "--tool", "murf", "--language", "zh"]);
    out.success();
    let voices = out.json();
    let ids: Vec<&str> = voices
        .as_array()
        .expect("a JSON array of voices")
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["en-US-natalie", "zh-CN-tao"], "{}", out.stdout);
    emulator.set_quota(3);
    let out = ctx.run(["run", "murf", "--text", "Hello there.", "-o", "q.mp3"]);
    out.expect_code(7);
    assert!(out.stderr.contains("402"), "{}", out.stderr);
    assert!(
        out.stderr.contains("waiting will not help"),
        "{}",
        out.stderr
    );
    assert_eq!(emulator.requests_to(murf::GENERATE_PATH).len(), 1);
}

#[test]
fn azure_speaks_a_long_mixed_text_as_one_ogg_of_the_summed_length() {
    let emulator = AzureEmulator::start(KEY);
    let mut ctx = test_context!();
    ctx.env("AZURE_SPEECH_KEY", KEY)
        .env("AZURE_SPEECH_ENDPOINT", emulator.url())
        .env("AZURE_SPEECH_TIMEOUT", "20");
    let (ogg, result) = speak_long(
        &ctx,
        "azure-tts",
        "chapter.ogg",
        &["--voice", "zh-CN-XiaoxiaoNeural"],
    );
    let requests = emulator.synthesis_requests();
    assert!(requests.len() >= 7, "{} requests", requests.len());
    assert_eq!(result["info"]["requests"], requests.len());
    let total: u64 = requests
        .iter()
        .map(|r| azure::spoken_millis(&r.body_text()).unwrap())
        .sum();
    assert_duration(&ogg, "ogg", total);
}
