//! What the emulators of asynchronous video services share: remote tasks that move through
//! their states as they are looked at, and result files behind signed links that expire.
//!
//! Time in these emulators is counted in looks, not seconds: each poll of a task moves it one
//! step (pending, then throttled for as many looks as scripted, then running with rising
//! progress, then its outcome). Tests thus run a minutes-long job in milliseconds while
//! the adapter keeps its real polling rule, shortened only by the SDK's debug-build time scale
//! (`LAUNCHER_TEST_TIME_SCALE`); [`Tasks::poll_gaps`] shows how far apart the looks came.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::http::{Reply, Request, Response};

/// How a task goes: looks spent in each waiting state, then how it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    /// Looks spent throttled (waiting behind the account's concurrency limit).
    pub throttled: u32,
    /// Looks spent running.
    pub running: u32,
    /// How it ends.
    pub outcome: Outcome,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            throttled: 0,
            running: 2,
            outcome: Outcome::Succeed,
        }
    }
}

/// How a task ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// With a result file.
    Succeed,
    /// With a service's failure code and message.
    Fail {
        /// The code, e.g. `SAFETY.INPUT.TEXT`.
        code: String,
        /// The words.
        message: String,
    },
}

/// Where a task is, as a look finds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Accepted, not started.
    Pending,
    /// Waiting behind the account's concurrency limit.
    Throttled,
    /// Running, this far along (0 to 1).
    Running(f64),
    /// Done; the result file's link expires at this many seconds since the epoch.
    Succeeded {
        /// When the result's link expires.
        expires: u64,
    },
    /// Failed.
    Failed {
        /// The failure code.
        code: String,
        /// The words.
        message: String,
    },
    /// Cancelled by its owner.
    Cancelled,
}

struct Entry {
    looks: u32,
    script: Script,
    cancelled: bool,
    expires: Option<u64>,
}

struct Inner {
    next: u64,
    tasks: HashMap<String, Entry>,
    scripts: VecDeque<Script>,
    polls: Vec<(String, Instant)>,
    cancelled: Vec<String>,
    /// Seconds a result link lives from the moment the task succeeds (negative: already dead).
    link_lifetime: i64,
}

/// The tasks of one emulator.
pub struct Tasks {
    prefix: &'static str,
    inner: Mutex<Inner>,
}

impl Tasks {
    /// Returns an empty book whose task ids start with `prefix`.
    pub fn new(prefix: &'static str) -> Tasks {
        Tasks {
            prefix,
            inner: Mutex::new(Inner {
                next: 1,
                tasks: HashMap::new(),
                scripts: VecDeque::new(),
                polls: Vec::new(),
                cancelled: Vec::new(),
                link_lifetime: 24 * 3600,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the next task created go as `script` (scripts queue up in order); later tasks
    /// go as [`Script::default`].
    pub fn script_next(&self, script: Script) {
        self.lock().scripts.push_back(script);
    }

    /// Sets how long result links live once a task succeeds; a negative number makes links
    /// that have already expired.
    pub fn link_lifetime(&self, seconds: i64) {
        self.lock().link_lifetime = seconds;
    }

    /// Creates a task and returns its id.
    pub fn create(&self) -> String {
        let mut inner = self.lock();
        let id = format!(
            "{}-{:04}-7f20-4503-a1c2-{:012}",
            self.prefix, inner.next, inner.next
        );
        inner.next += 1;
        let script = inner.scripts.pop_front().unwrap_or_default();
        inner.tasks.insert(
            id.clone(),
            Entry {
                looks: 0,
                script,
                cancelled: false,
                expires: None,
            },
        );
        id
    }

    /// Looks at task `id`, moving it one step on; `None` when there is no such task.
    pub fn look(&self, id: &str) -> Option<Phase> {
        let mut inner = self.lock();
        let lifetime = inner.link_lifetime;
        inner.polls.push((id.to_string(), Instant::now()));
        let entry = inner.tasks.get_mut(id)?;
        if entry.cancelled {
            return Some(Phase::Cancelled);
        }
        entry.looks += 1;
        let Script {
            throttled,
            running,
            outcome,
        } = &entry.script;
        let n = entry.looks;
        Some(if n == 1 {
            Phase::Pending
        } else if n <= 1 + throttled {
            Phase::Throttled
        } else if n <= 1 + throttled + running {
            Phase::Running(f64::from(n - 1 - throttled) / f64::from(running + 1))
        } else {
            match outcome {
                Outcome::Succeed => {
                    let expires = *entry
                        .expires
                        .get_or_insert_with(|| now().saturating_add_signed(lifetime));
                    Phase::Succeeded { expires }
                }
                Outcome::Fail { code, message } => Phase::Failed {
                    code: code.clone(),
                    message: message.clone(),
                },
            }
        })
    }

    /// Cancels task `id`; returns false when there is no such task. `forget` removes it, as
    /// a service that deletes a cancelled task does.
    pub fn cancel(&self, id: &str, forget: bool) -> bool {
        let mut inner = self.lock();
        let found = if forget {
            inner.tasks.remove(id).is_some()
        } else {
            match inner.tasks.get_mut(id) {
                Some(entry) => {
                    entry.cancelled = true;
                    true
                }
                None => false,
            }
        };
        if found {
            inner.cancelled.push(id.to_string());
        }
        found
    }

    /// Returns the ids of the tasks cancelled, in order.
    pub fn cancelled(&self) -> Vec<String> {
        self.lock().cancelled.clone()
    }

    /// Returns how many tasks were created.
    pub fn created(&self) -> usize {
        (self.lock().next - 1) as usize
    }

    /// Returns the time between consecutive looks at task `id`.
    pub fn poll_gaps(&self, id: &str) -> Vec<Duration> {
        let inner = self.lock();
        let times: Vec<Instant> = inner
            .polls
            .iter()
            .filter(|(task, _)| task == id)
            .map(|(_, at)| *at)
            .collect();
        times.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

/// Returns the current time in seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How a result link carries its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// `?_jwt=<JWT with an exp claim>`, as Runway's links do.
    Jwt,
    /// `?Expires=<seconds>&Signature=…`, as CloudFront's links do.
    Expires,
}

/// Returns the link to task `id`'s result (a file ending `.extension`) under `base`,
/// expiring at `expires`.
pub fn result_link(
    base: &str,
    id: &str,
    extension: &str,
    expires: u64,
    signing: Signing,
) -> String {
    match signing {
        Signing::Jwt => {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
            let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"id":"{id}","exp":{expires}}}"#));
            format!("{base}/results/{id}.{extension}?_jwt={header}.{claims}.emulator-signature")
        }
        Signing::Expires => {
            format!(
                "{base}/results/{id}.{extension}?Expires={expires}&Signature=emulator-signature"
            )
        }
    }
}

/// Serves a result link made by [`result_link`]: `file` (of `media_type`) while the link
/// lives, 403 once its expiry has passed, 404 for a link that names no expiry.
pub fn serve_result(req: &Request, file: &[u8], media_type: &str) -> Reply {
    let query = req.path.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut expires = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("Expires", value)) => expires = value.parse::<u64>().ok(),
            Some(("_jwt", token)) => {
                expires = token
                    .split('.')
                    .nth(1)
                    .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .and_then(|claims| claims["exp"].as_u64());
            }
            _ => {}
        }
    }
    match expires {
        None => Reply::Respond(Response::new(404)),
        Some(at) if at <= now() => Reply::Respond(
            Response::new(403)
                .header("Content-Type", "application/xml")
                .body("<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"),
        ),
        Some(_) => Reply::Respond(
            Response::new(200)
                .header("Content-Type", media_type)
                .body(file.to_vec()),
        ),
    }
}

/// Returns whether `req` asks for a result file.
pub fn is_result(req: &Request) -> bool {
    req.method == "GET" && req.path.starts_with("/results/")
}
