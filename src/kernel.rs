//! The kernel: one loop on one OS thread that runs tasks, executes their traps,
//! polls for I/O and expires deadlines.
//!
//! ```text
//!   loop {
//!       run, once each, the tasks that were ready when this pass began
//!       if main has ended: shut down (cancel the rest, newest first) and return
//!       tick: every POLL_INTERVAL switches, or whenever nothing is ready,
//!             poll I/O and the inbox, then expire deadlines;
//!             nothing ready and nothing that could wake anyone: deadlock
//!   }
//! ```
//!
//! # Invariants
//!
//! - This module is the only code that mutates scheduler state (slots, ready
//!   queue, timer heap, waits). Task-side modules call its functions through the
//!   trap boundary (`trap.rs`); it never names a `Queue` or a socket.
//! - Spawning and waking never switch tasks: they only append to the ready queue.
//! - A task is *parked* exactly when its header's `wait_id` is non-zero. Waking,
//!   cancelling and timing out all clear it first, so each wait ends once.
//! - No `RefCell` borrow of scheduler state is held across a resume.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! let kernel = curio::Kernel::builder().virtual_clock(true).build();
//! let v = kernel.run(|| {
//!     curio::sleep(Duration::from_secs(3600)).unwrap(); // instant on the virtual clock
//!     7
//! });
//! assert_eq!(v.unwrap(), 7);
//! ```

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::poller::{Direction, InboxSender, Message, Poller};
use crate::ready::ReadyQueue;
use crate::stack::{self, DEFAULT_STACK_SIZE};
use crate::sys;
use crate::task::{self, AnyTask, Header, State, TaskCell};
use crate::timer::TimerHeap;
use crate::trap::{self, Reply, TaskCoroutine, Trap};
use crate::wait::{WaitQueue, Waiter};

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

/// When the virtual clock has tasks waiting on I/O or other threads, how long to
/// wait for real before jumping to the next deadline.
const AUTOJUMP_GRACE: Duration = Duration::from_millis(5);

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// Settings for a [`Kernel`]. Start from [`Kernel::builder`].
#[derive(Clone, Debug)]
pub struct Builder {
    stack_size: usize,
    idle_stacks: usize,
    virtual_clock: bool,
    thread_pool_size: usize,
}

impl Builder {
    /// The default settings: 256 KiB stacks and the real clock (or the virtual
    /// clock when the environment variable `CURIO_CLOCK=virtual` is set, which is
    /// how the example tests run the tutorial's programs instantly).
    pub fn new() -> Builder {
        let virtual_clock = std::env::var("CURIO_CLOCK").is_ok_and(|v| v == "virtual");
        Builder {
            stack_size: DEFAULT_STACK_SIZE,
            idle_stacks: stack::DEFAULT_IDLE_STACKS,
            virtual_clock,
            thread_pool_size: 64,
        }
    }

    /// The usable stack size of each task unless its own builder says otherwise,
    /// rounded up to whole pages. Stacks are committed lazily, so a big size
    /// costs address space, not memory. [`Kernel::run`] fails with
    /// [`ErrorKind::Usage`] for a size below [`crate::MIN_STACK_SIZE`] (16 KiB)
    /// or above [`crate::MAX_STACK_SIZE`] (1 GiB).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self
    }

    /// How many unused task stacks the kernel keeps warm, their memory
    /// resident, for the next spawns (1024 by default). Whenever the kernel
    /// goes idle, the memory of the unused stacks beyond this is given back to
    /// the operating system, so memory falls back after a peak of tasks; such a
    /// stack stays reserved and is reused cold (its first pages are faulted in
    /// again). Bursts that never let the kernel idle are not slowed.
    pub fn idle_stacks(mut self, stacks: usize) -> Builder {
        self.idle_stacks = stacks;
        self
    }

    /// Runs the kernel on a virtual clock: time stands still while tasks run, and
    /// when every task waits on time alone the clock jumps to the next deadline.
    /// Timeout tests become exact and instant.
    pub fn virtual_clock(mut self, on: bool) -> Builder {
        self.virtual_clock = on;
        self
    }

    /// The most OS threads `run_in_thread` uses at once (64 by default, at least 1).
    /// Further calls wait, cancellably, for a thread to come free.
    pub fn thread_pool_size(mut self, threads: usize) -> Builder {
        self.thread_pool_size = threads.max(1);
        self
    }

    /// Builds the kernel.
    pub fn build(self) -> Kernel {
        Kernel { config: self }
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

/// A kernel: runs a main task, and every task it spawns, on the calling thread.
///
/// `curio::run(main)` is `Kernel::builder().build().run(main)` with errors turned
/// into panics.
#[derive(Clone, Debug)]
pub struct Kernel {
    config: Builder,
}

impl Kernel {
    /// Starts configuring a kernel.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Runs `main` as the first task (id 1) and returns its value once it has
    /// ended and every other task has been cancelled and driven to completion,
    /// newest first.
    ///
    /// `main` may borrow from the caller. If `main` panics, the panic resumes out
    /// of `run` after shutdown.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::NestedKernel`] if this thread is already running a kernel.
    /// - [`ErrorKind::Deadlock`] if every task blocked with nothing that could wake
    ///   one; the message lists who waits on what. The tasks were cancelled first.
    pub fn run<F, T>(&self, main: F) -> Result<T>
    where
        F: FnOnce() -> T,
    {
        task::install_panic_hook();
        sys::install_overflow_handler(trap::running_overflow_info);
        let core = Core::new(&self.config)?;
        if !trap::enter_kernel(&core) {
            return Err(Error::new(ErrorKind::NestedKernel, ""));
        }
        let out: Rc<RefCell<Option<std::thread::Result<T>>>> = Rc::new(RefCell::new(None));

        // However `run` ends (normally, or by the kernel itself panicking),
        // every task is ended and the services released *before* the thread's
        // kernel mark is cleared: the destructors that ending a task runs may
        // call curio, and must find their kernel (issue 8, hole 5).
        struct Running<'a>(&'a Core);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.teardown();
                trap::leave_kernel();
            }
        }
        let running = Running(&core);

        let main_task = core.spawn_main(main, out.clone())?;
        let deadlock = core.run_until_main_ends(&main_task);
        core.shutdown();
        drop(main_task);
        drop(running);
        drop(core);
        let outcome = out.borrow_mut().take();
        match (deadlock, outcome) {
            (Some(report), _) => Err(Error::new(ErrorKind::Deadlock, report)),
            (None, Some(Ok(v))) => Ok(v),
            (None, Some(Err(payload))) => panic::resume_unwind(payload),
            (None, None) => Err(Error::new(ErrorKind::Deadlock, "main task never finished")),
        }
    }
}

/// Runs `main` in a new kernel on this thread and returns its value.
///
/// Shorthand for `Kernel::builder().build().run(main)`.
///
/// # Panics
///
/// Panics if called inside a running kernel, or if the program deadlocks (the
/// message lists which task waits on what). A panic in `main` resumes here.
///
/// # Example
///
/// ```
/// let answer = curio::run(|| {
///     let kid = curio::spawn(|| 6 * 7);
///     kid.join().unwrap()
/// });
/// assert_eq!(answer, 42);
/// ```
pub fn run<F, T>(main: F) -> T
where
    F: FnOnce() -> T,
{
    match Kernel::builder().build().run(main) {
        Ok(v) => v,
        Err(e) => panic!("curio::run: {e}"),
    }
}

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
    task: Option<Rc<AnyTask>>,
}

pub(crate) struct Core {
    slots: RefCell<Vec<Slot>>,
    free_slots: RefCell<Vec<u32>>,
    /// Tasks to run, in order (thin pointers; their slots keep them alive).
    ready: ReadyQueue,
    /// Free default-size stacks, kept by the kernel so spawning skips the
    /// thread-local pool; returned to it when the kernel ends.
    stacks: RefCell<Vec<stack::PooledStack>>,
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
}

impl Core {
    fn new(config: &Builder) -> Result<Core> {
        let poller = Poller::new()?;
        Ok(Core {
            slots: RefCell::new(Vec::new()),
            free_slots: RefCell::new(Vec::new()),
            ready: ReadyQueue::new(),
            stacks: RefCell::new(Vec::new()),
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
            id: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
            woken: RefCell::new(Vec::new()),
            exit_hooks: RefCell::new(Vec::new()),
        })
    }

    // ----- tasks -----------------------------------------------------------

    /// A fresh id for a task about to be spawned.
    pub(crate) fn next_task_id(&self) -> u64 {
        let id = self.next_task_id.get();
        self.next_task_id.set(id + 1);
        id
    }

    /// The stack size tasks get when their builder names none.
    pub(crate) fn default_stack_size(&self) -> usize {
        self.stack_size
    }

    /// Runs `hook` when this kernel has shut down (every task ended). Services
    /// such as the worker pool use it to release what they hold.
    pub(crate) fn at_exit(&self, hook: Box<dyn FnOnce()>) {
        self.exit_hooks.borrow_mut().push(hook);
    }

    /// The `run_in_thread` pool size this kernel was built with.
    pub(crate) fn thread_pool_size(&self) -> usize {
        self.thread_pool_size
    }

    pub(crate) fn is_unwinding(&self) -> bool {
        self.unwinding.get()
    }

    /// Adds a task whose header lives in `task` and whose code is `coro`, at the
    /// back of the ready queue. Never switches.
    pub(crate) fn spawn(
        &self,
        task: Rc<AnyTask>,
        make: impl FnOnce(stack::PooledStack) -> TaskCoroutine,
    ) -> Result<()> {
        let h = task.header();
        let cached = if h.stack_size == self.stack_size {
            self.stacks.borrow_mut().pop()
        } else {
            None
        };
        let st = match cached {
            Some(st) => st,
            None => stack::take(h.stack_size)?,
        };
        h.guard.set(st.guard().0);
        h.stack_bytes.set(st.size());
        *h.coro.borrow_mut() = Some(make(st));
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
        h.slot.set(slot);
        h.state.set(State::Ready);
        self.live.set(self.live.get() + 1);
        self.ready.push(h);
        Ok(())
    }

    fn spawn_main<F, T>(
        &self,
        main: F,
        out: Rc<RefCell<Option<std::thread::Result<T>>>>,
    ) -> Result<Rc<TaskCell<()>>>
    where
        F: FnOnce() -> T,
    {
        let header = Header::new(
            self.next_task_id(),
            None,
            "main".into(),
            false,
            self.stack_size,
            true,
        );
        let cell = Rc::new(TaskCell::<()>::new(header));
        let hp: *const Header = &cell.header;
        let body = move || {
            let r = panic::catch_unwind(AssertUnwindSafe(main));
            *out.borrow_mut() = Some(r);
        };
        #[allow(unsafe_code)]
        self.spawn(cell.clone(), |st| {
            // SAFETY: `run` does not return or unwind past its frame before this
            // task has ended: it drives main to completion, shutdown ends every
            // task, and `run`'s guard force-unwinds whatever is left (also when
            // the kernel panics) before the borrowed `main` and `out` can go.
            // A coroutine whose unwind failed is leaked, never run again. The
            // header is kept alive by `cell`, which the slot holds until the
            // task ends.
            unsafe { trap::new_coroutine_unchecked(st, hp, body) }
        })?;
        Ok(cell)
    }

    /// Resumes task `h` once and executes the trap it suspends with.
    ///
    /// The coroutine is resumed in place, in its header; its slot keeps the
    /// task alive meanwhile. Inlined into the run loop: this is the switch.
    #[inline(always)]
    fn step(&self, h: &Header) {
        let result = {
            let mut coro = h.coro.borrow_mut();
            let Some(coro) = coro.as_mut() else { return }; // force-unwound already
            h.state.set(State::Running);
            h.cycles.set(h.cycles.get() + 1);
            trap::set_task(Some(h));
            let result = coro.resume(());
            trap::set_task(None);
            result
        };
        match result {
            corosensei::CoroutineResult::Yield(Trap::Yield) => {
                h.state.set(State::Ready);
                self.ready.push(h);
            }
            corosensei::CoroutineResult::Yield(Trap::Wait) => {}
            corosensei::CoroutineResult::Return(()) => {
                if let Some(task) = self.header_at(h.slot.get()) {
                    self.finish(&task);
                }
            }
        }
    }

    /// Cleans up after a task whose coroutine has returned: wakes joiners, runs
    /// its exit hook, recycles its stack and slot.
    fn finish(&self, task: &Rc<AnyTask>) {
        let h = task.header();
        if h.state.get() == State::Ready {
            self.ready.remove(h); // a forced unwind of a queued task
        }
        if let Some(coro) = h.coro.borrow_mut().take() {
            if coro.done() {
                let st = coro.into_stack();
                if st.size() == self.stack_size {
                    self.stacks.borrow_mut().push(st);
                } else {
                    stack::give(st);
                }
            } else {
                leak_unfinished(h, coro);
            }
        }
        let slot = h.slot.get();
        self.slots.borrow_mut()[slot as usize].task = None;
        self.free_slots.borrow_mut().push(slot);
        self.live.set(self.live.get() - 1);
        h.reply.set(None);
        h.state.set(State::Terminated);
        h.terminated.set(true);
        h.timeout.set(None);
        let mut joiners = std::mem::take(&mut *h.joiners.borrow_mut());
        for w in joiners.drain() {
            self.wake(w, Ok(()));
        }
        let group = h.group.borrow().as_ref().and_then(std::rc::Weak::upgrade);
        if let Some(group) = group {
            group.member_finished(h.id);
        }
    }

    // ----- waiting and waking -----------------------------------------------

    /// Cancel point: returns the pending cancellation or timeout, if delivery is allowed.
    #[inline]
    pub(crate) fn cancel_point(&self, h: &Header) -> Result<()> {
        if h.mask.get() == 0 {
            if let Some(e) = h.pending.take() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Marks the running task parked in `state` and returns the waiter that ends the wait.
    ///
    /// `external` waits can be ended from outside the kernel loop (the poller,
    /// another thread); while any exist, the kernel never reports a deadlock.
    pub(crate) fn begin_wait(&self, h: &Header, state: State, external: bool) -> Waiter {
        let mut id = self.next_wait_id.get();
        if id == self.wait_ids_end.get() {
            id = self.take_wait_ids();
        }
        self.next_wait_id.set(id + 1);
        h.wait_id.set(id);
        h.state.set(state);
        h.external.set(external);
        if external {
            self.external.set(self.external.get() + 1);
        }
        Waiter {
            slot: h.slot.get(),
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
    pub(crate) fn header_at(&self, slot: u32) -> Option<Rc<AnyTask>> {
        self.slots
            .borrow()
            .get(slot as usize)
            .and_then(|s| s.task.clone())
    }

    /// True if `w` is a wait that has not ended yet.
    pub(crate) fn is_waiting(&self, w: Waiter) -> bool {
        let slots = self.slots.borrow();
        match slots.get(w.slot as usize).and_then(|s| s.task.as_ref()) {
            Some(t) => t.header().wait_id.get() == w.wait_id,
            None => false,
        }
    }

    /// Ends wait `w` and queues its task with `reply`. Returns false (and does
    /// nothing) if that wait already ended. Never switches.
    pub(crate) fn wake(&self, w: Waiter, reply: Reply) -> bool {
        self.wake_task(w, reply).is_some()
    }

    /// Like [`Core::wake`], returning the woken task's id.
    pub(crate) fn wake_task(&self, w: Waiter, reply: Reply) -> Option<u64> {
        let task = self.header_at(w.slot)?;
        let h = task.header();
        if h.wait_id.get() != w.wait_id {
            return None;
        }
        self.end_wait(h);
        self.make_ready(h, reply);
        Some(h.id)
    }

    fn end_wait(&self, h: &Header) {
        h.wait_id.set(0);
        if h.external.replace(false) {
            self.external.set(self.external.get() - 1);
        }
    }

    /// Ends a wait early (cancellation, timeout): its timer entry, if any, is now stale.
    fn abort_wait(&self, h: &Header) {
        if h.state.get() == State::TimeSleep {
            self.timers
                .borrow_mut()
                .mark_stale(|d, item| self.timer_is_live(d, item));
        }
        self.end_wait(h);
    }

    fn make_ready(&self, h: &Header, reply: Reply) {
        debug_assert_ne!(h.state.get(), State::Ready, "a task is queued once");
        h.reply.set(reply.err());
        h.state.set(State::Ready);
        self.ready.push(h);
    }

    /// Requests cancellation of a task: delivered at most once, clears its armed
    /// timeout, and aborts its current wait if it is parked at a cancel point.
    pub(crate) fn cancel(&self, h: &Header) {
        if h.terminated.get() || h.cancelled.get() {
            return;
        }
        h.cancelled.set(true);
        h.cancel_depth.set(h.deadlines.borrow().len());
        self.disarm_timeout(h);
        self.deliver(h, Error::cancelled());
    }

    /// Raises `err` in the task now if it is parked and unmasked, else leaves it pending.
    fn deliver(&self, h: &Header, err: Error) {
        if h.wait_id.get() != 0 && h.mask.get() == 0 {
            self.abort_wait(h);
            self.make_ready(h, Err(err));
            return;
        }
        // A pending cancellation outranks a pending timeout.
        let new = match h.pending.take() {
            Some(old) if old.is_cancelled() => old,
            _ => err,
        };
        h.pending.set(Some(new));
    }

    // ----- time --------------------------------------------------------------

    /// Kernel clock, in nanoseconds since the kernel started.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Converts kernel time to an `Instant`.
    pub(crate) fn instant(&self, t: u64) -> Instant {
        self.clock.epoch + Duration::from_nanos(t)
    }

    /// Converts an `Instant` to kernel time (earlier instants become 0).
    pub(crate) fn ticks(&self, i: Instant) -> u64 {
        i.saturating_duration_since(self.clock.epoch)
            .as_nanos()
            .min(u64::MAX as u128 - 1) as u64
    }

    /// Parks the running task until kernel time `deadline`.
    pub(crate) fn register_sleep(&self, w: Waiter, deadline: u64) {
        self.timers.borrow_mut().push(deadline, TimerItem::Sleep(w));
    }

    /// Arms `deadline` for the running task if it is earlier than the armed one
    /// (Curio's `_set_timeout`). A deadline already passed becomes a pending
    /// timeout at once, so it fires at the first cancel point. Returns the
    /// deadline armed before, and whether a heap entry was pushed for this one
    /// (the block hands that back to [`Core::timeout_block_ended`]).
    pub(crate) fn set_timeout(&self, h: &Header, deadline: Option<u64>) -> (Option<u64>, bool) {
        let prev = h.timeout.get();
        let mut pushed = false;
        if let Some(d) = deadline {
            if prev.is_none_or(|p| d < p) {
                pushed = self.arm_timeout(h, d, self.now());
            }
        }
        (prev, pushed)
    }

    /// Makes `d` the task's armed deadline. Its heap entry is pushed unless the
    /// deadline has passed, in which case the timeout is made pending now.
    /// Returns whether an entry was pushed.
    fn arm_timeout(&self, h: &Header, d: u64, now: u64) -> bool {
        h.timeout.set(Some(d));
        if d <= now {
            self.deliver(
                h,
                Error::timeout_kind(ErrorKind::Timeout, self.instant(now)),
            );
            false
        } else {
            self.timers.borrow_mut().push(
                d,
                TimerItem::Timeout {
                    slot: h.slot.get(),
                    task_id: h.id,
                },
            );
            true
        }
    }

    /// A timeout block whose deadline pushed a heap entry has ended (its
    /// deadline is off the task's stack): the entry is stale unless it fired.
    ///
    /// Discussion: a server that wraps every read in an hour-long timeout ends
    /// almost every block long before its deadline. Counting the entry stale
    /// here lets the heap rebuild itself once stale entries are the majority,
    /// so its size follows the timers still pending, not the rate of blocks.
    /// An entry that already fired is counted too; that only brings a rebuild
    /// forward, and a rebuild needs at least half the heap counted stale, so
    /// its cost stays amortised O(1) per block.
    pub(crate) fn timeout_block_ended(&self) {
        self.timers
            .borrow_mut()
            .mark_stale(|d, item| self.timer_is_live(d, item));
    }

    fn disarm_timeout(&self, h: &Header) {
        h.timeout.set(None);
    }

    /// Restores the deadline that was armed before a timeout block (Curio's
    /// `_unset_timeout`). An already-passed deadline is re-armed, so it fires at
    /// the next cancel point; otherwise a timeout still pending from the block is
    /// dropped. Returns the clock.
    ///
    /// Discussion: a restored future deadline needs no new heap entry. It was
    /// pushed when its own block armed it, and entries for deadlines still on a
    /// task's block stack are never swept (see `timer_is_live`), only skipped
    /// when they pop while another deadline is armed.
    ///
    /// A block that was already open when the task was cancelled restores
    /// nothing: cancelling cleared its deadlines for good, so cleanup code is
    /// not hit by them (semantics.md). Blocks opened during cleanup work as usual.
    pub(crate) fn unset_timeout(&self, h: &Header, prev: Option<u64>) -> u64 {
        let now = self.now();
        let depth = h.deadlines.borrow().len();
        if depth <= h.cancel_depth.get() {
            h.cancel_depth.set(depth.saturating_sub(1));
            h.timeout.set(None);
            if let Some(e) = h.pending.take() {
                if !matches!(e.kind(), ErrorKind::Timeout | ErrorKind::TimeoutCancelled) {
                    h.pending.set(Some(e));
                }
            }
            return now;
        }
        match prev {
            Some(p) if p <= now => {
                self.arm_timeout(h, p, now);
            }
            _ => {
                h.timeout.set(prev);
                match h.pending.take() {
                    Some(e)
                        if matches!(e.kind(), ErrorKind::Timeout | ErrorKind::TimeoutCancelled) => {
                    }
                    other => h.pending.set(other),
                }
            }
        }
        now
    }

    /// Whether a heap entry may still matter: a sleep still waiting, or a
    /// timeout that is armed or belongs to a block still open (it may be
    /// restored when an inner block ends).
    fn timer_is_live(&self, deadline: u64, item: &TimerItem) -> bool {
        match *item {
            TimerItem::Sleep(w) => self.is_waiting(w),
            TimerItem::Timeout { slot, task_id } => match self.header_at(slot) {
                Some(t) => {
                    let h = t.header();
                    h.id == task_id
                        && (h.timeout.get() == Some(deadline)
                            || h.deadlines.borrow().contains(&deadline))
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
                    let task = self.header_at(slot);
                    match task {
                        Some(t)
                            if t.header().id == task_id
                                && t.header().timeout.get() == Some(deadline) =>
                        {
                            let h = t.header();
                            h.timeout.set(None);
                            self.deliver(
                                h,
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
    pub(crate) fn inbox(&self) -> InboxSender {
        self.poller.borrow().sender()
    }

    /// Ends wait `w` of a task of *some* kernel: directly if it is this
    /// thread's kernel, else through that kernel's inbox.
    pub(crate) fn post_wake(sender: &InboxSender, w: Waiter) {
        let local = trap::try_with_core(|core| {
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
        // Tasks left in this pass (those that were ready when it began).
        let mut batch = 0usize;
        // Switches since the outside world was last looked at, counting the
        // pass under way.
        let mut since_poll = 0usize;
        loop {
            if batch == 0 {
                if done() {
                    return None;
                }
                batch = self.ready.len();
                if batch == 0 || since_poll >= POLL_INTERVAL {
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
                self.step(unsafe { task.as_ref() });
            }
        }
    }

    fn run_until_main_ends(&self, main: &Rc<TaskCell<()>>) -> Option<String> {
        self.run_until(|| main.header.terminated.get())
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
        if stacks.len() > self.idle_stacks {
            let excess = stacks.len() - self.idle_stacks;
            for st in stacks.drain(..excess) {
                stack::give_released(st);
            }
        }
        drop(stacks);
        stack::trim(self.idle_stacks);
    }

    fn poll(&self, timeout: Option<Duration>) -> usize {
        let mut woken = std::mem::take(&mut *self.woken.borrow_mut());
        let r = self.poller.borrow_mut().poll(timeout, &mut woken);
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
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Registers `fd` with the poller; returns its token.
    pub(crate) fn register_fd(&self, fd: std::os::fd::RawFd) -> std::io::Result<mio::Token> {
        self.poller.borrow_mut().register_fd(fd)
    }

    /// Forgets `fd`'s registration; call before closing it.
    pub(crate) fn deregister_fd(&self, token: mio::Token, fd: std::os::fd::RawFd) {
        self.poller.borrow_mut().deregister_fd(token, fd)
    }

    /// Whether `token`'s fd may be ready in direction `dir` (no operation has
    /// found it not ready since the poller last reported it ready).
    pub(crate) fn fd_ready(&self, token: mio::Token, dir: Direction) -> bool {
        self.poller.borrow().is_ready(token, dir)
    }

    /// Records that an operation found `token`'s fd drained in direction `dir`.
    pub(crate) fn set_fd_unready(&self, token: mio::Token, dir: Direction) {
        self.poller.borrow_mut().clear_ready(token, dir)
    }

    fn live_tasks(&self) -> Vec<Rc<AnyTask>> {
        let mut v: Vec<_> = self
            .slots
            .borrow()
            .iter()
            .filter_map(|s| s.task.clone())
            .collect();
        v.sort_by_key(|t| t.header().id);
        v
    }

    /// Who waits on what, one task per line (each line starts with a newline);
    /// `ErrorKind::Deadlock`'s own text says what a deadlock is.
    fn deadlock_report(&self) -> String {
        let mut s = String::new();
        for t in self.live_tasks() {
            let h = t.header();
            let _ = write!(s, "\n  {}", h.describe());
            if h.state.get() == State::TaskJoin && h.join_target.get() != 0 {
                let _ = write!(s, " waits for task {}", h.join_target.get());
            }
        }
        s
    }

    /// Curio 1.x shutdown: cancel every remaining task, newest first, each driven
    /// to completion before the next. If that deadlocks, force-unwind the rest.
    fn shutdown(&self) {
        loop {
            let victims = self.live_tasks();
            if victims.is_empty() {
                return;
            }
            for t in victims.iter().rev() {
                let h = t.header();
                if h.terminated.get() {
                    continue;
                }
                self.cancel(h);
                if let Some(report) = self.run_until(|| h.terminated.get()) {
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
    /// ([`trap::suspend`]) and nothing can queue it again. Tasks spawned meanwhile (by such a
    /// destructor) are newer than all the others and are unwound by the next
    /// call, without ever running.
    fn force_unwind_all(&self) {
        let was_unwinding = self.unwinding.replace(true);
        for t in self.live_tasks().iter().rev() {
            let h = t.header();
            let coro = h.coro.borrow_mut().take();
            let Some(mut coro) = coro else { continue };
            // Out of every queue first: not parked (nothing can wake it) and
            // not in the ready queue (which must never hold a finished task).
            if h.wait_id.get() != 0 {
                self.abort_wait(h);
            }
            if h.state.get() == State::Ready {
                self.ready.remove(h);
            }
            h.state.set(State::Running);
            h.yielder.set(std::ptr::null());
            trap::set_task(Some(h));
            // A coroutine that never started only drops its closure, which
            // `trap::new_coroutine_unchecked` wrapped so that the drop cannot
            // unwind into corosensei (corosensei 0.3.4 would then drop it a
            // second time: `arch-notes/stacks.md`, "Upstream").
            let r = panic::catch_unwind(AssertUnwindSafe(|| coro.force_unwind()));
            trap::set_task(None);
            if r.is_err() {
                eprintln!("curio: task {} panicked while being unwound", h.id);
            }
            *h.coro.borrow_mut() = Some(coro);
            self.finish(t);
        }
        self.unwinding.set(was_unwinding);
    }

    /// Ends whatever is left, however `run` ends: unwinds the tasks still alive
    /// (only when shutdown could not finish them, or the kernel itself
    /// panicked), then runs the exit hooks. Called with this kernel still
    /// marked as the thread's kernel.
    fn teardown(&self) {
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

/// Only a forced unwind that itself failed leaves a coroutine unfinished.
/// Dropping it would unwind it again; it is leaked instead (with its stack),
/// which is safe: it never runs again.
#[cold]
#[inline(never)]
fn leak_unfinished(h: &Header, coro: TaskCoroutine) {
    eprintln!(
        "curio: task {} could not be unwound; its stack is leaked",
        h.id
    );
    std::mem::forget(coro);
}

/// What a blocking call gets when its task can no longer switch: the kernel is
/// force-unwinding it (its shutdown could not finish, or the kernel itself
/// panicked), or it never started and its closure is being dropped. Ends the
/// wait `prepare_park` began, if any, so the task is parked on nothing.
#[cold]
#[inline(never)]
pub(crate) fn refuse_switch() -> Error {
    trap::with_current(|core, h| {
        if h.wait_id.get() != 0 {
            core.abort_wait(h);
        }
        h.state.set(State::Running);
    });
    Error::new(
        ErrorKind::Cancelled,
        "this task is being torn down by its kernel and can no longer block",
    )
}

/// Cancel point for the running task.
#[inline]
pub(crate) fn cancel_point() -> Result<()> {
    trap::with_current(|core, h| core.cancel_point(h))
}

/// Parks the running task in `state` until the waiter handed to `register` is
/// woken (`Ok`) or the wait is aborted by cancellation or a timeout (`Err`).
///
/// A cancel point: a pending cancellation is returned before registering.
///
/// Always inlined, and so is every blocking call built on it: the switch
/// happens in the caller's frame, with no frame of curio's live across it, so
/// the CPU's return prediction stays right when the task resumes
/// (`arch-notes/trap-flow.md`). Registering is an ordinary call that returns
/// before the switch.
#[inline(always)]
pub(crate) fn park(state: State, register: impl FnOnce(&Core, Waiter)) -> Result<()> {
    prepare_park(state, state.is_external(), register)?;
    trap::suspend(Trap::Wait)
}

/// [`park`] for a wait that another thread (or the poller) will end.
#[inline(always)]
pub(crate) fn park_external(state: State, register: impl FnOnce(&Core, Waiter)) -> Result<()> {
    prepare_park(state, true, register)?;
    trap::suspend(Trap::Wait)
}

/// The part of [`park`] before the switch: cancel point, then registration.
#[inline(never)]
fn prepare_park(state: State, external: bool, register: impl FnOnce(&Core, Waiter)) -> Result<()> {
    trap::with_current(|core, h| {
        core.cancel_point(h)?;
        let w = core.begin_wait(h, state, external);
        register(core, w);
        Ok(())
    })
}

/// Moves the running task to the back of the ready queue. A cancel point.
#[inline(always)]
pub(crate) fn yield_now() -> Result<()> {
    cancel_point()?;
    trap::suspend(Trap::Yield)
}

/// Parks the running task on wait queue `q` in `state` (FIFO). A cancel point;
/// a cancelled or timed-out waiter's entry goes stale and is skipped.
#[inline(always)]
pub(crate) fn park_on(q: &RefCell<WaitQueue>, state: State) -> Result<()> {
    prepare_park_on(q, state)?;
    trap::suspend(Trap::Wait)
}

#[inline(never)]
fn prepare_park_on(q: &RefCell<WaitQueue>, state: State) -> Result<()> {
    prepare_park(state, state.is_external(), |core, w| {
        q.borrow_mut().push(w, |w| core.is_waiting(w))
    })
}

/// Wakes the oldest live waiter of `q`; returns its task id. Never switches.
#[inline]
pub(crate) fn wake_one(q: &RefCell<WaitQueue>) -> Option<u64> {
    trap::with_core(|core| {
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

/// Wakes every live waiter of `q`, oldest first; returns how many. Never switches.
pub(crate) fn wake_all(q: &RefCell<WaitQueue>) -> usize {
    trap::with_core(|core| {
        // Taken out whole: no allocation when the oldest waiter is the only one.
        let mut waiters = std::mem::take(&mut *q.borrow_mut());
        waiters.drain().filter(|&w| core.wake(w, Ok(()))).count()
    })
}

/// True if `q` has a live waiter.
#[inline]
pub(crate) fn has_waiters(q: &RefCell<WaitQueue>) -> bool {
    trap::with_core(|core| q.borrow_mut().first_live(|w| core.is_waiting(w)).is_some())
}

/// The running task's id.
#[inline]
pub(crate) fn current_id() -> u64 {
    trap::with_current(|_, h| h.id)
}

/// Parks the running task until `fd` (registered as `token`) is ready in
/// direction `dir`. One task may wait per direction.
///
/// # Errors
///
/// [`ErrorKind::ResourceBusy`] if another task already waits on `fd` in that
/// direction; the caller's cancellation or timeout (the wait is then forgotten).
pub(crate) fn wait_fd(token: mio::Token, fd: std::os::fd::RawFd, dir: Direction) -> Result<()> {
    let (state, verb, who) = match dir {
        Direction::Read => (State::ReadWait, "read", "reader"),
        Direction::Write => (State::WriteWait, "write", "writer"),
    };
    trap::with_core(|core| {
        let mut poller = core.poller.borrow_mut();
        match *poller.waiter_slot(token, dir) {
            Some(w) if core.is_waiting(w) => Err(Error::new(
                ErrorKind::ResourceBusy,
                format!(
                    "another task is already waiting to {verb} fd {fd}; use one {who} per socket"
                ),
            )),
            _ => Ok(()),
        }
    })?;
    park_external(state, |core, w| {
        *core.poller.borrow_mut().waiter_slot(token, dir) = Some(w);
    })
}

/// [`wait_fd`] shown as `state` instead of `READ_WAIT`/`WRITE_WAIT` (a signal
/// set waiting on its doorbell socket is in `SIGNAL_WAIT`). The caller makes
/// sure that only one task waits on the fd in that direction.
pub(crate) fn wait_fd_as(token: mio::Token, dir: Direction, state: State) -> Result<()> {
    park_external(state, |core, w| {
        *core.poller.borrow_mut().waiter_slot(token, dir) = Some(w);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
                let len = trap::with_core(|core| core.timers.borrow().len());
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
            crate::task::panic_message(&*payload),
            "injected: the kernel loop panics"
        );
        assert_eq!(seen.get(), Some(2), "the kid's destructor saw itself");
        assert!(!trap::in_task());
        assert_eq!(crate::run(|| 5), 5, "the thread can run a kernel again");
    }
}
