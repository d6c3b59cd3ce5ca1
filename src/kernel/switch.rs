//! The switch: creating a task's coroutine, and suspending the running task
//! back to the kernel.
//!
//! A task runs on its own stack. To block, it *suspends* with a [`Trap`]: a
//! switch back to the kernel's stack, which executes the trap and later
//! resumes the task with a reply (left in its record, not passed through
//! corosensei, which keeps the switch as small as corosensei's own).
//!
//! ```text
//!   task stack                         kernel stack (run loop)
//!   ----------                         ------------------------
//!   sleep(d)
//!    └ trap::park(TIME_SLEEP, ..)
//!       ├ cancel point: pending? ──Err──► returned to the caller, no switch
//!       ├ register waiter (timer heap)
//!       └ suspend(Trap::Wait) ═══════► resume() returns Yield(Wait): task stays parked
//!                                       ... timer expires: wake(waiter, Ok)
//!                                       ready.push_back(task)
//!       ◄═══════════════════════════════ resume()
//!   Ok(())
//! ```
//!
//! # Invariants
//!
//! - A record's yielder is non-null exactly while its task can switch: it is
//!   recorded when the coroutine first runs, and cleared before the kernel
//!   force-unwinds the task. [`suspend`] on a record with no yielder does not
//!   switch; it returns `None` and the caller reports an error.
//! - A task gets its stack when it first runs: until then its closure waits
//!   in its task box ([`Body`]), and [`TaskBody::start`] makes the coroutine
//!   on the stack it is given.
//! - A task's closure never unwinds into corosensei or the kernel when
//!   dropped unstarted ([`DropQuietly`], [`TaskBody::drop_unstarted`]).
//! - A task resumed with an error reply while [`CAPTURE_FOR`] names its run state
//!   (`where`) captures its backtrace and suspends again, before it returns
//!   to its caller: its wait, and everything registered for it, is untouched.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};

use corosensei::{Coroutine, Yielder};

use super::record::{ResultSlot, RunState, TaskRecord};
use crate::error::Error;
use crate::stack::PooledStack;

/// What a suspending task asks of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trap {
    /// Go to the back of the ready queue (`sleep(0)`, `yield_now`).
    Yield,
    /// Stay parked until some waker names this task's current waiter. The task
    /// registered that waiter (timer, wait queue, fd) before suspending.
    Wait,
}

/// How the kernel resumes a task: `Ok` when what it waited for happened,
/// `Err` when the wait was aborted by a cancellation or a timeout.
pub(crate) type Reply = Result<(), Error>;

/// A task's coroutine on a pooled stack.
pub(crate) type TaskCoroutine = Coroutine<(), Trap, (), PooledStack>;

type TaskYielder = Yielder<(), Trap>;

/// Suspends the task whose record is `rec`, which must be the one running on
/// this stack, with `trap`; returns the kernel's reply, or `None` (without
/// switching) if the task can no longer switch.
///
/// Always inlined: the switch must happen in the frame of the blocking call's
/// caller (see `arch-notes/trap-flow.md`).
#[inline(always)]
pub(super) fn suspend(rec: &TaskRecord, trap: Trap) -> Option<Reply> {
    // The run state is looked up once: it stays the record's until the task
    // has ended (`Core::finish`), so it outlives this suspend, which the
    // task can only come back from by being resumed or unwound.
    let run = rec.run()?;
    let y = run.yielder();
    if y.is_null() {
        // Being force-unwound, or never started and its closure being
        // dropped: there is no yielder to switch with.
        return None;
    }
    // SAFETY: a non-null `y` was recorded by `new_coroutine_unchecked`'s body
    // from the `&Yielder` corosensei passed it; that yielder lives at the base
    // of this task's stack for the coroutine's whole life, and the caller
    // guarantees we are running on that stack now (the yielder is cleared
    // before the task is unwound, so a destructor run by the unwind never
    // gets here).
    let yielder: &TaskYielder = unsafe { &*(y as *const TaskYielder) };
    yielder.suspend(trap);
    // Discussion: the usual resume carries no error, and that path is
    // exactly what it was before `where` existed (one load, one test). A
    // backtrace request comes as an error reply with the record's capture
    // mark set, and only the error path, out of line, looks at the mark.
    Some(match run.take_reply() {
        None => Ok(()),
        Some(e) => error_reply(run, e),
    })
}

/// A resume that carried an error: a real one (cancellation, timeout), which
/// is returned, or the kernel asking for this task's backtrace (`where`),
/// which is captured here, on the task's own stack, and left for the kernel
/// in [`CAPTURED`]; the task then suspends again, in the same wait, and this
/// returns what the resume after that brings.
///
/// Discussion: it takes nothing but the run state, which the hot path keeps
/// anyway: anything else it needed (the record, the trap) would have to
/// survive the switch on every suspend, a spill and a reload on the path
/// that matters (the record did, and cost two instructions a switch). It suspends again with `Trap::Wait`, which the kernel's
/// capture ignores (it never acts on the trap of a capture's suspend).
#[cold]
#[inline(never)]
fn error_reply(run: &RunState, mut e: Error) -> Reply {
    while std::ptr::eq(CAPTURE_FOR.with(|c| c.get()), run) {
        CAPTURE_FOR.with(|c| c.set(std::ptr::null()));
        drop(e);
        let captured = capture_here(run.guard());
        CAPTURED.with(|c| c.replace(Some(captured)));
        // SAFETY: as in `suspend`: the kernel resumed this task (to capture),
        // so its yielder is recorded and lives at the base of this stack,
        // which we are running on.
        let yielder: &TaskYielder = unsafe { &*(run.yielder() as *const TaskYielder) };
        yielder.suspend(Trap::Wait);
        match run.take_reply() {
            None => return Ok(()),
            Some(next) => e = next,
        }
    }
    Err(e)
}

/// How many bytes of free stack a backtrace capture needs, with a margin
/// (the unwinder's own frames; measured at about 5 KiB on x86_64 Linux).
pub(super) const CAPTURE_STACK_NEED: usize = 12 * 1024;

/// Captures the calling task's backtrace, unresolved (symbols are looked up
/// later, by whoever prints it), if enough of its stack is free.
#[inline(never)]
pub(super) fn capture_here(guard: usize) -> Captured {
    let here = 0u8;
    let sp = std::ptr::addr_of!(here) as usize;
    if guard != 0 {
        let floor = guard + crate::sys::page_size();
        let free = sp.saturating_sub(floor);
        if free < CAPTURE_STACK_NEED {
            return Err(format!(
                "only {free} bytes of its stack are free, too few to capture a backtrace \
                 safely; give the task a bigger stack"
            ));
        }
    }
    std::panic::catch_unwind(backtrace::Backtrace::new_unresolved)
        .map_err(|_| "capturing the backtrace panicked".to_string())
}

/// A backtrace captured on a task's stack, or why there is none.
pub(crate) type Captured = std::result::Result<backtrace::Backtrace, String>;

thread_local! {
    /// The task the kernel resumes only to have it capture its backtrace
    /// (`where`), while it does; null otherwise.
    pub(super) static CAPTURE_FOR: std::cell::Cell<*const RunState> =
        const { std::cell::Cell::new(std::ptr::null()) };
    /// Where a task resumed for `where` leaves its backtrace for the kernel.
    pub(super) static CAPTURED: std::cell::Cell<Option<Captured>> =
        const { std::cell::Cell::new(None) };
}

/// Creates a task coroutine that records its yielder in `rec` and runs `body`.
///
/// # Safety
///
/// Everything `body` borrows must stay valid until the coroutine has returned or
/// been dropped (which force-unwinds it). `rec` must stay valid as long.
// SAFETY: callers must keep the contract above, which its `unsafe` blocks
// rely on.
pub(super) unsafe fn new_coroutine_unchecked(
    stack: PooledStack,
    rec: *const TaskRecord,
    body: impl FnOnce(),
) -> TaskCoroutine {
    let rec = rec as usize;
    let body = DropQuietly(Some(body), rec);
    let f = move |y: &TaskYielder, _first: ()| {
        // SAFETY: the caller guarantees the record outlives the coroutine.
        let h = unsafe { &*(rec as *const TaskRecord) };
        h.set_yielder(y as *const TaskYielder as *const ());
        let mut body = body;
        let run = body.0.take().expect("a task's body runs once");
        std::mem::forget(body); // empty now: nothing to drop
        run();
    };
    // SAFETY: forwarded from this function's contract.
    unsafe { Coroutine::with_stack_unchecked(stack, f) }
}

/// A task's closure, kept in its task box (beside its result slot) until the
/// task first runs; then it moves onto the task's stack.
///
/// Until then the task's record holds no coroutine, and no stack
/// (`TaskRecord::has_stack`); that pair is what "not started" means.
///
/// Discussion: a task takes its stack when it first runs, not when it is
/// spawned (`arch-notes/stacks.md`, "A stack at first run"). A batch of
/// tasks spawned together and run one after another then runs on the one
/// stack the previous task has just given back, still in cache, instead of
/// writing a first frame into a different cold stack per task at spawn and
/// touching each again at run. Keeping the closure in the task box, not in a
/// box of its own, costs no allocation.
pub(crate) struct Body<F>(Cell<Option<F>>);

impl<F> Body<F> {
    pub(super) fn new(f: F) -> Body<F> {
        Body(Cell::new(Some(f)))
    }
}

/// What the kernel does with the closure of a task whose result type is `T`,
/// without knowing the closure's type.
pub(crate) trait TaskBody<T> {
    /// Makes the task's coroutine on `stack`, moving the closure into it: it
    /// runs the closure, reports a panic as a task crash, and leaves the
    /// value or the panic in `out`.
    ///
    /// # Safety
    ///
    /// `rec`, `out` and everything the closure borrows must stay valid until
    /// the coroutine has returned or been dropped (as
    /// [`new_coroutine_unchecked`]). Called at most once.
    // SAFETY: callers keep the `# Safety` contract above, which this function's unsafe
    // operations rely on.
    unsafe fn start(
        &self,
        rec: *const TaskRecord,
        out: *const ResultSlot<T>,
        stack: PooledStack,
    ) -> TaskCoroutine;

    /// Drops the closure of a task that never ran (once); returns the
    /// message of a panic its drop raised, which never propagates.
    fn drop_unstarted(&self) -> Option<String>;
}

impl<T, F: FnOnce() -> T> TaskBody<T> for Body<F> {
    // SAFETY: callers keep the contract of `TaskBody::start`, which the
    // operations of this function's body rely on.
    unsafe fn start(
        &self,
        rec: *const TaskRecord,
        out: *const ResultSlot<T>,
        stack: PooledStack,
    ) -> TaskCoroutine {
        let f = self.0.take().expect("a task starts once");
        let run = move || {
            let r = panic::catch_unwind(AssertUnwindSafe(f));
            // SAFETY: the record and the slot outlive the coroutine (this
            // function's contract); the slot is written once, here, by the
            // task itself, and read only after the task has ended.
            let (h, out) = unsafe { (&*rec, &*out) };
            match r {
                Ok(value) => out.set(Some(value)),
                Err(payload) => {
                    super::crash::report_crash(h, &*payload);
                    h.keep_panic(payload);
                }
            }
        };
        // SAFETY: forwarded from this function's contract.
        unsafe { new_coroutine_unchecked(stack, rec, run) }
    }

    fn drop_unstarted(&self) -> Option<String> {
        let f = self.0.take()?;
        panic::catch_unwind(AssertUnwindSafe(move || drop(f)))
            .err()
            .map(|payload| super::record::panic_message(&*payload))
    }
}

impl<F> Drop for Body<F> {
    /// Normally empty by now: the task ran, or the kernel dropped its closure
    /// when it unwound it unstarted ([`TaskBody::drop_unstarted`]). A spawn
    /// that failed leaves the closure here; its drop must not panic out.
    fn drop(&mut self) {
        if let Some(f) = self.0.get_mut().take() {
            if panic::catch_unwind(AssertUnwindSafe(move || drop(f))).is_err() {
                eprintln!("curio: dropping the closure of a task that never started panicked");
            }
        }
    }
}

/// Holds a task's body until it starts; if the task never starts, drops the
/// body without letting a panic out.
///
/// Discussion: corosensei 0.3.4 drops the closure of a coroutine that never
/// started with `drop_initial_obj` and marks the coroutine finished only
/// afterwards; if that drop panics, the mark is never made, and the
/// coroutine's own `Drop` drops the closure a second time (a double free).
/// So the closure corosensei holds must never panic when dropped: this guard
/// drops the user's body itself, once, inside `catch_unwind`, and reports a
/// panic instead of propagating it (`arch-notes/stacks.md`, "Upstream").
struct DropQuietly<B>(Option<B>, /* the task's record */ usize);

impl<B> Drop for DropQuietly<B> {
    fn drop(&mut self) {
        let Some(body) = self.0.take() else { return };
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(body)))
        {
            // SAFETY: the record outlives its coroutine, and this guard is
            // part of the coroutine (`new_coroutine_unchecked`'s contract).
            let id = unsafe { &*(self.1 as *const TaskRecord) }.id();
            eprintln!(
                "curio: dropping the closure of task {id}, which never started, panicked: {}",
                super::record::panic_message(&*payload)
            );
        }
    }
}
