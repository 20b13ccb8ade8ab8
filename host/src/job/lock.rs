//! Which launcher is running a recorded job: an exclusive lock on `jobs/<id>.lock` in the data
//! directory, held for as long as a launcher runs the job.
//!
//! The job store says `running` from the first checkpoint until the job ends, but a launcher
//! killed with SIGKILL never gets to change that. The lock is released by the operating system
//! when its holder dies, however it dies, so "running and locked" means a live launcher has it,
//! and "running and free" means it was interrupted and can be resumed.
//!
//! A lock file is removed once its job ended for good, by its holder, while holding it. A
//! launcher that opened the file before it was removed then locks a file no longer in the
//! directory; taking a lock therefore checks that the file it locked is still the one at the
//! path, and tries again if not.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// The lock of one job, held by this process until dropped.
#[derive(Debug)]
pub(crate) struct JobLock {
    file: File,
    path: PathBuf,
}

/// Who runs a job now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    /// No live launcher.
    Nobody,
    /// Another launcher, with its process id when it wrote one.
    Other(Option<u32>),
}

fn lock_path(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("jobs").join(format!("{id}.lock"))
}

/// Returns whether `file` is still the file at `path` (not removed or replaced since opened).
fn still_at(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        // Windows does not remove a file another process has open, so it cannot be replaced.
        let _ = file;
        path.exists()
    }
}

fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("failed to open the job lock {}", path.display()))
}

impl JobLock {
    /// Takes the lock of job `id`, or returns who holds it.
    pub(crate) fn try_take(data_dir: &Path, id: &str) -> Result<Result<JobLock, Holder>> {
        let path = lock_path(data_dir, id);
        loop {
            let file = open(&path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(Err(Holder::Other(read_pid(&path)))),
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("failed to lock {}", path.display()));
                }
            }
            if still_at(&file, &path) {
                return Ok(Ok(JobLock::mark(file, path)));
            }
        }
    }

    /// Takes the lock of job `id`, waiting for the launcher that holds it to let go.
    pub(crate) fn wait_take(data_dir: &Path, id: &str) -> Result<JobLock> {
        let path = lock_path(data_dir, id);
        loop {
            let file = open(&path)?;
            file.lock()
                .with_context(|| format!("failed to lock {}", path.display()))?;
            if still_at(&file, &path) {
                return Ok(JobLock::mark(file, path));
            }
        }
    }

    /// Writes this process's id into the locked file, for messages about who holds it.
    fn mark(mut file: File, path: PathBuf) -> JobLock {
        // Only a message depends on it; a file that cannot be written still locks.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        JobLock { file, path }
    }

    /// Releases the lock of a job that ended for good, removing its file.
    pub(crate) fn finish(self) {
        // Removed while still locked, so no launcher can take this file and find it gone.
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
}

/// Returns who holds the lock of job `id`, without taking it for longer than a check.
pub(crate) fn holder(data_dir: &Path, id: &str) -> Holder {
    let path = lock_path(data_dir, id);
    // Opened read-only and never created: listing jobs writes nothing.
    let Ok(file) = File::open(&path) else {
        return Holder::Nobody;
    };
    match file.try_lock_shared() {
        Ok(()) => Holder::Nobody,
        Err(TryLockError::WouldBlock) => Holder::Other(read_pid(&path)),
        // A file that cannot be locked at all is no evidence of a live launcher.
        Err(TryLockError::Error(_)) => Holder::Nobody,
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_seen_and_a_released_one_is_free() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(holder(dir.path(), "j1"), Holder::Nobody);
        let lock = JobLock::try_take(dir.path(), "j1").unwrap().unwrap();
        // flock locks belong to an open file, so a second open in this process conflicts as
        // another process's would.
        assert_eq!(
            holder(dir.path(), "j1"),
            Holder::Other(Some(std::process::id()))
        );
        assert_eq!(
            JobLock::try_take(dir.path(), "j1").unwrap().unwrap_err(),
            Holder::Other(Some(std::process::id()))
        );
        drop(lock);
        assert_eq!(holder(dir.path(), "j1"), Holder::Nobody);
        let lock = JobLock::try_take(dir.path(), "j1").unwrap().unwrap();
        lock.finish();
        assert!(!lock_path(dir.path(), "j1").exists());
        assert_eq!(holder(dir.path(), "j1"), Holder::Nobody);
    }

    #[test]
    fn a_waiter_takes_the_lock_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let lock = JobLock::try_take(dir.path(), "j2").unwrap().unwrap();
        let path = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || JobLock::wait_take(&path, "j2").unwrap());
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished());
        // The holder finishes the job: the file goes, and the waiter locks a new one.
        lock.finish();
        let taken = waiter.join().unwrap();
        assert!(lock_path(dir.path(), "j2").exists());
        assert!(still_at(&taken.file, &taken.path));
    }
}
