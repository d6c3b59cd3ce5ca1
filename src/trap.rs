//! The trap boundary: how a task reaches its kernel, and how it suspends.
//!
//! A task runs on its own stack. To ask the kernel for something it either calls a
//! kernel function directly (Curio's non-suspending traps: spawn, clock, cancel,
//! wake; they run on the task's stack and return at once), or it *suspends* with a
//! [`Trap`]: a switch back to the kernel's stack, which executes the trap and later
//! resumes the task with a [`Reply`].
//!
//! ```text
//!   task stack                         kernel stack (run loop)
//!   ----------                         ------------------------
//!   sleep(d)
//!    └ kernel::park(TIME_SLEEP, ..)    
//!       ├ cancel point: pending? ──Err──► returned to the caller, no switch
//!       ├ register waiter (timer heap)
//!       └ suspend(Trap::Wait) ═══════► resume() returns Yield(Wait): task stays parked
//!                                       ... timer expires: wake(waiter, Ok)
//!                                       ready.push_back(task)
//!       ◄═══════════════════════════════ resume(Ok(()))
//!   Ok(())
//! ```
//!
//! # Invariants
//!
//! - `CORE` and `TASK` name the running kernel (for the whole of `run`, its
//!   teardown included) and the running task (only while the kernel has resumed
//!   it, or while it force-unwinds it). Both pointers are set and cleared by the
//!   kernel alone, and `TASK` is only ever set while `CORE` is: `run` ends every
//!   task (its guard does, also when the kernel panics) before it clears `CORE`.
//! - The kernel keeps a task's header alive (its slot holds an `Rc`) until the
//!   task's coroutine has returned or been unwound, so the task pointer is valid
//!   whenever it is set.
//! - A header's `yielder` is non-null exactly while its task can switch: it is
//!   recorded when the coroutine first runs, and cleared before the kernel
//!   force-unwinds the task. A task with no yielder (never started, or being
//!   torn down) gets an error from [`suspend`] instead of a switch.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ptr;

use corosensei::{Coroutine, Yielder};

use crate::error::Error;
use crate::kernel::Core;
use crate::stack::PooledStack;
use crate::task::Header;

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
///
/// The reply does not travel through corosensei: the kernel leaves it in the
/// task's header (`Header::reply`) and the task picks it up when it resumes,
/// which keeps the switch itself as small as corosensei's own.
pub(crate) type TaskCoroutine = Coroutine<(), Trap, (), PooledStack>;

type TaskYielder = Yielder<(), Trap>;

thread_local! {
    /// The kernel running on this thread (for the whole of `run`).
    static CORE: Cell<*const Core> = const { Cell::new(ptr::null()) };
    /// The task the kernel has resumed, while it runs.
    static TASK: Cell<*const Header> = const { Cell::new(ptr::null()) };
}

/// Runs `f` with the kernel running on this thread, or returns `None` outside a kernel.
#[inline]
pub(crate) fn try_with_core<R>(f: impl FnOnce(&Core) -> R) -> Option<R> {
    let core = CORE.with(|c| c.get());
    if core.is_null() {
        return None;
    }
    // SAFETY: a non-null core pointer is set by `enter_kernel` for the duration of
    // `run`, and the Core it names lives in `run`'s frame until `leave_kernel`,
    // which `run`'s guard calls only after the teardown (also when unwinding).
    Some(f(unsafe { &*core }))
}

/// Runs `f` with the kernel running on this thread. Panics outside a kernel: every
/// blocking call of this crate must be made from a task.
#[inline]
pub(crate) fn with_core<R>(f: impl FnOnce(&Core) -> R) -> R {
    try_with_core(f).unwrap_or_else(|| not_in_task())
}

/// Runs `f` with the kernel and the running task's header. Panics outside a task.
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(&Core, &Header) -> R) -> R {
    let task = TASK.with(|c| c.get());
    if task.is_null() {
        not_in_task();
    }
    let core = CORE.with(|c| c.get());
    // SAFETY: a task pointer is only set while the kernel runs (or unwinds) that
    // task, which happens only while the core pointer is set: the core for the
    // whole run including teardown, the task for as long as it runs (module
    // invariants). So both are non-null and name live values.
    unsafe { f(&*core, &*task) }
}

/// True when called from inside a curio task.
pub(crate) fn in_task() -> bool {
    !TASK.with(|c| c.get()).is_null()
}

#[cold]
#[track_caller]
fn not_in_task() -> ! {
    panic!("curio: this call must be made from a curio task; start one with curio::run(|| ...)")
}

/// What the stack-overflow handler needs about the task running on this thread
/// (all zero when none). Async-signal-safe: one thread-local read and plain loads.
pub(crate) fn running_overflow_info() -> crate::sys::OverflowInfo {
    let task = TASK.with(|c| c.get());
    if task.is_null() {
        return crate::sys::OverflowInfo::NONE;
    }
    // SAFETY: a non-null task pointer is set by the kernel only while that task
    // runs, and its header outlives the run (module invariants).
    let h = unsafe { &*task };
    let guard = h.guard.get();
    crate::sys::OverflowInfo {
        guard_lo: guard,
        guard_hi: if guard == 0 {
            0
        } else {
            guard + crate::sys::page_size()
        },
        task_id: h.id,
        stack_size: h.stack_bytes.get(),
        name_ptr: h.name.as_ptr() as usize,
        name_len: h.name.len(),
    }
}

/// Marks this thread as running `core`. Returns false if a kernel already runs here.
pub(crate) fn enter_kernel(core: &Core) -> bool {
    CORE.with(|c| {
        if !c.get().is_null() {
            return false;
        }
        c.set(core);
        TASK.with(|t| t.set(ptr::null()));
        true
    })
}

/// Clears the kernel mark set by [`enter_kernel`].
pub(crate) fn leave_kernel() {
    CORE.with(|c| c.set(ptr::null()));
    TASK.with(|t| t.set(ptr::null()));
}

/// Records which task the kernel is about to resume (`None` when it is back).
#[inline]
pub(crate) fn set_task(task: Option<&Header>) {
    TASK.with(|c| c.set(task.map_or(ptr::null(), |t| t as *const Header)));
}

/// Suspends the running task with `trap` and returns the kernel's reply.
///
/// Always inlined: the switch must happen in the frame of the blocking call's
/// caller (see `arch-notes/trap-flow.md`).
#[inline(always)]
pub(crate) fn suspend(trap: Trap) -> Reply {
    let task = TASK.with(|c| c.get());
    if task.is_null() {
        not_in_task();
    }
    // SAFETY: a non-null task pointer names the running task's live header.
    let y = unsafe { (*task).yielder.get() };
    if y.is_null() {
        // The task is being force-unwound (or never started and its closure
        // is being dropped): there is no yielder to switch with.
        return Err(crate::kernel::refuse_switch());
    }
    // SAFETY: a non-null `y` was recorded by `new_coroutine_unchecked`'s body
    // from the `&Yielder` corosensei passed it; that yielder lives at the base
    // of this task's stack for the coroutine's whole life, and we are running
    // on that stack now (the yielder is cleared before the task is unwound, so
    // a destructor run by the unwind never gets here).
    let yielder: &TaskYielder = unsafe { &*(y as *const TaskYielder) };
    yielder.suspend(trap);
    // SAFETY: as above; we are running again, so the header is still live.
    match unsafe { (*task).reply.take() } {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// Creates a task coroutine that records its yielder in `header` and runs `body`.
///
/// # Safety
///
/// Everything `body` borrows must stay valid until the coroutine has returned or
/// been dropped (which force-unwinds it). `header` must stay valid as long.
// SAFETY: callers must keep the contract above, which its `unsafe` blocks
// rely on.
pub(crate) unsafe fn new_coroutine_unchecked(
    stack: PooledStack,
    header: *const Header,
    body: impl FnOnce(),
) -> TaskCoroutine {
    let header = header as usize;
    let body = DropQuietly(Some(body));
    let f = move |y: &TaskYielder, _first: ()| {
        // SAFETY: the caller guarantees the header outlives the coroutine.
        let h = unsafe { &*(header as *const Header) };
        h.yielder.set(y as *const TaskYielder as *const ());
        let mut body = body;
        let run = body.0.take().expect("a task's body runs once");
        std::mem::forget(body); // empty now: nothing to drop
        run();
    };
    // SAFETY: forwarded from this function's contract.
    unsafe { Coroutine::with_stack_unchecked(stack, f) }
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
struct DropQuietly<B>(Option<B>);

impl<B> Drop for DropQuietly<B> {
    fn drop(&mut self) {
        let Some(body) = self.0.take() else { return };
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(body)))
        {
            let id = try_current_id().map_or_else(String::new, |id| format!(" {id}"));
            eprintln!(
                "curio: dropping the closure of task{id}, which never started, panicked: {}",
                crate::task::panic_message(&*payload)
            );
        }
    }
}

/// The id of the task marked as running, if any (for reports).
fn try_current_id() -> Option<u64> {
    let task = TASK.with(|c| c.get());
    // SAFETY: a non-null task pointer names a live header (module invariants).
    (!task.is_null()).then(|| unsafe { (*task).id })
}
