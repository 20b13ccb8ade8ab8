//! The registry index: the static files a registry is made of, and their parsing.
//!
//! A registry is a directory of plain files, served by anything that serves files (a local
//! path, `file://`, any HTTP server). It never needs a program of its own:
//!
//! ```text
//! .
//! ├── config.json          {"dl": "archives/{name}/{name}-{version}-{target}.tar.gz"}
//! ├── catalog.jsonl        every line of every index file, for `search` (one fetch)
//! ├── 1/
//! │   └── a                index file of the plugin named `a`
//! ├── 2/
//! │   └── sd               ... `sd`
//! ├── 3/
//! │   └── f/
//! │       └── fox          ... `fox`
//! ├── az/
//! │   └── ur/
//! │       └── azure-tts    ... `azure-tts`: names of four or more characters
//! └── archives/            where the `dl` template above happens to point
//!     └── azure-tts/
//!         └── azure-tts-1.2.0-x86_64-unknown-linux-gnu.tar.gz
//! ```
//!
//! The path of an index file is Cargo's sparse-index layout ([`index_path`]). Each index file
//! holds one JSON line per published version ([`IndexLine`]); lines are only ever appended,
//! except that yanking flips one line's `yanked` flag and publishing another target of a version
//! adds to that line's `targets`. Every line carries its schema version `v`; a client skips
//! lines whose `v` it does not know, so old clients keep working when new fields appear.
//!
//! `config.json` holds the `dl` URL template of the archives, with `{name}`, `{version}` and
//! `{target}` markers. A template without a scheme is relative to the registry's root.
//!
//! `catalog.jsonl` repeats every index line of every plugin, so that `search` reads one file
//! instead of one per plugin. Installs never read it: the per-name file is the authority.

use std::collections::BTreeMap;

use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};

/// The index line schema this crate writes and understands.
pub const INDEX_SCHEMA: u32 = 1;

/// The name of the file at the registry root that says where archives are.
pub const CONFIG_FILE: &str = "config.json";

/// The name of the file at the registry root that repeats every index line, for search.
pub const CATALOG_FILE: &str = "catalog.jsonl";

/// The `dl` template a fresh registry gets from `publish`: archives beside the index.
pub const DEFAULT_DL_TEMPLATE: &str = "archives/{name}/{name}-{version}-{target}.tar.gz";

/// A registry's `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexConfig {
    /// The archive URL template, with `{name}`, `{version}` and `{target}` markers. Without a
    /// scheme it is relative to the registry root.
    pub dl: String,
}

impl IndexConfig {
    /// Returns the archive location for one build, or an error message if the template lacks a
    /// marker (builds would overwrite each other).
    pub fn archive_location(
        &self,
        name: &str,
        version: &Version,
        target: &str,
    ) -> Result<String, String> {
        for marker in ["{name}", "{version}", "{target}"] {
            if !self.dl.contains(marker) {
                return Err(format!("the `dl` template `{}` lacks {marker}", self.dl));
            }
        }
        Ok(self
            .dl
            .replace("{name}", name)
            .replace("{version}", &version.to_string())
            .replace("{target}", target))
    }
}

/// One published version of a plugin: one JSON line of its index file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexLine {
    /// The schema version of this line; 1 when absent.
    #[serde(default = "first_schema")]
    pub v: u32,
    /// The plugin's name; equals the index file's name.
    pub name: String,
    /// The version.
    pub vers: Version,
    /// The plugin ABI major version its libraries speak.
    pub abi: u32,
    /// The launcher versions it works with.
    pub host: VersionReq,
    /// One line saying what it is.
    #[serde(default)]
    pub desc: String,
    /// The content kinds its tools produce (`text`, `image`, `audio`, `video`).
    #[serde(default)]
    pub categories: Vec<String>,
    /// The tasks its tools perform.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// One archive per target triple.
    pub targets: BTreeMap<String, Artifact>,
    /// Whether new resolutions must skip it.
    #[serde(default)]
    pub yanked: bool,
}

pub(crate) fn first_schema() -> u32 {
    1
}

/// The archive of one version for one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The sha256 of the archive, lowercase hex.
    pub sha256: String,
    /// The archive's size in bytes.
    pub size: u64,
    /// The minisign signature file of the archive, as text.
    pub sig: String,
}

/// The versions of one plugin read from its index file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexFile {
    /// The lines this client understands, in file order.
    pub lines: Vec<IndexLine>,
    /// Lines with a known schema that do not parse, each described; unknown schemas are skipped
    /// silently, as designed.
    pub skipped: Vec<String>,
}

impl IndexFile {
    /// Parses index text. With `name`, lines for any other plugin are skipped too (a line must
    /// not be installable through another plugin's file).
    pub fn parse(text: &str, name: Option<&str>) -> IndexFile {
        #[derive(Deserialize)]
        struct Schema {
            #[serde(default = "first_schema")]
            v: u32,
        }
        let mut file = IndexFile::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            // One parse in the common case; the schema alone is read only for lines that fail,
            // to tell a newer schema (skipped silently) from a broken line.
            let parsed = match serde_json::from_str::<IndexLine>(line) {
                Ok(parsed) if parsed.v > INDEX_SCHEMA => continue,
                Ok(parsed) => parsed,
                Err(e) => {
                    if !matches!(serde_json::from_str::<Schema>(line), Ok(s) if s.v > INDEX_SCHEMA)
                    {
                        file.skipped.push(format!("line {}: {e}", number + 1));
                    }
                    continue;
                }
            };
            match name {
                None if !launcher_sdk::is_identifier(&parsed.name) => file.skipped.push(format!(
                    "line {}: `{}` is not a valid plugin name",
                    number + 1,
                    parsed.name.escape_default()
                )),
                Some(name) if parsed.name != name => file.skipped.push(format!(
                    "line {}: names `{}`, not `{name}`",
                    number + 1,
                    parsed.name.escape_default()
                )),
                _ => file.lines.push(parsed),
            }
        }
        file
    }
}

/// Returns the path of `name`'s index file relative to the registry root, in Cargo's
/// sparse-index layout, or `None` if `name` is not a valid plugin name.
pub fn index_path(name: &str) -> Option<String> {
    if !launcher_sdk::is_identifier(name) {
        return None;
    }
    // Identifiers are ASCII, so byte slicing is on character boundaries.
    Some(match name.len() {
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(v: u32, name: &str, vers: &str) -> String {
        format!(r#"{{"v":{v},"name":"{name}","vers":"{vers}","abi":1,"host":"*","targets":{{}}}}"#)
    }

    #[test]
    fn paths_follow_cargo_sparse_layout() {
        assert_eq!(index_path("a").as_deref(), Some("1/a"));
        assert_eq!(index_path("sd").as_deref(), Some("2/sd"));
        assert_eq!(index_path("fox").as_deref(), Some("3/f/fox"));
        assert_eq!(index_path("echo").as_deref(), Some("ec/ho/echo"));
        assert_eq!(index_path("azure-tts").as_deref(), Some("az/ur/azure-tts"));
    }

    #[test]
    fn paths_refuse_invalid_names() {
        assert_eq!(index_path(""), None);
        assert_eq!(index_path("../x"), None);
        assert_eq!(index_path("Echo"), None);
        assert_eq!(index_path("a/b"), None);
    }

    #[test]
    fn unknown_schema_lines_are_skipped_silently() {
        let text = [
            line(1, "echo", "0.1.0"),
            line(2, "echo", "0.2.0").replace("\"abi\":1,", ""),
            line(1, "echo", "0.3.0"),
        ]
        .join("\n");
        let file = IndexFile::parse(&text, Some("echo"));
        let versions: Vec<String> = file.lines.iter().map(|l| l.vers.to_string()).collect();
        assert_eq!(versions, ["0.1.0", "0.3.0"]);
        assert!(file.skipped.is_empty(), "{:?}", file.skipped);
    }

    #[test]
    fn missing_schema_means_the_first() {
        let text = line(1, "echo", "0.1.0").replace("\"v\":1,", "");
        let file = IndexFile::parse(&text, Some("echo"));
        assert_eq!(file.lines.len(), 1);
        assert_eq!(file.lines[0].v, 1);
    }

    #[test]
    fn bad_and_foreign_lines_are_reported_not_fatal() {
        let text = [
            "not json".to_string(),
            line(1, "echo", "not-a-version"),
            line(1, "other", "0.1.0"),
            line(1, "echo", "0.4.0"),
        ]
        .join("\n");
        let file = IndexFile::parse(&text, Some("echo"));
        assert_eq!(file.lines.len(), 1);
        assert_eq!(file.skipped.len(), 3, "{:?}", file.skipped);
        assert!(file.skipped[2].contains("names `other`"));
    }

    #[test]
    fn dl_template_expands_and_requires_every_marker() {
        let config = IndexConfig {
            dl: DEFAULT_DL_TEMPLATE.to_string(),
        };
        let version = Version::new(1, 2, 0);
        assert_eq!(
            config
                .archive_location("echo", &version, "x86_64-unknown-linux-gnu")
                .unwrap(),
            "archives/echo/echo-1.2.0-x86_64-unknown-linux-gnu.tar.gz"
        );
        let config = IndexConfig {
            dl: "https://cdn.example/{name}/{version}.tgz".to_string(),
        };
        let err = config.archive_location("echo", &version, "t").unwrap_err();
        assert!(err.contains("{target}"), "{err}");
    }

    #[test]
    fn lines_round_trip() {
        let mut targets = BTreeMap::new();
        targets.insert(
            "x86_64-unknown-linux-gnu".to_string(),
            Artifact {
                sha256: "ab".repeat(32),
                size: 42,
                sig: "untrusted comment: x\nRW\ntrusted comment: y\nZZ\n".to_string(),
            },
        );
        let original = IndexLine {
            v: INDEX_SCHEMA,
            name: "echo".to_string(),
            vers: Version::parse("1.0.0-beta.1").unwrap(),
            abi: 1,
            host: VersionReq::parse(">=0.1, <2").unwrap(),
            desc: "says it back".to_string(),
            categories: vec!["text".to_string()],
            tasks: vec!["chat".to_string()],
            targets,
            yanked: true,
        };
        let text = serde_json::to_string(&original).unwrap();
        assert!(!text.contains('\n'), "one line per version");
        let file = IndexFile::parse(&text, Some("echo"));
        assert_eq!(file.lines, [original]);
    }
}
