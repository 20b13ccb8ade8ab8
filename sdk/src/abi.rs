//! The C ABI between the host and a plugin library, and both sides of it.
//!
//! A plugin library exports two symbols:
//! - [`HEADER_SYMBOL`], a [`PluginHeader`] static the host reads before calling any plugin code:
//!   magic bytes, ABI major and minor, and its own size;
//! - [`INIT_SYMBOL`], a function returning a pointer to a static [`PluginApi`] table.
//!
//! Only C types cross: byte slices carrying JSON (the messages of [`Manifest`], [`Job`] and friends) and function
//! pointers. Memory is freed by the side that allocated it: buffers a plugin returns go back
//! through [`PluginApi::free_buffer`]; slices the host passes in are borrowed for one call.
//! Tables carry their size and only ever grow by appending fields, so a host reads a field only
//! when the table's size covers it. Every entry point runs inside `catch_unwind`, because a
//! panic unwinding out of `extern "C"` aborts the process.
//!
//! [`export_plugin!`](crate::export_plugin) writes the plugin side; [`PluginLib`] is the host side,
//! used by the `launcher` binary and by the SDK's `testing` module.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::PluginError;
use crate::plugin::{Context, Events, Plugin};
use crate::types::{CreateRequest, Job, JobResult, LogLine, Manifest, OutputHeader, Progress};

/// The first bytes of every plugin header.
pub const MAGIC: [u8; 8] = *b"LNCHPLG\0";
/// The ABI major version this SDK speaks; a host refuses any other.
pub const ABI_MAJOR: u32 = 1;
/// The ABI minor version this SDK speaks; minors only add.
pub const ABI_MINOR: u32 = 0;
/// The name of the exported [`PluginHeader`] static.
pub const HEADER_SYMBOL: &[u8] = b"LAUNCHER_PLUGIN_HEADER\0";
/// The name of the exported init function, of type [`InitFn`].
pub const INIT_SYMBOL: &[u8] = b"launcher_plugin_init\0";

/// A call succeeded; the buffer holds its JSON result.
pub const STATUS_OK: i32 = 0;
/// A call failed; the buffer holds a JSON [`PluginError`].
pub const STATUS_ERROR: i32 = 1;
/// A call panicked; the buffer holds the panic message as UTF-8.
pub const STATUS_PANIC: i32 = 2;

/// A chunk of an output: the header is a JSON [`OutputHeader`], the payload its bytes.
pub const EVENT_CHUNK: u32 = 1;
/// Progress: the header is a JSON [`Progress`]; no payload.
pub const EVENT_PROGRESS: u32 = 2;
/// A log line: the header is a JSON [`LogLine`]; no payload.
pub const EVENT_LOG: u32 = 3;

/// Read by the host before any plugin code runs.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PluginHeader {
    /// Always [`MAGIC`].
    pub magic: [u8; 8],
    /// The ABI major version the plugin was built for.
    pub abi_major: u32,
    /// The ABI minor version the plugin was built for.
    pub abi_minor: u32,
    /// `size_of::<PluginHeader>()` as the plugin saw it.
    pub size: u32,
}

impl PluginHeader {
    /// The header of a plugin built with this SDK.
    pub const CURRENT: PluginHeader = PluginHeader {
        magic: MAGIC,
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        size: size_of::<PluginHeader>() as u32,
    };
}

/// A borrowed byte slice, valid for one call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Bytes {
    /// The first byte; may dangle when `len` is 0.
    pub ptr: *const u8,
    /// How many bytes.
    pub len: usize,
}

impl Bytes {
    /// Borrows `slice`.
    pub fn new(slice: &[u8]) -> Bytes {
        Bytes {
            ptr: slice.as_ptr(),
            len: slice.len(),
        }
    }

    /// # Safety
    /// `ptr` must point to `len` readable bytes that outlive `'a`.
    unsafe fn as_slice<'a>(self) -> &'a [u8] {
        if self.len == 0 || self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: the caller guarantees ptr..ptr+len is readable for 'a.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// A buffer the plugin allocated; the host hands it back to [`PluginApi::free_buffer`].
#[repr(C)]
#[derive(Debug)]
pub struct Buffer {
    /// The first byte, or null for none.
    pub ptr: *mut u8,
    /// How many bytes.
    pub len: usize,
}

impl Buffer {
    const EMPTY: Buffer = Buffer {
        ptr: std::ptr::null_mut(),
        len: 0,
    };

    fn from_vec(bytes: Vec<u8>) -> Buffer {
        let boxed = bytes.into_boxed_slice();
        let len = boxed.len();
        Buffer {
            ptr: Box::into_raw(boxed).cast::<u8>(),
            len,
        }
    }
}

/// The host's callbacks for one invoke. Called only on the thread that called invoke.
#[repr(C)]
pub struct Sink {
    /// `size_of::<Sink>()` as the host saw it.
    pub size: u32,
    /// The host's state, passed back to every callback.
    pub ctx: *mut c_void,
    /// Delivers an event (`EVENT_*`); returns non-zero when the job should stop.
    pub emit:
        unsafe extern "C" fn(ctx: *mut c_void, event: u32, header: Bytes, payload: Bytes) -> i32,
    /// Returns non-zero when the job should stop.
    pub is_cancelled: unsafe extern "C" fn(ctx: *mut c_void) -> i32,
}

/// The table a plugin's init function returns. Fields are only ever appended.
#[repr(C)]
pub struct PluginApi {
    /// `size_of::<PluginApi>()` as the plugin saw it.
    pub size: u32,
    /// The ABI minor version of the table.
    pub abi_minor: u32,
    /// Writes the JSON [`Manifest`] into `out`.
    pub manifest: unsafe extern "C" fn(out: *mut Buffer) -> i32,
    /// Creates an instance from a JSON [`CreateRequest`]; on error `out` holds the error.
    pub create:
        unsafe extern "C" fn(request: Bytes, instance: *mut *mut c_void, out: *mut Buffer) -> i32,
    /// Runs a JSON [`Job`] on an instance; `out` holds a JSON [`JobResult`] or the error.
    pub invoke: unsafe extern "C" fn(
        instance: *const c_void,
        job: Bytes,
        sink: *const Sink,
        out: *mut Buffer,
    ) -> i32,
    /// Destroys an instance.
    pub destroy: unsafe extern "C" fn(instance: *mut c_void),
    /// Frees a buffer this plugin returned.
    pub free_buffer: unsafe extern "C" fn(buffer: Buffer),
}

/// The type of the exported init function.
pub type InitFn = unsafe extern "C" fn(host_abi_minor: u32) -> *const PluginApi;

// ---------------------------------------------------------------------------------------------
// Plugin side

/// Returns the table for plugin type `P`. Used by [`export_plugin!`](crate::export_plugin).
pub const fn plugin_api<P: Plugin>() -> PluginApi {
    PluginApi {
        size: size_of::<PluginApi>() as u32,
        abi_minor: ABI_MINOR,
        manifest: manifest_shim::<P>,
        create: create_shim::<P>,
        invoke: invoke_shim::<P>,
        destroy: destroy_shim::<P>,
        free_buffer: free_buffer_shim,
    }
}

thread_local! {
    /// Whether this thread is inside an entry point, where panics are reported to the host.
    static IN_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Where the last panic on this thread happened, for the host's message.
    static PANIC_LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs this plugin's panic hook; called once by the init function.
///
/// A plugin has its own copy of std and so its own hook. Inside an entry point the panic is
/// reported to the host as the call's error, so the hook only remembers where it happened;
/// elsewhere (a thread the plugin spawned) it prints the usual line.
#[doc(hidden)]
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_CALL.with(|c| c.get()) {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                PANIC_LOCATION.with(|p| *p.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `body` catching panics, writes its result or error into `out`, returns the status.
fn guarded<T: serde::Serialize>(
    out: *mut Buffer,
    body: impl FnOnce() -> Result<T, PluginError>,
) -> i32 {
    let was_in_call = IN_CALL.with(|c| c.replace(true));
    let outcome = catch_unwind(AssertUnwindSafe(body));
    IN_CALL.with(|c| c.set(was_in_call));
    let (status, bytes) = match outcome {
        Ok(Ok(value)) => match serde_json::to_vec(&value) {
            Ok(bytes) => (STATUS_OK, bytes),
            Err(err) => (
                STATUS_ERROR,
                error_json(&PluginError::internal(format!(
                    "cannot encode result: {err}"
                ))),
            ),
        },
        Ok(Err(err)) => (STATUS_ERROR, error_json(&err)),
        Err(payload) => {
            let mut message = panic_message(payload.as_ref());
            if let Some(location) = PANIC_LOCATION.with(|p| p.borrow_mut().take()) {
                message.push_str(&format!(" (at {location})"));
            }
            (STATUS_PANIC, message.into_bytes())
        }
    };
    if !out.is_null() {
        // SAFETY: the host passes a valid, writable Buffer slot for every call.
        unsafe { out.write(Buffer::from_vec(bytes)) };
    }
    status
}

fn error_json(err: &PluginError) -> Vec<u8> {
    serde_json::to_vec(err)
        .unwrap_or_else(|_| br#"{"kind":"internal","message":"unencodable error"}"#.to_vec())
}

/// Returns the message a panic was raised with.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

unsafe extern "C" fn manifest_shim<P: Plugin>(out: *mut Buffer) -> i32 {
    guarded(out, || {
        let mut manifest = P::manifest();
        manifest.abi = ABI_MAJOR;
        manifest.abi_minor = ABI_MINOR;
        manifest.sdk_version = env!("CARGO_PKG_VERSION").to_string();
        Ok(manifest)
    })
}

unsafe extern "C" fn create_shim<P: Plugin>(
    request: Bytes,
    instance: *mut *mut c_void,
    out: *mut Buffer,
) -> i32 {
    guarded(out, || {
        // SAFETY: the host passes a slice valid for this call.
        let request: CreateRequest = serde_json::from_slice(unsafe { request.as_slice() })
            .map_err(|e| PluginError::internal(format!("malformed create request: {e}")))?;
        let plugin = P::new(&request.tool, &request.settings)?;
        let ptr = Box::into_raw(Box::new(plugin)).cast::<c_void>();
        // SAFETY: the host passes a valid, writable pointer slot.
        unsafe { instance.write(ptr) };
        Ok(())
    })
}

unsafe extern "C" fn invoke_shim<P: Plugin>(
    instance: *const c_void,
    job: Bytes,
    sink: *const Sink,
    out: *mut Buffer,
) -> i32 {
    guarded(out, || {
        // SAFETY: `instance` came from create_shim::<P> and is not destroyed during the call.
        let plugin = unsafe { &*instance.cast::<P>() };
        // SAFETY: the host passes a slice valid for this call.
        let job: Job = serde_json::from_slice(unsafe { job.as_slice() })
            .map_err(|e| PluginError::internal(format!("malformed job: {e}")))?;
        // SAFETY: the host passes a sink valid for this call.
        let sink = unsafe { &*sink };
        let mut events = SinkEvents { sink };
        let mut cx = Context::new(&mut events);
        plugin.invoke(&job, &mut cx)
    })
}

unsafe extern "C" fn destroy_shim<P: Plugin>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // A panicking Drop must not unwind into the host; the instance is gone either way.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `instance` came from Box::into_raw in create_shim::<P>; destroyed once.
        drop(unsafe { Box::from_raw(instance.cast::<P>()) });
    }));
}

unsafe extern "C" fn free_buffer_shim(buffer: Buffer) {
    if buffer.ptr.is_null() {
        return;
    }
    // SAFETY: the buffer came from Buffer::from_vec, a boxed slice of exactly `len` bytes.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(buffer.ptr, buffer.len)) });
}

/// Adapts the host's [`Sink`] to the SDK's [`Events`].
struct SinkEvents<'s> {
    sink: &'s Sink,
}

impl SinkEvents<'_> {
    fn emit(&mut self, event: u32, header: &impl serde::Serialize, payload: &[u8]) -> bool {
        let Ok(header) = serde_json::to_vec(header) else {
            return true;
        };
        // SAFETY: the sink's callbacks are valid for the duration of the invoke call.
        unsafe {
            (self.sink.emit)(
                self.sink.ctx,
                event,
                Bytes::new(&header),
                Bytes::new(payload),
            ) == 0
        }
    }
}

impl Events for SinkEvents<'_> {
    fn chunk(&mut self, header: &OutputHeader, bytes: &[u8]) -> bool {
        self.emit(EVENT_CHUNK, header, bytes)
    }

    fn progress(&mut self, progress: &Progress) -> bool {
        self.emit(EVENT_PROGRESS, progress, &[])
    }

    fn log(&mut self, line: &LogLine) {
        self.emit(EVENT_LOG, line, &[]);
    }

    fn is_cancelled(&self) -> bool {
        // SAFETY: the sink's callbacks are valid for the duration of the invoke call.
        unsafe { (self.sink.is_cancelled)(self.sink.ctx) != 0 }
    }
}

/// Exports a [`Plugin`] type as a launcher plugin library, so the author writes no `unsafe`.
///
/// The crate must be built as a `cdylib`. The macro emits the header static and the init
/// function; the file name `liblauncher_plugin_<name>.so` is how the host finds the library.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub static LAUNCHER_PLUGIN_HEADER: $crate::abi::PluginHeader =
            $crate::abi::PluginHeader::CURRENT;

        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn launcher_plugin_init(
            _host_abi_minor: u32,
        ) -> *const $crate::abi::PluginApi {
            $crate::abi::install_panic_hook();
            static API: $crate::abi::PluginApi = $crate::abi::plugin_api::<$plugin>();
            &API
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Host side

/// Why a call into a plugin failed.
#[derive(Debug)]
pub enum CallError {
    /// The plugin returned an error.
    Plugin(PluginError),
    /// The plugin panicked; the message it panicked with.
    Panic(String),
    /// The plugin broke the protocol (an unreadable reply).
    Protocol(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Plugin(err) => write!(f, "{}", err.message),
            CallError::Panic(msg) => write!(f, "the plugin panicked: {msg}"),
            CallError::Protocol(msg) => write!(f, "the plugin broke the ABI protocol: {msg}"),
        }
    }
}

impl std::error::Error for CallError {}

/// An event a job sends the host.
#[derive(Debug)]
pub enum Event<'a> {
    /// A chunk of an output (the first chunk of each output may be empty).
    Chunk(OutputHeader, &'a [u8]),
    /// Progress.
    Progress(Progress),
    /// A log line.
    Log(LogLine),
}

/// What the host does with a job's events.
pub trait EventHandler {
    /// Handles an event; returns false to ask the job to stop.
    fn event(&mut self, event: Event<'_>) -> bool;
    /// Returns whether the job should stop.
    fn is_cancelled(&self) -> bool;
}

/// A plugin's table, checked and ready to call.
#[derive(Clone, Copy)]
pub struct PluginLib {
    api: &'static PluginApi,
}

// SAFETY: the table is immutable static data of a library that is never unloaded, and the
// ABI requires its functions to be callable from any thread.
unsafe impl Send for PluginLib {}
// SAFETY: as above.
unsafe impl Sync for PluginLib {}

impl PluginLib {
    /// Checks a header read from a library: magic, ABI major and size.
    pub fn check_header(header: &PluginHeader) -> Result<(), String> {
        if header.magic != MAGIC {
            return Err("does not carry the launcher plugin magic in its header".to_string());
        }
        if header.abi_major != ABI_MAJOR {
            return Err(format!(
                "was built for plugin ABI {}, and this launcher speaks ABI {ABI_MAJOR}",
                header.abi_major
            ));
        }
        if (header.size as usize) < size_of::<PluginHeader>() {
            return Err(format!("has a header of {} bytes, too small", header.size));
        }
        Ok(())
    }

    /// Calls `init` and checks the table it returns.
    ///
    /// # Safety
    /// `init` must be the init function of a library whose header passed [`PluginLib::check_header`]
    /// and the library must stay loaded for the rest of the process.
    pub unsafe fn init(init: InitFn) -> Result<PluginLib, String> {
        // SAFETY: the caller vouches for `init`; a panic in it is caught below only if the
        // plugin was built with this SDK, whose init cannot panic.
        let api = unsafe { init(ABI_MINOR) };
        if api.is_null() {
            return Err("returned no function table from its init function".to_string());
        }
        // SAFETY: non-null, pointing to a static table that lives as long as the library.
        let api: &'static PluginApi = unsafe { &*api };
        if (api.size as usize) < size_of::<PluginApi>() {
            return Err(format!(
                "has a function table of {} bytes, too small for ABI {ABI_MAJOR}",
                api.size
            ));
        }
        Ok(PluginLib { api })
    }

    /// Returns a plugin built into this process (for tests): the same table the export
    /// macro exports, called through the same function pointers.
    pub fn of<P: Plugin>() -> PluginLib {
        struct Table<P>(std::marker::PhantomData<P>);
        impl<P: Plugin> Table<P> {
            const API: &'static PluginApi = &plugin_api::<P>();
        }
        PluginLib {
            api: Table::<P>::API,
        }
    }

    /// Takes the buffer a call returned, copies it and frees it with the plugin's allocator.
    fn take(&self, buffer: Buffer) -> Vec<u8> {
        // SAFETY: the plugin filled `buffer` with `len` readable bytes it owns.
        let bytes = unsafe {
            Bytes {
                ptr: buffer.ptr,
                len: buffer.len,
            }
            .as_slice()
        }
        .to_vec();
        // SAFETY: the buffer came from this plugin and is freed exactly once.
        unsafe { (self.api.free_buffer)(buffer) };
        bytes
    }

    fn reply<T: serde::de::DeserializeOwned>(
        &self,
        status: i32,
        buffer: Buffer,
    ) -> Result<T, CallError> {
        let bytes = self.take(buffer);
        match status {
            STATUS_OK => serde_json::from_slice(&bytes)
                .map_err(|e| CallError::Protocol(format!("unreadable reply: {e}"))),
            STATUS_ERROR => Err(match serde_json::from_slice::<PluginError>(&bytes) {
                Ok(err) => CallError::Plugin(err),
                Err(e) => CallError::Protocol(format!("unreadable error: {e}")),
            }),
            STATUS_PANIC => Err(CallError::Panic(
                String::from_utf8_lossy(&bytes).into_owned(),
            )),
            other => Err(CallError::Protocol(format!("unknown status {other}"))),
        }
    }

    /// Returns the plugin's manifest, unchecked.
    pub fn manifest(&self) -> Result<Manifest, CallError> {
        let mut out = Buffer::EMPTY;
        // SAFETY: `out` is a valid slot; the table's functions follow the ABI.
        let status = unsafe { (self.api.manifest)(&mut out) };
        self.reply(status, out)
    }

    /// Creates an instance of a tool with its settings.
    pub fn create(&self, request: &CreateRequest) -> Result<Instance, CallError> {
        let json = serde_json::to_vec(request).map_err(|e| CallError::Protocol(e.to_string()))?;
        let mut out = Buffer::EMPTY;
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: valid slots and a slice that lives through the call.
        let status = unsafe { (self.api.create)(Bytes::new(&json), &mut ptr, &mut out) };
        self.reply::<()>(status, out)?;
        if ptr.is_null() {
            return Err(CallError::Protocol(
                "create succeeded without an instance".to_string(),
            ));
        }
        Ok(Instance { lib: *self, ptr })
    }
}

/// A tool instance inside a plugin; destroyed on drop.
pub struct Instance {
    lib: PluginLib,
    ptr: *mut c_void,
}

// SAFETY: the ABI requires instances to be usable from any thread; serial tools are
// serialised by the host.
unsafe impl Send for Instance {}
// SAFETY: as above.
unsafe impl Sync for Instance {}

impl Instance {
    /// Runs a job, passing its events to `handler`. Blocks until the job ends.
    pub fn invoke(
        &self,
        job: &Job,
        handler: &mut dyn EventHandler,
    ) -> Result<JobResult, CallError> {
        let json = serde_json::to_vec(job).map_err(|e| CallError::Protocol(e.to_string()))?;
        let mut state = SinkState {
            handler,
            error: None,
        };
        let sink = Sink {
            size: size_of::<Sink>() as u32,
            ctx: (&mut state as *mut SinkState<'_>).cast::<c_void>(),
            emit: sink_emit,
            is_cancelled: sink_is_cancelled,
        };
        let mut out = Buffer::EMPTY;
        // SAFETY: instance, sink and slices are valid for the whole call.
        let status = unsafe { (self.lib.api.invoke)(self.ptr, Bytes::new(&json), &sink, &mut out) };
        let reply = self.lib.reply(status, out);
        if let Some(err) = state.error {
            return Err(CallError::Protocol(err));
        }
        reply
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: created by this plugin's create and destroyed once.
        unsafe { (self.lib.api.destroy)(self.ptr) };
    }
}

struct SinkState<'h> {
    handler: &'h mut dyn EventHandler,
    /// The first protocol violation seen in an event; ends the job.
    error: Option<String>,
}

unsafe extern "C" fn sink_emit(ctx: *mut c_void, event: u32, header: Bytes, payload: Bytes) -> i32 {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: ctx is the SinkState passed with this sink, alive during invoke.
        let state = unsafe { &mut *ctx.cast::<SinkState<'_>>() };
        // SAFETY: the plugin passes slices valid for this call.
        let (header, payload) = unsafe { (header.as_slice(), payload.as_slice()) };
        let parsed = match event {
            EVENT_CHUNK => serde_json::from_slice(header).map(|h| Event::Chunk(h, payload)),
            EVENT_PROGRESS => serde_json::from_slice(header).map(Event::Progress),
            EVENT_LOG => serde_json::from_slice(header).map(Event::Log),
            // Events from a newer minor are ignored.
            _ => return true,
        };
        match parsed {
            Ok(event) => state.handler.event(event),
            Err(err) => {
                state
                    .error
                    .get_or_insert(format!("unreadable event {event}: {err}"));
                false
            }
        }
    }));
    // A panicking handler stops the job rather than unwinding through the plugin.
    i32::from(!outcome.unwrap_or(false))
}

unsafe extern "C" fn sink_is_cancelled(ctx: *mut c_void) -> i32 {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: ctx is the SinkState passed with this sink, alive during invoke.
        let state = unsafe { &*ctx.cast::<SinkState<'_>>() };
        state.handler.is_cancelled()
    }));
    i32::from(outcome.unwrap_or(true))
}
