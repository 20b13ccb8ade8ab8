//! `launcher run`: plan a job from the command line, run it, show it (see [`crate::job`]).

use anyhow::Result;

use crate::catalog::Catalog;
use crate::commands::Globals;
use crate::failure::{Class, Failure};
use crate::home::{Config, Home};
use crate::job::plan::{self, Planned, ProcessInputs};
use crate::job::store::Store;
use crate::job::{exec, render};

/// Runs `launcher run` with its raw arguments.
pub(crate) fn run(globals: &Globals, raw: Vec<String>) -> Result<()> {
    let (raw, dry_run) = take_dry_run(raw);
    let home = Home::locate()?;
    let config_path = home.config_file();
    let config = Config::load(&home)?;
    let catalog = Catalog::discover(&home, &config);
    globals.report_catalog(&catalog);
    let mut inputs = ProcessInputs {
        home: &home,
        config: &config,
    };
    match plan::plan(&raw, &catalog, &config, &config_path, &mut inputs)? {
        Planned::GeneralHelp => print(&render::general_help(&catalog)),
        Planned::Help(text) => print(&text),
        Planned::Job(plan) if dry_run => {
            print(&dry_run_report(&plan, &cli_settings(&raw), &config)?);
        }
        Planned::Job(plan) => {
            warn_if_pick_changed(globals, &home, &plan);
            execute(globals, &home, *plan)?;
        }
        Planned::Resume {
            id,
            json,
            cancel_remote,
        } => {
            let store = Store::open(home.data_dir())?;
            let record = crate::commands::jobs::find(&store, &id)?;
            if !record.state.resumable() {
                return Err(Failure::new(
                    Class::InvalidInput,
                    format!(
                        "job {} is {} and cannot be resumed",
                        record.id,
                        record.state.as_str()
                    ),
                )
                .into());
            }
            let lock = crate::commands::jobs::take_for_resume(home.data_dir(), &record.id)?;
            let plan =
                plan::plan_resume(record, &catalog, &config, &config_path, json, cancel_remote)?;
            exec::execute(plan, Some(lock), home.data_dir(), globals)?;
        }
    }
    Ok(())
}

/// Runs a planned job, then plays what it wrote when it was asked to (`--play`).
pub(crate) fn execute(globals: &Globals, home: &Home, plan: plan::JobPlan) -> Result<exec::Report> {
    let play = plan.play;
    let report = exec::execute(plan, None, home.data_dir(), globals)?;
    if play {
        match report
            .outputs
            .iter()
            .find_map(|w| Some((w.path.as_ref()?, &w.kind)))
        {
            Some((path, kind)) => crate::play::play(globals, path, kind),
            None => globals.warn("--play: the job wrote no file to play"),
        }
    }
    Ok(report)
}

/// Warns when launcher picked another tool for a task than the one the last job of that task
/// in the history ran with: a newly installed plugin may win a task, and that must not go
/// unnoticed. Without history (none yet, or `launcher logs off`) there is nothing to compare.
fn warn_if_pick_changed(globals: &Globals, home: &Home, plan: &plan::JobPlan) {
    let dir = home.data_dir();
    if !plan.picked || !Store::path(dir).exists() || !Store::logging(dir) {
        return;
    }
    let filter = crate::job::store::Filter {
        limit: 1,
        task: Some(plan.task.name.clone()),
        ..Default::default()
    };
    // The history only informs this warning; a history that cannot be read changes nothing.
    let Ok(last) = Store::open(dir).and_then(|store| store.history(&filter)) else {
        return;
    };
    if let Some(last) = last.first()
        && last.tool != plan.tool.spec.id
    {
        globals.warn(&format!(
            "`launcher run {task}` now picks tool `{now}` (plugin `{plugin}`); the last `{task}` job ran with `{was}`; `launcher default {task} {was}` keeps `{was}`",
            task = plan.task.name,
            now = plan.tool.spec.id,
            plugin = plan.tool.plugin,
            was = last.tool,
        ));
    }
}

/// Takes `--dry-run` out of `run`'s arguments (before a `--`); returns whether it was there.
pub(crate) fn take_dry_run(raw: Vec<String>) -> (Vec<String>, bool) {
    let end = raw.iter().position(|a| a == "--").unwrap_or(raw.len());
    let found = raw[..end].iter().any(|a| a == "--dry-run");
    if !found {
        return (raw, false);
    }
    let kept = raw
        .into_iter()
        .enumerate()
        .filter(|(i, a)| *i >= end || a != "--dry-run")
        .map(|(_, a)| a)
        .collect();
    (kept, true)
}

/// The `--set NAME=VALUE` pairs of the command line, to tell where each setting came from.
pub(crate) fn cli_settings(raw: &[String]) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut args = raw.iter();
    while let Some(arg) = args.next() {
        let item = match arg.strip_prefix("--set=") {
            Some(item) => Some(item),
            None if arg == "--set" => args.next().map(String::as_str),
            None => None,
        };
        if let Some((k, v)) = item.and_then(|i| i.split_once('=')) {
            pairs.push((k.trim().to_string(), v.to_string()));
        }
    }
    pairs
}

/// `--dry-run`: what the job would be, with every secret masked; nothing is loaded or run.
pub(crate) fn dry_run_report(
    plan: &plan::JobPlan,
    cli: &[(String, String)],
    config: &Config,
) -> Result<String> {
    use launcher_sdk::serde_json::{self, Map, Value, json};
    let scrub = |s: &str| crate::settings::scrub(s, &plan.secrets);
    let params: Map<String, Value> = plan
        .params
        .iter()
        .map(|(k, v)| {
            let shown = match v {
                Value::String(s) => Value::String(scrub(s)),
                other => serde_json::from_str(&scrub(&other.to_string())).unwrap_or(Value::Null),
            };
            (k.clone(), shown)
        })
        .collect();
    let settings: Vec<Value> = plan
        .tool
        .spec
        .settings
        .iter()
        .filter_map(|spec| {
            let value = plan.settings.get(&spec.name)?;
            let secret = spec.secret || plan.settings.secret.contains(&spec.name);
            let source = crate::settings::source_of(&plan.tool.spec, spec, cli, config);
            Some(json!({
                "name": spec.name,
                "value": if secret { "***".to_string() } else { scrub(value) },
                "secret": secret,
                "source": source.describe(),
            }))
        })
        .collect();
    let outputs = match &plan.outputs.explicit {
        Some(path) if path.as_os_str() == "-" => "stdout".to_string(),
        Some(path) => path.display().to_string(),
        None if plan.task.name == "chat" => "stdout (streamed)".to_string(),
        None => format!(
            "{}/{}.<ext> (or the first free numbered name; the extension comes with the output)",
            plan.outputs.dir.display(),
            plan.outputs.stem
        ),
    };
    if plan.json {
        let report = json!({
            "schema": crate::commands::JSON_SCHEMA,
            "dry_run": true,
            "tool": plan.tool.spec.id,
            "plugin": plan.tool.plugin,
            "version": plan.tool.version,
            "library": plan.tool.library,
            "task": plan.task.name,
            "params": params,
            "settings": settings,
            "outputs": outputs,
            "force": plan.outputs.force,
            "routing": plan.reasons,
        });
        return Ok(format!(
            "{}
",
            serde_json::to_string_pretty(&report)?
        ));
    }
    let mut out = String::from(
        "dry run: nothing was loaded or run
",
    );
    out.push_str(&format!(
        "tool:       {} (plugin {} {}, {})
",
        plan.tool.spec.id,
        plan.tool.plugin,
        plan.tool.version,
        plan.tool.library.display()
    ));
    out.push_str(&format!(
        "task:       {}
",
        plan.task.name
    ));
    out.push_str(
        "parameters:
",
    );
    for (name, value) in &params {
        out.push_str(&format!(
            "  {name} = {}
",
            crate::escape::printable(&crate::params::show_value(value))
        ));
    }
    if !settings.is_empty() {
        out.push_str(
            "settings:
",
        );
        for s in &settings {
            out.push_str(&format!(
                "  {} = {}  (from {})
",
                s["name"].as_str().unwrap_or_default(),
                crate::escape::printable(s["value"].as_str().unwrap_or_default()),
                s["source"].as_str().unwrap_or_default()
            ));
        }
    }
    out.push_str(&format!(
        "output:     {outputs}
"
    ));
    if !plan.reasons.is_empty() {
        out.push_str(
            "routing:
",
        );
        for reason in &plan.reasons {
            out.push_str(&format!(
                "  {reason}
"
            ));
        }
    }
    Ok(out)
}

/// Prints help or a dry-run report, which quote the plugin's manifest.
#[allow(clippy::print_stdout)]
fn print(text: &str) {
    print!("{}", crate::escape::printable(text));
}
