//! `--play`: playing the audio a job wrote, or opening its image or video, with what the system
//! has. `LAUNCHER_PLAYER` (a command, the file appended) overrides the choice.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use launcher_sdk::ContentKind;

use crate::commands::Globals;
use crate::env;

/// Players by kind, the first found on `PATH` wins; each with the arguments before the file.
fn candidates(kind: &ContentKind) -> &'static [(&'static str, &'static [&'static str])] {
    match kind {
        ContentKind::Audio => &[
            ("ffplay", &["-nodisp", "-autoexit", "-loglevel", "error"]),
            ("paplay", &[]),
            ("aplay", &["-q"]),
            ("afplay", &[]),
            ("xdg-open", &[]),
            ("open", &[]),
        ],
        ContentKind::Video => &[
            ("ffplay", &["-autoexit", "-loglevel", "error"]),
            ("xdg-open", &[]),
            ("open", &[]),
        ],
        _ => &[("xdg-open", &[]), ("open", &[])],
    }
}

/// Plays or opens `path`. A player that is missing or fails is a warning: the job's output is
/// written either way.
pub(crate) fn play(globals: &Globals, path: &Path, kind: &ContentKind) {
    let (program, args): (PathBuf, Vec<String>) = match env::var(env::PLAYER) {
        Some(command) => {
            let mut words = command.split_whitespace().map(str::to_string);
            let Some(program) = words.next() else {
                return;
            };
            (PathBuf::from(program), words.collect())
        }
        None => {
            let found = candidates(kind)
                .iter()
                .find_map(|(name, args)| Some((on_path(name)?, args)));
            match found {
                Some((program, args)) => (program, args.iter().map(|a| a.to_string()).collect()),
                None => {
                    globals.warn(&format!(
                        "--play found nothing to play {kind} with (install ffmpeg for ffplay, or set LAUNCHER_PLAYER)"
                    ));
                    return;
                }
            }
        }
    };
    globals.info(&format!(
        "playing {} with {}",
        path.display(),
        program.display()
    ));
    let status = Command::new(&program)
        .args(&args)
        .arg(path)
        .stdin(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => globals.warn(&format!("{} ended with {status}", program.display())),
        Err(err) => globals.warn(&format!("cannot run {}: {err}", program.display())),
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
