//! The C ABI between the host and a plugin library, and both sides of it.
//!
//! A plugin library exports two symbols:
//! - [`HEADER_SYMBOL`], a [`PluginHeader`] static the host reads before calling any plugin code:
//!   magic bytes, ABI major and minor, and its own size;
//! - [`INIT_SYMBOL`], a function that receives the host's ABI minor and returns a pointer to a
//!   static [`PluginApi`] table.
//!
//! Only C types cross: byte slices carrying JSON (the messages of [`Manifest`], [`Job`] and
//! friends), output bytes, and function pointers. Memory is freed by the side that allocated
//! it: buffers a plugin returns go back through [`PluginApi::free_buffer`]; slices either side
//! passes are borrowed for one call. During invoke the host passes a [`Sink`]: outputs are
//! explicit streams (open with a JSON [`OutputHeader`] and get an id, write bytes to the id,
//! close it), so the host knows when each output is complete.
//!
//! # Growth
//!
//! ABI 2.0 froze the size of every table: [`HEADER_SIZE_2_0`], [`API_SIZE_2_0`] and
//! [`SINK_SIZE_2_0`]; each later minor froze the sizes it left ([`SINK_SIZE_2_1`]). A minor
//! version only appends fields. Each side accepts any table at least the 2.0 size and reads a
//! later field only when the table's `size` covers it; the init function receives the host's
//! minor, and a plugin newer than its host uses only what that host has. Minor 1 appended
//! [`PluginApi::describe`] (tools and parameters that depend on configuration) and
//! [`Sink::checkpoint`] (resumable jobs); minor 2 appended [`Sink::confirm`] (asking the user
//! to accept what a paid job costs). Enumerations carried in JSON
//! tolerate values they do not know. `sdk/include/launcher_plugin.h` is the same ABI in C.
//!
//! Every entry point runs inside `catch_unwind`, because a panic unwinding out of `extern "C"`
//! aborts the process. [`export_plugin!`](crate::export_plugin) writes the plugin side;
//! [`PluginLib`] is the host side, used by the `launcher` binary and by the SDK's `testing`
//! module.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::mem::offset_of;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use crate::cost::Cost;
use crate::error::PluginError;
use crate::plugin::{Context, Events, Plugin};
use crate::types::{
    CreateRequest, DescribeRequest, DescribeResponse, Job, JobResult, LogLine, Manifest,
    OutputHeader, Progress,
};

/// The first bytes of every plugin header.
pub const MAGIC: [u8; 8] = *b"LNCHPLG\0";
/// The ABI major version this SDK speaks; a host refuses any other.
pub const ABI_MAJOR: u32 = 2;
/// The ABI minor version this SDK speaks; minors only append.
pub const ABI_MINOR: u32 = 2;
/// The name of the exported [`PluginHeader`] static.
pub const HEADER_SYMBOL: &[u8] = b"LAUNCHER_PLUGIN_HEADER\0";
/// The name of the exported init function, of type [`InitFn`].
pub const INIT_SYMBOL: &[u8] = b"launcher_plugin_init\0";

/// The size of [`PluginHeader`] as of ABI 2.0, frozen.
pub const HEADER_SIZE_2_0: u32 = 20;
/// The size of [`PluginApi`] as of ABI 2.0 (everything before `describe`), frozen.
pub const API_SIZE_2_0: u32 = offset_of!(PluginApi, describe) as u32;
/// The size of [`Sink`] as of ABI 2.0 (everything before `checkpoint`), frozen.
pub const SINK_SIZE_2_0: u32 = offset_of!(Sink, checkpoint) as u32;
/// The size of [`Sink`] as of ABI 2.1 (everything before `confirm`), frozen.
pub const SINK_SIZE_2_1: u32 = offset_of!(Sink, confirm) as u32;

/// A call succeeded; the buffer holds its JSON result.
pub const STATUS_OK: i32 = 0;
/// A call failed; the buffer holds a JSON [`PluginError`].
pub const STATUS_ERROR: i32 = 1;
/// A call panicked; the buffer holds the panic message as UTF-8.
pub const STATUS_PANIC: i32 = 2;

/// A sink call went through; the job goes on.
pub const SINK_OK: i32 = 0;
/// The host wants the job to stop (cancelled, or the output cannot be written).
pub const SINK_STOP: i32 = 1;
/// The host refused the call as a protocol error (unknown output id, unreadable JSON); the
/// job must stop.
pub const SINK_REFUSED: i32 = 2;
/// [`Sink::checkpoint`] only: the host cannot keep checkpoints for this job.
pub const SINK_UNSUPPORTED: i32 = 3;

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
        size: HEADER_SIZE_2_0,
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
///
/// Every callback returns [`SINK_OK`] to go on; anything else means the job must stop.
#[repr(C)]
pub struct Sink {
    /// `size_of::<Sink>()` as the host saw it; fields past it are absent.
    pub size: u32,
    /// The host's state, passed back to every callback.
    pub ctx: *mut c_void,
    /// Opens an output described by a JSON [`OutputHeader`]; writes its id into `id`.
    pub open_output: unsafe extern "C" fn(ctx: *mut c_void, header: Bytes, id: *mut u32) -> i32,
    /// Appends bytes to an open output.
    pub write_output: unsafe extern "C" fn(ctx: *mut c_void, id: u32, bytes: Bytes) -> i32,
    /// Closes an output: it is complete.
    pub close_output: unsafe extern "C" fn(ctx: *mut c_void, id: u32) -> i32,
    /// Reports progress as a JSON [`Progress`].
    pub progress: unsafe extern "C" fn(ctx: *mut c_void, progress: Bytes) -> i32,
    /// Sends a JSON [`LogLine`].
    pub log: unsafe extern "C" fn(ctx: *mut c_void, line: Bytes) -> i32,
    /// Returns non-zero when the job should stop.
    pub is_cancelled: unsafe extern "C" fn(ctx: *mut c_void) -> i32,
    /// Minor 1: records a checkpoint (a small JSON value, such as a remote task id) that a later
    /// run of the job receives as [`Job::resume`]; [`SINK_UNSUPPORTED`] when the host keeps none.
    pub checkpoint: unsafe extern "C" fn(ctx: *mut c_void, value: Bytes) -> i32,
    /// Minor 2: asks the user to accept a JSON [`Cost`] before paid work is submitted;
    /// [`SINK_OK`] when accepted, [`SINK_STOP`] when declined or refused (send nothing).
    pub confirm: unsafe extern "C" fn(ctx: *mut c_void, cost: Bytes) -> i32,
}

/// The table a plugin's init function returns. Fields are only ever appended.
#[repr(C)]
pub struct PluginApi {
    /// `size_of::<PluginApi>()` as the plugin saw it; fields past it are absent.
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
    /// Minor 1: answers a JSON [`DescribeRequest`] with a JSON [`DescribeResponse`].
    pub describe: unsafe extern "C" fn(request: Bytes, out: *mut Buffer) -> i32,
}

/// The type of the exported init function.
pub type InitFn = unsafe extern "C" fn(host_abi_minor: u32) -> *const PluginApi;

/// Returns whether a table of `size` bytes holds the field that starts at `offset` and is a
/// function pointer wide.
const fn covers(size: u32, offset: usize) -> bool {
    size as usize >= offset + size_of::<usize>()
}

// ---------------------------------------------------------------------------------------------
// Plugin side

/// The host's ABI minor, as given to the init function; the plugin uses only what it has.
static HOST_ABI_MINOR: AtomicU32 = AtomicU32::new(0);

/// Remembers the host's ABI minor. Called by the init function [`export_plugin!`] writes.
#[doc(hidden)]
pub fn set_host_abi_minor(minor: u32) {
    HOST_ABI_MINOR.store(minor, Ordering::Relaxed);
}

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
        describe: describe_shim::<P>,
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

fn stamp(mut manifest: Manifest) -> Manifest {
    manifest.abi = ABI_MAJOR;
    manifest.abi_minor = ABI_MINOR;
    manifest.sdk_version = env!("CARGO_PKG_VERSION").to_string();
    manifest
}

unsafe extern "C" fn manifest_shim<P: Plugin>(out: *mut Buffer) -> i32 {
    guarded(out, || Ok(stamp(P::manifest())))
}

unsafe extern "C" fn describe_shim<P: Plugin>(request: Bytes, out: *mut Buffer) -> i32 {
    guarded(out, || {
        // SAFETY: the host passes a slice valid for this call.
        let request: DescribeRequest = serde_json::from_slice(unsafe { request.as_slice() })
            .map_err(|e| PluginError::internal(format!("malformed describe request: {e}")))?;
        let tools = P::describe(&request)?;
        Ok(DescribeResponse { tools })
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
        let mut events = SinkEvents { sink };
        let mut cx = Context::new(&mut events);
        let result = plugin.invoke(&job, &mut cx)?;
        // Outputs a successful job left open are complete; those of a failed job are not,
        // and stay open so that the host drops them.
        cx.close_all()?;
        Ok(result)
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
///
/// The sink is kept as a pointer and read field by field: a host older than this SDK passes a
/// smaller sink, and the fields it lacks must never be read.
struct SinkEvents {
    sink: *const Sink,
}

impl SinkEvents {
    fn size(&self) -> u32 {
        // SAFETY: every sink starts with its size; valid for the duration of the invoke call.
        unsafe { (*self.sink).size }
    }

    fn ctx(&self) -> *mut c_void {
        // SAFETY: as above; `ctx` is a 2.0 field.
        unsafe { (*self.sink).ctx }
    }

    fn json_call(
        &self,
        value: &impl serde::Serialize,
        call: impl FnOnce(*mut c_void, Bytes) -> i32,
    ) -> i32 {
        match serde_json::to_vec(value) {
            Ok(json) => call(self.ctx(), Bytes::new(&json)),
            Err(_) => SINK_REFUSED,
        }
    }
}

impl Events for SinkEvents {
    fn open(&mut self, header: &OutputHeader) -> Option<u32> {
        let json = serde_json::to_vec(header).ok()?;
        let mut id = 0u32;
        // SAFETY: a 2.0 field, valid during invoke; `id` is a valid slot and the slice lives
        // through the call.
        let status = unsafe { ((*self.sink).open_output)(self.ctx(), Bytes::new(&json), &mut id) };
        (status == SINK_OK).then_some(id)
    }

    fn write(&mut self, id: u32, bytes: &[u8]) -> bool {
        // SAFETY: a 2.0 field, valid during invoke; the slice lives through the call.
        unsafe { ((*self.sink).write_output)(self.ctx(), id, Bytes::new(bytes)) == SINK_OK }
    }

    fn close(&mut self, id: u32) -> bool {
        // SAFETY: a 2.0 field, valid during invoke.
        unsafe { ((*self.sink).close_output)(self.ctx(), id) == SINK_OK }
    }

    fn progress(&mut self, progress: &Progress) -> bool {
        let sink = self.sink;
        // SAFETY: a 2.0 field, valid during invoke.
        self.json_call(progress, |ctx, json| unsafe {
            ((*sink).progress)(ctx, json)
        }) == SINK_OK
    }

    fn log(&mut self, line: &LogLine) {
        let sink = self.sink;
        // SAFETY: a 2.0 field, valid during invoke.
        self.json_call(line, |ctx, json| unsafe { ((*sink).log)(ctx, json) });
    }

    fn is_cancelled(&self) -> bool {
        // SAFETY: a 2.0 field, valid during invoke.
        unsafe { ((*self.sink).is_cancelled)(self.ctx()) != 0 }
    }

    fn checkpoint(&mut self, value: &Value) -> Result<bool, ()> {
        if HOST_ABI_MINOR.load(Ordering::Relaxed) < 1
            || !covers(self.size(), offset_of!(Sink, checkpoint))
        {
            return Ok(false);
        }
        let sink = self.sink;
        // SAFETY: the size check above says the host's sink has this minor-1 field.
        match self.json_call(value, |ctx, json| unsafe {
            ((*sink).checkpoint)(ctx, json)
        }) {
            SINK_OK => Ok(true),
            SINK_UNSUPPORTED => Ok(false),
            _ => Err(()),
        }
    }

    fn confirm(&mut self, cost: &Cost) -> Option<bool> {
        if !host_has_confirm(HOST_ABI_MINOR.load(Ordering::Relaxed), self.size()) {
            return None;
        }
        let sink = self.sink;
        // SAFETY: host_has_confirm says the host's sink has this minor-2 field.
        let status = self.json_call(cost, |ctx, json| unsafe { ((*sink).confirm)(ctx, json) });
        Some(status == SINK_OK)
    }
}

/// Returns whether a host of ABI minor `host_minor`, which passed a sink of `sink_size` bytes,
/// can be asked to confirm a cost.
fn host_has_confirm(host_minor: u32, sink_size: u32) -> bool {
    host_minor >= 2 && covers(sink_size, offset_of!(Sink, confirm))
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
            host_abi_minor: u32,
        ) -> *const $crate::abi::PluginApi {
            $crate::abi::install_panic_hook();
            $crate::abi::set_host_abi_minor(host_abi_minor);
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
    /// The plugin broke the protocol (an unreadable reply, an unknown output id).
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
    /// An output was opened with this id.
    Open(u32, OutputHeader),
    /// Bytes of an open output.
    Write(u32, &'a [u8]),
    /// An output is complete.
    Close(u32),
    /// Progress.
    Progress(Progress),
    /// A log line.
    Log(LogLine),
    /// A checkpoint to keep with the job, replacing any earlier one.
    Checkpoint(Value),
}

/// What the host does with a job's events.
pub trait EventHandler {
    /// Handles an event; returns false to ask the job to stop.
    fn event(&mut self, event: Event<'_>) -> bool;
    /// Returns whether the job should stop.
    fn is_cancelled(&self) -> bool;
    /// Returns whether checkpoints are kept for this job. A host that keeps none answers the
    /// plugin [`SINK_UNSUPPORTED`], and the plugin goes on without.
    fn keeps_checkpoints(&self) -> bool {
        true
    }
    /// Returns whether the user accepts `cost` for this job; false stops it before anything
    /// paid is submitted.
    fn confirm_cost(&mut self, cost: &Cost) -> bool;
}

/// A plugin's table, checked and ready to call.
///
/// Kept as a pointer: the table may be smaller than this SDK's [`PluginApi`] (a plugin built
/// for an earlier minor), so only fields its size covers are ever read.
#[derive(Clone, Copy)]
pub struct PluginLib {
    api: *const PluginApi,
    size: u32,
    minor: u32,
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
            let hint = if header.abi_major < ABI_MAJOR {
                "; rebuild it against the current launcher SDK"
            } else {
                "; a newer launcher is needed to run it"
            };
            return Err(format!(
                "was built for plugin ABI {}, and this launcher speaks ABI {ABI_MAJOR}{hint}",
                header.abi_major
            ));
        }
        if header.size < HEADER_SIZE_2_0 {
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
        // SAFETY: non-null, pointing to a static table that starts with its size and minor.
        let (size, minor) = unsafe { ((*api).size, (*api).abi_minor) };
        if size < API_SIZE_2_0 {
            return Err(format!(
                "has a function table of {size} bytes, smaller than ABI {ABI_MAJOR}.0's {API_SIZE_2_0}"
            ));
        }
        Ok(PluginLib { api, size, minor })
    }

    /// Returns a plugin built into this process (for tests): the same table the export
    /// macro exports, called through the same function pointers.
    pub fn of<P: Plugin>() -> PluginLib {
        struct Table<P>(std::marker::PhantomData<P>);
        impl<P: Plugin> Table<P> {
            const API: &'static PluginApi = &plugin_api::<P>();
        }
        // The plugin is built into this process, so it shares this SDK's notion of its host.
        set_host_abi_minor(ABI_MINOR);
        PluginLib {
            api: Table::<P>::API,
            size: size_of::<PluginApi>() as u32,
            minor: ABI_MINOR,
        }
    }

    /// Returns the ABI minor the plugin's table declares.
    pub fn abi_minor(&self) -> u32 {
        self.minor
    }

    /// Returns the table's 2.0 functions, which every accepted table has.
    fn base(&self) -> &PluginApiBase {
        // SAFETY: the table is at least API_SIZE_2_0 bytes (checked in init), and
        // PluginApiBase is exactly its 2.0 prefix.
        unsafe { &*self.api.cast::<PluginApiBase>() }
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
        unsafe { (self.base().free_buffer)(buffer) };
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
        let status = unsafe { (self.base().manifest)(&mut out) };
        self.reply(status, out)
    }

    /// Asks the plugin to describe tools that depend on configuration or arguments. Returns
    /// `None` when the plugin's table predates `describe` (ABI 2.0): its manifest is all there is.
    pub fn describe(
        &self,
        request: &DescribeRequest,
    ) -> Result<Option<DescribeResponse>, CallError> {
        if self.minor < 1 || !covers(self.size, offset_of!(PluginApi, describe)) {
            return Ok(None);
        }
        let json = serde_json::to_vec(request).map_err(|e| CallError::Protocol(e.to_string()))?;
        let mut out = Buffer::EMPTY;
        // SAFETY: the size check says the table has `describe`; read through the raw pointer
        // so no reference to a field it lacks is ever made.
        let status = unsafe { ((*self.api).describe)(Bytes::new(&json), &mut out) };
        self.reply(status, out).map(Some)
    }

    /// Creates an instance of a tool with its settings.
    pub fn create(&self, request: &CreateRequest) -> Result<Instance, CallError> {
        let json = serde_json::to_vec(request).map_err(|e| CallError::Protocol(e.to_string()))?;
        let mut out = Buffer::EMPTY;
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: valid slots and a slice that lives through the call.
        let status = unsafe { (self.base().create)(Bytes::new(&json), &mut ptr, &mut out) };
        self.reply::<()>(status, out)?;
        if ptr.is_null() {
            return Err(CallError::Protocol(
                "create succeeded without an instance".to_string(),
            ));
        }
        Ok(Instance { lib: *self, ptr })
    }
}

/// The 2.0 prefix of [`PluginApi`], the part every accepted table has.
#[repr(C)]
struct PluginApiBase {
    size: u32,
    abi_minor: u32,
    manifest: unsafe extern "C" fn(out: *mut Buffer) -> i32,
    create:
        unsafe extern "C" fn(request: Bytes, instance: *mut *mut c_void, out: *mut Buffer) -> i32,
    invoke: unsafe extern "C" fn(
        instance: *const c_void,
        job: Bytes,
        sink: *const Sink,
        out: *mut Buffer,
    ) -> i32,
    destroy: unsafe extern "C" fn(instance: *mut c_void),
    free_buffer: unsafe extern "C" fn(buffer: Buffer),
}

const _: () = assert!(size_of::<PluginApiBase>() == API_SIZE_2_0 as usize);

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
            next_id: 1,
            open: Vec::new(),
            error: None,
        };
        let sink = Sink {
            size: size_of::<Sink>() as u32,
            ctx: (&mut state as *mut SinkState<'_>).cast::<c_void>(),
            open_output: sink_open,
            write_output: sink_write,
            close_output: sink_close,
            progress: sink_progress,
            log: sink_log,
            is_cancelled: sink_is_cancelled,
            checkpoint: sink_checkpoint,
            confirm: sink_confirm,
        };
        let mut out = Buffer::EMPTY;
        // SAFETY: instance, sink and slices are valid for the whole call.
        let status =
            unsafe { (self.lib.base().invoke)(self.ptr, Bytes::new(&json), &sink, &mut out) };
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
        unsafe { (self.lib.base().destroy)(self.ptr) };
    }
}

struct SinkState<'h> {
    handler: &'h mut dyn EventHandler,
    next_id: u32,
    /// Ids of the outputs open now.
    open: Vec<u32>,
    /// The first protocol violation seen in an event; ends the job.
    error: Option<String>,
}

impl SinkState<'_> {
    fn refuse(&mut self, why: String) -> i32 {
        self.error.get_or_insert(why);
        SINK_REFUSED
    }

    fn deliver(&mut self, event: Event<'_>) -> i32 {
        if self.handler.event(event) {
            SINK_OK
        } else {
            SINK_STOP
        }
    }
}

/// Runs a sink callback on the host's state, catching panics: a panicking handler stops the
/// job rather than unwinding through the plugin.
fn with_state(ctx: *mut c_void, body: impl FnOnce(&mut SinkState<'_>) -> i32) -> i32 {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: ctx is the SinkState passed with this sink, alive during invoke.
        let state = unsafe { &mut *ctx.cast::<SinkState<'_>>() };
        body(state)
    }))
    .unwrap_or(SINK_STOP)
}

unsafe extern "C" fn sink_open(ctx: *mut c_void, header: Bytes, id: *mut u32) -> i32 {
    with_state(ctx, |state| {
        // SAFETY: the plugin passes a slice valid for this call.
        let header: OutputHeader = match serde_json::from_slice(unsafe { header.as_slice() }) {
            Ok(h) => h,
            Err(e) => return state.refuse(format!("unreadable output header: {e}")),
        };
        if id.is_null() {
            return state.refuse("open_output without a slot for the id".to_string());
        }
        let new = state.next_id;
        state.next_id += 1;
        state.open.push(new);
        // SAFETY: checked non-null; the plugin passes a writable slot.
        unsafe { id.write(new) };
        state.deliver(Event::Open(new, header))
    })
}

unsafe extern "C" fn sink_write(ctx: *mut c_void, id: u32, bytes: Bytes) -> i32 {
    with_state(ctx, |state| {
        if !state.open.contains(&id) {
            return state.refuse(format!("wrote to output {id}, which is not open"));
        }
        // SAFETY: the plugin passes a slice valid for this call.
        let bytes = unsafe { bytes.as_slice() };
        state.deliver(Event::Write(id, bytes))
    })
}

unsafe extern "C" fn sink_close(ctx: *mut c_void, id: u32) -> i32 {
    with_state(ctx, |state| {
        let Some(index) = state.open.iter().position(|open| *open == id) else {
            return state.refuse(format!("closed output {id}, which is not open"));
        };
        state.open.swap_remove(index);
        state.deliver(Event::Close(id))
    })
}

unsafe extern "C" fn sink_progress(ctx: *mut c_void, progress: Bytes) -> i32 {
    with_state(ctx, |state| {
        // SAFETY: the plugin passes a slice valid for this call.
        match serde_json::from_slice(unsafe { progress.as_slice() }) {
            Ok(p) => state.deliver(Event::Progress(p)),
            Err(e) => state.refuse(format!("unreadable progress: {e}")),
        }
    })
}

unsafe extern "C" fn sink_log(ctx: *mut c_void, line: Bytes) -> i32 {
    with_state(ctx, |state| {
        // SAFETY: the plugin passes a slice valid for this call.
        match serde_json::from_slice(unsafe { line.as_slice() }) {
            Ok(l) => state.deliver(Event::Log(l)),
            Err(e) => state.refuse(format!("unreadable log line: {e}")),
        }
    })
}

unsafe extern "C" fn sink_is_cancelled(ctx: *mut c_void) -> i32 {
    with_state(ctx, |state| i32::from(state.handler.is_cancelled()))
}

unsafe extern "C" fn sink_checkpoint(ctx: *mut c_void, value: Bytes) -> i32 {
    with_state(ctx, |state| {
        if !state.handler.keeps_checkpoints() {
            return SINK_UNSUPPORTED;
        }
        // SAFETY: the plugin passes a slice valid for this call.
        match serde_json::from_slice(unsafe { value.as_slice() }) {
            Ok(v) => state.deliver(Event::Checkpoint(v)),
            Err(e) => state.refuse(format!("unreadable checkpoint: {e}")),
        }
    })
}

unsafe extern "C" fn sink_confirm(ctx: *mut c_void, cost: Bytes) -> i32 {
    with_state(ctx, |state| {
        // SAFETY: the plugin passes a slice valid for this call.
        match serde_json::from_slice::<Cost>(unsafe { cost.as_slice() }) {
            Ok(cost) if state.handler.confirm_cost(&cost) => SINK_OK,
            Ok(_) => SINK_STOP,
            Err(e) => state.refuse(format!("unreadable cost: {e}")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Settings, ToolSpec};

    /// Echoes its prompt, and records a checkpoint first when asked to.
    struct Echo;

    impl Plugin for Echo {
        fn manifest() -> Manifest {
            Manifest::new("echo", "0.1.0").tool(ToolSpec::new("echo", &["chat"]))
        }

        fn new(_tool: &str, _settings: &Settings) -> Result<Self, PluginError> {
            Ok(Echo)
        }

        fn invoke(&self, job: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
            let kept = cx.checkpoint(&serde_json::json!({"remote": "task-1"}))?;
            cx.confirm_cost(&Cost {
                amount: 0.5,
                currency: "USD".into(),
                what: "an echo".into(),
            })?;
            cx.text(job.require_str("prompt")?)?;
            let mut result = JobResult::default();
            result.info.insert("checkpoint_kept".into(), kept.into());
            Ok(result)
        }
    }

    struct Recorder {
        text: Vec<u8>,
        checkpoints: usize,
        closed: usize,
        costs: Vec<Cost>,
    }

    impl EventHandler for Recorder {
        fn event(&mut self, event: Event<'_>) -> bool {
            match event {
                Event::Write(_, bytes) => self.text.extend_from_slice(bytes),
                Event::Checkpoint(_) => self.checkpoints += 1,
                Event::Close(_) => self.closed += 1,
                _ => {}
            }
            true
        }

        fn is_cancelled(&self) -> bool {
            false
        }

        fn confirm_cost(&mut self, cost: &Cost) -> bool {
            self.costs.push(cost.clone());
            true
        }
    }

    fn echo_job() -> Job {
        let mut job = Job::new("chat", "echo");
        job.params.insert("prompt".into(), "hello".into());
        job
    }

    fn run(lib: PluginLib) -> (Recorder, JobResult) {
        let instance = lib
            .create(&CreateRequest {
                tool: "echo".into(),
                settings: Settings::default(),
            })
            .unwrap();
        let mut recorder = Recorder {
            text: Vec::new(),
            checkpoints: 0,
            closed: 0,
            costs: Vec::new(),
        };
        let result = instance.invoke(&echo_job(), &mut recorder).unwrap();
        (recorder, result)
    }

    /// A table exactly as ABI 2.0 froze it: no `describe`.
    #[repr(C)]
    struct ApiV2_0 {
        base: PluginApiBase,
    }

    static V2_0: ApiV2_0 = ApiV2_0 {
        base: PluginApiBase {
            size: API_SIZE_2_0,
            abi_minor: 0,
            manifest: manifest_shim::<Echo>,
            create: create_shim::<Echo>,
            invoke: invoke_shim::<Echo>,
            destroy: destroy_shim::<Echo>,
            free_buffer: free_buffer_shim,
        },
    };

    unsafe extern "C" fn init_v2_0(_host_minor: u32) -> *const PluginApi {
        (&V2_0 as *const ApiV2_0).cast()
    }

    /// A table from a future minor that appended a field this host does not know.
    #[repr(C)]
    struct ApiV2_9 {
        current: PluginApi,
        future: unsafe extern "C" fn() -> i32,
    }

    unsafe extern "C" fn future_entry() -> i32 {
        panic!("a host must never call a field it does not know")
    }

    static V2_9: ApiV2_9 = ApiV2_9 {
        current: PluginApi {
            size: size_of::<ApiV2_9>() as u32,
            abi_minor: 9,
            ..plugin_api::<Echo>()
        },
        future: future_entry,
    };

    unsafe extern "C" fn init_v2_9(host_minor: u32) -> *const PluginApi {
        set_host_abi_minor(host_minor);
        (&V2_9 as *const ApiV2_9).cast()
    }

    #[test]
    fn frozen_sizes_are_what_the_c_header_says() {
        // sdk/include/launcher_plugin.h states the same numbers for 64-bit targets.
        if size_of::<usize>() == 8 {
            assert_eq!(HEADER_SIZE_2_0, 20);
            assert_eq!(API_SIZE_2_0, 48);
            assert_eq!(SINK_SIZE_2_0, 64);
            assert_eq!(SINK_SIZE_2_1, 72);
            assert_eq!(size_of::<PluginApi>(), 56);
            assert_eq!(size_of::<Sink>(), 80);
        }
        assert_eq!(size_of::<PluginHeader>() as u32, HEADER_SIZE_2_0);
    }

    #[test]
    fn a_table_of_only_2_0_fields_loads_and_runs_in_this_host() {
        // SAFETY: init_v2_0 returns a static 2.0 table of this process.
        let lib = unsafe { PluginLib::init(init_v2_0) }.unwrap();
        assert_eq!(lib.abi_minor(), 0);
        assert_eq!(lib.manifest().unwrap().name, "echo");
        assert!(lib.describe(&DescribeRequest::default()).unwrap().is_none());
        let (recorder, _) = run(lib);
        assert_eq!(recorder.text, b"hello");
    }

    #[test]
    fn a_table_of_a_newer_minor_loads_and_its_unknown_fields_are_never_read() {
        // SAFETY: init_v2_9 returns a static table of this process.
        let lib = unsafe { PluginLib::init(init_v2_9) }.unwrap();
        assert_eq!(lib.abi_minor(), 9);
        let described = lib.describe(&DescribeRequest::default()).unwrap().unwrap();
        assert_eq!(described.tools[0].id, "echo");
        let (recorder, result) = run(lib);
        assert_eq!(recorder.text, b"hello");
        assert_eq!(recorder.checkpoints, 1);
        assert_eq!(
            recorder.costs.len(),
            1,
            "this host is asked to confirm the cost"
        );
        assert_eq!(recorder.costs[0].what, "an echo");
        assert_eq!(
            recorder.closed, 1,
            "the text output is closed when the job ends"
        );
        assert_eq!(result.info["checkpoint_kept"], true);
    }

    #[test]
    fn a_table_smaller_than_2_0_is_refused() {
        static SMALL: ApiV2_0 = ApiV2_0 {
            base: PluginApiBase {
                size: API_SIZE_2_0 - 8,
                ..V2_0.base
            },
        };
        unsafe extern "C" fn init_small(_: u32) -> *const PluginApi {
            (&SMALL as *const ApiV2_0).cast()
        }
        // SAFETY: as above.
        let err = unsafe { PluginLib::init(init_small) }.err().unwrap();
        assert!(err.contains("smaller than ABI 2.0"), "{err}");
    }

    #[test]
    fn a_plugin_given_a_2_0_sink_goes_on_without_checkpoints() {
        struct Host {
            text: Vec<u8>,
        }
        unsafe extern "C" fn open(ctx: *mut c_void, _h: Bytes, id: *mut u32) -> i32 {
            let _ = ctx;
            // SAFETY: the plugin passes a writable slot.
            unsafe { id.write(7) };
            SINK_OK
        }
        unsafe extern "C" fn write(ctx: *mut c_void, id: u32, bytes: Bytes) -> i32 {
            assert_eq!(id, 7);
            // SAFETY: ctx is the Host below; the slice is valid for the call.
            unsafe {
                (*ctx.cast::<Host>())
                    .text
                    .extend_from_slice(bytes.as_slice())
            };
            SINK_OK
        }
        unsafe extern "C" fn ok_id(_: *mut c_void, _: u32) -> i32 {
            SINK_OK
        }
        unsafe extern "C" fn ok_bytes(_: *mut c_void, _: Bytes) -> i32 {
            SINK_OK
        }
        unsafe extern "C" fn no(_: *mut c_void) -> i32 {
            0
        }
        unsafe extern "C" fn never(_: *mut c_void, _: Bytes) -> i32 {
            panic!("a 2.0 sink has no checkpoint field")
        }
        unsafe extern "C" fn never_confirm(_: *mut c_void, _: Bytes) -> i32 {
            panic!("a 2.0 sink has no confirm field")
        }
        let mut host = Host { text: Vec::new() };
        let sink = Sink {
            size: SINK_SIZE_2_0,
            ctx: (&mut host as *mut Host).cast(),
            open_output: open,
            write_output: write,
            close_output: ok_id,
            progress: ok_bytes,
            log: ok_bytes,
            is_cancelled: no,
            checkpoint: never,
            confirm: never_confirm,
        };
        let lib = PluginLib::of::<Echo>();
        let instance = lib
            .create(&CreateRequest {
                tool: "echo".into(),
                settings: Settings::default(),
            })
            .unwrap();
        let json = serde_json::to_vec(&echo_job()).unwrap();
        let mut out = Buffer::EMPTY;
        // SAFETY: a valid instance, job slice, sink and out slot for the call.
        let status =
            unsafe { invoke_shim::<Echo>(instance.ptr, Bytes::new(&json), &sink, &mut out) };
        let result: JobResult = lib.reply(status, out).unwrap();
        assert_eq!(host.text, b"hello");
        assert_eq!(result.info["checkpoint_kept"], false);
    }

    #[test]
    fn only_a_host_of_minor_2_with_a_sink_that_has_the_field_is_asked_to_confirm() {
        let full = size_of::<Sink>() as u32;
        assert!(host_has_confirm(2, full));
        assert!(host_has_confirm(3, full));
        // A 2.1 host: its minor says no, and its sink ends before the field.
        assert!(!host_has_confirm(1, SINK_SIZE_2_1));
        assert!(!host_has_confirm(1, full));
        assert!(!host_has_confirm(2, SINK_SIZE_2_1));
        assert!(!host_has_confirm(0, SINK_SIZE_2_0));
    }

    #[test]
    fn writes_to_an_output_that_is_not_open_are_a_protocol_error() {
        struct Rogue;
        impl Plugin for Rogue {
            fn manifest() -> Manifest {
                Manifest::new("rogue", "0.1.0").tool(ToolSpec::new("rogue", &["chat"]))
            }
            fn new(_: &str, _: &Settings) -> Result<Self, PluginError> {
                Ok(Rogue)
            }
            fn invoke(&self, _: &Job, cx: &mut Context<'_>) -> Result<JobResult, PluginError> {
                let out = cx.output("a", "text/plain", "txt")?;
                out.finish()?;
                // Reach under the SDK: write to the id that was just closed.
                cx.text("")?;
                Ok(JobResult::default())
            }
        }
        let lib = PluginLib::of::<Rogue>();
        let instance = lib
            .create(&CreateRequest {
                tool: "rogue".into(),
                settings: Settings::default(),
            })
            .unwrap();
        let mut recorder = Recorder {
            text: Vec::new(),
            checkpoints: 0,
            closed: 0,
            costs: Vec::new(),
        };
        // The SDK never writes to a closed output, so this job succeeds; the refusal itself is
        // checked by calling the sink below.
        assert!(instance.invoke(&echo_job(), &mut recorder).is_ok());
        let mut state = SinkState {
            handler: &mut recorder,
            next_id: 1,
            open: Vec::new(),
            error: None,
        };
        let ctx = (&mut state as *mut SinkState<'_>).cast::<c_void>();
        // SAFETY: ctx is a live SinkState; the slice is valid.
        let status = unsafe { sink_write(ctx, 3, Bytes::new(b"x")) };
        assert_eq!(status, SINK_REFUSED);
        assert!(state.error.unwrap().contains("not open"));
    }
}
