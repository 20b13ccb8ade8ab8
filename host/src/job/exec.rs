//! Running a planned job: the plugin is loaded and invoked on a worker thread, its outputs
//! written as they arrive, while this thread shows progress and watches for signals.
//!
//! One rule for signals (Ctrl-C, SIGTERM, SIGHUP): a local job is cancelled (the plugin stops
//! its children, partial outputs are removed, exit 130/143/129); a job that recorded a remote
//! checkpoint is detached instead (its record stays resumable, nothing remote is cancelled,
//! exit 12) unless `--cancel-remote` was given. A second signal ends launcher at once.
//!
//! Money: a plugin asks before it submits paid work ([`launcher_sdk::Context::confirm_cost`]).
//! The estimate is always shown; above `[defaults] confirm_over` the user is asked y/N on a
//! terminal, `--yes` accepts without asking, and with nobody to ask the job is refused (exit
//! 2). A declined or refused job submitted nothing and ends as cancelled.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use anyhow::Result;
use launcher_sdk::abi::{CallError, Event, EventHandler};
use launcher_sdk::cost::Cost;
use launcher_sdk::serde_json::Value;
use launcher_sdk::{CreateRequest, ErrorKind, Job, JobResult, LogLevel, LogLine, Progress};

use crate::commands::Globals;
use crate::failure::{Class, Failure, fail};
use crate::job::lock::JobLock;
use crate::job::plan::JobPlan;
use crate::job::render::Render;
use crate::job::store::{State, Store, Turn};
use crate::output::{Outputs, Pending};
use crate::{loader, settings, signals};

/// What the worker tells the watching thread.
enum Msg {
    Progress(Progress),
    Log(LogLine),
    Signal(i32),
    Done(Box<Finished>),
    /// The worker panicked in launcher's own code.
    Crashed,
    /// The plugin asks to accept a cost; the answer goes back on the sender.
    Confirm(Cost, Sender<bool>),
    /// The user's answer to whether Ctrl-C should cancel the remote task too.
    CancelRemote(bool),
}

/// The cost question while it is asked on the terminal: the first answer wins, the user's or
/// the "no" of a signal that arrives first, and goes back to the waiting worker.
struct Question {
    reply: Sender<bool>,
    answer: std::sync::Mutex<Option<bool>>,
}

impl Question {
    /// Gives `yes` as the answer unless one was given; returns whether this one counted.
    fn answer(&self, yes: bool) -> bool {
        let Ok(mut answer) = self.answer.lock() else {
            return false;
        };
        if answer.is_some() {
            return false;
        }
        *answer = Some(yes);
        let _ = self.reply.send(yes);
        true
    }

    fn accepted(&self) -> bool {
        self.answer.lock().is_ok_and(|a| *a == Some(true))
    }
}

/// What became of the cost a plugin asked to confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// At or below the threshold: shown only.
    Shown,
    /// Accepted by `--yes` or by the user's answer.
    Accepted,
    /// The user answered no.
    Declined,
    /// Above the threshold with nobody to ask, and no `--yes`.
    Refused,
}

/// The cost of a job and what became of it, for the result and the failure message.
struct Priced {
    cost: Cost,
    verdict: Verdict,
}

/// Decides about `cost` without asking: `None` when the user must be asked.
fn judge(cost: &Cost, threshold: f64, yes: bool, can_ask: bool) -> Option<Verdict> {
    if cost.amount <= threshold {
        Some(Verdict::Shown)
    } else if yes {
        Some(Verdict::Accepted)
    } else if can_ask {
        None
    } else {
        Some(Verdict::Refused)
    }
}

/// Reads the answer to the cost question: only an explicit yes accepts.
fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}

/// Reads a yes-or-no answer from stdin on a thread of its own, so the job and signals go on
/// meanwhile, and hands it to `answered` (an unreadable stdin is a no). Returns false when
/// the thread could not start.
fn read_answer(answered: impl FnOnce(bool) + Send + 'static) -> bool {
    std::thread::Builder::new()
        .name("answer".into())
        .spawn(move || {
            let mut line = String::new();
            let read = std::io::stdin().read_line(&mut line).is_ok();
            answered(read && is_yes(&line));
        })
        .is_ok()
}

/// Returns whether the user can be asked a question: stdin and stderr are a terminal.
fn can_ask() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// The signal Ctrl-C sends.
const SIGINT: i32 = 2;

/// How the worker's part ended.
struct Finished {
    outcome: Result<JobResult>,
    outputs: Outputs,
    /// Writing an output failed.
    io_error: Option<std::io::Error>,
    /// Completing an output failed for a reason of its own (a name that misdescribes it).
    close_error: Option<anyhow::Error>,
    /// Stdout was closed by its reader.
    reader_gone: bool,
    duration: Duration,
}

/// What a job left behind that its caller may need.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// The conversation a chat job was recorded in.
    pub(crate) conversation: Option<String>,
    /// What the job wrote, for the history.
    pub(crate) outputs: Vec<crate::output::Written>,
    /// The job goes on remotely (`--detach`).
    pub(crate) detached: bool,
    /// The job was cancelled as asked (`launcher jobs cancel`).
    pub(crate) cancelled: bool,
}

/// The lock of the job being run, once it is recorded; shared by the worker, which takes it
/// at the first checkpoint, and the watching thread, which lets it go when the job ends.
type LockSlot = Arc<std::sync::Mutex<Option<JobLock>>>;

/// Runs `plan` to the end and shows it; returns the failure to exit with, if any.
///
/// A resumed job must come with its [`JobLock`], taken by the caller: it is held until the
/// job ends, so other launchers see a live one running it.
pub(crate) fn execute(
    plan: JobPlan,
    lock: Option<JobLock>,
    data_dir: &Path,
    globals: &Globals,
) -> Result<Report> {
    let plan = Arc::new(plan);
    let lock: LockSlot = Arc::new(std::sync::Mutex::new(lock));
    let mut render = Render::new(*globals, plan.secrets.clone());
    for reason in &plan.reasons {
        globals.info(&format!("routing: {reason}"));
    }
    // The history store is opened and readied beside the job, which mostly waits on a
    // service, so recording the job at its end costs only the insert.
    let history = Store::logging(data_dir)
        .then(|| {
            let dir = data_dir.to_path_buf();
            std::thread::Builder::new()
                .name("history".into())
                .spawn(move || {
                    let store = Store::open(&dir)?;
                    store.warm()?;
                    Ok(store)
                })
                .ok()
        })
        .flatten();
    let (tx, rx) = mpsc::channel::<Msg>();
    let to_signal = std::sync::Mutex::new(tx.clone());
    let subscription = signals::subscribe(move |signal| {
        if let Ok(tx) = to_signal.lock() {
            let _ = tx.send(Msg::Signal(signal));
        }
    });
    if subscription.is_none() {
        globals.info("cannot watch for signals; Ctrl-C will end launcher without cleaning up");
    }
    // `jobs cancel` resumes a job with cancellation asked from the start, so the plugin sends
    // its cancel request instead of waiting.
    let cancel = Arc::new(AtomicBool::new(plan.cancel_requested));
    let checkpointed = Arc::new(AtomicBool::new(false));
    let pending: Pending = Pending::default();
    let work_dir = make_work_dir(&plan, &pending);

    globals.info(&format!("loading {}", plan.tool.library.display()));
    let worker = {
        let plan = plan.clone();
        let cancel = cancel.clone();
        let checkpointed = checkpointed.clone();
        let pending = pending.clone();
        let data_dir = data_dir.to_path_buf();
        let work_dir = work_dir.clone();
        let tx = tx.clone();
        let lock = lock.clone();
        std::thread::Builder::new()
            .name(format!("job {}", plan.id))
            .spawn(move || {
                let handler = Handler {
                    lock,
                    outputs: Outputs::new(plan.outputs.clone(), pending),
                    plan: plan.clone(),
                    cancel,
                    checkpointed,
                    tx: tx.clone(),
                    data_dir,
                    store: None,
                    io_error: None,
                    close_error: None,
                    reader_gone: false,
                    progress_kept: None,
                };
                let finished = run(&plan, handler, work_dir);
                let _ = tx.send(Msg::Done(Box::new(finished)));
            })?
    };
    // Kept for the answer to the Ctrl-C question; the signal watcher holds a sender too, so the
    // channel stays open either way and the worker's own message says how it ended.
    let answers = tx;

    let mut signalled: Option<i32> = None;
    // Ctrl-C of a recorded remote job on a terminal asks whether to cancel the remote task.
    let mut asking_cancel = false;
    let mut priced: Option<Priced> = None;
    let mut question: Option<Arc<Question>> = None;
    let finished = loop {
        // The worker always says how it ended, even when it panicked.
        let msg = rx.recv().unwrap_or(Msg::Crashed);
        match msg {
            Msg::Crashed => {
                remove_pending(&pending);
                return Err(fail(
                    Class::Failure,
                    "the job's worker thread died; this is a bug in launcher",
                ));
            }
            // A progress line would overwrite the question being asked.
            Msg::Progress(_) if asking_cancel => {}
            Msg::Progress(p) => render.progress(&p),
            Msg::Log(line) => render.log(&line),
            Msg::Confirm(cost, reply) => {
                render.clear();
                render.set_cost(cost.clone());
                let threshold = plan.confirm_over;
                let about = format!("this job will cost about {cost}");
                match judge(&cost, threshold, plan.yes, can_ask()) {
                    Some(verdict) => {
                        match verdict {
                            Verdict::Accepted => render.say(&format!("{about}; accepted by --yes")),
                            Verdict::Refused => {}
                            _ => render.say(&about),
                        }
                        let _ = reply.send(matches!(verdict, Verdict::Shown | Verdict::Accepted));
                        priced = Some(Priced { cost, verdict });
                    }
                    None => {
                        render.say(&format!(
                            "{about}, more than your limit of {} (`confirm_over`)",
                            Cost {
                                amount: threshold,
                                ..cost.clone()
                            }
                            .amount_text()
                        ));
                        eprint!("submit it? [y/N] ");
                        let asked = Arc::new(Question {
                            reply,
                            answer: std::sync::Mutex::new(None),
                        });
                        let reader = asked.clone();
                        if !read_answer(move |yes| {
                            reader.answer(yes);
                        }) {
                            asked.answer(false);
                        }
                        question = Some(asked);
                        priced = Some(Priced {
                            cost,
                            verdict: Verdict::Declined,
                        });
                    }
                }
            }
            Msg::Signal(signal) => {
                if let Some(asked) = &question
                    && asked.answer(false)
                {
                    // A signal during the question is a no; end the prompt's line.
                    eprintln!();
                }
                if signalled.is_some() {
                    // A second signal: stop at once, leaving nothing half-written.
                    remove_pending(&pending);
                    std::process::exit(i32::from(signals::exit_code(signal)));
                }
                if checkpointed.load(Ordering::SeqCst) && !plan.cancel_remote {
                    if signal == SIGINT && !asking_cancel && can_ask() {
                        asking_cancel = true;
                        render.clear();
                        eprint!(
                            "the task goes on at {}; cancel it there too? [y/N] ",
                            plan.tool.spec.id
                        );
                        let answers = answers.clone();
                        if read_answer(move |yes| {
                            let _ = answers.send(Msg::CancelRemote(yes));
                        }) {
                            continue;
                        }
                    }
                    if asking_cancel {
                        // A second Ctrl-C while asking leaves the task running.
                        eprintln!();
                    }
                    detach_now(&plan, &pending, data_dir, &mut render, signal);
                }
                signalled = Some(signal);
                cancel.store(true, Ordering::SeqCst);
                render.say(&format!(
                    "launcher: cancelling after {} (send it again to stop at once)",
                    signals::name(signal)
                ));
            }
            Msg::CancelRemote(_) if !asking_cancel => {}
            Msg::CancelRemote(false) => detach_now(&plan, &pending, data_dir, &mut render, SIGINT),
            Msg::CancelRemote(true) => {
                asking_cancel = false;
                signalled = Some(SIGINT);
                cancel.store(true, Ordering::SeqCst);
                render.say(&format!(
                    "launcher: cancelling the task at {} (send Ctrl-C again to stop at once)",
                    plan.tool.spec.id
                ));
            }
            Msg::Done(finished) => {
                if asking_cancel {
                    // The job ended before the question was answered; end its line.
                    eprintln!();
                }
                break finished;
            }
        }
    };
    let _ = worker.join();
    render.clear();
    if let (Some(asked), Some(priced)) = (&question, &mut priced) {
        priced.verdict = if asked.accepted() {
            Verdict::Accepted
        } else {
            Verdict::Declined
        };
    }
    let duration = finished.duration;
    let outcome = conclude(
        &plan,
        *finished,
        signalled,
        priced.as_ref(),
        &checkpointed,
        data_dir,
        &mut render,
    );
    if let Some(dir) = &work_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    record_history(&plan, &outcome, duration, data_dir, history, globals);
    // Let go only once the store and the history say how the job ended, so a launcher waiting
    // for it (`jobs wait`) reads the end, outputs included.
    let held = lock.lock().ok().and_then(|mut slot| slot.take());
    if let Some(held) = held {
        // A detached job stays resumable; any other end is final, and its lock file goes.
        if !matches!(&outcome, Ok(report) if report.detached) {
            held.finish();
        }
    }
    outcome
}

/// Ends launcher leaving a recorded remote job running: partial outputs removed, the job
/// marked detached, and how to collect it said.
fn detach_now(
    plan: &JobPlan,
    pending: &Pending,
    data_dir: &Path,
    render: &mut Render,
    signal: i32,
) -> ! {
    remove_pending(pending);
    if let Ok(store) = Store::open(data_dir) {
        let _ = store.set_state(&plan.id, State::Detached, None);
    }
    render.detached(plan, &format!("stopped by {}", signals::name(signal)));
    std::process::exit(i32::from(Class::Detached.exit_code()))
}

/// Records the job that ended in the history (see [`crate::job::store::Entry`]). A store that
/// cannot be written costs the history entry, not the job: it is a warning.
fn record_history(
    plan: &JobPlan,
    outcome: &Result<Report>,
    duration: Duration,
    data_dir: &Path,
    opened: Option<std::thread::JoinHandle<Result<Store>>>,
    globals: &Globals,
) {
    use crate::job::store::{Ended, Entry, OutputEntry, Status};
    if !Store::logging(data_dir) {
        return;
    }
    let (status, exit_code, error, outputs, conversation) = match outcome {
        Ok(report) => (
            if report.detached {
                Status::Detached
            } else {
                Status::Done
            },
            0,
            None,
            report
                .outputs
                .iter()
                .map(|w| OutputEntry {
                    name: w.name.clone(),
                    kind: w.kind.to_string(),
                    media_type: w.media_type.clone(),
                    path: w
                        .path
                        .as_ref()
                        .map(|p| p.canonicalize().unwrap_or(p.clone())),
                    size: w.size,
                })
                .collect(),
            report.conversation.clone(),
        ),
        Err(err) => {
            let class = err
                .chain()
                .find_map(|e| e.downcast_ref::<Failure>())
                .map_or(Class::Failure, |f| f.class);
            let status = match class {
                Class::Signalled(_) => Status::Cancelled,
                _ => Status::Failed,
            };
            (
                status,
                class.exit_code(),
                Some(format!("{err:#}")),
                Vec::new(),
                None,
            )
        }
    };
    let specs = crate::params::params_of(&plan.task, &plan.tool.spec);
    let entry = Entry::of(Ended {
        id: &plan.id,
        tool: &plan.tool.spec.id,
        task: &plan.task.name,
        params: &plan.params,
        input_param: crate::params::text_param(&plan.task, &specs),
        outputs,
        duration,
        status,
        exit_code,
        error,
        conversation: conversation.or_else(|| plan.conversation.clone()),
        secrets: &plan.secrets,
    });
    let store = match opened.map(std::thread::JoinHandle::join) {
        Some(Ok(Ok(store))) => Ok(store),
        // Opened early or not, a failure to open is reported the same way.
        _ => Store::open(data_dir),
    };
    if let Err(err) = store.and_then(|store| store.record(&entry)) {
        globals.warn(&format!("the job was not recorded in the history: {err:#}"));
    }
}

/// Turns how the worker ended into what the user sees, and the job's final state.
fn conclude(
    plan: &JobPlan,
    finished: Finished,
    signalled: Option<i32>,
    priced: Option<&Priced>,
    checkpointed: &AtomicBool,
    data_dir: &Path,
    render: &mut Render,
) -> Result<Report> {
    let recorded = checkpointed.load(Ordering::SeqCst) || plan.resume.is_some();
    let set_state = |state: State, error: Option<&str>| {
        if recorded && let Ok(store) = Store::open(data_dir) {
            let _ = store.set_state(&plan.id, state, error);
        }
    };
    let Finished {
        outcome,
        outputs,
        io_error,
        close_error,
        reader_gone,
        duration,
    } = finished;
    if reader_gone {
        // Like other Unix tools, a closed pipe on stdout is not an error worth reporting.
        outputs.abandon();
        set_state(State::Failed, Some("stdout was closed"));
        return Ok(Report::default());
    }
    if let Some(err) = close_error {
        outputs.abandon();
        set_state(State::Failed, Some(&err.to_string()));
        return Err(err);
    }
    if let Some(err) = io_error {
        outputs.abandon();
        set_state(State::Failed, Some("an output could not be written"));
        return Err(fail(
            Class::Unwritable,
            format!("cannot write the output: {err}"),
        ));
    }
    match outcome {
        Err(err) => {
            let kept = outputs.abandon();
            for w in &kept {
                if let Some(path) = &w.path {
                    render.say(&format!("kept {}, which was complete", path.display()));
                }
            }
            let cancelled = err
                .chain()
                .find_map(|e| e.downcast_ref::<Failure>())
                .is_some_and(|f| f.class == Class::Cancelled);
            if plan.cancel_requested && cancelled {
                set_state(
                    State::Cancelled,
                    Some("cancelled with `launcher jobs cancel`"),
                );
                render.say(&format!(
                    "cancelled job {} at {}",
                    plan.id, plan.tool.spec.id
                ));
                return Ok(Report {
                    cancelled: true,
                    ..Report::default()
                });
            }
            if let Some(failure) = priced.and_then(|p| cost_failure(p, plan.confirm_over)) {
                set_state(State::Cancelled, Some(&failure.message));
                return Err(failure.into());
            }
            if let Some(signal) = signalled {
                set_state(State::Cancelled, None);
                return Err(Failure::new(
                    Class::Signalled(signal),
                    format!(
                        "cancelled by {}; partial outputs were removed",
                        signals::name(signal)
                    ),
                )
                .into());
            }
            set_state(State::Failed, Some(&err.to_string()));
            Err(err)
        }
        Ok(result) => {
            if plan.detach && checkpointed.load(Ordering::SeqCst) {
                outputs.abandon();
                set_state(State::Detached, None);
                render.detached(plan, "submitted");
                return Ok(Report {
                    detached: true,
                    ..Report::default()
                });
            }
            let written = outputs.finish()?;
            set_state(State::Done, None);
            let conversation = record_turn(plan, &written, &result, data_dir, render);
            render.finished(
                plan,
                &written,
                duration,
                &result,
                recorded,
                conversation.as_deref(),
            )?;
            if plan.cancel_requested {
                render.say(&format!(
                    "job {} had finished at {} before it could be cancelled",
                    plan.id, plan.tool.spec.id
                ));
            }
            Ok(Report {
                conversation,
                outputs: written,
                ..Report::default()
            })
        }
    }
}

/// Returns the failure of a job whose cost was declined or refused: nothing was submitted.
fn cost_failure(priced: &Priced, threshold: f64) -> Option<Failure> {
    let cost = &priced.cost;
    let limit = Cost {
        amount: threshold,
        ..cost.clone()
    }
    .amount_text();
    match priced.verdict {
        Verdict::Declined => Some(
            Failure::new(
                Class::Cancelled,
                format!(
                    "the job would cost about {cost}, and that was declined; nothing was submitted"
                ),
            )
            .hint("run it again with other parameters (a shorter duration, a cheaper model)"),
        ),
        Verdict::Refused => Some(
            Failure::new(
                Class::Usage,
                format!(
                    "the job would cost about {cost}, more than your limit of {limit} \
                     (`confirm_over`), and there is no terminal to ask on; nothing was submitted"
                ),
            )
            .hint(
                "add --yes to accept the cost, or raise `confirm_over` in the [defaults] of \
                 config.toml",
            ),
        ),
        Verdict::Shown | Verdict::Accepted => None,
    }
}

/// Records a chat job's prompt and answer in its conversation (a new one unless the job
/// continues one); returns the conversation's id. A store that cannot be written costs the
/// conversation, not the answer the user already has: it is a warning.
fn record_turn(
    plan: &JobPlan,
    written: &[crate::output::Written],
    result: &JobResult,
    data_dir: &Path,
    render: &mut Render,
) -> Option<String> {
    if plan.task.name != "chat" {
        return None;
    }
    let prompt = plan.params.get("prompt")?.as_str()?;
    let answer: String = written
        .iter()
        .filter(|w| w.kind == launcher_sdk::ContentKind::Text)
        .filter_map(|w| w.text())
        .collect();
    let model = plan
        .params
        .get("model")
        .and_then(Value::as_str)
        .or_else(|| result.info.get("model").and_then(Value::as_str));
    let turn = Turn {
        tool: &plan.tool.spec.id,
        model,
        prompt,
        answer: &answer,
        info: &result.info,
    };
    let recorded = Store::open(data_dir)
        .and_then(|mut store| store.add_turn(plan.conversation.as_deref(), &plan.id, &turn));
    match recorded {
        Ok(id) => Some(id),
        Err(err) => {
            render.say(&format!("warning: the conversation was not saved: {err:#}"));
            None
        }
    }
}

/// The worker: loads the plugin, creates the tool, invokes the job.
fn run(plan: &Arc<JobPlan>, mut handler: Handler, work_dir: Option<PathBuf>) -> Finished {
    let started = Instant::now();
    let outcome = invoke(plan, &mut handler, work_dir);
    Finished {
        outcome,
        outputs: handler.outputs,
        io_error: handler.io_error,
        close_error: handler.close_error,
        reader_gone: handler.reader_gone,
        duration: started.elapsed(),
    }
}

fn invoke(plan: &JobPlan, handler: &mut Handler, work_dir: Option<PathBuf>) -> Result<JobResult> {
    let tool = &plan.tool;
    let lib = loader::open(&tool.library).map_err(|reason| {
        fail(
            Class::Failure,
            format!(
                "plugin `{}` at {} {reason}",
                tool.plugin,
                tool.library.display()
            ),
        )
    })?;
    let instance = lib
        .create(&CreateRequest {
            tool: tool.spec.id.clone(),
            settings: plan.settings.clone(),
        })
        .map_err(|e| call_failure(&tool.spec.id, e, &plan.secrets))?;
    let job = Job {
        task: plan.task.name.clone(),
        tool: tool.spec.id.clone(),
        params: plan.params.clone(),
        id: plan.id.clone(),
        resume: plan.resume.clone(),
        detach: plan.detach,
        work_dir: work_dir.map(|d| d.to_string_lossy().into_owned()),
        history: plan.history.clone(),
        streaming: crate::output::Outputs::uses_stdout(&plan.outputs),
    };
    instance
        .invoke(&job, handler)
        .map_err(|e| call_failure(&tool.spec.id, e, &plan.secrets))
}

/// Makes the job's directory for temporary files beside its outputs, so that large
/// intermediate files land on the same disk as the result and never in a small `/tmp`.
fn make_work_dir(plan: &JobPlan, pending: &Pending) -> Option<PathBuf> {
    let base = match &plan.outputs.explicit {
        Some(path) if path.as_os_str() != "-" => path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        _ => plan.outputs.dir.clone(),
    };
    let dir = base.join(format!(".launcher-{}.work", plan.id));
    if plan.resume.is_some() {
        // Left by a launcher killed while it ran this job; the caller holds the job's lock.
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::fs::create_dir(&dir).ok()?;
    let dir = dir.canonicalize().unwrap_or(dir);
    pending.lock().expect("pending list").push(dir.clone());
    Some(dir)
}

/// Removes partial outputs and the work directory (on the way out after a signal).
fn remove_pending(pending: &Pending) {
    crate::output::remove_pending(pending);
}

/// Maps a failed plugin call to a user-facing failure, with secrets scrubbed.
pub(crate) fn call_failure(tool: &str, err: CallError, secrets: &[String]) -> anyhow::Error {
    let scrub = |s: &str| settings::scrub(s, secrets);
    match err {
        CallError::Plugin(err) => {
            let class = Class::of_kind(err.kind);
            let mut message = format!("{tool}: {}", scrub(&err.message));
            if err.kind == ErrorKind::RateLimited
                && let Some(secs) = err.retry_after_secs
            {
                message.push_str(&format!(" (the service asked to wait {secs:.0} s)"));
            }
            let mut failure = Failure::new(class, message);
            if let Some(hint) = err.hint {
                failure = failure.hint(scrub(&hint));
            }
            failure.into()
        }
        CallError::Panic(msg) => Failure::new(
            Class::Failure,
            format!("plugin of `{tool}` panicked: {}", scrub(&msg)),
        )
        .hint("this is a bug in the plugin; launcher itself is fine")
        .into(),
        CallError::Protocol(msg) => fail(
            Class::Failure,
            format!(
                "plugin of `{tool}` broke the plugin protocol: {}",
                scrub(&msg)
            ),
        ),
    }
}

/// Receives a job's events on the worker thread.
struct Handler {
    lock: LockSlot,
    plan: Arc<JobPlan>,
    outputs: Outputs,
    cancel: Arc<AtomicBool>,
    checkpointed: Arc<AtomicBool>,
    tx: Sender<Msg>,
    data_dir: PathBuf,
    /// Opened when the first checkpoint arrives.
    store: Option<Store>,
    io_error: Option<std::io::Error>,
    close_error: Option<anyhow::Error>,
    reader_gone: bool,
    /// When the job's progress was last kept in the store.
    progress_kept: Option<Instant>,
}

impl Handler {
    fn output_failed(&mut self, err: std::io::Error) -> bool {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader went away (`| head`): stop the job, quietly.
            self.reader_gone = true;
        } else {
            self.io_error.get_or_insert(err);
        }
        false
    }

    fn warn(&self, message: String) {
        let _ = self.tx.send(Msg::Log(LogLine {
            level: LogLevel::Warn,
            message,
        }));
    }

    /// Keeps a recorded job's progress in the store for `launcher jobs`, at most once a second
    /// so a chatty plugin does not turn into a stream of database writes.
    fn keep_progress(&mut self, progress: &Progress) {
        const EVERY: Duration = Duration::from_secs(1);
        let Some(store) = &self.store else {
            return;
        };
        if self.progress_kept.is_some_and(|at| at.elapsed() < EVERY) {
            return;
        }
        self.progress_kept = Some(Instant::now());
        let text = match progress.fraction {
            Some(f) => format!("{} ({:.0}%)", progress.message, f * 100.0),
            None => progress.message.clone(),
        };
        let text = settings::scrub(&text, &self.plan.secrets);
        // Only `launcher jobs` reads it; a failed write costs that line, not the job.
        let _ = store.set_progress(&self.plan.id, &text);
    }

    /// Takes the job's lock when it is first recorded, so other launchers see it is running.
    fn take_lock(&mut self) {
        let Ok(mut slot) = self.lock.lock() else {
            return;
        };
        if slot.is_some() {
            return;
        }
        match JobLock::try_take(&self.data_dir, &self.plan.id) {
            Ok(Ok(lock)) => *slot = Some(lock),
            Ok(Err(_)) => {}
            Err(err) => {
                drop(slot);
                self.warn(format!(
                    "other launchers will see this job as interrupted: {err:#}"
                ));
            }
        }
    }

    /// Keeps a checkpoint in the job store, recording the job on the first one.
    fn keep_checkpoint(&mut self, value: &Value) {
        if self.store.is_none() {
            match Store::open(&self.data_dir) {
                Ok(store) => self.store = Some(store),
                Err(err) => {
                    self.warn(format!("the job cannot be resumed later: {err:#}"));
                    return;
                }
            }
        }
        self.take_lock();
        let store = self.store.as_ref().expect("opened above");
        let plan = &self.plan;
        match store.checkpoint(
            &plan.id,
            &plan.tool.spec.id,
            &plan.task.name,
            &plan.params,
            &plan.outputs,
            value,
        ) {
            Ok(()) => self.checkpointed.store(true, Ordering::SeqCst),
            Err(err) => self.warn(format!("the job cannot be resumed later: {err:#}")),
        }
    }
}

impl EventHandler for Handler {
    fn event(&mut self, event: Event<'_>) -> bool {
        match event {
            Event::Open(id, header) => {
                if let Err(err) = self.outputs.open(id, &header) {
                    return self.output_failed(err);
                }
            }
            Event::Write(id, bytes) => {
                if let Err(err) = self.outputs.write(id, bytes) {
                    return self.output_failed(err);
                }
            }
            Event::Close(id) => {
                if let Err(err) = self.outputs.close(id) {
                    if err.downcast_ref::<crate::failure::Failure>().is_some() {
                        self.close_error.get_or_insert(err);
                        return false;
                    }
                    return self.output_failed(std::io::Error::other(format!("{err:#}")));
                }
            }
            Event::Progress(p) => {
                self.keep_progress(&p);
                let _ = self.tx.send(Msg::Progress(p));
            }
            Event::Log(line) => {
                let _ = self.tx.send(Msg::Log(line));
            }
            Event::Checkpoint(value) => self.keep_checkpoint(&value),
        }
        !self.cancel.load(Ordering::SeqCst)
    }

    fn is_cancelled(&self) -> bool {
        self.reader_gone || self.cancel.load(Ordering::SeqCst)
    }

    fn confirm_cost(&mut self, cost: &Cost) -> bool {
        let (reply, answer) = mpsc::channel();
        if self.tx.send(Msg::Confirm(cost.clone(), reply)).is_err() {
            return false;
        }
        // No answer (the watching thread is gone) is a no: never submit unconfirmed.
        answer.recv().unwrap_or(false) && !self.cancel.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(amount: f64) -> Cost {
        Cost {
            amount,
            currency: "USD".into(),
            what: "a video".into(),
        }
    }

    #[test]
    fn a_cost_above_the_threshold_asks_or_needs_yes() {
        assert_eq!(judge(&cost(0.5), 1.0, false, false), Some(Verdict::Shown));
        assert_eq!(judge(&cost(1.0), 1.0, false, false), Some(Verdict::Shown));
        assert_eq!(judge(&cost(1.5), 1.0, true, false), Some(Verdict::Accepted));
        assert_eq!(judge(&cost(1.5), 1.0, false, true), None);
        assert_eq!(judge(&cost(1.5), 1.0, false, false), Some(Verdict::Refused));
        assert_eq!(
            judge(&cost(0.01), 0.0, false, false),
            Some(Verdict::Refused)
        );
    }

    #[test]
    fn only_an_explicit_yes_accepts() {
        assert!(is_yes("y\n"));
        assert!(is_yes(" YES "));
        for no in ["", "\n", "n", "no", "yep", "sure"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }

    #[test]
    fn a_refused_cost_is_a_usage_failure_and_a_declined_one_a_cancellation() {
        let refused = Priced {
            cost: cost(3.2),
            verdict: Verdict::Refused,
        };
        let failure = cost_failure(&refused, 1.0).unwrap();
        assert_eq!(failure.class, Class::Usage);
        assert!(
            failure.message.contains("$3.20 (a video)"),
            "{}",
            failure.message
        );
        assert!(failure.message.contains("$1.00"));
        assert!(failure.hint.unwrap().contains("--yes"));
        let declined = Priced {
            cost: cost(3.2),
            verdict: Verdict::Declined,
        };
        assert_eq!(
            cost_failure(&declined, 1.0).unwrap().class,
            Class::Cancelled
        );
        let shown = Priced {
            cost: cost(0.2),
            verdict: Verdict::Shown,
        };
        assert!(cost_failure(&shown, 1.0).is_none());
    }
}
