//! The job store: one SQLite database in the launcher home (`launcher.db`), holding the jobs
//! that can be resumed and the chat conversations that can be continued.
//!
//! A job is recorded when its plugin records its first checkpoint (a remote task id, say):
//! from then on it can outlive the command that started it. The record keeps the tool, task
//! and parameters (never settings, so never a secret), where its outputs go, the latest
//! checkpoint and the job's state. A conversation is the turns of `chat` jobs, each the user's
//! prompt and the answer, with the tool and model that answered. Later features (history,
//! `launcher jobs`) add their tables to this same database; `PRAGMA user_version` says which
//! schema a file has.

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
                 CREATE TABLE IF NOT EXISTS conversations (
                     id TEXT PRIMARY KEY,
                     created_ms INTEGER NOT NULL,
                     updated_ms INTEGER NOT NULL,
                     tool TEXT NOT NULL,
                     model TEXT,
                     title TEXT NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS messages (
                     conversation TEXT NOT NULL REFERENCES conversations(id),
                     seq INTEGER NOT NULL,
                     created_ms INTEGER NOT NULL,
                     role TEXT NOT NULL,
                     content TEXT NOT NULL,
                     info TEXT,
                     PRIMARY KEY (conversation, seq)
                 );
                 CREATE INDEX IF NOT EXISTS conversations_by_time ON conversations(updated_ms);
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

/// A conversation: the turns of `chat` jobs that continue each other.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Conversation {
    pub(crate) id: String,
    pub(crate) tool: String,
    pub(crate) model: Option<String>,
    pub(crate) title: String,
    /// Messages in it (a turn is two: the prompt and the answer).
    pub(crate) messages: i64,
    pub(crate) updated_ms: i64,
}

/// One turn of a conversation: a prompt, its answer, and who answered.
pub(crate) struct Turn<'a> {
    pub(crate) tool: &'a str,
    pub(crate) model: Option<&'a str>,
    pub(crate) prompt: &'a str,
    pub(crate) answer: &'a str,
    /// What the tool reported (usage, timings).
    pub(crate) info: &'a Map<String, Value>,
}

/// How many characters of the first prompt name a conversation.
const TITLE_CHARS: usize = 60;

impl Store {
    /// Returns the conversation `id` (or the only one whose id starts with it), or the latest
    /// one when `id` is `None`.
    pub(crate) fn conversation(&self, id: Option<&str>) -> Result<Option<Conversation>> {
        let row = conversation_row;
        let found = match id {
            None => self
                .conn
                .query_row(
                    &format!(
                        "{CONVERSATION_COLUMNS} ORDER BY c.updated_ms DESC, c.rowid DESC LIMIT 1"
                    ),
                    [],
                    row,
                )
                .optional()?,
            Some(id) => {
                let mut stmt = self.conn.prepare(&format!(
                    "{CONVERSATION_COLUMNS} WHERE substr(c.id, 1, length(?1)) = ?1 ORDER BY c.id = ?1 DESC LIMIT 2"
                ))?;
                let found: Vec<Conversation> = stmt
                    .query_map(params![id], row)?
                    .collect::<Result<_, _>>()?;
                match found.as_slice() {
                    [] => None,
                    [one] => Some(one.clone()),
                    [first, ..] if first.id == id => Some(first.clone()),
                    _ => anyhow::bail!("`{id}` names several conversations; give more of its id"),
                }
            }
        };
        Ok(found)
    }

    /// Returns the messages of conversation `id`, oldest first.
    pub(crate) fn messages(&self, id: &str) -> Result<Vec<launcher_sdk::Message>> {
        let mut stmt = self
            .conn
            .prepare("SELECT role, content FROM messages WHERE conversation = ?1 ORDER BY seq")?;
        let messages = stmt
            .query_map(params![id], |r| {
                Ok(launcher_sdk::Message::new(
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        Ok(messages)
    }

    /// Adds a turn to conversation `id`, or starts a new one with id `new_id`. Returns the
    /// conversation's id.
    pub(crate) fn add_turn(
        &mut self,
        id: Option<&str>,
        new_id: &str,
        turn: &Turn<'_>,
    ) -> Result<String> {
        let Turn {
            tool,
            model,
            prompt,
            answer,
            info,
        } = turn;
        let now = now_ms();
        let tx = self.conn.transaction()?;
        let id = match id {
            Some(id) => {
                tx.execute(
                    "UPDATE conversations SET updated_ms = ?2, model = coalesce(?3, model) WHERE id = ?1",
                    params![id, now, model],
                )?;
                id.to_string()
            }
            None => {
                let title: String = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
                let title: String = title.chars().take(TITLE_CHARS).collect();
                tx.execute(
                    "INSERT INTO conversations (id, created_ms, updated_ms, tool, model, title)
                     VALUES (?1, ?2, ?2, ?3, ?4, ?5)",
                    params![new_id, now, tool, model, title],
                )?;
                new_id.to_string()
            }
        };
        let next: i64 = tx.query_row(
            "SELECT coalesce(max(seq), 0) + 1 FROM messages WHERE conversation = ?1",
            params![id],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO messages (conversation, seq, created_ms, role, content) VALUES (?1, ?2, ?3, 'user', ?4)",
            params![id, next, now, prompt],
        )?;
        tx.execute(
            "INSERT INTO messages (conversation, seq, created_ms, role, content, info) VALUES (?1, ?2, ?3, 'assistant', ?4, ?5)",
            params![id, next + 1, now, answer, serde_json::to_string(*info)?],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Returns the latest `limit` conversations, newest first.
    pub(crate) fn conversations(&self, limit: usize) -> Result<Vec<Conversation>> {
        let mut stmt = self.conn.prepare(&format!(
            "{CONVERSATION_COLUMNS} ORDER BY c.updated_ms DESC, c.rowid DESC LIMIT ?1"
        ))?;
        let found = stmt
            .query_map(params![limit as i64], conversation_row)?
            .collect::<Result<_, _>>()?;
        Ok(found)
    }
}

/// The columns [`conversation_row`] reads.
const CONVERSATION_COLUMNS: &str = "SELECT c.id, c.tool, c.model, c.title, c.updated_ms,
        (SELECT count(*) FROM messages m WHERE m.conversation = c.id)
     FROM conversations c";

fn conversation_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: r.get(0)?,
        tool: r.get(1)?,
        model: r.get(2)?,
        title: r.get(3)?,
        updated_ms: r.get(4)?,
        messages: r.get(5)?,
    })
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
            capture: false,
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
    fn conversations_grow_by_turns_and_the_latest_is_found() {
        let home = tempfile::tempdir().unwrap();
        let mut store = Store::open(home.path()).unwrap();
        assert!(store.conversation(None).unwrap().is_none());
        let info = Map::new();
        let turn = |tool, model, prompt, answer| Turn {
            tool,
            model,
            prompt,
            answer,
            info: &info,
        };
        let first = store
            .add_turn(
                None,
                "c1",
                &turn("llm", Some("smol"), "Why is the sky blue?", "Rayleigh."),
            )
            .unwrap();
        assert_eq!(first, "c1");
        let next = turn("llm", None, "And at sunset?", "Longer path.");
        store.add_turn(Some("c1"), "unused", &next).unwrap();
        store
            .add_turn(None, "c2", &turn("other", None, "Hello", "Hi"))
            .unwrap();
        assert_eq!(store.conversation(None).unwrap().unwrap().id, "c2");
        let c1 = store.conversation(Some("c1")).unwrap().unwrap();
        assert_eq!((c1.messages, c1.model.as_deref()), (4, Some("smol")));
        assert_eq!(c1.title, "Why is the sky blue?");
        let messages = store.messages("c1").unwrap();
        assert_eq!(
            messages.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(),
            ["user", "assistant", "user", "assistant"]
        );
        assert_eq!(messages[3].content, "Longer path.");
        // `c` is a prefix of both.
        assert!(store.conversation(Some("c")).is_err());
        assert_eq!(store.conversations(10).unwrap().len(), 2);
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
