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
//! - `CONTEXT` names the running kernel (for the whole of `run`) and the running
//!   task (only while the kernel has resumed it). Both pointers are set and cleared
//!   by the kernel alone.
//! - The kernel keeps a task's header alive (its slot holds an `Rc`) until the
//!   task's coroutine has returned, so the task pointer is valid whenever it is set.
//! - The core outlives every task: `run` drives all tasks to completion (or
//!   force-unwinds them) before its `Core` is dropped.
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
pub(crate) type TaskCoroutine = Coroutine<Reply, Trap, (), PooledStack>;

type TaskYielder = Yielder<Reply, Trap>;

#[derive(Clone, Copy)]
struct Context {
    core: *const Core,
    task: *const Header,
}

thread_local! {
    static CONTEXT: Cell<Context> =
        const { Cell::new(Context { core: ptr::null(), task: ptr::null() }) };
}

/// Runs `f` with the kernel running on this thread, or returns `None` outside a kernel.
#[inline]
pub(crate) fn try_with_core<R>(f: impl FnOnce(&Core) -> R) -> Option<R> {
    let ctx = CONTEXT.with(|c| c.get());
    if ctx.core.is_null() {
        return None;
    }
    // SAFETY: a non-null core pointer is set by `enter_kernel` for the duration of
    // `run`, and the Core it names lives in `run`'s frame until `leave_kernel`.
    Some(f(unsafe { &*ctx.core }))
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
    let ctx = CONTEXT.with(|c| c.get());
    if ctx.core.is_null() || ctx.task.is_null() {
        not_in_task();
    }
    // SAFETY: both pointers are non-null, so the kernel set them: the core for the
    // whole run, the task for as long as it runs (module invariants).
    unsafe { f(&*ctx.core, &*ctx.task) }
}

/// True when called from inside a curio task.
pub(crate) fn in_task() -> bool {
    let ctx = CONTEXT.with(|c| c.get());
    !ctx.core.is_null() && !ctx.task.is_null()
}

#[cold]
#[track_caller]
fn not_in_task() -> ! {
    panic!("curio: this call must be made from a curio task; start one with curio::run(|| ...)")
}

/// Marks this thread as running `core`. Returns false if a kernel already runs here.
pub(crate) fn enter_kernel(core: &Core) -> bool {
    CONTEXT.with(|c| {
        let ctx = c.get();
        if !ctx.core.is_null() {
            return false;
        }
        c.set(Context {
            core,
            task: ptr::null(),
        });
        true
    })
}

/// Clears the kernel mark set by [`enter_kernel`].
pub(crate) fn leave_kernel() {
    CONTEXT.with(|c| {
        c.set(Context {
            core: ptr::null(),
            task: ptr::null(),
        })
    });
}

/// Records which task the kernel is about to resume (`None` when it is back).
#[inline]
pub(crate) fn set_task(task: Option<&Header>) {
    CONTEXT.with(|c| {
        let mut ctx = c.get();
        ctx.task = task.map_or(ptr::null(), |t| t as *const Header);
        c.set(ctx);
    });
}

/// Suspends the running task with `trap` and returns the kernel's reply.
#[inline]
pub(crate) fn suspend(trap: Trap) -> Reply {
    let y = with_current(|_, task| task.yielder.get());
    debug_assert!(
        !y.is_null(),
        "a running task always has its yielder recorded"
    );
    // SAFETY: `y` was recorded by `new_coroutine`'s body from the `&Yielder`
    // corosensei passed it; that yielder lives at the base of this task's stack
    // for the coroutine's whole life, and we are running on that stack now.
    let yielder: &TaskYielder = unsafe { &*(y as *const TaskYielder) };
    yielder.suspend(trap)
}

/// Creates a task coroutine that records its yielder in `header` and runs `body`.
///
/// # Safety
///
/// Everything `body` borrows must stay valid until the coroutine has returned or
/// been dropped (which force-unwinds it). `header` must stay valid as long.
pub(crate) unsafe fn new_coroutine_unchecked(
    stack: PooledStack,
    header: *const Header,
    body: impl FnOnce(),
) -> TaskCoroutine {
    let header = header as usize;
    let f = move |y: &TaskYielder, _first: Reply| {
        // SAFETY: the caller guarantees the header outlives the coroutine.
        let h = unsafe { &*(header as *const Header) };
        h.yielder.set(y as *const TaskYielder as *const ());
        body();
    };
    // SAFETY: forwarded from this function's contract.
    unsafe { Coroutine::with_stack_unchecked(stack, f) }
}
