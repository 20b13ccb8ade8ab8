//! `launcher info <tool|task>`: what a tool does, what it takes, and where its settings come
//! from; or what a task does, what it takes, and which tools do it (and which would be chosen).

use anyhow::Result;
use launcher_sdk::serde_json::{self, json};
use launcher_sdk::{ParamSpec, Slot, TaskSpec};

use crate::catalog::Catalog;
use crate::commands::Globals;
use crate::escape::println_printable;
use crate::home::{Config, Home};
use crate::params::{flag_name, params_of, show_value};
use crate::route;
use crate::settings;

/// Describes one tool.
pub(crate) fn run(globals: &Globals, id: &str, as_json: bool) -> Result<()> {
    let home = Home::locate()?;
    let config = Config::load(&home)?;
    let catalog = Catalog::discover(&home, &config);
    globals.report_catalog(&catalog);
    let Some(tool) = catalog.tool(id) else {
        if route::is_task(&catalog, id) {
            return describe_task(&catalog, &config, &home.config_file(), id, as_json);
        }
        return Err(route::unknown_target(&catalog, id).into());
    };
    let tasks = route::tasks_of(tool);
    if as_json {
        let tasks: Vec<_> = tasks
            .iter()
            .map(|task| {
                json!({
                    "name": task.name,
                    "description": task.description,
                    "inputs": task.inputs,
                    "outputs": task.outputs,
                    "params": params_of(task, &tool.spec),
                })
            })
            .collect();
        let settings: Vec<_> = tool
            .spec
            .settings
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "env": s.env,
                    "required": s.required,
                    "secret": s.secret,
                    "description": s.description,
                    "source": settings::source_of(&tool.spec, s, &[], &config).describe(),
                })
            })
            .collect();
        let report = json!({
            "schema": crate::commands::JSON_SCHEMA,
            "id": tool.spec.id,
            "description": tool.spec.description,
            "categories": tool.spec.categories(),
            "cloud": tool.spec.cloud,
            "require_one_of": tool.spec.require_one_of,
            "plugin": tool.plugin,
            "version": tool.version,
            "priority": tool.spec.priority,
            "library": tool.library,
            "origin": tool.origin,
            "tasks": tasks,
            "settings": settings,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }

    println_printable!("{} — {}", tool.spec.id, tool.spec.description);
    let categories: Vec<String> = tool
        .spec
        .categories()
        .iter()
        .map(|k| k.to_string())
        .collect();
    println_printable!("  category  {}", categories.join(", "));
    println_printable!(
        "  runs      {}",
        if tool.spec.cloud {
            "on a remote service"
        } else {
            "on this machine"
        }
    );
    println_printable!(
        "  plugin    {} {} ({})",
        tool.plugin,
        tool.version,
        tool.library.display()
    );
    println_printable!("  priority  {}", tool.spec.priority);
    for task in &tasks {
        println_printable!("\ntask {}: {}", task.name, task.description);
        print_params(&params_of(task, &tool.spec));
    }
    if !tool.spec.settings.is_empty() {
        println_printable!("\nsettings:");
        print!(
            "{}",
            crate::escape::printable(&settings_table(&tool.spec, &config))
        );
    }
    Ok(())
}

/// Prints parameters, one a line, with their type, range, choices and default.
fn print_params(params: &[ParamSpec]) {
    for p in params {
        let mut facts = vec![p.ty.as_str().to_string()];
        if p.required {
            facts.push("required".into());
        }
        if let (Some(min), Some(max)) = (p.min, p.max) {
            facts.push(format!("{min}..{max}"));
        }
        if !p.choices.is_empty() {
            facts.push(format!("one of {}", p.choices.join("|")));
        }
        if let Some(d) = &p.default {
            facts.push(format!("default {}", show_value(d)));
        }
        if p.multiple {
            facts.push("repeatable".into());
        }
        println_printable!(
            "  --{:<14} {}  [{}]",
            flag_name(&p.name),
            p.description,
            facts.join(", ")
        );
    }
}

/// Describes task `name`: its slots, common parameters, and the tools that do it, with the
/// one `launcher run <task>` would choose.
fn describe_task(
    catalog: &Catalog,
    config: &Config,
    config_path: &std::path::Path,
    name: &str,
    as_json: bool,
) -> Result<()> {
    let name = launcher_sdk::standard_alias(name).unwrap_or(name);
    let tools: Vec<&crate::catalog::Tool> = catalog
        .tools
        .iter()
        .filter(|t| t.spec.tasks.iter().any(|n| n == name))
        .collect();
    let spec: Option<TaskSpec> = launcher_sdk::standard_tasks()
        .into_iter()
        .find(|t| t.name == name)
        .or_else(|| tools.first().and_then(|t| route::task_of(t, name)));
    let Some(spec) = spec else {
        return Err(route::unknown_target(catalog, name).into());
    };
    let request = route::Request {
        target: Some(name),
        tool: None,
        task: None,
        to: None,
        inputs: Vec::new(),
        cli_settings: &[],
        for_help: false,
    };
    let chosen = route::resolve(catalog, config, config_path, &request);
    let chosen_id = chosen.as_ref().ok().map(|r| r.tool.spec.id.clone());
    let why_none = chosen.as_ref().err().map(|e| e.message.clone());
    let status = |tool: &crate::catalog::Tool| -> String {
        if chosen_id.as_deref() == Some(tool.spec.id.as_str()) {
            return "chosen by `launcher run`".to_string();
        }
        match settings::missing(&tool.spec, &[], config).first() {
            Some(group) => format!("not ready: {}", settings::describe_missing(group)),
            None => "ready".to_string(),
        }
    };
    if as_json {
        let listed: Vec<_> = tools
            .iter()
            .map(|t| {
                json!({
                    "id": t.spec.id,
                    "plugin": t.plugin,
                    "cloud": t.spec.cloud,
                    "priority": t.spec.priority,
                    "chosen": chosen_id.as_deref() == Some(t.spec.id.as_str()),
                    "status": status(t),
                })
            })
            .collect();
        let report = json!({
            "task": spec.name,
            "description": spec.description,
            "inputs": spec.inputs,
            "outputs": spec.outputs,
            "params": spec.params,
            "tools": listed,
            "chosen": chosen_id,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println_printable!("task {} — {}", spec.name, spec.description);
    let slots = |slots: &[Slot]| -> String {
        if slots.is_empty() {
            return "nothing".to_string();
        }
        slots
            .iter()
            .map(|s| {
                let mut text = format!("{} ({}", s.name, s.kind);
                if !s.media_types.is_empty() {
                    text.push_str(&format!(": {}", s.media_types.join(", ")));
                }
                if s.multiple {
                    text.push_str(", several");
                }
                text.push(')');
                text
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    println_printable!("  takes     {}", slots(&spec.inputs));
    println_printable!("  makes     {}", slots(&spec.outputs));
    if !spec.params.is_empty() {
        println_printable!(
            "
parameters (every tool takes these; `launcher info <tool>` shows its own):"
        );
        print_params(&spec.params);
    }
    println_printable!(
        "
tools:"
    );
    if tools.is_empty() {
        println_printable!(
            "  none installed; {}",
            crate::registries::find_more_hint(&format!(
                "`launcher search --task {name}` finds plugins that do it"
            ))
        );
    }
    let width = tools.iter().map(|t| t.spec.id.len()).max().unwrap_or(0);
    for tool in &tools {
        println_printable!(
            "  {:<width$}  {:<8} priority {:<4} {}",
            tool.spec.id,
            if tool.spec.cloud { "cloud" } else { "offline" },
            tool.spec.priority,
            status(tool)
        );
    }
    if let (None, Some(why)) = (&chosen_id, why_none)
        && !tools.is_empty()
    {
        println_printable!(
            "
`launcher run {name}` would not run now: {why}"
        );
    }
    Ok(())
}

/// The settings of `spec`, one a line in aligned columns: name, environment variable,
/// where the value comes from, and description (required, secret). `info` and
/// `run <tool> --help` show the same table.
pub(crate) fn settings_table(spec: &launcher_sdk::ToolSpec, config: &Config) -> String {
    let rows: Vec<(String, String, String, String)> = spec
        .settings
        .iter()
        .map(|s| {
            let source = settings::source_of(spec, s, &[], config);
            let env = s
                .env
                .as_deref()
                .map(|e| format!("${e}"))
                .unwrap_or_else(|| "-".into());
            let flags: Vec<&str> = [
                s.required.then_some("required"),
                s.secret.then_some("secret"),
            ]
            .into_iter()
            .flatten()
            .collect();
            let description = if flags.is_empty() {
                s.description.clone()
            } else {
                format!("{} ({})", s.description, flags.join(", "))
            };
            let source = match source {
                settings::SettingSource::Missing => source.describe(),
                other => format!("from {}", other.describe()),
            };
            (s.name.clone(), env, description, source)
        })
        .collect();
    let name_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let env_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let source_width = rows.iter().map(|r| r.3.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(name, env, description, source)| {
            format!(
                "  {name:<name_width$}  {env:<env_width$}  {source:<source_width$}  {description}\n"
            )
        })
        .collect()
}
