//! Tasks as their users see them: spawning, handles, the current task and
//! task-local storage. (The task record itself, its states and crash reports
//! belong to the kernel: `kernel/record.rs`, `kernel/crash.rs`.)
//!
//! # Invariants
//!
//! - A task's record is shared by the kernel (through its slot) and by every
//!   handle; handles only read it, and reach the kernel through `crate::trap`.
//! - A task's closure runs inside `catch_unwind` on its own stack: a panic ends
//!   that task only. It is reported to stderr as a task crash and handed to the
//!   joiner as [`ErrorKind::TaskPanicked`](crate::ErrorKind::TaskPanicked).
//! - Dropping a [`Task`] handle detaches the task; it runs on and is cancelled at
//!   shutdown if still alive.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! curio::run(|| {
//!     let kid = curio::spawn(|| curio::sleep(Duration::from_secs(1000)));
//!     if curio::timeout_after(Duration::from_millis(10), || kid.wait()).is_err() {
//!         kid.cancel().unwrap();
//!     }
//!     assert!(kid.join().unwrap().unwrap_err().is_cancelled());
//! });
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use crate::error::{Error, Result};
use crate::kernel::{AnyTask, State, TaskRc, TaskRecord, Typed};
use crate::trap::{self, SpawnOptions};

// ---------------------------------------------------------------------------
// Handles
// ---------------------------------------------------------------------------

/// An untyped handle to a task: what [`current_task`] returns, and what every
/// [`Task`] dereferences to. Not `Send`: tasks never leave their kernel's thread.
///
/// ```compile_fail
/// fn needs_send<T: Send>(_: T) {}
/// curio::run(|| needs_send(curio::current_task()));
/// ```
#[derive(Clone)]
pub struct TaskRef {
    task: TaskRc<AnyTask>,
}

impl TaskRef {
    pub(crate) fn from_rc(task: TaskRc<AnyTask>) -> TaskRef {
        TaskRef { task }
    }

    pub(crate) fn record(&self) -> &TaskRecord {
        self.task.record()
    }

    /// The task's id: 1 for main, then increasing in spawn order.
    pub fn id(&self) -> u64 {
        self.record().id()
    }

    /// The id of the task that spawned it (`None` for main).
    pub fn parent_id(&self) -> Option<u64> {
        self.record().parent()
    }

    /// Its name: the builder's, or the type name of the closure it runs.
    pub fn name(&self) -> &str {
        self.record().name()
    }

    /// What it is doing now.
    pub fn state(&self) -> State {
        self.record().state()
    }

    /// How many times the kernel has resumed it.
    pub fn cycles(&self) -> u64 {
        self.record().cycles()
    }

    /// True for a daemon task (a background task whose result nobody collects).
    pub fn is_daemon(&self) -> bool {
        self.record().is_daemon()
    }

    /// True once it has finished.
    pub fn is_terminated(&self) -> bool {
        self.record().is_terminated()
    }

    /// True once cancellation has been requested, whether or not the task then
    /// ended because of it.
    pub fn is_cancelled(&self) -> bool {
        self.record().is_cancelled()
    }

    /// Waits until the task has finished, without taking its result.
    ///
    /// # Cancellation
    ///
    /// A cancel point (unless the task has already finished). If the caller is
    /// cancelled or times out here, it stops waiting; the task runs on, untouched.
    #[inline(always)] // the switch happens in the caller's frame (arch-notes/trap-flow.md)
    pub fn wait(&self) -> Result<()> {
        trap::join(self.record())
    }

    /// Takes a joined task out of its task group, as Curio's `join` does: the
    /// group's results, completion order and wait policy no longer see it.
    #[inline]
    pub(crate) fn leave_group(&self) {
        if self.record().in_group() {
            self.leave_group_slow();
        }
    }

    #[inline(never)]
    fn leave_group_slow(&self) {
        if let Some(group) = self.record().leave_group().and_then(|w| w.upgrade()) {
            group.discard(self.id());
        }
    }

    /// The task's backtrace: its real stack, with the line of each frame of
    /// your code (Curio's `traceback()`, the monitor's `where`). Printing it
    /// shows your frames and folds the runtime's; see [`Traceback`].
    ///
    /// Capturing does not disturb the task: it stays in the same wait, with
    /// the same deadline, and wakes exactly as it would have. For the calling
    /// task itself, the stack of the call.
    ///
    /// ```
    /// fn kid() -> curio::Result<()> {
    ///     curio::sleep(std::time::Duration::from_secs(60))
    /// }
    /// curio::run(|| {
    ///     let t = curio::spawn(kid);
    ///     curio::yield_now().unwrap();
    ///     let trace = t.traceback().unwrap();
    ///     assert!(trace.user_frames().any(|f| f.function().ends_with("kid")));
    ///     t.cancel().unwrap();
    /// });
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`](crate::ErrorKind::Usage), saying why, for a task
    /// that has finished, has not started yet, is being torn down, or whose
    /// stack is too full to capture safely (a capture needs about 12 KiB).
    ///
    /// # Panics
    ///
    /// Outside a curio task.
    ///
    /// [`Traceback`]: crate::debug::Traceback
    pub fn traceback(&self) -> Result<crate::debug::Traceback> {
        trap::traceback(&self.task)
    }

    /// True once the task's value (or panic) has been taken by
    /// [`Task::join`] or [`Task::result`] (Curio's `joined`).
    pub fn is_joined(&self) -> bool {
        self.record().is_joined()
    }

    /// [`TaskRef::cancel_nowait`], but the task receives `err` instead of
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) (Curio's
    /// `cancel(exc=…)`): any error, delivered once at its current or next
    /// cancel point, as a cancellation is.
    ///
    /// ```
    /// use std::time::Duration;
    /// curio::run(|| {
    ///     let kid = curio::spawn(|| curio::sleep(Duration::from_secs(60)));
    ///     curio::yield_now().unwrap();
    ///     kid.cancel_with(std::io::Error::other("shutting down")).unwrap();
    ///     assert_eq!(kid.join().unwrap().unwrap_err().to_string(), "shutting down");
    /// });
    /// ```
    pub fn cancel_nowait_with(&self, err: impl Into<Error>) {
        trap::cancel_with(self.record(), err.into());
    }

    /// [`TaskRef::cancel`] delivering `err` (see [`TaskRef::cancel_nowait_with`]).
    ///
    /// # Errors
    ///
    /// As [`TaskRef::cancel`].
    ///
    /// # Cancellation
    ///
    /// As [`TaskRef::cancel`].
    pub fn cancel_with(&self, err: impl Into<Error>) -> Result<()> {
        if trap::current_id() == self.id() {
            return Err(Error::usage(
                "a task cannot cancel itself and wait for its own end; use cancel_nowait_with",
            ));
        }
        self.cancel_nowait_with(err);
        self.wait()
    }

    /// Requests cancellation and returns at once. The task receives
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) at its current or next cancel point (once only;
    /// later requests do nothing). Its armed timeout is cleared. A task may
    /// cancel itself this way.
    pub fn cancel_nowait(&self) {
        trap::cancel(self.record());
    }

    /// Requests cancellation, then waits until the task has finished.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`](crate::ErrorKind::Usage) if a task cancels itself this way (use
    /// [`TaskRef::cancel_nowait`]).
    ///
    /// # Cancellation
    ///
    /// The request is made at once and is not withdrawn. The wait for the task to
    /// finish is a cancel point: a caller cancelled or timed out there returns the
    /// error while the task goes on with its cleanup.
    pub fn cancel(&self) -> Result<()> {
        if trap::current_id() == self.id() {
            return Err(Error::usage(
                "a task cannot cancel itself and wait for its own end; use cancel_nowait",
            ));
        }
        self.cancel_nowait();
        self.wait()
    }
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.record().describe())
    }
}

impl fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A handle to a task that returns a `T`. Dereferences to [`TaskRef`] for the
/// untyped operations (`id`, `cancel`, `wait` …). Dropping it detaches the task.
pub struct Task<T> {
    any: TaskRef,
    /// The task's value, a `T`, is in the box `any` holds.
    value: PhantomData<T>,
}

impl<T> Task<T> {
    /// Waits for the task to finish and takes its value.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::TaskPanicked`](crate::ErrorKind::TaskPanicked) if it panicked (the message is the panic's).
    /// - [`ErrorKind::ResultTaken`](crate::ErrorKind::ResultTaken) if an earlier `join` took the value.
    /// - The caller's own cancellation or timeout while waiting.
    ///
    /// A task that was cancelled returns whatever its closure returned; for a
    /// closure returning `curio::Result`, that is usually `Err(Cancelled)`.
    ///
    /// # Cancellation
    ///
    /// A cancel point. A caller cancelled or timed out here takes nothing: the
    /// task runs on and a later `join` still gets its value.
    #[inline(always)] // as `wait`
    pub fn join(&self) -> Result<T> {
        self.any.wait()?;
        self.any.leave_group();
        self.cell().take_result()
    }

    /// The value of a task that has finished, without waiting (Curio's
    /// `result`): as [`Task::join`] once the task has ended.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`](crate::ErrorKind::Usage) if the task is still
    /// running; otherwise as [`Task::join`].
    pub fn result(&self) -> Result<T> {
        if !self.is_terminated() {
            return Err(Error::usage(format!(
                "task {} has not finished; join it to wait for it, or check is_terminated first",
                self.id()
            )));
        }
        self.any.leave_group();
        self.cell().take_result()
    }

    /// How a finished task failed, without taking its value (Curio's
    /// `exception`): `Ok(Some(e))` with [`ErrorKind::TaskPanicked`](crate::ErrorKind::TaskPanicked)
    /// if it panicked, `Ok(None)` if it returned. A task returns its errors
    /// as values, so a `Task<Result<U, E>>`'s `Err` is in its value.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`](crate::ErrorKind::Usage) if the task is still running.
    pub fn exception(&self) -> Result<Option<Error>> {
        if !self.is_terminated() {
            return Err(Error::usage(format!(
                "task {} has not finished; join it to wait for it, or check is_terminated first",
                self.id()
            )));
        }
        Ok(self
            .cell()
            .panic_text()
            .map(|msg| Error::new(crate::ErrorKind::TaskPanicked, msg)))
    }

    /// The untyped handle.
    pub fn as_task_ref(&self) -> &TaskRef {
        &self.any
    }

    /// The task's record and value, typed.
    pub(crate) fn cell(&self) -> Typed<'_, T> {
        // SAFETY: a `Task<T>` is made only by `Builder::spawn_unchecked`,
        // from the box of a task whose closure returns `T`.
        #[allow(unsafe_code)]
        unsafe {
            self.any.task.typed()
        }
    }
}

impl<U, E: From<Error>> Task<std::result::Result<U, E>> {
    /// [`Task::join`] for a task that returns a `Result`, flattened: the
    /// task's own error and a failure to join it (the caller's cancellation,
    /// the task's panic) come out as one `E`, so one `?` does (`join()??`
    /// without the double question mark).
    ///
    /// ```
    /// curio::run(|| -> curio::Result<()> {
    ///     let kid = curio::spawn(|| -> curio::Result<u32> { Ok(42) });
    ///     assert_eq!(kid.join_flatten()?, 42);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The task's `Err`, or [`Task::join`]'s errors converted into `E`.
    ///
    /// # Cancellation
    ///
    /// As [`Task::join`].
    #[inline(always)] // as `wait`
    pub fn join_flatten(&self) -> std::result::Result<U, E> {
        self.join()?
    }
}

impl<T> Clone for Task<T> {
    /// Another handle to the same task (the value can still be joined only once).
    fn clone(&self) -> Self {
        Task {
            any: self.any.clone(),
            value: PhantomData,
        }
    }
}

impl<T> Deref for Task<T> {
    type Target = TaskRef;
    fn deref(&self) -> &TaskRef {
        &self.any
    }
}

/// The same text as [`TaskRef`]'s: id, name and state.
impl<T> fmt::Display for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.any, f)
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.any, f)
    }
}

// ---------------------------------------------------------------------------
// Spawning
// ---------------------------------------------------------------------------

/// Options for a new task: name, daemon flag, stack size.
///
/// ```
/// curio::run(|| {
///     let t = curio::task::Builder::new().name("worker").daemon(true).spawn(|| 1).unwrap();
///     assert_eq!(t.name(), "worker");
///     assert!(t.is_daemon());
/// });
/// ```
#[derive(Clone, Debug, Default)]
pub struct Builder {
    name: Option<String>,
    daemon: bool,
    stack_size: Option<usize>,
}

impl Builder {
    /// Default options: the closure's type name as name, not a daemon, the
    /// kernel's stack size.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the task (shown in reports and the monitor).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Marks it a daemon: a background task whose result nobody collects. Daemons
    /// are still cancelled at shutdown and when their task group ends.
    pub fn daemon(mut self, daemon: bool) -> Builder {
        self.daemon = daemon;
        self
    }

    /// Its usable stack size in bytes, rounded up to whole pages; between
    /// [`crate::MIN_STACK_SIZE`] (16 KiB) and [`crate::MAX_STACK_SIZE`] (1 GiB),
    /// or [`Builder::spawn`] fails (an I/O error of kind `InvalidInput`).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Spawns `f` as a new task at the back of the ready queue. Never switches:
    /// the caller runs on until it blocks.
    ///
    /// Every fallible spawn of the crate returns a [`crate::Result`]
    /// (this, [`TaskGroup::spawn`](crate::TaskGroup::spawn) and
    /// [`Scope::spawn`](crate::Scope::spawn)); [`crate::spawn`] panics instead,
    /// as `std::thread::spawn` does.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io), the task not created and the
    /// program going on:
    /// - `InvalidInput` for a stack size out of range ([`Builder::stack_size`]);
    /// - `OutOfMemory` (or the system's error) if no stack could be mapped; the
    ///   message says what ran out and what to do (for example, on kernels
    ///   without `MADV_GUARD_INSTALL`, that `vm.max_map_count` is nearly used
    ///   up).
    ///
    /// # Panics
    ///
    /// Outside a curio task.
    #[allow(unsafe_code)]
    pub fn spawn<F, T>(self, f: F) -> Result<Task<T>>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        // SAFETY: `f` is 'static, so it borrows nothing that could end before the task.
        unsafe { self.spawn_unchecked(f) }
    }

    /// [`Builder::spawn`] for a closure that may borrow from its caller.
    ///
    /// # Safety
    ///
    /// Everything `f` borrows must outlive the task: the caller must make sure the
    /// task has ended (or been force-unwound) before any such borrow ends. The
    /// scoped task group does so by joining every member before it returns.
    // SAFETY: callers must keep the contract above; its one `unsafe`
    // block (below) relies on exactly that contract.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn spawn_unchecked<'a, F, T>(self, f: F) -> Result<Task<T>>
    where
        F: FnOnce() -> T + 'a,
        T: 'static,
    {
        let stack_size = match self.stack_size {
            None => None,
            Some(bytes) => Some(crate::stack::checked_size(bytes)?),
        };
        let opts = SpawnOptions {
            name: self.name,
            daemon: self.daemon,
            stack_size,
        };
        // SAFETY: forwarded from this function's contract.
        let any = unsafe { trap::spawn_unchecked(opts, f) }?;
        Ok(Task {
            any: TaskRef::from_rc(any),
            value: PhantomData,
        })
    }
}

/// Spawns `f` as a new task and returns its handle. Never switches: the new task
/// goes to the back of the ready queue and the caller runs on.
///
/// The closure must be `'static` but need not be `Send`: tasks never leave
/// their kernel's thread, so `Rc` and `RefCell` work across tasks.
///
/// # Panics
///
/// Outside a curio task, or if no stack could be mapped (see [`Builder::spawn`]).
///
/// # Example
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// curio::run(|| {
///     let log = Rc::new(RefCell::new(Vec::new()));
///     let l = log.clone();
///     let kid = curio::spawn(move || l.borrow_mut().push("kid"));
///     log.borrow_mut().push("parent"); // spawn did not switch
///     kid.join().unwrap();
///     assert_eq!(*log.borrow(), ["parent", "kid"]);
/// });
/// ```
pub fn spawn<F, T>(f: F) -> Task<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    match Builder::new().spawn(f) {
        Ok(t) => t,
        Err(e) => panic!("curio::spawn: could not allocate a task stack: {e}"),
    }
}

/// The task calling this.
///
/// # Panics
///
/// Outside a curio task.
pub fn current_task() -> TaskRef {
    TaskRef::from_rc(trap::current())
}

/// Moves the caller to the back of the ready queue, letting every other ready
/// task run first (Curio's `sleep(0)`).
///
/// # Cancellation
///
/// A cancel point: a pending cancellation or timeout is returned instead of yielding.
#[inline(always)] // switch from the caller's frame: see arch-notes/trap-flow.md
pub fn yield_now() -> Result<()> {
    trap::yield_now()
}

// ---------------------------------------------------------------------------
// Task-local storage
// ---------------------------------------------------------------------------

/// A value private to each task, inherited by a child as a copy of the parent's
/// at spawn time. Declare one as a `static`.
///
/// ```
/// use curio::TaskLocal;
/// static REQUEST: TaskLocal<u32> = TaskLocal::new(|| 0);
///
/// curio::run(|| {
///     REQUEST.set(7);
///     let kid = curio::spawn(|| {
///         let inherited = REQUEST.get();
///         REQUEST.set(99); // changes the kid's copy only
///         inherited
///     });
///     assert_eq!(kid.join().unwrap(), 7);
///     assert_eq!(REQUEST.get(), 7);
/// });
/// ```
pub struct TaskLocal<T: 'static> {
    init: fn() -> T,
}

impl<T: 'static> fmt::Debug for TaskLocal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskLocal")
            .field("type", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<T: Clone + 'static> TaskLocal<T> {
    /// A task-local whose value starts as `init()` in a task that never set it.
    pub const fn new(init: fn() -> T) -> TaskLocal<T> {
        TaskLocal { init }
    }

    fn key(&'static self) -> usize {
        self as *const Self as usize
    }

    /// The calling task's value (a clone).
    ///
    /// # Panics
    ///
    /// Outside a curio task.
    pub fn get(&'static self) -> T {
        let key = self.key();
        trap::with_current_record(|h| h.local_get::<T>(key)).unwrap_or_else(self.init)
    }

    /// Sets the calling task's value; returns the previous one.
    pub fn set(&'static self, value: T) -> T {
        let key = self.key();
        trap::with_current_record(|h| h.local_set(key, value)).unwrap_or_else(self.init)
    }
}
