//! SDK 1.0 through the real binary: checkpoints, detached and resumed jobs, signals, tools
//! described from configuration and arguments, and kinds this launcher does not know.

use launcher_testkit::cli::{TestContext, job_id};
use launcher_testkit::test_context;

fn context() -> TestContext {
    let ctx = test_context!();
    ctx.add_plugin("launcher_fixture_remote", "remote");
    ctx
}

#[test]
fn a_signal_after_a_checkpoint_detaches_the_job_and_resume_finishes_it_once() {
    let ctx = context();
    let running = ctx.spawn_until(
        [
            "run",
            "remote",
            "a lighthouse",
            "--delay-ms",
            // Long enough to be signalled while it waits; the resumed run waits what is left.
            "2000",
            "-o",
            "clip.webm",
        ],
        "submitted",
    );
    running.signal("INT");
    let out = running.wait();
    out.expect_code(12);
    assert!(out.stderr.contains("goes on at remote"), "{}", out.stderr);
    assert!(!ctx.work_file("clip.webm").exists());
    assert!(
        ctx.work_files()
            .iter()
            .all(|f| !f.ends_with(".part") && !f.contains(".work")),
        "{:?}",
        ctx.work_files()
    );

    let id = job_id(&out.stderr);
    let resumed = ctx.run(["run", "--resume", &id, "--json"]);
    resumed.success();
    let report = resumed.json();
    assert_eq!(report["info"]["resumed"], true);
    assert_eq!(report["job"], id.as_str());
    let video = std::fs::read(ctx.work_file("clip.webm")).unwrap();
    assert_eq!(&video[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
    assert!(String::from_utf8_lossy(&video).contains(&format!("task-{id}")));

    // Finished jobs are not run twice.
    let again = ctx.run(["run", "--resume", &id]);
    again.expect_code(5);
    assert!(again.stderr.contains("is done"), "{}", again.stderr);
}

#[test]
fn detach_submits_and_returns_and_a_prefix_of_the_id_resumes() {
    let ctx = context();
    let out = ctx.run(["run", "remote", "a storm", "--detach", "--delay-ms", "300"]);
    out.success();
    assert!(ctx.work_files().is_empty(), "{:?}", ctx.work_files());
    let id = job_id(&out.stderr);
    let resumed = ctx.run(["run", "--resume", &id[..id.len() - 2]]);
    resumed.success();
    assert!(
        ctx.work_file("txt2vid.webm").exists(),
        "{:?}",
        ctx.work_files()
    );

    let unknown = ctx.run(["run", "--resume", "nosuchjob"]);
    unknown.expect_code(3);
}

#[test]
fn cancel_remote_turns_a_signal_into_cancellation() {
    let ctx = context();
    let running = ctx.spawn_until(
        [
            "run",
            "remote",
            "fog",
            "--delay-ms",
            "60000",
            "--cancel-remote",
        ],
        "submitted",
    );
    running.signal("TERM");
    let out = running.wait();
    out.expect_code(143);
    assert!(out.stderr.contains("cancelled task-"), "{}", out.stderr);
    assert!(ctx.work_files().is_empty(), "{:?}", ctx.work_files());
}

#[test]
fn sigterm_and_sighup_cancel_a_local_job_and_remove_partial_outputs() {
    for (signal, code) in [("TERM", 143), ("HUP", 129), ("INT", 130)] {
        let ctx = test_context!();
        ctx.add_plugin("launcher_fixture_panicky", "panicky");
        // The panicky plugin writes part of its output, logs, then waits to be cancelled.
        let running = ctx.spawn_until(
            [
                "run", "panicky", "--text", "x", "--mode", "hang", "-o", "out.wav",
            ],
            "hanging",
        );
        running.signal(signal);
        let out = running.wait();
        out.expect_code(code);
        assert!(
            ctx.work_files().is_empty(),
            "{signal}: {:?}",
            ctx.work_files()
        );
    }
}

#[test]
fn tools_described_from_the_config_are_listed_and_cached() {
    let ctx = context();
    ctx.config("[tools.remote.profiles.fast]\npriority = 5\n");
    let first = ctx.run(["-v", "list", "--json"]);
    first.success();
    let ids: Vec<String> = first
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&"remote-fast".to_string()), "{ids:?}");
    assert!(
        first.stderr.contains("to describe its configured tools"),
        "{}",
        first.stderr
    );
    let second = ctx.run(["-v", "list"]);
    second.success();
    assert!(!second.stderr.contains("to describe"), "{}", second.stderr);
    // A changed configuration is described anew.
    ctx.config("[tools.remote.profiles.slow]\npriority = 1\n");
    let third = ctx.run(["list"]);
    assert!(third.stdout.contains("remote-slow") && !third.stdout.contains("remote-fast"));
}

#[test]
fn parameters_described_by_a_workflow_file_reach_help_and_the_job() {
    let ctx = context();
    let workflow = ctx.work_file("wf.json");
    std::fs::write(&workflow, r#"{"inputs": ["seed", "steps"]}"#).unwrap();
    let help = ctx.run(["run", "workflow", "--workflow", "wf.json", "--help"]);
    help.success();
    assert!(
        help.stdout.contains("--seed") && help.stdout.contains("--steps"),
        "{}",
        help.stdout
    );
    let out = ctx.run(["run", "workflow", "--workflow", "wf.json", "--seed", "-3"]);
    out.success();
    let params = out.json();
    assert_eq!(params["seed"], -3);
    let bad = ctx.run(["run", "workflow", "--workflow", "wf.json", "--cfg", "2"]);
    bad.expect_code(2);
    // Editing the file in place changes the parameters.
    std::fs::write(&workflow, r#"{"inputs": ["cfg"]}"#).unwrap();
    ctx.run(["run", "workflow", "--workflow", "wf.json", "--cfg", "2"])
        .success();
}

#[test]
fn a_kind_this_launcher_does_not_know_is_shown_not_fatal() {
    let ctx = context();
    let out = ctx.run(["list"]);
    out.success();
    assert!(
        out.stdout
            .contains("hologram (a kind this launcher does not know)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("holo"));
    assert!(out.stdout.contains("remote"));
}

#[test]
fn a_plugin_of_a_newer_minor_loads_and_runs_in_this_host() {
    let ctx = test_context!();
    ctx.add_plugin("launcher_fixture_minor_future", "minor-future");
    let list = ctx.run(["list"]);
    list.success();
    assert!(
        list.stdout.contains("future"),
        "{}{}",
        list.stdout,
        list.stderr
    );
    let out = ctx.run(["run", "future", "hello"]);
    out.success();
    assert_eq!(out.stdout.trim(), "from ABI 2.9: hello");
}
