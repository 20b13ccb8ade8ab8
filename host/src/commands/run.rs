//! `launcher run`: route a job to a tool, check its parameters, run it, write its outputs.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::{Arg, ArgAction, ArgMatches, Command};
use launcher_sdk::abi::{CallError, Event, EventHandler};
use launcher_sdk::serde_json::{self, json};
use launcher_sdk::{ContentKind, CreateRequest, ErrorKind, Job, LogLevel, ParamSpec};

use crate::catalog::Catalog;
use crate::commands::Globals;
use crate::failure::{Class, Failure, fail};
use crate::home::{Config, Home};
use crate::output::{Outputs, Pending, Plan};
use crate::params;
use crate::route::{self, Request};
use crate::{loader, settings};

/// Host options of `run` that take a value; everything else that starts with `--` is a
/// parameter of the task or tool.
const VALUE_OPTIONS: [&str; 7] = [
    "-o", "--output", "--tool", "--task", "--to", "--file", "--set",
];
const FLAG_OPTIONS: [&str; 6] = ["--json", "--force", "-h", "--help", "-v", "-q"];

/// Runs `launcher run` with its raw arguments.
pub(crate) fn run(globals: &Globals, raw: Vec<String>) -> Result<()> {
    let home = Home::locate()?;
    let config_path = home.config_file();
    let config = Config::load(&config_path)?;
    let catalog = Catalog::discover(&home);
    globals.report_catalog(&catalog);

    let target_index = find_target(&raw);
    let target = target_index.map(|i| raw[i].clone());
    let rest: Vec<String> = raw
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != target_index)
        .map(|(_, a)| a.clone())
        .collect();

    // A first pass for the options routing needs, before the parameters are known.
    let wants_help = rest.iter().any(|a| a == "-h" || a == "--help");
    let to: Option<ContentKind> = match option_values(&rest, "--to").last() {
        Some(kind) => Some(kind.parse().map_err(|e: String| fail(Class::Usage, e))?),
        None => None,
    };
    let tool_flag = option_values(&rest, "--tool").pop();
    let task_flag = option_values(&rest, "--task").pop();
    if target.is_none() && to.is_none() {
        if wants_help {
            print_general_help(&catalog);
            return Ok(());
        }
        return Err(Failure::new(Class::Usage, "name a tool or a task to run, or give --to <kind>")
            .hint("`launcher list` shows the installed tools; `launcher run tts --help` shows a task's parameters")
            .into());
    }
    let cli_settings = parse_settings(option_values(&rest, "--set"))?;
    let inputs = if target.is_none() {
        given_inputs(&rest)
    } else {
        Vec::new()
    };
    let request = Request {
        target: target.as_deref(),
        tool: tool_flag.as_deref(),
        task: task_flag.as_deref(),
        to,
        inputs,
        cli_settings: &cli_settings,
        for_help: wants_help,
    };
    let route = route::resolve(&catalog, &config, &config_path, &request)?;
    for reason in &route.reasons {
        globals.info(&format!("routing: {reason}"));
    }
    let tool = route.tool;
    let task = route.task;
    let params = params::params_of(&task, &tool.spec);

    let title = format!(
        "launcher run {}",
        target.clone().unwrap_or_else(|| task.name.clone())
    );
    let cmd = params::add_args(host_command(&title), &params).about(format!(
        "{}: {} (tool `{}` from plugin {} {})",
        task.name, task.description, tool.spec.id, tool.plugin, tool.version
    ));
    let matches = match cmd
        .try_get_matches_from(std::iter::once(title.clone()).chain(rest.iter().cloned()))
    {
        Ok(m) => m,
        Err(err) if err.kind() == clap::error::ErrorKind::DisplayHelp => {
            print!("{}", err.render());
            print_settings_help(tool, &config);
            return Ok(());
        }
        Err(err) => {
            let _ = err.print();
            return Err(fail(Class::Usage, "the command line was not understood"));
        }
    };

    let text_name = params::text_param(&params).map(str::to_string);
    let text = read_text(&matches, &params, text_name.as_deref())?;
    let mut values = params::collect(&params, &matches, text)?;

    let explicit = matches.get_one::<String>("output").map(PathBuf::from);
    // `-o speech.mp3` picks the format when none was given.
    if let (Some(path), Some(format)) = (&explicit, params.iter().find(|p| p.name == "format"))
        && matches.get_one::<String>("format").is_none()
        && let Some(ext) = path.extension().and_then(|e| e.to_str())
    {
        values.insert(
            "format".to_string(),
            params::check(format, &ext.to_ascii_lowercase())?,
        );
    }
    let json_out = matches.get_flag("json");
    let plan = Plan {
        explicit,
        force: matches.get_flag("force"),
        json: json_out,
        stem: task.name.clone(),
        dir: PathBuf::from("."),
    };
    Outputs::precheck(&plan)?;

    let settings = settings::resolve(&tool.spec, &cli_settings, &config, &config_path)?;
    let secrets = settings::secrets(&tool.spec, &settings);

    let job = Job {
        task: task.name.clone(),
        tool: tool.spec.id.clone(),
        params: values,
    };
    globals.info(&format!("loading {}", tool.library.display()));
    let lib = loader::open(&tool.library).map_err(|reason| {
        fail(
            Class::Failure,
            format!(
                "plugin `{}` at {} {reason}",
                tool.plugin,
                tool.library.display()
            ),
        )
    })?;
    let instance = lib
        .create(&CreateRequest {
            tool: tool.spec.id.clone(),
            settings,
        })
        .map_err(|e| call_failure(&tool.spec.id, e, &secrets))?;

    let cancel = Arc::new(AtomicBool::new(false));
    let pending: Pending = Pending::default();
    install_interrupt_handler(cancel.clone(), pending.clone());

    let mut handler = Handler {
        outputs: Outputs::new(plan, pending),
        cancel: cancel.clone(),
        io_error: None,
        globals,
        progress_shown: false,
        secrets: &secrets,
        reader_gone: false,
    };
    let started = Instant::now();
    let outcome = instance.invoke(&job, &mut handler);
    let duration = started.elapsed();
    handler.clear_progress();
    let Handler {
        outputs,
        io_error,
        reader_gone,
        ..
    } = handler;
    if reader_gone {
        // Like other Unix tools, a closed pipe on stdout is not an error worth reporting.
        outputs.abandon();
        return Ok(());
    }

    let result = match (outcome, io_error) {
        (_, Some(err)) => {
            outputs.abandon();
            return Err(fail(
                Class::Failure,
                format!("cannot write the output: {err}"),
            ));
        }
        (Err(err), None) => {
            outputs.abandon();
            if cancel.load(Ordering::SeqCst) {
                return Err(fail(
                    Class::Cancelled,
                    "cancelled; partial outputs were removed",
                ));
            }
            return Err(call_failure(&tool.spec.id, err, &secrets));
        }
        (Ok(result), None) => result,
    };
    let written = outputs.finish().context("failed to save the output")?;
    if json_out {
        let report = json!({
            "tool": tool.spec.id,
            "task": task.name,
            "plugin": tool.plugin,
            "version": tool.version,
            "outputs": written,
            "duration_ms": duration.as_millis() as u64,
            "info": result.info,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for w in &written {
            if let Some(path) = &w.path {
                globals.status(&format!(
                    "wrote {} ({}, {}) with {} in {:.1} s",
                    path.display(),
                    w.media_type,
                    human_size(w.size),
                    tool.spec.id,
                    duration.as_secs_f64()
                ));
            }
        }
        let streamed_text = written
            .iter()
            .any(|w| w.path.is_none() && w.kind == ContentKind::Text && w.size > 0);
        if streamed_text && std::io::stdout().is_terminal() {
            // End the streamed text's line so the shell prompt starts on its own.
            println!();
        }
        if written.is_empty() {
            globals.status(&format!("{} finished without output", tool.spec.id));
        }
    }
    Ok(())
}

/// Returns the index of the run target: the first argument that is neither an option nor an
/// option's value.
fn find_target(raw: &[String]) -> Option<usize> {
    let mut i = 0;
    while i < raw.len() {
        let arg = raw[i].as_str();
        if !arg.starts_with('-') || arg == "-" {
            return Some(i);
        }
        if arg.contains('=') {
            i += 1;
        } else if VALUE_OPTIONS.contains(&arg) {
            i += 2;
        } else if FLAG_OPTIONS.contains(&arg) {
            i += 1;
        } else {
            // An unknown option first: its value cannot be told from a target.
            return None;
        }
    }
    None
}

/// Returns every value given to host option `name` (as `--name value` or `--name=value`).
fn option_values(args: &[String], name: &str) -> Vec<String> {
    let mut values = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == name {
            if let Some(value) = args.get(i + 1) {
                values.push(value.clone());
            }
            i += 2;
            continue;
        }
        if let Some(value) = args[i].strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            values.push(value.to_string());
        }
        i += 1;
    }
    values
}

/// The options `run` itself takes, whatever the tool.
fn host_command(name: &str) -> Command {
    Command::new(name.to_string())
        .no_binary_name(false)
        .disable_version_flag(true)
        .arg(Arg::new("output").short('o').long("output").value_name("FILE").help("write the output here (`-` for stdout); default: a new file in the current directory named after the task").help_heading("Run options"))
        .arg(Arg::new("force").long("force").action(ArgAction::SetTrue).help("replace the output file if it exists").help_heading("Run options"))
        .arg(Arg::new("json").long("json").action(ArgAction::SetTrue).help("print the job's result as JSON").help_heading("Run options"))
        .arg(Arg::new("tool").long("tool").value_name("ID").help("the tool to use for a task").help_heading("Run options"))
        .arg(Arg::new("task").long("task").value_name("TASK").help("the task, when a tool performs several").help_heading("Run options"))
        .arg(Arg::new("to").long("to").value_name("KIND").help("the kind of output wanted: text, image, audio or video").help_heading("Run options"))
        .arg(Arg::new("file").long("file").value_name("FILE").help("read the input text from a file (`-` for stdin)").help_heading("Run options"))
        .arg(Arg::new("set").long("set").value_name("NAME=VALUE").action(ArgAction::Append).help("give the tool a setting for this run").help_heading("Run options"))
        .arg(Arg::new("verbose").short('v').action(ArgAction::Count).hide(true))
        .arg(Arg::new("quiet").short('q').action(ArgAction::SetTrue).hide(true))
}

fn parse_settings(raw: Vec<String>) -> Result<Vec<(String, String)>> {
    raw.into_iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(fail(
                Class::Usage,
                format!("--set takes NAME=VALUE, not `{item}`"),
            )),
        })
        .collect()
}

/// Returns the kinds of input given on a command line, for `--to` routing.
fn given_inputs(rest: &[String]) -> Vec<ContentKind> {
    let mut kinds = Vec::new();
    let mut i = 0;
    let mut text = false;
    while i < rest.len() {
        let arg = rest[i].as_str();
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (arg, rest.get(i + 1).cloned()),
        };
        let step = if arg.contains('=') { 1 } else { 2 };
        match name {
            "--text" | "--prompt" | "--file" => {
                text = true;
                i += step;
            }
            _ if FLAG_OPTIONS.contains(&name) => i += 1,
            _ if name.starts_with("--") => {
                if let Some(kind) = value.as_deref().and_then(|v| kind_of_file(Path::new(v))) {
                    kinds.push(kind);
                }
                i += step;
            }
            _ => i += 1,
        }
    }
    if text {
        kinds.push(ContentKind::Text);
    } else if !std::io::stdin().is_terminal() && kinds.is_empty() {
        // Piped text counts as input only when nothing else was given.
        kinds.push(ContentKind::Text);
    }
    kinds
}

/// Returns the kind of an existing file, judged by its extension.
fn kind_of_file(path: &Path) -> Option<ContentKind> {
    if !path.is_file() {
        return None;
    }
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "png" | "jpg" | "jpeg" | "webp" | "gif" | "bmp" | "tif" | "tiff" => {
            Some(ContentKind::Image)
        }
        "wav" | "mp3" | "ogg" | "opus" | "flac" | "m4a" | "aac" | "oga" => Some(ContentKind::Audio),
        "mp4" | "webm" | "mov" | "mkv" | "avi" => Some(ContentKind::Video),
        "txt" | "md" => Some(ContentKind::Text),
        _ => None,
    }
}

/// Returns the main text when it comes from `--file` or stdin rather than its parameter.
fn read_text(
    matches: &ArgMatches,
    params: &[ParamSpec],
    text_name: Option<&str>,
) -> Result<Option<String>> {
    let file = matches.get_one::<String>("file");
    let Some(name) = text_name else {
        if file.is_some() {
            return Err(fail(
                Class::Usage,
                "--file gives input text, and this task takes none",
            ));
        }
        return Ok(None);
    };
    let given = matches.get_one::<String>(name).is_some();
    if given {
        if file.is_some() {
            return Err(fail(
                Class::Usage,
                format!("give the text either with --{name} or with --file, not both"),
            ));
        }
        return Ok(None);
    }
    let required = params.iter().any(|p| p.name == name && p.required);
    let bytes = match file.map(String::as_str) {
        Some("-") => read_stdin()?,
        Some(path) => std::fs::read(path).map_err(|e| {
            fail(
                Class::InvalidInput,
                format!("--file: cannot read {path}: {e}"),
            )
        })?,
        None if required && !std::io::stdin().is_terminal() => read_stdin()?,
        None => return Ok(None),
    };
    if bytes.is_empty() && file.is_none() {
        // Nothing piped in (e.g. stdin is /dev/null): the text is simply missing.
        return Ok(None);
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| fail(Class::InvalidInput, "the input text is not valid UTF-8"))?;
    Ok(Some(text))
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    // One byte past the limit is enough to tell the text is too long.
    std::io::stdin()
        .lock()
        .take(params::MAX_TEXT_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| fail(Class::InvalidInput, format!("cannot read stdin: {e}")))?;
    Ok(buf)
}

/// Maps a failed plugin call to a user-facing failure, with secrets scrubbed.
fn call_failure(tool: &str, err: CallError, secrets: &[String]) -> anyhow::Error {
    let scrub = |s: &str| settings::scrub(s, secrets);
    match err {
        CallError::Plugin(err) => {
            let class = Class::of_kind(err.kind);
            let mut message = format!("{tool}: {}", scrub(&err.message));
            if err.kind == ErrorKind::RateLimited
                && let Some(secs) = err.retry_after_secs
            {
                message.push_str(&format!(" (the service asked to wait {secs:.0} s)"));
            }
            let mut failure = Failure::new(class, message);
            if let Some(hint) = err.hint {
                failure = failure.hint(scrub(&hint));
            }
            failure.into()
        }
        CallError::Panic(msg) => Failure::new(
            Class::Failure,
            format!("plugin of `{tool}` panicked: {}", scrub(&msg)),
        )
        .hint("this is a bug in the plugin; launcher itself is fine")
        .into(),
        CallError::Protocol(msg) => fail(
            Class::Failure,
            format!(
                "plugin of `{tool}` broke the plugin protocol: {}",
                scrub(&msg)
            ),
        ),
    }
}

static INTERRUPTS: AtomicU8 = AtomicU8::new(0);

/// First Ctrl-C: ask the job to stop. Second: remove partial outputs and exit at once.
fn install_interrupt_handler(cancel: Arc<AtomicBool>, pending: Pending) {
    // One job per process, so the handler is set once; should it fail, Ctrl-C still ends the
    // process, only without removing partial outputs.
    let _ = ctrlc::set_handler(move || {
        let n = INTERRUPTS.fetch_add(1, Ordering::SeqCst);
        cancel.store(true, Ordering::SeqCst);
        if n == 0 {
            eprintln!("\nlauncher: cancelling (press Ctrl-C again to stop at once)");
        } else {
            crate::output::remove_pending(&pending);
            std::process::exit(i32::from(Class::Cancelled.exit_code()));
        }
    });
}

struct Handler<'a> {
    outputs: Outputs,
    cancel: Arc<AtomicBool>,
    io_error: Option<std::io::Error>,
    globals: &'a Globals,
    progress_shown: bool,
    secrets: &'a [String],
    /// Stdout was closed by its reader.
    reader_gone: bool,
}

impl Handler<'_> {
    fn clear_progress(&mut self) {
        if self.progress_shown {
            eprint!("\r\x1b[2K");
            self.progress_shown = false;
        }
    }
}

impl EventHandler for Handler<'_> {
    fn event(&mut self, event: Event<'_>) -> bool {
        match event {
            Event::Chunk(header, bytes) => {
                if let Err(err) = self.outputs.write(&header, bytes) {
                    if err.kind() == std::io::ErrorKind::BrokenPipe {
                        // The reader went away (`| head`): stop the job, quietly.
                        self.reader_gone = true;
                    } else {
                        self.io_error.get_or_insert(err);
                    }
                    return false;
                }
            }
            Event::Progress(p) => {
                if self.globals.show_progress() {
                    let pct = p
                        .fraction
                        .map(|f| format!("{:3.0}% ", f * 100.0))
                        .unwrap_or_default();
                    eprint!(
                        "\r\x1b[2K{pct}{}",
                        settings::scrub(&p.message, self.secrets)
                    );
                    self.progress_shown = true;
                }
            }
            Event::Log(line) => {
                let shown = match line.level {
                    LogLevel::Warn => !self.globals.quiet,
                    LogLevel::Info => self.globals.verbose >= 1,
                    LogLevel::Debug => self.globals.verbose >= 2,
                };
                if shown {
                    self.clear_progress();
                    eprintln!(
                        "{}: {}",
                        level_name(line.level),
                        settings::scrub(&line.message, self.secrets)
                    );
                }
            }
        }
        !self.cancel.load(Ordering::SeqCst)
    }

    fn is_cancelled(&self) -> bool {
        self.reader_gone || self.cancel.load(Ordering::SeqCst)
    }
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Warn => "warning",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn print_general_help(catalog: &Catalog) {
    println!("Run a job: launcher run <tool|task> [parameters] [-o FILE] [--json]");
    println!("           launcher run --to <text|image|audio|video> [parameters]\n");
    println!("Tasks:");
    for task in route::task_names(catalog) {
        let tools: Vec<&str> = catalog
            .tools
            .iter()
            .filter(|t| t.spec.tasks.contains(&task))
            .map(|t| t.spec.id.as_str())
            .collect();
        let shown = if tools.is_empty() {
            "(no tool installed)".to_string()
        } else {
            tools.join(", ")
        };
        println!("  {task:<10} {shown}");
    }
    println!("\n`launcher run <tool|task> --help` shows its parameters.");
}

fn print_settings_help(tool: &crate::catalog::Tool, config: &Config) {
    if tool.spec.settings.is_empty() {
        return;
    }
    println!(
        "\nSettings of `{}` (--set NAME=VALUE, the environment, or config.toml):",
        tool.spec.id
    );
    for s in &tool.spec.settings {
        let source = settings::source_of(&tool.spec.id, s, &[], config);
        let env = s
            .env
            .as_deref()
            .map(|e| format!(" ${e}"))
            .unwrap_or_default();
        let flags = [
            s.required.then_some("required"),
            s.secret.then_some("secret"),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        println!(
            "  {:<10}{env}  {}{}  [{}]",
            s.name,
            s.description,
            if flags.is_empty() {
                String::new()
            } else {
                format!(" ({flags})")
            },
            source.describe()
        );
    }
}
