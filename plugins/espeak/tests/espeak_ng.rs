//! The espeak plugin driven through its ABI against the real `espeak-ng` program.

use std::path::Path;
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use launcher_plugin_espeak::Espeak;
use launcher_sdk::abi::CallError;
use launcher_sdk::serde_json::{self, Value, json};
use launcher_sdk::testing::{self, Run};
use launcher_sdk::{ContentKind, ErrorKind, PluginError, Settings};

/// Fails (never skips) when espeak-ng is missing, saying how to get it.
fn require_espeak() {
    static CHECK: Once = Once::new();
    CHECK.call_once(|| {
        let found = std::process::Command::new("espeak-ng")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "these tests need espeak-ng: install it with `apt-get install espeak-ng` \
             (CI installs it)"
        );
    });
}

fn speak(params: Value) -> Run {
    require_espeak();
    testing::run::<Espeak>(
        "espeak",
        &Settings::default(),
        testing::job("tts", "espeak", params),
    )
}

fn error_of(run: &Run) -> &PluginError {
    match &run.result {
        Err(CallError::Plugin(err)) => err,
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

/// What a WAV file says about itself, read independently of the plugin's own code.
#[derive(Debug)]
struct Wav {
    channels: u16,
    sample_rate: u32,
    bits: u16,
    data_len: u32,
}

impl Wav {
    fn duration_secs(&self) -> f64 {
        f64::from(self.data_len)
            / (f64::from(self.sample_rate) * f64::from(self.channels) * f64::from(self.bits / 8))
    }
}

/// Parses a WAV file and checks that its sizes agree with its length.
fn parse_wav(bytes: &[u8]) -> Wav {
    let le16 = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let le32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    assert_eq!(
        le32(4) as usize,
        bytes.len() - 8,
        "the RIFF size must be the file length minus 8"
    );
    let mut pos = 12;
    let mut format = None;
    loop {
        assert!(pos + 8 <= bytes.len(), "no data chunk");
        let size = le32(pos + 4);
        match &bytes[pos..pos + 4] {
            b"fmt " => format = Some((le16(pos + 10), le32(pos + 12), le16(pos + 22))),
            b"data" => {
                assert_eq!(
                    pos + 8 + size as usize,
                    bytes.len(),
                    "the data chunk must end where the file ends"
                );
                let (channels, sample_rate, bits) = format.expect("fmt before data");
                return Wav {
                    channels,
                    sample_rate,
                    bits,
                    data_len: size,
                };
            }
            _ => {}
        }
        pos += 8 + size as usize + (size as usize & 1);
    }
}

/// Returns the WAV a successful run produced, after checking the output's description.
fn audio_of(run: &Run) -> (&[u8], Wav) {
    if let Err(err) = &run.result {
        panic!("the job failed: {err}");
    }
    let (header, bytes) = run.output("audio").expect("an audio output");
    assert_eq!(header.kind, ContentKind::Audio);
    assert_eq!(header.media_type, "audio/wav");
    assert_eq!(header.extension, "wav");
    (bytes, parse_wav(bytes))
}

fn info(run: &Run, key: &str) -> Value {
    let result = run.result.as_ref().expect("a successful job");
    result.info.get(key).cloned().unwrap_or(Value::Null)
}

#[test]
fn the_manifest_reads_back_through_the_abi() {
    let manifest = testing::manifest::<Espeak>().unwrap();
    manifest.validate().unwrap();
    assert_eq!(manifest.name, "espeak");
    assert_eq!(manifest.tools[0].tasks, ["tts", "voices"]);
}

#[test]
fn english_speech_is_a_complete_wav() {
    let run = speak(json!({"text": "Hello, world. This is the launcher speaking."}));
    let (_, wav) = audio_of(&run);
    assert_eq!(wav.sample_rate, 22050);
    assert_eq!(wav.channels, 1);
    assert_eq!(wav.bits, 16);
    let secs = wav.duration_secs();
    assert!(secs > 1.0 && secs < 10.0, "{secs} s");
    assert_eq!(info(&run, "voice"), "en");
    assert_eq!(info(&run, "sample_rate"), 22050);
    let reported = info(&run, "duration_secs").as_f64().unwrap();
    assert!((reported - secs).abs() < 0.001, "{reported} vs {secs}");
}

#[test]
fn mandarin_aliases_speak_with_the_cmn_voice() {
    let text = "你好，世界。今天天气很好，我们去公园散步吧。";
    let by_alias = speak(json!({"text": text, "voice": "zh-CN"}));
    let (alias_bytes, wav) = audio_of(&by_alias);
    assert_eq!(info(&by_alias, "voice"), "cmn");
    assert!(wav.duration_secs() > 2.0, "{} s", wav.duration_secs());

    let by_name = speak(json!({"text": text, "voice": "cmn"}));
    let (name_bytes, _) = audio_of(&by_name);
    assert_eq!(alias_bytes, name_bytes, "espeak-ng output is deterministic");

    // Read by the English voice, the same characters come out differently.
    let english = speak(json!({"text": text}));
    let (english_bytes, _) = audio_of(&english);
    assert_ne!(alias_bytes, english_bytes);
}

#[test]
fn cantonese_is_spoken() {
    let run = speak(json!({"text": "你好，世界。", "voice": "cantonese"}));
    let (_, wav) = audio_of(&run);
    assert_eq!(info(&run, "voice"), "yue");
    assert!(wav.duration_secs() > 0.5);
}

#[test]
fn rate_and_pitch_change_the_speech() {
    let text = "The quick brown fox jumps over the lazy dog, twice over.";
    let normal = speak(json!({"text": text}));
    let fast = speak(json!({"text": text, "rate": 2.0}));
    let high = speak(json!({"text": text, "pitch": 1.5}));
    let normal_secs = audio_of(&normal).1.duration_secs();
    let fast_secs = audio_of(&fast).1.duration_secs();
    assert!(
        fast_secs < normal_secs * 0.7,
        "rate 2 took {fast_secs} s, rate 1 {normal_secs} s"
    );
    assert_eq!(info(&fast, "words_per_minute"), 350);
    assert_ne!(audio_of(&normal).0, audio_of(&high).0);
}

#[test]
fn text_that_looks_like_options_is_spoken_not_parsed() {
    let run = speak(json!({"text": "--help -v xx --voices"}));
    let (_, wav) = audio_of(&run);
    assert!(wav.duration_secs() > 1.0, "{} s", wav.duration_secs());
}

#[test]
fn a_hundred_kilobytes_of_text_becomes_one_valid_wav() {
    let sentence = "Seven wizards quietly hex the jumping zebras before dawn. ";
    let text = sentence.repeat(100 * 1024 / sentence.len() + 1);
    assert!(text.len() >= 100 * 1024);
    // Twice the normal rate keeps the audio (and this test) smaller: about 140 MB in 3 s.
    // Faster is slower: above 350 words a minute espeak-ng speeds audio up with libsonic.
    let run = speak(json!({"text": text, "rate": 2.0}));
    let (bytes, wav) = audio_of(&run);
    // Around 17,500 words at 450 a minute; a text cut at espeak's 1000-byte line buffer or at
    // an argument limit would come out far shorter.
    let minutes = wav.duration_secs() / 60.0;
    assert!(
        minutes > 25.0,
        "{minutes} minutes from {} bytes",
        bytes.len()
    );
}

#[test]
fn empty_text_is_refused() {
    for text in ["", "   \n\t "] {
        let run = speak(json!({"text": text}));
        assert_eq!(error_of(&run).kind, ErrorKind::InvalidInput);
        assert!(run.outputs.is_empty());
    }
}

#[test]
fn an_unknown_voice_is_refused_with_a_way_to_find_voices() {
    // espeak-ng matches leniently (`klingon` is a voice, `no-such-voice` is read as Norwegian),
    // so these are names it really refuses.
    for voice in ["qq-nowhere", "en+NoSuchVariant", "Alicia"] {
        let run = speak(json!({"text": "hello", "voice": voice}));
        let err = error_of(&run);
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{voice}: {err:?}");
        let hint = err.hint.as_deref().unwrap_or_default();
        assert!(
            hint.contains("launcher run voices --tool espeak"),
            "{voice}: {hint}"
        );
        assert!(run.outputs.is_empty());
    }
}

#[test]
fn other_formats_are_encoded_by_ffmpeg_and_unknown_ones_refused() {
    audio_of(&speak(json!({"text": "hello", "format": "WAV"})));
    for (format, media_type, extension) in [
        ("mp3", "audio/mpeg", "mp3"),
        ("flac", "audio/flac", "flac"),
        ("opus", "audio/ogg", "ogg"),
    ] {
        let run = speak(json!({"text": "hello there", "format": format}));
        assert!(run.result.is_ok(), "{format}: {:?}", run.result);
        let (header, bytes) = &run.outputs[0];
        assert_eq!(
            (header.media_type.as_str(), header.extension.as_str()),
            (media_type, extension)
        );
        let found = launcher_sdk::media::sniff(bytes).expect("recognisable audio");
        assert_eq!(found.media_type, media_type, "{format}");
    }
    // Raw samples are the WAV's data without its header.
    let pcm = speak(json!({"text": "hello", "format": "pcm"}));
    let wav = speak(json!({"text": "hello"}));
    let (pcm, wav) = (&pcm.outputs[0].1, &wav.outputs[0].1);
    assert!(wav.ends_with(pcm) && wav.len() - pcm.len() >= 44);

    let run = speak(json!({"text": "hello", "format": "mp4v"}));
    let err = error_of(&run);
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(
        err.message.contains("unknown audio format"),
        "{}",
        err.message
    );
    assert!(run.outputs.is_empty());
}

#[test]
fn a_missing_program_is_unavailable_with_an_install_hint() {
    let mut settings = Settings::default();
    settings.set("program", "/nonexistent/espeak-ng");
    let run = testing::run::<Espeak>(
        "espeak",
        &settings,
        testing::job("tts", "espeak", json!({"text": "hello"})),
    );
    let err = error_of(&run);
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.hint
            .as_deref()
            .unwrap()
            .contains("apt-get install espeak-ng")
    );
}

#[test]
fn cancelling_stops_espeak_promptly() {
    require_espeak();
    let text = "A long text that takes a while to speak. ".repeat(3000);
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    let canceller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        flag.store(true, Ordering::SeqCst);
    });
    let work = tempfile::tempdir().unwrap();
    let mut job = testing::job("tts", "espeak", json!({"text": text}));
    job.work_dir = Some(work.path().to_str().unwrap().to_string());
    let started = Instant::now();
    let run = testing::run_with_cancel::<Espeak>("espeak", &Settings::default(), job, cancel);
    canceller.join().unwrap();
    assert_eq!(error_of(&run).kind, ErrorKind::Cancelled);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(run.outputs.is_empty(), "no partial audio is emitted");
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        0,
        "the spool file is removed"
    );
}

fn voices(params: Value) -> Run {
    require_espeak();
    testing::run::<Espeak>(
        "espeak",
        &Settings::default(),
        testing::job("voices", "espeak", params),
    )
}

/// Returns the voices a successful `voices` job listed, checking the standard shape.
fn listed(run: &Run) -> Vec<Value> {
    if let Err(err) = &run.result {
        panic!("the job failed: {err}");
    }
    let (header, bytes) = run.output("voices").expect("a voices output");
    assert_eq!(header.kind, ContentKind::Text);
    assert_eq!(header.media_type, "application/json");
    assert!(run.closed.contains(&"voices".to_string()));
    let list: Vec<Value> = serde_json::from_slice(bytes).unwrap();
    for voice in &list {
        for field in ["id", "name", "language"] {
            assert!(voice[field].is_string(), "{field} missing from {voice}");
        }
    }
    list
}

fn ids(list: &[Value]) -> Vec<&str> {
    list.iter().map(|v| v["id"].as_str().unwrap()).collect()
}

#[test]
fn voices_lists_what_is_installed_as_json() {
    let all = listed(&voices(json!({})));
    let ids = ids(&all);
    assert!(ids.len() > 50, "{} voices", ids.len());
    for id in ["en", "en-US", "cmn", "yue"] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let cmn = all.iter().find(|v| v["id"] == "cmn").unwrap();
    assert_eq!(cmn["language"], "cmn");
    assert_eq!(cmn["gender"], "male");
    assert!(cmn["name"].as_str().unwrap().contains("Mandarin"), "{cmn}");
    assert!(
        cmn["other_languages"]
            .as_array()
            .unwrap()
            .contains(&json!("zh"))
    );
    // Every listed voice id is one espeak-ng accepts.
    let run = speak(json!({"text": "hi", "voice": "cmn-Latn-pinyin"}));
    audio_of(&run);
}

#[test]
fn voices_filters_by_language() {
    let chinese = listed(&voices(json!({"language": "zh"})));
    let chinese = ids(&chinese);
    assert!(
        chinese.contains(&"cmn") && chinese.contains(&"yue"),
        "{chinese:?}"
    );
    assert!(!chinese.contains(&"en-US"), "{chinese:?}");
    let mandarin = listed(&voices(json!({"language": "mandarin"})));
    let mandarin = ids(&mandarin);
    assert!(
        mandarin.contains(&"cmn") && !mandarin.contains(&"yue"),
        "{mandarin:?}"
    );
    let variants = listed(&voices(json!({"language": "variant"})));
    assert!(
        variants.iter().all(|v| v["variant"] == true),
        "{variants:?}"
    );
    assert!(ids(&variants).contains(&"+Alicia"));

    let none = voices(json!({"language": "qq-nowhere"}));
    assert_eq!(error_of(&none).kind, ErrorKind::InvalidInput);
}

#[test]
fn params_the_manifest_refuses_never_reach_espeak() {
    let mut settings = Settings::default();
    // Were the plugin called, this program would fail as unavailable instead.
    settings.set("program", "/nonexistent/espeak-ng");
    let refused = [
        ("tts", json!({"text": "hi", "rate": 5.0}), "rate"),
        ("tts", json!({"text": "hi", "pitch": 0.1}), "pitch"),
        ("tts", json!({"text": "hi", "speed": 2}), "speed"),
        ("tts", json!({}), "text"),
        ("voices", json!({"rate": 1.5}), "rate"),
        ("voices", json!({"language": 7}), "language"),
    ];
    for (task, params, name) in refused {
        let run = testing::run::<Espeak>("espeak", &settings, testing::job(task, "espeak", params));
        let err = error_of(&run);
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{task} {name}: {err:?}");
        assert!(
            err.message.contains(&format!("`{name}`")),
            "{}",
            err.message
        );
    }
}

#[test]
fn audio_is_spooled_in_the_work_dir_and_removed_after() {
    require_espeak();
    let work = tempfile::tempdir().unwrap();
    let mut job = testing::job(
        "tts",
        "espeak",
        json!({"text": "Spooled beside the output."}),
    );
    job.work_dir = Some(work.path().to_str().unwrap().to_string());
    let run = testing::run::<Espeak>("espeak", &Settings::default(), job);
    audio_of(&run);
    let spool = run
        .logs
        .iter()
        .find_map(|l| l.message.strip_prefix("espeak-ng writes to "))
        .expect("the spool file is logged");
    assert!(Path::new(spool).starts_with(work.path()), "{spool}");
    assert!(!Path::new(spool).exists(), "{spool} was left behind");
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
}
