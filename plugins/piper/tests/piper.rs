//! The piper plugin against the real Piper server the test kit starts (piper-tts with the
//! en_US "joe" voice), against a server the plugin starts itself from the voice file, and,
//! for what the real server cannot be made to do on demand (answer a long text in pieces
//! quickly, send HTML instead of audio), against a small scripted server.
//!
//! Tests that need the real engine return early (after a skip line) when it is not installed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use launcher_plugin_piper::{PIECE_CHARS, Piper};
use launcher_sdk::media::{SampleFormat, WavSpec};
use launcher_sdk::serde_json::{Value, json};
use launcher_sdk::testing::{self, Run, Runner};
use launcher_sdk::{ErrorKind, Settings};
use launcher_testkit::engines::{self, Engine};
use launcher_testkit::http::{HttpServer, Reply, Response};
use launcher_testkit::media::{WavInfo, parse_wav, probe_duration};

fn speak(settings: &Settings, params: Value) -> Run {
    testing::run::<Piper>("piper", settings, testing::job("tts", "piper", params))
}

fn at(url: String) -> Settings {
    Settings::from_values([("url", url)])
}

/// The settings that make the plugin start a server of its own for the engine's voice.
fn own_server(engine: &Engine) -> Settings {
    Settings::from_values([
        ("model", engine.manifest("model").unwrap()),
        ("python", engine.manifest("python").unwrap()),
    ])
}

#[track_caller]
fn wav_of(run: &Run, engine: Option<&Engine>) -> WavInfo {
    if let Err(err) = &run.result {
        let log = engine.map(|e| e.output_tail(20)).unwrap_or_default();
        panic!("{err:?}\n{log}");
    }
    let (header, bytes) = run.output("audio").expect("an audio output");
    assert_eq!(header.media_type, "audio/wav");
    assert!(run.closed.contains(&"audio".to_string()));
    parse_wav(bytes).unwrap()
}

/// Held by tests in which the plugin starts servers, so one test's server is not taken for
/// another's leftover.
static STARTS: Mutex<()> = Mutex::new(());

fn one_start_at_a_time() -> MutexGuard<'static, ()> {
    STARTS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Returns the Piper servers this process started that are still there (zombies included).
fn our_servers() -> Vec<u32> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command's closing parenthesis: state, then the parent's id.
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            parent == Some(me.as_str())
                && String::from_utf8_lossy(&cmdline).contains("piper.http_server")
        })
        .collect()
}

#[test]
fn speech_comes_back_as_a_wav_of_plausible_length() {
    let Some(piper) = engines::piper() else {
        return;
    };
    let sentence = "Hello there. This is the Piper voice, speaking offline.";
    let run = speak(&at(piper.url()), json!({"text": sentence}));
    let wav = wav_of(&run, Some(piper));
    assert_eq!((wav.sample_rate, wav.channels, wav.bits), (22050, 1, 16));
    // About 15 characters a second at the normal rate.
    assert!((2.0..10.0).contains(&wav.duration), "{wav:?}");
    let info = &run.result.as_ref().unwrap().info;
    assert_eq!(info["voice"], piper.model());
    assert_eq!(info["requests"], 1);
    assert!((info["duration_secs"].as_f64().unwrap() - wav.duration).abs() < 0.01);
}

#[test]
fn the_rate_changes_the_duration() {
    let Some(piper) = engines::piper() else {
        return;
    };
    let text = "The rate of speech is measured by how long this sentence takes to say.";
    // No noise in the phoneme widths, so only the rate differs between the two.
    let duration = |rate: f64| {
        let run = speak(
            &at(piper.url()),
            json!({"text": text, "rate": rate, "noise_w_scale": 0.0}),
        );
        wav_of(&run, Some(piper)).duration
    };
    let (slow, normal, fast) = (duration(0.5), duration(1.0), duration(2.0));
    assert!(slow > normal * 1.6, "slow {slow} s, normal {normal} s");
    assert!(fast < normal * 0.65, "fast {fast} s, normal {normal} s");
}

#[test]
fn the_plugin_starts_the_server_itself_and_stops_it_after_the_job() {
    let Some(piper) = engines::piper() else {
        return;
    };
    let run = speak(
        &own_server(piper),
        json!({"text": "Started by the plugin."}),
    );
    let wav = wav_of(&run, None);
    assert!(wav.duration > 0.5, "{wav:?}");
    let started = run
        .logs
        .iter()
        .find(|l| l.message.starts_with("started Piper's server"))
        .unwrap_or_else(|| panic!("no start logged: {:?}", run.logs));
    let url = started.message.split(" at ").nth(1).unwrap();
    let url = url.split(' ').next().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(
        engines::get(&format!("{url}/info")).is_err(),
        "the server still answers at {url} after the job"
    );
    assert!(
        our_servers().is_empty(),
        "left running: {:?}",
        our_servers()
    );

    // Its voices are those of the voice file's directory.
    let voices = testing::run::<Piper>(
        "piper",
        &own_server(piper),
        testing::job("voices", "piper", json!({"language": "en"})),
    );
    let listed: Value =
        launcher_sdk::serde_json::from_str(&voices.text("voices").unwrap()).unwrap();
    assert_eq!(listed[0]["id"], piper.model());
    assert_eq!(listed[0]["locale"], "en-US");
    assert_eq!(listed[0]["default"], true);
}

#[test]
fn cancelling_while_the_server_starts_stops_it() {
    let Some(piper) = engines::piper() else {
        return;
    };
    let _one = one_start_at_a_time();
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    // Cancel once the plugin has started the child, before it could have loaded the voice.
    let watcher = thread::spawn(move || {
        for _ in 0..600 {
            if !our_servers().is_empty() {
                flag.store(true, Ordering::SeqCst);
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    });
    let run = Runner::new("piper", &own_server(piper))
        .cancel(cancel)
        .run::<Piper>(testing::job(
            "tts",
            "piper",
            json!({"text": "Never spoken."}),
        ));
    assert!(watcher.join().unwrap(), "the server was never started");
    assert_eq!(
        run.error().map(|e| e.kind),
        Some(ErrorKind::Cancelled),
        "{:?}",
        run.result
    );
    assert!(run.output("audio").is_none());
    assert!(
        our_servers().is_empty(),
        "left running: {:?}",
        our_servers()
    );
}

#[test]
fn a_round_trip_through_whisper_gets_the_words_back() {
    let (Some(piper), Some(whisper)) = (engines::piper(), engines::whisper()) else {
        return;
    };
    let sentence = "the quick brown fox jumps over the lazy dog";
    let run = speak(&at(piper.url()), json!({"text": sentence}));
    let (_, audio) = run.output("audio").expect("audio");
    let model_name = whisper.model().to_string();
    let (content_type, body) = engines::multipart(&[
        ("file", Some("fox.wav"), audio),
        ("model_name", None, model_name.as_bytes()),
        ("language", None, b"en"),
        ("response_format", None, b"json"),
    ]);
    let reply = engines::request(
        "POST",
        &format!("{}/audio/transcriptions", whisper.base_url()),
        &[("Content-Type", &content_type)],
        &body,
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let heard = reply.json()["text"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    let words = sentence.split(' ').filter(|w| heard.contains(w)).count();
    assert!(words >= 8, "whisper heard {heard:?}");
}

#[test]
fn what_the_server_would_misuse_is_refused_first() {
    let Some(piper) = engines::piper() else {
        return;
    };
    let refused = |params: Value, says: &str| {
        let run = speak(&at(piper.url()), params);
        let err = run.error().unwrap_or_else(|| panic!("{:?}", run.result));
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{err:?}");
        assert!(err.message.contains(says), "{err:?}");
        assert!(err.hint.is_some(), "{err:?}");
    };
    // The server would fall back to its default voice or speaker without saying so.
    refused(
        json!({"text": "Hi.", "voice": "de_DE-nobody-low"}),
        "no voice `de_DE-nobody-low`",
    );
    refused(json!({"text": "Hi.", "speaker": "2"}), "has one speaker");
    refused(
        json!({"text": "Hi.", "rate": 2.0, "length_scale": 0.7}),
        "give one of them",
    );
    refused(
        json!({"text": "Hi.", "format": "webm"}),
        "cannot write `webm`",
    );
}

/// A WAV of `samples` 16-bit mono samples at 22050 Hz, as Piper's server writes it.
fn piper_wav(samples: usize) -> Vec<u8> {
    let spec = WavSpec {
        sample_rate: 22050,
        channels: 1,
        bits_per_sample: 16,
        format: SampleFormat::Int,
    };
    let mut wav = spec.header(samples as u64 * 2).unwrap();
    wav.extend((0..samples).flat_map(|i| ((i % 200) as i16 * 50).to_le_bytes()));
    wav
}

/// A stand-in for the server: its `/info` and `/voices`, and one second of audio for each
/// `/synthesize`, labelled `text/html` as the real server labels it.
fn scripted(
    synthesize: impl Fn(&launcher_testkit::http::Request) -> Reply + Send + Sync + 'static,
) -> HttpServer {
    HttpServer::start(move |req| match req.path.as_str() {
        "/info" => Reply::Respond(Response::json(
            200,
            &json!({"voice": {"name": "en_US-joe-medium", "language": "en-us", "num_speakers": 1}, "last": null}),
        )),
        "/voices" => Reply::Respond(Response::json(
            200,
            &json!({"en_US-joe-medium": {"language": {"code": "en_US"}, "num_speakers": 1, "audio": {"sample_rate": 22050}, "inference": {"length_scale": 1}}}),
        )),
        "/synthesize" => synthesize(req),
        _ => Reply::Respond(Response::new(404)),
    })
}

#[test]
fn long_text_is_spoken_in_pieces_and_joined_into_one_wav() {
    let server = scripted(|_| {
        Reply::Respond(
            Response::new(200)
                .header("Content-Type", "text/html; charset=utf-8")
                .body(piper_wav(22050)),
        )
    });
    let sentence = "This sentence is one of many in a long chapter of a book. ";
    let text = sentence.repeat(PIECE_CHARS * 5 / 2 / sentence.len() + 1);
    let run = speak(&at(server.url()), json!({"text": text, "rate": 1.25}));
    let wav = wav_of(&run, None);
    let pieces = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/synthesize")
        .collect::<Vec<_>>();
    assert_eq!(pieces.len(), 3, "{} characters", text.len());
    assert!((wav.duration - 3.0).abs() < 1e-6, "{wav:?}");
    for piece in &pieces {
        let body: Value = launcher_sdk::serde_json::from_slice(&piece.body).unwrap();
        assert!(body["text"].as_str().unwrap().ends_with("book."), "{body}");
        assert!(body["text"].as_str().unwrap().chars().count() <= PIECE_CHARS);
        assert_eq!(body["length_scale"], 0.8);
        assert_eq!(piece.header("content-type"), Some("application/json"));
    }
    let steps: Vec<&str> = run.progress.iter().map(|p| p.message.as_str()).collect();
    assert!(steps.contains(&"synthesizing piece 3 of 3"), "{steps:?}");
    assert_eq!(run.result.as_ref().unwrap().info["requests"], 3);
}

#[test]
fn long_text_as_mp3_is_encoded_once_from_the_joined_pieces() {
    let server = scripted(|_| Reply::Respond(Response::new(200).body(piper_wav(22050))));
    let sentence = "Another sentence of the chapter, spoken and then encoded. ";
    let text = sentence.repeat(PIECE_CHARS * 5 / 2 / sentence.len() + 1);
    let run = speak(&at(server.url()), json!({"text": text, "format": "mp3"}));
    if let Err(err) = &run.result {
        panic!("{err:?}");
    }
    let (header, mp3) = run.output("audio").unwrap();
    assert_eq!(header.media_type, "audio/mpeg");
    let duration = probe_duration(mp3, "mp3").unwrap();
    assert!((duration - 3.0).abs() < 0.1, "{duration} s, not 3 s");
    assert_eq!(run.result.as_ref().unwrap().info["encoded"], true);
}

#[test]
fn empty_text_never_reaches_the_server() {
    let server = scripted(|_| Reply::Respond(Response::new(500)));
    let run = speak(&at(server.url()), json!({"text": " \n\t "}));
    let err = run.error().unwrap();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    // The SDK refuses an empty required parameter before the plugin sees it; the plugin
    // refuses text that is only whitespace in the same words.
    assert!(err.message.contains("is empty"), "{err:?}");
    assert!(server.requests().is_empty());
}

#[test]
fn an_answer_that_is_not_audio_is_an_error_not_a_file() {
    let server = scripted(|_| {
        Reply::Respond(
            Response::new(200)
                .header("Content-Type", "audio/wav")
                .body("<!doctype html><title>Oops</title>"),
        )
    });
    let run = speak(&at(server.url()), json!({"text": "Hello."}));
    let err = run.error().unwrap();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(err.message.contains("not WAV audio"), "{err:?}");
    assert!(run.output("audio").is_none());
}

#[test]
fn a_server_that_is_not_there_is_explained() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = speak(
        &at(format!("http://127.0.0.1:{port}")),
        json!({"text": "Hello."}),
    );
    let err = run.error().unwrap();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err:?}");
    assert!(
        err.hint.as_deref().unwrap().contains("PIPER_MODEL"),
        "{err:?}"
    );
}

#[test]
fn a_python_without_piper_is_explained() {
    let has_python = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !has_python {
        eprintln!("skipping: python3 is not on PATH");
        return;
    }
    let _one = one_start_at_a_time();
    let dir = std::env::temp_dir().join(format!("launcher-piper-nopiper-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let voice = dir.join("en_US-none-low.onnx");
    std::fs::write(&voice, b"not a model").unwrap();
    std::fs::write(dir.join("en_US-none-low.onnx.json"), b"{}").unwrap();
    // `-I` keeps the user's site-packages (where piper may be) out of this python.
    let script = dir.join("bare-python");
    std::fs::write(&script, "#!/bin/sh\nexec python3 -I \"$@\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let settings = Settings::from_values([
        ("model", voice.to_str().unwrap()),
        ("python", script.to_str().unwrap()),
    ]);
    let run = speak(&settings, json!({"text": "Hello."}));
    std::fs::remove_dir_all(&dir).unwrap();
    let err = run.error().unwrap();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err:?}");
    assert!(err.message.contains("did not start"), "{err:?}");
    assert!(err.message.contains("No module named"), "{err:?}");
    assert!(
        err.hint
            .as_deref()
            .unwrap()
            .contains("pip install piper-tts"),
        "{err:?}"
    );
}

/// A stand-in for `python -m piper.http_server ... --port P`: answers `/info` and `/voices`,
/// and fails every synthesis with a 500 page while logging why, as Flask does.
const FAILING_SERVER: &str = r#"
import http.server, json, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def do_GET(self):
        info = {"voice": {"name": "en_US-test-low", "language": "en-us", "num_speakers": 1}}
        body = json.dumps(info if self.path == "/info" else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        print("ValueError: the voice file is damaged", file=sys.stderr, flush=True)
        self.send_response(500)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", "21")
        self.end_headers()
        self.wfile.write(b"Internal Server Error")
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;

#[test]
fn a_failure_of_its_own_server_quotes_what_the_server_said() {
    let has_python = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !has_python {
        eprintln!("skipping: python3 is not on PATH");
        return;
    }
    let _one = one_start_at_a_time();
    let dir = std::env::temp_dir().join(format!("launcher-piper-failing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let voice = dir.join("en_US-test-low.onnx");
    std::fs::write(&voice, b"not a model").unwrap();
    std::fs::write(dir.join("en_US-test-low.onnx.json"), b"{}").unwrap();
    std::fs::write(dir.join("server.py"), FAILING_SERVER).unwrap();
    // Called as `python -m piper.http_server ARGS`: runs the stand-in with the same ARGS.
    let script = dir.join("python");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nshift 2\nexec python3 {} \"$@\"\n",
            dir.join("server.py").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let settings = Settings::from_values([
        ("model", voice.to_str().unwrap()),
        ("python", script.to_str().unwrap()),
        ("timeout", "5"),
    ]);
    let run = speak(&settings, json!({"text": "Hello."}));
    std::fs::remove_dir_all(&dir).unwrap();
    let err = run.error().unwrap_or_else(|| panic!("{:?}", run.result));
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err:?}");
    assert!(err.message.contains("HTTP 500"), "{err:?}");
    assert!(
        err.message
            .contains("Piper's server said: ValueError: the voice file is damaged"),
        "{err:?}"
    );
    assert!(our_servers().is_empty());
}
