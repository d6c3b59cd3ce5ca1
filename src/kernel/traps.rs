//! The kernel's entry points: every way the rest of the crate reaches the
//! kernel, in one list (Curio's `traps.py`). Known to the crate as `crate::trap`.
//!
//! Two kinds, as in Curio:
//!
//! - **Suspending traps** park or yield the running task: [`yield_now`],
//!   [`park`], [`park_external`], [`park_on`], [`join`], [`sleep_until`],
//!   [`wait_fd`], [`wait_fd_as`]. Each is a cancel point, and each is always
//!   inlined so that the switch happens in the frame of its caller
//!   (`arch-notes/trap-flow.md`); the work before the switch (cancel point,
//!   registering the waiter) is an ordinary call that returns first.
//! - **Direct traps** run on the caller's stack and return at once: spawning,
//!   cancelling, waking, the clock, timeout blocks and masking, the fd table,
//!   the inbox, the current task; and for debugging, another task's
//!   backtrace, snapshots and dumps (which resume the other tasks in place,
//!   for their backtraces, without disturbing them).
//!
//! # Invariants
//!
//! - This module is the kernel's only door: the kernel's state (`Core`) and
//!   the scheduling operations of task records are visible inside
//!   `crate::kernel` only. Callers get values (ids, tokens, waiters, clocks,
//!   task handles) and read-only access to records, never the kernel itself.
//! - Every function panics outside a kernel (or, for those that need one,
//!   outside a task), with a message that says so; [`in_task`] and
//!   [`kernel_id`] let services check first.
//!
//! # Example
//!
//! ```text
//! // Event::wait: park on the event's wait queue; Event::set wakes it.
//! trap::park_on(&self.waiters, State::EventWait)?;   // suspends
//! trap::wake_all(&self.waiters);                      // direct, never switches
//! ```

use std::borrow::Cow;
use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;

use std::time::Instant;

use super::boxes::TaskRc;
use super::core::{in_task as core_in_task, try_with_core, with_core, with_current, with_running};
use super::crash;
use super::debug::{KernelHandle, Snapshot, Traceback};
use super::record::{AnySlot, AnyTask, Identity, State, TaskBox, TaskBoxOf, TaskRecord};
use super::switch::{self, Trap};
use crate::deadlines::Block;
use crate::error::{Error, ErrorKind, Result};
use crate::poller::{Direction, InboxSender};
use crate::wait::{WaitQueue, Waiter};

// ---------------------------------------------------------------------------
// Suspending traps
// ---------------------------------------------------------------------------

/// Moves the running task to the back of the ready queue (Curio's
/// `_sched_yield`). A cancel point.
#[inline(always)]
pub(crate) fn yield_now() -> Result<()> {
    cancel_point()?;
    suspend(Trap::Yield)
}

/// Parks the running task in `state` until the waiter handed to `register` is
/// woken (`Ok`) or the wait is aborted by cancellation or a timeout (`Err`)
/// (Curio's `_scheduler_wait`).
///
/// A cancel point: a pending cancellation is returned before registering.
#[inline(always)]
pub(crate) fn park(state: State, register: impl FnOnce(Waiter)) -> Result<()> {
    prepare_park(state, state.is_external(), register)?;
    suspend(Trap::Wait)
}

/// [`park`] for a wait that another thread (or the poller) will end: while
/// such waits exist, the kernel never reports a deadlock (Curio's
/// `_future_wait`).
#[inline(always)]
pub(crate) fn park_external(state: State, register: impl FnOnce(Waiter)) -> Result<()> {
    prepare_park(state, true, register)?;
    suspend(Trap::Wait)
}

/// The part of a park before the switch: cancel point, then registration.
#[inline(never)]
fn prepare_park(state: State, external: bool, register: impl FnOnce(Waiter)) -> Result<()> {
    let w = with_current(|core, h| {
        core.cancel_point(h)?;
        Ok::<_, Error>(core.begin_wait(h, state, external))
    })?;
    register(w);
    Ok(())
}

/// Parks the running task on wait queue `q` in `state` (FIFO). A cancel point;
/// a cancelled or timed-out waiter's entry goes stale and is skipped.
#[inline(always)]
pub(crate) fn park_on(q: &RefCell<WaitQueue>, state: State) -> Result<()> {
    prepare_park_on(q, state)?;
    suspend(Trap::Wait)
}

#[inline(never)]
fn prepare_park_on(q: &RefCell<WaitQueue>, state: State) -> Result<()> {
    with_current(|core, h| {
        core.cancel_point(h)?;
        let w = core.begin_wait(h, state, state.is_external());
        q.borrow_mut().push(w, |w| core.is_waiting(w));
        Ok(())
    })
}

/// Parks the running task until `target` has terminated or the wait is
/// aborted (Curio's `TASK_JOIN`). A cancel point. Returns at once (no switch,
/// no cancel point) for a task that has already ended.
///
/// Re-checks termination after every wake-up rather than trusting it: the
/// scoped task group's soundness rests on this returning `Ok` only once the
/// task has ended (arch-notes/task-groups.md).
#[inline(always)]
pub(crate) fn join(target: &TaskRecord) -> Result<()> {
    while !target.is_terminated() {
        let r = prepare_join(target).and_then(|()| suspend(Trap::Wait));
        end_join();
        r?;
    }
    Ok(())
}

#[inline(never)]
fn prepare_join(target: &TaskRecord) -> Result<()> {
    with_current(|core, me| {
        core.cancel_point(me)?;
        let w = core.begin_wait(me, State::TaskJoin, false);
        me.set_join_target(target.id());
        target.add_joiner(w, |w| core.is_waiting(w));
        Ok(())
    })
}

#[inline(never)]
fn end_join() {
    with_current(|_, me| me.set_join_target(0));
}

/// Parks the running task until kernel time `deadline` (Curio's `_sleep`). A
/// cancel point; cancelled or timed out, the sleep ends early.
pub(crate) fn sleep_until(deadline: u64) -> Result<()> {
    park(State::TimeSleep, |w| {
        with_core(|core| core.register_sleep(w, deadline))
    })
}

/// Parks the running task until `fd` (registered as `token`) is ready in
/// direction `dir` (Curio's `_read_wait`/`_write_wait`). One task may wait per
/// direction.
///
/// # Errors
///
/// [`ErrorKind::ResourceBusy`] if another task already waits on `fd` in that
/// direction; the caller's cancellation or timeout (the wait is then forgotten).
pub(crate) fn wait_fd(token: mio::Token, fd: RawFd, dir: Direction) -> Result<()> {
    let (state, verb, who) = match dir {
        Direction::Read => (State::ReadWait, "read", "reader"),
        Direction::Write => (State::WriteWait, "write", "writer"),
    };
    if with_core(|core| core.fd_waiter_busy(token, dir)) {
        return Err(Error::new(
            ErrorKind::ResourceBusy,
            format!("another task is already waiting to {verb} fd {fd}; use one {who} per socket"),
        ));
    }
    wait_fd_as(token, dir, state)
}

/// [`wait_fd`] shown as `state` instead of `READ_WAIT`/`WRITE_WAIT` (a signal
/// set waiting on its doorbell socket is in `SIGNAL_WAIT`). The caller makes
/// sure that only one task waits on the fd in that direction.
pub(crate) fn wait_fd_as(token: mio::Token, dir: Direction, state: State) -> Result<()> {
    park_external(state, |w| {
        with_core(|core| core.set_fd_waiter(token, dir, w))
    })
}

/// Switches to the kernel with `trap`, in the caller's frame.
#[inline(always)]
fn suspend(trap: Trap) -> Result<()> {
    match with_running(|rec| switch::suspend(rec, trap)) {
        Some(reply) => reply,
        None => Err(refuse_switch()),
    }
}

/// What a blocking call gets when its task can no longer switch: the kernel is
/// force-unwinding it (its shutdown could not finish, or the kernel itself
/// panicked), or it never started and its closure is being dropped. Ends the
/// wait the call began, if any, so the task is parked on nothing.
#[cold]
#[inline(never)]
fn refuse_switch() -> Error {
    with_current(|core, h| core.refuse_wait(h));
    Error::new(
        ErrorKind::Cancelled,
        "this task is being torn down by its kernel and can no longer block",
    )
}

// ---------------------------------------------------------------------------
// Cancellation, timeouts, masking (direct)
// ---------------------------------------------------------------------------

/// The running task's cancel point: the pending cancellation or timeout, if
/// delivery is allowed.
#[inline]
pub(crate) fn cancel_point() -> Result<()> {
    with_current(|core, h| core.cancel_point(h))
}

/// `check_cancellation`: as [`cancel_point`] outside a masked block; inside
/// one, a copy of the pending error, which stays pending.
pub(crate) fn check_cancellation() -> Result<()> {
    with_current(|core, h| core.check_cancellation(h))
}

/// Replaces the running task's pending cancellation (Curio's
/// `set_cancellation`); returns the one replaced.
pub(crate) fn set_cancellation(err: Option<Error>) -> Option<Error> {
    with_current(|core, h| core.set_cancellation(h, err))
}

/// Takes the running task's pending cancellation if it is of `kind` (Curio's
/// `check_cancellation(exc_type)`).
pub(crate) fn take_cancellation(kind: ErrorKind) -> Option<Error> {
    with_current(|core, h| core.take_cancellation(h, kind))
}

/// Enters a `disable_cancellation` block.
pub(crate) fn mask() {
    with_current(|core, h| core.mask(h));
}

/// Leaves a `disable_cancellation` block.
pub(crate) fn unmask() {
    with_current(|core, h| core.unmask(h));
}

/// Opens a timeout block for the running task (Curio's `_set_timeout`).
pub(crate) fn enter_timeout_block(deadline: Option<u64>) -> Block {
    with_current(|core, h| core.enter_timeout_block(h, deadline))
}

/// Closes the running task's innermost timeout block (Curio's
/// `_unset_timeout`); returns the deadline stack as it was while it was open.
pub(crate) fn exit_timeout_block(block: Block) -> Vec<u64> {
    with_current(|core, h| core.exit_timeout_block(h, block))
}

/// Requests cancellation of `target` (Curio's `_cancel_task`): delivered once,
/// at its current or next cancel point; clears its armed timeout.
pub(crate) fn cancel(target: &TaskRecord) {
    with_core(|core| core.cancel(target));
}

/// [`cancel`] delivering `err` instead of `Cancelled` (Curio's `cancel(exc=…)`).
pub(crate) fn cancel_with(target: &TaskRecord, err: Error) {
    with_core(|core| core.cancel_with(target, err));
}

// ---------------------------------------------------------------------------
// Time (direct)
// ---------------------------------------------------------------------------

/// Kernel time, nanoseconds since the kernel started (virtual or real).
#[inline]
pub(crate) fn now() -> u64 {
    with_core(|core| core.now())
}

/// Kernel time as an `Instant`.
pub(crate) fn instant(t: u64) -> Instant {
    with_core(|core| core.instant(t))
}

/// An `Instant` as kernel time (earlier instants become 0).
pub(crate) fn ticks(i: Instant) -> u64 {
    with_core(|core| core.ticks(i))
}

// ---------------------------------------------------------------------------
// Waking (direct; never switches)
// ---------------------------------------------------------------------------

/// Wakes the oldest live waiter of `q`; returns its task id.
#[inline]
pub(crate) fn wake_one(q: &RefCell<WaitQueue>) -> Option<u64> {
    with_core(|core| {
        // `wake_task` checks that the wait is still live, so stale entries
        // are skipped with one slot lookup each.
        loop {
            let w = q.borrow_mut().pop_any()?;
            if let Some(id) = core.wake_task(w, Ok(())) {
                return Some(id);
            }
        }
    })
}

/// Wakes every live waiter of `q`, oldest first; returns how many.
pub(crate) fn wake_all(q: &RefCell<WaitQueue>) -> usize {
    with_core(|core| {
        // Taken out whole: no allocation when the oldest waiter is the only one.
        let mut waiters = std::mem::take(&mut *q.borrow_mut());
        waiters.drain().filter(|&w| core.wake(w, Ok(()))).count()
    })
}

/// True if `q` has a live waiter.
#[inline]
pub(crate) fn has_waiters(q: &RefCell<WaitQueue>) -> bool {
    with_core(|core| q.borrow_mut().first_live(|w| core.is_waiting(w)).is_some())
}

/// Ends wait `w` with `Ok` if it is still live (a condition a waiter
/// registered for was met before it slept). Returns whether it was.
pub(crate) fn wake(w: Waiter) -> bool {
    with_core(|core| core.wake(w, Ok(())))
}

/// A sender other threads use to wake tasks of this kernel.
pub(crate) fn inbox() -> InboxSender {
    with_core(|core| core.inbox())
}

/// Ends wait `w` of a task of *some* kernel: directly if it is this thread's
/// kernel, else through that kernel's inbox. Callable from any thread.
pub(crate) fn post_wake(sender: &InboxSender, w: Waiter) {
    super::core::Core::post_wake(sender, w);
}

// ---------------------------------------------------------------------------
// Tasks (direct)
// ---------------------------------------------------------------------------

/// What a new task is to be.
pub(crate) struct SpawnOptions {
    pub(crate) name: Option<String>,
    pub(crate) daemon: bool,
    /// Checked stack size; `None`: the kernel's default.
    pub(crate) stack_size: Option<usize>,
}

/// Spawns `f` as a new task at the back of the ready queue (Curio's
/// `_spawn`); never switches. The task's value, or its panic (reported as a
/// task crash), is left in the returned cell.
///
/// # Safety
///
/// Everything `f` borrows must outlive the task: the caller must make sure the
/// task has ended (or been force-unwound) before any such borrow ends. The
/// scoped task group does so by joining every member before it returns.
// SAFETY: callers must keep the contract above; the one `unsafe` block
// below relies on exactly that contract.
#[allow(unsafe_code)]
pub(crate) unsafe fn spawn_unchecked<'a, F, T>(
    opts: SpawnOptions,
    f: F,
) -> io::Result<TaskRc<AnyTask>>
where
    F: FnOnce() -> T + 'a,
    T: 'static,
{
    with_current(|core, parent| {
        let name: Cow<'static, str> = match opts.name {
            Some(n) => Cow::Owned(n),
            None => Cow::Borrowed(std::any::type_name::<F>()),
        };
        let cell = new_cell(
            Identity {
                id: core.next_task_id(),
                parent: Some(parent.id()),
                name,
                daemon: opts.daemon,
                is_main: false,
                stack_size: opts.stack_size.unwrap_or(core.default_stack_size()),
            },
            f,
        );
        parent.inherit_locals(cell.record());
        // SAFETY: the borrows of `f` outlive the task (this function's
        // contract): the kernel starts its closure, or drops it unstarted,
        // and its coroutine returns or is unwound, before they end; the box
        // is kept alive by the kernel slot's Rc until the task has ended.
        let any = unsafe { erase(cell) };
        // SAFETY: as just above.
        unsafe { core.spawn(any.clone()) }.map_err(io::Error::from)?;
        Ok(any)
    })
}

/// A task box, built in place in a block from the thread's free lists
/// (`boxes.rs`).
#[inline(always)]
fn new_cell<T, F: FnOnce() -> T>(who: Identity, f: F) -> TaskRc<TaskBoxOf<T, F>> {
    TaskRc::new_with(|| TaskBoxOf::new(TaskRecord::new(who), f))
}

/// A new task box as the kernel and every handle hold it: its closure and
/// value types erased.
///
/// # Safety
///
/// The type claims the closure `F` is `'static`, which it need not be: the
/// caller must see that it is started or dropped (which is all the kernel
/// does with it) before anything it borrows ends. Once it is gone the box
/// holds no `F` at all, only the empty `Option<F>` it left.
#[allow(unsafe_code)]
// SAFETY: callers keep the `# Safety` contract above, which this function's unsafe
// operations rely on.
pub(super) unsafe fn erase<'a, T: 'static, F: FnOnce() -> T + 'a>(
    cell: TaskRc<TaskBoxOf<T, F>>,
) -> TaskRc<AnyTask> {
    // SAFETY: the cast is the struct-tail unsizing of the same pointer (same
    // box, same count; the vtable is `F`'s), and only the trait object's
    // lifetime bound is then claimed longer, which the caller's contract
    // covers.
    unsafe {
        cell.unsize(|p| {
            let p: *mut TaskBox<dyn AnySlot + 'a> = p;
            std::mem::transmute::<*mut TaskBox<dyn AnySlot + 'a>, *mut AnyTask>(p)
        })
    }
}

/// Reports a failure of the current task that is not a panic (a server's
/// handler returned an error) on the crash-report path.
pub(crate) fn report_failure(what: &str) {
    with_current(|_, task| crash::report_failure(task, what));
}

/// The running task, as the kernel holds it (Curio's `_get_current`).
pub(crate) fn current() -> TaskRc<AnyTask> {
    with_current(|core, h| core.task_at_slot_of(h))
}

/// The running task's id.
#[inline]
pub(crate) fn current_id() -> u64 {
    with_current(|_, h| h.id())
}

/// Runs `f` with the running task's record (read-only access: its identity,
/// its task-locals). Panics outside a task.
pub(crate) fn with_current_record<R>(f: impl FnOnce(&TaskRecord) -> R) -> R {
    with_current(|_, h| f(h))
}

/// True when called from inside a curio task.
pub(crate) fn in_task() -> bool {
    core_in_task()
}

/// True while the kernel force-unwinds its tasks (no task can block or be
/// waited for then).
pub(crate) fn is_unwinding() -> bool {
    with_core(|core| core.is_unwinding())
}

// ---------------------------------------------------------------------------
// The kernel and its services (direct)
// ---------------------------------------------------------------------------

/// This kernel's id (unique in the process), or `None` outside a kernel.
pub(crate) fn kernel_id() -> Option<u64> {
    try_with_core(|core| core.id())
}

/// The `run_in_thread` pool size this kernel was built with.
pub(crate) fn thread_pool_size() -> usize {
    with_core(|core| core.thread_pool_size())
}

/// Runs `hook` when this kernel has shut down (every task ended); services
/// such as the worker pools release what they hold.
pub(crate) fn at_exit(hook: Box<dyn FnOnce()>) {
    with_core(|core| core.at_exit(hook));
}

/// Registers `fd` with this kernel's poller; returns (kernel id, token).
pub(crate) fn register_fd(fd: RawFd) -> io::Result<(u64, mio::Token)> {
    with_core(|core| Ok((core.id(), core.register_fd(fd)?)))
}

/// Forgets `fd`'s registration with kernel `kernel` (before it is closed), if
/// that kernel runs on this thread.
pub(crate) fn deregister_fd(kernel: u64, token: mio::Token, fd: RawFd) {
    try_with_core(|core| {
        if core.id() == kernel {
            core.deregister_fd(token, fd);
        }
    });
}

/// Whether `token`'s fd may be ready in direction `dir`, in kernel `kernel`
/// (true if that is not this thread's kernel: nothing is known).
pub(crate) fn fd_ready(kernel: u64, token: mio::Token, dir: Direction) -> bool {
    try_with_core(|core| core.id() != kernel || core.fd_ready(token, dir)).unwrap_or(true)
}

// ---------------------------------------------------------------------------
// Debugging (direct)
// ---------------------------------------------------------------------------

/// The backtrace of `target` (Curio's `Task.traceback()`), captured on its
/// own stack without disturbing it (`Core::capture_stack`): its wait, its
/// deadline and its place in the ready queue stay as they were. The caller's
/// own stack if `target` is the caller.
///
/// # Errors
///
/// [`ErrorKind::Usage`] for a task that has finished, has not started, is
/// being torn down, or whose stack is too full to capture safely.
pub(crate) fn traceback(target: &TaskRc<AnyTask>) -> Result<Traceback> {
    with_core(|core| core.capture_stack(target)).map_err(Error::usage)
}

/// Every live task's row (the monitor's `ps`), CPU times and stack depths
/// filled in.
pub(crate) fn snapshot() -> Snapshot {
    with_core(|core| {
        let mut s = core.snapshot();
        s.fill(core.handle().as_ref().map(|h| h.shared()));
        s
    })
}

/// The all-task dump: the `ps` table, then each task's backtrace.
pub(crate) fn dump_string() -> String {
    with_core(|core| {
        let mut snap = core.snapshot();
        snap.fill(core.handle().as_ref().map(|h| h.shared()));
        let traces: Vec<_> = core
            .live_tasks()
            .iter()
            .map(|t| (t.record().id(), core.capture_stack(t)))
            .collect();
        super::debug::format_dump(core.id(), &snap, &traces)
    })
}

/// A handle other threads can use to watch this kernel, if it is watched.
pub(crate) fn kernel_handle() -> Option<KernelHandle> {
    with_core(|core| core.handle())
}

/// Records that an operation found `token`'s fd drained in direction `dir`.
pub(crate) fn set_fd_unready(token: mio::Token, dir: Direction) {
    with_core(|core| core.set_fd_unready(token, dir));
}
