//! The parameters of a job: declared by its task and tool, parsed from the command line, and
//! checked before any plugin is called.

use std::path::Path;

use clap::{Arg, ArgAction, ArgMatches, Command};
use launcher_sdk::serde_json::{Map, Number, Value};
use launcher_sdk::{ParamSpec, ParamType, TaskSpec};

use crate::failure::{Class, fail};

/// The most text a single parameter may carry; more is almost surely a mistake (a binary file
/// piped in) and would only be refused by the service after a long upload.
pub(crate) const MAX_TEXT_BYTES: usize = 4 * 1024 * 1024;

pub(crate) use launcher_sdk::params_of;

/// Returns the name of the parameter that takes the job's main text (from stdin, `--file` or
/// the positional argument): the task's primary input, when it is text.
pub(crate) fn text_param<'p>(task: &TaskSpec, params: &'p [ParamSpec]) -> Option<&'p str> {
    let slot = task.primary_input()?;
    params
        .iter()
        .find(|p| p.name == slot.name && p.ty == ParamType::String)
        .map(|p| p.name.as_str())
}

/// Returns the command-line spelling of a parameter name.
pub(crate) fn flag_name(name: &str) -> String {
    name.replace('_', "-")
}

/// Adds one clap argument per parameter to `cmd`.
pub(crate) fn add_args(mut cmd: Command, params: &[ParamSpec]) -> Command {
    for param in params {
        let mut arg = Arg::new(param.name.clone())
            .long(flag_name(&param.name))
            .help(describe(param))
            .value_name(param.ty.as_str().to_uppercase())
            .help_heading("Parameters");
        arg = match &param.ty {
            ParamType::Boolean => arg
                .num_args(0..=1)
                .default_missing_value("true")
                .require_equals(true)
                .value_name("BOOL"),
            _ if param.multiple => arg.action(ArgAction::Append),
            _ => arg.action(ArgAction::Set),
        };
        // A prompt may be given as --text or --prompt, whichever the task calls it, also
        // when it is not the main input (img2vid's main input is the image).
        if param.name == "text" || param.name == "prompt" {
            let other = if param.name == "text" {
                "prompt"
            } else {
                "text"
            };
            if !params.iter().any(|p| p.name == other) {
                arg = arg.visible_alias(other);
            }
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

fn describe(param: &ParamSpec) -> String {
    let mut help = param.description.clone();
    let mut facts = Vec::new();
    if param.required {
        facts.push("required".to_string());
    }
    if !param.choices.is_empty() {
        facts.push(format!("one of: {}", param.choices.join(", ")));
    }
    match (param.min, param.max, &param.ty) {
        (Some(min), Some(max), ParamType::Integer | ParamType::Number) => {
            facts.push(format!("{min} to {max}"))
        }
        (Some(min), None, ParamType::Integer | ParamType::Number) => {
            facts.push(format!("at least {min}"))
        }
        (None, Some(max), ParamType::Integer | ParamType::Number) => {
            facts.push(format!("at most {max}"))
        }
        _ => {}
    }
    if let Some(default) = &param.default {
        facts.push(format!("default: {}", show_value(default)));
    }
    if param.multiple {
        facts.push("may be repeated".to_string());
    }
    if !facts.is_empty() {
        if !help.is_empty() {
            help.push(' ');
        }
        help.push_str(&format!("[{}]", facts.join("; ")));
    }
    // Escaped before clap sees it: clap would strip escape sequences silently.
    crate::escape::printable(&help).into_owned()
}

/// Renders a JSON value the way a user would type it.
pub(crate) fn show_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Collects the values given on the command line, typed and checked against `params`.
///
/// `text` is the main text when it came from elsewhere (a file or stdin).
pub(crate) fn collect(
    params: &[ParamSpec],
    matches: &ArgMatches,
    text_name: Option<&str>,
    text: Option<String>,
) -> anyhow::Result<Map<String, Value>> {
    let mut values = Map::new();
    for param in params {
        let given: Vec<String> = matches
            .get_many::<String>(&param.name)
            .map(|v| v.cloned().collect())
            .unwrap_or_default();
        let given = if given.is_empty() && text_name == Some(param.name.as_str()) {
            text.clone().into_iter().collect()
        } else {
            given
        };
        // Missing parameters are left to the SDK's check, which fills in defaults and names
        // the required ones, after every source of values (a positional too) was heard.
        if given.is_empty() {
            continue;
        }
        let mut typed = Vec::with_capacity(given.len());
        for raw in &given {
            typed.push(check(param, raw)?);
        }
        let value = if param.multiple {
            Value::Array(typed)
        } else {
            typed.pop().expect("one value was given")
        };
        values.insert(param.name.clone(), value);
    }
    Ok(values)
}

/// Parses one value of `param` as typed on the command line, then checks it against the
/// spec with the SDK's checks (the same ones a plugin's tests run).
pub(crate) fn check(param: &ParamSpec, raw: &str) -> anyhow::Result<Value> {
    let flag = flag_name(&param.name);
    let invalid = |why: String| {
        // "is empty" reads on from the flag; "`x` is not a number" after a colon.
        let joint = if why.starts_with("is ") { " " } else { ": " };
        fail(Class::InvalidInput, format!("--{flag}{joint}{why}"))
    };
    let value = match &param.ty {
        ParamType::String | ParamType::Other(_) => {
            if raw.len() > MAX_TEXT_BYTES {
                return Err(invalid(format!(
                    "{} bytes is more than the {} MiB launcher accepts",
                    raw.len(),
                    MAX_TEXT_BYTES / (1024 * 1024)
                )));
            }
            Value::String(raw.to_string())
        }
        ParamType::Integer => {
            let n: i64 = raw
                .trim()
                .parse()
                .map_err(|_| invalid(format!("`{raw}` is not a whole number")))?;
            Value::Number(n.into())
        }
        ParamType::Number => {
            let n: f64 = raw
                .trim()
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite())
                .ok_or_else(|| invalid(format!("`{raw}` is not a number")))?;
            Value::Number(Number::from_f64(n).expect("finite"))
        }
        ParamType::Boolean => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Value::Bool(true),
            "false" | "no" | "0" | "off" => Value::Bool(false),
            _ => return Err(invalid(format!("`{raw}` is not true or false"))),
        },
        ParamType::File => {
            let path = Path::new(raw);
            let meta = std::fs::metadata(path)
                .map_err(|e| invalid(format!("cannot read `{raw}`: {e}")))?;
            if !meta.is_file() {
                return Err(invalid(format!("`{raw}` is not a file")));
            }
            let absolute = path
                .canonicalize()
                .map_err(|e| invalid(format!("cannot resolve `{raw}`: {e}")))?;
            Value::String(absolute.to_string_lossy().into_owned())
        }
    };
    let single = ParamSpec {
        multiple: false,
        ..param.clone()
    };
    launcher_sdk::check_value(&single, &value).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(name: &str) -> ParamSpec {
        ParamSpec::new(name, ParamType::Number, "").range(0.5, 2.0)
    }

    #[test]
    fn numbers_are_typed_and_ranged() {
        assert_eq!(check(&number("rate"), "1.5").unwrap(), Value::from(1.5));
        assert!(check(&number("rate"), "fast").is_err());
        assert!(check(&number("rate"), "3").is_err());
        assert!(check(&number("rate"), "NaN").is_err());
        let int = ParamSpec::new("steps", ParamType::Integer, "").range(1.0, 10.0);
        assert_eq!(check(&int, "7").unwrap(), Value::from(7));
        assert!(check(&int, "7.5").is_err());
        assert!(check(&int, "0").is_err());
    }

    #[test]
    fn choices_and_empty_text_are_checked() {
        let choice = ParamSpec::new("format", ParamType::String, "").choices(["wav", "mp3"]);
        assert!(check(&choice, "mp3").is_ok());
        assert!(check(&choice, "flac").is_err());
        let text = ParamSpec::new("text", ParamType::String, "").required();
        assert!(check(&text, "  \n").is_err());
        assert!(check(&text, &"a".repeat(MAX_TEXT_BYTES + 1)).is_err());
    }

    #[test]
    fn tool_params_replace_task_params_of_the_same_name() {
        let task = launcher_sdk::task_spec("tts").unwrap();
        let tool = launcher_sdk::ToolSpec::new("t", &["tts"])
            .param(ParamSpec::new("rate", ParamType::Integer, "wpm"))
            .param(ParamSpec::new("style", ParamType::String, ""));
        let params = params_of(&task, &tool);
        assert_eq!(
            params.iter().find(|p| p.name == "rate").unwrap().ty,
            ParamType::Integer
        );
        assert!(params.iter().any(|p| p.name == "style"));
        assert_eq!(text_param(&task, &params), Some("text"));
    }
}
