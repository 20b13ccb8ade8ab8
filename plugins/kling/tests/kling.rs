//! kling against the Kling emulator, through the plugin's exported ABI functions.
//!
//! Polls are fast-forwarded 1000 times (`wait::fast_forward`).

use launcher_plugin_kling::{Kling, POLL_INTERVAL};
use launcher_sdk::abi::CallError;
use launcher_sdk::serde_json::{Value, json};
use launcher_sdk::testing::{self, Run, Runner};
use launcher_sdk::{ErrorKind, PluginError, Settings};
use launcher_testkit::emulators::kling::KlingEmulator;
use launcher_testkit::emulators::tasks::{Outcome, Script};
use launcher_testkit::media::png;

const ACCESS: &str = "ak-kling-emulated-0123";
const SECRET: &str = "sk-kling-emulated-secret-4567";
const SCALE: f64 = 1000.0;

fn settings(emulator: &KlingEmulator) -> Settings {
    launcher_sdk::wait::fast_forward(SCALE);
    let mut settings = Settings::default();
    settings.set_secret("access_key", ACCESS);
    settings.set_secret("secret_key", SECRET);
    settings.set("base_url", emulator.url());
    settings.set("timeout", "10");
    settings
}

fn run(emulator: &KlingEmulator, task: &str, params: Value) -> Run {
    let job = testing::job(task, "kling", params);
    testing::run::<Kling>("kling", &settings(emulator), job)
}

fn error(run: &Run) -> &PluginError {
    match &run.result {
        Err(CallError::Plugin(err)) => err,
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

#[track_caller]
fn assert_no_secret(run: &Run) {
    let seen = format!("{:?} {:?} {:?}", run.result, run.logs, run.progress);
    assert!(!seen.contains(SECRET), "the secret key leaked: {seen}");
}

#[test]
fn txt2vid_signs_every_request_and_downloads_the_video() {
    let emulator = KlingEmulator::start(ACCESS, SECRET);
    let done = run(
        &emulator,
        "txt2vid",
        json!({"prompt": "一只熊猫在竹林里", "ratio": "9:16", "duration": 10, "mode": "pro", "cfg_scale": 0.5}),
    );
    let result = done.result.as_ref().expect("the job succeeds");
    let (header, video) = done.output("video").expect("a video");
    assert_eq!(header.media_type, "video/mp4");
    assert_eq!(video.as_slice(), emulator.video());
    let body = &emulator.create_bodies()[0];
    assert_eq!(
        *body,
        json!({"prompt": "一只熊猫在竹林里", "model_name": "kling-v1-6", "mode": "pro",
               "duration": "10", "cfg_scale": 0.5, "aspect_ratio": "9:16"})
    );
    assert_eq!(emulator.creates()[0].path, "/v1/videos/text2video");
    // Every request carried a token that checked, with the claims the contract names.
    let claims = emulator.claims();
    assert_eq!(
        claims.len(),
        emulator.requests().len() - 1,
        "all but the download"
    );
    for claim in &claims {
        assert_eq!(claim["iss"], ACCESS);
        let (exp, nbf) = (
            claim["exp"].as_u64().unwrap(),
            claim["nbf"].as_u64().unwrap(),
        );
        assert_eq!(exp - nbf, 1805);
    }
    assert_eq!(done.checkpoints[0], json!({"state": "submitting"}));
    assert_eq!(done.checkpoints[1]["kind"], "text2video");
    let task = done.checkpoints[1]["task"].as_str().unwrap();
    assert_eq!(result.info["task"], task);
    // 10 s of kling-v1-6 pro at $0.098 a second.
    assert_eq!(
        done.costs[0].to_string(),
        "$0.98 (10 s of kling-v1-6 pro video)"
    );
    let gaps = emulator.tasks().poll_gaps(task);
    assert!(
        gaps.iter().all(|g| *g >= POLL_INTERVAL.div_f64(SCALE)),
        "{gaps:?}"
    );
    assert_no_secret(&done);
}

#[test]
fn img2vid_sends_raw_base64_frames_and_txt2img_writes_each_image() {
    let emulator = KlingEmulator::start(ACCESS, SECRET);
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.png");
    std::fs::write(&first, png(8, 8, [1, 2, 3])).unwrap();
    let done = run(
        &emulator,
        "img2vid",
        json!({"image": first.to_str().unwrap(), "last_frame": "https://example.com/last.jpg"}),
    );
    assert!(done.result.is_ok(), "{:?}", done.result);
    let body = &emulator.create_bodies()[0];
    assert!(
        body["image"].as_str().unwrap().starts_with("iVBORw0KGgo"),
        "{body}"
    );
    assert_eq!(body["image_tail"], "https://example.com/last.jpg");
    assert_eq!(emulator.creates()[0].path, "/v1/videos/image2video");

    let done = run(
        &emulator,
        "txt2img",
        json!({"prompt": "山水画", "count": 2, "ratio": "4:3"}),
    );
    assert!(done.result.is_ok(), "{:?}", done.result);
    let names: Vec<_> = done
        .outputs
        .iter()
        .map(|(h, _)| (h.name.as_str(), h.media_type.as_str()))
        .collect();
    assert_eq!(names, [("image", "image/png"), ("image-2", "image/png")]);
    assert_eq!(emulator.create_bodies()[1]["n"], 2);
}

#[test]
fn codes_become_error_kinds() {
    let emulator = KlingEmulator::start(ACCESS, SECRET);
    // A rate limit is refused before any work, so the submit is sent again.
    emulator.fail_next(429, 1302, "rate limit exceeded");
    let done = run(&emulator, "txt2vid", json!({"prompt": "rain"}));
    assert!(done.result.is_ok(), "{:?}", done.result);
    assert_eq!(emulator.creates().len(), 2);

    for (status, code, kind) in [
        (429, 1102, ErrorKind::Unauthorized),
        (400, 1201, ErrorKind::InvalidInput),
        (400, 1301, ErrorKind::InvalidInput),
    ] {
        emulator.fail_next(status, code, "emulated");
        let done = run(&emulator, "txt2vid", json!({"prompt": "rain"}));
        let err = error(&done);
        assert_eq!(err.kind, kind, "{code}: {err:?}");
        assert!(
            err.message.contains(&format!("code {code}")),
            "{}",
            err.message
        );
    }
}

#[test]
fn wrong_keys_are_unauthorized_and_name_the_settings() {
    let emulator = KlingEmulator::start(ACCESS, SECRET);
    let mut settings = settings(&emulator);
    settings.set_secret("secret_key", "sk-wrong");
    let job = testing::job("txt2vid", "kling", json!({"prompt": "rain"}));
    let done = testing::run::<Kling>("kling", &settings, job);
    let err = error(&done);
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert!(err.message.contains("code 1000"), "{}", err.message);
    assert!(err.hint.as_deref().unwrap().contains("KLING_SECRET_KEY"));
    assert!(emulator.claims().is_empty());
}

#[test]
fn a_failed_task_and_an_expired_link_end_the_job_clearly() {
    let emulator = KlingEmulator::start(ACCESS, SECRET);
    emulator.tasks().script_next(Script {
        outcome: Outcome::Fail {
            code: String::new(),
            message: "Failure to pass the risk control system".into(),
        },
        ..Script::default()
    });
    let done = run(&emulator, "txt2vid", json!({"prompt": "rain"}));
    assert_eq!(error(&done).kind, ErrorKind::InvalidInput);
    assert!(error(&done).message.contains("risk control"));

    emulator.tasks().link_lifetime(-120);
    let done = run(&emulator, "txt2vid", json!({"prompt": "rain"}));
    assert!(
        error(&done).message.contains("expired 2 min ago"),
        "{}",
        error(&done).message
    );
}

#[test]
fn bad_parameters_are_refused_before_any_request() {
    let emulator = KlingEmulator::start(ACCESS, SECRET);
    for (task, params, says) in [
        (
            "txt2vid",
            json!({"prompt": "x", "duration": 7}),
            "5 or 10 seconds",
        ),
        (
            "txt2vid",
            json!({"prompt": "x", "ratio": "4:3"}),
            "no video ratio `4:3`",
        ),
        (
            "txt2vid",
            json!({"prompt": "x", "model": "kling-v9"}),
            "no video model",
        ),
        (
            "img2vid",
            json!({"image": "http://example.com/a.png"}),
            "only over https",
        ),
    ] {
        let done = run(&emulator, task, params);
        assert!(
            error(&done).message.contains(says),
            "{says}: {}",
            error(&done).message
        );
    }
    assert!(emulator.creates().is_empty());
}

#[test]
fn a_detached_job_resumes_at_its_task_and_cancelling_says_kling_cannot() {
    let emulator = KlingEmulator::start(ACCESS, SECRET);
    let mut job = testing::job(
        "img2vid",
        "kling",
        json!({"image": "https://example.com/a.png"}),
    );
    job.detach = true;
    let submitted = testing::run::<Kling>("kling", &settings(&emulator), job.clone());
    assert!(submitted.result.is_ok(), "{:?}", submitted.result);
    job.detach = false;
    job.resume = Some(submitted.checkpoints.last().unwrap().clone());
    let resumed = testing::run::<Kling>("kling", &settings(&emulator), job);
    assert!(resumed.output("video").is_some(), "{:?}", resumed.result);
    assert_eq!(emulator.creates().len(), 1);
    assert!(
        emulator
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/v1/videos/image2video/"))
    );

    emulator.tasks().script_next(Script {
        running: 1000,
        ..Script::default()
    });
    let job = testing::job("txt2vid", "kling", json!({"prompt": "rain"}));
    let done = Runner::new("kling", &settings(&emulator))
        .watch(|run| run.progress.len() < 3)
        .run::<Kling>(job);
    assert_eq!(error(&done).kind, ErrorKind::Cancelled);
    assert!(
        done.logs
            .iter()
            .any(|l| l.message.contains("no way to cancel")),
        "{:?}",
        done.logs
    );
}
