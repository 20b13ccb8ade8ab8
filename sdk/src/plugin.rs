//! The safe side of the plugin boundary: the [`Plugin`] trait and the [`Context`] a job runs in.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::PluginError;
use crate::types::{
    ContentKind, Job, JobResult, LogLevel, LogLine, Manifest, OutputHeader, Progress, Settings,
};

/// An adapter plugin: a manifest, a way to make a tool instance from settings, and jobs.
///
/// One value is created per tool and settings; `invoke` may run on several threads at once
/// unless the tool is declared serial. Blocking is fine: the host runs jobs on worker threads.
pub trait Plugin: Send + Sync + Sized + 'static {
    /// Returns what the plugin provides. Called without settings and without side effects.
    fn manifest() -> Manifest;

    /// Creates an instance of `tool` with its settings.
    fn new(tool: &str, settings: &Settings) -> Result<Self, PluginError>;

    /// Runs one job, writing its outputs through `cx`.
    fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError>;
}

/// The events a job sends to the host while it runs.
pub(crate) trait Events {
    /// Sends a chunk of an output; returns false when the host wants the job to stop.
    fn chunk(&mut self, header: &OutputHeader, bytes: &[u8]) -> bool;
    /// Reports progress; returns false when the host wants the job to stop.
    fn progress(&mut self, progress: &Progress) -> bool;
    /// Sends a log line.
    fn log(&mut self, line: &LogLine);
    /// Returns whether the host wants the job to stop.
    fn is_cancelled(&self) -> bool;
}

/// What a running job can do: write outputs, report progress, log, and notice cancellation.
pub struct Context<'a> {
    events: &'a mut dyn Events,
}

/// Chunks are capped at this size so a large output never crosses the boundary whole.
const CHUNK_SIZE: usize = 256 * 1024;

impl<'a> Context<'a> {
    pub(crate) fn new(events: &'a mut dyn Events) -> Self {
        Context { events }
    }

    /// Opens an output and returns a writer for its bytes.
    ///
    /// `name` identifies it within the job, `media_type` says what it is (`audio/wav`), and
    /// `extension` is the file name ending the host gives it. The output exists once opened,
    /// even if nothing is written.
    pub fn output(
        &mut self,
        name: &str,
        media_type: &str,
        extension: &str,
    ) -> Result<OutputWriter<'_, 'a>, PluginError> {
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
        if !self.events.chunk(&header, &[]) {
            return Err(PluginError::cancelled());
        }
        Ok(OutputWriter {
            cx: self,
            header,
            buf: Vec::with_capacity(CHUNK_SIZE),
        })
    }

    /// Streams text to the `text` output (shown to the user as it arrives).
    pub fn text(&mut self, text: &str) -> Result<(), PluginError> {
        let header = OutputHeader {
            name: "text".to_string(),
            kind: ContentKind::Text,
            media_type: "text/plain".to_string(),
            extension: "txt".to_string(),
        };
        for piece in text.as_bytes().chunks(CHUNK_SIZE) {
            if !self.events.chunk(&header, piece) {
                return Err(PluginError::cancelled());
            }
        }
        Ok(())
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

/// Writes one output in chunks. Call [`OutputWriter::finish`] to send what is buffered;
/// dropping it flushes too, ignoring errors.
pub struct OutputWriter<'c, 'a> {
    cx: &'c mut Context<'a>,
    header: OutputHeader,
    buf: Vec<u8>,
}

impl OutputWriter<'_, '_> {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let sent = self.cx.events.chunk(&self.header, &self.buf);
        self.buf.clear();
        if sent {
            Ok(())
        } else {
            Err(crate::error::cancelled_io_error())
        }
    }

    /// Sends what is buffered and closes the output.
    pub fn finish(mut self) -> Result<(), PluginError> {
        self.send().map_err(PluginError::from)
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
            let sent = self.cx.events.chunk(&self.header, data);
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
