//! Time and cancellation control: `sleep`, `clock`, timeout blocks and masking.
//!
//! # Invariants
//!
//! Each task keeps a stack of the deadlines of its open timeout blocks
//! (outermost first); the kernel arms only the earliest. The rules live in one
//! pure type, `deadlines::Deadlines`, which the kernel drives; this module
//! opens and closes blocks through `crate::trap` and reports their verdict
//! (`deadlines::classify`). When a block ends with a
//! timeout error carrying clock `c`, the block finds the **outermost** deadline
//! `<= c` on the stack (Curio 1.x, `curio-reference.md` §4.1):
//!
//! | outermost expired deadline | this block returns |
//! | --- | --- |
//! | an outer block's | [`ErrorKind::TimeoutCancelled`] (someone else's deadline) |
//! | its own | [`ErrorKind::Timeout`]; `ignore_*` returns `Ok(None)` |
//! | none (an inner timeout leaked out of its block) | [`ErrorKind::UncaughtTimeout`] |
//!
//! Any other result passes through. On the way out the previous deadline is
//! restored: if it has already passed it fires again at the next cancel point;
//! otherwise a timeout still pending from this block is dropped. A block that
//! never reaches a cancel point is never interrupted.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! curio::Kernel::builder().virtual_clock(true).build().run(|| {
//!     let slow = || curio::sleep(Duration::from_secs(10));
//!     let r = curio::timeout_after(Duration::from_secs(1), slow);
//!     assert!(r.unwrap_err().is_timeout());
//!     assert_eq!(curio::ignore_after(Duration::from_secs(1), slow).unwrap(), None);
//! }).unwrap();
//! ```

use std::time::{Duration, Instant};

use crate::deadlines::{Block, NO_DEADLINE, Verdict, classify};
use crate::error::{CurioError, Error, ErrorKind, Result};
use crate::trap;

/// The kernel's monotonic clock (virtual under a virtual clock). Never blocks.
///
/// # Panics
///
/// Outside a curio kernel.
pub fn clock() -> Instant {
    trap::instant(trap::now())
}

/// Suspends the calling task for `d`. `sleep(Duration::ZERO)` moves it to the
/// back of the ready queue (like [`crate::yield_now`]).
///
/// # Cancellation
///
/// A cancel point, also for a zero duration. If cancelled or timed out, the
/// sleep ends early and nothing else changes.
#[inline(always)] // so that `sleep(0)` switches from the caller's frame (arch-notes/trap-flow.md)
pub fn sleep(d: Duration) -> Result<()> {
    if d.is_zero() {
        return trap::yield_now();
    }
    sleep_for(d)
}

/// A sleep that goes through the timer heap. Not inlined: next to a timer, a
/// mispredicted return on wake-up does not matter.
fn sleep_for(d: Duration) -> Result<()> {
    trap::sleep_until(trap::now().saturating_add(ticks_of(d)))
}

/// Suspends the calling task until `deadline`. A deadline in the past yields.
///
/// # Cancellation
///
/// As [`sleep`].
pub fn sleep_until(deadline: Instant) -> Result<()> {
    let (t, now) = (trap::ticks(deadline), trap::now());
    if t <= now {
        return trap::yield_now();
    }
    trap::sleep_until(t)
}

fn ticks_of(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128 - 1) as u64
}

/// Runs `f` with a deadline `d` from now. If it expires, the blocking call `f` is
/// in at that moment (or its next cancel point) returns a timeout error, and so
/// does this call: [`ErrorKind::Timeout`] when this block's own deadline expired,
/// [`ErrorKind::TimeoutCancelled`] when an enclosing block's did (see the module
/// docs for the nesting rules). Works with closures returning [`crate::Result`]
/// or [`std::io::Result`].
///
/// `d = None` adds no deadline of its own, but still reports an enclosing
/// deadline as [`ErrorKind::TimeoutCancelled`]. A zero duration fires at the
/// first cancel point.
///
/// # Cancellation
///
/// `f` runs with the deadline armed; cancellation passes through unchanged.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// curio::run(|| {
///     let r = curio::timeout_after(Duration::from_millis(5), || curio::sleep(Duration::from_secs(60)));
///     assert!(r.unwrap_err().is_timeout());
/// });
/// ```
pub fn timeout_after<T, E: CurioError>(
    d: impl Into<Option<Duration>>,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = relative(d.into());
    timeout_block(deadline, false, f).map(|v| v.expect("timeout_after never ignores"))
}

/// [`timeout_after`] with an absolute deadline.
pub fn timeout_at<T, E: CurioError>(
    deadline: impl Into<Option<Instant>>,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = absolute(deadline.into());
    timeout_block(deadline, false, f).map(|v| v.expect("timeout_at never ignores"))
}

/// Like [`timeout_after`], but the block's own expiry is not an error: it
/// returns `Ok(None)`. Other errors, including an enclosing block's timeout,
/// pass through.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// curio::run(|| {
///     let r = curio::ignore_after(Duration::from_millis(5), || curio::sleep(Duration::from_secs(60)));
///     assert_eq!(r.unwrap(), None);
/// });
/// ```
pub fn ignore_after<T, E: CurioError>(
    d: impl Into<Option<Duration>>,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<Option<T>, E> {
    timeout_block(relative(d.into()), true, f)
}

/// [`ignore_after`] with an absolute deadline.
pub fn ignore_at<T, E: CurioError>(
    deadline: impl Into<Option<Instant>>,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<Option<T>, E> {
    timeout_block(absolute(deadline.into()), true, f)
}

fn relative(d: Option<Duration>) -> Option<u64> {
    d.map(|d| trap::now().saturating_add(ticks_of(d)).min(NO_DEADLINE - 1))
}

fn absolute(i: Option<Instant>) -> Option<u64> {
    i.map(trap::ticks)
}

/// Closes a timeout block when it ends, even by panic.
struct BlockGuard {
    block: Option<Block>,
}

impl BlockGuard {
    fn exit(&mut self) -> Vec<u64> {
        match self.block.take() {
            Some(b) => trap::exit_timeout_block(b),
            None => Vec::new(),
        }
    }
}

impl Drop for BlockGuard {
    fn drop(&mut self) {
        self.exit();
    }
}

fn timeout_block<T, E: CurioError>(
    deadline: Option<u64>,
    ignore: bool,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<Option<T>, E> {
    let mut guard = BlockGuard {
        block: Some(trap::enter_timeout_block(deadline)),
    };
    let result = f();
    let stack = guard.exit();
    let err = match result {
        Ok(v) => return Ok(Some(v)),
        Err(e) => e,
    };
    let Some((kind, clock)) = err.as_curio().and_then(|c| match c.kind() {
        ErrorKind::Timeout | ErrorKind::TimeoutCancelled => c.clock().map(|t| (c.kind(), t)),
        _ => None,
    }) else {
        return Err(err);
    };
    match classify(&stack, trap::ticks(clock)) {
        Verdict::Uncaught => Err(err.with_curio(Error::new(ErrorKind::UncaughtTimeout, ""))),
        Verdict::Outer => match kind {
            ErrorKind::TimeoutCancelled => Err(err),
            _ => Err(err.with_curio(Error::timeout_kind(ErrorKind::TimeoutCancelled, clock))),
        },
        Verdict::Own if ignore => Ok(None),
        Verdict::Own => match kind {
            ErrorKind::Timeout => Err(err),
            _ => Err(err.with_curio(Error::timeout_kind(ErrorKind::Timeout, clock))),
        },
    }
}

/// Runs `f` with cancellation masked: cancellations and timeouts that arrive
/// meanwhile stay pending and are delivered at the first cancel point after the
/// outermost masked block. Blocking calls inside work normally. Nests.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// curio::run(|| {
///     let kid = curio::spawn(|| {
///         curio::disable_cancellation(|| curio::sleep(Duration::from_millis(5))).unwrap();
///         curio::sleep(Duration::from_secs(60)) // the pending cancel lands here
///     });
///     curio::sleep(Duration::from_millis(1)).unwrap();
///     kid.cancel().unwrap();
///     assert!(kid.join().unwrap().unwrap_err().is_cancelled());
/// });
/// ```
pub fn disable_cancellation<R>(f: impl FnOnce() -> R) -> R {
    struct Unmask;
    impl Drop for Unmask {
        fn drop(&mut self) {
            trap::unmask();
        }
    }
    trap::mask();
    let _unmask = Unmask;
    f()
}

/// Reports a pending cancellation or timeout without blocking.
///
/// Outside a masked block this is a cancel point that does not suspend: the
/// pending error is returned and cleared. Inside [`disable_cancellation`] the
/// error is returned but stays pending, to be delivered after the mask, so
/// masked code can choose to stop early.
pub fn check_cancellation() -> Result<()> {
    trap::check_cancellation()
}

/// Reports a pending cancellation of one kind only, taking it (Curio's
/// `check_cancellation(exc_type)`): if the calling task's pending error is of
/// `kind`, it is cleared and returned as `Err`, masked or not; a pending error
/// of another kind is left alone, and this returns `Ok`.
///
/// Masked code uses it to consume, say, its own pending timeout without
/// letting a cancellation through:
///
/// ```
/// use std::time::Duration;
/// use curio::ErrorKind;
/// curio::Kernel::builder().virtual_clock(true).build().run(|| {
///     curio::disable_cancellation(|| {
///         let r = curio::timeout_after(Duration::from_secs(1), || {
///             curio::sleep(Duration::from_secs(2))?; // masked: the timeout stays pending
///             curio::check_cancellation_of(ErrorKind::Timeout) // taken here
///         });
///         assert!(r.unwrap_err().is_timeout());
///     });
/// }).unwrap();
/// ```
pub fn check_cancellation_of(kind: ErrorKind) -> Result<()> {
    match trap::take_cancellation(kind) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Replaces the calling task's pending cancellation with `err` (`None`
/// clears it) and returns the one it replaces (Curio's `set_cancellation`).
/// The new one is delivered at the next cancel point outside masking.
///
/// ```
/// curio::run(|| {
///     assert!(curio::set_cancellation(Some(std::io::Error::other("stop now").into())).is_none());
///     let e = curio::yield_now().unwrap_err(); // delivered at the next cancel point
///     assert_eq!(e.to_string(), "stop now");
/// });
/// ```
pub fn set_cancellation(err: Option<Error>) -> Option<Error> {
    trap::set_cancellation(err)
}
