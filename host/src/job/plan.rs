//! Planning a job from the command line: which tool and task, which parameters (parsed,
//! defaulted and checked), which settings, and where the outputs go. No plugin code runs here.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Arg, ArgAction, ArgMatches, Command};
use launcher_sdk::serde_json::{Map, Value};
use launcher_sdk::{ContentKind, Message, ParamSpec, ParamType, Settings, TaskSpec};

use crate::catalog::{Catalog, Tool};
use crate::failure::{Class, Failure, fail};
use crate::home::Config;
use crate::job::store::Conversation;
use crate::output;
use crate::params;
use crate::route::{self, Request};
use crate::settings;

/// Host options of `run` that take a value; everything else that starts with `--` is a
/// parameter of the task or tool.
const VALUE_OPTIONS: [&str; 10] = [
    "-o", "--output", "--tool", "--task", "--to", "--file", "--set", "--resume", "--cid", "--color",
];
const FLAG_OPTIONS: [&str; 13] = [
    "--play",
    "--yes",
    "-c",
    "--continue",
    "--json",
    "--force",
    "-h",
    "--help",
    "-v",
    "-q",
    "--detach",
    "--cancel-remote",
    "--",
];

/// What planning needs from outside the command line: stdin, and plugins' descriptions of
/// tools whose parameters depend on arguments.
pub(crate) trait Inputs {
    /// Returns whether stdin is a terminal (then it is never read for text).
    fn stdin_is_terminal(&self) -> bool;
    /// Reads stdin, at most `limit` bytes.
    fn read_stdin(&mut self, limit: usize) -> std::io::Result<Vec<u8>>;
    /// Returns `tool` as its plugin describes it for `args` (cached).
    fn describe_tool(
        &mut self,
        tool: &Tool,
        args: Map<String, Value>,
    ) -> Result<launcher_sdk::ToolSpec, String>;
    /// Returns the conversation `id` (the latest when `None`) with its messages.
    fn conversation(&mut self, id: Option<&str>) -> Result<Option<(Conversation, Vec<Message>)>>;
}

/// The process's real stdin, and descriptions from the plugins themselves.
pub(crate) struct ProcessInputs<'a> {
    pub(crate) home: &'a crate::home::Home,
    pub(crate) config: &'a Config,
}

impl Inputs for ProcessInputs<'_> {
    fn conversation(&mut self, id: Option<&str>) -> Result<Option<(Conversation, Vec<Message>)>> {
        if id.is_none() && !crate::job::store::Store::path(self.home.data_dir()).exists() {
            return Ok(None);
        }
        let store = crate::job::store::Store::open(self.home.data_dir())?;
        let Some(conversation) = store.conversation(id)? else {
            return Ok(None);
        };
        let messages = store.messages(&conversation.id)?;
        Ok(Some((conversation, messages)))
    }

    fn describe_tool(
        &mut self,
        tool: &Tool,
        args: Map<String, Value>,
    ) -> Result<launcher_sdk::ToolSpec, String> {
        crate::catalog::describe_tool(self.home, self.config, tool, args)
    }

    fn stdin_is_terminal(&self) -> bool {
        std::io::IsTerminal::is_terminal(&std::io::stdin())
    }

    fn read_stdin(&mut self, limit: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .take(limit as u64)
            .read_to_end(&mut buf)?;
        Ok(buf)
    }
}

/// Everything a job needs to run, decided before any plugin code runs.
#[derive(Debug, Clone)]
pub(crate) struct JobPlan {
    pub(crate) id: String,
    pub(crate) tool: Tool,
    pub(crate) task: TaskSpec,
    /// Parameters, typed, defaulted and checked.
    pub(crate) params: Map<String, Value>,
    pub(crate) settings: Settings,
    /// Secret values to scrub from anything shown.
    pub(crate) secrets: Vec<String>,
    pub(crate) outputs: output::Plan,
    /// `--json`: print the result as JSON.
    pub(crate) json: bool,
    /// `--detach`: submit and return once the job recorded a checkpoint.
    pub(crate) detach: bool,
    /// `--play`: play (or open) the first file written, once the job succeeded.
    pub(crate) play: bool,
    /// `--cancel-remote`: a signal cancels remote work too, instead of detaching the job.
    pub(crate) cancel_remote: bool,
    /// `--yes`: accept the job's cost without asking, whatever it is.
    pub(crate) yes: bool,
    /// `launcher jobs cancel`: resume the job with cancellation asked from the start.
    pub(crate) cancel_requested: bool,
    /// The caller prints the result (`launcher jobs ... --json`, one document for several
    /// jobs): nothing of this job goes to stdout.
    pub(crate) collect: bool,
    /// Above this cost (in the tool's currency) the user is asked first: `[defaults]
    /// confirm_over` in config.toml.
    pub(crate) confirm_over: f64,
    /// The checkpoint of an earlier run of this job, when resuming.
    pub(crate) resume: Option<Value>,
    /// Why this tool was chosen, for `-v`.
    pub(crate) reasons: Vec<String>,
    /// Whether launcher picked the tool for the task itself (see [`route::Route::picked`]).
    pub(crate) picked: bool,
    /// For `chat`: the earlier turns of the conversation the job continues.
    pub(crate) history: Vec<Message>,
    /// For `chat`: the conversation the job continues, when it continues one.
    pub(crate) conversation: Option<String>,
}

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Planned {
    /// `launcher run --help` without a target.
    GeneralHelp,
    /// `--help` of a target: the rendered help.
    Help(String),
    /// `--resume ID`: continue a job from the store.
    Resume {
        id: String,
        json: bool,
        cancel_remote: bool,
    },
    /// A job to run.
    Job(Box<JobPlan>),
}

/// Plans `launcher run` from its raw arguments.
pub(crate) fn plan(
    raw: &[String],
    catalog: &Catalog,
    config: &Config,
    config_path: &Path,
    inputs: &mut dyn Inputs,
) -> Result<Planned> {
    let target_index = find_target(raw);
    let mut target = target_index.map(|i| raw[i].clone());
    let mut rest: Vec<String> = raw
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
    if let Some(id) = option_values(&rest, "--resume").pop() {
        if let Some(target) = &target {
            return Err(fail(
                Class::Usage,
                format!("--resume continues a recorded job; it takes no target (`{target}`)"),
            ));
        }
        return Ok(Planned::Resume {
            id,
            json: rest.iter().any(|a| a == "--json"),
            cancel_remote: rest.iter().any(|a| a == "--cancel-remote"),
        });
    }
    // With --to, a first word that is no tool or task is the input itself.
    if to.is_some()
        && let (Some(t), Some(i)) = (&target, target_index)
        && catalog.tool(t).is_none()
        && !route::task_names(catalog).iter().any(|n| n == t)
        && launcher_sdk::standard_alias(t).is_none()
    {
        rest.insert(i.min(rest.len()), t.clone());
        target = None;
    }
    let mut tool_flag = option_values(&rest, "--tool").pop();
    let task_flag = option_values(&rest, "--task").pop();
    // `-c` continues the latest conversation, `--cid ID` a given one: with the tool and model
    // that answered it, unless others are named.
    let continued = if rest.iter().any(|a| a == "-c" || a == "--continue") {
        Some(None)
    } else {
        option_values(&rest, "--cid").pop().map(Some)
    };
    let conversation = match &continued {
        None => None,
        Some(id) => match inputs.conversation(id.as_deref())? {
            Some(found) => Some(found),
            None => {
                return Err(Failure::new(
                    Class::NotFound,
                    match id {
                        Some(id) => format!("no conversation `{id}`"),
                        None => "there is no conversation to continue yet".to_string(),
                    },
                )
                .hint("`launcher conversations` lists them; `launcher run chat \"...\"` starts one")
                .into());
            }
        },
    };
    if let Some((found, _)) = &conversation
        && tool_flag.is_none()
        && target.as_deref().is_none_or(|t| t == "chat")
    {
        tool_flag = Some(found.tool.clone());
    }
    if target.is_none() && to.is_none() {
        if wants_help {
            return Ok(Planned::GeneralHelp);
        }
        return Err(Failure::new(Class::Usage, "name a tool or a task to run, or give --to <kind>")
            .hint("`launcher list` shows the installed tools; `launcher run tts --help` shows a task's parameters")
            .into());
    }
    let cli_settings = parse_settings(option_values(&rest, "--set"))?;
    let given_kinds = if target.is_none() {
        given_inputs(&rest, inputs.stdin_is_terminal())
    } else {
        Vec::new()
    };
    let request = Request {
        target: target.as_deref(),
        tool: tool_flag.as_deref(),
        task: task_flag.as_deref(),
        to,
        inputs: given_kinds,
        cli_settings: &cli_settings,
        for_help: wants_help,
    };
    let route = route::resolve(catalog, config, config_path, &request)?;
    let described = describe_by_args(route.tool, &rest, inputs)?;
    let tool = described.as_ref().unwrap_or(route.tool);
    // A described tool may say more of its task too (the input a model takes first).
    let task = described
        .as_ref()
        .and_then(|tool| route::task_of(tool, &route.task.name))
        .unwrap_or(route.task);
    let params = params::params_of(&task, &tool.spec);
    let text_name = params::text_param(&task, &params).map(str::to_string);
    let primary = task
        .primary_input()
        .and_then(|slot| params.iter().find(|p| p.name == slot.name));

    let title = format!(
        "launcher run {}",
        target.clone().unwrap_or_else(|| task.name.clone())
    );
    let cmd = params::add_args(host_command(&title, primary), &params).about(
        crate::escape::printable(&format!(
            "{}: {} (tool `{}` from plugin {} {})",
            task.name, task.description, tool.spec.id, tool.plugin, tool.version
        ))
        .into_owned(),
    );
    let matches = match cmd
        .try_get_matches_from(std::iter::once(title.clone()).chain(rest.iter().cloned()))
    {
        Ok(m) => m,
        Err(err) if err.kind() == clap::error::ErrorKind::DisplayHelp => {
            let mut help = err.render().to_string();
            help.push_str(&settings_help(tool, config));
            return Ok(Planned::Help(help));
        }
        Err(err) => {
            return Err(Failure::new(Class::Usage, usage_message(&err))
                .hint(format!("`{title} --help` lists what it takes"))
                .into());
        }
    };

    let positional = matches.get_one::<String>("input").cloned();
    let mut given_positional = None;
    if let (Some(value), Some(param)) = (&positional, primary) {
        if matches.get_many::<String>(&param.name).is_some() {
            return Err(fail(
                Class::Usage,
                format!(
                    "`{value}` and --{} both give the {}; give one",
                    params::flag_name(&param.name),
                    param.name
                ),
            ));
        }
        given_positional = Some((param.name.clone(), value.clone()));
    } else if let Some(value) = &positional {
        // A tool whose inputs a parameter describes (replicate's --model) knows them only
        // once that parameter is given.
        if described.is_none()
            && let Some(name) = tool.spec.described_by.first()
        {
            let flag = params::flag_name(name);
            return Err(Failure::new(
                Class::Usage,
                format!(
                    "`{value}`: tool `{}` takes its inputs from --{flag}; give --{flag} first",
                    tool.spec.id
                ),
            )
            .hint(format!(
                "`{title} --{flag} ... --help` lists what it then takes"
            ))
            .into());
        }
        return Err(fail(
            Class::Usage,
            format!("`{value}`: task `{}` takes no input of its own", task.name),
        ));
    }
    let text = match &given_positional {
        Some((name, _)) if Some(name) == text_name.as_ref() => {
            if matches.get_one::<String>("file").is_some() {
                return Err(fail(
                    Class::Usage,
                    format!("give the {name} either as an argument or with --file, not both"),
                ));
            }
            given_positional.clone().map(|(_, v)| v)
        }
        _ => read_text(&matches, &params, text_name.as_deref(), inputs)?,
    };
    let mut values = params::collect(&params, &matches, text_name.as_deref(), text)?;
    if let Some((name, raw)) = given_positional.filter(|(n, _)| Some(n) != text_name.as_ref()) {
        let param = params
            .iter()
            .find(|p| p.name == name)
            .expect("the primary input is a parameter");
        let value = params::check(param, &raw)?;
        let value = if param.multiple {
            Value::Array(vec![value])
        } else {
            value
        };
        values.insert(name, value);
    }

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
    // `--format mp3 -o x.wav` would write a file whose name lies about its content.
    if let (Some(path), Some(format)) = (
        &explicit,
        matches.try_get_one::<String>("format").ok().flatten(),
    ) && let Some(ext) = path.extension().and_then(|e| e.to_str())
        && let Some(made) = format_extension(format)
        && output::is_media_extension(&ext.to_ascii_lowercase())
        && !output::same_format(&ext.to_ascii_lowercase(), &made)
    {
        return Err(Failure::new(
            Class::Usage,
            format!(
                "--format {format} makes .{made} content, and -o {} says .{ext}",
                path.display()
            ),
        )
        .hint(format!(
            "leave out --format (the extension of -o picks it), or name the output .{made}"
        ))
        .into());
    }
    let mut values = launcher_sdk::check_params(&params, &values).map_err(|e| {
        // A missing parameter is a command line to complete, like a missing positional.
        let class = if values.contains_key(&e.param) {
            Class::InvalidInput
        } else {
            Class::Usage
        };
        fail(
            class,
            format!("--{} {}", params::flag_name(&e.param), e.problem),
        )
    })?;
    let (conversation, history) = match conversation {
        Some((found, messages)) => {
            if task.name != "chat" {
                return Err(fail(
                    Class::Usage,
                    format!(
                        "-c and --cid continue a chat; task `{}` is no chat",
                        task.name
                    ),
                ));
            }
            if let Some(model) = &found.model
                && !values.contains_key("model")
                && params.iter().any(|p| p.name == "model")
            {
                values.insert("model".into(), Value::String(model.clone()));
            }
            (Some(found.id), messages)
        }
        None => (None, Vec::new()),
    };
    let json = matches.get_flag("json");
    if json && explicit.as_deref().is_some_and(|p| p.as_os_str() == "-") {
        return Err(Failure::new(
            Class::Usage,
            "-o - writes the output to stdout, so --json has no room there for the result",
        )
        .hint("leave out --json, or write the output to a file with -o FILE")
        .into());
    }
    if matches.get_flag("play") && explicit.as_deref().is_some_and(|p| p.as_os_str() == "-") {
        return Err(Failure::new(
            Class::Usage,
            "--play plays a file launcher wrote, and -o - writes to stdout",
        )
        .hint("pipe stdout into a player instead, e.g. `-o - | aplay`")
        .into());
    }
    let id = crate::job::new_id();
    let outputs = output::Plan {
        explicit,
        force: matches.get_flag("force"),
        json,
        stem: task.name.clone(),
        dir: PathBuf::from("."),
        job_id: id.clone(),
        capture: task.name == "chat",
        format_param: params.iter().any(|p| p.name == "format"),
    };
    let makes_files = task.outputs.iter().any(|o| o.kind != ContentKind::Text);
    output::Outputs::precheck(&outputs, makes_files)?;

    crate::owners::check_settings(tool, config)?;
    let settings = settings::resolve(&tool.spec, &cli_settings, config, config_path)?;
    let secrets = settings::secrets(&settings);
    Ok(Planned::Job(Box::new(JobPlan {
        id,
        tool: tool.clone(),
        task,
        params: values,
        settings,
        secrets,
        outputs,
        json,
        detach: matches.get_flag("detach"),
        play: matches.get_flag("play"),
        cancel_remote: matches.get_flag("cancel-remote"),
        yes: matches.get_flag("yes"),
        cancel_requested: false,
        collect: false,
        confirm_over: config.confirm_over(),
        resume: None,
        reasons: route.reasons,
        picked: route.picked,
        history,
        conversation,
    })))
}

/// Returns a value a tool is described by as its plugin gets it: a file named relative to
/// here reaches the plugin (and the description cache, which fingerprints it) as an absolute
/// path, so an edited file is described anew.
pub(crate) fn describing_value(value: Value) -> Value {
    match value {
        Value::String(text) if Path::new(&text).is_file() => Value::String(
            Path::new(&text)
                .canonicalize()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or(text),
        ),
        other => other,
    }
}

/// Returns `tool` described anew when the command line gives parameters it is described by
/// (a workflow file, a model name); `None` when it gives none of them.
fn describe_by_args(tool: &Tool, rest: &[String], inputs: &mut dyn Inputs) -> Result<Option<Tool>> {
    let mut args = Map::new();
    for name in &tool.spec.described_by {
        let Some(raw) = option_values(rest, &format!("--{}", params::flag_name(name))).pop() else {
            continue;
        };
        let value = match tool.spec.params.iter().find(|p| &p.name == name) {
            Some(param) => params::check(param, &raw)?,
            None => Value::String(raw),
        };
        args.insert(name.clone(), describing_value(value));
    }
    described(tool, args, |tool, args| inputs.describe_tool(tool, args))
}

/// Returns `tool` as `describe` describes it for the values `args` of the parameters it is
/// described by (none given: `None`, the tool as it is).
pub(crate) fn described(
    tool: &Tool,
    args: Map<String, Value>,
    describe: impl FnOnce(&Tool, Map<String, Value>) -> Result<launcher_sdk::ToolSpec, String>,
) -> Result<Option<Tool>> {
    if args.is_empty() {
        return Ok(None);
    }
    let spec = describe(tool, args).map_err(|reason| {
        fail(
            Class::InvalidInput,
            format!(
                "tool `{}` could not describe its parameters: {reason}",
                tool.spec.id
            ),
        )
    })?;
    Ok(Some(Tool {
        spec,
        ..tool.clone()
    }))
}

/// Returns the file extension of the content a `--format` value asks for, when it can be
/// told: a plain extension (`mp3`), or a service's format name that says its container
/// (`riff-24khz-16bit-mono-pcm` is WAV, `audio-24khz-48kbitrate-mono-mp3` is MP3).
fn format_extension(format: &str) -> Option<String> {
    let format = format.trim().to_ascii_lowercase();
    if output::is_media_extension(&format) {
        return Some(format);
    }
    let made = if format.starts_with("riff-") {
        "wav"
    } else if format.ends_with("-mp3") {
        "mp3"
    } else if format.starts_with("ogg-") {
        "ogg"
    } else if format.starts_with("webm-") {
        "webm"
    } else {
        return None;
    };
    Some(made.to_string())
}

/// Returns clap's message without its own `error:` prefix and usage block: one message.
fn usage_message(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("the command line was not understood");
    let first = first.strip_prefix("error: ").unwrap_or(first).to_string();
    let tip = rendered
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("tip:"))
        .map(|t| format!(" ({})", t.trim_start_matches("tip: ")))
        .unwrap_or_default();
    format!("{first}{tip}")
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

/// The options `run` itself takes, whatever the tool, and the positional primary input.
fn host_command(name: &str, primary: Option<&ParamSpec>) -> Command {
    let heading = "Run options";
    let mut cmd = Command::new(name.to_string())
        .no_binary_name(false)
        .disable_version_flag(true)
        .allow_negative_numbers(true)
        .arg(Arg::new("output").short('o').long("output").value_name("FILE").help("write the output here (`-` for stdout, which then carries the output alone: --json is refused); default: a new file in the current directory named after the task").help_heading(heading))
        .arg(Arg::new("force").long("force").action(ArgAction::SetTrue).help("replace the output file if it exists").help_heading(heading))
        .arg(Arg::new("json").long("json").action(ArgAction::SetTrue).help("print the job's result as JSON").help_heading(heading))
        .arg(Arg::new("tool").long("tool").value_name("ID").help("the tool to use for a task").help_heading(heading))
        .arg(Arg::new("task").long("task").value_name("TASK").help("the task, when a tool performs several").help_heading(heading))
        .arg(Arg::new("to").long("to").value_name("KIND").help("the kind of output wanted: text, image, audio or video").help_heading(heading))
        .arg(Arg::new("file").long("file").value_name("FILE").help("read the input text from a file (`-` for stdin)").help_heading(heading))
        .arg(Arg::new("set").long("set").value_name("NAME=VALUE").action(ArgAction::Append).help("give the tool a setting for this run").help_heading(heading))
        .arg(Arg::new("play").long("play").action(ArgAction::SetTrue).help("play the audio (or open the image or video) written, with what the system has").help_heading(heading))
        .arg(Arg::new("dry-run").long("dry-run").action(ArgAction::SetTrue).help("print the plan (tool, parameters, settings with secrets masked, outputs, routing) and run nothing").help_heading(heading))
        .arg(Arg::new("detach").long("detach").action(ArgAction::SetTrue).help("submit a remote job and return once it is accepted; `launcher run --resume ID` collects it").help_heading(heading))
        .arg(Arg::new("continue").short('c').long("continue").action(ArgAction::SetTrue).help("chat: continue the latest conversation").help_heading(heading))
        .arg(Arg::new("cid").long("cid").value_name("ID").help("chat: continue this conversation").help_heading(heading))
        .arg(Arg::new("yes").long("yes").action(ArgAction::SetTrue).help("accept what a paid job costs without asking (needed to run one above `confirm_over` without a terminal)").help_heading(heading))
        .arg(Arg::new("cancel-remote").long("cancel-remote").action(ArgAction::SetTrue).help("on Ctrl-C, cancel the remote job too instead of leaving it running").help_heading(heading))
        .arg(Arg::new("verbose").short('v').action(ArgAction::Count).hide(true))
        .arg(Arg::new("quiet").short('q').action(ArgAction::SetTrue).hide(true))
        // Read before parsing (style::from_args); accepted here so it may follow the target.
        .arg(Arg::new("color").long("color").value_name("WHEN").value_parser(["auto", "always", "never"]).hide(true));
    if let Some(param) = primary {
        let value_name = match param.ty {
            ParamType::File => param.name.to_uppercase(),
            _ => param.name.to_uppercase(),
        };
        cmd = cmd.arg(
            Arg::new("input")
                .index(1)
                .value_name(value_name)
                .help(format!(
                    "the {} (the same as --{})",
                    param.name,
                    params::flag_name(&param.name)
                )),
        );
    } else {
        cmd = cmd.arg(Arg::new("input").index(1).hide(true));
    }
    cmd
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
fn given_inputs(rest: &[String], stdin_is_terminal: bool) -> Vec<ContentKind> {
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
            _ if VALUE_OPTIONS.contains(&name) => i += step,
            _ if name.starts_with("--") => {
                if let Some(kind) = value.as_deref().and_then(|v| kind_of_file(Path::new(v))) {
                    kinds.push(kind);
                }
                i += step;
            }
            // A positional: a file by its type, else text.
            _ => {
                kinds.push(kind_of_file(Path::new(arg)).unwrap_or(ContentKind::Text));
                i += 1;
            }
        }
    }
    if text {
        kinds.push(ContentKind::Text);
    } else if !stdin_is_terminal && kinds.is_empty() {
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
    inputs: &mut dyn Inputs,
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
    // One byte past the limit is enough to tell the text is too long.
    let limit = params::MAX_TEXT_BYTES + 1;
    let bytes = match file.map(String::as_str) {
        Some("-") => inputs
            .read_stdin(limit)
            .map_err(|e| fail(Class::InvalidInput, format!("cannot read stdin: {e}")))?,
        Some(path) => std::fs::read(path).map_err(|e| {
            fail(
                Class::InvalidInput,
                format!("--file: cannot read {path}: {e}"),
            )
        })?,
        None if required && !inputs.stdin_is_terminal() => inputs
            .read_stdin(limit)
            .map_err(|e| fail(Class::InvalidInput, format!("cannot read stdin: {e}")))?,
        None => return Ok(None),
    };
    // Only whitespace is no text either, where the text is required.
    let blank = bytes.iter().all(u8::is_ascii_whitespace) && (bytes.is_empty() || required);
    if blank {
        let flag = params::flag_name(name);
        let empty = if bytes.is_empty() {
            "empty"
        } else {
            "only whitespace"
        };
        return Err(match file.map(String::as_str) {
            Some("-") => fail(
                Class::InvalidInput,
                format!("--file -: stdin was {empty}, so there is no {name} to use"),
            ),
            Some(path) => fail(
                Class::InvalidInput,
                format!("--file {path} is {empty}, so there is no {name} to use"),
            ),
            // Nothing piped in (e.g. stdin is /dev/null): the text is missing, like any
            // other required parameter, and the message says where it was looked for.
            None if !bytes.is_empty() => fail(
                Class::InvalidInput,
                format!("stdin was only whitespace, so there is no {name} to use"),
            ),
            None => Failure::new(
                Class::Usage,
                format!("the {name} is missing: it was not given as an argument or with --{flag}, and stdin was empty"),
            )
            .hint(format!("give it as an argument, with --{flag} or --file, or pipe it in"))
            .into(),
        });
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| fail(Class::InvalidInput, "the input text is not valid UTF-8"))?;
    Ok(Some(text))
}

/// The settings part of a target's `--help`.
fn settings_help(tool: &Tool, config: &Config) -> String {
    if tool.spec.settings.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\nSettings of `{}` (--set NAME=VALUE, the environment, or config.toml):\n",
        tool.spec.id
    );
    out.push_str(&crate::commands::info::settings_table(&tool.spec, config));
    out
}

/// Plans the resumption of recorded job `record`: the same tool, task, parameters and
/// outputs, with its latest checkpoint; settings are resolved anew (they are never stored).
pub(crate) fn plan_resume(
    record: crate::job::store::JobRecord,
    catalog: &Catalog,
    config: &Config,
    config_path: &Path,
    json: bool,
    cancel_remote: bool,
) -> Result<JobPlan> {
    let Some(tool) = catalog.tool(&record.tool) else {
        return Err(Failure::new(
            Class::NotFound,
            format!(
                "job {} was run by tool `{}`, which is no longer installed",
                record.id, record.tool
            ),
        )
        .hint("install its plugin again, then resume the job")
        .into());
    };
    let task = tool.spec.task(&record.task).ok_or_else(|| {
        fail(
            Class::NotFound,
            format!(
                "tool `{}` no longer performs task `{}`",
                record.tool, record.task
            ),
        )
    })?;
    crate::owners::check_settings(tool, config)?;
    let settings = settings::resolve(&tool.spec, &[], config, config_path)?;
    let secrets = settings::secrets(&settings);
    let mut outputs = record.outputs;
    outputs.json = json;
    Ok(JobPlan {
        id: record.id,
        tool: tool.clone(),
        task,
        params: record.params,
        settings,
        secrets,
        outputs,
        json,
        detach: false,
        play: false,
        cancel_remote,
        yes: false,
        cancel_requested: false,
        collect: false,
        confirm_over: config.confirm_over(),
        resume: record.checkpoint,
        reasons: vec![format!("resuming a job of `{}`", record.tool)],
        picked: false,
        history: Vec::new(),
        conversation: None,
    })
}

#[cfg(test)]
mod tests {
    use launcher_sdk::{SettingSpec, ToolSpec};

    use super::*;
    use crate::catalog::Origin;

    struct Fake {
        stdin: Option<&'static str>,
    }

    impl Inputs for Fake {
        fn stdin_is_terminal(&self) -> bool {
            self.stdin.is_none()
        }
        fn read_stdin(&mut self, _limit: usize) -> std::io::Result<Vec<u8>> {
            Ok(self.stdin.unwrap_or_default().as_bytes().to_vec())
        }
        fn describe_tool(
            &mut self,
            tool: &Tool,
            _args: Map<String, Value>,
        ) -> Result<launcher_sdk::ToolSpec, String> {
            Ok(tool.spec.clone())
        }
        fn conversation(
            &mut self,
            id: Option<&str>,
        ) -> Result<Option<(Conversation, Vec<Message>)>> {
            if id.is_some_and(|id| id != "c1") {
                return Ok(None);
            }
            let conversation = Conversation {
                id: "c1".into(),
                tool: "base-chat".into(),
                model: Some("smol".into()),
                title: "hi".into(),
                messages: 2,
                updated_ms: 0,
            };
            Ok(Some((
                conversation,
                vec![
                    Message::new("user", "hi"),
                    Message::new("assistant", "hello"),
                ],
            )))
        }
    }

    fn tool(spec: ToolSpec) -> Tool {
        Tool {
            plugin: spec.id.clone(),
            version: "0.1.0".into(),
            library: PathBuf::from(format!("/plugins/lib{}.so", spec.id)),
            origin: Origin::Bundled,
            provenance: crate::owners::Provenance::Bundled,
            rank: 0,
            shadows: Vec::new(),
            spec,
        }
    }

    /// An offline voice, a paid cloud voice ready with a key alone only in name (it needs a
    /// region or endpoint too), a local server voice, a chat-and-complete model, a base
    /// model, a transcriber, and two tools with a same-named task of their own.
    fn catalog() -> Catalog {
        let key = || {
            SettingSpec::new("key", "LAUNCHER_TEST_UNSET_KEY", "the key")
                .required()
                .secret()
        };
        let specs = vec![
            ToolSpec::new("say", &["tts", "voices"]),
            ToolSpec::new("cloudy", &["tts"])
                .cloud()
                .priority(50)
                .setting(key())
                .setting(SettingSpec::new("region", "LAUNCHER_TEST_UNSET_REGION", ""))
                .setting(SettingSpec::new(
                    "endpoint",
                    "LAUNCHER_TEST_UNSET_ENDPOINT",
                    "",
                ))
                .require_one_of(&["region", "endpoint"]),
            ToolSpec::new("local-voice", &["tts"])
                .priority(10)
                .setting(SettingSpec::new("url", "LAUNCHER_TEST_UNSET_URL", ""))
                .require_one_of(&["url"]),
            ToolSpec::new("llm", &["chat", "complete"]),
            ToolSpec::new("base", &["complete"]).priority(100),
            ToolSpec::new("whisper", &["stt"]),
            ToolSpec::new("sd", &[]).custom_task(TaskSpec::new("samplers", "list samplers")),
            ToolSpec::new("comfy", &[]).custom_task(TaskSpec::new("samplers", "list nodes")),
        ];
        let mut catalog = Catalog::default();
        for (rank, spec) in specs.into_iter().enumerate() {
            catalog.tools.push(Tool { rank, ..tool(spec) });
        }
        catalog
    }

    fn plan_with(args: &[&str], config: &Config, stdin: Option<&'static str>) -> Result<Planned> {
        let raw: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        plan(
            &raw,
            &catalog(),
            config,
            Path::new("/home/config.toml"),
            &mut Fake { stdin },
        )
    }

    fn job(args: &[&str]) -> JobPlan {
        match plan_with(args, &Config::default(), None) {
            Ok(Planned::Job(plan)) => *plan,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn class(args: &[&str]) -> Class {
        let err = plan_with(args, &Config::default(), None).expect_err("should fail");
        err.downcast_ref::<Failure>()
            .unwrap_or_else(|| panic!("{args:?}: {err:#}"))
            .class
    }

    #[test]
    fn routing_picks_by_readiness_locality_and_priority() {
        let cases: &[(&[&str], &str, &str)] = &[
            // The local server voice outranks the offline one only once its URL is set.
            (&["tts", "hi"], "say", "tts"),
            (
                &["tts", "hi", "--set", "url=http://127.0.0.1:5000"],
                "local-voice",
                "tts",
            ),
            (
                &[
                    "tts",
                    "hi",
                    "--tool",
                    "cloudy",
                    "--set",
                    "key=k",
                    "--set",
                    "endpoint=e",
                ],
                "cloudy",
                "tts",
            ),
            // A tool id as the target; its first task.
            (&["llm", "why?"], "llm", "chat"),
            (
                &["llm", "--task", "complete", "once upon"],
                "llm",
                "complete",
            ),
            // `--to text` from text: chat wins over complete, whatever the priorities.
            (&["--to", "text", "why?"], "llm", "chat"),
            (&["--to", "audio", "--text", "hi"], "say", "tts"),
            // `asr` is an alias of `stt`.
            (&["asr", "--audio", "Cargo.toml"], "whisper", "stt"),
            (&["sd"], "sd", "samplers"),
        ];
        for (args, tool, task) in cases {
            let plan = job(args);
            assert_eq!(
                (plan.tool.spec.id.as_str(), plan.task.name.as_str()),
                (*tool, *task),
                "{args:?}"
            );
        }
    }

    #[test]
    fn a_cloud_tool_set_up_in_full_is_still_not_the_default() {
        let mut config = Config::default();
        let table = toml::from_str("key = \"k-123\"\nregion = \"eastus\"").unwrap();
        config.tools.insert("cloudy".into(), table);
        match plan_with(&["tts", "hi"], &config, None).unwrap() {
            Planned::Job(plan) => {
                assert_eq!(plan.tool.spec.id, "say");
                assert!(
                    plan.reasons
                        .iter()
                        .any(|r| r.contains("passed over `cloudy` (cloud")),
                    "{:?}",
                    plan.reasons
                );
            }
            other => panic!("{other:?}"),
        }
        config.defaults.insert("tts".into(), "cloudy".into());
        match plan_with(&["tts", "hi"], &config, None).unwrap() {
            Planned::Job(plan) => {
                assert_eq!(plan.tool.spec.id, "cloudy");
                assert_eq!(plan.secrets, ["k-123"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_configured_default_wins_and_must_exist() {
        let mut config = Config::default();
        config.defaults.insert("complete".into(), "llm".into());
        match plan_with(&["complete", "once"], &config, None).unwrap() {
            Planned::Job(plan) => assert_eq!(plan.tool.spec.id, "llm"),
            other => panic!("{other:?}"),
        }
        config.defaults.insert("complete".into(), "gone".into());
        let err = plan_with(&["complete", "once"], &config, None).unwrap_err();
        assert_eq!(
            err.downcast_ref::<Failure>().unwrap().class,
            Class::NotFound
        );
    }

    #[test]
    fn a_tool_is_ready_only_with_every_required_group() {
        // A key alone does not make the cloud voice ready: it needs a region or an endpoint.
        assert_eq!(class(&["cloudy", "hi", "--set", "key=k"]), Class::NotReady);
        assert_eq!(
            class(&["cloudy", "hi", "--set", "region=r"]),
            Class::NotReady
        );
        assert_eq!(class(&["local-voice", "hi"]), Class::NotReady);
        job(&["cloudy", "hi", "--set", "key=k", "--set", "region=r"]);
    }

    #[test]
    fn parameters_are_checked_before_any_plugin_runs() {
        let cases: &[(&[&str], Class)] = &[
            (&["tts", "hi", "--rate", "9"], Class::InvalidInput),
            (&["tts", "hi", "--rate", "-1"], Class::InvalidInput),
            (&["tts", "hi", "--rate=-1"], Class::InvalidInput),
            (&["tts", "hi", "--rate", "fast"], Class::InvalidInput),
            (&["tts", "hi", "--volume", "3"], Class::Usage),
            (&["tts"], Class::Usage),
            (&["tts", "hi", "--text", "ho"], Class::Usage),
            (&["stt", "no-such-file.wav"], Class::InvalidInput),
            (&["nosuch"], Class::NotFound),
            (&["voices", "extra"], Class::Usage),
            // A task of two tools' own is ambiguous without --tool.
            (&["samplers"], Class::Usage),
            (&["--to", "video", "--text", "hi"], Class::NotFound),
        ];
        for (args, expected) in cases {
            assert_eq!(class(args), *expected, "{args:?}");
        }
    }

    #[test]
    fn the_primary_input_comes_from_a_positional_stdin_or_a_flag() {
        assert_eq!(job(&["tts", "Hello"]).params["text"], "Hello");
        assert_eq!(job(&["tts", "--text", "Hello"]).params["text"], "Hello");
        assert_eq!(job(&["llm", "--prompt", "Why?"]).params["prompt"], "Why?");
        match plan_with(&["tts"], &Config::default(), Some("from a pipe")).unwrap() {
            Planned::Job(plan) => assert_eq!(plan.params["text"], "from a pipe"),
            other => panic!("{other:?}"),
        }
        let audio = job(&["stt", "Cargo.toml"]).params["audio"].clone();
        assert!(audio.as_str().unwrap().ends_with("Cargo.toml"), "{audio}");
        // Defaults are filled in from the manifest.
        assert!(job(&["tts", "x"]).params.get("rate").is_none());
    }

    #[test]
    fn help_and_resume_are_planned_without_a_job() {
        assert!(matches!(
            plan_with(&["--help"], &Config::default(), None).unwrap(),
            Planned::GeneralHelp
        ));
        match plan_with(&["tts", "--help"], &Config::default(), None).unwrap() {
            Planned::Help(text) => assert!(text.contains("--rate"), "{text}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            plan_with(&["--resume", "abc"], &Config::default(), None).unwrap(),
            Planned::Resume { .. }
        ));
        assert_eq!(class(&["tts", "--resume", "abc"]), Class::Usage);
    }
}
