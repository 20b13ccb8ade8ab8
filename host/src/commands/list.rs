//! `launcher list`: the installed tools, by category.

use std::io::Write;

use anyhow::Result;
use launcher_sdk::ContentKind;
use launcher_sdk::serde_json::{self, json};

use crate::catalog::{Catalog, Tool};
use crate::commands::Globals;
use crate::escape::printable;
use crate::home::{Config, Home};
use crate::settings;

/// Lists tools, optionally only one category or task.
pub(crate) fn run(
    globals: &Globals,
    category: Option<ContentKind>,
    task: Option<&str>,
    as_json: bool,
) -> Result<()> {
    let home = Home::locate()?;
    let config = Config::load_or_warn(&home, &|w| globals.warn(w));
    // The process ends after the listing: freeing the catalog's many small strings one by one
    // would be a tenth of the time of a listing of 100 plugins.
    let catalog = std::mem::ManuallyDrop::new(Catalog::discover(&home, &config));
    globals.report_catalog(&catalog);
    let mut tools: Vec<&Tool> = catalog
        .tools
        .iter()
        .filter(|t| {
            category
                .as_ref()
                .is_none_or(|c| t.spec.categories().contains(c))
        })
        .filter(|t| task.is_none_or(|task| t.spec.task(task).is_some()))
        .collect();
    tools.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
    // Only store plugins come from registries; listing bundled ones reads no index.
    let yanked = if tools
        .iter()
        .any(|t| t.origin == crate::catalog::Origin::Store)
    {
        crate::registries::yanked_installed(&home)
    } else {
        Vec::new()
    };
    let is_yanked =
        |t: &Tool| t.origin == crate::catalog::Origin::Store && yanked.contains(&t.plugin);

    if as_json {
        let items: Vec<_> = tools
            .iter()
            .map(|t| {
                let missing: Vec<Vec<&str>> = settings::missing(&t.spec, &[], &config)
                    .iter()
                    .map(|group| group.iter().map(|s| s.name.as_str()).collect())
                    .collect();
                json!({
                    "id": t.spec.id,
                    "categories": t.spec.categories(),
                    "tasks": t.spec.tasks,
                    "plugin": t.plugin,
                    "version": t.version,
                    "ready": missing.is_empty(),
                    "missing_settings": missing,
                    "description": t.spec.description,
                    "priority": t.spec.priority,
                    "cloud": t.spec.cloud,
                    "origin": t.origin,
                    "library": t.library,
                    "yanked": is_yanked(t),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }

    if tools.is_empty() {
        let what = match (category, task) {
            (Some(c), _) => format!(" in category {c}"),
            (None, Some(t)) => format!(" for task {t}"),
            _ => String::new(),
        };
        globals.status(&format!(
            "no tools installed{what}; {}",
            crate::registries::find_more_hint("`launcher search` finds more")
        ));
        return Ok(());
    }
    let id_width = tools
        .iter()
        .map(|t| t.spec.id.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let task_width = tools
        .iter()
        .map(|t| t.spec.tasks.join(", ").len())
        .max()
        .unwrap_or(0)
        .max(5);
    let plugin_label = |t: &Tool| {
        if is_yanked(t) {
            format!("{} {} (yanked)", t.plugin, t.version)
        } else {
            format!("{} {}", t.plugin, t.version)
        }
    };
    let plugin_width = tools
        .iter()
        .map(|t| plugin_label(t).len())
        .max()
        .unwrap_or(0)
        .max(6);
    // Kinds this launcher knows first, in their order, then any a newer plugin declared.
    let mut kinds: Vec<ContentKind> = ContentKind::ALL.to_vec();
    for t in &tools {
        for kind in t.spec.categories() {
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
    }
    // One write for the whole listing, not one per line.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for kind in kinds {
        if category.as_ref().is_some_and(|c| c != &kind) {
            continue;
        }
        let in_kind: Vec<&&Tool> = tools
            .iter()
            .filter(|t| t.spec.categories().contains(&kind))
            .collect();
        if in_kind.is_empty() {
            continue;
        }
        if ContentKind::ALL.contains(&kind) {
            writeln!(out, "{}", printable(&kind.to_string()))?;
        } else {
            let line = format!("{kind} (a kind this launcher does not know)");
            writeln!(out, "{}", printable(&line))?;
        }
        for t in in_kind {
            let missing = settings::missing(&t.spec, &[], &config);
            let status = match missing.first() {
                None => "ready".to_string(),
                Some(group) => format!("not ready: {}", settings::describe_missing(group)),
            };
            let plugin = plugin_label(t);
            let line = format!(
                "  {:<id_width$}  {:<task_width$}  {:<plugin_width$}  {status}",
                t.spec.id,
                t.spec.tasks.join(", "),
                plugin,
            );
            writeln!(out, "{}", printable(&line))?;
        }
    }
    out.flush()?;
    Ok(())
}
