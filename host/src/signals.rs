//! The signals that stop a job: Ctrl-C (SIGINT), SIGTERM and SIGHUP, one rule for all.
//!
//! One thread receives them for the whole process and hands each to whoever watches the job
//! running now (see [`subscribe`]), which decides: a local job is cancelled (children
//! stopped, partial outputs removed, exit 130, 143 or 129: 128 plus the signal's number), a
//! job that recorded a remote checkpoint is detached, and a second signal ends the process at
//! once. With no job running, a signal ends launcher as it would without this module.

use std::sync::{Mutex, Once};

type Handler = Box<dyn Fn(i32) + Send>;

/// Whoever watches the running job.
static CURRENT: Mutex<Option<Handler>> = Mutex::new(None);

/// Stops handing signals to a watcher when dropped.
pub(crate) struct Subscription(());

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut current) = CURRENT.lock() {
            *current = None;
        }
    }
}

/// Hands every stopping signal to `handler` until the returned subscription is dropped.
///
/// Returns `None` when signals cannot be hooked on this platform (then they keep their
/// default effect: the process ends, and partial outputs may stay behind).
pub(crate) fn subscribe(handler: impl Fn(i32) + Send + 'static) -> Option<Subscription> {
    if !listen() {
        return None;
    }
    *CURRENT.lock().ok()? = Some(Box::new(handler));
    Some(Subscription(()))
}

/// Starts the one thread that receives signals; returns whether it runs.
#[cfg(unix)]
fn listen() -> bool {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use std::sync::atomic::{AtomicBool, Ordering};
    static STARTED: Once = Once::new();
    static LISTENING: AtomicBool = AtomicBool::new(false);
    STARTED.call_once(|| {
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let current = CURRENT.lock();
                    match current.as_ref().ok().and_then(|c| c.as_ref()) {
                        Some(handler) => handler(signal),
                        None => std::process::exit(i32::from(exit_code(signal))),
                    }
                }
            });
        LISTENING.store(spawned.is_ok(), Ordering::SeqCst);
    });
    LISTENING.load(Ordering::SeqCst)
}

#[cfg(not(unix))]
fn listen() -> bool {
    let _ = Once::new();
    false
}

/// Returns the conventional exit code of a process ended by `signal`.
pub(crate) fn exit_code(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}

/// Returns a signal's name, for messages.
pub(crate) fn name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "Ctrl-C",
        15 => "SIGTERM",
        _ => "a signal",
    }
}
