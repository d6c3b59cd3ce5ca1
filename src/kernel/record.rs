//! The task record: what the kernel knows of one task, and the one owner of it.
//!
//! A task is one allocation, a [`TaskBox`]: its [`TaskRecord`] (identity,
//! scheduling state, the way to its coroutine, what few tasks use in a cold
//! part) and the slot its closure leaves its value in, laid out so that each
//! phase of a task's life touches as few cache lines as it can (see
//! [`TaskRecord`]). The kernel and every handle hold it type-erased
//! ([`AnyTask`]); a typed handle reads its value through [`AnyTask::typed`].
//!
//! # Invariants
//!
//! - The record's fields are private. What changes scheduling (state, the
//!   current wait, cancellation, timeouts, the coroutine, the reply) is done by
//!   named operations visible to the kernel only (`pub(super)`); the rest of
//!   the crate reads the record through getters and changes only what is not
//!   scheduling state: task-local values, the task-group link, the panic
//!   message kept for a second `join`.
//! - A task is *parked* exactly when its wait id is non-zero; every way a wait
//!   ends clears it first, so each wait ends once.
//! - Dropping a task's value or its task-locals never unwinds: a panic there is
//!   reported, because the kernel itself often drops the last reference.
//!
//! # Example
//!
//! ```text
//! kernel:     record.begin_wait(id, State::EventWait, false)  // parked
//! task side:  record.state() == State::EventWait              // read only
//! kernel:     record.end_wait()                               // woken, once
//! ```

use std::any::Any;
use std::borrow::Cow;
use std::cell::{Cell, OnceCell, RefCell};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Weak;

use super::switch::{Body, TaskBody, TaskCoroutine};
use crate::deadlines::Deadlines;
use crate::error::{Error, ErrorKind, Result};
use crate::stack::PooledStack;
use crate::wait::{WaitQueue, Waiter};

// ---------------------------------------------------------------------------
// States
// ---------------------------------------------------------------------------

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
    /// Every state (for turning a `State as u8` back into a state).
    pub(crate) const ALL: [State; 18] = [
        State::Ready,
        State::Running,
        State::TimeSleep,
        State::TaskJoin,
        State::EventWait,
        State::LockAcquire,
        State::SemaAcquire,
        State::CondWait,
        State::QueueGet,
        State::QueuePut,
        State::QueueJoin,
        State::FutureWait,
        State::ReadWait,
        State::WriteWait,
        State::SignalWait,
        State::GroupWait,
        State::Suspend,
        State::Terminated,
    ];

    /// Curio's name for the state (`"TIME_SLEEP"` …).
    #[inline]
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
    #[inline]
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
// The record
// ---------------------------------------------------------------------------

/// The group a task belongs to, as the task sees it (implemented by the task
/// group; the kernel only calls `member_finished`).
pub(crate) trait GroupLink {
    /// The member `id` has terminated (called by the kernel, once).
    fn member_finished(&self, id: u64);
    /// The member `id` was joined through its own handle: it leaves the group.
    fn discard(&self, id: u64);
}

/// Everything about a task that is not its result (see the module docs).
///
/// Discussion: every task carries one, and a batch of 10 000 tasks spawned
/// together, run, then joined touches each box three times, 10 000 boxes
/// apart, so every cache line a phase touches is a miss once the batch
/// outgrows the cache. The fields are laid out by who touches them
/// (`repr(C)`, the box line-aligned, `boxes.rs`): the first line is the
/// task's identity and its waits (the first joiner among them), written at
/// spawn and then read only by tasks that wait, by a task's end when a
/// joiner waits ([`HAS_JOINER`]) and by reports; the second (from 64) is
/// what both running and joining it touch, and the result slot follows it
/// on the same line. What a task needs only while it has a stack (its
/// coroutine, yielder, guard page, reply) is a [`RunState`] from the
/// kernel's pool, still in cache when it is reused; what few tasks use
/// (cancellation and timeouts, task-locals, a group, an owned name, a
/// second joiner, a panic's message) lives in a box made on first use. A
/// task whose closure and value are small is two lines: spawn writes two,
/// its first run touches one, its join the same one
/// (`arch-notes/benchmarks.md`, "Task boxes of two lines"; the layout is
/// checked in the tests below).
#[repr(C)]
pub(crate) struct TaskRecord {
    // ----- the first line: identity and waits --------------------------------
    id: u64,
    /// The spawning task's id; 0 for main.
    parent: u64,
    /// Its name, unless an owned one is kept in the cold part.
    name: &'static str,
    /// Id of the wait the task is parked in; 0 when not parked.
    wait_id: Cell<u64>,
    /// Usable bytes of the stack it asked for (checked: at most 1 GiB).
    stack_size: u32,
    daemon: bool,
    is_main: bool,
    /// The current wait can be ended from outside the kernel loop.
    external: Cell<bool>,
    /// The state its last slice ended in, kept by a watched kernel only (what
    /// a long block was resumed from); `READY` before its first slice.
    suspended_in: Cell<State>,
    /// The first task waiting for this one to end (`wait_id` 0: none; the
    /// flag [`HAS_JOINER`] says so on the hot line); the others wait in the
    /// cold part, behind it.
    joiner: Cell<Waiter>,
    // ----- the second line: running and joining, then the result slot ----------
    /// The handles ([`TaskRc`](super::boxes::TaskRc)) on the box this record
    /// is in. A freed box is linked through this word (`boxes::LINK_AT`).
    refs: Cell<u32>,
    /// Kernel slot, valid while the task lives.
    slot: Cell<u32>,
    state: Cell<State>,
    /// [`CANCELLED`], [`TERMINATED`], [`JOINED`], [`HAS_JOINER`], [`STARTED`].
    flags: Cell<u8>,
    /// Slices run (wraps after 2^32; reports and the watchdog only).
    cycles: Cell<u32>,
    /// What the task needs while it has a stack (its coroutine, yielder,
    /// guard page, reply): a box from the kernel's pool, owned by the record
    /// from the task's first run (or its spawn, for a stack size of its own)
    /// until `Core::finish` gives it back. Null before and after.
    run: Cell<*mut RunState>,
    /// What few tasks use, made on first use.
    cold: OnceCell<Box<Cold>>,
}

/// Cancellation was requested (Curio's `cancelled`).
const CANCELLED: u8 = 1;
/// The task has ended.
const TERMINATED: u8 = 2;
/// Its value (or panic) has been taken by `join` or `result` (Curio's `joined`).
const JOINED: u8 = 4;
/// A task waits in [`TaskRecord::joiner`].
const HAS_JOINER: u8 = 8;
/// The task has been given its stack (at its first run, or at spawn for a
/// stack size of its own); with no [`RunState`] it has ended, or is being
/// torn down.
const STARTED: u8 = 16;

/// What a task needs only while it has a stack, in a box of its own that the
/// kernel takes from its pool when the task gets its stack and gives back
/// when it ends (`Core::start`, `Core::finish`): the box, reused most
/// recently freed first, is still in cache, and the task box keeps to the
/// two lines spawn, the first run and the join must touch.
pub(crate) struct RunState {
    /// The task's coroutine, resumed in place by the kernel; taken out when
    /// it ends (or is force-unwound).
    pub(super) coro: RefCell<Option<TaskCoroutine>>,
    /// The task's corosensei yielder, recorded when it first runs; null while
    /// the task cannot switch (not started yet, or being torn down).
    yielder: Cell<*const ()>,
    /// The lowest address of the task's stack guard page.
    guard: Cell<usize>,
    /// The error the next resume delivers (`None`: `Ok`).
    reply: Cell<Option<Error>>,
    /// For reports: the task this one joins, 0 if none.
    join_target: Cell<u64>,
}

impl RunState {
    /// An empty one, for the kernel's pool.
    pub(crate) fn new() -> RunState {
        RunState {
            coro: RefCell::new(None),
            yielder: Cell::new(std::ptr::null()),
            guard: Cell::new(0),
            reply: Cell::new(None),
            join_target: Cell::new(0),
        }
    }

    /// Fills an empty one for a task whose coroutine is `coro`, on the stack
    /// whose guard page starts at `guard`.
    pub(crate) fn fill(&mut self, coro: TaskCoroutine, guard: usize) {
        *self.coro.get_mut() = Some(coro);
        self.yielder.set(std::ptr::null());
        self.guard.set(guard);
        self.reply.set(None);
        self.join_target.set(0);
    }

    /// The task's yielder; null while the task cannot switch.
    #[inline(always)]
    pub(super) fn yielder(&self) -> *const () {
        self.yielder.get()
    }

    /// The lowest address of the task's stack guard page.
    #[inline(always)]
    pub(super) fn guard(&self) -> usize {
        self.guard.get()
    }

    /// Takes the error the kernel left for this resume (`None`: `Ok`).
    #[inline(always)]
    pub(super) fn take_reply(&self) -> Option<Error> {
        self.reply.take()
    }

    /// Empties it for the pool: takes its coroutine.
    pub(crate) fn empty(&mut self) -> Option<TaskCoroutine> {
        self.reply.set(None);
        self.coro.get_mut().take()
    }
}

/// The parts of a record most tasks never use.
#[derive(Default)]
struct Cold {
    /// The pending error, the mask, the open timeout blocks.
    deadlines: Deadlines,
    /// The joiners after [`TaskRecord::joiner`], in order.
    joiners: RefCell<WaitQueue>,
    /// A name given as a `String`.
    name: Option<String>,
    locals: RefCell<Locals>,
    group: RefCell<Option<Weak<dyn GroupLink>>>,
    panic_message: RefCell<Option<String>>,
}

/// What a new record is made of.
pub(crate) struct Identity {
    pub(crate) id: u64,
    pub(crate) parent: Option<u64>,
    pub(crate) name: Cow<'static, str>,
    pub(crate) daemon: bool,
    pub(crate) is_main: bool,
    pub(crate) stack_size: usize,
}

impl TaskRecord {
    /// Always inlined: built in place in its task box (`boxes.rs`).
    #[inline(always)]
    pub(crate) fn new(who: Identity) -> TaskRecord {
        let (name, cold) = match who.name {
            Cow::Borrowed(name) => (name, OnceCell::new()),
            Cow::Owned(owned) => (
                "",
                OnceCell::from(Box::new(Cold {
                    name: Some(owned),
                    ..Cold::default()
                })),
            ),
        };
        TaskRecord {
            id: who.id,
            parent: who.parent.unwrap_or(0),
            name,
            wait_id: Cell::new(0),
            stack_size: u32::try_from(who.stack_size).expect("stack sizes are checked"),
            daemon: who.daemon,
            is_main: who.is_main,
            external: Cell::new(false),
            suspended_in: Cell::new(State::Ready),
            joiner: Cell::new(Waiter::default()),
            refs: Cell::new(1),
            slot: Cell::new(u32::MAX),
            state: Cell::new(State::Ready),
            flags: Cell::new(0),
            cycles: Cell::new(0),
            run: Cell::new(std::ptr::null_mut()),
            cold,
        }
    }

    #[inline(always)]
    fn flag(&self, flag: u8) -> bool {
        self.flags.get() & flag != 0
    }

    #[inline(always)]
    fn set_flag(&self, flag: u8, on: bool) {
        let f = self.flags.get();
        self.flags.set(if on { f | flag } else { f & !flag });
    }

    /// The cold part, made on first use.
    fn cold(&self) -> &Cold {
        self.cold.get_or_init(Box::default)
    }

    // ----- for everyone: reading ----------------------------------------------

    #[inline]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    #[inline]
    pub(crate) fn parent(&self) -> Option<u64> {
        (self.parent != 0).then_some(self.parent)
    }

    #[inline]
    pub(crate) fn name(&self) -> &str {
        match self.cold.get().and_then(|c| c.name.as_deref()) {
            Some(owned) => owned,
            None => self.name,
        }
    }

    #[inline]
    pub(crate) fn is_daemon(&self) -> bool {
        self.daemon
    }

    #[inline]
    pub(crate) fn is_main(&self) -> bool {
        self.is_main
    }

    #[inline]
    pub(crate) fn stack_size(&self) -> usize {
        self.stack_size as usize
    }

    #[inline]
    pub(crate) fn state(&self) -> State {
        self.state.get()
    }

    #[inline]
    pub(crate) fn cycles(&self) -> u64 {
        u64::from(self.cycles.get())
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag(CANCELLED)
    }

    #[inline]
    pub(crate) fn is_terminated(&self) -> bool {
        self.flag(TERMINATED)
    }

    /// True once its value (or panic) was taken by `join` or `result`.
    #[inline]
    pub(crate) fn is_joined(&self) -> bool {
        self.flag(JOINED)
    }

    /// The task this one is joining, 0 if none (for reports).
    #[inline]
    pub(crate) fn join_target(&self) -> u64 {
        self.run().map_or(0, |r| r.join_target.get())
    }

    /// Usable bytes of its stack, and its guard page (0 when it has none:
    /// before its first run, and after it ended).
    #[inline]
    pub(crate) fn stack_info(&self) -> (usize, usize) {
        match self.run().map_or(0, |r| r.guard.get()) {
            0 => (0, 0),
            // A stack of the size class it asked for (`stack.rs`).
            guard => (self.stack_size as usize, guard),
        }
    }

    /// `Task(id=3, name='kid', state=TIME_SLEEP)`, as Curio prints tasks.
    #[inline]
    pub(crate) fn describe(&self) -> String {
        format!(
            "Task(id={}, name='{}', state={})",
            self.id,
            self.name(),
            self.state.get()
        )
    }

    // ----- for everyone: what is not scheduling state ---------------------------

    /// This task's value of the task-local `key`, if it set one.
    #[inline]
    pub(crate) fn local_get<T: Clone + 'static>(&self, key: usize) -> Option<T> {
        self.cold.get()?.locals.borrow().get(key)
    }

    /// Sets this task's value of the task-local `key`; returns the previous one.
    #[inline]
    pub(crate) fn local_set<T: Clone + 'static>(&self, key: usize, value: T) -> Option<T> {
        self.cold().locals.borrow_mut().set(key, value)
    }

    /// A copy of this task's task-locals, for a child (copy on spawn).
    #[inline]
    pub(crate) fn inherit_locals(&self, child: &TaskRecord) {
        let Some(cold) = self.cold.get() else { return };
        let locals = cold.locals.borrow();
        if !locals.values.is_empty() {
            *child.cold().locals.borrow_mut() = locals.inherit();
        }
    }

    /// True if the task belongs to a task group.
    #[inline]
    pub(crate) fn in_group(&self) -> bool {
        self.cold.get().is_some_and(|c| c.group.borrow().is_some())
    }

    /// Makes the task a member of `group`.
    #[inline]
    pub(crate) fn join_group(&self, group: Weak<dyn GroupLink>) {
        *self.cold().group.borrow_mut() = Some(group);
    }

    /// Takes the task out of its group (if any); returns the group.
    #[inline]
    pub(crate) fn leave_group(&self) -> Option<Weak<dyn GroupLink>> {
        self.cold.get()?.group.borrow_mut().take()
    }

    /// The message of the panic the task's closure ended with, if it did.
    #[inline]
    pub(crate) fn panic_message(&self) -> Option<String> {
        self.cold.get()?.panic_message.borrow().clone()
    }

    /// The task's closure panicked: keeps the panic's message (for every
    /// `join`, `result` and report after) and drops its payload here, on the
    /// task's own stack, reporting a panic raised by that drop.
    #[cold]
    pub(crate) fn keep_panic(&self, payload: Box<dyn Any + Send>) {
        *self.cold().panic_message.borrow_mut() = Some(panic_message(&*payload));
        if let Some(msg) = drop_quietly(payload) {
            eprintln!(
                "curio: dropping the panic payload of task {} ('{}') panicked: {msg}",
                self.id,
                self.name()
            );
        }
    }

    // ----- for the kernel: scheduling -----------------------------------------

    #[inline]
    pub(super) fn slot(&self) -> u32 {
        self.slot.get()
    }

    #[inline]
    pub(super) fn set_slot(&self, slot: u32) {
        self.slot.set(slot);
    }

    #[inline]
    pub(super) fn set_state(&self, state: State) {
        self.state.set(state);
    }

    /// The kernel is about to resume it.
    #[inline]
    pub(super) fn start_slice(&self) {
        self.state.set(State::Running);
        self.cycles.set(self.cycles.get().wrapping_add(1));
    }

    /// Marks cancellation requested; false if it already was (or the task ended).
    #[inline]
    pub(super) fn mark_cancelled(&self) -> bool {
        if self.flag(TERMINATED | CANCELLED) {
            return false;
        }
        self.set_flag(CANCELLED, true);
        true
    }

    /// The task has ended (its [`RunState`] already given back).
    #[inline]
    pub(super) fn mark_terminated(&self) {
        debug_assert!(self.run.get().is_null(), "finish gave the run state back");
        self.state.set(State::Terminated);
        self.set_flag(TERMINATED, true);
        if let Some(d) = self.deadlines() {
            d.disarm();
        }
    }

    /// The cancellation and timeout state, if the task has any yet: none
    /// means nothing pending, unmasked, no timeout block open.
    #[inline]
    pub(super) fn deadlines(&self) -> Option<&Deadlines> {
        self.cold.get().map(|c| &c.deadlines)
    }

    /// The cancellation and timeout state, made on first use (to change it).
    #[inline]
    pub(super) fn make_deadlines(&self) -> &Deadlines {
        &self.cold().deadlines
    }

    #[inline]
    pub(super) fn wait_id(&self) -> u64 {
        self.wait_id.get()
    }

    /// Parks the task in wait `id`, shown as `state`.
    #[inline]
    pub(super) fn begin_wait(&self, id: u64, state: State, external: bool) {
        self.wait_id.set(id);
        self.state.set(state);
        self.external.set(external);
    }

    /// Ends the current wait; returns whether it was an external one.
    #[inline]
    pub(super) fn end_wait(&self) -> bool {
        self.wait_id.set(0);
        self.external.replace(false)
    }

    /// Notes, for reports, the task this running one joins (0: none).
    #[inline]
    pub(super) fn set_join_target(&self, id: u64) {
        if let Some(r) = self.run() {
            r.join_target.set(id);
        }
    }

    /// Adds `w` to the tasks waiting for this one to end, behind the others.
    #[inline]
    pub(super) fn add_joiner(&self, w: Waiter, is_live: impl Fn(Waiter) -> bool) {
        let first = self.joiner.get();
        // The inline place is taken only while it holds the oldest joiner:
        // an empty or stale one is reused only when no joiner waits behind it.
        let behind = || {
            self.cold
                .get()
                .is_some_and(|c| !c.joiners.borrow().is_empty())
        };
        if first.wait_id == 0 || (!is_live(first) && !behind()) {
            self.joiner.set(w);
            self.set_flag(HAS_JOINER, true);
        } else {
            self.cold().joiners.borrow_mut().push(w, is_live);
        }
    }

    /// Takes the oldest joiner, if any (the task has ended); the others,
    /// if there are, are then taken by [`TaskRecord::take_more_joiners`].
    #[inline]
    pub(super) fn take_first_joiner(&self) -> Option<Waiter> {
        // The flag, on the hot line, spares the first line to a task no one
        // joined before it ended.
        if !self.flag(HAS_JOINER) {
            return None;
        }
        self.set_flag(HAS_JOINER, false);
        let first = self.joiner.replace(Waiter::default());
        (first.wait_id != 0).then_some(first)
    }

    /// Takes the joiners after the first, oldest first.
    #[inline]
    pub(super) fn take_more_joiners(&self) -> Option<WaitQueue> {
        let cold = self.cold.get()?;
        let more = std::mem::take(&mut *cold.joiners.borrow_mut());
        (!more.is_empty()).then_some(more)
    }

    /// The task's [`RunState`], while it has a stack.
    #[allow(unsafe_code)]
    #[inline(always)]
    pub(super) fn run(&self) -> Option<&RunState> {
        let p = self.run.get();
        // SAFETY: a non-null `run` came from `Box::into_raw` in `set_run`
        // and is owned by this record until `take_run` (whose contract is
        // that no reference this returned is alive then) or the record's
        // drop; the box is never moved meanwhile, and `RunState`'s fields
        // are cells (its coroutine in a `RefCell`), so shared references to
        // it may coexist. The record is not `Sync`: all on one thread.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// Gives the task its [`RunState`] (it has none).
    #[inline]
    pub(super) fn set_run(&self, run: Box<RunState>) {
        debug_assert!(self.run.get().is_null(), "one run state at a time");
        self.run.set(Box::into_raw(run));
    }

    /// Takes the task's [`RunState`] back (to give it to the pool).
    ///
    /// # Safety
    ///
    /// No reference returned by [`TaskRecord::run`] (or to a field of the
    /// state) may be alive: the box may be reused or freed at once.
    #[allow(unsafe_code)]
    #[inline]
    // SAFETY: callers keep the `# Safety` contract above, which the
    // `Box::from_raw` below relies on.
    pub(super) unsafe fn take_run(&self) -> Option<Box<RunState>> {
        let p = self.run.replace(std::ptr::null_mut());
        // SAFETY: a non-null `run` came from `Box::into_raw` (`set_run`) and
        // is owned by this record, which gives up its pointer here; no
        // reference to it is alive (this function's contract).
        (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
    }

    /// True once the task has been given its stack (at its first run, or at
    /// spawn for a task with a stack size of its own). A task with no
    /// run state and no stack has not started.
    #[inline]
    pub(super) fn has_stack(&self) -> bool {
        self.flag(STARTED)
    }

    /// Leaves `reply` for the task's next resume (dropped if the task has
    /// no stack: nothing will resume it).
    #[inline]
    pub(super) fn set_reply(&self, reply: Option<Error>) {
        if let Some(r) = self.run() {
            r.reply.set(reply);
        }
    }

    #[inline]
    pub(super) fn take_reply(&self) -> Option<Error> {
        self.run()?.reply.take()
    }

    #[inline]
    pub(super) fn yielder(&self) -> *const () {
        self.run().map_or(std::ptr::null(), |r| r.yielder.get())
    }

    #[inline]
    pub(super) fn set_yielder(&self, y: *const ()) {
        if let Some(r) = self.run() {
            r.yielder.set(y);
        }
    }

    /// The state its last slice ended in (watched kernels only).
    #[inline]
    pub(super) fn suspended_in(&self) -> State {
        self.suspended_in.get()
    }

    #[inline]
    pub(super) fn set_suspended_in(&self, state: State) {
        self.suspended_in.set(state);
    }

    /// The task has been given its stack, of `usable` bytes.
    #[inline]
    pub(super) fn set_stack(&self, usable: usize) {
        debug_assert_eq!(
            usable, self.stack_size as usize,
            "stacks come by exact size class"
        );
        self.set_flag(STARTED, true);
    }

    /// The group to tell that this task ended.
    #[inline]
    pub(super) fn group(&self) -> Option<std::rc::Rc<dyn GroupLink>> {
        self.cold
            .get()?
            .group
            .borrow()
            .as_ref()
            .and_then(Weak::upgrade)
    }
}

// ---------------------------------------------------------------------------
// The task box: the record and the task's value, in one allocation
// ---------------------------------------------------------------------------

/// A task's record, its result slot and (until it first runs) its closure,
/// in one allocation.
///
/// `S` is the rest: a [`Slot`] whose closure type is known in the box spawn
/// makes ([`TaskBoxOf`]), erased to `dyn AnySlot` in the [`AnyTask`] the
/// kernel and every handle hold; a typed handle reads the value through
/// [`AnyTask::typed`]. The record comes first and is sized, so reaching it
/// is a plain field access, not a virtual call.
pub(crate) struct TaskBox<S: ?Sized + AnySlot> {
    pub(crate) record: TaskRecord,
    result: S,
}

/// A task's result slot and its closure.
pub(crate) struct Slot<T, B: ?Sized> {
    value: ResultSlot<T>,
    body: B,
}

/// Where a task's closure leaves its return value. A panic's message goes to
/// the record's cold part instead ([`TaskRecord::keep_panic`]), so the slot
/// is no bigger than the value, and a `Cell`: it is only ever moved in and
/// out, never borrowed (`Typed::with_result` takes it and puts it back).
pub(crate) type ResultSlot<T> = Cell<Option<T>>;

/// A task as spawn makes it: its closure's type `F` is known.
pub(crate) type TaskBoxOf<T, F> = TaskBox<Slot<T, Body<F>>>;

/// Any task, as the kernel holds it.
pub(crate) type AnyTask = TaskBox<dyn AnySlot>;

/// Erases a task's result and closure types (see [`TaskBox`]).
pub(crate) trait AnySlot {
    /// Drops the value left in the slot, if any; returns the message of a
    /// panic that dropping it raised.
    fn drop_value(&mut self) -> Option<String>;

    /// Makes the task's coroutine on `stack` ([`TaskBody::start`]).
    ///
    /// # Safety
    ///
    /// As [`TaskBody::start`], with `rec` the record of this slot's box.
    #[allow(unsafe_code)]
    // SAFETY: callers keep the `# Safety` contract above, which this function's unsafe
    // operations rely on.
    unsafe fn start(&self, rec: *const TaskRecord, stack: PooledStack) -> TaskCoroutine;

    /// Drops the closure of a task that never ran ([`TaskBody::drop_unstarted`]).
    fn drop_unstarted(&self) -> Option<String>;

    /// The address of the slot's [`ResultSlot`], for [`AnyTask::typed`].
    fn value_slot(&self) -> *const ();
}

impl<T, B: ?Sized + TaskBody<T>> AnySlot for Slot<T, B> {
    #[inline]
    fn drop_value(&mut self) -> Option<String> {
        let value = self.value.get_mut().take()?; // none: joined, the usual case
        drop_quietly(value)
    }

    // SAFETY: callers keep the contract of `AnySlot::start`, which the call
    // below relies on.
    #[allow(unsafe_code)]
    #[inline]
    unsafe fn start(&self, rec: *const TaskRecord, stack: PooledStack) -> TaskCoroutine {
        // SAFETY: forwarded from this function's contract; the slot is part
        // of the same box as the record, so it lives as long.
        unsafe { self.body.start(rec, &self.value, stack) }
    }

    fn drop_unstarted(&self) -> Option<String> {
        self.body.drop_unstarted()
    }

    #[inline(always)]
    fn value_slot(&self) -> *const () {
        std::ptr::from_ref(&self.value).cast()
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
        // `Core::finish` gave the run state back; a task that never ended
        // (its spawn failed) still holds it.
        let run = *self.record.run.get_mut();
        if !run.is_null() {
            *self.record.run.get_mut() = std::ptr::null_mut();
            // SAFETY: a non-null `run` is owned by the record (`set_run`), and
            // `&mut self` means no reference from `TaskRecord::run` is alive.
            #[allow(unsafe_code)]
            drop(unsafe { Box::from_raw(run) });
        }
        let value_panic = self.result.drop_value();
        let has_locals = self
            .record
            .cold
            .get_mut()
            .is_some_and(|c| !c.locals.get_mut().values.is_empty());
        if value_panic.is_some() || has_locals {
            drop_task_data(&mut self.record, value_panic);
        }
    }
}

/// The slow part of dropping a task: report a panic raised by dropping its
/// value, then drop its task-locals one by one, reporting theirs.
#[cold]
#[inline(never)]
fn drop_task_data(h: &mut TaskRecord, value_panic: Option<String>) {
    if let Some(msg) = value_panic {
        eprintln!(
            "curio: dropping the value returned by task {} ('{}') panicked: {msg}",
            h.id,
            h.name()
        );
    }
    let locals = match h.cold.get_mut() {
        Some(c) => std::mem::take(&mut c.locals.get_mut().values),
        None => Vec::new(),
    };
    for (_, value) in locals {
        if let Some(msg) = drop_quietly(value) {
            eprintln!(
                "curio: dropping a task-local value of task {} ('{}') panicked: {msg}",
                h.id,
                h.name()
            );
        }
    }
}

// SAFETY: `refs` is a field of the record, set to 1 by `TaskRecord::new` and
// written by nothing but `TaskRc`; the record lives as long as its box.
#[allow(unsafe_code)]
unsafe impl<S: ?Sized + AnySlot> super::boxes::Counted for TaskBox<S> {
    #[inline(always)]
    fn refs(&self) -> &Cell<u32> {
        &self.record.refs
    }
}

impl<S: ?Sized + AnySlot> TaskBox<S> {
    /// The task's record.
    #[inline]
    pub(crate) fn record(&self) -> &TaskRecord {
        &self.record
    }
}

impl<T, F: FnOnce() -> T> TaskBoxOf<T, F> {
    /// The box of a task that will run `f`.
    #[inline]
    pub(crate) fn new(record: TaskRecord, f: F) -> Self {
        TaskBox {
            record,
            result: Slot {
                value: Cell::new(None),
                body: Body::new(f),
            },
        }
    }
}

impl<S: ?Sized + AnySlot> TaskBox<S> {
    /// Makes the task's coroutine on `stack`, from the closure it was
    /// spawned with.
    ///
    /// # Safety
    ///
    /// As [`TaskBody::start`]: everything the closure borrows, and this box,
    /// must stay valid until the coroutine has returned or been dropped.
    #[allow(unsafe_code)]
    #[inline]
    // SAFETY: callers keep the `# Safety` contract above, which this function's unsafe
    // operations rely on.
    pub(crate) unsafe fn start(&self, stack: PooledStack) -> TaskCoroutine {
        // SAFETY: forwarded; the record is this box's own.
        unsafe { self.result.start(&self.record, stack) }
    }

    /// Drops the closure of a task that never ran; returns the message of a
    /// panic its drop raised.
    #[inline]
    pub(crate) fn drop_unstarted(&self) -> Option<String> {
        self.result.drop_unstarted()
    }
}

impl AnyTask {
    /// The task's box seen with the type of its value.
    ///
    /// # Safety
    ///
    /// `T` must be the type the task's closure returns.
    #[allow(unsafe_code)]
    #[inline(always)]
    // SAFETY: callers keep the `# Safety` contract above, which the cast
    // below relies on.
    pub(crate) unsafe fn typed<T>(&self) -> Typed<'_, T> {
        // SAFETY: the slot of a task whose closure returns `T` is a
        // `Slot<T, _>` (the caller's contract), whose `value_slot` is the
        // address of its `ResultSlot<T>`; it lives as long as the box, which
        // `&self` borrows.
        let value = unsafe { &*self.result.value_slot().cast::<ResultSlot<T>>() };
        Typed {
            record: &self.record,
            value,
        }
    }
}

/// A task's record and result slot, seen with the type of its value (what a
/// typed handle, [`Task<T>`](crate::Task), reads).
pub(crate) struct Typed<'a, T> {
    record: &'a TaskRecord,
    value: &'a ResultSlot<T>,
}

impl<T> Typed<'_, T> {
    /// Takes the result of a terminated task.
    #[inline]
    pub(crate) fn take_result(&self) -> Result<T> {
        if self.record.is_terminated() {
            self.record.set_flag(JOINED, true);
        }
        match self.value.take() {
            Some(v) => Ok(v),
            None => match self.record.panic_message() {
                Some(msg) => Err(Error::new(ErrorKind::TaskPanicked, msg)),
                None if self.record.is_terminated() => Err(Error::new(ErrorKind::ResultTaken, "")),
                None => Err(Error::usage(format!(
                    "task {} has not finished; join it to wait for it, or check is_terminated first",
                    self.record.id()
                ))),
            },
        }
    }

    /// True if the task ended by panicking.
    #[inline]
    pub(crate) fn panicked(&self) -> bool {
        self.panic_text().is_some()
    }

    /// The panic message, if the task panicked.
    #[inline]
    pub(crate) fn panic_text(&self) -> Option<String> {
        self.record.panic_message()
    }

    /// Looks at the result without taking it: takes it out of its `Cell`
    /// for the call to `f` and puts it back after, even if `f` panics (a
    /// nested look at the same task meanwhile sees none).
    #[inline]
    pub(crate) fn with_result<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        /// Puts the value back when dropped.
        struct PutBack<'a, T>(&'a ResultSlot<T>, Option<T>);
        impl<T> Drop for PutBack<'_, T> {
            fn drop(&mut self) {
                self.0.set(self.1.take());
            }
        }
        let held = PutBack(self.value, self.value.take());
        f(held.1.as_ref())
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

// ---------------------------------------------------------------------------
// Task-local values
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

/// The task-local values of one task, by key (the address of the
/// `TaskLocal` static).
#[derive(Default)]
struct Locals {
    values: Vec<(usize, Box<dyn LocalValue>)>,
}

impl Locals {
    /// A copy for a child task (copy-on-spawn inheritance).
    fn inherit(&self) -> Locals {
        Locals {
            values: self
                .values
                .iter()
                .map(|(k, v)| (*k, (**v).clone_box()))
                .collect(),
        }
    }

    fn get<T: Clone + 'static>(&self, key: usize) -> Option<T> {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| (**v).as_any().downcast_ref::<T>().cloned())
    }

    fn set<T: Clone + 'static>(&mut self, key: usize, value: T) -> Option<T> {
        match self.values.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => {
                let old = std::mem::replace(slot, Box::new(value));
                (*old).as_any().downcast_ref::<T>().cloned()
            }
            None => {
                self.values.push((key, Box::new(value)));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The layout the discussion on [`TaskRecord`] relies on: identity and
    /// waits fill the first line; what running and joining touch starts the
    /// second (where a freed box is linked), and the result slot follows it
    /// on the same line: a task with a small closure and value is two lines.
    #[test]
    fn each_line_has_its_phase() {
        assert_eq!(offset_of!(TaskRecord, joiner), 48);
        assert_eq!(offset_of!(TaskRecord, refs), 64);
        assert_eq!(offset_of!(TaskRecord, refs), super::super::boxes::LINK_AT);
        assert_eq!(size_of::<TaskRecord>(), 64 + 32);
        let n = 7u64;
        let f = move || n + 1;
        fn size_of_box<T, F: FnOnce() -> T>(_: &F) -> usize {
            size_of::<TaskBoxOf<T, F>>()
        }
        assert_eq!(size_of_box(&f), 2 * 64);
    }
}
