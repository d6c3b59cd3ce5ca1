//! The bridge to OS threads: `run_in_thread` runs blocking work on a bounded pool.
//!
//! # Invariants
//!
//! - Each kernel has its own pool, started lazily, shut down with the kernel
//!   (idle threads exit at once, busy ones after their job; idle threads also
//!   exit after ten seconds). At most `Builder::thread_pool_size` threads (64 by
//!   default) take jobs; work beyond that waits in the pool's queue, and its
//!   caller waits cancellably (`FUTURE_WAIT`, an external wait: no deadlock
//!   report while work is out).
//! - **The pool never holds more than twice `thread_pool_size` threads, zombies
//!   included.** Cancelling the caller returns at once. A job not yet started is
//!   taken out of the queue and dropped, and never runs. A job already running
//!   cannot be stopped: its thread finishes it as a *zombie* and its value is
//!   dropped. While fewer than `thread_pool_size` zombies exist, the zombie's
//!   thread leaves the pool, so another may start in its place, and exits when
//!   the job ends. Beyond that allowance the zombie keeps its place in the
//!   pool until the job ends, then serves the queue again: later calls wait for
//!   a place (cancellably), they do not get an error.
//! - What a cancelled job costs until it ends: its thread (stack and kernel
//!   task), everything the closure captured, and, once the zombie allowance is
//!   used up, one place in the pool.
//! - A job the caller was told had failed never runs: when no thread can be
//!   started and no thread of the pool will come back to the queue, the job is
//!   taken out again and the caller gets the error. A queued job always has a
//!   thread that will reach it: a zombie whose replacement cannot be started
//!   keeps its place and serves the queue when its job ends.
//! - Name lookups (`net::open_connection`, `net::resolve`) run in a lane of
//!   their own, [`RESOLVER_THREADS`] threads plus as many zombies, so slow
//!   lookups given up by their callers can neither exhaust the pool nor grow
//!   threads without bound.
//!
//! The rules and their reasons are in `arch-notes/workers.md`.
//!
//! # Example
//!
//! ```
//! curio::run(|| {
//!     let n = curio::run_in_thread(|| (1..=10u64).product::<u64>()).unwrap();
//!     assert_eq!(n, 3_628_800);
//! });
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::kernel::State;
use crate::poller::{InboxSender, Message};
use crate::trap;
use crate::wait::Waiter;

const KEEPALIVE: Duration = Duration::from_secs(10);

/// How many threads name lookups may use at once (their lane may hold as many
/// zombies again). A lookup beyond that waits, cancellably, for a free thread.
pub const RESOLVER_THREADS: usize = 4;

// A job's life. The caller and the worker race on it with compare-exchange;
// the two zombie states are only ever set (and read) under the pool's lock.
const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
/// Abandoned before it started: taken out of the queue, or skipped by the
/// worker that had just popped it.
const SKIPPED: u8 = 3;
/// Abandoned while running; its thread keeps its place in the pool and serves
/// the queue again when the job ends.
const KEPT: u8 = 4;
/// Abandoned while running; its thread left the pool and exits when the job ends.
const LEFT: u8 = 5;

struct Job {
    /// Runs the function and stores its outcome.
    run: Box<dyn FnOnce() + Send>,
    state: Arc<AtomicU8>,
    /// Whom to wake, and through which kernel's inbox, once the outcome is stored.
    wake: (InboxSender, Waiter),
}

/// How many threads a pool may hold.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// Threads that take jobs (idle, busy, or zombies that kept their place).
    workers: usize,
    /// Threads that left the pool with an abandoned job, until it ends.
    zombies: usize,
}

struct PoolState {
    jobs: VecDeque<Job>,
    idle: usize,
    /// Threads of the pool: each comes back to the queue (idle, busy, kept zombies).
    threads: usize,
    /// Threads that left the pool and exit when their abandoned job ends.
    zombies: usize,
    limits: Limits,
    shutdown: bool,
}

struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
    /// Threads on their way to the queue: just started, or finished a job.
    ///
    /// Discussion: a worker posts its wake-up before it is idle again, and the
    /// kernel often submits the next job in that window. Counting such threads
    /// as available keeps a sequence of calls on one warm thread instead of
    /// starting a new thread for each (which, unchecked, grew the pool to its
    /// limit and made every call hop to a cold thread).
    returning: AtomicUsize,
}

/// The pools of one kernel: the general one and the name-lookup lane.
struct Pools {
    kernel: u64,
    general: Arc<Pool>,
    resolver: Arc<Pool>,
}

thread_local! {
    /// The pools of the kernel running on this thread.
    static POOLS: RefCell<Option<Pools>> = const { RefCell::new(None) };
}

fn lock(pool: &Pool) -> MutexGuard<'_, PoolState> {
    pool.state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    fn new(limits: Limits) -> Arc<Pool> {
        Arc::new(Pool {
            state: Mutex::new(PoolState {
                jobs: VecDeque::new(),
                idle: 0,
                threads: 0,
                zombies: 0,
                limits,
                shutdown: false,
            }),
            work: Condvar::new(),
            returning: AtomicUsize::new(0),
        })
    }

    /// Queues `job`, starting a thread for it if none is free and the pool has
    /// room. If no thread can be started and none of the pool's threads will
    /// ever come back to the queue, the job is taken out again (it never runs)
    /// and the error is returned.
    fn submit(self: &Arc<Self>, job: Job) -> io::Result<()> {
        let mut st = lock(self);
        st.jobs.push_back(job);
        let wake_idle = st.idle > 0;
        if let Err(e) = self.start_workers(&mut st) {
            if st.threads == 0 {
                // Nobody will reach the queue, and while the pool had no
                // thread it held no other live job: the job at the back is ours.
                let job = st.jobs.pop_back();
                drop(st);
                drop(job);
                return Err(e);
            }
            // The pool's threads come back to the queue and will run it.
        }
        drop(st);
        // Notify with the lock released, so the woken thread does not
        // immediately block on it.
        if wake_idle {
            self.work.notify_one();
        }
        Ok(())
    }

    /// Starts threads while queued jobs outnumber available threads and the
    /// pool has room. Stops at the first thread that cannot be started.
    fn start_workers(self: &Arc<Self>, st: &mut PoolState) -> io::Result<()> {
        while st.jobs.len() > st.idle + self.returning.load(Ordering::Acquire)
            && st.threads < st.limits.workers
            && !st.shutdown
        {
            self.start_one(st)?;
        }
        Ok(())
    }

    /// Starts one pool thread.
    fn start_one(self: &Arc<Self>, st: &mut PoolState) -> io::Result<()> {
        self.returning.fetch_add(1, Ordering::AcqRel); // until it reaches the queue
        let pool = self.clone();
        match start_thread(move || pool.worker()) {
            Ok(()) => {
                st.threads += 1;
                Ok(())
            }
            Err(e) => {
                self.returning.fetch_sub(1, Ordering::AcqRel);
                Err(e)
            }
        }
    }

    fn worker(&self) {
        let mut st = lock(self);
        self.returning.fetch_sub(1, Ordering::AcqRel); // started: at the queue now
        loop {
            if let Some(job) = st.jobs.pop_front() {
                drop(st);
                if job
                    .state
                    .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    // Abandoned between the pop and here.
                    drop(job);
                    st = lock(self);
                    continue;
                }
                let Job { run, state, wake } = job;
                run();
                if state
                    .compare_exchange(RUNNING, DONE, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.returning.fetch_add(1, Ordering::AcqRel);
                    let (inbox, w) = wake;
                    inbox.send(Message::Wake(w));
                    st = lock(self);
                    self.returning.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
                // Abandoned while running: the caller decided, under the lock,
                // whether this thread keeps its place.
                st = lock(self);
                if state.load(Ordering::Acquire) == LEFT {
                    st.zombies -= 1;
                    return;
                }
                continue; // KEPT: back to the queue
            }
            if st.shutdown {
                st.threads -= 1;
                return;
            }
            st.idle += 1;
            let (guard, timeout) = self
                .work
                .wait_timeout(st, KEEPALIVE)
                .unwrap_or_else(|e| e.into_inner());
            st = guard;
            st.idle -= 1;
            if timeout.timed_out() && st.jobs.is_empty() {
                st.threads -= 1;
                return;
            }
        }
    }

    /// The caller of `state`'s job gave up on it.
    fn abandon(self: &Arc<Self>, state: &Arc<AtomicU8>) {
        let mut st = lock(self);
        if state
            .compare_exchange(QUEUED, SKIPPED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // Never started: out of the queue now, so it holds nothing it
            // captured and does not count as waiting work. (A worker may have
            // popped it already; it will skip it.)
            let at = st.jobs.iter().position(|j| Arc::ptr_eq(&j.state, state));
            let job = at.and_then(|i| st.jobs.remove(i));
            drop(st);
            drop(job); // its captures' destructors run outside the lock
            return;
        }
        if state
            .compare_exchange(RUNNING, KEPT, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return; // it finished meanwhile
        }
        if st.zombies >= st.limits.zombies {
            return; // allowance used up: it keeps its place until it ends
        }
        // It may leave the pool. If jobs wait for a thread, one must start in
        // its place first; if none can, it keeps its place and serves them when
        // its job ends, so they are not stranded.
        let waiting = st.jobs.len() > st.idle + self.returning.load(Ordering::Acquire);
        if waiting && !st.shutdown && self.start_one(&mut st).is_err() {
            return;
        }
        state.store(LEFT, Ordering::Release);
        st.threads -= 1;
        st.zombies += 1;
    }

    /// The kernel ended: idle threads exit now, busy ones after their job.
    fn shut_down(&self) {
        lock(self).shutdown = true;
        self.work.notify_all();
    }
}

/// Starts an OS thread for a pool (or fails, when a test asked it to).
fn start_thread(f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    if testing::take_injected_failure() {
        return Err(io::Error::from_raw_os_error(libc::EAGAIN));
    }
    std::thread::Builder::new()
        .name("curio-worker".into())
        .spawn(f)
        .map(drop)
}

/// Which pool a job goes to.
#[derive(Clone, Copy, Debug)]
enum Lane {
    General,
    Resolver,
}

/// This kernel's pool for `lane`, started on first use and shut down with the kernel.
fn pool(lane: Lane) -> Arc<Pool> {
    let kernel = trap::kernel_id().expect("run_in_thread is called from a task");
    let size = trap::thread_pool_size();
    let pick = |p: &Pools| match lane {
        Lane::General => p.general.clone(),
        Lane::Resolver => p.resolver.clone(),
    };
    if let Some(p) = POOLS.with(|p| p.borrow().as_ref().filter(|p| p.kernel == kernel).map(pick)) {
        return p;
    }
    let pools = Pools {
        kernel,
        general: Pool::new(Limits {
            workers: size,
            zombies: size,
        }),
        resolver: Pool::new(Limits {
            workers: RESOLVER_THREADS,
            zombies: RESOLVER_THREADS,
        }),
    };
    let chosen = pick(&pools);
    let (general, resolver) = (pools.general.clone(), pools.resolver.clone());
    if let Some(old) = POOLS.with(|p| p.borrow_mut().replace(pools)) {
        old.general.shut_down();
        old.resolver.shut_down();
    }
    trap::at_exit(Box::new(move || {
        general.shut_down();
        resolver.shut_down();
        POOLS.with(|p| {
            let mut p = p.borrow_mut();
            if p.as_ref().is_some_and(|p| p.kernel == kernel) {
                *p = None;
            }
        });
    }));
    chosen
}

/// Runs the blocking function `f` on a pool thread and waits for its value,
/// keeping the kernel free for other tasks meanwhile.
///
/// The pool has `Builder::thread_pool_size` threads (64 by default); a call
/// beyond that waits for a thread. With the zombies of cancelled calls, the pool
/// never holds more than twice that many threads (see the [module
/// docs](self) for the rule).
///
/// # Errors
///
/// [`ErrorKind::TaskPanicked`] if `f` panicked; an I/O error if no thread could
/// be started and none was there to run `f` (then `f` never runs); the caller's
/// cancellation or timeout.
///
/// # Cancellation
///
/// A cancel point. Cancelled or timed out, it returns at once: if `f` has not
/// started it never will (it is dropped at once, with what it captured); if it
/// is running it finishes on its thread as a zombie and its value is dropped.
/// Until then that thread stays alive, and once the pool's zombie allowance is
/// used up it also holds a place in the pool.
pub fn run_in_thread<F, R>(f: F) -> Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    run_on(Lane::General, f)
}

/// Runs a name lookup (or other resolver work) on the kernel's resolver lane.
pub(crate) fn run_in_resolver<F, R>(f: F) -> Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    run_on(Lane::Resolver, f)
}

fn run_on<F, R>(lane: Lane, f: F) -> Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let slot: Arc<Mutex<Option<std::thread::Result<R>>>> = Arc::new(Mutex::new(None));
    let state = Arc::new(AtomicU8::new(QUEUED));
    let inbox = trap::inbox();
    let pool = pool(lane);
    let mut failed: Option<io::Error> = None;
    let r = trap::park_external(State::FutureWait, |w| {
        let slot = slot.clone();
        let run = Box::new(move || {
            let out = panic::catch_unwind(AssertUnwindSafe(f));
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(out);
        });
        let job = Job {
            run,
            state: state.clone(),
            wake: (inbox.clone(), w),
        };
        if let Err(e) = pool.submit(job) {
            failed = Some(e);
            trap::wake(w);
        }
    });
    if let Err(e) = r {
        pool.abandon(&state);
        return Err(e);
    }
    if let Some(e) = failed {
        let what = match lane {
            Lane::General => "run_in_thread",
            Lane::Resolver => "a name lookup",
        };
        return Err(io::Error::new(
            e.kind(),
            format!(
                "could not start a thread for {what} ({e}); the function was not run \
                 (the process may be out of threads or memory: let running work end, \
                 or lower thread_pool_size)"
            ),
        )
        .into());
    }
    let out = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    match out {
        Some(Ok(v)) => Ok(v),
        Some(Err(payload)) => {
            let msg = crate::kernel::panic_message(&*payload);
            Err(Error::new(
                ErrorKind::TaskPanicked,
                format!("in run_in_thread: {msg}"),
            ))
        }
        None => Err(Error::usage("run_in_thread woke without a result")),
    }
}

/// Hooks for curio's own tests: not part of the API, may change at any time.
#[doc(hidden)]
pub mod testing {
    use std::cell::Cell;

    thread_local! {
        static FAIL_STARTS: Cell<usize> = const { Cell::new(0) };
    }

    /// Makes the next `n` worker-thread starts requested from this thread (a
    /// kernel thread) fail with `EAGAIN`, as when the process is out of threads.
    pub fn fail_thread_starts(n: usize) {
        FAIL_STARTS.with(|c| c.set(n));
    }

    pub(super) fn take_injected_failure() -> bool {
        FAIL_STARTS.with(|c| {
            let left = c.get();
            c.set(left.saturating_sub(1));
            left > 0
        })
    }

    /// Runs `f` on the name-lookup lane, as `net::open_connection` resolves.
    pub fn run_in_resolver<F, R>(f: F) -> crate::Result<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        super::run_in_resolver(f)
    }
}
