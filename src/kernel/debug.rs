//! Seeing inside a running program: debug hooks (Curio's `debug=[...]` and
//! activations), a task's real backtrace, the all-task dump, and a handle
//! through which other threads (the monitor) look at a kernel.
//!
//! Every suspended task has a real stack, so its backtrace shows the user's
//! own frames, with the line it is blocked on. [`TaskRef::traceback`]
//! captures it from code, the monitor's `where` from outside, and [`dump`]
//! writes every task's state and stack to stderr (as Go does on `SIGQUIT`).
//! Capturing does not disturb the task: it stays in the same wait, with the
//! same deadline, and wakes exactly as it would have (`arch-notes/monitor.md`).
//!
//! # Invariants
//!
//! - Hooks run on the kernel's thread, between task slices (never inside a
//!   task), except [`Hook::long_block`] reports made while a task still runs,
//!   which come from the kernel's watchdog thread. A hook must not block.
//! - A kernel with no hook, no monitor and no long-block detection pays
//!   nothing for any of this: its loop is the unwatched one.
//! - Nothing here lets another thread touch a task: a [`KernelHandle`] asks
//!   the kernel, which answers between two slices, and every question has a
//!   timeout. A kernel stuck in a task is described from its per-switch record
//!   instead ("kernel busy in task 7 ('spin') for 3.100 s").
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! curio::run(|| {
//!     let kid = curio::spawn(|| curio::sleep(Duration::from_secs(60)));
//!     curio::yield_now().unwrap(); // the kid starts, and sleeps
//!     let trace = kid.traceback().unwrap();
//!     println!("{trace}"); // the kid's closure, blocked in curio::time::sleep
//!     assert!(trace.frames().iter().any(|f| f.function().contains("curio::time::sleep")));
//!     kid.cancel().unwrap(); // still asleep: the capture left its wait alone
//! });
//! ```
//!
//! [`TaskRef::traceback`]: crate::TaskRef::traceback

use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::record::{State, TaskRecord};
use super::watch::{Answer, Query, Shared};
use crate::error::{Error, Result};

// ---------------------------------------------------------------------------
// Hooks
// ---------------------------------------------------------------------------

/// Callbacks on a kernel's scheduling events (Curio's `Activation` and
/// `debug=` debuggers). Install with [`Builder::debug`](crate::kernel::Builder::debug).
///
/// Every method has an empty default. The kernel calls them on its own
/// thread, between task slices: `created` when a task is spawned (after the
/// slice that spawned it, before the spawner's `suspended`), `running` before
/// each slice, `suspended` after it (the task's [`TaskInfo::state`] says why:
/// `READY` for a yield, the wait's state for a wait), `terminated` when it
/// has ended. [`Hook::long_block`] is also called from the kernel's watchdog
/// thread, while a task is still running. Hooks must be quick and must not
/// block: the kernel waits for them.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// #[derive(Default)]
/// struct Count(AtomicUsize);
/// impl curio::debug::Hook for Count {
///     fn created(&self, _task: &curio::debug::TaskInfo<'_>) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
///     fn switches(&self) -> bool {
///         false // no running/suspended calls: cheaper
///     }
/// }
///
/// let count = Arc::new(Count::default());
/// let kernel = curio::Kernel::builder().debug(count.clone()).build();
/// kernel.run(|| curio::spawn(|| ()).join().unwrap()).unwrap();
/// assert_eq!(count.0.load(Ordering::Relaxed), 2); // main and the kid
/// ```
pub trait Hook: Send + Sync + 'static {
    /// The kernel starts (once, before main runs). `kernel` is the handle
    /// other threads may use to look at it.
    fn activate(&self, kernel: &KernelHandle) {
        let _ = kernel;
    }

    /// The kernel has ended (every task has).
    fn deactivate(&self) {}

    /// Whether this hook wants [`Hook::running`] and [`Hook::suspended`],
    /// called around every task switch (true by default). Say false if not:
    /// the kernel then skips them.
    fn switches(&self) -> bool {
        true
    }

    /// A task was spawned.
    fn created(&self, task: &TaskInfo<'_>) {
        let _ = task;
    }

    /// A task is about to run a slice.
    fn running(&self, task: &TaskInfo<'_>) {
        let _ = task;
    }

    /// A task's slice ended: it yielded (`READY`) or waits (its state says on what).
    fn suspended(&self, task: &TaskInfo<'_>) {
        let _ = task;
    }

    /// A task has ended (returned or panicked).
    fn terminated(&self, task: &TaskInfo<'_>) {
        let _ = task;
    }

    /// A task panicked; `report` is the crash report that went to stderr.
    fn crashed(&self, task: &TaskInfo<'_>, report: &str) {
        let _ = (task, report);
    }

    /// The shortest run without suspending that this hook wants to hear
    /// about through [`Hook::long_block`]; `None` (the default): none.
    fn long_block_threshold(&self) -> Option<Duration> {
        None
    }

    /// A task ran longer than this hook's threshold without suspending:
    /// called once while it still runs (from the watchdog thread), and once
    /// more when it suspends or ends (from the kernel's thread).
    fn long_block(&self, report: &LongBlock) {
        let _ = report;
    }
}

/// A task as a [`Hook`] sees it: read-only, and only for the call.
pub struct TaskInfo<'a> {
    rec: &'a TaskRecord,
}

impl<'a> TaskInfo<'a> {
    pub(crate) fn new(rec: &'a TaskRecord) -> TaskInfo<'a> {
        TaskInfo { rec }
    }

    /// The task's id.
    pub fn id(&self) -> u64 {
        self.rec.id()
    }

    /// The id of the task that spawned it (`None` for main).
    pub fn parent_id(&self) -> Option<u64> {
        self.rec.parent()
    }

    /// Its name.
    pub fn name(&self) -> &str {
        self.rec.name()
    }

    /// Its state now.
    pub fn state(&self) -> State {
        self.rec.state()
    }

    /// How many slices it has run.
    pub fn cycles(&self) -> u64 {
        self.rec.cycles()
    }

    /// True for a daemon task.
    pub fn is_daemon(&self) -> bool {
        self.rec.is_daemon()
    }

    /// True once its cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.rec.is_cancelled()
    }
}

impl fmt::Display for TaskInfo<'_> {
    /// `Task(id=3, name='kid', state=TIME_SLEEP)`, as Curio prints a task.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rec.describe())
    }
}

impl fmt::Debug for TaskInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A task that ran too long without suspending ([`Hook::long_block`]).
#[derive(Clone, Debug)]
pub struct LongBlock {
    task: u64,
    name: Arc<str>,
    ran: Duration,
    still_running: bool,
    resumed_from: State,
    suspended_at: Option<Traceback>,
}

impl LongBlock {
    pub(crate) fn new(
        task: u64,
        name: Arc<str>,
        ran: Duration,
        still_running: bool,
        resumed_from: State,
        suspended_at: Option<Traceback>,
    ) -> LongBlock {
        LongBlock {
            task,
            name,
            ran,
            still_running,
            resumed_from,
            suspended_at,
        }
    }

    /// The task's id.
    pub fn task_id(&self) -> u64 {
        self.task
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long it has run (so far, if it still runs) without suspending;
    /// measured by the watchdog, to within its sampling period (10 ms, or a
    /// quarter of the shortest threshold).
    pub fn ran(&self) -> Duration {
        self.ran
    }

    /// True for the report made while the task still runs; false for the
    /// one made when it has suspended (or ended).
    pub fn still_running(&self) -> bool {
        self.still_running
    }

    /// What it had been waiting for before this run (the state its previous
    /// run ended in: `TIME_SLEEP`, `QUEUE_GET` …; `READY` after a yield, or
    /// for its first run).
    pub fn resumed_from(&self) -> State {
        self.resumed_from
    }

    /// Where it suspended at the end of the run (the report made then, if
    /// it suspended rather than ended).
    pub fn suspended_at(&self) -> Option<&Traceback> {
        self.suspended_at.as_ref()
    }
}

impl fmt::Display for LongBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (id, name, secs) = (self.task, &self.name, self.ran.as_secs_f64());
        let from = self.resumed_from;
        if self.still_running {
            write!(
                f,
                "task {id} ('{name}') has been running for {secs:.3} s without suspending \
                 (resumed from {from}); nothing else runs meanwhile"
            )
        } else {
            write!(
                f,
                "task {id} ('{name}') ran for {secs:.3} s without suspending (resumed from {from})"
            )?;
            match &self.suspended_at {
                Some(t) => write!(f, "; it then suspended here:\n{t}"),
                None => f.write_str("; then it ended"),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Ready-made hooks, through the `log` facade
// ---------------------------------------------------------------------------

/// Logs every scheduling event at `info` level, target `curio::debug`, as
/// Curio's `schedtrace` does: `CREATE:<seconds>:Task(id=3, name='kid',
/// state=READY)`, then `RUN:`, `SUSPEND:`, `TERMINATED:`. With
/// [`SchedTrace::only`], only tasks whose name contains one of the given
/// strings.
///
/// ```
/// let kernel = curio::Kernel::builder()
///     .debug(std::sync::Arc::new(curio::debug::SchedTrace::new()))
///     .build();
/// kernel.run(|| curio::spawn(|| ()).join().unwrap()).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct SchedTrace {
    only: Vec<String>,
}

impl SchedTrace {
    /// Traces every task.
    pub fn new() -> SchedTrace {
        SchedTrace::default()
    }

    /// Traces only tasks whose name contains one of `names`.
    pub fn only<S: Into<String>>(names: impl IntoIterator<Item = S>) -> SchedTrace {
        SchedTrace {
            only: names.into_iter().map(Into::into).collect(),
        }
    }

    fn log(&self, what: &str, task: &TaskInfo<'_>) {
        if !self.only.is_empty() && !self.only.iter().any(|n| task.name().contains(n.as_str())) {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        log::info!(target: "curio::debug", "{what}:{now:.6}:{task}");
    }
}

impl Hook for SchedTrace {
    fn created(&self, task: &TaskInfo<'_>) {
        self.log("CREATE", task);
    }
    fn running(&self, task: &TaskInfo<'_>) {
        self.log("RUN", task);
    }
    fn suspended(&self, task: &TaskInfo<'_>) {
        self.log("SUSPEND", task);
    }
    fn terminated(&self, task: &TaskInfo<'_>) {
        self.log("TERMINATED", task);
    }
}

/// Logs every task crash at `error` level, target `curio::debug`
/// (`Task(id=3, name='kid', state=TERMINATED) crashed`, then the report), as
/// Curio's `logcrash` does. The crash report still goes to stderr as well.
#[derive(Debug, Default)]
pub struct LogCrash;

impl Hook for LogCrash {
    fn switches(&self) -> bool {
        false
    }
    fn crashed(&self, task: &TaskInfo<'_>, report: &str) {
        log::error!(target: "curio::debug", "{task} crashed\n{report}");
    }
}

/// Logs, at `warn` level with target `curio::debug`, every task that runs
/// longer than `threshold` without suspending (Curio's `longblock`): once
/// while it still runs, and once when it suspends, with how long it ran and
/// where it stopped. [`Builder::long_block`](crate::kernel::Builder::long_block)
/// does the same on stderr.
#[derive(Debug)]
pub struct LongBlocks {
    threshold: Duration,
}

impl LongBlocks {
    /// Reports runs longer than `threshold` (Curio's default is 50 ms).
    pub fn new(threshold: Duration) -> LongBlocks {
        LongBlocks { threshold }
    }
}

impl Hook for LongBlocks {
    fn switches(&self) -> bool {
        false
    }
    fn long_block_threshold(&self) -> Option<Duration> {
        Some(self.threshold)
    }
    fn long_block(&self, report: &LongBlock) {
        log::warn!(target: "curio::debug", "{report}");
    }
}

/// `Builder::long_block`: long blocks on stderr.
#[derive(Debug)]
pub(crate) struct StderrLongBlocks(pub(crate) Duration);

impl Hook for StderrLongBlocks {
    fn switches(&self) -> bool {
        false
    }
    fn long_block_threshold(&self) -> Option<Duration> {
        Some(self.0)
    }
    fn long_block(&self, report: &LongBlock) {
        eprintln!("curio: long block: {report}");
    }
}

// ---------------------------------------------------------------------------
// Backtraces
// ---------------------------------------------------------------------------

/// The stack of a task, captured on the task's own stack: the real frames of
/// the user's code, with the line each is at. `Display` shows the user's
/// frames with the runtime's own frames folded away; [`Traceback::full`]
/// shows every frame. Symbols are looked up the first time it is printed.
#[derive(Clone)]
pub struct Traceback {
    inner: Arc<TraceInner>,
}

struct TraceInner {
    /// `Task(id=3, name='kid', state=TIME_SLEEP)`, as it was captured.
    task: String,
    raw: Mutex<Option<backtrace::Backtrace>>,
    frames: OnceLock<Vec<Frame>>,
}

/// One frame of a [`Traceback`] (an inlined call is a frame of its own).
#[derive(Clone, Debug)]
pub struct Frame {
    function: String,
    file: Option<String>,
    line: Option<u32>,
    column: Option<u32>,
    runtime: bool,
}

impl Frame {
    /// The function's name, demangled (`several_tasks::kid`), or `"?"`.
    pub fn function(&self) -> &str {
        &self.function
    }

    /// The source file, if the binary has debug information.
    pub fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }

    /// The line in [`Frame::file`].
    pub fn line(&self) -> Option<u32> {
        self.line
    }

    /// True for a frame of the runtime (curio, std, core, corosensei …),
    /// which the folded form hides.
    pub fn is_runtime(&self) -> bool {
        self.runtime
    }
}

/// Path prefixes of the runtime's own code, folded away in tracebacks.
const RUNTIME: &[&str] = &[
    "curio::",
    "std::",
    "core::",
    "alloc::",
    "corosensei::",
    "backtrace::",
    "__rust",
    "_Unwind",
    "rust_begin_unwind",
    "__libc",
    "__GI",
];

fn is_runtime(function: &str) -> bool {
    let f = function.trim_start_matches(['<', '&']);
    let f = f.strip_prefix("mut ").unwrap_or(f);
    f == "?" || RUNTIME.iter().any(|p| f.starts_with(p))
}

impl Traceback {
    pub(crate) fn new(task: String, raw: backtrace::Backtrace) -> Traceback {
        Traceback {
            inner: Arc::new(TraceInner {
                task,
                raw: Mutex::new(Some(raw)),
                frames: OnceLock::new(),
            }),
        }
    }

    /// The task as it was when its stack was captured
    /// (`Task(id=3, name='kid', state=TIME_SLEEP)`).
    pub fn task(&self) -> &str {
        &self.inner.task
    }

    /// Every frame of the task's stack, most recent first: from the blocking
    /// call it is suspended in down to the closure it was spawned with (the
    /// frames of the capture itself, and those below the task's own stack,
    /// left out).
    pub fn frames(&self) -> &[Frame] {
        self.inner.frames.get_or_init(|| {
            let raw = self
                .inner
                .raw
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            raw.map(resolve).unwrap_or_default()
        })
    }

    /// The frames of the user's code only, most recent first.
    pub fn user_frames(&self) -> impl Iterator<Item = &Frame> {
        self.frames().iter().filter(|f| !f.runtime)
    }

    /// A form that prints every frame, the runtime's included.
    pub fn full(&self) -> impl fmt::Display + '_ {
        Full(self)
    }
}

/// Looks the symbols up and keeps the task's own frames.
fn resolve(mut bt: backtrace::Backtrace) -> Vec<Frame> {
    bt.resolve();
    let mut frames = Vec::new();
    for f in bt.frames() {
        let symbols = f.symbols();
        if symbols.is_empty() {
            frames.push(Frame {
                function: "?".into(),
                file: None,
                line: None,
                column: None,
                runtime: true,
            });
        }
        for s in symbols {
            let function = s
                .name()
                .map(|n| format!("{n:#}"))
                .unwrap_or_else(|| "?".into());
            frames.push(Frame {
                runtime: is_runtime(&function),
                function,
                file: s.filename().map(|p| p.display().to_string()),
                line: s.lineno(),
                column: s.colno(),
            });
        }
    }
    // The capture's own frames: up to the function that captured.
    if let Some(i) = frames
        .iter()
        .rposition(|f| f.function.contains("curio::kernel::switch::capture_here"))
    {
        frames.drain(..=i);
    }
    // The frames that answered the request (the suspend loop), and everything
    // below the coroutine's start (corosensei's trampoline, then whoever
    // resumed the task: the kernel loop), are not the task's.
    while frames
        .first()
        .is_some_and(|f| f.function.contains("curio::kernel::switch::error_reply"))
    {
        frames.remove(0);
    }
    if let Some(i) = frames
        .iter()
        .position(|f| f.function.starts_with("corosensei::"))
    {
        frames.truncate(i);
    }
    frames
}

impl fmt::Display for Traceback {
    /// The user's frames, most recent first, each with its file and line; the
    /// runtime's frames folded into one line per run (naming the outermost
    /// runtime function, usually the blocking call the task is in).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Stack of {}, most recent call first:", self.task())?;
        let frames = self.frames();
        if frames.is_empty() {
            return writeln!(f, "  (no frames: the binary has no symbols)");
        }
        let mut i = 0;
        while i < frames.len() {
            if !frames[i].runtime {
                write_frame(f, &frames[i])?;
                i += 1;
                continue;
            }
            let start = i;
            while i < frames.len() && frames[i].runtime {
                i += 1;
            }
            let n = i - start;
            let plural = if n == 1 { "" } else { "s" };
            if i == frames.len() {
                writeln!(f, "  [the task's start: {n} runtime frame{plural} folded]")?;
            } else {
                let outer = &frames[i - 1].function;
                writeln!(f, "  [in {outer}: {n} runtime frame{plural} folded]")?;
            }
        }
        Ok(())
    }
}

fn write_frame(f: &mut fmt::Formatter<'_>, fr: &Frame) -> fmt::Result {
    writeln!(f, "  {}", fr.function)?;
    if let (Some(file), Some(line)) = (&fr.file, fr.line) {
        match fr.column {
            Some(c) => writeln!(f, "      at {file}:{line}:{c}")?,
            None => writeln!(f, "      at {file}:{line}")?,
        }
    }
    Ok(())
}

struct Full<'a>(&'a Traceback);

impl fmt::Display for Full<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Stack of {}, most recent call first:", self.0.task())?;
        for fr in self.0.frames() {
            write_frame(f, fr)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Traceback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Traceback")
            .field("task", &self.inner.task)
            .field("frames", &self.inner.frames.get().map(Vec::len))
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

/// One task in a [`Snapshot`]: a row of the monitor's `ps`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TaskRow {
    /// The task's id.
    pub id: u64,
    /// Who spawned it (`None` for main).
    pub parent: Option<u64>,
    /// Its name.
    pub name: String,
    /// What it is doing.
    pub state: State,
    /// Slices it has run.
    pub cycles: u64,
    /// A daemon task.
    pub daemon: bool,
    /// Its cancellation was requested.
    pub cancelled: bool,
    /// Time left before its armed timeout fires, if one is armed.
    pub timeout: Option<Duration>,
    /// Time left in its `sleep`, if it sleeps.
    pub sleep: Option<Duration>,
    /// The task it is joining, if it waits in `join`/`wait`/`cancel`.
    pub joining: Option<u64>,
    /// CPU time it used, as sampled by the watchdog (zero if the kernel is
    /// not watched): see `arch-notes/monitor.md` for its precision.
    pub cpu: Duration,
    /// Usable bytes of its stack.
    pub stack_size: usize,
    /// How deep its stack has ever been touched (a high-water mark, in whole
    /// pages), if known: see `arch-notes/monitor.md` for what it can miss.
    pub stack_used: Option<usize>,
    /// Where its guard page is (0: no stack yet).
    pub(crate) guard: usize,
}

/// Every task of a kernel at one moment: the monitor's `ps`.
///
/// `Display` prints the monitor's table: Task, State, Cycles, Timeout (time
/// left; Curio's `Sleep` merged in, shown as `sleep 2.5`), CPU, Stack (used /
/// size), Name.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Snapshot {
    /// The tasks, by id.
    pub tasks: Vec<TaskRow>,
    /// CPU time the kernel thread spent outside tasks (sampled).
    pub kernel_cpu: Duration,
}

impl Snapshot {
    /// Fills in what is measured outside the kernel: CPU times from the
    /// watchdog's samples, stack depths from the memory map.
    pub(crate) fn fill(&mut self, shared: Option<&Shared>) {
        if let Some(s) = shared {
            let cpu = s.cpu.lock().unwrap_or_else(|e| e.into_inner());
            for t in &mut self.tasks {
                t.cpu = Duration::from_nanos(cpu.get(&t.id).copied().unwrap_or(0));
            }
            self.kernel_cpu = Duration::from_nanos(s.kernel_cpu.load(Ordering::Relaxed));
        }
        for t in &mut self.tasks {
            if t.guard != 0 {
                t.stack_used = crate::stack::stack_depth(t.guard, t.stack_size);
            }
        }
    }

    /// The row of task `id`.
    pub fn task(&self, id: u64) -> Option<&TaskRow> {
        self.tasks
            .binary_search_by_key(&id, |t| t.id)
            .ok()
            .map(|i| &self.tasks[i])
    }
}

fn secs(d: Duration) -> String {
    let s = format!("{:.6}", d.as_secs_f64());
    s[..s.len().min(7)].to_string()
}

fn bytes(n: usize) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{}M", n >> 20)
    } else {
        format!("{}K", n.div_ceil(1024))
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const W: [usize; 7] = [6, 12, 10, 13, 9, 11, 50];
        let heads = ["Task", "State", "Cycles", "Timeout", "CPU", "Stack", "Task"];
        let line: Vec<String> = heads
            .iter()
            .zip(W)
            .map(|(h, w)| format!("{h:<w$}"))
            .collect();
        writeln!(f, "{}", line.join(" ").trim_end())?;
        let rule: Vec<String> = W.iter().map(|w| "-".repeat(*w)).collect();
        writeln!(f, "{}", rule.join(" "))?;
        for t in &self.tasks {
            let timeout = match (t.timeout, t.sleep) {
                (Some(d), _) => secs(d),
                (None, Some(d)) => format!("sleep {}", secs(d)),
                (None, None) => "None".to_string(),
            };
            let stack = match t.stack_used {
                Some(u) => format!("{}/{}", bytes(u), bytes(t.stack_size)),
                None => format!("-/{}", bytes(t.stack_size)),
            };
            let cpu = format!("{:.3}", t.cpu.as_secs_f64());
            let row = format!(
                "{:<6} {:<12} {:<10} {:<13} {:<9} {:<11} {}",
                t.id,
                t.state.name(),
                t.cycles,
                timeout,
                cpu,
                stack,
                t.name
            );
            writeln!(f, "{}", row.trim_end())?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The handle other threads use
// ---------------------------------------------------------------------------

/// What a kernel is doing now, read from its per-switch record without
/// asking it (so also while a task keeps it busy).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Activity {
    /// A task is running; it has run this slice for `running_for` (as the
    /// watchdog has seen it, to within 10 ms).
    Task {
        /// The task's id.
        id: u64,
        /// Its name (`"?"` if unknown).
        name: String,
        /// How long this slice has lasted so far.
        running_for: Duration,
    },
    /// The kernel is waiting for I/O, timers or another thread.
    Idle,
    /// The kernel runs its own code between slices.
    Kernel,
    /// The kernel's `run` has ended.
    Ended,
}

/// A handle on a watched kernel, usable from any thread: snapshots, task
/// backtraces, cancellation and dumps, each answered by the kernel between
/// two slices, and what the kernel is doing right now, read from its
/// per-switch record. Every question takes a timeout: a kernel busy in a task
/// that never suspends answers none, and the error says what it is doing.
///
/// Given to [`Hook::activate`]; inside a task, [`handle`] returns the running
/// kernel's (if it is watched).
#[derive(Clone)]
pub struct KernelHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for KernelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelHandle")
            .field("kernel", &self.shared.kernel_id)
            .field("activity", &self.activity())
            .finish()
    }
}

fn no_answer(text: String) -> Error {
    Error::from(io::Error::new(io::ErrorKind::TimedOut, text))
}

/// The kernel answered that it could not do it: no such task (`NotFound`),
/// or none to show (`Other`); the message is the one line to print.
fn refused(text: String) -> Error {
    let kind = if text.starts_with("no task") {
        io::ErrorKind::NotFound
    } else {
        io::ErrorKind::Other
    };
    Error::from(io::Error::new(kind, text))
}

impl KernelHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> KernelHandle {
        KernelHandle { shared }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The kernel's id (unique in the process).
    pub fn kernel_id(&self) -> u64 {
        self.shared.kernel_id
    }

    /// True until the kernel's `run` has ended.
    pub fn is_running(&self) -> bool {
        self.shared.alive.load(Ordering::Acquire)
    }

    /// How many tasks are alive (without asking the kernel).
    pub fn task_count(&self) -> usize {
        self.shared
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The name of live task `id`, without asking the kernel.
    pub fn task_name(&self, id: u64) -> Option<String> {
        self.shared.name_of(id).map(|n| n.to_string())
    }

    /// What the kernel is doing now (from its per-switch record).
    pub fn activity(&self) -> Activity {
        if !self.is_running() {
            return Activity::Ended;
        }
        match self.shared.busy() {
            Some((id, ran)) => Activity::Task {
                id,
                name: self.task_name(id).unwrap_or_else(|| "?".into()),
                running_for: ran,
            },
            None if self.shared.beat.idle.load(Ordering::Relaxed) => Activity::Idle,
            None => Activity::Kernel,
        }
    }

    /// One line describing [`KernelHandle::activity`], as the monitor prints
    /// it when the kernel does not answer.
    pub fn activity_text(&self) -> String {
        self.shared.busy_text()
    }

    fn ask(&self, query: Query, timeout: Duration) -> Result<Answer> {
        self.shared.ask(query, timeout).map_err(no_answer)
    }

    /// Every task's row, asked of the kernel.
    ///
    /// # Errors
    ///
    /// An I/O error of kind `TimedOut` if the kernel did not answer within
    /// `timeout` (its message says what the kernel is doing), or has ended.
    pub fn snapshot(&self, timeout: Duration) -> Result<Snapshot> {
        match self.ask(Query::Snapshot, timeout)? {
            Answer::Snapshot(mut s) => {
                s.fill(Some(&self.shared));
                Ok(s)
            }
            other => Err(Error::usage(format!("unexpected answer {other:?}"))),
        }
    }

    /// The backtrace of task `id` (the monitor's `where`). Does not disturb
    /// the task.
    ///
    /// # Errors
    ///
    /// An I/O error whose message is one line saying why: `NotFound` for a
    /// task that does not exist (or has ended), `Other` for one that has not
    /// started yet or whose stack is too full to capture safely; as
    /// [`KernelHandle::snapshot`] if the kernel does not answer (a task that
    /// is running keeps it busy: only a suspended task has a backtrace).
    pub fn traceback(&self, id: u64, timeout: Duration) -> Result<Traceback> {
        match self.ask(Query::Where(id), timeout)? {
            Answer::Where(r) => r.map_err(refused),
            other => Err(Error::usage(format!("unexpected answer {other:?}"))),
        }
    }

    /// Requests cancellation of task `id`, as
    /// [`TaskRef::cancel_nowait`](crate::TaskRef::cancel_nowait) does; returns
    /// the line the monitor prints (`Cancelling task 3`).
    ///
    /// # Errors
    ///
    /// An I/O error of kind `NotFound` if there is no such task; as
    /// [`KernelHandle::snapshot`] if the kernel does not answer.
    pub fn cancel(&self, id: u64, timeout: Duration) -> Result<String> {
        match self.ask(Query::Cancel(id), timeout)? {
            Answer::Cancel(r) => r.map_err(refused),
            other => Err(Error::usage(format!("unexpected answer {other:?}"))),
        }
    }

    /// The all-task dump ([`dump`]'s text). Never fails: if the kernel does
    /// not answer within `timeout`, the text says what it is doing instead,
    /// and lists the tasks it knows by name.
    pub fn dump(&self, timeout: Duration) -> String {
        match self.ask(Query::All, timeout) {
            Ok(Answer::All(mut snap, traces)) => {
                snap.fill(Some(&self.shared));
                format_dump(self.shared.kernel_id, &snap, &traces)
            }
            Ok(other) => format!("unexpected answer {other:?}\n"),
            Err(e) => {
                let mut names: Vec<(u64, Arc<str>)> = self
                    .shared
                    .names
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .map(|(k, v)| (*k, v.clone()))
                    .collect();
                names.sort();
                let mut s = format!(
                    "curio: dump of kernel {}: no answer ({e}); its tasks:\n",
                    self.shared.kernel_id
                );
                for (id, name) in names {
                    s.push_str(&format!("  task {id} '{name}'\n"));
                }
                s
            }
        }
    }
}

/// The dump: the `ps` table, then each task's stack.
pub(crate) fn format_dump(
    kernel: u64,
    snap: &Snapshot,
    traces: &[(u64, std::result::Result<Traceback, String>)],
) -> String {
    let mut s = format!(
        "curio: dump of kernel {kernel}: {} task{}\n",
        snap.tasks.len(),
        if snap.tasks.len() == 1 { "" } else { "s" }
    );
    s.push_str(&snap.to_string());
    for (id, trace) in traces {
        s.push('\n');
        match trace {
            Ok(t) => s.push_str(&t.to_string()),
            Err(why) => s.push_str(&format!("task {id}: {why}\n")),
        }
        if let Some(target) = snap.task(*id).and_then(|r| r.joining) {
            s.push_str(&format!("  (waits for task {target})\n"));
        }
    }
    s
}

// ---------------------------------------------------------------------------
// From inside a task
// ---------------------------------------------------------------------------

/// Every task of the running kernel: state, stack and the rest, as the
/// monitor's `where all` shows them, written to stderr (Go's goroutine dump;
/// Java's thread dump). Capturing the stacks does not disturb the tasks.
///
/// ```
/// curio::run(|| {
///     let _kid = curio::spawn(|| curio::sleep(std::time::Duration::from_secs(5)));
///     curio::yield_now().unwrap();
///     curio::debug::dump(); // main (running) and the kid, asleep in curio::time::sleep
/// });
/// ```
///
/// # Panics
///
/// Outside a curio task.
pub fn dump() {
    eprint!("{}", dump_string());
}

/// [`dump`]'s text, instead of writing it to stderr.
///
/// # Panics
///
/// Outside a curio task.
pub fn dump_string() -> String {
    crate::trap::dump_string()
}

/// Every task of the running kernel, as the monitor's `ps` shows them.
///
/// # Panics
///
/// Outside a curio task.
pub fn snapshot() -> Snapshot {
    crate::trap::snapshot()
}

/// The running kernel's [`KernelHandle`], for another thread to watch it;
/// `None` if the kernel is not watched (no monitor, hook or long-block
/// detection was asked of its builder).
///
/// # Panics
///
/// Outside a curio task.
pub fn handle() -> Option<KernelHandle> {
    crate::trap::kernel_handle()
}
