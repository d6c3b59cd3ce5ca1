//! Child processes whose pipes are the crate's streams: [`Command`] starts
//! them, [`Child`] waits for them, talks to them and kills them.
//!
//! `Command` is shaped like [`std::process::Command`] (it wraps one); a
//! child's piped stdin, stdout and stderr are [`FileStream`]s, with
//! `readline`, `lines`, `read_all` and the rest. [`Child::wait`] needs no
//! helper thread: the task waits for the child's pidfd to become readable,
//! through the kernel's poller (kernels without pidfds, before Linux 5.3, fall
//! back to waiting for `SIGCHLD` through [`crate::signal`]).
//!
//! # Invariants
//!
//! - No zombie and no fd outlives a [`Child`]. Waiting reaps the child; a
//!   `Child` dropped before its child was reaped kills it (`SIGKILL`) and
//!   reaps it on the spot (see [`Child`]). Its pipes and pidfd close with it.
//! - Cancelling or timing out [`Child::wait`], [`Child::communicate`],
//!   [`Command::run`], [`Command::output`], [`Command::check_output`] or
//!   [`Command::status`] kills the child and reaps it before the error
//!   returns. Output read so far is kept: in the error's
//!   [`Error::output`](crate::Error::output) (with the killed child's status)
//!   for the calls that collect output, and in the child's streams' buffers
//!   for `wait`.
//! - A command that fails is an error of kind
//!   [`ErrorKind::ProcessFailed`] carrying its status and captured output
//!   ([`Command::run`], [`Command::check_output`]); a command that cannot be
//!   started is an I/O error whose message names it.
//!
//! # Example
//!
//! ```
//! use curio::subprocess::{Command, Stdio};
//! curio::run(|| -> curio::Result<()> {
//!     // Follow a command's output line by line as it runs.
//!     let mut child = Command::new("sh")
//!         .args(["-c", "echo one; echo two"])
//!         .stdout(Stdio::piped())
//!         .spawn()?;
//!     let mut lines = Vec::new();
//!     for line in child.stdout.as_mut().unwrap().lines() {
//!         lines.push(String::from_utf8_lossy(&line?).into_owned());
//!     }
//!     assert!(child.wait()?.success());
//!     assert_eq!(lines, ["one\n", "two\n"]);
//!
//!     // Or all at once; a failing command is an error that keeps its output.
//!     assert_eq!(Command::new("echo").arg("hi").check_output()?, b"hi\n");
//!     let e = Command::new("sh").args(["-c", "echo oops >&2; exit 3"]).run().unwrap_err();
//!     assert_eq!(e.kind(), curio::ErrorKind::ProcessFailed);
//!     assert_eq!(e.output().unwrap().status.code(), Some(3));
//!     assert_eq!(e.output().unwrap().stderr, b"oops\n");
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

pub use std::process::{ExitStatus, Output};

use crate::error::{Error, ErrorKind, Result};
use crate::io::{FileStream, Registration};
use crate::poller::Direction;
use crate::signal::{self, SignalEvent};
use crate::sys;
use crate::task::{self, Task};
use crate::time::disable_cancellation;

// ---------------------------------------------------------------------------
// Stdio
// ---------------------------------------------------------------------------

/// How one of a child's standard streams is set up: [`Stdio::piped`] (a
/// [`FileStream`] on the [`Child`]), [`Stdio::null`], [`Stdio::inherit`], or
/// an fd of your own (`Stdio::from(file)`, `Stdio::from(stream)` to connect
/// another child's output, for a pipeline).
pub struct Stdio(Kind);

enum Kind {
    Inherit,
    Piped,
    Null,
    Fd(OwnedFd),
}

impl Stdio {
    /// A pipe: the child's end is its stream, ours is a [`FileStream`] on the
    /// [`Child`].
    pub fn piped() -> Stdio {
        Stdio(Kind::Piped)
    }

    /// `/dev/null`.
    pub fn null() -> Stdio {
        Stdio(Kind::Null)
    }

    /// This process's own stream.
    pub fn inherit() -> Stdio {
        Stdio(Kind::Inherit)
    }

    /// The `std` form, for one spawn (an fd is duplicated, so a `Command` can
    /// be spawned again).
    fn to_std(&self) -> io::Result<std::process::Stdio> {
        Ok(match &self.0 {
            Kind::Inherit => std::process::Stdio::inherit(),
            Kind::Piped => std::process::Stdio::piped(),
            Kind::Null => std::process::Stdio::null(),
            Kind::Fd(fd) => std::process::Stdio::from(fd.try_clone()?),
        })
    }
}

impl From<OwnedFd> for Stdio {
    /// The child gets this fd (a file, a socket, a pipe end).
    fn from(fd: OwnedFd) -> Stdio {
        Stdio(Kind::Fd(fd))
    }
}

impl From<std::fs::File> for Stdio {
    fn from(f: std::fs::File) -> Stdio {
        Stdio(Kind::Fd(f.into()))
    }
}

impl From<FileStream> for Stdio {
    /// The fd under a stream (another child's stdout, for a pipeline), put back
    /// in blocking mode for the child. Bytes the stream had already buffered
    /// are not passed on.
    fn from(stream: FileStream) -> Stdio {
        let fd = stream.into_parts().io.into_owned_fd();
        let _ = sys::set_nonblocking(std::os::fd::AsFd::as_fd(&fd), false);
        Stdio(Kind::Fd(fd))
    }
}

impl fmt::Debug for Stdio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Inherit => f.write_str("Stdio::inherit()"),
            Kind::Piped => f.write_str("Stdio::piped()"),
            Kind::Null => f.write_str("Stdio::null()"),
            Kind::Fd(fd) => write!(f, "Stdio::from(fd {})", fd.as_raw_fd()),
        }
    }
}

// ---------------------------------------------------------------------------
// Command
// ---------------------------------------------------------------------------

/// A process to start: program, arguments, environment, working directory and
/// standard streams, as [`std::process::Command`] has them.
///
/// [`Command::spawn`] starts it and hands back a [`Child`]; [`Command::output`],
/// [`Command::run`], [`Command::check_output`] and [`Command::status`] run it
/// to the end. Streams not set explicitly default as in `std`: inherited for
/// `spawn` and `status`; for `output` and `run`, stdout and stderr are captured
/// and stdin is `/dev/null` (a pipe fed from [`Command::input`] if set);
/// `check_output` captures only stdout, as Python's does.
///
/// A `Command` can be spawned many times.
pub struct Command {
    inner: std::process::Command,
    stdin: Option<Stdio>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
    input: Option<Vec<u8>>,
}

/// What each run-to-the-end method does with streams the user did not set.
#[derive(Clone, Copy)]
struct Defaults {
    stdin: fn() -> Stdio,
    stdout: fn() -> Stdio,
    stderr: fn() -> Stdio,
}

const SPAWN_DEFAULTS: Defaults = Defaults {
    stdin: Stdio::inherit,
    stdout: Stdio::inherit,
    stderr: Stdio::inherit,
};

impl Command {
    /// A command running `program` (looked up in `PATH` unless it has a `/`).
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            inner: std::process::Command::new(program),
            stdin: None,
            stdout: None,
            stderr: None,
            input: None,
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.inner.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.inner.env(key, value);
        self
    }

    /// Sets environment variables for the child.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.inner.envs(vars);
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.inner.env_remove(key);
        self
    }

    /// Starts the child with an empty environment (plus what `env` adds).
    pub fn env_clear(&mut self) -> &mut Command {
        self.inner.env_clear();
        self
    }

    /// The child's working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.inner.current_dir(dir);
        self
    }

    /// How the child's stdin is set up.
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.stdin = Some(cfg.into());
        self
    }

    /// How the child's stdout is set up.
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.stdout = Some(cfg.into());
        self
    }

    /// How the child's stderr is set up.
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.stderr = Some(cfg.into());
        self
    }

    /// Bytes that [`Command::output`], [`Command::run`] and
    /// [`Command::check_output`] write to the child's stdin (which becomes a
    /// pipe, closed after them), while reading its output (Python's `input=`).
    pub fn input(&mut self, data: impl Into<Vec<u8>>) -> &mut Command {
        self.input = Some(data.into());
        self
    }

    /// The `std` command underneath, for what this builder does not offer
    /// (`std::os::unix::process::CommandExt`: `process_group`, `uid`, `arg0`
    /// …). Streams set on it are overridden by this builder's at spawn.
    pub fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.inner
    }

    /// The program and its arguments, for messages.
    fn describe(&self) -> String {
        let mut s = self.inner.get_program().to_string_lossy().into_owned();
        for a in self.inner.get_args() {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Starts the child. Streams not set are inherited. (Waiting for it, and
    /// reading and writing its streams, must then happen in a curio task.)
    ///
    /// # Errors
    ///
    /// An I/O error whose message names the program if it cannot be started
    /// (kind `NotFound` for a program that does not exist).
    pub fn spawn(&mut self) -> Result<Child> {
        self.spawn_with(SPAWN_DEFAULTS)
    }

    fn spawn_with(&mut self, defaults: Defaults) -> Result<Child> {
        let pick = |set: &Option<Stdio>, default: fn() -> Stdio| match set {
            Some(s) => s.to_std(),
            None => default().to_std(),
        };
        self.inner.stdin(pick(&self.stdin, defaults.stdin)?);
        self.inner.stdout(pick(&self.stdout, defaults.stdout)?);
        self.inner.stderr(pick(&self.stderr, defaults.stderr)?);
        let std_child = self.inner.spawn().map_err(|e| self.spawn_error(e))?;
        Child::new(std_child, self.describe())
    }

    fn spawn_error(&self, e: io::Error) -> Error {
        let program = self.inner.get_program().to_string_lossy();
        let msg = match e.kind() {
            io::ErrorKind::NotFound => match self.inner.get_current_dir() {
                Some(dir) if !dir.is_dir() => format!(
                    "cannot run `{program}`: its working directory {} does not exist",
                    dir.display()
                ),
                _ => format!(
                    "cannot run `{program}`: command not found; check the program's name and PATH"
                ),
            },
            io::ErrorKind::PermissionDenied => {
                format!("cannot run `{program}`: permission denied; is it an executable file?")
            }
            _ => format!("cannot run `{program}`: {e}"),
        };
        Error::from(io::Error::new(e.kind(), msg))
    }

    /// Runs the command to the end and collects its output, whatever its exit
    /// status (as `std`'s `output`). Stdout and stderr are captured unless set
    /// otherwise; stdin is `/dev/null`, or a pipe fed from [`Command::input`].
    ///
    /// # Errors
    ///
    /// As [`Command::spawn`].
    ///
    /// # Cancellation
    ///
    /// A cancel point. Cancelled or timed out, the child is killed and reaped,
    /// and the error's [`Error::output`](crate::Error::output) holds what it
    /// wrote so far and its status (killed by `SIGKILL`).
    pub fn output(&mut self) -> Result<Output> {
        self.collect(Stdio::piped)
    }

    /// [`Command::output`], but a non-zero exit status (or death by a signal)
    /// is an error of kind [`ErrorKind::ProcessFailed`] whose
    /// [`Error::output`](crate::Error::output) holds the status and the
    /// captured output.
    ///
    /// # Cancellation
    ///
    /// As [`Command::output`].
    pub fn run(&mut self) -> Result<Output> {
        let out = self.output()?;
        self.check(out)
    }

    /// Runs the command to the end and returns its stdout, which is captured;
    /// stderr is inherited unless set otherwise (Python's `check_output`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ProcessFailed`] for a non-zero exit status, with the status
    /// and output in [`Error::output`](crate::Error::output); as
    /// [`Command::spawn`] otherwise.
    ///
    /// # Cancellation
    ///
    /// As [`Command::output`].
    pub fn check_output(&mut self) -> Result<Vec<u8>> {
        let out = self.collect(Stdio::inherit)?;
        Ok(self.check(out)?.stdout)
    }

    /// Runs the command to the end with its streams inherited (unless set) and
    /// returns its exit status, whatever it is.
    ///
    /// # Cancellation
    ///
    /// A cancel point. Cancelled or timed out, the child is killed and reaped.
    pub fn status(&mut self) -> Result<ExitStatus> {
        self.spawn_with(SPAWN_DEFAULTS)?.wait()
    }

    fn collect(&mut self, stderr: fn() -> Stdio) -> Result<Output> {
        let stdin = if self.input.is_some() {
            Stdio::piped
        } else {
            Stdio::null
        };
        let mut child = self.spawn_with(Defaults {
            stdin,
            stdout: Stdio::piped,
            stderr,
        })?;
        let input = self.input.as_deref().unwrap_or_default();
        let (stdout, stderr) = child.communicate(input)?;
        match child.wait() {
            Ok(status) => Ok(Output {
                status,
                stdout,
                stderr,
            }),
            Err(e) => {
                let status = child.status.unwrap_or_else(killed_status);
                Err(e.with_output(Output {
                    status,
                    stdout,
                    stderr,
                }))
            }
        }
    }

    fn check(&self, out: Output) -> Result<Output> {
        if out.status.success() {
            return Ok(out);
        }
        let how = match (
            out.status.code(),
            std::os::unix::process::ExitStatusExt::signal(&out.status),
        ) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!(
                "was killed by {}",
                signal::name(sig).unwrap_or_else(|| format!("signal {sig}"))
            ),
            _ => format!("ended with {}", out.status),
        };
        Err(Error::new(
            ErrorKind::ProcessFailed,
            format!(
                "`{}` {how}; its status and output are in Error::output()",
                self.describe()
            ),
        )
        .with_output(out))
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("command", &self.describe())
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .finish()
    }
}

/// The status of a child we killed but could not reap (only if `waitpid`
/// itself failed): as if killed by `SIGKILL`.
fn killed_status() -> ExitStatus {
    std::os::unix::process::ExitStatusExt::from_raw(libc::SIGKILL)
}

// ---------------------------------------------------------------------------
// Child
// ---------------------------------------------------------------------------

/// How a child's exit is noticed.
enum ExitWatch {
    /// Its pidfd turns readable when it exits (registered with the poller on
    /// the first wait). The registration is dropped before the fd closes.
    Pidfd { reg: Registration, _fd: OwnedFd },
    /// No pidfds here: every `SIGCHLD` makes waiters look again.
    Sigchld,
}

/// Whether `pidfd_open` works here (false after it failed with `ENOSYS` or
/// `EPERM`, or when `CURIO_NO_PIDFD=1` asks for the `SIGCHLD` path).
fn pidfds_usable() -> bool {
    static FORCED_OFF: OnceLock<bool> = OnceLock::new();
    !UNSUPPORTED.load(Ordering::Relaxed)
        && !*FORCED_OFF.get_or_init(|| std::env::var_os("CURIO_NO_PIDFD").is_some_and(|v| v != "0"))
}

static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// A running (or finished, not yet reaped) child process.
///
/// Its piped streams are public fields, as in `std`: take them, or use them
/// in place. Reading and writing them, [`Child::wait`] and
/// [`Child::communicate`] suspend only the calling task.
///
/// # Dropping
///
/// A `Child` dropped before its child was reaped (no `wait` returned) kills
/// the child with `SIGKILL` and reaps it at once: no process outlives its
/// handle unwatched, and no zombie is left. Reaping a killed process takes the
/// operating system a few microseconds, during which the dropping thread
/// blocks (longer only for a child stuck in an uninterruptible sleep). To let
/// a child run on, keep its `Child` (in a task that waits for it).
pub struct Child {
    /// The child's stdin, if it was [`Stdio::piped`].
    pub stdin: Option<FileStream>,
    /// The child's stdout, if it was [`Stdio::piped`].
    pub stdout: Option<FileStream>,
    /// The child's stderr, if it was [`Stdio::piped`].
    pub stderr: Option<FileStream>,
    exit: ExitWatch,
    child: std::process::Child,
    status: Option<ExitStatus>,
    command: String,
}

type Reader = Task<(FileStream, Result<Vec<u8>>)>;

impl Child {
    fn new(mut child: std::process::Child, command: String) -> Result<Child> {
        let exit = if pidfds_usable() {
            match sys::pidfd_open(child.id()) {
                Ok(fd) => ExitWatch::Pidfd {
                    reg: Registration::new(fd.as_raw_fd()),
                    _fd: fd,
                },
                Err(e) => {
                    if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
                        UNSUPPORTED.store(true, Ordering::Relaxed);
                    }
                    ExitWatch::Sigchld
                }
            }
        } else {
            ExitWatch::Sigchld
        };
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        // From here on, an error drops `me`, which kills and reaps the child.
        let mut me = Child {
            stdin: None,
            stdout: None,
            stderr: None,
            exit,
            child,
            status: None,
            command,
        };
        me.stdin = stdin.map(FileStream::from_fd).transpose()?;
        me.stdout = stdout.map(FileStream::from_fd).transpose()?;
        me.stderr = stderr.map(FileStream::from_fd).transpose()?;
        Ok(me)
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the child to exit, reaps it and returns its status (at once,
    /// if it was already reaped). Closes the child's stdin first, as `std`
    /// does, so a child reading it to the end is not left waiting.
    ///
    /// # Cancellation
    ///
    /// A cancel point (state `READ_WAIT` on the child's pidfd, or `EVENT_WAIT`
    /// for `SIGCHLD` where pidfds are missing). Cancelled or timed out, the child
    /// is killed with `SIGKILL` and reaped before the error returns; its status
    /// is then what [`Child::try_wait`] reports, and its stdout and stderr keep
    /// whatever they had read.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        drop(self.stdin.take());
        match self.wait_exit() {
            Ok(s) => Ok(s),
            Err(e) => {
                if e.is_cancellation() {
                    self.kill_and_reap();
                }
                Err(e)
            }
        }
    }

    /// Reaps the child if it has exited, without waiting.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Sends `SIGKILL` to the child (nothing if it was already reaped). It is
    /// not reaped yet: call [`Child::wait`] (or drop the `Child`).
    pub fn kill(&mut self) -> Result<()> {
        self.send_signal(libc::SIGKILL)
    }

    /// Sends signal `sig` to the child, if it has not been reaped yet (so the
    /// pid cannot have been reused by another process).
    pub fn send_signal(&mut self, sig: i32) -> Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        signal::send(self.id(), sig)
    }

    /// Writes `input` to the child's stdin and closes it, while reading its
    /// stdout and stderr to the end, all at once (so a child that writes a lot
    /// before reading everything, or the other way round, never deadlocks on a
    /// full pipe). Returns what it wrote to stdout and stderr (empty for a
    /// stream that is not piped). Does not wait for the child to exit.
    ///
    /// A child that closes its stdin before reading all of `input` is not an
    /// error (the rest is not written).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] if `input` is not empty and stdin is not piped; a
    /// read or write error. On any error the child is killed and reaped, and
    /// the error's [`Error::output`](crate::Error::output) holds what was read.
    ///
    /// # Cancellation
    ///
    /// A cancel point. Cancelled or timed out, the child is killed and reaped,
    /// and the error's [`Error::output`](crate::Error::output) holds the output
    /// read so far and the child's status.
    pub fn communicate(&mut self, input: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        if !input.is_empty() && self.stdin.is_none() {
            return Err(Error::usage(
                "communicate was given input but the child's stdin is not a pipe; \
                 set stdin(Stdio::piped()) before spawning",
            ));
        }
        let stdin = self.stdin.take();
        let (out, err) = (self.stdout.take(), self.stderr.take());
        let mut failure: Option<Error> = None;
        let (stdout, stderr) = match (stdin, out, err) {
            // One stream only: read it here, no helper task needed.
            (None, Some(mut s), None) => (read_here(&mut s, &mut failure), Vec::new()),
            (None, None, Some(mut s)) => (Vec::new(), read_here(&mut s, &mut failure)),
            (stdin, out, err) => {
                // Readers first, so the child's output drains while we write.
                let out = out.map(|s| spawn_reader("stdout", s, &mut failure));
                let err = err.map(|s| spawn_reader("stderr", s, &mut failure));
                if let Some(mut stdin) = stdin {
                    if failure.is_none() && !input.is_empty() {
                        match stdin.write_all(input) {
                            Ok(()) => {}
                            Err(e) if is_broken_pipe(&e) => {}
                            Err(e) => failure = Some(e),
                        }
                    }
                    drop(stdin); // end of file for the child
                }
                let stdout = take_reader(out.flatten(), &mut failure);
                let stderr = take_reader(err.flatten(), &mut failure);
                (stdout, stderr)
            }
        };
        match failure {
            None => Ok((stdout, stderr)),
            Some(e) => {
                self.kill_and_reap();
                let status = self.status.unwrap_or_else(killed_status);
                Err(e.with_output(Output {
                    status,
                    stdout,
                    stderr,
                }))
            }
        }
    }

    /// Waits for the exit and reaps; records the status.
    fn wait_exit(&mut self) -> Result<ExitStatus> {
        let status = match &self.exit {
            ExitWatch::Pidfd { reg, .. } => {
                let child = &mut self.child;
                reg.retry(Direction::Read, || match child.try_wait()? {
                    Some(s) => Ok(s),
                    None => Err(io::ErrorKind::WouldBlock.into()),
                })?
            }
            ExitWatch::Sigchld => {
                let sigchld = SignalEvent::new(&[libc::SIGCHLD])?;
                loop {
                    // Cleared before looking, so a SIGCHLD after the look
                    // wakes us: none can fall in between.
                    sigchld.clear();
                    if let Some(s) = self.child.try_wait()? {
                        break s;
                    }
                    sigchld.wait()?;
                }
            }
        };
        self.status = Some(status);
        Ok(status)
    }

    /// Kills the child and reaps it, with cancellation masked (the caller is
    /// already handling one). Used on the way out of a cancelled call.
    fn kill_and_reap(&mut self) {
        if self.status.is_some() {
            return;
        }
        let _ = self.child.kill();
        if disable_cancellation(|| self.wait_exit()).is_err() {
            // Only if waitpid itself failed: reap the blocking way.
            if let Ok(s) = self.child.wait() {
                self.status = Some(s);
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // Discussion: killed, the child exits within microseconds; waiting for
        // it here (blocking the thread) is what guarantees no zombie and no
        // orphan, even when the Child is dropped outside any kernel.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.id())
            .field("command", &self.command)
            .field("status", &self.status)
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .finish()
    }
}

fn is_broken_pipe(e: &Error) -> bool {
    e.io_error()
        .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
}

/// Reads `s` to the end in this task; on failure records it and returns what
/// was read.
fn read_here(s: &mut FileStream, failure: &mut Option<Error>) -> Vec<u8> {
    match s.read_all() {
        Ok(v) => v,
        Err(e) => {
            *failure = Some(e);
            s.buffered().to_vec()
        }
    }
}

/// A task reading `s` to the end; `None` (and a recorded failure) if no task
/// could be started.
fn spawn_reader(what: &str, s: FileStream, failure: &mut Option<Error>) -> Option<Reader> {
    let r = task::Builder::new()
        .name(format!("communicate {what}"))
        .spawn(move || {
            let mut s = s;
            let r = s.read_all();
            (s, r)
        });
    match r {
        Ok(t) => Some(t),
        Err(e) => {
            failure.get_or_insert(e);
            None
        }
    }
}

/// Takes a reader's bytes. While nothing has failed, waits for it to finish;
/// once something has (this task's own cancellation included), cancels it
/// instead and keeps what it had read.
fn take_reader(reader: Option<Reader>, failure: &mut Option<Error>) -> Vec<u8> {
    let Some(t) = reader else {
        return Vec::new();
    };
    if failure.is_none() {
        match t.join() {
            Ok((_, Ok(v))) => return v,
            Ok((s, Err(e))) => {
                *failure = Some(e);
                return s.buffered().to_vec();
            }
            Err(e) => *failure = Some(e), // this task was cancelled or timed out
        }
    }
    disable_cancellation(|| {
        let _ = t.cancel();
        match t.join() {
            Ok((_, Ok(v))) => v,
            Ok((s, Err(_))) => s.buffered().to_vec(),
            Err(_) => Vec::new(),
        }
    })
}
