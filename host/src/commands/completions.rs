//! `launcher completions`, `launcher man` and the hidden `launcher __complete`.
//!
//! Completion scripts are clap_complete's static ones (subcommands, options, their values),
//! and for bash, zsh and fish a small hook on top: before the static completion, the hook
//! runs `launcher __complete <words…>`, which prints what only the installed plugins know —
//! tool ids, task names, the `--parameters` of the tool or task being run, plugin names — and
//! nothing otherwise, when the static completion takes over. `__complete` reads tools the way
//! `launcher list` does (the manifest cache; a library never seen before is probed once in a
//! child process): no plugin is loaded into the completing process.
//!
//! Why not clap_complete's own dynamic engine (`CompleteEnv`): it sits behind an
//! `unstable-dynamic` feature that may change in any minor release, and its value
//! completers see one argument at a time, while a parameter of `run` depends on the target
//! before it. PowerShell gets the static script only.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;
use launcher_sdk::{ContentKind, ParamSpec};

use crate::catalog::{Catalog, Origin};
use crate::cli::Cli;
use crate::home::{Config, Home};

/// Prints the completion script for `shell`.
pub(crate) fn generate(shell: Shell) -> Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "launcher", &mut out);
    let hook = match shell {
        Shell::Bash => BASH_HOOK,
        Shell::Zsh => ZSH_HOOK,
        Shell::Fish => FISH_HOOK,
        _ => "",
    };
    out.extend_from_slice(hook.as_bytes());
    std::io::stdout().lock().write_all(&out)?;
    Ok(())
}

const BASH_HOOK: &str = r#"
# Tools, tasks and their parameters come from the installed plugins: ask launcher first.
_launcher_dynamic() {
    local cur="${COMP_WORDS[COMP_CWORD]}" found
    found="$("${COMP_WORDS[0]}" __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)"
    if [[ -n "$found" ]]; then
        local IFS=$'\n'
        COMPREPLY=($(compgen -W "$found" -- "$cur"))
        return 0
    fi
    _launcher "$@"
}
complete -F _launcher_dynamic -o bashdefault -o default launcher
"#;

const ZSH_HOOK: &str = r#"
# Tools, tasks and their parameters come from the installed plugins: ask launcher first.
_launcher_dynamic() {
    local -a found
    found=("${(@f)$(${words[1]} __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    if [[ -n "${found[1]}" ]]; then
        compadd -a found
    else
        _launcher "$@"
    fi
}
compdef _launcher_dynamic launcher
"#;

const FISH_HOOK: &str = r#"
# Tools, tasks and their parameters come from the installed plugins: ask launcher.
complete -c launcher -a '(launcher __complete (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)'
# Their arguments are tools and plugins, never files.
complete -c launcher -n '__fish_seen_subcommand_from info uninstall update' -f
"#;

/// Prints the manual page on stdout, or writes a page per command into `out`.
pub(crate) fn man(out: Option<&Path>) -> Result<()> {
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("failed to write manual pages into {}", dir.display()))
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            std::io::stdout().lock().write_all(&page)?;
            Ok(())
        }
    }
}

/// Prints the candidates for the last of `words` (the words after `launcher`), one a line.
pub(crate) fn complete(words: &[String]) -> Result<()> {
    let Some((current, before)) = words.split_last() else {
        return Ok(());
    };
    let known = || {
        let Ok(home) = Home::locate() else {
            return Known::default();
        };
        let config = Config::load(&home).unwrap_or_default();
        Known::of(&Catalog::discover(&home, &config))
    };
    let mut out = std::io::stdout().lock();
    for candidate in candidates(before, current, known) {
        writeln!(out, "{candidate}")?;
    }
    Ok(())
}

/// What completion needs to know about the installed tools.
#[derive(Debug, Default)]
struct Known {
    /// Tool id, its tasks, its parameters (its own and its tasks').
    tools: Vec<(String, Vec<String>, Vec<String>)>,
    /// Plugins in the store.
    plugins: Vec<String>,
}

impl Known {
    fn of(catalog: &Catalog) -> Known {
        let names =
            |params: &[ParamSpec]| params.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        let tools = catalog
            .tools
            .iter()
            .map(|t| {
                let mut params = names(&t.spec.params);
                for task in &t.spec.tasks {
                    if let Some(spec) = t.spec.task(task) {
                        params.extend(names(&spec.params));
                    }
                }
                (t.spec.id.clone(), t.spec.tasks.clone(), params)
            })
            .collect();
        let plugins = catalog
            .plugins
            .iter()
            .filter(|p| p.origin == Origin::Store)
            .map(|p| p.manifest.name.clone())
            .collect();
        Known { tools, plugins }
    }

    fn tasks(&self) -> Vec<String> {
        self.tools.iter().flat_map(|t| t.1.clone()).collect()
    }

    /// Returns the parameters of a tool id or a task name (of every tool performing it).
    fn params(&self, target: &str, tool: Option<&str>) -> Vec<String> {
        let mut params: Vec<String> = launcher_sdk::task_spec(target)
            .map(|t| t.params.iter().map(|p| p.name.clone()).collect())
            .unwrap_or_default();
        for (id, tasks, tool_params) in &self.tools {
            let chosen = match tool {
                Some(tool) => id == tool,
                None => id == target || tasks.iter().any(|t| t == target),
            };
            if chosen {
                params.extend(tool_params.iter().cloned());
            }
        }
        params
    }
}

/// Options of `run` and `chat` themselves (job/plan.rs); those taking a value come first.
const RUN_VALUE_OPTIONS: [&str; 9] = [
    "-o", "--output", "--tool", "--task", "--to", "--file", "--set", "--resume", "--cid",
];
const RUN_FLAG_OPTIONS: [&str; 7] = [
    "--continue",
    "--json",
    "--force",
    "--help",
    "--detach",
    "--cancel-remote",
    "--quiet",
];

/// Returns the dynamic candidates for `current` after `before`; none when static completion
/// knows better. `known` is called only when installed tools matter.
fn candidates(before: &[String], current: &str, known: impl FnOnce() -> Known) -> Vec<String> {
    // The subcommand: the first word that is neither an option nor the value of --color.
    let mut words = before
        .iter()
        .enumerate()
        .filter(|(i, w)| !w.starts_with('-') && (*i == 0 || before[i - 1] != "--color"));
    let Some((at, command)) = words.next() else {
        return Vec::new();
    };
    let rest = &before[at + 1..];
    let previous = rest.last().map(String::as_str);
    let kinds = || ContentKind::ALL.iter().map(ToString::to_string).collect();
    let mut found: Vec<String> = match (command.as_str(), previous) {
        (_, Some("--category" | "--to")) => kinds(),
        ("list" | "search" | "run" | "chat", Some("--task")) => known().tasks(),
        ("run" | "chat", Some("--tool")) => known().tools.into_iter().map(|t| t.0).collect(),
        ("run" | "chat", Some(p)) if RUN_VALUE_OPTIONS.contains(&p) => return Vec::new(),
        ("run" | "chat", _) => {
            let target = rest.iter().enumerate().find(|(i, w)| {
                !w.starts_with('-')
                    && (*i == 0 || !RUN_VALUE_OPTIONS.contains(&rest[i - 1].as_str()))
            });
            let tool = rest
                .iter()
                .position(|w| w == "--tool")
                .and_then(|i| rest.get(i + 1))
                .map(String::as_str);
            let known = known();
            match target {
                None if !current.starts_with('-') => {
                    let mut all: Vec<String> = known.tools.iter().map(|t| t.0.clone()).collect();
                    all.extend(known.tasks());
                    all
                }
                _ if !current.is_empty() && !current.starts_with('-') => Vec::new(),
                target => {
                    let mut all: Vec<String> = RUN_VALUE_OPTIONS
                        .iter()
                        .chain(&RUN_FLAG_OPTIONS)
                        .filter(|o| o.starts_with("--"))
                        .map(ToString::to_string)
                        .collect();
                    if let Some((_, target)) = target {
                        all.extend(known.params(target, tool).iter().map(|p| format!("--{p}")));
                    }
                    all
                }
            }
        }
        ("info", _) if rest.iter().all(|w| w.starts_with('-')) && !current.starts_with('-') => {
            known().tools.into_iter().map(|t| t.0).collect()
        }
        ("uninstall" | "update", _)
            if rest.iter().all(|w| w.starts_with('-')) && !current.starts_with('-') =>
        {
            known().plugins
        }
        _ => Vec::new(),
    };
    found.retain(|c| c.starts_with(current));
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Known {
        Known {
            tools: vec![
                (
                    "espeak".into(),
                    vec!["tts".into()],
                    vec!["rate".into(), "text".into()],
                ),
                ("azure-tts".into(), vec!["tts".into()], vec!["style".into()]),
                ("flux".into(), vec!["txt2img".into()], vec!["steps".into()]),
            ],
            plugins: vec!["azure".into()],
        }
    }

    fn complete(line: &[&str]) -> Vec<String> {
        let words: Vec<String> = line.iter().map(ToString::to_string).collect();
        let (current, before) = words.split_last().expect("a word to complete");
        candidates(before, current, known)
    }

    #[test]
    fn run_completes_tools_and_tasks_then_their_parameters() {
        assert_eq!(complete(&["run", "e"]), ["espeak"]);
        assert_eq!(complete(&["run", "t"]), ["tts", "txt2img"]);
        assert_eq!(
            complete(&["-v", "run", "espeak", "--r"]),
            ["--rate", "--resume"]
        );
        // A task offers the parameters of every tool performing it, unless --tool picks one.
        assert!(complete(&["run", "tts", "--"]).contains(&"--style".to_string()));
        assert!(
            !complete(&["run", "tts", "--tool", "espeak", "--"]).contains(&"--style".to_string())
        );
        assert_eq!(complete(&["run", "tts", "--tool", "a"]), ["azure-tts"]);
        assert!(complete(&["run", "-o", ""]).is_empty());
    }

    #[test]
    fn other_commands_complete_what_only_plugins_know() {
        assert_eq!(complete(&["info", "f"]), ["flux"]);
        assert_eq!(complete(&["uninstall", ""]), ["azure"]);
        assert_eq!(complete(&["list", "--task", "tx"]), ["txt2img"]);
        assert_eq!(complete(&["search", "--category", "au"]), ["audio"]);
        // Left to the static completion.
        assert!(complete(&["li"]).is_empty());
        assert!(complete(&["list", "--"]).is_empty());
    }
}
