//! Workflows in ComfyUI's API format and the mapping that names their parameters.
//!
//! A workflow is the graph ComfyUI's "Export (API)" writes: node ids mapped to
//! `{"class_type", "inputs"}`, where an input is a literal value or a link `[node_id, output]`.
//! The mapping says which node inputs a user may set, under which name and type. It lives in
//! the workflow file under a top-level `"launcher"` key (removed before the graph is sent), or
//! in a file beside it named like the workflow with `.launcher.json` instead of `.json`
//! (`portrait.json` → `portrait.launcher.json`), which wins when both exist:
//!
//! ```json
//! {
//!   "launcher": {
//!     "description": "portraits in the house style",
//!     "params": {
//!       "prompt": {"node": "6", "input": "text", "required": true},
//!       "seed":   {"node": ["3", "12"], "input": "seed"},
//!       "denoise": {"node": "3", "input": "denoise", "min": 0, "max": 1,
//!                   "description": "how much to change"},
//!       "image":  {"node": "10", "input": "image", "type": "image"}
//!     }
//!   },
//!   "3": {"class_type": "KSampler", "inputs": {"seed": 5, "denoise": 1.0, "...": "..."}}
//! }
//! ```
//!
//! Each parameter names a `node` (or several, which all get the value) and an `input` of it.
//! Its `type` is `string`, `integer`, `number`, `boolean` or `image` (a file uploaded to
//! ComfyUI's input folder; its uploaded name becomes the input's value); without one it
//! follows the input's current value in the graph (a `LoadImage` node's `image` is an image).
//! Its default is the input's current value unless `default` says otherwise (`null`: none, the
//! graph's value stays). A parameter named `seed` defaults to -1, and -1 picks a new random
//! seed: ComfyUI answers a graph it has run before from its cache, without new images.
//! `min`, `max`, `choices`, `required` and `description` are as in a manifest. Names are
//! lowercase letters, digits and underscores; the command line spells them with dashes.

use std::path::{Path, PathBuf};

use launcher_sdk::serde_json::{self, Map, Value};
use launcher_sdk::{ParamSpec, ParamType, PluginError};
use serde::Deserialize;

/// The built-in workflows, by the task they perform.
pub const BUILTIN: [(&str, &str); 2] = [
    ("txt2img", include_str!("../workflows/txt2img.json")),
    ("img2img", include_str!("../workflows/img2img.json")),
];

/// The top-level key of a workflow file that holds its mapping.
const MAPPING_KEY: &str = "launcher";

/// A workflow with its named parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    /// The graph in API format, without the mapping.
    pub graph: Map<String, Value>,
    /// The parameters, by name.
    pub params: Vec<Param>,
    /// What the workflow does, from its mapping.
    pub description: String,
}

/// One named parameter of a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Its name on the command line.
    pub name: String,
    /// The nodes whose input it sets.
    pub nodes: Vec<String>,
    /// The input it sets on each of them.
    pub input: String,
    /// Whether its value is an image file to upload.
    pub image: bool,
    /// The parameter as the host checks it.
    pub spec: ParamSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Mapping {
    #[serde(default)]
    description: String,
    params: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    node: Nodes,
    input: String,
    #[serde(default, rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    description: String,
    /// Absent: the graph's value; `null`: none.
    #[serde(default, deserialize_with = "present")]
    default: Option<Value>,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    choices: Vec<String>,
    #[serde(default)]
    required: bool,
}

/// Keeps an explicit `null` apart from an absent field: `Some(Value::Null)`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Nodes {
    One(String),
    Many(Vec<String>),
}

impl Workflow {
    /// Returns the built-in workflow for `task`.
    pub fn builtin(task: &str) -> Option<Workflow> {
        let (_, text) = BUILTIN.iter().find(|(t, _)| *t == task)?;
        Some(Workflow::parse(text, None, task).expect("the built-in workflows are valid"))
    }

    /// Reads the workflow at `path`, with its mapping from the file or beside it.
    pub fn load(path: &Path) -> Result<Workflow, PluginError> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| {
            PluginError::invalid_input(format!("cannot read workflow `{shown}`: {e}"))
        })?;
        let sidecar = sidecar_of(path);
        let mapping = match std::fs::read_to_string(&sidecar) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(PluginError::invalid_input(format!(
                    "cannot read the mapping `{}`: {e}",
                    sidecar.display()
                )));
            }
        };
        Workflow::parse(&text, mapping.as_deref(), &shown.to_string())
    }

    /// Parses a workflow file's text and, when given, a sidecar mapping's; `name` is for
    /// messages.
    pub fn parse(text: &str, sidecar: Option<&str>, name: &str) -> Result<Workflow, PluginError> {
        let bad = |why: String| PluginError::invalid_input(format!("workflow `{name}`: {why}"));
        let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let Value::Object(mut graph) = value else {
            return Err(bad("not a JSON object of nodes".into()));
        };
        let inline = graph.remove(MAPPING_KEY);
        if graph.contains_key("nodes") && graph.contains_key("links") {
            return Err(bad(
                "this is ComfyUI's UI format; export it with \"Export (API)\" (or \"Save (API Format)\")"
                    .into(),
            ));
        }
        for (id, node) in &graph {
            let ok = node.get("class_type").is_some_and(Value::is_string)
                && node.get("inputs").is_some_and(Value::is_object);
            if !ok {
                return Err(bad(format!(
                    "node `{id}` is not in API format (an object with `class_type` and `inputs`)"
                )));
            }
        }
        let mapping = match (sidecar, inline) {
            (Some(text), _) => serde_json::from_str::<Value>(text)
                .map_err(|e| bad(format!("the mapping beside it is not JSON: {e}")))?,
            (None, Some(inline)) => inline,
            (None, None) => {
                return Err(bad(format!(
                    "it names no parameters: add a `\"{MAPPING_KEY}\": {{\"params\": {{...}}}}` \
                     key or a `.launcher.json` file beside it"
                )));
            }
        };
        let mapping: Mapping = serde_json::from_value(mapping)
            .map_err(|e| bad(format!("the mapping cannot be read: {e}")))?;
        let mut params = Vec::new();
        for (pname, entry) in mapping.params {
            let entry: Entry = serde_json::from_value(entry)
                .map_err(|e| bad(format!("parameter `{pname}`: {e}")))?;
            params.push(param(&graph, pname, entry).map_err(bad)?);
        }
        Ok(Workflow {
            graph,
            params,
            description: mapping.description,
        })
    }

    /// Returns the parameters as the host checks them.
    pub fn specs(&self) -> Vec<ParamSpec> {
        self.params.iter().map(|p| p.spec.clone()).collect()
    }

    /// Returns the class of node `id`.
    pub fn class_of(&self, id: &str) -> Option<&str> {
        self.graph.get(id)?.get("class_type")?.as_str()
    }

    /// Returns the value `param`'s input has on its first node.
    pub fn value(&self, param: &Param) -> Option<&Value> {
        self.graph.get(param.nodes.first()?)?["inputs"].get(&param.input)
    }

    /// Sets parameter `name`'s input on each of its nodes to `value`.
    pub fn set(&mut self, param: &Param, value: Value) {
        for node in &param.nodes {
            if let Some(Value::Object(inputs)) =
                self.graph.get_mut(node).and_then(|n| n.get_mut("inputs"))
            {
                inputs.insert(param.input.clone(), value.clone());
            }
        }
    }
}

/// Returns the sidecar mapping file of the workflow at `path`.
pub fn sidecar_of(path: &Path) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!("{stem}.launcher.json"))
}

/// Finds the workflow a user named: a path, or a name in the workflows directory (with or
/// without `.json`).
pub fn locate(given: &str, dir: Option<&str>) -> Result<PathBuf, PluginError> {
    let path = PathBuf::from(given);
    if path.is_file() {
        return Ok(path);
    }
    if let Some(dir) = dir {
        let dir = Path::new(dir);
        for candidate in [dir.join(given), dir.join(format!("{given}.json"))] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        return Err(PluginError::invalid_input(format!(
            "no workflow `{given}`: it is neither a file nor a workflow in `{}` (available: {})",
            dir.display(),
            list_dir(dir).join(", ")
        )));
    }
    Err(PluginError::invalid_input(format!(
        "no workflow file `{given}` (set `workflows` in [tools.comfyui] to name workflows in a directory)"
    )))
}

/// Returns the names of the workflows in `dir`, sorted.
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".json")?;
            (!stem.ends_with(".launcher")).then(|| stem.to_string())
        })
        .collect();
    names.sort();
    names
}

fn param(graph: &Map<String, Value>, name: String, entry: Entry) -> Result<Param, String> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid || name == "workflow" {
        return Err(format!(
            "parameter `{name}` must be lowercase letters, digits and underscores, and not `workflow`"
        ));
    }
    let nodes = match entry.node {
        Nodes::One(id) => vec![id],
        Nodes::Many(ids) => ids,
    };
    let first = nodes
        .first()
        .ok_or_else(|| format!("parameter `{name}` names no node"))?;
    for id in &nodes {
        if !graph.contains_key(id) {
            return Err(format!(
                "parameter `{name}` names node `{id}`, which is not in the graph"
            ));
        }
    }
    let node = &graph[first];
    let current = node["inputs"].get(&entry.input);
    if current.is_some_and(Value::is_array) {
        return Err(format!(
            "parameter `{name}` names input `{}` of node `{first}`, which is a link to another node",
            entry.input
        ));
    }
    let class = node["class_type"].as_str().unwrap_or_default();
    let ty = match entry.ty.as_deref() {
        Some("string") => ParamType::String,
        Some("integer") => ParamType::Integer,
        Some("number") => ParamType::Number,
        Some("boolean") => ParamType::Boolean,
        Some("image" | "file") => ParamType::File,
        Some(other) => {
            return Err(format!(
                "parameter `{name}` has type `{other}`; use string, integer, number, boolean or image"
            ));
        }
        None if class == "LoadImage" && entry.input == "image" => ParamType::File,
        None => match current {
            Some(Value::String(_)) => ParamType::String,
            Some(Value::Bool(_)) => ParamType::Boolean,
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => ParamType::Integer,
            Some(Value::Number(_)) => ParamType::Number,
            _ => {
                return Err(format!(
                    "parameter `{name}`: node `{first}` has no input `{}` to take its type from; give a `type`",
                    entry.input
                ));
            }
        },
    };
    let image = ty == ParamType::File;
    let description = if entry.description.is_empty() {
        format!("{class} (node {first}) input `{}`", entry.input)
    } else {
        entry.description
    };
    let mut spec = ParamSpec::new(name.clone(), ty, description);
    let default = match entry.default {
        Some(Value::Null) => None,
        Some(value) => Some(value),
        None if name == "seed" => Some(Value::from(-1)),
        None if image || entry.required => None,
        None => current.cloned(),
    };
    spec.default = default;
    spec.min = entry.min.or((name == "seed").then_some(-1.0));
    spec.max = entry.max;
    spec.choices = entry.choices;
    spec.required = entry.required;
    Ok(Param {
        name,
        nodes,
        input: entry.input,
        image,
        spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use launcher_sdk::serde_json::json;

    #[test]
    fn builtins_parse_with_their_parameters() {
        let txt = Workflow::builtin("txt2img").unwrap();
        let names: Vec<&str> = txt.params.iter().map(|p| p.name.as_str()).collect();
        for name in [
            "prompt", "negative", "width", "height", "steps", "seed", "count", "model",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        let width = txt.params.iter().find(|p| p.name == "width").unwrap();
        assert_eq!(width.spec.ty, ParamType::Integer);
        assert_eq!(width.spec.default, Some(json!(512)));
        let seed = txt.params.iter().find(|p| p.name == "seed").unwrap();
        assert_eq!(seed.spec.default, Some(json!(-1)));
        let model = txt.params.iter().find(|p| p.name == "model").unwrap();
        assert_eq!(model.spec.default, None);
        assert!(
            txt.params
                .iter()
                .find(|p| p.name == "prompt")
                .unwrap()
                .spec
                .required
        );
        assert!(!txt.graph.contains_key("launcher"));
        let img = Workflow::builtin("img2img").unwrap();
        assert!(img.params.iter().find(|p| p.name == "image").unwrap().image);
    }

    #[test]
    fn types_and_defaults_follow_the_graph() {
        let text = json!({
            "launcher": {"params": {
                "denoise": {"node": "3", "input": "denoise"},
                "steps": {"node": ["3", "4"], "input": "steps"},
                "picture": {"node": "9", "input": "image"}
            }},
            "3": {"class_type": "KSampler", "inputs": {"denoise": 0.5, "steps": 30}},
            "4": {"class_type": "KSampler", "inputs": {"steps": 30}},
            "9": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}
        })
        .to_string();
        let mut wf = Workflow::parse(&text, None, "t").unwrap();
        let specs = wf.specs();
        assert_eq!(specs[0].ty, ParamType::Number);
        assert_eq!(specs[0].default, Some(json!(0.5)));
        assert_eq!(specs[1].ty, ParamType::File);
        assert_eq!(specs[1].default, None);
        assert_eq!(specs[2].ty, ParamType::Integer);
        let steps = wf.params[2].clone();
        wf.set(&steps, json!(7));
        assert_eq!(wf.graph["3"]["inputs"]["steps"], 7);
        assert_eq!(wf.graph["4"]["inputs"]["steps"], 7);
    }

    #[test]
    fn a_sidecar_mapping_wins_and_mistakes_are_named() {
        let graph = json!({"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "hi"}}});
        let sidecar = json!({"params": {"prompt": {"node": "6", "input": "text"}}}).to_string();
        let wf = Workflow::parse(&graph.to_string(), Some(&sidecar), "t").unwrap();
        assert_eq!(wf.params[0].spec.default, Some(json!("hi")));

        let err = Workflow::parse(&graph.to_string(), None, "t").unwrap_err();
        assert!(
            err.message.contains("names no parameters"),
            "{}",
            err.message
        );
        let bad = json!({"params": {"prompt": {"node": "99", "input": "text"}}}).to_string();
        let err = Workflow::parse(&graph.to_string(), Some(&bad), "t").unwrap_err();
        assert!(err.message.contains("node `99`"), "{}", err.message);
        let ui = json!({"nodes": [], "links": []}).to_string();
        let err = Workflow::parse(&ui, None, "t").unwrap_err();
        assert!(err.message.contains("Export (API)"), "{}", err.message);
        let caps = json!({"params": {"Prompt": {"node": "6", "input": "text"}}}).to_string();
        assert!(Workflow::parse(&graph.to_string(), Some(&caps), "t").is_err());
    }

    #[test]
    fn names_resolve_in_the_workflows_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("portrait.json"), "{}").unwrap();
        std::fs::write(dir.path().join("portrait.launcher.json"), "{}").unwrap();
        let d = dir.path().to_str();
        assert_eq!(
            locate("portrait", d).unwrap(),
            dir.path().join("portrait.json")
        );
        let err = locate("landscape", d).unwrap_err();
        assert!(
            err.message.contains("available: portrait"),
            "{}",
            err.message
        );
        assert_eq!(
            sidecar_of(Path::new("/a/b.json")),
            PathBuf::from("/a/b.launcher.json")
        );
    }
}
