//! One module per command; each takes its parsed arguments and does the work.

pub(crate) mod chat;
pub(crate) mod info;
pub(crate) mod list;
pub(crate) mod logs;
pub(crate) mod plugins;
pub(crate) mod registry;
pub(crate) mod run;
pub(crate) mod template;

use std::io::IsTerminal;

use crate::catalog::Catalog;
use crate::env;

/// Flags every command shares.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Globals {
    pub(crate) verbose: u8,
    pub(crate) quiet: bool,
}

impl Globals {
    /// Prints a line about what launcher is doing, with `-v`.
    pub(crate) fn info(&self, message: &str) {
        if self.verbose > 0 {
            eprintln!("launcher: {message}");
        }
    }

    /// Prints a status line (what was written), unless `-q`.
    pub(crate) fn status(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// Prints a warning, unless `-q`.
    pub(crate) fn warn(&self, message: &str) {
        if !self.quiet {
            eprintln!("warning: {message}");
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
