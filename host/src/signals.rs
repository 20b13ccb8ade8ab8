//! The signals that stop a job: Ctrl-C (SIGINT), SIGTERM and SIGHUP, one rule for all.
//!
//! They are delivered as messages to the thread that watches the job, which decides: a local
//! job is cancelled (children stopped, partial outputs removed, exit 130, 143 or 129: 128 plus
//! the signal's number), a job that recorded a remote checkpoint is detached, and a second
//! signal ends the process at once.

use std::sync::mpsc::Sender;

/// Forwards every stopping signal to `send` as its number, on a thread of its own.
///
/// Returns false when the signals could not be hooked (then they keep their default effect:
/// the process ends, and partial outputs may stay behind).
#[cfg(unix)]
pub(crate) fn forward<M: Send + 'static>(tx: Sender<M>, wrap: fn(i32) -> M) -> bool {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return false;
    };
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if tx.send(wrap(signal)).is_err() {
                break;
            }
        }
    });
    true
}

/// Signals are not hooked on this platform; they keep their default effect.
#[cfg(not(unix))]
pub(crate) fn forward<M: Send + 'static>(_tx: Sender<M>, _wrap: fn(i32) -> M) -> bool {
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
