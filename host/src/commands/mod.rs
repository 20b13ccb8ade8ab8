//! One module per command; each takes its parsed arguments and does the work.

pub(crate) mod chat;
pub(crate) mod claims;
pub(crate) mod completions;
pub(crate) mod config;
pub(crate) mod info;
pub(crate) mod jobs;
pub(crate) mod keys;
pub(crate) mod list;
pub(crate) mod logs;
pub(crate) mod plugins;
pub(crate) mod registry;
pub(crate) mod run;
pub(crate) mod template;

use std::io::IsTerminal;

use launcher_sdk::serde_json::{self, Value};

use crate::catalog::Catalog;
use crate::env;
use crate::escape::printable;
use crate::style;

/// The version of the JSON documents launcher prints: objects carry it as a top-level
/// `"schema"`, and it changes only when a field changes meaning or goes away (new fields
/// may appear at any time). Documents that are arrays (`list`, `search`, `outdated`,
/// `registry list`, `conversations`, `logs`, `jobs`, `keys list`) follow the same number;
/// `launcher version --json` tells it.
pub(crate) const JSON_SCHEMA: u32 = 1;

/// Prints the JSON document of a command on stdout, with `"schema"` added to an object.
pub(crate) fn print_json(mut document: Value) -> anyhow::Result<()> {
    if let Value::Object(map) = &mut document {
        map.insert("schema".to_string(), Value::from(JSON_SCHEMA));
    }
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(())
}

/// `launcher version`: launcher's version and the version of its JSON documents.
pub(crate) fn version(as_json: bool) -> anyhow::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    if as_json {
        return print_json(serde_json::json!({ "version": version }));
    }
    println!("launcher {version} (JSON schema {JSON_SCHEMA})");
    Ok(())
}

/// Flags every command shares.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Globals {
    pub(crate) verbose: u8,
    pub(crate) quiet: bool,
}

impl Globals {
    /// Refuses -q and -v together: one asks for less, the other for more.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if self.quiet && self.verbose > 0 {
            return Err(crate::failure::fail(
                crate::failure::Class::Usage,
                "-q (print less) and -v (print more) contradict each other; give one",
            ));
        }
        Ok(())
    }

    /// Prints a line about what launcher is doing, with `-v`. Messages from every printer
    /// here may quote a plugin or a registry, so each is made [`printable`].
    pub(crate) fn info(&self, message: &str) {
        if self.verbose > 0 {
            anstream::eprintln!(
                "{} {}",
                style::label(style::DIM, "launcher"),
                printable(message)
            );
        }
    }

    /// Prints a status line (what was written), unless `-q`.
    pub(crate) fn status(&self, message: &str) {
        if !self.quiet {
            eprintln!("{}", printable(message));
        }
    }

    /// Prints a warning, unless `-q`.
    pub(crate) fn warn(&self, message: &str) {
        if !self.quiet {
            anstream::eprintln!(
                "{} {}",
                style::label(style::WARNING, "warning"),
                printable(message)
            );
        }
    }

    /// Returns whether progress may be drawn on stderr.
    pub(crate) fn show_progress(&self) -> bool {
        !self.quiet && env::var(env::NO_PROGRESS).is_none() && std::io::stderr().is_terminal()
    }

    /// Prints what discovery skipped and, with `-v`, what it noticed.
    pub(crate) fn report_catalog(&self, catalog: &Catalog) {
        for warning in &catalog.warnings {
            self.warn(warning);
        }
        for note in &catalog.notes {
            self.info(note);
        }
    }
}
