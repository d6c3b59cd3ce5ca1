//! `run_in_process`: CPU-bound functions in worker processes, so they neither
//! hold the kernel nor share its core.
//!
//! Workers are this very program, started again (`/proc/self/exe`) with a
//! marker argument; [`init`], called first thing in `main`, sees the marker and
//! turns the process into a worker that serves calls until its parent goes
//! away. Nothing is forked and left running Rust code: a worker is a fresh
//! exec of the same binary, talking to its parent over a socketpair that is its
//! standard input, with length-prefixed messages
//! ([`crate::channel::Connection`]) whose contents are encoded
//! with serde and postcard.
//!
//! A closure cannot travel to another process, so the function is a plain
//! `fn(A) -> R` registered with [`process_fn!`](crate::process_fn). The
//! registration puts an entry (the function's path, the `TypeId` of its
//! function item type, and a trampoline that decodes `A`, calls it and encodes
//! `R`) in a table built when the program starts; a call finds its entry by
//! the type of the function it was given and sends the entry's index and name,
//! and the worker, running the same binary, finds the same entry. `arch-notes/processes.md` argues why this cannot call
//! the wrong function or misread bytes, and lists the limits.
//!
//! # Invariants
//!
//! - Each kernel has a pool of at most as many workers as the machine has CPUs;
//!   a worker serves one call at a time and goes back to the pool after it. A
//!   call beyond the limit waits (cancellably) for a worker.
//! - Cancelling the caller (or its timeout) kills the worker at once with
//!   SIGKILL and reaps it before `run_in_process` returns: when the error comes
//!   back, the process is gone. A killed worker is not reused.
//! - A worker that dies during a call (a signal, `exit`) is reaped, and the
//!   caller gets [`ErrorKind::WorkerDied`] naming the signal or the status.
//!   A panic in the function comes back as [`ErrorKind::TaskPanicked`] with its
//!   message, and the worker stays in the pool.
//! - Workers are spawned from the kernel's thread and carry
//!   `PR_SET_PDEATHSIG=SIGKILL`, ignore SIGINT (Ctrl-C is the parent's to
//!   handle), and exit when their socket closes; at kernel exit the pool
//!   closes every idle worker's socket and reaps it. No zombie, no fd is left.
//!
//! # Example
//!
//! ```no_run
//! fn fib(n: u64) -> u64 {
//!     if n <= 2 { 1 } else { fib(n - 1) + fib(n - 2) }
//! }
//! curio::process_fn!(fib);
//!
//! fn main() {
//!     curio::process::init(); // a worker serves calls here and never returns
//!     curio::run(|| {
//!         let f = curio::run_in_process(fib, 30).unwrap();
//!         assert_eq!(f, 832_040);
//!     });
//! }
//! ```
//!
//! # Testing code that uses it
//!
//! Workers re-run the test binary, so its `main` must call [`init`] before
//! anything else, which libtest's generated `main` does not. Put such tests in
//! a test target with its own `main` (`harness = false` in `Cargo.toml`):
//!
//! ```toml
//! [[test]]
//! name = "crunching"
//! harness = false
//! ```
//!
//! ```no_run
//! // tests/crunching.rs
//! fn double(n: u64) -> u64 { 2 * n }
//! curio::process_fn!(double);
//!
//! fn main() {
//!     curio::process::init();
//!     curio::run(|| assert_eq!(curio::run_in_process(double, 21).unwrap(), 42));
//!     println!("1 passed, 0 failed");
//! }
//! ```

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::panic::{self, AssertUnwindSafe};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::rc::Rc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::channel::{self, Connection, MAX_FRAME};
use crate::error::{Error, ErrorKind, Result};
use crate::io::{Registration, Socket};
use crate::poller::Direction;
use crate::sync::Semaphore;
use crate::sys;
use crate::time::disable_cancellation;
use crate::trap;

/// The argument that makes [`init`] serve as a worker. The parent's pid follows it.
pub const WORKER_FLAG: &str = "--curio-process-worker-v1";

/// Bumped whenever the messages between parent and worker change.
const PROTOCOL: u32 = 1;

static INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// Call this first thing in `main` of any program that uses
/// [`run_in_process`]. In the program itself it only records that it was
/// called; in a worker (the same program started again with
/// [`WORKER_FLAG`]) it serves calls and then exits the process, never
/// returning.
///
/// Anything `main` does before `init` also happens in every worker, so call it
/// before parsing arguments, opening files or spawning threads.
pub fn init() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(OsStr::new(WORKER_FLAG)) {
        let parent = args
            .next()
            .and_then(|s| s.to_str().and_then(|s| s.parse::<u32>().ok()));
        worker::serve(parent);
    }
    INIT_CALLED.store(true, Ordering::Release);
}

// ---------------------------------------------------------------------------
// The registry
// ---------------------------------------------------------------------------

/// Registers functions for [`run_in_process`]: each path names a function
/// `fn(A) -> R` (a generic one with its parameters given, as in
/// `sum::<u64>`) whose `A` implements serde's `DeserializeOwned` and whose `R`
/// implements `Serialize`. Use it at item level, beside the function; several
/// paths may be given at once.
///
/// ```
/// fn square(n: u64) -> u64 { n * n }
/// fn shout(s: String) -> String { s.to_uppercase() }
/// fn total<T: Into<u64>>(v: Vec<T>) -> u64 { v.into_iter().map(Into::into).sum() }
/// curio::process_fn!(square, shout, total::<u32>);
/// ```
///
/// A call finds the registration from the function's own type (every Rust
/// function has a distinct, zero-sized type), so the path must name a
/// function, not a `const` holding a function pointer.
#[macro_export]
macro_rules! process_fn {
    ($($f:path),+ $(,)?) => {
        $(
            $crate::__private::inventory::submit! {
                $crate::process::Entry {
                    name: ::core::concat!(::core::module_path!(), "::", ::core::stringify!($f)),
                    key: || $crate::process::__key($f),
                    invoke: |bytes| $crate::process::__invoke(bytes, $f),
                }
            }
        )+
    };
}

/// One registered function (made by [`process_fn!`](crate::process_fn); not
/// for direct use).
#[doc(hidden)]
#[derive(Debug)]
pub struct Entry {
    /// Where it was registered: `crate::module::function`.
    pub name: &'static str,
    /// The identity of the function's type.
    pub key: fn() -> Key,
    /// Decodes the argument, calls the function, encodes the result.
    pub invoke: fn(&[u8]) -> std::result::Result<Vec<u8>, String>,
}

inventory::collect!(Entry);

/// A registered function's identity: the `TypeId` of its function item type.
///
/// Discussion: a function item's type is zero-sized and names exactly one
/// function, so its `TypeId` identifies the function, in every codegen unit
/// and every process running this binary. Function *addresses* do not: a
/// small function is copied into each codegen unit that uses it, so the
/// address taken at registration and at the call may differ (seen in release
/// builds). A function *pointer* type (`fn(u64) -> u64`) is shared by every
/// function of that signature, so keys that are not zero-sized are refused.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    ty: TypeId,
    zero_sized: bool,
}

/// The key of `f`'s type (used by [`process_fn!`](crate::process_fn)).
#[doc(hidden)]
pub fn __key<F: 'static>(_f: F) -> Key {
    Key {
        ty: TypeId::of::<F>(),
        zero_sized: std::mem::size_of::<F>() == 0,
    }
}

/// Decodes an `A` from `bytes`, calls `f`, encodes the `R` (used by
/// [`process_fn!`](crate::process_fn)).
#[doc(hidden)]
pub fn __invoke<F, A, R>(bytes: &[u8], f: F) -> std::result::Result<Vec<u8>, String>
where
    F: Fn(A) -> R,
    A: DeserializeOwned,
    R: Serialize,
{
    let arg: A = channel::decode(bytes).map_err(|e| e.to_string())?;
    let out = f(arg);
    channel::encode(&out).map_err(|e| e.to_string())
}

struct Registry {
    /// In link order, which is the same in every process running this binary.
    entries: Vec<&'static Entry>,
    by_key: HashMap<Key, u32>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let entries: Vec<&'static Entry> = inventory::iter::<Entry>.into_iter().collect();
        let mut by_key = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let key = (e.key)();
            // A function pointer's type is shared by every function of its
            // signature: such an entry could be matched by the wrong call.
            if key.zero_sized {
                by_key.entry(key).or_insert(i as u32);
            }
        }
        Registry { entries, by_key }
    })
}

// ---------------------------------------------------------------------------
// Messages between parent and worker
// ---------------------------------------------------------------------------

/// The worker's first message.
#[derive(Serialize, Deserialize, Debug)]
struct Hello {
    protocol: u32,
    pid: u32,
    functions: u32,
}

/// Heads a call; the encoded argument follows.
#[derive(Serialize, Deserialize)]
struct Call<'a> {
    index: u32,
    name: &'a str,
}

/// Heads an answer; for `Value`, the encoded result follows.
#[derive(Serialize, Deserialize)]
enum Answer {
    Value,
    Panicked(String),
    Failed(String),
}

// ---------------------------------------------------------------------------
// The worker side
// ---------------------------------------------------------------------------

mod worker {
    use super::*;

    thread_local! {
        /// True while this thread runs a registered function.
        static IN_CALL: Cell<bool> = const { Cell::new(false) };
        /// Where the last panic of a registered function happened.
        static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    pub(super) fn serve(parent: Option<u32>) -> ! {
        let code = match run(parent) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("curio worker process {}: {e}", std::process::id());
                2
            }
        };
        std::process::exit(code)
    }

    fn run(parent: Option<u32>) -> Result<()> {
        sys::ignore_sigint();
        sys::kill_me_when_parent_dies()?;
        // The parent may have died before the line above: then nobody waits.
        if parent != Some(std::os::unix::process::parent_id()) {
            return Err(Error::usage(format!(
                "started with {WORKER_FLAG} but not by the process it names; \
                 this flag is for curio's own use"
            )));
        }
        let fd: OwnedFd = io::stdin().as_fd().try_clone_to_owned()?;
        let sock = socket2::Socket::from(fd);
        sock.r#type().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "standard input is not curio's socket ({e}); this flag is for curio's own use"
                ),
            )
        })?;
        sys::stdin_to_dev_null()?;
        let mut sock = std::os::unix::net::UnixStream::from(OwnedFd::from(sock));

        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_CALL.with(Cell::get) {
                let at = info.location().map(|l| l.to_string());
                PANIC_AT.with(|p| *p.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));

        let hello = Hello {
            protocol: PROTOCOL,
            pid: std::process::id(),
            functions: registry().entries.len() as u32,
        };
        channel::write_frame_blocking(&mut sock, &channel::encode(&hello)?)?;
        while let Some(msg) = channel::read_frame_blocking(&mut sock, MAX_FRAME)? {
            let answer = call(&msg);
            // What the function printed reaches the terminal before the answer.
            let _ = io::stdout().flush();
            channel::write_frame_blocking(&mut sock, &answer)?;
        }
        Ok(())
    }

    /// Runs one call and encodes the answer.
    fn call(msg: &[u8]) -> Vec<u8> {
        let answer = |a: &Answer, value: &[u8]| {
            let mut out = channel::encode(a).expect("answers always encode");
            out.extend_from_slice(value);
            out
        };
        let (head, arg) = match postcard::take_from_bytes::<Call<'_>>(msg) {
            Ok(v) => v,
            Err(e) => return answer(&Answer::Failed(format!("a malformed call: {e}")), &[]),
        };
        let entry = match registry().entries.get(head.index as usize) {
            Some(e) if e.name == head.name => *e,
            _ => {
                return answer(
                    &Answer::Failed(format!(
                        "the worker has no function {} at index {}: \
                         parent and worker are not the same program",
                        head.name, head.index
                    )),
                    &[],
                );
            }
        };
        IN_CALL.with(|c| c.set(true));
        let out = panic::catch_unwind(AssertUnwindSafe(|| (entry.invoke)(arg)));
        IN_CALL.with(|c| c.set(false));
        match out {
            Ok(Ok(value)) => answer(&Answer::Value, &value),
            Ok(Err(why)) => answer(&Answer::Failed(why), &[]),
            Err(payload) => {
                let mut msg = crate::kernel::panic_message(&*payload);
                if let Some(at) = PANIC_AT.with(|p| p.borrow_mut().take()) {
                    msg = format!("{msg} (at {at})");
                }
                answer(&Answer::Panicked(msg), &[])
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The parent side: workers and the pool
// ---------------------------------------------------------------------------

/// A worker process and the connection to it.
struct Worker {
    // Declared first: the socket is deregistered and closed before the child
    // is reaped in `drop`.
    conn: Connection,
    /// `None` once reaped.
    child: Option<Child>,
    pid: u32,
}

impl Worker {
    /// Starts a worker and waits for its greeting.
    ///
    /// Spawned from the kernel's thread on purpose: `PR_SET_PDEATHSIG` fires
    /// when the thread that spawned the child exits, and the kernel's thread
    /// outlives the pool, whereas a `run_in_thread` thread may retire while
    /// its workers still serve.
    fn start() -> Result<Worker> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let mut cmd = Command::new("/proc/self/exe");
        if let Some(arg0) = std::env::args_os().next() {
            cmd.arg0(arg0);
        }
        cmd.arg(WORKER_FLAG)
            .arg(std::process::id().to_string())
            .stdin(Stdio::from(OwnedFd::from(theirs)));
        let child = cmd.spawn().map_err(|e| {
            Error::from(io::Error::new(
                e.kind(),
                format!("could not start a worker process: {e}"),
            ))
        })?;
        let pid = child.id();
        let sock = Socket::from_socket2(socket2::Socket::from(OwnedFd::from(ours)));
        let mut w = Worker {
            conn: Connection::new(sock?.as_stream()),
            child: Some(child),
            pid,
        };
        w.conn.set_max_message(MAX_FRAME);
        let hello = w
            .conn
            .recv_bytes()
            .and_then(|b| channel::decode::<Hello>(&b));
        match hello {
            Ok(h) if h.protocol == PROTOCOL && h.functions as usize == registry().entries.len() => {
                Ok(w)
            }
            Ok(h) => {
                w.kill_and_reap();
                Err(Error::usage(format!(
                    "worker process {pid} is not the same program (it says {h:?}); \
                     is /proc/self/exe this binary?"
                )))
            }
            Err(e) => {
                let status = w.kill_and_reap();
                if e.is_cancellation() {
                    return Err(e);
                }
                Err(Error::new(
                    ErrorKind::WorkerDied,
                    format!(
                        "worker process {pid} {} before it was ready ({e}); call \
                         curio::process::init() first thing in main (tests: in a harness = false \
                         test whose main calls it)",
                        describe(status)
                    ),
                ))
            }
        }
    }

    /// Kills the worker with SIGKILL and waits until it is reaped, whatever
    /// cancellations arrive meanwhile (the wait is short: SIGKILL cannot be
    /// caught). Returns how it ended; `None` if it was already reaped.
    fn kill_and_reap(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        match disable_cancellation(|| wait_exit(&mut child)) {
            Ok(status) => Some(status),
            Err(_) => child.wait().ok(),
        }
    }
}

/// Waits for `child` to exit (it has been killed, or has closed its socket)
/// without blocking the kernel: a pidfd becomes readable when it exits. On
/// kernels without pidfds (before Linux 5.3) it blocks in `waitpid`.
fn wait_exit(child: &mut Child) -> Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    let pidfd = match sys::pidfd_open(child.id()) {
        Ok(fd) => fd,
        Err(_) => return Ok(child.wait()?),
    };
    let reg = Registration::new(pidfd.as_raw_fd());
    let status = reg.retry(Direction::Read, || {
        child
            .try_wait()?
            .ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))
    });
    drop(reg); // deregistered before the pidfd closes
    status
}

impl Drop for Worker {
    /// The last resort (a task unwound with a worker in hand): kill and reap,
    /// blocking.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How a reaped worker ended, for error messages.
fn describe(status: Option<ExitStatus>) -> String {
    match status {
        Some(s) => match (s.signal(), s.code()) {
            (Some(sig), _) => format!("was killed by signal {} ({sig})", signal_name(sig)),
            (None, Some(code)) => format!("exited with status {code}"),
            (None, None) => format!("ended ({s})"),
        },
        None => "could not be reaped".to_string(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => "an unnamed signal",
    }
}

/// A kernel's workers.
struct Pool {
    kernel: u64,
    idle: RefCell<Vec<Worker>>,
    /// One unit per worker that may exist.
    slots: Semaphore,
}

thread_local! {
    static POOL: RefCell<Option<Rc<Pool>>> = const { RefCell::new(None) };
}

/// The most workers a kernel runs at once: the number of CPUs.
pub fn max_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// This kernel's pool, made on first use and emptied when the kernel ends.
fn pool() -> Rc<Pool> {
    let kernel = trap::kernel_id().expect("run_in_process is called from a task");
    if let Some(p) = POOL.with(|p| p.borrow().as_ref().filter(|p| p.kernel == kernel).cloned()) {
        return p;
    }
    let pool = Rc::new(Pool {
        kernel,
        idle: RefCell::new(Vec::new()),
        slots: Semaphore::new(max_workers()),
    });
    POOL.with(|p| *p.borrow_mut() = Some(pool.clone()));
    trap::at_exit(Box::new(move || {
        let Some(pool) = POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.as_ref().is_some_and(|p| p.kernel == kernel) {
                p.take()
            } else {
                None
            }
        }) else {
            return;
        };
        // Close every idle worker's socket first, so they all exit at
        // once, then reap each. Idle workers wait in `read`, so they see
        // the end of the stream straight away.
        let workers: Vec<Worker> = pool.idle.borrow_mut().drain(..).collect();
        let children: Vec<Child> = workers
            .into_iter()
            .filter_map(|mut w| w.child.take())
            .collect();
        for mut child in children {
            let _ = child.wait();
        }
    }));
    pool
}

/// How many worker processes this kernel has idle in its pool (for tests and
/// monitoring).
pub fn idle_workers() -> usize {
    let kernel = trap::kernel_id().expect("run_in_process is called from a task");
    POOL.with(|p| {
        p.borrow()
            .as_ref()
            .filter(|p| p.kernel == kernel)
            .map_or(0, |p| p.idle.borrow().len())
    })
}

/// Runs `f(arg)` in a worker process and returns its value, while the kernel
/// runs other tasks. `f` is a function (a function item, such as `fib`)
/// registered with [`process_fn!`](crate::process_fn), and `main` must call
/// [`init`] first.
///
/// The argument and the value travel encoded with serde (postcard), so they
/// are copies: `f` sees none of the caller's memory, and what it changes stays
/// in the worker. What `f` prints goes to the same terminal.
///
/// # Errors
///
/// - [`ErrorKind::TaskPanicked`] if `f` panicked (with its message and
///   location); the worker stays in the pool.
/// - [`ErrorKind::WorkerDied`] if the worker died during the call (a signal
///   such as SIGSEGV or SIGABRT, or `process::exit`); the message names it.
/// - [`ErrorKind::Usage`] if [`init`] was not called, `f` is not registered,
///   or `f` is a function pointer or closure rather than a function.
/// - An I/O error if no worker could be started, or if the argument or the
///   value could not be encoded or decoded.
///
/// # Cancellation
///
/// A cancel point while waiting for a free worker and for the answer.
/// Cancelled or timed out while waiting for a worker, nothing was started.
/// Cancelled during the call, the worker is killed with SIGKILL and reaped
/// before this returns (a few hundred microseconds; further cancellations
/// wait for it), so no process is left running `f`; the error is the caller's
/// cancellation or timeout.
pub fn run_in_process<F, A, R>(f: F, arg: A) -> Result<R>
where
    F: Fn(A) -> R + 'static,
    A: Serialize,
    R: DeserializeOwned,
{
    if !INIT_CALLED.load(Ordering::Acquire) {
        return Err(Error::usage(
            "run_in_process needs curio::process::init() called first thing in main \
             (in tests: a harness = false test target whose main calls it)",
        ));
    }
    let key = __key(f);
    if !key.zero_sized {
        return Err(Error::usage(format!(
            "run_in_process needs a function item registered with curio::process_fn!, such as \
             `fib`; this is a {}, which may point to any function",
            std::any::type_name::<F>()
        )));
    }
    let reg = registry();
    let Some(&index) = reg.by_key.get(&key) else {
        return Err(Error::usage(format!(
            "{} is not registered for run_in_process; add curio::process_fn!(name) beside it",
            std::any::type_name::<F>()
        )));
    };
    let name = reg.entries[index as usize].name;
    let mut call = channel::encode(&Call { index, name })?;
    call.extend_from_slice(&channel::encode(&arg)?);

    let pool = pool();
    let _slot = pool.slots.acquire()?;
    let mut retried = false;
    loop {
        let reused = pool.idle.borrow_mut().pop();
        let from_pool = reused.is_some();
        let mut worker = match reused {
            Some(w) => w,
            None => Worker::start()?,
        };
        if let Err(e) = worker.conn.send_bytes(&call) {
            let status = worker.kill_and_reap();
            if e.is_cancellation() {
                return Err(e);
            }
            // An idle worker that died while idle (killed from outside):
            // nothing ran; try once more with a fresh one.
            if from_pool && !retried && e.bytes_done().unwrap_or(0) == 0 {
                retried = true;
                continue;
            }
            return Err(Error::new(
                ErrorKind::WorkerDied,
                format!(
                    "could not send the call of {name} to worker process {}, which {} ({e})",
                    worker.pid,
                    describe(status)
                ),
            ));
        }
        let msg = match worker.conn.recv_bytes() {
            Ok(msg) => msg,
            Err(e) => {
                let status = worker.kill_and_reap();
                if e.is_cancellation() {
                    return Err(e);
                }
                return Err(Error::new(
                    ErrorKind::WorkerDied,
                    format!(
                        "worker process {} running {name} {}",
                        worker.pid,
                        describe(status)
                    ),
                ));
            }
        };
        let Ok((answer, value)) = postcard::take_from_bytes::<Answer>(&msg) else {
            worker.kill_and_reap();
            return Err(Error::usage(format!(
                "worker process {} sent a malformed answer for {name}",
                worker.pid
            )));
        };
        pool.idle.borrow_mut().push(worker);
        return match answer {
            Answer::Value => channel::decode(value),
            Answer::Panicked(msg) => Err(Error::new(
                ErrorKind::TaskPanicked,
                format!("in run_in_process({name}): {msg}"),
            )),
            Answer::Failed(msg) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("run_in_process({name}) failed in the worker: {msg}"),
            )
            .into()),
        };
    }
}
