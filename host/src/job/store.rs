//! The job store: one SQLite database in the launcher home (`launcher.db`), holding the jobs
//! that can be resumed.
//!
//! A job is recorded when its plugin records its first checkpoint (a remote task id, say):
//! from then on it can outlive the command that started it. The record keeps the tool, task
//! and parameters (never settings, so never a secret), where its outputs go, the latest
//! checkpoint and the job's state. Later features (history, conversations, `launcher jobs`)
//! add their tables to this same database; `PRAGMA user_version` says which schema a file has.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use launcher_sdk::serde_json::{self, Map, Value};
use rusqlite::{Connection, OptionalExtension, params};

use crate::output;

/// The schema this launcher writes.
const SCHEMA_VERSION: i64 = 1;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Running in a launcher now (or until that launcher was killed).
    Running,
    /// Left running remotely; `launcher run --resume ID` picks it up.
    Detached,
    /// Finished; its outputs were written.
    Done,
    /// Ended with an error.
    Failed,
    /// Cancelled by the user.
    Cancelled,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Detached => "detached",
            State::Done => "done",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "detached" => State::Detached,
            "done" => State::Done,
            "failed" => State::Failed,
            "cancelled" => State::Cancelled,
            _ => State::Running,
        }
    }

    /// Returns whether a job in this state can be resumed.
    pub(crate) fn resumable(self) -> bool {
        matches!(self, State::Running | State::Detached)
    }
}

/// A recorded job.
#[derive(Debug, Clone)]
pub(crate) struct JobRecord {
    pub(crate) id: String,
    pub(crate) tool: String,
    pub(crate) task: String,
    pub(crate) params: Map<String, Value>,
    pub(crate) outputs: output::Plan,
    pub(crate) checkpoint: Option<Value>,
    pub(crate) state: State,
}

/// An open job store.
pub(crate) struct Store {
    conn: Connection,
}

impl Store {
    /// Returns the database file of a home.
    pub(crate) fn path(home_root: &Path) -> PathBuf {
        home_root.join("launcher.db")
    }

    /// Opens (creating if needed) the store in `home_root`.
    pub(crate) fn open(home_root: &Path) -> Result<Store> {
        std::fs::create_dir_all(home_root)
            .with_context(|| format!("failed to create {}", home_root.display()))?;
        let path = Store::path(home_root);
        let conn = Connection::open(&path)
            .with_context(|| format!("failed to open the job store {}", path.display()))?;
        // Several launchers may write at once (a job and a `--resume`): wait for each other.
        conn.busy_timeout(Duration::from_secs(5))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            anyhow::bail!(
                "the job store {} was written by a newer launcher (schema {version})",
                path.display()
            );
        }
        if version < SCHEMA_VERSION {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS jobs (
                     id TEXT PRIMARY KEY,
                     created_ms INTEGER NOT NULL,
                     updated_ms INTEGER NOT NULL,
                     tool TEXT NOT NULL,
                     task TEXT NOT NULL,
                     params TEXT NOT NULL,
                     outputs TEXT NOT NULL,
                     checkpoint TEXT,
                     state TEXT NOT NULL,
                     error TEXT
                 );
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?;
        }
        restrict(&path);
        Ok(Store { conn })
    }

    /// Records a job with its first checkpoint, or updates the checkpoint of a recorded one.
    pub(crate) fn checkpoint(
        &self,
        id: &str,
        tool: &str,
        task: &str,
        params: &Map<String, Value>,
        outputs: &output::Plan,
        checkpoint: &Value,
    ) -> Result<()> {
        let now = now_ms();
        self.conn.execute(
            "INSERT INTO jobs (id, created_ms, updated_ms, tool, task, params, outputs, checkpoint, state)
             VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, 'running')
             ON CONFLICT(id) DO UPDATE SET checkpoint = excluded.checkpoint,
                 updated_ms = excluded.updated_ms, state = 'running'",
            params![
                id,
                now,
                tool,
                task,
                serde_json::to_string(params)?,
                serde_json::to_string(outputs)?,
                serde_json::to_string(checkpoint)?,
            ],
        )?;
        Ok(())
    }

    /// Sets the state of a recorded job (nothing happens for a job never recorded).
    pub(crate) fn set_state(&self, id: &str, state: State, error: Option<&str>) -> Result<()> {
        self.conn.execute(
            "UPDATE jobs SET state = ?2, error = ?3, updated_ms = ?4 WHERE id = ?1",
            params![id, state.as_str(), error, now_ms()],
        )?;
        Ok(())
    }

    /// Returns the job `id`, if recorded.
    pub(crate) fn get(&self, id: &str) -> Result<Option<JobRecord>> {
        let row = self
            .conn
            .query_row(
                "SELECT id, tool, task, params, outputs, checkpoint, state FROM jobs WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                },
            )
            .optional()?;
        let Some((id, tool, task, params, outputs, checkpoint, state)) = row else {
            return Ok(None);
        };
        Ok(Some(JobRecord {
            params: serde_json::from_str(&params)
                .with_context(|| format!("job {id} has unreadable parameters"))?,
            outputs: serde_json::from_str(&outputs)
                .with_context(|| format!("job {id} has an unreadable output plan"))?,
            checkpoint: checkpoint
                .map(|c| serde_json::from_str(&c))
                .transpose()
                .with_context(|| format!("job {id} has an unreadable checkpoint"))?,
            state: State::parse(&state),
            id,
            tool,
            task,
        }))
    }

    /// Returns the ids of recorded jobs that start with `prefix`, newest first.
    pub(crate) fn ids_like(&self, prefix: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM jobs WHERE substr(id, 1, length(?1)) = ?1 ORDER BY created_ms DESC LIMIT 5")?;
        let ids = stmt
            .query_map(params![prefix], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(ids)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Makes the database private to its owner: parameters can be personal.
fn restrict(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> output::Plan {
        output::Plan {
            explicit: None,
            force: false,
            json: false,
            stem: "txt2vid".into(),
            dir: PathBuf::from("/tmp/out"),
            job_id: "j1".into(),
        }
    }

    #[test]
    fn a_checkpointed_job_round_trips_and_changes_state() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        assert!(store.get("j1").unwrap().is_none());
        let mut params = Map::new();
        params.insert("prompt".into(), "a lighthouse".into());
        store
            .checkpoint(
                "j1",
                "remote",
                "txt2vid",
                &params,
                &plan(),
                &"task-1".into(),
            )
            .unwrap();
        store
            .checkpoint(
                "j1",
                "remote",
                "txt2vid",
                &params,
                &plan(),
                &"task-2".into(),
            )
            .unwrap();
        let job = store.get("j1").unwrap().unwrap();
        assert_eq!(job.checkpoint, Some(Value::from("task-2")));
        assert_eq!(job.params["prompt"], "a lighthouse");
        assert_eq!(job.outputs.stem, "txt2vid");
        assert!(job.state.resumable());
        store.set_state("j1", State::Done, None).unwrap();
        // A second connection, as a second launcher would have.
        let again = Store::open(home.path()).unwrap();
        assert_eq!(again.get("j1").unwrap().unwrap().state, State::Done);
        assert_eq!(again.ids_like("j").unwrap(), ["j1"]);
    }

    #[test]
    fn a_store_from_a_newer_launcher_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let conn = Connection::open(Store::path(home.path())).unwrap();
        conn.execute_batch("PRAGMA user_version = 99;").unwrap();
        drop(conn);
        let err = Store::open(home.path()).err().unwrap();
        assert!(err.to_string().contains("newer launcher"), "{err}");
    }
}
