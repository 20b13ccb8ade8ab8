//! The openai plugin against real engines the test kit starts: llama.cpp's server with
//! SmolLM2 through the `llamacpp` profile, and faster-whisper-server through `whisper`.
//! Each test returns early (after a skip line) when its engine is not installed.

use launcher_plugin_openai::OpenAi;
use launcher_sdk::serde_json::{Value, json};
use launcher_sdk::testing::{self, Run, Runner};
use launcher_sdk::{ErrorKind, Settings};
use launcher_testkit::engines::{self, Engine};

fn settings(engine: &Engine) -> Settings {
    Settings::from_values([("base_url", engine.base_url())])
}

fn run(tool: &str, task: &str, engine: &Engine, params: Value) -> Run {
    testing::run::<OpenAi>(tool, &settings(engine), testing::job(task, tool, params))
}

fn text_writes(run: &Run) -> usize {
    run.writes.iter().filter(|(n, _)| n == "text").count()
}

#[test]
fn llamacpp_chats_whole_and_streamed() {
    let Some(llama) = engines::llama() else {
        return;
    };
    let whole = run(
        "llamacpp",
        "chat",
        llama,
        json!({"prompt": "Say hello.", "stream": false, "max_tokens": 16, "seed": 1, "temperature": 0.0}),
    );
    let info = &whole.result.as_ref().unwrap().info;
    assert!(!whole.text("text").unwrap().trim().is_empty());
    assert!(info["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(info.get("timings").is_some(), "{info:?}");

    // Streamed: the watcher sees the first token on its own, before any later one.
    let mut seen = Vec::new();
    let streamed = Runner::new("llamacpp", &settings(llama))
        .watch(|run| {
            seen.push(text_writes(run));
            true
        })
        .run::<OpenAi>(testing::job(
            "chat",
            "llamacpp",
            json!({"prompt": "Count from one to ten.", "max_tokens": 24, "temperature": 0.0}),
        ));
    streamed.result.as_ref().unwrap();
    assert!(text_writes(&streamed) > 1, "the answer came in one write");
    assert!(
        seen.contains(&1),
        "no event saw the first token alone: {seen:?}"
    );
    let joined: String = streamed
        .writes
        .iter()
        .filter(|(n, _)| n == "text")
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(Some(joined), streamed.text("text"));
}

#[test]
fn llamacpp_completes_and_lists_its_model() {
    let Some(llama) = engines::llama() else {
        return;
    };
    let done = run(
        "llamacpp",
        "complete",
        llama,
        json!({"prompt": "The capital of France is", "max_tokens": 8}),
    );
    done.result.as_ref().unwrap();
    assert!(!done.text("text").unwrap().is_empty());

    let models = run("llamacpp", "models", llama, json!({}));
    models.result.as_ref().unwrap();
    let list: Value =
        launcher_sdk::serde_json::from_slice(&models.output("models").unwrap().1).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == llama.model()),
        "{list}"
    );
}

#[test]
fn llamacpp_refuses_a_bad_request_with_its_own_words() {
    let Some(llama) = engines::llama() else {
        return;
    };
    // A schema llama.cpp cannot turn into a grammar: the server answers 400.
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, r#"{"type": "no-such-type"}"#).unwrap();
    let bad = run(
        "llamacpp",
        "chat",
        llama,
        json!({"prompt": "hi", "json_schema": schema.to_str().unwrap(), "max_tokens": 4}),
    );
    let err = bad
        .error()
        .unwrap_or_else(|| panic!("expected an error: {:?}", bad.result));
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err:?}");
    assert!(err.message.contains("HTTP 400"), "{}", err.message);
}

#[test]
fn llamacpp_stops_when_cancelled_mid_stream() {
    let Some(llama) = engines::llama() else {
        return;
    };
    let cancelled = Runner::new("llamacpp", &settings(llama))
        .watch(|run| text_writes(run) < 2)
        .run::<OpenAi>(testing::job(
            "chat",
            "llamacpp",
            json!({"prompt": "Write a long story about a fox.", "max_tokens": 400}),
        ));
    let err = cancelled
        .error()
        .unwrap_or_else(|| panic!("expected cancellation: {:?}", cancelled.result));
    assert_eq!(err.kind, ErrorKind::Cancelled);
    assert_eq!(text_writes(&cancelled), 2);
}

#[test]
fn whisper_transcribes_espeak_speech() {
    let Some(whisper) = engines::whisper() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("fox.wav");
    let said = "the quick brown fox jumps over the lazy dog";
    let status = std::process::Command::new("espeak-ng")
        .args(["-s", "140", "-w"])
        .arg(&wav)
        .arg(said)
        .status()
        .expect("espeak-ng runs");
    assert!(status.success());
    let heard = run(
        "whisper",
        "stt",
        whisper,
        json!({"audio": wav.to_str().unwrap(), "model": whisper.model(), "language": "en"}),
    );
    heard
        .result
        .as_ref()
        .unwrap_or_else(|e| panic!("{e:?}\n{}", whisper.output_tail(20)));
    let text = heard.text("text").unwrap().to_lowercase();
    let words: Vec<&str> = said.split(' ').collect();
    let found = words.iter().filter(|w| text.contains(*w)).count();
    assert!(found * 3 >= words.len() * 2, "heard {text:?}");

    let json_out = run(
        "whisper",
        "stt",
        whisper,
        json!({"audio": wav.to_str().unwrap(), "model": whisper.model(), "format": "json"}),
    );
    json_out.result.as_ref().unwrap();
    let value: Value =
        launcher_sdk::serde_json::from_slice(&json_out.output("text").unwrap().1).unwrap();
    assert!(
        value["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("fox")
    );
}
