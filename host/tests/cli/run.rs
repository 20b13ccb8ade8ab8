//! `run`: routing, parameters, inputs and outputs, with the real offline engines.

use launcher_testkit::media::{ffprobe, parse_wav};
use launcher_testkit::test_context;

#[test]
fn tts_uses_the_offline_voice_and_writes_a_valid_wav() {
    let ctx = test_context!();
    let out = ctx.run([
        "run",
        "tts",
        "--text",
        "Hello from launcher, the offline voice.",
    ]);
    out.success();
    assert!(
        out.stderr.contains("wrote") && out.stderr.contains("espeak"),
        "{}",
        out.stderr
    );
    let wav = parse_wav(&std::fs::read(ctx.work_file("tts.wav")).unwrap()).unwrap();
    assert!(wav.duration > 1.0 && wav.duration < 10.0, "{wav:?}");
    assert_eq!((wav.channels, wav.bits), (1, 16));

    // A second run never replaces the first output.
    ctx.run(["run", "tts", "--text", "again"]).success();
    assert_eq!(ctx.work_files(), ["tts-2.wav", "tts.wav"]);
}

#[test]
fn text_comes_from_stdin_or_a_file() {
    let ctx = test_context!();
    ctx.run_with_stdin(
        ["run", "tts", "-o", "piped.wav"],
        "text from a pipe\n".as_bytes(),
    )
    .success();
    assert!(
        parse_wav(&std::fs::read(ctx.work_file("piped.wav")).unwrap())
            .unwrap()
            .duration
            > 0.5
    );
    std::fs::write(ctx.work_file("script.txt"), "text from a file").unwrap();
    ctx.run(["run", "tts", "--file", "script.txt", "-o", "file.wav"])
        .success();
    assert!(
        parse_wav(&std::fs::read(ctx.work_file("file.wav")).unwrap())
            .unwrap()
            .duration
            > 0.5
    );
    let both = ctx.run(["run", "tts", "--file", "script.txt", "--text", "x"]);
    both.expect_code(2);
}

#[test]
fn mandarin_speech_and_voice_parameters() {
    let ctx = test_context!();
    let slow = ctx.run([
        "run",
        "tts",
        "--voice",
        "zh",
        "--text",
        "你好，世界。欢迎使用启动器。",
        "--rate",
        "0.5",
        "-o",
        "slow.wav",
    ]);
    slow.success();
    let fast = ctx.run([
        "run",
        "tts",
        "--voice",
        "zh",
        "--text",
        "你好，世界。欢迎使用启动器。",
        "--rate",
        "2",
        "-o",
        "fast.wav",
    ]);
    fast.success();
    let slow = parse_wav(&std::fs::read(ctx.work_file("slow.wav")).unwrap()).unwrap();
    let fast = parse_wav(&std::fs::read(ctx.work_file("fast.wav")).unwrap()).unwrap();
    assert!(
        slow.duration > fast.duration * 1.5,
        "rate changes speed: {slow:?} vs {fast:?}"
    );
}

#[test]
fn to_audio_routes_text_to_tts_and_json_reports_the_result() {
    let ctx = test_context!();
    let out = ctx.run([
        "run",
        "--to",
        "audio",
        "--text",
        "routed by kind",
        "--json",
        "-v",
    ]);
    out.success();
    assert!(
        out.stderr.contains("task `tts`"),
        "-v explains routing: {}",
        out.stderr
    );
    let result = out.json();
    assert_eq!(result["tool"], "espeak");
    assert_eq!(result["task"], "tts");
    let output = &result["outputs"][0];
    assert_eq!(output["kind"], "audio");
    assert_eq!(output["media_type"], "audio/wav");
    let path = ctx.work.path().join(output["path"].as_str().unwrap());
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        output["size"].as_u64().unwrap()
    );
    assert!(result["duration_ms"].is_u64());
}

#[test]
fn existing_outputs_are_kept_unless_forced_and_stdout_works() {
    let ctx = test_context!();
    std::fs::write(ctx.work_file("mine.wav"), b"precious").unwrap();
    let refused = ctx.run(["run", "tts", "--text", "hi", "-o", "mine.wav"]);
    refused.expect_code(10);
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert_eq!(
        std::fs::read(ctx.work_file("mine.wav")).unwrap(),
        b"precious"
    );
    ctx.run(["run", "tts", "--text", "hi", "-o", "mine.wav", "--force"])
        .success();
    assert!(parse_wav(&std::fs::read(ctx.work_file("mine.wav")).unwrap()).is_ok());

    let piped = ctx.run(["run", "tts", "--text", "to stdout", "-o", "-"]);
    piped.success();
    // Streamed as it was made, the WAV says its length is not known, as espeak-ng's own does.
    let wav = launcher_sdk::media::Wav::parse(&piped.stdout_bytes).unwrap();
    assert!(wav.streamed && wav.duration_secs() > 0.1, "{wav:?}");
    assert_eq!(ctx.work_files(), ["mine.wav"]);

    let no_dir = ctx.run(["run", "tts", "--text", "hi", "-o", "missing/dir/x.wav"]);
    no_dir.expect_code(13);
}

#[test]
fn output_extension_picks_the_format() {
    let ctx = test_context!();
    let out = ctx.run(["run", "tts", "--text", "hi", "-o", "speech.flac", "--json"]);
    assert_eq!(
        out.success().json()["outputs"][0]["media_type"],
        "audio/flac"
    );
    assert_eq!(ctx.work_files(), ["speech.flac"]);
}

#[test]
fn bad_parameters_are_rejected_before_the_plugin_runs() {
    let ctx = test_context!();
    let cases: [(&[&str], i32, &str); 8] = [
        (&["run", "tts", "--text", ""], 5, "--text is empty"),
        (&["run", "tts", "--text", " \n\t"], 5, "is empty"),
        (
            &["run", "tts", "--text", "hi", "--rate", "fast"],
            5,
            "not a number",
        ),
        (
            &["run", "tts", "--text", "hi", "--rate", "9"],
            5,
            "out of range",
        ),
        (
            &["run", "tts", "--text", "hi", "--rate", "inf"],
            5,
            "not a number",
        ),
        (
            &["run", "tts", "--text", "hi", "--loudness", "3"],
            2,
            "--loudness",
        ),
        (&["run", "tts"], 2, "stdin was empty"),
        (
            &["run", "tts", "--text", "hi", "--set", "colour=blue"],
            2,
            "no setting `colour`",
        ),
    ];
    for (args, code, message) in cases {
        let out = ctx.run(args);
        assert_eq!(out.code, code, "{args:?}: {out:#?}");
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
    }
    let huge = "word ".repeat(1024 * 1024);
    let out = ctx.run_with_stdin(["run", "tts"], huge.as_bytes());
    out.expect_code(5);
    assert!(out.stderr.contains("MiB"), "{}", out.stderr);
    let binary = ctx.run_with_stdin(["run", "tts"], &[0xff, 0xfe, 0x00, 0x80]);
    binary.expect_code(5);
    assert!(ctx.work_files().is_empty());
}

#[test]
fn unknown_targets_name_close_matches() {
    let ctx = test_context!();
    let out = ctx.run(["run", "tss", "--text", "hi"]);
    out.expect_code(3);
    assert!(out.stderr.contains("did you mean `tts`"), "{}", out.stderr);
    let none = ctx.run(["run", "zzzzzz"]);
    none.expect_code(3);
    assert!(none.stderr.contains("installed tools:"), "{}", none.stderr);
    // Every standard task now has a bundled tool; a cloud one without its key is not ready,
    // and when several could do the task each says what it needs.
    let no_key = ctx.run(["run", "txt2vid", "--prompt", "a fox"]);
    no_key.expect_code(4);
    assert!(
        no_key
            .stderr
            .contains("no tool for `txt2vid` is ready; first in line is `runway`"),
        "{}",
        no_key.stderr
    );
    assert!(
        no_key.stderr.contains("set RUNWAYML_API_SECRET"),
        "{}",
        no_key.stderr
    );
    assert!(
        no_key
            .stderr
            .contains("other tools for `txt2vid`: `kling` (set KLING_ACCESS_KEY)"),
        "{}",
        no_key.stderr
    );
    let wrong_tool = ctx.run(["run", "tts", "--tool", "ffmpeg", "--text", "hi"]);
    wrong_tool.expect_code(3);
    assert!(
        wrong_tool.stderr.contains("does not perform task `tts`"),
        "{}",
        wrong_tool.stderr
    );
}

#[test]
fn run_help_lists_parameters_from_the_manifest() {
    let ctx = test_context!();
    let out = ctx.run(["run", "tts", "--help"]);
    out.success();
    for needle in [
        "--text",
        "--voice",
        "--rate",
        "0.25 to 4",
        "--format",
        "-o, --output",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
    }
    let general = ctx.run(["run", "--help"]);
    general.success();
    assert!(
        general.stdout.contains("compose") && general.stdout.contains("ffmpeg"),
        "{}",
        general.stdout
    );
}

#[test]
fn configured_default_and_tool_flag_route_tasks() {
    let ctx = test_context!();
    ctx.add_plugin("launcher_fixture_panicky", "panicky");
    // The panicky tool has the lowest priority, so espeak wins by default...
    let out = ctx.run(["run", "tts", "--text", "hi", "-v", "-o", "a.wav"]);
    out.success();
    assert!(out.stderr.contains("chose `espeak`"), "{}", out.stderr);
    // ...unless --tool or the config says otherwise.
    ctx.run([
        "run", "tts", "--tool", "panicky", "--mode", "ok", "--text", "hi", "-o", "b.wav",
    ])
    .success();
    ctx.config("[defaults]\ntts = \"panicky\"\n");
    let configured = ctx.run([
        "run", "tts", "--mode", "ok", "--text", "hi", "-o", "c.wav", "-v",
    ]);
    configured.success();
    assert!(
        configured.stderr.contains("configured default"),
        "{}",
        configured.stderr
    );
    ctx.config("[defaults]\ntts = \"nope\"\n");
    ctx.run(["run", "tts", "--text", "hi"]).expect_code(3);
    ctx.config("this is [not toml");
    ctx.run(["run", "tts", "--text", "hi"]).expect_code(2);
}

#[test]
fn compose_makes_a_video_as_long_as_its_audio() {
    let ctx = test_context!();
    ctx.run([
        "run",
        "tts",
        "--text",
        "A narrated slide show made by launcher.",
        "-o",
        "voice.wav",
    ])
    .success();
    let audio = parse_wav(&std::fs::read(ctx.work_file("voice.wav")).unwrap()).unwrap();
    for (name, size) in [("a.png", "640x480"), ("b.png", "333x777")] {
        let status = std::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                &format!("testsrc=size={size}:duration=1"),
                "-frames:v",
                "1",
            ])
            .arg(ctx.work_file(name))
            .status()
            .expect("ffmpeg runs (apt-get install ffmpeg)");
        assert!(status.success());
    }
    let out = ctx.run([
        "run",
        "--to",
        "video",
        "--image",
        "a.png",
        "--image",
        "b.png",
        "--audio",
        "voice.wav",
        "-o",
        "show.mp4",
        "--json",
    ]);
    out.success();
    assert_eq!(out.json()["tool"], "ffmpeg");
    let probe = ffprobe(&ctx.work_file("show.mp4")).unwrap();
    let streams = probe["streams"].as_array().unwrap();
    assert!(streams.iter().any(|s| s["codec_name"] == "h264"), "{probe}");
    assert!(streams.iter().any(|s| s["codec_name"] == "aac"), "{probe}");
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (duration - audio.duration).abs() < 0.3,
        "video {duration} s vs audio {} s",
        audio.duration
    );

    let missing = ctx.run([
        "run",
        "compose",
        "--image",
        "nope.png",
        "--audio",
        "voice.wav",
    ]);
    missing.expect_code(5);
    assert!(missing.stderr.contains("nope.png"), "{}", missing.stderr);
}

#[test]
fn a_reader_closing_stdout_stops_the_job_quietly() {
    use std::io::Read;
    let ctx = test_context!();
    let text = "A long narration that makes several chunks of audio. ".repeat(200);
    let mut child = ctx
        .cmd()
        .args(["run", "tts", "--text", &text, "-o", "-"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 100];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    // The pipe is closed now; the job must end rather than keep writing (or spin).
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!("launcher kept running after its reader went away");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(&head[..4], b"RIFF");
    assert!(ctx.work_files().is_empty());
}

#[test]
fn the_primary_input_is_positional_and_listings_are_json() {
    let ctx = test_context!();
    let out = ctx.run(["run", "tts", "Hello there", "-o", "hello.wav"]);
    out.success();
    let wav = parse_wav(&std::fs::read(ctx.work_file("hello.wav")).unwrap()).unwrap();
    assert!(wav.duration > 0.3, "{wav:?}");
    // Both a positional and the flag: one input too many.
    ctx.run(["run", "tts", "Hello", "--text", "Hi"])
        .expect_code(2);

    let voices = ctx.run([
        "run",
        "voices",
        "--tool",
        "espeak",
        "--language",
        "zh",
        "--json",
    ]);
    voices.success();
    let list = voices.json();
    let list = list
        .as_array()
        .expect("`run voices --json` is the list itself");
    assert!(!list.is_empty());
    for voice in list {
        for field in ["id", "name", "language"] {
            assert!(voice[field].is_string(), "{field} in {voice}");
        }
    }
    // Without --json the listing is the same JSON, printed as the job's text output.
    let plain = ctx.run(["run", "voices", "--tool", "espeak", "--language", "zh"]);
    plain.success();
    assert_eq!(plain.json(), voices.json());
}

#[test]
fn empty_inputs_say_what_was_empty_and_missing_inputs_are_usage_errors() {
    let ctx = test_context!();
    let piped = ctx.run_with_stdin(["run", "tts"], b"");
    piped.expect_code(2);
    assert!(piped.stderr.contains("stdin was empty"), "{}", piped.stderr);
    assert!(!piped.stderr.contains("is required"), "{}", piped.stderr);

    std::fs::write(ctx.work_file("empty.txt"), b"").unwrap();
    let file = ctx.run(["run", "tts", "--file", "empty.txt"]);
    file.expect_code(5);
    assert!(
        file.stderr.contains("--file empty.txt is empty"),
        "{}",
        file.stderr
    );
    let dash = ctx.run_with_stdin(["run", "tts", "--file", "-"], b"");
    dash.expect_code(5);
    assert!(dash.stderr.contains("stdin was empty"), "{}", dash.stderr);

    // Only whitespace (`echo | launcher run tts`) is no text either, and is said so.
    let newline = ctx.run_with_stdin(["run", "tts"], b"\n");
    newline.expect_code(5);
    assert!(
        newline.stderr.contains("stdin was only whitespace"),
        "{}",
        newline.stderr
    );
    std::fs::write(ctx.work_file("blank.txt"), b" \n\t\n").unwrap();
    let blank = ctx.run(["run", "tts", "--file", "blank.txt"]);
    blank.expect_code(5);
    assert!(
        blank.stderr.contains("--file blank.txt is only whitespace"),
        "{}",
        blank.stderr
    );

    // A missing required parameter exits like a missing positional: a usage error.
    std::fs::write(ctx.work_file("a.png"), b"").unwrap();
    let no_audio = ctx.run(["run", "compose", "--image", "a.png"]);
    no_audio.expect_code(2);
    assert!(
        no_audio.stderr.contains("--audio is required"),
        "{}",
        no_audio.stderr
    );
    let no_positional = ctx.run(["info"]);
    no_positional.expect_code(2);
    assert!(ctx.work_files().contains(&"empty.txt".to_string()));
}

#[test]
fn parameters_are_never_accepted_and_ignored() {
    let ctx = test_context!();
    let task = ctx.run(["run", "tts", "--task", "voices", "--text", "hi"]);
    task.expect_code(2);
    assert!(task.stderr.contains("--task voices"), "{}", task.stderr);
    assert!(ctx.work_files().is_empty(), "{:?}", ctx.work_files());

    let voice = ctx.run(["run", "tts", "--text", "hi", "--voice", "en-US-JennyNeural"]);
    voice.expect_code(5);
    assert!(
        voice.stderr.contains("no voice `en-US-JennyNeural`") && voice.stderr.contains("`en-US`"),
        "{}",
        voice.stderr
    );
    assert!(ctx.work_files().is_empty(), "{:?}", ctx.work_files());
    ctx.run([
        "run", "tts", "--text", "hi", "--voice", "en-us", "-o", "a.wav",
    ])
    .success();
}
