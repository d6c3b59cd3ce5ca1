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

use std::cell::RefCell;
use std::panic;
use std::rc::Rc;

use crate::error::{Error, ErrorKind, Result};
use crate::stack::{self, DEFAULT_STACK_SIZE};
use crate::sys;

mod core;
mod crash;
mod ready;
mod record;
mod switch;
pub(crate) mod traps;

use self::core::{Core, enter_kernel, leave_kernel, running_overflow_info};
pub use record::State;
pub(crate) use record::{AnyTask, GroupLink, TaskCell, TaskRecord, panic_message};

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
        crash::install_panic_hook();
        sys::install_overflow_handler(running_overflow_info);
        let core = Core::new(&self.config)?;
        if !enter_kernel(&core) {
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
                leave_kernel();
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
