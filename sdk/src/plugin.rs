//! The safe side of the plugin boundary: the [`Plugin`] trait and the [`Context`] a job runs in.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cost::Cost;
use crate::error::PluginError;
use serde_json::Value;

use crate::types::{
    ContentKind, DescribeRequest, Job, JobResult, LogLevel, LogLine, Manifest, OutputHeader,
    Progress, Settings, ToolSpec,
};

/// An adapter plugin: a manifest, a way to make a tool instance from settings, and jobs.
///
/// One value is created per tool and settings; `invoke` may run on several threads at once
/// unless the tool is declared serial. Blocking is fine: the host runs jobs on worker threads.
pub trait Plugin: Send + Sync + Sized + 'static {
    /// Returns what the plugin provides. Called without settings and without side effects.
    fn manifest() -> Manifest;

    /// Describes tools, or one tool's parameters, that depend on configuration or arguments:
    /// profiles from the config, a workflow file's inputs, a hosted model's schema.
    ///
    /// Called by the host when the manifest says [`Manifest::configured_tools`] (with
    /// `request.tool` unset: return every tool) or a tool is [`ToolSpec::described_by`] some
    /// of its parameters (with `request.tool` set and their values in `request.args`: return
    /// that tool with its parameters). The host caches the answer keyed on the request. The
    /// default returns the manifest's tools unchanged.
    ///
    /// [`ToolSpec::described_by`]: crate::ToolSpec::described_by
    fn describe(request: &DescribeRequest) -> Result<Vec<ToolSpec>, PluginError> {
        let tools = Self::manifest().tools;
        Ok(match &request.tool {
            Some(id) => tools.into_iter().filter(|t| &t.id == id).collect(),
            None => tools,
        })
    }

    /// Creates an instance of `tool` with its settings.
    fn new(tool: &str, settings: &Settings) -> Result<Self, PluginError>;

    /// Runs one job, writing its outputs through `cx`.
    fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError>;
}

/// Checks, in [`Plugin::new`] of a plugin with one tool, that the host asks for that tool.
///
/// ```
/// assert!(launcher_sdk::expect_tool("runway", "runway").is_ok());
/// assert!(launcher_sdk::expect_tool("kling", "runway").is_err());
/// ```
pub fn expect_tool(tool: &str, provided: &str) -> Result<(), PluginError> {
    if tool == provided {
        Ok(())
    } else {
        Err(PluginError::internal(format!(
            "this plugin provides `{provided}`, not `{tool}`"
        )))
    }
}

/// The events a job sends to the host while it runs.
pub(crate) trait Events {
    /// Opens an output; returns its id, or `None` when the host wants the job to stop.
    fn open(&mut self, header: &OutputHeader) -> Option<u32>;
    /// Appends bytes to an output; returns false when the host wants the job to stop.
    fn write(&mut self, id: u32, bytes: &[u8]) -> bool;
    /// Completes an output; returns false when the host wants the job to stop.
    fn close(&mut self, id: u32) -> bool;
    /// Reports progress; returns false when the host wants the job to stop.
    fn progress(&mut self, progress: &Progress) -> bool;
    /// Sends a log line.
    fn log(&mut self, line: &LogLine);
    /// Returns whether the host wants the job to stop.
    fn is_cancelled(&self) -> bool;
    /// Records a checkpoint: `Ok(true)` when kept, `Ok(false)` when the host keeps none,
    /// `Err` when the job must stop.
    fn checkpoint(&mut self, value: &Value) -> Result<bool, ()>;
    /// Asks the host to accept a cost: `Some(true)` accepted, `Some(false)` declined or
    /// refused, `None` when the host cannot be asked (older than ABI 2.2).
    fn confirm(&mut self, cost: &Cost) -> Option<bool>;
}

/// What a running job can do: write outputs, report progress, log, record a checkpoint, and
/// notice cancellation.
pub struct Context<'a> {
    events: &'a mut dyn Events,
    /// The id of the streamed `text` output, once opened.
    text: Option<u32>,
    /// Outputs opened and not yet closed, closed when the job succeeds.
    open: Vec<u32>,
}

/// Chunks are capped at this size so a large output never crosses the boundary whole.
const CHUNK_SIZE: usize = 256 * 1024;

impl<'a> Context<'a> {
    pub(crate) fn new(events: &'a mut dyn Events) -> Self {
        Context {
            events,
            text: None,
            open: Vec::new(),
        }
    }

    fn open(&mut self, name: &str, media_type: &str, extension: &str) -> Result<u32, PluginError> {
        let kind = ContentKind::of_media_type(media_type).ok_or_else(|| {
            PluginError::internal(format!(
                "media type `{media_type}` is not text, image, audio or video"
            ))
        })?;
        let header = OutputHeader {
            name: name.to_string(),
            kind,
            media_type: media_type.to_string(),
            extension: extension.to_string(),
        };
        let id = self
            .events
            .open(&header)
            .ok_or_else(PluginError::cancelled)?;
        self.open.push(id);
        Ok(id)
    }

    fn close(&mut self, id: u32) -> Result<(), PluginError> {
        self.open.retain(|open| *open != id);
        if self.events.close(id) {
            Ok(())
        } else {
            Err(PluginError::cancelled())
        }
    }

    /// Closes every output still open; called when the job succeeded.
    pub(crate) fn close_all(&mut self) -> Result<(), PluginError> {
        for id in std::mem::take(&mut self.open) {
            if !self.events.close(id) {
                return Err(PluginError::cancelled());
            }
        }
        Ok(())
    }

    /// Opens an output and returns a writer for its bytes.
    ///
    /// `name` identifies it within the job, `media_type` says what it is (`audio/wav`), and
    /// `extension` is the file name ending the host gives it. Call [`OutputWriter::finish`]
    /// when it is complete; an output of a job that fails is dropped by the host.
    pub fn output(
        &mut self,
        name: &str,
        media_type: &str,
        extension: &str,
    ) -> Result<OutputWriter<'_, 'a>, PluginError> {
        let id = self.open(name, media_type, extension)?;
        Ok(OutputWriter {
            cx: self,
            id,
            buf: Vec::with_capacity(CHUNK_SIZE),
        })
    }

    /// Streams text to the `text` output (shown to the user as it arrives).
    pub fn text(&mut self, text: &str) -> Result<(), PluginError> {
        let id = match self.text {
            Some(id) => id,
            None => {
                let id = self.open("text", "text/plain", "txt")?;
                self.text = Some(id);
                id
            }
        };
        for piece in text.as_bytes().chunks(CHUNK_SIZE) {
            if !self.events.write(id, piece) {
                return Err(PluginError::cancelled());
            }
        }
        Ok(())
    }

    /// Writes a JSON result as the output `name` (`application/json`, a text output): the
    /// standard listing tasks (`voices`, `models`) answer this way.
    pub fn json(&mut self, name: &str, value: &impl serde::Serialize) -> Result<(), PluginError> {
        let mut bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| PluginError::internal(format!("cannot encode `{name}`: {e}")))?;
        bytes.push(b'\n');
        let mut out = self.output(name, "application/json", "json")?;
        io::Write::write_all(&mut out, &bytes)?;
        out.finish()
    }

    /// Reports progress: `fraction` from 0 to 1 when known, and what is happening.
    pub fn progress(&mut self, fraction: Option<f64>, message: &str) -> Result<(), PluginError> {
        let progress = Progress {
            fraction: fraction.map(|f| f.clamp(0.0, 1.0)),
            message: message.to_string(),
        };
        if self.events.progress(&progress) {
            Ok(())
        } else {
            Err(PluginError::cancelled())
        }
    }

    /// Sends a log line to the host (shown with `-v`). Never log secrets.
    pub fn log(&mut self, level: LogLevel, message: impl Into<String>) {
        self.events.log(&LogLine {
            level,
            message: message.into(),
        });
    }

    /// Records a checkpoint: a small JSON value (a remote task id, say) from which a later run
    /// of this job can pick the work up ([`Job::resume`](crate::Job::resume)). From then on,
    /// stopping the launcher detaches the job instead of cancelling it, unless the user asked
    /// to cancel remote work.
    ///
    /// # Submitting paid work: checkpoint before and after
    ///
    /// A submit must never be sent twice, and a launcher may be killed between sending it and
    /// reading the answer. So an adapter records two checkpoints around the submit request:
    ///
    /// 1. `{"state": "submitting", ...}` **before** the request (with whatever it needs to
    ///    find the task again, if the service allows that);
    /// 2. the remote task id as soon as the service answered.
    ///
    /// A resumed job whose checkpoint still says `submitting` and carries no remote id may or
    /// may not have reached the service. It must not submit again blindly: return
    /// [`PluginError::submission_unknown`], and the host marks the job failed with that
    /// message, so the user checks the service's dashboard instead of paying twice.
    ///
    /// Returns whether the host keeps it: an older host, or one running a job that cannot be
    /// resumed, keeps none, and the job simply goes on.
    pub fn checkpoint(&mut self, value: &impl serde::Serialize) -> Result<bool, PluginError> {
        let value = serde_json::to_value(value)
            .map_err(|e| PluginError::internal(format!("cannot encode the checkpoint: {e}")))?;
        self.events
            .checkpoint(&value)
            .map_err(|()| PluginError::cancelled())
    }

    /// Asks the host to accept what the job will cost, before the paid request is sent.
    ///
    /// The host always shows the estimate, and above the user's threshold asks on a terminal
    /// (or refuses, when nobody can answer and `--yes` was not given). Returns a cancelled
    /// error when the cost was declined: return it, and send nothing.
    ///
    /// A host older than ABI 2.2 cannot be asked. The job then goes on, after a warning that
    /// states the cost: that host ran paid jobs without a question before this SDK existed,
    /// the user chose the tool and gave it a key, and refusing would make every paid adapter
    /// unusable with it. Adapters that must not run unconfirmed can require a newer launcher
    /// in their registry entry.
    pub fn confirm_cost(&mut self, cost: &crate::cost::Cost) -> Result<(), PluginError> {
        match self.events.confirm(cost) {
            Some(true) => Ok(()),
            Some(false) => Err(PluginError::new(
                crate::ErrorKind::Cancelled,
                format!("the cost of the job, {cost}, was not accepted; nothing was submitted"),
            )),
            None => {
                self.log(
                    LogLevel::Warn,
                    format!(
                        "this job will cost about {cost}; this launcher is too old to ask \
                         before paid work is submitted"
                    ),
                );
                Ok(())
            }
        }
    }

    /// Returns whether the host asked the job to stop.
    pub fn is_cancelled(&self) -> bool {
        self.events.is_cancelled()
    }

    /// Returns a cancelled error if the host asked the job to stop.
    pub fn check_cancelled(&self) -> Result<(), PluginError> {
        if self.is_cancelled() {
            Err(PluginError::cancelled())
        } else {
            Ok(())
        }
    }
}

/// Writes one output in chunks. Call [`OutputWriter::finish`] when it is complete; dropping it
/// sends what is buffered but leaves the output open (a job that fails leaves it incomplete).
pub struct OutputWriter<'c, 'a> {
    pub(crate) cx: &'c mut Context<'a>,
    id: u32,
    buf: Vec<u8>,
}

impl OutputWriter<'_, '_> {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let sent = self.cx.events.write(self.id, &self.buf);
        self.buf.clear();
        if sent {
            Ok(())
        } else {
            Err(crate::error::cancelled_io_error())
        }
    }

    /// Sends what is buffered and closes the output: it is complete.
    pub fn finish(mut self) -> Result<(), PluginError> {
        self.send().map_err(PluginError::from)?;
        let id = self.id;
        self.cx.close(id)
    }

    /// Returns whether the host asked the job to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cx.is_cancelled()
    }
}

impl io::Write for OutputWriter<'_, '_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > CHUNK_SIZE {
            self.send()?;
        }
        if data.len() >= CHUNK_SIZE {
            let sent = self.cx.events.write(self.id, data);
            return if sent {
                Ok(data.len())
            } else {
                Err(crate::error::cancelled_io_error())
            };
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Drop for OutputWriter<'_, '_> {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

/// Something that can say whether the job it belongs to should stop.
///
/// Implemented by [`Context`] and [`OutputWriter`], so a body can be read while an output is
/// open, and by [`AtomicBool`] for code that runs outside a job (tests, helper threads).
pub trait Cancel {
    /// Returns whether the work should stop.
    fn is_cancelled(&self) -> bool;
}

impl Cancel for Context<'_> {
    fn is_cancelled(&self) -> bool {
        Context::is_cancelled(self)
    }
}

impl Cancel for OutputWriter<'_, '_> {
    fn is_cancelled(&self) -> bool {
        OutputWriter::is_cancelled(self)
    }
}

impl Cancel for AtomicBool {
    fn is_cancelled(&self) -> bool {
        self.load(Ordering::SeqCst)
    }
}

/// A host that records what a job sends, for the SDK's own unit tests.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct TestHost {
    pub(crate) logs: Vec<LogLine>,
    pub(crate) output: Vec<u8>,
    pub(crate) cancel: std::sync::Arc<AtomicBool>,
    /// The answer to cost confirmations; `None` plays a host older than ABI 2.2.
    pub(crate) accept_costs: Option<bool>,
}

#[cfg(test)]
impl Events for TestHost {
    fn open(&mut self, _header: &OutputHeader) -> Option<u32> {
        Some(1)
    }
    fn write(&mut self, _id: u32, bytes: &[u8]) -> bool {
        self.output.extend_from_slice(bytes);
        !self.cancel.load(Ordering::SeqCst)
    }
    fn close(&mut self, _id: u32) -> bool {
        true
    }
    fn progress(&mut self, _progress: &Progress) -> bool {
        true
    }
    fn log(&mut self, line: &LogLine) {
        self.logs.push(line.clone());
    }
    fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
    fn checkpoint(&mut self, _value: &Value) -> Result<bool, ()> {
        Ok(false)
    }
    fn confirm(&mut self, _cost: &Cost) -> Option<bool> {
        self.accept_costs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn cost() -> Cost {
        Cost {
            amount: 2.5,
            currency: "USD".into(),
            what: "10 s of video".into(),
        }
    }

    #[test]
    fn a_declined_cost_cancels_the_job() {
        let mut host = TestHost {
            accept_costs: Some(false),
            ..TestHost::default()
        };
        let err = Context::new(&mut host).confirm_cost(&cost()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert!(err.message.contains("$2.50"), "{}", err.message);
        let mut host = TestHost {
            accept_costs: Some(true),
            ..TestHost::default()
        };
        Context::new(&mut host).confirm_cost(&cost()).unwrap();
        assert!(host.logs.is_empty());
    }

    #[test]
    fn a_host_that_cannot_be_asked_gets_a_warning_with_the_cost() {
        let mut host = TestHost::default();
        Context::new(&mut host).confirm_cost(&cost()).unwrap();
        assert_eq!(host.logs.len(), 1);
        assert_eq!(host.logs[0].level, LogLevel::Warn);
        assert!(host.logs[0].message.contains("$2.50 (10 s of video)"));
    }
}
