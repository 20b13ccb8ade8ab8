//! The signed freshness statement: what stops a registry (or anyone between it and the client)
//! from serving an older, validly signed copy of its index.
//!
//! Archive signatures say *what* a version is, not whether the index listing it is current: a
//! replayed index from last month is still perfectly signed, and would hide every later release
//! and yank. So a publisher also signs a small statement of the whole index, in the spirit of
//! TUF's timestamp and snapshot roles, with the same minisign key as the archives:
//!
//! ```text
//! freshness.json          {"v":1,"issued":1764543600,"expires":1767135600,
//!                          "files":{"catalog.jsonl":"<sha256>","config.json":"<sha256>",
//!                                   "ec/ho/echo":"<sha256>", ...}}
//! freshness.json.minisig  its minisign signature, trusted comment `launcher-freshness ...`
//! ```
//!
//! `issued` and `expires` are seconds since the Unix epoch; `expires` may be `null` (never),
//! which clients accept only from local registries. `files` holds the sha256 of every index
//! file, `config.json` and `catalog.jsonl`. A client checks the signature with the registry's
//! trusted keys, refuses an expired statement, refuses one issued before the newest it has seen
//! from that registry (remembered under `trust/` in the launcher home), and refuses any index
//! file whose digest the statement does not give. A local registry without a statement is
//! accepted with a warning (older local registries had none); an HTTP(S) registry must have one.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use minisign::SignatureBox;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic;
use crate::error::{Error, ErrorKind, Result};
use crate::index::{CATALOG_FILE, CONFIG_FILE, index_path};
use crate::verify::{TrustedKeys, hex};

/// The statement's file name at the registry root.
pub const STATEMENT_FILE: &str = "freshness.json";

/// Its signature's file name at the registry root.
pub const SIGNATURE_FILE: &str = "freshness.json.minisig";

/// The statement schema this crate writes and understands.
const STATEMENT_SCHEMA: u32 = 1;

/// The tag a statement signature's trusted comment starts with, so that no archive signature
/// (tagged `launcher-plugin`) can pass for one.
const COMMENT_TAG: &str = "launcher-freshness";

/// How long a statement stays valid when the publisher does not say: long enough that a
/// registry published from a laptop does not lapse over a holiday, short enough that a replayed
/// copy soon stops working.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);

/// A signed statement of an index's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// The schema version.
    pub v: u32,
    /// When it was signed, in seconds since the Unix epoch.
    pub issued: u64,
    /// When it stops being valid, in seconds since the Unix epoch; `None` for never.
    pub expires: Option<u64>,
    /// The sha256 of every index file, `config.json` and `catalog.jsonl`, by relative path.
    pub files: BTreeMap<String, String>,
}

impl Statement {
    /// Returns the digest the statement gives for `relative`, if it covers it.
    pub fn digest(&self, relative: &str) -> Option<&str> {
        self.files.get(relative).map(String::as_str)
    }

    /// Checks that the statement is not expired at `now`.
    pub(crate) fn check_expiry(&self, registry: &str, now: SystemTime) -> Result<()> {
        let now = seconds(now);
        match self.expires {
            Some(expires) if now >= expires => Err(ErrorKind::Stale {
                registry: registry.to_string(),
                message: format!(
                    "its signed freshness statement expired {} ago (at {expires} seconds since \
                     the epoch)",
                    human_duration(now - expires)
                ),
                hint: "the registry's publisher has to re-sign it with `launcher registry \
                       refresh-signature` (or publish again)"
                    .to_string(),
            }
            .into()),
            _ => Ok(()),
        }
    }
}

/// Returns seconds since the Unix epoch.
pub(crate) fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn human_duration(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        7200..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

/// Returns the trusted comment of a statement's signature.
fn trusted_comment(statement: &Statement) -> String {
    let expires = statement
        .expires
        .map_or_else(|| "never".to_string(), |e| e.to_string());
    format!(
        "{COMMENT_TAG} issued={} expires={expires}",
        statement.issued
    )
}

/// Computes the statement of the index directory `index`: digests of `config.json`,
/// `catalog.jsonl` and every index file at its sparse path.
pub(crate) fn survey(index: &Path) -> Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for root_file in [CONFIG_FILE, CATALOG_FILE] {
        let path = index.join(root_file);
        match fs::read(&path) {
            Ok(bytes) => {
                files.insert(root_file.to_string(), sha256(&bytes));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("read", &path, e)),
        }
    }
    // Index files sit one to three directories deep (`1/a`, `3/f/fox`, `az/ur/azure-tts`); a
    // file counts only if its path is the sparse path of its own name.
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = index.join(&relative);
        let entries = fs::read_dir(&dir).map_err(|e| Error::io("read", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = relative.join(&name);
            let depth = path.components().count();
            let kind = entry.file_type().map_err(|e| Error::io("read", &dir, e))?;
            if kind.is_dir() && depth < 3 && !name.starts_with('.') {
                pending.push(path);
            } else if kind.is_file() && depth > 1 {
                let text = path.to_string_lossy().replace('\\', "/");
                if index_path(&name).as_deref() == Some(text.as_str()) {
                    let full = index.join(&path);
                    let bytes = fs::read(&full).map_err(|e| Error::io("read", &full, e))?;
                    files.insert(text, sha256(&bytes));
                }
            }
        }
    }
    Ok(files)
}

/// Signs a fresh statement of the index directory `index` and writes it with its signature.
/// `issued` is at least one second after any statement already there, so clients always see
/// the new one as newer. Returns the statement.
pub(crate) fn write(
    index: &Path,
    key: &minisign::SecretKey,
    now: SystemTime,
    validity: Option<Duration>,
) -> Result<Statement> {
    let previous = fs::read(index.join(STATEMENT_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Statement>(&bytes).ok());
    let issued = match previous {
        Some(p) => seconds(now).max(p.issued + 1),
        None => seconds(now),
    };
    let statement = Statement {
        v: STATEMENT_SCHEMA,
        issued,
        expires: validity.map(|v| issued + v.as_secs()),
        files: survey(index)?,
    };
    let text = serde_json::to_string(&statement).expect("a statement is JSON") + "\n";
    let staged = index.join(format!(".{STATEMENT_FILE}.new"));
    atomic::write_file(&staged, text.as_bytes())?;
    let sig = crate::publish::sign_with(&staged, key, &trusted_comment(&statement))?;
    // The signature goes first: a reader between the two renames sees the old statement with
    // the new signature and refuses it, rather than trusting an unsigned pair.
    atomic::write_file(&index.join(SIGNATURE_FILE), sig.as_bytes())?;
    fs::rename(&staged, index.join(STATEMENT_FILE))
        .map_err(|e| Error::io("replace", index.join(STATEMENT_FILE), e))?;
    atomic::sync_dir(index)?;
    Ok(statement)
}

/// Checks a statement's signature with `keys` and parses it.
pub(crate) fn verify(
    registry: &str,
    keys: &TrustedKeys,
    statement: &str,
    signature: &str,
) -> Result<Statement> {
    let invalid = |message: String| -> Error {
        ErrorKind::Freshness {
            registry: registry.to_string(),
            message,
        }
        .into()
    };
    let signature = SignatureBox::from_string(signature)
        .map_err(|e| invalid(format!("its signature is malformed: {e}")))?;
    let comment = signature
        .trusted_comment()
        .map_err(|e| invalid(format!("its signature is malformed: {e}")))?;
    keys.verify_bytes(statement.as_bytes(), &signature)
        .map_err(|e| invalid(e.to_string()))?;
    if comment.split_whitespace().next() != Some(COMMENT_TAG) {
        return Err(invalid(format!(
            "its signature's trusted comment `{comment}` is not a freshness statement's"
        )));
    }
    let parsed: Statement =
        serde_json::from_str(statement).map_err(|e| invalid(format!("it does not parse: {e}")))?;
    if parsed.v != STATEMENT_SCHEMA {
        return Err(invalid(format!(
            "its schema {} is not {STATEMENT_SCHEMA}, the one this launcher understands",
            parsed.v
        )));
    }
    Ok(parsed)
}

/// What a client remembers of a registry's newest statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Remembered {
    /// The registry's location when it was seen; another location starts afresh.
    index: String,
    issued: u64,
    sha256: String,
}

/// The newest statement seen from each registry, under `trust/` in the launcher home.
#[derive(Debug, Clone)]
pub(crate) struct Memory {
    path: PathBuf,
}

impl Memory {
    pub(crate) fn new(home: &Path, registry: &str) -> Memory {
        Memory {
            path: home.join("trust").join(format!("{registry}.json")),
        }
    }

    /// Returns the issue time of the newest statement seen from `index`, if any.
    pub(crate) fn newest_issued(&self, index: &str) -> Option<u64> {
        fs::read(&self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Remembered>(&bytes).ok())
            .filter(|r| r.index == index)
            .map(|r| r.issued)
    }

    /// Refuses `statement` if it is older than the newest seen from `index`, and remembers it
    /// if it is newer.
    pub(crate) fn check_and_remember(
        &self,
        registry: &str,
        index: &str,
        statement: &Statement,
        text: &str,
    ) -> Result<()> {
        let digest = sha256(text.as_bytes());
        let known = fs::read(&self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Remembered>(&bytes).ok())
            .filter(|r| r.index == index);
        if let Some(known) = &known {
            let older = statement.issued < known.issued;
            let conflicting = statement.issued == known.issued && digest != known.sha256;
            if older || conflicting {
                return Err(ErrorKind::Stale {
                    registry: registry.to_string(),
                    message: format!(
                        "it serves an index signed at {} but one signed at {} was seen before; \
                         this is an old copy (a mirror lagging behind, or a replay)",
                        statement.issued, known.issued
                    ),
                    hint: "try again later or use another mirror; nothing was changed".to_string(),
                }
                .into());
            }
            if statement.issued == known.issued {
                return Ok(());
            }
        }
        let remembered = Remembered {
            index: index.to_string(),
            issued: statement.issued,
            sha256: digest,
        };
        let dir = atomic::parent(&self.path);
        fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        let text = serde_json::to_string(&remembered).expect("JSON") + "\n";
        atomic::write_file(&self.path, text.as_bytes())
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::KeyPair;

    fn keys() -> (KeyPair, minisign::SecretKey, TrustedKeys) {
        let pair = KeyPair::generate(None).unwrap();
        let secret = crate::publish::secret_key_from_text(&pair.secret, None).unwrap();
        let trusted = TrustedKeys::parse([pair.public_base64()]).unwrap();
        (pair, secret, trusted)
    }

    fn index_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CONFIG_FILE), "{}").unwrap();
        fs::write(dir.path().join(CATALOG_FILE), "line\n").unwrap();
        fs::create_dir_all(dir.path().join("ec/ho")).unwrap();
        fs::write(dir.path().join("ec/ho/echo"), "echo\n").unwrap();
        fs::create_dir_all(dir.path().join("archives/echo")).unwrap();
        fs::write(dir.path().join("archives/echo/x.tar.gz"), "bytes").unwrap();
        fs::write(dir.path().join("ec/ho/stray"), "not at its own path").unwrap();
        dir
    }

    fn read(dir: &Path) -> (String, String) {
        (
            fs::read_to_string(dir.join(STATEMENT_FILE)).unwrap(),
            fs::read_to_string(dir.join(SIGNATURE_FILE)).unwrap(),
        )
    }

    #[test]
    fn covers_exactly_the_index_files() {
        let dir = index_dir();
        let files = survey(dir.path()).unwrap();
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(names, [CATALOG_FILE, CONFIG_FILE, "ec/ho/echo"]);
        assert_eq!(files["ec/ho/echo"], sha256(b"echo\n"));
    }

    #[test]
    fn signed_statements_verify_and_each_is_newer_than_the_last() {
        let dir = index_dir();
        let (_, secret, trusted) = keys();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let first = write(dir.path(), &secret, now, Some(DEFAULT_VALIDITY)).unwrap();
        let (text, sig) = read(dir.path());
        assert_eq!(verify("r", &trusted, &text, &sig).unwrap(), first);
        // The same second again still gives a newer statement.
        let second = write(dir.path(), &secret, now, None).unwrap();
        assert_eq!(second.issued, first.issued + 1);
        assert_eq!(second.expires, None);

        // Another key, or an edited statement, is refused.
        let (_, _, stranger) = keys();
        let (text, sig) = read(dir.path());
        assert!(verify("r", &stranger, &text, &sig).is_err());
        let edited = text.replace("\"expires\":null", "\"expires\":1");
        assert!(verify("r", &trusted, &edited, &sig).is_err());
    }

    #[test]
    fn expiry_and_replays_are_refused() {
        let dir = index_dir();
        let (_, secret, _) = keys();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let old = write(dir.path(), &secret, now, Some(Duration::from_secs(60))).unwrap();
        let (old_text, _) = read(dir.path());
        old.check_expiry("r", now + Duration::from_secs(59))
            .unwrap();
        let err = old
            .check_expiry("r", now + Duration::from_secs(3 * 86_400))
            .unwrap_err();
        assert!(err.to_string().contains("expired 2 days ago"), "{err}");

        let home = tempfile::tempdir().unwrap();
        let memory = Memory::new(home.path(), "r");
        memory
            .check_and_remember("r", "/srv", &old, &old_text)
            .unwrap();
        let new = write(dir.path(), &secret, now, None).unwrap();
        let (new_text, _) = read(dir.path());
        memory
            .check_and_remember("r", "/srv", &new, &new_text)
            .unwrap();
        // The same statement again is fine; the older one no longer is.
        memory
            .check_and_remember("r", "/srv", &new, &new_text)
            .unwrap();
        let err = memory
            .check_and_remember("r", "/srv", &old, &old_text)
            .unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Stale { .. }), "{err}");
        // Another location is another registry.
        memory
            .check_and_remember("r", "https://elsewhere/", &old, &old_text)
            .unwrap();
    }
}
