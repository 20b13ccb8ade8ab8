//! Runs a plugin through its exported ABI functions in-process, for plugin tests.
//!
//! ```ignore
//! let run = launcher_sdk::testing::run::<MyPlugin>("my-tool", &settings, job);
//! assert_eq!(run.output("audio").unwrap().1.len(), 44 + 32000);
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::abi::{CallError, Event, EventHandler, PluginLib};
use crate::plugin::Plugin;
use crate::types::{
    CreateRequest, Job, JobResult, LogLine, Manifest, OutputHeader, Progress, Settings,
};

/// What a job did, as the host saw it through the ABI.
#[derive(Debug)]
pub struct Run {
    /// Each output's header and all its bytes, in the order they were opened.
    pub outputs: Vec<(OutputHeader, Vec<u8>)>,
    /// The progress events.
    pub progress: Vec<Progress>,
    /// The log lines.
    pub logs: Vec<LogLine>,
    /// How the job ended.
    pub result: Result<JobResult, CallError>,
}

impl Run {
    /// Returns the output named `name`.
    pub fn output(&self, name: &str) -> Option<&(OutputHeader, Vec<u8>)> {
        self.outputs.iter().find(|(h, _)| h.name == name)
    }
}

/// Returns the manifest as the host would read it through the ABI.
pub fn manifest<P: Plugin>() -> Result<Manifest, CallError> {
    PluginLib::of::<P>().manifest()
}

/// Creates `tool` with `settings` and runs `job` on it through the ABI.
pub fn run<P: Plugin>(tool: &str, settings: &Settings, job: Job) -> Run {
    run_with_cancel::<P>(tool, settings, job, Arc::new(AtomicBool::new(false)))
}

/// Like [`run`], with a flag another thread may set to cancel the job.
pub fn run_with_cancel<P: Plugin>(
    tool: &str,
    settings: &Settings,
    job: Job,
    cancel: Arc<AtomicBool>,
) -> Run {
    let mut collector = Collector {
        outputs: Vec::new(),
        progress: Vec::new(),
        logs: Vec::new(),
        cancel,
    };
    let lib = PluginLib::of::<P>();
    let request = CreateRequest {
        tool: tool.to_string(),
        settings: settings.clone(),
    };
    let result = lib
        .create(&request)
        .and_then(|instance| instance.invoke(&job, &mut collector));
    Run {
        outputs: collector.outputs,
        progress: collector.progress,
        logs: collector.logs,
        result,
    }
}

/// Returns a job for `tool` doing `task` with `params` given as JSON.
pub fn job(task: &str, tool: &str, params: serde_json::Value) -> Job {
    let params = match params {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    Job {
        task: task.to_string(),
        tool: tool.to_string(),
        params,
    }
}

struct Collector {
    outputs: Vec<(OutputHeader, Vec<u8>)>,
    progress: Vec<Progress>,
    logs: Vec<LogLine>,
    cancel: Arc<AtomicBool>,
}

impl EventHandler for Collector {
    fn event(&mut self, event: Event<'_>) -> bool {
        match event {
            Event::Chunk(header, bytes) => {
                match self.outputs.iter_mut().find(|(h, _)| h.name == header.name) {
                    Some((_, data)) => data.extend_from_slice(bytes),
                    None => self.outputs.push((header, bytes.to_vec())),
                }
            }
            Event::Progress(p) => self.progress.push(p),
            Event::Log(l) => self.logs.push(l),
        }
        !self.cancel.load(Ordering::SeqCst)
    }

    fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}
