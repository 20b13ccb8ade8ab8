//! The openai plugin against the OpenAI-compatible emulator.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use launcher_plugin_openai::OpenAi;
use launcher_sdk::serde_json::{Value, json};
use launcher_sdk::testing::{self, Run, Runner};
use launcher_sdk::{DescribeRequest, ErrorKind, LogLevel, Message, Plugin, Settings};
use launcher_testkit::emulators::openai::{Fault, Flavor, OpenAiEmulator, TOKENS};

const KEY: &str = "sk-test-key";
const CHAT: &str = "/v1/chat/completions";

fn cloud(emu: &OpenAiEmulator) -> Settings {
    let mut s = Settings::default();
    s.set("base_url", emu.base_url());
    s.set_secret("api_key", KEY);
    s
}

fn local(emu: &OpenAiEmulator) -> Settings {
    Settings::from_values([("base_url", emu.base_url())])
}

fn chat(tool: &str, settings: &Settings, params: Value) -> Run {
    testing::run::<OpenAi>(tool, settings, testing::job("chat", tool, params))
}

fn text(run: &Run) -> String {
    run.text("text").unwrap_or_default()
}

fn err(run: &Run) -> &launcher_sdk::PluginError {
    run.error()
        .unwrap_or_else(|| panic!("expected an error, got {:?}", run.result))
}

#[test]
fn openai_chat_streams_each_token_as_its_own_write_with_auth_and_usage() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let run = chat(
        "openai",
        &cloud(&emu),
        json!({"prompt": "hi", "system": "be brief", "temperature": 0.5, "max_tokens": 20, "seed": 7}),
    );
    let info = run.result.as_ref().unwrap().info.clone();
    assert_eq!(text(&run), TOKENS.concat());
    let writes: Vec<&[u8]> = run
        .writes
        .iter()
        .filter(|(n, _)| n == "text")
        .map(|(_, b)| b.as_slice())
        .collect();
    assert_eq!(
        writes,
        TOKENS.iter().map(|t| t.as_bytes()).collect::<Vec<_>>()
    );
    assert_eq!(info["usage"]["completion_tokens"], TOKENS.len());
    assert_eq!(info["finish_reason"], "stop");
    let body = &emu.bodies(CHAT)[0];
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["seed"], 7);
    assert_eq!(
        body["messages"],
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    );
    assert_eq!(
        emu.requests()[0].header("authorization"),
        Some("Bearer sk-test-key")
    );
}

#[test]
fn a_token_reaches_the_host_before_the_stream_goes_on() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let gate = emu.gate();
    let opener = Arc::clone(&gate);
    let run = Runner::new("openai", &cloud(&emu))
        .watch(move |run| {
            if run.writes.iter().any(|(n, _)| n == "text") {
                opener.open();
            }
            true
        })
        .run::<OpenAi>(testing::job("chat", "openai", json!({"prompt": "hi"})));
    run.result.as_ref().unwrap();
    assert!(
        gate.opened_in_time(),
        "the first token was not written before the stream ended"
    );
}

#[test]
fn cancelling_mid_stream_stops_promptly_and_keeps_the_text() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    // Without cancellation the stream would take 6 × 3 s; the first pause comes before
    // the first token.
    emu.slow(std::time::Duration::from_secs(3));
    let started = std::time::Instant::now();
    let run = Runner::new("openai", &cloud(&emu))
        .watch(|run| run.text("text").is_none_or(|t| t.is_empty()))
        .run::<OpenAi>(testing::job("chat", "openai", json!({"prompt": "hi"})));
    assert_eq!(err(&run).kind, ErrorKind::Cancelled);
    assert_eq!(text(&run), "Hello");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_whole_answer_when_not_streaming() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let run = chat(
        "openai",
        &cloud(&emu),
        json!({"prompt": "hi", "stream": false}),
    );
    assert_eq!(
        run.result.as_ref().unwrap().info["usage"]["prompt_tokens"],
        9
    );
    assert_eq!(text(&run), TOKENS.concat());
    assert_eq!(emu.bodies(CHAT)[0]["stream"], false);
    assert!(emu.bodies(CHAT)[0].get("stream_options").is_none());
}

#[test]
fn history_reaches_messages_between_system_and_prompt() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let mut job = testing::job(
        "chat",
        "openai",
        json!({"prompt": "and now?", "system": "s"}),
    );
    job.history = vec![
        Message::new("user", "first"),
        Message::new("assistant", "answer"),
    ];
    let run = testing::run::<OpenAi>("openai", &cloud(&emu), job);
    run.result.as_ref().unwrap();
    let roles: Vec<Value> = emu.bodies(CHAT)[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].clone())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
}

#[test]
fn images_and_a_json_schema_are_sent_for_vision_and_structured_output() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("dot.png");
    std::fs::write(
        &image,
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0",
    )
    .unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
    )
    .unwrap();
    let run = chat(
        "openai",
        &cloud(&emu),
        json!({"prompt": "what is it?", "image": [image.to_str().unwrap()], "json_schema": schema.to_str().unwrap()}),
    );
    run.result.as_ref().unwrap();
    let body = &emu.bodies(CHAT)[0];
    let parts = &body["messages"][0]["content"];
    assert_eq!(parts[0]["text"], "what is it?");
    assert!(
        parts[1]["image_url"]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(
        body["response_format"]["json_schema"]["schema"]["type"],
        "object"
    );
}

#[test]
fn every_cloud_profile_chats_with_a_bearer_key() {
    for tool in ["deepseek", "dashscope", "moonshot", "hunyuan"] {
        let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
        let run = chat(tool, &cloud(&emu), json!({"prompt": "你好"}));
        run.result
            .as_ref()
            .unwrap_or_else(|e| panic!("{tool}: {e:?}"));
        assert_eq!(text(&run), TOKENS.concat(), "{tool}");
        assert_eq!(
            emu.requests()[0].header("authorization"),
            Some("Bearer sk-test-key")
        );
    }
}

#[test]
fn zhipu_answers_without_object_are_read() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::Zhipu, None);
    let run = chat("zhipu", &cloud(&emu), json!({"prompt": "hi"}));
    run.result.as_ref().unwrap();
    assert_eq!(text(&run), TOKENS.concat());
}

#[test]
fn qianfan_sends_its_appid_header() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::Qianfan, Some("app-123"));
    let mut settings = cloud(&emu);
    let run = chat("qianfan", &settings, json!({"prompt": "hi"}));
    assert_eq!(
        err(&run).kind,
        ErrorKind::InvalidInput,
        "without the appid the emulator refuses"
    );
    settings.set("appid", "app-123");
    let run = chat("qianfan", &settings, json!({"prompt": "hi"}));
    run.result.as_ref().unwrap();
    assert_eq!(
        emu.requests().last().unwrap().header("appid"),
        Some("app-123")
    );
}

#[test]
fn chatglm_works_without_id_or_usage_and_refuses_a_trailing_assistant_turn() {
    let emu = OpenAiEmulator::start(None, Flavor::ChatGlm, None);
    let run = chat("chatglm", &local(&emu), json!({"prompt": "hi"}));
    assert_eq!(text(&run), TOKENS.concat());
    assert!(run.result.as_ref().unwrap().info.get("usage").is_none());
    assert!(emu.requests()[0].header("authorization").is_none());
    let models = testing::run::<OpenAi>(
        "chatglm",
        &local(&emu),
        testing::job("models", "chatglm", json!({})),
    );
    assert!(models.text("models").unwrap().contains("gpt-3.5-turbo"));
}

#[test]
fn local_servers_need_no_key_and_use_the_first_model_when_none_is_named() {
    for (tool, flavor) in [
        ("llamacpp", Flavor::LlamaCpp),
        ("vllm", Flavor::OpenAi),
        ("localai", Flavor::OpenAi),
    ] {
        let emu = OpenAiEmulator::start(None, flavor, None);
        let run = chat(tool, &local(&emu), json!({"prompt": "hi"}));
        run.result
            .as_ref()
            .unwrap_or_else(|e| panic!("{tool}: {e:?}"));
        assert_eq!(emu.bodies(CHAT)[0]["model"], "gpt-4o-mini", "{tool}");
        if tool == "llamacpp" {
            assert_eq!(
                run.result.as_ref().unwrap().info["timings"]["predicted_n"],
                TOKENS.len()
            );
        }
    }
}

#[test]
fn ollama_reads_ollama_host_and_embeds_through_v1() {
    let emu = OpenAiEmulator::start(None, Flavor::OpenAi, None);
    let host = emu
        .base_url()
        .trim_end_matches("/v1")
        .trim_start_matches("http://")
        .to_string();
    let run = testing::run::<OpenAi>(
        "ollama",
        &Settings::from_values([("host", host)]),
        testing::job(
            "embed",
            "ollama",
            json!({"input": "hi", "model": "llama3:8b"}),
        ),
    );
    run.result.as_ref().unwrap();
    assert_eq!(emu.bodies("/v1/embeddings")[0]["model"], "llama3:8b");
}

#[test]
fn a_local_server_that_does_not_answer_is_unavailable_with_its_url() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let settings = Settings::from_values([("base_url", format!("http://{closed}/v1"))]);
    let run = chat("llamacpp", &settings, json!({"prompt": "hi", "model": "m"}));
    let e = err(&run);
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains(&closed.to_string()), "{}", e.message);
    assert!(e.hint.as_deref().unwrap().contains("LLAMACPP_BASE_URL"));
}

#[test]
fn complete_and_embed() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let run = testing::run::<OpenAi>(
        "openai",
        &cloud(&emu),
        testing::job("complete", "openai", json!({"prompt": "Once"})),
    );
    assert_eq!(text(&run), TOKENS.concat());
    assert_eq!(emu.bodies("/v1/completions")[0]["prompt"], "Once");
    let run = testing::run::<OpenAi>(
        "openai",
        &cloud(&emu),
        testing::job(
            "embed",
            "openai",
            json!({"input": "abc", "model": "text-embedding-3-small"}),
        ),
    );
    run.result.as_ref().unwrap();
    let out: Value = launcher_sdk::serde_json::from_str(&run.text("embedding").unwrap()).unwrap();
    assert_eq!(out["dimensions"], 8);
    assert_eq!(out["embedding"].as_array().unwrap().len(), 8);
}

#[test]
fn models_are_listed_as_json() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let run = testing::run::<OpenAi>(
        "openai",
        &cloud(&emu),
        testing::job("models", "openai", json!({})),
    );
    let list: Value = launcher_sdk::serde_json::from_str(&run.text("models").unwrap()).unwrap();
    assert_eq!(
        list[0],
        json!({"id": "gpt-4o-mini", "name": "gpt-4o-mini", "owned_by": "emulator"})
    );
}

#[test]
fn a_bad_key_is_unauthorized_naming_the_setting() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let mut settings = cloud(&emu);
    settings.set_secret("api_key", "sk-wrong");
    let run = chat("deepseek", &settings, json!({"prompt": "hi"}));
    let e = err(&run);
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert!(e.hint.as_deref().unwrap().contains("DEEPSEEK_API_KEY"));
    assert!(!e.message.contains("sk-wrong"));
    emu.fail_next(Fault::Status(403, "unsupported_country_region_territory"));
    assert_eq!(
        err(&chat("openai", &cloud(&emu), json!({"prompt": "hi"}))).kind,
        ErrorKind::Unauthorized
    );
}

#[test]
fn an_unknown_model_lists_close_ones() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let run = chat(
        "openai",
        &cloud(&emu),
        json!({"prompt": "hi", "model": "gpt-4o-mni"}),
    );
    let e = err(&run);
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("gpt-4o-mni"), "{}", e.message);
    assert!(
        e.hint.as_deref().unwrap().contains("gpt-4o-mini"),
        "{:?}",
        e.hint
    );
}

#[test]
fn rate_limits_are_waited_out_as_the_server_says() {
    for fault in [
        Fault::RetryAfter("0.05"),
        Fault::RetryAfterMs("50"),
        Fault::ResetRequests("50ms"),
    ] {
        let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
        emu.fail_next(fault.clone());
        let run = chat("openai", &cloud(&emu), json!({"prompt": "hi"}));
        run.result
            .as_ref()
            .unwrap_or_else(|e| panic!("{fault:?}: {e:?}"));
        assert_eq!(emu.bodies(CHAT).len(), 2, "{fault:?}");
    }
}

#[test]
fn an_empty_account_is_never_retried() {
    for fault in [Fault::InsufficientQuota, Fault::InsufficientBalance] {
        let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
        emu.fail_next(fault.clone());
        let run = chat("deepseek", &cloud(&emu), json!({"prompt": "hi"}));
        let e = err(&run);
        assert_eq!(e.kind, ErrorKind::RateLimited, "{fault:?}");
        assert!(e.retry_after_secs.is_none());
        assert!(
            e.hint.as_deref().unwrap().contains("waiting will not help"),
            "{fault:?}"
        );
        assert_eq!(emu.bodies(CHAT).len(), 1, "{fault:?}");
    }
}

#[test]
fn deepseek_422_and_vllm_error_shapes_are_read() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    emu.fail_next(Fault::InvalidParameters);
    let e = err(&chat("deepseek", &cloud(&emu), json!({"prompt": "hi"}))).clone();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("Invalid parameters"), "{}", e.message);
    for fault in [Fault::VllmFlat(400), Fault::VllmWrapped(400)] {
        let emu = OpenAiEmulator::start(None, Flavor::OpenAi, None);
        emu.fail_next(fault.clone());
        let e = err(&chat(
            "vllm",
            &local(&emu),
            json!({"prompt": "hi", "model": "gpt-4o"}),
        ))
        .clone();
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{fault:?}");
        assert!(
            e.message.contains("does not exist"),
            "{fault:?}: {}",
            e.message
        );
    }
}

#[test]
fn llamacpp_loading_is_asked_again_and_a_500_is_not_resent() {
    let emu = OpenAiEmulator::start(None, Flavor::LlamaCpp, None);
    emu.fail_next(Fault::Loading);
    emu.fail_next(Fault::Loading);
    let run = chat(
        "llamacpp",
        &local(&emu),
        json!({"prompt": "hi", "model": "gpt-4o"}),
    );
    run.result.as_ref().unwrap();
    assert_eq!(emu.bodies(CHAT).len(), 3);
    emu.fail_next(Fault::Status(500, "server_error"));
    let run = chat(
        "llamacpp",
        &local(&emu),
        json!({"prompt": "hi", "model": "gpt-4o"}),
    );
    assert_eq!(err(&run).kind, ErrorKind::Unavailable);
    assert_eq!(
        emu.bodies(CHAT).len(),
        4,
        "a billed request is never sent twice"
    );
}

#[test]
fn a_mid_stream_error_keeps_the_text_and_ends_the_job() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    emu.fail_next(Fault::MidStreamError);
    let run = chat("openai", &cloud(&emu), json!({"prompt": "hi"}));
    assert_eq!(text(&run), "Hello,");
    let e = err(&run);
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("server had an error"), "{}", e.message);
}

#[test]
fn a_stream_without_done_is_an_error() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    emu.fail_next(Fault::NoDone);
    let run = chat("openai", &cloud(&emu), json!({"prompt": "hi"}));
    assert_eq!(text(&run), TOKENS.concat());
    assert!(err(&run).message.contains("[DONE]"));
}

#[test]
fn finish_reason_length_is_reported() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    emu.fail_next(Fault::Length);
    let run = chat(
        "openai",
        &cloud(&emu),
        json!({"prompt": "hi", "max_tokens": 4}),
    );
    assert_eq!(run.result.as_ref().unwrap().info["finish_reason"], "length");
    assert!(
        run.logs
            .iter()
            .any(|l| l.level == LogLevel::Warn && l.message.contains("length"))
    );
}

#[test]
fn readiness_cloud_needs_a_key_local_an_explicit_address() {
    let manifest = testing::manifest::<OpenAi>().unwrap();
    let tool = |id: &str| manifest.tools.iter().find(|t| t.id == id).unwrap().clone();
    let openai = tool("openai");
    assert!(openai.cloud);
    let key = openai
        .settings
        .iter()
        .find(|s| s.name == "api_key")
        .unwrap();
    assert!(key.required && key.secret);
    assert_eq!(key.env.as_deref(), Some("OPENAI_API_KEY"));
    assert_eq!(
        openai
            .settings
            .iter()
            .find(|s| s.name == "base_url")
            .unwrap()
            .env
            .as_deref(),
        Some("OPENAI_BASE_URL")
    );
    let ollama = tool("ollama");
    assert!(!ollama.cloud);
    assert_eq!(ollama.require_one_of, vec![vec!["host".to_string()]]);
    assert_eq!(
        ollama
            .settings
            .iter()
            .find(|s| s.name == "host")
            .unwrap()
            .env
            .as_deref(),
        Some("OLLAMA_HOST")
    );
    assert_eq!(
        tool("llamacpp").require_one_of,
        vec![vec!["base_url".to_string()]]
    );
    assert!(manifest.configured_tools);
}

#[test]
fn user_profiles_are_described_and_run() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let config = json!({"openai": {"profiles": {"groq": {
        "base_url": emu.base_url(), "key_env": "GROQ_API_KEY", "model": "gpt-4o",
        "headers": {"X-Team": "blue"}, "tasks": ["chat", "models"]
    }}}});
    let config = config.as_object().unwrap().clone();
    let tools = OpenAi::describe(&DescribeRequest {
        config: config.clone(),
        ..Default::default()
    })
    .unwrap();
    let groq = tools.iter().find(|t| t.id == "openai-groq").unwrap();
    assert!(groq.cloud);
    assert_eq!(groq.tasks, ["chat", "models"]);
    let key = groq.settings.iter().find(|s| s.name == "api_key").unwrap();
    assert_eq!(key.env.as_deref(), Some("GROQ_API_KEY"));
    assert!(key.required);
    assert!(tools.iter().any(|t| t.id == "openai"));
    let mut settings = Settings::default();
    settings.set_secret("api_key", KEY);
    let run = Runner::new("openai-groq", &settings)
        .config(config)
        .run::<OpenAi>(testing::job("chat", "openai-groq", json!({"prompt": "hi"})));
    run.result.as_ref().unwrap();
    assert_eq!(emu.bodies(CHAT)[0]["model"], "gpt-4o");
    assert_eq!(emu.requests()[0].header("x-team"), Some("blue"));
    let bad = json!({"openai": {"profiles": {"nourl": {}}}});
    let e = OpenAi::describe(&DescribeRequest {
        config: bad.as_object().unwrap().clone(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.message.contains("nourl"));
}

#[test]
fn cancel_flag_before_start_is_honoured() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let run = testing::run_with_cancel::<OpenAi>(
        "openai",
        &cloud(&emu),
        testing::job("chat", "openai", json!({"prompt": "hi"})),
        Arc::new(AtomicBool::new(true)),
    );
    assert_eq!(err(&run).kind, ErrorKind::Cancelled);
}

// ---- speech and images ----

use launcher_testkit::emulators::openai::{PNG, TRANSCRIPT};

const TRANSCRIBE: &str = "/v1/audio/transcriptions";

fn wav_file(dir: &std::path::Path) -> String {
    let path = dir.join("clip.wav");
    let spec = launcher_sdk::media::WavSpec {
        sample_rate: 16_000,
        channels: 1,
        bits_per_sample: 16,
        format: launcher_sdk::media::SampleFormat::Int,
    };
    let mut bytes = spec.header(32_000).unwrap();
    bytes.extend(std::iter::repeat_n(0u8, 32_000));
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

fn run_task(tool: &str, task: &str, settings: &Settings, params: Value) -> Run {
    testing::run::<OpenAi>(tool, settings, testing::job(task, tool, params))
}

fn form_of(emu: &OpenAiEmulator, path: &str) -> Vec<launcher_testkit::http::FormPart> {
    emu.requests()
        .into_iter()
        .find(|r| r.path == path)
        .unwrap()
        .form()
        .unwrap()
}

#[test]
fn stt_uploads_the_file_and_fields_and_prints_the_transcript() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let dir = tempfile::tempdir().unwrap();
    let audio = wav_file(dir.path());
    let run = run_task(
        "openai",
        "stt",
        &cloud(&emu),
        json!({"audio": audio, "language": "en"}),
    );
    run.result.as_ref().unwrap();
    assert_eq!(text(&run), format!("{TRANSCRIPT}\n"));
    let parts = form_of(&emu, TRANSCRIBE);
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["file", "model", "language", "response_format"]);
    assert_eq!(parts[0].file_name.as_deref(), Some("clip.wav"));
    assert_eq!(parts[0].content_type.as_deref(), Some("audio/wav"));
    assert_eq!(parts[0].data, std::fs::read(&audio).unwrap());
    assert_eq!(parts[1].text(), "whisper-1");
    assert_eq!(parts[2].text(), "en");
    assert_eq!(parts[3].text(), "text");
}

#[test]
fn stt_json_is_a_json_output_and_srt_is_text() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let dir = tempfile::tempdir().unwrap();
    let audio = wav_file(dir.path());
    let run = run_task(
        "openai",
        "stt",
        &cloud(&emu),
        json!({"audio": audio, "format": "json"}),
    );
    run.result.as_ref().unwrap();
    let (header, bytes) = run.output("text").unwrap();
    assert_eq!(header.media_type, "application/json");
    let value: Value = launcher_sdk::serde_json::from_slice(bytes).unwrap();
    assert_eq!(value["text"], TRANSCRIPT);

    let run = run_task(
        "openai",
        "stt",
        &cloud(&emu),
        json!({"audio": audio, "format": "srt"}),
    );
    assert!(
        text(&run).starts_with("1\n00:00:00,000 --> "),
        "{}",
        text(&run)
    );
}

#[test]
fn faster_whisper_gets_model_name_and_json_and_srt_is_refused_before_sending() {
    let emu = OpenAiEmulator::start(None, Flavor::FasterWhisper, None);
    let dir = tempfile::tempdir().unwrap();
    let audio = wav_file(dir.path());
    let run = run_task(
        "whisper",
        "stt",
        &local(&emu),
        json!({"audio": audio, "model": "tiny.en", "format": "text"}),
    );
    run.result.as_ref().unwrap();
    assert_eq!(text(&run), format!("{TRANSCRIPT}\n"));
    let parts = form_of(&emu, TRANSCRIBE);
    let fields: Vec<(String, String)> = parts[1..]
        .iter()
        .map(|p| (p.name.clone(), p.text()))
        .collect();
    assert_eq!(
        fields,
        [
            ("model_name".to_string(), "tiny.en".to_string()),
            ("response_format".to_string(), "json".to_string())
        ]
    );

    for format in ["srt", "vtt"] {
        let run = run_task(
            "whisper",
            "stt",
            &local(&emu),
            json!({"audio": audio, "format": format}),
        );
        let e = err(&run);
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(
            e.message.contains("only json and verbose_json"),
            "{}",
            e.message
        );
    }
    assert_eq!(emu.requests().len(), 1, "nothing more was sent");
}

#[test]
fn faster_whisper_400_in_its_detail_shape_is_read() {
    // The generic profile with the faster-whisper flavour's server shows its 400 for `text`.
    let emu = OpenAiEmulator::start(None, Flavor::FasterWhisper, None);
    let dir = tempfile::tempdir().unwrap();
    let audio = wav_file(dir.path());
    let run = run_task(
        "localai",
        "stt",
        &local(&emu),
        json!({"audio": audio, "model": "x"}),
    );
    let e = err(&run);
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("is not supported"), "{}", e.message);
}

#[test]
fn stt_of_a_missing_file_names_it() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let run = run_task(
        "openai",
        "stt",
        &cloud(&emu),
        json!({"audio": "/nonexistent/talk.wav"}),
    );
    assert!(err(&run).message.contains("talk.wav"));
    assert!(emu.requests().is_empty());
}

#[test]
fn tts_streams_audio_named_by_its_bytes() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    for (format, ext) in [
        ("mp3", "mp3"),
        ("opus", "opus"),
        ("flac", "flac"),
        ("wav", "wav"),
        ("aac", "aac"),
    ] {
        let run = run_task(
            "openai",
            "tts",
            &cloud(&emu),
            json!({"text": "hello there", "voice": "nova", "format": format, "rate": 1.5}),
        );
        run.result
            .as_ref()
            .unwrap_or_else(|e| panic!("{format}: {e:?}"));
        let (header, bytes) = run.output("audio").unwrap();
        assert_eq!(header.extension, ext, "{format}");
        assert!(bytes.len() >= 1100, "{format}: {}", bytes.len());
        let writes = run.writes.iter().filter(|(n, _)| n == "audio").count();
        assert!(writes >= 1);
        assert_eq!(run.closed, ["audio"]);
    }
    let body = &emu.bodies("/v1/audio/speech")[0];
    assert_eq!(
        body,
        &json!({"model": "tts-1", "input": "hello there", "voice": "nova", "response_format": "mp3", "speed": 1.5})
    );
}

#[test]
fn tts_pcm_is_wrapped_in_a_wav_header() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let run = run_task(
        "openai",
        "tts",
        &cloud(&emu),
        json!({"text": "hi", "format": "pcm"}),
    );
    run.result.as_ref().unwrap();
    let (header, bytes) = run.output("audio").unwrap();
    assert_eq!(header.extension, "wav");
    let wav = launcher_sdk::media::Wav::parse(bytes).unwrap();
    assert_eq!(wav.spec, launcher_plugin_openai::speech::PCM);
    assert_eq!(wav.data.len(), 200);
    assert!(wav.exact_sizes);
}

#[test]
fn long_text_is_spoken_in_wav_pieces_joined_and_encoded_once() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let sentence = "This sentence is about fifty characters long, yes. ";
    let text_in: String = sentence.repeat(100); // ~5100 characters
    let run = run_task(
        "openai",
        "tts",
        &cloud(&emu),
        json!({"text": text_in, "format": "mp3"}),
    );
    run.result.as_ref().unwrap();
    let bodies = emu.bodies("/v1/audio/speech");
    assert_eq!(bodies.len(), 2);
    assert!(bodies.iter().all(|b| b["response_format"] == "wav"));
    let chars: usize = bodies
        .iter()
        .map(|b| b["input"].as_str().unwrap().chars().count())
        .sum();
    // The joined WAV (24 kHz, 16-bit mono: 48,000 bytes a second) is encoded once into the
    // MP3 asked for, as long as all the pieces together.
    let (header, bytes) = run.output("audio").unwrap();
    assert_eq!(header.extension, "mp3");
    let seconds = (chars * 100) as f64 / 48_000.0;
    let probed = launcher_testkit::media::probe_duration(bytes, "mp3").unwrap();
    assert!(
        (probed - seconds).abs() < 0.1,
        "{probed} s, not {seconds} s"
    );
    assert_eq!(run.result.as_ref().unwrap().info["requests"], 2);
}

#[test]
fn long_pcm_is_joined_from_pcm_pieces_into_one_wav() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let text_in = "This sentence is about fifty characters long, yes. ".repeat(100);
    let run = run_task(
        "openai",
        "tts",
        &cloud(&emu),
        json!({"text": text_in, "format": "pcm"}),
    );
    run.result.as_ref().unwrap();
    let bodies = emu.bodies("/v1/audio/speech");
    assert_eq!(bodies.len(), 2);
    assert!(bodies.iter().all(|b| b["response_format"] == "pcm"));
    let chars: usize = bodies
        .iter()
        .map(|b| b["input"].as_str().unwrap().chars().count())
        .sum();
    let (header, bytes) = run.output("audio").unwrap();
    assert_eq!(header.extension, "wav");
    let wav = launcher_sdk::media::Wav::parse(bytes).unwrap();
    assert_eq!(wav.spec, launcher_plugin_openai::speech::PCM);
    assert_eq!(wav.data.len(), chars * 100);
    assert!(wav.exact_sizes);
}

#[test]
fn txt2img_decodes_b64_images_in_order() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let run = run_task(
        "openai",
        "txt2img",
        &cloud(&emu),
        json!({"prompt": "a red fox", "model": "dall-e-2", "width": 512, "count": 2, "quality": "standard"}),
    );
    run.result.as_ref().unwrap();
    let names: Vec<&str> = run.outputs.iter().map(|(h, _)| h.name.as_str()).collect();
    assert_eq!(names, ["image", "image-2"]);
    for (header, bytes) in &run.outputs {
        assert_eq!(header.extension, "png");
        assert_eq!(bytes, PNG);
    }
    let body = &emu.bodies("/v1/images/generations")[0];
    assert_eq!(
        body,
        &json!({"model": "dall-e-2", "prompt": "a red fox", "n": 2, "size": "512x512", "quality": "standard", "response_format": "b64_json"})
    );
}

#[test]
fn txt2img_downloads_url_answers() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    emu.answer_image_urls();
    let run = run_task(
        "openai",
        "txt2img",
        &cloud(&emu),
        json!({"prompt": "a fox"}),
    );
    let info = &run.result.as_ref().unwrap().info;
    assert_eq!(info["revised_prompt"][0], "a fox");
    let (header, bytes) = run.output("image").unwrap();
    assert_eq!((header.extension.as_str(), bytes.as_slice()), ("png", PNG));
    assert!(emu.requests().iter().any(|r| r.path.starts_with("/files/")));
}

#[test]
fn txt2img_refuses_sizes_and_counts_the_model_does_not_take() {
    let emu = OpenAiEmulator::start(Some(KEY), Flavor::OpenAi, None);
    let run = run_task(
        "openai",
        "txt2img",
        &cloud(&emu),
        json!({"prompt": "a fox", "width": 512, "height": 512}),
    );
    let e = err(&run);
    assert!(
        e.message
            .contains("does not make 512x512 images; it makes 1024x1024, 1792x1024, 1024x1792"),
        "{}",
        e.message
    );
    let run = run_task(
        "openai",
        "txt2img",
        &cloud(&emu),
        json!({"prompt": "a fox", "count": 2}),
    );
    assert!(err(&run).message.contains("makes one image per request"));
    let run = run_task(
        "openai",
        "txt2img",
        &cloud(&emu),
        json!({"prompt": "a fox", "negative": "rain"}),
    );
    assert!(err(&run).message.contains("no negative prompt"));
    assert!(emu.requests().is_empty());
}

#[test]
fn localai_puts_the_negative_prompt_after_a_bar() {
    let emu = OpenAiEmulator::start(None, Flavor::OpenAi, None);
    let run = run_task(
        "localai",
        "txt2img",
        &local(&emu),
        json!({"prompt": "a fox", "negative": "rain", "model": "dall-e-2"}),
    );
    run.result.as_ref().unwrap();
    assert_eq!(
        emu.bodies("/v1/images/generations")[0]["prompt"],
        "a fox|rain"
    );
}

// ---- Ollama's native API ----

use launcher_testkit::emulators::ollama::{self, OllamaEmulator};

fn ollama_settings(emu: &OllamaEmulator) -> Settings {
    Settings::from_values([("host", emu.url())])
}

#[test]
fn ollama_chat_streams_ndjson_tokens_with_options() {
    let emu = OllamaEmulator::start(&["llama3:latest"]);
    let run = chat(
        "ollama",
        &ollama_settings(&emu),
        json!({"prompt": "hi", "system": "be brief", "model": "llama3", "temperature": 0.2, "max_tokens": 9, "seed": 3}),
    );
    let info = run.result.as_ref().unwrap().info.clone();
    assert_eq!(text(&run), ollama::TOKENS.concat());
    let writes = run.writes.iter().filter(|(n, _)| n == "text").count();
    assert_eq!(writes, ollama::TOKENS.len());
    assert_eq!(info["done_reason"], "stop");
    assert_eq!(info["eval_count"], ollama::TOKENS.len());
    assert_eq!(
        emu.bodies("/api/chat")[0],
        json!({"model": "llama3", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
               "options": {"temperature": 0.2, "num_predict": 9, "seed": 3}, "stream": true})
    );
}

#[test]
fn ollama_complete_uses_generate_whole_or_streamed() {
    let emu = OllamaEmulator::start(&["llama3:latest"]);
    for stream in [true, false] {
        let run = testing::run::<OpenAi>(
            "ollama",
            &ollama_settings(&emu),
            testing::job(
                "complete",
                "ollama",
                json!({"prompt": "Once", "model": "llama3", "stream": stream}),
            ),
        );
        run.result.as_ref().unwrap();
        assert_eq!(text(&run), ollama::TOKENS.concat());
    }
    let bodies = emu.bodies("/api/generate");
    assert_eq!(bodies[0]["prompt"], "Once");
    assert_eq!(bodies[1]["stream"], false);
}

#[test]
fn ollama_models_come_from_tags() {
    let emu = OllamaEmulator::start(&["llama3:latest", "qwen2.5:7b"]);
    let run = testing::run::<OpenAi>(
        "ollama",
        &ollama_settings(&emu),
        testing::job("models", "ollama", json!({})),
    );
    run.result.as_ref().unwrap();
    let list: Value =
        launcher_sdk::serde_json::from_slice(&run.output("models").unwrap().1).unwrap();
    assert_eq!(list[1]["id"], "qwen2.5:7b");
    assert_eq!(list[0]["details"]["parameter_size"], "8B");
}

#[test]
fn ollama_missing_model_says_how_to_pull_or_pulls_with_progress() {
    let emu = OllamaEmulator::start(&[]);
    let run = chat(
        "ollama",
        &ollama_settings(&emu),
        json!({"prompt": "hi", "model": "phi3"}),
    );
    let e = err(&run);
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(
        e.message.contains("model 'phi3' not found"),
        "{}",
        e.message
    );
    assert!(e.hint.as_deref().unwrap().contains("ollama pull phi3"));

    let run = chat(
        "ollama",
        &ollama_settings(&emu),
        json!({"prompt": "hi", "model": "phi3", "pull": true}),
    );
    run.result.as_ref().unwrap();
    assert_eq!(text(&run), ollama::TOKENS.concat());
    let fractions: Vec<f64> = run.progress.iter().filter_map(|p| p.fraction).collect();
    assert_eq!(fractions, [0.25, 1.0]);
    assert!(run.progress.last().unwrap().message.contains("success"));
    assert_eq!(
        emu.bodies("/api/pull")[0],
        json!({"model": "phi3", "stream": true})
    );
    assert!(emu.models().contains(&"phi3:latest".to_string()));
}

#[test]
fn ollama_mid_stream_error_ends_the_job_and_keeps_the_text() {
    let emu = OllamaEmulator::start(&["llama3:latest"]);
    emu.fail_mid_stream();
    let run = chat(
        "ollama",
        &ollama_settings(&emu),
        json!({"prompt": "hi", "model": "llama3"}),
    );
    let e = err(&run);
    assert!(e.message.contains("error was encountered"), "{}", e.message);
    assert_eq!(text(&run), ollama::TOKENS[0]);
}
