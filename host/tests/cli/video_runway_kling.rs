//! Video end to end: the real binary and the runway and kling plugins against their
//! emulators. Polls are fast-forwarded (`LAUNCHER_TEST_TIME_SCALE`, honoured by debug builds
//! only) and results are real MP4s, read back with ffprobe.

use launcher_testkit::cli::{Outcome, TestContext, job_id};
use launcher_testkit::emulators::kling::KlingEmulator;
use launcher_testkit::emulators::runway::RunwayEmulator;
use launcher_testkit::emulators::tasks::{Outcome as TaskOutcome, Script};
use launcher_testkit::media::{ffprobe, png};
use launcher_testkit::test_context;

const RUNWAY_KEY: &str = "key_e2e-runway-0123456789abcdef";
const KLING_ACCESS: &str = "ak-e2e-kling-0123";
const KLING_SECRET: &str = "sk-e2e-kling-secret-4567";

fn runway_context(emulator: &RunwayEmulator) -> TestContext {
    let mut ctx = test_context!();
    ctx.env("RUNWAYML_API_SECRET", RUNWAY_KEY)
        .env("RUNWAY_BASE_URL", emulator.url())
        .env("LAUNCHER_TEST_TIME_SCALE", "1000");
    ctx
}

fn kling_context(emulator: &KlingEmulator) -> TestContext {
    let mut ctx = test_context!();
    ctx.env("KLING_ACCESS_KEY", KLING_ACCESS)
        .env("KLING_SECRET_KEY", KLING_SECRET)
        .env("KLING_BASE_URL", emulator.url())
        .env("LAUNCHER_TEST_TIME_SCALE", "1000");
    ctx
}

#[track_caller]
fn assert_no_secret(out: &Outcome) {
    for secret in [RUNWAY_KEY, KLING_SECRET] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "a key leaked: {out:#?}"
        );
    }
}

/// Checks with ffprobe that `name` in the work directory is an MP4 holding one video stream.
#[track_caller]
fn assert_mp4(ctx: &TestContext, name: &str) {
    let probe = ffprobe(&ctx.work_file(name)).unwrap();
    assert!(
        probe["format"]["format_name"]
            .as_str()
            .unwrap()
            .contains("mp4"),
        "{probe}"
    );
    let streams = probe["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{probe}");
    assert_eq!(streams[0]["codec_type"], "video");
    assert_eq!(streams[0]["width"], 64);
    let seconds: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((seconds - 1.0).abs() < 0.2, "{probe}");
}

#[test]
fn runway_img2vid_runs_to_a_playable_mp4() {
    let emulator = RunwayEmulator::start(RUNWAY_KEY);
    let ctx = runway_context(&emulator);
    std::fs::write(ctx.work_file("frame.png"), png(64, 36, [10, 90, 200])).unwrap();
    let out = ctx.run([
        "run",
        "img2vid",
        "--tool",
        "runway",
        "--image",
        "frame.png",
        // The spelling: --text is the prompt wherever a task takes one.
        "--text",
        "the camera pans slowly",
        "--ratio",
        "16:9",
        "-o",
        "clip.mp4",
        "--json",
        "--yes",
    ]);
    out.success();
    assert_no_secret(&out);
    assert_mp4(&ctx, "clip.mp4");
    let result = out.json();
    assert_eq!(result["info"]["model"], "gen4_turbo");
    assert!(result["info"]["task"].as_str().unwrap().starts_with("rw-"));
    let body = &emulator.create_bodies()[0];
    assert!(
        body["promptImage"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
    assert_eq!(body["ratio"], "1280:720");
    assert_eq!(body["promptText"], "the camera pans slowly");
}

#[test]
fn kling_txt2vid_runs_to_a_playable_mp4() {
    let emulator = KlingEmulator::start(KLING_ACCESS, KLING_SECRET);
    let ctx = kling_context(&emulator);
    let out = ctx.run([
        "run",
        "txt2vid",
        "--tool",
        "kling",
        "--prompt",
        "月光下的长城",
        "-o",
        "wall.mp4",
        "--json",
        "--yes",
    ]);
    out.success();
    assert_no_secret(&out);
    assert_mp4(&ctx, "wall.mp4");
    assert!(emulator.claims().iter().all(|c| c["iss"] == KLING_ACCESS));
    assert_eq!(emulator.create_bodies()[0]["prompt"], "月光下的长城");
}

#[test]
fn a_detached_runway_job_is_finished_by_run_resume() {
    let emulator = RunwayEmulator::start(RUNWAY_KEY);
    let ctx = runway_context(&emulator);
    let out = ctx.run([
        "run",
        "txt2vid",
        "--tool",
        "runway",
        "--prompt",
        "waves",
        "--detach",
        "-o",
        "waves.mp4",
        "--yes",
    ]);
    out.success();
    assert!(!ctx.work_file("waves.mp4").exists());
    assert_eq!(emulator.creates().len(), 1);
    let id = job_id(&out.stderr);
    let resumed = ctx.run(["run", "--resume", &id, "--json"]);
    resumed.success();
    assert_eq!(resumed.json()["info"]["resumed"], true);
    assert_mp4(&ctx, "waves.mp4");
    assert_eq!(emulator.creates().len(), 1, "a resume never submits again");
}

#[test]
fn ctrl_c_detaches_a_runway_job_unless_asked_to_cancel_it_remotely() {
    let emulator = RunwayEmulator::start(RUNWAY_KEY);
    let ctx = runway_context(&emulator);
    emulator.tasks().script_next(Script {
        running: 100_000,
        ..Script::default()
    });
    let args = [
        "run", "txt2vid", "--tool", "runway", "--prompt", "rain", "-v", "--yes",
    ];
    let running = ctx.spawn_until(args, "submitted task");
    running.signal("INT");
    let out = running.wait();
    out.expect_code(12);
    assert!(out.stderr.contains("launcher jobs wait"), "{}", out.stderr);
    assert!(emulator.deleted().is_empty(), "the task goes on");

    emulator.tasks().script_next(Script {
        running: 100_000,
        ..Script::default()
    });
    let mut args = args.to_vec();
    args.push("--cancel-remote");
    let running = ctx.spawn_until(args, "submitted task");
    running.signal("INT");
    let out = running.wait();
    out.expect_code(130);
    assert_eq!(emulator.deleted().len(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("cancelled the remote task"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_safety_failure_exits_5_and_a_bad_key_exits_6() {
    let emulator = RunwayEmulator::start(RUNWAY_KEY);
    let ctx = runway_context(&emulator);
    emulator.tasks().script_next(Script {
        outcome: TaskOutcome::Fail {
            code: "SAFETY.INPUT.TEXT".into(),
            message: "The prompt was flagged by content moderation".into(),
        },
        ..Script::default()
    });
    let out = ctx.run([
        "run", "txt2vid", "--tool", "runway", "--prompt", "x", "--yes",
    ]);
    out.expect_code(5);
    assert!(out.stderr.contains("SAFETY.INPUT.TEXT"), "{}", out.stderr);
    assert!(out.stderr.contains("content moderation"), "{}", out.stderr);

    let out = ctx.run_with_env(
        [
            "run", "txt2vid", "--tool", "runway", "--prompt", "x", "--yes",
        ],
        &[("RUNWAYML_API_SECRET", "key_wrong")],
    );
    out.expect_code(6);
    assert!(out.stderr.contains("RUNWAYML_API_SECRET"), "{}", out.stderr);

    let emulator = KlingEmulator::start(KLING_ACCESS, KLING_SECRET);
    let mut ctx = kling_context(&emulator);
    ctx.env("KLING_SECRET_KEY", "sk-wrong");
    let out = ctx.run([
        "run", "txt2vid", "--tool", "kling", "--prompt", "x", "--yes",
    ]);
    out.expect_code(6);
    assert!(out.stderr.contains("KLING_SECRET_KEY"), "{}", out.stderr);
    assert_no_secret(&out);
}

#[test]
fn an_expired_result_link_is_a_clear_error() {
    let emulator = RunwayEmulator::start(RUNWAY_KEY);
    emulator.tasks().link_lifetime(-2 * 24 * 3600);
    let ctx = runway_context(&emulator);
    let out = ctx.run([
        "run", "txt2vid", "--tool", "runway", "--prompt", "x", "-o", "x.mp4", "--yes",
    ]);
    out.expect_code(8);
    assert!(
        out.stderr.contains("output URL expired 2 days ago"),
        "{}",
        out.stderr
    );
    assert!(!ctx.work_file("x.mp4").exists());
}

#[test]
fn jobs_cancel_deletes_a_detached_runway_task() {
    let emulator = RunwayEmulator::start(RUNWAY_KEY);
    let ctx = runway_context(&emulator);
    let out = ctx.run([
        "run", "txt2vid", "--tool", "runway", "--prompt", "fog", "--detach", "--yes",
    ]);
    out.success();
    let id = job_id(&out.stderr);
    let cancelled = ctx.run(["jobs", "cancel", &id, "--json"]);
    cancelled.success();
    assert_eq!(cancelled.json()[0]["state"], "cancelled");
    assert_eq!(emulator.deleted().len(), 1, "{}", cancelled.stderr);
    assert!(ctx.work_files().is_empty(), "{:?}", ctx.work_files());
}
