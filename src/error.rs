//! One error type for the whole crate, with a kind, predicates and an `io::Error` round trip.
//!
//! # Invariants
//!
//! - Cancellation is an error value, never a panic: blocking calls return
//!   `Err(e)` with `e.is_cancellation()` true.
//! - An [`Error`] converted into [`std::io::Error`] and back keeps its kind, so a
//!   cancellation that travels through code returning `io::Result` (a `Read` impl,
//!   `read_exact`, a parser) is still recognised. Cancellation never maps to
//!   [`io::ErrorKind::Interrupted`], because std's `read_exact`, `write_all` and
//!   `io::copy` silently retry on it.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! let r = curio::run(|| curio::timeout_after(Duration::ZERO, || curio::sleep(Duration::from_secs(5))));
//! let e = r.unwrap_err();
//! assert!(e.is_timeout());
//! let io: std::io::Error = e.into();
//! assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
//! assert!(curio::Error::from(io).is_timeout());
//! ```

use std::fmt;
use std::io;
use std::time::Instant;

/// The result type of every fallible call in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. New kinds may be added, so match with a wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The task was cancelled (`Task::cancel`, shutdown, a cancelled group).
    Cancelled,
    /// The deadline of the innermost `timeout_after` block that expired (Curio's `TaskTimeout`).
    Timeout,
    /// An outer block's deadline expired while this code ran inside an inner
    /// timeout block (Curio's `TimeoutCancellationError`).
    TimeoutCancelled,
    /// A timeout escaped its own block into an outer block whose deadline has not
    /// expired (Curio's `UncaughtTimeoutError`): some code swallowed the timeout badly.
    UncaughtTimeout,
    /// The joined task panicked; the message is the panic's.
    TaskPanicked,
    /// The task's result was already taken by an earlier `join`.
    ResultTaken,
    /// A second task tried to wait for the same direction on one file descriptor.
    ResourceBusy,
    /// Every task is blocked and nothing can wake any of them.
    Deadlock,
    /// `run` was called on a thread that is already running a kernel.
    NestedKernel,
    /// A call that needs a kernel was made outside one, or an operation was used wrongly.
    Usage,
    /// An I/O error from the operating system.
    Io,
    /// A child process ended unsuccessfully (a non-zero exit status, or killed
    /// by a signal); [`Error::output`] holds its status and captured output
    /// (Curio's `CalledProcessError`).
    ProcessFailed,
    /// The peer of a message channel does not hold the same key (or did not
    /// answer the challenge properly).
    AuthenticationFailed,
    /// A worker process died (killed by a signal, or exited) before it
    /// answered; the message names the signal or the exit status.
    WorkerDied,
    /// An error made by application code with [`Error::other`].
    Other,
}

/// The error type of this crate: a kind plus detail. Cheap to move (one pointer).
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    /// Kernel clock at which a deadline was processed (timeout kinds only).
    clock: Option<Instant>,
    io: Option<io::Error>,
    /// How far an operation got before it failed (bytes sent, read …).
    progress: Option<usize>,
    /// A child process's status and the output captured from it (a failed
    /// command, or one whose `run` was cancelled).
    output: Option<Box<std::process::Output>>,
}

impl Error {
    /// An error of `kind` with a message, for application code that wants to
    /// fail with one of curio's kinds (a task that gives up as if cancelled,
    /// say). [`ErrorKind::Io`] makes an [`io::Error`] of kind `Other` inside.
    ///
    /// ```
    /// use curio::{Error, ErrorKind};
    /// let e = Error::new(ErrorKind::Usage, "the port must not be 0");
    /// assert_eq!(e.to_string(), "invalid use: the port must not be 0");
    /// ```
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        if kind == ErrorKind::Io {
            return Error::from(io::Error::other(message.into()));
        }
        Error::bare(kind, message)
    }

    /// An application error ([`ErrorKind::Other`]) whose text is `message`.
    ///
    /// ```
    /// let e = curio::Error::other("no such user: ada");
    /// assert_eq!(e.kind(), curio::ErrorKind::Other);
    /// assert_eq!(e.to_string(), "no such user: ada");
    /// ```
    pub fn other(message: impl Into<String>) -> Error {
        Error::bare(ErrorKind::Other, message)
    }

    fn bare(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                clock: None,
                io: None,
                progress: None,
                output: None,
            }),
        }
    }

    pub(crate) fn cancelled() -> Error {
        Error::new(ErrorKind::Cancelled, "")
    }

    pub(crate) fn timeout_kind(kind: ErrorKind, clock: Instant) -> Error {
        let mut e = Error::new(kind, "");
        e.inner.clock = Some(clock);
        e
    }

    pub(crate) fn usage(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Usage, message)
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// True for the three errors that interrupt a blocking call from outside:
    /// [`ErrorKind::Cancelled`], [`ErrorKind::Timeout`] and [`ErrorKind::TimeoutCancelled`].
    /// Ordinary error handling should let these pass.
    pub fn is_cancellation(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Cancelled | ErrorKind::Timeout | ErrorKind::TimeoutCancelled
        )
    }

    /// True if the task was cancelled (not by a timeout).
    pub fn is_cancelled(&self) -> bool {
        self.kind() == ErrorKind::Cancelled
    }

    /// True if this block's own deadline expired ([`ErrorKind::Timeout`]).
    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::Timeout
    }

    /// True if an outer deadline expired while inside an inner timeout block.
    pub fn is_timeout_cancelled(&self) -> bool {
        self.kind() == ErrorKind::TimeoutCancelled
    }

    /// True if the joined task panicked.
    pub fn is_panic(&self) -> bool {
        self.kind() == ErrorKind::TaskPanicked
    }

    /// The kernel clock at which the deadline behind a timeout error was processed.
    pub fn clock(&self) -> Option<Instant> {
        self.inner.clock
    }

    /// For an operation that failed after partial progress (`sendall`,
    /// `read_exactly`, `read_all` …), how many bytes it had done: sent, or read
    /// and kept in the stream's buffer for the next read.
    pub fn bytes_done(&self) -> Option<usize> {
        self.inner.progress
    }

    pub(crate) fn with_progress(mut self, n: usize) -> Error {
        self.inner.progress = Some(n);
        self
    }

    /// For a command that failed ([`ErrorKind::ProcessFailed`]), or whose
    /// `run`, `output`, `check_output` or `communicate` was cancelled or timed
    /// out (the child was then killed and reaped): its exit status and what it
    /// wrote to its piped stdout and stderr, up to that moment.
    pub fn output(&self) -> Option<&std::process::Output> {
        self.inner.output.as_deref()
    }

    pub(crate) fn with_output(mut self, output: std::process::Output) -> Error {
        self.inner.output = Some(Box::new(output));
        self
    }

    /// The wrapped OS error, for [`ErrorKind::Io`].
    pub fn io_error(&self) -> Option<&io::Error> {
        self.inner.io.as_ref()
    }

    /// A copy of a cancellation-type error (they carry no I/O error, so copying is exact).
    pub(crate) fn clone_cancellation(&self) -> Error {
        debug_assert!(self.inner.io.is_none());
        Error {
            inner: Box::new(Inner {
                kind: self.inner.kind,
                message: self.inner.message.clone(),
                clock: self.inner.clock,
                io: None,
                progress: self.inner.progress,
                output: self.inner.output.clone(),
            }),
        }
    }

    fn describe(&self) -> &'static str {
        match self.kind() {
            ErrorKind::Cancelled => "task cancelled",
            ErrorKind::Timeout => "timed out",
            ErrorKind::TimeoutCancelled => "cancelled by an enclosing timeout",
            ErrorKind::UncaughtTimeout => {
                "uncaught timeout: a timeout escaped the block it belongs to; \
                 handle an inner timeout inside its own timeout_after block"
            }
            ErrorKind::TaskPanicked => "task panicked",
            ErrorKind::ResultTaken => "the task's result was already taken by an earlier join",
            ErrorKind::ResourceBusy => "resource busy",
            ErrorKind::Deadlock => "deadlock: every task is blocked and nothing can wake one",
            ErrorKind::NestedKernel => {
                "a curio kernel is already running on this thread; \
                 spawn a task instead of calling run again"
            }
            ErrorKind::Usage => "invalid use",
            ErrorKind::Io => "i/o error",
            ErrorKind::ProcessFailed => "command failed",
            ErrorKind::AuthenticationFailed => "authentication failed",
            ErrorKind::WorkerDied => "worker process died",
            ErrorKind::Other => "",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(io) = &self.inner.io {
            return io.fmt(f);
        }
        let describe = self.describe();
        f.write_str(describe)?;
        let message = &self.inner.message;
        if describe.is_empty() {
            f.write_str(message)?;
        } else if message.starts_with('\n') {
            write!(f, ":{message}")?; // a list, one item per line
        } else if !message.is_empty() {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

/// How many lines of a failed command's stderr `Debug` shows (the last ones).
const STDERR_LINES: usize = 20;

/// Reads like a message, for `fn main() -> Result<(), curio::Error>` (which
/// prints `Error: {:?}`): the [`Display`](fmt::Display) text, then, when there
/// is more to say, a `Details:` section (the kind to match on, bytes done, a
/// child's status and the end of its stderr) and a `Caused by:` section (the
/// wrapped error's sources), as `anyhow` does. `{:#?}` prints every field as a
/// struct instead.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return self.debug_struct(f);
        }
        write!(f, "{self}")?;

        let mut details = Vec::new();
        if let Some(io) = &self.inner.io {
            details.push(format!("kind: Io ({:?})", io.kind()));
        }
        if let Some(n) = self.inner.progress {
            details.push(format!("bytes done: {n}"));
        }
        if let Some(out) = self.output() {
            details.push(format!("status: {}", out.status));
            details.push(format!("stdout: {} bytes", out.stdout.len()));
            let stderr = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = stderr.lines().collect();
            if !lines.is_empty() {
                let skipped = lines.len().saturating_sub(STDERR_LINES);
                let mut text = String::from("stderr:");
                if skipped > 0 {
                    text.push_str(&format!(" (the last {STDERR_LINES} lines)"));
                }
                for line in &lines[skipped..] {
                    text.push_str("\n        ");
                    text.push_str(line);
                }
                details.push(text);
            }
        }
        if !details.is_empty() && self.inner.io.is_none() {
            details.insert(0, format!("kind: {:?}", self.kind()));
        }
        if !details.is_empty() {
            f.write_str("\n\nDetails:")?;
            for d in &details {
                write!(f, "\n    {d}")?;
            }
        }

        // The io::Error is shown by Display; its sources follow.
        let mut causes = Vec::new();
        let mut next = self.inner.io.as_ref().and_then(std::error::Error::source);
        while let Some(cause) = next {
            causes.push(cause.to_string());
            next = cause.source();
        }
        match causes.as_slice() {
            [] => {}
            [only] => write!(f, "\n\nCaused by:\n    {only}")?,
            many => {
                f.write_str("\n\nCaused by:")?;
                for (i, cause) in many.iter().enumerate() {
                    write!(f, "\n    {i}: {cause}")?;
                }
            }
        }
        Ok(())
    }
}

impl Error {
    /// Every field, for `{:#?}`.
    fn debug_struct(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind());
        if !self.inner.message.is_empty() {
            d.field("message", &self.inner.message);
        }
        if let Some(io) = &self.inner.io {
            d.field("io", io);
        }
        if let Some(n) = self.inner.progress {
            d.field("bytes_done", &n);
        }
        if let Some(out) = self.output() {
            d.field("output", out);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.io.as_ref().map(|e| e as _)
    }
}

impl From<io::Error> for Error {
    /// Unwraps a `curio::Error` that travelled inside an `io::Error`; wraps anything else
    /// as [`ErrorKind::Io`].
    fn from(e: io::Error) -> Error {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            let inner = e.into_inner().expect("checked above");
            return *inner.downcast::<Error>().expect("checked above");
        }
        let mut err = Error::bare(ErrorKind::Io, "");
        err.inner.io = Some(e);
        err
    }
}

impl From<Error> for io::Error {
    /// Timeouts become [`io::ErrorKind::TimedOut`], a busy resource
    /// [`io::ErrorKind::ResourceBusy`], everything else [`io::ErrorKind::Other`]
    /// (never `Interrupted`). [`Error::from`] recovers the original.
    fn from(e: Error) -> io::Error {
        let kind = match e.kind() {
            ErrorKind::Io => return e.inner.io.expect("Io kind always carries an io::Error"),
            ErrorKind::Timeout | ErrorKind::TimeoutCancelled | ErrorKind::UncaughtTimeout => {
                io::ErrorKind::TimedOut
            }
            ErrorKind::ResourceBusy => io::ErrorKind::ResourceBusy,
            ErrorKind::AuthenticationFailed => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Error types that can carry curio's cancellations and timeouts: [`Error`] and
/// [`std::io::Error`]. `timeout_after` and friends work with closures returning either.
pub trait CurioError: Sized {
    /// Wraps a curio error.
    fn from_curio(e: Error) -> Self;
    /// Looks at the curio error inside, if there is one.
    fn as_curio(&self) -> Option<&Error>;
    /// Replaces the curio error inside, keeping anything else the error carries
    /// (a queue's `PutError` keeps its item). Timeout blocks use this to relabel.
    fn with_curio(self, e: Error) -> Self {
        Self::from_curio(e)
    }
}

impl CurioError for Error {
    fn from_curio(e: Error) -> Self {
        e
    }
    /// Keeps a child process's captured output across the relabelling.
    fn with_curio(self, mut e: Error) -> Self {
        if e.inner.output.is_none() {
            e.inner.output = self.inner.output;
        }
        e
    }
    fn as_curio(&self) -> Option<&Error> {
        Some(self)
    }
}

impl CurioError for io::Error {
    fn from_curio(e: Error) -> Self {
        e.into()
    }
    fn as_curio(&self) -> Option<&Error> {
        self.get_ref()
            .and_then(|inner| inner.downcast_ref::<Error>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancellation_survives_io_round_trip_and_is_not_interrupted() {
        let io: io::Error = Error::cancelled().into();
        assert_ne!(io.kind(), io::ErrorKind::Interrupted);
        assert!(io.as_curio().unwrap().is_cancelled());
        assert!(Error::from(io).is_cancelled());
    }

    #[test]
    fn plain_io_errors_round_trip_unchanged() {
        let e = Error::from(io::Error::new(io::ErrorKind::ConnectionReset, "peer reset"));
        assert_eq!(e.kind(), ErrorKind::Io);
        let back: io::Error = e.into();
        assert_eq!(back.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(back.to_string(), "peer reset");
    }

    #[test]
    fn messages_are_lowercase_and_suggest_a_fix() {
        let e = Error::new(ErrorKind::NestedKernel, "");
        assert!(
            e.to_string()
                .starts_with("a curio kernel is already running")
        );
    }
}
