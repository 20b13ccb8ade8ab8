//! Where outputs go, and what a user or script learns about them.

use launcher_testkit::test_context;

#[test]
fn stdout_output_refuses_json_and_carries_the_output_alone() {
    let ctx = test_context!();
    let out = ctx.run(["run", "tts", "--text", "hi", "-o", "-", "--json"]);
    out.expect_code(2);
    assert!(out.stdout.is_empty(), "{out:#?}");
    assert!(out.stderr.contains("--json"), "{}", out.stderr);
    assert!(ctx.work_files().is_empty(), "{:?}", ctx.work_files());

    let help = ctx.run(["run", "tts", "--help"]);
    assert!(help.stdout.contains("--json is refused"), "{}", help.stdout);
}

#[test]
fn written_paths_reach_stdout_even_with_quiet() {
    let ctx = test_context!();
    let first = ctx.run(["run", "tts", "--text", "hi", "-q"]);
    first.success();
    assert_eq!(first.stdout, "tts.wav\n", "{first:#?}");
    let second = ctx.run(["run", "tts", "--text", "hi"]);
    second.success();
    assert_eq!(second.stdout, "tts-2.wav\n", "{second:#?}");
    let named = ctx.run(["run", "tts", "--text", "hi", "-o", "named.wav"]);
    assert_eq!(named.stdout, "named.wav\n", "{named:#?}");

    // With -o -, stdout is the output and nothing else.
    let piped = ctx.run(["run", "tts", "--text", "hi", "-o", "-"]);
    piped.success();
    // Streamed as it was made, the WAV says its length is not known, as espeak-ng's own does.
    let wav = launcher_sdk::media::Wav::parse(&piped.stdout_bytes).unwrap();
    assert!(wav.streamed && wav.duration_secs() > 0.1, "{wav:?}");
    assert!(!piped.stdout.contains("tts"), "only the WAV on stdout");

    // --json keeps them in the result.
    let json = ctx.run(["run", "tts", "--text", "hi", "--json"]).json();
    assert_eq!(json["outputs"][0]["path"], "tts-3.wav");
}

#[test]
fn a_directory_is_never_replaced_and_nothing_is_left() {
    let ctx = test_context!();
    std::fs::create_dir(ctx.work_file("out")).unwrap();
    for force in [false, true] {
        let mut args = vec!["run", "tts", "--text", "hi", "-o", "out"];
        if force {
            args.push("--force");
        }
        let out = ctx.run(&args);
        out.expect_code(13);
        assert!(
            out.stderr.contains("is a directory") && out.stderr.contains("never replaces"),
            "{}",
            out.stderr
        );
        assert_eq!(ctx.work_files(), ["out"]);
        assert!(launcher_testkit::cli::list_dir(&ctx.work_file("out")).is_empty());
    }
}

#[test]
fn an_unwritable_output_is_named_before_the_job_runs() {
    let ctx = test_context!();
    let out = ctx.run(["run", "tts", "--text", "hi", "-o", "/sys/x.wav"]);
    out.expect_code(13);
    assert!(out.stderr.contains("/sys/x.wav"), "{}", out.stderr);
    assert!(!out.stderr.contains("bug"), "{}", out.stderr);

    // compose learns it before encoding anything (these inputs would fail the encoder).
    std::fs::write(ctx.work_file("a.png"), b"").unwrap();
    std::fs::write(ctx.work_file("a.wav"), b"").unwrap();
    let compose = ctx.run([
        "run",
        "compose",
        "--image",
        "a.png",
        "--audio",
        "a.wav",
        "-o",
        "/sys/slides.mp4",
    ]);
    compose.expect_code(13);
    assert!(
        compose.stderr.contains("/sys/slides.mp4"),
        "{}",
        compose.stderr
    );

    let missing = ctx.run(["run", "tts", "--text", "hi", "-o", "no/such/x.wav"]);
    missing.expect_code(13);
    assert!(missing.stderr.contains("no/such"), "{}", missing.stderr);
}

#[test]
fn a_character_device_is_written_into() {
    let ctx = test_context!();
    let out = ctx.run(["run", "tts", "--text", "hi", "-o", "/dev/null"]);
    out.success();
    assert_eq!(out.stdout, "/dev/null\n");
    assert!(ctx.work_files().is_empty(), "{:?}", ctx.work_files());
}

#[test]
fn the_offline_voice_encodes_what_the_file_name_asks_for() {
    let ctx = test_context!();
    // espeak-ng makes WAV; ffmpeg makes the rest, so each file is what its name says.
    for (name, media_type) in [
        ("speech.mp3", "audio/mpeg"),
        ("speech.ogg", "audio/ogg"),
        ("speech.flac", "audio/flac"),
        ("speech.m4a", "audio/mp4"),
    ] {
        let out = ctx.run([
            "run",
            "tts",
            "Hello from the offline voice.",
            "-o",
            name,
            "--json",
        ]);
        let report = out.success().json();
        assert_eq!(report["tool"], "espeak");
        assert_eq!(report["outputs"][0]["media_type"], media_type, "{name}");
        let bytes = std::fs::read(ctx.work_file(name)).unwrap();
        let ext = name.rsplit('.').next().unwrap();
        let secs = launcher_testkit::media::probe_duration(&bytes, ext).unwrap();
        assert!((1.0..5.0).contains(&secs), "{name}: {secs} s");
    }
    // Streamed to stdout as MP3 too (made from the whole WAV first).
    let piped = ctx.run(["run", "tts", "hi", "--format", "mp3", "-o", "-"]);
    piped.success();
    assert!(launcher_testkit::media::probe_duration(&piped.stdout_bytes, "mp3").unwrap() > 0.1);
    let unknown = ctx.run(["run", "tts", "hi", "--format", "xyz"]);
    unknown.expect_code(5);
    assert!(
        unknown.stderr.contains("unknown audio format `xyz`"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn a_format_and_a_file_name_that_disagree_are_refused_truthfully() {
    let ctx = test_context!();

    for tool in ["espeak", "azure-tts"] {
        let out = ctx.run([
            "run", "tts", "--tool", tool, "--text", "hi", "--format", "mp3", "-o", "x.wav",
        ]);
        out.expect_code(2);
        assert!(
            out.stderr.contains("--format mp3") && out.stderr.contains("x.wav"),
            "{}",
            out.stderr
        );
    }
    let azure_name = ctx.run([
        "run",
        "tts",
        "--tool",
        "azure-tts",
        "--text",
        "hi",
        "--format",
        "audio-24khz-48kbitrate-mono-mp3",
        "-o",
        "x.wav",
    ]);
    azure_name.expect_code(2);
    assert!(ctx.work_files().is_empty(), "{:?}", ctx.work_files());
}

#[cfg(target_os = "linux")]
/// Returns the command names of the children of process `pid` (Linux).
fn children(pid: u32) -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
    {
        let Ok(task) = task else { continue };
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in list.split_whitespace() {
            if let Ok(comm) = std::fs::read_to_string(format!("/proc/{child}/comm")) {
                names.push(comm.trim().to_string());
            }
        }
    }
    names
}

#[cfg(target_os = "linux")]
#[test]
fn stdout_output_streams_while_the_engine_still_speaks() {
    use std::io::Read;
    let ctx = test_context!();
    // Far more speech than a pipe holds: once this test stops reading, the engine blocks
    // writing, so it is still running for as long as the test looks.
    std::fs::write(ctx.work_file("long.txt"), "Streaming speech. ".repeat(5000)).unwrap();
    let mut child = ctx
        .cmd()
        .args(["run", "tts", "--file", "long.txt", "-o", "-"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut head = [0u8; 44];
    stdout.read_exact(&mut head).unwrap();
    assert_eq!((&head[0..4], &head[8..12]), (&b"RIFF"[..], &b"WAVE"[..]));
    // The first bytes came while espeak-ng was still speaking, not after it finished.
    let running = children(child.id());
    assert!(
        running.iter().any(|c| c.starts_with("espeak")),
        "espeak-ng should still run: {running:?}"
    );
    // The data size is the streaming marker: the length is not known yet.
    let declared = u32::from_le_bytes(head[40..44].try_into().unwrap());
    assert!(declared >= 0x7FFF_F000, "{declared:#x}");
    // Closing the pipe stops the job quietly.
    drop(stdout);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(ctx.work_files(), ["long.txt"]);
}

#[test]
fn play_hands_the_written_file_to_a_player() {
    let mut ctx = test_context!();
    let log = ctx.work_file("played.txt");
    let player = ctx.work_file("player.sh");
    std::fs::write(
        &player,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&player, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    ctx.env("LAUNCHER_PLAYER", format!("{} --quietly", player.display()));
    let out = ctx.run(["run", "tts", "hello", "-o", "hello.wav", "--play"]);
    out.success();
    let played = std::fs::read_to_string(&log).unwrap();
    assert!(
        played.starts_with("--quietly ") && played.trim_end().ends_with("hello.wav"),
        "{played}"
    );
    // The output goes to stdout with -o -: nothing to play.
    ctx.run(["run", "tts", "hello", "-o", "-", "--play"])
        .expect_code(2);
    // A player that fails is a warning: the file is written all the same.
    ctx.env("LAUNCHER_PLAYER", "false");
    let failed = ctx.run(["run", "tts", "again", "-o", "again.wav", "--play"]);
    failed.success();
    assert!(failed.stderr.contains("warning"), "{}", failed.stderr);
    assert!(ctx.work_file("again.wav").exists());
}
