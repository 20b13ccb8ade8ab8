//! Where a job's outputs go: files written under a temporary name and renamed when complete,
//! or text streamed to stdout.
//!
//! A file output is never left half-written: until the plugin closes it (says it is complete)
//! it lives under a hidden temporary name beside its destination, named after the job's id,
//! and every temporary file is removed on failure, on cancellation, and on a second signal.
//! A closed output is moved into place at once, so a batch that fails halfway keeps the
//! outputs it completed. An existing file is never replaced unless the user passed `--force`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use launcher_sdk::{ContentKind, OutputHeader};
use serde::Serialize;

use crate::failure::{Class, Failure, fail};

/// Temporary files in flight, shared with the Ctrl-C handler so it can remove them.
pub(crate) type Pending = Arc<Mutex<Vec<PathBuf>>>;

/// How the user asked for outputs to be written.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct Plan {
    /// `-o`: a file path, or `-` for stdout.
    pub(crate) explicit: Option<PathBuf>,
    /// `--force`: replace existing files.
    pub(crate) force: bool,
    /// `--json`: stdout carries the result, so text is collected instead of streamed.
    pub(crate) json: bool,
    /// The stem of default file names, e.g. the task name.
    pub(crate) stem: String,
    /// The directory for default file names.
    pub(crate) dir: PathBuf,
    /// The job's id, which names temporary files.
    pub(crate) job_id: String,
    /// Keep a copy of text streamed to stdout (a chat's answer, for its conversation).
    #[serde(default)]
    pub(crate) capture: bool,
    /// The task takes `--format`, so a hint may suggest it.
    #[serde(default)]
    pub(crate) format_param: bool,
}

impl Plan {
    /// Returns the plan with its paths made absolute against the current directory, so that a
    /// job resumed from elsewhere writes where it was first asked to.
    pub(crate) fn anchored(&self) -> Plan {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        Plan {
            explicit: self.explicit.as_ref().map(|p| {
                if p.as_os_str() == "-" {
                    p.clone()
                } else {
                    absolute(p)
                }
            }),
            dir: absolute(&self.dir),
            ..self.clone()
        }
    }
}

/// How many first bytes of an output are kept to recognise its content.
const HEAD_LEN: usize = 512;

/// The most streamed text kept for a conversation; an answer longer than this is cut there.
const CAPTURE_LIMIT: usize = 8 * 1024 * 1024;

/// One finished output, as reported in the result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Written {
    pub(crate) name: String,
    pub(crate) kind: ContentKind,
    pub(crate) media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<PathBuf>,
    pub(crate) size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<String>,
    /// A JSON output (a listing, an embedding), collected under `--json`, as JSON itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) json: Option<launcher_sdk::serde_json::Value>,
    /// A copy of text streamed to stdout, when the plan asked for one.
    #[serde(skip)]
    pub(crate) captured: Option<String>,
}

impl Written {
    /// Returns the text of a text output, however it was delivered.
    pub(crate) fn text(&self) -> Option<&str> {
        self.text.as_deref().or(self.captured.as_deref())
    }
}

enum Target {
    Stdout,
    Collect(Vec<u8>),
    File {
        tmp: PathBuf,
        dest: PathBuf,
        file: BufWriter<File>,
    },
    /// A device (`/dev/null`) written in place.
    Device {
        dest: PathBuf,
        file: File,
    },
    /// A file output that was closed and moved into place.
    Placed(PathBuf),
}

struct Open {
    id: u32,
    header: OutputHeader,
    target: Target,
    size: u64,
    /// A copy of what went to stdout, when the plan captures text.
    captured: Option<Vec<u8>>,
    /// The first bytes, by which the content is recognised when it is complete.
    head: Vec<u8>,
}

/// The outputs of one job.
pub(crate) struct Outputs {
    plan: Plan,
    open: Vec<Open>,
    pending: Pending,
}

impl Outputs {
    pub(crate) fn new(plan: Plan, pending: Pending) -> Outputs {
        Outputs {
            plan,
            open: Vec::new(),
            pending,
        }
    }

    /// Checks before the job runs that the outputs can be written where they go: `-o` names
    /// no directory, replaces no file by accident, and its directory takes new files (a probe
    /// file is created there and removed). `files` says whether the job makes files even
    /// without `-o` (its outputs are not text), so the default directory is probed too.
    pub(crate) fn precheck(plan: &Plan, files: bool) -> anyhow::Result<()> {
        let Some(path) = &plan.explicit else {
            if files {
                probe(&plan.dir, &plan.dir, &plan.job_id)?;
            }
            return Ok(());
        };
        if path.as_os_str() == "-" {
            return Ok(());
        }
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.is_dir() {
                return Err(Failure::new(
                    Class::Unwritable,
                    format!(
                        "cannot write {}: it is a directory, and launcher never replaces a directory",
                        path.display()
                    ),
                )
                .hint(format!(
                    "name a file inside it, e.g. -o {}",
                    path.join(format!("{}.EXT", plan.stem)).display()
                ))
                .into());
            }
            if is_device(&meta) {
                // A device such as /dev/null is written in place, never replaced.
                return match std::fs::OpenOptions::new().write(true).open(path) {
                    Ok(_) => Ok(()),
                    Err(err) => Err(unwritable(path, &err)),
                };
            }
            if !plan.force {
                return Err(Failure::new(
                    Class::Exists,
                    format!("{} exists already", path.display()),
                )
                .hint("pass --force to replace it, or choose another name with -o")
                .into());
            }
        }
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(fail(
                Class::Unwritable,
                format!(
                    "cannot write {}: directory {} does not exist",
                    path.display(),
                    parent.display()
                ),
            ));
        }
        probe(parent, path, &plan.job_id)
    }

    /// Returns whether `-o -` sends the outputs to stdout, which cannot seek back.
    pub(crate) fn uses_stdout(plan: &Plan) -> bool {
        plan.explicit
            .as_deref()
            .is_some_and(|p| p.as_os_str() == "-")
    }

    /// Opens output `id`: a temporary file beside its destination, stdout, or a buffer.
    pub(crate) fn open(&mut self, id: u32, header: &OutputHeader) -> io::Result<()> {
        let target = self.target_for(header)?;
        let captured = (self.plan.capture && matches!(target, Target::Stdout)).then(Vec::new);
        self.open.push(Open {
            id,
            header: header.clone(),
            target,
            size: 0,
            captured,
            head: Vec::new(),
        });
        Ok(())
    }

    /// Appends bytes to output `id`.
    pub(crate) fn write(&mut self, id: u32, bytes: &[u8]) -> io::Result<()> {
        let Some(open) = self.open.iter_mut().find(|o| o.id == id) else {
            return Err(io::Error::other(format!("output {id} was never opened")));
        };
        open.size += bytes.len() as u64;
        if open.head.len() < HEAD_LEN {
            let room = HEAD_LEN - open.head.len();
            open.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        if let Some(copy) = &mut open.captured {
            let room = CAPTURE_LIMIT.saturating_sub(copy.len());
            copy.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        match &mut open.target {
            Target::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Target::Collect(buf) => {
                buf.extend_from_slice(bytes);
                Ok(())
            }
            Target::File { file, .. } => file.write_all(bytes),
            Target::Device { file, .. } => file.write_all(bytes),
            Target::Placed(path) => Err(io::Error::other(format!(
                "the plugin wrote to {} after closing it",
                path.display()
            ))),
        }
    }

    /// Completes output `id`: a file is flushed, synced and moved into place at once.
    pub(crate) fn close(&mut self, id: u32) -> anyhow::Result<()> {
        let Some(open) = self.open.iter_mut().find(|o| o.id == id) else {
            return Err(anyhow::anyhow!("output {id} was never opened"));
        };
        let target = std::mem::replace(&mut open.target, Target::Stdout);
        open.target = match target {
            Target::File { tmp, dest, file } => {
                let named = self.plan.explicit.is_some();
                let made = named.then(|| misnamed(&dest, &open.head)).flatten();
                let file = file.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                drop(file);
                self.pending
                    .lock()
                    .expect("pending list")
                    .retain(|p| p != &tmp);
                if let Some(made) = made {
                    // A generated output may have cost money or minutes: it is kept under a
                    // name that tells the truth, never one that lies, and the job still fails.
                    let truthful = dest.with_extension(made.extension);
                    let kept = (1..100)
                        .map(|n| match n {
                            1 => truthful.clone(),
                            n => numbered(&truthful, n),
                        })
                        .find(|path| !path.exists())
                        .filter(|path| place(&tmp, path, false).is_ok());
                    let _ = std::fs::remove_file(&tmp);
                    return Err(misnamed_failure(
                        &dest,
                        &made,
                        kept.as_deref(),
                        self.plan.format_param,
                    ));
                }
                if let Err(err) = place(&tmp, &dest, self.plan.force) {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(err);
                }
                Target::Placed(dest)
            }
            Target::Device { dest, .. } => Target::Placed(dest),
            other => other,
        };
        Ok(())
    }

    fn target_for(&mut self, header: &OutputHeader) -> io::Result<Target> {
        let first = self.open.is_empty();
        // A JSON result (a listing) goes to stdout like text unless a file was asked for.
        let dest = match &self.plan.explicit {
            Some(path) if path.as_os_str() == "-" => return Ok(Target::Stdout),
            Some(path) if first => path.clone(),
            Some(path) => numbered(path, self.open.len() + 1),
            None if header.kind == ContentKind::Text && !self.plan.json => {
                return Ok(Target::Stdout);
            }
            None if header.kind == ContentKind::Text => return Ok(Target::Collect(Vec::new())),
            None => self.default_path(header),
        };
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if std::fs::metadata(&dest).is_ok_and(|m| is_device(&m)) {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&dest)
                .map_err(|e| with_path(&dest, e))?;
            return Ok(Target::Device { dest, file });
        }
        let tmp = dir.join(format!(".{file_name}.{}.part", self.plan.job_id));
        let file = File::create(&tmp).map_err(|e| with_path(&dest, e))?;
        self.pending.lock().expect("pending list").push(tmp.clone());
        Ok(Target::File {
            tmp,
            dest,
            file: BufWriter::with_capacity(256 * 1024, file),
        })
    }

    /// Returns a file name in the plan's directory that does not exist yet.
    fn default_path(&self, header: &OutputHeader) -> PathBuf {
        let ext = if header.extension.is_empty() {
            "bin"
        } else {
            header.extension.as_str()
        };
        let taken: Vec<&PathBuf> = self
            .open
            .iter()
            .filter_map(|o| match &o.target {
                Target::File { dest, .. } | Target::Device { dest, .. } | Target::Placed(dest) => {
                    Some(dest)
                }
                _ => None,
            })
            .collect();
        (1..)
            .map(|n| {
                let name = if n == 1 {
                    format!("{}.{ext}", self.plan.stem)
                } else {
                    format!("{}-{n}.{ext}", self.plan.stem)
                };
                if self.plan.dir == Path::new(".") {
                    PathBuf::from(name)
                } else {
                    self.plan.dir.join(name)
                }
            })
            .find(|p| !p.exists() && !taken.contains(&p))
            .expect("some numbered name is free")
    }

    /// Completes every output still open and returns them all, in the order they were opened.
    pub(crate) fn finish(mut self) -> anyhow::Result<Vec<Written>> {
        let ids: Vec<u32> = self.open.iter().map(|o| o.id).collect();
        for id in ids {
            self.close(id)?;
        }
        let open = std::mem::take(&mut self.open);
        Ok(open.into_iter().map(written).collect())
    }

    /// Removes every output not completed: the job failed or was cancelled. Returns the
    /// outputs that were complete before, which stay.
    pub(crate) fn abandon(mut self) -> Vec<Written> {
        let mut kept = Vec::new();
        for output in self.open.drain(..) {
            match output.target {
                Target::File { tmp, file, .. } => {
                    drop(file);
                    let _ = std::fs::remove_file(&tmp);
                    self.pending
                        .lock()
                        .expect("pending list")
                        .retain(|p| p != &tmp);
                }
                Target::Placed(_) => kept.push(written(output)),
                _ => {}
            }
        }
        kept
    }
}

fn written(output: Open) -> Written {
    let is_json = output.header.media_type.split(';').next() == Some("application/json");
    let (path, text, json) = match output.target {
        Target::Placed(dest) => (Some(dest), None, None),
        Target::Collect(buf) if is_json => match launcher_sdk::serde_json::from_slice(&buf) {
            Ok(value) => (None, None, Some(value)),
            Err(_) => (None, Some(String::from_utf8_lossy(&buf).into_owned()), None),
        },
        Target::Collect(buf) => (None, Some(String::from_utf8_lossy(&buf).into_owned()), None),
        Target::Stdout | Target::File { .. } | Target::Device { .. } => (None, None, None),
    };
    Written {
        name: output.header.name,
        kind: output.header.kind,
        media_type: output.header.media_type,
        path,
        size: output.size,
        text,
        json,
        captured: output
            .captured
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        // Outputs neither finished nor abandoned (a panic in the host) must not be left behind.
        for output in self.open.drain(..) {
            if let Target::File { tmp, .. } = output.target {
                let _ = std::fs::remove_file(tmp);
            }
        }
    }
}

/// Moves a finished temporary file to its destination, never replacing a file unless forced
/// and never a directory.
fn place(tmp: &Path, dest: &Path, force: bool) -> anyhow::Result<()> {
    if dest.is_dir() {
        let _ = std::fs::remove_file(tmp);
        return Err(fail(
            Class::Unwritable,
            format!(
                "{} is a directory, and launcher never replaces a directory; the output was not saved",
                dest.display()
            ),
        ));
    }
    if force {
        std::fs::rename(tmp, dest)?;
        return Ok(());
    }
    // A hard link fails if the destination exists, so a file that appeared while the job
    // ran is never clobbered.
    match std::fs::hard_link(tmp, dest) {
        Ok(()) => {
            std::fs::remove_file(tmp)?;
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(tmp);
            Err(crate::failure::Failure::new(
                Class::Exists,
                format!(
                    "{} appeared while the job ran; the output was not saved",
                    dest.display()
                ),
            )
            .hint("pass --force to replace it")
            .into())
        }
        Err(_) => {
            if dest.exists() {
                let _ = std::fs::remove_file(tmp);
                return Err(fail(
                    Class::Exists,
                    format!("{} exists already", dest.display()),
                ));
            }
            std::fs::rename(tmp, dest)?;
            Ok(())
        }
    }
}

/// Returns the format of a finished output (recognised by its first bytes) when it is not
/// what the extension of the name the user gave says: a file whose name lies about its
/// content is never written.
fn misnamed(dest: &Path, head: &[u8]) -> Option<launcher_sdk::media::MediaFormat> {
    let ext = dest.extension()?.to_str()?.to_ascii_lowercase();
    let found = launcher_sdk::media::sniff(head)?;
    (is_media_extension(&ext) && !same_format(&ext, found.extension)).then_some(found)
}

/// The failure of an output whose bytes `dest` would misname; `kept` is where they were
/// saved instead, if they could be.
fn misnamed_failure(
    dest: &Path,
    made: &launcher_sdk::media::MediaFormat,
    kept: Option<&Path>,
    format_param: bool,
) -> anyhow::Error {
    let ext = dest
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let fate = match kept {
        Some(path) => format!("it was saved as {} instead", path.display()),
        None => "the output was not saved".to_string(),
    };
    let hint = if format_param {
        format!(
            "name the output .{} with -o, or ask the tool for .{ext} with --format {ext}",
            made.extension
        )
    } else {
        format!("name the output .{} with -o", made.extension)
    };
    Failure::new(
        Class::InvalidInput,
        format!(
            "the tool made {} ({}), which {} would misname; {fate}",
            made.media_type,
            made.extension,
            dest.display()
        ),
    )
    .hint(hint)
    .into()
}

/// Extensions of the same format, any of which names it truthfully.
const SAME_FORMAT: &[&[&str]] = &[
    &["jpg", "jpeg"],
    &["tif", "tiff"],
    &["ogg", "oga", "opus", "ogv"],
    &["mp4", "m4a", "m4v", "mov"],
    &["webm", "mkv", "mka"],
    &["wav", "wave"],
    &["mp3"],
    &["flac"],
    &["png"],
    &["gif"],
    &["webp"],
];

/// Returns whether `ext` is a media file extension launcher can check.
pub(crate) fn is_media_extension(ext: &str) -> bool {
    SAME_FORMAT.iter().any(|group| group.contains(&ext))
}

/// Returns whether extensions `a` and `b` name the same format.
pub(crate) fn same_format(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
        || SAME_FORMAT
            .iter()
            .any(|group| group.contains(&a) && group.contains(&b))
}

/// Checks that `dir` takes new files by creating and removing a probe file there; an error
/// names `shown`, the path the user asked for.
fn probe(dir: &Path, shown: &Path, job_id: &str) -> anyhow::Result<()> {
    let probe = dir.join(format!(".launcher-{job_id}.probe"));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(file) => {
            drop(file);
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(err) => Err(unwritable(shown, &err)),
    }
}

/// The failure of an output that cannot be written at `path`.
fn unwritable(path: &Path, err: &io::Error) -> anyhow::Error {
    fail(
        Class::Unwritable,
        format!("cannot write {}: {err}", path.display()),
    )
}

/// Returns `err` with the output path it concerns in its message.
fn with_path(path: &Path, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

/// Returns whether `meta` is a character device (`/dev/null`, a terminal), which an output
/// is written into rather than replacing it.
fn is_device(meta: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        meta.file_type().is_char_device()
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}

/// Returns `path` with `-n` before its extension.
fn numbered(path: &Path, n: usize) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    path.with_file_name(name)
}

/// Removes the temporary files and directories still pending (on the way out after a signal).
pub(crate) fn remove_pending(pending: &Pending) {
    if let Ok(list) = pending.lock() {
        for path in list.iter() {
            if path.is_dir() {
                let _ = std::fs::remove_dir_all(path);
            } else {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn plan(dir: &Path, name: &str) -> Plan {
        Plan {
            explicit: Some(dir.join(name)),
            force: false,
            json: false,
            stem: "tts".into(),
            dir: dir.to_path_buf(),
            job_id: "job1".into(),
            capture: false,
            format_param: false,
        }
    }

    fn header() -> OutputHeader {
        OutputHeader {
            name: "audio".into(),
            kind: ContentKind::Audio,
            media_type: "audio/wav".into(),
            extension: "wav".into(),
        }
    }

    #[test]
    fn a_name_that_lies_about_the_content_is_never_written_and_the_content_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut outputs = Outputs::new(plan(dir.path(), "x.wav"), Pending::default());
        outputs.open(1, &header()).unwrap();
        outputs
            .write(1, b"ID3\x04\x00\x00\x00\x00\x00\x00mp3 frames")
            .unwrap();
        let err = outputs.close(1).unwrap_err();
        let failure = err.downcast_ref::<Failure>().unwrap();
        assert_eq!(failure.class, Class::InvalidInput);
        assert!(
            failure.message.contains("audio/mpeg"),
            "{}",
            failure.message
        );
        outputs.abandon();
        // Only the true name is there, with the bytes; no temporary file is left.
        assert_eq!(names(dir.path()), ["x.mp3"]);
        assert!(failure.message.contains("saved as"), "{}", failure.message);
        std::fs::remove_file(dir.path().join("x.mp3")).unwrap();

        // The truth is written, and so is content that cannot be recognised.
        for (name, bytes) in [("y.mp3", &b"ID3\x04\x00"[..]), ("z.wav", &[0u8; 64][..])] {
            let mut outputs = Outputs::new(plan(dir.path(), name), Pending::default());
            outputs.open(1, &header()).unwrap();
            outputs.write(1, bytes).unwrap();
            outputs.close(1).unwrap();
            assert!(dir.path().join(name).is_file());
        }
    }
}
