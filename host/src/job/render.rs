//! Showing a job to the user: progress (an indicatif bar or spinner on a terminal, nothing
//! when piped), the plugin's log lines, and the result as text or JSON.

use std::io::IsTerminal;
use std::time::Duration;

use launcher_sdk::cost::Cost;
use launcher_sdk::serde_json::{self, json};
use launcher_sdk::{ContentKind, JobResult, LISTING_TASKS, LogLevel, LogLine, Progress};

use crate::catalog::Catalog;
use crate::commands::Globals;
use crate::escape::printable;
use crate::job::plan::JobPlan;
use crate::output::Written;
use crate::progress::JobBar;
use crate::route;
use crate::settings;

/// Draws one job's progress and logs on stderr.
pub(crate) struct Render {
    globals: Globals,
    secrets: Vec<String>,
    bar: Option<JobBar>,
    /// What the job was estimated to cost, for the JSON result.
    cost: Option<Cost>,
}

impl Render {
    pub(crate) fn new(globals: Globals, secrets: Vec<String>) -> Render {
        Render {
            globals,
            secrets,
            bar: None,
            cost: None,
        }
    }

    /// Remembers the job's estimated cost for the JSON result.
    pub(crate) fn set_cost(&mut self, cost: Cost) {
        self.cost = Some(cost);
    }

    fn scrub(&self, text: &str) -> String {
        settings::scrub(text, &self.secrets)
    }

    /// Shows progress: a bar when the fraction is known, a spinner otherwise.
    pub(crate) fn progress(&mut self, progress: &Progress) {
        if !self.globals.show_progress() {
            return;
        }
        let message = printable(&self.scrub(&progress.message)).into_owned();
        self.bar
            .get_or_insert_with(JobBar::new)
            .update(progress.fraction, message);
    }

    /// Shows a plugin's log line at the verbosity it asks for.
    pub(crate) fn log(&mut self, line: &LogLine) {
        let shown = match line.level {
            LogLevel::Warn => !self.globals.quiet,
            LogLevel::Info => self.globals.verbose >= 1,
            LogLevel::Debug => self.globals.verbose >= 2,
        };
        if shown {
            let text = format!("{}: {}", level_name(line.level), self.scrub(&line.message));
            self.say(&text);
        }
    }

    /// Prints a line on stderr without tearing the progress bar; the line may quote the
    /// plugin, so it is made [`printable`].
    pub(crate) fn say(&self, text: &str) {
        let text = printable(text);
        match &self.bar {
            Some(bar) => bar.println(&text),
            None => eprintln!("{text}"),
        }
    }

    /// Removes the progress bar.
    pub(crate) fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.clear();
        }
    }

    /// Shows what a finished job wrote (or its JSON result).
    pub(crate) fn finished(
        &mut self,
        plan: &JobPlan,
        written: &[Written],
        duration: Duration,
        result: &JobResult,
        recorded: bool,
        conversation: Option<&str>,
    ) -> anyhow::Result<()> {
        self.clear();
        if plan.json
            && LISTING_TASKS.contains(&plan.task.name.as_str())
            && let [only] = written
            && let Some(listing) = &only.json
        {
            // `launcher run voices --json` is the list itself, ready for `jq`.
            #[allow(clippy::print_stdout)]
            {
                println!("{}", serde_json::to_string_pretty(listing)?);
            }
            return Ok(());
        }
        if plan.collect {
            return Ok(());
        }
        if plan.json {
            let mut report = json!({
                "schema": crate::commands::JSON_SCHEMA,
                "tool": plan.tool.spec.id,
                "task": plan.task.name,
                "plugin": plan.tool.plugin,
                "version": plan.tool.version,
                "outputs": written,
                "duration_ms": duration.as_millis() as u64,
                "info": result.info,
            });
            if recorded {
                report["job"] = json!(plan.id);
            }
            if let Some(id) = conversation {
                report["conversation"] = json!(id);
            }
            if let Some(cost) = &self.cost {
                report["cost"] = json!(cost);
            }
            #[allow(clippy::print_stdout)]
            {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            return Ok(());
        }
        for w in written {
            if let Some(path) = &w.path {
                self.globals.status(&format!(
                    "wrote {} ({}, {}) with {} in {:.1} s",
                    path.display(),
                    w.media_type,
                    human_size(w.size),
                    plan.tool.spec.id,
                    duration.as_secs_f64()
                ));
            }
        }
        // The paths written are results: a script reads them on stdout, one a line, even
        // with -q, unless stdout carries an output itself.
        let stdout_is_output = crate::output::Outputs::uses_stdout(&plan.outputs)
            || written.iter().any(|w| w.path.is_none());
        if !stdout_is_output {
            #[allow(clippy::print_stdout)]
            for path in written.iter().filter_map(|w| w.path.as_ref()) {
                println!("{}", path.display());
            }
        }
        let streamed_text = written
            .iter()
            .any(|w| w.path.is_none() && w.kind == ContentKind::Text && w.size > 0);
        if streamed_text && std::io::stdout().is_terminal() {
            // End the streamed text's line so the shell prompt starts on its own.
            #[allow(clippy::print_stdout)]
            {
                println!();
            }
        }
        if written.is_empty() {
            self.globals
                .status(&format!("{} finished without output", plan.tool.spec.id));
        }
        if let Some(id) = conversation {
            self.globals.info(&format!(
                "conversation {id}: `launcher run chat -c \"...\"` continues it"
            ));
        }
        Ok(())
    }

    /// Says that a job was submitted and goes on remotely.
    pub(crate) fn detached(&mut self, plan: &JobPlan, why: &str) {
        self.clear();
        if plan.json && !plan.collect {
            let mut report = json!({
                "schema": crate::commands::JSON_SCHEMA,
                "tool": plan.tool.spec.id,
                "task": plan.task.name,
                "job": plan.id,
                "state": "detached",
            });
            if let Some(cost) = &self.cost {
                report["cost"] = json!(cost);
            }
            #[allow(clippy::print_stdout)]
            {
                println!("{report}");
            }
        }
        self.globals.status(&format!(
            "{why}: job {id} goes on at {tool}; `launcher jobs wait {id}` collects its outputs",
            id = plan.id,
            tool = plan.tool.spec.id
        ));
    }
}

impl Drop for Render {
    fn drop(&mut self) {
        self.clear();
    }
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Warn => "warning",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `launcher run --help` without a target: the tasks and who does them.
pub(crate) fn general_help(catalog: &Catalog) -> String {
    let mut out = String::new();
    out.push_str("Run a job: launcher run <tool|task> [INPUT] [parameters] [-o FILE] [--json]\n");
    out.push_str("           launcher run --to <text|image|audio|video> [INPUT] [parameters]\n");
    out.push_str("           launcher run --resume JOB\n\nTasks:\n");
    for task in route::task_names(catalog) {
        let tools: Vec<&str> = catalog
            .tools
            .iter()
            .filter(|t| t.spec.tasks.contains(&task))
            .map(|t| t.spec.id.as_str())
            .collect();
        let shown = if tools.is_empty() {
            "(no tool installed)".to_string()
        } else {
            tools.join(", ")
        };
        out.push_str(&format!("  {task:<10} {shown}\n"));
    }
    out.push_str("\n`launcher run <tool|task> --help` shows its parameters.\n");
    out
}
