//! `launcher jobs`: the remote jobs recorded in the job store, and the commands that follow,
//! cancel and pick them up again.
//!
//! A job is recorded at its plugin's first checkpoint. A launcher running it holds its lock
//! ([`crate::job::lock`]), so a `running` job whose lock is free was interrupted (its launcher
//! was killed, or the machine went down) and is shown as `interrupted`. Resuming a job runs
//! its plugin again with the latest checkpoint: the plugin polls the remote task instead of
//! submitting a new one, and the outputs go where the first run planned them.

use std::path::Path;

use anyhow::Result;
use launcher_sdk::serde_json::{self, Value, json};

use crate::catalog::Catalog;
use crate::commands::Globals;
use crate::failure::{Class, Failure};
use crate::home::{Config, Home};
use crate::job::exec::{self, Report};
use crate::job::lock::{self, Holder, JobLock};
use crate::job::plan;
use crate::job::store::{JobRecord, State, Store, now_ms};

/// Jobs that ended longer ago than this are listed only with `--all`.
const RECENT_MS: i64 = 24 * 60 * 60 * 1000;

/// Finds the recorded job `id`, or the one job whose id starts with it.
pub(crate) fn find(store: &Store, id: &str) -> Result<JobRecord> {
    if let Some(record) = store.get(id)? {
        return Ok(record);
    }
    // A unique prefix of an id is enough, as with git's commits.
    let ids = store.ids_like(id)?;
    match ids.as_slice() {
        [one] => Ok(store.get(one)?.expect("listed just now")),
        [] => Err(Failure::new(Class::NotFound, format!("no recorded job `{id}`"))
            .hint("a job is recorded once its tool accepted remote work; `launcher jobs --all` lists them")
            .into()),
        many => Err(Failure::new(
            Class::Usage,
            format!("`{id}` names several jobs: {}", many.join(", ")),
        )
        .hint("give more of the id")
        .into()),
    }
}

/// Returns the failure for a job another launcher is running.
fn held_elsewhere(id: &str, pid: Option<u32>) -> anyhow::Error {
    Failure::new(
        Class::InvalidInput,
        format!(
            "job {id} is being run by another launcher{}",
            pid.map(|p| format!(" (process {p})")).unwrap_or_default()
        ),
    )
    .hint(format!(
        "`launcher jobs wait {id}` follows it to the end; Ctrl-C in that launcher detaches it"
    ))
    .into()
}

/// Takes the lock of a job about to be resumed, refusing one another launcher runs.
pub(crate) fn take_for_resume(data_dir: &Path, id: &str) -> Result<JobLock> {
    match JobLock::try_take(data_dir, id)? {
        Ok(lock) => Ok(lock),
        Err(Holder::Other(pid)) => Err(held_elsewhere(id, pid)),
        Err(Holder::Nobody) => unreachable!("try_take reports only another holder"),
    }
}

/// Returns the state to show: a `running` job no live launcher holds was interrupted.
fn shown_state(data_dir: &Path, record: &JobRecord) -> (&'static str, Option<u32>) {
    if record.state != State::Running {
        return (record.state.as_str(), None);
    }
    match lock::holder(data_dir, &record.id) {
        Holder::Other(pid) => ("running", pid),
        Holder::Nobody => ("interrupted", None),
    }
}

/// Returns the files a job wrote, once it did; until then where its outputs go, as planned:
/// a file, or a directory and a name stem.
fn planned_output(record: &JobRecord) -> String {
    if !record.written.is_empty() {
        let names: Vec<String> = record
            .written
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        return names.join(", ");
    }
    match &record.outputs.explicit {
        Some(path) if path.as_os_str() == "-" => "stdout".to_string(),
        Some(path) => path.display().to_string(),
        None => record
            .outputs
            .dir
            .join(format!("{}.*", record.outputs.stem))
            .display()
            .to_string(),
    }
}

/// Returns an age as one short figure: `42s`, `5m`, `3h`, `2d`.
fn age(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// `launcher jobs`: running and recent jobs, newest first.
pub(crate) fn list(all: bool, limit: usize, as_json: bool) -> Result<()> {
    let home = Home::locate()?;
    let dir = home.data_dir();
    let now = now_ms();
    let records = if Store::path(dir).exists() {
        Store::open(dir)?.jobs(limit, (!all).then_some(now - RECENT_MS))?
    } else {
        // Nothing was ever recorded; listing creates no store.
        Vec::new()
    };
    if as_json {
        let items: Vec<Value> = records
            .iter()
            .map(|r| {
                let (state, pid) = shown_state(dir, r);
                json!({
                    "id": r.id,
                    "tool": r.tool,
                    "task": r.task,
                    "state": state,
                    "resumable": state == "interrupted" || state == "detached",
                    "created": crate::commands::logs::format_time(r.created_ms),
                    "updated": crate::commands::logs::format_time(r.updated_ms),
                    "age_s": (now - r.created_ms).max(0) / 1000,
                    "output": planned_output(r),
                    "pid": pid,
                    // Progress is news only while the job goes on.
                    "progress": r.state.resumable().then_some(&r.progress),
                    "files": r.written,
                    "error": r.error,
                })
            })
            .collect();
        print(&format!("{}\n", serde_json::to_string_pretty(&items)?));
        return Ok(());
    }
    if records.is_empty() {
        eprintln!(
            "no {}jobs; a job is recorded once its tool accepted remote work (`launcher run ... --detach`)",
            if all { "" } else { "running or recent " }
        );
        return Ok(());
    }
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            let (state, _) = shown_state(dir, r);
            [
                r.id.clone(),
                r.tool.clone(),
                r.task.clone(),
                state.to_string(),
                age(now - r.created_ms),
                planned_output(r),
                // A failed job says why; a live one where it stands.
                r.error
                    .clone()
                    .or_else(|| r.state.resumable().then(|| r.progress.clone()).flatten())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["ID", "TOOL", "TASK", "STATE", "AGE", "OUTPUT", "DETAIL"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header.map(String::from)).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{:<w$}", crate::escape::printable(cell)))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    print(&out);
    Ok(())
}

/// What `wait`, `cancel` and `resume` did with one job.
struct Outcome {
    id: String,
    result: Result<Value>,
}

/// Reports a job that ended in another launcher, from the store and the history.
fn ended_elsewhere(globals: &Globals, store: &Store, record: &JobRecord) -> Result<Value> {
    let outputs: Vec<Value> = store
        .entry(&record.id)?
        .map(|e| e.outputs.iter().map(|o| json!(o)).collect())
        .unwrap_or_default();
    match record.state {
        State::Done => {
            globals.status(&format!(
                "job {} finished in the launcher that ran it",
                record.id
            ));
            Ok(json!({
                "job": record.id, "tool": record.tool, "task": record.task,
                "state": "done", "outputs": outputs,
            }))
        }
        State::Cancelled => {
            globals.status(&format!("job {} was cancelled", record.id));
            Ok(json!({
                "job": record.id, "tool": record.tool, "task": record.task,
                "state": "cancelled", "outputs": [],
            }))
        }
        _ => Err(Failure::new(
            Class::Failure,
            format!(
                "job {} failed in the launcher that ran it: {}",
                record.id,
                record.error.as_deref().unwrap_or("no reason was recorded")
            ),
        )
        .hint(format!(
            "`launcher logs show {}` shows what it did",
            record.id
        ))
        .into()),
    }
}

/// The shared state of `wait`, `cancel` and `resume`.
struct Session {
    home: Home,
    config: Config,
    catalog: Catalog,
    store: Store,
}

impl Session {
    fn open(globals: &Globals) -> Result<Session> {
        let home = Home::locate()?;
        let config = Config::load(&home)?;
        let catalog = Catalog::discover(&home, &config);
        globals.report_catalog(&catalog);
        let store = Store::open(home.data_dir())?;
        Ok(Session {
            home,
            config,
            catalog,
            store,
        })
    }

    /// Resumes `record` in this launcher, holding `lock`, and returns what it did.
    fn resume(
        &self,
        globals: &Globals,
        record: JobRecord,
        lock: JobLock,
        cancel: bool,
        as_json: bool,
    ) -> Result<Value> {
        let (id, tool, task) = (record.id.clone(), record.tool.clone(), record.task.clone());
        let mut plan = plan::plan_resume(
            record,
            &self.catalog,
            &self.config,
            &self.home.config_file(),
            false,
            cancel,
        )?;
        plan.cancel_requested = cancel;
        // `--json` prints one document for all the jobs at the end.
        plan.collect = as_json;
        let report: Report = exec::execute(plan, Some(lock), self.home.data_dir(), globals)?;
        let state = if report.cancelled {
            "cancelled"
        } else if report.detached {
            "detached"
        } else {
            "done"
        };
        Ok(json!({
            "job": id,
            "tool": tool,
            "task": task,
            "state": state,
            "outputs": report.outputs,
        }))
    }
}

/// `launcher jobs wait ID...`: follows each job to the end.
pub(crate) fn wait(globals: &Globals, ids: &[String], as_json: bool) -> Result<()> {
    let session = Session::open(globals)?;
    let dir = session.home.data_dir();
    let mut outcomes = Vec::new();
    for id in ids {
        let result = (|| {
            let record = find(&session.store, id)?;
            if !record.state.resumable() {
                return ended_elsewhere(globals, &session.store, &record);
            }
            let lock = match JobLock::try_take(dir, &record.id)? {
                Ok(lock) => lock,
                Err(holder) => {
                    let pid = match holder {
                        Holder::Other(Some(pid)) => format!(" (process {pid})"),
                        _ => String::new(),
                    };
                    globals.status(&format!(
                        "job {} is being run by another launcher{pid}; waiting for it to end",
                        record.id
                    ));
                    JobLock::wait_take(dir, &record.id)?
                }
            };
            // Read again: the launcher that held it may have finished it meanwhile.
            let record = find(&session.store, &record.id)?;
            if !record.state.resumable() {
                drop(lock);
                return ended_elsewhere(globals, &session.store, &record);
            }
            session.resume(globals, record, lock, false, as_json)
        })();
        outcomes.push(Outcome {
            id: id.clone(),
            result,
        });
    }
    finish(globals, outcomes, as_json)
}

/// `launcher jobs cancel ID`: cancels the remote task and marks the job cancelled.
pub(crate) fn cancel(globals: &Globals, id: &str, as_json: bool) -> Result<()> {
    let session = Session::open(globals)?;
    let record = find(&session.store, id)?;
    if !record.state.resumable() {
        return Err(Failure::new(
            Class::InvalidInput,
            format!(
                "job {} is {}; there is nothing to cancel",
                record.id,
                record.state.as_str()
            ),
        )
        .into());
    }
    let lock = take_for_resume(session.home.data_dir(), &record.id)?;
    let id = record.id.clone();
    let result = session.resume(globals, record, lock, true, as_json);
    finish(globals, vec![Outcome { id, result }], as_json)
}

/// `launcher jobs resume`: picks up every job a killed or closed launcher left unfinished.
pub(crate) fn resume(globals: &Globals, as_json: bool) -> Result<()> {
    let session = Session::open(globals)?;
    let dir = session.home.data_dir();
    let unfinished: Vec<JobRecord> = session
        .store
        .jobs(usize::MAX >> 1, Some(now_ms()))?
        .into_iter()
        .filter(|r| r.state.resumable())
        .rev()
        .collect();
    let mut outcomes = Vec::new();
    for record in unfinished {
        let lock = match JobLock::try_take(dir, &record.id)? {
            Ok(lock) => lock,
            Err(_) => {
                globals.info(&format!(
                    "job {} is being run by another launcher; left to it",
                    record.id
                ));
                continue;
            }
        };
        globals.status(&format!(
            "resuming job {} ({} {})",
            record.id, record.tool, record.task
        ));
        let id = record.id.clone();
        let result = session.resume(globals, record, lock, false, as_json);
        outcomes.push(Outcome { id, result });
    }
    if outcomes.is_empty() && !as_json {
        globals.status("no unfinished jobs to resume");
    }
    finish(globals, outcomes, as_json)
}

/// Prints the JSON document of the jobs handled, and returns the first failure (each other
/// failure is shown as a warning), so the exit code says whether everything went well.
fn finish(globals: &Globals, outcomes: Vec<Outcome>, as_json: bool) -> Result<()> {
    let mut first_error = None;
    let mut items = Vec::new();
    for Outcome { id, result } in outcomes {
        match result {
            Ok(value) => items.push(value),
            Err(err) => {
                let class = err
                    .chain()
                    .find_map(|e| e.downcast_ref::<Failure>())
                    .map_or(Class::Failure, |f| f.class);
                items.push(json!({
                    "job": id,
                    "state": "failed",
                    "error": format!("{err:#}"),
                    "exit_code": class.exit_code(),
                }));
                if first_error.is_none() {
                    first_error = Some(err);
                } else {
                    globals.warn(&format!("job {id}: {err:#}"));
                }
            }
        }
    }
    if as_json {
        print(&format!("{}\n", serde_json::to_string_pretty(&items)?));
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

#[allow(clippy::print_stdout)]
fn print(text: &str) {
    print!("{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_one_short_figure() {
        assert_eq!(age(-5), "0s");
        assert_eq!(age(42_000), "42s");
        assert_eq!(age(5 * 60_000 + 10), "5m");
        assert_eq!(age(3 * 3_600_000), "3h");
        assert_eq!(age(2 * 86_400_000), "2d");
    }
}
