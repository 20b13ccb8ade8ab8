//! runway against the Runway emulator, through the plugin's exported ABI functions.
//!
//! Polls are fast-forwarded 1000 times (`wait::fast_forward`): Runway's 5-second interval
//! becomes 5 ms here, and the tests check the gaps the emulator saw against it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use launcher_plugin_runway::{POLL_INTERVAL, Runway};
use launcher_sdk::abi::CallError;
use launcher_sdk::serde_json::{Value, json};
use launcher_sdk::testing::{self, Run, Runner};
use launcher_sdk::{ErrorKind, PluginError, Settings};
use launcher_testkit::emulators::runway::RunwayEmulator;
use launcher_testkit::emulators::tasks::{Outcome, Script};
use launcher_testkit::media::png;

const KEY: &str = "key_rw-0123456789abcdef-emulated";
const SCALE: f64 = 1000.0;

fn settings(emulator: &RunwayEmulator) -> Settings {
    launcher_sdk::wait::fast_forward(SCALE);
    let mut settings = Settings::default();
    settings.set_secret("key", KEY);
    settings.set("base_url", emulator.url());
    settings.set("timeout", "10");
    settings
}

fn run(emulator: &RunwayEmulator, task: &str, params: Value) -> Run {
    let job = testing::job(task, "runway", params);
    testing::run::<Runway>("runway", &settings(emulator), job)
}

fn error(run: &Run) -> &PluginError {
    match &run.result {
        Err(CallError::Plugin(err)) => err,
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

fn image_file(dir: &tempfile::TempDir, bytes: &[u8]) -> String {
    let path = dir.path().join("frame.png");
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

#[track_caller]
fn assert_no_secret(run: &Run) {
    let seen = format!("{:?} {:?} {:?}", run.result, run.logs, run.progress);
    assert!(!seen.contains(KEY), "the key leaked: {seen}");
}

#[test]
fn img2vid_sends_a_data_uri_polls_and_downloads_the_mp4() {
    let emulator = RunwayEmulator::start(KEY);
    let dir = tempfile::tempdir().unwrap();
    let frame = png(32, 18, [200, 80, 20]);
    let image = image_file(&dir, &frame);
    let done = run(
        &emulator,
        "img2vid",
        json!({"image": image, "prompt": "slow pan", "ratio": "16:9", "duration": 10, "seed": 7}),
    );
    let result = done.result.as_ref().expect("the job succeeds");
    let (header, video) = done.output("video").expect("a video");
    assert_eq!(header.media_type, "video/mp4");
    assert_eq!(video.as_slice(), emulator.video());
    assert_eq!(done.closed, ["video"]);

    let body = &emulator.create_bodies()[0];
    assert_eq!(body["model"], "gen4_turbo");
    assert_eq!(body["ratio"], "1280:720");
    assert_eq!(body["duration"], 10);
    assert_eq!(body["seed"], 7);
    assert_eq!(body["promptText"], "slow pan");
    let uri = body["promptImage"].as_str().unwrap();
    let b64 = uri
        .strip_prefix("data:image/png;base64,")
        .expect("a PNG data URI");
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        frame
    );
    let create = &emulator.creates()[0];
    assert_eq!(create.path, "/v1/image_to_video");
    assert_eq!(create.header("x-runway-version"), Some("2024-11-06"));

    // Submitting is checkpointed before the request, the task after it.
    assert_eq!(done.checkpoints[0], json!({"state": "submitting"}));
    let task = done.checkpoints[1]["task"].as_str().unwrap();
    assert_eq!(result.info["task"], task);
    // 10 s of gen4_turbo at 5 credits a second, confirmed before the submit.
    assert_eq!(done.costs.len(), 1);
    assert_eq!(
        done.costs[0].to_string(),
        "$0.50 (10 s of gen4_turbo video)"
    );
    // PENDING, RUNNING twice, SUCCEEDED: four looks, never closer than the scaled 5 s.
    let gaps = emulator.tasks().poll_gaps(task);
    assert_eq!(gaps.len(), 3, "{gaps:?}");
    let least = POLL_INTERVAL.div_f64(SCALE);
    assert!(gaps.iter().all(|g| *g >= least), "{gaps:?}");
    let fractions: Vec<_> = done.progress.iter().filter_map(|p| p.fraction).collect();
    assert!(fractions.len() >= 2, "{:?}", done.progress);
    assert_no_secret(&done);
}

#[test]
fn txt2vid_uses_veo_and_a_url_image_goes_as_is() {
    let emulator = RunwayEmulator::start(KEY);
    let done = run(
        &emulator,
        "txt2vid",
        json!({"prompt": "waves at dusk", "audio": true}),
    );
    assert!(done.result.is_ok(), "{:?}", done.result);
    let body = &emulator.create_bodies()[0];
    assert_eq!(body["model"], "veo3.1_fast");
    assert_eq!(body["duration"], 8);
    assert_eq!(body["audio"], true);
    assert_eq!(emulator.creates()[0].path, "/v1/text_to_video");

    let done = run(
        &emulator,
        "img2vid",
        json!({"image": "https://example.com/frame.webp", "model": "veo3.1", "duration": 4}),
    );
    assert!(done.result.is_ok(), "{:?}", done.result);
    assert_eq!(
        emulator.create_bodies()[1]["promptImage"],
        "https://example.com/frame.webp"
    );
}

#[test]
fn wrong_models_ratios_durations_and_large_images_are_refused_before_any_request() {
    let emulator = RunwayEmulator::start(KEY);
    let dir = tempfile::tempdir().unwrap();
    let small = image_file(&dir, &png(8, 8, [0, 0, 0]));
    let cases = [
        (
            "txt2vid",
            json!({"prompt": "x", "model": "gen4_turbo"}),
            "needs an image",
        ),
        (
            "img2vid",
            json!({"image": small, "ratio": "1920:1080"}),
            "does not render ratio",
        ),
        (
            "img2vid",
            json!({"image": small, "duration": 11}),
            "renders 2, 3, 4",
        ),
        (
            "img2vid",
            json!({"image": small, "model": "gen4.5"}),
            "needs a prompt",
        ),
        (
            "img2vid",
            json!({"image": small, "model": "gen2"}),
            "no model `gen2`",
        ),
        (
            "img2vid",
            json!({"image": "http://example.com/a.png"}),
            "only over https",
        ),
    ];
    for (task, params, says) in cases {
        let done = run(&emulator, task, params);
        let err = error(&done);
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{err:?}");
        assert!(err.message.contains(says), "{says}: {}", err.message);
    }
    // Over 5 MB once encoded: the message says so and names the way out.
    let mut big = png(8, 8, [0, 0, 0]);
    big.resize(4 * 1024 * 1024, 0);
    let big = image_file(&dir, &big);
    let done = run(&emulator, "img2vid", json!({"image": big}));
    let err = error(&done);
    assert!(
        err.message.contains("takes at most 5.0 MB inline"),
        "{}",
        err.message
    );
    assert!(err.hint.as_deref().unwrap().contains("https URL"));
    assert!(emulator.creates().is_empty(), "nothing was sent");
}

#[test]
fn throttling_is_shown_as_waiting_in_the_queue() {
    let emulator = RunwayEmulator::start(KEY);
    emulator.tasks().script_next(Script {
        throttled: 2,
        ..Script::default()
    });
    let done = run(&emulator, "txt2vid", json!({"prompt": "rain"}));
    assert!(done.result.is_ok(), "{:?}", done.result);
    let queued = done
        .progress
        .iter()
        .filter(|p| p.message.contains("waiting in your Runway queue"))
        .count();
    assert_eq!(queued, 2, "{:?}", done.progress);
}

#[test]
fn failure_codes_end_the_job_with_their_kind() {
    let emulator = RunwayEmulator::start(KEY);
    for (code, kind) in [
        ("SAFETY.INPUT.TEXT", ErrorKind::InvalidInput),
        ("INTERNAL.BAD_OUTPUT.CODE01", ErrorKind::Unavailable),
        ("ASSET.INVALID", ErrorKind::InvalidInput),
    ] {
        emulator.tasks().script_next(Script {
            outcome: Outcome::Fail {
                code: code.into(),
                message: "the emulated failure".into(),
            },
            ..Script::default()
        });
        let done = run(&emulator, "txt2vid", json!({"prompt": "rain"}));
        let err = error(&done);
        assert_eq!(err.kind, kind, "{code}: {err:?}");
        assert!(err.message.contains(code), "{}", err.message);
        assert!(
            err.message.contains("the emulated failure"),
            "{}",
            err.message
        );
        assert!(done.outputs.is_empty());
    }
}

#[test]
fn a_bad_key_is_unauthorized_and_names_the_setting() {
    let emulator = RunwayEmulator::start(KEY);
    let mut settings = settings(&emulator);
    settings.set_secret("key", "key_wrong");
    let job = testing::job("txt2vid", "runway", json!({"prompt": "rain"}));
    let done = testing::run::<Runway>("runway", &settings, job);
    let err = error(&done);
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert!(err.hint.as_deref().unwrap().contains("RUNWAYML_API_SECRET"));
    assert_eq!(emulator.creates().len(), 1, "a 401 is not retried");
}

#[test]
fn a_submit_is_never_sent_twice_but_polls_are_retried() {
    let emulator = RunwayEmulator::start(KEY);
    emulator.fail_next(502);
    let done = run(&emulator, "txt2vid", json!({"prompt": "rain"}));
    let err = error(&done);
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(err.message.contains("not sent again"), "{}", err.message);
    assert_eq!(emulator.creates().len(), 1);
    assert_eq!(emulator.tasks().created(), 0);

    // A 429 is refused before any work, so it is sent again.
    emulator.fail_next(429);
    let done = run(&emulator, "txt2vid", json!({"prompt": "rain"}));
    assert!(done.result.is_ok(), "{:?}", done.result);
    assert_eq!(emulator.tasks().created(), 1);
}

#[test]
fn a_detached_job_returns_after_submitting_and_a_resume_finishes_it() {
    let emulator = RunwayEmulator::start(KEY);
    let mut job = testing::job("txt2vid", "runway", json!({"prompt": "rain"}));
    job.detach = true;
    let submitted = testing::run::<Runway>("runway", &settings(&emulator), job.clone());
    assert!(submitted.result.is_ok(), "{:?}", submitted.result);
    assert!(submitted.outputs.is_empty());
    let checkpoint = submitted.checkpoints.last().unwrap().clone();

    job.detach = false;
    job.resume = Some(checkpoint.clone());
    let resumed = testing::run::<Runway>("runway", &settings(&emulator), job.clone());
    let result = resumed.result.as_ref().expect("the resumed job succeeds");
    assert_eq!(result.info["resumed"], true);
    assert_eq!(result.info["task"], checkpoint["task"]);
    assert!(resumed.output("video").is_some());
    assert_eq!(emulator.creates().len(), 1, "a resume never submits again");

    // A job stopped while submitting is not sent again.
    job.resume = Some(json!({"state": "submitting"}));
    let unknown = testing::run::<Runway>("runway", &settings(&emulator), job);
    let err = error(&unknown);
    assert!(
        err.message.contains("unknown whether Runway received it"),
        "{}",
        err.message
    );
    assert_eq!(emulator.creates().len(), 1);
}

#[test]
fn cancelling_while_waiting_deletes_the_task() {
    let emulator = RunwayEmulator::start(KEY);
    emulator.tasks().script_next(Script {
        running: 1000,
        ..Script::default()
    });
    let cancel = Arc::new(AtomicBool::new(false));
    let job = testing::job("txt2vid", "runway", json!({"prompt": "rain"}));
    let done = Runner::new("runway", &settings(&emulator))
        .cancel(cancel.clone())
        .watch(|run| run.progress.len() < 3)
        .run::<Runway>(job);
    assert!(
        matches!(done.result, Err(CallError::Plugin(ref e)) if e.kind == ErrorKind::Cancelled),
        "{:?}",
        done.result
    );
    let task = done.checkpoints[1]["task"].as_str().unwrap();
    assert_eq!(emulator.deleted(), [task]);
    let delete = emulator
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .unwrap();
    assert_eq!(delete.header("x-runway-version"), Some("2024-11-06"));
    assert!(cancel.load(Ordering::SeqCst));
}

#[test]
fn an_expired_result_link_says_so() {
    let emulator = RunwayEmulator::start(KEY);
    emulator.tasks().link_lifetime(-3 * 3600);
    let done = run(&emulator, "txt2vid", json!({"prompt": "rain"}));
    let err = error(&done);
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.message.contains("output URL expired 3 h ago"),
        "{}",
        err.message
    );
    assert!(done.closed.is_empty(), "no output is complete");
}

#[test]
fn a_declined_cost_submits_nothing_and_prices_can_be_overridden() {
    let emulator = RunwayEmulator::start(KEY);
    let mut settings = settings(&emulator);
    settings.set("prices", "veo3.1_fast=0.2");
    let job = testing::job(
        "txt2vid",
        "runway",
        json!({"prompt": "rain", "duration": 6}),
    );
    let done = Runner::new("runway", &settings)
        .decline_costs()
        .run::<Runway>(job);
    assert_eq!(error(&done).kind, ErrorKind::Cancelled);
    assert_eq!(
        done.costs[0].to_string(),
        "$1.20 (6 s of veo3.1_fast video)"
    );
    assert!(done.checkpoints.is_empty(), "{:?}", done.checkpoints);
    assert!(emulator.creates().is_empty());

    settings.set("prices", "veo3.1_fast=cheap");
    let job = testing::job("txt2vid", "runway", json!({"prompt": "rain"}));
    let done = testing::run::<Runway>("runway", &settings, job);
    assert!(error(&done).message.contains("`prices` setting"));
}

#[test]
fn a_poll_that_meets_a_503_is_asked_again() {
    let emulator = RunwayEmulator::start(KEY);
    let mut faulted = false;
    let job = testing::job("txt2vid", "runway", json!({"prompt": "rain"}));
    let done = Runner::new("runway", &settings(&emulator))
        .watch(|run| {
            // Once the task is accepted, the next request (a poll) meets Runway shedding load.
            if run.checkpoints.len() == 2 && !faulted {
                faulted = true;
                emulator.fail_next(503);
            }
            true
        })
        .run::<Runway>(job);
    assert!(done.result.is_ok(), "{:?}", done.result);
    assert!(faulted);
    let polls = emulator
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/v1/tasks/"))
        .count();
    assert_eq!(polls, 5, "four looks and the one that met the 503");
    assert_eq!(emulator.creates().len(), 1);
}
