//! The `launcher` binary: parse the command line, run the command, map failures to exit codes.

mod catalog;
mod cli;
mod commands;
mod env;
mod failure;
mod home;
mod job;
mod loader;
mod output;
mod params;
mod progress;
mod registries;
mod route;
mod settings;
mod signals;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, LogsCommand, PluginCommand, RegistryCommand};
use crate::commands::Globals;
use crate::commands::registry;
use crate::failure::{Class, Failure};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() {
                Class::Usage.exit_code()
            } else {
                0
            });
        }
    };
    let globals = Globals {
        verbose: cli.verbose,
        quiet: cli.quiet,
    };
    match dispatch(&globals, cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => ExitCode::from(report(&err)),
    }
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
            commands::run::run(&globals, args.args)
        }
        Command::Chat(args) => {
            let mut globals = *globals;
            globals.verbose += args.args.iter().filter(|a| *a == "-v").count() as u8;
            globals.quiet |= args.args.iter().any(|a| a == "-q");
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
            Some(LogsCommand::Off) => commands::logs::switch(Some(false)),
            Some(LogsCommand::On) => commands::logs::switch(Some(true)),
            Some(LogsCommand::Status) => commands::logs::switch(None),
        },
        Command::Rerun(args) => {
            let mut globals = *globals;
            globals.verbose += args.args.iter().filter(|a| *a == "-v").count() as u8;
            globals.quiet |= args.args.iter().any(|a| a == "-q");
            commands::logs::rerun(&globals, &args.id, &args.args)
        }
        Command::Install(args) => match &args.path {
            Some(path) => commands::plugins::install_path(globals, path),
            None => registry::install(
                globals,
                &args.specs,
                &registry::InstallFlags {
                    registry: args.registry,
                    allow_yanked: args.allow_yanked,
                    reinstall: args.reinstall,
                    offline: args.offline,
                },
            ),
        },
        Command::Uninstall(args) => commands::plugins::uninstall(globals, &args.name),
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
        Command::Update(args) => registry::update(globals, args.name.as_deref(), args.offline),
        Command::Outdated(args) => registry::outdated(globals, args.offline, args.json),
        Command::Sync(args) => registry::sync(globals, args.offline),
        Command::Registry(args) => match args.command {
            RegistryCommand::Add {
                name,
                location,
                trust,
            } => registry::add(globals, &name, &location, &trust),
            RegistryCommand::List { json } => registry::list(json),
            RegistryCommand::Remove { name } => registry::remove(globals, &name),
            RegistryCommand::Keygen { secret, public } => {
                registry::keygen(globals, &secret, public.as_deref())
            }
        },
        Command::Publish(args) => registry::publish(
            globals,
            &args.library,
            &args.index,
            &args.key,
            args.host.as_deref(),
        ),
        Command::Yank(args) => registry::yank(globals, &args.spec, &args.index, args.undo),
        Command::Plugin {
            command: PluginCommand::New(args),
        } => commands::template::run(globals, &args),
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

/// Prints an error with its causes and hint; returns the exit code.
fn report(err: &anyhow::Error) -> u8 {
    let broken_pipe = err
        .chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
    if broken_pipe {
        // The reader of our output went away (`| head`): nothing is wrong.
        return 0;
    }
    let failure = err.chain().find_map(|e| e.downcast_ref::<Failure>());
    let class = failure.map_or(Class::Failure, |f| f.class);
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if let Some(hint) = failure.and_then(|f| f.hint.as_deref()) {
        eprintln!("\nhint: {hint}");
    }
    class.exit_code()
}
