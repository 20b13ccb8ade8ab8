//! minimax against the MiniMax emulator, through the plugin's exported ABI functions.

use launcher_plugin_minimax::{MAX_PIECE_CHARS, MiniMax};
use launcher_sdk::abi::CallError;
use launcher_sdk::media::Wav;
use launcher_sdk::serde_json::{Value, json};
use launcher_sdk::testing::{self, Run};
use launcher_sdk::{ContentKind, ErrorKind, PluginError, Settings};
use launcher_testkit::emulators::minimax::{MiniMaxEmulator, spoken_millis};
use launcher_testkit::media::{mp3_silence, probe_duration};
use launcher_testkit::text::mixed_chinese_english;

const KEY: &str = "mm-0123456789abcdef-emulated-key";

fn settings(emulator: &MiniMaxEmulator) -> Settings {
    let mut settings = Settings::default();
    settings.set_secret("key", KEY);
    settings.set("base_url", emulator.url());
    settings.set("timeout", "10");
    settings
}

fn tts_with(settings: &Settings, params: Value) -> Run {
    let job = testing::job("tts", "minimax", params);
    testing::run::<MiniMax>("minimax", settings, job)
}

fn tts(emulator: &MiniMaxEmulator, params: Value) -> Run {
    tts_with(&settings(emulator), params)
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

/// Returns the text of each synthesis request.
fn texts(emulator: &MiniMaxEmulator) -> Vec<String> {
    emulator
        .bodies()
        .iter()
        .map(|b| b["text"].as_str().unwrap().to_string())
        .collect()
}

/// About 20,000 characters of mixed Chinese and English sentences.
fn long_mixed() -> String {
    mixed_chinese_english(20_000)
}

#[test]
fn the_manifest_declares_the_tool_and_its_settings() {
    let manifest = testing::manifest::<MiniMax>().unwrap();
    manifest.validate().unwrap();
    let tool = &manifest.tools[0];
    assert_eq!(tool.id, "minimax");
    assert_eq!(tool.tasks, ["tts"]);
    assert_eq!(tool.categories(), [ContentKind::Audio]);
    let envs: Vec<&str> = tool
        .settings
        .iter()
        .filter_map(|s| s.env.as_deref())
        .collect();
    assert_eq!(
        envs,
        [
            "MINIMAX_API_KEY",
            "MINIMAX_GROUP_ID",
            "MINIMAX_REGION",
            "MINIMAX_BASE_URL",
            "MINIMAX_TIMEOUT"
        ]
    );
    assert!(tool.settings[0].secret && tool.settings[0].required);
}

#[test]
fn speaks_a_wav_decoded_from_hex_with_every_setting_sent() {
    let emulator = MiniMaxEmulator::start(KEY);
    let run = tts(
        &emulator,
        json!({"text": "你好，世界。Hello!", "voice": "female-shaonv", "rate": 1.25,
               "pitch": 2.0, "volume": 3.0, "emotion": "happy", "sample_rate": 16000}),
    );
    let (header, bytes) = audio(&run);
    assert_eq!(
        (header.media_type.as_str(), header.extension.as_str()),
        ("audio/wav", "wav")
    );
    let wav = Wav::parse(bytes).unwrap();
    assert!(wav.exact_sizes);
    assert_eq!(wav.spec.sample_rate, 16_000);
    let millis = spoken_millis("你好，世界。Hello!", 1.25);
    assert_eq!((wav.duration_secs() * 1000.0).round() as u64, millis);
    let requests = emulator.requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(
        req.header("Authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(req.header("Content-Type"), Some("application/json"));
    let body = &emulator.bodies()[0];
    assert_eq!(body["model"], "speech-02-hd");
    assert_eq!(body["voice_setting"]["voice_id"], "female-shaonv");
    assert_eq!(body["voice_setting"]["speed"], 1.25);
    assert_eq!(body["voice_setting"]["pitch"], 12);
    assert_eq!(body["voice_setting"]["vol"], 3.0);
    assert_eq!(body["voice_setting"]["emotion"], "happy");
    assert_eq!(body["audio_setting"]["format"], "wav");
    assert_eq!(body["output_format"], "hex");
    let info = &run.result.as_ref().unwrap().info;
    assert_eq!(info["requests"], 1);
}

#[test]
fn mp3_of_one_request_is_passed_on_as_the_service_made_it() {
    let emulator = MiniMaxEmulator::start(KEY);
    let run = tts(
        &emulator,
        json!({"text": "Hello there.", "format": "mp3", "sample_rate": 24000, "bitrate": 64000}),
    );
    let (header, bytes) = audio(&run);
    assert_eq!(header.media_type, "audio/mpeg");
    assert_eq!(
        bytes,
        mp3_silence(24_000, 64, spoken_millis("Hello there.", 1.0))
    );
    assert_eq!(emulator.bodies()[0]["stream"], false);
}

#[test]
fn streaming_writes_hex_chunks_once_without_the_repeated_whole() {
    let emulator = MiniMaxEmulator::start(KEY);
    let text = "A sentence that lasts a while when it is spoken aloud. ".repeat(20);
    let run = tts(
        &emulator,
        json!({"text": text, "format": "pcm", "stream": true, "sample_rate": 16000}),
    );
    let (header, bytes) = audio(&run);
    assert_eq!(header.extension, "pcm");
    // 16-bit mono at 16 kHz: 32 bytes a millisecond, and not twice over.
    let millis = spoken_millis(text.trim(), 1.0);
    assert_eq!(bytes.len() as u64, millis * 32);
    assert_eq!(emulator.bodies()[0]["stream"], true);
}

#[test]
fn streaming_is_refused_for_wav_and_for_text_of_several_requests() {
    let emulator = MiniMaxEmulator::start(KEY);
    let run = tts(&emulator, json!({"text": "Hi.", "stream": true}));
    assert_eq!(error(&run).kind, ErrorKind::InvalidInput);
    let run = tts(
        &emulator,
        json!({"text": long_mixed(), "stream": true, "format": "mp3"}),
    );
    let err = error(&run);
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.hint.as_deref().unwrap().contains("leave out --stream"));
    assert!(emulator.requests().is_empty());
}

#[test]
fn a_rate_limit_in_a_200_is_resent_and_then_succeeds() {
    let emulator = MiniMaxEmulator::start(KEY);
    emulator.fail_next(1002, "rate limit exceeded(RPM)");
    let run = tts(&emulator, json!({"text": "Hello."}));
    audio(&run);
    assert_eq!(emulator.requests().len(), 2);
    assert!(
        run.logs.iter().any(|l| l.message.contains("rate limiting")),
        "{:?}",
        run.logs
    );
}

#[test]
fn errors_in_a_200_map_to_kinds_and_are_not_resent() {
    let cases = [
        (1004, ErrorKind::Unauthorized, "MINIMAX_API_KEY"),
        (1008, ErrorKind::RateLimited, "top up"),
        (1026, ErrorKind::InvalidInput, "rephrase"),
        (2013, ErrorKind::InvalidInput, "--voice"),
        (1000, ErrorKind::Unavailable, ""),
    ];
    for (code, kind, hint) in cases {
        let emulator = MiniMaxEmulator::start(KEY);
        emulator.fail_next(code, "emulated");
        let run = tts(&emulator, json!({"text": "Hello."}));
        let err = error(&run);
        assert_eq!(err.kind, kind, "{code}: {err}");
        assert!(err.message.contains(&code.to_string()), "{}", err.message);
        assert!(
            err.hint.as_deref().unwrap_or_default().contains(hint),
            "{code}: {err:?}"
        );
        assert!(!err.message.contains(KEY));
        assert_eq!(emulator.requests().len(), 1, "{code} is not resent");
        assert!(run.outputs.is_empty(), "{code} leaves no output");
    }
}

#[test]
fn a_wrong_key_is_unauthorized_and_never_shown() {
    let emulator = MiniMaxEmulator::start("the-right-key");
    let run = tts(&emulator, json!({"text": "Hello."}));
    let err = error(&run);
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert!(!format!("{err:?}").contains(KEY));
}

#[test]
fn a_group_id_goes_in_the_query() {
    let emulator = MiniMaxEmulator::start_with_group(KEY, "1782658");
    let mut with_group = settings(&emulator);
    with_group.set("group_id", "1782658");
    audio(&tts_with(&with_group, json!({"text": "Hello."})));
    let run = tts(&emulator, json!({"text": "Hello."}));
    assert_eq!(error(&run).kind, ErrorKind::Unauthorized);
}

#[test]
fn bad_parameters_are_refused_before_anything_is_sent() {
    let emulator = MiniMaxEmulator::start(KEY);
    for params in [
        json!({"text": "Hi", "sample_rate": 48000}),
        json!({"text": "Hi", "bitrate": 100000}),
        json!({"text": "Hi", "format": "webm"}),
        json!({"text": "  "}),
    ] {
        let run = tts(&emulator, params.clone());
        assert_eq!(error(&run).kind, ErrorKind::InvalidInput, "{params}");
    }
    assert!(emulator.requests().is_empty());
}

#[test]
fn long_mixed_text_is_spoken_in_wav_pieces_and_joined_into_one_wav() {
    let emulator = MiniMaxEmulator::start(KEY);
    let text = long_mixed();
    let run = tts(&emulator, json!({"text": text, "sample_rate": 16000}));
    let (_, bytes) = audio(&run);
    let pieces = texts(&emulator);
    assert!(pieces.len() >= 7, "{} pieces", pieces.len());
    for piece in &pieces {
        assert!(piece.chars().count() <= MAX_PIECE_CHARS);
        assert!(piece.ends_with('。'), "{piece}");
    }
    assert!(
        emulator
            .bodies()
            .iter()
            .all(|b| b["audio_setting"]["format"] == "wav")
    );
    let total: u64 = pieces.iter().map(|p| spoken_millis(p, 1.0)).sum();
    let wav = Wav::parse(bytes).unwrap();
    assert!(wav.exact_sizes);
    assert_eq!((wav.duration_secs() * 1000.0).round() as u64, total);
    assert_eq!(run.progress.len(), pieces.len());
}

#[test]
fn long_text_as_mp3_is_encoded_once_to_the_sum_of_the_pieces() {
    let emulator = MiniMaxEmulator::start(KEY);
    let text = long_mixed();
    let run = tts(
        &emulator,
        json!({"text": text, "format": "mp3", "sample_rate": 16000}),
    );
    let (header, bytes) = audio(&run);
    assert_eq!(header.media_type, "audio/mpeg");
    let total: u64 = texts(&emulator).iter().map(|p| spoken_millis(p, 1.0)).sum();
    let duration = probe_duration(bytes, "mp3").unwrap();
    assert!(
        (duration - total as f64 / 1000.0).abs() < 0.1,
        "{duration} s, expected {total} ms"
    );
}
