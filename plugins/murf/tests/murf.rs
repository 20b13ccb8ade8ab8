//! murf against the Murf emulator, through the plugin's exported ABI functions.

use launcher_plugin_murf::{MAX_PIECE_CHARS, Murf};
use launcher_sdk::abi::CallError;
use launcher_sdk::media::Wav;
use launcher_sdk::serde_json::{Value, json};
use launcher_sdk::testing::{self, Run};
use launcher_sdk::{ContentKind, ErrorKind, PluginError, Settings};
use launcher_testkit::emulators::murf::{
    AUDIO_PREFIX, GENERATE_PATH, MurfEmulator, STREAM_PATH, spoken_millis,
};
use launcher_testkit::media::{mp3_silence, probe_duration};
use launcher_testkit::text::mixed_chinese_english;

const KEY: &str = "murf-0123456789abcdef-emulated-key";

fn settings(emulator: &MurfEmulator) -> Settings {
    let mut settings = Settings::default();
    settings.set_secret("key", KEY);
    settings.set("base_url", emulator.url());
    settings.set("timeout", "10");
    settings
}

fn run(emulator: &MurfEmulator, task: &str, params: Value) -> Run {
    let job = testing::job(task, "murf", params);
    testing::run::<Murf>("murf", &settings(emulator), job)
}

fn tts(emulator: &MurfEmulator, params: Value) -> Run {
    run(emulator, "tts", params)
}

fn audio(run: &Run) -> (&launcher_sdk::OutputHeader, &[u8]) {
    if let Err(err) = &run.result {
        panic!("the job failed: {err}");
    }
    let (header, bytes) = run.output("audio").expect("an audio output");
    assert_eq!(run.outputs.len(), 1, "one output, however many requests");
    assert_eq!(run.closed, ["audio"]);
    (header, bytes)
}

fn error(run: &Run) -> &PluginError {
    match &run.result {
        Err(CallError::Plugin(err)) => err,
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

/// About 20,000 characters of mixed Chinese and English sentences.
fn long_mixed() -> String {
    mixed_chinese_english(20_000)
}

#[test]
fn the_manifest_declares_tts_and_voices_with_settings() {
    let manifest = testing::manifest::<Murf>().unwrap();
    manifest.validate().unwrap();
    let tool = &manifest.tools[0];
    assert_eq!(tool.id, "murf");
    assert_eq!(tool.tasks, ["tts", "voices"]);
    assert_eq!(tool.categories(), [ContentKind::Audio]);
    let envs: Vec<&str> = tool
        .settings
        .iter()
        .filter_map(|s| s.env.as_deref())
        .collect();
    assert_eq!(
        envs,
        [
            "MURF_API_KEY",
            "MURF_REGION",
            "MURF_BASE_URL",
            "MURF_TIMEOUT"
        ]
    );
    assert!(tool.settings[0].secret && tool.settings[0].required);
}

#[test]
fn generates_and_fetches_the_audio_file_without_the_key() {
    let emulator = MurfEmulator::start(KEY);
    let run = tts(
        &emulator,
        json!({"text": "Hello there.", "voice": "en-US-natalie", "rate": 1.2, "pitch": 0.9,
               "style": "Promo", "locale": "en-US"}),
    );
    let (header, bytes) = audio(&run);
    assert_eq!(header.media_type, "audio/wav");
    let wav = Wav::parse(bytes).unwrap();
    assert_eq!(wav.spec.sample_rate, 24_000);
    assert_eq!(
        (wav.duration_secs() * 1000.0).round() as u64,
        spoken_millis("Hello there.", 20)
    );
    let generate = &emulator.requests_to(GENERATE_PATH)[0];
    assert_eq!(generate.header("api-key"), Some(KEY));
    assert_eq!(generate.header("Content-Type"), Some("application/json"));
    let body = &emulator.bodies()[0];
    assert_eq!(body["voiceId"], "en-US-natalie");
    assert_eq!(body["format"], "WAV");
    assert_eq!(body["rate"], 20);
    assert_eq!(body["pitch"], -10);
    assert_eq!(body["style"], "Promo");
    assert_eq!(body["sampleRate"], 24_000);
    assert!(body.get("encodeAsBase64").is_none());
    let fetches: Vec<_> = emulator
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with(AUDIO_PREFIX))
        .collect();
    assert_eq!(fetches.len(), 1);
    assert_eq!(
        fetches[0].header("api-key"),
        None,
        "the key stays with the API"
    );
}

#[test]
fn zero_retention_takes_the_audio_from_the_answer() {
    let emulator = MurfEmulator::start(KEY);
    let run = tts(
        &emulator,
        json!({"text": "Keep nothing.", "format": "mp3", "zero_retention": true}),
    );
    let (header, bytes) = audio(&run);
    assert_eq!(header.media_type, "audio/mpeg");
    assert_eq!(
        bytes,
        mp3_silence(24_000, 64, spoken_millis("Keep nothing.", 0))
    );
    assert_eq!(emulator.bodies()[0]["encodeAsBase64"], true);
    assert_eq!(emulator.kept_files(), 0);
    assert_eq!(emulator.requests().len(), 1, "no file to fetch");
}

#[test]
fn streaming_writes_the_chunked_audio_as_it_comes() {
    let emulator = MurfEmulator::start(KEY);
    let text = "A sentence that lasts a while when it is spoken aloud. ".repeat(20);
    let run = tts(
        &emulator,
        json!({"text": text, "format": "pcm", "stream": true, "sample_rate": 16000}),
    );
    let (header, bytes) = audio(&run);
    assert_eq!(header.extension, "pcm");
    assert_eq!(
        bytes.len() as u64,
        spoken_millis(text.trim(), 0) * 32,
        "16-bit mono at 16 kHz"
    );
    assert!(run.writes.len() > 1, "written as it came");
    assert_eq!(emulator.requests_to(STREAM_PATH).len(), 1);
}

#[test]
fn a_spent_quota_is_402_and_never_retried() {
    let emulator = MurfEmulator::start(KEY);
    emulator.set_quota(5);
    let run = tts(&emulator, json!({"text": "Too long for the quota."}));
    let err = error(&run);
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert!(err.message.contains("402"), "{}", err.message);
    assert!(
        err.hint
            .as_deref()
            .unwrap()
            .contains("waiting will not help")
    );
    assert_eq!(emulator.requests().len(), 1);
    assert!(run.outputs.is_empty());
}

#[test]
fn a_wrong_key_is_unauthorized_and_never_shown() {
    let emulator = MurfEmulator::start("the-right-key");
    let run = tts(&emulator, json!({"text": "Hello."}));
    let err = error(&run);
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert!(err.hint.as_deref().unwrap().contains("MURF_API_KEY"));
    assert!(!format!("{err:?}").contains(KEY));
    assert_eq!(emulator.requests().len(), 1);
}

#[test]
fn a_500_on_synthesis_is_not_resent_but_a_file_fetch_is() {
    let emulator = MurfEmulator::start(KEY);
    emulator.fail_next(500, "internal error");
    let run = tts(&emulator, json!({"text": "Hello."}));
    assert_eq!(error(&run).kind, ErrorKind::Unavailable);
    assert_eq!(
        emulator.requests().len(),
        1,
        "billed synthesis is not resent"
    );
    // Fetching the file is a GET, so a failure there is retried without synthesizing again.
    let emulator = MurfEmulator::start(KEY);
    emulator.fail_next_download(503);
    let run = tts(&emulator, json!({"text": "Hello."}));
    audio(&run);
    assert_eq!(emulator.requests_to(GENERATE_PATH).len(), 1);
    let fetches = emulator
        .requests()
        .iter()
        .filter(|r| r.path.starts_with(AUDIO_PREFIX))
        .count();
    assert_eq!(fetches, 2);
}

#[test]
fn bad_input_is_refused_before_anything_is_sent() {
    let emulator = MurfEmulator::start(KEY);
    for params in [
        json!({"text": "Hi", "sample_rate": 16000}),
        json!({"text": "Hi", "format": "webm"}),
        json!({"text": "Hi", "format": "m4a", "stream": true}),
        json!({"text": long_mixed(), "stream": true}),
        json!({"text": " "}),
    ] {
        let run = tts(&emulator, params.clone());
        assert_eq!(error(&run).kind, ErrorKind::InvalidInput, "{params}");
    }
    assert!(emulator.requests().is_empty());
    // A style the voice lacks is the service's to refuse, with a hint.
    let run = tts(&emulator, json!({"text": "Hi", "style": "Angry"}));
    let err = error(&run);
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("Angry"), "{}", err.message);
    assert!(err.hint.as_deref().unwrap().contains("voices"));
}

#[test]
fn voices_are_listed_with_locale_gender_and_styles() {
    let emulator = MurfEmulator::start(KEY);
    let run = run(&emulator, "voices", json!({}));
    let voices: Vec<Value> =
        launcher_sdk::serde_json::from_slice(&run.output("voices").unwrap().1).unwrap();
    assert_eq!(voices.len(), 4);
    let natalie = voices.iter().find(|v| v["id"] == "en-US-natalie").unwrap();
    assert_eq!(natalie["name"], "Natalie");
    assert_eq!(natalie["language"], "en");
    assert_eq!(natalie["locale"], "en-US");
    assert_eq!(natalie["gender"], "female");
    assert_eq!(natalie["styles"][0], "Promo");
    let chinese = self::run(&emulator, "voices", json!({"language": "zh"}));
    let voices: Vec<Value> =
        launcher_sdk::serde_json::from_slice(&chinese.output("voices").unwrap().1).unwrap();
    let ids: Vec<&str> = voices.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["en-US-natalie", "zh-CN-tao"]);
    assert_eq!(
        emulator.requests()[0].header("api-key"),
        Some(KEY),
        "listing needs the key too"
    );
}

#[test]
fn long_mixed_text_as_ogg_is_one_stream_of_the_sum_of_the_pieces() {
    let emulator = MurfEmulator::start(KEY);
    let text = long_mixed();
    let run = tts(
        &emulator,
        json!({"text": text, "voice": "zh-CN-tao", "format": "ogg"}),
    );
    let (header, bytes) = audio(&run);
    assert_eq!(header.media_type, "audio/ogg");
    let pieces: Vec<String> = emulator
        .bodies()
        .iter()
        .map(|b| b["text"].as_str().unwrap().to_string())
        .collect();
    assert!(pieces.len() >= 7, "{} pieces", pieces.len());
    assert!(pieces.iter().all(|p| p.chars().count() <= MAX_PIECE_CHARS));
    assert!(emulator.bodies().iter().all(|b| b["format"] == "WAV"));
    let total: u64 = pieces.iter().map(|p| spoken_millis(p, 0)).sum();
    let duration = probe_duration(bytes, "ogg").unwrap();
    assert!(
        (duration - total as f64 / 1000.0).abs() < 0.1,
        "{duration} s, expected {total} ms"
    );
    assert_eq!(run.progress.len(), pieces.len() + 1);
}
