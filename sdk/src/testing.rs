//! Runs a plugin through its exported ABI functions in-process, for plugin tests.
//!
//! Jobs are checked against the manifest the way the host checks them (unknown parameters,
//! types, ranges, choices, defaults), so a test sees what a real run would see.
//!
//! ```ignore
//! let run = launcher_sdk::testing::run::<MyPlugin>("my-tool", &settings, job);
//! assert_eq!(run.output("audio").unwrap().1.len(), 44 + 32000);
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::abi::{CallError, Event, EventHandler, PluginLib};
use crate::cost::Cost;
use crate::error::PluginError;
use crate::plugin::Plugin;
use crate::types::{
    CreateRequest, DescribeRequest, Job, JobResult, LogLine, Manifest, OutputHeader, Progress,
    Settings, ToolSpec,
};

/// What a job did, as the host saw it through the ABI.
#[derive(Debug)]
pub struct Run {
    /// Each output's header and all its bytes, in the order they were opened.
    pub outputs: Vec<(OutputHeader, Vec<u8>)>,
    /// The names of the outputs the plugin closed (declared complete).
    pub closed: Vec<String>,
    /// The progress events.
    pub progress: Vec<Progress>,
    /// The log lines.
    pub logs: Vec<LogLine>,
    /// The checkpoints recorded, in order.
    pub checkpoints: Vec<Value>,
    /// The costs the plugin asked to confirm, in order.
    pub costs: Vec<Cost>,
    /// Every write to every output, in order: the output's name and the bytes of that one
    /// write. Shows whether text arrived piece by piece.
    pub writes: Vec<(String, Vec<u8>)>,
    /// How the job ended.
    pub result: Result<JobResult, CallError>,
}

impl Run {
    /// Returns the output named `name`.
    pub fn output(&self, name: &str) -> Option<&(OutputHeader, Vec<u8>)> {
        self.outputs.iter().find(|(h, _)| h.name == name)
    }

    /// Returns the output named `name` as text.
    pub fn text(&self, name: &str) -> Option<String> {
        self.output(name)
            .map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned())
    }

    /// Returns the error the job ended with, if it was the plugin's own.
    pub fn error(&self) -> Option<&PluginError> {
        match &self.result {
            Err(CallError::Plugin(err)) => Some(err),
            _ => None,
        }
    }
}

/// Returns the manifest as the host would read it through the ABI.
pub fn manifest<P: Plugin>() -> Result<Manifest, CallError> {
    PluginLib::of::<P>().manifest()
}

/// Asks the plugin to describe its tools as the host would, through the ABI.
pub fn describe<P: Plugin>(request: &DescribeRequest) -> Result<Vec<ToolSpec>, CallError> {
    Ok(PluginLib::of::<P>()
        .describe(request)?
        .map(|r| r.tools)
        .unwrap_or_default())
}

/// Creates `tool` with `settings` and runs `job` on it through the ABI.
pub fn run<P: Plugin>(tool: &str, settings: &Settings, job: Job) -> Run {
    run_with_cancel::<P>(tool, settings, job, Arc::new(AtomicBool::new(false)))
}

/// Like [`run`], with a flag another thread may set to cancel the job.
///
/// The job's parameters are checked against the tool's manifest first (its task's common
/// parameters and its own, with defaults filled in); a refused job ends with the
/// invalid-input error the host would have given, without calling the plugin. Settings the
/// tool declares with a default get it when `settings` lacks them, as the host does.
pub fn run_with_cancel<P: Plugin>(
    tool: &str,
    settings: &Settings,
    job: Job,
    cancel: Arc<AtomicBool>,
) -> Run {
    Runner::new(tool, settings).cancel(cancel).run::<P>(job)
}

/// What [`Runner::watch`] calls after every event.
type Watch<'w> = Box<dyn FnMut(&Run) -> bool + 'w>;

/// Runs a job like [`run`] with more control: the user's configuration of the plugin's
/// tools (for tools from [`Plugin::describe`]), a cancel flag, and a watcher that sees the
/// job's events as they happen.
pub struct Runner<'w> {
    tool: String,
    settings: Settings,
    config: serde_json::Map<String, Value>,
    cancel: Arc<AtomicBool>,
    watch: Option<Watch<'w>>,
    accept_costs: bool,
}

impl<'w> Runner<'w> {
    /// Returns a runner for `tool` with `settings`.
    pub fn new(tool: &str, settings: &Settings) -> Runner<'w> {
        Runner {
            tool: tool.to_string(),
            settings: settings.clone(),
            config: serde_json::Map::new(),
            cancel: Arc::new(AtomicBool::new(false)),
            watch: None,
            accept_costs: true,
        }
    }

    /// Declines every cost the job asks to confirm, as a user answering "no" would; by
    /// default costs are accepted (and recorded in [`Run::costs`]).
    pub fn decline_costs(mut self) -> Self {
        self.accept_costs = false;
        self
    }

    /// Sets the configuration the host would describe the plugin's tools with: the
    /// `[tools.<id>]` tables as JSON (see [`DescribeRequest::config`]).
    pub fn config(mut self, config: serde_json::Map<String, Value>) -> Self {
        self.config = config;
        self
    }

    /// Sets a flag another thread may set to cancel the job.
    pub fn cancel(mut self, cancel: Arc<AtomicBool>) -> Self {
        self.cancel = cancel;
        self
    }

    /// Calls `watch` after every event the job sends, with what the job did so far; when it
    /// returns false the job is cancelled, as by Ctrl-C.
    pub fn watch(mut self, watch: impl FnMut(&Run) -> bool + 'w) -> Self {
        self.watch = Some(Box::new(watch));
        self
    }

    /// Runs `job`.
    pub fn run<P: Plugin>(self, mut job: Job) -> Run {
        let Runner {
            tool,
            mut settings,
            config,
            cancel,
            watch,
            accept_costs,
        } = self;
        let mut collector = Collector {
            run: Run {
                outputs: Vec::new(),
                closed: Vec::new(),
                progress: Vec::new(),
                logs: Vec::new(),
                checkpoints: Vec::new(),
                costs: Vec::new(),
                writes: Vec::new(),
                result: Ok(JobResult::default()),
            },
            ids: Vec::new(),
            cancel,
            watch,
            accept_costs,
        };
        let lib = PluginLib::of::<P>();
        let checked = lib.manifest().and_then(|manifest| {
            check_job::<P>(&manifest, &config, &tool, &settings, &job).map_err(CallError::Plugin)
        });
        let result = checked.and_then(|(params, spec)| {
            job.params = params;
            for setting in &spec.settings {
                if let Some(default) = &setting.default
                    && settings.get(&setting.name).is_none()
                {
                    settings.set(setting.name.clone(), default.clone());
                }
            }
            let request = CreateRequest {
                tool: tool.clone(),
                settings,
            };
            lib.create(&request)
                .and_then(|instance| instance.invoke(&job, &mut collector))
        });
        collector.run.result = result;
        collector.run
    }
}

/// Checks a job's parameters against the tool as the manifest (or `describe`) declares it.
fn check_job<P: Plugin>(
    manifest: &Manifest,
    config: &serde_json::Map<String, Value>,
    tool: &str,
    settings: &Settings,
    job: &Job,
) -> Result<(serde_json::Map<String, Value>, ToolSpec), PluginError> {
    let mut spec = manifest.tools.iter().find(|t| t.id == tool).cloned();
    if spec.as_ref().is_none_or(|s| !s.described_by.is_empty()) {
        // Tools from configuration, or parameters described by arguments.
        let args = spec
            .as_ref()
            .map(|s| {
                s.described_by
                    .iter()
                    .filter_map(|name| Some((name.clone(), job.params.get(name)?.clone())))
                    .collect()
            })
            .unwrap_or_default();
        // As the host does, with the settings of the tool the job is for.
        let request = DescribeRequest {
            tool: spec.as_ref().map(|s| s.id.clone()),
            config: config.clone(),
            args,
            settings: [(tool.to_string(), settings.clone())].into(),
        };
        if let Some(found) = P::describe(&request)?.into_iter().find(|t| t.id == tool) {
            spec = Some(found);
        }
    }
    let spec = spec.ok_or_else(|| PluginError::invalid_input(format!("no tool named `{tool}`")))?;
    let task = spec.task(&job.task).ok_or_else(|| {
        PluginError::invalid_input(format!(
            "tool `{tool}` does not perform task `{}`",
            job.task
        ))
    })?;
    let params = crate::params::params_of(&task, &spec);
    Ok((crate::params::check_params(&params, &job.params)?, spec))
}

/// Returns a job for `tool` doing `task` with `params` given as JSON.
pub fn job(task: &str, tool: &str, params: serde_json::Value) -> Job {
    let mut job = Job::new(task, tool);
    if let serde_json::Value::Object(map) = params {
        job.params = map;
    }
    job
}

struct Collector<'w> {
    run: Run,
    /// Output names by id.
    ids: Vec<(u32, String)>,
    cancel: Arc<AtomicBool>,
    watch: Option<Watch<'w>>,
    accept_costs: bool,
}

impl EventHandler for Collector<'_> {
    fn event(&mut self, event: Event<'_>) -> bool {
        match event {
            Event::Open(id, header) => {
                self.ids.push((id, header.name.clone()));
                self.run.outputs.push((header, Vec::new()));
            }
            Event::Write(id, bytes) => {
                let name = self.ids.iter().find(|(i, _)| *i == id).map(|(_, n)| n);
                if let Some(name) = name {
                    self.run.writes.push((name.clone(), bytes.to_vec()));
                }
                if let Some((_, data)) = self
                    .run
                    .outputs
                    .iter_mut()
                    .rev()
                    .find(|(h, _)| Some(&h.name) == name)
                {
                    data.extend_from_slice(bytes);
                }
            }
            Event::Close(id) => {
                if let Some((_, name)) = self.ids.iter().find(|(i, _)| *i == id) {
                    self.run.closed.push(name.clone());
                }
            }
            Event::Progress(p) => self.run.progress.push(p),
            Event::Log(l) => self.run.logs.push(l),
            Event::Checkpoint(v) => self.run.checkpoints.push(v),
        }
        if let Some(watch) = &mut self.watch
            && !watch(&self.run)
        {
            self.cancel.store(true, Ordering::SeqCst);
        }
        !self.cancel.load(Ordering::SeqCst)
    }

    fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    fn confirm_cost(&mut self, cost: &Cost) -> bool {
        self.run.costs.push(cost.clone());
        self.accept_costs
    }
}
