//! The bridge to OS threads: `run_in_thread` runs blocking work on a pool.
//!
//! # Invariants
//!
//! - Each kernel thread has its own pool, started lazily, of at most
//!   `Builder::thread_pool_size` threads (64 by default). Work beyond that waits
//!   in the pool's queue; its caller waits cancellably.
//! - The result comes back through the kernel's inbox and `mio::Waker`; the
//!   calling task waits in `FUTURE_WAIT`, an external wait (no deadlock report
//!   while work is out).
//! - Cancelling the caller returns at once. Work not yet started is skipped;
//!   work already running finishes on its thread as a zombie and its result is
//!   dropped (the wake it posts is stale and ignored).
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::kernel;
use crate::poller::Message;
use crate::task::State;
use crate::trap;

const KEEPALIVE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

struct PoolState {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: usize,
    max: usize,
}

struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
}

thread_local! {
    static POOL: RefCell<Option<Arc<Pool>>> = const { RefCell::new(None) };
}

fn lock(pool: &Pool) -> std::sync::MutexGuard<'_, PoolState> {
    pool.state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    fn submit(self: &Arc<Self>, job: Job, max: usize) -> io::Result<()> {
        let mut st = lock(self);
        st.max = max;
        st.jobs.push_back(job);
        if st.idle > 0 {
            self.work.notify_one();
            return Ok(());
        }
        if st.threads >= st.max {
            return Ok(()); // queued until a thread comes free
        }
        st.threads += 1;
        drop(st);
        let pool = self.clone();
        let spawned = std::thread::Builder::new()
            .name("curio-worker".into())
            .spawn(move || pool.worker());
        if let Err(e) = spawned {
            let mut st = lock(self);
            st.threads -= 1;
            if st.threads == 0 {
                st.jobs.pop_back();
                return Err(e);
            }
        }
        Ok(())
    }

    fn worker(&self) {
        let mut st = lock(self);
        loop {
            if let Some(job) = st.jobs.pop_front() {
                drop(st);
                job();
                st = lock(self);
                continue;
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
}

fn pool() -> Arc<Pool> {
    POOL.with(|p| {
        p.borrow_mut()
            .get_or_insert_with(|| {
                Arc::new(Pool {
                    state: Mutex::new(PoolState {
                        jobs: VecDeque::new(),
                        idle: 0,
                        threads: 0,
                        max: 1,
                    }),
                    work: Condvar::new(),
                })
            })
            .clone()
    })
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
    let abandoned = Arc::new(AtomicBool::new(false));
    let (inbox, max) = trap::with_core(|core| (core.inbox(), core.thread_pool_size()));
    let pool = pool();
    let mut failed: Option<io::Error> = None;
    let r = kernel::park_external(State::FutureWait, |core, w| {
        let (slot, abandoned) = (slot.clone(), abandoned.clone());
        let job: Job = Box::new(move || {
            if abandoned.load(Ordering::Acquire) {
                return; // the caller gave up before we started
            }
            let out = panic::catch_unwind(AssertUnwindSafe(f));
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(out);
            inbox.send(Message::Wake(w));
        });
        if let Err(e) = pool.submit(job, max) {
            failed = Some(e);
            core.wake(w, Ok(()));
        }
    });
    if let Err(e) = r {
        abandoned.store(true, Ordering::Release);
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
