//! Progress reporting: the library never prints, it tells a [`Reporter`] and the host draws.

use std::path::Path;

use semver::Version;

/// A step of an install, after the download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// Checking the archive's sha256 and signature.
    Verifying,
    /// Unpacking the archive into a staging directory.
    Extracting,
    /// Loading the library in a child process.
    Validating,
    /// Moving the staged directory into the store.
    Installing,
    /// Rewriting the lockfile; once it is renamed into place the install has happened.
    Recording,
}

/// Receives progress from long operations. Every method has an empty default.
pub trait Reporter {
    /// Another process holds the store lock; this one waits for it.
    fn waiting_for_lock(&self, lock_file: &Path) {
        let _ = lock_file;
    }

    /// A download of `total` bytes started.
    fn download_started(&self, name: &str, version: &Version, total: u64) {
        let _ = (name, version, total);
    }

    /// `received` bytes of the current download have arrived so far.
    fn download_progress(&self, name: &str, received: u64) {
        let _ = (name, received);
    }

    /// The current download is complete.
    fn download_finished(&self, name: &str) {
        let _ = name;
    }

    /// An install of `name` `version` entered `stage`.
    fn stage(&self, name: &str, version: &Version, stage: Stage) {
        let _ = (name, version, stage);
    }

    /// Something worth telling the user that does not stop the operation.
    fn warning(&self, message: &str) {
        let _ = message;
    }

    /// A choice made for the user that they should know about (which of several registries
    /// offering a plugin an install uses, and why).
    fn note(&self, message: &str) {
        let _ = message;
    }
}

/// A [`Reporter`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReporter;

impl Reporter for NoReporter {}
