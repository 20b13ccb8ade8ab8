//! Waiting inside a job without ignoring the host: a sleep that ends the moment the job is
//! cancelled, and a poll loop for services that accept a job, hand back an id, and must be
//! asked again until the result is ready.
//!
//! A plain `std::thread::sleep` keeps a cancelled job alive until it wakes, so a user who
//! presses Ctrl-C during a 30 s poll interval waits 30 s. [`sleep`] (and [`Context::sleep`])
//! wake within a few tens of milliseconds instead. [`poll`] wraps the usual submit-and-poll
//! loop: it asks the service, reports progress while the job is pending, sleeps with optional
//! backoff, and ends with an [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) error once the
//! deadline of its [`Poll`] policy has passed.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use launcher_sdk::wait::{poll, Poll, Status};
//! # fn status(cx: &mut launcher_sdk::Context<'_>, id: &str)
//! #     -> Result<(String, f64), launcher_sdk::PluginError> { unimplemented!() }
//! # fn run(cx: &mut launcher_sdk::Context<'_>, id: &str)
//! #     -> Result<(), launcher_sdk::PluginError> {
//! let policy = Poll::every(Duration::from_secs(2))
//!     .backoff(1.5)
//!     .max_interval(Duration::from_secs(15))
//!     .deadline(Duration::from_secs(20 * 60));
//! let video_url = poll(cx, &policy, |cx, _attempt| {
//!     // Any call that needs the context, such as an HTTP request, can be made here.
//!     let (state, fraction) = status(cx, id)?;
//!     Ok(match state.as_str() {
//!         "succeeded" => Status::Done(format!("https://example.com/videos/{id}")),
//!         _ => Status::Pending { fraction: Some(fraction), message: format!("rendering ({state})") },
//!     })
//! })?;
//! # let _ = video_url;
//! # Ok(())
//! # }
//! ```

use std::time::{Duration, Instant};

use crate::error::PluginError;
use crate::plugin::{Cancel, Context};

/// Debug builds only: [`poll`] divides its waits by this number (at least 1), so tests run a
/// service's 5-second polling in milliseconds against an emulator instead of waiting. Release
/// builds ignore it: a service's polling rule is never broken in the field.
pub const TEST_TIME_SCALE: &str = "LAUNCHER_TEST_TIME_SCALE";

/// The longest a [`sleep`] goes without looking at the cancel flag.
const CANCEL_CHECK: Duration = Duration::from_millis(20);

/// Sleeps for `duration`, returning a cancelled error as soon as `cancel` says the job should
/// stop (within about 20 ms).
///
/// Returns the error at once, without sleeping, when the job was already cancelled.
pub fn sleep(cancel: &(impl Cancel + ?Sized), duration: Duration) -> Result<(), PluginError> {
    let start = Instant::now();
    loop {
        if cancel.is_cancelled() {
            return Err(PluginError::cancelled());
        }
        let left = duration.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(CANCEL_CHECK));
    }
}

impl Context<'_> {
    /// Sleeps for `duration` unless the host cancels the job first; see [`sleep`].
    pub fn sleep(&self, duration: Duration) -> Result<(), PluginError> {
        sleep(self, duration)
    }
}

/// Something a long wait can report progress to and take cancellation from.
///
/// Implemented by [`Context`]; tests of a polling adapter can implement it on a fake.
pub trait Reporter: Cancel {
    /// Reports progress: `fraction` from 0 to 1 when known, and what is happening. Returns a
    /// cancelled error when the job should stop.
    fn progress(&mut self, fraction: Option<f64>, message: &str) -> Result<(), PluginError>;
}

impl Reporter for Context<'_> {
    fn progress(&mut self, fraction: Option<f64>, message: &str) -> Result<(), PluginError> {
        Context::progress(self, fraction, message)
    }
}

/// What one look at a remote job found.
#[derive(Debug, Clone, PartialEq)]
pub enum Status<T> {
    /// The job finished with this result; polling stops.
    Done(T),
    /// The job is still running; polling goes on after the next interval.
    Pending {
        /// How far along the job is, from 0 to 1, when the service says.
        fraction: Option<f64>,
        /// What the job is doing, shown to the user as progress.
        message: String,
    },
}

/// How often and for how long [`poll`] asks: a first interval, a backoff factor applied after
/// each look, a cap on the interval, and an overall deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    interval: Duration,
    factor: f64,
    max_interval: Option<Duration>,
    deadline: Duration,
}

impl Poll {
    /// Returns a policy that waits `interval` between looks, without backoff, for at most
    /// 30 minutes.
    pub fn every(interval: Duration) -> Poll {
        Poll {
            interval,
            factor: 1.0,
            max_interval: None,
            deadline: Duration::from_secs(30 * 60),
        }
    }

    /// Multiplies the interval by `factor` after each look (1 keeps it constant). Values
    /// below 1, and values that are not numbers, count as 1: polling never speeds up.
    pub fn backoff(mut self, factor: f64) -> Self {
        self.factor = if factor.is_finite() && factor > 1.0 {
            factor
        } else {
            1.0
        };
        self
    }

    /// Caps the interval that backoff grows to.
    pub fn max_interval(mut self, max: Duration) -> Self {
        self.max_interval = Some(max);
        self
    }

    /// Sets how long polling may go on in total before it ends with a timeout error.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Returns the interval that follows `current`.
    fn next_interval(&self, current: Duration) -> Duration {
        let grown = Duration::try_from_secs_f64(current.as_secs_f64() * self.factor)
            .unwrap_or(Duration::MAX);
        match self.max_interval {
            Some(max) => grown.min(max),
            None => grown,
        }
    }
}

/// Calls `check` until it returns [`Status::Done`], and returns that result.
///
/// `check` receives the reporter (so it can make HTTP calls with the job's context) and the
/// number of the look, from 1. Each [`Status::Pending`] is reported as progress, then `poll`
/// sleeps for the current interval, cut short to the deadline so one last look happens at it.
/// An error from `check` ends polling with that error. Once the deadline has passed and the
/// job is still pending, `poll` returns an [`ErrorKind::Timeout`](crate::ErrorKind::Timeout)
/// error naming how long it waited; a cancelled job ends with a cancelled error at once, even
/// in the middle of a sleep.
pub fn poll<R, T, F>(reporter: &mut R, policy: &Poll, mut check: F) -> Result<T, PluginError>
where
    R: Reporter + ?Sized,
    F: FnMut(&mut R, u32) -> Result<Status<T>, PluginError>,
{
    let start = Instant::now();
    let mut interval = policy.interval;
    let mut attempt = 1u32;
    loop {
        if reporter.is_cancelled() {
            return Err(PluginError::cancelled());
        }
        let last = match check(reporter, attempt)? {
            Status::Done(value) => return Ok(value),
            Status::Pending { fraction, message } => {
                reporter.progress(fraction, &message)?;
                message
            }
        };
        let waited = start.elapsed();
        let left = policy.deadline.saturating_sub(waited);
        if left.is_zero() {
            return Err(gave_up(waited, attempt, &last));
        }
        sleep(&*reporter, fast_forwarded(interval.min(left)))?;
        interval = policy.next_interval(interval);
        attempt = attempt.saturating_add(1);
    }
}

/// The scale set by [`fast_forward`], as `f64` bits; 0 when unset.
#[cfg(feature = "testing")]
static FAST_FORWARD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Plugin tests (feature `testing`): divides every wait of [`poll`] in this process by
/// `scale`, as [`TEST_TIME_SCALE`] does for a whole launcher run.
#[cfg(feature = "testing")]
pub fn fast_forward(scale: f64) {
    FAST_FORWARD.store(scale.to_bits(), std::sync::atomic::Ordering::SeqCst);
}

/// Returns `wait` divided by the test time scale, in a debug build where one is set.
fn fast_forwarded(wait: Duration) -> Duration {
    match test_time_scale() {
        Some(scale) if cfg!(debug_assertions) => wait.div_f64(scale),
        _ => wait,
    }
}

fn test_time_scale() -> Option<f64> {
    #[cfg(feature = "testing")]
    {
        let set = f64::from_bits(FAST_FORWARD.load(std::sync::atomic::Ordering::SeqCst));
        if set.is_finite() && set >= 1.0 {
            return Some(set);
        }
    }
    std::env::var(TEST_TIME_SCALE)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 1.0)
}

fn gave_up(waited: Duration, looks: u32, last: &str) -> PluginError {
    let times = if looks == 1 {
        "once".to_string()
    } else {
        format!("{looks} times")
    };
    let mut message = format!(
        "the job was still not finished after waiting {} (asked {times})",
        human_duration(waited)
    );
    if !last.is_empty() {
        message.push_str(&format!("; its last status was: {last}"));
    }
    PluginError::timeout(message)
        .with_hint("the service may still finish the job; check it there before starting it again")
}

fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1.0 {
        format!("{} ms", d.as_millis())
    } else if secs < 120.0 {
        format!("{secs:.1} s")
    } else {
        format!("{:.1} min", secs / 60.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A reporter that records progress and can be cancelled from another thread.
    #[derive(Default)]
    struct Fake {
        cancel: Arc<AtomicBool>,
        progress: Vec<(Option<f64>, String)>,
        stop_on_progress: bool,
    }

    impl Cancel for Fake {
        fn is_cancelled(&self) -> bool {
            self.cancel.load(Ordering::SeqCst)
        }
    }

    impl Reporter for Fake {
        fn progress(&mut self, fraction: Option<f64>, message: &str) -> Result<(), PluginError> {
            self.progress.push((fraction, message.to_string()));
            if self.stop_on_progress {
                Err(PluginError::cancelled())
            } else {
                Ok(())
            }
        }
    }

    fn cancel_after(flag: &Arc<AtomicBool>, after: Duration) -> std::thread::JoinHandle<()> {
        let flag = Arc::clone(flag);
        std::thread::spawn(move || {
            std::thread::sleep(after);
            flag.store(true, Ordering::SeqCst);
        })
    }

    fn pending(message: &str) -> Status<u32> {
        Status::Pending {
            fraction: None,
            message: message.to_string(),
        }
    }

    #[test]
    fn sleep_sleeps_the_whole_duration() {
        let flag = AtomicBool::new(false);
        let start = Instant::now();
        sleep(&flag, Duration::from_millis(60)).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(60));
    }

    #[test]
    fn sleep_wakes_promptly_when_cancelled() {
        let flag = Arc::new(AtomicBool::new(false));
        let canceller = cancel_after(&flag, Duration::from_millis(50));
        let start = Instant::now();
        let err = sleep(&*flag, Duration::from_secs(20)).unwrap_err();
        canceller.join().unwrap();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        // 50 ms until the flag is set, up to 20 ms to notice, and slack for a busy machine.
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn sleep_returns_at_once_when_already_cancelled() {
        let flag = AtomicBool::new(true);
        let start = Instant::now();
        let err = sleep(&flag, Duration::from_secs(20)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert!(start.elapsed() < Duration::from_millis(20));
    }

    #[test]
    fn context_sleep_follows_the_host() {
        let mut running = crate::plugin::TestHost::default();
        Context::new(&mut running)
            .sleep(Duration::from_millis(5))
            .unwrap();
        let mut stopped = crate::plugin::TestHost::default();
        stopped
            .cancel
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let err = Context::new(&mut stopped)
            .sleep(Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled);
    }

    #[test]
    fn poll_reports_progress_until_done() {
        let mut fake = Fake::default();
        let policy = Poll::every(Duration::from_millis(2));
        let mut seen = Vec::new();
        let value = poll(&mut fake, &policy, |_, attempt| {
            seen.push(attempt);
            Ok(if attempt < 3 {
                Status::Pending {
                    fraction: Some(f64::from(attempt) / 3.0),
                    message: format!("step {attempt}"),
                }
            } else {
                Status::Done(42)
            })
        })
        .unwrap();
        assert_eq!(value, 42);
        assert_eq!(seen, vec![1, 2, 3]);
        assert_eq!(
            fake.progress,
            vec![
                (Some(1.0 / 3.0), "step 1".to_string()),
                (Some(2.0 / 3.0), "step 2".to_string())
            ]
        );
    }

    #[test]
    fn poll_done_at_first_look_does_not_sleep() {
        let mut fake = Fake::default();
        let policy = Poll::every(Duration::from_secs(30));
        let start = Instant::now();
        let value = poll(&mut fake, &policy, |_, _| Ok(Status::Done("ready"))).unwrap();
        assert_eq!(value, "ready");
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(fake.progress.is_empty());
    }

    #[test]
    fn poll_backs_off_up_to_the_cap() {
        let mut fake = Fake::default();
        let policy = Poll::every(Duration::from_millis(10))
            .backoff(2.0)
            .max_interval(Duration::from_millis(40));
        let mut times = Vec::new();
        poll(&mut fake, &policy, |_, attempt| {
            times.push(Instant::now());
            Ok(if attempt < 6 {
                pending("")
            } else {
                Status::Done(0)
            })
        })
        .unwrap();
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        // Asked waits: 10, 20, 40, 40, 40 ms.
        let asked = [10, 20, 40, 40, 40];
        for (gap, ms) in gaps.iter().zip(asked) {
            assert!(*gap >= Duration::from_millis(ms), "{gaps:?}");
        }
        assert_eq!(
            policy.next_interval(Duration::from_millis(40)),
            Duration::from_millis(40)
        );
        assert_eq!(
            policy.next_interval(Duration::from_millis(10)),
            Duration::from_millis(20)
        );
    }

    #[test]
    fn backoff_never_speeds_polling_up_or_overflows() {
        let policy = Poll::every(Duration::from_millis(10)).backoff(0.5);
        assert_eq!(
            policy.next_interval(Duration::from_millis(10)),
            Duration::from_millis(10)
        );
        let policy = Poll::every(Duration::from_millis(10)).backoff(f64::NAN);
        assert_eq!(
            policy.next_interval(Duration::from_millis(10)),
            Duration::from_millis(10)
        );
        let policy = Poll::every(Duration::from_millis(10)).backoff(1e300);
        assert_eq!(policy.next_interval(Duration::MAX), Duration::MAX);
    }

    #[test]
    fn poll_times_out_at_the_deadline_naming_the_wait() {
        let mut fake = Fake::default();
        let policy = Poll::every(Duration::from_millis(30)).deadline(Duration::from_millis(100));
        let start = Instant::now();
        let mut looks = 0;
        let err = poll(&mut fake, &policy, |_, attempt| {
            looks = attempt;
            Ok(pending("queued"))
        })
        .unwrap_err();
        let took = start.elapsed();
        assert_eq!(err.kind, ErrorKind::Timeout);
        assert!(
            err.message
                .starts_with("the job was still not finished after waiting 1"),
            "{}",
            err.message
        );
        assert!(err.message.contains(" ms (asked "), "{}", err.message);
        assert!(
            err.message.ends_with("its last status was: queued"),
            "{}",
            err.message
        );
        assert!(err.hint.is_some());
        // Looks at 0, 30, 60, 90 and a last one at the deadline; a slow machine may skip one.
        assert!((4..=5).contains(&looks), "{looks}");
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn poll_stops_at_once_when_cancelled_during_a_sleep() {
        let mut fake = Fake::default();
        let canceller = cancel_after(&fake.cancel, Duration::from_millis(50));
        let policy = Poll::every(Duration::from_secs(20));
        let start = Instant::now();
        let mut looks = 0;
        let err = poll(&mut fake, &policy, |_, attempt| {
            looks = attempt;
            Ok(pending("waiting"))
        })
        .unwrap_err();
        canceller.join().unwrap();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert_eq!(looks, 1);
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn poll_ends_with_the_checks_error_or_the_reporters() {
        let mut fake = Fake::default();
        let policy = Poll::every(Duration::from_millis(1));
        let err = poll(&mut fake, &policy, |_, attempt| {
            if attempt == 2 {
                Err(PluginError::invalid_input("the job failed: bad prompt"))
            } else {
                Ok(pending("working"))
            }
        })
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);

        let mut fake = Fake {
            stop_on_progress: true,
            ..Fake::default()
        };
        let mut looks = 0;
        let err = poll(&mut fake, &policy, |_, attempt| {
            looks = attempt;
            Ok(pending("working"))
        })
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert_eq!(looks, 1);
    }

    #[test]
    fn poll_lets_the_check_use_the_reporter() {
        let mut fake = Fake::default();
        let policy = Poll::every(Duration::from_millis(1));
        let value = poll(&mut fake, &policy, |reporter, attempt| {
            reporter.progress(None, "asking the service")?;
            Ok(if attempt == 2 {
                Status::Done(attempt)
            } else {
                pending("queued")
            })
        })
        .unwrap();
        assert_eq!(value, 2);
        assert_eq!(fake.progress.len(), 3);
    }
}
