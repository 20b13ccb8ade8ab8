//! The command line, as clap derive types; doc comments are the help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use launcher_sdk::ContentKind;

/// One command line in front of every AI content generator you use.
///
/// Exit codes: 0 ok, 1 failure (a bug in launcher or a plugin), 2 usage, 3 not found,
/// 4 tool not ready (missing setting), 5 invalid input, 6 service rejected credentials,
/// 7 rate limited, 8 service unavailable, 9 timeout, 10 output exists, 11 verification
/// failed, 12 detached (a remote job goes on; `launcher jobs wait ID` picks it up),
/// 13 output cannot be written, 14 registry stale or downgrade refused, 130 cancelled by
/// Ctrl-C, 143 by SIGTERM, 129 by SIGHUP.
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
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// Color errors, warnings and hints: auto (on a terminal, unless NO_COLOR), always, never.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub(crate) color: crate::style::ColorChoice,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List installed tools by category.
    List(ListArgs),
    /// Show a tool's tasks, parameters and settings, or a task's slots, parameters and tools.
    Info(InfoArgs),
    /// Run a job: `launcher run <tool|task> [parameters]`, or `launcher run --to <kind> ...`.
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// Chat interactively: each line is a `chat` job continuing one conversation.
    #[command(disable_help_flag = true)]
    Chat(RunArgs),
    /// List the kept chat conversations, or show one.
    Conversations(ConversationsArgs),
    /// Show the history of jobs, newest first; `logs show ID`, `logs off|on|status`.
    Logs(LogsArgs),
    /// List running and recent remote jobs; `jobs wait ID`, `jobs cancel ID`, `jobs resume`.
    Jobs(JobsArgs),
    /// Run a recorded job again: `launcher rerun ID [--param value ...]`.
    Rerun(RerunArgs),
    /// Find plugins in the configured registries.
    Search(SearchArgs),
    /// Install plugins from a registry (`name`, `name@^1.2`), or a library built locally (`--path`).
    Install(InstallArgs),
    /// Remove an installed plugin.
    Uninstall(UninstallArgs),
    /// Update installed plugins to the newest version their requirement allows.
    Update(UpdateArgs),
    /// Show installed plugins that have newer versions.
    Outdated(OutdatedArgs),
    /// Install exactly what the lockfile records (on a new machine, after an upgrade).
    Sync(SyncArgs),
    /// Manage the registries plugins are installed from.
    Registry(RegistryArgs),
    /// Pack, sign and add a built plugin to a registry directory.
    Publish(PublishArgs),
    /// Mark a published version as yanked (or not, with --undo) in a registry directory.
    Yank(YankArgs),
    /// Manage the download cache: `cache clean` empties it.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Write plugins: `plugin new <name>` creates a crate that builds, tests and installs.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Read and change config.toml, keeping its comments; `config path` shows where files are.
    Config(crate::commands::config::ConfigArgs),
    /// Show or set the tool used for a task: `launcher default tts espeak`.
    Default(crate::commands::config::DefaultArgs),
    /// Store the secrets tools need (API keys) in a file private to you.
    Keys(crate::commands::keys::KeysArgs),
    /// Print a shell completion script: `eval "$(launcher completions bash)"`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one per command into a directory.
    Man(ManArgs),
    /// Print launcher's version and the version of its JSON documents.
    Version(VersionArgs),
    /// Print completion candidates for a partial command line (called by completion scripts).
    #[command(name = "__complete", hide = true)]
    Complete(CompleteArgs),
    /// Validate a plugin library in this (child) process and print its manifest.
    #[command(name = "__probe", hide = true)]
    Probe(ProbeArgs),
    /// Ask a plugin library in this (child) process to describe its configured tools.
    #[command(name = "__describe", hide = true)]
    Describe(ProbeArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Remove the cached index files and archives (installed plugins are not touched).
    Clean {
        /// Print what was removed as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Create a plugin crate whose one tool performs a standard task of the kind asked for.
    New(crate::commands::template::PluginNewArgs),
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
    /// The tool id or task name.
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
pub(crate) struct ConversationsArgs {
    /// A conversation to show (any unique prefix of its id); all of them when absent.
    pub(crate) id: Option<String>,
    /// How many to list, newest first.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub(crate) limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    #[command(subcommand)]
    pub(crate) command: Option<LogsCommand>,
    /// How many jobs to list, newest first.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub(crate) limit: usize,
    /// Only jobs of this tool.
    #[arg(long, value_name = "ID")]
    pub(crate) tool: Option<String>,
    /// Only jobs of this task.
    #[arg(long, value_name = "TASK")]
    pub(crate) task: Option<String>,
    /// Only jobs started since: an age (30m, 1h, 2d, 1w) or an RFC 3339 date or time.
    #[arg(long, value_name = "WHEN")]
    pub(crate) since: Option<String>,
    /// Only jobs whose input text holds all these words (full-text search).
    #[arg(short, long, value_name = "WORDS")]
    pub(crate) search: Option<String>,
    /// Print a JSON array.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct JobsArgs {
    #[command(subcommand)]
    pub(crate) command: Option<JobsCommand>,
    /// List every recorded job, not only unfinished ones and those of the last day.
    #[arg(long)]
    pub(crate) all: bool,
    /// How many jobs to list, newest first.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub(crate) limit: usize,
    /// Print a JSON array.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// Follow jobs to the end and write their outputs (any unique prefix of an id); a job
    /// another launcher runs is waited for.
    Wait {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        /// Print a JSON array of what became of each job.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job's remote task and mark the job cancelled.
    Cancel {
        id: String,
        /// Print a JSON array of what became of the job.
        #[arg(long)]
        json: bool,
    },
    /// Pick up every job a killed or closed launcher left unfinished (interrupted or detached).
    Resume {
        /// Print a JSON array of what became of each job.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum LogsCommand {
    /// Show one job in full (any unique prefix of its id).
    Show {
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop recording jobs.
    Off {
        /// Print whether jobs are recorded, where, and how many are, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record jobs again.
    On {
        /// Print whether jobs are recorded, where, and how many are, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Say whether jobs are recorded, where, and how many are.
    Status {
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct RerunArgs {
    /// The job (any unique prefix of its id; `launcher logs` lists them).
    pub(crate) id: String,
    /// Changes: `--name value` for a parameter; `-o FILE`, `--force`, `--json`, `--set NAME=VALUE`, `--yes`, `--detach`, `--play`, `--cancel-remote`, `--dry-run` as in `run`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0.., value_name = "CHANGES")]
    pub(crate) args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
    /// Plugins to install: `name` (the newest stable version) or `name@<semver requirement>`.
    #[arg(
        value_name = "NAME[@REQ]",
        required_unless_present = "path",
        conflicts_with = "path"
    )]
    pub(crate) specs: Vec<String>,
    /// A plugin library built locally (`liblauncher_plugin_<name>.so`) instead.
    #[arg(long, value_name = "LIBRARY")]
    pub(crate) path: Option<PathBuf>,
    /// Install from this registry only.
    #[arg(long, value_name = "NAME")]
    pub(crate) registry: Option<String>,
    /// Allow versions the publisher yanked.
    #[arg(long)]
    pub(crate) allow_yanked: bool,
    /// Install again even if that version is installed and intact.
    #[arg(long)]
    pub(crate) reinstall: bool,
    /// Install a plugin that declares tool ids another plugin provides, in its place. The
    /// settings configured for those tools stay with the replaced plugin until
    /// `launcher keys bind <tool>`.
    #[arg(long)]
    pub(crate) replace: bool,
    /// Allow installing a version older than the installed one.
    #[arg(long)]
    pub(crate) allow_downgrade: bool,
    /// Use only the cached index and archives; fetch nothing.
    #[arg(long)]
    pub(crate) offline: bool,
    /// Print what was installed as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// Words to look for in names and descriptions.
    pub(crate) query: Option<String>,
    /// Only plugins making this kind of content.
    #[arg(long, value_name = "KIND", value_parser = parse_kind)]
    pub(crate) category: Option<ContentKind>,
    /// Only plugins performing this task.
    #[arg(long, value_name = "TASK")]
    pub(crate) task: Option<String>,
    /// Use only the cached index.
    #[arg(long)]
    pub(crate) offline: bool,
    /// Print a JSON array.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The plugin to update; all plugins installed from registries when absent.
    pub(crate) name: Option<String>,
    /// Use only the cached index.
    #[arg(long)]
    pub(crate) offline: bool,
    /// Print what was updated as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct OutdatedArgs {
    /// Use only the cached index.
    #[arg(long)]
    pub(crate) offline: bool,
    /// Print a JSON array.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SyncArgs {
    /// Install what this lockfile (another machine's `plugins.lock`) records, instead of this
    /// home's; says which registries and keys must be configured first.
    #[arg(long, value_name = "FILE")]
    pub(crate) lockfile: Option<PathBuf>,
    /// Allow installing versions older than the installed ones.
    #[arg(long)]
    pub(crate) allow_downgrade: bool,
    /// Use only the cached index and archives.
    #[arg(long)]
    pub(crate) offline: bool,
    /// Print what was installed as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RegistryArgs {
    #[command(subcommand)]
    pub(crate) command: RegistryCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RegistryCommand {
    /// Add (or replace) a registry: a directory, a `file://` URL or an `http(s)://` URL.
    Add {
        /// The name to call it by.
        name: String,
        /// Where its index is.
        location: String,
        /// A minisign public key (or a `.pub` file) trusted to sign its plugins; repeatable.
        #[arg(long, value_name = "KEY", required = true)]
        trust: Vec<String>,
        /// Print the registry as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the configured registries.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a registry (installed plugins stay).
    Remove {
        /// Its name.
        name: String,
        /// Print what was removed as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-sign a registry directory's freshness statement (when it expired, or to give an older
    /// registry one).
    RefreshSignature {
        /// The registry directory.
        #[arg(long, value_name = "DIR")]
        index: PathBuf,
        /// The minisign secret key its plugins are signed with.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[command(flatten)]
        expiry: ExpiryArgs,
    },
    /// Make a minisign key pair for publishing (encrypted with $LAUNCHER_KEY_PASSWORD if set).
    Keygen {
        /// Where to write the secret key.
        secret: PathBuf,
        /// Where to write the public key (default: the secret key's path with `.pub`).
        #[arg(long)]
        public: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The built plugin library; a README and LICENSE beside it are packed too.
    pub(crate) library: PathBuf,
    /// The registry directory to add it to (created if new).
    #[arg(long, value_name = "DIR")]
    pub(crate) index: PathBuf,
    /// The minisign secret key to sign with ($LAUNCHER_KEY_PASSWORD if it is encrypted).
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    /// The launcher versions the plugin works with (a semver requirement; default any).
    #[arg(long, value_name = "REQ")]
    pub(crate) host: Option<String>,
    #[command(flatten)]
    pub(crate) expiry: ExpiryArgs,
}

/// How long a registry's signed freshness statement stays valid.
#[derive(Debug, Args)]
pub(crate) struct ExpiryArgs {
    /// Days until the registry's freshness statement expires and must be re-signed, or
    /// `never` (accepted only from local registries).
    #[arg(long, value_name = "DAYS|never", default_value = "30")]
    pub(crate) expires: String,
}

#[derive(Debug, Args)]
pub(crate) struct YankArgs {
    /// The version to yank, as `name@version`.
    pub(crate) spec: String,
    /// The registry directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) index: PathBuf,
    /// The minisign secret key, to re-sign the registry's freshness statement (needed when it
    /// has one).
    #[arg(long, value_name = "FILE")]
    pub(crate) key: Option<PathBuf>,
    /// Unyank instead.
    #[arg(long)]
    pub(crate) undo: bool,
    #[command(flatten)]
    pub(crate) expiry: ExpiryArgs,
}

#[derive(Debug, Args)]
pub(crate) struct UninstallArgs {
    /// The plugin's name.
    pub(crate) name: String,
    /// Print what was removed as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    pub(crate) library: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Write `launcher.1` and a page per command (`launcher-run.1`, …) into this directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct VersionArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CompleteArgs {
    /// The words after `launcher`, the last being the one to complete (maybe empty).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub(crate) words: Vec<String>,
}

impl Command {
    /// Returns whether the command line asks for JSON, so errors are JSON too.
    pub(crate) fn wants_json(&self) -> bool {
        match self {
            Command::List(a) => a.json,
            Command::Info(a) => a.json,
            Command::Run(a) | Command::Chat(a) => a
                .args
                .iter()
                .take_while(|a| *a != "--")
                .any(|a| a == "--json"),
            Command::Conversations(a) => a.json,
            Command::Search(a) => a.json,
            Command::Install(a) => a.json,
            Command::Uninstall(a) => a.json,
            Command::Update(a) => a.json,
            Command::Outdated(a) => a.json,
            Command::Sync(a) => a.json,
            Command::Registry(a) => match &a.command {
                RegistryCommand::Add { json, .. }
                | RegistryCommand::List { json }
                | RegistryCommand::Remove { json, .. } => *json,
                RegistryCommand::Keygen { .. } | RegistryCommand::RefreshSignature { .. } => false,
            },
            Command::Cache {
                command: CacheCommand::Clean { json },
            } => *json,
            Command::Version(a) => a.json,
            Command::Rerun(a) => a.args.iter().any(|a| a == "--json"),
            Command::Logs(a) => match &a.command {
                None => a.json,
                Some(
                    LogsCommand::Show { json, .. }
                    | LogsCommand::Off { json }
                    | LogsCommand::On { json }
                    | LogsCommand::Status { json },
                ) => *json,
            },
            Command::Jobs(a) => match &a.command {
                None => a.json,
                Some(
                    JobsCommand::Wait { json, .. }
                    | JobsCommand::Cancel { json, .. }
                    | JobsCommand::Resume { json },
                ) => *json,
            },
            Command::Config(a) => a.command.wants_json(),
            Command::Default(a) => a.json,
            Command::Keys(a) => a.command.wants_json(),
            _ => false,
        }
    }
}

fn parse_kind(s: &str) -> Result<ContentKind, String> {
    s.parse()
}
