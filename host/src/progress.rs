//! Drawing progress: what the registry library reports (a bar for downloads on a terminal,
//! plain lines otherwise, with `-v`), and a running job's progress ([`JobBar`]).

use std::cell::RefCell;
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use launcher_registry::{Reporter, Stage};
use semver::Version;

use crate::commands::Globals;

/// Reports registry work to the user.
pub(crate) struct Progress {
    globals: Globals,
    bar: RefCell<Option<ProgressBar>>,
}

impl Progress {
    pub(crate) fn new(globals: Globals) -> Progress {
        Progress {
            globals,
            bar: RefCell::new(None),
        }
    }

    fn finish_bar(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish_bar();
    }
}

impl Reporter for Progress {
    fn waiting_for_lock(&self, lock_file: &Path) {
        self.globals.status(&format!(
            "waiting for another launcher to finish with the plugin store ({})",
            lock_file.display()
        ));
    }

    fn download_started(&self, name: &str, version: &Version, total: u64) {
        self.globals
            .info(&format!("downloading {name} {version} ({total} bytes)"));
        if !self.globals.show_progress() {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(format!("{name} {version}"));
        *self.bar.borrow_mut() = Some(bar);
    }

    fn download_progress(&self, _name: &str, received: u64) {
        if let Some(bar) = self.bar.borrow().as_ref() {
            bar.set_position(received);
        }
    }

    fn download_finished(&self, _name: &str) {
        self.finish_bar();
    }

    fn stage(&self, name: &str, version: &Version, stage: Stage) {
        let what = match stage {
            Stage::Verifying => "verifying checksum and signature",
            Stage::Extracting => "extracting",
            Stage::Validating => "validating the library in a child process",
            Stage::Installing => "installing",
            Stage::Recording => "recording in the lockfile",
            _ => "working",
        };
        self.globals.info(&format!("{name} {version}: {what}"));
    }

    fn warning(&self, message: &str) {
        self.finish_bar();
        self.globals.warn(message);
    }

    fn note(&self, message: &str) {
        self.finish_bar();
        self.globals.status(message);
    }
}

/// A running job's progress on stderr: a bar when the plugin knows how far along it is, a
/// spinner when it does not. Drawn only when the caller decided progress may be shown.
pub(crate) struct JobBar {
    bar: ProgressBar,
    bounded: Option<bool>,
}

impl JobBar {
    pub(crate) fn new() -> JobBar {
        let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        JobBar { bar, bounded: None }
    }

    /// Shows `fraction` (0 to 1, when known) and what the job is doing.
    pub(crate) fn update(&mut self, fraction: Option<f64>, message: String) {
        let bounded = fraction.is_some();
        if self.bounded != Some(bounded) {
            let template = if bounded {
                "{bar:30} {percent:>3}% {wide_msg}"
            } else {
                "{spinner} {wide_msg}"
            };
            self.bar
                .set_style(ProgressStyle::with_template(template).expect("the template is valid"));
            self.bounded = Some(bounded);
        }
        if let Some(fraction) = fraction {
            self.bar.set_position((fraction * 1000.0).round() as u64);
        }
        self.bar.set_message(message);
    }

    /// Prints a line above the bar without tearing it.
    pub(crate) fn println(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// Removes the bar.
    pub(crate) fn clear(self) {
        self.bar.finish_and_clear();
    }
}
