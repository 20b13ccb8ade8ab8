//! The `launcher` binary: parse the command line, run the command, map failures to exit codes.

mod catalog;
mod cli;
mod commands;
mod env;
mod failure;
mod home;
mod loader;
mod output;
mod params;
mod route;
mod settings;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::Globals;
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
        Command::Install(args) => commands::plugins::install_path(globals, &args.path),
        Command::Uninstall(args) => commands::plugins::uninstall(globals, &args.name),
        Command::Probe(args) => probe(&args.library),
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

/// Prints an error with its causes and hint; returns the exit code.
fn report(err: &anyhow::Error) -> u8 {
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
