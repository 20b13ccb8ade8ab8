//! Publishing into an index directory: packing, signing, appending the index line, yanking;
//! and minisign key generation.
//!
//! `publish` into an empty directory makes a working registry: it writes `config.json` with a
//! relative `dl` template ([`DEFAULT_DL_TEMPLATE`]), puts the archive where the template points,
//! and appends the line to the plugin's index file and to the catalog. Lines are never
//! rewritten, with two exceptions that touch one line only: yanking flips its `yanked` flag,
//! and publishing another target of a published version adds to its `targets`.
//!
//! Every change ends by re-signing the index's freshness statement ([`crate::freshness`]), and
//! changes to one index directory take a lock on it (`.lock` inside), so two publishers at once
//! cannot interleave their edits.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;
use launcher_sdk::Manifest;
use minisign::{KeyPair as MinisignKeyPair, PublicKey, PublicKeyBox, SecretKey, SecretKeyBox};
use semver::{Version, VersionReq};
use serde_json::Value;

use crate::atomic;
use crate::error::{Error, ErrorKind, Result};
use crate::freshness::{self, STATEMENT_FILE, Statement};
use crate::index::{
    Artifact, CATALOG_FILE, CONFIG_FILE, DEFAULT_DL_TEMPLATE, INDEX_SCHEMA, IndexConfig, IndexFile,
    IndexLine, index_path,
};
use crate::plugin_toml::{PLUGIN_TOML, PLUGIN_TOML_SCHEMA, PluginToml};
use crate::verify::{key_id, sha256_file, trusted_comment};

/// A minisign key pair, as the texts of its two files.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// The public key file (`.pub`): a comment line and the base64 key line.
    pub public: String,
    /// The secret key file (`.key`), encrypted when generated with a password.
    pub secret: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key must never reach a log.
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Generates a key pair; with a password the secret key is encrypted (scrypt), as the
    /// `minisign` tool does.
    pub fn generate(password: Option<&str>) -> Result<KeyPair> {
        let failed = |e: minisign::PError| -> Error {
            ErrorKind::Key {
                key: "(new)".to_string(),
                message: e.to_string(),
            }
            .into()
        };
        let pair = match password {
            Some(password) => {
                MinisignKeyPair::generate_encrypted_keypair(Some(password.to_string()))
            }
            None => MinisignKeyPair::generate_unencrypted_keypair(),
        }
        .map_err(failed)?;
        let id = key_id(pair.pk.keynum());
        let public = pair.pk.to_box().map_err(failed)?.into_string();
        let secret = pair
            .sk
            .to_box(Some(&format!("launcher secret key {id}")))
            .map_err(failed)?
            .into_string();
        Ok(KeyPair { public, secret })
    }

    /// Returns the public key's base64 line, the form `registry add --trust` takes.
    pub fn public_base64(&self) -> String {
        self.public
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .unwrap_or_default()
            .to_string()
    }

    /// Returns the key id, in hex as the `minisign` tool prints it.
    pub fn key_id(&self) -> String {
        PublicKeyBox::from_string(&self.public)
            .and_then(PublicKeyBox::into_public_key)
            .map(|k| key_id(k.keynum()))
            .unwrap_or_default()
    }

    /// Writes the secret key (readable by its owner only) and the public key, refusing to
    /// overwrite either.
    pub fn write(&self, secret_path: &Path, public_path: &Path) -> Result<()> {
        write_new(secret_path, self.secret.as_bytes(), true)?;
        write_new(public_path, self.public.as_bytes(), false)
    }
}

fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options
        .open(path)
        .map_err(|e| Error::io("create", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("write", path, e))
}

/// Loads a minisign secret key file; `password` unlocks an encrypted one.
fn load_secret_key(path: &Path, password: Option<&str>) -> Result<SecretKey> {
    let text = fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    secret_key_from_text(&text, password).map_err(|message| {
        ErrorKind::Key {
            key: format!("`{}`", path.display()),
            message,
        }
        .into()
    })
}

pub(crate) fn secret_key_from_text(
    text: &str,
    password: Option<&str>,
) -> std::result::Result<SecretKey, String> {
    let boxed = || SecretKeyBox::from_string(text).map_err(|e| e.to_string());
    match boxed()?.into_unencrypted_secret_key() {
        Ok(key) => Ok(key),
        Err(_) if unencrypted_without_checksum(text).is_some() => {
            Ok(unencrypted_without_checksum(text).expect("just checked"))
        }
        // Never let the crate prompt on the terminal: no password given means none to use.
        Err(_) => match password {
            Some(password) => boxed()?
                .into_secret_key(Some(password.to_string()))
                .map_err(|e| e.to_string()),
            None => Err("it is password-protected (or damaged); give its password".to_string()),
        },
    }
}

/// Reads an unencrypted key whose checksum is all zeros, as `minisign -G -W` (0.11) writes
/// them and the minisign crate refuses as corrupt. Nothing is lost: every signature is checked
/// against the key's own public half right after signing, so a damaged key still fails.
fn unencrypted_without_checksum(text: &str) -> Option<SecretKey> {
    // sig_alg 2, kdf_alg 2, chk_alg 2, salt 32, opslimit 8, memlimit 8, keynum 8, key 64, chk 32.
    const LEN: usize = 158;
    let line = text.lines().nth(1)?.trim();
    let bytes = base64_decode(line)?;
    let unencrypted = bytes.len() == LEN && bytes[2..4] == [0, 0];
    if !unencrypted || bytes[LEN - 32..].iter().any(|b| *b != 0) {
        return None;
    }
    SecretKey::from_bytes(&bytes).ok()
}

/// Decodes standard padded base64, or returns `None`.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Signs the file at `archive` with a secret key (the text of a minisign `.key` file) and the
/// given trusted comment; returns the signature file's text.
pub fn sign(
    archive: &Path,
    secret_key: &str,
    password: Option<&str>,
    trusted_comment: &str,
) -> Result<String> {
    let key = secret_key_from_text(secret_key, password).map_err(|message| ErrorKind::Key {
        key: "(given)".to_string(),
        message,
    })?;
    sign_with(archive, &key, trusted_comment)
}

pub(crate) fn sign_with(archive: &Path, key: &SecretKey, trusted_comment: &str) -> Result<String> {
    let file = File::open(archive).map_err(|e| Error::io("read", archive, e))?;
    let untrusted = "signature from launcher publish";
    let failed = |e: minisign::PError| -> Error {
        ErrorKind::Key {
            key: format!("for `{}`", archive.display()),
            message: format!("signing failed: {e}"),
        }
        .into()
    };
    // Given the public half, the crate verifies the new signature before returning it.
    let public = PublicKey::from_secret_key(key).map_err(failed)?;
    minisign::sign(
        Some(&public),
        key,
        file,
        Some(trusted_comment),
        Some(untrusted),
    )
    .map(|sig| sig.into_string())
    .map_err(|e| {
        ErrorKind::Key {
            key: format!("for `{}`", archive.display()),
            message: format!("signing failed: {e}"),
        }
        .into()
    })
}

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishRequest<'a> {
    /// The built library.
    pub library: &'a Path,
    /// Its manifest, as the host's validator reported it.
    pub manifest: &'a Manifest,
    /// The index directory (created, with `config.json`, if new).
    pub index: &'a Path,
    /// The minisign secret key file.
    pub secret_key: &'a Path,
    /// The secret key's password, if it is encrypted.
    pub password: Option<&'a str>,
    /// The launcher versions the plugin works with; `*` when `None`.
    pub host: Option<VersionReq>,
    /// The target the library was built for; the host's when `None`.
    pub target: Option<&'a str>,
    /// Files to pack beside the library (a README, a LICENSE); see [`find_docs`].
    pub docs: Vec<PathBuf>,
    /// The time the freshness statement is issued at (normally the system clock).
    pub now: SystemTime,
    /// How long the freshness statement stays valid; `None` for never (local registries only).
    pub validity: Option<Duration>,
}

/// How to re-sign an index's freshness statement: the key, and the statement's time and
/// validity.
#[derive(Debug, Clone)]
pub struct Signing<'a> {
    /// The minisign secret key file.
    pub secret_key: &'a Path,
    /// The secret key's password, if it is encrypted.
    pub password: Option<&'a str>,
    /// The time the statement is issued at (normally the system clock).
    pub now: SystemTime,
    /// How long it stays valid; `None` for never (local registries only).
    pub validity: Option<Duration>,
}

/// Holds the lock of an index directory while it changes; other publishers wait.
struct IndexLock(#[allow(dead_code)] File);

fn lock_index(index: &Path) -> Result<IndexLock> {
    fs::create_dir_all(index).map_err(|e| Error::io("create", index, e))?;
    let path = index.join(".lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    file.lock().map_err(|e| Error::io("lock", &path, e))?;
    Ok(IndexLock(file))
}

/// Re-signs the freshness statement of the index directory `index` (after an expiry, or to
/// give a registry its first statement). Returns the new statement.
pub fn refresh_signature(index: &Path, signing: &Signing<'_>) -> Result<Statement> {
    if !index.join(CONFIG_FILE).is_file() {
        return Err(ErrorKind::Publish {
            index: index.to_path_buf(),
            message: format!("it has no {CONFIG_FILE}, so it is not a registry"),
        }
        .into());
    }
    let key = load_secret_key(signing.secret_key, signing.password)?;
    let _lock = lock_index(index)?;
    freshness::write(index, &key, signing.now, signing.validity)
}

/// What was published.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The index line as it now stands.
    pub line: IndexLine,
    /// Where the archive was put.
    pub archive: PathBuf,
    /// The plugin's index file.
    pub index_file: PathBuf,
}

/// Returns the README and licence files in `dir` (names starting with `README`, `LICENSE`,
/// `LICENCE` or `COPYING`, any case), sorted.
pub fn find_docs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("read", dir, e))?;
    let mut docs = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_uppercase();
        let wanted = ["README", "LICENSE", "LICENCE", "COPYING"]
            .iter()
            .any(|p| name.starts_with(p));
        if wanted && entry.path().is_file() {
            docs.push(entry.path());
        }
    }
    docs.sort();
    Ok(docs)
}

/// Packs, signs and publishes a library into an index directory.
pub fn publish(request: &PublishRequest<'_>) -> Result<Published> {
    let index = request.index;
    let refuse = |message: String| {
        ErrorKind::Publish {
            index: index.to_path_buf(),
            message,
        }
        .into()
    };
    let manifest = request.manifest;
    manifest
        .validate()
        .map_err(|e| refuse(format!("the manifest is unusable: {e}")))?;
    let version = Version::parse(&manifest.version).map_err(|e| {
        refuse(format!(
            "version `{}` of `{}` is not semver: {e}",
            manifest.version, manifest.name
        ))
    })?;
    let name = manifest.name.as_str();
    let host_target = crate::host_target();
    let target = request.target.unwrap_or(&host_target);
    if target.is_empty() || target.contains(['/', '\\', '{', '}']) || target.contains("..") {
        return Err(refuse(format!("`{target}` is not a target triple")));
    }
    let key = load_secret_key(request.secret_key, request.password)?;

    let _lock = lock_index(index)?;
    let config = read_or_create_config(index)?;
    let relative =
        index_path(name).ok_or_else(|| refuse(format!("`{name}` is not a plugin name")))?;
    let index_file = index.join(&relative);
    let existing = match fs::read_to_string(&index_file) {
        Ok(text) => IndexFile::parse(&text, Some(name)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => IndexFile::default(),
        Err(e) => return Err(Error::io("read", &index_file, e)),
    };
    let previous = existing.lines.iter().find(|l| l.vers == version).cloned();
    if let Some(previous) = &previous {
        if previous.targets.contains_key(target) {
            return Err(ErrorKind::AlreadyPublished {
                name: name.to_string(),
                version,
                target: target.to_string(),
            }
            .into());
        }
        if previous.abi != manifest.abi {
            return Err(refuse(format!(
                "`{name}` {version} is published for ABI {}, this build is ABI {}",
                previous.abi, manifest.abi
            )));
        }
    }

    let location = config
        .archive_location(name, &version, target)
        .map_err(|e| refuse(format!("{CONFIG_FILE}: {e}")))?;
    let destination = local_destination(index, &location).ok_or_else(|| {
        refuse(format!(
            "{CONFIG_FILE}'s `dl` template points to `{location}`; publishing can only place \
             archives inside the index directory (a relative template) or at a file:// URL"
        ))
    })?;

    // Pack beside the destination, so the final rename cannot cross file systems.
    let archive_dir = atomic::parent(&destination).to_path_buf();
    fs::create_dir_all(&archive_dir).map_err(|e| Error::io("create", &archive_dir, e))?;
    let packed = atomic::shared_file_builder()
        .prefix(".publish-")
        .suffix(".tar.gz")
        .tempfile_in(&archive_dir)
        .map_err(|e| Error::io("create a temporary file in", &archive_dir, e))?;
    pack(
        request.library,
        manifest,
        target,
        &request.docs,
        packed.as_file(),
    )?;
    let sha256 = sha256_file(packed.path())?;
    let size = fs::metadata(packed.path())
        .map_err(|e| Error::io("read", packed.path(), e))?
        .len();
    let sig = sign_with(
        packed.path(),
        &key,
        &trusted_comment(name, &version, target),
    )?;
    packed
        .persist(&destination)
        .map_err(|e| Error::io("write", &destination, e.error))?;
    atomic::sync_dir(&archive_dir)?;

    let artifact = Artifact { sha256, size, sig };
    let line = match previous {
        Some(mut line) => {
            line.targets.insert(target.to_string(), artifact.clone());
            let add_target = |value: &mut Value| {
                if let Some(targets) = value.get_mut("targets").and_then(Value::as_object_mut) {
                    targets.insert(
                        target.to_string(),
                        serde_json::to_value(&artifact).expect("an artifact is JSON"),
                    );
                }
            };
            edit_line(&index_file, name, &version, add_target)?;
            edit_line(&index.join(CATALOG_FILE), name, &version, add_target)?;
            line
        }
        None => {
            let line = new_line(manifest, version, request.host.clone(), target, artifact);
            let text = serde_json::to_string(&line).expect("an index line is JSON");
            append_line(&index_file, &text)?;
            append_line(&index.join(CATALOG_FILE), &text)?;
            line
        }
    };
    freshness::write(index, &key, request.now, request.validity)?;
    Ok(Published {
        line,
        archive: destination,
        index_file,
    })
}

fn new_line(
    manifest: &Manifest,
    vers: Version,
    host: Option<VersionReq>,
    target: &str,
    artifact: Artifact,
) -> IndexLine {
    let mut categories: Vec<String> = manifest
        .tools
        .iter()
        .flat_map(|t| t.categories())
        .map(|k| k.as_str().to_string())
        .collect();
    categories.sort();
    categories.dedup();
    let mut tasks: Vec<String> = manifest
        .tools
        .iter()
        .flat_map(|t| t.tasks.iter().cloned())
        .collect();
    tasks.sort();
    tasks.dedup();
    IndexLine {
        v: INDEX_SCHEMA,
        name: manifest.name.clone(),
        vers,
        abi: manifest.abi,
        host: host.unwrap_or(VersionReq::STAR),
        desc: manifest.description.clone(),
        categories,
        tasks,
        targets: [(target.to_string(), artifact)].into_iter().collect(),
        yanked: false,
    }
}

/// Writes `<library>`, `plugin.toml` and `docs` as a `.tar.gz` to `out`.
pub fn pack(
    library: &Path,
    manifest: &Manifest,
    target: &str,
    docs: &[PathBuf],
    out: &File,
) -> Result<()> {
    let file_name = library
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| crate::plugin_toml::is_file_name(n))
        .ok_or_else(|| ErrorKind::Validation {
            library: library.to_path_buf(),
            message: "its file name is not a plain UTF-8 name".to_string(),
        })?
        .to_string();
    let library_sha256 = sha256_file(library)?;
    let toml = PluginToml {
        schema: PLUGIN_TOML_SCHEMA,
        manifest: manifest.clone(),
        library: file_name.clone(),
        library_sha256,
        target: target.to_string(),
    };
    let toml_text = toml::to_string(&toml).map_err(|e| ErrorKind::InvalidPluginToml {
        path: PathBuf::from(PLUGIN_TOML),
        message: e.to_string(),
    })?;

    let write_err = |e: io::Error| Error::io("write the archive of", library, e);
    let mut tar = tar::Builder::new(GzEncoder::new(out, Compression::default()));
    append(
        &mut tar,
        PLUGIN_TOML,
        0o644,
        toml_text.len() as u64,
        toml_text.as_bytes(),
    )
    .map_err(write_err)?;
    let mut names = vec![PLUGIN_TOML.to_string(), file_name.clone()];
    append_file(&mut tar, &file_name, library, 0o755)?;
    for doc in docs {
        let name = doc
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| crate::plugin_toml::is_file_name(n))
            .ok_or_else(|| {
                let plain = "its file name is not a plain UTF-8 name";
                Error::io(
                    "pack",
                    doc,
                    io::Error::new(io::ErrorKind::InvalidInput, plain),
                )
            })?
            .to_string();
        if names.contains(&name) {
            continue;
        }
        append_file(&mut tar, &name, doc, 0o644)?;
        names.push(name);
    }
    let gz = tar.into_inner().map_err(write_err)?;
    let out = gz.finish().map_err(write_err)?;
    out.sync_all().map_err(write_err)
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    path: &Path,
    mode: u32,
) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io("read", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io("read", path, e))?
        .len();
    append(tar, name, mode, size, file).map_err(|e| Error::io("pack", path, e))
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    mode: u32,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(mode);
    // A fixed time makes packing reproducible: the same build gives the same sha256.
    header.set_mtime(0);
    tar.append_data(&mut header, name, data.take(size))
}

/// Returns where an archive location (from the `dl` template) is on disk, if it is inside
/// `index` (relative, no `..`) or a `file://` URL.
fn local_destination(index: &Path, location: &str) -> Option<PathBuf> {
    let lower = location.to_ascii_lowercase();
    if lower.starts_with("file://") {
        return reqwest::Url::parse(location).ok()?.to_file_path().ok();
    }
    if location.contains("://") {
        return None;
    }
    let relative = Path::new(location);
    relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then(|| index.join(relative))
}

fn read_or_create_config(index: &Path) -> Result<IndexConfig> {
    let path = index.join(CONFIG_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            ErrorKind::InvalidIndex {
                location: path.display().to_string(),
                message: e.to_string(),
            }
            .into()
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let config = IndexConfig {
                dl: DEFAULT_DL_TEMPLATE.to_string(),
            };
            let text = serde_json::to_string_pretty(&config).expect("a config is JSON") + "\n";
            atomic::write_file(&path, text.as_bytes())?;
            Ok(config)
        }
        Err(e) => Err(Error::io("read", &path, e)),
    }
}

/// Appends one line to a file, creating it (and its directory) if needed.
fn append_line(path: &Path, line: &str) -> Result<()> {
    let dir = atomic::parent(path);
    fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("read", path, e))?
        .len();
    let mut text = String::new();
    if len > 0 {
        // A file whose last line lacks its newline would glue the new line onto it.
        let mut last = [0u8; 1];
        let mut reader = File::open(path).map_err(|e| Error::io("read", path, e))?;
        io::Seek::seek(&mut reader, io::SeekFrom::End(-1))
            .and_then(|_| reader.read_exact(&mut last))
            .map_err(|e| Error::io("read", path, e))?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(line);
    text.push('\n');
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("write", path, e))?;
    atomic::sync_dir(dir)
}

/// Rewrites the lines of `name` `version` in the file at `path` with `edit`, leaving every
/// other line byte for byte. Returns whether such a line was found; a missing file has none.
fn edit_line(
    path: &Path,
    name: &str,
    version: &Version,
    mut edit: impl FnMut(&mut Value),
) -> Result<bool> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let mut found = false;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut value: Option<Value> = serde_json::from_str(line).ok();
        let matches = value.as_ref().is_some_and(|v| {
            v.get("name").and_then(Value::as_str) == Some(name)
                && v.get("vers")
                    .and_then(Value::as_str)
                    .and_then(|s| Version::parse(s).ok())
                    .as_ref()
                    == Some(version)
        });
        match value.as_mut().filter(|_| matches) {
            Some(value) => {
                edit(value);
                out.push_str(&serde_json::to_string(value).expect("JSON stays JSON"));
                found = true;
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    if found {
        atomic::write_file(path, out.as_bytes())?;
    }
    Ok(found)
}

/// Sets the `yanked` flag of `name` `version` in the index directory (and its catalog), and
/// re-signs the freshness statement with `signing`. Without `signing`, only an index that has
/// no statement can be changed (clients would refuse the others as altered).
pub fn yank(
    index: &Path,
    name: &str,
    version: &Version,
    yanked: bool,
    signing: Option<&Signing<'_>>,
) -> Result<()> {
    let relative = index_path(name).ok_or_else(|| ErrorKind::InvalidSpec {
        spec: name.to_string(),
        message: "not a plugin name".to_string(),
    })?;
    let key = signing
        .map(|s| load_secret_key(s.secret_key, s.password))
        .transpose()?;
    let _lock = lock_index(index)?;
    if key.is_none() && index.join(STATEMENT_FILE).exists() {
        return Err(ErrorKind::Publish {
            index: index.to_path_buf(),
            message: format!(
                "it has a signed freshness statement ({STATEMENT_FILE}) that must be re-signed; \
                 give the publisher's key (--key)"
            ),
        }
        .into());
    }
    let set = |value: &mut Value| {
        if let Some(object) = value.as_object_mut() {
            object.insert("yanked".to_string(), Value::Bool(yanked));
        }
    };
    if !edit_line(&index.join(relative), name, version, set)? {
        return Err(ErrorKind::Publish {
            index: index.to_path_buf(),
            message: format!("`{name}` {version} is not in this index"),
        }
        .into());
    }
    edit_line(&index.join(CATALOG_FILE), name, version, set)?;
    if let (Some(key), Some(signing)) = (key, signing) {
        freshness::write(index, &key, signing.now, signing.validity)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use launcher_sdk::ToolSpec;

    fn manifest(version: &str) -> Manifest {
        Manifest::new("echo", version)
            .description("says it back")
            .tool(ToolSpec::new("echo", &["chat"]))
            .tool(ToolSpec::new("echo-speak", &["tts", "chat"]))
    }

    struct Fixture {
        dir: tempfile::TempDir,
        keys: KeyPair,
        key: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let keys = KeyPair::generate(None).unwrap();
            keys.write(&dir.path().join("key"), &dir.path().join("key.pub"))
                .unwrap();
            fs::write(dir.path().join("libecho.so"), b"\x7fELF pretend library").unwrap();
            fs::write(dir.path().join("README.md"), b"# echo").unwrap();
            let key = dir.path().join("key");
            Fixture { dir, keys, key }
        }

        fn index(&self) -> PathBuf {
            self.dir.path().join("index")
        }

        fn signing(&self) -> Signing<'_> {
            Signing {
                secret_key: &self.key,
                password: None,
                now: SystemTime::now(),
                validity: None,
            }
        }

        fn publish(&self, manifest: &Manifest, target: &str) -> Result<Published> {
            let library = self.dir.path().join("libecho.so");
            let secret = self.dir.path().join("key");
            let index = self.index();
            publish(&PublishRequest {
                library: &library,
                manifest,
                index: &index,
                secret_key: &secret,
                password: None,
                host: None,
                target: Some(target),
                docs: find_docs(self.dir.path()).unwrap(),
                now: SystemTime::now(),
                validity: Some(freshness::DEFAULT_VALIDITY),
            })
        }
    }

    #[test]
    fn publishing_into_an_empty_directory_makes_a_registry() {
        let fx = Fixture::new();
        let published = fx
            .publish(&manifest("0.1.0"), "x86_64-unknown-linux-gnu")
            .unwrap();
        let index = fx.index();
        let config: IndexConfig =
            serde_json::from_str(&fs::read_to_string(index.join(CONFIG_FILE)).unwrap()).unwrap();
        assert_eq!(config.dl, DEFAULT_DL_TEMPLATE);
        assert_eq!(
            published.archive,
            index.join("archives/echo/echo-0.1.0-x86_64-unknown-linux-gnu.tar.gz")
        );
        assert_eq!(published.index_file, index.join("ec/ho/echo"));
        let line = &published.line;
        assert_eq!(line.categories, ["audio", "text"]);
        assert_eq!(line.tasks, ["chat", "tts"]);
        assert_eq!(line.host, VersionReq::STAR);
        let artifact = &line.targets["x86_64-unknown-linux-gnu"];
        assert_eq!(artifact.sha256, sha256_file(&published.archive).unwrap());
        assert_eq!(
            artifact.size,
            fs::metadata(&published.archive).unwrap().len()
        );
        let trusted = crate::verify::TrustedKeys::parse([&fx.keys.public]).unwrap();
        trusted
            .verify(
                &published.archive,
                &artifact.sig,
                "echo",
                &line.vers,
                "x86_64-unknown-linux-gnu",
            )
            .unwrap();

        let file = IndexFile::parse(
            &fs::read_to_string(&published.index_file).unwrap(),
            Some("echo"),
        );
        assert_eq!(file.lines, std::slice::from_ref(line));
        let catalog =
            IndexFile::parse(&fs::read_to_string(index.join(CATALOG_FILE)).unwrap(), None);
        assert_eq!(catalog.lines, std::slice::from_ref(line));

        // The archive holds plugin.toml, the library and the readme, and extracts safely.
        let out = fx.dir.path().join("out");
        fs::create_dir(&out).unwrap();
        crate::extract::extract(
            &published.archive,
            &out,
            &crate::extract::Limits::for_archive(0),
        )
        .unwrap();
        let toml = PluginToml::read(&out.join(PLUGIN_TOML)).unwrap();
        assert_eq!(toml.manifest, manifest("0.1.0"));
        assert_eq!(toml.library, "libecho.so");
        assert_eq!(
            toml.library_sha256,
            sha256_file(&out.join("libecho.so")).unwrap()
        );
        assert_eq!(fs::read(out.join("README.md")).unwrap(), b"# echo");
    }

    #[test]
    fn lines_are_appended_and_never_rewritten() {
        let fx = Fixture::new();
        fx.publish(&manifest("0.1.0"), "t1").unwrap();
        let index_file = fx.index().join("ec/ho/echo");
        let first = fs::read_to_string(&index_file).unwrap();
        fx.publish(&manifest("0.2.0"), "t1").unwrap();
        let second = fs::read_to_string(&index_file).unwrap();
        assert!(second.starts_with(&first), "{second}");
        assert_eq!(second.lines().count(), 2);

        let err = fx.publish(&manifest("0.2.0"), "t1").unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::AlreadyPublished { .. }),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&index_file).unwrap(), second);

        // Another target of a published version joins its line; the other line is untouched.
        let published = fx.publish(&manifest("0.2.0"), "t2").unwrap();
        assert_eq!(published.line.targets.len(), 2);
        let third = fs::read_to_string(&index_file).unwrap();
        assert!(third.starts_with(&first));
        let file = IndexFile::parse(&third, Some("echo"));
        assert_eq!(file.lines.len(), 2);
        assert_eq!(file.lines[1].targets.len(), 2);
        let catalog = IndexFile::parse(
            &fs::read_to_string(fx.index().join(CATALOG_FILE)).unwrap(),
            None,
        );
        assert_eq!(catalog.lines, file.lines);
    }

    #[test]
    fn yank_flips_one_flag_and_unyank_flips_it_back() {
        let fx = Fixture::new();
        fx.publish(&manifest("0.1.0"), "t").unwrap();
        fx.publish(&manifest("0.2.0"), "t").unwrap();
        let index_file = fx.index().join("ec/ho/echo");
        let before = fs::read_to_string(&index_file).unwrap();
        let statement = fs::read(fx.index().join(STATEMENT_FILE)).unwrap();
        // The signed statement must be re-signed: no key, no change.
        let err = yank(&fx.index(), "echo", &Version::new(0, 1, 0), true, None).unwrap_err();
        assert!(err.to_string().contains("--key"), "{err}");
        assert_eq!(fs::read_to_string(&index_file).unwrap(), before);
        let signing = fx.signing();
        yank(
            &fx.index(),
            "echo",
            &Version::new(0, 1, 0),
            true,
            Some(&signing),
        )
        .unwrap();
        assert_ne!(
            fs::read(fx.index().join(STATEMENT_FILE)).unwrap(),
            statement
        );
        let file = IndexFile::parse(&fs::read_to_string(&index_file).unwrap(), Some("echo"));
        assert!(file.lines[0].yanked && !file.lines[1].yanked);
        assert_eq!(
            fs::read_to_string(&index_file).unwrap().lines().nth(1),
            before.lines().nth(1)
        );
        let catalog = IndexFile::parse(
            &fs::read_to_string(fx.index().join(CATALOG_FILE)).unwrap(),
            None,
        );
        assert!(catalog.lines[0].yanked);

        yank(
            &fx.index(),
            "echo",
            &Version::new(0, 1, 0),
            false,
            Some(&signing),
        )
        .unwrap();
        let file = IndexFile::parse(&fs::read_to_string(&index_file).unwrap(), Some("echo"));
        assert!(!file.lines[0].yanked);
        let err = yank(
            &fx.index(),
            "echo",
            &Version::new(9, 9, 9),
            true,
            Some(&signing),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("`echo` 9.9.9 is not in this index"),
            "{err}"
        );
    }

    #[test]
    fn concurrent_publishes_into_one_index_all_land() {
        let fx = Fixture::new();
        fx.publish(&manifest("0.0.1"), "t").unwrap();
        std::thread::scope(|scope| {
            for i in 0..6 {
                let fx = &fx;
                scope.spawn(move || {
                    fx.publish(&manifest(&format!("1.{i}.0")), "t").unwrap();
                });
            }
        });
        let file = IndexFile::parse(
            &fs::read_to_string(fx.index().join("ec/ho/echo")).unwrap(),
            Some("echo"),
        );
        assert_eq!(file.lines.len(), 7, "{:?}", file.skipped);
        assert!(file.skipped.is_empty(), "{:?}", file.skipped);
        let catalog = IndexFile::parse(
            &fs::read_to_string(fx.index().join(CATALOG_FILE)).unwrap(),
            None,
        );
        assert_eq!(catalog.lines.len(), 7);
        // The last statement covers the final state of every file.
        let statement: Statement =
            serde_json::from_slice(&fs::read(fx.index().join(STATEMENT_FILE)).unwrap()).unwrap();
        assert_eq!(statement.files, freshness::survey(&fx.index()).unwrap());
    }

    #[test]
    fn refresh_signature_gives_an_index_a_newer_statement() {
        let fx = Fixture::new();
        fx.publish(&manifest("0.1.0"), "t").unwrap();
        fs::remove_file(fx.index().join(STATEMENT_FILE)).unwrap();
        let first = refresh_signature(&fx.index(), &fx.signing()).unwrap();
        let second = refresh_signature(&fx.index(), &fx.signing()).unwrap();
        assert!(second.issued > first.issued);
        assert_eq!(second.expires, None);
        let empty = tempfile::tempdir().unwrap();
        assert!(refresh_signature(empty.path(), &fx.signing()).is_err());
    }

    #[test]
    fn refuses_a_dl_template_outside_the_index() {
        let fx = Fixture::new();
        fs::create_dir_all(fx.index()).unwrap();
        fs::write(
            fx.index().join(CONFIG_FILE),
            r#"{"dl":"https://cdn.example/{name}/{version}/{target}.tar.gz"}"#,
        )
        .unwrap();
        let err = fx.publish(&manifest("0.1.0"), "t").unwrap_err().to_string();
        assert!(err.contains("inside the index directory"), "{err}");
        fs::write(
            fx.index().join(CONFIG_FILE),
            r#"{"dl":"../{name}/{version}/{target}.tar.gz"}"#,
        )
        .unwrap();
        assert!(fx.publish(&manifest("0.1.0"), "t").is_err());
        assert!(
            !fx.index().join("ec").exists(),
            "no line without an archive"
        );
    }

    #[test]
    fn password_protected_keys_need_their_password() {
        let keys = KeyPair::generate(Some("hunter2")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a");
        fs::write(&file, b"bytes").unwrap();
        let comment = trusted_comment("echo", &Version::new(1, 0, 0), "t");
        let err = sign(&file, &keys.secret, None, &comment).unwrap_err();
        assert!(err.to_string().contains("password"), "{err}");
        assert!(sign(&file, &keys.secret, Some("wrong"), &comment).is_err());
        let sig = sign(&file, &keys.secret, Some("hunter2"), &comment).unwrap();
        crate::verify::TrustedKeys::parse([keys.public_base64()])
            .unwrap()
            .verify(&file, &sig, "echo", &Version::new(1, 0, 0), "t")
            .unwrap();
        assert!(!format!("{keys:?}").contains(&keys.secret));
    }

    // Made with minisign 0.11 (Debian's package): `minisign -G -W`, then
    // `minisign -S -m archive -t "launcher-plugin name=echo version=1.0.0 target=t"` over the
    // 13 bytes `archive bytes`.
    const CLI_PUBLIC: &str = "untrusted comment: minisign public key 68A3067B72FCD395\n\
        RWSV0/xyewajaPiYP/zrvuPwmybbxPgijx4+i6RxdJGLkiwLfmVmwOO9\n";
    const CLI_SECRET: &str = "untrusted comment: minisign encrypted secret key\n\
        RWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAldP8cnsGo2hAxuky7rA5\
        quXdFRqNpEgLFCW9rN4o4xey9yg4HdXKd/iYP/zrvuPwmybbxPgijx4+i6RxdJGLkiwLfmVmwOO9AAAAAAAAAAAAAAAA\
        AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    const CLI_SIGNATURE: &str = "untrusted comment: signature from minisign secret key\n\
        RUSV0/xyewajaHlZHLzYIh8DeYJfwc1nsC7OtBrZGwNEI+OBMM18tyqsynsrePEbyAjRmzNTw6jVGWna4SnRmRxIm4P\
        H80oAOwk=\n\
        trusted comment: launcher-plugin name=echo version=1.0.0 target=t\n\
        GJI4bioGUfydO/W+dbcGhB+Ym6n8kB3W+GwwOoVwzn0AVR6zDSr+jrdUSiVSowZTATb6eynoAq4rx64X+QdECg==\n";

    #[test]
    fn interoperates_with_the_minisign_tool() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("archive");
        fs::write(&archive, b"archive bytes").unwrap();
        let trusted = crate::verify::TrustedKeys::parse([CLI_PUBLIC]).unwrap();
        assert_eq!(trusted.key_ids(), ["68A3067B72FCD395"]);
        let version = Version::new(1, 0, 0);
        trusted
            .verify(&archive, CLI_SIGNATURE, "echo", &version, "t")
            .unwrap();

        // Its unencrypted secret keys, which carry no checksum, sign here too.
        let comment = trusted_comment("echo", &version, "t");
        let sig = sign(&archive, CLI_SECRET, None, &comment).unwrap();
        trusted
            .verify(&archive, &sig, "echo", &version, "t")
            .unwrap();

        // A damaged one is refused rather than producing bad signatures.
        let damaged = CLI_SECRET.replacen("7rA5", "7rA6", 1);
        assert!(sign(&archive, &damaged, None, &comment).is_err());
    }

    #[test]
    fn base64_decodes_what_it_should() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8hIQ==").unwrap(), b"hello!!");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a*b").is_none());
    }

    #[test]
    fn packing_is_reproducible() {
        let fx = Fixture::new();
        let library = fx.dir.path().join("libecho.so");
        let sums: Vec<String> = (0..2)
            .map(|i| {
                let path = fx.dir.path().join(format!("p{i}.tar.gz"));
                let file = File::create(&path).unwrap();
                pack(&library, &manifest("0.1.0"), "t", &[], &file).unwrap();
                sha256_file(&path).unwrap()
            })
            .collect();
        assert_eq!(sums[0], sums[1]);
    }
}
