//! The real engines that `tests/engines.sh` installs answer as their adapters expect.
//!
//! Each test skips with a line on stderr when its engine is not installed, and fails under
//! `LAUNCHER_REQUIRE_ENGINES=1`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use launcher_testkit::engines::{self, Engine};
use serde_json::{Value, json};

fn chat_body(stream: bool) -> Value {
    json!({
        "model": engines::llama().map(Engine::model).unwrap_or_default(),
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France? Answer in one word."}
        ],
        "max_tokens": 16,
        "temperature": 0,
        "stream": stream
    })
}

#[test]
fn llama_chat_answers_with_text() {
    let Some(llama) = engines::llama() else {
        return;
    };
    let reply = engines::post_json(
        &format!("{}/chat/completions", llama.base_url()),
        &chat_body(false),
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.trim().is_empty(), "{v}");
    assert!(v["choices"][0]["finish_reason"].is_string(), "{v}");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn llama_chat_streams_sse_chunks_ending_in_done() {
    let Some(llama) = engines::llama() else {
        return;
    };
    let reply = engines::post_json(
        &format!("{}/chat/completions", llama.base_url()),
        &chat_body(true),
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "{:?}",
        reply.headers
    );
    let text = reply.text();
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.len() > 1, "{text}");
    let words: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!words.trim().is_empty(), "{text}");
    let last = chunks
        .iter()
        .rev()
        .find(|c| c["choices"].as_array().is_some_and(|a| !a.is_empty()))
        .unwrap();
    assert!(last["choices"][0]["finish_reason"].is_string(), "{last}");
}

#[test]
fn llama_continues_text_on_v1_completions() {
    let Some(llama) = engines::llama() else {
        return;
    };
    let reply = engines::post_json(
        &format!("{}/completions", llama.base_url()),
        &json!({
            "model": llama.model(),
            "prompt": "One, two, three, four,",
            "max_tokens": 8,
            "temperature": 0
        }),
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    assert!(!v["choices"][0]["text"].as_str().unwrap().is_empty(), "{v}");
}

#[test]
fn llama_lists_its_alias_in_v1_models() {
    let Some(llama) = engines::llama() else {
        return;
    };
    let reply = engines::get(&format!("{}/models", llama.base_url())).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&llama.model()), "{v}");
}

#[test]
fn whisper_transcribes_spoken_english() {
    let Some(whisper) = engines::whisper() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("fox.wav");
    let sentence = "the quick brown fox jumps over the lazy dog";
    let status = Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg(sentence)
        .status()
        .expect("espeak-ng runs (apt-get install espeak-ng)");
    assert!(status.success());
    let audio = std::fs::read(&wav).unwrap();
    let (content_type, body) = engines::multipart(&[
        ("file", Some("fox.wav"), &audio),
        ("model_name", None, whisper.model().as_bytes()),
        ("response_format", None, b"json"),
        ("language", None, b"en"),
    ]);
    let reply = engines::request(
        "POST",
        &format!("{}/audio/transcriptions", whisper.base_url()),
        &[("Content-Type", &content_type)],
        &body,
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    let heard = v["text"].as_str().unwrap().to_lowercase();
    let words: Vec<&str> = sentence.split(' ').collect();
    let matched = words.iter().filter(|w| heard.contains(*w)).count();
    assert!(
        matched >= 6,
        "heard {heard:?}: {matched} of {} words",
        words.len()
    );
}

#[test]
fn whisper_rejects_text_response_format() {
    let Some(whisper) = engines::whisper() else {
        return;
    };
    let (content_type, body) = engines::multipart(&[
        ("file", Some("empty.wav"), b"RIFF"),
        ("model_name", None, whisper.model().as_bytes()),
        ("response_format", None, b"text"),
    ]);
    let reply = engines::request(
        "POST",
        &format!("{}/audio/transcriptions", whisper.base_url()),
        &[("Content-Type", &content_type)],
        &body,
    )
    .unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text());
}

/// A launched engine exits when the process that started it is killed with SIGKILL.
#[test]
fn an_engine_dies_with_its_parent_even_on_sigkill() {
    let Some(llama) = engines::llama() else {
        return;
    };
    let python = llama.manifest("python").unwrap();
    let launcher = llama.manifest("launcher").unwrap();
    let model = llama.manifest("model").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    // A shell stands in for the test process: it starts the launcher, prints its pid, waits.
    let mut shell = Command::new("sh")
        .arg("-c")
        .arg(r#"LAUNCHER_ENGINE_PARENT=$$ "$0" "$1" "$2" "$3" orphan-test >/dev/null 2>&1 & echo $!; wait"#)
        .args([python, launcher, model, &port])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(shell.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let pid: u32 = line.trim().parse().unwrap();
    let proc_dir = format!("/proc/{pid}");
    assert!(std::path::Path::new(&proc_dir).exists());
    // Wait until it serves, so that its watch is running, not just its first check.
    let health = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !engines::get(&health).is_ok_and(|r| r.status == 200) {
        assert!(
            Instant::now() < deadline,
            "the orphan-test engine never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    shell.kill().unwrap();
    shell.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::path::Path::new(&proc_dir).exists() {
        // A zombie is as good as gone: it is dead, waiting for init to reap it.
        let state = std::fs::read_to_string(format!("{proc_dir}/stat")).unwrap_or_default();
        if state.split_whitespace().nth(2) == Some("Z") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the engine {pid} outlived its killed parent"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
