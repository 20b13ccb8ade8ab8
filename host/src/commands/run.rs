//! `launcher run`: plan a job from the command line, run it, show it (see [`crate::job`]).

use anyhow::Result;

use crate::catalog::Catalog;
use crate::commands::Globals;
use crate::failure::{Class, Failure};
use crate::home::{Config, Home};
use crate::job::plan::{self, Planned, ProcessInputs};
use crate::job::store::Store;
use crate::job::{exec, render};

/// Runs `launcher run` with its raw arguments.
pub(crate) fn run(globals: &Globals, raw: Vec<String>) -> Result<()> {
    let home = Home::locate()?;
    let config_path = home.config_file();
    let config = Config::load(&home)?;
    let catalog = Catalog::discover(&home, &config);
    globals.report_catalog(&catalog);
    let mut inputs = ProcessInputs {
        home: &home,
        config: &config,
    };
    match plan::plan(&raw, &catalog, &config, &config_path, &mut inputs)? {
        Planned::GeneralHelp => print(&render::general_help(&catalog)),
        Planned::Help(text) => print(&text),
        Planned::Job(plan) => {
            let play = plan.play;
            let report = exec::execute(*plan, home.data_dir(), globals)?;
            if play {
                match report.files.first() {
                    Some((path, kind)) => crate::play::play(globals, path, kind),
                    None => globals.warn("--play: the job wrote no file to play"),
                }
            }
        }
        Planned::Resume {
            id,
            json,
            cancel_remote,
        } => {
            let store = Store::open(home.data_dir())?;
            let record = match store.get(&id)? {
                Some(record) => record,
                None => {
                    // A unique prefix of an id is enough, as with git's commits.
                    let ids = store.ids_like(&id)?;
                    match ids.as_slice() {
                        [one] => store.get(one)?.expect("listed just now"),
                        [] => {
                            return Err(Failure::new(
                                Class::NotFound,
                                format!("no recorded job `{id}`"),
                            )
                            .hint("a job is recorded once its tool accepted remote work")
                            .into());
                        }
                        many => {
                            return Err(Failure::new(
                                Class::Usage,
                                format!("`{id}` names several jobs: {}", many.join(", ")),
                            )
                            .into());
                        }
                    }
                }
            };
            if !record.state.resumable() {
                return Err(Failure::new(
                    Class::InvalidInput,
                    format!(
                        "job {} is {:?} and cannot be resumed",
                        record.id, record.state
                    )
                    .to_lowercase(),
                )
                .into());
            }
            let plan =
                plan::plan_resume(record, &catalog, &config, &config_path, json, cancel_remote)?;
            exec::execute(plan, home.data_dir(), globals)?;
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print(text: &str) {
    print!("{text}");
}
