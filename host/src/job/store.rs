//! The job store: one SQLite database in the launcher home (`launcher.db`), holding the jobs
//! that can be resumed and the chat conversations that can be continued.
//!
//! A job is recorded when its plugin records its first checkpoint (a remote task id, say):
//! from then on it can outlive the command that started it. The record keeps the tool, task
//! and parameters (never settings, so never a secret), where its outputs go, the latest
//! checkpoint and the job's state. A conversation is the turns of `chat` jobs, each the user's
//! prompt and the answer, with the tool and model that answered. The history (`launcher
//! logs`, schema 2) is one entry per job that ended: its tool, task, parameters, input text,
//! outputs, duration, exit status and error, never a setting and never a secret; a chat job's
//! entry names its conversation. Schema 3 keeps a recorded job's last progress message, for
//! `launcher jobs`. `PRAGMA user_version` says which schema a file has; opening
//! an older file migrates it in place, keeping its data. The file is in write-ahead-log mode
//! (`launcher.db-wal` and `-shm` beside it), which needs the data directory on a local file
//! system, as SQLite's WAL does.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use launcher_sdk::serde_json::{self, Map, Value};
use rusqlite::{Connection, OptionalExtension, params};

use crate::output;

/// The schema this launcher writes.
const SCHEMA_VERSION: i64 = 3;

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
    pub(crate) fn as_str(self) -> &'static str {
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
    /// When it was recorded (its first checkpoint), in Unix milliseconds.
    pub(crate) created_ms: i64,
    /// When its checkpoint or state last changed.
    pub(crate) updated_ms: i64,
    /// Why it failed or was cancelled, when it says.
    pub(crate) error: Option<String>,
    /// The last progress it reported while a launcher ran it.
    pub(crate) progress: Option<String>,
    /// The files it wrote, once it ended and entered the history.
    pub(crate) written: Vec<PathBuf>,
}

/// The columns [`JobRow::read`] reads, in its order.
const JOB_COLUMNS: &str = "id, tool, task, params, outputs, checkpoint, state, created_ms,
    updated_ms, error, progress, (SELECT h.outputs FROM history h WHERE h.id = jobs.id)";

/// A row of the jobs table, before its JSON columns are parsed.
struct JobRow {
    id: String,
    tool: String,
    task: String,
    params: String,
    outputs: String,
    checkpoint: Option<String>,
    state: String,
    created_ms: i64,
    updated_ms: i64,
    error: Option<String>,
    progress: Option<String>,
    written: Option<String>,
}

impl JobRow {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
        Ok(JobRow {
            id: r.get(0)?,
            tool: r.get(1)?,
            task: r.get(2)?,
            params: r.get(3)?,
            outputs: r.get(4)?,
            checkpoint: r.get(5)?,
            state: r.get(6)?,
            created_ms: r.get(7)?,
            updated_ms: r.get(8)?,
            error: r.get(9)?,
            progress: r.get(10)?,
            written: r.get(11)?,
        })
    }

    fn record(self) -> Result<JobRecord> {
        let id = self.id;
        Ok(JobRecord {
            params: serde_json::from_str(&self.params)
                .with_context(|| format!("job {id} has unreadable parameters"))?,
            outputs: serde_json::from_str(&self.outputs)
                .with_context(|| format!("job {id} has an unreadable output plan"))?,
            checkpoint: self
                .checkpoint
                .map(|c| serde_json::from_str(&c))
                .transpose()
                .with_context(|| format!("job {id} has an unreadable checkpoint"))?,
            state: State::parse(&self.state),
            tool: self.tool,
            task: self.task,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            error: self.error,
            progress: self.progress,
            // An unreadable history column only costs the listing its file names.
            written: self
                .written
                .and_then(|w| serde_json::from_str::<Vec<OutputEntry>>(&w).ok())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|o| o.path)
                .collect(),
            id,
        })
    }
}

/// An open job store.
pub(crate) struct Store {
    conn: Connection,
}

impl Store {
    /// Returns the database file of a home.
    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join("launcher.db")
    }

    /// Opens (creating if needed) the store in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        let path = Store::path(dir);
        let conn = Connection::open(&path)
            .with_context(|| format!("failed to open the job store {}", path.display()))?;
        // Several launchers may write at once (a job and a `--resume`): wait for each other.
        conn.busy_timeout(Duration::from_secs(5))?;
        // A write-ahead log with `synchronous = NORMAL` makes a history entry a write without
        // an fsync (about a millisecond per run, see bench/README.md), still safe against a
        // killed launcher and, short of the last entries, against power loss. Checkpoints of
        // remote jobs are synced (see `checkpoint`). Closing leaves the log to the next
        // automatic checkpoint instead of syncing it on every exit.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            anyhow::bail!(
                "the job store {} was written by a newer launcher (schema {version})",
                path.display()
            );
        }
        if version < SCHEMA_VERSION {
            conn.execute_batch("BEGIN IMMEDIATE;")?;
            let migrated = migrate(&conn);
            conn.execute_batch(if migrated.is_ok() {
                "COMMIT;"
            } else {
                "ROLLBACK;"
            })?;
            migrated
                .with_context(|| format!("failed to upgrade the job store {}", path.display()))?;
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
        // A job may be resumed from another directory; its outputs still go where planned.
        let outputs = outputs.anchored();
        // A checkpoint stands for a remote task someone pays for: it reaches the disk before
        // the plugin goes on (a "submitting" checkpoint before the submit request).
        self.conn.pragma_update(None, "synchronous", "FULL")?;
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
                serde_json::to_string(&outputs)?,
                serde_json::to_string(checkpoint)?,
            ],
        )?;
        Ok(())
    }

    /// Keeps the last progress of a recorded job, for `launcher jobs`.
    pub(crate) fn set_progress(&self, id: &str, progress: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE jobs SET progress = ?2 WHERE id = ?1",
            params![id, progress],
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
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                JobRow::read,
            )
            .optional()?;
        row.map(JobRow::record).transpose()
    }

    /// Returns recorded jobs, newest first: at most `limit`, and with `since_ms` only those
    /// unfinished or changed since then.
    pub(crate) fn jobs(&self, limit: usize, since_ms: Option<i64>) -> Result<Vec<JobRecord>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs
             WHERE ?1 IS NULL OR state IN ('running', 'detached') OR updated_ms >= ?1
             ORDER BY created_ms DESC, id DESC LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![since_ms, limit as i64], JobRow::read)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(JobRow::record).collect()
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

/// The size of the write-ahead log past which recording a job checkpoints it.
const WAL_LIMIT: u64 = 1 << 20;

/// Adds a history entry, or completes the entry of a resumed job.
const RECORD_SQL: &str = "INSERT INTO history (id, started_ms, duration_ms, tool, task, params,
         input, input_bytes, input_sha256, outputs, status, exit_code, error, conversation, rerun_of)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
     ON CONFLICT(id) DO UPDATE SET duration_ms = history.duration_ms + excluded.duration_ms,
         outputs = excluded.outputs, status = excluded.status,
         exit_code = excluded.exit_code, error = excluded.error";

/// Schema 3: the last progress a recorded job reported (`rendering, 40%`).
const SCHEMA_3: &str = "ALTER TABLE jobs ADD COLUMN progress TEXT;";

/// Schema 1: resumable jobs and conversations.
const SCHEMA_1: &str = "
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
                 CREATE INDEX IF NOT EXISTS conversations_by_time ON conversations(updated_ms);";

/// Schema 2: the history of every job, searchable by its input text (FTS5, which the bundled
/// SQLite is built with).
const SCHEMA_2: &str = "
    CREATE TABLE IF NOT EXISTS history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        started_ms INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        tool TEXT NOT NULL,
        task TEXT NOT NULL,
        params TEXT NOT NULL,
        input TEXT,
        input_bytes INTEGER,
        input_sha256 TEXT,
        outputs TEXT NOT NULL,
        status TEXT NOT NULL,
        exit_code INTEGER NOT NULL,
        error TEXT,
        conversation TEXT,
        rerun_of TEXT
    );
    CREATE INDEX IF NOT EXISTS history_by_time ON history(started_ms);
    CREATE VIRTUAL TABLE IF NOT EXISTS history_fts
        USING fts5(input, content = 'history', content_rowid = 'seq');
    CREATE TRIGGER IF NOT EXISTS history_ai AFTER INSERT ON history BEGIN
        INSERT INTO history_fts(rowid, input) VALUES (new.seq, new.input);
    END;
    CREATE TRIGGER IF NOT EXISTS history_ad AFTER DELETE ON history BEGIN
        INSERT INTO history_fts(history_fts, rowid, input) VALUES ('delete', old.seq, old.input);
    END;
    CREATE TRIGGER IF NOT EXISTS history_au AFTER UPDATE ON history BEGIN
        INSERT INTO history_fts(history_fts, rowid, input) VALUES ('delete', old.seq, old.input);
        INSERT INTO history_fts(rowid, input) VALUES (new.seq, new.input);
    END;
";

/// Brings a store to [`SCHEMA_VERSION`], step by step, inside the caller's transaction.
fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 1 {
        conn.execute_batch(SCHEMA_1)?;
    }
    if version < 2 {
        conn.execute_batch(SCHEMA_2)?;
    }
    if version < 3 {
        conn.execute_batch(SCHEMA_3)?;
    }
    conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))?;
    Ok(())
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

/// Input text longer than this is kept as its SHA-256 digest, its size and its first
/// [`INPUT_HEAD_CHARS`] characters, so that one long document does not bloat the history.
pub(crate) const INPUT_KEEP_BYTES: usize = 64 * 1024;
/// How much of a digested input the history keeps (and searches).
pub(crate) const INPUT_HEAD_CHARS: usize = 200;

/// How a job ended, as the history keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Done,
    Failed,
    Cancelled,
    Detached,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Detached => "detached",
        }
    }
}

/// One output of a job in the history: where it went and how big it was (never its content).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct OutputEntry {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) media_type: String,
    /// `None` for text streamed to stdout.
    pub(crate) path: Option<PathBuf>,
    pub(crate) size: u64,
}

/// One job in the history.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Entry {
    pub(crate) id: String,
    /// When the job started, in milliseconds since the Unix epoch.
    pub(crate) started_ms: i64,
    pub(crate) duration_ms: i64,
    pub(crate) tool: String,
    pub(crate) task: String,
    /// The parameters, with secrets scrubbed; a digested input text is left out.
    pub(crate) params: Map<String, Value>,
    /// The input text, or its first [`INPUT_HEAD_CHARS`] characters when it was digested.
    pub(crate) input: Option<String>,
    /// The input's size and SHA-256, when it was too long to keep whole.
    pub(crate) input_bytes: Option<i64>,
    pub(crate) input_sha256: Option<String>,
    pub(crate) outputs: Vec<OutputEntry>,
    pub(crate) status: String,
    pub(crate) exit_code: i64,
    pub(crate) error: Option<String>,
    /// The conversation a chat job took part in.
    pub(crate) conversation: Option<String>,
    /// The job this one reran (`launcher rerun`).
    pub(crate) rerun_of: Option<String>,
}

/// What a job left for the history, before it is made safe to keep.
pub(crate) struct Ended<'a> {
    pub(crate) id: &'a str,
    pub(crate) tool: &'a str,
    pub(crate) task: &'a str,
    pub(crate) params: &'a Map<String, Value>,
    /// The parameter holding the job's input text, if any.
    pub(crate) input_param: Option<&'a str>,
    pub(crate) outputs: Vec<OutputEntry>,
    pub(crate) duration: Duration,
    pub(crate) status: Status,
    pub(crate) exit_code: u8,
    pub(crate) error: Option<String>,
    pub(crate) conversation: Option<String>,
    /// Every secret value the job was given: none of them is kept, wherever it appears.
    pub(crate) secrets: &'a [String],
}

impl Entry {
    /// Makes the history entry of a job that ended: secrets scrubbed from parameters, input
    /// and error; a long input kept as a digest.
    pub(crate) fn of(ended: Ended<'_>) -> Entry {
        use sha2::Digest as _;
        let scrub = |s: &str| crate::settings::scrub(s, ended.secrets);
        let mut params = ended.params.clone();
        let (mut input, mut input_bytes, mut input_sha256) = (None, None, None);
        if let Some(name) = ended.input_param
            && let Some(text) = params.get(name).and_then(Value::as_str).map(scrub)
        {
            if text.len() > INPUT_KEEP_BYTES {
                input_bytes = Some(text.len() as i64);
                input_sha256 = Some(
                    sha2::Sha256::digest(text.as_bytes())
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                );
                input = Some(text.chars().take(INPUT_HEAD_CHARS).collect());
                params.remove(name);
            } else {
                input = Some(text);
            }
        }
        for value in params.values_mut() {
            scrub_value(value, ended.secrets);
        }
        let duration_ms = ended.duration.as_millis() as i64;
        Entry {
            id: ended.id.to_string(),
            started_ms: now_ms() - duration_ms,
            duration_ms,
            tool: ended.tool.to_string(),
            task: ended.task.to_string(),
            params,
            input,
            input_bytes,
            input_sha256,
            outputs: ended.outputs,
            status: ended.status.as_str().to_string(),
            exit_code: i64::from(ended.exit_code),
            error: ended.error.as_deref().map(scrub),
            conversation: ended.conversation,
            rerun_of: None,
        }
    }
}

/// Replaces every secret in the strings of `value`.
fn scrub_value(value: &mut Value, secrets: &[String]) {
    match value {
        Value::String(s) if secrets.iter().any(|secret| s.contains(secret.as_str())) => {
            *s = crate::settings::scrub(s, secrets);
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scrub_value(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| scrub_value(v, secrets)),
        _ => {}
    }
}

/// Which history entries `launcher logs` lists.
#[derive(Debug, Default, Clone)]
pub(crate) struct Filter {
    pub(crate) limit: usize,
    pub(crate) tool: Option<String>,
    pub(crate) task: Option<String>,
    /// Only entries started at or after this time (ms since the epoch).
    pub(crate) since_ms: Option<i64>,
    /// Words that must all occur in the input text (full-text search).
    pub(crate) search: Option<String>,
}

/// The columns [`entry_row`] reads.
const ENTRY_COLUMNS: &str = "SELECT h.id, h.started_ms, h.duration_ms, h.tool, h.task, h.params,
        h.input, h.input_bytes, h.input_sha256, h.outputs, h.status, h.exit_code, h.error,
        h.conversation, h.rerun_of
     FROM history h";

fn entry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let json_column = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    let params: String = json_column(5)?;
    let outputs: String = json_column(9)?;
    Ok(Entry {
        id: r.get(0)?,
        started_ms: r.get(1)?,
        duration_ms: r.get(2)?,
        tool: r.get(3)?,
        task: r.get(4)?,
        params: serde_json::from_str(&params).unwrap_or_default(),
        input: r.get(6)?,
        input_bytes: r.get(7)?,
        input_sha256: r.get(8)?,
        outputs: serde_json::from_str(&outputs).unwrap_or_default(),
        status: r.get(10)?,
        exit_code: r.get(11)?,
        error: r.get(12)?,
        conversation: r.get(13)?,
        rerun_of: r.get(14)?,
    })
}

/// Turns words into an FTS5 query that matches entries holding all of them, whatever
/// punctuation they contain.
fn fts_query(words: &str) -> String {
    words
        .split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Store {
    /// Returns the file whose presence turns the history off, beside the database: checking
    /// it costs a run one `stat`, and no database is opened when it is there.
    pub(crate) fn logs_off_path(dir: &Path) -> PathBuf {
        Store::path(dir).with_file_name("logs-off")
    }

    /// Returns whether jobs are recorded in the history (`launcher logs off` turns it off).
    pub(crate) fn logging(dir: &Path) -> bool {
        !Store::logs_off_path(dir).exists()
    }

    /// Turns the history on or off.
    pub(crate) fn set_logging(dir: &Path, on: bool) -> Result<()> {
        let path = Store::logs_off_path(dir);
        if on {
            match std::fs::remove_file(&path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(err)
                        .with_context(|| format!("failed to remove {}", path.display()));
                }
                _ => {}
            }
        } else {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
            std::fs::write(
                &path,
                "While this file exists, launcher records no jobs in its history (`launcher logs on` removes it).\n",
            )
            .with_context(|| format!("failed to write {}", path.display()))?;
        }
        Ok(())
    }

    /// Records a job that ended (the caller checks [`Store::logging`] first). A resumed job
    /// updates its earlier (detached) entry.
    pub(crate) fn record(&self, entry: &Entry) -> Result<()> {
        self.conn.prepare(RECORD_SQL)?.execute(params![
            entry.id,
            entry.started_ms,
            entry.duration_ms,
            entry.tool,
            entry.task,
            serde_json::to_string(&entry.params)?,
            entry.input,
            entry.input_bytes,
            entry.input_sha256,
            serde_json::to_string(&entry.outputs)?,
            entry.status,
            entry.exit_code,
            entry.error,
            entry.conversation,
            entry.rerun_of,
        ])?;
        self.bound_log();
        Ok(())
    }

    /// Folds the write-ahead log back into the database once it passes a megabyte, so the
    /// next launcher does not read a growing log when it opens the store; this costs the
    /// fsyncs a commit would, once in many runs. A log another launcher is reading is left for
    /// a later run.
    fn bound_log(&self) {
        let Some(path) = self.conn.path().map(|p| format!("{p}-wal")) else {
            return;
        };
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > WAL_LIMIT) {
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
    }

    /// Readies [`Store::record`] ahead of time: compiling its statement reads the schema,
    /// which costs about a millisecond in a fresh process (see `bench/README.md`).
    pub(crate) fn warm(&self) -> Result<()> {
        self.conn.prepare(RECORD_SQL)?;
        Ok(())
    }

    /// Returns how many jobs the history holds.
    pub(crate) fn history_len(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM history", [], |r| r.get(0))?)
    }

    /// Notes that history entry `id` reran entry `of`.
    pub(crate) fn set_rerun_of(&self, id: &str, of: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE history SET rerun_of = ?2 WHERE id = ?1",
            params![id, of],
        )?;
        Ok(())
    }

    /// Returns the history entries `filter` selects, newest first.
    pub(crate) fn history(&self, filter: &Filter) -> Result<Vec<Entry>> {
        use rusqlite::types::Value as Sql;
        let mut clauses = Vec::new();
        let mut values: Vec<Sql> = Vec::new();
        if let Some(tool) = &filter.tool {
            values.push(Sql::Text(tool.clone()));
            clauses.push(format!("h.tool = ?{}", values.len()));
        }
        if let Some(task) = &filter.task {
            values.push(Sql::Text(task.clone()));
            clauses.push(format!("h.task = ?{}", values.len()));
        }
        if let Some(since) = filter.since_ms {
            values.push(Sql::Integer(since));
            clauses.push(format!("h.started_ms >= ?{}", values.len()));
        }
        if let Some(words) = filter.search.as_deref().map(fts_query)
            && !words.is_empty()
        {
            values.push(Sql::Text(words));
            clauses.push(format!(
                "h.seq IN (SELECT rowid FROM history_fts WHERE history_fts MATCH ?{})",
                values.len()
            ));
        }
        let filter_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        values.push(Sql::Integer(filter.limit as i64));
        let sql = format!(
            "{ENTRY_COLUMNS}{filter_sql} ORDER BY h.started_ms DESC, h.seq DESC LIMIT ?{}",
            values.len()
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let found = stmt
            .query_map(rusqlite::params_from_iter(values), entry_row)?
            .collect::<Result<_, _>>()?;
        Ok(found)
    }

    /// Returns the history entry `id`, or the only one whose id starts with it.
    pub(crate) fn entry(&self, id: &str) -> Result<Option<Entry>> {
        let mut stmt = self.conn.prepare(&format!(
            "{ENTRY_COLUMNS} WHERE substr(h.id, 1, length(?1)) = ?1 ORDER BY h.id = ?1 DESC LIMIT 2"
        ))?;
        let found: Vec<Entry> = stmt
            .query_map(params![id], entry_row)?
            .collect::<Result<_, _>>()?;
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            [first, ..] if first.id == id => Ok(Some(first.clone())),
            _ => anyhow::bail!("`{id}` names several jobs in the history; give more of its id"),
        }
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

pub(crate) fn now_ms() -> i64 {
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
            format_param: false,
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

    fn ended<'a>(
        id: &'a str,
        tool: &'a str,
        params: &'a Map<String, Value>,
        secrets: &'a [String],
    ) -> Ended<'a> {
        Ended {
            id,
            tool,
            task: "tts",
            params,
            input_param: Some("text"),
            outputs: vec![OutputEntry {
                name: "audio".into(),
                kind: "audio".into(),
                media_type: "audio/wav".into(),
                path: Some(PathBuf::from("/tmp/out/x.wav")),
                size: 1234,
            }],
            duration: Duration::from_millis(42),
            status: Status::Done,
            exit_code: 0,
            error: None,
            conversation: None,
            secrets,
        }
    }

    #[test]
    fn the_write_ahead_log_stays_bounded_and_entries_survive_reopening() {
        let home = tempfile::tempdir().unwrap();
        let wal = home.path().join("launcher.db-wal");
        let mut params = Map::new();
        // 200 entries of 20 KB of text: 4 MB of log if nothing folded it back.
        for i in 0..200 {
            params.insert(
                "text".into(),
                format!("{i} {}", "words ".repeat(3400)).into(),
            );
            let store = Store::open(home.path()).unwrap();
            store
                .record(&Entry::of(ended(&format!("e{i}"), "espeak", &params, &[])))
                .unwrap();
            let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
            assert!(size < 2 * WAL_LIMIT, "the log grew to {size} bytes");
        }
        let store = Store::open(home.path()).unwrap();
        assert_eq!(store.history_len().unwrap(), 200);
        assert!(store.entry("e199").unwrap().is_some());
    }

    #[test]
    fn history_entries_are_filtered_searched_and_found_by_prefix() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::open(home.path()).unwrap();
        let mut params = Map::new();
        for (id, tool, text) in [
            ("a1", "espeak", "the quick brown fox"),
            ("a2", "azure", "a lighthouse in fog"),
            ("b3", "espeak", "fog over the bay"),
        ] {
            params.insert("text".into(), text.into());
            store
                .record(&Entry::of(ended(id, tool, &params, &[])))
                .unwrap();
        }
        let ids = |filter: Filter| -> Vec<String> {
            store
                .history(&Filter {
                    limit: filter.limit.max(1),
                    ..filter
                })
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect()
        };
        let all = Filter {
            limit: 10,
            ..Filter::default()
        };
        assert_eq!(ids(all.clone()), ["b3", "a2", "a1"]);
        assert_eq!(
            ids(Filter {
                limit: 2,
                ..all.clone()
            }),
            ["b3", "a2"]
        );
        let espeak = Filter {
            tool: Some("espeak".into()),
            ..all.clone()
        };
        assert_eq!(ids(espeak), ["b3", "a1"]);
        let fog = Filter {
            search: Some("fog".into()),
            ..all.clone()
        };
        assert_eq!(ids(fog), ["b3", "a2"]);
        // Punctuation is no FTS syntax error; every word must match.
        let quoted = Filter {
            search: Some("\"fog\" bay".into()),
            ..all.clone()
        };
        assert_eq!(ids(quoted), ["b3"]);
        let future = Filter {
            since_ms: Some(now_ms() + 60_000),
            ..all.clone()
        };
        assert!(ids(future).is_empty());
        assert_eq!(store.entry("b").unwrap().unwrap().id, "b3");
        assert!(store.entry("a").is_err());
        let a1 = store.entry("a1").unwrap().unwrap();
        assert_eq!(a1.outputs[0].size, 1234);
        assert_eq!(a1.input.as_deref(), Some("the quick brown fox"));

        assert!(Store::logging(home.path()));
        Store::set_logging(home.path(), false).unwrap();
        assert!(!Store::logging(home.path()));
        Store::set_logging(home.path(), true).unwrap();
        Store::set_logging(home.path(), true).unwrap();
        assert!(Store::logging(home.path()));
    }

    #[test]
    fn secrets_are_scrubbed_and_long_inputs_digested() {
        let secrets = vec!["s3cr3t-value".to_string()];
        let mut params = Map::new();
        params.insert("text".into(), "say s3cr3t-value aloud".into());
        params.insert(
            "voices".into(),
            Value::Array(vec!["x-s3cr3t-value-y".into()]),
        );
        let mut job = ended("j1", "espeak", &params, &secrets);
        job.error = Some("401: key s3cr3t-value rejected".into());
        let entry = Entry::of(job);
        let all = serde_json::to_string(&entry).unwrap();
        assert!(!all.contains("s3cr3t-value"), "{all}");
        assert_eq!(entry.input.as_deref(), Some("say *** aloud"));

        let long = "word ".repeat(INPUT_KEEP_BYTES / 4);
        params.insert("text".into(), long.clone().into());
        let entry = Entry::of(ended("j2", "espeak", &params, &[]));
        assert_eq!(entry.input_bytes, Some(long.len() as i64));
        assert_eq!(
            entry.input.as_ref().unwrap().chars().count(),
            INPUT_HEAD_CHARS
        );
        assert_eq!(entry.input_sha256.as_ref().unwrap().len(), 64);
        assert!(!entry.params.contains_key("text"));
    }

    #[test]
    fn a_schema_1_store_is_migrated_with_its_data() {
        let home = tempfile::tempdir().unwrap();
        let conn = Connection::open(Store::path(home.path())).unwrap();
        conn.execute_batch(SCHEMA_1).unwrap();
        conn.execute_batch(
            "INSERT INTO conversations VALUES ('c1', 1, 1, 'llm', NULL, 'old');
             PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(conn);
        let store = Store::open(home.path()).unwrap();
        assert_eq!(
            store.conversation(Some("c1")).unwrap().unwrap().title,
            "old"
        );
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // Schema 3's column is there too.
        store
            .checkpoint("j0", "t", "txt2vid", &Map::new(), &plan(), &Value::Null)
            .unwrap();
        store.set_progress("j0", "rendering (40%)").unwrap();
        let job = store.get("j0").unwrap().unwrap();
        assert_eq!(job.progress.as_deref(), Some("rendering (40%)"));
        let params = Map::new();
        store
            .record(&Entry::of(ended("j", "t", &params, &[])))
            .unwrap();
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
