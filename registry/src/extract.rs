//! Safe extraction of plugin archives (`.tar.gz`).
//!
//! Only regular files and directories are written, and only below the destination: an entry
//! with an absolute path, a `..` component, a link, a device or any other special type is
//! refused, as are archives with too many entries or that unpack to too many bytes (bombs).
//! Files are written by this module, not by `tar`'s unpacker, into a fresh directory, so no
//! entry can follow a link or overwrite something that was there before.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use tar::{Archive, EntryType};

use crate::error::{ArchiveError, Error, ErrorKind, Result};

/// How much an archive may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most entries (files and directories).
    pub max_entries: usize,
    /// The most bytes all files may unpack to.
    pub max_unpacked: u64,
}

impl Limits {
    /// Returns the limits for an archive of `compressed` bytes: 10,000 entries, and the larger
    /// of 512 MiB and 20 times the compressed size (cargo's rule for crates).
    pub fn for_archive(compressed: u64) -> Limits {
        Limits {
            max_entries: 10_000,
            max_unpacked: (512 << 20).max(compressed.saturating_mul(20)),
        }
    }
}

/// Extracts the `.tar.gz` at `archive` into `dest`, which must be an empty directory.
pub fn extract(archive: &Path, dest: &Path, limits: &Limits) -> Result<()> {
    let refuse = |source| {
        ErrorKind::UnsafeArchive {
            archive: archive.to_path_buf(),
            source,
        }
        .into()
    };
    let file = File::open(archive).map_err(|e| Error::io("open", archive, e))?;
    let mut tar = Archive::new(GzDecoder::new(io::BufReader::new(file)));
    let entries = tar
        .entries()
        .map_err(|e| refuse(ArchiveError::Corrupt(e)))?;

    let mut count = 0usize;
    let mut unpacked = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| refuse(ArchiveError::Corrupt(e)))?;
        count += 1;
        if count > limits.max_entries {
            return Err(refuse(ArchiveError::TooManyEntries {
                limit: limits.max_entries,
            }));
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(relative) = checked_path(&raw).map_err(refuse)? else {
            // `./` names the destination itself.
            continue;
        };
        let path = dest.join(&relative);
        match entry.header().entry_type() {
            EntryType::Directory => {
                fs::create_dir_all(&path).map_err(|e| Error::io("create", &path, e))?;
            }
            EntryType::Regular => {
                let declared = entry.header().size().unwrap_or(u64::MAX);
                if unpacked.saturating_add(declared) > limits.max_unpacked {
                    return Err(refuse(ArchiveError::TooLarge {
                        limit: limits.max_unpacked,
                    }));
                }
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(|e| Error::io("create", parent, e))?;
                }
                let mode = entry.header().mode().unwrap_or(0o644);
                let mut out = create_new(&path, mode).map_err(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        refuse(ArchiveError::Duplicate { entry: raw.clone() })
                    } else {
                        Error::io("create", &path, e)
                    }
                })?;
                // The header's size is what the tar reader yields, but cap anyway: the limit
                // must hold whatever the reader does.
                let budget = limits.max_unpacked - unpacked;
                let written =
                    copy(&mut (&mut entry).take(budget + 1), &mut out).map_err(|e| match e {
                        Copy::Read(e) => refuse(ArchiveError::Corrupt(e)),
                        Copy::Write(e) => Error::io("write", &path, e),
                    })?;
                if written > budget {
                    return Err(refuse(ArchiveError::TooLarge {
                        limit: limits.max_unpacked,
                    }));
                }
                unpacked += written;
            }
            EntryType::Symlink | EntryType::Link => {
                return Err(refuse(ArchiveError::Link { entry: raw }));
            }
            other => {
                return Err(refuse(ArchiveError::Special {
                    entry: raw,
                    kind: kind_name(other).to_string(),
                }));
            }
        }
    }
    Ok(())
}

/// Returns the entry's path relative to the destination (`None` for `.`), or why it is unsafe.
fn checked_path(raw: &str) -> std::result::Result<Option<PathBuf>, ArchiveError> {
    let entry = || raw.to_string();
    // Backslashes and drive letters are separators or prefixes on Windows, and NUL ends a C
    // string: refuse them everywhere, so an archive means the same on every platform.
    if raw.is_empty() || raw.contains(['\\', ':', '\0']) {
        return Err(ArchiveError::BadName { entry: entry() });
    }
    let mut relative = PathBuf::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(ArchiveError::Escapes { entry: entry() }),
            Component::RootDir | Component::Prefix(_) => {
                return Err(ArchiveError::Absolute { entry: entry() });
            }
        }
    }
    Ok((!relative.as_os_str().is_empty()).then_some(relative))
}

fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Keep the executable bits, drop everything else (setuid, world-writable).
        options.mode(if mode & 0o111 != 0 { 0o755 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

enum Copy {
    Read(io::Error),
    Write(io::Error),
}

fn copy(reader: &mut impl Read, writer: &mut impl Write) -> std::result::Result<u64, Copy> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Read(e)),
        };
        writer.write_all(&buf[..n]).map_err(Copy::Write)?;
        total += n as u64;
    }
}

fn kind_name(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Fifo => "FIFO",
        EntryType::Continuous => "contiguous file",
        EntryType::GNUSparse => "sparse file",
        _ => "special entry",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use tar::{Builder, Header};

    /// One entry of a hand-made archive; the path is written raw, unchecked.
    pub(crate) enum Item<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        HardLink(&'a str, &'a str),
        Fifo(&'a str),
        CharDevice(&'a str),
    }

    /// Builds a `.tar.gz` from `items`, bypassing `tar`'s own path checks.
    pub(crate) fn archive(items: &[Item<'_>]) -> Vec<u8> {
        let mut builder = Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for item in items {
            let mut header = Header::new_gnu();
            let (path, kind, data, link): (&str, EntryType, &[u8], Option<&str>) = match *item {
                Item::File(p, d) => (p, EntryType::Regular, d, None),
                Item::Dir(p) => (p, EntryType::Directory, &[], None),
                Item::Symlink(p, t) => (p, EntryType::Symlink, &[], Some(t)),
                Item::HardLink(p, t) => (p, EntryType::Link, &[], Some(t)),
                Item::Fifo(p) => (p, EntryType::Fifo, &[], None),
                Item::CharDevice(p) => (p, EntryType::Char, &[], None),
            };
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            // Write the name field directly: `set_path` would refuse `..` and absolute paths.
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn unpack(items: &[Item<'_>], limits: &Limits) -> (tempfile::TempDir, Result<()>) {
        let dir = tempfile::tempdir().unwrap();
        let archive_path = dir.path().join("a.tar.gz");
        fs::write(&archive_path, archive(items)).unwrap();
        let dest = dir.path().join("out");
        fs::create_dir(&dest).unwrap();
        let result = extract(&archive_path, &dest, limits);
        (dir, result)
    }

    fn refusal(items: &[Item<'_>]) -> (ArchiveError, Vec<PathBuf>) {
        let (dir, result) = unpack(items, &Limits::for_archive(0));
        let written = walk(&dir.path().join("out"));
        match result.map_err(Error::into_kind) {
            Err(ErrorKind::UnsafeArchive { source, .. }) => (source, written),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.clone());
            if path.is_dir() {
                out.extend(walk(&path));
            }
        }
        out
    }

    #[test]
    fn extracts_files_and_directories() {
        let (dir, result) = unpack(
            &[
                Item::Dir("./"),
                Item::File("plugin.toml", b"schema = 1\n"),
                Item::Dir("assets"),
                Item::File("assets/voice.bin", b"\x00\x01"),
                Item::File("./README.md", b"hello"),
            ],
            &Limits::for_archive(0),
        );
        result.unwrap();
        let out = dir.path().join("out");
        assert_eq!(fs::read(out.join("plugin.toml")).unwrap(), b"schema = 1\n");
        assert_eq!(fs::read(out.join("assets/voice.bin")).unwrap(), b"\x00\x01");
        assert_eq!(fs::read(out.join("README.md")).unwrap(), b"hello");
    }

    #[test]
    fn refuses_parent_components() {
        let (err, written) = refusal(&[Item::File("../../.bashrc", b"evil")]);
        assert_eq!(
            err.to_string(),
            "entry `../../.bashrc` escapes the install directory"
        );
        assert!(written.is_empty());
        let (err, _) = refusal(&[Item::File("a/../../b", b"evil")]);
        assert!(matches!(err, ArchiveError::Escapes { .. }), "{err}");
    }

    #[test]
    fn refuses_absolute_paths() {
        let (err, written) = refusal(&[Item::File("/etc/passwd", b"evil")]);
        assert_eq!(err.to_string(), "entry `/etc/passwd` has an absolute path");
        assert!(written.is_empty());
    }

    #[test]
    fn refuses_links() {
        let (err, _) = refusal(&[Item::Symlink("x", "..")]);
        assert_eq!(err.to_string(), "entry `x` is a link");
        // The classic attack: a link to the outside, then a file through it.
        let (err, written) = refusal(&[
            Item::File("plugin.toml", b""),
            Item::Symlink("escape", "/tmp"),
            Item::File("escape/owned", b"evil"),
        ]);
        assert!(matches!(err, ArchiveError::Link { .. }));
        assert_eq!(written.len(), 1, "{written:?}");
        let (err, _) = refusal(&[Item::File("a", b""), Item::HardLink("b", "a")]);
        assert!(matches!(err, ArchiveError::Link { .. }));
    }

    #[test]
    fn refuses_devices_and_fifos() {
        let (err, _) = refusal(&[Item::CharDevice("null")]);
        assert_eq!(
            err.to_string(),
            "entry `null` is a character device; only regular files and directories are allowed"
        );
        let (err, _) = refusal(&[Item::Fifo("pipe")]);
        assert!(matches!(err, ArchiveError::Special { .. }));
    }

    #[test]
    fn refuses_windows_separators_and_duplicates() {
        let (err, _) = refusal(&[Item::File("..\\evil", b"")]);
        assert!(matches!(err, ArchiveError::BadName { .. }), "{err}");
        let (err, _) = refusal(&[Item::File("C:evil", b"")]);
        assert!(matches!(err, ArchiveError::BadName { .. }), "{err}");
        let (err, _) = refusal(&[Item::File("a", b"1"), Item::File("./a", b"2")]);
        assert!(matches!(err, ArchiveError::Duplicate { .. }), "{err}");
    }

    #[test]
    fn refuses_bombs_by_size_and_by_count() {
        let big = vec![0u8; 4096];
        let limits = Limits {
            max_entries: 100,
            max_unpacked: 10_000,
        };
        let (_dir, result) = unpack(
            &[
                Item::File("a", &big),
                Item::File("b", &big),
                Item::File("c", &big),
            ],
            &limits,
        );
        match result.map_err(Error::into_kind) {
            Err(ErrorKind::UnsafeArchive {
                source: ArchiveError::TooLarge { limit },
                ..
            }) => assert_eq!(limit, 10_000),
            other => panic!("{other:?}"),
        }
        let names: Vec<String> = (0..5).map(|i| format!("f{i}")).collect();
        let items: Vec<Item<'_>> = names.iter().map(|n| Item::File(n, b"")).collect();
        let limits = Limits {
            max_entries: 4,
            max_unpacked: 10_000,
        };
        let (_dir, result) = unpack(&items, &limits);
        assert!(matches!(
            result.map_err(Error::into_kind),
            Err(ErrorKind::UnsafeArchive {
                source: ArchiveError::TooManyEntries { limit: 4 },
                ..
            })
        ));
    }

    #[test]
    fn a_bomb_is_refused_from_its_header_before_anything_is_written() {
        // A 600 MiB entry: over the default limit for a small archive. Its data is left out,
        // which a bomb would not do, because the header alone must be enough to refuse it.
        let dir = tempfile::tempdir().unwrap();
        let archive_path = dir.path().join("bomb.tar.gz");
        {
            let file = File::create(&archive_path).unwrap();
            let mut builder = Builder::new(GzEncoder::new(file, Compression::fast()));
            let mut header = Header::new_gnu();
            header.set_path("zeros").unwrap();
            header.set_size(600 << 20);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append(&header, io::empty()).unwrap();
            builder.into_inner().unwrap().finish().unwrap();
        }
        let compressed = fs::metadata(&archive_path).unwrap().len();
        assert_eq!(Limits::for_archive(compressed).max_unpacked, 512 << 20);
        let dest = dir.path().join("out");
        fs::create_dir(&dest).unwrap();
        let result = extract(&archive_path, &dest, &Limits::for_archive(compressed))
            .map_err(Error::into_kind);
        assert!(
            matches!(
                result,
                Err(ErrorKind::UnsafeArchive {
                    source: ArchiveError::TooLarge { .. },
                    ..
                })
            ),
            "{result:?}"
        );
        assert!(walk(&dest).is_empty());
        assert_eq!(Limits::for_archive(100 << 20).max_unpacked, 2000 << 20);
    }

    #[test]
    fn refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        fs::write(&path, b"this is not gzip").unwrap();
        let dest = dir.path().join("out");
        fs::create_dir(&dest).unwrap();
        let err = extract(&path, &dest, &Limits::for_archive(16)).unwrap_err();
        assert!(matches!(
            err.kind(),
            ErrorKind::UnsafeArchive {
                source: ArchiveError::Corrupt(_),
                ..
            }
        ));
    }
}
