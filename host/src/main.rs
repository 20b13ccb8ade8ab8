//! The `launcher` binary: parse the command line, run the command, map failures to exit codes.

mod catalog;
mod cli;
mod commands;
mod env;
mod escape;
mod failure;
mod home;
mod job;
mod keys;
mod loader;
mod output;
mod owners;
mod params;
mod play;
mod progress;
mod registries;
mod route;
mod settings;
mod signals;
mod style;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{
    CacheCommand, Cli, Command, JobsCommand, LogsCommand, PluginCommand, RegistryCommand,
};
use crate::commands::Globals;
use crate::commands::registry;
use crate::failure::Class;

fn main() -> ExitCode {
    // Before parsing, so clap's own errors and help follow --color too.
    let color = style::from_args(std::env::args_os());
    style::init(color);
    let parsed = Cli::command()
        .color(style::for_clap(color))
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => return ExitCode::from(report_usage(&err)),
    };
    let globals = Globals {
        verbose: cli.verbose,
        quiet: cli.quiet,
    };
    let json = cli.command.wants_json();
    match dispatch(&globals, cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => ExitCode::from(report(&err, json)),
    }
}

/// Prints clap's error (or help, or version); returns the exit code. A usage error of a
/// command line asking for `--json` is a JSON error document like any other.
fn report_usage(err: &clap::Error) -> u8 {
    if !err.use_stderr() {
        let _ = err.print();
        return 0;
    }
    if std::env::args_os()
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
    {
        let report = failure::Report::of_usage(err);
        eprintln!("{}", report.json());
    } else {
        let _ = err.print();
    }
    Class::Usage.exit_code()
}

fn dispatch(globals: &Globals, command: Command) -> anyhow::Result<()> {
    match command {
        Command::List(args) => {
            commands::list::run(globals, args.category, args.task.as_deref(), args.json)
        }
        Command::Info(args) => commands::info::run(globals, &args.tool, args.json),
        Command::Run(args) => {
            let mut globals = *globals;
            // -v and -q after the target land among run's own arguments.
            globals.verbose += args.args.iter().filter(|a| *a == "-v").count() as u8;
            globals.quiet |= args.args.iter().any(|a| a == "-q");
            globals.check()?;
            commands::run::run(&globals, args.args)
        }
        Command::Chat(args) => {
            let mut globals = *globals;
            globals.verbose += args.args.iter().filter(|a| *a == "-v").count() as u8;
            globals.quiet |= args.args.iter().any(|a| a == "-q");
            globals.check()?;
            commands::chat::run(&globals, args.args)
        }
        Command::Conversations(args) => {
            commands::chat::conversations(args.id.as_deref(), args.limit, args.json)
        }
        Command::Logs(args) => match args.command {
            None => commands::logs::list(commands::logs::ListArgs {
                limit: args.limit,
                tool: args.tool,
                task: args.task,
                since: args.since,
                search: args.search,
                json: args.json,
            }),
            Some(LogsCommand::Show { id, json }) => commands::logs::show(&id, json),
            Some(LogsCommand::Off { json }) => commands::logs::switch(Some(false), json),
            Some(LogsCommand::On { json }) => commands::logs::switch(Some(true), json),
            Some(LogsCommand::Status { json }) => commands::logs::switch(None, json),
        },
        Command::Jobs(args) => match args.command {
            None => commands::jobs::list(args.all, args.limit, args.json),
            Some(JobsCommand::Wait { ids, json }) => commands::jobs::wait(globals, &ids, json),
            Some(JobsCommand::Cancel { id, json }) => commands::jobs::cancel(globals, &id, json),
            Some(JobsCommand::Resume { json }) => commands::jobs::resume(globals, json),
        },
        Command::Rerun(args) => {
            let mut globals = *globals;
            globals.verbose += args.args.iter().filter(|a| *a == "-v").count() as u8;
            globals.quiet |= args.args.iter().any(|a| a == "-q");
            commands::logs::rerun(&globals, &args.id, &args.args)
        }
        Command::Install(args) => match &args.path {
            Some(path) => commands::plugins::install_path(globals, path, args.replace, args.json),
            None => registry::install(
                globals,
                &args.specs,
                &registry::InstallFlags {
                    registry: args.registry,
                    allow_yanked: args.allow_yanked,
                    reinstall: args.reinstall,
                    replace: args.replace,
                    allow_downgrade: args.allow_downgrade,
                    offline: args.offline,
                    json: args.json,
                },
            ),
        },
        Command::Uninstall(args) => commands::plugins::uninstall(globals, &args.name, args.json),
        Command::Search(args) => registry::search(
            globals,
            launcher_registry::SearchQuery {
                text: args.query,
                category: args.category.map(|c| c.to_string()),
                task: args.task,
            },
            args.offline,
            args.json,
        ),
        Command::Update(args) => {
            registry::update(globals, args.name.as_deref(), args.offline, args.json)
        }
        Command::Outdated(args) => registry::outdated(globals, args.offline, args.json),
        Command::Sync(args) => registry::sync(
            globals,
            args.lockfile.as_deref(),
            args.allow_downgrade,
            args.offline,
            args.json,
        ),
        Command::Registry(args) => match args.command {
            RegistryCommand::Add {
                name,
                location,
                trust,
                json,
            } => registry::add(globals, &name, &location, &trust, json),
            RegistryCommand::List { json } => registry::list(json),
            RegistryCommand::Remove { name, json } => registry::remove(globals, &name, json),
            RegistryCommand::Keygen { secret, public } => {
                registry::keygen(globals, &secret, public.as_deref())
            }
            RegistryCommand::RefreshSignature { index, key, expiry } => {
                registry::refresh_signature(globals, &index, &key, &expiry.expires)
            }
        },
        Command::Cache {
            command: CacheCommand::Clean { json },
        } => registry::clean_cache(globals, json),
        Command::Publish(args) => registry::publish(
            globals,
            &args.library,
            &args.index,
            &args.key,
            args.host.as_deref(),
            &args.expiry.expires,
        ),
        Command::Yank(args) => registry::yank(
            globals,
            &args.spec,
            &args.index,
            args.key.as_deref(),
            args.undo,
            &args.expiry.expires,
        ),
        Command::Plugin {
            command: PluginCommand::New(args),
        } => commands::template::run(globals, &args),
        Command::Config(args) => commands::config::run(globals, args.command),
        Command::Default(args) => commands::config::default(globals, &args),
        Command::Keys(args) => commands::keys::run(globals, args.command),
        Command::Completions(args) => commands::completions::generate(args.shell),
        Command::Complete(args) => commands::completions::complete(&args.words),
        Command::Man(args) => commands::completions::man(args.out.as_deref()),
        Command::Version(args) => commands::version(args.json),
        Command::Probe(args) => probe(&args.library),
        Command::Describe(args) => describe(&args.library),
    }
}

/// The child side of plugin validation: print the manifest, or the reason on stderr.
fn probe(library: &std::path::Path) -> anyhow::Result<()> {
    match loader::read_manifest_in_process(library) {
        Ok(manifest) => {
            println!("{}", launcher_sdk::serde_json::to_string(&manifest)?);
            Ok(())
        }
        Err(reason) => {
            eprintln!("{reason}");
            std::process::exit(loader::PROBE_REFUSED);
        }
    }
}

/// The child side of describing configured tools: the request on stdin, the tools on stdout.
fn describe(library: &std::path::Path) -> anyhow::Result<()> {
    let mut request = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut request)?;
    match loader::describe_in_process(library, &request) {
        Ok(json) => {
            std::io::Write::write_all(&mut std::io::stdout(), &json)?;
            Ok(())
        }
        Err(reason) => {
            eprintln!("{reason}");
            std::process::exit(loader::PROBE_REFUSED);
        }
    }
}

/// Prints an error with its causes and hint, as JSON with `--json`; returns the exit code.
fn report(err: &anyhow::Error, json: bool) -> u8 {
    let broken_pipe = err
        .chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
    if broken_pipe {
        // The reader of our output went away (`| head`): nothing is wrong.
        return 0;
    }
    let report = failure::Report::of(err);
    if json {
        eprintln!("{}", report.json());
    } else {
        anstream::eprint!("{}", report.text());
    }
    report.class.exit_code()
}
