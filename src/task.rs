//! Tasks: spawning, handles, states, the current task, crash reports and task-local storage.
//!
//! # Invariants
//!
//! - A task's header is shared by the kernel (through its slot) and by every
//!   handle; only the kernel changes scheduling fields (state, wait, timeout).
//! - A task's closure runs inside `catch_unwind` on its own stack: a panic ends
//!   that task only. It is reported to stderr as a task crash and handed to the
//!   joiner as [`ErrorKind::TaskPanicked`].
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

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::ops::Deref;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Once;

use crate::error::{Error, ErrorKind, Result};
use crate::kernel;
use crate::trap::{self, TaskCoroutine};
use crate::wait::WaitQueue;

/// What a task is doing, with Curio's state names (shown by `Display`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// In the ready queue.
    Ready,
    /// Running now.
    Running,
    /// In `sleep`.
    TimeSleep,
    /// Waiting for another task to end (`join`, `wait`, `cancel`).
    TaskJoin,
    /// Waiting on an event.
    EventWait,
    /// Waiting to acquire a lock.
    LockAcquire,
    /// Waiting to acquire a semaphore.
    SemaAcquire,
    /// Waiting on a condition.
    CondWait,
    /// Waiting in `Queue::get`.
    QueueGet,
    /// Waiting in `Queue::put`.
    QueuePut,
    /// Waiting in `Queue::join`.
    QueueJoin,
    /// Waiting for work done elsewhere (a thread, a process).
    FutureWait,
    /// Waiting for a file descriptor to become readable.
    ReadWait,
    /// Waiting for a file descriptor to become writable.
    WriteWait,
    /// Waiting for a signal.
    SignalWait,
    /// Waiting in a task group for a member to finish.
    GroupWait,
    /// Parked on some other primitive.
    Suspend,
    /// Finished.
    Terminated,
}

impl State {
    /// Curio's name for the state (`"TIME_SLEEP"` …).
    pub fn name(self) -> &'static str {
        match self {
            State::Ready => "READY",
            State::Running => "RUNNING",
            State::TimeSleep => "TIME_SLEEP",
            State::TaskJoin => "TASK_JOIN",
            State::EventWait => "EVENT_WAIT",
            State::LockAcquire => "LOCK_ACQUIRE",
            State::SemaAcquire => "SEMA_ACQUIRE",
            State::CondWait => "COND_WAIT",
            State::QueueGet => "QUEUE_GET",
            State::QueuePut => "QUEUE_PUT",
            State::QueueJoin => "QUEUE_JOIN",
            State::FutureWait => "FUTURE_WAIT",
            State::ReadWait => "READ_WAIT",
            State::WriteWait => "WRITE_WAIT",
            State::SignalWait => "SIGNAL_WAIT",
            State::GroupWait => "GROUP_WAIT",
            State::Suspend => "SUSPEND",
            State::Terminated => "TERMINATED",
        }
    }

    /// Waits that something outside the kernel loop (the poller, another
    /// thread) may end; the kernel cannot call these a deadlock.
    pub(crate) fn is_external(self) -> bool {
        matches!(
            self,
            State::FutureWait | State::ReadWait | State::WriteWait | State::SignalWait
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------
// The shared header
// ---------------------------------------------------------------------------

/// The group a task belongs to, as the task sees it (implemented by the task
/// group; the kernel only calls `member_finished`).
pub(crate) trait GroupLink {
    /// The member `id` has terminated (called by the kernel, once).
    fn member_finished(&self, id: u64);
    /// The member `id` was joined through its own handle: it leaves the group.
    fn discard(&self, id: u64);
}

/// Everything about a task that is not its result: identity, scheduling state,
/// cancellation and timeouts. Shared by the kernel and the handles.
pub(crate) struct Header {
    pub(crate) id: u64,
    pub(crate) parent: Option<u64>,
    pub(crate) name: Cow<'static, str>,
    pub(crate) daemon: bool,
    pub(crate) is_main: bool,
    pub(crate) stack_size: usize,
    /// Kernel slot, valid while the task lives.
    pub(crate) slot: Cell<u32>,
    pub(crate) state: Cell<State>,
    pub(crate) cycles: Cell<u64>,
    /// Cancellation was requested (Curio's `cancelled`).
    pub(crate) cancelled: Cell<bool>,
    pub(crate) terminated: Cell<bool>,
    /// Cancellation or timeout waiting for the next unmasked cancel point.
    pub(crate) pending: Cell<Option<Error>>,
    /// Depth of `disable_cancellation` blocks.
    pub(crate) mask: Cell<u32>,
    /// Id of the wait the task is parked in; 0 when not parked.
    pub(crate) wait_id: Cell<u64>,
    /// The current wait can be ended from outside the kernel loop.
    pub(crate) external: Cell<bool>,
    /// For reports: the task this one joins.
    pub(crate) join_target: Cell<u64>,
    /// The armed timeout deadline (kernel ticks).
    pub(crate) timeout: Cell<Option<u64>>,
    /// Deadlines of the open timeout blocks, outermost first (`u64::MAX`: none).
    pub(crate) deadlines: RefCell<Vec<u64>>,
    /// How many of those blocks were open when the task was cancelled: their
    /// deadlines are never armed again (cleanup is not hit by them).
    pub(crate) cancel_depth: Cell<usize>,
    pub(crate) joiners: RefCell<WaitQueue>,
    pub(crate) locals: RefCell<Locals>,
    /// The task group it belongs to, if any.
    pub(crate) group: RefCell<Option<std::rc::Weak<dyn GroupLink>>>,
    pub(crate) panic_message: RefCell<Option<String>>,
    /// The task's coroutine, resumed in place by the kernel; taken out when it ends.
    pub(crate) coro: RefCell<Option<TaskCoroutine>>,
    /// The error the next resume delivers (`None`: `Ok`).
    pub(crate) reply: Cell<Option<Error>>,
    /// The task's corosensei yielder, recorded when it first runs.
    pub(crate) yielder: Cell<*const ()>,
    /// The lowest address of the task's stack guard page (0 before it has a stack).
    pub(crate) guard: Cell<usize>,
    /// Usable bytes of its stack.
    pub(crate) stack_bytes: Cell<usize>,
}

impl Header {
    pub(crate) fn new(
        id: u64,
        parent: Option<u64>,
        name: Cow<'static, str>,
        daemon: bool,
        stack_size: usize,
        is_main: bool,
    ) -> Header {
        Header {
            id,
            parent,
            name,
            daemon,
            is_main,
            stack_size,
            slot: Cell::new(u32::MAX),
            state: Cell::new(State::Ready),
            cycles: Cell::new(0),
            cancelled: Cell::new(false),
            terminated: Cell::new(false),
            pending: Cell::new(None),
            mask: Cell::new(0),
            wait_id: Cell::new(0),
            external: Cell::new(false),
            join_target: Cell::new(0),
            timeout: Cell::new(None),
            deadlines: RefCell::new(Vec::new()),
            cancel_depth: Cell::new(0),
            joiners: RefCell::new(WaitQueue::new()),
            locals: RefCell::new(Locals::default()),
            group: RefCell::new(None),
            panic_message: RefCell::new(None),
            coro: RefCell::new(None),
            reply: Cell::new(None),
            yielder: Cell::new(std::ptr::null()),
            guard: Cell::new(0),
            stack_bytes: Cell::new(0),
        }
    }

    /// `Task(id=3, name='kid', state=TIME_SLEEP)`, as Curio prints tasks.
    pub(crate) fn describe(&self) -> String {
        format!(
            "Task(id={}, name='{}', state={})",
            self.id,
            self.name,
            self.state.get()
        )
    }
}

/// A task's header and its result slot, in one allocation.
///
/// `S` is the slot: [`ResultSlot<T>`] in a typed [`TaskCell<T>`], and `dyn
/// AnySlot` in the [`AnyTask`] the kernel holds. The header comes first and is
/// sized, so reaching it from an `AnyTask` is a plain field access, not a
/// virtual call.
pub(crate) struct TaskBox<S: ?Sized + AnySlot> {
    pub(crate) header: Header,
    result: S,
}

/// Where a task's closure leaves its return value (or its panic).
pub(crate) type ResultSlot<T> = RefCell<Option<std::thread::Result<T>>>;

/// A task whose result type is known.
pub(crate) type TaskCell<T> = TaskBox<ResultSlot<T>>;

/// Any task, as the kernel holds it.
pub(crate) type AnyTask = TaskBox<dyn AnySlot>;

/// Erases a task's result type (see [`TaskBox`]).
pub(crate) trait AnySlot {
    /// Drops the value or panic payload left in the slot, if any; returns the
    /// message of a panic that dropping it raised.
    fn drop_value(&mut self) -> Option<String>;
}

impl<T> AnySlot for ResultSlot<T> {
    #[inline]
    fn drop_value(&mut self) -> Option<String> {
        let slot = self.get_mut();
        if slot.is_none() {
            return None; // joined: the usual case
        }
        drop_quietly(slot.take())
    }
}

/// Drops `value`, catching a panic its destructor raises; returns that panic's message.
fn drop_quietly<V>(value: V) -> Option<String> {
    panic::catch_unwind(AssertUnwindSafe(move || drop(value)))
        .err()
        .map(|payload| panic_message(&*payload))
}

impl<S: ?Sized + AnySlot> Drop for TaskBox<S> {
    /// A task's result and its task-local values are user data whose
    /// destructors may panic, and the last reference to a task is often
    /// dropped by the kernel itself (when a detached task ends). Such a panic
    /// is reported, never propagated: it must not unwind the kernel loop.
    #[inline]
    fn drop(&mut self) {
        let value_panic = self.result.drop_value();
        if value_panic.is_some() || !self.header.locals.get_mut().values.is_empty() {
            drop_task_data(&mut self.header, value_panic);
        }
    }
}

/// The slow part of dropping a task: report a panic raised by dropping its
/// value, then drop its task-locals one by one, reporting theirs.
#[cold]
#[inline(never)]
fn drop_task_data(h: &mut Header, value_panic: Option<String>) {
    if let Some(msg) = value_panic {
        eprintln!(
            "curio: dropping the value returned by task {} ('{}') panicked: {msg}",
            h.id, h.name
        );
    }
    let locals = std::mem::take(&mut h.locals.get_mut().values);
    for (_, value) in locals {
        if let Some(msg) = drop_quietly(value) {
            eprintln!(
                "curio: dropping a task-local value of task {} ('{}') panicked: {msg}",
                h.id, h.name
            );
        }
    }
}

impl<S: ?Sized + AnySlot> TaskBox<S> {
    /// The task's header.
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        &self.header
    }
}

impl<T> TaskCell<T> {
    pub(crate) fn new(header: Header) -> Self {
        TaskCell {
            header,
            result: RefCell::new(None),
        }
    }

    /// Takes the result of a terminated task.
    pub(crate) fn take_result(&self) -> Result<T> {
        match self.result.borrow_mut().take() {
            Some(Ok(v)) => Ok(v),
            Some(Err(payload)) => {
                let msg = panic_message(&*payload);
                *self.header.panic_message.borrow_mut() = Some(msg.clone());
                Err(Error::new(ErrorKind::TaskPanicked, msg))
            }
            None => match &*self.header.panic_message.borrow() {
                Some(msg) => Err(Error::new(ErrorKind::TaskPanicked, msg.clone())),
                None if self.header.terminated.get() => Err(Error::new(ErrorKind::ResultTaken, "")),
                None => Err(Error::usage("the task has not finished")),
            },
        }
    }

    /// True if the task ended by panicking (or its result was taken after it did).
    pub(crate) fn panicked(&self) -> bool {
        self.panic_text().is_some()
    }

    /// The panic message, if the task panicked.
    pub(crate) fn panic_text(&self) -> Option<String> {
        match &*self.result.borrow() {
            Some(Err(payload)) => Some(panic_message(&**payload)),
            _ => self.header.panic_message.borrow().clone(),
        }
    }

    /// Looks at the result without taking it.
    pub(crate) fn with_result<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        match &*self.result.borrow() {
            Some(Ok(v)) => f(Some(v)),
            _ => f(None),
        }
    }
}

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
    task: Rc<AnyTask>,
}

impl TaskRef {
    pub(crate) fn from_rc(task: Rc<AnyTask>) -> TaskRef {
        TaskRef { task }
    }

    pub(crate) fn header(&self) -> &Header {
        self.task.header()
    }

    /// The task's id: 1 for main, then increasing in spawn order.
    pub fn id(&self) -> u64 {
        self.header().id
    }

    /// The id of the task that spawned it (`None` for main).
    pub fn parent_id(&self) -> Option<u64> {
        self.header().parent
    }

    /// Its name: the builder's, or the type name of the closure it runs.
    pub fn name(&self) -> &str {
        &self.header().name
    }

    /// What it is doing now.
    pub fn state(&self) -> State {
        self.header().state.get()
    }

    /// How many times the kernel has resumed it.
    pub fn cycles(&self) -> u64 {
        self.header().cycles.get()
    }

    /// True for a daemon task (a background task whose result nobody collects).
    pub fn is_daemon(&self) -> bool {
        self.header().daemon
    }

    /// True once it has finished.
    pub fn is_terminated(&self) -> bool {
        self.header().terminated.get()
    }

    /// True once cancellation has been requested, whether or not the task then
    /// ended because of it.
    pub fn is_cancelled(&self) -> bool {
        self.header().cancelled.get()
    }

    /// Waits until the task has finished, without taking its result.
    ///
    /// # Cancellation
    ///
    /// A cancel point (unless the task has already finished). If the caller is
    /// cancelled or times out here, it stops waiting; the task runs on, untouched.
    #[inline(always)] // the switch happens in the caller's frame (arch-notes/trap-flow.md)
    pub fn wait(&self) -> Result<()> {
        // Re-checked after every wake-up rather than trusting it: the scoped
        // task group's soundness rests on this returning only once the task
        // has ended (arch-notes/task-groups.md).
        while !self.header().terminated.get() {
            let r = kernel::park(State::TaskJoin, |core, w| self.add_joiner(core, w));
            trap::with_current(|_, me| me.join_target.set(0));
            r?;
        }
        Ok(())
    }

    /// Takes a joined task out of its task group, as Curio's `join` does: the
    /// group's results, completion order and wait policy no longer see it.
    #[inline]
    pub(crate) fn leave_group(&self) {
        if self.header().group.borrow().is_some() {
            self.leave_group_slow();
        }
    }

    #[inline(never)]
    fn leave_group_slow(&self) {
        let link = self.header().group.borrow_mut().take();
        if let Some(group) = link.and_then(|w| w.upgrade()) {
            group.discard(self.id());
        }
    }

    /// Registers the running task as a joiner of this one (before the switch,
    /// so not inlined into `wait`).
    #[inline(never)]
    fn add_joiner(&self, core: &kernel::Core, w: crate::wait::Waiter) {
        let target = self.header();
        trap::with_current(|_, me| me.join_target.set(target.id));
        target.joiners.borrow_mut().push(w, |w| core.is_waiting(w));
    }

    /// Requests cancellation and returns at once. The task receives
    /// [`ErrorKind::Cancelled`] at its current or next cancel point (once only;
    /// later requests do nothing). Its armed timeout is cleared. A task may
    /// cancel itself this way.
    pub fn cancel_nowait(&self) {
        trap::with_core(|core| core.cancel(self.header()));
    }

    /// Requests cancellation, then waits until the task has finished.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] if a task cancels itself this way (use
    /// [`TaskRef::cancel_nowait`]).
    ///
    /// # Cancellation
    ///
    /// The request is made at once and is not withdrawn. The wait for the task to
    /// finish is a cancel point: a caller cancelled or timed out there returns the
    /// error while the task goes on with its cleanup.
    pub fn cancel(&self) -> Result<()> {
        let me = trap::with_current(|_, h| h.id);
        if me == self.id() {
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
        f.write_str(&self.header().describe())
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
    cell: Rc<TaskCell<T>>,
}

impl<T> Task<T> {
    /// Waits for the task to finish and takes its value.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::TaskPanicked`] if it panicked (the message is the panic's).
    /// - [`ErrorKind::ResultTaken`] if an earlier `join` took the value.
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
        self.cell.take_result()
    }

    /// The untyped handle.
    pub fn as_task_ref(&self) -> &TaskRef {
        &self.any
    }

    pub(crate) fn cell(&self) -> &Rc<TaskCell<T>> {
        &self.cell
    }
}

impl<T> Clone for Task<T> {
    /// Another handle to the same task (the value can still be joined only once).
    fn clone(&self) -> Self {
        Task {
            any: self.any.clone(),
            cell: self.cell.clone(),
        }
    }
}

impl<T> Deref for Task<T> {
    type Target = TaskRef;
    fn deref(&self) -> &TaskRef {
        &self.any
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
    /// or [`Builder::spawn`] fails with `InvalidInput`.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Spawns `f` as a new task at the back of the ready queue. Never switches:
    /// the caller runs on until it blocks.
    ///
    /// # Errors
    ///
    /// - `InvalidInput` for a stack size out of range ([`Builder::stack_size`]).
    /// - `OutOfMemory` (or the system's error) if no stack could be mapped; the
    ///   message says what ran out and what to do (for example, on kernels
    ///   without `MADV_GUARD_INSTALL`, that `vm.max_map_count` is nearly used
    ///   up). The program goes on; the task was not created.
    ///
    /// # Panics
    ///
    /// Outside a curio task.
    #[allow(unsafe_code)]
    pub fn spawn<F, T>(self, f: F) -> io::Result<Task<T>>
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
    pub(crate) unsafe fn spawn_unchecked<'a, F, T>(self, f: F) -> io::Result<Task<T>>
    where
        F: FnOnce() -> T + 'a,
        T: 'static,
    {
        let cell = self.make_cell::<F, T>()?;
        let hp: *const Header = &cell.header;
        let c2 = cell.clone();
        let body = move || {
            let r = panic::catch_unwind(AssertUnwindSafe(f));
            if let Err(payload) = &r {
                report_crash(&c2.header, &**payload);
            }
            *c2.result.borrow_mut() = Some(r);
        };
        trap::with_core(|core| {
            core.spawn(cell.clone(), |st| {
                // SAFETY: the borrows of `body` are those of `f`, which the caller
                // guarantees outlive the task; the header is kept alive by the
                // kernel slot's Rc until the coroutine has returned.
                unsafe { trap::new_coroutine_unchecked(st, hp, body) }
            })
        })
        .map_err(io::Error::from)?;
        Ok(Task {
            any: TaskRef::from_rc(cell.clone()),
            cell,
        })
    }

    pub(crate) fn make_cell<F, T>(&self) -> io::Result<Rc<TaskCell<T>>> {
        trap::with_current(|core, parent| {
            let name: Cow<'static, str> = match &self.name {
                Some(n) => Cow::Owned(n.clone()),
                None => Cow::Borrowed(std::any::type_name::<F>()),
            };
            let size = match self.stack_size {
                None => core.default_stack_size(),
                Some(bytes) => crate::stack::checked_size(bytes)?,
            };
            // Built in place: `Rc::new(value)` builds the 400-byte cell on the
            // stack and copies it into the allocation, about 6% of a spawn
            // (arch-notes/benchmarks.md).
            let mut cell = Rc::<TaskCell<T>>::new_uninit();
            Rc::get_mut(&mut cell)
                .expect("a new Rc has no other owner")
                .write(TaskCell::new(Header::new(
                    core.next_task_id(),
                    Some(parent.id),
                    name,
                    self.daemon,
                    size,
                    false,
                )));
            // SAFETY: the `write` just above initialised the cell.
            #[allow(unsafe_code)]
            let cell = unsafe { cell.assume_init() };
            if !parent.locals.borrow().values.is_empty() {
                *cell.header.locals.borrow_mut() = parent.locals.borrow().inherit();
            }
            Ok(cell)
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
    trap::with_current(|core, h| {
        TaskRef::from_rc(
            core.header_at(h.slot.get())
                .expect("the running task has a slot"),
        )
    })
}

/// Moves the caller to the back of the ready queue, letting every other ready
/// task run first (Curio's `sleep(0)`).
///
/// # Cancellation
///
/// A cancel point: a pending cancellation or timeout is returned instead of yielding.
#[inline(always)] // switch from the caller's frame: see arch-notes/trap-flow.md
pub fn yield_now() -> Result<()> {
    kernel::yield_now()
}

// ---------------------------------------------------------------------------
// Crash reports
// ---------------------------------------------------------------------------

/// A panic in a task, captured by the hook for the crash report.
struct Captured {
    task: u64,
    location: String,
    message: String,
    backtrace: Backtrace,
}

/// How many captured panics a thread holds at most (older ones are dropped):
/// the one that is unwinding, one raised by a destructor meanwhile, and a few
/// that user code caught.
const CAPTURED_MAX: usize = 4;

thread_local! {
    /// Panics of tasks on this thread that have not reached the task boundary
    /// yet, oldest first.
    static LAST_PANIC: RefCell<Vec<Captured>> = const { RefCell::new(Vec::new()) };
}

/// What the runtime passes to the hook when a destructor panics while a panic
/// unwinds; the process aborts right after the hook returns.
const NESTED_PANIC: &str = "panic in a destructor during cleanup";

/// Installs (once per process) a panic hook for panics inside curio tasks.
///
/// A panic that will unwind to the task boundary is kept quiet at the panic
/// site: the kernel reports it there, once, as a task crash naming the task.
/// A panic that cannot get there is reported by the hook itself, at once, since
/// the process is about to abort: with `panic = "abort"`, and when a destructor
/// panics while a panic unwinds (the runtime then aborts; both panics are
/// reported). Panics elsewhere, and in main (which resumes out of `run`), go to
/// the hook that was installed before.
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let in_plain_task = trap::in_task() && !trap::with_current(|_, h| h.is_main);
            if !in_plain_task {
                return previous(info);
            }
            let task = trap::with_current(|_, h| h.id);
            let message = panic_message(info.payload());
            let captured = Captured {
                task,
                location: info.location().map(|l| l.to_string()).unwrap_or_default(),
                message,
                backtrace: Backtrace::capture(),
            };
            if cfg!(panic = "abort") {
                // Nothing will reach the task boundary: report now.
                let report = trap::with_current(|_, h| crash_report(h, &captured));
                eprintln!("{report}");
                return;
            }
            if captured.message == NESTED_PANIC {
                // The process aborts after this hook: report what this task's
                // unwinding was about, and the destructor's own panic.
                let held: Vec<Captured> = LAST_PANIC.with(|p| std::mem::take(&mut *p.borrow_mut()));
                let mut report = String::new();
                trap::with_current(|_, h| {
                    for c in held.iter().filter(|c| c.task == task) {
                        report.push_str(&crash_report(h, c));
                        report.push('\n');
                    }
                    report.push_str(&format!(
                        "curio: a destructor panicked while task {} ('{}') was unwinding; \
                         the process aborts",
                        h.id, h.name
                    ));
                });
                eprintln!("{report}");
                return;
            }
            LAST_PANIC.with(|p| {
                let mut held = p.borrow_mut();
                held.retain(|c| c.task == task);
                if held.len() == CAPTURED_MAX {
                    held.remove(0);
                }
                held.push(captured);
            });
        }));
    });
}

/// `curio: task crash: Task(id=3, name='kid', state=RUNNING) panicked at src/x.rs:9:5:`
/// followed by the message and the backtrace (or how to get one).
fn crash_report(h: &Header, c: &Captured) -> String {
    let mut report = format!(
        "curio: task crash: {} panicked at {}:\n{}",
        h.describe(),
        c.location,
        c.message
    );
    match c.backtrace.status() {
        BacktraceStatus::Captured => {
            report.push_str(&format!("\nstack backtrace:\n{}", c.backtrace))
        }
        _ => report.push_str(
            "\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        ),
    }
    report
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

fn report_crash(h: &Header, payload: &(dyn Any + Send)) {
    // The panic that reached the boundary is the newest this task raised.
    let captured = LAST_PANIC.with(|p| {
        let mut held = p.borrow_mut();
        let last = held
            .iter()
            .rposition(|c| c.task == h.id)
            .map(|i| held.remove(i));
        held.retain(|c| c.task != h.id);
        last
    });
    if trap::with_core(|core| core.is_unwinding()) {
        return; // a forced unwind at shutdown, not a crash
    }
    let report = match &captured {
        Some(c) => crash_report(h, c),
        None => format!(
            "curio: task crash: {} panicked:\n{}",
            h.describe(),
            panic_message(payload)
        ),
    };
    eprintln!("{report}");
}

// ---------------------------------------------------------------------------
// Task-local storage
// ---------------------------------------------------------------------------

trait LocalValue: Any {
    fn clone_box(&self) -> Box<dyn LocalValue>;
    fn as_any(&self) -> &dyn Any;
}

impl<T: Clone + 'static> LocalValue for T {
    fn clone_box(&self) -> Box<dyn LocalValue> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The task-local values of one task.
#[derive(Default)]
pub(crate) struct Locals {
    values: Vec<(usize, Box<dyn LocalValue>)>,
}

impl Locals {
    /// A copy for a child task (copy-on-spawn inheritance).
    fn inherit(&self) -> Locals {
        if self.values.is_empty() {
            return Locals::default();
        }
        Locals {
            values: self
                .values
                .iter()
                .map(|(k, v)| (*k, (**v).clone_box()))
                .collect(),
        }
    }
}

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
        let found = trap::with_current(|_, h| {
            let locals = h.locals.borrow();
            locals
                .values
                .iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| (**v).as_any().downcast_ref::<T>().cloned())
        });
        found.unwrap_or_else(self.init)
    }

    /// Sets the calling task's value; returns the previous one.
    pub fn set(&'static self, value: T) -> T {
        let key = self.key();
        let old = trap::with_current(|_, h| {
            let mut locals = h.locals.borrow_mut();
            match locals.values.iter_mut().find(|(k, _)| *k == key) {
                Some((_, slot)) => {
                    let old = std::mem::replace(slot, Box::new(value));
                    (*old).as_any().downcast_ref::<T>().cloned()
                }
                None => {
                    locals.values.push((key, Box::new(value)));
                    None
                }
            }
        });
        old.unwrap_or_else(self.init)
    }
}
