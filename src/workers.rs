//! The bridge to OS threads: `run_in_thread` runs blocking work on a pool.
//!
//! # Invariants
//!
//! - Each kernel has its own pool, started lazily, of at most
//!   `Builder::thread_pool_size` threads (64 by default), shut down with the
//!   kernel (idle threads exit at once, busy ones after their job). Work beyond
//!   the limit waits in the pool's queue; its caller waits cancellably.
//! - The result comes back through the kernel's inbox and `mio::Waker`; the
//!   calling task waits in `FUTURE_WAIT`, an external wait (no deadlock report
//!   while work is out).
//! - Cancelling the caller returns at once. Work not yet started is skipped;
//!   work already running finishes on its thread as a zombie, outside the pool
//!   (which may start another thread in its place), and its result is dropped
//!   (the wake it posts is stale and ignored).
//! - Idle threads exit after ten seconds.
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
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::kernel;
use crate::poller::{InboxSender, Message};
use crate::task::State;
use crate::trap;
use crate::wait::Waiter;

const KEEPALIVE: Duration = Duration::from_secs(10);

// A job's life. The caller and the worker race on it with compare-exchange.
const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
/// Abandoned before it started: the worker skips it.
const SKIPPED: u8 = 3;
/// Abandoned while running: its thread left the pool and exits when done.
const ZOMBIE: u8 = 4;

struct Job {
    /// Runs the function and stores its outcome.
    run: Box<dyn FnOnce() + Send>,
    state: Arc<AtomicU8>,
    /// Whom to wake, and through which kernel's inbox, once the outcome is stored.
    wake: (InboxSender, Waiter),
}

struct PoolState {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: usize,
    max: usize,
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

thread_local! {
    /// The pool of the kernel running on this thread, with that kernel's id.
    static POOL: RefCell<Option<(u64, Arc<Pool>)>> = const { RefCell::new(None) };
}

fn lock(pool: &Pool) -> std::sync::MutexGuard<'_, PoolState> {
    pool.state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    fn submit(self: &Arc<Self>, job: Job) -> io::Result<()> {
        let mut st = lock(self);
        st.jobs.push_back(job);
        let wake_idle = st.idle > 0;
        let r = self.start_workers(st); // unlocks
        // Notify with the lock released, so the woken thread does not
        // immediately block on it.
        if wake_idle {
            self.work.notify_one();
        }
        r
    }

    /// Starts threads while queued jobs outnumber idle threads and the pool has room.
    fn start_workers(
        self: &Arc<Self>,
        mut st: std::sync::MutexGuard<'_, PoolState>,
    ) -> io::Result<()> {
        while st.jobs.len() > st.idle + self.returning.load(Ordering::Acquire)
            && st.threads < st.max
            && !st.shutdown
        {
            st.threads += 1;
            self.returning.fetch_add(1, Ordering::AcqRel); // until it reaches the queue
            let pool = self.clone();
            let spawned = std::thread::Builder::new()
                .name("curio-worker".into())
                .spawn(move || pool.worker());
            if let Err(e) = spawned {
                st.threads -= 1;
                self.returning.fetch_sub(1, Ordering::AcqRel);
                if st.threads == 0 {
                    return Err(e);
                }
                break;
            }
        }
        Ok(())
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
                    .is_ok()
                {
                    (job.run)();
                    if job
                        .state
                        .compare_exchange(RUNNING, DONE, Ordering::AcqRel, Ordering::Acquire)
                        .is_err()
                    {
                        return; // a zombie: the pool already let this thread go
                    }
                    self.returning.fetch_add(1, Ordering::AcqRel);
                    let (inbox, w) = job.wake;
                    inbox.send(Message::Wake(w));
                    st = lock(self);
                    self.returning.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
                st = lock(self);
                continue;
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
    fn abandon(self: &Arc<Self>, state: &AtomicU8) {
        if state
            .compare_exchange(QUEUED, SKIPPED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return; // never started; the worker will skip it
        }
        if state
            .compare_exchange(RUNNING, ZOMBIE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // Its thread finishes as a zombie outside the pool; let another
            // thread take its place for the jobs waiting now.
            let mut st = lock(self);
            st.threads -= 1;
            let _ = self.start_workers(st);
        }
    }

    /// The kernel ended: idle threads exit now, busy ones after their job.
    fn shut_down(&self) {
        lock(self).shutdown = true;
        self.work.notify_all();
    }
}

/// This kernel's pool, started on first use and shut down with the kernel.
fn pool() -> Arc<Pool> {
    let (kernel, max) = trap::with_core(|core| (core.id(), core.thread_pool_size()));
    if let Some(p) = POOL.with(|p| {
        p.borrow()
            .as_ref()
            .filter(|(k, _)| *k == kernel)
            .map(|(_, p)| p.clone())
    }) {
        return p;
    }
    let pool = Arc::new(Pool {
        state: Mutex::new(PoolState {
            jobs: VecDeque::new(),
            idle: 0,
            threads: 0,
            max,
            shutdown: false,
        }),
        work: Condvar::new(),
        returning: AtomicUsize::new(0),
    });
    if let Some((_, old)) = POOL.with(|p| p.borrow_mut().replace((kernel, pool.clone()))) {
        old.shut_down();
    }
    let p2 = pool.clone();
    trap::with_core(|core| {
        core.at_exit(Box::new(move || {
            p2.shut_down();
            POOL.with(|p| {
                let mut p = p.borrow_mut();
                if p.as_ref().is_some_and(|(k, _)| *k == kernel) {
                    *p = None;
                }
            });
        }))
    });
    pool
}

/// Runs the blocking function `f` on a pool thread and waits for its value,
/// keeping the kernel free for other tasks meanwhile.
///
/// # Errors
///
/// [`ErrorKind::TaskPanicked`] if `f` panicked; an I/O error if no thread could
/// be started; the caller's cancellation or timeout.
///
/// # Cancellation
///
/// A cancel point. Cancelled or timed out, it returns at once: if `f` has not
/// started it never will; if it is running it finishes on its thread and its
/// value is dropped.
pub fn run_in_thread<F, R>(f: F) -> Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let slot: Arc<Mutex<Option<std::thread::Result<R>>>> = Arc::new(Mutex::new(None));
    let state = Arc::new(AtomicU8::new(QUEUED));
    let inbox = trap::with_core(|core| core.inbox());
    let pool = pool();
    let mut failed: Option<io::Error> = None;
    let r = kernel::park_external(State::FutureWait, |core, w| {
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
            core.wake(w, Ok(()));
        }
    });
    if let Err(e) = r {
        pool.abandon(&state);
        return Err(e);
    }
    if let Some(e) = failed {
        return Err(e.into());
    }
    let out = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    match out {
        Some(Ok(v)) => Ok(v),
        Some(Err(payload)) => {
            let msg = crate::task::panic_message(&*payload);
            Err(Error::new(
                ErrorKind::TaskPanicked,
                format!("in run_in_thread: {msg}"),
            ))
        }
        None => Err(Error::usage("run_in_thread woke without a result")),
    }
}
