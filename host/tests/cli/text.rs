//! The `openai` plugin through the real binary: chat streamed to stdout, from a pipe, routed
//! by `--to text`, continued with `-c`, JSON results with usage, user profiles from the config,
//! and what readiness means for cloud and local profiles.

use launcher_testkit::cli::TestContext;
use launcher_testkit::emulators::openai::{Fault, Flavor, OpenAiEmulator};
use launcher_testkit::test_context;

const KEY: &str = "sk-e2e-openai-key-0123456789";

fn openai_context(emulator: &OpenAiEmulator) -> TestContext {
    let mut ctx = test_context!();
    ctx.env("OPENAI_API_KEY", KEY)
        .env("OPENAI_BASE_URL", emulator.base_url());
    // The key in the environment does not make a cloud tool the default: choose it.
    ctx.config("[defaults]\nchat = \"openai\"\n");
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
fn chat_streams_to_stdout_from_an_argument_or_a_pipe() {
    let emulator = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let ctx = openai_context(&emulator);
    let out = ctx.run([
        "run",
        "chat",
        "Why is the sky blue?",
        "--model",
        "gpt-4o-mini",
    ]);
    out.success();
    assert_no_secret(&out);
    let answer = out.stdout.clone();
    assert!(!answer.trim().is_empty());
    let body = &emulator.bodies("/v1/chat/completions")[0];
    assert_eq!(body["stream"], true);
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["messages"][0]["content"], "Why is the sky blue?");

    let piped = ctx.run_with_stdin(["run", "chat"], b"from a pipe");
    piped.success();
    assert_eq!(piped.stdout, answer);
    let body = emulator.bodies("/v1/chat/completions").pop().unwrap();
    assert_eq!(body["messages"][0]["content"], "from a pipe");

    let routed = ctx.run(["run", "--to", "text", "routed by kind", "--json"]);
    routed.success();
    assert_eq!(routed.json()["task"], "chat");
}

#[test]
fn json_results_carry_usage_and_continuations_send_the_history() {
    let emulator = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let ctx = openai_context(&emulator);
    let first = ctx.run(["run", "chat", "first question", "--json"]);
    first.success();
    let report = first.json();
    assert_eq!(report["tool"], "openai");
    assert_eq!(report["info"]["usage"]["prompt_tokens"], 9);
    assert!(
        report["info"]["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    let answer = report["outputs"][0]["text"].as_str().unwrap().to_string();

    ctx.run(["run", "chat", "-c", "second question"]).success();
    let body = emulator.bodies("/v1/chat/completions").pop().unwrap();
    let messages = body["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(messages[0]["content"], "first question");
    assert_eq!(messages[1]["content"], answer.as_str());
    assert_eq!(messages[2]["content"], "second question");
}

#[test]
fn a_mid_stream_error_keeps_what_was_printed_and_fails() {
    let emulator = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let ctx = openai_context(&emulator);
    emulator.fail_next(Fault::MidStreamError);
    let out = ctx.run(["run", "chat", "hello"]);
    assert_ne!(out.code, 0);
    assert!(
        !out.stdout.is_empty(),
        "the tokens before the error stay: {out:#?}"
    );
    assert!(out.stderr.contains("error:"), "{}", out.stderr);
    assert_no_secret(&out);

    emulator.fail_next(Fault::Status(401, "invalid_api_key"));
    ctx.run(["run", "chat", "hello"]).expect_code(6);
    emulator.fail_next(Fault::InsufficientQuota);
    let quota = ctx.run(["run", "chat", "hello"]);
    quota.expect_code(7);
    assert_eq!(
        emulator.bodies("/v1/chat/completions").len(),
        3,
        "insufficient quota is never retried"
    );
}

#[test]
fn readiness_of_cloud_and_local_profiles_and_user_profiles() {
    let emulator = OpenAiEmulator::start(None, Flavor::LlamaCpp, None);
    let mut ctx = test_context!();
    // A cloud profile without its key, a local one without its address: not ready.
    let list = ctx.run(["list", "--json"]).json();
    let tool = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} listed"))
    };
    assert_eq!(tool("deepseek")["ready"], false);
    assert_eq!(tool("deepseek")["cloud"], true);
    assert_eq!(tool("llamacpp")["ready"], false);
    assert_eq!(tool("llamacpp")["cloud"], false);
    ctx.run(["run", "llamacpp", "hi"]).expect_code(4);

    // Its address set, a local server is ready and does the chat task.
    ctx.env("LLAMACPP_BASE_URL", emulator.base_url());
    let out = ctx.run(["run", "chat", "hi", "--json"]);
    out.success();
    assert_eq!(out.json()["tool"], "llamacpp");

    // A user profile from config.toml becomes a tool of its own.
    ctx.config(&format!(
        "[tools.openai.profiles.mine]\nbase_url = \"{}\"\nlocal = true\nmodel = \"llama3:8b\"\n",
        emulator.base_url()
    ));
    let mine = ctx.run(["run", "openai-mine", "hello there", "--json"]);
    mine.success();
    let body = emulator.bodies("/v1/chat/completions").pop().unwrap();
    assert_eq!(body["model"], "llama3:8b");
    assert!(
        ctx.run(["list"]).stdout.contains("openai-mine"),
        "the user profile is listed"
    );
}

/// The real thing: llama.cpp's server with SmolLM2, through the binary.
#[test]
fn a_real_local_model_answers_through_the_binary() {
    let Some(llama) = launcher_testkit::engines::llama() else {
        return;
    };
    let mut ctx = test_context!();
    ctx.env("LLAMACPP_BASE_URL", llama.base_url());
    let out = ctx.run([
        "run",
        "chat",
        "Say hello.",
        "--model",
        llama.model(),
        "--max-tokens",
        "12",
        "--json",
    ]);
    out.success();
    let report = out.json();
    assert_eq!(report["tool"], "llamacpp");
    assert!(
        !report["outputs"][0]["text"]
            .as_str()
            .unwrap()
            .trim()
            .is_empty(),
        "{report}"
    );
    assert!(
        report["info"]["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(report["info"]["timings"].is_object(), "{report}");

    // Piped, continued, and cut short by --max-tokens.
    let piped = ctx.run_with_stdin(
        ["run", "chat", "-c", "--max-tokens", "4"],
        b"And again, shorter.",
    );
    piped.success();
    assert!(!piped.stdout.trim().is_empty());
    assert!(
        piped.stderr.contains("length") || piped.stderr.contains("max"),
        "{}",
        piped.stderr
    );

    let completed = ctx.run([
        "run",
        "llamacpp",
        "--task",
        "complete",
        "The capital of France is",
        "--max-tokens",
        "6",
        "--model",
        llama.model(),
    ]);
    completed.success();
    assert!(!completed.stdout.trim().is_empty());

    let models = ctx.run(["run", "models", "--tool", "llamacpp", "--json"]);
    models.success();
    assert!(
        models
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == llama.model()),
        "{}",
        models.stdout
    );
}

/// Real speech to text: espeak-ng speaks through launcher, faster-whisper transcribes through
/// launcher, and the words come back.
#[test]
fn a_real_transcription_gets_the_words_back() {
    let Some(whisper) = launcher_testkit::engines::whisper() else {
        return;
    };
    let mut ctx = test_context!();
    let sentence = "the quick brown fox jumps over the lazy dog";
    ctx.run(["run", "tts", sentence, "-o", "fox.wav"]).success();
    ctx.env("WHISPER_BASE_URL", whisper.base_url());
    let out = ctx.run(["run", "stt", "fox.wav", "--language", "en"]);
    out.success();
    let heard = out.stdout.to_lowercase();
    let words = sentence.split(' ').filter(|w| heard.contains(w)).count();
    assert!(words >= 6, "heard {heard:?}");
    // `--to text` from an audio file is transcription too.
    let routed = ctx.run(["run", "--to", "text", "fox.wav", "--json"]);
    routed.success();
    assert_eq!(routed.json()["task"], "stt");
}
