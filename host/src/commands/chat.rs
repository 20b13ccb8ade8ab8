//! `launcher chat`: an interactive conversation with a chat tool, and `launcher
//! conversations`: the conversations kept so far.
//!
//! Each line the user enters is one `chat` job, planned and run exactly as `launcher run chat`
//! would (routing, settings, streaming, signals), continuing the session's conversation. On a
//! terminal the prompt has line editing and history; `"""` on a line of its own starts and
//! ends a multi-line message; Ctrl-C stops the answer being written; Ctrl-D (or `exit`) leaves.
//! Piped in, every line is a message.

use std::io::IsTerminal;

use anyhow::Result;
use launcher_sdk::serde_json::{self, json};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::catalog::Catalog;
use crate::commands::Globals;
use crate::failure::{Class, Failure};
use crate::home::{Config, Home};
use crate::job::exec;
use crate::job::plan::{self, Planned, ProcessInputs};
use crate::job::store::Store;

/// Runs an interactive chat; `args` are `run chat` options given to every turn.
pub(crate) fn run(globals: &Globals, args: Vec<String>) -> Result<()> {
    let home = Home::locate()?;
    let config_path = home.config_file();
    let config = Config::load(&home)?;
    let catalog = Catalog::discover(&home, &config);
    globals.report_catalog(&catalog);
    if args.iter().any(|a| a == "-h" || a == "--help") {
        let mut help = vec!["chat".to_string(), "--help".to_string()];
        help.extend(
            args.iter()
                .filter(|a| *a != "-h" && *a != "--help")
                .cloned(),
        );
        if let Planned::Help(text) = plan::plan(
            &help,
            &catalog,
            &config,
            &config_path,
            &mut inputs(&home, &config),
        )? {
            print(&text.replace("launcher run chat", "launcher chat"));
        }
        return Ok(());
    }
    let interactive = std::io::stdin().is_terminal();
    let mut editor = DefaultEditor::new()?;
    let history = home.data_dir().join("chat_history.txt");
    if interactive {
        let _ = editor.load_history(&history);
        globals.status("Chat: Ctrl-C stops an answer, Ctrl-D leaves, \"\"\" starts and ends a message of several lines.");
    }
    // After the first answer, every turn continues the session's conversation.
    let mut conversation: Option<String> = None;
    let prompt = if interactive { "> " } else { "" };
    loop {
        let message = match read_message(&mut editor, prompt) {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(err) => return Err(err),
        };
        let trimmed = message.trim();
        if trimmed.is_empty() {
            continue;
        }
        if interactive && matches!(trimmed, "exit" | "quit" | "/exit" | "/quit") {
            break;
        }
        if interactive {
            let _ = editor.add_history_entry(trimmed);
        }
        let mut turn = vec!["chat".to_string(), message.clone()];
        match &conversation {
            Some(id) => {
                turn.extend(
                    strip_continue(&args)
                        .into_iter()
                        .chain(["--cid".to_string(), id.clone()]),
                );
            }
            None => turn.extend(args.iter().cloned()),
        }
        let planned = plan::plan(
            &turn,
            &catalog,
            &config,
            &config_path,
            &mut inputs(&home, &config),
        )?;
        let Planned::Job(job) = planned else {
            return Err(Failure::new(
                Class::Usage,
                "`launcher chat` takes options of `launcher run chat`",
            )
            .into());
        };
        match exec::execute(*job, None, home.data_dir(), globals) {
            Ok(report) => {
                if report.conversation.is_some() {
                    conversation = report.conversation;
                }
                if !interactive {
                    // Answers end with a newline, so that piped transcripts read well.
                    print("\n");
                }
            }
            Err(err) => match err.downcast_ref::<Failure>().map(|f| f.class) {
                // Ctrl-C during an answer stops that answer, not the session.
                Some(Class::Signalled(2)) if interactive => eprintln!("\n(stopped)"),
                _ => return Err(err),
            },
        }
    }
    if interactive {
        let _ = editor.save_history(&history);
        restrict(&history);
    }
    Ok(())
}

/// Reads one message: a line, or the lines between two `"""`. `None` at the end of input.
fn read_message(editor: &mut DefaultEditor, prompt: &str) -> Result<Option<String>> {
    let first = match editor.readline(prompt) {
        Ok(line) => line,
        Err(ReadlineError::Eof) => return Ok(None),
        // Ctrl-C at the prompt clears the line, as in a shell.
        Err(ReadlineError::Interrupted) => return Ok(Some(String::new())),
        Err(err) => return Err(err.into()),
    };
    if first.trim() != "\"\"\"" {
        return Ok(Some(first));
    }
    let mut lines = Vec::new();
    loop {
        match editor.readline(if prompt.is_empty() { "" } else { ". " }) {
            Ok(line) if line.trim() == "\"\"\"" => break,
            Ok(line) => lines.push(line),
            Err(ReadlineError::Eof) => break,
            Err(ReadlineError::Interrupted) => return Ok(Some(String::new())),
            Err(err) => return Err(err.into()),
        }
    }
    Ok(Some(lines.join("\n")))
}

/// Returns the options without `-c`/`--continue`/`--cid ID`: later turns continue the
/// session's own conversation.
fn strip_continue(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for arg in args {
        if skip {
            skip = false;
            continue;
        }
        match arg.as_str() {
            "-c" | "--continue" => {}
            "--cid" => skip = true,
            a if a.starts_with("--cid=") => {}
            _ => out.push(arg.clone()),
        }
    }
    out
}

fn inputs<'a>(home: &'a Home, config: &'a Config) -> ProcessInputs<'a> {
    ProcessInputs { home, config }
}

/// Lists the kept conversations, or shows one.
pub(crate) fn conversations(id: Option<&str>, limit: usize, as_json: bool) -> Result<()> {
    let home = Home::locate()?;
    if !Store::path(home.data_dir()).exists() {
        if as_json {
            print("[]\n");
        } else {
            eprintln!(
                "no conversations yet; `launcher run chat \"...\"` or `launcher chat` starts one"
            );
        }
        return Ok(());
    }
    let store = Store::open(home.data_dir())?;
    let Some(id) = id else {
        let found = store.conversations(limit)?;
        if as_json {
            print(&format!("{}\n", serde_json::to_string_pretty(&found)?));
        } else if found.is_empty() {
            eprintln!(
                "no conversations yet; `launcher run chat \"...\"` or `launcher chat` starts one"
            );
        } else {
            let mut out = String::new();
            for c in found {
                out.push_str(&format!(
                    "{}  {:<12} {:>3} turns  {}\n",
                    c.id,
                    c.tool,
                    c.messages / 2,
                    crate::escape::printable(&c.title)
                ));
            }
            print(&out);
        }
        return Ok(());
    };
    let Some(conversation) = store.conversation(Some(id))? else {
        return Err(
            Failure::new(Class::NotFound, format!("no conversation `{id}`"))
                .hint("`launcher conversations` lists them")
                .into(),
        );
    };
    let messages = store.messages(&conversation.id)?;
    if as_json {
        let report = json!({
            "schema": crate::commands::JSON_SCHEMA,
            "conversation": conversation,
            "messages": messages,
        });
        print(&format!("{}\n", serde_json::to_string_pretty(&report)?));
        return Ok(());
    }
    let mut out = format!(
        "conversation {} with {}{}\n",
        conversation.id,
        conversation.tool,
        conversation
            .model
            .as_deref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default()
    );
    for message in messages {
        out.push_str(&format!(
            "\n{}:\n{}\n",
            message.role,
            crate::escape::printable(&message.content)
        ));
    }
    print(&out);
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print(text: &str) {
    print!("{text}");
}

/// Makes the chat history private to its owner: prompts can be personal.
fn restrict(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    #[cfg(not(unix))]
    let _ = path;
}
