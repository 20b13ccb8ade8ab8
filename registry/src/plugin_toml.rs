//! `plugin.toml`: the manifest stored beside an installed library, so listing and routing read
//! a small text file and load only the library a job needs.

use std::fs;
use std::path::Path;

use launcher_sdk::Manifest;
use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::error::{Error, ErrorKind, Result};

/// The file name of the manifest beside a library, in the store and in archives.
pub const PLUGIN_TOML: &str = "plugin.toml";

/// The `schema` this crate writes and understands.
pub const PLUGIN_TOML_SCHEMA: u32 = 1;

/// The contents of `plugin.toml`: the library's manifest plus what identifies the library file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginToml {
    /// The schema of this file; always [`PLUGIN_TOML_SCHEMA`] when written by this crate.
    pub schema: u32,
    /// The manifest the library reported when it was validated.
    #[serde(flatten)]
    pub manifest: Manifest,
    /// The library's file name, in the same directory.
    pub library: String,
    /// The sha256 of the library, lowercase hex.
    pub library_sha256: String,
    /// The target triple the library was built for.
    pub target: String,
}

impl PluginToml {
    /// Reads and checks `path`.
    pub fn read(path: &Path) -> Result<PluginToml> {
        let text = fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        let invalid = |message: String| {
            ErrorKind::InvalidPluginToml {
                path: path.to_path_buf(),
                message,
            }
            .into()
        };
        let parsed: PluginToml = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if parsed.schema != PLUGIN_TOML_SCHEMA {
            return Err(invalid(format!(
                "schema {} is not {PLUGIN_TOML_SCHEMA}, the one this launcher understands",
                parsed.schema
            )));
        }
        if !is_file_name(&parsed.library) {
            return Err(invalid(format!(
                "library `{}` is not a plain file name",
                parsed.library
            )));
        }
        Ok(parsed)
    }

    /// Writes it to `path`, replacing any file there atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = toml::to_string(self).map_err(|e| ErrorKind::InvalidPluginToml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        atomic::write_file(path, text.as_bytes())
    }
}

/// Returns whether `name` is a plain file name: no separators, not `.` or `..`, not empty.
pub(crate) fn is_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', ':', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use launcher_sdk::{ParamSpec, ParamType, SettingSpec, ToolSpec};

    pub(crate) fn manifest() -> Manifest {
        Manifest::new("echo", "0.1.0")
            .description("says it back")
            .tool(
                ToolSpec::new("echo", &["chat"])
                    .param(
                        ParamSpec::new("times", ParamType::Integer, "how often")
                            .default_value(2)
                            .range(1.0, 10.0),
                    )
                    .setting(SettingSpec::new("key", "ECHO_KEY", "a key").secret()),
            )
    }

    #[test]
    fn round_trips_through_toml_with_the_manifest_flattened() {
        let original = PluginToml {
            schema: PLUGIN_TOML_SCHEMA,
            manifest: manifest(),
            library: "libecho.so".to_string(),
            library_sha256: "0f".repeat(32),
            target: "x86_64-unknown-linux-gnu".to_string(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PLUGIN_TOML);
        original.write(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\nname = \"echo\""), "flattened: {text}");
        assert!(text.contains("[[tools]]"), "{text}");
        assert_eq!(PluginToml::read(&path).unwrap(), original);
    }

    #[test]
    fn refuses_unknown_schema_and_path_like_library() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PLUGIN_TOML);
        let mut toml = PluginToml {
            schema: 2,
            manifest: manifest(),
            library: "libecho.so".to_string(),
            library_sha256: String::new(),
            target: String::new(),
        };
        toml.write(&path).unwrap();
        let err = PluginToml::read(&path).unwrap_err().to_string();
        assert!(err.contains("schema 2"), "{err}");
        toml.schema = PLUGIN_TOML_SCHEMA;
        toml.library = "../libecho.so".to_string();
        toml.write(&path).unwrap();
        let err = PluginToml::read(&path).unwrap_err().to_string();
        assert!(err.contains("not a plain file name"), "{err}");
    }
}
