//! The real engines that `tests/engines.sh` installs answer as their adapters expect.
//!
//! Each test skips with a line on stderr when its engine is not installed, and fails under
//! `LAUNCHER_REQUIRE_ENGINES=1`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
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
    let model = llama.manifest("model").unwrap();
    orphan_dies(llama, &[model, "orphan-test"], "/health", 1);
}

/// sd-server runs as a child of its launcher script; it goes too, not only the script.
#[test]
fn sd_server_dies_with_its_parent_even_on_sigkill() {
    let Some(sd) = engines::sd() else {
        return;
    };
    let model = sd.manifest("model").unwrap();
    let binary = sd.manifest("binary").unwrap();
    orphan_dies(sd, &[model, binary, "1"], "/sdapi/v1/sd-models", 2);
}

/// Starts `engine`'s launcher under a shell that stands in for the test process, as
/// `launcher MODEL PORT rest...`, waits until it answers `health`, kills the shell with SIGKILL
/// and checks that the launcher and every process it started (at least `processes` in all)
/// are gone.
fn orphan_dies(engine: &Engine, args: &[&str], health: &str, processes: usize) {
    let python = engine.manifest("python").unwrap();
    let launcher = engine.manifest("launcher").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let (model, rest) = args.split_first().unwrap();
    // The shell starts the launcher, prints its pid, waits.
    let mut shell = Command::new("sh")
        .arg("-c")
        .arg(r#"LAUNCHER_ENGINE_PARENT=$$ "$@" >/dev/null 2>&1 & echo $!; wait"#)
        .arg("sh")
        .args([python, launcher, model, &port])
        .args(rest)
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
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    // Wait until it serves, so that its watch is running, not just its first check.
    let health = format!("http://127.0.0.1:{port}{health}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !engines::get(&health).is_ok_and(|r| r.status == 200) {
        assert!(
            Instant::now() < deadline,
            "the orphan-test engine never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut family = vec![pid];
    family.extend(descendants(pid));
    assert!(
        family.len() >= processes,
        "expected {processes} engine processes, found {family:?}"
    );
    shell.kill().unwrap();
    shell.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    for pid in family {
        let proc_dir = format!("/proc/{pid}");
        while std::path::Path::new(&proc_dir).exists() {
            // A zombie is as good as gone: it is dead, waiting for init to reap it.
            let state = std::fs::read_to_string(format!("{proc_dir}/stat")).unwrap_or_default();
            if state.split_whitespace().nth(2) == Some("Z") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the engine process {pid} outlived its killed parent"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Every process below `pid`, from each thread's `children` list in /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            found.push(child);
            found.extend(descendants(child));
        }
    }
    found
}

// --- stable-diffusion.cpp's sd-server -----------------------------------------------------------

/// The chunks of a PNG file, `(type, data)`, after checking its signature.
fn png_chunks(png: &[u8]) -> Vec<(String, &[u8])> {
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {:?}",
        &png[..png.len().min(16)]
    );
    let mut chunks = Vec::new();
    let mut at = 8;
    while at + 12 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind = String::from_utf8_lossy(&png[at + 4..at + 8]).into_owned();
        let data = &png[at + 8..at + 8 + len];
        chunks.push((kind, data));
        at += 12 + len;
    }
    assert_eq!(
        at,
        png.len(),
        "the PNG's chunks do not add up to its length"
    );
    chunks
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    let chunks = png_chunks(png);
    let (kind, ihdr) = &chunks[0];
    assert_eq!(kind, "IHDR", "the first chunk is {kind}");
    let be = |i: usize| u32::from_be_bytes(ihdr[i..i + 4].try_into().unwrap());
    (be(0), be(4))
}

#[test]
fn sd_txt2img_answers_a_png_of_the_asked_size_with_its_parameters() {
    let Some(sd) = engines::sd() else {
        return;
    };
    let request = json!({
        "prompt": "a lighthouse",
        "negative_prompt": "blurry",
        "width": 64,
        "height": 64,
        "steps": 2,
        "cfg_scale": 7,
        "seed": 42,
        "sampler_name": "Euler a"
    });
    let reply = engines::post_json(&format!("{}/sdapi/v1/txt2img", sd.url()), &request).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    // The request comes back as `parameters`; `info` is a string (empty here, JSON in A1111).
    assert_eq!(v["parameters"], request, "{}", v["parameters"]);
    assert!(v["info"].is_string(), "{}", v["info"]);
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 1);
    let png = base64::engine::general_purpose::STANDARD
        .decode(images[0].as_str().unwrap())
        .unwrap();
    assert_eq!(png_size(&png), (64, 64));
    // A1111's `parameters` text chunk: the prompt, then "Negative prompt: ...", then settings.
    let chunks = png_chunks(&png);
    let text = chunks
        .iter()
        .find(|(kind, data)| kind == "tEXt" && data.starts_with(b"parameters\0"))
        .map(|(_, data)| String::from_utf8_lossy(&data[b"parameters\0".len()..]).into_owned())
        .unwrap_or_else(|| panic!("no parameters chunk in {:?}", chunks.iter().map(|c| &c.0)));
    assert!(
        text.starts_with("a lighthouse\nNegative prompt: blurry\n"),
        "{text}"
    );
    for part in ["Steps: 2", "Seed: 42", "Size: 64x64", "Sampler: euler_a"] {
        assert!(text.contains(part), "{part} is not in {text}");
    }
    assert!(chunks.iter().any(|(kind, _)| kind == "IDAT"));
}

#[test]
fn sd_lists_its_checkpoint_in_sd_models() {
    let Some(sd) = engines::sd() else {
        return;
    };
    let reply = engines::get(&format!("{}/sdapi/v1/sd-models", sd.url())).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    let models = v.as_array().unwrap();
    assert_eq!(models.len(), 1, "{v}");
    assert_eq!(models[0]["title"], sd.model(), "{v}");
    assert_eq!(models[0]["model_name"], sd.model(), "{v}");
    assert_eq!(
        models[0]["filename"],
        format!("{}.safetensors", sd.model()),
        "{v}"
    );
    let options = engines::get(&format!("{}/sdapi/v1/options", sd.url()))
        .unwrap()
        .json();
    assert_eq!(options["sd_model_checkpoint"], sd.model(), "{options}");
}

#[test]
fn sd_lists_its_samplers() {
    let Some(sd) = engines::sd() else {
        return;
    };
    let reply = engines::get(&format!("{}/sdapi/v1/samplers", sd.url())).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    for name in ["euler_a", "euler", "dpm++2m"] {
        assert!(names.contains(&name), "{name} is not in {names:?}");
    }
}

#[test]
fn sd_answers_bad_requests_with_error_json() {
    let Some(sd) = engines::sd() else {
        return;
    };
    let url = format!("{}/sdapi/v1/txt2img", sd.url());
    let reply = engines::post_json(&url, &json!({"width": 64, "height": 64, "steps": 2})).unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json(), json!({"error": "prompt required"}));

    let reply =
        engines::post_json(&url, &json!({"prompt": "x", "width": 0, "height": 64})).unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"error": "width and height must be positive"})
    );

    // Not JSON at all: a 500 with the parser's message, not a 400.
    let reply = engines::request(
        "POST",
        &url,
        &[("Content-Type", "application/json")],
        b"{oops",
    )
    .unwrap();
    assert_eq!(reply.status, 500, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["error"], "server_error", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("parse error"),
        "{v}"
    );
}
