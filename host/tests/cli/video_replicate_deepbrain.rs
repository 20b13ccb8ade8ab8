//! replicate and deepbrain end to end: the real binary and plugins against their emulators.

use launcher_testkit::cli::{Outcome, TestContext};
use launcher_testkit::emulators::deepbrain::DeepBrainEmulator;
use launcher_testkit::emulators::replicate::{
    IMAGE_MODEL, ReplicateEmulator, TEXT_MODEL, VIDEO_MODEL, VIDEO_VERSION, default_models,
    image_schema,
};
use launcher_testkit::media::{ffprobe, png, tiny_mp4};
use launcher_testkit::test_context;

const TOKEN: &str = "r8_e2e_replicate_token_0123456789abcdef";
const KEY: &str = "deepbrain-e2e-key-0123456789";

/// A fake MP4 header, enough for the sniffer; the DeepBrain tests use a real one.
fn mp4_bytes() -> Vec<u8> {
    let mut bytes = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
    bytes.extend_from_slice(&[0u8; 64]);
    bytes
}

fn replicate() -> ReplicateEmulator {
    ReplicateEmulator::start(TOKEN, default_models(png(8, 8, [200, 80, 20]), mp4_bytes()))
}

fn context(emulator: &ReplicateEmulator) -> TestContext {
    let mut ctx = test_context!();
    ctx.env("REPLICATE_API_TOKEN", TOKEN)
        .env("REPLICATE_BASE_URL", emulator.url())
        .env("REPLICATE_POLL_INTERVAL", "0.02")
        .env("REPLICATE_TIMEOUT", "10");
    ctx
}

/// Runs `launcher run replicate --model MODEL ARGS...`.
fn run_model(ctx: &TestContext, model: &str, args: &[&str]) -> Outcome {
    ctx.run(
        ["run", "replicate", "--model", model]
            .into_iter()
            .chain(args.iter().copied()),
    )
}

#[track_caller]
fn assert_no_secret(out: &Outcome) {
    for secret in [TOKEN, KEY] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "a secret leaked: {out:#?}"
        );
    }
}

#[test]
fn replicate_help_shows_the_models_inputs() {
    let emulator = replicate();
    let ctx = context(&emulator);
    let out = run_model(&ctx, IMAGE_MODEL, &["--help"]);
    out.success();
    for expected in [
        "--prompt",
        "Prompt for generated image",
        "--aspect-ratio",
        "16:9",
        "--num-outputs",
        "--guidance",
        "--image",
        "--go-fast",
        "REPLICATE_API_TOKEN",
    ] {
        assert!(out.stdout.contains(expected), "{expected}: {}", out.stdout);
    }
    // Described once, then from the host's cache.
    let again = run_model(&ctx, IMAGE_MODEL, &["--help"]);
    again.success();
    let describes = emulator
        .requests()
        .iter()
        .filter(|r| r.path == format!("/v1/models/{IMAGE_MODEL}"))
        .count();
    assert_eq!(describes, 1);

    // The schema's ranges, choices and required inputs are checked before anything is
    // created, each refusal naming the input.
    for (args, code, names) in [
        (
            &["--prompt", "x", "--aspect-ratio", "4:3"][..],
            5,
            "--aspect-ratio",
        ),
        (
            &["--prompt", "x", "--num-outputs", "9"][..],
            5,
            "--num-outputs",
        ),
        (&["--guidance", "2"][..], 2, "--prompt"),
    ] {
        let base = ["run", "replicate", "--model", IMAGE_MODEL];
        let refused = ctx.run(base.iter().chain(args));
        refused.expect_code(code);
        assert!(
            refused.stderr.contains(names),
            "{args:?}: {}",
            refused.stderr
        );
    }
    assert!(emulator.created().is_empty());
}

#[test]
fn a_prediction_runs_to_completion_and_its_output_is_written_as_its_bytes_say() {
    let emulator = replicate();
    let ctx = context(&emulator);
    std::fs::write(ctx.work_file("fox.png"), png(4, 4, [1, 2, 3])).unwrap();
    let out = run_model(
        &ctx,
        IMAGE_MODEL,
        &[
            "--prompt",
            "a red fox",
            "--aspect-ratio",
            "16:9",
            "--image",
            "fox.png",
            "--json",
        ],
    );
    out.success();
    assert_no_secret(&out);
    let report = out.json();
    // The emulator's link ends in .webp, but the bytes are a PNG: the bytes decide.
    assert_eq!(report["outputs"][0]["kind"], "image");
    assert_eq!(report["outputs"][0]["media_type"], "image/png");
    assert_eq!(report["info"]["predict_time"], 4.52);
    let created = emulator.created();
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0].0,
        format!("/v1/models/{IMAGE_MODEL}/predictions")
    );
    let input = &created[0].1["input"];
    assert_eq!(input["prompt"], "a red fox");
    assert_eq!(input["aspect_ratio"], "16:9");
    assert!(
        input["image"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,"),
        "{input}"
    );
    let create = emulator
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(create.header("prefer"), Some("wait=60"));
    assert_eq!(
        create.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    // A video model by version: created at /v1/predictions, polled (no Prefer: wait).
    let model = format!("{VIDEO_MODEL}:{VIDEO_VERSION}");
    let out = run_model(
        &ctx,
        &model,
        &["--prompt", "waves", "--duration", "3", "-o", "waves.mp4"],
    );
    out.success();
    let video = std::fs::read(ctx.work_file("waves.mp4")).unwrap();
    assert_eq!(video, mp4_bytes());
    let created = emulator.created();
    assert_eq!(created[1].0, "/v1/predictions");
    assert_eq!(created[1].1["version"], VIDEO_VERSION);
    assert_eq!(created[1].1["input"]["duration"], 3);
    let video_create = emulator
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .nth(1)
        .unwrap();
    assert_eq!(video_create.header("prefer"), None);
    let looks = emulator
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/v1/predictions/"))
        .count();
    assert!(looks >= 4, "{looks} looks");
}

#[test]
fn a_models_prompt_comes_from_the_argument_or_stdin_as_for_any_task() {
    let emulator = replicate();
    let ctx = context(&emulator);
    let out = run_model(&ctx, IMAGE_MODEL, &["a red fox"]);
    out.success();
    let piped = ctx.run_with_stdin(
        ["run", "replicate", "--model", IMAGE_MODEL, "-o", "cat.png"],
        b"a grey cat\n",
    );
    piped.success();
    let created = emulator.created();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0].1["input"]["prompt"], "a red fox");
    assert_eq!(
        created[1].1["input"]["prompt"], "a grey cat\n",
        "stdin as it came"
    );

    // Without a model there are no inputs yet, and the message says what comes first.
    let bare = ctx.run(["run", "replicate", "a red fox"]);
    bare.expect_code(2);
    assert!(
        bare.stderr.contains("give --model first"),
        "{}",
        bare.stderr
    );
    assert_eq!(emulator.created().len(), 2, "nothing more was created");
}

#[test]
fn an_output_its_name_would_misname_is_kept_under_a_true_name() {
    let emulator = replicate();
    let ctx = context(&emulator);
    // The model makes PNG; `fox.jpg` would lie, but the image was paid for: it is kept.
    let out = run_model(&ctx, IMAGE_MODEL, &["a fox", "-o", "fox.jpg"]);
    out.expect_code(5);
    assert!(
        out.stderr
            .contains("which fox.jpg would misname; it was saved as fox.png instead"),
        "{}",
        out.stderr
    );
    // The model takes no --format, so the hint does not offer one.
    assert!(
        out.stderr.contains("name the output .png with -o"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("--format"), "{}", out.stderr);
    // The prediction had ended: it is not reported as cancelled.
    assert!(!out.stderr.contains("cancelled"), "{}", out.stderr);
    let again = run_model(&ctx, IMAGE_MODEL, &["a fox", "-o", "fox.jpg"]);
    again.expect_code(5);
    assert!(
        again.stderr.contains("saved as fox-2.png"),
        "{}",
        again.stderr
    );
    assert_eq!(ctx.work_files(), ["fox-2.png", "fox.png"]);
    let png = std::fs::read(ctx.work_file("fox.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
}

#[test]
fn a_replicate_job_reruns_with_its_models_inputs() {
    let emulator = replicate();
    let ctx = context(&emulator);
    run_model(&ctx, IMAGE_MODEL, &["a red fox", "--aspect-ratio", "16:9"]).success();
    let job = ctx.run(["logs", "--json"]).json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let again = ctx.run(["rerun", &job, "--prompt", "a blue fox", "-o", "blue.png"]);
    again.success();
    assert!(ctx.work_file("blue.png").is_file());
    let created = emulator.created();
    assert_eq!(created.len(), 2);
    assert_eq!(
        created[1].0,
        format!("/v1/models/{IMAGE_MODEL}/predictions")
    );
    assert_eq!(created[1].1["input"]["prompt"], "a blue fox");
    assert_eq!(
        created[1].1["input"]["aspect_ratio"], "16:9",
        "the rest as recorded"
    );

    // A model that does not exist is named, and nothing is created.
    let other = ctx.run(["rerun", &job, "--model", "nobody/nothing"]);
    other.expect_code(5);
    assert!(
        other.stderr.contains("no model `nobody/nothing`"),
        "{}",
        other.stderr
    );
    assert_eq!(emulator.created().len(), 2);
}

#[test]
fn a_language_model_streams_its_tokens_as_text() {
    let emulator = replicate();
    let ctx = context(&emulator);
    let out = run_model(&ctx, TEXT_MODEL, &["--prompt", "foxes?"]);
    out.success();
    assert_eq!(out.stdout.trim_end(), "Foxes are clever.");
    assert!(
        emulator
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/stream/"))
    );
    // Not waited for whole: the tokens are read as they come.
    let create = emulator
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(create.header("prefer"), None);
}

#[test]
fn models_named_in_the_config_are_tools_in_their_category() {
    let emulator = replicate();
    let ctx = context(&emulator);
    ctx.config(&format!(
        "[tools.replicate.models]\nflux = \"{IMAGE_MODEL}\"\nclip = \"{VIDEO_MODEL}:{VIDEO_VERSION}\"\n"
    ));
    let list = ctx.run(["list", "--json"]);
    list.success();
    let tools = list.json();
    let tool = |id: &str| {
        tools
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {tools}"))
            .clone()
    };
    assert_eq!(tool("flux")["categories"], serde_json::json!(["image"]));
    assert_eq!(tool("flux")["tasks"], serde_json::json!(["txt2img"]));
    assert_eq!(tool("clip")["categories"], serde_json::json!(["video"]));
    assert_eq!(tool("clip")["tasks"], serde_json::json!(["txt2vid"]));
    let text = ctx.run(["list", "--category", "video"]);
    text.success();
    assert!(text.stdout.contains("clip"), "{}", text.stdout);
    assert!(!text.stdout.contains("flux"), "{}", text.stdout);

    let out = ctx.run([
        "run", "txt2img", "--tool", "flux", "--prompt", "a fox", "--count", "1", "-o", "fox.png",
    ]);
    out.success();
    assert!(ctx.work_file("fox.png").exists());
    let created = emulator.created();
    // `--count` is launcher's name for the model's `num_outputs`.
    assert_eq!(created[0].1["input"]["num_outputs"], 1);
    let unknown = ctx.run(["run", "flux", "--prompt", "a fox", "--width", "512"]);
    unknown.expect_code(5);
    assert!(
        unknown.stderr.contains("takes no `--width`"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn invalid_fields_are_named_one_per_line_and_exit_5() {
    let emulator = replicate();
    let ctx = context(&emulator);
    // Describe (and cache) the model, then let it gain a required input and a lower limit,
    // as a model's new version may: the service refuses what the stale description allowed.
    run_model(&ctx, IMAGE_MODEL, &["--help"]).success();
    let mut schema = image_schema();
    let input = &mut schema["components"]["schemas"]["Input"];
    input["required"] = serde_json::json!(["prompt", "seed"]);
    input["properties"]["num_outputs"]["maximum"] = serde_json::json!(2);
    emulator.replace_schema(IMAGE_MODEL, schema);
    let out = run_model(&ctx, IMAGE_MODEL, &["--prompt", "x", "--num-outputs", "4"]);
    out.expect_code(5);
    assert!(out.stderr.contains("--seed: is required"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("--num-outputs: Must be less than or equal to 2"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);
    assert!(ctx.work_files().is_empty(), "{:?}", ctx.work_files());
}

#[test]
fn a_rejected_token_exits_6_and_names_the_setting() {
    let emulator = replicate();
    let ctx = context(&emulator);
    run_model(&ctx, IMAGE_MODEL, &["--help"]).success();
    // The description is cached; the token has since been revoked.
    let out = ctx.run_with_env(
        ["run", "replicate", "--model", IMAGE_MODEL, "--prompt", "x"],
        &[("REPLICATE_API_TOKEN", "r8_revoked_token_000000000000")],
    );
    out.expect_code(6);
    assert!(out.stderr.contains("REPLICATE_API_TOKEN"), "{}", out.stderr);
    assert!(!out.stderr.contains("r8_revoked_token"), "{}", out.stderr);
    assert!(emulator.created().is_empty());
}

#[test]
fn failed_and_expired_predictions_say_what_happened() {
    let emulator = replicate();
    let ctx = context(&emulator);
    emulator.fail_model(IMAGE_MODEL, "CUDA out of memory");
    let failed = run_model(&ctx, IMAGE_MODEL, &["--prompt", "x"]);
    failed.expect_code(8);
    assert!(
        failed.stderr.contains("failed: CUDA out of memory"),
        "{}",
        failed.stderr
    );

    let emulator = replicate();
    let ctx = context(&emulator);
    emulator.expire_outputs();
    let expired = run_model(&ctx, IMAGE_MODEL, &["--prompt", "x"]);
    expired.expect_code(8);
    assert!(
        expired.stderr.contains("output file is gone"),
        "{}",
        expired.stderr
    );
    assert!(ctx.work_files().is_empty(), "{:?}", ctx.work_files());

    // Throttled twice, with and without Retry-After: waited out, and created once.
    let emulator = replicate();
    let ctx = context(&emulator);
    emulator.throttle_next(Some(0));
    emulator.throttle_next(None);
    let throttled = run_model(&ctx, IMAGE_MODEL, &["--prompt", "x"]);
    throttled.success();
    assert!(emulator.requests().len() >= 5, "{:?}", emulator.requests());
    assert_eq!(emulator.created().len(), 1);
}

/// A video model that stays `processing` until cancelled.
fn slow_replicate() -> ReplicateEmulator {
    let mut models = default_models(png(8, 8, [0, 0, 0]), mp4_bytes());
    for model in &mut models {
        model.looks = 1_000_000;
    }
    ReplicateEmulator::start(TOKEN, models)
}

#[test]
fn a_signal_detaches_a_prediction_and_resume_finishes_it_once() {
    let emulator = slow_replicate();
    let ctx = context(&emulator);
    let model = format!("{VIDEO_MODEL}:{VIDEO_VERSION}");
    let running = ctx.spawn_until(
        [
            "-v",
            "run",
            "replicate",
            "--model",
            &model,
            "--prompt",
            "tide",
            "-o",
            "tide.mp4",
        ],
        "is starting",
    );
    running.signal("INT");
    let out = running.wait();
    out.expect_code(12);
    assert!(emulator.cancelled().is_empty());
    let id = launcher_testkit::cli::job_id(&out.stderr);
    assert_eq!(emulator.created().len(), 1);

    // The prediction finishes remotely; resume follows it and never creates another.
    emulator.set_looks(VIDEO_MODEL, 2);
    let resumed = ctx.run(["run", "--resume", &id, "--json"]);
    resumed.success();
    assert_eq!(resumed.json()["info"]["resumed"], true);
    assert_eq!(emulator.created().len(), 1);
    assert_eq!(
        std::fs::read(ctx.work_file("tide.mp4")).unwrap(),
        mp4_bytes()
    );
    let again = ctx.run(["run", "--resume", &id]);
    again.expect_code(5);
    assert_eq!(ctx.work_files(), ["tide.mp4"]);
}

#[test]
fn cancel_remote_cancels_the_prediction() {
    let emulator = slow_replicate();
    let ctx = context(&emulator);
    let model = format!("{VIDEO_MODEL}:{VIDEO_VERSION}");
    let running = ctx.spawn_until(
        [
            "-v",
            "run",
            "replicate",
            "--model",
            &model,
            "--prompt",
            "tide",
            "--cancel-remote",
        ],
        "is starting",
    );
    running.signal("TERM");
    let out = running.wait();
    out.expect_code(143);
    let cancelled = emulator.cancelled();
    assert_eq!(cancelled.len(), 1, "{}", out.stderr);
    assert_eq!(emulator.status(&cancelled[0]).as_deref(), Some("canceled"));
    assert!(ctx.work_files().is_empty(), "{:?}", ctx.work_files());
}

fn deepbrain(video: Vec<u8>) -> (DeepBrainEmulator, TestContext) {
    let emulator = DeepBrainEmulator::start(KEY, video);
    let mut ctx = test_context!();
    ctx.env("DEEPBRAIN_API_KEY", KEY)
        .env("DEEPBRAIN_BASE_URL", emulator.url())
        .env("DEEPBRAIN_POLL_INTERVAL", "0.02");
    (emulator, ctx)
}

#[test]
fn deepbrain_renders_a_presenter_to_an_mp4() {
    let mp4 = tiny_mp4(1);
    let (emulator, ctx) = deepbrain(mp4.clone());
    let out = ctx.run([
        "run",
        "deepbrain",
        "--text",
        "안녕하세요, welcome to the news.",
        "--language",
        "ko",
        "-o",
        "news.mp4",
        "--json",
    ]);
    out.success();
    assert_no_secret(&out);
    let path = ctx.work_file("news.mp4");
    assert_eq!(std::fs::read(&path).unwrap(), mp4);
    let probe = ffprobe(&path).unwrap();
    assert_eq!(probe["streams"][0]["codec_type"], "video");
    assert!(
        probe["format"]["format_name"]
            .as_str()
            .unwrap()
            .contains("mp4")
    );
    let report = out.json();
    assert_eq!(report["outputs"][0]["media_type"], "video/mp4");
    let submitted = emulator.submitted();
    assert_eq!(
        submitted,
        [
            serde_json::json!({"language": "ko", "text": "안녕하세요, welcome to the news.",
                            "model": "M000045058", "clothes": "BG00002320"})
        ]
    );
    assert!(emulator.progress_looks() >= 4);
    let raw = emulator.requests()[0]
        .header("authorization")
        .map(str::to_string);
    assert_eq!(raw.as_deref(), Some(KEY));
    let listed = ctx.run(["list", "--category", "video"]);
    assert!(listed.stdout.contains("deepbrain"), "{}", listed.stdout);
}

#[test]
fn deepbrain_refusals_exit_by_kind() {
    let (emulator, mut ctx) = deepbrain(tiny_mp4(1));
    ctx.env("DEEPBRAIN_API_KEY", "Bearer wrong");
    let wrong = ctx.run(["run", "deepbrain", "--text", "hi", "-o", "x.mp4"]);
    wrong.expect_code(6);
    assert!(
        wrong.stderr.contains("DEEPBRAIN_API_KEY"),
        "{}",
        wrong.stderr
    );

    ctx.env("DEEPBRAIN_API_KEY", KEY);
    let bad_model = ctx.run(["run", "deepbrain", "--text", "hi", "--model", "M1"]);
    bad_model.expect_code(5);
    assert!(
        bad_model.stderr.contains("unknown model: M1"),
        "{}",
        bad_model.stderr
    );

    emulator.fail_next_project("the avatar could not be rendered");
    let failed = ctx.run(["run", "deepbrain", "--text", "hi"]);
    failed.expect_code(8);
    assert!(
        failed.stderr.contains("could not be rendered"),
        "{}",
        failed.stderr
    );
    assert!(ctx.work_files().is_empty(), "{:?}", ctx.work_files());
}

#[test]
fn deepbrain_detached_then_resumed_writes_the_video_once() {
    let mp4 = tiny_mp4(1);
    let (emulator, ctx) = deepbrain(mp4.clone());
    emulator.answer_with_url_field();
    std::fs::write(ctx.work_file("script.txt"), "Later, from a file.").unwrap();
    let out = ctx.run([
        "run",
        "deepbrain",
        "--file",
        "script.txt",
        "--detach",
        "-o",
        "later.mp4",
    ]);
    out.success();
    assert_eq!(ctx.work_files(), ["script.txt"]);
    let id = launcher_testkit::cli::job_id(&out.stderr);
    // The output goes where the detached run planned it.
    let resumed = ctx.run(["run", "--resume", &id]);
    resumed.success();
    let submitted = emulator.submitted();
    assert_eq!(submitted.len(), 1);
    assert_eq!(submitted[0]["text"], "Later, from a file.");
    assert_eq!(ctx.work_files(), ["later.mp4", "script.txt"]);
    assert_eq!(std::fs::read(ctx.work_file("later.mp4")).unwrap(), mp4);
}

#[test]
fn a_priced_video_model_asks_before_it_is_created_and_others_say_the_cost_is_unknown() {
    let emulator = replicate();
    let mut ctx = context(&emulator);
    ctx.env("REPLICATE_PRICES", format!("{VIDEO_MODEL}=0.5"));
    let model = format!("{VIDEO_MODEL}:{VIDEO_VERSION}");
    let paid = [
        "run",
        "replicate",
        "--model",
        &model,
        "--prompt",
        "waves",
        "--duration",
        "4",
    ];
    // 4 s at $0.50 is $2.00, over the default limit, and nobody is at a terminal.
    let refused = ctx.run(paid);
    refused.expect_code(2);
    assert!(
        refused.stderr.contains(&format!(
            "would cost about $2.00 (4 s of {VIDEO_MODEL} output)"
        )),
        "{}",
        refused.stderr
    );
    assert!(emulator.created().is_empty());

    let accepted = ctx.run(paid.iter().copied().chain(["--yes", "--json"]));
    accepted.success();
    assert_eq!(accepted.json()["cost"]["amount"], 2.0);
    assert_eq!(emulator.created().len(), 1);

    // An image's unknown cost is said under -v only; a video's is a warning (below).
    let image = run_model(&ctx, IMAGE_MODEL, &["--prompt", "x"]);
    image.success();
    assert!(!image.stderr.contains("not known"), "{}", image.stderr);
    let image = run_model(&ctx, IMAGE_MODEL, &["--prompt", "x", "-v"]);
    image.success();
    assert!(
        image.stderr.contains("is not known before it runs"),
        "{}",
        image.stderr
    );

    ctx.env("REPLICATE_PRICES", "nonsense");
    let bad = ctx.run(paid);
    bad.expect_code(5);
    assert!(bad.stderr.contains("`prices` setting"), "{}", bad.stderr);

    // A video model with no price: its unknown cost is a warning.
    ctx.env("REPLICATE_PRICES", "someone/else=1");
    let video = ctx.run(paid);
    video.success();
    assert!(
        video.stderr.contains("warning: the cost of this"),
        "{}",
        video.stderr
    );
}

#[test]
fn a_launcher_killed_mid_poll_loses_no_prediction_and_jobs_resume_writes_it_once() {
    let emulator = slow_replicate();
    let ctx = context(&emulator);
    let model = format!("{VIDEO_MODEL}:{VIDEO_VERSION}");
    let running = ctx.spawn_until(
        [
            "-v",
            "run",
            "replicate",
            "--model",
            &model,
            "--prompt",
            "dunes",
            "-o",
            "dunes.mp4",
        ],
        "is starting",
    );
    running.signal("KILL");
    let killed = running.wait();
    assert_eq!(killed.code, -1, "killed by a signal");
    assert!(!ctx.work_file("dunes.mp4").exists());

    emulator.set_looks(VIDEO_MODEL, 1);
    let resumed = ctx.run(["jobs", "resume", "--json"]);
    resumed.success();
    let report = resumed.json();
    assert_eq!(report[0]["state"], "done", "{report}");
    assert_eq!(emulator.created().len(), 1, "created once");
    assert_eq!(ctx.work_files(), ["dunes.mp4"]);
    assert_eq!(
        std::fs::read(ctx.work_file("dunes.mp4")).unwrap(),
        mp4_bytes()
    );
    let nothing = ctx.run(["jobs", "resume"]);
    nothing.success();
    assert_eq!(ctx.work_files(), ["dunes.mp4"]);
}

#[test]
fn a_detached_presenter_video_is_listed_and_waited_for() {
    let mp4 = tiny_mp4(1);
    let (emulator, ctx) = deepbrain(mp4.clone());
    let out = ctx.run(["run", "deepbrain", "--text", "soon", "--detach"]);
    out.success();
    let listed = ctx.run(["jobs"]);
    listed.success();
    assert!(listed.stdout.contains("deepbrain"), "{}", listed.stdout);
    assert!(listed.stdout.contains("detached"), "{}", listed.stdout);
    let id = listed
        .stdout
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let waited = ctx.run(["jobs", "wait", &id, "--json"]);
    waited.success();
    let report = waited.json();
    assert_eq!(report[0]["state"], "done");
    let path = report[0]["outputs"][0]["path"].as_str().unwrap();
    assert_eq!(std::fs::read(path).unwrap(), mp4);
    assert_eq!(emulator.submitted().len(), 1);
}

#[test]
fn model_tools_without_a_token_are_left_out_with_a_reason() {
    let emulator = replicate();
    let ctx = context(&emulator);
    ctx.config(&format!(
        "[tools.replicate.models]\nflux = \"{IMAGE_MODEL}\"\n"
    ));
    let list = ctx.run_with_env(["list"], &[("REPLICATE_API_TOKEN", "")]);
    list.success();
    assert!(!list.stdout.contains("flux"), "{}", list.stdout);
    assert!(list.stdout.contains("replicate"), "{}", list.stdout);
    assert!(
        list.stderr.contains("model tool `flux`") && list.stderr.contains("REPLICATE_API_TOKEN"),
        "{}",
        list.stderr
    );
    // With the token, the tool appears.
    let list = ctx.run(["list"]);
    assert!(list.stdout.contains("flux"), "{}", list.stdout);

    ctx.config("[tools.replicate.models]\n\"Bad Id\" = \"a/b\"\n");
    let bad = ctx.run(["list"]);
    bad.success();
    assert!(bad.stderr.contains("cannot be a tool id"), "{}", bad.stderr);
}

#[test]
fn a_stored_token_serves_model_descriptions_and_the_model_tools() {
    let emulator = replicate();
    let mut ctx = test_context!();
    ctx.env("REPLICATE_BASE_URL", emulator.url())
        .env("REPLICATE_POLL_INTERVAL", "0.02");
    ctx.config(&format!(
        "[tools.replicate.models]\nflux = \"{IMAGE_MODEL}\"\n"
    ));
    // No REPLICATE_API_TOKEN anywhere: the token is in the keys store, under `replicate`.
    let stored = ctx.run_with_stdin(
        ["keys", "set", "replicate"],
        format!("{TOKEN}\n").as_bytes(),
    );
    stored.success();

    let list = ctx.run(["list"]);
    list.success();
    assert!(
        list.stdout
            .lines()
            .any(|l| l.starts_with("  flux") && l.contains("ready")),
        "{}",
        list.stdout
    );
    let help = run_model(&ctx, IMAGE_MODEL, &["--help"]);
    help.success();
    assert!(help.stdout.contains("--aspect-ratio"), "{}", help.stdout);
    let flux = ctx.run(["run", "flux", "a fox", "-o", "fox.png"]);
    flux.success();
    assert_no_secret(&flux);
    assert!(ctx.work_file("fox.png").is_file());
    assert_eq!(emulator.created()[0].1["input"]["prompt"], "a fox");

    // The token reached the plugin to describe the model, and never the description cache.
    let cache = ctx.run(["config", "path", "--json"]).json()["cache_dir"]
        .as_str()
        .unwrap()
        .to_string();
    let mut files = vec![std::path::PathBuf::from(cache)];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            assert!(!text.contains(TOKEN), "the token is in {}", path.display());
        }
    }
}

#[test]
fn jobs_cancel_cancels_a_detached_prediction() {
    let emulator = slow_replicate();
    let ctx = context(&emulator);
    let model = format!("{VIDEO_MODEL}:{VIDEO_VERSION}");
    let out = run_model(&ctx, &model, &["--prompt", "tide", "--detach"]);
    out.success();
    let prediction = emulator.created().len();
    assert_eq!(prediction, 1);
    let listed = ctx.run(["jobs", "--json"]);
    let id = listed.json()[0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {}", listed.stdout))
        .to_string();
    let cancelled = ctx.run(["jobs", "cancel", &id, "--json"]);
    assert_eq!(
        cancelled.json()[0]["state"],
        "cancelled",
        "{}",
        cancelled.stderr
    );
    let ids = emulator.cancelled();
    assert_eq!(ids.len(), 1, "{}", cancelled.stderr);
    assert_eq!(emulator.status(&ids[0]).as_deref(), Some("canceled"));
    assert!(ctx.work_files().is_empty(), "{:?}", ctx.work_files());
}
