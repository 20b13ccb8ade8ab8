//! azure-tts against the Azure TTS emulator, through the plugin's exported ABI functions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use launcher_plugin_azure_tts::AzureTts;
use launcher_sdk::abi::CallError;
use launcher_sdk::serde_json::{Value, json};
use launcher_sdk::testing::{self, Run};
use launcher_sdk::{ContentKind, ErrorKind, PluginError, Settings};
use launcher_testkit::emulators::azure::{AzureEmulator, MILLIS_PER_CHAR};
use launcher_testkit::http::Request;
use launcher_testkit::media::probe_duration;

const KEY: &str = "0123456789abcdef-emulated-speech-key";

/// The settings as the host passes them: the key marked secret, as the manifest declares.
fn settings(emulator: &AzureEmulator, timeout: &str) -> Settings {
    let mut settings = Settings::default();
    settings.set_secret("key", KEY);
    settings.set("endpoint", emulator.url());
    settings.set("timeout", timeout);
    settings
}

fn tts(emulator: &AzureEmulator, params: Value) -> Run {
    let job = testing::job("tts", "azure-tts", params);
    testing::run::<AzureTts>("azure-tts", &settings(emulator, "5"), job)
}

fn audio(run: &Run) -> (&launcher_sdk::OutputHeader, &[u8]) {
    if let Err(err) = &run.result {
        panic!("the job failed: {err}");
    }
    let (header, bytes) = run.output("audio").expect("an audio output");
    let opened = run
        .outputs
        .iter()
        .filter(|(h, _)| h.name == "audio")
        .count();
    assert_eq!(opened, 1, "the audio is one output, however many requests");
    assert_eq!(run.closed, ["audio"], "the output is closed once complete");
    (header, bytes)
}

fn error(run: &Run) -> &PluginError {
    match &run.result {
        Err(CallError::Plugin(err)) => err,
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

/// A checked WAV: its sample rate and its samples.
struct Wav {
    rate: u32,
    data_len: usize,
}

impl Wav {
    fn parse(bytes: &[u8]) -> Wav {
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(u32_at(4) as usize, bytes.len() - 8, "RIFF size");
        assert_eq!(&bytes[8..16], b"WAVEfmt ");
        assert_eq!(u32_at(16), 16, "fmt size");
        assert_eq!(u16::from_le_bytes([bytes[20], bytes[21]]), 1, "PCM");
        assert_eq!(u16::from_le_bytes([bytes[22], bytes[23]]), 1, "mono");
        let rate = u32_at(24);
        assert_eq!(u32_at(28), rate * 2, "byte rate");
        assert_eq!(u16::from_le_bytes([bytes[34], bytes[35]]), 16, "bits");
        assert_eq!(&bytes[36..40], b"data");
        let data_len = u32_at(40) as usize;
        assert_eq!(data_len, bytes.len() - 44, "data size");
        Wav { rate, data_len }
    }

    fn millis(&self) -> u64 {
        self.data_len as u64 * 1000 / (u64::from(self.rate) * 2)
    }
}

/// Returns the text a synthesis request speaks, checking its SSML on the way.
fn spoken_text(request: &Request) -> (String, String, String) {
    let body = String::from_utf8(request.body.clone()).unwrap();
    let doc = roxmltree::Document::parse(&body).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "speak");
    let lang = root
        .attribute(("http://www.w3.org/XML/1998/namespace", "lang"))
        .unwrap()
        .to_string();
    let voice = root
        .descendants()
        .find(|n| n.tag_name().name() == "voice")
        .unwrap();
    let text: String = voice
        .descendants()
        .filter(|n| n.is_text())
        .map(|n| n.text().unwrap())
        .collect();
    (lang, voice.attribute("name").unwrap().to_string(), text)
}

fn expected_millis(text: &str) -> u64 {
    text.trim().chars().count() as u64 * MILLIS_PER_CHAR
}

#[test]
fn the_manifest_declares_the_tool_its_tasks_and_settings() {
    let manifest = testing::manifest::<AzureTts>().unwrap();
    manifest.validate().unwrap();
    let tool = &manifest.tools[0];
    assert_eq!(tool.id, "azure-tts");
    assert_eq!(tool.categories(), [ContentKind::Audio]);
    assert_eq!(tool.tasks, ["tts", "voices"]);
    assert!(
        tool.cloud,
        "a paid service is never preferred over a local tool"
    );
    assert_eq!(tool.priority, 100);
    assert_eq!(tool.require_one_of, [["region", "endpoint"]]);
    let settings: Vec<(&str, Option<&str>, bool, bool)> = tool
        .settings
        .iter()
        .map(|s| (s.name.as_str(), s.env.as_deref(), s.required, s.secret))
        .collect();
    assert_eq!(
        settings,
        [
            ("key", Some("AZURE_SPEECH_KEY"), true, true),
            ("region", Some("AZURE_SPEECH_REGION"), false, false),
            ("endpoint", Some("AZURE_SPEECH_ENDPOINT"), false, false),
            ("timeout", Some("AZURE_SPEECH_TIMEOUT"), false, false),
        ]
    );
    assert!(tool.custom_tasks.is_empty(), "voices is the standard task");
    let voices = tool.task("voices").unwrap();
    assert!(voices.inputs.is_empty());
    assert_eq!(voices.params[0].name, "language");
    let params: Vec<&str> = tool.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(params, ["rate", "pitch", "style", "style_degree"]);
    for param in &tool.params {
        assert!(param.applies_to("tts"), "{}", param.name);
        assert!(!param.applies_to("voices"), "{}", param.name);
    }
}

#[test]
fn speaks_text_as_a_wav_with_every_header_right() {
    let emulator = AzureEmulator::start(KEY);
    let run = tts(&emulator, json!({"text": "Hello, world."}));
    let (header, bytes) = audio(&run);
    assert_eq!(header.media_type, "audio/wav");
    assert_eq!(header.extension, "wav");
    assert_eq!(header.kind, ContentKind::Audio);
    let wav = Wav::parse(bytes);
    assert_eq!(wav.rate, 24_000);
    assert_eq!(wav.millis(), expected_millis("Hello, world."));

    let requests = emulator.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/cognitiveservices/v1");
    assert_eq!(request.header("Ocp-Apim-Subscription-Key"), Some(KEY));
    assert_eq!(request.header("Content-Type"), Some("application/ssml+xml"));
    assert_eq!(
        request.header("X-Microsoft-OutputFormat"),
        Some("riff-24khz-16bit-mono-pcm")
    );
    assert_eq!(
        request.header("User-Agent"),
        Some(concat!("launcher-azure-tts/", env!("CARGO_PKG_VERSION")))
    );
    let (lang, voice, text) = spoken_text(request);
    assert_eq!(
        (lang.as_str(), voice.as_str(), text.as_str()),
        ("en-US", "en-US-AvaMultilingualNeural", "Hello, world.")
    );
    let info = &run.result.as_ref().unwrap().info;
    assert_eq!(info["voice"], "en-US-AvaMultilingualNeural");
    assert_eq!(info["requests"], 1);
}

#[test]
fn speaks_mp3_and_other_formats_by_name() {
    let emulator = AzureEmulator::start(KEY);
    let run = tts(&emulator, json!({"text": "Hello there", "format": "mp3"}));
    let (header, bytes) = audio(&run);
    assert_eq!(
        (header.media_type.as_str(), header.extension.as_str()),
        ("audio/mpeg", "mp3")
    );
    assert_eq!(&bytes[..2], &[0xFF, 0xF3]);
    assert_eq!(bytes.len() % 288, 0);
    let run = tts(
        &emulator,
        json!({"text": "Hi", "format": "riff-48khz-16bit-mono-pcm"}),
    );
    assert_eq!(Wav::parse(audio(&run).1).rate, 48_000);
    let run = tts(&emulator, json!({"text": "Hi", "format": "ogg"}));
    let (header, bytes) = audio(&run);
    assert_eq!(header.media_type, "audio/ogg");
    assert_eq!(&bytes[..4], b"OggS");
    let formats: Vec<String> = emulator
        .requests()
        .iter()
        .map(|r| r.header("X-Microsoft-OutputFormat").unwrap().to_string())
        .collect();
    assert_eq!(
        formats,
        [
            "audio-24khz-96kbitrate-mono-mp3",
            "riff-48khz-16bit-mono-pcm",
            "ogg-24khz-16bit-mono-opus"
        ]
    );
    let run = tts(&emulator, json!({"text": "Hi", "format": "flac"}));
    assert_eq!(error(&run).kind, ErrorKind::InvalidInput);
    assert_eq!(emulator.requests().len(), 3);
}

#[test]
fn escapes_markup_in_text_and_applies_prosody_and_style() {
    let emulator = AzureEmulator::start(KEY);
    let text = r#"Tom & Jerry <script> "quoted" 'single' </speak>"#;
    let run = tts(
        &emulator,
        json!({"text": text, "voice": "en-US-JennyNeural", "rate": 1.5, "pitch": 0.8,
               "style": "cheerful"}),
    );
    audio(&run);
    let request = &emulator.synthesis_requests()[0];
    let (_, voice, spoken) = spoken_text(request);
    assert_eq!(voice, "en-US-JennyNeural");
    assert_eq!(spoken, text);
    let body = request.body_text();
    assert!(body.contains(
        "Tom &amp; Jerry &lt;script&gt; &quot;quoted&quot; &apos;single&apos; &lt;/speak&gt;"
    ));
    assert!(body.contains("<mstts:express-as style=\"cheerful\">"));
    assert!(body.contains("<prosody rate=\"+50%\" pitch=\"-20%\">"));
    // The emulator speaks +50% faster, so the audio is two thirds as long.
    let wav = Wav::parse(audio(&run).1);
    assert_eq!(wav.millis(), expected_millis(text) * 2 / 3);
}

#[test]
fn speaks_chinese_with_a_chinese_voice() {
    let emulator = AzureEmulator::start(KEY);
    let run = tts(
        &emulator,
        json!({"text": "你好，世界！", "voice": "zh-CN-YunxiNeural"}),
    );
    Wav::parse(audio(&run).1);
    // Without a voice, Chinese text gets a native Chinese voice.
    let run = tts(&emulator, json!({"text": "今天天气很好。"}));
    Wav::parse(audio(&run).1);
    let run = tts(
        &emulator,
        json!({"text": "俺是河南嘞", "voice": "zh-CN-henan-YundengNeural"}),
    );
    Wav::parse(audio(&run).1);
    let seen: Vec<(String, String, String)> = emulator
        .synthesis_requests()
        .iter()
        .map(spoken_text)
        .collect();
    let expect = |l: &str, v: &str, t: &str| (l.to_string(), v.to_string(), t.to_string());
    assert_eq!(
        seen,
        [
            expect("zh-CN", "zh-CN-YunxiNeural", "你好，世界！"),
            expect("zh-CN", "zh-CN-XiaoxiaoNeural", "今天天气很好。"),
            expect("zh-CN-henan", "zh-CN-henan-YundengNeural", "俺是河南嘞"),
        ]
    );
}

#[test]
fn a_wrong_key_is_unauthorized_at_once_and_never_shown() {
    let emulator = AzureEmulator::start("the-real-key");
    let run = tts(&emulator, json!({"text": "Hello"}));
    let err = error(&run);
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert_eq!(
        err.message,
        "the service rejected the credentials (HTTP 401)"
    );
    assert!(err.hint.as_deref().unwrap().contains("AZURE_SPEECH_KEY"));
    assert_eq!(emulator.requests().len(), 1, "a 401 is not retried");
    let everything = format!("{err:?} {:?} {:?}", run.logs, run.outputs);
    assert!(!everything.contains(KEY));
    assert!(
        run.outputs.is_empty(),
        "no output is opened for a refused job"
    );
}

#[test]
fn waits_as_told_on_429_then_succeeds() {
    let emulator = AzureEmulator::start(KEY);
    emulator.fail_next(429, &[("Retry-After", "1")]);
    let started = Instant::now();
    let run = tts(&emulator, json!({"text": "Hello again"}));
    Wav::parse(audio(&run).1);
    assert!(started.elapsed() >= Duration::from_millis(950));
    assert_eq!(emulator.requests().len(), 2);
    assert!(
        run.logs.iter().any(|l| l.message.contains("HTTP 429")),
        "{:?}",
        run.logs
    );
    assert!(run.logs.iter().all(|l| !l.message.contains(KEY)));
}

/// Synthesis is billed per character and the service takes no idempotency key, so a request
/// that may have been synthesized is never sent twice.
#[test]
fn a_500_is_not_resent_because_synthesis_is_billed() {
    let emulator = AzureEmulator::start(KEY);
    emulator.fail_next(500, &[]);
    let run = tts(&emulator, json!({"text": "Hello", "format": "mp3"}));
    let err = error(&run);
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err:?}");
    assert!(
        err.message.contains("may have reached the service"),
        "{}",
        err.message
    );
    assert_eq!(emulator.requests().len(), 1);
    assert!(run.outputs.is_empty());
    // The same for WAV, which is fetched whole rather than streamed.
    emulator.fail_next(503, &[]);
    let run = tts(&emulator, json!({"text": "Hello"}));
    assert_eq!(error(&run).kind, ErrorKind::Unavailable);
    assert_eq!(emulator.requests().len(), 2);
}

#[test]
fn listing_voices_is_retried_after_a_500() {
    let emulator = AzureEmulator::start(KEY);
    emulator.fail_next(500, &[]);
    let job = testing::job("voices", "azure-tts", json!({}));
    let run = testing::run::<AzureTts>("azure-tts", &settings(&emulator, "5"), job);
    assert!(!voices_of(&run).is_empty());
    assert_eq!(emulator.requests().len(), 2);
}

#[test]
fn persistent_rate_limiting_ends_in_a_rate_limited_error() {
    let emulator = AzureEmulator::start(KEY);
    for _ in 0..4 {
        emulator.fail_next(429, &[("Retry-After", "0")]);
    }
    let run = tts(&emulator, json!({"text": "Hello"}));
    let err = error(&run);
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.retry_after_secs, Some(0.0));
    assert_eq!(emulator.requests().len(), 4);
}

#[test]
fn a_hung_synthesis_times_out_and_is_not_resent() {
    let emulator = AzureEmulator::start(KEY);
    emulator.hang_next();
    let job = testing::job("tts", "azure-tts", json!({"text": "Hello"}));
    let started = Instant::now();
    let run = testing::run::<AzureTts>("azure-tts", &settings(&emulator, "0.4"), job);
    let err = error(&run);
    assert_eq!(err.kind, ErrorKind::Timeout, "{}", err.message);
    assert!(err.message.contains("400 ms"), "{}", err.message);
    assert_eq!(emulator.requests().len(), 1);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_hung_voice_listing_times_out_after_bounded_retries() {
    let emulator = AzureEmulator::start(KEY);
    for _ in 0..4 {
        emulator.hang_next();
    }
    let job = testing::job("voices", "azure-tts", json!({}));
    let started = Instant::now();
    let run = testing::run::<AzureTts>("azure-tts", &settings(&emulator, "0.4"), job);
    let err = error(&run);
    assert_eq!(err.kind, ErrorKind::Timeout, "{}", err.message);
    assert_eq!(emulator.requests().len(), 4);
    assert!(started.elapsed() < Duration::from_secs(8));

    emulator.hang_next();
    let job = testing::job("voices", "azure-tts", json!({}));
    let run = testing::run::<AzureTts>("azure-tts", &settings(&emulator, "0.4"), job);
    assert!(!voices_of(&run).is_empty());
    assert_eq!(emulator.requests().len(), 6);
}

#[test]
fn cancelling_stops_a_waiting_job() {
    let emulator = AzureEmulator::start(KEY);
    emulator.hang_next();
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        flag.store(true, Ordering::SeqCst);
    });
    let started = Instant::now();
    let job = testing::job("tts", "azure-tts", json!({"text": "Hello"}));
    let run =
        testing::run_with_cancel::<AzureTts>("azure-tts", &settings(&emulator, "30"), job, cancel);
    canceller.join().unwrap();
    assert_eq!(error(&run).kind, ErrorKind::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(emulator.requests().len(), 1);
}

/// About 7000 characters of sentences, so three requests.
fn long_english() -> String {
    (1..=120)
        .map(|i| format!("This is sentence number {i}, which is long enough to matter. "))
        .collect()
}

#[test]
fn long_text_is_split_at_sentences_and_joined_into_one_wav() {
    let emulator = AzureEmulator::start(KEY);
    let text = long_english();
    let run = tts(&emulator, json!({"text": text}));
    let wav = Wav::parse(audio(&run).1);
    let requests = emulator.synthesis_requests();
    assert_eq!(requests.len(), 3);
    let parts: Vec<String> = requests.iter().map(|r| spoken_text(r).2).collect();
    for part in &parts {
        assert!(part.chars().count() <= 3000);
        assert!(part.ends_with("matter."), "{part}");
    }
    assert_eq!(parts.join(" "), text.trim());
    let total: u64 = parts.iter().map(|p| expected_millis(p)).sum();
    assert_eq!(wav.millis(), total);
    let info = &run.result.as_ref().unwrap().info;
    assert_eq!(info["requests"], 3);
    assert_eq!(run.progress.len(), 3);
}

#[test]
fn long_chinese_mp3_is_asked_for_as_pcm_and_encoded_once() {
    let emulator = AzureEmulator::start(KEY);
    let text = "这是一个足够长的中文句子，用来测试分段。".repeat(120);
    let run = tts(
        &emulator,
        json!({"text": text, "voice": "zh-CN-XiaoxiaoNeural", "format": "mp3"}),
    );
    let (header, mp3) = audio(&run);
    assert_eq!(header.media_type, "audio/mpeg");
    let requests = emulator.synthesis_requests();
    assert!(requests.len() >= 3, "{} requests", requests.len());
    let parts: Vec<String> = requests.iter().map(|r| spoken_text(r).2).collect();
    assert!(parts.iter().all(|p| p.ends_with('。')));
    assert_eq!(parts.concat(), text);
    // The parts come as PCM at the MP3's rate; the MP3 is one stream, as long as all of them.
    assert!(
        requests
            .iter()
            .all(|r| { r.header("X-Microsoft-OutputFormat") == Some("raw-24khz-16bit-mono-pcm") })
    );
    let total: u64 = parts.iter().map(|p| expected_millis(p)).sum();
    let duration = probe_duration(mp3, "mp3").unwrap();
    assert!(
        (duration - total as f64 / 1000.0).abs() < 0.1,
        "{duration} s, expected {total} ms"
    );
    assert_eq!(
        run.result.as_ref().unwrap().info["duration_secs"],
        total as f64 / 1000.0
    );
}

#[test]
fn long_ogg_is_one_opus_stream_of_the_right_length() {
    let emulator = AzureEmulator::start(KEY);
    let text = long_english();
    let run = tts(&emulator, json!({"text": text, "format": "ogg"}));
    let (header, ogg) = audio(&run);
    assert_eq!(header.media_type, "audio/ogg");
    let requests = emulator.synthesis_requests();
    assert_eq!(requests.len(), 3);
    let total: u64 = requests
        .iter()
        .map(|r| expected_millis(&spoken_text(r).2))
        .sum();
    // One logical stream: ffprobe sees a single audio stream, not a chain of three.
    let duration = probe_duration(ogg, "ogg").unwrap();
    assert!(
        (duration - total as f64 / 1000.0).abs() < 0.1,
        "{duration} s, expected {total} ms"
    );
}

#[test]
fn long_text_in_a_format_that_cannot_be_joined_is_refused() {
    let emulator = AzureEmulator::start(KEY);
    let run = tts(&emulator, json!({"text": long_english(), "format": "webm"}));
    let err = error(&run);
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("cannot be joined"), "{}", err.message);
    assert!(err.hint.as_deref().unwrap().contains("--format"));
    assert!(emulator.requests().is_empty());
}

/// Returns the voices a successful `voices` job listed, checking the standard shape.
fn voices_of(run: &Run) -> Vec<Value> {
    if let Err(err) = &run.result {
        panic!("the job failed: {err}");
    }
    let (header, bytes) = run.output("voices").expect("a voices output");
    assert_eq!(header.kind, ContentKind::Text);
    assert_eq!(header.media_type, "application/json");
    assert!(run.closed.contains(&"voices".to_string()));
    let list: Vec<Value> = launcher_sdk::serde_json::from_slice(bytes).unwrap();
    for voice in &list {
        for field in ["id", "name", "language", "locale", "gender"] {
            assert!(voice[field].is_string(), "{field} missing from {voice}");
        }
        assert!(voice["styles"].is_array(), "{voice}");
    }
    list
}

fn voices(emulator: &AzureEmulator, params: Value) -> Run {
    let job = testing::job("voices", "azure-tts", params);
    testing::run::<AzureTts>("azure-tts", &settings(emulator, "5"), job)
}

#[test]
fn lists_voices_as_json() {
    let emulator = AzureEmulator::start(KEY);
    let all = voices_of(&voices(&emulator, json!({})));
    let xiaoxiao = all
        .iter()
        .find(|v| v["id"] == "zh-CN-XiaoxiaoNeural")
        .expect("Xiaoxiao is listed");
    assert_eq!(xiaoxiao["name"], "Xiaoxiao");
    assert_eq!(xiaoxiao["local_name"], "晓晓");
    assert_eq!(xiaoxiao["language"], "zh");
    assert_eq!(xiaoxiao["locale"], "zh-CN");
    assert_eq!(xiaoxiao["gender"], "female");
    let styles = xiaoxiao["styles"].as_array().unwrap();
    assert!(styles.contains(&json!("cheerful")), "{styles:?}");
    assert!(all.iter().any(|v| v["id"] == "en-US-AvaMultilingualNeural"));
    let request = &emulator.requests()[0];
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/cognitiveservices/voices/list");
    assert_eq!(request.header("Ocp-Apim-Subscription-Key"), Some(KEY));
}

#[test]
fn voices_filter_by_language_or_locale() {
    let emulator = AzureEmulator::start(KEY);
    let ids = |list: &[Value]| -> Vec<String> {
        list.iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect()
    };
    let mainland = voices_of(&voices(&emulator, json!({"language": "zh-cn"})));
    assert!(mainland.len() >= 7, "{}", mainland.len());
    assert!(ids(&mainland).iter().all(|id| id.starts_with("zh-CN-")));
    assert!(ids(&mainland).contains(&"zh-CN-henan-YundengNeural".to_string()));
    let chinese = voices_of(&voices(&emulator, json!({"language": "zh"})));
    assert!(chinese.len() > mainland.len());
    assert!(chinese.iter().all(|v| v["language"] == "zh"));
    assert!(ids(&chinese).iter().all(|id| id.starts_with("zh-")));

    let run = voices(&emulator, json!({"language": "xx"}));
    assert_eq!(error(&run).kind, ErrorKind::InvalidInput);
    // The old name of the filter is refused by the manifest.
    let run = voices(&emulator, json!({"locale": "zh-CN"}));
    let err = error(&run);
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("`locale`"), "{}", err.message);
}

#[test]
fn speech_params_are_refused_for_voices_before_calling_the_service() {
    let emulator = AzureEmulator::start(KEY);
    for params in [
        json!({"rate": 1.5}),
        json!({"style": "cheerful"}),
        json!({"style_degree": 1.0}),
        json!({"pitch": 1.0}),
        json!({"text": "Hi"}),
    ] {
        let run = voices(&emulator, params.clone());
        let err = error(&run);
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{params}");
        assert!(err.message.contains("not a parameter"), "{}", err.message);
    }
    assert!(emulator.requests().is_empty());
}

#[test]
fn refuses_bad_input_before_calling_the_service() {
    let emulator = AzureEmulator::start(KEY);
    for params in [
        json!({"text": "   "}),
        json!({"text": "Hi", "rate": 3.0}),
        json!({"text": "Hi", "pitch": 1.8}),
        json!({"text": "Hi", "voice": "Xiaoxiao"}),
        json!({"text": "Hi", "style_degree": 0.0}),
        json!({"text": "Hi", "rate": "fast"}),
    ] {
        let run = tts(&emulator, params.clone());
        assert_eq!(error(&run).kind, ErrorKind::InvalidInput, "{params}");
    }
    assert!(emulator.requests().is_empty());
    // An unknown voice is the service's call; its 400 is invalid input with a hint.
    let run = tts(
        &emulator,
        json!({"text": "Hi", "voice": "en-US-NobodyNeural"}),
    );
    let err = error(&run);
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("unknown voice"), "{}", err.message);
    assert!(err.hint.as_deref().unwrap().contains("voices"));
}

#[test]
fn settings_are_checked_when_the_tool_is_created() {
    let job = || testing::job("tts", "azure-tts", json!({"text": "Hi"}));
    let no_key = Settings::from_values([("region", "eastus")]);
    let run = testing::run::<AzureTts>("azure-tts", &no_key, job());
    let err = error(&run);
    assert!(err.message.contains("`key`"), "{}", err.message);
    assert!(err.hint.as_deref().unwrap().contains("AZURE_SPEECH_KEY"));

    let no_place = Settings::from_values([("key", KEY)]);
    let run = testing::run::<AzureTts>("azure-tts", &no_place, job());
    let err = error(&run);
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(
        err.message.contains("`region` or `endpoint`"),
        "{}",
        err.message
    );
    assert!(err.hint.as_deref().unwrap().contains("AZURE_SPEECH_REGION"));
    assert!(!format!("{err:?}").contains(KEY));
}
