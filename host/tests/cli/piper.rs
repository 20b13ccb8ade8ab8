//! piper end to end: the real binary and plugin against the real Piper server, and with the
//! plugin starting the server itself from the voice file. Each test returns early (after a
//! skip line) when the engine is not installed.

use launcher_testkit::engines::{self, Engine};
use launcher_testkit::media::{parse_wav, probe_duration};
use launcher_testkit::test_context;

fn output_path(
    ctx: &launcher_testkit::cli::TestContext,
    result: &serde_json::Value,
) -> std::path::PathBuf {
    ctx.work
        .path()
        .join(result["outputs"][0]["path"].as_str().unwrap())
}

#[test]
fn a_ready_piper_outranks_espeak_as_the_offline_voice() {
    let Some(piper) = engines::piper() else {
        return;
    };
    let mut ctx = test_context!();
    // Not set up: espeak speaks, and -v says why piper was passed over.
    let before = ctx.run(["run", "tts", "--text", "Hello", "-v", "--json"]);
    before.success();
    assert_eq!(before.json()["tool"], "espeak");
    assert!(
        before.stderr.contains(
            "passed over `piper` (offline, priority 50): not ready, set PIPER_URL or PIPER_MODEL"
        ),
        "{}",
        before.stderr
    );

    ctx.env("PIPER_URL", piper.url());
    let out = ctx.run([
        "run",
        "tts",
        "--text",
        "Piper speaks when it is ready.",
        "-v",
        "--json",
    ]);
    out.success();
    let result = out.json();
    assert_eq!(result["tool"], "piper", "{}", out.stderr);
    assert!(
        out.stderr
            .contains("passed over `espeak` (offline, priority 0): `piper` comes first"),
        "{}",
        out.stderr
    );
    let wav = parse_wav(&std::fs::read(output_path(&ctx, &result)).unwrap()).unwrap();
    assert_eq!(wav.sample_rate, 22050);
    assert!(wav.duration > 1.0, "{wav:?}");
}

fn self_served(engine: &Engine) -> launcher_testkit::cli::TestContext {
    let mut ctx = test_context!();
    ctx.env("PIPER_MODEL", engine.manifest("model").unwrap())
        .env("PIPER_PYTHON", engine.manifest("python").unwrap());
    ctx
}

#[test]
fn with_a_voice_file_piper_needs_nothing_running() {
    let Some(piper) = engines::piper() else {
        return;
    };
    let ctx = self_served(piper);
    let out = ctx.run([
        "run",
        "tts",
        "--tool",
        "piper",
        "Hello from a server of its own.",
        "-o",
        "own.wav",
    ]);
    out.success();
    let wav = parse_wav(&std::fs::read(ctx.work_file("own.wav")).unwrap()).unwrap();
    assert!(wav.duration > 1.0, "{wav:?}");

    // Another format is encoded from Piper's WAV by ffmpeg, named by the output's extension.
    let mp3 = ctx.run(["run", "piper", "Hello again, as MP3.", "-o", "own.mp3"]);
    mp3.success();
    let mp3 = std::fs::read(ctx.work_file("own.mp3")).unwrap();
    assert!(probe_duration(&mp3, "mp3").unwrap() > 1.0);

    let voices = ctx.run(["run", "voices", "--tool", "piper", "--json"]);
    voices.success();
    let listed = voices.json();
    assert_eq!(listed[0]["id"], piper.model(), "{listed}");
    assert_eq!(listed[0]["language"], "en");
}

#[test]
fn what_piper_cannot_do_is_refused_with_a_hint() {
    let Some(piper) = engines::piper() else {
        return;
    };
    let mut ctx = test_context!();
    let unset = ctx.run(["run", "piper", "--text", "Hello"]);
    unset.expect_code(4);
    assert!(unset.stderr.contains("set PIPER_URL"), "{}", unset.stderr);

    ctx.env("PIPER_URL", piper.url());
    let pitch = ctx.run(["run", "piper", "--text", "Hello", "--pitch", "1.5"]);
    pitch.expect_code(5);
    assert!(
        pitch.stderr.contains("cannot change their pitch"),
        "{}",
        pitch.stderr
    );
    assert!(pitch.stderr.contains("hint:"), "{}", pitch.stderr);
    assert!(ctx.work_files().is_empty());

    let missing = ctx.run_with_env(
        ["run", "piper", "--text", "Hello"],
        &[("PIPER_MODEL", "/nowhere/voice.onnx")],
    );
    missing.expect_code(5);
    assert!(missing.stderr.contains("not a file"), "{}", missing.stderr);
}
