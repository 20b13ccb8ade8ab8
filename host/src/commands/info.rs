//! `launcher info <tool>`: what a tool does, what it takes, and where its settings come from.

use anyhow::Result;
use launcher_sdk::serde_json::{self, json};

use crate::catalog::Catalog;
use crate::commands::Globals;
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
                    "source": settings::source_of(&tool.spec.id, s, &[], &config).describe(),
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

    println!("{} — {}", tool.spec.id, tool.spec.description);
    let categories: Vec<String> = tool
        .spec
        .categories()
        .iter()
        .map(|k| k.to_string())
        .collect();
    println!("  category  {}", categories.join(", "));
    println!(
        "  runs      {}",
        if tool.spec.cloud {
            "on a remote service"
        } else {
            "on this machine"
        }
    );
    println!(
        "  plugin    {} {} ({})",
        tool.plugin,
        tool.version,
        tool.library.display()
    );
    println!("  priority  {}", tool.spec.priority);
    for task in &tasks {
        println!("\ntask {}: {}", task.name, task.description);
        for p in params_of(task, &tool.spec) {
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
            println!(
                "  --{:<14} {}  [{}]",
                flag_name(&p.name),
                p.description,
                facts.join(", ")
            );
        }
    }
    if !tool.spec.settings.is_empty() {
        println!("\nsettings:");
        for s in &tool.spec.settings {
            let source = settings::source_of(&tool.spec.id, s, &[], &config);
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
            println!(
                "  {:<10} {:<24} {}{}  <- {}",
                s.name,
                env,
                s.description,
                if flags.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", flags.join(", "))
                },
                source.describe()
            );
        }
    }
    Ok(())
}
