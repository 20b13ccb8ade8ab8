//! `launcher jobs` and money through the real binary and the remote fixture: jobs detached,
//! listed and waited, a launcher killed with SIGKILL mid-poll and its job resumed, remote
//! cancellation, a job another launcher runs, and cost confirmation.

use launcher_testkit::cli::{TestContext, job_id};
use launcher_testkit::test_context;

fn context() -> TestContext {
    let ctx = test_context!();
    ctx.add_plugin("launcher_fixture_remote", "remote");
    ctx
}

/// Returns `launcher jobs --all --json` as (id, state) pairs.
fn states(ctx: &TestContext) -> Vec<(String, String)> {
    let out = ctx.run(["jobs", "--all", "--json"]);
    out.success();
    out.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["id"].as_str().unwrap().to_string(),
                j["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Returns the `.webm` files in the working directory.
fn videos(ctx: &TestContext) -> Vec<String> {
    ctx.work_files()
        .into_iter()
        .filter(|f| f.ends_with(".webm"))
        .collect()
}

#[test]
fn a_detached_job_is_listed_then_waited_for_by_a_prefix_of_its_id() {
    let ctx = context();
    let out = ctx.run(["run", "remote", "a storm", "--detach", "--delay-ms", "300"]);
    out.success();
    let id = job_id(&out.stderr);
    assert_eq!(states(&ctx), [(id.clone(), "detached".to_string())]);
    let listed = ctx.run(["jobs"]);
    listed.success();
    assert!(listed.stdout.starts_with("ID "), "{}", listed.stdout);
    assert!(
        listed.stdout.contains(&id) && listed.stdout.contains("detached"),
        "{}",
        listed.stdout
    );
    assert!(listed.stdout.contains("txt2vid.*"), "{}", listed.stdout);

    let waited = ctx.run(["jobs", "wait", &id[..id.len() - 3], "--json"]);
    waited.success();
    let report = waited.json();
    assert_eq!(report[0]["job"], id.as_str());
    assert_eq!(report[0]["state"], "done");
    let path = report[0]["outputs"][0]["path"].as_str().unwrap();
    assert!(path.ends_with("txt2vid.webm"), "{path}");
    assert_eq!(videos(&ctx), ["txt2vid.webm"]);
    assert_eq!(states(&ctx), [(id.clone(), "done".to_string())]);
    // Without --all, a job that ended a moment ago is still recent, and shows the file it
    // wrote instead of the planned name, with no stale progress.
    let listed = ctx.run(["jobs"]);
    assert!(listed.stdout.contains("done"), "{}", listed.stdout);
    assert!(listed.stdout.contains(path), "{}", listed.stdout);
    let listed = ctx.run(["jobs", "--json"]).json();
    assert_eq!(listed[0]["files"][0], path);
    assert_eq!(listed[0]["progress"], serde_json::Value::Null);

    // A finished job is reported, not run again.
    let again = ctx.run(["jobs", "wait", &id]);
    again.success();
    assert_eq!(videos(&ctx), ["txt2vid.webm"]);
    assert!(ctx.run(["jobs", "wait", "nosuchjob"]).code == 3);
}

#[test]
fn a_launcher_killed_mid_poll_loses_nothing_and_jobs_resume_writes_the_output_once() {
    let ctx = context();
    let running = ctx.spawn_until(
        [
            "run",
            "remote",
            "a lighthouse",
            "--delay-ms",
            "1500",
            "-o",
            "clip.webm",
        ],
        "submitted",
    );
    running.signal("KILL");
    let killed = running.wait();
    assert_eq!(killed.code, -1, "killed by a signal");
    let listed = states(&ctx);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].1, "interrupted", "a running job nobody holds");
    let id = listed[0].0.clone();
    let shown = ctx.run(["jobs"]);
    assert!(
        shown.stdout.contains(&format!("rendering task-{id} (25%)")),
        "the last progress is kept: {}",
        shown.stdout
    );
    assert!(videos(&ctx).is_empty(), "{:?}", ctx.work_files());

    // Resumed from another directory: the output still goes where it was planned.
    let elsewhere = tempfile::tempdir().unwrap();
    let resumed = ctx
        .cmd()
        .current_dir(elsewhere.path())
        .args(["jobs", "resume", "--json"])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{resumed:?}");
    let report: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(report.as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report[0]["job"], id.as_str());
    assert_eq!(report[0]["state"], "done");
    assert!(testkit_files(elsewhere.path()).is_empty());

    assert_eq!(ctx.work_files(), ["clip.webm"], "no partial or work files");
    let video = std::fs::read(ctx.work_file("clip.webm")).unwrap();
    assert_eq!(&video[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
    assert_eq!(&video[4..], format!("task-{id}").as_bytes(), "complete");
    assert_eq!(states(&ctx), [(id.clone(), "done".to_string())]);

    let nothing = ctx.run(["jobs", "resume"]);
    nothing.success();
    assert!(
        nothing.stderr.contains("no unfinished jobs"),
        "{}",
        nothing.stderr
    );
    assert_eq!(ctx.work_files(), ["clip.webm"]);
}

fn testkit_files(dir: &std::path::Path) -> Vec<String> {
    launcher_testkit::cli::list_dir(dir)
}

#[test]
fn a_job_killed_while_submitting_is_never_submitted_again_and_fails_clearly() {
    let ctx = context();
    let running = ctx.spawn_until(
        ["run", "remote", "dust", "--submit-ms", "60000"],
        "submitting",
    );
    running.signal("KILL");
    running.wait();
    let listed = states(&ctx);
    assert_eq!(listed[0].1, "interrupted");
    let resumed = ctx.run(["jobs", "resume"]);
    resumed.expect_code(8);
    assert!(
        resumed
            .stderr
            .contains("unknown whether the remote service received it"),
        "{}",
        resumed.stderr
    );
    assert!(
        resumed.stderr.contains("not submitted a second time"),
        "{}",
        resumed.stderr
    );
    assert!(
        !resumed.stderr.contains("submitted task-"),
        "{}",
        resumed.stderr
    );
    assert_eq!(states(&ctx)[0].1, "failed");
    assert!(videos(&ctx).is_empty());
}

#[test]
fn jobs_cancel_cancels_the_remote_task_and_marks_the_job_cancelled() {
    let mut ctx = context();
    let log = ctx.home.path().join("remote.log");
    ctx.env("REMOTE_FIXTURE_LOG", &log);
    let out = ctx.run(["run", "remote", "fog", "--detach", "--delay-ms", "60000"]);
    out.success();
    let id = job_id(&out.stderr);
    let cancelled = ctx.run(["jobs", "cancel", &id, "--json"]);
    cancelled.success();
    assert_eq!(cancelled.json()[0]["state"], "cancelled");
    assert!(
        cancelled.stderr.contains("cancelled job"),
        "{}",
        cancelled.stderr
    );
    let remote = std::fs::read_to_string(&log).unwrap();
    assert_eq!(remote.trim(), format!("cancelled task-{id} remotely"));
    assert_eq!(states(&ctx), [(id.clone(), "cancelled".to_string())]);
    assert!(videos(&ctx).is_empty(), "{:?}", ctx.work_files());

    let twice = ctx.run(["jobs", "cancel", &id]);
    twice.expect_code(5);
    assert!(
        twice.stderr.contains("nothing to cancel"),
        "{}",
        twice.stderr
    );
}

#[test]
fn a_job_another_launcher_runs_is_shown_running_and_waited_for_not_taken() {
    let ctx = context();
    let running = ctx.spawn_until(
        [
            "run",
            "remote",
            "rain",
            "--delay-ms",
            "1500",
            "-o",
            "rain.webm",
        ],
        "submitted",
    );
    let listed = ctx.run(["jobs", "--json"]);
    let job = &listed.json()[0];
    assert_eq!(job["state"], "running");
    assert!(job["pid"].as_u64().is_some(), "{job}");
    assert!(
        job["progress"]
            .as_str()
            .unwrap()
            .starts_with("rendering task-"),
        "{job}"
    );
    let id = job["id"].as_str().unwrap().to_string();

    let cancel = ctx.run(["jobs", "cancel", &id]);
    cancel.expect_code(5);
    assert!(
        cancel.stderr.contains("being run by another launcher"),
        "{}",
        cancel.stderr
    );
    let resume = ctx.run(["run", "--resume", &id]);
    resume.expect_code(5);

    let waited = ctx.run(["jobs", "wait", &id, "--json"]);
    waited.success();
    assert!(
        waited.stderr.contains("waiting for it to end"),
        "{}",
        waited.stderr
    );
    assert_eq!(waited.json()[0]["state"], "done");
    assert!(
        waited.json()[0]["outputs"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("rain.webm")
    );
    running.wait().success();
    assert_eq!(ctx.work_files(), ["rain.webm"]);
}

#[test]
fn a_cost_over_the_threshold_is_refused_without_a_terminal_unless_yes() {
    let ctx = context();
    // 10 s at $0.50 is $5.00, over the default limit of $1.00.
    let paid = [
        "run",
        "remote",
        "a city",
        "--price",
        "0.5",
        "--duration",
        "10",
    ];
    let refused = ctx.run(paid);
    refused.expect_code(2);
    assert!(
        refused.stderr.contains(
            "would cost about $5.00 (10 s of remote video), more than your limit of $1.00"
        ),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert!(
        !refused.stderr.contains("submitted task-"),
        "nothing was submitted"
    );
    assert!(videos(&ctx).is_empty());
    assert!(states(&ctx).is_empty(), "no job was recorded");

    let accepted = ctx.run(paid.iter().copied().chain(["--yes", "--json"]));
    accepted.success();
    assert!(
        accepted
            .stderr
            .contains("this job will cost about $5.00 (10 s of remote video); accepted by --yes"),
        "{}",
        accepted.stderr
    );
    let report = accepted.json();
    assert_eq!(report["cost"]["amount"], 5.0);
    assert_eq!(report["cost"]["currency"], "USD");
    assert_eq!(videos(&ctx).len(), 1);

    // A raised limit, or a cheaper job, only shows the cost.
    ctx.run(["config", "set", "defaults.confirm_over", "10"])
        .success();
    let shown = ctx.run(paid);
    shown.success();
    assert!(
        shown.stderr.contains("this job will cost about $5.00"),
        "{}",
        shown.stderr
    );
    ctx.config("");
    let cheap = ctx.run([
        "run",
        "remote",
        "a hut",
        "--price",
        "0.1",
        "--duration",
        "5",
    ]);
    cheap.success();
    assert!(
        cheap
            .stderr
            .contains("this job will cost about $0.50 (5 s of remote video)"),
        "{}",
        cheap.stderr
    );
    assert_eq!(videos(&ctx).len(), 3);
}

/// Runs launcher with `args` on a terminal (a pseudo-terminal from util-linux's `script`),
/// typing `answer`; returns the exit code and what the terminal showed.
#[cfg(target_os = "linux")]
fn on_terminal(ctx: &TestContext, args: &str, answer: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = ctx
        .on_terminal(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs (it makes the pseudo-terminal)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[cfg(target_os = "linux")]
#[test]
fn on_a_terminal_a_cost_over_the_threshold_is_asked_and_only_yes_submits() {
    let ctx = context();
    let paid = "run remote 'a city' --price 0.5 --duration 10";
    let (code, shown) = on_terminal(&ctx, paid, "n\n");
    assert_eq!(code, 130, "{shown}");
    assert!(shown.contains("submit it? [y/N]"), "{shown}");
    assert!(
        shown.contains("that was declined; nothing was submitted"),
        "{shown}"
    );
    assert!(videos(&ctx).is_empty());
    assert!(states(&ctx).is_empty(), "nothing was recorded");

    let (code, shown) = on_terminal(&ctx, paid, "y\n");
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("submitted task-"), "{shown}");
    assert_eq!(videos(&ctx).len(), 1);
}

/// Runs launcher with `args` on a terminal as [`on_terminal`] does, typing Ctrl-C once the
/// terminal shows `after`, then `answer` once it shows the question; returns the exit code and
/// what the terminal showed.
#[cfg(target_os = "linux")]
fn interrupted_on_terminal(
    ctx: &TestContext,
    args: &str,
    after: &str,
    answer: &str,
) -> (i32, String) {
    use std::io::{Read, Write};
    let mut child = ctx
        .on_terminal(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("util-linux `script` runs (it makes the pseudo-terminal)");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut shown = String::new();
    let mut wait_for = |marker: &str, shown: &mut String| {
        let mut buf = [0u8; 4096];
        while !shown.contains(marker) {
            let n = stdout.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "the terminal closed before showing `{marker}`: {shown}"
            );
            shown.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    wait_for(after, &mut shown);
    stdin.write_all(b"\x03").unwrap();
    wait_for("[y/N]", &mut shown);
    stdin.write_all(answer.as_bytes()).unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    shown.push_str(&rest);
    drop(stdin);
    (child.wait().unwrap().code().unwrap_or(-1), shown)
}

#[cfg(target_os = "linux")]
#[test]
fn ctrl_c_on_a_terminal_asks_whether_to_cancel_the_remote_task() {
    let mut ctx = context();
    let log = ctx.home.path().join("remote.log");
    ctx.env("REMOTE_FIXTURE_LOG", &log);
    let job = "run remote 'a harbour' --delay-ms 60000 -v";

    // No: the task goes on, the job is detached and can be collected later.
    let (code, shown) = interrupted_on_terminal(&ctx, job, "submitted task-", "n\n");
    assert_eq!(code, 12, "{shown}");
    assert!(shown.contains("cancel it there too? [y/N]"), "{shown}");
    assert!(shown.contains("launcher jobs wait"), "{shown}");
    assert!(!log.exists(), "nothing was cancelled remotely");
    let kept = states(&ctx);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].1, "detached");

    // Yes: the plugin cancels the remote task and the job ends cancelled.
    let (code, shown) = interrupted_on_terminal(&ctx, job, "submitted task-", "y\n");
    assert_eq!(code, 130, "{shown}");
    assert!(shown.contains("cancelling the task at remote"), "{shown}");
    let remote = std::fs::read_to_string(&log).unwrap();
    assert!(remote.contains("cancelled task-"), "{remote}");
    let states = states(&ctx);
    assert_eq!(states.len(), 2);
    assert_eq!(states[0].1, "cancelled", "{states:?}");
    assert!(videos(&ctx).is_empty(), "{:?}", ctx.work_files());
}

#[test]
fn an_output_download_that_breaks_off_is_resumed_and_an_expired_url_says_so() {
    use launcher_testkit::http::{HttpServer, Reply, Response};
    let video: Vec<u8> = [0x1A, 0x45, 0xDF, 0xA3]
        .into_iter()
        .chain((0..2_000_000u32).map(|i| (i % 251) as u8))
        .collect();
    let served = video.clone();
    let first = std::sync::atomic::AtomicBool::new(true);
    let server = HttpServer::start(move |request| {
        if request.path.contains("expired") {
            return Reply::Respond(Response::text(403, "AccessDenied: Request has expired"));
        }
        let whole = Response::new(200)
            .header("Last-Modified", "Mon, 30 Nov 2026 12:00:00 GMT")
            .body(served.clone());
        if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Reply::Truncate(whole, 700_000);
        }
        let start: usize = request
            .header("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.trim_end_matches('-').parse().ok())
            .expect("the second request asks for the rest");
        Reply::Respond(
            Response::new(206)
                .header(
                    "Content-Range",
                    format!("bytes {start}-{}/{}", served.len() - 1, served.len()),
                )
                .body(served[start..].to_vec()),
        )
    });
    let ctx = context();
    let url = format!("{}/out/video.webm", server.url());
    let out = ctx.run([
        "run", "remote", "sea", "--url", &url, "-o", "sea.webm", "--json",
    ]);
    out.success();
    assert_eq!(out.json()["info"]["downloaded"], video.len() as u64);
    assert!(std::fs::read(ctx.work_file("sea.webm")).unwrap() == video);
    assert_eq!(ctx.work_files(), ["sea.webm"]);
    assert_eq!(server.requests().len(), 2);

    let expired = format!(
        "{}/expired.webm?X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-Signature=s",
        server.url()
    );
    let out = ctx.run(["run", "remote", "sea", "--url", &expired, "-o", "late.webm"]);
    out.expect_code(8);
    assert!(
        out.stderr.contains("the output URL expired"),
        "{}",
        out.stderr
    );
    assert_eq!(ctx.work_files(), ["sea.webm"], "nothing partial is left");
}
