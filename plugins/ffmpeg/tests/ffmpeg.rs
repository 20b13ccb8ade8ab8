//! The ffmpeg plugin driven through its ABI against the real `ffmpeg` and `ffprobe`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use launcher_plugin_ffmpeg::Ffmpeg;
use launcher_sdk::abi::CallError;
use launcher_sdk::serde_json::{self, Value, json};
use launcher_sdk::testing::{self, Run};
use launcher_sdk::{ContentKind, ErrorKind, PluginError, Settings};
use tempfile::TempDir;

/// Fails (never skips) when ffmpeg or ffprobe is missing, saying how to get them.
fn require_ffmpeg() {
    static CHECK: Once = Once::new();
    CHECK.call_once(|| {
        for program in ["ffmpeg", "ffprobe"] {
            let found = Command::new(program)
                .arg("-version")
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                found,
                "these tests need {program}: install it with `apt-get install ffmpeg` \
                 (CI installs it)"
            );
        }
    });
}

/// Runs ffmpeg to make a test input from a lavfi source.
fn generate(dir: &Path, name: &str, lavfi: &str, extra: &[&str]) -> PathBuf {
    require_ffmpeg();
    let path = dir.join(name);
    let output = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            lavfi,
        ])
        .args(extra)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "making {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    path
}

/// Makes a still image of one colour; rgb24 keeps odd sizes odd.
fn still(dir: &Path, name: &str, color: &str, width: u32, height: u32) -> PathBuf {
    let lavfi = format!("color=c={color}:s={width}x{height},format=rgb24");
    generate(dir, name, &lavfi, &["-frames:v", "1"])
}

/// Makes `secs` seconds of a sine tone.
fn tone(dir: &Path, name: &str, secs: f64) -> PathBuf {
    generate(
        dir,
        name,
        &format!("sine=frequency=440:duration={secs}"),
        &[],
    )
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn compose(params: Value) -> Run {
    require_ffmpeg();
    testing::run::<Ffmpeg>(
        "ffmpeg",
        &Settings::default(),
        testing::job("compose", "ffmpeg", params),
    )
}

fn error_of(run: &Run) -> &PluginError {
    match &run.result {
        Err(CallError::Plugin(err)) => err,
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

/// Returns what ffprobe reports (as JSON) about `path`.
fn ffprobe(path: &Path) -> Value {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-of",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success(), "ffprobe {}", path.display());
    serde_json::from_slice(&output.stdout).unwrap()
}

fn seconds(value: &Value) -> f64 {
    value.as_str().unwrap().parse().unwrap()
}

/// Writes the job's video into `dir`, checks its streams, and returns ffprobe's report.
fn check_video(run: &Run, dir: &Path, width: u64, height: u64, audio: &Path) -> Value {
    if let Err(err) = &run.result {
        panic!("the job failed: {err}");
    }
    let (header, bytes) = run.output("video").expect("a video output");
    assert_eq!(header.kind, ContentKind::Video);
    assert_eq!(header.media_type, "video/mp4");
    assert_eq!(header.extension, "mp4");
    let path = dir.join("out.mp4");
    std::fs::write(&path, bytes).unwrap();

    let report = ffprobe(&path);
    let streams = report["streams"].as_array().unwrap();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("a video stream");
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(video["pix_fmt"], "yuv420p");
    assert_eq!(video["width"], width);
    assert_eq!(video["height"], height);
    let sound = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .expect("an audio stream");
    assert_eq!(sound["codec_name"], "aac");

    let expected = seconds(&ffprobe(audio)["format"]["duration"]);
    let got = seconds(&report["format"]["duration"]);
    assert!(
        (got - expected).abs() <= 0.2,
        "the video lasts {got} s, the audio {expected} s"
    );
    assert!(
        (seconds(&video["duration"]) - expected).abs() <= 0.2,
        "the picture lasts {} s, the audio {expected} s",
        video["duration"]
    );
    // With +faststart the index (moov) comes before the media data (mdat).
    let moov = bytes.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = bytes.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov < mdat, "moov at {moov}, mdat at {mdat}");
    report
}

/// Returns the colour of the pixel at (`x`, `y`) of the frame shown at `at` seconds.
fn pixel(video: &Path, at: f64, x: u32, y: u32) -> [u8; 3] {
    let output = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-ss",
            &at.to_string(),
            "-i",
        ])
        .arg(video)
        .args([
            "-frames:v",
            "1",
            "-vf",
            &format!("format=rgb24,crop=1:1:{x}:{y}"),
        ])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "reading a pixel at {at} s: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout[..3].try_into().unwrap()
}

fn is_near(color: [u8; 3], expected: [u8; 3]) -> bool {
    color
        .iter()
        .zip(expected)
        .all(|(&c, e)| (i16::from(c) - i16::from(e)).abs() <= 40)
}

#[test]
fn the_manifest_reads_back_through_the_abi() {
    let manifest = testing::manifest::<Ffmpeg>().unwrap();
    manifest.validate().unwrap();
    assert_eq!(manifest.name, "ffmpeg");
    assert_eq!(manifest.tools[0].tasks, ["compose"]);
}

#[test]
fn one_image_and_audio_make_an_mp4_as_long_as_the_audio() {
    let dir = TempDir::new().unwrap();
    let image = still(dir.path(), "one.png", "orange", 640, 480);
    let audio = tone(dir.path(), "voice.wav", 2.3);
    let run = compose(json!({
        "image": [path_str(&image)],
        "audio": path_str(&audio),
    }));
    check_video(&run, dir.path(), 1280, 720, &audio);

    let fractions: Vec<f64> = run.progress.iter().filter_map(|p| p.fraction).collect();
    assert!(!fractions.is_empty());
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{fractions:?}");
    assert_eq!(fractions.last(), Some(&1.0));
    let info = &run.result.as_ref().unwrap().info;
    assert_eq!(info["width"], 1280);
    assert_eq!(info["images"], 1);
}

#[test]
fn three_images_of_different_sizes_share_the_time_in_order() {
    let dir = TempDir::new().unwrap();
    // Odd sizes, a portrait, a large landscape and a tiny one, in three formats.
    let red = still(dir.path(), "red.png", "red", 333, 517);
    let green = still(dir.path(), "green.jpg", "lime", 1920, 1080);
    let blue = still(dir.path(), "blue.bmp", "blue", 101, 77);
    let audio = tone(dir.path(), "voice.m4a", 3.0);
    let run = compose(json!({
        "image": [path_str(&red), path_str(&green), path_str(&blue)],
        "audio": path_str(&audio),
        "width": 640,
        "height": 360,
        "fps": 10,
    }));
    let report = check_video(&run, dir.path(), 640, 360, &audio);
    let video = dir.path().join("out.mp4");
    let frames = report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap()["nb_frames"]
        .as_str()
        .unwrap()
        .parse::<u32>()
        .unwrap();
    assert_eq!(frames, 30);

    let centre = |at| pixel(&video, at, 320, 180);
    assert!(is_near(centre(0.5), [255, 0, 0]), "{:?}", centre(0.5));
    assert!(is_near(centre(1.5), [0, 255, 0]), "{:?}", centre(1.5));
    assert!(is_near(centre(2.5), [0, 0, 255]), "{:?}", centre(2.5));
    // The portrait is letterboxed: black at the sides, not stretched.
    let side = pixel(&video, 0.5, 10, 180);
    assert!(is_near(side, [0, 0, 0]), "{side:?}");
}

#[test]
fn speech_from_a_wav_is_a_valid_soundtrack() {
    let dir = TempDir::new().unwrap();
    let image = still(dir.path(), "slide.png", "white", 800, 600);
    // 22050 Hz mono 16-bit, the format espeak-ng writes.
    let audio = generate(
        dir.path(),
        "speech.wav",
        "sine=frequency=220:duration=1.7:sample_rate=22050",
        &["-ac", "1", "-c:a", "pcm_s16le"],
    );
    let run = compose(json!({"image": path_str(&image), "audio": path_str(&audio)}));
    check_video(&run, dir.path(), 1280, 720, &audio);
}

#[test]
fn a_file_that_is_not_an_image_is_refused_with_ffmpegs_reason() {
    let dir = TempDir::new().unwrap();
    let fake = dir.path().join("slide.png");
    std::fs::write(&fake, "this is not a picture\n").unwrap();
    let audio = tone(dir.path(), "voice.wav", 1.0);
    let run = compose(json!({"image": [path_str(&fake)], "audio": path_str(&audio)}));
    let err = error_of(&run);
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("slide.png"), "{}", err.message);
    assert!(
        err.message.contains("Invalid PNG signature"),
        "{}",
        err.message
    );
    assert!(
        !err.message.contains('\n'),
        "one line, not the log: {}",
        err.message
    );
    assert!(run.outputs.is_empty());

    // Sound given as a picture.
    let run = compose(json!({"image": [path_str(&audio)], "audio": path_str(&audio)}));
    let err = error_of(&run);
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("not a picture"), "{}", err.message);
}

#[test]
fn audio_that_is_not_audio_or_is_empty_is_refused() {
    let dir = TempDir::new().unwrap();
    let image = still(dir.path(), "slide.png", "gray", 64, 64);
    let garbage = dir.path().join("voice.wav");
    std::fs::write(&garbage, "not a sound").unwrap();
    let empty = generate(
        dir.path(),
        "empty.wav",
        "anullsrc=sample_rate=22050",
        &["-t", "0"],
    );
    for (audio, expected) in [
        (&garbage, "Invalid data"),
        (&image, "no sound"),
        (&empty, "no audio"),
    ] {
        let run = compose(json!({"image": [path_str(&image)], "audio": path_str(audio)}));
        let err = error_of(&run);
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{audio:?}: {err:?}");
        assert!(err.message.contains(expected), "{audio:?}: {}", err.message);
        assert!(!err.message.contains("file:"), "{}", err.message);
    }
}

#[test]
fn odd_frame_sizes_are_refused_before_ffmpeg_runs() {
    let run =
        compose(json!({"image": ["/nonexistent.png"], "audio": "/nonexistent.wav", "width": 641}));
    let err = error_of(&run);
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("even"), "{}", err.message);
}

#[test]
fn missing_programs_are_unavailable_with_an_install_hint() {
    let dir = TempDir::new().unwrap();
    let image = still(dir.path(), "slide.png", "gray", 64, 64);
    let audio = tone(dir.path(), "voice.wav", 1.0);
    let params = json!({"image": [path_str(&image)], "audio": path_str(&audio)});

    // ffprobe is looked for beside the configured ffmpeg.
    let mut settings = Settings::default();
    settings.set("program", "/nonexistent/bin/ffmpeg");
    let run = testing::run::<Ffmpeg>(
        "ffmpeg",
        &settings,
        testing::job("compose", "ffmpeg", params.clone()),
    );
    let err = error_of(&run);
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.message.contains("/nonexistent/bin/ffprobe"),
        "{}",
        err.message
    );
    assert!(
        err.hint
            .as_deref()
            .unwrap()
            .contains("apt-get install ffmpeg")
    );

    settings.set("ffprobe", "ffprobe");
    let run = testing::run::<Ffmpeg>(
        "ffmpeg",
        &settings,
        testing::job("compose", "ffmpeg", params),
    );
    let err = error_of(&run);
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.message.contains("/nonexistent/bin/ffmpeg"),
        "{}",
        err.message
    );
}

/// Returns the ids of the processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may end between the listing and the read.
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn cancelling_kills_ffmpeg_and_removes_the_temporary_file() {
    let dir = TempDir::new().unwrap();
    let image = still(dir.path(), "slide.png", "navy", 1920, 1080);
    // Ten minutes of silence: seconds to encode, but compressed to almost nothing.
    let audio = generate(dir.path(), "long.flac", "anullsrc=duration=600", &[]);
    // The work directory's unique name marks this job's ffmpeg: its output lives there.
    let work = TempDir::new().unwrap();
    let marker = work.path().to_str().unwrap().to_string();
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    let watched = marker.clone();
    let canceller = thread::spawn(move || {
        // Cancel only once ffmpeg itself is running, so the test sees it killed.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while seen.is_empty() && Instant::now() < deadline {
            seen = processes_with(&watched);
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_millis(300));
        flag.store(true, Ordering::SeqCst);
        seen
    });
    let mut job = testing::job(
        "compose",
        "ffmpeg",
        json!({"image": [path_str(&image)], "audio": path_str(&audio)}),
    );
    job.work_dir = Some(marker.clone());
    let started = Instant::now();
    let run = testing::run_with_cancel::<Ffmpeg>("ffmpeg", &Settings::default(), job, cancel);
    let seen = canceller.join().unwrap();
    assert_eq!(error_of(&run).kind, ErrorKind::Cancelled);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(run.outputs.is_empty(), "no partial video is emitted");

    let pid: u32 = run
        .logs
        .iter()
        .find_map(|l| l.message.strip_prefix("ffmpeg runs as process "))
        .expect("the process id is logged")
        .parse()
        .unwrap();
    assert_eq!(seen, [pid], "ffmpeg was running when the job was cancelled");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "ffmpeg (process {pid}) outlived its job"
    );
    assert!(processes_with(&marker).is_empty());

    let temp = run
        .logs
        .iter()
        .find_map(|l| l.message.strip_prefix("ffmpeg writes to "))
        .expect("the temporary file is logged");
    assert!(Path::new(temp).starts_with(work.path()), "{temp}");
    assert!(!Path::new(temp).exists(), "{temp} was left behind");
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
}

#[test]
fn the_video_is_made_in_the_work_dir_and_nothing_is_left_there() {
    let dir = TempDir::new().unwrap();
    let image = still(dir.path(), "slide.png", "teal", 64, 64);
    let audio = tone(dir.path(), "voice.wav", 1.0);
    let work = TempDir::new().unwrap();
    let mut job = testing::job(
        "compose",
        "ffmpeg",
        json!({"image": path_str(&image), "audio": path_str(&audio), "width": 320, "height": 240}),
    );
    job.work_dir = Some(work.path().to_str().unwrap().to_string());
    let run = testing::run::<Ffmpeg>("ffmpeg", &Settings::default(), job);
    check_video(&run, dir.path(), 320, 240, &audio);
    assert!(run.closed.contains(&"video".to_string()));
    let temp = run
        .logs
        .iter()
        .find_map(|l| l.message.strip_prefix("ffmpeg writes to "))
        .unwrap();
    assert!(Path::new(temp).starts_with(work.path()), "{temp}");
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
}

#[test]
fn params_the_manifest_refuses_never_reach_ffmpeg() {
    let mut settings = Settings::default();
    // Were the plugin called, these programs would fail as unavailable instead.
    settings.set("program", "/nonexistent/ffmpeg");
    settings.set("ffprobe", "/nonexistent/ffprobe");
    let base = || json!({"image": ["/a.png"], "audio": "/a.wav"});
    let with = |name: &str, value: Value| {
        let mut params = base();
        params[name] = value;
        params
    };
    for (params, name) in [
        (with("width", json!(8)), "width"),
        (with("height", json!(4322)), "height"),
        (with("fps", json!(0)), "fps"),
        (with("fps", json!(61)), "fps"),
        (with("fps", json!(2.5)), "fps"),
        (with("speed", json!(2)), "speed"),
        (json!({"audio": "/a.wav"}), "image"),
        (json!({"image": ["/a.png"]}), "audio"),
    ] {
        let run = testing::run::<Ffmpeg>(
            "ffmpeg",
            &settings,
            testing::job("compose", "ffmpeg", params.clone()),
        );
        let err = error_of(&run);
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{params}: {err:?}");
        assert!(
            err.message.contains(&format!("`{name}`")),
            "{}",
            err.message
        );
    }
}
