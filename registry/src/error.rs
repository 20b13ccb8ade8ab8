//! The errors of this crate.
//!
//! [`Error`](struct@Error) is small (one box) so results stay cheap to move; its [`ErrorKind`] is what the
//! host matches to pick an exit code. Messages are lowercase, name the plugin, path or URL
//! involved, and leave the cause to [`std::error::Error::source`].

use std::io;
use std::path::{Path, PathBuf};

use semver::Version;
use thiserror::Error;

pub use crate::resolve::ResolveError;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the store, a registry, or an install.
#[derive(Debug, Error)]
#[error(transparent)]
pub struct Error(Box<ErrorKind>);

impl Error {
    /// Returns what kind of failure this is.
    pub fn kind(&self) -> &ErrorKind {
        &self.0
    }

    /// Returns the kind, by value.
    pub fn into_kind(self) -> ErrorKind {
        *self.0
    }

    /// Returns an [`ErrorKind::Io`] for `action` on `path`.
    pub(crate) fn io(action: &'static str, path: impl AsRef<Path>, source: io::Error) -> Error {
        ErrorKind::Io {
            action,
            path: path.as_ref().to_path_buf(),
            source,
        }
        .into()
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error(Box::new(kind))
    }
}

impl From<ResolveError> for Error {
    fn from(e: ResolveError) -> Self {
        ErrorKind::Resolve(e).into()
    }
}

/// The kinds of [`Error`](struct@Error).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file system operation failed.
    #[error("failed to {action} `{}`", path.display())]
    Io {
        /// What was being done, e.g. `read`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// A request failed before a response arrived (connection refused, timeout, reset).
    #[error("failed to fetch `{url}`")]
    Network {
        /// The URL requested.
        url: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A server answered with a status that is neither success nor "no such file".
    #[error("`{url}` answered with HTTP status {status}")]
    HttpStatus {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },

    /// Offline, and the cached index has not got what was asked for.
    #[error("`{what}` is not in the cached index of registry `{registry}` (offline)")]
    NotCached {
        /// The registry.
        registry: String,
        /// The index file asked for.
        what: String,
    },

    /// A registry's configuration (name, location or trusted keys) is unusable.
    #[error("registry `{registry}` is misconfigured: {message}")]
    RegistryConfig {
        /// The registry.
        registry: String,
        /// What is wrong.
        message: String,
    },

    /// A registry that is not configured was named.
    #[error("no registry named `{name}` is configured")]
    UnknownRegistry {
        /// The name given.
        name: String,
    },

    /// An install was asked for, but no registry is configured.
    #[error("no registry is configured")]
    NoRegistries,

    /// A registry's `config.json` or index file does not parse.
    #[error("invalid index file `{location}`: {message}")]
    InvalidIndex {
        /// The file's path or URL.
        location: String,
        /// What is wrong.
        message: String,
    },

    /// Nothing in the registry fits the request.
    #[error(transparent)]
    Resolve(ResolveError),

    /// The download sent more bytes than the index declares.
    #[error("download of `{name}` {version} exceeded its declared size of {declared} bytes")]
    DownloadTooLarge {
        /// The plugin.
        name: String,
        /// Its version.
        version: Version,
        /// The size the index declares.
        declared: u64,
    },

    /// The download ended before the declared size was reached.
    #[error("download of `{name}` {version} ended early ({received} of {declared} bytes)")]
    DownloadTruncated {
        /// The plugin.
        name: String,
        /// Its version.
        version: Version,
        /// The size the index declares.
        declared: u64,
        /// The bytes received.
        received: u64,
    },

    /// The archive's sha256 differs from the index. The message leaves out the sha256 of what
    /// arrived: it could be the digest of any file a hostile index pointed at.
    #[error(
        "checksum mismatch for `{name}` {version}: the archive is not the one with sha256 {expected} the index declares"
    )]
    ChecksumMismatch {
        /// The plugin.
        name: String,
        /// Its version.
        version: Version,
        /// The sha256 the index declares.
        expected: String,
        /// The sha256 of the bytes received.
        actual: String,
    },

    /// The index declares an archive larger than this client accepts, or than the free space.
    #[error("`{name}` {version} declares an archive of {declared} bytes: {message}")]
    DownloadRefused {
        /// The plugin.
        name: String,
        /// Its version.
        version: Version,
        /// The size the index declares.
        declared: u64,
        /// Which limit it exceeds.
        message: String,
    },

    /// A download did not finish within its overall deadline.
    #[error(
        "download of `{name}` {version} did not finish within {seconds} s ({received} of {declared} bytes arrived)"
    )]
    DownloadDeadline {
        /// The plugin.
        name: String,
        /// Its version.
        version: Version,
        /// The deadline, in seconds.
        seconds: u64,
        /// The bytes received.
        received: u64,
        /// The size the index declares.
        declared: u64,
    },

    /// The `dl` template points somewhere this registry may not download from.
    #[error("registry `{registry}` points `{name}` at `{location}`, which is refused: {message}")]
    RefusedLocation {
        /// The registry.
        registry: String,
        /// The plugin.
        name: String,
        /// Where the template points.
        location: String,
        /// Why it is refused.
        message: String,
    },

    /// A registry's signed freshness statement is missing, unsigned, or does not match its
    /// index files.
    #[error("registry `{registry}` cannot be trusted to be current: {message}")]
    Freshness {
        /// The registry.
        registry: String,
        /// What is wrong.
        message: String,
    },

    /// A registry serves an index older than one seen before, or its statement expired.
    #[error("registry `{registry}` is stale: {message}")]
    Stale {
        /// The registry.
        registry: String,
        /// What is wrong.
        message: String,
        /// What the user (or the publisher) can do.
        hint: String,
    },

    /// `sync --lockfile` needs registries or keys that are not configured.
    #[error("the lockfile needs what is not configured here:\n  {}", missing.join("\n  "))]
    SyncNeeds {
        /// One line per missing registry or key, each saying how to add it.
        missing: Vec<String>,
    },

    /// The install would go below the installed version.
    #[error("`{name}` {installed} is installed; refusing to go back to {offered}{why}")]
    Downgrade {
        /// The plugin.
        name: String,
        /// The installed version.
        installed: Version,
        /// The version the request resolved to.
        offered: Version,
        /// Why the older version was chosen, starting with `; ` (or empty).
        why: String,
    },

    /// The archive's signature is missing, malformed, untrusted or wrong.
    #[error("signature check failed for `{name}` {version} ({target})")]
    Signature {
        /// The plugin.
        name: String,
        /// Its version.
        version: Version,
        /// The target of the archive.
        target: String,
        /// What is wrong with the signature.
        #[source]
        source: SignatureError,
    },

    /// The archive holds something that must not be extracted.
    #[error("refusing archive `{}`", archive.display())]
    UnsafeArchive {
        /// The archive file.
        archive: PathBuf,
        /// The offending entry or limit.
        #[source]
        source: ArchiveError,
    },

    /// The archive's `plugin.toml` or library disagrees with the index line.
    #[error("package `{name}` {version} disagrees with its index line: {message}")]
    PackageMismatch {
        /// The plugin.
        name: String,
        /// Its version.
        version: Version,
        /// Which field differs, with both values.
        message: String,
    },

    /// A `plugin.toml` does not parse or is incomplete.
    #[error("invalid plugin.toml `{}`: {message}", path.display())]
    InvalidPluginToml {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// Loading the library in a child process failed.
    #[error("library `{}` failed validation: {message}", library.display())]
    Validation {
        /// The library.
        library: PathBuf,
        /// The validator's message.
        message: String,
    },

    /// The library loaded, but its manifest is unusable or names another plugin.
    #[error("library `{}` has an unusable manifest: {message}", library.display())]
    InvalidManifest {
        /// The library.
        library: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// The lockfile cannot be used (an unknown version, or it cannot be written).
    #[error("cannot use lockfile `{}`: {message}", path.display())]
    Lockfile {
        /// The lockfile.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// The plugin named is not installed.
    #[error("`{name}` is not installed")]
    NotInstalled {
        /// The name given.
        name: String,
    },

    /// A plugin installed from a local path cannot be reinstalled or updated from a registry.
    #[error("`{name}` was installed from `{}`: {message}", path.display())]
    LocalSource {
        /// The plugin.
        name: String,
        /// The library it was installed from.
        path: PathBuf,
        /// Why the request cannot be met.
        message: String,
    },

    /// A plugin name, version or `name@requirement` does not parse.
    #[error("invalid plugin specification `{spec}`: {message}")]
    InvalidSpec {
        /// What was given.
        spec: String,
        /// What is wrong.
        message: String,
    },

    /// A minisign key (public or secret) does not parse or cannot be unlocked.
    #[error("unusable key {key}: {message}")]
    Key {
        /// The key file, or the start of the key text.
        key: String,
        /// What is wrong.
        message: String,
    },

    /// This name, version and target is already in the index.
    #[error("`{name}` {version} for {target} is already published")]
    AlreadyPublished {
        /// The plugin.
        name: String,
        /// Its version.
        version: Version,
        /// The target.
        target: String,
    },

    /// The index directory cannot take this publish or yank.
    #[error("cannot publish into `{}`: {message}", index.display())]
    Publish {
        /// The index directory.
        index: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Why a signature was not accepted.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The index line carries no signature for the target.
    #[error("the index has no signature for it")]
    Missing,
    /// The signature text is not a minisign signature.
    #[error("the signature is malformed: {0}")]
    Malformed(String),
    /// No key is configured for the registry.
    #[error("no keys are trusted for this registry")]
    NoTrustedKeys,
    /// Signed by a key the client does not trust.
    #[error("signed by key {key_id}, which is not trusted for this registry")]
    UntrustedKey {
        /// The minisign key id of the signer, in hex.
        key_id: String,
    },
    /// The signature does not match the archive (or its trusted comment was altered).
    #[error("the signature does not match the archive: {0}")]
    Invalid(String),
    /// The signature is good but was made for another plugin, version or target.
    #[error("the signature's trusted comment `{found}` does not name it (expected `{expected}`)")]
    CommentMismatch {
        /// The comment the signature must carry.
        expected: String,
        /// The comment it carries.
        found: String,
    },
}

/// Why an archive was refused. Each names the offending entry as written in the archive.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// An entry's path has a `..` component.
    #[error("entry `{entry}` escapes the install directory")]
    Escapes {
        /// The entry's path.
        entry: String,
    },
    /// An entry's path is absolute (or has a drive prefix).
    #[error("entry `{entry}` has an absolute path")]
    Absolute {
        /// The entry's path.
        entry: String,
    },
    /// An entry is a symbolic or hard link.
    #[error("entry `{entry}` is a link")]
    Link {
        /// The entry's path.
        entry: String,
    },
    /// An entry is neither a regular file nor a directory (a device, a FIFO, ...).
    #[error("entry `{entry}` is a {kind}; only regular files and directories are allowed")]
    Special {
        /// The entry's path.
        entry: String,
        /// What it is.
        kind: String,
    },
    /// An entry's path is empty or has a character that is unsafe on some platform.
    #[error("entry `{entry}` has an unsafe name")]
    BadName {
        /// The entry's path.
        entry: String,
    },
    /// Two entries have the same path.
    #[error("entry `{entry}` appears twice")]
    Duplicate {
        /// The entry's path.
        entry: String,
    },
    /// The archive has more entries than allowed.
    #[error("it has more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: usize,
    },
    /// The archive unpacks to more bytes than allowed.
    #[error("it unpacks to more than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The archive is not a readable gzip-compressed tar.
    #[error("it is not a valid .tar.gz")]
    Corrupt(#[source] io::Error),
}
