//! Parameter values: checked against their [`ParamSpec`]s in one place, and read into typed
//! structs.
//!
//! The host checks every job's parameters with [`check_params`] before a plugin is called, and
//! the SDK's test runner does the same, so a plugin never repeats its manifest's ranges and
//! choices by hand; it reads what it was given with [`Job::params`](crate::Job::params).

use std::fmt;

use serde_json::{Map, Value};

use crate::error::PluginError;
use crate::types::{ParamSpec, ParamType, TaskSpec, ToolSpec};

/// A parameter value that its spec refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// The parameter's name.
    pub param: String,
    /// What is wrong, as a phrase that reads after the name: "is out of range (1 to 10)".
    pub problem: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parameter `{}` {}", self.param, self.problem)
    }
}

impl std::error::Error for ParamError {}

impl From<ParamError> for PluginError {
    fn from(err: ParamError) -> PluginError {
        PluginError::invalid_input(err.to_string())
    }
}

/// Checks `given` against `specs`: no unknown names, every required one present, each value of
/// the declared type, range, length and choices. Returns the values with defaults filled in.
pub fn check_params(
    specs: &[ParamSpec],
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, ParamError> {
    if let Some(name) = given.keys().find(|k| !specs.iter().any(|s| &s.name == *k)) {
        return Err(ParamError {
            param: name.clone(),
            problem: "is not a parameter of this task".to_string(),
        });
    }
    let mut checked = Map::new();
    for spec in specs {
        match given.get(&spec.name) {
            Some(value) => {
                let value = check_value(spec, value).map_err(|problem| ParamError {
                    param: spec.name.clone(),
                    problem,
                })?;
                checked.insert(spec.name.clone(), value);
            }
            None => {
                if let Some(default) = &spec.default {
                    checked.insert(spec.name.clone(), default.clone());
                } else if spec.required {
                    return Err(ParamError {
                        param: spec.name.clone(),
                        problem: "is required".to_string(),
                    });
                }
            }
        }
    }
    Ok(checked)
}

/// Checks one value (an array of values for a parameter that may be repeated) against `spec`;
/// returns it unchanged, or what is wrong with it.
pub fn check_value(spec: &ParamSpec, value: &Value) -> Result<Value, String> {
    match (spec.multiple, value) {
        (true, Value::Array(items)) => {
            for item in items {
                check_one(spec, item)?;
            }
            if spec.required && items.is_empty() {
                return Err("needs at least one value".to_string());
            }
        }
        (true, single) => check_one(spec, single)?,
        (false, Value::Array(_)) => return Err("takes one value, not several".to_string()),
        (false, single) => check_one(spec, single)?,
    }
    Ok(value.clone())
}

fn check_one(spec: &ParamSpec, value: &Value) -> Result<(), String> {
    match &spec.ty {
        ParamType::String | ParamType::File => {
            let Some(text) = value.as_str() else {
                return Err(format!("should be text, not {}", shape(value)));
            };
            if spec.required && text.trim().is_empty() {
                return Err("is empty".to_string());
            }
            if spec.ty == ParamType::String {
                let chars = text.chars().count() as f64;
                if let Some(min) = spec.min.filter(|min| chars < *min) {
                    return Err(format!("is shorter than {min} characters"));
                }
                if let Some(max) = spec.max.filter(|max| chars > *max) {
                    return Err(format!("is longer than {max} characters"));
                }
            }
        }
        ParamType::Integer => {
            if value.as_i64().is_none() {
                return Err(format!("should be a whole number, not {}", shape(value)));
            }
            in_range(spec, value.as_f64().unwrap_or_default())?;
        }
        ParamType::Number => {
            let Some(n) = value.as_f64().filter(|n| n.is_finite()) else {
                return Err(format!("should be a number, not {}", shape(value)));
            };
            in_range(spec, n)?;
        }
        ParamType::Boolean => {
            if !value.is_boolean() {
                return Err(format!("should be true or false, not {}", shape(value)));
            }
        }
        // A type from a newer SDK: the plugin that declared it checks it.
        ParamType::Other(_) => return Ok(()),
    }
    if !spec.choices.is_empty() {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if !spec.choices.iter().any(|c| c == &text) {
            return Err(format!(
                "is `{text}`, which is not one of {}",
                spec.choices.join(", ")
            ));
        }
    }
    Ok(())
}

fn in_range(spec: &ParamSpec, n: f64) -> Result<(), String> {
    match (spec.min, spec.max) {
        (Some(min), Some(max)) if n < min || n > max => {
            Err(format!("is {n}, out of range ({min} to {max})"))
        }
        (Some(min), None) if n < min => Err(format!("is {n}, below the minimum {min}")),
        (None, Some(max)) if n > max => Err(format!("is {n}, above the maximum {max}")),
        _ => Ok(()),
    }
}

fn shape(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("`{n}`"),
        Value::String(s) => format!("the text `{}`", s.chars().take(40).collect::<String>()),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// Returns the parameters of `task` as performed by `tool`: the task's common ones, with the
/// tool's own of the same name taking their place, then the tool's others.
pub fn params_of(task: &TaskSpec, tool: &ToolSpec) -> Vec<ParamSpec> {
    let own: Vec<&ParamSpec> = tool
        .params
        .iter()
        .filter(|p| p.applies_to(&task.name))
        .collect();
    let mut params: Vec<ParamSpec> = task
        .params
        .iter()
        .map(|p| {
            own.iter()
                .find(|t| t.name == p.name)
                .copied()
                .unwrap_or(p)
                .clone()
        })
        .collect();
    for own in own {
        if !params.iter().any(|p| p.name == own.name) {
            params.push(own.clone());
        }
    }
    params
}

/// Reads parameters into `T`, naming the parameter whose value does not fit.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(
    params: &Map<String, Value>,
) -> Result<T, PluginError> {
    let value = Value::Object(params.clone());
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path.is_empty() || path == "." {
            // A missing field has no path; serde says which in its message.
            PluginError::invalid_input(format!("parameters: {inner}"))
        } else {
            PluginError::invalid_input(format!("parameter `{path}`: {inner}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn specs() -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("text", ParamType::String, "").required(),
            ParamSpec::new("rate", ParamType::Number, "")
                .range(0.5, 2.0)
                .default_value(1.0),
            ParamSpec::new("steps", ParamType::Integer, "").range(1.0, 10.0),
            ParamSpec::new("format", ParamType::String, "").choices(["wav", "mp3"]),
            ParamSpec::new("image", ParamType::File, "").multiple(),
        ]
    }

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn defaults_fill_in_and_good_values_pass() {
        let checked = check_params(&specs(), &map(json!({"text": "hi", "steps": 3}))).unwrap();
        assert_eq!(checked["rate"], json!(1.0));
        assert_eq!(checked["steps"], json!(3));
    }

    #[test]
    fn each_kind_of_bad_value_names_its_parameter() {
        let cases = [
            (json!({}), "text", "is required"),
            (json!({"text": "  "}), "text", "is empty"),
            (json!({"text": 5}), "text", "should be text"),
            (json!({"text": "a", "rate": 3}), "rate", "out of range"),
            (
                json!({"text": "a", "rate": "fast"}),
                "rate",
                "should be a number",
            ),
            (json!({"text": "a", "steps": 2.5}), "steps", "whole number"),
            (
                json!({"text": "a", "format": "flac"}),
                "format",
                "not one of wav, mp3",
            ),
            (
                json!({"text": "a", "image": [1]}),
                "image",
                "should be text",
            ),
            (
                json!({"text": "a", "steps": [1, 2]}),
                "steps",
                "not several",
            ),
            (
                json!({"text": "a", "volume": 1}),
                "volume",
                "not a parameter",
            ),
        ];
        for (given, param, problem) in cases {
            let err = check_params(&specs(), &map(given.clone())).unwrap_err();
            assert_eq!(err.param, param, "{given}");
            assert!(err.problem.contains(problem), "{given}: {}", err.problem);
        }
    }

    #[test]
    fn typed_params_name_the_bad_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Params {
            text: String,
            rate: f64,
        }
        let ok: Params = typed(&map(json!({"text": "a", "rate": 1.5}))).unwrap();
        assert_eq!(ok.rate, 1.5);
        let err = typed::<Params>(&map(json!({"text": "a", "rate": "x"}))).unwrap_err();
        assert!(err.message.contains("`rate`"), "{}", err.message);
        let err = typed::<Params>(&map(json!({"rate": 1.0}))).unwrap_err();
        assert!(err.message.contains("text"), "{}", err.message);
    }
}
