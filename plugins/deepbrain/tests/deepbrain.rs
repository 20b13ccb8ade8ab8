//! deepbrain against the DeepBrain emulator, through the plugin's exported ABI functions.

use launcher_plugin_deepbrain::DeepBrain;
use launcher_sdk::serde_json::{Value, json};
use launcher_sdk::testing::{self, Run, Runner};
use launcher_sdk::{ErrorKind, PluginError, Settings};
use launcher_testkit::emulators::deepbrain::DeepBrainEmulator;

const KEY: &str = "deepbrain-plugin-test-key-0123";

/// Enough of an MP4 for the sniffer.
fn mp4() -> Vec<u8> {
    let mut bytes = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
    bytes.extend_from_slice(&[7u8; 100]);
    bytes
}

fn settings(emulator: &DeepBrainEmulator) -> Settings {
    let mut settings = Settings::default();
    settings.set_secret("key", KEY);
    settings.set("base_url", emulator.url());
    settings.set("poll_interval", "0.01");
    settings
}

fn present(emulator: &DeepBrainEmulator, params: Value) -> Run {
    let job = testing::job("presenter", "deepbrain", params);
    testing::run::<DeepBrain>("deepbrain", &settings(emulator), job)
}

fn error(run: &Run) -> &PluginError {
    run.error()
        .unwrap_or_else(|| panic!("expected a plugin error, got {:?}", run.result))
}

#[test]
fn a_script_becomes_one_video_with_checkpoints_before_and_after_the_submit() {
    let emulator = DeepBrainEmulator::start(KEY, mp4());
    let run = present(&emulator, json!({"text": "Hello there."}));
    assert!(run.result.is_ok(), "{:?}", run.result);
    let (header, bytes) = run.output("video").expect("a video");
    assert_eq!(header.media_type, "video/mp4");
    assert_eq!(bytes, &mp4());
    assert_eq!(run.closed, ["video"]);
    assert_eq!(run.checkpoints[0], json!({"state": "submitting"}));
    let project = run.checkpoints[1]["project"].as_str().unwrap();
    assert_eq!(
        run.result.as_ref().unwrap().info["project"],
        Value::from(project)
    );
    // Progress rose to the end, from the service's own percentages.
    let fractions: Vec<f64> = run.progress.iter().filter_map(|p| p.fraction).collect();
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{fractions:?}");
    assert!(fractions.contains(&0.25), "{fractions:?}");
}

#[test]
fn a_resumed_job_follows_its_project_and_never_submits_again() {
    let emulator = DeepBrainEmulator::start(KEY, mp4());
    let mut detached = testing::job("presenter", "deepbrain", json!({"text": "Later."}));
    detached.detach = true;
    let run = testing::run::<DeepBrain>("deepbrain", &settings(&emulator), detached);
    assert!(run.outputs.is_empty());
    let checkpoint = run.checkpoints.last().unwrap().clone();

    let mut resumed = testing::job("presenter", "deepbrain", json!({"text": "Later."}));
    resumed.resume = Some(checkpoint);
    let run = testing::run::<DeepBrain>("deepbrain", &settings(&emulator), resumed);
    assert!(run.output("video").is_some(), "{:?}", run.result);
    assert_eq!(emulator.submitted().len(), 1);

    // Stopped during the submit: whether it arrived is unknown, so it is not sent again.
    let mut unsure = testing::job("presenter", "deepbrain", json!({"text": "Later."}));
    unsure.resume = Some(json!({"state": "submitting"}));
    let run = testing::run::<DeepBrain>("deepbrain", &settings(&emulator), unsure);
    assert_eq!(error(&run).kind, ErrorKind::Unavailable);
    assert!(
        error(&run).message.contains("unknown whether"),
        "{}",
        error(&run)
    );
    assert_eq!(emulator.submitted().len(), 1);
}

#[test]
fn an_expired_link_says_so_and_a_cancelled_render_says_it_goes_on() {
    let emulator = DeepBrainEmulator::start(KEY, mp4());
    emulator.expire_downloads();
    let run = present(&emulator, json!({"text": "Hi."}));
    assert!(
        error(&run)
            .message
            .contains("the output URL expired 60 min ago"),
        "{}",
        error(&run)
    );
    // The output was opened for the download and never completed: the host drops it.
    assert!(run.closed.is_empty(), "{:?}", run.closed);

    let emulator = DeepBrainEmulator::start(KEY, mp4());
    let job = testing::job("presenter", "deepbrain", json!({"text": "Hi."}));
    // Cancel once the project is accepted, as Ctrl-C with --cancel-remote would.
    let run = Runner::new("deepbrain", &settings(&emulator))
        .watch(|run| run.checkpoints.len() < 2)
        .run::<DeepBrain>(job);
    assert_eq!(error(&run).kind, ErrorKind::Cancelled);
    assert!(
        run.logs
            .iter()
            .any(|l| l.message.contains("no way to stop a render")),
        "{:?}",
        run.logs
    );

    // Cancelled while rendering: the same, and no video.
    let job = testing::job("presenter", "deepbrain", json!({"text": "Hi."}));
    let run = Runner::new("deepbrain", &settings(&emulator))
        .watch(|run| run.progress.is_empty())
        .run::<DeepBrain>(job);
    assert_eq!(error(&run).kind, ErrorKind::Cancelled);
    assert!(
        run.logs.iter().any(|l| l.message.contains("goes on")),
        "{:?}",
        run.logs
    );
    assert!(run.outputs.is_empty());
}

#[test]
fn an_empty_script_is_refused_before_anything_is_sent() {
    let emulator = DeepBrainEmulator::start(KEY, mp4());
    let run = present(&emulator, json!({"text": "   "}));
    assert_eq!(error(&run).kind, ErrorKind::InvalidInput);
    assert!(emulator.requests().is_empty());
}
