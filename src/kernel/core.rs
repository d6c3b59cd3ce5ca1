//! The kernel's state and loop: the task table, the ready queue, timers, the
//! poller; spawning, parking, waking, cancelling and timing out tasks; and the
//! thread's record of which kernel and which task are running.
//!
//! # Invariants
//!
//! - `Core` is the only code that changes scheduling state: task records
//!   (through their kernel-only operations), the ready queue, the timer heap,
//!   the fd table. Everything else reaches it through `super::traps`.
//! - Spawning and waking never switch tasks: they only append to the ready queue.
//! - A task is *parked* exactly when its record's wait id is non-zero. Waking,
//!   cancelling and timing out all clear it first, so each wait ends once.
//! - No `RefCell` borrow of scheduler state is held across a resume.
//! - `CORE` and `TASK` name the running kernel (for the whole of `run`, its
//!   teardown included) and the running task (only while the kernel has
//!   resumed it, or while it force-unwinds it). Both are set and cleared here
//!   alone, and `TASK` is only ever set while `CORE` is: `run` ends every task
//!   (its guard does, also when the kernel panics) before it clears `CORE`.
//!
//! # Example
//!
//! ```text
//! spawn     slots[i] = task; ready.push(task)          (never switches)
//! step      set_task(task); resume; set_task(None); act on the trap
//! park      begin_wait (wait id, state); register the waiter; suspend
//! wake      waiter's id still current? end_wait; ready.push(task)
//! ```
#![allow(unsafe_code)] // the thread's kernel and task pointers; a popped ready entry

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::Builder;
use super::boxes::{self, TaskRc};
use super::debug::{Hook, KernelHandle, LongBlock, Snapshot, TaskInfo, TaskRow, Traceback};
use super::ready::ReadyQueue;
use super::record::{AnyTask, Identity, RunState, State, TaskBoxOf, TaskRecord};
use super::switch::{self, Reply, TaskCoroutine, Trap};
use super::watch::{Answer, Query, Request, Shared, Watchdog};
use crate::deadlines::{Arm, Block, Deadlines};
use crate::error::{Error, ErrorKind, Result};
use crate::poller::{Direction, InboxSender, Message, Poller};
use crate::stack;
use crate::sys;
use crate::timer::TimerHeap;
use crate::wait::{WaitQueue, Waiter};

// ---------------------------------------------------------------------------
// The thread's kernel and task
// ---------------------------------------------------------------------------

thread_local! {
    /// The kernel running on this thread (for the whole of `run`).
    static CORE: Cell<*const Core> = const { Cell::new(ptr::null()) };
    /// The task the kernel has resumed, while it runs.
    static TASK: Cell<*const TaskRecord> = const { Cell::new(ptr::null()) };
}

/// Runs `f` with the kernel running on this thread, or returns `None` outside a kernel.
#[inline]
pub(super) fn try_with_core<R>(f: impl FnOnce(&Core) -> R) -> Option<R> {
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
pub(super) fn with_core<R>(f: impl FnOnce(&Core) -> R) -> R {
    try_with_core(f).unwrap_or_else(|| not_in_task())
}

/// Runs `f` with the kernel and the running task's record. Panics outside a task.
#[inline]
pub(super) fn with_current<R>(f: impl FnOnce(&Core, &TaskRecord) -> R) -> R {
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

/// Runs `f` with the running task's record alone (the switch path: one
/// thread-local read). Panics outside a task.
#[inline(always)]
pub(super) fn with_running<R>(f: impl FnOnce(&TaskRecord) -> R) -> R {
    try_current_record(f).unwrap_or_else(|| not_in_task())
}

/// The running task's record, if a task is running on this thread.
#[inline(always)]
pub(super) fn try_current_record<R>(f: impl FnOnce(&TaskRecord) -> R) -> Option<R> {
    let task = TASK.with(|c| c.get());
    if task.is_null() {
        return None;
    }
    // SAFETY: as in `with_current`: a non-null task pointer names the live
    // record of the task the kernel is running.
    Some(f(unsafe { &*task }))
}

/// True when called from inside a curio task.
pub(super) fn in_task() -> bool {
    !TASK.with(|c| c.get()).is_null()
}

#[cold]
#[track_caller]
fn not_in_task() -> ! {
    panic!("curio: this call must be made from a curio task; start one with curio::run(|| ...)")
}

/// Marks this thread as running `core`. Returns false if a kernel already runs here.
pub(super) fn enter_kernel(core: &Core) -> bool {
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
pub(super) fn leave_kernel() {
    CORE.with(|c| c.set(ptr::null()));
    TASK.with(|t| t.set(ptr::null()));
}

/// Records which task the kernel is about to resume (`None` when it is back).
#[inline]
fn set_task(task: Option<&TaskRecord>) {
    TASK.with(|c| c.set(task.map_or(ptr::null(), |t| t as *const TaskRecord)));
}

/// [`set_task`], returning the task recorded before (a capture made from
/// inside a task resumes another task, then restores the caller).
fn replace_task(task: &TaskRecord) -> *const TaskRecord {
    TASK.with(|c| c.replace(task as *const TaskRecord))
}

/// What the stack-overflow handler needs about the task running on this thread
/// (all zero when none). Async-signal-safe: one thread-local read and plain loads.
pub(super) fn running_overflow_info() -> sys::OverflowInfo {
    let task = TASK.with(|c| c.get());
    if task.is_null() {
        return sys::OverflowInfo::NONE;
    }
    // SAFETY: a non-null task pointer is set by the kernel only while that task
    // runs, and its record outlives the run (module invariants).
    let h = unsafe { &*task };
    let (stack_size, guard) = h.stack_info();
    let name = h.name();
    sys::OverflowInfo {
        guard_lo: guard,
        guard_hi: if guard == 0 {
            0
        } else {
            guard + sys::page_size()
        },
        task_id: h.id(),
        stack_size,
        name_ptr: name.as_ptr() as usize,
        name_len: name.len(),
    }
}

// ---------------------------------------------------------------------------
// Tuning
// ---------------------------------------------------------------------------

/// How many task switches may pass between two looks at I/O and the clock while
/// tasks stay ready. See `arch-notes/io-readiness.md`.
///
/// Discussion: Curio polls (zero timeout) between every two passes over the ready
/// queue, so a task spinning on `sleep(0)` never starves I/O. A zero-timeout
/// `epoll_wait` costs ~260 ns here and a clock read 35–60 ns, against ~10 ns for a
/// switch, so doing both on every pass would make switching 10× slower. Looking
/// every 64 switches keeps the guarantee (I/O and deadlines are seen within 64
/// switches, a microsecond or so) at under 5 ns per switch.
const POLL_INTERVAL: usize = 64;

/// Wait ids are unique for the life of the process, not just of one kernel.
///
/// Discussion: a wait is named by a [`Waiter`] (the task's slot and the wait's
/// id), and copies of it sit in wait queues that belong to primitives, not to
/// the kernel. `Event`, `Lock`, `Queue` … may outlive a kernel (a `static`, a
/// leaked box, a value moved to another thread), and so may the waiters in
/// them. If ids restarted in every kernel, such a stale waiter could name an
/// unrelated wait of a later kernel with the same slot and id, and waking it
/// would end that wait early (issue 8, hole 2). Each kernel takes its ids in
/// blocks from this counter, so no two waits in the process share an id, and a
/// stale waiter can only ever name a wait that has ended. The cost is one
/// atomic add per 65 536 waits.
static WAIT_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
const WAIT_ID_BLOCK: u64 = 1 << 16;

/// How many tasks must have ended since the kernel's tables were last shrunk
/// before an idle kernel shrinks them again (and trims the allocator).
const SHRINK_AFTER: usize = 4096;

/// Empty run states ([`RunState`]) a kernel keeps when it goes idle (96 bytes each).
const IDLE_CORO_BOXES: usize = 64;

/// When the virtual clock has tasks waiting on I/O or other threads, how long to
/// wait for real before jumping to the next deadline.
const AUTOJUMP_GRACE: Duration = Duration::from_millis(5);

// ---------------------------------------------------------------------------
// The clock
// ---------------------------------------------------------------------------

/// Kernel time: nanoseconds since the kernel started, real or virtual.
struct Clock {
    epoch: Instant,
    virtual_now: Option<Cell<u64>>,
}

impl Clock {
    #[inline]
    fn now(&self) -> u64 {
        match &self.virtual_now {
            Some(v) => v.get(),
            None => self.epoch.elapsed().as_nanos() as u64,
        }
    }
}

// ---------------------------------------------------------------------------
// Scheduler state
// ---------------------------------------------------------------------------

/// What a timer entry is for.
#[derive(Debug, Clone, Copy)]
enum TimerItem {
    /// Wake this waiter (a sleeping task).
    Sleep(Waiter),
    /// Deliver a timeout to this task if its armed deadline is still this one.
    Timeout { slot: u32, task_id: u64 },
}

struct Slot {
    task: Option<TaskRc<AnyTask>>,
}

pub(super) struct Core {
    slots: RefCell<Vec<Slot>>,
    free_slots: RefCell<Vec<u32>>,
    /// Tasks to run, in order (thin pointers; their slots keep them alive).
    ready: ReadyQueue,
    /// Free default-size stacks, kept by the kernel so tasks skip the
    /// thread-local pool; returned to it when the kernel ends. The most
    /// recently given back is last, and is the next one taken.
    stacks: RefCell<Vec<stack::PooledStack>>,
    /// How many of `stacks` are promised to default-size tasks that have not
    /// run yet (each takes one when it first runs). Invariant:
    /// `promised <= stacks.len()`, so a spawned task always finds its stack.
    promised: Cell<usize>,
    /// Empty run states ([`RunState`]), the most recently given back last:
    /// a task takes one when it first runs, so it is still in cache. Boxes,
    /// not values: a record holds its run state by address.
    #[allow(clippy::vec_box)]
    coro_boxes: RefCell<Vec<Box<RunState>>>,
    timers: RefCell<TimerHeap<TimerItem>>,
    clock: Clock,
    poller: RefCell<Poller>,
    next_task_id: Cell<u64>,
    /// The next wait id to hand out, and the end of this kernel's block of
    /// ids (see [`WAIT_IDS`]).
    next_wait_id: Cell<u64>,
    wait_ids_end: Cell<u64>,
    /// Tasks alive (spawned, not yet terminated).
    live: Cell<usize>,
    /// Tasks parked in waits that something outside the kernel loop can end
    /// (I/O readiness, another thread, a signal).
    external: Cell<usize>,
    /// Set while tasks are being force-unwound, so their unwinding is not
    /// reported as a crash.
    unwinding: Cell<bool>,
    stack_size: usize,
    /// Warm stacks kept when idle (`Builder::idle_stacks`).
    idle_stacks: usize,
    /// Free slots right after the tables were last shrunk.
    shrunk_free: Cell<usize>,
    thread_pool_size: usize,
    /// Distinguishes kernels, so a socket registered with a kernel that has
    /// ended is not deregistered from a later one on the same thread.
    id: u64,
    /// Scratch space for the waiters a poll wakes (kept to avoid allocating).
    woken: RefCell<Vec<Waiter>>,
    /// Run once every task has ended (services release what they hold).
    exit_hooks: RefCell<Vec<Box<dyn FnOnce()>>>,
    /// Present when the kernel is watched (monitor, hooks, long blocks): it
    /// then runs the watched form of its loop.
    watch: Option<Watch>,
}

/// What a watched kernel keeps for its watchers (`watch.rs`, `debug.rs`).
struct Watch {
    shared: Arc<Shared>,
    /// Every hook.
    hooks: Vec<Arc<dyn Hook>>,
    /// The hooks that want `running`/`suspended`.
    switch_hooks: Vec<Arc<dyn Hook>>,
    /// The first task id not yet announced to the hooks as created.
    announced: Cell<u64>,
    watchdog: RefCell<Option<Watchdog>>,
    /// The last long block whose end was reported (`Shared::flagged`).
    long_handled: Cell<u64>,
}

impl Core {
    pub(super) fn new(config: &Builder, hooks: Vec<Arc<dyn Hook>>) -> Result<Core> {
        let poller = Poller::new()?;
        let id = {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        };
        let watch = (!hooks.is_empty()).then(|| Watch {
            shared: Arc::new(Shared::new(id, poller.sender(), hooks.clone())),
            switch_hooks: hooks.iter().filter(|h| h.switches()).cloned().collect(),
            hooks,
            announced: Cell::new(1),
            watchdog: RefCell::new(None),
            long_handled: Cell::new(0),
        });
        Ok(Core {
            slots: RefCell::new(Vec::new()),
            free_slots: RefCell::new(Vec::new()),
            ready: ReadyQueue::new(),
            stacks: RefCell::new(Vec::new()),
            promised: Cell::new(0),
            coro_boxes: RefCell::new(Vec::new()),
            timers: RefCell::new(TimerHeap::new()),
            clock: Clock {
                epoch: Instant::now(),
                virtual_now: config.virtual_clock.then(|| Cell::new(0)),
            },
            poller: RefCell::new(poller),
            next_task_id: Cell::new(1),
            next_wait_id: Cell::new(0),
            wait_ids_end: Cell::new(0),
            live: Cell::new(0),
            external: Cell::new(0),
            unwinding: Cell::new(false),
            stack_size: stack::checked_size(config.stack_size)
                .map_err(|e| Error::usage(e.to_string()))?,
            idle_stacks: config.idle_stacks,
            shrunk_free: Cell::new(0),
            thread_pool_size: config.thread_pool_size,
            id,
            woken: RefCell::new(Vec::new()),
            exit_hooks: RefCell::new(Vec::new()),
            watch,
        })
    }

    // ----- tasks -----------------------------------------------------------

    /// A fresh id for a task about to be spawned.
    pub(super) fn next_task_id(&self) -> u64 {
        let id = self.next_task_id.get();
        self.next_task_id.set(id + 1);
        id
    }

    /// The stack size tasks get when their builder names none.
    pub(super) fn default_stack_size(&self) -> usize {
        self.stack_size
    }

    /// Runs `hook` when this kernel has shut down (every task ended). Services
    /// such as the worker pool use it to release what they hold.
    pub(super) fn at_exit(&self, hook: Box<dyn FnOnce()>) {
        self.exit_hooks.borrow_mut().push(hook);
    }

    /// The `run_in_thread` pool size this kernel was built with.
    pub(super) fn thread_pool_size(&self) -> usize {
        self.thread_pool_size
    }

    pub(super) fn is_unwinding(&self) -> bool {
        self.unwinding.get()
    }

    /// Adds `task`, whose box holds its closure, at the back of the ready
    /// queue. Never switches.
    ///
    /// A task of the kernel's stack size gets its stack when it first runs
    /// ([`Core::start`]); here one is only promised, so that a spawn that
    /// cannot have a stack fails now, not later. Another size takes its
    /// stack now.
    ///
    /// # Safety
    ///
    /// Everything the task's closure borrows must outlive the task: its
    /// closure is started or dropped, and its coroutine returns or is
    /// unwound, before any such borrow ends.
    #[allow(unsafe_code)]
    // SAFETY: callers keep the `# Safety` contract above, which this function's unsafe
    // operations rely on.
    pub(super) unsafe fn spawn(&self, task: TaskRc<AnyTask>) -> Result<()> {
        let h = task.record();
        if h.stack_size() == self.stack_size {
            self.promise_stack()?; // its coroutine stays `None` until `start`
        } else {
            let st = stack::take(h.stack_size())?;
            h.set_stack(st.size());
            let guard = st.guard().0;
            // SAFETY: forwarded from this function's contract; the slot below
            // keeps the box alive until the task has ended.
            let coro = unsafe { task.start(st) };
            h.set_run(self.run_state(coro, guard));
            // A watched kernel names new tasks before their first slice, on
            // the cold path of a first run; this one has none.
            if self.watch.is_some() {
                self.announce_new_tasks(Some(h));
            }
        }
        let slot = match self.free_slots.borrow_mut().pop() {
            Some(i) => {
                self.slots.borrow_mut()[i as usize].task = Some(task.clone());
                i
            }
            None => {
                let mut slots = self.slots.borrow_mut();
                slots.push(Slot {
                    task: Some(task.clone()),
                });
                (slots.len() - 1) as u32
            }
        };
        h.set_slot(slot);
        h.set_state(State::Ready);
        self.live.set(self.live.get() + 1);
        self.ready.push(h);
        Ok(())
    }

    /// Promises one of the kernel's free stacks to a task that has not run
    /// yet, taking one more from the thread's pool if every free one is
    /// promised already.
    #[inline]
    fn promise_stack(&self) -> Result<()> {
        let promised = self.promised.get();
        let mut stacks = self.stacks.borrow_mut();
        if stacks.len() == promised {
            stacks.push(stack::take(self.stack_size)?);
        }
        self.promised.set(promised + 1);
        Ok(())
    }

    /// A task runs for the first time: it takes the stack promised to it (the
    /// one most recently given back, so likely still in cache) and its
    /// coroutine is made there, from the closure in its box.
    ///
    /// False if the task has no code to run (force-unwound already).
    #[cold]
    #[inline(never)]
    fn start(&self, h: &TaskRecord) -> bool {
        if h.has_stack() {
            return false;
        }
        let promised = self.promised.get();
        self.promised.set(promised - 1);
        let st = self
            .stacks
            .borrow_mut()
            .pop()
            .expect("a stack is kept for every task that has not run (`promised`)");
        h.set_stack(st.size());
        let guard = st.guard().0;
        let slots = self.slots.borrow();
        let task = slots[h.slot() as usize]
            .task
            .as_ref()
            .expect("a task being run is in its slot");
        // SAFETY: `spawn`'s contract covers what the closure borrows; the
        // slot keeps the box alive until the task has ended.
        let coro = unsafe { task.start(st) };
        drop(slots);
        h.set_run(self.run_state(coro, guard));
        true
    }

    /// A run state from the pool, holding `coro`, on the stack whose guard
    /// page starts at `guard`.
    #[inline]
    fn run_state(&self, coro: TaskCoroutine, guard: usize) -> Box<RunState> {
        let mut b = self
            .coro_boxes
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Box::new(RunState::new()));
        b.fill(coro, guard);
        b
    }

    /// Takes `h`'s run state back into the pool; returns the coroutine it
    /// held, if any.
    ///
    /// The kernel calls it only between resumes of `h`, and keeps no
    /// reference from [`TaskRecord::run`] across a call that could get here:
    /// `step` drops its own before it finishes a task.
    #[inline]
    fn take_coroutine(&self, h: &TaskRecord) -> Option<TaskCoroutine> {
        // SAFETY: no reference to `h`'s run state is alive (above): the ones
        // the kernel takes live within one resume or one report, and a task
        // reaches its own only from its own stack, which is not running.
        #[allow(unsafe_code)]
        let mut b = unsafe { h.take_run() }?;
        let coro = b.empty();
        self.coro_boxes.borrow_mut().push(b);
        coro
    }

    pub(super) fn spawn_main<F, T>(
        &self,
        main: F,
        out: Rc<RefCell<Option<std::thread::Result<T>>>>,
    ) -> Result<TaskRc<AnyTask>>
    where
        F: FnOnce() -> T,
    {
        let record = TaskRecord::new(Identity {
            id: self.next_task_id(),
            parent: None,
            name: "main".into(),
            daemon: false,
            is_main: true,
            stack_size: self.stack_size,
        });
        // Main's panic goes to `out` (and from there out of `run`), never to
        // the crash report: its closure catches it first.
        let body = move || {
            let r = panic::catch_unwind(AssertUnwindSafe(main));
            *out.borrow_mut() = Some(r);
        };
        let cell = TaskRc::new_with(|| TaskBoxOf::new(record, body));
        #[allow(unsafe_code)]
        // SAFETY: `run` does not return or unwind past its frame before this
        // task has ended: it drives main to completion, shutdown ends every
        // task, and `run`'s guard force-unwinds whatever is left (also when
        // the kernel panics; an unstarted task's closure is dropped then)
        // before the borrowed `main` and `out` can go. A coroutine whose
        // unwind failed is leaked, never run again. Erasing the closure's
        // lifetime in the box's type is covered by the same argument.
        let any = unsafe { super::traps::erase(cell) };
        #[allow(unsafe_code)]
        // SAFETY: as just above.
        unsafe { self.spawn(any.clone()) }?;
        Ok(any)
    }

    /// Resumes task `h` once and executes the trap it suspends with.
    ///
    /// The coroutine is resumed in place, in its header; its slot keeps the
    /// task alive meanwhile. Inlined into the run loop: this is the switch.
    #[inline(always)]
    fn step(&self, h: &TaskRecord) {
        let result = {
            // One test on the switch path: no run state takes the cold branch
            // (its first run, or force-unwound already).
            let run = match h.run() {
                Some(run) => run,
                None if self.start(h) => h.run().expect("a started task has a run state"),
                None => return,
            };
            let mut code = run.coro.borrow_mut();
            let Some(coro) = code.as_mut() else {
                return;
            };
            h.start_slice();
            set_task(Some(h));
            let result = coro.resume(());
            set_task(None);
            result
        };
        match result {
            corosensei::CoroutineResult::Yield(Trap::Yield) => {
                h.set_state(State::Ready);
                self.ready.push(h);
            }
            corosensei::CoroutineResult::Yield(Trap::Wait) => {}
            corosensei::CoroutineResult::Return(()) => {
                if let Some(task) = self.task_at(h.slot()) {
                    self.finish(&task);
                }
            }
        }
    }

    /// [`Core::step`] for a watched kernel: the same, with the per-switch
    /// record kept (a few plain stores) and, with `HOOKS`, the hooks called
    /// around the slice.
    #[inline(always)]
    fn step_watched<const HOOKS: bool>(&self, w: &Watch, h: &TaskRecord) {
        let beat = &w.shared.beat;
        // `(id, cycles)` names the slice for the watchdog, so a task that
        // yields in a loop starts a new slice each time. No store ends it:
        // `running` keeps the id until the next slice, or until the kernel
        // goes into code of its own beyond the switch (`Core::beat_kernel`).
        // Stored before the coroutine is borrowed: a cold first run stores
        // it again (`first_run_watched`); after the `running` hooks when
        // there are some, so that their time is not the task's.
        let begin = |cycles: u64| {
            beat.slice.store(cycles, Relaxed);
            beat.from.store(h.suspended_in() as u8, Relaxed);
            beat.running.store(h.id(), Relaxed);
        };
        if !HOOKS {
            begin(h.cycles());
        }
        let result = {
            // One test on the switch path: no run state takes the cold branch
            // (its first run, or force-unwound already).
            let Some(run) = h.run() else {
                self.first_run_watched::<HOOKS>(w, h);
                return;
            };
            let mut code = run.coro.borrow_mut();
            let Some(coro) = code.as_mut() else {
                return;
            };
            h.start_slice();
            if HOOKS {
                self.call_hooks(&w.switch_hooks, |hook| hook.running(&TaskInfo::new(h)));
                begin(h.cycles() - 1);
            }
            set_task(Some(h));
            let result = coro.resume(());
            set_task(None);
            if HOOKS {
                beat.running.store(0, Relaxed);
            }
            result
        };
        // Hooks that follow every switch hear of new tasks right after the
        // slice that made them, as Curio orders it (`created` before the
        // parent's `suspended`); otherwise they hear of them before their
        // first run (`first_run_watched`).
        if HOOKS && self.next_task_id.get() != w.announced.get() {
            self.announce_new_tasks(None);
        }
        // What the next slice is resumed from: a constant store after a
        // yield, the wait's state after a wait.
        match result {
            corosensei::CoroutineResult::Yield(Trap::Yield) => {
                h.set_state(State::Ready);
                h.set_suspended_in(State::Ready);
                self.ready.push(h);
            }
            corosensei::CoroutineResult::Yield(Trap::Wait) => {
                h.set_suspended_in(h.state());
            }
            corosensei::CoroutineResult::Return(()) => {
                if HOOKS {
                    self.call_hooks(&w.switch_hooks, |hook| hook.suspended(&TaskInfo::new(h)));
                } else {
                    self.beat_kernel(w);
                }
                if let Some(task) = self.task_at(h.slot()) {
                    self.finish(&task);
                    self.note_terminated(h);
                }
                return;
            }
        }
        if HOOKS {
            self.call_hooks(&w.switch_hooks, |hook| hook.suspended(&TaskInfo::new(h)));
        }
    }

    /// A task with no coroutine is about to run in a watched kernel: its
    /// first run (or it was force-unwound already, and does not run). The
    /// tasks spawned since the last announcement, this one among them, are
    /// announced first (`announce_new_tasks`), so every task is named
    /// before its first slice at no cost to the others.
    #[cold]
    #[inline(never)]
    fn first_run_watched<const HOOKS: bool>(&self, w: &Watch, h: &TaskRecord) {
        self.beat_kernel(w);
        self.announce_new_tasks(Some(h));
        if self.start(h) {
            self.step_watched::<HOOKS>(w, h);
        }
    }

    /// The kernel goes into code of its own beyond the switch (looking
    /// outside, announcing tasks, finishing one, calling hooks): the beat
    /// stops naming the task whose slice ran last, so that time is the
    /// kernel's, never a task's long block. Off the switch path: between two
    /// slices of one pass the beat keeps naming the last task (the pop and
    /// push of the ready queue, a few nanoseconds, count as its time).
    #[inline(always)]
    fn beat_kernel(&self, w: &Watch) {
        w.shared.beat.running.store(0, Relaxed);
    }

    /// When the loop looks outside (every `POLL_INTERVAL` slices, or when
    /// nothing is ready): if the watchdog reported a slice as a long block
    /// since the last look, that slice has ended; report it once more, with
    /// how long it ran and where the task suspended (the watchdog measured
    /// from when it first saw the slice; the end is seen here, at most
    /// `POLL_INTERVAL` slices late, off the switch path).
    #[inline]
    fn check_long_block(&self) {
        let Some(w) = &self.watch else { return };
        let flagged = w.shared.flagged.load(std::sync::atomic::Ordering::Acquire);
        if flagged != w.long_handled.get() {
            w.long_handled.set(flagged);
            self.long_block_ended();
        }
    }

    /// Calls `f` on each of `hooks`; a hook that panics is reported and
    /// the kernel goes on.
    fn call_hooks(&self, hooks: &[Arc<dyn Hook>], f: impl Fn(&dyn Hook)) {
        for hook in hooks {
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| f(&**hook))) {
                eprintln!(
                    "curio: a debug hook panicked: {}",
                    super::record::panic_message(&*p)
                );
            }
        }
    }

    /// Tells the hooks (and the watchers' name table) about the tasks
    /// spawned since the last call, in the order of their ids. They are all
    /// still in the ready queue (a spawned task is queued at once and leaves
    /// the queue only by running, or by a forced unwind, which announces
    /// first), except `also`: a new task out of the queue, the one about to
    /// run for the first time or being spawned.
    ///
    /// When: before a task's first slice (`Core::first_run_watched`), at the
    /// spawn of a task with a stack of its own (its first run has no cold
    /// path to hook), after each slice when hooks follow every switch
    /// (Curio's order: `created` before the parent's `suspended`), and before
    /// a forced unwind. Not per pass: every task is named before it runs,
    /// and the switch pays nothing for it.
    #[cold]
    #[inline(never)]
    fn announce_new_tasks(&self, also: Option<&TaskRecord>) {
        let Some(w) = &self.watch else { return };
        let (first, end) = (w.announced.get(), self.next_task_id.get());
        if first == end {
            return;
        }
        w.announced.set(end);
        let mut slots = Vec::new();
        self.ready.slots_of_ids(first, end, &mut slots);
        let mut also = also.filter(|h| (first..end).contains(&h.id()));
        let announce = |h: &TaskRecord| {
            w.shared
                .names
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(h.id(), Arc::from(h.name()));
            self.call_hooks(&w.hooks, |hook| hook.created(&TaskInfo::new(h)));
        };
        for (id, slot) in slots {
            if let Some(h) = also.take_if(|h| h.id() < id) {
                announce(h);
            }
            if let Some(task) = self.task_at(slot) {
                announce(task.record());
            }
        }
        if let Some(h) = also {
            announce(h);
        }
    }

    /// Tells the hooks that `h` has ended.
    fn note_terminated(&self, h: &TaskRecord) {
        let Some(w) = &self.watch else { return };
        self.call_hooks(&w.hooks, |hook| hook.terminated(&TaskInfo::new(h)));
        w.shared
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&h.id());
        w.shared
            .cpu
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&h.id());
    }

    /// Tells the hooks that task `h` crashed (`report` went to stderr).
    pub(super) fn note_crash(&self, h: &TaskRecord, report: &str) {
        let Some(w) = &self.watch else { return };
        self.call_hooks(&w.hooks, |hook| hook.crashed(&TaskInfo::new(h), report));
    }

    /// A slice the watchdog reported as a long block has ended: report it
    /// once more, with how long it ran and (if it suspended) where.
    #[cold]
    #[inline(never)]
    fn long_block_ended(&self) {
        let Some(w) = &self.watch else { return };
        let since = w.shared.epoch + Duration::from_nanos(w.shared.flagged_since.load(Relaxed));
        let ran = since.elapsed();
        let id = w.shared.flagged_task.load(Relaxed);
        let from = super::watch::state_from_u8(w.shared.flagged_from.load(Relaxed));
        let task = self.task_by_id(id);
        let name: Arc<str> = match &task {
            Some(t) => Arc::from(t.record().name()),
            None => w.shared.name_of(id).unwrap_or_else(|| "?".into()),
        };
        let at = task.as_ref().and_then(|t| self.capture_stack(t).ok());
        let report = LongBlock::new(id, name, ran, false, from, at);
        for hook in &w.hooks {
            if hook.long_block_threshold().is_some_and(|t| ran >= t) {
                self.call_hooks(std::slice::from_ref(hook), |hook| hook.long_block(&report));
            }
        }
    }

    // ----- watching: the kernel's side -------------------------------------

    /// Starts the watchdog and activates the hooks (`run`, once, on the
    /// kernel's thread, before main runs).
    pub(super) fn start_watch(&self) {
        let Some(w) = &self.watch else { return };
        *w.watchdog.borrow_mut() =
            Some(Watchdog::start(w.shared.clone(), sys::CpuClock::current()));
        let handle = KernelHandle::new(w.shared.clone());
        self.call_hooks(&w.hooks, |hook| hook.activate(&handle));
    }

    /// Stops the watchdog and deactivates the hooks (`run`, once, after
    /// every task has ended).
    pub(super) fn stop_watch(&self) {
        let Some(w) = &self.watch else { return };
        w.shared
            .alive
            .store(false, std::sync::atomic::Ordering::Release);
        drop(w.watchdog.borrow_mut().take());
        // Requests still queued are answered by no one: their askers time out.
        drop(w.shared.take_requests());
        self.call_hooks(&w.hooks, |hook| hook.deactivate());
    }

    /// A handle on this kernel for other threads, if it is watched.
    pub(super) fn handle(&self) -> Option<KernelHandle> {
        self.watch
            .as_ref()
            .map(|w| KernelHandle::new(w.shared.clone()))
    }

    /// Answers the requests other threads left (between two slices).
    fn serve_requests(&self) {
        let Some(w) = &self.watch else { return };
        let Some(requests) = w.shared.take_requests() else {
            return;
        };
        for Request { query, reply } in requests {
            let answer = match query {
                Query::Snapshot => Answer::Snapshot(self.snapshot()),
                Query::Where(id) => Answer::Where(match self.task_by_id(id) {
                    Some(t) => self.capture_stack(&t),
                    None => Err(format!("no task {id}")),
                }),
                Query::All => {
                    let snap = self.snapshot();
                    let traces = self
                        .live_tasks()
                        .iter()
                        .map(|t| (t.record().id(), self.capture_stack(t)))
                        .collect();
                    Answer::All(snap, traces)
                }
                Query::Cancel(id) => Answer::Cancel(match self.task_by_id(id) {
                    Some(t) => {
                        self.cancel(t.record());
                        Ok(format!("Cancelling task {id}"))
                    }
                    None => Err(format!("no task {id}")),
                }),
            };
            // The asker may have given up (timed out): nothing to do then.
            let _ = reply.try_send(answer);
        }
    }

    /// The live task with id `id`.
    pub(super) fn task_by_id(&self, id: u64) -> Option<TaskRc<AnyTask>> {
        self.slots
            .borrow()
            .iter()
            .filter_map(|s| s.task.as_ref())
            .find(|t| t.record().id() == id)
            .cloned()
    }

    /// Every live task's row (CPU times and stack depths are filled in by
    /// [`Snapshot::fill`], off the kernel's thread when a monitor asks).
    pub(super) fn snapshot(&self) -> Snapshot {
        let now = self.now();
        // Sleeping tasks' deadlines, by slot: the live sleep entries of the heap.
        let mut sleeps: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
        for (deadline, item) in self.timers.borrow().iter() {
            if let TimerItem::Sleep(w) = *item {
                if self.is_waiting(w) {
                    sleeps.insert(w.slot, deadline);
                }
            }
        }
        let left = |d: u64| Duration::from_nanos(d.saturating_sub(now));
        let tasks = self
            .live_tasks()
            .iter()
            .map(|t| {
                let h = t.record();
                let (stack_size, guard) = h.stack_info();
                TaskRow {
                    id: h.id(),
                    parent: h.parent(),
                    name: h.name().to_string(),
                    state: h.state(),
                    cycles: h.cycles(),
                    daemon: h.is_daemon(),
                    cancelled: h.is_cancelled(),
                    timeout: h.deadlines().and_then(Deadlines::armed).map(left),
                    sleep: sleeps.get(&h.slot()).map(|&d| left(d)),
                    joining: (h.state() == State::TaskJoin && h.join_target() != 0)
                        .then(|| h.join_target()),
                    cpu: Duration::ZERO,
                    stack_size: if stack_size == 0 {
                        h.stack_size()
                    } else {
                        stack_size
                    },
                    stack_used: None,
                    guard,
                }
            })
            .collect();
        Snapshot {
            tasks,
            kernel_cpu: Duration::ZERO,
        }
    }

    /// The backtrace of `task`, captured on its own stack without disturbing it.
    ///
    /// A suspended task is resumed once, in place, with the thread's capture
    /// mark (`switch::CAPTURE_FOR`) naming it and an error reply (which only
    /// the error path of `switch::suspend` looks at); it captures its stack,
    /// leaves it in `switch::CAPTURED` and suspends again (`Trap::Wait`, which
    /// is ignored here). Its wait id, state, registrations, timers and place in
    /// the ready queue are never touched, its cycle count is not bumped, and
    /// the reply it was to get (a READY task's) is put back. Callable between
    /// slices, and from a task (which then resumes the other task from its
    /// own stack, and is the running task again afterwards).
    pub(super) fn capture_stack(
        &self,
        task: &TaskRc<AnyTask>,
    ) -> std::result::Result<Traceback, String> {
        let h = task.record();
        let id = h.id();
        if h.is_terminated() {
            return Err(format!("task {id} has finished; it has no stack any more"));
        }
        if try_current_record(|r| ptr::eq(r, h)) == Some(true) {
            // The task asks for its own stack: it is on it.
            return switch::capture_here(h.stack_info().1)
                .map(|bt| Traceback::new(h.describe(), bt));
        }
        let describe = h.describe();
        if h.yielder().is_null() {
            return Err(if h.cycles() == 0 {
                format!(
                    "task {id} has not started yet (state {}); it has no stack",
                    h.state()
                )
            } else {
                format!("task {id} is being torn down; its stack cannot be shown")
            });
        }
        let Some(run) = h.run() else {
            return Err(format!(
                "task {id} is being torn down; its stack cannot be shown"
            ));
        };
        let Ok(mut code) = run.coro.try_borrow_mut() else {
            return Err(format!(
                "task {id} is running; only a suspended task has a backtrace to show"
            ));
        };
        let Some(coro) = code.as_mut() else {
            return Err(format!(
                "task {id} is being torn down; its stack cannot be shown"
            ));
        };
        let saved = h.take_reply();
        switch::CAPTURE_FOR.with(|c| c.set(run));
        h.set_reply(Some(Error::usage("a backtrace request")));
        let previous = replace_task(h);
        let result = coro.resume(());
        TASK.with(|c| c.set(previous));
        h.set_reply(saved);
        switch::CAPTURE_FOR.with(|c| c.set(ptr::null()));
        let captured = switch::CAPTURED.with(|c| c.take());
        match result {
            corosensei::CoroutineResult::Yield(_) => {}
            corosensei::CoroutineResult::Return(()) => {
                // `switch::suspend` always suspends again after a capture.
                unreachable!("task {id} ended while capturing its backtrace")
            }
        }
        match captured {
            Some(Ok(bt)) => Ok(Traceback::new(describe, bt)),
            Some(Err(why)) => Err(format!("task {id}: {why}")),
            None => Err(format!("task {id} did not answer the backtrace request")),
        }
    }

    /// Cleans up after a task whose coroutine has returned: wakes joiners, runs
    /// its exit hook, recycles its stack and slot.
    fn finish(&self, task: &TaskRc<AnyTask>) {
        let h = task.record();
        if h.state() == State::Ready {
            self.ready.remove(h); // a forced unwind of a queued task
        }
        match self.take_coroutine(h) {
            Some(coro) if coro.done() => {
                let st = coro.into_stack();
                if st.size() == self.stack_size {
                    self.stacks.borrow_mut().push(st);
                } else {
                    stack::give(st);
                }
            }
            Some(coro) => leak_unfinished(h, coro),
            None if !h.has_stack() => {
                // Ended without ever running (force-unwound unstarted): its
                // promised stack goes back to the pool of unpromised ones.
                self.promised.set(self.promised.get() - 1);
                if let Some(msg) = task.drop_unstarted() {
                    report_unstarted_drop_panic(h, &msg);
                }
            }
            None => {}
        }
        let slot = h.slot();
        self.slots.borrow_mut()[slot as usize].task = None;
        self.free_slots.borrow_mut().push(slot);
        self.live.set(self.live.get() - 1);
        h.mark_terminated();
        if let Some(w) = h.take_first_joiner() {
            self.wake(w, Ok(()));
            if let Some(more) = h.take_more_joiners() {
                self.wake_all(more);
            }
        }
        if let Some(group) = h.group() {
            group.member_finished(h.id());
        }
    }

    // ----- waiting and waking -----------------------------------------------

    /// Cancel point: returns the pending cancellation or timeout, if delivery is allowed.
    #[inline]
    pub(super) fn cancel_point(&self, h: &TaskRecord) -> Result<()> {
        match h.deadlines() {
            None => Ok(()),
            Some(d) => d.cancel_point(),
        }
    }

    /// `check_cancellation` for `h` (see [`crate::deadlines::Deadlines::check`]).
    pub(super) fn check_cancellation(&self, h: &TaskRecord) -> Result<()> {
        h.deadlines().map_or(Ok(()), Deadlines::check)
    }

    /// Replaces `h`'s pending error; returns the old one.
    pub(super) fn set_cancellation(&self, h: &TaskRecord, err: Option<Error>) -> Option<Error> {
        h.make_deadlines().replace_pending(err)
    }

    /// Takes `h`'s pending error if it is of `kind`.
    pub(super) fn take_cancellation(&self, h: &TaskRecord, kind: ErrorKind) -> Option<Error> {
        h.deadlines()?.take_pending_if(|e| e.kind() == kind)
    }

    /// Enters a masked block.
    pub(super) fn mask(&self, h: &TaskRecord) {
        h.make_deadlines().mask();
    }

    /// Leaves a masked block.
    pub(super) fn unmask(&self, h: &TaskRecord) {
        if let Some(d) = h.deadlines() {
            d.unmask();
        }
    }

    /// A task that could not switch ends the wait it began (if any) and is
    /// running again.
    pub(super) fn refuse_wait(&self, h: &TaskRecord) {
        if h.wait_id() != 0 {
            self.abort_wait(h);
        }
        h.set_state(State::Running);
    }

    /// Marks the running task parked in `state` and returns the waiter that ends the wait.
    ///
    /// `external` waits can be ended from outside the kernel loop (the poller,
    /// another thread); while any exist, the kernel never reports a deadlock.
    pub(super) fn begin_wait(&self, h: &TaskRecord, state: State, external: bool) -> Waiter {
        let mut id = self.next_wait_id.get();
        if id == self.wait_ids_end.get() {
            id = self.take_wait_ids();
        }
        self.next_wait_id.set(id + 1);
        h.begin_wait(id, state, external);
        if external {
            self.external.set(self.external.get() + 1);
        }
        Waiter {
            slot: h.slot(),
            wait_id: id,
        }
    }

    /// Takes a fresh block of wait ids from the process-wide counter; returns
    /// its first id.
    #[cold]
    #[inline(never)]
    fn take_wait_ids(&self) -> u64 {
        let first = WAIT_IDS.fetch_add(WAIT_ID_BLOCK, std::sync::atomic::Ordering::Relaxed);
        self.wait_ids_end.set(first + WAIT_ID_BLOCK);
        first
    }

    /// The task in `slot`, if any.
    pub(super) fn task_at(&self, slot: u32) -> Option<TaskRc<AnyTask>> {
        self.slots
            .borrow()
            .get(slot as usize)
            .and_then(|s| s.task.clone())
    }

    /// The running task `h`, as the kernel holds it.
    pub(super) fn task_at_slot_of(&self, h: &TaskRecord) -> TaskRc<AnyTask> {
        self.task_at(h.slot()).expect("a running task has a slot")
    }

    /// True if `w` is a wait that has not ended yet.
    pub(super) fn is_waiting(&self, w: Waiter) -> bool {
        let slots = self.slots.borrow();
        match slots.get(w.slot as usize).and_then(|s| s.task.as_ref()) {
            Some(t) => t.record().wait_id() == w.wait_id,
            None => false,
        }
    }

    /// Ends wait `w` and queues its task with `reply`. Returns false (and does
    /// nothing) if that wait already ended. Never switches.
    pub(super) fn wake(&self, w: Waiter, reply: Reply) -> bool {
        self.wake_task(w, reply).is_some()
    }

    /// Wakes every waiter of `queue`, oldest first.
    #[cold]
    fn wake_all(&self, mut queue: WaitQueue) {
        while let Some(w) = queue.pop_any() {
            self.wake(w, Ok(()));
        }
    }

    /// Like [`Core::wake`], returning the woken task's id.
    pub(super) fn wake_task(&self, w: Waiter, reply: Reply) -> Option<u64> {
        let task = self.task_at(w.slot)?;
        let h = task.record();
        if h.wait_id() != w.wait_id {
            return None;
        }
        self.end_wait(h);
        self.make_ready(h, reply);
        Some(h.id())
    }

    fn end_wait(&self, h: &TaskRecord) {
        if h.end_wait() {
            self.external.set(self.external.get() - 1);
        }
    }

    /// Ends a wait early (cancellation, timeout): its timer entry, if any, is now stale.
    fn abort_wait(&self, h: &TaskRecord) {
        if h.state() == State::TimeSleep {
            self.timers
                .borrow_mut()
                .mark_stale(|d, item| self.timer_is_live(d, item));
        }
        self.end_wait(h);
    }

    fn make_ready(&self, h: &TaskRecord, reply: Reply) {
        debug_assert_ne!(h.state(), State::Ready, "a task is queued once");
        // A parked task's reply is empty (every resume takes it), so only an
        // error needs storing: the usual wake-up leaves the run state alone.
        if let Err(e) = reply {
            h.set_reply(Some(e));
        }
        h.set_state(State::Ready);
        self.ready.push(h);
    }

    /// Requests cancellation of a task: delivered at most once, clears its armed
    /// timeout, and aborts its current wait if it is parked at a cancel point.
    pub(super) fn cancel(&self, h: &TaskRecord) {
        self.cancel_with(h, Error::cancelled());
    }

    /// [`Core::cancel`] with the error the task receives.
    pub(super) fn cancel_with(&self, h: &TaskRecord, err: Error) {
        if !h.mark_cancelled() {
            return;
        }
        h.make_deadlines().cancel();
        self.deliver(h, err);
    }

    /// Raises `err` in the task now if it is parked and unmasked, else leaves it pending.
    fn deliver(&self, h: &TaskRecord, err: Error) {
        if let Some(err) = h.make_deadlines().offer(err, h.wait_id() != 0) {
            self.abort_wait(h);
            self.make_ready(h, Err(err));
        }
    }

    // ----- time --------------------------------------------------------------

    /// Kernel clock, in nanoseconds since the kernel started.
    #[inline]
    pub(super) fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Converts kernel time to an `Instant`.
    pub(super) fn instant(&self, t: u64) -> Instant {
        self.clock.epoch + Duration::from_nanos(t)
    }

    /// Converts an `Instant` to kernel time (earlier instants become 0).
    pub(super) fn ticks(&self, i: Instant) -> u64 {
        i.saturating_duration_since(self.clock.epoch)
            .as_nanos()
            .min(u64::MAX as u128 - 1) as u64
    }

    /// Parks the running task until kernel time `deadline`.
    pub(super) fn register_sleep(&self, w: Waiter, deadline: u64) {
        self.timers.borrow_mut().push(deadline, TimerItem::Sleep(w));
    }

    /// Opens a timeout block with `deadline` for the running task (Curio's
    /// `_set_timeout`; the rules are [`Deadlines::enter_block`]'s). A deadline
    /// already passed becomes a pending timeout at once, so it fires at the
    /// first cancel point.
    pub(super) fn enter_timeout_block(&self, h: &TaskRecord, deadline: Option<u64>) -> Block {
        let now = self.now();
        let (block, arm) = h.make_deadlines().enter_block(deadline, now);
        self.apply(h, arm, now);
        block
    }

    /// Closes the running task's innermost timeout block (Curio's
    /// `_unset_timeout`); returns the deadline stack as it was while the block
    /// was open, for the block's verdict ([`crate::deadlines::classify`]).
    ///
    /// Discussion: a server that wraps every read in an hour-long timeout ends
    /// almost every block long before its deadline. Counting the block's timer
    /// entry stale here lets the heap rebuild itself once stale entries are the
    /// majority, so its size follows the timers still pending, not the rate of
    /// blocks. An entry that already fired is counted too; that only brings a
    /// rebuild forward, and a rebuild needs at least half the heap counted
    /// stale, so its cost stays amortised O(1) per block.
    pub(super) fn exit_timeout_block(&self, h: &TaskRecord, block: Block) -> Vec<u64> {
        let now = self.now();
        let (arm, stack) = h.make_deadlines().exit_block(block, now);
        self.apply(h, arm, now);
        if block.pushed_entry() {
            self.timers
                .borrow_mut()
                .mark_stale(|d, item| self.timer_is_live(d, item));
        }
        stack
    }

    /// Carries out what the deadline rules decided.
    fn apply(&self, h: &TaskRecord, arm: Arm, now: u64) {
        match arm {
            Arm::Nothing => {}
            Arm::Entry(d) => self.timers.borrow_mut().push(
                d,
                TimerItem::Timeout {
                    slot: h.slot(),
                    task_id: h.id(),
                },
            ),
            Arm::FireNow => self.deliver(
                h,
                Error::timeout_kind(ErrorKind::Timeout, self.instant(now)),
            ),
        }
    }

    /// Whether a heap entry may still matter: a sleep still waiting, or a
    /// timeout that is armed or belongs to a block still open (it may be
    /// restored when an inner block ends).
    fn timer_is_live(&self, deadline: u64, item: &TimerItem) -> bool {
        match *item {
            TimerItem::Sleep(w) => self.is_waiting(w),
            TimerItem::Timeout { slot, task_id } => match self.task_at(slot) {
                Some(t) => {
                    let h = t.record();
                    h.id() == task_id && h.deadlines().is_some_and(|d| d.is_live(deadline))
                }
                None => false,
            },
        }
    }

    /// Expires every deadline at or before now. Reads the clock only if there are timers.
    fn expire_timers(&self) {
        if self.timers.borrow().is_empty() {
            return;
        }
        let now = self.now();
        let mut woke_at = None;
        loop {
            let next = self.timers.borrow_mut().pop_expired(now);
            let Some((deadline, item)) = next else { break };
            match item {
                TimerItem::Sleep(w) => {
                    if self.wake(w, Ok(())) {
                        woke_at = Some(deadline);
                    } else {
                        self.timers.borrow_mut().discarded_stale();
                    }
                }
                TimerItem::Timeout { .. } if woke_at == Some(deadline) => {
                    // Discussion: a timeout due at the same instant as a sleep
                    // that just woke a task, but set after it (common on the
                    // virtual clock, where a one-second nag and a five-second
                    // sleep meet exactly). On a real clock it would fall a
                    // little later, after the woken task had run; so here too
                    // the woken tasks run first and what they do at that
                    // instant counts as in time. The timeout stays armed and is
                    // looked at again on the next tick. Ties otherwise keep the
                    // order in which deadlines were set.
                    self.timers.borrow_mut().push(deadline, item);
                    break;
                }
                TimerItem::Timeout { slot, task_id } => {
                    let task = self.task_at(slot);
                    match task {
                        Some(t)
                            if t.record().id() == task_id
                                && t.record().deadlines().is_some_and(|d| d.expire(deadline)) =>
                        {
                            self.deliver(
                                t.record(),
                                Error::timeout_kind(ErrorKind::Timeout, self.instant(now)),
                            );
                        }
                        _ => self.timers.borrow_mut().discarded_stale(),
                    }
                }
            }
        }
    }

    /// The earliest deadline that still matters, dropping stale ones on top.
    fn next_deadline(&self) -> Option<u64> {
        loop {
            let top = self.timers.borrow().peek().map(|(d, item)| (d, *item));
            let (d, item) = top?;
            if self.timer_is_live(d, &item) {
                return Some(d);
            }
            self.timers.borrow_mut().pop();
            self.timers.borrow_mut().discarded_stale();
        }
    }

    // ----- the loop ------------------------------------------------------------

    /// A sender other threads can use to wake tasks of this kernel.
    pub(super) fn inbox(&self) -> InboxSender {
        self.poller.borrow().sender()
    }

    /// Ends wait `w` of a task of *some* kernel: directly if it is this
    /// thread's kernel, else through that kernel's inbox.
    pub(super) fn post_wake(sender: &InboxSender, w: Waiter) {
        let local = try_with_core(|core| {
            if core.poller.borrow().owns(sender) {
                core.wake(w, Ok(()));
                true
            } else {
                false
            }
        });
        if local != Some(true) {
            sender.send(Message::Wake(w));
        }
    }

    /// Runs passes over the ready queue until `done` holds. Returns a deadlock
    /// report if everything blocked first.
    fn run_until(&self, done: impl Fn() -> bool) -> Option<String> {
        match &self.watch {
            None => self.run_loop::<false, false>(done),
            Some(w) if w.switch_hooks.is_empty() => self.run_loop::<true, false>(done),
            Some(_) => self.run_loop::<true, true>(done),
        }
    }

    /// The loop, in three forms: unwatched (`WATCHED == false`, what almost
    /// every kernel runs: nothing in it serves the debugging machinery),
    /// watched (the per-switch record kept around every slice), and watched
    /// with hooks that want every switch (`HOOKS`).
    #[inline(never)]
    fn run_loop<const WATCHED: bool, const HOOKS: bool>(
        &self,
        done: impl Fn() -> bool,
    ) -> Option<String> {
        // The watch, looked up once (watched forms only).
        let watch = if WATCHED { self.watch.as_ref() } else { None };
        if let Some(w) = watch {
            self.beat_kernel(w);
            self.announce_new_tasks(None);
        }
        // Tasks left in this pass (those that were ready when it began).
        let mut batch = 0usize;
        // Switches since the outside world was last looked at, counting the
        // pass under way.
        let mut since_poll = 0usize;
        loop {
            if batch == 0 {
                if done() {
                    if let Some(w) = watch {
                        self.beat_kernel(w);
                    }
                    return None;
                }
                batch = self.ready.len();
                if batch == 0 || since_poll >= POLL_INTERVAL {
                    if let Some(w) = watch {
                        self.beat_kernel(w);
                        self.check_long_block();
                    }
                    if let Err(report) = self.tick() {
                        return Some(report);
                    }
                    since_poll = 0;
                    batch = self.ready.len();
                }
                since_poll += batch;
                continue;
            }
            batch -= 1;
            if let Some(task) = self.ready.pop() {
                // SAFETY: a queued header is alive: its slot holds the task until
                // `finish`, which takes it out of the queue first if it is still
                // there (invariants in ready.rs). `step` is the one place that
                // finishes a popped task, and it uses no header after that.
                #[allow(unsafe_code)]
                let task = unsafe { task.as_ref() };
                match watch {
                    Some(w) if WATCHED => self.step_watched::<HOOKS>(w, task),
                    _ => self.step(task),
                }
            }
        }
    }

    pub(super) fn run_until_main_ends(&self, main: &TaskRc<AnyTask>) -> Option<String> {
        self.run_until(|| main.record().is_terminated())
    }

    /// Looks at the outside world: cheaply skipped while tasks are ready and fewer
    /// than POLL_INTERVAL switches have passed; blocks when nothing is ready.
    fn tick(&self) -> std::result::Result<(), String> {
        #[cfg(test)]
        tests::maybe_panic_in_tick();
        let idle = self.ready.is_empty();
        if !idle {
            if self.external.get() > 0 || self.poller.borrow().inbox_pending() {
                self.poll(Some(Duration::ZERO));
            }
            self.expire_timers();
            return Ok(());
        }
        self.trim_memory();
        loop {
            let next = self.next_deadline();
            let outside = self.external.get() > 0 || self.poller.borrow().inbox_pending();
            match (next, &self.clock.virtual_now) {
                (None, _) if !outside => return Err(self.deadlock_report()),
                (None, _) => {
                    self.poll(None);
                }
                (Some(d), Some(v)) => {
                    if outside && self.poll(Some(AUTOJUMP_GRACE)) > 0 {
                        // Something real happened; run it before jumping.
                    } else if d > v.get() {
                        v.set(d);
                    }
                }
                (Some(d), None) => {
                    let now = self.now();
                    let wait = Duration::from_nanos(d.saturating_sub(now));
                    self.poll(Some(wait));
                }
            }
            self.expire_timers();
            if !self.ready.is_empty() {
                return Ok(());
            }
        }
    }

    /// The kernel is about to go idle: give memory back after a peak of tasks.
    fn trim_memory(&self) {
        self.trim_stacks();
        self.coro_boxes.borrow_mut().truncate(IDLE_CORO_BOXES);
        boxes::trim();
        self.shrink_tables();
    }

    /// After a peak of tasks has ended (at least [`SHRINK_AFTER`] more free
    /// slots than when last shrunk, and half the table), shrinks the kernel's tables to what is
    /// live and asks the allocator to return what the task records freed.
    /// Bursts that never let the kernel idle do not pay for it.
    fn shrink_tables(&self) {
        let free = self.free_slots.borrow().len();
        let peak = SHRINK_AFTER.max(self.slots.borrow().len() / 2);
        if free < self.shrunk_free.get() + peak {
            return;
        }
        {
            let mut slots = self.slots.borrow_mut();
            let mut free_slots = self.free_slots.borrow_mut();
            while slots.last().is_some_and(|s| s.task.is_none()) {
                slots.pop();
            }
            let len = slots.len() as u32;
            free_slots.retain(|&i| i < len);
            // Lowest slots first, so the table stays compact as it refills.
            free_slots.sort_unstable_by(|a, b| b.cmp(a));
            slots.shrink_to_fit();
            free_slots.shrink_to_fit();
            self.shrunk_free.set(free_slots.len());
        }
        self.ready.shrink();
        self.timers.borrow_mut().shrink();
        self.woken.borrow_mut().shrink_to_fit();
        sys::trim_heap();
    }

    /// The kernel is about to go idle: keep `idle_stacks` warm stacks and give
    /// the memory of the rest back (the least recently used first).
    fn trim_stacks(&self) {
        let mut stacks = self.stacks.borrow_mut();
        let keep = self.idle_stacks.max(self.promised.get());
        if stacks.len() > keep {
            let excess = stacks.len() - keep;
            for st in stacks.drain(..excess) {
                stack::give_released(st);
            }
        }
        drop(stacks);
        stack::trim(self.idle_stacks);
    }

    fn poll(&self, timeout: Option<Duration>) -> usize {
        let mut woken = std::mem::take(&mut *self.woken.borrow_mut());
        let blocking = timeout != Some(Duration::ZERO);
        if let Some(w) = &self.watch {
            w.shared.beat.idle.store(blocking, Relaxed);
        }
        let r = self.poller.borrow_mut().poll(timeout, &mut woken);
        if let Some(w) = &self.watch {
            w.shared.beat.idle.store(false, Relaxed);
            self.serve_requests();
        }
        let n = match r {
            Ok(n) => n,
            Err(e) => panic!("curio: the kernel's poller failed: {e}"),
        };
        for w in woken.drain(..) {
            self.wake(w, Ok(()));
        }
        *self.woken.borrow_mut() = woken;
        n
    }

    // ----- file descriptors ---------------------------------------------------

    /// This kernel's id (unique in the process).
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// Registers `fd` with the poller; returns its token.
    pub(super) fn register_fd(&self, fd: std::os::fd::RawFd) -> std::io::Result<mio::Token> {
        self.poller.borrow_mut().register_fd(fd)
    }

    /// True if a live wait is registered on `token`'s fd in direction `dir`.
    pub(super) fn fd_waiter_busy(&self, token: mio::Token, dir: Direction) -> bool {
        let w = *self.poller.borrow_mut().waiter_slot(token, dir);
        w.is_some_and(|w| self.is_waiting(w))
    }

    /// Registers `w` as the waiter on `token`'s fd in direction `dir`.
    pub(super) fn set_fd_waiter(&self, token: mio::Token, dir: Direction, w: Waiter) {
        *self.poller.borrow_mut().waiter_slot(token, dir) = Some(w);
    }

    /// Forgets `fd`'s registration; call before closing it.
    pub(super) fn deregister_fd(&self, token: mio::Token, fd: std::os::fd::RawFd) {
        self.poller.borrow_mut().deregister_fd(token, fd)
    }

    /// Whether `token`'s fd may be ready in direction `dir` (no operation has
    /// found it not ready since the poller last reported it ready).
    pub(super) fn fd_ready(&self, token: mio::Token, dir: Direction) -> bool {
        self.poller.borrow().is_ready(token, dir)
    }

    /// Records that an operation found `token`'s fd drained in direction `dir`.
    pub(super) fn set_fd_unready(&self, token: mio::Token, dir: Direction) {
        self.poller.borrow_mut().clear_ready(token, dir)
    }

    pub(super) fn live_tasks(&self) -> Vec<TaskRc<AnyTask>> {
        let mut v: Vec<_> = self
            .slots
            .borrow()
            .iter()
            .filter_map(|s| s.task.clone())
            .collect();
        v.sort_by_key(|t| t.record().id());
        v
    }

    /// Who waits on what, one task per line (each line starts with a newline);
    /// `ErrorKind::Deadlock`'s own text says what a deadlock is.
    fn deadlock_report(&self) -> String {
        let mut s = String::new();
        for t in self.live_tasks() {
            let h = t.record();
            let _ = write!(s, "\n  {}", h.describe());
            if h.state() == State::TaskJoin && h.join_target() != 0 {
                let _ = write!(s, " waits for task {}", h.join_target());
            }
        }
        s
    }

    /// Curio 1.x shutdown: cancel every remaining task, newest first, each driven
    /// to completion before the next. If that deadlocks, force-unwind the rest.
    pub(super) fn shutdown(&self) {
        loop {
            let victims = self.live_tasks();
            if victims.is_empty() {
                return;
            }
            for t in victims.iter().rev() {
                let h = t.record();
                if h.is_terminated() {
                    continue;
                }
                self.cancel(h);
                if let Some(report) = self.run_until(|| h.is_terminated()) {
                    eprintln!(
                        "curio: shutdown blocked (every task waits and nothing can wake one); \
                         unwinding the remaining tasks:{report}"
                    );
                    self.force_unwind_all();
                    return;
                }
            }
        }
    }

    /// Last resort: unwind every remaining task's stack (newest first), running
    /// its destructors, without resuming it normally.
    ///
    /// A task being unwound can no longer switch: it is taken out of its wait
    /// and of the ready queue, and its recorded yielder is cleared, so a
    /// blocking call made by one of its destructors returns an error instead
    /// (`switch::suspend`) and nothing can queue it again. Tasks spawned meanwhile (by such a
    /// destructor) are newer than all the others and are unwound by the next
    /// call, without ever running.
    fn force_unwind_all(&self) {
        let was_unwinding = self.unwinding.replace(true);
        // Tasks that never ran are named before they go.
        if let Some(w) = &self.watch {
            self.beat_kernel(w);
            self.announce_new_tasks(None);
        }
        for t in self.live_tasks().iter().rev() {
            let h = t.record();
            // The coroutine comes out of its run state for the unwind (the
            // state stays, so that `finish` finds the stack to give back).
            let mut coro = match h.run().and_then(|r| r.coro.borrow_mut().take()) {
                Some(coro) => coro,
                None if !h.has_stack() => {
                    // Never run, so no stack to unwind: its closure is
                    // dropped, as the running task (a destructor may call
                    // curio, and gets an error: the task has no yielder).
                    if h.state() == State::Ready {
                        self.ready.remove(h);
                    }
                    h.set_state(State::Running); // `finish` releases its promised stack
                    set_task(Some(h));
                    let panicked = t.drop_unstarted();
                    set_task(None);
                    if let Some(msg) = panicked {
                        report_unstarted_drop_panic(h, &msg);
                    }
                    if self.watch.is_some() {
                        self.announce_new_tasks(None);
                    }
                    self.finish(t);
                    self.note_terminated(h);
                    continue;
                }
                None => continue,
            };
            // Out of every queue first: not parked (nothing can wake it) and
            // not in the ready queue (which must never hold a finished task).
            if h.wait_id() != 0 {
                self.abort_wait(h);
            }
            if h.state() == State::Ready {
                self.ready.remove(h);
            }
            h.set_state(State::Running);
            h.set_yielder(ptr::null());
            set_task(Some(h));
            // A coroutine that never started only drops its closure, which
            // `switch::new_coroutine_unchecked` wrapped so that the drop cannot
            // unwind into corosensei (corosensei 0.3.4 would then drop it a
            // second time: `arch-notes/stacks.md`, "Upstream").
            let r = panic::catch_unwind(AssertUnwindSafe(|| coro.force_unwind()));
            set_task(None);
            if r.is_err() {
                eprintln!("curio: task {} panicked while being unwound", h.id());
            }
            if let Some(run) = h.run() {
                *run.coro.borrow_mut() = Some(coro);
            }
            if self.watch.is_some() {
                self.announce_new_tasks(None);
            }
            self.finish(t);
            self.note_terminated(h);
        }
        self.unwinding.set(was_unwinding);
    }

    /// Ends whatever is left, however `run` ends: unwinds the tasks still alive
    /// (only when shutdown could not finish them, or the kernel itself
    /// panicked), then runs the exit hooks. Called with this kernel still
    /// marked as the thread's kernel.
    pub(super) fn teardown(&self) {
        while self.live.get() > 0 {
            self.force_unwind_all();
        }
        for hook in self.exit_hooks.take() {
            hook();
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // `teardown` ended every task before the kernel mark was cleared.
        debug_assert_eq!(self.live.get(), 0, "a kernel is dropped with tasks alive");
        debug_assert!(
            self.ready.is_empty(),
            "a kernel is dropped with tasks queued"
        );
        for st in self.stacks.take() {
            stack::give(st);
        }
    }
}

/// Dropping the closure of a task that never ran panicked: reported, never
/// propagated (it would unwind the kernel).
#[cold]
#[inline(never)]
fn report_unstarted_drop_panic(h: &TaskRecord, msg: &str) {
    eprintln!(
        "curio: dropping the closure of task {}, which never started, panicked: {msg}",
        h.id()
    );
}

/// Only a forced unwind that itself failed leaves a coroutine unfinished.
/// Dropping it would unwind it again; it is leaked instead (with its stack),
/// which is safe: it never runs again.
#[cold]
#[inline(never)]
fn leak_unfinished(h: &TaskRecord, coro: TaskCoroutine) {
    eprintln!(
        "curio: task {} could not be unwound; its stack is leaked",
        h.id()
    );
    std::mem::forget(coro);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::Kernel;
    use std::time::Duration;

    thread_local! {
        /// Makes the kernel loop itself panic at its next look at the world.
        static PANIC_IN_TICK: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn maybe_panic_in_tick() {
        if PANIC_IN_TICK.with(|p| p.replace(false)) {
            panic!("injected: the kernel loop panics");
        }
    }

    /// Issue 9, item 4: timeout blocks that end long before their deadline
    /// leave no timer behind for long: the heap follows the timers pending.
    #[test]
    fn finished_timeout_blocks_do_not_accumulate_timer_entries() {
        let (len, live) = Kernel::builder()
            .virtual_clock(true)
            .build()
            .run(|| {
                // 1 000 sleepers keep live entries in the heap meanwhile.
                let sleepers: Vec<_> = (0..1000)
                    .map(|_| crate::spawn(|| crate::sleep(Duration::from_secs(7200))))
                    .collect();
                crate::yield_now().unwrap();
                for _ in 0..200_000 {
                    crate::timeout_after(Duration::from_secs(3600), || Ok::<_, crate::Error>(()))
                        .unwrap();
                }
                let len = with_core(|core| core.timers.borrow().len());
                for s in &sleepers {
                    s.cancel().unwrap();
                }
                (len, sleepers.len())
            })
            .unwrap();
        assert!(
            len <= 2 * live + 2 * 1024 + 2,
            "the timer heap holds {len} entries for {live} pending timers"
        );
    }

    /// Records, when dropped, which task curio says is running.
    struct NameOnDrop(Rc<Cell<Option<u64>>>);

    impl Drop for NameOnDrop {
        fn drop(&mut self) {
            self.0.set(Some(crate::current_task().id()));
        }
    }

    /// Issue 8, hole 5: the kernel's own panic unwinds out of `run`; the tasks
    /// still alive are torn down first, while curio calls made by their
    /// destructors still find their kernel.
    #[test]
    fn a_kernel_that_panics_tears_its_tasks_down_before_leaving_the_thread() {
        let seen = Rc::new(Cell::new(None));
        let s = seen.clone();
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            Kernel::builder().virtual_clock(true).build().run(move || {
                crate::spawn(move || {
                    let _n = NameOnDrop(s);
                    crate::sleep(Duration::from_secs(3600))
                });
                crate::yield_now().unwrap(); // the kid starts and sleeps
                PANIC_IN_TICK.with(|p| p.set(true));
                crate::sleep(Duration::from_secs(1))
            })
        }));
        let payload = r.expect_err("the kernel's panic resumes out of run");
        assert_eq!(
            super::super::record::panic_message(&*payload),
            "injected: the kernel loop panics"
        );
        assert_eq!(seen.get(), Some(2), "the kid's destructor saw itself");
        assert!(!in_task());
        assert_eq!(crate::run(|| 5), 5, "the thread can run a kernel again");
    }
}
