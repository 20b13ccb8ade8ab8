//! Routing: which tool performs a job, from a tool id, a task, or an output kind.
//!
//! DESIGN.md section 3: a target is first an installed tool id, then a task (the `--tool`,
//! else the configured default, else the highest-priority ready tool); with no target, `--to`
//! picks the task whose inputs match what was given and whose output is that kind.

use launcher_sdk::{ContentKind, LISTING_TASKS, STANDARD_TASK_NAMES, TaskSpec, standard_alias};

use crate::catalog::{Catalog, Tool};
use crate::failure::{Class, Failure};
use crate::home::Config;
use crate::settings;

/// A routing decision.
#[derive(Debug)]
pub(crate) struct Route<'c> {
    pub(crate) tool: &'c Tool,
    pub(crate) task: TaskSpec,
    /// Why this tool was chosen, for `-v`.
    pub(crate) reasons: Vec<String>,
    /// Whether launcher picked the tool for a task itself (no `--tool`, no configured
    /// default), so a change of pick is worth telling.
    pub(crate) picked: bool,
}

/// Returns the tasks `tool` performs, with their specs.
pub(crate) fn tasks_of(tool: &Tool) -> Vec<TaskSpec> {
    tool.spec
        .tasks
        .iter()
        .filter_map(|name| tool.spec.task(name))
        .collect()
}

/// Returns the spec of task `name` (or an alias such as `asr`) as `tool` declares it.
pub(crate) fn task_of(tool: &Tool, name: &str) -> Option<TaskSpec> {
    tool.spec.task(name)
}

/// Returns every task name known: the standard ones and those any tool declares.
pub(crate) fn task_names(catalog: &Catalog) -> Vec<String> {
    let mut names: Vec<String> = STANDARD_TASK_NAMES.iter().map(|t| t.to_string()).collect();
    for tool in &catalog.tools {
        for task in &tool.spec.tasks {
            if !names.contains(task) {
                names.push(task.clone());
            }
        }
    }
    names
}

/// Returns whether `name` names a task: a standard one, an alias of one, or a tool's own.
pub(crate) fn is_task(catalog: &Catalog, name: &str) -> bool {
    standard_alias(name).is_some() || task_names(catalog).iter().any(|t| t == name)
}

/// What the command line asked for.
pub(crate) struct Request<'a> {
    pub(crate) target: Option<&'a str>,
    pub(crate) tool: Option<&'a str>,
    pub(crate) task: Option<&'a str>,
    pub(crate) to: Option<ContentKind>,
    /// The kinds of input given (text, files by their content type), for `--to`.
    pub(crate) inputs: Vec<ContentKind>,
    pub(crate) cli_settings: &'a [(String, String)],
    /// Only `--help` is wanted: a tool that is not ready may still be shown.
    pub(crate) for_help: bool,
}

/// Resolves a request to a tool and task.
pub(crate) fn resolve<'c>(
    catalog: &'c Catalog,
    config: &Config,
    config_path: &std::path::Path,
    req: &Request<'_>,
) -> Result<Route<'c>, Failure> {
    let mut reasons = Vec::new();
    let task_name: String = match req.target {
        Some(target) => {
            if let Some(tool) = catalog.tool(target) {
                if let Some(other) = req.tool.filter(|t| *t != target) {
                    return Err(Failure::new(
                        Class::Usage,
                        format!("`{target}` is a tool; --tool {other} contradicts it"),
                    ));
                }
                let task = pick_task_of_tool(tool, req)?;
                reasons.push(format!(
                    "`{target}` is an installed tool; task `{}`",
                    task.name
                ));
                return Ok(Route {
                    tool,
                    task,
                    reasons,
                    picked: false,
                });
            }
            if !is_task(catalog, target) {
                return Err(unknown_target(catalog, target));
            }
            let task = standard_alias(target).unwrap_or(target);
            if let Some(other) = req.task
                && standard_alias(other).unwrap_or(other) != task
            {
                return Err(Failure::new(
                    Class::Usage,
                    format!("`{target}` is a task; --task {other} contradicts it"),
                )
                .hint(format!(
                    "run `launcher run {other} ...` to do task `{other}`"
                )));
            }
            task.to_string()
        }
        None => {
            let Some(kind) = &req.to else {
                return Err(Failure::new(
                    Class::Usage,
                    "name a tool or a task to run, or give --to <kind>",
                )
                .hint("`launcher list` shows what is installed"));
            };
            let task = task_for_inputs(catalog, kind, &req.inputs)?;
            reasons.push(format!(
                "--to {kind} with {} input: task `{task}`",
                describe_inputs(&req.inputs)
            ));
            task
        }
    };

    let candidates: Vec<&Tool> = catalog
        .tools
        .iter()
        .filter(|t| t.spec.tasks.contains(&task_name))
        .collect();
    if candidates.is_empty() {
        return Err(Failure::new(
            Class::NotFound,
            format!("no installed tool performs task `{task_name}`"),
        )
        .hint(crate::registries::find_more_hint(
            "`launcher search` finds plugins that do",
        )));
    }
    // A task of a tool's own is scoped to that tool: when several tools declare one of the
    // same name, their shapes may differ, so the user names the tool.
    let custom = standard_alias(&task_name).is_none();
    if custom && candidates.len() > 1 && req.tool.is_none() {
        let ids: Vec<&str> = candidates.iter().map(|t| t.spec.id.as_str()).collect();
        return Err(Failure::new(
            Class::Usage,
            format!(
                "`{task_name}` is a task of several tools' own ({}); name the one to run",
                ids.join(", ")
            ),
        )
        .hint(format!("launcher run {} ...", ids[0])));
    }
    let picked = req.tool.is_none() && !config.defaults.contains_key(&task_name);
    let chosen: &Tool = if let Some(id) = req.tool {
        let Some(tool) = candidates.iter().find(|t| t.spec.id == id) else {
            let ids: Vec<&str> = candidates.iter().map(|t| t.spec.id.as_str()).collect();
            return Err(if catalog.tool(id).is_some() {
                Failure::new(
                    Class::NotFound,
                    format!("tool `{id}` does not perform task `{task_name}`"),
                )
            } else {
                unknown_target(catalog, id)
            }
            .hint(format!("tools for `{task_name}`: {}", ids.join(", "))));
        };
        reasons.push(format!("--tool {id}"));
        tool
    } else if let Some(id) = config.defaults.get(&task_name) {
        let Some(tool) = candidates.iter().find(|t| &t.spec.id == id) else {
            return Err(Failure::new(
                Class::NotFound,
                format!(
                    "the default tool for `{task_name}` in {} is `{id}`, which is not installed or does not perform it",
                    config_path.display()
                ),
            ));
        };
        reasons.push(format!(
            "`{id}` is the configured default for `{task_name}`"
        ));
        tool
    } else {
        let mut ranked = candidates.clone();
        // Offline tools before cloud ones (a paid service never becomes the default just
        // because its key is in the environment), then priority; discovery order breaks ties,
        // so the choice is stable.
        ranked.sort_by(|a, b| {
            a.spec
                .cloud
                .cmp(&b.spec.cloud)
                .then(b.spec.priority.cmp(&a.spec.priority))
                .then(a.rank.cmp(&b.rank))
        });
        let mut chosen = None;
        for tool in &ranked {
            let missing = settings::missing(&tool.spec, req.cli_settings, config);
            match missing.first() {
                Some(group) => reasons.push(format!(
                    "passed over `{}` ({}, priority {}): not ready, {}",
                    tool.spec.id,
                    locality(tool),
                    tool.spec.priority,
                    settings::describe_missing(group)
                )),
                None if chosen.is_none() => chosen = Some(*tool),
                None => reasons.push(format!(
                    "passed over `{}` ({}, priority {}): `{}` comes first",
                    tool.spec.id,
                    locality(tool),
                    tool.spec.priority,
                    chosen.map(|t| t.spec.id.as_str()).unwrap_or_default()
                )),
            }
        }
        // For `--help`, the tool that would run if it were set up is worth showing too.
        let Some(tool) = chosen.or(ranked.first().copied().filter(|_| req.for_help)) else {
            let best = ranked[0];
            let group = settings::missing(&best.spec, req.cli_settings, config)
                .into_iter()
                .next()
                .unwrap_or_default();
            let mut failure = settings::not_ready(&best.spec.id, &group, config_path);
            // The first tool is only the first of several that could do it once set up.
            if let [_, others @ ..] = ranked.as_slice()
                && !others.is_empty()
            {
                let others: Vec<String> = others
                    .iter()
                    .map(|tool| {
                        let needs = settings::missing(&tool.spec, req.cli_settings, config)
                            .first()
                            .map(|group| settings::describe_missing(group))
                            .unwrap_or_default();
                        format!("`{}` ({needs})", tool.spec.id)
                    })
                    .collect();
                if let Some((_, what)) = failure.message.split_once(" is not ready: ") {
                    failure.message = format!(
                        "no tool for `{task_name}` is ready; first in line is `{}`: {what}",
                        best.spec.id
                    );
                }
                let hint = failure.hint.take().unwrap_or_default();
                failure = failure.hint(format!(
                    "{hint}\nother tools for `{task_name}`: {}",
                    others.join(", ")
                ));
            }
            return Err(failure);
        };
        reasons.push(format!(
            "chose `{}` for `{task_name}`: the first ready tool, {} with priority {} (offline tools come before cloud tools, then higher priority; set `[defaults] {task_name} = \"...\"` in config.toml to choose)",
            tool.spec.id,
            locality(tool),
            tool.spec.priority
        ));
        tool
    };
    let task = task_of(chosen, &task_name).ok_or_else(|| {
        Failure::new(
            Class::Failure,
            format!(
                "tool `{}` names task `{task_name}` without declaring it",
                chosen.spec.id
            ),
        )
    })?;
    Ok(Route {
        tool: chosen,
        task,
        reasons,
        picked,
    })
}

fn locality(tool: &Tool) -> &'static str {
    if tool.spec.cloud { "cloud" } else { "offline" }
}

fn pick_task_of_tool(tool: &Tool, req: &Request<'_>) -> Result<TaskSpec, Failure> {
    let tasks = tasks_of(tool);
    if let Some(name) = req.task {
        return tasks.into_iter().find(|t| t.name == name).ok_or_else(|| {
            Failure::new(
                Class::NotFound,
                format!("tool `{}` does not perform task `{name}`", tool.spec.id),
            )
            .hint(format!("its tasks: {}", tool.spec.tasks.join(", ")))
        });
    }
    if let Some(kind) = &req.to {
        return tasks
            .into_iter()
            .find(|t| t.output_kind().as_ref() == Some(kind))
            .ok_or_else(|| {
                Failure::new(
                    Class::NotFound,
                    format!("tool `{}` produces no {kind}", tool.spec.id),
                )
            });
    }
    tasks.into_iter().next().ok_or_else(|| {
        Failure::new(
            Class::Failure,
            format!("tool `{}` declares no usable task", tool.spec.id),
        )
    })
}

fn describe_inputs(inputs: &[ContentKind]) -> String {
    if inputs.is_empty() {
        return "no".to_string();
    }
    inputs
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Returns the task producing `kind` whose inputs are exactly the kinds given.
///
/// Standard tasks are tried in their fixed order (`chat` before `complete`, `txt2img` before
/// `img2img`...), then the tasks tools declare of their own; the first one an installed tool
/// performs wins. The listing tasks (`voices`, `models`) are never chosen this way.
fn task_for_inputs(
    catalog: &Catalog,
    kind: &ContentKind,
    given: &[ContentKind],
) -> Result<String, Failure> {
    let mut given: Vec<ContentKind> = given.to_vec();
    given.sort();
    given.dedup();
    let mut tasks: Vec<TaskSpec> = launcher_sdk::standard_tasks();
    for tool in &catalog.tools {
        for custom in &tool.spec.custom_tasks {
            if !tasks.iter().any(|t| t.name == custom.name) {
                tasks.push(custom.clone());
            }
        }
    }
    tasks.retain(|t| !LISTING_TASKS.contains(&t.name.as_str()));
    let installed = |t: &TaskSpec| {
        catalog
            .tools
            .iter()
            .any(|tool| tool.spec.tasks.contains(&t.name))
    };
    let input_kinds = |t: &TaskSpec| {
        let mut inputs: Vec<ContentKind> = t.inputs.iter().map(|s| s.kind.clone()).collect();
        inputs.sort();
        inputs.dedup();
        inputs
    };
    let matching: Vec<&TaskSpec> = tasks
        .iter()
        .filter(|t| t.output_kind().as_ref() == Some(kind))
        .filter(|t| input_kinds(t) == given)
        .collect();
    if let Some(task) = matching.iter().find(|t| installed(t)) {
        return Ok(task.name.clone());
    }
    if let Some(task) = matching.first() {
        return Err(Failure::new(
            Class::NotFound,
            format!("no installed tool performs task `{}`", task.name),
        )
        .hint(crate::registries::find_more_hint(
            "`launcher search` finds plugins that do",
        )));
    }
    let producing: Vec<String> = tasks
        .iter()
        .filter(|t| t.output_kind().as_ref() == Some(kind))
        .map(|t| format!("{} ({})", t.name, describe_inputs(&input_kinds(t))))
        .collect();
    Err(Failure::new(
        Class::InvalidInput,
        format!(
            "no task makes {kind} from {} input",
            describe_inputs(&given)
        ),
    )
    .hint(format!("tasks that make {kind}: {}", producing.join(", "))))
}

/// Returns the not-found failure for `target`, naming close matches.
pub(crate) fn unknown_target(catalog: &Catalog, target: &str) -> Failure {
    let mut names: Vec<String> = catalog.tools.iter().map(|t| t.spec.id.clone()).collect();
    names.extend(task_names(catalog));
    let mut close: Vec<(f64, String)> = names
        .into_iter()
        .map(|n| (strsim::jaro_winkler(target, &n), n))
        .filter(|(score, _)| *score > 0.75)
        .collect();
    close.sort_by(|a, b| b.0.total_cmp(&a.0));
    close.dedup_by(|a, b| a.1 == b.1);
    let failure = Failure::new(Class::NotFound, format!("no tool or task named `{target}`"));
    if close.is_empty() {
        let tools: Vec<&str> = catalog.tools.iter().map(|t| t.spec.id.as_str()).collect();
        failure.hint(if tools.is_empty() {
            format!(
                "no tools are installed; {}",
                crate::registries::find_more_hint("`launcher search` finds plugins to install")
            )
        } else {
            format!("installed tools: {}", tools.join(", "))
        })
    } else {
        let names: Vec<String> = close
            .into_iter()
            .take(3)
            .map(|(_, n)| format!("`{n}`"))
            .collect();
        failure.hint(format!("did you mean {}?", names.join(" or ")))
    }
}
