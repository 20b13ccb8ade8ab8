//! The elevenlabs plugin against the ElevenLabs emulator: streamed speech, every parameter on
//! the wire, the errors the contract lists, listings, and long mixed Chinese and English text
//! made into one file whose duration is the sum of its pieces.

use launcher_plugin_elevenlabs::{DEFAULT_VOICE, ElevenLabs, PIECE_CHARS};
use launcher_sdk::serde_json::{self, Value, json};
use launcher_sdk::testing::{self, Run};
use launcher_sdk::{ErrorKind, Settings};
use launcher_testkit::emulators::elevenlabs::{
    ElevenLabsEmulator, MILLIS_PER_CHAR, expected_millis, query_param, spoken_text,
};
use launcher_testkit::media::{parse_wav, probe_duration};
use launcher_testkit::text::mixed_chinese_english;

const KEY: &str = "sk_emulated_elevenlabs_0123456789abcdef";

fn settings(emulator: &ElevenLabsEmulator) -> Settings {
    let mut settings = Settings::from_values([("base_url", emulator.url())]);
    settings.set_secret("api_key", KEY);
    settings
}

fn run(emulator: &ElevenLabsEmulator, task: &str, params: Value) -> Run {
    testing::run::<ElevenLabs>(
        "elevenlabs",
        &settings(emulator),
        testing::job(task, "elevenlabs", params),
    )
}

#[track_caller]
fn audio(run: &Run) -> (&str, &[u8]) {
    if let Err(err) = &run.result {
        panic!("{err:?}");
    }
    let (header, bytes) = run.output("audio").expect("an audio output");
    assert!(run.closed.contains(&"audio".to_string()));
    (header.media_type.as_str(), bytes)
}

fn body(req: &launcher_testkit::http::Request) -> Value {
    serde_json::from_slice(&req.body).unwrap()
}

#[test]
fn speech_streams_to_the_output_as_it_arrives() {
    let emulator = ElevenLabsEmulator::start(KEY);
    // Long enough (45 s of MP3) that it passes through the host in several writes.
    let text = "Hello from ElevenLabs, streamed to the output as it is spoken. ".repeat(24);
    let text = text.trim();
    let run = run(&emulator, "tts", json!({"text": text}));
    let (media_type, mp3) = audio(&run);
    assert_eq!(media_type, "audio/mpeg");
    let writes = run.writes.iter().filter(|(n, _)| n == "audio").count();
    assert!(writes > 1, "the audio came in {writes} write(s)");

    let requests = emulator.synthesis_requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(
        req.path,
        format!("/v1/text-to-speech/{DEFAULT_VOICE}/stream?output_format=mp3_44100_128")
    );
    assert_eq!(req.header("xi-api-key"), Some(KEY));
    assert_eq!(req.header("Content-Type"), Some("application/json"));
    assert_eq!(
        body(req),
        json!({"text": text, "model_id": "eleven_multilingual_v2"})
    );
    let duration = probe_duration(mp3, "mp3").unwrap();
    let expected = (text.chars().count() as u64 * MILLIS_PER_CHAR) as f64 / 1000.0;
    assert!(
        (duration - expected).abs() < 0.1,
        "{duration} s, not {expected} s"
    );
}

#[test]
fn every_parameter_reaches_the_service() {
    let emulator = ElevenLabsEmulator::start(KEY);
    let run = run(
        &emulator,
        "tts",
        json!({
            "text": "你好，世界。",
            "voice": "charlotte",
            "model": "eleven_flash_v2_5",
            "output_format": "pcm_16000",
            "language_code": "ZH",
            "stability": 0.3,
            "similarity_boost": 0.9,
            "style": 0.1,
            "speaker_boost": true,
            "seed": 42,
            "rate": 1.2,
        }),
    );
    let (media_type, wav) = audio(&run);
    assert_eq!(media_type, "audio/wav");
    let wav = parse_wav(wav).unwrap();
    assert_eq!(wav.sample_rate, 16_000);
    let req = &emulator.synthesis_requests()[0];
    assert!(
        req.path
            .starts_with("/v1/text-to-speech/XB0fDUnXU5powFXDhCwa/stream?"),
        "{}",
        req.path
    );
    assert_eq!(
        query_param(req, "output_format").as_deref(),
        Some("pcm_16000")
    );
    assert_eq!(
        body(req),
        json!({
            "text": "你好，世界。",
            "model_id": "eleven_flash_v2_5",
            "language_code": "zh",
            "voice_settings": {"stability": 0.3, "similarity_boost": 0.9, "style": 0.1, "use_speaker_boost": true, "speed": 1.2},
            "seed": 42,
        })
    );
    assert!(
        (wav.duration - expected_millis(req) as f64 / 1000.0).abs() < 0.001,
        "{wav:?}"
    );
    let info = &run.result.as_ref().unwrap().info;
    assert_eq!(info["voice"], "XB0fDUnXU5powFXDhCwa");
    assert_eq!(info["output_format"], "pcm_16000");
}

#[test]
fn a_wrong_key_and_a_spent_quota_are_different_failures_neither_retried() {
    let emulator = ElevenLabsEmulator::start("sk_another_key_entirely_000000");
    let wrong = run(&emulator, "tts", json!({"text": "Hello."}));
    let err = wrong.error().unwrap();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert!(err.message.contains("invalid_api_key"), "{err:?}");
    assert!(err.hint.as_deref().unwrap().contains("ELEVENLABS_API_KEY"));
    assert!(!err.message.contains(KEY) && !err.hint.as_deref().unwrap().contains(KEY));
    assert_eq!(emulator.synthesis_requests().len(), 1);
    assert!(wrong.output("audio").is_none());

    let emulator = ElevenLabsEmulator::start(KEY);
    emulator.set_quota(5);
    let spent = run(
        &emulator,
        "tts",
        json!({"text": "More than five characters."}),
    );
    let err = spent.error().unwrap();
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.retry_after_secs, None);
    assert!(err.message.contains("quota_exceeded"), "{err:?}");
    assert!(
        err.message.contains("You have 5 credits remaining"),
        "{err:?}"
    );
    assert_eq!(
        emulator.synthesis_requests().len(),
        1,
        "a spent quota is not retried"
    );
}

#[test]
fn concurrency_limits_are_retried_and_a_busy_service_backed_off() {
    let emulator = ElevenLabsEmulator::start(KEY);
    emulator.fail_next(429, "too_many_concurrent_requests", &[]);
    let ok = run(
        &emulator,
        "tts",
        json!({"text": "After waiting for a slot."}),
    );
    audio(&ok);
    assert_eq!(emulator.synthesis_requests().len(), 2);
    assert!(
        ok.logs.iter().any(|l| l.message.contains("429")),
        "the retry is logged: {:?}",
        ok.logs
    );

    let emulator = ElevenLabsEmulator::start(KEY);
    emulator.fail_next(429, "system_busy", &[]);
    emulator.fail_next(429, "system_busy", &[]);
    let ok = run(
        &emulator,
        "tts",
        json!({"text": "After the service calmed down."}),
    );
    audio(&ok);
    assert_eq!(emulator.synthesis_requests().len(), 3);

    // Busy through every retry: a rate limit error that says what is going on.
    let emulator = ElevenLabsEmulator::start(KEY);
    for _ in 0..4 {
        emulator.fail_next(429, "system_busy", &[("Retry-After", "0")]);
    }
    let busy = run(&emulator, "tts", json!({"text": "Never."}));
    let err = busy.error().unwrap();
    assert_eq!(err.kind, ErrorKind::RateLimited, "{err:?}");
    assert!(
        err.hint.as_deref().unwrap().contains("overloaded"),
        "{err:?}"
    );
    assert_eq!(emulator.synthesis_requests().len(), 4);
}

#[test]
fn what_the_service_would_refuse_is_refused_first() {
    let emulator = ElevenLabsEmulator::start(KEY);
    let refused = |params: Value, says: &str| {
        let run = run(&emulator, "tts", params);
        let err = run.error().unwrap_or_else(|| panic!("{:?}", run.result));
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{err:?}");
        assert!(err.message.contains(says), "{err:?}");
    };
    refused(json!({"text": "Hi.", "rate": 1.5}), "rates from 0.7 to 1.2");
    refused(
        json!({"text": "Hi.", "pitch": 1.2}),
        "cannot change their pitch",
    );
    refused(
        json!({"text": "Hi.", "language_code": "zho"}),
        "not an ISO 639-1",
    );
    refused(
        json!({"text": "Hi.", "format": "mp3", "output_format": "pcm_16000"}),
        "different audio",
    );
    refused(
        json!({"text": "Hi.", "voice": "Nobody"}),
        "no voice `Nobody`",
    );
    assert!(emulator.synthesis_requests().is_empty());

    // What only the service knows comes back in its words.
    let unknown = run(
        &emulator,
        "tts",
        json!({"text": "Hi.", "model": "eleven_v9"}),
    );
    let err = unknown.error().unwrap();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("model_not_found"), "{err:?}");
    let missing = run(
        &emulator,
        "tts",
        json!({"text": "Hi.", "voice": "abcdefghij0123456789"}),
    );
    assert!(
        missing
            .error()
            .unwrap()
            .hint
            .as_deref()
            .unwrap()
            .contains("launcher run voices")
    );
}

#[test]
fn voices_and_models_are_the_standard_listings() {
    let emulator = ElevenLabsEmulator::start(KEY);
    let voices = run(&emulator, "voices", json!({"language": "zh-CN"}));
    let listed: Value = serde_json::from_str(&voices.text("voices").unwrap()).unwrap();
    let listed = listed.as_array().unwrap();
    // Lin speaks Chinese; the premade voices speak every language of the multilingual models.
    assert_eq!(listed.len(), 4, "{listed:?}");
    let lin = listed.iter().find(|v| v["name"] == "Lin").unwrap();
    assert_eq!(lin["language"], "zh");
    assert!(
        listed
            .iter()
            .all(|v| v["id"].is_string() && v["name"].is_string())
    );

    let models = run(&emulator, "models", json!({}));
    let listed: Value = serde_json::from_str(&models.text("models").unwrap()).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"eleven_multilingual_v2"), "{ids:?}");
    assert!(
        !ids.contains(&"eleven_english_sts_v2"),
        "speech-to-speech only: {ids:?}"
    );
    assert!(
        emulator
            .requests()
            .iter()
            .all(|r| r.header("xi-api-key") == Some(KEY))
    );
}

/// 20,000 characters of Chinese and English sentences, mixed.
fn long_mixed_text() -> String {
    mixed_chinese_english(20_000).trim().to_string()
}

#[test]
fn long_mixed_text_is_one_mp3_as_long_as_its_pieces() {
    let emulator = ElevenLabsEmulator::start(KEY);
    let text = long_mixed_text();
    let run = run(&emulator, "tts", json!({"text": text, "format": "mp3"}));
    let (media_type, mp3) = audio(&run);
    assert_eq!(media_type, "audio/mpeg");
    let requests = emulator.synthesis_requests();
    assert!(requests.len() >= 4, "{} requests", requests.len());
    let pieces: Vec<String> = requests.iter().map(spoken_text).collect();
    assert!(pieces.iter().all(|p| p.chars().count() <= PIECE_CHARS));
    assert_eq!(
        pieces.concat().replace(' ', ""),
        text.replace(' ', ""),
        "every character is spoken once, in order"
    );
    for (i, req) in requests.iter().enumerate() {
        // Pieces come as PCM, to be joined and encoded once.
        assert_eq!(
            query_param(req, "output_format").as_deref(),
            Some("pcm_24000")
        );
        let b = body(req);
        assert_eq!(b.get("previous_text").is_some(), i > 0, "piece {i}");
        assert_eq!(
            b.get("next_text").is_some(),
            i + 1 < requests.len(),
            "piece {i}"
        );
        if i > 0 {
            assert!(pieces[i - 1].ends_with(b["previous_text"].as_str().unwrap()));
        }
    }
    let total: u64 = requests.iter().map(expected_millis).sum();
    let duration = probe_duration(mp3, "mp3").unwrap();
    assert!(
        (duration - total as f64 / 1000.0).abs() < 0.1,
        "{duration} s, expected {total} ms"
    );
    let steps: Vec<&str> = run.progress.iter().map(|p| p.message.as_str()).collect();
    assert!(
        steps.contains(&format!("synthesizing piece {0} of {0}", requests.len()).as_str()),
        "{steps:?}"
    );
    let info = &run.result.as_ref().unwrap().info;
    assert_eq!(info["requests"], requests.len());
    assert_eq!(info["characters"], text.chars().count());
}

#[test]
fn long_text_as_wav_has_one_header_over_every_piece() {
    let emulator = ElevenLabsEmulator::start(KEY);
    let text = long_mixed_text();
    let run = run(
        &emulator,
        "tts",
        json!({"text": text, "output_format": "pcm_22050"}),
    );
    let (media_type, wav) = audio(&run);
    assert_eq!(media_type, "audio/wav");
    let wav = parse_wav(wav).unwrap();
    assert_eq!(wav.sample_rate, 22_050);
    let requests = emulator.synthesis_requests();
    assert!(
        requests
            .iter()
            .all(|r| query_param(r, "output_format").as_deref() == Some("pcm_22050"))
    );
    let total: u64 = requests.iter().map(expected_millis).sum();
    assert!(
        (wav.duration - total as f64 / 1000.0).abs() < 0.01,
        "{wav:?} vs {total} ms"
    );
}
