//! Shared test helpers: an event log with exact-order asserts, a watchdog that
//! fails a hung test fast, kernels on the virtual clock, a stopwatch that reads
//! virtual time, and re-running this test binary as a child process.
//!
//! Every test file includes this module and uses a different subset of it.
#![allow(dead_code)]

use std::cell::RefCell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use curio::net::{TcpListener, TcpStream};
use curio::{ErrorKind, Kernel, State};

pub mod pki;

/// How long a test may run in real time before the watchdog fails it: ten
/// seconds, or `CURIO_TEST_WATCHDOG_SECS` (CI raises it for the run under
/// valgrind, which is tens of times slower).
pub fn watchdog_limit() -> Duration {
    let secs = std::env::var("CURIO_TEST_WATCHDOG_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(secs)
}

// ---------------------------------------------------------------------------
// The event log
// ---------------------------------------------------------------------------

/// An ordered record of what happened, shared by the tasks of one kernel.
#[derive(Clone, Default)]
pub struct Log(Rc<RefCell<Vec<String>>>);

impl Log {
    pub fn new() -> Log {
        Log::default()
    }

    /// Records one event.
    pub fn push(&self, event: impl Into<String>) {
        self.0.borrow_mut().push(event.into());
    }

    /// Records one event prefixed with the virtual time since `sw` started,
    /// e.g. `"1.5s kid cancelled"`.
    pub fn at(&self, sw: &Stopwatch, event: impl fmt::Display) {
        self.push(format!("{} {event}", sw.stamp()));
    }

    /// Everything recorded so far.
    pub fn events(&self) -> Vec<String> {
        self.0.borrow().clone()
    }

    /// Forgets everything recorded so far.
    pub fn clear(&self) {
        self.0.borrow_mut().clear();
    }

    /// Asserts the exact sequence of events, printing both on mismatch.
    #[track_caller]
    pub fn assert_eq(&self, expected: &[&str]) {
        assert_events(&self.events(), expected);
    }
}

/// Asserts that `got` is exactly `expected`, printing both sequences if not.
#[track_caller]
pub fn assert_events(got: &[String], expected: &[&str]) {
    if got.iter().map(String::as_str).ne(expected.iter().copied()) {
        let mut msg = String::from("the events differ\n  expected:\n");
        for e in expected {
            msg.push_str(&format!("    {e:?}\n"));
        }
        msg.push_str("  got:\n");
        for e in got {
            msg.push_str(&format!("    {e:?}\n"));
        }
        panic!("{msg}");
    }
}

/// `"ok"` for success, else the error's kind (`"Timeout"`, `"Cancelled"` …).
pub fn outcome<T>(r: &curio::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Reads kernel time relative to the moment it was started. On the virtual
/// clock every reading is exact.
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch {
    start: Instant,
}

impl Stopwatch {
    /// Starts now (`curio::clock()`); call it inside a task.
    pub fn start() -> Stopwatch {
        Stopwatch {
            start: curio::clock(),
        }
    }

    /// Kernel time passed since the start.
    pub fn elapsed(&self) -> Duration {
        curio::clock() - self.start
    }

    /// The instant `d` after the start (for `sleep_until`, `timeout_at` …).
    pub fn at(&self, d: Duration) -> Instant {
        self.start + d
    }

    /// The elapsed time as `Duration`'s debug text: `"0ns"`, `"1s"`, `"1.5s"`.
    pub fn stamp(&self) -> String {
        format!("{:?}", self.elapsed())
    }
}

// ---------------------------------------------------------------------------
// Running kernels under a watchdog
// ---------------------------------------------------------------------------

/// Runs `f` on a fresh OS thread and returns its value; fails the test if it
/// has not finished within [`watchdog_limit`]. A panic in `f` resumes here.
#[track_caller]
pub fn watchdog<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    watchdog_within(watchdog_limit(), f)
}

/// [`watchdog`] with its own limit.
#[track_caller]
pub fn watchdog_within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let name = format!(
        "{}-kernel",
        thread::current().name().unwrap_or("test").to_owned()
    );
    let handle = thread::Builder::new()
        .name(name)
        .spawn(move || {
            let r = panic::catch_unwind(AssertUnwindSafe(f));
            let _ = tx.send(r);
        })
        .expect("spawn the kernel thread");
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => {
            let _ = handle.join();
            v
        }
        Ok(Err(payload)) => {
            let _ = handle.join();
            panic::resume_unwind(payload)
        }
        Err(_) => panic!(
            "watchdog: the kernel did not finish within {limit:?} of real time; \
             a task is stuck (spinning without a cancel point, or waiting forever)"
        ),
    }
}

/// A kernel on the virtual clock.
pub fn virtual_kernel() -> Kernel {
    Kernel::builder().virtual_clock(true).build()
}

/// Runs `main` on a virtual-clock kernel under the watchdog and returns its value.
/// Fails the test if the kernel reports an error (a deadlock).
#[track_caller]
pub fn run_virtual<T: Send + 'static>(main: impl FnOnce() -> T + Send + 'static) -> T {
    watchdog(move || match virtual_kernel().run(main) {
        Ok(v) => v,
        Err(e) => panic!("the kernel failed: {e}"),
    })
}

/// Like [`run_virtual`] but hands back the kernel's own result.
#[track_caller]
pub fn try_run_virtual<T: Send + 'static>(
    main: impl FnOnce() -> T + Send + 'static,
) -> curio::Result<T> {
    watchdog(move || virtual_kernel().run(main))
}

/// Runs `main` with a fresh [`Log`] on a virtual-clock kernel under the watchdog
/// and returns the events once the kernel has shut down, so events recorded by
/// tasks cancelled at shutdown are included.
#[track_caller]
pub fn run_logged(main: impl FnOnce(Log) + Send + 'static) -> Vec<String> {
    watchdog(move || {
        let log = Log::new();
        let l = log.clone();
        if let Err(e) = virtual_kernel().run(move || main(l)) {
            panic!("the kernel failed: {e}");
        }
        log.events()
    })
}

/// The text of a panic payload.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

// ---------------------------------------------------------------------------
// Example binaries
// ---------------------------------------------------------------------------

/// The compiled example `name` (cargo builds examples for `cargo test`).
pub fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example binary {} not built; run `cargo build --examples`",
        path.display()
    );
    // `cargo test --test examples` alone does not rebuild the examples.
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.rs"));
    if let (Some(bin), Some(src)) = (modified(&path), modified(&source)) {
        assert!(
            bin >= src,
            "example binary {} is older than {}; run `cargo build --examples`",
            path.display(),
            source.display()
        );
    }
    path
}

// ---------------------------------------------------------------------------
// Third-party tools (nc, socat, curl, openssl …)
// ---------------------------------------------------------------------------

/// The environment variable that turns a missing third-party tool into a test
/// failure instead of a skip. `.ci/run` sets it, after installing the tools.
pub const REQUIRE_TOOLS: &str = "CURIO_REQUIRE_TOOLS";

/// The path of the external program `name` (from the Debian package
/// `package`), or `None` after printing that the calling test is skipped.
///
/// `cargo test` must pass on a machine with only the Rust toolchain, so a test
/// that drives a real third-party client skips itself, loudly, when the client
/// is missing. With `CURIO_REQUIRE_TOOLS=1` (CI) a missing tool fails the test.
#[track_caller]
pub fn external_tool(name: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/bin".into(), "/bin".into()]);
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    let test = thread::current().name().unwrap_or("this test").to_owned();
    let what = format!(
        "`{name}` is not installed; install the `{package}` package \
         (e.g. `apt-get install {package}`; `bash .ci/run` does)"
    );
    if std::env::var_os(REQUIRE_TOOLS).is_some_and(|v| v != "0") {
        panic!("{what}, or unset {REQUIRE_TOOLS}");
    }
    eprintln!("SKIPPED {test}: {what}");
    None
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// True in a child started by [`run_test_in_child`] with this `env` variable.
pub fn in_child(env: &str) -> bool {
    std::env::var_os(env).is_some()
}

/// Re-runs this test binary with only the test `name`, with `env=1` set, and
/// returns its output. Fails if the child takes longer than [`watchdog_limit`].
pub fn run_test_in_child(name: &str, env: &str) -> Output {
    run_test_in_child_with(name, env, &[])
}

/// [`run_test_in_child`] with more environment variables for the child.
pub fn run_test_in_child_with(name: &str, env: &str, extra: &[(&str, &str)]) -> Output {
    run_test_in_child_within(name, env, extra, watchdog_limit())
}

/// [`run_test_in_child_with`] with its own watchdog, for a child that does a
/// few seconds of real work (and may share the machine with other tests).
pub fn run_test_in_child_within(
    name: &str,
    env: &str,
    extra: &[(&str, &str)],
    watchdog: Duration,
) -> Output {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, "1")
        .envs(extra.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child test process");
    // Drain both pipes while waiting, so a child that writes a lot (crash
    // reports) never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            break status;
        }
        if started.elapsed() > watchdog {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().expect("stderr reader");
            panic!(
                "watchdog: child test {name} did not finish within {watchdog:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

// ---------------------------------------------------------------------------
// Interrupting a blocking call (cancel or timeout)
// ---------------------------------------------------------------------------

/// How a blocking call is interrupted.
#[derive(Clone, Copy, Debug)]
pub enum Interrupt {
    /// Another task cancels the task making the call.
    Cancel,
    /// The call runs inside `timeout_after`.
    Timeout,
}

pub const BOTH: [Interrupt; 2] = [Interrupt::Cancel, Interrupt::Timeout];

impl Interrupt {
    pub fn kind(self) -> ErrorKind {
        match self {
            Interrupt::Cancel => ErrorKind::Cancelled,
            Interrupt::Timeout => ErrorKind::Timeout,
        }
    }
}

/// Runs `op` on `state` and interrupts it 50 ms later, by cancelling the task
/// running it or by a timeout; gives back `state` and what `op` returned.
pub fn interrupted<S: 'static, T: 'static>(
    how: Interrupt,
    mut state: S,
    op: impl FnOnce(&mut S) -> curio::Result<T> + 'static,
) -> (S, curio::Result<T>) {
    match how {
        Interrupt::Timeout => {
            let r = curio::timeout_after(ms(50), || op(&mut state));
            (state, r)
        }
        Interrupt::Cancel => {
            let task = curio::spawn(move || {
                let r = op(&mut state);
                (state, r)
            });
            curio::sleep(ms(50)).unwrap();
            task.cancel().unwrap();
            task.join().unwrap()
        }
    }
}

/// Asserts that `r` is the error `how` produces; returns the error.
#[track_caller]
pub fn expect_interrupted<T: std::fmt::Debug>(how: Interrupt, r: curio::Result<T>) -> curio::Error {
    let e = r.expect_err("the call should have been interrupted");
    assert_eq!(e.kind(), how.kind(), "{how:?}: got {e:?}");
    e
}

// ---------------------------------------------------------------------------
// Real-clock kernels and sockets (the I/O tests)
// ---------------------------------------------------------------------------

/// Runs `main` on a real-clock kernel under the watchdog; fails on a kernel error.
#[track_caller]
pub fn run_real<T: Send + 'static>(main: impl FnOnce() -> T + Send + 'static) -> T {
    run_real_within(watchdog_limit(), main)
}

/// [`run_real`] with its own watchdog limit.
#[track_caller]
pub fn run_real_within<T: Send + 'static>(
    limit: Duration,
    main: impl FnOnce() -> T + Send + 'static,
) -> T {
    watchdog_within(limit, move || {
        match curio::Kernel::builder()
            .virtual_clock(false)
            .build()
            .run(main)
        {
            Ok(v) => v,
            Err(e) => panic!("the kernel failed: {e}"),
        }
    })
}

/// A 127.0.0.1 address with a port the kernel picks.
pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A connected TCP pair on 127.0.0.1: (client, server side).
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(any_port()).unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// Loops `yield_now` until `task` is parked in `state` (bounded).
pub fn until_state(task: &curio::TaskRef, state: State) {
    for _ in 0..1000 {
        if task.state() == state {
            return;
        }
        curio::yield_now().unwrap();
    }
    panic!("task never reached {state:?}; it is {:?}", task.state());
}

// ---------------------------------------------------------------------------
// Processes and fds (leak checks)
// ---------------------------------------------------------------------------

/// How many fds this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The children of this process that exist (running or zombie), as
/// `(pid, state)` with the state letter of `/proc/PID/stat` (`'Z'`: zombie).
pub fn child_processes() -> Vec<(u32, char)> {
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) S ppid ...": comm may hold spaces, so split after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == me {
            out.push((pid, state));
        }
    }
    out
}

/// True if process `pid` exists (in any state, zombie included).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
