//! The command line, as clap derive types; doc comments are the help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use launcher_sdk::ContentKind;

/// One command line in front of every AI content generator you use.
///
/// Exit codes: 0 ok, 1 failure (a bug in launcher or a plugin), 2 usage, 3 not found,
/// 4 tool not ready (missing setting), 5 invalid input, 6 service rejected credentials,
/// 7 rate limited, 8 service unavailable, 9 timeout, 10 output exists, 11 verification
/// failed, 130 cancelled.
#[derive(Debug, Parser)]
#[command(
    name = "launcher",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Explain what launcher does (routing, loading); -vv for more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Print nothing but results and errors.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List installed tools by category.
    List(ListArgs),
    /// Show a tool's tasks, parameters and settings.
    Info(InfoArgs),
    /// Run a job: `launcher run <tool|task> [parameters]`, or `launcher run --to <kind> ...`.
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// Install a plugin (`--path` for a library built locally).
    Install(InstallArgs),
    /// Remove an installed plugin.
    Uninstall(UninstallArgs),
    /// Validate a plugin library in this (child) process and print its manifest.
    #[command(name = "__probe", hide = true)]
    Probe(ProbeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only tools producing this kind of content.
    #[arg(long, value_name = "KIND", value_parser = parse_kind)]
    pub(crate) category: Option<ContentKind>,
    /// Only tools performing this task.
    #[arg(long, value_name = "TASK")]
    pub(crate) task: Option<String>,
    /// Print a JSON array.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// The tool id.
    pub(crate) tool: String,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The tool or task, then its parameters (see `launcher run <target> --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0.., value_name = "ARGS")]
    pub(crate) args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
    /// A plugin library built locally (liblauncher_plugin_<name>.so).
    #[arg(long, value_name = "LIBRARY")]
    pub(crate) path: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct UninstallArgs {
    /// The plugin's name.
    pub(crate) name: String,
}

#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    pub(crate) library: PathBuf,
}

fn parse_kind(s: &str) -> Result<ContentKind, String> {
    s.parse()
}
